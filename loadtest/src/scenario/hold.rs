//! `hold`: N idle long-polls for T; connections, heartbeats, drops and the
//! server's memory per connection.

use super::{rss_kib, Fleet, FleetOptions, Output, Report, ServerUsage};
use crate::setup::{Account, Admin};
use anyhow::Result;
use serde_json::json;
use std::time::{Duration, Instant};

/// Parameters.
#[derive(Debug, Clone)]
pub struct Hold {
    pub clients: usize,
    pub hold: Duration,
    pub connect_timeout: Duration,
    pub server_pid: Option<u32>,
}

/// Runs `clients` long-polls spread over `users` for `hold`.
pub fn command(admin: &Admin, fleet_opts: &FleetOptions, users: &[Account], h: &Hold, out: &Output) -> Result<i32> {
    let Hold { clients, hold, connect_timeout, server_pid } = h.clone();
    let started = Instant::now();
    let before = server_pid.and_then(rss_kib);
    // Several queues per user when there are fewer users than clients.
    let specs = (0..clients).map(|i| users[i % users.len()].client(i)).collect();
    let mut fleet = Fleet::start(fleet_opts, &super::run_id(), specs)?;
    fleet.wait_connected(clients as u64, connect_timeout)?;
    let after = server_pid.and_then(rss_kib);
    eprintln!("holding {clients} long-polls for {} s", hold.as_secs());
    fleet.wait("holding", hold, &String::new, &|_| false)?;
    let o = fleet.finish()?;
    let server = match (server_pid, before, after) {
        (Some(pid), Some(b), Some(a)) => Some(ServerUsage {
            pid,
            rss_kib_before: b,
            rss_kib_after: a,
            rss_bytes_per_connection: (a.saturating_sub(b) * 1024) as f64 / clients.max(1) as f64,
        }),
        _ => None,
    };
    let report = Report {
        scenario: "hold".into(),
        site: admin.site.clone(),
        params: json!({"clients": clients, "users": users.len(), "hold_secs": hold.as_secs()}),
        duration_secs: started.elapsed().as_secs_f64(),
        progress: o.progress,
        sent: 0,
        send_errors: 0,
        verdict: None,
        latencies: vec![],
        worker_rss_kib: o.worker_rss_kib,
        server,
        extra: json!({}),
    };
    let code = report.emit(out, &[])?;
    // Dropped connections are a failure of the hold.
    Ok(if report.progress.drops > 0 || report.progress.connected < clients as u64 { 1 } else { code })
}
