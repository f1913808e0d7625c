//! The playback ring: the queue between a player thread, which blocks while the device has
//! enough queued, and the device callback, which never waits on anything but a short lock.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

use super::{DeviceError, Direction, PlaybackStats};
use crate::audio::{FRAME_DURATION, FRAME_SAMPLES};

/// The playback queue between a player thread and the device callback: 48 kHz mono samples.
#[derive(Debug)]
pub(super) struct Ring {
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
    pub(super) fn new(ahead: usize, stall: Duration) -> Self {
        Self {
            state: Mutex::new(RingState::default()),
            taken: Condvar::new(),
            ahead,
            stall,
        }
    }

    pub(super) fn push(&self, chunk: &[f32]) -> Result<(), DeviceError> {
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
    pub(super) fn pull(&self, n: usize, out: &mut Vec<f32>) {
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

    /// How long audio taken from the ring takes to be heard, as the last callback saw it: the
    /// conversion's delay and the device's own buffer.
    pub(super) fn note_device_delay(&self, delay: Duration) {
        self.state.lock().device_delay = delay;
    }

    pub(super) fn close(&self, reason: String) {
        self.state.lock().closed.get_or_insert(reason);
        self.taken.notify_all();
    }

    pub(super) fn latency(&self) -> Duration {
        let state = self.state.lock();
        let queued =
            state.samples.len() as u64 * FRAME_DURATION.as_nanos() as u64 / FRAME_SAMPLES as u64;
        Duration::from_nanos(queued) + state.device_delay
    }

    pub(super) fn stats(&self) -> PlaybackStats {
        let state = self.state.lock();
        PlaybackStats {
            chunks: state.chunks,
            underruns: state.underruns,
            glitches: 0,
        }
    }
}
