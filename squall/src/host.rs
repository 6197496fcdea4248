//! The start-up host check: raise the open-file limit, then compare the
//! host's limits with `expected_connections` and log each shortfall. It
//! refuses nothing: a small host still serves what it can.

use crate::config::Config;
use squall_kernel_tuning::{check, host::Host, sizing::Target};

/// Raises the open-file soft limit and logs every server-side shortfall.
pub fn check(cfg: &Config) {
    match squall_kernel_tuning::raise_nofile_soft_limit() {
        Ok(n) => tracing::info!(open_files = n, "open-file limit"),
        Err(e) => tracing::warn!(error = %e, "could not raise the open-file soft limit"),
    }
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
