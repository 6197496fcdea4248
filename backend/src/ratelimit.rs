//! In-process rate limiting with Zulip's defaults and 429 body.
//!
//! Token buckets: each key (a user, or an IP address for unauthenticated
//! requests) may make `per_minute` requests, refilled continuously. A
//! refused request gets 429 `RATE_LIMIT_HIT`, `API usage exceeded rate
//! limit`, with `retry-after` (seconds, float) in the body and the header.

use squall_proto::error::ApiError;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Instant;

/// Who is being limited.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Key {
    /// An authenticated user (`api_by_user`).
    User(i64),
    /// An unauthenticated client (`api_by_ip`).
    Ip(IpAddr),
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// Buckets for every key seen recently.
pub struct RateLimiter {
    per_minute_user: u32,
    per_minute_ip: u32,
    // A std mutex: held for a map lookup and a few float operations, never
    // across an await.
    buckets: Mutex<HashMap<Key, Bucket>>,
}

/// Entries kept before idle (full) buckets are dropped.
const MAX_KEYS: usize = 100_000;

impl RateLimiter {
    /// Limits per minute for users and for IP addresses; 0 disables.
    pub fn new(per_minute_user: u32, per_minute_ip: u32) -> Self {
        RateLimiter { per_minute_user, per_minute_ip, buckets: Mutex::new(HashMap::new()) }
    }

    /// Takes one token for `key` at `now`, or says how long to wait.
    pub fn check_at(&self, key: Key, now: Instant) -> Result<(), f64> {
        let limit = match key {
            Key::User(_) => self.per_minute_user,
            Key::Ip(_) => self.per_minute_ip,
        };
        if limit == 0 {
            return Ok(());
        }
        let capacity = f64::from(limit);
        let per_sec = capacity / 60.0;
        let mut map = self.buckets.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if map.len() > MAX_KEYS {
            map.retain(|_, b| b.tokens + now.duration_since(b.at).as_secs_f64() * per_sec < capacity);
        }
        let b = map.entry(key).or_insert(Bucket { tokens: capacity, at: now });
        b.tokens = (b.tokens + now.duration_since(b.at).as_secs_f64() * per_sec).min(capacity);
        b.at = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            Ok(())
        } else {
            Err((1.0 - b.tokens) / per_sec)
        }
    }

    /// [`Self::check_at`] now, as Zulip's error.
    pub fn check(&self, key: Key) -> Result<(), ApiError> {
        self.check_at(key, Instant::now()).map_err(|wait| {
            let secs = (wait * 1000.0).ceil() / 1000.0;
            ApiError {
                status: 429,
                headers: vec![("Retry-After", format!("{}", secs.ceil() as u64))],
                ..ApiError::with_code("RATE_LIMIT_HIT", "API usage exceeded rate limit")
            }
            .field("retry-after", secs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn buckets_refill_and_refuse_with_a_wait() {
        let rl = RateLimiter::new(60, 0);
        let t0 = Instant::now();
        for _ in 0..60 {
            assert!(rl.check_at(Key::User(1), t0).is_ok());
        }
        let wait = rl.check_at(Key::User(1), t0).unwrap_err();
        assert!((wait - 1.0).abs() < 1e-9, "one token per second: {wait}");
        assert!(rl.check_at(Key::User(2), t0).is_ok(), "keys are independent");
        assert!(rl.check_at(Key::User(1), t0 + Duration::from_millis(1000)).is_ok());
        assert!(rl.check_at(Key::Ip("127.0.0.1".parse().unwrap()), t0).is_ok(), "0 disables");
    }

    #[test]
    fn zulips_error() {
        let rl = RateLimiter::new(1, 1);
        rl.check(Key::User(1)).unwrap();
        let e = rl.check(Key::User(1)).unwrap_err();
        assert_eq!((e.status, e.code, e.msg.as_str()), (429, "RATE_LIMIT_HIT", "API usage exceeded rate limit"));
        assert_eq!(e.extra[0].0, "retry-after");
        assert!(e.extra[0].1.as_f64().unwrap() > 59.0);
        assert_eq!(e.headers[0], ("Retry-After", "60".to_owned()));
    }
}
