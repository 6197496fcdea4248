//! `fanout`: N recipients long-poll one stream; a sender sends M messages;
//! delivery latency per recipient, exactly-once check.

use super::{Fleet, FleetOptions, Output, Report};
use crate::check;
use crate::http::BlockingClient;
use crate::setup::{self, Account, Admin};
use crate::stats::{self, Summary};
use anyhow::{Context, Result};
use serde_json::json;
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// Parameters.
#[derive(Debug, Clone)]
pub struct Fanout {
    pub recipients: usize,
    pub messages: usize,
    pub interval: Duration,
    pub stream: String,
    pub drain: Duration,
    pub connect_timeout: Duration,
    /// How long a refused send (no connection, 503) is tried again.
    pub send_retry: Duration,
}

/// What a fanout run measured (ramp reuses it).
pub struct FanoutResult {
    pub report: Report,
    pub delivery: hdrhistogram::Histogram<u64>,
    pub send: hdrhistogram::Histogram<u64>,
}

/// Runs it with `users` as recipients (already subscribed to the stream).
pub fn run(admin: &Admin, fleet_opts: &FleetOptions, users: &[Account], f: &Fanout) -> Result<FanoutResult> {
    let run = super::run_id();
    let clients = users.iter().enumerate().map(|(i, a)| a.client(i)).collect();
    let started = Instant::now();
    let mut fleet = Fleet::start(fleet_opts, &run, clients)?;
    fleet.wait_connected(users.len() as u64, f.connect_timeout)?;

    let mut c = BlockingClient::new(&admin.site)?;
    let auth = admin.auth();
    let mut send = stats::histogram();
    let (mut ids, mut send_errors) = (Vec::new(), 0u64);
    for seq in 0..f.messages {
        let content = crate::stamp(&run, seq as u64);
        let t0 = Instant::now();
        let form = [("type", "stream"), ("to", f.stream.as_str()), ("topic", "fanout"), ("content", content.as_str())];
        // A server that restarts or a database that is away refuses the
        // send (no connection, or a 503 before anything is stored): try
        // again for up to `send_retry`, then count it failed.
        let mut r = setup::call(&mut c, "POST", "/api/v1/messages", Some(&auth), &form);
        while t0.elapsed() < f.send_retry && r.as_ref().map_or(true, |r| r.status == 503) {
            std::thread::sleep(Duration::from_millis(200));
            c = BlockingClient::new(&admin.site)?;
            r = setup::call(&mut c, "POST", "/api/v1/messages", Some(&auth), &form);
        }
        stats::record(&mut send, t0.elapsed().as_micros() as u64);
        match r {
            Ok(r) => match r.json()?["id"].as_i64() {
                Some(id) if r.status == 200 => ids.push(id),
                _ => send_errors += 1,
            },
            Err(_) if !f.send_retry.is_zero() => send_errors += 1,
            Err(e) => return Err(e),
        }
        std::thread::sleep(f.interval);
    }
    let want = (ids.len() * users.len()) as u64;
    fleet.wait("delivering", f.drain, &String::new, &|p| p.deliveries >= want)?;
    let out = fleet.finish()?;
    let expected: HashMap<usize, Vec<i64>> = (0..users.len()).map(|i| (i, ids.clone())).collect();
    let verdict = check::check(&expected, &out.received);
    let report = Report {
        scenario: "fanout".into(),
        site: admin.site.clone(),
        params: json!({"recipients": f.recipients, "messages": f.messages, "interval_ms": f.interval.as_millis() as u64, "stream": f.stream}),
        duration_secs: started.elapsed().as_secs_f64(),
        progress: out.progress,
        sent: ids.len() as u64,
        send_errors,
        verdict: Some(verdict),
        latencies: vec![
            Summary::of("delivery (send → event)", &out.latency)?,
            Summary::of("send (POST /messages)", &send)?,
        ],
        worker_rss_kib: out.worker_rss_kib,
        server: None,
        extra: json!({}),
    };
    Ok(FanoutResult { report, delivery: out.latency, send })
}

/// The `fanout` command.
pub fn command(admin: &Admin, fleet_opts: &FleetOptions, users: &[Account], f: &Fanout, out: &Output) -> Result<i32> {
    setup::subscribe(admin, &f.stream, &users.iter().map(|u| u.user_id).collect::<Vec<_>>())
        .context("subscribing recipients")?;
    let r = run(admin, fleet_opts, users, f)?;
    r.report.emit(out, &[("delivery".into(), &r.delivery), ("send".into(), &r.send)])
}
