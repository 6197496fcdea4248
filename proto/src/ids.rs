//! Queue ids that say where the queue lives.
//!
//! Format: `<node>-<core>-<32 lowercase hex digits>`, e.g.
//! `0-1-4f0c8e2a9b7d4c1e8f3a2b1c0d9e8f7a`. Clients treat the id as an opaque
//! string; the gateway reads the node and core back out of it to route a
//! request to the owning core without any lookup table. The random part is
//! 128 bits, so ids are unguessable and never collide in practice.

use std::fmt;

/// A gateway core on a gateway node: the owner of a set of users' queues.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Shard {
    /// Gateway node index, `0..nodes`.
    pub node: u16,
    /// Core index on that node, `0..cores`.
    pub core: u16,
}

/// A parsed queue id.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct QueueId {
    /// Where the queue lives.
    pub shard: Shard,
    /// The random part.
    pub token: u128,
}

impl QueueId {
    /// A new random queue id on `shard`.
    pub fn new_random(shard: Shard) -> Self {
        QueueId { shard, token: rand::random() }
    }

    /// Parses a queue id; `None` for anything not produced by [`fmt::Display`].
    pub fn parse(s: &str) -> Option<Self> {
        let mut parts = s.splitn(3, '-');
        let node = parse_small(parts.next()?)?;
        let core = parse_small(parts.next()?)?;
        let hex = parts.next()?;
        if hex.len() != 32 || !hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            return None;
        }
        let token = u128::from_str_radix(hex, 16).ok()?;
        Some(QueueId { shard: Shard { node, core }, token })
    }
}

/// Appends `n` in decimal to `out` without allocating.
pub fn push_decimal(out: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
}

impl QueueId {
    /// Appends the id's text (as [`fmt::Display`] writes it) to `out`
    /// without allocating.
    pub fn write_to(&self, out: &mut Vec<u8>) {
        push_decimal(out, self.shard.node as u64);
        out.push(b'-');
        push_decimal(out, self.shard.core as u64);
        out.push(b'-');
        const HEX: &[u8; 16] = b"0123456789abcdef";
        for shift in (0..32).rev() {
            out.push(HEX[((self.token >> (shift * 4)) & 0xf) as usize]);
        }
    }
}

/// Decimal u16 without sign or leading zeros, so each id has one spelling.
fn parse_small(s: &str) -> Option<u16> {
    if s.is_empty() || s.len() > 5 || (s.len() > 1 && s.starts_with('0')) {
        return None;
    }
    if !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

impl fmt::Display for QueueId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}-{:032x}", self.shard.node, self.shard.core, self.token)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Golden: the wire format of queue ids is pinned; persisted queues and
    /// clients holding ids across a restart depend on it.
    #[test]
    fn format_is_pinned() {
        let id = QueueId { shard: Shard { node: 3, core: 12 }, token: 0xdead_beef };
        assert_eq!(id.to_string(), "3-12-000000000000000000000000deadbeef");
        assert_eq!(QueueId::parse("3-12-000000000000000000000000deadbeef"), Some(id));
    }

    #[test]
    fn round_trips() {
        for core in [0, 1, 7, 65535] {
            let id = QueueId::new_random(Shard { node: 2, core });
            assert_eq!(QueueId::parse(&id.to_string()), Some(id));
            let mut bytes = Vec::new();
            id.write_to(&mut bytes);
            assert_eq!(bytes, id.to_string().into_bytes(), "both writers agree");
        }
    }

    #[test]
    fn rejects_everything_else() {
        for bad in [
            "",
            "abc",
            "1482093786:2",
            "fb67bf8a-c031-47cc-84cf-ed80accacda8",
            "0-0-",
            "0-0-000000000000000000000000deadbee",
            "0-0-000000000000000000000000deadbeeff",
            "0-0-000000000000000000000000DEADBEEF",
            "00-0-000000000000000000000000deadbeef",
            "+1-0-000000000000000000000000deadbeef",
            "0-70000-000000000000000000000000deadbeef",
            "0--000000000000000000000000deadbeef",
        ] {
            assert_eq!(QueueId::parse(bad), None, "{bad:?}");
        }
    }
}
