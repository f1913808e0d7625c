//! The two header packets of an Ogg Opus stream: `OpusHead` (identification) and `OpusTags`
//! (comments), RFC 7845 §5.

use super::{HEAD_LEN, HEAD_VERSION, OPUS_HEAD, OPUS_TAGS, OggError, OpusHead, OpusTags};
use crate::audio::SAMPLE_RATE;

impl OpusTags {
    /// The comment header packet.
    pub(super) fn encode(&self) -> Result<Vec<u8>, OggError> {
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

    pub(super) fn decode(packet: &[u8]) -> Result<OpusTags, OggError> {
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
    pub(super) fn mono(pre_skip: u16) -> OpusHead {
        OpusHead {
            version: HEAD_VERSION,
            channels: 1,
            pre_skip,
            input_rate: SAMPLE_RATE,
            gain: 0,
            mapping_family: 0,
        }
    }

    pub(super) fn encode(&self) -> Vec<u8> {
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

    pub(super) fn decode(packet: &[u8]) -> Result<OpusHead, OggError> {
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
