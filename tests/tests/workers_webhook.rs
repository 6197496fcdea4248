//! Outgoing-webhook bots end to end: created with `POST /bots`, triggered
//! by a stream mention or a direct message, their service (a local HTTP
//! server) gets Zulip's payload, and its reply is posted as the bot.

#![allow(clippy::unwrap_used)] // test code: a panic is a failed assertion

use serde_json::{json, Value};
use squall_e2e::{drain_amqp_queue, fresh_amqp_vhost, Client, HttpSink, Server, ServerOptions};
use std::time::{Duration, Instant};

fn server(amqp: &str, extra: &[(&str, &str)], log: Option<std::path::PathBuf>) -> Server {
    let mut env: Vec<(String, String)> = vec![
        ("SQUALL_WORKERS".into(), "outgoing_webhooks".into()),
        // The bots' servers here are on 127.0.0.1.
        ("SQUALL_OUTGOING_WEBHOOK_ALLOW_PRIVATE".into(), "true".into()),
    ];
    env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    Server::start_with(ServerOptions { amqp_url: amqp.into(), env, log_file: log, ..ServerOptions::default() }).unwrap()
}

/// Creates an outgoing-webhook bot calling `url`; returns its id and email.
fn create_bot(owner: &Client, name: &str, short: &str, url: &str) -> (i64, String) {
    let payload_url = json!(url).to_string();
    let (status, body) = owner
        .post(
            "/api/v1/bots",
            &[("full_name", name), ("short_name", short), ("bot_type", "3"), ("payload_url", &payload_url)],
        )
        .unwrap();
    assert_eq!(status, 200, "{body}");
    assert!(body["api_key"].as_str().unwrap().len() == 32, "{body}");
    let (_, me) = owner.get("/api/v1/users", &[]).unwrap();
    let bot = me["members"].as_array().unwrap().iter().find(|u| u["user_id"] == body["user_id"]).cloned().unwrap();
    assert_eq!((bot["is_bot"].clone(), bot["bot_type"].clone()), (json!(true), json!(3)));
    (body["user_id"].as_i64().unwrap(), bot["email"].as_str().unwrap().to_owned())
}

fn owner_id(c: &Client) -> i64 {
    c.get("/api/v1/users/me", &[]).unwrap().1["user_id"].as_i64().unwrap()
}

/// Waits for a message from `sender` newer than `after` that `reader` can
/// see; returns it.
fn wait_message_from(reader: &Client, sender: i64, after: i64) -> Value {
    let start = Instant::now();
    loop {
        let (_, body) =
            reader.get("/api/v1/messages", &[("anchor", "newest"), ("num_before", "20"), ("num_after", "0")]).unwrap();
        if let Some(m) = body["messages"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["sender_id"] == json!(sender) && m["id"].as_i64().unwrap() > after)
        {
            return m.clone();
        }
        assert!(start.elapsed() < Duration::from_secs(20), "no message from {sender} after {after}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_mentioned_or_messaged_bot_calls_its_service_and_answers() {
    let service = HttpSink::start(|req| {
        let data = req.json()["data"].as_str().unwrap_or_default().to_owned();
        let answer = json!({"content": format!("pong to: {data}")});
        (200, "application/json".into(), answer.to_string().into_bytes())
    })
    .unwrap();
    let amqp = fresh_amqp_vhost().unwrap();
    let server = server(&amqp, &[], None);
    let owner = &server.owner;
    let (bot_id, bot_email) = create_bot(owner, "Echo Bot", "echo", &format!("{}/hook", service.url));
    owner.subscribe(&["general"]).unwrap();

    // Plain chatter and a message naming no bot: nobody is called.
    owner.send_stream("general", "bots", "no bot here").unwrap();
    // A stream mention.
    let id = owner.send_stream("general", "bots", "@**Echo Bot** ping").unwrap();
    let got = service.wait_for(1, Duration::from_secs(20));
    assert_eq!(got.len(), 1, "{got:?}");
    let req = &got[0];
    assert_eq!((req.method.as_str(), req.path.as_str()), ("POST", "/hook"));
    assert!(req.header("user-agent").unwrap().starts_with("ZulipOutgoingWebhook/"));
    let body = req.json();
    assert_eq!(body["trigger"], "mention");
    assert_eq!(body["data"], "@**Echo Bot** ping");
    assert_eq!(body["bot_email"], json!(bot_email));
    assert_eq!(body["bot_full_name"], "Echo Bot");
    assert_eq!(body["token"].as_str().unwrap().len(), 32);
    let m = &body["message"];
    assert_eq!((m["id"].clone(), m["type"].clone(), m["subject"].clone()), (json!(id), json!("stream"), json!("bots")));
    assert_eq!(m["display_recipient"], "general");
    assert_eq!(m["content"], "@**Echo Bot** ping");
    assert!(m["rendered_content"].as_str().unwrap().contains("user-mention"), "{m}");
    let reply = wait_message_from(owner, bot_id, id);
    let html = reply["content"].as_str().unwrap();
    assert!(html.starts_with("<p>pong to: <span class=\"user-mention\"") && html.ends_with("ping</p>"), "{html}");
    assert_eq!((reply["type"].clone(), reply["subject"].clone()), (json!("stream"), json!("bots")));
    assert_eq!(reply["display_recipient"], "general");
    assert_eq!(reply["client"], "OutgoingWebhookResponse");

    // A direct message: answered in the same conversation. The bot's own
    // answer does not call the service again (bots never trigger bots).
    let to = format!("[{bot_id}]");
    let (_, sent) =
        owner.post("/api/v1/messages", &[("type", "direct"), ("to", &to), ("content", "hello bot")]).unwrap();
    let dm_id = sent["id"].as_i64().unwrap();
    let got = service.wait_for(2, Duration::from_secs(20));
    assert_eq!(got[1].json()["trigger"], "direct_message");
    let reply = wait_message_from(owner, bot_id, dm_id);
    assert_eq!(reply["type"], "private");
    assert_eq!(reply["content"], "<p>pong to: hello bot</p>");
    let people: Vec<i64> =
        reply["display_recipient"].as_array().unwrap().iter().map(|p| p["id"].as_i64().unwrap()).collect();
    assert!(people.contains(&owner_id(owner)) && people.contains(&bot_id), "{people:?}");
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(service.received().len(), 2, "the bot's replies called nothing");

    // In a private channel the bot is not in, it answers all the same.
    let r = owner
        .post(
            "/api/v1/users/me/subscriptions",
            &[("subscriptions", r#"[{"name": "secret"}]"#), ("invite_only", "true")],
        )
        .unwrap();
    assert_eq!(r.0, 200, "{}", r.1);
    let id = owner.send_stream("secret", "hush", "@**Echo Bot** psst").unwrap();
    let reply = wait_message_from(owner, bot_id, id);
    assert_eq!((reply["display_recipient"].clone(), reply["subject"].clone()), (json!("secret"), json!("hush")));
}

#[test]
fn a_failing_service_is_reported_and_an_unreachable_one_retried_then_dead_lettered() {
    let service = HttpSink::start(|_| (500, "text/plain".into(), b"kaput".to_vec())).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let log = std::env::temp_dir().join(format!("squall-webhook-dead-{}.log", std::process::id()));
    let _ = std::fs::remove_file(&log);
    let amqp = fresh_amqp_vhost().unwrap();
    let server = server(
        &amqp,
        &[("SQUALL_WORKER_RETRY_BASE_MS", "100"), ("SQUALL_WORKER_MAX_ATTEMPTS", "3")],
        Some(log.clone()),
    );
    let owner = &server.owner;
    let (broken_id, _) = create_bot(owner, "Broken Bot", "broken", &service.url);
    let (gone_id, _) = create_bot(owner, "Gone Bot", "gone", &format!("http://127.0.0.1:{port}/"));
    owner.subscribe(&["general"]).unwrap();

    // A 500: said in the conversation, the owner told, not retried.
    let id = owner.send_stream("general", "t", "@**Broken Bot** hi").unwrap();
    let failure = wait_message_from(owner, broken_id, id);
    assert_eq!(failure["content"], "<p>Failure! Third party responded with 500</p>");
    let start = Instant::now();
    let told = loop {
        let (_, body) =
            owner.get("/api/v1/messages", &[("anchor", "newest"), ("num_before", "20"), ("num_after", "0")]).unwrap();
        if let Some(m) = body["messages"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["sender_id"] == json!(broken_id) && m["type"] == "private")
        {
            break m.clone();
        }
        assert!(start.elapsed() < Duration::from_secs(20), "the owner was never told");
        std::thread::sleep(Duration::from_millis(50));
    };
    let text = told["content"].as_str().unwrap();
    assert!(text.contains("triggered an outgoing webhook") && text.contains("status code <em>500</em>"), "{text}");
    assert_eq!(service.received().len(), 1);

    // Nobody listening: three tries, then "Bot is unavailable", the item
    // dead-lettered with a log line.
    let id = owner.send_stream("general", "t", "@**Gone Bot** anyone?").unwrap();
    let failure = wait_message_from(owner, gone_id, id);
    assert_eq!(failure["content"], "<p>Failure! Bot is unavailable</p>");
    let start = Instant::now();
    let dead = loop {
        let got = drain_amqp_queue(&amqp, "outgoing_webhooks.dead").unwrap();
        if !got.is_empty() {
            break got;
        }
        assert!(start.elapsed() < Duration::from_secs(20), "never dead-lettered");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(dead.len(), 1);
    assert_eq!((dead[0]["user_profile_id"].clone(), dead[0]["trigger"].clone()), (json!(gone_id), json!("mention")));
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(logged.contains("worker item dead-lettered"), "{logged}");
    assert_eq!(logged.matches("will retry").count(), 2, "{logged}");
}

#[test]
fn bot_creation_checks_its_input() {
    let server = Server::start().unwrap();
    let o = &server.owner;
    let post = |form: &[(&str, &str)]| o.post("/api/v1/bots", form).unwrap();
    let r = post(&[("full_name", "X"), ("short_name", "bad name!")]);
    assert_eq!((r.0, r.1["msg"].clone()), (400, json!("Bad name or username")));
    let r = post(&[("full_name", "X"), ("short_name", "x"), ("bot_type", "3"), ("payload_url", "\"ftp://x\"")]);
    assert_eq!((r.0, r.1["msg"].clone()), (400, json!("payload_url is not a URL")));
    let r = post(&[
        ("full_name", "X"),
        ("short_name", "x"),
        ("bot_type", "3"),
        ("payload_url", "\"http://x\""),
        ("interface_type", "9"),
    ]);
    assert_eq!((r.0, r.1["msg"].clone()), (400, json!("Invalid interface type")));
    let r = post(&[("full_name", "X"), ("short_name", "x"), ("bot_type", "4")]);
    assert_eq!((r.0, r.1["msg"].clone()), (400, json!("Embedded bots are not enabled.")));
    let r = post(&[("full_name", "X"), ("short_name", "x")]);
    assert_eq!(r.0, 200, "{}", r.1);
    let r = post(&[("full_name", "Y"), ("short_name", "x")]);
    assert_eq!((r.0, r.1["msg"].clone()), (400, json!("Username already in use")));
    // The register `realm_bots` section lists the owner's bots with their services.
    let (_, reg) = o.post("/api/v1/register", &[("fetch_event_types", "[\"realm_bot\"]")]).unwrap();
    let bots = reg["realm_bots"].as_array().unwrap();
    assert_eq!(bots.len(), 1, "{reg}");
    assert_eq!(bots[0]["owner_id"], json!(owner_id(o)));
}

#[test]
fn bots_cannot_call_private_addresses_unless_allowed() {
    let service = HttpSink::json(json!({"content": "internal secrets"})).unwrap();
    let amqp = fresh_amqp_vhost().unwrap();
    let server = Server::start_with(ServerOptions {
        amqp_url: amqp,
        env: vec![("SQUALL_WORKERS".into(), "outgoing_webhooks".into())],
        ..ServerOptions::default()
    })
    .unwrap();
    let owner = &server.owner;
    let url = service.url.replace("127.0.0.1", "localhost");
    let (bot_id, _) = create_bot(owner, "Nosy Bot", "nosy", &url);
    owner.subscribe(&["general"]).unwrap();
    let id = owner.send_stream("general", "t", "@**Nosy Bot** fetch").unwrap();
    let failure = wait_message_from(owner, bot_id, id);
    assert_eq!(failure["content"], "<p>Failure! Bot is unavailable</p>");
    let start = Instant::now();
    loop {
        let (_, body) =
            owner.get("/api/v1/messages", &[("anchor", "newest"), ("num_before", "20"), ("num_after", "0")]).unwrap();
        let told = body["messages"].as_array().unwrap().iter().any(|m| {
            m["sender_id"] == json!(bot_id)
                && m["type"] == "private"
                && m["content"].as_str().unwrap_or_default().contains("private or disallowed network")
        });
        if told {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(20), "the owner was never told");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(service.received().is_empty(), "the private address was called");
}
