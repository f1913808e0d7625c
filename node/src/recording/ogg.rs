//! Ogg Opus files (RFC 7845, in the Ogg page format of RFC 3533): a streaming writer and a
//! strict reader.
//!
//! An `.opus` file is one logical Ogg stream. Page 0 holds the `OpusHead` packet alone, with the
//! beginning-of-stream flag; the `OpusTags` packet starts on page 1 and finishes the page it
//! completes on; audio packets follow on fresh pages, about a second of audio a page (at most
//! 255 lacing values). Header pages have granule position 0. An audio page's granule position
//! counts the 48 kHz samples decoded from the start of the stream through the last packet
//! completed on that page, the pre-skip's included (-1 on a page where no packet completes,
//! which only a packet longer than a page causes): a granule position minus the pre-skip is a
//! playback position. The last page carries the end-of-stream flag and may claim fewer samples
//! than its packets decode to (end trimming): that is how a recording ends mid-frame, at
//! `pre_skip + samples to play`.
//!
//! [`read`] checks all of that and the page layer under it (capture patterns, version, CRCs,
//! one stream, consecutive sequence numbers, continuation flags); it reads each audio packet's
//! duration from its TOC byte ([`packet_samples`]) so that it can check every granule position
//! exactly. It is for tests and for verifying an export, so it refuses what it does not need:
//! chained or multiplexed streams, and channel mapping families other than 0.
//!
//! The page checksum is the Ogg CRC-32 ([`crc32`]), which is not zlib's.

use std::io::Write;

use crate::audio::SAMPLE_RATE;

/// Page header flag: the page's first segment continues a packet from the previous page.
pub const FLAG_CONTINUED: u8 = 0x01;
/// Page header flag: the first page of the logical stream.
pub const FLAG_BOS: u8 = 0x02;
/// Page header flag: the last page of the logical stream.
pub const FLAG_EOS: u8 = 0x04;

/// Audio a page holds before the next packet starts a new one: about a second, opusenc's
/// default. Longer pages save framing (27 bytes plus the lacing values) but make seeking
/// coarser and lose more to a torn write.
const PAGE_SAMPLES: u64 = SAMPLE_RATE as u64;
/// Lacing values (segments) one page can hold: the count is one byte.
const MAX_SEGMENTS: usize = 255;
/// The fixed part of a page header, before its lacing values.
const PAGE_HEADER_LEN: usize = 27;
/// Where the CRC sits in a page header.
const CRC_AT: usize = 22;
const CAPTURE: &[u8; 4] = b"OggS";
const OPUS_HEAD: &[u8; 8] = b"OpusHead";
const OPUS_TAGS: &[u8; 8] = b"OpusTags";
/// An `OpusHead` packet for channel mapping family 0 (no mapping table).
const HEAD_LEN: usize = 19;
/// The `OpusHead` version this writes. Readers accept 1 to 15: the upper four bits are the
/// major version (RFC 7845 §5.1).
const HEAD_VERSION: u8 = 1;
/// The most audio an Opus packet holds: 120 ms.
const MAX_PACKET_SAMPLES: u32 = 5760;

/// Why writing or reading an Ogg Opus stream failed.
#[derive(Debug, thiserror::Error)]
pub enum OggError {
    #[error("writing the ogg opus stream: {0}")]
    Io(#[from] std::io::Error),

    // Writing.
    #[error(
        "audio packet {packet} is not a valid opus packet (empty, or its TOC gives no duration \
         or more than 120 ms)"
    )]
    InvalidPacket { packet: u64 },
    #[error("audio packet {packet} holds {toc} samples by its TOC, not the {given} given")]
    DurationMismatch { packet: u64, toc: u32, given: u32 },
    #[error(
        "{key:?} is not a comment field name (one or more ASCII characters 0x20 to 0x7D, no '=')"
    )]
    BadTagKey { key: String },
    #[error("the comment header is too large (a length does not fit in 32 bits)")]
    TagsTooLarge,
    #[error(
        "cannot end the stream at granule position {granule} (pre-skip + samples to play): the \
         packets written allow {min} to {max} (end trimming drops part of the last packet only)"
    )]
    BadTrim { granule: u64, min: u64, max: u64 },

    // Reading: pages.
    #[error("byte {offset}: no ogg page (capture pattern \"OggS\" missing)")]
    BadCapture { offset: usize },
    #[error("byte {offset}: the page is cut short")]
    Truncated { offset: usize },
    #[error("page {page}: checksum {stored:#010x}, but the page's is {computed:#010x}")]
    BadCrc {
        page: usize,
        stored: u32,
        computed: u32,
    },
    #[error("page {page}: ogg version {version} (only 0 exists)")]
    BadVersion { page: usize, version: u8 },
    #[error("page {page}: undefined header flags in {header_type:#04x}")]
    BadHeaderType { page: usize, header_type: u8 },

    // Reading: the logical stream.
    #[error("the file is empty")]
    Empty,
    #[error(
        "page {page} belongs to stream {found:#010x}, not {expected:#010x} (chained or \
         multiplexed streams are not supported)"
    )]
    OtherStream {
        page: usize,
        expected: u32,
        found: u32,
    },
    #[error("page {page} has sequence number {found}, expected {expected}")]
    BadSequence {
        page: usize,
        expected: u64,
        found: u32,
    },
    #[error("the first page lacks the beginning-of-stream flag")]
    MissingBos,
    #[error("page {page} has the beginning-of-stream flag, which only the first page may have")]
    UnexpectedBos { page: usize },
    #[error("page {page} has the end-of-stream flag, but more pages follow")]
    PageAfterEos { page: usize },
    #[error("the last page lacks the end-of-stream flag (a truncated file?)")]
    MissingEos,
    #[error("page {page} says it continues a packet, but no packet was left unfinished")]
    UnexpectedContinuation { page: usize },
    #[error("page {page} does not continue the packet the page before it left unfinished")]
    MissingContinuation { page: usize },
    #[error("the stream ends in the middle of a packet")]
    UnfinishedPacket,

    // Reading: Ogg Opus.
    #[error("the first page must hold the OpusHead packet alone, and complete it")]
    HeadNotAlone,
    #[error("bad OpusHead: {reason}")]
    BadHead { reason: &'static str },
    #[error("OpusHead version {version} is not compatible (1 to 15 are)")]
    UnsupportedVersion { version: u8 },
    #[error("channel mapping family {family} is not supported (only 0: mono or stereo)")]
    UnsupportedMapping { family: u8 },
    #[error("the stream has no OpusTags packet")]
    MissingTags,
    #[error("bad OpusTags: {reason}")]
    BadTags { reason: &'static str },
    #[error("page {page}: the OpusTags packet must finish the page it completes on")]
    TagsPageNotFinished { page: usize },
    #[error("the stream has no audio packets")]
    NoAudio,
    #[error("page {page}: a header page has granule position {found}, expected {expected}")]
    HeaderGranule {
        page: usize,
        found: i64,
        expected: i64,
    },
    #[error(
        "page {page}: no packet completes on it, so its granule position must be -1, not {found}"
    )]
    GranuleWithoutPacket { page: usize, found: i64 },
    #[error("page {page}: packets complete on it, but its granule position is {found}")]
    MissingGranule { page: usize, found: i64 },
    #[error(
        "page {page}: granule position {found} is less than the {samples} samples of its packets"
    )]
    GranuleBeforeStart {
        page: usize,
        found: i64,
        samples: u64,
    },
    #[error("page {page}: granule position {found}, expected {expected}")]
    GranuleMismatch {
        page: usize,
        found: i64,
        expected: u64,
    },
    #[error("page {page}: granule position {found} goes back from {previous}")]
    GranuleBackwards {
        page: usize,
        found: i64,
        previous: u64,
    },
    #[error("the final granule position {found} is less than the pre-skip {pre_skip}")]
    FinalGranuleBeforePreSkip { found: i64, pre_skip: u16 },
    #[error("page {page}: the last page completes no packet")]
    EmptyLastPage { page: usize },
}

/// The comment header: who wrote the file, and `KEY=value` comments (TITLE, ARTIST, DATE, …,
/// as in Vorbis comments; a key may repeat).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OpusTags {
    /// The encoder and muxer, for tracing differences in behaviour.
    pub vendor: String,
    pub comments: Vec<(String, String)>,
}

/// The identification header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpusHead {
    pub version: u8,
    pub channels: u8,
    /// Samples (at 48 kHz) to decode and drop at the start: the encoder's delay.
    pub pre_skip: u16,
    /// The input's sample rate, for information only (0: unspecified).
    pub input_rate: u32,
    /// Gain to apply on output, in dB as Q7.8.
    pub gain: i16,
    pub mapping_family: u8,
}

/// Writes one mono Ogg Opus stream, page by page, as packets arrive.
///
/// Call [`finish`](Self::finish) at the end: it writes the last page, which holds the last
/// packets and the end of stream. After an I/O error the stream is incomplete; drop the writer.
pub struct OggOpusWriter<W: Write> {
    out: W,
    serial: u32,
    pre_skip: u16,
    /// The sequence number of the next page.
    sequence: u32,
    /// The page being filled.
    page: OpenPage,
    /// Audio packets written, and their samples.
    packets: u64,
    samples: u64,
    last_packet_samples: u32,
}

/// A parsed stream: its headers, its audio packets and how its pages were laid out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OggOpusFile {
    pub serial: u32,
    pub head: OpusHead,
    pub tags: OpusTags,
    /// The audio packets, in order.
    pub packets: Vec<Vec<u8>>,
    pub pages: Vec<PageInfo>,
    /// The last page's granule position: minus the pre-skip, the samples to play (for a stream
    /// that starts at 0, as ours do; RFC 7845 lets a cropped stream start later).
    pub final_granule: u64,
}

/// One page of a parsed stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageInfo {
    /// [`FLAG_CONTINUED`], [`FLAG_BOS`], [`FLAG_EOS`].
    pub header_type: u8,
    pub granule: i64,
    pub sequence: u32,
    /// Packets whose last segment is on this page.
    pub packets_completed: usize,
    /// Lacing values.
    pub segments: usize,
    /// The whole page, header included.
    pub bytes: usize,
}

/// The Ogg CRC-32 (RFC 3533 §6): polynomial 0x04C11DB7 taken most significant bit first (not
/// reflected), initial value 0, no final xor. Not zlib's CRC-32, which is reflected and
/// inverted. A page's CRC is computed with its own CRC field set to zero.
pub fn crc32(bytes: &[u8]) -> u32 {
    crc_update(0, bytes)
}

/// The duration of an Opus packet in 48 kHz samples, from its TOC byte (RFC 6716 §3.1), or
/// `None` for a packet that has none: empty, a code 3 packet without its frame count byte, no
/// frames, or more than 120 ms.
pub fn packet_samples(packet: &[u8]) -> Option<u32> {
    let toc = *packet.first()?;
    let config = usize::from(toc >> 3);
    let frame: u32 = match config {
        // SILK: 10, 20, 40, 60 ms.
        0..=11 => [480, 960, 1920, 2880][config % 4],
        // Hybrid: 10, 20 ms.
        12..=15 => [480, 960][config % 2],
        // CELT: 2.5, 5, 10, 20 ms.
        _ => [120, 240, 480, 960][config % 4],
    };
    let frames = match toc & 0x03 {
        0 => 1,
        1 | 2 => 2,
        _ => u32::from(*packet.get(1)? & 0x3F),
    };
    let samples = frame * frames;
    (frames > 0 && samples <= MAX_PACKET_SAMPLES).then_some(samples)
}

/// Reads and checks a whole Ogg Opus stream (see the module docs for what is checked).
pub fn read(bytes: &[u8]) -> Result<OggOpusFile, OggError> {
    let pages = split_pages(bytes)?;
    check_stream(&pages)?;
    let laid = assemble_packets(&pages)?;
    check_opus(&pages, laid)
}

impl OpusTags {
    /// The comment header packet.
    fn encode(&self) -> Result<Vec<u8>, OggError> {
        let mut out = Vec::with_capacity(
            OPUS_TAGS.len()
                + 8
                + self.vendor.len()
                + self
                    .comments
                    .iter()
                    .map(|(key, value)| 5 + key.len() + value.len())
                    .sum::<usize>(),
        );
        out.extend_from_slice(OPUS_TAGS);
        put_len(&mut out, self.vendor.len())?;
        out.extend_from_slice(self.vendor.as_bytes());
        put_len(&mut out, self.comments.len())?;
        for (key, value) in &self.comments {
            if !is_field_name(key) {
                return Err(OggError::BadTagKey { key: key.clone() });
            }
            put_len(&mut out, key.len() + 1 + value.len())?;
            out.extend_from_slice(key.as_bytes());
            out.push(b'=');
            out.extend_from_slice(value.as_bytes());
        }
        Ok(out)
    }

    fn decode(packet: &[u8]) -> Result<OpusTags, OggError> {
        let bad = |reason| OggError::BadTags { reason };
        let mut rest = packet
            .strip_prefix(OPUS_TAGS)
            .ok_or(bad("no \"OpusTags\" signature"))?;
        let vendor = take_string(&mut rest).ok_or(bad("the vendor string overruns the packet"))?;
        let vendor =
            std::str::from_utf8(vendor).map_err(|_| bad("the vendor string is not UTF-8"))?;
        let count = take_u32(&mut rest).ok_or(bad("the comment count is missing"))?;
        // Each comment takes at least its 4-byte length: check before allocating.
        if u64::from(count) * 4 > rest.len() as u64 {
            return Err(bad("more comments than the packet can hold"));
        }
        let mut comments = Vec::with_capacity(count as usize);
        for _ in 0..count {
            let comment = take_string(&mut rest).ok_or(bad("a comment overruns the packet"))?;
            let comment =
                std::str::from_utf8(comment).map_err(|_| bad("a comment is not UTF-8"))?;
            let (key, value) = comment
                .split_once('=')
                .ok_or(bad("a comment is not KEY=value"))?;
            if !is_field_name(key) {
                return Err(bad(
                    "a comment's field name is empty or not printable ASCII",
                ));
            }
            comments.push((key.to_owned(), value.to_owned()));
        }
        // Anything after the comments is allowed (RFC 7845 §5.2: binary data an application may
        // keep), and ignored.
        Ok(OpusTags {
            vendor: vendor.to_owned(),
            comments,
        })
    }
}

impl OpusHead {
    /// The identification header for Earshot's streams: mono, 48 kHz input, no gain, family 0.
    fn mono(pre_skip: u16) -> OpusHead {
        OpusHead {
            version: HEAD_VERSION,
            channels: 1,
            pre_skip,
            input_rate: SAMPLE_RATE,
            gain: 0,
            mapping_family: 0,
        }
    }

    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEAD_LEN);
        out.extend_from_slice(OPUS_HEAD);
        out.push(self.version);
        out.push(self.channels);
        out.extend_from_slice(&self.pre_skip.to_le_bytes());
        out.extend_from_slice(&self.input_rate.to_le_bytes());
        out.extend_from_slice(&self.gain.to_le_bytes());
        out.push(self.mapping_family);
        out
    }

    fn decode(packet: &[u8]) -> Result<OpusHead, OggError> {
        let bad = |reason| OggError::BadHead { reason };
        if !packet.starts_with(OPUS_HEAD) {
            return Err(bad("no \"OpusHead\" signature"));
        }
        let fixed: &[u8; HEAD_LEN] = packet
            .get(..HEAD_LEN)
            .and_then(|fixed| fixed.try_into().ok())
            .ok_or(bad("shorter than 19 bytes"))?;
        let head = OpusHead {
            version: fixed[8],
            channels: fixed[9],
            pre_skip: u16::from_le_bytes([fixed[10], fixed[11]]),
            input_rate: u32::from_le_bytes([fixed[12], fixed[13], fixed[14], fixed[15]]),
            gain: i16::from_le_bytes([fixed[16], fixed[17]]),
            mapping_family: fixed[18],
        };
        if !(1..=15).contains(&head.version) {
            return Err(OggError::UnsupportedVersion {
                version: head.version,
            });
        }
        if head.mapping_family != 0 {
            return Err(OggError::UnsupportedMapping {
                family: head.mapping_family,
            });
        }
        if !(1..=2).contains(&head.channels) {
            return Err(bad("channel mapping family 0 has 1 or 2 channels"));
        }
        // A later minor version may add fields (which must not be refused); version 1 has none.
        if head.version == HEAD_VERSION && packet.len() != HEAD_LEN {
            return Err(bad("version 1 with family 0 is exactly 19 bytes"));
        }
        Ok(head)
    }
}

impl<W: Write> OggOpusWriter<W> {
    /// Starts a stream: writes the `OpusHead` page (mono, input rate 48 kHz, output gain 0,
    /// channel mapping family 0, the given pre-skip) and the `OpusTags` page(s).
    ///
    /// `pre_skip` is the encoder's lookahead (`VoiceEncoder::lookahead`); `serial` names the
    /// logical stream (any value).
    pub fn new(out: W, serial: u32, pre_skip: u16, tags: &OpusTags) -> Result<Self, OggError> {
        let tags = tags.encode()?;
        let mut writer = OggOpusWriter {
            out,
            serial,
            pre_skip,
            sequence: 0,
            page: OpenPage::default(),
            packets: 0,
            samples: 0,
            last_packet_samples: 0,
        };
        // Header pages have granule position 0; each header finishes its page.
        writer.push(&OpusHead::mono(pre_skip).encode(), 0)?;
        writer.flush_page(0)?;
        writer.push(&tags, 0)?;
        writer.flush_page(0)?;
        Ok(writer)
    }

    /// Appends one Opus packet of `samples` 48 kHz samples (960 for a 20 ms frame), which must
    /// be what the packet's TOC says.
    pub fn write_packet(&mut self, packet: &[u8], samples: u32) -> Result<(), OggError> {
        let index = self.packets;
        let toc = packet_samples(packet).ok_or(OggError::InvalidPacket { packet: index })?;
        if toc != samples {
            return Err(OggError::DurationMismatch {
                packet: index,
                toc,
                given: samples,
            });
        }
        // A page is closed only when the next packet arrives, so the last page always has a
        // packet for the end of stream (and its end trimming).
        if self.page.samples >= PAGE_SAMPLES {
            self.flush_page(0)?;
        }
        self.samples += u64::from(samples);
        self.push(packet, self.samples)?;
        self.page.samples += u64::from(samples);
        self.packets += 1;
        self.last_packet_samples = samples;
        Ok(())
    }

    /// Writes the last page, with the end-of-stream flag and the granule position
    /// `pre_skip + total_samples`, and returns the output (flushed).
    ///
    /// `total_samples` is the audio to play, after the pre-skip. With the pre-skip it may be
    /// less than the samples written, by at most the last packet's: end trimming drops the
    /// padding of the last frame (RFC 7845 §4.4). So the packets must carry at least
    /// `pre_skip + total_samples` samples: feed the encoder enough silence after the audio to
    /// push its last `pre_skip` samples out.
    pub fn finish(mut self, total_samples: u64) -> Result<W, OggError> {
        if self.packets == 0 {
            return Err(OggError::NoAudio);
        }
        let max = self.samples;
        let min = self.samples - u64::from(self.last_packet_samples);
        let granule = u64::from(self.pre_skip).saturating_add(total_samples);
        if !(min..=max).contains(&granule) {
            return Err(OggError::BadTrim { granule, min, max });
        }
        self.page.granule = Some(granule);
        self.flush_page(FLAG_EOS)?;
        self.out.flush()?;
        Ok(self.out)
    }

    /// Adds a packet to the open page, which completes it at `granule`. A packet that does not
    /// fit the page's lacing values starts a new page, and one longer than a whole page
    /// (65,024 bytes) is continued on the next pages.
    fn push(&mut self, packet: &[u8], granule: u64) -> Result<(), OggError> {
        let segments = packet.len() / 255 + 1;
        if !self.page.lacing.is_empty() && self.page.lacing.len() + segments > MAX_SEGMENTS {
            self.flush_page(0)?;
        }
        let mut rest = packet;
        loop {
            if self.page.lacing.len() == MAX_SEGMENTS {
                self.flush_page(0)?;
            }
            let (chunk, after) = rest.split_at(rest.len().min(255));
            self.page
                .lacing
                .push(u8::try_from(chunk.len()).expect("a segment is at most 255 bytes"));
            self.page.body.extend_from_slice(chunk);
            rest = after;
            // A segment shorter than 255 bytes (maybe 0) ends the packet.
            if chunk.len() < 255 {
                break;
            }
        }
        self.page.granule = Some(granule);
        Ok(())
    }

    /// Writes the open page and opens the next.
    fn flush_page(&mut self, flags: u8) -> Result<(), OggError> {
        let page = std::mem::take(&mut self.page);
        let mut header_type = flags;
        if page.continued {
            header_type |= FLAG_CONTINUED;
        }
        if self.sequence == 0 {
            header_type |= FLAG_BOS;
        }
        let granule = match page.granule {
            Some(granule) => i64::try_from(granule)
                .expect("granule positions stay far below 2^63: at most 5760 samples a packet"),
            None => -1,
        };
        let bytes = encode_page(
            header_type,
            granule,
            self.serial,
            self.sequence,
            &page.lacing,
            &page.body,
        );
        self.out.write_all(&bytes)?;
        // 2^32 pages of a second each is 136 years.
        self.sequence = self.sequence.wrapping_add(1);
        self.page.continued = page.lacing.last() == Some(&255);
        Ok(())
    }
}

impl<W: Write> std::fmt::Debug for OggOpusWriter<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OggOpusWriter")
            .field("serial", &self.serial)
            .field("pre_skip", &self.pre_skip)
            .field("sequence", &self.sequence)
            .field("packets", &self.packets)
            .field("samples", &self.samples)
            .finish_non_exhaustive()
    }
}

/// The page a writer is filling.
#[derive(Debug, Default)]
struct OpenPage {
    lacing: Vec<u8>,
    body: Vec<u8>,
    /// Its first segment continues the previous page's last packet.
    continued: bool,
    /// The granule position after the last packet completed on it, if any.
    granule: Option<u64>,
    /// Audio samples of the packets completed on it.
    samples: u64,
}

/// One page, as found in a file.
#[derive(Debug)]
struct RawPage<'a> {
    header_type: u8,
    granule: i64,
    serial: u32,
    sequence: u32,
    lacing: &'a [u8],
    body: &'a [u8],
    len: usize,
}

impl RawPage<'_> {
    fn has(&self, flag: u8) -> bool {
        self.header_type & flag != 0
    }
}

/// Packets and where they complete.
#[derive(Debug)]
struct Laid {
    packets: Vec<Vec<u8>>,
    /// The page each packet completes on.
    completed_on: Vec<usize>,
    pages: Vec<PageInfo>,
}

const CRC_TABLE: [u32; 256] = crc_table();

const fn crc_table() -> [u32; 256] {
    let mut table = [0u32; 256];
    let mut byte = 0;
    while byte < 256 {
        let mut crc = (byte as u32) << 24;
        let mut bit = 0;
        while bit < 8 {
            crc = if crc & 0x8000_0000 != 0 {
                (crc << 1) ^ 0x04C1_1DB7
            } else {
                crc << 1
            };
            bit += 1;
        }
        table[byte] = crc;
        byte += 1;
    }
    table
}

fn crc_update(crc: u32, bytes: &[u8]) -> u32 {
    bytes.iter().fold(crc, |crc, &byte| {
        (crc << 8) ^ CRC_TABLE[usize::from((crc >> 24) as u8 ^ byte)]
    })
}

/// One page: header, lacing values and body, with its CRC.
fn encode_page(
    header_type: u8,
    granule: i64,
    serial: u32,
    sequence: u32,
    lacing: &[u8],
    body: &[u8],
) -> Vec<u8> {
    let mut page = Vec::with_capacity(PAGE_HEADER_LEN + lacing.len() + body.len());
    page.extend_from_slice(CAPTURE);
    page.push(0); // stream structure version
    page.push(header_type);
    page.extend_from_slice(&granule.to_le_bytes());
    page.extend_from_slice(&serial.to_le_bytes());
    page.extend_from_slice(&sequence.to_le_bytes());
    page.extend_from_slice(&[0; 4]); // the CRC, computed over the page with this field zero
    page.push(u8::try_from(lacing.len()).expect("at most 255 lacing values a page"));
    page.extend_from_slice(lacing);
    page.extend_from_slice(body);
    let crc = crc32(&page);
    page[CRC_AT..CRC_AT + 4].copy_from_slice(&crc.to_le_bytes());
    page
}

/// Splits a file into pages, checking each one's framing and CRC.
fn split_pages(bytes: &[u8]) -> Result<Vec<RawPage<'_>>, OggError> {
    if bytes.is_empty() {
        return Err(OggError::Empty);
    }
    let mut pages = Vec::new();
    let mut offset = 0;
    while offset < bytes.len() {
        let page = parse_page(&bytes[offset..], offset, pages.len())?;
        offset += page.len;
        pages.push(page);
    }
    Ok(pages)
}

fn parse_page(bytes: &[u8], offset: usize, index: usize) -> Result<RawPage<'_>, OggError> {
    if bytes
        .iter()
        .zip(CAPTURE)
        .any(|(byte, expected)| byte != expected)
    {
        return Err(OggError::BadCapture { offset });
    }
    let truncated = OggError::Truncated { offset };
    let header: &[u8; PAGE_HEADER_LEN] = bytes
        .get(..PAGE_HEADER_LEN)
        .and_then(|header| header.try_into().ok())
        .ok_or(truncated)?;
    let segments = usize::from(header[26]);
    let lacing = bytes
        .get(PAGE_HEADER_LEN..PAGE_HEADER_LEN + segments)
        .ok_or(OggError::Truncated { offset })?;
    let body_len: usize = lacing.iter().map(|&len| usize::from(len)).sum();
    let len = PAGE_HEADER_LEN + segments + body_len;
    let page = bytes.get(..len).ok_or(OggError::Truncated { offset })?;

    let stored = u32::from_le_bytes([header[22], header[23], header[24], header[25]]);
    let computed = crc_update(
        crc_update(crc_update(0, &page[..CRC_AT]), &[0; 4]),
        &page[CRC_AT + 4..],
    );
    if stored != computed {
        return Err(OggError::BadCrc {
            page: index,
            stored,
            computed,
        });
    }
    if header[4] != 0 {
        return Err(OggError::BadVersion {
            page: index,
            version: header[4],
        });
    }
    let header_type = header[5];
    if header_type & !(FLAG_CONTINUED | FLAG_BOS | FLAG_EOS) != 0 {
        return Err(OggError::BadHeaderType {
            page: index,
            header_type,
        });
    }
    let mut granule = [0; 8];
    granule.copy_from_slice(&header[6..14]);
    Ok(RawPage {
        header_type,
        granule: i64::from_le_bytes(granule),
        serial: u32::from_le_bytes([header[14], header[15], header[16], header[17]]),
        sequence: u32::from_le_bytes([header[18], header[19], header[20], header[21]]),
        lacing,
        body: &page[PAGE_HEADER_LEN + segments..],
        len,
    })
}

/// One logical stream, pages in sequence, begun and ended once.
fn check_stream(pages: &[RawPage<'_>]) -> Result<(), OggError> {
    let Some(first) = pages.first() else {
        return Err(OggError::Empty);
    };
    let last = pages.len() - 1;
    for (index, page) in pages.iter().enumerate() {
        if page.serial != first.serial {
            return Err(OggError::OtherStream {
                page: index,
                expected: first.serial,
                found: page.serial,
            });
        }
        if u64::from(page.sequence) != index as u64 {
            return Err(OggError::BadSequence {
                page: index,
                expected: index as u64,
                found: page.sequence,
            });
        }
        match (index, page.has(FLAG_BOS)) {
            (0, false) => return Err(OggError::MissingBos),
            (1.., true) => return Err(OggError::UnexpectedBos { page: index }),
            _ => {}
        }
        if page.has(FLAG_EOS) && index != last {
            return Err(OggError::PageAfterEos { page: index + 1 });
        }
    }
    if !pages[last].has(FLAG_EOS) {
        return Err(OggError::MissingEos);
    }
    Ok(())
}

/// Joins segments into packets, checking continuation flags.
fn assemble_packets(pages: &[RawPage<'_>]) -> Result<Laid, OggError> {
    let mut laid = Laid {
        packets: Vec::new(),
        completed_on: Vec::new(),
        pages: Vec::with_capacity(pages.len()),
    };
    let mut current = Vec::new();
    let mut unfinished = false;
    for (index, page) in pages.iter().enumerate() {
        match (page.has(FLAG_CONTINUED), unfinished) {
            (true, false) => return Err(OggError::UnexpectedContinuation { page: index }),
            (false, true) => return Err(OggError::MissingContinuation { page: index }),
            _ => {}
        }
        let mut body = page.body;
        let mut completed = 0;
        for &len in page.lacing {
            // The body is exactly as long as the lacing values say (`parse_page`).
            let (segment, rest) = body.split_at(usize::from(len).min(body.len()));
            current.extend_from_slice(segment);
            body = rest;
            unfinished = len == 255;
            if !unfinished {
                laid.packets.push(std::mem::take(&mut current));
                laid.completed_on.push(index);
                completed += 1;
            }
        }
        laid.pages.push(PageInfo {
            header_type: page.header_type,
            granule: page.granule,
            sequence: page.sequence,
            packets_completed: completed,
            segments: page.lacing.len(),
            bytes: page.len,
        });
    }
    if unfinished {
        return Err(OggError::UnfinishedPacket);
    }
    Ok(laid)
}

/// The Ogg Opus layout (RFC 7845 §3 to §5) over well-formed pages and packets.
fn check_opus(pages: &[RawPage<'_>], laid: Laid) -> Result<OggOpusFile, OggError> {
    let Laid {
        mut packets,
        completed_on,
        pages: infos,
    } = laid;
    let ends_open = |page: usize| pages[page].lacing.last() == Some(&255);
    let header_granule = |page: usize, expected: i64| {
        if pages[page].granule == expected {
            Ok(())
        } else {
            Err(OggError::HeaderGranule {
                page,
                found: pages[page].granule,
                expected,
            })
        }
    };

    // Page 0: OpusHead, alone and complete.
    if infos[0].packets_completed != 1 || ends_open(0) {
        return Err(OggError::HeadNotAlone);
    }
    let head = OpusHead::decode(&packets[0])?;
    header_granule(0, 0)?;

    // OpusTags: from page 1 (a fresh packet there, as page 0 ended complete) to the end of the
    // page it completes on.
    let tags_page = *completed_on.get(1).ok_or(OggError::MissingTags)?;
    for page in 1..tags_page {
        header_granule(page, -1)?;
    }
    if infos[tags_page].packets_completed != 1 || ends_open(tags_page) {
        return Err(OggError::TagsPageNotFinished { page: tags_page });
    }
    header_granule(tags_page, 0)?;
    let tags = OpusTags::decode(&packets[1])?;

    // Audio, on the pages after.
    let audio: Vec<Vec<u8>> = packets.drain(2..).collect();
    if audio.is_empty() {
        return Err(OggError::NoAudio);
    }
    let mut next_packet = 0;
    // The granule position of the last page with a completed packet.
    let mut previous: Option<u64> = None;
    for (page, info) in infos.iter().enumerate().skip(tags_page + 1) {
        let found = info.granule;
        let eos = info.header_type & FLAG_EOS != 0;
        let mut samples = 0u64;
        for packet in &audio[next_packet..next_packet + info.packets_completed] {
            let duration = packet_samples(packet).ok_or(OggError::InvalidPacket {
                packet: next_packet as u64,
            })?;
            samples += u64::from(duration);
            next_packet += 1;
        }
        if info.packets_completed == 0 {
            if eos {
                return Err(OggError::EmptyLastPage { page });
            }
            if found != -1 {
                return Err(OggError::GranuleWithoutPacket { page, found });
            }
            continue;
        }
        let granule = u64::try_from(found).map_err(|_| OggError::MissingGranule { page, found })?;
        match previous {
            // The first audio page may start later than 0 (a cropped stream), never earlier,
            // unless it is also the last one, whose granule position then trims its end.
            None if !eos && granule < samples => {
                return Err(OggError::GranuleBeforeStart {
                    page,
                    found,
                    samples,
                });
            }
            None => {}
            Some(previous) if granule < previous => {
                return Err(OggError::GranuleBackwards {
                    page,
                    found,
                    previous,
                });
            }
            // Every page but the last adds exactly its packets' samples; the last may add
            // fewer (end trimming), never more.
            Some(previous)
                if granule != previous + samples && !(eos && granule < previous + samples) =>
            {
                return Err(OggError::GranuleMismatch {
                    page,
                    found,
                    expected: previous + samples,
                });
            }
            Some(_) => {}
        }
        previous = Some(granule);
    }
    let final_granule = previous.ok_or(OggError::NoAudio)?;
    if final_granule < u64::from(head.pre_skip) {
        return Err(OggError::FinalGranuleBeforePreSkip {
            found: pages[pages.len() - 1].granule,
            pre_skip: head.pre_skip,
        });
    }
    Ok(OggOpusFile {
        serial: pages[0].serial,
        head,
        tags,
        packets: audio,
        pages: infos,
        final_granule,
    })
}

/// A comment field name: ASCII 0x20 to 0x7D without '=', at least one character.
fn is_field_name(key: &str) -> bool {
    !key.is_empty()
        && key
            .bytes()
            .all(|byte| (0x20..=0x7D).contains(&byte) && byte != b'=')
}

fn put_len(out: &mut Vec<u8>, len: usize) -> Result<(), OggError> {
    let len = u32::try_from(len).map_err(|_| OggError::TagsTooLarge)?;
    out.extend_from_slice(&len.to_le_bytes());
    Ok(())
}

fn take_u32(rest: &mut &[u8]) -> Option<u32> {
    let (len, after) = rest.split_first_chunk::<4>()?;
    *rest = after;
    Some(u32::from_le_bytes(*len))
}

/// A length-prefixed string, bounded by what is left.
fn take_string<'a>(rest: &mut &'a [u8]) -> Option<&'a [u8]> {
    let len = usize::try_from(take_u32(rest)?).ok()?;
    if len > rest.len() {
        return None;
    }
    let (string, after) = rest.split_at(len);
    *rest = after;
    Some(string)
}

#[cfg(test)]
mod tests;
