//! Squall's real-time gateway: per-user event queues served by HTTP
//! long-polling on a thread-per-core monoio runtime, and the HTTP edge of a
//! single node.
//!
//! Request path, in order: [`shard`] runs one pinned executor per core, all
//! accepting on one listening socket → [`conn`] reads and frames HTTP
//! ([`http`]) → [`events`] serves `/events` on the core owning the queue
//! (here, or handed over through that core's [`inbox`]); [`internal`] serves
//! the event server's internal endpoints; everything else goes to the
//! [`backend::Backend`] → [`state`] holds each core's queues ([`registry`],
//! [`descriptor`], [`queue`]) and answers or parks long-polls; [`deliver`]
//! appends events to them. The backend publishes events through
//! [`bus::LocalBus`], which splits them per core into the inboxes.
//!
//! The gateway never links the backend: [`Gateway::run`] takes a bound
//! listener, a [`backend::Backend`] and a shutdown future, so tests run it
//! on port 0 with a fake backend and no database.
#![warn(missing_docs)]

pub mod auth;
pub mod backend;
pub mod bus;
pub mod clock;
pub mod config;
pub mod conn;
pub mod cores;
pub mod ctx;
mod deliver;
pub mod descriptor;
pub mod events;
pub mod filter;
pub mod fxhash;
pub mod guard;
pub mod http;
pub mod inbox;
pub mod internal;
pub mod journal;
pub mod notify;
pub mod park;
pub mod persist;
pub mod pool;
pub mod queue;
pub mod registry;
pub mod shard;
pub mod state;
pub mod stats;

pub use config::Config;

use backend::Backend;
use cores::{Cores, Peers};
use inbox::Inbox;
use shard::Notifier;
use squall_proto::Shard;
use squall_shard_router::placement::Topology;
use state::Item;
use stats::Stats;
use std::future::Future;
use std::sync::Arc;

/// A gateway before it runs: its inboxes exist (so the backend can be given
/// a [`bus::LocalBus`] first), its cores do not yet.
pub struct Gateway {
    cfg: Config,
    cores: Arc<Cores>,
    stats: Arc<Stats>,
}

impl Gateway {
    /// A gateway with `cfg.cores` cores, alone on its node.
    pub fn new(cfg: Config) -> Self {
        Self::with_peers(cfg, None)
    }

    /// Process `cfg.process` of `cfg.processes` on its node, reaching the
    /// others through `peers`.
    pub fn with_peers(cfg: Config, peers: Option<Arc<dyn Peers>>) -> Self {
        let cores = cfg.cores.max(1);
        let processes = cfg.processes.max(1);
        let process = cfg.process.min(processes - 1);
        let nodes = cfg.nodes.max(1);
        let node = cfg.node.min(nodes - 1);
        let inboxes = (0..cores).map(|_| Arc::new(Inbox::new(cfg.inbox_capacity))).collect();
        let cores_here = Arc::new(Cores::new(process * cores, inboxes, peers));
        Gateway {
            cfg: Config { cores, processes, process, nodes, node, ..cfg },
            cores: cores_here,
            stats: Arc::new(Stats::for_process(process * cores, cores)),
        }
    }

    /// The shape of the cluster: its nodes, and every process's cores on
    /// each.
    pub fn topology(&self) -> Topology {
        Topology { nodes: self.cfg.nodes, cores: self.cfg.cores * self.cfg.processes }
    }

    /// The in-process event bus into this gateway's cores (and, through the
    /// peers, the node's other processes).
    pub fn bus(&self) -> bus::LocalBus {
        bus::LocalBus::new(self.cores.clone(), self.cfg.node, self.topology())
    }

    /// This process's cores, for whoever feeds them from outside (a
    /// sibling's hand-offs and notices).
    pub fn cores(&self) -> Arc<Cores> {
        self.cores.clone()
    }

    /// The cores' counters (live while and after it runs).
    pub fn stats(&self) -> Arc<Stats> {
        self.stats.clone()
    }

    /// Serves `listener` until `shutdown` resolves, then completes every
    /// parked poll, saves the queues (if a state directory is set) and
    /// returns. Blocks the calling thread; the cores run on threads of
    /// their own. `notifier` receives missed-message notifications.
    pub fn run(
        self,
        listener: std::net::TcpListener,
        backend: Arc<dyn Backend>,
        notifier: Notifier,
        shutdown: impl Future<Output = ()>,
    ) -> std::io::Result<()> {
        listener.set_nonblocking(true)?;
        let topo = self.topology();
        let cfg = self.cfg;
        let restart_event = Arc::new(serde_json::json!({
            "type": "restart",
            "zulip_version": squall_proto::ZULIP_VERSION,
            "zulip_merge_base": squall_proto::ZULIP_MERGE_BASE,
            "zulip_feature_level": squall_proto::ZULIP_FEATURE_LEVEL,
            "server_generation": cfg.server_generation,
        }));
        let shared_secret: Arc<str> = Arc::from(cfg.shared_secret.as_str());
        let (started, starts) = std::sync::mpsc::channel();
        let mut threads = Vec::new();
        for c in self.cores.local() {
            let start = shard::CoreStart {
                shard: Shard { node: cfg.node, core: c },
                topo,
                cores: self.cores.clone(),
                listener: listener.try_clone()?,
                backend: backend.clone(),
                timing: cfg.timing,
                tick: cfg.tick,
                clock: cfg.clock.clone(),
                io_uring: cfg.io_uring,
                pin: cfg.pin_cores,
                state_dir: cfg.state_dir.clone(),
                journal: cfg.journal,
                restart_event: restart_event.clone(),
                notifier: notifier.clone(),
                shared_secret: shared_secret.clone(),
                internal_remote: cfg.internal_remote,
                limits: cfg.limits,
                queue_limits: cfg.queue_limits,
                stats: self.stats.clone(),
                started: started.clone(),
            };
            let spawned = std::thread::Builder::new().name(format!("squall-core-{c}")).spawn(move || {
                if let Err(e) = shard::run_core(start) {
                    tracing::error!(core = c, error = %e, "core failed");
                }
            });
            match spawned {
                Ok(t) => threads.push(t),
                Err(e) => {
                    stop_cores(self.cores.inboxes(), threads);
                    return Err(e);
                }
            }
        }
        drop((listener, started));
        // Every core reports once; a core that fails to start fails the run.
        for _ in 0..cfg.cores {
            let failure = match starts.recv() {
                Ok(Ok(())) => continue,
                Ok(Err(e)) => e,
                Err(_) => "a core stopped before it started".to_owned(),
            };
            stop_cores(self.cores.inboxes(), threads);
            return Err(std::io::Error::other(format!("a gateway core could not start: {failure}")));
        }
        block_on(shutdown);
        stop_cores(self.cores.inboxes(), threads);
        Ok(())
    }
}

/// Tells every core to stop and waits for their threads.
fn stop_cores(inboxes: &[Arc<Inbox>], threads: Vec<std::thread::JoinHandle<()>>) {
    for inbox in inboxes {
        block_on(inbox.push_wait(Item::Shutdown));
    }
    for t in threads {
        let _ = t.join();
    }
}

/// Runs a gateway on `listener` until `shutdown` resolves (see
/// [`Gateway::run`]); notifications are dropped.
pub fn run(
    cfg: Config,
    listener: std::net::TcpListener,
    backend: Arc<dyn Backend>,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    Gateway::new(cfg).run(listener, backend, Arc::new(|_| {}), shutdown)
}

/// Polls `f` to completion on this thread, parking between wake-ups. The
/// shutdown future is a channel or a signal from another runtime, so no
/// executor of our own is needed.
fn block_on<F: Future>(f: F) -> F::Output {
    struct Unpark(std::thread::Thread);
    impl std::task::Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = std::task::Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = std::task::Context::from_waker(&waker);
    let mut f = std::pin::pin!(f);
    loop {
        if let std::task::Poll::Ready(v) = f.as_mut().poll(&mut cx) {
            return v;
        }
        std::thread::park();
    }
}
