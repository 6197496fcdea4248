//! Missed-message emails end to end: the gateway decides, RabbitMQ carries
//! the item, the worker batches it in PostgreSQL and sends it to a real
//! SMTP server (aiosmtpd), which keeps what arrives.

#![allow(clippy::unwrap_used)] // test code: a panic is a failed assertion

use serde_json::Value;
use squall_e2e::{fresh_amqp_vhost, sql_query, Client, Server, ServerOptions, SmtpSink};
use std::time::{Duration, Instant};

fn server_with(smtp: &SmtpSink, delay_secs: u64, extra: &[(&str, &str)]) -> Server {
    let mut env = smtp.env();
    env.push(("SQUALL_WORKERS".into(), "missedmessage_emails".into()));
    env.push(("SQUALL_MISSED_MESSAGE_EMAIL_DELAY_SECS".into(), delay_secs.to_string()));
    env.push(("SQUALL_NOREPLY_EMAIL_ADDRESS".into(), "noreply@squall.example".into()));
    env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    Server::start_with(ServerOptions { amqp_url: fresh_amqp_vhost().unwrap(), env, ..ServerOptions::default() })
        .unwrap()
}

fn dm(from: &Client, to: &Client, content: &str) -> i64 {
    from.send_dm(to.user_id, content).unwrap()
}

/// Waits until the schedule row of `message_id` has an outcome; returns it.
fn wait_outcome(server: &Server, message_id: i64) -> String {
    let start = Instant::now();
    let q =
        format!("SELECT outcome FROM scheduled_message_email WHERE message_id = {message_id} AND outcome IS NOT NULL");
    loop {
        if let Some(r) = sql_query(&server.database_url, &q).unwrap().into_iter().next() {
            return r.get(0);
        }
        assert!(start.elapsed() < Duration::from_secs(30), "message {message_id} never got an outcome");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits until the worker has written the item for `message_id` to its
/// schedule (the item is acknowledged after that).
fn wait_scheduled(server: &Server, message_id: i64) {
    let start = Instant::now();
    let q = format!("SELECT 1 FROM scheduled_message_email WHERE message_id = {message_id}");
    while sql_query(&server.database_url, &q).unwrap().is_empty() {
        assert!(start.elapsed() < Duration::from_secs(20), "message {message_id} was never scheduled for an email");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn to_of(mail: &Value) -> String {
    mail["rcpt_tos"][0].as_str().unwrap_or_default().to_owned()
}

#[test]
fn a_mentioned_offline_user_gets_one_email_after_the_delay() {
    let smtp = SmtpSink::start().unwrap();
    let server = server_with(&smtp, 2, &[]);
    let away = server.create_user("away@example.com", "Away User").unwrap();
    server.owner.subscribe(&["general"]).unwrap();
    away.subscribe(&["general"]).unwrap();

    let sent_at = Instant::now();
    let id = server.owner.send_stream("general", "lunch", "@**Away User** are you coming?\nsecond line").unwrap();
    server.owner.send_stream("general", "lunch", "plain chatter, no mention").unwrap();
    let mails = smtp.wait_for(1, Duration::from_secs(30));
    let waited = sent_at.elapsed();
    assert_eq!(mails.len(), 1, "{mails:?}");
    assert!(waited >= Duration::from_millis(1500), "sent after {waited:?}, before the 2 s batching delay");
    let mail = &mails[0];
    assert_eq!(to_of(mail), "away@example.com");
    assert_eq!(mail["subject"], "#general > lunch");
    let from = mail["headers"]["From"].as_str().unwrap();
    assert!(from.ends_with("<noreply@squall.example>"), "{from}");
    assert!(from.contains("notifications"), "{from}");
    let text = mail["text"].as_str().unwrap();
    assert!(text.contains("> @**Away User** are you coming?\n> second line"), "{text}");
    assert!(!text.contains("plain chatter"), "only the notified message: {text}");
    assert!(text.contains("because you were personally mentioned"), "{text}");
    assert!(text.contains(&format!("/near/{id}")), "a link to the message: {text}");
    assert!(text.contains("#settings/notifications"), "{text}");
    let html = mail["html"].as_str().unwrap();
    assert!(html.contains("are you coming?") && html.contains("<b>Olivia Owner</b>"), "{html}");
    assert_eq!(mail["headers"]["List-Unsubscribe-Post"], "List-Unsubscribe=One-Click");

    // Nothing more comes: one email per batch.
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(smtp.messages().len(), 1);

    // One-click unsubscribe, as a mail client does it (no login).
    let header = mail["headers"]["List-Unsubscribe"].as_str().unwrap();
    let link = header.trim_start_matches('<').trim_end_matches('>');
    assert!(text.contains(link), "the link is in the footer too: {text}");
    let path = link.split_once("/accounts/").map(|(_, p)| format!("/accounts/{p}")).unwrap();
    let anon = Client::anonymous(&server.url);
    let bad = anon.post("/accounts/unsubscribe/missed_messages/0123456789abcdef0123456789abcdef", &[]).unwrap();
    assert_eq!(bad.0, 404, "{}", bad.1);
    let (status, body) = anon.post(&path, &[("List-Unsubscribe", "One-Click")]).unwrap();
    assert_eq!(status, 200, "{body}");
    let (_, reg) = away.post("/api/v1/register", &[("fetch_event_types", r#"["user_settings"]"#)]).unwrap();
    assert_eq!(reg["user_settings"]["enable_offline_email_notifications"], false, "{reg}");
    // No more emails for them; another away user still gets theirs.
    let other = server.create_user("other@example.com", "Other User").unwrap();
    other.subscribe(&["general"]).unwrap();
    server.owner.send_stream("general", "lunch", "@**Away User** @**Other User** again").unwrap();
    let mails = smtp.wait_for(2, Duration::from_secs(30));
    assert_eq!(mails.len(), 2, "{mails:?}");
    assert_eq!(to_of(&mails[1]), "other@example.com");
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(smtp.messages().len(), 2, "nothing for the unsubscribed user");
}

#[test]
fn direct_messages_are_batched_and_reading_first_cancels_the_email() {
    let smtp = SmtpSink::start().unwrap();
    let server = server_with(&smtp, 3, &[]);
    let away = server.create_user("away@example.com", "Away User").unwrap();
    let other = server.create_user("other@example.com", "Other User").unwrap();

    // Read before the delay ends: no email about it.
    let read_id = dm(&server.owner, &other, "seen in time");
    wait_scheduled(&server, read_id);
    let ids = format!("[{read_id}]");
    let (status, body) =
        other.post("/api/v1/messages/flags", &[("messages", &ids), ("op", "add"), ("flag", "read")]).unwrap();
    assert_eq!(status, 200, "{body}");

    // Two unread DMs to another user: one email with both.
    let first = dm(&server.owner, &away, "first unread");
    let second = dm(&server.owner, &away, "second unread");
    let mails = smtp.wait_for(1, Duration::from_secs(30));
    assert_eq!(mails.len(), 1, "{mails:?}");
    assert_eq!(to_of(&mails[0]), "away@example.com");
    assert!(mails[0]["subject"].as_str().unwrap().starts_with("DMs with "), "{}", mails[0]["subject"]);
    let text = mails[0]["text"].as_str().unwrap();
    assert!(text.contains("> first unread") && text.contains("> second unread"), "{text}");
    // The read message was looked at and skipped, not sent.
    assert_eq!(wait_outcome(&server, read_id), "skipped: read or active since");
    wait_outcome(&server, second);
    let sent = sql_query(
        &server.database_url,
        &format!(
            "SELECT count(*) FROM scheduled_message_email WHERE message_id IN ({first}, {second}) AND outcome = 'sent'"
        ),
    )
    .unwrap();
    assert_eq!(sent[0].get::<_, i64>(0), 2);
    assert!(smtp.messages().iter().all(|m| to_of(m) != "other@example.com"));
}

#[test]
fn killing_the_worker_mid_batch_loses_nothing_and_sends_nothing_twice() {
    let smtp = SmtpSink::start().unwrap();
    let mut server = server_with(&smtp, 4, &[]);
    let away = server.create_user("away@example.com", "Away User").unwrap();
    let id = dm(&server.owner, &away, "do not lose me");
    wait_scheduled(&server, id);
    // Killed (SIGKILL) while the batch waits out its delay.
    server.crash_and_restart_in_place().unwrap();
    let owner = server.owner.clone();
    let later = dm(&owner, &server.client_for(&away), "sent after the restart");
    let mails = smtp.wait_for(1, Duration::from_secs(30));
    assert_eq!(mails.len(), 1, "{mails:?}");
    let text = mails[0]["text"].as_str().unwrap();
    assert!(text.contains("do not lose me") && text.contains("sent after the restart"), "{text}");
    // Killed again once the sent batch is recorded: it is not sent again.
    assert_eq!(wait_outcome(&server, id), "sent");
    server.crash_and_restart_in_place().unwrap();
    let marker = dm(&server.owner, &server.client_for(&away), "marker");
    let mails = smtp.wait_for(2, Duration::from_secs(30));
    assert_eq!(mails.len(), 2, "{mails:?}");
    let text = mails[1]["text"].as_str().unwrap();
    assert!(text.contains("marker") && !text.contains("do not lose me"), "{text}");
    let _ = (later, marker);
}

#[test]
fn an_smtp_server_refusing_is_retried_then_given_up_with_a_log_line() {
    // Refuses once: the retry delivers.
    let smtp = SmtpSink::start_failing(1).unwrap();
    let server = server_with(&smtp, 1, &[("SQUALL_WORKER_RETRY_BASE_MS", "200")]);
    let away = server.create_user("away@example.com", "Away User").unwrap();
    let id = dm(&server.owner, &away, "try again");
    let mails = smtp.wait_for(1, Duration::from_secs(30));
    assert_eq!(mails.len(), 1);
    let row = sql_query(
        &server.database_url,
        &format!("SELECT attempts, outcome FROM scheduled_message_email WHERE message_id = {id}"),
    )
    .unwrap();
    assert_eq!((row[0].get::<_, i32>(0), row[0].get::<_, Option<String>>(1).as_deref()), (1, Some("sent")));

    // Refuses always: given up after the configured attempts, logged.
    let smtp = SmtpSink::start_failing(-1).unwrap();
    let log = std::env::temp_dir().join(format!("squall-email-dead-{}.log", std::process::id()));
    let _ = std::fs::remove_file(&log);
    let mut env = smtp.env();
    for (k, v) in [
        ("SQUALL_WORKERS", "missedmessage_emails"),
        ("SQUALL_MISSED_MESSAGE_EMAIL_DELAY_SECS", "1"),
        ("SQUALL_WORKER_RETRY_BASE_MS", "100"),
        ("SQUALL_WORKER_MAX_ATTEMPTS", "3"),
    ] {
        env.push((k.into(), v.into()));
    }
    let server = Server::start_with(ServerOptions {
        amqp_url: fresh_amqp_vhost().unwrap(),
        env,
        log_file: Some(log.clone()),
        ..ServerOptions::default()
    })
    .unwrap();
    let away = server.create_user("away@example.com", "Away User").unwrap();
    let id = dm(&server.owner, &away, "never delivered");
    let start = Instant::now();
    let q = format!(
        "SELECT attempts, outcome FROM scheduled_message_email WHERE message_id = {id} AND done_at IS NOT NULL"
    );
    let row = loop {
        let rows = sql_query(&server.database_url, &q).unwrap();
        if let Some(r) = rows.into_iter().next() {
            break r;
        }
        assert!(start.elapsed() < Duration::from_secs(30), "the email was never given up");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(row.get::<_, i32>(0), 2, "two failed tries recorded, the third gave up");
    assert!(row.get::<_, String>(1).starts_with("failed: SMTP"), "{}", row.get::<_, String>(1));
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(logged.contains("missed-message email dead-lettered"), "{logged}");
    assert!(smtp.messages().is_empty());
}

/// `squall worker` on its own: the server runs no workers, a separate
/// worker process sends the emails; killed mid-batch and started again,
/// it sends the email once.
#[test]
fn a_separate_worker_process_killed_mid_batch_sends_once() {
    use std::process::{Command, Stdio};
    let smtp = SmtpSink::start().unwrap();
    let amqp = fresh_amqp_vhost().unwrap();
    let server = Server::start_with(ServerOptions { amqp_url: amqp.clone(), ..ServerOptions::default() }).unwrap();
    let away = server.create_user("away@example.com", "Away User").unwrap();
    let worker = || {
        Command::new(squall_e2e::squall_bin())
            .args(["worker", "--queues", "missedmessage_emails"])
            .env("SQUALL_DATABASE_URL", &server.database_url)
            .env("SQUALL_AMQP_URL", &amqp)
            .env("SQUALL_EMAIL_HOST", "127.0.0.1")
            .env("SQUALL_EMAIL_PORT", smtp.port.to_string())
            .env("SQUALL_MISSED_MESSAGE_EMAIL_DELAY_SECS", "3")
            .env("SQUALL_LOG", "warn")
            .stdout(Stdio::null())
            .spawn()
            .unwrap()
    };
    let mut first = worker();
    let id = dm(&server.owner, &away, "carried across a worker crash");
    wait_scheduled(&server, id);
    first.kill().unwrap();
    first.wait().unwrap();
    let mut second = worker();
    let mails = smtp.wait_for(1, Duration::from_secs(30));
    assert_eq!(mails.len(), 1, "{mails:?}");
    assert!(mails[0]["text"].as_str().unwrap().contains("carried across a worker crash"));
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(smtp.messages().len(), 1);
    second.kill().unwrap();
    second.wait().unwrap();

    // Queues that send events need the server's event path: refused here.
    let out = Command::new(squall_e2e::squall_bin())
        .args(["worker", "--queues", "embed_links"])
        .env("SQUALL_DATABASE_URL", &server.database_url)
        .env("SQUALL_AMQP_URL", &amqp)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("embed_links send events"), "{err}");
}

#[test]
fn a_user_active_again_before_the_delay_gets_no_email() {
    let smtp = SmtpSink::start().unwrap();
    let server = server_with(&smtp, 3, &[]);
    let back = server.create_user("back@example.com", "Back User").unwrap();
    let away = server.create_user("away@example.com", "Away User").unwrap();
    let seen = dm(&server.owner, &back, "you will see this");
    wait_scheduled(&server, seen);
    std::thread::sleep(Duration::from_millis(50));
    let (status, body) = back.post("/api/v1/users/me/presence", &[("status", "active")]).unwrap();
    assert_eq!(status, 200, "{body}");
    let missed = dm(&server.owner, &away, "you will miss this");
    let mails = smtp.wait_for(1, Duration::from_secs(30));
    assert_eq!(mails.len(), 1, "{mails:?}");
    assert_eq!(to_of(&mails[0]), "away@example.com");
    assert_eq!(wait_outcome(&server, seen), "skipped: read or active since");
    assert_eq!(wait_outcome(&server, missed), "sent");
    assert_eq!(smtp.messages().len(), 1);
}

#[test]
fn with_no_email_host_the_email_is_logged_instead() {
    let log = std::env::temp_dir().join(format!("squall-email-log-{}.log", std::process::id()));
    let _ = std::fs::remove_file(&log);
    let env = [
        ("SQUALL_WORKERS", "missedmessage_emails"),
        ("SQUALL_MISSED_MESSAGE_EMAIL_DELAY_SECS", "1"),
        ("SQUALL_LOG", "info,squall::access=warn"),
    ];
    let server = Server::start_with(ServerOptions {
        amqp_url: fresh_amqp_vhost().unwrap(),
        env: env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        log_file: Some(log.clone()),
        ..ServerOptions::default()
    })
    .unwrap();
    let away = server.create_user("away@example.com", "Away User").unwrap();
    let id = dm(&server.owner, &away, "nowhere to send");
    assert_eq!(wait_outcome(&server, id), "logged: no email host");
    let logged = std::fs::read_to_string(&log).unwrap();
    let line = logged.lines().find(|l| l.contains("email not sent: no email host is configured")).unwrap_or_default();
    assert!(line.contains("away@example.com") && line.contains("DMs with Olivia Owner"), "{logged}");
}
