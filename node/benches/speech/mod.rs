//! What the two speech-quality measurements share (the `audio_quality` bench, and the lossy
//! lab's `lab::lossy_sound` in `tests/lab/mod.rs`, which includes this file by path): the talkers and
//! espeak-ng saying them at a set level, and scoring outputs with PESQ-WB through
//! `scripts/pesq.py`. It sits in a folder of its own so that cargo does not take it for a bench;
//! everything here is used by both.

use std::ops::Range;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use earshot_node::audio::resample::resample;
use earshot_node::audio::{FRAME_SAMPLES, SAMPLE_RATE, wav};

/// One talker: an espeak-ng voice and what it says.
#[derive(Debug, Clone, Copy)]
pub struct Talker {
    pub name: &'static str,
    pub sex: &'static str,
    voice: &'static str,
    text: &'static str,
}

/// A: Harvard sentences list 1 in espeak-ng's default (male) English voice; B: list 2 in a
/// female variant.
pub const TALKERS: [Talker; 2] = [
    Talker {
        name: "A",
        sex: "male",
        voice: "en",
        text: "The birch canoe slid on the smooth planks. Glue the sheet to the dark blue \
               background. It's easy to tell the depth of a well. These days a chicken leg is \
               a rare dish.",
    },
    Talker {
        name: "B",
        sex: "female",
        voice: "en+f3",
        text: "The boy was there when the sun rose. A rod is used to catch pink salmon. The \
               source of the huge river is the clear spring. Kick the ball straight and follow \
               through.",
    },
];
/// espeak-ng's speed, in words per minute (the demo's).
const WORDS_PER_MINUTE: &str = "165";
/// The speech's active level (over the 20 ms frames within 30 dB of the loudest), the usual
/// level for speech-quality tests (-26 dBov).
pub const SPEECH_LEVEL_DBFS: f64 = -26.0;
/// The rate PESQ-WB scores at.
const PESQ_RATE: u32 = 16_000;

/// `talker`'s sentences from espeak-ng at [`SPEECH_LEVEL_DBFS`], at 48 kHz (espeak-ng writes
/// 22.05 kHz; read through Earshot's resampler); or why not.
pub fn say(dir: &Path, talker: Talker) -> Result<Vec<f32>, String> {
    let path = dir.join("espeak.wav");
    let spoken = Command::new("espeak-ng")
        .args(["-v", talker.voice, "-s", WORDS_PER_MINUTE, "-w"])
        .arg(&path)
        .arg(talker.text)
        .output();
    match spoken {
        Ok(out) if out.status.success() => Ok(at_level(
            &wav::read(&path).expect("read espeak-ng's speech"),
            SPEECH_LEVEL_DBFS,
        )),
        Ok(out) => Err(format!(
            "espeak-ng -v {} failed ({}): {}",
            talker.voice,
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )),
        Err(err) => Err(format!(
            "espeak-ng not found ({err}); it says the speech scored here (apt-get install \
             espeak-ng)"
        )),
    }
}

/// `d` of silence at 48 kHz.
pub fn silence(d: Duration) -> Vec<f32> {
    vec![0.0; (d.as_secs_f64() * f64::from(SAMPLE_RATE)) as usize]
}

/// `speech` scaled to an active level of `dbfs`: the RMS over its 20 ms frames within 30 dB of
/// the loudest (a rough ITU-T P.56), kept below full scale.
fn at_level(speech: &[f32], dbfs: f64) -> Vec<f32> {
    let power = |chunk: &[f32]| chunk.iter().map(|&s| f64::from(s).powi(2)).sum::<f64>();
    let rms = |chunk: &[f32]| (power(chunk) / chunk.len() as f64).sqrt();
    let frames: Vec<f64> = speech.chunks_exact(FRAME_SAMPLES).map(rms).collect();
    let loudest = frames.iter().copied().fold(0.0, f64::max);
    let active: Vec<f64> = frames
        .into_iter()
        .filter(|&r| r > loudest * 10f64.powf(-30.0 / 20.0))
        .collect();
    let level = (active.iter().map(|r| r * r).sum::<f64>() / active.len().max(1) as f64).sqrt();
    let peak = speech.iter().fold(0.0f32, |m, s| m.max(s.abs()));
    let gain = (10f64.powf(dbfs / 20.0) / level.max(1e-9)).min(0.9 / f64::from(peak.max(1e-9)));
    speech
        .iter()
        .map(|&s| (f64::from(s) * gain) as f32)
        .collect()
}

/// Runs `scripts/pesq.py` on 16 kHz files in a directory, against the input's stretches.
#[derive(Debug)]
pub struct Scorer {
    script: PathBuf,
    dir: PathBuf,
    reference: PathBuf,
    /// The stretches, as `pesq.py` takes them (`FROM:TO`, seconds).
    stretches: Vec<String>,
}

impl Scorer {
    /// A scorer of outputs against `input` (48 kHz), stretch by stretch (ranges of samples); or
    /// what is missing and how to install it (`pesq.py --check` says).
    pub fn new(
        dir: &Path,
        input: &[f32],
        stretches: impl IntoIterator<Item = Range<usize>>,
    ) -> Result<Self, String> {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/pesq.py");
        match Command::new("python3").arg(&script).arg("--check").output() {
            Err(err) => {
                return Err(format!(
                    "python3 not found ({err}): PESQ is scored in Python; install python3, then \
                     `python3 -m pip install --user pesq` (numpy, and the pesq module, which \
                     builds a small C extension)"
                ));
            }
            Ok(out) if !out.status.success() => {
                let stderr = String::from_utf8_lossy(&out.stderr);
                return Err(format!("{} ({})", stderr.trim(), out.status));
            }
            Ok(_) => {}
        }
        let reference = dir.join("input-16k.wav");
        write_16k(&reference, input);
        let seconds = |sample: usize| sample as f64 / f64::from(SAMPLE_RATE);
        Ok(Self {
            script,
            dir: dir.to_owned(),
            reference,
            stretches: stretches
                .into_iter()
                .map(|range| format!("{:.4}:{:.4}", seconds(range.start), seconds(range.end)))
                .collect(),
        })
    }

    /// PESQ-WB of each stretch of `output` (48 kHz), and how each was lined up with the input;
    /// the 16 kHz file is kept as `name`.
    pub fn score(&self, name: &str, output: &[f32]) -> (Vec<f64>, Vec<String>) {
        let path = self.dir.join(format!("{name}-16k.wav"));
        write_16k(&path, output);
        let out = Command::new("python3")
            .arg(&self.script)
            .arg(&self.reference)
            .arg(&path)
            .args(&self.stretches)
            .output()
            .expect("run scripts/pesq.py");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "pesq.py failed on {name}: {stderr}");
        let stdout = String::from_utf8_lossy(&out.stdout);
        let mos: Vec<f64> = stdout
            .lines()
            .map(|line| {
                line.trim()
                    .parse()
                    .unwrap_or_else(|_| panic!("pesq.py printed {line:?} for {name}"))
            })
            .collect();
        assert_eq!(
            mos.len(),
            self.stretches.len(),
            "pesq.py on {name}: {stdout}"
        );
        // "pesq.py: 0.50-10.61 s: shifted by +6.4 ms (correlation 0.959)": the last part.
        let alignment = stderr
            .lines()
            .filter_map(|line| line.rsplit_once(": ").map(|(_, a)| a.to_owned()))
            .collect();
        (mos, alignment)
    }
}

/// Writes 48 kHz `samples` as a 16-bit 16 kHz WAV file (band-limited first, by Earshot's
/// resampler: a windowed sinc).
fn write_16k(path: &Path, samples: &[f32]) {
    wav::write_at(path, &resample(samples, SAMPLE_RATE, PESQ_RATE), PESQ_RATE)
        .expect("write a 16 kHz WAV file");
}
