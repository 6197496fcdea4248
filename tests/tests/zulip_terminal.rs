//! The official terminal client, zulip-terminal 0.7.0, against Squall in a
//! real terminal (tmux): it starts and shows its main screen with the
//! realm's messages, receives a live message, adds a reaction with `+`,
//! searches with `/`, edits with `e`, and opens a direct-message
//! conversation with `P` and `z`.
//! `tools/test` installs it (it needs a Python older than 3.11) and sets
//! `SQUALL_ZULIP_TERM`.

#![allow(clippy::unwrap_used)] // test code: a panic is a failed assertion

use squall_e2e::{workspace_root, Client, Server};
use std::process::Command;
use std::time::{Duration, Instant};

fn zulip_term() -> String {
    let path = std::env::var("SQUALL_ZULIP_TERM")
        .unwrap_or_else(|_| workspace_root().join(".squall/zt-venv/bin/zulip-term").to_string_lossy().into_owned());
    assert!(
        std::path::Path::new(&path).exists(),
        "{path} not found: run tools/test (it installs zulip-term 0.7.0) or set SQUALL_ZULIP_TERM"
    );
    path
}

/// The id of the newest message `c` can see.
fn last_message_id(c: &Client) -> i64 {
    let (_, body) =
        c.get("/api/v1/messages", &[("anchor", "newest"), ("num_before", "1"), ("num_after", "0")]).unwrap();
    body["messages"][0]["id"].as_i64().unwrap()
}

/// The raw content of message `id`.
fn content_of(c: &Client, id: i64) -> String {
    let (_, body) = c.get(&format!("/api/v1/messages/{id}"), &[]).unwrap();
    body["raw_content"].as_str().unwrap_or_default().to_owned()
}

/// Polls `done` for up to 20 s.
fn wait_until(term: &Tmux, what: &str, done: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !done() {
        assert!(Instant::now() < deadline, "{what}; screen:\n{}", term.screen());
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// A tmux session running one command, killed when dropped.
struct Tmux(String);

impl Tmux {
    /// Runs `command` in `dir` (zulip-terminal writes its logs there).
    fn start(command: &str, dir: &std::path::Path) -> Tmux {
        let name = format!("squall-zt-{:x}", rand::random::<u32>());
        let dir = dir.to_string_lossy();
        let ok = Command::new("tmux")
            .args(["new-session", "-d", "-s", &name, "-x", "160", "-y", "45", "-c", &dir, command])
            .status()
            .expect("tmux runs");
        assert!(ok.success(), "tmux new-session failed");
        Tmux(name)
    }

    fn screen(&self) -> String {
        let out = Command::new("tmux").args(["capture-pane", "-p", "-t", &self.0]).output().expect("capture-pane");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn keys(&self, keys: &[&str]) {
        for k in keys {
            Command::new("tmux").args(["send-keys", "-t", &self.0, k]).status().expect("send-keys");
            std::thread::sleep(Duration::from_millis(300));
        }
    }

    /// Waits (up to 30 s) until the screen holds every one of `texts`.
    fn wait_for(&self, texts: &[&str], log: &std::path::Path) -> String {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let screen = self.screen();
            if texts.iter().all(|t| screen.contains(t)) {
                return screen;
            }
            if Instant::now() > deadline {
                let err = std::fs::read_to_string(log).unwrap_or_default();
                let dir = log.parent().unwrap_or(log);
                let tb = std::fs::read_to_string(dir.join("zulip-terminal-tracebacks.log")).unwrap_or_default();
                panic!("zulip-terminal never showed {texts:?}; screen:\n{screen}\nstderr:\n{err}\ntracebacks:\n{tb}");
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux").args(["kill-session", "-t", &self.0]).status();
    }
}

#[test]
fn zulip_terminal_starts_shows_receives_reacts_searches_edits_and_opens_a_dm() {
    let zt = zulip_term();
    let server = Server::start().unwrap();
    let first = server.owner.send_stream("general", "greetings", "hello from the server").unwrap();
    // Users exist before the client starts: zulip-terminal 0.7 does not
    // follow `realm_user` `add` events.
    let alice = server.create_user("alice@example.com", "Alice").unwrap();

    let dir = std::env::temp_dir().join(format!("squall-zt-{:x}", rand::random::<u64>()));
    std::fs::create_dir_all(&dir).unwrap();
    let rc = dir.join("zuliprc");
    std::fs::write(
        &rc,
        format!("[api]\nemail={}\nkey={}\nsite={}\n", server.owner.email, server.owner.api_key, server.url),
    )
    .unwrap();
    // zulip-terminal refuses a zuliprc others can read.
    Command::new("chmod").arg("600").arg(&rc).status().unwrap();
    let log = dir.join("stderr.log");
    let term = Tmux::start(&format!("{zt} -c {} 2> {}; sleep 600", rc.display(), log.display()), &dir);

    // The main screen: the realm, the stream list, the message.
    term.wait_for(&["Test Realm", "# general", "hello from the server"], &log);
    // A message sent now appears without any key press.
    server.owner.send_stream("general", "greetings", "a live message").unwrap();
    term.wait_for(&["a live message"], &log);
    // Into the message list, then `+`: a thumbs-up on the focused message.
    term.keys(&["Right", "+"]);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (_, body) = server
            .owner
            .get("/api/v1/messages", &[("anchor", &first.to_string()), ("num_before", "0"), ("num_after", "5")])
            .unwrap();
        let reacted = body["messages"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["reactions"].as_array().unwrap().iter().any(|r| r["emoji_code"] == "1f44d"));
        if reacted {
            break;
        }
        assert!(Instant::now() < deadline, "no reaction arrived; screen:\n{}", term.screen());
        std::thread::sleep(Duration::from_millis(200));
    }
    term.wait_for(&[":thumbs_up: You"], &log);
    // `/` searches: only the matching message is listed.
    term.keys(&["/", "live", "Enter"]);
    let screen = term.wait_for(&["Search Results", "a live message"], &log);
    assert!(!screen.contains("hello from the server"), "the search lists only matches:\n{screen}");
    // `e` edits the focused message (its own): the compose box opens with
    // the content; the edit is sent with ctrl-d.
    let live = last_message_id(&server.owner);
    term.keys(&["e", "End", " (edited)", "C-d"]);
    wait_until(&term, "the edit never reached the server", || {
        content_of(&server.owner, live).contains("a live message (edited)")
    });
    term.wait_for(&["a live message (edited)"], &log);
    // A direct message from someone else: `P` lists direct messages, `z`
    // narrows to that conversation (Zulip's legacy `pm_with` narrow).
    let to = server.owner.get("/api/v1/users/me", &[]).unwrap().1["user_id"].to_string();
    let (status, _) = alice
        .post("/api/v1/messages", &[("type", "direct"), ("to", &format!("[{to}]")), ("content", "psst, a secret")])
        .unwrap();
    assert_eq!(status, 200);
    term.keys(&["Escape", "P"]);
    term.wait_for(&["psst, a secret"], &log);
    term.keys(&["z"]);
    let screen = term.wait_for(&["psst, a secret", "Alice"], &log);
    for error in ["Not Found", "Invalid", "Error", "error"] {
        assert!(!screen.contains(error), "an error in zulip-terminal's footer or view:\n{screen}");
    }
    // zulip-terminal's own start-up race: its presence and user-list
    // threads may call `update_screen` before the UI loop has made its pipe
    // (`assert hasattr(self, "_update_pipe")`), more likely the faster the
    // server answers. Any other traceback is a failure.
    let err = std::fs::read_to_string(&log).unwrap_or_default();
    let tracebacks = err.matches("Traceback").count();
    let startup_race = err.matches(r#"assert hasattr(self, "_update_pipe")"#).count();
    assert!(tracebacks <= startup_race, "zulip-terminal failed:\n{err}");
    drop(term);
    let _ = std::fs::remove_dir_all(&dir);
}
