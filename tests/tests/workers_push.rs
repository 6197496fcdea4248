//! Mobile push end to end: devices registered over the API, the gateway's
//! item through RabbitMQ, the worker's POST to a push bouncer (a local
//! HTTP server standing in for push.zulipchat.com), removals on read, and
//! what happens when the bouncer fails.

#![allow(clippy::unwrap_used)] // test code: a panic is a failed assertion

use base64::Engine;
use serde_json::{json, Value};
use squall_e2e::{
    assert_error, assert_schema, drain_amqp_queue, fresh_amqp_vhost, sql_query, Client, HttpSink, Server, ServerOptions,
};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const BOUNCER_OK: &str = r#"{"result":"success","msg":"","total_android_devices":1,"total_apple_devices":1}"#;

fn server(amqp: &str, bouncer: &str, extra: &[(&str, &str)], log: Option<std::path::PathBuf>) -> Server {
    let mut env: Vec<(String, String)> = vec![
        ("SQUALL_WORKERS".into(), "missedmessage_mobile_notifications".into()),
        ("SQUALL_PUSH_BOUNCER_URL".into(), bouncer.into()),
        ("SQUALL_ZULIP_ORG_ID".into(), "6cde5f7a-1f7e-4978-9716-49f69ebfc9fe".into()),
        ("SQUALL_ZULIP_ORG_KEY".into(), "secret-org-key".into()),
    ];
    env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    Server::start_with(ServerOptions { amqp_url: amqp.into(), env, log_file: log, ..ServerOptions::default() }).unwrap()
}

fn register_devices(c: &Client) {
    let r = c.post("/api/v1/users/me/android_gcm_reg_id", &[("token", "fcm-token-1")]).unwrap();
    assert_eq!(r.0, 200, "{}", r.1);
    assert_schema("/users/me/android_gcm_reg_id", "post", 200, &r.1);
    let r = c.post("/api/v1/users/me/apns_device_token", &[("token", "c0ffee"), ("appid", "org.zulip.Zulip")]).unwrap();
    assert_eq!(r.0, 200, "{}", r.1);
    assert_schema("/users/me/apns_device_token", "post", 200, &r.1);
}

/// The bouncer's `push/notify` requests, waiting for at least `n`.
fn notifies(bouncer: &HttpSink, n: usize) -> Vec<squall_e2e::Received> {
    let start = Instant::now();
    loop {
        let got: Vec<_> = bouncer.received().into_iter().filter(|r| r.path == "/api/v1/remotes/push/notify").collect();
        if got.len() >= n || start.elapsed() > Duration::from_secs(30) {
            return got;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn dm(from: &Client, to: &Client, content: &str) -> i64 {
    from.send_dm(to.user_id, content).unwrap()
}

#[test]
fn device_registration_checks_its_input() {
    let server = Server::start().unwrap();
    let c = &server.owner;
    assert_error(
        &c.post("/api/v1/users/me/android_gcm_reg_id", &[("token", "")]).unwrap(),
        400,
        "BAD_REQUEST",
        "Empty or invalid length token",
    );
    assert_error(
        &c.post("/api/v1/users/me/apns_device_token", &[("token", "not hex!"), ("appid", "org.zulip.Zulip")]).unwrap(),
        400,
        "BAD_REQUEST",
        "Invalid APNS token",
    );
    assert_error(
        &c.post("/api/v1/users/me/apns_device_token", &[("token", "c0ffee"), ("appid", "bad app/id")]).unwrap(),
        400,
        "BAD_REQUEST",
        "Invalid app ID",
    );
    assert_error(
        &c.delete("/api/v1/users/me/android_gcm_reg_id", &[("token", "nope")]).unwrap(),
        400,
        "BAD_REQUEST",
        "Token does not exist",
    );
    register_devices(c);
    // Registering again is fine; removing works once.
    register_devices(c);
    let r = c.delete("/api/v1/users/me/android_gcm_reg_id", &[("token", "fcm-token-1")]).unwrap();
    assert_eq!(r.0, 200, "{}", r.1);
    assert_schema("/users/me/android_gcm_reg_id", "delete", 200, &r.1);
    assert_error(
        &c.delete("/api/v1/users/me/android_gcm_reg_id", &[("token", "fcm-token-1")]).unwrap(),
        400,
        "BAD_REQUEST",
        "Token does not exist",
    );
}

#[test]
fn a_direct_message_is_pushed_through_the_bouncer_and_removed_when_read() {
    let bouncer = HttpSink::start(|_| (200, "application/json".into(), BOUNCER_OK.into())).unwrap();
    let amqp = fresh_amqp_vhost().unwrap();
    let log = std::env::temp_dir().join(format!("squall-push-{}.log", std::process::id()));
    let _ = std::fs::remove_file(&log);
    let server = server(&amqp, &bouncer.url, &[], Some(log.clone()));
    let phone = server.create_user("phone@example.com", "Phone User").unwrap();
    let no_devices = server.create_user("nodevice@example.com", "No Device").unwrap();
    register_devices(&phone);

    // No devices: nothing to send (the DM to `phone` after it is the marker).
    dm(&server.owner, &no_devices, "nobody's phone");
    let id = dm(&server.owner, &phone, "ring ring <b>&</b>");
    let got = notifies(&bouncer, 1);
    assert_eq!(got.len(), 1, "{got:?}");
    let req = &got[0];
    // Both devices were registered with the bouncer first.
    let registered: Vec<String> = bouncer
        .received()
        .iter()
        .filter(|r| r.path == "/api/v1/remotes/push/register")
        .map(|r| String::from_utf8_lossy(&r.body).into_owned())
        .collect();
    assert_eq!(registered.len(), 2, "{registered:?}");
    assert!(registered.iter().any(|b| b.contains("token=fcm-token-1") && b.contains("token_kind=2")), "{registered:?}");
    assert!(
        registered.iter().any(|b| b.contains("token=c0ffee")
            && b.contains("token_kind=1")
            && b.contains("ios_app_id=org.zulip.Zulip")),
        "{registered:?}"
    );
    assert!(registered.iter().all(|b| b.contains(&format!("user_id={}", phone.user_id))));
    assert_eq!((req.method.as_str(), req.path.as_str()), ("POST", "/api/v1/remotes/push/notify"));
    let auth = base64::engine::general_purpose::STANDARD.encode("6cde5f7a-1f7e-4978-9716-49f69ebfc9fe:secret-org-key");
    assert_eq!(req.header("authorization"), Some(format!("Basic {auth}").as_str()));
    let body = req.json();
    assert_eq!(body["user_id"], json!(phone.user_id));
    assert!(body["user_uuid"].as_str().unwrap().len() == 36 && body["realm_uuid"].as_str().unwrap().len() == 36);
    assert_eq!(body["android_devices"], json!(["fcm-token-1"]));
    assert_eq!(body["apple_devices"], json!(["c0ffee"]));
    let gcm = &body["gcm_payload"];
    assert_eq!(gcm["event"], "message");
    assert_eq!(gcm["zulip_message_id"], json!(id));
    assert_eq!(gcm["content"], "ring ring <b>&</b>");
    assert_eq!(gcm["content_truncated"], false);
    assert_eq!(gcm["sender_full_name"], "Olivia Owner");
    assert_eq!(gcm["recipient_type"], "private");
    assert_eq!(gcm["user_id"], json!(phone.user_id));
    assert_eq!(gcm["realm_name"], "Test Realm");
    assert_eq!(body["gcm_options"], json!({"priority": "high"}));
    let apns = &body["apns_payload"];
    assert_eq!(apns["alert"], json!({"title": "Olivia Owner", "subtitle": "", "body": "ring ring <b>&</b>"}));
    assert_eq!(apns["custom"]["zulip"]["message_ids"], json!([id]));
    let active =
        format!("SELECT flags & 4096 FROM usermessage WHERE message_id = {id} AND user_profile_id = {}", phone.user_id);
    assert_eq!(sql_query(&server.database_url, &active).unwrap()[0].get::<_, i64>(0), 4096);

    // Read on another device: the notification is removed.
    let ids = format!("[{id}]");
    let r = phone.post("/api/v1/messages/flags", &[("messages", &ids), ("op", "add"), ("flag", "read")]).unwrap();
    assert_eq!(r.0, 200, "{}", r.1);
    let got = notifies(&bouncer, 2);
    assert_eq!(got.len(), 2, "{got:?}");
    let body = got[1].json();
    assert_eq!(body["gcm_payload"]["event"], "remove");
    assert_eq!(body["gcm_payload"]["zulip_message_ids"], id.to_string());
    assert_eq!(body["gcm_options"], json!({"priority": "normal"}));
    assert_eq!(body["apns_payload"]["custom"]["zulip"]["event"], "remove");
    let start = Instant::now();
    while sql_query(&server.database_url, &active).unwrap()[0].get::<_, i64>(0) != 0 {
        assert!(start.elapsed() < Duration::from_secs(10), "the active flag was never cleared");
        std::thread::sleep(Duration::from_millis(20));
    }
    // The broker drops every connection (as a restart would): the worker
    // says so, starts again, and the next push goes out.
    squall_e2e::close_amqp_connections(&amqp).unwrap();
    let id2 = dm(&server.owner, &phone, "again");
    let got = notifies(&bouncer, 3);
    assert_eq!(got.len(), 3, "{got:?}");
    assert_eq!(got[2].json()["gcm_payload"]["zulip_message_id"], json!(id2));
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(notifies(&bouncer, 0).len(), 3);
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(logged.contains("worker failed; restarting"), "{logged}");
}

#[test]
fn a_failing_bouncer_is_retried_and_an_unreachable_one_dead_letters_with_a_log_line() {
    // 503 twice, then accepted: the third try delivers, once.
    let calls = Arc::new(AtomicUsize::new(0));
    let c = calls.clone();
    let bouncer = HttpSink::start(move |req| {
        if req.path.ends_with("/notify") && c.fetch_add(1, Ordering::SeqCst) < 2 {
            (503, "application/json".into(), br#"{"result":"error","msg":"busy"}"#.to_vec())
        } else {
            (200, "application/json".into(), BOUNCER_OK.into())
        }
    })
    .unwrap();
    let amqp = fresh_amqp_vhost().unwrap();
    let server1 = server(&amqp, &bouncer.url, &[("SQUALL_WORKER_RETRY_BASE_MS", "100")], None);
    let phone = server1.create_user("phone@example.com", "Phone User").unwrap();
    register_devices(&phone);
    let id = dm(&server1.owner, &phone, "eventually");
    let got = notifies(&bouncer, 3);
    assert_eq!(got.len(), 3);
    assert!(got.iter().all(|r| r.json()["gcm_payload"]["zulip_message_id"] == json!(id)));
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(notifies(&bouncer, 0).len(), 3, "nothing more once it went through");
    drop(server1);

    // Nobody listening: tried max_attempts times, then dead-lettered.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let log = std::env::temp_dir().join(format!("squall-push-dead-{}.log", std::process::id()));
    let _ = std::fs::remove_file(&log);
    let amqp = fresh_amqp_vhost().unwrap();
    let server2 = server(
        &amqp,
        &format!("http://127.0.0.1:{port}"),
        &[("SQUALL_WORKER_RETRY_BASE_MS", "100"), ("SQUALL_WORKER_MAX_ATTEMPTS", "3")],
        Some(log.clone()),
    );
    let phone = server2.create_user("phone@example.com", "Phone User").unwrap();
    register_devices(&phone);
    let id = dm(&server2.owner, &phone, "into the void");
    let dead = "missedmessage_mobile_notifications.dead";
    let start = Instant::now();
    // The two device registrations fail alike; the push is what we want.
    let want = json!({"user_profile_id": phone.user_id, "message_id": id, "trigger": "direct_message", "type": "add", "mentioned_user_group_id": null});
    let mut items: Vec<Value> = Vec::new();
    while !items.contains(&want) {
        items.extend(drain_amqp_queue(&amqp, dead).unwrap());
        assert!(start.elapsed() < Duration::from_secs(30), "never dead-lettered: {items:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
    // Let the registrations finish dying too, then count: every item was
    // tried three times, two retries each.
    std::thread::sleep(Duration::from_secs(2));
    items.extend(drain_amqp_queue(&amqp, dead).unwrap());
    assert_eq!(items.len(), 3, "{items:?}");
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(logged.contains("worker item dead-lettered"), "{logged}");
    assert!(logged.contains("ConnectionError while trying to connect to push notification bouncer"), "{logged}");
    assert_eq!(logged.matches("will retry").count(), 6, "{logged}");
}
