//! Playback: one jitter buffer and decoder per speaker, mixed into 20 ms chunks.

use std::collections::HashMap;
use std::time::Instant;

use earshot_protocol::frame::{AudioFrame, SAMPLES_PER_FRAME, SILENCE_LEVEL, SpeakerId, level_of};

use super::FRAME_SAMPLES;
use super::codec::{CodecError, VoiceDecoder};
use super::jitter::{JitterBuffer, JitterStats, Playout};
use crate::fanout::Authenticity;

/// Voices mixed at most: a decoder each. Past this the voice heard least lately goes (only
/// stage members' verified frames reach the mixer, so this is a second line).
pub const MAX_VOICES: usize = 32;
/// A voice not heard for this long is forgotten (its decoder freed).
pub const VOICE_IDLE: std::time::Duration = std::time::Duration::from_secs(10);

struct Voice {
    buffer: JitterBuffer,
    decoder: VoiceDecoder,
    last_heard: Instant,
    /// Media-clock time of this speaker's sequence number 0 (timestamps advance one frame's
    /// worth of samples per sequence number).
    epoch: u32,
    /// The loudest this voice played since [`Mixer::take_levels`] (RFC 6464: 0 loudest, 127
    /// silent), measured on what was decoded.
    loudest: u8,
}

/// Mixes every speaker heard in a room.
#[derive(Default)]
pub struct Mixer {
    voices: HashMap<SpeakerId, Voice>,
    /// Capture timestamps of the frames in the last chunk, for latency measurement.
    played: Vec<u32>,
}

impl std::fmt::Debug for Mixer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Mixer({} voices)", self.voices.len())
    }
}

impl Mixer {
    pub fn new() -> Self {
        Self::default()
    }

    /// A frame arrived at `now`.
    pub fn push(&mut self, frame: AudioFrame, now: Instant) -> Result<(), CodecError> {
        self.push_checked(frame, None, now)
    }

    /// A frame arrived at `now`; it plays only while `auth` allows.
    pub fn push_checked(
        &mut self,
        frame: AudioFrame,
        auth: Option<Authenticity>,
        now: Instant,
    ) -> Result<(), CodecError> {
        if !self.voices.contains_key(&frame.speaker) {
            self.voices
                .retain(|_, voice| now.saturating_duration_since(voice.last_heard) < VOICE_IDLE);
            if self.voices.len() >= MAX_VOICES
                && let Some(oldest) = self
                    .voices
                    .iter()
                    .min_by_key(|(_, voice)| voice.last_heard)
                    .map(|(id, _)| *id)
            {
                self.voices.remove(&oldest);
            }
        }
        // A voice quiet for a while starts afresh (its sequence numbers moved on with the clock).
        if self
            .voices
            .get(&frame.speaker)
            .is_some_and(|voice| now.saturating_duration_since(voice.last_heard) >= VOICE_IDLE)
        {
            self.voices.remove(&frame.speaker);
        }
        let voice = match self.voices.entry(frame.speaker) {
            std::collections::hash_map::Entry::Occupied(entry) => entry.into_mut(),
            std::collections::hash_map::Entry::Vacant(entry) => entry.insert(Voice {
                buffer: JitterBuffer::new(),
                decoder: VoiceDecoder::new()?,
                last_heard: now,
                epoch: 0,
                loudest: SILENCE_LEVEL,
            }),
        };
        voice.last_heard = now;
        voice.epoch = frame
            .timestamp
            .wrapping_sub(frame.seq.wrapping_mul(SAMPLES_PER_FRAME));
        voice
            .buffer
            .push_checked(frame.seq, frame.payload, frame.level, auth, now);
        Ok(())
    }

    /// The next 20 ms of the room, mixed (soft-clipped so that loud speakers together do not
    /// wrap around).
    pub fn next_chunk(&mut self, now: Instant) -> Vec<f32> {
        let mut mix = vec![0.0f32; FRAME_SAMPLES];
        self.played.clear();
        for voice in self.voices.values_mut() {
            let decoded = match voice.buffer.pop(now) {
                Playout::Frame(payload) => {
                    if let Some(seq) = voice.buffer.last_played() {
                        self.played.push(
                            voice
                                .epoch
                                .wrapping_add(seq.wrapping_mul(SAMPLES_PER_FRAME)),
                        );
                    }
                    voice.decoder.decode(&payload)
                }
                Playout::Recover(next) => voice.decoder.recover(&next),
                Playout::Conceal => voice.decoder.conceal(),
                Playout::Silence => continue,
            };
            match decoded {
                Ok(samples) => {
                    voice.loudest = voice.loudest.min(level_of(&samples));
                    for (out, sample) in mix.iter_mut().zip(samples) {
                        *out += sample;
                    }
                }
                // A frame the decoder refuses is a lost frame.
                Err(err) => tracing::debug!(%err, "undecodable audio frame"),
            }
        }
        for sample in &mut mix {
            *sample = sample.clamp(-1.5, 1.5);
            *sample = *sample - *sample * *sample * *sample / 6.75;
        }
        mix
    }

    /// How loud each voice played since the last call (the loudest 20 ms of each), for
    /// showing who is talking: RFC 6464 levels, 0 loudest, 127 silent.
    pub fn take_levels(&mut self) -> Vec<(SpeakerId, u8)> {
        self.voices
            .iter_mut()
            .map(|(speaker, voice)| {
                (
                    *speaker,
                    std::mem::replace(&mut voice.loudest, SILENCE_LEVEL),
                )
            })
            .collect()
    }

    /// The media-clock capture times of the frames mixed into the last chunk.
    pub fn played(&self) -> &[u32] {
        &self.played
    }

    /// Frames expected from all speakers (first to last sequence number seen, per speaker).
    pub fn expected(&self) -> u64 {
        self.voices
            .values()
            .map(|voice| voice.buffer.expected())
            .sum()
    }

    /// Per-speaker jitter buffer counters.
    pub fn stats(&self) -> Vec<(SpeakerId, JitterStats)> {
        self.voices
            .iter()
            .map(|(speaker, voice)| (*speaker, voice.buffer.stats()))
            .collect()
    }

    /// The largest current jitter-buffer target among speakers.
    pub fn delay(&self) -> std::time::Duration {
        self.voices
            .values()
            .map(|voice| voice.buffer.target())
            .max()
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audio::codec::VoiceEncoder;
    use crate::audio::signal::{similarity_in_windows, sine, speechlike};

    /// Aligned half a second at a time (the jitter buffer may shorten its delay as it plays).
    fn similarity(reference: &[f32], output: &[f32]) -> f64 {
        similarity_in_windows(reference, output, 24_000)
    }
    use std::time::Duration;

    fn encode(samples: &[f32], speaker: u32) -> Vec<AudioFrame> {
        let mut encoder = VoiceEncoder::new().expect("encoder");
        samples
            .chunks_exact(FRAME_SAMPLES)
            .enumerate()
            .map(|(i, chunk)| {
                let encoded = encoder.encode(chunk).expect("encode");
                encoded.into_frame(SpeakerId(speaker), i as u32, i as u32 * 960)
            })
            .collect()
    }

    #[test]
    fn frames_under_thousands_of_ids_keep_the_decoders_bounded() {
        let mut mixer = Mixer::new();
        let now = Instant::now();
        let frame = encode(&vec![0.1; 960], 1).remove(0);
        for id in 0..2_000u32 {
            let mut f = frame.clone();
            f.speaker = SpeakerId(id);
            mixer.push(f, now).expect("a decoder");
        }
        assert_eq!(mixer.voices.len(), MAX_VOICES);
        // Quiet for longer than VOICE_IDLE: the next newcomer clears them.
        let later = now + VOICE_IDLE + std::time::Duration::from_millis(1);
        let mut f = frame;
        f.speaker = SpeakerId(5_000);
        mixer.push(f, later).expect("a decoder");
        assert_eq!(mixer.voices.len(), 1);
    }

    #[test]
    fn two_speakers_at_once_are_both_audible() {
        let a = speechlike(96_000, 11);
        let b = sine(660.0, 0.2, 96_000);
        let (frames_a, frames_b) = (encode(&a, 1), encode(&b, 2));
        let mut mixer = Mixer::new();
        let t0 = Instant::now();
        let mut out = Vec::new();
        for (i, (fa, fb)) in frames_a.into_iter().zip(frames_b).enumerate() {
            let now = t0 + Duration::from_millis(20 * i as u64);
            mixer.push(fa, now).expect("push");
            mixer.push(fb, now).expect("push");
            out.extend(mixer.next_chunk(now));
        }
        let mixed_reference: Vec<f32> = a.iter().zip(&b).map(|(x, y)| x + y).collect();
        assert!(similarity(&mixed_reference, &out) > 0.8);
        // Each voice is in the mix as strongly as its share of the energy says it should be:
        // for uncorrelated a and b, ncc(a, a + b) = |a| / |a + b|.
        let energy = |x: &[f32]| x.iter().map(|s| f64::from(*s).powi(2)).sum::<f64>().sqrt();
        let total = energy(&mixed_reference);
        for (voice, name) in [(&a, "speech"), (&b, "tone")] {
            let expected = energy(voice) / total;
            let measured = similarity(voice, &out);
            assert!(
                measured > 0.8 * expected,
                "{name}: {measured:.3}, expected about {expected:.3}"
            );
        }
        assert_eq!(mixer.stats().len(), 2);
        // Both were loud lately (the tone at 0.2, -14 dBov; the speech about as loud); once
        // taken, the levels start again from silence.
        let levels: HashMap<SpeakerId, u8> = mixer.take_levels().into_iter().collect();
        assert!((10..=20).contains(&levels[&SpeakerId(2)]), "{levels:?}");
        assert!(levels[&SpeakerId(1)] < 40, "{levels:?}");
        assert!(
            mixer
                .take_levels()
                .iter()
                .all(|(_, level)| *level == SILENCE_LEVEL)
        );
    }
}
