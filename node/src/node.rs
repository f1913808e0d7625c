//! The running node: one event loop task owns the `Swarm` ([`event_loop`]); [`Node`] is the
//! cheap, cloneable handle that sends it commands (each with a oneshot reply) and subscribes to
//! its [`Event`]s. The audio plane ([`Fanout`]) starts with the node and admits streams by the
//! rooms' state, which the event loop keeps current.
//!
//! Room behaviour for front ends (hosting or joining with audio, recording, replays, carrying)
//! is in [`crate::room`], on top of this handle.

use std::time::Duration;

use std::sync::Arc;

use earshot_protocol::audience::AudienceView;
use earshot_protocol::audience::follow::Asked;
use earshot_protocol::audience::wire::Newcomer;
use earshot_protocol::snapshot::{Announcement, Placement};
use earshot_protocol::state::{RoomChange, RoomState};
use earshot_protocol::{ControlBody, InviteLink, PeerKey, RoomDescriptor, RoomId, Verified};
use libp2p::swarm::SwarmEvent;
use libp2p::{Multiaddr, PeerId};
use tokio::sync::{broadcast, mpsc, oneshot};
use tracing::{Instrument, info_span};

use crate::event::Event;
use crate::fanout::Fanout;
use crate::identity::Identity;
use crate::metrics::NetMetrics;
use crate::net::{self, NetConfig};
use crate::reachability::Mode;
use crate::rooms::ActError;
use crate::tree::{Tree, TreeInfo};

mod errors;
mod event_loop;

pub use errors::{
    AttachError, BadAnswer, CarryError, DialError, HostError, JoinError, LobbyError, NodeStopped,
    RequestFailure, SpawnError,
};
pub(crate) mod pending;

use event_loop::EventLoop;

/// Commands waiting for the event loop. Small: callers are people and tests, not hot paths.
const COMMAND_CAP: usize = 64;
/// Events buffered per subscriber; a subscriber that falls further behind skips events
/// (`broadcast` lag) rather than slowing the loop.
const EVENT_CAP: usize = 1024;
/// How long [`Node::spawn`] waits for every listener to come up.
const LISTEN_WAIT: Duration = Duration::from_secs(5);

/// What one child is taken to cost in upload until it is measured (see
/// `earshot_protocol::audience::uplink`): a 32 kbit/s Opus stream with framing and transport
/// overhead.
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
    /// How many children this node feeds in a room's relay tree (its upload budget in streams):
    /// where it starts, and all it is without `upload_kbps` (lowered when its uplink turns out to
    /// carry fewer: see `earshot_protocol::audience::uplink`).
    pub max_children: u16,
    /// The upload its user declared, in kbit/s: its capacity follows 80 % of it over a child's
    /// measured cost.
    pub upload_kbps: Option<u32>,
    /// Community relays to reserve a slot on when this node is not reachable (addresses ending
    /// in `/p2p/RELAY`): from the configuration and `--bootstrap`. Invite links add theirs.
    pub relays: Vec<Multiaddr>,
    /// Whether to ask AutoNAT, or take this node as reachable or not.
    pub reachability: Mode,
    /// The caller opens this node's audio streams itself (for tests and benches of the audio
    /// plane): a member does not attach to its room's tree on its own.
    pub tree_by_hand: bool,
    /// Play an adversary in the rooms' trees (tests: `earshot join --misbehave`).
    pub misbehave: Option<crate::fanout::Misbehave>,
    /// Keep everything passed on in the rooms' trees in this file (tests: `earshot relay
    /// --capture`, what a relay of a private room can read).
    pub capture: Option<std::path::PathBuf>,
    /// Neither sign this node's frames (nor, as a host, the beacons) nor check the frames it
    /// receives: only for tests of the audio plane alone at rates no room has (a debug build
    /// cannot sign or verify 1,600 proofs a second).
    pub unchecked_audio: bool,
}

impl Default for NodeConfig {
    fn default() -> Self {
        Self {
            listen: Vec::new(),
            bootstrap: Vec::new(),
            net: NetConfig::default(),
            max_children: DEFAULT_MAX_CHILDREN,
            upload_kbps: None,
            relays: Vec::new(),
            reachability: Mode::default(),
            tree_by_hand: false,
            misbehave: None,
            capture: None,
            unchecked_audio: false,
        }
    }
}

impl NodeConfig {
    /// Whether this node may end up reachable through a relay: it may ask AutoNAT, and knows a
    /// relay (or a peer that may be one) to ask.
    pub fn may_use_relays(&self) -> bool {
        self.reachability != Mode::Public && !(self.relays.is_empty() && self.bootstrap.is_empty())
    }
}

/// A room as this node sees it.
#[derive(Debug, Clone)]
pub struct RoomView {
    pub descriptor: RoomDescriptor,
    /// The room's state: for the stage (host, speakers, moderators), the fold of the room's
    /// signed messages; for the audience, what the host's latest view says.
    pub state: RoomState,
    /// Whether this node is in the audience (listening through the tree, off the room's topic).
    pub audience: bool,
    /// The host's latest view of the room for its audience: how many listen, the raised hands
    /// (the audience's too), the reactions of late.
    pub view: Option<AudienceView>,
    /// Where the host (or whoever admitted this node) placed it in the relay tree, when it
    /// joined as a listener.
    pub placement: Option<Placement>,
    /// Admitted as a listener without a place yet: the ticket to show when asking for one.
    pub ticket: Option<Vec<u8>>,
}

/// What the node is asked to do; each carries where its answer goes.
enum Command {
    ListenAddrs {
        reply: oneshot::Sender<Vec<Multiaddr>>,
    },
    Host {
        descriptor: RoomDescriptor,
        name: String,
        keep: Option<crate::store::Store>,
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
    Over {
        room: RoomId,
        reply: oneshot::Sender<()>,
    },
    Lobby {
        reply: oneshot::Sender<Vec<Verified<Announcement>>>,
    },
    QueryLobby {
        peer: PeerId,
        addrs: Vec<Multiaddr>,
        reply: oneshot::Sender<Result<Vec<Verified<Announcement>>, LobbyError>>,
    },
    AnnounceTo {
        peer: PeerId,
        addrs: Vec<Multiaddr>,
        announcement: Vec<u8>,
        reply: oneshot::Sender<Result<(), LobbyError>>,
    },
    Listeners {
        room: RoomId,
        page: u32,
        reply: oneshot::Sender<Result<Vec<Newcomer>, AttachError>>,
    },
    PadSchedule {
        room: RoomId,
        members: Vec<PeerKey>,
        reply: oneshot::Sender<usize>,
    },
    AskToCarry {
        relay: PeerId,
        addrs: Vec<Multiaddr>,
        link: String,
        reply: oneshot::Sender<Result<(), CarryError>>,
    },
    Attach {
        room: RoomId,
        whom: Asked,
        lost: Option<PeerKey>,
        ticket: Option<Vec<u8>>,
        reply: oneshot::Sender<Result<Placement, AttachError>>,
    },
    Dial {
        peer: PeerId,
        addrs: Vec<Multiaddr>,
        reply: oneshot::Sender<Result<(), DialError>>,
    },
    Moving {
        peer: PeerId,
        reply: oneshot::Sender<Option<bool>>,
    },
    UpRaw {
        room: RoomId,
        bytes: Vec<u8>,
        reply: oneshot::Sender<()>,
    },
    PublishRaw {
        room: RoomId,
        bytes: Vec<u8>,
        reply: oneshot::Sender<()>,
    },
    Eavesdrop {
        topic: String,
        messages: mpsc::UnboundedSender<Vec<u8>>,
        reply: oneshot::Sender<()>,
    },
    Shutdown {
        reply: oneshot::Sender<()>,
    },
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
            Command::Over { .. } => "Over",
            Command::Lobby { .. } => "Lobby",
            Command::QueryLobby { .. } => "QueryLobby",
            Command::AnnounceTo { .. } => "AnnounceTo",
            Command::PublishRaw { .. } => "PublishRaw",
            Command::UpRaw { .. } => "UpRaw",
            Command::Eavesdrop { .. } => "Eavesdrop",
            Command::Dial { .. } => "Dial",
            Command::Moving { .. } => "Moving",
            Command::Attach { .. } => "Attach",
            Command::AskToCarry { .. } => "AskToCarry",
            Command::Listeners { .. } => "Listeners",
            Command::PadSchedule { .. } => "PadSchedule",
            Command::Shutdown { .. } => "Shutdown",
        })
    }
}

/// The handle to a running node. Cheap to clone.
#[derive(Clone)]
pub struct Node {
    commands: mpsc::Sender<Command>,
    events: broadcast::Sender<Event>,
    net_metrics: NetMetrics,
    /// Opens and accepts streams (audio, replays) without going through the event loop.
    streams: libp2p_stream::Control,
    fanout: Fanout,
    tree: Arc<Tree>,
    memberships: crate::membership::Memberships,
    tree_by_hand: bool,
    peer_id: PeerId,
    key: PeerKey,
    may_use_relays: bool,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Node({})", self.peer_id)
    }
}

impl Node {
    /// Starts a node for `identity` on the current tokio runtime, with its audio plane. Returns
    /// once every listener is up (a relayed one once the relay granted a slot).
    pub async fn spawn(identity: Identity, config: NodeConfig) -> Result<Node, SpawnError> {
        let mut swarm = net::build_swarm(&identity, &config.net)?;
        let mut listening = Vec::new();
        for addr in &config.listen {
            let id = swarm
                .listen_on(addr.clone())
                .map_err(|err| SpawnError::Listen {
                    addr: addr.clone(),
                    reason: err.to_string(),
                })?;
            listening.push((id, addr.clone()));
        }
        let streams = swarm.behaviour().stream.new_control();
        let (tree, tree_events) = Tree::new(identity.signing_key().clone());
        let fanout = Fanout::start(
            streams.clone(),
            Arc::clone(&tree) as Arc<dyn crate::fanout::Gate>,
            // Unchecked (tests of the plane alone): nothing signed either.
            (!config.unchecked_audio).then(|| identity.signing_key().clone()),
        );
        fanout.set_conduct(swarm.behaviour().conduct.conduct());
        fanout.serve_studio(
            config.net.metrics.studio_kept.clone(),
            config.net.metrics.studio_refused.clone(),
        );
        if config.unchecked_audio {
            tree.set_unchecked();
        }
        if let Some(kbps) = config.upload_kbps {
            tree.set_upload_kbps(kbps);
        }
        if let Some(path) = &config.capture {
            let capture = crate::fanout::misbehave::Capture::to_file(path).map_err(|source| {
                SpawnError::Capture {
                    path: path.clone(),
                    source,
                }
            })?;
            fanout.set_capture(capture);
        }
        if let Some(kind) = config.misbehave {
            fanout.set_misbehave(kind);
            tree.set_misbehave(kind);
        }
        let (commands, command_rx) = mpsc::channel(COMMAND_CAP);
        let (events, _) = broadcast::channel(EVENT_CAP);
        let peer_id = identity.peer_id();
        let key = identity.key();
        let may_use_relays = config.may_use_relays();
        let tree_by_hand = config.tree_by_hand;
        let mut event_loop = EventLoop::new(
            swarm,
            command_rx,
            events.clone(),
            &identity,
            &config,
            event_loop::Plane {
                fanout: fanout.clone(),
                tree: Arc::clone(&tree),
                events: tree_events,
            },
        );
        // Wait for every listener to come up, so callers can hand out addresses at once; one
        // that fails or never comes up is an error naming it.
        let deadline = tokio::time::Instant::now() + LISTEN_WAIT;
        let addr_of = |id: &libp2p::core::transport::ListenerId| {
            listening
                .iter()
                .find(|(listener, _)| listener == id)
                .map(|(_, addr)| addr.clone())
        };
        let mut pending: Vec<_> = listening.iter().map(|(id, _)| *id).collect();
        while !pending.is_empty() {
            let event = tokio::time::timeout_at(deadline, event_loop.next_swarm_event())
                .await
                .map_err(|_| SpawnError::Listen {
                    addr: pending
                        .first()
                        .and_then(addr_of)
                        .unwrap_or_else(Multiaddr::empty),
                    reason: "it did not come up within 5 s (for a relayed address: the relay \
                             granted no slot)"
                        .into(),
                })?;
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
        let span = info_span!("node", peer = %short(&peer_id));
        tokio::spawn(event_loop.run().instrument(span));
        Ok(Node {
            commands,
            events,
            net_metrics: config.net.metrics.clone(),
            streams,
            fanout,
            tree,
            memberships: Default::default(),
            tree_by_hand,
            peer_id,
            key,
            may_use_relays,
        })
    }

    /// Connections, and for a community relay its reservations and circuits, as they change
    /// (the handles in [`NetConfig::metrics`]).
    pub fn net_metrics(&self) -> &NetMetrics {
        &self.net_metrics
    }

    pub fn peer_id(&self) -> PeerId {
        self.peer_id
    }

    pub fn key(&self) -> PeerKey {
        self.key
    }

    /// Whether this node may end up reachable only through a relay (see
    /// [`NodeConfig::may_use_relays`]).
    pub fn may_use_relays(&self) -> bool {
        self.may_use_relays
    }

    /// The audio plane: frames along the rooms' relay trees.
    pub fn fanout(&self) -> &Fanout {
        &self.fanout
    }

    /// Events from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.events.subscribe()
    }

    /// Tells the front ends (the room services publish their events here too).
    pub(crate) fn emit(&self, event: Event) {
        // No subscribers is fine.
        let _ = self.events.send(event);
    }

    pub(crate) fn streams(&self) -> libp2p_stream::Control {
        self.streams.clone()
    }

    async fn call<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<T>) -> Command,
    ) -> Result<T, NodeStopped> {
        let (reply, rx) = oneshot::channel();
        self.commands
            .send(make(reply))
            .await
            .map_err(|_| NodeStopped)?;
        rx.await.map_err(|_| NodeStopped)
    }

    /// The addresses the node listens on.
    pub async fn listen_addrs(&self) -> Result<Vec<Multiaddr>, NodeStopped> {
        self.call(|reply| Command::ListenAddrs { reply }).await
    }

    /// The addresses peers can dial this node at, each ending in `/p2p/<PeerId>` (for links
    /// and `--bootstrap`): the listen addresses without unspecified IPs.
    pub async fn dialable_addrs(&self) -> Result<Vec<Multiaddr>, NodeStopped> {
        Ok(self
            .listen_addrs()
            .await?
            .into_iter()
            .filter(earshot_protocol::addr::is_dialable)
            .map(|addr| earshot_protocol::addr::with_peer(addr, self.peer_id))
            .collect())
    }

    /// Opens a room this node hosts and joins it as the host.
    pub async fn host(&self, descriptor: RoomDescriptor, name: &str) -> Result<(), HostError> {
        self.host_keeping(descriptor, name, None).await
    }

    /// [`Node::host`], keeping a private room's key schedule in `keep` (a host that restarts
    /// goes on with it: its members keep their keys, whoever it removed stays out).
    pub async fn host_keeping(
        &self,
        descriptor: RoomDescriptor,
        name: &str,
        keep: Option<crate::store::Store>,
    ) -> Result<(), HostError> {
        let name = name.to_owned();
        let room = descriptor.id;
        self.call(|reply| Command::Host {
            descriptor,
            name,
            keep,
            reply,
        })
        .await
        .map_err(|_| HostError::Stopped)??;
        self.start_membership(room, None);
        Ok(())
    }

    /// Joins the room a link invites to: checks the link, reaches the host, is admitted, and
    /// follows the room from the host's snapshot on.
    pub async fn join(&self, link: InviteLink, name: &str) -> Result<RoomView, JoinError> {
        let name = name.to_owned();
        let view = self
            .call(|reply| Command::Join { link, name, reply })
            .await
            .map_err(|_| JoinError::Stopped)??;
        self.start_membership(
            view.descriptor.id,
            Some(crate::membership::Start {
                host: view.descriptor.host,
                placement: view.placement.clone(),
                ticket: view.ticket.clone(),
            }),
        );
        Ok(view)
    }

    /// Says something to a room (raise a hand, promote someone, chat …).
    pub async fn act(&self, room: RoomId, body: ControlBody) -> Result<Vec<RoomChange>, ActError> {
        self.call(|reply| Command::Act { room, body, reply })
            .await
            .map_err(|_| ActError::Stopped)?
    }

    /// The room as this node sees it now.
    pub async fn view(&self, room: RoomId) -> Result<Option<RoomView>, NodeStopped> {
        self.call(|reply| Command::View { room, reply }).await
    }

    /// Leaves a room (the room hears a `Leave`).
    pub async fn leave(&self, room: RoomId) -> Result<(), NodeStopped> {
        self.call(|reply| Command::Leave { room, reply }).await
    }

    /// The room is over for this node without it hearing the end (an audience member whose host
    /// says the room is closed, or has gone silent): it closes as ended.
    pub(crate) async fn room_over(&self, room: RoomId) -> Result<(), NodeStopped> {
        self.call(|reply| Command::Over { room, reply }).await
    }

    /// The public rooms this node has seen announced and that are still live.
    pub async fn lobby(&self) -> Result<Vec<Verified<Announcement>>, NodeStopped> {
        self.call(|reply| Command::Lobby { reply }).await
    }

    /// Asks a peer (dialling `addrs` if needed) for the public rooms it knows of.
    pub async fn query_lobby(
        &self,
        peer: PeerId,
        addrs: Vec<Multiaddr>,
    ) -> Result<Vec<Verified<Announcement>>, LobbyError> {
        self.call(|reply| Command::QueryLobby { peer, addrs, reply })
            .await
            .map_err(|_| LobbyError::Stopped)?
    }

    /// Hands a scheduled room's announcement (encoded, see
    /// [`crate::home::Home::announce_ahead`]) to a peer that serves the lobby (a community
    /// relay), which keeps it until it expires and passes it on.
    pub async fn announce_to(
        &self,
        peer: PeerId,
        addrs: Vec<Multiaddr>,
        announcement: Vec<u8>,
    ) -> Result<(), LobbyError> {
        self.call(|reply| Command::AnnounceTo {
            peer,
            addrs,
            announcement,
            reply,
        })
        .await
        .map_err(|_| LobbyError::Stopped)?
    }

    /// This node's place in `room`'s relay tree: its path up to the host, its children, its
    /// subtree's size.
    pub fn tree(&self, room: &RoomId) -> Option<TreeInfo> {
        self.tree.info(room)
    }

    /// The relay trees this node takes part in (the audio plane's gate).
    pub(crate) fn trees(&self) -> &Arc<Tree> {
        &self.tree
    }

    pub(crate) fn memberships(&self) -> &crate::membership::Memberships {
        &self.memberships
    }

    /// Whether the caller drives this node's audio streams itself ([`NodeConfig::tree_by_hand`]).
    pub(crate) fn drives_tree_by_hand(&self) -> bool {
        self.tree_by_hand
    }

    /// Asks `whom` (the host, or an ancestor in the tree) for a place in `room`'s relay tree;
    /// `lost` is the parent this node just lost, if any, and `ticket` the place it held.
    pub async fn attach(
        &self,
        room: RoomId,
        whom: Asked,
        lost: Option<PeerKey>,
        ticket: Option<Vec<u8>>,
    ) -> Result<Placement, AttachError> {
        self.call(|reply| Command::Attach {
            room,
            whom,
            lost,
            ticket,
            reply,
        })
        .await
        .map_err(|_| AttachError::Stopped)?
    }

    /// Asks the host of `room` for the listeners that arrived lately, newest first, a page
    /// ([`earshot_protocol::audience::host::LISTENERS_PAGE`]) at a time.
    pub async fn listeners(&self, room: RoomId, page: u32) -> Result<Vec<Newcomer>, AttachError> {
        self.call(|reply| Command::Listeners { room, page, reply })
            .await
            .map_err(|_| AttachError::Stopped)?
    }

    /// Benches only: `members` join the key schedule of `room` (a private room this node hosts)
    /// with no node behind them, so that its fresh epochs are sealed and sent as in a room of
    /// that many. Returns the schedule's size (at most [`earshot_protocol::private::MAX_MEMBERS`]).
    #[doc(hidden)]
    pub async fn pad_private_schedule(
        &self,
        room: RoomId,
        members: Vec<PeerKey>,
    ) -> Result<usize, NodeStopped> {
        self.call(|reply| Command::PadSchedule {
            room,
            members,
            reply,
        })
        .await
    }

    /// Asks the community relay `relay` to carry a room's audio, joining with `link` (an invite
    /// bound to the relay's key). Returns once the relay agreed (it then joins on its own).
    pub async fn ask_to_carry(
        &self,
        relay: PeerId,
        addrs: Vec<Multiaddr>,
        link: &InviteLink,
    ) -> Result<(), CarryError> {
        let link = link.encode();
        self.call(|reply| Command::AskToCarry {
            relay,
            addrs,
            link,
            reply,
        })
        .await
        .map_err(|_| CarryError::Stopped)?
    }

    /// Connects to `peer` at `addrs` (for example a parent in the relay tree); returns once
    /// connected.
    pub async fn dial(&self, peer: PeerId, addrs: Vec<Multiaddr>) -> Result<(), DialError> {
        self.call(|reply| Command::Dial { peer, addrs, reply })
            .await
            .map_err(|_| DialError::Stopped)?
    }

    /// Whether the connection to `peer` moved from a relay to a direct one: see
    /// [`crate::peers::Peers::moving`].
    pub async fn moving(&self, peer: PeerId) -> Option<bool> {
        self.call(|reply| Command::Moving { peer, reply })
            .await
            .ok()
            .flatten()
    }

    /// Opens a stream of `protocol` to `peer` as it is, no hello said: what a modified client
    /// could do. For adversarial tests and debugging tools; honest code uses the audio plane
    /// ([`Node::fanout`]) and the replay fetcher.
    pub async fn open_raw_stream(
        &self,
        peer: PeerId,
        protocol: libp2p::StreamProtocol,
    ) -> Result<libp2p::Stream, libp2p_stream::OpenStreamError> {
        self.streams.clone().open_stream(peer, protocol).await
    }

    /// Follows the gossip topic named `topic` as anyone could who learnt its name, and hands
    /// over every message on it as it came (never validated, never forwarded): what an
    /// eavesdropper reads. For adversarial tests.
    pub async fn eavesdrop(
        &self,
        topic: String,
    ) -> Result<mpsc::UnboundedReceiver<Vec<u8>>, NodeStopped> {
        let (messages, heard) = mpsc::unbounded_channel();
        self.call(|reply| Command::Eavesdrop {
            topic,
            messages,
            reply,
        })
        .await
        .map_err(|_| NodeStopped)?;
        Ok(heard)
    }

    /// Publishes raw bytes on a room's topic, unchecked: what a modified client could send. For
    /// adversarial tests and debugging tools; honest code uses [`Node::act`].
    pub async fn publish_raw(&self, room: RoomId, bytes: Vec<u8>) -> Result<(), NodeStopped> {
        self.call(|reply| Command::PublishRaw { room, bytes, reply })
            .await
    }

    /// Sends a signed envelope up the room's tree as an action of this node's audience,
    /// whoever signed it: what a relay holding many keys could send. For adversarial tests
    /// and benches.
    #[doc(hidden)]
    pub async fn send_up_raw(&self, room: RoomId, bytes: Vec<u8>) -> Result<(), NodeStopped> {
        self.call(|reply| Command::UpRaw { room, bytes, reply })
            .await
    }

    /// Leaves every room and stops the event loop.
    pub async fn shutdown(&self) {
        let _ = self.call(|reply| Command::Shutdown { reply }).await;
    }
}

/// The last 8 characters of a PeerId: enough to tell peers apart in logs.
pub fn short(peer: &PeerId) -> String {
    let text = peer.to_string();
    text[text.len().saturating_sub(8)..].to_owned()
}
