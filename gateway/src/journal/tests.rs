//! Unit tests of the journal: a journaled core recovers exactly, a torn or
//! damaged journal is replayed up to its last good record, the files'
//! generations, and a recovered queue's first poll.

use super::files::{dir_of, start};
use super::*;
use crate::park::Slot;
use crate::persist::tests::{generic, message, restart, spec, state, tempdir};
use crate::queue::VirtualEvent;
use crate::state::{CoreState, EventsOp, PollResult};
use serde_json::json;
use squall_proto::envelope::NotifySets;
use squall_proto::flags;
use squall_proto::queue_spec::QueueSpec;
use squall_shard_router::placement::Topology;
use std::path::Path;

fn topo() -> Topology {
    Topology { nodes: 1, cores: 1 }
}

/// Everything a queue is, comparably.
type Shape = (QueueSpec, Vec<QueuedEvent>, Vec<VirtualEvent>, i64, i64);

fn shapes(s: &CoreState) -> Vec<(QueueId, Shape)> {
    let mut all: Vec<(QueueId, Shape)> = s
        .reg
        .iter()
        .map(|(id, d)| {
            let q = &d.queue;
            let shape = (
                d.spec.clone(),
                q.contents().cloned().collect(),
                q.virtual_events().to_vec(),
                q.next_event_id(),
                q.newest_pruned_id(),
            );
            (*id, shape)
        })
        .collect();
    all.sort_by_key(|(id, _)| *id);
    all
}

fn poll(s: &mut CoreState, user: i64, q: QueueId, last: i64) -> PollResult {
    let op = EventsOp::Poll { queue_id: q, last_event_id: Some(last), dont_block: true };
    s.events(user, op, &Slot::new(), 1_000_000)
}

fn answer_events(r: PollResult) -> Vec<Value> {
    let PollResult::Answer(a) = r else { panic!("a dont_block poll answers at once") };
    let v: Value = serde_json::from_slice(&a.body[a.room..]).expect("an answer is JSON");
    assert_eq!(v["result"], "success", "{v}");
    v["events"].as_array().cloned().unwrap_or_default()
}

/// A core with a journal attached (and its bytes collected as a file).
fn journaled() -> (CoreState, Rc<Signal>) {
    let mut s = state(0);
    let signal = Rc::new(Signal::default());
    s.journal = Some(Journal::new(signal.clone(), HEADER.len() as u64));
    (s, signal)
}

/// What the journal made so far, as a journal file.
fn file_of(s: &mut CoreState) -> Vec<u8> {
    let mut file = HEADER.to_vec();
    if let Some(b) = s.journal.as_mut().and_then(Journal::take) {
        file.extend_from_slice(&b.bytes);
    }
    file
}

/// Replays `file` onto an empty core (no greeting).
fn replayed(file: &[u8]) -> (CoreState, Result<Replayed, (Replayed, Stop)>) {
    let mut s = state(0);
    let event = restart();
    let mut r = Restorer::quiet(&mut s, topo(), &event);
    let outcome = replay(file, &mut r);
    r.finish();
    (s, outcome)
}

/// Does one of everything the journal records, on users 1..=4.
fn busy_core() -> (CoreState, Vec<(i64, QueueId)>) {
    let (mut s, _) = journaled();
    let qs: Vec<(i64, QueueId)> = (1..=4).map(|u| (u, s.allocate(spec(u), 100))).collect();
    let notify = NotifySets { online_push_user_ids: vec![2], ..NotifySets::default() };
    s.deliver(message("hello", &[(1, 0), (2, flags::MENTIONED), (3, flags::READ)], notify));
    s.deliver(generic(json!({"type": "test", "shared": true}), &[1, 2, 3, 4]));
    // Flag events are compressed into one virtual event until read.
    for m in [7, 8] {
        let flag = json!({"type": "update_message_flags", "op": "add", "operation": "add", "flag": "starred", "messages": [m], "all": false});
        s.deliver(generic(flag, &[1, 2]));
    }
    // User 1 reads: the virtual event is materialised, then acknowledged.
    let got = answer_events(poll(&mut s, 1, qs[0].1, -1));
    let last = got.last().and_then(|e| e["id"].as_i64()).expect("events");
    let again = json!({"type": "update_message_flags", "op": "add", "operation": "add", "flag": "starred", "messages": [9], "all": false});
    s.deliver(generic(again, &[1]));
    answer_events(poll(&mut s, 1, qs[0].1, last));
    // User 4's queue goes away.
    s.events(4, EventsOp::Delete { queue_id: qs[3].1 }, &Slot::new(), 1_000_000);
    s.deliver(generic(json!({"type": "test", "after": "delete"}), &[1, 2, 3, 4]));
    (s, qs)
}

#[test]
fn a_replayed_journal_rebuilds_every_queue_exactly() {
    let (mut s, qs) = busy_core();
    let file = file_of(&mut s);
    let (r, outcome) = replayed(&file);
    let done = outcome.unwrap_or_else(|(_, stop)| panic!("a whole journal replays: {}", describe(&stop)));
    assert_eq!(done.skipped, 0);
    assert_eq!(shapes(&r), shapes(&s), "the replayed core equals the journaled one");
    assert!(r.reg.get(qs[3].1).is_none(), "the deleted queue stays deleted");
    // Sharing survives: one allocation for the stream message's payload.
    let payload = |s: &CoreState, q: QueueId| match &s.reg.get(q).unwrap().queue.contents().next().unwrap().body {
        EventBody::Message { payload, .. } => payload.clone(),
        other => panic!("a message first, not {other:?}"),
    };
    assert!(Rc::ptr_eq(&payload(&r, qs[1].1), &payload(&r, qs[2].1)));
}

fn describe(stop: &Stop) -> String {
    match stop {
        Stop::Torn(w) => format!("torn: {w}"),
        Stop::Damaged(Damage(w)) => format!("damaged: {w}"),
    }
}

/// Byte offsets at which each record of `file` ends.
fn record_ends(file: &[u8]) -> Vec<usize> {
    let mut at = HEADER.len();
    let mut ends = Vec::new();
    while at < file.len() {
        let len = u32::from_le_bytes(file[at..at + 4].try_into().unwrap()) as usize;
        at += 8 + len;
        ends.push(at);
    }
    ends
}

#[test]
fn a_torn_journal_replays_every_whole_record_before_the_tear() {
    let (mut s, _) = busy_core();
    let file = file_of(&mut s);
    let ends = record_ends(&file);
    assert!(ends.len() > 20, "enough records to cut: {}", ends.len());
    // Every cut inside a record: everything before it is applied, the
    // rest reported as torn, nothing panics.
    for cut in HEADER.len() + 1..file.len() {
        let whole = ends.iter().filter(|&&e| e <= cut).count() as u64;
        let (_, outcome) = replayed(&file[..cut]);
        match outcome {
            Ok(done) => {
                assert!(ends.contains(&cut), "cut {cut} is at a record boundary");
                assert_eq!(done.records + done.skipped, whole);
            }
            Err((done, Stop::Torn(_))) => assert_eq!(done.records + done.skipped, whole, "cut at {cut}"),
            Err((_, stop)) => panic!("cut at {cut}: {}", describe(&stop)),
        }
    }
    // Cut after the k-th record: the core equals one journaled up to it.
    let (mut shorter, _) = journaled();
    let q = shorter.allocate(spec(1), 100);
    shorter.deliver(generic(json!({"type": "test", "n": 1}), &[1]));
    let part = file_of(&mut shorter);
    shorter.deliver(generic(json!({"type": "test", "n": 2}), &[1]));
    let full = [part.clone(), file_of(&mut shorter)[HEADER.len()..].to_vec()].concat();
    let (r, outcome) = replayed(&full[..full.len() - 3]);
    assert!(matches!(outcome, Err((_, Stop::Torn(_)))));
    let events: Vec<i64> = r.reg.get(q).unwrap().queue.contents().map(|e| e.id).collect();
    assert_eq!(events, vec![0], "the first event, not the torn second");
}

#[test]
fn a_damaged_record_stops_replay_there() {
    let (mut s, qs) = busy_core();
    let file = file_of(&mut s);
    let ends = record_ends(&file);
    // Flip a byte inside the 6th record's payload.
    let mut bad = file.clone();
    let at = ends[4] + 10;
    bad[at] ^= 0x55;
    let (r, outcome) = replayed(&bad);
    match outcome {
        Err((done, Stop::Damaged(Damage(why)))) => {
            assert_eq!(done.records + done.skipped, 5, "{why}");
            assert!(why.contains("checksum"), "{why}");
        }
        Ok(_) => panic!("a damaged journal is not replayed to its end"),
        Err((_, stop)) => panic!("expected damage, got {}", describe(&stop)),
    }
    // The queues allocated before the damage are there.
    assert!(r.reg.get(qs[0].1).is_some());
    // A length past any record is damage too, not an allocation.
    let mut huge = file.clone();
    huge[ends[2]..ends[2] + 4].copy_from_slice(&u32::MAX.to_le_bytes());
    let (_, outcome) = replayed(&huge);
    assert!(matches!(outcome, Err((_, Stop::Damaged(_)))));
    // Not a journal at all.
    let (_, outcome) = replayed(b"[1, 2, 3]\n and more bytes than a header");
    assert!(matches!(outcome, Err((_, Stop::Damaged(_)))));
}

/// Writes what `s`'s journal made into `dir`'s current journal file.
fn flush_into(s: &mut CoreState, dir: &Path) {
    let dir = dir_of(dir, 0);
    let mut names: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name()).collect();
    names.sort();
    let current = names.iter().rev().find(|n| n.to_string_lossy().starts_with("journal.")).expect("a journal file");
    let bytes = s.journal.as_mut().and_then(Journal::take).map(|b| b.bytes).unwrap_or_default();
    let mut f = std::fs::OpenOptions::new().append(true).open(dir.join(current)).unwrap();
    std::io::Write::write_all(&mut f, &bytes).unwrap();
}

#[test]
fn after_a_crash_the_core_comes_back_with_its_queues_and_a_restart_event() {
    let dir = tempdir();
    let mut s = state(0);
    let (restored, started) = start(&mut s, &dir, topo(), &restart(), 100);
    assert_eq!(restored, 0);
    assert!(started.is_some() && s.journal.is_some());
    let q1 = s.allocate(spec(1), 100);
    let q2 = s.allocate(spec(2), 100);
    s.deliver(message("hello", &[(1, 0), (2, flags::MENTIONED)], NotifySets::default()));
    let seen = answer_events(poll(&mut s, 1, q1, -1));
    assert_eq!(seen.len(), 1);
    flush_into(&mut s, &dir);
    let before = shapes(&s);
    // A heartbeat the journal does not hold: the client saw id 1.
    s.reg.get_mut(q1).unwrap().queue.push(EventBody::Heartbeat);
    drop(s);

    // The "crash": a new core on the same directory.
    let mut r = state(0);
    let (restored, started) = start(&mut r, &dir, topo(), &restart(), 5_000);
    assert_eq!(restored, 2);
    assert!(started.is_some());
    let after = shapes(&r);
    for ((id, was), (id2, now)) in before.iter().zip(&after) {
        assert_eq!(id, id2);
        assert_eq!(was.0, now.0, "same options");
        assert_eq!(was.1[..], now.1[..was.1.len()], "the same events first");
        let restart_event = now.1.last().expect("a restart event");
        assert!(matches!(&restart_event.body, EventBody::Shared(t) if t.contains("\"restart\"")));
        assert_eq!(restart_event.id, was.3 + crate::queue::RECOVERY_ID_GAP, "ids jump past what clients may have seen");
    }
    assert_eq!(r.reg.get(q2).unwrap().last_connection_time, 5_000, "idle time counts from the recovery");
    // The client acknowledges the heartbeat id the journal never held.
    let got = answer_events(poll(&mut r, 1, q1, 1));
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0]["type"], "restart");
    // A fresh snapshot replaced the old files; the next crash starts there.
    let names: Vec<String> = std::fs::read_dir(dir_of(&dir, 0))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names.len(), 2, "one snapshot and one journal file: {names:?}");
    assert!(names.iter().any(|n| n == "snapshot.000000000002"), "{names:?}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn journal_files_after_a_snapshot_taken_while_running_replay_in_order() {
    // Generation 1: a snapshot and a journal; generation 2: the journal
    // begun when the next snapshot was started, which never finished.
    let dir = tempdir();
    let mut s = state(0);
    let (_, started) = start(&mut s, &dir, topo(), &restart(), 100);
    assert!(started.is_some());
    let q = s.allocate(spec(1), 100);
    s.deliver(generic(json!({"type": "test", "n": 1}), &[1]));
    flush_into(&mut s, &dir);
    let jdir = dir_of(&dir, 0);
    let mut second = HEADER.to_vec();
    if let Some(j) = s.journal.as_mut() {
        j.rotate(HEADER.len() as u64);
    }
    s.deliver(generic(json!({"type": "test", "n": 2}), &[1]));
    second.extend_from_slice(&s.journal.as_mut().and_then(Journal::take).unwrap().bytes);
    std::fs::write(jdir.join("journal.000000000002"), &second).unwrap();
    std::fs::write(jdir.join("snapshot.000000000002.tmp"), b"half a snapshot").unwrap();

    let mut r = state(0);
    let (restored, _) = start(&mut r, &dir, topo(), &restart(), 100);
    assert_eq!(restored, 1);
    let texts: Vec<String> = r
        .reg
        .get(q)
        .unwrap()
        .queue
        .contents()
        .filter_map(|e| match &e.body {
            EventBody::Shared(t) => Some(t.to_string()),
            _ => None,
        })
        .collect();
    assert!(texts[0].contains("\"n\":1") && texts[1].contains("\"n\":2"), "{texts:?}");
    assert!(texts[2].contains("restart"), "{texts:?}");
    // The half-written snapshot of the crash is gone with the old files.
    assert!(!jdir.join("snapshot.000000000002.tmp").exists());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn durability_waiters_are_answered_once_their_records_are_on_disk() {
    let (mut s, _) = journaled();
    let (tx, mut rx) = oneshot::channel();
    // Nothing made yet: answered at once.
    s.journal.as_mut().unwrap().when_durable(tx);
    assert_eq!(rx.try_recv(), Ok(Some(())));
    s.allocate(spec(1), 100);
    let (tx, mut rx) = oneshot::channel();
    s.journal.as_mut().unwrap().when_durable(tx);
    assert_eq!(rx.try_recv(), Ok(None), "waits for the disk");
    assert!(s.journal.as_ref().unwrap().awaited());
    let batch = s.journal.as_mut().unwrap().take().unwrap();
    s.allocate(spec(2), 100);
    let (tx2, mut rx2) = oneshot::channel();
    s.journal.as_mut().unwrap().when_durable(tx2);
    s.journal.as_mut().unwrap().durable_upto(batch.upto);
    assert_eq!(rx.try_recv(), Ok(Some(())), "its records are on disk");
    assert_eq!(rx2.try_recv(), Ok(None), "later records are not yet");
    // A journal given up answers everyone.
    s.journal.take().unwrap().abandon();
    assert_eq!(rx2.try_recv(), Ok(Some(())));
}

/// Writes seed journals for the fuzz target into `$SQUALL_JOURNAL_SEEDS`
/// (run by hand: `SQUALL_JOURNAL_SEEDS=$PWD/fuzz/corpus/journal cargo test -p
/// squall-gateway --lib write_fuzz_seeds -- --ignored`).
#[test]
#[ignore]
fn write_fuzz_seeds() {
    let Ok(dir) = std::env::var("SQUALL_JOURNAL_SEEDS") else { return };
    let dir = std::path::PathBuf::from(dir);
    std::fs::create_dir_all(&dir).unwrap();
    let (mut s, _) = busy_core();
    let file = file_of(&mut s);
    std::fs::write(dir.join("busy-core"), &file[HEADER.len()..]).unwrap();
    let (mut one, _) = journaled();
    one.allocate(spec(1), 100);
    one.deliver(generic(json!({"type": "test", "n": 1}), &[1]));
    let file = file_of(&mut one);
    std::fs::write(dir.join("one-queue"), &file[HEADER.len()..]).unwrap();
}
