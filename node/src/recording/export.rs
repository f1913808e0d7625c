//! Exports a recording to a standard file: Ogg Opus (RFC 7845) or WAV, all speakers mixed or
//! one of them.
//!
//! The recording is read back in time order and rebuilt on a 20 ms timeline from its start:
//! each speaker's frames are decoded by a decoder of its own (a short gap in a speaker's frames
//! is concealed, a long one is silence), the speakers are mixed (soft-clipped like live
//! playback), and the result is written as WAV samples or into one Opus stream. In the Opus
//! stream, a 20 ms where one speaker alone is heard keeps that speaker's own packet as it was
//! said (no generation loss: decoding and encoding again costs about 0.4 MOS); the rest (two
//! voices at once, a voice concealed, silence) is encoded anew, by an encoder fed the mix
//! throughout (so its state follows the audio) and a look-ahead early (so that what it encodes
//! lines up with the packets kept). One speaker's export (`speaker`) is that speaker's packets.
//!
//! Where a speaker's studio track ([`earshot_protocol::studio`]: its voice recorded before the
//! network, at a higher bitrate) has a frame, it takes the place of the frame the room heard:
//! the export sounds as the speaker did at their microphone, frames lost on the way included
//! (up to [`STUDIO_AFTER_LIVE`] after the last one the room heard: a studio track never puts
//! back what the room did not hear, a speaker muted by the host, say).

use std::collections::{BTreeMap, HashMap};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use earshot_protocol::frame::{SAMPLES_PER_FRAME, SpeakerId, flags};
use earshot_protocol::private::Keychain;
use earshot_protocol::replay::ContentRecord;

use super::ogg::{self, OggError, OggOpusWriter, OpusTags};
use super::store::{RecordingError, RecordingMeta, Recordings, StoredFrame};
use crate::audio::codec::{CodecError, VoiceDecoder, VoiceEncoder};
use crate::audio::{FRAME_SAMPLES, SAMPLE_RATE};

/// Missing frames a speaker's decoder conceals before it counts as silent.
const CONCEAL_FRAMES: u64 = 3;
/// A speaker's studio frames are taken where the room heard that speaker, and for this many
/// 20 ms after the last frame it heard (0.5 s: frames lost on the way), never longer: what the
/// room did not hear for longer (a speaker the host muted or took off the stage) stays out.
const STUDIO_AFTER_LIVE: u64 = 25;

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
    /// Ogg Opus: packets written as their speaker said them (the rest were encoded anew).
    pub kept: u64,
    /// Frames taken from the speakers' studio tracks (their voices recorded before the
    /// network), in place of the frames the room heard.
    pub from_studio: u64,
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
            let lookahead = usize::from(encoder.lookahead()?).min(FRAME_SAMPLES);
            // Aligned with the packets kept: nothing to skip.
            let writer =
                OggOpusWriter::new(BufWriter::new(file), serial(meta), 0, &tags(meta, speaker))?;
            Sink::Opus {
                encoder,
                writer,
                lookahead,
                pending: None,
                kept: 0,
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

    let Rendered {
        samples,
        from_studio,
    } = render_packets(
        recordings,
        meta,
        keys,
        speaker,
        |chunk, alone| sink.write(chunk, alone, path),
        progress,
    )?;
    let kept = sink.finish(samples, path)?;
    if format == Format::Opus {
        verify(path, samples)?;
    }
    let bytes = std::fs::metadata(path).map_err(file_err)?.len();
    Ok(Exported {
        samples,
        bytes,
        kept,
        from_studio,
    })
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
    progress: impl FnMut(f64),
) -> Result<u64, ExportError> {
    Ok(render_packets(
        recordings,
        meta,
        keys,
        speaker,
        |samples, _| chunk(samples),
        progress,
    )?
    .samples)
}

/// [`render`], each chunk with the packet it was decoded from when one speaker alone is heard
/// in it (a whole 20 ms packet, nobody else concealed).
fn render_packets(
    recordings: &Recordings,
    meta: &RecordingMeta,
    keys: Option<&Keychain>,
    speaker: Option<SpeakerId>,
    mut chunk: impl FnMut(&[f32], Option<&[u8]>) -> Result<(), ExportError>,
    mut progress: impl FnMut(f64),
) -> Result<Rendered, ExportError> {
    let total_chunks = meta.duration_samples.div_ceil(u64::from(SAMPLES_PER_FRAME));
    let mut voices: HashMap<SpeakerId, Voice> = HashMap::new();
    let mut chunk_index = 0u64;
    let wanted = |id: SpeakerId| speaker.is_none_or(|s| s == id);
    let mut records = recordings.records(&meta.id).peekable();
    // Studio frames not played yet, by time and speaker: at most the chunks of one record time.
    let mut studio: BTreeMap<(u64, SpeakerId), StoredFrame> = BTreeMap::new();
    let mut from_studio = 0u64;
    // The chunk each speaker was last heard live in.
    let mut last_live: HashMap<SpeakerId, u64> = HashMap::new();
    // The media-clock time the recording started at: its own record of it (a recording made
    // here), else what its frames say (a fetched replay's metadata does not keep it).
    let mut origin: Option<u32> = (meta.start_media != 0).then_some(meta.start_media);
    let mut last_progress = 0.0;
    while chunk_index < total_chunks {
        // The frames that start in this chunk (each speaker's frames sit at its own phase).
        let chunk_start = chunk_index * u64::from(SAMPLES_PER_FRAME);
        let chunk_end = chunk_start + u64::from(SAMPLES_PER_FRAME);
        let mut live: Vec<StoredFrame> = Vec::new();
        while let Some(Ok(record)) = records.peek() {
            if record.at() >= chunk_end {
                break;
            }
            match records.next() {
                Some(Ok(ContentRecord::Frame(frame))) => {
                    // A frame's timestamp less its time: when the recording started (media clock).
                    origin.get_or_insert(frame.timestamp.wrapping_sub(frame.at as u32));
                    if wanted(SpeakerId(frame.speaker)) {
                        live.push(frame.into());
                    }
                }
                Some(Ok(ContentRecord::Studio(record))) if wanted(record.chunk.speaker) => {
                    let first = record.chunk.frames.first().map_or(0, |f| f.timestamp);
                    let origin = origin.unwrap_or(first.wrapping_sub(record.at as u32));
                    for frame in &record.chunk.frames {
                        let offset = frame.timestamp.wrapping_sub(origin) as i32;
                        if let Ok(at) = u64::try_from(offset) {
                            studio
                                .entry((at, frame.speaker))
                                .or_insert_with(|| StoredFrame::of(at, frame));
                        }
                    }
                }
                _ => {}
            }
        }
        if let Some(Err(_)) = records.peek()
            && let Some(Err(err)) = records.next()
        {
            return Err(err.into());
        }
        // Each speaker's studio frame in this chunk where it has one (its voice before the
        // network) and the room heard that speaker lately, else its live frame.
        for frame in &live {
            last_live.insert(frame.speaker, chunk_index);
        }
        let later = studio.split_off(&(chunk_end, SpeakerId(0)));
        let due = std::mem::replace(&mut studio, later);
        let studio_here: Vec<StoredFrame> = due
            .into_iter()
            .filter(|((at, speaker), _)| {
                *at >= chunk_start
                    && last_live
                        .get(speaker)
                        .is_some_and(|last| chunk_index - last <= STUDIO_AFTER_LIVE)
            })
            .map(|(_, frame)| frame)
            .collect();
        let mut mix = vec![0.0f32; FRAME_SAMPLES];
        let mut heard: Vec<SpeakerId> = Vec::new();
        // The packets decoded into this chunk, and whether anything else went into it.
        let mut packets: Vec<Vec<u8>> = Vec::new();
        let mut more = false;
        let studio_speakers: Vec<SpeakerId> = studio_here.iter().map(|f| f.speaker).collect();
        let chosen = studio_here.into_iter().map(|frame| (frame, true)).chain(
            live.into_iter()
                .filter(|frame| !studio_speakers.contains(&frame.speaker))
                .map(|frame| (frame, false)),
        );
        for (frame, is_studio) in chosen {
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
                Ok(samples) => {
                    add(&mut mix, &samples);
                    packets.push(payload);
                    from_studio += u64::from(is_studio);
                }
                Err(err) => {
                    more = true;
                    tracing::debug!(%err, "an undecodable frame in a recording");
                }
            }
        }
        // Speakers who paused briefly are concealed; longer, they are silent.
        for (id, voice) in &mut voices {
            if !heard.contains(id)
                && chunk_index - voice.last <= CONCEAL_FRAMES
                && let Ok(samples) = voice.decoder.conceal()
            {
                add(&mut mix, &samples);
                more = true;
            }
        }
        for sample in &mut mix {
            *sample = sample.clamp(-1.5, 1.5);
            *sample = *sample - *sample * *sample * *sample / 6.75;
        }
        let alone = match packets.as_slice() {
            [packet] if !more && ogg::packet_samples(packet) == Some(SAMPLES_PER_FRAME) => {
                Some(packet.as_slice())
            }
            _ => None,
        };
        chunk(&mix, alone)?;
        chunk_index += 1;
        let done = chunk_index as f64 / total_chunks.max(1) as f64;
        if done - last_progress >= 0.01 {
            progress(done);
            last_progress = done;
        }
    }
    progress(1.0);
    Ok(Rendered {
        samples: total_chunks * u64::from(SAMPLES_PER_FRAME),
        from_studio,
    })
}

/// What [`render_packets`] rebuilt.
struct Rendered {
    samples: u64,
    /// Frames taken from the speakers' studio tracks.
    from_studio: u64,
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
        /// The encoder's look-ahead (samples it is fed early).
        lookahead: usize,
        /// The chunk before, waiting for the look-ahead of this one, and its packet if kept.
        pending: Option<(Vec<f32>, Option<Vec<u8>>)>,
        /// Packets written as they were said.
        kept: u64,
    },
    Wav(hound::WavWriter<BufWriter<std::fs::File>>),
}

impl Sink {
    fn write(
        &mut self,
        chunk: &[f32],
        alone: Option<&[u8]>,
        path: &Path,
    ) -> Result<(), ExportError> {
        match self {
            Sink::Opus {
                encoder,
                writer,
                lookahead,
                pending,
                kept,
            } => {
                if let Some((before, packet)) = pending.take() {
                    *kept += opus_chunk(encoder, writer, *lookahead, &before, chunk, packet)?;
                }
                *pending = Some((chunk.to_vec(), alone.map(<[u8]>::to_vec)));
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

    /// Writes what is pending and closes the file; returns the packets kept as said.
    fn finish(self, samples: u64, path: &Path) -> Result<u64, ExportError> {
        let file_err = |source| ExportError::File {
            path: path.to_owned(),
            source,
        };
        match self {
            Sink::Opus {
                mut encoder,
                mut writer,
                lookahead,
                pending,
                mut kept,
            } => {
                if let Some((before, packet)) = pending {
                    let after = [0.0; FRAME_SAMPLES];
                    kept += opus_chunk(
                        &mut encoder,
                        &mut writer,
                        lookahead,
                        &before,
                        &after,
                        packet,
                    )?;
                }
                let mut out = writer.finish(samples)?;
                out.flush().map_err(file_err)?;
                Ok(kept)
            }
            Sink::Wav(writer) => {
                writer.finalize().map_err(|source| ExportError::Wav {
                    path: path.to_owned(),
                    source,
                })?;
                Ok(0)
            }
        }
    }
}

/// One 20 ms of the Opus stream: the encoder is fed `chunk` a look-ahead early (its end from
/// `next`), always, so that its state follows the audio; what is written is the speaker's own
/// `packet` if there is one, else what the encoder made. Returns 1 if the packet was kept.
fn opus_chunk(
    encoder: &mut VoiceEncoder,
    writer: &mut OggOpusWriter<BufWriter<std::fs::File>>,
    lookahead: usize,
    chunk: &[f32],
    next: &[f32],
    packet: Option<Vec<u8>>,
) -> Result<u64, ExportError> {
    let mut early = Vec::with_capacity(FRAME_SAMPLES);
    early.extend_from_slice(chunk.get(lookahead..).unwrap_or(&[]));
    early.extend_from_slice(next.get(..lookahead).unwrap_or(&[]));
    early.resize(FRAME_SAMPLES, 0.0);
    // What is kept needs the encoder only to follow along: at its cheapest.
    encoder.set_complexity(if packet.is_some() { 0 } else { 10 })?;
    let encoded = encoder.encode(&early)?;
    match packet {
        Some(packet) => {
            writer.write_packet(&packet, SAMPLES_PER_FRAME)?;
            Ok(1)
        }
        None => {
            writer.write_packet(&encoded.payload, SAMPLES_PER_FRAME)?;
            Ok(0)
        }
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
