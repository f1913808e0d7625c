//! The room as the host tells the audience: who is on stage, whose hands are up, how many
//! listen, what they applaud. Signed by the host, sent down the relay tree every few seconds (and
//! when it changes), handed to joiners as their snapshot. Bounded whatever the audience's size.

use serde::{Deserialize, Serialize};

use crate::Verified;
use crate::codec::{self, DecodeError};
use crate::control::{MAX_NAME_BYTES, MAX_REACTION_BYTES};
use crate::id::{CapId, PeerKey, RoomId, Sig, Timestamp};
use crate::state::RoomRole;

/// Most members on stage a view lists (host, moderators, speakers).
pub const MAX_STAGE: usize = 64;
/// Most raised hands a view lists (the first raised); `hands_total` counts them all.
pub const MAX_HANDS_SHOWN: usize = 32;
/// Most kinds of reaction a view totals.
pub const MAX_REACTION_KINDS: usize = 16;
/// Most recent bans and revocations a view carries (for nodes admitting joiners and children).
pub const MAX_RECENT_BANS: usize = 64;
/// Community relays a view lists at most.
pub const MAX_CARRIERS: usize = 32;
/// Children a member who is not a carrier may take: what a parent believes of its reports.
pub const MEMBER_MAX_CHILDREN: u16 = 16;
/// Views between two that list the carriers (when they did not change).
pub const CARRIERS_EVERY: u64 = 10;
/// Largest encoded view.
pub const MAX_VIEW_BYTES: usize = 32 * 1024;

const VIEW_DOMAIN: &[u8] = b"earshot/audience-view/v1\0";

/// Someone on stage.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct StageMember {
    pub key: PeerKey,
    pub name: String,
    pub role: RoomRole,
    pub muted: bool,
}

/// A raised hand.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct Hand {
    pub key: PeerKey,
    pub name: String,
    pub since: Timestamp,
}

/// How many of one reaction came up the tree in the last interval.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct ReactionCount {
    pub emoji: String,
    pub count: u32,
}

/// The room for its audience, as its host sees it now.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct AudienceView {
    pub room: RoomId,
    /// Increases with every view the host signs: a node keeps the newest.
    pub seq: u64,
    pub at: Timestamp,
    pub stage: Vec<StageMember>,
    /// First raised first.
    pub hands: Vec<Hand>,
    pub hands_total: u32,
    /// Listeners in the relay tree (from the counts its nodes report up), stage excluded.
    pub listeners: u32,
    /// Reactions since the view before.
    pub reactions: Vec<ReactionCount>,
    pub recording: bool,
    pub ended: bool,
    /// Members removed lately, and the capabilities revoked with them: whoever admits a joiner or
    /// a child refuses these (the host refuses every removed member at its own door).
    pub banned: Vec<PeerKey>,
    pub revoked: Vec<CapId>,
    /// Community relays the host asked to carry the room, with the children each may take:
    /// everyone else may offer at most [`MEMBER_MAX_CHILDREN`] (a claim of more is cut to it
    /// by the parent). Sent when it changed and every [`CARRIERS_EVERY`] views (`None`: as
    /// before), so that a room with many relays does not pay for the list every second.
    pub carriers: Option<Vec<(PeerKey, u16)>>,
    /// Relays taken out of the tree (see [`super::exclusion`]): nobody places a child under
    /// them or believes their free places, and their children leave them.
    pub excluded: Vec<PeerKey>,
    /// In a private room: the key schedule's epoch now, and its last fresh epoch (a member
    /// that holds an epoch from that one on ratchets forward; one that does not asks the host).
    pub keys: Option<ViewKeys>,
    /// The host's advice to the speakers' encoders: the loss (per mille) the audience sees, to
    /// plan FEC for ([`super::quality`]); at most [`super::quality::MAX_ADVICE_PERMILLE`].
    pub audio_loss: u16,
    pub signature: Sig,
}

/// Where a private room's key schedule is (see [`crate::private`]).
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct ViewKeys {
    pub epoch: u32,
    pub fresh: u32,
    /// The epoch's [`crate::private::Epoch::check`]: a member that steps forward on its own
    /// knows it arrived at the host's secret, not at one of a schedule the host lost.
    pub check: u32,
}

#[derive(Serialize)]
struct Unsigned<'a> {
    room: &'a RoomId,
    seq: u64,
    at: Timestamp,
    stage: &'a [StageMember],
    hands: &'a [Hand],
    hands_total: u32,
    listeners: u32,
    reactions: &'a [ReactionCount],
    recording: bool,
    ended: bool,
    banned: &'a [PeerKey],
    revoked: &'a [CapId],
    carriers: &'a Option<Vec<(PeerKey, u16)>>,
    excluded: &'a [PeerKey],
    keys: Option<ViewKeys>,
    audio_loss: u16,
}

/// Why a view is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ViewError {
    #[error("malformed view: {0}")]
    Malformed(#[from] DecodeError),
    #[error("the view is for room {found}")]
    WrongRoom { found: RoomId },
    #[error("the view is not signed by the room's host")]
    BadSignature,
}

impl AudienceView {
    fn unsigned(&self) -> Unsigned<'_> {
        Unsigned {
            room: &self.room,
            seq: self.seq,
            at: self.at,
            stage: &self.stage,
            hands: &self.hands,
            hands_total: self.hands_total,
            listeners: self.listeners,
            reactions: &self.reactions,
            recording: self.recording,
            ended: self.ended,
            banned: &self.banned,
            revoked: &self.revoked,
            carriers: &self.carriers,
            excluded: &self.excluded,
            keys: self.keys,
            audio_loss: self.audio_loss,
        }
    }

    /// Signs the view, cutting every list to its bound (and names and emoji to theirs).
    pub fn sign(mut self, host: &ed25519_dalek::SigningKey) -> Self {
        self.stage.truncate(MAX_STAGE);
        self.hands.truncate(MAX_HANDS_SHOWN);
        self.reactions.truncate(MAX_REACTION_KINDS);
        self.banned.truncate(MAX_RECENT_BANS);
        self.revoked.truncate(MAX_RECENT_BANS);
        self.excluded.truncate(super::exclusion::MAX_EXCLUDED);
        self.audio_loss = self.audio_loss.min(super::quality::MAX_ADVICE_PERMILLE);
        if let Some(carriers) = self.carriers.as_mut() {
            carriers.truncate(MAX_CARRIERS);
        }
        for member in &mut self.stage {
            crate::snapshot::truncate_utf8(&mut member.name, MAX_NAME_BYTES);
        }
        for hand in &mut self.hands {
            crate::snapshot::truncate_utf8(&mut hand.name, MAX_NAME_BYTES);
        }
        self.reactions
            .retain(|reaction| reaction.emoji.len() <= MAX_REACTION_BYTES);
        self.signature = Sig::sign(host, VIEW_DOMAIN, &codec::encode(&self.unsigned()));
        self
    }

    pub fn encode(&self) -> Vec<u8> {
        codec::encode(self)
    }

    /// What of this view a private room's relays read (it goes down the tree in the clear,
    /// next to the whole view sealed for members): who is on stage by key and role (frames are
    /// checked against them), counts, flags, bans, carriers, exclusions and the key schedule's
    /// place; no names, hands or reactions. Signed anew.
    pub fn redacted(&self, host: &ed25519_dalek::SigningKey) -> Self {
        let mut redacted = self.clone();
        for member in &mut redacted.stage {
            member.name.clear();
        }
        redacted.hands.clear();
        redacted.reactions.clear();
        redacted.sign(host)
    }

    /// Reads a view of `room` and checks the host's signature and the bounds.
    pub fn decode_verified(
        bytes: &[u8],
        room: RoomId,
        host: &PeerKey,
    ) -> Result<Verified<AudienceView>, ViewError> {
        let view: AudienceView = codec::decode(bytes, MAX_VIEW_BYTES)?;
        if view.room != room {
            return Err(ViewError::WrongRoom { found: view.room });
        }
        let over = view.stage.len() > MAX_STAGE
            || view.hands.len() > MAX_HANDS_SHOWN
            || view.reactions.len() > MAX_REACTION_KINDS
            || view.banned.len() > MAX_RECENT_BANS
            || view.revoked.len() > MAX_RECENT_BANS
            || view.excluded.len() > super::exclusion::MAX_EXCLUDED
            || view.audio_loss > super::quality::MAX_ADVICE_PERMILLE
            || view
                .carriers
                .as_ref()
                .is_some_and(|c| c.len() > MAX_CARRIERS);
        if over {
            return Err(DecodeError::TooLarge {
                len: bytes.len(),
                max: MAX_VIEW_BYTES,
            }
            .into());
        }
        if !view
            .signature
            .verify(host, VIEW_DOMAIN, &codec::encode(&view.unsigned()))
        {
            return Err(ViewError::BadSignature);
        }
        Ok(Verified::new(view))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view() -> AudienceView {
        AudienceView {
            room: RoomId([1; 16]),
            seq: 7,
            at: Timestamp(1_796_119_200_000),
            stage: vec![StageMember {
                key: PeerKey([2; 32]),
                name: "ana".into(),
                role: RoomRole::Host,
                muted: false,
            }],
            hands: vec![Hand {
                key: PeerKey([3; 32]),
                name: "joe".into(),
                since: Timestamp(1_796_119_100_000),
            }],
            hands_total: 1,
            listeners: 9_998,
            reactions: vec![ReactionCount {
                emoji: "👏".into(),
                count: 4_000,
            }],
            recording: true,
            ended: false,
            banned: Vec::new(),
            revoked: Vec::new(),
            carriers: None,
            excluded: Vec::new(),
            audio_loss: 50,
            keys: None,
            signature: Sig([0; 64]),
        }
    }

    #[test]
    fn a_signed_view_verifies_and_nothing_else_does() {
        let host = ed25519_dalek::SigningKey::from_bytes(&[1; 32]);
        let key = PeerKey::from(&host);
        let signed = view().sign(&host);
        let bytes = signed.encode();
        assert!(bytes.len() < 400, "{} bytes", bytes.len());
        let verified = AudienceView::decode_verified(&bytes, RoomId([1; 16]), &key).expect("ok");
        assert_eq!(verified.listeners, 9_998);
        assert_eq!(
            AudienceView::decode_verified(&bytes, RoomId([2; 16]), &key),
            Err(ViewError::WrongRoom {
                found: RoomId([1; 16])
            })
        );
        assert_eq!(
            AudienceView::decode_verified(&bytes, RoomId([1; 16]), &PeerKey([9; 32])),
            Err(ViewError::BadSignature)
        );
        let mut tampered = signed.clone();
        tampered.listeners = 1;
        assert_eq!(
            AudienceView::decode_verified(&tampered.encode(), RoomId([1; 16]), &key),
            Err(ViewError::BadSignature)
        );
    }

    #[test]
    fn lists_are_cut_to_their_bounds_when_signed() {
        let host = ed25519_dalek::SigningKey::from_bytes(&[1; 32]);
        let mut big = view();
        big.hands = (0..100)
            .map(|i| Hand {
                key: PeerKey([i; 32]),
                name: "x".repeat(200),
                since: Timestamp(u64::from(i)),
            })
            .collect();
        let signed = big.sign(&host);
        assert_eq!(signed.hands.len(), MAX_HANDS_SHOWN);
        assert!(signed.hands.iter().all(|h| h.name.len() <= MAX_NAME_BYTES));
        assert!(signed.encode().len() <= MAX_VIEW_BYTES);
    }
}
