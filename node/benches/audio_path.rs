//! The end-to-end audio path on 127.0.0.1 (QUIC), in one process, with real [`AudioSession`]s:
//! the host speaks (a tone, or a WAV file of clicks), members listen (into WAV files in a
//! temporary directory, or nowhere).
//!
//! `cargo bench -p earshot-node --bench audio_path` (about 35 s once built). After `--`:
//! `--quick` (fewer joins and repairs, a shorter steady state), `--joins N`, `--repairs N`,
//! `--steady SECONDS`. Prints one table.
//!
//! 1. **Join → first audio.** One room (default fan-out, so later members sit deeper) grows by
//!    one member at a time: from calling `Node::join` with the link in hand to the member's
//!    player writing its first decoded audio. The relay's `received` counter is polled every
//!    millisecond for the first frame; the player starts its 20 ms slots on that frame, so the
//!    first non-silent 20 ms chunk `k` of its output WAV was written `k × 20 ms` later.
//! 2. **Repair.** A chain host → A → B (one child each). A runs on its own tokio runtime,
//!    standing for its own process. *Crash*: that runtime is shut down in place; its tasks are
//!    dropped unpolled, so A sends nothing more, not even a QUIC close, and B sees what it would
//!    see of a killed process: silence. *Graceful*: `AudioSession::finish` on A, which hands B
//!    over first. The gap is the longest time B's relay went without a frame (polled every
//!    millisecond): the last frame from A to the first from the new parent. B's audio events
//!    split a crash's gap into noticing the silence, asking the host again, and the first frame.
//! 3. **Mouth-to-ear latency.** A chain host → L1 → L2 → L3 (one child each). Each player's
//!    latency histogram (capture timestamp → the chunk holding the frame being written), minus
//!    its first [`WARMUP`] (the jitter buffer's cautious start): `Latency` only exposes `count`
//!    and `percentile`, so each snapshot's samples are read back rank by rank (binary search over
//!    runs of equal values) and the two snapshots subtracted. The same on every status refresh
//!    (200 ms) tells when the cautious start's extra delay went. Twice: the host speaking clicks
//!    over silence (pauses, like speech), then a continuous tone. The clicks cross-check the
//!    histogram independently: a click's onset is found in the host's input and in each
//!    member's output WAV, and placed in time by when the host's source and the member's player
//!    started (`Instant`s taken here, not the frames' timestamps). That includes the codec's own
//!    delay (Opus look-ahead), which the histogram does not see; it is measured separately by
//!    encoding and decoding the clicks directly.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use earshot_node::audio::codec::{VoiceDecoder, VoiceEncoder};
use earshot_node::audio::io::{Input, Latency, Output, PlayerStatus};
use earshot_node::audio::signal::sine;
use earshot_node::audio::{FRAME_DURATION, FRAME_SAMPLES, SAMPLE_RATE, wav};
use earshot_node::fanout::Fanout;
use earshot_node::identity::Identity;
use earshot_node::net::NetConfig;
use earshot_node::node::{DEFAULT_MAX_CHILDREN, Node, NodeConfig, RoomView};
use earshot_node::session::{AudioEvent, AudioSession, Position};
use earshot_protocol::loudest::DEFAULT_FORWARDED;
use earshot_protocol::room::RoomSpec;
use earshot_protocol::{
    Audience, Capability, ControlBody, Grant, InviteLink, RecordingPolicy, Role, RoomDescriptor,
    RoomId, Timestamp, Visibility,
};
use tokio::sync::broadcast;
use tokio::time::MissedTickBehavior;

/// How often counters and statuses are polled.
const POLL: Duration = Duration::from_millis(1);
/// The longest any single wait may take before the bench gives up.
const WAIT: Duration = Duration::from_secs(10);
/// Frames B must have heard from its new parent before a repair counts as done.
const RESUMED_FRAMES: usize = 10;
/// How long B's frames are traced before its parent goes.
const BASELINE: Duration = Duration::from_millis(100);
/// The jitter buffer's cautious start, left out of the latency histograms.
const WARMUP: Duration = Duration::from_secs(3);
/// A click: a 1 kHz burst this long, every [`CLICK_EVERY`], at this amplitude.
const CLICK: Duration = Duration::from_millis(30);
const CLICK_EVERY: Duration = Duration::from_millis(400);
const CLICK_AMPLITUDE: f32 = 0.5;
/// A click starts at the first sample above this, after [`CLICK_QUIET`] below it.
const CLICK_THRESHOLD: f32 = 0.25;
const CLICK_QUIET: Duration = Duration::from_millis(200);
/// Any output sample above this is audio (the player writes exact zeros before it starts).
const AUDIBLE: f32 = 0.01;

/// Targets from the issue.
const JOIN_TARGET: Duration = Duration::from_millis(500);
const CRASH_TARGET: Duration = Duration::from_millis(200);
/// A graceful departure loses nothing: B's longest wait stays about one frame.
const GRACEFUL_TARGET: Duration = Duration::from_millis(40);
const DEPTH1_TARGET_MS: f64 = 60.0;
const PER_HOP_TARGET_MS: f64 = 5.0;

fn main() {
    let args = Args::parse();
    let started = Instant::now();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let dir = tempfile::tempdir().expect("temporary directory");
    let mut table = Table::default();
    runtime.block_on(async {
        eprintln!("joins: {} members, one at a time", args.joins);
        let joins = join_to_first_audio(args.joins, dir.path()).await;
        table.joins(&joins);

        let host = Host::start(1).await;
        for departure in [Departure::Crash, Departure::Graceful] {
            let mut repairs = Vec::new();
            for i in 0..args.repairs {
                eprint!("\rrepairs ({departure:?}): {}/{}", i + 1, args.repairs);
                repairs.push(repair(&host, departure).await);
            }
            eprintln!();
            table.repairs(departure, &repairs);
        }
        host.node.shutdown().await;

        let clicks_path = dir.path().join("clicks.wav");
        let duration = WARMUP + args.steady + Duration::from_secs(4);
        let clicks = clicks(duration);
        wav::write(&clicks_path, &clicks).expect("write the clicks");
        eprintln!("latency: clicks, chain of 3");
        let chain = latency_chain(Input::Wav(clicks_path), args.steady, Some(dir.path())).await;
        let codec = codec_delay_ms(&clicks);
        table.latency("clicks", &chain, Some((&clicks, codec)));
        eprintln!("latency: tone, chain of 3");
        let chain = latency_chain(Input::Sine(440), args.steady, None).await;
        table.latency("tone", &chain, None);
    });
    runtime.shutdown_background();
    table.print(&args, started.elapsed());
}

/// Command-line options (anything else, such as cargo's `--bench`, is ignored).
#[derive(Debug)]
struct Args {
    joins: usize,
    repairs: usize,
    /// How long the steady-state latency is measured after [`WARMUP`].
    steady: Duration,
}

impl Args {
    fn parse() -> Self {
        let args: Vec<String> = std::env::args().collect();
        let value = |name: &str| {
            args.iter()
                .position(|a| a == name)
                .and_then(|i| args.get(i + 1))
                .and_then(|n| n.parse().ok())
        };
        let quick = args.iter().any(|a| a == "--quick");
        Self {
            joins: value("--joins").unwrap_or(if quick { 6 } else { 20 }),
            repairs: value("--repairs").unwrap_or(if quick { 3 } else { 10 }),
            steady: Duration::from_secs(
                value("--steady").map_or(if quick { 2 } else { 5 }, |s: usize| s as u64),
            ),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Nodes, rooms, processes

async fn spawn_node(max_children: u16) -> Node {
    spawn_node_as(Identity::ephemeral().expect("identity"), max_children).await
}

async fn spawn_node_as(identity: Identity, max_children: u16) -> Node {
    Node::spawn(
        identity,
        NodeConfig {
            listen: vec!["/ip4/127.0.0.1/udp/0/quic-v1".parse().expect("multiaddr")],
            bootstrap: Vec::new(),
            net: NetConfig::default(),
            max_children,
            upload_kbps: None,
            relays: Vec::new(),
            reachability: Default::default(),
            tree_by_hand: false,
            misbehave: None,
            capture: None,
            unchecked_audio: false,
        },
    )
    .await
    .expect("node")
}

/// A node that hosts rooms, with its audio plane.
#[derive(Debug)]
struct Host {
    node: Node,
    signing: ed25519_dalek::SigningKey,
    relay: Fanout,
}

/// A room opened for one measurement: a listener link and the host's audio.
#[derive(Debug)]
struct Room {
    id: RoomId,
    link: InviteLink,
    audio: AudioSession,
    /// Just after the host's source started: the input's first sample was "captured" a frame
    /// before (frame `n` is sent at start + n × 20 ms and holds the 20 ms before it).
    speaking_since: Instant,
}

impl Host {
    async fn start(max_children: u16) -> Self {
        let identity = Identity::ephemeral().expect("identity");
        let signing = identity.signing_key().clone();
        let node = spawn_node_as(identity, max_children).await;
        let relay = node.fanout().clone();
        Self {
            node,
            signing,
            relay,
        }
    }

    /// Opens a new room where the host speaks `input` at once.
    async fn open(&self, input: Input) -> Room {
        let now = earshot_node::clock::now();
        let mut id = [0u8; 16];
        getrandom::fill(&mut id).expect("random room id");
        let descriptor = RoomDescriptor::sign(
            &self.signing,
            RoomSpec {
                id: RoomId(id),
                title: "Audio path".into(),
                visibility: Visibility::Unlisted,
                recording: RecordingPolicy::default(),
                created_at: now,
                addrs: self.node.listen_addrs().await.expect("listen addresses"),
                limits: earshot_protocol::RoomLimits::default(),
            },
        )
        .expect("descriptor");
        self.node
            .host(descriptor.clone(), "host")
            .await
            .expect("host the room");
        let mut nonce = [0u8; 8];
        getrandom::fill(&mut nonce).expect("random nonce");
        let grant = Grant {
            audience: Audience::Bearer,
            role: Role::Listener,
            not_before: Timestamp(now.as_millis() - 60_000),
            expires_at: now.plus_millis(3_600_000),
            depth: 0,
        };
        let link = InviteLink {
            starts_at: None,
            capability: Capability::issue(&self.signing, descriptor.id, grant, nonce)
                .expect("capability"),
            host: descriptor.host,
            bootstrap: descriptor.addrs(),
        };
        let audio = AudioSession::host(
            &self.node,
            &self.relay,
            descriptor.id,
            input,
            Output::Null,
            DEFAULT_FORWARDED,
            false,
        )
        .expect("host audio");
        Room {
            id: descriptor.id,
            link,
            audio,
            speaking_since: Instant::now(),
        }
    }

    async fn close(&self, room: Room) {
        drop(room.audio);
        let _ = self.node.act(room.id, ControlBody::RoomEnded).await;
    }
}

/// A joined member's audio, as the CLI starts it: its own audio plane and a session that finds
/// a place in the tree. Must run on the member's runtime (it spawns tasks).
fn listen(node: &Node, view: &RoomView, output: Output) -> AudioSession {
    let relay = node.fanout().clone();
    let host = view.descriptor.host.to_peer_id().expect("host key");
    AudioSession::member(
        node,
        &relay,
        view.descriptor.id,
        host,
        Input::Silence,
        output,
    )
    .expect("member audio")
}

/// A tokio runtime standing for one process, so that a node can die as a killed process does:
/// [`Process::kill`] stops its tasks in place, and nothing more leaves it (no goodbye, no QUIC
/// close). Dropping the node's handles instead would close its streams and connections.
#[derive(Debug)]
struct Process(tokio::runtime::Runtime);

impl Process {
    fn new(name: &str) -> Self {
        Self(
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .thread_name(name)
                .enable_all()
                .build()
                .expect("process runtime"),
        )
    }

    /// Runs `future` in this process and waits for it.
    async fn run<T: Send + 'static>(
        &self,
        future: impl std::future::Future<Output = T> + Send + 'static,
    ) -> T {
        self.0.spawn(future).await.expect("task in the process")
    }

    fn kill(self) {
        self.0.shutdown_background();
    }
}

/// Calls `probe` every [`POLL`] until it answers; panics naming `what` after [`WAIT`].
async fn poll<T>(what: &str, probe: impl FnMut() -> Option<T>) -> T {
    poll_for(what, WAIT, probe).await
}

/// [`poll`], giving up after `wait`.
async fn poll_for<T>(what: &str, wait: Duration, mut probe: impl FnMut() -> Option<T>) -> T {
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

// ---------------------------------------------------------------------------------------------
// 1. Join → first audio

/// One member's way in, each from calling `Node::join`.
#[derive(Debug, Clone, Copy)]
struct JoinTimes {
    /// `Node::join` returned (admitted, snapshot in hand).
    joined: Duration,
    /// The host named a parent (the first `AudioEvent::Attached`).
    attached: Duration,
    first_frame: Duration,
    /// The player wrote its first decoded audio.
    first_played: Duration,
    depth: u16,
    /// Parents lost before the first frame (each costs a re-attachment).
    moves: usize,
}

async fn join_to_first_audio(count: usize, dir: &Path) -> Vec<JoinTimes> {
    let host = Host::start(DEFAULT_MAX_CHILDREN).await;
    let room = host.open(Input::Sine(440)).await;
    let mut members = Vec::new();
    for i in 0..count {
        let node = spawn_node(DEFAULT_MAX_CHILDREN).await;
        let output = dir.join(format!("join-{i}.wav"));
        let start = Instant::now();
        let view = node
            .join(room.link.clone(), &format!("m{i}"))
            .await
            .expect("join");
        let joined = start.elapsed();
        let audio = listen(&node, &view, Output::Wav(output.clone()));
        let mut events = audio.subscribe();
        let (mut attached, mut moves) = (None, 0);
        let first_frame = poll("the first frame", || {
            while let Ok(event) = events.try_recv() {
                match event {
                    AudioEvent::Attached { depth, .. } if attached.is_none() => {
                        attached = Some((start.elapsed(), depth));
                    }
                    AudioEvent::Lost { .. } => moves += 1,
                    AudioEvent::Attached { .. } => {}
                }
            }
            (audio.status().received > 0).then(|| start.elapsed())
        })
        .await;
        let (attached, depth) = attached.unwrap_or((first_frame, 0));
        let times = JoinTimes {
            joined,
            attached,
            first_frame,
            first_played: first_frame,
            depth,
            moves,
        };
        members.push((node, audio, output, times));
    }
    // Everyone has played something (the status is refreshed every 200 ms) before the files are
    // finished, deepest first so that nobody waits to hand children over.
    for (_, audio, _, _) in &members {
        poll("the first frame played", || {
            (audio.status().playback.played > 0).then_some(())
        })
        .await;
    }
    let mut times = Vec::new();
    for (node, audio, output, mut t) in members.into_iter().rev() {
        audio.finish().await.expect("finish the member's audio");
        node.shutdown().await;
        let samples = wav::read(&output).expect("read the member's output");
        let chunk = samples
            .chunks(FRAME_SAMPLES)
            .position(|chunk| chunk.iter().any(|s| s.abs() > AUDIBLE))
            .expect("the member played audio");
        t.first_played = t.first_frame + FRAME_DURATION * u32::try_from(chunk).unwrap_or(0);
        times.push(t);
    }
    times.reverse();
    host.close(room).await;
    host.node.shutdown().await;
    times
}

// ---------------------------------------------------------------------------------------------
// 2. Repair

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Departure {
    Crash,
    Graceful,
}

/// One repair at B.
#[derive(Debug, Clone)]
struct RepairTimes {
    /// The longest B went without a frame once A started to go.
    gap: Duration,
    /// Last frame from A → B gives A up (`AudioEvent::Lost`).
    detect: Option<Duration>,
    /// Lost → the host named a new parent (`AudioEvent::Attached`).
    reattach: Option<Duration>,
    /// Attached → the first frame from the new parent (crash only: a leaving parent keeps
    /// feeding meanwhile).
    resume: Option<Duration>,
    /// Frames B's player never received, slots it concealed.
    lost: u64,
    concealed: u64,
    reason: String,
}

/// B's frame counter and audio events, with when each was seen.
#[derive(Debug, Default)]
struct Trace {
    frames: Vec<(Instant, u64)>,
    events: Vec<(Instant, AudioEvent)>,
}

impl Trace {
    /// Polls `audio` until `done`.
    async fn follow(
        &mut self,
        what: &str,
        audio: &AudioSession,
        events: &mut broadcast::Receiver<AudioEvent>,
        mut done: impl FnMut(&Trace) -> bool,
    ) {
        poll(what, || {
            let now = Instant::now();
            while let Ok(event) = events.try_recv() {
                self.events.push((now, event));
            }
            let received = audio.status().received;
            if self.frames.last().is_none_or(|(_, last)| *last != received) {
                self.frames.push((now, received));
            }
            done(self).then_some(())
        })
        .await;
    }

    fn attached_after(&self, after: Instant) -> Option<Instant> {
        self.events
            .iter()
            .find(|(at, event)| *at >= after && matches!(event, AudioEvent::Attached { .. }))
            .map(|(at, _)| *at)
    }

    /// Whether B has been attached anew and heard a few frames since.
    fn resumed(&self, trigger: Instant) -> bool {
        self.attached_after(trigger).is_some_and(|attached| {
            self.frames.iter().filter(|(at, _)| *at > attached).count() >= RESUMED_FRAMES
        })
    }
}

async fn repair(host: &Host, departure: Departure) -> RepairTimes {
    let room = host.open(Input::Sine(440)).await;
    let a = Process::new("earshot-a");
    let link = room.link.clone();
    let (a_node, a_audio) = a
        .run(async move {
            let node = spawn_node(1).await;
            let view = node.join(link, "a").await.expect("A joins");
            let audio = listen(&node, &view, Output::Null);
            (node, audio)
        })
        .await;
    poll("A hearing the host", || {
        (a_audio.status().received > 0).then_some(())
    })
    .await;
    // A admits B by the ticket the host gives B (listeners do not hear of each other's joins).
    let b_node = spawn_node(1).await;
    let view = b_node.join(room.link.clone(), "b").await.expect("B joins");
    let b_audio = listen(&b_node, &view, Output::Null);
    let under_a = Some(Position {
        parent: a_node.peer_id(),
        depth: 2,
    });
    poll("B under A, hearing", || {
        let status = b_audio.status();
        (status.position == under_a && status.received >= 10).then_some(())
    })
    .await;

    let mut events = b_audio.subscribe();
    let before = b_audio.status().playback;
    let mut trace = Trace::default();
    let baseline_end = Instant::now() + BASELINE;
    trace
        .follow("the baseline", &b_audio, &mut events, |_| {
            Instant::now() >= baseline_end
        })
        .await;
    let trigger = Instant::now();
    let leaving = match departure {
        Departure::Crash => {
            a.kill();
            drop(a_audio);
            None
        }
        Departure::Graceful => {
            // A leaves the room as a person does (`/leave`): its place is free at once and its
            // children are handed over (finishing its audio alone would keep A in the tree).
            let leaving_node = a_node.clone();
            let room_id = room.id;
            let finishing = a.0.spawn(async move {
                let _ = leaving_node.leave(room_id).await;
                a_audio.finish().await
            });
            Some((a, finishing))
        }
    };
    trace
        .follow("B resuming", &b_audio, &mut events, |trace| {
            trace.resumed(trigger)
        })
        .await;
    // Loss, from a player status refreshed after the repair.
    let stale = b_audio.status().playback.chunks_played;
    let after = poll("a fresh player status", || {
        let playback = b_audio.status().playback;
        (playback.chunks_played > stale).then_some(playback)
    })
    .await;
    let missing = |p: &PlayerStatus| p.expected.saturating_sub(p.received);

    let gap = trace
        .frames
        .windows(2)
        .filter(|pair| pair[1].0 >= trigger)
        .map(|pair| pair[1].0 - pair[0].0)
        .max()
        .unwrap_or_default();
    let lost_event = trace.events.iter().find_map(|(at, event)| match event {
        AudioEvent::Lost { reason, .. } if *at >= trigger => Some((*at, reason.clone())),
        _ => None,
    });
    let lost_at = lost_event.as_ref().map(|(at, _)| *at);
    let last_from_a = lost_at.and_then(|lost| {
        trace
            .frames
            .iter()
            .rev()
            .find(|(at, _)| *at <= lost)
            .map(|(at, _)| *at)
    });
    let attached_at = trace.attached_after(trigger);
    let resume = match (departure, attached_at) {
        (Departure::Crash, Some(attached)) => trace
            .frames
            .iter()
            .find(|(at, _)| *at > attached)
            .map(|(at, _)| *at - attached),
        _ => None,
    };
    let times = RepairTimes {
        gap,
        detect: lost_at.zip(last_from_a).map(|(lost, last)| lost - last),
        reattach: lost_at
            .zip(attached_at)
            .map(|(lost, attached)| attached.saturating_duration_since(lost)),
        resume,
        lost: missing(&after).saturating_sub(missing(&before)),
        concealed: after.concealed.saturating_sub(before.concealed),
        reason: lost_event.map(|(_, reason)| reason).unwrap_or_default(),
    };

    drop(b_audio);
    b_node.shutdown().await;
    match leaving {
        Some((a, finishing)) => {
            finishing
                .await
                .expect("A's finish task")
                .expect("A finishes");
            a_node.shutdown().await;
            a.kill();
        }
        None => drop(a_node),
    }
    host.close(room).await;
    times
}

// ---------------------------------------------------------------------------------------------
// 3. Mouth-to-ear latency

/// One member of the latency chain, over the steady state.
#[derive(Debug)]
struct DepthLatency {
    depth: u16,
    /// Every frame's latency in the steady state, in ms (from the histogram).
    histogram: Vec<f64>,
    /// How the start's extra delay went: see [`Settling`].
    start: Option<Settling>,
    /// The steady state, in the player's 20 ms chunks.
    window: std::ops::Range<u64>,
    /// Frames played, concealed, late and skipped in the steady state.
    played: u64,
    concealed: u64,
    late: u64,
    skipped: u64,
    /// Where the output went, and when its first sample was written (the player's first slot).
    output: Option<PathBuf>,
    output_start: Instant,
    /// When the host's input's first sample was "captured".
    input_start: Instant,
}

/// A chain host → L1 → L2 → L3 speaking `input`; histograms over [`WARMUP`]..+`steady` of each
/// member's playback; outputs into `dir` when given.
async fn latency_chain(input: Input, steady: Duration, dir: Option<&Path>) -> Vec<DepthLatency> {
    let host = Host::start(1).await;
    let room = host.open(input).await;
    let input_start = room.speaking_since - FRAME_DURATION;
    let mut chain: Vec<(u16, Node, AudioSession, Option<PathBuf>, Instant)> = Vec::new();
    for depth in 1..=3u16 {
        let node = spawn_node(1).await;
        let view = node
            .join(room.link.clone(), &format!("l{depth}"))
            .await
            .expect("join");
        let output = dir.map(|dir| dir.join(format!("depth-{depth}.wav")));
        let audio = listen(
            &node,
            &view,
            output.clone().map_or(Output::Null, Output::Wav),
        );
        let output_start = poll("the first frame", || {
            (audio.status().received > 0).then(Instant::now)
        })
        .await;
        poll("the chain's shape", || {
            let position = audio.status().position;
            position.map(|p| assert_eq!(p.depth, depth, "a chain, one child each"))
        })
        .await;
        chain.push((depth, node, audio, output, output_start));
    }
    // Snapshots once each player has played the warm-up, then the steady state (the status is
    // refreshed every 10 chunks, and these are multiples of 10, so the windows are exact unless
    // a refresh is missed; the WAV window follows the snapshots).
    let chunks = |d: Duration| (d.as_millis() / FRAME_DURATION.as_millis()) as u64;
    let (warm, end) = (chunks(WARMUP), chunks(WARMUP + steady));
    let mut snapshots: Vec<[Option<PlayerStatus>; 2]> = vec![[None, None]; chain.len()];
    let mut history: Vec<Vec<(u64, Latency)>> = vec![Vec::new(); chain.len()];
    poll_for("the steady state", WARMUP + steady + WAIT, || {
        for (((_, _, audio, _, _), snapshot), history) in chain
            .iter()
            .zip(snapshots.iter_mut())
            .zip(history.iter_mut())
        {
            let status = audio.status().playback;
            if history
                .last()
                .is_none_or(|(chunks, _)| *chunks != status.chunks_played)
            {
                history.push((status.chunks_played, status.latency.clone()));
            }
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
    })
    .await;
    let mut depths = Vec::new();
    for (((depth, node, audio, output, output_start), [first, last]), history) in
        chain.into_iter().zip(snapshots).zip(history).rev()
    {
        audio.finish().await.expect("finish the member's audio");
        node.shutdown().await;
        let (first, last) = (first.expect("snapshot"), last.expect("snapshot"));
        depths.push(DepthLatency {
            depth,
            histogram: since(&last.latency, &first.latency),
            window: first.chunks_played..last.chunks_played,
            start: settling(&history),
            played: last.played - first.played,
            concealed: last.concealed - first.concealed,
            late: last.late - first.late,
            skipped: last.skipped - first.skipped,
            output,
            output_start,
            input_start,
        });
    }
    depths.reverse();
    host.close(room).await;
    host.node.shutdown().await;
    depths
}

/// When a player's cautious start ended: the latency (p50 of each status refresh, 200 ms) was
/// `before` ms until `at` into playback, and `after` ms (that of the last refresh) since.
#[derive(Debug, Clone, Copy)]
struct Settling {
    at: Duration,
    before: f64,
    after: f64,
}

/// From a player's histogram at each status refresh: the last refresh whose frames waited a
/// frame or more longer than the last refresh's did.
fn settling(history: &[(u64, Latency)]) -> Option<Settling> {
    let medians: Vec<(u64, f64)> = history
        .windows(2)
        .filter_map(|pair| {
            let mut new = since(&pair[1].1, &pair[0].1);
            percentile(&mut new, 50.0).map(|p50| (pair[1].0, p50))
        })
        .collect();
    let after = medians.last()?.1;
    let frame_ms = ms(FRAME_DURATION);
    let (chunks, before) = medians
        .iter()
        .rev()
        .find(|(_, p50)| *p50 >= after + frame_ms / 2.0)?;
    Some(Settling {
        at: FRAME_DURATION * u32::try_from(*chunks).unwrap_or(u32::MAX),
        before: *before,
        after,
    })
}

/// Every latency a histogram holds, in ms, sorted, read back through `percentile` (the only
/// way in): the value at each rank, found a run of equal values at a time by binary search. The
/// percentile asked for is half-way between two ranks, so rounding cannot land on a neighbour.
fn recorded(latency: &Latency) -> Vec<usize> {
    let n = latency.count;
    let at = |rank: u64| latency.percentile((rank as f64 - 0.5) * 100.0 / n as f64);
    let mut values = Vec::with_capacity(usize::try_from(n).unwrap_or(0));
    let mut rank = 1;
    while rank <= n {
        let Some(value) = at(rank) else { break };
        // The last rank holding `value`.
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

/// Clicks over silence for `duration`: a 1 kHz burst of [`CLICK`] every [`CLICK_EVERY`].
fn clicks(duration: Duration) -> Vec<f32> {
    let rate = SAMPLE_RATE as f64;
    let n = (duration.as_secs_f64() * rate) as usize;
    let every = (CLICK_EVERY.as_secs_f64() * rate) as usize;
    let burst = sine(
        1000.0,
        CLICK_AMPLITUDE,
        (CLICK.as_secs_f64() * rate) as usize,
    );
    let mut out = vec![0.0; n];
    // The first click a little in, so that it too follows silence.
    for start in (every / 2..n.saturating_sub(burst.len())).step_by(every) {
        out[start..start + burst.len()].copy_from_slice(&burst);
    }
    out
}

/// Sample indices where clicks start.
fn onsets(samples: &[f32]) -> Vec<usize> {
    let quiet = (CLICK_QUIET.as_secs_f64() * f64::from(SAMPLE_RATE)) as usize;
    let mut found = Vec::new();
    let mut last_loud: Option<usize> = None;
    for (i, sample) in samples.iter().enumerate() {
        if sample.abs() > CLICK_THRESHOLD {
            if last_loud.is_none_or(|last| i - last > quiet) {
                found.push(i);
            }
            last_loud = Some(i);
        }
    }
    found
}

/// For each output click at `out_offset` s + index / rate, how long after the input click
/// before it (at input index / rate), in ms.
fn click_delays(input: &[usize], output: &[usize], out_offset: f64) -> Vec<f64> {
    let rate = f64::from(SAMPLE_RATE);
    output
        .iter()
        .filter_map(|&j| {
            let at = out_offset + j as f64 / rate;
            let before = input
                .iter()
                .rev()
                .map(|&k| k as f64 / rate)
                .find(|&t| t <= at)?;
            let delay = (at - before) * 1000.0;
            (delay < CLICK_EVERY.as_secs_f64() * 1000.0).then_some(delay)
        })
        .collect()
}

/// The codec's own delay on a click (Opus look-ahead), in ms: the clicks encoded and decoded
/// directly, no network, no jitter buffer.
fn codec_delay_ms(reference: &[f32]) -> f64 {
    let mut encoder = VoiceEncoder::new().expect("encoder");
    let mut decoder = VoiceDecoder::new().expect("decoder");
    let mut decoded = Vec::with_capacity(reference.len());
    for chunk in reference.chunks_exact(FRAME_SAMPLES) {
        let encoded = encoder.encode(chunk).expect("encode");
        decoded.extend(decoder.decode(&encoded.payload).expect("decode"));
    }
    let mut delays = click_delays(&onsets(reference), &onsets(&decoded), 0.0);
    percentile(&mut delays, 50.0).unwrap_or(0.0)
}

// ---------------------------------------------------------------------------------------------
// The table

/// Nearest-rank percentile.
fn percentile(values: &mut [f64], p: f64) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let rank = ((p / 100.0) * values.len() as f64).ceil().max(1.0) as usize;
    values.get(rank.min(values.len()) - 1).copied()
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

#[derive(Debug)]
struct Row {
    measure: String,
    n: usize,
    p50: Option<f64>,
    p95: Option<f64>,
    max: Option<f64>,
    target: String,
    /// `Some(met)` when the row has a target.
    met: Option<bool>,
}

#[derive(Debug, Default)]
struct Table {
    rows: Vec<Row>,
    notes: Vec<String>,
}

impl Table {
    fn row(&mut self, measure: &str, mut values: Vec<f64>, target: &str, check: Option<f64>) {
        let p95 = percentile(&mut values, 95.0);
        self.rows.push(Row {
            measure: measure.to_owned(),
            n: values.len(),
            p50: percentile(&mut values, 50.0),
            p95,
            max: values.last().copied(),
            target: target.to_owned(),
            met: check.map(|limit| p95.is_some_and(|p95| p95 <= limit)),
        });
    }

    fn joins(&mut self, joins: &[JoinTimes]) {
        let of = |f: fn(&JoinTimes) -> Duration| joins.iter().map(|j| ms(f(j))).collect();
        self.row(
            "join → first audio played",
            of(|j| j.first_played),
            "p95 ≤ 500",
            Some(ms(JOIN_TARGET)),
        );
        self.row("  of which join → admitted", of(|j| j.joined), "", None);
        self.row(
            "  admitted → parent named, dialled",
            of(|j| j.attached.saturating_sub(j.joined)),
            "",
            None,
        );
        self.row(
            "  parent named → first frame",
            of(|j| j.first_frame.saturating_sub(j.attached)),
            "",
            None,
        );
        self.row(
            "  first frame → played (jitter buf.)",
            of(|j| j.first_played.saturating_sub(j.first_frame)),
            "",
            None,
        );
        let deepest = joins.iter().map(|j| j.depth).max().unwrap_or(0);
        let moves: usize = joins.iter().map(|j| j.moves).sum();
        self.notes.push(format!(
            "joins: {} members of one room (fan-out {DEFAULT_MAX_CHILDREN}), depths 1-{deepest}; \
             parents lost before the first frame: {moves}",
            joins.len()
        ));
    }

    fn repairs(&mut self, departure: Departure, repairs: &[RepairTimes]) {
        let gaps = repairs.iter().map(|r| ms(r.gap)).collect();
        let lost: Vec<f64> = repairs.iter().map(|r| r.lost as f64).collect();
        let concealed: Vec<f64> = repairs.iter().map(|r| r.concealed as f64).collect();
        let of = |f: fn(&RepairTimes) -> Option<Duration>| {
            repairs.iter().filter_map(f).map(ms).collect::<Vec<_>>()
        };
        match departure {
            Departure::Crash => {
                self.row(
                    "parent killed: gap at child",
                    gaps,
                    "p95 ≤ 200",
                    Some(ms(CRASH_TARGET)),
                );
                self.row("  last frame → parent given up", of(|r| r.detect), "", None);
                self.row(
                    "  given up → new parent named",
                    of(|r| r.reattach),
                    "",
                    None,
                );
                self.row("  named → first frame", of(|r| r.resume), "", None);
                self.row("  frames lost (count)", lost, "", None);
                self.row("  slots concealed (count)", concealed, "", None);
            }
            Departure::Graceful => {
                self.row(
                    "parent leaves: longest wait at child",
                    gaps,
                    "p95 ≤ 40 (no gap)",
                    Some(ms(GRACEFUL_TARGET)),
                );
                self.row("  told → new parent named", of(|r| r.reattach), "", None);
                self.row("  frames lost (count)", lost, "p95 = 0", Some(0.0));
                self.row("  slots concealed (count)", concealed, "", None);
            }
        }
        let mut reasons: Vec<&str> = repairs.iter().map(|r| r.reason.as_str()).collect();
        reasons.sort_unstable();
        reasons.dedup();
        self.notes.push(format!(
            "{departure:?}: {} repetitions; the child's reasons: {reasons:?}",
            repairs.len()
        ));
    }

    fn latency(&mut self, signal: &str, chain: &[DepthLatency], clicks: Option<(&[f32], f64)>) {
        let at = |d: &DepthLatency, p: f64| percentile(&mut d.histogram.clone(), p);
        let first = chain.first();
        for d in chain {
            let (target, check) = match (d.depth, first.and_then(|first| at(first, 95.0))) {
                (1, _) => (format!("p95 ≤ {DEPTH1_TARGET_MS}"), Some(DEPTH1_TARGET_MS)),
                (depth, Some(base)) => {
                    let more = PER_HOP_TARGET_MS * f64::from(depth - 1);
                    (format!("p95 ≤ p95@1 + {more}"), Some(base + more))
                }
                _ => (String::new(), None),
            };
            self.row(
                &format!("mouth→ear depth {} ({signal})", d.depth),
                d.histogram.clone(),
                &target,
                check,
            );
            let start = match d.start {
                Some(Settling { at, before, after }) => format!(
                    "the start's extra delay lasted {:.1} s of playback ({before:.0} ms, then \
                     {after:.0} ms)",
                    at.as_secs_f64()
                ),
                None => "no extra delay at the start".into(),
            };
            self.notes.push(format!(
                "{signal}, depth {}: {start}; steady state {} frames played, {} concealed, \
                 {} late, {} skipped",
                d.depth, d.played, d.concealed, d.late, d.skipped
            ));
        }
        if let (Some(first), Some(last)) = (chain.first(), chain.last())
            && last.depth > first.depth
        {
            let hops = f64::from(last.depth - first.depth);
            let per_hop = |p: f64| at(last, p).zip(at(first, p)).map(|(l, f)| (l - f) / hops);
            let p95 = per_hop(95.0);
            self.rows.push(Row {
                measure: format!("  added per hop, depth 1→{} ({signal})", last.depth),
                n: last.histogram.len().min(first.histogram.len()),
                p50: per_hop(50.0),
                p95,
                max: None,
                target: format!("≤ {PER_HOP_TARGET_MS}"),
                met: Some(p95.is_some_and(|p95| p95 <= PER_HOP_TARGET_MS)),
            });
        }
        let Some((reference, codec)) = clicks else {
            return;
        };
        let input = onsets(reference);
        for d in chain {
            let Some(path) = &d.output else { continue };
            let output = wav::read(path).expect("read the member's output");
            // The same window as the histogram.
            let chunk = FRAME_SAMPLES as u64;
            let window = d.window.start * chunk..d.window.end * chunk;
            let heard: Vec<usize> = onsets(&output)
                .into_iter()
                .filter(|&j| window.contains(&(j as u64)))
                .collect();
            let offset = (d.output_start - d.input_start).as_secs_f64();
            let delays = click_delays(&input, &heard, offset);
            let histogram = percentile(&mut d.histogram.clone(), 50.0);
            let clicked = percentile(&mut delays.clone(), 50.0);
            self.row(
                &format!("  clicks in WAVs, depth {}", d.depth),
                delays,
                "≈ histogram + codec",
                None,
            );
            if let (Some(histogram), Some(clicked)) = (histogram, clicked) {
                self.notes.push(format!(
                    "clicks, depth {}: WAV p50 {clicked:.1} ms - histogram p50 {histogram:.0} ms = \
                     {:.1} ms; the codec alone delays a click {codec:.1} ms (timing ±2 ms)",
                    d.depth,
                    clicked - histogram
                ));
            }
        }
    }

    fn print(&self, args: &Args, took: Duration) {
        println!();
        println!(
            "Audio path on 127.0.0.1 (QUIC), one process: {} joins, {} repairs of each kind, \
             latency over {} s after {} s ({:.0} s in all)",
            args.joins,
            args.repairs,
            args.steady.as_secs(),
            WARMUP.as_secs(),
            took.as_secs_f64()
        );
        println!();
        println!(
            "| {:<40} | {:>3} | {:>7} | {:>7} | {:>7} | {:<20} | {:<6} |",
            "measure (ms unless said)", "n", "p50", "p95", "max", "target", "result"
        );
        println!(
            "|{:-<42}|{:-<5}|{:-<9}|{:-<9}|{:-<9}|{:-<22}|{:-<8}|",
            "", "", "", "", "", "", ""
        );
        let cell = |v: Option<f64>| v.map_or_else(|| "-".to_owned(), |v| format!("{v:.1}"));
        for row in &self.rows {
            println!(
                "| {:<40} | {:>3} | {:>7} | {:>7} | {:>7} | {:<20} | {:<6} |",
                row.measure,
                row.n,
                cell(row.p50),
                cell(row.p95),
                cell(row.max),
                row.target,
                match row.met {
                    Some(true) => "ok",
                    Some(false) => "MISSED",
                    None => "",
                }
            );
        }
        println!();
        for note in &self.notes {
            println!("- {note}");
        }
    }
}
