//! What a core's tasks share, all on the core's own thread: its state (with
//! the credential cache), the other cores' inboxes, the backend. A leaf
//! module: it names things and calls nothing.

use crate::backend::Backend;
use crate::clock::Clock;
use crate::cores::Cores;
use crate::guard::Watchlist;
use crate::state::CoreState;
use crate::stats::{CoreStats, Stats};
use squall_proto::Shard;
use squall_shard_router::placement::Topology;
use std::cell::{Cell, RefCell};
use std::sync::Arc;

/// One core's shared context.
pub struct CoreCtx {
    /// This core.
    pub shard: Shard,
    /// Cluster shape.
    pub topo: Topology,
    /// This process's cores (their inboxes) and the way to the others.
    pub cores: Arc<Cores>,
    /// The queues this core owns.
    pub state: RefCell<CoreState>,
    /// Everything that is not `/events`.
    pub backend: Arc<dyn Backend>,
    /// The core's connections, their deadlines and admission.
    pub watch: Watchlist,
    /// Secret the internal endpoints require.
    pub shared_secret: Arc<str>,
    /// The internal endpoints answer peers beyond loopback.
    pub internal_remote: bool,
    /// Where "now" comes from.
    pub clock: Clock,
    /// Every core's counters.
    pub stats: Arc<Stats>,
    /// Set at shutdown: connections close after their current response.
    pub shutting_down: Cell<bool>,
    /// A stop item was taken from the inbox outside the core's loop.
    pub stop_requested: Cell<bool>,
}

impl CoreCtx {
    /// This core's counters.
    pub fn counters(&self) -> &CoreStats {
        self.stats.core(self.shard.core)
    }
}
