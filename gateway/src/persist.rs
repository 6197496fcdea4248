//! Queues across restarts (Zulip's `dump_event_queues` /
//! `load_event_queues`).
//!
//! At graceful shutdown each core writes its own queues, with their
//! undelivered events, to its own file, so no core waits for another: as in
//! Zulip, `event_queues.json` when there is one (renamed to
//! `event_queues.json.last` once loaded), `event_queues.<core>.json`
//! (→ `event_queues.<core>.last.json`) when there are several. At start each
//! core reads its file, renames it, restores the queues (same ids, same
//! `last_connection_time`, so idle time keeps counting) and gives each one
//! that accepts it a `restart` event. A missing file means no queues; a
//! corrupt one is logged and ignored.

use crate::descriptor::Descriptor;
use crate::queue::{EventQueue, SavedQueue};
use crate::state::CoreState;
use serde::{Deserialize, Serialize};
use squall_proto::ids::QueueId;
use squall_proto::queue_spec::QueueSpec;
use squall_shard_router::placement::Topology;
use std::path::{Path, PathBuf};

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

/// Delivery options and capabilities; all default when missing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SavedOptions {
    /// Creating client's name.
    pub client_type_name: String,
    /// HTML content.
    pub apply_markdown: bool,
    /// Null Gravatar URLs.
    pub client_gravatar: bool,
    /// Presence without email.
    pub slim_presence: bool,
    /// Realm-wide public-stream watcher.
    pub all_public_streams: bool,
    /// `[operator, operand]` pairs.
    pub narrow: Vec<(String, String)>,
    /// Capability.
    pub bulk_message_deletion: bool,
    /// Capability.
    pub stream_typing_notifications: bool,
    /// Capability.
    pub user_settings_object: bool,
    /// Capability.
    pub linkifier_url_template: bool,
    /// Capability.
    pub user_list_incomplete: bool,
    /// Capability.
    pub include_deactivated_groups: bool,
    /// Capability (defaults to true, as in Zulip).
    pub pronouns_field_type_supported: bool,
}

impl Default for SavedOptions {
    fn default() -> Self {
        let d = QueueSpec::default();
        SavedOptions {
            client_type_name: d.client_type_name,
            apply_markdown: d.apply_markdown,
            client_gravatar: d.client_gravatar,
            slim_presence: d.slim_presence,
            all_public_streams: d.all_public_streams,
            narrow: d.narrow,
            bulk_message_deletion: d.bulk_message_deletion,
            stream_typing_notifications: d.stream_typing_notifications,
            user_settings_object: d.user_settings_object,
            linkifier_url_template: d.linkifier_url_template,
            user_list_incomplete: d.user_list_incomplete,
            include_deactivated_groups: d.include_deactivated_groups,
            pronouns_field_type_supported: d.pronouns_field_type_supported,
        }
    }
}

impl SavedDescriptor {
    fn from_descriptor(id: &str, d: &Descriptor) -> Self {
        let s = &d.spec;
        SavedDescriptor {
            user_profile_id: s.user_id,
            realm_id: s.realm_id,
            event_queue: d.queue.save(id),
            queue_timeout: s.queue_timeout_secs,
            event_types: s.event_types.clone(),
            last_connection_time: d.last_connection_time,
            options: SavedOptions {
                client_type_name: s.client_type_name.clone(),
                apply_markdown: s.apply_markdown,
                client_gravatar: s.client_gravatar,
                slim_presence: s.slim_presence,
                all_public_streams: s.all_public_streams,
                narrow: s.narrow.clone(),
                bulk_message_deletion: s.bulk_message_deletion,
                stream_typing_notifications: s.stream_typing_notifications,
                user_settings_object: s.user_settings_object,
                linkifier_url_template: s.linkifier_url_template,
                user_list_incomplete: s.user_list_incomplete,
                include_deactivated_groups: s.include_deactivated_groups,
                pronouns_field_type_supported: s.pronouns_field_type_supported,
            },
        }
    }

    fn into_parts(self) -> (QueueSpec, EventQueue, u64) {
        let o = self.options;
        let spec = QueueSpec {
            user_id: self.user_profile_id,
            realm_id: self.realm_id,
            client_type_name: o.client_type_name,
            event_types: self.event_types,
            narrow: o.narrow,
            apply_markdown: o.apply_markdown,
            client_gravatar: o.client_gravatar,
            slim_presence: o.slim_presence,
            all_public_streams: o.all_public_streams,
            queue_timeout_secs: self.queue_timeout,
            bulk_message_deletion: o.bulk_message_deletion,
            stream_typing_notifications: o.stream_typing_notifications,
            user_settings_object: o.user_settings_object,
            linkifier_url_template: o.linkifier_url_template,
            user_list_incomplete: o.user_list_incomplete,
            include_deactivated_groups: o.include_deactivated_groups,
            pronouns_field_type_supported: o.pronouns_field_type_supported,
        };
        (spec, EventQueue::restore(self.event_queue), self.last_connection_time)
    }
}

/// Where `core` of `cores` saves its queues.
pub fn dump_path(dir: &Path, core: u16, cores: u16) -> PathBuf {
    if cores <= 1 {
        dir.join("event_queues.json")
    } else {
        dir.join(format!("event_queues.{core}.json"))
    }
}

/// What a loaded dump is renamed to.
pub fn last_path(dir: &Path, core: u16, cores: u16) -> PathBuf {
    if cores <= 1 {
        dir.join("event_queues.json.last")
    } else {
        dir.join(format!("event_queues.{core}.last.json"))
    }
}

impl CoreState {
    /// Writes every queue of this core to `dir` (write to a temporary file,
    /// then rename, so a crash never leaves half a file). Returns how many.
    pub fn save_queues(&mut self, dir: &Path, cores: u16) -> std::io::Result<usize> {
        let list: Vec<(String, SavedDescriptor)> = self
            .reg
            .iter()
            .map(|(id, d)| {
                let id = id.to_string();
                let saved = SavedDescriptor::from_descriptor(&id, d);
                (id, saved)
            })
            .collect();
        std::fs::create_dir_all(dir)?;
        let path = dump_path(dir, self.shard.core, cores);
        let tmp = path.with_extension("json.tmp");
        std::fs::write(&tmp, serde_json::to_vec(&list).map_err(std::io::Error::other)?)?;
        std::fs::rename(&tmp, &path)?;
        Ok(list.len())
    }

    /// Restores this core's queues from `dir` and queues a `restart` event
    /// (`restart_event`, without `id`) on each that accepts it. Queues that
    /// no longer belong here (the core count changed) are dropped; their
    /// clients re-register on `BAD_EVENT_QUEUE_ID`. Returns how many loaded.
    pub fn load_queues(&mut self, dir: &Path, topo: Topology, restart_event: &serde_json::Value) -> usize {
        let path = dump_path(dir, self.shard.core, topo.cores);
        let text = match std::fs::read(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return 0,
            Err(e) => {
                tracing::error!(path = %path.display(), error = %e, "cannot read saved queues; starting empty");
                return 0;
            }
        };
        let _ = std::fs::rename(&path, last_path(dir, self.shard.core, topo.cores));
        let list: Vec<(String, SavedDescriptor)> = match serde_json::from_slice(&text) {
            Ok(l) => l,
            Err(e) => {
                tracing::error!(path = %path.display(), error = %e, "saved queues are corrupt; starting empty");
                return 0;
            }
        };
        let mut loaded = 0;
        let mut dropped = 0;
        for (id, saved) in list {
            let id = match QueueId::parse(&id) {
                Some(q) if self.reg.get(q).is_some() => {
                    tracing::warn!(queue_id = %q, "a saved queue appears twice; keeping the first");
                    continue;
                }
                Some(q) if q.shard == self.shard && topo.shard_of(saved.user_profile_id) == self.shard => q,
                _ => {
                    dropped += 1;
                    continue;
                }
            };
            let (spec, queue, last_connection_time) = saved.into_parts();
            self.insert_queue(id, spec, queue, last_connection_time);
            let accepts = self.reg.get(id).is_some_and(|d| crate::filter::accepts_event(&d.spec, restart_event));
            if accepts {
                self.push_body(id, crate::queue::EventBody::Shared(std::rc::Rc::from(restart_event.to_string())));
            }
            let reload = serde_json::json!({"type": "web_reload_client"});
            if let Some(d) = self.reg.get(id).filter(|d| crate::filter::accepts_event(&d.spec, &reload)) {
                self.reload_pending.push((d.spec.realm_id, id));
            }
            loaded += 1;
        }
        self.reload_pending.sort_by_key(|(realm, _)| *realm);
        if dropped > 0 {
            tracing::warn!(
                core = self.shard.core,
                dropped,
                "saved queues that no longer belong to this core were dropped"
            );
        }
        loaded
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::Timing;
    use serde_json::json;
    use squall_proto::envelope::Notice;
    use squall_proto::Shard;
    use std::sync::Arc;

    fn tempdir() -> PathBuf {
        let d = std::env::temp_dir().join(format!("squall-persist-{}-{}", std::process::id(), rand::random::<u64>()));
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn queues_survive_with_their_events_then_get_restart() {
        let topo = Topology::single_node(1);
        let shard = Shard { node: 0, core: 0 };
        let dir = tempdir();
        let mut a = CoreState::new(shard, Timing::default());
        let q = a.allocate(QueueSpec { user_id: 3, realm_id: 1, apply_markdown: true, ..QueueSpec::default() }, 1234);
        let only_messages = a.allocate(
            QueueSpec { user_id: 3, realm_id: 1, event_types: Some(vec!["message".into()]), ..QueueSpec::default() },
            1234,
        );
        a.deliver(Notice::Generic { event: Arc::new(json!({"type": "test", "n": 1})), users: vec![3] });
        assert_eq!(a.save_queues(&dir, 1).unwrap(), 2);

        let mut b = CoreState::new(shard, Timing::default());
        let restart = json!({"type": "restart", "zulip_version": "v", "server_generation": 9});
        assert_eq!(b.load_queues(&dir, topo, &restart), 2);
        assert!(!dir.join("event_queues.json").exists(), "Zulip's single-process name");
        assert!(dir.join("event_queues.json.last").exists(), "the dump is renamed to .last");
        let got = b.peek(3, q).unwrap();
        assert_eq!(
            got,
            vec![
                json!({"id": 0, "type": "test", "n": 1}),
                json!({"id": 1, "type": "restart", "zulip_version": "v", "server_generation": 9})
            ]
        );
        assert!(b.peek(3, only_messages).unwrap().is_empty(), "restart goes through the event_types filter");
        // Idle time keeps counting from the saved last_connection_time.
        assert_eq!(b.gc(1234 + 599), 0);
        assert_eq!(b.gc(1234 + 600), 2);
        // Loading again finds nothing.
        assert_eq!(CoreState::new(shard, Timing::default()).load_queues(&dir, topo, &restart), 0);
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn corrupt_or_foreign_dumps_are_survivable() {
        let dir = tempdir();
        std::fs::write(dump_path(&dir, 0, 1), b"{not json").unwrap();
        let shard = Shard { node: 0, core: 0 };
        let mut s = CoreState::new(shard, Timing::default());
        assert_eq!(s.load_queues(&dir, Topology::single_node(1), &json!({"type": "restart"})), 0);
        // A queue saved when this user lived on another core is dropped.
        let foreign = json!([["0-0-0000000000000000000000000000000a", {
            "user_profile_id": 3, "realm_id": 1, "queue_timeout": 600, "event_types": null,
            "last_connection_time": 5, "event_queue": {"id": "x", "next_event_id": 0, "queue": []}}]]);
        std::fs::write(dir.join("event_queues.0.json"), foreign.to_string()).unwrap();
        let two_cores = Topology::single_node(2);
        let expected = usize::from(two_cores.shard_of(3).core == 0);
        assert_eq!(s.load_queues(&dir, two_cores, &json!({"type": "restart"})), expected);
        assert!(dir.join("event_queues.0.last.json").exists(), "several processes' name");
        let _ = std::fs::remove_dir_all(dir);
    }
}
