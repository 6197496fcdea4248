//! A core's cache of recently authenticated credentials for `/events`, so a
//! long-poll client re-polling many times a minute costs the backend one
//! check per [`AUTH_CACHE_TTL`], not one per poll. The cache is per core
//! (no sharing, no locks), bounded, and looked up without allocating: by a
//! hash of the `Authorization` and `Host` headers, then compared in full.
//!
//! Deactivating a user or replacing their API key must take effect at once,
//! not after the TTL: the backend then sends a revocation to every core
//! (`Notice::Revoke`), which [`AuthCache::forget_users`] applies. A check
//! that was already on its way to the backend when a revocation arrived is
//! not cached ([`AuthCache::generation`]): its answer may predate the change.

use crate::fxhash::{hash_bytes, FxHashMap};
use squall_proto::user::AuthedUser;
use std::time::{Duration, Instant};

/// How long a cached authentication is trusted.
pub const AUTH_CACHE_TTL: Duration = Duration::from_secs(30);
/// Most credentials one core remembers; past this the cache starts over.
pub const AUTH_CACHE_MAX: usize = 100_000;

struct Entry {
    authorization: Box<[u8]>,
    host: Box<[u8]>,
    user: AuthedUser,
    at: Instant,
}

/// Credentials → who they authenticate.
#[derive(Default)]
pub struct AuthCache {
    map: FxHashMap<u64, Entry>,
    /// Revocations applied so far.
    generation: u64,
}

impl AuthCache {
    /// The user these credentials named less than [`AUTH_CACHE_TTL`] ago.
    pub fn get(&self, authorization: &[u8], host: &[u8], now: Instant) -> Option<AuthedUser> {
        let e = self.map.get(&hash_bytes(&[authorization, host]))?;
        let same = *e.authorization == *authorization && *e.host == *host;
        (same && now.duration_since(e.at) < AUTH_CACHE_TTL).then_some(e.user)
    }

    /// How many revocations this cache has applied: read it before asking
    /// the backend, and hand it to [`AuthCache::insert`] with the answer.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Remembers a successful authentication checked when the cache was at
    /// `generation`, unless a revocation came in since (the answer may
    /// predate it).
    pub fn insert(&mut self, authorization: &[u8], host: &[u8], user: AuthedUser, now: Instant, generation: u64) {
        if generation != self.generation {
            return;
        }
        if self.map.len() >= AUTH_CACHE_MAX {
            self.map.clear();
        }
        let entry = Entry { authorization: authorization.into(), host: host.into(), user, at: now };
        self.map.insert(hash_bytes(&[authorization, host]), entry);
    }

    /// Forgets every cached credential of `users`. A scan of the whole
    /// cache: revocations are rare (an administrator's action), polls are
    /// not, so the lookup stays a single hash probe with no index to keep.
    pub fn forget_users(&mut self, users: &[i64]) {
        self.generation += 1;
        if users.len() == 1 {
            let u = users[0];
            self.map.retain(|_, e| e.user.id != u);
        } else {
            let gone: crate::fxhash::FxHashSet<i64> = users.iter().copied().collect();
            self.map.retain(|_, e| !gone.contains(&e.user.id));
        }
    }

    /// Number of cached credentials.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_expire_and_the_cache_is_bounded() {
        let mut c = AuthCache::default();
        let u = AuthedUser { id: 1, realm_id: 1, role: 400 };
        let t = Instant::now();
        c.insert(b"Basic x", b"h", u, t, 0);
        assert_eq!(c.get(b"Basic x", b"h", t), Some(u));
        assert_eq!(c.get(b"Basic x", b"other", t), None, "the host is part of the key");
        assert_eq!(c.get(b"Basic x", b"h", t + AUTH_CACHE_TTL), None);
        for i in 0..AUTH_CACHE_MAX {
            c.insert(i.to_string().as_bytes(), b"h", u, t, 0);
        }
        assert!(c.map.len() <= AUTH_CACHE_MAX);
    }

    #[test]
    fn revoked_users_are_forgotten_and_stale_answers_not_cached() {
        let mut c = AuthCache::default();
        let alice = AuthedUser { id: 1, realm_id: 1, role: 400 };
        let bob = AuthedUser { id: 2, realm_id: 1, role: 400 };
        let t = Instant::now();
        c.insert(b"Basic alice", b"h", alice, t, c.generation());
        c.insert(b"Basic alice2", b"h", alice, t, c.generation());
        c.insert(b"Basic bob", b"h", bob, t, c.generation());
        // A check of Alice's credentials sets off to the backend...
        let asked_at = c.generation();
        c.forget_users(&[1]);
        assert_eq!(c.get(b"Basic alice", b"h", t), None);
        assert_eq!(c.get(b"Basic alice2", b"h", t), None, "every credential of the user");
        assert_eq!(c.get(b"Basic bob", b"h", t), Some(bob), "others stay");
        // ...and its answer, which may predate the revocation, is not kept.
        c.insert(b"Basic alice", b"h", alice, t, asked_at);
        assert_eq!(c.get(b"Basic alice", b"h", t), None);
        c.insert(b"Basic alice", b"h", alice, t, c.generation());
        assert_eq!(c.get(b"Basic alice", b"h", t), Some(alice), "a check made after it is");
        c.forget_users(&[1, 2]);
        assert!(c.is_empty());
    }
}
