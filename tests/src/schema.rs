//! Response checks against Zulip's OpenAPI description, through the
//! Python validator `tools/test` installs.

use crate::workspace_root;
use serde_json::Value;
use std::process::{Command, Stdio};

/// The Python interpreter with the test packages (`tools/test` makes it).
pub fn python() -> String {
    std::env::var("SQUALL_PYTHON")
        .unwrap_or_else(|_| workspace_root().join(".squall/venv/bin/python").to_string_lossy().into_owned())
}

/// Zulip's OpenAPI description (`shared/reference/zulip-openapi.yaml`).
pub fn openapi_path() -> String {
    std::env::var("SQUALL_OPENAPI").unwrap_or_else(|_| {
        workspace_root().join("../shared/reference/zulip-openapi.yaml").to_string_lossy().into_owned()
    })
}

/// Asserts that `body` is a valid response of `method path` with `status`
/// according to Zulip's OpenAPI description.
pub fn assert_schema(path: &str, method: &str, status: u16, body: &Value) {
    use std::io::Write;
    let mut child = Command::new(python())
        .arg(workspace_root().join("tests/python/validate_response.py"))
        .args([openapi_path().as_str(), path, method, &status.to_string()])
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("running the OpenAPI validator (run tools/test to create .squall/venv)");
    child.stdin.take().expect("stdin").write_all(body.to_string().as_bytes()).expect("writing the body");
    let out = child.wait_with_output().expect("validator output");
    assert!(out.status.success(), "{}\nbody: {body}", String::from_utf8_lossy(&out.stderr));
}

/// Asserts a Zulip error body.
pub fn assert_error(resp: &(u16, Value), status: u16, code: &str, msg: &str) {
    let (s, body) = resp;
    assert_eq!(*s, status, "status of {body}");
    assert_eq!(body["result"], "error", "{body}");
    assert_eq!(body["code"], code, "{body}");
    assert_eq!(body["msg"], msg, "{body}");
}
