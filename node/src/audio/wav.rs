//! WAV files: read any common rate, depth and channel count as 48 kHz mono; write 48 kHz mono.

use std::path::{Path, PathBuf};

use super::SAMPLE_RATE;
use super::resample::resample;

/// Why a WAV file could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum WavError {
    #[error("{path}: {source}")]
    Hound { path: PathBuf, source: hound::Error },
    #[error("{path}: unsupported WAV format ({bits}-bit {format})")]
    Unsupported {
        path: PathBuf,
        bits: u16,
        format: &'static str,
    },
    #[error("{path}: the file has no audio")]
    Empty { path: PathBuf },
}

/// Reads a WAV file as 48 kHz mono samples in [-1, 1].
pub fn read(path: &Path) -> Result<Vec<f32>, WavError> {
    let hound_err = |source| WavError::Hound {
        path: path.to_owned(),
        source,
    };
    let reader = hound::WavReader::open(path).map_err(hound_err)?;
    let spec = reader.spec();
    let interleaved: Vec<f32> = match (spec.sample_format, spec.bits_per_sample) {
        (hound::SampleFormat::Float, 32) => reader
            .into_samples::<f32>()
            .collect::<Result<_, _>>()
            .map_err(hound_err)?,
        (hound::SampleFormat::Int, bits @ (8 | 16 | 24 | 32)) => {
            let scale = 1.0 / (1u64 << (bits - 1)) as f32;
            reader
                .into_samples::<i32>()
                .map(|sample| sample.map(|s| s as f32 * scale))
                .collect::<Result<_, _>>()
                .map_err(hound_err)?
        }
        (format, bits) => {
            return Err(WavError::Unsupported {
                path: path.to_owned(),
                bits,
                format: match format {
                    hound::SampleFormat::Float => "float",
                    hound::SampleFormat::Int => "integer",
                },
            });
        }
    };
    if interleaved.is_empty() {
        return Err(WavError::Empty {
            path: path.to_owned(),
        });
    }
    let mono = downmix(&interleaved, usize::from(spec.channels));
    Ok(resample(&mono, spec.sample_rate, SAMPLE_RATE)
        .into_iter()
        .map(|s| s.clamp(-1.0, 1.0))
        .collect())
}

/// Mixes interleaved frames of `channels` channels down to mono.
fn downmix(interleaved: &[f32], channels: usize) -> Vec<f32> {
    if channels <= 1 {
        return interleaved.to_vec();
    }
    interleaved
        .chunks(channels)
        .map(|frame| frame.iter().sum::<f32>() / frame.len() as f32)
        .collect()
}

/// Writes 48 kHz mono samples as a 16-bit WAV file.
pub fn write(path: &Path, samples: &[f32]) -> Result<(), WavError> {
    write_at(path, samples, SAMPLE_RATE)
}

/// Writes mono samples at `rate` as a 16-bit WAV file (scoring tools want 16 kHz).
pub fn write_at(path: &Path, samples: &[f32], rate: u32) -> Result<(), WavError> {
    let hound_err = |source| WavError::Hound {
        path: path.to_owned(),
        source,
    };
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: rate,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut writer = hound::WavWriter::create(path, spec).map_err(hound_err)?;
    for sample in samples {
        let value = (sample.clamp(-1.0, 1.0) * f32::from(i16::MAX)).round() as i16;
        writer.write_sample(value).map_err(hound_err)?;
    }
    writer.finalize().map_err(hound_err)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audio::signal::{similarity, speechlike};

    #[test]
    fn wav_files_round_trip_and_convert() {
        let dir = tempfile::tempdir().expect("tempdir");
        let speech = speechlike(48_000, 4);
        let path = dir.path().join("speech.wav");
        write(&path, &speech).expect("write");
        let back = read(&path).expect("read");
        assert_eq!(back.len(), speech.len());
        assert!(similarity(&speech, &back) > 0.999);

        // 16 kHz stereo, 16-bit: comes back as 48 kHz mono.
        let stereo = dir.path().join("stereo.wav");
        let spec = hound::WavSpec {
            channels: 2,
            sample_rate: 16_000,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let mut writer = hound::WavWriter::create(&stereo, spec).expect("create");
        for i in 0..16_000 {
            let s = ((std::f32::consts::TAU * 300.0 * i as f32 / 16_000.0).sin() * 8000.0) as i16;
            writer.write_sample(s).expect("left");
            writer.write_sample(s).expect("right");
        }
        writer.finalize().expect("finalize");
        let converted = read(&stereo).expect("read");
        assert!((converted.len() as i64 - 48_000).abs() <= 1);
    }

    #[test]
    fn stereo_downmixes_to_mono() {
        assert_eq!(downmix(&[1.0, 0.0, 0.5, 0.5], 2), vec![0.5, 0.5]);
        assert_eq!(downmix(&[0.25, 0.5], 1), vec![0.25, 0.5]);
    }

    #[test]
    fn bad_files_are_clear_errors() {
        let dir = tempfile::tempdir().expect("tempdir");
        let missing = dir.path().join("missing.wav");
        assert!(matches!(read(&missing), Err(WavError::Hound { .. })));
        let garbage = dir.path().join("garbage.wav");
        std::fs::write(&garbage, b"RIFF1234WAVEnot really").expect("write");
        let err = read(&garbage).expect_err("garbage");
        assert!(err.to_string().contains("garbage.wav"), "{err}");
    }
}
