//! Requests and responses as the API sees them, and Zulip's parameter rules.
//!
//! The edge (the gateway) parses HTTP into an [`ApiRequest`]; whoever
//! answers it (the gateway for `/events`, the backend for the rest) returns
//! an [`ApiResponse`].
//! [`Params`] reads parameters the way Zulip does: form body first, then
//! query string, JSON-typed values decoded with Zulip's error messages, and
//! every parameter not read reported back in `ignored_parameters_unsupported`.

use crate::error::ApiError;
use serde_json::Value;
use std::collections::BTreeSet;

/// An HTTP request handed to the backend.
#[derive(Debug, Clone, Default)]
pub struct ApiRequest {
    /// Method, upper case.
    pub method: String,
    /// Path without the query string.
    pub path: String,
    /// Raw query string (without `?`).
    pub query: String,
    /// Headers, names lower-cased.
    pub headers: Vec<(String, String)>,
    /// Body bytes.
    pub body: Vec<u8>,
    /// The client's address, when the edge knows it.
    pub peer: Option<std::net::IpAddr>,
}

impl ApiRequest {
    /// First header named `name` (lower case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
}

/// An HTTP response: status, extra headers, JSON body.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiResponse {
    /// Status code.
    pub status: u16,
    /// Extra headers (Content-Type is JSON whenever there is a body).
    pub headers: Vec<(&'static str, String)>,
    /// JSON body (may be empty).
    pub body: Vec<u8>,
}

impl ApiResponse {
    /// A JSON response.
    pub fn json(status: u16, body: impl Into<Vec<u8>>) -> Self {
        ApiResponse { status, headers: vec![], body: body.into() }
    }

    /// `405 Method Not Allowed` with Zulip's body and an `Allow` header.
    pub fn method_not_allowed(allowed: &[&str]) -> Self {
        let body = serde_json::json!({"result": "error", "msg": "Method Not Allowed", "allowed_methods": allowed});
        ApiResponse {
            status: 405,
            headers: vec![("Allow", format!("OPTIONS, {}", allowed.join(", ")))],
            body: body.to_string().into_bytes(),
        }
    }

    /// `204` answer to `OPTIONS` listing the allowed methods.
    pub fn options(allowed: &[&str]) -> Self {
        ApiResponse { status: 204, headers: vec![("Allow", format!("OPTIONS, {}", allowed.join(", ")))], body: vec![] }
    }
}

impl From<ApiError> for ApiResponse {
    fn from(e: ApiError) -> Self {
        ApiResponse { status: e.status, body: e.body(), headers: e.headers }
    }
}

/// Request parameters with Zulip's lookup order and typing rules.
#[derive(Debug, Clone, Default)]
pub struct Params {
    pairs: Vec<(String, String)>,
    used: BTreeSet<String>,
}

impl Params {
    /// Parameters of `req`: form-encoded body first, then the query string.
    pub fn from_request(req: &ApiRequest) -> Result<Self, ApiError> {
        let mut pairs = Vec::new();
        let ctype = req.header("content-type").unwrap_or("");
        if !req.body.is_empty() && (ctype.is_empty() || ctype.starts_with("application/x-www-form-urlencoded")) {
            pairs.extend(
                serde_urlencoded::from_bytes::<Vec<(String, String)>>(&req.body)
                    .map_err(|_| ApiError::bad_request("Malformed request body"))?,
            );
        }
        if !req.query.is_empty() {
            pairs.extend(
                serde_urlencoded::from_str::<Vec<(String, String)>>(&req.query)
                    .map_err(|_| ApiError::bad_request("Malformed query string"))?,
            );
        }
        Ok(Params { pairs, used: BTreeSet::new() })
    }

    /// Parameters from explicit pairs (tests, internal calls).
    pub fn from_pairs(pairs: &[(&str, &str)]) -> Self {
        Params { pairs: pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect(), used: BTreeSet::new() }
    }

    /// The raw string value (body wins over query), marking it used.
    pub fn str(&mut self, name: &str) -> Option<String> {
        let v = self.pairs.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
        if v.is_some() {
            self.used.insert(name.to_owned());
        }
        v
    }

    /// Whether a parameter was sent, without marking it used.
    pub fn has(&self, name: &str) -> bool {
        self.pairs.iter().any(|(k, _)| k == name)
    }

    /// A required string parameter.
    pub fn req_str(&mut self, name: &str) -> Result<String, ApiError> {
        self.str(name).ok_or_else(|| ApiError::missing(name))
    }

    /// A JSON-encoded parameter, decoded.
    pub fn json(&mut self, name: &str) -> Result<Option<Value>, ApiError> {
        match self.str(name) {
            None => Ok(None),
            Some(s) => serde_json::from_str(&s)
                .map(Some)
                .map_err(|_| ApiError::bad_request(format!("{name} is not valid JSON"))),
        }
    }

    /// A JSON boolean parameter.
    pub fn bool(&mut self, name: &str) -> Result<Option<bool>, ApiError> {
        match self.json(name)? {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(b)),
            Some(_) => Err(ApiError::bad_request(format!("{name} is not a boolean"))),
        }
    }

    /// A JSON integer parameter.
    pub fn int(&mut self, name: &str) -> Result<Option<i64>, ApiError> {
        match self.json(name)? {
            None => Ok(None),
            Some(v) => v.as_i64().map(Some).ok_or_else(|| ApiError::bad_request(format!("{name} is not an integer"))),
        }
    }

    /// A JSON list of strings.
    pub fn str_list(&mut self, name: &str) -> Result<Option<Vec<String>>, ApiError> {
        match self.json(name)? {
            None => Ok(None),
            Some(Value::Array(items)) => items
                .into_iter()
                .enumerate()
                .map(|(i, v)| match v {
                    Value::String(s) => Ok(s),
                    _ => Err(ApiError::bad_request(format!("{name}[{i}] is not a string"))),
                })
                .collect::<Result<Vec<_>, _>>()
                .map(Some),
            Some(_) => Err(ApiError::bad_request(format!("{name} is not a list"))),
        }
    }

    /// Names sent but never read, sorted (Zulip's
    /// `ignored_parameters_unsupported`).
    pub fn unused(&self) -> Vec<String> {
        let mut out: Vec<String> =
            self.pairs.iter().map(|(k, _)| k.clone()).filter(|k| !self.used.contains(k)).collect();
        out.sort();
        out.dedup();
        out
    }
}

/// The client name Zulip derives from a User-Agent:
/// `^(?P<name>[^/ ]*[^0-9/(]*)(/...)?` — e.g. `ZulipPython/0.9.1 (Linux)`
/// gives `ZulipPython`; a missing agent gives `Unspecified`.
pub fn client_name_from_user_agent(ua: Option<&str>) -> String {
    let Some(ua) = ua else { return "Unspecified".to_owned() };
    let first = ua.find(['/', ' ']).unwrap_or(ua.len());
    let rest = &ua[first..];
    let more = rest.find(|c: char| c.is_ascii_digit() || c == '/' || c == '(').unwrap_or(rest.len());
    let name = ua[..first + more].to_owned();
    if name.is_empty() {
        "Unspecified".to_owned()
    } else {
        name
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(method: &str, query: &str, body: &str) -> ApiRequest {
        ApiRequest {
            method: method.into(),
            path: "/api/v1/x".into(),
            query: query.into(),
            headers: vec![("content-type".into(), "application/x-www-form-urlencoded".into())],
            body: body.as_bytes().to_vec(),
            peer: None,
        }
    }

    #[test]
    fn body_wins_over_query_and_unused_are_reported() {
        let mut p = Params::from_request(&req("POST", "a=q&z=1&dont_block=true", "a=b&c=%5B1%5D")).unwrap();
        assert_eq!(p.str("a").as_deref(), Some("b"));
        assert_eq!(p.json("c").unwrap(), Some(serde_json::json!([1])));
        assert_eq!(p.unused(), vec!["dont_block".to_owned(), "z".to_owned()]);
    }

    #[test]
    fn typed_errors_use_zulips_messages() {
        let mut p = Params::from_pairs(&[("b", "yes"), ("n", "\"x\""), ("l", "{}"), ("t", "1")]);
        assert_eq!(p.bool("b").unwrap_err().msg, "b is not valid JSON");
        assert_eq!(p.int("n").unwrap_err().msg, "n is not an integer");
        assert_eq!(p.str_list("l").unwrap_err().msg, "l is not a list");
        assert_eq!(p.bool("t").unwrap_err().msg, "t is not a boolean");
        let e = p.req_str("missing").unwrap_err();
        assert_eq!(e.msg, "Missing 'missing' argument");
        assert_eq!(e.code, "REQUEST_VARIABLE_MISSING");
        assert_eq!(e.extra, vec![("var_name", serde_json::json!("missing"))]);
    }

    #[test]
    fn client_names() {
        assert_eq!(client_name_from_user_agent(Some("ZulipPython/0.9.1 (Linux; 3.11)")), "ZulipPython");
        assert_eq!(client_name_from_user_agent(Some("Mozilla/5.0 (X11)")), "Mozilla");
        assert_eq!(client_name_from_user_agent(Some("Zulip Terminal/0.7")), "Zulip Terminal");
        assert_eq!(client_name_from_user_agent(Some("curl")), "curl");
        assert_eq!(client_name_from_user_agent(None), "Unspecified");
        assert_eq!(client_name_from_user_agent(Some("")), "Unspecified");
    }
}
