//! Send-path benchmark: `POST /messages` latency to a large stream, and
//! sustained messages/s to many small streams, against a real `squall
//! serve` (release build) and the `tools/services` PostgreSQL (fsync on).
//!
//! Run (after `tools/services start` and `cargo build --release -p squall`):
//!
//!   SQUALL_BIN=$PWD/target/release/squall cargo bench -p squall-e2e --bench send_path -- \
//!       --subscribers 10000 --messages 200 --small-streams 100 --senders 8 --seconds 10
//!
//! Users and subscriptions are created with bulk SQL (the API would take
//! minutes for 10,000 users); everything measured goes through HTTP.

use anyhow::{bail, Context, Result};
use squall_e2e::{fresh_database, squall_bin, Client};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

struct Args {
    subscribers: i64,
    messages: usize,
    small_streams: i64,
    senders: usize,
    seconds: u64,
    idle: i64,
}

fn parse_args() -> Result<Args> {
    let mut a = Args { subscribers: 10_000, messages: 200, small_streams: 100, senders: 8, seconds: 10, idle: 9_000 };
    let argv: Vec<String> = std::env::args().skip(1).filter(|x| x != "--bench").collect();
    let mut it = argv.iter();
    while let Some(flag) = it.next() {
        let mut val = || it.next().context("missing value").and_then(|v| v.parse::<i64>().context("not a number"));
        match flag.as_str() {
            "--subscribers" => a.subscribers = val()?,
            "--messages" => a.messages = val()? as usize,
            "--small-streams" => a.small_streams = val()?,
            "--senders" => a.senders = val()? as usize,
            "--seconds" => a.seconds = val()? as u64,
            "--idle" => a.idle = val()?,
            "-h" | "--help" => {
                println!("send_path [--subscribers N] [--messages M] [--small-streams K] [--senders S] [--seconds T] [--idle I]\n\
                     --idle I: after the all-active pass, soft-deactivate I of the N subscribers and measure again");
                std::process::exit(0);
            }
            other => bail!("unknown argument {other}"),
        }
    }
    Ok(a)
}

fn sql(db: &str, statements: &str) -> Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    rt.block_on(async {
        let (client, conn) = tokio_postgres::connect(db, tokio_postgres::NoTls).await?;
        let task = tokio::spawn(conn);
        client.batch_execute(statements).await?;
        drop(client);
        let _ = task.await;
        anyhow::Ok(())
    })
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let idx = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

/// `messages` sequential sends to the big stream; prints their latency.
fn latency_pass(owner: &Client, topic: &str, messages: usize, label: &str) -> Result<()> {
    let mut lat = Vec::with_capacity(messages);
    for i in 0..messages {
        let start = Instant::now();
        owner.send_stream("big", topic, &format!("message {i}"))?;
        lat.push(start.elapsed().as_secs_f64() * 1000.0);
    }
    lat.sort_by(f64::total_cmp);
    println!(
        "{label} ({} sends): p50 {:.1} ms, p90 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        lat.len(),
        percentile(&lat, 50.0),
        percentile(&lat, 90.0),
        percentile(&lat, 99.0),
        lat.last().copied().unwrap_or(0.0)
    );
    Ok(())
}

fn main() -> Result<()> {
    let args = parse_args()?;
    let db = fresh_database()?;
    let bin = squall_bin();
    let out = Command::new(&bin)
        .args(["admin", "create-realm", "--subdomain", "", "--name", "Bench", "--owner-email", "owner@bench.example"])
        .args(["--owner-password", "pw"])
        .env("SQUALL_DATABASE_URL", &db)
        .output()?;
    if !out.status.success() {
        bail!("create-realm: {}", String::from_utf8_lossy(&out.stderr));
    }
    let created: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    let key = created["api_key"].as_str().context("api_key")?.to_owned();

    let n = args.subscribers;
    let k = args.small_streams;
    let t0 = Instant::now();
    sql(
        &db,
        &format!(
            "INSERT INTO userprofile (realm_id, email, delivery_email, full_name, role, api_key)
               SELECT 1, 'u' || g || '@bench.example', 'u' || g || '@bench.example', 'User ' || g, 400,
                      substr(md5(g::text) || md5((g + 7)::text), 1, 32)
               FROM generate_series(1, {n}) g;
             INSERT INTO recipient (type, type_id) SELECT 1, id FROM userprofile WHERE id > 1;
             INSERT INTO stream (realm_id, name, rendered_description) VALUES (1, 'big', '');
             INSERT INTO recipient (type, type_id) SELECT 2, id FROM stream WHERE name = 'big';
             UPDATE stream s SET recipient_id = r.id FROM recipient r WHERE r.type = 2 AND r.type_id = s.id;
             INSERT INTO subscription (user_profile_id, recipient_id)
               SELECT u.id, s.recipient_id FROM userprofile u, stream s WHERE s.name = 'big';
             INSERT INTO stream (realm_id, name, rendered_description)
               SELECT 1, 'small-' || g, '' FROM generate_series(1, {k}) g;
             INSERT INTO recipient (type, type_id) SELECT 2, id FROM stream WHERE name LIKE 'small-%';
             UPDATE stream s SET recipient_id = r.id FROM recipient r WHERE r.type = 2 AND r.type_id = s.id;
             INSERT INTO subscription (user_profile_id, recipient_id)
               SELECT 1 + ((s.id * 10 + g) % {n}) + 1, s.recipient_id
               FROM stream s, generate_series(0, 9) g WHERE s.name LIKE 'small-%'
               ON CONFLICT DO NOTHING;
             INSERT INTO subscription (user_profile_id, recipient_id)
               SELECT 1, recipient_id FROM stream WHERE name LIKE 'small-%' ON CONFLICT DO NOTHING;
             ANALYZE;"
        ),
    )?;
    eprintln!("setup: {n} users, 1 big stream, {k} streams of ~10, in {:.1} s", t0.elapsed().as_secs_f64());

    let mut child = Command::new(&bin)
        .args(["serve", "--listen", "127.0.0.1:0"])
        .env("SQUALL_DATABASE_URL", &db)
        .env("SQUALL_RATE_LIMIT_PER_USER", "0")
        .env("SQUALL_AMQP_URL", "")
        .env("SQUALL_STATE_DIR", std::env::temp_dir().join(format!("squall-bench-{}", std::process::id())))
        .env("SQUALL_LOG", "error")
        .stdout(Stdio::piped())
        .spawn()?;
    let mut line = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(child.stdout.take().context("stdout")?), &mut line)?;
    let url = line.trim().strip_prefix("squall: listening on ").context("serve did not start")?.to_owned();
    let owner = Client::new(&url, "owner@bench.example", &key);

    // Latency to the big stream: sequential sends.
    for i in 0..10 {
        owner.send_stream("big", "warmup", &format!("warmup {i}"))?;
    }
    let label = format!("POST /messages to a stream of {} active subscribers", n + 1);
    latency_pass(&owner, "bench", args.messages, &label)?;

    // The same stream with most subscribers soft-deactivated.
    if args.idle > 0 {
        sql(
            &db,
            &format!(
                "UPDATE userprofile SET long_term_idle = true, last_active_message_id = (SELECT max(id) FROM message)
                 WHERE id > 1 + {active};
                 ANALYZE userprofile;",
                active = n - args.idle
            ),
        )?;
        let label = format!("POST /messages to a stream of {} subscribers, {} soft-deactivated", n + 1, args.idle);
        latency_pass(&owner, "bench-idle", args.messages, &label)?;
    }

    // Sustained throughput to small streams from concurrent senders.
    let sent = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs(args.seconds);
    let handles: Vec<_> = (0..args.senders)
        .map(|s| {
            let (c, sent) = (owner.clone(), sent.clone());
            std::thread::spawn(move || -> Result<()> {
                let mut i = 0i64;
                while Instant::now() < deadline {
                    let stream = format!("small-{}", 1 + (i * args.senders as i64 + s as i64) % k);
                    c.send_stream(&stream, "load", "hello")?;
                    sent.fetch_add(1, Ordering::Relaxed);
                    i += 1;
                }
                Ok(())
            })
        })
        .collect();
    for h in handles {
        h.join().map_err(|_| anyhow::anyhow!("sender panicked"))??;
    }
    let total = sent.load(Ordering::Relaxed);
    println!(
        "sustained: {} senders to {k} streams of 10 members: {total} messages in {} s = {:.0} msg/s",
        args.senders,
        args.seconds,
        total as f64 / args.seconds as f64
    );
    let _ = child.kill();
    let _ = child.wait();
    Ok(())
}
