//! An envelope the host relays down the tree to its audience (a chat line it let through, a
//! promotion, a removal, the room's end), countersigned by the host: a relay in the tree can
//! withhold what passes through it, but cannot slip in an envelope the host never relayed (a
//! listener's own chat that skipped the host's budget, an old one replayed into another room).

use serde::{Deserialize, Serialize};

use crate::Verified;
use crate::codec::{self, DecodeError};
use crate::envelope::{Envelope, EnvelopeError, MAX_ENVELOPE_BYTES};
use crate::id::{PeerKey, RoomId, Sig};

const RELAYED_DOMAIN: &[u8] = b"earshot/relayed/v1\0";

/// A relayed envelope, as it travels in [`super::wire::Down::Envelope`].
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct Relayed {
    pub room: RoomId,
    /// The author's signed envelope, as it was published.
    pub envelope: serde_bytes::ByteBuf,
    pub signature: Sig,
}

#[derive(Serialize)]
struct Unsigned<'a> {
    room: &'a RoomId,
    envelope: &'a [u8],
}

/// Why a relayed envelope is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RelayedError {
    #[error("malformed relayed envelope: {0}")]
    Malformed(#[from] DecodeError),
    #[error("relayed for room {found}")]
    WrongRoom { found: RoomId },
    #[error("not relayed by the room's host")]
    BadSignature,
    #[error(transparent)]
    Envelope(#[from] EnvelopeError),
}

impl Relayed {
    /// The host relays `envelope` (encoded) in `room`.
    pub fn sign(host: &ed25519_dalek::SigningKey, room: RoomId, envelope: Vec<u8>) -> Self {
        let signature = Sig::sign(
            host,
            RELAYED_DOMAIN,
            &codec::encode(&Unsigned {
                room: &room,
                envelope: &envelope,
            }),
        );
        Self {
            room,
            envelope: serde_bytes::ByteBuf::from(envelope),
            signature,
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        codec::encode(self)
    }

    /// Reads a relayed envelope of `room`: the host's countersignature, then the author's own.
    pub fn decode_verified(
        bytes: &[u8],
        room: RoomId,
        host: &PeerKey,
    ) -> Result<Verified<Envelope>, RelayedError> {
        let relayed: Relayed = codec::decode(bytes, MAX_ENVELOPE_BYTES + 256)?;
        if relayed.room != room {
            return Err(RelayedError::WrongRoom {
                found: relayed.room,
            });
        }
        let unsigned = Unsigned {
            room: &relayed.room,
            envelope: &relayed.envelope,
        };
        if !relayed
            .signature
            .verify(host, RELAYED_DOMAIN, &codec::encode(&unsigned))
        {
            return Err(RelayedError::BadSignature);
        }
        let envelope = Envelope::decode_verified(&relayed.envelope)?;
        if envelope.room != room {
            return Err(RelayedError::WrongRoom {
                found: envelope.room,
            });
        }
        Ok(envelope)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::ControlBody;
    use crate::envelope::Authority;
    use crate::id::Timestamp;

    #[test]
    fn only_the_host_relays_and_only_into_its_room() {
        let host = ed25519_dalek::SigningKey::from_bytes(&[1; 32]);
        let relay = ed25519_dalek::SigningKey::from_bytes(&[2; 32]);
        let room = RoomId([7; 16]);
        let chat = Envelope::sign(
            &host,
            room,
            1,
            Timestamp(1_796_119_200_000),
            Authority::Host,
            ControlBody::Chat {
                text: "hello".into(),
            },
        )
        .expect("signs")
        .encode();
        let host_key = PeerKey::from(&host);
        let relayed = Relayed::sign(&host, room, chat.clone()).encode();
        let envelope = Relayed::decode_verified(&relayed, room, &host_key).expect("the host's");
        assert!(matches!(envelope.body, ControlBody::Chat { .. }));
        // A relay in the tree countersigning itself is refused.
        let forged = Relayed::sign(&relay, room, chat.clone()).encode();
        assert_eq!(
            Relayed::decode_verified(&forged, room, &host_key),
            Err(RelayedError::BadSignature)
        );
        // The host's relay in one room does not pass in another.
        let other = RoomId([8; 16]);
        assert!(matches!(
            Relayed::decode_verified(&relayed, other, &host_key),
            Err(RelayedError::WrongRoom { .. })
        ));
    }
}
