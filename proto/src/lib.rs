//! What Squall's halves say to each other, with no async runtime and no
//! database: both the tokio backend and the monoio gateway depend on it, and
//! neither depends on the other.
//!
//! - [`api`]: an HTTP request as the API sees it, Zulip's parameter rules,
//!   the response; [`error`]: Zulip's error body with status, `msg`, `code`.
//! - [`user`]: the facts about an authenticated user the gateway needs.
//! - [`ids`]: [`Shard`] and queue ids that name their owner;
//!   [`queue_spec`]: a queue's options and their parsing.
//! - [`envelope`]: a backend → gateway event (a notice) and its message
//!   payload; [`flags`]: UserMessage flag bits.
//! - [`bus`]: the [`bus::EventBus`] the backend publishes through.
#![warn(missing_docs)]

pub mod api;
pub mod bus;
pub mod envelope;
pub mod error;
pub mod flags;
pub mod ids;
pub mod notify;
pub mod queue_spec;
pub mod user;

pub use ids::{QueueId, Shard};

/// Zulip version string reported to clients.
pub const ZULIP_VERSION: &str = "10.0-squall";
/// Zulip API feature level Squall speaks (that of the reference OpenAPI file).
pub const ZULIP_FEATURE_LEVEL: i64 = 313;
/// Merge base reported with the version.
pub const ZULIP_MERGE_BASE: &str = "10.0-squall";
