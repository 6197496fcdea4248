//! The gateway's [`Backend`] in a single-node process: the tokio backend
//! called directly, with no socket in between. Each call is spawned on the
//! backend's runtime; the gateway's core awaits the answer on a channel.

use futures_channel::oneshot;
use futures_util::future::BoxFuture;
use squall_backend::App;
use squall_gateway::backend::Backend;
use squall_proto::api::{ApiRequest, ApiResponse};
use squall_proto::error::ApiError;
use squall_proto::user::AuthedUser;

/// The backend of this process.
pub struct InProcess {
    app: App,
    rt: tokio::runtime::Handle,
}

impl InProcess {
    /// Calls into `app` on the runtime `rt`.
    pub fn new(app: App, rt: tokio::runtime::Handle) -> Self {
        InProcess { app, rt }
    }

    /// Runs `f(app)` on the backend's runtime and returns its output.
    fn call<T, F, Fut>(&self, f: F, dropped: fn() -> T) -> BoxFuture<'static, T>
    where
        T: Send + 'static,
        F: FnOnce(App) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = T> + Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        let app = self.app.clone();
        self.rt.spawn(async move {
            let _ = tx.send(f(app).await);
        });
        Box::pin(async move { rx.await.unwrap_or_else(|_| dropped()) })
    }
}

fn dropped_error() -> ApiError {
    ApiError::internal("the backend dropped the request (shutting down?)")
}

impl Backend for InProcess {
    fn handle(&self, req: ApiRequest) -> BoxFuture<'static, ApiResponse> {
        self.call(move |app| async move { app.handle(req).await }, || dropped_error().into())
    }

    fn authenticate(&self, req: ApiRequest) -> BoxFuture<'static, Result<AuthedUser, ApiError>> {
        self.call(move |app| async move { app.authenticate(&req).await.map(|u| u.authed()) }, || Err(dropped_error()))
    }

    fn rate_limit(&self, user: AuthedUser) -> BoxFuture<'static, Result<(), ApiError>> {
        // The limiter's lock is the backend's: taken on its runtime, never
        // on a gateway core.
        self.call(move |app| async move { app.rate_limit(user.id) }, || Err(dropped_error()))
    }
}
