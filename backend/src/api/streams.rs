//! `POST/GET /users/me/subscriptions`, `GET /streams`.

use crate::soft_deactivation;
use crate::streams::{self, check_stream_description, check_stream_name, Stream};
use crate::users::{self, User};
use crate::App;
use serde_json::{json, Map, Value};
use squall_proto::api::Params;
use squall_proto::envelope::{Envelope, Notice};
use squall_proto::error::{ApiError, ApiResult};
use std::collections::BTreeMap;
use std::sync::Arc;

/// Reads `principals`: a JSON list of emails or of user ids (not mixed).
async fn principals(app: &App, actor: &User, p: &mut Params) -> Result<Vec<User>, ApiError> {
    let Some(v) = p.json("principals")? else { return Ok(vec![actor.clone()]) };
    let Value::Array(items) = v else { return Err(ApiError::bad_request("principals is not a list")) };
    let client = app.pool.get().await?;
    let (mut ids, mut emails) = (Vec::new(), Vec::new());
    for item in items {
        match item {
            Value::Number(n) => ids.push(n.as_i64().ok_or_else(|| ApiError::bad_request("principals is not valid"))?),
            Value::String(s) => emails.push(s),
            _ => return Err(ApiError::bad_request("principals is not valid")),
        }
    }
    if !ids.is_empty() && !emails.is_empty() {
        return Err(ApiError::bad_request("Recipient lists may contain emails or user IDs, but not both."));
    }
    let found = if ids.is_empty() {
        let found = users::users_by_emails(&client, actor.realm_id, &emails).await?;
        if let Some(missing) =
            emails.iter().find(|e| !found.iter().any(|u| u.delivery_email.eq_ignore_ascii_case(e.trim())))
        {
            return Err(ApiError::bad_request(format!("No such user: {missing}")));
        }
        found
    } else {
        let found = users::users_by_ids(&client, actor.realm_id, &ids).await?;
        if let Some(missing) = ids.iter().find(|i| !found.iter().any(|u| u.id == **i)) {
            return Err(ApiError::bad_request(format!("No such user: {missing}")));
        }
        found
    };
    if let Some(inactive) = found.iter().find(|u| !u.is_active) {
        return Err(ApiError::bad_request(format!(
            "User not authorized to execute queries on behalf of '{}'",
            inactive.email
        )));
    }
    Ok(found)
}

/// One stream's subscription change within a request.
struct Change {
    stream: Stream,
    /// Users newly subscribed.
    new: Vec<i64>,
    /// Their subscription colours, in the same order.
    colors: Vec<String>,
    /// Subscribers before the change.
    before: Vec<i64>,
    /// Who gets the peer event.
    audience: Vec<i64>,
}

/// `POST /users/me/subscriptions`: subscribe (creating streams as needed).
pub async fn subscribe(app: &App, actor: &User, p: &mut Params) -> ApiResult {
    let Some(subs) = p.json("subscriptions")? else { return Err(ApiError::missing("subscriptions")) };
    let Value::Array(subs) = subs else { return Err(ApiError::bad_request("subscriptions is not a list")) };
    let invite_only = p.bool("invite_only")?.unwrap_or(false);
    let post_policy = match p.int("stream_post_policy")? {
        None => streams::post_policy::EVERYONE,
        Some(v @ 1..=4) => v as i16,
        Some(_) => return Err(ApiError::bad_request("Invalid stream_post_policy")),
    };
    let fatal = p.bool("authorization_errors_fatal")?.unwrap_or(true);
    let _announce = p.bool("announce")?;
    let mut wanted: Vec<(String, String)> = Vec::new();
    for (i, s) in subs.iter().enumerate() {
        let name = s
            .get("name")
            .and_then(Value::as_str)
            .ok_or_else(|| ApiError::bad_request(format!("subscriptions[{i}] is missing 'name'")))?;
        let description = s.get("description").and_then(Value::as_str).unwrap_or("").to_owned();
        check_stream_description(&description)?;
        wanted.push((check_stream_name(name)?, description));
    }
    let targets = principals(app, actor, p).await?;
    if targets.iter().any(|u| u.id != actor.id) && actor.is_guest() {
        return Err(ApiError::with_code("UNAUTHORIZED_PRINCIPAL", "Insufficient permission"));
    }

    let mut client = app.pool.get().await?;
    let tx = client.transaction().await?;
    let mut subscribed: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut already: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut unauthorized: Vec<String> = Vec::new();
    let mut created: Vec<Stream> = Vec::new();
    let mut changes: Vec<Change> = Vec::new();
    for (name, description) in &wanted {
        let stream = match streams::stream_by_name(&tx, actor.realm_id, name).await? {
            Some(s) => {
                if s.invite_only && !actor.is_realm_admin() && !streams::is_subscribed(&tx, actor.id, &s).await? {
                    unauthorized.push(s.name.clone());
                    continue;
                }
                if actor.is_guest() && !streams::is_subscribed(&tx, actor.id, &s).await? {
                    unauthorized.push(s.name.clone());
                    continue;
                }
                s
            }
            None => {
                if actor.is_guest() {
                    return Err(ApiError::bad_request("Insufficient permission"));
                }
                let mut s =
                    streams::create_stream(&tx, actor.realm_id, name, description, invite_only, Some(actor.id)).await?;
                if post_policy != streams::post_policy::EVERYONE {
                    tx.execute(
                        "UPDATE stream SET stream_post_policy = $1 WHERE id = $2",
                        &[&post_policy, &(s.id as i32)],
                    )
                    .await?;
                    s.stream_post_policy = post_policy;
                }
                created.push(s.clone());
                s
            }
        };
        let before = streams::active_subscriber_ids(&tx, stream.recipient_id).await?;
        let ids: Vec<i64> = targets.iter().map(|u| u.id).collect();
        let added = streams::add_subscriptions(&tx, &stream, &ids).await?;
        let new: Vec<i64> = added.iter().map(|(u, _)| *u).collect();
        for u in &targets {
            let key = u.id.to_string();
            let bucket = if new.contains(&u.id) { &mut subscribed } else { &mut already };
            bucket.entry(key).or_default().push(stream.name.clone());
        }
        let audience = streams::peer_audience(&tx, &stream, &before, &new).await?;
        let colors = added.into_iter().map(|(_, c)| c).collect();
        changes.push(Change { stream, new, colors, before, audience });
    }
    if fatal && !unauthorized.is_empty() {
        return Err(ApiError::bad_request(format!("Unable to access channel ({}).", unauthorized[0])));
    }
    let realm_users = users::active_user_ids(&tx, actor.realm_id).await?;
    tx.commit().await?;
    // Before the events go out: a send prompted by one must see the change.
    app.caches.invalidate();

    // Events after commit: new public streams to everyone, new private
    // streams to their subscribers; subscription/add to each new subscriber;
    // peer_add to the existing subscribers.
    let mut envelopes = Vec::new();
    let realm_id = actor.realm_id;
    let generic = |event: Value, users: Vec<i64>| Envelope {
        realm_id,
        notice: Notice::Generic { event: Arc::new(event), users },
    };
    for s in &created {
        let users = if s.is_public() {
            realm_users.clone()
        } else {
            changes.iter().find(|c| c.stream.id == s.id).map(|c| c.new.clone()).unwrap_or_default()
        };
        envelopes.push(generic(json!({"type": "stream", "op": "create", "streams": [s.api_dict()]}), users));
    }
    for Change { stream, new, colors, before, audience } in &changes {
        if new.is_empty() {
            continue;
        }
        let mut all: Vec<i64> = before.iter().chain(new.iter()).copied().collect();
        all.sort_unstable();
        all.dedup();
        for (&u, color) in new.iter().zip(colors) {
            let props = streams::SubscriptionProps { color: color.clone(), ..Default::default() };
            let dict = stream.subscription_dict(&props, Some(&all));
            envelopes.push(generic(json!({"type": "subscription", "op": "add", "subscriptions": [dict]}), vec![u]));
        }
        if !audience.is_empty() {
            envelopes.push(generic(
                json!({"type": "subscription", "op": "peer_add", "stream_ids": [stream.id], "user_ids": new}),
                audience.clone(),
            ));
        }
    }
    for env in envelopes {
        if let Err(e) = app.bus.publish(env).await {
            tracing::warn!(error = %e, "subscription event not delivered");
        }
    }

    let mut m = Map::new();
    m.insert("subscribed".into(), json!(subscribed));
    m.insert("already_subscribed".into(), json!(already));
    if !fatal {
        m.insert("unauthorized".into(), json!(unauthorized));
    }
    Ok(m)
}

/// `GET /users/me/subscriptions`.
pub async fn list_subscriptions(app: &App, actor: &User, p: &mut Params) -> ApiResult {
    let include_subscribers = p.bool("include_subscribers")?.unwrap_or(false);
    let client = app.pool.get().await?;
    let list = streams::subscription_dicts(&client, actor.id, include_subscribers).await?;
    let mut m = Map::new();
    m.insert("subscriptions".into(), list.into());
    Ok(m)
}

/// One change of `POST /users/me/subscriptions/properties`, checked.
struct PropertyChange {
    stream: Stream,
    property: &'static str,
    value: Value,
}

/// Checks one `{stream_id, property, value}` as Zulip does (the channel
/// must be accessible and subscribed; the value of the property's type).
async fn check_property_change(
    db: &impl deadpool_postgres::GenericClient,
    actor: &User,
    item: &Value,
) -> Result<PropertyChange, ApiError> {
    let field =
        |k: &str| item.get(k).ok_or_else(|| ApiError::bad_request(format!("subscription_data[{k}] is missing")));
    let stream_id = field("stream_id")?
        .as_i64()
        .ok_or_else(|| ApiError::bad_request("subscription_data[stream_id] is not an integer"))?;
    let property = field("property")?
        .as_str()
        .ok_or_else(|| ApiError::bad_request("subscription_data[property] is not a string"))?;
    let value = field("value")?;
    let stream = match streams::stream_by_id(db, actor.realm_id, stream_id).await? {
        Some(s) if s.is_public() && !actor.is_guest() => s,
        Some(s) if streams::is_subscribed(db, actor.id, &s).await? => s,
        _ => return Err(ApiError::bad_request("Invalid channel ID")),
    };
    if !streams::is_subscribed(db, actor.id, &stream).await? {
        return Err(ApiError::bad_request(format!("Not subscribed to channel ID {stream_id}")));
    }
    let known = ["color", "is_muted", "in_home_view", "pin_to_top"]
        .into_iter()
        .chain(streams::NOTIFICATION_PROPERTIES)
        .find(|p| *p == property)
        .ok_or_else(|| ApiError::bad_request(format!("Unknown subscription property: {property}")))?;
    let value = if known == "color" {
        let color = value.as_str().filter(|c| is_hex_color(c));
        Value::from(color.ok_or_else(|| ApiError::bad_request("color is not a valid hex color code"))?)
    } else {
        Value::from(value.as_bool().ok_or_else(|| ApiError::bad_request(format!("{known} is not a boolean")))?)
    };
    Ok(PropertyChange { stream, property: known, value })
}

/// `#rgb` or `#rrggbb` (Zulip's `check_color`).
fn is_hex_color(c: &str) -> bool {
    c.strip_prefix('#').is_some_and(|h| (h.len() == 3 || h.len() == 6) && h.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// `POST /users/me/subscriptions/properties`: `subscription_data`, a list
/// of `{stream_id, property, value}`; all are checked before any is
/// applied. Each change is told to the user's clients as a `subscription`
/// `update` event; muting is told both as `is_muted` and as the legacy
/// `in_home_view` (its opposite).
pub async fn update_properties(app: &App, actor: &User, p: &mut Params) -> ApiResult {
    let data = p.json("subscription_data")?.ok_or_else(|| ApiError::missing("subscription_data"))?;
    let Value::Array(items) = data else {
        return Err(ApiError::bad_request("subscription_data is not a list"));
    };
    apply_property_changes(app, actor, &items).await
}

/// `POST /users/me/subscriptions/{stream_id}`: one `property` and `value`.
pub async fn update_property(app: &App, actor: &User, stream_id: i64, p: &mut Params) -> ApiResult {
    let property = p.req_str("property")?;
    let raw = p.req_str("value")?;
    // The value is JSON (a boolean) or a plain string (a colour).
    let value = serde_json::from_str::<Value>(&raw).ok().filter(Value::is_boolean).unwrap_or(Value::String(raw));
    apply_property_changes(app, actor, &[json!({"stream_id": stream_id, "property": property, "value": value})]).await
}

async fn apply_property_changes(app: &App, actor: &User, items: &[Value]) -> ApiResult {
    let mut client = app.pool.get().await?;
    let mut changes = Vec::with_capacity(items.len());
    for item in items {
        changes.push(check_property_change(&client, actor, item).await?);
    }
    let tx = client.transaction().await?;
    let mut events = Vec::new();
    for c in &changes {
        let (column, stored) = match c.property {
            "in_home_view" => ("is_muted", Value::Bool(!c.value.as_bool().unwrap_or(true))),
            other => (other, c.value.clone()),
        };
        // `column` is one of the known property names, never client text.
        let sql = format!("UPDATE subscription SET {column} = $3 WHERE user_profile_id = $1 AND recipient_id = $2");
        let (uid, rid) = (actor.id as i32, c.stream.recipient_id as i32);
        match &stored {
            Value::Bool(b) => tx.execute(&sql, &[&uid, &rid, b]).await?,
            other => tx.execute(&sql, &[&uid, &rid, &other.as_str().unwrap_or_default()]).await?,
        };
        let event = |property: &str, value: Value| json!({"type": "subscription", "op": "update", "stream_id": c.stream.id, "property": property, "value": value});
        match c.property {
            "is_muted" | "in_home_view" => {
                let muted = stored.as_bool().unwrap_or(false);
                events.push(event("is_muted", muted.into()));
                events.push(event("in_home_view", (!muted).into()));
            }
            property => events.push(event(property, c.value.clone())),
        }
    }
    tx.commit().await?;
    app.caches.invalidate(); // before the events go out, as in subscribe
    for event in events {
        app.tell(actor.realm_id, event, vec![actor.id], "subscription update").await;
    }
    Ok(Map::new())
}

/// `GET /users/me/{stream_id}/topics`: the channel's topics, most recent
/// first, each with the id of its latest message (Zulip's
/// `get_topics_backend`). The name is the latest message's spelling. A
/// channel whose history is not public to subscribers shows only topics
/// of messages the user received.
pub async fn topics(app: &App, actor: &User, stream_id: i64) -> ApiResult {
    let client = app.pool.get().await?;
    let stream = match streams::stream_by_id(&client, actor.realm_id, stream_id).await? {
        Some(s) if s.is_public() && !actor.is_guest() => s,
        Some(s) if streams::is_subscribed(&client, actor.id, &s).await? => s,
        _ => return Err(ApiError::bad_request("Invalid channel ID")),
    };
    let rows = if stream.history_public_to_subscribers {
        client
            .query(
                "SELECT m.subject, t.max_id FROM \
                 (SELECT max(id) AS max_id FROM message WHERE recipient_id = $1 GROUP BY lower(subject)) t \
                 JOIN message m ON m.id = t.max_id ORDER BY t.max_id DESC",
                &[&(stream.recipient_id as i32)],
            )
            .await?
    } else {
        client
            .query(
                "SELECT m.subject, t.max_id FROM \
                 (SELECT max(m.id) AS max_id FROM message m \
                  JOIN usermessage um ON um.message_id = m.id AND um.user_profile_id = $2 \
                  WHERE m.recipient_id = $1 GROUP BY lower(m.subject)) t \
                 JOIN message m ON m.id = t.max_id ORDER BY t.max_id DESC",
                &[&(stream.recipient_id as i32), &(actor.id as i32)],
            )
            .await?
    };
    let topics: Vec<Value> =
        rows.iter().map(|r| json!({"name": r.get::<_, String>(0), "max_id": r.get::<_, i64>(1)})).collect();
    let mut m = Map::new();
    m.insert("topics".into(), topics.into());
    Ok(m)
}

/// `GET /streams`: public streams plus private ones the user is in.
pub async fn list_streams(app: &App, actor: &User, p: &mut Params) -> ApiResult {
    let include_public = p.bool("include_public")?.unwrap_or(true);
    let include_subscribed = p.bool("include_subscribed")?.unwrap_or(true);
    let include_all_active = p.bool("include_all_active")?.unwrap_or(false);
    if include_all_active && !actor.is_realm_admin() {
        return Err(ApiError::bad_request("User not authorized for this query"));
    }
    let client = app.pool.get().await?;
    let sql = format!(
        "SELECT {}, EXISTS (SELECT 1 FROM subscription sub WHERE sub.recipient_id = s.recipient_id
                             AND sub.user_profile_id = $2 AND sub.active)
         FROM stream s WHERE s.realm_id = $1 AND NOT s.deactivated ORDER BY lower(s.name)",
        streams::STREAM_COLUMNS
    );
    let rows = client.query(&sql, &[&(actor.realm_id as i32), &(actor.id as i32)]).await?;
    let list: Vec<Value> = rows
        .iter()
        .filter_map(|r| {
            let s = Stream::from_row(r);
            let subscribed: bool = r.get(streams::STREAM_COLUMN_COUNT);
            let visible = include_all_active
                || (include_subscribed && subscribed)
                || (include_public && s.is_public() && !actor.is_guest());
            visible.then(|| s.api_dict())
        })
        .collect();
    let mut m = Map::new();
    m.insert("streams".into(), list.into());
    Ok(m)
}

/// `DELETE /users/me/subscriptions`: unsubscribe the user (or, for
/// administrators, `principals`) from streams by name.
pub async fn unsubscribe(app: &App, actor: &User, p: &mut Params) -> ApiResult {
    let names = p.str_list("subscriptions")?.ok_or_else(|| ApiError::missing("subscriptions"))?;
    let targets = principals(app, actor, p).await?;
    if targets.iter().any(|u| u.id != actor.id) && !actor.is_realm_admin() {
        return Err(ApiError::with_code("UNAUTHORIZED_PRINCIPAL", "Insufficient permission"));
    }
    let mut client = app.pool.get().await?;
    let tx = client.transaction().await?;
    let (mut removed, mut not_removed) = (Vec::new(), Vec::new());
    let mut changes: Vec<(Stream, Vec<i64>)> = Vec::new();
    for raw in &names {
        let name = raw.trim();
        let stream = streams::stream_by_name(&tx, actor.realm_id, name).await?;
        // A private stream the actor cannot see does not exist for them.
        let visible = match &stream {
            Some(s) if s.is_public() && !actor.is_guest() => true,
            Some(s) => actor.is_realm_admin() || streams::is_subscribed(&tx, actor.id, s).await?,
            None => false,
        };
        let Some(stream) = stream.filter(|_| visible) else {
            return Err(ApiError::with_code("STREAM_DOES_NOT_EXIST", format!("Channel '{name}' does not exist"))
                .field("stream", name));
        };
        let ids: Vec<i32> = targets.iter().map(|u| u.id as i32).collect();
        let gone: Vec<i64> = tx
            .query(
                "UPDATE subscription SET active = false
                 WHERE recipient_id = $1 AND user_profile_id = ANY($2) AND active RETURNING user_profile_id",
                &[&(stream.recipient_id as i32), &ids],
            )
            .await?
            .iter()
            .map(|r| r.get::<_, i32>(0) as i64)
            .collect();
        soft_deactivation::log_subscription_changes(
            &tx,
            stream.realm_id,
            stream.id,
            &gone,
            soft_deactivation::audit::SUBSCRIPTION_DEACTIVATED,
        )
        .await?;
        if gone.is_empty() {
            not_removed.push(stream.name.clone());
        } else {
            removed.push(stream.name.clone());
            changes.push((stream, gone));
        }
    }
    let mut remaining: Vec<Vec<i64>> = Vec::new();
    for (stream, gone) in &changes {
        let others = streams::active_subscriber_ids(&tx, stream.recipient_id).await?;
        remaining.push(streams::peer_audience(&tx, stream, &others, gone).await?);
    }
    tx.commit().await?;
    app.caches.invalidate(); // before the events go out, as in subscribe

    let realm_id = actor.realm_id;
    for ((stream, gone), others) in changes.iter().zip(remaining) {
        let removal = json!({"type": "subscription", "op": "remove",
                             "subscriptions": [{"name": stream.name, "stream_id": stream.id}]});
        let mut envelopes =
            vec![Envelope { realm_id, notice: Notice::Generic { event: Arc::new(removal), users: gone.clone() } }];
        if !others.is_empty() {
            let peer =
                json!({"type": "subscription", "op": "peer_remove", "stream_ids": [stream.id], "user_ids": gone});
            envelopes.push(Envelope { realm_id, notice: Notice::Generic { event: Arc::new(peer), users: others } });
        }
        for env in envelopes {
            if let Err(e) = app.bus.publish(env).await {
                tracing::warn!(error = %e, "subscription event not delivered");
            }
        }
    }
    let mut m = Map::new();
    m.insert("removed".into(), json!(removed));
    m.insert("not_removed".into(), json!(not_removed));
    Ok(m)
}

/// `PATCH /streams/{stream_id}`: an administrator renames a channel
/// (`new_name`), changes its `description`, its privacy (`is_private`,
/// `history_public_to_subscribers`) or its `stream_post_policy`. All is
/// checked before anything is stored; each change is told as a `stream`
/// `update` event to everyone who can see the channel (before or after).
pub async fn update_stream(app: &App, actor: &User, stream_id: i64, p: &mut Params) -> ApiResult {
    let new_name = p.str("new_name").map(|n| check_stream_name(&n)).transpose()?;
    let description = p.str("description").map(|d| d.replace('\n', " ").trim().to_owned());
    if let Some(d) = &description {
        check_stream_description(d)?;
    }
    let is_private = p.bool("is_private")?;
    let history_public = p.bool("history_public_to_subscribers")?;
    let post_policy = match p.int("stream_post_policy")? {
        Some(n) if (1..=4).contains(&n) => Some(n as i16),
        Some(_) => return Err(ApiError::bad_request("Invalid stream_post_policy")),
        None => None,
    };
    let mut client = app.pool.get().await?;
    let stream = match streams::stream_by_id(&client, actor.realm_id, stream_id).await? {
        Some(s) if s.deactivated => return Err(ApiError::bad_request("Invalid channel ID")),
        Some(s) if s.is_public() || actor.is_realm_admin() || streams::is_subscribed(&client, actor.id, &s).await? => s,
        _ => return Err(ApiError::bad_request("Invalid channel ID")),
    };
    if !actor.is_realm_admin() {
        return Err(ApiError::with_code("UNAUTHORIZED_PRINCIPAL", "Must be an organization administrator"));
    }
    let tx = client.transaction().await?;
    if let Some(name) = &new_name {
        let taken = tx
            .query_opt(
                "SELECT 1 FROM stream WHERE realm_id = $1 AND lower(name) = lower($2) AND id <> $3",
                &[&(actor.realm_id as i32), name, &(stream.id as i32)],
            )
            .await?;
        if taken.is_some() {
            return Err(ApiError::bad_request(format!("Channel '{name}' already exists")));
        }
    }
    let subscribers = streams::active_subscriber_ids(&tx, stream.recipient_id).await?;
    let before = streams::peer_audience(&tx, &stream, &subscribers, &[]).await?;
    let sid = stream.id as i32;
    let mut events = Vec::new();
    let base = |property: &str, value: Value| json!({"type": "stream", "op": "update", "stream_id": stream.id, "name": stream.name, "property": property, "value": value});
    if let Some(name) = new_name.filter(|n| *n != stream.name) {
        tx.execute("UPDATE stream SET name = $2 WHERE id = $1", &[&sid, &name]).await?;
        events.push(base("name", name.into()));
    }
    if let Some(d) = description.filter(|d| *d != stream.description) {
        let rendered = crate::markdown::render_plain(&d);
        tx.execute(
            "UPDATE stream SET description = $2, rendered_description = $3 WHERE id = $1",
            &[&sid, &d, &rendered],
        )
        .await?;
        let mut e = base("description", d.into());
        e["rendered_description"] = rendered.into();
        events.push(e);
    }
    let invite_only = is_private.unwrap_or(stream.invite_only);
    // A public channel's history is always public to its subscribers.
    let history = if invite_only { history_public.unwrap_or(stream.history_public_to_subscribers) } else { true };
    if invite_only != stream.invite_only || history != stream.history_public_to_subscribers {
        tx.execute(
            "UPDATE stream SET invite_only = $2, history_public_to_subscribers = $3 WHERE id = $1",
            &[&sid, &invite_only, &history],
        )
        .await?;
        let mut e = base("invite_only", invite_only.into());
        e["history_public_to_subscribers"] = history.into();
        e["is_web_public"] = false.into();
        events.push(e);
    }
    if let Some(policy) = post_policy.filter(|p| *p != stream.stream_post_policy) {
        tx.execute("UPDATE stream SET stream_post_policy = $2 WHERE id = $1", &[&sid, &policy]).await?;
        events.push(base("stream_post_policy", policy.into()));
    }
    let after_stream = Stream { invite_only, ..stream.clone() };
    let after = streams::peer_audience(&tx, &after_stream, &subscribers, &[]).await?;
    tx.commit().await?;
    app.caches.invalidate(); // before the events go out, as in subscribe
    let mut audience: Vec<i64> = before.into_iter().chain(after).collect();
    audience.sort_unstable();
    audience.dedup();
    for event in events {
        app.tell(actor.realm_id, event, audience.clone(), "stream update").await;
    }
    Ok(Map::new())
}

/// `DELETE /streams/{id}`: archives a channel as Zulip 10 (feature level
/// 313) does. Administrators only. The channel becomes private, loses every
/// subscription (no per-user events, as Zulip), is renamed
/// `<hash>!DEACTIVATED:<name>` (freeing its name) and leaves the default
/// channels; its messages are marked read for everyone; whoever could see
/// it gets a `stream` `delete` event with its old name.
pub async fn archive_stream(app: &App, actor: &User, stream_id: i64) -> ApiResult {
    let mut client = app.pool.get().await?;
    let tx = client.transaction().await?;
    let stream = match streams::stream_by_id(&tx, actor.realm_id, stream_id).await? {
        Some(s) if s.is_public() || actor.is_realm_admin() || streams::is_subscribed(&tx, actor.id, &s).await? => s,
        _ => return Err(ApiError::bad_request("Invalid channel ID")),
    };
    if !actor.is_realm_admin() {
        return Err(ApiError::with_code("UNAUTHORIZED_PRINCIPAL", "Must be an organization administrator"));
    }
    let sid = stream.id as i32;
    let deactivated: bool =
        tx.query_one("SELECT deactivated FROM stream WHERE id = $1 FOR UPDATE", &[&sid]).await?.get(0);
    if deactivated {
        return Err(ApiError::bad_request("Channel is already deactivated"));
    }
    let subscribers = streams::active_subscriber_ids(&tx, stream.recipient_id).await?;
    let audience = streams::peer_audience(&tx, &stream, &subscribers, &[]).await?;
    let new_name: String = archived_name(stream.id, &stream.name);
    tx.execute("UPDATE stream SET deactivated = true, invite_only = true, name = $2 WHERE id = $1", &[&sid, &new_name])
        .await?;
    tx.execute("UPDATE subscription SET active = false WHERE recipient_id = $1", &[&(stream.recipient_id as i32)])
        .await?;
    tx.execute(
        "UPDATE usermessage SET flags = flags | 1 WHERE (flags & 1) = 0 AND message_id IN
           (SELECT id FROM message WHERE recipient_id = $1)",
        &[&(stream.recipient_id as i32)],
    )
    .await?;
    let was_default = tx.execute("DELETE FROM defaultstream WHERE stream_id = $1", &[&sid]).await? > 0;
    let realm_users = if was_default { users::active_user_ids(&tx, actor.realm_id).await? } else { Vec::new() };
    let defaults = if was_default {
        Some(crate::api::register_sections::default_streams(&tx, actor.realm_id).await?)
    } else {
        None
    };
    tx.commit().await?;
    app.caches.invalidate(); // before the events go out, as in subscribe
    app.tell(
        actor.realm_id,
        json!({"type": "stream", "op": "delete", "streams": [stream.api_dict()]}),
        audience,
        "stream",
    )
    .await;
    if let Some(defaults) = defaults {
        app.tell(
            actor.realm_id,
            json!({"type": "default_streams", "default_streams": defaults}),
            realm_users,
            "stream",
        )
        .await;
    }
    Ok(Map::new())
}

/// An archived channel's name: a short hash of its id, `!DEACTIVATED:` and
/// the old name, within the length limit.
fn archived_name(id: i64, name: &str) -> String {
    use md5::{Digest, Md5};
    let digest = Md5::digest(id.to_string().as_bytes());
    let hash: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("{}!DEACTIVATED:{name}", &hash[..7]).chars().take(streams::MAX_STREAM_NAME_LENGTH).collect()
}
