//! `ramp`: fanout runs with N doubling until delivery p99 breaks a bound;
//! reports the knee (the largest N within the bound).

use super::fanout::{self, Fanout};
use super::{FleetOptions, Output};
use crate::setup::{self, Account, Admin};
use anyhow::Result;

/// Runs fanouts at `start`, 2×start, ... up to `users.len()`.
pub fn command(
    admin: &Admin,
    fleet_opts: &FleetOptions,
    users: &[Account],
    start: usize,
    p99_bound_ms: f64,
    f: &Fanout,
    out: &Output,
) -> Result<i32> {
    setup::subscribe(admin, &f.stream, &users.iter().map(|u| u.user_id).collect::<Vec<_>>())?;
    let mut n = start.max(1).min(users.len());
    let mut knee = None;
    let mut steps = Vec::new();
    loop {
        let r = fanout::run(admin, fleet_opts, &users[..n], &Fanout { recipients: n, ..f.clone() })?;
        let p99 = r.report.latencies[0].p99_ms;
        let ok = r.report.verdict.as_ref().is_some_and(|v| v.ok());
        println!(
            "ramp: {n} recipients → delivery p99 {p99:.2} ms{}",
            if ok { "" } else { " (messages lost or duplicated)" }
        );
        steps.push(serde_json::json!({"recipients": n, "p99_ms": p99, "exactly_once": ok}));
        if p99 > p99_bound_ms || !ok {
            break;
        }
        knee = Some(n);
        if n == users.len() {
            break;
        }
        n = (n * 2).min(users.len());
    }
    match knee {
        Some(k) => println!("knee: {k} recipients keep delivery p99 ≤ {p99_bound_ms} ms"),
        None => println!("knee: even {} recipients exceed p99 {p99_bound_ms} ms", start),
    }
    if let Some(path) = &out.json {
        std::fs::write(
            path,
            serde_json::to_vec_pretty(
                &serde_json::json!({"scenario": "ramp", "p99_bound_ms": p99_bound_ms, "knee": knee, "steps": steps}),
            )?,
        )?;
    }
    Ok(0)
}
