//! `squall backend` and `squall router`: the cluster's processes that are
//! not gateways. (`squall gateway` is `serve`'s code in its cluster role.)

use super::bus::ClusterBus;
use super::http::Trusted;
use super::router::Router;
use crate::config::Config;
use crate::serve::{bind, wait_for_signal};
use anyhow::Context;
use squall_backend::{App, Settings};
use std::sync::Arc;

/// Runs REST backend `index` of the cluster until SIGINT/SIGTERM.
/// `on_listening` is told the bound address.
pub fn backend(
    cfg: Config,
    index: usize,
    listen: Option<String>,
    on_listening: impl FnOnce(std::net::SocketAddr),
) -> anyhow::Result<()> {
    cfg.check_cluster()?;
    let listen = match listen {
        Some(l) => l,
        None => cfg.cluster.backends.get(index).cloned().with_context(|| {
            format!(
                "--index {index}: cluster.backends lists {} backend(s); or pass --listen",
                cfg.cluster.backends.len()
            )
        })?,
    };
    let _ = squall_kernel_tuning::raise_nofile_soft_limit();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(cfg.backend.worker_threads.max(1))
        .thread_name(format!("squall-backend-{index}"))
        .enable_all()
        .build()
        .context("starting the backend runtime")?;
    let pool = squall_backend::db::connect(&cfg.backend.database_url, cfg.backend.pool_size)?;
    // One backend migrates (the first); the others wait for nothing: a
    // schema they do not know yet fails their queries loudly.
    if cfg.migrate_on_start && index == 0 {
        rt.block_on(squall_backend::db::migrate(&pool))
            .with_context(|| format!("migrating {}", cfg.backend.database_url))?;
    }
    let processes = cfg.gateway_processes.max(1);
    let bus = ClusterBus::new(
        &cfg.cluster.gateways,
        processes,
        cfg.cores_per_process(processes),
        &cfg.amqp_url,
        &cfg.shared_secret,
        &format!("squall backend {index}"),
    )?;
    let settings = Settings {
        external_host: if cfg.external_host.is_empty() {
            cfg.cluster.router_listen.clone()
        } else {
            cfg.external_host.clone()
        },
        scheme: "http".into(),
        server_generation: squall_backend::unix_time().as_secs() as i64,
        rate_limit_per_user: cfg.rate_limit_per_user,
        rate_limit_per_ip: cfg.rate_limit_per_ip,
    };
    let publisher = crate::amqp::Publisher::spawn(rt.handle(), &cfg.amqp_url);
    let app = App::new(pool, Arc::new(bus), settings).with_jobs(Arc::new(crate::workers::Jobs(publisher)));
    rt.spawn(app.cache_listener(&cfg.backend.database_url));
    if cfg.backend.soft_deactivate_interval_secs > 0 && index == 0 {
        rt.spawn(squall_backend::jobs::soft_deactivation(app.pool().clone(), cfg.backend.clone()));
    }
    let listener = bind(&listen)?;
    let addr = listener.local_addr()?;
    let trusted = Trusted::resolve(std::slice::from_ref(&cfg.cluster.router_listen));
    tracing::info!(%addr, index, "squall backend serving");
    on_listening(addr);
    rt.block_on(async move {
        listener.set_nonblocking(true)?;
        let listener = tokio::net::TcpListener::from_std(listener)?;
        let max = cfg.expected_connections.clamp(1024, 1 << 20) as usize;
        tokio::select! {
            _ = super::http::serve(listener, app, trusted, max) => {}
            r = wait_for_signal() => r?,
        }
        tracing::info!(index, "squall backend stopping");
        Ok(())
    })
}

/// Runs the cluster's router until SIGINT/SIGTERM. `on_listening` is told
/// the bound address.
pub fn router(
    cfg: Config,
    listen: Option<String>,
    on_listening: impl FnOnce(std::net::SocketAddr),
) -> anyhow::Result<()> {
    cfg.check_cluster()?;
    anyhow::ensure!(!cfg.cluster.backends.is_empty(), "the router needs cluster.backends");
    let listen = listen.unwrap_or_else(|| cfg.cluster.router_listen.clone());
    anyhow::ensure!(!listen.is_empty(), "set cluster.router_listen or pass --listen");
    let open_files = squall_kernel_tuning::raise_nofile_soft_limit().unwrap_or(1024);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .thread_name("squall-router")
        .enable_all()
        .build()
        .context("starting the router runtime")?;
    let listener = bind(&listen)?;
    let addr = listener.local_addr()?;
    // Each client connection may hold one upstream connection too.
    let max = (open_files.saturating_sub(256) / 2).max(64) as usize;
    tracing::info!(%addr, gateways = cfg.cluster.gateways.len(), backends = cfg.cluster.backends.len(), max_connections = max, "squall router serving");
    on_listening(addr);
    let router = Router::new(&cfg.cluster.gateways, &cfg.cluster.backends);
    rt.block_on(async move {
        listener.set_nonblocking(true)?;
        let listener = tokio::net::TcpListener::from_std(listener)?;
        tokio::select! {
            _ = router.serve(listener, max) => {}
            r = wait_for_signal() => r?,
        }
        tracing::info!("squall router stopping");
        Ok(())
    })
}
