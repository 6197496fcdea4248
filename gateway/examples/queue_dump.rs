//! How long saving and restoring a core's queues takes, how large the dump
//! is, and the memory before and after.
//!
//! ```sh
//! cargo run --release -p squall-gateway --example queue_dump -- 2000 50
//! cargo run --release -p squall-gateway --example queue_dump -- 10000 200
//! cargo run --release -p squall-gateway --example queue_dump -- --load DIR
//! ```
//!
//! One core gets QUEUES queues (one per user) and EVENTS stream messages,
//! each delivered to every user, so each message is one payload shared by
//! all queues. The queues are saved to a temporary directory (or `--dir
//! DIR`, kept) and restored in a fresh process (`--load DIR`, which also
//! reads a dump written by another version), whose resident memory is then
//! the restored queues' alone: RSS after the restore, and its peak.

use serde_json::json;
use squall_gateway::state::{CoreState, Timing};
use squall_proto::envelope::{Destination, MessageNotice, MessageRecipient, Notice, WideMessage};
use squall_proto::Shard;
use squall_shard_router::placement::Topology;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

/// `VmRSS` and `VmHWM` of this process, MB.
fn rss_mb() -> (f64, f64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
            .map_or(0.0, |kb| kb / 1024.0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

fn core() -> CoreState {
    CoreState::new(Shard { node: 0, core: 0 }, Timing::default())
}

fn message(id: i64, users: &[MessageRecipient]) -> Notice {
    let content = format!("Message {id}: {}", "Lorem ipsum dolor sit amet, consectetur adipiscing elit. ".repeat(4));
    Notice::Message(Box::new(MessageNotice {
        message: Arc::new(WideMessage {
            id,
            sender_id: 1,
            sender_email: "sender@example.com".into(),
            sender_full_name: "Sender".into(),
            sender_realm_str: "zulip".into(),
            recipient_id: 9,
            timestamp: 1_700_000_000 + id,
            client: "website".into(),
            subject: "a topic".into(),
            rendered_content: format!("<p>{content}</p>"),
            content,
            is_me_message: false,
            avatar_url: "https://example.com/avatar/1.png".into(),
            avatar_is_gravatar: false,
            destination: Destination::Stream { stream_id: 3, name: "general".into() },
            last_edit_timestamp: None,
            edit_history: None,
        }),
        users: users.to_vec(),
        sender_queue_id: None,
        local_id: None,
        realm_id: 1,
        public_stream: true,
        invite_only: false,
        notify: Default::default(),
    }))
}

fn load(dir: &Path) {
    let start = Instant::now();
    let mut s = core();
    let n = s.load_queues(dir, Topology::single_node(1), &json!({"type": "restart"}));
    let secs = start.elapsed().as_secs_f64();
    let (rss, peak) = rss_mb();
    println!("restore: {n} queues in {secs:.2} s; RSS {rss:.0} MB (peak {peak:.0} MB)");
    drop(s);
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let [flag, dir] = args.as_slice() {
        if flag == "--load" {
            load(Path::new(dir));
            return;
        }
    }
    let (queues, events): (i64, i64) = match args.as_slice() {
        [q, e, ..] => (q.parse().unwrap_or(2000), e.parse().unwrap_or(50)),
        _ => (2000, 50),
    };
    let kept = args.iter().position(|a| a == "--dir").and_then(|i| args.get(i + 1)).map(PathBuf::from);
    let dir =
        kept.clone().unwrap_or_else(|| std::env::temp_dir().join(format!("squall-queue-dump-{}", std::process::id())));
    let (base, _) = rss_mb();
    let mut s = core();
    let users: Vec<MessageRecipient> =
        (1..=queues).map(|id| MessageRecipient { id, flags: 0, mentioned_user_group_id: None }).collect();
    for u in 1..=queues {
        s.allocate(squall_proto::queue_spec::QueueSpec { user_id: u, realm_id: 1, ..Default::default() }, 0);
    }
    for id in 1..=events {
        s.deliver(message(id, &users));
    }
    let (rss, _) = rss_mb();
    println!("state: {queues} queues x {events} events; RSS {rss:.0} MB ({base:.0} MB before the queues)");

    let start = Instant::now();
    let saved = s.save_queues(&dir, 1).expect("save");
    let secs = start.elapsed().as_secs_f64();
    let size: u64 =
        std::fs::read_dir(&dir).map(|d| d.filter_map(|e| e.ok()?.metadata().ok()).map(|m| m.len()).sum()).unwrap_or(0);
    println!("save: {saved} queues in {secs:.2} s; dump {:.1} MB", size as f64 / 1e6);
    drop(s);

    let me = std::env::current_exe().expect("own path");
    let status = std::process::Command::new(me).arg("--load").arg(&dir).status().expect("restore process");
    assert!(status.success());
    if kept.is_none() {
        let _ = std::fs::remove_dir_all(&dir);
    }
}
