//! Response writing: status line, `Content-Type`/`Content-Length`, extra
//! headers, body.

use squall_proto::api::ApiResponse;
use squall_proto::ids::push_decimal;
use std::cell::RefCell;

/// Appends a response head: status line, `Content-Type: application/json`
/// when `json`, `Content-Length`, `Connection: close` unless `keep_alive`,
/// then `extra` headers. Allocates nothing beyond `out`'s growth.
fn push_head<'a>(
    out: &mut Vec<u8>,
    status: u16,
    body_len: usize,
    json: bool,
    keep_alive: bool,
    extra: impl Iterator<Item = (&'a str, &'a str)>,
) {
    out.extend_from_slice(b"HTTP/1.1 ");
    push_decimal(out, status as u64);
    out.push(b' ');
    out.extend_from_slice(reason(status).as_bytes());
    if json {
        out.extend_from_slice(b"\r\nContent-Type: application/json");
    }
    out.extend_from_slice(b"\r\nContent-Length: ");
    push_decimal(out, body_len as u64);
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
}

/// Serialises `r`; `head_only` (a `HEAD` request) keeps the headers,
/// including the body's length, and drops the body.
pub fn to_bytes(r: &ApiResponse, keep_alive: bool, head_only: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(160 + r.body.len());
    let json = !r.body.is_empty() && !r.headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("content-type"));
    push_head(&mut out, r.status, r.body.len(), json, keep_alive, r.headers.iter().map(|(k, v)| (*k, v.as_str())));
    if !head_only {
        out.extend_from_slice(&r.body);
    }
    out
}

/// Appends a JSON response to `out` without allocating: the head (with
/// `extra` headers), then `body` unless `head_only`.
pub fn write_json(
    out: &mut Vec<u8>,
    status: u16,
    extra: &[(&str, &str)],
    body: &[u8],
    keep_alive: bool,
    head_only: bool,
) {
    push_head(out, status, body.len(), true, keep_alive, extra.iter().copied());
    if !head_only {
        out.extend_from_slice(body);
    }
}

thread_local! {
    /// Where a head is written before it is moved into a body's room.
    static SCRATCH: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// Writes a JSON response head into the room before `buf[room..]` (the
/// body) when it fits, returning where the response starts; otherwise
/// `None` (the caller copies).
pub fn head_into_room(
    buf: &mut [u8],
    room: usize,
    status: u16,
    extra: &[(&str, &str)],
    keep_alive: bool,
) -> Option<usize> {
    SCRATCH.with(|scratch| {
        let mut head = scratch.borrow_mut();
        head.clear();
        push_head(&mut head, status, buf.len() - room, true, keep_alive, extra.iter().copied());
        let start = room.checked_sub(head.len())?;
        buf[start..room].copy_from_slice(&head);
        Some(start)
    })
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
