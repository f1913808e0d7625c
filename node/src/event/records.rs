//! The records events carry: a member, a node of the tree, a node's audio figures, a relay's,
//! the demo's rows.

use earshot_protocol::state::{Member, RoomRole};
use earshot_protocol::{InviteLink, PeerKey, RoomId};
use libp2p::PeerId;
use serde::{Deserialize, Serialize};
use serde_with::{DisplayFromStr, serde_as};

use super::PeerIdOfKey;

/// A host's request to carry its room: join with `link`.
#[derive(Debug, Clone, PartialEq)]
pub struct CarryRequest {
    pub host: PeerId,
    pub link: InviteLink,
}

/// Why this node left a room.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CloseReason {
    Left,
    Ended,
    Removed,
}

/// A member of a room, as `joined` and `who` list them.
#[serde_as]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberInfo {
    #[serde_as(as = "PeerIdOfKey")]
    pub peer_id: PeerKey,
    pub name: String,
    pub role: RoomRole,
    pub hand_raised: bool,
    pub muted: bool,
}

impl MemberInfo {
    pub fn of(member: &Member) -> Self {
        Self {
            peer_id: member.key,
            name: member.display_name(),
            role: member.role(),
            hand_raised: member.hand.value.is_some(),
            muted: member.muted.value,
        }
    }
}

/// A listener that arrived lately, as `/who listeners` lists them.
#[serde_as]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListenerInfo {
    #[serde_as(as = "PeerIdOfKey")]
    pub peer_id: PeerKey,
    pub name: String,
}

/// One node of the relay tree as `/tree` prints it: `depth` and `parent` are `None` for a
/// member not attached (yet).
#[serde_as]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TreeNode {
    #[serde_as(as = "PeerIdOfKey")]
    pub peer_id: PeerKey,
    pub name: String,
    #[serde_as(as = "Option<PeerIdOfKey>")]
    pub parent: Option<PeerKey>,
    pub depth: Option<u16>,
}

/// A node's audio in a room: its place in the tree, what it relayed, what it played.
#[serde_as]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AudioStats {
    #[serde_as(as = "DisplayFromStr")]
    pub room: RoomId,
    /// Where this node gets the audio from (`None`: the host, or a member re-attaching).
    #[serde_as(as = "Option<DisplayFromStr>")]
    pub parent: Option<PeerId>,
    /// Hops from the host, as the room sees it now.
    pub depth: Option<u16>,
    pub children: usize,
    /// Frames received from the tree (at the host: from speakers).
    pub received: u64,
    pub relayed: u64,
    /// Frame copies slow children skipped.
    pub dropped: u64,
    /// The children this node offers to feed, and what feeding one costs, measured (bytes a
    /// second): see `earshot_protocol::audience::uplink`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capacity: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub child_cost: Option<u64>,
    /// At the host: frames of speakers not among the loudest.
    pub not_selected: u64,
    pub speaking: bool,
    pub self_muted: bool,
    /// Playback: frames the speakers sent since this node first heard each, and those that
    /// arrived (`delivered / expected` is the delivery ratio).
    pub expected: u64,
    pub delivered: u64,
    pub played: u64,
    pub recovered: u64,
    pub concealed: u64,
    pub late: u64,
    pub skipped: u64,
    /// Slots concealed while a frame held up on the way was waited for (it then played).
    #[serde(default)]
    pub stretched: u64,
    pub buffer_ms: f64,
    pub latency_samples: u64,
    pub latency_p50_ms: Option<u64>,
    pub latency_p95_ms: Option<u64>,
    /// The host's advice to the speakers' encoders: the loss (per mille) nine in ten listeners
    /// see at most; FEC and bitrate follow it (`earshot_protocol::audience::quality`).
    #[serde(default)]
    pub audience_loss_permille: u16,
    /// At the host: how long nine in ten listeners' jitter buffers hold frames back (ms), from
    /// the reports that come up the tree.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audience_jitter_ms: Option<u16>,
    /// This node's studio track (`--studio`: its voice for the recording): chunks (a second
    /// each) handed to the recorder so far, and chunks or frames lost on the way (a full queue).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub studio_chunks: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub studio_lost: Option<u64>,
    /// Who on stage was heard in the last fifth of a second, and how loud (this node's own
    /// voice as it went out).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub levels: Vec<SpeakerLevel>,
    /// The last report, as the node leaves the room.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub r#final: bool,
}

/// How loud a member on stage was lately.
#[serde_as]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpeakerLevel {
    #[serde_as(as = "PeerIdOfKey")]
    pub peer_id: PeerKey,
    /// RFC 6464: 0 is the loudest (0 dBov), 127 silence.
    pub level: u8,
}

/// A community relay's figures (`relay_stats`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RelayStats {
    pub peers: i64,
    pub reservations: i64,
    pub circuits: i64,
    /// Listeners fed now, all rooms together.
    pub children: usize,
    /// Frames received and passed on since the start, all rooms together.
    pub frames_forwarded: u64,
    pub upload_kbps: i64,
    pub rooms: Vec<CarriedRoom>,
}

/// One room a community relay carries.
#[serde_as]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CarriedRoom {
    #[serde_as(as = "DisplayFromStr")]
    pub room: RoomId,
    #[serde_as(as = "Option<DisplayFromStr>")]
    pub parent: Option<PeerId>,
    pub depth: Option<u16>,
    pub children: usize,
    pub received: u64,
}

/// One row of the demo's table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DemoNode {
    pub name: String,
    pub relay: bool,
    pub peer_id: String,
    pub parent: Option<String>,
    pub depth: Option<u64>,
    pub children: u64,
    pub expected: u64,
    pub delivered: u64,
    pub buffer_ms: f64,
    pub latency_p50_ms: Option<u64>,
    pub latency_p95_ms: Option<u64>,
    pub repairs: u64,
}

/// The demo's figures for one depth of the tree.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DemoDepth {
    pub depth: u64,
    pub listeners: usize,
    pub delivered: u64,
    pub expected: u64,
    pub latency_p50_ms: Option<u64>,
    pub latency_p95_ms: Option<u64>,
}

/// A replay a node serves (`serving`).
#[serde_as]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServedReplay {
    #[serde_as(as = "DisplayFromStr")]
    pub manifest: earshot_protocol::replay::ManifestId,
    #[serde_as(as = "DisplayFromStr")]
    pub recording: earshot_protocol::RecordingId,
    pub title: String,
    pub chunks: usize,
    pub held: usize,
    #[serde_as(as = "DisplayFromStr")]
    pub link: earshot_protocol::replay::ReplayLink,
}
