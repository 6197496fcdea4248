//! Helpers for Squall's end-to-end tests.
//!
//! Each test gets its own database in the PostgreSQL that `tools/services`
//! runs (`SQUALL_DATABASE_URL`, default the project-local cluster), its own
//! realm, and its own `squall serve` process on a free port. Nothing is
//! mocked: requests go over real HTTP to the real binary.
//!
//! The `squall` binary must be built first (`tools/test` does it); set
//! `SQUALL_BIN` to use another build.

use anyhow::{bail, Context, Result};
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// The workspace root.
pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).parent().expect("tests/ has a parent").to_path_buf()
}

/// Path of the `squall` binary under test.
pub fn squall_bin() -> PathBuf {
    if let Ok(p) = std::env::var("SQUALL_BIN") {
        return PathBuf::from(p);
    }
    let target =
        std::env::var("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|_| workspace_root().join("target"));
    target.join("debug").join("squall")
}

fn admin_url() -> String {
    std::env::var("SQUALL_DATABASE_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:15433/squall".into())
}

/// Replaces the database name at the end of a PostgreSQL URL.
fn with_database(url: &str, db: &str) -> String {
    let (base, query) = url.split_once('?').map(|(b, q)| (b, Some(q))).unwrap_or((url, None));
    let base = match base.rfind('/') {
        Some(i) if i > "postgres://".len() => &base[..i],
        _ => base,
    };
    match query {
        Some(q) => format!("{base}/{db}?{q}"),
        None => format!("{base}/{db}"),
    }
}

/// Runs statements against `db` (test setup), or one SELECT whose rows
/// are returned (inspection).
pub fn sql_query(db: &str, query: &str) -> Result<Vec<tokio_postgres::Row>> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    rt.block_on(async {
        let (client, conn) = tokio_postgres::connect(db, tokio_postgres::NoTls).await?;
        let task = tokio::spawn(conn);
        let rows = if query.trim_start().to_ascii_uppercase().starts_with("SELECT") {
            client.query(query, &[]).await?
        } else {
            client.batch_execute(query).await?;
            Vec::new()
        };
        drop(client);
        let _ = task.await;
        anyhow::Ok(rows)
    })
}

/// Creates a fresh, empty database and returns its URL.
pub fn fresh_database() -> Result<String> {
    let name = format!("squall_test_{:016x}", rand::random::<u64>());
    let admin = admin_url();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    rt.block_on(async {
        let (client, conn) = tokio_postgres::connect(&admin, tokio_postgres::NoTls)
            .await
            .with_context(|| format!("connecting to {admin} (is `tools/services start` running?)"))?;
        let task = tokio::spawn(conn);
        client.batch_execute(&format!("CREATE DATABASE {name}")).await?;
        drop(client);
        let _ = task.await;
        anyhow::Ok(())
    })?;
    Ok(with_database(&admin, &name))
}

/// Creates a fresh RabbitMQ virtual host on the `tools/services` broker and
/// returns an AMQP URL for it, so a test's notification queues are its own.
pub fn fresh_amqp_vhost() -> Result<String> {
    let node = std::env::var("SQUALL_RABBITMQ_NODE").unwrap_or_else(|_| "squall-5673@localhost".into());
    let vhost = format!("squall-test-{:016x}", rand::random::<u64>());
    for args in
        [vec!["add_vhost", vhost.as_str()], vec!["set_permissions", "-p", vhost.as_str(), "guest", ".*", ".*", ".*"]]
    {
        let out = Command::new("rabbitmqctl")
            .arg("-n")
            .arg(&node)
            .arg("-q")
            .args(&args)
            .output()
            .context("running rabbitmqctl (is `tools/services start` running?)")?;
        if !out.status.success() {
            bail!("rabbitmqctl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        }
    }
    let base = std::env::var("SQUALL_AMQP_URL").unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5673/%2f".into());
    let base = base.rsplit_once('/').map(|(b, _)| b.to_owned()).unwrap_or(base);
    Ok(format!("{base}/{vhost}"))
}

/// Reads every message currently in `queue` of the broker at `url`.
pub fn drain_amqp_queue(url: &str, queue: &str) -> Result<Vec<Value>> {
    use lapin::options::{BasicAckOptions, BasicGetOptions, QueueDeclareOptions};
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    rt.block_on(async {
        let conn = lapin::Connection::connect(url, lapin::ConnectionProperties::default()).await?;
        let channel = conn.create_channel().await?;
        channel
            .queue_declare(queue.into(), QueueDeclareOptions::durable(), lapin::types::FieldTable::default())
            .await?;
        let mut out = Vec::new();
        while let Some(msg) = channel.basic_get(queue.into(), BasicGetOptions::default()).await? {
            out.push(serde_json::from_slice(&msg.delivery.data)?);
            msg.delivery.ack(BasicAckOptions::default()).await?;
        }
        conn.close(200, "done".into()).await?;
        anyhow::Ok(out)
    })
}

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
    /// Gateway cores.
    pub cores: u16,
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
}

impl Default for ServerOptions {
    fn default() -> Self {
        ServerOptions {
            cores: 2,
            heartbeat_min_secs: 45,
            heartbeat_jitter_secs: 10,
            io_uring: true,
            amqp_url: String::new(),
            rate_limit_per_user: 200,
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
        let out = Command::new(&bin)
            .args(["admin", "create-realm", "--subdomain", "", "--name", "Test Realm"])
            .args([
                "--owner-email",
                "owner@example.com",
                "--owner-password",
                "owner-pw",
                "--owner-name",
                "Olivia Owner",
            ])
            .env("SQUALL_DATABASE_URL", &database_url)
            .env("SQUALL_LOG", "warn")
            .output()
            .context("running squall admin create-realm")?;
        if !out.status.success() {
            bail!("create-realm failed: {}", String::from_utf8_lossy(&out.stderr));
        }
        let created: Value = serde_json::from_slice(&out.stdout).context("create-realm output")?;
        let api_key = created["api_key"].as_str().context("api_key")?.to_owned();

        let state_dir = std::env::temp_dir().join(format!("squall-e2e-state-{:016x}", rand::random::<u64>()));
        let (child, url) = spawn_serve(&database_url, &state_dir, &opts)?;
        let owner = Client::new(&url, "owner@example.com", &api_key);
        Ok(Server { child, url, database_url, state_dir, owner, opts })
    }

    /// Stops the server with SIGTERM and starts it again on the same
    /// database and state directory (on a new port: `url` and `owner`
    /// follow). Returns whether the first process exited cleanly.
    pub fn restart(&mut self) -> Result<bool> {
        let clean = self.stop_gracefully()?;
        let (child, url) = spawn_serve(&self.database_url, &self.state_dir, &self.opts)?;
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

/// Starts `squall serve` on a free port; returns the child and its URL.
fn spawn_serve(database_url: &str, state_dir: &std::path::Path, opts: &ServerOptions) -> Result<(Child, String)> {
    let mut child = Command::new(squall_bin())
        .args(["serve", "--listen", "127.0.0.1:0"])
        .env("SQUALL_DATABASE_URL", database_url)
        .env("SQUALL_STATE_DIR", state_dir)
        .env("SQUALL_CORES", opts.cores.to_string())
        .env("SQUALL_HEARTBEAT_MIN_SECS", opts.heartbeat_min_secs.to_string())
        .env("SQUALL_HEARTBEAT_JITTER_SECS", opts.heartbeat_jitter_secs.to_string())
        .env("SQUALL_IO_URING", if opts.io_uring { "true" } else { "false" })
        .env("SQUALL_AMQP_URL", &opts.amqp_url)
        .env("SQUALL_RATE_LIMIT_PER_USER", opts.rate_limit_per_user.to_string())
        .env("SQUALL_LOG", std::env::var("SQUALL_LOG").unwrap_or_else(|_| "warn".into()))
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .context("spawning squall serve")?;
    let stdout = child.stdout.take().context("stdout")?;
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line)?;
    let Some(url) = line.trim().strip_prefix("squall: listening on ") else {
        let _ = child.kill();
        bail!("squall serve did not start: {line:?}");
    };
    Ok((child, url.to_owned()))
}

/// A Zulip API client speaking HTTP Basic auth (or none).
#[derive(Clone)]
pub struct Client {
    http: reqwest::blocking::Client,
    base: String,
    /// Email (empty for anonymous).
    pub email: String,
    /// API key (empty for anonymous).
    pub api_key: String,
    /// User id, when known.
    pub user_id: i64,
}

impl Client {
    /// An authenticated client.
    pub fn new(base: &str, email: &str, api_key: &str) -> Self {
        let http = reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(120))
            .user_agent("SquallE2E/0.1")
            .build()
            .expect("building an HTTP client");
        Client { http, base: base.to_owned(), email: email.to_owned(), api_key: api_key.to_owned(), user_id: 0 }
    }

    /// A client without credentials.
    pub fn anonymous(base: &str) -> Self {
        Self::new(base, "", "")
    }

    fn auth(&self, rb: reqwest::blocking::RequestBuilder) -> reqwest::blocking::RequestBuilder {
        if self.email.is_empty() {
            rb
        } else {
            rb.basic_auth(&self.email, Some(&self.api_key))
        }
    }

    fn finish(rb: reqwest::blocking::RequestBuilder) -> Result<(u16, Value)> {
        let resp = rb.send()?;
        let status = resp.status().as_u16();
        let text = resp.text()?;
        let body = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).with_context(|| format!("non-JSON body ({status}): {text}"))?
        };
        Ok((status, body))
    }

    /// GET with query parameters.
    pub fn get(&self, path: &str, query: &[(&str, &str)]) -> Result<(u16, Value)> {
        Self::finish(self.auth(self.http.get(format!("{}{path}", self.base)).query(query)))
    }

    /// POST with a form body.
    pub fn post(&self, path: &str, form: &[(&str, &str)]) -> Result<(u16, Value)> {
        Self::finish(self.auth(self.http.post(format!("{}{path}", self.base)).form(form)))
    }

    /// DELETE with a form body.
    pub fn delete(&self, path: &str, form: &[(&str, &str)]) -> Result<(u16, Value)> {
        Self::finish(self.auth(self.http.delete(format!("{}{path}", self.base)).form(form)))
    }

    /// This client's `Authorization: Basic ...` header value.
    pub fn basic_header(&self) -> String {
        use base64::Engine;
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{}:{}", self.email, self.api_key))
        )
    }

    /// Any method with a form body.
    pub fn raw_form(&self, method: &str, path: &str, form: &[(&str, &str)]) -> Result<(u16, Value)> {
        Self::finish(self.auth(self.http.request(method.parse()?, format!("{}{path}", self.base)).form(form)))
    }

    /// Any request with custom headers and a raw body.
    pub fn raw(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> Result<(u16, Value, reqwest::header::HeaderMap)> {
        let mut rb = self.http.request(method.parse()?, format!("{}{path}", self.base)).body(body.to_owned());
        for (k, v) in headers {
            rb = rb.header(*k, *v);
        }
        let resp = rb.send()?;
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let text = resp.text()?;
        let body =
            if text.is_empty() { Value::Null } else { serde_json::from_str(&text).unwrap_or(Value::String(text)) };
        Ok((status, body, headers))
    }

    /// `POST /register`; returns (queue_id, last_event_id, whole body).
    pub fn register(&self, form: &[(&str, &str)]) -> Result<(String, i64, Value)> {
        let (status, body) = self.post("/api/v1/register", form)?;
        if status != 200 {
            bail!("register: {status} {body}");
        }
        let q = body["queue_id"].as_str().context("queue_id")?.to_owned();
        let last = body["last_event_id"].as_i64().context("last_event_id")?;
        Ok((q, last, body))
    }

    /// Long-polls `GET /events`.
    pub fn get_events(&self, queue_id: &str, last_event_id: i64, dont_block: bool) -> Result<(u16, Value)> {
        let last = last_event_id.to_string();
        let mut q = vec![("queue_id", queue_id), ("last_event_id", last.as_str())];
        if dont_block {
            q.push(("dont_block", "true"));
        }
        self.get("/api/v1/events", &q)
    }

    /// Sends a stream message; returns its id.
    pub fn send_stream(&self, stream: &str, topic: &str, content: &str) -> Result<i64> {
        let (status, body) = self
            .post("/api/v1/messages", &[("type", "stream"), ("to", stream), ("topic", topic), ("content", content)])?;
        if status != 200 {
            bail!("send: {status} {body}");
        }
        body["id"].as_i64().context("id")
    }

    /// Subscribes to streams by name (creating them).
    pub fn subscribe(&self, names: &[&str]) -> Result<Value> {
        let subs: Vec<Value> = names.iter().map(|n| serde_json::json!({"name": n})).collect();
        let (status, body) =
            self.post("/api/v1/users/me/subscriptions", &[("subscriptions", &Value::from(subs).to_string())])?;
        if status != 200 {
            bail!("subscribe: {status} {body}");
        }
        Ok(body)
    }
}

/// The Python interpreter with the test packages (`tools/test` makes it).
pub fn python() -> String {
    std::env::var("SQUALL_PYTHON")
        .unwrap_or_else(|_| workspace_root().join(".squall/venv/bin/python").to_string_lossy().into_owned())
}

/// Zulip's OpenAPI description (`shared/reference/zulip-openapi.yaml`).
pub fn openapi_path() -> String {
    std::env::var("SQUALL_OPENAPI").unwrap_or_else(|_| {
        workspace_root().join("../shared/reference/zulip-openapi.yaml").to_string_lossy().into_owned()
    })
}

/// Asserts that `body` is a valid response of `method path` with `status`
/// according to Zulip's OpenAPI description.
pub fn assert_schema(path: &str, method: &str, status: u16, body: &Value) {
    use std::io::Write;
    let mut child = Command::new(python())
        .arg(workspace_root().join("tests/python/validate_response.py"))
        .args([openapi_path().as_str(), path, method, &status.to_string()])
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("running the OpenAPI validator (run tools/test to create .squall/venv)");
    child.stdin.take().expect("stdin").write_all(body.to_string().as_bytes()).expect("writing the body");
    let out = child.wait_with_output().expect("validator output");
    assert!(out.status.success(), "{}\nbody: {body}", String::from_utf8_lossy(&out.stderr));
}

/// Asserts a Zulip error body.
pub fn assert_error(resp: &(u16, Value), status: u16, code: &str, msg: &str) {
    let (s, body) = resp;
    assert_eq!(*s, status, "status of {body}");
    assert_eq!(body["result"], "error", "{body}");
    assert_eq!(body["code"], code, "{body}");
    assert_eq!(body["msg"], msg, "{body}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_url_rewriting() {
        assert_eq!(with_database("postgres://u@h:1/squall", "t"), "postgres://u@h:1/t");
        assert_eq!(with_database("postgres://u@h:1/squall?sslmode=disable", "t"), "postgres://u@h:1/t?sslmode=disable");
        assert_eq!(with_database("postgres://u@h:1", "t"), "postgres://u@h:1/t");
    }
}
