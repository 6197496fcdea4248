//! Database access: the connection pool and schema migrations here, the
//! send path's message SQL in `messages`.
//!
//! Migrations are SQL files compiled into the binary and applied in order,
//! each in its own transaction, under an advisory lock so that concurrent
//! starts do not race. `squall_migrations` records what has been applied.

pub(crate) mod messages;
pub(crate) mod writer;

use anyhow::Context;
pub use deadpool_postgres::Pool;
use deadpool_postgres::{GenericClient, Manager, ManagerConfig, RecyclingMethod};
use squall_proto::error::ApiError;
use std::str::FromStr;
use tokio_postgres::types::ToSql;
use tokio_postgres::Row;

/// Runs `sql` as a statement prepared once per pooled connection (the
/// pool's statement cache): one round trip where a plain query costs two
/// (prepare, then execute). For the statements every request or every
/// send runs; `sql` must be the same text each time.
pub async fn query_cached(
    db: &impl GenericClient,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
) -> Result<Vec<Row>, ApiError> {
    let statement = db.prepare_cached(sql).await?;
    Ok(db.query(&statement, params).await?)
}

/// [`query_cached`] for at most one row.
pub async fn query_opt_cached(
    db: &impl GenericClient,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
) -> Result<Option<Row>, ApiError> {
    let statement = db.prepare_cached(sql).await?;
    Ok(db.query_opt(&statement, params).await?)
}

/// [`query_cached`] for exactly one row.
pub async fn query_one_cached(
    db: &impl GenericClient,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
) -> Result<Row, ApiError> {
    let statement = db.prepare_cached(sql).await?;
    Ok(db.query_one(&statement, params).await?)
}

/// [`query_cached`] for a statement without rows; returns how many it changed.
pub async fn execute_cached(
    db: &impl GenericClient,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
) -> Result<u64, ApiError> {
    let statement = db.prepare_cached(sql).await?;
    Ok(db.execute(&statement, params).await?)
}

/// Migrations in apply order: (version, name, SQL).
const MIGRATIONS: &[(i32, &str, &str)] = &[
    (1, "initial", include_str!("../../migrations/0001_initial.sql")),
    (2, "presence", include_str!("../../migrations/0002_presence.sql")),
    (3, "message_edits", include_str!("../../migrations/0003_message_edits.sql")),
    (4, "soft_deactivation", include_str!("../../migrations/0004_soft_deactivation.sql")),
    (5, "posting_policy", include_str!("../../migrations/0005_posting_policy.sql")),
    (6, "wildcard_mention_policy", include_str!("../../migrations/0006_wildcard_mention_policy.sql")),
    (7, "subscription_notifications", include_str!("../../migrations/0007_subscription_notifications.sql")),
    (8, "reactions", include_str!("../../migrations/0008_reactions.sql")),
    (9, "user_settings", include_str!("../../migrations/0009_user_settings.sql")),
    (10, "user_topics", include_str!("../../migrations/0010_user_topics.sql")),
    (11, "alert_words", include_str!("../../migrations/0011_alert_words.sql")),
    (12, "muted_users", include_str!("../../migrations/0012_muted_users.sql")),
    (13, "user_status", include_str!("../../migrations/0013_user_status.sql")),
    (14, "drafts", include_str!("../../migrations/0014_drafts.sql")),
    (15, "user_groups", include_str!("../../migrations/0015_user_groups.sql")),
    (16, "cache_notify", include_str!("../../migrations/0016_cache_notify.sql")),
    (17, "cache_notify_rows", include_str!("../../migrations/0017_cache_notify_rows.sql")),
    (18, "workers", include_str!("../../migrations/0018_workers.sql")),
    (19, "active_push_index", include_str!("../../migrations/0019_active_push_index.sql")),
    (20, "subscriber_cache", include_str!("../../migrations/0020_subscriber_cache.sql")),
];

/// Arbitrary constant identifying Squall's migration advisory lock.
const MIGRATION_LOCK: i64 = 0x5351_5541_4c4c; // "SQUALL"

/// Opens a pool of at most `size` connections to `url`. Getting a
/// connection waits as long as it takes: the request path never holds two
/// at once, so a wait ends when a request finishes (a wait timeout would
/// add a timer to every checkout of the hottest path for nothing).
pub fn connect(url: &str, size: usize) -> anyhow::Result<Pool> {
    connect_with_wait(url, size, None)
}

/// [`connect`], with getting a connection failing (a 503 for a request)
/// after `wait`: for the queue workers, whose items must not wait for
/// ever behind slow peers.
pub fn connect_with_wait(url: &str, size: usize, wait: Option<std::time::Duration>) -> anyhow::Result<Pool> {
    let mut pg = tokio_postgres::Config::from_str(url).with_context(|| format!("invalid database URL {url:?}"))?;
    // Squall's sessions plan for SSDs (random reads nearly as cheap as
    // sequential ones) unless the URL sets options: with PostgreSQL's
    // default of 4, a send to a 10-member stream joined every user of the
    // realm (a hash join over a sequential scan) instead of looking up
    // its 10 members; 1.1 measured 3.5x faster there and no slower for a
    // 1,000-member stream (BENCHMARKS.md).
    if pg.get_options().is_none() {
        pg.options("-c random_page_cost=1.1");
    }
    let mgr =
        Manager::from_config(pg, tokio_postgres::NoTls, ManagerConfig { recycling_method: RecyclingMethod::Fast });
    let mut builder = Pool::builder(mgr).max_size(size.max(1));
    if wait.is_some() {
        builder = builder.wait_timeout(wait).runtime(deadpool_postgres::Runtime::Tokio1);
    }
    builder.build().context("building the database pool")
}

/// First line of a migration whose statements must run outside a
/// transaction, each on its own.
const NO_TRANSACTION: &str = "-- squall: each statement alone, outside a transaction";

/// The statements of such a migration: `;`-terminated, comment lines
/// dropped (they hold no `;` of their own).
fn statements(sql: &str) -> impl Iterator<Item = &str> {
    sql.split(";\n")
        .map(|s| s.trim())
        .filter(|s| s.lines().any(|l| !l.trim().is_empty() && !l.trim_start().starts_with("--")))
}

/// Applies every migration not yet applied. Returns how many ran.
pub async fn migrate(pool: &Pool) -> anyhow::Result<usize> {
    let mut client = pool.get().await.context("connecting to the database")?;
    client.execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK]).await?;
    let result = apply_pending(&mut client).await;
    client.execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK]).await?;
    result
}

async fn apply_pending(client: &mut deadpool_postgres::Client) -> anyhow::Result<usize> {
    client
        .batch_execute(
            "CREATE TABLE IF NOT EXISTS squall_migrations (
                version integer PRIMARY KEY,
                name text NOT NULL,
                applied_at timestamptz NOT NULL DEFAULT now())",
        )
        .await?;
    let applied: Vec<i32> =
        client.query("SELECT version FROM squall_migrations", &[]).await?.iter().map(|r| r.get(0)).collect();
    let mut ran = 0;
    for (version, name, sql) in MIGRATIONS {
        if applied.contains(version) {
            continue;
        }
        if sql.starts_with(NO_TRANSACTION) {
            // Statements PostgreSQL runs only outside a transaction
            // (CREATE INDEX CONCURRENTLY), one at a time; written so that
            // running them again after an interruption is harmless.
            for statement in statements(sql) {
                client.batch_execute(statement).await.with_context(|| format!("migration {version} ({name})"))?;
            }
            client.execute("INSERT INTO squall_migrations (version, name) VALUES ($1, $2)", &[version, name]).await?;
        } else {
            let tx = client.transaction().await?;
            tx.batch_execute(sql).await.with_context(|| format!("migration {version} ({name})"))?;
            tx.execute("INSERT INTO squall_migrations (version, name) VALUES ($1, $2)", &[version, name]).await?;
            tx.commit().await?;
        }
        tracing::info!(version, name, "applied migration");
        ran += 1;
    }
    Ok(ran)
}

#[cfg(test)]
mod tests {
    use super::{statements, MIGRATIONS, NO_TRANSACTION};

    #[test]
    fn outside_transaction_migrations_split_into_single_statements() {
        let (_, _, sql) = MIGRATIONS.iter().find(|m| m.1 == "active_push_index").expect("registered");
        assert!(sql.starts_with(NO_TRANSACTION));
        let got: Vec<&str> = statements(sql).collect();
        assert_eq!(got.len(), 2, "{got:?}");
        assert!(got[0].ends_with("DROP INDEX CONCURRENTLY IF EXISTS usermessage_active_push"), "{}", got[0]);
        assert!(got[1].starts_with("CREATE INDEX CONCURRENTLY usermessage_active_push"), "{}", got[1]);
    }

    #[test]
    fn every_migration_file_is_registered_in_order() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/migrations");
        let mut files: Vec<String> = std::fs::read_dir(dir)
            .expect("migrations dir")
            .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
            .filter(|n| n.ends_with(".sql"))
            .collect();
        files.sort();
        assert_eq!(files.len(), MIGRATIONS.len(), "unregistered migration files: {files:?}");
        for (i, (file, (version, name, sql))) in files.iter().zip(MIGRATIONS).enumerate() {
            assert_eq!(*version as usize, i + 1, "versions must be 1, 2, 3, ...");
            assert_eq!(file, &format!("{version:04}_{name}.sql"));
            let on_disk = std::fs::read_to_string(format!("{dir}/{file}")).expect("readable");
            assert_eq!(&on_disk, sql);
        }
    }
}
