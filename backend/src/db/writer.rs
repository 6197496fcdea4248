//! Group commit for the send path: messages sent at the same moment are
//! written by one statement and one commit.
//!
//! PostgreSQL's work per send is mostly per statement and per commit
//! (executor start-up, locks, the WAL flush): `pgbench` on the send's
//! insert gave 2,900–4,000 messages/s one message per statement and
//! 7,200–8,700 with eight (BENCHMARKS.md). So a send does not run its
//! insert itself: it queues it and, when fewer than [`WRITERS`] writers are
//! running, starts one. A writer takes everything queued (up to
//! [`MAX_MESSAGES`] messages and [`MAX_ROWS`] rows), writes it in one
//! statement and hands each sender its id, until the queue is empty. An
//! idle server therefore writes each message at once, alone; a busy one
//! batches exactly the sends that would otherwise have waited.
//!
//! Writers are spawned tasks, so a client that goes away cannot cancel a
//! statement other senders are waiting on. A batch whose statement fails
//! is retried one message at a time, so one bad message does not fail the
//! others (the failed statement committed nothing).

use super::messages::{insert_message_with_rows, NewMessage};
use super::Pool;
use squall_proto::error::ApiError;
use std::sync::Mutex;
use tokio::sync::oneshot;

/// Writers running at once (each holds one database connection while it
/// writes).
pub const WRITERS: usize = 2;
/// Most messages one statement writes.
pub const MAX_MESSAGES: usize = 64;
/// Most UserMessage rows one statement writes (a message with more is
/// written alone).
pub const MAX_ROWS: usize = 2_000;

/// One message to write: the Message row, its stream (0: none) and its
/// UserMessage rows (`users[i]` gets `flags[i]`).
#[derive(Debug, Clone)]
pub struct Pending {
    realm_id: i64,
    sender_id: i64,
    recipient_id: i64,
    subject: String,
    content: String,
    rendered_content: String,
    sending_client: String,
    is_me_message: bool,
    stream_id: i64,
    users: Vec<i32>,
    flags: Vec<i64>,
}

impl Pending {
    /// `row` with its stream and rows, owned for the queue.
    pub fn of(row: &NewMessage<'_>, stream_id: i64, users: Vec<i32>, flags: Vec<i64>) -> Self {
        Pending {
            realm_id: row.realm_id,
            sender_id: row.sender_id,
            recipient_id: row.recipient_id,
            subject: row.subject.to_owned(),
            content: row.content.to_owned(),
            rendered_content: row.rendered_content.to_owned(),
            sending_client: row.sending_client.to_owned(),
            is_me_message: row.is_me_message,
            stream_id,
            users,
            flags,
        }
    }

    fn row(&self) -> NewMessage<'_> {
        NewMessage {
            realm_id: self.realm_id,
            sender_id: self.sender_id,
            recipient_id: self.recipient_id,
            subject: &self.subject,
            content: &self.content,
            rendered_content: &self.rendered_content,
            sending_client: &self.sending_client,
            is_me_message: self.is_me_message,
        }
    }
}

type Reply = oneshot::Sender<Result<(i64, i64), ApiError>>;

#[derive(Default)]
struct State {
    queue: Vec<(Pending, Reply)>,
    writers: usize,
}

/// The queue and its writers (one per backend process).
#[derive(Default)]
pub struct MessageWriter {
    state: Mutex<State>,
}

impl MessageWriter {
    /// Writes `p` (with others queued at the same time) on `pool`; returns
    /// the message id and its unix time once committed.
    pub async fn write(self: &std::sync::Arc<Self>, pool: &Pool, p: Pending) -> Result<(i64, i64), ApiError> {
        let (tx, rx) = oneshot::channel();
        let start = {
            let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
            s.queue.push((p, tx));
            if s.writers < WRITERS {
                s.writers += 1;
                true
            } else {
                false
            }
        };
        if start {
            self.spawn_writer(pool);
        }
        rx.await.map_err(|_| ApiError::busy("The message writer stopped; try again"))?
    }

    /// Starts a writer (its place already counted in `writers`).
    fn spawn_writer(self: &std::sync::Arc<Self>, pool: &Pool) {
        let (me, pool) = (self.clone(), pool.clone());
        tokio::spawn(async move { me.run(pool).await });
    }

    /// Takes the next batch, or retires this writer when there is none
    /// (under the same lock as [`MessageWriter::write`]'s check, so that no
    /// message is left with nobody to write it).
    fn next_batch(&self) -> Option<Vec<(Pending, Reply)>> {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if s.queue.is_empty() {
            s.writers -= 1;
            return None;
        }
        let (mut take, mut rows) = (0, 0);
        for (p, _) in &s.queue {
            if take > 0 && (take == MAX_MESSAGES || rows + p.users.len() > MAX_ROWS) {
                break;
            }
            take += 1;
            rows += p.users.len();
        }
        Some(s.queue.drain(..take).collect())
    }

    async fn run(self: std::sync::Arc<Self>, pool: Pool) {
        let mut guard = Retire { writer: self.clone(), pool: pool.clone(), retired: false };
        loop {
            let Some(batch) = self.next_batch() else {
                guard.retired = true;
                return;
            };
            let db = match pool.get().await {
                Ok(db) => db,
                Err(e) => {
                    let e: ApiError = e.into();
                    for (_, reply) in batch {
                        let _ = reply.send(Err(e.clone()));
                    }
                    continue;
                }
            };
            if batch.len() > 1 {
                let pending: Vec<&Pending> = batch.iter().map(|(p, _)| p).collect();
                match insert_batch(&db, &pending).await {
                    Ok(ids) if ids.len() == batch.len() => {
                        for ((_, reply), id) in batch.into_iter().zip(ids) {
                            let _ = reply.send(Ok(id));
                        }
                        continue;
                    }
                    // Committed, but not answered as asked: writing again
                    // would store the messages twice.
                    Ok(ids) => {
                        let e = ApiError::internal(format!("batched insert returned {} of {}", ids.len(), batch.len()));
                        for (_, reply) in batch {
                            let _ = reply.send(Err(e.clone()));
                        }
                        continue;
                    }
                    // The statement failed, nothing of it stored: one by one.
                    Err(e) => tracing::warn!(messages = batch.len(), error = ?e, "batched insert failed; one by one"),
                }
            }
            for (p, reply) in batch {
                let r = insert_message_with_rows(&db, &p.row(), p.stream_id, &p.users, &p.flags).await;
                let _ = reply.send(r);
            }
        }
    }
}

/// A writer that stops other than by finding the queue empty (its task
/// cancelled with its runtime, or a panic) gives its place back, and
/// starts a successor when messages are still queued, so that none waits
/// for a later send to start one.
struct Retire {
    writer: std::sync::Arc<MessageWriter>,
    pool: Pool,
    retired: bool,
}

impl Drop for Retire {
    fn drop(&mut self) {
        if self.retired {
            return;
        }
        let successor = {
            let mut s = self.writer.state.lock().unwrap_or_else(|e| e.into_inner());
            s.writers -= 1;
            let needed = !s.queue.is_empty() && tokio::runtime::Handle::try_current().is_ok();
            if needed {
                s.writers += 1;
            }
            needed
        };
        if successor {
            self.writer.spawn_writer(&self.pool);
        }
    }
}

/// Writes `batch` in one statement: ids in the batch's order (taken from
/// the sequence in that order), each message's rows, each stream's first
/// message when it has none. Returns (id, unix time) per message, in order.
async fn insert_batch(db: &deadpool_postgres::Client, batch: &[&Pending]) -> Result<Vec<(i64, i64)>, ApiError> {
    let col = |f: fn(&Pending) -> i32| batch.iter().map(|p| f(p)).collect::<Vec<i32>>();
    let text = |f: fn(&Pending) -> &str| batch.iter().map(|p| f(p)).collect::<Vec<&str>>();
    let realm = col(|p| p.realm_id as i32);
    let sender = col(|p| p.sender_id as i32);
    let recipient = col(|p| p.recipient_id as i32);
    let stream = col(|p| p.stream_id as i32);
    let subject = text(|p| &p.subject);
    let content = text(|p| &p.content);
    let rendered = text(|p| &p.rendered_content);
    let client = text(|p| &p.sending_client);
    let me: Vec<bool> = batch.iter().map(|p| p.is_me_message).collect();
    let (mut users, mut flags, mut ords) = (Vec::new(), Vec::new(), Vec::new());
    for (i, p) in batch.iter().enumerate() {
        users.extend_from_slice(&p.users);
        flags.extend_from_slice(&p.flags);
        ords.extend(std::iter::repeat_n(i as i64 + 1, p.users.len()));
    }
    let rows = super::query_cached(
        db,
        "WITH input AS MATERIALIZED (
             SELECT nextval('message_id_seq') AS id, t.*
             FROM unnest($1::int[], $2::int[], $3::int[], $4::text[], $5::text[], $6::text[], $7::text[],
                         $8::bool[], $9::int[]) WITH ORDINALITY
                  AS t(realm_id, sender_id, recipient_id, subject, content, rendered_content, sending_client,
                       is_me_message, stream_id, ord)
             ORDER BY t.ord),
         m AS (
             INSERT INTO message (id, realm_id, sender_id, recipient_id, subject, content, rendered_content,
                                  sending_client, is_me_message)
             SELECT id, realm_id, sender_id, recipient_id, subject, content, rendered_content, sending_client,
                    is_me_message
             FROM input ORDER BY ord
             RETURNING id, extract(epoch from date_sent)::bigint AS ts),
         rows AS (
             INSERT INTO usermessage (user_profile_id, message_id, flags)
             SELECT r.u, input.id, r.f
             FROM unnest($10::int[], $11::bigint[], $12::bigint[]) AS r(u, f, ord) JOIN input ON input.ord = r.ord),
         first AS (
             UPDATE stream SET first_message_id = x.id
             FROM (SELECT stream_id, min(id) AS id FROM input WHERE stream_id <> 0 GROUP BY stream_id) x
             WHERE stream.id = x.stream_id AND stream.first_message_id IS NULL)
         SELECT input.ord, m.id, m.ts FROM m JOIN input ON input.id = m.id ORDER BY input.ord",
        &[&realm, &sender, &recipient, &subject, &content, &rendered, &client, &me, &stream, &users, &flags, &ords],
    )
    .await?;
    Ok(rows.iter().map(|r| (r.get::<_, i64>(1), r.get::<_, i64>(2))).collect())
}
