//! What changed in a room, for front ends, and where a member says it is in the tree.

use serde::{Deserialize, Serialize};

use super::RoomRole;
use crate::id::{PeerKey, RecordingId, Timestamp};
use crate::replay::ManifestId;

/// Why someone left.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LeaveReason {
    Left,
    TimedOut,
    Removed,
}

/// What an accepted envelope (or a tick) changed, for the user interface.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub enum RoomChange {
    MemberJoined {
        member: PeerKey,
        name: String,
        role: RoomRole,
    },
    MemberLeft {
        member: PeerKey,
        reason: LeaveReason,
    },
    RoleChanged {
        member: PeerKey,
        role: RoomRole,
        by: PeerKey,
    },
    HandRaised {
        member: PeerKey,
    },
    HandLowered {
        member: PeerKey,
    },
    Muted {
        member: PeerKey,
        by: PeerKey,
    },
    Unmuted {
        member: PeerKey,
        by: PeerKey,
    },
    Removed {
        member: PeerKey,
        by: PeerKey,
    },
    Chat {
        from: PeerKey,
        text: String,
        at: Timestamp,
    },
    /// A member supports the host (`id`: its envelope's digest; `envelope`: the signed
    /// message, for the recording to keep).
    Support {
        from: PeerKey,
        amount: u64,
        unit: String,
        note: String,
        id: [u8; 32],
        envelope: Vec<u8>,
    },
    /// The host confirms it received `supporter`'s support `id`.
    SupportConfirmed {
        supporter: PeerKey,
        id: [u8; 32],
        envelope: Vec<u8>,
    },
    Reaction {
        from: PeerKey,
        emoji: String,
    },
    RecordingStarted {
        by: PeerKey,
    },
    RecordingStopped {
        by: PeerKey,
    },
    RoomEnded {
        by: PeerKey,
    },
    /// A member moved in the relay tree (attached, or re-attached after losing its parent).
    TreeMoved {
        member: PeerKey,
        position: TreePosition,
    },
    /// A replay of a recording can be fetched (see [`ControlBody::ReplayAvailable`]).
    ReplayAvailable {
        by: PeerKey,
        manifest: ManifestId,
        recording: RecordingId,
        recorder: PeerKey,
        title: String,
        bytes: u64,
        addrs: Vec<serde_bytes::ByteBuf>,
        /// A private room's replay: its key.
        key: Option<serde_bytes::ByteBuf>,
    },
    /// A member started or stopped recording what it hears, for itself.
    MemberRecording {
        member: PeerKey,
        on: bool,
    },
    /// `member` agreed to speak in the recording that started at `since`.
    RecordingConsent {
        member: PeerKey,
        since: Timestamp,
    },
}

/// A member's place in the room's relay tree.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct TreePosition {
    pub parent: PeerKey,
    /// Hops from the host (1: fed by the host).
    pub depth: u16,
}
