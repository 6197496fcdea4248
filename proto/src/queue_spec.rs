//! Zulip's client descriptor options ([`QueueSpec`]) and how `POST /register`
//! and `GET /events` without a queue id read them from request parameters.
//!
//! The backend parses them for register, the gateway for `/events`; both
//! call [`queue_spec`] so the two cannot drift apart.

use crate::api::Params;
use crate::error::ApiError;
use crate::user::AuthedUser;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Everything the gateway needs to create a queue (Zulip's client
/// descriptor options), as sent by register or by `GET /events` without a
/// queue id.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct QueueSpec {
    /// Owner.
    pub user_id: i64,
    /// Owner's realm.
    pub realm_id: i64,
    /// Client name of the creating request (`ZulipPython`, `website`, ...).
    pub client_type_name: String,
    /// `null` = every type; otherwise the accepted event types.
    pub event_types: Option<Vec<String>>,
    /// `[operator, operand]` pairs (validated by the caller).
    pub narrow: Vec<(String, String)>,
    /// HTML instead of Markdown in message events.
    pub apply_markdown: bool,
    /// `avatar_url: null` for Gravatar senders.
    pub client_gravatar: bool,
    /// Presence events without `email`.
    pub slim_presence: bool,
    /// Receive every public-stream message of the realm.
    pub all_public_streams: bool,
    /// Idle lifetime in seconds (already defaulted and capped).
    pub queue_timeout_secs: u64,
    /// One `delete_message` event with `message_ids`.
    pub bulk_message_deletion: bool,
    /// Receive stream typing events.
    pub stream_typing_notifications: bool,
    /// Only `user_settings` events for settings changes.
    pub user_settings_object: bool,
    /// Linkifiers as URL templates.
    pub linkifier_url_template: bool,
    /// The client may not know every user: skip `realm_user` adds of
    /// inaccessible users.
    pub user_list_incomplete: bool,
    /// Receive events about deactivated user groups.
    pub include_deactivated_groups: bool,
    /// The client knows the PRONOUNS custom-profile-field type.
    pub pronouns_field_type_supported: bool,
}

impl Default for QueueSpec {
    fn default() -> Self {
        QueueSpec {
            user_id: 0,
            realm_id: 0,
            client_type_name: String::new(),
            event_types: None,
            narrow: Vec::new(),
            apply_markdown: false,
            client_gravatar: false,
            slim_presence: false,
            all_public_streams: false,
            queue_timeout_secs: 600,
            bulk_message_deletion: false,
            stream_typing_notifications: false,
            user_settings_object: false,
            linkifier_url_template: false,
            user_list_incomplete: false,
            include_deactivated_groups: false,
            pronouns_field_type_supported: true,
        }
    }
}

impl QueueSpec {
    /// A realm-wide watcher: receives public-stream messages it is not a
    /// recipient of (`all_public_streams`, or any narrow, as in Zulip).
    pub fn is_realm_watcher(&self) -> bool {
        self.all_public_streams || !self.narrow.is_empty()
    }
}

/// Idle lifetime of a queue when the client does not ask for one.
pub const DEFAULT_EVENT_QUEUE_TIMEOUT_SECS: u64 = 600;
/// Longest lifetime a client may ask for (7 days).
pub const MAX_QUEUE_TIMEOUT_SECS: u64 = 604_800;

/// Narrow operators a queue may filter on.
const NARROW_OPERATORS: [&str; 5] = ["channel", "stream", "topic", "sender", "is"];

/// Validates a register/events `narrow`: a list of `[operator, operand]`.
pub fn check_queue_narrow(v: Option<Value>) -> Result<Vec<(String, String)>, ApiError> {
    let Some(v) = v else { return Ok(vec![]) };
    let Value::Array(items) = v else { return Err(ApiError::bad_request("narrow is not a list")) };
    let mut out = Vec::new();
    for (i, item) in items.into_iter().enumerate() {
        let pair = match item {
            Value::Array(p) if p.len() == 2 => p,
            _ => return Err(ApiError::bad_request(format!("narrow[{i}] is not a list of length 2"))),
        };
        let (Some(op), Some(operand)) = (pair[0].as_str(), pair[1].as_str()) else {
            return Err(ApiError::bad_request(format!("narrow[{i}][0] is not a string")));
        };
        if !NARROW_OPERATORS.contains(&op) {
            return Err(ApiError::bad_request(format!("Operator {op} not supported.")));
        }
        if op == "is" && operand == "followed" {
            return Err(ApiError::bad_request("Operand followed not supported."));
        }
        out.push((op.to_owned(), operand.to_owned()));
    }
    Ok(out)
}

/// Zulip derives PRONOUNS support from the User-Agent: only the legacy
/// mobile app before 27.192 lacks it.
pub fn pronouns_supported(user_agent: Option<&str>) -> bool {
    let Some(rest) = user_agent.and_then(|ua| ua.strip_prefix("ZulipMobile/")) else { return true };
    let version: Vec<u32> = rest
        .split(|c: char| !c.is_ascii_digit() && c != '.')
        .next()
        .unwrap_or("")
        .split('.')
        .filter_map(|p| p.parse().ok())
        .collect();
    match version.as_slice() {
        [major, minor, ..] => (*major, *minor) >= (27, 192),
        [major] => *major > 27,
        [] => true,
    }
}

/// Reads the queue-creation parameters shared by register and
/// `GET /events` without a queue id. `caps` is register's
/// `client_capabilities` (already read: register also needs it itself);
/// `GET /events` takes the same capabilities as plain parameters.
pub fn queue_spec(
    user: &AuthedUser,
    client_name: String,
    user_agent: Option<&str>,
    caps: Option<Value>,
    p: &mut Params,
    register: bool,
) -> Result<QueueSpec, ApiError> {
    let apply_markdown = p.bool("apply_markdown")?.unwrap_or(false);
    // register defaults client_gravatar to true (authenticated); /events to false.
    let client_gravatar = p.bool("client_gravatar")?.unwrap_or(register);
    let slim_presence = p.bool("slim_presence")?.unwrap_or(false);
    let all_public_streams = p.bool("all_public_streams")?.unwrap_or(false);
    if all_public_streams && user.is_guest() {
        return Err(ApiError::bad_request("User not authorized for this query"));
    }
    let event_types = p.str_list("event_types")?;
    let narrow = check_queue_narrow(p.json("narrow")?)?;
    let lifespan_name = if register { "queue_lifespan_secs" } else { "lifespan_secs" };
    let lifespan = p.int(lifespan_name)?.unwrap_or(0);
    if lifespan < 0 {
        return Err(ApiError::bad_request(format!("{lifespan_name} is too small")));
    }
    let queue_timeout_secs =
        if lifespan == 0 { DEFAULT_EVENT_QUEUE_TIMEOUT_SECS } else { (lifespan as u64).min(MAX_QUEUE_TIMEOUT_SECS) };
    let mut spec = QueueSpec {
        user_id: user.id,
        realm_id: user.realm_id,
        client_type_name: client_name,
        event_types,
        narrow,
        apply_markdown,
        client_gravatar,
        slim_presence,
        all_public_streams,
        queue_timeout_secs,
        ..QueueSpec::default()
    };
    if register {
        if let Some(caps) = caps {
            let Value::Object(caps) = caps else {
                return Err(ApiError::bad_request("client_capabilities is not a dict"));
            };
            let flag = |k: &str| caps.get(k).and_then(Value::as_bool).unwrap_or(false);
            spec.bulk_message_deletion = flag("bulk_message_deletion");
            spec.stream_typing_notifications = flag("stream_typing_notifications");
            spec.user_settings_object = flag("user_settings_object");
            spec.linkifier_url_template = flag("linkifier_url_template");
            spec.user_list_incomplete = flag("user_list_incomplete");
            spec.include_deactivated_groups = flag("include_deactivated_groups");
        }
        spec.pronouns_field_type_supported = pronouns_supported(user_agent);
    } else {
        spec.bulk_message_deletion = p.bool("bulk_message_deletion")?.unwrap_or(false);
        spec.stream_typing_notifications = p.bool("stream_typing_notifications")?.unwrap_or(false);
        spec.user_settings_object = p.bool("user_settings_object")?.unwrap_or(false);
        spec.linkifier_url_template = p.bool("linkifier_url_template")?.unwrap_or(false);
        spec.user_list_incomplete = p.bool("user_list_incomplete")?.unwrap_or(false);
        spec.include_deactivated_groups = p.bool("include_deactivated_groups")?.unwrap_or(false);
        spec.pronouns_field_type_supported = p.bool("pronouns_field_type_supported")?.unwrap_or(true);
    }
    Ok(spec)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::user::role;
    use serde_json::json;

    fn user(role: i32) -> AuthedUser {
        AuthedUser { id: 7, realm_id: 1, role }
    }

    #[test]
    fn guests_cannot_watch_all_public_streams() {
        let guest = user(role::GUEST);
        for register in [true, false] {
            let mut p = Params::from_pairs(&[("all_public_streams", "true")]);
            let e = queue_spec(&guest, "x".into(), None, None, &mut p, register).unwrap_err();
            assert_eq!(e.msg, "User not authorized for this query");
        }
        let mut p = Params::from_pairs(&[("all_public_streams", "true")]);
        assert!(queue_spec(&user(role::MEMBER), "x".into(), None, None, &mut p, true).unwrap().all_public_streams);
    }

    #[test]
    fn queue_options_and_lifespans() {
        let member = user(role::MEMBER);
        let caps = serde_json::json!({"notification_settings_null": true, "bulk_message_deletion": true, "user_list_incomplete": true});
        let mut p = Params::from_pairs(&[("queue_lifespan_secs", "9999999"), ("event_types", r#"["message"]"#)]);
        let spec =
            queue_spec(&member, "ZulipPython".into(), Some("ZulipMobile/27.100"), Some(caps), &mut p, true).unwrap();
        assert!(spec.bulk_message_deletion && spec.user_list_incomplete && !spec.stream_typing_notifications);
        assert!(!spec.pronouns_field_type_supported);
        assert!(spec.client_gravatar, "register defaults client_gravatar to true");
        assert_eq!(spec.queue_timeout_secs, MAX_QUEUE_TIMEOUT_SECS);
        assert_eq!(spec.event_types, Some(vec!["message".to_owned()]));
        let mut p = Params::from_pairs(&[("lifespan_secs", "0")]);
        let spec = queue_spec(&member, "x".into(), None, None, &mut p, false).unwrap();
        assert_eq!(spec.queue_timeout_secs, DEFAULT_EVENT_QUEUE_TIMEOUT_SECS);
        assert!(!spec.client_gravatar, "GET /events defaults client_gravatar to false");
        let mut p = Params::from_pairs(&[("lifespan_secs", "-1")]);
        assert!(queue_spec(&member, "x".into(), None, None, &mut p, false).is_err());
    }

    #[test]
    fn pronouns_from_user_agent() {
        assert!(pronouns_supported(None));
        assert!(pronouns_supported(Some("ZulipPython/0.9.1")));
        assert!(!pronouns_supported(Some("ZulipMobile/27.191 (Android 14)")));
        assert!(pronouns_supported(Some("ZulipMobile/27.192 (iOS 17)")));
        assert!(pronouns_supported(Some("ZulipMobile/28.0")));
        assert!(!pronouns_supported(Some("ZulipMobile/26.1")));
    }

    #[test]
    fn narrow_validation() {
        assert_eq!(check_queue_narrow(None).unwrap(), vec![]);
        assert_eq!(
            check_queue_narrow(Some(json!([["stream", "denmark"]]))).unwrap(),
            vec![("stream".to_owned(), "denmark".to_owned())]
        );
        assert_eq!(
            check_queue_narrow(Some(json!([["search", "x"]]))).unwrap_err().msg,
            "Operator search not supported."
        );
        assert_eq!(
            check_queue_narrow(Some(json!([["is", "followed"]]))).unwrap_err().msg,
            "Operand followed not supported."
        );
        assert!(check_queue_narrow(Some(json!([["stream"]]))).is_err());
        assert!(check_queue_narrow(Some(json!("x"))).is_err());
    }
}
