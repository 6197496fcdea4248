//! Soft deactivation (Zulip's `long_term_idle`).
//!
//! Users inactive for a long time stop getting UserMessage rows for plain
//! stream messages (the send path skips them), which is what makes sending
//! to huge streams cheap. When such a user comes back (`POST /register`, or
//! a DM / personal mention that would notify them) [`add_missing_messages`]
//! writes exactly the rows they missed, from the subscription entries of
//! the audit log, so their history looks as if they had never been idle.

use deadpool_postgres::GenericClient;
use squall_proto::error::ApiError;
use std::collections::HashMap;

/// Zulip's RealmAuditLog event types that soft deactivation reads or writes.
pub mod audit {
    /// `USER_SOFT_ACTIVATED`.
    pub const USER_SOFT_ACTIVATED: i16 = 120;
    /// `USER_SOFT_DEACTIVATED`.
    pub const USER_SOFT_DEACTIVATED: i16 = 121;
    /// `SUBSCRIPTION_CREATED`.
    pub const SUBSCRIPTION_CREATED: i16 = 301;
    /// `SUBSCRIPTION_ACTIVATED`.
    pub const SUBSCRIPTION_ACTIVATED: i16 = 302;
    /// `SUBSCRIPTION_DEACTIVATED`.
    pub const SUBSCRIPTION_DEACTIVATED: i16 = 303;
}

/// Zulip's default `--inactive-for` threshold, in days.
pub const DEFAULT_INACTIVE_DAYS: u32 = 28;

/// Rows written per statement while backfilling (Zulip's batch size).
pub const BACKFILL_BATCH: usize = 10_000;

/// Records subscription changes of `user_ids` to `stream_id` in the audit
/// log, stamped with the current highest message id.
pub async fn log_subscription_changes(
    db: &impl GenericClient,
    realm_id: i64,
    stream_id: i64,
    user_ids: &[i64],
    event_type: i16,
) -> Result<(), ApiError> {
    if user_ids.is_empty() {
        return Ok(());
    }
    let ids: Vec<i32> = user_ids.iter().map(|&u| u as i32).collect();
    db.execute(
        "INSERT INTO realmauditlog (realm_id, modified_user_id, modified_stream_id, event_type, event_last_message_id)
         SELECT $1, u, $2, $3, (SELECT coalesce(max(id), 0) FROM message) FROM unnest($4::int[]) AS u",
        &[&(realm_id as i32), &(stream_id as i32), &event_type, &ids],
    )
    .await?;
    Ok(())
}

/// Soft-deactivates every active human user (of `realm_id`, or of all
/// realms) whose last activity is older than `inactive_days`. Returns
/// their ids.
pub async fn deactivate_inactive_users(
    db: &impl GenericClient,
    realm_id: Option<i64>,
    inactive_days: u32,
) -> Result<Vec<i64>, ApiError> {
    let realm = realm_id.map(|r| r as i32);
    let rows = db
        .query(
            "WITH chosen AS (
                 SELECT id FROM userprofile
                 WHERE is_active AND NOT is_bot AND NOT long_term_idle
                   AND ($1::int IS NULL OR realm_id = $1)
                   AND coalesce(last_activity, date_joined) < now() - make_interval(days => $2)
                 FOR UPDATE)
             UPDATE userprofile u SET long_term_idle = true,
                 last_active_message_id = coalesce(
                     (SELECT max(message_id) FROM usermessage WHERE user_profile_id = u.id),
                     (SELECT max(id) FROM message), 0)
             FROM chosen WHERE u.id = chosen.id
             RETURNING u.id, u.realm_id",
            &[&realm, &(inactive_days as i32)],
        )
        .await?;
    let ids: Vec<i32> = rows.iter().map(|r| r.get(0)).collect();
    let realms: Vec<i32> = rows.iter().map(|r| r.get(1)).collect();
    db.execute(
        "INSERT INTO realmauditlog (realm_id, modified_user_id, event_type)
         SELECT r, u, $3 FROM unnest($1::int[], $2::int[]) AS t(u, r)",
        &[&ids, &realms, &audit::USER_SOFT_DEACTIVATED],
    )
    .await?;
    let mut out: Vec<i64> = ids.into_iter().map(i64::from).collect();
    out.sort_unstable();
    Ok(out)
}

/// Ids of all soft-deactivated users (of `realm_id`, or everywhere).
pub async fn idle_user_ids(db: &impl GenericClient, realm_id: Option<i64>) -> Result<Vec<i64>, ApiError> {
    let realm = realm_id.map(|r| r as i32);
    Ok(db
        .query(
            "SELECT id FROM userprofile WHERE long_term_idle AND ($1::int IS NULL OR realm_id = $1) ORDER BY id",
            &[&realm],
        )
        .await?
        .iter()
        .map(|r| r.get::<_, i32>(0) as i64)
        .collect())
}

/// One subscription audit-log entry: whether the user became subscribed
/// (created/activated) or unsubscribed, and the highest message id then.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SubscriptionEntry {
    /// Subscribed (true) or unsubscribed (false).
    pub subscribed: bool,
    /// `event_last_message_id`.
    pub last_message_id: i64,
}

/// Which of `messages` (ids in one stream, ascending, all newer than the
/// user's `last_active_message_id`, none with a row) the user received,
/// given that stream's subscription entries in log order.
///
/// Walking the log with a cursor into the messages: an unsubscribe at `E`
/// means every remaining message up to `E` was received; a subscribe at `E`
/// means every remaining message up to `E` was not. Whatever is left after
/// a final subscribe was received too.
pub fn received_messages(entries: &[SubscriptionEntry], messages: &[i64]) -> Vec<i64> {
    let mut out = Vec::new();
    let mut i = 0;
    for entry in entries {
        let start = i;
        while i < messages.len() && messages[i] <= entry.last_message_id {
            i += 1;
        }
        if !entry.subscribed {
            out.extend_from_slice(&messages[start..i]);
        }
    }
    if entries.last().is_some_and(|e| e.subscribed) {
        out.extend_from_slice(&messages[i..]);
    }
    out
}

/// Writes the UserMessage rows `user_id` missed while soft-deactivated
/// (flags 0, in batches of [`BACKFILL_BATCH`]), raising its
/// `last_active_message_id` after each batch. Leaves `long_term_idle`
/// alone. Returns how many rows were written.
pub async fn add_missing_messages(db: &impl GenericClient, user_id: i64) -> Result<usize, ApiError> {
    add_missing_messages_after(db, user_id, None).await
}

/// [`add_missing_messages`] looking at the messages after `after` rather
/// than after the user's `last_active_message_id` (which a backfill
/// raises to the last message it wrote: a message with a smaller id that
/// committed later would be below it).
async fn add_missing_messages_after(
    db: &impl GenericClient,
    user_id: i64,
    after: Option<i64>,
) -> Result<usize, ApiError> {
    let uid = user_id as i32;
    let Some(row) =
        db.query_opt("SELECT last_active_message_id FROM userprofile WHERE id = $1 FOR UPDATE", &[&uid]).await?
    else {
        return Ok(0);
    };
    // Never deactivated: there is no gap to fill.
    let Some(last_active) = after.or(row.get::<_, Option<i64>>(0)) else {
        return Ok(0);
    };

    // Every stream subscription, active or not, with its log in order.
    let subs = db
        .query(
            "SELECT st.id, st.recipient_id, s.active FROM subscription s
             JOIN stream st ON st.recipient_id = s.recipient_id WHERE s.user_profile_id = $1",
            &[&uid],
        )
        .await?;
    let log = db
        .query(
            "SELECT modified_stream_id, event_type, event_last_message_id FROM realmauditlog
             WHERE modified_user_id = $1 AND event_type = ANY($2) AND modified_stream_id IS NOT NULL
             ORDER BY event_last_message_id, id",
            &[&uid, &vec![audit::SUBSCRIPTION_CREATED, audit::SUBSCRIPTION_ACTIVATED, audit::SUBSCRIPTION_DEACTIVATED]],
        )
        .await?;
    let mut entries: HashMap<i32, Vec<SubscriptionEntry>> = HashMap::new();
    for r in &log {
        entries.entry(r.get(0)).or_default().push(SubscriptionEntry {
            subscribed: r.get::<_, i16>(1) != audit::SUBSCRIPTION_DEACTIVATED,
            last_message_id: r.get::<_, Option<i64>>(2).unwrap_or(0),
        });
    }
    let mut recipient_stream: HashMap<i32, i32> = HashMap::new();
    for s in &subs {
        let (stream_id, recipient_id, active): (i32, i32, bool) = (s.get(0), s.get(1), s.get(2));
        let list = entries.entry(stream_id).or_default();
        if list.is_empty() {
            // Subscribed before the log existed: what the row says now has
            // held throughout.
            list.push(SubscriptionEntry { subscribed: active, last_message_id: 0 });
        }
        // Unsubscribed before going idle: nothing to look for.
        if list.last().is_some_and(|e| !e.subscribed && e.last_message_id <= last_active) {
            continue;
        }
        recipient_stream.insert(recipient_id, stream_id);
    }
    if recipient_stream.is_empty() {
        return Ok(0);
    }
    let recipients: Vec<i32> = recipient_stream.keys().copied().collect();
    let messages = db
        .query(
            "SELECT m.id, m.recipient_id FROM message m
             WHERE m.recipient_id = ANY($1) AND m.id > $2
               AND NOT EXISTS (SELECT 1 FROM usermessage um WHERE um.user_profile_id = $3 AND um.message_id = m.id)
             ORDER BY m.id",
            &[&recipients, &last_active, &uid],
        )
        .await?;
    let mut per_stream: HashMap<i32, Vec<i64>> = HashMap::new();
    for m in &messages {
        if let Some(stream) = recipient_stream.get(&m.get::<_, i32>(1)) {
            per_stream.entry(*stream).or_default().push(m.get(0));
        }
    }
    let mut missing: Vec<i64> = Vec::new();
    for (stream, ids) in &per_stream {
        missing.extend(received_messages(entries.get(stream).map(Vec::as_slice).unwrap_or(&[]), ids));
    }
    missing.sort_unstable();
    for batch in missing.chunks(BACKFILL_BATCH) {
        db.execute(
            "INSERT INTO usermessage (user_profile_id, message_id, flags)
             SELECT $1, m, 0 FROM unnest($2::bigint[]) AS m ON CONFLICT DO NOTHING",
            &[&uid, &batch],
        )
        .await?;
        let top = batch.last().copied().unwrap_or(last_active);
        db.execute(
            "UPDATE userprofile SET last_active_message_id = greatest(last_active_message_id, $2) WHERE id = $1",
            &[&uid, &top],
        )
        .await?;
    }
    Ok(missing.len())
}

/// A soft reactivation that happened.
#[derive(Debug, Clone, Copy)]
pub struct Reactivated {
    /// The message id its backfill started after (none: nothing to fill).
    pub watermark: Option<i64>,
}

/// [`reactivate_user`] for a request or a send of `app`: when the user was
/// idle, this process's caches (whose subscriber lists still say idle) are
/// dropped at once and [`recheck_after_reactivation`] is scheduled.
/// Returns whether the user was idle.
pub async fn reactivate(app: &crate::App, db: &mut deadpool_postgres::Client, user_id: i64) -> Result<bool, ApiError> {
    let Some(reactivated) = reactivate_user(db, user_id).await? else {
        return Ok(false);
    };
    app.caches.invalidate();
    recheck_after_reactivation(app.pool.clone(), user_id, reactivated);
    Ok(true)
}

/// Brings a soft-deactivated user back: backfills, clears `long_term_idle`
/// and logs it. Returns what happened when the user was idle.
pub async fn reactivate_user(
    db: &mut deadpool_postgres::Client,
    user_id: i64,
) -> Result<Option<Reactivated>, ApiError> {
    let tx = db.transaction().await?;
    let row = tx
        .query_opt(
            "SELECT realm_id, last_active_message_id FROM userprofile WHERE id = $1 AND long_term_idle FOR UPDATE",
            &[&(user_id as i32)],
        )
        .await?;
    let Some(row) = row else {
        return Ok(None);
    };
    let realm_id: i32 = row.get(0);
    let watermark: Option<i64> = row.get(1);
    let added = add_missing_messages(&tx, user_id).await?;
    tx.execute("UPDATE userprofile SET long_term_idle = false WHERE id = $1", &[&(user_id as i32)]).await?;
    tx.execute(
        "INSERT INTO realmauditlog (realm_id, modified_user_id, event_type) VALUES ($1, $2, $3)",
        &[&realm_id, &(user_id as i32), &audit::USER_SOFT_ACTIVATED],
    )
    .await?;
    tx.commit().await?;
    tracing::info!(user_id, backfilled = added, "soft-reactivated user");
    Ok(Some(Reactivated { watermark }))
}

/// When after a reactivation [`recheck_after_reactivation`] looks again.
pub const RECHECKS: [std::time::Duration; 2] = [std::time::Duration::from_secs(2), std::time::Duration::from_secs(30)];

/// A send that read a subscriber list cached before `user_id`'s
/// reactivation was heard of (another backend process hears of it through
/// PostgreSQL milliseconds later), or whose statement began before the
/// reactivation committed, may still have left the user out as idle. Two
/// more backfills, at [`RECHECKS`], write the rows such sends missed: they
/// look at every message after `watermark` (where the reactivation's own
/// backfill started, since a late-committing message may have a smaller
/// id than the last one it wrote) and only add rows that are missing.
fn recheck_after_reactivation(pool: crate::db::Pool, user_id: i64, reactivated: Reactivated) {
    let Some(watermark) = reactivated.watermark else {
        return;
    };
    tokio::spawn(async move {
        let start = tokio::time::Instant::now();
        for at in RECHECKS {
            tokio::time::sleep_until(start + at).await;
            let result = match pool.get().await {
                Ok(db) => add_missing_messages_after(&db, user_id, Some(watermark)).await,
                Err(e) => Err(e.into()),
            };
            match result {
                Ok(0) => {}
                Ok(n) => tracing::info!(user_id, rows = n, "rows written after reactivation"),
                Err(e) => tracing::warn!(user_id, error = ?e, "backfill after reactivation failed"),
            }
        }
    });
}

/// What one run of the soft-deactivation job did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct JobReport {
    /// Users newly soft-deactivated.
    pub deactivated: Vec<i64>,
    /// Rows backfilled for idle users (catch-up), in total.
    pub caught_up_rows: usize,
}

/// Zulip's periodic job: deactivates users inactive for `inactive_days`,
/// then (when `catch_up`) backfills every idle user without reactivating
/// them, so that a later return is cheap.
pub async fn run_job(
    db: &mut deadpool_postgres::Client,
    realm_id: Option<i64>,
    inactive_days: u32,
    catch_up: bool,
) -> Result<JobReport, ApiError> {
    let tx = db.transaction().await?;
    let deactivated = deactivate_inactive_users(&tx, realm_id, inactive_days).await?;
    tx.commit().await?;
    let mut report = JobReport { deactivated, caught_up_rows: 0 };
    if catch_up {
        for user in idle_user_ids(&*db, realm_id).await? {
            let tx = db.transaction().await?;
            report.caught_up_rows += add_missing_messages(&tx, user).await?;
            tx.commit().await?;
        }
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sub(last: i64) -> SubscriptionEntry {
        SubscriptionEntry { subscribed: true, last_message_id: last }
    }
    fn unsub(last: i64) -> SubscriptionEntry {
        SubscriptionEntry { subscribed: false, last_message_id: last }
    }

    #[test]
    fn subscribed_throughout_receives_everything() {
        assert_eq!(received_messages(&[sub(1)], &[5, 6, 7]), vec![5, 6, 7]);
    }

    #[test]
    fn unsubscribed_part_way_receives_up_to_then() {
        assert_eq!(received_messages(&[sub(1), unsub(6)], &[5, 6, 7, 8]), vec![5, 6]);
    }

    #[test]
    fn resubscribing_skips_the_gap() {
        // Subscribed until 6, away for 7..=9, back from 10 on.
        let log = [sub(1), unsub(6), sub(9)];
        assert_eq!(received_messages(&log, &[5, 6, 7, 8, 9, 10, 11]), vec![5, 6, 10, 11]);
    }

    #[test]
    fn rapid_unsubscribe_and_resubscribe_at_the_same_id() {
        // Nothing was sent between the two changes: nothing is lost or gained.
        let log = [sub(1), unsub(6), sub(6), unsub(8)];
        assert_eq!(received_messages(&log, &[5, 6, 7, 8, 9]), vec![5, 6, 7, 8]);
    }

    #[test]
    fn ending_unsubscribed_drops_the_tail() {
        assert_eq!(received_messages(&[unsub(3)], &[5, 6]), Vec::<i64>::new());
        assert_eq!(received_messages(&[], &[5, 6]), Vec::<i64>::new());
    }
}
