//! Counters each core keeps about itself, readable from any thread: what
//! `/metrics` reports and what tests wait on ("the poll is parked") instead
//! of sleeping. Each core writes only its own cache-line-sized slot.

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds (ms) of the request-duration histogram's buckets (the last
/// bucket, `+Inf`, is implied).
pub const LATENCY_BOUNDS_MS: [u64; 9] = [1, 2, 5, 10, 25, 50, 100, 500, 2500];

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
    /// Queues dropped for going past a bound (events per queue, queues per
    /// user).
    pub queues_dropped: AtomicU64,
    /// Bytes written to the queue journal.
    pub journal_bytes: AtomicU64,
    /// Journal writes made durable (one `fdatasync` each).
    pub journal_syncs: AtomicU64,
    /// Time spent writing and syncing the journal (µs).
    pub journal_sync_us: AtomicU64,
    /// Journal snapshots started.
    pub journal_snapshots: AtomicU64,
    /// Requests being handled outside the core (the backend, a deferred
    /// authentication): a stopping core waits for them before it saves.
    pub in_flight: AtomicI64,
    /// Requests answered without parking, by duration (buckets of
    /// [`LATENCY_BOUNDS_MS`], then `+Inf`).
    pub latency: [AtomicU64; LATENCY_BOUNDS_MS.len() + 1],
    /// Their total duration (µs).
    pub latency_sum_us: AtomicU64,
}

impl CoreStats {
    /// Records a request answered in `d`.
    pub(crate) fn record_latency(&self, d: Duration) {
        self.latency[bucket_of(d.as_millis() as u64)].fetch_add(1, Ordering::Relaxed);
        self.latency_sum_us.fetch_add(d.as_micros() as u64, Ordering::Relaxed);
    }

    pub(crate) fn add(counter: &AtomicI64, n: i64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    pub(crate) fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// A cluster gateway process's event-bus consumer (RabbitMQ).
#[derive(Debug, Default)]
pub struct BusCounters {
    /// Set once a consumer runs: the bus metrics are reported from then on.
    pub enabled: AtomicBool,
    /// 1 while connected to the broker.
    pub connected: AtomicI64,
    /// Messages taken from the process's queue and acknowledged.
    pub messages: AtomicU64,
    /// Publish-to-inbox time of the latest message (ms).
    pub lag_ms: AtomicU64,
    /// Publish-to-inbox times by bucket of [`LATENCY_BOUNDS_MS`], then `+Inf`.
    pub lag: [AtomicU64; LATENCY_BOUNDS_MS.len() + 1],
    /// Their total (ms).
    pub lag_sum_ms: AtomicU64,
}

impl BusCounters {
    /// Records a message that took `ms` from publish to the inboxes
    /// (publisher's clock against ours: across hosts, as good as their sync).
    pub fn record_lag(&self, ms: u64) {
        self.lag_ms.store(ms, Ordering::Relaxed);
        self.lag[bucket_of(ms)].fetch_add(1, Ordering::Relaxed);
        self.lag_sum_ms.fetch_add(ms, Ordering::Relaxed);
    }
}

/// The histogram bucket of a duration in ms.
fn bucket_of(ms: u64) -> usize {
    LATENCY_BOUNDS_MS.iter().position(|&b| ms < b).unwrap_or(LATENCY_BOUNDS_MS.len())
}

/// Every core's counters, and the process's.
#[derive(Debug)]
pub struct Stats {
    cores: Vec<CoreStats>,
    /// The node-wide index of this process's first core (metrics labels).
    first_core: u16,
    /// The cluster event bus, when there is one.
    pub bus: BusCounters,
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
    /// Queues dropped for going past a bound.
    pub queues_dropped: u64,
    /// Requests being handled outside the cores.
    pub in_flight: i64,
}

impl Stats {
    /// Zeroed counters for `cores` cores.
    pub fn new(cores: u16) -> Self {
        Self::for_process(0, cores)
    }

    /// Zeroed counters for `cores` cores numbered from `first_core` on
    /// the node.
    pub fn for_process(first_core: u16, cores: u16) -> Self {
        Stats {
            cores: (0..cores.max(1)).map(|_| CoreStats::default()).collect(),
            first_core,
            bus: BusCounters::default(),
        }
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
            t.queues_dropped += c.queues_dropped.load(Ordering::Relaxed);
            t.in_flight += c.in_flight.load(Ordering::Relaxed);
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
        self.metric(
            &mut out,
            "squall_queues_dropped_total",
            "counter",
            "Queues dropped for going past a bound (unread events, queues per user).",
            |c| count(&c.queues_dropped),
        );
        self.metric(
            &mut out,
            "squall_journal_written_bytes_total",
            "counter",
            "Bytes written to the queue journal.",
            |c| count(&c.journal_bytes),
        );
        self.metric(
            &mut out,
            "squall_journal_syncs_total",
            "counter",
            "Journal writes made durable (fdatasync).",
            |c| count(&c.journal_syncs),
        );
        self.metric(
            &mut out,
            "squall_journal_sync_microseconds_total",
            "counter",
            "Time spent writing and syncing the queue journal.",
            |c| count(&c.journal_sync_us),
        );
        self.metric(&mut out, "squall_journal_snapshots_total", "counter", "Queue journal snapshots started.", |c| {
            count(&c.journal_snapshots)
        });
        self.histogram(&mut out);
        if self.bus.enabled.load(Ordering::Relaxed) {
            use std::fmt::Write;
            let b = &self.bus;
            let _ = write!(
                out,
                "# HELP squall_bus_connected 1 while this process consumes its RabbitMQ queue.\n\
                 # TYPE squall_bus_connected gauge\nsquall_bus_connected {}\n\
                 # HELP squall_bus_messages_total Event messages taken from RabbitMQ.\n\
                 # TYPE squall_bus_messages_total counter\nsquall_bus_messages_total {}\n\
                 # HELP squall_bus_lag_seconds Publish-to-inbox time of the latest event message.\n\
                 # TYPE squall_bus_lag_seconds gauge\nsquall_bus_lag_seconds {:.3}\n",
                b.connected.load(Ordering::Relaxed),
                b.messages.load(Ordering::Relaxed),
                b.lag_ms.load(Ordering::Relaxed) as f64 / 1000.0,
            );
            let name = "squall_bus_delay_seconds";
            let _ = writeln!(out, "# HELP {name} Event messages by publish-to-inbox time.\n# TYPE {name} histogram");
            let cumulative = buckets(&mut out, name, "", &b.lag);
            let sum = b.lag_sum_ms.load(Ordering::Relaxed) as f64 / 1000.0;
            let _ = writeln!(out, "{name}_sum {sum:.3}\n{name}_count {cumulative}");
        }
        out
    }

    /// The request-duration histogram, per core.
    fn histogram(&self, out: &mut String) {
        use std::fmt::Write;
        let name = "squall_request_duration_seconds";
        let _ = writeln!(out, "# HELP {name} Requests answered without parking, by time to answer.");
        let _ = writeln!(out, "# TYPE {name} histogram");
        for (i, c) in self.cores.iter().enumerate() {
            let core = self.first_core as usize + i;
            let cumulative = buckets(out, name, &format!("core=\"{core}\","), &c.latency);
            let sum = c.latency_sum_us.load(Ordering::Relaxed) as f64 / 1e6;
            let _ = writeln!(out, "{name}_sum{{core=\"{core}\"}} {sum:.6}");
            let _ = writeln!(out, "{name}_count{{core=\"{core}\"}} {cumulative}");
        }
    }

    fn metric(&self, out: &mut String, name: &str, kind: &str, help: &str, value: impl Fn(&CoreStats) -> i64) {
        use std::fmt::Write;
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for (i, c) in self.cores.iter().enumerate() {
            let _ = writeln!(out, "{name}{{core=\"{}\"}} {}", self.first_core as usize + i, value(c));
        }
    }
}

/// Writes a histogram's cumulative `_bucket` lines (labels before `le`);
/// returns the count.
fn buckets(out: &mut String, name: &str, labels: &str, counts: &[AtomicU64]) -> u64 {
    use std::fmt::Write;
    let mut cumulative = 0;
    for (bucket, n) in counts.iter().enumerate() {
        cumulative += n.load(Ordering::Relaxed);
        let le = match LATENCY_BOUNDS_MS.get(bucket) {
            Some(ms) => format!("{}", *ms as f64 / 1000.0),
            None => "+Inf".into(),
        };
        let _ = writeln!(out, "{name}_bucket{{{labels}le=\"{le}\"}} {cumulative}");
    }
    cumulative
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latencies_fall_into_cumulative_buckets() {
        let stats = Stats::for_process(4, 1);
        let c = stats.core(4);
        c.record_latency(Duration::from_micros(300));
        c.record_latency(Duration::from_millis(7));
        c.record_latency(Duration::from_secs(9));
        let text = stats.prometheus();
        let bucket = |le: &str| {
            let prefix = format!("squall_request_duration_seconds_bucket{{core=\"4\",le=\"{le}\"}} ");
            text.lines()
                .find_map(|l| l.strip_prefix(prefix.as_str()))
                .unwrap_or_else(|| panic!("{le}: {text}"))
                .to_owned()
        };
        assert_eq!(bucket("0.001"), "1");
        assert_eq!(bucket("0.005"), "1");
        assert_eq!(bucket("0.01"), "2");
        assert_eq!(bucket("2.5"), "2");
        assert_eq!(bucket("+Inf"), "3");
        assert!(text.contains("squall_request_duration_seconds_count{core=\"4\"} 3"), "{text}");
        assert!(text.contains("squall_request_duration_seconds_sum{core=\"4\"} 9.007300"), "{text}");
        assert!(text.contains("squall_queues{core=\"4\"} 0"), "labels are the node's core numbers");
    }

    #[test]
    fn bus_delays_are_a_histogram_once_a_consumer_runs() {
        let stats = Stats::for_process(0, 1);
        assert!(!stats.prometheus().contains("squall_bus"), "no bus, no bus metrics");
        stats.bus.enabled.store(true, Ordering::Relaxed);
        stats.bus.record_lag(3);
        stats.bus.record_lag(40);
        stats.bus.record_lag(3000);
        let text = stats.prometheus();
        for line in [
            "squall_bus_delay_seconds_bucket{le=\"0.001\"} 0",
            "squall_bus_delay_seconds_bucket{le=\"0.005\"} 1",
            "squall_bus_delay_seconds_bucket{le=\"0.05\"} 2",
            "squall_bus_delay_seconds_bucket{le=\"+Inf\"} 3",
            "squall_bus_delay_seconds_sum 3.043",
            "squall_bus_delay_seconds_count 3",
            "squall_bus_lag_seconds 3.000",
        ] {
            assert!(text.lines().any(|l| l == line), "{line}: {text}");
        }
    }
}
