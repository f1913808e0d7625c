//! Checking frames against their speakers' proofs as both arrive, on one stream.
//!
//! Frames come first and are passed on at once; their proof follows (within
//! [`FRAMES_PER_PROOF`](super::FRAMES_PER_PROOF) frames). [`FrameAuth`] keeps each frame's hash
//! until its proof arrives, then says which frames verified and which were forged; frames whose
//! proof did not come are given up ([`FrameAuth::expire`]) once the stream has moved past them:
//! [`PROOF_DEADLINE_MS`] after they came *and* [`PAST_FRAMES`] later frames of their speaker
//! have come meanwhile (a proof comes before the frames after its batch, on a stream that keeps
//! order), or after [`PROOF_GIVE_UP_MS`] in any case. So a path that stalls (loss resent late:
//! everything after a lost packet waits for it) does not make its honest proofs look withheld,
//! and a parent that passes frames on without their proofs is caught all the same. A proof
//! may also arrive before a frame it covers (the frame was late on another hop): its hashes are
//! kept a moment for it. Every table is bounded: a stream cannot grow a node's memory by
//! sending frames of many speakers, or frames without proofs.
//!
//! Each pending frame carries a value of the caller's (`T`, say a flag the player reads), given
//! back with the verdict.

use std::collections::{BTreeMap, HashMap};

use super::{FrameHash, FrameProof, frame_hash};
use crate::frame::{AudioFrame, SpeakerId};
use crate::id::{PeerKey, RoomId};

/// How long a frame may wait for its proof, from its arrival. A speaker signs every 100 ms,
/// so a frame's proof follows it by at most 80 ms of audio plus scheduling.
pub const PROOF_DEADLINE_MS: u64 = 120;
/// Later frames of the same speaker that must have come before a waiting frame is past its
/// proof: two batches.
pub const PAST_FRAMES: u32 = 2 * super::FRAMES_PER_PROOF as u32;
/// How long a frame may wait for its proof whatever else comes.
pub const PROOF_GIVE_UP_MS: u64 = 1_000;
/// Frames of one speaker waiting for a proof, at most (more are refused as unproven).
pub const MAX_PENDING: usize = 64;
/// Speakers tracked on one stream at once; the least recently heard goes when another comes.
pub const MAX_VOICES: usize = 32;
/// Hashes of frames not seen yet, kept this long for them.
pub const PROVEN_KEEP_MS: u64 = 1_000;
/// A voice not heard for this long is forgotten.
const VOICE_IDLE_MS: u64 = 5_000;

/// A frame, as `(speaker, seq)`.
pub type FrameKey = (SpeakerId, u32);

/// What is known of a frame when it arrives.
#[derive(Debug)]
pub enum Arrival<T> {
    /// Its proof came first and matches.
    Verified,
    /// Waiting for its proof (the value is kept with it).
    Pending,
    /// Its proof came first and does not match: not the speaker's frame.
    Forged,
    /// A frame of this stream with this number is waiting already (the value is given back):
    /// a relay does not send a frame twice.
    Duplicate(T),
    /// More frames of this speaker wait for proofs than any honest speaker sends (the value is
    /// given back).
    Overflow(T),
}

/// What a proof settled.
#[derive(Debug)]
pub struct Settled<T> {
    /// Frames that waited and match.
    pub verified: Vec<(FrameKey, T)>,
    /// Frames that waited and do not: forged by whoever sent them on this stream.
    pub forged: Vec<(FrameKey, T)>,
}

impl<T> Default for Settled<T> {
    fn default() -> Self {
        Self {
            verified: Vec::new(),
            forged: Vec::new(),
        }
    }
}

/// Why a proof was refused: whoever sent it on this stream forged it (proofs are signed, and a
/// relay passes them on untouched).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BadProof {
    #[error("a proof for speaker {0:?}, who is not on stage")]
    NotOnStage(SpeakerId),
    #[error("a proof for speaker {0:?} that its key did not sign")]
    BadSignature(SpeakerId),
}

struct Waiting<T> {
    hash: FrameHash,
    since_ms: u64,
    value: T,
}

struct Voice<T> {
    pending: BTreeMap<u32, Waiting<T>>,
    /// The newest frame of this voice seen (wrapping).
    newest: Option<u32>,
    /// Hashes from proofs that came before their frames: seq → (hash, when).
    proven: BTreeMap<u32, (FrameHash, u64)>,
    last_ms: u64,
}

impl<T> Voice<T> {
    fn new(now_ms: u64) -> Self {
        Self {
            pending: BTreeMap::new(),
            newest: None,
            proven: BTreeMap::new(),
            last_ms: now_ms,
        }
    }
}

/// The frames and proofs of one stream, matched.
pub struct FrameAuth<T> {
    room: RoomId,
    voices: HashMap<SpeakerId, Voice<T>>,
}

impl<T> std::fmt::Debug for FrameAuth<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FrameAuth")
            .field("room", &self.room)
            .field("voices", &self.voices.len())
            .field("pending", &self.pending())
            .finish()
    }
}

impl<T> FrameAuth<T> {
    pub fn new(room: RoomId) -> Self {
        Self {
            room,
            voices: HashMap::new(),
        }
    }

    /// Frames waiting for a proof.
    pub fn pending(&self) -> usize {
        self.voices.values().map(|voice| voice.pending.len()).sum()
    }

    fn voice(&mut self, speaker: SpeakerId, now_ms: u64) -> &mut Voice<T> {
        if !self.voices.contains_key(&speaker) && self.voices.len() >= MAX_VOICES {
            // The least recently heard goes (its waiting frames are dropped with it: they will
            // never be played or recorded).
            if let Some(oldest) = self
                .voices
                .iter()
                .min_by_key(|(_, voice)| voice.last_ms)
                .map(|(id, _)| *id)
            {
                self.voices.remove(&oldest);
            }
        }
        let voice = self
            .voices
            .entry(speaker)
            .or_insert_with(|| Voice::new(now_ms));
        voice.last_ms = now_ms;
        voice
    }

    /// How long the oldest frame of `speaker` still waiting for its proof has waited, at
    /// `now_ms`. A speaker's proof follows the last frame it covers, before the next frame: a
    /// frame arriving while an older one waited a whole batch's time is past its proof.
    pub fn oldest_waiting_ms(&self, speaker: SpeakerId, now_ms: u64) -> Option<u64> {
        self.voices
            .get(&speaker)?
            .pending
            .values()
            .map(|waiting| now_ms.saturating_sub(waiting.since_ms))
            .max()
    }

    /// `frame` arrived on this stream at `now_ms`, with the caller's `value`.
    pub fn frame(&mut self, frame: &AudioFrame, value: T, now_ms: u64) -> Arrival<T> {
        let hash = frame_hash(frame);
        let voice = self.voice(frame.speaker, now_ms);
        if voice
            .newest
            .is_none_or(|newest| frame.seq.wrapping_sub(newest) as i32 > 0)
        {
            voice.newest = Some(frame.seq);
        }
        if let Some((proven, _)) = voice.proven.remove(&frame.seq) {
            return if proven == hash {
                Arrival::Verified
            } else {
                Arrival::Forged
            };
        }
        if voice.pending.contains_key(&frame.seq) {
            return Arrival::Duplicate(value);
        }
        if voice.pending.len() >= MAX_PENDING {
            return Arrival::Overflow(value);
        }
        voice.pending.insert(
            frame.seq,
            Waiting {
                hash,
                since_ms: now_ms,
                value,
            },
        );
        Arrival::Pending
    }

    /// A proof arrived on this stream. `keys` are the stage members whose speaker id is the
    /// proof's (normally one): it must be signed by one of them.
    pub fn proof(
        &mut self,
        proof: &FrameProof,
        keys: &[PeerKey],
        now_ms: u64,
    ) -> Result<Settled<T>, BadProof> {
        if keys.is_empty() {
            return Err(BadProof::NotOnStage(proof.speaker));
        }
        if !keys.iter().any(|key| proof.verify(&self.room, key)) {
            return Err(BadProof::BadSignature(proof.speaker));
        }
        let speaker = proof.speaker;
        let voice = self.voice(speaker, now_ms);
        let mut settled = Settled::default();
        for seq in proof.seqs() {
            let Some(hash) = proof.hash_of(seq) else {
                continue;
            };
            match voice.pending.remove(&seq) {
                Some(waiting) if waiting.hash == *hash => {
                    settled.verified.push(((speaker, seq), waiting.value));
                }
                Some(waiting) => settled.forged.push(((speaker, seq), waiting.value)),
                None => {
                    if voice.proven.len() >= MAX_PENDING {
                        voice.proven.pop_first();
                    }
                    voice.proven.insert(seq, (*hash, now_ms));
                }
            }
        }
        Ok(settled)
    }

    /// Frames whose proof did not come, given up at `now_ms`: the stream moved past them, or
    /// they waited [`PROOF_GIVE_UP_MS`] (and forgotten, with proofs kept too long and voices
    /// gone quiet).
    pub fn expire(&mut self, now_ms: u64) -> Vec<(FrameKey, T)> {
        let mut late = Vec::new();
        for (speaker, voice) in &mut self.voices {
            let newest = voice.newest;
            let overdue: Vec<u32> = voice
                .pending
                .iter()
                .filter(|(seq, waiting)| {
                    let waited = now_ms.saturating_sub(waiting.since_ms);
                    let passed = newest.is_some_and(|newest| {
                        i64::from(newest.wrapping_sub(**seq) as i32) >= i64::from(PAST_FRAMES)
                    });
                    waited > PROOF_GIVE_UP_MS || (waited > PROOF_DEADLINE_MS && passed)
                })
                .map(|(seq, _)| *seq)
                .collect();
            for seq in overdue {
                if let Some(waiting) = voice.pending.remove(&seq) {
                    late.push(((*speaker, seq), waiting.value));
                }
            }
            voice
                .proven
                .retain(|_, (_, at)| now_ms.saturating_sub(*at) <= PROVEN_KEEP_MS);
        }
        self.voices.retain(|_, voice| {
            !voice.pending.is_empty() || now_ms.saturating_sub(voice.last_ms) <= VOICE_IDLE_MS
        });
        late
    }
}
