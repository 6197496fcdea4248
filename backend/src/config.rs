//! Backend configuration (a section of the `squall` TOML file).

use serde::{Deserialize, Serialize};

/// How the backend reaches its database.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BackendConfig {
    /// PostgreSQL URL (`SQUALL_DATABASE_URL`).
    pub database_url: String,
    /// Maximum pooled connections.
    pub pool_size: usize,
    /// tokio worker threads for the backend runtime.
    pub worker_threads: usize,
}

impl Default for BackendConfig {
    fn default() -> Self {
        BackendConfig {
            // The project-local cluster `tools/services start` runs.
            database_url: "postgres://postgres@127.0.0.1:15433/squall".into(),
            pool_size: 16,
            worker_threads: 2,
        }
    }
}
