//! The running node: one event loop task owns the `Swarm`; [`Node`] is the cheap, cloneable handle
//! that sends it commands (each with a oneshot reply) and subscribes to its events.
//!
//! Handlers are plain functions with no `.await`: a slow subscriber or a slow peer never stalls
//! the loop. Multi-step operations (joining a room: dial, handshake, snapshot) keep their reply
//! channel in a pending map until the swarm event that completes them arrives.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use earshot_protocol::capability::{NoRevocations, Presenter, VerifyContext};
use earshot_protocol::envelope::{Authority, Envelope};
use earshot_protocol::snapshot::{
    ANNOUNCE_INTERVAL_MS, ANNOUNCEMENT_TTL_MS, Announcement, PeerHint, RoomRequest, RoomResponse,
    RoomSnapshot,
};
use earshot_protocol::state::{Rejected, RoomChange, RoomState};
use earshot_protocol::{
    Audience, CapabilityError, ControlBody, Grant, InviteLink, PeerKey, Role, RoomDescriptor,
    RoomId, Timestamp, Verified, Visibility,
};
use futures::StreamExt;
use libp2p::gossipsub::{self, IdentTopic, MessageAcceptance, TopicHash};
use libp2p::request_response::{self, OutboundRequestId, ResponseChannel};
use libp2p::swarm::SwarmEvent;
use libp2p::{Multiaddr, PeerId, Swarm, identify};
use sha2::{Digest, Sha256};
use tokio::sync::{broadcast, mpsc, oneshot};
use tracing::{Instrument, debug, info, info_span, warn};

use crate::clock;
use crate::identity::Identity;
use crate::net::{self, Behaviour, BehaviourEvent, NetConfig, NetError};
use crate::reach::{Reach, ReachMode, Reachability};
use crate::rooms::{ActError, Joined, PUBLISH_RETRY_FOR};

/// Commands waiting for the event loop. Small: callers are people and tests, not hot paths.
const COMMAND_CAP: usize = 64;
/// Events buffered per subscriber; a subscriber that falls further behind skips events
/// (`broadcast` lag) rather than slowing the loop.
const EVENT_CAP: usize = 1024;
/// How often timers (heartbeats, timeouts, retries, announcements) are checked.
const TICK: Duration = Duration::from_millis(100);
/// Most gossip messages buffered for a room whose snapshot has not arrived yet.
const MAX_EARLY_MESSAGES: usize = 512;

/// What one child costs in upload: a 32 kbit/s Opus stream with framing and transport overhead.
pub const KBPS_PER_CHILD: u32 = 40;
/// Children a node feeds by default: 4 streams of ~40 kbit/s, within a modest home uplink.
pub const DEFAULT_MAX_CHILDREN: u16 = 4;

/// How many children an upload budget of `kbps` can feed (at least one: every listener helps).
pub fn children_for_upload(kbps: u32) -> u16 {
    u16::try_from(kbps / KBPS_PER_CHILD)
        .unwrap_or(u16::MAX)
        .max(1)
}

/// What the node is asked to do.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// Addresses to listen on (`/ip4/127.0.0.1/udp/0/quic-v1` in tests).
    pub listen: Vec<Multiaddr>,
    /// Addresses to dial at start (bootstrap peers, relays).
    pub bootstrap: Vec<Multiaddr>,
    pub net: NetConfig,
    /// How many children this node feeds in a room's relay tree (its upload budget in streams).
    pub max_children: u16,
    /// Community relays to reserve a slot on when this node is not reachable (addresses ending
    /// in `/p2p/RELAY`): from the configuration and `--bootstrap`. Invite links add theirs.
    pub relays: Vec<Multiaddr>,
    /// Whether to ask AutoNAT, or take this node as reachable or not.
    pub reachability: ReachMode,
}

/// Something that happened, for user interfaces and tests.
#[derive(Debug, Clone, PartialEq)]
pub enum NodeEvent {
    /// The node listens on a new address.
    Listening { addr: Multiaddr },
    /// A room this node is in changed.
    Room { room: RoomId, change: RoomChange },
    /// A control message from the network was refused (and its sender penalised).
    Rejected {
        room: Option<RoomId>,
        from: PeerId,
        reason: String,
    },
    /// This node is no longer in the room (it ended, or this node was removed or left).
    RoomClosed { room: RoomId, reason: CloseReason },
    /// A public room was announced on the lobby (or re-announced).
    Announced { room: RoomId },
    /// A host asks this node (a community relay) to carry its room: join with `link`.
    HelpRequested { from: PeerId, link: Box<InviteLink> },
    /// AutoNAT's verdict (or the configured one) on whether peers can dial this node. A
    /// private node reserves slots on relays; its relayed addresses arrive as `Listening`.
    Reachability { status: Reachability },
    /// A relayed connection to `peer` was upgraded to a direct one (DCUtR hole punching).
    DirectConnection { peer: PeerId },
}

/// Why this node left a room.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    Left,
    Ended,
    Removed,
}

/// A room as this node sees it.
#[derive(Debug, Clone)]
pub struct RoomView {
    pub descriptor: RoomDescriptor,
    pub state: RoomState,
}

/// Why joining failed.
#[derive(Debug, thiserror::Error)]
pub enum JoinError {
    #[error("invalid invite: {0}")]
    Invite(#[from] CapabilityError),
    #[error("the host refused: {reason}")]
    Refused { reason: String },
    #[error("the host is unreachable at the link's addresses")]
    Unreachable,
    #[error("the host did not answer: {0}")]
    NoAnswer(String),
    #[error("the host sent an invalid answer: {0}")]
    BadAnswer(String),
    #[error("already in room {0}")]
    AlreadyJoined(RoomId),
    #[error(transparent)]
    Act(#[from] ActError),
}

/// Where to get a room's audio from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TreeParent {
    pub peer: PeerId,
    pub addrs: Vec<Multiaddr>,
    /// Hops from the host (1: the host feeds you).
    pub depth: u16,
}

/// Why the host did not place this node in the relay tree.
#[derive(Debug, thiserror::Error)]
pub enum AttachError {
    #[error("not in room {0}")]
    NotInRoom(RoomId),
    #[error("the relay tree is full for now")]
    Waiting,
    #[error("the host refused: {0}")]
    Refused(String),
    #[error("the host did not answer: {0}")]
    NoAnswer(String),
}

/// Who may receive and send audio in a room, kept in step with the room's state for the audio
/// plane (which runs outside the event loop).
#[derive(Debug, Default, Clone)]
struct RoomAccess {
    present: HashSet<PeerId>,
    /// On stage and not muted.
    speakers: HashSet<PeerId>,
}

type AccessMap = std::sync::Arc<std::sync::Mutex<HashMap<RoomId, RoomAccess>>>;

/// Why hosting failed.
#[derive(Debug, thiserror::Error)]
pub enum HostError {
    #[error("this node is not the host of room {0}")]
    NotHost(RoomId),
    #[error("already in room {0}")]
    AlreadyJoined(RoomId),
    #[error("could not subscribe to the room's topic: {0}")]
    Subscribe(String),
    #[error(transparent)]
    Act(#[from] ActError),
}

/// Why the node could not start.
#[derive(Debug, thiserror::Error)]
pub enum SpawnError {
    #[error(transparent)]
    Net(#[from] NetError),
    #[error("cannot listen on {addr}: {reason}")]
    Listen { addr: Multiaddr, reason: String },
}

/// The event loop has stopped (the node shut down).
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("the node has shut down")]
pub struct NodeGone;

enum Command {
    ListenAddrs {
        reply: oneshot::Sender<Vec<Multiaddr>>,
    },
    Host {
        descriptor: RoomDescriptor,
        name: String,
        reply: oneshot::Sender<Result<(), HostError>>,
    },
    Join {
        link: InviteLink,
        name: String,
        reply: oneshot::Sender<Result<RoomView, JoinError>>,
    },
    Act {
        room: RoomId,
        body: ControlBody,
        reply: oneshot::Sender<Result<Vec<RoomChange>, ActError>>,
    },
    View {
        room: RoomId,
        reply: oneshot::Sender<Option<RoomView>>,
    },
    Leave {
        room: RoomId,
        reply: oneshot::Sender<()>,
    },
    Lobby {
        reply: oneshot::Sender<Vec<Verified<Announcement>>>,
    },
    QueryLobby {
        peer: PeerId,
        addrs: Vec<Multiaddr>,
        reply: oneshot::Sender<Result<Vec<Verified<Announcement>>, JoinError>>,
    },
    Tree {
        room: RoomId,
        reply: oneshot::Sender<Option<Vec<earshot_protocol::tree::Placement>>>,
    },
    AskHelp {
        relay: PeerId,
        addrs: Vec<Multiaddr>,
        link: String,
        reply: oneshot::Sender<Result<(), String>>,
    },
    Attach {
        room: RoomId,
        lost: Option<PeerId>,
        reply: oneshot::Sender<Result<TreeParent, AttachError>>,
    },
    Dial {
        peer: PeerId,
        addrs: Vec<Multiaddr>,
        reply: oneshot::Sender<Result<(), String>>,
    },
    PublishRaw {
        room: RoomId,
        bytes: Vec<u8>,
        reply: oneshot::Sender<()>,
    },
    Shutdown {
        reply: oneshot::Sender<()>,
    },
}

/// The handle to a running node. Cheap to clone.
#[derive(Clone)]
pub struct Node {
    commands: mpsc::Sender<Command>,
    /// Opens and accepts audio streams without going through the event loop.
    audio: libp2p_stream::Control,
    access: AccessMap,
    events: broadcast::Sender<NodeEvent>,
    peer_id: PeerId,
    key: PeerKey,
}

impl std::fmt::Debug for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Command::ListenAddrs { .. } => "ListenAddrs",
            Command::Host { .. } => "Host",
            Command::Join { .. } => "Join",
            Command::Act { .. } => "Act",
            Command::View { .. } => "View",
            Command::Leave { .. } => "Leave",
            Command::Lobby { .. } => "Lobby",
            Command::QueryLobby { .. } => "QueryLobby",
            Command::PublishRaw { .. } => "PublishRaw",
            Command::Dial { .. } => "Dial",
            Command::Attach { .. } => "Attach",
            Command::AskHelp { .. } => "AskHelp",
            Command::Tree { .. } => "Tree",
            Command::Shutdown { .. } => "Shutdown",
        })
    }
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Node({})", self.peer_id)
    }
}

impl Node {
    /// Starts a node for `identity` on the current tokio runtime. Returns once it listens.
    pub async fn spawn(identity: Identity, config: NodeConfig) -> Result<Node, SpawnError> {
        let mut swarm = net::build_swarm(&identity, &config.net)?;
        let mut listening = Vec::new();
        for addr in &config.listen {
            match swarm.listen_on(addr.clone()) {
                Ok(id) => listening.push((id, addr.clone())),
                Err(err) => {
                    return Err(SpawnError::Listen {
                        addr: addr.clone(),
                        reason: err.to_string(),
                    });
                }
            }
        }
        let lobby = IdentTopic::new(earshot_protocol::topic::LOBBY);
        if let Err(err) = swarm.behaviour_mut().gossipsub.subscribe(&lobby) {
            warn!(%err, "could not subscribe to the lobby");
        }
        for addr in &config.bootstrap {
            if let Err(err) = swarm.dial(addr.clone()) {
                warn!(%addr, %err, "could not dial bootstrap address");
            }
        }
        let audio = swarm.behaviour().stream.new_control();
        let access = AccessMap::default();
        let (commands, command_rx) = mpsc::channel(COMMAND_CAP);
        let (events, _) = broadcast::channel(EVENT_CAP);
        let peer_id = identity.peer_id();
        let key = identity.key();
        let mut event_loop = EventLoop {
            swarm,
            commands: command_rx,
            events: events.clone(),
            identity,
            rooms: HashMap::new(),
            topics: HashMap::new(),
            early: HashMap::new(),
            pending_joins: HashMap::new(),
            pending_welcomes: Vec::new(),
            pending_lobby: HashMap::new(),
            lobby: HashMap::new(),
            lobby_topic: lobby,
            peer_addrs: HashMap::new(),
            rtts: HashMap::new(),
            metrics: config.net.metrics.clone(),
            connected: HashSet::new(),
            max_children: config.max_children,
            access: access.clone(),
            pending_dials: HashMap::new(),
            pending_attach: HashMap::new(),
            pending_help: HashMap::new(),
            help_rooms: config.net.help_rooms,
            children_budget: config.net.children_budget,
            promised: HashMap::new(),
            seq_base: clock::now().as_millis().saturating_mul(1000),
            reach: Reach::new(config.reachability),
            reach_listeners: HashMap::new(),
            dialled: HashMap::new(),
            relayed_connections: HashMap::new(),
            retire_relayed: Vec::new(),
        };
        for addr in &config.listen {
            // Told to listen through a relay: that relay holds a slot already.
            if let Some(relay) = crate::reach::relays_in(std::slice::from_ref(addr)).first() {
                event_loop.reach.listening_via(relay, Instant::now());
            }
        }
        for relay in &config.relays {
            let actions = event_loop.reach.configured(relay, Instant::now());
            event_loop.apply_reach(actions);
        }
        // Wait for every listener to come up (a relayed one once the relay granted a slot), so
        // callers can hand out addresses at once; one that fails or never comes up is an error
        // naming it.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        let addr_of = |id: &libp2p::core::transport::ListenerId| {
            listening
                .iter()
                .find(|(listener, _)| listener == id)
                .map(|(_, addr)| addr.clone())
        };
        let mut pending: Vec<_> = listening.iter().map(|(id, _)| *id).collect();
        while !pending.is_empty() {
            match tokio::time::timeout_at(deadline, event_loop.swarm.select_next_some()).await {
                Ok(event) => {
                    if let SwarmEvent::NewListenAddr { listener_id, .. } = &event {
                        pending.retain(|id| id != listener_id);
                    }
                    if let SwarmEvent::ListenerError {
                        listener_id, error, ..
                    }
                    | SwarmEvent::ListenerClosed {
                        listener_id,
                        reason: Err(error),
                        ..
                    } = &event
                        && let Some(addr) = addr_of(listener_id)
                    {
                        return Err(SpawnError::Listen {
                            addr,
                            reason: error.to_string(),
                        });
                    }
                    event_loop.on_swarm_event(event);
                }
                Err(_) => {
                    let addr = pending.first().and_then(addr_of);
                    return Err(SpawnError::Listen {
                        addr: addr.unwrap_or_else(Multiaddr::empty),
                        reason: "it did not come up within 5 s (for a relayed address: the relay \
                                 granted no slot)"
                            .into(),
                    });
                }
            }
        }
        let span = info_span!("node", peer = %short(&peer_id));
        tokio::spawn(event_loop.run().instrument(span));
        Ok(Node {
            commands,
            audio,
            access,
            events,
            peer_id,
            key,
        })
    }

    pub fn peer_id(&self) -> PeerId {
        self.peer_id
    }

    pub fn key(&self) -> PeerKey {
        self.key
    }

    /// Who may open which audio streams, by the rooms' current state: present members listen,
    /// members on stage and not muted speak. For [`crate::relay::AudioRelay::start`].
    pub fn audio_admission(&self) -> crate::relay::Admission {
        let access = self.access.clone();
        std::sync::Arc::new(move |room, peer, kind| {
            let access = access
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            access.get(&room).is_some_and(|room| match kind {
                crate::relay::StreamKind::Listen => room.present.contains(&peer),
                crate::relay::StreamKind::Speak => room.speakers.contains(&peer),
            })
        })
    }

    /// The handle for audio streams (see [`crate::relay::AudioRelay`]).
    pub fn audio_control(&self) -> libp2p_stream::Control {
        self.audio.clone()
    }

    /// The relay tree of a room this node hosts: (member, parent, depth), depth-first from the
    /// host; `None` if this node does not host the room.
    pub async fn tree(
        &self,
        room: RoomId,
    ) -> Result<Option<Vec<earshot_protocol::tree::Placement>>, NodeGone> {
        self.call(|reply| Command::Tree { room, reply }).await
    }

    /// Asks the host of `room` where in the relay tree to get its audio; `lost` is the parent
    /// this node just lost, if any.
    pub async fn attach(
        &self,
        room: RoomId,
        lost: Option<PeerId>,
    ) -> Result<TreeParent, AttachError> {
        self.call(|reply| Command::Attach { room, lost, reply })
            .await
            .map_err(|_| AttachError::NoAnswer("the node shut down".into()))?
    }

    /// Asks the community relay `relay` to carry a room's audio, joining with `link` (an invite
    /// bound to the relay's key). Returns once the relay agreed (it then joins on its own), or
    /// with its reason.
    pub async fn ask_help(
        &self,
        relay: PeerId,
        addrs: Vec<Multiaddr>,
        link: &InviteLink,
    ) -> Result<(), String> {
        let link = link.encode();
        self.call(|reply| Command::AskHelp {
            relay,
            addrs,
            link,
            reply,
        })
        .await
        .map_err(|err| err.to_string())?
    }

    /// Connects to `peer` at `addrs` (for example a parent in the relay tree); returns once
    /// connected, or with the reason it could not connect.
    pub async fn dial(&self, peer: PeerId, addrs: Vec<Multiaddr>) -> Result<(), String> {
        self.call(|reply| Command::Dial { peer, addrs, reply })
            .await
            .map_err(|err| err.to_string())?
    }

    /// Events from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<NodeEvent> {
        self.events.subscribe()
    }

    async fn call<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<T>) -> Command,
    ) -> Result<T, NodeGone> {
        let (reply, rx) = oneshot::channel();
        self.commands
            .send(make(reply))
            .await
            .map_err(|_| NodeGone)?;
        rx.await.map_err(|_| NodeGone)
    }

    /// The addresses the node listens on.
    pub async fn listen_addrs(&self) -> Result<Vec<Multiaddr>, NodeGone> {
        self.call(|reply| Command::ListenAddrs { reply }).await
    }

    /// Opens a room this node hosts and joins it as the host.
    pub async fn host(&self, descriptor: RoomDescriptor, name: &str) -> Result<(), HostError> {
        let name = name.to_owned();
        self.call(|reply| Command::Host {
            descriptor,
            name,
            reply,
        })
        .await
        .map_err(|_| HostError::Act(ActError::Rejected(Rejected::RoomEnded)))?
    }

    /// Joins the room a link invites to: checks the link, reaches the host, is admitted, and
    /// follows the room from the host's snapshot on.
    pub async fn join(&self, link: InviteLink, name: &str) -> Result<RoomView, JoinError> {
        let name = name.to_owned();
        self.call(|reply| Command::Join { link, name, reply })
            .await
            .map_err(|_| JoinError::NoAnswer("the node shut down".into()))?
    }

    /// Says something to a room (raise a hand, promote someone, chat …).
    pub async fn act(&self, room: RoomId, body: ControlBody) -> Result<Vec<RoomChange>, ActError> {
        self.call(|reply| Command::Act { room, body, reply })
            .await
            .map_err(|_| ActError::NotInRoom(room))?
    }

    /// The room as this node sees it now.
    pub async fn view(&self, room: RoomId) -> Result<Option<RoomView>, NodeGone> {
        self.call(|reply| Command::View { room, reply }).await
    }

    /// Leaves a room (the room hears a `Leave`).
    pub async fn leave(&self, room: RoomId) -> Result<(), NodeGone> {
        self.call(|reply| Command::Leave { room, reply }).await
    }

    /// The public rooms this node has seen announced and that are still live.
    pub async fn lobby(&self) -> Result<Vec<Verified<Announcement>>, NodeGone> {
        self.call(|reply| Command::Lobby { reply }).await
    }

    /// Asks a peer (dialling `addrs` if needed) for the public rooms it knows of.
    pub async fn query_lobby(
        &self,
        peer: PeerId,
        addrs: Vec<Multiaddr>,
    ) -> Result<Vec<Verified<Announcement>>, JoinError> {
        self.call(|reply| Command::QueryLobby { peer, addrs, reply })
            .await
            .map_err(|_| JoinError::NoAnswer("the node shut down".into()))?
    }

    /// Publishes raw bytes on a room's topic, unchecked: what a modified client could send. For
    /// adversarial tests and debugging tools; honest code uses [`Node::act`].
    pub async fn publish_raw(&self, room: RoomId, bytes: Vec<u8>) -> Result<(), NodeGone> {
        self.call(|reply| Command::PublishRaw { room, bytes, reply })
            .await
    }

    /// Leaves every room and stops the event loop.
    pub async fn shutdown(&self) {
        let _ = self.call(|reply| Command::Shutdown { reply }).await;
    }
}

/// A joiner admitted but not yet welcomed: waiting for its topic subscription to arrive.
struct PendingWelcome {
    peer: PeerId,
    room: RoomId,
    channel: ResponseChannel<RoomResponse>,
    since: Instant,
}

/// How long a relayed connection stays open after a direct one to the same peer came up.
/// Long enough for a join handshake under way on the relayed connection to finish; short, so
/// that the room's audio usually starts on the direct one (moving it costs a stream restart).
const RETIRE_RELAYED_AFTER: Duration = Duration::from_secs(1);

/// How long a community relay keeps a room's share of its upload budget for a join that has
/// not completed.
const PROMISE_HELD_FOR: Duration = Duration::from_secs(30);

/// How long an admitted joiner's welcome waits for its subscription to arrive.
const WELCOME_WAIT: Duration = Duration::from_secs(2);

/// Where the answer to a lobby query goes.
type LobbyReply = oneshot::Sender<Result<Vec<Verified<Announcement>>, JoinError>>;

struct PendingJoin {
    link: InviteLink,
    name: String,
    reply: oneshot::Sender<Result<RoomView, JoinError>>,
    first_seq: u64,
}

struct EventLoop {
    swarm: Swarm<Behaviour>,
    commands: mpsc::Receiver<Command>,
    events: broadcast::Sender<NodeEvent>,
    identity: Identity,
    rooms: HashMap<RoomId, Joined>,
    topics: HashMap<TopicHash, RoomId>,
    /// Messages for rooms being joined, applied once the snapshot arrives.
    early: HashMap<RoomId, Vec<Verified<Envelope>>>,
    pending_joins: HashMap<OutboundRequestId, PendingJoin>,
    pending_welcomes: Vec<PendingWelcome>,
    pending_lobby: HashMap<OutboundRequestId, LobbyReply>,
    lobby: HashMap<RoomId, Verified<Announcement>>,
    lobby_topic: IdentTopic,
    /// Listen addresses peers told us about (identify), for peer hints in snapshots.
    peer_addrs: HashMap<PeerId, Vec<Multiaddr>>,
    /// The latest ping round-trip time to each connected peer (the host places members that are
    /// close to it higher in the relay tree: each hop's delay adds up below it).
    rtts: HashMap<PeerId, Duration>,
    /// Counts connections, peers, circuits and libp2p's own metrics (`NetConfig::metrics`).
    metrics: crate::metrics::NetMetrics,
    connected: HashSet<PeerId>,
    max_children: u16,
    access: AccessMap,
    pending_dials: HashMap<PeerId, Vec<oneshot::Sender<Result<(), String>>>>,
    pending_attach: HashMap<OutboundRequestId, oneshot::Sender<Result<TreeParent, AttachError>>>,
    pending_help: HashMap<OutboundRequestId, oneshot::Sender<Result<(), String>>>,
    help_rooms: usize,
    /// Children across all rooms (see [`NetConfig::children_budget`]), and the capacity
    /// offered in each room so far (with when it was set aside).
    children_budget: Option<usize>,
    promised: HashMap<RoomId, (u16, Instant)>,
    /// Sequence numbers start from the clock (µs) so they keep increasing across restarts.
    seq_base: u64,
    /// Reachability and the relays this node reserves on when it is private.
    reach: Reach,
    /// Listeners on relayed addresses asked for by `reach`, by relay.
    reach_listeners: HashMap<libp2p::core::transport::ListenerId, PeerId>,
    /// The direct address each connected peer was dialled at.
    dialled: HashMap<PeerId, Multiaddr>,
    /// Relayed connections open, by peer.
    relayed_connections: HashMap<PeerId, Vec<libp2p::swarm::ConnectionId>>,
    /// Peers with a new direct connection (DCUtR): their relayed connections close at the
    /// instant given, once what was under way on them (a join handshake) is done.
    retire_relayed: Vec<(PeerId, Instant)>,
}

impl EventLoop {
    async fn run(mut self) {
        info!("node running");
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                biased;
                command = self.commands.recv() => match command {
                    Some(Command::Shutdown { reply }) => {
                        self.leave_all();
                        let _ = reply.send(());
                        break;
                    }
                    Some(command) => self.on_command(command),
                    None => {
                        self.leave_all();
                        break;
                    }
                },
                event = self.swarm.select_next_some() => self.on_swarm_event(event),
                _ = tick.tick() => self.on_tick(),
            }
        }
        info!("node stopped");
    }

    fn emit(&self, event: NodeEvent) {
        // No subscribers is fine.
        let _ = self.events.send(event);
    }

    /// Reports a room's changes, and keeps the relay tree of a hosted room in step with who
    /// is there.
    fn emit_changes(&mut self, room: RoomId, changes: Vec<RoomChange>) {
        if let Some(tree) = self
            .rooms
            .get_mut(&room)
            .and_then(|joined| joined.tree.as_mut())
        {
            for change in &changes {
                if let RoomChange::MemberLeft { member, .. } | RoomChange::Removed { member, .. } =
                    change
                {
                    // Orphans re-attach when their stream ends; the planner has their new
                    // parent ready by then.
                    tree.handle(earshot_protocol::tree::TreeInput::Leave { peer: *member });
                }
            }
        }
        if !changes.is_empty() {
            self.refresh_access(room);
        }
        if let Some(joined) = self.rooms.get_mut(&room) {
            for change in &changes {
                if let RoomChange::ReplayAvailable {
                    manifest,
                    recorder,
                    title,
                    bytes,
                    addrs,
                    ..
                } = change
                {
                    joined.replays.retain(|replay| replay.manifest != *manifest);
                    joined
                        .replays
                        .push(earshot_protocol::snapshot::AnnouncedReplay {
                            manifest: *manifest,
                            recorder: *recorder,
                            title: title.clone(),
                            bytes: *bytes,
                            addrs: addrs.clone(),
                        });
                    let excess = joined
                        .replays
                        .len()
                        .saturating_sub(earshot_protocol::snapshot::MAX_ANNOUNCED_REPLAYS);
                    joined.replays.drain(..excess);
                }
            }
        }
        for change in changes {
            self.emit(NodeEvent::Room { room, change });
        }
    }

    /// Recomputes who may listen and speak in `room` from its state.
    fn refresh_access(&self, room: RoomId) {
        let mut access = self
            .access
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let Some(joined) = self.rooms.get(&room) else {
            access.remove(&room);
            return;
        };
        let mut entry = RoomAccess::default();
        for member in joined.state.present() {
            let Ok(peer) = member.key.to_peer_id() else {
                continue;
            };
            entry.present.insert(peer);
            if member.role().on_stage() && !member.muted.value {
                entry.speakers.insert(peer);
            }
        }
        access.insert(room, entry);
    }

    fn next_seq_base(&mut self) -> u64 {
        // Each room gets its own range; a node never sends 2^32 messages to one room.
        self.seq_base += 1 << 32;
        self.seq_base
    }

    fn on_command(&mut self, command: Command) {
        match command {
            Command::ListenAddrs { reply } => {
                let _ = reply.send(self.swarm.listeners().cloned().collect());
            }
            Command::Host {
                descriptor,
                name,
                reply,
            } => {
                let _ = reply.send(self.host(descriptor, name));
            }
            Command::Join { link, name, reply } => self.join(link, name, reply),
            Command::Act { room, body, reply } => {
                let result = self.act(room, body);
                let _ = reply.send(result);
            }
            Command::View { room, reply } => {
                let _ = reply.send(self.rooms.get(&room).map(|joined| RoomView {
                    descriptor: joined.descriptor.clone(),
                    state: joined.state.clone(),
                }));
            }
            Command::Leave { room, reply } => {
                self.leave(room, CloseReason::Left);
                let _ = reply.send(());
            }
            Command::Lobby { reply } => {
                let now = clock::now();
                self.lobby.retain(|_, a| a.expires_at > now);
                let _ = reply.send(self.lobby.values().cloned().collect());
            }
            Command::QueryLobby { peer, addrs, reply } => {
                let id = self
                    .swarm
                    .behaviour_mut()
                    .rooms
                    .send_request_with_addresses(&peer, RoomRequest::Lobby, addrs);
                self.pending_lobby.insert(id, reply);
            }
            Command::Tree { room, reply } => {
                let layout = self
                    .rooms
                    .get(&room)
                    .and_then(|joined| joined.tree.as_ref())
                    .map(|tree| tree.layout());
                let _ = reply.send(layout);
            }
            Command::Attach { room, lost, reply } => {
                let Some(joined) = self.rooms.get(&room) else {
                    let _ = reply.send(Err(AttachError::NotInRoom(room)));
                    return;
                };
                let Ok(host) = joined.descriptor.host.to_peer_id() else {
                    let _ = reply.send(Err(AttachError::NotInRoom(room)));
                    return;
                };
                let addrs = joined.descriptor.addrs();
                let capacity = self.capacity_in(room);
                let request = RoomRequest::Attach {
                    room,
                    capacity,
                    lost: lost.and_then(|peer| PeerKey::from_peer_id(&peer).ok()),
                };
                let id = self
                    .swarm
                    .behaviour_mut()
                    .rooms
                    .send_request_with_addresses(&host, request, addrs);
                self.pending_attach.insert(id, reply);
            }
            Command::AskHelp {
                relay,
                addrs,
                link,
                reply,
            } => {
                let id = self
                    .swarm
                    .behaviour_mut()
                    .rooms
                    .send_request_with_addresses(&relay, RoomRequest::Help { link }, addrs);
                self.pending_help.insert(id, reply);
            }
            Command::Dial { peer, addrs, reply } => {
                if self.connected.contains(&peer) {
                    let _ = reply.send(Ok(()));
                    return;
                }
                let opts = libp2p::swarm::dial_opts::DialOpts::peer_id(peer)
                    .addresses(addrs)
                    .build();
                match self.swarm.dial(opts) {
                    // Answered when the connection is up (or fails).
                    Ok(()) => self.pending_dials.entry(peer).or_default().push(reply),
                    Err(err) => {
                        let _ = reply.send(Err(err.to_string()));
                    }
                }
            }
            Command::PublishRaw { room, bytes, reply } => {
                if self.rooms.contains_key(&room) {
                    // Queued and retried like any message if no subscriber is known yet.
                    self.publish(room, bytes);
                } else {
                    let topic = IdentTopic::new(earshot_protocol::topic::room(&room));
                    if let Err(err) = self.swarm.behaviour_mut().gossipsub.publish(topic, bytes) {
                        warn!(%room, %err, "raw publish failed");
                    }
                }
                let _ = reply.send(());
            }
            Command::Shutdown { reply } => {
                // Handled in `run`; reached only if a caller races a shutdown.
                let _ = reply.send(());
            }
        }
    }

    fn subscribe(&mut self, topic: &IdentTopic) -> Result<(), String> {
        let gossipsub = &mut self.swarm.behaviour_mut().gossipsub;
        gossipsub.subscribe(topic).map_err(|err| err.to_string())?;
        let _ = gossipsub.set_topic_params(topic.clone(), net::room_topic_score());
        Ok(())
    }

    fn host(&mut self, descriptor: RoomDescriptor, name: String) -> Result<(), HostError> {
        let room = descriptor.id;
        if descriptor.host != self.identity.key() {
            return Err(HostError::NotHost(room));
        }
        if self.rooms.contains_key(&room) {
            return Err(HostError::AlreadyJoined(room));
        }
        let state = RoomState::new(room, descriptor.host)
            .with_member_recording(descriptor.recording.members_may_record);
        let first_seq = self.next_seq_base();
        let mut joined = Joined::new(descriptor, state, Authority::Host, name.clone(), first_seq);
        joined.tree = Some(earshot_protocol::tree::TreePlanner::new(
            self.identity.key(),
            self.max_children,
        ));
        self.subscribe(&joined.topic)
            .map_err(HostError::Subscribe)?;
        let (bytes, changes) = joined.act(
            self.identity.signing_key(),
            clock::now(),
            ControlBody::Join { name },
        )?;
        self.topics.insert(joined.topic.hash(), room);
        self.rooms.insert(room, joined);
        self.publish(room, bytes);
        self.emit_changes(room, changes);
        // A public room is on the lobby from the moment it opens.
        self.announce(room, Instant::now(), clock::now());
        info!(%room, "hosting room");
        Ok(())
    }

    fn join(
        &mut self,
        link: InviteLink,
        name: String,
        reply: oneshot::Sender<Result<RoomView, JoinError>>,
    ) {
        let cap = &link.capability;
        let room = cap.room;
        if self.rooms.contains_key(&room) {
            let _ = reply.send(Err(JoinError::AlreadyJoined(room)));
            return;
        }
        // A host reachable through a relay names it: this node may need it too.
        for relay in crate::reach::relays_in(&link.bootstrap) {
            let actions = self.reach.named(&relay, Instant::now());
            self.apply_reach(actions);
        }
        let now = clock::now();
        // Fail fast, offline, on anything the link itself shows.
        if let Err(err) = cap.verify(&VerifyContext {
            room,
            host: link.host,
            presenter: Presenter::Key(self.identity.key()),
            now,
            revoked: &NoRevocations,
        }) {
            let _ = reply.send(Err(err.into()));
            return;
        }
        let Ok(host) = link.host.to_peer_id() else {
            let _ = reply.send(Err(JoinError::Invite(CapabilityError::NotIssuedByHost {
                issuer: cap.root_issuer(),
                host: link.host,
            })));
            return;
        };
        // Follow the topic from now on so nothing said during the handshake is missed.
        let topic = IdentTopic::new(earshot_protocol::topic::room(&room));
        if let Err(err) = self.subscribe(&topic) {
            let _ = reply.send(Err(JoinError::NoAnswer(err)));
            return;
        }
        self.topics.insert(topic.hash(), room);
        self.early.insert(room, Vec::new());
        let first_seq = self.next_seq_base();
        let join = match Envelope::sign(
            self.identity.signing_key(),
            room,
            first_seq,
            now,
            Authority::Capability(cap.clone()),
            ControlBody::Join { name: name.clone() },
        ) {
            Ok(envelope) => envelope,
            Err(err) => {
                self.forget_topic(room);
                let _ = reply.send(Err(JoinError::Act(err.into())));
                return;
            }
        };
        let request = RoomRequest::Join {
            envelope: serde_bytes::ByteBuf::from(join.encode()),
        };
        let id = self
            .swarm
            .behaviour_mut()
            .rooms
            .send_request_with_addresses(&host, request, link.bootstrap.clone());
        info!(%room, host = %short(&host), "joining");
        self.pending_joins.insert(
            id,
            PendingJoin {
                link,
                name,
                reply,
                first_seq: first_seq + 1,
            },
        );
    }

    fn forget_topic(&mut self, room: RoomId) {
        let topic = IdentTopic::new(earshot_protocol::topic::room(&room));
        self.topics.remove(&topic.hash());
        self.early.remove(&room);
        let _ = self.swarm.behaviour_mut().gossipsub.unsubscribe(&topic);
    }

    fn act(&mut self, room: RoomId, body: ControlBody) -> Result<Vec<RoomChange>, ActError> {
        let joined = self.rooms.get_mut(&room).ok_or(ActError::NotInRoom(room))?;
        // Removing someone revokes the capabilities they joined with, as far as this node
        // knows them, unless the caller listed some.
        let body = match body {
            ControlBody::Remove { target, revoke } if revoke.is_empty() => ControlBody::Remove {
                target,
                revoke: joined
                    .state
                    .members
                    .get(&target)
                    .map(|member| {
                        member
                            .capabilities
                            .keys()
                            .copied()
                            .take(earshot_protocol::control::MAX_REVOCATIONS)
                            .collect()
                    })
                    .unwrap_or_default(),
            },
            body => body,
        };
        let ends = matches!(body, ControlBody::RoomEnded);
        let (bytes, changes) = joined.act(self.identity.signing_key(), clock::now(), body)?;
        self.publish(room, bytes);
        self.emit_changes(room, changes.clone());
        if ends {
            self.close(room, CloseReason::Ended);
        }
        Ok(changes)
    }

    fn publish(&mut self, room: RoomId, bytes: Vec<u8>) {
        let Some(joined) = self.rooms.get_mut(&room) else {
            return;
        };
        let topic = joined.topic.clone();
        match self
            .swarm
            .behaviour_mut()
            .gossipsub
            .publish(topic, bytes.clone())
        {
            Ok(_) | Err(gossipsub::PublishError::Duplicate) => {}
            Err(gossipsub::PublishError::NoPeersSubscribedToTopic) => joined.queue(bytes),
            Err(err) => warn!(%room, %err, "could not publish"),
        }
    }

    fn retry_pending(&mut self) {
        let now = Instant::now();
        let rooms: Vec<RoomId> = self.rooms.keys().copied().collect();
        for room in rooms {
            let Some(joined) = self.rooms.get_mut(&room) else {
                continue;
            };
            if joined.pending.is_empty() {
                continue;
            }
            let topic = joined.topic.clone();
            let mut pending = std::mem::take(&mut joined.pending);
            while let Some((since, bytes)) = pending.pop_front() {
                if now.duration_since(since) > PUBLISH_RETRY_FOR {
                    warn!(%room, "gave up publishing a message: no peers in the room");
                    continue;
                }
                match self
                    .swarm
                    .behaviour_mut()
                    .gossipsub
                    .publish(topic.clone(), bytes.clone())
                {
                    Ok(_) | Err(gossipsub::PublishError::Duplicate) => {}
                    Err(gossipsub::PublishError::NoPeersSubscribedToTopic) => {
                        pending.push_front((since, bytes));
                        break;
                    }
                    Err(err) => warn!(%room, %err, "could not publish"),
                }
            }
            if let Some(joined) = self.rooms.get_mut(&room) {
                pending.extend(joined.pending.drain(..));
                joined.pending = pending;
            }
        }
    }

    fn leave(&mut self, room: RoomId, reason: CloseReason) {
        if let Some(joined) = self.rooms.get_mut(&room) {
            if let Ok((bytes, _)) = joined.act(
                self.identity.signing_key(),
                clock::now(),
                ControlBody::Leave,
            ) {
                self.publish(room, bytes);
            }
            self.close(room, reason);
        } else if self.early.contains_key(&room) {
            self.forget_topic(room);
        }
    }

    fn leave_all(&mut self) {
        let rooms: Vec<RoomId> = self.rooms.keys().copied().collect();
        for room in rooms {
            self.leave(room, CloseReason::Left);
        }
    }

    fn close(&mut self, room: RoomId, reason: CloseReason) {
        self.promised.remove(&room);
        if let Some(joined) = self.rooms.remove(&room) {
            self.refresh_access(room);
            // Give queued messages (our Leave, RoomEnded) one last try before unsubscribing.
            let topic = joined.topic.clone();
            for (_, bytes) in joined.pending {
                let _ = self
                    .swarm
                    .behaviour_mut()
                    .gossipsub
                    .publish(topic.clone(), bytes);
            }
            self.topics.remove(&topic.hash());
            let _ = self.swarm.behaviour_mut().gossipsub.unsubscribe(&topic);
            info!(%room, ?reason, "left room");
            self.emit(NodeEvent::RoomClosed { room, reason });
        }
    }

    fn on_tick(&mut self) {
        let now = clock::now();
        let instant = Instant::now();
        let rooms: Vec<RoomId> = self.rooms.keys().copied().collect();
        for room in rooms {
            let Some(joined) = self.rooms.get_mut(&room) else {
                continue;
            };
            let timeouts = joined.state.tick(now);
            let heartbeat = if joined.presence_due(instant) {
                joined
                    .act(self.identity.signing_key(), now, ControlBody::Presence)
                    .ok()
            } else {
                None
            };
            self.emit_changes(room, timeouts);
            if let Some((bytes, changes)) = heartbeat {
                self.publish(room, bytes);
                self.emit_changes(room, changes);
            }
            self.announce(room, instant, now);
        }
        self.retry_pending();
        self.flush_welcomes(Some(WELCOME_WAIT));
        self.lobby.retain(|_, a| a.expires_at > now);
        let actions = self.reach.tick(instant);
        self.apply_reach(actions);
        self.retire_relayed_connections(instant);
    }

    /// Carries out what the reachability planner decided.
    fn apply_reach(&mut self, actions: Vec<crate::reach::Action>) {
        use crate::reach::Action;
        for action in actions {
            match action {
                Action::Dial(addr) => {
                    if let Err(err) = self.swarm.dial(addr.clone()) {
                        debug!(%addr, %err, "could not dial a relay");
                    }
                }
                Action::Reserve { relay, addr } => match self.swarm.listen_on(addr.clone()) {
                    Ok(listener) => {
                        info!(%addr, "asking a relay for a slot");
                        self.reach_listeners.insert(listener, relay);
                    }
                    Err(err) => {
                        warn!(%addr, %err, "could not ask a relay for a slot");
                        let actions = self.reach.lost(relay, Instant::now());
                        self.apply_reach(actions);
                    }
                },
                Action::Verdict(status) => {
                    info!(status = status.as_str(), "reachability");
                    self.emit(NodeEvent::Reachability { status });
                }
            }
        }
    }

    /// Closes relayed connections made redundant by a direct one: streams on them (audio)
    /// end and are reopened over the direct connection, and the relay carries nothing more.
    fn retire_relayed_connections(&mut self, now: Instant) {
        let (due, later): (Vec<_>, Vec<_>) = self
            .retire_relayed
            .drain(..)
            .partition(|(_, at)| *at <= now);
        self.retire_relayed = later;
        for (peer, _) in due {
            for connection in self.relayed_connections.remove(&peer).unwrap_or_default() {
                debug!(%peer, "closing a relayed connection: a direct one is up");
                self.swarm.close_connection(connection);
            }
        }
    }

    /// Re-announces a public room this node hosts, every [`ANNOUNCE_INTERVAL_MS`].
    fn announce(&mut self, room: RoomId, instant: Instant, now: Timestamp) {
        let Some(joined) = self.rooms.get_mut(&room) else {
            return;
        };
        if !joined.is_host() || joined.descriptor.visibility != Visibility::Public {
            return;
        }
        if joined.last_announced.is_some_and(|at| {
            instant.duration_since(at) < Duration::from_millis(ANNOUNCE_INTERVAL_MS)
        }) {
            return;
        }
        joined.last_announced = Some(instant);
        let hour = 3_600_000;
        // Renewed when less than half its hour is left, or when a removal revoked it (the
        // removed member is banned by key; newcomers need a link that works).
        let renew = joined.lobby_capability.as_ref().is_none_or(|cap| {
            cap.expires_at < now.plus_millis(hour / 2) || joined.state.revoked.contains(&cap.id())
        });
        if renew {
            let mut nonce = [0u8; 8];
            let _ = getrandom::fill(&mut nonce);
            joined.lobby_capability = earshot_protocol::Capability::issue(
                self.identity.signing_key(),
                room,
                Grant {
                    audience: Audience::Bearer,
                    role: Role::Listener,
                    not_before: now,
                    expires_at: now.plus_millis(hour),
                    depth: 0,
                },
                nonce,
            )
            .ok();
        }
        let Some(capability) = joined.lobby_capability.clone() else {
            return;
        };
        let present = joined.state.present();
        let speakers = present
            .iter()
            .filter(|member| member.role().on_stage())
            .map(|member| member.display_name())
            .collect();
        let listeners = present
            .iter()
            .filter(|member| !member.role().on_stage())
            .count();
        let announcement = Announcement::sign(
            self.identity.signing_key(),
            joined.descriptor.clone(),
            speakers,
            u32::try_from(listeners).unwrap_or(u32::MAX),
            capability,
            now.plus_millis(ANNOUNCEMENT_TTL_MS),
            joined.replays.clone(),
        );
        let bytes = announcement.encode();
        if let Ok(verified) = announcement.verify(now) {
            self.lobby.insert(room, verified);
        }
        let topic = self.lobby_topic.clone();
        match self.swarm.behaviour_mut().gossipsub.publish(topic, bytes) {
            Ok(_)
            | Err(gossipsub::PublishError::Duplicate)
            | Err(gossipsub::PublishError::NoPeersSubscribedToTopic) => {}
            Err(err) => warn!(%room, %err, "could not announce"),
        }
    }

    fn on_swarm_event(&mut self, event: SwarmEvent<BehaviourEvent>) {
        self.metrics.record(&event);
        match event {
            SwarmEvent::NewListenAddr { address, .. } => {
                info!(%address, "listening");
                // A circuit relay serves reservations only once it knows addresses it can be
                // reached at: a community relay's listen addresses are those (its operator
                // opens the port).
                if self.swarm.behaviour().relay_server.is_enabled()
                    && !address
                        .iter()
                        .any(|p| matches!(p, libp2p::multiaddr::Protocol::P2pCircuit))
                {
                    self.swarm.add_external_address(address.clone());
                }
                self.emit(NodeEvent::Listening { addr: address });
            }
            SwarmEvent::ConnectionEstablished {
                peer_id,
                connection_id,
                endpoint,
                ..
            } => {
                if endpoint.is_relayed() {
                    self.relayed_connections
                        .entry(peer_id)
                        .or_default()
                        .push(connection_id);
                } else if let libp2p::core::ConnectedPoint::Dialer { address, .. } = &endpoint {
                    self.dialled.insert(peer_id, address.clone());
                }
                self.connected.insert(peer_id);
                for reply in self.pending_dials.remove(&peer_id).unwrap_or_default() {
                    let _ = reply.send(Ok(()));
                }
            }
            SwarmEvent::OutgoingConnectionError {
                peer_id: Some(peer_id),
                error,
                ..
            } if !self.connected.contains(&peer_id) => {
                for reply in self.pending_dials.remove(&peer_id).unwrap_or_default() {
                    let _ = reply.send(Err(error.to_string()));
                }
            }
            SwarmEvent::ConnectionClosed {
                peer_id,
                connection_id,
                num_established,
                ..
            } => {
                if let Some(relayed) = self.relayed_connections.get_mut(&peer_id) {
                    relayed.retain(|connection| *connection != connection_id);
                    if relayed.is_empty() {
                        self.relayed_connections.remove(&peer_id);
                    }
                }
                if num_established == 0 {
                    self.connected.remove(&peer_id);
                    self.dialled.remove(&peer_id);
                    self.rtts.remove(&peer_id);
                }
            }
            // Counted by `self.metrics`.
            SwarmEvent::Behaviour(BehaviourEvent::RelayServer(event)) => {
                debug!(?event, "relay server");
            }
            SwarmEvent::Behaviour(BehaviourEvent::Gossipsub(event)) => self.on_gossip(event),
            SwarmEvent::Behaviour(BehaviourEvent::Rooms(event)) => self.on_rooms(event),
            SwarmEvent::Behaviour(BehaviourEvent::Identify(identify::Event::Received {
                peer_id,
                info,
                ..
            })) => {
                for addr in &info.listen_addrs {
                    self.swarm
                        .behaviour_mut()
                        .kad
                        .add_address(&peer_id, addr.clone());
                }
                if info.protocols.contains(&libp2p::relay::HOP_PROTOCOL_NAME) {
                    // A peer that serves circuit relay: somewhere to be reachable through.
                    let addr = self.dialled.get(&peer_id).cloned().or_else(|| {
                        info.listen_addrs
                            .iter()
                            .find(|addr| !crate::reach::is_relayed(addr))
                            .cloned()
                    });
                    if let Some(addr) = addr {
                        let actions = self.reach.serves_relay(peer_id, &addr, Instant::now());
                        self.apply_reach(actions);
                    }
                }
                self.peer_addrs.insert(peer_id, info.listen_addrs);
            }
            SwarmEvent::Behaviour(BehaviourEvent::Autonat(event)) => {
                debug!(addr = %event.tested_addr, server = %event.server, ok = event.result.is_ok(), "AutoNAT probe");
                let actions = self.reach.probed(event.result.is_ok(), Instant::now());
                self.apply_reach(actions);
            }
            SwarmEvent::Behaviour(BehaviourEvent::Dcutr(event)) => match event.result {
                Ok(_) => {
                    info!(peer = %event.remote_peer_id, "direct connection (hole punched)");
                    self.retire_relayed
                        .push((event.remote_peer_id, Instant::now() + RETIRE_RELAYED_AFTER));
                    self.emit(NodeEvent::DirectConnection {
                        peer: event.remote_peer_id,
                    });
                }
                Err(err) => debug!(peer = %event.remote_peer_id, %err, "no direct connection"),
            },
            // A relayed listener closes when the relay refuses or drops the reservation.
            SwarmEvent::ListenerClosed { listener_id, .. } => {
                if let Some(relay) = self.reach_listeners.remove(&listener_id) {
                    warn!(%relay, "lost the slot on a relay");
                    let actions = self.reach.lost(relay, Instant::now());
                    self.apply_reach(actions);
                }
            }
            SwarmEvent::Behaviour(BehaviourEvent::Ping(libp2p::ping::Event {
                peer,
                result: Ok(rtt),
                ..
            })) => {
                self.rtts.insert(peer, rtt);
            }
            _ => {}
        }
    }

    fn on_gossip(&mut self, event: gossipsub::Event) {
        match event {
            gossipsub::Event::Message {
                propagation_source,
                message_id,
                message,
            } => {
                let acceptance = if message.topic == self.lobby_topic.hash() {
                    self.on_announcement(&message.data)
                } else {
                    self.on_room_message(propagation_source, &message.topic, &message.data)
                };
                self.swarm
                    .behaviour_mut()
                    .gossipsub
                    .report_message_validation_result(&message_id, &propagation_source, acceptance);
            }
            gossipsub::Event::Subscribed { .. } => {
                self.retry_pending();
                self.flush_welcomes(None);
            }
            _ => {}
        }
    }

    fn on_announcement(&mut self, data: &[u8]) -> MessageAcceptance {
        match Announcement::decode_verified(data, clock::now()) {
            Ok(announcement) => {
                let room = announcement.descriptor.id;
                self.lobby.insert(room, announcement);
                self.emit(NodeEvent::Announced { room });
                MessageAcceptance::Accept
            }
            // Clocks differ: a stale announcement is not an attack.
            Err(earshot_protocol::snapshot::SnapshotError::Expired { .. }) => {
                MessageAcceptance::Ignore
            }
            Err(err) => {
                debug!(%err, "refused a lobby announcement");
                MessageAcceptance::Reject
            }
        }
    }

    fn on_room_message(
        &mut self,
        source: PeerId,
        topic: &TopicHash,
        data: &[u8],
    ) -> MessageAcceptance {
        let room = self.topics.get(topic).copied();
        let envelope = match Envelope::decode_verified(data) {
            Ok(envelope) => envelope,
            Err(err) => {
                self.reject(room, source, err.to_string());
                return MessageAcceptance::Reject;
            }
        };
        let Some(room) = room else {
            return MessageAcceptance::Ignore;
        };
        if let Some(early) = self.early.get_mut(&room) {
            // Still joining: keep it for after the snapshot; don't forward what we can't judge.
            if early.len() < MAX_EARLY_MESSAGES {
                early.push(envelope);
            }
            return MessageAcceptance::Ignore;
        }
        let Some(joined) = self.rooms.get_mut(&room) else {
            return MessageAcceptance::Ignore;
        };
        match joined.state.apply(clock::now(), &envelope) {
            Ok(changes) => {
                let me = self.identity.key();
                let ended = changes
                    .iter()
                    .any(|change| matches!(change, RoomChange::RoomEnded { .. }));
                let removed = changes.iter().any(
                    |change| matches!(change, RoomChange::Removed { member, .. } if *member == me),
                );
                self.emit_changes(room, changes);
                if ended {
                    self.close(room, CloseReason::Ended);
                } else if removed {
                    self.close(room, CloseReason::Removed);
                }
                MessageAcceptance::Accept
            }
            // Races, not attacks: a duplicate that crossed our snapshot, or a clock a bit off.
            Err(Rejected::Replay { .. } | Rejected::TooOld { .. }) => MessageAcceptance::Ignore,
            Err(reason) => {
                self.reject(Some(room), source, reason.to_string());
                MessageAcceptance::Reject
            }
        }
    }

    fn reject(&self, room: Option<RoomId>, from: PeerId, reason: String) {
        warn!(from = %short(&from), %reason, "rejected a control message");
        self.emit(NodeEvent::Rejected { room, from, reason });
    }

    fn on_rooms(&mut self, event: request_response::Event<RoomRequest, RoomResponse>) {
        match event {
            request_response::Event::Message {
                peer,
                message:
                    request_response::Message::Request {
                        request, channel, ..
                    },
                ..
            } => self.on_room_request(peer, request, channel),
            request_response::Event::Message {
                message:
                    request_response::Message::Response {
                        request_id,
                        response,
                    },
                ..
            } => {
                if let Some(reply) = self.pending_help.remove(&request_id) {
                    let _ = reply.send(match response {
                        RoomResponse::Helping => Ok(()),
                        RoomResponse::Refused { reason } => Err(reason),
                        other => Err(format!("unexpected answer {other:?}")),
                    });
                } else if let Some(reply) = self.pending_attach.remove(&request_id) {
                    let result = match response {
                        RoomResponse::Parent { key, addrs, depth } => match key.to_peer_id() {
                            Ok(peer) => Ok(TreeParent {
                                peer,
                                addrs: addrs
                                    .iter()
                                    .filter_map(|raw| Multiaddr::try_from(raw.to_vec()).ok())
                                    .collect(),
                                depth,
                            }),
                            Err(_) => Err(AttachError::Refused("invalid parent key".into())),
                        },
                        RoomResponse::Waiting => Err(AttachError::Waiting),
                        RoomResponse::Refused { reason } => Err(AttachError::Refused(reason)),
                        other => Err(AttachError::NoAnswer(format!("unexpected {other:?}"))),
                    };
                    let _ = reply.send(result);
                } else if let Some(pending) = self.pending_joins.remove(&request_id) {
                    self.on_join_response(pending, response);
                } else if let Some(reply) = self.pending_lobby.remove(&request_id) {
                    let now = clock::now();
                    let result = match response {
                        RoomResponse::Lobby { announcements } => Ok(announcements
                            .iter()
                            .filter_map(|bytes| Announcement::decode_verified(bytes, now).ok())
                            .collect()),
                        other => Err(JoinError::BadAnswer(format!("unexpected {other:?}"))),
                    };
                    let _ = reply.send(result);
                }
            }
            request_response::Event::OutboundFailure {
                request_id, error, ..
            } => {
                let failure = match error {
                    request_response::OutboundFailure::DialFailure => JoinError::Unreachable,
                    other => JoinError::NoAnswer(other.to_string()),
                };
                if let Some(reply) = self.pending_help.remove(&request_id) {
                    let _ = reply.send(Err(failure.to_string()));
                } else if let Some(reply) = self.pending_attach.remove(&request_id) {
                    let _ = reply.send(Err(AttachError::NoAnswer(failure.to_string())));
                } else if let Some(pending) = self.pending_joins.remove(&request_id) {
                    self.forget_topic(pending.link.capability.room);
                    let _ = pending.reply.send(Err(failure));
                } else if let Some(reply) = self.pending_lobby.remove(&request_id) {
                    let _ = reply.send(Err(failure));
                }
            }
            _ => {}
        }
    }

    fn on_room_request(
        &mut self,
        peer: PeerId,
        request: RoomRequest,
        channel: ResponseChannel<RoomResponse>,
    ) {
        let response = match request {
            RoomRequest::Lobby => {
                let now = clock::now();
                RoomResponse::Lobby {
                    announcements: self
                        .lobby
                        .values()
                        .filter(|a| a.expires_at > now)
                        .map(|a| serde_bytes::ByteBuf::from(a.encode()))
                        .collect(),
                }
            }
            RoomRequest::Attach {
                room,
                capacity,
                lost,
            } => self.place(peer, room, capacity, lost),
            RoomRequest::Help { link } => self.consider_help(peer, &link),
            RoomRequest::Join { envelope } => match self.admit(peer, &envelope) {
                Err(refusal) => refusal,
                // Welcome once the joiner's subscription to the topic is known here, so that
                // everything published after the snapshot reaches it directly; the snapshot is
                // taken then, so it covers everything before.
                Ok(room) if self.follows(&peer, &room) => self.welcome(room, peer),
                Ok(room) => {
                    self.pending_welcomes.push(PendingWelcome {
                        peer,
                        room,
                        channel,
                        since: Instant::now(),
                    });
                    return;
                }
            },
        };
        if self
            .swarm
            .behaviour_mut()
            .rooms
            .send_response(channel, response)
            .is_err()
        {
            debug!(peer = %short(&peer), "the requester went away before the answer");
        }
    }

    /// The host's side of a join: fold the joiner's `Join` like any envelope; if the room accepts
    /// it, publish it to everyone and return the room (the welcome follows, see `welcome`).
    fn admit(&mut self, peer: PeerId, bytes: &[u8]) -> Result<RoomId, RoomResponse> {
        let refuse = |reason: String| RoomResponse::Refused { reason };
        let envelope = Envelope::decode_verified(bytes).map_err(|err| refuse(err.to_string()))?;
        let room = envelope.room;
        if envelope.author.to_peer_id().ok() != Some(peer) {
            return Err(refuse(
                "the join must come from its author's own connection".into(),
            ));
        }
        if !matches!(envelope.body, ControlBody::Join { .. }) {
            return Err(refuse("expected a join".into()));
        }
        let Some(joined) = self.rooms.get_mut(&room).filter(|joined| joined.is_host()) else {
            return Err(refuse(format!("this node does not host room {room}")));
        };
        let changes = joined
            .state
            .apply(clock::now(), &envelope)
            .map_err(|reason| {
                info!(%room, peer = %short(&peer), %reason, "refused a joiner");
                refuse(reason.to_string())
            })?;
        self.publish(room, envelope.encode());
        self.emit_changes(room, changes);
        Ok(room)
    }

    /// Children the budget leaves for a room, after what the other rooms were offered (None:
    /// no budget).
    fn children_left(&self, room: Option<RoomId>) -> Option<usize> {
        let budget = self.children_budget?;
        // A share counts while its room is joined, or for a while after it was set aside (the
        // join under way); a join that failed gives it back then.
        let others: usize = self
            .promised
            .iter()
            .filter(|(id, (_, at))| {
                Some(**id) != room
                    && (self.rooms.contains_key(id) || at.elapsed() < PROMISE_HELD_FOR)
            })
            .map(|(_, (n, _))| usize::from(*n))
            .sum();
        Some(budget.saturating_sub(others))
    }

    /// The capacity to offer in `room`'s tree: this node's per-room limit, within what the
    /// budget leaves. Remembered, so that other rooms get the rest.
    fn capacity_in(&mut self, room: RoomId) -> u16 {
        let capacity = match self.children_left(Some(room)) {
            Some(left) => self
                .max_children
                .min(u16::try_from(left).unwrap_or(u16::MAX)),
            None => self.max_children,
        };
        if self.children_budget.is_some() {
            let rooms = &self.rooms;
            self.promised
                .retain(|id, (_, at)| rooms.contains_key(id) || at.elapsed() < PROMISE_HELD_FOR);
            self.promised.insert(room, (capacity, Instant::now()));
        }
        capacity
    }

    /// A host asks this node to carry its room: a community relay agrees while it carries fewer
    /// rooms than it allows, and the link is a valid invite to it.
    fn consider_help(&mut self, peer: PeerId, link: &str) -> RoomResponse {
        let refuse = |reason: String| RoomResponse::Refused { reason };
        if self.help_rooms == 0 {
            return refuse("this node does not carry rooms for others".into());
        }
        if self.rooms.len() >= self.help_rooms {
            return refuse(format!(
                "this relay carries its maximum of {} rooms; ask another",
                self.help_rooms
            ));
        }
        if self.children_left(None) == Some(0) {
            return refuse(
                "this relay's upload budget is taken by other rooms; ask another".into(),
            );
        }
        let link = match InviteLink::decode(link) {
            Ok(link) => link,
            Err(err) => return refuse(err.to_string()),
        };
        if self.rooms.contains_key(&link.capability.room) {
            return refuse("this relay already carries that room".into());
        }
        if link.host.to_peer_id().ok() != Some(peer) {
            return refuse("only a room's host may ask a relay to carry it".into());
        }
        info!(room = %link.capability.room, host = %short(&peer), "asked to carry a room");
        // Its share of the budget is set aside now, before the next host asks.
        self.capacity_in(link.capability.room);
        self.emit(NodeEvent::HelpRequested {
            from: peer,
            link: Box::new(link),
        });
        RoomResponse::Helping
    }

    /// The host places a member in the room's relay tree.
    fn place(
        &mut self,
        peer: PeerId,
        room: RoomId,
        capacity: u16,
        lost: Option<PeerKey>,
    ) -> RoomResponse {
        let refuse = |reason: String| RoomResponse::Refused { reason };
        let Ok(key) = PeerKey::from_peer_id(&peer) else {
            return refuse("not an earshot peer".into());
        };
        let Some(joined) = self.rooms.get_mut(&room).filter(|joined| joined.is_host()) else {
            return refuse(format!("this node does not host room {room}"));
        };
        let present = joined
            .state
            .members
            .get(&key)
            .is_some_and(|member| joined.state.is_present(member));
        if !present {
            return refuse("only members in the room get its audio".into());
        }
        let Some(tree) = joined.tree.as_mut() else {
            return refuse("this room has no relay tree".into());
        };
        // A child reporting its own parent gone takes that parent out of the tree (a member can
        // only report the parent the host gave it). If the parent was only slow, the data plane
        // is unharmed (its other children keep their streams; when they next re-attach they go
        // where the planner has put them since) and it is placed afresh when it next asks.
        if let Some(lost) = lost
            && lost != self.identity.key()
            && tree.parent_of(&key) == Some(lost)
        {
            info!(%room, lost = %lost.short(), child = %key.short(), "a relay in the tree went silent");
            tree.handle(earshot_protocol::tree::TreeInput::Leave { peer: lost });
        }
        let rtt_ms = self
            .rtts
            .get(&peer)
            .map_or(0, |rtt| u32::try_from(rtt.as_millis()).unwrap_or(u32::MAX));
        let outputs = tree.handle(earshot_protocol::tree::TreeInput::Join {
            peer: key,
            capacity,
            rtt_ms,
        });
        let placed = outputs.iter().find_map(|output| match output {
            earshot_protocol::tree::TreeOutput::Attach {
                child,
                parent,
                depth,
            } if *child == key => Some((*parent, *depth)),
            _ => None,
        });
        let Some((parent, depth)) = placed else {
            return RoomResponse::Waiting;
        };
        let addrs: Vec<Multiaddr> = if parent == self.identity.key() {
            self.swarm
                .listeners()
                .filter(|addr| {
                    !addr.iter().any(|p| {
                        matches!(p, libp2p::multiaddr::Protocol::Ip4(ip) if ip.is_unspecified())
                    })
                })
                .cloned()
                .chain(joined.descriptor.addrs())
                .collect()
        } else {
            parent
                .to_peer_id()
                .ok()
                .and_then(|id| self.peer_addrs.get(&id).cloned())
                .unwrap_or_default()
        };
        debug!(%room, child = %key.short(), parent = %parent.short(), depth, "placed in the relay tree");
        RoomResponse::Parent {
            key: parent,
            addrs: addrs
                .iter()
                .take(8)
                .map(|addr| serde_bytes::ByteBuf::from(addr.to_vec()))
                .collect(),
            depth,
        }
    }

    /// The signed snapshot of `room` as of now, for a joiner, with a random sample of connected
    /// members to dial (so that the room's mesh is a random graph rather than everyone
    /// clustering on the same few early joiners).
    fn welcome(&self, room: RoomId, peer: PeerId) -> RoomResponse {
        let Some(joined) = self.rooms.get(&room) else {
            return RoomResponse::Refused {
                reason: "the room closed".into(),
            };
        };
        let mut salt = [0u8; 8];
        let _ = getrandom::fill(&mut salt);
        let mut candidates: Vec<(PeerKey, PeerId)> = joined
            .state
            .present()
            .iter()
            .filter_map(|member| {
                let id = member.key.to_peer_id().ok()?;
                (id != peer && self.connected.contains(&id)).then_some((member.key, id))
            })
            .collect();
        candidates.sort_by_cached_key(|(key, _)| {
            let mut hasher = Sha256::new();
            hasher.update(salt);
            hasher.update(key.as_bytes());
            hasher.finalize()
        });
        let hints: Vec<PeerHint> = candidates
            .into_iter()
            .filter_map(|(key, id)| {
                let addrs = self.peer_addrs.get(&id)?;
                Some(PeerHint {
                    key,
                    addrs: addrs
                        .iter()
                        .take(4)
                        .map(|addr| serde_bytes::ByteBuf::from(addr.to_vec()))
                        .collect(),
                })
            })
            .take(earshot_protocol::snapshot::MAX_PEER_HINTS)
            .collect();
        let snapshot = RoomSnapshot::sign(
            self.identity.signing_key(),
            joined.descriptor.clone(),
            joined.state.clone(),
            hints,
            clock::now(),
        );
        RoomResponse::Welcome {
            snapshot: serde_bytes::ByteBuf::from(snapshot.encode()),
        }
    }

    /// Whether `peer` is known to follow `room`'s topic (so our publishes reach it directly).
    fn follows(&self, peer: &PeerId, room: &RoomId) -> bool {
        let topic = IdentTopic::new(earshot_protocol::topic::room(room)).hash();
        self.swarm
            .behaviour()
            .gossipsub
            .all_peers()
            .any(|(p, topics)| p == peer && topics.contains(&&topic))
    }

    fn send_welcome(&mut self, pending: PendingWelcome) {
        let response = self.welcome(pending.room, pending.peer);
        if self
            .swarm
            .behaviour_mut()
            .rooms
            .send_response(pending.channel, response)
            .is_err()
        {
            debug!(peer = %short(&pending.peer), "the joiner went away before the welcome");
        }
    }

    /// Welcomes parked joiners whose subscription has arrived, or who waited long enough.
    fn flush_welcomes(&mut self, force_older_than: Option<Duration>) {
        let now = Instant::now();
        let parked = std::mem::take(&mut self.pending_welcomes);
        for pending in parked {
            let waited_enough =
                force_older_than.is_some_and(|limit| now.duration_since(pending.since) >= limit);
            if waited_enough || self.follows(&pending.peer, &pending.room) {
                self.send_welcome(pending);
            } else {
                self.pending_welcomes.push(pending);
            }
        }
    }

    fn on_join_response(&mut self, pending: PendingJoin, response: RoomResponse) {
        let room = pending.link.capability.room;
        let snapshot = match response {
            RoomResponse::Welcome { snapshot } => {
                match RoomSnapshot::decode_verified(&snapshot, room, pending.link.host) {
                    Ok(snapshot) => snapshot.into_inner(),
                    Err(err) => {
                        self.forget_topic(room);
                        let _ = pending
                            .reply
                            .send(Err(JoinError::BadAnswer(err.to_string())));
                        return;
                    }
                }
            }
            RoomResponse::Refused { reason } => {
                self.forget_topic(room);
                let _ = pending.reply.send(Err(JoinError::Refused { reason }));
                return;
            }
            other => {
                self.forget_topic(room);
                let _ = pending
                    .reply
                    .send(Err(JoinError::BadAnswer(format!("unexpected {other:?}"))));
                return;
            }
        };
        let early = self.early.remove(&room).unwrap_or_default();
        // The policy comes from the host-signed descriptor, whatever the snapshot says.
        let members_may_record = snapshot.descriptor.recording.members_may_record;
        let mut joined = Joined::new(
            snapshot.descriptor,
            snapshot.state.with_member_recording(members_may_record),
            Authority::Capability(pending.link.capability.clone()),
            pending.name,
            pending.first_seq,
        );
        let now = clock::now();
        for envelope in early {
            if let Ok(changes) = joined.state.apply(now, &envelope) {
                self.emit_changes(room, changes);
            }
        }
        // Dial a few members so the room's mesh is not a star around the host.
        for hint in &snapshot.peers {
            let Ok(peer) = hint.key.to_peer_id() else {
                continue;
            };
            if peer == *self.swarm.local_peer_id() || self.connected.contains(&peer) {
                continue;
            }
            let addrs: Vec<Multiaddr> = hint
                .addrs
                .iter()
                .filter_map(|raw| Multiaddr::try_from(raw.to_vec()).ok())
                .collect();
            let opts = libp2p::swarm::dial_opts::DialOpts::peer_id(peer)
                .addresses(addrs)
                .build();
            if let Err(err) = self.swarm.dial(opts) {
                debug!(%err, "could not dial a room member");
            }
        }
        let view = RoomView {
            descriptor: joined.descriptor.clone(),
            state: joined.state.clone(),
        };
        self.rooms.insert(room, joined);
        self.refresh_access(room);
        info!(%room, "joined");
        let _ = pending.reply.send(Ok(view));
    }
}

/// The last 8 characters of a PeerId: enough to tell peers apart in logs.
pub fn short(peer: &PeerId) -> String {
    let text = peer.to_string();
    text[text.len().saturating_sub(8)..].to_owned()
}
