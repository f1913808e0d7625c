//! Sample-rate conversion to and from 48 kHz.
//!
//! Linear interpolation, with a moving-average low-pass when going down: plenty for speech from
//! microphones and WAV files at common rates (8-96 kHz). A sinc resampler would be the upgrade
//! for music.

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
    fn stereo_downmixes_to_mono() {
        assert_eq!(downmix(&[1.0, 0.0, 0.5, 0.5], 2), vec![0.5, 0.5]);
        assert_eq!(downmix(&[0.25, 0.5], 1), vec![0.25, 0.5]);
    }
}
