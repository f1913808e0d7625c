//! Noticing a parent that withholds: the host's signed progress beacons.
//!
//! Every [`BEACON_INTERVAL_MS`] the host signs a [`Progress`]: a counter, how many frames it
//! has sent down the tree so far, and the newest frame of each voice it forwards. Beacons go
//! down the same ordered streams as the frames, so when a child reads one it has read every
//! frame the host sent before it, unless a node above dropped them. [`Withholding`] compares,
//! beacon by beacon, the frames the host sent with the fresh frames this stream delivered: a
//! parent that passes only keep-alives, a trickle, or a replay of old frames (not fresh: far
//! behind the newest the host announced) while the room talks is caught at the first beacon
//! after a whole interval of it, within a second. One that drops the beacons too is caught by
//! their absence ([`Withholding::silent`]). Loss on the way does not count against a parent:
//! streams are reliable, a frame resent arrives late but still before the next beacon.

use std::collections::HashMap;

use super::{PROOF_VERSION, ProofError};
use crate::frame::SpeakerId;
use crate::id::{PeerKey, RoomId, Sig};

/// How often the host signs a beacon.
pub const BEACON_INTERVAL_MS: u64 = 500;
/// Voices a beacon lists at most (the host forwards a few).
pub const MAX_BEACON_VOICES: usize = 8;
/// A stream that delivered no new beacon for this long withholds them.
pub const BEACON_SILENCE_MS: u64 = 3_000;
/// An interval is judged only when the host sent at least this many frames in it.
pub const MIN_FRAMES_JUDGED: u64 = 10;
/// Frames this far behind the newest the host announced for their voice are not fresh (2 s).
pub const FRESH_FRAMES: u32 = 100;
/// Largest encoded beacon.
pub const MAX_PROGRESS_BYTES: usize = 10 + MAX_BEACON_VOICES * 8 + 64;

const PROGRESS_DOMAIN: &[u8] = b"earshot/progress/v1\0";

/// The host's signed account of what it sent down the tree.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Progress {
    /// +1 per beacon (wrapping).
    pub n: u32,
    /// Frames the host has sent down so far (wrapping).
    pub forwarded: u32,
    /// The newest frame of each voice it forwards.
    pub newest: Vec<(SpeakerId, u32)>,
    pub signature: Sig,
}

impl Progress {
    pub fn sign(
        key: &ed25519_dalek::SigningKey,
        room: &RoomId,
        n: u32,
        forwarded: u32,
        mut newest: Vec<(SpeakerId, u32)>,
    ) -> Self {
        newest.truncate(MAX_BEACON_VOICES);
        let mut progress = Self {
            n,
            forwarded,
            newest,
            signature: Sig([0; 64]),
        };
        progress.signature = Sig::sign(key, PROGRESS_DOMAIN, &progress.signed_bytes(room));
        progress
    }

    /// Whether the room's host signed this beacon.
    pub fn verify(&self, room: &RoomId, host: &PeerKey) -> bool {
        self.signature
            .verify(host, PROGRESS_DOMAIN, &self.signed_bytes(room))
    }

    fn body(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(10 + self.newest.len() * 8 + 64);
        out.push(PROOF_VERSION);
        out.extend_from_slice(&self.n.to_be_bytes());
        out.extend_from_slice(&self.forwarded.to_be_bytes());
        out.push(self.newest.len() as u8);
        for (speaker, seq) in &self.newest {
            out.extend_from_slice(&speaker.0.to_be_bytes());
            out.extend_from_slice(&seq.to_be_bytes());
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

    /// Reads a beacon; malformed input is an error, never a panic.
    pub fn decode(bytes: &[u8]) -> Result<Self, ProofError> {
        let len = bytes.len();
        if !(10 + 64..=MAX_PROGRESS_BYTES).contains(&len) {
            return Err(ProofError::Length { len });
        }
        if bytes[0] != PROOF_VERSION {
            return Err(ProofError::Version(bytes[0]));
        }
        let count = usize::from(bytes[9]);
        if count > MAX_BEACON_VOICES || len != 10 + count * 8 + 64 {
            return Err(ProofError::Length { len });
        }
        let u32_at = |at: usize| {
            u32::from_be_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
        };
        let newest = (0..count)
            .map(|i| {
                let at = 10 + i * 8;
                (SpeakerId(u32_at(at)), u32_at(at + 4))
            })
            .collect();
        let mut signature = [0u8; 64];
        signature.copy_from_slice(&bytes[len - 64..]);
        Ok(Self {
            n: u32_at(1),
            forwarded: u32_at(5),
            newest,
            signature: Sig(signature),
        })
    }
}

/// What a beacon says about the stream that delivered it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Judged {
    /// Nothing to hold against it.
    Fine,
    /// The host sent `sent` frames since the last beacon; this stream delivered `fresh`.
    Withheld { sent: u64, fresh: u64 },
    /// A beacon older than one this stream delivered already: replayed.
    Replayed,
}

/// One stream's frames against the host's beacons.
#[derive(Debug, Clone)]
pub struct Withholding {
    last: Option<(u32, u32)>,
    fresh: u64,
    newest: HashMap<SpeakerId, u32>,
    last_beacon_ms: u64,
}

impl Withholding {
    /// A stream opened at `now_ms`.
    pub fn new(now_ms: u64) -> Self {
        Self {
            last: None,
            fresh: 0,
            newest: HashMap::new(),
            last_beacon_ms: now_ms,
        }
    }

    /// A frame (not found forged) arrived on the stream.
    pub fn frame(&mut self, speaker: SpeakerId, seq: u32) {
        let fresh = match self.newest.get(&speaker) {
            // Stale: more than FRESH_FRAMES behind the newest announced (wrapping; ahead of it
            // is fresh).
            Some(newest) => {
                let behind = newest.wrapping_sub(seq);
                !(behind > FRESH_FRAMES && behind < u32::MAX / 2)
            }
            None => true,
        };
        if fresh {
            self.fresh += 1;
        }
    }

    /// A beacon the host signed (checked by the caller) arrived at `now_ms`.
    pub fn beacon(&mut self, beacon: &Progress, now_ms: u64) -> Judged {
        // Not after the last one (wrapping): replayed.
        if let Some((n, _)) = self.last
            && beacon.n.wrapping_sub(n).wrapping_sub(1) >= u32::MAX / 2
        {
            return Judged::Replayed;
        }
        self.last_beacon_ms = now_ms;
        let fresh = std::mem::take(&mut self.fresh);
        let previous = self.last.replace((beacon.n, beacon.forwarded));
        self.newest.clear();
        self.newest.extend(beacon.newest.iter().copied());
        let Some((_, forwarded)) = previous else {
            // The first beacon on a stream only sets the baseline.
            return Judged::Fine;
        };
        let sent = u64::from(beacon.forwarded.wrapping_sub(forwarded));
        if sent >= MIN_FRAMES_JUDGED && fresh * 2 < sent {
            Judged::Withheld { sent, fresh }
        } else {
            Judged::Fine
        }
    }

    /// Whether the stream has delivered no beacon for too long at `now_ms`.
    pub fn silent(&self, now_ms: u64) -> bool {
        now_ms.saturating_sub(self.last_beacon_ms) > BEACON_SILENCE_MS
    }
}
