//! A bot from the `zulip-bots` package (PyPI), run with its own
//! `zulip-run-bot`, answers a mention on a real server. Needs the
//! virtualenv `tools/test` creates at `.squall/venv`.

#![allow(clippy::unwrap_used)] // test code: a panic is a failed assertion

use serde_json::{json, Value};
use squall_e2e::{workspace_root, Server};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Kills the bot when the test ends, passing or not.
struct Bot(std::process::Child);

impl Drop for Bot {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn the_bundled_helloworld_bot_answers_a_mention_and_reacts() {
    let run_bot = workspace_root().join(".squall/venv/bin/zulip-run-bot");
    assert!(run_bot.exists(), "{} not found: run tools/test (it installs zulip-bots)", run_bot.display());
    let server = Server::start().unwrap();
    let bot = server.create_user("helper-bot@example.com", "Helper Bot").unwrap();
    let alice = server.create_user("alice@example.com", "Alice").unwrap();
    let dir = std::env::temp_dir().join(format!("squall-bot-{}", rand::random::<u64>()));
    std::fs::create_dir_all(&dir).unwrap();
    let rc = dir.join("zuliprc");
    std::fs::write(&rc, format!("[api]\nemail={}\nkey={}\nsite={}\n", bot.email, bot.api_key, server.url)).unwrap();
    let log = dir.join("bot.log");
    let _bot = Bot(Command::new(&run_bot)
        .args(["helloworld", "--config-file"])
        .arg(&rc)
        .current_dir(&dir)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap());
    let bot_log = || std::fs::read_to_string(&log).unwrap_or_default();
    // The bot is listening once its long-poll is parked.
    if let Err(e) = server.wait_parked(1) {
        panic!("the bot never listened ({e}); its log:\n{}", bot_log());
    }
    let asked = alice.send_stream("general", "bots", "@**Helper Bot** hello?").unwrap();

    let deadline = Instant::now() + Duration::from_secs(20);
    let (reply, reactions) = loop {
        let (_, body) = alice
            .get(
                "/api/v1/messages",
                &[("anchor", &asked.to_string()), ("num_before", "0"), ("num_after", "5"), ("apply_markdown", "false")],
            )
            .unwrap();
        let messages = body["messages"].as_array().unwrap();
        let reply = messages.iter().find(|m| m["sender_id"] == json!(bot.user_id)).cloned();
        let reactions = messages.iter().find(|m| m["id"] == json!(asked)).map(|m| m["reactions"].clone());
        if let (Some(reply), Some(r)) = (&reply, &reactions) {
            if r.as_array().is_some_and(|r| !r.is_empty()) {
                break (reply.clone(), r.clone());
            }
        }
        assert!(Instant::now() < deadline, "no answer from the bot: {body}\nits log:\n{}", bot_log());
        std::thread::sleep(Duration::from_millis(100));
    };
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(reply["content"], "beep boop");
    assert_eq!(reply["subject"], "bots", "answered in the same topic");
    assert_eq!(reactions[0]["emoji_name"], "wave");
    assert_eq!(reactions[0]["user_id"], Value::from(bot.user_id));
}
