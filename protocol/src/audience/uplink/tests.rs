use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use super::*;

/// A node's counters moved a second at a time, with a clock the test moves.
struct Sim {
    now: Instant,
    offered: Sent,
    children: BTreeMap<u8, Sent>,
    up: Uplink<u8>,
    /// Writes (packets) a second to each child.
    writes: u64,
}

/// Two voices with their proofs and beacons, framed: about 12 KB/s, in 100 writes.
const TWO_VOICES: u64 = 12_000;
const WRITES: u64 = 100;
/// Their cost with the transport's allowance per packet.
const TWO_VOICES_COST: u64 = TWO_VOICES + WRITES * PACKET_OVERHEAD;

impl Sim {
    fn new(declared: Option<u32>, configured: u16) -> Self {
        let now = Instant::now();
        let mut up = Uplink::new(declared, configured, 0, now);
        assert!(up.tick(now, &Sample::default()).is_empty());
        Self {
            now,
            offered: Sent::default(),
            children: BTreeMap::new(),
            up,
            writes: WRITES,
        }
    }

    /// One second: `offered` bytes went into the queue; each child in `fed` took `bytes` and
    /// skipped `dropped` frames (children not named are gone). Returns who is shed.
    fn second(&mut self, offered: u64, fed: &[(u8, u64, u64)]) -> Vec<u8> {
        self.now += Duration::from_secs(1);
        self.offered.bytes += offered;
        self.offered.packets += self.writes;
        self.children
            .retain(|k, _| fed.iter().any(|(c, _, _)| c == k));
        for &(child, bytes, dropped) in fed {
            let sent = self.children.entry(child).or_default();
            sent.bytes += bytes;
            sent.packets += self.writes;
            sent.dropped += dropped;
        }
        let sample = Sample {
            offered: self.offered,
            children: self.children.iter().map(|(k, s)| (*k, *s)).collect(),
        };
        self.up.tick(self.now, &sample)
    }

    fn seconds(&mut self, n: usize, offered: u64, fed: &[(u8, u64, u64)]) -> Vec<u8> {
        (0..n).flat_map(|_| self.second(offered, fed)).collect()
    }
}

fn kbps(bytes_per_second: u64) -> u64 {
    bytes_per_second * 8 / 1000
}

#[test]
fn the_configured_capacity_until_something_is_measured() {
    let sim = Sim::new(None, 50);
    assert_eq!((sim.up.capacity(), sim.up.cost()), (50, None));
    assert_eq!(sim.up.basis(), Basis::Configured);
    // A declaration is believed one child at a time, from the first.
    let sim = Sim::new(Some(2000), 50);
    assert_eq!((sim.up.capacity(), sim.up.allowed()), (1, None));
}

#[test]
fn a_declared_uplink_offers_one_place_more_than_it_has_fed_cleanly() {
    let mut sim = Sim::new(Some(2000), 50);
    let fed: Vec<(u8, u64, u64)> = (1..=4).map(|c| (c, TWO_VOICES, 0)).collect();
    sim.second(TWO_VOICES, &[]);
    assert_eq!(sim.up.allowed(), Some(11));
    assert_eq!(sim.up.capacity(), 1);
    // One child fed cleanly for PROVE_SECONDS: a second place, after RAISE_AFTER.
    sim.seconds(PROVE_SECONDS as usize + 10, TWO_VOICES, &fed[..1]);
    assert_eq!(sim.up.capacity(), 2);
    sim.seconds(PROVE_SECONDS as usize + 10, TWO_VOICES, &fed[..2]);
    assert_eq!(sim.up.capacity(), 3);
}

#[test]
fn the_declared_upload_over_the_measured_cost_of_a_child() {
    // Declared 2,000 kbit/s; two voices cost ~140 kbit/s a child: 1,600 / 140 = 11.
    let mut sim = Sim::new(Some(2000), 50);
    sim.second(TWO_VOICES, &[]);
    let cost = sim.up.cost().unwrap_or_default();
    assert_eq!(cost, TWO_VOICES_COST);
    assert_eq!(kbps(cost), 144);
    assert_eq!(sim.up.allowed(), Some((200_000 / TWO_VOICES_COST) as u16));
    assert_eq!(sim.up.basis(), Basis::Measured);
    // Children fed cleanly: what they took is the cost (their writes batch frames together).
    sim.seconds(
        6,
        TWO_VOICES,
        &[(1, TWO_VOICES + 500, 0), (2, TWO_VOICES, 0)],
    );
    assert_eq!(
        sim.up.cost(),
        Some(TWO_VOICES + 500 + WRITES * PACKET_OVERHEAD)
    );
}

#[test]
fn a_thin_declared_uplink_carries_fewer_children_than_the_constant_said() {
    // 256 kbit/s: the constant (40 a child) said 6; two voices at once leave room for 1.
    let mut sim = Sim::new(Some(256), 6);
    sim.second(TWO_VOICES, &[]);
    assert_eq!(sim.up.allowed(), Some(1));
    // However long it feeds one child cleanly.
    sim.seconds(30, TWO_VOICES, &[(1, TWO_VOICES, 0)]);
    assert_eq!(sim.up.capacity(), 1);
    // One voice: 5 KB/s with its writes, 25.6 KB/s of budget: 2.
    let mut sim = Sim::new(Some(256), 6);
    sim.second(5_000, &[]);
    assert_eq!(sim.up.allowed(), Some(2));
}

#[test]
fn without_a_declaration_the_configured_number_holds() {
    let mut sim = Sim::new(None, 4);
    sim.seconds(10, TWO_VOICES, &[(1, TWO_VOICES, 0)]);
    assert_eq!(sim.up.capacity(), 4);
    assert_eq!(sim.up.basis(), Basis::Configured);
}

#[test]
fn the_capacity_falls_at_once_and_rises_only_after_a_while() {
    let mut sim = Sim::new(Some(2000), 50);
    // The busiest five seconds of the last minute count: loud, then quiet.
    // (Four children fed cleanly: the measurement, not the slow start, is what limits.)
    let fed: Vec<(u8, u64, u64)> = (1..=4).map(|c| (c, 0, 0)).collect();
    sim.seconds(5, 2 * TWO_VOICES, &fed);
    let loud = sim.up.allowed().unwrap_or_default();
    assert!(loud < 10, "{loud}");
    assert!(sim.up.capacity() <= loud);
    sim.seconds(30, 1_000, &fed);
    assert_eq!(
        sim.up.allowed(),
        Some(loud),
        "the loud minute is remembered"
    );
    sim.seconds(33, 1_000, &fed);
    // The peak is forgotten (60 s): 1,000 bytes and 100 writes a second, 7,000 of 200,000
    let quiet = sim.up.allowed().unwrap_or_default();
    assert_eq!(quiet, 28);
    // and the capacity rises RAISE_AFTER later, to a place more than fed.
    assert_eq!(sim.up.capacity(), loud.min(5));
    sim.seconds(12, 1_000, &fed);
    assert_eq!(sim.up.capacity(), 5);
}

#[test]
fn a_saturated_uplink_lowers_its_capacity_and_sheds_its_newest_children() {
    // Whatever the user said (here: nothing, 50 children), the uplink has the last word.
    let mut sim = Sim::new(None, 50);
    let fed: Vec<(u8, u64, u64)> = (1..=4).map(|c| (c, TWO_VOICES, 0)).collect();
    sim.second(TWO_VOICES, &fed[..1]);
    sim.second(TWO_VOICES, &fed[..2]);
    sim.second(TWO_VOICES, &fed[..3]);
    sim.second(TWO_VOICES, &fed);
    let measured = sim.up.capacity();
    assert!(measured > 4);
    // All four skip frames: one child less at once, the newest shed after two seconds.
    let saturated: Vec<(u8, u64, u64)> = (1..=4).map(|c| (c, 6_000, 20)).collect();
    assert_eq!(sim.second(TWO_VOICES, &saturated), Vec::<u8>::new());
    assert_eq!((sim.up.capacity(), sim.up.basis()), (3, Basis::Congested));
    assert_eq!(sim.second(TWO_VOICES, &saturated), vec![4]);
    // Three left, still skipping: two, and the newest of them goes.
    assert_eq!(sim.second(TWO_VOICES, &saturated[..3]), Vec::<u8>::new());
    assert_eq!(sim.up.capacity(), 2);
    assert_eq!(sim.second(TWO_VOICES, &saturated[..3]), vec![3]);
    // Two carried cleanly: no more shed, the cap holds.
    assert!(sim.seconds(30, TWO_VOICES, &fed[..2]).is_empty());
    assert_eq!(sim.up.capacity(), 2);
    // A minute without a skipped frame: one more (once RAISE_AFTER has passed), and so on up to
    // what the measurement allows.
    sim.seconds(31 + 10, TWO_VOICES, &fed[..2]);
    assert_eq!(sim.up.capacity(), 3);
}

#[test]
fn a_slow_child_loses_its_own_place_and_nobody_elses() {
    let mut sim = Sim::new(None, 50);
    let fed: Vec<(u8, u64, u64)> = (1..=4).map(|c| (c, TWO_VOICES, 0)).collect();
    sim.seconds(10, TWO_VOICES, &fed);
    assert_eq!(sim.up.shown(), 4);
    // A slow second, then a clean one: forgiven.
    let mut three = fed.clone();
    three[2] = (3, 3_000, 40);
    assert!(sim.second(TWO_VOICES, &three).is_empty());
    assert!(sim.second(TWO_VOICES, &fed).is_empty());
    assert!(sim.second(TWO_VOICES, &three).is_empty());
    assert!(sim.second(TWO_VOICES, &fed).is_empty());
    assert_eq!(sim.up.capacity(), 50);
    // Child 2 reads slowly; the others take everything: it loses its place, nobody else does,
    // and its parent takes no more children (for a minute) than the four it has been seen to
    // carry: the three it feeds cleanly would let a slow key shrink it.
    let mut slow = fed.clone();
    slow[1] = (2, 3_000, 40);
    assert!(sim.second(TWO_VOICES, &slow).is_empty());
    assert_eq!(sim.second(TWO_VOICES, &slow), vec![2]);
    assert_eq!((sim.up.capacity(), sim.up.basis()), (4, Basis::Congested));
    // Two slow children (a Sybil's two keys, or newcomers on a saturated uplink): each loses
    // its place, no one else; the parent still offers the four places it has carried.
    let fed: Vec<(u8, u64, u64)> = [1, 3, 4, 5].map(|c| (c, TWO_VOICES, 0)).to_vec();
    sim.second(TWO_VOICES, &fed);
    let mut two = fed.clone();
    two[0] = (1, 3_000, 40);
    two[2] = (4, 3_000, 40);
    assert!(sim.second(TWO_VOICES, &two).is_empty());
    assert_eq!(sim.second(TWO_VOICES, &two), vec![1, 4]);
    assert_eq!((sim.up.capacity(), sim.up.basis()), (4, Basis::Congested));
    // Had it carried only the two it feeds cleanly, they would be all it offers.
    let mut sim = Sim::new(None, 50);
    sim.seconds(10, TWO_VOICES, &fed[1..3]);
    sim.seconds(2, TWO_VOICES, &fed[..2]);
    sim.seconds(2, TWO_VOICES, &fed);
    assert!(sim.second(TWO_VOICES, &two).is_empty());
    assert_eq!(sim.second(TWO_VOICES, &two), vec![1, 4]);
    assert_eq!((sim.up.capacity(), sim.up.basis()), (2, Basis::Congested));
}

#[test]
fn slow_keys_in_every_place_cost_their_places_not_the_nodes_capacity() {
    // A node that has fed four children cleanly; the four places are then taken by keys that
    // read slowly (a raid's relays placed under the host): all four behind, as if the uplink
    // were saturated, but it has been seen to carry them: each is shed, the capacity stays.
    let mut sim = Sim::new(None, 4);
    let honest: Vec<(u8, u64, u64)> = (1..=4).map(|c| (c, TWO_VOICES, 0)).collect();
    sim.seconds(10, TWO_VOICES, &honest);
    let slow: Vec<(u8, u64, u64)> = (11..=14).map(|c| (c, 3_000, 40)).collect();
    assert!(sim.second(TWO_VOICES, &slow).is_empty());
    assert_eq!(sim.second(TWO_VOICES, &slow), vec![11, 12, 13, 14]);
    assert_eq!(sim.up.capacity(), 4);
    // Not taken back for a minute.
    assert!(sim.up.shed_lately(|k| *k == 11, sim.now) && !sim.up.shed_lately(|k| *k == 1, sim.now));
    assert!(!sim.up.shed_lately(|k| *k == 11, sim.now + CLEAR_AFTER));
    // Honest children in their places: fed, nobody shed.
    assert!(sim.seconds(20, TWO_VOICES, &honest).is_empty());
    assert_eq!(sim.up.capacity(), 4);
    // Slow keys in some places, for as long as the raid lasts: each sheds alone, the node keeps
    // its four places.
    let mixed: Vec<(u8, u64, u64)> = vec![
        (1, TWO_VOICES, 0),
        (2, TWO_VOICES, 0),
        (21, 3_000, 40),
        (22, 3_000, 40),
    ];
    for round in 0..10u8 {
        let mut keys = mixed.clone();
        keys[2].0 = 30 + 2 * round;
        keys[3].0 = 31 + 2 * round;
        sim.second(TWO_VOICES, &keys);
        assert_eq!(sim.second(TWO_VOICES, &keys), vec![keys[2].0, keys[3].0]);
        assert_eq!(sim.up.capacity(), 4, "round {round}");
    }
}

#[test]
fn slow_keys_in_a_quiet_rooms_places_cost_their_places_not_the_nodes_capacity() {
    // Nobody speaks: a child's stream is marks every 100 ms, beacons and chat, about 1 KB/s in
    // ten writes. Four children fed; then slow keys take two of the places, for as long as the
    // raid lasts: each sheds alone, the node keeps its four places (with the evidence weighed
    // at `MIN_COST` a child, what a quiet room carried was nothing, and the node offered only
    // the two it fed cleanly).
    const QUIET: u64 = 400;
    let mut sim = Sim::new(None, 4);
    sim.writes = 10;
    let fed: Vec<(u8, u64, u64)> = (1..=4).map(|c| (c, QUIET, 0)).collect();
    sim.seconds(10, QUIET, &fed);
    assert_eq!(sim.up.shown(), 4);
    for round in 0..10u8 {
        let keys = vec![
            (1, QUIET, 0),
            (2, QUIET, 0),
            (30 + 2 * round, 100, 5),
            (31 + 2 * round, 100, 5),
        ];
        sim.second(QUIET, &keys);
        assert_eq!(sim.second(QUIET, &keys), vec![keys[2].0, keys[3].0]);
        assert_eq!(sim.up.capacity(), 4, "round {round}");
    }
}

#[test]
fn every_child_behind_twice_in_a_minute_and_what_the_uplink_carried_is_forgotten() {
    // Four children carried; then every child behind (the home line now shared with a big
    // upload, or slow keys in every place): shed, each alone. The children placed after them
    // all behind too, within the minute: the uplink is not what it was, and it is judged as
    // saturated (a Sybil that holds every place of a node twice in a minute gets that much).
    let mut sim = Sim::new(None, 4);
    let fed: Vec<(u8, u64, u64)> = (1..=4).map(|c| (c, TWO_VOICES, 0)).collect();
    sim.seconds(10, TWO_VOICES, &fed);
    let behind =
        |first: u8| -> Vec<(u8, u64, u64)> { (first..first + 4).map(|c| (c, 6_000, 20)).collect() };
    // A moment's stall of everyone, twice: nothing forgotten.
    let stalled: Vec<(u8, u64, u64)> = (1..=4).map(|c| (c, TWO_VOICES, 1)).collect();
    for _ in 0..2 {
        sim.second(TWO_VOICES, &stalled);
        sim.seconds(3, TWO_VOICES, &fed);
    }
    assert_eq!(sim.up.shown(), 4);
    sim.second(TWO_VOICES, &behind(11));
    assert_eq!(sim.second(TWO_VOICES, &behind(11)).len(), 4);
    assert_eq!(sim.up.capacity(), 4);
    sim.second(TWO_VOICES, &[]);
    sim.second(TWO_VOICES, &behind(21));
    sim.second(TWO_VOICES, &behind(21));
    assert_eq!(sim.up.shown(), 0);
    assert_eq!((sim.up.capacity(), sim.up.basis()), (3, Basis::Congested));
}

#[test]
fn what_the_uplink_carried_counts_in_bytes_not_children() {
    // Four children carried at two voices; the room grows louder (four voices, twice the
    // bytes) and all four fall behind: the uplink carried two such children, not four, so it
    // is saturated: one fewer, and the newest shed.
    let mut sim = Sim::new(None, 50);
    let fed: Vec<(u8, u64, u64)> = (1..=4).map(|c| (c, TWO_VOICES, 0)).collect();
    sim.seconds(10, TWO_VOICES, &fed);
    let loud: Vec<(u8, u64, u64)> = (1..=4).map(|c| (c, TWO_VOICES, 60)).collect();
    sim.seconds(5, 2 * TWO_VOICES, &loud);
    assert!(sim.up.shown() <= 2, "{}", sim.up.shown());
    assert_eq!(sim.up.basis(), Basis::Congested);
    assert!(sim.up.capacity() < 4);
}

#[test]
fn newcomers_gone_while_behind_cap_the_capacity_at_the_children_fed_cleanly() {
    let mut sim = Sim::new(Some(2000), 50);
    sim.seconds(3, TWO_VOICES, &[(1, TWO_VOICES, 0)]);
    let capacity = sim.up.capacity();
    // A newcomer falls behind and leaves (it took its parent for dead) within its first second:
    // one such child says nothing yet.
    sim.up.tick(
        sim.now,
        &Sample {
            offered: sim.offered,
            children: vec![(1, sim.children[&1])],
        },
    );
    let gone = |sim: &Sim, k: u8| Sample {
        offered: sim.offered,
        children: vec![
            (1, sim.children[&1]),
            (
                k,
                Sent {
                    bytes: 2_000,
                    packets: 20,
                    dropped: 1,
                    gone: true,
                },
            ),
        ],
    };
    sim.now += Duration::from_secs(1);
    assert!(sim.up.tick(sim.now, &gone(&sim, 2)).is_empty());
    assert_eq!(sim.up.capacity(), capacity);
    // A second one: the old child is all this uplink carries.
    sim.second(TWO_VOICES, &[(1, TWO_VOICES, 0)]);
    sim.now += Duration::from_secs(1);
    assert!(sim.up.tick(sim.now, &gone(&sim, 3)).is_empty());
    assert_eq!((sim.up.capacity(), sim.up.basis()), (1, Basis::Congested));
}

#[test]
fn lone_children_that_cannot_be_fed_make_a_leaf() {
    let mut sim = Sim::new(Some(2000), 50);
    sim.second(TWO_VOICES, &[(1, TWO_VOICES, 0)]);
    let capacity = sim.up.capacity();
    // A lone child skipping frames: shed as slow, the capacity untouched.
    sim.second(TWO_VOICES, &[(1, 3_000, 40)]);
    assert_eq!(sim.second(TWO_VOICES, &[(1, 3_000, 40)]), vec![1]);
    assert_eq!(sim.up.capacity(), capacity);
    // The next lone child too: it is the uplink, not them.
    sim.second(TWO_VOICES, &[(2, TWO_VOICES, 0)]);
    sim.second(TWO_VOICES, &[(2, 3_000, 40)]);
    assert_eq!(sim.second(TWO_VOICES, &[(2, 3_000, 40)]), vec![2]);
    assert_eq!((sim.up.capacity(), sim.up.basis()), (0, Basis::Congested));
    // A child the tree gave it meanwhile (its parent's view a moment old), fed cleanly for
    // PROVE_SECONDS: that place it carries, and offers once the rise's hysteresis has passed
    // (no more until the cap clears).
    sim.seconds(3, TWO_VOICES, &[(3, TWO_VOICES, 0)]);
    assert_eq!(sim.up.capacity(), 0);
    let rise = usize::try_from(RAISE_AFTER.as_secs()).unwrap_or(10);
    sim.seconds(rise, TWO_VOICES, &[(3, TWO_VOICES, 0)]);
    assert_eq!((sim.up.capacity(), sim.up.basis()), (1, Basis::Congested));
    sim.seconds(5, TWO_VOICES, &[(3, TWO_VOICES, 0)]);
    assert_eq!(sim.up.capacity(), 1);
}

#[test]
fn the_host_keeps_its_floor() {
    let now = Instant::now();
    let mut up = Uplink::new(Some(100), 4, 1, now);
    up.tick(now, &Sample::<u8>::default());
    let loud = Sample::<u8> {
        offered: Sent {
            bytes: 100_000,
            packets: 100,
            dropped: 0,
            gone: false,
        },
        children: Vec::new(),
    };
    up.tick(now + Duration::from_secs(1), &loud);
    assert_eq!(up.capacity(), 1);
}
