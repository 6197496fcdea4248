//! Real servers the workers talk to in tests: an SMTP server (Python's
//! `aiosmtpd`, from the test venv) and a small HTTP server that records
//! the requests it gets and answers them as the test says.

use crate::{python, workspace_root};
use anyhow::{bail, Context, Result};
use serde_json::Value;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A running SMTP server that keeps every message it accepts.
pub struct SmtpSink {
    child: Child,
    /// Its port on 127.0.0.1.
    pub port: u16,
    out: PathBuf,
    _dir: TempDir,
}

struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

impl SmtpSink {
    /// Starts a sink that accepts everything.
    pub fn start() -> Result<Self> {
        Self::start_failing(0)
    }

    /// Starts a sink that refuses the first `n` messages with a temporary
    /// failure (451), or every message when `n` is -1.
    pub fn start_failing(n: i32) -> Result<Self> {
        let dir = std::env::temp_dir().join(format!("squall-smtp-{}-{}", std::process::id(), rand::random::<u32>()));
        std::fs::create_dir_all(&dir)?;
        let out = dir.join("mail.jsonl");
        let port = free_port()?;
        let mut child = Command::new(python())
            .arg(workspace_root().join("tests/python/smtp_sink.py"))
            .args([port.to_string(), out.to_string_lossy().into_owned(), "--fail".into(), n.to_string()])
            .stdout(Stdio::piped())
            .spawn()
            .with_context(|| format!("starting the SMTP sink with {} (tools/test installs aiosmtpd)", python()))?;
        let mut line = String::new();
        BufReader::new(child.stdout.take().context("sink stdout")?).read_line(&mut line)?;
        if line.trim() != "ready" {
            let _ = child.kill();
            bail!("the SMTP sink did not start (is aiosmtpd installed in the test venv?)");
        }
        Ok(SmtpSink { child, port, out, _dir: TempDir(dir) })
    }

    /// Every message received so far.
    pub fn messages(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.out)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// Waits up to `timeout` for at least `n` messages; returns them all.
    pub fn wait_for(&self, n: usize, timeout: Duration) -> Vec<Value> {
        let start = Instant::now();
        loop {
            let got = self.messages();
            if got.len() >= n || start.elapsed() > timeout {
                return got;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The server settings a `squall` process needs to send here.
    pub fn env(&self) -> Vec<(String, String)> {
        vec![("SQUALL_EMAIL_HOST".into(), "127.0.0.1".into()), ("SQUALL_EMAIL_PORT".into(), self.port.to_string())]
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One request an [`HttpSink`] received.
#[derive(Debug, Clone)]
pub struct Received {
    /// Method.
    pub method: String,
    /// Path and query.
    pub path: String,
    /// Headers, names lower-cased.
    pub headers: Vec<(String, String)>,
    /// Body.
    pub body: Vec<u8>,
}

impl Received {
    /// The body as JSON (Null if it is not).
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }

    /// A header's value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
}

/// What an [`HttpSink`] answers: status, content type, body.
pub type Answer = (u16, String, Vec<u8>);

type Responder = dyn Fn(&Received) -> Answer + Send + Sync;

/// A small HTTP/1.1 server on 127.0.0.1 that records requests and answers
/// each with what its responder says (one connection per request).
pub struct HttpSink {
    /// `http://127.0.0.1:PORT`
    pub url: String,
    received: Arc<Mutex<Vec<Received>>>,
    stop: Arc<std::sync::atomic::AtomicBool>,
}

impl HttpSink {
    /// Starts a server answering with `respond`.
    pub fn start(respond: impl Fn(&Received) -> Answer + Send + Sync + 'static) -> Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let url = format!("http://{}", listener.local_addr()?);
        let received = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let respond: Arc<Responder> = Arc::new(respond);
        let (rec, st) = (received.clone(), stop.clone());
        listener.set_nonblocking(true)?;
        std::thread::spawn(move || {
            while !st.load(std::sync::atomic::Ordering::Relaxed) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        let (rec, respond) = (rec.clone(), respond.clone());
                        std::thread::spawn(move || {
                            let _ = serve_one(stream, &rec, &*respond);
                        });
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        Ok(HttpSink { url, received, stop })
    }

    /// A server answering every request with 200 and `body` (JSON).
    pub fn json(body: Value) -> Result<Self> {
        let bytes = body.to_string().into_bytes();
        Self::start(move |_| (200, "application/json".into(), bytes.clone()))
    }

    /// Requests received so far.
    pub fn received(&self) -> Vec<Received> {
        self.received.lock().map(|r| r.clone()).unwrap_or_default()
    }

    /// Waits up to `timeout` for at least `n` requests; returns them all.
    pub fn wait_for(&self, n: usize, timeout: Duration) -> Vec<Received> {
        let start = Instant::now();
        loop {
            let got = self.received();
            if got.len() >= n || start.elapsed() > timeout {
                return got;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for HttpSink {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

fn serve_one(mut stream: TcpStream, rec: &Mutex<Vec<Received>>, respond: &Responder) -> Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or_default().to_owned();
    let path = parts.next().unwrap_or_default().to_owned();
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        reader.read_line(&mut h)?;
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.push((k.trim().to_ascii_lowercase(), v.trim().to_owned()));
        }
    }
    let len: usize = headers.iter().find(|(k, _)| k == "content-length").and_then(|(_, v)| v.parse().ok()).unwrap_or(0);
    let mut body = vec![0; len];
    reader.read_exact(&mut body)?;
    let req = Received { method, path, headers, body };
    let (status, ctype, answer) = respond(&req);
    if let Ok(mut r) = rec.lock() {
        r.push(req);
    }
    write!(
        stream,
        "HTTP/1.1 {status} X\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        answer.len()
    )?;
    stream.write_all(&answer)?;
    Ok(())
}
