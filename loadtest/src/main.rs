//! The `squall-loadtest` command.

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use squall_loadtest::scenario::{chat, fanout, hold, ramp, FleetOptions, Output};
use squall_loadtest::setup::{self, Admin};
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Load-test harness for Zulip-compatible servers (Squall or Zulip):
/// thousands of real long-poll clients, latency histograms and an
/// exactly-once check of every delivery.
///
/// Setup goes through the standard API as an administrator: users are
/// created with POST /users (credentials cached in --state for later runs)
/// and subscribed with POST /users/me/subscriptions. Disable the server's
/// rate limits for large setups.
///
/// Examples:
///   squall-loadtest fanout --zuliprc .squall/zuliprc --recipients 10000 --messages 20 --json out.json --plot out.svg
///   squall-loadtest hold --zuliprc .squall/zuliprc --clients 50000 --users 500 --seconds 120 --server-pid $(pidof squall)
///   squall-loadtest chat --zuliprc .squall/zuliprc --streams 100 --stream-size 10 --senders 50 --rate 200 --seconds 60
///   squall-loadtest ramp --zuliprc .squall/zuliprc --start 500 --max 20000 --p99-ms 500
#[derive(Parser)]
#[command(version, verbatim_doc_comment)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// N idle long-polls for T seconds: connections, heartbeats, drops, server RSS per connection.
    Hold {
        #[command(flatten)]
        common: Common,
        /// Long-poll connections (each its own event queue).
        #[arg(long, default_value_t = 1000)]
        clients: usize,
        /// Distinct users; clients share them round-robin (default: one per client).
        #[arg(long)]
        users: Option<usize>,
        /// How long to hold them.
        #[arg(long, default_value_t = 60)]
        seconds: u64,
        /// The server's pid, to report its RSS per connection.
        #[arg(long)]
        server_pid: Option<u32>,
    },
    /// N recipients long-poll one stream; M messages; per-recipient delivery latency, exactly-once check.
    Fanout {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        fanout: FanoutArgs,
    },
    /// A realistic mix: S streams of Z long-polling members, A senders at R msg/s, DMs with typing, read flags.
    Chat {
        #[command(flatten)]
        common: Common,
        /// Streams.
        #[arg(long, default_value_t = 10)]
        streams: usize,
        /// Members per stream (all of them long-poll).
        #[arg(long, default_value_t = 10)]
        stream_size: usize,
        /// Members who send.
        #[arg(long, default_value_t = 10)]
        senders: usize,
        /// Total messages per second.
        #[arg(long, default_value_t = 20.0)]
        rate: f64,
        /// How long to send.
        #[arg(long, default_value_t = 30)]
        seconds: u64,
        /// Fraction of messages that are DMs (each preceded by a typing notification).
        #[arg(long, default_value_t = 0.1)]
        dm_fraction: f64,
        /// Fraction of sends followed by a read-flags update.
        #[arg(long, default_value_t = 0.2)]
        read_fraction: f64,
        /// Seconds to wait for deliveries after the last send.
        #[arg(long, default_value_t = 30)]
        drain_secs: u64,
    },
    /// Fanout with N doubling from --start until delivery p99 exceeds --p99-ms; reports the knee.
    Ramp {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        fanout: FanoutArgs,
        /// First N.
        #[arg(long, default_value_t = 100)]
        start: usize,
        /// Largest N (users created up to it).
        #[arg(long, default_value_t = 10_000)]
        max: usize,
        /// The p99 delivery bound, ms.
        #[arg(long, default_value_t = 1000.0)]
        p99_ms: f64,
    },
    /// Gateway micro-benchmarks side by side with a peer: longpoll, repoll, hello-server
    /// (`tools/bench-gateway` runs them all).
    #[command(subcommand)]
    Bench(squall_loadtest::bench::cli::Bench),
    /// Internal: a worker process started by the others (reads its spec on stdin).
    #[command(hide = true)]
    Worker,
}

#[derive(Args, Clone)]
struct FanoutArgs {
    /// Recipients (distinct users, each long-polling).
    #[arg(long, default_value_t = 1000)]
    recipients: usize,
    /// Messages to send.
    #[arg(long, default_value_t = 20)]
    messages: usize,
    /// Pause between sends, ms.
    #[arg(long, default_value_t = 250)]
    interval_ms: u64,
    /// The stream (created when missing).
    #[arg(long, default_value = "loadtest-fanout")]
    stream: String,
    /// Seconds to wait for deliveries after the last send.
    #[arg(long, default_value_t = 30)]
    drain_secs: u64,
    /// Seconds a refused send (no connection, or a 503: server restarting,
    /// database away) is tried again before it counts as failed; 0 stops the
    /// run at the first connection failure.
    #[arg(long, default_value_t = 0)]
    send_retry_secs: u64,
}

#[derive(Args, Clone)]
struct Common {
    /// Admin zuliprc ([api] email, key, site), e.g. the .squall/zuliprc tools/run writes.
    #[arg(long, conflicts_with_all = ["site", "email", "api_key"])]
    zuliprc: Option<PathBuf>,
    /// Server URL (http://host:port), with --email and --api-key.
    #[arg(long, requires_all = ["email", "api_key"])]
    site: Option<String>,
    /// Admin email.
    #[arg(long)]
    email: Option<String>,
    /// Admin API key.
    #[arg(long)]
    api_key: Option<String>,
    /// Cache of created users' API keys, reused by later runs.
    #[arg(long, default_value = ".squall-loadtest-state.json")]
    state: PathBuf,
    /// Test users are USER_PREFIX<i>@loadtest.example.
    #[arg(long, default_value = "loadtest-")]
    user_prefix: String,
    /// Password given to created users (needed to fetch their API keys).
    #[arg(long, default_value = "squall-loadtest-password")]
    password: String,
    /// Concurrent setup requests.
    #[arg(long, default_value_t = 8)]
    setup_parallel: usize,
    /// Clients per worker process (a process may hold ~20,000 open files here).
    #[arg(long, default_value_t = 15_000)]
    clients_per_worker: usize,
    /// Threads (monoio runtimes) per worker process (default: CPU count).
    #[arg(long)]
    threads: Option<usize>,
    /// New connections per second, over all workers.
    #[arg(long, default_value_t = 2000.0)]
    ramp_rate: f64,
    /// Source addresses to spread connections over (comma-separated; default: 127.0.0.x as needed for loopback).
    #[arg(long, value_delimiter = ',')]
    source_addrs: Vec<IpAddr>,
    /// Use epoll instead of io_uring.
    #[arg(long)]
    epoll: bool,
    /// Seconds allowed for all clients to connect and register.
    #[arg(long, default_value_t = 300)]
    connect_timeout_secs: u64,
    /// Write the full report (with HDR histograms) as JSON.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Draw the latency distribution (.svg or .png).
    #[arg(long)]
    plot: Option<PathBuf>,
}

impl Common {
    fn admin(&self) -> Result<Admin> {
        let (email, key, site) = match (&self.zuliprc, &self.site, &self.email, &self.api_key) {
            (Some(path), _, _, _) => setup::read_zuliprc(path)?,
            (None, Some(s), Some(e), Some(k)) => (e.clone(), k.clone(), s.clone()),
            _ => bail!("give --zuliprc FILE, or --site, --email and --api-key (an administrator's)"),
        };
        let site = if site.contains("://") { site } else { format!("http://{site}") };
        Admin::connect(&site, &email, &key)
    }

    fn fleet(&self, site: &str) -> FleetOptions {
        FleetOptions {
            site: site.to_owned(),
            clients_per_worker: self.clients_per_worker,
            threads_per_worker: self
                .threads
                .unwrap_or_else(|| std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)),
            ramp_rate: self.ramp_rate,
            source_addrs: self.source_addrs.clone(),
            io_uring: !self.epoll,
        }
    }

    fn users(&self, admin: &Admin, n: usize) -> Result<Vec<setup::Account>> {
        setup::ensure_users(
            admin,
            &self.user_prefix,
            "loadtest.example",
            n,
            &self.password,
            &self.state,
            self.setup_parallel,
        )
        .context("setting up users")
    }

    fn output(&self) -> Output {
        Output { json: self.json.clone(), plot: self.plot.clone() }
    }
}

fn fanout_params(f: &FanoutArgs, connect_timeout: u64) -> fanout::Fanout {
    fanout::Fanout {
        recipients: f.recipients,
        messages: f.messages,
        interval: Duration::from_millis(f.interval_ms),
        stream: f.stream.clone(),
        drain: Duration::from_secs(f.drain_secs),
        send_retry: Duration::from_secs(f.send_retry_secs),
        connect_timeout: Duration::from_secs(connect_timeout),
    }
}

fn main() {
    let code = match run() {
        Ok(code) => code,
        Err(e) => {
            eprintln!("squall-loadtest: {e:#}");
            2
        }
    };
    std::process::exit(code);
}

fn run() -> Result<i32> {
    let cli = Cli::parse();
    match cli.command {
        Command::Bench(b) => squall_loadtest::bench::cli::run(b),
        Command::Worker => {
            squall_loadtest::worker::main()?;
            Ok(0)
        }
        Command::Hold { common, clients, users, seconds, server_pid } => {
            let admin = common.admin()?;
            let accounts = common.users(&admin, users.unwrap_or(clients).clamp(1, clients.max(1)))?;
            let h = hold::Hold {
                clients,
                hold: Duration::from_secs(seconds),
                connect_timeout: Duration::from_secs(common.connect_timeout_secs),
                server_pid,
            };
            hold::command(&admin, &common.fleet(&admin.site), &accounts, &h, &common.output())
        }
        Command::Fanout { common, fanout: f } => {
            let admin = common.admin()?;
            let accounts = common.users(&admin, f.recipients)?;
            fanout::command(
                &admin,
                &common.fleet(&admin.site),
                &accounts,
                &fanout_params(&f, common.connect_timeout_secs),
                &common.output(),
            )
        }
        Command::Chat {
            common,
            streams,
            stream_size,
            senders,
            rate,
            seconds,
            dm_fraction,
            read_fraction,
            drain_secs,
        } => {
            let admin = common.admin()?;
            let accounts = common.users(&admin, streams * stream_size)?;
            let c = chat::Chat {
                streams,
                stream_size,
                senders,
                rate,
                duration: Duration::from_secs(seconds),
                dm_fraction,
                read_fraction,
                drain: Duration::from_secs(drain_secs),
                connect_timeout: Duration::from_secs(common.connect_timeout_secs),
            };
            chat::command(&admin, &common.fleet(&admin.site), &accounts, &c, &common.output())
        }
        Command::Ramp { common, fanout: f, start, max, p99_ms } => {
            let admin = common.admin()?;
            let accounts = common.users(&admin, max)?;
            ramp::command(
                &admin,
                &common.fleet(&admin.site),
                &accounts,
                start,
                p99_ms,
                &fanout_params(&f, common.connect_timeout_secs),
                &common.output(),
            )
        }
    }
}
