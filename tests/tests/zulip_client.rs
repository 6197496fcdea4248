//! The official `zulip` Python client (from PyPI) against a real server.
//!
//! Needs the virtualenv `tools/test` creates at `.squall/venv` (with
//! `zulip`, `openapi-schema-validator`, `PyYAML`); set `SQUALL_PYTHON` to
//! use another interpreter. Responses are validated against
//! `shared/reference/zulip-openapi.yaml` by the script.

#![allow(clippy::unwrap_used)] // test code: a panic is a failed assertion

use squall_e2e::{python_client_check, Server};

#[test]
fn official_python_client_sends_and_receives_in_real_time() {
    python_client_check(&Server::start().unwrap());
}
