//! Writing a mono Ogg Opus stream page by page, as packets arrive.

use std::io::Write;

use super::{
    CAPTURE, CRC_AT, FLAG_BOS, FLAG_CONTINUED, FLAG_EOS, OggError, OpusHead, OpusTags,
    PAGE_HEADER_LEN, crc32, packet_samples,
};
use crate::audio::SAMPLE_RATE;

/// Audio a page holds before the next packet starts a new one: about a second, opusenc's
/// default. Longer pages save framing (27 bytes plus the lacing values) but make seeking
/// coarser and lose more to a torn write.
const PAGE_SAMPLES: u64 = SAMPLE_RATE as u64;

/// Lacing values (segments) one page can hold: the count is one byte.
const MAX_SEGMENTS: usize = 255;

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

/// One page: header, lacing values and body, with its CRC.
pub(super) fn encode_page(
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
