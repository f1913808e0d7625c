//! Audio endpoints: a source that encodes a speaker's voice into frames (from a WAV file, a sine,
//! silence, or a microphone), and a player that mixes what a room sends into a speaker, a WAV
//! file, or nowhere. [`Input::auto`] and [`Output::auto`] pick the sound card when there is one.
//!
//! Each runs on its own thread, paced by the sound card when it uses one (capture chunks arrive
//! as the card records them; pushing to the speaker waits while the card has enough queued), and
//! otherwise by a deadline clock (frame `n` is due at `start + n × 20 ms`). Neither ever waits on
//! the network: the source hands frames to a non-blocking sink, and the player drains a bounded
//! queue once per slot.

use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Instant;

use earshot_protocol::frame::{AudioFrame, SAMPLES_PER_FRAME, SpeakerId};
use parking_lot::Mutex;
use tokio::sync::mpsc;

use crate::fanout::{FanoutStats, Heard};

use super::codec::{CodecError, VoiceEncoder};
use super::device::{self, DeviceError, PlaybackSink};
use super::mixer::Mixer;
use super::signal::sine;
use super::wav::{self, WavError};
use super::{FRAME_DURATION, FRAME_SAMPLES, SAMPLE_RATE, media_age_ms, media_now};

/// Where a speaker's voice comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// A WAV file (any common rate and channel count), played once, then silence.
    Wav(PathBuf),
    /// A tone at this many hertz (`sine` is 440 Hz, `sine:660` 660 Hz).
    Sine(u16),
    Silence,
    /// A sound card's input (`mic`: the default one; `mic:NAME`, see `earshot devices`).
    Mic(Option<String>),
}

/// Where a room's audio goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    Wav(PathBuf),
    Null,
    /// A sound card's output (`speaker`: the default one; `speaker:NAME`).
    Speaker(Option<String>),
}

/// `mic`, `mic:NAME` → `Some(None)`, `Some(Some(NAME))`.
fn device_name(text: &str, word: &str) -> Option<Option<String>> {
    if text == word {
        return Some(None);
    }
    text.strip_prefix(word)
        .and_then(|rest| rest.strip_prefix(':'))
        .map(|name| Some(name.to_owned()))
}

/// What to use when the user did not say: the sound card if there is one, else `fallback`
/// (and a note saying so).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolved<T> {
    Device(T),
    NoDevice { fallback: T, note: String },
}

impl Input {
    /// The default microphone if the machine has one, else silence.
    pub fn auto() -> Resolved<Input> {
        match device::list() {
            Ok(list) if list.inputs.iter().any(|d| d.is_default) => {
                Resolved::Device(Input::Mic(None))
            }
            _ => Resolved::NoDevice {
                fallback: Input::Silence,
                note: "no microphone found: you are silent on stage (use --input FILE.wav|sine)"
                    .into(),
            },
        }
    }
}

impl Output {
    /// The default speaker if the machine has one, else nowhere.
    pub fn auto() -> Resolved<Output> {
        match device::list() {
            Ok(list) if list.outputs.iter().any(|d| d.is_default) => {
                Resolved::Device(Output::Speaker(None))
            }
            _ => Resolved::NoDevice {
                fallback: Output::Null,
                note: "no speaker found: the room is not played (use --output FILE.wav)".into(),
            },
        }
    }
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
            text if device_name(text, "mic").is_some() => {
                Input::Mic(device_name(text, "mic").flatten())
            }
            path => Input::Wav(PathBuf::from(path)),
        })
    }
}

impl FromStr for Output {
    type Err = std::convert::Infallible;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Ok(match text {
            "null" => Output::Null,
            text if device_name(text, "speaker").is_some() => {
                Output::Speaker(device_name(text, "speaker").flatten())
            }
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
    #[error("the audio thread crashed")]
    Crashed,
    #[error(transparent)]
    Device(#[from] DeviceError),
}

/// What a player did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PlayStats {
    pub frames_heard: u64,
    pub chunks_played: u64,
}

/// Where a speaker's studio track goes (see [`earshot_protocol::studio`]): while `on`, every
/// 20 ms is encoded a second time for it ([`VoiceEncoder::for_studio`]), with the live frame's
/// sequence number and timestamp, and handed to `send` (which must not block).
pub struct StudioFeed {
    pub on: Arc<AtomicBool>,
    pub send: Box<dyn FnMut(AudioFrame) + Send>,
}

impl std::fmt::Debug for StudioFeed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StudioFeed").field("on", &self.on).finish()
    }
}

impl StudioFeed {
    /// Encodes `chunk` into the studio track if it is on (the encoder made at first use).
    fn feed(
        &mut self,
        encoder: &mut Option<VoiceEncoder>,
        chunk: &[f32],
        speaker: SpeakerId,
        seq: u32,
        timestamp: u32,
    ) {
        if !self.on.load(Ordering::Relaxed) {
            return;
        }
        if encoder.is_none() {
            match VoiceEncoder::for_studio() {
                Ok(made) => *encoder = Some(made),
                Err(err) => {
                    tracing::warn!(%err, "no studio track: its encoder could not be made");
                    self.on.store(false, Ordering::Relaxed);
                    return;
                }
            }
        }
        if let Some(encoder) = encoder {
            match encoder.encode(chunk) {
                Ok(encoded) => (self.send)(encoded.into_frame(speaker, seq, timestamp)),
                Err(err) => tracing::warn!(%err, "could not encode a studio frame"),
            }
        }
    }
}

/// Starts speaking `input` as `speaker`: every 20 ms, one encoded frame goes to `send` (which
/// must not block), and, while it is on, one to the `studio` track. Runs until `stop` is set.
/// The encoder follows the host's advice in `stats` ([`FanoutStats::audio_loss`], read before
/// every frame).
pub fn spawn_source(
    input: Input,
    speaker: SpeakerId,
    mut send: impl FnMut(AudioFrame) + Send + 'static,
    mut studio: Option<StudioFeed>,
    stop: Arc<AtomicBool>,
    stats: Arc<FanoutStats>,
) -> Result<JoinHandle<()>, AudioIoError> {
    let samples = match &input {
        Input::Wav(path) => wav::read(path)?,
        // A whole number of cycles per second, so that looping it is seamless.
        Input::Sine(hertz) => sine(f32::from(*hertz), 0.3, SAMPLE_RATE as usize),
        Input::Silence => Vec::new(),
        Input::Mic(name) => {
            return spawn_capture(name.as_deref(), speaker, send, studio, stop, stats);
        }
    };
    let looping = matches!(input, Input::Sine(_));
    let mut encoder = VoiceEncoder::new()?;
    // The encoder holds back a few milliseconds of look-ahead: a frame's first sample is that
    // much older than the frame's own start.
    let lookahead = encoder.lookahead()?;
    std::thread::Builder::new()
        .name("earshot-source".into())
        .spawn(move || {
            let start = Instant::now();
            // Frame n holds the input of the 20 ms before it is due, so its first sample was
            // "captured" one frame before the start of the clock. Sequence numbers follow the
            // media clock too, so a speaker who stops and starts again carries on counting.
            let epoch = media_now()
                .wrapping_sub(SAMPLES_PER_FRAME)
                .wrapping_sub(u32::from(lookahead));
            let first_seq = epoch / SAMPLES_PER_FRAME;
            let silence = vec![0.0f32; FRAME_SAMPLES];
            let mut studio_encoder = None;
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
                // Sequence numbers and timestamps wrap, as the frame format expects.
                let (seq, timestamp) = (
                    first_seq.wrapping_add(n as u32),
                    epoch.wrapping_add((n as u32).wrapping_mul(SAMPLES_PER_FRAME)),
                );
                follow(&mut encoder, &stats);
                match encoder.encode(chunk) {
                    Ok(encoded) => send(encoded.into_frame(speaker, seq, timestamp)),
                    Err(err) => tracing::warn!(%err, "could not encode a frame"),
                }
                if let Some(studio) = &mut studio {
                    studio.feed(&mut studio_encoder, chunk, speaker, seq, timestamp);
                }
                n += 1;
            }
        })
        .map_err(AudioIoError::Thread)
}

/// What a player has done so far: shared with the node for status reports.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PlayerStatus {
    /// Frames taken from the room.
    pub frames_heard: u64,
    /// 20 ms chunks written to the output.
    pub chunks_played: u64,
    /// Frames the speakers sent since this node first heard each (by sequence number), and
    /// how many of them arrived: `received / expected` is the delivery ratio.
    pub expected: u64,
    pub received: u64,
    /// Frames played as received, recovered from FEC, concealed, arrived too late, skipped to
    /// keep latency bounded (summed over speakers).
    pub played: u64,
    pub recovered: u64,
    pub concealed: u64,
    pub late: u64,
    pub skipped: u64,
    /// Slots concealed while waiting for a frame held up on the way, which then played (the
    /// delay grew by as much; no frame lost).
    pub stretched: u64,
    /// The jitter buffer's current delay (the largest among speakers), in milliseconds.
    pub buffer_ms: f64,
    /// Mouth-to-ear latency of the frames played (capture at the speaker to this output).
    pub latency: Latency,
    /// How loud each voice played in the last fifth of a second (RFC 6464: 0 loudest, 127
    /// silent).
    pub levels: Vec<(SpeakerId, u8)>,
}

/// A latency histogram in whole milliseconds (0-2047 ms; longer counts as 2047).
#[derive(Clone, PartialEq)]
pub struct Latency {
    buckets: Vec<u64>,
    pub count: u64,
}

impl Default for Latency {
    fn default() -> Self {
        Self {
            buckets: vec![0; 2048],
            count: 0,
        }
    }
}

impl std::fmt::Debug for Latency {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Latency(n={}, p50={:?}, p95={:?})",
            self.count,
            self.percentile(50.0),
            self.percentile(95.0)
        )
    }
}

impl Latency {
    pub fn record(&mut self, ms: f64) {
        let bucket = ms.round().clamp(0.0, (self.buckets.len() - 1) as f64) as usize;
        if let Some(count) = self.buckets.get_mut(bucket) {
            *count += 1;
            self.count += 1;
        }
    }

    /// The `p`th percentile in milliseconds, if anything was recorded.
    pub fn percentile(&self, p: f64) -> Option<u32> {
        if self.count == 0 {
            return None;
        }
        let rank = ((p / 100.0) * self.count as f64).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (ms, count) in self.buckets.iter().enumerate() {
            seen += count;
            if seen >= rank {
                return u32::try_from(ms).ok();
            }
        }
        None
    }
}

/// A running player: see [`spawn_player`].
#[derive(Debug)]
pub struct Player {
    thread: Option<JoinHandle<Result<PlayStats, AudioIoError>>>,
    status: Arc<Mutex<PlayerStatus>>,
    stop: Arc<AtomicBool>,
}

impl Player {
    /// What it has done so far.
    pub fn status(&self) -> PlayerStatus {
        self.status.lock().clone()
    }

    /// Stops playing and finishes the output file.
    pub fn finish(mut self) -> Result<PlayStats, AudioIoError> {
        self.stop.store(true, Ordering::Relaxed);
        match self.thread.take() {
            Some(thread) => thread.join().map_err(|_| AudioIoError::Crashed)?,
            None => Ok(PlayStats::default()),
        }
    }
}

impl Drop for Player {
    /// Stops the thread without waiting for it (the output file is finished as it stops).
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// A microphone: the sound card's clock paces the frames. Each frame's timestamp is when its
/// first sample was captured (the chunk is complete when it arrives here).
fn spawn_capture(
    name: Option<&str>,
    speaker: SpeakerId,
    mut send: impl FnMut(AudioFrame) + Send + 'static,
    mut studio: Option<StudioFeed>,
    stop: Arc<AtomicBool>,
    stats: Arc<FanoutStats>,
) -> Result<JoinHandle<()>, AudioIoError> {
    let (capture, chunks) = device::open_capture(name)?;
    let mut encoder = VoiceEncoder::new()?;
    let lookahead = u32::from(encoder.lookahead()?);
    std::thread::Builder::new()
        .name("earshot-source".into())
        .spawn(move || {
            let _capture = capture;
            let mut seq = media_now() / SAMPLES_PER_FRAME;
            let mut studio_encoder = None;
            while !stop.load(Ordering::Relaxed) {
                let chunk = match chunks.recv_timeout(std::time::Duration::from_millis(100)) {
                    Ok(chunk) => chunk,
                    Err(std::sync::mpsc::RecvTimeoutError::Timeout) => continue,
                    Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                        tracing::warn!("the microphone stopped");
                        break;
                    }
                };
                let timestamp = media_now()
                    .wrapping_sub(SAMPLES_PER_FRAME)
                    .wrapping_sub(lookahead);
                follow(&mut encoder, &stats);
                match encoder.encode(&chunk) {
                    Ok(encoded) => send(encoded.into_frame(speaker, seq, timestamp)),
                    Err(err) => tracing::warn!(%err, "could not encode a frame"),
                }
                if let Some(studio) = &mut studio {
                    studio.feed(&mut studio_encoder, &chunk, speaker, seq, timestamp);
                }
                seq = seq.wrapping_add(1);
            }
        })
        .map_err(AudioIoError::Thread)
}

/// Starts playing what arrives on `heard` into `output`, one 20 ms slot at a time, until
/// [`Player::finish`]. The WAV file is written as it plays, so it holds everything up to a crash.
///
/// A file has no clock of its own: the player's slots start when the first frame arrives, so
/// they are in phase with the speaker's (a sound card's clock would have a random phase, which
/// adds half a frame on average).
///
/// `stats` (the room's audio counters) are told how many frames were due and missing at their
/// playout time, for the node's reports up the tree.
pub fn spawn_player(
    mut heard: mpsc::Receiver<Heard>,
    output: Output,
    stats: Arc<FanoutStats>,
) -> Result<Player, AudioIoError> {
    let speaker: Option<(device::Playback, PlaybackSink)> = match &output {
        Output::Speaker(name) => Some(device::open_playback(name.as_deref())?),
        _ => None,
    };
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
        Output::Null | Output::Speaker(_) => None,
    };
    let path = match &output {
        Output::Wav(path) => path.clone(),
        Output::Null | Output::Speaker(_) => PathBuf::new(),
    };
    let status = Arc::new(Mutex::new(PlayerStatus::default()));
    let stop = Arc::new(AtomicBool::new(false));
    let (shared, stopped, counters) = (Arc::clone(&status), Arc::clone(&stop), stats);
    let thread = std::thread::Builder::new()
        .name("earshot-player".into())
        .spawn(move || {
            let hound_err = |source| WavError::Hound {
                path: path.clone(),
                source,
            };
            let mut mixer = Mixer::new();
            let mut stats = PlayStats::default();
            let mut latency = Latency::default();
            // Wait for the room to start talking (checking for the end now and then).
            let first = loop {
                if stopped.load(Ordering::Relaxed) {
                    break None;
                }
                match heard.try_recv() {
                    Ok(frame) => break Some(frame),
                    Err(mpsc::error::TryRecvError::Empty) => {
                        std::thread::sleep(std::time::Duration::from_millis(1));
                    }
                    Err(mpsc::error::TryRecvError::Disconnected) => break None,
                }
            };
            let start = Instant::now();
            if let Some(first) = first {
                stats.frames_heard += 1;
                mixer.push_checked(first.frame, Some(first.auth), first.at)?;
            }
            while !stopped.load(Ordering::Relaxed) {
                // A sound card paces the player (pushing waits while it has enough queued); a
                // file is paced by the clock.
                let ahead = match speaker.as_ref() {
                    Some((_, sink)) => sink.latency(),
                    None => {
                        let due = start
                            + FRAME_DURATION
                                * u32::try_from(stats.chunks_played).unwrap_or(u32::MAX);
                        if let Some(wait) = due.checked_duration_since(Instant::now()) {
                            std::thread::sleep(wait);
                        }
                        std::time::Duration::ZERO
                    }
                };
                let now = Instant::now();
                while let Ok(arrived) = heard.try_recv() {
                    stats.frames_heard += 1;
                    mixer.push_checked(arrived.frame, Some(arrived.auth), arrived.at)?;
                }
                let chunk = mixer.next_chunk(now);
                // When this chunk will be heard: now, or once what the card has queued has played.
                let played_at = media_now()
                    .wrapping_add((ahead.as_micros() * u128::from(SAMPLE_RATE) / 1_000_000) as u32);
                for &captured in mixer.played() {
                    latency.record(media_age_ms(captured, played_at));
                }
                stats.chunks_played += 1;
                if let Some((_, sink)) = speaker.as_ref()
                    && let Err(err) = sink.push(&chunk)
                {
                    tracing::warn!(%err, "the speaker stopped");
                    return Err(err.into());
                }
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
                // Status for reports, a few times a second.
                if stats.chunks_played % 10 == 0 {
                    let mut now = mixer_status(&mixer, stats, &latency);
                    now.levels = mixer.take_levels();
                    playout(&counters, &now);
                    *shared.lock() = now;
                }
            }
            let now = mixer_status(&mixer, stats, &latency);
            playout(&counters, &now);
            *shared.lock() = now;
            if let Some(writer) = writer {
                writer.finalize().map_err(hound_err)?;
            }
            Ok(stats)
        })
        .map_err(AudioIoError::Thread)?;
    Ok(Player {
        thread: Some(thread),
        status,
        stop,
    })
}

/// Sets the encoder to the host's latest advice.
fn follow(encoder: &mut VoiceEncoder, stats: &FanoutStats) {
    let advice = stats.audio_loss.load(Ordering::Relaxed);
    if let Err(err) = encoder.follow(advice) {
        tracing::warn!(%err, "could not set the encoder for the audience's loss");
    }
}

/// Frames due at their playout time, and of them missing (concealed, or recovered from the
/// next frame's FEC: the loss FEC is there for, which it must not hide from the reports, or
/// FEC would turn itself off), for the room's counters.
fn playout(counters: &FanoutStats, status: &PlayerStatus) {
    let due = status.played + status.recovered + status.concealed;
    counters.playout_due.store(due, Ordering::Relaxed);
    counters
        .playout_missing
        .store(status.recovered + status.concealed, Ordering::Relaxed);
    // Whole milliseconds: the buffer is never near u32::MAX ms.
    counters
        .playout_buffer_ms
        .store(status.buffer_ms.max(0.0) as u32, Ordering::Relaxed);
}

fn mixer_status(mixer: &Mixer, stats: PlayStats, latency: &Latency) -> PlayerStatus {
    let mut status = PlayerStatus {
        frames_heard: stats.frames_heard,
        chunks_played: stats.chunks_played,
        buffer_ms: mixer.delay().as_secs_f64() * 1000.0,
        latency: latency.clone(),
        expected: mixer.expected(),
        ..PlayerStatus::default()
    };
    for (_, voice) in mixer.stats() {
        status.received += voice.received;
        status.played += voice.played;
        status.recovered += voice.recovered;
        status.concealed += voice.concealed;
        status.late += voice.late;
        status.skipped += voice.skipped;
        status.stretched += voice.stretched;
    }
    status
}
