//! Sound cards, through cpal: listing them, microphone capture and speaker playback, converted to
//! and from Earshot's one format (48 kHz mono `f32`, 20 ms chunks of [`FRAME_SAMPLES`]).
//!
//! - [`list`]: what `earshot devices` shows.
//! - [`open_capture`]: a microphone; 20 ms chunks arrive on a bounded channel.
//! - [`open_playback`]: a speaker; a [`PlaybackSink`] takes 20 ms chunks and blocks while the
//!   device has enough queued, which is what paces a player thread in real time.
//!
//! Devices run at whatever rate, channel count and sample format they like: the stream is opened
//! at 48 kHz when the device offers it in its own channel count and format (no resampling), else
//! in its default configuration, and the conversion (format, downmix or upmix, streaming
//! resampling) happens in the audio callback.
//!
//! Each stream is built, played and dropped on a thread of its own (`earshot-capture`,
//! `earshot-playback`): a `cpal::Stream` has not been `Send` on every platform (cpal promises it
//! only lately), and dropping one joins the host's driver threads, which a tokio worker should
//! not do. [`Capture`], [`Playback`] and [`PlaybackSink`] are `Send` handles; dropping `Capture`
//! or `Playback` stops the stream and waits for its thread.
//!
//! The audio callbacks never wait on anything but a short lock: capture hands chunks over with
//! `try_send` (a full channel drops the chunk and counts it); playback copies out of a ring that
//! the sink appends to under the same lock, playing silence (and counting an underrun) when the
//! ring runs dry.
//!
//! On Linux, cpal prefers a PulseAudio server (or PipeWire's) when `$PULSE_SERVER`,
//! `$PULSE_RUNTIME_PATH` or `$XDG_RUNTIME_DIR` leads to its socket, and ALSA otherwise; that is
//! cpal reading the environment, as every audio program does. When a server is found but cannot
//! be used, cpal falls back to ALSA without a word; [`list`] says why ([`DeviceList::fallback`])
//! and opening a device logs it once. ALSA's complaints about missing cards go to `tracing` at
//! debug level instead of standard error.
//!
//! # Layout
//!
//! - this file: the public API (what there is, opening, the handles) and its errors.
//! - `host`: the audio system, and why not PulseAudio when a server was found but refused us.
//! - `list`: listing devices, finding the one a user named, choosing a stream configuration.
//! - `stream`: building a stream per sample format; the thread that owns it; its health.
//! - `convert`: device format to and from 48 kHz mono chunks (pure, tested without a device).
//! - `ring`: the playback queue between a player thread and the device callback.
//! - `alsa`: ALSA's error lines to `tracing`.

mod alsa;
mod convert;
mod host;
mod list;
mod ring;
mod stream;
#[cfg(test)]
mod tests;

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{self, Receiver};
use std::time::Duration;

use serde::Serialize;

pub use self::host::HostFallback;

use self::alsa::AlsaQuiet;
use self::convert::{CaptureConverter, PlaybackConverter};
use self::list::{list_here, open_device};
use self::ring::Ring;
use self::stream::{
    ChunkSender, Counters, StreamOwner, build_capture, build_playback, build_with_fallback,
};
use super::FRAME_SAMPLES;

/// Chunks a capture queues for its reader: 8 × 20 ms = 160 ms. A reader further behind than
/// that is not keeping up in real time; queuing more would only add delay to everything after.
pub const CAPTURE_QUEUE: usize = 8;

/// Samples the playback ring may hold when [`PlaybackSink::push`] appends: 2 chunks (40 ms) of
/// 48 kHz audio. Enough to ride out a late player slot, little enough to keep mouth-to-ear delay
/// low; `push` waits while the ring holds more.
pub const PLAYBACK_AHEAD: usize = 2 * FRAME_SAMPLES;

/// How long [`PlaybackSink::push`] waits for the device to take audio before calling the stream
/// stalled. A healthy device drains a chunk every 20 ms.
pub const PLAYBACK_STALL: Duration = Duration::from_secs(2);

/// The device period asked for: 10 ms, so a callback never holds more than half a chunk.
const PERIOD: Duration = Duration::from_millis(10);

/// How long opening a device may take (PulseAudio's handshake, ALSA's configuration).
const OPEN_TIMEOUT: Duration = Duration::from_secs(5);

/// What `earshot devices` shows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeviceList {
    /// The audio system in use: `ALSA`, `PulseAudio`, `CoreAudio`, `WASAPI` …
    pub host: String,
    /// Why the audio system is not the PulseAudio server the environment leads to, when one was
    /// found but could not be used.
    pub fallback: Option<HostFallback>,
    /// Devices that can record, the default first.
    pub inputs: Vec<DeviceInfo>,
    /// Devices that can play, the default first.
    pub outputs: Vec<DeviceInfo>,
}

/// One device, in one direction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeviceInfo {
    /// What to pass to [`open_capture`] or [`open_playback`]: the host's identifier for the
    /// device (ALSA `hw:CARD=PCH,DEV=0`, a PulseAudio sink or source name …).
    pub name: String,
    /// What the device calls itself, for people.
    pub description: String,
    pub is_default: bool,
    /// The device's own rate, when it could be asked (a device busy in another program cannot).
    pub sample_rate: Option<u32>,
    pub channels: Option<u16>,
}

/// Recording or playing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Input,
    Output,
}

/// How a stream actually runs on its device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceFormat {
    /// The device's name (see [`DeviceInfo::name`]).
    pub device: String,
    pub sample_rate: u32,
    pub channels: u16,
    /// cpal's name for the sample format: `f32`, `i16`, `u8` …
    pub sample_format: String,
}

/// Why a sound device could not be listed, opened or used.
#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    #[error(
        "no sound card found (no usable default {direction} device on {host}); use {alternative}"
    )]
    NoDevice {
        direction: Direction,
        host: String,
        /// What to use instead, in the CLI's words.
        alternative: &'static str,
    },
    #[error("no {direction} device called \"{name}\" on {host}; {}", available_text(.available))]
    NotFound {
        direction: Direction,
        name: String,
        host: String,
        /// The names that would have worked.
        available: Vec<String>,
    },
    #[error("cannot use the {direction} device \"{device}\": {reason}")]
    Unsupported {
        direction: Direction,
        device: String,
        reason: String,
    },
    #[error("could not list the sound devices of {host}: {source}")]
    List {
        host: String,
        #[source]
        source: cpal::Error,
    },
    #[error("could not open the {direction} device \"{device}\": {source}")]
    Open {
        direction: Direction,
        device: String,
        #[source]
        source: cpal::Error,
    },
    #[error("the {direction} device \"{device}\" did not open within {waited:?}")]
    OpenTimeout {
        direction: Direction,
        device: String,
        waited: Duration,
    },
    #[error("the {direction} stream stopped: {reason}")]
    Stream {
        direction: Direction,
        reason: String,
    },
    #[error("the output device has taken no audio for {waited:?}")]
    Stalled { waited: Duration },
    #[error("could not start the audio device thread: {0}")]
    Thread(std::io::Error),
}

/// A running microphone. Chunks arrive on the receiver [`open_capture`] returned; dropping this
/// stops the stream (and the receiver then reports a disconnect).
#[derive(Debug)]
pub struct Capture {
    format: DeviceFormat,
    counters: Arc<Counters>,
    owner: StreamOwner,
}

/// A running speaker. Audio goes in through the [`PlaybackSink`] [`open_playback`] returned;
/// dropping this stops the stream, and the sink's `push` then fails.
#[derive(Debug)]
pub struct Playback {
    format: DeviceFormat,
    ring: Arc<Ring>,
    owner: StreamOwner,
}

/// Where a player thread puts 20 ms chunks of 48 kHz mono audio for the speaker. Cheap to clone.
#[derive(Debug, Clone)]
pub struct PlaybackSink {
    ring: Arc<Ring>,
}

/// What a capture did so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CaptureStats {
    /// Chunks handed to the reader.
    pub chunks: u64,
    /// Chunks dropped because the reader's queue was full.
    pub dropped: u64,
    /// Glitches the device reported (overruns, in ALSA's words xruns).
    pub glitches: u64,
}

/// What a playback did so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PlaybackStats {
    /// Chunks pushed by the player.
    pub chunks: u64,
    /// Device callbacks that found the ring short and played (partly) silence, counted once the
    /// first chunk has arrived.
    pub underruns: u64,
    /// Glitches the device reported (underruns below us, in ALSA's words xruns).
    pub glitches: u64,
}

/// Lists the input and output devices of the default audio system, defaults first. A device that
/// cannot be opened at all (a plugin with nothing behind it) is left out, and so are ALSA's `null`
/// and `jack` devices (see `is_unlisted`): on a machine with no sound card both lists are empty.
pub fn list() -> Result<DeviceList, DeviceError> {
    std::thread::Builder::new()
        .name("earshot-devices".into())
        .spawn(|| {
            let _quiet = AlsaQuiet::install();
            list_here()
        })
        .map_err(DeviceError::Thread)?
        .join()
        .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
}

/// Starts recording from the device called `name` (see [`DeviceInfo::name`]; a unique part of a
/// name or description also works), or from the default input device. Returns the running
/// capture and the receiver of its 20 ms chunks (960 samples, 48 kHz mono), at most
/// [`CAPTURE_QUEUE`] of them queued.
pub fn open_capture(name: Option<&str>) -> Result<(Capture, Receiver<Vec<f32>>), DeviceError> {
    let (chunks_tx, chunks_rx) = mpsc::sync_channel(CAPTURE_QUEUE);
    let counters = Arc::new(Counters::default());
    let label = name.unwrap_or("default").to_owned();
    let name = name.map(str::to_owned);
    let (owner, format) = StreamOwner::spawn(
        "earshot-capture",
        Direction::Input,
        label,
        {
            let counters = Arc::clone(&counters);
            move |health| {
                let (device, format, config, sample_format) =
                    open_device(Direction::Input, name.as_deref())?;
                let stream = build_with_fallback(&config, |config| {
                    build_capture(
                        &device,
                        config,
                        sample_format,
                        CaptureConverter::new(format.sample_rate, format.channels),
                        ChunkSender {
                            chunks: chunks_tx.clone(),
                            counters: Arc::clone(&counters),
                        },
                        health.clone(),
                    )
                })
                .map_err(|source| DeviceError::Open {
                    direction: Direction::Input,
                    device: format.device.clone(),
                    source,
                })?;
                // Only the stream keeps a sender: when it goes, the reader sees the end.
                drop(chunks_tx);
                Ok((stream, format))
            }
        },
        |_| {},
    )?;
    tracing::info!(device = %format.device, rate = format.sample_rate, channels = format.channels,
        format = %format.sample_format, "capturing");
    Ok((
        Capture {
            format,
            counters,
            owner,
        },
        chunks_rx,
    ))
}

/// Starts playing to the device called `name` (as for [`open_capture`]), or to the default output
/// device. The device plays silence until the first chunk is pushed into the returned sink.
pub fn open_playback(name: Option<&str>) -> Result<(Playback, PlaybackSink), DeviceError> {
    let ring = Arc::new(Ring::new(PLAYBACK_AHEAD, PLAYBACK_STALL));
    let label = name.unwrap_or("default").to_owned();
    let name = name.map(str::to_owned);
    let on_end = {
        let ring = Arc::clone(&ring);
        // When the stream ends, for whatever reason, a waiting or later `push` must fail, not
        // hang.
        move |reason: String| ring.close(reason)
    };
    let (owner, format) = StreamOwner::spawn(
        "earshot-playback",
        Direction::Output,
        label,
        {
            let ring = Arc::clone(&ring);
            move |health| {
                let (device, format, config, sample_format) =
                    open_device(Direction::Output, name.as_deref())?;
                let stream = build_with_fallback(&config, |config| {
                    build_playback(
                        &device,
                        config,
                        sample_format,
                        PlaybackConverter::new(format.sample_rate, format.channels),
                        Arc::clone(&ring),
                        health.clone(),
                    )
                })
                .map_err(|source| DeviceError::Open {
                    direction: Direction::Output,
                    device: format.device.clone(),
                    source,
                })?;
                Ok((stream, format))
            }
        },
        on_end,
    )?;
    tracing::info!(device = %format.device, rate = format.sample_rate, channels = format.channels,
        format = %format.sample_format, "playing");
    Ok((
        Playback {
            format,
            ring: Arc::clone(&ring),
            owner,
        },
        PlaybackSink { ring },
    ))
}

impl fmt::Display for Direction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Direction::Input => "input",
            Direction::Output => "output",
        })
    }
}

impl Direction {
    /// What a user without such a device can use instead, as the CLI spells it.
    fn alternative(self) -> &'static str {
        match self {
            Direction::Input => "--input FILE.wav|sine|silence",
            Direction::Output => "--output FILE.wav|null",
        }
    }
}

fn available_text(available: &[String]) -> String {
    if available.is_empty() {
        "it has none (`earshot devices` lists what there is)".into()
    } else {
        format!("available: {}", available.join(", "))
    }
}

impl Capture {
    /// How the device runs.
    pub fn format(&self) -> &DeviceFormat {
        &self.format
    }

    pub fn stats(&self) -> CaptureStats {
        CaptureStats {
            chunks: self.counters.chunks.load(Ordering::Relaxed),
            dropped: self.counters.dropped.load(Ordering::Relaxed),
            glitches: self.owner.glitches(),
        }
    }

    /// Why the stream stopped on its own (the device went away …), if it did.
    pub fn failure(&self) -> Option<String> {
        self.owner.failure()
    }
}

impl Playback {
    /// How the device runs.
    pub fn format(&self) -> &DeviceFormat {
        &self.format
    }

    pub fn stats(&self) -> PlaybackStats {
        let mut stats = self.ring.stats();
        stats.glitches = self.owner.glitches();
        stats
    }

    /// Why the stream stopped on its own (the device went away …), if it did.
    pub fn failure(&self) -> Option<String> {
        self.owner.failure()
    }
}

impl PlaybackSink {
    /// Queues a chunk (20 ms of 48 kHz mono; any length works) for the speaker. Blocks while the
    /// ring holds more than [`PLAYBACK_AHEAD`] samples, so a loop that pushes one chunk after
    /// another runs at the device's pace. Fails once the stream has stopped, or when the device
    /// has taken nothing for [`PLAYBACK_STALL`].
    pub fn push(&self, chunk: &[f32]) -> Result<(), DeviceError> {
        self.ring.push(chunk)
    }

    /// The audio queued ahead of the speaker: the ring, plus, as of the last callback, what the
    /// conversion holds (the resampler's delay; nothing at 48 kHz) and the device's own buffer
    /// (its playback timestamp minus its callback timestamp). Audio pushed now is heard about
    /// this much later.
    pub fn latency(&self) -> Duration {
        self.ring.latency()
    }

    pub fn stats(&self) -> PlaybackStats {
        self.ring.stats()
    }
}
