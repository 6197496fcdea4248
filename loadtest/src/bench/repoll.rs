//! Request rate: C clients send `dont_block` polls back to back for T
//! seconds; the rate the server answers and its CPU per answer. Against the
//! hello-world server ([`super::hello`]) the same client measures the
//! ceiling of request handling on this machine.

use super::clients::{run_thread, Fleet, Mode, Shared};
use super::procstat;
use super::wire::Target;
use anyhow::{bail, Context, Result};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A request-rate run.
#[derive(Debug, Clone)]
pub struct Params {
    /// Connections.
    pub clients: usize,
    /// Measured seconds (after a one-second warm-up).
    pub seconds: u64,
    /// Client threads.
    pub threads: usize,
    /// The server process.
    pub server_pid: u32,
    /// io_uring clients (else epoll).
    pub io_uring: bool,
}

/// A run's figures.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Report {
    /// Answers per second.
    pub rate: f64,
    /// Server CPU per answer, µs.
    pub cpu_us_per_request: f64,
}

/// Runs the clients against `site`.
pub fn run(site: &str, target: Target, p: &Params) -> Result<Report> {
    let (addr, host) = crate::http::site_addr(site)?;
    let addr = std::net::ToSocketAddrs::to_socket_addrs(&addr)?.next().context("no address")?;
    let shared = Shared::new(0);
    let fleet = Arc::new(Fleet { addr, host, target: Arc::new(target), mode: Mode::Rate, io_uring: p.io_uring });
    let threads = p.threads.max(1);
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let first = p.clients * t / threads;
            let count = p.clients * (t + 1) / threads - first;
            let (fleet, shared) = (fleet.clone(), shared.clone());
            std::thread::spawn(move || run_thread(fleet, first, count, shared))
        })
        .collect();
    let measured = measure(&shared, p);
    shared.stop.store(true, Ordering::Relaxed);
    for h in handles {
        let _ = h.join();
    }
    measured
}

fn measure(shared: &Shared, p: &Params) -> Result<Report> {
    let start = Instant::now();
    while shared.ready.load(Ordering::Relaxed) + shared.failed.load(Ordering::Relaxed) < p.clients as u64 {
        if start.elapsed() > Duration::from_secs(60) {
            bail!("clients did not connect within 60 s");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    std::thread::sleep(Duration::from_secs(1));
    let (a0, c0, t0) = (shared.answers.load(Ordering::Relaxed), procstat::cpu_ns(p.server_pid)?, Instant::now());
    std::thread::sleep(Duration::from_secs(p.seconds));
    let (a1, c1, dt) = (shared.answers.load(Ordering::Relaxed), procstat::cpu_ns(p.server_pid)?, t0.elapsed());
    if let Some(e) = shared.first_error() {
        bail!("{} client(s) failed; first: {e}", shared.failed.load(Ordering::Relaxed));
    }
    let answers = (a1 - a0).max(1);
    Ok(Report { rate: answers as f64 / dt.as_secs_f64(), cpu_us_per_request: (c1 - c0) as f64 / 1e3 / answers as f64 })
}
