//! The previous dump format, Zulip's layout: one JSON array of
//! `[queue_id, descriptor]` pairs (`ClientDescriptor.to_dict`), every event
//! written out in full in every queue that holds it. Read only.
//!
//! The array is read one pair at a time: its bytes are delimited by
//! bracket depth (outside strings) into a buffer, then parsed from there,
//! borrowing every event as raw JSON text. An event's text is its object
//! without `id` and `internal_data`, keys in order; equal texts (the same
//! stream message in a thousand queues) and equal notification records are
//! interned, so queues share them again as they did before saving. The
//! pairs before damage (a syntax error, a cut) are restored.

use super::records::MAX_LINE;
use super::{Damage, Restorer, SavedOptions};
use crate::fxhash::FxHashSet;
use crate::notify::InternalData;
use crate::queue::{EventBody, EventQueue, QueuedEvent, SavedQueue};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::{Map, Value};
use std::collections::{BTreeMap, VecDeque};
use std::io::BufRead;
use std::rc::Rc;

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

/// A descriptor as read: [`SavedDescriptor`]'s fields side by side (its
/// `flatten` would buffer the whole descriptor to read it twice), events
/// borrowed as raw text.
#[derive(Deserialize)]
struct Flat<'a> {
    user_profile_id: i64,
    realm_id: i64,
    #[serde(borrow)]
    event_queue: FlatQueue<'a>,
    queue_timeout: u64,
    event_types: Option<Vec<String>>,
    last_connection_time: u64,
    #[serde(default)]
    client_type_name: String,
    #[serde(default)]
    apply_markdown: bool,
    #[serde(default)]
    client_gravatar: bool,
    #[serde(default)]
    slim_presence: bool,
    #[serde(default)]
    all_public_streams: bool,
    #[serde(default)]
    narrow: Vec<(String, String)>,
    #[serde(default)]
    bulk_message_deletion: bool,
    #[serde(default)]
    stream_typing_notifications: bool,
    #[serde(default)]
    user_settings_object: bool,
    #[serde(default)]
    linkifier_url_template: bool,
    #[serde(default)]
    user_list_incomplete: bool,
    #[serde(default)]
    include_deactivated_groups: bool,
    #[serde(default = "yes")]
    pronouns_field_type_supported: bool,
}

/// [`SavedQueue`] as read.
#[derive(Deserialize)]
struct FlatQueue<'a> {
    next_event_id: i64,
    #[serde(borrow)]
    queue: Vec<&'a RawValue>,
    #[serde(default)]
    virtual_events: Map<String, Value>,
    #[serde(default = "minus_one")]
    newest_pruned_id: i64,
}

fn yes() -> bool {
    true
}

fn minus_one() -> i64 {
    -1
}

impl Flat<'_> {
    fn options(&mut self) -> SavedOptions {
        SavedOptions {
            client_type_name: std::mem::take(&mut self.client_type_name),
            apply_markdown: self.apply_markdown,
            client_gravatar: self.client_gravatar,
            slim_presence: self.slim_presence,
            all_public_streams: self.all_public_streams,
            narrow: std::mem::take(&mut self.narrow),
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

/// Makes equal event texts and equal notification records share one
/// allocation.
#[derive(Default)]
struct Interner {
    texts: FxHashSet<Rc<str>>,
    records: FxHashSet<Rc<InternalData>>,
    /// Where an event's text is assembled.
    scratch: Vec<u8>,
}

impl Interner {
    fn text(&mut self, text: &str) -> Rc<str> {
        if let Some(rc) = self.texts.get(text) {
            return rc.clone();
        }
        let rc: Rc<str> = Rc::from(text);
        self.texts.insert(rc.clone());
        rc
    }

    fn record(&mut self, data: InternalData) -> Rc<InternalData> {
        if let Some(rc) = self.records.get(&data) {
            return rc.clone();
        }
        let rc = Rc::new(data);
        self.records.insert(rc.clone());
        rc
    }

    /// A saved event; `None` for what is not an object with an integer
    /// `id` (skipped, as before).
    fn event(&mut self, raw: &RawValue) -> Option<QueuedEvent> {
        let mut fields: BTreeMap<String, &RawValue> = serde_json::from_str(raw.get()).ok()?;
        let id: i64 = serde_json::from_str(fields.remove("id")?.get()).ok()?;
        let internal = fields
            .remove("internal_data")
            .and_then(|r| serde_json::from_str::<InternalData>(r.get()).ok())
            .map(|d| self.record(d));
        let mut out = std::mem::take(&mut self.scratch);
        out.clear();
        out.push(b'{');
        for (i, (k, v)) in fields.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            // A string into a Vec cannot fail.
            let _ = serde_json::to_writer(&mut out, k);
            out.push(b':');
            out.extend_from_slice(v.get().as_bytes());
        }
        out.push(b'}');
        // JSON text and a serialised key: UTF-8.
        let text = std::str::from_utf8(&out).ok().map(|t| self.text(t));
        self.scratch = out;
        Some(QueuedEvent { id, body: EventBody::Shared(text?), internal })
    }

    fn queue(&mut self, q: FlatQueue<'_>) -> EventQueue {
        let events: VecDeque<QueuedEvent> = q.queue.into_iter().filter_map(|raw| self.event(raw)).collect();
        let virtual_events = q
            .virtual_events
            .into_iter()
            .filter_map(|(k, v)| {
                let Value::Object(mut m) = v else { return None };
                let id = m.remove("id")?.as_i64()?;
                Some((k, id, m))
            })
            .collect();
        EventQueue::from_parts(events, virtual_events, q.next_event_id, q.newest_pruned_id)
    }
}

/// Restores every pair of the array that `reader` starts with, in order,
/// until its end or the first damage.
pub(crate) fn read(mut reader: impl BufRead, restorer: &mut Restorer<'_>) -> Result<(), Damage> {
    let mut interner = Interner::default();
    let mut pair = Vec::new();
    if next_byte(&mut reader)? != Some(b'[') {
        return Err(Damage("not a JSON array".into()));
    }
    for n in 1u64.. {
        let at = |why: String| Damage(format!("queue {n} of the array: {why}"));
        match (n, next_byte(&mut reader)?) {
            (_, None) => return Err(at("cut short".into())),
            (_, Some(b']')) => break,
            (1, Some(b'[')) => {}
            (_, Some(b',')) if n > 1 => {
                if next_byte(&mut reader)? != Some(b'[') {
                    return Err(at("not a [queue_id, descriptor] pair".into()));
                }
            }
            (_, Some(other)) => return Err(at(format!("unexpected {:?}", other as char))),
        }
        read_pair(&mut reader, &mut pair).map_err(at)?;
        let (id, mut d): (String, Flat<'_>) = serde_json::from_slice(&pair).map_err(|e| at(e.to_string()))?;
        let spec = d.options().into_spec(d.user_profile_id, d.realm_id, d.queue_timeout, d.event_types);
        let queue = interner.queue(d.event_queue);
        restorer.add(&id, spec, queue, d.last_connection_time);
    }
    match next_byte(&mut reader)? {
        None => Ok(()),
        Some(_) => Err(Damage("more after the end of the array".into())),
    }
}

/// Consumes whitespace and then one byte, which it returns (`None` at the
/// end of the file).
fn next_byte(reader: &mut impl BufRead) -> Result<Option<u8>, Damage> {
    loop {
        let buf = reader.fill_buf().map_err(|e| Damage(format!("cannot read: {e}")))?;
        match buf.first().copied() {
            Some(b) if b.is_ascii_whitespace() => reader.consume(1),
            Some(b) => {
                reader.consume(1);
                return Ok(Some(b));
            }
            None => return Ok(None),
        }
    }
}

/// Reads the rest of an array whose `[` was just consumed into `pair`
/// (brackets included), by bracket depth outside strings; the parser
/// checks the rest.
fn read_pair(reader: &mut impl BufRead, pair: &mut Vec<u8>) -> Result<(), String> {
    pair.clear();
    pair.push(b'[');
    let (mut depth, mut in_string, mut escaped) = (1u32, false, false);
    loop {
        let buf = reader.fill_buf().map_err(|e| format!("cannot read: {e}"))?;
        if buf.is_empty() {
            return Err("cut short".into());
        }
        let mut end = None;
        for (i, &b) in buf.iter().enumerate() {
            if in_string {
                match b {
                    _ if escaped => escaped = false,
                    b'\\' => escaped = true,
                    b'"' => in_string = false,
                    _ => {}
                }
                continue;
            }
            match b {
                b'"' => in_string = true,
                b'[' | b'{' => depth += 1,
                b']' | b'}' => {
                    depth -= 1;
                    if depth == 0 {
                        end = Some(i + 1);
                        break;
                    }
                }
                _ => {}
            }
        }
        let used = end.unwrap_or(buf.len());
        pair.extend_from_slice(&buf[..used]);
        reader.consume(used);
        if end.is_some() {
            return Ok(());
        }
        if pair.len() > MAX_LINE {
            return Err(format!("a queue longer than {MAX_LINE} bytes"));
        }
    }
}
