//! Headless audio endpoints: a paced source (a WAV file, a sine, silence) that encodes frames,
//! and a player that mixes what a room sends into a WAV file (or nowhere).
//!
//! Each runs on its own thread with a deadline clock (frame `n` is due at `start + n × 20 ms`),
//! so neither ever waits on the network: the source hands frames to a non-blocking sink, and the
//! player drains a bounded queue once per slot.

use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Instant;

use earshot_protocol::frame::{AudioFrame, SpeakerId};
use tokio::sync::mpsc;

use super::codec::{CodecError, VoiceEncoder};
use super::mixer::Mixer;
use super::signal::sine;
use super::wav::{self, WavError};
use super::{FRAME_DURATION, FRAME_SAMPLES, SAMPLE_RATE};

/// Where a speaker's voice comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// A WAV file (any common rate and channel count), played once, then silence.
    Wav(PathBuf),
    /// A tone at this many hertz (`sine` is 440 Hz, `sine:660` 660 Hz).
    Sine(u16),
    Silence,
}

/// Where a room's audio goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    Wav(PathBuf),
    Null,
}

impl FromStr for Input {
    type Err = std::convert::Infallible;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Ok(match text {
            "sine" => Input::Sine(440),
            text if text.starts_with("sine:") => match text["sine:".len()..].parse() {
                Ok(hertz) => Input::Sine(hertz),
                Err(_) => Input::Wav(PathBuf::from(text)),
            },
            "silence" => Input::Silence,
            path => Input::Wav(PathBuf::from(path)),
        })
    }
}

impl FromStr for Output {
    type Err = std::convert::Infallible;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Ok(match text {
            "null" => Output::Null,
            path => Output::Wav(PathBuf::from(path)),
        })
    }
}

/// Why an audio endpoint failed.
#[derive(Debug, thiserror::Error)]
pub enum AudioIoError {
    #[error(transparent)]
    Wav(#[from] WavError),
    #[error(transparent)]
    Codec(#[from] CodecError),
    #[error("could not start the audio thread: {0}")]
    Thread(std::io::Error),
}

/// What a player did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PlayStats {
    pub frames_heard: u64,
    pub chunks_played: u64,
}

/// Starts speaking `input` as `speaker`: every 20 ms, one encoded frame goes to `send` (which
/// must not block). Runs until `stop` is set.
pub fn spawn_source(
    input: Input,
    speaker: SpeakerId,
    mut send: impl FnMut(AudioFrame) + Send + 'static,
    stop: Arc<AtomicBool>,
) -> Result<JoinHandle<()>, AudioIoError> {
    let samples = match &input {
        Input::Wav(path) => wav::read(path)?,
        // A whole number of cycles per second, so that looping it is seamless.
        Input::Sine(hertz) => sine(f32::from(*hertz), 0.3, SAMPLE_RATE as usize),
        Input::Silence => Vec::new(),
    };
    let looping = matches!(input, Input::Sine(_));
    let mut encoder = VoiceEncoder::new()?;
    std::thread::Builder::new()
        .name("earshot-source".into())
        .spawn(move || {
            let start = Instant::now();
            let silence = vec![0.0f32; FRAME_SAMPLES];
            let mut n: usize = 0;
            while !stop.load(Ordering::Relaxed) {
                let due = start + FRAME_DURATION * u32::try_from(n).unwrap_or(u32::MAX);
                if let Some(wait) = due.checked_duration_since(Instant::now()) {
                    std::thread::sleep(wait);
                }
                let offset = n * FRAME_SAMPLES;
                let chunk = if looping && !samples.is_empty() {
                    let at = offset % (samples.len() - samples.len() % FRAME_SAMPLES).max(1);
                    samples.get(at..at + FRAME_SAMPLES).unwrap_or(&silence)
                } else {
                    samples
                        .get(offset..offset + FRAME_SAMPLES)
                        .unwrap_or(&silence)
                };
                match encoder.encode(chunk) {
                    // Sequence numbers wrap, as the frame format expects.
                    Ok(encoded) => send(encoded.into_frame(speaker, n as u32)),
                    Err(err) => tracing::warn!(%err, "could not encode a frame"),
                }
                n += 1;
            }
        })
        .map_err(AudioIoError::Thread)
}

/// Starts playing what arrives on `heard` into `output`, one 20 ms slot at a time, until `stop`
/// is set. The WAV file is written as it plays, so it holds everything up to a crash.
pub fn spawn_player(
    mut heard: mpsc::Receiver<AudioFrame>,
    output: Output,
    stop: Arc<AtomicBool>,
) -> Result<JoinHandle<Result<PlayStats, AudioIoError>>, AudioIoError> {
    let mut writer = match &output {
        Output::Wav(path) => Some(
            hound::WavWriter::create(
                path,
                hound::WavSpec {
                    channels: 1,
                    sample_rate: SAMPLE_RATE,
                    bits_per_sample: 16,
                    sample_format: hound::SampleFormat::Int,
                },
            )
            .map_err(|source| WavError::Hound {
                path: path.clone(),
                source,
            })?,
        ),
        Output::Null => None,
    };
    let path = match &output {
        Output::Wav(path) => path.clone(),
        Output::Null => PathBuf::new(),
    };
    std::thread::Builder::new()
        .name("earshot-player".into())
        .spawn(move || {
            let hound_err = |source| WavError::Hound {
                path: path.clone(),
                source,
            };
            let mut mixer = Mixer::new();
            let mut stats = PlayStats::default();
            let start = Instant::now();
            while !stop.load(Ordering::Relaxed) {
                let due =
                    start + FRAME_DURATION * u32::try_from(stats.chunks_played).unwrap_or(u32::MAX);
                if let Some(wait) = due.checked_duration_since(Instant::now()) {
                    std::thread::sleep(wait);
                }
                let now = Instant::now();
                while let Ok(frame) = heard.try_recv() {
                    stats.frames_heard += 1;
                    mixer.push(frame, now)?;
                }
                let chunk = mixer.next_chunk(now);
                stats.chunks_played += 1;
                if let Some(writer) = writer.as_mut() {
                    for sample in chunk {
                        let value = (sample.clamp(-1.0, 1.0) * f32::from(i16::MAX)).round() as i16;
                        writer.write_sample(value).map_err(hound_err)?;
                    }
                    // Flush once a second so a killed node leaves a readable file.
                    if stats.chunks_played % 50 == 0 {
                        writer.flush().map_err(hound_err)?;
                    }
                }
            }
            if let Some(writer) = writer {
                writer.finalize().map_err(hound_err)?;
            }
            Ok(stats)
        })
        .map_err(AudioIoError::Thread)
}
