//! A community relay forwarding one speaker to N children on 127.0.0.1 (QUIC, one process): frames
//! per second forwarded, delivery, and the relay's CPU, with the relay as a tree node (direct)
//! and as a circuit relay (libp2p relay v2) side by side.
//!
//! `cargo bench -p earshot-node --bench community_relay` (about a minute). Options after `--`:
//! `--children 25,50,100,200` (fan-out sizes), `--only direct` or `--only circuit`,
//! `--relay-threads N` (R's tokio workers, default 2 as in the CLI), `--pace-only` (no
//! back-to-back stretch), `--quick` (shorter stretches), `--json` (one JSON line at the end).
//!
//! The community relay R is a real node (`net::build_swarm` with
//! `relay_server: Some(RelayServerConfig::default())`, every behaviour), and adds its listen
//! address as an external address as the node's event loop does (a relay server serves
//! reservations only then). One speaker sends 98-byte [`AudioFrame`]s (an 80-byte payload, a
//! 32 kbps Opus frame).
//!
//! 1. **Direct.** R hosts the room with the real [`Fanout`] (loudest-speaker selection on,
//!    admitting everyone): the speaker speaks to R over a speak stream and N children, each with
//!    its own QUIC connection to R, listen to R. R reads each frame once and writes it N times.
//! 2. **Circuit.** R is only a circuit relay. The host F (a real node with the [`Fanout`])
//!    has no listener of its own: it listens on `R/p2p-circuit` (a reservation at R) and nothing
//!    else, so nobody can reach it directly (and F's DCUtR attempts fail: the children do not
//!    speak it, and F has no address to offer). The speaker
//!    and the N children dial `R/p2p-circuit/p2p/F` and speak and listen to F over those
//!    circuits: R copies the speaker's frames to F and F's N copies to the children, at the
//!    transport level (each child's bytes are noise + yamux inside a QUIC stream to R, and R
//!    copies between QUIC streams). The bench checks that every child's connection to F has a
//!    `/p2p-circuit` remote address, and counts F's direct connections and DCUtR upgrades
//!    (none), and R's circuits denied or closed. Children connect one at a time (see
//!    [`CIRCUIT_CONNECT_BATCH`]); R allows 256 circuits (`RelayServerConfig::default()`), so
//!    larger sizes are skipped.
//!
//! The children (and the speaker) are bare swarms: QUIC, the relay client and the stream
//! behaviour. Each runs [`Fanout::listen`]; a child's delivered frames are its room's
//! `received` counter. Every node runs in its own multi-thread tokio runtime, standing for its
//! own process (R: `--relay-threads`; F: 2; all the children: 2; the speaker: 1); each runtime
//! records its threads' ids, so R's CPU time (all of its threads: swarm, QUIC endpoint and
//! connection drivers, the relay server's circuit copies, the audio plane's tasks) is read from
//! `/proc/self/task/<tid>/schedstat`. On a small machine the children and F compete with R for
//! the CPUs: the load average and the whole process's CPU are printed too.
//!
//! Children bind to 127.0.0.10, .11, … in groups of [`CHILDREN_PER_IP`], as listeners behind
//! different routers would (the relay's per-IP rate, `new_per_ip_per_minute`, is 600 a minute;
//! libp2p's own default, 60, refused most of 200 children from one address before it was
//! raised). The direct case uses the same addresses.
//!
//! Each size runs two stretches: the real pace (a frame every 20 ms from a deadline clock; a
//! full speak queue drops the frame, as the capture thread does) and lockstep (the next frame
//! once every child has the last one: back to back, every frame to every child still a packet
//! of its own; the relay's capacity for real traffic). Delivery is frames received by the
//! children ÷ (frames the speaker sent × N).

mod support;

use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use earshot_node::fanout::{Fanout, FanoutStats};
use earshot_node::identity::Identity;
use earshot_node::net::{BehaviourEvent, NetConfig, RelayServerConfig, build_swarm};
use earshot_protocol::RoomId;
use earshot_protocol::frame::{AudioFrame, SAMPLES_PER_FRAME, SpeakerId, flags};
use futures::StreamExt;
use libp2p::core::ConnectedPoint;
use libp2p::multiaddr::Protocol;
use libp2p::swarm::{NetworkBehaviour, SwarmEvent};
use libp2p::{Multiaddr, PeerId, noise, relay, yamux};
use tokio::sync::mpsc;

use crate::support::{
    ClosedLoop, CommandLine, Cpu, FRAME_INTERVAL, NodeRuntime, PAYLOAD_BYTES, Reopened, Spoken,
    admit_all, attached, cpus, host_options, keep_listening, listen, load_average, poll_forever,
    print_machine, process_cpu, settle, udp_datagrams_sent,
};

const ROOM: RoomId = RoomId([7; 16]);
/// Children per loopback address: under the relay server's default per-IP circuit rate limit
/// (a burst of 60).
const CHILDREN_PER_IP: usize = 50;
/// Children connecting at once, directly.
const CONNECT_BATCH: usize = 10;
/// Children connecting at once through R: one. F's relay client (libp2p-relay 0.22) hands
/// inbound circuits to its transport one per poll of its connection to R and does not wake
/// itself while more are queued, so of circuits completing together all but one wait for
/// unrelated traffic on that connection (seconds: here, F's next AutoNAT probe).
const CIRCUIT_CONNECT_BATCH: usize = 1;
/// A size passes when R stays under one core with at least this delivery (%), at the real pace.
const DELIVERY_TARGET: f64 = 99.0;
/// The speaker's address (the children's start at 127.0.0.10).
const SPEAKER_IP: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);
/// How long the host may take to have all its children attached.
const ATTACH_WITHIN: Duration = Duration::from_secs(60);

fn main() {
    let args = Args::parse();
    let load_before = load_average();
    let control = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("control runtime");
    let max_circuits = RelayServerConfig::default().max_circuits;

    let mut runs = Vec::new();
    for case in args.cases() {
        for &children in &args.children {
            // The speaker's circuit counts too.
            if case == Case::Circuit && children >= max_circuits {
                eprintln!(
                    "circuit, {children} children: skipped (R allows {max_circuits} circuits, \
                     RelayServerConfig::default().max_circuits)"
                );
                continue;
            }
            eprintln!("{}: {children} children", case.name());
            let runtimes = Runtimes::new(case, args.relay_threads);
            runs.push(control.block_on(run(&runtimes, case, children, &args)));
            runtimes.shutdown();
        }
    }

    println!();
    print_machine("community_relay", &load_before);
    print_runs(&runs, &args);
    if args.json {
        println!("{}", json(&runs, &args));
    }
}

struct Args {
    children: Vec<usize>,
    relay_threads: usize,
    quick: bool,
    json: bool,
    pace_only: bool,
    only: Option<Case>,
}

impl Args {
    fn parse() -> Self {
        let line = CommandLine::read();
        Self {
            children: line.children(&[25, 50, 100, 200]),
            relay_threads: line.relay_threads(),
            quick: line.flag("--quick"),
            json: line.flag("--json"),
            pace_only: line.flag("--pace-only"),
            only: line.value("--only").map(|case| match case {
                "direct" => Case::Direct,
                "circuit" => Case::Circuit,
                other => panic!("--only takes direct or circuit, not {other}"),
            }),
        }
    }

    fn cases(&self) -> Vec<Case> {
        match self.only {
            Some(case) => vec![case],
            None => vec![Case::Direct, Case::Circuit],
        }
    }

    /// The measured stretches and how long each runs.
    fn stretches(&self) -> Vec<(Mode, Duration)> {
        let secs = Duration::from_secs_f64;
        let (pace, lockstep) = if self.quick {
            (secs(1.5), secs(1.0))
        } else {
            (secs(4.0), secs(2.5))
        };
        let mut stretches = vec![(Mode::Pace, pace)];
        if !self.pace_only {
            stretches.push((Mode::Lockstep, lockstep));
        }
        stretches
    }
}

/// Where the room's host is, and so what R does.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Case {
    /// R hosts the room and feeds the children itself.
    Direct,
    /// R is a circuit relay between a hidden host F and everyone else.
    Circuit,
}

impl Case {
    fn name(self) -> &'static str {
        match self {
            Case::Direct => "direct",
            Case::Circuit => "circuit",
        }
    }
}

/// How the speaker feeds the host in a measured stretch.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Mode {
    /// One frame per 20 ms from a deadline clock.
    Pace,
    /// Closed loop: the next frame once every child has the last one.
    Lockstep,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Pace => "50 fps",
            Mode::Lockstep => "lockstep",
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Nodes

/// What R's relay server did, from its swarm events.
#[derive(Default)]
struct RelayCounters {
    reservations: AtomicU64,
    circuits_accepted: AtomicU64,
    circuits_denied: AtomicU64,
    circuits_closed: AtomicU64,
    /// Closed with an error (a limit, or a stream reset).
    circuits_failed: AtomicU64,
    /// The last error a circuit closed with.
    last_error: Mutex<Option<String>>,
}

/// What the hidden host F saw: connections from peers other than R, relayed or not, and DCUtR.
#[derive(Default)]
struct HostWatch {
    relayed: AtomicU64,
    direct: AtomicU64,
    /// DCUtR attempts that upgraded a connection to a direct one, and that failed.
    dcutr_upgraded: AtomicU64,
    dcutr_failed: AtomicU64,
    dcutr_error: Mutex<Option<String>>,
    /// The limits R granted the first inbound circuit.
    circuit_limit: Mutex<Option<String>>,
}

fn quic(ip: Ipv4Addr) -> Multiaddr {
    Multiaddr::empty()
        .with(Protocol::Ip4(ip))
        .with(Protocol::Udp(0))
        .with(Protocol::QuicV1)
}

fn is_relayed(addr: &Multiaddr) -> bool {
    addr.iter().any(|p| matches!(p, Protocol::P2pCircuit))
}

fn connection_is_relayed(endpoint: &ConnectedPoint) -> bool {
    match endpoint {
        ConnectedPoint::Dialer { address, .. } => is_relayed(address),
        ConnectedPoint::Listener {
            local_addr,
            send_back_addr,
        } => is_relayed(local_addr) || is_relayed(send_back_addr),
    }
}

/// The community relay: a real node with the circuit relay server, listening on 127.0.0.1.
/// Returns its stream control, peer id and address (with `/p2p/<R>`); polls the swarm in a task
/// of the current runtime for as long as it lives.
async fn community_relay(
    counters: Arc<RelayCounters>,
) -> (libp2p_stream::Control, PeerId, Multiaddr) {
    let identity = Identity::ephemeral().expect("identity");
    let config = NetConfig {
        relay_server: Some(RelayServerConfig::default()),
        ..NetConfig::default()
    };
    let mut swarm = build_swarm(&identity, &config).expect("swarm");
    let control = swarm.behaviour().stream.new_control();
    let addr = listen(&mut swarm, quic(Ipv4Addr::LOCALHOST)).await;
    // As the node's event loop does for a relay: it serves reservations only once it has an
    // external address.
    swarm.add_external_address(addr.clone());
    let peer = *swarm.local_peer_id();
    poll_forever(swarm, move |event| {
        if let SwarmEvent::Behaviour(BehaviourEvent::RelayServer(event)) = event {
            on_relay_event(&counters, event);
        }
    });
    (control, peer, addr.with(Protocol::P2p(peer)))
}

fn on_relay_event(counters: &RelayCounters, event: relay::Event) {
    let count = |c: &AtomicU64| {
        c.fetch_add(1, Ordering::Relaxed);
    };
    match event {
        relay::Event::ReservationReqAccepted { .. } => count(&counters.reservations),
        relay::Event::CircuitReqAccepted { .. } => count(&counters.circuits_accepted),
        relay::Event::CircuitReqDenied { status, .. } => {
            count(&counters.circuits_denied);
            *counters.last_error.lock().expect("error") = Some(format!("denied: {status:?}"));
        }
        relay::Event::CircuitClosed { error, .. } => {
            count(&counters.circuits_closed);
            if let Some(error) = error {
                count(&counters.circuits_failed);
                *counters.last_error.lock().expect("error") = Some(error.to_string());
            }
        }
        _ => {}
    }
}

/// The hidden host F: a real node with no listener of its own, listening only on `relay/p2p-circuit`
/// (a reservation at R). Returns its stream control, peer id and listen addresses.
async fn hidden_host(
    relay: Multiaddr,
    watch: Arc<HostWatch>,
) -> (libp2p_stream::Control, PeerId, Vec<Multiaddr>) {
    let identity = Identity::ephemeral().expect("identity");
    let mut swarm = build_swarm(&identity, &NetConfig::default()).expect("swarm");
    let control = swarm.behaviour().stream.new_control();
    let relay_peer = match relay.iter().last() {
        Some(Protocol::P2p(peer)) => peer,
        _ => panic!("the relay's address ends in /p2p"),
    };
    swarm
        .listen_on(relay.with(Protocol::P2pCircuit))
        .expect("listen on the circuit");
    let (mut listening, mut reserved) = (false, false);
    tokio::time::timeout(Duration::from_secs(10), async {
        while !(listening && reserved) {
            match swarm.select_next_some().await {
                SwarmEvent::NewListenAddr { address, .. } => listening |= is_relayed(&address),
                SwarmEvent::Behaviour(BehaviourEvent::Relay(
                    relay::client::Event::ReservationReqAccepted { .. },
                )) => reserved = true,
                SwarmEvent::ListenerClosed { reason, .. } => {
                    panic!("the circuit listener closed: {reason:?}")
                }
                SwarmEvent::ListenerError { error, .. } => {
                    panic!("the circuit listener failed: {error}")
                }
                _ => {}
            }
        }
    })
    .await
    .expect("a reservation at the relay within 10 s");
    let listeners: Vec<Multiaddr> = swarm.listeners().cloned().collect();
    assert!(
        listeners.iter().all(is_relayed),
        "the host listens only on circuits: {listeners:?}"
    );
    let peer = *swarm.local_peer_id();
    poll_forever(swarm, move |event| match event {
        SwarmEvent::ConnectionEstablished {
            peer_id, endpoint, ..
        } if peer_id != relay_peer => {
            let counter = if connection_is_relayed(&endpoint) {
                &watch.relayed
            } else {
                &watch.direct
            };
            counter.fetch_add(1, Ordering::Relaxed);
        }
        SwarmEvent::Behaviour(BehaviourEvent::Dcutr(event)) => match event.result {
            Ok(_) => {
                watch.dcutr_upgraded.fetch_add(1, Ordering::Relaxed);
            }
            Err(error) => {
                watch.dcutr_failed.fetch_add(1, Ordering::Relaxed);
                watch
                    .dcutr_error
                    .lock()
                    .expect("error")
                    .get_or_insert_with(|| error.to_string());
            }
        },
        SwarmEvent::Behaviour(BehaviourEvent::Relay(
            relay::client::Event::InboundCircuitEstablished { limit, .. },
        )) => {
            watch
                .circuit_limit
                .lock()
                .expect("limit")
                .get_or_insert_with(|| match limit {
                    Some(limit) => {
                        format!("{:?}, {:?} bytes", limit.duration(), limit.data_in_bytes())
                    }
                    None => "none".into(),
                });
        }
        _ => {}
    });
    (control, peer, listeners)
}

/// The children and the speaker: QUIC, the relay client and the audio streams.
#[derive(NetworkBehaviour)]
struct Bare {
    relay: relay::client::Behaviour,
    stream: libp2p_stream::Behaviour,
}

/// A bare node connected to the host.
struct Joined {
    relay: Fanout,
    /// The connection to the host's remote address.
    remote: Multiaddr,
    /// Dials that failed before one got through.
    retries: u32,
}

/// A bare node listening on `ip` (so that it dials from there), connected to `host` at `target`
/// (R itself, or `R/p2p-circuit/p2p/F`). `lost` counts its connections to the host that close.
async fn bare_node(ip: Ipv4Addr, target: Multiaddr, host: PeerId, lost: Arc<AtomicU64>) -> Joined {
    let mut swarm = libp2p::SwarmBuilder::with_new_identity()
        .with_tokio()
        .with_quic()
        .with_relay_client(noise::Config::new, yamux::Config::default)
        .expect("relay client")
        .with_behaviour(|_, relay| Bare {
            relay,
            stream: libp2p_stream::Behaviour::new(),
        })
        .expect("behaviour")
        .with_swarm_config(|config| config.with_idle_connection_timeout(Duration::from_secs(60)))
        .build();
    let control = swarm.behaviour().stream.new_control();
    listen(&mut swarm, quic(ip)).await;
    let mut retries = 0;
    swarm.dial(target.clone()).expect("dial");
    let remote = loop {
        match swarm.select_next_some().await {
            SwarmEvent::ConnectionEstablished {
                peer_id, endpoint, ..
            } if peer_id == host => break endpoint.get_remote_address().clone(),
            SwarmEvent::OutgoingConnectionError {
                peer_id: Some(peer),
                error,
                ..
            } if peer == host => {
                retries += 1;
                assert!(retries <= 20, "could not dial {target}: {error}");
                tokio::time::sleep(Duration::from_millis(20 * u64::from(retries))).await;
                swarm.dial(target.clone()).expect("dial");
            }
            _ => {}
        }
    };
    poll_forever(swarm, move |event| {
        if let SwarmEvent::ConnectionClosed { peer_id, .. } = event
            && peer_id == host
        {
            lost.fetch_add(1, Ordering::Relaxed);
        }
    });
    Joined {
        relay: Fanout::start(control, admit_all(), None),
        remote,
        retries,
    }
}

fn frame(seq: u32) -> AudioFrame {
    AudioFrame {
        speaker: SpeakerId(0xeab5_0002),
        seq,
        timestamp: seq.wrapping_mul(SAMPLES_PER_FRAME),
        level: 30,
        flags: flags::VOICE | flags::FEC,
        payload: vec![0x5a; PAYLOAD_BYTES],
        tag: None,
    }
}

// ---------------------------------------------------------------------------------------------
// One run: a case and a number of children

struct Runtimes {
    relay: NodeRuntime,
    /// The hidden host F (circuit case only).
    host: Option<NodeRuntime>,
    children: NodeRuntime,
    speaker: NodeRuntime,
}

impl Runtimes {
    fn new(case: Case, relay_threads: usize) -> Self {
        Self {
            relay: NodeRuntime::new("relay", relay_threads),
            host: (case == Case::Circuit).then(|| NodeRuntime::new("host", 2)),
            children: NodeRuntime::new("children", 2),
            speaker: NodeRuntime::new("speaker", 1),
        }
    }

    fn shutdown(self) {
        self.speaker.shutdown();
        self.children.shutdown();
        if let Some(host) = self.host {
            host.shutdown();
        }
        self.relay.shutdown();
    }
}

/// How the run was wired, and what showed that it stayed so.
struct Wiring {
    setup: Duration,
    /// Children whose connection to the host has a `/p2p-circuit` remote address.
    relayed_children: usize,
    example_remote: Multiaddr,
    host_listeners: Vec<Multiaddr>,
    dial_retries: u32,
    relay: Arc<RelayCounters>,
    host: Arc<HostWatch>,
    /// Connections to the host that closed (children and speaker), over the whole run.
    lost: Arc<AtomicU64>,
    reopened: String,
}

struct Run {
    case: Case,
    children: usize,
    /// The 1-minute load average when the run began.
    load: String,
    wiring: Wiring,
    stretches: Vec<Stretch>,
}

/// One measured stretch.
struct Stretch {
    mode: Mode,
    /// How long the speaker sent.
    sending: Duration,
    /// Frames the speaker handed to its speak stream.
    spoken: u64,
    /// Frames the host read from the speaker.
    host_received: u64,
    /// Frames the children received, in all and at the child that got fewest.
    delivered: u64,
    delivered_min: u64,
    /// Frame copies the host skipped for children behind.
    dropped: u64,
    /// While the speaker sent (what is still in flight when it stops is a frame or so: at the
    /// real pace the last one, in lockstep the one the speaker waits for).
    relay_cpu: Cpu,
    host_cpu: Option<Cpu>,
    children_cpu: Cpu,
    process_cpu: Cpu,
    datagrams: u64,
    stalls: u64,
    reopened: u64,
}

impl Stretch {
    fn forwarded_per_sec(&self) -> f64 {
        self.delivered as f64 / self.sending.as_secs_f64()
    }

    /// Frames the children received ÷ (frames sent × children), in %.
    fn delivery(&self, children: usize) -> f64 {
        100.0 * self.delivered as f64 / (self.spoken.max(1) * children as u64) as f64
    }

    fn delivery_min(&self) -> f64 {
        100.0 * self.delivered_min as f64 / self.spoken.max(1) as f64
    }

    fn cores(&self, cpu: Cpu) -> f64 {
        cpu.total.as_secs_f64() / self.sending.as_secs_f64()
    }

    /// Forwarded frames per second of R's CPU time.
    fn per_cpu_second(&self) -> f64 {
        self.delivered as f64 / self.relay_cpu.total.as_secs_f64().max(1e-9)
    }

    fn relay_us_per_frame(&self) -> f64 {
        self.relay_cpu.total.as_secs_f64() * 1e6 / self.delivered.max(1) as f64
    }

    fn datagrams_per_frame(&self) -> f64 {
        self.datagrams as f64 / self.delivered.max(1) as f64
    }
}

struct Snapshot {
    delivered: Vec<u64>,
    host_received: u64,
    dropped: u64,
    relay_cpu: Cpu,
    host_cpu: Option<Cpu>,
    children_cpu: Cpu,
    process_cpu: Cpu,
    datagrams: u64,
    reopened: u64,
}

struct Watch<'a> {
    runtimes: &'a Runtimes,
    host: &'a FanoutStats,
    children: &'a [Arc<FanoutStats>],
    reopened: &'a Reopened,
}

impl Watch<'_> {
    fn snapshot(&self) -> Snapshot {
        Snapshot {
            delivered: self.delivered().collect(),
            host_received: self.host.received.load(Ordering::Relaxed),
            dropped: self.host.dropped.load(Ordering::Relaxed),
            relay_cpu: self.runtimes.relay.cpu(),
            host_cpu: self.runtimes.host.as_ref().map(NodeRuntime::cpu),
            children_cpu: self.runtimes.children.cpu(),
            process_cpu: process_cpu(),
            datagrams: udp_datagrams_sent(),
            reopened: self.reopened.count(),
        }
    }

    fn delivered(&self) -> impl Iterator<Item = u64> + '_ {
        self.children
            .iter()
            .map(|stats| stats.received.load(Ordering::Relaxed))
    }

    /// Waits until the children stop receiving (the queues have drained), at most 3 s.
    async fn settle(&self) {
        settle(|| self.delivered().sum()).await;
    }
}

async fn run(runtimes: &Runtimes, case: Case, children: usize, args: &Args) -> Run {
    let load = load_average();
    let setup_began = Instant::now();
    let relay_counters = Arc::new(RelayCounters::default());
    let host_watch = Arc::new(HostWatch::default());
    let (relay_control, relay_peer, relay_addr) = runtimes
        .relay
        .run(community_relay(Arc::clone(&relay_counters)))
        .await;

    // The host: R itself, or F behind R.
    let (host_relay, host_peer, target, host_listeners) = match &runtimes.host {
        None => {
            let relay = runtimes
                .relay
                .run(async move { Fanout::start(relay_control, admit_all(), None) })
                .await;
            (relay, relay_peer, relay_addr.clone(), vec![relay_addr])
        }
        Some(host) => {
            let watch = Arc::clone(&host_watch);
            let addr = relay_addr.clone();
            let (control, peer, listeners) = host.run(hidden_host(addr, watch)).await;
            let relay = host
                .run(async move { Fanout::start(control, admit_all(), None) })
                .await;
            let target = relay_addr
                .with(Protocol::P2pCircuit)
                .with(Protocol::P2p(peer));
            (relay, peer, target, listeners)
        }
    };
    let (host_heard, host_stats) = host_relay.open_room_with(ROOM, host_options());
    // The host's playback queue fills and then refuses frames; nobody plays.
    drop(host_heard);

    let lost = Arc::new(AtomicU64::new(0));
    let reopened = Reopened::default();
    let mut stats = Vec::with_capacity(children);
    let mut remotes = Vec::with_capacity(children);
    let mut dial_retries = 0;
    let indices: Vec<usize> = (0..children).collect();
    let batch = match case {
        Case::Direct => CONNECT_BATCH,
        Case::Circuit => CIRCUIT_CONNECT_BATCH,
    };
    for batch in indices.chunks(batch) {
        let joins: Vec<_> = batch
            .iter()
            .map(|&i| {
                let octet = u8::try_from(10 + i / CHILDREN_PER_IP).expect("under 12k children");
                let ip = Ipv4Addr::new(127, 0, 0, octet);
                let (target, lost, reopened) =
                    (target.clone(), Arc::clone(&lost), reopened.clone());
                runtimes.children.spawn(async move {
                    let child = bare_node(ip, target, host_peer, lost).await;
                    let (heard, stats) = child.relay.open_room(ROOM);
                    // Delivery is counted at the room (`received`); nobody plays.
                    drop(heard);
                    tokio::spawn(keep_listening(
                        child.relay.clone(),
                        ROOM,
                        host_peer,
                        reopened,
                    ));
                    (stats, child.remote, child.retries)
                })
            })
            .collect();
        for join in joins {
            let (child_stats, remote, retries) = join.await.expect("child setup");
            stats.push(child_stats);
            remotes.push(remote);
            dial_retries += retries;
        }
    }
    attached(&host_relay, ROOM, children, ATTACH_WITHIN).await;

    let voice = {
        let (target, lost) = (target.clone(), Arc::clone(&lost));
        runtimes
            .speaker
            .run(async move {
                let speaker = bare_node(SPEAKER_IP, target, host_peer, lost).await;
                speaker
                    .relay
                    .speak(ROOM, host_peer)
                    .await
                    .expect("speak stream")
            })
            .await
    };
    let setup = setup_began.elapsed();
    let watch = Watch {
        runtimes,
        host: &host_stats,
        children: &stats,
        reopened: &reopened,
    };

    // Warm-up: half a second at the real pace, not measured.
    let mut seq = speak(
        runtimes,
        &voice,
        &watch,
        Mode::Pace,
        Duration::from_millis(500),
        0,
    )
    .await
    .next_seq;
    watch.settle().await;

    let mut stretches = Vec::new();
    for (mode, duration) in args.stretches() {
        let before = watch.snapshot();
        let spoken = speak(runtimes, &voice, &watch, mode, duration, seq).await;
        let sent = watch.snapshot();
        watch.settle().await;
        let after = watch.snapshot();
        seq = spoken.next_seq;
        let delivered: Vec<u64> = after
            .delivered
            .iter()
            .zip(&before.delivered)
            .map(|(a, b)| a - b)
            .collect();
        stretches.push(Stretch {
            mode,
            sending: spoken.sending,
            spoken: spoken.frames,
            host_received: after.host_received - before.host_received,
            delivered: delivered.iter().sum(),
            delivered_min: delivered.iter().copied().min().unwrap_or(0),
            dropped: after.dropped - before.dropped,
            relay_cpu: sent.relay_cpu.since(before.relay_cpu),
            host_cpu: sent
                .host_cpu
                .zip(before.host_cpu)
                .map(|(sent, before)| sent.since(before)),
            children_cpu: sent.children_cpu.since(before.children_cpu),
            process_cpu: sent.process_cpu.since(before.process_cpu),
            datagrams: after.datagrams.saturating_sub(before.datagrams),
            stalls: spoken.stalls,
            reopened: after.reopened - before.reopened,
        });
    }

    let relayed_children = remotes.iter().filter(|r| is_relayed(r)).count();
    Run {
        case,
        children,
        load,
        wiring: Wiring {
            setup,
            relayed_children,
            example_remote: remotes.first().cloned().unwrap_or_else(Multiaddr::empty),
            host_listeners,
            dial_retries,
            relay: relay_counters,
            host: host_watch,
            lost,
            reopened: reopened.reasons(),
        },
        stretches,
    }
}

/// Runs the speaker's capture thread for `duration`.
async fn speak(
    runtimes: &Runtimes,
    voice: &mpsc::Sender<AudioFrame>,
    watch: &Watch<'_>,
    mode: Mode,
    duration: Duration,
    seq: u32,
) -> Spoken {
    let voice = voice.clone();
    let progress: Vec<Arc<FanoutStats>> = watch.children.to_vec();
    runtimes
        .speaker
        .spawn_blocking(move || capture(&voice, mode, duration, seq, &progress))
        .await
        .expect("capture thread")
}

/// The speaker's capture thread: frames go into the speak stream's queue from a plain thread,
/// as in the node (audio never waits on the network).
fn capture(
    voice: &mpsc::Sender<AudioFrame>,
    mode: Mode,
    duration: Duration,
    mut seq: u32,
    children: &[Arc<FanoutStats>],
) -> Spoken {
    let began = Instant::now();
    let until = began + duration;
    let mut frames = 0u64;
    let mut closed =
        ClosedLoop::new(|| children.iter().map(|c| c.received.load(Ordering::Relaxed)));
    let mut tick = 0u32;
    while Instant::now() < until {
        match mode {
            Mode::Pace => {
                let due = began + FRAME_INTERVAL * tick;
                tick += 1;
                if let Some(wait) = due.checked_duration_since(Instant::now()) {
                    std::thread::sleep(wait);
                }
                if voice.try_send(frame(seq)).is_err() {
                    continue;
                }
            }
            Mode::Lockstep => {
                // The next frame once every child has the last one.
                if !closed.ready(1) {
                    continue;
                }
                if voice.blocking_send(frame(seq)).is_err() {
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

// ---------------------------------------------------------------------------------------------
// Output

fn print_runs(runs: &[Run], args: &Args) {
    println!();
    println!(
        "One speaker (98-byte frames) → community relay R ({} tokio workers, the real swarm) → \
         N children; direct: R hosts the room; circuit: R relays circuits to a host F reachable \
         only through it",
        args.relay_threads
    );
    println!();
    println!(
        "| {:<7} | {:>8} | {:<8} | {:>6} | {:>9} | {:>16} | {:>6} | {:>6} | {:>9} | {:>7} | {:>6} | \
         {:>7} | {:>7} |",
        "case",
        "children",
        "mode",
        "sent/s",
        "fwd fps",
        "delivery avg/min",
        "R CPU",
        "kernel",
        "fwd/CPU-s",
        "R µs/fwd",
        "F CPU",
        "all CPU",
        "UDP/fwd",
    );
    println!(
        "|{:-<9}|{:->10}|{:-<10}|{:->8}|{:->11}|{:->18}|{:->8}|{:->8}|{:->11}|{:->9}|{:->8}|{:->9}|{:->9}|",
        "", "", "", "", "", "", "", "", "", "", "", "", ""
    );
    for run in runs {
        for s in &run.stretches {
            println!(
                "| {:<7} | {:>8} | {:<8} | {:>6.0} | {:>9.0} | {:>6.2} /{:>6.2}% | {:>5.0}% | \
                 {:>5.0}% | {:>9.0} | {:>7.1} | {:>6} | {:>6.0}% | {:>7.2} |",
                run.case.name(),
                run.children,
                s.mode.name(),
                s.spoken as f64 / s.sending.as_secs_f64(),
                s.forwarded_per_sec(),
                s.delivery(run.children),
                s.delivery_min(),
                100.0 * s.cores(s.relay_cpu),
                100.0 * s.relay_cpu.system_share(),
                s.per_cpu_second(),
                s.relay_us_per_frame(),
                s.host_cpu.map_or_else(
                    || "= R".into(),
                    |cpu| format!("{:.0}%", 100.0 * s.cores(cpu))
                ),
                100.0 * s.cores(s.process_cpu),
                s.datagrams_per_frame(),
            );
        }
    }
    println!();
    println!(
        "sent/s: frames the speaker sent per second; fwd fps: frames all children received per \
         second of sending; delivery: frames the children received ÷ (frames sent × N), and at \
         the child that got fewest; R CPU: R's threads' CPU time ÷ sending time (100% = one \
         core); kernel: R's share in the kernel; fwd/CPU-s: frames the children received per \
         second of R's CPU; F CPU: the hidden host's; all CPU: \
         the whole process (R, F, children, speaker); UDP/fwd: UDP datagrams sent on the \
         machine (every socket, acknowledgements included) per forwarded frame."
    );

    println!();
    for case in [Case::Direct, Case::Circuit] {
        let pace: Vec<(&Run, &Stretch)> = runs
            .iter()
            .filter(|run| run.case == case)
            .flat_map(|run| run.stretches.iter().map(move |s| (run, s)))
            .filter(|(_, s)| s.mode == Mode::Pace)
            .collect();
        if pace.is_empty() {
            continue;
        }
        let passing = pace
            .iter()
            .filter(|(run, s)| s.cores(s.relay_cpu) < 1.0 && s.delivery(run.children) >= 99.0)
            .max_by_key(|(run, _)| run.children);
        match passing {
            Some((run, s)) => println!(
                "{:<7}: largest N measured with R under one core and delivery ≥ {DELIVERY_TARGET}% \
                 at 50 fps: {} (R at {:.0}% there; at {:.1} µs of R per forwarded frame, one core \
                 would feed about {:.0} children)",
                case.name(),
                run.children,
                100.0 * s.cores(s.relay_cpu),
                s.relay_us_per_frame(),
                1e6 / s.relay_us_per_frame() / 50.0,
            ),
            None => println!(
                "{:<7}: no size measured kept R under one core with delivery ≥ {DELIVERY_TARGET}%",
                case.name()
            ),
        }
    }
    let ratio = |mode: Mode| -> Vec<String> {
        runs.iter()
            .filter(|run| run.case == Case::Circuit)
            .filter_map(|circuit| {
                let direct = runs
                    .iter()
                    .find(|run| run.case == Case::Direct && run.children == circuit.children)?;
                let us = |run: &Run| {
                    run.stretches
                        .iter()
                        .find(|s| s.mode == mode)
                        .map(Stretch::relay_us_per_frame)
                };
                Some(format!(
                    "{}: {:.2}×",
                    circuit.children,
                    us(circuit)? / us(direct)?.max(1e-9)
                ))
            })
            .collect()
    };
    for mode in [Mode::Pace, Mode::Lockstep] {
        let ratios = ratio(mode);
        if !ratios.is_empty() {
            println!(
                "R's CPU per forwarded frame, circuit ÷ direct, {}: {}",
                mode.name(),
                ratios.join(", ")
            );
        }
    }

    println!();
    for run in runs {
        let w = &run.wiring;
        let relay = &w.relay;
        println!(
            "  {} {} (load average {} at the start): set up in {:.1} s ({} failed dials retried); \
             connections to the host closed during the run: {}; listen streams reopened: {}",
            run.case.name(),
            run.children,
            run.load,
            w.setup.as_secs_f64(),
            w.dial_retries,
            w.lost.load(Ordering::Relaxed),
            if w.reopened.is_empty() {
                "none"
            } else {
                &w.reopened
            },
        );
        if run.case == Case::Circuit {
            println!(
                "    relayed: {}/{} children reach F through /p2p-circuit (e.g. {}); F listens only on \
                 {:?}; \
                 F saw {} relayed and {} direct connections; DCUtR: {} upgraded, {} failed ({}); \
                 R: {} reservation, \
                 {} circuits accepted, {} denied, {} closed ({} with an error{}); circuit limit \
                 granted: {}",
                w.relayed_children,
                run.children,
                w.example_remote,
                w.host_listeners,
                w.host.relayed.load(Ordering::Relaxed),
                w.host.direct.load(Ordering::Relaxed),
                w.host.dcutr_upgraded.load(Ordering::Relaxed),
                w.host.dcutr_failed.load(Ordering::Relaxed),
                w.host
                    .dcutr_error
                    .lock()
                    .expect("error")
                    .as_deref()
                    .unwrap_or("-"),
                relay.reservations.load(Ordering::Relaxed),
                relay.circuits_accepted.load(Ordering::Relaxed),
                relay.circuits_denied.load(Ordering::Relaxed),
                relay.circuits_closed.load(Ordering::Relaxed),
                relay.circuits_failed.load(Ordering::Relaxed),
                relay
                    .last_error
                    .lock()
                    .expect("error")
                    .as_ref()
                    .map_or_else(String::new, |e| format!(", last: {e}")),
                w.host
                    .circuit_limit
                    .lock()
                    .expect("limit")
                    .as_deref()
                    .unwrap_or("?"),
            );
        }
        for s in &run.stretches {
            println!(
                "    {:<8}: sent {} frames in {:.2} s, host read {}, skipped {} copies for \
                 children behind; children's CPU {:.0}%; listen streams reopened: {}{}",
                s.mode.name(),
                s.spoken,
                s.sending.as_secs_f64(),
                s.host_received,
                s.dropped,
                100.0 * s.cores(s.children_cpu),
                s.reopened,
                if s.stalls > 0 {
                    format!("; {} stalls", s.stalls)
                } else {
                    String::new()
                },
            );
        }
    }
}

fn json(runs: &[Run], args: &Args) -> String {
    let rows: Vec<_> = runs
        .iter()
        .flat_map(|run| {
            run.stretches.iter().map(move |s| {
                serde_json::json!({
                    "case": run.case.name(),
                    "children": run.children,
                    "load_average_at_start": run.load,
                    "relayed_children": run.wiring.relayed_children,
                    "host_direct_connections": run.wiring.host.direct.load(Ordering::Relaxed),
                    "dcutr_upgraded": run.wiring.host.dcutr_upgraded.load(Ordering::Relaxed),
                    "circuits_denied": run.wiring.relay.circuits_denied.load(Ordering::Relaxed),
                    "circuits_closed": run.wiring.relay.circuits_closed.load(Ordering::Relaxed),
                    "mode": s.mode.name(),
                    "sending_s": s.sending.as_secs_f64(),
                    "sent": s.spoken,
                    "delivered": s.delivered,
                    "delivered_per_s": s.forwarded_per_sec(),
                    "delivery_pct": s.delivery(run.children),
                    "delivery_min_pct": s.delivery_min(),
                    "relay_cpu_pct": 100.0 * s.cores(s.relay_cpu),
                    "relay_kernel_share": s.relay_cpu.system_share(),
                    "forwarded_per_relay_cpu_s": s.per_cpu_second(),
                    "relay_us_per_forwarded": s.relay_us_per_frame(),
                    "host_cpu_pct": s.host_cpu.map(|cpu| 100.0 * s.cores(cpu)),
                    "children_cpu_pct": 100.0 * s.cores(s.children_cpu),
                    "process_cpu_pct": 100.0 * s.cores(s.process_cpu),
                    "udp_datagrams_per_forwarded": s.datagrams_per_frame(),
                    "dropped": s.dropped,
                    "stalls": s.stalls,
                    "reopened": s.reopened,
                })
            })
        })
        .collect();
    serde_json::json!({
        "bench": "community_relay",
        "relay_threads": args.relay_threads,
        "cpus": cpus(),
        "load_average_at_end": load_average(),
        "rows": rows,
    })
    .to_string()
}
