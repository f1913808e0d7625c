//! Requests this node sent on the room protocol, waiting for their answer: one enum, keyed by
//! libp2p's request id, instead of a map per kind of request.

use earshot_protocol::audience::wire::Newcomer;
use earshot_protocol::snapshot::{Announcement, Placement};
use earshot_protocol::{InviteLink, Verified};
use tokio::sync::oneshot;

use crate::node::{AttachError, CarryError, JoinError, LobbyError, RoomView};

/// What to do with an answer.
#[derive(Debug)]
pub enum Pending {
    /// Our `Join`: the host's welcome, admission (or refusal) completes the join.
    Join(Box<PendingJoin>),
    /// A lobby query.
    Lobby(oneshot::Sender<Result<Vec<Verified<Announcement>>, LobbyError>>),
    /// A scheduled room's announcement handed to a node that serves the lobby.
    Announce(oneshot::Sender<Result<(), LobbyError>>),
    /// Where to get a room's audio from.
    Attach(oneshot::Sender<Result<Placement, AttachError>>),
    /// Asking a community relay to carry a room.
    /// Asked a community relay to carry `room` (it joins as `relay`).
    Carry {
        reply: oneshot::Sender<Result<(), CarryError>>,
        room: Option<earshot_protocol::RoomId>,
        relay: Option<earshot_protocol::PeerKey>,
    },
    /// Asking the host who arrived lately.
    Listeners(oneshot::Sender<Result<Vec<Newcomer>, AttachError>>),
    /// A member of a private room asked the host for the epoch it missed.
    Keys { room: earshot_protocol::RoomId },
    /// A listener's line sent to the host straight (see `rooms::direct`).
    Act { room: earshot_protocol::RoomId },
}

/// A join under way: the link, this node's name in the room, and who waits for the outcome
/// (nobody, for a listener stepping up to the stage: it is in the room already).
#[derive(Debug)]
pub struct PendingJoin {
    pub link: InviteLink,
    pub name: String,
    pub reply: Option<oneshot::Sender<Result<RoomView, JoinError>>>,
    /// The sequence number for this node's next envelope (its `Join` took the one before).
    pub next_seq: u64,
    /// The entry point asked (a community relay the link names), if not the host: if it does
    /// not admit this node, the host is asked with the same `Join`.
    pub entry: Option<libp2p::PeerId>,
    /// The `Join` sent.
    pub envelope: Vec<u8>,
    /// Times a busy host turned it away so far (it is asked again a few times).
    pub busy_tries: u8,
}
