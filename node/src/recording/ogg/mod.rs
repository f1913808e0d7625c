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
//! exactly. Every export reads its file back with it (so a writer bug or a write the disk lost
//! fails the export rather than a listener's player), and tests use it; so it refuses what it
//! does not need: chained or multiplexed streams, and channel mapping families other than 0.
//!
//! The page checksum is the Ogg CRC-32 ([`crc32`]), which is not zlib's.
//!
//! # Layout
//!
//! - this file: the format's constants, errors and types, the Ogg CRC, Opus packet durations.
//! - `headers`: the `OpusHead` and `OpusTags` packets, encoded and decoded.
//! - `write`: [`OggOpusWriter`].
//! - `read`: [`read`].

mod headers;
mod read;
#[cfg(test)]
mod tests;
mod write;

pub use self::read::read;
pub use self::write::OggOpusWriter;
#[cfg(test)]
use self::write::encode_page;

/// Page header flag: the page's first segment continues a packet from the previous page.
pub const FLAG_CONTINUED: u8 = 0x01;

/// Page header flag: the first page of the logical stream.
pub const FLAG_BOS: u8 = 0x02;

/// Page header flag: the last page of the logical stream.
pub const FLAG_EOS: u8 = 0x04;

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
