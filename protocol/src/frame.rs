//! Audio frames on the wire: one Opus packet (48 kHz, 20 ms, mono) with what a relay needs to
//! forward it without decoding (speaker, sequence, timestamp, level) and room for an authenticity
//! tag.
//!
//! A fixed big-endian layout rather than postcard: frames are the hot path (50 per second per
//! speaker, forwarded at every hop), and a relay picks the loudest speakers by reading one byte.
//!
//! ```text
//! 0       1          5      9         13     14     15          17        17+n   18+n
//! version speaker_id seq    timestamp level  flags  payload_len payload   tag_len tag
//! u8      u32        u32    u32       u8     u8     u16         n bytes   u8      0 or 16
//! ```

use crate::id::PeerKey;

/// The frame format this build writes and understands.
pub const FRAME_VERSION: u8 = 1;
/// Largest Opus packet (RFC 6716 §3.4: 1275 bytes of payload per frame).
pub const MAX_OPUS_PAYLOAD: usize = 1275;
/// Length of an authenticity tag, when present.
pub const TAG_BYTES: usize = 16;
/// Bytes around the payload.
pub const HEADER_BYTES: usize = 17;
/// Largest encoded frame.
pub const MAX_FRAME_BYTES: usize = HEADER_BYTES + MAX_OPUS_PAYLOAD + 1 + TAG_BYTES;
/// Samples per frame: 20 ms at 48 kHz.
pub const SAMPLES_PER_FRAME: u32 = 960;
/// RFC 6464 level of digital silence (-127 dBov).
pub const SILENCE_LEVEL: u8 = 127;

/// Who is speaking in a frame: the first four bytes of the speaker's key. Short, because it rides
/// on every frame; the room's stage tells which member it is.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct SpeakerId(pub u32);

impl SpeakerId {
    pub fn of(key: &PeerKey) -> Self {
        let bytes = key.as_bytes();
        Self(u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]))
    }
}

/// Flags carried by a frame.
pub mod flags {
    /// The encoder judged this frame to contain voice.
    pub const VOICE: u8 = 0b0000_0001;
    /// The payload carries in-band FEC for the previous frame.
    pub const FEC: u8 = 0b0000_0010;
    /// The payload is sealed for a private room's members (`crate::private`): only they can
    /// decode it.
    pub const SEALED: u8 = 0b0000_0100;
}

/// One Opus packet and its routing header.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct AudioFrame {
    pub speaker: SpeakerId,
    /// Per speaker, +1 per frame, wrapping.
    pub seq: u32,
    /// 48 kHz sample clock of the first sample, wrapping.
    pub timestamp: u32,
    /// Audio level as in RFC 6464: 0 is the loudest (0 dBov), 127 silence (-127 dBov).
    pub level: u8,
    pub flags: u8,
    pub payload: Vec<u8>,
    pub tag: Option<[u8; TAG_BYTES]>,
}

/// Why bytes are not a frame.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("audio frame too short ({len} bytes)")]
    TooShort { len: usize },
    #[error("audio frame too long ({len} bytes, at most {MAX_FRAME_BYTES})")]
    TooLong { len: usize },
    #[error("unsupported audio frame version {found}")]
    UnsupportedVersion { found: u8 },
    #[error("audio payload of {len} bytes is over the Opus maximum of {MAX_OPUS_PAYLOAD}")]
    PayloadTooLong { len: usize },
    #[error("audio level {level} is out of range (0-127)")]
    BadLevel { level: u8 },
    #[error("audio frame length does not match its header")]
    LengthMismatch,
    #[error("authenticity tag must be 0 or {TAG_BYTES} bytes, not {len}")]
    BadTag { len: usize },
}

impl AudioFrame {
    /// The encoded frame.
    pub fn encode(&self) -> Vec<u8> {
        let payload_len = self.payload.len().min(MAX_OPUS_PAYLOAD);
        let mut out = Vec::with_capacity(HEADER_BYTES + payload_len + 1 + TAG_BYTES);
        out.push(FRAME_VERSION);
        out.extend_from_slice(&self.speaker.0.to_be_bytes());
        out.extend_from_slice(&self.seq.to_be_bytes());
        out.extend_from_slice(&self.timestamp.to_be_bytes());
        out.push(self.level.min(SILENCE_LEVEL));
        out.push(self.flags);
        out.extend_from_slice(&(payload_len as u16).to_be_bytes());
        out.extend_from_slice(&self.payload[..payload_len]);
        match &self.tag {
            Some(tag) => {
                out.push(TAG_BYTES as u8);
                out.extend_from_slice(tag);
            }
            None => out.push(0),
        }
        out
    }

    /// Reads a frame; any malformed input is an error, never a panic.
    pub fn decode(bytes: &[u8]) -> Result<Self, FrameError> {
        let len = bytes.len();
        if len > MAX_FRAME_BYTES {
            return Err(FrameError::TooLong { len });
        }
        if len < HEADER_BYTES + 1 {
            return Err(FrameError::TooShort { len });
        }
        if bytes[0] != FRAME_VERSION {
            return Err(FrameError::UnsupportedVersion { found: bytes[0] });
        }
        let u32_at = |at: usize| {
            u32::from_be_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
        };
        let level = bytes[13];
        if level > SILENCE_LEVEL {
            return Err(FrameError::BadLevel { level });
        }
        let payload_len = usize::from(u16::from_be_bytes([bytes[15], bytes[16]]));
        if payload_len > MAX_OPUS_PAYLOAD {
            return Err(FrameError::PayloadTooLong { len: payload_len });
        }
        let tag_at = HEADER_BYTES + payload_len;
        let tag_len = usize::from(*bytes.get(tag_at).ok_or(FrameError::LengthMismatch)?);
        if tag_len != 0 && tag_len != TAG_BYTES {
            return Err(FrameError::BadTag { len: tag_len });
        }
        if len != tag_at + 1 + tag_len {
            return Err(FrameError::LengthMismatch);
        }
        let tag = (tag_len == TAG_BYTES).then(|| {
            let mut tag = [0u8; TAG_BYTES];
            tag.copy_from_slice(&bytes[tag_at + 1..]);
            tag
        });
        Ok(Self {
            speaker: SpeakerId(u32_at(1)),
            seq: u32_at(5),
            timestamp: u32_at(9),
            level,
            flags: bytes[14],
            payload: bytes[HEADER_BYTES..tag_at].to_vec(),
            tag,
        })
    }

    /// The level byte of an encoded frame, without decoding it: what a relay needs to pick the
    /// loudest speakers. `None` if the bytes are not a frame header.
    pub fn peek_level(bytes: &[u8]) -> Option<u8> {
        (bytes.len() > HEADER_BYTES && bytes[0] == FRAME_VERSION).then(|| bytes[13])
    }

    /// The speaker of an encoded frame, without decoding it.
    pub fn peek_speaker(bytes: &[u8]) -> Option<SpeakerId> {
        (bytes.len() > HEADER_BYTES && bytes[0] == FRAME_VERSION)
            .then(|| SpeakerId(u32::from_be_bytes([bytes[1], bytes[2], bytes[3], bytes[4]])))
    }
}

/// The RFC 6464 level (0 loudest … 127 silent, in -dBov) of 48 kHz samples in [-1, 1].
pub fn level_of(samples: &[f32]) -> u8 {
    if samples.is_empty() {
        return SILENCE_LEVEL;
    }
    let mean_square = samples
        .iter()
        .map(|s| f64::from(*s) * f64::from(*s))
        .sum::<f64>()
        / samples.len() as f64;
    if mean_square <= 0.0 {
        return SILENCE_LEVEL;
    }
    let dbov = 10.0 * mean_square.log10();
    (-dbov).round().clamp(0.0, f64::from(SILENCE_LEVEL)) as u8
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame() -> AudioFrame {
        AudioFrame {
            speaker: SpeakerId(0xdead_beef),
            seq: 41,
            timestamp: 41 * SAMPLES_PER_FRAME,
            level: 30,
            flags: flags::VOICE | flags::FEC,
            payload: vec![0xfc, 1, 2, 3, 4, 5],
            tag: None,
        }
    }

    #[test]
    fn frames_round_trip_with_and_without_tags() {
        let mut f = frame();
        assert_eq!(AudioFrame::decode(&f.encode()), Ok(f.clone()));
        f.tag = Some([7; TAG_BYTES]);
        assert_eq!(AudioFrame::decode(&f.encode()), Ok(f.clone()));
        f.payload = vec![1; MAX_OPUS_PAYLOAD];
        assert_eq!(AudioFrame::decode(&f.encode()), Ok(f.clone()));
        assert_eq!(AudioFrame::peek_level(&f.encode()), Some(30));
        assert_eq!(
            AudioFrame::peek_speaker(&f.encode()),
            Some(SpeakerId(0xdead_beef))
        );
    }

    #[test]
    fn garbage_is_an_error_never_a_panic() {
        let good = frame().encode();
        let check = |bytes: &[u8], expected: FrameError| {
            assert_eq!(AudioFrame::decode(bytes), Err(expected), "{bytes:?}");
        };
        check(&[], FrameError::TooShort { len: 0 });
        check(&good[..10], FrameError::TooShort { len: 10 });
        check(&good[..good.len() - 1], FrameError::LengthMismatch);
        check(
            &[good.as_slice(), &[0]].concat(),
            FrameError::LengthMismatch,
        );
        check(
            &vec![1; MAX_FRAME_BYTES + 1],
            FrameError::TooLong {
                len: MAX_FRAME_BYTES + 1,
            },
        );
        let mut bad = good.clone();
        bad[0] = 9;
        check(&bad, FrameError::UnsupportedVersion { found: 9 });
        let mut bad = good.clone();
        bad[13] = 200;
        check(&bad, FrameError::BadLevel { level: 200 });
        let mut bad = good.clone();
        bad[15] = 0xff;
        check(&bad, FrameError::PayloadTooLong { len: 0xff06 });
        let mut bad = good.clone();
        *bad.last_mut().expect("tag length byte") = 3;
        check(&bad, FrameError::BadTag { len: 3 });
        // Every prefix and every single-byte change decodes or fails cleanly.
        for cut in 0..good.len() {
            let _ = AudioFrame::decode(&good[..cut]);
        }
        for at in 0..good.len() {
            for value in [0u8, 1, 0x7f, 0x80, 0xff] {
                let mut changed = good.clone();
                changed[at] = value;
                let _ = AudioFrame::decode(&changed);
            }
        }
    }

    #[test]
    fn levels_follow_rfc_6464() {
        assert_eq!(level_of(&[]), SILENCE_LEVEL);
        assert_eq!(level_of(&[0.0; 960]), SILENCE_LEVEL);
        // A full-scale square wave is 0 dBov; half amplitude is about -6 dBov.
        assert_eq!(level_of(&[1.0, -1.0].repeat(480)), 0);
        assert_eq!(level_of(&[0.5, -0.5].repeat(480)), 6);
        assert_eq!(level_of(&[1e-9; 960]), SILENCE_LEVEL);
    }
}
