//! Fuzz targets as plain functions: each takes arbitrary bytes and must
//! return without panicking, whatever they are. `fuzz/libfuzzer` runs them
//! under cargo-fuzz (libFuzzer, nightly); `tests/replay.rs` replays the
//! corpus and a short seeded mutation run under `cargo test` (stable), so
//! every `tools/test` exercises them.

use squall_gateway::http::parse::{self, header_slots, parse_head_only};
use squall_proto::api::{ApiRequest, Params};
use squall_proto::user::AuthedUser;

/// The gateway's request parser: whole requests, heads before bodies, the
/// owned forms and path decoding.
pub fn http(data: &[u8]) {
    if let parse::Parsed::Complete(req, used) = parse::parse(data) {
        assert!(used <= data.len(), "a request cannot use more bytes than it was given");
        assert!(req.api.body.len() <= parse::MAX_BODY_BYTES);
    }
    let mut slots = header_slots();
    if let Ok(Some(head)) = parse_head_only(data, &mut slots) {
        assert!(head.head_len <= data.len());
        let _ = head.probe(None);
        let _ = head.header("authorization");
    }
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = parse::percent_decode_path(text);
    }
}

/// Request parameters as the API reads them: `data` is a content type, a
/// query string and a body, separated by newlines. Every typed accessor
/// runs on every parameter, then the register/events queue options.
pub fn params(data: &[u8]) {
    let mut parts = data.splitn(3, |&b| b == b'\n');
    let ctype = String::from_utf8_lossy(parts.next().unwrap_or_default()).into_owned();
    let query = String::from_utf8_lossy(parts.next().unwrap_or_default()).into_owned();
    let body = parts.next().unwrap_or_default().to_vec();
    let req = ApiRequest {
        method: "POST".into(),
        path: "/api/v1/register".into(),
        query,
        headers: vec![("content-type".into(), ctype)],
        body,
        peer: None,
    };
    let Ok(p) = Params::from_request(&req) else { return };
    let names: Vec<String> = p.unused();
    for name in &names {
        let mut p = p.clone();
        let _ = p.str(name);
        let _ = p.json(name);
        let _ = p.bool(name);
        let _ = p.int(name);
        let _ = p.str_list(name);
    }
    for register in [true, false] {
        let mut p = p.clone();
        let user = AuthedUser { id: 7, realm_id: 1, role: 400 };
        let caps = p.json("client_capabilities").ok().flatten();
        let _ =
            squall_proto::queue_spec::queue_spec(&user, "fuzz".into(), Some("ZulipMobile/1.0"), caps, &mut p, register);
    }
}

/// The Markdown renderer, with mentions and channel links that resolve
/// for some names and not others.
pub fn markdown(data: &[u8]) {
    use squall_backend::markdown::{self, MentionRef, MentionTarget, StreamTarget};
    let Ok(content) = std::str::from_utf8(data) else { return };
    let resolve = |r: &MentionRef| match r {
        MentionRef::Name(n) if n.len().is_multiple_of(2) => Some(MentionTarget { id: 1, full_name: n.clone() }),
        MentionRef::Id(id) if *id > 0 => Some(MentionTarget { id: *id, full_name: "Someone".into() }),
        _ => None,
    };
    let channel = |name: &str| (!name.len().is_multiple_of(3)).then(|| StreamTarget { id: 3, name: name.to_owned() });
    let _ = markdown::render_with(content, &resolve, &channel);
    let _ = markdown::mention_refs(content);
    let _ = markdown::channel_refs(content);
    let _ = markdown::render_plain(content);
    let _ = markdown::is_me_message(content);
}

/// Restoring a core's queues from a dump file holding `data` (either
/// format): whatever is in it, the core restores what it can and goes on.
pub fn queue_dump(data: &[u8]) {
    use squall_gateway::persist::dump_path;
    use squall_gateway::state::{CoreState, Timing};
    use squall_proto::Shard;
    use squall_shard_router::placement::Topology;
    thread_local! {
        static DIR: std::path::PathBuf = {
            let d = std::env::temp_dir().join(format!("squall-fuzz-dump-{}", std::process::id()));
            let _ = std::fs::create_dir_all(&d);
            d
        };
    }
    DIR.with(|dir| {
        let topo = Topology { nodes: 1, cores: 1 };
        if std::fs::write(dump_path(dir, 0, 1), data).is_err() {
            return;
        }
        let mut core = CoreState::new(Shard { node: 0, core: 0 }, Timing::default());
        let restored = core.load_queues(dir, topo, &serde_json::json!({"type": "restart"}));
        assert_eq!(restored, core.queue_count(), "every restored queue is in the registry");
        // What the load left (moved aside or not) must not feed the next run.
        for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let _ = std::fs::remove_file(entry.path());
        }
    });
}

/// The queue journal's replay (after a crash): any bytes after the header
/// are replayed up to the first bad record, without a panic, and what comes
/// back renders as JSON.
pub fn journal(data: &[u8]) {
    squall_gateway::journal::replay_for_fuzzing(data);
}

/// A fuzz target.
pub type Target = fn(&[u8]);

/// Every target by name (the corpus directories are named alike).
pub const TARGETS: [(&str, Target); 5] =
    [("http", http), ("params", params), ("markdown", markdown), ("queue_dump", queue_dump), ("journal", journal)];
