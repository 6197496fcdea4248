//! `squall serve`: one process, one port. Starts the backend's tokio
//! runtime and database pool, migrates, checks the host, binds, wires the
//! backend to the gateway through the in-process bus and adapter, and runs
//! until SIGINT/SIGTERM.

use crate::config::Config;
use crate::inprocess::InProcess;
use anyhow::Context;
use squall_backend::workers::{config::WorkersConfig, Workers};
use squall_backend::{App, Settings};
use squall_gateway::Gateway;
use std::sync::Arc;

/// What this process is: a single node (`squall serve`: backend and
/// gateway, events in-process) or gateway node `node` of a cluster (`squall
/// gateway`: events from RabbitMQ, queues allocated for the cluster's
/// backends).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Role {
    /// `squall serve`.
    Single,
    /// `squall gateway --node N`.
    Gateway {
        /// The node's index in `cluster.gateways`.
        node: u16,
    },
}

impl Role {
    /// The subcommand (and its arguments) that starts this role.
    fn subcommand(self) -> Vec<String> {
        match self {
            Role::Single => vec!["serve".into()],
            Role::Gateway { node } => vec!["gateway".into(), "--node".into(), node.to_string()],
        }
    }
}

/// Which process of a node this is: the first (which starts the others)
/// or one started by it.
#[derive(Debug, Clone, Copy)]
pub struct Child {
    /// This process's index (1..processes).
    pub index: u16,
    /// The node's `server_generation`, shared by all its processes.
    pub server_generation: i64,
}

/// Runs a single-node Squall until SIGINT/SIGTERM. With several gateway
/// processes the first one (`child` = `None`) binds the port, starts the
/// others (and restarts any that dies), and stops them when it stops.
/// `on_listening` is told the bound address (first process only).
pub fn serve(
    cfg: Config,
    role: Role,
    child: Option<Child>,
    on_listening: impl FnOnce(std::net::SocketAddr),
) -> anyhow::Result<()> {
    if role != Role::Single {
        cfg.check_cluster()?;
    }
    let open_files = match squall_kernel_tuning::raise_nofile_soft_limit() {
        Ok(n) => n,
        Err(e) => {
            tracing::warn!(error = %e, "could not raise the open-file soft limit");
            1024
        }
    };
    // A cluster's shape is fixed by its configuration: every host must
    // place users alike.
    let processes = match role {
        Role::Single => cfg.processes(open_files),
        Role::Gateway { .. } => cfg.gateway_processes.max(1),
    };
    let index = child.map(|c| c.index).unwrap_or(0);
    let run_dir = std::path::Path::new(&cfg.state_dir).join("run");
    std::fs::create_dir_all(&run_dir).with_context(|| format!("creating {}", run_dir.display()))?;
    // One family of processes per state directory: a second `serve` would
    // share the port (SO_REUSEPORT) and the sibling sockets unnoticed.
    let _lock = if child.is_none() { Some(crate::status::lock(&run_dir)?) } else { None };
    crate::status::write_pid(&run_dir, index);

    let needed = cfg.processes_needed(open_files);
    if child.is_none() && needed > processes {
        tracing::warn!(
            needed,
            processes,
            open_files,
            expected_connections = cfg.expected_connections,
            "expected_connections needs more gateway processes than squall starts unasked; set SQUALL_GATEWAY_PROCESSES"
        );
    }
    if child.is_none() && processes > cfg.gateway_processes && role == Role::Single {
        tracing::info!(
            processes,
            configured = cfg.gateway_processes,
            open_files,
            expected_connections = cfg.expected_connections,
            "starting more gateway processes than configured: one process cannot hold the expected connections"
        );
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(cfg.backend.worker_threads.max(1))
        .thread_name(format!("squall-p{index}-backend"))
        .enable_all()
        .build()
        .context("starting the backend runtime")?;
    // The pool size is the host's: the processes share it out.
    let pool_size = cfg.backend.pool_size.div_ceil(processes as usize).max(2);
    let pool = squall_backend::db::connect(&cfg.backend.database_url, pool_size)?;
    if cfg.migrate_on_start && child.is_none() && role == Role::Single {
        rt.block_on(squall_backend::db::migrate(&pool))
            .with_context(|| format!("migrating {}", cfg.backend.database_url))?;
    }
    if child.is_none() {
        crate::host::check(&cfg, open_files);
    }
    let listener = bind(&cfg.listen)?;
    let addr = listener.local_addr()?;
    let server_generation =
        child.map(|c| c.server_generation).unwrap_or_else(|| squall_backend::unix_time().as_secs() as i64);
    let secret = shared_secret(&cfg)?;
    let peers: Option<Arc<dyn squall_gateway::cores::Peers>> = if processes > 1 {
        let links = crate::siblings::Siblings::new(&run_dir, index, processes, cfg.cores_per_process(processes))
            .context("starting the links to the sibling processes")?;
        Some(Arc::new(links))
    } else {
        None
    };
    let mut gateway_cfg = cfg.gateway(index, processes, server_generation, secret.clone());
    gateway_cfg.limits = cfg.connections.gateway(open_files);
    if let Role::Gateway { node } = role {
        anyhow::ensure!(
            (node as usize) < cfg.cluster.gateways.len(),
            "--node {node}: cluster.gateways lists {} node(s)",
            cfg.cluster.gateways.len()
        );
        gateway_cfg.nodes = cfg.cluster.gateways.len() as u16;
        gateway_cfg.node = node;
        gateway_cfg.internal_remote = true;
    }
    let gateway = Gateway::with_peers(gateway_cfg, peers);
    if processes > 1 {
        crate::siblings::listen(&run_dir, index, gateway.cores())
            .with_context(|| format!("listening for sibling processes in {}", run_dir.display()))?;
    }
    rt.spawn(crate::status::report(run_dir.clone(), index, gateway.stats()));
    let settings = Settings {
        external_host: match role {
            _ if !cfg.external_host.is_empty() => cfg.external_host.clone(),
            Role::Single => addr.to_string(),
            Role::Gateway { .. } => cfg.cluster.router_listen.clone(),
        },
        scheme: "http".into(),
        server_generation,
        rate_limit_per_user: cfg.rate_limit_per_user,
        rate_limit_per_ip: cfg.rate_limit_per_ip,
    };
    // One node: events go straight into the cores. A cluster's gateway
    // node answers REST calls sent to it directly like a backend does,
    // with the cluster's bus; its own cores are fed from its queue.
    let bus: Arc<dyn squall_proto::bus::EventBus> = match role {
        Role::Single => Arc::new(gateway.bus()),
        Role::Gateway { node } => {
            rt.spawn(crate::cluster::consume::run(cfg.amqp_url.clone(), node, index, gateway.cores(), gateway.stats()));
            Arc::new(crate::cluster::bus::ClusterBus::new(
                &cfg.cluster.gateways,
                processes,
                cfg.cores_per_process(processes),
                &cfg.amqp_url,
                &secret,
                &format!("squall gateway {node}.{index}"),
            )?)
        }
    };
    let publisher = crate::amqp::Publisher::spawn(rt.handle(), &cfg.amqp_url);
    let app = App::new(pool, bus, settings).with_jobs(Arc::new(crate::workers::Jobs(publisher.clone())));
    rt.spawn(app.cache_listener(&cfg.backend.database_url));
    // One node runs its queue workers in its first process (a cluster runs
    // them with `squall worker`).
    if child.is_none() && role == Role::Single {
        let queues = WorkersConfig::resolve_queues(&cfg.workers.queues).map_err(anyhow::Error::msg)?;
        if cfg.amqp_url.is_empty() {
            if !queues.is_empty() {
                tracing::warn!(
                    "no AMQP URL: queue workers (emails, push, previews, outgoing webhooks) are not running"
                );
            }
        } else if !queues.is_empty() {
            let pool = squall_backend::db::connect_with_wait(
                &cfg.backend.database_url,
                cfg.workers.pool_size,
                Some(std::time::Duration::from_secs(10)),
            )?;
            let workers = Workers::new(app.with_pool(pool), cfg.workers.clone()).map_err(anyhow::Error::msg)?;
            let _rt = rt.enter();
            crate::workers::spawn(workers, &cfg.amqp_url, queues, "squall");
        }
    }
    if cfg.backend.soft_deactivate_interval_secs > 0 && child.is_none() && role == Role::Single {
        rt.spawn(squall_backend::jobs::soft_deactivation(app.pool().clone(), cfg.backend.clone()));
    }
    let backend = Arc::new(InProcess::new(app, rt.handle().clone()));

    let family = match (child, processes) {
        (None, n) if n > 1 => {
            let cores = cfg.cores_per_process(n);
            Some(crate::family::Family::start(
                &role.subcommand(),
                addr,
                n,
                cores,
                server_generation,
                &secret,
                &run_dir,
            )?)
        }
        _ => None,
    };
    let stopping = family.as_ref().map(|f| f.stopper());
    let driver = if cfg.io_uring && monoio_uring_available() { "io_uring" } else { "epoll" };
    let node = match role {
        Role::Single => None,
        Role::Gateway { node } => Some(node),
    };
    tracing::info!(%addr, ?node, process = index, processes, cores = cfg.cores_per_process(processes), driver, "squall serving");
    if child.is_none() {
        on_listening(addr);
    }

    let (stop, stopped) = futures_channel::oneshot::channel::<()>();
    rt.spawn(async move {
        match wait_for_signal().await {
            Ok(()) => tracing::info!(process = index, "shutting down"),
            Err(e) => tracing::error!(error = %e, "cannot wait for signals; shutting down"),
        }
        // The other processes stop alongside, and are not restarted.
        if let Some(stopping) = stopping {
            stopping.stop();
        }
        let _ = stop.send(());
    });
    let ran = gateway
        .run(listener, backend, Arc::new(move |n| publisher.publish(n)), async move {
            let _ = stopped.await;
        })
        .context("running the gateway");
    if let Some(family) = family {
        family.wait();
    }
    ran
}

fn monoio_uring_available() -> bool {
    squall_gateway::shard::io_uring_available()
}

/// Binds `addr` for every gateway process of the host (`SO_REUSEPORT`:
/// the kernel spreads new connections over them) with a listen backlog
/// large enough for every client of a restarted server reconnecting at
/// once (the kernel caps it at net.core.somaxconn).
pub fn bind(addr: &str) -> anyhow::Result<std::net::TcpListener> {
    use std::net::ToSocketAddrs;
    let sa = addr.to_socket_addrs().with_context(|| format!("resolving {addr}"))?.next().context("no address")?;
    let socket = socket2::Socket::new(socket2::Domain::for_address(sa), socket2::Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.bind(&sa.into()).with_context(|| format!("binding {addr}"))?;
    socket.listen(65_535)?;
    Ok(socket.into())
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

pub async fn wait_for_signal() -> anyhow::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).context("installing SIGTERM handler")?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => r.context("waiting for SIGINT")?,
        _ = term.recv() => {}
    }
    Ok(())
}
