//! PostgreSQL databases and RabbitMQ virtual hosts of their own for each
//! test, on the services `tools/services` runs.

use anyhow::{bail, Context, Result};
use serde_json::Value;
use std::process::Command;

fn admin_url() -> String {
    std::env::var("SQUALL_DATABASE_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:15433/squall".into())
}

/// Replaces the database name at the end of a PostgreSQL URL.
fn with_database(url: &str, db: &str) -> String {
    let (base, query) = url.split_once('?').map(|(b, q)| (b, Some(q))).unwrap_or((url, None));
    let base = match base.rfind('/') {
        Some(i) if i > "postgres://".len() => &base[..i],
        _ => base,
    };
    match query {
        Some(q) => format!("{base}/{db}?{q}"),
        None => format!("{base}/{db}"),
    }
}

/// Runs statements against `db` (test setup), or one SELECT whose rows
/// are returned (inspection).
pub fn sql_query(db: &str, query: &str) -> Result<Vec<tokio_postgres::Row>> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    rt.block_on(async {
        let (client, conn) = tokio_postgres::connect(db, tokio_postgres::NoTls).await?;
        let task = tokio::spawn(conn);
        let rows = if query.trim_start().to_ascii_uppercase().starts_with("SELECT") {
            client.query(query, &[]).await?
        } else {
            client.batch_execute(query).await?;
            Vec::new()
        };
        drop(client);
        let _ = task.await;
        anyhow::Ok(rows)
    })
}

/// Creates a fresh, empty database and returns its URL.
pub fn fresh_database() -> Result<String> {
    let name = format!("squall_test_{:016x}", rand::random::<u64>());
    let admin = admin_url();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    rt.block_on(async {
        let (client, conn) = tokio_postgres::connect(&admin, tokio_postgres::NoTls)
            .await
            .with_context(|| format!("connecting to {admin} (is `tools/services start` running?)"))?;
        let task = tokio::spawn(conn);
        client.batch_execute(&format!("CREATE DATABASE {name}")).await?;
        drop(client);
        let _ = task.await;
        anyhow::Ok(())
    })?;
    Ok(with_database(&admin, &name))
}

/// Creates a fresh RabbitMQ virtual host on the `tools/services` broker and
/// returns an AMQP URL for it, so a test's notification queues are its own.
pub fn fresh_amqp_vhost() -> Result<String> {
    let node = std::env::var("SQUALL_RABBITMQ_NODE").unwrap_or_else(|_| "squall-5673@localhost".into());
    let vhost = format!("squall-test-{:016x}", rand::random::<u64>());
    for args in
        [vec!["add_vhost", vhost.as_str()], vec!["set_permissions", "-p", vhost.as_str(), "guest", ".*", ".*", ".*"]]
    {
        let out = Command::new("rabbitmqctl")
            .arg("-n")
            .arg(&node)
            .arg("-q")
            .args(&args)
            .output()
            .context("running rabbitmqctl (is `tools/services start` running?)")?;
        if !out.status.success() {
            bail!("rabbitmqctl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        }
    }
    let base = std::env::var("SQUALL_AMQP_URL").unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5673/%2f".into());
    let base = base.rsplit_once('/').map(|(b, _)| b.to_owned()).unwrap_or(base);
    Ok(format!("{base}/{vhost}"))
}

/// Makes the broker close every connection to the virtual host of `url`
/// (as a broker restart would), for tests of reconnection.
pub fn close_amqp_connections(url: &str) -> Result<()> {
    let node = std::env::var("SQUALL_RABBITMQ_NODE").unwrap_or_else(|_| "squall-5673@localhost".into());
    let vhost = url.rsplit_once('/').map(|(_, v)| v).context("no virtual host in the URL")?;
    let out = Command::new("rabbitmqctl")
        .args(["-n", &node, "-q", "close_all_connections", "--vhost", vhost, "closed by a test"])
        .output()
        .context("running rabbitmqctl")?;
    if !out.status.success() {
        bail!("rabbitmqctl close_all_connections: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(())
}

/// Reads every message currently in `queue` of the broker at `url`.
pub fn drain_amqp_queue(url: &str, queue: &str) -> Result<Vec<Value>> {
    use lapin::options::{BasicAckOptions, BasicGetOptions, QueueDeclareOptions};
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    rt.block_on(async {
        let conn = lapin::Connection::connect(url, lapin::ConnectionProperties::default()).await?;
        let channel = conn.create_channel().await?;
        channel
            .queue_declare(queue.into(), QueueDeclareOptions::durable(), lapin::types::FieldTable::default())
            .await?;
        let mut out = Vec::new();
        while let Some(msg) = channel.basic_get(queue.into(), BasicGetOptions::default()).await? {
            out.push(serde_json::from_slice(&msg.delivery.data)?);
            msg.delivery.ack(BasicAckOptions::default()).await?;
        }
        conn.close(200, "done".into()).await?;
        anyhow::Ok(out)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_url_rewriting() {
        assert_eq!(with_database("postgres://u@h:1/squall", "t"), "postgres://u@h:1/t");
        assert_eq!(with_database("postgres://u@h:1/squall?sslmode=disable", "t"), "postgres://u@h:1/t?sslmode=disable");
        assert_eq!(with_database("postgres://u@h:1", "t"), "postgres://u@h:1/t");
    }
}
