//! What the node's sub-state machines ask the event loop to do.
//!
//! The machines ([`crate::rooms::Rooms`], [`crate::lobby::Lobby`], [`crate::placement`],
//! [`crate::carry::CarryBudget`], [`crate::peers::Peers`]) never touch the swarm: each takes
//! `now` and its inputs and returns [`Effect`]s, which the event loop carries out in order. Unit
//! tests (and simulations) drive the machines directly and read the effects.

use std::time::Instant;

use earshot_protocol::RoomId;
use earshot_protocol::Verified;
use earshot_protocol::snapshot::{Announcement, RoomRequest, RoomResponse};
use earshot_protocol::state::RoomChange;
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
    /// A room's state changed: the event loop keeps the tree planner and who may open audio
    /// streams in step.
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
    /// Stop following a room's topic.
    Unsubscribe(RoomId),
    /// This node is no longer in the room: forget its placement, budget share and access.
    Forget(RoomId),
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
}
