use super::*;

fn key(n: u16) -> PeerKey {
    let mut bytes = [0u8; 32];
    bytes[..2].copy_from_slice(&n.to_be_bytes());
    PeerKey(bytes)
}

const HOST: u16 = 0;

fn join(n: u16, capacity: u16, rtt_ms: u32) -> TreeInput {
    TreeInput::Join {
        peer: key(n),
        capacity,
        rtt_ms,
    }
}

fn attach(child: u16, parent: u16, depth: u16) -> TreeOutput {
    TreeOutput::Attach {
        child: key(child),
        parent: key(parent),
        depth,
    }
}

/// Runs inputs in order, checking each one's outputs and the invariants after it.
fn check(capacity: u16, steps: &[(TreeInput, Vec<TreeOutput>)]) -> TreePlanner {
    let mut tree = TreePlanner::new(key(HOST), capacity);
    for (i, (input, expected)) in steps.iter().enumerate() {
        assert_eq!(&tree.handle(*input), expected, "step {i}: {input:?}");
        tree.check().unwrap_or_else(|err| panic!("step {i}: {err}"));
    }
    tree
}

#[test]
fn joiners_fill_the_shallowest_free_slots_preferring_low_rtt() {
    let tree = check(
        2,
        &[
            (join(1, 2, 30), vec![attach(1, HOST, 1)]),
            (join(2, 2, 10), vec![attach(2, HOST, 1)]),
            // The host is full: the next joiner goes to the depth-1 member with the lower RTT.
            (join(3, 2, 50), vec![attach(3, 2, 2)]),
            (join(4, 0, 50), vec![attach(4, 2, 2)]),
            (join(5, 0, 50), vec![attach(5, 1, 2)]),
            (join(6, 0, 5), vec![attach(6, 1, 2)]),
            (join(7, 0, 5), vec![attach(7, 3, 3)]),
        ],
    );
    assert_eq!(tree.path_to_root(&key(7)), vec![key(3), key(2), key(HOST)]);
    let layout: Vec<(u16, Option<u16>)> = tree
        .layout()
        .into_iter()
        .map(|(k, _, depth)| (u16::from_be_bytes([k.0[0], k.0[1]]), depth))
        .collect();
    assert_eq!(
        layout,
        vec![
            (HOST, Some(0)),
            (1, Some(1)),
            (5, Some(2)),
            (6, Some(2)),
            (2, Some(1)),
            (3, Some(2)),
            (7, Some(3)),
            (4, Some(2)),
        ]
    );
    assert_eq!(tree.max_depth(), 3);
    assert_eq!(tree.depth_of(&key(HOST)), Some(0));
}

#[test]
fn orphans_reattach_to_their_grandparent_with_their_subtrees() {
    let tree = check(
        1,
        &[
            (join(1, 1, 10), vec![attach(1, HOST, 1)]),
            (join(2, 2, 10), vec![attach(2, 1, 2)]),
            (join(3, 0, 10), vec![attach(3, 2, 3)]),
            (join(4, 0, 10), vec![attach(4, 2, 3)]),
            // 1 leaves: its child 2 moves up to the host, with 3 and 4 below it.
            (TreeInput::Leave { peer: key(1) }, vec![attach(2, HOST, 1)]),
        ],
    );
    assert_eq!(tree.depth_of(&key(3)), Some(2));
    assert_eq!(tree.children_of(&key(2)), vec![key(3), key(4)]);
}

#[test]
fn orphans_go_elsewhere_when_the_grandparent_cannot_take_them_all() {
    check(
        1,
        &[
            (join(1, 3, 10), vec![attach(1, HOST, 1)]),
            (join(2, 1, 10), vec![attach(2, 1, 2)]),
            (join(3, 1, 20), vec![attach(3, 1, 2)]),
            (join(4, 1, 30), vec![attach(4, 1, 2)]),
            // 1 leaves: the host takes one orphan; the others go below it, never into their own
            // subtree.
            (
                TreeInput::Leave { peer: key(1) },
                vec![attach(2, HOST, 1), attach(3, 2, 2), attach(4, 3, 3)],
            ),
        ],
    );
}

#[test]
fn a_full_tree_keeps_joiners_waiting_until_a_slot_opens() {
    let tree = check(
        1,
        &[
            (join(1, 0, 10), vec![attach(1, HOST, 1)]),
            (join(2, 0, 10), vec![TreeOutput::Waiting { peer: key(2) }]),
            (join(3, 1, 10), vec![TreeOutput::Waiting { peer: key(3) }]),
            (
                TreeInput::Capacity {
                    peer: key(1),
                    capacity: 1,
                },
                vec![attach(2, 1, 2)],
            ),
            (TreeInput::Leave { peer: key(2) }, vec![attach(3, 1, 2)]),
        ],
    );
    assert!(tree.waiting().is_empty());
}

#[test]
fn rejoining_keeps_the_place_and_leaving_twice_is_harmless() {
    check(
        2,
        &[
            (join(1, 2, 10), vec![attach(1, HOST, 1)]),
            (join(1, 4, 5), vec![attach(1, HOST, 1)]),
            (TreeInput::Leave { peer: key(1) }, vec![]),
            (TreeInput::Leave { peer: key(1) }, vec![]),
            (TreeInput::Leave { peer: key(HOST) }, vec![]),
            (join(HOST, 1, 1), vec![]),
        ],
    );
}

/// A small deterministic RNG (xorshift64*), so the simulation needs no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// 500 listeners with mixed capacities join, leave and come back at random; after every step the
/// tree is whole, nobody is fed by more parents than allowed, and the tree stays shallow.
#[test]
fn simulation_of_500_listeners_with_random_departures() {
    for seed in 1..=3u64 {
        let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15));
        let mut tree = TreePlanner::new(key(HOST), 8);
        let mut present: Vec<u16> = Vec::new();
        let mut outputs = 0usize;
        for step in 0..3000 {
            let input = if present.len() < 500 && (present.is_empty() || rng.below(10) < 7) {
                let n = 1 + rng.below(600) as u16;
                if present.contains(&n) {
                    continue;
                }
                present.push(n);
                // A mix like a real room: many leaves, some small relays, a few big ones.
                let capacity = [0, 0, 0, 2, 3, 4, 4, 16][rng.below(8) as usize];
                join(n, capacity, 5 + rng.below(200) as u32)
            } else {
                let n = present.swap_remove(rng.below(present.len() as u64) as usize);
                TreeInput::Leave { peer: key(n) }
            };
            outputs += tree.handle(input).len();
            tree.check()
                .unwrap_or_else(|err| panic!("seed {seed} step {step}: {err}"));
        }
        // Everyone present is in the tree; with this capacity mix, nobody has to wait.
        assert_eq!(tree.len(), present.len() + 1, "seed {seed}");
        assert!(
            tree.waiting().is_empty(),
            "seed {seed}: {:?}",
            tree.waiting()
        );
        for n in &present {
            let depth = tree.depth_of(&key(*n)).expect("attached");
            assert_eq!(tree.path_to_root(&key(*n)).len(), usize::from(depth));
        }
        assert!(
            tree.max_depth() <= 8,
            "seed {seed}: {} members, depth {}",
            tree.len(),
            tree.max_depth()
        );
        assert!(outputs > 0);
    }
}
