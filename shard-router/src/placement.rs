//! User → node → core placement.
//!
//! Placement must be stable: a user's queues are found again after a restart
//! and every backend instance must agree with every gateway on where a user
//! lives. The golden test at the bottom pins the mapping so it cannot change
//! by accident.
//!
//! Nodes are chosen with jump consistent hashing (Lamping & Veach), so adding
//! a node moves only ~1/n of the users. Within a node the core is a plain
//! modulus of a mixed id: a node's core count is fixed for the life of the
//! process, and queues persisted across a restart with a different core
//! count are re-placed on load.

use squall_proto::Shard;

/// The shape of the cluster: how many gateway nodes, how many cores each.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Topology {
    /// Number of gateway nodes (at least 1).
    pub nodes: u16,
    /// Gateway cores per node (at least 1).
    pub cores: u16,
}

impl Topology {
    /// A single node with `cores` cores (the `squall serve` shape).
    pub fn single_node(cores: u16) -> Self {
        Topology { nodes: 1, cores: cores.max(1) }
    }

    /// The shard that owns all queues of `user_id`.
    pub fn shard_of(&self, user_id: i64) -> Shard {
        let key = splitmix64(user_id as u64);
        let node = jump_consistent_hash(key, self.nodes.max(1) as u32) as u16;
        // A second, independent mix for the core so that node and core are
        // not correlated (users of node 0 would otherwise favour some cores).
        let core = (splitmix64(key) % self.cores.max(1) as u64) as u16;
        Shard { node, core }
    }
}

/// SplitMix64 finaliser: a cheap, well-distributed 64-bit mix.
fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Jump consistent hash: maps `key` to a bucket in `0..buckets`.
fn jump_consistent_hash(mut key: u64, buckets: u32) -> u32 {
    let mut b: i64 = -1;
    let mut j: i64 = 0;
    while j < buckets as i64 {
        b = j;
        key = key.wrapping_mul(2_862_933_555_777_941_757).wrapping_add(1);
        j = ((b + 1) as f64 * ((1u64 << 31) as f64 / ((key >> 33) + 1) as f64)) as i64;
    }
    b as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Golden values: if this test fails, placement changed and every
    /// persisted queue and every running cluster would be mis-routed.
    #[test]
    fn placement_is_pinned() {
        let one = Topology::single_node(2);
        let got: Vec<u16> = (1..=16).map(|u| one.shard_of(u).core).collect();
        assert_eq!(got, GOLDEN_2_CORES);

        let many = Topology { nodes: 5, cores: 8 };
        let got: Vec<(u16, u16)> = [1i64, 2, 3, 10, 100, 1000, 123_456, 9_999_999]
            .iter()
            .map(|&u| {
                let s = many.shard_of(u);
                (s.node, s.core)
            })
            .collect();
        assert_eq!(got, GOLDEN_5_NODES_8_CORES);
    }

    const GOLDEN_2_CORES: [u16; 16] = [0, 0, 1, 1, 1, 1, 1, 0, 0, 1, 0, 1, 0, 0, 1, 1];
    const GOLDEN_5_NODES_8_CORES: [(u16, u16); 8] = [(3, 6), (0, 4), (4, 7), (2, 7), (3, 3), (0, 7), (1, 2), (0, 1)];

    #[test]
    fn single_core_and_single_node_are_trivial() {
        let t = Topology::single_node(1);
        for u in 0..1000 {
            assert_eq!(t.shard_of(u), Shard { node: 0, core: 0 });
        }
    }

    #[test]
    fn spread_is_roughly_even() {
        let t = Topology { nodes: 3, cores: 4 };
        let mut counts = [[0u32; 4]; 3];
        for u in 1..=120_000 {
            let s = t.shard_of(u);
            counts[s.node as usize][s.core as usize] += 1;
        }
        for row in counts {
            for c in row {
                // 10,000 expected per cell; allow 5%.
                assert!((9_500..=10_500).contains(&c), "uneven placement: {counts:?}");
            }
        }
    }

    #[test]
    fn adding_a_node_moves_few_users() {
        let before = Topology { nodes: 4, cores: 1 };
        let after = Topology { nodes: 5, cores: 1 };
        let moved = (1..=50_000).filter(|&u| before.shard_of(u).node != after.shard_of(u).node).count();
        // Ideal is 1/5 = 10,000.
        assert!((9_000..=11_000).contains(&moved), "moved {moved}");
    }
}
