//! What a node tells its front ends: one typed event, in one place.
//!
//! [`Event`] is what [`crate::Node::subscribe`] delivers, what `earshot --json` prints (one
//! object per line, tagged by `"event"`, snake_case), what `earshot demo` reads back from the
//! nodes it runs, and what the tests deserialize. The CLI also renders each event as a line of
//! text for people. Peers are printed as libp2p PeerIds, rooms and recordings as their base32
//! ids, times as RFC 3339.
//!
//! Events about a room carry `room`. A front end follows its room by filtering on it.

use earshot_protocol::replay::{ManifestId, ReplayLink};
use earshot_protocol::state::{LeaveReason, RoomRole};
use earshot_protocol::{InviteLink, PeerKey, RecordingId, Role, RoomId, Timestamp};
use libp2p::{Multiaddr, PeerId};
use serde::{Deserialize, Serialize};
use serde_with::{DisplayFromStr, serde_as};

use crate::reachability::Reachability;

/// Something that happened, for user interfaces, scripts and tests.
#[serde_as]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    // ---- The node and the network.
    /// The node listens on a new address.
    Listening {
        #[serde_as(as = "DisplayFromStr")]
        addr: Multiaddr,
    },
    /// AutoNAT's verdict (or the configured one) on whether peers can dial this node.
    Reachability { status: Reachability },
    /// This node can now be reached through a community relay at `addr`.
    ReachableViaRelay {
        #[serde_as(as = "DisplayFromStr")]
        addr: Multiaddr,
    },
    /// A relayed connection to `peer` was upgraded to a direct one (DCUtR hole punching).
    DirectConnection {
        #[serde_as(as = "DisplayFromStr")]
        peer: PeerId,
    },
    /// A public room was announced on the lobby (or re-announced).
    Announced {
        #[serde_as(as = "DisplayFromStr")]
        room: RoomId,
    },
    /// Something this node was sent was refused: a control message relayed by `from` (and its
    /// sender penalised), or, without `from`, this node's own join.
    Rejected {
        #[serde_as(as = "Option<DisplayFromStr>")]
        room: Option<RoomId>,
        #[serde_as(as = "Option<DisplayFromStr>")]
        #[serde(default)]
        from: Option<PeerId>,
        reason: String,
    },
    /// `peer` was disconnected and is kept out for a while: it misbehaved on its streams (see
    /// `net::conduct`).
    PeerBlocked {
        #[serde_as(as = "DisplayFromStr")]
        peer: PeerId,
        reason: String,
    },
    /// Something for the person at the front end to know (say, no sound card: using a file).
    Note { message: String },
    /// Something went wrong that does not end the room.
    Error {
        #[serde_as(as = "Option<DisplayFromStr>")]
        #[serde(default, skip_serializing_if = "Option::is_none")]
        room: Option<RoomId>,
        message: String,
    },

    // ---- This node in a room.
    /// This node hosts a room; `listener_link` lets people in.
    Hosting {
        #[serde_as(as = "DisplayFromStr")]
        room: RoomId,
        title: String,
        #[serde_as(as = "DisplayFromStr")]
        peer_id: PeerId,
        #[serde_as(as = "Vec<DisplayFromStr>")]
        addrs: Vec<Multiaddr>,
        reachability: Option<Reachability>,
        #[serde_as(as = "DisplayFromStr")]
        listener_link: InviteLink,
    },
    /// This node joined a room.
    Joined {
        #[serde_as(as = "DisplayFromStr")]
        room: RoomId,
        title: String,
        role: RoomRole,
        #[serde_as(as = "DisplayFromStr")]
        peer_id: PeerId,
        members: Vec<MemberInfo>,
        /// Whether the room is being recorded right now.
        #[serde(default)]
        recording: bool,
        /// When the room begins, if it was scheduled (the host's signed descriptor says).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[serde_as(as = "Option<DisplayFromStr>")]
        starts_at: Option<earshot_protocol::Timestamp>,
        /// Where the host takes support (its signed descriptor's payment address or URL).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        support: Option<String>,
    },
    /// The host of a room that begins later is not there yet: this node keeps trying until a
    /// quarter of an hour past the start (the time from the invite link).
    WaitingForHost {
        #[serde_as(as = "DisplayFromStr")]
        room: RoomId,
        #[serde_as(as = "DisplayFromStr")]
        starts_at: earshot_protocol::Timestamp,
    },
    /// This node is no longer in the room: the last event of a room.
    Closed {
        #[serde_as(as = "DisplayFromStr")]
        room: RoomId,
        reason: CloseReason,
    },
    /// A community relay agreed to carry the room's audio.
    RelayAdded {
        #[serde_as(as = "DisplayFromStr")]
        room: RoomId,
        #[serde_as(as = "DisplayFromStr")]
        relay: PeerId,
    },
    /// A new invite link (the host's `/invite`, or a fresh listener link once the host is
    /// reachable through a relay).
    Invite {
        role: Role,
        #[serde_as(as = "DisplayFromStr")]
        expires_at: Timestamp,
        #[serde_as(as = "DisplayFromStr")]
        link: InviteLink,
    },
    /// This node's microphone was turned off or on.
    SelfMuted { muted: bool },
    /// This node records the room (the host: the room's recording; a member: its own).
    Recording {
        #[serde_as(as = "DisplayFromStr")]
        room: RoomId,
        #[serde_as(as = "DisplayFromStr")]
        recording: RecordingId,
    },
    /// A recording finished and is saved.
    RecordingSaved {
        #[serde_as(as = "DisplayFromStr")]
        room: RoomId,
        #[serde_as(as = "DisplayFromStr")]
        recording: RecordingId,
        /// `complete`, `interrupted` or `failed`.
        state: String,
        seconds: f64,
        frames: u64,
        dropped: u64,
    },
    /// The host published its recording as a replay.
    ReplayPublished {
        #[serde_as(as = "DisplayFromStr")]
        room: RoomId,
        #[serde_as(as = "DisplayFromStr")]
        recording: RecordingId,
        #[serde_as(as = "DisplayFromStr")]
        manifest: ManifestId,
    },
    /// Who is in the room (`/who`).
    Who {
        #[serde_as(as = "DisplayFromStr")]
        room: RoomId,
        recording: bool,
        members: Vec<MemberInfo>,
        /// Raised hands, in the order they were raised (the audience's among them).
        #[serde_as(as = "Vec<PeerIdOfKey>")]
        hands: Vec<PeerKey>,
        /// Listeners in the audience, as the host's latest view counts them.
        listeners: u32,
    },
    /// Listeners that arrived lately, newest first (`/who listeners [PAGE]`).
    Listeners {
        #[serde_as(as = "DisplayFromStr")]
        room: RoomId,
        page: u32,
        listeners: Vec<ListenerInfo>,
    },
    /// This node's place in the relay tree (`/tree`): the path from the host down to it, then
    /// the children it feeds.
    Tree {
        #[serde_as(as = "DisplayFromStr")]
        room: RoomId,
        nodes: Vec<TreeNode>,
        /// Nodes in this node's subtree, itself included.
        subtree: u32,
    },

    // ---- What happened in a room (from the room's signed messages).
    MemberJoined {
        #[serde_as(as = "DisplayFromStr")]
        room: RoomId,
        #[serde_as(as = "PeerIdOfKey")]
        member: PeerKey,
        name: String,
        role: RoomRole,
    },
    MemberLeft {
        #[serde_as(as = "DisplayFromStr")]
        room: RoomId,
        #[serde_as(as = "PeerIdOfKey")]
        member: PeerKey,
        name: String,
        reason: LeaveReason,
    },
    RoleChanged {
        #[serde_as(as = "DisplayFromStr")]
        room: RoomId,
        #[serde_as(as = "PeerIdOfKey")]
        member: PeerKey,
        name: String,
        role: RoomRole,
        #[serde_as(as = "PeerIdOfKey")]
        by: PeerKey,
        by_name: String,
    },
    /// At the host: a listener accused its parent of failing its checks (forged, replayed or
    /// withheld audio). `excluded`: that made the quorum, and the parent is out of the relay
    /// tree (no children) for a while; `accusers` counts who accuse it now.
    RelayAccused {
        #[serde_as(as = "DisplayFromStr")]
        room: RoomId,
        #[serde_as(as = "PeerIdOfKey")]
        relay: PeerKey,
        #[serde_as(as = "PeerIdOfKey")]
        by: PeerKey,
        reason: String,
        accusers: usize,
        excluded: bool,
    },
    HandRaised {
        #[serde_as(as = "DisplayFromStr")]
        room: RoomId,
        #[serde_as(as = "PeerIdOfKey")]
        member: PeerKey,
        name: String,
    },
    HandLowered {
        #[serde_as(as = "DisplayFromStr")]
        room: RoomId,
        #[serde_as(as = "PeerIdOfKey")]
        member: PeerKey,
        name: String,
    },
    Muted {
        #[serde_as(as = "DisplayFromStr")]
        room: RoomId,
        #[serde_as(as = "PeerIdOfKey")]
        member: PeerKey,
        name: String,
        #[serde_as(as = "PeerIdOfKey")]
        by: PeerKey,
        by_name: String,
    },
    Unmuted {
        #[serde_as(as = "DisplayFromStr")]
        room: RoomId,
        #[serde_as(as = "PeerIdOfKey")]
        member: PeerKey,
        name: String,
        #[serde_as(as = "PeerIdOfKey")]
        by: PeerKey,
        by_name: String,
    },
    Removed {
        #[serde_as(as = "DisplayFromStr")]
        room: RoomId,
        #[serde_as(as = "PeerIdOfKey")]
        member: PeerKey,
        name: String,
        #[serde_as(as = "PeerIdOfKey")]
        by: PeerKey,
        by_name: String,
    },
    Chat {
        #[serde_as(as = "DisplayFromStr")]
        room: RoomId,
        #[serde_as(as = "PeerIdOfKey")]
        from: PeerKey,
        name: String,
        text: String,
        #[serde_as(as = "DisplayFromStr")]
        at: Timestamp,
    },
    /// `from` supports the host: `amount` `unit` (its word; Earshot moves no money), a note.
    /// `id` names it (hex) for the host's receipt.
    Support {
        #[serde_as(as = "DisplayFromStr")]
        room: RoomId,
        #[serde_as(as = "PeerIdOfKey")]
        from: PeerKey,
        name: String,
        amount: u64,
        unit: String,
        note: String,
        /// The message's digest, in hex.
        id: String,
        /// The signed message (not printed: a recording keeps it).
        #[serde(skip)]
        envelope: Vec<u8>,
    },
    /// The host confirms it received `supporter`'s support `id` (a signed receipt).
    SupportConfirmed {
        #[serde_as(as = "DisplayFromStr")]
        room: RoomId,
        #[serde_as(as = "PeerIdOfKey")]
        supporter: PeerKey,
        name: String,
        id: String,
        #[serde(skip)]
        envelope: Vec<u8>,
    },
    Reaction {
        #[serde_as(as = "DisplayFromStr")]
        room: RoomId,
        #[serde_as(as = "PeerIdOfKey")]
        from: PeerKey,
        name: String,
        emoji: String,
    },
    /// The audience's size and raised hands changed (from the host's view of the room).
    Audience {
        #[serde_as(as = "DisplayFromStr")]
        room: RoomId,
        /// Listeners in the relay tree, the stage not counted.
        listeners: u32,
        /// Raised hands, the audience's and the stage's fold's.
        hands: u32,
    },
    /// The room's reactions since the host's previous view, totalled up the tree: each
    /// emoji and how many sent it.
    Reactions {
        #[serde_as(as = "DisplayFromStr")]
        room: RoomId,
        reactions: Vec<(String, u32)>,
    },
    /// The host says something to this node alone (why its action was not taken).
    Notice {
        #[serde_as(as = "DisplayFromStr")]
        room: RoomId,
        text: String,
    },
    RecordingStarted {
        #[serde_as(as = "DisplayFromStr")]
        room: RoomId,
        #[serde_as(as = "PeerIdOfKey")]
        by: PeerKey,
        by_name: String,
    },
    RecordingStopped {
        #[serde_as(as = "DisplayFromStr")]
        room: RoomId,
        #[serde_as(as = "PeerIdOfKey")]
        by: PeerKey,
        by_name: String,
    },
    RoomEnded {
        #[serde_as(as = "DisplayFromStr")]
        room: RoomId,
        #[serde_as(as = "PeerIdOfKey")]
        by: PeerKey,
        by_name: String,
    },
    /// A member moved in the relay tree (as it says itself).
    TreeMoved {
        #[serde_as(as = "DisplayFromStr")]
        room: RoomId,
        #[serde_as(as = "PeerIdOfKey")]
        member: PeerKey,
        name: String,
        #[serde_as(as = "PeerIdOfKey")]
        parent: PeerKey,
        depth: u16,
    },
    /// A replay of a recording of this room can be fetched with `link`.
    ReplayAvailable {
        #[serde_as(as = "DisplayFromStr")]
        room: RoomId,
        #[serde_as(as = "PeerIdOfKey")]
        by: PeerKey,
        name: String,
        #[serde_as(as = "DisplayFromStr")]
        manifest: ManifestId,
        #[serde_as(as = "DisplayFromStr")]
        recording: RecordingId,
        #[serde_as(as = "PeerIdOfKey")]
        recorder: PeerKey,
        title: String,
        bytes: u64,
        #[serde_as(as = "DisplayFromStr")]
        link: ReplayLink,
    },
    /// `member` agreed to speak in the recording that started at `since` (a signed
    /// acknowledgement, kept with the recording).
    RecordingConsent {
        #[serde_as(as = "DisplayFromStr")]
        room: RoomId,
        #[serde_as(as = "PeerIdOfKey")]
        member: PeerKey,
        name: String,
        since: earshot_protocol::Timestamp,
    },
    /// This node is on stage in a recorded room and has not agreed to speak in the recording:
    /// its microphone stays off until it does (`Room::consent_to_recording`) or leaves the
    /// stage.
    ConsentAsked {
        #[serde_as(as = "DisplayFromStr")]
        room: RoomId,
    },
    MemberRecordingStarted {
        #[serde_as(as = "DisplayFromStr")]
        room: RoomId,
        #[serde_as(as = "PeerIdOfKey")]
        member: PeerKey,
        name: String,
    },
    MemberRecordingStopped {
        #[serde_as(as = "DisplayFromStr")]
        room: RoomId,
        #[serde_as(as = "PeerIdOfKey")]
        member: PeerKey,
        name: String,
    },

    // ---- This node's audio in a room.
    /// Receiving the room's audio from `parent`, `depth` hops below the host; `repair_ms` is how
    /// long the move took after losing the previous parent (none for the first attach).
    AudioAttached {
        #[serde_as(as = "DisplayFromStr")]
        room: RoomId,
        #[serde_as(as = "DisplayFromStr")]
        parent: PeerId,
        depth: u16,
        repair_ms: Option<f64>,
    },
    /// The parent went away (`leaving`: it said so); this node is re-attaching.
    AudioLost {
        #[serde_as(as = "DisplayFromStr")]
        room: RoomId,
        #[serde_as(as = "DisplayFromStr")]
        parent: PeerId,
        leaving: bool,
        reason: String,
    },
    /// This node's audio now (every second while in a room, and once more, `final`, as it
    /// leaves).
    AudioStats(Box<AudioStats>),

    // ---- Recordings and replays (`earshot recordings …`).
    /// A recording was exported to `file`.
    Exported {
        #[serde_as(as = "DisplayFromStr")]
        recording: RecordingId,
        file: String,
        seconds: f64,
        bytes: u64,
        /// Ogg Opus: 20 ms packets written as their speaker said them (where one speaker was
        /// heard alone); the rest were encoded anew.
        #[serde(default)]
        kept_packets: u64,
        /// 20 ms frames taken from the speakers' studio tracks (their voices recorded before
        /// the network) in place of what the room heard.
        #[serde(default)]
        studio_frames: u64,
    },
    /// A recording was deleted.
    Deleted {
        #[serde_as(as = "DisplayFromStr")]
        recording: RecordingId,
    },
    /// A recording was published as a replay: `link` fetches it.
    Published {
        #[serde_as(as = "DisplayFromStr")]
        recording: RecordingId,
        #[serde_as(as = "DisplayFromStr")]
        manifest: ManifestId,
        #[serde_as(as = "DisplayFromStr")]
        link: ReplayLink,
        chunks: usize,
        bytes: u64,
        #[serde_as(as = "Vec<DisplayFromStr>")]
        addrs: Vec<Multiaddr>,
    },
    /// This node serves the replays it keeps.
    Serving {
        #[serde_as(as = "DisplayFromStr")]
        peer_id: PeerId,
        #[serde_as(as = "Vec<DisplayFromStr>")]
        addrs: Vec<Multiaddr>,
        replays: Vec<ServedReplay>,
    },
    /// A fetch: a holder could not be reached or stopped answering; it is not asked again.
    HolderFailed {
        #[serde_as(as = "DisplayFromStr")]
        peer: PeerId,
        reason: String,
    },
    /// A fetch has the manifest (`from`: none when it was kept here already; `held`: chunks here
    /// already, a resumed fetch).
    Manifest {
        #[serde_as(as = "Option<DisplayFromStr>")]
        from: Option<PeerId>,
        title: String,
        chunks: usize,
        bytes: u64,
        held: usize,
    },
    /// A fetch: a holder sent something that is not a valid manifest.
    BadManifest {
        #[serde_as(as = "DisplayFromStr")]
        from: PeerId,
        reason: String,
    },
    /// A fetch: a chunk arrived, matched its hash and was stored.
    Chunk {
        index: u32,
        #[serde_as(as = "DisplayFromStr")]
        from: PeerId,
        done: usize,
        total: usize,
    },
    /// A fetch: a holder sent a chunk that does not match the manifest; it is fetched from
    /// another holder.
    BadChunk {
        index: u32,
        #[serde_as(as = "DisplayFromStr")]
        from: PeerId,
        reason: String,
    },
    /// A fetch is complete: the replay is among this node's recordings.
    Fetched {
        #[serde_as(as = "DisplayFromStr")]
        manifest: ManifestId,
        #[serde_as(as = "DisplayFromStr")]
        recording: RecordingId,
        title: String,
        chunks: usize,
        fetched: usize,
        resumed: usize,
        bad_chunks: usize,
        bytes: u64,
        seconds: f64,
        mb_per_s: f64,
    },

    // ---- A community relay.
    /// A community relay is running.
    Relay {
        #[serde_as(as = "DisplayFromStr")]
        peer_id: PeerId,
        #[serde_as(as = "Vec<DisplayFromStr>")]
        addrs: Vec<Multiaddr>,
        /// Where its Prometheus metrics are served.
        metrics: Option<String>,
    },
    /// What a community relay does, once a second.
    RelayStats(Box<RelayStats>),
    /// A community relay carries a room for its host.
    Carrying {
        #[serde_as(as = "DisplayFromStr")]
        room: RoomId,
        title: String,
        #[serde_as(as = "DisplayFromStr")]
        host: PeerId,
    },
    /// A community relay stopped (after handing its listeners over).
    Stopped,
    /// A host asks this node (a community relay) to carry its room (for the carrying service
    /// inside the node; never printed).
    #[serde(skip)]
    CarryRequested(Box<CarryRequest>),

    // ---- `earshot demo`.
    /// The demo's table, once a second.
    DemoStatus { nodes: Vec<DemoNode> },
    /// The demo's end: every node, and delivery and latency per depth.
    DemoSummary {
        dir: String,
        nodes: Vec<DemoNode>,
        depths: Vec<DemoDepth>,
    },
}

impl Event {
    /// The room the event is about, if it is about one.
    pub fn room(&self) -> Option<RoomId> {
        match self {
            Event::Announced { room }
            | Event::Hosting { room, .. }
            | Event::Joined { room, .. }
            | Event::WaitingForHost { room, .. }
            | Event::Closed { room, .. }
            | Event::RelayAdded { room, .. }
            | Event::Recording { room, .. }
            | Event::RecordingSaved { room, .. }
            | Event::ReplayPublished { room, .. }
            | Event::Who { room, .. }
            | Event::Tree { room, .. }
            | Event::Listeners { room, .. }
            | Event::MemberJoined { room, .. }
            | Event::MemberLeft { room, .. }
            | Event::RoleChanged { room, .. }
            | Event::HandRaised { room, .. }
            | Event::RelayAccused { room, .. }
            | Event::HandLowered { room, .. }
            | Event::Muted { room, .. }
            | Event::Unmuted { room, .. }
            | Event::Removed { room, .. }
            | Event::Chat { room, .. }
            | Event::Support { room, .. }
            | Event::SupportConfirmed { room, .. }
            | Event::Reaction { room, .. }
            | Event::Audience { room, .. }
            | Event::Reactions { room, .. }
            | Event::Notice { room, .. }
            | Event::RecordingStarted { room, .. }
            | Event::RecordingStopped { room, .. }
            | Event::RoomEnded { room, .. }
            | Event::TreeMoved { room, .. }
            | Event::ReplayAvailable { room, .. }
            | Event::MemberRecordingStarted { room, .. }
            | Event::RecordingConsent { room, .. }
            | Event::ConsentAsked { room }
            | Event::MemberRecordingStopped { room, .. }
            | Event::AudioAttached { room, .. }
            | Event::AudioLost { room, .. }
            | Event::Carrying { room, .. } => Some(*room),
            Event::AudioStats(stats) => Some(stats.room),
            Event::Rejected { room, .. } | Event::Error { room, .. } => *room,
            Event::Listening { .. }
            | Event::Reachability { .. }
            | Event::ReachableViaRelay { .. }
            | Event::DirectConnection { .. }
            | Event::Note { .. }
            | Event::PeerBlocked { .. }
            | Event::Invite { .. }
            | Event::SelfMuted { .. }
            | Event::Relay { .. }
            | Event::RelayStats(_)
            | Event::Stopped
            | Event::CarryRequested(_)
            | Event::DemoStatus { .. }
            | Event::DemoSummary { .. }
            | Event::Exported { .. }
            | Event::Deleted { .. }
            | Event::Published { .. }
            | Event::Serving { .. }
            | Event::HolderFailed { .. }
            | Event::Manifest { .. }
            | Event::BadManifest { .. }
            | Event::Chunk { .. }
            | Event::BadChunk { .. }
            | Event::Fetched { .. } => None,
        }
    }
}

serde_with::serde_conv!(
    /// A [`PeerKey`] as the libp2p PeerId it is (`12D3KooW…`), the way peers are printed.
    PeerIdOfKey,
    PeerKey,
    |key: &PeerKey| key.as_peer_id().to_string(),
    |text: String| -> Result<PeerKey, String> {
        let peer: PeerId = text.parse().map_err(|err| format!("{text:?}: {err}"))?;
        PeerKey::from_peer_id(&peer).map_err(|err| format!("{text:?}: {err}"))
    }
);

mod of;
pub use of::hex;
mod records;

pub use records::{
    AudioStats, CarriedRoom, CarryRequest, CloseReason, DemoDepth, DemoNode, ListenerInfo,
    MemberInfo, RelayStats, ServedReplay, SpeakerLevel, TreeNode,
};

#[cfg(test)]
mod tests;
