//! Room descriptors: what a host says about its room, signed.

use std::fmt;
use std::str::FromStr;

use ed25519_dalek::SigningKey;
use multiaddr::Multiaddr;
use serde::{Deserialize, Serialize};

use crate::Verified;
use crate::codec::{self, DecodeError};
use crate::id::{PeerKey, RoomId, Sig, Timestamp};

/// The descriptor format this build writes and understands.
pub const DESCRIPTOR_VERSION: u8 = 1;
/// Longest room title, in bytes of UTF-8.
pub const MAX_TITLE_BYTES: usize = 200;
/// Most addresses a descriptor lists.
pub const MAX_DESCRIPTOR_ADDRS: usize = 8;
/// Largest encoded descriptor.
pub const MAX_DESCRIPTOR_BYTES: usize = 2048;

const SIGNATURE_DOMAIN: &[u8] = b"earshot/room-descriptor/v1\0";

/// Who can find a room.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Serialize, Deserialize)]
pub enum Visibility {
    /// Announced on the lobby: anyone can list it and join as a listener.
    Public,
    /// Not announced; anyone with a link can join.
    Unlisted,
    /// Not announced; links carry the room secret (once encryption lands).
    Private,
}

impl Visibility {
    /// The lowercase name used on the command line and in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Visibility::Public => "public",
            Visibility::Unlisted => "unlisted",
            Visibility::Private => "private",
        }
    }
}

impl fmt::Display for Visibility {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Text that is not a visibility.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown visibility {0:?}: expected public, unlisted or private")]
pub struct UnknownVisibility(pub String);

impl FromStr for Visibility {
    type Err = UnknownVisibility;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text.trim().to_ascii_lowercase().as_str() {
            "public" => Ok(Visibility::Public),
            "unlisted" => Ok(Visibility::Unlisted),
            "private" => Ok(Visibility::Private),
            _ => Err(UnknownVisibility(text.to_owned())),
        }
    }
}

/// Who records the room.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Serialize, Deserialize, Default)]
pub struct RecordingPolicy {
    /// The host records from the moment the room goes live.
    pub host_records: bool,
    /// Members other than the host may record what they hear.
    pub members_may_record: bool,
}

/// A host's signed description of its room.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct RoomDescriptor {
    pub version: u8,
    pub id: RoomId,
    pub title: String,
    pub visibility: Visibility,
    pub recording: RecordingPolicy,
    pub created_at: Timestamp,
    pub host: PeerKey,
    /// Where the host listens, as raw multiaddr bytes.
    pub addrs: Vec<serde_bytes::ByteBuf>,
    pub signature: Sig,
}

/// Why a descriptor was refused or could not be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DescriptorError {
    #[error("malformed room descriptor: {0}")]
    Malformed(#[from] DecodeError),
    #[error("room title is empty")]
    EmptyTitle,
    #[error("unsupported room descriptor version {found}")]
    UnsupportedVersion { found: u8 },
    #[error("bad signature on the room descriptor")]
    BadSignature,
}

/// The fields a host chooses for a new room.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct RoomSpec {
    pub id: RoomId,
    pub title: String,
    pub visibility: Visibility,
    pub recording: RecordingPolicy,
    pub created_at: Timestamp,
    pub addrs: Vec<Multiaddr>,
}

#[derive(Serialize)]
struct Unsigned<'a> {
    version: u8,
    id: &'a RoomId,
    title: &'a str,
    visibility: Visibility,
    recording: RecordingPolicy,
    created_at: Timestamp,
    host: &'a PeerKey,
    addrs: &'a [serde_bytes::ByteBuf],
}

impl RoomDescriptor {
    /// Signs a descriptor for a new room. The title is trimmed; it must not be empty.
    pub fn sign(host: &SigningKey, spec: RoomSpec) -> Result<Self, DescriptorError> {
        let title = spec.title.trim().to_owned();
        if title.is_empty() {
            return Err(DescriptorError::EmptyTitle);
        }
        if title.len() > MAX_TITLE_BYTES {
            return Err(DecodeError::FieldTooLong {
                field: "room title",
                len: title.len(),
                max: MAX_TITLE_BYTES,
            }
            .into());
        }
        if spec.addrs.len() > MAX_DESCRIPTOR_ADDRS {
            return Err(DecodeError::TooManyAddresses {
                count: spec.addrs.len(),
                max: MAX_DESCRIPTOR_ADDRS,
            }
            .into());
        }
        let mut descriptor = Self {
            version: DESCRIPTOR_VERSION,
            id: spec.id,
            title,
            visibility: spec.visibility,
            recording: spec.recording,
            created_at: spec.created_at,
            host: PeerKey::from(host),
            addrs: crate::addr::to_wire(&spec.addrs, usize::MAX, MAX_DESCRIPTOR_ADDRS),
            signature: Sig([0; 64]),
        };
        descriptor.signature = Sig::sign(host, SIGNATURE_DOMAIN, &descriptor.signed_bytes());
        Ok(descriptor)
    }

    fn signed_bytes(&self) -> Vec<u8> {
        codec::encode(&Unsigned {
            version: self.version,
            id: &self.id,
            title: &self.title,
            visibility: self.visibility,
            recording: self.recording,
            created_at: self.created_at,
            host: &self.host,
            addrs: &self.addrs,
        })
    }

    /// The host's listen addresses; unparsable entries are skipped.
    pub fn addrs(&self) -> Vec<Multiaddr> {
        crate::addr::from_wire_lossy(&self.addrs)
    }

    /// The canonical encoding.
    pub fn encode(&self) -> Vec<u8> {
        codec::encode(self)
    }

    /// Reads and verifies a descriptor.
    pub fn decode_verified(bytes: &[u8]) -> Result<Verified<Self>, DescriptorError> {
        let descriptor: Self = codec::decode(bytes, MAX_DESCRIPTOR_BYTES)?;
        descriptor.verify()
    }

    /// Checks the version and the host's signature.
    pub fn verify(self) -> Result<Verified<Self>, DescriptorError> {
        if self.version != DESCRIPTOR_VERSION {
            return Err(DescriptorError::UnsupportedVersion {
                found: self.version,
            });
        }
        if self.title.trim().is_empty() {
            return Err(DescriptorError::EmptyTitle);
        }
        if self.title.len() > MAX_TITLE_BYTES {
            return Err(DecodeError::FieldTooLong {
                field: "room title",
                len: self.title.len(),
                max: MAX_TITLE_BYTES,
            }
            .into());
        }
        if self.addrs.len() > MAX_DESCRIPTOR_ADDRS {
            return Err(DecodeError::TooManyAddresses {
                count: self.addrs.len(),
                max: MAX_DESCRIPTOR_ADDRS,
            }
            .into());
        }
        if !self
            .signature
            .verify(&self.host, SIGNATURE_DOMAIN, &self.signed_bytes())
        {
            return Err(DescriptorError::BadSignature);
        }
        Ok(Verified::new(self))
    }
}
