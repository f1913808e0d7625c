//! A replay's content: the frame and proof records a recording is cut into chunks from, their
//! fixed big-endian layout (see [`super`]), and [`ContentReader`], which reads them back
//! incrementally.

use super::{
    FRAME_HEADER_BYTES, MANIFEST_VERSION, PROOF_HEADER_BYTES, PROOFS_ONLY_MANIFEST_VERSION,
    STAGE_MANIFEST_VERSION, STUDIO_MANIFEST_VERSION, UNAUTHENTICATED_FRAME_HEADER_BYTES,
    UNAUTHENTICATED_MANIFEST_VERSION,
};
use crate::audience::view::MAX_VIEW_BYTES;
use crate::envelope::{Envelope, MAX_ENVELOPE_BYTES};
use crate::frame::{AudioFrame, MAX_OPUS_PAYLOAD, SILENCE_LEVEL, SpeakerId};
use crate::id::PeerKey;
use crate::proof::{
    FrameHash, FrameProof, MAX_FRAMES_PER_PROOF, MAX_PROOF_BYTES, ProofError, frame_hash,
};
use crate::studio::{MAX_STUDIO_CHUNK_BYTES, StudioChunk, StudioError};

/// A content record's kind: a frame.
const FRAME_RECORD: u8 = 0;
/// A content record's kind: a proof.
const PROOF_RECORD: u8 = 1;
/// A content record's kind: the host's signed view of the stage.
const STAGE_RECORD: u8 = 2;
/// Bytes before a stage record's view: kind (1), time (8), length (2).
const STAGE_HEADER_BYTES: usize = 11;
/// A content record's kind: something of a private room's recording sealed under its recording
/// key ([`ReplaySealed`]).
const SEALED_RECORD: u8 = 3;
/// Bytes before a sealed record's bytes: kind (1), time (8), number (4), length (2).
const SEALED_HEADER_BYTES: usize = 15;
/// A content record's kind: a chunk of a speaker's studio track ([`ReplayStudio`]).
const STUDIO_RECORD: u8 = 4;
/// Bytes before a studio record's chunk: kind (1), time (8), length (2).
const STUDIO_HEADER_BYTES: usize = 11;
/// A content record's kind: a speaker's signed agreement to be recorded ([`ReplayConsent`]).
const CONSENT_RECORD: u8 = 5;
/// Bytes before a consent record's envelope: kind (1), time (8), length (2).
const CONSENT_HEADER_BYTES: usize = 11;

/// How a replay's content is laid out, from its manifest's version.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum ContentFormat {
    /// Manifest version 1: frames only, as (time, speaker, level, payload). Nothing in it lets
    /// anyone check who spoke: read as unauthenticated (its frames' sequence numbers,
    /// timestamps and flags read as 0).
    Unauthenticated,
    /// Manifest version 2: frames with everything [`frame_hash`] covers, and their speakers'
    /// proofs.
    Authenticated,
}

impl ContentFormat {
    /// The format of a manifest of `version`, if this build reads it.
    pub fn of_version(version: u8) -> Option<Self> {
        match version {
            UNAUTHENTICATED_MANIFEST_VERSION => Some(Self::Unauthenticated),
            PROOFS_ONLY_MANIFEST_VERSION
            | STAGE_MANIFEST_VERSION
            | STUDIO_MANIFEST_VERSION
            | MANIFEST_VERSION => Some(Self::Authenticated),
            _ => None,
        }
    }
}

/// One frame of a replay's content: what the recorder kept of an [`AudioFrame`] (all but its
/// tag), and when it was heard.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct ReplayFrame {
    /// 48 kHz samples since the recording started.
    pub at: u64,
    pub speaker: u32,
    /// The frame's own sequence number, timestamp and flags: what its speaker signed.
    pub seq: u32,
    pub timestamp: u32,
    pub flags: u8,
    pub level: u8,
    pub payload: Vec<u8>,
}

/// A speaker's proof, kept in a replay's content right after the frames it covers were heard
/// (`at`: the time of its last frame the recorder had, or of that speaker's latest frame when the
/// proof came first).
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct ReplayProof {
    pub at: u64,
    pub proof: FrameProof,
}

/// The host's signed view of the room ([`crate::audience::AudienceView`], encoded as signed),
/// kept when the recording started and whenever the stage changed: who was on stage, by key and
/// name, in the host's word. `at`: the recording's latest time then.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct ReplayStage {
    pub at: u64,
    pub view: Vec<u8>,
}

/// In a private room's recording: what only the replay link's key opens (a [`Sealed`] under
/// the recording key, holding a [`PrivateRecord`]): the room's epoch keys as they were when the
/// recording had them, the host's views of the stage (they name people), the title. `n`
/// numbers a recording's sealed records (their order at one time).
///
/// [`Sealed`]: crate::private::Sealed
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct ReplaySealed {
    pub at: u64,
    pub n: u32,
    pub bytes: Vec<u8>,
}

/// A chunk of a speaker's studio track ([`crate::studio`]: its voice recorded before the
/// network, signed by the speaker), kept at the time of its first frame (`at`).
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct ReplayStudio {
    pub at: u64,
    pub chunk: StudioChunk,
}

/// A speaker's agreement to be recorded: the envelope it signed
/// ([`crate::control::ControlBody::RecordingConsent`]), kept when the recorder had it (`at`: the
/// recording's latest time then). `author` is read from the envelope (its signature is checked
/// by [`super::verify`]).
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct ReplayConsent {
    pub at: u64,
    pub author: PeerKey,
    pub envelope: Vec<u8>,
}

impl ReplayConsent {
    /// The record of `envelope` at `at`, if it reads as an envelope within bounds.
    pub fn new(at: u64, envelope: Vec<u8>) -> Result<Self, ContentError> {
        if envelope.len() > MAX_ENVELOPE_BYTES {
            return Err(ContentError::BadConsent { at });
        }
        let author = crate::codec::decode::<Envelope>(&envelope, MAX_ENVELOPE_BYTES)
            .map_err(|_| ContentError::BadConsent { at })?
            .author;
        Ok(Self {
            at,
            author,
            envelope,
        })
    }

    /// Appends this consent record to `out`.
    pub fn write_to(&self, out: &mut Vec<u8>) -> Result<(), ContentError> {
        let len = u16::try_from(self.envelope.len())
            .ok()
            .filter(|len| usize::from(*len) <= MAX_ENVELOPE_BYTES)
            .ok_or(ContentError::BadConsent { at: self.at })?;
        out.push(CONSENT_RECORD);
        out.extend_from_slice(&self.at.to_be_bytes());
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(&self.envelope);
        Ok(())
    }
}

/// One record of a replay's content.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum ContentRecord {
    Frame(ReplayFrame),
    Proof(ReplayProof),
    Stage(ReplayStage),
    Sealed(ReplaySealed),
    Studio(ReplayStudio),
    Consent(ReplayConsent),
}

/// Why bytes are not a replay's content.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ContentError {
    #[error("a frame of the replay has a {len}-byte payload, more than {MAX_OPUS_PAYLOAD}")]
    PayloadTooLong { len: usize },
    #[error("the replay's records are out of order at time {at}, speaker {speaker:08x}")]
    OutOfOrder { at: u64, speaker: u32 },
    #[error("the replay ends in the middle of a record ({left} bytes left over)")]
    Truncated { left: usize },
    #[error("a frame of the replay has level {level}, out of range (0-127)")]
    BadLevel { level: u8 },
    #[error("the replay holds a record of unknown kind {kind}")]
    UnknownRecord { kind: u8 },
    #[error("a proof in the replay at time {at} is malformed: {source}")]
    BadProof { at: u64, source: ProofError },
    #[error("a stage record in the replay at time {at} is {len} bytes, more than a view may be")]
    StageTooLong { at: u64, len: usize },
    #[error("a sealed record in the replay at time {at} is {len} bytes, more than one may be")]
    SealedTooLong { at: u64, len: usize },
    #[error("a studio chunk in the replay at time {at} is malformed: {source}")]
    BadStudio { at: u64, source: StudioError },
    #[error("a speaker's agreement in the replay at time {at} is not an envelope within bounds")]
    BadConsent { at: u64 },
}

impl ReplayFrame {
    /// What `frame`, heard at `at`, keeps in a replay.
    pub fn of(at: u64, frame: &AudioFrame) -> Self {
        Self {
            at,
            speaker: frame.speaker.0,
            seq: frame.seq,
            timestamp: frame.timestamp,
            flags: frame.flags,
            level: frame.level,
            payload: frame.payload.clone(),
        }
    }

    /// The frame as its speaker sent it (without a tag: a tag is not part of what is signed).
    pub fn audio_frame(&self) -> AudioFrame {
        AudioFrame {
            speaker: SpeakerId(self.speaker),
            seq: self.seq,
            timestamp: self.timestamp,
            level: self.level,
            flags: self.flags,
            payload: self.payload.clone(),
            tag: None,
        }
    }

    /// The hash its speaker's proof gives for it, if the frame is what the speaker sent.
    pub fn hash(&self) -> FrameHash {
        frame_hash(&self.audio_frame())
    }

    /// Appends this frame's content record to `out`. Fails only for what a frame cannot hold: a
    /// payload longer than an Opus packet, a level above 127.
    pub fn write_to(&self, out: &mut Vec<u8>) -> Result<(), ContentError> {
        if self.level > SILENCE_LEVEL {
            return Err(ContentError::BadLevel { level: self.level });
        }
        let len = u16::try_from(self.payload.len())
            .ok()
            .filter(|len| usize::from(*len) <= MAX_OPUS_PAYLOAD)
            .ok_or(ContentError::PayloadTooLong {
                len: self.payload.len(),
            })?;
        out.push(FRAME_RECORD);
        out.extend_from_slice(&self.at.to_be_bytes());
        out.extend_from_slice(&self.speaker.to_be_bytes());
        out.extend_from_slice(&self.seq.to_be_bytes());
        out.extend_from_slice(&self.timestamp.to_be_bytes());
        out.push(self.level);
        out.push(self.flags);
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(&self.payload);
        Ok(())
    }
}

impl ReplayProof {
    /// Appends this proof's content record to `out`. Fails only for a proof that no reader
    /// would take: one covering no frame, or more than [`MAX_FRAMES_PER_PROOF`].
    pub fn write_to(&self, out: &mut Vec<u8>) -> Result<(), ContentError> {
        let count = self.proof.hashes.len();
        if !(1..=MAX_FRAMES_PER_PROOF).contains(&count) {
            return Err(ContentError::BadProof {
                at: self.at,
                source: ProofError::Count(count),
            });
        }
        let proof = self.proof.encode();
        out.push(PROOF_RECORD);
        out.extend_from_slice(&self.at.to_be_bytes());
        // At most MAX_PROOF_BYTES, well under u16::MAX.
        out.extend_from_slice(&(proof.len() as u16).to_be_bytes());
        out.extend_from_slice(&proof);
        Ok(())
    }
}

impl ReplayStage {
    /// Appends this stage record to `out`. Fails for a view longer than any the host signs.
    pub fn write_to(&self, out: &mut Vec<u8>) -> Result<(), ContentError> {
        let len = u16::try_from(self.view.len())
            .ok()
            .filter(|len| usize::from(*len) <= MAX_VIEW_BYTES)
            .ok_or(ContentError::StageTooLong {
                at: self.at,
                len: self.view.len(),
            })?;
        out.push(STAGE_RECORD);
        out.extend_from_slice(&self.at.to_be_bytes());
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(&self.view);
        Ok(())
    }

    /// Where a stage record sorts among the others at its time (after every speaker's, by a
    /// number of its own: the view's sequence number, low 32 bits).
    pub fn seq(&self) -> u32 {
        // The view's `seq` follows the room id (16 bytes) in its encoding: a varint. Read it
        // without verifying (ordering only); an unreadable view sorts first.
        crate::codec::decode::<crate::audience::AudienceView>(&self.view, MAX_VIEW_BYTES)
            .map_or(0, |view| view.seq as u32)
    }
}

impl ReplaySealed {
    /// Appends this sealed record to `out`.
    pub fn write_to(&self, out: &mut Vec<u8>) -> Result<(), ContentError> {
        let len = u16::try_from(self.bytes.len())
            .ok()
            .filter(|len| usize::from(*len) <= crate::private::MAX_SEALED_BYTES)
            .ok_or(ContentError::SealedTooLong {
                at: self.at,
                len: self.bytes.len(),
            })?;
        out.push(SEALED_RECORD);
        out.extend_from_slice(&self.at.to_be_bytes());
        out.extend_from_slice(&self.n.to_be_bytes());
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(&self.bytes);
        Ok(())
    }
}

impl ReplayStudio {
    /// Appends this studio record to `out`. Fails for a chunk no reader would take.
    pub fn write_to(&self, out: &mut Vec<u8>) -> Result<(), ContentError> {
        let chunk = self.chunk.encode();
        // A chunk that reads back is at most MAX_STUDIO_CHUNK_BYTES, under u16::MAX.
        StudioChunk::decode(&chunk).map_err(|source| ContentError::BadStudio {
            at: self.at,
            source,
        })?;
        out.push(STUDIO_RECORD);
        out.extend_from_slice(&self.at.to_be_bytes());
        out.extend_from_slice(&(chunk.len() as u16).to_be_bytes());
        out.extend_from_slice(&chunk);
        Ok(())
    }
}

impl ContentRecord {
    /// Appends this record to `out` (in the current format).
    pub fn write_to(&self, out: &mut Vec<u8>) -> Result<(), ContentError> {
        match self {
            ContentRecord::Frame(frame) => frame.write_to(out),
            ContentRecord::Proof(proof) => proof.write_to(out),
            ContentRecord::Stage(stage) => stage.write_to(out),
            ContentRecord::Sealed(sealed) => sealed.write_to(out),
            ContentRecord::Studio(studio) => studio.write_to(out),
            ContentRecord::Consent(consent) => consent.write_to(out),
        }
    }

    /// The time the record sits at in the content.
    pub fn at(&self) -> u64 {
        match self {
            ContentRecord::Frame(frame) => frame.at,
            ContentRecord::Proof(proof) => proof.at,
            ContentRecord::Stage(stage) => stage.at,
            ContentRecord::Sealed(sealed) => sealed.at,
            ContentRecord::Studio(studio) => studio.at,
            ContentRecord::Consent(consent) => consent.at,
        }
    }

    /// Where the record sorts in a content: time, speaker, frame before proofs, proofs by their
    /// first sequence number, then the speaker's studio chunks by number, then its agreement to
    /// be recorded. Records come strictly in this order, so every recording has one content.
    pub fn order(&self) -> (u64, u32, u8, u32) {
        match self {
            ContentRecord::Frame(frame) => (frame.at, frame.speaker, FRAME_RECORD, 0),
            ContentRecord::Proof(proof) => (
                proof.at,
                proof.proof.speaker.0,
                PROOF_RECORD,
                proof.proof.first_seq,
            ),
            ContentRecord::Stage(stage) => (stage.at, u32::MAX, STAGE_RECORD, stage.seq()),
            ContentRecord::Sealed(sealed) => (sealed.at, u32::MAX, SEALED_RECORD, sealed.n),
            ContentRecord::Studio(studio) => (
                studio.at,
                studio.chunk.speaker.0,
                STUDIO_RECORD,
                studio.chunk.n,
            ),
            ContentRecord::Consent(consent) => (
                consent.at,
                SpeakerId::of(&consent.author).0,
                CONSENT_RECORD,
                0,
            ),
        }
    }
}

/// Reads a replay's content incrementally (chunk boundaries fall anywhere, even inside a
/// record's header). Records must come strictly in [`ContentRecord::order`], as a store streams
/// them, so every recording has one content. The buffer holds at most one chunk and one record.
#[derive(Debug)]
pub struct ContentReader {
    format: ContentFormat,
    buffer: Vec<u8>,
    last: Option<(u64, u32, u8, u32)>,
}

impl ContentReader {
    pub fn new(format: ContentFormat) -> Self {
        Self {
            format,
            buffer: Vec::new(),
            last: None,
        }
    }

    /// Takes the next bytes of content; returns the records they complete.
    pub fn push(&mut self, bytes: &[u8]) -> Result<Vec<ContentRecord>, ContentError> {
        self.buffer.extend_from_slice(bytes);
        let mut records = Vec::new();
        let mut at = 0;
        while let Some((record, len)) = parse_record(self.format, &self.buffer[at..])? {
            let order = record.order();
            if self.last.is_some_and(|last| last >= order) {
                return Err(ContentError::OutOfOrder {
                    at: order.0,
                    speaker: order.1,
                });
            }
            self.last = Some(order);
            records.push(record);
            at += len;
        }
        self.buffer.drain(..at);
        Ok(records)
    }

    /// The content ended: nothing may be left over.
    pub fn finish(self) -> Result<(), ContentError> {
        if self.buffer.is_empty() {
            Ok(())
        } else {
            Err(ContentError::Truncated {
                left: self.buffer.len(),
            })
        }
    }
}

/// The record at the start of `bytes` and its length, or `None` if `bytes` ends before it does.
fn parse_record(
    format: ContentFormat,
    bytes: &[u8],
) -> Result<Option<(ContentRecord, usize)>, ContentError> {
    let u64_at = |at: usize| {
        bytes
            .get(at..at + 8)
            .and_then(|b| <[u8; 8]>::try_from(b).ok())
            .map_or(0, u64::from_be_bytes)
    };
    let u32_at = |at: usize| {
        bytes
            .get(at..at + 4)
            .and_then(|b| <[u8; 4]>::try_from(b).ok())
            .map_or(0, u32::from_be_bytes)
    };
    let u16_at = |at: usize| {
        bytes
            .get(at..at + 2)
            .and_then(|b| <[u8; 2]>::try_from(b).ok())
            .map_or(0, |b| usize::from(u16::from_be_bytes(b)))
    };
    let payload = |header: usize, len: usize| -> Result<Option<Vec<u8>>, ContentError> {
        if len > MAX_OPUS_PAYLOAD {
            return Err(ContentError::PayloadTooLong { len });
        }
        Ok(bytes.get(header..header + len).map(<[u8]>::to_vec))
    };
    match format {
        ContentFormat::Unauthenticated => {
            if bytes.len() < UNAUTHENTICATED_FRAME_HEADER_BYTES {
                return Ok(None);
            }
            let len = u16_at(13);
            let Some(payload) = payload(UNAUTHENTICATED_FRAME_HEADER_BYTES, len)? else {
                return Ok(None);
            };
            let frame = ReplayFrame {
                at: u64_at(0),
                speaker: u32_at(8),
                seq: 0,
                timestamp: 0,
                flags: 0,
                level: bytes[12],
                payload,
            };
            Ok(Some((
                ContentRecord::Frame(frame),
                UNAUTHENTICATED_FRAME_HEADER_BYTES + len,
            )))
        }
        ContentFormat::Authenticated => match bytes.first() {
            None => Ok(None),
            Some(&FRAME_RECORD) => {
                if bytes.len() < FRAME_HEADER_BYTES {
                    return Ok(None);
                }
                let len = u16_at(23);
                let Some(payload) = payload(FRAME_HEADER_BYTES, len)? else {
                    return Ok(None);
                };
                let level = bytes[21];
                if level > SILENCE_LEVEL {
                    // Not a level a frame can carry (and [`AudioFrame::encode`] would clamp it,
                    // so the frame's hash would not show the change).
                    return Err(ContentError::BadLevel { level });
                }
                let frame = ReplayFrame {
                    at: u64_at(1),
                    speaker: u32_at(9),
                    seq: u32_at(13),
                    timestamp: u32_at(17),
                    level,
                    flags: bytes[22],
                    payload,
                };
                Ok(Some((
                    ContentRecord::Frame(frame),
                    FRAME_HEADER_BYTES + len,
                )))
            }
            Some(&PROOF_RECORD) => {
                if bytes.len() < PROOF_HEADER_BYTES {
                    return Ok(None);
                }
                let at = u64_at(1);
                let len = u16_at(9);
                if len > MAX_PROOF_BYTES {
                    return Err(ContentError::BadProof {
                        at,
                        source: ProofError::Length { len },
                    });
                }
                let Some(encoded) = bytes.get(PROOF_HEADER_BYTES..PROOF_HEADER_BYTES + len) else {
                    return Ok(None);
                };
                let proof = FrameProof::decode(encoded)
                    .map_err(|source| ContentError::BadProof { at, source })?;
                Ok(Some((
                    ContentRecord::Proof(ReplayProof { at, proof }),
                    PROOF_HEADER_BYTES + len,
                )))
            }
            Some(&STAGE_RECORD) => {
                if bytes.len() < STAGE_HEADER_BYTES {
                    return Ok(None);
                }
                let at = u64_at(1);
                let len = u16_at(9);
                if len > MAX_VIEW_BYTES {
                    return Err(ContentError::StageTooLong { at, len });
                }
                let Some(view) = bytes.get(STAGE_HEADER_BYTES..STAGE_HEADER_BYTES + len) else {
                    return Ok(None);
                };
                Ok(Some((
                    ContentRecord::Stage(ReplayStage {
                        at,
                        view: view.to_vec(),
                    }),
                    STAGE_HEADER_BYTES + len,
                )))
            }
            Some(&SEALED_RECORD) => {
                if bytes.len() < SEALED_HEADER_BYTES {
                    return Ok(None);
                }
                let at = u64_at(1);
                let n = u32_at(9);
                let len = u16_at(13);
                if len > crate::private::MAX_SEALED_BYTES {
                    return Err(ContentError::SealedTooLong { at, len });
                }
                let Some(sealed) = bytes.get(SEALED_HEADER_BYTES..SEALED_HEADER_BYTES + len) else {
                    return Ok(None);
                };
                Ok(Some((
                    ContentRecord::Sealed(ReplaySealed {
                        at,
                        n,
                        bytes: sealed.to_vec(),
                    }),
                    SEALED_HEADER_BYTES + len,
                )))
            }
            Some(&STUDIO_RECORD) => {
                if bytes.len() < STUDIO_HEADER_BYTES {
                    return Ok(None);
                }
                let at = u64_at(1);
                let len = u16_at(9);
                if len > MAX_STUDIO_CHUNK_BYTES {
                    return Err(ContentError::BadStudio {
                        at,
                        source: StudioError::TooLong { len },
                    });
                }
                let Some(chunk) = bytes.get(STUDIO_HEADER_BYTES..STUDIO_HEADER_BYTES + len) else {
                    return Ok(None);
                };
                let chunk = StudioChunk::decode(chunk)
                    .map_err(|source| ContentError::BadStudio { at, source })?;
                Ok(Some((
                    ContentRecord::Studio(ReplayStudio { at, chunk }),
                    STUDIO_HEADER_BYTES + len,
                )))
            }
            Some(&CONSENT_RECORD) => {
                if bytes.len() < CONSENT_HEADER_BYTES {
                    return Ok(None);
                }
                let at = u64_at(1);
                let len = u16_at(9);
                if len > MAX_ENVELOPE_BYTES {
                    return Err(ContentError::BadConsent { at });
                }
                let Some(envelope) = bytes.get(CONSENT_HEADER_BYTES..CONSENT_HEADER_BYTES + len)
                else {
                    return Ok(None);
                };
                Ok(Some((
                    ContentRecord::Consent(ReplayConsent::new(at, envelope.to_vec())?),
                    CONSENT_HEADER_BYTES + len,
                )))
            }
            Some(&kind) => Err(ContentError::UnknownRecord { kind }),
        },
    }
}
