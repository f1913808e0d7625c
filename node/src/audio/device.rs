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
//! resampling) happens in the audio callback. The conversion parts are plain structs
//! ([`Resampler`], `CaptureConverter`, `PlaybackConverter`, `Ring`) so they are tested without a
//! device.
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
//! cpal reading the environment, as every audio program does. ALSA's complaints about missing
//! cards go to `tracing` at debug level instead of standard error.

use std::collections::VecDeque;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use cpal::traits::{DeviceTrait, HostTrait, StreamTrait};
use cpal::{
    BufferSize, ErrorKind, FromSample, I24, OutputCallbackInfo, SampleFormat, SizedSample,
    StreamConfig, SupportedBufferSize, SupportedStreamConfig, U24,
};
use parking_lot::{Condvar, Mutex};
use serde::Serialize;

use super::{FRAME_DURATION, FRAME_SAMPLES, SAMPLE_RATE};

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
                let converter = CaptureConverter::new(format.sample_rate, format.channels);
                let stream = build_with_fallback(&config, |config| {
                    build_capture(
                        &device,
                        config,
                        sample_format,
                        converter.clone(),
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
                let converter = PlaybackConverter::new(format.sample_rate, format.channels);
                let stream = build_with_fallback(&config, |config| {
                    build_playback(
                        &device,
                        config,
                        sample_format,
                        converter.clone(),
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
            glitches: self.owner.health.glitches.load(Ordering::Relaxed),
        }
    }

    /// Why the stream stopped on its own (the device went away …), if it did.
    pub fn failure(&self) -> Option<String> {
        self.owner.health.failure()
    }
}

impl Playback {
    /// How the device runs.
    pub fn format(&self) -> &DeviceFormat {
        &self.format
    }

    pub fn stats(&self) -> PlaybackStats {
        let mut stats = self.ring.stats();
        stats.glitches = self.owner.health.glitches.load(Ordering::Relaxed);
        stats
    }

    /// Why the stream stopped on its own (the device went away …), if it did.
    pub fn failure(&self) -> Option<String> {
        self.owner.health.failure()
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

    /// The audio queued ahead of the speaker: the ring, plus the device's own buffer as the last
    /// callback reported it (its playback timestamp minus its callback timestamp). Audio pushed
    /// now is heard about this much later.
    pub fn latency(&self) -> Duration {
        self.ring.latency()
    }

    pub fn stats(&self) -> PlaybackStats {
        self.ring.stats()
    }
}

// ---------------------------------------------------------------------------------------------
// Devices: listing, finding, configuring.

fn list_here() -> Result<DeviceList, DeviceError> {
    let host = cpal::default_host();
    let host_name = host.id().name().to_owned();
    let mut list = DeviceList {
        host: host_name.clone(),
        inputs: Vec::new(),
        outputs: Vec::new(),
    };
    let default_ids = [
        host.default_input_device().and_then(|d| d.id().ok()),
        host.default_output_device().and_then(|d| d.id().ok()),
    ];
    let mut devices: Vec<cpal::Device> = host
        .devices()
        .map_err(|source| DeviceError::List {
            host: host_name.clone(),
            source,
        })?
        .collect();
    // ALSA's hints do not always include its `default` device.
    for default in [host.default_input_device(), host.default_output_device()]
        .into_iter()
        .flatten()
    {
        let id = default.id().ok();
        if id.is_some() && !devices.iter().any(|d| d.id().ok() == id) {
            devices.insert(0, default);
        }
    }
    for device in devices {
        let Ok(id) = device.id() else { continue };
        if is_unlisted(&id) {
            continue;
        }
        let description = describe(&device);
        for (direction, default_id) in [Direction::Input, Direction::Output]
            .into_iter()
            .zip(&default_ids)
        {
            let supported = match direction {
                Direction::Input => device.supports_input(),
                Direction::Output => device.supports_output(),
            };
            if !supported {
                continue;
            }
            let config = match direction {
                Direction::Input => device.default_input_config(),
                Direction::Output => device.default_output_config(),
            };
            let (sample_rate, channels) = match config {
                Ok(config) => (Some(config.sample_rate()), Some(config.channels())),
                // In use by another program: real, just not available right now.
                Err(err) if err.kind() == ErrorKind::DeviceBusy => (None, None),
                Err(err) => {
                    tracing::debug!(device = %id, %direction, %err, "not a usable device");
                    continue;
                }
            };
            let info = DeviceInfo {
                name: id.id().to_owned(),
                description: description.clone(),
                is_default: default_id.as_ref() == Some(&id),
                sample_rate,
                channels,
            };
            let target = match direction {
                Direction::Input => &mut list.inputs,
                Direction::Output => &mut list.outputs,
            };
            if !target.iter().any(|known| known.name == info.name) {
                target.push(info);
            }
        }
    }
    // Defaults first; otherwise the host's order.
    list.inputs.sort_by_key(|d| !d.is_default);
    list.outputs.sort_by_key(|d| !d.is_default);
    Ok(list)
}

/// ALSA devices [`list`] leaves out (they still open when named): `null` opens and swallows
/// everything at any speed, so it is no sound card; `jack` is the plugin into a JACK server, and
/// probing it without one makes libjack print ten lines to standard error, past ALSA's handler.
fn is_unlisted(id: &cpal::DeviceId) -> bool {
    id.host().name() == "ALSA" && matches!(id.id(), "null" | "jack")
}

fn describe(device: &cpal::Device) -> String {
    device
        .description()
        .map(|d| d.name().to_owned())
        .unwrap_or_default()
}

/// Finds the device and chooses its configuration. A default device that is there but cannot
/// be opened (ALSA's `default` on a machine without a card) is no sound card.
fn open_device(
    direction: Direction,
    name: Option<&str>,
) -> Result<(cpal::Device, DeviceFormat, StreamConfig, SampleFormat), DeviceError> {
    let host = cpal::default_host();
    let device = find_device(&host, direction, name)?;
    match choose_config(&device, direction) {
        Ok((format, config, sample_format)) => Ok((device, format, config, sample_format)),
        Err(DeviceError::Open { source, .. })
            if name.is_none() && source.kind() == ErrorKind::DeviceNotAvailable =>
        {
            Err(DeviceError::NoDevice {
                direction,
                host: host.id().name().to_owned(),
                alternative: direction.alternative(),
            })
        }
        Err(err) => Err(err),
    }
}

/// The default device, or the one `name` picks: an exact identifier, else an exact description,
/// else the one device whose identifier or description contains it (ignoring case).
fn find_device(
    host: &cpal::Host,
    direction: Direction,
    name: Option<&str>,
) -> Result<cpal::Device, DeviceError> {
    let host_name = host.id().name().to_owned();
    let Some(name) = name else {
        let default = match direction {
            Direction::Input => host.default_input_device(),
            Direction::Output => host.default_output_device(),
        };
        return default.ok_or(DeviceError::NoDevice {
            direction,
            host: host_name,
            alternative: direction.alternative(),
        });
    };
    let mut devices: Vec<cpal::Device> = host
        .devices()
        .map_err(|source| DeviceError::List {
            host: host_name.clone(),
            source,
        })?
        .filter(|device| match direction {
            Direction::Input => device.supports_input(),
            Direction::Output => device.supports_output(),
        })
        .collect();
    let default = match direction {
        Direction::Input => host.default_input_device(),
        Direction::Output => host.default_output_device(),
    };
    if let Some(default) = default
        && !devices.contains(&default)
    {
        devices.push(default);
    }
    let named: Vec<(String, String)> = devices
        .iter()
        .map(|d| {
            (
                d.id().map(|id| id.id().to_owned()).unwrap_or_default(),
                describe(d),
            )
        })
        .collect();
    let wanted = name.to_lowercase();
    let pick = named
        .iter()
        .position(|(id, _)| id == name)
        .or_else(|| {
            named
                .iter()
                .position(|(_, description)| description.to_lowercase() == wanted)
        })
        .or_else(|| {
            let mut matching = named.iter().enumerate().filter(|(_, (id, description))| {
                id.to_lowercase().contains(&wanted) || description.to_lowercase().contains(&wanted)
            });
            match (matching.next(), matching.next()) {
                (Some((index, _)), None) => Some(index),
                _ => None,
            }
        });
    match pick {
        Some(index) => Ok(devices.swap_remove(index)),
        // PulseAudio and others have no device of that name, but people say it.
        None if wanted == "default" => find_device(host, direction, None),
        None => {
            let available = devices
                .iter()
                .zip(&named)
                .filter(|(device, _)| {
                    device.id().is_ok_and(|id| !is_unlisted(&id))
                        && match direction {
                            Direction::Input => device.default_input_config().is_ok(),
                            Direction::Output => device.default_output_config().is_ok(),
                        }
                })
                .map(|(_, (id, _))| id.clone())
                .collect();
            Err(DeviceError::NotFound {
                direction,
                name: name.to_owned(),
                host: host_name,
                available,
            })
        }
    }
}

/// The device's default configuration, moved to 48 kHz when the device offers that in the same
/// channel count and format (then nothing needs resampling), with a 10 ms period when the device
/// accepts one.
fn choose_config(
    device: &cpal::Device,
    direction: Direction,
) -> Result<(DeviceFormat, StreamConfig, SampleFormat), DeviceError> {
    let device_name = device
        .id()
        .map(|id| id.id().to_owned())
        .unwrap_or_else(|_| describe(device));
    let open_err = |source| DeviceError::Open {
        direction,
        device: device_name.clone(),
        source,
    };
    let (default, ranges): (SupportedStreamConfig, Vec<cpal::SupportedStreamConfigRange>) =
        match direction {
            Direction::Input => (
                device.default_input_config().map_err(open_err)?,
                device
                    .supported_input_configs()
                    .map(Iterator::collect)
                    .unwrap_or_default(),
            ),
            Direction::Output => (
                device.default_output_config().map_err(open_err)?,
                device
                    .supported_output_configs()
                    .map(Iterator::collect)
                    .unwrap_or_default(),
            ),
        };
    let chosen = ranges
        .into_iter()
        .filter(|range| {
            range.channels() == default.channels()
                && range.sample_format() == default.sample_format()
        })
        .find_map(|range| range.try_with_sample_rate(SAMPLE_RATE))
        .unwrap_or(default);
    if !is_pcm(chosen.sample_format()) || chosen.channels() == 0 || chosen.sample_rate() == 0 {
        return Err(DeviceError::Unsupported {
            direction,
            device: device_name,
            reason: format!(
                "it offers {} channels of {} at {} Hz, and earshot needs PCM audio",
                chosen.channels(),
                chosen.sample_format(),
                chosen.sample_rate()
            ),
        });
    }
    let period = (u64::from(chosen.sample_rate()) * PERIOD.as_millis() as u64 / 1000) as u32;
    let buffer_size = match chosen.buffer_size() {
        SupportedBufferSize::Range { min, max } if (*min..=*max).contains(&period) => {
            BufferSize::Fixed(period)
        }
        _ => BufferSize::Default,
    };
    let config = StreamConfig {
        channels: chosen.channels(),
        sample_rate: chosen.sample_rate(),
        buffer_size,
    };
    let format = DeviceFormat {
        device: device_name,
        sample_rate: chosen.sample_rate(),
        channels: chosen.channels(),
        sample_format: chosen.sample_format().to_string(),
    };
    Ok((format, config, chosen.sample_format()))
}

fn is_pcm(format: SampleFormat) -> bool {
    !matches!(
        format,
        SampleFormat::DsdU8 | SampleFormat::DsdU16 | SampleFormat::DsdU32
    )
}

/// Builds with the chosen period; a device that refuses it gets its own default period.
fn build_with_fallback(
    config: &StreamConfig,
    build: impl Fn(&StreamConfig) -> Result<cpal::Stream, cpal::Error>,
) -> Result<cpal::Stream, cpal::Error> {
    match build(config) {
        Err(err) if config.buffer_size != BufferSize::Default => {
            tracing::debug!(%err, "the device refused a 10 ms period; using its default");
            build(&StreamConfig {
                buffer_size: BufferSize::Default,
                ..*config
            })
        }
        result => result,
    }
}

// ---------------------------------------------------------------------------------------------
// Streams: building them per sample format, and owning them on a thread.

/// Calls `$build::<T>` with `T` the Rust type of the cpal sample format `$format`.
macro_rules! with_sample_type {
    ($format:expr, $build:ident ( $($arg:expr),* )) => {
        match $format {
            SampleFormat::I8 => $build::<i8>($($arg),*),
            SampleFormat::I16 => $build::<i16>($($arg),*),
            SampleFormat::I24 => $build::<I24>($($arg),*),
            SampleFormat::I32 => $build::<i32>($($arg),*),
            SampleFormat::I64 => $build::<i64>($($arg),*),
            SampleFormat::U8 => $build::<u8>($($arg),*),
            SampleFormat::U16 => $build::<u16>($($arg),*),
            SampleFormat::U24 => $build::<U24>($($arg),*),
            SampleFormat::U32 => $build::<u32>($($arg),*),
            SampleFormat::U64 => $build::<u64>($($arg),*),
            SampleFormat::F32 => $build::<f32>($($arg),*),
            SampleFormat::F64 => $build::<f64>($($arg),*),
            other => Err(cpal::Error::with_message(
                ErrorKind::UnsupportedConfig,
                format!("sample format {other} is not PCM"),
            )),
        }
    };
}

fn build_capture(
    device: &cpal::Device,
    config: &StreamConfig,
    format: SampleFormat,
    converter: CaptureConverter,
    sender: ChunkSender,
    health: Arc<Health>,
) -> Result<cpal::Stream, cpal::Error> {
    fn typed<T>(
        device: &cpal::Device,
        config: &StreamConfig,
        mut converter: CaptureConverter,
        sender: ChunkSender,
        health: Arc<Health>,
    ) -> Result<cpal::Stream, cpal::Error>
    where
        T: SizedSample,
        f32: FromSample<T>,
    {
        device.build_input_stream::<T, _, _>(
            *config,
            move |data: &[T], _| {
                converter.push(data.iter().map(|s| to_f32(*s)), |chunk| sender.send(chunk));
            },
            move |err| health.report(Direction::Input, err),
            Some(OPEN_TIMEOUT),
        )
    }
    with_sample_type!(format, typed(device, config, converter, sender, health))
}

fn build_playback(
    device: &cpal::Device,
    config: &StreamConfig,
    format: SampleFormat,
    converter: PlaybackConverter,
    ring: Arc<Ring>,
    health: Arc<Health>,
) -> Result<cpal::Stream, cpal::Error> {
    fn typed<T>(
        device: &cpal::Device,
        config: &StreamConfig,
        mut converter: PlaybackConverter,
        ring: Arc<Ring>,
        health: Arc<Health>,
    ) -> Result<cpal::Stream, cpal::Error>
    where
        T: SizedSample + FromSample<f32>,
    {
        device.build_output_stream::<T, _, _>(
            *config,
            move |data: &mut [T], info: &OutputCallbackInfo| {
                let timestamp = info.timestamp();
                ring.note_device_delay(timestamp.playback.duration_since(timestamp.callback));
                converter.fill(data, &ring);
            },
            move |err| health.report(Direction::Output, err),
            Some(OPEN_TIMEOUT),
        )
    }
    with_sample_type!(format, typed(device, config, converter, ring, health))
}

/// A cpal sample as `f32` in -1..1.
fn to_f32<T>(sample: T) -> f32
where
    f32: FromSample<T>,
{
    f32::from_sample_(sample)
}

/// An `f32` (clamped to -1..1) as a cpal sample.
fn from_f32<T: FromSample<f32>>(sample: f32) -> T {
    T::from_sample_(sample.clamp(-1.0, 1.0))
}

/// Hands capture chunks to the reader without ever waiting.
#[derive(Debug, Clone)]
struct ChunkSender {
    chunks: SyncSender<Vec<f32>>,
    counters: Arc<Counters>,
}

impl ChunkSender {
    fn send(&self, chunk: Vec<f32>) {
        match self.chunks.try_send(chunk) {
            Ok(()) => {
                self.counters.chunks.fetch_add(1, Ordering::Relaxed);
            }
            Err(TrySendError::Full(_)) => {
                let dropped = self.counters.dropped.fetch_add(1, Ordering::Relaxed) + 1;
                tracing::trace!(dropped, "capture reader behind: dropped a chunk");
            }
            // The reader is gone; the owner stops the stream soon.
            Err(TrySendError::Disconnected(_)) => {}
        }
    }
}

#[derive(Debug, Default)]
struct Counters {
    chunks: AtomicU64,
    dropped: AtomicU64,
}

/// What a stream's error callback tells its owner.
#[derive(Debug)]
struct Health {
    glitches: AtomicU64,
    failure: Mutex<Option<String>>,
    /// Wakes the owner thread when the stream has failed.
    owner: SyncSender<Control>,
}

impl Health {
    fn report(&self, direction: Direction, err: cpal::Error) {
        match err.kind() {
            ErrorKind::DeviceNotAvailable
            | ErrorKind::StreamInvalidated
            | ErrorKind::HostUnavailable => {
                tracing::warn!(%direction, %err, "sound device stream failed");
                *self.failure.lock() = Some(err.to_string());
                // Nobody listening: the owner has already stopped the stream.
                let _ = self.owner.try_send(Control::Failed(err.to_string()));
            }
            // The stream goes on: a glitch (xrun), a reroute, a refused realtime priority.
            _ => {
                self.glitches.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(%direction, %err, "sound device glitch");
            }
        }
    }

    fn failure(&self) -> Option<String> {
        self.failure.lock().clone()
    }
}

/// What a stream's owner thread waits for.
enum Control {
    Stop,
    Failed(String),
}

/// Messages queued for a stream's owner: the first one ends the stream, so a stop and a failure
/// are all there ever is to hold; more failures are dropped.
const CONTROL_QUEUE: usize = 2;

/// The thread that builds, plays and finally drops a cpal stream.
#[derive(Debug)]
struct StreamOwner {
    control: SyncSender<Control>,
    thread: Option<JoinHandle<()>>,
    health: Arc<Health>,
}

impl StreamOwner {
    /// Runs `open` on a new thread, plays the stream it builds, and keeps it until told to stop
    /// or until the stream fails; then drops it and calls `on_end` with the reason (also when
    /// opening failed).
    fn spawn(
        name: &str,
        direction: Direction,
        device: String,
        open: impl FnOnce(&Arc<Health>) -> Result<(cpal::Stream, DeviceFormat), DeviceError>
        + Send
        + 'static,
        on_end: impl FnOnce(String) + Send + 'static,
    ) -> Result<(Self, DeviceFormat), DeviceError> {
        let (control_tx, control_rx) = mpsc::sync_channel(CONTROL_QUEUE);
        let (ready_tx, ready_rx) = mpsc::sync_channel(1);
        let health = Arc::new(Health {
            glitches: AtomicU64::new(0),
            failure: Mutex::new(None),
            owner: control_tx.clone(),
        });
        let thread = std::thread::Builder::new()
            .name(name.into())
            .spawn({
                let health = Arc::clone(&health);
                move || {
                    let _quiet = AlsaQuiet::install();
                    let reason = run_stream(direction, &health, open, &ready_tx, &control_rx);
                    on_end(reason);
                }
            })
            .map_err(DeviceError::Thread)?;
        let waited = OPEN_TIMEOUT * 2;
        match ready_rx.recv_timeout(waited) {
            Ok(Ok(format)) => Ok((
                Self {
                    control: control_tx,
                    thread: Some(thread),
                    health,
                },
                format,
            )),
            Ok(Err(err)) => {
                let _ = thread.join();
                Err(err)
            }
            // The thread is stuck inside the audio system; it cannot be stopped, only left.
            Err(_) => Err(DeviceError::OpenTimeout {
                direction,
                device,
                waited,
            }),
        }
    }
}

/// The body of a stream's thread: opens, plays, waits for the end; returns why it ended.
fn run_stream(
    direction: Direction,
    health: &Arc<Health>,
    open: impl FnOnce(&Arc<Health>) -> Result<(cpal::Stream, DeviceFormat), DeviceError>,
    ready: &SyncSender<Result<DeviceFormat, DeviceError>>,
    control: &Receiver<Control>,
) -> String {
    let (stream, format) = match open(health) {
        Ok(opened) => opened,
        Err(err) => {
            let reason = err.to_string();
            let _ = ready.send(Err(err));
            return reason;
        }
    };
    if let Err(source) = stream.play() {
        let err = DeviceError::Open {
            direction,
            device: format.device.clone(),
            source,
        };
        let reason = err.to_string();
        let _ = ready.send(Err(err));
        return reason;
    }
    let device = format.device.clone();
    if ready.send(Ok(format)).is_err() {
        return "the opener gave up waiting".into();
    }
    let reason = match control.recv() {
        Ok(Control::Failed(reason)) => reason,
        Ok(Control::Stop) | Err(_) => "stopped".into(),
    };
    drop(stream);
    tracing::debug!(%device, %reason, "sound device stream closed");
    reason
}

impl Drop for StreamOwner {
    fn drop(&mut self) {
        // A full queue holds a failure, which ends the stream just as well.
        let _ = self.control.try_send(Control::Stop);
        if let Some(thread) = self.thread.take()
            && thread.join().is_err()
        {
            tracing::warn!("the audio device thread panicked");
        }
    }
}

/// Sends ALSA's own error lines (missing cards, unreachable plugins) to `tracing` instead of
/// standard error, for the thread it is installed on.
#[derive(Debug)]
struct AlsaQuiet {
    #[cfg(any(
        target_os = "linux",
        target_os = "dragonfly",
        target_os = "freebsd",
        target_os = "netbsd"
    ))]
    output: Option<std::rc::Rc<std::cell::RefCell<alsa::Output>>>,
}

impl AlsaQuiet {
    fn install() -> Self {
        Self {
            #[cfg(any(
                target_os = "linux",
                target_os = "dragonfly",
                target_os = "freebsd",
                target_os = "netbsd"
            ))]
            output: alsa::Output::local_error_handler().ok(),
        }
    }
}

#[cfg(any(
    target_os = "linux",
    target_os = "dragonfly",
    target_os = "freebsd",
    target_os = "netbsd"
))]
impl Drop for AlsaQuiet {
    fn drop(&mut self) {
        if let Some(output) = &self.output {
            let text = output.borrow().to_string();
            if !text.trim().is_empty() {
                tracing::debug!(alsa = %text.trim_end(), "ALSA said");
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Conversion: pure, tested without a device.

/// Linear-interpolation rate conversion that runs one sample at a time and keeps its state
/// between calls, so that audio callbacks of any size join without seams (the whole-buffer
/// [`super::resample::resample`] restarts at every buffer). Going down in rate, a moving average
/// over the decimation factor first damps what would fold back, as `resample` does.
#[derive(Debug, Clone)]
pub struct Resampler {
    /// Input samples per output sample.
    step: f64,
    /// Where the next output falls, in input samples after `prev`.
    position: f64,
    prev: f32,
    next: f32,
    average: Option<MovingAverage>,
    passthrough: bool,
}

impl Resampler {
    /// Converts from `from` Hz to `to` Hz (a zero rate passes samples through unchanged).
    pub fn new(from: u32, to: u32) -> Self {
        let passthrough = from == to || from == 0 || to == 0;
        let width = if to > 0 { from.div_ceil(to) } else { 1 } as usize;
        Self {
            step: if passthrough {
                1.0
            } else {
                f64::from(from) / f64::from(to)
            },
            // The first output is the first input sample, two samples from the (silent) start.
            position: 2.0,
            prev: 0.0,
            next: 0.0,
            average: (!passthrough && width > 1).then(|| MovingAverage::new(width)),
            passthrough,
        }
    }

    /// Takes one input sample and emits every output sample that is now due (none, one or
    /// several). Output lags input by one input sample.
    pub fn push(&mut self, sample: f32, mut emit: impl FnMut(f32)) {
        if self.passthrough {
            emit(sample);
            return;
        }
        let sample = match &mut self.average {
            Some(average) => average.push(sample),
            None => sample,
        };
        self.prev = self.next;
        self.next = sample;
        self.position -= 1.0;
        while self.position < 1.0 {
            let fraction = self.position.max(0.0) as f32;
            emit(self.prev + (self.next - self.prev) * fraction);
            self.position += self.step;
        }
    }
}

/// The mean of the last `width` samples (fewer at the start).
#[derive(Debug, Clone)]
struct MovingAverage {
    window: VecDeque<f32>,
    width: usize,
    sum: f64,
}

impl MovingAverage {
    fn new(width: usize) -> Self {
        Self {
            window: VecDeque::with_capacity(width),
            width,
            sum: 0.0,
        }
    }

    fn push(&mut self, sample: f32) -> f32 {
        if self.window.len() == self.width
            && let Some(oldest) = self.window.pop_front()
        {
            self.sum -= f64::from(oldest);
        }
        self.window.push_back(sample);
        self.sum += f64::from(sample);
        (self.sum / self.window.len() as f64) as f32
    }
}

/// Turns a device's interleaved input (any rate, any channel count) into 20 ms chunks of 48 kHz
/// mono: each frame is averaged across channels, resampled, and collected into chunks of
/// [`FRAME_SAMPLES`].
#[derive(Debug, Clone)]
struct CaptureConverter {
    channels: usize,
    /// Sum of the current frame's channels so far, and how many.
    frame_sum: f32,
    frame_len: usize,
    resampler: Resampler,
    chunk: Vec<f32>,
}

impl CaptureConverter {
    fn new(rate: u32, channels: u16) -> Self {
        Self {
            channels: usize::from(channels.max(1)),
            frame_sum: 0.0,
            frame_len: 0,
            resampler: Resampler::new(rate, SAMPLE_RATE),
            chunk: Vec::with_capacity(FRAME_SAMPLES),
        }
    }

    /// Takes interleaved samples (a callback may end mid-frame) and emits each completed chunk.
    fn push(&mut self, samples: impl Iterator<Item = f32>, mut emit: impl FnMut(Vec<f32>)) {
        let Self {
            channels,
            frame_sum,
            frame_len,
            resampler,
            chunk,
        } = self;
        for sample in samples {
            *frame_sum += sample;
            *frame_len += 1;
            if *frame_len < *channels {
                continue;
            }
            let mono = *frame_sum / *channels as f32;
            *frame_sum = 0.0;
            *frame_len = 0;
            resampler.push(mono, |out| {
                chunk.push(out);
                if chunk.len() == FRAME_SAMPLES {
                    emit(std::mem::replace(chunk, Vec::with_capacity(FRAME_SAMPLES)));
                }
            });
        }
    }
}

/// Fills a device's interleaved output buffer (any rate, any channel count, any sample type) from
/// the 48 kHz mono ring: resampled, and the same sample on every channel.
#[derive(Debug, Clone)]
struct PlaybackConverter {
    channels: usize,
    /// 48 kHz samples per device sample.
    step: f64,
    resampler: Resampler,
    /// Resampled samples not yet played (a resampler emits in whole input samples).
    pending: VecDeque<f32>,
    scratch: Vec<f32>,
}

impl PlaybackConverter {
    fn new(rate: u32, channels: u16) -> Self {
        Self {
            channels: usize::from(channels.max(1)),
            step: if rate == 0 {
                1.0
            } else {
                f64::from(SAMPLE_RATE) / f64::from(rate)
            },
            resampler: Resampler::new(SAMPLE_RATE, rate),
            pending: VecDeque::new(),
            scratch: Vec::new(),
        }
    }

    fn fill<T: FromSample<f32> + Copy>(&mut self, out: &mut [T], ring: &Ring) {
        let frames = out.len() / self.channels;
        while self.pending.len() < frames {
            let missing = frames - self.pending.len();
            let want = ((missing as f64 * self.step).ceil() as usize).max(1);
            self.scratch.clear();
            ring.pull(want, &mut self.scratch);
            let pending = &mut self.pending;
            for sample in &self.scratch {
                self.resampler.push(*sample, |out| pending.push_back(out));
            }
        }
        for frame in out.chunks_mut(self.channels) {
            let value: T = from_f32(self.pending.pop_front().unwrap_or(0.0));
            for slot in frame {
                *slot = value;
            }
        }
    }
}

/// The playback queue between a player thread and the device callback: 48 kHz mono samples.
#[derive(Debug)]
struct Ring {
    state: Mutex<RingState>,
    /// Signalled when the device takes samples, and when the stream ends.
    taken: Condvar,
    /// `push` appends only when at most this many samples are queued.
    ahead: usize,
    stall: Duration,
}

#[derive(Debug, Default)]
struct RingState {
    samples: VecDeque<f32>,
    /// Why the stream ended, once it has.
    closed: Option<String>,
    /// Whether a chunk has ever been pushed (before that, silence is not an underrun).
    started: bool,
    chunks: u64,
    underruns: u64,
    device_delay: Duration,
}

impl Ring {
    fn new(ahead: usize, stall: Duration) -> Self {
        Self {
            state: Mutex::new(RingState::default()),
            taken: Condvar::new(),
            ahead,
            stall,
        }
    }

    fn push(&self, chunk: &[f32]) -> Result<(), DeviceError> {
        let deadline = Instant::now() + self.stall;
        let mut state = self.state.lock();
        loop {
            if let Some(reason) = &state.closed {
                return Err(DeviceError::Stream {
                    direction: Direction::Output,
                    reason: reason.clone(),
                });
            }
            if state.samples.len() <= self.ahead {
                break;
            }
            if Instant::now() >= deadline {
                return Err(DeviceError::Stalled { waited: self.stall });
            }
            self.taken.wait_until(&mut state, deadline);
        }
        state.samples.extend(chunk);
        state.started = true;
        state.chunks += 1;
        Ok(())
    }

    /// Appends `n` samples to `out` for the device: queued audio, then silence if the ring ran
    /// short (an underrun, once playing has started).
    fn pull(&self, n: usize, out: &mut Vec<f32>) {
        let mut state = self.state.lock();
        let available = n.min(state.samples.len());
        out.extend(state.samples.drain(..available));
        if available < n {
            if state.started {
                state.underruns += 1;
            }
            out.resize(out.len() + (n - available), 0.0);
        }
        drop(state);
        self.taken.notify_all();
    }

    fn note_device_delay(&self, delay: Duration) {
        self.state.lock().device_delay = delay;
    }

    fn close(&self, reason: String) {
        self.state.lock().closed.get_or_insert(reason);
        self.taken.notify_all();
    }

    fn latency(&self) -> Duration {
        let state = self.state.lock();
        let queued =
            state.samples.len() as u64 * FRAME_DURATION.as_nanos() as u64 / FRAME_SAMPLES as u64;
        Duration::from_nanos(queued) + state.device_delay
    }

    fn stats(&self) -> PlaybackStats {
        let state = self.state.lock();
        PlaybackStats {
            chunks: state.chunks,
            underruns: state.underruns,
            glitches: 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audio::signal::{similarity, sine};

    /// `n` samples of a `hertz` sine at `rate`, interleaved on `channels` channels.
    fn tone(hertz: f32, rate: u32, channels: usize, n: usize) -> Vec<f32> {
        (0..n)
            .flat_map(|i| {
                let v = 0.5 * (std::f32::consts::TAU * hertz * i as f32 / rate as f32).sin();
                std::iter::repeat_n(v, channels)
            })
            .collect()
    }

    /// Feeds `input` to a capture converter in callbacks of uneven sizes; returns the chunks.
    fn capture(rate: u32, channels: u16, input: &[f32]) -> Vec<Vec<f32>> {
        let mut converter = CaptureConverter::new(rate, channels);
        let mut chunks = Vec::new();
        let mut rest = input;
        for size in [1usize, 7, 441, 1024, 333, 2].into_iter().cycle() {
            if rest.is_empty() {
                break;
            }
            let (now, later) = rest.split_at(size.min(rest.len()));
            converter.push(now.iter().copied(), |chunk| chunks.push(chunk));
            rest = later;
        }
        chunks
    }

    #[test]
    fn sample_formats_convert_to_and_from_f32() {
        assert_eq!(to_f32(i16::MIN), -1.0);
        assert_eq!(to_f32(0i16), 0.0);
        assert!((to_f32(i16::MAX) - 1.0).abs() < 1e-4);
        assert_eq!(to_f32(32_768u16), 0.0, "unsigned silence is the midpoint");
        assert_eq!(to_f32(0u16), -1.0);
        assert_eq!(to_f32(128u8), 0.0);
        assert_eq!(to_f32(0.25f32), 0.25);
        assert!((to_f32(0.5f64) - 0.5).abs() < 1e-6);
        assert!((to_f32(I24::new(1 << 22).expect("in range")) - 0.5).abs() < 1e-6);
        assert!((to_f32(i32::MIN / 2) + 0.5).abs() < 1e-6);

        assert_eq!(from_f32::<i16>(0.0), 0);
        assert_eq!(from_f32::<i16>(-1.0), i16::MIN);
        assert_eq!(from_f32::<i16>(2.0), i16::MAX, "clamped, not wrapped");
        assert_eq!(from_f32::<u16>(0.0), 32_768);
        assert_eq!(from_f32::<u8>(0.0), 128);
        assert_eq!(from_f32::<f32>(-3.0), -1.0);
        for value in [-0.75f32, -0.1, 0.0, 0.3, 0.9] {
            assert!((to_f32(from_f32::<i16>(value)) - value).abs() < 1e-4);
            assert!((to_f32(from_f32::<u16>(value)) - value).abs() < 1e-4);
            assert!((to_f32(from_f32::<i32>(value)) - value).abs() < 1e-6);
        }
    }

    #[test]
    fn channels_are_averaged_even_across_callback_boundaries() {
        // 48 kHz stereo: no resampling, so every output sample is exactly one frame's mean.
        let input: Vec<f32> = (0..FRAME_SAMPLES * 2)
            .flat_map(|i| [i as f32 / 10_000.0, 0.0])
            .collect();
        let chunks = capture(48_000, 2, &input);
        assert_eq!(chunks.len(), 2);
        let mono: Vec<f32> = chunks.concat();
        for (i, sample) in mono.iter().enumerate() {
            assert_eq!(*sample, i as f32 / 20_000.0, "sample {i}");
        }
        let quad = capture(48_000, 4, &[1.0, 0.0, 0.5, 0.5].repeat(FRAME_SAMPLES));
        assert_eq!(quad, vec![vec![0.5; FRAME_SAMPLES]]);
    }

    #[test]
    fn any_rate_becomes_20_ms_chunks_at_48_khz_with_the_signal_intact() {
        for (rate, channels) in [
            (8_000, 1),
            (16_000, 2),
            (22_050, 1),
            (44_100, 2),
            (48_000, 1),
            (96_000, 2),
        ] {
            // Two seconds in, about 100 chunks out (the resampler lags by one input sample).
            let input = tone(440.0, rate, channels, rate as usize * 2);
            let chunks = capture(rate, channels as u16, &input);
            assert!(
                (99..=100).contains(&chunks.len()),
                "{rate} Hz × {channels}: {} chunks",
                chunks.len()
            );
            assert!(chunks.iter().all(|c| c.len() == FRAME_SAMPLES));
            let out = chunks.concat();
            let score = similarity(&sine(440.0, 0.5, 48_000), &out);
            assert!(
                score > 0.98,
                "{rate} Hz × {channels}: similarity {score:.3}"
            );
        }
    }

    #[test]
    fn streaming_resampling_matches_whole_buffer_resampling() {
        // The same interpolation as `resample`, so callback boundaries change nothing.
        let input = tone(300.0, 44_100, 1, 4_410);
        let whole = crate::audio::resample::resample(&input, 44_100, 48_000);
        let mut streamed = Vec::new();
        let mut resampler = Resampler::new(44_100, 48_000);
        for sample in &input {
            resampler.push(*sample, |out| streamed.push(out));
        }
        // Every output sample that both computed from real input agrees.
        let n = streamed.len().min(whole.len()) - 1;
        for i in 0..n {
            assert!(
                (streamed[i] - whole[i]).abs() < 1e-5,
                "sample {i}: {} vs {}",
                streamed[i],
                whole[i]
            );
        }
        assert!(n >= 4_790, "{n}");
    }

    #[test]
    fn playback_resamples_and_upmixes_into_the_device_format() {
        let ring = Ring::new(usize::MAX, PLAYBACK_STALL);
        let voice = sine(440.0, 0.5, 48_000);
        for chunk in voice.chunks(FRAME_SAMPLES) {
            ring.push(chunk).expect("ring open");
        }
        // A 44.1 kHz stereo i16 device, asking for odd-sized buffers.
        let mut converter = PlaybackConverter::new(44_100, 2);
        let mut left = Vec::new();
        for size in [441usize, 512, 37, 1024].into_iter().cycle() {
            if left.len() >= 43_000 {
                break;
            }
            let mut buffer = vec![0i16; size * 2];
            converter.fill(&mut buffer, &ring);
            for frame in buffer.chunks(2) {
                assert_eq!(frame[0], frame[1], "the same sample on every channel");
                left.push(to_f32(frame[0]));
            }
        }
        let back = crate::audio::resample::resample(&left, 44_100, 48_000);
        let score = similarity(&voice[..40_000], &back);
        assert!(score > 0.98, "similarity {score:.3}");
        assert_eq!(ring.stats().underruns, 0, "{:?}", ring.stats());
    }

    #[test]
    fn underruns_play_silence_and_are_counted_once_playing() {
        let ring = Ring::new(PLAYBACK_AHEAD, PLAYBACK_STALL);
        let mut out = Vec::new();
        ring.pull(480, &mut out);
        assert_eq!(out, vec![0.0; 480]);
        assert_eq!(
            ring.stats().underruns,
            0,
            "silence before the first chunk is no underrun"
        );

        ring.push(&[0.5; FRAME_SAMPLES]).expect("open");
        out.clear();
        ring.pull(FRAME_SAMPLES + 100, &mut out);
        assert_eq!(&out[..FRAME_SAMPLES], &[0.5; FRAME_SAMPLES][..]);
        assert_eq!(&out[FRAME_SAMPLES..], &[0.0; 100][..]);
        assert_eq!(ring.stats().underruns, 1);
        assert_eq!(ring.stats().chunks, 1);
    }

    #[test]
    fn push_waits_until_the_device_has_taken_enough() {
        let ring = Arc::new(Ring::new(PLAYBACK_AHEAD, Duration::from_secs(30)));
        let (pushed_tx, pushed) = mpsc::channel();
        let player = std::thread::spawn({
            let ring = Arc::clone(&ring);
            move || {
                for n in 0..4 {
                    ring.push(&[0.1; FRAME_SAMPLES]).expect("open");
                    pushed_tx.send(n).expect("test alive");
                }
            }
        });
        let wait = Duration::from_secs(10);
        // Three chunks go in at once (the third when two are queued: at most PLAYBACK_AHEAD).
        for n in 0..3 {
            assert_eq!(pushed.recv_timeout(wait), Ok(n));
        }
        // The fourth waits: nothing has been played.
        assert_eq!(
            pushed.recv_timeout(Duration::from_millis(200)),
            Err(mpsc::RecvTimeoutError::Timeout)
        );
        assert_eq!(ring.latency(), FRAME_DURATION * 3);
        // The device takes one chunk: room again.
        let mut out = Vec::new();
        ring.pull(FRAME_SAMPLES, &mut out);
        assert_eq!(pushed.recv_timeout(wait), Ok(3));
        player.join().expect("player thread");
        ring.note_device_delay(Duration::from_millis(5));
        assert_eq!(
            ring.latency(),
            FRAME_DURATION * 3 + Duration::from_millis(5)
        );
    }

    #[test]
    fn push_fails_instead_of_hanging_when_the_stream_ends_or_stalls() {
        let ring = Arc::new(Ring::new(0, Duration::from_secs(30)));
        ring.push(&[0.0; 10]).expect("room for the first");
        let blocked = std::thread::spawn({
            let ring = Arc::clone(&ring);
            move || ring.push(&[0.0; 10])
        });
        ring.close("the device went away".into());
        let err = blocked.join().expect("thread").expect_err("closed");
        assert!(matches!(err, DeviceError::Stream { .. }), "{err}");
        assert!(err.to_string().contains("the device went away"), "{err}");
        assert!(ring.push(&[0.0]).is_err(), "and every push after");

        let stalled = Ring::new(0, Duration::from_millis(50));
        stalled.push(&[0.0; 10]).expect("room for the first");
        let err = stalled.push(&[0.0; 10]).expect_err("nobody plays");
        assert!(matches!(err, DeviceError::Stalled { .. }), "{err}");
    }

    #[test]
    fn errors_read_well() {
        let err = DeviceError::NoDevice {
            direction: Direction::Input,
            host: "ALSA".into(),
            alternative: Direction::Input.alternative(),
        };
        assert_eq!(
            err.to_string(),
            "no sound card found (no usable default input device on ALSA); use --input \
             FILE.wav|sine|silence"
        );
        let err = DeviceError::NotFound {
            direction: Direction::Output,
            name: "usb".into(),
            host: "ALSA".into(),
            available: vec!["default".into(), "hw:CARD=PCH,DEV=0".into()],
        };
        assert_eq!(
            err.to_string(),
            "no output device called \"usb\" on ALSA; available: default, hw:CARD=PCH,DEV=0"
        );
    }
}
