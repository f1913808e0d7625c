//! The audio relay plane (`/earshot/audio/2` over QUIC on 127.0.0.1, one process): how much one
//! relay hop adds to a frame's latency, next to a raw TCP forwarder, and how many frames a relay
//! forwards per CPU second when it feeds 50, 200 and 500 children.
//!
//! `cargo bench -p earshot-node --bench relay_plane` (about 80 s). Options after `--`:
//! `--children 50,200` (fan-out sizes), `--relay-threads N` (the relay's tokio workers, default
//! 2 as in the CLI), `--only hops` or `--only fanout`, `--quick` (shorter runs), `--json` (one
//! JSON line after the tables).
//!
//! Every node runs in its own multi-thread tokio runtime, standing for its own process; each
//! runtime records its threads' ids, so the relay's CPU time (all of its threads: swarm, QUIC
//! endpoint and connection drivers, the audio plane's tasks) is read from
//! `/proc/self/task/<tid>/schedstat`. The process's CPU time (`/proc/self/stat`) is printed
//! next to it. The machine's load average is printed too: other work shares the CPUs.
//!
//! 1. **Hop latency.** A source node relays its own frames (98-byte [`AudioFrame`]s: an 80-byte
//!    payload, a 32 kbps Opus frame) to a parent that listens to it, and the parent relays them
//!    to a child that listens to the parent: three real nodes (`net::build_swarm`, every
//!    behaviour) and the real [`Fanout`]. A frame is "in" at the parent at the parent's own
//!    arrival stamp (`Heard::at`: the relay has read and decoded it and put it into its
//!    children's fan-out) and "out" at the child at the child's stamp; the hop is the
//!    difference, per sequence number (signed: two threads stamp it). The same frames also go
//!    source → forwarder → sink over raw tokio TCP (nodelay, one `write_all` per frame), stamped
//!    when the forwarder has read a frame (before writing it on) and when the sink has. One
//!    source thread with a deadline clock feeds both paths, the TCP one half an interval after
//!    the relay one, so both see the same machine at the same time. Twice: a frame every 1 ms
//!    (many samples) and every 20 ms (the real pace: threads wake up for every frame).
//! 2. **Fan-out.** One relay node (the real swarm, set up as a host: loudest-speaker selection
//!    on, admitting everyone) hosts a room; a speaker (a bare swarm with QUIC and the stream
//!    behaviour only) speaks to it over a speak stream, fed by a plain capture thread; N
//!    children, each its own bare swarm with its own QUIC connection, listen with
//!    [`Fanout::listen`] and count what their playback queue hands out. The children share
//!    one 2-worker runtime, so on a 2-core machine they compete with the relay for CPU (they
//!    cost about as much as the relay does). Each size runs: idle (keep-alives only), the real
//!    pace (50 frames/s), lockstep (the next frame once every child has the last: as at the
//!    real pace each frame is a packet of its own, but back to back), max rate (up to 12
//!    frames ahead of the slowest child: QUIC packs queued frames together) and overload (open
//!    loop: the relay's drop-oldest queues skip what children cannot take).

mod support;

use std::collections::HashMap;
use std::fs;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use earshot_node::fanout::{Fanout, FanoutStats, PLAYBACK_QUEUE_FRAMES};
use earshot_node::identity::Identity;
use earshot_node::net::{NetConfig, build_swarm};
use earshot_protocol::RoomId;
use earshot_protocol::frame::{AudioFrame, SAMPLES_PER_FRAME, SpeakerId, flags};
use futures::StreamExt;
use libp2p::multiaddr::Protocol;
use libp2p::swarm::{NetworkBehaviour, SwarmEvent};
use libp2p::{Multiaddr, PeerId, Swarm};
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

use crate::support::{
    ClosedLoop, CommandLine, Cpu, FRAME_INTERVAL, NodeRuntime, PAYLOAD_BYTES, Reopened, Spoken,
    admit_all, attached, host_options, keep_listening, listen, load_average, poll_forever,
    print_machine, process_cpu, settle, udp_datagrams_sent,
};

const ROOM: RoomId = RoomId([9; 16]);
/// Targets from the issue.
const HOP_P99_TARGET: Duration = Duration::from_millis(1);
const RAW_RATIO_TARGET: f64 = 3.0;
const PER_CORE_TARGET: f64 = 100_000.0;
/// How long a relay may take to have all its children attached.
const ATTACH_WITHIN: Duration = Duration::from_secs(30);

fn main() {
    let args = Args::parse();
    let start = Instant::now();
    let load_before = load_average();
    let control = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("control runtime");

    let paces = if args.quick {
        vec![(Duration::from_millis(1), 1_000), (FRAME_INTERVAL, 100)]
    } else {
        vec![(Duration::from_millis(1), 3_000), (FRAME_INTERVAL, 400)]
    };
    let mut hops = Vec::new();
    let paces = if args.only.as_deref() == Some("fanout") {
        Vec::new()
    } else {
        paces
    };
    for (interval, frames) in paces {
        eprintln!("hop latency: a frame every {interval:?}, {frames} frames per path");
        let trio = Trio::new();
        hops.push(control.block_on(hop_run(&trio, interval, frames, start)));
        trio.shutdown();
    }

    let mut fanouts = Vec::new();
    let sizes = if args.only.as_deref() == Some("hops") {
        &[][..]
    } else {
        &args.children[..]
    };
    for &children in sizes {
        eprintln!("fan-out: {children} children");
        let runtimes = FanoutRuntimes::new(args.relay_threads);
        fanouts.push(control.block_on(fanout(&runtimes, children, &args, start)));
        runtimes.shutdown();
    }

    println!();
    print_machine("relay_plane", &load_before);
    if !hops.is_empty() {
        print_hops(&hops);
    }
    if !fanouts.is_empty() {
        print_fanouts(&fanouts, &args);
    }
    if args.json {
        println!("{}", json(&hops, &fanouts, &args));
    }
}

struct Args {
    children: Vec<usize>,
    relay_threads: usize,
    quick: bool,
    json: bool,
    /// Run only the hop latencies or only the fan-out.
    only: Option<String>,
}

impl Args {
    fn parse() -> Self {
        let line = CommandLine::read();
        Self {
            children: line.children(&[50, 200, 500]),
            relay_threads: line.relay_threads(),
            quick: line.flag("--quick"),
            json: line.flag("--json"),
            only: line.value("--only").map(str::to_owned),
        }
    }

    /// How long each fan-out size runs idle, at the real pace, in each closed loop, and
    /// overloaded.
    fn fanout_secs(&self) -> (Duration, Duration, Duration, Duration) {
        let secs = Duration::from_secs;
        if self.quick {
            (secs(1), secs(2), secs(1), secs(1))
        } else {
            (secs(2), secs(4), secs(3), secs(2))
        }
    }
}

// ---------------------------------------------------------------------------------------------
// UDP

/// Datagrams each IPv4 UDP socket dropped (its receive buffer was full), by local port
/// (`/proc/net/udp`).
fn udp_drops_by_port() -> HashMap<u16, u64> {
    let Ok(table) = fs::read_to_string("/proc/net/udp") else {
        return HashMap::new();
    };
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let port = fields.get(1)?.rsplit_once(':')?.1;
            let port = u16::from_str_radix(port, 16).ok()?;
            Some((port, fields.last()?.parse().ok()?))
        })
        .collect()
}

fn udp_port(addr: &Multiaddr) -> Option<u16> {
    addr.iter().find_map(|protocol| match protocol {
        Protocol::Udp(port) => Some(port),
        _ => None,
    })
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

/// A node as `earshot` runs it: the full behaviour (gossipsub, Kademlia, identify …) and QUIC.
async fn real_node(dial: Option<Multiaddr>) -> Endpoint {
    let identity = Identity::ephemeral().expect("identity");
    let swarm = build_swarm(&identity, &NetConfig::default()).expect("swarm");
    let control = swarm.behaviour().stream.new_control();
    let (peer, addr) = drive(swarm, dial).await;
    Endpoint {
        relay: Fanout::start(control, admit_all(), None),
        peer,
        addr,
    }
}

/// A swarm with QUIC and the stream behaviour only: the many children of the fan-out, which are
/// not what is measured.
async fn bare_node(dial: Option<Multiaddr>) -> Endpoint {
    let swarm = libp2p::SwarmBuilder::with_new_identity()
        .with_tokio()
        .with_quic()
        .with_behaviour(|_| libp2p_stream::Behaviour::new())
        .expect("behaviour")
        .with_swarm_config(|config| config.with_idle_connection_timeout(Duration::from_secs(60)))
        .build();
    let control = swarm.behaviour().new_control();
    let (peer, addr) = drive(swarm, dial).await;
    Endpoint {
        relay: Fanout::start(control, admit_all(), None),
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

/// A 98-byte frame whose payload starts with its send time (nanoseconds since `start`).
fn frame(seq: u32, start: Instant) -> AudioFrame {
    let mut payload = vec![0x5a; PAYLOAD_BYTES];
    payload[..8].copy_from_slice(&nanos_since(start).to_be_bytes());
    AudioFrame {
        speaker: SpeakerId(0xeab5_0001),
        seq,
        timestamp: seq.wrapping_mul(SAMPLES_PER_FRAME),
        level: 30,
        flags: flags::VOICE | flags::FEC,
        payload,
        tag: None,
    }
}

fn nanos_since(start: Instant) -> u64 {
    u64::try_from(start.elapsed().as_nanos()).expect("runs for less than 500 years")
}

// ---------------------------------------------------------------------------------------------
// 1. Hop latency

/// Three runtimes for source, parent (or forwarder) and child (or sink), two workers each as in
/// the CLI.
struct Trio {
    source: NodeRuntime,
    parent: NodeRuntime,
    child: NodeRuntime,
}

impl Trio {
    fn new() -> Self {
        Self {
            source: NodeRuntime::new("source", 2),
            parent: NodeRuntime::new("parent", 2),
            child: NodeRuntime::new("child", 2),
        }
    }

    fn shutdown(self) {
        self.source.shutdown();
        self.parent.shutdown();
        self.child.shutdown();
    }
}

/// Per sequence number: when it was sent, when it was in at the middle node, when it was out at
/// the last one (nanoseconds since the bench started).
#[derive(Default)]
struct PathTimes {
    sent: HashMap<u32, u64>,
    middle: HashMap<u32, u64>,
    end: HashMap<u32, u64>,
    elapsed: Duration,
}

impl PathTimes {
    /// Hop latencies in nanoseconds (middle → end), skipping the first `warmup` frames. Signed:
    /// the two ends are timed by different threads, so a hop faster than the middle's recorder
    /// task is negative (rare; it shows in the low percentiles only).
    fn hop(&self, warmup: u32) -> Vec<i64> {
        self.since(&self.middle, warmup)
    }

    /// End-to-end latencies in nanoseconds (sent → end): two hops.
    fn end_to_end(&self, warmup: u32) -> Vec<i64> {
        self.since(&self.sent, warmup)
    }

    /// One hop with the sender's side: sent → middle.
    fn first_hop(&self, warmup: u32) -> Vec<i64> {
        self.middle
            .iter()
            .filter(|(seq, _)| **seq >= warmup)
            .filter_map(|(seq, middle)| Some(signed(*middle) - signed(*self.sent.get(seq)?)))
            .collect()
    }

    fn since(&self, from: &HashMap<u32, u64>, warmup: u32) -> Vec<i64> {
        self.end
            .iter()
            .filter(|(seq, _)| **seq >= warmup)
            .filter_map(|(seq, end)| Some(signed(*end) - signed(*from.get(seq)?)))
            .collect()
    }
}

fn signed(nanos: u64) -> i64 {
    i64::try_from(nanos).expect("runs for less than 292 years")
}

struct HopRun {
    interval: Duration,
    frames: u32,
    relay: PathTimes,
    raw: PathTimes,
}

impl HopRun {
    fn warmup(&self) -> u32 {
        self.frames / 10
    }
}

/// Records (seq, arrival) of what a playback queue hands out, until `frames` arrived or nothing
/// came for 2 s.
async fn record_heard(
    mut heard: mpsc::Receiver<earshot_node::fanout::Heard>,
    frames: u32,
    start: Instant,
) -> Vec<(u32, u64)> {
    let mut times = Vec::with_capacity(frames as usize);
    while times.len() < frames as usize {
        match tokio::time::timeout(Duration::from_secs(2), heard.recv()).await {
            // The relay stamps each frame as it arrives (`Heard::at`).
            Ok(Some(heard)) => times.push((
                heard.frame.seq,
                u64::try_from(heard.at.saturating_duration_since(start).as_nanos())
                    .unwrap_or(u64::MAX),
            )),
            _ => break,
        }
    }
    times
}

/// Collects the (seq, time) stamps of the raw TCP path, until `frames` arrived or nothing came
/// for 2 s.
async fn record_seqs(mut seqs: mpsc::Receiver<(u32, u64)>, frames: u32) -> Vec<(u32, u64)> {
    let mut times = Vec::with_capacity(frames as usize);
    while times.len() < frames as usize {
        match tokio::time::timeout(Duration::from_secs(2), seqs.recv()).await {
            Ok(Some(stamp)) => times.push(stamp),
            _ => break,
        }
    }
    times
}

/// Reads one `u16`-length-prefixed frame into `buf` (prefix included); `false` at the end.
async fn read_prefixed<R: AsyncReadExt + Unpin>(reader: &mut R, buf: &mut Vec<u8>) -> bool {
    let mut len = [0u8; 2];
    if reader.read_exact(&mut len).await.is_err() {
        return false;
    }
    buf.clear();
    buf.extend_from_slice(&len);
    buf.resize(2 + usize::from(u16::from_be_bytes(len)), 0);
    reader.read_exact(&mut buf[2..]).await.is_ok()
}

/// The sequence number of a prefixed encoded frame (bytes 5..9 of the frame).
fn prefixed_seq(buf: &[u8]) -> u32 {
    u32::from_be_bytes([buf[7], buf[8], buf[9], buf[10]])
}

fn prefixed(frame: &AudioFrame) -> Vec<u8> {
    let bytes = frame.encode();
    let mut buf = u16::try_from(bytes.len())
        .expect("a frame is under 64 KiB")
        .to_be_bytes()
        .to_vec();
    buf.extend_from_slice(&bytes);
    buf
}

/// Source → parent → child through the real audio plane, and source → forwarder → sink over raw
/// tokio TCP, fed by one thread that sends each frame on the first path and, half an interval
/// later, on the second: both see the same machine at the same time.
async fn hop_run(trio: &Trio, interval: Duration, frames: u32, start: Instant) -> HopRun {
    // The audio plane: three real nodes.
    let source = trio.source.run(real_node(None)).await;
    let parent = trio.parent.run(real_node(Some(source.addr.clone()))).await;
    let child = trio.child.run(real_node(Some(parent.addr.clone()))).await;
    let _source_heard = source.relay.open_room_with(ROOM, host_options());
    let (parent_heard, _) = parent.relay.open_room(ROOM);
    let (child_heard, _) = child.relay.open_room(ROOM);
    let reopened = Reopened::default();
    trio.parent.spawn(keep_listening(
        parent.relay.clone(),
        ROOM,
        source.peer,
        reopened.clone(),
    ));
    trio.child.spawn(keep_listening(
        child.relay.clone(),
        ROOM,
        parent.peer,
        reopened.clone(),
    ));
    attached(&source.relay, ROOM, 1, ATTACH_WITHIN).await;
    attached(&parent.relay, ROOM, 1, ATTACH_WITHIN).await;
    let relay_middle = trio.parent.spawn(record_heard(parent_heard, frames, start));
    let relay_end = trio.child.spawn(record_heard(child_heard, frames, start));

    // Raw TCP: each end stamps a frame as soon as it has read it (as the relay stamps `Heard`).
    let (sink_seqs, sink_rx) = mpsc::channel(PLAYBACK_QUEUE_FRAMES);
    let (fwd_seqs, fwd_rx) = mpsc::channel(PLAYBACK_QUEUE_FRAMES);
    let raw_end = trio.child.spawn(record_seqs(sink_rx, frames));
    let raw_middle = trio.parent.spawn(record_seqs(fwd_rx, frames));
    let sink = trio
        .child
        .run(async move {
            let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
            let addr = listener.local_addr().expect("addr");
            tokio::spawn(async move {
                let (stream, _) = listener.accept().await.expect("accept");
                stream.set_nodelay(true).expect("nodelay");
                let mut reader = BufReader::new(stream);
                let mut buf = Vec::new();
                while read_prefixed(&mut reader, &mut buf).await {
                    let _ = sink_seqs.try_send((prefixed_seq(&buf), nanos_since(start)));
                }
            });
            addr
        })
        .await;
    let forwarder = trio
        .parent
        .run(async move {
            let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
            let addr = listener.local_addr().expect("addr");
            let mut out = TcpStream::connect(sink).await.expect("connect to sink");
            out.set_nodelay(true).expect("nodelay");
            tokio::spawn(async move {
                let (stream, _) = listener.accept().await.expect("accept");
                stream.set_nodelay(true).expect("nodelay");
                let mut reader = BufReader::new(stream);
                let mut buf = Vec::new();
                while read_prefixed(&mut reader, &mut buf).await {
                    // Stamped before the write: on loopback the write can wake the sink on
                    // this very core, which then runs first.
                    let at = nanos_since(start);
                    if out.write_all(&buf).await.is_err() {
                        break;
                    }
                    let _ = fwd_seqs.try_send((prefixed_seq(&buf), at));
                }
            });
            addr
        })
        .await;

    // The source: a plain thread with a deadline clock, like the node's capture thread.
    let sender = source.relay.clone();
    let (relay_sent, raw_sent, relay_elapsed, raw_elapsed) = trio
        .source
        .spawn_blocking(move || {
            let mut raw = std::net::TcpStream::connect(forwarder).expect("connect to forwarder");
            raw.set_nodelay(true).expect("nodelay");
            let sleep_until = |due: Instant| {
                if let Some(wait) = due.checked_duration_since(Instant::now()) {
                    std::thread::sleep(wait);
                }
            };
            let mut relay_sent = Vec::with_capacity(frames as usize);
            let mut raw_sent = Vec::with_capacity(frames as usize);
            let began = Instant::now();
            for seq in 0..frames {
                let due = began + interval * seq;
                sleep_until(due);
                relay_sent.push((seq, nanos_since(start)));
                sender.relay(&ROOM, &frame(seq, start));
                sleep_until(due + interval / 2);
                let bytes = prefixed(&frame(seq, start));
                raw_sent.push((seq, nanos_since(start)));
                std::io::Write::write_all(&mut raw, &bytes).expect("write to forwarder");
            }
            let elapsed = began.elapsed();
            (relay_sent, raw_sent, elapsed, elapsed)
        })
        .await
        .expect("source thread");
    let times =
        |sent: Vec<(u32, u64)>, middle: Vec<(u32, u64)>, end: Vec<(u32, u64)>, elapsed| PathTimes {
            sent: sent.into_iter().collect(),
            middle: middle.into_iter().collect(),
            end: end.into_iter().collect(),
            elapsed,
        };
    let relay = times(
        relay_sent,
        relay_middle.await.expect("recorder"),
        relay_end.await.expect("recorder"),
        relay_elapsed,
    );
    let raw = times(
        raw_sent,
        raw_middle.await.expect("recorder"),
        raw_end.await.expect("recorder"),
        raw_elapsed,
    );
    if reopened.count() > 0 {
        eprintln!("  (listen streams reopened: {})", reopened.reasons());
    }
    HopRun {
        interval,
        frames,
        relay,
        raw,
    }
}

// ---------------------------------------------------------------------------------------------
// 2. Fan-out

struct FanoutRuntimes {
    relay: NodeRuntime,
    children: NodeRuntime,
    speaker: NodeRuntime,
}

impl FanoutRuntimes {
    fn new(relay_threads: usize) -> Self {
        Self {
            relay: NodeRuntime::new("relay", relay_threads),
            children: NodeRuntime::new("children", 2),
            speaker: NodeRuntime::new("speaker", 1),
        }
    }

    fn shutdown(self) {
        self.speaker.shutdown();
        self.children.shutdown();
        self.relay.shutdown();
    }
}

/// How the speaker feeds the relay in a measured stretch.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Mode {
    /// Nobody speaks: the relay only sends each child a keep-alive every 40 ms.
    Idle,
    /// One frame per 20 ms from a deadline clock; a full speak queue drops the frame, as the
    /// capture thread does.
    RealPace,
    /// Closed loop, one frame at a time: the next frame goes once every child has the last one.
    /// As at the real pace, every frame to every child is a QUIC packet of its own; this is the
    /// relay's capacity for real traffic (more children, or more speakers, at 50 frames/s).
    Lockstep,
    /// Closed loop, up to [`MAX_RATE_WINDOW`] frames ahead of the slowest child, so nothing is
    /// dropped but a child's writer often finds several frames queued and QUIC packs them into
    /// one packet: the capacity of a relay that has fallen behind.
    MaxRate,
    /// Open loop: `blocking_send` as fast as the speak stream takes frames. The relay reads far
    /// more than its children can take and its drop-oldest queues skip the rest.
    Overload,
}

/// Frames the max-rate speaker may be ahead of the slowest child: under the relay's 16-frame
/// child queue, so that no child lags.
const MAX_RATE_WINDOW: u64 = 12;

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Idle => "idle",
            Mode::RealPace => "50 fps",
            Mode::Lockstep => "lockstep",
            Mode::MaxRate => "max rate",
            Mode::Overload => "overload",
        }
    }

    /// Closed loop: how many frames the speaker may be ahead of the slowest child.
    fn window(self) -> Option<u64> {
        match self {
            Mode::Lockstep => Some(1),
            Mode::MaxRate => Some(MAX_RATE_WINDOW),
            Mode::Idle | Mode::RealPace | Mode::Overload => None,
        }
    }
}

/// One measured stretch of the fan-out.
#[derive(Debug)]
struct Stretch {
    mode: Mode,
    /// How long the speaker sent.
    sending: Duration,
    /// Until the children stopped receiving: what CPU time is measured over.
    wall: Duration,
    /// Frames the speaker handed to its speak stream.
    spoken: u64,
    /// Frames the relay read from the speaker (and put into the fan-out).
    received: u64,
    /// Frames the children's playback queues handed out, per child.
    delivered: Vec<u64>,
    /// Frame copies the relay skipped for children that fell behind.
    dropped: u64,
    relay_cpu: Cpu,
    process_cpu: Cpu,
    /// UDP datagrams sent on this machine (data and acknowledgements, every socket).
    datagrams: u64,
    /// UDP datagrams dropped because a receive buffer was full: at the relay's socket, and at
    /// the children's.
    relay_udp_drops: u64,
    children_udp_drops: u64,
    /// Listen streams the children had to open again.
    reopened: u64,
}

impl Stretch {
    /// UDP datagrams (all of them, acknowledgements included) per forwarded frame.
    fn datagrams_per_frame(&self) -> f64 {
        self.datagrams as f64 / self.forwarded().max(1) as f64
    }

    fn forwarded(&self) -> u64 {
        self.delivered.iter().sum()
    }

    fn in_per_sec(&self) -> f64 {
        self.received as f64 / self.sending.as_secs_f64()
    }

    fn forwarded_per_sec(&self) -> f64 {
        self.forwarded() as f64 / self.sending.as_secs_f64()
    }

    fn relay_us_per_frame(&self) -> f64 {
        self.relay_cpu.total.as_secs_f64() * 1e6 / self.forwarded().max(1) as f64
    }

    fn process_us_per_frame(&self) -> f64 {
        self.process_cpu.total.as_secs_f64() * 1e6 / self.forwarded().max(1) as f64
    }

    /// Forwarded frames per second of the relay's CPU time.
    fn per_core(&self) -> f64 {
        self.forwarded() as f64 / self.relay_cpu.total.as_secs_f64().max(1e-9)
    }

    /// The relay's CPU time per wall second, in cores.
    fn relay_cores(&self) -> f64 {
        self.relay_cpu.total.as_secs_f64() / self.wall.as_secs_f64()
    }

    /// Each child's share of what the relay received, in % (min, average).
    fn delivery(&self) -> (f64, f64) {
        let received = self.received.max(1) as f64;
        let min = self.delivered.iter().copied().min().unwrap_or(0) as f64;
        let avg = self.forwarded() as f64 / self.delivered.len().max(1) as f64;
        (100.0 * min / received, 100.0 * avg / received)
    }
}

struct FanoutRun {
    children: usize,
    setup: Duration,
    /// Listen streams the children had to open again while connecting.
    reopened_in_setup: u64,
    /// Why listen streams had to be opened again (setup and stretches).
    reopened: String,
    stretches: Vec<Stretch>,
}

struct Snapshot {
    at: Instant,
    datagrams: u64,
    relay_udp_drops: u64,
    children_udp_drops: u64,
    reopened: u64,
    received: u64,
    dropped: u64,
    delivered: Vec<u64>,
    relay_cpu: Cpu,
    process_cpu: Cpu,
}

/// What the fan-out watches.
struct Watch<'a> {
    runtimes: &'a FanoutRuntimes,
    stats: &'a FanoutStats,
    counters: &'a [Arc<AtomicU64>],
    reopened: &'a Reopened,
    relay_port: Option<u16>,
    child_ports: &'a [u16],
}

impl Watch<'_> {
    fn snapshot(&self) -> Snapshot {
        let drops = udp_drops_by_port();
        let drops_at = |port: &u16| drops.get(port).copied().unwrap_or(0);
        Snapshot {
            at: Instant::now(),
            datagrams: udp_datagrams_sent(),
            relay_udp_drops: self.relay_port.as_ref().map_or(0, drops_at),
            children_udp_drops: self.child_ports.iter().map(drops_at).sum(),
            reopened: self.reopened.count(),
            received: self.stats.received.load(Ordering::Relaxed),
            dropped: self.stats.dropped.load(Ordering::Relaxed),
            delivered: self
                .counters
                .iter()
                .map(|c| c.load(Ordering::Relaxed))
                .collect(),
            relay_cpu: self.runtimes.relay.cpu(),
            process_cpu: process_cpu(),
        }
    }
}

/// The speaker's capture thread: frames go into the speak stream's queue from a plain thread,
/// as in the node (audio never waits on the network).
fn capture(
    voice: &mpsc::Sender<AudioFrame>,
    mode: Mode,
    duration: Duration,
    mut seq: u32,
    counters: &[Arc<AtomicU64>],
    start: Instant,
) -> Spoken {
    let began = Instant::now();
    let until = began + duration;
    let mut frames = 0u64;
    let mut closed = ClosedLoop::new(|| counters.iter().map(|c| c.load(Ordering::Relaxed)));
    let mut tick = 0u32;
    while Instant::now() < until {
        match mode {
            Mode::Idle => {
                std::thread::sleep(until.saturating_duration_since(Instant::now()));
                continue;
            }
            Mode::RealPace => {
                let due = began + FRAME_INTERVAL * tick;
                tick += 1;
                if let Some(wait) = due.checked_duration_since(Instant::now()) {
                    std::thread::sleep(wait);
                }
                if voice.try_send(frame(seq, start)).is_err() {
                    continue;
                }
            }
            Mode::Overload => {
                if voice.blocking_send(frame(seq, start)).is_err() {
                    break;
                }
            }
            Mode::Lockstep | Mode::MaxRate => {
                if !closed.ready(mode.window().unwrap_or(1)) {
                    continue;
                }
                if voice.blocking_send(frame(seq, start)).is_err() {
                    break;
                }
                closed.sent();
            }
        }
        frames += 1;
        seq = seq.wrapping_add(1);
    }
    Spoken {
        frames,
        next_seq: seq,
        sending: began.elapsed(),
        stalls: closed.stalls(),
    }
}

async fn fanout(
    runtimes: &FanoutRuntimes,
    children: usize,
    args: &Args,
    start: Instant,
) -> FanoutRun {
    let relay = runtimes.relay.run(real_node(None)).await;
    let (relay_heard, stats) = relay.relay.open_room_with(ROOM, host_options());
    // The host's own playback queue fills and then refuses frames (`try_send`); nobody plays.
    let _relay_heard = relay_heard;

    let setup_began = Instant::now();
    let reopened = Reopened::default();
    let mut counters = Vec::with_capacity(children);
    let mut child_ports = Vec::with_capacity(children);
    // Connect in batches: a QUIC handshake each, on a 2-core machine.
    for batch in (0..children).collect::<Vec<_>>().chunks(50) {
        let joins: Vec<_> = batch
            .iter()
            .map(|_| {
                let counter = Arc::new(AtomicU64::new(0));
                counters.push(Arc::clone(&counter));
                let addr = relay.addr.clone();
                let parent = relay.peer;
                let reopened = reopened.clone();
                runtimes.children.spawn(async move {
                    let child = bare_node(Some(addr)).await;
                    let (mut heard, _) = child.relay.open_room(ROOM);
                    tokio::spawn(keep_listening(child.relay.clone(), ROOM, parent, reopened));
                    tokio::spawn(async move {
                        while heard.recv().await.is_some() {
                            counter.fetch_add(1, Ordering::Relaxed);
                        }
                    });
                    udp_port(&child.addr)
                })
            })
            .collect();
        for join in joins {
            child_ports.extend(join.await.expect("child setup"));
        }
    }
    attached(&relay.relay, ROOM, children, ATTACH_WITHIN).await;
    let setup = setup_began.elapsed();
    let reopened_in_setup = reopened.count();

    let relay_peer = relay.peer;
    let speaker_addr = relay.addr.clone();
    let voice = runtimes
        .speaker
        .run(async move {
            let speaker = bare_node(Some(speaker_addr)).await;
            speaker
                .relay
                .speak(ROOM, relay_peer)
                .await
                .expect("speak stream")
        })
        .await;
    let counters = Arc::new(counters);
    let watch = Watch {
        runtimes,
        stats: &stats,
        counters: &counters,
        reopened: &reopened,
        relay_port: udp_port(&relay.addr),
        child_ports: &child_ports,
    };
    let (idle_for, paced_for, closed_for, overload_for) = args.fanout_secs();
    let mut stretches = Vec::new();
    let mut seq = 0u32;
    for (mode, duration) in [
        (Mode::Idle, idle_for),
        (Mode::RealPace, paced_for),
        (Mode::Lockstep, closed_for),
        (Mode::MaxRate, closed_for),
        (Mode::Overload, overload_for),
    ] {
        let before = watch.snapshot();
        let spoken = {
            let voice = voice.clone();
            let counters = Arc::clone(&counters);
            runtimes
                .speaker
                .spawn_blocking(move || capture(&voice, mode, duration, seq, &counters, start))
                .await
                .expect("capture thread")
        };
        settle(|| counters.iter().map(|c| c.load(Ordering::Relaxed)).sum()).await;
        let after = watch.snapshot();
        if spoken.stalls > 0 {
            eprintln!(
                "  ({}: {} stalls of the slowest child)",
                mode.name(),
                spoken.stalls
            );
        }
        seq = spoken.next_seq;
        stretches.push(Stretch {
            mode,
            sending: spoken.sending,
            wall: after.at - before.at,
            spoken: spoken.frames,
            received: after.received - before.received,
            delivered: after
                .delivered
                .iter()
                .zip(&before.delivered)
                .map(|(a, b)| a - b)
                .collect(),
            dropped: after.dropped - before.dropped,
            relay_cpu: after.relay_cpu.since(before.relay_cpu),
            process_cpu: after.process_cpu.since(before.process_cpu),
            datagrams: after.datagrams.saturating_sub(before.datagrams),
            relay_udp_drops: after.relay_udp_drops - before.relay_udp_drops,
            children_udp_drops: after.children_udp_drops - before.children_udp_drops,
            reopened: after.reopened - before.reopened,
        });
    }

    FanoutRun {
        children,
        setup,
        reopened_in_setup,
        reopened: reopened.reasons(),
        stretches,
    }
}

// ---------------------------------------------------------------------------------------------
// Output

/// Latency percentiles, in microseconds.
struct Summary {
    count: usize,
    p50: f64,
    p99: f64,
    max: f64,
}

fn summary(mut nanos: Vec<i64>) -> Summary {
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
        max: at(1.0),
    }
}

fn print_hops(hops: &[HopRun]) {
    println!();
    println!(
        "Hop latency on 127.0.0.1: 98-byte frames, source → middle → end, each node its own \
         2-worker runtime; µs"
    );
    println!();
    println!(
        "| {:<44} | {:>5} | {:>6} | {:>7} | {:>7} | {:>7} | {:<6} |",
        "measure", "pace", "frames", "p50", "p99", "max", "target"
    );
    println!(
        "|{:-<46}|{:-<7}|{:-<8}|{:-<9}|{:-<9}|{:-<9}|{:-<8}|",
        "", "", "", "", "", "", ""
    );
    for run in hops {
        let pace = format!("{} ms", run.interval.as_millis());
        let warmup = run.warmup();
        let relay = summary(run.relay.hop(warmup));
        let raw = summary(run.raw.hop(warmup));
        let line = |what: &str, s: &Summary, target: &str| {
            println!(
                "| {what:<44} | {pace:>5} | {:>6} | {:>7.0} | {:>7.0} | {:>7.0} | {target:<6} |",
                s.count, s.p50, s.p99, s.max,
            );
        };
        let verdict = |ok: bool| if ok { "ok" } else { "MISSED" };
        line(
            "relay hop: parent in → child out (QUIC)",
            &relay,
            verdict(relay.p99 <= us(HOP_P99_TARGET)),
        );
        line("raw TCP hop: forwarder in → sink out", &raw, "");
        let ratio50 = relay.p50 / raw.p50.max(1.0);
        let ratio99 = relay.p99 / raw.p99.max(1.0);
        println!(
            "| {:<44} | {pace:>5} | {:>6} | {:>6.1}x | {:>6.1}x | {:>7} | {:<6} |",
            "relay hop ÷ raw TCP hop",
            "",
            ratio50,
            ratio99,
            "",
            verdict(ratio99 <= RAW_RATIO_TARGET),
        );
        line(
            "  source send → parent in (QUIC, 1 hop)",
            &summary(run.relay.first_hop(warmup)),
            "",
        );
        line(
            "  source send → forwarder in (TCP, 1 hop)",
            &summary(run.raw.first_hop(warmup)),
            "",
        );
        line(
            "  source send → child out (QUIC, 2 hops)",
            &summary(run.relay.end_to_end(warmup)),
            "",
        );
        line(
            "  source send → sink out (TCP, 2 hops)",
            &summary(run.raw.end_to_end(warmup)),
            "",
        );
        let lost = |p: &PathTimes| run.frames as usize - p.end.len();
        println!(
            "  ({} ms pace: {} frames on each path in {:.2} s, the TCP ones half an interval \
             after the QUIC ones; not arrived: {} QUIC, {} TCP; the first {warmup} are warm-up \
             and not counted)",
            run.interval.as_millis(),
            run.frames,
            run.relay.elapsed.as_secs_f64(),
            lost(&run.relay),
            lost(&run.raw),
        );
    }
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

fn print_fanouts(fanouts: &[FanoutRun], args: &Args) {
    println!();
    println!(
        "Fan-out: one relay (real swarm, {} tokio workers) → N children (a bare QUIC swarm and \
         connection each, all on one 2-worker runtime); one speaker on a speak stream",
        args.relay_threads
    );
    println!();
    println!(
        "| {:>8} | {:<8} | {:>7} | {:>11} | {:>8} | {:>8} | {:>10} | {:>5} | {:>6} | {:>7} | {:>15} | \
         {:<6} |",
        "children",
        "mode",
        "in/s",
        "forwarded/s",
        "relay µs",
        "proc µs",
        "fwd/s/core",
        "cores",
        "kernel",
        "UDP/fwd",
        "delivery min/avg",
        "target"
    );
    println!(
        "|{:->10}|{:-<10}|{:->9}|{:->13}|{:->10}|{:->10}|{:->12}|{:->7}|{:->8}|{:->9}|{:->17}|{:-<8}|",
        "", "", "", "", "", "", "", "", "", "", "", ""
    );
    for run in fanouts {
        for s in &run.stretches {
            if s.mode == Mode::Idle {
                println!(
                    "| {:>8} | {:<8} | {:>7} | {:>11} | {:>8} | {:>8} | {:>10} | {:>5.2} | \
                     {:>5.0}% | {:>7} | {:>15} | {:<6} |",
                    run.children,
                    s.mode.name(),
                    0,
                    0,
                    "-",
                    "-",
                    "-",
                    s.relay_cores(),
                    100.0 * s.relay_cpu.system_share(),
                    "-",
                    "-",
                    "",
                );
                continue;
            }
            let (min, avg) = s.delivery();
            let target = match s.mode {
                Mode::Lockstep | Mode::MaxRate if s.per_core() >= PER_CORE_TARGET => "ok",
                Mode::Lockstep | Mode::MaxRate => "MISSED",
                Mode::Idle | Mode::RealPace | Mode::Overload => "",
            };
            println!(
                "| {:>8} | {:<8} | {:>7.0} | {:>11.0} | {:>8.2} | {:>8.2} | {:>10.0} | {:>5.2} | \
                 {:>5.0}% | {:>7.2} | {:>6.1} /{:>6.1}% | {:<6} |",
                run.children,
                s.mode.name(),
                s.in_per_sec(),
                s.forwarded_per_sec(),
                s.relay_us_per_frame(),
                s.process_us_per_frame(),
                s.per_core(),
                s.relay_cores(),
                100.0 * s.relay_cpu.system_share(),
                s.datagrams_per_frame(),
                min,
                avg,
                target,
            );
        }
    }
    println!();
    println!(
        "in/s: frames the relay read from the speaker per second of sending; forwarded/s: frames \
         the children got per second of sending; relay µs: CPU time of the relay's runtime (all \
         its threads: swarm, QUIC, audio tasks) per forwarded frame; proc µs: the whole process \
         (relay, children, speaker) per forwarded frame; fwd/s/core: forwarded frames per second \
         of relay CPU (target ≥ {PER_CORE_TARGET:.0}, judged in the closed loops); cores: relay CPU ÷ wall time; \
         kernel: the relay's share of CPU time in the kernel; UDP/fwd: UDP datagrams sent on \
         this machine (relay data, children's acks, the speaker; every process) per forwarded \
         frame; delivery: frames each child got ÷ \
         frames the relay read."
    );
    for run in fanouts {
        println!(
            "  {} children: connected in {:.1} s (listen streams opened again while connecting: \
             {}); why streams were opened again, over the whole run: {}",
            run.children,
            run.setup.as_secs_f64(),
            run.reopened_in_setup,
            if run.reopened.is_empty() {
                "none"
            } else {
                &run.reopened
            },
        );
        for s in &run.stretches {
            if s.mode == Mode::Idle {
                let secs = s.wall.as_secs_f64();
                println!(
                    "    idle    : relay CPU {:.1} ms per second = {:.1} µs per child per second \
                     (keep-alives every 40 ms); {:.0} UDP datagrams/s on the machine",
                    s.relay_cpu.total.as_secs_f64() * 1e3 / secs,
                    s.relay_cpu.total.as_secs_f64() * 1e6 / secs / run.children as f64,
                    s.datagrams as f64 / secs,
                );
                continue;
            }
            println!(
                "    {:<8}: speaker sent {} frames in {:.2} s; relay read {}, skipped {} frame \
                 copies for children behind; CPU over {:.2} s: relay {:.2} s, process {:.2} s; \
                 UDP datagrams dropped for a full buffer: {} at the relay, {} at children; \
                 listen streams reopened: {}",
                s.mode.name(),
                s.spoken,
                s.sending.as_secs_f64(),
                s.received,
                s.dropped,
                s.wall.as_secs_f64(),
                s.relay_cpu.total.as_secs_f64(),
                s.process_cpu.total.as_secs_f64(),
                s.relay_udp_drops,
                s.children_udp_drops,
                s.reopened,
            );
        }
    }
}

fn json(hops: &[HopRun], fanouts: &[FanoutRun], args: &Args) -> String {
    let summary_json = |s: Summary| serde_json::json!({ "count": s.count, "p50_us": s.p50, "p99_us": s.p99, "max_us": s.max });
    let hops: Vec<_> = hops
        .iter()
        .map(|run| {
            serde_json::json!({
                "interval_ms": run.interval.as_millis(),
                "frames": run.frames,
                "relay_hop": summary_json(summary(run.relay.hop(run.warmup()))),
                "raw_tcp_hop": summary_json(summary(run.raw.hop(run.warmup()))),
                "relay_first_hop": summary_json(summary(run.relay.first_hop(run.warmup()))),
                "raw_tcp_first_hop": summary_json(summary(run.raw.first_hop(run.warmup()))),
                "relay_two_hops": summary_json(summary(run.relay.end_to_end(run.warmup()))),
                "raw_tcp_two_hops": summary_json(summary(run.raw.end_to_end(run.warmup()))),
            })
        })
        .collect();
    let fanouts: Vec<_> = fanouts
        .iter()
        .flat_map(|run| {
            run.stretches.iter().map(move |s| {
                let (min, avg) = s.delivery();
                serde_json::json!({
                    "children": run.children,
                    "mode": s.mode.name(),
                    "sending_s": s.sending.as_secs_f64(),
                    "wall_s": s.wall.as_secs_f64(),
                    "spoken": s.spoken,
                    "received": s.received,
                    "forwarded": s.forwarded(),
                    "forwarded_per_s": s.forwarded_per_sec(),
                    "dropped": s.dropped,
                    "relay_cpu_s": s.relay_cpu.total.as_secs_f64(),
                    "relay_cores": s.relay_cores(),
                    "relay_kernel_share": s.relay_cpu.system_share(),
                    "process_cpu_s": s.process_cpu.total.as_secs_f64(),
                    "relay_us_per_frame": s.relay_us_per_frame(),
                    "process_us_per_frame": s.process_us_per_frame(),
                    "forwarded_per_core_s": s.per_core(),
                    "delivery_min_pct": min,
                    "delivery_avg_pct": avg,
                    "udp_datagrams_per_frame": s.datagrams_per_frame(),
                    "relay_udp_drops": s.relay_udp_drops,
                    "children_udp_drops": s.children_udp_drops,
                    "reopened": s.reopened,
                })
            })
        })
        .collect();
    serde_json::json!({
        "bench": "relay_plane",
        "relay_threads": args.relay_threads,
        "hops": hops,
        "fanout": fanouts,
    })
    .to_string()
}
