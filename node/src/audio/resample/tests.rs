use super::*;
use crate::audio::signal::{similarity, sine};

/// One second of a `hertz` sine of amplitude 0.5 at `rate`.
fn tone(hertz: f64, rate: u32) -> Vec<f32> {
    (0..rate)
        .map(|i| {
            (0.5 * (std::f64::consts::TAU * hertz * f64::from(i) / f64::from(rate)).sin()) as f32
        })
        .collect()
}

/// The `hertz` component of `signal` at `rate` (a least-squares fit of a sine and a cosine over
/// the middle 80 %, leaving out the edges): its amplitude, and the ratio of its power to that of
/// everything else (SINAD) in dB.
fn fit(signal: &[f32], hertz: f64, rate: u32) -> (f64, f64) {
    let edge = signal.len() / 10;
    let omega = std::f64::consts::TAU * hertz / f64::from(rate);
    // (sine, cosine, sample) at each position of the middle.
    let points = || {
        (edge..signal.len() - edge).map(|i| {
            let phase = omega * i as f64;
            (phase.sin(), phase.cos(), f64::from(signal[i]))
        })
    };
    let (mut xs, mut xc, mut ss, mut cc, mut sc) = (0.0, 0.0, 0.0, 0.0, 0.0);
    for (s, c, x) in points() {
        (xs, xc) = (xs + x * s, xc + x * c);
        (ss, cc, sc) = (ss + s * s, cc + c * c, sc + s * c);
    }
    let det = ss * cc - sc * sc;
    let (a, b) = ((xs * cc - xc * sc) / det, (xc * ss - xs * sc) / det);
    let residual: f64 = points().map(|(s, c, x)| (x - a * s - b * c).powi(2)).sum();
    let amplitude = a.hypot(b);
    let n = (signal.len() - 2 * edge) as f64;
    (
        amplitude,
        10.0 * ((amplitude * amplitude / 2.0) / (residual / n)).log10(),
    )
}

fn db(amplitude: f64) -> f64 {
    20.0 * (amplitude / 0.5).log10()
}

#[test]
fn tones_keep_their_amplitude_with_low_distortion() {
    // (tone, from, to, worst SINAD allowed in dB). The linear interpolation Earshot had measured
    // 62, 42, 64 and 20 dB here, and damped the 10 kHz tone by 1.5 dB.
    for (hertz, from, to, sinad_min) in [
        (1_000.0, 44_100, 48_000, 100.0),
        (1_000.0, 16_000, 48_000, 100.0),
        (1_000.0, 48_000, 44_100, 100.0),
        (10_000.0, 44_100, 48_000, 100.0),
    ] {
        let out = resample(&tone(hertz, from), from, to);
        let (amplitude, sinad) = fit(&out, hertz, to);
        eprintln!(
            "{hertz} Hz, {from} → {to} Hz: gain {:+.3} dB, SINAD {sinad:.1} dB",
            db(amplitude)
        );
        assert!(
            db(amplitude).abs() < 0.05,
            "{hertz} Hz {from} → {to}: {amplitude}"
        );
        assert!(
            sinad > sinad_min,
            "{hertz} Hz {from} → {to}: SINAD {sinad:.1} dB"
        );
    }
}

#[test]
fn downsampling_damps_what_lies_above_the_new_nyquist_frequency() {
    // (tone, where it would fold to, from, to). The linear interpolation behind a moving average
    // let these through at -9.5, -5.1 and -17.5 dB.
    for (hertz, folded, from, to) in [
        (12_000.0, 4_000.0, 48_000, 16_000),
        (30_000.0, 18_000.0, 96_000, 48_000),
        (20_000.0, 2_050.0, 48_000, 22_050),
    ] {
        let out = resample(&tone(hertz, from), from, to);
        let (alias, _) = fit(&out, folded, to);
        // Everything that came out, away from the edges (where the tone starts and stops).
        let middle = &out[out.len() / 10..out.len() - out.len() / 10];
        let power = middle.iter().map(|s| f64::from(*s).powi(2)).sum::<f64>();
        let rms = (power / middle.len() as f64).sqrt();
        let all = db(rms * std::f64::consts::SQRT_2);
        eprintln!(
            "{hertz} Hz, {from} → {to} Hz: folded to {folded} Hz at {:.1} dB, all output {all:.1} dB",
            db(alias)
        );
        assert!(
            db(alias) < -100.0,
            "{hertz} Hz {from} → {to}: {:.1} dB",
            db(alias)
        );
        assert!(all < -100.0, "{hertz} Hz {from} → {to}: {all:.1} dB in all");
    }
}

#[test]
fn rates_convert_and_keep_the_signal() {
    for from in [8_000, 16_000, 22_050, 44_100, 48_000, 96_000] {
        let up = resample(&tone(440.0, from), from, 48_000);
        assert!(
            (up.len() as i64 - 48_000).abs() <= 1,
            "{from} Hz: {} samples",
            up.len()
        );
        let score = similarity(&sine(440.0, 0.5, 48_000), &up);
        assert!(score > 0.999, "{from} Hz: {score:.4}");
    }
    assert!(resample(&[], 16_000, 48_000).is_empty());
}

#[test]
fn the_delay_is_small_and_the_whole_buffer_result_lines_up() {
    for (from, to) in [
        (44_100, 48_000),
        (48_000, 44_100),
        (96_000, 48_000),
        (16_000, 48_000),
    ] {
        let resampler = Resampler::new(from, to);
        let delay_ms = resampler.delay() as f64 * 1000.0 / f64::from(to);
        eprintln!("{from} → {to} Hz: filter delay {delay_ms:.2} ms");
        let limit = if from >= 44_100 { 1.5 } else { 4.5 };
        assert!(delay_ms <= limit, "{from} → {to}: {delay_ms:.2} ms");
    }
    // An impulse comes out where it went in.
    let mut impulse = vec![0.0f32; 44_100];
    impulse[22_050] = 1.0;
    let out = resample(&impulse, 44_100, 48_000);
    let peak = (0..out.len()).max_by(|a, b| out[*a].total_cmp(&out[*b]));
    assert_eq!(peak, Some(24_000));
}

#[test]
fn streaming_in_uneven_pieces_matches_the_whole_buffer() {
    let input = tone(300.0, 44_100);
    let whole = resample(&input, 44_100, 48_000);
    let mut resampler = Resampler::new(44_100, 48_000);
    let skip = resampler.delay();
    let mut streamed = Vec::new();
    let mut rest = &input[..];
    for size in [1usize, 7, 441, 1024, 333, 2].into_iter().cycle() {
        if rest.is_empty() {
            break;
        }
        let (now, later) = rest.split_at(size.min(rest.len()));
        if let [one] = now {
            resampler.push(*one, |s| streamed.push(s));
        } else {
            resampler.push_slice(now, |s| streamed.push(s));
        }
        rest = later;
    }
    let streamed = &streamed[skip..];
    assert!(streamed.len() > 47_800, "{}", streamed.len());
    assert_eq!(streamed, &whole[..streamed.len()]);
}

#[test]
fn equal_rates_pass_through() {
    let mut resampler = Resampler::new(48_000, 48_000);
    let mut out = Vec::new();
    resampler.push_slice(&[0.25, -0.5], |s| out.push(s));
    resampler.push(1.0, |s| out.push(s));
    assert_eq!(out, vec![0.25, -0.5, 1.0]);
    assert_eq!(resampler.delay(), 0);
    assert_eq!(resample(&[0.1, 0.2], 44_100, 44_100), vec![0.1, 0.2]);
}
