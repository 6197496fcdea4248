//! The event server's internal endpoints (Zulip's Tornado internals):
//!
//! - `POST /api/internal/notify_tornado` (`data` = `{"event", "users"}` in
//!   Zulip's notice format, `secret`): delivers a notice as if it came from
//!   the backend;
//! - `POST /api/internal/web_reload_clients` (`client_count`, `immediate`,
//!   `secret`): tells up to `client_count` queues restored at start to
//!   reload (`{"type":"web_reload_client","immediate":..}`) and answers
//!   `{"sent_events": n, "complete": bool}`.
//!
//! - `POST /api/internal/squall/allocate_queue` (`spec` = a `QueueSpec` in
//!   JSON, `secret`): creates a queue for a user of this node and answers
//!   `{"queue_id"}`; and `POST /api/internal/squall/peek_events`
//!   (`user_id`, `queue_id`, `secret`): `{"events"}` currently in the
//!   queue. A cluster's backends call these for `POST /register` (what
//!   Zulip's Django does over HTTP to its Tornado shards). Either is served
//!   by the process owning the queue: another process's request is handed
//!   over with its connection ([`owner_elsewhere`]).
//!
//! Only peers with the shared secret get in (else 403 `Access denied`),
//! and, unless the node is part of a cluster, only from loopback.

use crate::bus::LocalBus;
use crate::ctx::CoreCtx;
use crate::state::Item;
use futures_channel::oneshot;
use serde_json::{json, Map, Value};
use squall_proto::api::{ApiRequest, ApiResponse, Params};
use squall_proto::bus::{BusError, EventBus};
use squall_proto::envelope::{
    Destination, MessageNotice, MessageRecipient, Notice, NotifySets, Participant, PerUserData, WideMessage,
};
use squall_proto::error::ApiError;
use squall_proto::flags;
use squall_proto::ids::QueueId;
use squall_proto::queue_spec::QueueSpec;
use squall_shard_router::split::split_for_node;
use std::rc::Rc;
use std::sync::Arc;

fn error(e: ApiError) -> ApiResponse {
    e.into()
}

fn access_denied() -> ApiResponse {
    error(ApiError::new(403, "ACCESS_DENIED", "Access denied"))
}

fn busy() -> ApiResponse {
    error(ApiError::busy("Server is busy; try again"))
}

fn ok(fields: Value) -> ApiResponse {
    let mut m = match fields {
        Value::Object(m) => m,
        _ => Map::new(),
    };
    m.insert("result".into(), "success".into());
    m.insert("msg".into(), "".into());
    ApiResponse::json(200, Value::Object(m).to_string())
}

/// Serves `/api/internal/...`.
pub async fn handle(req: &ApiRequest, ctx: &Rc<CoreCtx>) -> ApiResponse {
    if !ctx.internal_remote && !req.peer.is_some_and(|p| p.is_loopback()) {
        return access_denied();
    }
    let mut p = match Params::from_request(req) {
        Ok(p) => p,
        Err(e) => return error(e),
    };
    let secret = match p.req_str("secret") {
        Ok(s) => s,
        Err(e) => return error(e),
    };
    if secret != *ctx.shared_secret {
        return access_denied();
    }
    match req.path.trim_end_matches('/') {
        "/api/internal/notify_tornado" => {
            let data = match p.req_str("data") {
                Ok(d) => d,
                Err(e) => return error(e),
            };
            let notice =
                match serde_json::from_str::<Value>(&data).map_err(|e| e.to_string()).and_then(notice_from_zulip) {
                    Ok(n) => n,
                    Err(e) => return error(ApiError::bad_request(format!("Invalid notice: {e}"))),
                };
            let mut failed = None;
            for (core, part) in split_for_node(&notice, ctx.topo, ctx.shard.node) {
                if core == ctx.shard.core {
                    ctx.state.borrow_mut().deliver(part);
                } else if let Err(e) = ctx.cores.deliver(core, part).await {
                    // The other parts still go out; the caller hears of it.
                    failed.get_or_insert(e);
                }
            }
            match failed {
                Some(e) => {
                    tracing::warn!(error = %e, "notify_tornado: part of a notice was not delivered");
                    busy()
                }
                None => ok(json!({})),
            }
        }
        "/api/internal/web_reload_clients" => {
            let count = match p.int("client_count") {
                Ok(c) => c,
                Err(e) => return error(e),
            };
            let immediate = match p.bool("immediate") {
                Ok(i) => i.unwrap_or(false),
                Err(e) => return error(e),
            };
            let wanted = count.map(|c| c.max(0) as usize).unwrap_or(usize::MAX);
            let mut sent = 0usize;
            // Restored queues of this process (each process tells its own).
            for core in ctx.cores.local() {
                if sent >= wanted {
                    break;
                }
                let max = wanted - sent;
                sent += if core == ctx.shard.core {
                    ctx.state.borrow_mut().send_reload(max, immediate)
                } else {
                    let (reply, rx) = oneshot::channel();
                    let Some(inbox) = ctx.cores.inbox(core) else { continue };
                    if inbox.push(Item::Reload { max, immediate, reply }).is_err() {
                        return busy();
                    }
                    rx.await.unwrap_or(0)
                };
            }
            let complete = count.is_none() || sent < wanted;
            ok(json!({"sent_events": sent, "complete": complete}))
        }
        "/api/internal/squall/allocate_queue" => {
            let spec = match p.req_str("spec").and_then(|s| {
                serde_json::from_str::<QueueSpec>(&s).map_err(|e| ApiError::bad_request(format!("Invalid spec: {e}")))
            }) {
                Ok(s) => s,
                Err(e) => return error(e),
            };
            let owner = ctx.topo.shard_of(spec.user_id);
            if owner.node != ctx.shard.node {
                return error(ApiError::bad_request(format!(
                    "User {} belongs to gateway node {}, not {}",
                    spec.user_id, owner.node, ctx.shard.node
                )));
            }
            match bus(ctx).allocate_queue(spec).await {
                Ok(queue_id) => ok(json!({"queue_id": queue_id})),
                Err(e) => bus_error(e),
            }
        }
        "/api/internal/squall/peek_events" => {
            let (user_id, queue_id) = match (p.int("user_id"), p.req_str("queue_id")) {
                (Ok(Some(u)), Ok(q)) => (u, q),
                (Ok(None), _) => return error(ApiError::missing("user_id")),
                (Err(e), _) | (_, Err(e)) => return error(e),
            };
            match bus(ctx).peek_events(user_id, queue_id).await {
                Ok(events) => ok(json!({"events": events})),
                Err(e) => bus_error(e),
            }
        }
        _ => error(ApiError::not_found()),
    }
}

/// For the queue endpoints of a cluster: the core that must serve `req`
/// when it belongs to another process of this node (the connection is
/// then handed over, request and all). Malformed requests stay (this
/// process answers the error).
pub fn owner_elsewhere(req: &ApiRequest, ctx: &CoreCtx) -> Option<u16> {
    let path = req.path.trim_end_matches('/');
    let mut p = Params::from_request(req).ok()?;
    let core = match path {
        "/api/internal/squall/allocate_queue" => {
            let spec: QueueSpec = serde_json::from_str(&p.str("spec")?).ok()?;
            let owner = ctx.topo.shard_of(spec.user_id);
            (owner.node == ctx.shard.node).then_some(owner.core)?
        }
        "/api/internal/squall/peek_events" => {
            let id = QueueId::parse(&p.str("queue_id")?)?;
            (id.shard.node == ctx.shard.node && id.shard.core < ctx.topo.cores).then_some(id.shard.core)?
        }
        _ => return None,
    };
    ctx.cores.inbox(core).is_none().then_some(core)
}

/// The node's own bus, for the queue endpoints.
fn bus(ctx: &CoreCtx) -> LocalBus {
    LocalBus::new(ctx.cores.clone(), ctx.shard.node, ctx.topo)
}

fn bus_error(e: BusError) -> ApiResponse {
    match e {
        BusError::BadQueue(q) => error(crate::state::bad_queue(&q)),
        BusError::Unavailable(why) => {
            tracing::warn!(error = %why, "queue endpoint: the owning core is unavailable");
            busy()
        }
    }
}

fn ids(v: &Value) -> Vec<i64> {
    v.as_array()
        .map(|a| a.iter().filter_map(|u| u.as_i64().or_else(|| u.get("id")?.as_i64())).collect())
        .unwrap_or_default()
}

/// Old names of the notification id sets, and their current names.
const LEGACY_SET_NAMES: [(&str, &str); 4] = [
    ("pm_mention_push_disabled_user_ids", "dm_mention_push_disabled_user_ids"),
    ("pm_mention_email_disabled_user_ids", "dm_mention_email_disabled_user_ids"),
    ("wildcard_mention_user_ids", "stream_wildcard_mention_user_ids"),
    ("push_notify_user_ids", "online_push_user_ids"),
];

/// Per-user booleans of the oldest notice format, and the set each feeds.
const LEGACY_USER_FLAGS: [(&str, &str); 6] = [
    ("always_push_notify", "online_push_user_ids"),
    ("online_push_enabled", "online_push_user_ids"),
    ("stream_push_notify", "stream_push_user_ids"),
    ("stream_email_notify", "stream_email_user_ids"),
    ("wildcard_mention_notify", "stream_wildcard_mention_user_ids"),
    ("sender_is_muted", "muted_sender_user_ids"),
];

/// Brings an old-format message notice to the id-set format (Zulip keeps
/// accepting both).
fn upgrade_legacy(event: &mut Map<String, Value>, users: &Value) {
    for (old, new) in LEGACY_SET_NAMES {
        if let Some(v) = event.remove(old) {
            event.entry(new).or_insert(v);
        }
    }
    let Some(list) = users.as_array() else { return };
    for (flag, set) in LEGACY_USER_FLAGS {
        let ids: Vec<Value> = list
            .iter()
            .filter(|u| u.get(flag).and_then(Value::as_bool).unwrap_or(false))
            .filter_map(|u| u.get("id").cloned())
            .collect();
        if ids.is_empty() {
            continue;
        }
        if let Some(Value::Array(existing)) = event.get_mut(set) {
            for id in ids {
                if !existing.contains(&id) {
                    existing.push(id);
                }
            }
        } else {
            event.insert(set.to_owned(), Value::Array(ids));
        }
    }
}

/// Converts a notice in Zulip's format into Squall's.
pub fn notice_from_zulip(v: Value) -> Result<Notice, String> {
    let mut event = v.get("event").and_then(Value::as_object).ok_or("missing 'event' object")?.clone();
    let users = v.get("users").ok_or("missing 'users'")?;
    upgrade_legacy(&mut event, users);
    let ty = event.get("type").and_then(Value::as_str).ok_or("event has no type")?;
    match ty {
        "message" => message_notice(&event, users),
        "update_message" => {
            let list = users.as_array().ok_or("users is not a list")?;
            let users = list
                .iter()
                .map(|u| {
                    let data = u.as_object().cloned().ok_or("update_message users must be objects")?;
                    let id = data.get("id").and_then(Value::as_i64).ok_or("user without id")?;
                    Ok(PerUserData { id, data })
                })
                .collect::<Result<Vec<_>, &str>>()?;
            Ok(Notice::PerUser { event: Arc::new(Value::Object(event)), users })
        }
        _ => Ok(Notice::Generic { event: Arc::new(Value::Object(event)), users: ids(users) }),
    }
}

fn message_notice(event: &Map<String, Value>, users: &Value) -> Result<Notice, String> {
    let m = event.get("message_dict").and_then(Value::as_object).ok_or("message notice without message_dict")?;
    let s = |k: &str| m.get(k).and_then(Value::as_str).unwrap_or("").to_owned();
    let i = |k: &str| m.get(k).and_then(Value::as_i64).unwrap_or(0);
    let destination = match m.get("display_recipient") {
        Some(Value::String(name)) => Destination::Stream { stream_id: i("stream_id"), name: name.clone() },
        Some(Value::Array(people)) => Destination::Private {
            participants: people
                .iter()
                .map(|p| Participant {
                    id: p.get("id").and_then(Value::as_i64).unwrap_or(0),
                    email: p.get("email").and_then(Value::as_str).unwrap_or("").to_owned(),
                    full_name: p.get("full_name").and_then(Value::as_str).unwrap_or("").to_owned(),
                    is_mirror_dummy: p.get("is_mirror_dummy").and_then(Value::as_bool).unwrap_or(false),
                })
                .collect(),
        },
        _ => return Err("message_dict has no display_recipient".into()),
    };
    let content = s("content");
    let rendered =
        m.get("rendered_content").and_then(Value::as_str).map(str::to_owned).unwrap_or_else(|| content.clone());
    let message = WideMessage {
        id: i("id"),
        sender_id: i("sender_id"),
        sender_email: s("sender_email"),
        sender_full_name: s("sender_full_name"),
        sender_realm_str: s("sender_realm_str"),
        recipient_id: i("recipient_id"),
        timestamp: i("timestamp"),
        client: s("client"),
        subject: m.get("subject").or_else(|| m.get("topic")).and_then(Value::as_str).unwrap_or("").to_owned(),
        content,
        rendered_content: rendered,
        is_me_message: m.get("is_me_message").and_then(Value::as_bool).unwrap_or(false),
        avatar_url: s("avatar_url"),
        avatar_is_gravatar: false,
        destination,
        last_edit_timestamp: None,
        edit_history: None,
    };
    let recipients = users
        .as_array()
        .ok_or("users is not a list")?
        .iter()
        .map(|u| {
            let id = u.get("id").and_then(Value::as_i64).ok_or("user without id")?;
            let bits = u
                .get("flags")
                .and_then(Value::as_array)
                .map(|f| f.iter().filter_map(Value::as_str).filter_map(flags::bit_of).fold(0, |a, b| a | b))
                .unwrap_or(0);
            let group = u.get("mentioned_user_group_id").and_then(Value::as_i64);
            Ok(MessageRecipient { id, flags: bits, mentioned_user_group_id: group })
        })
        .collect::<Result<Vec<_>, &str>>()?;
    let invite_only = event.get("invite_only").and_then(Value::as_bool).unwrap_or(false);
    Ok(Notice::Message(Box::new(MessageNotice {
        message: Arc::new(message),
        users: recipients,
        sender_queue_id: event.get("sender_queue_id").and_then(Value::as_str).map(str::to_owned),
        local_id: event.get("local_id").and_then(Value::as_str).map(str::to_owned),
        realm_id: event.get("realm_id").and_then(Value::as_i64).unwrap_or(0),
        public_stream: event.get("stream_name").is_some() && !invite_only,
        invite_only,
        notify: serde_json::from_value::<NotifySets>(Value::Object(event.clone())).unwrap_or_default(),
    })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zulip_notices_convert() {
        let generic =
            notice_from_zulip(json!({"event": {"type": "test", "data": "test data"}, "users": [3, 4]})).unwrap();
        let Notice::Generic { users, event } = generic else { panic!("kind") };
        assert_eq!(users, vec![3, 4]);
        assert_eq!(event["data"], "test data");

        let msg = notice_from_zulip(json!({
            "event": {"type": "message", "message_dict": {"id": 9, "sender_id": 3, "sender_email": "a@b.c",
                "display_recipient": "Denmark", "stream_id": 2, "subject": "t", "content": "**x**", "client": "test"},
                "realm_id": 1, "stream_name": "Denmark", "online_push_user_ids": [4], "local_id": "1.1", "sender_queue_id": "q"},
            "users": [{"id": 4, "flags": ["mentioned", "wildcard_mentioned"], "mentioned_user_group_id": null}]
        }))
        .unwrap();
        let Notice::Message(m) = msg else { panic!("kind") };
        assert_eq!(m.users, vec![MessageRecipient { id: 4, flags: flags::MENTIONED, mentioned_user_group_id: None }]);
        assert!(m.public_stream && !m.invite_only);
        assert_eq!(m.notify.online_push_user_ids, vec![4]);
        assert_eq!(m.message.rendered_content, "**x**");
        assert_eq!(m.local_id.as_deref(), Some("1.1"));

        // The legacy format: old set names and per-user booleans.
        let legacy = notice_from_zulip(json!({
            "event": {"type": "message", "message_dict": {"id": 9, "sender_id": 3, "display_recipient": "Denmark"},
                      "push_notify_user_ids": [5], "wildcard_mention_user_ids": [6]},
            "users": [{"id": 4, "flags": [], "stream_push_notify": true, "always_push_notify": true},
                      {"id": 5, "flags": [], "sender_is_muted": true}]
        }))
        .unwrap();
        let Notice::Message(m) = legacy else { panic!("kind") };
        assert_eq!(m.notify.online_push_user_ids, vec![5, 4]);
        assert_eq!(m.notify.stream_wildcard_mention_user_ids, vec![6]);
        assert_eq!(m.notify.stream_push_user_ids, vec![4]);
        assert_eq!(m.notify.muted_sender_user_ids, vec![5]);

        assert!(notice_from_zulip(json!({"event": {"type": "message"}, "users": []})).is_err());
        assert!(notice_from_zulip(json!({"users": []})).is_err());
        assert!(notice_from_zulip(json!({"event": {"type": "update_message"}, "users": [1]})).is_err());
    }
}
