//! The node's cores as one process sees them: its own (by global index,
//! each with an inbox) and the way to the others, which live in sibling
//! gateway processes on the same host ([`Peers`]). Queue ids and placement
//! use global core indices, so a queue id names its process too: process
//! `p` of `P`, with `c` cores each, owns cores `p*c .. p*c + c`.

use crate::inbox::Inbox;
use crate::state::Item;
use squall_proto::envelope::Notice;
use std::ops::Range;
use std::os::fd::OwnedFd;
use std::sync::Arc;

/// How a gateway process reaches its siblings.
pub trait Peers: Send + Sync + 'static {
    /// Hands a client connection (and the bytes read from it but not yet
    /// handled) to the process owning `core`, which serves it from then on.
    fn hand_off(&self, core: u16, fd: OwnedFd, pending: Vec<u8>) -> Result<(), String>;

    /// Delivers a notice to `core` of another process.
    fn deliver(&self, core: u16, notice: Notice) -> Result<(), String>;
}

/// This process's cores and its siblings.
pub struct Cores {
    base: u16,
    inboxes: Vec<Arc<Inbox>>,
    peers: Option<Arc<dyn Peers>>,
}

/// Why something could not reach a core.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unreachable {
    /// The core's inbox is full.
    Full,
    /// No such core, or its process cannot be reached.
    Gone(String),
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

    /// Delivers a notice part to `core` without waiting: its inbox here, or
    /// its process.
    pub fn deliver(&self, core: u16, notice: Notice) -> Result<(), Unreachable> {
        match (self.inbox(core), &self.peers) {
            (Some(inbox), _) => inbox.push(Item::Notice(notice)).map_err(|_| Unreachable::Full),
            (None, Some(peers)) => peers.deliver(core, notice).map_err(Unreachable::Gone),
            (None, None) => Err(Unreachable::Gone(format!("no core {core}"))),
        }
    }

    /// Gives a client connection to `core`: its inbox here, or its process.
    pub fn hand_off(&self, core: u16, fd: OwnedFd, pending: Vec<u8>) -> Result<(), Unreachable> {
        match (self.inbox(core), &self.peers) {
            (Some(inbox), _) => inbox.push(Item::Connection { fd, pending }).map_err(|_| Unreachable::Full),
            (None, Some(peers)) => peers.hand_off(core, fd, pending).map_err(Unreachable::Gone),
            (None, None) => Err(Unreachable::Gone(format!("no core {core}"))),
        }
    }
}
