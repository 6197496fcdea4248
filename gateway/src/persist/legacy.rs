//! The previous dump format, Zulip's layout: one JSON array of
//! `[queue_id, descriptor]` pairs (`ClientDescriptor.to_dict`), every event
//! written out in full in every queue that holds it. Read only, one pair at
//! a time straight from the file: the pairs before a syntax error are
//! restored, and equal event texts (the same stream message in a thousand
//! queues) are interned so that they share one allocation again.

use super::{Damage, Restorer, SavedOptions};
use crate::queue::{EventQueue, Interner, SavedQueue};
use serde::de::{SeqAccess, Visitor};
use serde::{Deserialize, Serialize};
use std::io::Read;

/// A client descriptor as saved (Zulip's `ClientDescriptor.to_dict`; keys
/// added later default when absent).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SavedDescriptor {
    /// Owner.
    pub user_profile_id: i64,
    /// Owner's realm.
    pub realm_id: i64,
    /// The queue.
    pub event_queue: SavedQueue,
    /// Idle lifetime, seconds.
    pub queue_timeout: u64,
    /// Accepted event types (`null` = all).
    pub event_types: Option<Vec<String>>,
    /// Unix time of creation or of the latest park.
    pub last_connection_time: u64,
    /// Everything else about the queue.
    #[serde(flatten)]
    pub options: SavedOptions,
}

impl SavedDescriptor {
    /// A descriptor as the previous version saved it (to write test dumps).
    #[cfg(test)]
    pub(crate) fn from_descriptor(id: &str, d: &crate::descriptor::Descriptor) -> Self {
        let s = &d.spec;
        SavedDescriptor {
            user_profile_id: s.user_id,
            realm_id: s.realm_id,
            event_queue: d.queue.save(id),
            queue_timeout: s.queue_timeout_secs,
            event_types: s.event_types.clone(),
            last_connection_time: d.last_connection_time,
            options: SavedOptions::of(s),
        }
    }
}

/// Restores every pair of the array `reader` holds (after any leading
/// whitespace), in order, until the end or the first error.
pub(crate) fn read(reader: impl Read, restorer: &mut Restorer<'_>) -> Result<(), Damage> {
    let mut de = serde_json::Deserializer::from_reader(reader);
    let each = EachQueue { restorer, interner: Interner::default() };
    serde::Deserializer::deserialize_seq(&mut de, each).map_err(|e| Damage(e.to_string()))?;
    de.end().map_err(|e| Damage(e.to_string()))
}

/// Visits the array, restoring each pair as soon as it is parsed.
struct EachQueue<'r, 'a> {
    restorer: &'r mut Restorer<'a>,
    interner: Interner,
}

impl<'de> Visitor<'de> for EachQueue<'_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("an array of [queue_id, descriptor] pairs")
    }

    fn visit_seq<A: SeqAccess<'de>>(mut self, mut seq: A) -> Result<(), A::Error> {
        while let Some((id, d)) = seq.next_element::<(String, SavedDescriptor)>()? {
            let queue = EventQueue::restore(d.event_queue, &mut self.interner);
            let spec = d.options.into_spec(d.user_profile_id, d.realm_id, d.queue_timeout, d.event_types);
            self.restorer.add(&id, spec, queue, d.last_connection_time);
        }
        Ok(())
    }
}
