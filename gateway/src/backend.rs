//! The gateway's one door to the rest of Squall.
//!
//! The gateway answers `/events` itself and hands every other API request
//! to a [`Backend`]. In `squall serve` the backend runs in the same process
//! on a tokio runtime (an in-process adapter, no socket hop); a standalone
//! gateway reaches it over the network; tests use a fake.
//!
//! The futures are `Send` and `'static` because they usually run on another
//! runtime; the gateway's core awaits them without blocking.

use futures_util::future::BoxFuture;
use squall_proto::api::{ApiRequest, ApiResponse};
use squall_proto::error::ApiError;
use squall_proto::user::AuthedUser;

/// What the gateway needs from the backend.
pub trait Backend: Send + Sync + 'static {
    /// Answers an API request that is not `/events`.
    fn handle(&self, req: ApiRequest) -> BoxFuture<'static, ApiResponse>;

    /// Checks a request's credentials (its method, path and headers; no
    /// body) and says who made it, or Zulip's authentication error.
    fn authenticate(&self, req: ApiRequest) -> BoxFuture<'static, Result<AuthedUser, ApiError>>;

    /// Counts one request of `user` against the backend's per-user rate
    /// limit, as its own endpoints are counted: `GET /events` without a
    /// queue id creates a queue like `POST /register` and must cost the
    /// same. Zulip's 429 when the limit is reached.
    fn rate_limit(&self, user: AuthedUser) -> BoxFuture<'static, Result<(), ApiError>>;
}
