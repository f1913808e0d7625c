//! Why the node's operations fail, one error type each.

use earshot_protocol::snapshot::{Refusal, SnapshotError};
use earshot_protocol::{CapabilityError, RoomId};
use libp2p::{Multiaddr, PeerId};

use crate::net::NetError;
use crate::rooms::ActError;

/// Why a request on the room protocol got no answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestFailure {
    #[error("no answer in time")]
    Timeout,
    #[error("the connection closed")]
    ConnectionClosed,
    #[error("it does not speak the room protocol")]
    UnsupportedProtocols,
    #[error("{0}")]
    Io(String),
}

impl RequestFailure {
    pub(crate) fn of(failure: &libp2p::request_response::OutboundFailure) -> Option<Self> {
        use libp2p::request_response::OutboundFailure;
        match failure {
            OutboundFailure::DialFailure => None,
            OutboundFailure::Timeout => Some(Self::Timeout),
            OutboundFailure::ConnectionClosed => Some(Self::ConnectionClosed),
            OutboundFailure::UnsupportedProtocols => Some(Self::UnsupportedProtocols),
            OutboundFailure::Io(err) => Some(Self::Io(err.to_string())),
        }
    }
}

/// An answer that makes no sense for the request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BadAnswer {
    #[error("expected {expected}, got something else")]
    Unexpected { expected: &'static str },
    #[error(transparent)]
    Snapshot(#[from] SnapshotError),
    #[error("an invalid {what}: {detail}")]
    Invalid { what: &'static str, detail: String },
}

/// Why joining failed.
#[derive(Debug, thiserror::Error)]
pub enum JoinError {
    #[error("invalid invite: {0}")]
    Invite(#[from] CapabilityError),
    #[error("the host refused: {refusal}")]
    Refused { refusal: Refusal },
    #[error("the host is unreachable at the link's addresses")]
    Unreachable,
    #[error("the host did not answer: {0}")]
    NoAnswer(RequestFailure),
    #[error("the host sent an invalid answer: {0}")]
    BadAnswer(BadAnswer),
    #[error("already in room {0}")]
    AlreadyJoined(RoomId),
    #[error("could not follow the room's topic: {0}")]
    Subscribe(libp2p::gossipsub::SubscriptionError),
    #[error(transparent)]
    Act(#[from] ActError),
    #[error("the node has stopped")]
    Stopped,
}

/// Why a lobby query failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum LobbyError {
    #[error("unreachable")]
    Unreachable,
    #[error("no answer: {0}")]
    NoAnswer(RequestFailure),
    #[error("an invalid answer: {0}")]
    BadAnswer(BadAnswer),
    #[error("the node has stopped")]
    Stopped,
    #[error("{0}")]
    Refused(earshot_protocol::snapshot::Refusal),
}

/// Why a node in a room's tree (the host, an ancestor) did not give this node a place, or the
/// host did not say who arrived lately.
#[derive(Debug, Clone, thiserror::Error)]
pub enum AttachError {
    #[error("not in room {0}")]
    NotInRoom(RoomId),
    #[error("it refused: {0}")]
    Refused(Refusal),
    #[error("it is not an earshot peer")]
    NotAnEarshotPeer,
    #[error("it is unreachable")]
    Unreachable,
    #[error("it did not answer: {0}")]
    NoAnswer(RequestFailure),
    #[error("it sent an invalid answer: {0}")]
    BadAnswer(BadAnswer),
    #[error("the node has stopped")]
    Stopped,
}

/// Why a community relay would not carry a room.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CarryError {
    #[error("it refused: {0}")]
    Refused(Refusal),
    #[error("it is unreachable")]
    Unreachable,
    #[error("it did not answer: {0}")]
    NoAnswer(RequestFailure),
    #[error("it sent an invalid answer: {0}")]
    BadAnswer(BadAnswer),
    #[error("the node has stopped")]
    Stopped,
}

/// Why connecting to a peer failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum DialError {
    #[error("could not connect to {peer}: {reason}")]
    Failed { peer: PeerId, reason: String },
    #[error("the node has stopped")]
    Stopped,
}

/// Why hosting failed.
#[derive(Debug, thiserror::Error)]
pub enum HostError {
    #[error("this node is not the host of room {0}")]
    NotHost(RoomId),
    #[error("already in room {0}")]
    AlreadyJoined(RoomId),
    #[error("could not follow the room's topic: {0}")]
    Subscribe(libp2p::gossipsub::SubscriptionError),
    #[error(transparent)]
    Act(#[from] ActError),
    #[error("the node has stopped")]
    Stopped,
}

/// Why the node could not start.
#[derive(Debug, thiserror::Error)]
pub enum SpawnError {
    #[error(transparent)]
    Net(#[from] NetError),
    #[error("cannot listen on {addr}: {reason}")]
    Listen { addr: Multiaddr, reason: String },
    #[error("cannot capture into {path}: {source}")]
    Capture {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
}

/// The event loop has stopped (the node shut down).
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("the node has stopped")]
pub struct NodeStopped;
