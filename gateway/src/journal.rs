//! The per-core queue journal: what survives `kill -9`.
//!
//! A graceful stop writes every queue to a dump ([`crate::persist`]); a
//! crash writes nothing. So while it runs, each core also appends every
//! change to its queues to a journal of its own — a queue allocated, an
//! event appended, events acknowledged (pruned), a queue deleted — and now
//! and then writes a snapshot (a dump of its queues) after which the older
//! journal is no longer needed. After a crash the core loads its latest
//! snapshot and replays the journal written since, and its queues come back
//! as they were, with the same ids and event ids.
//!
//! ## The window
//!
//! Records are encoded on the core's thread as the changes happen (into a
//! buffer, no I/O) and written and `fdatasync`ed by a task of the same core
//! through io_uring ([`files::flusher`]), so the event path never waits for
//! the disk. A record reaches the disk within [`JournalOptions::flush_interval`]
//! (10 ms) of being made, sooner when someone waits for it. And someone
//! does: each event published to a core is followed by an
//! [`crate::state::Item::Durable`] request, answered once the journal holds
//! the event on disk, and the backend answers the request that caused the
//! event (a sent message, say) only then. So **an event whose request was
//! acknowledged is in the journal**; what a crash can lose is what no client
//! was told had happened: events of requests still unanswered, and
//! acknowledgements (prunes) and deletions of the last 10 ms, which only
//! means a client may see an event again or a deleted queue lingers until
//! it expires. Heartbeats are not journaled (event ids skip them).
//!
//! A client may have been sent events whose records were not yet on disk.
//! After the crash such a client polls with a `last_event_id` beyond what
//! the queue holds; [`crate::queue::EventQueue::prune`] then moves the
//! queue's next id past it instead of refusing, so no later event is hidden
//! behind an id the client already saw.
//!
//! ## Format
//!
//! A journal file starts with the line `squall-journal 1`; then records,
//! each `[length: u32 LE][crc32 of the payload: u32 LE][payload]`, the
//! payload a tag byte and its fields (integers little-endian, a queue id as
//! node u16, core u16, token u128):
//!
//! | tag | fields | what |
//! |---|---|---|
//! | `A` | queue record JSON ([`records::QueueRecord`]) | queue allocated |
//! | `B` | n u32, text | shared body n (numbered per file from 0) |
//! | `I` | n u32, JSON | notification record n (`internal_data`) |
//! | `E` | queue, id i64, kind u8, body u32, flags i64, record u32, local id | event appended |
//! | `V` | queue, id i64, JSON object | flag event appended (compressed) |
//! | `M` | queue | compressed events read (materialised) |
//! | `P` | queue, last_event_id i64 | events acknowledged |
//! | `D` | queue | queue deleted |
//!
//! `kind` is 0 for a shared event, 1 for a message (`flags` and the local
//! id, `u16` length then bytes, `0xffff` for none, apply); `record` is
//! `u32::MAX` for none. A body or record is written once per flush batch
//! and referred to by number. Replay stops at the first record that is cut
//! short (the usual end after a crash: the last write was torn) or fails
//! its checksum; everything before it is restored.

pub mod files;

use crate::descriptor::Descriptor;
use crate::fxhash::FxHashMap;
use crate::notify::InternalData;
use crate::persist::records::QueueRecord;
use crate::persist::{Damage, Restorer};
use crate::queue::{EventBody, QueuedEvent};
use futures_channel::oneshot;
use serde_json::{Map, Value};
use squall_proto::ids::QueueId;
use squall_proto::Shard;
use std::cell::Cell;
use std::collections::VecDeque;
use std::io::Read;
use std::rc::Rc;
use std::task::{Poll, Waker};
use std::time::Duration;

/// The first line of a journal file.
pub(crate) const HEADER: &[u8] = b"squall-journal 1\n";
/// Longest record accepted when reading.
const MAX_RECORD: usize = 256 << 20;
/// No body or record.
const NONE: u32 = u32::MAX;

/// How the journal runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JournalOptions {
    /// Longest a record waits before it is written and synced when nobody
    /// waits for it.
    pub flush_interval: Duration,
    /// A snapshot is taken when the journal since the last one has grown
    /// past this many bytes (or past the last snapshot's size, if larger).
    pub snapshot_bytes: u64,
}

impl Default for JournalOptions {
    fn default() -> Self {
        JournalOptions { flush_interval: Duration::from_millis(10), snapshot_bytes: 64 << 20 }
    }
}

/// Wakes the flusher task of a core (same thread: no atomics).
#[derive(Default)]
pub(crate) struct Signal {
    set: Cell<bool>,
    waker: Cell<Option<Waker>>,
}

impl Signal {
    /// Wakes the waiter, or the next one to wait.
    pub(crate) fn notify(&self) {
        self.set.set(true);
        if let Some(w) = self.waker.take() {
            w.wake();
        }
    }

    /// Resolves once notified since the last wait.
    pub(crate) async fn wait(&self) {
        std::future::poll_fn(|cx| {
            if self.set.replace(false) {
                Poll::Ready(())
            } else {
                self.waker.set(Some(cx.waker().clone()));
                Poll::Pending
            }
        })
        .await
    }
}

/// Bytes to write, and the sequence number they end at.
pub(crate) struct Batch {
    pub(crate) bytes: Vec<u8>,
    pub(crate) upto: u64,
}

/// A core's journal encoder: records made on the event path, kept until
/// the flusher takes them. No I/O here.
pub(crate) struct Journal {
    buf: Vec<u8>,
    /// Bytes made so far, all files together.
    made: u64,
    /// Of those, how many are on disk.
    durable: u64,
    /// Bytes made into the current file.
    pub(crate) file_bytes: u64,
    /// Bodies written in the current batch, held so that their addresses
    /// cannot be reused meanwhile.
    bodies: FxHashMap<usize, (u32, Rc<str>)>,
    next_body: u32,
    records: FxHashMap<usize, (u32, Rc<InternalData>)>,
    next_record: u32,
    waiters: VecDeque<(u64, oneshot::Sender<()>)>,
    signal: Rc<Signal>,
}

fn key<T: ?Sized>(rc: &Rc<T>) -> usize {
    Rc::as_ptr(rc) as *const u8 as usize
}

fn put_queue(out: &mut Vec<u8>, id: QueueId) {
    out.extend_from_slice(&id.shard.node.to_le_bytes());
    out.extend_from_slice(&id.shard.core.to_le_bytes());
    out.extend_from_slice(&id.token.to_le_bytes());
}

impl Journal {
    /// A journal whose file already holds `file_bytes` (its header).
    pub(crate) fn new(signal: Rc<Signal>, file_bytes: u64) -> Self {
        Journal {
            buf: Vec::with_capacity(1 << 16),
            made: 0,
            durable: 0,
            file_bytes,
            bodies: FxHashMap::default(),
            next_body: 0,
            records: FxHashMap::default(),
            next_record: 0,
            waiters: VecDeque::new(),
            signal,
        }
    }

    /// Appends one record whose payload `fill` writes after `tag`.
    fn record(&mut self, tag: u8, fill: impl FnOnce(&mut Vec<u8>)) {
        if self.buf.is_empty() {
            self.signal.notify();
        }
        let start = self.buf.len();
        self.buf.extend_from_slice(&[0; 8]);
        self.buf.push(tag);
        fill(&mut self.buf);
        let len = self.buf.len() - start - 8;
        let crc = crc32fast::hash(&self.buf[start + 8..]);
        self.buf[start..start + 4].copy_from_slice(&(len as u32).to_le_bytes());
        self.buf[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
        let n = (self.buf.len() - start) as u64;
        self.made += n;
        self.file_bytes += n;
    }

    /// A queue was allocated.
    pub(crate) fn allocated(&mut self, id: QueueId, d: &Descriptor) {
        let json = serde_json::to_vec(&QueueRecord::of(&id.to_string(), d)).unwrap_or_default();
        self.record(b'A', |out| out.extend_from_slice(&json));
    }

    /// `e` was appended to queue `id`.
    pub(crate) fn appended(&mut self, id: QueueId, e: &QueuedEvent) {
        let (kind, text, flags, local) = match &e.body {
            EventBody::Shared(text) => (0u8, text, 0, None),
            EventBody::Message { payload, flags, local_message_id } => {
                (1, payload, *flags, local_message_id.as_deref())
            }
            EventBody::Heartbeat => return,
        };
        let body = self.body(text);
        let record = e.internal.as_ref().map_or(NONE, |r| self.internal(r));
        self.record(b'E', |out| {
            put_queue(out, id);
            out.extend_from_slice(&e.id.to_le_bytes());
            out.push(kind);
            out.extend_from_slice(&body.to_le_bytes());
            out.extend_from_slice(&flags.to_le_bytes());
            out.extend_from_slice(&record.to_le_bytes());
            match local {
                // A local id longer than this is cut at the client's word
                // limit elsewhere; past 64 KiB it is not kept.
                Some(l) if l.len() < 0xffff => {
                    out.extend_from_slice(&(l.len() as u16).to_le_bytes());
                    out.extend_from_slice(l.as_bytes());
                }
                _ => out.extend_from_slice(&0xffffu16.to_le_bytes()),
            }
        });
    }

    /// A compressible flag event was pushed to queue `id` at `event_id`.
    pub(crate) fn appended_virtual(&mut self, id: QueueId, event_id: i64, event: &Map<String, Value>) {
        self.record(b'V', |out| {
            put_queue(out, id);
            out.extend_from_slice(&event_id.to_le_bytes());
            // Writing JSON into a Vec cannot fail.
            let _ = serde_json::to_writer(&mut *out, event);
        });
    }

    /// Queue `id`'s compressed events were read (and so materialised).
    pub(crate) fn materialized(&mut self, id: QueueId) {
        self.record(b'M', |out| put_queue(out, id));
    }

    /// Queue `id`'s events up to `last_event_id` were acknowledged.
    pub(crate) fn pruned(&mut self, id: QueueId, last_event_id: i64) {
        self.record(b'P', |out| {
            put_queue(out, id);
            out.extend_from_slice(&last_event_id.to_le_bytes());
        });
    }

    /// Queue `id` was deleted.
    pub(crate) fn removed(&mut self, id: QueueId) {
        self.record(b'D', |out| put_queue(out, id));
    }

    fn body(&mut self, text: &Rc<str>) -> u32 {
        if let Some((n, _)) = self.bodies.get(&key(text)) {
            return *n;
        }
        let n = self.next_body;
        self.next_body += 1;
        self.bodies.insert(key(text), (n, text.clone()));
        self.record(b'B', |out| {
            out.extend_from_slice(&n.to_le_bytes());
            out.extend_from_slice(text.as_bytes());
        });
        n
    }

    fn internal(&mut self, r: &Rc<InternalData>) -> u32 {
        if let Some((n, _)) = self.records.get(&key(r)) {
            return *n;
        }
        let n = self.next_record;
        self.next_record += 1;
        self.records.insert(key(r), (n, r.clone()));
        let json = serde_json::to_vec(&**r).unwrap_or_default();
        self.record(b'I', |out| {
            out.extend_from_slice(&n.to_le_bytes());
            out.extend_from_slice(&json);
        });
        n
    }

    /// Answers `tx` once everything made so far is on disk.
    pub(crate) fn when_durable(&mut self, tx: oneshot::Sender<()>) {
        if self.durable >= self.made {
            let _ = tx.send(());
        } else {
            self.waiters.push_back((self.made, tx));
            self.signal.notify();
        }
    }

    /// Whether someone waits for the disk.
    pub(crate) fn awaited(&self) -> bool {
        !self.waiters.is_empty()
    }

    /// Takes what is to be written. The bodies of this batch are forgotten:
    /// a later batch writes its own.
    pub(crate) fn take(&mut self) -> Option<Batch> {
        if self.buf.is_empty() {
            return None;
        }
        self.bodies.clear();
        self.records.clear();
        Some(Batch { bytes: std::mem::replace(&mut self.buf, Vec::with_capacity(1 << 16)), upto: self.made })
    }

    /// Everything up to `upto` is on disk: answers those who waited for it.
    pub(crate) fn durable_upto(&mut self, upto: u64) {
        self.durable = self.durable.max(upto);
        while self.waiters.front().is_some_and(|(at, _)| *at <= self.durable) {
            if let Some((_, tx)) = self.waiters.pop_front() {
                let _ = tx.send(());
            }
        }
    }

    /// Starts a new file (after a snapshot), which holds `file_bytes`
    /// already; body and record numbers start again from 0. What was made
    /// before must have been taken.
    pub(crate) fn rotate(&mut self, file_bytes: u64) {
        self.file_bytes = file_bytes;
        self.next_body = 0;
        self.next_record = 0;
        self.bodies.clear();
        self.records.clear();
    }

    /// The journal is given up (it cannot be written): whoever waits is
    /// answered, as without a journal.
    pub(crate) fn abandon(mut self) {
        for (_, tx) in self.waiters.drain(..) {
            let _ = tx.send(());
        }
    }
}

/// What a replay did.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Replayed {
    /// Records applied.
    pub(crate) records: u64,
    /// Records about queues not (or no longer) there, skipped.
    pub(crate) skipped: u64,
}

/// Why replay stopped early.
pub(crate) enum Stop {
    /// The file ends inside a record: the write a crash interrupted.
    Torn(String),
    /// A record is damaged or makes no sense.
    Damaged(Damage),
}

/// Reads a byte slice field by field.
struct Fields<'a>(&'a [u8]);

impl<'a> Fields<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        if self.0.len() < n {
            return Err("a record shorter than its fields".into());
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }
    fn u16(&mut self) -> Result<u16, String> {
        let b = self.take(2)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }
    fn u32(&mut self) -> Result<u32, String> {
        let mut a = [0; 4];
        a.copy_from_slice(self.take(4)?);
        Ok(u32::from_le_bytes(a))
    }
    fn i64(&mut self) -> Result<i64, String> {
        let mut a = [0; 8];
        a.copy_from_slice(self.take(8)?);
        Ok(i64::from_le_bytes(a))
    }
    fn queue(&mut self) -> Result<QueueId, String> {
        let node = self.u16()?;
        let core = self.u16()?;
        let mut a = [0; 16];
        a.copy_from_slice(self.take(16)?);
        Ok(QueueId { shard: Shard { node, core }, token: u128::from_le_bytes(a) })
    }
    fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.0)
    }
}

/// Replays one journal file (its header already checked by the caller is
/// not assumed: it is read here) onto the queues `restorer` holds.
pub(crate) fn replay(mut input: impl Read, restorer: &mut Restorer<'_>) -> Result<Replayed, (Replayed, Stop)> {
    let mut done = Replayed::default();
    let mut header = vec![0u8; HEADER.len()];
    match read_full(&mut input, &mut header) {
        Ok(n) if n == HEADER.len() && header == HEADER => {}
        Ok(n) if n < HEADER.len() && HEADER.starts_with(&header[..n]) => {
            return Err((done, Stop::Torn("the header is cut short".into())));
        }
        Ok(_) => return Err((done, Stop::Damaged(Damage("not a journal file".into())))),
        Err(e) => return Err((done, Stop::Damaged(Damage(format!("cannot read: {e}"))))),
    }
    let mut bodies: Vec<Rc<str>> = Vec::new();
    let mut records: Vec<Rc<InternalData>> = Vec::new();
    let mut head = [0u8; 8];
    let mut payload = Vec::new();
    let mut offset = HEADER.len() as u64;
    loop {
        let at = |why: String| Damage(format!("byte {offset}: {why}"));
        match read_full(&mut input, &mut head) {
            Ok(0) => return Ok(done),
            Ok(8) => {}
            Ok(_) => return Err((done, Stop::Torn(format!("byte {offset}: a record head cut short")))),
            Err(e) => return Err((done, Stop::Damaged(at(format!("cannot read: {e}"))))),
        }
        let len = u32::from_le_bytes([head[0], head[1], head[2], head[3]]) as usize;
        let crc = u32::from_le_bytes([head[4], head[5], head[6], head[7]]);
        if len == 0 || len > MAX_RECORD {
            return Err((done, Stop::Damaged(at(format!("a record of {len} bytes")))));
        }
        // Read as the bytes come, not sized by the (possibly damaged) length.
        payload.clear();
        match input.by_ref().take(len as u64).read_to_end(&mut payload) {
            Ok(n) if n == len => {}
            Ok(_) => return Err((done, Stop::Torn(format!("byte {offset}: a record cut short")))),
            Err(e) => return Err((done, Stop::Damaged(at(format!("cannot read: {e}"))))),
        }
        if crc32fast::hash(&payload) != crc {
            return Err((done, Stop::Damaged(at("checksum mismatch".into()))));
        }
        match apply(&payload, restorer, &mut bodies, &mut records) {
            Ok(true) => done.records += 1,
            Ok(false) => done.skipped += 1,
            Err(why) => return Err((done, Stop::Damaged(at(why)))),
        }
        offset += 8 + len as u64;
    }
}

/// Reads until `buf` is full or the input ends; returns how much was read.
fn read_full(input: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match input.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

/// Applies one record; `Ok(false)` if it was about a queue not here.
fn apply(
    payload: &[u8],
    restorer: &mut Restorer<'_>,
    bodies: &mut Vec<Rc<str>>,
    records: &mut Vec<Rc<InternalData>>,
) -> Result<bool, String> {
    let mut f = Fields(&payload[1..]);
    match payload[0] {
        b'A' => {
            let record: QueueRecord = serde_json::from_slice(f.rest()).map_err(|e| e.to_string())?;
            record.restore(VecDeque::new(), restorer);
            Ok(true)
        }
        b'B' => {
            let n = f.u32()?;
            let text = std::str::from_utf8(f.rest()).map_err(|e| e.to_string())?;
            if n as usize != bodies.len() {
                return Err(format!("body {n} where {} was due", bodies.len()));
            }
            if !(text.starts_with('{') && text.ends_with('}'))
                || serde_json::from_str::<serde::de::IgnoredAny>(text).is_err()
            {
                return Err("a body is not a JSON object".into());
            }
            bodies.push(Rc::from(text));
            Ok(true)
        }
        b'I' => {
            let n = f.u32()?;
            if n as usize != records.len() {
                return Err(format!("record {n} where {} was due", records.len()));
            }
            let r: InternalData = serde_json::from_slice(f.rest()).map_err(|e| e.to_string())?;
            records.push(Rc::new(r));
            Ok(true)
        }
        b'E' => {
            let queue = f.queue()?;
            let id = f.i64()?;
            let kind = f.take(1)?[0];
            let body = f.u32()?;
            let flags = f.i64()?;
            let record = f.u32()?;
            let local = match f.u16()? {
                0xffff => None,
                n => Some(std::str::from_utf8(f.take(n as usize)?).map_err(|e| e.to_string())?.to_owned()),
            };
            let text = bodies.get(body as usize).cloned().ok_or_else(|| format!("no body {body} before its use"))?;
            let internal = match record {
                NONE => None,
                n => Some(records.get(n as usize).cloned().ok_or_else(|| format!("no record {n} before its use"))?),
            };
            let body = match kind {
                0 => EventBody::Shared(text),
                1 => EventBody::Message { payload: text, flags, local_message_id: local },
                k => return Err(format!("unknown event kind {k}")),
            };
            let Some(d) = restorer.state().reg.get_mut(queue) else { return Ok(false) };
            Ok(d.queue.push_at(id, body, internal))
        }
        b'V' => {
            let queue = f.queue()?;
            let id = f.i64()?;
            let event: Map<String, Value> = serde_json::from_slice(f.rest()).map_err(|e| e.to_string())?;
            let Some(d) = restorer.state().reg.get_mut(queue) else { return Ok(false) };
            Ok(d.queue.push_value_at(id, event))
        }
        b'M' => {
            let queue = f.queue()?;
            let Some(d) = restorer.state().reg.get_mut(queue) else { return Ok(false) };
            d.queue.materialize();
            Ok(true)
        }
        b'P' => {
            let queue = f.queue()?;
            let last = f.i64()?;
            let Some(d) = restorer.state().reg.get_mut(queue) else { return Ok(false) };
            // The id may be a heartbeat's, which the journal does not hold.
            d.queue.prune_through(last);
            Ok(true)
        }
        b'D' => {
            let queue = f.queue()?;
            let state = restorer.state();
            if state.reg.get(queue).is_none() {
                return Ok(false);
            }
            state.remove_queue_with(queue, false);
            Ok(true)
        }
        t => Err(format!("unknown record type {:?}", t as char)),
    }
}

/// Replays `body` as the records of a journal file (after its header)
/// onto an empty core, greets the queues as a recovery does, and renders
/// each queue's events; returns how many queues came back. For the fuzz
/// target: whatever the bytes, this must neither panic nor produce an
/// answer that is not JSON.
#[doc(hidden)]
pub fn replay_for_fuzzing(body: &[u8]) -> usize {
    let mut state = crate::state::CoreState::new(Shard { node: 0, core: 0 }, crate::state::Timing::default());
    let topo = squall_shard_router::placement::Topology { nodes: 1, cores: 1 };
    let event = serde_json::json!({"type": "restart"});
    let mut file = HEADER.to_vec();
    file.extend_from_slice(body);
    let mut restorer = Restorer::quiet(&mut state, topo, &event);
    let _ = replay(&file[..], &mut restorer);
    restorer.greet_all(0);
    let restored = restorer.finish();
    let ids: Vec<QueueId> = state.reg.iter().map(|(id, _)| *id).collect();
    for id in ids {
        if let Some(d) = state.reg.get_mut(id) {
            let rendered = d.queue.render_events();
            assert!(serde_json::from_str::<Value>(&rendered).is_ok(), "a recovered queue renders JSON: {rendered}");
        }
    }
    restored
}

#[cfg(test)]
mod tests;
