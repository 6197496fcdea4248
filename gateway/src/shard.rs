//! One pinned monoio executor per core.
//!
//! Each core thread owns a [`CoreState`] (the queues of its users), accepts
//! connections on the shared listening socket, drains its inbox, and runs
//! its own GC timer. Cores share nothing mutable: the only things they hold
//! in common are the inboxes (lock-free queues) and immutable handles.
//! io_uring is used when the kernel allows it, epoll otherwise.

use crate::core::{CoreState, HeartbeatTimer, Item, Timing};
use crate::inbox::Inbox;
use squall_backend::users::User;
use squall_backend::App;
use squall_proto::Shard;
use squall_shard_router::placement::Topology;
use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How often each core collects expired queues (Zulip: 60 s).
pub const GC_INTERVAL: Duration = Duration::from_secs(60);

/// Unix time in seconds.
pub fn now_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// What a core's tasks share (all on the core's own thread).
pub struct CoreCtx {
    /// This core.
    pub shard: Shard,
    /// Cluster shape.
    pub topo: Topology,
    /// Every core's inbox, for hand-offs.
    pub inboxes: Arc<Vec<Arc<Inbox>>>,
    /// The queues this core owns.
    pub state: RefCell<CoreState>,
    /// The backend.
    pub app: App,
    /// The backend's runtime.
    pub tokio: tokio::runtime::Handle,
    /// Recently authenticated credentials → user.
    pub auth_cache: RefCell<HashMap<String, (User, Instant)>>,
    /// Secret the internal endpoints require.
    pub shared_secret: Arc<str>,
}

/// Arms a heartbeat timer on this core.
pub fn arm_heartbeat(ctx: &Rc<CoreCtx>, t: HeartbeatTimer) {
    let ctx = ctx.clone();
    monoio::spawn(async move {
        monoio::time::sleep(Duration::from_secs(t.delay_secs)).await;
        ctx.state.borrow_mut().heartbeat(&t);
    });
}

/// Everything a core thread needs to start.
pub struct CoreStart {
    /// Which core.
    pub shard: Shard,
    /// Cluster shape.
    pub topo: Topology,
    /// All inboxes.
    pub inboxes: Arc<Vec<Arc<Inbox>>>,
    /// A clone of the shared listening socket.
    pub listener: std::net::TcpListener,
    /// The backend.
    pub app: App,
    /// The backend's runtime.
    pub tokio: tokio::runtime::Handle,
    /// Timing knobs.
    pub timing: Timing,
    /// Use io_uring when available.
    pub io_uring: bool,
    /// Where queues are saved at shutdown and restored at start.
    pub state_dir: std::path::PathBuf,
    /// The `restart` event restored queues receive (without `id`).
    pub restart_event: Arc<serde_json::Value>,
    /// Where missed-message notifications go.
    pub publisher: crate::amqp::Publisher,
    /// Secret the internal endpoints require.
    pub shared_secret: Arc<str>,
}

/// Runs a core until it receives [`Item::Shutdown`]. Blocks the thread.
pub fn run_core(start: CoreStart) -> std::io::Result<()> {
    let cpus = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    if let Err(e) = monoio::utils::bind_to_cpu_set(Some(start.shard.core as usize % cpus)) {
        tracing::warn!(core = start.shard.core, error = %e, "could not pin core thread");
    }
    if start.io_uring {
        let mut rt = monoio::RuntimeBuilder::<monoio::FusionDriver>::new().enable_timer().build()?;
        rt.block_on(core_main(start))
    } else {
        let mut rt = monoio::RuntimeBuilder::<monoio::LegacyDriver>::new().enable_timer().build()?;
        rt.block_on(core_main(start))
    }
}

async fn core_main(start: CoreStart) -> std::io::Result<()> {
    let state_dir = start.state_dir.clone();
    let restart_event = start.restart_event.clone();
    let listener = monoio::net::TcpListener::from_std(start.listener)?;
    let inbox = start.inboxes[start.shard.core as usize].clone();
    let mut state = CoreState::new(start.shard, start.timing);
    let publisher = start.publisher.clone();
    state.set_notification_sink(Box::new(move |n| publisher.publish(n)));
    // Restore before accepting anything, so no poll races the load.
    let restored = state.load_queues(&state_dir, start.topo, &restart_event);
    let ctx = Rc::new(CoreCtx {
        shard: start.shard,
        topo: start.topo,
        inboxes: start.inboxes,
        state: RefCell::new(state),
        app: start.app,
        tokio: start.tokio,
        auth_cache: RefCell::new(HashMap::new()),
        shared_secret: start.shared_secret.clone(),
    });
    tracing::info!(core = ctx.shard.core, restored, "core started");

    let accept_ctx = ctx.clone();
    monoio::spawn(async move {
        loop {
            match listener.accept().await {
                Ok((stream, _)) => {
                    let _ = stream.set_nodelay(true);
                    monoio::spawn(crate::conn::serve(stream, accept_ctx.clone()));
                }
                Err(e) => {
                    // Typically EMFILE: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    monoio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    });

    let gc_ctx = ctx.clone();
    monoio::spawn(async move {
        loop {
            monoio::time::sleep(GC_INTERVAL).await;
            let n = gc_ctx.state.borrow_mut().gc(now_secs());
            if n > 0 {
                tracing::debug!(core = gc_ctx.shard.core, expired = n, "garbage-collected queues");
            }
        }
    });

    loop {
        let item = inbox.pop().await;
        let now = now_secs();
        match item {
            Item::Shutdown => break,
            Item::Allocate { spec, reply } => {
                let id = ctx.state.borrow_mut().allocate(spec, now);
                let _ = reply.send(id);
            }
            Item::Peek { user_id, queue_id, reply } => {
                let _ = reply.send(ctx.state.borrow_mut().peek(user_id, &queue_id));
            }
            Item::Notice(notice) => ctx.state.borrow_mut().deliver(notice),
            Item::Events(call) => {
                let timer = ctx.state.borrow_mut().events(call, now);
                if let Some(t) = timer {
                    arm_heartbeat(&ctx, t);
                }
            }
            Item::Reload { max, immediate, reply } => {
                let _ = reply.send(ctx.state.borrow_mut().send_reload(max, immediate));
            }
        }
    }
    let mut state = ctx.state.borrow_mut();
    state.release_all();
    match state.save_queues(&state_dir, ctx.topo.cores) {
        Ok(n) => tracing::info!(core = ctx.shard.core, saved = n, dir = %state_dir.display(), "core stopped"),
        Err(e) => tracing::error!(core = ctx.shard.core, error = %e, "could not save queues"),
    }
    Ok(())
}
