//! The start-up host check: compare the host's limits with
//! `expected_connections` and log each shortfall. It refuses nothing: a
//! small host still serves what it can.

use crate::config::Config;
use squall_kernel_tuning::{check, host::Host, sizing::Target};

/// Logs the open-file limit (already raised to `open_files`) and every
/// server-side shortfall.
pub fn check(cfg: &Config, open_files: u64) {
    tracing::info!(open_files, "open-file limit");
    let target = Target { connections: cfg.expected_connections, cores: cfg.core_count() as u64 };
    let report = check::check(&Host::new("/"), target);
    let problems: Vec<_> = report.problems().filter(|f| f.concerns_server()).collect();
    for f in &problems {
        let first = f.advice.lines().next().unwrap_or("");
        tracing::warn!(knob = f.knob, value = %f.value, needed = %f.needed, "host check: {first}");
    }
    if !problems.is_empty() {
        tracing::warn!(
            expected_connections = cfg.expected_connections,
            "host check found shortfalls; run `squall-tune check --connections {}` for details",
            cfg.expected_connections
        );
    }
}
