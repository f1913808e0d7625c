//! Control message bodies: what members say to the room on its topic.

use serde::{Deserialize, Serialize};

use crate::codec::DecodeError;
use crate::id::{CapId, PeerKey, RecordingId, Role, Timestamp};
use crate::replay::ManifestId;
use crate::room::MAX_TITLE_BYTES;

/// Longest display name, in bytes of UTF-8.
pub const MAX_NAME_BYTES: usize = 64;
/// Longest chat message, in bytes of UTF-8.
pub const MAX_CHAT_BYTES: usize = 1000;
/// Longest reaction (an emoji, possibly a ZWJ sequence), in bytes of UTF-8.
pub const MAX_REACTION_BYTES: usize = 32;
/// Longest unit of a support message (`EUR`, `sat`, `USDC`), in bytes of UTF-8.
pub const MAX_SUPPORT_UNIT_BYTES: usize = 16;
/// Longest note of a support message, in bytes of UTF-8.
pub const MAX_SUPPORT_NOTE_BYTES: usize = 200;
/// Most capabilities one removal revokes.
pub const MAX_REVOCATIONS: usize = 8;

/// One thing a member says to the room.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub enum ControlBody {
    /// Arrives, presenting the envelope's capability, under a display name.
    Join {
        name: String,
    },
    /// Still here (heartbeat); members that stop sending these time out.
    Presence,
    Leave,
    RaiseHand,
    LowerHand,
    /// Changes a member's role (host or moderator only).
    Promote {
        target: PeerKey,
        role: Role,
    },
    /// Moves a member back to listener.
    Demote {
        target: PeerKey,
    },
    Mute {
        target: PeerKey,
    },
    Unmute {
        target: PeerKey,
    },
    /// Removes a member and revokes the capabilities it joined with.
    Remove {
        target: PeerKey,
        revoke: Vec<CapId>,
    },
    Chat {
        text: String,
    },
    Reaction {
        emoji: String,
    },
    RecordingStarted,
    RecordingStopped,
    /// The host closes the room.
    RoomEnded,
    /// Where the author now gets the room's audio in the relay tree: from `parent`, `depth`
    /// hops below the host. Said by each member for itself after it attaches, so everyone can
    /// see the tree (`/tree`); informational, it grants nothing.
    TreePosition {
        parent: PeerKey,
        depth: u16,
    },
    /// A replay of a recording can be fetched: the manifest `recorder` signed, and up to
    /// [`crate::replay::MAX_REPLAY_ADDRS`] addresses (ending in `/p2p/…`) of the author, which holds it.
    /// Anyone may say this: the manifest is signed, so a false announcement costs only a failed
    /// fetch.
    ReplayAvailable {
        manifest: ManifestId,
        recording: RecordingId,
        recorder: PeerKey,
        title: String,
        bytes: u64,
        addrs: Vec<serde_bytes::ByteBuf>,
        /// A private room's replay: its key (32 bytes), for the members only (the room's
        /// messages are sealed for them); the holders serve it without.
        key: Option<serde_bytes::ByteBuf>,
    },
    /// The author starts (or stops) recording what it hears, for itself. Allowed to moderators
    /// and the host, and to everyone when the room's policy lets members record; everyone is
    /// told either way.
    MemberRecording {
        on: bool,
    },
    /// A listener's parent in the relay tree failed its checks (forged, replayed or withheld
    /// audio): said to the host only, up the tree, with the ticket that placed the author under
    /// `parent` (see [`crate::audience::exclusion`]). Grants nothing on the topic.
    Accuse {
        parent: PeerKey,
        ticket: serde_bytes::ByteBuf,
        reason: String,
    },
    /// The author knows the room is being recorded, since the recording that started at
    /// `since` (the host's start stamp), and agrees to speak in it: a member coming on stage in
    /// a recorded room keeps its microphone off until it says this (see
    /// [`crate::state::RoomState::needs_consent`]); the recording keeps it, signed.
    RecordingConsent {
        since: Timestamp,
    },
    /// The author supports the room's host: `amount` of `unit`, as the author says (Earshot
    /// moves no money: this is a signed word, paid however the host's descriptor says), and a
    /// short note. Shown to everyone, kept with the recording; the host may confirm it.
    Support {
        amount: u64,
        unit: String,
        note: String,
    },
    /// The host confirms it received the support `supporter` sent in the message whose
    /// envelope hashes (SHA-256) to `support`. The host's alone.
    SupportReceipt {
        supporter: PeerKey,
        support: [u8; 32],
    },
}

impl ControlBody {
    /// Checks the length limits of the free-text fields.
    pub fn check_limits(&self) -> Result<(), DecodeError> {
        let too_long = |field, len, max| DecodeError::FieldTooLong { field, len, max };
        match self {
            ControlBody::Join { name } if name.len() > MAX_NAME_BYTES => {
                Err(too_long("display name", name.len(), MAX_NAME_BYTES))
            }
            ControlBody::Chat { text } if text.len() > MAX_CHAT_BYTES => {
                Err(too_long("chat message", text.len(), MAX_CHAT_BYTES))
            }
            ControlBody::Reaction { emoji } if emoji.len() > MAX_REACTION_BYTES => {
                Err(too_long("reaction", emoji.len(), MAX_REACTION_BYTES))
            }
            ControlBody::Support { unit, .. } if unit.len() > MAX_SUPPORT_UNIT_BYTES => {
                Err(too_long("support unit", unit.len(), MAX_SUPPORT_UNIT_BYTES))
            }
            ControlBody::Support { note, .. } if note.len() > MAX_SUPPORT_NOTE_BYTES => {
                Err(too_long("support note", note.len(), MAX_SUPPORT_NOTE_BYTES))
            }
            ControlBody::Remove { revoke, .. } if revoke.len() > MAX_REVOCATIONS => {
                Err(too_long("revocation list", revoke.len(), MAX_REVOCATIONS))
            }
            ControlBody::Accuse { reason, .. }
                if reason.len() > crate::audience::exclusion::MAX_REASON_BYTES =>
            {
                Err(too_long(
                    "accusation",
                    reason.len(),
                    crate::audience::exclusion::MAX_REASON_BYTES,
                ))
            }
            ControlBody::Accuse { ticket, .. }
                if ticket.len() > crate::audience::ticket::MAX_TICKET_BYTES =>
            {
                Err(too_long(
                    "ticket",
                    ticket.len(),
                    crate::audience::ticket::MAX_TICKET_BYTES,
                ))
            }
            ControlBody::ReplayAvailable { title, .. } if title.len() > MAX_TITLE_BYTES => {
                Err(too_long("replay title", title.len(), MAX_TITLE_BYTES))
            }
            ControlBody::ReplayAvailable { key: Some(key), .. } if key.len() != 32 => {
                Err(too_long("replay key", key.len(), 32))
            }
            // At most four addresses of bounded length, each a valid multiaddr.
            ControlBody::ReplayAvailable { addrs, .. } => {
                crate::replay::parse_addrs(addrs).map(|_| ())
            }
            _ => Ok(()),
        }
    }
}
