//! Hot rows cached in process (the role memcached plays for Zulip): the
//! users behind API keys, the streams messages are sent to by name, and
//! each stream's subscribers with what the send path needs to know about
//! them. Correct across processes and hosts: PostgreSQL triggers `NOTIFY
//! squall_cache` whenever a cached column of `userprofile`, `realm`,
//! `stream` or `subscription` changes (migrations 0016, 0017, 0020), and
//! every backend process `LISTEN`s and drops its caches. Changes this process makes through the
//! API drop them at once too, so the next request to this process sees
//! them; other processes (a cluster's) see them when the notification
//! arrives, milliseconds later.
//!
//! When the listening connection is down the caches are bypassed (and
//! emptied), so a missed notification can never leave a stale row behind;
//! the connection is asked to answer every [`HEARTBEAT`], so one that
//! silently stopped is found within seconds.
//! Entries also expire after [`TTL`], and each cache holds at most
//! [`MAX_ENTRIES`] (the subscriber lists: [`MAX_SUBSCRIBERS`] subscribers in
//! all).

use crate::db::messages::RecipientFacts;
use crate::streams::Stream;
use crate::users::User;
use std::collections::HashMap;
use std::hash::Hash;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long an entry is trusted without a notification.
pub const TTL: Duration = Duration::from_secs(60);
/// Most entries a cache keeps (past it, it starts over).
pub const MAX_ENTRIES: usize = 100_000;
/// Most subscribers the subscriber lists hold in all (~100 bytes each).
pub const MAX_SUBSCRIBERS: usize = 2_000_000;
/// How often the listening connection is asked to answer.
pub const HEARTBEAT: Duration = Duration::from_secs(1);
/// The notification channel the triggers use.
pub const CHANNEL: &str = "squall_cache";

/// The backend's caches, invalidated together.
pub struct Caches {
    /// API key → user.
    pub users: Cache<String, User>,
    /// (realm id, name as a send wrote it) → stream.
    pub streams: Cache<(i64, String), Stream>,
    /// Stream recipient id → its active subscribers, in id order
    /// (`db::messages::stream_subscribers`).
    pub subscribers: Cache<i64, Arc<Vec<RecipientFacts>>>,
}

impl Default for Caches {
    fn default() -> Self {
        Caches { users: Cache::default(), streams: Cache::default(), subscribers: Cache::weighed(MAX_SUBSCRIBERS) }
    }
}

impl Caches {
    /// Forgets everything (a cached row changed).
    pub fn invalidate(&self) {
        self.users.invalidate();
        self.streams.invalidate();
        self.subscribers.invalidate();
    }

    fn set_live(&self, live: bool) {
        self.users.set_live(live);
        self.streams.set_live(live);
        self.subscribers.set_live(live);
    }
}

/// One cache: entries are used only while notifications flow.
pub struct Cache<K, V> {
    entries: Mutex<Entries<K, V>>,
    /// Most weight held (an entry weighs 1 unless stored with
    /// [`Cache::put_weighed`]); past it, the cache starts over.
    max_weight: usize,
    /// The listener is connected: notifications will arrive.
    live: AtomicBool,
    /// Bumped by every invalidation: a lookup that began before one must
    /// not store what it read.
    generation: AtomicU64,
}

/// A cache's entries (value, stored at, weight) and their total weight.
struct Entries<K, V> {
    map: HashMap<K, (V, Instant, usize)>,
    weight: usize,
}

impl<K, V> Default for Cache<K, V> {
    fn default() -> Self {
        Cache::weighed(MAX_ENTRIES)
    }
}

impl<K, V> Cache<K, V> {
    /// An empty cache holding at most `max_weight`.
    pub fn weighed(max_weight: usize) -> Self {
        Cache {
            entries: Mutex::new(Entries { map: HashMap::new(), weight: 0 }),
            max_weight,
            live: AtomicBool::new(false),
            generation: AtomicU64::new(0),
        }
    }
}

impl<K: Eq + Hash, V: Clone> Cache<K, V> {
    /// The cached value for `key`, if fresh.
    pub fn get<Q>(&self, key: &Q) -> Option<V>
    where
        K: std::borrow::Borrow<Q>,
        Q: Eq + Hash + ?Sized,
    {
        if !self.live.load(Ordering::Acquire) {
            return None;
        }
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries.map.get(key).filter(|(_, at, _)| at.elapsed() < TTL).map(|(v, _, _)| v.clone())
    }

    /// The generation to pass to [`Cache::put`], taken before reading the
    /// database.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Stores what a lookup that began at `generation` read, unless an
    /// invalidation came since.
    pub fn put(&self, key: K, value: &V, generation: u64) {
        self.put_weighed(key, value, generation, 1);
    }

    /// [`Cache::put`] for an entry weighing `weight` (a list: its length).
    /// An entry heavier than the whole cache is not stored.
    pub fn put_weighed(&self, key: K, value: &V, generation: u64, weight: usize) {
        if !self.live.load(Ordering::Acquire) || weight > self.max_weight {
            return;
        }
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if self.generation.load(Ordering::Acquire) != generation {
            return;
        }
        if let Some((_, _, old)) = entries.map.remove(&key) {
            entries.weight -= old;
        }
        if entries.weight + weight > self.max_weight {
            entries.map.clear();
            entries.weight = 0;
        }
        entries.map.insert(key, (value.clone(), Instant::now(), weight));
        entries.weight += weight;
    }

    /// Forgets everything.
    pub fn invalidate(&self) {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        self.generation.fetch_add(1, Ordering::AcqRel);
        entries.map.clear();
        entries.weight = 0;
    }

    /// Whether notifications are being received (the cache is in use).
    fn set_live(&self, live: bool) {
        self.invalidate();
        self.live.store(live, Ordering::Release);
    }

    /// Entries held now.
    pub fn len(&self) -> usize {
        self.entries.lock().unwrap_or_else(|e| e.into_inner()).map.len()
    }

    /// No entries.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Keeps a `LISTEN` connection to `database_url` open for as long as the
/// process runs, invalidating `cache` on every notification; reconnects
/// after a failure (the cache is bypassed meanwhile).
pub async fn listen(database_url: String, cache: std::sync::Arc<Caches>) {
    use futures_util::StreamExt;
    loop {
        // Keepalives find a half-open connection in about a minute rather
        // than the system's two hours (meanwhile entries still expire).
        let config = database_url.parse::<tokio_postgres::Config>().map(|mut c| {
            c.keepalives_idle(Duration::from_secs(30));
            c
        });
        let connected = match config {
            Ok(c) => c.connect(tokio_postgres::NoTls).await,
            Err(e) => Err(e),
        };
        match connected {
            Ok((client, mut connection)) => {
                let mut messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
                let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
                let driver = tokio::spawn(async move {
                    while let Some(message) = messages.next().await {
                        match message {
                            Ok(tokio_postgres::AsyncMessage::Notification(_)) => {
                                if tx.send(()).is_err() {
                                    break;
                                }
                            }
                            Ok(_) => {}
                            Err(e) => {
                                tracing::warn!(error = %e, "cache listener connection failed");
                                break;
                            }
                        }
                    }
                });
                match client.batch_execute(&format!("LISTEN {CHANNEL}")).await {
                    Ok(()) => {
                        cache.set_live(true);
                        // A connection that stops answering stops the
                        // caches within a few seconds, not at keepalive's
                        // minute: a subscriber list missing a new member
                        // would cost them messages.
                        let mut beat = tokio::time::interval(HEARTBEAT);
                        loop {
                            tokio::select! {
                                got = rx.recv() => match got {
                                    Some(()) => cache.invalidate(),
                                    None => break,
                                },
                                _ = beat.tick() => {
                                    let answer = tokio::time::timeout(HEARTBEAT * 2, client.simple_query("SELECT 1")).await;
                                    if !matches!(answer, Ok(Ok(_))) {
                                        tracing::warn!("cache listener connection stopped answering");
                                        break;
                                    }
                                }
                            }
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "cache listener could not LISTEN"),
                }
                cache.set_live(false);
                driver.abort();
            }
            Err(e) => tracing::warn!(error = %e, "cache listener could not connect"),
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(id: i64) -> User {
        let mut u = User::for_tests(crate::users::role::MEMBER);
        u.id = id;
        u
    }

    #[test]
    fn nothing_is_cached_until_notifications_flow() {
        let cache: Cache<String, User> = Cache::default();
        cache.put("k".into(), &user(1), cache.generation());
        assert!(cache.get("k").is_none(), "not live: bypassed");
        cache.set_live(true);
        cache.put("k".into(), &user(1), cache.generation());
        assert_eq!(cache.get("k").map(|u| u.id), Some(1));
        cache.set_live(false);
        assert!(cache.get("k").is_none());
        assert!(cache.is_empty(), "going down empties it");
    }

    #[test]
    fn a_lookup_that_raced_an_invalidation_is_not_stored() {
        let cache: Cache<String, User> = Cache::default();
        cache.set_live(true);
        let before = cache.generation();
        cache.invalidate();
        cache.put("k".into(), &user(1), before);
        assert!(cache.get("k").is_none());
        cache.put("k".into(), &user(1), cache.generation());
        cache.invalidate();
        assert!(cache.get("k").is_none());
    }

    #[test]
    fn weighed_entries_keep_the_total_bounded() {
        let cache: Cache<i64, Vec<i64>> = Cache::weighed(10);
        cache.set_live(true);
        cache.put_weighed(1, &vec![0; 6], cache.generation(), 6);
        cache.put_weighed(2, &vec![0; 4], cache.generation(), 4);
        assert_eq!(cache.len(), 2, "6 + 4 fits in 10");
        cache.put_weighed(2, &vec![0; 3], cache.generation(), 3);
        assert_eq!(cache.len(), 2, "replacing an entry counts its new weight only");
        cache.put_weighed(3, &vec![0; 2], cache.generation(), 2);
        assert_eq!(cache.len(), 1, "6 + 3 + 2 > 10: started over");
        assert!(cache.get(&3).is_some());
        cache.put_weighed(4, &vec![0; 11], cache.generation(), 11);
        assert!(cache.get(&4).is_none(), "heavier than the whole cache: not stored");
        assert!(cache.get(&3).is_some(), "and nothing else dropped for it");
    }
}
