//! Group commit (backend/src/db/writer.rs): sends made at the same moment
//! are written by one statement. Whatever the batching, every message keeps
//! its own sender, channel, content and rows, ids follow each sender's
//! order, and a channel's first message is its smallest id.

#![allow(clippy::unwrap_used)] // test code: a panic is a failed assertion

use squall_e2e::{sql_query, Server, ServerOptions};
use std::collections::{BTreeMap, BTreeSet};

const SENDERS: usize = 16;
const SENDS: usize = 25;
const CHANNELS: usize = 4;

#[test]
fn concurrent_sends_each_keep_their_rows_and_order() {
    let server = Server::start_with(ServerOptions { rate_limit_per_user: 0, ..ServerOptions::default() }).unwrap();
    let mut senders = Vec::new();
    for i in 0..SENDERS {
        let c = server.create_user(&format!("s{i}@example.com"), &format!("Sender {i}")).unwrap();
        // Sender i is in channel i % CHANNELS (and nobody else's).
        c.subscribe(&[&format!("chan-{}", i % CHANNELS)]).unwrap();
        senders.push(c);
    }
    let threads: Vec<_> = senders
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let c = c.clone();
            std::thread::spawn(move || {
                (0..SENDS)
                    .map(|n| (c.send_stream(&format!("chan-{}", i % CHANNELS), "t", &format!("{i}:{n}")).unwrap(), n))
                    .collect::<Vec<(i64, usize)>>()
            })
        })
        .collect();
    let sent: Vec<Vec<(i64, usize)>> = threads.into_iter().map(|t| t.join().unwrap()).collect();

    let db = &server.database_url;
    let mut all = BTreeSet::new();
    for (i, ids) in sent.iter().enumerate() {
        assert!(ids.windows(2).all(|w| w[0].0 < w[1].0), "sender {i}'s ids out of order: {ids:?}");
        for &(id, n) in ids {
            assert!(all.insert(id), "id {id} given twice");
            let row = sql_query(
                db,
                &format!(
                    "SELECT m.sender_id, m.content, s.name FROM message m JOIN stream s ON s.recipient_id = m.recipient_id
                     WHERE m.id = {id}"
                ),
            )
            .unwrap();
            assert_eq!(row.len(), 1, "message {id} missing");
            let (sender, content, channel): (i32, String, String) = (row[0].get(0), row[0].get(1), row[0].get(2));
            assert_eq!(sender as i64, senders[i].user_id, "message {id}'s sender");
            assert_eq!(content, format!("{i}:{n}"), "message {id}'s content");
            assert_eq!(channel, format!("chan-{}", i % CHANNELS), "message {id}'s channel");
        }
    }
    // Rows: each message to exactly its channel's members.
    let members: BTreeMap<usize, BTreeSet<i64>> = (0..CHANNELS)
        .map(|c| (c, (0..SENDERS).filter(|i| i % CHANNELS == c).map(|i| senders[i].user_id).collect()))
        .collect();
    let rows = sql_query(
        db,
        &format!(
            "SELECT message_id, user_profile_id, flags FROM usermessage WHERE message_id >= {}",
            all.first().unwrap()
        ),
    )
    .unwrap();
    let mut got: BTreeMap<i64, BTreeMap<i64, i64>> = BTreeMap::new();
    for r in &rows {
        got.entry(r.get(0)).or_default().insert(r.get::<_, i32>(1) as i64, r.get(2));
    }
    for (i, ids) in sent.iter().enumerate() {
        for &(id, _) in ids {
            let users = got.get(&id).cloned().unwrap_or_default();
            let want = &members[&(i % CHANNELS)];
            assert_eq!(&users.keys().copied().collect::<BTreeSet<_>>(), want, "message {id}'s rows");
            // A plain message from an API client: no flags for anyone
            // (the sender's own row is not read-by-sender for it).
            assert!(users.values().all(|&f| f == 0), "message {id}'s flags: {users:?}");
        }
    }
    // Each channel's first message is its smallest id.
    for c in 0..CHANNELS {
        let r = sql_query(
            db,
            &format!(
                "SELECT s.first_message_id, (SELECT min(id) FROM message m WHERE m.recipient_id = s.recipient_id)
                 FROM stream s WHERE s.name = 'chan-{c}'"
            ),
        )
        .unwrap();
        let (first, smallest): (Option<i64>, Option<i64>) = (r[0].get(0), r[0].get(1));
        assert!(smallest.is_some());
        assert_eq!(first, smallest, "chan-{c}'s first message");
    }
    // And the sends were written together (one statement's messages share
    // its transaction's timestamp): 16 senders at once, two writers.
    let shared = sql_query(
        db,
        &format!(
            "SELECT count(*) FROM (SELECT date_sent FROM message WHERE id >= {} GROUP BY date_sent HAVING count(*) > 1) x",
            all.first().unwrap()
        ),
    )
    .unwrap();
    assert!(shared[0].get::<_, i64>(0) > 0, "no two concurrent sends were written by one statement");
}
