//! Markdown → HTML for message content, with Zulip's mention syntax.
//!
//! CommonMark via pulldown-cmark, then a pass over the event stream that:
//! turns `@**Full Name**`, `@**Name|id**`, silent `@_**Name**` and the
//! wildcards (`@**all**`, `@**everyone**`, `@**stream**`, `@**channel**`,
//! `@**topic**`) into Zulip's mention spans; escapes raw HTML instead of
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
}

const STREAM_WILDCARDS: [&str; 4] = ["all", "everyone", "stream", "channel"];

fn options() -> Options {
    Options::ENABLE_STRIKETHROUGH | Options::ENABLE_TABLES
}

/// A mention found in the event stream: index range of its events, whether
/// silent, and the text between the `**`.
struct Found {
    start: usize,
    end: usize,
    silent: bool,
    text: String,
}

/// Finds `@**x**` / `@_**x**` patterns: a text event ending in `@` or `@_`
/// followed by Strong(text).
fn find_mentions(events: &[Event<'_>]) -> Vec<Found> {
    let mut out = Vec::new();
    let mut i = 0;
    while i + 3 < events.len() {
        if let (Event::Text(t), Event::Start(Tag::Strong), Event::Text(inner), Event::End(TagEnd::Strong)) =
            (&events[i], &events[i + 1], &events[i + 2], &events[i + 3])
        {
            let silent = t.ends_with("@_");
            let marker = if silent { 2 } else { 1 };
            if t.ends_with('@') || silent {
                // The `@` must start a word: at the start of the text or after
                // a non-alphanumeric character.
                let before = &t[..t.len() - marker];
                if before.chars().last().is_none_or(|c| !c.is_alphanumeric()) {
                    out.push(Found { start: i, end: i + 3, silent, text: inner.to_string() });
                    i += 4;
                    continue;
                }
            }
        }
        i += 1;
    }
    out
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
    find_mentions(&events).iter().filter_map(|f| parse_ref(&f.text)).collect()
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

/// Renders `content`. `resolve` answers each [`MentionRef`]; unresolved
/// mentions stay as literal text.
pub fn render(content: &str, resolve: &dyn Fn(&MentionRef) -> Option<MentionTarget>) -> Rendered {
    let events = collect_events(content);
    let found = find_mentions(&events);
    let mut result = Rendered::default();
    let mut out: Vec<Event<'_>> = Vec::with_capacity(events.len());
    let mut next = found.iter().peekable();
    // Link/image nesting: for each open link or image, whether we kept it.
    let mut link_stack: Vec<bool> = Vec::new();
    let mut i = 0;
    while i < events.len() {
        if let Some(f) = next.peek().filter(|f| f.start == i) {
            let Event::Text(t) = &events[i] else { unreachable!("find_mentions only matches text") };
            let marker = if f.silent { 2 } else { 1 };
            let before = &t[..t.len() - marker];
            if !before.is_empty() {
                out.push(Event::Text(CowStr::from(before.to_owned())));
            }
            out.push(Event::InlineHtml(CowStr::from(mention_html(f, resolve, &mut result))));
            i = f.end + 1;
            next.next();
            continue;
        }
        match &events[i] {
            Event::Html(s) | Event::InlineHtml(s) => out.push(Event::Text(s.clone())),
            Event::SoftBreak => out.push(Event::HardBreak),
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

/// Renders text with no mention resolution (stream descriptions).
pub fn render_plain(content: &str) -> String {
    render(content, &|_| None).html
}

/// Whether `content` is a `/me` message.
pub fn is_me_message(content: &str) -> bool {
    content.starts_with("/me ") && !content.contains('\n')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn users(m: &MentionRef) -> Option<MentionTarget> {
        let all = [(9, "King Hamlet"), (10, "Othello, the Moor of Venice")];
        all.iter()
            .find(|(id, name)| match m {
                MentionRef::Name(n) => n.eq_ignore_ascii_case(name),
                MentionRef::Id(i) => i == id,
            })
            .map(|(id, name)| MentionTarget { id: *id, full_name: (*name).to_owned() })
    }

    #[test]
    fn plain_markdown() {
        assert_eq!(render("**hi** there", &users).html, "<p><strong>hi</strong> there</p>");
        assert_eq!(render("a\nb", &users).html, "<p>a<br />\nb</p>");
        assert_eq!(render("`x`", &users).html, "<p><code>x</code></p>");
    }

    #[test]
    fn user_mentions() {
        let r = render("hello @**King Hamlet**!", &users);
        assert_eq!(r.html, "<p>hello <span class=\"user-mention\" data-user-id=\"9\">@King Hamlet</span>!</p>");
        assert_eq!(r.mentioned_user_ids, BTreeSet::from([9]));
        let r = render("@**Othello, the Moor of Venice|10** hi", &users);
        assert_eq!(r.mentioned_user_ids, BTreeSet::from([10]));
        assert!(r.html.contains("@Othello, the Moor of Venice</span>"));
    }

    #[test]
    fn silent_mentions_do_not_mention() {
        let r = render("@_**King Hamlet** said", &users);
        assert!(r.mentioned_user_ids.is_empty());
        assert!(r.html.contains("<span class=\"user-mention silent\" data-user-id=\"9\">King Hamlet</span>"));
    }

    #[test]
    fn unknown_and_code_and_email_like() {
        let r = render("@**Nobody** and `@**King Hamlet**` and me@**x**", &users);
        assert!(r.mentioned_user_ids.is_empty());
        assert!(r.html.contains("@**Nobody**"));
        let r = render("```\n@**King Hamlet**\n```", &users);
        assert!(r.mentioned_user_ids.is_empty());
    }

    #[test]
    fn wildcards() {
        let r = render("@**all** look", &users);
        assert!(r.stream_wildcard && !r.topic_wildcard);
        assert!(r.html.contains("data-user-id=\"*\">@all</span>"));
        for w in ["everyone", "stream", "channel"] {
            assert!(render(&format!("@**{w}**"), &users).stream_wildcard, "{w}");
        }
        let r = render("@**topic**", &users);
        assert!(r.topic_wildcard && !r.stream_wildcard);
        assert!(!render("@_**all**", &users).stream_wildcard);
    }

    #[test]
    fn mention_refs_lists_lookups() {
        let refs = mention_refs("@**A b** @**C|12** @**all** `@**D**` @_**E**");
        assert_eq!(
            refs,
            BTreeSet::from([MentionRef::Name("A b".into()), MentionRef::Id(12), MentionRef::Name("E".into())])
        );
    }

    #[test]
    fn html_is_escaped_and_links_sanitised() {
        let r = render("<script>alert(1)</script>", &users);
        assert!(!r.html.contains("<script>"), "{}", r.html);
        assert!(r.html.contains("&lt;script&gt;"));
        let r = render("[x](javascript:alert(1)) [y](https://zulip.com)", &users);
        assert!(!r.html.contains("javascript:"), "{}", r.html);
        assert!(r.html.contains("href=\"https://zulip.com\""));
        let r = render("![pic](https://e.com/a.png)", &users);
        assert!(!r.html.contains("<img"));
        assert!(r.html.contains("href=\"https://e.com/a.png\""));
    }

    #[test]
    fn me_messages() {
        assert!(is_me_message("/me waves"));
        assert!(!is_me_message("/me waves\nmore"));
        assert!(!is_me_message("/mention"));
    }
}
