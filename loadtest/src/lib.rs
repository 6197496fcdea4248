//! squall-loadtest: drives any server that speaks Zulip's API with many
//! real long-poll clients and measures what users feel.
//!
//! The controller (the command a user runs) sets up users and streams
//! through the standard API ([`setup`]), starts worker processes
//! ([`worker`]) that each run thread-per-core monoio clients
//! ([`client`]), sends messages itself, and finally checks that every
//! recipient received every message exactly once ([`check`]) and reports
//! latency histograms ([`stats`], [`plot`]).

pub mod bench;
pub mod check;
pub mod client;
pub mod http;
pub mod plot;
pub mod scenario;
pub mod setup;
pub mod stats;
pub mod worker;

/// Marker at the start of every message the harness sends:
/// `lt:<run id>:<send start, ns since the epoch>:<sequence>`.
pub const MARKER: &str = "lt:";

/// Nanoseconds since the Unix epoch (all processes share the host clock).
pub fn now_ns() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0)
}

/// Content for message `seq` of run `run`, stamped now.
pub fn stamp(run: &str, seq: u64) -> String {
    format!("{MARKER}{run}:{}:{seq}", now_ns())
}

/// Parses harness content: (run id, send start ns).
pub fn parse_stamp(content: &str) -> Option<(&str, u64)> {
    let rest = content.strip_prefix(MARKER)?;
    let mut parts = rest.splitn(3, ':');
    let run = parts.next()?;
    let t0 = parts.next()?.parse().ok()?;
    Some((run, t0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps_round_trip() {
        let s = stamp("r1", 7);
        let (run, t0) = parse_stamp(&s).unwrap_or(("", 0));
        assert_eq!(run, "r1");
        assert!(t0 > 1_600_000_000_000_000_000);
        assert_eq!(parse_stamp("hello"), None);
        assert_eq!(parse_stamp("lt:r1:notanumber:1"), None);
    }
}
