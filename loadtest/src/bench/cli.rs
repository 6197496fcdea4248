//! `squall-loadtest bench ...`: the command line of the gateway
//! micro-benchmarks. `tools/bench-gateway` runs them all, side by side with
//! nchan and the hello-world server, and prints the summary.

use super::wire::Target;
use super::{hello, longpoll, repoll};
use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand, ValueEnum};
use std::path::PathBuf;
use std::time::Duration;

/// Gateway micro-benchmarks (Squall side by side with a peer).
#[derive(Subcommand)]
pub enum Bench {
    /// Fan-out rounds: C parked long-polls, one publish per round; publish → last delivery, CPU per
    /// delivery (with the re-poll), server memory per parked client.
    ///
    /// Example: squall-loadtest bench longpoll --target nchan --site http://127.0.0.1:8090 --server-pid 1234
    Longpoll {
        #[command(flatten)]
        common: BenchArgs,
        /// Long-poll clients.
        #[arg(long, default_value_t = 10_000)]
        clients: usize,
        /// Rounds (one published message each).
        #[arg(long, default_value_t = 10)]
        rounds: u64,
        /// Characters of message content.
        #[arg(long, default_value_t = 300)]
        content_bytes: usize,
        /// Pause between rounds, ms.
        #[arg(long, default_value_t = 200)]
        pause_ms: u64,
    },
    /// Request rate: C connections sending dont_block polls back to back; answers/s and CPU per answer.
    ///
    /// Example: squall-loadtest bench repoll --target hello --site http://127.0.0.1:8091 --server-pid 1234
    Repoll {
        #[command(flatten)]
        common: BenchArgs,
        /// Connections.
        #[arg(long, default_value_t = 100)]
        clients: usize,
        /// Measured seconds.
        #[arg(long, default_value_t = 10)]
        seconds: u64,
    },
    /// Run the hello-world HTTP server (the request-rate ceiling) until killed.
    HelloServer {
        /// Listen address.
        #[arg(long, default_value = "127.0.0.1:8091")]
        listen: std::net::SocketAddr,
        /// Threads (one monoio executor and SO_REUSEPORT listener each).
        #[arg(long, default_value_t = 2)]
        threads: usize,
        /// Use the epoll driver instead of io_uring.
        #[arg(long)]
        epoll: bool,
    },
}

/// Which server is measured.
#[derive(Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum Kind {
    /// Squall (queues via GET /events, rounds via /api/internal/notify_tornado).
    Squall,
    /// nginx with nchan (GET /sub/CHANNEL, POST /pub/CHANNEL, /nchan_status).
    Nchan,
    /// The hello-world server (request rate only).
    Hello,
}

/// What every benchmark needs.
#[derive(Args)]
pub struct BenchArgs {
    /// The server kind.
    #[arg(long, value_enum)]
    target: Kind,
    /// Server URL (http://host:port).
    #[arg(long)]
    site: String,
    /// The server's pid (the nginx worker for nchan): CPU and memory are read from /proc.
    #[arg(long)]
    server_pid: u32,
    /// Squall: a squall-loadtest state file holding the site's accounts (`squall admin create-users
    /// --loadtest-state`).
    #[arg(long, default_value = ".squall-loadtest-state.json")]
    state: PathBuf,
    /// Squall: how many of those accounts own the queues (round-robin).
    #[arg(long, default_value_t = 1000)]
    users: usize,
    /// Squall: the internal endpoints' secret (`<state_dir>/shared_secret`).
    #[arg(long, env = "SQUALL_SHARED_SECRET", default_value = "")]
    secret: String,
    /// nchan: channel id.
    #[arg(long, default_value = "bench")]
    channel: String,
    /// Client threads (default: one per CPU).
    #[arg(long)]
    threads: Option<usize>,
    /// Use the epoll driver in the clients instead of io_uring.
    #[arg(long)]
    epoll: bool,
    /// Write the figures as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
}

impl BenchArgs {
    fn target(&self) -> Result<Target> {
        Ok(match self.target {
            Kind::Squall => {
                let mut accounts = crate::setup::cached_accounts(&self.state, &self.site)?;
                if accounts.len() < self.users {
                    bail!(
                        "{} holds {} accounts for {}; --users wants {} (squall admin create-users --count {} --site {} --loadtest-state {})",
                        self.state.display(),
                        accounts.len(),
                        self.site,
                        self.users,
                        self.users,
                        self.site,
                        self.state.display()
                    );
                }
                accounts.truncate(self.users);
                if self.secret.is_empty() {
                    bail!("--secret (or SQUALL_SHARED_SECRET) is needed to publish to Squall");
                }
                Target::Squall { accounts, secret: self.secret.clone() }
            }
            Kind::Nchan => Target::Nchan { channel: self.channel.clone() },
            Kind::Hello => Target::Hello,
        })
    }

    fn threads(&self) -> usize {
        self.threads.unwrap_or_else(|| std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1))
    }

    fn write_json(&self, value: &impl serde::Serialize) -> Result<()> {
        if let Some(path) = &self.json {
            std::fs::write(path, serde_json::to_vec_pretty(value)?)
                .with_context(|| format!("writing {}", path.display()))?;
        }
        Ok(())
    }
}

/// Runs a benchmark command; prints its figures.
pub fn run(b: Bench) -> Result<i32> {
    match b {
        Bench::Longpoll { common, clients, rounds, content_bytes, pause_ms } => {
            if common.target == Kind::Hello {
                bail!("the hello-world server has no long-polls; use `bench repoll`");
            }
            let p = longpoll::Params {
                clients,
                rounds,
                threads: common.threads(),
                content_bytes,
                server_pid: common.server_pid,
                io_uring: !common.epoll,
                pause: Duration::from_millis(pause_ms),
            };
            let report = longpoll::run(&common.site, common.target()?, &p)?;
            println!("round  last delivery ms  median delivery ms  server CPU µs/delivery");
            for r in &report.rounds {
                println!("{:>5}  {:>16.1}  {:>18.1}  {:>22.2}", r.round, r.last_ms, r.p50_ms, r.cpu_us_per_delivery);
            }
            let (last, p50, cpu) = report.medians();
            println!(
                "median over {} rounds: last delivery {last:.1} ms, median delivery {p50:.1} ms, {cpu:.2} µs CPU per delivery; \
                 server memory {:.0} bytes per parked client ({} clients)",
                report.rounds.len(),
                report.rss_bytes_per_client,
                report.clients
            );
            common.write_json(&report)?;
        }
        Bench::Repoll { common, clients, seconds } => {
            let p = repoll::Params {
                clients,
                seconds,
                threads: common.threads(),
                server_pid: common.server_pid,
                io_uring: !common.epoll,
            };
            let report = repoll::run(&common.site, common.target()?, &p)?;
            println!(
                "{:.0} requests/s over {seconds} s with {clients} connections; {:.2} µs server CPU per request",
                report.rate, report.cpu_us_per_request
            );
            common.write_json(&report)?;
        }
        Bench::HelloServer { listen, threads, epoll } => hello::serve(listen, threads, !epoll)?,
    }
    Ok(0)
}
