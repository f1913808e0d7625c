//! Sample-rate conversion to and from 48 kHz: whole buffers ([`resample`], WAV files) and streams
//! ([`Resampler`], sound cards).
//!
//! Linear interpolation, with a moving-average low-pass when going down: plenty for speech from
//! microphones and WAV files at common rates (8-96 kHz). A sinc resampler would be the upgrade
//! for music.

use std::collections::VecDeque;

/// Converts `input` at `from` Hz to `to` Hz.
pub fn resample(input: &[f32], from: u32, to: u32) -> Vec<f32> {
    if from == to || input.is_empty() || from == 0 || to == 0 {
        return input.to_vec();
    }
    let smoothed;
    let source = if to < from {
        // Average over the decimation factor first, so that content above the new Nyquist
        // frequency is damped rather than folded back.
        let width = (from as usize).div_ceil(to as usize);
        smoothed = moving_average(input, width);
        &smoothed
    } else {
        input
    };
    let ratio = f64::from(from) / f64::from(to);
    let n = ((input.len() as f64) / ratio).floor() as usize;
    (0..n)
        .map(|i| {
            let position = i as f64 * ratio;
            let index = position.floor() as usize;
            let fraction = (position - index as f64) as f32;
            let a = source[index.min(source.len() - 1)];
            let b = source[(index + 1).min(source.len() - 1)];
            a + (b - a) * fraction
        })
        .collect()
}

fn moving_average(input: &[f32], width: usize) -> Vec<f32> {
    if width <= 1 {
        return input.to_vec();
    }
    let mut out = Vec::with_capacity(input.len());
    let mut sum = 0.0f64;
    for (i, sample) in input.iter().enumerate() {
        sum += f64::from(*sample);
        if i >= width {
            sum -= f64::from(input[i - width]);
        }
        out.push((sum / width.min(i + 1) as f64) as f32);
    }
    out
}

/// Linear-interpolation rate conversion that runs one sample at a time and keeps its state
/// between calls, so that audio callbacks of any size join without seams (the whole-buffer
/// [`resample`] restarts at every buffer). Going down in rate, a moving average
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

/// Mixes interleaved frames of `channels` channels down to mono.
pub fn downmix(interleaved: &[f32], channels: usize) -> Vec<f32> {
    if channels <= 1 {
        return interleaved.to_vec();
    }
    interleaved
        .chunks(channels)
        .map(|frame| frame.iter().sum::<f32>() / frame.len() as f32)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audio::signal::{similarity, sine};

    #[test]
    fn rates_convert_and_keep_the_signal() {
        let check = |from: u32| {
            let tone: Vec<f32> = (0..from as usize)
                .map(|i| (std::f32::consts::TAU * 440.0 * i as f32 / from as f32).sin() * 0.5)
                .collect();
            let up = resample(&tone, from, 48_000);
            assert!(
                (up.len() as i64 - 48_000).abs() <= 1,
                "{from} Hz: {} samples",
                up.len()
            );
            let score = similarity(&sine(440.0, 0.5, 48_000), &up);
            assert!(score > 0.95, "{from} Hz: {score:.3}");
        };
        for from in [8_000, 16_000, 22_050, 44_100, 48_000, 96_000] {
            check(from);
        }
        assert!(resample(&[], 16_000, 48_000).is_empty());
    }

    #[test]
    fn streaming_resampling_matches_whole_buffer_resampling() {
        // The same interpolation as `resample`, so callback boundaries change nothing.
        let input: Vec<f32> = (0..4_410)
            .map(|i| 0.5 * (std::f32::consts::TAU * 300.0 * i as f32 / 44_100.0).sin())
            .collect();
        let whole = resample(&input, 44_100, 48_000);
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
    fn stereo_downmixes_to_mono() {
        assert_eq!(downmix(&[1.0, 0.0, 0.5, 0.5], 2), vec![0.5, 0.5]);
        assert_eq!(downmix(&[0.25, 0.5], 1), vec![0.25, 0.5]);
    }
}
