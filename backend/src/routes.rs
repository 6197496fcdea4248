//! Every endpoint in one table.
//!
//! Paths are matched under `/api/v1/` (HTTP Basic) and `/json/` (the same
//! handlers; Squall has no browser sessions, so Basic auth is accepted
//! there too). A POST carrying a `method` field is dispatched as that method,
//! as Zulip does. `/events` never reaches here: the gateway serves it.

use crate::api;
use crate::error::ApiError;
use crate::request::{ApiRequest, ApiResponse, Params};
use crate::App;
use serde_json::{Map, Value};

/// Who may call an endpoint.
#[derive(Clone, Copy, PartialEq)]
enum Access {
    Public,
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
    SubscriptionsRemove,
    UserPresence,
    FlagsNarrow,
}

/// (path under the API prefix, method, access, endpoint)
const ROUTES: &[(&str, &str, Access, Endpoint)] = &[
    ("server_settings", "GET", Access::Public, Endpoint::ServerSettings),
    ("fetch_api_key", "POST", Access::Public, Endpoint::FetchApiKey),
    ("users", "POST", Access::User, Endpoint::UsersCreate),
    ("users", "GET", Access::User, Endpoint::UsersList),
    ("users/me", "GET", Access::User, Endpoint::UsersMe),
    ("users/me/subscriptions", "POST", Access::User, Endpoint::SubscriptionsAdd),
    ("users/me/subscriptions", "GET", Access::User, Endpoint::SubscriptionsList),
    ("users/me/subscriptions", "DELETE", Access::User, Endpoint::SubscriptionsRemove),
    ("streams", "GET", Access::User, Endpoint::StreamsList),
    ("register", "POST", Access::User, Endpoint::Register),
    ("messages", "POST", Access::User, Endpoint::MessagesSend),
    ("messages", "GET", Access::User, Endpoint::MessagesGet),
    ("messages/flags", "POST", Access::User, Endpoint::FlagsUpdate),
    ("mark_all_as_read", "POST", Access::User, Endpoint::MarkAllAsRead),
    ("mark_stream_as_read", "POST", Access::User, Endpoint::MarkStreamAsRead),
    ("mark_topic_as_read", "POST", Access::User, Endpoint::MarkTopicAsRead),
    ("typing", "POST", Access::User, Endpoint::Typing),
    ("users/me/presence", "POST", Access::User, Endpoint::PresenceUpdate),
    ("realm/presence", "GET", Access::User, Endpoint::RealmPresence),
    ("messages/{id}", "PATCH", Access::User, Endpoint::MessageEdit),
    ("messages/{id}", "DELETE", Access::User, Endpoint::MessageDelete),
    ("messages/{id}", "GET", Access::User, Endpoint::MessageGetOne),
    ("users/{key}/presence", "GET", Access::User, Endpoint::UserPresence),
    ("messages/flags/narrow", "POST", Access::User, Endpoint::FlagsNarrow),
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

/// Handles one request end to end, never panicking on input.
pub async fn dispatch(app: &App, req: ApiRequest) -> ApiResponse {
    let mut params = match Params::from_request(&req) {
        Ok(p) => p,
        Err(e) => return e.into(),
    };
    let json_path = req.path.starts_with("/json/");
    let Some(sub) = req.path.strip_prefix("/api/v1/").or_else(|| req.path.strip_prefix("/json/")) else {
        return not_found();
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
        return not_found();
    }
    if method == "OPTIONS" {
        let allow: Vec<&str> = candidates.iter().map(|(r, _)| r.1).collect();
        return ApiResponse {
            status: 204,
            headers: vec![("Allow", format!("OPTIONS, {}", allow.join(", ")))],
            body: vec![],
        };
    }
    let Some((&(_, _, access, endpoint), path_params)) = candidates.iter().find(|(r, _)| r.1 == method) else {
        let allowed: Vec<&str> = candidates.iter().map(|(r, _)| r.1).collect();
        let body = serde_json::json!({"result": "error", "msg": "Method Not Allowed", "allowed_methods": allowed});
        return ApiResponse { status: 405, headers: vec![], body: body.to_string().into_bytes() };
    };
    let result = match access {
        Access::Public => match req.peer.map(|ip| app.limiter.check(crate::ratelimit::Key::Ip(ip))) {
            Some(Err(e)) => Err(e),
            _ => call_public(app, endpoint, &req, &mut params).await,
        },
        Access::User => {
            match crate::auth::authenticate(&app.pool, &req, &app.settings.external_host, json_path).await {
                Ok(user) => match app.limiter.check(crate::ratelimit::Key::User(user.id)) {
                    Ok(()) => api::call(app, endpoint, &user, &req, path_params, &mut params).await,
                    Err(e) => Err(e),
                },
                Err(e) => Err(e),
            }
        }
    };
    match result {
        Ok(fields) => success(fields, params.unused()),
        Err(e) => e.into(),
    }
}

async fn call_public(app: &App, endpoint: Endpoint, req: &ApiRequest, params: &mut Params) -> crate::error::ApiResult {
    match endpoint {
        Endpoint::ServerSettings => api::server::server_settings(app, req).await,
        Endpoint::FetchApiKey => api::server::fetch_api_key(app, req, params).await,
        other => Err(ApiError::internal(format!("{other:?} is not a public endpoint"))),
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

fn not_found() -> ApiResponse {
    let e = ApiError { status: 404, ..ApiError::bad_request("Not Found") };
    e.into()
}
