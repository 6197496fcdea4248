//! One pinned monoio executor per core.
//!
//! Each core thread owns a [`CoreState`] (the queues of its users), accepts
//! connections on the shared listening socket, drains its inbox, and ticks
//! its clock (heartbeats, queue expiry). Cores share nothing mutable: the
//! only things they hold in common are the inboxes (lock-free queues),
//! counters and immutable handles. io_uring is used when the kernel allows
//! it, epoll otherwise.

use crate::backend::Backend;
use crate::clock::Clock;
use crate::cores::Cores;
use crate::ctx::CoreCtx;
use crate::inbox::Inbox;
use crate::notify::Notification;
use crate::state::{CoreState, Item, Timing};
use crate::stats::Stats;
use squall_proto::Shard;
use squall_shard_router::placement::Topology;
use std::cell::{Cell, RefCell};
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

/// Where a core hands the notifications it decides (must not block).
pub type Notifier = Arc<dyn Fn(Notification) + Send + Sync>;

/// Everything a core thread needs to start.
pub struct CoreStart {
    /// Which core.
    pub shard: Shard,
    /// Cluster shape.
    pub topo: Topology,
    /// This process's cores and the way to the others.
    pub cores: Arc<Cores>,
    /// A clone of the shared listening socket.
    pub listener: std::net::TcpListener,
    /// Everything that is not `/events`.
    pub backend: Arc<dyn Backend>,
    /// Timing knobs.
    pub timing: Timing,
    /// How often to tick.
    pub tick: Duration,
    /// Where "now" comes from.
    pub clock: Clock,
    /// Use io_uring when available.
    pub io_uring: bool,
    /// Pin the thread to a CPU.
    pub pin: bool,
    /// Where queues are saved at shutdown and restored at start.
    pub state_dir: Option<PathBuf>,
    /// Journal the queues in `state_dir` so that they survive a crash.
    pub journal: Option<crate::journal::JournalOptions>,
    /// The `restart` event restored queues receive (without `id`).
    pub restart_event: Arc<serde_json::Value>,
    /// Where missed-message notifications go.
    pub notifier: Notifier,
    /// Secret the internal endpoints require.
    pub shared_secret: Arc<str>,
    /// The internal endpoints answer peers beyond loopback.
    pub internal_remote: bool,
    /// Connection deadlines and admission bounds.
    pub limits: crate::guard::Limits,
    /// Bounds on queues.
    pub queue_limits: crate::state::QueueLimits,
    /// Every core's counters.
    pub stats: Arc<Stats>,
    /// Told once the core serves (its queues restored), or why it cannot.
    pub started: std::sync::mpsc::Sender<Result<(), String>>,
}

/// Runs a core until it receives [`Item::Shutdown`]. Blocks the thread.
pub fn run_core(start: CoreStart) -> std::io::Result<()> {
    let started = start.started.clone();
    let result = run_runtime(start);
    if let Err(e) = &result {
        // Only heard if the core failed before it said it started.
        let _ = started.send(Err(e.to_string()));
    }
    result
}

fn run_runtime(start: CoreStart) -> std::io::Result<()> {
    if start.pin {
        let cpus = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
        if let Err(e) = monoio::utils::bind_to_cpu_set(Some(start.shard.core as usize % cpus)) {
            tracing::warn!(core = start.shard.core, error = %e, "could not pin core thread");
        }
    }
    if start.io_uring && monoio::utils::detect_uring() {
        let mut rt = monoio::RuntimeBuilder::<monoio::FusionDriver>::new().enable_timer().build()?;
        rt.block_on(core_main(start))
    } else {
        let mut rt = monoio::RuntimeBuilder::<monoio::LegacyDriver>::new().enable_timer().build()?;
        rt.block_on(core_main(start))
    }
}

async fn core_main(start: CoreStart) -> std::io::Result<()> {
    let listener = monoio::net::TcpListener::from_std(start.listener)?;
    let inbox = start
        .cores
        .inbox(start.shard.core)
        .cloned()
        .ok_or_else(|| std::io::Error::other(format!("core {} is not this process's", start.shard.core)))?;
    let mut state = CoreState::with_stats(start.shard, start.timing, start.stats.clone());
    let notifier = start.notifier.clone();
    state.set_notification_sink(Box::new(move |n| notifier(n)));
    state.start_expiry(start.clock.now_secs());
    state.set_queue_limits(start.queue_limits);
    // Restore before accepting anything, so no poll races the load.
    let (restored, journal) = match (&start.state_dir, start.journal) {
        (Some(dir), Some(opts)) => {
            let now = start.clock.now_secs();
            let (n, started) = crate::journal::files::start(&mut state, dir, start.topo, &start.restart_event, now);
            (n, started.map(|s| (s, opts)))
        }
        (Some(dir), None) => (state.load_queues(dir, start.topo, &start.restart_event), None),
        (None, _) => (0, None),
    };
    let ctx = Rc::new(CoreCtx {
        shard: start.shard,
        topo: start.topo,
        cores: start.cores,
        state: RefCell::new(state),
        backend: start.backend,
        watch: crate::guard::Watchlist::new(start.limits),
        shared_secret: start.shared_secret,
        internal_remote: start.internal_remote,
        clock: start.clock,
        stats: start.stats,
        shutting_down: Cell::new(false),
        stop_requested: Cell::new(false),
    });
    tracing::info!(core = ctx.shard.core, restored, "core started");
    let _ = start.started.send(Ok(()));
    let journal = journal.map(|(started, opts)| crate::journal::files::spawn_writer(ctx.clone(), started, opts));
    monoio::spawn(accept_loop(listener, ctx.clone()));
    monoio::spawn(tick_loop(ctx.clone(), start.tick));
    drain_inbox(&inbox, &ctx).await;

    // Stop taking work, answer the parked polls, then save: nothing can
    // change the queues after the dump.
    ctx.shutting_down.set(true);
    settle(&inbox, &ctx).await;
    ctx.state.borrow_mut().release_all();
    // The journal is finished first: should saving fail, it still holds
    // everything. Once the dump is saved it supersedes the journal.
    let journal = match journal {
        Some(closing) => Some(closing.finish(SETTLE_GRACE).await),
        None => None,
    };
    {
        let mut state = ctx.state.borrow_mut();
        if let Some(j) = state.journal.take() {
            j.abandon();
        }
        if let Some(dir) = &start.state_dir {
            match state.save_queues(dir, ctx.topo.cores) {
                Ok(n) => {
                    tracing::info!(core = ctx.shard.core, saved = n, dir = %dir.display(), "queues saved");
                    if let Some(j) = journal {
                        j.remove();
                    }
                }
                Err(e) => {
                    tracing::error!(core = ctx.shard.core, error = %e, "could not save queues (the journal keeps them)")
                }
            }
        }
    }
    // Let the answered polls be written; connections close after their
    // response. Idle keep-alive connections are not waited for long.
    let deadline = std::time::Instant::now() + SHUTDOWN_GRACE;
    while ctx.counters().connections.load(std::sync::atomic::Ordering::Relaxed) > 0
        && std::time::Instant::now() < deadline
    {
        monoio::time::sleep(Duration::from_millis(5)).await;
    }
    tracing::info!(core = ctx.shard.core, "core stopped");
    Ok(())
}

/// How long a stopping core waits for its connections to finish writing.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(1);
/// How long a stopping core waits for requests under way (a send whose
/// events are still to come) before it saves its queues.
pub const SETTLE_GRACE: Duration = Duration::from_secs(5);

/// Before a stopping core saves: lets the process's requests under way
/// finish and takes the events they publish, so that a send acknowledged
/// during a graceful restart is in the saved queues. New requests are
/// refused meanwhile (503), so this ends; [`SETTLE_GRACE`] bounds it.
async fn settle(inbox: &Inbox, ctx: &Rc<CoreCtx>) {
    let deadline = std::time::Instant::now() + SETTLE_GRACE;
    loop {
        while let Some(item) = inbox.try_pop() {
            let left = ctx.state.borrow_mut().handle(item, ctx.clock.now_ms());
            if let Some(Item::Connection(conn)) = left {
                crate::conn::adopt(conn, ctx);
            }
        }
        let busy = ctx.stats.totals().in_flight > 0;
        if (!busy && inbox.is_empty()) || std::time::Instant::now() >= deadline {
            return;
        }
        monoio::time::sleep(Duration::from_millis(2)).await;
    }
}

async fn accept_loop(listener: monoio::net::TcpListener, ctx: Rc<CoreCtx>) {
    let mut failures = AcceptFailures::default();
    loop {
        match listener.accept().await {
            // Stopping: new connections are closed at once.
            Ok(_) if ctx.shutting_down.get() => {}
            Ok((stream, _)) => {
                let _ = stream.set_nodelay(true);
                if admit(&ctx) {
                    monoio::spawn(crate::conn::serve(stream, ctx.clone(), Vec::new()));
                } else {
                    monoio::spawn(crate::conn::turn_away(stream));
                }
            }
            Err(e) => {
                // Out of descriptors: make room by closing connections that
                // wait for their clients, and say so once in a while rather
                // than once per failure.
                let shed = match e.raw_os_error() {
                    Some(EMFILE | ENFILE) => ctx.watch.shed(16, false),
                    _ => 0,
                };
                failures.note(&e, shed);
                if shed == 0 {
                    monoio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        }
    }
}

/// Too many open files (process, system): Linux's errno values.
const EMFILE: i32 = 24;
const ENFILE: i32 = 23;

/// Whether a new connection may stay: room is made by shedding connections
/// that wait for their clients (oldest first) when the process is at
/// `max_connections` or this core at `max_unserved`; false when none can go.
fn admit(ctx: &CoreCtx) -> bool {
    let limits = *ctx.watch.limits();
    if ctx.watch.unserved() >= limits.max_unserved {
        ctx.watch.shed(1, true);
    }
    if limits.max_connections == 0 {
        return true;
    }
    let open = ctx.stats.totals().connections.max(0) as usize;
    open < limits.max_connections || ctx.watch.shed(1, false) == 1
}

/// Accept failures, logged at most every [`ACCEPT_LOG_EVERY`].
#[derive(Default)]
struct AcceptFailures {
    since_log: u64,
    shed: usize,
    logged_at: Option<std::time::Instant>,
}

/// How often repeated accept failures are logged.
const ACCEPT_LOG_EVERY: Duration = Duration::from_secs(10);

impl AcceptFailures {
    fn note(&mut self, e: &std::io::Error, shed: usize) {
        self.since_log += 1;
        self.shed += shed;
        let now = std::time::Instant::now();
        if self.logged_at.is_none_or(|t| now.duration_since(t) >= ACCEPT_LOG_EVERY) {
            tracing::warn!(
                error = %e,
                failures = self.since_log,
                closed_waiting_connections = self.shed,
                "accept failed (counts since the last such message)"
            );
            self.logged_at = Some(now);
            self.since_log = 0;
            self.shed = 0;
        }
    }
}

async fn tick_loop(ctx: Rc<CoreCtx>, every: Duration) {
    while !ctx.shutting_down.get() {
        monoio::time::sleep(every).await;
        let now_ms = ctx.clock.now_ms();
        let expired = ctx.state.borrow_mut().tick(now_ms);
        ctx.watch.sweep(now_ms);
        crate::stats::CoreStats::bump(&ctx.counters().ticks);
        if expired > 0 {
            tracing::debug!(core = ctx.shard.core, expired, "garbage-collected queues");
        }
    }
}

/// Handles inbox items until [`Item::Shutdown`].
async fn drain_inbox(inbox: &Inbox, ctx: &Rc<CoreCtx>) {
    loop {
        let item = inbox.pop().await;
        let left = ctx.state.borrow_mut().handle(item, ctx.clock.now_ms());
        match left {
            None => {}
            Some(Item::Connection(conn)) => crate::conn::adopt(conn, ctx),
            Some(_) => return,
        }
        if ctx.stop_requested.get() {
            return;
        }
    }
}

/// Whether this kernel lets us use io_uring (otherwise cores run on epoll).
pub fn io_uring_available() -> bool {
    monoio::utils::detect_uring()
}
