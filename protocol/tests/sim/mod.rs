//! A deterministic simulation of the audience tier: the real [`Subtree`], [`Follower`],
//! [`HostAudience`] and [`Ticket`] machines, driven the way the node drives them, on a simulated
//! network with latency, loss and churn, from one seed (in the spirit of iroh-gossip's
//! `proto/sim.rs`: a discrete-event queue ordered by time then sequence, a seeded ChaCha12, a
//! simulated clock; nothing reads the real clock but the wall-time measurement around a run).
//!
//! # The model
//!
//! **Nodes.** Node 0 is the host (capacity [`Config::host_capacity`]). Community relays
//! ([`Config::relays`], capacity [`Config::relay_capacity`]) join first through the host, like
//! anyone, and never leave. Listeners (capacity [`Config::fanout`]) arrive as a Poisson process
//! until [`Config::listeners`] have arrived within [`Config::fill`]; then, for
//! [`Config::measure`], they leave at [`Config::churn_per_min`] of the room a minute (Poisson;
//! [`Config::crash_share`] of them crash, the rest leave gracefully) and as many new ones arrive.
//!
//! **Network.** Each node has an access latency `L` drawn uniformly from 10-75 ms. One way
//! between `a` and `b` takes `(L_a + L_b) / 2` plus a jitter of 0-2 ms, so a round trip is
//! `L_a + L_b`: 20-150 ms. Every message (control frames, requests, answers, handshakes) is lost
//! with probability [`Config::loss`]; the transport retransmits it after a probe timeout of one
//! round trip plus 25 ms (so loss is added delay, never a lost message). A connection costs one
//! round trip (QUIC) unless the two are connected already (a stream between them, or the
//! connection of the request just answered); it is dropped when neither uses it. Talking to a
//! node that is gone fails after [`Config::dead_peer_timeout`] (the QUIC handshake's timeout).
//!
//! **Protocol, as the node drives the machines.**
//! - *Join*: the newcomer's [`Follower`] asks its entry point (the host, or a community relay
//!   picked at random with [`Entry::Relays`]) with a `Join` (the real encoded
//!   `RoomRequest::Join` of a signed `Join` envelope; its size is measured once, the envelope is
//!   not re-verified per join). The entry point places it with its own [`Subtree::place`] and
//!   signs a real ticket ([`Ticket::issue_as_host`] at the host, [`Ticket::issue_below`]
//!   elsewhere); the answer carries the placement, the depth and the host's latest view. The
//!   newcomer connects to the parent and opens its listen stream with the ticket; the parent
//!   verifies it for real ([`Ticket::verify`] against its own ancestors), calls
//!   [`Subtree::child_opened`] (which may refuse `Full`, or `Loop`: an ancestor), and sends
//!   `Down::Path`. The first frame follows within one frame interval (uniform 0-20 ms) and plays
//!   after a 40 ms jitter buffer: join latency is from the first ask to then. (A first frame is
//!   also what [`Follower::opened`] waits for; under a parent that is itself silent, the first
//!   keep-alive.)
//! - *Reports*: every node sends `Up::Report(subtree.report(now))` to its parent every
//!   [`REPORT_INTERVAL`], at a phase of its own; the parent calls [`Subtree::report_from`]. The
//!   host feeds its own report into [`HostAudience::report`] and checks every 250 ms whether a
//!   view is due ([`HostAudience::view`]). Each listener reacts about once a minute.
//! - *Crash*: the children notice after `PARENT_SILENCE` (150 ms after the last frame arrives)
//!   and call [`Follower::lost`]; the dead node's parent notices only when the connection times
//!   out ([`Config::child_gone_after`]: libp2p-quic's 10 s idle timeout), then calls
//!   [`Subtree::child_closed`].
//! - *Graceful leave*: the leaver tells its children at once (they call [`Follower::lost`]) and its
//!   parent (which calls [`Subtree::child_closed`] at once: a leaving marker upstream, which the
//!   node must send), and keeps feeding the children until each has a new stream delivering
//!   (the `Draining` guard) or 1 s has passed (`HANDOVER_TIMEOUT`).
//! - *Attach*: an orphan's [`Follower`] asks its grandparent with its old ticket and the lost
//!   parent, then each ancestor up, then its entry point. A node that is not an entry point takes
//!   it when [`Ticket::check_chain`] passes, the ticket names the asker, and
//!   [`Subtree::lost_lately`] says the lost parent was its child ([`OrphanRule::LostLately`]);
//!   with [`OrphanRule::Vouched`] it also takes it when the lost parent is still its child and
//!   the orphan's ticket names that child as its parent (it then closes that child). Entry points
//!   take any ticket whose chain checks.
//! - *Promises*: a node that placed a newcomer under itself takes the promise back
//!   ([`Subtree::unpromise`]) if the newcomer has not opened its stream 10 s later.
//! - *Loops*: a node whose new path names itself (its parent is below it: a loop the ancestors
//!   check missed, the paths being on their way) drops that stream and asks again, as after a
//!   refusal.
//! - *Not modelled*: admission (the join envelope is not verified, bans and revocations are not
//!   checked), the stage, hands and chat (no `Up::Act`, no `Down::Envelope`, no notices), the
//!   nodes' CPU (a node answers at once), NAT traversal and relayed connections, and connections
//!   kept idle (libp2p keeps one for 60 s; here a requester drops it once answered).
//!
//! **Audio, coarsely.** No frames are simulated. A node hears while the stream feeding it
//! delivers and its parent hears (the host always does). A crash silences the whole subtree
//! below at once; a subtree hears again when its root's new stream delivers its first frame
//! (and that parent hears). A graceful leave costs nothing unless the hand-over runs out.
//! Delivery = the share of a listener's time in the measured window, from its first audio to its
//! departure, during which it heard. Frames lost = silent time / 20 ms.
//!
//! **Signatures.** Tickets are signed and verified for real (every placement, every stream open,
//! every attach). Views are signed for real by the host; each distinct view is verified once
//! and counted as verified at every node that got it (verifying each at 100k nodes every second
//! would be most of the run). Keys are real ed25519 keys from the seed.
//!
//! **Bytes.** Every message is encoded with the real types (`Up`, `Down`, `Ticket`, the view)
//! or, for the request and answer frames the node does not have yet, with postcard structs
//! carrying the same fields ([`AttachWire`], [`AnswerWire`]). Stream frames on the tree cost
//! [`TREE_FRAMING`] more; requests, answers and stream opens [`RPC_OVERHEAD`] more (their own QUIC
//! packets); a connection's handshake [`HANDSHAKE_DIALER`] and [`HANDSHAKE_LISTENER`] bytes. The
//! parent's 2-byte keep-alive every 40 ms (an idle room) is counted apart, as payload and on the
//! wire ([`KEEPALIVE_WIRE`]: its own QUIC packet).

use std::collections::{BTreeMap, BinaryHeap, HashMap};
use std::fmt;
use std::time::{Duration, Instant};

use earshot_protocol::audience::follow::{Answer, Asked, Follower, Step};
use earshot_protocol::audience::host::{AudiencePolicy, HostAudience};
use earshot_protocol::audience::subtree::{Placed, REPORT_INTERVAL, Refused, Subtree};
use earshot_protocol::audience::wire::{Ancestor, Down, Newcomer, Report, Up};
use earshot_protocol::audience::{AudienceView, StageMember, Ticket, TicketCheck, TicketError};
use earshot_protocol::codec;
use earshot_protocol::envelope::Authority;
use earshot_protocol::id::Sig;
use earshot_protocol::snapshot::RoomRequest;
use earshot_protocol::state::{RoomRole, RoomState};
use earshot_protocol::{
    Audience, Capability, ControlBody, Envelope, Grant, PeerKey, Role, RoomId, Timestamp,
};
use ed25519_dalek::SigningKey;
use rand::rngs::ChaCha12Rng;
use rand::{RngExt, SeedableRng};
use serde::Serialize;
use serde_bytes::ByteBuf;

/// Simulated time: microseconds since the run's epoch.
type Us = u64;
type Id = u32;

const MS: Us = 1_000;
const SEC: Us = 1_000_000;

const ROOM: RoomId = RoomId([0xEA; 16]);
/// The wall clock at the epoch (tickets and views carry wall time).
const WALL_START: Timestamp = Timestamp(1_796_119_200_000);

/// A child hears nothing from its parent for this long: the parent is gone (node `fanout.rs`).
pub const PARENT_SILENCE: Us = 150 * MS;
/// How long a leaving node feeds children that have not moved (node `fanout.rs`).
pub const HANDOVER: Us = SEC;
pub const FRAME: Us = 20 * MS;
pub const JITTER_BUFFER: Us = 40 * MS;
pub const KEEPALIVE: Us = 40 * MS;
/// Listeners start arriving this long after the host (relays first).
const FILL_START: Us = 5 * SEC;
/// A newcomer placed under the placer itself that has not opened its stream by then is not
/// coming: the promise is taken back.
const PROMISE_KEPT: Us = 10 * SEC;
const MAX_JITTER: Us = 2 * MS;
/// A lost packet is sent again after a probe timeout: a round trip plus this.
const PTO_EXTRA: Us = 25 * MS;
const HOST_TICK: Us = 250 * MS;

/// Per `Up`/`Down` frame on a stream: its length prefix and its share of a stream frame header
/// (tree frames travel between audio frames, in packets the audio pays for).
pub const TREE_FRAMING: u64 = 4;
/// Per request, answer, or stream open: its own QUIC packet (UDP/IPv4 28, short header about 12,
/// AEAD tag 16) and the stream and request-response framing (about 8).
pub const RPC_OVERHEAD: u64 = 64;
/// A QUIC handshake: the dialer's Initial (padded to 1,200 bytes) and its certificate flight...
pub const HANDSHAKE_DIALER: u64 = 2_200;
/// ... and the listener's Initial and Handshake flights (a libp2p-tls certificate).
pub const HANDSHAKE_LISTENER: u64 = 1_400;
/// A keep-alive's payload (an empty frame's length prefix)...
pub const KEEPALIVE_PAYLOAD: u64 = 2;
/// ... and on the wire while the room is idle (it goes in a packet of its own).
pub const KEEPALIVE_WIRE: u64 = 2 + 44;
/// The listen stream's hello (node `fanout.rs`).
const LISTEN_HELLO: u64 = 18;
/// The leaving marker, down to children and up to the parent.
const LEAVING_MARKER: u64 = 2;

/// Where newcomers ask for a place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Entry {
    /// The host (the link names it).
    Host,
    /// A community relay picked at random (the link lists them).
    Relays,
}

/// When a node that is not an entry point takes an orphan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OrphanRule {
    /// Only when [`Subtree::lost_lately`] says the orphan's lost parent was its child.
    LostLately,
    /// Also when the lost parent is still its child and the orphan's ticket names it as parent.
    Vouched,
}

/// One run.
#[derive(Debug, Clone)]
pub struct Config {
    pub label: String,
    pub seed: u64,
    pub listeners: usize,
    pub fill: Duration,
    pub measure: Duration,
    pub churn_per_min: f64,
    pub crash_share: f64,
    pub fanout: u16,
    pub host_capacity: u16,
    pub relays: usize,
    pub relay_capacity: u16,
    pub entry: Entry,
    pub orphan_rule: OrphanRule,
    pub child_gone_after: Duration,
    pub dead_peer_timeout: Duration,
    pub loss: f64,
    pub reactions_per_min: f64,
    /// Reports as the node is adding them (`node/src/tree.rs`): besides every
    /// [`REPORT_INTERVAL`], a node reports as soon as this after its last report when its
    /// subtree changed (a child came or went, a child's size or free places changed), so places
    /// go up a hop in this time rather than in up to 2 s. `None`: every interval only.
    pub report_soonest: Option<Duration>,
}

impl Config {
    /// The issue's room: fan-out 8, host capacity 8, churn 10 %/min (half crashes), 1 % loss,
    /// filled in 2 minutes, measured for 10.
    pub fn new(label: &str, listeners: usize, relays: usize) -> Self {
        Self {
            label: label.to_owned(),
            seed: 12,
            listeners,
            fill: Duration::from_secs(120),
            measure: Duration::from_secs(600),
            churn_per_min: 0.10,
            crash_share: 0.5,
            fanout: 8,
            host_capacity: 8,
            relays,
            relay_capacity: 500,
            entry: Entry::Host,
            orphan_rule: OrphanRule::LostLately,
            child_gone_after: Duration::from_secs(10),
            dead_peer_timeout: Duration::from_secs(5),
            loss: 0.01,
            reactions_per_min: 1.0,
            report_soonest: None,
        }
    }
}

/// Percentiles of a sample, in the sample's unit.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Pct {
    pub n: usize,
    pub p50: f64,
    pub p95: f64,
    pub p99: f64,
    pub max: f64,
}

impl Pct {
    fn of(mut values: Vec<f64>) -> Self {
        if values.is_empty() {
            return Self::default();
        }
        values.sort_by(f64::total_cmp);
        let at = |q: f64| values[((values.len() - 1) as f64 * q).round() as usize];
        Self {
            n: values.len(),
            p50: at(0.50),
            p95: at(0.95),
            p99: at(0.99),
            max: values[values.len() - 1],
        }
    }
}

/// Bytes a second, over listeners.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Rate {
    /// All listeners' bytes over all their time present.
    pub mean: f64,
    pub p99: f64,
    pub max: f64,
}

/// What the host carried over the measured window.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct HostLoad {
    pub joins_per_sec: f64,
    pub attaches_per_sec: f64,
    /// Of the requests it answered, the share answered "no place".
    pub nothing_share: f64,
    /// Children in the host's [`Subtree`] (within its capacity)...
    pub children_max: usize,
    /// ... and streams it feeds (a child leaving gracefully is fed until it moved).
    pub streams_max: usize,
    /// Streams plus connections of requests in flight, sampled every second.
    pub connections_mean: f64,
    pub connections_max: usize,
    pub in_flight_max: usize,
    pub views_per_sec: f64,
    pub view_bytes: f64,
    pub bytes_in_per_sec: f64,
    pub bytes_out_per_sec: f64,
    pub tickets_signed: u64,
}

/// Where placements came from, over the window.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Placements {
    pub joins: u64,
    pub joins_by_host: u64,
    pub attaches: u64,
    pub attaches_by_host: u64,
    pub attaches_by_entry_relay: u64,
    /// By a node that lost the orphan's parent ([`Subtree::lost_lately`]).
    pub attaches_lost_lately: u64,
    pub attaches_vouched: u64,
}

/// What a run measured.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Summary {
    pub label: String,
    pub listeners: usize,
    pub fanout: u16,
    pub relays: usize,
    pub entry: Option<Entry>,
    pub orphan_rule: Option<OrphanRule>,
    pub report_soonest: Option<Duration>,
    pub measured_secs: f64,
    pub events: u64,
    pub present_at_end: usize,
    /// Of those, hearing at the end.
    pub hearing_at_end: usize,
    pub arrived: usize,
    pub departed: usize,
    /// Listeners' depth (host = 0), sampled every 10 s over the window.
    pub depth: Pct,
    pub delivery_mean: f64,
    /// Over listeners that heard for at least a minute of the window.
    pub delivery_min: f64,
    pub delivery_p01: f64,
    pub frames_lost_per_listener_min: f64,
    /// Control bytes a second per listener present at least a minute (keep-alives apart).
    pub received: Rate,
    pub sent: Rate,
    pub received_by_kind: Vec<(&'static str, f64)>,
    pub sent_by_kind: Vec<(&'static str, f64)>,
    pub keepalive_payload: f64,
    pub keepalive_wire: f64,
    pub host: HostLoad,
    /// Join latency (first ask to first audio played), ms: joins during the window, and the fill.
    pub join: Pct,
    pub join_fill: Pct,
    pub joins_without_audio: u64,
    /// Repair time (the orphan noticed to its new stream's first frame), ms.
    pub repair_crash: Pct,
    pub repair_graceful: Pct,
    /// Audible gap of an orphan (crash: from the crash; graceful: after the hand-over), ms.
    pub gap_crash: Pct,
    pub gap_graceful: Pct,
    pub asks_per_repair: f64,
    pub repairs_reaching_entry: f64,
    pub placements: Placements,
    /// Why streams were refused and asks answered "no place", over the whole run.
    pub refused: Vec<(&'static str, u64)>,
    pub nothing: Vec<(&'static str, u64)>,
    pub loops_refused: u64,
    pub loops_formed: u64,
    /// Orphans that asked the parent they had just lost (a path that named it first).
    pub asks_to_lost_parent: u64,
    /// Streams opened to a parent that was gone (placed on a stale report), each costing the
    /// dead-peer timeout.
    pub opens_to_gone: u64,
    /// Times a member found no place anywhere and waited to ask its entry point again.
    pub retries: u64,
    pub max_ticket_links: usize,
    pub tickets_verified: u64,
    pub views_signed: u64,
}

/// Runs one simulation.
pub fn run(config: Config) -> Summary {
    let mut sim = Sim::new(config);
    sim.run();
    sim.summary()
}

/// Kinds of control bytes.
const KINDS: [&str; 9] = [
    "report",
    "view",
    "path",
    "join",
    "attach",
    "answer",
    "open",
    "leave",
    "handshake",
];
const K_REPORT: usize = 0;
const K_VIEW: usize = 1;
const K_PATH: usize = 2;
const K_JOIN: usize = 3;
const K_ATTACH: usize = 4;
const K_ANSWER: usize = 5;
const K_OPEN: usize = 6;
const K_LEAVE: usize = 7;
const K_HANDSHAKE: usize = 8;

/// An attach request (the node's `RoomRequest::Attach`, with the ticket it will carry).
#[derive(Serialize)]
pub struct AttachWire<'a> {
    room: RoomId,
    lost: Option<PeerKey>,
    ticket: &'a Ticket,
}

/// An answer to a join or an attach.
#[derive(Serialize)]
pub enum AnswerWire<'a> {
    Placed {
        parent: PeerKey,
        addrs: &'a [ByteBuf],
        depth: u16,
        ticket: &'a Ticket,
        view: Option<&'a serde_bytes::Bytes>,
    },
    Nothing,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Host,
    Relay,
    Listener,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cause {
    Crash,
    Graceful,
}

#[derive(Debug, Clone, Copy)]
struct Repair {
    cause: Cause,
    noticed: Us,
    asks: u32,
    reached_entry: bool,
}

/// Why an answer came (or did not).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Why {
    Entry,
    LostLately,
    Vouched,
    No(&'static str),
}

#[derive(Debug, Clone)]
struct Placement {
    parent: PeerKey,
    addrs: Vec<ByteBuf>,
    depth: u16,
    ticket: Ticket,
}

#[derive(Debug)]
enum Req {
    Join,
    Attach {
        lost: Option<PeerKey>,
        ticket: Ticket,
    },
}

/// A request on its way to `to`.
#[derive(Debug)]
struct AskMsg {
    from: Id,
    to: Id,
    attempt: u32,
    sent: Us,
    req: Req,
    len: u64,
}

/// An answer on its way back to `to` (the asker).
#[derive(Debug)]
struct AnswerMsg {
    to: Id,
    from: Id,
    attempt: u32,
    placed: Option<Placement>,
    why: Why,
    len: u64,
}

#[derive(Debug)]
enum Ev {
    Arrive {
        churn: bool,
    },
    Depart,
    Ask(Box<AskMsg>),
    Answer(Box<AnswerMsg>),
    Open {
        child: Id,
        parent: Id,
        attempt: u32,
        sent: Us,
        ticket: Ticket,
    },
    Opened {
        child: Id,
        parent: Id,
        attempt: u32,
        path: Result<Vec<Ancestor>, &'static str>,
        len: u64,
    },
    FirstFrame {
        child: Id,
        parent: Id,
        attempt: u32,
    },
    Path {
        to: Id,
        from: Id,
        path: Vec<Ancestor>,
        len: u64,
    },
    Report {
        from: Id,
        to: Id,
        report: Box<Report>,
        len: u64,
    },
    ReportTick(Id),
    /// A report sooner than the interval (the subtree changed).
    ReportSoon(Id),
    HostTick,
    Silent {
        child: Id,
        parent: Id,
    },
    Leaving {
        child: Id,
        parent: Id,
    },
    ParentTold {
        parent: Id,
        child: Id,
    },
    /// A child drops its stream (it moved on, or found a loop).
    Dropped {
        parent: Id,
        child: Id,
    },
    /// A parent closed a child's stream (it left, or closed it for a vouched orphan).
    Closed {
        child: Id,
        parent: Id,
    },
    HandoverEnd(Id),
    ChildGone {
        parent: Id,
        child: Id,
    },
    Wake {
        node: Id,
        attempt: u32,
    },
    PromiseCheck {
        placer: Id,
        child: Id,
    },
    Sample,
}

struct Queued {
    at: Us,
    seq: u64,
    ev: Ev,
}

impl PartialEq for Queued {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}
impl Eq for Queued {}
impl PartialOrd for Queued {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Queued {
    /// Earliest first (the heap is a max-heap).
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (other.at, other.seq).cmp(&(self.at, self.seq))
    }
}

/// The machines a live node holds.
struct Machines {
    signing: SigningKey,
    subtree: Subtree,
    follower: Option<Follower>,
}

struct Node {
    key: PeerKey,
    kind: Kind,
    /// Access latency.
    access: Us,
    addrs: Vec<ByteBuf>,
    alive: bool,
    leaving: bool,
    m: Option<Box<Machines>>,
    attempt: u32,
    /// The node of the last ask (its connection is kept for an open that follows).
    asked: Option<Id>,
    /// The parent whose stream accepted this node (reports go there).
    parent: Option<Id>,
    /// The parent whose stream feeds this node's audio now.
    up: Option<Id>,
    /// Told by `up` that it leaves: moving.
    moving_from: Option<Id>,
    /// Streams this node accepted.
    kids: Vec<Id>,
    hears: bool,
    silent_since: Option<Us>,
    pending_gap: Option<Cause>,
    depth: u16,
    pending_depth: u16,
    joined_at: Us,
    first_audio: Option<Us>,
    left_at: Option<Us>,
    died_at: Us,
    /// Silent time within the window, after the first audio.
    gap: Us,
    /// The feeding stream's start (keep-alive accounting).
    link_since: Option<Us>,
    keepalive_in: Us,
    keepalive_out: Us,
    repair: Option<Repair>,
    promised_to: Vec<Id>,
    bytes_in: [u64; KINDS.len()],
    bytes_out: [u64; KINDS.len()],
    /// Kind of the request in flight, for the placement statistics.
    asking_attach: bool,
    /// Holds a connection to the host for a request (or the stream that follows it).
    holds_host: bool,
    /// When it last reported, and whether a sooner report is due (with `report_soonest`).
    last_report: Us,
    soon: bool,
    /// What each child last reported that matters above: its size and free places (hashed).
    summaries: Vec<(Id, u64)>,
}

#[derive(Default)]
struct Stats {
    events: u64,
    arrived: usize,
    departed: usize,
    depth: Vec<f64>,
    join: Vec<f64>,
    join_fill: Vec<f64>,
    repair: [Vec<f64>; 2],
    gap: [Vec<f64>; 2],
    repairs: u64,
    repair_asks: u64,
    repairs_reaching_entry: u64,
    placements: Placements,
    host_joins: u64,
    host_attaches: u64,
    host_nothing: u64,
    host_in_flight: usize,
    host_in_flight_max: usize,
    host_connections: Vec<f64>,
    host_connections_max: usize,
    host_children_max: usize,
    host_streams_max: usize,
    asks_to_lost_parent: u64,
    opens_to_gone: u64,
    retries: u64,
    views: u64,
    views_signed: u64,
    view_bytes: u64,
    refused: BTreeMap<&'static str, u64>,
    nothing: BTreeMap<&'static str, u64>,
    loops_refused: u64,
    loops_formed: u64,
    max_ticket_links: usize,
    tickets_verified: u64,
    host_tickets: u64,
}

struct Sim {
    cfg: Config,
    rng: ChaCha12Rng,
    epoch: Instant,
    now: Us,
    seq: u64,
    queue: BinaryHeap<Queued>,
    nodes: Vec<Node>,
    by_key: HashMap<PeerKey, Id>,
    /// Listeners present (not leaving), for picking who leaves.
    present: Vec<Id>,
    /// Each node's index in `present`.
    present_at: Vec<usize>,
    relays: Vec<Id>,
    host: Id,
    host_signing: SigningKey,
    audience: HostAudience,
    state: RoomState,
    last_view: Vec<u8>,
    join_len: u64,
    fill_left: usize,
    window: (Us, Us),
    stats: Stats,
}

fn ms(us: Us) -> f64 {
    us as f64 / 1_000.0
}

impl Sim {
    fn new(cfg: Config) -> Self {
        let mut rng = ChaCha12Rng::seed_from_u64(cfg.seed);
        let epoch = Instant::now();
        let host_signing = SigningKey::from_bytes(&rng.random::<[u8; 32]>());
        let host_key = PeerKey::from(&host_signing);
        let fill_end = FILL_START + cfg.fill.as_micros() as Us;
        let window = (fill_end, fill_end + cfg.measure.as_micros() as Us);
        let join_len = join_request_len(&host_signing);
        let mut sim = Self {
            fill_left: cfg.listeners,
            audience: HostAudience::new(ROOM, AudiencePolicy::default(), epoch),
            state: stage(host_key),
            cfg,
            rng,
            epoch,
            now: 0,
            seq: 0,
            queue: BinaryHeap::new(),
            nodes: Vec::new(),
            by_key: HashMap::new(),
            present: Vec::new(),
            present_at: Vec::new(),
            relays: Vec::new(),
            host: 0,
            host_signing: host_signing.clone(),
            last_view: Vec::new(),
            join_len,
            window,
            stats: Stats::default(),
        };
        let host = sim.add_node(Kind::Host, host_signing);
        sim.host = host;
        sim.nodes[host as usize].hears = true;
        sim.push(0, Ev::HostTick);
        sim.push(0, Ev::Sample);
        for i in 0..sim.cfg.relays {
            let signing = SigningKey::from_bytes(&sim.rng.random::<[u8; 32]>());
            let relay = sim.add_node(Kind::Relay, signing);
            sim.relays.push(relay);
            // Relays come first, 50 ms apart.
            sim.now = i as Us * 50 * MS;
            sim.follow(relay);
        }
        sim.now = 0;
        sim.push(FILL_START, Ev::Arrive { churn: false });
        sim.push(window.0, Ev::Arrive { churn: true });
        sim.push(window.0, Ev::Depart);
        sim
    }

    fn at(&self, t: Us) -> Instant {
        self.epoch + Duration::from_micros(t)
    }

    fn wall(&self) -> Timestamp {
        WALL_START.plus_millis(self.now / MS)
    }

    fn in_window(&self) -> bool {
        self.now >= self.window.0 && self.now < self.window.1
    }

    fn push(&mut self, at: Us, ev: Ev) {
        self.seq += 1;
        self.queue.push(Queued {
            at,
            seq: self.seq,
            ev,
        });
    }

    fn node(&self, id: Id) -> &Node {
        &self.nodes[id as usize]
    }

    fn node_mut(&mut self, id: Id) -> &mut Node {
        &mut self.nodes[id as usize]
    }

    fn machines(&mut self, id: Id) -> &mut Machines {
        self.nodes[id as usize]
            .m
            .as_deref_mut()
            .expect("a live node has its machines")
    }

    fn alive(&self, id: Id) -> bool {
        self.node(id).alive
    }

    fn id_of(&self, key: &PeerKey) -> Id {
        *self
            .by_key
            .get(key)
            .expect("every key in the run is a node")
    }

    fn run(&mut self) {
        while let Some(Queued { at, ev, .. }) = self.queue.pop() {
            if at >= self.window.1 {
                break;
            }
            self.now = at;
            self.stats.events += 1;
            self.handle(ev);
        }
        self.now = self.window.1;
        self.finish();
    }

    // ---- the network ----

    fn rtt(&self, a: Id, b: Id) -> Us {
        self.node(a).access + self.node(b).access
    }

    /// Retransmissions: each loss costs a probe timeout.
    fn losses(&mut self, rtt: Us) -> Us {
        let mut extra = 0;
        for _ in 0..8 {
            if !self.rng.random_bool(self.cfg.loss) {
                break;
            }
            extra += rtt + PTO_EXTRA;
        }
        extra
    }

    fn oneway(&mut self, a: Id, b: Id) -> Us {
        let rtt = self.rtt(a, b);
        rtt / 2 + self.rng.random_range(0..MAX_JITTER) + self.losses(rtt)
    }

    fn connected(&self, a: Id, b: Id) -> bool {
        let n = self.node(a);
        n.asked == Some(b) || n.parent == Some(b) || n.up == Some(b) || n.kids.contains(&b)
    }

    /// The time to connect `a` to `b` (nothing if connected), counting the handshake's bytes.
    fn connect(&mut self, a: Id, b: Id) -> Us {
        if self.connected(a, b) {
            return 0;
        }
        self.count_out(a, K_HANDSHAKE, HANDSHAKE_DIALER);
        self.count_in(a, K_HANDSHAKE, HANDSHAKE_LISTENER);
        if self.alive(b) {
            self.count_in(b, K_HANDSHAKE, HANDSHAKE_DIALER);
            self.count_out(b, K_HANDSHAKE, HANDSHAKE_LISTENER);
        }
        let rtt = self.rtt(a, b);
        rtt + self.losses(rtt)
    }

    fn count_in(&mut self, id: Id, kind: usize, bytes: u64) {
        if self.in_window() {
            self.nodes[id as usize].bytes_in[kind] += bytes;
        }
    }

    fn count_out(&mut self, id: Id, kind: usize, bytes: u64) {
        if self.in_window() {
            self.nodes[id as usize].bytes_out[kind] += bytes;
        }
    }

    fn clip(&self, from: Us, to: Us) -> Us {
        to.min(self.window.1)
            .saturating_sub(from.max(self.window.0))
    }

    // ---- nodes ----

    fn add_node(&mut self, kind: Kind, signing: SigningKey) -> Id {
        let id = Id::try_from(self.nodes.len()).expect("fewer than 4 billion nodes");
        let key = PeerKey::from(&signing);
        let capacity = match kind {
            Kind::Host => self.cfg.host_capacity,
            Kind::Relay => self.cfg.relay_capacity,
            Kind::Listener => self.cfg.fanout,
        };
        let ip: [u8; 4] = self.rng.random();
        let port: u16 = self.rng.random_range(1024..65535);
        let addr: multiaddr::Multiaddr = format!(
            "/ip4/{}.{}.{}.{}/udp/{port}/quic-v1",
            ip[0], ip[1], ip[2], ip[3]
        )
        .parse()
        .expect("a valid multiaddr");
        let addrs = vec![ByteBuf::from(addr.to_vec())];
        let mut subtree = Subtree::new(key, capacity, self.at(self.now));
        subtree.set_addrs(addrs.clone());
        let access = self.rng.random_range(10 * MS..=75 * MS);
        self.nodes.push(Node {
            key,
            kind,
            access,
            addrs,
            alive: true,
            leaving: false,
            m: Some(Box::new(Machines {
                signing,
                subtree,
                follower: None,
            })),
            attempt: 0,
            asked: None,
            parent: None,
            up: None,
            moving_from: None,
            kids: Vec::new(),
            hears: false,
            silent_since: None,
            pending_gap: None,
            depth: 0,
            pending_depth: 0,
            joined_at: self.now,
            first_audio: None,
            left_at: None,
            died_at: 0,
            gap: 0,
            link_since: None,
            keepalive_in: 0,
            keepalive_out: 0,
            repair: None,
            promised_to: Vec::new(),
            bytes_in: [0; KINDS.len()],
            bytes_out: [0; KINDS.len()],
            asking_attach: false,
            holds_host: false,
            last_report: 0,
            soon: false,
            summaries: Vec::new(),
        });
        self.present_at.push(usize::MAX);
        self.by_key.insert(key, id);
        if kind == Kind::Listener {
            self.present_at[id as usize] = self.present.len();
            self.present.push(id);
        }
        if kind != Kind::Host {
            let phase = self.rng.random_range(0..REPORT_INTERVAL.as_micros() as Us);
            self.push(self.now + phase, Ev::ReportTick(id));
        } else {
            self.push(REPORT_INTERVAL.as_micros() as Us, Ev::ReportTick(id));
        }
        id
    }

    fn asked(&self, id: Id) -> Asked {
        let node = self.node(id);
        Asked {
            key: node.key,
            addrs: node.addrs.clone(),
        }
    }

    fn is_entry(&self, id: Id) -> bool {
        match self.node(id).kind {
            Kind::Host => true,
            Kind::Relay => self.cfg.entry == Entry::Relays,
            Kind::Listener => false,
        }
    }

    /// A node starts following the tree: asks its entry point.
    fn follow(&mut self, id: Id) {
        let entry = match (self.node(id).kind, self.cfg.entry) {
            (Kind::Listener, Entry::Relays) if !self.relays.is_empty() => {
                self.relays[self.rng.random_range(0..self.relays.len())]
            }
            _ => self.host,
        };
        let (follower, step) = Follower::new(self.asked(entry));
        self.machines(id).follower = Some(follower);
        self.step(id, step);
    }

    fn follower(&mut self, id: Id) -> &mut Follower {
        self.machines(id)
            .follower
            .as_mut()
            .expect("a member follows the tree")
    }

    fn step(&mut self, id: Id, step: Step) {
        self.node_mut(id).attempt += 1;
        let attempt = self.node(id).attempt;
        match step {
            Step::Ask { whom, lost, ticket } => {
                let to = self.id_of(&whom.key);
                let (req, kind, len) = match ticket {
                    None => (Req::Join, K_JOIN, self.join_len),
                    Some(ticket) => {
                        let len = codec::encode(&AttachWire {
                            room: ROOM,
                            lost,
                            ticket: &ticket,
                        })
                        .len() as u64
                            + 1
                            + RPC_OVERHEAD;
                        (Req::Attach { lost, ticket }, K_ATTACH, len)
                    }
                };
                let entry = self.is_entry(to);
                if lost == Some(whom.key) {
                    self.stats.asks_to_lost_parent += 1;
                }
                if let Some(repair) = self.node_mut(id).repair.as_mut() {
                    repair.asks += 1;
                    repair.reached_entry |= entry;
                }
                self.node_mut(id).asking_attach = kind == K_ATTACH;
                if to == id {
                    // Never expected: asking oneself is asking nobody.
                    let answer = AnswerMsg {
                        to: id,
                        from: id,
                        attempt,
                        placed: None,
                        why: Why::No("asked itself"),
                        len: 0,
                    };
                    self.push(self.now, Ev::Answer(Box::new(answer)));
                    return;
                }
                let delay = self.connect(id, to) + self.oneway(id, to);
                self.node_mut(id).asked = Some(to);
                self.count_out(id, kind, len);
                let ask = AskMsg {
                    from: id,
                    to,
                    attempt,
                    sent: self.now,
                    req,
                    len,
                };
                self.push(self.now + delay, Ev::Ask(Box::new(ask)));
            }
            Step::Open { parent, ticket, .. } => {
                let to = self.id_of(&parent);
                let len = LISTEN_HELLO + ticket.encode().len() as u64 + RPC_OVERHEAD;
                let delay = self.connect(id, to) + self.oneway(id, to);
                self.count_out(id, K_OPEN, len);
                self.push(
                    self.now + delay,
                    Ev::Open {
                        child: id,
                        parent: to,
                        attempt,
                        sent: self.now,
                        ticket,
                    },
                );
            }
            Step::Wait { until } => {
                self.stats.retries += 1;
                let at = until.saturating_duration_since(self.epoch).as_micros() as Us;
                self.push(at.max(self.now), Ev::Wake { node: id, attempt });
            }
        }
    }

    fn handle(&mut self, ev: Ev) {
        match ev {
            Ev::Arrive { churn } => self.on_arrive(churn),
            Ev::Depart => self.on_depart(),
            Ev::Ask(ask) => self.on_ask(*ask),
            Ev::Answer(answer) => self.on_answer(*answer),
            Ev::Open {
                child,
                parent,
                attempt,
                sent,
                ticket,
            } => self.on_open(child, parent, attempt, sent, ticket),
            Ev::Opened {
                child,
                parent,
                attempt,
                path,
                len,
            } => self.on_opened(child, parent, attempt, path, len),
            Ev::FirstFrame {
                child,
                parent,
                attempt,
            } => self.on_first_frame(child, parent, attempt),
            Ev::Path {
                to,
                from,
                path,
                len,
            } => {
                if self.alive(to) && self.node(to).parent == Some(from) {
                    self.count_in(to, K_PATH, len);
                    self.apply_path(to, path);
                }
            }
            Ev::Report {
                from,
                to,
                report,
                len,
            } => {
                if self.alive(to) {
                    self.count_in(to, K_REPORT, len);
                    if self.cfg.report_soonest.is_some() {
                        let summary = summarise(&report);
                        let summaries = &mut self.node_mut(to).summaries;
                        let changed = match summaries.iter_mut().find(|(kid, _)| *kid == from) {
                            Some(held) => std::mem::replace(&mut held.1, summary) != summary,
                            None => {
                                summaries.push((from, summary));
                                true
                            }
                        };
                        if changed {
                            self.changed(to);
                        }
                    }
                    let key = self.node(from).key;
                    let now = self.at(self.now);
                    self.machines(to).subtree.report_from(&key, *report, now);
                }
            }
            Ev::ReportTick(id) => {
                if self.alive(id) {
                    let next = self.now + REPORT_INTERVAL.as_micros() as Us;
                    self.push(next, Ev::ReportTick(id));
                    self.on_report_tick(id);
                }
            }
            Ev::ReportSoon(id) => {
                if self.alive(id) && std::mem::take(&mut self.node_mut(id).soon) {
                    self.on_report_tick(id);
                }
            }
            Ev::HostTick => self.on_host_tick(),
            Ev::Silent { child, parent } => {
                let node = self.node(child);
                if node.alive && !node.leaving && node.parent == Some(parent) {
                    self.orphaned(child, Cause::Crash);
                }
            }
            Ev::Leaving { child, parent } => {
                self.count_in(child, K_LEAVE, LEAVING_MARKER);
                let node = self.node(child);
                if node.alive
                    && !node.leaving
                    && node.parent == Some(parent)
                    && node.moving_from.is_none()
                {
                    self.node_mut(child).moving_from = Some(parent);
                    self.orphaned(child, Cause::Graceful);
                }
            }
            Ev::Closed { child, parent } => {
                let node = self.node(child);
                if node.alive
                    && !node.leaving
                    && node.parent == Some(parent)
                    && node.moving_from != Some(parent)
                {
                    self.orphaned(child, Cause::Graceful);
                }
            }
            Ev::ParentTold { parent, child } => {
                self.count_in(parent, K_LEAVE, LEAVING_MARKER);
                if self.alive(parent) {
                    self.forget_kid(parent, child);
                }
            }
            Ev::Dropped { parent, child } => {
                if self.alive(parent) {
                    self.drop_kid(parent, child);
                }
            }
            Ev::HandoverEnd(id) => {
                if self.alive(id) {
                    self.depart(id);
                }
            }
            Ev::ChildGone { parent, child } => {
                if self.alive(parent) {
                    self.forget_kid(parent, child);
                }
            }
            Ev::Wake { node, attempt } => {
                if self.alive(node)
                    && !self.node(node).leaving
                    && self.node(node).attempt == attempt
                {
                    let now = self.at(self.now);
                    if let Some(step) = self.follower(node).tick(now) {
                        self.step(node, step);
                    }
                }
            }
            Ev::PromiseCheck { placer, child } => {
                if self.alive(placer) && self.node(placer).promised_to.contains(&child) {
                    self.node_mut(placer).promised_to.retain(|&c| c != child);
                    let key = self.node(placer).key;
                    self.machines(placer).subtree.unpromise(&key);
                }
            }
            Ev::Sample => self.on_sample(),
        }
    }

    // ---- arrivals and departures ----

    fn churn_rate(&self) -> f64 {
        self.cfg.listeners as f64 * self.cfg.churn_per_min / 60.0
    }

    fn exp(&mut self, rate_per_sec: f64) -> Us {
        let u: f64 = self.rng.random_range(f64::EPSILON..1.0);
        (-u.ln() / rate_per_sec * SEC as f64) as Us
    }

    fn on_arrive(&mut self, churn: bool) {
        if churn {
            if self.churn_rate() <= 0.0 {
                return;
            }
            let next = self.exp(self.churn_rate());
            self.push(self.now + next, Ev::Arrive { churn: true });
        } else {
            self.fill_left -= 1;
            if self.fill_left > 0 {
                let rate = self.cfg.listeners as f64 / self.cfg.fill.as_secs_f64();
                let next = self.exp(rate);
                self.push(self.now + next, Ev::Arrive { churn: false });
            }
        }
        let signing = SigningKey::from_bytes(&self.rng.random::<[u8; 32]>());
        let id = self.add_node(Kind::Listener, signing);
        self.stats.arrived += 1;
        self.follow(id);
    }

    fn on_depart(&mut self) {
        if self.churn_rate() <= 0.0 {
            return;
        }
        let next = self.exp(self.churn_rate());
        self.push(self.now + next, Ev::Depart);
        if self.present.is_empty() {
            return;
        }
        let id = self.present[self.rng.random_range(0..self.present.len())];
        self.stats.departed += 1;
        if self.rng.random_bool(self.cfg.crash_share) {
            self.crash(id);
        } else {
            self.leave(id);
        }
    }

    fn unlist(&mut self, id: Id) {
        let at = self.present_at[id as usize];
        if at == usize::MAX {
            return;
        }
        self.present.swap_remove(at);
        if let Some(&moved) = self.present.get(at) {
            self.present_at[moved as usize] = at;
        }
        self.present_at[id as usize] = usize::MAX;
    }

    /// The node is no longer in the audience (its own delivery stops counting).
    fn stop_listening(&mut self, id: Id) {
        self.unlist(id);
        self.release_host(id);
        let now = self.now;
        if let Some(since) = self.node(id).silent_since {
            let gap = self.clip(since, now);
            self.node_mut(id).gap += gap;
        }
        let node = self.node_mut(id);
        node.silent_since = None;
        node.left_at = Some(now);
        node.attempt += 1;
        self.end_link(id);
    }

    /// Keep-alive accounting: the stream feeding `id` ends now.
    fn end_link(&mut self, id: Id) {
        if let Some(since) = self.node_mut(id).link_since.take() {
            let span = self.clip(since, self.now);
            self.node_mut(id).keepalive_in += span;
            if let Some(up) = self.node(id).up {
                self.node_mut(up).keepalive_out += span;
            }
        }
    }

    fn crash(&mut self, id: Id) {
        self.stop_listening(id);
        let now = self.now;
        {
            let node = self.node_mut(id);
            node.alive = false;
            node.died_at = now;
            node.hears = false;
        }
        for parent in [self.node(id).parent, self.node(id).up]
            .into_iter()
            .flatten()
        {
            self.node_mut(parent).kids.retain(|&k| k != id);
        }
        if let Some(parent) = self.node(id).parent {
            let after = self.cfg.child_gone_after.as_micros() as Us;
            self.push(now + after, Ev::ChildGone { parent, child: id });
        }
        let kids = std::mem::take(&mut self.node_mut(id).kids);
        for &kid in &kids {
            if self.node(kid).up == Some(id) {
                self.end_link(kid);
            }
            let late = self.oneway(id, kid) + PARENT_SILENCE - self.rng.random_range(0..FRAME);
            self.push(
                now + late,
                Ev::Silent {
                    child: kid,
                    parent: id,
                },
            );
            self.propagate(kid);
        }
        self.node_mut(id).m = None;
    }

    fn leave(&mut self, id: Id) {
        self.stop_listening(id);
        self.node_mut(id).leaving = true;
        if let Some(parent) = self.node(id).parent {
            self.count_out(id, K_LEAVE, LEAVING_MARKER);
            let delay = self.oneway(id, parent);
            self.push(self.now + delay, Ev::ParentTold { parent, child: id });
        }
        let kids = self.node(id).kids.clone();
        if kids.is_empty() {
            self.depart(id);
            return;
        }
        for kid in kids {
            self.count_out(id, K_LEAVE, LEAVING_MARKER);
            let delay = self.oneway(id, kid);
            self.push(
                self.now + delay,
                Ev::Leaving {
                    child: kid,
                    parent: id,
                },
            );
        }
        self.push(self.now + HANDOVER, Ev::HandoverEnd(id));
    }

    /// A leaving node stops feeding: it is gone.
    fn depart(&mut self, id: Id) {
        {
            let node = self.node_mut(id);
            node.alive = false;
            node.hears = false;
        }
        self.end_link(id);
        for parent in [self.node(id).parent, self.node(id).up]
            .into_iter()
            .flatten()
        {
            self.node_mut(parent).kids.retain(|&k| k != id);
        }
        let kids = std::mem::take(&mut self.node_mut(id).kids);
        for &kid in &kids {
            if self.node(kid).up == Some(id) {
                self.end_link(kid);
            }
            let node = self.node(kid);
            if node.alive && node.parent == Some(id) && node.moving_from != Some(id) {
                let delay = self.oneway(id, kid);
                self.push(
                    self.now + delay,
                    Ev::Closed {
                        child: kid,
                        parent: id,
                    },
                );
            }
            self.propagate(kid);
        }
        self.node_mut(id).m = None;
    }

    /// `child` lost its parent (it noticed now): its follower asks for another place.
    fn orphaned(&mut self, child: Id, cause: Cause) {
        let now = self.now;
        {
            let node = self.node_mut(child);
            if cause == Cause::Crash {
                node.parent = None;
            }
            if node.repair.is_none() {
                node.repair = Some(Repair {
                    cause,
                    noticed: now,
                    asks: 0,
                    reached_entry: false,
                });
            }
            node.asked = None;
        }
        if cause == Cause::Crash {
            self.end_link(child);
            self.node_mut(child).up = None;
        }
        let at = self.at(now);
        let step = self.follower(child).lost(at);
        self.step(child, step);
    }

    /// `parent`'s subtree no longer has `child` (`Subtree::child_closed`).
    fn forget_kid(&mut self, parent: Id, child: Id) {
        let key = self.node(child).key;
        let now = self.at(self.now);
        let subtree = &mut self.machines(parent).subtree;
        if subtree.has_child(&key) {
            subtree.child_closed(&key, now);
            self.node_mut(parent)
                .summaries
                .retain(|(kid, _)| *kid != child);
            self.changed(parent);
        }
    }

    /// A parent forgets a child's stream (the child dropped it).
    fn drop_kid(&mut self, parent: Id, child: Id) {
        self.node_mut(parent).kids.retain(|&k| k != child);
        self.forget_kid(parent, child);
        if self.node(parent).leaving && self.node(parent).kids.is_empty() {
            self.depart(parent);
        }
    }

    // ---- asking and answering ----

    fn on_ask(&mut self, ask: AskMsg) {
        let AskMsg {
            from,
            to,
            attempt,
            sent,
            req,
            len,
        } = ask;
        let kind = match req {
            Req::Join => K_JOIN,
            Req::Attach { .. } => K_ATTACH,
        };
        if !self.alive(to) {
            *self.stats.nothing.entry("gone").or_default() += 1;
            let at = sent + self.cfg.dead_peer_timeout.as_micros() as Us;
            let answer = AnswerMsg {
                to: from,
                from: to,
                attempt,
                placed: None,
                why: Why::No("gone"),
                len: 0,
            };
            self.push(at, Ev::Answer(Box::new(answer)));
            return;
        }
        self.count_in(to, kind, len);
        let at_host = to == self.host;
        if at_host {
            // The asker's connection to the host is held from now until the answer is back
            // (or, placed under the host, until its stream opens).
            self.node_mut(from).holds_host = true;
            self.host_in_flight(1);
            if self.in_window() {
                match req {
                    Req::Join => self.stats.host_joins += 1,
                    Req::Attach { .. } => self.stats.host_attaches += 1,
                }
            }
        }
        let (placed, why) = self.answer(from, to, &req);
        if at_host && placed.is_none() && self.in_window() {
            self.stats.host_nothing += 1;
        }
        if let Why::No(reason) = why {
            *self.stats.nothing.entry(reason).or_default() += 1;
        }
        let len = match &placed {
            Some(p) => {
                let view =
                    matches!(req, Req::Join).then(|| serde_bytes::Bytes::new(&self.last_view));
                codec::encode(&AnswerWire::Placed {
                    parent: p.parent,
                    addrs: &p.addrs,
                    depth: p.depth,
                    ticket: &p.ticket,
                    view,
                })
                .len() as u64
            }
            None => codec::encode(&AnswerWire::Nothing).len() as u64,
        } + RPC_OVERHEAD;
        self.count_out(to, K_ANSWER, len);
        let delay = self.oneway(to, from);
        let answer = AnswerMsg {
            to: from,
            from: to,
            attempt,
            placed,
            why,
            len,
        };
        self.push(self.now + delay, Ev::Answer(Box::new(answer)));
    }

    fn host_in_flight(&mut self, change: isize) {
        let stats = &mut self.stats;
        stats.host_in_flight = stats.host_in_flight.saturating_add_signed(change);
        if self.now >= self.window.0 {
            stats.host_in_flight_max = stats.host_in_flight_max.max(stats.host_in_flight);
        }
    }

    /// The asker lets go of its connection to the host.
    fn release_host(&mut self, id: Id) {
        if std::mem::take(&mut self.node_mut(id).holds_host) {
            self.host_in_flight(-1);
        }
    }

    /// What `to` answers `from`'s request.
    fn answer(&mut self, from: Id, to: Id, req: &Req) -> (Option<Placement>, Why) {
        if self.node(to).leaving {
            return (None, Why::No("leaving"));
        }
        let from_key = self.node(from).key;
        let host_key = self.node(self.host).key;
        let now = self.at(self.now);
        let wall = self.wall();
        let entry = self.is_entry(to);
        let why = match req {
            Req::Join if entry => Why::Entry,
            Req::Join => return (None, Why::No("join at a non-entry")),
            Req::Attach { lost, ticket } => {
                self.stats.tickets_verified += 1;
                if ticket.check_chain(ROOM, host_key, wall).is_err() {
                    return (None, Why::No("bad ticket"));
                }
                let leaf = ticket.leaf().expect("a checked chain has links");
                if leaf.child != from_key {
                    return (None, Why::No("not its ticket"));
                }
                let named = leaf.parent;
                let vouching = self.cfg.orphan_rule == OrphanRule::Vouched;
                let subtree = &mut self.machines(to).subtree;
                let lost_lately = lost.is_some_and(|lost| subtree.lost_lately(&lost, now));
                let vouched =
                    vouching && lost.is_some_and(|lost| subtree.has_child(&lost) && named == lost);
                if entry {
                    Why::Entry
                } else if lost_lately {
                    Why::LostLately
                } else if vouched {
                    let lost = self.id_of(&named);
                    self.close_kid(to, lost);
                    Why::Vouched
                } else {
                    return (None, Why::No("did not lose that parent"));
                }
            }
        };
        let Some(placed) = self.machines(to).subtree.place(now) else {
            return (None, Why::No("no place"));
        };
        let to_key = self.node(to).key;
        let (parent, addrs, below) = match placed {
            Placed::Here => (to_key, self.node(to).addrs.clone(), 0),
            Placed::Below(slot) => (slot.key, slot.addrs, slot.below),
        };
        let ticket = if to == self.host {
            self.stats.host_tickets += 1;
            Some(Ticket::issue_as_host(
                &self.host_signing,
                ROOM,
                from_key,
                parent,
                wall,
            ))
        } else {
            let machines = self.machines(to);
            let mine = machines.follower.as_ref().and_then(Follower::ticket);
            mine.and_then(|mine| {
                Ticket::issue_below(&machines.signing, mine, from_key, parent, wall)
            })
        };
        let Some(ticket) = ticket else {
            self.machines(to).subtree.unpromise(&parent);
            return (None, Why::No("ticket chain at its longest"));
        };
        self.stats.max_ticket_links = self.stats.max_ticket_links.max(ticket.links.len());
        if parent == to_key {
            self.node_mut(to).promised_to.push(from);
            self.push(
                self.now + PROMISE_KEPT,
                Ev::PromiseCheck {
                    placer: to,
                    child: from,
                },
            );
        }
        if matches!(req, Req::Join) {
            let newcomer = Newcomer {
                key: from_key,
                name: format!("listener-{from}"),
            };
            if to == self.host {
                self.audience.arrived(newcomer);
            } else {
                self.machines(to).subtree.newcomer(newcomer);
            }
        }
        let depth = self.node(to).depth + below + 1;
        (
            Some(Placement {
                parent,
                addrs,
                depth,
                ticket,
            }),
            why,
        )
    }

    /// A parent closes a child's stream (for an orphan that vouched the child is gone).
    fn close_kid(&mut self, parent: Id, child: Id) {
        self.forget_kid(parent, child);
        if self.node(parent).kids.contains(&child) {
            self.node_mut(parent).kids.retain(|&k| k != child);
            if self.alive(child) {
                let delay = self.oneway(parent, child);
                self.push(self.now + delay, Ev::Closed { child, parent });
                if self.node(child).up == Some(parent) {
                    self.end_link(child);
                    self.node_mut(child).up = None;
                    self.propagate(child);
                }
            }
        }
    }

    fn on_answer(&mut self, answer: AnswerMsg) {
        let AnswerMsg {
            to,
            from,
            attempt,
            placed,
            why,
            len,
        } = answer;
        let here = placed
            .as_ref()
            .is_some_and(|p| p.parent == self.node(from).key);
        let live = self.alive(to) && !self.node(to).leaving && self.node(to).attempt == attempt;
        if from == self.host && !(live && here) {
            self.release_host(to);
        }
        if !live {
            return;
        }
        self.count_in(to, K_ANSWER, len);
        if placed.is_some() && self.in_window() {
            let attach = self.node(to).asking_attach;
            let p = &mut self.stats.placements;
            let by_host = from == self.host;
            if attach {
                p.attaches += 1;
                match why {
                    Why::Entry if by_host => p.attaches_by_host += 1,
                    Why::Entry => p.attaches_by_entry_relay += 1,
                    Why::LostLately => p.attaches_lost_lately += 1,
                    Why::Vouched => p.attaches_vouched += 1,
                    Why::No(_) => {}
                }
            } else {
                p.joins += 1;
                if by_host {
                    p.joins_by_host += 1;
                }
            }
        }
        let answer = match placed {
            Some(p) => {
                self.node_mut(to).pending_depth = p.depth;
                Answer::Placed {
                    parent: p.parent,
                    addrs: p.addrs,
                    depth: p.depth,
                    ticket: p.ticket,
                }
            }
            None => Answer::Nothing,
        };
        let now = self.at(self.now);
        let step = self.follower(to).answered(now, answer);
        self.step(to, step);
    }

    fn on_open(&mut self, child: Id, parent: Id, attempt: u32, sent: Us, ticket: Ticket) {
        if parent == self.host {
            // Placed under the host, it kept its connection for this stream.
            self.release_host(child);
        }
        if !self.alive(parent) {
            self.stats.opens_to_gone += 1;
            let at = sent + self.cfg.dead_peer_timeout.as_micros() as Us;
            self.push(
                at,
                Ev::Opened {
                    child,
                    parent,
                    attempt,
                    path: Err("gone"),
                    len: 0,
                },
            );
            return;
        }
        let len = LISTEN_HELLO + ticket.encode().len() as u64 + RPC_OVERHEAD;
        self.count_in(parent, K_OPEN, len);
        let result = self.admit(child, parent, ticket);
        if let Err(reason) = result {
            *self.stats.refused.entry(reason).or_default() += 1;
        }
        let len = match &result {
            Ok(path) => Down::Path(path.clone()).encode().len() as u64 + TREE_FRAMING,
            Err(_) => 8 + RPC_OVERHEAD,
        };
        self.count_out(parent, if result.is_ok() { K_PATH } else { K_OPEN }, len);
        let delay = self.oneway(parent, child);
        self.push(
            self.now + delay,
            Ev::Opened {
                child,
                parent,
                attempt,
                path: result,
                len,
            },
        );
    }

    /// The parent's side of a listen stream: the ticket, loops, room.
    fn admit(
        &mut self,
        child: Id,
        parent: Id,
        ticket: Ticket,
    ) -> Result<Vec<Ancestor>, &'static str> {
        if self.node(parent).leaving {
            return Err("leaving");
        }
        let child_key = self.node(child).key;
        let parent_key = self.node(parent).key;
        let host_key = self.node(self.host).key;
        let wall = self.wall();
        let now = self.at(self.now);
        let ancestors = self.machines(parent).subtree.ancestor_keys();
        self.stats.tickets_verified += 1;
        let check = TicketCheck {
            room: ROOM,
            host: host_key,
            presenter: child_key,
            parent: parent_key,
            ancestors: &ancestors,
            now: wall,
        };
        if let Err(err) = ticket.verify(&check) {
            return Err(match err {
                TicketError::NotAbove { .. } => "ticket: placer not above",
                TicketError::NotHere { .. } => "ticket: not here",
                TicketError::Expired { .. } => "ticket: expired",
                _ => "ticket: other",
            });
        }
        let machines = self.machines(parent);
        match machines.subtree.child_opened(child_key, now) {
            Ok(()) => {}
            Err(Refused::Loop) => {
                self.stats.loops_refused += 1;
                return Err("loop: the child is an ancestor");
            }
            Err(_) => return Err("full"),
        }
        let path = machines.subtree.path_for_children();
        let node = self.node_mut(parent);
        node.promised_to.retain(|&c| c != child);
        if !node.kids.contains(&child) {
            node.kids.push(child);
        }
        self.changed(parent);
        Ok(path)
    }

    fn on_opened(
        &mut self,
        child: Id,
        parent: Id,
        attempt: u32,
        path: Result<Vec<Ancestor>, &'static str>,
        len: u64,
    ) {
        let live =
            self.alive(child) && !self.node(child).leaving && self.node(child).attempt == attempt;
        if !live {
            if path.is_ok() {
                let delay = self.oneway(child, parent);
                self.push(self.now + delay, Ev::Dropped { parent, child });
            }
            return;
        }
        self.count_in(child, if path.is_ok() { K_PATH } else { K_OPEN }, len);
        match path {
            Err(_) => {
                self.node_mut(child).asked = None;
                let now = self.at(self.now);
                let step = self.follower(child).lost(now);
                self.step(child, step);
            }
            Ok(path) => {
                let node = self.node_mut(child);
                node.parent = Some(parent);
                node.depth = node.pending_depth;
                // The new parent hears of this subtree at once.
                node.last_report = 0;
                self.changed(child);
                if !self.alive(parent) {
                    // It accepted, then died: the child hears nothing from it.
                    self.push(self.now + PARENT_SILENCE, Ev::Silent { child, parent });
                    return;
                }
                self.apply_path(child, path);
                if self.node(child).parent != Some(parent) {
                    return; // a loop: dropped again
                }
                let wait = self.rng.random_range(0..FRAME);
                self.push(
                    self.now + wait,
                    Ev::FirstFrame {
                        child,
                        parent,
                        attempt,
                    },
                );
            }
        }
    }

    /// A node learns its ancestors from its parent and tells its own children.
    fn apply_path(&mut self, id: Id, path: Vec<Ancestor>) {
        let key = self.node(id).key;
        if path.iter().any(|a| a.key == key) {
            // Its parent is below it: drop that stream and ask again.
            self.stats.loops_formed += 1;
            if let Some(parent) = self.node_mut(id).parent.take() {
                let delay = self.oneway(id, parent);
                self.push(self.now + delay, Ev::Dropped { parent, child: id });
                if self.node(id).up == Some(parent) {
                    self.end_link(id);
                    self.node_mut(id).up = None;
                    self.propagate(id);
                }
            }
            if self.node(id).repair.is_none() {
                self.node_mut(id).repair = Some(Repair {
                    cause: Cause::Crash,
                    noticed: self.now,
                    asks: 0,
                    reached_entry: false,
                });
            }
            let now = self.at(self.now);
            let step = self.follower(id).lost(now);
            self.step(id, step);
            return;
        }
        let machines = self.machines(id);
        if let Some(follower) = machines.follower.as_mut() {
            follower.path(path.clone());
        }
        machines.subtree.set_ancestors(path);
        let down = machines.subtree.path_for_children();
        let kids = self.node(id).kids.clone();
        if kids.is_empty() {
            return;
        }
        let len = Down::Path(down.clone()).encode().len() as u64 + TREE_FRAMING;
        for kid in kids {
            self.count_out(id, K_PATH, len);
            let delay = self.oneway(id, kid);
            self.push(
                self.now + delay,
                Ev::Path {
                    to: kid,
                    from: id,
                    path: down.clone(),
                    len,
                },
            );
        }
    }

    fn on_first_frame(&mut self, child: Id, parent: Id, attempt: u32) {
        let node = self.node(child);
        if !node.alive || node.leaving || node.attempt != attempt || node.parent != Some(parent) {
            return;
        }
        if !self.alive(parent) {
            return; // its silence will be noticed
        }
        let now = self.at(self.now);
        self.follower(child).opened(now);
        self.node_mut(child).asked = None;
        let old = self.node(child).up;
        self.end_link(child);
        if let Some(old) = old.filter(|&old| old != parent) {
            // The draining stream ends.
            if self.alive(old) {
                self.drop_kid(old, child);
            }
        }
        let now = self.now;
        let node = self.node_mut(child);
        node.moving_from = None;
        node.up = Some(parent);
        node.link_since = Some(now);
        if let Some(repair) = node.repair.take() {
            node.pending_gap = Some(repair.cause);
            if now >= self.window.0 {
                let stats = &mut self.stats;
                stats.repair[repair.cause as usize].push(ms(now - repair.noticed));
                stats.repairs += 1;
                stats.repair_asks += u64::from(repair.asks);
                if repair.reached_entry {
                    stats.repairs_reaching_entry += 1;
                }
            }
        }
        self.propagate(child);
        let in_window = self.now >= self.window.0;
        let node = self.node_mut(child);
        if node.hears
            && let Some(cause) = node.pending_gap.take()
            && in_window
        {
            // Heard all along: a hand-over without a gap.
            self.stats.gap[cause as usize].push(0.0);
        }
    }

    /// Hearing, recomputed below `root` after its feed changed.
    fn propagate(&mut self, root: Id) {
        let now = self.now;
        let mut stack = vec![root];
        while let Some(id) = stack.pop() {
            let node = self.node(id);
            let hears = node.alive
                && match node.up {
                    Some(up) => self.node(up).alive && self.node(up).hears,
                    None => node.kind == Kind::Host,
                };
            if hears == node.hears {
                continue;
            }
            let in_window = now >= self.window.0;
            let listening = node.left_at.is_none();
            if hears {
                if let Some(since) = self.node_mut(id).silent_since.take() {
                    let gap = self.clip(since, now);
                    self.node_mut(id).gap += gap;
                    if let Some(cause) = self.node_mut(id).pending_gap.take()
                        && in_window
                    {
                        self.stats.gap[cause as usize].push(ms(now - since));
                    }
                }
                self.node_mut(id).pending_gap = None;
                let node = self.node(id);
                if node.first_audio.is_none() && listening {
                    let latency = ms(now + JITTER_BUFFER - node.joined_at);
                    if node.kind == Kind::Listener {
                        if node.joined_at >= self.window.0 {
                            self.stats.join.push(latency);
                        } else {
                            self.stats.join_fill.push(latency);
                        }
                    }
                    self.node_mut(id).first_audio = Some(now);
                }
            } else if listening && self.node(id).first_audio.is_some() {
                self.node_mut(id).silent_since = Some(now);
            }
            self.node_mut(id).hears = hears;
            let node = self.node(id);
            for &kid in &node.kids {
                if self.node(kid).up == Some(id) {
                    stack.push(kid);
                }
            }
        }
    }

    // ---- reports, views, samples ----

    /// With `report_soonest`: `id`'s subtree changed, a report goes soon.
    fn changed(&mut self, id: Id) {
        let Some(soonest) = self.cfg.report_soonest else {
            return;
        };
        let node = self.node_mut(id);
        if node.soon || !node.alive {
            return;
        }
        node.soon = true;
        let at = (node.last_report + soonest.as_micros() as Us).max(self.now);
        self.push(at, Ev::ReportSoon(id));
    }

    fn on_report_tick(&mut self, id: Id) {
        self.node_mut(id).last_report = self.now;
        let now = self.at(self.now);
        if id == self.host {
            let report = self.machines(id).subtree.report(now);
            self.audience.report(report);
            return;
        }
        let Some(parent) = self.node(id).parent else {
            return;
        };
        if self.node(id).leaving {
            return;
        }
        let react = REPORT_INTERVAL.as_secs_f64() * self.cfg.reactions_per_min / 60.0;
        if self.rng.random_bool(react.min(1.0)) {
            let emoji = ["👏", "😂", "🔥", "❤️"][self.rng.random_range(0..4)];
            self.machines(id).subtree.react(emoji);
        }
        let report = self.machines(id).subtree.report(now);
        let up = Up::Report(report);
        let len = up.encode().len() as u64 + TREE_FRAMING;
        let Up::Report(report) = up else {
            unreachable!("just built")
        };
        self.count_out(id, K_REPORT, len);
        let delay = self.oneway(id, parent);
        self.push(
            self.now + delay,
            Ev::Report {
                from: id,
                to: parent,
                report: Box::new(report),
                len,
            },
        );
    }

    fn on_host_tick(&mut self) {
        self.push(self.now + HOST_TICK, Ev::HostTick);
        let now = self.at(self.now);
        let wall = self.wall();
        let listeners = self.machines(self.host).subtree.size().saturating_sub(1);
        let Some(view) = self
            .audience
            .view(now, wall, &self.state, listeners, &self.host_signing)
        else {
            return;
        };
        self.stats.views_signed += 1;
        let bytes = view.encode();
        let host_key = self.node(self.host).key;
        // Verified once, counted as verified at every node it reaches.
        AudienceView::decode_verified(&bytes, ROOM, &host_key).expect("the host's own view");
        let len = Down::View(ByteBuf::from(bytes.clone())).encode().len() as u64 + TREE_FRAMING;
        self.last_view = bytes;
        if !self.in_window() {
            return;
        }
        self.stats.views += 1;
        self.stats.view_bytes += len;
        let fed = |sim: &Self, id: Id| {
            sim.node(id)
                .kids
                .iter()
                .filter(|&&kid| sim.node(kid).up == Some(id))
                .count() as u64
        };
        let host = self.host;
        let out = fed(self, host) * len;
        self.nodes[host as usize].bytes_out[K_VIEW] += out;
        for i in 0..self.present.len() + self.relays.len() {
            let id = if i < self.present.len() {
                self.present[i]
            } else {
                self.relays[i - self.present.len()]
            };
            if !self.node(id).hears {
                continue;
            }
            let out = fed(self, id) * len;
            let node = &mut self.nodes[id as usize];
            node.bytes_in[K_VIEW] += len;
            node.bytes_out[K_VIEW] += out;
        }
    }

    fn on_sample(&mut self) {
        self.push(self.now + SEC, Ev::Sample);
        if std::env::var_os("SIM_TRACE").is_some() && self.now % (5 * SEC) < SEC {
            let now = self.at(self.now);
            let report = self.machines(self.host).subtree.clone().report(now);
            let waiting = self
                .present
                .iter()
                .filter(|&&id| self.node(id).up.is_none())
                .count();
            let silent = self
                .present
                .iter()
                .filter(|&&id| !self.node(id).hears)
                .count();
            eprintln!(
                "t={:.0}s size={} host free={:?} unattached={} silent={}",
                self.now as f64 / SEC as f64,
                self.machines(self.host).subtree.size(),
                report
                    .free
                    .iter()
                    .map(|s| (s.below, s.free))
                    .collect::<Vec<_>>(),
                waiting,
                silent
            );
            for r in self.relays.clone() {
                let sub = self.machines(r).subtree.clone();
                let kids = sub.children().count();
                let rep = sub.clone().report(now);
                eprintln!(
                    "  relay {r} kids={kids} free={} report={:?}",
                    sub.free(),
                    rep.free
                        .iter()
                        .map(|s| (s.below, s.free))
                        .collect::<Vec<_>>()
                );
            }
        }
        if !self.in_window() {
            return;
        }
        let streams = self.node(self.host).kids.len();
        let children = self.machines(self.host).subtree.children().count();
        let connections = streams + self.stats.host_in_flight;
        self.stats.host_children_max = self.stats.host_children_max.max(children);
        self.stats.host_streams_max = self.stats.host_streams_max.max(streams);
        self.stats.host_connections.push(connections as f64);
        self.stats.host_connections_max = self.stats.host_connections_max.max(connections);
        if (self.now - self.window.0) % (10 * SEC) < SEC {
            // Depth by walking down from the host along the streams that feed.
            let mut stack = vec![(self.host, 0u16)];
            while let Some((id, depth)) = stack.pop() {
                let node = &self.nodes[id as usize];
                if node.kind == Kind::Listener && node.left_at.is_none() {
                    self.stats.depth.push(f64::from(depth));
                }
                for &kid in &node.kids {
                    if self.node(kid).up == Some(id) && self.node(kid).hears {
                        stack.push((kid, depth + 1));
                    }
                }
            }
        }
    }

    fn finish(&mut self) {
        let present = self.present.clone();
        for id in present {
            if let Some(since) = self.node(id).silent_since {
                let gap = self.clip(since, self.now);
                self.node_mut(id).gap += gap;
            }
            self.end_link(id);
        }
        for i in 0..self.relays.len() {
            self.end_link(self.relays[i]);
        }
    }

    fn summary(&self) -> Summary {
        let (ws, we) = self.window;
        let secs = (we - ws) as f64 / SEC as f64;
        let mut delivery = Vec::new();
        let mut heard_total = 0f64;
        let mut exposed_total = 0f64;
        let mut gap_total = 0f64;
        let mut received = Vec::new();
        let mut sent = Vec::new();
        let mut by_kind_in = [0u64; KINDS.len()];
        let mut by_kind_out = [0u64; KINDS.len()];
        let mut present_total = 0f64;
        let mut all_in = 0u64;
        let mut all_out = 0u64;
        let mut keepalive = 0f64;
        let mut listeners_at_end = 0;
        let mut hearing_at_end = 0;
        for node in &self.nodes {
            if node.kind != Kind::Listener {
                continue;
            }
            let left = node.left_at.unwrap_or(we).min(we);
            if node.left_at.is_none() && node.alive {
                listeners_at_end += 1;
                hearing_at_end += usize::from(node.hears);
            }
            let present = left.saturating_sub(node.joined_at.max(ws));
            if present > 0 {
                let inn: u64 = node.bytes_in.iter().sum();
                let out: u64 = node.bytes_out.iter().sum();
                present_total += present as f64;
                all_in += inn;
                all_out += out;
                for k in 0..KINDS.len() {
                    by_kind_in[k] += node.bytes_in[k];
                    by_kind_out[k] += node.bytes_out[k];
                }
                keepalive += node.keepalive_in as f64;
                if present >= 60 * SEC {
                    let secs = present as f64 / SEC as f64;
                    received.push(inn as f64 / secs);
                    sent.push(out as f64 / secs);
                }
            }
            if let Some(first) = node.first_audio {
                let exposed = left.saturating_sub(first.max(ws));
                if exposed > 0 {
                    let gap = node.gap.min(exposed);
                    heard_total += (exposed - gap) as f64;
                    exposed_total += exposed as f64;
                    gap_total += gap as f64;
                    if exposed >= 60 * SEC {
                        delivery.push(1.0 - gap as f64 / exposed as f64);
                    }
                }
            }
        }
        delivery.sort_by(f64::total_cmp);
        let rate = |mut v: Vec<f64>, total: u64| {
            v.sort_by(f64::total_cmp);
            Rate {
                mean: total as f64 / (present_total / SEC as f64).max(1e-9),
                p99: v
                    .get(((v.len().max(1) - 1) as f64 * 0.99) as usize)
                    .copied()
                    .unwrap_or(0.0),
                max: v.last().copied().unwrap_or(0.0),
            }
        };
        let per_sec = |bytes: u64| bytes as f64 / (present_total / SEC as f64).max(1e-9);
        let host = self.node(self.host);
        let host_in: u64 = host.bytes_in.iter().sum();
        let host_out: u64 = host.bytes_out.iter().sum();
        let requests = (self.stats.host_joins + self.stats.host_attaches).max(1);
        let keepalive_per_sec = keepalive / present_total.max(1e-9) * SEC as f64 / KEEPALIVE as f64;
        let mut refused: Vec<_> = self.stats.refused.iter().map(|(k, v)| (*k, *v)).collect();
        refused.sort_by_key(|&(_, n)| std::cmp::Reverse(n));
        let mut nothing: Vec<_> = self.stats.nothing.iter().map(|(k, v)| (*k, *v)).collect();
        nothing.sort_by_key(|&(_, n)| std::cmp::Reverse(n));
        let listener_minutes = exposed_total / (60.0 * SEC as f64);
        Summary {
            label: self.cfg.label.clone(),
            listeners: self.cfg.listeners,
            fanout: self.cfg.fanout,
            relays: self.cfg.relays,
            entry: Some(self.cfg.entry),
            orphan_rule: Some(self.cfg.orphan_rule),
            report_soonest: self.cfg.report_soonest,
            measured_secs: secs,
            events: self.stats.events,
            present_at_end: listeners_at_end,
            hearing_at_end,
            arrived: self.stats.arrived,
            departed: self.stats.departed,
            depth: Pct::of(self.stats.depth.clone()),
            delivery_mean: heard_total / exposed_total.max(1e-9),
            delivery_min: delivery.first().copied().unwrap_or(1.0),
            delivery_p01: delivery
                .get(((delivery.len().max(1) - 1) as f64 * 0.01) as usize)
                .copied()
                .unwrap_or(1.0),
            frames_lost_per_listener_min: gap_total / FRAME as f64 / listener_minutes.max(1e-9),
            received: rate(received, all_in),
            sent: rate(sent, all_out),
            received_by_kind: KINDS
                .iter()
                .zip(by_kind_in)
                .map(|(k, b)| (*k, per_sec(b)))
                .collect(),
            sent_by_kind: KINDS
                .iter()
                .zip(by_kind_out)
                .map(|(k, b)| (*k, per_sec(b)))
                .collect(),
            keepalive_payload: keepalive_per_sec * KEEPALIVE_PAYLOAD as f64,
            keepalive_wire: keepalive_per_sec * KEEPALIVE_WIRE as f64,
            host: HostLoad {
                joins_per_sec: self.stats.host_joins as f64 / secs,
                attaches_per_sec: self.stats.host_attaches as f64 / secs,
                nothing_share: self.stats.host_nothing as f64 / requests as f64,
                children_max: self.stats.host_children_max,
                streams_max: self.stats.host_streams_max,
                connections_mean: self.stats.host_connections.iter().sum::<f64>()
                    / self.stats.host_connections.len().max(1) as f64,
                connections_max: self.stats.host_connections_max,
                in_flight_max: self.stats.host_in_flight_max,
                views_per_sec: self.stats.views as f64 / secs,
                view_bytes: self.stats.view_bytes as f64 / self.stats.views.max(1) as f64,
                bytes_in_per_sec: host_in as f64 / secs,
                bytes_out_per_sec: host_out as f64 / secs,
                tickets_signed: self.stats.host_tickets,
            },
            join: Pct::of(self.stats.join.clone()),
            join_fill: Pct::of(self.stats.join_fill.clone()),
            joins_without_audio: self
                .nodes
                .iter()
                .filter(|n| {
                    n.kind == Kind::Listener
                        && n.first_audio.is_none()
                        && n.left_at.unwrap_or(we).saturating_sub(n.joined_at) >= 5 * SEC
                })
                .count() as u64,
            repair_crash: Pct::of(self.stats.repair[0].clone()),
            repair_graceful: Pct::of(self.stats.repair[1].clone()),
            gap_crash: Pct::of(self.stats.gap[0].clone()),
            gap_graceful: Pct::of(self.stats.gap[1].clone()),
            asks_per_repair: self.stats.repair_asks as f64 / self.stats.repairs.max(1) as f64,
            repairs_reaching_entry: self.stats.repairs_reaching_entry as f64
                / self.stats.repairs.max(1) as f64,
            placements: self.stats.placements,
            refused,
            nothing,
            loops_refused: self.stats.loops_refused,
            loops_formed: self.stats.loops_formed,
            asks_to_lost_parent: self.stats.asks_to_lost_parent,
            opens_to_gone: self.stats.opens_to_gone,
            retries: self.stats.retries,
            max_ticket_links: self.stats.max_ticket_links,
            tickets_verified: self.stats.tickets_verified,
            views_signed: self.stats.views_signed,
        }
    }
}

/// The room's stage for the views: the host and two speakers.
fn stage(host: PeerKey) -> RoomState {
    let view = AudienceView {
        room: ROOM,
        seq: 0,
        at: WALL_START,
        stage: [
            ("host", RoomRole::Host),
            ("speaker one", RoomRole::Speaker),
            ("speaker two", RoomRole::Speaker),
        ]
        .iter()
        .enumerate()
        .map(|(i, (name, role))| StageMember {
            key: if i == 0 { host } else { PeerKey([i as u8; 32]) },
            name: (*name).to_owned(),
            role: *role,
            muted: false,
        })
        .collect(),
        hands: Vec::new(),
        hands_total: 0,
        listeners: 0,
        reactions: Vec::new(),
        recording: false,
        ended: false,
        banned: Vec::new(),
        revoked: Vec::new(),
        signature: Sig([0; 64]),
    };
    RoomState::of_audience_view(host, &view, None)
}

/// The size of a join request: a signed `Join` envelope with a listener capability.
fn join_request_len(host: &SigningKey) -> u64 {
    let capability = Capability::issue(
        host,
        ROOM,
        Grant {
            audience: Audience::Bearer,
            role: Role::Listener,
            not_before: WALL_START,
            expires_at: WALL_START.plus_millis(24 * 3_600_000),
            depth: 0,
        },
        [7; 8],
    )
    .expect("a listener capability");
    let listener = SigningKey::from_bytes(&[9; 32]);
    let envelope = Envelope::sign(
        &listener,
        ROOM,
        1,
        WALL_START,
        Authority::Capability(capability),
        ControlBody::Join {
            name: "listener-12345".into(),
        },
    )
    .expect("a join envelope");
    let request = RoomRequest::Join {
        envelope: ByteBuf::from(envelope.encode()),
    };
    request.encode().len() as u64 + RPC_OVERHEAD
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let pct = |p: &Pct| format!("{:.0} / {:.0} / {:.0} (n {})", p.p50, p.p95, p.p99, p.n);
        writeln!(
            f,
            "## {}: {} listeners, fan-out {}, {} relays, entry {:?}, orphans {:?}, reports {}, {:.0} s measured",
            self.label,
            self.listeners,
            self.fanout,
            self.relays,
            self.entry.unwrap_or(Entry::Host),
            self.orphan_rule.unwrap_or(OrphanRule::LostLately),
            self.report_soonest.map_or_else(
                || "every 2 s".to_owned(),
                |soonest| format!("every 2 s or {} ms after a change", soonest.as_millis())
            ),
            self.measured_secs,
        )?;
        writeln!(f, "| measure | value |")?;
        writeln!(f, "|---|---|")?;
        writeln!(
            f,
            "| listeners at end (hearing) / arrived / departed | {} ({}) / {} / {} |",
            self.present_at_end, self.hearing_at_end, self.arrived, self.departed
        )?;
        writeln!(
            f,
            "| depth p50 / p95 / p99 / max | {:.0} / {:.0} / {:.0} / {:.0} |",
            self.depth.p50, self.depth.p95, self.depth.p99, self.depth.max
        )?;
        writeln!(
            f,
            "| delivery mean / min (≥ 1 min) / p01 | {:.4} % / {:.3} % / {:.3} % |",
            self.delivery_mean * 100.0,
            self.delivery_min * 100.0,
            self.delivery_p01 * 100.0
        )?;
        writeln!(
            f,
            "| frames lost per listener-minute | {:.2} |",
            self.frames_lost_per_listener_min
        )?;
        writeln!(
            f,
            "| control B/s per listener received: mean / p99 / max | {:.0} / {:.0} / {:.0} |",
            self.received.mean, self.received.p99, self.received.max
        )?;
        writeln!(
            f,
            "| control B/s per listener sent: mean / p99 / max | {:.0} / {:.0} / {:.0} |",
            self.sent.mean, self.sent.p99, self.sent.max
        )?;
        let kinds = |v: &[(&str, f64)]| {
            v.iter()
                .filter(|(_, b)| *b >= 0.05)
                .map(|(k, b)| format!("{k} {b:.1}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        writeln!(
            f,
            "| received by kind (B/s) | {} |",
            kinds(&self.received_by_kind)
        )?;
        writeln!(f, "| sent by kind (B/s) | {} |", kinds(&self.sent_by_kind))?;
        writeln!(
            f,
            "| keep-alives received (idle room), B/s: payload / on the wire | {:.0} / {:.0} |",
            self.keepalive_payload, self.keepalive_wire
        )?;
        let h = &self.host;
        writeln!(
            f,
            "| host requests/s: joins / attaches (answered \"no place\") | {:.2} / {:.2} ({:.1} %) |",
            h.joins_per_sec,
            h.attaches_per_sec,
            h.nothing_share * 100.0
        )?;
        writeln!(
            f,
            "| host connections: mean / max (children max, streams max, requests in flight max) | {:.1} / {} ({}, {}, {}) |",
            h.connections_mean, h.connections_max, h.children_max, h.streams_max, h.in_flight_max
        )?;
        writeln!(
            f,
            "| host views/s (bytes each) | {:.2} ({:.0}) |",
            h.views_per_sec, h.view_bytes
        )?;
        writeln!(
            f,
            "| host bytes/s in / out (control) | {:.0} / {:.0} |",
            h.bytes_in_per_sec, h.bytes_out_per_sec
        )?;
        writeln!(
            f,
            "| join latency ms p50 / p95 / p99 (window) | {} |",
            pct(&self.join)
        )?;
        writeln!(
            f,
            "| join latency ms p50 / p95 / p99 (fill) | {} |",
            pct(&self.join_fill)
        )?;
        writeln!(
            f,
            "| listeners present ≥ 5 s that never heard | {} |",
            self.joins_without_audio
        )?;
        writeln!(
            f,
            "| repair ms p50 / p95 / p99: crash | {} |",
            pct(&self.repair_crash)
        )?;
        writeln!(
            f,
            "| repair ms p50 / p95 / p99: graceful | {} |",
            pct(&self.repair_graceful)
        )?;
        writeln!(
            f,
            "| audible gap ms p50 / p95 / p99: crash | {} |",
            pct(&self.gap_crash)
        )?;
        writeln!(
            f,
            "| audible gap ms p50 / p95 / p99: graceful | {} |",
            pct(&self.gap_graceful)
        )?;
        writeln!(
            f,
            "| asks per repair / repairs reaching an entry point | {:.2} / {:.1} % |",
            self.asks_per_repair,
            self.repairs_reaching_entry * 100.0
        )?;
        let p = &self.placements;
        let share = |a: u64, b: u64| a as f64 * 100.0 / b.max(1) as f64;
        writeln!(
            f,
            "| joins placed by the host | {:.1} % of {} |",
            share(p.joins_by_host, p.joins),
            p.joins
        )?;
        writeln!(
            f,
            "| attaches placed by host / entry relay / lost-lately node / vouched node | {:.1} / {:.1} / {:.1} / {:.1} % of {} |",
            share(p.attaches_by_host, p.attaches),
            share(p.attaches_by_entry_relay, p.attaches),
            share(p.attaches_lost_lately, p.attaches),
            share(p.attaches_vouched, p.attaches),
            p.attaches
        )?;
        let list = |v: &[(&str, u64)]| {
            v.iter()
                .map(|(k, n)| format!("{k} {n}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        writeln!(
            f,
            "| streams refused (whole run) | {} |",
            list(&self.refused)
        )?;
        writeln!(
            f,
            "| asks answered no place (whole run) | {} |",
            list(&self.nothing)
        )?;
        writeln!(
            f,
            "| loops refused / formed | {} / {} |",
            self.loops_refused, self.loops_formed
        )?;
        writeln!(
            f,
            "| asks to the parent just lost / opens to a gone parent / waits for a place | {} / {} / {} |",
            self.asks_to_lost_parent, self.opens_to_gone, self.retries
        )?;
        writeln!(
            f,
            "| longest ticket / tickets verified / host tickets signed / views signed | {} links / {} / {} / {} |",
            self.max_ticket_links, self.tickets_verified, h.tickets_signed, self.views_signed
        )?;
        write!(f, "| events | {} |", self.events)
    }
}

/// What in a report matters to places above: the size and the free places.
fn summarise(report: &Report) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    report.subtree.hash(&mut hasher);
    for slot in &report.free {
        (slot.key, slot.below, slot.free).hash(&mut hasher);
    }
    hasher.finish()
}
