//! Which events a queue accepts (Zulip's `accepts_event`) and the narrow
//! predicate for message events. Pure functions of the queue's options and
//! the event.

use serde_json::Value;
use squall_proto::envelope::{Destination, WideMessage};
use squall_proto::flags;
use squall_proto::queue_spec::QueueSpec;

/// Zulip's `accepts_event`, in its order: the `event_types` filter (and
/// `muted_topics` dropped when `user_topic` is wanted), stream typing only
/// with the capability, legacy settings events dropped for
/// `user_settings_object` clients, and the deactivated-group rules. Message
/// narrows are checked by [`narrow_matches`] where the flags are known.
pub fn accepts_event(spec: &QueueSpec, event: &Value) -> bool {
    let ty = event.get("type").and_then(Value::as_str).unwrap_or("");
    if let Some(types) = &spec.event_types {
        if !types.iter().any(|t| t == ty) {
            return false;
        }
        if ty == "muted_topics" && types.iter().any(|t| t == "user_topic") {
            return false;
        }
    }
    match ty {
        "typing" if event.get("stream_id").is_some() => spec.stream_typing_notifications,
        "update_display_settings" | "update_global_notifications" => !spec.user_settings_object,
        "user_group" => match event.get("op").and_then(Value::as_str) {
            Some("remove") => !spec.include_deactivated_groups,
            Some("update") if event.pointer("/data/deactivated").is_some() => spec.include_deactivated_groups,
            _ => true,
        },
        _ => true,
    }
}

/// Whether the queue wants message events at all ("accepts messages").
pub fn accepts_messages(spec: &QueueSpec) -> bool {
    spec.event_types.as_ref().is_none_or(|t| t.iter().any(|x| x == "message"))
}

/// Zulip's narrow predicate for message events; every term must match,
/// comparisons are case-insensitive.
pub fn narrow_matches(narrow: &[(String, String)], msg: &WideMessage, bits: i64) -> bool {
    narrow.iter().all(|(op, operand)| match op.as_str() {
        "stream" | "channel" => match &msg.destination {
            Destination::Stream { name, .. } => name.to_lowercase() == operand.to_lowercase(),
            _ => false,
        },
        "topic" => msg.is_stream() && msg.subject.to_lowercase() == operand.to_lowercase(),
        "sender" => msg.sender_email.to_lowercase() == operand.to_lowercase(),
        "is" => match operand.as_str() {
            "dm" | "private" => !msg.is_stream(),
            "starred" => bits & flags::STARRED != 0,
            "unread" => bits & flags::READ == 0,
            "mentioned" | "alerted" => bits & flags::MENTIONED != 0,
            "resolved" => msg.is_stream() && msg.subject.starts_with("✔ "),
            _ => true,
        },
        _ => true,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use squall_proto::envelope::Participant;

    fn msg(dest: Destination, subject: &str) -> WideMessage {
        WideMessage {
            id: 1,
            sender_id: 2,
            sender_email: "Hamlet@Zulip.com".into(),
            sender_full_name: "Hamlet".into(),
            sender_realm_str: "".into(),
            recipient_id: 3,
            timestamp: 0,
            client: "test".into(),
            subject: subject.into(),
            content: "x".into(),
            rendered_content: "<p>x</p>".into(),
            is_me_message: false,
            avatar_url: "u".into(),
            avatar_is_gravatar: true,
            destination: dest,
            last_edit_timestamp: None,
            edit_history: None,
        }
    }

    #[test]
    fn narrow_predicate() {
        let n = |pairs: &[(&str, &str)]| pairs.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect::<Vec<_>>();
        let denmark = msg(Destination::Stream { stream_id: 1, name: "Denmark".into() }, "✔ done");
        let dm = msg(
            Destination::Private {
                participants: vec![Participant {
                    id: 2,
                    email: "a".into(),
                    full_name: "a".into(),
                    is_mirror_dummy: false,
                }],
            },
            "",
        );
        assert!(narrow_matches(&[], &dm, 0));
        assert!(narrow_matches(&n(&[("stream", "denmark")]), &denmark, 0));
        assert!(!narrow_matches(&n(&[("stream", "denmark")]), &dm, 0));
        assert!(narrow_matches(&n(&[("stream", "DENMARK"), ("topic", "✔ DONE")]), &denmark, 0));
        assert!(narrow_matches(&n(&[("sender", "hamlet@zulip.com")]), &dm, 0));
        assert!(narrow_matches(&n(&[("is", "dm")]), &dm, 0));
        assert!(!narrow_matches(&n(&[("is", "private")]), &denmark, 0));
        assert!(narrow_matches(&n(&[("is", "resolved")]), &denmark, 0));
        assert!(narrow_matches(&n(&[("is", "unread")]), &denmark, 0));
        assert!(!narrow_matches(&n(&[("is", "unread")]), &denmark, flags::READ));
        assert!(narrow_matches(&n(&[("is", "mentioned")]), &denmark, flags::MENTIONED));
        assert!(narrow_matches(&n(&[("is", "whatever")]), &denmark, 0));
    }

    #[test]
    fn event_type_filter_and_muted_topics() {
        let spec =
            QueueSpec { event_types: Some(vec!["message".into(), "muted_topics".into()]), ..QueueSpec::default() };
        assert!(accepts_event(&spec, &json!({"type": "muted_topics"})));
        assert!(!accepts_event(&spec, &json!({"type": "typing"})));
        assert!(!accepts_event(&spec, &json!({"type": "restart"})), "restart goes through the filter");
        let both =
            QueueSpec { event_types: Some(vec!["muted_topics".into(), "user_topic".into()]), ..QueueSpec::default() };
        assert!(!accepts_event(&both, &json!({"type": "muted_topics"})));
        assert!(accepts_event(&QueueSpec::default(), &json!({"type": "anything"})));
        assert!(accepts_messages(&QueueSpec::default()));
        assert!(!accepts_messages(&QueueSpec { event_types: Some(vec!["typing".into()]), ..QueueSpec::default() }));
    }

    #[test]
    fn capability_rules() {
        let plain = QueueSpec::default();
        let stream_typing = json!({"type": "typing", "op": "start", "stream_id": 3, "topic": "t"});
        let dm_typing = json!({"type": "typing", "op": "start", "recipients": []});
        assert!(!accepts_event(&plain, &stream_typing));
        assert!(accepts_event(&plain, &dm_typing));
        let capable = QueueSpec { stream_typing_notifications: true, ..QueueSpec::default() };
        assert!(accepts_event(&capable, &stream_typing));

        let settings = QueueSpec { user_settings_object: true, ..QueueSpec::default() };
        assert!(!accepts_event(&settings, &json!({"type": "update_display_settings"})));
        assert!(!accepts_event(&settings, &json!({"type": "update_global_notifications"})));
        assert!(accepts_event(&settings, &json!({"type": "user_settings"})));
        assert!(accepts_event(&plain, &json!({"type": "update_display_settings"})));

        let groups = QueueSpec { include_deactivated_groups: true, ..QueueSpec::default() };
        let remove = json!({"type": "user_group", "op": "remove", "group_id": 1});
        let deactivate = json!({"type": "user_group", "op": "update", "group_id": 1, "data": {"deactivated": true}});
        let rename = json!({"type": "user_group", "op": "update", "group_id": 1, "data": {"name": "x"}});
        assert!(accepts_event(&plain, &remove) && !accepts_event(&groups, &remove));
        assert!(!accepts_event(&plain, &deactivate) && accepts_event(&groups, &deactivate));
        assert!(accepts_event(&plain, &rename) && accepts_event(&groups, &rename));
    }
}
