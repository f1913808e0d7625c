//! Conversion between a device's format (any rate, channel count and sample type, interleaved)
//! and Earshot's (48 kHz mono `f32` in 20 ms chunks). Pure: tested without a device.

use std::collections::VecDeque;
use std::time::Duration;

use cpal::FromSample;

use super::ring::Ring;
use crate::audio::resample::Resampler;
use crate::audio::{FRAME_SAMPLES, SAMPLE_RATE};

/// A cpal sample as `f32` in -1..1.
pub(super) fn to_f32<T>(sample: T) -> f32
where
    f32: FromSample<T>,
{
    f32::from_sample_(sample)
}

/// An `f32` (clamped to -1..1) as a cpal sample.
pub(super) fn from_f32<T: FromSample<f32>>(sample: f32) -> T {
    T::from_sample_(sample.clamp(-1.0, 1.0))
}

/// Turns a device's interleaved input (any rate, any channel count) into 20 ms chunks of 48 kHz
/// mono: each frame is averaged across channels, resampled, and collected into chunks of
/// [`FRAME_SAMPLES`].
#[derive(Debug)]
pub(super) struct CaptureConverter {
    channels: usize,
    /// Sum of the current frame's channels so far, and how many.
    frame_sum: f32,
    frame_len: usize,
    resampler: Resampler,
    chunk: Vec<f32>,
}

impl CaptureConverter {
    pub(super) fn new(rate: u32, channels: u16) -> Self {
        Self {
            channels: usize::from(channels.max(1)),
            frame_sum: 0.0,
            frame_len: 0,
            resampler: Resampler::new(rate, SAMPLE_RATE),
            chunk: Vec::with_capacity(FRAME_SAMPLES),
        }
    }

    /// Takes interleaved samples (a callback may end mid-frame) and emits each completed chunk.
    pub(super) fn push(
        &mut self,
        samples: impl Iterator<Item = f32>,
        mut emit: impl FnMut(Vec<f32>),
    ) {
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
#[derive(Debug)]
pub(super) struct PlaybackConverter {
    channels: usize,
    /// The device's rate.
    rate: u32,
    /// 48 kHz samples per device sample.
    step: f64,
    resampler: Resampler,
    /// Resampled samples not yet played (a resampler emits whole chunks).
    pending: VecDeque<f32>,
    scratch: Vec<f32>,
}

impl PlaybackConverter {
    pub(super) fn new(rate: u32, channels: u16) -> Self {
        Self {
            channels: usize::from(channels.max(1)),
            rate,
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

    /// Fills `out` (interleaved frames of the device's channel count) from `ring`.
    pub(super) fn fill<T: FromSample<f32> + Copy>(&mut self, out: &mut [T], ring: &Ring) {
        let frames = out.len() / self.channels;
        while self.pending.len() < frames {
            let missing = frames - self.pending.len();
            let want = ((missing as f64 * self.step).ceil() as usize).max(1);
            self.scratch.clear();
            ring.pull(want, &mut self.scratch);
            let pending = &mut self.pending;
            self.resampler
                .push_slice(&self.scratch, |out| pending.push_back(out));
        }
        for frame in out.chunks_mut(self.channels) {
            let value: T = from_f32(self.pending.pop_front().unwrap_or(0.0));
            for slot in frame {
                *slot = value;
            }
        }
    }

    /// How long audio taken from the ring waits here before the device has it: what the
    /// resampler holds back and what was resampled ahead.
    pub(super) fn delay(&self) -> Duration {
        if self.rate == 0 {
            return Duration::ZERO;
        }
        let samples = (self.pending.len() + self.resampler.delay()) as u64;
        Duration::from_nanos(samples * 1_000_000_000 / u64::from(self.rate))
    }
}
