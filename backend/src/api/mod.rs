//! Endpoint handlers, one file per group. Public so the gateway can reuse
//! the queue-option parsing of register for `GET /events`.

pub mod flags;
pub mod messages;
pub mod presence;
pub mod register;
pub mod server;
pub mod streams;
pub mod typing;
pub mod users;

use crate::error::ApiResult;
use crate::request::{ApiRequest, Params};
use crate::routes::Endpoint;
use crate::users::User;
use crate::App;

/// Runs an authenticated endpoint.
pub(crate) async fn call(
    app: &App,
    e: Endpoint,
    user: &User,
    req: &ApiRequest,
    path: &crate::routes::PathParams,
    p: &mut Params,
) -> ApiResult {
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
        Endpoint::UserPresence => presence::for_user(app, user, path_key).await,
        Endpoint::FlagsNarrow => flags::update_narrow(app, user, p).await,
        Endpoint::ServerSettings | Endpoint::FetchApiKey => {
            Err(crate::error::ApiError::internal(format!("{e:?} is a public endpoint")))
        }
    }
}
