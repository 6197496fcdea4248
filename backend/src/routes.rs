//! Every endpoint in one table, and dispatch: match the path and method,
//! authenticate, rate-limit, call the handler, turn the outcome into Zulip's
//! JSON. Handlers live in `api/` (one file per group) and never call back
//! here.
//!
//! Paths are matched under `/api/v1/` (HTTP Basic) and `/json/` (the same
//! handlers; Squall has no browser sessions, so Basic auth is accepted
//! there too). A POST carrying a `method` field is dispatched as that method,
//! as Zulip does. `/events` reaches here only without a queue id, from a
//! cluster's router (`api::events`): the gateway serves every other.

use crate::api;
use crate::users::User;
use crate::App;
use serde_json::{Map, Value};
use squall_proto::api::{ApiRequest, ApiResponse, Params};
use squall_proto::error::{ApiError, ApiResult};

/// Who may call an endpoint.
#[derive(Clone, Copy, PartialEq, Debug)]
pub enum Access {
    /// Anyone (rate-limited per IP).
    Public,
    /// An authenticated user (rate-limited per user).
    User,
}

/// An endpoint the backend serves.
#[derive(Clone, Copy, PartialEq, Debug)]
pub(crate) enum Endpoint {
    ServerSettings,
    FetchApiKey,
    UsersCreate,
    UsersList,
    UsersMe,
    SubscriptionsAdd,
    SubscriptionsList,
    StreamsList,
    Register,
    MessagesSend,
    MessagesGet,
    FlagsUpdate,
    MarkAllAsRead,
    MarkStreamAsRead,
    MarkTopicAsRead,
    Typing,
    PresenceUpdate,
    RealmPresence,
    MessageEdit,
    MessageDelete,
    MessageGetOne,
    StreamTopics,
    MessageHistory,
    SubscriptionProperties,
    ReactionAdd,
    SettingsUpdate,
    UserTopicUpdate,
    AlertWordsList,
    MuteUser,
    UserStatusUpdate,
    UserStatusGet,
    RealmEmoji,
    DraftsList,
    UserUpdate,
    StreamUpdate,
    RealmUpdate,
    DraftsCreate,
    DraftEdit,
    DraftDelete,
    UnmuteUser,
    AlertWordsAdd,
    AlertWordsRemove,
    ReactionRemove,
    SubscriptionProperty,
    SubscriptionsRemove,
    UserPresence,
    FlagsNarrow,
    EventsCreate,
    UserDeactivate,
    UserDeactivateOwn,
    UserReactivate,
    ApiKeyRegenerate,
    UserGroupsList,
    UserGroupCreate,
    UserGroupUpdate,
    UserGroupDeactivate,
    UserGroupMembersUpdate,
    UserGroupMembers,
    UserGroupIsMember,
    UserGroupSubgroupsUpdate,
    UserGroupSubgroups,
    StreamArchive,
    ApnsTokenAdd,
    ApnsTokenRemove,
    FcmTokenAdd,
    FcmTokenRemove,
    BotCreate,
}

impl Endpoint {
    /// Whether it may change what the caches hold (accounts, keys, names,
    /// roles, time zones, settings, the realm, new members' subscriptions).
    /// Channel and subscription changes (`api::streams`) drop the caches
    /// themselves, right after their commit and before their events.
    fn changes_cached(self) -> bool {
        matches!(
            self,
            Endpoint::UsersCreate
                | Endpoint::BotCreate
                | Endpoint::UserDeactivate
                | Endpoint::UserDeactivateOwn
                | Endpoint::UserReactivate
                | Endpoint::ApiKeyRegenerate
                | Endpoint::UserUpdate
                | Endpoint::SettingsUpdate
                | Endpoint::RealmUpdate
        )
    }

    /// Who may call it.
    pub(crate) fn access(self) -> Access {
        match self {
            Endpoint::ServerSettings | Endpoint::FetchApiKey => Access::Public,
            _ => Access::User,
        }
    }
}

/// (path under the API prefix, method, endpoint)
const ROUTES: &[(&str, &str, Endpoint)] = &[
    ("server_settings", "GET", Endpoint::ServerSettings),
    ("fetch_api_key", "POST", Endpoint::FetchApiKey),
    ("users", "POST", Endpoint::UsersCreate),
    ("users", "GET", Endpoint::UsersList),
    ("users/me", "GET", Endpoint::UsersMe),
    ("users/me", "DELETE", Endpoint::UserDeactivateOwn),
    ("users/me/api_key/regenerate", "POST", Endpoint::ApiKeyRegenerate),
    ("users/{id}", "DELETE", Endpoint::UserDeactivate),
    ("users/{id}/reactivate", "POST", Endpoint::UserReactivate),
    ("users/me/subscriptions", "POST", Endpoint::SubscriptionsAdd),
    ("users/me/subscriptions", "GET", Endpoint::SubscriptionsList),
    ("users/me/subscriptions", "DELETE", Endpoint::SubscriptionsRemove),
    ("streams", "GET", Endpoint::StreamsList),
    ("register", "POST", Endpoint::Register),
    ("messages", "POST", Endpoint::MessagesSend),
    ("messages", "GET", Endpoint::MessagesGet),
    ("messages/flags", "POST", Endpoint::FlagsUpdate),
    ("mark_all_as_read", "POST", Endpoint::MarkAllAsRead),
    ("mark_stream_as_read", "POST", Endpoint::MarkStreamAsRead),
    ("mark_topic_as_read", "POST", Endpoint::MarkTopicAsRead),
    ("typing", "POST", Endpoint::Typing),
    ("users/me/presence", "POST", Endpoint::PresenceUpdate),
    ("realm/presence", "GET", Endpoint::RealmPresence),
    ("messages/{id}", "PATCH", Endpoint::MessageEdit),
    ("messages/{id}", "DELETE", Endpoint::MessageDelete),
    ("messages/{id}", "GET", Endpoint::MessageGetOne),
    ("users/me/{id}/topics", "GET", Endpoint::StreamTopics),
    ("messages/{id}/history", "GET", Endpoint::MessageHistory),
    ("messages/{id}/reactions", "POST", Endpoint::ReactionAdd),
    ("settings", "PATCH", Endpoint::SettingsUpdate),
    ("user_topics", "POST", Endpoint::UserTopicUpdate),
    ("users/me/alert_words", "GET", Endpoint::AlertWordsList),
    ("users/me/muted_users/{id}", "POST", Endpoint::MuteUser),
    ("users/me/status", "POST", Endpoint::UserStatusUpdate),
    ("users/{id}/status", "GET", Endpoint::UserStatusGet),
    ("realm/emoji", "GET", Endpoint::RealmEmoji),
    ("drafts", "GET", Endpoint::DraftsList),
    ("users/{id}", "PATCH", Endpoint::UserUpdate),
    ("streams/{id}", "PATCH", Endpoint::StreamUpdate),
    ("realm", "PATCH", Endpoint::RealmUpdate),
    ("drafts", "POST", Endpoint::DraftsCreate),
    ("drafts/{id}", "PATCH", Endpoint::DraftEdit),
    ("drafts/{id}", "DELETE", Endpoint::DraftDelete),
    ("users/me/muted_users/{id}", "DELETE", Endpoint::UnmuteUser),
    ("user_groups", "GET", Endpoint::UserGroupsList),
    ("user_groups/create", "POST", Endpoint::UserGroupCreate),
    ("user_groups/{id}", "PATCH", Endpoint::UserGroupUpdate),
    ("user_groups/{id}/deactivate", "POST", Endpoint::UserGroupDeactivate),
    ("user_groups/{id}/members", "POST", Endpoint::UserGroupMembersUpdate),
    ("user_groups/{id}/members", "GET", Endpoint::UserGroupMembers),
    ("user_groups/{id}/members/{id}", "GET", Endpoint::UserGroupIsMember),
    ("user_groups/{id}/subgroups", "POST", Endpoint::UserGroupSubgroupsUpdate),
    ("user_groups/{id}/subgroups", "GET", Endpoint::UserGroupSubgroups),
    ("streams/{id}", "DELETE", Endpoint::StreamArchive),
    ("users/me/alert_words", "POST", Endpoint::AlertWordsAdd),
    ("users/me/alert_words", "DELETE", Endpoint::AlertWordsRemove),
    ("messages/{id}/reactions", "DELETE", Endpoint::ReactionRemove),
    ("users/me/subscriptions/properties", "POST", Endpoint::SubscriptionProperties),
    ("users/me/subscriptions/{id}", "POST", Endpoint::SubscriptionProperty),
    ("users/{key}/presence", "GET", Endpoint::UserPresence),
    ("messages/flags/narrow", "POST", Endpoint::FlagsNarrow),
    ("events", "GET", Endpoint::EventsCreate),
    ("users/me/apns_device_token", "POST", Endpoint::ApnsTokenAdd),
    ("users/me/apns_device_token", "DELETE", Endpoint::ApnsTokenRemove),
    ("users/me/android_gcm_reg_id", "POST", Endpoint::FcmTokenAdd),
    ("users/me/android_gcm_reg_id", "DELETE", Endpoint::FcmTokenRemove),
    ("bots", "POST", Endpoint::BotCreate),
];

/// Captured path parameters: `{id}` segments as integers, `{key}` segments
/// (ids or emails) as text (the edge has percent-decoded the path).
#[derive(Debug, Default, PartialEq)]
pub(crate) struct PathParams {
    pub ids: Vec<i64>,
    pub keys: Vec<String>,
}

/// Matches `path` against a route pattern: `{id}` segments must be
/// non-negative integers, `{key}` segments any non-empty text.
fn match_route(pattern: &str, path: &str) -> Option<PathParams> {
    let (mut pat, mut got) = (pattern.split('/'), path.split('/'));
    let mut params = PathParams::default();
    loop {
        match (pat.next(), got.next()) {
            (None, None) => return Some(params),
            (Some("{key}"), Some(g)) if !g.is_empty() => {
                params.keys.push(g.to_owned());
            }
            (Some(p), Some(g)) if p.starts_with('{') => {
                if g.is_empty() || !g.bytes().all(|b| b.is_ascii_digit()) {
                    return None;
                }
                params.ids.push(g.parse().ok()?);
            }
            (Some(p), Some(g)) if p == g => {}
            _ => return None,
        }
    }
}

/// Handles one request end to end, never panicking on input. A failure is
/// classified (database causes → 4xx/503) and, if it is ours, logged here
/// once with the request's method, path and user.
///
/// Every request gets one access-log line (target `squall::access`, level
/// info: method, path without the query, status, milliseconds, user), as
/// Zulip's server log has; `SQUALL_LOG=info,squall::access=warn` hides them.
pub async fn dispatch(app: &App, req: ApiRequest) -> ApiResponse {
    let started = std::time::Instant::now();
    let mut user_id = None;
    let outcome = route(app, &req, &mut user_id).await;
    let resp = match outcome {
        Ok(resp) => resp,
        Err(e) => {
            let e = crate::error::classify(e);
            e.log(&req.method, &req.path, user_id);
            e.into()
        }
    };
    tracing::info!(
        target: "squall::access",
        method = %req.method,
        path = %req.path,
        status = resp.status,
        ms = format_args!("{:.1}", started.elapsed().as_secs_f64() * 1000.0),
        user = user_id.unwrap_or(0),
        "request"
    );
    resp
}

async fn route(app: &App, req: &ApiRequest, user_id: &mut Option<i64>) -> Result<ApiResponse, ApiError> {
    let mut params = Params::from_request(req)?;
    let json_path = req.path.starts_with("/json/");
    if let Some(key) = req.path.strip_prefix(api::unsubscribe::PREFIX) {
        if !matches!(req.method.as_str(), "GET" | "POST" | "HEAD") {
            return Ok(ApiResponse::method_not_allowed(&["GET", "POST"]));
        }
        if let Some(ip) = req.peer {
            app.limiter.check(crate::ratelimit::Key::Ip(ip))?;
        }
        // Link checkers send HEAD: it changes nothing.
        if req.method == "HEAD" {
            return Ok(success(serde_json::Map::new(), Vec::new()));
        }
        let fields = api::unsubscribe::missed_messages(app, key.trim_end_matches('/')).await?;
        return Ok(success(fields, Vec::new()));
    }
    let Some(sub) = req.path.strip_prefix("/api/v1/").or_else(|| req.path.strip_prefix("/json/")) else {
        return Err(ApiError::not_found());
    };
    let sub = sub.trim_end_matches('/');
    let mut method = req.method.clone();
    if method == "HEAD" {
        method = "GET".into();
    }
    if method == "POST" && params.has("method") {
        method = params.str("method").unwrap_or_default().to_ascii_uppercase();
    }
    // Routes whose path matches, with what they capture from it.
    let candidates: Vec<_> = ROUTES.iter().filter_map(|r| match_route(r.0, sub).map(|p| (r, p))).collect();
    if candidates.is_empty() {
        return Err(ApiError::not_found());
    }
    let allowed: Vec<&str> = candidates.iter().map(|(r, _)| r.1).collect();
    if method == "OPTIONS" {
        return Ok(ApiResponse::options(&allowed));
    }
    let Some((&(_, _, endpoint), path)) = candidates.iter().find(|(r, _)| r.1 == method) else {
        return Ok(ApiResponse::method_not_allowed(&allowed));
    };
    let fields = match endpoint.access() {
        Access::Public => {
            if let Some(ip) = req.peer {
                app.limiter.check(crate::ratelimit::Key::Ip(ip))?;
            }
            call_public(app, endpoint, req, &mut params).await?
        }
        Access::User => {
            let user =
                crate::auth::authenticate(&app.pool, &app.caches.users, req, &app.settings.external_host, json_path)
                    .await?;
            *user_id = Some(user.id);
            app.limiter.check(crate::ratelimit::Key::User(user.id))?;
            let result = call(app, endpoint, &user, req, path, &mut params).await;
            // This process's cache forgets at once what it may have
            // changed; other processes hear it from PostgreSQL.
            if endpoint.changes_cached() {
                app.caches.invalidate();
            }
            result?
        }
    };
    Ok(success(fields, params.unused()))
}

async fn call_public(app: &App, endpoint: Endpoint, req: &ApiRequest, params: &mut Params) -> ApiResult {
    match endpoint {
        Endpoint::ServerSettings => api::server::server_settings(app, req).await,
        Endpoint::FetchApiKey => api::server::fetch_api_key(app, req, params).await,
        other => Err(ApiError::internal(format!("{other:?} is not a public endpoint"))),
    }
}

/// Runs an authenticated endpoint's handler.
async fn call(app: &App, e: Endpoint, user: &User, req: &ApiRequest, path: &PathParams, p: &mut Params) -> ApiResult {
    use api::*;
    let path_id = path.ids.first().copied().unwrap_or(0);
    let path_key = path.keys.first().map(String::as_str).unwrap_or_default();
    match e {
        Endpoint::UsersCreate => users::create(app, user, p).await,
        Endpoint::UsersList => users::list(app, user, p).await,
        Endpoint::UsersMe => users::me(app, user).await,
        Endpoint::SubscriptionsAdd => streams::subscribe(app, user, p).await,
        Endpoint::SubscriptionsList => streams::list_subscriptions(app, user, p).await,
        Endpoint::SubscriptionsRemove => streams::unsubscribe(app, user, p).await,
        Endpoint::StreamsList => streams::list_streams(app, user, p).await,
        Endpoint::Register => register::register(app, user, req, p).await,
        Endpoint::MessagesSend => messages::send(app, user, req, p).await,
        Endpoint::MessagesGet => messages::get(app, user, p).await,
        Endpoint::FlagsUpdate => flags::update(app, user, p).await,
        Endpoint::MarkAllAsRead => flags::mark_all(app, user).await,
        Endpoint::MarkStreamAsRead => flags::mark_stream(app, user, p).await,
        Endpoint::MarkTopicAsRead => flags::mark_topic(app, user, p).await,
        Endpoint::Typing => typing::set_typing_status(app, user, p).await,
        Endpoint::PresenceUpdate => presence::update(app, user, p).await,
        Endpoint::RealmPresence => presence::realm(app, user).await,
        Endpoint::MessageEdit => messages::edit(app, user, path_id, p).await,
        Endpoint::MessageDelete => messages::delete(app, user, path_id).await,
        Endpoint::MessageGetOne => messages::get_one(app, user, path_id, p).await,
        Endpoint::StreamTopics => streams::topics(app, user, path_id).await,
        Endpoint::MessageHistory => messages::history(app, user, path_id).await,
        Endpoint::ReactionAdd => crate::api::reactions::add(app, user, path_id, p).await,
        Endpoint::SettingsUpdate => crate::settings::update(app, user, p).await,
        Endpoint::UserTopicUpdate => crate::api::user_topics::update(app, user, p).await,
        Endpoint::AlertWordsList => crate::api::alert_words::list(app, user).await,
        Endpoint::MuteUser => crate::api::muted_users::change(app, user, path_id, true).await,
        Endpoint::UserStatusUpdate => crate::api::user_status::update(app, user, p).await,
        Endpoint::UserStatusGet => crate::api::user_status::get(app, user, path_id).await,
        // No custom emoji exist yet (uploads come later): the list is empty.
        Endpoint::RealmEmoji => Ok(serde_json::Map::from_iter([("emoji".to_owned(), serde_json::json!({}))])),
        Endpoint::DraftsList => crate::api::drafts::list(app, user).await,
        Endpoint::UserUpdate => users::update(app, user, path_id, p).await,
        Endpoint::StreamUpdate => streams::update_stream(app, user, path_id, p).await,
        Endpoint::RealmUpdate => crate::api::server::update_realm(app, user, p).await,
        Endpoint::DraftsCreate => crate::api::drafts::create(app, user, p).await,
        Endpoint::DraftEdit => crate::api::drafts::edit(app, user, path_id, p).await,
        Endpoint::DraftDelete => crate::api::drafts::delete(app, user, path_id).await,
        Endpoint::UnmuteUser => crate::api::muted_users::change(app, user, path_id, false).await,
        Endpoint::UserGroupsList => user_groups::list(app, user, p).await,
        Endpoint::UserGroupCreate => user_groups::create(app, user, p).await,
        Endpoint::UserGroupUpdate => user_groups::update(app, user, path_id, p).await,
        Endpoint::UserGroupDeactivate => user_groups::deactivate(app, user, path_id).await,
        Endpoint::UserGroupMembersUpdate => user_groups::update_members(app, user, path_id, p).await,
        Endpoint::UserGroupMembers => user_groups::members(app, user, path_id, p).await,
        Endpoint::UserGroupIsMember => {
            user_groups::is_member(app, user, path_id, path.ids.get(1).copied().unwrap_or(0), p).await
        }
        Endpoint::UserGroupSubgroupsUpdate => user_groups::update_subgroups(app, user, path_id, p).await,
        Endpoint::UserGroupSubgroups => user_groups::subgroups(app, user, path_id, p).await,
        Endpoint::StreamArchive => streams::archive_stream(app, user, path_id).await,
        Endpoint::ApnsTokenAdd => crate::api::push::add(app, user, crate::api::push::Kind::Apple, p).await,
        Endpoint::ApnsTokenRemove => crate::api::push::remove(app, user, crate::api::push::Kind::Apple, p).await,
        Endpoint::FcmTokenAdd => crate::api::push::add(app, user, crate::api::push::Kind::Android, p).await,
        Endpoint::BotCreate => crate::api::bots::create(app, user, p).await,
        Endpoint::FcmTokenRemove => crate::api::push::remove(app, user, crate::api::push::Kind::Android, p).await,
        Endpoint::AlertWordsAdd => crate::api::alert_words::add(app, user, p).await,
        Endpoint::AlertWordsRemove => crate::api::alert_words::remove(app, user, p).await,
        Endpoint::ReactionRemove => crate::api::reactions::remove(app, user, path_id, p).await,
        Endpoint::SubscriptionProperties => streams::update_properties(app, user, p).await,
        Endpoint::SubscriptionProperty => streams::update_property(app, user, path_id, p).await,
        Endpoint::UserPresence => presence::for_user(app, user, path_key).await,
        Endpoint::FlagsNarrow => flags::update_narrow(app, user, p).await,
        Endpoint::EventsCreate => events::create_queue(app, user, req, p).await,
        Endpoint::UserDeactivate => users::deactivate(app, user, path_id, p).await,
        Endpoint::UserDeactivateOwn => users::deactivate_own(app, user).await,
        Endpoint::UserReactivate => users::reactivate(app, user, path_id).await,
        Endpoint::ApiKeyRegenerate => users::regenerate_api_key(app, user).await,
        Endpoint::ServerSettings | Endpoint::FetchApiKey => {
            Err(ApiError::internal(format!("{e:?} is a public endpoint")))
        }
    }
}

fn success(mut fields: Map<String, Value>, unused: Vec<String>) -> ApiResponse {
    fields.insert("result".into(), "success".into());
    fields.insert("msg".into(), "".into());
    if !unused.is_empty() {
        fields.insert("ignored_parameters_unsupported".into(), unused.into());
    }
    ApiResponse { status: 200, headers: vec![], body: Value::Object(fields).to_string().into_bytes() }
}

#[cfg(test)]
mod tests {
    use super::{match_route, PathParams};

    fn ids(v: Vec<i64>) -> Option<PathParams> {
        Some(PathParams { ids: v, keys: vec![] })
    }

    #[test]
    fn path_parameters() {
        assert_eq!(match_route("messages/{id}", "messages/42"), ids(vec![42]));
        assert_eq!(match_route("messages/{id}", "messages/abc"), None);
        assert_eq!(match_route("messages/{id}", "messages/"), None);
        assert_eq!(match_route("messages/{id}", "messages/1/2"), None);
        assert_eq!(match_route("messages/{id}", "messages/99999999999999999999999"), None);
        assert_eq!(match_route("messages", "messages"), ids(vec![]));
        assert_eq!(match_route("messages", "messages/flags"), None);
        let key = |k: &str| Some(PathParams { ids: vec![], keys: vec![k.to_owned()] });
        assert_eq!(match_route("users/{key}/presence", "users/a@b.example/presence"), key("a@b.example"));
        assert_eq!(match_route("users/{key}/presence", "users/7/presence"), key("7"));
        assert_eq!(match_route("users/{key}/presence", "users//presence"), None);
    }
}
