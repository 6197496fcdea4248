//! A Zulip API client over real HTTP (Basic auth, or none).

use anyhow::{bail, Context, Result};
use serde_json::Value;
use std::time::Duration;

/// A Zulip API client speaking HTTP Basic auth (or none).
#[derive(Clone)]
pub struct Client {
    http: reqwest::blocking::Client,
    base: String,
    /// Email (empty for anonymous).
    pub email: String,
    /// API key (empty for anonymous).
    pub api_key: String,
    /// User id, when known.
    pub user_id: i64,
}

impl Client {
    /// An authenticated client.
    pub fn new(base: &str, email: &str, api_key: &str) -> Self {
        let http = reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(120))
            .user_agent("SquallE2E/0.1")
            .build()
            .expect("building an HTTP client");
        Client { http, base: base.to_owned(), email: email.to_owned(), api_key: api_key.to_owned(), user_id: 0 }
    }

    /// A client without credentials.
    pub fn anonymous(base: &str) -> Self {
        Self::new(base, "", "")
    }

    fn auth(&self, rb: reqwest::blocking::RequestBuilder) -> reqwest::blocking::RequestBuilder {
        if self.email.is_empty() {
            rb
        } else {
            rb.basic_auth(&self.email, Some(&self.api_key))
        }
    }

    fn finish(rb: reqwest::blocking::RequestBuilder) -> Result<(u16, Value)> {
        let resp = rb.send()?;
        let status = resp.status().as_u16();
        let text = resp.text()?;
        let body = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).with_context(|| format!("non-JSON body ({status}): {text}"))?
        };
        Ok((status, body))
    }

    /// GET with query parameters.
    pub fn get(&self, path: &str, query: &[(&str, &str)]) -> Result<(u16, Value)> {
        Self::finish(self.auth(self.http.get(format!("{}{path}", self.base)).query(query)))
    }

    /// POST with a form body.
    pub fn post(&self, path: &str, form: &[(&str, &str)]) -> Result<(u16, Value)> {
        Self::finish(self.auth(self.http.post(format!("{}{path}", self.base)).form(form)))
    }

    /// DELETE with a form body.
    pub fn delete(&self, path: &str, form: &[(&str, &str)]) -> Result<(u16, Value)> {
        Self::finish(self.auth(self.http.delete(format!("{}{path}", self.base)).form(form)))
    }

    /// This client's `Authorization: Basic ...` header value.
    pub fn basic_header(&self) -> String {
        use base64::Engine;
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{}:{}", self.email, self.api_key))
        )
    }

    /// Any method with a form body.
    pub fn raw_form(&self, method: &str, path: &str, form: &[(&str, &str)]) -> Result<(u16, Value)> {
        Self::finish(self.auth(self.http.request(method.parse()?, format!("{}{path}", self.base)).form(form)))
    }

    /// Any request with custom headers and a raw body.
    pub fn raw(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> Result<(u16, Value, reqwest::header::HeaderMap)> {
        let mut rb = self.http.request(method.parse()?, format!("{}{path}", self.base)).body(body.to_owned());
        for (k, v) in headers {
            rb = rb.header(*k, *v);
        }
        let resp = rb.send()?;
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let text = resp.text()?;
        let body =
            if text.is_empty() { Value::Null } else { serde_json::from_str(&text).unwrap_or(Value::String(text)) };
        Ok((status, body, headers))
    }

    /// `POST /register`; returns (queue_id, last_event_id, whole body).
    pub fn register(&self, form: &[(&str, &str)]) -> Result<(String, i64, Value)> {
        let (status, body) = self.post("/api/v1/register", form)?;
        if status != 200 {
            bail!("register: {status} {body}");
        }
        let q = body["queue_id"].as_str().context("queue_id")?.to_owned();
        let last = body["last_event_id"].as_i64().context("last_event_id")?;
        Ok((q, last, body))
    }

    /// Long-polls `GET /events`.
    pub fn get_events(&self, queue_id: &str, last_event_id: i64, dont_block: bool) -> Result<(u16, Value)> {
        let last = last_event_id.to_string();
        let mut q = vec![("queue_id", queue_id), ("last_event_id", last.as_str())];
        if dont_block {
            q.push(("dont_block", "true"));
        }
        self.get("/api/v1/events", &q)
    }

    /// Sends a stream message; returns its id.
    pub fn send_stream(&self, stream: &str, topic: &str, content: &str) -> Result<i64> {
        let (status, body) = self
            .post("/api/v1/messages", &[("type", "stream"), ("to", stream), ("topic", topic), ("content", content)])?;
        if status != 200 {
            bail!("send: {status} {body}");
        }
        body["id"].as_i64().context("id")
    }

    /// Sends a direct message to the user with id `to`; returns its id.
    pub fn send_dm(&self, to: i64, content: &str) -> Result<i64> {
        let to = format!("[{to}]");
        let (status, body) = self.post("/api/v1/messages", &[("type", "direct"), ("to", &to), ("content", content)])?;
        if status != 200 {
            bail!("send: {status} {body}");
        }
        body["id"].as_i64().context("id")
    }

    /// Waits (up to 5 s) until `GET /users/me` satisfies `ok`: a change
    /// made outside the server (in SQL) reaches its user cache through
    /// PostgreSQL's notification a moment later.
    pub fn wait_me(&self, ok: impl Fn(&Value) -> bool) -> Result<()> {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        loop {
            let (_, me) = self.get("/api/v1/users/me", &[])?;
            if ok(&me) {
                return Ok(());
            }
            if std::time::Instant::now() > deadline {
                bail!("GET /users/me never matched: {me}");
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }

    /// Subscribes to streams by name (creating them).
    pub fn subscribe(&self, names: &[&str]) -> Result<Value> {
        let subs: Vec<Value> = names.iter().map(|n| serde_json::json!({"name": n})).collect();
        let (status, body) =
            self.post("/api/v1/users/me/subscriptions", &[("subscriptions", &Value::from(subs).to_string())])?;
        if status != 200 {
            bail!("subscribe: {status} {body}");
        }
        Ok(body)
    }
}
