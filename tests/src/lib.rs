//! Helpers for Squall's end-to-end tests.
//!
//! Each test gets its own database in the PostgreSQL that `tools/services`
//! runs (`SQUALL_DATABASE_URL`, default the project-local cluster), its own
//! realm, and its own `squall serve` process on a free port. Nothing is
//! mocked: requests go over real HTTP to the real binary.
//!
//! The `squall` binary must be built first (`tools/test` does it); set
//! `SQUALL_BIN` to use another build.
//!
//! [`services`]: databases and broker vhosts per test; [`server`]: the
//! `squall serve` process; [`client`]: a Zulip API client; [`schema`]:
//! checks against Zulip's OpenAPI description.

mod client;
mod cluster;
mod pyclient;
mod schema;
mod server;
mod services;
mod sinks;

pub use client::Client;
pub use cluster::{Cluster, ClusterShape};
pub use pyclient::{python_client_check, python_client_check_at};
pub use schema::{assert_error, assert_schema, openapi_path, python};
pub use server::{Server, ServerOptions};
pub use services::{close_amqp_connections, drain_amqp_queue, fresh_amqp_vhost, fresh_database, sql_query};
pub use sinks::{Answer, HttpSink, Received, SmtpSink};

use std::path::PathBuf;

/// The workspace root.
pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).parent().expect("tests/ has a parent").to_path_buf()
}

/// Path of the `squall` binary under test.
pub fn squall_bin() -> PathBuf {
    if let Ok(p) = std::env::var("SQUALL_BIN") {
        return PathBuf::from(p);
    }
    let target =
        std::env::var("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|_| workspace_root().join("target"));
    target.join("debug").join("squall")
}
