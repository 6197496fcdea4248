//! One simulated Zulip client on a monoio runtime: register, long-poll
//! `GET /events` with `last_event_id`, re-register on
//! `BAD_EVENT_QUEUE_ID`, count heartbeats, and record every harness
//! message it receives with its delivery latency. Like Zulip's clients, it
//! keeps polling its queue after a lost connection (a restarted server
//! restores it) and registers again only when told the queue is gone.

use crate::http::{basic_auth, encode_request, parse_response, Response};
use crate::stats;
use anyhow::{bail, Context, Result};
use hdrhistogram::Histogram;
use monoio::io::{AsyncReadRent, AsyncWriteRentExt};
use monoio::net::TcpStream;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Who a client is.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ClientSpec {
    /// Index of the client in the run (recipient id for the checker).
    pub idx: usize,
    /// Account email.
    pub email: String,
    /// Account API key.
    pub api_key: String,
}

/// Counters every client of a process updates.
#[derive(Debug, Default)]
pub struct Counters {
    /// Clients with a registered queue and a poll in flight.
    pub connected: AtomicU64,
    /// Successful registrations (first ones and re-registrations).
    pub registrations: AtomicU64,
    /// Re-registrations after BAD_EVENT_QUEUE_ID.
    pub reregistrations: AtomicU64,
    /// Connections lost or failed (each followed by a reconnect).
    pub drops: AtomicU64,
    /// Heartbeat events received.
    pub heartbeats: AtomicU64,
    /// Harness messages received (including duplicates).
    pub deliveries: AtomicU64,
    /// Unexpected HTTP statuses.
    pub errors: AtomicU64,
}

impl Counters {
    fn bump(c: &AtomicU64) {
        c.fetch_add(1, Ordering::Relaxed);
    }
}

/// What the clients of one thread received.
#[derive(Debug)]
pub struct Received {
    /// Delivery latency, µs.
    pub latency: Histogram<u64>,
    /// Message ids per client, in arrival order.
    pub ids: HashMap<usize, Vec<i64>>,
}

impl Default for Received {
    fn default() -> Self {
        Received { latency: stats::histogram(), ids: HashMap::new() }
    }
}

/// Where and how clients connect.
#[derive(Debug, Clone)]
pub struct Target {
    /// Server address.
    pub addr: SocketAddr,
    /// Host header.
    pub host: String,
    /// This run's id (only its messages are recorded).
    pub run: String,
}

/// A keep-alive connection.
struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Conn {
    async fn connect(addr: SocketAddr, source: Option<IpAddr>) -> Result<Conn> {
        let stream = match source {
            None => TcpStream::connect(addr).await?,
            Some(ip) => {
                // Bind the source address first; connecting on loopback is
                // immediate, so a blocking connect costs microseconds.
                let domain = if addr.is_ipv4() { socket2::Domain::IPV4 } else { socket2::Domain::IPV6 };
                let s = socket2::Socket::new(domain, socket2::Type::STREAM, None)?;
                s.bind(&SocketAddr::new(ip, 0).into()).with_context(|| format!("binding source address {ip}"))?;
                s.connect(&addr.into())?;
                s.set_nonblocking(true)?;
                TcpStream::from_std(s.into())?
            }
        };
        stream.set_nodelay(true)?;
        Ok(Conn { stream, buf: Vec::with_capacity(4096) })
    }

    async fn request(&mut self, req: Vec<u8>) -> Result<Response> {
        let (res, _) = self.stream.write_all(req).await;
        res?;
        loop {
            if let Some((resp, used)) = parse_response(&self.buf)? {
                self.buf.drain(..used);
                return Ok(resp);
            }
            let chunk = Vec::with_capacity(16 * 1024);
            let (res, chunk) = self.stream.read(chunk).await;
            if res? == 0 {
                bail!("connection closed by the server");
            }
            self.buf.extend_from_slice(&chunk);
        }
    }
}

/// Runs one client until the process exits, reconnecting with backoff.
pub async fn run(
    spec: ClientSpec,
    target: Arc<Target>,
    source: Option<IpAddr>,
    counters: Arc<Counters>,
    received: Arc<Mutex<Received>>,
) {
    let mut backoff = Duration::from_millis(100);
    // The queue and the last event seen, kept across connections.
    let mut queue: Option<(String, i64)> = None;
    loop {
        let result = session(&spec, &target, source, &counters, &received, &mut queue).await;
        if let Err(e) = result {
            Counters::bump(&counters.drops);
            if std::env::var_os("SQUALL_LOADTEST_DEBUG").is_some() {
                eprintln!("client {}: {e:#}", spec.idx);
            }
        }
        monoio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

/// Decrements `connected` when a polling session ends.
struct Connected<'a>(&'a Counters);

impl Drop for Connected<'_> {
    fn drop(&mut self) {
        self.0.connected.fetch_sub(1, Ordering::Relaxed);
    }
}

async fn register(conn: &mut Conn, target: &Target, auth: &str, counters: &Counters) -> Result<(String, i64)> {
    let form = [
        ("event_types", r#"["message"]"#),
        ("fetch_event_types", r#"["message"]"#),
        ("apply_markdown", "false"),
        ("client_gravatar", "true"),
    ];
    let resp = conn.request(encode_request("POST", &target.host, "/api/v1/register", Some(auth), &form)).await?;
    let body = resp.json()?;
    if resp.status != 200 {
        Counters::bump(&counters.errors);
        bail!("register: HTTP {} {body}", resp.status);
    }
    Counters::bump(&counters.registrations);
    let queue = body["queue_id"].as_str().context("register: no queue_id")?.to_owned();
    Ok((queue, body["last_event_id"].as_i64().unwrap_or(-1)))
}

async fn session(
    spec: &ClientSpec,
    target: &Target,
    source: Option<IpAddr>,
    counters: &Counters,
    received: &Mutex<Received>,
    resume: &mut Option<(String, i64)>,
) -> Result<()> {
    let auth = basic_auth(&spec.email, &spec.api_key);
    let mut conn = Conn::connect(target.addr, source).await?;
    let (mut queue, mut last) = match resume.take() {
        Some(q) => q,
        None => register(&mut conn, target, &auth, counters).await?,
    };
    *resume = Some((queue.clone(), last));
    counters.connected.fetch_add(1, Ordering::Relaxed);
    let _guard = Connected(counters);
    loop {
        let last_s = last.to_string();
        let form = [("queue_id", queue.as_str()), ("last_event_id", last_s.as_str())];
        let req = encode_request("GET", &target.host, "/api/v1/events", Some(&auth), &form);
        // Servers send a heartbeat within a minute; two minutes of silence
        // is a dead connection.
        let resp = monoio::time::timeout(Duration::from_secs(120), conn.request(req))
            .await
            .map_err(|_| anyhow::anyhow!("no response to a long-poll in 120 s"))??;
        let body = resp.json()?;
        if resp.status == 400 && body["code"] == "BAD_EVENT_QUEUE_ID" {
            Counters::bump(&counters.reregistrations);
            *resume = None;
            (queue, last) = register(&mut conn, target, &auth, counters).await?;
            *resume = Some((queue.clone(), last));
            continue;
        }
        if resp.status == 503 {
            // Restarting or busy: come back with the same queue.
            bail!("GET /events: HTTP 503 {body}");
        }
        if resp.status != 200 {
            Counters::bump(&counters.errors);
            bail!("GET /events: HTTP {} {body}", resp.status);
        }
        let now = crate::now_ns();
        let Some(events) = body["events"].as_array() else { bail!("GET /events: no events list") };
        for e in events {
            last = last.max(e["id"].as_i64().unwrap_or(last));
            match e["type"].as_str() {
                Some("heartbeat") => Counters::bump(&counters.heartbeats),
                Some("message") => {
                    let content = e["message"]["content"].as_str().unwrap_or_default();
                    let Some((run, t0)) = crate::parse_stamp(content) else { continue };
                    if run != target.run {
                        continue;
                    }
                    let id = e["message"]["id"].as_i64().unwrap_or(-1);
                    Counters::bump(&counters.deliveries);
                    let mut r = received.lock().unwrap_or_else(|p| p.into_inner());
                    stats::record(&mut r.latency, now.saturating_sub(t0) / 1000);
                    r.ids.entry(spec.idx).or_default().push(id);
                }
                _ => {}
            }
        }
        if let Some(r) = resume.as_mut() {
            r.1 = last;
        }
    }
}
