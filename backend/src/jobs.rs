//! The backend's periodic jobs. Each is a future that runs forever on the
//! backend's tokio runtime, beside request handling; the host process
//! (`squall serve`) spawns them at start-up. Today there is one: Zulip's
//! daily soft deactivation ([`crate::soft_deactivation`]).

use crate::config::BackendConfig;
use crate::db::Pool;
use crate::soft_deactivation::{self, JobReport};
use squall_proto::error::ApiError;
use std::time::Duration;

/// Runs [`soft_deactivation::run_job`] every
/// `cfg.soft_deactivate_interval_secs` seconds (the first run one interval
/// after the start) and logs what each run did or why it failed. Returns
/// at once when the interval is 0, which disables the job.
pub async fn soft_deactivation(pool: Pool, cfg: BackendConfig) {
    if cfg.soft_deactivate_interval_secs == 0 {
        return;
    }
    let every = Duration::from_secs(cfg.soft_deactivate_interval_secs);
    loop {
        tokio::time::sleep(every).await;
        match soft_deactivation_once(&pool, &cfg).await {
            Ok(r) => tracing::info!(
                deactivated = r.deactivated.len(),
                caught_up_rows = r.caught_up_rows,
                "soft deactivation"
            ),
            Err(e) => {
                let cause = e.cause.as_ref().map(|c| c.to_string()).unwrap_or_default();
                tracing::warn!(error = %e.msg, cause, "soft deactivation job failed");
            }
        }
    }
}

async fn soft_deactivation_once(pool: &Pool, cfg: &BackendConfig) -> Result<JobReport, ApiError> {
    let mut db = pool.get().await?;
    soft_deactivation::run_job(&mut db, None, cfg.soft_deactivate_inactive_days, cfg.soft_deactivate_catch_up).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_zero_interval_disables_the_job() {
        // Nothing listens on port 1; the pool only connects on first use.
        let pool = crate::db::connect("postgres://squall@127.0.0.1:1/none", 1).unwrap();
        let cfg = BackendConfig { soft_deactivate_interval_secs: 0, ..BackendConfig::default() };
        tokio::time::timeout(Duration::from_secs(5), soft_deactivation(pool, cfg)).await.expect("returns at once");
    }
}
