//! `squall serve`: one process, one port. Starts the backend's tokio
//! runtime and database pool, migrates, checks the host, binds, wires the
//! backend to the gateway through the in-process bus and adapter, and runs
//! until SIGINT/SIGTERM.

use crate::config::Config;
use crate::inprocess::InProcess;
use anyhow::Context;
use squall_backend::{App, Settings};
use squall_gateway::Gateway;
use std::sync::Arc;

/// Runs a single-node Squall until SIGINT/SIGTERM. `on_listening` is told
/// the bound address.
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

    crate::host::check(&cfg);
    let listener = bind(&cfg.listen)?;
    let addr = listener.local_addr()?;
    let server_generation = squall_backend::unix_time().as_secs() as i64;
    let gateway = Gateway::new(cfg.gateway(server_generation, shared_secret(&cfg)?));
    let settings = Settings {
        external_host: if cfg.external_host.is_empty() { addr.to_string() } else { cfg.external_host.clone() },
        scheme: "http".into(),
        server_generation,
        rate_limit_per_user: cfg.rate_limit_per_user,
        rate_limit_per_ip: cfg.rate_limit_per_ip,
    };
    let app = App::new(pool, Arc::new(gateway.bus()), settings);
    let publisher = crate::amqp::Publisher::spawn(rt.handle(), &cfg.amqp_url);
    if cfg.backend.soft_deactivate_interval_secs > 0 {
        rt.spawn(squall_backend::jobs::soft_deactivation(app.pool().clone(), cfg.backend.clone()));
    }
    let backend = Arc::new(InProcess::new(app, rt.handle().clone()));

    let driver = if cfg.io_uring && monoio_uring_available() { "io_uring" } else { "epoll" };
    tracing::info!(%addr, cores = cfg.core_count(), driver, "squall serving");
    on_listening(addr);

    let (stop, stopped) = futures_channel::oneshot::channel::<()>();
    rt.spawn(async move {
        match wait_for_signal().await {
            Ok(()) => tracing::info!("shutting down"),
            Err(e) => tracing::error!(error = %e, "cannot wait for signals; shutting down"),
        }
        let _ = stop.send(());
    });
    gateway
        .run(listener, backend, Arc::new(move |n| publisher.publish(n)), async move {
            let _ = stopped.await;
        })
        .context("running the gateway")?;
    Ok(())
}

fn monoio_uring_available() -> bool {
    squall_gateway::shard::io_uring_available()
}

/// Binds `addr` with a listen backlog large enough for every client of a
/// restarted server reconnecting at once.
fn bind(addr: &str) -> anyhow::Result<std::net::TcpListener> {
    let listener = std::net::TcpListener::bind(addr).with_context(|| format!("binding {addr}"))?;
    // std listens with a backlog of 128. Listening again on a listening
    // socket only changes its backlog; the kernel caps it at
    // net.core.somaxconn.
    // SAFETY: the fd is a valid, bound socket we own.
    if unsafe { libc::listen(std::os::fd::AsRawFd::as_raw_fd(&listener), 65_535) } != 0 {
        tracing::warn!(error = %std::io::Error::last_os_error(), "could not enlarge the listen backlog");
    }
    Ok(listener)
}

/// The configured secret of the internal endpoints, or a fresh random one
/// written to `<state_dir>/shared_secret` (mode 0600) for local tools.
pub fn shared_secret(cfg: &Config) -> anyhow::Result<String> {
    if !cfg.shared_secret.is_empty() {
        return Ok(cfg.shared_secret.clone());
    }
    let secret = format!("{:032x}", rand::random::<u128>());
    let dir = std::path::Path::new(&cfg.state_dir);
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let path = dir.join("shared_secret");
    std::fs::write(&path, &secret).with_context(|| format!("writing {}", path.display()))?;
    std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
    Ok(secret)
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
