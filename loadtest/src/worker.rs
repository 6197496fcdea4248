//! Worker processes. One process may hold only so many open files, so the
//! controller starts `squall-loadtest worker` processes, hands each its
//! clients as one JSON line on stdin, reads progress lines from its stdout,
//! and writes `stop` when the scenario is over; the worker then prints its
//! final report and exits.

use crate::client::{self, ClientSpec, Counters, Received, Target};
use crate::stats;
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{IpAddr, ToSocketAddrs};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::Ordering;
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

/// What one worker runs.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WorkerSpec {
    /// `http://host:port`.
    pub site: String,
    /// Run id stamped into messages.
    pub run: String,
    /// The clients.
    pub clients: Vec<ClientSpec>,
    /// Threads (one monoio runtime each).
    pub threads: usize,
    /// New connections per second for this worker.
    pub ramp_per_sec: f64,
    /// Source addresses to spread connections over (empty: the OS picks).
    pub source_addrs: Vec<IpAddr>,
    /// io_uring (else epoll).
    pub io_uring: bool,
}

/// Counters as reported.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Progress {
    pub connected: u64,
    pub registrations: u64,
    pub reregistrations: u64,
    pub drops: u64,
    pub heartbeats: u64,
    pub deliveries: u64,
    pub errors: u64,
}

impl Progress {
    fn of(c: &Counters) -> Self {
        let l = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
        Progress {
            connected: l(&c.connected),
            registrations: l(&c.registrations),
            reregistrations: l(&c.reregistrations),
            drops: l(&c.drops),
            heartbeats: l(&c.heartbeats),
            deliveries: l(&c.deliveries),
            errors: l(&c.errors),
        }
    }

    /// Sums counters of several workers.
    pub fn add(&mut self, o: &Progress) {
        self.connected += o.connected;
        self.registrations += o.registrations;
        self.reregistrations += o.reregistrations;
        self.drops += o.drops;
        self.heartbeats += o.heartbeats;
        self.deliveries += o.deliveries;
        self.errors += o.errors;
    }
}

/// A worker's last words.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Final {
    pub progress: Progress,
    /// Message ids per client, in arrival order.
    pub received: HashMap<usize, Vec<i64>>,
    /// Delivery latency histogram (see [`stats::encode`]).
    pub latency: String,
    /// The worker's peak RSS, KiB.
    pub max_rss_kib: u64,
}

/// A line a worker prints.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Line {
    Progress(Progress),
    Final(Box<Final>),
}

/// The `worker` subcommand: reads the spec from stdin, runs until `stop`.
pub fn main() -> Result<()> {
    let mut stdin = BufReader::new(std::io::stdin());
    let mut first = String::new();
    stdin.read_line(&mut first)?;
    let spec: WorkerSpec = serde_json::from_str(&first).context("worker spec")?;
    let (addr_text, host) = crate::http::site_addr(&spec.site)?;
    let addr = addr_text.to_socket_addrs()?.next().with_context(|| format!("cannot resolve {addr_text}"))?;
    let target = Arc::new(Target { addr, host, run: spec.run.clone() });
    let counters = Arc::new(Counters::default());
    let threads = spec.threads.max(1);
    let mut shards: Vec<Arc<Mutex<Received>>> = Vec::new();
    let per_thread_rate = (spec.ramp_per_sec / threads as f64).max(0.001);
    let cpus = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    for t in 0..threads {
        let received = Arc::new(Mutex::new(Received::default()));
        shards.push(received.clone());
        let mine: Vec<(usize, ClientSpec)> =
            spec.clients.iter().enumerate().filter(|(i, _)| i % threads == t).map(|(i, c)| (i, c.clone())).collect();
        let (target, counters, sources, io_uring) =
            (target.clone(), counters.clone(), spec.source_addrs.clone(), spec.io_uring);
        std::thread::Builder::new().name(format!("loadtest-{t}")).spawn(move || {
            let _ = monoio::utils::bind_to_cpu_set(Some(t % cpus));
            let work = async move {
                for (i, c) in mine {
                    let source = (!sources.is_empty()).then(|| sources[i % sources.len()]);
                    monoio::spawn(client::run(c, target.clone(), source, counters.clone(), received.clone()));
                    // Ramp: this thread's share of the connection rate.
                    monoio::time::sleep(Duration::from_secs_f64(1.0 / per_thread_rate)).await;
                }
                // Keep the runtime alive for the clients.
                loop {
                    monoio::time::sleep(Duration::from_secs(3600)).await;
                }
            };
            let built = if io_uring {
                monoio::RuntimeBuilder::<monoio::FusionDriver>::new()
                    .enable_timer()
                    .build()
                    .map(|mut rt| rt.block_on(work))
            } else {
                monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
                    .enable_timer()
                    .build()
                    .map(|mut rt| rt.block_on(work))
            };
            if let Err(e) = built {
                eprintln!("worker thread {t}: cannot start a runtime: {e}");
            }
        })?;
    }

    // Progress every 500 ms until `stop` (or stdin closes).
    let (stop_tx, stop_rx) = mpsc::channel::<()>();
    std::thread::spawn(move || {
        let mut line = String::new();
        while stdin.read_line(&mut line).map(|n| n > 0).unwrap_or(false) {
            if line.trim() == "stop" {
                break;
            }
            line.clear();
        }
        let _ = stop_tx.send(());
    });
    let out = std::io::stdout();
    loop {
        let stopped = stop_rx.recv_timeout(Duration::from_millis(500)).is_ok();
        if stopped {
            break;
        }
        let mut o = out.lock();
        writeln!(o, "{}", serde_json::to_string(&Line::Progress(Progress::of(&counters)))?)?;
        o.flush()?;
    }
    let mut latency = stats::histogram();
    let mut received = HashMap::new();
    for s in &shards {
        let mut r = s.lock().unwrap_or_else(|p| p.into_inner());
        let _ = latency.add(&r.latency);
        received.extend(std::mem::take(&mut r.ids));
    }
    let fin = Final {
        progress: Progress::of(&counters),
        received,
        latency: stats::encode(&latency)?,
        max_rss_kib: max_rss_kib(),
    };
    let mut o = out.lock();
    writeln!(o, "{}", serde_json::to_string(&Line::Final(Box::new(fin)))?)?;
    o.flush()?;
    // The client threads never end by themselves.
    std::process::exit(0);
}

/// Peak resident set of this process, KiB.
pub fn max_rss_kib() -> u64 {
    // SAFETY: getrusage only writes into the zeroed struct we pass.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) } == 0 {
        usage.ru_maxrss.max(0) as u64
    } else {
        0
    }
}

/// The controller's handle on one worker process.
pub struct Handle {
    child: Child,
    stdin: ChildStdin,
    lines: mpsc::Receiver<Line>,
    /// Latest progress.
    pub progress: Progress,
    /// The worker's pid.
    pub pid: u32,
}

impl Handle {
    /// Starts a worker running `spec` (this same executable).
    pub fn spawn(spec: &WorkerSpec) -> Result<Handle> {
        let exe = std::env::current_exe().context("locating squall-loadtest")?;
        let mut child = Command::new(exe)
            .arg("worker")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .context("starting a worker process")?;
        let mut stdin = child.stdin.take().context("worker stdin")?;
        writeln!(stdin, "{}", serde_json::to_string(spec)?)?;
        stdin.flush()?;
        let stdout = child.stdout.take().context("worker stdout")?;
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(|l| l.ok()) {
                if let Ok(parsed) = serde_json::from_str::<Line>(&line) {
                    if tx.send(parsed).is_err() {
                        break;
                    }
                }
            }
        });
        let pid = child.id();
        Ok(Handle { child, stdin, lines: rx, progress: Progress::default(), pid })
    }

    /// Takes in progress lines received so far.
    pub fn poll(&mut self) {
        while let Ok(line) = self.lines.try_recv() {
            if let Line::Progress(p) = line {
                self.progress = p;
            }
        }
    }

    /// Stops the worker and returns its final report.
    pub fn finish(mut self) -> Result<Final> {
        writeln!(self.stdin, "stop")?;
        self.stdin.flush()?;
        loop {
            match self.lines.recv_timeout(Duration::from_secs(60)) {
                Ok(Line::Final(f)) => {
                    let _ = self.child.wait();
                    return Ok(*f);
                }
                Ok(Line::Progress(_)) => {}
                Err(_) => {
                    let _ = self.child.kill();
                    bail!("worker {} sent no final report", self.pid);
                }
            }
        }
    }
}
