//! What travels along the relay tree besides audio: down, the host's view of the room, the
//! envelopes it relays to the audience, each node's ancestry, notices for one listener; up, each
//! node's report on its subtree (size, reactions, free places, newcomers) and listeners' signed
//! actions for the host. Frames of either kind are bounded; lists in them too.

use serde::{Deserialize, Serialize};

use crate::codec::{self, DecodeError};
use crate::control::{MAX_NAME_BYTES, MAX_REACTION_BYTES};
use crate::id::PeerKey;

use super::view::{MAX_REACTION_KINDS, ReactionCount};

/// Largest control frame either way (a view is the largest thing that goes down).
pub const MAX_CONTROL_BYTES: usize = 32 * 1024;
/// Most free places a report offers.
pub const MAX_SLOTS: usize = 4;
/// Most newcomers a report names.
pub const MAX_NEWCOMERS: usize = 8;
/// Most ancestors a path lists (as deep as a ticket can place).
pub const MAX_PATH: usize = super::ticket::MAX_TICKET_LINKS;
/// Most addresses per peer in a slot or a path.
pub const MAX_PEER_ADDRS: usize = 4;
/// Longest notice.
pub const MAX_NOTICE_BYTES: usize = 200;

/// From a parent to its children, between audio frames.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub enum Down {
    /// The host's latest [`super::AudienceView`], as signed.
    View(serde_bytes::ByteBuf),
    /// A signed envelope the host relays to the audience (chat it let through, the room's end).
    Envelope(serde_bytes::ByteBuf),
    /// The child's ancestors, its parent first, up to the host: where to go when the parent
    /// dies, and who may have placed whom below.
    Path(Vec<Ancestor>),
    /// For one listener only: each parent passes it toward the child it heard that listener
    /// from.
    Notice { to: PeerKey, text: String },
    /// A private room's key schedule stepping (a host-signed [`crate::private::Keys`]): every
    /// node passes it on, members open it.
    Keys(serde_bytes::ByteBuf),
    /// In a private room, a view or relayed envelope sealed for the room's members (an encoded
    /// [`Down`] inside a [`crate::private::Sealed`]): relays pass it on, members open it.
    Sealed(serde_bytes::ByteBuf),
    /// The parent's own mark on this stream (every 100 ms or so, a number the child cannot
    /// guess; never passed on): the child answers [`Up::Marked`] as it reads it, so that the
    /// parent learns how far behind the stream runs, transport buffers included, a tenth of a
    /// second at a time (see `uplink`).
    Mark(u32),
}

/// A node above, and how to reach it.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct Ancestor {
    pub key: PeerKey,
    pub addrs: Vec<serde_bytes::ByteBuf>,
}

/// From a child to its parent, on the same stream.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub enum Up {
    Report(Report),
    /// A listener's signed envelope for the host (a hand, a chat line), from a node that names
    /// no path (as [`Up::ActVia`] with none).
    Act(serde_bytes::ByteBuf),
    /// The child has read the host's beacon `n` (and every frame its parent wrote before it).
    /// No longer sent: parents go by [`Up::Marked`] (ten times as often); kept so that the
    /// variants after it keep their encoding, and ignored.
    Heard(u32),
    /// A listener's signed envelope for the host, and the path it came up below the sender: the
    /// sender's child it came from first, down to the author's node (empty: the sender's own).
    /// The parent puts the sender in front; the host shares the audience's chat budget down
    /// these paths ([`super::shares`]).
    ActVia {
        act: serde_bytes::ByteBuf,
        via: Vec<PeerKey>,
    },
    /// The child has read its parent's [`Down::Mark`] `n` (and everything written before it):
    /// the parent takes it only for a mark it wrote.
    Marked(u32),
}

/// What a node says about its subtree (itself and everything below), every few seconds.
#[derive(Clone, PartialEq, Eq, Debug, Default, Serialize, Deserialize)]
pub struct Report {
    /// Nodes in the subtree, the sender included.
    pub subtree: u32,
    /// Reactions in the subtree since the last report.
    pub reactions: Vec<ReactionCount>,
    /// The best places in the subtree for a newcomer: the shallowest with room.
    pub free: Vec<Slot>,
    /// Listeners admitted into the subtree since the last report.
    pub newcomers: Vec<Newcomer>,
    /// How the subtree hears: its listeners by the share of frames they missed at playout.
    pub loss: super::quality::Loss,
}

/// A node that can take children.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct Slot {
    pub key: PeerKey,
    pub addrs: Vec<serde_bytes::ByteBuf>,
    /// Hops below the sender of the report (0: the sender itself).
    pub below: u16,
    /// Children it can still take.
    pub free: u16,
}

/// A listener that arrived.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct Newcomer {
    pub key: PeerKey,
    pub name: String,
}

/// Why a control frame is refused (the stream that sent it is closed).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("malformed control frame: {0}")]
    Malformed(#[from] DecodeError),
    #[error("a control frame over its bounds")]
    OverBounds,
}

impl Down {
    pub fn encode(&self) -> Vec<u8> {
        codec::encode(self)
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, WireError> {
        let down: Down = codec::decode(bytes, MAX_CONTROL_BYTES)?;
        let within = match &down {
            Down::Path(ancestors) => {
                ancestors.len() <= MAX_PATH
                    && ancestors.iter().all(|a| a.addrs.len() <= MAX_PEER_ADDRS)
            }
            Down::Notice { text, .. } => text.len() <= MAX_NOTICE_BYTES,
            Down::Keys(keys) => keys.len() <= crate::private::MAX_KEYS_BYTES,
            Down::Sealed(_) => true,
            Down::View(_) | Down::Envelope(_) | Down::Mark(_) => true,
        };
        if within {
            Ok(down)
        } else {
            Err(WireError::OverBounds)
        }
    }
}

impl Up {
    pub fn encode(&self) -> Vec<u8> {
        codec::encode(self)
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, WireError> {
        let up: Up = codec::decode(bytes, MAX_CONTROL_BYTES)?;
        let within = match &up {
            Up::Report(report) => {
                report.reactions.len() <= MAX_REACTION_KINDS
                    && report
                        .reactions
                        .iter()
                        .all(|r| r.emoji.len() <= MAX_REACTION_BYTES)
                    && report.free.len() <= MAX_SLOTS
                    && report.free.iter().all(|s| s.addrs.len() <= MAX_PEER_ADDRS)
                    && report.newcomers.len() <= MAX_NEWCOMERS
                    && report
                        .newcomers
                        .iter()
                        .all(|n| n.name.len() <= MAX_NAME_BYTES)
            }
            Up::Act(bytes) => bytes.len() <= crate::envelope::MAX_ENVELOPE_BYTES,
            Up::ActVia { act, via } => {
                act.len() <= crate::envelope::MAX_ENVELOPE_BYTES && via.len() <= MAX_PATH
            }
            Up::Heard(_) | Up::Marked(_) => true,
        };
        if within {
            Ok(up)
        } else {
            Err(WireError::OverBounds)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_and_bounds_hold() {
        let report = Up::Report(Report {
            subtree: 9,
            reactions: vec![ReactionCount {
                emoji: "👏".into(),
                count: 3,
            }],
            free: vec![Slot {
                key: PeerKey([1; 32]),
                addrs: vec![serde_bytes::ByteBuf::from(vec![4, 127, 0, 0, 1])],
                below: 1,
                free: 2,
            }],
            newcomers: vec![Newcomer {
                key: PeerKey([2; 32]),
                name: "joe".into(),
            }],
            loss: super::super::quality::Loss::of_playout(500, 30),
        });
        assert_eq!(Up::decode(&report.encode()), Ok(report));
        let too_many = Up::Report(Report {
            free: vec![
                Slot {
                    key: PeerKey([1; 32]),
                    addrs: Vec::new(),
                    below: 0,
                    free: 1,
                };
                MAX_SLOTS + 1
            ],
            ..Report::default()
        });
        assert_eq!(Up::decode(&too_many.encode()), Err(WireError::OverBounds));
        let notice = Down::Notice {
            to: PeerKey([3; 32]),
            text: "x".repeat(MAX_NOTICE_BYTES + 1),
        };
        assert_eq!(Down::decode(&notice.encode()), Err(WireError::OverBounds));
        assert!(matches!(
            Down::decode(&[0xff, 0xff]),
            Err(WireError::Malformed(_))
        ));
    }
}
