//! Scenarios and what they share: starting the worker fleet, waiting for
//! it, live progress, and the final report.

pub mod chat;
pub mod fanout;
pub mod hold;
pub mod ramp;

use crate::check::Verdict;
use crate::client::ClientSpec;
use crate::stats::{self, Summary};
use crate::worker::{Final, Handle, Progress, WorkerSpec};
use anyhow::{bail, Result};
use hdrhistogram::Histogram;
use serde::Serialize;
use std::collections::HashMap;
use std::io::IsTerminal;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// How clients are spread over processes, threads and source addresses.
#[derive(Debug, Clone)]
pub struct FleetOptions {
    pub site: String,
    pub clients_per_worker: usize,
    pub threads_per_worker: usize,
    pub ramp_rate: f64,
    pub source_addrs: Vec<IpAddr>,
    pub io_uring: bool,
}

/// Connections one source address can open to one server port (the
/// default ephemeral range holds ~28k; leave headroom).
const CONNECTIONS_PER_SOURCE: usize = 25_000;

/// Source addresses for `clients` connections to `site`: as given, or
/// 127.0.0.1, .2, ... when a loopback server needs more than one.
pub fn source_addrs(given: &[IpAddr], site: &str, clients: usize) -> Vec<IpAddr> {
    if !given.is_empty() {
        return given.to_vec();
    }
    let loopback =
        crate::http::site_addr(site).map(|(a, _)| a.starts_with("127.") || a.starts_with("localhost")).unwrap_or(false);
    let needed = clients.div_ceil(CONNECTIONS_PER_SOURCE);
    if !loopback || needed <= 1 {
        return Vec::new();
    }
    (1..=needed.min(254)).map(|i| IpAddr::from([127, 0, 0, i as u8])).collect()
}

/// Running worker processes.
pub struct Fleet {
    workers: Vec<Handle>,
    started: Instant,
    live: bool,
}

impl Fleet {
    /// Starts workers for `clients`.
    pub fn start(opts: &FleetOptions, run: &str, clients: Vec<ClientSpec>) -> Result<Fleet> {
        let total = clients.len();
        let per = opts.clients_per_worker.max(1);
        let n = total.div_ceil(per).max(1);
        let sources = source_addrs(&opts.source_addrs, &opts.site, total);
        let mut workers = Vec::new();
        let mut rest = clients;
        for w in 0..n {
            let take = rest.len().div_ceil(n - w);
            let mine: Vec<ClientSpec> = rest.drain(..take).collect();
            let spec = WorkerSpec {
                site: opts.site.clone(),
                run: run.to_owned(),
                clients: mine,
                threads: opts.threads_per_worker,
                ramp_per_sec: opts.ramp_rate / n as f64,
                source_addrs: sources.clone(),
                io_uring: opts.io_uring,
            };
            workers.push(Handle::spawn(&spec)?);
        }
        eprintln!(
            "started {n} worker process(es) for {total} clients{}",
            if sources.is_empty() { String::new() } else { format!(" over {} source addresses", sources.len()) }
        );
        Ok(Fleet { workers, started: Instant::now(), live: std::io::stderr().is_terminal() })
    }

    /// Worker pids.
    pub fn pids(&self) -> Vec<u32> {
        self.workers.iter().map(|w| w.pid).collect()
    }

    /// Counters summed over workers.
    pub fn totals(&mut self) -> Progress {
        let mut p = Progress::default();
        for w in &mut self.workers {
            w.poll();
            p.add(&w.progress);
        }
        p
    }

    /// Shows progress (on a terminal) until `done` says so or `timeout`.
    pub fn wait(
        &mut self,
        what: &str,
        timeout: Duration,
        extra: &dyn Fn() -> String,
        done: &dyn Fn(&Progress) -> bool,
    ) -> Result<Progress> {
        let deadline = Instant::now() + timeout;
        loop {
            let p = self.totals();
            if self.live {
                eprint!(
                    "\r\x1b[K[{:>6.1}s] {what}: connected {} registrations {} deliveries {} heartbeats {} drops {} errors {}{}",
                    self.started.elapsed().as_secs_f64(), p.connected, p.registrations, p.deliveries, p.heartbeats, p.drops, p.errors, extra()
                );
            }
            if done(&p) || Instant::now() >= deadline {
                if self.live {
                    eprintln!();
                }
                return Ok(p);
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// Waits until `n` clients are connected; fails after `timeout`.
    pub fn wait_connected(&mut self, n: u64, timeout: Duration) -> Result<()> {
        let p = self.wait("connecting", timeout, &String::new, &|p| p.connected >= n)?;
        if p.connected < n {
            bail!(
                "only {} of {n} clients connected within {} s (errors {}, drops {})",
                p.connected,
                timeout.as_secs(),
                p.errors,
                p.drops
            );
        }
        eprintln!("{n} clients connected in {:.1} s", self.started.elapsed().as_secs_f64());
        Ok(())
    }

    /// Stops the workers and merges their reports.
    pub fn finish(self) -> Result<Outcome> {
        let mut out = Outcome {
            progress: Progress::default(),
            received: HashMap::new(),
            latency: stats::histogram(),
            worker_rss_kib: Vec::new(),
        };
        for w in self.workers {
            let f: Final = w.finish()?;
            out.progress.add(&f.progress);
            out.received.extend(f.received);
            let _ = out.latency.add(&stats::decode(&f.latency)?);
            out.worker_rss_kib.push(f.max_rss_kib);
        }
        Ok(out)
    }
}

/// What the fleet saw.
pub struct Outcome {
    pub progress: Progress,
    pub received: HashMap<usize, Vec<i64>>,
    pub latency: Histogram<u64>,
    pub worker_rss_kib: Vec<u64>,
}

/// The full report (`--json`).
#[derive(Debug, Serialize)]
pub struct Report {
    pub scenario: String,
    pub site: String,
    pub params: serde_json::Value,
    pub duration_secs: f64,
    pub progress: Progress,
    pub sent: u64,
    pub send_errors: u64,
    pub verdict: Option<Verdict>,
    pub latencies: Vec<Summary>,
    pub worker_rss_kib: Vec<u64>,
    pub server: Option<ServerUsage>,
    pub extra: serde_json::Value,
}

/// The server's memory, when its pid was given.
#[derive(Debug, Serialize, Clone)]
pub struct ServerUsage {
    pub pid: u32,
    pub rss_kib_before: u64,
    pub rss_kib_after: u64,
    /// (after − before) / connections.
    pub rss_bytes_per_connection: f64,
}

/// Resident set size of `pid`, KiB (Linux /proc).
pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// Where the report goes.
#[derive(Debug, Clone, Default)]
pub struct Output {
    pub json: Option<PathBuf>,
    pub plot: Option<PathBuf>,
}

impl Report {
    /// Prints the table, writes JSON and plot; returns the exit status.
    pub fn emit(&self, out: &Output, series: &[(String, &Histogram<u64>)]) -> Result<i32> {
        let p = &self.progress;
        println!("\n{} against {} ({:.1} s)", self.scenario, self.site, self.duration_secs);
        println!(
            "clients: {} connected at the end, {} registrations, {} re-registrations, {} drops, {} errors, {} heartbeats",
            p.connected, p.registrations, p.reregistrations, p.drops, p.errors, p.heartbeats
        );
        if self.sent > 0 || self.send_errors > 0 {
            println!("messages: {} sent, {} send errors, {} deliveries", self.sent, self.send_errors, p.deliveries);
        }
        if let Some(v) = &self.verdict {
            println!(
                "exactly-once: expected {} delivered {} lost {} duplicated {} out-of-order {} misdelivered {} → {}",
                v.expected,
                v.delivered,
                v.lost,
                v.duplicated,
                v.out_of_order,
                v.unexpected,
                if v.ok() { "OK" } else { "FAILED" }
            );
        }
        if let Some(s) = &self.server {
            println!(
                "server pid {}: RSS {} → {} KiB, {:.0} bytes per connection",
                s.pid, s.rss_kib_before, s.rss_kib_after, s.rss_bytes_per_connection
            );
        }
        println!("harness workers peak RSS (KiB): {:?}", self.worker_rss_kib);
        if !self.latencies.is_empty() {
            print!("\n{}", stats::table(&self.latencies));
        }
        if let Some(path) = &out.json {
            std::fs::write(path, serde_json::to_vec_pretty(self)?)?;
            println!("report: {}", path.display());
        }
        if let Some(path) = &out.plot {
            crate::plot::draw(path, &format!("{} — {}", self.scenario, self.site), series)?;
            println!("plot: {}", path.display());
        }
        Ok(if self.verdict.as_ref().is_some_and(|v| !v.ok()) { 1 } else { 0 })
    }
}

/// A random run id.
pub fn run_id() -> String {
    format!("{:08x}", rand::random::<u32>())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn source_addresses_spread_only_when_needed() {
        assert!(source_addrs(&[], "http://127.0.0.1:9991", 10_000).is_empty());
        let many = source_addrs(&[], "http://127.0.0.1:9991", 60_000);
        assert_eq!(
            many,
            vec![IpAddr::from([127, 0, 0, 1]), IpAddr::from([127, 0, 0, 2]), IpAddr::from([127, 0, 0, 3])]
        );
        assert!(source_addrs(&[], "http://10.0.0.5:80", 60_000).is_empty(), "not loopback: the OS picks");
        let given = [IpAddr::from([10, 0, 0, 9])];
        assert_eq!(source_addrs(&given, "http://127.0.0.1:1", 1), given.to_vec());
    }
}
