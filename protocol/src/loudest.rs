//! Which speakers the host forwards down the relay tree: the loudest few, by the level field of
//! their frames (no decoding). Pure: the caller passes the time.
//!
//! A room may have many people on stage, but a listener can follow only a few voices at once and
//! every forwarded voice costs every relay upload. The host forwards at most `n` speakers: those
//! already forwarded keep their place while they keep talking; a newcomer takes a free place, or
//! the place of the quietest forwarded speaker once it is clearly louder (by [`TAKEOVER_DB`]),
//! so that two voices of similar loudness do not flap in and out (each switch costs the listener
//! a jitter-buffer restart). A speaker that stops sending frames (it left, was muted, or DTX)
//! frees its place after [`FORGET_MS`].

use std::collections::BTreeMap;

use crate::frame::{SILENCE_LEVEL, SpeakerId};

/// How many speakers the host forwards by default.
pub const DEFAULT_FORWARDED: usize = 3;
/// How much louder (in dB) a newcomer must be than the quietest forwarded speaker to replace it.
pub const TAKEOVER_DB: f32 = 6.0;
/// A forwarded speaker not heard for this long loses its place.
pub const FORGET_MS: u64 = 300;
/// Voices weighed at once, at most.
pub const MAX_VOICES: usize = 64;
/// Loudness is smoothed over about this many frames (an exponential moving average).
const SMOOTHING_FRAMES: f32 = 10.0;

#[derive(Clone, Copy, Debug)]
struct Voice {
    /// Smoothed loudness in dB above silence (0 silent … 127 full scale).
    loudness: f32,
    last_heard_ms: u64,
    forwarded: bool,
}

/// The host's choice of voices to forward.
#[derive(Clone, Debug)]
pub struct Loudest {
    n: usize,
    voices: BTreeMap<SpeakerId, Voice>,
}

impl Loudest {
    /// Forwards at most `n` speakers at a time (at least one).
    pub fn new(n: usize) -> Self {
        Self {
            n: n.max(1),
            voices: BTreeMap::new(),
        }
    }

    /// A frame from `speaker` with RFC 6464 `level` (0 loudest … 127 silent) arrived at `now_ms`:
    /// should it be forwarded?
    pub fn offer(&mut self, speaker: SpeakerId, level: u8, now_ms: u64) -> bool {
        let heard = f32::from(SILENCE_LEVEL - level.min(SILENCE_LEVEL));
        // Places held by speakers gone quiet are free again.
        for voice in self.voices.values_mut() {
            if voice.forwarded && now_ms.saturating_sub(voice.last_heard_ms) > FORGET_MS {
                voice.forwarded = false;
            }
        }
        self.voices
            .retain(|_, voice| now_ms.saturating_sub(voice.last_heard_ms) <= 10 * FORGET_MS);
        // Bounded whatever arrives: a newcomer past MAX_VOICES is not considered (the host
        // admits only the stage's voices, so this is a second line).
        if !self.voices.contains_key(&speaker) && self.voices.len() >= MAX_VOICES {
            return false;
        }
        let voice = self.voices.entry(speaker).or_insert(Voice {
            loudness: heard,
            last_heard_ms: now_ms,
            forwarded: false,
        });
        voice.loudness += (heard - voice.loudness) / SMOOTHING_FRAMES;
        voice.last_heard_ms = now_ms;
        if voice.forwarded {
            return true;
        }
        let loudness = voice.loudness;
        let forwarded = self.voices.values().filter(|v| v.forwarded).count();
        if forwarded < self.n {
            return self.forward(speaker);
        }
        let quietest = self
            .voices
            .iter()
            .filter(|(_, v)| v.forwarded)
            .min_by(|a, b| a.1.loudness.total_cmp(&b.1.loudness))
            .map(|(id, v)| (*id, v.loudness));
        match quietest {
            Some((id, quiet)) if loudness > quiet + TAKEOVER_DB => {
                if let Some(voice) = self.voices.get_mut(&id) {
                    voice.forwarded = false;
                }
                self.forward(speaker)
            }
            _ => false,
        }
    }

    fn forward(&mut self, speaker: SpeakerId) -> bool {
        if let Some(voice) = self.voices.get_mut(&speaker) {
            voice.forwarded = true;
        }
        true
    }

    /// The speakers forwarded now.
    pub fn forwarded(&self) -> Vec<SpeakerId> {
        self.voices
            .iter()
            .filter(|(_, v)| v.forwarded)
            .map(|(id, _)| *id)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every speaker sends one frame per 20 ms at its level, for `frames` frames from `t0`;
    /// returns how many of each speaker's frames were forwarded.
    fn talk(loudest: &mut Loudest, speakers: &[(u32, u8)], t0: u64, frames: u64) -> Vec<u64> {
        let mut forwarded = vec![0; speakers.len()];
        for i in 0..frames {
            for (k, &(id, level)) in speakers.iter().enumerate() {
                if loudest.offer(SpeakerId(id), level, t0 + 20 * i) {
                    forwarded[k] += 1;
                }
            }
        }
        forwarded
    }

    #[test]
    fn the_loudest_three_of_five_are_forwarded() {
        let mut loudest = Loudest::new(3);
        // The quiet ones speak first, so they hold places until the loud ones take over.
        let speakers = [(1, 60), (2, 55), (3, 20), (4, 25), (5, 30)];
        talk(&mut loudest, &speakers, 0, 50);
        assert_eq!(
            loudest.forwarded(),
            vec![SpeakerId(3), SpeakerId(4), SpeakerId(5)]
        );
        let later = talk(&mut loudest, &speakers, 1000, 50);
        assert_eq!(later, vec![0, 0, 50, 50, 50]);
    }

    #[test]
    fn similar_voices_do_not_flap() {
        let mut loudest = Loudest::new(1);
        // Two voices within a few dB of each other, the newcomer a little louder.
        let first = talk(&mut loudest, &[(1, 30)], 0, 10);
        let both = talk(&mut loudest, &[(1, 30), (2, 27)], 200, 100);
        assert_eq!(first, vec![10]);
        assert_eq!(both, vec![100, 0]);
    }

    #[test]
    fn a_speaker_who_stops_frees_the_place() {
        let mut loudest = Loudest::new(1);
        talk(&mut loudest, &[(1, 20)], 0, 10);
        // Speaker 1 stops; speaker 2, quieter, is forwarded once 1 has been gone long enough.
        let heard = talk(&mut loudest, &[(2, 50)], 200, 30);
        let waited = FORGET_MS / 20;
        assert!(heard[0] >= 30 - waited - 1, "{heard:?}");
        assert_eq!(loudest.forwarded(), vec![SpeakerId(2)]);
    }

    #[test]
    fn ten_thousand_ids_in_a_burst_keep_the_table_bounded() {
        let mut loudest = Loudest::new(3);
        for id in 0..10_000u32 {
            loudest.offer(SpeakerId(id), 0, 0);
        }
        assert!(loudest.voices.len() <= MAX_VOICES);
    }

    #[test]
    fn the_host_alone_is_always_forwarded() {
        let mut loudest = Loudest::new(3);
        assert_eq!(talk(&mut loudest, &[(7, SILENCE_LEVEL)], 0, 100), vec![100]);
    }
}
