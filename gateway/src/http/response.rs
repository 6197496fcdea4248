//! Response writing: status line, `Content-Type`/`Content-Length`, extra
//! headers, body.

use squall_proto::api::ApiResponse;

/// Serialises `r`; `head_only` (a `HEAD` request) keeps the headers,
/// including the body's length, and drops the body.
pub fn to_bytes(r: &ApiResponse, keep_alive: bool, head_only: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(160 + r.body.len());
    out.extend_from_slice(format!("HTTP/1.1 {} {}\r\n", r.status, reason(r.status)).as_bytes());
    if !r.body.is_empty() && !r.headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("content-type")) {
        out.extend_from_slice(b"Content-Type: application/json\r\n");
    }
    out.extend_from_slice(format!("Content-Length: {}\r\n", r.body.len()).as_bytes());
    if !keep_alive {
        out.extend_from_slice(b"Connection: close\r\n");
    }
    for (k, v) in &r.headers {
        out.extend_from_slice(k.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(v.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
    if !head_only {
        out.extend_from_slice(&r.body);
    }
    out
}

/// Appends a JSON response to `out` without allocating: status line,
/// `Content-Type`, `Content-Length`, `Connection: close` unless
/// `keep_alive`, `extra` headers, then `body` (unless `head_only`).
pub fn write_json(
    out: &mut Vec<u8>,
    status: u16,
    extra: &[(&str, &str)],
    body: &[u8],
    keep_alive: bool,
    head_only: bool,
) {
    out.extend_from_slice(b"HTTP/1.1 ");
    crate::queue::push_int(out, status as i64);
    out.push(b' ');
    out.extend_from_slice(reason(status).as_bytes());
    out.extend_from_slice(b"\r\nContent-Type: application/json\r\nContent-Length: ");
    crate::queue::push_int(out, body.len() as i64);
    out.extend_from_slice(b"\r\n");
    if !keep_alive {
        out.extend_from_slice(b"Connection: close\r\n");
    }
    for (k, v) in extra {
        out.extend_from_slice(k.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(v.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
    if !head_only {
        out.extend_from_slice(body);
    }
}

/// Writes a JSON response head into the room before `body[room..]` when
/// it fits, returning where the response starts; otherwise `None` (the
/// caller copies).
pub fn head_into_room(
    buf: &mut [u8],
    room: usize,
    status: u16,
    extra: &[(&str, &str)],
    keep_alive: bool,
) -> Option<usize> {
    let mut head = [0u8; 256];
    let mut w = Writer { buf: &mut head, len: Some(0) };
    w.put(b"HTTP/1.1 ");
    w.int(status as u64);
    w.put(b" ");
    w.put(reason(status).as_bytes());
    w.put(b"\r\nContent-Type: application/json\r\nContent-Length: ");
    w.int((buf.len() - room) as u64);
    w.put(b"\r\n");
    if !keep_alive {
        w.put(b"Connection: close\r\n");
    }
    for (k, v) in extra {
        w.put(k.as_bytes());
        w.put(b": ");
        w.put(v.as_bytes());
        w.put(b"\r\n");
    }
    w.put(b"\r\n");
    let n = w.len?;
    let start = room.checked_sub(n)?;
    buf[start..room].copy_from_slice(&head[..n]);
    Some(start)
}

/// A fixed buffer writer that gives up (len = None) when full.
struct Writer<'a> {
    buf: &'a mut [u8],
    len: Option<usize>,
}

impl Writer<'_> {
    fn put(&mut self, bytes: &[u8]) {
        self.len = self.len.and_then(|at| {
            let end = at.checked_add(bytes.len()).filter(|&e| e <= self.buf.len())?;
            self.buf[at..end].copy_from_slice(bytes);
            Some(end)
        });
    }

    fn int(&mut self, mut n: u64) {
        let mut digits = [0u8; 20];
        let mut i = digits.len();
        loop {
            i -= 1;
            digits[i] = b'0' + (n % 10) as u8;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        self.put(&digits[i..]);
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        204 => "No Content",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        411 => "Length Required",
        413 => "Payload Too Large",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Unknown",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_responses() {
        let r = ApiResponse {
            status: 401,
            headers: vec![("WWW-Authenticate", "Basic realm=\"zulip\"".into())],
            body: b"{}".to_vec(),
        };
        let s = String::from_utf8(to_bytes(&r, true, false)).unwrap();
        assert!(s.starts_with("HTTP/1.1 401 Unauthorized\r\n"));
        assert!(s.contains("Content-Length: 2\r\n"));
        assert!(s.contains("WWW-Authenticate: Basic realm=\"zulip\"\r\n"));
        assert!(s.ends_with("\r\n\r\n{}"));
    }

    #[test]
    fn both_writers_agree() {
        let body = br#"{"result":"success"}"#;
        let r =
            ApiResponse { status: 200, headers: vec![("Vary", "Accept-Language, Cookie".into())], body: body.to_vec() };
        for (keep_alive, head_only) in [(true, false), (false, false), (true, true)] {
            let mut out = Vec::new();
            write_json(&mut out, 200, &[("Vary", "Accept-Language, Cookie")], body, keep_alive, head_only);
            assert_eq!(out, to_bytes(&r, keep_alive, head_only));
        }
    }

    #[test]
    fn a_head_written_into_the_room_matches_a_copied_response() {
        let body = br#"{"result":"success","events":[]}"#;
        for keep_alive in [true, false] {
            let mut buf = vec![0u8; 160];
            buf.extend_from_slice(body);
            let start = head_into_room(&mut buf, 160, 200, &[("Vary", "Accept-Language, Cookie")], keep_alive).unwrap();
            let mut copied = Vec::new();
            write_json(&mut copied, 200, &[("Vary", "Accept-Language, Cookie")], body, keep_alive, false);
            assert_eq!(&buf[start..], &copied[..]);
        }
        let mut tight = vec![0u8; 10];
        tight.extend_from_slice(body);
        assert_eq!(head_into_room(&mut tight, 10, 200, &[], true), None, "no room: the caller copies");
    }

    #[test]
    fn head_keeps_the_length_and_drops_the_body() {
        let s = String::from_utf8(to_bytes(&ApiResponse::json(200, &b"{}"[..]), false, true)).unwrap();
        assert!(s.contains("Content-Length: 2\r\n") && s.contains("Connection: close\r\n"));
        assert!(s.ends_with("\r\n\r\n"));
    }
}
