//! Host-signed room snapshots for late joiners, the join handshake, and lobby announcements.
//!
//! A joiner sends the host a [`RoomRequest::Join`] carrying its signed `Join` envelope. The host
//! folds it into the room like any other envelope: if the room refuses it (revoked link, removed
//! member, expired capability …) the joiner hears why at once; if not, the host publishes the
//! envelope on the room's topic for everyone and answers with a [`RoomSnapshot`] it signs. The
//! joiner adopts the snapshot's state and follows the topic from there; since the state is made of
//! last-writer-wins registers and grow-only sets, messages that cross the snapshot in flight fold
//! in without harm.

use ed25519_dalek::SigningKey;
use serde::{Deserialize, Serialize};

use crate::Verified;
use crate::capability::Capability;
use crate::codec::{self, DecodeError};
use crate::id::{PeerKey, RoomId, Sig, Timestamp};
use crate::link::InviteLink;
use crate::room::{DescriptorError, RoomDescriptor};
use crate::state::RoomState;

/// Largest encoded snapshot accepted (a room of a few thousand members).
pub const MAX_SNAPSHOT_BYTES: usize = 4 << 20;
/// Largest request or response on the room protocol other than a snapshot.
pub const MAX_RPC_BYTES: usize = MAX_SNAPSHOT_BYTES + 1024;
/// Largest request on the room protocol (a join's envelope, or an attach's ticket): what a node
/// reads of a request before refusing it, so that a stranger's request costs it a few KB, not
/// [`MAX_RPC_BYTES`].
pub const MAX_REQUEST_BYTES: usize = const_max(
    const_max(
        crate::envelope::MAX_ENVELOPE_BYTES,
        crate::audience::ticket::MAX_TICKET_BYTES,
    ),
    MAX_ANNOUNCEMENT_BYTES,
) + 64;
/// Largest encoded lobby announcement.
pub const MAX_ANNOUNCEMENT_BYTES: usize = 8 * 1024;

const fn const_max(a: usize, b: usize) -> usize {
    if a > b { a } else { b }
}
/// Most peers a snapshot suggests dialling.
pub const MAX_PEER_HINTS: usize = 8;
/// Most speakers an announcement lists.
pub const MAX_ANNOUNCED_SPEAKERS: usize = 10;
/// An announcement not refreshed within this is stale.
pub const ANNOUNCEMENT_TTL_MS: u64 = 20_000;
/// How often a public room's host re-announces it.
pub const ANNOUNCE_INTERVAL_MS: u64 = 5_000;
/// A scheduled room's announcement may stay valid until this long after its start (late
/// arrivals still find it while the host's own announcements take over).
pub const UPCOMING_GRACE_MS: u64 = 15 * 60 * 1000;
/// How far ahead a room may be announced.
pub const MAX_SCHEDULE_AHEAD_MS: u64 = 30 * 24 * 60 * 60 * 1000;

const SNAPSHOT_DOMAIN: &[u8] = b"earshot/room-snapshot/v1\0";
const ANNOUNCEMENT_DOMAIN: &[u8] = b"earshot/lobby-announcement/v1\0";

/// A member a joiner may dial, so that the room's gossip mesh is not a star around the host.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct PeerHint {
    pub key: PeerKey,
    pub addrs: Vec<serde_bytes::ByteBuf>,
}

/// The room as the host sees it, signed by the host.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct RoomSnapshot {
    pub descriptor: RoomDescriptor,
    pub state: RoomState,
    pub peers: Vec<PeerHint>,
    pub taken_at: Timestamp,
    pub signature: Sig,
}

/// Why a snapshot or announcement was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SnapshotError {
    #[error("malformed: {0}")]
    Malformed(#[from] DecodeError),
    #[error(transparent)]
    Descriptor(#[from] DescriptorError),
    #[error("the snapshot is for another room or host than its descriptor")]
    Mismatch,
    #[error("bad signature")]
    BadSignature,
    #[error("the announcement expired at {expires_at}")]
    Expired { expires_at: Timestamp },
}

#[derive(Serialize)]
struct UnsignedSnapshot<'a> {
    descriptor: &'a RoomDescriptor,
    state: &'a RoomState,
    peers: &'a [PeerHint],
    taken_at: Timestamp,
}

impl RoomSnapshot {
    /// Signs a snapshot of `state` (the host's key must be the descriptor's host).
    pub fn sign(
        host: &SigningKey,
        descriptor: RoomDescriptor,
        state: RoomState,
        peers: Vec<PeerHint>,
        taken_at: Timestamp,
    ) -> Self {
        let mut snapshot = Self {
            descriptor,
            state,
            peers,
            taken_at,
            signature: Sig([0; 64]),
        };
        snapshot.peers.truncate(MAX_PEER_HINTS);
        snapshot.signature = Sig::sign(host, SNAPSHOT_DOMAIN, &snapshot.signed_bytes());
        snapshot
    }

    fn signed_bytes(&self) -> Vec<u8> {
        codec::encode(&UnsignedSnapshot {
            descriptor: &self.descriptor,
            state: &self.state,
            peers: &self.peers,
            taken_at: self.taken_at,
        })
    }

    pub fn encode(&self) -> Vec<u8> {
        codec::encode(self)
    }

    /// Reads a snapshot and checks that the expected host signed it for the expected room.
    pub fn decode_verified(
        bytes: &[u8],
        room: RoomId,
        host: PeerKey,
    ) -> Result<Verified<Self>, SnapshotError> {
        let snapshot: Self = codec::decode(bytes, MAX_SNAPSHOT_BYTES)?;
        let descriptor = snapshot.descriptor.clone().verify()?;
        if descriptor.id != room
            || descriptor.host != host
            || snapshot.state.room != room
            || snapshot.state.host != host
            || snapshot.peers.len() > MAX_PEER_HINTS
        {
            return Err(SnapshotError::Mismatch);
        }
        if !snapshot
            .signature
            .verify(&host, SNAPSHOT_DOMAIN, &snapshot.signed_bytes())
        {
            return Err(SnapshotError::BadSignature);
        }
        Ok(Verified::new(snapshot))
    }
}

/// A public room's entry on the lobby, signed by its host.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct Announcement {
    pub descriptor: RoomDescriptor,
    /// Display names of who is on stage (host first).
    pub speakers: Vec<String>,
    pub listeners: u32,
    /// A bearer listener capability, so anyone who sees the announcement can join.
    pub listener_capability: Capability,
    pub expires_at: Timestamp,
    /// Replays of the room's recordings that can be fetched (at most
    /// [`MAX_ANNOUNCED_REPLAYS`], newest last).
    pub replays: Vec<AnnouncedReplay>,
    pub signature: Sig,
}

/// Most replays one announcement lists.
pub const MAX_ANNOUNCED_REPLAYS: usize = 4;

/// A replay on the lobby: enough to fetch it (the manifest it names is signed by `recorder`).
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct AnnouncedReplay {
    pub manifest: crate::replay::ManifestId,
    pub recorder: PeerKey,
    pub title: String,
    pub bytes: u64,
    pub addrs: Vec<serde_bytes::ByteBuf>,
}

impl AnnouncedReplay {
    /// The link to fetch it with.
    pub fn link(&self) -> crate::replay::ReplayLink {
        crate::replay::ReplayLink {
            manifest: self.manifest,
            recorder: self.recorder,
            addrs: crate::replay::parse_addrs(&self.addrs).unwrap_or_default(),
            key: None,
        }
    }
}

#[derive(Serialize)]
struct UnsignedAnnouncement<'a> {
    descriptor: &'a RoomDescriptor,
    speakers: &'a [String],
    listeners: u32,
    listener_capability: &'a Capability,
    expires_at: Timestamp,
    replays: &'a [AnnouncedReplay],
}

impl Announcement {
    pub fn sign(
        host: &SigningKey,
        descriptor: RoomDescriptor,
        mut speakers: Vec<String>,
        listeners: u32,
        listener_capability: Capability,
        expires_at: Timestamp,
        mut replays: Vec<AnnouncedReplay>,
    ) -> Self {
        speakers.truncate(MAX_ANNOUNCED_SPEAKERS);
        let excess = replays.len().saturating_sub(MAX_ANNOUNCED_REPLAYS);
        replays.drain(..excess);
        for replay in &mut replays {
            truncate_utf8(&mut replay.title, crate::room::MAX_TITLE_BYTES);
            replay.addrs.truncate(crate::replay::MAX_REPLAY_ADDRS);
        }
        for name in &mut speakers {
            truncate_utf8(name, crate::control::MAX_NAME_BYTES);
        }
        let mut announcement = Self {
            descriptor,
            speakers,
            listeners,
            listener_capability,
            expires_at,
            replays,
            signature: Sig([0; 64]),
        };
        announcement.signature = Sig::sign(host, ANNOUNCEMENT_DOMAIN, &announcement.signed_bytes());
        announcement
    }

    fn signed_bytes(&self) -> Vec<u8> {
        codec::encode(&UnsignedAnnouncement {
            descriptor: &self.descriptor,
            speakers: &self.speakers,
            listeners: self.listeners,
            listener_capability: &self.listener_capability,
            expires_at: self.expires_at,
            replays: &self.replays,
        })
    }

    pub fn encode(&self) -> Vec<u8> {
        codec::encode(self)
    }

    /// Reads an announcement, checks the host's signatures and that it is live at `now`.
    pub fn decode_verified(bytes: &[u8], now: Timestamp) -> Result<Verified<Self>, SnapshotError> {
        let announcement: Self = codec::decode(bytes, MAX_ANNOUNCEMENT_BYTES)?;
        announcement.verify(now)
    }

    pub fn verify(self, now: Timestamp) -> Result<Verified<Self>, SnapshotError> {
        let descriptor = self.descriptor.clone().verify()?;
        if self.speakers.len() > MAX_ANNOUNCED_SPEAKERS
            || self.listener_capability.room != descriptor.id
            || self.replays.len() > MAX_ANNOUNCED_REPLAYS
            || self.replays.iter().any(|replay| {
                replay.title.len() > crate::room::MAX_TITLE_BYTES
                    || replay.addrs.len() > crate::replay::MAX_REPLAY_ADDRS
            })
        {
            return Err(SnapshotError::Mismatch);
        }
        if !self
            .signature
            .verify(&descriptor.host, ANNOUNCEMENT_DOMAIN, &self.signed_bytes())
        {
            return Err(SnapshotError::BadSignature);
        }
        // A live room's announcement lasts seconds; a scheduled room's may last until a little
        // after its start, if that is not too far ahead.
        let latest = match descriptor.starts_at() {
            Some(starts_at) if starts_at <= now.plus_millis(MAX_SCHEDULE_AHEAD_MS) => starts_at
                .plus_millis(UPCOMING_GRACE_MS)
                .max(now.plus_millis(4 * ANNOUNCEMENT_TTL_MS)),
            _ => now.plus_millis(4 * ANNOUNCEMENT_TTL_MS),
        };
        if now >= self.expires_at || self.expires_at > latest {
            return Err(SnapshotError::Expired {
                expires_at: self.expires_at,
            });
        }
        Ok(Verified::new(self))
    }

    /// Whether this announces a room ahead of its start (valid for longer than a live room's
    /// announcement may be).
    pub fn ahead(&self, now: Timestamp) -> bool {
        self.expires_at > now.plus_millis(4 * ANNOUNCEMENT_TTL_MS)
    }

    /// The join link this announcement offers.
    pub fn link(&self) -> InviteLink {
        InviteLink {
            starts_at: self.descriptor.starts_at(),
            capability: self.listener_capability.clone(),
            host: self.descriptor.host,
            bootstrap: self
                .descriptor
                .addrs()
                .into_iter()
                .take(crate::link::MAX_BOOTSTRAP_ADDRS)
                .collect(),
        }
    }
}

pub(crate) fn truncate_utf8(text: &mut String, max: usize) {
    if text.len() > max {
        let mut end = max;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
}

/// A request on the room protocol (`/earshot/room/1`).
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub enum RoomRequest {
    /// Asks the host to admit this `Join` envelope (encoded) and send the room's snapshot.
    Join { envelope: serde_bytes::ByteBuf },
    /// Asks any node for the live public rooms it knows of.
    Lobby,
    /// Asks a node of the room's relay tree (the host, or an ancestor of the asker) for a place
    /// in its subtree. `lost` is the parent the asker just lost (died or went silent): an
    /// ancestor that lost that child lately takes its orphans back.
    Attach {
        room: RoomId,
        lost: Option<PeerKey>,
        /// The asker's last ticket (its place before): how a grandparent knows an orphan of
        /// its lost child, and the host a member of its audience.
        ticket: Option<serde_bytes::ByteBuf>,
    },
    /// Asks a community relay to carry a room's audio: to join with this invite link (bound to
    /// the relay's key) as a listener that feeds many children and plays nothing.
    Carry { link: String },
    /// Asks the host for the listeners that arrived lately, newest first, a page at a time.
    Listeners { room: RoomId, page: u32 },
    /// A member of a private room that missed a step of its key schedule asks the host for the
    /// epoch now, sealed to it.
    Keys { room: RoomId },
    /// Asks a node that serves the lobby (a community relay) to keep a scheduled room's
    /// announcement (encoded) until it expires, and to pass it on the lobby topic.
    Announce { announcement: serde_bytes::ByteBuf },
    /// A listener's own action (its signed envelope, sealed in a private room, as it goes up the
    /// tree) straight to the room's host: a chat line it sent up the tree did not come back
    /// relayed in time (a relay on the way may drop it). The host takes it as it would from the
    /// tree (the same budgets; a line it has already is not taken twice) and answers
    /// [`RoomResponse::Kept`], or why not.
    Act {
        room: RoomId,
        act: serde_bytes::ByteBuf,
    },
}

/// An answer on the room protocol.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub enum RoomResponse {
    /// Admitted: the host-signed snapshot (encoded), and in a private room the keys sealed to
    /// the joiner (a [`crate::private::Keys`]).
    Welcome {
        snapshot: serde_bytes::ByteBuf,
        keys: Option<serde_bytes::ByteBuf>,
    },
    /// Not admitted or not done, and why.
    Refused { refusal: Refusal },
    /// Encoded announcements.
    Lobby {
        announcements: Vec<serde_bytes::ByteBuf>,
    },
    /// Get the audio from this member (open a listen stream to it, presenting the ticket),
    /// `depth` hops from the host.
    Parent(Placement),
    /// The tree is full for now: ask again later.
    Waiting,
    /// The relay will join and carry the room's audio.
    Carrying,
    /// Admitted to the room's audience: the room's descriptor and the host's latest view (a
    /// joiner's snapshot), where to get the audio (none: no place yet, ask the host again
    /// showing `ticket`), and recent chat (envelopes the host relayed).
    Admitted {
        descriptor: serde_bytes::ByteBuf,
        view: serde_bytes::ByteBuf,
        placement: Option<Placement>,
        ticket: Option<serde_bytes::ByteBuf>,
        chat: Vec<serde_bytes::ByteBuf>,
        /// In a private room: the keys, sealed to the joiner (a [`crate::private::Keys`]).
        keys: Option<serde_bytes::ByteBuf>,
    },
    /// A private room's epoch now, sealed to the member that asked.
    Keys { keys: serde_bytes::ByteBuf },
    /// Listeners that arrived lately.
    Listeners {
        listeners: Vec<crate::audience::wire::Newcomer>,
    },
    /// The announcement is kept on the lobby (or, for an [`RoomRequest::Act`], the host has the
    /// action).
    Kept,
}

/// A place in the relay tree.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct Placement {
    pub key: PeerKey,
    pub addrs: Vec<serde_bytes::ByteBuf>,
    pub depth: u16,
    /// A [`crate::audience::Ticket`], encoded.
    pub ticket: serde_bytes::ByteBuf,
}

/// Why a node refused a request on the room protocol. The variants a node chooses from are
/// typed; where the reason is another check's own words (the room's fold, an envelope or link
/// that did not decode), they travel as text.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize, thiserror::Error)]
pub enum Refusal {
    #[error("this node does not host room {room}")]
    NotHost { room: RoomId },
    #[error("the join is not valid: {detail}")]
    BadJoin { detail: String },
    #[error("the join must come from its author's own connection")]
    NotFromAuthor,
    #[error("expected a join")]
    NotAJoin,
    /// The room's fold refused the join (in the room's words: removed, revoked, expired …).
    #[error("{reason}")]
    Rejected { reason: String },
    #[error("the room closed")]
    RoomClosed,
    #[error("not an earshot peer")]
    NotAnEarshotPeer,
    #[error("only members in the room get its audio")]
    NotPresent,
    #[error("this room has no relay tree")]
    NoTree,
    #[error("this node does not carry rooms for others")]
    NotACarrier,
    #[error("this relay carries its maximum of {max} rooms; ask another")]
    CarryingTheMost { max: u32 },
    #[error("this relay's upload budget is taken by other rooms; ask another")]
    NoUploadLeft,
    #[error("this relay already carries that room")]
    AlreadyCarried,
    #[error("only a room's host may ask a relay to carry it")]
    NotTheRoomsHost,
    #[error("the invite link is not valid: {detail}")]
    BadLink { detail: String },
    #[error("this node has no place for you: ask another")]
    NoPlace,
    #[error("the host is admitting too many at once: try again in a moment")]
    Busy,
    #[error("the stage joins through the host")]
    StageThroughHost,
    #[error("your ticket is not valid: {detail}")]
    BadTicket { detail: String },
    /// The room takes no more (its descriptor's limits: `max` on stage or in the audience).
    #[error("the room is full ({max} at most)")]
    Full { max: u32 },
    /// An announcement the lobby did not keep.
    #[error("the lobby did not keep the announcement: {detail}")]
    NotKept { detail: String },
}

impl RoomRequest {
    pub fn encode(&self) -> Vec<u8> {
        codec::encode(self)
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        codec::decode(bytes, MAX_REQUEST_BYTES)
    }
}

impl RoomResponse {
    pub fn encode(&self) -> Vec<u8> {
        codec::encode(self)
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        codec::decode(bytes, MAX_RPC_BYTES)
    }
}
