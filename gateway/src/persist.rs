//! Queues across restarts (Zulip's `dump_event_queues` /
//! `load_event_queues`).
//!
//! At graceful shutdown each core writes its own queues, with their
//! undelivered events, to its own file, so no core waits for another: as in
//! Zulip, `event_queues.json` when there is one, `event_queues.<core>.json`
//! when there are several. At start each core reads its file, restores the
//! queues (same ids, same `last_connection_time`, so idle time keeps
//! counting), gives each one that accepts it a `restart` event, and marks
//! those that accept `web_reload_client` for the reload endpoint.
//!
//! The file is in the record format of [`records`]: an event held by many
//! queues (a stream message, a presence change) is written once and the
//! queues refer to it by number, so the dump is about as large as the
//! queues are in memory, and after loading those queues share one
//! allocation again. Writing and reading stream through a buffer, one
//! record at a time. The previous format — Zulip's layout, one JSON array
//! of `[queue_id, descriptor]` pairs with every event written out in full
//! per queue ([`legacy`]) — still loads, element by element, with equal
//! event texts interned so that they share memory too.
//!
//! Neither step can lose the only good copy:
//! - saving writes `<dump>.tmp`, fsyncs it, renames it over the dump and
//!   fsyncs the directory;
//! - loading restores while it reads, and only a dump read to its end is
//!   then renamed aside, to Zulip's `event_queues.json.last` /
//!   `event_queues.<core>.last.json`. A process that dies while loading
//!   leaves the dump where it was, for the next start.
//!
//! A damaged dump (a checksum that does not match, a record cut short, no
//! end record, not a dump at all) restores the queues whose records came
//! before the damage, is logged, and is renamed to `event_queues.json.bad`
//! / `event_queues.<core>.bad.json` for inspection, where later restarts
//! do not overwrite it with a good dump. Each core deals with its own file
//! only. A missing file means no queues.

mod legacy;
pub(crate) mod records;

pub use legacy::SavedDescriptor;

use crate::filter::accepts_event;
use crate::queue::{EventBody, EventQueue};
use crate::state::CoreState;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use squall_proto::ids::QueueId;
use squall_proto::queue_spec::QueueSpec;
use squall_shard_router::placement::Topology;
use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter};
use std::path::{Path, PathBuf};
use std::rc::Rc;

/// Delivery options and capabilities of a saved queue; all default when
/// missing (Zulip's defaults).
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
        SavedOptions::of(&QueueSpec::default())
    }
}

impl SavedOptions {
    /// The options of `s`.
    pub fn of(s: &QueueSpec) -> Self {
        SavedOptions {
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
        }
    }

    /// The queue spec these options and the descriptor's own fields make.
    fn into_spec(self, user_id: i64, realm_id: i64, queue_timeout: u64, event_types: Option<Vec<String>>) -> QueueSpec {
        QueueSpec {
            user_id,
            realm_id,
            client_type_name: self.client_type_name,
            event_types,
            narrow: self.narrow,
            apply_markdown: self.apply_markdown,
            client_gravatar: self.client_gravatar,
            slim_presence: self.slim_presence,
            all_public_streams: self.all_public_streams,
            queue_timeout_secs: queue_timeout,
            bulk_message_deletion: self.bulk_message_deletion,
            stream_typing_notifications: self.stream_typing_notifications,
            user_settings_object: self.user_settings_object,
            linkifier_url_template: self.linkifier_url_template,
            user_list_incomplete: self.user_list_incomplete,
            include_deactivated_groups: self.include_deactivated_groups,
            pronouns_field_type_supported: self.pronouns_field_type_supported,
        }
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

/// Where a damaged dump is kept for inspection.
pub fn bad_path(dir: &Path, core: u16, cores: u16) -> PathBuf {
    if cores <= 1 {
        dir.join("event_queues.json.bad")
    } else {
        dir.join(format!("event_queues.{core}.bad.json"))
    }
}

/// Why a dump could not be read to its end (where, and what was wrong).
#[derive(Debug)]
pub(crate) struct Damage(pub(crate) String);

/// Puts restored queues into a core: the ownership checks, the `restart`
/// event and the reload marks.
pub(crate) struct Restorer<'a> {
    state: &'a mut CoreState,
    topo: Topology,
    restart_event: &'a Value,
    /// One copy of the restart event for every queue.
    restart_body: Rc<str>,
    reload_event: Value,
    /// Greet each queue as it is added (a dump); otherwise only once
    /// everything is replayed ([`Restorer::greet_all`], the journal).
    greet: bool,
    loaded: usize,
    dropped: usize,
}

impl<'a> Restorer<'a> {
    fn new(state: &'a mut CoreState, topo: Topology, restart_event: &'a Value) -> Self {
        Restorer {
            state,
            topo,
            restart_event,
            restart_body: Rc::from(restart_event.to_string()),
            reload_event: serde_json::json!({"type": "web_reload_client"}),
            greet: true,
            loaded: 0,
            dropped: 0,
        }
    }

    /// A restorer that adds queues without greeting them: the journal's
    /// later records still have to be replayed onto them, with the event
    /// ids they were given, before the `restart` event takes the next one.
    pub(crate) fn quiet(state: &'a mut CoreState, topo: Topology, restart_event: &'a Value) -> Self {
        Restorer { greet: false, ..Restorer::new(state, topo, restart_event) }
    }

    /// The core being restored.
    pub(crate) fn state(&mut self) -> &mut CoreState {
        self.state
    }

    /// Greets every queue of the core (the `restart` event, the reload
    /// mark) and counts it idle from no earlier than `now`: after a crash
    /// nobody knows when its client last polled.
    pub(crate) fn greet_all(&mut self, now: u64) {
        let ids: Vec<QueueId> = self.state.reg.iter().map(|(id, _)| *id).collect();
        self.loaded = ids.len();
        for id in ids {
            if let Some(d) = self.state.reg.get_mut(id) {
                d.last_connection_time = d.last_connection_time.max(now);
                d.queue.recovered();
            }
            self.greet(id);
        }
    }

    /// Gives a restored queue the `restart` event and marks it for reload.
    fn greet(&mut self, id: QueueId) {
        let state = &mut *self.state;
        let Some(d) = state.reg.get(id) else { return };
        let restart = accepts_event(&d.spec, self.restart_event);
        let reload = accepts_event(&d.spec, &self.reload_event).then_some(d.spec.realm_id);
        if restart {
            state.push_body(id, EventBody::Shared(self.restart_body.clone()));
        }
        if let Some(realm) = reload {
            state.reload_pending.push((realm, id));
        }
    }

    /// Adds a saved queue, unless it no longer belongs to this core (the
    /// core count changed: its client re-registers on
    /// `BAD_EVENT_QUEUE_ID`) or is here already.
    pub(crate) fn add(&mut self, id: &str, spec: QueueSpec, queue: EventQueue, last_connection_time: u64) {
        let state = &mut *self.state;
        let id = match QueueId::parse(id) {
            Some(q) if state.reg.get(q).is_some() => {
                tracing::warn!(queue_id = %q, "a saved queue appears twice; keeping the first");
                return;
            }
            Some(q) if q.shard == state.shard && self.topo.shard_of(spec.user_id) == state.shard => q,
            _ => {
                self.dropped += 1;
                return;
            }
        };
        state.insert_queue(id, spec, queue, last_connection_time);
        if self.greet {
            self.greet(id);
        }
        self.loaded += 1;
    }

    /// How many queues were restored.
    pub(crate) fn finish(self) -> usize {
        self.state.reload_pending.sort_by_key(|(realm, _)| *realm);
        if self.dropped > 0 {
            tracing::warn!(
                core = self.state.shard.core,
                dropped = self.dropped,
                "saved queues that no longer belong to this core were dropped"
            );
        }
        self.loaded
    }
}

/// Reads a dump of either format into `restorer`; names the format.
fn read_dump(mut reader: BufReader<File>, restorer: &mut Restorer<'_>) -> Result<&'static str, Damage> {
    loop {
        let buf = reader.fill_buf().map_err(|e| Damage(format!("cannot read: {e}")))?;
        match buf.first() {
            None => return Err(Damage("the file is empty".into())),
            Some(b) if b.is_ascii_whitespace() => reader.consume(1),
            Some(b'[') => return legacy::read(reader, restorer).map(|()| "JSON array (previous format)"),
            Some(_) => return records::read(reader, restorer).map(|()| "records"),
        }
    }
}

/// Makes a rename in `dir` durable.
pub(crate) fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

impl CoreState {
    /// Writes every queue of this core to `dir`: to a temporary file,
    /// fsynced, then renamed over the previous dump, so a crash leaves
    /// either the old dump or the new one. Returns how many queues.
    pub fn save_queues(&self, dir: &Path, cores: u16) -> std::io::Result<usize> {
        std::fs::create_dir_all(dir)?;
        let path = dump_path(dir, self.shard.core, cores);
        let tmp = path.with_extension("json.tmp");
        let written = (|| {
            let (out, count) = self.write_dump(BufWriter::with_capacity(1 << 20, File::create(&tmp)?))?;
            let file = out.into_inner().map_err(|e| e.into_error())?;
            file.sync_all()?;
            Ok(count)
        })();
        let count = match written {
            Ok(n) => n,
            Err(e) => {
                let _ = std::fs::remove_file(&tmp);
                return Err(e);
            }
        };
        std::fs::rename(&tmp, &path)?;
        if let Err(e) = sync_dir(dir) {
            tracing::warn!(dir = %dir.display(), error = %e, "could not sync the state directory after saving queues");
        }
        Ok(count)
    }

    /// Restores this core's queues from `dir` and queues a `restart` event
    /// (`restart_event`, without `id`) on each that accepts it. Queues that
    /// no longer belong here (the core count changed) are dropped; their
    /// clients re-register on `BAD_EVENT_QUEUE_ID`. Returns how many loaded.
    pub fn load_queues(&mut self, dir: &Path, topo: Topology, restart_event: &Value) -> usize {
        let (loaded, done) = self.restore_dump(dir, topo, restart_event);
        if let Some(done) = done {
            done.retire();
        }
        loaded
    }

    /// [`CoreState::load_queues`] without moving a dump read to its end
    /// aside: the caller does that ([`LoadedDump::retire`]) once the queues
    /// are safe elsewhere.
    pub(crate) fn restore_dump(
        &mut self,
        dir: &Path,
        topo: Topology,
        restart_event: &Value,
    ) -> (usize, Option<LoadedDump>) {
        let (core, cores) = (self.shard.core, topo.cores);
        let path = dump_path(dir, core, cores);
        let (loaded, outcome) = match File::open(&path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return (0, None),
            Err(e) => (0, Err(Damage(format!("cannot open: {e}")))),
            Ok(file) => {
                let mut restorer = Restorer::new(self, topo, restart_event);
                let outcome = read_dump(BufReader::with_capacity(1 << 16, file), &mut restorer);
                (restorer.finish(), outcome)
            }
        };
        match outcome {
            Ok(format) => {
                tracing::info!(core, path = %path.display(), loaded, format, "saved queues restored");
                (loaded, Some(LoadedDump { last: last_path(dir, core, cores), path }))
            }
            Err(Damage(why)) => {
                let bad = bad_path(dir, core, cores);
                let kept = match std::fs::rename(&path, &bad) {
                    Ok(()) => bad.display().to_string(),
                    Err(e) => format!("not moved ({e})"),
                };
                tracing::error!(
                    core,
                    path = %path.display(),
                    restored = loaded,
                    damage = %why,
                    kept_as = %kept,
                    "the saved queues are damaged: restored those before the damage"
                );
                (loaded, None)
            }
        }
    }

    /// Writes a dump of every queue of this core to `out` (the journal's
    /// snapshot); returns how many queues.
    pub(crate) fn write_dump<W: std::io::Write>(&self, out: W) -> std::io::Result<(W, usize)> {
        let mut w = records::Writer::new(out)?;
        for (id, d) in self.reg.iter() {
            w.queue(&id.to_string(), d)?;
        }
        let count = w.queues();
        Ok((w.finish()?, count))
    }
}

/// A dump read to its end and still in place.
pub(crate) struct LoadedDump {
    path: PathBuf,
    last: PathBuf,
}

impl LoadedDump {
    /// Whether a dump is waiting at `dir` for `core` of `cores`.
    pub(crate) fn exists(dir: &Path, core: u16, cores: u16) -> bool {
        dump_path(dir, core, cores).exists()
    }

    /// Moves the dump aside (to Zulip's `.last` name): only now, with
    /// everything it holds restored, may it move.
    pub(crate) fn retire(self) {
        if let Err(e) = std::fs::rename(&self.path, &self.last) {
            tracing::warn!(path = %self.path.display(), error = %e, "cannot move the loaded dump aside");
        }
    }
}

#[cfg(test)]
pub(crate) mod tests;
