//! Who owns what in Squall.
//!
//! Every user's event queues live on exactly one gateway core of one node.
//! This crate is the single place that decides which: [`placement`] maps a
//! user id to a [`squall_proto::Shard`] (which every queue id carries, so a
//! request is routed without a lookup table), and [`split`] cuts one notice
//! into the parts each core has to see.
//!
//! The crate has no async runtime dependency: the backend (tokio) and the
//! gateway (monoio) both use it.
#![warn(missing_docs)]

pub mod placement;
pub mod split;
