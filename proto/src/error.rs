//! The one API error type: Zulip's `{"result":"error","msg","code",...}`.
//!
//! Client faults (4xx) are normal operation and never logged as errors. Our
//! own faults (5xx) keep their cause ([`ApiError::cause`]); whoever turns
//! the error into a response (the backend's dispatch, the gateway's
//! connection) logs it once, there, with the request's method, path and
//! user ([`ApiError::log`]). Any `std::error::Error` converts into a 500
//! with itself as the cause, so `?` works on database and I/O errors; the
//! backend's dispatch may then turn known causes into the right 4xx/503.

use serde_json::{Map, Value};
use std::sync::Arc;

/// An error as Zulip's API reports it.
#[derive(Debug, Clone)]
pub struct ApiError {
    /// HTTP status.
    pub status: u16,
    /// Zulip error code, e.g. `BAD_REQUEST`.
    pub code: &'static str,
    /// Human-readable message (Zulip's exact text).
    pub msg: String,
    /// Extra top-level fields (`var_name`, `queue_id`, `stream`, ...).
    pub extra: Vec<(&'static str, Value)>,
    /// Extra response headers (`WWW-Authenticate`, `Retry-After`, `Allow`).
    pub headers: Vec<(&'static str, String)>,
    /// What went wrong underneath, for the log (never sent to clients).
    pub cause: Option<Arc<dyn std::error::Error + Send + Sync>>,
}

/// Equality ignores the cause: two errors are equal when the client sees
/// the same thing.
impl PartialEq for ApiError {
    fn eq(&self, o: &Self) -> bool {
        self.status == o.status && self.code == o.code && self.msg == o.msg && self.extra == o.extra
    }
}

/// A cause that is only a message.
#[derive(Debug)]
struct Message(String);

impl std::fmt::Display for Message {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Message {}

impl ApiError {
    /// An error with `status`, `code` and `msg`.
    pub fn new(status: u16, code: &'static str, msg: impl Into<String>) -> Self {
        ApiError { status, code, msg: msg.into(), extra: vec![], headers: vec![], cause: None }
    }

    /// 400 `BAD_REQUEST` with `msg`.
    pub fn bad_request(msg: impl Into<String>) -> Self {
        Self::new(400, "BAD_REQUEST", msg)
    }

    /// 400 with a specific code.
    pub fn with_code(code: &'static str, msg: impl Into<String>) -> Self {
        Self::new(400, code, msg)
    }

    /// `Missing '<name>' argument`, code `REQUEST_VARIABLE_MISSING`.
    pub fn missing(name: &str) -> Self {
        Self::with_code("REQUEST_VARIABLE_MISSING", format!("Missing '{name}' argument"))
            .field("var_name", name.to_owned())
    }

    /// 401 `UNAUTHORIZED` with the `WWW-Authenticate` challenge.
    pub fn unauthorized(msg: impl Into<String>, session: bool) -> Self {
        let challenge = if session { "Session realm=\"zulip\"" } else { "Basic realm=\"zulip\"" };
        Self::new(401, "UNAUTHORIZED", msg).header("WWW-Authenticate", challenge.to_owned())
    }

    /// 404 `Not Found` (Zulip's body for an unknown path).
    pub fn not_found() -> Self {
        Self::new(404, "BAD_REQUEST", "Not Found")
    }

    /// 503: a bounded resource is full or a dependency is away; the client
    /// should retry. `msg` says which.
    pub fn busy(msg: impl Into<String>) -> Self {
        Self::new(503, "SERVICE_UNAVAILABLE", msg)
    }

    /// 500: our fault. The client sees a generic message; `cause` is kept
    /// for the log.
    pub fn internal(cause: impl std::fmt::Display) -> Self {
        let mut e = Self::new(500, "BAD_REQUEST", "Internal server error");
        e.cause = Some(Arc::new(Message(cause.to_string())));
        e
    }

    /// Adds an extra field.
    pub fn field(mut self, key: &'static str, value: impl Into<Value>) -> Self {
        self.extra.push((key, value.into()));
        self
    }

    /// Adds a response header.
    pub fn header(mut self, name: &'static str, value: String) -> Self {
        self.headers.push((name, value));
        self
    }

    /// Whether this is our fault rather than the client's.
    pub fn is_server_error(&self) -> bool {
        self.status >= 500
    }

    /// Logs a server error once, with what identifies the request; client
    /// errors are not logged.
    pub fn log(&self, method: &str, path: &str, user_id: Option<i64>) {
        if !self.is_server_error() {
            return;
        }
        let cause = self.cause.as_ref().map(|c| chain(&**c)).unwrap_or_default();
        tracing::error!(status = self.status, method, path, user = user_id, cause, "{}", self.msg);
    }

    /// The JSON body.
    pub fn body(&self) -> Vec<u8> {
        let mut m = Map::new();
        m.insert("result".into(), "error".into());
        m.insert("msg".into(), self.msg.clone().into());
        m.insert("code".into(), self.code.into());
        for (k, v) in &self.extra {
            m.insert((*k).to_owned(), v.clone());
        }
        Value::Object(m).to_string().into_bytes()
    }
}

/// Any error underneath becomes a 500 that keeps it as the cause. (`ApiError`
/// itself is deliberately not a `std::error::Error`, so this does not clash
/// with `From<T> for T`.)
impl<E: std::error::Error + Send + Sync + 'static> From<E> for ApiError {
    fn from(e: E) -> Self {
        let mut err = Self::new(500, "BAD_REQUEST", "Internal server error");
        err.cause = Some(Arc::new(e));
        err
    }
}

/// An error and its sources, `outer: inner: ...` (a database error's own
/// text is only "db error"; the server's message is its source).
pub fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut next = e.source();
    while let Some(s) = next {
        out.push_str(": ");
        out.push_str(&s.to_string());
        next = s.source();
    }
    out
}

/// Result of an API handler: the success fields, or an error.
pub type ApiResult = Result<Map<String, Value>, ApiError>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_and_causes() {
        let e = ApiError::missing("to");
        let body: Value = serde_json::from_slice(&e.body()).unwrap();
        assert_eq!(
            body,
            serde_json::json!({"result": "error", "msg": "Missing 'to' argument", "code": "REQUEST_VARIABLE_MISSING", "var_name": "to"})
        );
        #[derive(Debug)]
        struct Outer(std::io::Error);
        impl std::fmt::Display for Outer {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("db error")
            }
        }
        impl std::error::Error for Outer {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                Some(&self.0)
            }
        }
        let wrapped: ApiError = Outer(std::io::Error::other("relation missing")).into();
        assert_eq!(chain(&**wrapped.cause.as_ref().unwrap()), "db error: relation missing");
        let io: ApiError = std::io::Error::other("disk on fire").into();
        assert_eq!(io.status, 500);
        assert_eq!(io.msg, "Internal server error");
        assert_eq!(io.cause.as_ref().unwrap().to_string(), "disk on fire");
        assert!(!String::from_utf8(io.body()).unwrap().contains("fire"), "causes stay out of bodies");
        assert_eq!(ApiError::internal("x"), io, "equality is what the client sees");
        assert_eq!(ApiError::busy("Server is busy").status, 503);
        assert_eq!(ApiError::not_found().status, 404);
        let u = ApiError::unauthorized("no", false);
        assert_eq!(u.headers, vec![("WWW-Authenticate", "Basic realm=\"zulip\"".to_owned())]);
    }
}
