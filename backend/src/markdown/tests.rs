//! Unit tests of `markdown`.

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

fn channels(name: &str) -> Option<StreamTarget> {
    (name.eq_ignore_ascii_case("Verona") || name == "Rome. Italy")
        .then(|| StreamTarget { id: if name == "Rome. Italy" { 12 } else { 9 }, name: name.to_owned() })
}

#[test]
fn channel_and_topic_links() {
    let r = render_with("see #**Verona** and #**Verona>lunch time**", &users, &channels);
    assert_eq!(
        r.html,
        "<p>see <a class=\"stream\" data-stream-id=\"9\" href=\"/#narrow/channel/9-Verona\">#Verona</a> and \
         <a class=\"stream-topic\" data-stream-id=\"9\" href=\"/#narrow/channel/9-Verona/topic/lunch.20time\">\
         #Verona &gt; lunch time</a></p>"
    );
    // Zulip's hash encoding: spaces in names become '-', '.' and other
    // bytes become .XX.
    let r = render_with("#**Rome. Italy**", &users, &channels);
    assert!(r.html.contains("href=\"/#narrow/channel/12-Rome.2E-Italy\""), "{}", r.html);
    // Unknown channels and code stay literal; links are not mentions.
    let r = render_with("#**Nowhere** `#**Verona**`", &users, &channels);
    assert_eq!(r.html, "<p>#**Nowhere** <code>#**Verona**</code></p>");
    assert!(r.mentioned_user_ids.is_empty());
    assert_eq!(channel_refs("#**Verona>x** #**Rome** @**Verona**"), BTreeSet::from(["Rome".into(), "Verona".into()]));
    assert_eq!(mention_refs("#**Verona**"), BTreeSet::new());
}

#[test]
fn emoji_shortcodes() {
    let r = render("good :thumbsup: :not_an_emoji: a:smile:b", &users);
    assert_eq!(
        r.html,
        "<p>good <span aria-label=\"thumbsup\" class=\"emoji emoji-1f44d\" role=\"img\" title=\"thumbsup\">\
         :thumbsup:</span> :not_an_emoji: a:smile:b</p>"
    );
    // Adjacent shortcodes, underscores shown as spaces in the title,
    // variation selectors dropped from the code.
    let r = render(":smile::heart: :slightly_smiling_face:", &users);
    assert!(r.html.contains("emoji-1f604"), "{}", r.html);
    assert!(r.html.contains("class=\"emoji emoji-2764\""), "{}", r.html);
    assert!(r.html.contains("title=\"slightly smiling face\""), "{}", r.html);
    // Never inside code.
    assert_eq!(render("`:smile:`", &users).html, "<p><code>:smile:</code></p>");
    assert_eq!(render("```\n:smile:\n```", &users).html, "<pre><code>:smile:\n</code></pre>");
    // Times and ratios are not emoji.
    assert_eq!(render("at 10:30:45", &users).html, "<p>at 10:30:45</p>");
}

#[test]
fn bare_urls_become_links_without_their_trailing_punctuation() {
    let html = |s: &str| render(s, &|_| None).html;
    assert_eq!(
        html("see https://example.com/docs."),
        r#"<p>see <a href="https://example.com/docs">https://example.com/docs</a>.</p>"#
    );
    assert_eq!(
        html("(at http://example.com/a_(b)) and more"),
        r#"<p>(at <a href="http://example.com/a_(b)">http://example.com/a_(b)</a>) and more</p>"#
    );
    // Not inside code, not inside a link already, not a scheme alone.
    assert_eq!(html("`https://x.org`"), "<p><code>https://x.org</code></p>");
    assert_eq!(html("[docs](https://x.org)"), r#"<p><a href="https://x.org">docs</a></p>"#);
    assert_eq!(html("just https:// here"), "<p>just https:// here</p>");
    assert_eq!(html("xhttps://glued.example"), "<p>xhttps://glued.example</p>");
    assert_eq!(
        html("two https://a.org, https://b.org!"),
        r#"<p>two <a href="https://a.org">https://a.org</a>, <a href="https://b.org">https://b.org</a>!</p>"#
    );
}

#[test]
fn group_mentions_resolve_by_name_and_stay_emphasis_otherwise() {
    let group =
        |name: &str| (name.eq_ignore_ascii_case("support")).then(|| GroupTarget { id: 7, name: "support".into() });
    let with = Resolvers { user: &|_| None, channel: &|_| None, group: &group };
    let r = render_resolved("ping @*Support* and @_*support*, not @*other* or `@*support*`", &with);
    assert_eq!(
        r.html,
        "<p>ping <span class=\"user-group-mention\" data-user-group-id=\"7\">@support</span> and \
         <span class=\"user-group-mention silent\" data-user-group-id=\"7\">support</span>, not @<em>other</em> \
         or <code>@*support*</code></p>"
    );
    assert_eq!(r.mentioned_group_ids, BTreeSet::from([7]));
    assert!(r.mentioned_user_ids.is_empty());
    assert_eq!(group_refs("@*a b* @**user** @_*c* *d*"), BTreeSet::from(["a b".to_owned(), "c".to_owned()]));
    assert_eq!(mention_refs("@*a b*"), BTreeSet::new(), "a group is not a user");
}
