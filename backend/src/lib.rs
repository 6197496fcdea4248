//! Squall's REST API backend.
//!
//! The request path: the edge (the gateway in single-node mode) parses HTTP
//! and calls [`App::handle`] → [`routes`] picks the endpoint → an `api/`
//! module reads [`squall_proto::api::Params`], authenticates via [`auth`],
//! does the work against PostgreSQL ([`db`], [`users`], [`streams`],
//! `actions/`) and publishes events through the
//! [`squall_proto::bus::EventBus`] → [`squall_proto::api::ApiResponse`].
//! Beside requests, [`jobs`] run periodic work such as soft deactivation.
//!
//! The backend runs on a conventional multi-threaded tokio runtime and is
//! the only part of Squall that touches the database.
#![warn(missing_docs)]

pub mod auth;
pub mod cache;
pub mod config;
pub mod db;
pub mod error;
pub mod hashing;
pub mod jobs;
pub mod markdown;
pub mod presence;
pub mod ratelimit;
pub mod realm;
pub mod routes;
pub mod settings;
pub mod soft_deactivation;
pub mod streams;
pub mod unread;
pub mod user_groups;
pub mod users;
pub mod workers;

mod actions;
pub mod api;

use deadpool_postgres::Pool;
use squall_proto::bus::EventBus;
use std::sync::Arc;

/// Time since the Unix epoch (zero if the clock is before it).
pub fn unix_time() -> std::time::Duration {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default()
}

/// Facts about this server the API reports.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Host (and port) clients reach the server at, e.g. `127.0.0.1:9991`.
    pub external_host: String,
    /// `http` or `https`.
    pub scheme: String,
    /// Server start time, unix seconds (`server_generation`).
    pub server_generation: i64,
    /// Requests per minute per user (Zulip: 200); 0 disables.
    pub rate_limit_per_user: u32,
    /// Unauthenticated requests per minute per IP (Zulip: 100); 0 disables.
    pub rate_limit_per_ip: u32,
}

/// The backend: a database pool, the event bus and settings.
#[derive(Clone)]
pub struct App {
    pub(crate) pool: Pool,
    pub(crate) bus: Arc<dyn EventBus>,
    pub(crate) settings: Arc<Settings>,
    pub(crate) limiter: Arc<ratelimit::RateLimiter>,
    pub(crate) hasher: Arc<hashing::HashPool>,
    pub(crate) caches: Arc<cache::Caches>,
    pub(crate) jobs: Arc<dyn workers::JobQueue>,
    /// Group commit of sends ([`db::writer`]).
    pub(crate) writer: Arc<db::writer::MessageWriter>,
}

impl App {
    /// Publishes `event` to `users` of `realm_id` (a generic notice); a
    /// failure is logged with `what`, not returned: the change it tells of
    /// is already stored.
    pub(crate) async fn tell(&self, realm_id: i64, event: serde_json::Value, users: Vec<i64>, what: &str) {
        let notice = squall_proto::envelope::Notice::Generic { event: Arc::new(event), users };
        if let Err(e) = self.bus.publish(squall_proto::envelope::Envelope { realm_id, notice }).await {
            tracing::warn!(error = %e, what, "event not delivered");
        }
    }

    /// A backend on `pool` publishing to `bus`.
    pub fn new(pool: Pool, bus: Arc<dyn EventBus>, settings: Settings) -> Self {
        let limiter = Arc::new(ratelimit::RateLimiter::new(settings.rate_limit_per_user, settings.rate_limit_per_ip));
        // Made now rather than by the first login attempt for an unknown
        // account, which would otherwise take twice as long as the rest.
        let _ = users::dummy_hash();
        App {
            pool,
            bus,
            settings: Arc::new(settings),
            limiter,
            hasher: Arc::default(),
            caches: Arc::default(),
            jobs: Arc::new(workers::NoJobs),
            writer: Arc::default(),
        }
    }

    /// The same backend (caches, bus, settings, job queue) on another
    /// database pool: the queue workers use their own, so that their slow
    /// calls (SMTP, HTTP) never take connections requests need.
    pub fn with_pool(&self, pool: Pool) -> Self {
        App { pool, ..self.clone() }
    }

    /// This backend, putting work for the queue workers on `jobs`
    /// (RabbitMQ); without it such work is dropped.
    pub fn with_jobs(mut self, jobs: Arc<dyn workers::JobQueue>) -> Self {
        self.jobs = jobs;
        self
    }

    /// The task that keeps the user cache coherent with `database_url`
    /// (see [`cache`]); spawn it once on the backend's runtime. Until it
    /// runs the cache is not used.
    pub fn cache_listener(&self, database_url: &str) -> impl std::future::Future<Output = ()> + Send + 'static {
        cache::listen(database_url.to_owned(), self.caches.clone())
    }

    /// The database pool.
    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    /// Answers one API request.
    pub async fn handle(&self, req: squall_proto::api::ApiRequest) -> squall_proto::api::ApiResponse {
        routes::dispatch(self, req).await
    }

    /// Counts one request of `user_id` against the per-user rate limit
    /// (the gateway's queue-less `GET /events`, which creates a queue).
    pub fn rate_limit(&self, user_id: i64) -> Result<(), squall_proto::error::ApiError> {
        self.limiter.check(ratelimit::Key::User(user_id))
    }

    /// Authenticates a request (used by the gateway for `/events`). A
    /// failure is classified and, if it is ours, logged here, as dispatch
    /// does for every other request.
    pub async fn authenticate(
        &self,
        req: &squall_proto::api::ApiRequest,
    ) -> Result<users::User, squall_proto::error::ApiError> {
        let json_path = req.path.starts_with("/json/");
        auth::authenticate(&self.pool, &self.caches.users, req, &self.settings.external_host, json_path).await.map_err(
            |e| {
                let e = error::classify(e);
                e.log(&req.method, &req.path, None);
                e
            },
        )
    }
}
