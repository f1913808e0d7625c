//! Reading an Ogg Opus stream strictly: every rule of the page layer and of RFC 7845 that a
//! stream written by [`super::OggOpusWriter`] follows is checked.

use super::{
    CAPTURE, CRC_AT, FLAG_BOS, FLAG_CONTINUED, FLAG_EOS, OggError, OggOpusFile, OpusHead, OpusTags,
    PAGE_HEADER_LEN, PageInfo, crc_update, packet_samples,
};

/// Reads and checks a whole Ogg Opus stream (see the module docs for what is checked).
pub fn read(bytes: &[u8]) -> Result<OggOpusFile, OggError> {
    let pages = split_pages(bytes)?;
    check_stream(&pages)?;
    let laid = assemble_packets(&pages)?;
    check_opus(&pages, laid)
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
