//! Where a core's notion of "now" comes from: the system clock, or a manual
//! clock that tests move forward, so heartbeats and queue expiry are tested
//! without waiting for them.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

/// Unix time, in milliseconds.
#[derive(Clone, Debug, Default)]
pub enum Clock {
    /// The system clock.
    #[default]
    System,
    /// A clock that moves only when told to (tests).
    Manual(Arc<AtomicU64>),
}

impl Clock {
    /// A manual clock starting at `secs`.
    pub fn manual(secs: u64) -> Self {
        Clock::Manual(Arc::new(AtomicU64::new(secs * 1000)))
    }

    /// Now, in unix milliseconds.
    pub fn now_ms(&self) -> u64 {
        match self {
            Clock::System => SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0),
            Clock::Manual(t) => t.load(Ordering::Relaxed),
        }
    }

    /// Now, in unix seconds.
    pub fn now_secs(&self) -> u64 {
        self.now_ms() / 1000
    }

    /// Moves a manual clock forward by `secs` (no effect on the system clock).
    pub fn advance(&self, secs: u64) {
        self.advance_ms(secs * 1000);
    }

    /// Moves a manual clock forward by `ms`.
    pub fn advance_ms(&self, ms: u64) {
        if let Clock::Manual(t) = self {
            t.fetch_add(ms, Ordering::Relaxed);
        }
    }
}
