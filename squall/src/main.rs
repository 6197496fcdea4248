//! The `squall` command: serve, migrate, administer. Parses the command
//! line, loads the configuration and calls the library code that does the
//! work; `serve` wires the backend and the gateway together.

mod config;
mod host;
mod inprocess;
mod serve;

use anyhow::Context;
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
    },
    /// Apply pending database migrations.
    Migrate,
    /// Administrative tasks.
    Admin {
        #[command(subcommand)]
        task: Admin,
    },
}

#[derive(Subcommand)]
enum Admin {
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

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("SQUALL_LOG")
                .unwrap_or_else(|_| "info,tokio_postgres=warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let mut cfg = Config::load(cli.config.as_deref())?;
    match cli.command {
        Command::Serve { listen, check_config } => {
            if let Some(l) = listen {
                cfg.listen = l;
            }
            if check_config {
                println!("{}", toml::to_string_pretty(&cfg)?);
                return Ok(());
            }
            serve::serve(cfg, |addr| {
                // Machine-readable line for scripts and tests.
                println!("squall: listening on http://{addr}");
                let _ = std::io::stdout().flush();
            })
        }
        Command::Migrate => {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            let pool = squall_backend::db::connect(&cfg.backend.database_url, 1)?;
            let n = rt.block_on(squall_backend::db::migrate(&pool))?;
            println!("applied {n} migration(s)");
            Ok(())
        }
        Command::Admin { task: Admin::CreateRealm { subdomain, name, owner_email, owner_password, owner_name } } => {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            let pool = squall_backend::db::connect(&cfg.backend.database_url, 1)?;
            rt.block_on(squall_backend::db::migrate(&pool))?;
            let owner_name = owner_name.unwrap_or_else(|| owner_email.split('@').next().unwrap_or("Owner").to_owned());
            let created = rt
                .block_on(squall_backend::realm::create_realm(
                    &pool,
                    &subdomain,
                    &name,
                    &owner_email,
                    &owner_name,
                    &owner_password,
                ))
                .map_err(|e| anyhow::anyhow!(e.msg))
                .context("creating the realm")?;
            let host = cfg.external_host();
            let site =
                if subdomain.is_empty() { format!("http://{host}") } else { format!("http://{subdomain}.{host}") };
            println!("{}", serde_json::json!({"site": site, "email": owner_email, "api_key": created.api_key}));
            Ok(())
        }
        Command::Admin { task: Admin::SoftDeactivate { inactive_days, realm, no_catch_up } } => {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            let pool = squall_backend::db::connect(&cfg.backend.database_url, 1)?;
            rt.block_on(squall_backend::db::migrate(&pool))?;
            let report = rt
                .block_on(async {
                    let mut db = pool.get().await?;
                    let realm_id = match &realm {
                        None => None,
                        Some(sub) => {
                            let row = db.query_opt("SELECT id FROM realm WHERE string_id = $1", &[sub]).await?;
                            Some(row.with_context(|| format!("no realm with subdomain {sub:?}"))?.get::<_, i32>(0)
                                as i64)
                        }
                    };
                    squall_backend::soft_deactivation::run_job(&mut db, realm_id, inactive_days, !no_catch_up)
                        .await
                        .map_err(|e| anyhow::anyhow!(e.msg))
                })
                .context("soft-deactivating users")?;
            println!(
                "{}",
                serde_json::json!({"deactivated": report.deactivated, "caught_up_rows": report.caught_up_rows})
            );
            Ok(())
        }
    }
}
