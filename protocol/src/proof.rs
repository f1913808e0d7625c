//! Audio nobody in the middle can fake: speakers sign their frames in batches, every hop checks.
//!
//! A frame is ~100 bytes at 32 kbit/s and an Ed25519 signature 64, so a signature covers
//! several frames: a speaker hashes each frame it sends ([`frame_hash`]: SHA-256, truncated to
//! [`HASH_BYTES`]) and, after every [`FRAMES_PER_PROOF`] frames (or before a pause), sends a
//! [`FrameProof`]: the frames' hashes, signed with the speaker's key over the room's id. Each
//! frame verifies on its own once its proof arrives (a frame lost, or left out by the host's
//! loudest-N selection, orphans no other), so relays forward frames at once and check them as
//! proofs arrive ([`check::FrameAuth`]).
//!
//! The host also signs a [`progress::Progress`] beacon every [`progress::BEACON_INTERVAL_MS`]:
//! how many frames it has sent down the tree so far and the newest of each voice. Beacons go
//! down the same ordered streams as frames, so a child that receives one has received every
//! frame the host sent before it, unless someone above withheld them
//! ([`progress::Withholding`]).
//!
//! Layouts are fixed and big-endian like frames' (the hot path):
//!
//! ```text
//! proof:    version u8 | speaker u32 | first_seq u32 | count u8 | hashes count×12 | signature 64
//! progress: version u8 | n u32 | forwarded u32 | count u8 | (speaker u32, seq u32)×count | signature 64
//! ```
//!
//! Signed bytes are a domain, the room's id, then the layout up to the signature.

use sha2::{Digest, Sha256};

use crate::frame::{AudioFrame, HEADER_BYTES, SpeakerId};
use crate::id::{PeerKey, RoomId, Sig};

pub mod check;
pub mod progress;
#[cfg(test)]
mod tests;

/// Bytes of a frame's hash in a proof: 80 bits, so a forger needs a second preimage of SHA-256
/// truncated to 80 bits (2^80 hashes) per frame.
pub const HASH_BYTES: usize = 10;
/// Frames a speaker covers with one signature: 100 ms of voice. 124 bytes of proof per five
/// frames of ~100: 25 % on top of the voice at 32 kbit/s (26 % with the stream's framing).
pub const FRAMES_PER_PROOF: usize = 5;
/// Most frames one proof may cover.
pub const MAX_FRAMES_PER_PROOF: usize = 16;
/// Format of proofs and beacons.
pub const PROOF_VERSION: u8 = 1;
/// Largest encoded proof.
pub const MAX_PROOF_BYTES: usize = 10 + MAX_FRAMES_PER_PROOF * HASH_BYTES + 64;

const PROOF_DOMAIN: &[u8] = b"earshot/frame-proof/v1\0";

/// A frame's hash as proofs carry it.
pub type FrameHash = [u8; HASH_BYTES];

/// The hash a proof carries for `frame`: SHA-256 of its encoding up to the payload's end (the
/// optional tag is not part of what the speaker said), truncated.
pub fn frame_hash(frame: &AudioFrame) -> FrameHash {
    let encoded = frame.encode();
    let end = (HEADER_BYTES + frame.payload.len()).min(encoded.len());
    let digest = Sha256::digest(&encoded[..end]);
    let mut hash = [0u8; HASH_BYTES];
    hash.copy_from_slice(&digest[..HASH_BYTES]);
    hash
}

/// A speaker's signature over the hashes of consecutive frames `first_seq..first_seq + n`.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct FrameProof {
    pub speaker: SpeakerId,
    pub first_seq: u32,
    pub hashes: Vec<FrameHash>,
    pub signature: Sig,
}

/// Why bytes are not a proof (or a beacon).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProofError {
    #[error("proof of {len} bytes does not match its header")]
    Length { len: usize },
    #[error("unsupported proof version {0}")]
    Version(u8),
    #[error("a proof must cover 1 to {MAX_FRAMES_PER_PROOF} frames, not {0}")]
    Count(usize),
}

impl FrameProof {
    /// Signs the hashes of frames `first_seq..` of `speaker`'s voice in `room`.
    pub fn sign(
        key: &ed25519_dalek::SigningKey,
        room: &RoomId,
        first_seq: u32,
        hashes: Vec<FrameHash>,
    ) -> Self {
        let mut proof = Self {
            speaker: SpeakerId::of(&PeerKey::from(key)),
            first_seq,
            hashes,
            signature: Sig([0; 64]),
        };
        proof.hashes.truncate(MAX_FRAMES_PER_PROOF);
        proof.signature = Sig::sign(key, PROOF_DOMAIN, &proof.signed_bytes(room));
        proof
    }

    /// Whether `signer` signed this proof for `room`.
    pub fn verify(&self, room: &RoomId, signer: &PeerKey) -> bool {
        SpeakerId::of(signer) == self.speaker
            && self
                .signature
                .verify(signer, PROOF_DOMAIN, &self.signed_bytes(room))
    }

    /// The sequence numbers this proof covers, in order (wrapping).
    pub fn seqs(&self) -> impl Iterator<Item = u32> + '_ {
        (0..self.hashes.len() as u32).map(|i| self.first_seq.wrapping_add(i))
    }

    /// The hash this proof gives for frame `seq`, if it covers it.
    pub fn hash_of(&self, seq: u32) -> Option<&FrameHash> {
        let offset = seq.wrapping_sub(self.first_seq) as usize;
        self.hashes.get(offset)
    }

    fn body(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(10 + self.hashes.len() * HASH_BYTES + 64);
        out.push(PROOF_VERSION);
        out.extend_from_slice(&self.speaker.0.to_be_bytes());
        out.extend_from_slice(&self.first_seq.to_be_bytes());
        out.push(self.hashes.len() as u8);
        for hash in &self.hashes {
            out.extend_from_slice(hash);
        }
        out
    }

    fn signed_bytes(&self, room: &RoomId) -> Vec<u8> {
        let mut out = room.as_bytes().to_vec();
        out.extend_from_slice(&self.body());
        out
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = self.body();
        out.extend_from_slice(&self.signature.0);
        out
    }

    /// Reads a proof; malformed input is an error, never a panic. The signature is not checked
    /// here ([`Self::verify`]).
    pub fn decode(bytes: &[u8]) -> Result<Self, ProofError> {
        let len = bytes.len();
        if !(10 + 64..=MAX_PROOF_BYTES).contains(&len) {
            return Err(ProofError::Length { len });
        }
        if bytes[0] != PROOF_VERSION {
            return Err(ProofError::Version(bytes[0]));
        }
        let count = usize::from(bytes[9]);
        if count == 0 || count > MAX_FRAMES_PER_PROOF {
            return Err(ProofError::Count(count));
        }
        if len != 10 + count * HASH_BYTES + 64 {
            return Err(ProofError::Length { len });
        }
        let u32_at = |at: usize| {
            u32::from_be_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
        };
        let hashes = bytes[10..10 + count * HASH_BYTES]
            .chunks_exact(HASH_BYTES)
            .map(|chunk| {
                let mut hash = [0u8; HASH_BYTES];
                hash.copy_from_slice(chunk);
                hash
            })
            .collect();
        let mut signature = [0u8; 64];
        signature.copy_from_slice(&bytes[len - 64..]);
        Ok(Self {
            speaker: SpeakerId(u32_at(1)),
            first_seq: u32_at(5),
            hashes,
            signature: Sig(signature),
        })
    }
}

/// A speaker's side: hashes the frames it sends and signs them in batches.
pub struct ProofSigner {
    key: ed25519_dalek::SigningKey,
    room: RoomId,
    first_seq: u32,
    hashes: Vec<FrameHash>,
    per_proof: usize,
}

impl std::fmt::Debug for ProofSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProofSigner")
            .field("room", &self.room)
            .field("pending", &self.hashes.len())
            .finish()
    }
}

impl ProofSigner {
    pub fn new(key: ed25519_dalek::SigningKey, room: RoomId) -> Self {
        Self::with_batch(key, room, FRAMES_PER_PROOF)
    }

    /// A signer covering `per_proof` frames (1 to [`MAX_FRAMES_PER_PROOF`]) per signature.
    pub fn with_batch(key: ed25519_dalek::SigningKey, room: RoomId, per_proof: usize) -> Self {
        Self {
            key,
            room,
            first_seq: 0,
            hashes: Vec::new(),
            per_proof: per_proof.clamp(1, MAX_FRAMES_PER_PROOF),
        }
    }

    /// The key it signs with.
    pub fn key(&self) -> &ed25519_dalek::SigningKey {
        &self.key
    }

    /// This speaker's id.
    pub fn speaker(&self) -> SpeakerId {
        SpeakerId::of(&PeerKey::from(&self.key))
    }

    /// `frame` is about to be sent: the proofs it makes, in the order they go with it (a batch
    /// that the frame does not continue is signed first; a full batch with it).
    pub fn push(&mut self, frame: &AudioFrame) -> Vec<FrameProof> {
        let (before, after) = self.push_around(frame);
        before.into_iter().chain(after).collect()
    }

    /// [`Self::push`], saying where each proof goes: `before` the frame (it covers the frames
    /// before it, which this one does not continue: checkers expect a batch's proof before the
    /// next frame), `after` it (the batch it completes).
    pub fn push_around(&mut self, frame: &AudioFrame) -> (Option<FrameProof>, Option<FrameProof>) {
        let next = self.first_seq.wrapping_add(self.hashes.len() as u32);
        let before = if !self.hashes.is_empty() && frame.seq != next {
            self.flush()
        } else {
            None
        };
        if self.hashes.is_empty() {
            self.first_seq = frame.seq;
        }
        self.hashes.push(frame_hash(frame));
        let after = if self.hashes.len() >= self.per_proof {
            self.flush()
        } else {
            None
        };
        (before, after)
    }

    /// Signs the frames sent since the last proof (before a pause, or at the end).
    pub fn flush(&mut self) -> Option<FrameProof> {
        if self.hashes.is_empty() {
            return None;
        }
        let hashes = std::mem::take(&mut self.hashes);
        Some(FrameProof::sign(
            &self.key,
            &self.room,
            self.first_seq,
            hashes,
        ))
    }

    /// Whether frames wait for their proof.
    pub fn pending(&self) -> usize {
        self.hashes.len()
    }
}
