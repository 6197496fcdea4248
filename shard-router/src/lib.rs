//! Who owns what in Squall.
//!
//! Every user's event queues live on exactly one gateway core of one node.
//! This crate is the single place that decides which: [`placement`] maps a
//! user id to a [`Shard`], [`ids`] encodes that shard into every queue id so
//! a request can be routed without a lookup table, [`envelope`] is the format
//! of an event travelling from the backend to the gateway, and [`split`] cuts
//! one envelope into the parts each core has to see.
//!
//! The crate has no async runtime dependency: the backend (tokio) and the
//! gateway (monoio) both use it.
#![warn(missing_docs)]

pub mod envelope;
pub mod flags;
pub mod ids;
pub mod placement;
pub mod split;

/// A gateway core on a gateway node: the owner of a set of users' queues.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Shard {
    /// Gateway node index, `0..nodes`.
    pub node: u16,
    /// Core index on that node, `0..cores`.
    pub core: u16,
}
