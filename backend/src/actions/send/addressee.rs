//! The send request as the client wrote it, checked without the database:
//! `type`, `to` and `topic` parsed into an [`Addressee`] (Zulip's
//! `zerver/lib/addressee.py`), topics and content normalised, and the
//! whole request as an [`Outgoing`]. `api/messages` builds the
//! `Outgoing`; [`super::send_message`] takes it from there.

use crate::streams::is_unprintable;
use serde_json::Value;
use squall_proto::error::ApiError;
use std::collections::BTreeSet;

/// Longest message Zulip stores (characters).
pub const MAX_MESSAGE_LENGTH: usize = 10_000;
/// Longest topic (characters).
pub const MAX_TOPIC_LENGTH: usize = 60;

/// Where a message is addressed, as parsed from `to`.
#[derive(Debug, Clone, PartialEq)]
pub enum StreamRef {
    /// By name.
    Name(String),
    /// By id.
    Id(i64),
}

/// Direct-message recipients, as parsed from `to`.
#[derive(Debug, Clone, PartialEq)]
pub enum UserRefs {
    /// Emails.
    Emails(Vec<String>),
    /// User ids.
    Ids(Vec<i64>),
}

/// Zulip's `extract_stream_indicator`.
pub fn extract_stream_indicator(to: &str) -> Result<StreamRef, ApiError> {
    let data: Value = match serde_json::from_str(to) {
        Ok(v) => v,
        Err(_) => return Ok(StreamRef::Name(to.to_owned())),
    };
    let data = match data {
        Value::Array(mut items) => {
            if items.len() > 1 {
                return Err(ApiError::bad_request("Cannot send to multiple channels"));
            }
            match items.pop() {
                Some(v) => v,
                None => return Err(ApiError::bad_request("Missing channel")),
            }
        }
        other => other,
    };
    match data {
        Value::String(s) => Ok(StreamRef::Name(s)),
        Value::Number(n) => {
            n.as_i64().map(StreamRef::Id).ok_or_else(|| ApiError::bad_request("Invalid data type for channel"))
        }
        _ => Err(ApiError::bad_request("Invalid data type for channel")),
    }
}

/// Zulip's `extract_private_recipients`: a JSON list of emails or ids, a JSON
/// string, or a comma-separated list of emails. De-duplicated.
pub fn extract_private_recipients(to: &str) -> Result<UserRefs, ApiError> {
    let data: Value = match serde_json::from_str(to) {
        Ok(v) => v,
        Err(_) => {
            let emails: Vec<String> =
                to.split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned).collect();
            return Ok(UserRefs::Emails(dedup(emails)));
        }
    };
    let items = match data {
        Value::Array(items) => items,
        Value::String(s) => vec![Value::String(s)],
        Value::Number(n) => vec![Value::Number(n)],
        _ => return Err(ApiError::bad_request("Invalid data type for recipients")),
    };
    if items.iter().all(Value::is_string) {
        let emails = items.into_iter().filter_map(|v| v.as_str().map(|s| s.trim().to_owned())).collect();
        Ok(UserRefs::Emails(dedup(emails)))
    } else if items.iter().all(|v| v.as_i64().is_some()) {
        Ok(UserRefs::Ids(dedup(items.iter().filter_map(Value::as_i64).collect())))
    } else if items.iter().all(|v| v.is_string() || v.as_i64().is_some()) {
        Err(ApiError::bad_request("Recipient lists may contain emails or user IDs, but not both."))
    } else {
        Err(ApiError::bad_request("Invalid data type for recipients"))
    }
}

fn dedup<T: Ord + Clone>(v: Vec<T>) -> Vec<T> {
    let mut seen = BTreeSet::new();
    v.into_iter().filter(|x| seen.insert(x.clone())).collect()
}

/// Zulip's `normalize_body`: strip trailing whitespace and leading
/// newlines; refuse empty and NUL; truncate to 10,000 characters.
pub fn normalize_body(raw: &str) -> Result<String, ApiError> {
    let body = raw.trim_end().trim_start_matches(['\n', '\r']);
    if body.is_empty() {
        return Err(ApiError::bad_request("Message must not be empty"));
    }
    if body.contains('\0') {
        return Err(ApiError::bad_request("Message must not contain null bytes"));
    }
    Ok(truncate(body, MAX_MESSAGE_LENGTH, "\n[message truncated]"))
}

fn truncate(s: &str, max_chars: usize, suffix: &str) -> String {
    if s.chars().count() <= max_chars {
        return s.to_owned();
    }
    let keep = max_chars - suffix.chars().count();
    let mut out: String = s.chars().take(keep).collect();
    out.push_str(suffix);
    out
}

/// Zulip's topic rules: stripped, non-empty, printable; over 60 characters
/// truncated to 57 + `...`.
pub fn check_topic(raw: &str) -> Result<String, ApiError> {
    let topic = raw.trim();
    if topic.is_empty() {
        return Err(ApiError::bad_request("Topic can't be empty!"));
    }
    if let Some(pos) = topic.chars().position(is_unprintable) {
        return Err(ApiError::bad_request(format!("Invalid character in topic, at position {}!", pos + 1)));
    }
    Ok(truncate(topic, MAX_TOPIC_LENGTH, "..."))
}

/// A validated send request.
#[derive(Debug, Clone)]
pub struct Outgoing {
    /// Stream or direct addressing.
    pub to: Addressee,
    /// Content as sent; `send_message` normalises it ([`normalize_body`])
    /// before `check_message` sees it.
    pub content: String,
    /// Sending client name.
    pub client: String,
    /// Sender's queue, for local echo.
    pub queue_id: Option<String>,
    /// Local echo id.
    pub local_id: Option<String>,
    /// Explicit `read_by_sender`.
    pub read_by_sender: Option<bool>,
    /// Post without the channel access check (Zulip's
    /// `skip_stream_access_check`): an outgoing-webhook bot answers where
    /// it was mentioned, even in a private channel it is not in. Never
    /// set from a request.
    pub skip_stream_access_check: bool,
}

/// Addressing after the `legacy_build` checks.
#[derive(Debug, Clone)]
pub enum Addressee {
    /// Stream + validated topic.
    Stream(StreamRef, String),
    /// Direct-message recipients.
    Direct(UserRefs),
}

/// Zulip's `Addressee.legacy_build`.
pub fn build_addressee(kind: &str, to: Option<&str>, topic: Option<&str>) -> Result<Addressee, ApiError> {
    match kind {
        "stream" | "channel" => {
            let to = to.filter(|t| !t.is_empty()).ok_or_else(|| ApiError::bad_request("Missing channel"))?;
            let stream = extract_stream_indicator(to)?;
            let topic = topic.ok_or_else(|| ApiError::bad_request("Missing topic"))?;
            Ok(Addressee::Stream(stream, check_topic(topic)?))
        }
        "direct" | "private" => {
            let refs = match to {
                None => UserRefs::Emails(vec![]),
                Some(t) => extract_private_recipients(t)?,
            };
            let empty = match &refs {
                UserRefs::Emails(e) => e.is_empty(),
                UserRefs::Ids(i) => i.is_empty(),
            };
            if empty {
                return Err(ApiError::bad_request("Message must have recipients"));
            }
            Ok(Addressee::Direct(refs))
        }
        _ => Err(ApiError::bad_request("Invalid type")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_indicator_forms() {
        assert_eq!(extract_stream_indicator("Denmark").unwrap(), StreamRef::Name("Denmark".into()));
        assert_eq!(extract_stream_indicator("\"Denmark\"").unwrap(), StreamRef::Name("Denmark".into()));
        assert_eq!(extract_stream_indicator("5").unwrap(), StreamRef::Id(5));
        assert_eq!(extract_stream_indicator("[\"Denmark\"]").unwrap(), StreamRef::Name("Denmark".into()));
        assert_eq!(extract_stream_indicator("[7]").unwrap(), StreamRef::Id(7));
        assert_eq!(extract_stream_indicator("[\"a\",\"b\"]").unwrap_err().msg, "Cannot send to multiple channels");
        assert_eq!(extract_stream_indicator("{}").unwrap_err().msg, "Invalid data type for channel");
    }

    #[test]
    fn private_recipient_forms() {
        assert_eq!(
            extract_private_recipients("a@x.com, b@x.com,a@x.com").unwrap(),
            UserRefs::Emails(vec!["a@x.com".into(), "b@x.com".into()])
        );
        assert_eq!(extract_private_recipients("[3, 4, 3]").unwrap(), UserRefs::Ids(vec![3, 4]));
        assert_eq!(extract_private_recipients("[\"a@x.com\"]").unwrap(), UserRefs::Emails(vec!["a@x.com".into()]));
        assert_eq!(
            extract_private_recipients("[\"a@x.com\", 3]").unwrap_err().msg,
            "Recipient lists may contain emails or user IDs, but not both."
        );
        assert_eq!(extract_private_recipients("{}").unwrap_err().msg, "Invalid data type for recipients");
    }

    #[test]
    fn body_normalisation() {
        assert_eq!(normalize_body("\n\nhello  \n ").unwrap(), "hello");
        assert_eq!(normalize_body("  \n").unwrap_err().msg, "Message must not be empty");
        assert_eq!(normalize_body("a\0b").unwrap_err().msg, "Message must not contain null bytes");
        let long = normalize_body(&"x".repeat(10_005)).unwrap();
        assert_eq!(long.chars().count(), 10_000);
        assert!(long.ends_with("\n[message truncated]"));
    }

    #[test]
    fn topic_rules() {
        assert_eq!(check_topic("  hi ").unwrap(), "hi");
        assert_eq!(check_topic("   ").unwrap_err().msg, "Topic can't be empty!");
        assert_eq!(check_topic("abcd\u{1}").unwrap_err().msg, "Invalid character in topic, at position 5!");
        let t = check_topic(&"t".repeat(61)).unwrap();
        assert_eq!(t, format!("{}...", "t".repeat(57)));
        assert_eq!(check_topic(&"t".repeat(60)).unwrap().len(), 60);
    }

    #[test]
    fn addressee_errors() {
        assert_eq!(build_addressee("bogus", None, None).unwrap_err().msg, "Invalid type");
        assert_eq!(build_addressee("stream", None, Some("t")).unwrap_err().msg, "Missing channel");
        assert_eq!(build_addressee("stream", Some("s"), None).unwrap_err().msg, "Missing topic");
        assert_eq!(build_addressee("direct", None, None).unwrap_err().msg, "Message must have recipients");
        assert_eq!(build_addressee("private", Some("[]"), None).unwrap_err().msg, "Message must have recipients");
        assert!(matches!(build_addressee("channel", Some("s"), Some("t")).unwrap(), Addressee::Stream(..)));
    }
}
