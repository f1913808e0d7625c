use std::sync::Arc;
use std::sync::mpsc;
use std::time::Duration;

use cpal::I24;

use super::convert::{CaptureConverter, PlaybackConverter, from_f32, to_f32};
use super::ring::Ring;
use super::*;
use crate::audio::signal::{similarity, sine};
use crate::audio::{FRAME_DURATION, FRAME_SAMPLES};

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
