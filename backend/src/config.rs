//! Backend configuration (a section of the `squall` TOML file).

use serde::{Deserialize, Serialize};

/// How the backend reaches its database.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BackendConfig {
    /// PostgreSQL URL (`SQUALL_DATABASE_URL`).
    pub database_url: String,
    /// Maximum pooled database connections of the host (shared out among
    /// its gateway processes, at least 2 each).
    pub pool_size: usize,
    /// tokio worker threads for the backend runtime.
    pub worker_threads: usize,
    /// Users without activity for this many days are soft-deactivated by
    /// the periodic job (Zulip: 28).
    pub soft_deactivate_inactive_days: u32,
    /// Seconds between runs of the soft-deactivation job; 0 disables it.
    pub soft_deactivate_interval_secs: u64,
    /// Whether the job also backfills idle users' missed rows (Zulip's
    /// AUTO_CATCH_UP_SOFT_DEACTIVATED_USERS), keeping them idle.
    pub soft_deactivate_catch_up: bool,
}

impl Default for BackendConfig {
    fn default() -> Self {
        BackendConfig {
            // The project-local cluster `tools/services start` runs.
            database_url: "postgres://postgres@127.0.0.1:15433/squall".into(),
            pool_size: 16,
            worker_threads: 2,
            soft_deactivate_inactive_days: crate::soft_deactivation::DEFAULT_INACTIVE_DAYS,
            soft_deactivate_interval_secs: 86_400,
            soft_deactivate_catch_up: true,
        }
    }
}
