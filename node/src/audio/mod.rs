//! Audio: everything between a microphone (or a WAV file, or a generated signal) and Opus
//! frames, and back to a speaker (or a WAV file).
//!
//! - [`io`]: headless endpoints: a paced source (WAV, sine, silence) and a player into a WAV file.
//! - [`codec`]: Opus voice encoder and decoder with Earshot's settings (48 kHz mono, 20 ms, VOIP,
//!   ~32 kbps VBR, in-band FEC, DTX), concealment (PLC) and FEC recovery.
//! - [`jitter`]: the per-speaker adaptive jitter buffer (pure: time is passed in).
//! - [`mixer`]: playback: a jitter buffer and decoder per speaker, mixed.
//! - [`wav`]: WAV files in any common rate and channel count, converted to 48 kHz mono.
//! - [`resample`]: sample-rate conversion.
//! - [`signal`]: generated test signals and the similarity measure tests use.
//!
//! **Invariant:** audio never waits on the network: these are plain, synchronous building blocks
//! for capture and playback threads that exchange frames with the node through bounded queues.

pub mod codec;
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
