//! Markdown → HTML for message content, with Zulip's mention syntax.
//!
//! CommonMark via pulldown-cmark, then a pass over the event stream that:
//! turns `@**Full Name**`, `@**Name|id**`, silent `@_**Name**` and the
//! wildcards (`@**all**`, `@**everyone**`, `@**stream**`, `@**channel**`,
//! `@**topic**`) into Zulip's mention spans; `#**channel**` and
//! `#**channel>topic**` into narrow links; `:emoji_name:` into emoji spans
//! (names from the gemoji set, which Zulip's names mostly share); escapes raw HTML instead of
//! passing it through; drops links with unsafe schemes; renders images as
//! links; and makes single newlines line breaks, as Zulip does.
//!
//! Mentions inside code spans and code blocks are not mentions (the parser
//! reports those as code, never as text). Sending resolves names in two
//! steps: [`mention_refs`] lists what the content could mention, the caller
//! looks those users up, then [`render`] renders with the answers.

use pulldown_cmark::{html, CowStr, Event, LinkType, Options, Parser, Tag, TagEnd, TextMergeStream};
use std::collections::BTreeSet;

/// Something `@**...**` refers to, before lookup.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum MentionRef {
    /// `@**Full Name**`
    Name(String),
    /// `@**Full Name|id**`
    Id(i64),
}

/// A resolved `#**channel**` link.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamTarget {
    /// Stream id.
    pub id: i64,
    /// Name, as displayed.
    pub name: String,
}

/// A resolved user mention.
#[derive(Debug, Clone, PartialEq)]
pub struct MentionTarget {
    /// User id.
    pub id: i64,
    /// Full name, as displayed.
    pub full_name: String,
}

/// Result of rendering.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Rendered {
    /// Sanitised HTML.
    pub html: String,
    /// Users mentioned non-silently.
    pub mentioned_user_ids: BTreeSet<i64>,
    /// A non-silent `@all`/`@everyone`/`@stream`/`@channel`.
    pub stream_wildcard: bool,
    /// A non-silent `@topic`.
    pub topic_wildcard: bool,
    /// User groups mentioned non-silently (`@*group*`).
    pub mentioned_group_ids: BTreeSet<i64>,
}

/// A resolved user group mention.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupTarget {
    /// Group id.
    pub id: i64,
    /// Group name, as displayed.
    pub name: String,
}

/// What a message's mentions and links resolve against: users, channels,
/// user groups. Unresolved ones stay literal text.
pub struct Resolvers<'r> {
    /// `@**name**`, `@**name|id**`.
    pub user: &'r dyn Fn(&MentionRef) -> Option<MentionTarget>,
    /// `#**channel**` (by name).
    pub channel: &'r dyn Fn(&str) -> Option<StreamTarget>,
    /// `@*group*` (by name).
    pub group: &'r dyn Fn(&str) -> Option<GroupTarget>,
}

const STREAM_WILDCARDS: [&str; 4] = ["all", "everyone", "stream", "channel"];

fn options() -> Options {
    Options::ENABLE_STRIKETHROUGH | Options::ENABLE_TABLES
}

/// A mention or channel link found in the event stream: index range of its
/// events, its sigil (`@`, `@_` or `#`), and the text between the `**`.
struct Found {
    start: usize,
    end: usize,
    silent: bool,
    channel: bool,
    /// `@*group*` (emphasis) rather than `@**user**` (strong).
    group: bool,
    text: String,
}

impl Found {
    /// Length of the sigil at the end of the preceding text event.
    fn marker_len(&self) -> usize {
        if self.silent {
            2
        } else {
            1
        }
    }
}

/// Finds `@**x**`, `@_**x**` and `#**x**` patterns (a text event ending in
/// the sigil followed by Strong(text)) and `@*x*`, `@_*x*` group mentions
/// (the same with Emphasis).
fn find_mentions(events: &[Event<'_>]) -> Vec<Found> {
    let mut out = Vec::new();
    let mut i = 0;
    while i + 3 < events.len() {
        let (group, inner) = match (&events[i + 1], &events[i + 2], &events[i + 3]) {
            (Event::Start(Tag::Strong), Event::Text(inner), Event::End(TagEnd::Strong)) => (false, inner),
            (Event::Start(Tag::Emphasis), Event::Text(inner), Event::End(TagEnd::Emphasis)) => (true, inner),
            _ => {
                i += 1;
                continue;
            }
        };
        if let Event::Text(t) = &events[i] {
            let silent = t.ends_with("@_");
            let channel = !group && t.ends_with('#');
            let marker = if silent { 2 } else { 1 };
            if t.ends_with('@') || silent || channel {
                // The sigil must start a word: at the start of the text or
                // after a non-alphanumeric character.
                let before = &t[..t.len() - marker];
                if before.chars().last().is_none_or(|c| !c.is_alphanumeric()) {
                    out.push(Found { start: i, end: i + 3, silent, channel, group, text: inner.to_string() });
                    i += 4;
                    continue;
                }
            }
        }
        i += 1;
    }
    out
}

/// `#**channel**` / `#**channel>topic**` → (channel name, topic).
fn parse_channel_link(text: &str) -> (&str, Option<&str>) {
    match text.split_once('>') {
        Some((name, topic)) => (name, Some(topic)),
        None => (text, None),
    }
}

/// Zulip's `hash_util_encode`: percent-encoding with `.` in place of `%`
/// (and `.` itself encoded), for narrow URLs.
pub(crate) fn hash_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!(".{b:02X}"));
        }
    }
    out
}

/// The path of a channel's narrow, `/#narrow/channel/<id>-<name>` (the
/// links Markdown renders and the notification emails carry).
pub(crate) fn channel_narrow(id: i64, name: &str) -> String {
    format!("/#narrow/channel/{id}-{}", hash_encode(&name.replace(' ', "-")))
}

fn channel_link_html(f: &Found, resolve: &dyn Fn(&str) -> Option<StreamTarget>) -> String {
    let (name, topic) = parse_channel_link(&f.text);
    let Some(s) = resolve(name.trim()) else {
        return escape(&format!("#**{}**", f.text));
    };
    let base = channel_narrow(s.id, &s.name);
    match topic {
        None => format!("<a class=\"stream\" data-stream-id=\"{}\" href=\"{base}\">#{}</a>", s.id, escape(&s.name)),
        Some(t) => format!(
            "<a class=\"stream-topic\" data-stream-id=\"{}\" href=\"{base}/topic/{}\">#{} &gt; {}</a>",
            s.id,
            hash_encode(t),
            escape(&s.name),
            escape(t)
        ),
    }
}

/// Whether `code` (Zulip's form: code points in hex joined by `-`, without
/// variation selectors) is an emoji.
pub(crate) fn is_emoji_code(code: &str) -> bool {
    let chars: Option<String> =
        code.split('-').map(|h| u32::from_str_radix(h, 16).ok().and_then(char::from_u32)).collect();
    let Some(text) = chars.filter(|t| !t.is_empty()) else { return false };
    emojis::get(&text).is_some() || emojis::get(&format!("{text}\u{fe0f}")).is_some()
}

/// The emoji `:name:` stands for, as Zulip's code (code points in hex,
/// without variation selectors).
pub(crate) fn emoji_code(name: &str) -> Option<String> {
    let e = emojis::get_by_shortcode(name)?;
    let code: Vec<String> =
        e.as_str().chars().filter(|c| *c != '\u{fe0f}').map(|c| format!("{:x}", c as u32)).collect();
    Some(code.join("-"))
}

/// Pushes text with its bare `http://` / `https://` URLs as links (the
/// URL ends at white space or `<`; trailing punctuation and an unbalanced
/// closing parenthesis stay outside it), the rest through
/// [`push_emojified`].
fn push_linkified<'a>(text: &CowStr<'a>, out: &mut Vec<Event<'a>>) {
    let mut rest: &str = text;
    let mut pushed_any = false;
    while let Some(start) = find_url_start(rest) {
        let tail = &rest[start..];
        let mut end = tail.find(|c: char| c.is_whitespace() || c == '<').unwrap_or(tail.len());
        loop {
            let url = &tail[..end];
            let Some(last) = url.chars().last() else { break };
            let unbalanced = last == ')' && url.matches('(').count() < url.matches(')').count();
            if ".,;:!?'\"".contains(last) || unbalanced {
                end -= last.len_utf8();
            } else {
                break;
            }
        }
        let url = &tail[..end];
        // A scheme alone is not a link.
        if url.len() <= "https://".len() || !url.contains("://") || url.ends_with("://") {
            let skip = start + url.len().max(1);
            let (before, after) = rest.split_at(skip.min(rest.len()));
            push_emojified(&CowStr::from(before.to_owned()), out);
            rest = after;
            pushed_any = true;
            continue;
        }
        if start > 0 {
            push_emojified(&CowStr::from(rest[..start].to_owned()), out);
        }
        out.push(Event::Start(Tag::Link {
            link_type: LinkType::Autolink,
            dest_url: CowStr::from(url.to_owned()),
            title: CowStr::from(""),
            id: CowStr::from(""),
        }));
        out.push(Event::Text(CowStr::from(url.to_owned())));
        out.push(Event::End(TagEnd::Link));
        rest = &tail[end..];
        pushed_any = true;
    }
    if !pushed_any {
        push_emojified(text, out);
    } else if !rest.is_empty() {
        push_emojified(&CowStr::from(rest.to_owned()), out);
    }
}

/// Where the next `http://` or `https://` starts, at a word boundary.
fn find_url_start(text: &str) -> Option<usize> {
    let mut from = 0;
    while from < text.len() {
        let i = from + text[from..].find("http")?;
        let after = &text[i..];
        let boundary = text[..i].chars().last().is_none_or(|c| !c.is_alphanumeric());
        if boundary && (after.starts_with("http://") || after.starts_with("https://")) {
            return Some(i);
        }
        from = i + "http".len();
    }
    None
}

/// Splits text around `:emoji_name:` shortcodes that name an emoji (not
/// glued to a word on either side), pushing text and emoji spans.
fn push_emojified<'a>(text: &CowStr<'a>, out: &mut Vec<Event<'a>>) {
    if !text.contains(':') {
        out.push(Event::Text(text.clone()));
        return;
    }
    let is_name = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '+' | '-');
    let s: &str = text;
    let mut plain_from = 0;
    let mut i = 0;
    while let Some(open) = s[i..].find(':').map(|o| i + o) {
        let name_len = s[open + 1..].find(|c: char| !is_name(c)).unwrap_or(s.len() - open - 1);
        let close = open + 1 + name_len;
        let glued_before = s[..open].chars().last().is_some_and(|c| c.is_alphanumeric());
        let closes = s[close..].starts_with(':');
        let glued_after = closes && s[close + 1..].chars().next().is_some_and(|c| c.is_alphanumeric());
        let name = &s[open + 1..close];
        match (name_len > 0 && closes && !glued_before && !glued_after).then(|| emoji_code(name)).flatten() {
            Some(code) => {
                if plain_from < open {
                    out.push(Event::Text(CowStr::from(s[plain_from..open].to_owned())));
                }
                let title = escape(&name.replace('_', " "));
                out.push(Event::InlineHtml(CowStr::from(format!(
                    "<span aria-label=\"{title}\" class=\"emoji emoji-{code}\" role=\"img\" title=\"{title}\">:{}:</span>",
                    escape(name)
                ))));
                i = close + 1;
                plain_from = i;
            }
            // Not an emoji: the closing colon may open the next one.
            None => i = if closes { close } else { close.max(open + 1) },
        }
    }
    if plain_from == 0 {
        out.push(Event::Text(text.clone()));
    } else if plain_from < s.len() {
        out.push(Event::Text(CowStr::from(s[plain_from..].to_owned())));
    }
}

fn parse_ref(text: &str) -> Option<MentionRef> {
    if let Some((name, id)) = text.rsplit_once('|') {
        if let Ok(id) = id.trim().parse::<i64>() {
            let _ = name;
            return Some(MentionRef::Id(id));
        }
    }
    let lower = text.trim().to_lowercase();
    if STREAM_WILDCARDS.contains(&lower.as_str()) || lower == "topic" {
        return None;
    }
    Some(MentionRef::Name(text.trim().to_owned()))
}

fn collect_events(content: &str) -> Vec<Event<'_>> {
    TextMergeStream::new(Parser::new_ext(content, options())).collect()
}

/// Every user `content` could mention, for the caller to look up.
pub fn mention_refs(content: &str) -> BTreeSet<MentionRef> {
    let events = collect_events(content);
    find_mentions(&events).iter().filter(|f| !f.channel && !f.group).filter_map(|f| parse_ref(&f.text)).collect()
}

/// Every user group name `content` mentions (`@*name*`, `@_*name*`), for
/// the caller to look up.
pub fn group_refs(content: &str) -> BTreeSet<String> {
    let events = collect_events(content);
    find_mentions(&events).iter().filter(|f| f.group).map(|f| f.text.trim().to_owned()).collect()
}

/// Every channel name `content` links to (`#**name**`, `#**name>topic**`),
/// for the caller to look up.
pub fn channel_refs(content: &str) -> BTreeSet<String> {
    let events = collect_events(content);
    find_mentions(&events)
        .iter()
        .filter(|f| f.channel)
        .map(|f| parse_channel_link(&f.text).0.trim().to_owned())
        .collect()
}

/// Escapes text for HTML.
pub(crate) fn escape_html(s: &str) -> String {
    escape(s)
}

fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

fn safe_url(url: &str) -> bool {
    let u = url.trim().to_ascii_lowercase();
    match u.split_once(':') {
        // No scheme, or the colon comes after a path/query/fragment start.
        None => true,
        Some((scheme, _)) if scheme.contains(['/', '?', '#']) => true,
        Some((scheme, _)) => matches!(scheme, "http" | "https" | "mailto" | "ftp" | "xmpp" | "tel"),
    }
}

/// Renders `content` with no channel links. `resolve` answers each
/// [`MentionRef`]; unresolved mentions stay as literal text.
pub fn render(content: &str, resolve: &dyn Fn(&MentionRef) -> Option<MentionTarget>) -> Rendered {
    render_with(content, resolve, &|_| None)
}

/// Renders `content`: `resolve` answers each [`MentionRef`], `channel`
/// each linked channel name; what is not resolved stays literal text.
pub fn render_with(
    content: &str,
    resolve: &dyn Fn(&MentionRef) -> Option<MentionTarget>,
    channel: &dyn Fn(&str) -> Option<StreamTarget>,
) -> Rendered {
    render_resolved(content, &Resolvers { user: resolve, channel, group: &|_| None })
}

/// Renders `content` with its mentions and links resolved by `with`.
pub fn render_resolved(content: &str, with: &Resolvers<'_>) -> Rendered {
    let events = collect_events(content);
    let found = find_mentions(&events);
    let mut result = Rendered::default();
    let mut out: Vec<Event<'_>> = Vec::with_capacity(events.len());
    let mut next = found.iter().peekable();
    // Link/image nesting: for each open link or image, whether we kept it.
    let mut link_stack: Vec<bool> = Vec::new();
    let mut in_code_block = false;
    let mut i = 0;
    while i < events.len() {
        if let Some(f) = next.peek().filter(|f| f.start == i) {
            let Event::Text(t) = &events[i] else { unreachable!("find_mentions only matches text") };
            let before = &t[..t.len() - f.marker_len()];
            if !before.is_empty() {
                push_emojified(&CowStr::from(before.to_owned()), &mut out);
            }
            let html = if f.channel {
                channel_link_html(f, with.channel)
            } else if f.group {
                group_mention_html(f, with.group, &mut result)
            } else {
                mention_html(f, with.user, &mut result)
            };
            out.push(Event::InlineHtml(CowStr::from(html)));
            i = f.end + 1;
            next.next();
            continue;
        }
        match &events[i] {
            Event::Html(s) | Event::InlineHtml(s) => out.push(Event::Text(s.clone())),
            Event::SoftBreak => out.push(Event::HardBreak),
            Event::Start(Tag::CodeBlock(_)) => {
                in_code_block = true;
                out.push(events[i].clone());
            }
            Event::End(TagEnd::CodeBlock) => {
                in_code_block = false;
                out.push(events[i].clone());
            }
            // Bare URLs become links, as Zulip's autolinking makes them
            // (not inside a link already).
            Event::Text(t) if !in_code_block && link_stack.is_empty() => push_linkified(t, &mut out),
            Event::Text(t) if !in_code_block => push_emojified(t, &mut out),
            Event::Start(Tag::Link { dest_url, .. }) => {
                let keep = safe_url(dest_url);
                link_stack.push(keep);
                if keep {
                    out.push(events[i].clone());
                }
            }
            Event::End(TagEnd::Link) => {
                if link_stack.pop().unwrap_or(false) {
                    out.push(events[i].clone());
                }
            }
            Event::Start(Tag::Image { dest_url, title, id, .. }) => {
                let keep = safe_url(dest_url);
                link_stack.push(keep);
                if keep {
                    out.push(Event::Start(Tag::Link {
                        link_type: LinkType::Inline,
                        dest_url: dest_url.clone(),
                        title: title.clone(),
                        id: id.clone(),
                    }));
                }
            }
            Event::End(TagEnd::Image) => {
                if link_stack.pop().unwrap_or(false) {
                    out.push(Event::End(TagEnd::Link));
                }
            }
            other => out.push(other.clone()),
        }
        i += 1;
    }
    html::push_html(&mut result.html, out.into_iter());
    // pulldown-cmark ends blocks with a newline; Zulip's HTML has none.
    while result.html.ends_with('\n') {
        result.html.pop();
    }
    result
}

fn mention_html(f: &Found, resolve: &dyn Fn(&MentionRef) -> Option<MentionTarget>, r: &mut Rendered) -> String {
    let prefix = if f.silent { "@_" } else { "@" };
    let lower = f.text.trim().to_lowercase();
    if STREAM_WILDCARDS.contains(&lower.as_str()) {
        if !f.silent {
            r.stream_wildcard = true;
        }
        let class = if f.silent {
            "user-mention channel-wildcard-mention silent"
        } else {
            "user-mention channel-wildcard-mention"
        };
        let shown = if f.silent { lower.clone() } else { format!("@{lower}") };
        return format!("<span class=\"{class}\" data-user-id=\"*\">{}</span>", escape(&shown));
    }
    if lower == "topic" {
        if !f.silent {
            r.topic_wildcard = true;
        }
        let class = if f.silent { "topic-mention silent" } else { "topic-mention" };
        let shown = if f.silent { "topic" } else { "@topic" };
        return format!("<span class=\"{class}\">{shown}</span>");
    }
    let target = parse_ref(&f.text).and_then(|m| resolve(&m));
    match target {
        Some(t) => {
            if !f.silent {
                r.mentioned_user_ids.insert(t.id);
            }
            let (class, shown) = if f.silent {
                ("user-mention silent", t.full_name.clone())
            } else {
                ("user-mention", format!("@{}", t.full_name))
            };
            format!("<span class=\"{class}\" data-user-id=\"{}\">{}</span>", t.id, escape(&shown))
        }
        None => escape(&format!("{prefix}**{}**", f.text)),
    }
}

fn group_mention_html(f: &Found, resolve: &dyn Fn(&str) -> Option<GroupTarget>, r: &mut Rendered) -> String {
    match resolve(f.text.trim()) {
        Some(g) => {
            if !f.silent {
                r.mentioned_group_ids.insert(g.id);
            }
            let (class, shown) = if f.silent {
                ("user-group-mention silent", g.name.clone())
            } else {
                ("user-group-mention", format!("@{}", g.name))
            };
            format!("<span class=\"{class}\" data-user-group-id=\"{}\">{}</span>", g.id, escape(&shown))
        }
        // Not a group: the emphasis it also is.
        None => format!("{}<em>{}</em>", if f.silent { "@_" } else { "@" }, escape(&f.text)),
    }
}

/// Renders text with no mention resolution (stream descriptions).
pub fn render_plain(content: &str) -> String {
    render(content, &|_| None).html
}

/// Whether `content` is a `/me` message.
pub fn is_me_message(content: &str) -> bool {
    content.starts_with("/me ") && !content.contains('\n')
}

#[cfg(test)]
mod tests;
