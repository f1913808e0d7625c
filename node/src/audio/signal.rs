//! Generated signals (so every audio path can run without a microphone) and the similarity
//! measure used to check that audio arrived intact.

use std::f32::consts::TAU;

use super::SAMPLE_RATE;

/// `n` samples of a sine at `frequency` Hz and `amplitude` (0-1), at 48 kHz.
pub fn sine(frequency: f32, amplitude: f32, n: usize) -> Vec<f32> {
    (0..n)
        .map(|i| amplitude * (TAU * frequency * i as f32 / SAMPLE_RATE as f32).sin())
        .collect()
}

/// `n` samples of a deterministic speech-like signal: voiced "syllables" (a harmonic series
/// whose pitch glides between 100 and 220 Hz, with formant-like emphasis) separated by short
/// pauses. Not speech, but it exercises the codec like speech does.
pub fn speechlike(n: usize, seed: u64) -> Vec<f32> {
    let mut state = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state % 10_000) as f32 / 10_000.0
    };
    let rate = SAMPLE_RATE as f32;
    let mut out = Vec::with_capacity(n);
    let mut phase = 0.0f32;
    while out.len() < n {
        // A syllable of 120-300 ms, then 40-150 ms of silence.
        let syllable = ((0.12 + 0.18 * next()) * rate) as usize;
        let pause = ((0.04 + 0.11 * next()) * rate) as usize;
        let (start_pitch, end_pitch) = (100.0 + 120.0 * next(), 100.0 + 120.0 * next());
        let formant = 500.0 + 1500.0 * next();
        for i in 0..syllable {
            let t = i as f32 / syllable as f32;
            let pitch = start_pitch + (end_pitch - start_pitch) * t;
            phase += TAU * pitch / rate;
            let envelope = (std::f32::consts::PI * t).sin().powf(0.6);
            let mut sample = 0.0;
            for harmonic in 1..=12 {
                let frequency = pitch * harmonic as f32;
                let emphasis = 1.0 / (1.0 + ((frequency - formant) / 400.0).powi(2));
                sample += emphasis * (phase * harmonic as f32).sin() / harmonic as f32;
            }
            out.push(0.3 * envelope * sample);
        }
        out.extend(std::iter::repeat_n(0.0, pause));
    }
    out.truncate(n);
    out
}

/// How alike `output` is to `reference`: the best normalised cross-correlation over delays of 0
/// to 500 ms (codecs, networks and jitter buffers delay audio). 1.0 is identical up to gain.
pub fn similarity(reference: &[f32], output: &[f32]) -> f64 {
    const COARSE: usize = 8;
    let max_lag = (SAMPLE_RATE as usize / 2).min(output.len());
    // Coarse search on every 8th sample and lag, then refine around the best coarse lag.
    let coarse = (0..max_lag)
        .step_by(COARSE)
        .max_by(|a, b| {
            ncc(reference, output, *a, COARSE).total_cmp(&ncc(reference, output, *b, COARSE))
        })
        .unwrap_or(0);
    (coarse.saturating_sub(COARSE)..(coarse + COARSE + 1).min(max_lag.max(1)))
        .map(|lag| ncc(reference, output, lag, 1))
        .fold(0.0, f64::max)
}

/// Like [`similarity`], but aligning each `window` of the output on its own (still within 0 to
/// 500 ms of delay) and averaging by energy: the measure for a receiver whose delay changes
/// while it plays (an adaptive jitter buffer skipping a frame shifts everything after it).
pub fn similarity_in_windows(reference: &[f32], output: &[f32], window: usize) -> f64 {
    const COARSE: usize = 8;
    let max_lag = SAMPLE_RATE as usize / 2;
    let window = window.max(COARSE);
    let (mut weighted, mut total) = (0.0f64, 0.0f64);
    for start in (0..output.len().saturating_sub(window - 1)).step_by(window) {
        let out = &output[start..start + window];
        let energy: f64 = out.iter().map(|s| f64::from(*s).powi(2)).sum();
        if energy == 0.0 {
            continue;
        }
        // At the start of the output, the first `lag - start` samples precede the reference.
        let at = |lag: usize, step: usize| {
            let skip = lag.saturating_sub(start).min(window);
            let from = (start + skip).saturating_sub(lag);
            let len = window - skip;
            match reference.get(from..from + len) {
                Some(reference) if len >= window / 2 => ncc(reference, &out[skip..], 0, step),
                _ => 0.0,
            }
        };
        let coarse = (0..max_lag)
            .step_by(COARSE)
            .max_by(|a, b| at(*a, COARSE).total_cmp(&at(*b, COARSE)))
            .unwrap_or(0);
        let best = (coarse.saturating_sub(COARSE)..coarse + COARSE + 1)
            .map(|lag| at(lag, 1))
            .fold(0.0, f64::max);
        weighted += best * energy;
        total += energy;
    }
    if total == 0.0 { 0.0 } else { weighted / total }
}

/// Normalised cross-correlation of `reference` with `output` delayed by `lag`, sampling every
/// `step`-th sample.
fn ncc(reference: &[f32], output: &[f32], lag: usize, step: usize) -> f64 {
    let n = reference.len().min(output.len().saturating_sub(lag));
    let (mut dot, mut energy_a, mut energy_b) = (0.0f64, 0.0f64, 0.0f64);
    for i in (0..n).step_by(step) {
        let a = f64::from(reference[i]);
        let b = f64::from(output[i + lag]);
        dot += a * b;
        energy_a += a * a;
        energy_b += b * b;
    }
    if energy_a == 0.0 || energy_b == 0.0 {
        return 0.0;
    }
    dot / (energy_a.sqrt() * energy_b.sqrt())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn similarity_finds_delays_and_rejects_different_signals() {
        let reference = speechlike(48_000, 1);
        let mut delayed = vec![0.0; 317];
        delayed.extend(reference.iter().map(|s| s * 0.5));
        assert!(similarity(&reference, &delayed) > 0.99);
        assert!(similarity(&reference, &speechlike(48_000, 2)) < 0.5);
        assert!(similarity(&reference, &vec![0.0; 48_000]) == 0.0);
        assert!(similarity(&[], &[]) == 0.0);
    }

    #[test]
    fn windowed_similarity_follows_a_delay_that_changes() {
        let reference = speechlike(96_000, 4);
        // 20 ms of delay for the first second, then none (a frame skipped).
        let mut output = vec![0.0; 960];
        output.extend_from_slice(&reference[..48_000 - 960]);
        output.extend_from_slice(&reference[48_000..]);
        assert!(similarity_in_windows(&reference, &output, 24_000) > 0.99);
        assert!(similarity(&reference, &output) < 0.9);
        assert!(similarity_in_windows(&reference, &speechlike(96_000, 5), 24_000) < 0.5);
        // Short windows still tell different speech apart.
        let other = similarity_in_windows(&reference, &speechlike(96_000, 5), 4_800);
        assert!(other < 0.6, "{other}");
    }

    #[test]
    fn generated_signals_are_in_range() {
        for sample in speechlike(96_000, 3)
            .into_iter()
            .chain(sine(440.0, 0.9, 4800))
        {
            assert!((-1.0..=1.0).contains(&sample));
        }
    }
}
