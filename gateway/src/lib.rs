//! Squall's real-time gateway and the single-node edge.
//!
//! Request path, in order: [`shard`] runs one pinned monoio executor per
//! core, all accepting on one listening socket → [`conn`] reads and frames
//! HTTP ([`http`]) → `/events` goes to the core owning the queue (here, or
//! handed over through that core's [`inbox`]), everything else to the tokio
//! backend in-process → [`core`] holds each core's queues ([`queue`]) and
//! answers or parks long-polls. The backend publishes events through
//! [`bus::LocalBus`], which splits them per core into the inboxes.
#![warn(missing_docs)]

pub mod amqp;
pub mod bus;
pub mod config;
pub mod conn;
pub mod core;
mod deliver;
pub mod filter;
pub mod http;
pub mod inbox;
pub mod internal;
pub mod notify;
pub mod persist;
pub mod queue;
pub mod shard;

use anyhow::Context;
use config::Config;
use squall_backend::{App, Settings};
use squall_proto::Shard;
use squall_shard_router::placement::Topology;
use std::sync::Arc;

/// Runs a single-node Squall (backend + gateway on one port) until
/// SIGINT/SIGTERM. `on_listening` is told the bound address.
pub fn serve(cfg: Config, on_listening: impl FnOnce(std::net::SocketAddr)) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(cfg.backend.worker_threads.max(1))
        .thread_name("squall-backend")
        .enable_all()
        .build()
        .context("starting the backend runtime")?;
    let pool = squall_backend::db::connect(&cfg.backend.database_url, cfg.backend.pool_size)?;
    if cfg.migrate_on_start {
        rt.block_on(squall_backend::db::migrate(&pool))
            .with_context(|| format!("migrating {}", cfg.backend.database_url))?;
    }

    host_check(&cfg);
    let listener = std::net::TcpListener::bind(&cfg.listen).with_context(|| format!("binding {}", cfg.listen))?;
    listener.set_nonblocking(true)?;
    // std listens with a backlog of 128; after a restart every client
    // reconnects at once. Listening again on a listening socket only
    // changes its backlog; the kernel caps it at net.core.somaxconn.
    // SAFETY: the fd is a valid, bound socket we own.
    if unsafe { libc::listen(std::os::fd::AsRawFd::as_raw_fd(&listener), 65_535) } != 0 {
        tracing::warn!(error = %std::io::Error::last_os_error(), "could not enlarge the listen backlog");
    }
    let addr = listener.local_addr()?;
    let cores = cfg.core_count();
    let topo = Topology::single_node(cores);
    let inboxes: Arc<Vec<Arc<inbox::Inbox>>> =
        Arc::new((0..cores).map(|_| Arc::new(inbox::Inbox::new(cfg.inbox_capacity))).collect());
    let bus = bus::LocalBus::new(inboxes.clone(), 0, topo);
    let external_host = if cfg.external_host.is_empty() { addr.to_string() } else { cfg.external_host.clone() };
    let settings_generation = shard::now_secs() as i64;
    let settings = Settings {
        external_host,
        scheme: "http".into(),
        server_generation: settings_generation,
        rate_limit_per_user: cfg.rate_limit_per_user,
        rate_limit_per_ip: cfg.rate_limit_per_ip,
    };
    let app = App::new(pool, Arc::new(bus), settings);
    let timing =
        core::Timing { heartbeat_min_secs: cfg.heartbeat_min_secs, heartbeat_jitter_secs: cfg.heartbeat_jitter_secs };
    let restart_event = Arc::new(serde_json::json!({
        "type": "restart",
        "zulip_version": squall_proto::ZULIP_VERSION,
        "zulip_merge_base": squall_proto::ZULIP_MERGE_BASE,
        "zulip_feature_level": squall_proto::ZULIP_FEATURE_LEVEL,
        "server_generation": settings_generation,
    }));

    let publisher = amqp::Publisher::spawn(rt.handle(), &cfg.amqp_url);
    if cfg.backend.soft_deactivate_interval_secs > 0 {
        rt.spawn(soft_deactivation_job(app.pool().clone(), cfg.backend.clone()));
    }
    let shared_secret: Arc<str> = Arc::from(internal::shared_secret(&cfg)?);
    let mut threads = Vec::new();
    for c in 0..cores {
        let start = shard::CoreStart {
            shard: Shard { node: 0, core: c },
            topo,
            inboxes: inboxes.clone(),
            listener: listener.try_clone()?,
            app: app.clone(),
            tokio: rt.handle().clone(),
            timing,
            io_uring: cfg.io_uring,
            state_dir: std::path::PathBuf::from(&cfg.state_dir),
            publisher: publisher.clone(),
            shared_secret: shared_secret.clone(),
            restart_event: restart_event.clone(),
        };
        let t = std::thread::Builder::new()
            .name(format!("squall-core-{c}"))
            .spawn(move || {
                if let Err(e) = shard::run_core(start) {
                    tracing::error!(core = c, error = %e, "core failed");
                }
            })
            .context("spawning a core thread")?;
        threads.push(t);
    }
    drop(listener);
    let driver = if cfg.io_uring && monoio::utils::detect_uring() { "io_uring" } else { "epoll" };
    tracing::info!(%addr, cores, driver, "squall serving");
    on_listening(addr);

    rt.block_on(wait_for_signal())?;
    tracing::info!("shutting down");
    for inbox in inboxes.iter() {
        let mut item = core::Item::Shutdown;
        // A full inbox drains quickly; keep offering the shutdown item.
        while let Err(back) = inbox.push(item) {
            item = back;
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
    }
    for t in threads {
        let _ = t.join();
    }
    Ok(())
}

/// Raises the open-file soft limit to the hard limit, then checks the host
/// against `expected_connections` and logs one warning per shortfall. It
/// refuses nothing: a small host still serves what it can.
fn host_check(cfg: &Config) {
    use squall_kernel_tuning::{check, host::Host, sizing::Target};
    match squall_kernel_tuning::raise_nofile_soft_limit() {
        Ok(n) => tracing::info!(open_files = n, "open-file limit"),
        Err(e) => tracing::warn!(error = %e, "could not raise the open-file soft limit"),
    }
    let target = Target { connections: cfg.expected_connections, cores: cfg.core_count() as u64 };
    let report = check::check(&Host::new("/"), target);
    let problems: Vec<_> = report.problems().filter(|f| f.concerns_server()).collect();
    for f in &problems {
        let first = f.advice.lines().next().unwrap_or("");
        tracing::warn!(knob = f.knob, value = %f.value, needed = %f.needed, "host check: {first}");
    }
    if !problems.is_empty() {
        tracing::warn!(
            expected_connections = cfg.expected_connections,
            "host check found shortfalls; run `squall-tune check --connections {}` for details",
            cfg.expected_connections
        );
    }
}

async fn wait_for_signal() -> anyhow::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).context("installing SIGTERM handler")?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => r.context("waiting for SIGINT")?,
        _ = term.recv() => {}
    }
    Ok(())
}

/// Runs the soft-deactivation job every `soft_deactivate_interval_secs`
/// (first run one interval after start).
async fn soft_deactivation_job(pool: squall_backend::db::Pool, cfg: squall_backend::config::BackendConfig) {
    let every = std::time::Duration::from_secs(cfg.soft_deactivate_interval_secs);
    loop {
        tokio::time::sleep(every).await;
        let run = async {
            let mut db = pool.get().await.map_err(squall_proto::error::ApiError::from)?;
            squall_backend::soft_deactivation::run_job(
                &mut db,
                None,
                cfg.soft_deactivate_inactive_days,
                cfg.soft_deactivate_catch_up,
            )
            .await
        };
        match run.await {
            Ok(r) => tracing::info!(
                deactivated = r.deactivated.len(),
                caught_up_rows = r.caught_up_rows,
                "soft deactivation"
            ),
            Err(e) => tracing::warn!(error = %e.msg, "soft deactivation job failed"),
        }
    }
}
