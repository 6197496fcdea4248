//! Cutting one envelope into the parts each core must see.
//!
//! A notice names users; each user lives on one core. The gateway node that
//! receives an envelope splits it so every core gets only its own users,
//! sharing the (possibly large) event body by reference.

use crate::envelope::{MessageNotice, Notice};
use crate::placement::Topology;

/// Splits `notice` into per-core parts for node `node`. Users placed on other
/// nodes are dropped (they are another node's business). Cores without users
/// get no part.
pub fn split_for_node(notice: &Notice, topo: Topology, node: u16) -> Vec<(u16, Notice)> {
    let cores = topo.cores.max(1) as usize;
    match notice {
        Notice::Generic { event, users } => {
            let mut parts: Vec<Vec<i64>> = vec![Vec::new(); cores];
            for &u in users {
                let s = topo.shard_of(u);
                if s.node == node {
                    parts[s.core as usize].push(u);
                }
            }
            parts
                .into_iter()
                .enumerate()
                .filter(|(_, u)| !u.is_empty())
                .map(|(c, users)| (c as u16, Notice::Generic { event: event.clone(), users }))
                .collect()
        }
        Notice::Message(m) => {
            let mut parts = vec![Vec::new(); cores];
            for r in &m.users {
                let s = topo.shard_of(r.id);
                if s.node == node {
                    parts[s.core as usize].push(*r);
                }
            }
            parts
                .into_iter()
                .enumerate()
                .filter(|(_, u)| !u.is_empty())
                .map(|(c, users)| {
                    let part = MessageNotice {
                        message: m.message.clone(),
                        users,
                        sender_queue_id: m.sender_queue_id.clone(),
                        local_id: m.local_id.clone(),
                    };
                    (c as u16, Notice::Message(part))
                })
                .collect()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envelope::MessageRecipient;
    use std::sync::Arc;

    #[test]
    fn generic_split_covers_every_local_user_once() {
        let topo = Topology::single_node(2);
        let users: Vec<i64> = (1..=50).collect();
        let notice = Notice::Generic { event: Arc::new(serde_json::json!({"type": "x"})), users };
        let parts = split_for_node(&notice, topo, 0);
        let mut seen: Vec<i64> = Vec::new();
        for (core, part) in &parts {
            let Notice::Generic { users, .. } = part else { panic!("kind changed") };
            for u in users {
                assert_eq!(topo.shard_of(*u).core, *core);
            }
            seen.extend(users);
        }
        seen.sort();
        assert_eq!(seen, (1..=50).collect::<Vec<_>>());
    }

    #[test]
    fn other_nodes_users_are_dropped_and_flags_kept() {
        let topo = Topology { nodes: 2, cores: 1 };
        let users: Vec<MessageRecipient> = (1..=40).map(|id| MessageRecipient { id, flags: id }).collect();
        let msg = crate::envelope::tests_support::message();
        let notice = Notice::Message(MessageNotice {
            message: Arc::new(msg),
            users: users.clone(),
            sender_queue_id: None,
            local_id: None,
        });
        let parts = split_for_node(&notice, topo, 1);
        assert_eq!(parts.len(), 1);
        let Notice::Message(m) = &parts[0].1 else { panic!("kind changed") };
        let expected: Vec<MessageRecipient> = users.into_iter().filter(|r| topo.shard_of(r.id).node == 1).collect();
        assert!(!expected.is_empty());
        assert_eq!(m.users, expected);
    }
}
