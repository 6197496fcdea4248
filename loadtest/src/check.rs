//! The exactly-once checker: did every recipient receive every message
//! meant for it, once, in order?

use serde::{Deserialize, Serialize};
use std::collections::{HashMap, HashSet};

/// What the checker found, over all recipients.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verdict {
    /// (recipient, message) pairs that should have been delivered.
    pub expected: u64,
    /// Pairs delivered (first deliveries only).
    pub delivered: u64,
    /// Expected pairs never delivered.
    pub lost: u64,
    /// Deliveries beyond the first of a pair.
    pub duplicated: u64,
    /// Deliveries of a message older than one already delivered to the
    /// same recipient (ids must arrive increasing).
    pub out_of_order: u64,
    /// Deliveries of this run's messages to a recipient not meant to get them.
    pub unexpected: u64,
}

impl Verdict {
    /// Nothing lost, duplicated or misdelivered.
    pub fn ok(&self) -> bool {
        self.lost == 0 && self.duplicated == 0 && self.unexpected == 0
    }
}

/// Compares, per recipient, the message ids it should have received with
/// those it did receive (in arrival order).
pub fn check(expected: &HashMap<usize, Vec<i64>>, received: &HashMap<usize, Vec<i64>>) -> Verdict {
    let mut v = Verdict::default();
    let none = Vec::new();
    let recipients: HashSet<usize> = expected.keys().chain(received.keys()).copied().collect();
    for r in recipients {
        let want: HashSet<i64> = expected.get(&r).unwrap_or(&none).iter().copied().collect();
        let got = received.get(&r).unwrap_or(&none);
        v.expected += want.len() as u64;
        let mut seen = HashSet::with_capacity(got.len());
        let mut newest = i64::MIN;
        for &id in got {
            if !seen.insert(id) {
                v.duplicated += 1;
                continue;
            }
            if id < newest {
                v.out_of_order += 1;
            }
            newest = newest.max(id);
            if want.contains(&id) {
                v.delivered += 1;
            } else {
                v.unexpected += 1;
            }
        }
        v.lost += want.iter().filter(|id| !seen.contains(id)).count() as u64;
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(entries: &[(usize, &[i64])]) -> HashMap<usize, Vec<i64>> {
        entries.iter().map(|(k, v)| (*k, v.to_vec())).collect()
    }

    #[test]
    fn a_clean_run_passes() {
        let want = map(&[(0, &[1, 2, 3]), (1, &[1, 2, 3])]);
        let v = check(&want, &want);
        assert_eq!(v, Verdict { expected: 6, delivered: 6, ..Verdict::default() });
        assert!(v.ok());
    }

    #[test]
    fn a_lost_message_is_detected() {
        let v = check(&map(&[(0, &[1, 2, 3]), (1, &[1, 2, 3])]), &map(&[(0, &[1, 2, 3]), (1, &[1, 3])]));
        assert_eq!((v.lost, v.delivered), (1, 5));
        assert!(!v.ok());
        // A recipient that received nothing at all.
        let v = check(&map(&[(7, &[1, 2])]), &HashMap::new());
        assert_eq!(v.lost, 2);
        assert!(!v.ok());
    }

    #[test]
    fn a_duplicate_is_detected() {
        let v = check(&map(&[(0, &[1, 2])]), &map(&[(0, &[1, 2, 2])]));
        assert_eq!((v.duplicated, v.delivered, v.lost), (1, 2, 0));
        assert!(!v.ok());
    }

    #[test]
    fn reordering_and_misdelivery_are_counted() {
        let v = check(&map(&[(0, &[1, 2])]), &map(&[(0, &[2, 1]), (1, &[1])]));
        assert_eq!((v.out_of_order, v.unexpected, v.lost), (1, 1, 0));
        assert!(!v.ok(), "a message delivered to a non-recipient is an error");
    }
}
