//! The official `zulip` Python client (from PyPI) against a real server.
//!
//! Needs the virtualenv `tools/test` creates at `.squall/venv` (with
//! `zulip`, `openapi-schema-validator`, `PyYAML`); set `SQUALL_PYTHON` to
//! use another interpreter. Responses are validated against
//! `shared/reference/zulip-openapi.yaml` by the script.

#![allow(clippy::unwrap_used)] // test code: a panic is a failed assertion

use squall_e2e::{workspace_root, Server};
use std::process::Command;

#[test]
fn official_python_client_sends_and_receives_in_real_time() {
    let root = workspace_root();
    let python = std::env::var("SQUALL_PYTHON")
        .unwrap_or_else(|_| root.join(".squall/venv/bin/python").to_string_lossy().into_owned());
    assert!(
        std::path::Path::new(&python).exists(),
        "{python} not found: run tools/test (it creates .squall/venv with the zulip client) or set SQUALL_PYTHON"
    );
    let openapi = std::env::var("SQUALL_OPENAPI")
        .unwrap_or_else(|_| root.join("../shared/reference/zulip-openapi.yaml").to_string_lossy().into_owned());

    let server = Server::start().unwrap();
    let a = server.create_user("aaron@example.com", "Aaron Alpha").unwrap();
    let b = server.create_user("bea@example.com", "Bea Beta").unwrap();
    let dir = std::env::temp_dir().join(format!("squall-zuliprc-{}", rand::random::<u64>()));
    std::fs::create_dir_all(&dir).unwrap();
    let write_rc = |name: &str, c: &squall_e2e::Client| {
        let path = dir.join(name);
        std::fs::write(&path, format!("[api]\nemail={}\nkey={}\nsite={}\n", c.email, c.api_key, server.url)).unwrap();
        path
    };
    let (rc_a, rc_b) = (write_rc("a.zuliprc", &a), write_rc("b.zuliprc", &b));
    let out = Command::new(&python)
        .arg(root.join("tests/python/zulip_client_check.py"))
        .arg("--a-rc")
        .arg(&rc_a)
        .arg("--b-rc")
        .arg(&rc_b)
        .arg("--openapi")
        .arg(&openapi)
        .output()
        .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "zulip client check failed\nstdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(stdout.contains("zulip client check: ok"), "{stdout}");
}
