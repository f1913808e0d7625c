//! Replays: a recording shared with peers, as a signed manifest of fixed-size chunks.
//!
//! A replay's *content* is the recording's frames and its speakers' proofs in store order
//! ([`ContentRecord::order`]: time, speaker, a frame before the proofs kept after it), each as a
//! fixed big-endian record, concatenated and cut into chunks of [`ReplayManifest::chunk_bytes`]
//! (the last one shorter). The [`ReplayManifest`] names the recording, says what it is (room,
//! title, host, speakers with their keys, length) and lists the SHA-256 of every chunk; the
//! recorder signs it (domain-separated, strict ed25519), so any node may serve a replay and the
//! fetcher checks every chunk it gets against the recorder's word.
//!
//! ```text
//! version 5 (current; version 4, still read, has no consent records, version 3 no studio
//! records, version 2 no stage records):
//!   frame:  0 u8 | at u64 | speaker u32 | seq u32 | timestamp u32 | level u8 | flags u8
//!           | len u16 | payload
//!   proof:  1 u8 | at u64 | len u16 | proof (FrameProof::encode)
//!   stage:  2 u8 | at u64 | len u16 | the host's signed AudienceView (who is on stage)
//!   sealed: 3 u8 | at u64 | n u32 | len u16 | a private recording's sealed record
//!   studio: 4 u8 | at u64 | len u16 | a speaker's signed studio chunk (StudioChunk::encode)
//!   consent: 5 u8 | at u64 | len u16 | a speaker's signed agreement to be recorded (Envelope)
//! version 1 (read, never written):
//!   frame: at u64 | speaker u32 | level u8 | len u16 | payload
//! ```
//!
//! A version 2 frame keeps everything its speaker signed, so a fetched replay is checked like a
//! local recording, frame by frame against its speaker's proof ([`verify`]), with the speakers'
//! keys the manifest names: a recorder cannot change what a speaker with a known key said
//! without it showing, only leave frames out. Which person a key is, the recorder could still
//! make up (a member's recording names its own keys); the stage records settle that: each is a
//! view the host signed while the recording ran, naming who was on stage with their keys, so a
//! reader learns which voices the host vouched for, and by what name. A version 1 replay (made before frames carried
//! proofs) is still read, as unauthenticated: its frames have nothing to be checked against, and
//! [`verify`] reports every one of them without a proof.
//!
//! A manifest is named by its [`ManifestId`]: the first 16 bytes of the SHA-256 of its signed
//! encoding (what holders serve), so the bytes a holder hands over for an id are checked before
//! they are even decoded.
//!
//! Replay links (`earshot://replay/…`) carry a manifest id, the recorder's key and where to find
//! a holder, in the style of invite links ([`crate::link`]): base32 of a version byte, a
//! postcard body and a 4-byte checksum.
//!
//! The request-response exchange on `/earshot/recording/1` is [`ReplayRequest`] →
//! [`ReplayResponse`]; both are canonical postcard with bounded sizes.

use std::fmt;
use std::str::FromStr;

use ed25519_dalek::SigningKey;
use multiaddr::Multiaddr;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::Verified;
use crate::codec::{self, DecodeError};
use crate::control::MAX_NAME_BYTES;
use crate::id::{IdParseError, PeerKey, RecordingId, RoomId, Sig, Timestamp, base32};
use crate::room::MAX_TITLE_BYTES;

mod content;
pub mod verify;

pub use content::{
    ContentError, ContentFormat, ContentReader, ContentRecord, ReplayConsent, ReplayFrame,
    ReplayProof, ReplaySealed, ReplayStage, ReplayStudio,
};

/// The manifest format this build writes: its content carries what every frame's speaker signed,
/// the proofs, the host's signed word on who was on stage, the speakers' studio tracks and their
/// signed agreements to be recorded ([`ContentFormat::Authenticated`]).
pub const MANIFEST_VERSION: u8 = 5;
/// The manifest format with studio records but no consent records: still read.
pub const STUDIO_MANIFEST_VERSION: u8 = 4;
/// The manifest format with stage records but no studio records: still read.
pub const STAGE_MANIFEST_VERSION: u8 = 3;
/// The manifest format with frames and proofs but no stage records: still read, authenticated.
pub const PROOFS_ONLY_MANIFEST_VERSION: u8 = 2;
/// The manifest format before frames carried proofs: still read, as unauthenticated
/// ([`ContentFormat::Unauthenticated`]).
pub const UNAUTHENTICATED_MANIFEST_VERSION: u8 = 1;
/// The chunk size replays are published with.
pub const DEFAULT_CHUNK_BYTES: u32 = 256 * 1024;
/// Smallest chunk size a manifest may declare.
pub const MIN_CHUNK_BYTES: u32 = 1024;
/// Largest chunk size a manifest may declare (and so the largest chunk on the wire).
pub const MAX_CHUNK_BYTES: u32 = 1024 * 1024;
/// Most chunks in a manifest: 4 GiB at the default chunk size, about 280 hours of ten
/// speakers at 32 kbit/s.
pub const MAX_CHUNKS: usize = 16_384;
/// Most speakers a manifest lists.
pub const MAX_SPEAKERS: usize = 256;
/// Largest encoded manifest (every limit above at once fits).
pub const MAX_MANIFEST_BYTES: usize = 1024 * 1024;
/// Bytes before a frame's payload in the content: kind (1), time (8), speaker (4), seq (4),
/// timestamp (4), level (1), flags (1), length (2).
pub const FRAME_HEADER_BYTES: usize = 25;
/// Bytes before a proof in the content: kind (1), time (8), length (2).
pub const PROOF_HEADER_BYTES: usize = 11;
/// Bytes before a frame's payload in a version 1 content: time (8), speaker (4), level (1),
/// length (2).
pub const UNAUTHENTICATED_FRAME_HEADER_BYTES: usize = 15;
/// The text every replay link starts with.
pub const REPLAY_LINK_PREFIX: &str = "earshot://replay/";
/// The replay link format this build writes and understands.
pub const REPLAY_LINK_VERSION: u8 = 1;
/// Most holder addresses a replay link (or announcement) carries.
pub const MAX_REPLAY_ADDRS: usize = 4;
/// Longest encoded multiaddr accepted in a replay link or announcement.
pub const MAX_REPLAY_ADDR_BYTES: usize = 128;
/// Longest replay link text accepted, before any decoding work.
pub const MAX_REPLAY_LINK_CHARS: usize = 2048;
/// Largest encoded request.
pub const MAX_REQUEST_BYTES: usize = 64;
/// Largest encoded response: a whole manifest or a whole chunk, with its framing.
pub const MAX_RESPONSE_BYTES: usize = MAX_MANIFEST_BYTES + 16;

const SIGNATURE_DOMAIN: &[u8] = b"earshot/replay-manifest/v1\0";
const MAX_LINK_BODY_BYTES: usize = 16 + 32 + 8 + MAX_REPLAY_ADDRS * (MAX_REPLAY_ADDR_BYTES + 2);

/// A manifest's identity: the first 16 bytes of the SHA-256 of its signed encoding.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ManifestId(pub [u8; 16]);

impl ManifestId {
    /// Length of the id in bytes.
    pub const LEN: usize = 16;

    /// The id of a manifest's encoding.
    pub fn of(encoding: &[u8]) -> Self {
        let digest = Sha256::digest(encoding);
        let mut id = [0; 16];
        id.copy_from_slice(&digest[..16]);
        Self(id)
    }

    pub fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }

    /// The first eight base32 characters.
    pub fn short(&self) -> String {
        let mut text = self.to_string();
        text.truncate(8);
        text
    }
}

impl fmt::Display for ManifestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&base32(&self.0))
    }
}

impl fmt::Debug for ManifestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ManifestId({})", self.short())
    }
}

impl FromStr for ManifestId {
    type Err = IdParseError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        const WHAT: &str = "a manifest id";
        let expected = (16 * 8usize).div_ceil(5);
        if text.trim().len() != expected {
            return Err(IdParseError::BadLength {
                what: WHAT,
                expected,
            });
        }
        let bytes = data_encoding::BASE32_NOPAD
            .decode(text.trim().to_ascii_uppercase().as_bytes())
            .map_err(|_| IdParseError::NotBase32 { what: WHAT })?;
        let array =
            <[u8; 16]>::try_from(bytes.as_slice()).map_err(|_| IdParseError::BadLength {
                what: WHAT,
                expected,
            })?;
        Ok(Self(array))
    }
}

/// The SHA-256 of one chunk.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ChunkHash(pub [u8; 32]);

impl ChunkHash {
    pub fn of(chunk: &[u8]) -> Self {
        Self(Sha256::digest(chunk).into())
    }
}

impl fmt::Debug for ChunkHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ChunkHash({}…)", &base32(&self.0[..5]))
    }
}

/// Someone heard in a replay.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct ReplaySpeaker {
    /// The speaker id its frames carry ([`crate::frame::SpeakerId`]).
    pub id: u32,
    pub key: Option<PeerKey>,
    pub name: String,
    pub frames: u64,
}

/// A recording's signed table of contents.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct ReplayManifest {
    pub version: u8,
    pub recording: RecordingId,
    pub room: RoomId,
    pub title: String,
    /// The room's host.
    pub host: PeerKey,
    /// Who recorded it and signs this manifest.
    pub recorder: PeerKey,
    pub started_at: Timestamp,
    /// From the start to the end of the last frame, in 48 kHz samples.
    pub duration_samples: u64,
    pub frames: u64,
    /// Sorted by speaker id, each at most once.
    pub speakers: Vec<ReplaySpeaker>,
    pub chunk_bytes: u32,
    pub total_bytes: u64,
    pub chunks: Vec<ChunkHash>,
    pub signature: Sig,
}

/// What a recorder fills in to sign a manifest.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct ManifestSpec {
    pub recording: RecordingId,
    pub room: RoomId,
    pub title: String,
    pub host: PeerKey,
    pub started_at: Timestamp,
    pub duration_samples: u64,
    pub frames: u64,
    pub speakers: Vec<ReplaySpeaker>,
    pub chunk_bytes: u32,
    pub total_bytes: u64,
    pub chunks: Vec<ChunkHash>,
}

/// Why a manifest was refused or could not be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ManifestError {
    #[error("malformed replay manifest: {0}")]
    Malformed(#[from] DecodeError),
    #[error(
        "unsupported replay manifest version {found} (this build understands versions \
         {UNAUTHENTICATED_MANIFEST_VERSION} to {MANIFEST_VERSION})"
    )]
    UnsupportedVersion { found: u8 },
    #[error("bad signature on the replay manifest (recorder {})", .recorder.as_peer_id())]
    BadSignature { recorder: PeerKey },
    #[error(
        "the replay manifest is signed by {}, not by the recorder the link names ({})",
        .found.as_peer_id(), .expected.as_peer_id()
    )]
    WrongRecorder { expected: PeerKey, found: PeerKey },
    #[error("the bytes served as manifest {expected} are manifest {found}")]
    WrongId {
        expected: ManifestId,
        found: ManifestId,
    },
    #[error(
        "chunk size {chunk_bytes} is outside the allowed {MIN_CHUNK_BYTES}..={MAX_CHUNK_BYTES} \
         bytes"
    )]
    ChunkSize { chunk_bytes: u32 },
    #[error(
        "the replay manifest lists {found} chunks, but {total_bytes} bytes in chunks of \
         {chunk_bytes} make {expected}"
    )]
    ChunkCount {
        found: usize,
        expected: u64,
        total_bytes: u64,
        chunk_bytes: u32,
    },
    #[error("the replay manifest lists {count} chunks, more than the {MAX_CHUNKS} allowed")]
    TooManyChunks { count: usize },
    #[error("the replay manifest lists {count} speakers, more than the {MAX_SPEAKERS} allowed")]
    TooManySpeakers { count: usize },
    #[error("the replay manifest lists speaker {id:08x} twice or out of order")]
    SpeakerOrder { id: u32 },
}

/// Why a chunk does not belong to a manifest.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChunkError {
    #[error("chunk {index} does not exist (the replay has {chunks})")]
    OutOfRange { index: u32, chunks: usize },
    #[error("chunk {index} is {len} bytes, not {expected}")]
    WrongLength {
        index: u32,
        len: usize,
        expected: usize,
    },
    #[error("chunk {index} does not match the manifest's hash (corrupted or forged)")]
    HashMismatch { index: u32 },
}

#[derive(Serialize)]
struct Unsigned<'a> {
    version: u8,
    recording: &'a RecordingId,
    room: &'a RoomId,
    title: &'a str,
    host: &'a PeerKey,
    recorder: &'a PeerKey,
    started_at: Timestamp,
    duration_samples: u64,
    frames: u64,
    speakers: &'a [ReplaySpeaker],
    chunk_bytes: u32,
    total_bytes: u64,
    chunks: &'a [ChunkHash],
}

impl ReplayManifest {
    /// Signs a manifest as its recorder. Fails if the spec breaks a rule that decoding checks.
    pub fn sign(recorder: &SigningKey, spec: ManifestSpec) -> Result<Self, ManifestError> {
        let mut manifest = Self {
            version: MANIFEST_VERSION,
            recording: spec.recording,
            room: spec.room,
            title: spec.title,
            host: spec.host,
            recorder: PeerKey::from(recorder),
            started_at: spec.started_at,
            duration_samples: spec.duration_samples,
            frames: spec.frames,
            speakers: spec.speakers,
            chunk_bytes: spec.chunk_bytes,
            total_bytes: spec.total_bytes,
            chunks: spec.chunks,
            signature: Sig([0; 64]),
        };
        manifest.check_rules()?;
        manifest.signature = Sig::sign(recorder, SIGNATURE_DOMAIN, &manifest.signed_bytes());
        let len = manifest.encode().len();
        if len > MAX_MANIFEST_BYTES {
            return Err(DecodeError::TooLarge {
                len,
                max: MAX_MANIFEST_BYTES,
            }
            .into());
        }
        Ok(manifest)
    }

    /// The canonical encoding (what holders serve, and what the id hashes).
    pub fn encode(&self) -> Vec<u8> {
        codec::encode(self)
    }

    /// This manifest's id.
    pub fn id(&self) -> ManifestId {
        ManifestId::of(&self.encode())
    }

    /// Reads a manifest, checking size first, then format, rules and the recorder's signature.
    /// Never panics.
    pub fn decode_verified(bytes: &[u8]) -> Result<Verified<Self>, ManifestError> {
        let manifest: Self = codec::decode(bytes, MAX_MANIFEST_BYTES)?;
        manifest.verify()
    }

    /// Reads the bytes a holder served for manifest `id`, expected to be signed by `recorder`
    /// (when the link named one): the id first, then everything [`Self::decode_verified`]
    /// checks, then the recorder.
    pub fn decode_for(
        bytes: &[u8],
        id: ManifestId,
        recorder: Option<PeerKey>,
    ) -> Result<Verified<Self>, ManifestError> {
        if bytes.len() > MAX_MANIFEST_BYTES {
            return Err(DecodeError::TooLarge {
                len: bytes.len(),
                max: MAX_MANIFEST_BYTES,
            }
            .into());
        }
        let found = ManifestId::of(bytes);
        if found != id {
            return Err(ManifestError::WrongId {
                expected: id,
                found,
            });
        }
        let manifest = Self::decode_verified(bytes)?;
        if let Some(expected) = recorder
            && manifest.recorder != expected
        {
            return Err(ManifestError::WrongRecorder {
                expected,
                found: manifest.recorder,
            });
        }
        Ok(manifest)
    }

    /// Checks version, rules and the recorder's signature.
    pub fn verify(self) -> Result<Verified<Self>, ManifestError> {
        if ContentFormat::of_version(self.version).is_none() {
            return Err(ManifestError::UnsupportedVersion {
                found: self.version,
            });
        }
        self.check_rules()?;
        if !self
            .signature
            .verify(&self.recorder, SIGNATURE_DOMAIN, &self.signed_bytes())
        {
            return Err(ManifestError::BadSignature {
                recorder: self.recorder,
            });
        }
        Ok(Verified::new(self))
    }

    /// How this replay's content is laid out (a manifest that verified has a known version).
    pub fn content_format(&self) -> ContentFormat {
        ContentFormat::of_version(self.version).unwrap_or(ContentFormat::Authenticated)
    }

    /// How many bytes chunk `index` holds, if it exists.
    pub fn chunk_len(&self, index: u32) -> Option<usize> {
        let start = u64::from(index).checked_mul(u64::from(self.chunk_bytes))?;
        if usize::try_from(index).ok()? >= self.chunks.len() || start >= self.total_bytes {
            return None;
        }
        usize::try_from((self.total_bytes - start).min(u64::from(self.chunk_bytes))).ok()
    }

    /// Checks that `bytes` is chunk `index` of this replay.
    pub fn check_chunk(&self, index: u32, bytes: &[u8]) -> Result<(), ChunkError> {
        let expected = self.chunk_len(index).ok_or(ChunkError::OutOfRange {
            index,
            chunks: self.chunks.len(),
        })?;
        if bytes.len() != expected {
            return Err(ChunkError::WrongLength {
                index,
                len: bytes.len(),
                expected,
            });
        }
        let hash = self
            .chunks
            .get(index as usize)
            .ok_or(ChunkError::OutOfRange {
                index,
                chunks: self.chunks.len(),
            })?;
        if ChunkHash::of(bytes) != *hash {
            return Err(ChunkError::HashMismatch { index });
        }
        Ok(())
    }

    /// The number of chunks `total_bytes` makes at `chunk_bytes` each.
    pub fn chunks_for(total_bytes: u64, chunk_bytes: u32) -> u64 {
        total_bytes.div_ceil(u64::from(chunk_bytes.max(1)))
    }

    fn check_rules(&self) -> Result<(), ManifestError> {
        let too_long = |field, len, max| DecodeError::FieldTooLong { field, len, max };
        if self.title.len() > MAX_TITLE_BYTES {
            return Err(too_long("replay title", self.title.len(), MAX_TITLE_BYTES).into());
        }
        if self.speakers.len() > MAX_SPEAKERS {
            return Err(ManifestError::TooManySpeakers {
                count: self.speakers.len(),
            });
        }
        let mut previous: Option<u32> = None;
        for speaker in &self.speakers {
            if speaker.name.len() > MAX_NAME_BYTES {
                return Err(too_long("speaker name", speaker.name.len(), MAX_NAME_BYTES).into());
            }
            if previous.is_some_and(|previous| previous >= speaker.id) {
                return Err(ManifestError::SpeakerOrder { id: speaker.id });
            }
            previous = Some(speaker.id);
        }
        if !(MIN_CHUNK_BYTES..=MAX_CHUNK_BYTES).contains(&self.chunk_bytes) {
            return Err(ManifestError::ChunkSize {
                chunk_bytes: self.chunk_bytes,
            });
        }
        if self.chunks.len() > MAX_CHUNKS {
            return Err(ManifestError::TooManyChunks {
                count: self.chunks.len(),
            });
        }
        let expected = Self::chunks_for(self.total_bytes, self.chunk_bytes);
        if self.chunks.len() as u64 != expected {
            return Err(ManifestError::ChunkCount {
                found: self.chunks.len(),
                expected,
                total_bytes: self.total_bytes,
                chunk_bytes: self.chunk_bytes,
            });
        }
        Ok(())
    }

    fn signed_bytes(&self) -> Vec<u8> {
        codec::encode(&Unsigned {
            version: self.version,
            recording: &self.recording,
            room: &self.room,
            title: &self.title,
            host: &self.host,
            recorder: &self.recorder,
            started_at: self.started_at,
            duration_samples: self.duration_samples,
            frames: self.frames,
            speakers: &self.speakers,
            chunk_bytes: self.chunk_bytes,
            total_bytes: self.total_bytes,
            chunks: &self.chunks,
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Links
// ---------------------------------------------------------------------------------------------

/// A replay link: which manifest, who must have signed it, and where a holder listens.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct ReplayLink {
    pub manifest: ManifestId,
    pub recorder: PeerKey,
    /// Where to reach a holder; an address without `/p2p/…` is the recorder's.
    pub addrs: Vec<Multiaddr>,
    /// A private room's recording: the key its sealed records open with (the room's epoch
    /// keys are among them, so its frames open too). Only the link carries it, never the
    /// holders (link version 2; version 1 has none).
    pub key: Option<crate::private::Secret>,
}

/// Why text is not a usable replay link.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReplayLinkError {
    #[error("not an earshot replay link (it should start with {REPLAY_LINK_PREFIX})")]
    NotALink,
    #[error("replay link is too long ({len} bytes, at most {MAX_REPLAY_LINK_CHARS})")]
    TooLong { len: usize },
    #[error(
        "replay link has an invalid character {character:?} at position {position}: links use \
         only letters a-z and digits 2-7"
    )]
    InvalidCharacter { character: char, position: usize },
    #[error("replay link is truncated or mistyped (checksum mismatch): copy the whole link again")]
    Checksum,
    #[error("replay link is version {found}; this build understands version {REPLAY_LINK_VERSION}")]
    UnsupportedVersion { found: u8 },
    #[error("replay link is malformed: {0}")]
    Malformed(#[from] DecodeError),
}

#[derive(Serialize, Deserialize)]
struct LinkBody {
    manifest: ManifestId,
    recorder: PeerKey,
    addrs: Vec<serde_bytes::ByteBuf>,
}

/// A version 2 link's body: a private room's replay, with its key.
#[derive(Serialize, Deserialize)]
struct KeyedLinkBody {
    manifest: ManifestId,
    recorder: PeerKey,
    addrs: Vec<serde_bytes::ByteBuf>,
    #[serde(with = "serde_bytes")]
    key: [u8; 32],
}

/// The link version that carries a key.
pub const KEYED_REPLAY_LINK_VERSION: u8 = 2;

impl ReplayLink {
    /// The link as text: `earshot://replay/…`, lowercase.
    pub fn encode(&self) -> String {
        if let Some(key) = &self.key {
            let body = KeyedLinkBody {
                manifest: self.manifest,
                recorder: self.recorder,
                addrs: addr_bytes(&self.addrs),
                key: *key.as_bytes(),
            };
            return crate::link::frame(
                REPLAY_LINK_PREFIX,
                KEYED_REPLAY_LINK_VERSION,
                &codec::encode(&body),
            );
        }
        let body = LinkBody {
            manifest: self.manifest,
            recorder: self.recorder,
            addrs: addr_bytes(&self.addrs),
        };
        crate::link::frame(
            REPLAY_LINK_PREFIX,
            REPLAY_LINK_VERSION,
            &codec::encode(&body),
        )
    }

    /// Reads a link, telling apart a mistyped link from a malformed one. Never panics.
    pub fn decode(text: &str) -> Result<Self, ReplayLinkError> {
        let keyed = crate::link::unframe(
            text,
            REPLAY_LINK_PREFIX,
            KEYED_REPLAY_LINK_VERSION,
            MAX_REPLAY_LINK_CHARS,
        );
        if let Err(err) = &keyed
            && !matches!(err, crate::link::Framing::UnsupportedVersion { .. })
        {
            return Err(keyed.err().map_or(ReplayLinkError::NotALink, Into::into));
        }
        if let Ok(data) = keyed {
            let body: KeyedLinkBody = codec::decode(&data, MAX_LINK_BODY_BYTES)?;
            return Ok(Self {
                manifest: body.manifest,
                recorder: body.recorder,
                addrs: parse_addrs(&body.addrs)?,
                key: Some(crate::private::Secret::from_bytes(body.key)),
            });
        }
        let data = crate::link::unframe(
            text,
            REPLAY_LINK_PREFIX,
            REPLAY_LINK_VERSION,
            MAX_REPLAY_LINK_CHARS,
        )?;
        let body: LinkBody = codec::decode(&data, MAX_LINK_BODY_BYTES)?;
        Ok(Self {
            manifest: body.manifest,
            recorder: body.recorder,
            addrs: parse_addrs(&body.addrs)?,
            key: None,
        })
    }
}

impl From<crate::link::Framing> for ReplayLinkError {
    fn from(framing: crate::link::Framing) -> Self {
        use crate::link::Framing;
        match framing {
            Framing::NotALink => ReplayLinkError::NotALink,
            Framing::TooLong { len } => ReplayLinkError::TooLong { len },
            Framing::InvalidCharacter {
                character,
                position,
            } => ReplayLinkError::InvalidCharacter {
                character,
                position,
            },
            Framing::Checksum => ReplayLinkError::Checksum,
            Framing::UnsupportedVersion { found } => ReplayLinkError::UnsupportedVersion { found },
        }
    }
}

impl fmt::Display for ReplayLink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.encode())
    }
}

impl FromStr for ReplayLink {
    type Err = ReplayLinkError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Self::decode(text)
    }
}

/// Addresses as raw bytes for a link or an announcement: at most [`MAX_REPLAY_ADDRS`], each at
/// most [`MAX_REPLAY_ADDR_BYTES`] (longer ones are left out: decoders would refuse them).
pub fn addr_bytes(addrs: &[Multiaddr]) -> Vec<serde_bytes::ByteBuf> {
    crate::addr::to_wire(addrs, MAX_REPLAY_ADDR_BYTES, MAX_REPLAY_ADDRS)
}

/// Reads addresses written by [`addr_bytes`], enforcing its limits.
pub fn parse_addrs(raw: &[serde_bytes::ByteBuf]) -> Result<Vec<Multiaddr>, DecodeError> {
    crate::addr::from_wire(
        raw,
        "holder address",
        MAX_REPLAY_ADDR_BYTES,
        MAX_REPLAY_ADDRS,
    )
}

// ---------------------------------------------------------------------------------------------
// Wire
// ---------------------------------------------------------------------------------------------

/// What a fetcher asks a holder on `/earshot/recording/1`.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub enum ReplayRequest {
    /// The signed manifest with this id.
    Manifest { id: ManifestId },
    /// Chunk `index` of the replay with this manifest id.
    Chunk { id: ManifestId, index: u32 },
}

/// A holder's answer.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub enum ReplayResponse {
    /// The manifest's signed encoding.
    Manifest(serde_bytes::ByteBuf),
    /// The chunk's bytes.
    Chunk(serde_bytes::ByteBuf),
    /// This holder does not have it.
    NotFound,
}

impl ReplayRequest {
    pub fn encode(&self) -> Vec<u8> {
        codec::encode(self)
    }

    /// Never panics.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        codec::decode(bytes, MAX_REQUEST_BYTES)
    }
}

impl ReplayResponse {
    pub fn encode(&self) -> Vec<u8> {
        codec::encode(self)
    }

    /// Never panics.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        codec::decode(bytes, MAX_RESPONSE_BYTES)
    }
}

#[cfg(test)]
mod tests;
