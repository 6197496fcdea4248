//! A `squall serve` process with a fresh database and realm.

use crate::services::fresh_database;
use crate::{squall_bin, Client};
use anyhow::{bail, Context, Result};
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A running `squall serve` with one realm.
pub struct Server {
    child: Child,
    /// `http://127.0.0.1:PORT`
    pub url: String,
    /// The database it uses.
    pub database_url: String,
    /// Where it saves its queues.
    pub state_dir: PathBuf,
    /// The realm owner.
    pub owner: Client,
    opts: ServerOptions,
}

/// Options for [`Server::start_with`].
#[derive(Clone, Debug)]
pub struct ServerOptions {
    /// Gateway cores (per gateway process).
    pub cores: u16,
    /// Gateway processes.
    pub processes: u16,
    /// Heartbeat delay floor.
    pub heartbeat_min_secs: u64,
    /// Heartbeat jitter bound.
    pub heartbeat_jitter_secs: u64,
    /// Use io_uring (false forces the epoll driver).
    pub io_uring: bool,
    /// Requests per minute per user.
    pub rate_limit_per_user: u32,
    /// RabbitMQ for notifications; empty (the default) disables them so
    /// parallel tests do not share queues (see [`fresh_amqp_vhost`]).
    pub amqp_url: String,
    /// More environment for the server (`SQUALL_*` overrides).
    pub env: Vec<(String, String)>,
    /// Where the server's log goes (default: the test's stderr).
    pub log_file: Option<PathBuf>,
}

impl Default for ServerOptions {
    fn default() -> Self {
        ServerOptions {
            cores: 2,
            processes: 1,
            heartbeat_min_secs: 45,
            heartbeat_jitter_secs: 10,
            io_uring: true,
            amqp_url: String::new(),
            rate_limit_per_user: 200,
            env: Vec::new(),
            log_file: None,
        }
    }
}

impl Server {
    /// Starts a server with default options.
    pub fn start() -> Result<Self> {
        Self::start_with(ServerOptions::default())
    }

    /// Starts a server: fresh database, realm with owner, `squall serve`
    /// on a free port.
    pub fn start_with(opts: ServerOptions) -> Result<Self> {
        let database_url = fresh_database()?;
        let bin = squall_bin();
        if !bin.exists() {
            bail!("{} not found: build it first (cargo build -p squall) or set SQUALL_BIN", bin.display());
        }
        let api_key = create_realm(&database_url)?;

        let state_dir = std::env::temp_dir().join(format!("squall-e2e-state-{:016x}", rand::random::<u64>()));
        let (child, url) = spawn_serve(&database_url, &state_dir, &opts)?;
        let owner = Client::new(&url, "owner@example.com", &api_key);
        Ok(Server { child, url, database_url, state_dir, owner, opts })
    }

    /// Stops the server with SIGTERM and starts it again on the same
    /// database and state directory (on a new port: `url` and `owner`
    /// follow). Returns whether the first process exited cleanly.
    pub fn restart(&mut self) -> Result<bool> {
        self.restart_at("127.0.0.1:0")
    }

    /// [`Server::restart`] on the same address, so that clients reconnect
    /// to it.
    pub fn restart_in_place(&mut self) -> Result<bool> {
        let addr = self.url.trim_start_matches("http://").to_owned();
        self.restart_at(&addr)
    }

    /// Kills the server with SIGKILL (no chance to save anything) and
    /// starts it again on the same address, database and state directory.
    pub fn crash_and_restart_in_place(&mut self) -> Result<()> {
        self.child.kill()?;
        self.child.wait()?;
        let addr = self.url.trim_start_matches("http://").to_owned();
        let (child, url) = spawn_serve_at(&self.database_url, &self.state_dir, &self.opts, &addr)?;
        self.child = child;
        self.url = url;
        self.owner = Client::new(&self.url, &self.owner.email, &self.owner.api_key);
        Ok(())
    }

    fn restart_at(&mut self, listen: &str) -> Result<bool> {
        let clean = self.stop_gracefully()?;
        let (child, url) = spawn_serve_at(&self.database_url, &self.state_dir, &self.opts, listen)?;
        self.child = child;
        self.url = url;
        self.owner = Client::new(&self.url, &self.owner.email, &self.owner.api_key);
        Ok(clean)
    }

    /// Runs `squall admin ARGS` against this server's database and parses
    /// its JSON output.
    pub fn admin(&self, args: &[&str]) -> Result<Value> {
        let out = Command::new(squall_bin())
            .arg("admin")
            .args(args)
            .env("SQUALL_DATABASE_URL", &self.database_url)
            .env("SQUALL_LOG", "warn")
            .output()
            .context("running squall admin")?;
        if !out.status.success() {
            bail!("squall admin {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
        }
        serde_json::from_slice(&out.stdout).context("squall admin output")
    }

    /// A client for the same account on this server's current URL.
    pub fn client_for(&self, c: &Client) -> Client {
        let mut n = Client::new(&self.url, &c.email, &c.api_key);
        n.user_id = c.user_id;
        n
    }

    /// Creates a member (as the owner) and returns a client for them.
    pub fn create_user(&self, email: &str, full_name: &str) -> Result<Client> {
        let (status, body) = self
            .owner
            .post("/api/v1/users", &[("email", email), ("password", "pw-for-tests"), ("full_name", full_name)])?;
        if status != 200 {
            bail!("creating {email}: {status} {body}");
        }
        let (status, body) = Client::anonymous(&self.url)
            .post("/api/v1/fetch_api_key", &[("username", email), ("password", "pw-for-tests")])?;
        if status != 200 {
            bail!("fetch_api_key for {email}: {status} {body}");
        }
        let key = body["api_key"].as_str().context("api_key")?;
        let mut c = Client::new(&self.url, email, key);
        c.user_id = body["user_id"].as_i64().context("user_id")?;
        Ok(c)
    }

    /// A metric from the server's `/metrics`, summed over its cores.
    pub fn metric(&self, name: &str) -> Result<i64> {
        let text = reqwest::blocking::get(format!("{}/metrics", self.url))?.error_for_status()?.text()?;
        let prefix = format!("{name}{{");
        Ok(text
            .lines()
            .filter(|l| l.starts_with(&prefix))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<i64>().ok())
            .sum())
    }

    /// Waits (up to 10 s) until the metric `name` reaches `value`: the
    /// positive marker tests wait on instead of sleeping.
    pub fn wait_metric(&self, name: &str, value: i64) -> Result<()> {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let got = self.metric(name)?;
            if got == value {
                return Ok(());
            }
            if std::time::Instant::now() > deadline {
                bail!("{name} is {got}, waited 10 s for {value}");
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Waits until exactly `n` long-polls are parked on the server.
    pub fn wait_parked(&self, n: i64) -> Result<()> {
        self.wait_metric("squall_parked_polls", n)
    }

    /// Sends SIGTERM and waits for the process to exit; returns whether it
    /// exited successfully.
    pub fn stop_gracefully(&mut self) -> Result<bool> {
        let pid = self.child.id().to_string();
        Command::new("kill").args(["-TERM", &pid]).status()?;
        for _ in 0..200 {
            if let Some(status) = self.child.try_wait()? {
                return Ok(status.success());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        bail!("squall serve did not exit within 10 s of SIGTERM")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.state_dir);
    }
}

/// Creates the root realm with owner `owner@example.com` in the database
/// at `database_url`; returns the owner's API key.
pub(crate) fn create_realm(database_url: &str) -> Result<String> {
    let out = Command::new(squall_bin())
        .args(["admin", "create-realm", "--subdomain", "", "--name", "Test Realm"])
        .args(["--owner-email", "owner@example.com", "--owner-password", "owner-pw", "--owner-name", "Olivia Owner"])
        .env("SQUALL_DATABASE_URL", database_url)
        .env("SQUALL_LOG", "warn")
        .output()
        .context("running squall admin create-realm")?;
    if !out.status.success() {
        bail!("create-realm failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    let created: Value = serde_json::from_slice(&out.stdout).context("create-realm output")?;
    Ok(created["api_key"].as_str().context("api_key")?.to_owned())
}

/// Reads a started process's first line, `squall: listening on URL`;
/// returns the URL.
pub(crate) fn listening_url(child: &mut Child, what: &str) -> Result<String> {
    let stdout = child.stdout.take().context("stdout")?;
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line)?;
    match line.trim().strip_prefix("squall: listening on ") {
        Some(url) => Ok(url.to_owned()),
        None => {
            let _ = child.kill();
            bail!("{what} did not start: {line:?}")
        }
    }
}

/// Starts `squall serve` on a free port; returns the child and its URL.
fn spawn_serve(database_url: &str, state_dir: &std::path::Path, opts: &ServerOptions) -> Result<(Child, String)> {
    spawn_serve_at(database_url, state_dir, opts, "127.0.0.1:0")
}

/// Starts `squall serve` listening on `listen`.
fn spawn_serve_at(
    database_url: &str,
    state_dir: &std::path::Path,
    opts: &ServerOptions,
    listen: &str,
) -> Result<(Child, String)> {
    let mut child = Command::new(squall_bin())
        .args(["serve", "--listen", listen])
        .env("SQUALL_DATABASE_URL", database_url)
        .env("SQUALL_STATE_DIR", state_dir)
        .env("SQUALL_CORES", opts.cores.to_string())
        .env("SQUALL_GATEWAY_PROCESSES", opts.processes.to_string())
        .env("SQUALL_HEARTBEAT_MIN_SECS", opts.heartbeat_min_secs.to_string())
        .env("SQUALL_HEARTBEAT_JITTER_SECS", opts.heartbeat_jitter_secs.to_string())
        .env("SQUALL_IO_URING", if opts.io_uring { "true" } else { "false" })
        .env("SQUALL_AMQP_URL", &opts.amqp_url)
        .env("SQUALL_RATE_LIMIT_PER_USER", opts.rate_limit_per_user.to_string())
        .env("SQUALL_LOG", std::env::var("SQUALL_LOG").unwrap_or_else(|_| "warn".into()))
        // Tests that want the queue workers say so (SQUALL_WORKERS in
        // `env`); the others read the queues themselves.
        .env("SQUALL_WORKERS", "none")
        .envs(opts.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdout(Stdio::piped())
        .stderr(match &opts.log_file {
            Some(path) => Stdio::from(std::fs::OpenOptions::new().create(true).append(true).open(path)?),
            None => Stdio::inherit(),
        })
        .spawn()
        .context("spawning squall serve")?;
    let url = listening_url(&mut child, "squall serve")?;
    Ok((child, url))
}
