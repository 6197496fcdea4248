//! A minimal HTTP/1.1 client: request encoding and incremental response
//! parsing shared by the blocking client (setup, senders) and the async
//! long-poll clients. Supports Content-Length and chunked bodies and
//! keep-alive.

use anyhow::{bail, Context, Result};
use base64::Engine;
use std::io::{Read, Write};
use std::net::TcpStream;

/// A parsed response.
#[derive(Debug, Clone)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// Body bytes.
    pub body: Vec<u8>,
    /// Whether the server will close the connection.
    pub close: bool,
    /// Headers, names lower-cased.
    pub headers: Vec<(String, String)>,
}

impl Response {
    /// The first header named `name` (lower case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    /// The body as JSON.
    pub fn json(&self) -> Result<serde_json::Value> {
        serde_json::from_slice(&self.body).with_context(|| {
            format!("HTTP {} with a non-JSON body: {}", self.status, String::from_utf8_lossy(&self.body))
        })
    }
}

/// `Authorization` header value for HTTP Basic.
pub fn basic_auth(email: &str, api_key: &str) -> String {
    format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{email}:{api_key}")))
}

/// Percent-encodes a form value.
pub fn form_encode(pairs: &[(&str, &str)]) -> String {
    let mut out = String::new();
    for (i, (k, v)) in pairs.iter().enumerate() {
        if i > 0 {
            out.push('&');
        }
        encode_into(&mut out, k);
        out.push('=');
        encode_into(&mut out, v);
    }
    out
}

fn encode_into(out: &mut String, s: &str) {
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
}

/// Encodes a request. `form` goes in the query for GET/DELETE-less bodies
/// and in an urlencoded body otherwise.
pub fn encode_request(method: &str, host: &str, path: &str, auth: Option<&str>, form: &[(&str, &str)]) -> Vec<u8> {
    let encoded = form_encode(form);
    let (target, body) = if method == "GET" && !encoded.is_empty() {
        (format!("{path}?{encoded}"), String::new())
    } else {
        (path.to_owned(), encoded)
    };
    let mut req = format!(
        "{method} {target} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: squall-loadtest/{}\r\n",
        env!("CARGO_PKG_VERSION")
    );
    if let Some(a) = auth {
        req.push_str(&format!("Authorization: {a}\r\n"));
    }
    if method != "GET" {
        req.push_str(&format!("Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n", body.len()));
    }
    req.push_str("\r\n");
    req.push_str(&body);
    req.into_bytes()
}

/// Tries to parse one complete response from the start of `buf`. Returns
/// it with the number of bytes it used, None when more bytes are needed.
pub fn parse_response(buf: &[u8]) -> Result<Option<(Response, usize)>> {
    let Some(head_end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
        if buf.len() > 64 * 1024 {
            bail!("response headers larger than 64 KiB");
        }
        return Ok(None);
    };
    let head = std::str::from_utf8(&buf[..head_end]).context("response headers are not UTF-8")?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status: u16 = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("bad status line {status_line:?}"))?;
    let (mut length, mut chunked, mut close) = (None, false, status_line.starts_with("HTTP/1.0"));
    let mut headers = Vec::new();
    for line in lines {
        let Some((name, value)) = line.split_once(':') else { continue };
        let value = value.trim();
        let name = name.trim().to_ascii_lowercase();
        headers.push((name.clone(), value.to_owned()));
        match name.as_str() {
            "content-length" => length = Some(value.parse::<usize>().context("bad Content-Length")?),
            "transfer-encoding" => chunked = value.eq_ignore_ascii_case("chunked"),
            "connection" => close = value.eq_ignore_ascii_case("close"),
            _ => {}
        }
    }
    let body_start = head_end + 4;
    if chunked {
        let mut body = Vec::new();
        let mut at = body_start;
        loop {
            let Some(line_end) = buf[at..].windows(2).position(|w| w == b"\r\n") else { return Ok(None) };
            let size_text = std::str::from_utf8(&buf[at..at + line_end]).context("bad chunk size")?;
            let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
                .context("bad chunk size")?;
            at += line_end + 2;
            if size == 0 {
                // Trailers (none expected) end with an empty line.
                let Some(end) = buf[at..].windows(2).position(|w| w == b"\r\n") else { return Ok(None) };
                return Ok(Some((Response { status, body, close, headers }, at + end + 2)));
            }
            if buf.len() < at + size + 2 {
                return Ok(None);
            }
            body.extend_from_slice(&buf[at..at + size]);
            at += size + 2;
        }
    }
    let length = length.unwrap_or(0);
    if buf.len() < body_start + length {
        return Ok(None);
    }
    let body = buf[body_start..body_start + length].to_vec();
    Ok(Some((Response { status, body, close, headers }, body_start + length)))
}

/// A blocking keep-alive connection (setup and senders).
pub struct BlockingClient {
    addr: String,
    host: String,
    stream: Option<TcpStream>,
    buf: Vec<u8>,
}

impl BlockingClient {
    /// A client for `site` (`http://host:port`; https is not supported).
    pub fn new(site: &str) -> Result<Self> {
        let (addr, host) = site_addr(site)?;
        Ok(BlockingClient { addr, host, stream: None, buf: Vec::new() })
    }

    /// One request; reconnects once if a kept-alive connection was closed.
    pub fn request(&mut self, method: &str, path: &str, auth: Option<&str>, form: &[(&str, &str)]) -> Result<Response> {
        let bytes = encode_request(method, &self.host, path, auth, form);
        self.send(&bytes)
    }

    /// One request with a raw body of type `content_type`.
    pub fn request_body(&mut self, method: &str, path: &str, content_type: &str, body: &[u8]) -> Result<Response> {
        let mut bytes = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\r\n",
            self.host,
            body.len()
        )
        .into_bytes();
        bytes.extend_from_slice(body);
        self.send(&bytes)
    }

    fn send(&mut self, bytes: &[u8]) -> Result<Response> {
        for attempt in 0..2 {
            match self.try_request(bytes) {
                Ok(r) => return Ok(r),
                Err(e) if attempt == 0 => {
                    self.stream = None;
                    self.buf.clear();
                    let _ = e;
                }
                Err(e) => return Err(e),
            }
        }
        bail!("unreachable")
    }

    fn try_request(&mut self, bytes: &[u8]) -> Result<Response> {
        if self.stream.is_none() {
            let s = TcpStream::connect(&self.addr).with_context(|| format!("connecting to {}", self.addr))?;
            s.set_nodelay(true)?;
            self.stream = Some(s);
        }
        let stream = self.stream.as_mut().context("no connection")?;
        stream.write_all(bytes)?;
        let mut chunk = [0u8; 16 * 1024];
        loop {
            if let Some((resp, used)) = parse_response(&self.buf)? {
                self.buf.drain(..used);
                if resp.close {
                    self.stream = None;
                }
                return Ok(resp);
            }
            let n = stream.read(&mut chunk)?;
            if n == 0 {
                bail!("connection closed by the server");
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }
}

/// `http://host:port[/]` → ("host:port" to connect to, Host header).
pub fn site_addr(site: &str) -> Result<(String, String)> {
    if site.starts_with("https://") {
        bail!("https sites are not supported by squall-loadtest (point it at the plain-HTTP port)");
    }
    let rest = site.strip_prefix("http://").unwrap_or(site).trim_end_matches('/');
    let host = rest.split('/').next().unwrap_or(rest).to_owned();
    let addr = if host.contains(':') { host.clone() } else { format!("{host}:80") };
    Ok((addr, host))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_length_chunked_and_partial_responses() {
        let r = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}HTTP/1.1";
        let (resp, used) = parse_response(r).unwrap().unwrap();
        assert_eq!((resp.status, resp.body.as_slice(), used), (200, &b"{}"[..], r.len() - 8));
        assert!(parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n{}").unwrap().is_none());
        let c = b"HTTP/1.1 400 Bad\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n";
        let (resp, used) = parse_response(c).unwrap().unwrap();
        assert_eq!((resp.status, resp.body.as_slice(), resp.close, used), (400, &b"abcde"[..], true, c.len()));
        assert!(parse_response(&c[..c.len() - 3]).unwrap().is_none());
        assert!(parse_response(b"garbage\r\n\r\n").is_err());
    }

    #[test]
    fn encodes_forms_and_sites() {
        assert_eq!(form_encode(&[("a b", "x&y"), ("to", "[1]")]), "a%20b=x%26y&to=%5B1%5D");
        assert_eq!(site_addr("http://127.0.0.1:9991/").unwrap(), ("127.0.0.1:9991".into(), "127.0.0.1:9991".into()));
        assert_eq!(site_addr("localhost").unwrap().0, "localhost:80");
        assert!(site_addr("https://x").is_err());
        let req =
            String::from_utf8(encode_request("GET", "h", "/api/v1/events", None, &[("queue_id", "1:2")])).unwrap();
        assert!(req.starts_with("GET /api/v1/events?queue_id=1%3A2 HTTP/1.1\r\nHost: h\r\n"), "{req}");
    }
}
