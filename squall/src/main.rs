//! The `squall` command: serve (one node), or gateway / backend / router
//! (a cluster), migrate, administer. Parses the command
//! line, loads the configuration and calls the library code that does the
//! work; `serve` wires the backend and the gateway together.

mod admin;
mod amqp;
mod cluster;
mod config;
mod family;
mod host;
mod inprocess;
mod memory;
mod serve;
mod siblings;
mod status;
mod workers;

use clap::{Parser, Subcommand};
use config::Config;
use std::io::Write;
use std::path::PathBuf;

/// Squall: a Zulip-compatible real-time server.
#[derive(Parser)]
#[command(version, about, long_about = None)]
struct Cli {
    /// TOML configuration file (see squall.example.toml). Environment
    /// variables SQUALL_* override it.
    #[arg(long, global = true, env = "SQUALL_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a single-node server: backend and gateway in one process, one port.
    Serve {
        /// Listen address (overrides config and SQUALL_LISTEN).
        #[arg(long)]
        listen: Option<String>,
        /// Print the effective configuration and exit.
        #[arg(long)]
        check_config: bool,
        /// Internal: this is gateway process K of the host, started by the first.
        #[arg(long, hide = true, requires = "server_generation")]
        process_index: Option<u16>,
        /// Internal: the node's server_generation, shared by its processes.
        #[arg(long, hide = true)]
        server_generation: Option<i64>,
    },
    /// Run gateway node N of a cluster: the event server (long-polls,
    /// queues) fed by RabbitMQ, with `gateway_processes` processes of
    /// `cores` cores on one port. Backends create queues here over HTTP
    /// (`/api/internal/squall/...`, guarded by `shared_secret`). The
    /// configuration's [cluster] section describes the whole cluster and
    /// must be the same on every host (see squall.cluster.example.toml).
    ///
    /// Example: squall --config cluster.toml gateway --node 0 --listen 0.0.0.0:9991
    Gateway {
        /// This node's index in cluster.gateways.
        #[arg(long)]
        node: u16,
        /// Listen address (default: the node's entry in cluster.gateways).
        #[arg(long)]
        listen: Option<String>,
        /// Internal: this is gateway process K of the node, started by the first.
        #[arg(long, hide = true, requires = "server_generation")]
        process_index: Option<u16>,
        /// Internal: the node's server_generation, shared by its processes.
        #[arg(long, hide = true)]
        server_generation: Option<i64>,
    },
    /// Run REST backend N of a cluster: the whole Zulip API except
    /// long-polls, on PostgreSQL, publishing events to the gateway nodes
    /// through RabbitMQ. Run as many as the load needs, all on the one
    /// database; the router spreads requests over them. Backend 0 applies
    /// migrations and runs the soft-deactivation job.
    ///
    /// Example: squall --config cluster.toml backend --index 0
    Backend {
        /// This backend's index in cluster.backends.
        #[arg(long, default_value_t = 0)]
        index: usize,
        /// Listen address (default: the backend's entry in cluster.backends).
        #[arg(long)]
        listen: Option<String>,
    },
    /// Run a cluster's front door: /events to the gateway node their queue
    /// id names, everything else to the backends, keep-alive both ways and
    /// answers streamed. Several routers may share a port (SO_REUSEPORT).
    ///
    /// Example: squall --config cluster.toml router --listen 0.0.0.0:80
    Router {
        /// Listen address (default: cluster.router_listen).
        #[arg(long)]
        listen: Option<String>,
    },
    /// Run queue workers on their own: missed-message emails
    /// (`missedmessage_emails`), mobile push
    /// (`missedmessage_mobile_notifications`), outgoing-webhook bots
    /// (`outgoing_webhooks`) and link previews (`embed_links`), consumed
    /// from RabbitMQ (`amqp_url`). Run as many as the load needs, on any
    /// host that reaches the database and RabbitMQ. With a [cluster]
    /// section the bots' replies and previews reach the gateways through
    /// RabbitMQ; a single node runs its workers inside `squall serve`
    /// instead (list in its `[workers] queues` the ones it keeps, and run
    /// the others here: only the email and push queues can move, as the
    /// others send events).
    ///
    /// Example: squall --config cluster.toml worker --queues missedmessage_emails
    Worker {
        /// Queues to consume: names, or `all` (default: the configuration's
        /// `[workers] queues`, SQUALL_WORKERS).
        #[arg(long, value_delimiter = ',')]
        queues: Option<Vec<String>>,
    },
    /// Apply pending database migrations.
    Migrate,
    /// List this host's gateway processes and their load (from the reports
    /// each writes to <state_dir>/run every second).
    Status,
    /// Administrative tasks.
    Admin {
        #[command(subcommand)]
        task: Admin,
    },
}

#[derive(Subcommand)]
pub(crate) enum Admin {
    /// Create a realm (organization) with an owner; prints
    /// {"site","email","api_key"} as JSON.
    CreateRealm {
        /// Subdomain; "" is the root realm served at the external host itself.
        #[arg(long)]
        subdomain: String,
        /// Organization name.
        #[arg(long)]
        name: String,
        /// Owner's email.
        #[arg(long)]
        owner_email: String,
        /// Owner's password (for /fetch_api_key).
        #[arg(long)]
        owner_password: String,
        /// Owner's full name (defaults to the part of the email before '@').
        #[arg(long)]
        owner_name: Option<String>,
    },
    /// Create many members at once for load tests (no password; their API
    /// keys are printed as JSON, or merged into a squall-loadtest state
    /// file with --loadtest-state). Existing accounts are kept. Emails are
    /// {prefix}{i}@{domain}, as squall-loadtest names them.
    ///
    /// Example: squall admin create-users --count 2000 --site http://127.0.0.1:9991 --loadtest-state .squall-loadtest-state.json
    CreateUsers {
        /// How many users.
        #[arg(long)]
        count: usize,
        /// Email prefix (squall-loadtest's --user-prefix).
        #[arg(long, default_value = "loadtest-")]
        prefix: String,
        /// Email domain.
        #[arg(long, default_value = "loadtest.example")]
        domain: String,
        /// Realm subdomain; "" is the root realm.
        #[arg(long, default_value = "")]
        realm: String,
        /// squall-loadtest state file to merge the accounts into (needs --site).
        #[arg(long, requires = "site")]
        loadtest_state: Option<PathBuf>,
        /// The site the accounts are for, as squall-loadtest is given it.
        #[arg(long)]
        site: Option<String>,
    },
    /// Soft-deactivate users inactive for N days (what the periodic job
    /// does), then backfill idle users' missed messages unless
    /// --no-catch-up. Prints {"deactivated":[ids],"caught_up_rows":n}.
    ///
    /// Example: squall admin soft-deactivate --inactive-days 28
    SoftDeactivate {
        /// Days without activity after which a user is soft-deactivated.
        #[arg(long, default_value_t = squall_backend::soft_deactivation::DEFAULT_INACTIVE_DAYS)]
        inactive_days: u32,
        /// Only users of this realm (subdomain; "" is the root realm).
        #[arg(long)]
        realm: Option<String>,
        /// Do not backfill idle users afterwards.
        #[arg(long)]
        no_catch_up: bool,
    },
}

/// Says where the process listens: a machine-readable line for scripts
/// and tests.
fn announce(addr: std::net::SocketAddr) {
    println!("squall: listening on http://{addr}");
    let _ = std::io::stdout().flush();
}

fn main() -> anyhow::Result<()> {
    memory::return_large_blocks_to_the_system();
    memory::start_trimming();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("SQUALL_LOG")
                .unwrap_or_else(|_| "info,tokio_postgres=warn".into()),
        )
        .with_writer(std::io::stderr)
        // Colours only for a terminal: a log file gets plain text.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        // Thread names say which process and core: squall-core-<global
        // core>, squall-p<process>-backend.
        .with_thread_names(true)
        .init();
    let cli = Cli::parse();
    let mut cfg = Config::load(cli.config.as_deref())?;
    match cli.command {
        Command::Serve { listen, check_config, process_index, server_generation } => {
            if let Some(l) = listen {
                cfg.listen = l;
            }
            if check_config {
                println!("{}", toml::to_string_pretty(&cfg)?);
                return Ok(());
            }
            let child = process_index
                .zip(server_generation)
                .map(|(index, server_generation)| serve::Child { index, server_generation });
            serve::serve(cfg, serve::Role::Single, child, announce)
        }
        Command::Gateway { node, listen, process_index, server_generation } => {
            cfg.listen = match listen {
                Some(l) => l,
                None => cfg.cluster.gateways.get(node as usize).cloned().unwrap_or(cfg.listen),
            };
            let child = process_index
                .zip(server_generation)
                .map(|(index, server_generation)| serve::Child { index, server_generation });
            serve::serve(cfg, serve::Role::Gateway { node }, child, announce)
        }
        Command::Backend { index, listen } => cluster::run::backend(cfg, index, listen, announce),
        Command::Router { listen } => cluster::run::router(cfg, listen, announce),
        Command::Status => {
            let run_dir = std::path::Path::new(&cfg.state_dir).join("run");
            let reports = status::read(&run_dir);
            if reports.is_empty() {
                println!("no gateway process has reported in {}", run_dir.display());
                return Ok(());
            }
            print!("{}", status::table(&reports, squall_backend::unix_time().as_secs()));
            Ok(())
        }
        Command::Worker { queues } => workers::run(cfg, queues),
        Command::Migrate => {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            let pool = squall_backend::db::connect(&cfg.backend.database_url, 1)?;
            let n = rt.block_on(squall_backend::db::migrate(&pool))?;
            println!("applied {n} migration(s)");
            Ok(())
        }
        Command::Admin { task } => admin::run(&cfg, task),
    }
}
