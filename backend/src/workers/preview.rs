//! Link previews (Zulip's `embed_links` worker, `url_preview` and the
//! Markdown processor's `add_embed`).
//!
//! When a realm has `inline_url_embed_preview` on, a message from a person
//! with links in it (outside quotes, not to this server, not images or
//! videos, at most 24) is queued after it is stored. The worker fetches
//! each page — only from public addresses unless configured otherwise,
//! with a timeout and a size limit, following at most three redirects,
//! each checked again — and reads its Open Graph title, description and
//! image (or its `<title>` and description). If the message is unchanged
//! meanwhile, each preview with an image is appended to the rendered
//! message as Zulip's `message_embed` markup, and an `update_message`
//! event with `rendering_only: true` goes to everyone who has the message.
//! What a page offered is kept in `link_preview` for a day, so a popular
//! link is fetched once.

use super::config::PreviewConfig;
use super::net::{self, permanent, transient, FetchError};
use super::{attribute, decode_entities, escape_html, field, Failure, Workers};
use crate::App;
use futures_util::StreamExt;
use reqwest::Url;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use squall_proto::envelope::{Envelope, Notice, PerUserData};
use std::sync::Arc;
use std::time::Duration;

/// Most links one message may have and still get previews (Zulip's
/// INLINE_PREVIEW_LIMIT_PER_MESSAGE): with more, none.
pub const MAX_LINKS: usize = 24;
/// How previews introduce themselves.
const USER_AGENT: &str = concat!("Mozilla/5.0 (compatible; ZulipURLPreview/", env!("CARGO_PKG_VERSION"), "; Squall)");
/// Pages fetched at once for one message.
const FETCHES_AT_ONCE: usize = 4;
/// Redirects followed per link.
const MAX_REDIRECTS: usize = 3;

/// What a page offers for a preview.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Preview {
    /// Title.
    pub title: Option<String>,
    /// Description.
    pub description: Option<String>,
    /// Absolute image URL.
    pub image: Option<String>,
}

/// The links of a rendered message that want previews, or none when there
/// are more than [`MAX_LINKS`].
pub fn preview_links(html: &str, own_host: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut quote = 0usize;
    let mut rest = html;
    while let Some(lt) = rest.find('<') {
        let Some(gt) = rest[lt..].find('>') else { break };
        let tag = &rest[lt + 1..lt + gt];
        rest = &rest[lt + gt + 1..];
        let lower = tag.to_ascii_lowercase();
        if lower.starts_with("blockquote") {
            quote += 1;
        } else if lower.starts_with("/blockquote") {
            quote = quote.saturating_sub(1);
        } else if quote == 0 && (lower.starts_with("a ") || lower.starts_with("a\t")) {
            let Some(href) = attribute(tag, "href") else { continue };
            let Ok(url) = Url::parse(&href) else { continue };
            if !matches!(url.scheme(), "http" | "https") {
                continue;
            }
            let host = url.host_str().unwrap_or_default().to_ascii_lowercase();
            let authority = match url.port() {
                Some(p) => format!("{host}:{p}"),
                None => host.clone(),
            };
            if host.is_empty() || authority == own_host || host == own_host {
                continue;
            }
            let path = url.path().to_ascii_lowercase();
            let media = [".png", ".jpg", ".jpeg", ".gif", ".webp", ".svg", ".bmp", ".mp4", ".webm"];
            if media.iter().any(|ext| path.ends_with(ext)) {
                continue;
            }
            if !out.contains(&href) {
                out.push(href);
            }
        }
    }
    if out.len() > MAX_LINKS {
        return Vec::new();
    }
    out
}

/// Reads a page's preview: Open Graph first, then the page's own title
/// and description (Zulip's parsers, merged in that order).
pub fn parse_preview(html: &str, base: &Url) -> Option<Preview> {
    let mut og = Preview::default();
    let mut plain = Preview::default();
    let lower = html.to_ascii_lowercase();
    let mut at = 0;
    while let Some(found) = lower[at..].find("<meta") {
        let start = at + found;
        let Some(end) = lower[start..].find('>') else { break };
        let tag = &html[start + 5..start + end];
        at = start + end;
        let key = attribute(tag, "property").or_else(|| attribute(tag, "name")).map(|k| k.to_ascii_lowercase());
        let Some(content) = attribute(tag, "content").map(|c| c.trim().to_owned()).filter(|c| !c.is_empty()) else {
            continue;
        };
        match key.as_deref() {
            Some("og:title") => og.title = og.title.or(Some(content)),
            Some("og:description") => og.description = og.description.or(Some(content)),
            Some("og:image") | Some("og:image:url") => og.image = og.image.or(Some(content)),
            Some("twitter:image") => plain.image = plain.image.or(Some(content)),
            Some("description") => plain.description = plain.description.or(Some(content)),
            _ => {}
        }
    }
    if let Some(t) = lower.find("<title") {
        if let Some(open_end) = lower[t..].find('>') {
            let from = t + open_end + 1;
            if let Some(close) = lower[from..].find("</title") {
                let title = decode_entities(html[from..from + close].trim());
                if !title.is_empty() {
                    plain.title = Some(title);
                }
            }
        }
    }
    let image =
        og.image.or(plain.image).and_then(|i| base.join(&i).ok()).filter(|u| matches!(u.scheme(), "http" | "https"));
    let p = Preview {
        title: og.title.or(plain.title).map(|t| t.chars().take(300).collect()),
        description: og.description.or(plain.description).map(|d| d.chars().take(1000).collect()),
        image: image.map(|u| u.to_string()),
    };
    (p != Preview::default()).then_some(p)
}

/// Zulip's embed markup for `url`, if the preview has an image (Zulip adds
/// none without one).
pub fn embed_html(url: &str, p: &Preview) -> Option<String> {
    let image = p.image.as_ref()?;
    let css = image.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\a ");
    let mut html = format!(
        "<div class=\"message_embed\"><a class=\"message_embed_image\" href=\"{}\" style=\"background-image: url({})\"></a><div class=\"data-container\">",
        escape_html(url),
        escape_html(&format!("\"{css}\""))
    );
    if let Some(t) = &p.title {
        html.push_str(&format!(
            "<div class=\"message_embed_title\"><a href=\"{}\" title=\"{}\">{}</a></div>",
            escape_html(url),
            escape_html(t),
            escape_html(t)
        ));
    }
    if let Some(d) = &p.description {
        html.push_str(&format!("<div class=\"message_embed_description\">{}</div>", escape_html(d)));
    }
    html.push_str("</div></div>");
    Some(html)
}

/// Fetches `url` and reads its preview. `Ok(None)`: the page offers none
/// (not HTML, a 4xx, nothing to show).
pub async fn fetch(cfg: &PreviewConfig, url: &str) -> Result<Option<Preview>, FetchError> {
    let mut current = Url::parse(url).map_err(|e| permanent(format!("{url}: {e}")))?;
    for _ in 0..=MAX_REDIRECTS {
        if !matches!(current.scheme(), "http" | "https") {
            return Err(permanent(format!("{current}: not an http(s) URL")));
        }
        let client = net::pinned_client(
            &current,
            cfg.allow_private_addresses,
            Duration::from_secs(cfg.timeout_secs.max(1)),
            USER_AGENT,
        )
        .await?;
        let mut resp = client.get(current.clone()).send().await.map_err(|e| transient(format!("{current}: {e}")))?;
        if resp.status().is_redirection() {
            let location = resp
                .headers()
                .get(reqwest::header::LOCATION)
                .and_then(|l| l.to_str().ok())
                .ok_or_else(|| permanent(format!("{current}: redirect without a location")))?;
            current = current.join(location).map_err(|e| permanent(format!("{current}: bad redirect: {e}")))?;
            continue;
        }
        if resp.status().is_server_error() {
            return Err(transient(format!("{current}: the server answered {}", resp.status().as_u16())));
        }
        if !resp.status().is_success() {
            return Ok(None);
        }
        let html_type = resp
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|c| c.to_str().ok())
            .is_none_or(|c| c.to_ascii_lowercase().starts_with("text/html"));
        if !html_type {
            return Ok(None);
        }
        let body =
            net::read_capped(&mut resp, cfg.max_bytes).await.map_err(|e| transient(format!("{current}: {e}")))?;
        return Ok(parse_preview(&String::from_utf8_lossy(&body), &current));
    }
    Err(permanent(format!("{url}: more than {MAX_REDIRECTS} redirects")))
}

/// A message that may want previews.
pub(crate) struct Candidate {
    content: String,
    links: Vec<String>,
}

/// The send path's first step, before the message goes out: whether it
/// could want previews (from a person, with links). No I/O.
pub(crate) fn candidate(app: &App, sender: &crate::users::User, content: &str, html: &str) -> Option<Candidate> {
    if sender.is_bot || !html.contains("<a href=\"http") {
        return None;
    }
    let links = preview_links(html, &app.settings.external_host);
    (!links.is_empty()).then(|| Candidate { content: content.to_owned(), links })
}

/// From the send path, before the event goes out: the candidate, if the
/// sender's realm wants previews (one query on the caller's connection,
/// only for messages with links; a failure is logged and means none).
pub(crate) async fn if_wanted(
    db: &impl deadpool_postgres::GenericClient,
    realm_id: i64,
    candidate: Option<Candidate>,
) -> Option<Candidate> {
    let candidate = candidate?;
    let wanted = crate::db::query_one_cached(
        db,
        "SELECT inline_url_embed_preview FROM realm WHERE id = $1",
        &[&(realm_id as i32)],
    )
    .await;
    match wanted {
        Ok(row) if row.get::<_, bool>(0) => Some(candidate),
        Ok(_) => None,
        Err(e) => {
            tracing::warn!(error = %e.msg, "link previews: could not read the realm's setting");
            None
        }
    }
}

/// After the message's event went out: queues it for previews.
pub(crate) fn enqueue(app: &App, realm_id: i64, message_id: i64, candidate: Candidate) {
    let Candidate { content, links } = candidate;
    app.jobs.enqueue(
        super::EMBED_LINKS_QUEUE,
        json!({"message_id": message_id, "message_content": content, "message_realm_id": realm_id, "urls": links}),
    );
}

/// A link's preview: from `link_preview` if fetched within a day, else
/// fetched now and kept. A page that is not there to preview (a private
/// address, not HTML, a 4xx) is no preview, as in Zulip; one that did not
/// answer or answered 5xx is a failure worth retrying.
async fn preview_for(w: &Workers, url: &str) -> Result<Option<Preview>, Failure> {
    let db = w.app.pool.get().await?;
    if let Some(r) = db
        .query_opt("SELECT data FROM link_preview WHERE url = $1 AND fetched_at > now() - interval '1 day'", &[&url])
        .await?
    {
        return Ok(r.get::<_, Option<Value>>(0).and_then(|v| serde_json::from_value(v).ok()));
    }
    drop(db);
    let deadline = Duration::from_secs(w.cfg.previews.timeout_secs.max(1));
    let fetched = tokio::time::timeout(deadline, fetch(&w.cfg.previews, url))
        .await
        .unwrap_or_else(|_| Err(transient(format!("{url}: no complete answer within {deadline:?}"))));
    let preview = match fetched {
        Ok(p) => p,
        Err(e) if e.transient => return Err(Failure::Retry(format!("link preview: {}", e.msg))),
        Err(e) => {
            tracing::info!(url, error = %e.msg, "link preview: page not fetched");
            None
        }
    };
    let data = preview.as_ref().and_then(|p| serde_json::to_value(p).ok());
    let db = w.app.pool.get().await?;
    db.execute(
        "INSERT INTO link_preview (url, data, fetched_at) VALUES ($1, $2, now())
         ON CONFLICT (url) DO UPDATE SET data = $2, fetched_at = now()",
        &[&url, &data],
    )
    .await?;
    Ok(preview)
}

/// Does one item of `embed_links`.
pub async fn handle(w: &Workers, item: &Value) -> Result<(), Failure> {
    let message_id: i64 = field(item, "message_id")?;
    let content: String = field(item, "message_content")?;
    let urls: Vec<String> = field(item, "urls")?;
    // A few pages at once, each within the preview timeout (redirects
    // included), so that 24 slow links stay within the item's time limit.
    let fetched: Vec<(String, Result<Option<Preview>, Failure>)> =
        futures_util::stream::iter(urls.into_iter().take(MAX_LINKS))
            .map(|url| async move {
                let p = preview_for(w, &url).await;
                (url, p)
            })
            .buffered(FETCHES_AT_ONCE)
            .collect()
            .await;
    let mut embeds = Vec::new();
    for (url, p) in fetched {
        if let Some(html) = p?.and_then(|p| embed_html(&url, &p)) {
            embeds.push(html);
        }
    }
    if embeds.is_empty() {
        return Ok(());
    }
    let mut db = w.app.pool.get().await?;
    let tx = db.transaction().await?;
    let Some(row) = tx
        .query_opt("SELECT content, rendered_content, realm_id FROM message WHERE id = $1 FOR UPDATE", &[&message_id])
        .await?
    else {
        return Ok(());
    };
    // Edited meanwhile: the edit queues its own previews.
    if row.get::<_, String>(0) != content {
        return Ok(());
    }
    let mut html: String = row.get(1);
    let before = html.len();
    for e in embeds {
        if !html.contains(&e) {
            html.push_str(&e);
        }
    }
    if html.len() == before {
        return Ok(());
    }
    tx.execute("UPDATE message SET rendered_content = $2 WHERE id = $1", &[&message_id, &html]).await?;
    let holders = crate::actions::edit::row_holders(&tx, message_id).await?;
    tx.commit().await?;
    let realm_id = row.get::<_, i32>(2) as i64;
    let event = json!({
        "type": "update_message",
        "user_id": Value::Null,
        "edit_timestamp": crate::unix_time().as_secs(),
        "message_id": message_id,
        "message_ids": [message_id],
        "content": content,
        "rendered_content": html,
        "rendering_only": true,
    });
    let users = holders
        .into_iter()
        .map(|(id, bits)| {
            let mut data = Map::new();
            data.insert("id".into(), id.into());
            data.insert("flags".into(), json!(squall_proto::flags::api_names(bits)));
            PerUserData { id, data }
        })
        .collect();
    let notice = Notice::PerUser { event: Arc::new(event), users };
    w.app
        .bus
        .publish(Envelope { realm_id, notice })
        .await
        .map_err(|e| Failure::Retry(format!("preview stored, event not delivered: {e}")))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_outside_quotes_to_other_hosts_and_not_media() {
        let html = r#"<p><a href="https://example.com/a?x=1&amp;y=2">a</a> <a href="http://chat.local:9991/#narrow">self</a>
            <a href="https://example.com/pic.png">img</a> <a href="mailto:x@y.z">mail</a></p>
            <blockquote><p><a href="https://quoted.example/">q</a></p></blockquote>
            <p><a href="https://example.com/a?x=1&amp;y=2">again</a> <a href="https://other.example/">b</a></p>"#;
        assert_eq!(
            preview_links(html, "chat.local:9991"),
            vec!["https://example.com/a?x=1&y=2".to_owned(), "https://other.example/".to_owned()]
        );
        let many: String = (0..25).map(|i| format!("<a href=\"https://e{i}.example/\">x</a>")).collect();
        assert!(preview_links(&many, "h").is_empty(), "more than 24 links: none");
    }

    #[test]
    fn open_graph_first_then_the_page() {
        let base = Url::parse("https://example.com/post/1").unwrap();
        let page = r#"<html><head><title>Page &amp; title</title>
            <meta name="description" content="plain description">
            <meta property="og:image" content="/img/cover.jpg">
            <meta property="og:title" content='The "Rock"'></head><body></body></html>"#;
        let p = parse_preview(page, &base).unwrap();
        assert_eq!(p.title.as_deref(), Some("The \"Rock\""));
        assert_eq!(p.description.as_deref(), Some("plain description"));
        assert_eq!(p.image.as_deref(), Some("https://example.com/img/cover.jpg"));
        let bare = parse_preview("<title>Only a title</title>", &base).unwrap();
        assert_eq!((bare.title.as_deref(), bare.image), (Some("Only a title"), None));
        assert!(parse_preview("<p>nothing</p>", &base).is_none());
    }

    #[test]
    fn embed_markup_is_zulips_and_needs_an_image() {
        let p = Preview {
            title: Some("The Rock".into()),
            description: Some("Description text".into()),
            image: Some("http://ia.media-imdb.com/images/rock.jpg".into()),
        };
        assert_eq!(
            embed_html("http://test.org/", &p).unwrap(),
            "<div class=\"message_embed\"><a class=\"message_embed_image\" href=\"http://test.org/\" style=\"background-image: url(&quot;http://ia.media-imdb.com/images/rock.jpg&quot;)\"></a><div class=\"data-container\"><div class=\"message_embed_title\"><a href=\"http://test.org/\" title=\"The Rock\">The Rock</a></div><div class=\"message_embed_description\">Description text</div></div></div>"
        );
        assert!(embed_html("http://test.org/", &Preview { image: None, ..p }).is_none());
    }
}
