//! Signed envelopes: every control message on a room's topic travels in one.
//!
//! An envelope names its room, its author, the author's sequence number (strictly increasing per
//! author, so replays are detectable), the author's clock, the body, and the authority under which
//! the author acts: either the author is the room's host, or it carries a capability (the first
//! time) or the id of one it presented before. The author signs all of it.
//!
//! Checking the signature here yields a [`Verified`] envelope; whether the authority allows the
//! body is the room fold's business.

use ed25519_dalek::SigningKey;
use serde::{Deserialize, Serialize};

use crate::Verified;
use crate::capability::Capability;
use crate::codec::{self, DecodeError};
use crate::control::ControlBody;
use crate::id::{CapId, PeerKey, RoomId, Sig, Timestamp};

/// The envelope format this build writes and understands.
pub const ENVELOPE_VERSION: u8 = 1;
/// Largest encoded envelope: a full-length chat message with a full capability chain fits.
pub const MAX_ENVELOPE_BYTES: usize = 4096;

const SIGNATURE_DOMAIN: &[u8] = b"earshot/envelope/v1\0";

/// Under what authority the author acts.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub enum Authority {
    /// The author is the room's host.
    Host,
    /// The capability the author presents (its first message, or whenever it must be re-checked).
    Capability(Capability),
    /// A capability this author presented earlier, by id.
    CapabilityRef(CapId),
}

/// A signed control message.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct Envelope {
    pub version: u8,
    pub room: RoomId,
    pub author: PeerKey,
    pub seq: u64,
    pub sent_at: Timestamp,
    pub authority: Authority,
    pub body: ControlBody,
    pub signature: Sig,
}

/// Why an envelope was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvelopeError {
    #[error("malformed envelope: {0}")]
    Malformed(#[from] DecodeError),
    #[error(
        "unsupported envelope version {found} (this build understands version {ENVELOPE_VERSION})"
    )]
    UnsupportedVersion { found: u8 },
    #[error("envelope is {len} bytes, more than the {MAX_ENVELOPE_BYTES} allowed")]
    TooLarge { len: usize },
    #[error("bad envelope signature (author {})", .author.as_peer_id())]
    BadSignature { author: PeerKey },
}

#[derive(Serialize)]
struct Unsigned<'a> {
    version: u8,
    room: &'a RoomId,
    author: &'a PeerKey,
    seq: u64,
    sent_at: Timestamp,
    authority: &'a Authority,
    body: &'a ControlBody,
}

impl Envelope {
    /// Signs a message. Fails if a body field or the whole envelope is over its limit.
    pub fn sign(
        author: &SigningKey,
        room: RoomId,
        seq: u64,
        sent_at: Timestamp,
        authority: Authority,
        body: ControlBody,
    ) -> Result<Self, EnvelopeError> {
        body.check_limits()?;
        let mut envelope = Self {
            version: ENVELOPE_VERSION,
            room,
            author: PeerKey::from(author),
            seq,
            sent_at,
            authority,
            body,
            signature: Sig([0; 64]),
        };
        envelope.signature = Sig::sign(author, SIGNATURE_DOMAIN, &envelope.signed_bytes());
        let len = envelope.encode().len();
        if len > MAX_ENVELOPE_BYTES {
            return Err(EnvelopeError::TooLarge { len });
        }
        Ok(envelope)
    }

    fn signed_bytes(&self) -> Vec<u8> {
        codec::encode(&Unsigned {
            version: self.version,
            room: &self.room,
            author: &self.author,
            seq: self.seq,
            sent_at: self.sent_at,
            authority: &self.authority,
            body: &self.body,
        })
    }

    /// The canonical encoding (what goes on the wire).
    /// The SHA-256 of the encoded envelope: how a later message names this one (a host's
    /// receipt names the support it confirms).
    pub fn digest(&self) -> [u8; 32] {
        use sha2::Digest as _;
        sha2::Sha256::digest(self.encode()).into()
    }

    pub fn encode(&self) -> Vec<u8> {
        codec::encode(self)
    }

    /// Reads an envelope, checking size first, then format, limits and the author's signature.
    pub fn decode_verified(bytes: &[u8]) -> Result<Verified<Self>, EnvelopeError> {
        if bytes.len() > MAX_ENVELOPE_BYTES {
            return Err(EnvelopeError::TooLarge { len: bytes.len() });
        }
        let envelope: Self = codec::decode(bytes, MAX_ENVELOPE_BYTES)?;
        envelope.verify()
    }

    /// Checks version, limits and the author's signature.
    pub fn verify(self) -> Result<Verified<Self>, EnvelopeError> {
        if self.version != ENVELOPE_VERSION {
            return Err(EnvelopeError::UnsupportedVersion {
                found: self.version,
            });
        }
        self.body.check_limits()?;
        if let Authority::Capability(cap) = &self.authority {
            cap.check_chain_length()?;
        }
        if !self
            .signature
            .verify(&self.author, SIGNATURE_DOMAIN, &self.signed_bytes())
        {
            return Err(EnvelopeError::BadSignature {
                author: self.author,
            });
        }
        Ok(Verified::new(self))
    }
}
