//! The node's cores as one process sees them: its own (by global index,
//! each with an inbox) and the way to the others, which live in sibling
//! gateway processes on the same host ([`Peers`]). Queue ids and placement
//! use global core indices, so a queue id names its process too: process
//! `p` of `P`, with `c` cores each, owns cores `p*c .. p*c + c`.

use crate::inbox::Inbox;
use crate::state::Item;
use futures_util::future::BoxFuture;
use squall_proto::envelope::Notice;
use std::ops::Range;
use std::os::fd::OwnedFd;
use std::sync::Arc;

/// A client connection on its way to another core: its socket, and the
/// bytes read from it but not yet handled.
pub struct Moving {
    /// The socket.
    pub fd: OwnedFd,
    /// Unhandled input (starting with the request that named the core).
    pub pending: Vec<u8>,
}

/// How a gateway process reaches its siblings. Neither call blocks: a
/// caller on a core's thread must never wait on another process.
pub trait Peers: Send + Sync + 'static {
    /// Hands a connection to the process owning `core`, which serves it
    /// from then on; gives it back if it cannot be sent now.
    fn hand_off(&self, core: u16, conn: Moving) -> Result<(), (String, Moving)>;

    /// Delivers a notice to `core` of another process; resolves once the
    /// owning process has it in that core's inbox.
    fn deliver(&self, core: u16, notice: Notice) -> BoxFuture<'static, Result<(), String>>;
}

/// This process's cores and its siblings.
pub struct Cores {
    base: u16,
    inboxes: Vec<Arc<Inbox>>,
    peers: Option<Arc<dyn Peers>>,
}

impl Cores {
    /// Cores `base .. base + inboxes.len()` here; others through `peers`.
    pub fn new(base: u16, inboxes: Vec<Arc<Inbox>>, peers: Option<Arc<dyn Peers>>) -> Self {
        Cores { base, inboxes, peers }
    }

    /// Global indices of this process's cores.
    pub fn local(&self) -> Range<u16> {
        self.base..self.base + self.inboxes.len() as u16
    }

    /// The inbox of `core` if this process owns it.
    pub fn inbox(&self, core: u16) -> Option<&Arc<Inbox>> {
        core.checked_sub(self.base).and_then(|i| self.inboxes.get(i as usize))
    }

    /// Every local inbox.
    pub fn inboxes(&self) -> &[Arc<Inbox>] {
        &self.inboxes
    }

    /// Delivers a notice part to `core`: into its inbox here (waiting for
    /// room, then until the core's journal holds what the notice did), or
    /// to its process (resolving once that process has it).
    pub async fn deliver(&self, core: u16, notice: Notice) -> Result<(), String> {
        match (self.inbox(core), &self.peers) {
            (Some(inbox), _) => {
                inbox.push_wait(Item::Notice(notice)).await;
                let (durable, on_disk) = futures_channel::oneshot::channel();
                inbox.push_wait(Item::Durable(durable)).await;
                // A core that stops meanwhile saves its queues itself.
                let _ = on_disk.await;
                Ok(())
            }
            (None, Some(peers)) => peers.deliver(core, notice).await,
            (None, None) => Err(format!("no core {core}")),
        }
    }

    /// Gives a client connection to `core`: its inbox here, or its
    /// process; gives it back when neither can take it now.
    pub fn hand_off(&self, core: u16, conn: Moving) -> Result<(), (String, Moving)> {
        match (self.inbox(core), &self.peers) {
            (Some(inbox), _) => inbox.push(Item::Connection(conn)).map_err(|item| match item {
                Item::Connection(conn) => (format!("core {core}: inbox full"), conn),
                _ => unreachable!("the inbox gives back what it was given"),
            }),
            (None, Some(peers)) => peers.hand_off(core, conn),
            (None, None) => Err((format!("no core {core}"), conn)),
        }
    }
}
