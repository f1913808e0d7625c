//! Exports a recording to a standard file: Ogg Opus (RFC 7845) or WAV, all speakers mixed or
//! one of them.
//!
//! The recording is read back in time order and rebuilt on a 20 ms timeline from its start:
//! each speaker's frames are decoded by a decoder of its own (a short gap in a speaker's frames
//! is concealed, a long one is silence), the speakers are mixed (soft-clipped like live
//! playback), and the result is written as WAV samples or re-encoded into one Opus stream.

use std::collections::HashMap;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use earshot_protocol::frame::{SAMPLES_PER_FRAME, SpeakerId, flags};
use earshot_protocol::private::Keychain;

use super::ogg::{self, OggError, OggOpusWriter, OpusTags};
use super::store::{RecordingError, RecordingMeta, Recordings, StoredFrame};
use crate::audio::codec::{CodecError, VoiceDecoder, VoiceEncoder};
use crate::audio::{FRAME_SAMPLES, SAMPLE_RATE};

/// Missing frames a speaker's decoder conceals before it counts as silent.
const CONCEAL_FRAMES: u64 = 3;

/// What to write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Opus,
    Wav,
}

impl Format {
    /// From a file name's extension (`.opus`, `.ogg`, `.wav`).
    pub fn of(path: &Path) -> Option<Format> {
        match path
            .extension()
            .and_then(|ext| ext.to_str())
            .map(str::to_ascii_lowercase)
            .as_deref()
        {
            Some("opus" | "ogg") => Some(Format::Opus),
            Some("wav") => Some(Format::Wav),
            _ => None,
        }
    }
}

/// Why an export failed.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error(transparent)]
    Recording(#[from] RecordingError),
    #[error(transparent)]
    Codec(#[from] CodecError),
    #[error(transparent)]
    Ogg(#[from] OggError),
    #[error("cannot write {path}: {source}")]
    File {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write {path}: {source}")]
    Wav { path: PathBuf, source: hound::Error },
    #[error("{path}: the file name must end in .opus, .ogg or .wav")]
    UnknownFormat { path: PathBuf },
    #[error("recording {id} has nobody with id {speaker:08x}")]
    NoSuchSpeaker { id: String, speaker: u32 },
    #[error("{path} does not read back as the Ogg Opus file just written: {reason}")]
    Verify { path: PathBuf, reason: String },
    #[error(
        "recording {id} is a private room's: its audio is sealed, and this node does not hold \
         its key (a replay link of a private room carries it)"
    )]
    Sealed { id: String },
}

/// What an export wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exported {
    /// 48 kHz samples of audio in the file.
    pub samples: u64,
    pub bytes: u64,
}

/// Writes recording `meta` to `path` (format by extension); only `speaker` if given.
/// `progress` is called with the fraction done, now and then.
/// A private room's recording opens with `keys` (its epoch keys, from its recording key).
pub fn export(
    recordings: &Recordings,
    meta: &RecordingMeta,
    keys: Option<&Keychain>,
    path: &Path,
    speaker: Option<SpeakerId>,
    progress: impl FnMut(f64),
) -> Result<Exported, ExportError> {
    let format = Format::of(path).ok_or_else(|| ExportError::UnknownFormat {
        path: path.to_owned(),
    })?;
    if let Some(speaker) = speaker
        && !meta.speakers.contains_key(&speaker.0)
    {
        return Err(ExportError::NoSuchSpeaker {
            id: meta.id.to_string(),
            speaker: speaker.0,
        });
    }
    let file_err = |source| ExportError::File {
        path: path.to_owned(),
        source,
    };
    let file = std::fs::File::create(path).map_err(file_err)?;
    let mut sink = match format {
        Format::Opus => {
            let mut encoder = VoiceEncoder::for_files()?;
            let pre_skip = encoder.lookahead()?;
            let writer = OggOpusWriter::new(
                BufWriter::new(file),
                serial(meta),
                pre_skip,
                &tags(meta, speaker),
            )?;
            Sink::Opus {
                encoder,
                writer,
                pre_skip,
            }
        }
        Format::Wav => Sink::Wav(
            hound::WavWriter::new(
                BufWriter::new(file),
                hound::WavSpec {
                    channels: 1,
                    sample_rate: SAMPLE_RATE,
                    bits_per_sample: 16,
                    sample_format: hound::SampleFormat::Int,
                },
            )
            .map_err(|source| ExportError::Wav {
                path: path.to_owned(),
                source,
            })?,
        ),
    };

    let samples = render(
        recordings,
        meta,
        keys,
        speaker,
        |chunk| sink.write(chunk, path),
        progress,
    )?;
    sink.finish(samples, path)?;
    if format == Format::Opus {
        verify(path, samples)?;
    }
    let bytes = std::fs::metadata(path).map_err(file_err)?.len();
    Ok(Exported { samples, bytes })
}

/// Rebuilds recording `meta` (only `speaker`, if given) as 20 ms chunks of 48 kHz samples from
/// its start to its end, handing each to `chunk`; `progress` hears the fraction done now and
/// then. Returns the number of samples.
pub fn render(
    recordings: &Recordings,
    meta: &RecordingMeta,
    keys: Option<&Keychain>,
    speaker: Option<SpeakerId>,
    mut chunk: impl FnMut(&[f32]) -> Result<(), ExportError>,
    mut progress: impl FnMut(f64),
) -> Result<u64, ExportError> {
    let total_chunks = meta.duration_samples.div_ceil(u64::from(SAMPLES_PER_FRAME));
    let mut voices: HashMap<SpeakerId, Voice> = HashMap::new();
    let mut chunk_index = 0u64;
    let mut frames = recordings
        .frames(&meta.id)
        .filter(|frame| {
            speaker.is_none() || frame.as_ref().map_or(true, |f| Some(f.speaker) == speaker)
        })
        .peekable();
    let mut last_progress = 0.0;
    while chunk_index < total_chunks {
        // The frames that start in this chunk (each speaker's frames sit at its own phase).
        let chunk_end = (chunk_index + 1) * u64::from(SAMPLES_PER_FRAME);
        let mut mix = vec![0.0f32; FRAME_SAMPLES];
        let mut heard: Vec<SpeakerId> = Vec::new();
        while let Some(Ok(frame)) = frames.peek() {
            if frame.at >= chunk_end {
                break;
            }
            let Some(Ok(frame)) = frames.next() else {
                break;
            };
            if heard.contains(&frame.speaker) {
                // Two frames of one speaker in a chunk (a clock step): keep the first.
                continue;
            }
            let voice = match voices.entry(frame.speaker) {
                std::collections::hash_map::Entry::Occupied(entry) => entry.into_mut(),
                std::collections::hash_map::Entry::Vacant(entry) => entry.insert(Voice {
                    decoder: VoiceDecoder::new()?,
                    last: chunk_index,
                }),
            };
            voice.last = chunk_index;
            heard.push(frame.speaker);
            let payload = match opened(keys, meta, &frame)? {
                Some(payload) => payload,
                None => continue,
            };
            match voice.decoder.decode(&payload) {
                Ok(samples) => add(&mut mix, &samples),
                Err(err) => tracing::debug!(%err, "an undecodable frame in a recording"),
            }
        }
        if let Some(Err(_)) = frames.peek()
            && let Some(Err(err)) = frames.next()
        {
            return Err(err.into());
        }
        // Speakers who paused briefly are concealed; longer, they are silent.
        for (id, voice) in &mut voices {
            if !heard.contains(id)
                && chunk_index - voice.last <= CONCEAL_FRAMES
                && let Ok(samples) = voice.decoder.conceal()
            {
                add(&mut mix, &samples);
            }
        }
        for sample in &mut mix {
            *sample = sample.clamp(-1.5, 1.5);
            *sample = *sample - *sample * *sample * *sample / 6.75;
        }
        chunk(&mix)?;
        chunk_index += 1;
        let done = chunk_index as f64 / total_chunks.max(1) as f64;
        if done - last_progress >= 0.01 {
            progress(done);
            last_progress = done;
        }
    }
    progress(1.0);
    Ok(total_chunks * u64::from(SAMPLES_PER_FRAME))
}

/// The Opus payload of a stored frame: a sealed one opened with `keys` (`None`: it does not
/// open, a frame the recorder kept under an epoch it lost), or an error if there are none.
fn opened(
    keys: Option<&Keychain>,
    meta: &RecordingMeta,
    frame: &StoredFrame,
) -> Result<Option<Vec<u8>>, ExportError> {
    if frame.flags & flags::SEALED == 0 {
        return Ok(Some(frame.payload.clone()));
    }
    let keys = keys.ok_or_else(|| ExportError::Sealed {
        id: meta.id.to_string(),
    })?;
    let sealed = earshot_protocol::frame::AudioFrame {
        speaker: frame.speaker,
        seq: frame.seq,
        timestamp: frame.timestamp,
        level: frame.level,
        flags: frame.flags,
        payload: frame.payload.clone(),
        tag: None,
    };
    Ok(keys.open_frame(&sealed).ok().map(|open| open.payload))
}

struct Voice {
    decoder: VoiceDecoder,
    /// The chunk of its last frame.
    last: u64,
}

enum Sink {
    Opus {
        encoder: VoiceEncoder,
        writer: OggOpusWriter<BufWriter<std::fs::File>>,
        pre_skip: u16,
    },
    Wav(hound::WavWriter<BufWriter<std::fs::File>>),
}

impl Sink {
    fn write(&mut self, chunk: &[f32], path: &Path) -> Result<(), ExportError> {
        match self {
            Sink::Opus {
                encoder, writer, ..
            } => {
                let encoded = encoder.encode(chunk)?;
                writer.write_packet(&encoded.payload, SAMPLES_PER_FRAME)?;
            }
            Sink::Wav(writer) => {
                for sample in chunk {
                    let value = (sample.clamp(-1.0, 1.0) * f32::from(i16::MAX)).round() as i16;
                    writer
                        .write_sample(value)
                        .map_err(|source| ExportError::Wav {
                            path: path.to_owned(),
                            source,
                        })?;
                }
            }
        }
        Ok(())
    }

    fn finish(self, samples: u64, path: &Path) -> Result<(), ExportError> {
        let file_err = |source| ExportError::File {
            path: path.to_owned(),
            source,
        };
        match self {
            Sink::Opus {
                mut encoder,
                mut writer,
                pre_skip,
            } => {
                // The encoder holds back `pre_skip` samples: push silence through so that the
                // last of the audio is in the file, then trim to the real length.
                let flush = u64::from(pre_skip).div_ceil(u64::from(SAMPLES_PER_FRAME));
                for _ in 0..flush {
                    let encoded = encoder.encode(&[0.0; FRAME_SAMPLES])?;
                    writer.write_packet(&encoded.payload, SAMPLES_PER_FRAME)?;
                }
                let mut out = writer.finish(samples)?;
                out.flush().map_err(file_err)?;
            }
            Sink::Wav(writer) => writer.finalize().map_err(|source| ExportError::Wav {
                path: path.to_owned(),
                source,
            })?,
        }
        Ok(())
    }
}

/// Reads an Ogg Opus export back with the strict reader ([`ogg::read`]) and checks that it plays
/// `samples` samples: a writer bug, or a write the disk lost without saying so, fails the export
/// here rather than in a listener's player. Cheap next to encoding: ten minutes (3.7 MB) read
/// back in 90 ms in a debug build.
fn verify(path: &Path, samples: u64) -> Result<(), ExportError> {
    let fail = |reason: String| ExportError::Verify {
        path: path.to_owned(),
        reason,
    };
    let bytes = std::fs::read(path).map_err(|err| fail(err.to_string()))?;
    let file = ogg::read(&bytes).map_err(|err| fail(err.to_string()))?;
    let plays = file.final_granule - u64::from(file.head.pre_skip);
    if plays != samples {
        return Err(fail(format!(
            "it plays {plays} samples, {samples} were written"
        )));
    }
    Ok(())
}

fn add(mix: &mut [f32], samples: &[f32]) {
    for (out, sample) in mix.iter_mut().zip(samples) {
        *out += sample;
    }
}

/// The Ogg stream serial number: from the recording id (any value is valid; this one is stable).
fn serial(meta: &RecordingMeta) -> u32 {
    let id = meta.id.as_bytes();
    u32::from_be_bytes([id[0], id[1], id[2], id[3]])
}

fn tags(meta: &RecordingMeta, speaker: Option<SpeakerId>) -> OpusTags {
    let mut comments = vec![
        ("TITLE".to_owned(), meta.title.clone()),
        ("ALBUM".to_owned(), format!("earshot room {}", meta.room)),
        ("DATE".to_owned(), meta.started_at.to_string()),
        ("EARSHOT_RECORDING".to_owned(), meta.id.to_string()),
    ];
    for (id, info) in &meta.speakers {
        if speaker.is_none_or(|s| s.0 == *id) {
            comments.push(("ARTIST".to_owned(), info.name.clone()));
        }
    }
    OpusTags {
        vendor: format!("earshot {}", env!("CARGO_PKG_VERSION")),
        comments,
    }
}

#[cfg(test)]
mod tests;
