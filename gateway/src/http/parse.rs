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

    /// The owned request without its body (which may not have arrived):
    /// enough to check who sends it.
    pub fn probe(&self, peer: Option<std::net::IpAddr>) -> Result<ApiRequest, Invalid> {
        self.owned(Vec::new(), peer)
    }

    /// The owned request; `buf` is what the head was parsed from.
    pub fn to_api_request(&self, buf: &[u8], peer: Option<std::net::IpAddr>) -> Result<ApiRequest, Invalid> {
        self.owned(buf[self.head_len..self.total_len()].to_vec(), peer)
    }

    fn owned(&self, body: Vec<u8>, peer: Option<std::net::IpAddr>) -> Result<ApiRequest, Invalid> {
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
            body,
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
    match parse_head_only(buf, slots)? {
        Some(head) if buf.len() >= head.total_len() => Ok(Some(head)),
        _ => Ok(None),
    }
}

/// Parses the head at the front of `buf` into `slots` whether or not its
/// body has arrived: `Ok(None)` when the head is incomplete.
pub fn parse_head_only<'a>(buf: &'a [u8], slots: &'a mut [httparse::Header<'a>]) -> Result<Option<Head<'a>>, Invalid> {
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
    let mut body_len: Option<usize> = None;
    let mut keep_alive = req.version.unwrap_or(1) == 1;
    let headers: &'a [httparse::Header<'a>] = req.headers;
    for h in headers {
        if h.name.eq_ignore_ascii_case("content-length") {
            let len = content_length(h.value).ok_or(BAD_REQUEST)?;
            // Two different lengths: which one a proxy in front believed is
            // unknowable (request smuggling), so neither (RFC 9112 6.3).
            if body_len.is_some_and(|l| l != len) {
                return Err(BAD_REQUEST);
            }
            body_len = Some(len);
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
    let body_len = body_len.unwrap_or(0);
    if body_len > MAX_BODY_BYTES {
        return Err(Invalid(413, "Payload Too Large"));
    }
    Ok(Some(Head { method, path, query, headers, head_len, body_len, keep_alive }))
}

/// A `Content-Length` value: digits only (a list such as `5, 5` or a sign
/// is refused).
fn content_length(v: &[u8]) -> Option<usize> {
    let v = v.trim_ascii();
    if v.is_empty() || !v.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(v).ok()?.parse().ok()
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
    fn conflicting_lengths_are_refused_and_equal_ones_accepted() {
        let two = b"POST / HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 30\r\n\r\nabc";
        assert!(matches!(parse(two), Parsed::Invalid(400, _)));
        let same = b"POST / HTTP/1.1\r\nContent-Length: 3\r\ncontent-length: 3\r\n\r\nabc";
        assert!(matches!(parse(same), Parsed::Complete(_, n) if n == same.len()));
        for bad in [&b"+3"[..], b"3, 3", b"-1", b"", b"0x3"] {
            let mut raw = b"POST / HTTP/1.1\r\nContent-Length: ".to_vec();
            raw.extend_from_slice(bad);
            raw.extend_from_slice(b"\r\n\r\nabc");
            assert!(matches!(parse(&raw), Parsed::Invalid(400, _)), "{}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn a_head_is_readable_before_its_body() {
        let raw = b"POST /api/v1/messages HTTP/1.1\r\nAuthorization: Basic x\r\nContent-Length: 100000\r\n\r\nab";
        let mut slots = header_slots();
        assert!(parse_head(raw, &mut slots).unwrap().is_none());
        let mut slots = header_slots();
        let head = parse_head_only(raw, &mut slots).unwrap().unwrap();
        assert_eq!(head.body_len, 100_000);
        let probe = head.probe(None).unwrap();
        assert_eq!(
            (probe.path.as_str(), probe.header("authorization"), probe.body.len()),
            ("/api/v1/messages", Some("Basic x"), 0)
        );
        let mut slots = header_slots();
        assert!(parse_head_only(b"POST / HTTP/1.1\r\nHost", &mut slots).unwrap().is_none());
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
