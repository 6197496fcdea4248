//! Latency histograms (HDR, microseconds) and the report they end up in.

use anyhow::{Context, Result};
use base64::Engine;
use hdrhistogram::serialization::{Deserializer, Serializer, V2Serializer};
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

/// Highest latency tracked: 10 minutes, in microseconds.
const MAX_US: u64 = 600_000_000;

/// A new latency histogram (1 µs .. 10 min, 3 significant digits).
pub fn histogram() -> Histogram<u64> {
    // Bounds are constants that hdrhistogram accepts.
    Histogram::new_with_bounds(1, MAX_US, 3).unwrap_or_else(|_| Histogram::new(3).unwrap_or_else(|_| unreachable!()))
}

/// Records a latency, clamping to the tracked range.
pub fn record(h: &mut Histogram<u64>, micros: u64) {
    let _ = h.record(micros.clamp(1, MAX_US));
}

/// Encodes a histogram (V2, base64) for JSON.
pub fn encode(h: &Histogram<u64>) -> Result<String> {
    let mut out = Vec::new();
    V2Serializer::new().serialize(h, &mut out).map_err(|e| anyhow::anyhow!("serializing histogram: {e:?}"))?;
    Ok(base64::engine::general_purpose::STANDARD.encode(out))
}

/// Decodes [`encode`]'s output.
pub fn decode(s: &str) -> Result<Histogram<u64>> {
    let bytes = base64::engine::general_purpose::STANDARD.decode(s).context("histogram is not base64")?;
    Deserializer::new().deserialize(&mut bytes.as_slice()).map_err(|e| anyhow::anyhow!("bad histogram: {e:?}"))
}

/// Percentiles of one histogram, in milliseconds.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Summary {
    /// What was measured.
    pub name: String,
    /// Samples.
    pub count: u64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
    /// The whole histogram, V2-serialised and base64-encoded.
    pub hdr_base64: String,
}

impl Summary {
    /// Summarises `h`.
    pub fn of(name: &str, h: &Histogram<u64>) -> Result<Self> {
        let ms = |q: f64| if h.is_empty() { 0.0 } else { h.value_at_quantile(q) as f64 / 1000.0 };
        Ok(Summary {
            name: name.to_owned(),
            count: h.len(),
            p50_ms: ms(0.5),
            p90_ms: ms(0.9),
            p99_ms: ms(0.99),
            p999_ms: ms(0.999),
            max_ms: if h.is_empty() { 0.0 } else { h.max() as f64 / 1000.0 },
            hdr_base64: encode(h)?,
        })
    }
}

/// Renders summaries as a fixed-width table.
pub fn table(rows: &[Summary]) -> String {
    let mut out = format!(
        "{:<28} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}\n",
        "latency (ms)", "count", "p50", "p90", "p99", "p99.9", "max"
    );
    for r in rows {
        out.push_str(&format!(
            "{:<28} {:>9} {:>9.2} {:>9.2} {:>9.2} {:>9.2} {:>9.2}\n",
            r.name, r.count, r.p50_ms, r.p90_ms, r.p99_ms, r.p999_ms, r.max_ms
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_and_round_trip() {
        let mut h = histogram();
        for v in 1..=1000u64 {
            record(&mut h, v * 1000); // 1..1000 ms
        }
        record(&mut h, u64::MAX); // clamped, not lost
        let s = Summary::of("delivery", &h).unwrap();
        assert_eq!(s.count, 1001);
        assert!((s.p50_ms - 500.0).abs() < 3.0, "{s:?}");
        assert!((s.p99_ms - 990.0).abs() < 3.0, "{s:?}");
        assert!(s.max_ms >= 599_000.0);
        let back = decode(&s.hdr_base64).unwrap();
        assert_eq!(back.len(), h.len());
        assert_eq!(back.value_at_quantile(0.9), h.value_at_quantile(0.9));
        let t = table(&[s]);
        assert!(t.lines().nth(1).unwrap().starts_with("delivery"), "{t}");
        assert_eq!(Summary::of("empty", &histogram()).unwrap().p99_ms, 0.0);
    }
}
