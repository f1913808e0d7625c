//! What it costs that nobody in the middle can fake the audio (issue 13): speakers sign their
//! frames in batches ([`ProofSigner`]: 12-byte hashes, one Ed25519 signature per 5 frames), the
//! host signs progress beacons, and every hop checks frames against proofs ([`FrameAuth`]).
//! Each measure is taken twice in one run, *before* (checks off: no keys, so nothing is signed,
//! and a gate that names no voices, so nothing is checked: the benches' [`admit_all`]) and
//! *after* (checks on: the host and speaker sign, and every node's gate names the room's voices,
//! [`Voices::of`]), alternating off/on, on/off, … so that both see the machine in the same state.
//!
//! `cargo bench -p earshot-node --bench trust` (about 2¾ minutes once built). Options after `--`:
//! `--quick` (one round, shorter stretches: about 30 s), `--rounds N` (off/on pairs per size,
//! default 4), `--children 8,50` (fan-out sizes), `--relay-threads N` (the middle relay's tokio
//! workers, default 2 as in the CLI). Prints four tables (before / after / change / target) and
//! the machine's load average: other work on the machine shares the CPUs with this run.
//!
//! Every node runs in its own multi-thread tokio runtime, standing for its own process, as in
//! `relay_plane`; a runtime records its threads' ids, so a node's CPU time is read from
//! `/proc/self/task/<tid>/schedstat` (see `support`).
//!
//! 1. **Authentication bytes.** What goes over the streams at 50 frames/s of 80-byte payloads
//!    (98-byte [`AudioFrame`]s), per second of speech. *Speak stream*: a speaker node (the real
//!    [`Fanout::speak`], with its key or without) speaks to a sink that counts every byte it reads
//!    after the hello. The sink stands in for the host because the host's speak-stream reader
//!    checks every speaker's frames against the speaker's own key whatever the gate says (so an
//!    unsigned speaker, the *before*, would be cut off). *Listen stream*: in the fan-out runs
//!    (2.), the middle relay's `FanoutStats::bytes_sent` (every frame, proof, beacon, keep-alive
//!    and length prefix written to its children) per frame its children received, × 50 (a child
//!    re-attaching for a moment is not sent what it missed). Both are stream bytes: QUIC, UDP and
//!    IP headers are not counted (a frame's own packet carries ~60 more bytes of them).
//! 2. **Relay CPU per forwarded frame.** A chain host → middle relay → N children, all on
//!    127.0.0.1 over QUIC: the host (a real swarm, `earshot`'s behaviour, set up as a host:
//!    loudest-speaker selection on) relays its own voice from a capture thread ([`Fanout::relay`];
//!    with its key it signs the frames and a beacon every 500 ms); the middle relay (a real swarm)
//!    listens to it and feeds N children (bare QUIC swarms sharing one 2-worker runtime). The
//!    middle relay is what is measured: the CPU time of all its threads (swarm, QUIC, the audio
//!    plane's tasks, its checks) per frame its children received. Each run sets everything up
//!    afresh, speaks 1 s to warm up, then at the real pace (a frame every 20 ms from a deadline
//!    clock), then in lockstep (the next frame once every child has the last: the relay's
//!    capacity, where a per-frame cost shows most). Only the real pace is judged. The host's own
//!    CPU per frame it sent down is printed too (it signs; its runtime also runs the capture
//!    thread).
//! 3. **Verify cost.** Plain loops over many frames, timed with [`Instant`], no network: at the
//!    speaker [`ProofSigner::push`] per frame (a hash each, a signature every 5th); at every hop
//!    [`FrameAuth::frame`] per frame (hash, keeping a copy of the frame for its proof as the node
//!    does), [`FrameProof::decode`] and [`FrameAuth::proof`] per proof (Ed25519 verify, five
//!    hashes matched), [`FrameAuth::expire`] per read, and the beacons' signing and checking;
//!    then what one voice costs a hop per second. Also the speaker node's CPU per frame sent in
//!    the speak-stream runs (1.).
//! 4. **Latency.** Frames are passed on and may play before their proof, so checking should add
//!    nothing. In the fan-out runs at the real pace, every node stamps a frame when it has read it
//!    (`Heard::at`, after that node's checks): the hop is a child's stamp minus the middle relay's,
//!    per sequence number, over every child (signed: two threads stamp it); the first hop is the
//!    capture thread's send time to the middle relay's stamp (it includes the host's signing).
//!    The children's frames' authenticity is tallied too: whether each could play on arrival
//!    (not held for its proof) and whether it ended verified.

mod support;

use std::collections::HashMap;
use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use earshot_node::fanout::wire::read_hello;
use earshot_node::fanout::{
    AUDIO_PROTOCOL, Authenticity, Fanout, FanoutStats, Gate, Heard, StreamKind, Voices,
};
use earshot_node::identity::Identity;
use earshot_node::net::{NetConfig, build_swarm};
use earshot_protocol::frame::{AudioFrame, SAMPLES_PER_FRAME, SpeakerId, flags};
use earshot_protocol::proof::check::FrameAuth;
use earshot_protocol::proof::progress::{BEACON_INTERVAL_MS, Progress};
use earshot_protocol::proof::{FRAMES_PER_PROOF, FrameProof, ProofSigner, frame_hash};
use earshot_protocol::{PeerKey, RoomId};
use ed25519_dalek::SigningKey;
use futures::{AsyncReadExt, StreamExt};
use libp2p::multiaddr::Protocol;
use libp2p::swarm::{NetworkBehaviour, SwarmEvent};
use libp2p::{Multiaddr, PeerId, Swarm};
use tokio::sync::mpsc;

use crate::support::{
    ClosedLoop, CommandLine, Cpu, FRAME_INTERVAL, NodeRuntime, PAYLOAD_BYTES, Reopened, Spoken,
    admit_all, attached, host_options, keep_listening, listen, load_average, poll_forever,
    print_machine, process_cpu, settle, udp_datagrams_sent,
};

const ROOM: RoomId = RoomId([13; 16]);
/// Targets from the issue.
const BYTES_TARGET_PCT: f64 = 30.0;
const CPU_TARGET_PCT: f64 = 25.0;
const HOP_P50_TARGET: Duration = Duration::from_millis(20);
/// How long a relay may take to have all its children attached.
const ATTACH_WITHIN: Duration = Duration::from_secs(30);
/// After the last frame, how long until the streams' byte counts are read: the frames in
/// flight and the last proof are written by then (a speaker signs an unfinished batch after
/// 30 ms without a frame).
const TAIL: Duration = Duration::from_millis(100);

fn main() {
    let args = Args::parse();
    let load_before = load_average();
    let control = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("control runtime");

    eprintln!("verify cost: {} frames", args.verify_frames);
    let costs = verify_costs(args.verify_frames);

    eprintln!("speak stream: {} rounds", args.rounds);
    let sink_runtime = NodeRuntime::new("sink", 1);
    let sink = control.block_on(sink_runtime.run(sink()));
    let mut speaks = Vec::new();
    for round in 0..args.rounds {
        for checks in Checks::order(round) {
            let runtime = NodeRuntime::new("speaker", 1);
            speaks.push(control.block_on(speak_run(&runtime, &sink, checks, args.speak_for)));
            runtime.shutdown();
        }
    }
    sink_runtime.shutdown();

    let mut planes = Vec::new();
    for &children in &args.children {
        for round in 0..args.rounds {
            for checks in Checks::order(round) {
                eprintln!(
                    "fan-out: {children} children, round {}/{}, checks {}",
                    round + 1,
                    args.rounds,
                    checks.name()
                );
                let runtimes = PlaneRuntimes::new(args.relay_threads);
                planes.push(control.block_on(plane_run(&runtimes, children, checks, &args)));
                runtimes.shutdown();
            }
        }
    }

    println!();
    print_machine("trust", &load_before);
    print_bytes(&speaks, &planes, &args);
    print_cpu(&planes, &args);
    print_costs(&costs, &speaks);
    print_latency(&planes, &args);
}

struct Args {
    children: Vec<usize>,
    relay_threads: usize,
    rounds: usize,
    /// Each fan-out run: warm-up, real pace, lockstep.
    warmup: Duration,
    paced_for: Duration,
    lockstep_for: Duration,
    /// Each speak-stream stretch.
    speak_for: Duration,
    /// Frames in the verify-cost loops.
    verify_frames: u32,
}

impl Args {
    fn parse() -> Self {
        let line = CommandLine::read();
        let quick = line.flag("--quick");
        let secs = Duration::from_secs;
        let rounds = line
            .value("--rounds")
            .map(|n| n.parse().expect("--rounds takes a number"))
            .unwrap_or(if quick { 1 } else { 4 });
        Self {
            children: line.children(&[8, 50]),
            relay_threads: line.relay_threads(),
            rounds,
            warmup: if quick {
                Duration::from_millis(500)
            } else {
                secs(1)
            },
            paced_for: if quick { secs(3) } else { secs(5) },
            lockstep_for: if quick {
                secs(1)
            } else {
                Duration::from_millis(1500)
            },
            speak_for: if quick { secs(2) } else { secs(3) },
            verify_frames: if quick { 10_000 } else { 50_000 },
        }
    }
}

/// Before or after.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Checks {
    /// No keys, and a gate that names no voices: nothing signed, nothing checked.
    Off,
    /// The host and the speaker sign; every node's gate names the room's voices.
    On,
}

impl Checks {
    /// Off then on in even rounds, on then off in odd ones.
    fn order(round: usize) -> [Checks; 2] {
        if round.is_multiple_of(2) {
            [Checks::Off, Checks::On]
        } else {
            [Checks::On, Checks::Off]
        }
    }

    fn name(self) -> &'static str {
        match self {
            Checks::Off => "off",
            Checks::On => "on",
        }
    }

    /// A node's gate: admits everyone; with checks on, names the host as the room's voice.
    fn gate(self, host: PeerKey) -> Arc<dyn Gate> {
        match self {
            Checks::Off => admit_all(),
            Checks::On => Arc::new(Checking(Arc::new(Voices::of(host, [])))),
        }
    }

    /// A signing node's key: with checks on only.
    fn key(self, key: &SigningKey) -> Option<SigningKey> {
        (self == Checks::On).then(|| key.clone())
    }
}

/// Admits every stream, as the benches' open gate does, and names the room's voices: every
/// stream checks frames against their proofs, and listen streams the host's beacons.
struct Checking(Arc<Voices>);

impl Gate for Checking {
    fn admit(&self, _: RoomId, _: PeerId, _: StreamKind, _: &[u8]) -> bool {
        true
    }

    fn voices(&self, _: RoomId) -> Option<Arc<Voices>> {
        Some(Arc::clone(&self.0))
    }
}

/// A 98-byte frame of `speaker`'s voice (an 80-byte payload: a 32 kbps Opus frame).
fn frame(speaker: SpeakerId, seq: u32) -> AudioFrame {
    let mut payload = vec![0x5a; PAYLOAD_BYTES];
    payload[..4].copy_from_slice(&seq.to_be_bytes());
    AudioFrame {
        speaker,
        seq,
        timestamp: seq.wrapping_mul(SAMPLES_PER_FRAME),
        level: 30,
        flags: flags::VOICE | flags::FEC,
        payload,
        tag: None,
    }
}

fn speaker_of(key: &SigningKey) -> SpeakerId {
    SpeakerId::of(&PeerKey::from(key))
}

// ---------------------------------------------------------------------------------------------
// Nodes

/// A running swarm with an audio plane.
struct Endpoint {
    relay: Fanout,
    peer: PeerId,
    /// Its listen address, with `/p2p/<peer>`.
    addr: Multiaddr,
}

fn quic_any_port() -> Multiaddr {
    "/ip4/127.0.0.1/udp/0/quic-v1".parse().expect("multiaddr")
}

/// A node as `earshot` runs it: the full behaviour and QUIC.
async fn real_node(
    identity: Identity,
    dial: Option<Multiaddr>,
    gate: Arc<dyn Gate>,
    key: Option<SigningKey>,
) -> Endpoint {
    let swarm = build_swarm(&identity, &NetConfig::default()).expect("swarm");
    let control = swarm.behaviour().stream.new_control();
    let (peer, addr) = drive(swarm, dial).await;
    Endpoint {
        relay: Fanout::start(control, gate, key),
        peer,
        addr,
    }
}

/// A swarm with QUIC and the stream behaviour only.
fn bare_swarm() -> Swarm<libp2p_stream::Behaviour> {
    libp2p::SwarmBuilder::with_new_identity()
        .with_tokio()
        .with_quic()
        .with_behaviour(|_| libp2p_stream::Behaviour::new())
        .expect("behaviour")
        .with_swarm_config(|config| config.with_idle_connection_timeout(Duration::from_secs(60)))
        .build()
}

/// A bare swarm with an audio plane: the fan-out's children and the speaker, which are not what
/// is measured.
async fn bare_node(
    dial: Option<Multiaddr>,
    gate: Arc<dyn Gate>,
    key: Option<SigningKey>,
) -> Endpoint {
    let swarm = bare_swarm();
    let control = swarm.behaviour().new_control();
    let (peer, addr) = drive(swarm, dial).await;
    Endpoint {
        relay: Fanout::start(control, gate, key),
        peer,
        addr,
    }
}

/// Listens on a fresh port, dials `dial` and waits for the connection, then polls the swarm in a
/// task of the current runtime for as long as the runtime lives.
async fn drive<B>(mut swarm: Swarm<B>, dial: Option<Multiaddr>) -> (PeerId, Multiaddr)
where
    B: NetworkBehaviour + Send + 'static,
    Swarm<B>: Send,
{
    let addr = listen(&mut swarm, quic_any_port()).await;
    if let Some(target) = dial {
        swarm.dial(target.clone()).expect("dial");
        loop {
            match swarm.select_next_some().await {
                SwarmEvent::ConnectionEstablished { .. } => break,
                SwarmEvent::OutgoingConnectionError { error, .. } => {
                    panic!("could not dial {target}: {error}")
                }
                _ => {}
            }
        }
    }
    let peer = *swarm.local_peer_id();
    poll_forever(swarm, |_| {});
    (peer, addr.with(Protocol::P2p(peer)))
}

// ---------------------------------------------------------------------------------------------
// 1. The speak stream

/// Takes audio streams and counts the bytes that follow each hello.
struct Sink {
    peer: PeerId,
    addr: Multiaddr,
    bytes: Arc<AtomicU64>,
}

async fn sink() -> Sink {
    let swarm = bare_swarm();
    let mut incoming = swarm
        .behaviour()
        .new_control()
        .accept(AUDIO_PROTOCOL)
        .expect("nobody else takes audio streams here");
    let (peer, addr) = drive(swarm, None).await;
    let bytes = Arc::new(AtomicU64::new(0));
    let count = Arc::clone(&bytes);
    tokio::spawn(async move {
        while let Some((_, mut stream)) = incoming.next().await {
            let count = Arc::clone(&count);
            tokio::spawn(async move {
                if read_hello(&mut stream).await.is_err() {
                    return;
                }
                let mut buf = vec![0u8; 4096];
                while let Ok(n @ 1..) = stream.read(&mut buf).await {
                    count.fetch_add(n as u64, Ordering::Relaxed);
                }
            });
        }
    });
    Sink { peer, addr, bytes }
}

/// One speaker, with or without its key, at the real pace for `duration`.
struct SpeakRun {
    checks: Checks,
    spoken: Spoken,
    /// Bytes the sink read after the hello.
    bytes: u64,
    /// The speaker node's CPU (its runtime: swarm, QUIC, the speak task, the capture thread).
    cpu: Cpu,
}

async fn speak_run(
    runtime: &NodeRuntime,
    sink: &Sink,
    checks: Checks,
    duration: Duration,
) -> SpeakRun {
    let identity = Identity::ephemeral().expect("identity");
    let key = identity.signing_key().clone();
    let speaker = speaker_of(&key);
    let (addr, host) = (sink.addr.clone(), sink.peer);
    let gate = checks.gate(PeerKey::from(&key));
    let signing = checks.key(&key);
    let voice = runtime
        .run(async move {
            let node = bare_node(Some(addr), gate, signing).await;
            node.relay.speak(ROOM, host).await.expect("speak stream")
        })
        .await;
    // `speak` has opened the stream and sent its hello: let the connection settle.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let bytes_before = sink.bytes.load(Ordering::Relaxed);
    let cpu_before = runtime.cpu();
    let spoken = runtime
        .spawn_blocking(move || {
            let began = Instant::now();
            let mut seq = 0u32;
            let mut frames = 0u64;
            while began.elapsed() < duration {
                let due = began + FRAME_INTERVAL * seq;
                if let Some(wait) = due.checked_duration_since(Instant::now()) {
                    std::thread::sleep(wait);
                }
                // A full queue drops the frame, as the capture thread does.
                if voice.try_send(frame(speaker, seq)).is_ok() {
                    frames += 1;
                }
                seq += 1;
            }
            Spoken {
                frames,
                next_seq: seq,
                sending: began.elapsed(),
                stalls: 0,
            }
        })
        .await
        .expect("capture thread");
    tokio::time::sleep(TAIL).await;
    SpeakRun {
        checks,
        bytes: sink.bytes.load(Ordering::Relaxed) - bytes_before,
        cpu: runtime.cpu().since(cpu_before),
        spoken,
    }
}

impl SpeakRun {
    fn bytes_per_sec(&self) -> f64 {
        self.bytes as f64 / self.spoken.sending.as_secs_f64()
    }
}

// ---------------------------------------------------------------------------------------------
// 2. and 4. The fan-out: host → middle relay → N children

/// Runtimes for the host, the middle relay (measured) and the children.
struct PlaneRuntimes {
    root: NodeRuntime,
    middle: NodeRuntime,
    children: NodeRuntime,
}

impl PlaneRuntimes {
    fn new(relay_threads: usize) -> Self {
        Self {
            root: NodeRuntime::new("host", 2),
            middle: NodeRuntime::new("middle", relay_threads),
            children: NodeRuntime::new("children", 2),
        }
    }

    fn shutdown(self) {
        self.children.shutdown();
        self.middle.shutdown();
        self.root.shutdown();
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Pace {
    /// One frame per 20 ms from a deadline clock.
    Real,
    /// The next frame once every child has the last one.
    Lockstep,
}

impl Pace {
    fn name(self) -> &'static str {
        match self {
            Pace::Real => "50 fps",
            Pace::Lockstep => "lockstep",
        }
    }
}

/// A frame a node's playback queue handed out.
struct Stamp {
    seq: u32,
    /// When the node read it (after its checks).
    at: Instant,
    /// Whether it could play on arrival (not held for its proof).
    playable: bool,
    /// Its authenticity, as it stands now.
    auth: Authenticity,
}

/// What one node's playback queue handed out.
#[derive(Clone, Default)]
struct Log {
    count: Arc<AtomicU64>,
    stamps: Arc<Mutex<Vec<Stamp>>>,
}

impl Log {
    /// Takes everything `heard` hands out, for as long as the runtime lives.
    async fn record(self, mut heard: mpsc::Receiver<Heard>) {
        while let Some(heard) = heard.recv().await {
            self.stamps.lock().expect("stamps").push(Stamp {
                seq: heard.frame.seq,
                at: heard.at,
                playable: heard.auth.playable(),
                auth: heard.auth,
            });
            self.count.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// One measured stretch of a fan-out run.
struct Stretch {
    pace: Pace,
    spoken: Spoken,
    /// The frames sent (sequence numbers).
    seqs: Range<u32>,
    /// Until the children stopped receiving: what CPU time is measured over.
    wall: Duration,
    /// Frames the middle relay read from the host.
    received: u64,
    /// Frames each child received.
    delivered: Vec<u64>,
    /// Frame copies the middle relay skipped for children behind.
    dropped: u64,
    /// Bytes the middle relay wrote to its children, up to [`TAIL`] after the last frame.
    bytes_sent: u64,
    /// Frames the middle relay verified, proofs it checked, streams that failed their checks.
    verified: u64,
    proofs: u64,
    failed_checks: u64,
    middle_cpu: Cpu,
    root_cpu: Cpu,
    process_cpu: Cpu,
    /// UDP datagrams sent on this machine (every socket, every process).
    datagrams: u64,
    reopened: u64,
}

impl Stretch {
    fn forwarded(&self) -> u64 {
        self.delivered.iter().sum()
    }

    /// The middle relay's CPU per frame its children received, in µs.
    fn middle_us(&self) -> f64 {
        us(self.middle_cpu.total) / self.forwarded().max(1) as f64
    }

    /// Each child's share of what the middle relay read, in % (the least served child).
    fn delivery_min(&self) -> f64 {
        let min = self.delivered.iter().copied().min().unwrap_or(0);
        100.0 * min as f64 / self.received.max(1) as f64
    }
}

/// The children's frames at the real pace: how their authenticity went.
#[derive(Default, Clone, Copy)]
struct Tally {
    frames: u64,
    /// Held on arrival: could not play before its proof.
    held: u64,
    /// As they stand at the end of the run.
    verified: u64,
    refused: u64,
}

/// Latencies at the real pace, in nanoseconds (signed: two threads stamp each).
#[derive(Default)]
struct Latencies {
    /// Middle relay in → child out, over every child.
    hop: Vec<i64>,
    /// Capture thread's send → middle relay in.
    first: Vec<i64>,
    /// Capture thread's send → child out.
    both: Vec<i64>,
}

struct PlaneRun {
    children: usize,
    checks: Checks,
    setup: Duration,
    stretches: Vec<Stretch>,
    latencies: Latencies,
    tally: Tally,
    /// Why streams were opened again, over the whole run.
    reopened: String,
}

impl PlaneRun {
    fn stretch(&self, pace: Pace) -> Option<&Stretch> {
        self.stretches.iter().find(|s| s.pace == pace)
    }
}

struct Snapshot {
    at: Instant,
    middle_cpu: Cpu,
    root_cpu: Cpu,
    process_cpu: Cpu,
    datagrams: u64,
    received: u64,
    dropped: u64,
    bytes_sent: u64,
    verified: u64,
    proofs: u64,
    failed_checks: u64,
    delivered: Vec<u64>,
    reopened: u64,
}

/// What a fan-out run watches.
struct Watch<'a> {
    runtimes: &'a PlaneRuntimes,
    stats: &'a FanoutStats,
    logs: &'a [Log],
    reopened: &'a Reopened,
}

impl Watch<'_> {
    fn snapshot(&self) -> Snapshot {
        let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        Snapshot {
            at: Instant::now(),
            middle_cpu: self.runtimes.middle.cpu(),
            root_cpu: self.runtimes.root.cpu(),
            process_cpu: process_cpu(),
            datagrams: udp_datagrams_sent(),
            received: load(&self.stats.received),
            dropped: load(&self.stats.dropped),
            bytes_sent: load(&self.stats.bytes_sent),
            verified: load(&self.stats.verified),
            proofs: load(&self.stats.proofs),
            failed_checks: load(&self.stats.failed_checks),
            delivered: self.logs.iter().map(|log| load(&log.count)).collect(),
            reopened: self.reopened.count(),
        }
    }

    fn delivered(&self) -> u64 {
        self.logs
            .iter()
            .map(|log| log.count.load(Ordering::Relaxed))
            .sum()
    }
}

/// The host's capture thread: frames of its own voice into [`Fanout::relay`] (signed there when
/// the host has its key). Returns what it sent and when.
fn capture(
    root: &Fanout,
    speaker: SpeakerId,
    pace: Pace,
    duration: Duration,
    mut seq: u32,
    logs: &[Log],
) -> (Spoken, Vec<(u32, Instant)>) {
    let began = Instant::now();
    let until = began + duration;
    let mut sent = Vec::with_capacity(duration.as_millis() as usize / 20 + 1);
    let mut closed = ClosedLoop::new(|| logs.iter().map(|log| log.count.load(Ordering::Relaxed)));
    let mut tick = 0u32;
    while Instant::now() < until {
        match pace {
            Pace::Real => {
                let due = began + FRAME_INTERVAL * tick;
                tick += 1;
                if let Some(wait) = due.checked_duration_since(Instant::now()) {
                    std::thread::sleep(wait);
                }
            }
            Pace::Lockstep => {
                if !closed.ready(1) {
                    continue;
                }
                closed.sent();
            }
        }
        sent.push((seq, Instant::now()));
        root.relay(&ROOM, &frame(speaker, seq));
        seq = seq.wrapping_add(1);
    }
    let spoken = Spoken {
        frames: sent.len() as u64,
        next_seq: seq,
        sending: began.elapsed(),
        stalls: closed.stalls(),
    };
    (spoken, sent)
}

async fn plane_run(
    runtimes: &PlaneRuntimes,
    children: usize,
    checks: Checks,
    args: &Args,
) -> PlaneRun {
    let setup_began = Instant::now();
    let identity = Identity::ephemeral().expect("identity");
    let host_key = identity.signing_key().clone();
    let host = PeerKey::from(&host_key);
    let speaker = speaker_of(&host_key);
    let reopened = Reopened::default();

    let root = {
        let (gate, key) = (checks.gate(host), checks.key(&host_key));
        runtimes
            .root
            .run(async move {
                let node = real_node(identity, None, gate, key).await;
                // The host's own voice does not come back to its playback queue: nothing to take.
                drop(node.relay.open_room_with(ROOM, host_options()));
                node
            })
            .await
    };

    let middle_log = Log::default();
    let (middle, stats) = {
        let (gate, addr, parent) = (checks.gate(host), root.addr.clone(), root.peer);
        let reopened = reopened.clone();
        runtimes
            .middle
            .run(async move {
                let identity = Identity::ephemeral().expect("identity");
                let node = real_node(identity, Some(addr), gate, None).await;
                let (heard, stats) = node.relay.open_room(ROOM);
                tokio::spawn(keep_listening(node.relay.clone(), ROOM, parent, reopened));
                (node, (heard, stats))
            })
            .await
    };
    let (middle_heard, stats) = stats;
    // Its playback is recorded on the children's runtime: only the relay's own work counts.
    runtimes
        .children
        .spawn(middle_log.clone().record(middle_heard));
    attached(&root.relay, ROOM, 1, ATTACH_WITHIN).await;

    let mut logs = Vec::with_capacity(children);
    // Connect in batches: a QUIC handshake each, on a 2-core machine.
    for batch in (0..children).collect::<Vec<_>>().chunks(50) {
        let joins: Vec<_> = batch
            .iter()
            .map(|_| {
                let log = Log::default();
                logs.push(log.clone());
                let (gate, addr, parent) = (checks.gate(host), middle.addr.clone(), middle.peer);
                let reopened = reopened.clone();
                runtimes.children.spawn(async move {
                    let child = bare_node(Some(addr), gate, None).await;
                    let (heard, _) = child.relay.open_room(ROOM);
                    tokio::spawn(keep_listening(child.relay.clone(), ROOM, parent, reopened));
                    tokio::spawn(log.record(heard));
                })
            })
            .collect();
        for join in joins {
            join.await.expect("child setup");
        }
    }
    attached(&middle.relay, ROOM, children, ATTACH_WITHIN).await;
    let setup = setup_began.elapsed();

    let watch = Watch {
        runtimes,
        stats: &stats,
        logs: &logs,
        reopened: &reopened,
    };
    let shared_logs = Arc::new(logs.clone());
    let mut stretches = Vec::new();
    let mut sent_at = HashMap::new();
    let mut seq = 0u32;
    for (pace, duration, measured) in [
        (Pace::Real, args.warmup, false),
        (Pace::Real, args.paced_for, true),
        (Pace::Lockstep, args.lockstep_for, true),
    ] {
        let before = watch.snapshot();
        let (spoken, sent) = {
            let (root, logs) = (root.relay.clone(), Arc::clone(&shared_logs));
            runtimes
                .root
                .spawn_blocking(move || capture(&root, speaker, pace, duration, seq, &logs))
                .await
                .expect("capture thread")
        };
        tokio::time::sleep(TAIL).await;
        let bytes_sent = stats.bytes_sent.load(Ordering::Relaxed) - before.bytes_sent;
        settle(|| watch.delivered()).await;
        let after = watch.snapshot();
        if spoken.stalls > 0 {
            eprintln!(
                "  ({}: {} stalls of the slowest child)",
                pace.name(),
                spoken.stalls
            );
        }
        let seqs = seq..spoken.next_seq;
        seq = spoken.next_seq;
        if !measured {
            continue;
        }
        if pace == Pace::Real {
            sent_at.extend(sent);
        }
        stretches.push(Stretch {
            pace,
            seqs,
            wall: after.at - before.at,
            received: after.received - before.received,
            delivered: after
                .delivered
                .iter()
                .zip(&before.delivered)
                .map(|(a, b)| a - b)
                .collect(),
            dropped: after.dropped - before.dropped,
            bytes_sent,
            verified: after.verified - before.verified,
            proofs: after.proofs - before.proofs,
            failed_checks: after.failed_checks - before.failed_checks,
            middle_cpu: after.middle_cpu.since(before.middle_cpu),
            root_cpu: after.root_cpu.since(before.root_cpu),
            process_cpu: after.process_cpu.since(before.process_cpu),
            datagrams: after.datagrams.saturating_sub(before.datagrams),
            reopened: after.reopened - before.reopened,
            spoken,
        });
    }

    let paced = stretches
        .iter()
        .find(|s| s.pace == Pace::Real)
        .map(|s| s.seqs.clone())
        .unwrap_or_default();
    let (latencies, tally) = latencies(&middle_log, &logs, &sent_at, &paced);
    PlaneRun {
        children,
        checks,
        setup,
        stretches,
        latencies,
        tally,
        reopened: reopened.reasons(),
    }
}

fn signed_nanos(later: Instant, earlier: Instant) -> i64 {
    let nanos = |d: Duration| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX);
    match later.checked_duration_since(earlier) {
        Some(d) => nanos(d),
        None => -nanos(earlier.duration_since(later)),
    }
}

/// The hops' latencies of the frames in `seqs`, and how the children's frames' authenticity
/// went.
fn latencies(
    middle: &Log,
    children: &[Log],
    sent: &HashMap<u32, Instant>,
    seqs: &Range<u32>,
) -> (Latencies, Tally) {
    let middle: HashMap<u32, Instant> = middle
        .stamps
        .lock()
        .expect("stamps")
        .iter()
        .filter(|s| seqs.contains(&s.seq))
        .map(|s| (s.seq, s.at))
        .collect();
    let mut latencies = Latencies {
        first: middle
            .iter()
            .filter_map(|(seq, at)| Some(signed_nanos(*at, *sent.get(seq)?)))
            .collect(),
        ..Latencies::default()
    };
    let mut tally = Tally::default();
    for child in children {
        for stamp in child.stamps.lock().expect("stamps").iter() {
            if !seqs.contains(&stamp.seq) {
                continue;
            }
            tally.frames += 1;
            tally.held += u64::from(!stamp.playable);
            match stamp.auth.get() {
                Authenticity::VERIFIED => tally.verified += 1,
                Authenticity::REFUSED => tally.refused += 1,
                _ => {}
            }
            if let Some(in_at) = middle.get(&stamp.seq) {
                latencies.hop.push(signed_nanos(stamp.at, *in_at));
            }
            if let Some(sent_at) = sent.get(&stamp.seq) {
                latencies.both.push(signed_nanos(stamp.at, *sent_at));
            }
        }
    }
    (latencies, tally)
}

// ---------------------------------------------------------------------------------------------
// 3. Verify cost

/// µs per call of each step, from plain loops.
struct Costs {
    frames: u32,
    push: f64,
    hash: f64,
    sign: f64,
    beacon_sign: f64,
    auth_frame: f64,
    decode: f64,
    auth_proof: f64,
    expire: f64,
    beacon_verify: f64,
}

impl Costs {
    /// What a hop spends per frame of one voice: its own check, a fifth of a proof's (decoded
    /// and checked), an expiry pass per read (a frame, and a proof every fifth), and the
    /// beacons' share (2 a second against 50 frames).
    fn hop_per_frame(&self) -> f64 {
        let per_proof = 1.0 / FRAMES_PER_PROOF as f64;
        let beacons_per_frame = 1000.0 / BEACON_INTERVAL_MS as f64 / 50.0;
        self.auth_frame
            + per_proof * (self.decode + self.auth_proof)
            + (1.0 + per_proof) * self.expire
            + beacons_per_frame * self.beacon_verify
    }
}

fn verify_costs(n: u32) -> Costs {
    let key = SigningKey::from_bytes(&[0x13; 32]);
    let host = PeerKey::from(&key);
    let speaker = speaker_of(&key);
    let frames: Vec<AudioFrame> = (0..n).map(|seq| frame(speaker, seq)).collect();
    let per = |d: Duration, count: usize| us(d) / count.max(1) as f64;

    // The speaker.
    let mut signer = ProofSigner::new(key.clone(), ROOM);
    let mut proofs = Vec::with_capacity(frames.len() / FRAMES_PER_PROOF + 1);
    let began = Instant::now();
    for frame in &frames {
        proofs.extend(signer.push(std::hint::black_box(frame)));
    }
    proofs.extend(signer.flush());
    let push = per(began.elapsed(), frames.len());
    let began = Instant::now();
    for frame in &frames {
        std::hint::black_box(frame_hash(std::hint::black_box(frame)));
    }
    let hash = per(began.elapsed(), frames.len());
    let began = Instant::now();
    for proof in &proofs {
        std::hint::black_box(FrameProof::sign(
            &key,
            &ROOM,
            proof.first_seq,
            proof.hashes.clone(),
        ));
    }
    let sign = per(began.elapsed(), proofs.len());
    let beacons = (proofs.len() / 10).max(100);
    let newest = vec![(speaker, 1234)];
    let began = Instant::now();
    let signed: Vec<Progress> = (0..beacons as u32)
        .map(|n| Progress::sign(&key, &ROOM, n, n.wrapping_mul(25), newest.clone()))
        .collect();
    let beacon_sign = per(began.elapsed(), beacons);

    // A hop: frames and proofs as they come down a stream, a proof after every fifth frame.
    let encoded: Vec<Vec<u8>> = proofs.iter().map(FrameProof::encode).collect();
    let began = Instant::now();
    let decoded: Vec<FrameProof> = encoded
        .iter()
        .map(|bytes| FrameProof::decode(std::hint::black_box(bytes)).expect("a proof"))
        .collect();
    let decode = per(began.elapsed(), encoded.len());
    let mut auth = FrameAuth::<AudioFrame>::new(ROOM);
    let keys = [host];
    let (mut in_frames, mut in_proofs, mut in_expire) =
        (Duration::ZERO, Duration::ZERO, Duration::ZERO);
    let mut verified = 0usize;
    let mut reads = 0usize;
    for (batch, proof) in frames.chunks(FRAMES_PER_PROOF).zip(&decoded) {
        let now_ms = u64::from(batch[0].seq) * 20;
        let began = Instant::now();
        for frame in batch {
            // The node keeps a copy of each frame until its proof (for the recording).
            std::hint::black_box(auth.frame(frame, frame.clone(), now_ms));
        }
        in_frames += began.elapsed();
        let began = Instant::now();
        let settled = auth
            .proof(proof, &keys, now_ms)
            .expect("the speaker signed it");
        in_proofs += began.elapsed();
        verified += settled.verified.len();
        // As the node does after every read: a check for proofs overdue.
        let began = Instant::now();
        for _ in 0..=batch.len() {
            std::hint::black_box(auth.expire(now_ms));
        }
        in_expire += began.elapsed();
        reads += batch.len() + 1;
    }
    assert_eq!(verified, frames.len(), "every frame verifies");
    let began = Instant::now();
    for beacon in &signed {
        assert!(beacon.verify(&ROOM, &host), "the host signed it");
    }
    let beacon_verify = per(began.elapsed(), signed.len());

    Costs {
        frames: n,
        push,
        hash,
        sign,
        beacon_sign,
        auth_frame: per(in_frames, frames.len()),
        decode,
        auth_proof: per(in_proofs, decoded.len()),
        expire: per(in_expire, reads),
        beacon_verify,
    }
}

// ---------------------------------------------------------------------------------------------
// Output

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

fn pct_change(before: f64, after: f64) -> f64 {
    100.0 * (after - before) / before.max(1e-9)
}

fn verdict(ok: bool) -> &'static str {
    if ok { "ok" } else { "MISSED" }
}

fn header(columns: &[(&str, usize)]) {
    let names: Vec<String> = columns
        .iter()
        .map(|(name, width)| format!(" {name:<width$} "))
        .collect();
    let rules: Vec<String> = columns
        .iter()
        .map(|(_, width)| "-".repeat(width + 2))
        .collect();
    println!("|{}|", names.join("|"));
    println!("|{}|", rules.join("|"));
}

fn row(cells: &[(String, usize)]) {
    let cells: Vec<String> = cells
        .iter()
        .enumerate()
        .map(|(i, (cell, width))| {
            if i == 0 {
                format!(" {cell:<width$} ")
            } else {
                format!(" {cell:>width$} ")
            }
        })
        .collect();
    println!("|{}|", cells.join("|"));
}

/// The runs of `children` with `checks`.
fn runs_of(
    planes: &[PlaneRun],
    children: usize,
    checks: Checks,
) -> impl Iterator<Item = &PlaneRun> {
    planes
        .iter()
        .filter(move |run| run.children == children && run.checks == checks)
}

/// The stretches at `pace` of the runs of `children` with `checks`.
fn stretches_of(planes: &[PlaneRun], children: usize, checks: Checks, pace: Pace) -> Vec<&Stretch> {
    runs_of(planes, children, checks)
        .filter_map(|run| run.stretch(pace))
        .collect()
}

/// Sum over stretches of `value`, per sum of `per`.
fn ratio(
    stretches: &[&Stretch],
    value: impl Fn(&Stretch) -> f64,
    per: impl Fn(&Stretch) -> f64,
) -> f64 {
    let value: f64 = stretches.iter().map(|s| value(s)).sum();
    let per: f64 = stretches.iter().map(|s| per(s)).sum();
    value / per.max(1e-9)
}

fn print_bytes(speaks: &[SpeakRun], planes: &[PlaneRun], args: &Args) {
    println!();
    println!(
        "1. Authentication bytes: stream bytes per second of speech at 50 frames/s of 80-byte \
         payloads (98-byte frames), checks off (before) and on (after); the change is the \
         authentication's share of the voice's bytes"
    );
    println!();
    let w = [
        ("stream", 46),
        ("before B/s", 10),
        ("after B/s", 10),
        ("change", 8),
        ("target", 14),
    ];
    header(&w);
    let line = |what: String, before: f64, after: f64| {
        let change = pct_change(before, after);
        row(&[
            (what, w[0].1),
            (format!("{before:.0}"), w[1].1),
            (format!("{after:.0}"), w[2].1),
            (format!("{change:+.1} %"), w[3].1),
            (
                format!("≤ 30 % {}", verdict(change <= BYTES_TARGET_PCT)),
                w[4].1,
            ),
        ]);
    };
    let speak = |checks: Checks| {
        let runs: Vec<_> = speaks.iter().filter(|r| r.checks == checks).collect();
        runs.iter().map(|r| r.bytes_per_sec()).sum::<f64>() / runs.len().max(1) as f64
    };
    line(
        "speak stream: speaker → host".into(),
        speak(Checks::Off),
        speak(Checks::On),
    );
    for &children in &args.children {
        let listen = |checks: Checks| {
            let stretches = stretches_of(planes, children, checks, Pace::Real);
            // Per frame a child received, at 50 frames a second: a child that was re-attaching
            // for a moment (a stalled machine) was not sent the frames it missed.
            50.0 * ratio(
                &stretches,
                |s| s.bytes_sent as f64,
                |s| s.forwarded() as f64,
            )
        };
        line(
            format!("listen stream: relay → each of {children} children"),
            listen(Checks::Off),
            listen(Checks::On),
        );
    }
    println!();
    {
        use earshot_protocol::proof::{FRAMES_PER_PROOF, HASH_BYTES};
        let proof = 10 + FRAMES_PER_PROOF * HASH_BYTES + 64;
        let beacon = 10 + 8 + 64;
        let proofs_per_sec = 50 / FRAMES_PER_PROOF;
        let speak = (proof + 4) * proofs_per_sec;
        let listen = speak + (beacon + 4) * 2;
        println!(
            "On the wire: a frame is 2 + 98 bytes, a proof 4 + {proof} (10 of header, \
             {FRAMES_PER_PROOF} hashes of {HASH_BYTES}, a 64-byte signature), a beacon 4 + \
             {beacon} (one voice); so a speak stream carries 5000 B/s of voice and \
             {proofs_per_sec} proofs a second, {speak} B/s (+{:.1} %), and a listen stream also \
             the host's 2 beacons a second, {listen} B/s in all (+{:.1} %). Stream bytes only: \
             each QUIC packet adds ~60 bytes of QUIC, UDP and IP headers, which a proof sent \
             with a frame shares.",
            speak as f64 / 50.0,
            listen as f64 / 50.0
        );
    }
    for run in speaks {
        println!(
            "  speak, checks {:<3}: {} frames in {:.2} s, {} bytes: {:.0} B/s",
            run.checks.name(),
            run.spoken.frames,
            run.spoken.sending.as_secs_f64(),
            run.bytes,
            run.bytes_per_sec(),
        );
    }
}

fn print_cpu(planes: &[PlaneRun], args: &Args) {
    println!();
    println!(
        "2. Relay CPU per forwarded frame: host → middle relay (real swarm, {} tokio workers) → N \
         children (bare QUIC swarms on one 2-worker runtime); the middle relay's CPU time (all \
         its threads) per frame its children received, summed over {} rounds",
        args.relay_threads, args.rounds
    );
    println!();
    let w = [
        ("relay", 34),
        ("children", 8),
        ("pace", 8),
        ("before µs", 9),
        ("after µs", 9),
        ("change", 8),
        ("target", 14),
    ];
    header(&w);
    for &children in &args.children {
        for pace in [Pace::Real, Pace::Lockstep] {
            let per_frame = |checks: Checks| {
                ratio(
                    &stretches_of(planes, children, checks, pace),
                    |s| us(s.middle_cpu.total),
                    |s| s.forwarded() as f64,
                )
            };
            let (before, after) = (per_frame(Checks::Off), per_frame(Checks::On));
            let change = pct_change(before, after);
            let target = match pace {
                Pace::Real => format!("≤ +25 % {}", verdict(change <= CPU_TARGET_PCT)),
                Pace::Lockstep => "-".into(),
            };
            row(&[
                ("middle relay".into(), w[0].1),
                (children.to_string(), w[1].1),
                (pace.name().into(), w[2].1),
                (format!("{before:.2}"), w[3].1),
                (format!("{after:.2}"), w[4].1),
                (format!("{change:+.1} %"), w[5].1),
                (target, w[6].1),
            ]);
        }
    }
    for &children in &args.children {
        // The host sends each frame to its one child, the middle relay.
        let per_frame = |checks: Checks| {
            ratio(
                &stretches_of(planes, children, checks, Pace::Real),
                |s| us(s.root_cpu.total),
                |s| s.received as f64,
            )
        };
        let (before, after) = (per_frame(Checks::Off), per_frame(Checks::On));
        row(&[
            (format!("host, own voice (runs of {children})"), w[0].1),
            ("1".into(), w[1].1),
            (Pace::Real.name().into(), w[2].1),
            (format!("{before:.2}"), w[3].1),
            (format!("{after:.2}"), w[4].1),
            (format!("{:+.1} %", pct_change(before, after)), w[5].1),
            ("-".into(), w[6].1),
        ]);
    }
    println!();
    for &children in &args.children {
        let rounds = |checks: Checks| {
            stretches_of(planes, children, checks, Pace::Real)
                .iter()
                .map(|s| format!("{:.1}", s.middle_us()))
                .collect::<Vec<_>>()
                .join(", ")
        };
        println!(
            "{children} children at 50 fps, round by round (µs): before {}; after {}",
            rounds(Checks::Off),
            rounds(Checks::On)
        );
    }
    println!();
    println!(
        "Per run (middle relay µs per forwarded frame; kernel share of its CPU; UDP datagrams sent \
         on the machine, every process, per forwarded frame; the least served child's share of \
         the frames; what the middle relay checked):"
    );
    for run in planes {
        for s in &run.stretches {
            let checked = match run.checks {
                Checks::On => format!(
                    "verified {} of {} frames read, {} proofs, {} streams failed checks",
                    s.verified, s.received, s.proofs, s.failed_checks
                ),
                Checks::Off => format!("read {} frames", s.received),
            };
            println!(
                "  {:>3} children, checks {:<3}, {:<8}: {:>6.2} µs, kernel {:>3.0} %, UDP/fwd {:.2}, \
                 delivery min {:.1} %, skipped {}, reopened {}; process {:.2} µs/fwd, host {:.2} s \
                 CPU; {}; {} frames in {:.2} s, measured over {:.2} s",
                run.children,
                run.checks.name(),
                s.pace.name(),
                s.middle_us(),
                100.0 * s.middle_cpu.system_share(),
                s.datagrams as f64 / s.forwarded().max(1) as f64,
                s.delivery_min(),
                s.dropped,
                s.reopened,
                us(s.process_cpu.total) / s.forwarded().max(1) as f64,
                s.root_cpu.total.as_secs_f64(),
                checked,
                s.spoken.frames,
                s.spoken.sending.as_secs_f64(),
                s.wall.as_secs_f64(),
            );
        }
        if !run.reopened.is_empty() {
            println!(
                "    connected in {:.1} s; streams opened again: {}",
                run.setup.as_secs_f64(),
                run.reopened
            );
        }
    }
}

fn print_costs(costs: &Costs, speaks: &[SpeakRun]) {
    println!();
    println!(
        "3. Verify cost: plain loops over {} frames ({} proofs), µs per call; before, nothing is \
         done",
        costs.frames,
        costs.frames as usize / FRAMES_PER_PROOF
    );
    println!();
    let w = [
        ("step", 58),
        ("before µs", 9),
        ("after µs", 9),
        ("change", 10),
        ("target", 6),
    ];
    header(&w);
    let line = |what: &str, after: f64| {
        row(&[
            (what.into(), w[0].1),
            ("0".into(), w[1].1),
            (format!("{after:.2}"), w[2].1),
            (format!("{after:+.2}"), w[3].1),
            ("-".into(), w[4].1),
        ]);
    };
    line(
        "speaker: ProofSigner::push, per frame (amortised)",
        costs.push,
    );
    line("  of which frame_hash, per frame", costs.hash);
    line("  of which FrameProof::sign, per proof", costs.sign);
    line(
        "host: Progress::sign, per beacon (2 a second)",
        costs.beacon_sign,
    );
    line(
        "hop: FrameAuth::frame, per frame (hash, keep a copy)",
        costs.auth_frame,
    );
    line("hop: FrameProof::decode, per proof", costs.decode);
    line(
        "hop: FrameAuth::proof, per proof (verify, match 5)",
        costs.auth_proof,
    );
    line("hop: FrameAuth::expire, per read", costs.expire);
    line("hop: Progress::verify, per beacon", costs.beacon_verify);
    line(
        "hop: all of it, per frame of one voice",
        costs.hop_per_frame(),
    );
    let speaker = |checks: Checks| {
        let runs: Vec<_> = speaks.iter().filter(|r| r.checks == checks).collect();
        let cpu: f64 = runs.iter().map(|r| us(r.cpu.total)).sum();
        let frames: u64 = runs.iter().map(|r| r.spoken.frames).sum();
        cpu / frames.max(1) as f64
    };
    let (before, after) = (speaker(Checks::Off), speaker(Checks::On));
    row(&[
        (
            "speaker node: its CPU per frame sent (speak stream runs)".into(),
            w[0].1,
        ),
        (format!("{before:.2}"), w[1].1),
        (format!("{after:.2}"), w[2].1),
        (format!("{:+.1} %", pct_change(before, after)), w[3].1),
        ("-".into(), w[4].1),
    ]);
    println!();
    println!(
        "One voice at 50 frames/s costs a hop {:.0} µs of CPU a second ({:.3} % of a core) to \
         check, whatever its number of children; the speaker {:.0} µs a second to sign. The \
         issue sets no budget for these: table 2's relay CPU is the one judged.",
        50.0 * costs.hop_per_frame(),
        50.0 * costs.hop_per_frame() / 1e4,
        50.0 * costs.push,
    );
}

/// Latency percentiles, in µs.
struct Summary {
    count: usize,
    p50: f64,
    p99: f64,
}

fn summary(nanos: impl Iterator<Item = i64>) -> Summary {
    let mut nanos: Vec<i64> = nanos.collect();
    nanos.sort_unstable();
    let at = |p: f64| {
        if nanos.is_empty() {
            return 0.0;
        }
        let index = ((nanos.len() as f64 - 1.0) * p).round() as usize;
        nanos[index.min(nanos.len() - 1)] as f64 / 1000.0
    };
    Summary {
        count: nanos.len(),
        p50: at(0.5),
        p99: at(0.99),
    }
}

fn print_latency(planes: &[PlaneRun], args: &Args) {
    println!();
    println!(
        "4. Latency at the real pace (µs): every node stamps a frame once it has read (and \
         checked) it; all rounds together"
    );
    println!();
    let w = [
        ("path", 42),
        ("children", 8),
        ("pct", 3),
        ("before", 8),
        ("after", 8),
        ("change", 8),
        ("target", 14),
    ];
    header(&w);
    type Pick = fn(&Latencies) -> &[i64];
    let paths: [(&str, Pick); 3] = [
        ("relay hop: middle in → child out", |l| &l.hop),
        ("first hop: host sends (signs) → middle in", |l| &l.first),
        ("two hops: host sends → child out", |l| &l.both),
    ];
    for &children in &args.children {
        for (i, (what, pick)) in paths.iter().enumerate() {
            let of = |checks: Checks| {
                summary(
                    runs_of(planes, children, checks)
                        .flat_map(|run| pick(&run.latencies).iter().copied()),
                )
            };
            let (before, after) = (of(Checks::Off), of(Checks::On));
            for (pct, b, a) in [
                ("p50", before.p50, after.p50),
                ("p99", before.p99, after.p99),
            ] {
                let target = if i == 0 && pct == "p50" {
                    format!("≤ +20 ms {}", verdict(a - b <= us(HOP_P50_TARGET)))
                } else {
                    "-".into()
                };
                row(&[
                    ((*what).into(), w[0].1),
                    (children.to_string(), w[1].1),
                    (pct.into(), w[2].1),
                    (format!("{b:.0}"), w[3].1),
                    (format!("{a:.0}"), w[4].1),
                    (format!("{:+.0}", a - b), w[5].1),
                    (target, w[6].1),
                ]);
            }
            if i == 0 {
                println!(
                    "  ({children} children: {} hops before, {} after)",
                    before.count, after.count
                );
            }
        }
    }
    println!();
    for &children in &args.children {
        let tally = runs_of(planes, children, Checks::On).fold(Tally::default(), |t, run| Tally {
            frames: t.frames + run.tally.frames,
            held: t.held + run.tally.held,
            verified: t.verified + run.tally.verified,
            refused: t.refused + run.tally.refused,
        });
        println!(
            "{children} children, checks on: of {} frames the children heard, {} were held on \
             arrival for their proof (could not play before it), {} ended verified, {} refused",
            tally.frames, tally.held, tally.verified, tally.refused
        );
    }
    println!(
        "Mouth-to-ear: frames play before their proofs, so checking adds to it only what it adds \
         to each hop above (the player's jitter buffer is not part of this bench: `audio_path` \
         measures it)."
    );
}
