//! What a benchmark client says to each kind of server: Squall's (Zulip's)
//! event API, nchan's long-poll subscriber protocol, or the hello-world
//! server; and how a round's message is published to each.
//!
//! Every round publishes one message whose id is the round number; a client
//! checks it sees rounds 1, 2, 3... exactly once each, in order.

use crate::http::{basic_auth, encode_request, BlockingClient, Response};
use crate::setup::Account;
use anyhow::{bail, Context, Result};
use serde_json::{json, Value};

/// The server under test.
#[derive(Debug, Clone)]
pub enum Target {
    /// Squall (or Zulip): queues created with `GET /events?dont_block=true`,
    /// rounds published through `/api/internal/notify_tornado`.
    Squall {
        /// Users the queues belong to (round-robin).
        accounts: Vec<Account>,
        /// Secret of the internal endpoints.
        secret: String,
    },
    /// nchan: every client subscribes to one channel by long-poll.
    Nchan {
        /// Channel id.
        channel: String,
    },
    /// The hello-world server: answers anything at once (request-rate
    /// ceiling only).
    Hello,
}

/// One client's position in the protocol.
#[derive(Debug, Clone, Default)]
pub struct Cursor {
    auth: String,
    queue_id: String,
    last_event_id: i64,
    last_modified: String,
    etag: String,
}

/// Event types of the benchmark's queues (`["message"]`, percent-encoded).
const MESSAGE_ONLY: &str = "%5B%22message%22%5D";

impl Target {
    /// The request that sets client `idx` up, if the protocol has one.
    pub fn open(&self, idx: usize, host: &str, cursor: &mut Cursor) -> Option<Vec<u8>> {
        match self {
            Target::Squall { accounts, .. } => {
                let a = &accounts[idx % accounts.len()];
                cursor.auth = basic_auth(&a.email, &a.api_key);
                cursor.last_event_id = -1;
                let path = format!("/api/v1/events?dont_block=true&event_types={MESSAGE_ONLY}");
                Some(encode_request("GET", host, &path, Some(&cursor.auth), &[]))
            }
            Target::Hello => {
                cursor.queue_id = "hello".into();
                None
            }
            Target::Nchan { .. } => None,
        }
    }

    /// Reads the answer to [`Target::open`].
    pub fn opened(&self, cursor: &mut Cursor, r: &Response) -> Result<()> {
        let body = r.json()?;
        if r.status != 200 {
            bail!("creating a queue: HTTP {} {body}", r.status);
        }
        cursor.queue_id = body["queue_id"].as_str().context("no queue_id")?.to_owned();
        Ok(())
    }

    /// The next long-poll (`dont_block` for request-rate runs).
    pub fn poll(&self, host: &str, cursor: &Cursor, dont_block: bool) -> Vec<u8> {
        match self {
            Target::Squall { .. } | Target::Hello => {
                let mut path =
                    format!("/api/v1/events?queue_id={}&last_event_id={}", cursor.queue_id, cursor.last_event_id);
                if dont_block {
                    path.push_str("&dont_block=true");
                }
                let auth = (!cursor.auth.is_empty()).then_some(cursor.auth.as_str());
                encode_request("GET", host, &path, auth, &[])
            }
            Target::Nchan { channel } => {
                let mut req = format!("GET /sub/{channel} HTTP/1.1\r\nHost: {host}\r\n");
                if !cursor.etag.is_empty() {
                    req.push_str(&format!(
                        "If-Modified-Since: {}\r\nIf-None-Match: {}\r\n",
                        cursor.last_modified, cursor.etag
                    ));
                }
                req.push_str("\r\n");
                req.into_bytes()
            }
        }
    }

    /// Reads a poll's answer: the rounds it delivered, in order (heartbeats
    /// and empty answers deliver none).
    pub fn delivered(&self, cursor: &mut Cursor, r: &Response) -> Result<Vec<u64>> {
        match self {
            Target::Squall { .. } | Target::Hello => {
                if r.status != 200 {
                    bail!("poll: HTTP {} {}", r.status, String::from_utf8_lossy(&r.body));
                }
                let body = r.json()?;
                let mut rounds = Vec::new();
                for e in body["events"].as_array().context("no events")? {
                    cursor.last_event_id = cursor.last_event_id.max(e["id"].as_i64().context("event without id")?);
                    if e["type"] == "message" {
                        rounds.push(e["message"]["id"].as_u64().context("message without id")?);
                    }
                }
                Ok(rounds)
            }
            Target::Nchan { .. } => {
                if r.status == 304 || r.status == 408 {
                    return Ok(vec![]);
                }
                if r.status != 200 {
                    bail!("subscribe: HTTP {} {}", r.status, String::from_utf8_lossy(&r.body));
                }
                cursor.last_modified = r.header("last-modified").context("no Last-Modified")?.to_owned();
                cursor.etag = r.header("etag").context("no Etag")?.to_owned();
                let body: Value = r.json()?;
                Ok(vec![body["message"]["id"].as_u64().context("message without id")?])
            }
        }
    }

    /// Publishes round `round` with `content` through `c`.
    pub fn publish(&self, c: &mut BlockingClient, round: u64, content: &str) -> Result<()> {
        let message = message_dict(round, content);
        let r = match self {
            Target::Squall { accounts, secret } => {
                let users: Vec<Value> = accounts.iter().map(|a| json!({"id": a.user_id, "flags": []})).collect();
                let notice = json!({
                    "event": {"type": "message", "message_dict": message, "stream_name": "bench", "realm_id": 1},
                    "users": users,
                });
                let data = notice.to_string();
                c.request("POST", "/api/internal/notify_tornado", None, &[("secret", secret), ("data", &data)])?
            }
            Target::Nchan { channel } => {
                let body = json!({"type": "message", "message": message, "flags": [], "id": round}).to_string();
                c.request_body("POST", &format!("/pub/{channel}"), "application/json", body.as_bytes())?
            }
            Target::Hello => bail!("the hello-world server has nothing to publish to"),
        };
        if r.status >= 300 {
            bail!("publishing round {round}: HTTP {} {}", r.status, String::from_utf8_lossy(&r.body));
        }
        Ok(())
    }

    /// How the server reports its parked long-polls (a positive marker that
    /// every client's poll has arrived): a request to make and how to read
    /// the count from its answer.
    pub fn parked_count(&self, c: &mut BlockingClient) -> Result<u64> {
        match self {
            Target::Squall { .. } => {
                let r = c.request("GET", "/metrics", None, &[])?;
                let text = String::from_utf8_lossy(&r.body);
                Ok(text
                    .lines()
                    .filter(|l| l.starts_with("squall_parked_polls{"))
                    .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
                    .sum())
            }
            Target::Nchan { .. } => {
                let r = c.request("GET", "/nchan_status", None, &[])?;
                let text = String::from_utf8_lossy(&r.body);
                text.lines()
                    .find_map(|l| l.strip_prefix("subscribers:"))
                    .and_then(|v| v.trim().parse().ok())
                    .context("nchan_stub_status has no subscriber count (is /nchan_status configured?)")
            }
            Target::Hello => Ok(0),
        }
    }
}

/// A stream message as Zulip's notice carries it, with `content`.
fn message_dict(round: u64, content: &str) -> Value {
    json!({
        "id": round, "sender_id": 1, "sender_email": "bench@loadtest.example", "sender_full_name": "Bench",
        "sender_realm_str": "", "recipient_id": 1, "timestamp": 1_700_000_000u64, "client": "bench",
        "subject": "bench", "content": content, "rendered_content": format!("<p>{content}</p>"),
        "is_me_message": false, "avatar_url": "https://secure.gravatar.com/avatar/0?d=identicon&version=1",
        "display_recipient": "bench", "stream_id": 1, "type": "stream",
    })
}
