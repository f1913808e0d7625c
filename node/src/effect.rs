//! What the node's sub-state machines ask the event loop to do.
//!
//! The machines ([`crate::rooms::Rooms`], [`crate::lobby::Lobby`],
//! [`crate::carry::CarryBudget`], [`crate::peers::Peers`]) never touch the swarm: each takes
//! `now` and its inputs and returns [`Effect`]s, which the event loop carries out in order. Unit
//! tests (and simulations) drive the machines directly and read the effects.

use std::time::Instant;

use earshot_protocol::audience::wire::Down;
use earshot_protocol::snapshot::{Announcement, RoomRequest, RoomResponse};
use earshot_protocol::state::RoomChange;
use earshot_protocol::{PeerKey, RoomId, Verified};
use libp2p::swarm::ConnectionId;
use libp2p::{Multiaddr, PeerId};

use crate::event::Event;
use crate::node::pending::Pending;

/// An inbound request on the room protocol, as the event loop numbers them: the machines answer
/// it (at once, or later, as a parked welcome) by this id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct InboundId(pub u64);

/// One thing to do.
#[derive(Debug)]
pub enum Effect {
    /// Tell the front ends.
    Emit(Event),
    /// A room's state changed: the event loop keeps who may speak in step.
    Changed {
        room: RoomId,
        changes: Vec<RoomChange>,
    },
    /// Publish on a room's topic. When no subscribed peer is known yet, the bytes go back to
    /// the room's queue ([`crate::rooms::Rooms::queue`]), keeping `since` (their first try).
    Publish {
        room: RoomId,
        bytes: Vec<u8>,
        since: Instant,
    },
    /// Publish a public room's announcement on the lobby (and keep it in our own lobby).
    Announce(Verified<Announcement>),
    /// Follow a room's topic (a listener stepping up to the stage).
    Subscribe(RoomId),
    /// Stop following a room's topic.
    Unsubscribe(RoomId),
    /// This node is in a room now: take part in its relay tree.
    OpenTree { room: RoomId, host: PeerKey },
    /// This node is no longer in the room: forget its place in the tree, budget share and
    /// access.
    Forget(RoomId),
    /// A private room's keys changed (this node's ring of epochs, the topic secret): the audio
    /// plane seals and opens with them, the topic follows.
    Keyring {
        room: RoomId,
        ring: earshot_protocol::private::Ring,
    },
    /// At the host: keep a private room's key schedule, sealed (`None`: forget it, the room
    /// ended); `durable`: on disk before anything else happens (the epoch stepped), else with
    /// the database's next flush.
    KeepSchedule {
        room: RoomId,
        sealed: Option<Vec<u8>>,
        durable: bool,
    },
    /// Send something down the room's tree to every child (at the host: a view, a relayed
    /// envelope).
    Down { room: RoomId, down: Down },
    /// Send a notice down toward one listener (why its action was refused).
    Notice {
        room: RoomId,
        to: PeerKey,
        text: String,
    },
    /// Send this node's own action up the tree to the host (an audience member); `urgent`
    /// ones (leaving) go at once, ahead of anything queued.
    Up {
        room: RoomId,
        act: Vec<u8>,
        urgent: bool,
    },
    /// Count this node's reaction in its next report up the tree.
    React { room: RoomId, emoji: String },
    /// A listener this node admitted as an entry point: told up the tree in its next report.
    Newcomer {
        room: RoomId,
        newcomer: earshot_protocol::audience::wire::Newcomer,
    },
    /// Send a request on the room protocol; its answer (or failure) goes to `then`.
    Request {
        peer: PeerId,
        addrs: Vec<Multiaddr>,
        request: RoomRequest,
        then: Pending,
    },
    /// Answer an inbound request.
    Respond {
        inbound: InboundId,
        response: RoomResponse,
    },
    /// Connect to a peer (a room member to mesh with).
    Dial { peer: PeerId, addrs: Vec<Multiaddr> },
    /// Connect to an address (a relay candidate, to learn what it serves).
    DialAddr(Multiaddr),
    /// Listen on a relayed address: ask `relay` for a reservation.
    Reserve { relay: PeerId, addr: Multiaddr },
    /// Close a connection (a relayed one made redundant by a direct one).
    CloseConnection(ConnectionId),
    /// Tell the caller of a join that it is in (after the effects before it: its tree is open).
    Joined {
        reply: tokio::sync::oneshot::Sender<Result<crate::node::RoomView, crate::node::JoinError>>,
        view: Box<crate::node::RoomView>,
    },
}
