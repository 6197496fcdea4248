//! Request parsing: the head (httparse), the body by Content-Length,
//! keep-alive, and the limits on both.

use squall_proto::api::ApiRequest;

/// Largest request head accepted.
pub const MAX_HEAD_BYTES: usize = 64 * 1024;
/// Largest request body accepted.
pub const MAX_BODY_BYTES: usize = 16 * 1024 * 1024;

/// A parsed request plus connection facts.
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

/// Parses one request from the front of `buf`.
pub fn parse(buf: &[u8]) -> Parsed {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut req = httparse::Request::new(&mut headers);
    let head_len = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) if n > MAX_HEAD_BYTES => {
            return Parsed::Invalid(431, "Request Header Fields Too Large")
        }
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => {
            return if buf.len() > MAX_HEAD_BYTES {
                Parsed::Invalid(431, "Request Header Fields Too Large")
            } else {
                Parsed::Incomplete
            }
        }
        Err(httparse::Error::TooManyHeaders) => return Parsed::Invalid(431, "Request Header Fields Too Large"),
        Err(_) => return Parsed::Invalid(400, "Bad Request"),
    };
    let method = req.method.unwrap_or("GET").to_ascii_uppercase();
    let target = req.path.unwrap_or("/");
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let version = req.version.unwrap_or(1);
    let mut content_length = 0usize;
    let mut keep_alive = version == 1;
    let mut hdrs = Vec::with_capacity(req.headers.len());
    for h in req.headers.iter() {
        let name = h.name.to_ascii_lowercase();
        let Ok(value) = std::str::from_utf8(h.value) else { return Parsed::Invalid(400, "Bad Request") };
        match name.as_str() {
            "content-length" => match value.trim().parse() {
                Ok(n) => content_length = n,
                Err(_) => return Parsed::Invalid(400, "Bad Request"),
            },
            "transfer-encoding" if !value.trim().eq_ignore_ascii_case("identity") => {
                return Parsed::Invalid(411, "Length Required")
            }
            "connection" => {
                let v = value.to_ascii_lowercase();
                if v.contains("close") {
                    keep_alive = false;
                } else if v.contains("keep-alive") {
                    keep_alive = true;
                }
            }
            _ => {}
        }
        hdrs.push((name, value.to_owned()));
    }
    if content_length > MAX_BODY_BYTES {
        return Parsed::Invalid(413, "Payload Too Large");
    }
    let total = head_len + content_length;
    if buf.len() < total {
        return Parsed::Incomplete;
    }
    let api = ApiRequest {
        method,
        path: percent_decode_path(path),
        query: query.to_owned(),
        headers: hdrs,
        body: buf[head_len..total].to_vec(),
        peer: None,
    };
    Parsed::Complete(Request { api, keep_alive }, total)
}

fn percent_decode_path(p: &str) -> String {
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
