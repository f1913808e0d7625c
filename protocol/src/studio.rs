//! Studio tracks: a speaker's own voice, recorded before the network (the podcasters'
//! "double-ender"), for the room's recording.
//!
//! While a room is recorded, a speaker who chose to ([`crate::frame`]'s live frames are what
//! the room hears) also encodes its voice a second time, at a higher bitrate and without FEC,
//! frame for frame with the live ones: each studio frame carries the live frame's sequence
//! number and capture timestamp, so a recording lines the two up exactly and an export takes the
//! studio frame wherever it has one (and the live frame wherever it has not). Studio frames are
//! not live: they travel to the recorder in [`StudioChunk`]s of about a second, behind the
//! room, on a stream of their own, so they never hold the room's audio up.
//!
//! A chunk is signed by its speaker as a whole (one signature a second: the recorder checks
//! every chunk before it keeps it, and so does whoever verifies a replay). In a private room its
//! frames are sealed with the room's epoch key before the chunk is signed, as live frames are.
//!
//! ```text
//! chunk: version u8 | speaker u32 | n u32 | count u8 | (len u16 | frame len bytes)×count | signature 64
//! ```
//!
//! Frames are [`AudioFrame::encode`]d (without a tag), all of the chunk's speaker, their
//! timestamps rising. Signed bytes are a domain, the room's id, then the layout up to the
//! signature.

use crate::frame::{AudioFrame, FrameError, MAX_FRAME_BYTES, SpeakerId};
use crate::id::{PeerKey, RoomId, Sig};

/// Format of studio chunks.
pub const STUDIO_VERSION: u8 = 1;
/// Frames a speaker puts in one chunk: one second.
pub const STUDIO_FRAMES: usize = 50;
/// Most frames one chunk may hold (two seconds).
pub const MAX_STUDIO_FRAMES: usize = 100;
/// Largest encoded chunk: room for [`MAX_STUDIO_FRAMES`] frames of 240 bytes (96 kbit/s, sealed),
/// and a length a replay's content writes in two bytes.
pub const MAX_STUDIO_CHUNK_BYTES: usize = 32 * 1024;
/// Bytes before a chunk's frames.
const HEADER_BYTES: usize = 10;

const STUDIO_DOMAIN: &[u8] = b"earshot/studio-chunk/v1\0";

/// About a second of one speaker's studio track, signed by the speaker.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct StudioChunk {
    pub speaker: SpeakerId,
    /// The chunk's number in its speaker's track (from 0 when the speaker's node started it).
    pub n: u32,
    pub frames: Vec<AudioFrame>,
    pub signature: Sig,
}

/// Why bytes are not a studio chunk, or frames cannot make one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StudioError {
    #[error("a studio chunk of {len} bytes is more than {MAX_STUDIO_CHUNK_BYTES}")]
    TooLong { len: usize },
    #[error("a studio chunk ends in the middle ({len} bytes)")]
    Truncated { len: usize },
    #[error("unsupported studio chunk version {0}")]
    Version(u8),
    #[error("a studio chunk must hold 1 to {MAX_STUDIO_FRAMES} frames, not {0}")]
    Count(usize),
    #[error("a frame of a studio chunk is malformed: {0}")]
    Frame(#[from] FrameError),
    #[error("a studio chunk's frames must all be its speaker's, untagged, timestamps rising")]
    Frames,
}

impl StudioChunk {
    /// Signs `frames` (the speaker's, timestamps rising) as chunk `n` of `key`'s track in `room`.
    pub fn sign(
        key: &ed25519_dalek::SigningKey,
        room: &RoomId,
        n: u32,
        frames: Vec<AudioFrame>,
    ) -> Result<Self, StudioError> {
        let mut chunk = Self {
            speaker: SpeakerId::of(&PeerKey::from(key)),
            n,
            frames,
            signature: Sig([0; 64]),
        };
        chunk.check()?;
        let len = chunk.body().len() + 64;
        if len > MAX_STUDIO_CHUNK_BYTES {
            return Err(StudioError::TooLong { len });
        }
        chunk.signature = Sig::sign(key, STUDIO_DOMAIN, &chunk.signed_bytes(room));
        Ok(chunk)
    }

    /// Whether `signer` signed this chunk for `room`.
    pub fn verify(&self, room: &RoomId, signer: &PeerKey) -> bool {
        SpeakerId::of(signer) == self.speaker
            && self
                .signature
                .verify(signer, STUDIO_DOMAIN, &self.signed_bytes(room))
    }

    /// The chunk's bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = self.body();
        out.extend_from_slice(&self.signature.0);
        out
    }

    /// Reads a chunk (without checking its signature); any malformed input is an error.
    pub fn decode(bytes: &[u8]) -> Result<Self, StudioError> {
        let len = bytes.len();
        if len > MAX_STUDIO_CHUNK_BYTES {
            return Err(StudioError::TooLong { len });
        }
        let truncated = StudioError::Truncated { len };
        if len < HEADER_BYTES + 64 {
            return Err(truncated);
        }
        if bytes[0] != STUDIO_VERSION {
            return Err(StudioError::Version(bytes[0]));
        }
        let u32_at = |at: usize| {
            u32::from_be_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
        };
        let count = usize::from(bytes[9]);
        if !(1..=MAX_STUDIO_FRAMES).contains(&count) {
            return Err(StudioError::Count(count));
        }
        let body = &bytes[..len - 64];
        let mut at = HEADER_BYTES;
        let mut frames = Vec::with_capacity(count);
        for _ in 0..count {
            let frame_len = body
                .get(at..at + 2)
                .map(|b| usize::from(u16::from_be_bytes([b[0], b[1]])))
                .ok_or(truncated.clone())?;
            if frame_len > MAX_FRAME_BYTES {
                return Err(StudioError::Frame(FrameError::TooLong { len: frame_len }));
            }
            let frame = body
                .get(at + 2..at + 2 + frame_len)
                .ok_or(truncated.clone())?;
            frames.push(AudioFrame::decode(frame)?);
            at += 2 + frame_len;
        }
        if at != body.len() {
            return Err(truncated);
        }
        let mut signature = [0u8; 64];
        signature.copy_from_slice(&bytes[len - 64..]);
        let chunk = Self {
            speaker: SpeakerId(u32_at(1)),
            n: u32_at(5),
            frames,
            signature: Sig(signature),
        };
        chunk.check()?;
        Ok(chunk)
    }

    /// Frames all of the chunk's speaker, untagged, timestamps rising (wrapping, within a chunk's
    /// reach), 1 to [`MAX_STUDIO_FRAMES`] of them.
    fn check(&self) -> Result<(), StudioError> {
        if !(1..=MAX_STUDIO_FRAMES).contains(&self.frames.len()) {
            return Err(StudioError::Count(self.frames.len()));
        }
        let first = self.frames[0].timestamp;
        let mut last: Option<u32> = None;
        for frame in &self.frames {
            let offset = frame.timestamp.wrapping_sub(first);
            let ok = frame.speaker == self.speaker
                && frame.tag.is_none()
                && offset < 1 << 30
                && last.is_none_or(|last| offset > last);
            if !ok {
                return Err(StudioError::Frames);
            }
            last = Some(offset);
        }
        Ok(())
    }

    fn body(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER_BYTES + self.frames.len() * 200);
        out.push(STUDIO_VERSION);
        out.extend_from_slice(&self.speaker.0.to_be_bytes());
        out.extend_from_slice(&self.n.to_be_bytes());
        // At most MAX_STUDIO_FRAMES (checked).
        out.push(self.frames.len() as u8);
        for frame in &self.frames {
            let encoded = frame.encode();
            // At most MAX_FRAME_BYTES, well under u16::MAX.
            out.extend_from_slice(&(encoded.len() as u16).to_be_bytes());
            out.extend_from_slice(&encoded);
        }
        out
    }

    fn signed_bytes(&self, room: &RoomId) -> Vec<u8> {
        let mut out = room.as_bytes().to_vec();
        out.extend_from_slice(&self.body());
        out
    }
}

#[cfg(test)]
mod tests;
