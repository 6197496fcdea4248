//! The dump format: a header line, then one record per line.
//!
//! ```text
//! squall-event-queues 1
//! <crc> B <n> <event JSON>    body n: a shared event, or a message payload
//! <crc> I <n> <record JSON>   notification record n (Zulip's `internal_data`)
//! <crc> Q <queue JSON>        a queue: descriptor, ids, virtual events, and
//!                             how many events its R records hold
//! <crc> R <event refs JSON>   up to 1,024 events of the latest Q, in order
//! <crc> E <end JSON>          the end: how many queues, bodies, records,
//!                             events came before
//! ```
//!
//! `<crc>` is the CRC-32 of the rest of the line (from the tag to before the
//! newline) in 8 lowercase hex digits. A body or notification record is
//! written once, the first time a queue refers to it, before that queue's R
//! record that does; B and I records are numbered from 0 in file order (the
//! number is written out and checked). Sharing is by allocation: what
//! queues shared in memory they share in the file and again after loading.
//!
//! An event reference is an object with `i` (its id in the queue) and one
//! of `b` (a B record: a shared event) or `m` (a B record: a message
//! payload, with `f` its flag bits and `l` the sender's
//! `local_message_id`); neither means a heartbeat. `n` names an I record.
//! JSON never holds a raw newline (serde_json escapes them in strings); a
//! body that does anyway is re-encoded compactly first.
//!
//! Reading stops at the first line that is cut short, fails its checksum or
//! does not parse: the queues completed before it are restored. A file
//! without its E record was cut short. Memory while reading is one line
//! (at most [`MAX_LINE`] bytes) plus the table of B and I records, which
//! holds the same allocations as the restored queues.

use super::{Damage, Restorer, SavedOptions};
use crate::descriptor::Descriptor;
use crate::fxhash::FxHashMap;
use crate::notify::InternalData;
use crate::queue::{EventBody, EventQueue, QueuedEvent, VirtualEvent};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::VecDeque;
use std::io::{self, BufRead, Read, Write};
use std::rc::Rc;

/// First word of the header line.
const MAGIC: &str = "squall-event-queues";
/// The format described above.
const VERSION: u32 = 1;
/// Events per R record.
const CHUNK: usize = 1024;
/// Longest line read (a body is the only record that can approach it).
pub(crate) const MAX_LINE: usize = 256 << 20;

/// A queue without its events (record Q; the journal's allocation).
#[derive(Serialize, Deserialize)]
pub(crate) struct QueueRecord {
    id: String,
    user_profile_id: i64,
    realm_id: i64,
    queue_timeout: u64,
    event_types: Option<Vec<String>>,
    last_connection_time: u64,
    options: SavedOptions,
    next_event_id: i64,
    newest_pruned_id: i64,
    virtual_events: Vec<VirtualEvent>,
    /// How many events the following R records hold.
    events: u64,
}

/// One queued event (in record R).
#[derive(Serialize, Deserialize)]
struct EventRef {
    i: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    b: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    m: Option<u32>,
    #[serde(default, skip_serializing_if = "is_zero")]
    f: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    l: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    n: Option<u32>,
}

impl QueueRecord {
    /// What `d` is, under `id`, without its events (only their count).
    pub(crate) fn of(id: &str, d: &Descriptor) -> Self {
        let s = &d.spec;
        let q = &d.queue;
        QueueRecord {
            id: id.to_owned(),
            user_profile_id: s.user_id,
            realm_id: s.realm_id,
            queue_timeout: s.queue_timeout_secs,
            event_types: s.event_types.clone(),
            last_connection_time: d.last_connection_time,
            options: SavedOptions::of(s),
            next_event_id: q.next_event_id(),
            newest_pruned_id: q.newest_pruned_id(),
            virtual_events: q.virtual_events().to_vec(),
            events: q.contents().len() as u64,
        }
    }

    /// Puts the queue, with `events`, into `restorer`.
    pub(crate) fn restore(self, events: VecDeque<QueuedEvent>, restorer: &mut Restorer<'_>) {
        let r = self;
        let queue = EventQueue::from_parts(events, r.virtual_events, r.next_event_id, r.newest_pruned_id);
        let spec = r.options.into_spec(r.user_profile_id, r.realm_id, r.queue_timeout, r.event_types);
        restorer.add(&r.id, spec, queue, r.last_connection_time);
    }
}

fn is_zero(n: &i64) -> bool {
    *n == 0
}

/// Record E.
#[derive(Serialize, Deserialize, PartialEq, Debug)]
struct End {
    queues: u64,
    bodies: u64,
    records: u64,
    events: u64,
}

/// A table key for an `Rc`'s allocation. Live allocations are at least 16
/// bytes apart (an `Rc` holds two counters), so the shifted address is
/// still unique; the shift drops the alignment zeros that the Fx hash
/// would keep in the low bits its table indexes by.
fn key<T: ?Sized>(rc: &Rc<T>) -> usize {
    (Rc::as_ptr(rc) as *const u8 as usize) >> 3
}

/// Writes a dump, queue by queue.
pub(crate) struct Writer<W: Write> {
    out: W,
    line: Vec<u8>,
    bodies: FxHashMap<usize, u32>,
    records: FxHashMap<usize, u32>,
    queues: u64,
    events: u64,
}

impl<W: Write> Writer<W> {
    /// Starts a dump with its header line.
    pub(crate) fn new(mut out: W) -> io::Result<Self> {
        writeln!(out, "{MAGIC} {VERSION}")?;
        Ok(Writer {
            out,
            line: Vec::with_capacity(1 << 16),
            bodies: FxHashMap::default(),
            records: FxHashMap::default(),
            queues: 0,
            events: 0,
        })
    }

    /// How many queues were written.
    pub(crate) fn queues(&self) -> usize {
        self.queues as usize
    }

    /// Writes one queue and whatever bodies and records it is the first to
    /// refer to.
    pub(crate) fn queue(&mut self, id: &str, d: &Descriptor) -> io::Result<()> {
        let q = &d.queue;
        let record = QueueRecord::of(id, d);
        self.json(b'Q', &record)?;
        let mut chunk = Vec::with_capacity(CHUNK.min(q.contents().len()));
        for e in q.contents() {
            let n = match &e.internal {
                Some(r) => Some(self.record(r)?),
                None => None,
            };
            let r = match &e.body {
                EventBody::Shared(text) => EventRef { i: e.id, b: Some(self.body(text)?), m: None, f: 0, l: None, n },
                EventBody::Message { payload, flags, local_message_id } => EventRef {
                    i: e.id,
                    b: None,
                    m: Some(self.body(payload)?),
                    f: *flags,
                    l: local_message_id.clone(),
                    n,
                },
                EventBody::Heartbeat => EventRef { i: e.id, b: None, m: None, f: 0, l: None, n },
            };
            chunk.push(r);
            if chunk.len() == CHUNK {
                self.json(b'R', &chunk)?;
                chunk.clear();
            }
        }
        if !chunk.is_empty() {
            self.json(b'R', &chunk)?;
        }
        self.queues += 1;
        self.events += q.contents().len() as u64;
        Ok(())
    }

    /// The number of `text`'s B record, written now if it is new.
    fn body(&mut self, text: &Rc<str>) -> io::Result<u32> {
        let next = self.bodies.len() as u32;
        let n = *self.bodies.entry(key(text)).or_insert(next);
        if n == next {
            self.start(b'B', n);
            if text.as_bytes().contains(&b'\n') {
                let v: Value = serde_json::from_str(text).map_err(io::Error::other)?;
                serde_json::to_writer(&mut self.line, &v).map_err(io::Error::other)?;
            } else {
                self.line.extend_from_slice(text.as_bytes());
            }
            self.emit()?;
        }
        Ok(n)
    }

    /// The number of `r`'s I record, written now if it is new.
    fn record(&mut self, r: &Rc<InternalData>) -> io::Result<u32> {
        let next = self.records.len() as u32;
        let n = *self.records.entry(key(r)).or_insert(next);
        if n == next {
            self.start(b'I', n);
            serde_json::to_writer(&mut self.line, &**r).map_err(io::Error::other)?;
            self.emit()?;
        }
        Ok(n)
    }

    /// Ends the dump (record E); gives back the output, not flushed.
    pub(crate) fn finish(mut self) -> io::Result<W> {
        let end = End {
            queues: self.queues,
            bodies: self.bodies.len() as u64,
            records: self.records.len() as u64,
            events: self.events,
        };
        self.json(b'E', &end)?;
        Ok(self.out)
    }

    /// Starts a numbered record in the line buffer.
    fn start(&mut self, tag: u8, n: u32) {
        self.line.clear();
        self.line.extend_from_slice(&[tag, b' ']);
        self.line.extend_from_slice(n.to_string().as_bytes());
        self.line.push(b' ');
    }

    fn json(&mut self, tag: u8, value: &impl Serialize) -> io::Result<()> {
        self.line.clear();
        self.line.extend_from_slice(&[tag, b' ']);
        serde_json::to_writer(&mut self.line, value).map_err(io::Error::other)?;
        self.emit()
    }

    /// Writes the line buffer with its checksum.
    fn emit(&mut self) -> io::Result<()> {
        write!(self.out, "{:08x} ", crc32fast::hash(&self.line))?;
        self.out.write_all(&self.line)?;
        self.out.write_all(b"\n")
    }
}

/// A queue whose R records are still being read.
struct Pending {
    record: QueueRecord,
    events: VecDeque<QueuedEvent>,
}

/// What has been read so far.
#[derive(Default)]
struct Tables {
    bodies: Vec<Rc<str>>,
    records: Vec<Rc<InternalData>>,
    queues: u64,
    events: u64,
}

/// Restores the queues of a dump; `Err` says where and why it stopped.
pub(crate) fn read(mut reader: impl BufRead, restorer: &mut Restorer<'_>) -> Result<(), Damage> {
    let mut line = Vec::new();
    let header = format!("{MAGIC} {VERSION}\n");
    match read_line(&mut reader, &mut line, 64) {
        Ok(true) if line == header.as_bytes() => {}
        Ok(true) if line.starts_with(MAGIC.as_bytes()) => {
            return Err(Damage(format!("unknown version: {}", String::from_utf8_lossy(&line).trim_end())));
        }
        Ok(_) => return Err(Damage("not a queue dump".into())),
        Err(why) => return Err(Damage(format!("line 1: {why}"))),
    }
    let mut tables = Tables::default();
    let mut pending: Option<Pending> = None;
    let mut number = 1u64;
    loop {
        number += 1;
        let at = |why: String| Damage(format!("line {number}: {why}"));
        match read_line(&mut reader, &mut line, MAX_LINE) {
            Ok(true) => {}
            Ok(false) => return Err(at("cut short: no end record".into())),
            Err(why) => return Err(at(why)),
        }
        let (tag, payload) = checked(&line).map_err(at)?;
        match tag {
            b'B' => {
                let text = numbered(payload, tables.bodies.len()).map_err(at)?;
                let text = std::str::from_utf8(text).map_err(|e| at(e.to_string()))?;
                if !(text.starts_with('{') && text.ends_with('}'))
                    || serde_json::from_str::<serde::de::IgnoredAny>(text).is_err()
                {
                    return Err(at("a body is not a JSON object".into()));
                }
                tables.bodies.push(Rc::from(text));
            }
            b'I' => {
                let json = numbered(payload, tables.records.len()).map_err(at)?;
                let r: InternalData = serde_json::from_slice(json).map_err(|e| at(e.to_string()))?;
                tables.records.push(Rc::new(r));
            }
            b'Q' => {
                if pending.is_some() {
                    return Err(at("the previous queue's events are missing".into()));
                }
                let record: QueueRecord = serde_json::from_slice(payload).map_err(|e| at(e.to_string()))?;
                // Room for the restart event too; a count from the file is
                // trusted only so far.
                let events = VecDeque::with_capacity(record.events.min(1 << 16) as usize + 1);
                pending = Some(Pending { record, events });
            }
            b'R' => {
                let Some(p) = pending.as_mut() else { return Err(at("events without a queue".into())) };
                let refs: Vec<EventRef> = serde_json::from_slice(payload).map_err(|e| at(e.to_string()))?;
                for r in refs {
                    p.events.push_back(tables.resolve(r).map_err(at)?);
                }
                if p.events.len() as u64 > p.record.events {
                    return Err(at("more events than the queue said".into()));
                }
            }
            b'E' => {
                if pending.is_some() {
                    return Err(at("the last queue's events are missing".into()));
                }
                let end: End = serde_json::from_slice(payload).map_err(|e| at(e.to_string()))?;
                let seen = End {
                    queues: tables.queues,
                    bodies: tables.bodies.len() as u64,
                    records: tables.records.len() as u64,
                    events: tables.events,
                };
                if end != seen {
                    return Err(at(format!("the end record says {end:?}, the file holds {seen:?}")));
                }
                return Ok(());
            }
            other => return Err(at(format!("unknown record type {:?}", other as char))),
        }
        if pending.as_ref().is_some_and(|p| p.events.len() as u64 == p.record.events) {
            if let Some(Pending { record, events }) = pending.take() {
                tables.queues += 1;
                tables.events += events.len() as u64;
                record.restore(events, restorer);
            }
        }
    }
}

impl Tables {
    /// The event `r` describes, with the shared parts it names.
    fn resolve(&self, r: EventRef) -> Result<QueuedEvent, String> {
        let text = |n: u32| self.bodies.get(n as usize).cloned().ok_or_else(|| format!("no body {n} before its use"));
        let internal = match r.n {
            Some(n) => {
                Some(self.records.get(n as usize).cloned().ok_or_else(|| format!("no record {n} before its use"))?)
            }
            None => None,
        };
        let body = match (r.b, r.m) {
            (None, None) => EventBody::Heartbeat,
            (Some(b), None) => EventBody::Shared(text(b)?),
            (None, Some(m)) => EventBody::Message { payload: text(m)?, flags: r.f, local_message_id: r.l },
            (Some(_), Some(_)) => return Err(format!("event {} is both an event and a message", r.i)),
        };
        Ok(QueuedEvent { id: r.i, body, internal })
    }
}

/// Reads one line of at most `limit` bytes, newline included; `false` at
/// the end of the file.
fn read_line(reader: &mut impl BufRead, line: &mut Vec<u8>, limit: usize) -> Result<bool, String> {
    line.clear();
    let n = reader.by_ref().take(limit as u64).read_until(b'\n', line).map_err(|e| format!("cannot read: {e}"))?;
    match line.last() {
        _ if n == 0 => Ok(false),
        Some(b'\n') => Ok(true),
        _ if n >= limit => Err(format!("a line longer than {limit} bytes")),
        _ => Err("cut short in a record".into()),
    }
}

/// The tag and payload of a record line whose checksum matches.
fn checked(line: &[u8]) -> Result<(u8, &[u8]), String> {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    let (hex, rest) = line.split_at_checked(9).ok_or("a record too short")?;
    let crc = match hex.split_last() {
        Some((b' ', digits)) if digits.iter().all(u8::is_ascii_hexdigit) => {
            // Eight ASCII hex digits: both conversions succeed.
            std::str::from_utf8(digits).ok().and_then(|h| u32::from_str_radix(h, 16).ok())
        }
        _ => None,
    };
    if crc != Some(crc32fast::hash(rest)) {
        return Err("checksum mismatch".into());
    }
    match rest {
        [tag, b' ', payload @ ..] => Ok((*tag, payload)),
        _ => Err("a record without a tag".into()),
    }
}

/// The rest of `<n> <rest>`, if `n` is `expected`.
fn numbered(payload: &[u8], expected: usize) -> Result<&[u8], String> {
    let space = payload.iter().position(|&b| b == b' ').ok_or("a record without its number")?;
    let (n, rest) = (&payload[..space], &payload[space + 1..]);
    if n != expected.to_string().as_bytes() {
        return Err(format!("record {} where {expected} was due", String::from_utf8_lossy(n)));
    }
    Ok(rest)
}
