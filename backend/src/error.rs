//! The one API error type: Zulip's `{"result":"error","msg","code",...}`.
//!
//! Client faults (4xx) are normal operation and not logged as errors; our
//! own faults (5xx) are logged with their cause where they are converted.

use serde_json::{Map, Value};

/// An error as Zulip's API reports it.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    /// HTTP status.
    pub status: u16,
    /// Zulip error code, e.g. `BAD_REQUEST`.
    pub code: &'static str,
    /// Human-readable message (Zulip's exact text).
    pub msg: String,
    /// Extra top-level fields (`var_name`, `queue_id`, `stream`, ...).
    pub extra: Vec<(&'static str, Value)>,
    /// Extra response headers (`WWW-Authenticate`, `Retry-After`).
    pub headers: Vec<(&'static str, String)>,
}

impl ApiError {
    /// 400 `BAD_REQUEST` with `msg`.
    pub fn bad_request(msg: impl Into<String>) -> Self {
        ApiError { status: 400, code: "BAD_REQUEST", msg: msg.into(), extra: vec![], headers: vec![] }
    }

    /// 400 with a specific code.
    pub fn with_code(code: &'static str, msg: impl Into<String>) -> Self {
        ApiError { code, ..Self::bad_request(msg) }
    }

    /// `Missing '<name>' argument`, code `REQUEST_VARIABLE_MISSING`.
    pub fn missing(name: &str) -> Self {
        ApiError {
            extra: vec![("var_name", Value::String(name.to_owned()))],
            ..Self::with_code("REQUEST_VARIABLE_MISSING", format!("Missing '{name}' argument"))
        }
    }

    /// 401 `UNAUTHORIZED` with the `WWW-Authenticate` challenge.
    pub fn unauthorized(msg: impl Into<String>, session: bool) -> Self {
        let challenge = if session { "Session realm=\"zulip\"" } else { "Basic realm=\"zulip\"" };
        ApiError {
            status: 401,
            code: "UNAUTHORIZED",
            msg: msg.into(),
            extra: vec![],
            headers: vec![("WWW-Authenticate", challenge.to_owned())],
        }
    }

    /// 500: our fault. Logs the cause; the client sees a generic message.
    pub fn internal(cause: impl std::fmt::Display) -> Self {
        tracing::error!(%cause, "internal server error");
        ApiError {
            status: 500,
            code: "BAD_REQUEST",
            msg: "Internal server error".to_owned(),
            extra: vec![],
            headers: vec![],
        }
    }

    /// Adds an extra field.
    pub fn field(mut self, key: &'static str, value: impl Into<Value>) -> Self {
        self.extra.push((key, value.into()));
        self
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

impl From<tokio_postgres::Error> for ApiError {
    fn from(e: tokio_postgres::Error) -> Self {
        // The Display of a server-side error is just "db error"; the
        // server's code and message are what an operator needs.
        match e.as_db_error() {
            Some(db) => ApiError::internal(format!("database: {} ({}): {}", db.message(), db.code().code(), e)),
            None => ApiError::internal(format!("database: {e}")),
        }
    }
}

impl From<deadpool_postgres::PoolError> for ApiError {
    fn from(e: deadpool_postgres::PoolError) -> Self {
        ApiError::internal(format!("database pool: {e}"))
    }
}

/// Result of an API handler: the success fields, or an error.
pub type ApiResult = Result<Map<String, Value>, ApiError>;
