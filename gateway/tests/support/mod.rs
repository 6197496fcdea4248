//! A gateway on port 0 with a fake backend, a manual clock and a raw HTTP
//! client: everything the long-poll tests need, and no database.
#![allow(dead_code)]

use base64::Engine;
use futures_util::future::BoxFuture;
use squall_gateway::backend::Backend;
use squall_gateway::bus::LocalBus;
use squall_gateway::clock::Clock;
use squall_gateway::stats::{Stats, Totals};
use squall_gateway::{Config, Gateway};
use squall_proto::api::{client_name_from_user_agent, ApiRequest, ApiResponse, Params};
use squall_proto::bus::EventBus;
use squall_proto::envelope::{Envelope, Notice};
use squall_proto::error::ApiError;
use squall_proto::queue_spec::queue_spec;
use squall_proto::user::AuthedUser;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// API key of every test user (32 alphanumerics, like Zulip's).
pub const KEY: &str = "abcdefghijklmnopqrstuvwxyz012345";
/// Secret of the internal endpoints.
pub const SECRET: &str = "test-secret";

/// A backend that knows users 1..=100 (`user<N>@example.com`, all with
/// [`KEY`]), answers `POST /register` by allocating a queue through the
/// gateway's bus, and everything else with a 404 that says it was here.
pub struct FakeBackend {
    bus: LocalBus,
    /// How many times `authenticate` was called.
    pub auth_calls: AtomicUsize,
    /// Users whose accounts are deactivated (authentication fails).
    pub deactivated: Mutex<Vec<i64>>,
    /// How many times `rate_limit` was called.
    pub rate_limit_calls: AtomicUsize,
    /// `rate_limit` refuses every call after this many.
    pub rate_limit_max: AtomicUsize,
}

impl FakeBackend {
    fn new(bus: LocalBus) -> Self {
        FakeBackend {
            bus,
            auth_calls: AtomicUsize::new(0),
            deactivated: Mutex::new(Vec::new()),
            rate_limit_calls: AtomicUsize::new(0),
            rate_limit_max: AtomicUsize::new(usize::MAX),
        }
    }

    fn check(&self, req: &ApiRequest) -> Result<AuthedUser, ApiError> {
        let user = check_basic(req)?;
        let gone = self.deactivated.lock().map(|d| d.contains(&user.id)).unwrap_or(false);
        if gone {
            return Err(ApiError::unauthorized("Account is deactivated", req.path.starts_with("/json/")));
        }
        Ok(user)
    }
}

fn user_of(email: &str) -> Option<AuthedUser> {
    let id: i64 = email.strip_prefix("user")?.strip_suffix("@example.com")?.parse().ok()?;
    (1..=100).contains(&id).then_some(AuthedUser { id, realm_id: 1, role: 400 })
}

fn check_basic(req: &ApiRequest) -> Result<AuthedUser, ApiError> {
    let json_path = req.path.starts_with("/json/");
    let header = req.header("authorization").ok_or_else(|| {
        ApiError::unauthorized("Not logged in: API authentication or user session required", json_path)
    })?;
    let encoded = header.strip_prefix("Basic ").unwrap_or("");
    let decoded = base64::engine::general_purpose::STANDARD.decode(encoded).unwrap_or_default();
    let text = String::from_utf8(decoded).unwrap_or_default();
    match text.split_once(':') {
        Some((email, key)) if key == KEY => {
            user_of(email).ok_or_else(|| ApiError::unauthorized("Invalid API key", json_path))
        }
        _ => Err(ApiError::unauthorized("Invalid API key", json_path)),
    }
}

impl Backend for FakeBackend {
    fn handle(&self, req: ApiRequest) -> BoxFuture<'static, ApiResponse> {
        let bus = self.bus.clone();
        let checked = self.check(&req);
        Box::pin(async move {
            let user = match checked {
                Ok(u) => u,
                Err(e) => return e.into(),
            };
            if req.path == "/api/v1/slow_send" {
                // A send that takes a while and then publishes its event
                // to user 7 (a graceful stop must wait for it).
                let (done, wait) = futures_channel::oneshot::channel::<()>();
                std::thread::spawn(move || {
                    std::thread::sleep(std::time::Duration::from_millis(300));
                    let _ = done.send(());
                });
                let _ = wait.await;
                let event = Arc::new(serde_json::json!({"type": "test", "n": 99}));
                let env = Envelope { realm_id: 1, notice: Notice::Generic { event, users: vec![7] } };
                return match bus.publish(env).await {
                    Ok(()) => ApiResponse::json(200, "{\"result\":\"success\",\"msg\":\"\"}"),
                    Err(e) => ApiError::internal(e).into(),
                };
            }
            if req.path != "/api/v1/register" {
                return ApiResponse::json(404, format!("{{\"fake_backend\":\"{} {}\"}}", req.method, req.path));
            }
            let mut p = match Params::from_request(&req) {
                Ok(p) => p,
                Err(e) => return e.into(),
            };
            let client = client_name_from_user_agent(req.header("user-agent"));
            let spec = match queue_spec(&user, client, req.header("user-agent"), None, &mut p, true) {
                Ok(s) => s,
                Err(e) => return e.into(),
            };
            match bus.allocate_queue(spec).await {
                Ok(id) => ApiResponse::json(
                    200,
                    format!("{{\"result\":\"success\",\"msg\":\"\",\"queue_id\":\"{id}\",\"last_event_id\":-1}}"),
                ),
                Err(e) => ApiError::internal(e).into(),
            }
        })
    }

    fn authenticate(&self, req: ApiRequest) -> BoxFuture<'static, Result<AuthedUser, ApiError>> {
        self.auth_calls.fetch_add(1, Ordering::SeqCst);
        let r = self.check(&req);
        Box::pin(async move { r })
    }

    fn rate_limit(&self, _user: AuthedUser) -> BoxFuture<'static, Result<(), ApiError>> {
        let n = self.rate_limit_calls.fetch_add(1, Ordering::SeqCst) + 1;
        let r = if n > self.rate_limit_max.load(Ordering::SeqCst) {
            Err(ApiError { status: 429, ..ApiError::with_code("RATE_LIMIT_HIT", "API usage exceeded rate limit") })
        } else {
            Ok(())
        };
        Box::pin(async move { r })
    }
}

/// A running gateway.
pub struct Server {
    pub addr: SocketAddr,
    pub stats: Arc<Stats>,
    pub bus: LocalBus,
    pub clock: Clock,
    pub backend: Arc<FakeBackend>,
    pub state_dir: PathBuf,
    stop: Option<futures_channel::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<std::io::Result<()>>>,
}

/// A fresh state directory.
pub fn temp_dir() -> PathBuf {
    let d = std::env::temp_dir().join(format!("squall-gw-{}-{:x}", std::process::id(), rand::random::<u64>()));
    std::fs::create_dir_all(&d).expect("temp dir");
    d
}

/// Settings for tests: 2 cores, a manual clock at t=1,000,000, ticks every
/// 10 ms, no jitter.
pub fn config(state_dir: &std::path::Path) -> Config {
    let mut cfg = Config {
        cores: 2,
        clock: Clock::manual(1_000_000),
        tick: Duration::from_millis(10),
        state_dir: Some(state_dir.to_path_buf()),
        shared_secret: SECRET.into(),
        server_generation: 42,
        pin_cores: false,
        ..Config::default()
    };
    cfg.timing.heartbeat_jitter_secs = 0;
    cfg
}

impl Server {
    /// Starts a gateway with [`config`] and a fresh state directory.
    pub fn start() -> Server {
        let dir = temp_dir();
        Server::start_with(config(&dir))
    }

    /// Starts a gateway with `cfg`.
    pub fn start_with(cfg: Config) -> Server {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        let clock = cfg.clock.clone();
        let state_dir = cfg.state_dir.clone().unwrap_or_else(temp_dir);
        let gateway = Gateway::new(cfg);
        let bus = gateway.bus();
        let stats = gateway.stats();
        let backend = Arc::new(FakeBackend::new(bus.clone()));
        let (stop, stopped) = futures_channel::oneshot::channel::<()>();
        let b: Arc<dyn Backend> = backend.clone();
        let thread = std::thread::spawn(move || {
            gateway.run(listener, b, Arc::new(|_| {}), async move {
                let _ = stopped.await;
            })
        });
        Server { addr, stats, bus, clock, backend, state_dir, stop: Some(stop), thread: Some(thread) }
    }

    /// Stops the gateway gracefully and waits for it.
    pub fn stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            t.join().expect("gateway thread panicked").expect("gateway run failed");
        }
    }

    /// Current counters.
    pub fn totals(&self) -> Totals {
        self.stats.totals()
    }

    /// Waits (up to 10 s) until `f(totals)` holds.
    pub fn wait_for(&self, what: &str, f: impl Fn(&Totals) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let t = self.totals();
            if f(&t) {
                return;
            }
            assert!(Instant::now() < deadline, "timed out waiting for {what}: {t:?}");
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// Waits until every core has ticked twice more (so each has seen the
    /// clock as it is now).
    pub fn wait_ticks(&self) {
        let start = self.totals().min_ticks;
        self.wait_for("two more ticks on every core", |t| t.min_ticks >= start + 2);
    }

    /// Waits until exactly `n` polls are parked.
    pub fn wait_parked(&self, n: i64) {
        self.wait_for(&format!("{n} parked polls"), |t| t.parked == n);
    }

    /// Publishes a notice through the in-process bus.
    pub fn publish(&self, notice: Notice) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        rt.block_on(self.bus.publish(Envelope { realm_id: 1, notice })).expect("publish");
    }

    /// Publishes `{"type": "test", "n": n}` to `users`.
    pub fn publish_test_event(&self, users: &[i64], n: i64) {
        self.publish(Notice::Generic {
            event: Arc::new(serde_json::json!({"type": "test", "n": n})),
            users: users.to_vec(),
        });
    }

    /// A new client connection.
    pub fn client(&self) -> Client {
        Client::connect(self.addr)
    }

    /// `POST /register` for `user`; returns the queue id.
    pub fn register(&self, user: i64) -> String {
        let r = self.client().call("POST", "/api/v1/register", user, "");
        assert_eq!(r.status, 200, "register: {}", r.text());
        r.json()["queue_id"].as_str().expect("queue_id").to_owned()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.state_dir);
    }
}

/// A response as read off the wire.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

/// `Authorization` header value of a test user.
pub fn basic(user: i64) -> String {
    let creds = format!("user{user}@example.com:{KEY}");
    format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(creds))
}

/// One keep-alive HTTP/1.1 connection.
pub struct Client {
    reader: BufReader<TcpStream>,
}

impl Client {
    pub fn connect(addr: SocketAddr) -> Client {
        let s = TcpStream::connect(addr).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(20))).expect("timeout");
        Client { reader: BufReader::new(s) }
    }

    /// Writes raw bytes.
    pub fn send_raw(&mut self, bytes: &[u8]) {
        self.reader.get_mut().write_all(bytes).expect("write");
    }

    /// Writes a request without reading the answer.
    pub fn send(&mut self, method: &str, path: &str, user: i64, body: &str) {
        let auth = if user > 0 { format!("Authorization: {}\r\n", basic(user)) } else { String::new() };
        let ctype = if body.is_empty() { "" } else { "Content-Type: application/x-www-form-urlencoded\r\n" };
        let req = format!(
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{auth}{ctype}Content-Length: {}\r\n\r\n{body}",
            body.len()
        );
        self.send_raw(req.as_bytes());
    }

    /// Reads one response.
    pub fn read(&mut self) -> Response {
        let mut line = String::new();
        self.reader.read_line(&mut line).expect("status line");
        let status: u16 =
            line.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("bad status line {line:?}"));
        let mut headers = Vec::new();
        loop {
            let mut h = String::new();
            self.reader.read_line(&mut h).expect("header");
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                headers.push((k.trim().to_owned(), v.trim().to_owned()));
            }
        }
        let len: usize = headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
            .and_then(|(_, v)| v.parse().ok())
            .unwrap_or(0);
        let mut body = vec![0; len];
        self.reader.read_exact(&mut body).expect("body");
        Response { status, headers, body }
    }

    /// Sends a request and reads its response.
    pub fn call(&mut self, method: &str, path: &str, user: i64, body: &str) -> Response {
        self.send(method, path, user, body);
        self.read()
    }

    /// Whether the server closed the connection (reads EOF within 5 s).
    pub fn closed(&mut self) -> bool {
        self.reader.get_ref().set_read_timeout(Some(Duration::from_secs(5))).expect("timeout");
        let mut b = [0u8; 1];
        matches!(self.reader.read(&mut b), Ok(0))
    }

    /// Whether a response (or anything) is waiting to be read, without
    /// blocking.
    pub fn has_data(&mut self) -> bool {
        if !self.reader.buffer().is_empty() {
            return true;
        }
        let s = self.reader.get_ref();
        s.set_nonblocking(true).expect("nonblocking");
        let mut b = [0u8; 1];
        let got = matches!(s.peek(&mut b), Ok(n) if n > 0);
        s.set_nonblocking(false).expect("blocking");
        got
    }

    /// Shuts the socket down (the client going away).
    pub fn hang_up(self) {
        let _ = self.reader.get_ref().shutdown(std::net::Shutdown::Both);
    }
}

/// `/api/v1/events?queue_id=..&last_event_id=..`.
pub fn poll_path(queue_id: &str, last_event_id: i64) -> String {
    format!("/api/v1/events?queue_id={queue_id}&last_event_id={last_event_id}")
}
