//! The official `zulip` Python client driven against a running server by
//! `tests/python/zulip_client_check.py` (two users: subscribe, send, receive
//! in real time, history, every response checked against Zulip's OpenAPI).

use crate::{workspace_root, Server};
use std::process::Command;

/// Runs the client check against `server` with two new users; panics with
/// the script's output when it fails.
pub fn python_client_check(server: &Server) {
    let a = server.create_user("aaron@example.com", "Aaron Alpha").expect("user a");
    let b = server.create_user("bea@example.com", "Bea Beta").expect("user b");
    python_client_check_at(&server.url, &a, &b);
}

/// Runs the client check against the site `url` as the users `a` and `b`.
pub fn python_client_check_at(url: &str, a: &crate::Client, b: &crate::Client) {
    let root = workspace_root();
    let python = std::env::var("SQUALL_PYTHON")
        .unwrap_or_else(|_| root.join(".squall/venv/bin/python").to_string_lossy().into_owned());
    assert!(
        std::path::Path::new(&python).exists(),
        "{python} not found: run tools/test (it creates .squall/venv with the zulip client) or set SQUALL_PYTHON"
    );
    let openapi = std::env::var("SQUALL_OPENAPI")
        .unwrap_or_else(|_| root.join("../shared/reference/zulip-openapi.yaml").to_string_lossy().into_owned());
    let dir = std::env::temp_dir().join(format!("squall-zuliprc-{}", rand::random::<u64>()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let write_rc = |name: &str, c: &crate::Client| {
        let path = dir.join(name);
        std::fs::write(&path, format!("[api]\nemail={}\nkey={}\nsite={}\n", c.email, c.api_key, url)).expect("zuliprc");
        path
    };
    let (rc_a, rc_b) = (write_rc("a.zuliprc", a), write_rc("b.zuliprc", b));
    let out = Command::new(&python)
        .arg(root.join("tests/python/zulip_client_check.py"))
        .arg("--a-rc")
        .arg(&rc_a)
        .arg("--b-rc")
        .arg(&rc_b)
        .arg("--openapi")
        .arg(&openapi)
        .output()
        .expect("running the client check");
    let _ = std::fs::remove_dir_all(&dir);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "zulip client check failed\nstdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(stdout.contains("zulip client check: ok"), "{stdout}");
}
