//! A core's cache of recently authenticated credentials for `/events`, so a
//! long-poll client re-polling many times a minute costs the backend one
//! check per [`AUTH_CACHE_TTL`], not one per poll. The cache is per core
//! (no sharing, no locks), bounded, and looked up without allocating: by a
//! hash of the `Authorization` and `Host` headers, then compared in full.

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
}

impl AuthCache {
    /// The user these credentials named less than [`AUTH_CACHE_TTL`] ago.
    pub fn get(&self, authorization: &[u8], host: &[u8], now: Instant) -> Option<AuthedUser> {
        let e = self.map.get(&hash_bytes(&[authorization, host]))?;
        let same = *e.authorization == *authorization && *e.host == *host;
        (same && now.duration_since(e.at) < AUTH_CACHE_TTL).then_some(e.user)
    }

    /// Remembers a successful authentication.
    pub fn insert(&mut self, authorization: &[u8], host: &[u8], user: AuthedUser, now: Instant) {
        if self.map.len() >= AUTH_CACHE_MAX {
            self.map.clear();
        }
        let entry = Entry { authorization: authorization.into(), host: host.into(), user, at: now };
        self.map.insert(hash_bytes(&[authorization, host]), entry);
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
        c.insert(b"Basic x", b"h", u, t);
        assert_eq!(c.get(b"Basic x", b"h", t), Some(u));
        assert_eq!(c.get(b"Basic x", b"other", t), None, "the host is part of the key");
        assert_eq!(c.get(b"Basic x", b"h", t + AUTH_CACHE_TTL), None);
        for i in 0..AUTH_CACHE_MAX {
            c.insert(i.to_string().as_bytes(), b"h", u, t);
        }
        assert!(c.map.len() <= AUTH_CACHE_MAX);
    }
}
