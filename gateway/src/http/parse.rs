//! Request parsing: the head (httparse), the body by Content-Length,
//! keep-alive, and the limits on both.

use squall_proto::api::ApiRequest;

/// Largest request head accepted.
pub const MAX_HEAD_BYTES: usize = 64 * 1024;
/// Largest request body accepted.
pub const MAX_BODY_BYTES: usize = 16 * 1024 * 1024;

/// A request head, borrowed from the bytes read: nothing is copied or
/// allocated to look at it. [`Head::to_api_request`] makes the owned form
/// the backend and the slower paths take.
#[derive(Debug)]
pub struct Head<'a> {
    /// Method as sent.
    pub method: &'a str,
    /// Path, not decoded.
    pub path: &'a str,
    /// Query string without `?` (may be empty).
    pub query: &'a str,
    /// Headers as sent.
    pub headers: &'a [httparse::Header<'a>],
    /// Bytes of the head.
    pub head_len: usize,
    /// Bytes of the body (`Content-Length`).
    pub body_len: usize,
    /// Keep the connection open after responding.
    pub keep_alive: bool,
}

impl<'a> Head<'a> {
    /// Head and body together.
    pub fn total_len(&self) -> usize {
        self.head_len + self.body_len
    }

    /// The first header named `name` (any case).
    pub fn header(&self, name: &str) -> Option<&'a [u8]> {
        self.headers.iter().find(|h| h.name.eq_ignore_ascii_case(name)).map(|h| h.value)
    }

    /// Whether the method is `m` (any case).
    pub fn is(&self, m: &str) -> bool {
        self.method.eq_ignore_ascii_case(m)
    }

    /// The owned request; `buf` is what the head was parsed from.
    pub fn to_api_request(&self, buf: &[u8], peer: Option<std::net::IpAddr>) -> Result<ApiRequest, Invalid> {
        let mut headers = Vec::with_capacity(self.headers.len());
        for h in self.headers {
            let value = std::str::from_utf8(h.value).map_err(|_| BAD_REQUEST)?;
            headers.push((h.name.to_ascii_lowercase(), value.to_owned()));
        }
        Ok(ApiRequest {
            method: self.method.to_ascii_uppercase(),
            path: percent_decode_path(self.path),
            query: self.query.to_owned(),
            headers,
            body: buf[self.head_len..self.total_len()].to_vec(),
            peer,
        })
    }
}

/// An unusable request: answer with this status and reason, then close.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Invalid(pub u16, pub &'static str);

const BAD_REQUEST: Invalid = Invalid(400, "Bad Request");
const TOO_LARGE: Invalid = Invalid(431, "Request Header Fields Too Large");

/// Headers a head may carry; more is refused (431).
pub const MAX_HEADERS: usize = 64;

/// Room for a head's headers, on the caller's stack.
pub fn header_slots<'a>() -> [httparse::Header<'a>; MAX_HEADERS] {
    [httparse::EMPTY_HEADER; MAX_HEADERS]
}

/// Parses the request at the front of `buf` into `slots`: `Ok(None)` when
/// more bytes are needed (head or body incomplete).
pub fn parse_head<'a>(buf: &'a [u8], slots: &'a mut [httparse::Header<'a>]) -> Result<Option<Head<'a>>, Invalid> {
    let mut req = httparse::Request::new(slots);
    let head_len = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) if n > MAX_HEAD_BYTES => return Err(TOO_LARGE),
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) if buf.len() > MAX_HEAD_BYTES => return Err(TOO_LARGE),
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => return Err(TOO_LARGE),
        Err(_) => return Err(BAD_REQUEST),
    };
    let method = req.method.unwrap_or("GET");
    let target = req.path.unwrap_or("/");
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let mut body_len = 0usize;
    let mut keep_alive = req.version.unwrap_or(1) == 1;
    let headers: &'a [httparse::Header<'a>] = req.headers;
    for h in headers {
        if h.name.eq_ignore_ascii_case("content-length") {
            body_len = std::str::from_utf8(h.value).ok().and_then(|v| v.trim().parse().ok()).ok_or(BAD_REQUEST)?;
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            if !h.value.trim_ascii().eq_ignore_ascii_case(b"identity") {
                return Err(Invalid(411, "Length Required"));
            }
        } else if h.name.eq_ignore_ascii_case("connection") {
            let v = h.value;
            if contains_ignore_case(v, b"close") {
                keep_alive = false;
            } else if contains_ignore_case(v, b"keep-alive") {
                keep_alive = true;
            }
        }
    }
    if body_len > MAX_BODY_BYTES {
        return Err(Invalid(413, "Payload Too Large"));
    }
    if buf.len() < head_len + body_len {
        return Ok(None);
    }
    Ok(Some(Head { method, path, query, headers, head_len, body_len, keep_alive }))
}

fn contains_ignore_case(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w.eq_ignore_ascii_case(needle))
}

/// A parsed, owned request plus connection facts.
#[derive(Debug)]
pub struct Request {
    /// Method, path, query, headers, body.
    pub api: ApiRequest,
    /// Keep the connection open after responding.
    pub keep_alive: bool,
}

/// Outcome of trying to parse the bytes read so far.
#[derive(Debug)]
pub enum Parsed {
    /// A whole request, and how many bytes it used.
    Complete(Request, usize),
    /// Need more bytes.
    Incomplete,
    /// Unusable request: respond with this status and close.
    Invalid(u16, &'static str),
}

/// Parses one request from the front of `buf` into its owned form.
pub fn parse(buf: &[u8]) -> Parsed {
    let mut slots = header_slots();
    match parse_head(buf, &mut slots) {
        Ok(None) => Parsed::Incomplete,
        Err(Invalid(status, reason)) => Parsed::Invalid(status, reason),
        Ok(Some(head)) => match head.to_api_request(buf, None) {
            Ok(api) => Parsed::Complete(Request { api, keep_alive: head.keep_alive }, head.total_len()),
            Err(Invalid(status, reason)) => Parsed::Invalid(status, reason),
        },
    }
}

/// A request path with its `%XX` escapes decoded (invalid UTF-8 replaced),
/// as handlers see it.
pub fn percent_decode_path(p: &str) -> String {
    if !p.contains('%') {
        return p.to_owned();
    }
    let bytes = p.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
            if let Some(b) = hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_get_with_query() {
        let raw =
            b"GET /api/v1/events?queue_id=a&last_event_id=-1 HTTP/1.1\r\nHost: x\r\nAuthorization: Basic abc\r\n\r\n";
        let Parsed::Complete(r, n) = parse(raw) else { panic!("not complete") };
        assert_eq!(n, raw.len());
        assert_eq!(r.api.method, "GET");
        assert_eq!(r.api.path, "/api/v1/events");
        assert_eq!(r.api.query, "queue_id=a&last_event_id=-1");
        assert_eq!(r.api.header("authorization"), Some("Basic abc"));
        assert!(r.keep_alive);
    }

    #[test]
    fn waits_for_the_body_and_leaves_pipelined_bytes() {
        let raw = b"POST /api/v1/messages HTTP/1.1\r\nContent-Length: 5\r\nConnection: close\r\n\r\nab";
        assert!(matches!(parse(raw), Parsed::Incomplete));
        let mut full = raw.to_vec();
        full.extend_from_slice(b"cdeGET /");
        let Parsed::Complete(r, n) = parse(&full) else { panic!("not complete") };
        assert_eq!(r.api.body, b"abcde");
        assert_eq!(&full[n..], b"GET /");
        assert!(!r.keep_alive);
    }

    #[test]
    fn rejects_garbage_and_chunked() {
        assert!(matches!(parse(b"\x00\x01 nonsense\r\n\r\n"), Parsed::Invalid(400, _)));
        assert!(matches!(parse(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"), Parsed::Invalid(411, _)));
        assert!(matches!(parse(b"POST / HTTP/1.1\r\nContent-Length: x\r\n\r\n"), Parsed::Invalid(400, _)));
        assert!(matches!(parse(&vec![b'a'; MAX_HEAD_BYTES + 1]), Parsed::Invalid(400 | 431, _)));
    }

    #[test]
    fn http10_closes_by_default() {
        let Parsed::Complete(r, _) = parse(b"GET / HTTP/1.0\r\n\r\n") else { panic!("not complete") };
        assert!(!r.keep_alive);
    }

    #[test]
    fn decodes_percent_paths() {
        assert_eq!(percent_decode_path("/a%20b/%zz"), "/a b/%zz");
    }
}
