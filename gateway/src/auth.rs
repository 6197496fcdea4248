//! A core's cache of recently authenticated credentials for `/events`, so a
//! long-poll client re-polling many times a minute costs the backend one
//! check per [`AUTH_CACHE_TTL`], not one per poll. The cache is per core
//! (no sharing, no locks) and bounded.

use squall_proto::user::AuthedUser;
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// How long a cached authentication is trusted.
pub const AUTH_CACHE_TTL: Duration = Duration::from_secs(30);
/// Most credentials one core remembers; past this the cache starts over.
pub const AUTH_CACHE_MAX: usize = 100_000;

/// Credentials (`Authorization` + `Host`) → who they authenticate.
#[derive(Default)]
pub struct AuthCache {
    map: HashMap<(String, String), (AuthedUser, Instant)>,
}

impl AuthCache {
    /// The user these credentials named less than [`AUTH_CACHE_TTL`] ago.
    pub fn get(&self, authorization: &str, host: &str, now: Instant) -> Option<AuthedUser> {
        // Keyed by owned strings; a borrowed lookup would need a custom key
        // type, and one small allocation per poll is not where time goes.
        let (user, at) = self.map.get(&(authorization.to_owned(), host.to_owned()))?;
        (now.duration_since(*at) < AUTH_CACHE_TTL).then_some(*user)
    }

    /// Remembers a successful authentication.
    pub fn insert(&mut self, authorization: &str, host: &str, user: AuthedUser, now: Instant) {
        if self.map.len() >= AUTH_CACHE_MAX {
            self.map.clear();
        }
        self.map.insert((authorization.to_owned(), host.to_owned()), (user, now));
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
        c.insert("Basic x", "h", u, t);
        assert_eq!(c.get("Basic x", "h", t), Some(u));
        assert_eq!(c.get("Basic x", "other", t), None, "the host is part of the key");
        assert_eq!(c.get("Basic x", "h", t + AUTH_CACHE_TTL), None);
        for i in 0..AUTH_CACHE_MAX {
            c.insert(&i.to_string(), "h", u, t);
        }
        assert!(c.map.len() <= AUTH_CACHE_MAX);
    }
}
