//! UserMessage flags: Zulip's bit positions and API names.
//!
//! The backend stores the bitfield in `usermessage.flags`; the gateway and
//! the message-history API turn bits into the names clients see. Both use
//! this one table so they cannot disagree.

/// Flag names by bit position (value = `1 << bit`), exactly as Zulip.
pub const FLAG_NAMES: [&str; 13] = [
    "read",
    "starred",
    "collapsed",
    "mentioned",
    "stream_wildcard_mentioned",
    "topic_wildcard_mentioned",
    "group_mentioned",
    "force_expand",
    "force_collapse",
    "has_alert_word",
    "historical",
    "is_private",
    "active_mobile_push_notification",
];

/// `read`
pub const READ: i64 = 1 << 0;
/// `starred`
pub const STARRED: i64 = 1 << 1;
/// `mentioned`
pub const MENTIONED: i64 = 1 << 3;
/// `stream_wildcard_mentioned`
pub const STREAM_WILDCARD_MENTIONED: i64 = 1 << 4;
/// `topic_wildcard_mentioned`
pub const TOPIC_WILDCARD_MENTIONED: i64 = 1 << 5;
/// `has_alert_word`
pub const HAS_ALERT_WORD: i64 = 1 << 9;
/// `historical`
pub const HISTORICAL: i64 = 1 << 10;
/// `is_private`
pub const IS_PRIVATE: i64 = 1 << 11;

/// Bits never shown to clients.
const HIDDEN: i64 = (1 << 11) | (1 << 12);

/// The bit of an API flag name, if it is one.
pub fn bit_of(name: &str) -> Option<i64> {
    FLAG_NAMES.iter().position(|n| *n == name).map(|i| 1 << i)
}

/// Flag names as clients see them, in order, without allocating: hidden
/// bits dropped, and the legacy `wildcard_mentioned` last when either
/// wildcard bit is set.
pub fn names(bits: i64) -> impl Iterator<Item = &'static str> {
    let wildcard = bits & (STREAM_WILDCARD_MENTIONED | TOPIC_WILDCARD_MENTIONED) != 0;
    FLAG_NAMES
        .iter()
        .enumerate()
        .filter(move |(i, _)| bits & (1 << i) != 0 && HIDDEN & (1 << i) == 0)
        .map(|(_, n)| *n)
        .chain(wildcard.then_some("wildcard_mentioned"))
}

/// [`names`], collected.
pub fn api_names(bits: i64) -> Vec<&'static str> {
    names(bits).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bit_positions_match_zulip() {
        assert_eq!(bit_of("read"), Some(1));
        assert_eq!(bit_of("mentioned"), Some(8));
        assert_eq!(bit_of("historical"), Some(1024));
        assert_eq!(bit_of("is_private"), Some(2048));
        assert_eq!(bit_of("active_mobile_push_notification"), Some(4096));
        assert_eq!(bit_of("wildcard_mentioned"), None);
    }

    #[test]
    fn hidden_bits_and_legacy_wildcard() {
        assert_eq!(api_names(READ | IS_PRIVATE | (1 << 12)), vec!["read"]);
        assert_eq!(
            api_names(MENTIONED | STREAM_WILDCARD_MENTIONED),
            vec!["mentioned", "stream_wildcard_mentioned", "wildcard_mentioned"]
        );
        assert_eq!(api_names(TOPIC_WILDCARD_MENTIONED), vec!["topic_wildcard_mentioned", "wildcard_mentioned"]);
        assert!(api_names(0).is_empty());
    }
}
