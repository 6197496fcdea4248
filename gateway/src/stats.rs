//! Counters each core keeps about itself, readable from any thread: what
//! `/metrics` reports and what tests wait on ("the poll is parked") instead
//! of sleeping. Each core writes only its own cache-line-sized slot.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

/// One core's counters.
#[derive(Debug, Default)]
#[repr(align(128))]
pub struct CoreStats {
    /// Open client connections.
    pub connections: AtomicI64,
    /// Event queues.
    pub queues: AtomicI64,
    /// Long-polls waiting for events.
    pub parked: AtomicI64,
    /// Events appended to queues.
    pub events_queued: AtomicU64,
    /// Long-poll responses completed with events.
    pub deliveries: AtomicU64,
    /// Requests served (all kinds).
    pub requests: AtomicU64,
    /// Clock ticks handled (heartbeat and expiry checks).
    pub ticks: AtomicU64,
    /// Connections handed to the core owning their queue.
    pub handoffs: AtomicU64,
}

impl CoreStats {
    pub(crate) fn add(counter: &AtomicI64, n: i64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    pub(crate) fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// Every core's counters.
#[derive(Debug)]
pub struct Stats {
    cores: Vec<CoreStats>,
}

/// A sum over cores at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Totals {
    /// Open client connections.
    pub connections: i64,
    /// Event queues.
    pub queues: i64,
    /// Parked long-polls.
    pub parked: i64,
    /// Events appended to queues.
    pub events_queued: u64,
    /// Long-poll responses completed with events.
    pub deliveries: u64,
    /// Requests served.
    pub requests: u64,
    /// Ticks of the slowest core (every core has ticked at least this often).
    pub min_ticks: u64,
    /// Connections handed to the core owning their queue.
    pub handoffs: u64,
}

impl Stats {
    /// Zeroed counters for `cores` cores.
    pub fn new(cores: u16) -> Self {
        Stats { cores: (0..cores.max(1)).map(|_| CoreStats::default()).collect() }
    }

    /// One core's counters.
    pub fn core(&self, core: u16) -> &CoreStats {
        &self.cores[core as usize % self.cores.len()]
    }

    /// Number of cores.
    pub fn cores(&self) -> u16 {
        self.cores.len() as u16
    }

    /// Sums over all cores.
    pub fn totals(&self) -> Totals {
        let mut t = Totals { min_ticks: u64::MAX, ..Totals::default() };
        for c in &self.cores {
            t.min_ticks = t.min_ticks.min(c.ticks.load(Ordering::Relaxed));
            t.connections += c.connections.load(Ordering::Relaxed);
            t.queues += c.queues.load(Ordering::Relaxed);
            t.parked += c.parked.load(Ordering::Relaxed);
            t.events_queued += c.events_queued.load(Ordering::Relaxed);
            t.deliveries += c.deliveries.load(Ordering::Relaxed);
            t.requests += c.requests.load(Ordering::Relaxed);
            t.handoffs += c.handoffs.load(Ordering::Relaxed);
        }
        t
    }

    /// Prometheus text exposition of the counters, per core.
    pub fn prometheus(&self) -> String {
        let load = |a: &AtomicI64| a.load(Ordering::Relaxed);
        let count = |a: &AtomicU64| a.load(Ordering::Relaxed) as i64;
        let mut out = String::new();
        self.metric(&mut out, "squall_connections", "gauge", "Open client connections.", |c| load(&c.connections));
        self.metric(&mut out, "squall_queues", "gauge", "Event queues.", |c| load(&c.queues));
        self.metric(&mut out, "squall_parked_polls", "gauge", "Long-polls waiting for events.", |c| load(&c.parked));
        self.metric(&mut out, "squall_events_queued_total", "counter", "Events appended to queues.", |c| {
            count(&c.events_queued)
        });
        self.metric(&mut out, "squall_deliveries_total", "counter", "Long-poll responses carrying events.", |c| {
            count(&c.deliveries)
        });
        self.metric(&mut out, "squall_requests_total", "counter", "Requests served.", |c| count(&c.requests));
        self.metric(&mut out, "squall_handoffs_total", "counter", "Connections handed to their queue's core.", |c| {
            count(&c.handoffs)
        });
        out
    }

    fn metric(&self, out: &mut String, name: &str, kind: &str, help: &str, value: impl Fn(&CoreStats) -> i64) {
        use std::fmt::Write;
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for (i, c) in self.cores.iter().enumerate() {
            let _ = writeln!(out, "{name}{{core=\"{i}\"}} {}", value(c));
        }
    }
}
