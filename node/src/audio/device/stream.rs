//! Streams: building a cpal stream per sample format, and owning it on a thread of its own that
//! builds, plays and finally drops it.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::thread::JoinHandle;

use cpal::traits::{DeviceTrait, StreamTrait};
use cpal::{
    BufferSize, ErrorKind, FromSample, I24, OutputCallbackInfo, SampleFormat, SizedSample,
    StreamConfig, U24,
};
use parking_lot::Mutex;

use super::alsa::AlsaQuiet;
use super::convert::{CaptureConverter, PlaybackConverter, to_f32};
use super::ring::Ring;
use super::{DeviceError, DeviceFormat, Direction, OPEN_TIMEOUT};

/// Builds with the chosen period; a device that refuses it gets its own default period.
pub(super) fn build_with_fallback(
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

pub(super) fn build_capture(
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

pub(super) fn build_playback(
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
                converter.fill(data, &ring);
                let timestamp = info.timestamp();
                ring.note_device_delay(
                    timestamp.playback.duration_since(timestamp.callback) + converter.delay(),
                );
            },
            move |err| health.report(Direction::Output, err),
            Some(OPEN_TIMEOUT),
        )
    }
    with_sample_type!(format, typed(device, config, converter, ring, health))
}

/// A cpal sample as `f32` in -1..1.
/// Hands capture chunks to the reader without ever waiting.
#[derive(Debug, Clone)]
pub(super) struct ChunkSender {
    pub(super) chunks: SyncSender<Vec<f32>>,
    pub(super) counters: Arc<Counters>,
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
pub(super) struct Counters {
    pub(super) chunks: AtomicU64,
    pub(super) dropped: AtomicU64,
}

/// What a stream's error callback tells its owner.
#[derive(Debug)]
pub(super) struct Health {
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
pub(super) struct StreamOwner {
    control: SyncSender<Control>,
    thread: Option<JoinHandle<()>>,
    health: Arc<Health>,
}

impl StreamOwner {
    /// Runs `open` on a new thread, plays the stream it builds, and keeps it until told to stop
    /// or until the stream fails; then drops it and calls `on_end` with the reason (also when
    /// opening failed).
    pub(super) fn spawn(
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

    /// Glitches the device reported so far.
    pub(super) fn glitches(&self) -> u64 {
        self.health.glitches.load(Ordering::Relaxed)
    }

    /// Why the stream stopped on its own, if it did.
    pub(super) fn failure(&self) -> Option<String> {
        self.health.failure()
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
