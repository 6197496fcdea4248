//! Link previews end to end: a realm with previews on, a message with a
//! link to a page on a local HTTP server, the `embed_links` worker fetches
//! it and the message gains Zulip's embed markup through a rendering-only
//! `update_message` event; private addresses are refused unless allowed;
//! a page server that is down is retried, then the item dead-lettered.

#![allow(clippy::unwrap_used)] // test code: a panic is a failed assertion

use serde_json::{json, Value};
use squall_e2e::{drain_amqp_queue, fresh_amqp_vhost, sql_query, Client, HttpSink, Server, ServerOptions};
use std::time::{Duration, Instant};

const PAGE: &str = r#"<!doctype html><html><head><title>Fallback title</title>
<meta property="og:title" content="The Rock">
<meta property="og:description" content="Description text">
<meta property="og:image" content="/images/rock.jpg">
</head><body><h1>Hi</h1></body></html>"#;

fn server(amqp: &str, extra: &[(&str, &str)], log: Option<std::path::PathBuf>) -> Server {
    let mut env: Vec<(String, String)> = vec![("SQUALL_WORKERS".into(), "embed_links".into())];
    env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    Server::start_with(ServerOptions { amqp_url: amqp.into(), env, log_file: log, ..ServerOptions::default() }).unwrap()
}

fn previews_on(owner: &Client) {
    let r = owner.raw_form("PATCH", "/api/v1/realm", &[("inline_url_embed_preview", "true")]).unwrap();
    assert_eq!(r.0, 200, "{}", r.1);
}

fn rendered(c: &Client, id: i64) -> String {
    let anchor = id.to_string();
    let (_, body) = c
        .get(
            "/api/v1/messages",
            &[("anchor", &anchor), ("num_before", "0"), ("num_after", "0"), ("apply_markdown", "true")],
        )
        .unwrap();
    body["messages"][0]["content"].as_str().unwrap().to_owned()
}

/// Waits until the worker has dealt with `url` (a `link_preview` row).
fn wait_looked_at(server: &Server, url: &str) -> Option<Value> {
    let start = Instant::now();
    let q = format!("SELECT data FROM link_preview WHERE url = '{url}'");
    loop {
        if let Some(r) = sql_query(&server.database_url, &q).unwrap().into_iter().next() {
            return r.get::<_, Option<Value>>(0);
        }
        assert!(start.elapsed() < Duration::from_secs(20), "{url} was never looked at");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_link_gets_zulips_embed_through_a_rendering_only_update() {
    let pages = HttpSink::start(|_| (200, "text/html; charset=utf-8".into(), PAGE.as_bytes().to_vec())).unwrap();
    let amqp = fresh_amqp_vhost().unwrap();
    let server = server(&amqp, &[("SQUALL_PREVIEW_ALLOW_PRIVATE", "true")], None);
    let owner = &server.owner;
    owner.subscribe(&["general"]).unwrap();

    // Previews off (Zulip's default): nothing is fetched.
    let off_url = format!("{}/off", pages.url);
    owner.send_stream("general", "links", &format!("see {off_url}")).unwrap();

    previews_on(owner);
    let (queue, last, _) = owner.register(&[("event_types", r#"["update_message"]"#)]).unwrap();
    let url = format!("{}/post/1", pages.url);
    let id = owner.send_stream("general", "links", &format!("look at {url} and > not quoted")).unwrap();
    let start = Instant::now();
    let event = loop {
        let (_, body) = owner.get_events(&queue, last, false).unwrap();
        if let Some(e) = body["events"].as_array().unwrap().iter().find(|e| e["type"] == "update_message") {
            break e.clone();
        }
        assert!(start.elapsed() < Duration::from_secs(30), "no update_message: {body}");
    };
    assert_eq!(event["rendering_only"], true);
    assert_eq!(event["user_id"], Value::Null);
    assert_eq!(event["message_id"], json!(id));
    assert_eq!(event["message_ids"], json!([id]));
    assert!(event["flags"].is_array(), "{event}");
    squall_e2e::assert_schema(
        "/events",
        "get",
        200,
        &json!({"result": "success", "msg": "", "queue_id": queue, "events": [event.clone()]}),
    );
    let image = format!("{}/images/rock.jpg", pages.url);
    let embed = format!(
        "<div class=\"message_embed\"><a class=\"message_embed_image\" href=\"{url}\" style=\"background-image: url(&quot;{image}&quot;)\"></a><div class=\"data-container\"><div class=\"message_embed_title\"><a href=\"{url}\" title=\"The Rock\">The Rock</a></div><div class=\"message_embed_description\">Description text</div></div></div>"
    );
    let html = event["rendered_content"].as_str().unwrap();
    assert!(html.ends_with(&embed), "{html}");
    assert_eq!(rendered(owner, id), html, "stored too");
    let got = pages.received();
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0].path, "/post/1");
    assert!(got[0].header("user-agent").unwrap().contains("ZulipURLPreview"));

    // An edit to new content with another link: previewed in turn.
    let url2 = format!("{}/post/2", pages.url);
    let path = format!("/api/v1/messages/{id}");
    let r = owner.raw_form("PATCH", &path, &[("content", &format!("rather {url2}"))]).unwrap();
    assert_eq!(r.0, 200, "{}", r.1);
    let last = event["id"].as_i64().unwrap();
    let start = Instant::now();
    let again = loop {
        let (_, body) = owner.get_events(&queue, last, false).unwrap();
        if let Some(e) = body["events"].as_array().unwrap().iter().find(|e| e["rendering_only"] == true) {
            break e.clone();
        }
        assert!(start.elapsed() < Duration::from_secs(30), "no preview after the edit: {body}");
    };
    let html = again["rendered_content"].as_str().unwrap();
    assert!(html.contains(&format!("href=\"{url2}\" title=\"The Rock\"")), "{html}");
    assert!(!html.contains("/post/1"), "{html}");
    assert_eq!(pages.received().len(), 2);
}

#[test]
fn private_addresses_are_not_fetched_unless_allowed() {
    let pages = HttpSink::start(|_| (200, "text/html".into(), PAGE.as_bytes().to_vec())).unwrap();
    let amqp = fresh_amqp_vhost().unwrap();
    let server = server(&amqp, &[], None);
    let owner = &server.owner;
    owner.subscribe(&["general"]).unwrap();
    previews_on(owner);
    let url = format!("{}/internal", pages.url);
    let id = owner.send_stream("general", "links", &format!("internal {url}")).unwrap();
    assert_eq!(wait_looked_at(&server, &url), None, "looked at, nothing to show");
    // A name that resolves to a private address is refused alike.
    let named = format!("{}/by-name", pages.url.replace("127.0.0.1", "localhost"));
    owner.send_stream("general", "links", &format!("named {named}")).unwrap();
    assert_eq!(wait_looked_at(&server, &named), None);
    assert!(pages.received().is_empty(), "a private address was fetched");
    assert!(!rendered(owner, id).contains("message_embed"));
}

#[test]
fn a_page_server_that_is_down_is_retried_then_dead_lettered() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let log = std::env::temp_dir().join(format!("squall-preview-dead-{}.log", std::process::id()));
    let _ = std::fs::remove_file(&log);
    let amqp = fresh_amqp_vhost().unwrap();
    let server = server(
        &amqp,
        &[
            ("SQUALL_PREVIEW_ALLOW_PRIVATE", "true"),
            ("SQUALL_WORKER_RETRY_BASE_MS", "100"),
            ("SQUALL_WORKER_MAX_ATTEMPTS", "3"),
        ],
        Some(log.clone()),
    );
    let owner = &server.owner;
    owner.subscribe(&["general"]).unwrap();
    previews_on(owner);
    let url = format!("http://127.0.0.1:{port}/gone");
    let id = owner.send_stream("general", "links", &format!("down {url}")).unwrap();
    let start = Instant::now();
    let dead = loop {
        let got = drain_amqp_queue(&amqp, "embed_links.dead").unwrap();
        if !got.is_empty() {
            break got;
        }
        assert!(start.elapsed() < Duration::from_secs(20), "never dead-lettered");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(dead[0]["message_id"], json!(id));
    assert_eq!(dead[0]["urls"], json!([url]));
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(logged.contains("worker item dead-lettered"), "{logged}");
    assert_eq!(logged.matches("will retry").count(), 2, "{logged}");
    assert!(!rendered(owner, id).contains("message_embed"));
}
