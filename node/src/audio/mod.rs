//! Audio: everything between a microphone (or a WAV file, or a generated signal) and Opus
//! frames, and back to a speaker (or a WAV file).
//!
//! - [`device`]: sound cards through cpal: listing, microphone capture, speaker playback.
//! - [`io`]: the source and player threads: voice from a microphone, a WAV file, a sine or
//!   silence; the room to a speaker, a WAV file or nowhere.
//! - [`codec`]: Opus voice encoder and decoder with Earshot's settings (48 kHz mono, 20 ms, VOIP,
//!   ~32 kbps VBR, in-band FEC, DTX), concealment (PLC) and FEC recovery.
//! - [`jitter`]: the per-speaker adaptive jitter buffer (pure: time is passed in).
//! - [`mixer`]: playback: a jitter buffer and decoder per speaker, mixed.
//! - [`wav`]: WAV files in any common rate and channel count, converted to 48 kHz mono.
//! - [`resample`]: sample-rate conversion, streaming (one windowed-sinc resampler, `rubato`).
//! - [`signal`]: generated test signals and the similarity measure tests use.
//!
//! **Invariant:** audio never waits on the network: these are plain, synchronous building blocks
//! for capture and playback threads that exchange frames with the node through bounded queues.

pub mod codec;
pub mod device;
pub mod io;
pub mod jitter;
pub mod mixer;
pub mod resample;
pub mod signal;
pub mod wav;

/// The one sample rate inside Earshot.
pub const SAMPLE_RATE: u32 = 48_000;
/// Samples in one 20 ms frame at 48 kHz.
pub const FRAME_SAMPLES: usize = 960;
/// One frame's duration.
pub const FRAME_DURATION: std::time::Duration = std::time::Duration::from_millis(20);

/// The media clock: the wall clock (time since the UNIX epoch) in 48 kHz ticks, wrapping every
/// 2³² ticks (~24.9 hours). Frames carry the media-clock time their first sample was captured,
/// so any node whose clock agrees with the speaker's (the same machine, or NTP) can tell how old
/// a frame is when it plays: mouth-to-ear latency, measured per frame.
pub fn media_now() -> u32 {
    let since_epoch = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    // Truncation is the wrap-around.
    (since_epoch.as_micros() * u128::from(SAMPLE_RATE) / 1_000_000) as u32
}

/// How long before media-clock time `now` the media-clock time `then` was (negative if after),
/// in milliseconds. Correct while the two are within ~12 hours of each other.
pub fn media_age_ms(then: u32, now: u32) -> f64 {
    f64::from(now.wrapping_sub(then) as i32) * 1000.0 / f64::from(SAMPLE_RATE)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn media_clock_ages_wrap_around() {
        assert_eq!(media_age_ms(0, 48), 1.0);
        assert_eq!(media_age_ms(u32::MAX - 47, 48), 2.0);
        assert_eq!(media_age_ms(96, 48), -1.0);
        let now = media_now();
        assert!(media_age_ms(now, media_now()) >= 0.0);
    }
}
