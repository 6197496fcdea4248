//! Cutting one envelope into the parts each core must see.
//!
//! A notice names users; each user lives on one core. The gateway node that
//! receives an envelope splits it so every core gets only its own users,
//! sharing the (possibly large) event body by reference.

use crate::placement::Topology;
use squall_proto::envelope::{MessageNotice, Notice, PerUserData};

/// Splits `notice` into per-core parts for node `node`. Users placed on other
/// nodes are dropped (they are another node's business). Cores without users
/// get no part, except that a public-stream message goes to every core
/// (realm-wide watchers may live anywhere) and a revocation goes whole to
/// every core of every node (any core may have cached the credentials).
pub fn split_for_node(notice: &Notice, topo: Topology, node: u16) -> Vec<(u16, Notice)> {
    let cores = topo.cores.max(1) as usize;
    match notice {
        Notice::Revoke { .. } => (0..cores as u16).map(|c| (c, notice.clone())).collect(),
        Notice::PerUser { event, users } => {
            let mut parts: Vec<Vec<PerUserData>> = vec![Vec::new(); cores];
            for u in users {
                let s = topo.shard_of(u.id);
                if s.node == node {
                    parts[s.core as usize].push(u.clone());
                }
            }
            parts
                .into_iter()
                .enumerate()
                .filter(|(_, u)| !u.is_empty())
                .map(|(c, users)| (c as u16, Notice::PerUser { event: event.clone(), users }))
                .collect()
        }
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
                .filter(|(_, u)| !u.is_empty() || m.public_stream)
                .map(|(c, users)| {
                    let part = MessageNotice { users, ..(**m).clone() };
                    (c as u16, Notice::Message(Box::new(part)))
                })
                .collect()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use squall_proto::envelope::MessageRecipient;
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
        let users: Vec<MessageRecipient> =
            (1..=40).map(|id| MessageRecipient { id, flags: id, mentioned_user_group_id: None }).collect();
        let msg = squall_proto::envelope::fixtures::message();
        let notice = Notice::Message(Box::new(MessageNotice {
            message: Arc::new(msg),
            users: users.clone(),
            sender_queue_id: None,
            local_id: None,
            realm_id: 1,
            public_stream: false,
            invite_only: true,
            notify: Default::default(),
        }));
        let parts = split_for_node(&notice, topo, 1);
        assert_eq!(parts.len(), 1);
        let Notice::Message(m) = &parts[0].1 else { panic!("kind changed") };
        let expected: Vec<MessageRecipient> = users.into_iter().filter(|r| topo.shard_of(r.id).node == 1).collect();
        assert!(!expected.is_empty());
        assert_eq!(m.users, expected);
    }

    #[test]
    fn public_stream_messages_reach_every_core() {
        let topo = Topology::single_node(4);
        let notice = Notice::Message(Box::new(MessageNotice {
            message: Arc::new(squall_proto::envelope::fixtures::message()),
            users: vec![MessageRecipient { id: 1, flags: 0, mentioned_user_group_id: None }],
            sender_queue_id: None,
            local_id: None,
            realm_id: 1,
            public_stream: true,
            invite_only: false,
            notify: Default::default(),
        }));
        let cores: Vec<u16> = split_for_node(&notice, topo, 0).into_iter().map(|(c, _)| c).collect();
        assert_eq!(cores, vec![0, 1, 2, 3]);
    }

    #[test]
    fn revocations_reach_every_core_of_every_node() {
        let topo = Topology { nodes: 3, cores: 4 };
        let notice = Notice::Revoke { users: vec![1], delete_queues: false };
        for node in 0..3 {
            let parts = split_for_node(&notice, topo, node);
            let cores: Vec<u16> = parts.iter().map(|(c, _)| *c).collect();
            assert_eq!(cores, vec![0, 1, 2, 3], "node {node}");
            assert!(parts.iter().all(|(_, p)| matches!(p, Notice::Revoke { users, .. } if users == &vec![1])));
        }
    }

    #[test]
    fn per_user_data_follows_its_user() {
        let topo = Topology::single_node(2);
        let users: Vec<PerUserData> = (1..=10)
            .map(|id| PerUserData {
                id,
                data: serde_json::json!({"flags": [id.to_string()]}).as_object().unwrap().clone(),
            })
            .collect();
        let notice = Notice::PerUser { event: Arc::new(serde_json::json!({"type": "update_message"})), users };
        let mut n = 0;
        for (core, part) in split_for_node(&notice, topo, 0) {
            let Notice::PerUser { users, .. } = part else { panic!("kind changed") };
            for u in users {
                assert_eq!(topo.shard_of(u.id).core, core);
                assert_eq!(u.data["flags"][0], u.id.to_string());
                n += 1;
            }
        }
        assert_eq!(n, 10);
    }
}
