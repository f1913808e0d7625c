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
    /// The room: fan-out 8, host capacity 8, churn 10 %/min (half crashes), 1 % loss,
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
    /// The community relays the host lists in its views, with their capacity: every node's
    /// subtree believes their reports up to it (the view reaches every node in seconds; relays
    /// join before the room fills, so every node is given the list as it is made).
    carriers: Vec<(PeerKey, u16)>,
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

mod churn;
mod net;
mod placement;
mod report;
mod ticks;

pub use report::*;
use ticks::{join_request_len, stage, summarise};
