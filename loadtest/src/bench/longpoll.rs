//! Fan-out rounds: C clients park a long-poll each; the controller
//! publishes one message per round and measures, per round, publish → last
//! delivery (kernel receive time at the client), the median delivery, and
//! the server's CPU time per delivery including every client's re-poll. The
//! server's memory per parked client is read once, before the first round.

use super::clients::{run_thread, Delivery, Fleet, Mode, Shared};
use super::procstat;
use super::wire::Target;
use crate::http::BlockingClient;
use anyhow::{bail, Context, Result};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A fan-out run.
#[derive(Debug, Clone)]
pub struct Params {
    /// Long-poll clients.
    pub clients: usize,
    /// Messages published, one per round.
    pub rounds: u64,
    /// Client threads.
    pub threads: usize,
    /// Characters of message content.
    pub content_bytes: usize,
    /// The server process (CPU and memory are read from /proc).
    pub server_pid: u32,
    /// io_uring clients (else epoll).
    pub io_uring: bool,
    /// Pause between rounds.
    pub pause: Duration,
}

/// One round's figures.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Round {
    /// Round number.
    pub round: u64,
    /// Publish → last delivery, ms.
    pub last_ms: f64,
    /// Publish → median delivery, ms.
    pub p50_ms: f64,
    /// Server CPU over the round ÷ deliveries, µs.
    pub cpu_us_per_delivery: f64,
}

/// A run's figures.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Report {
    /// Clients.
    pub clients: usize,
    /// Server RSS growth per parked client (queue + connection), bytes.
    pub rss_bytes_per_client: f64,
    /// Per round.
    pub rounds: Vec<Round>,
}

/// Median of `v` (0 when empty).
pub fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

impl Report {
    /// Medians over rounds: (last ms, p50 ms, CPU µs per delivery).
    pub fn medians(&self) -> (f64, f64, f64) {
        (
            median(self.rounds.iter().map(|r| r.last_ms).collect()),
            median(self.rounds.iter().map(|r| r.p50_ms).collect()),
            median(self.rounds.iter().map(|r| r.cpu_us_per_delivery).collect()),
        )
    }
}

/// Waits up to `limit` for `done`, checking every few milliseconds.
fn wait_until(limit: Duration, what: &str, mut done: impl FnMut() -> Result<bool>) -> Result<()> {
    let start = Instant::now();
    while !done()? {
        if start.elapsed() > limit {
            bail!("timed out after {limit:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    Ok(())
}

/// Runs the rounds against `site`.
pub fn run(site: &str, target: Target, p: &Params) -> Result<Report> {
    let (addr, host) = crate::http::site_addr(site)?;
    let addr = std::net::ToSocketAddrs::to_socket_addrs(&addr)?.next().context("no address")?;
    let rss_before = procstat::rss_kib(p.server_pid)?;
    let shared = Shared::new(p.rounds);
    let target = Arc::new(target);
    let fleet = Arc::new(Fleet { addr, host, target: target.clone(), mode: Mode::Park, io_uring: p.io_uring });
    let threads = p.threads.max(1);
    let mut handles = Vec::new();
    for t in 0..threads {
        let first = p.clients * t / threads;
        let count = p.clients * (t + 1) / threads - first;
        let (fleet, shared) = (fleet.clone(), shared.clone());
        handles.push(std::thread::spawn(move || run_thread(fleet, first, count, shared)));
    }
    let result = rounds(site, &target, p, &shared, rss_before);
    shared.stop.store(true, Ordering::Relaxed);
    let mut deliveries: Vec<Delivery> = Vec::new();
    for h in handles {
        deliveries.extend(h.join().unwrap_or_default());
    }
    let (mut report, t0s) = result?;
    for r in report.rounds.iter_mut() {
        let t0 = t0s[r.round as usize];
        let mut lat: Vec<f64> =
            deliveries.iter().filter(|d| d.round == r.round).map(|d| d.at_ns.saturating_sub(t0) as f64 / 1e6).collect();
        r.p50_ms = median(std::mem::take(&mut lat));
    }
    Ok(report)
}

fn rounds(site: &str, target: &Target, p: &Params, shared: &Shared, rss_before: u64) -> Result<(Report, Vec<u64>)> {
    let n = p.clients as u64;
    let failed = || -> Result<()> {
        match shared.first_error() {
            Some(e) => bail!("{} client(s) failed; first: {e}", shared.failed.load(Ordering::Relaxed)),
            None => Ok(()),
        }
    };
    let mut probe = BlockingClient::new(site)?;
    let mut publisher = BlockingClient::new(site)?;
    let setup_limit = Duration::from_secs(120 + p.clients as u64 / 100);
    wait_until(setup_limit, "every client to park a poll", || {
        failed()?;
        Ok(shared.in_flight.load(Ordering::Relaxed) == n && target.parked_count(&mut probe)? == n)
    })?;
    let rss_after = procstat::rss_kib(p.server_pid)?;
    let content = "x".repeat(p.content_bytes);
    let mut report = Report {
        clients: p.clients,
        rss_bytes_per_client: (rss_after.saturating_sub(rss_before) * 1024) as f64 / n as f64,
        rounds: Vec::new(),
    };
    let mut t0s = vec![0u64; p.rounds as usize + 1];
    for round in 1..=p.rounds {
        std::thread::sleep(p.pause);
        let cpu0 = procstat::cpu_ns(p.server_pid)?;
        t0s[round as usize] = crate::now_ns();
        target.publish(&mut publisher, round, &content)?;
        let limit = Duration::from_secs(60);
        wait_until(limit, &format!("round {round} to reach every client"), || {
            failed()?;
            Ok(shared.delivered[round as usize].load(Ordering::Relaxed) == n)
        })?;
        // Every client has re-polled and the server has parked it again.
        wait_until(limit, &format!("every re-poll of round {round} to park"), || {
            failed()?;
            Ok(shared.in_flight.load(Ordering::Relaxed) == n && target.parked_count(&mut probe)? == n)
        })?;
        let cpu1 = procstat::cpu_ns(p.server_pid)?;
        let last = shared.last_ns[round as usize].load(Ordering::Relaxed);
        report.rounds.push(Round {
            round,
            last_ms: last.saturating_sub(t0s[round as usize]) as f64 / 1e6,
            p50_ms: 0.0,
            cpu_us_per_delivery: (cpu1 - cpu0) as f64 / 1e3 / n as f64,
        });
    }
    Ok((report, t0s))
}
