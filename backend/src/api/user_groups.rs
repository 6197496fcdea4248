//! User groups: `GET /user_groups`, `POST /user_groups/create`,
//! `PATCH /user_groups/{id}`, `POST /user_groups/{id}/members` and
//! `/subgroups` (with their `GET`s), `POST /user_groups/{id}/deactivate`,
//! and the `user_group` events each change sends to the whole realm.
//!
//! Squall's permissions: any member (not a guest) creates groups; a group's
//! creator and the realm's administrators manage it; system groups follow
//! roles and cannot be changed.

use crate::user_groups::{self, Group, SystemGroups, MAX_DESCRIPTION_LENGTH, MAX_NAME_LENGTH};
use crate::users::{self, User};
use crate::App;
use deadpool_postgres::GenericClient;
use serde_json::{json, Map, Value};
use squall_proto::api::Params;
use squall_proto::error::{ApiError, ApiResult};
use std::collections::BTreeSet;

/// A JSON list of integers parameter (`members`, `add`, ...).
fn int_list(p: &mut Params, name: &str) -> Result<Option<Vec<i64>>, ApiError> {
    let Some(v) = p.json(name)? else { return Ok(None) };
    let Value::Array(items) = v else { return Err(ApiError::bad_request(format!("{name} is not a list"))) };
    let mut out = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        out.push(item.as_i64().ok_or_else(|| ApiError::bad_request(format!("{name}[{i}] is not an integer")))?);
    }
    out.sort_unstable();
    out.dedup();
    Ok(Some(out))
}

/// A group-setting value: a group id (Squall takes the integer form), or
/// for `PATCH` `{"new": id, "old": id}` where `old`, if given, must be the
/// current value. Refuses what Zulip refuses for `can_mention_group`.
fn group_setting(p: &mut Params, name: &str, groups: &[Group], current: Option<i64>) -> Result<Option<i64>, ApiError> {
    let Some(v) = p.json(name)? else { return Ok(None) };
    let (new, old) = match &v {
        Value::Object(o) => (o.get("new").cloned().unwrap_or(Value::Null), o.get("old").cloned()),
        other => (other.clone(), None),
    };
    let id =
        new.as_i64().ok_or_else(|| ApiError::bad_request(format!("Invalid {name}: only a group id is supported")))?;
    if let (Some(old), Some(current)) = (old, current) {
        if old.as_i64() != Some(current) {
            return Err(ApiError::with_code("EXPECTATION_MISMATCH", "'old' value does not match the expected value."));
        }
    }
    let group = groups.iter().find(|g| g.id == id).ok_or_else(|| ApiError::bad_request("Invalid user group"))?;
    if group.deactivated {
        return Err(ApiError::bad_request("User group is deactivated."));
    }
    if group.is_system_group && ["role:internet", "role:owners"].contains(&group.name.as_str()) {
        return Err(ApiError::bad_request(format!("'{name}' setting cannot be set to '{}' group.", group.name)));
    }
    Ok(Some(id))
}

fn check_name(raw: &str, groups: &[Group], except: Option<i64>) -> Result<String, ApiError> {
    let name = raw.trim();
    if name.is_empty() {
        return Err(ApiError::bad_request("User group name can't be empty!"));
    }
    if name.chars().count() > MAX_NAME_LENGTH {
        return Err(ApiError::bad_request(format!("User group name cannot exceed {MAX_NAME_LENGTH} characters.")));
    }
    for prefix in ["@", "role:", "user:", "stream:", "channel:"] {
        if name.starts_with(prefix) {
            return Err(ApiError::bad_request(format!("User group name cannot start with '{prefix}'.")));
        }
    }
    if groups.iter().any(|g| Some(g.id) != except && g.name == name) {
        return Err(ApiError::bad_request(format!("User group '{name}' already exists.")));
    }
    Ok(name.to_owned())
}

fn check_description(raw: &str) -> Result<String, ApiError> {
    if raw.chars().count() > MAX_DESCRIPTION_LENGTH {
        return Err(ApiError::bad_request(format!(
            "User group description cannot exceed {MAX_DESCRIPTION_LENGTH} characters."
        )));
    }
    Ok(raw.to_owned())
}

/// Checks that `ids` are active users of the realm.
async fn check_users(db: &impl GenericClient, realm_id: i64, ids: &[i64]) -> Result<(), ApiError> {
    let found = users::users_by_ids(db, realm_id, ids).await?;
    if let Some(bad) = ids.iter().find(|&&i| !found.iter().any(|u| u.id == i && u.is_active)) {
        return Err(ApiError::bad_request(format!("Invalid user ID: {bad}")));
    }
    Ok(())
}

/// The realm's groups and system groups, with `id` among them, which
/// `user` may manage (or, `leaving`, only leaves: any member may); a
/// deactivated one only when `allow_deactivated` (to rename it).
async fn load_managed(
    db: &impl GenericClient,
    user: &User,
    id: i64,
    allow_deactivated: bool,
    leaving: bool,
) -> Result<(Vec<Group>, SystemGroups, Group), ApiError> {
    let (groups, group) = load(db, user, id).await?;
    if group.deactivated && !allow_deactivated {
        return Err(ApiError::bad_request("User group is deactivated."));
    }
    let manages = user.is_realm_admin() || group.creator_id == Some(user.id);
    if group.is_system_group || !(manages || leaving) {
        return Err(ApiError::bad_request("Insufficient permission"));
    }
    let system = SystemGroups::of(&groups);
    Ok((groups, system, group))
}

/// Tells a change's `events` to every active user of the realm.
async fn tell_realm(app: &App, user: &User, events: Vec<Value>) -> Result<(), ApiError> {
    if events.is_empty() {
        return Ok(());
    }
    let everyone = users::active_user_ids(&app.pool.get().await?, user.realm_id).await?;
    for event in events {
        app.tell(user.realm_id, event, everyone.clone(), "user_group").await;
    }
    Ok(())
}

/// Zulip's `require_member_or_admin`: user group endpoints are for human
/// members.
fn require_member(user: &User) -> Result<(), ApiError> {
    if user.is_bot {
        return Err(ApiError::bad_request("This endpoint does not accept bot requests."));
    }
    if user.is_guest() {
        return Err(ApiError::bad_request("Not allowed for guest users"));
    }
    Ok(())
}

/// `GET /user_groups`.
pub async fn list(app: &App, user: &User, p: &mut Params) -> ApiResult {
    require_member(user)?;
    let include_deactivated = p.bool("include_deactivated_groups")?.unwrap_or(false);
    let db = app.pool.get().await?;
    let groups = user_groups::realm_groups(&db, user.realm_id, include_deactivated).await?;
    let system = SystemGroups::of(&groups);
    let mut m = Map::new();
    m.insert("user_groups".into(), groups.iter().map(|g| g.api_dict(&system)).collect());
    Ok(m)
}

/// `POST /user_groups/create`.
pub async fn create(app: &App, user: &User, p: &mut Params) -> ApiResult {
    require_member(user)?;
    let raw_name = p.req_str("name")?;
    let description = check_description(&p.req_str("description")?)?;
    let members = int_list(p, "members")?.ok_or_else(|| ApiError::missing("members"))?;
    let subgroups = int_list(p, "subgroups")?.unwrap_or_default();
    let mut db = app.pool.get().await?;
    let tx = db.transaction().await?;
    // One creation at a time per realm, so two cannot take one name.
    tx.execute("SELECT pg_advisory_xact_lock(7, $1)", &[&(user.realm_id as i32)]).await?;
    let groups = user_groups::realm_groups(&tx, user.realm_id, true).await?;
    let name = check_name(&raw_name, &groups, None)?;
    let can_mention = group_setting(p, "can_mention_group", &groups, None)?;
    check_users(&tx, user.realm_id, &members).await?;
    if let Some(bad) = subgroups.iter().find(|&&s| !groups.iter().any(|g| g.id == s && !g.deactivated)) {
        return Err(ApiError::bad_request(format!("Invalid user group ID: {bad}")));
    }
    let id: i32 = tx
        .query_one(
            "INSERT INTO usergroup (realm_id, name, description, is_system_group, date_created, creator_id, can_mention_group_id)
             VALUES ($1, $2, $3, false, now(), $4, $5) RETURNING id",
            &[&(user.realm_id as i32), &name, &description, &(user.id as i32), &can_mention.map(|g| g as i32)],
        )
        .await?
        .get(0);
    let members32: Vec<i32> = members.iter().map(|&u| u as i32).collect();
    tx.execute(
        "INSERT INTO usergroupmembership (user_group_id, user_profile_id) SELECT $1, unnest($2::int[])",
        &[&id, &members32],
    )
    .await?;
    let subgroups32: Vec<i32> = subgroups.iter().map(|&g| g as i32).collect();
    tx.execute(
        "INSERT INTO groupgroupmembership (supergroup_id, subgroup_id) SELECT $1, unnest($2::int[])",
        &[&id, &subgroups32],
    )
    .await?;
    let all = user_groups::realm_groups(&tx, user.realm_id, true).await?;
    let system = SystemGroups::of(&all);
    let mut created =
        all.into_iter().find(|g| g.id == id as i64).ok_or_else(|| ApiError::internal("created group not found"))?;
    tx.commit().await?;
    // As Zulip: the group with its members, then its subgroups.
    created.direct_subgroup_ids.clear();
    let mut events = vec![json!({"type": "user_group", "op": "add", "group": created.api_dict(&system)})];
    if !subgroups.is_empty() {
        events.push(
            json!({"type": "user_group", "op": "add_subgroups", "group_id": id, "direct_subgroup_ids": subgroups}),
        );
    }
    tell_realm(app, user, events).await?;
    Ok(Map::new())
}

/// `PATCH /user_groups/{id}`: name, description, who may mention it.
pub async fn update(app: &App, user: &User, id: i64, p: &mut Params) -> ApiResult {
    let mut db = app.pool.get().await?;
    let tx = db.transaction().await?;
    tx.execute("SELECT pg_advisory_xact_lock(7, $1)", &[&(user.realm_id as i32)]).await?;
    let (groups, _, group) = load_managed(&tx, user, id, true, false).await?;
    let name = p.str("name").map(|n| check_name(&n, &groups, Some(id))).transpose()?;
    let description = p.str("description").map(|d| check_description(&d)).transpose()?;
    let can_mention = group_setting(p, "can_mention_group", &groups, Some(group.can_mention_group))?;
    if name.is_none() && description.is_none() && can_mention.is_none() {
        return Err(ApiError::bad_request("No new data supplied"));
    }
    let mut data = Map::new();
    if let Some(n) = name.filter(|n| *n != group.name) {
        data.insert("name".into(), n.into());
    }
    if let Some(d) = description.filter(|d| *d != group.description) {
        data.insert("description".into(), d.into());
    }
    if let Some(g) = can_mention.filter(|g| *g != group.can_mention_group) {
        data.insert("can_mention_group".into(), g.into());
    }
    tx.execute(
        "UPDATE usergroup SET name = coalesce($2, name), description = coalesce($3, description),
                              can_mention_group_id = coalesce($4, can_mention_group_id) WHERE id = $1",
        &[
            &(id as i32),
            &data.get("name").and_then(Value::as_str),
            &data.get("description").and_then(Value::as_str),
            &data.get("can_mention_group").and_then(Value::as_i64).map(|g| g as i32),
        ],
    )
    .await?;
    tx.commit().await?;
    // One event per changed property, as Zulip sends them.
    let events =
        data.into_iter().map(|(k, v)| json!({"type": "user_group", "op": "update", "group_id": id, "data": {k: v}}));
    tell_realm(app, user, events.collect()).await?;
    Ok(Map::new())
}

/// `POST /user_groups/{id}/deactivate`.
pub async fn deactivate(app: &App, user: &User, id: i64) -> ApiResult {
    let mut db = app.pool.get().await?;
    let tx = db.transaction().await?;
    tx.execute("SELECT pg_advisory_xact_lock(7, $1)", &[&(user.realm_id as i32)]).await?;
    let (groups, _, _) = load_managed(&tx, user, id, false, false).await?;
    // A group that other groups use (as a subgroup, or as who may mention
    // them) stays, with Zulip's list of objections.
    let mut objections = Vec::new();
    let supergroups: Vec<i64> =
        groups.iter().filter(|g| !g.deactivated && g.direct_subgroup_ids.contains(&id)).map(|g| g.id).collect();
    if !supergroups.is_empty() {
        objections.push(json!({"type": "subgroup", "supergroup_ids": supergroups}));
    }
    for g in groups.iter().filter(|g| !g.deactivated && g.id != id && g.can_mention_group == id) {
        objections.push(json!({"type": "user_group", "group_id": g.id, "settings": ["can_mention_group"]}));
    }
    if !objections.is_empty() {
        return Err(ApiError::with_code("CANNOT_DEACTIVATE_GROUP_IN_USE", "Cannot deactivate user group in use.")
            .field("objections", objections));
    }
    tx.execute("UPDATE usergroup SET deactivated = true WHERE id = $1", &[&(id as i32)]).await?;
    tx.commit().await?;
    // The gateway gives the update to clients that keep deactivated
    // groups and the removal to the others.
    let update = json!({"type": "user_group", "op": "update", "group_id": id, "data": {"deactivated": true}});
    tell_realm(app, user, vec![update, json!({"type": "user_group", "op": "remove", "group_id": id})]).await?;
    Ok(Map::new())
}

/// `POST /user_groups/{id}/members`: `add` and `delete` user ids (and
/// `add_subgroups` / `delete_subgroups`, as Zulip also takes them here).
pub async fn update_members(app: &App, user: &User, id: i64, p: &mut Params) -> ApiResult {
    let add = int_list(p, "add")?.unwrap_or_default();
    let delete = int_list(p, "delete")?.unwrap_or_default();
    let add_sub = int_list(p, "add_subgroups")?.unwrap_or_default();
    let delete_sub = int_list(p, "delete_subgroups")?.unwrap_or_default();
    if add.is_empty() && delete.is_empty() && add_sub.is_empty() && delete_sub.is_empty() {
        return Err(ApiError::bad_request(
            "Nothing to do. Specify at least one of \"add\", \"delete\", \"add_subgroups\" or \"delete_subgroups\".",
        ));
    }
    change_membership(app, user, id, Membership { add, delete, add_sub, delete_sub }).await
}

/// `POST /user_groups/{id}/subgroups`: `add` and `delete` group ids.
pub async fn update_subgroups(app: &App, user: &User, id: i64, p: &mut Params) -> ApiResult {
    let add_sub = int_list(p, "add")?.unwrap_or_default();
    let delete_sub = int_list(p, "delete")?.unwrap_or_default();
    if add_sub.is_empty() && delete_sub.is_empty() {
        return Err(ApiError::bad_request("Nothing to do. Specify at least one of \"add\" or \"delete\"."));
    }
    change_membership(app, user, id, Membership { add: vec![], delete: vec![], add_sub, delete_sub }).await
}

struct Membership {
    add: Vec<i64>,
    delete: Vec<i64>,
    add_sub: Vec<i64>,
    delete_sub: Vec<i64>,
}

async fn change_membership(app: &App, user: &User, id: i64, m: Membership) -> ApiResult {
    let mut db = app.pool.get().await?;
    let tx = db.transaction().await?;
    tx.execute("SELECT pg_advisory_xact_lock(7, $1)", &[&(user.realm_id as i32)]).await?;
    // Any member may leave (remove only themselves).
    let leaving = m.add.is_empty() && m.add_sub.is_empty() && m.delete_sub.is_empty() && m.delete == [user.id];
    let (groups, _, group) = load_managed(&tx, user, id, false, leaving).await?;
    // Zulip's membership lists include deactivated users; check against
    // the stored rows, not the active-only list.
    let stored: BTreeSet<i64> = tx
        .query("SELECT user_profile_id FROM usergroupmembership WHERE user_group_id = $1", &[&(id as i32)])
        .await?
        .iter()
        .map(|r| r.get::<_, i32>(0) as i64)
        .collect();
    check_users(&tx, user.realm_id, &m.add).await?;
    if let Some(u) = m.add.iter().find(|u| stored.contains(u)) {
        return Err(ApiError::bad_request(format!("User {u} is already a member of this group")));
    }
    if let Some(u) = m.delete.iter().find(|u| !stored.contains(u)) {
        return Err(ApiError::bad_request(format!("There is no member '{u}' in this user group")));
    }
    for s in &m.add_sub {
        if !groups.iter().any(|g| g.id == *s && !g.deactivated) {
            return Err(ApiError::bad_request(format!("Invalid user group ID: {s}")));
        }
        if group.direct_subgroup_ids.contains(s) {
            return Err(ApiError::bad_request(format!("User group {s} is already a subgroup of this group.")));
        }
        // A subgroup that contains this group would make a cycle.
        if *s == id || user_groups::recursive_subgroups(&groups, *s).contains(&id) {
            return Err(ApiError::bad_request(format!(
                "User group {id} is already a subgroup of one of the passed subgroups."
            )));
        }
    }
    if let Some(s) = m.delete_sub.iter().find(|s| !group.direct_subgroup_ids.contains(s)) {
        return Err(ApiError::bad_request(format!("User group {s} is not a subgroup of this group.")));
    }
    let gid = id as i32;
    let as32 = |v: &[i64]| v.iter().map(|&x| x as i32).collect::<Vec<i32>>();
    tx.execute(
        "INSERT INTO usergroupmembership (user_group_id, user_profile_id) SELECT $1, unnest($2::int[])",
        &[&gid, &as32(&m.add)],
    )
    .await?;
    tx.execute(
        "DELETE FROM usergroupmembership WHERE user_group_id = $1 AND user_profile_id = ANY($2)",
        &[&gid, &as32(&m.delete)],
    )
    .await?;
    tx.execute(
        "INSERT INTO groupgroupmembership (supergroup_id, subgroup_id) SELECT $1, unnest($2::int[])",
        &[&gid, &as32(&m.add_sub)],
    )
    .await?;
    tx.execute(
        "DELETE FROM groupgroupmembership WHERE supergroup_id = $1 AND subgroup_id = ANY($2)",
        &[&gid, &as32(&m.delete_sub)],
    )
    .await?;
    tx.commit().await?;
    let events = [
        ("add_members", "user_ids", &m.add),
        ("remove_members", "user_ids", &m.delete),
        ("add_subgroups", "direct_subgroup_ids", &m.add_sub),
        ("remove_subgroups", "direct_subgroup_ids", &m.delete_sub),
    ]
    .into_iter()
    .filter(|(_, _, ids)| !ids.is_empty())
    .map(|(op, key, ids)| json!({"type": "user_group", "op": op, "group_id": id, key: ids}));
    tell_realm(app, user, events.collect()).await?;
    Ok(Map::new())
}

/// The group `id` of the user's realm, for reading.
async fn load(db: &impl GenericClient, user: &User, id: i64) -> Result<(Vec<Group>, Group), ApiError> {
    require_member(user)?;
    let groups = user_groups::realm_groups(db, user.realm_id, true).await?;
    let group =
        groups.iter().find(|g| g.id == id).cloned().ok_or_else(|| ApiError::bad_request("Invalid user group"))?;
    Ok((groups, group))
}

/// `GET /user_groups/{id}/members`.
pub async fn members(app: &App, user: &User, id: i64, p: &mut Params) -> ApiResult {
    let direct_only = p.bool("direct_member_only")?.unwrap_or(false);
    let (groups, group) = load(&app.pool.get().await?, user, id).await?;
    let members: Vec<i64> = if direct_only {
        group.members.clone()
    } else {
        user_groups::recursive_members(&groups, id).into_iter().collect()
    };
    let mut m = Map::new();
    m.insert("members".into(), json!(members));
    Ok(m)
}

/// `GET /user_groups/{id}/members/{user_id}`.
pub async fn is_member(app: &App, user: &User, id: i64, user_id: i64, p: &mut Params) -> ApiResult {
    let direct_only = p.bool("direct_member_only")?.unwrap_or(false);
    let db = app.pool.get().await?;
    let (groups, group) = load(&db, user, id).await?;
    // A deactivated user is in no group; someone of another realm is an error.
    if users::users_by_ids(&db, user.realm_id, &[user_id]).await?.is_empty() {
        return Err(ApiError::bad_request(format!("Invalid user ID: {user_id}")));
    }
    let member = if direct_only {
        group.members.contains(&user_id)
    } else {
        user_groups::recursive_members(&groups, id).contains(&user_id)
    };
    let mut m = Map::new();
    m.insert("is_user_group_member".into(), member.into());
    Ok(m)
}

/// `GET /user_groups/{id}/subgroups`.
pub async fn subgroups(app: &App, user: &User, id: i64, p: &mut Params) -> ApiResult {
    let direct_only = p.bool("direct_subgroup_only")?.unwrap_or(false);
    let (groups, group) = load(&app.pool.get().await?, user, id).await?;
    let subgroups: Vec<i64> = if direct_only {
        group.direct_subgroup_ids.clone()
    } else {
        user_groups::recursive_subgroups(&groups, id).into_iter().filter(|&g| g != id).collect()
    };
    let mut m = Map::new();
    m.insert("subgroups".into(), json!(subgroups));
    Ok(m)
}
