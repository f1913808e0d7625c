//! A private room's rekey, end to end, and what sealing costs a listener's ear (issue 14).
//!
//! `cargo bench -p earshot-node --bench private_rekey` (about 4 minutes; add `-- --quick` for a
//! smaller run, or `--listeners 100,300` (room sizes), `--speaking 100` (sizes that also rekey
//! while the host speaks), `--removals N` (per room and phase), `--ears N`, `--rounds N`,
//! `--steady SECONDS`, `--no-latency`, `--uplink-mbps M`, `--hop-ms H`, `--pad M`: fill each
//! room's key schedule to M members, the rest keys with no node behind them, so that every
//! fresh epoch is sealed and sent down the tree as in a room of M). Prints four tables.
//!
//! 1. **Rekey.** A host and N listeners, each an in-process node with its own swarm, over
//!    loopback QUIC, in a room with `Visibility::Private`; every listener in the audience,
//!    placed in the relay tree with the default fan-out (as `audience_scale` does). Once every
//!    listener holds the host's epoch (and it has not moved for [`QUIET`]), the host removes one
//!    listener: `ControlBody::Remove` acted by the host, as `/remove` does. (The node revokes the
//!    capability the removed listener joined with, and the key schedule drops everyone who
//!    joined with it: each listener here joins with a link of its own.) A leaf is removed, so
//!    that nobody below it has to find a new parent. From the call, each remaining listener's
//!    `fanout().keys(&room)` is polled every millisecond until it holds the new fresh epoch
//!    (checked to be the host's secret); the host's own keyring tells when it stepped.
//!    `--removals` times in an idle room, then (sizes in `--speaking`) as many again with the
//!    host speaking (80-byte frames every 20 ms, sealed), counting frames listeners received
//!    and could not open. The room shrinks by one each time.
//! 2. **1,000 members, estimated.** Not run: this 2-core machine does not hold 1,000 nodes in
//!    one process. The estimate adds up measured components: the wait for the host's tick (the
//!    schedule steps on the event loop's 100 ms timer), [`Keys::fresh`] for 1,000 members
//!    (timed here), the parts' bytes going down each hop of a tree as deep as a fan-out of
//!    [`DEFAULT_MAX_CHILDREN`] makes 1,000 members, each hop's time as measured in part 1 (the
//!    largest room), and the last member's checking and opening every part. A second line
//!    charges each hop the time to upload every part to each child over a given uplink
//!    (`--uplink-mbps`, 10 by default) plus a one-way delay (`--hop-ms`, 25): an assumption,
//!    not a measurement.
//! 3. **Mouth-to-ear, public vs private.** Rooms of `--ears` listeners, all children of the host
//!    (depth 1), the host speaking a tone with real [`AudioSession`]s (encoding, sealing in the
//!    private room, the tree, opening, the jitter buffer, decoding). Each player's latency
//!    histogram (capture timestamp → the chunk that plays the frame) is read after [`WARMUP`]
//!    over `--steady` seconds, as `audio_path` does. Public and private rooms alternate
//!    `--rounds` times. Each player's 20 ms clock has its own phase, so one listener's latency
//!    is off another's by up to a frame: compare the means over many listeners, not one.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use earshot_node::audio::FRAME_DURATION;
use earshot_node::audio::io::{Input, Latency, Output, PlayerStatus};
use earshot_node::fanout::FanoutStats;
use earshot_node::identity::Identity;
use earshot_node::net::NetConfig;
use earshot_node::node::{DEFAULT_MAX_CHILDREN, Node, NodeConfig};
use earshot_node::session::AudioSession;
use earshot_protocol::frame::{AudioFrame, SpeakerId};
use earshot_protocol::loudest::DEFAULT_FORWARDED;
use earshot_protocol::private::{Epoch, Keys, SEALED_PER_PART, Secret};
use earshot_protocol::room::RoomSpec;
use earshot_protocol::{
    Audience, Capability, ControlBody, Grant, InviteLink, PeerKey, RecordingPolicy, Role,
    RoomDescriptor, RoomId, Timestamp, Visibility,
};
use ed25519_dalek::SigningKey;
use tokio::time::MissedTickBehavior;

/// How often keyrings and statuses are polled.
const POLL: Duration = Duration::from_millis(1);
/// The longest a rekey may take before the bench gives up.
const REKEY_WAIT: Duration = Duration::from_secs(30);
/// Every listener holds the host's epoch, unchanged this long: the joins' ratchets are over (the
/// host batches them a second apart).
const QUIET: Duration = Duration::from_millis(1_500);
/// The event loop's timer: the schedule steps on it (`node/src/node/event_loop.rs`).
const TICK: Duration = Duration::from_millis(100);
/// The jitter buffer's cautious start, left out of the latency histograms.
const WARMUP: Duration = Duration::from_secs(3);
/// The issue's targets.
const REKEY_TARGET: Duration = Duration::from_secs(2);
const LATENCY_TARGET_MS: f64 = 5.0;
/// A join that failed is tried again this many times in all.
const JOIN_TRIES: usize = 5;
/// The room the estimate is for.
const ESTIMATE_MEMBERS: usize = 1_000;

struct Args {
    /// Room sizes (listeners), one room each.
    listeners: Vec<usize>,
    /// Sizes whose room has the host speak for a second round of removals.
    speaking: Vec<usize>,
    removals: usize,
    ears: usize,
    rounds: usize,
    steady: Duration,
    latency: bool,
    uplink_mbps: f64,
    hop_ms: f64,
    /// Fill each room's key schedule to this many members with keys that have no node behind
    /// them (so that every fresh epoch is sealed and sent as in a room of that many).
    pad: Option<usize>,
}

impl Args {
    fn parse() -> Self {
        let args: Vec<String> = std::env::args().collect();
        let value = |name: &str| {
            args.iter()
                .position(|a| a == name)
                .and_then(|i| args.get(i + 1))
                .cloned()
        };
        let number = |name: &str, default: usize| {
            value(name).map_or(default, |n| n.parse().expect("a number"))
        };
        let list = |name: &str, default: Vec<usize>| {
            value(name).map_or(default, |list| {
                list.split(',')
                    .filter(|n| !n.trim().is_empty())
                    .map(|n| n.trim().parse().expect("a list of numbers"))
                    .collect()
            })
        };
        let quick = args.iter().any(|a| a == "--quick");
        Self {
            listeners: list("--listeners", if quick { vec![30] } else { vec![100, 300] }),
            speaking: list("--speaking", if quick { vec![30] } else { vec![100] }),
            removals: number("--removals", if quick { 3 } else { 10 }),
            ears: number("--ears", if quick { 4 } else { 8 }),
            rounds: number("--rounds", if quick { 1 } else { 3 }),
            steady: Duration::from_secs(number("--steady", if quick { 3 } else { 10 }) as u64),
            latency: !args.iter().any(|a| a == "--no-latency"),
            uplink_mbps: value("--uplink-mbps").map_or(10.0, |n| n.parse().expect("a number")),
            hop_ms: value("--hop-ms").map_or(25.0, |n| n.parse().expect("a number")),
            pad: value("--pad").map(|n| n.parse().expect("a number")),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Nodes and rooms

async fn spawn(max_children: u16) -> Node {
    spawn_as(Identity::ephemeral().expect("identity"), max_children).await
}

async fn spawn_as(identity: Identity, max_children: u16) -> Node {
    Node::spawn(
        identity,
        NodeConfig {
            listen: vec!["/ip4/127.0.0.1/udp/0/quic-v1".parse().expect("multiaddr")],
            // Hundreds of nodes on 127.0.0.1: one address, as far as per-address limits go.
            net: NetConfig {
                per_address: None,
                ..NetConfig::default()
            },
            max_children,
            ..NodeConfig::default()
        },
    )
    .await
    .expect("node")
}

/// A host node and a room it hosts.
async fn open_room(
    max_children: u16,
    visibility: Visibility,
    title: &str,
) -> (Node, SigningKey, RoomDescriptor) {
    let identity = Identity::ephemeral().expect("identity");
    let signing = identity.signing_key().clone();
    let host = spawn_as(identity, max_children).await;
    let mut id = [0u8; 16];
    getrandom::fill(&mut id).expect("random room id");
    let descriptor = RoomDescriptor::sign(
        &signing,
        RoomSpec {
            id: RoomId(id),
            title: title.into(),
            visibility,
            recording: RecordingPolicy::default(),
            created_at: earshot_node::clock::now(),
            addrs: host.listen_addrs().await.expect("addrs"),
            limits: earshot_protocol::RoomLimits::default(),
        },
    )
    .expect("descriptor");
    host.host(descriptor.clone(), "host").await.expect("host");
    (host, signing, descriptor)
}

/// A listener link of its own (a bearer capability with a fresh nonce): removing its holder
/// revokes it and nobody else's. (Removing someone revokes the capability it joined with; were
/// every listener's link the same, removing one would take every listener out of the key
/// schedule.)
fn invite(signing: &SigningKey, descriptor: &RoomDescriptor) -> InviteLink {
    let now = earshot_node::clock::now();
    let mut nonce = [0u8; 8];
    getrandom::fill(&mut nonce).expect("random nonce");
    InviteLink {
        starts_at: None,
        capability: Capability::issue(
            signing,
            descriptor.id,
            Grant {
                audience: Audience::Bearer,
                role: Role::Listener,
                not_before: Timestamp(now.as_millis() - 60_000),
                expires_at: now.plus_millis(3_600_000),
                depth: 0,
            },
            nonce,
        )
        .expect("capability"),
        host: descriptor.host,
        bootstrap: descriptor.addrs(),
    }
}

/// Calls `probe` every [`POLL`] until it answers; panics naming `what` after `wait`.
async fn poll<T>(what: &str, wait: Duration, mut probe: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + wait;
    let mut tick = tokio::time::interval(POLL);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if let Some(value) = probe() {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {wait:?} waiting for {what}"
        );
    }
}

/// Polls `done` every [`POLL`] for at most `wait`: whether it came true.
async fn poll_while(wait: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + wait;
    let mut tick = tokio::time::interval(POLL);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    while Instant::now() < deadline {
        tick.tick().await;
        if done() {
            return true;
        }
    }
    false
}

/// The epoch `node` seals with in `room`, if it holds one.
fn epoch_of(node: &Node, room: &RoomId) -> Option<Epoch> {
    node.fanout()
        .keys(room)
        .and_then(|ring| ring.current().cloned())
}

// ---------------------------------------------------------------------------------------------
// Statistics

/// Nearest-rank percentile of `values` (sorted here).
fn percentile(values: &mut [f64], p: f64) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let rank = ((p / 100.0) * values.len() as f64).ceil().max(1.0) as usize;
    values.get(rank.min(values.len()) - 1).copied()
}

fn mean(values: &[f64]) -> f64 {
    values.iter().sum::<f64>() / values.len().max(1) as f64
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// `p50 / p95 / max` of `values` in ms.
fn spread(values: &[f64]) -> String {
    let mut values = values.to_vec();
    let at =
        |values: &mut [f64], p| percentile(values, p).map_or("-".into(), |v| format!("{v:.1}"));
    format!(
        "{} / {} / {}",
        at(&mut values, 50.0),
        at(&mut values, 95.0),
        at(&mut values, 100.0)
    )
}

// ---------------------------------------------------------------------------------------------
// 1. The rekey, end to end

/// One removal.
struct Rekey {
    /// The call → the host holding the fresh epoch.
    host_stepped: Duration,
    /// The call → every remaining listener holding it.
    everyone: Duration,
    /// Each remaining listener: its depth and when it held the fresh epoch (from the call).
    arrivals: Vec<(u16, Duration)>,
    /// The deepest listener.
    depth: u16,
    /// Messages relays skipped for a child whose queue was full, from the removal until the
    /// next.
    skipped: u64,
    /// The host was speaking (sealed frames flowing down the tree as the keys went).
    speaking: bool,
    /// Frames listeners could not open, from the removal until the next, and how many listeners
    /// they were.
    unopened: u64,
    unopened_by: usize,
}

struct RekeyRun {
    rekeys: Vec<Rekey>,
    /// Joins tried again.
    retried: usize,
    /// The keys' bytes for the room's size (computed, not captured): parts, total.
    parts: usize,
    bytes: usize,
    listeners: usize,
    /// Members in the key schedule at the start (listeners, and those `--pad` added).
    schedule: usize,
}

async fn rekeys(listeners: usize, args: &Args) -> RekeyRun {
    let (host, signing, descriptor) =
        open_room(DEFAULT_MAX_CHILDREN, Visibility::Private, "private rekey").await;
    let room = descriptor.id;
    let joins_started = Instant::now();
    let mut members: Vec<Node> = Vec::new();
    // Each listener's events: what closed a room that closed (printed if a rekey fails).
    let mut events = Vec::new();
    let mut retried = 0;
    for i in 0..listeners {
        let node = spawn(DEFAULT_MAX_CHILDREN).await;
        // A join the host did not answer is tried again, as a person would (counted).
        let mut tries = 0;
        while let Err(err) = node
            .join(invite(&signing, &descriptor), &format!("l{i}"))
            .await
        {
            tries += 1;
            eprintln!("\n{listeners}: listener {i}'s join failed ({err}), try {tries}");
            assert!(tries < JOIN_TRIES, "listener {i} could not join");
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        retried += tries;
        events.push(node.subscribe());
        members.push(node);
        eprint!("\r{listeners}: {} joined", i + 1);
    }
    // Everyone attached, counted by the host, holding the host's epoch: settled.
    let mut settled: Option<(u32, Instant)> = None;
    let mut last_line = String::new();
    poll("the room to settle", Duration::from_secs(120), || {
        let host_epoch = epoch_of(&host, &room)?;
        let attached = members
            .iter()
            .filter(|m| {
                m.membership(&room)
                    .is_some_and(|ms| ms.position.borrow().is_some())
            })
            .count();
        let counted = host.tree(&room).map_or(0, |tree| tree.size as usize);
        let keyed = members
            .iter()
            .filter(|m| epoch_of(m, &room).as_ref() == Some(&host_epoch))
            .count();
        let line = format!(
            "\r{attached} attached, the host counts {counted}, {keyed} hold epoch {}   ",
            host_epoch.n
        );
        if line != last_line {
            eprint!("{listeners}: {line}");
            last_line = line;
        }
        if attached < members.len() || counted != members.len() + 1 || keyed < members.len() {
            settled = None;
            return None;
        }
        match settled {
            Some((n, since)) if n == host_epoch.n => (since.elapsed() >= QUIET).then_some(()),
            _ => {
                settled = Some((host_epoch.n, Instant::now()));
                None
            }
        }
    })
    .await;
    eprintln!(
        "\n{listeners}: filled and settled in {:.1} s",
        joins_started.elapsed().as_secs_f64()
    );
    let mut schedule = listeners;
    if let Some(pad) = args.pad {
        let silent: Vec<PeerKey> = (listeners..pad)
            .map(|_| PeerKey::from(&SigningKey::from_bytes(&rand_bytes())))
            .collect();
        schedule = host
            .pad_private_schedule(room, silent)
            .await
            .expect("the host");
        eprintln!("{listeners}: the key schedule holds {schedule} members");
    }
    // Each listener's relay counters, in the order of `members` (its room's audio plane is
    // open from joining: this only hands its counters out; not the host's, whose opening again
    // would restart its beacons). `dropped`: what a child's writer skipped, its queue full;
    // `unopened`: frames it received and could not open. Only the listeners that stay count (a
    // removed one receives frames under the fresh epoch until its parent cuts it off).
    let mut counters: Vec<Arc<FanoutStats>> = members
        .iter()
        .map(|m| m.fanout().open_room(room).1)
        .collect();
    let sum = |counters: &[Arc<FanoutStats>], of: fn(&FanoutStats) -> &AtomicU64| -> u64 {
        counters.iter().map(|c| of(c).load(Ordering::Relaxed)).sum()
    };
    let mut rekeys = Vec::new();
    let mut speaker: Option<tokio::task::JoinHandle<()>> = None;
    let seq = Arc::new(AtomicU32::new(0));
    let phases = if args.speaking.contains(&listeners) {
        2
    } else {
        1
    };
    for round in 0..phases * args.removals {
        let speaking = round >= args.removals;
        if speaking {
            let first = speaker.is_none();
            speaker = Some(shift_phase(speaker.take(), &host, room, &seq).await);
            if first {
                // Every listener hearing the host before the first removal.
                poll("every listener hearing the host", REKEY_WAIT, || {
                    counters
                        .iter()
                        .all(|c| c.received.load(Ordering::Relaxed) >= 50)
                        .then_some(())
                })
                .await;
            }
        }
        // A leaf, a different one each time (spread over the room).
        let leaves: Vec<usize> = (0..members.len())
            .filter(|&i| {
                members[i]
                    .tree(&room)
                    .is_some_and(|tree| tree.children.is_empty())
            })
            .collect();
        let out = leaves[(round * 7) % leaves.len()];
        let removed = members.remove(out);
        counters.remove(out);
        events.remove(out);
        let removed_depth = removed.tree(&room).map_or(0, |tree| tree.depth);
        let depths: Vec<u16> = members
            .iter()
            .map(|m| m.tree(&room).map_or(0, |tree| tree.depth))
            .collect();
        let before = epoch_of(&host, &room).expect("the host's epoch").n;
        let skipped_before = sum(&counters, |c| &c.dropped);
        let unopened_before: Vec<u64> = counters
            .iter()
            .map(|c| c.unopened.load(Ordering::Relaxed))
            .collect();
        let start = Instant::now();
        host.act(
            room,
            ControlBody::Remove {
                target: removed.key(),
                revoke: Vec::new(),
            },
        )
        .await
        .expect("remove");
        let acted = start.elapsed();
        let mut fresh: Option<(Epoch, Duration)> = None;
        let mut held: Vec<Option<Duration>> = vec![None; members.len()];
        let all_held = poll_while(REKEY_WAIT, || {
            let at = start.elapsed();
            if fresh.is_none() {
                fresh = epoch_of(&host, &room)
                    .filter(|epoch| epoch.n > before)
                    .map(|epoch| (epoch, at));
            }
            let Some((epoch, _)) = fresh.as_ref() else {
                return false;
            };
            for (member, held) in members.iter().zip(held.iter_mut()) {
                if held.is_none()
                    && let Some(mine) = epoch_of(member, &room)
                    && mine.n >= epoch.n
                {
                    assert_eq!(&mine, epoch, "a listener's fresh epoch is the host's");
                    *held = Some(at);
                }
            }
            held.iter().all(Option::is_some)
        })
        .await;
        if !all_held {
            // Who is missing it, and where they are.
            for ((member, held), events) in members.iter().zip(&held).zip(events.iter_mut()) {
                if held.is_none() {
                    loop {
                        let event = match events.try_recv() {
                            Ok(event) => event,
                            Err(tokio::sync::broadcast::error::TryRecvError::Lagged(_)) => continue,
                            Err(_) => break,
                        };
                        if matches!(
                            event,
                            earshot_node::Event::Closed { .. } | earshot_node::Event::Error { .. }
                        ) {
                            eprintln!("{listeners}: {}: {event:?}", member.key().short());
                        }
                    }
                    let tree = member.tree(&room);
                    eprintln!(
                        "{listeners}: without it: {} at depth {:?}, parent {:?}, holding {:?}",
                        member.key().short(),
                        tree.as_ref().map(|t| t.depth),
                        tree.as_ref()
                            .and_then(|t| t.path.first().map(|p| p.short().to_string())),
                        epoch_of(member, &room).map(|e| e.n)
                    );
                }
            }
            panic!(
                "timed out after {REKEY_WAIT:?} waiting for every listener holding the fresh epoch"
            );
        }
        let (epoch, host_stepped) = fresh.expect("the host stepped");
        assert!(
            epoch_of(&removed, &room).is_none_or(|theirs| theirs.n < epoch.n),
            "the removed listener holds the fresh epoch"
        );
        let arrivals: Vec<(u16, Duration)> = depths
            .iter()
            .zip(&held)
            .map(|(depth, at)| (*depth, at.expect("held")))
            .collect();
        let everyone = arrivals.iter().map(|(_, at)| *at).max().unwrap_or_default();
        eprintln!(
            "{listeners}: rekey {}/{}{}: epoch {} (a leaf at depth {} removed): acted {:.1} ms, host {:.1} ms, everyone {:.1} ms",
            round + 1,
            phases * args.removals,
            if speaking { " (speaking)" } else { "" },
            epoch.n,
            removed_depth,
            ms(acted),
            ms(host_stepped),
            ms(everyone)
        );
        rekeys.push(Rekey {
            host_stepped,
            everyone,
            arrivals,
            depth: depths.iter().copied().max().unwrap_or(0),
            skipped: 0,
            speaking,
            unopened: 0,
            unopened_by: 0,
        });
        removed.shutdown().await;
        // The removed leaf gone from the host's count before the next removal (pacing only: a
        // tree still moving after a slow rekey may not get there, and the next removal goes
        // ahead after a while).
        let counted = poll_while(REKEY_WAIT, || {
            host.tree(&room).map_or(0, |tree| tree.size as usize) == members.len() + 1
        })
        .await;
        if !counted {
            eprintln!("{listeners}:   the host's count is not back to the room's size; going on");
        }
        let skipped = sum(&counters, |c| &c.dropped) - skipped_before;
        // Frames not opened, and by how many listeners (the removed one's slot is gone from
        // both vectors alike).
        let per_listener: Vec<u64> = counters
            .iter()
            .zip(&unopened_before)
            .map(|(c, before)| c.unopened.load(Ordering::Relaxed) - before)
            .collect();
        let unopened: u64 = per_listener.iter().sum();
        let unopened_by = per_listener.iter().filter(|n| **n > 0).count();
        if let Some(rekey) = rekeys.last_mut() {
            rekey.skipped = skipped;
            rekey.unopened = unopened;
            rekey.unopened_by = unopened_by;
        }
        if skipped + unopened > 0 {
            eprintln!(
                "{listeners}:   messages relays skipped (a child's queue full): {skipped}, frames not opened: {unopened} (by {unopened_by} listeners)"
            );
        }
    }
    if let Some(speaker) = speaker {
        speaker.abort();
    }
    for member in &members {
        member.shutdown().await;
    }
    host.shutdown().await;
    // At the first removal (the schedule shrinks by one a removal).
    let (parts, bytes) = keys_size(schedule - 1);
    RekeyRun {
        rekeys,
        retried,
        parts,
        bytes,
        listeners,
        schedule,
    }
}

/// The host speaks into its room: 80-byte frames every 20 ms (sealed by its relay in a private
/// room), as `audience_scale` does, numbered on from `seq`.
fn speak(host: &Node, room: RoomId, seq: Arc<AtomicU32>) -> tokio::task::JoinHandle<()> {
    let fanout = host.fanout().clone();
    let speaker = SpeakerId::of(&host.key());
    tokio::spawn(async move {
        let mut clock = tokio::time::interval(FRAME_DURATION);
        loop {
            clock.tick().await;
            let seq = seq.fetch_add(1, Ordering::Relaxed);
            fanout.relay(
                &room,
                &AudioFrame {
                    speaker,
                    seq,
                    timestamp: seq.wrapping_mul(960),
                    level: 40,
                    flags: 0,
                    payload: vec![0x78; 80],
                    tag: None,
                },
            );
        }
    })
}

/// The speaker's frames start again at a random point of their 20 ms (the host's 100 ms tick,
/// where the schedule steps, keeps its own phase): what a rekey does to the frames around it
/// depends on where in a frame's 20 ms the host steps, so each removal draws that afresh.
async fn shift_phase(
    speaker: Option<tokio::task::JoinHandle<()>>,
    host: &Node,
    room: RoomId,
    seq: &Arc<AtomicU32>,
) -> tokio::task::JoinHandle<()> {
    if let Some(speaker) = speaker {
        speaker.abort();
    }
    let mut random = [0u8; 2];
    getrandom::fill(&mut random).expect("random");
    let micros = u64::from(u16::from_be_bytes(random)) % FRAME_DURATION.as_micros() as u64;
    tokio::time::sleep(Duration::from_micros(micros)).await;
    speak(host, room, Arc::clone(seq))
}

// ---------------------------------------------------------------------------------------------
// 2. The components of a 1,000-member rekey

/// `n` members' keys, deterministic.
fn member_keys(n: usize) -> Vec<SigningKey> {
    (0..n)
        .map(|i| {
            let mut seed = [0x33u8; 32];
            seed[..8].copy_from_slice(&(i as u64).to_be_bytes());
            SigningKey::from_bytes(&seed)
        })
        .collect()
}

fn fresh_for(members: &[PeerKey], host: &SigningKey) -> Vec<Keys> {
    let epoch = Epoch::new(9, Secret::from_bytes([4; 32]));
    let topic = Secret::from_bytes([6; 32]);
    Keys::fresh(RoomId([1; 16]), &epoch, &topic, members, [8; 32], host)
}

/// 32 random bytes.
fn rand_bytes() -> [u8; 32] {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).expect("random bytes");
    bytes
}

/// A fresh epoch's parts and their encoded bytes for a room of `n` members.
fn keys_size(n: usize) -> (usize, usize) {
    let keys: Vec<PeerKey> = member_keys(n).iter().map(PeerKey::from).collect();
    let parts = fresh_for(&keys, &SigningKey::from_bytes(&[2; 32]));
    (parts.len(), parts.iter().map(|p| p.encode().len()).sum())
}

struct Components {
    /// `Keys::fresh` for 1,000, median.
    seal: Duration,
    parts: usize,
    bytes: usize,
    /// The last member: every part checked and opened, median.
    last_member: Duration,
}

fn components() -> Components {
    let host = SigningKey::from_bytes(&[2; 32]);
    let keys = member_keys(ESTIMATE_MEMBERS);
    let members: Vec<PeerKey> = keys.iter().map(PeerKey::from).collect();
    let median = |reps: usize, f: &mut dyn FnMut()| {
        f();
        let mut times: Vec<Duration> = (0..reps)
            .map(|_| {
                let start = Instant::now();
                f();
                start.elapsed()
            })
            .collect();
        times.sort();
        times[times.len() / 2]
    };
    let seal = median(9, &mut || {
        std::hint::black_box(fresh_for(&members, &host));
    });
    let parts = fresh_for(&members, &host);
    let encoded: Vec<Vec<u8>> = parts.iter().map(Keys::encode).collect();
    let host_key = PeerKey::from(&host);
    let last = keys.last().expect("members");
    let room = RoomId([1; 16]);
    let last_member = median(51, &mut || {
        let mut found = false;
        for bytes in &encoded {
            let part = Keys::decode_verified(bytes, room, &host_key).expect("keys");
            found |= part.open(last).is_some();
        }
        assert!(found, "the last member's entry");
    });
    Components {
        seal,
        parts: parts.len(),
        bytes: encoded.iter().map(Vec::len).sum(),
        last_member,
    }
}

/// Depth of a full tree of `members` below a host, each node feeding `fan_out`.
fn full_depth(members: usize, fan_out: usize) -> u16 {
    let (mut depth, mut placed, mut level) = (0u16, 0usize, 1usize);
    while placed < members {
        depth += 1;
        level *= fan_out;
        placed += level;
    }
    depth
}

// ---------------------------------------------------------------------------------------------
// 3. Mouth-to-ear, public and private

/// One room's listeners: each one's steady-state latencies (ms).
struct Ears {
    private: bool,
    listeners: Vec<Vec<f64>>,
    depths: Vec<u16>,
    concealed: u64,
    played: u64,
}

async fn ears(private: bool, count: usize, steady: Duration) -> Ears {
    let visibility = if private {
        Visibility::Private
    } else {
        Visibility::Unlisted
    };
    let max_children = u16::try_from(count).unwrap_or(u16::MAX);
    let (host, signing, descriptor) = open_room(max_children, visibility, "ears").await;
    let room = descriptor.id;
    let host_audio = AudioSession::host(
        &host,
        host.fanout(),
        room,
        Input::Sine(440),
        Output::Null,
        DEFAULT_FORWARDED,
        false,
    )
    .expect("host audio");
    let mut listeners = Vec::new();
    for i in 0..count {
        let node = spawn(1).await;
        let view = node
            .join(invite(&signing, &descriptor), &format!("e{i}"))
            .await
            .expect("join");
        let audio = AudioSession::member(
            &node,
            node.fanout(),
            room,
            view.descriptor.host.to_peer_id().expect("host key"),
            Input::Silence,
            Output::Null,
        )
        .expect("member audio");
        listeners.push((node, audio));
    }
    for (node, audio) in &listeners {
        poll("the first frame played", Duration::from_secs(10), || {
            (audio.status().playback.played > 0).then_some(())
        })
        .await;
        assert_eq!(
            node.fanout().keys(&room).is_some(),
            private,
            "keys in a private room only"
        );
    }
    // Snapshots once each player has played the warm-up, then the steady state (the status is
    // refreshed every 10 chunks: multiples of 10 make the windows exact).
    let chunks = |d: Duration| (d.as_millis() / FRAME_DURATION.as_millis()) as u64;
    let (warm, end) = (chunks(WARMUP), chunks(WARMUP + steady));
    let mut snapshots: Vec<[Option<PlayerStatus>; 2]> = vec![[None, None]; listeners.len()];
    poll(
        "the steady state",
        WARMUP + steady + Duration::from_secs(10),
        || {
            for ((_, audio), snapshot) in listeners.iter().zip(snapshots.iter_mut()) {
                let status = audio.status().playback;
                for (slot, chunk) in snapshot.iter_mut().zip([warm, end]) {
                    if slot.is_none() && status.chunks_played >= chunk {
                        *slot = Some(status.clone());
                    }
                }
            }
            snapshots
                .iter()
                .flatten()
                .all(Option::is_some)
                .then_some(())
        },
    )
    .await;
    let depths = listeners
        .iter()
        .map(|(_, audio)| audio.status().position.map_or(0, |p| p.depth))
        .collect();
    let (mut concealed, mut played) = (0, 0);
    let mut latencies = Vec::new();
    for ((node, audio), [first, last]) in listeners.into_iter().zip(snapshots) {
        let (first, last) = (first.expect("snapshot"), last.expect("snapshot"));
        latencies.push(since(&last.latency, &first.latency));
        concealed += last.concealed - first.concealed;
        played += last.played - first.played;
        audio.finish().await.expect("finish the listener's audio");
        node.shutdown().await;
    }
    drop(host_audio);
    let _ = host.act(room, ControlBody::RoomEnded).await;
    host.shutdown().await;
    Ears {
        private,
        listeners: latencies,
        depths,
        concealed,
        played,
    }
}

/// Every latency a histogram holds, in ms, sorted, read back through `percentile` (its only way
/// out; as in `audio_path`): the value at each rank, a run of equal values at a time.
fn recorded(latency: &Latency) -> Vec<usize> {
    let n = latency.count;
    let at = |rank: u64| latency.percentile((rank as f64 - 0.5) * 100.0 / n as f64);
    let mut values = Vec::with_capacity(usize::try_from(n).unwrap_or(0));
    let mut rank = 1;
    while rank <= n {
        let Some(value) = at(rank) else { break };
        let (mut low, mut high) = (rank, n);
        while low < high {
            let mid = (low + high).div_ceil(2);
            if at(mid) == Some(value) {
                low = mid;
            } else {
                high = mid - 1;
            }
        }
        values.extend(std::iter::repeat_n(
            value as usize,
            (low - rank + 1) as usize,
        ));
        rank = low + 1;
    }
    values
}

/// The latencies `later` recorded after `earlier` (two snapshots of one histogram), in ms.
fn since(later: &Latency, earlier: &Latency) -> Vec<f64> {
    let mut counts = vec![0u64; 2048];
    for ms in recorded(later) {
        counts[ms] += 1;
    }
    for ms in recorded(earlier) {
        counts[ms] = counts[ms].saturating_sub(1);
    }
    counts
        .iter()
        .enumerate()
        .flat_map(|(ms, n)| std::iter::repeat_n(ms as f64, *n as usize))
        .collect()
}

// ---------------------------------------------------------------------------------------------
// The tables

fn print_rekeys(runs: &[RekeyRun]) {
    println!();
    println!(
        "Rekey after a removal, end to end: a private room of a host and N listeners \
         (in-process nodes, loopback QUIC, fan-out {DEFAULT_MAX_CHILDREN}), one leaf removed at a \
         time; from the host's `act(Remove)` to each listener's keyring holding the fresh epoch \
         (polled every ms). The room shrinks by one each removal."
    );
    println!();
    println!(
        "| N | members in the schedule | room | keys: parts ({SEALED_PER_PART} members a part), bytes | removals | removal → everyone holds it (p50 / p95 / max ms) | removal → the host holds it | the host → everyone | a listener (all removals) | later than 1 s | deepest | joins retried | relays' skips | frames not opened |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    for (run, speaking) in runs.iter().flat_map(|run| [(run, false), (run, true)]) {
        let rekeys: Vec<&Rekey> = run
            .rekeys
            .iter()
            .filter(|r| r.speaking == speaking)
            .collect();
        if rekeys.is_empty() {
            continue;
        }
        let of = |f: &dyn Fn(&Rekey) -> f64| rekeys.iter().map(|r| f(r)).collect::<Vec<f64>>();
        let listener: Vec<f64> = rekeys
            .iter()
            .flat_map(|r| r.arrivals.iter().map(|(_, at)| ms(*at)))
            .collect();
        let late = rekeys
            .iter()
            .flat_map(|r| {
                r.arrivals.iter().filter(move |(_, at)| {
                    at.saturating_sub(r.host_stepped) > Duration::from_secs(1)
                })
            })
            .count();
        println!(
            "| {} | {} | {} | {}, {} B | {} | {} | {} | {} | {} | {late} | {} | {} | {} | {} |",
            run.listeners,
            run.schedule,
            if speaking { "speaking" } else { "idle" },
            run.parts,
            run.bytes,
            rekeys.len(),
            spread(&of(&|r| ms(r.everyone))),
            spread(&of(&|r| ms(r.host_stepped))),
            spread(&of(&|r| ms(r.everyone.saturating_sub(r.host_stepped)))),
            spread(&listener),
            rekeys.iter().map(|r| r.depth).max().unwrap_or(0),
            run.retried,
            rekeys.iter().map(|r| r.skipped).sum::<u64>(),
            {
                let frames: u64 = rekeys.iter().map(|r| r.unopened).sum();
                let hit = rekeys.iter().filter(|r| r.unopened > 0).count();
                let by = rekeys.iter().map(|r| r.unopened_by).max().unwrap_or(0);
                if frames == 0 {
                    "0".to_owned()
                } else {
                    format!("{frames} (in {hit} rekeys; at most {by} listeners in one)")
                }
            },
        );
    }
    println!();
    println!(
        "Target (issue 14): ≤ 2,000 ms for 1,000 members. `removal → the host holds it` is the wait \
         for the host's next 100 ms tick plus sealing to every member; `the host → everyone` is \
         the keys going down the tree and each listener checking and opening them. `later than \
         1 s`: listeners that held it more than a second after the host (most likely they \
         missed the keys and asked the host). `relays' skips`: messages a listener relaying to children skipped, \
         a child's queue full (the host's own are not counted). `speaking`: the same room, the \
         host sending 80-byte frames every 20 ms (sealed) throughout; `frames not opened`: frames \
         the listeners that stay received and could not open, from each removal to the next."
    );
    println!();
    println!("By depth: from the host holding the fresh epoch to a listener holding it.");
    println!();
    println!("| N | room | depth | listeners × removals | p50 / p95 / max ms |");
    println!("|---|---|---|---|---|");
    for (run, speaking) in runs.iter().flat_map(|run| [(run, false), (run, true)]) {
        let rekeys: Vec<&Rekey> = run
            .rekeys
            .iter()
            .filter(|r| r.speaking == speaking)
            .collect();
        let deepest = rekeys.iter().map(|r| r.depth).max().unwrap_or(0);
        for depth in 1..=deepest {
            let at: Vec<f64> = rekeys
                .iter()
                .flat_map(|r| {
                    r.arrivals
                        .iter()
                        .filter(|(d, _)| *d == depth)
                        .map(move |(_, at)| ms(at.saturating_sub(r.host_stepped)))
                })
                .collect();
            println!(
                "| {} | {} | {depth} | {} | {} |",
                run.listeners,
                if speaking { "speaking" } else { "idle" },
                at.len(),
                spread(&at)
            );
        }
    }
}

/// Per hop on loopback, from part 1: the median, over removals, of (the deepest level's median
/// arrival after the host stepped) / its depth.
fn hop_time(run: &RekeyRun) -> Option<(Duration, u16)> {
    let mut per_hop = Vec::new();
    let mut deepest = 0;
    for rekey in &run.rekeys {
        let depth = rekey.depth;
        deepest = deepest.max(depth);
        let mut at: Vec<f64> = rekey
            .arrivals
            .iter()
            .filter(|(d, _)| *d == depth)
            .map(|(_, at)| ms(at.saturating_sub(rekey.host_stepped)))
            .collect();
        if let Some(p50) = percentile(&mut at, 50.0) {
            per_hop.push(p50 / f64::from(depth.max(1)));
        }
    }
    percentile(&mut per_hop, 50.0).map(|ms| (Duration::from_secs_f64(ms / 1000.0), deepest))
}

fn print_estimate(run: &RekeyRun, parts: &Components, args: &Args) {
    let fan_out = usize::from(DEFAULT_MAX_CHILDREN);
    let ideal_here = full_depth(run.listeners, fan_out);
    let ideal = full_depth(ESTIMATE_MEMBERS, fan_out);
    let Some((hop, measured_depth)) = hop_time(run) else {
        return;
    };
    // As much deeper than a full tree as the measured one was.
    let depth = ((f64::from(ideal) * f64::from(measured_depth) / f64::from(ideal_here)).ceil()
        as u16)
        .max(ideal);
    let relay_upload = parts.bytes * fan_out;
    let upload_time = Duration::from_secs_f64(relay_upload as f64 * 8.0 / (args.uplink_mbps * 1e6));
    let part_upload = upload_time / u32::try_from(parts.parts.max(1)).unwrap_or(1);
    let one_way = Duration::from_secs_f64(args.hop_ms / 1000.0);
    let fixed = TICK + parts.seal + parts.last_member;
    let loopback = fixed + hop * u32::from(depth);
    // Each relay passes each part on as it comes (store-and-forward per part, pipelined over
    // the parts); a relay that waited for all of them would pay the whole upload per hop.
    let pipelined = fixed
        + (one_way + part_upload) * u32::from(depth)
        + part_upload * u32::try_from(parts.parts.saturating_sub(1)).unwrap_or(0);
    let whole = fixed + (one_way + upload_time) * u32::from(depth);
    println!();
    println!("1,000 members: an ESTIMATE from measured components (no 1,000-node room was run)");
    println!();
    println!("| component | value | from |");
    println!("|---|---|---|");
    println!(
        "| the removal waits for the host's tick | ≤ {:.0} ms | the event loop's timer |",
        ms(TICK)
    );
    println!(
        "| the host seals a fresh epoch to 1,000 (Keys::fresh) | {:.1} ms | measured here, median of 9 |",
        ms(parts.seal)
    );
    println!(
        "| keys down the tree | {} parts, {} B; a relay of {fan_out} children uploads {} B | computed |",
        parts.parts, parts.bytes, relay_upload
    );
    println!(
        "| tree depth at fan-out {fan_out} | {depth} (a full tree: {ideal}) | the tree of {} here was {measured_depth} deep, a full one {ideal_here} |",
        run.listeners
    );
    println!(
        "| a hop on loopback | {:.2} ms | measured above: the deepest level's median / depth, median over removals ({} B of keys) |",
        ms(hop),
        run.bytes
    );
    println!(
        "| the last member checks and opens every part | {:.2} ms | measured here, median of 51 |",
        ms(parts.last_member)
    );
    println!(
        "| **removal → everyone, loopback** | **{:.0} ms** | tick + seal + depth × hop + open |",
        ms(loopback)
    );
    println!(
        "| **removal → everyone, {:.0} Mbit/s uplinks, {:.0} ms a hop** | **{:.0} ms** ({:.0} ms if a relay waited for every part) | assumed links: each part uploaded to each child, pipelined over parts |",
        args.uplink_mbps,
        args.hop_ms,
        ms(pipelined),
        ms(whole)
    );
    println!();
    println!(
        "Target: ≤ {} ms ({}). The estimate leaves out QUIC's congestion window (a connection \
         that carried only audio starts a burst at its initial window), and takes each member's \
         CPU as its own (here they all share one process).",
        REKEY_TARGET.as_millis(),
        if pipelined.max(loopback) <= REKEY_TARGET {
            "the pipelined and loopback lines meet it"
        } else {
            "MISSED"
        }
    );
}

fn print_ears(rooms: &[Ears], steady: Duration) {
    println!();
    println!(
        "Mouth-to-ear, public vs private: {} rooms alternating, each a host speaking a tone and {} \
         listeners at depth 1; {:.0} s steady state after {:.0} s warm-up",
        rooms.len(),
        rooms.first().map_or(0, |r| r.listeners.len()),
        steady.as_secs_f64(),
        WARMUP.as_secs_f64()
    );
    println!();
    println!(
        "| room | listeners | frames | mouth-to-ear p50 / p95 / max ms (all frames) | mean of listeners' p50 | concealed |"
    );
    println!("|---|---|---|---|---|---|");
    let mut means = [0.0; 2];
    for (i, private) in [false, true].into_iter().enumerate() {
        let of: Vec<&Ears> = rooms.iter().filter(|r| r.private == private).collect();
        let all: Vec<f64> = of
            .iter()
            .flat_map(|r| r.listeners.iter().flatten().copied())
            .collect();
        let p50s: Vec<f64> = of
            .iter()
            .flat_map(|r| r.listeners.iter())
            .filter_map(|l| percentile(&mut l.clone(), 50.0))
            .collect();
        means[i] = mean(&p50s);
        let deeper = of
            .iter()
            .flat_map(|r| r.depths.iter())
            .filter(|d| **d != 1)
            .count();
        let played: u64 = of.iter().map(|r| r.played).sum();
        let concealed: u64 = of.iter().map(|r| r.concealed).sum();
        println!(
            "| {} | {}{} | {} | {} | {:.1} ms | {:.2} % |",
            if private { "private" } else { "public" },
            p50s.len(),
            if deeper > 0 {
                format!(" ({deeper} not at depth 1)")
            } else {
                String::new()
            },
            all.len(),
            spread(&all),
            means[i],
            100.0 * concealed as f64 / (played + concealed).max(1) as f64
        );
    }
    let change = means[1] - means[0];
    println!();
    println!(
        "Private − public, mean of listeners' p50: {change:+.1} ms (target: ≤ +{LATENCY_TARGET_MS:.0} ms: {})",
        if change <= LATENCY_TARGET_MS {
            "ok"
        } else {
            "MISSED"
        }
    );
}

fn main() {
    // `EARSHOT_BENCH_LOG=FILTER` logs the nodes (all in this process) to standard error.
    if let Ok(filter) = std::env::var("EARSHOT_BENCH_LOG") {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
            .with_ansi(false)
            .with_writer(std::io::stderr)
            .init();
    }
    let args = Args::parse();
    let started = Instant::now();
    eprintln!("components: Keys::fresh for {ESTIMATE_MEMBERS}, the last member's opening");
    let parts = components();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let runs: Vec<RekeyRun> = args
        .listeners
        .iter()
        .map(|&n| runtime.block_on(rekeys(n, &args)))
        .collect();
    let mut rooms = Vec::new();
    if args.latency {
        runtime.block_on(async {
            for round in 0..args.rounds {
                for private in [false, true] {
                    eprintln!(
                        "ears: round {}/{}, {} room",
                        round + 1,
                        args.rounds,
                        if private { "private" } else { "public" }
                    );
                    rooms.push(ears(private, args.ears, args.steady).await);
                }
            }
        });
    }
    runtime.shutdown_background();
    print_rekeys(&runs);
    if let Some(largest) = runs.iter().max_by_key(|run| run.listeners) {
        print_estimate(largest, &parts, &args);
    }
    if !rooms.is_empty() {
        print_ears(&rooms, args.steady);
    }
    println!();
    println!(
        "({:.0} s in all; one process on this machine's cores, so every node's CPU is shared)",
        started.elapsed().as_secs_f64()
    );
}
