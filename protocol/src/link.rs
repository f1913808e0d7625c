//! Invite links: a capability plus where to find the host, as text a person can paste or scan.
//!
//! ```text
//! earshot://join/<base32( version ‖ postcard(body) ‖ checksum )>
//! ```
//!
//! - `version` is one byte ([`LINK_VERSION`]);
//! - `body` is the capability, the host's key (its PeerId, in 32 bytes rather than 38), and up to
//!   [`MAX_BOOTSTRAP_ADDRS`] multiaddrs to dial;
//! - `checksum` is the first four bytes of SHA-256 over everything before it, so a mistyped or
//!   truncated link is refused as such rather than as a bad signature.
//!
//! Base32 (RFC 4648 alphabet, no padding) is case-insensitive and has no characters that URLs,
//! shells or chat apps mangle. Links are printed lowercase; the QR form is uppercase so that QR's
//! compact alphanumeric mode applies. Whitespace inside a pasted link (line wrapping) is ignored.

use std::fmt;

use multiaddr::Multiaddr;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::capability::{Capability, MAX_CAPABILITY_BYTES};
use crate::codec::{self, DecodeError};
use crate::id::{PeerKey, Timestamp, base32};

/// The text every link starts with.
pub const LINK_PREFIX: &str = "earshot://join/";
/// The link format this build writes and understands (v2, written only for a room that begins
/// later, adds when it begins).
pub const LINK_VERSION: u8 = 1;
pub const SCHEDULED_LINK_VERSION: u8 = 2;
/// Most bootstrap addresses a link carries.
pub const MAX_BOOTSTRAP_ADDRS: usize = 4;
/// Longest encoded multiaddr accepted in a link.
pub const MAX_ADDR_BYTES: usize = 128;
/// Longest link text accepted, before any decoding work.
pub const MAX_LINK_CHARS: usize = 4096;

const CHECKSUM_BYTES: usize = 4;
const MAX_BODY_BYTES: usize =
    MAX_CAPABILITY_BYTES + 64 + MAX_BOOTSTRAP_ADDRS * (MAX_ADDR_BYTES + 2);

/// A decoded invite link. Decoding checks the format only; the capability still has to be
/// verified against the host (`capability.verify`).
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct InviteLink {
    pub capability: Capability,
    /// The room's host.
    pub host: PeerKey,
    /// Addresses to dial to reach the host (or a relay that reaches it).
    pub bootstrap: Vec<Multiaddr>,
    /// When the room begins, for a scheduled room: a joiner before then waits for the host
    /// rather than giving up. A hint, not signed (the room's signed descriptor says it once
    /// the host answers); a wrong one only changes how long a joiner waits.
    pub starts_at: Option<Timestamp>,
}

/// Why text is not a usable invite link.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LinkError {
    #[error("not an earshot invite link (it should start with {LINK_PREFIX})")]
    NotALink,
    #[error("invite link is too long ({len} bytes, at most {MAX_LINK_CHARS})")]
    TooLong { len: usize },
    #[error(
        "invite link has an invalid character {character:?} at position {position}: \
         links use only letters a-z and digits 2-7"
    )]
    InvalidCharacter { character: char, position: usize },
    #[error("invite link is truncated or mistyped (checksum mismatch): copy the whole link again")]
    Checksum,
    #[error(
        "invite link is version {found}; this build understands versions {LINK_VERSION} to {SCHEDULED_LINK_VERSION}"
    )]
    UnsupportedVersion { found: u8 },
    #[error("invite link is malformed: {0}")]
    Malformed(#[from] DecodeError),
}

#[derive(Serialize, Deserialize)]
struct Body {
    capability: Capability,
    host: PeerKey,
    bootstrap: Vec<serde_bytes::ByteBuf>,
}

/// A v2 link's body: v1's, then when the room begins.
#[derive(Serialize, Deserialize)]
struct ScheduledBody {
    body: Body,
    starts_at: Timestamp,
}

impl InviteLink {
    /// The link as text: `earshot://join/…`, lowercase.
    pub fn encode(&self) -> String {
        let body = Body {
            capability: self.capability.clone(),
            host: self.host,
            // An address too long for decoders to accept would make the link unusable.
            bootstrap: crate::addr::to_wire(&self.bootstrap, MAX_ADDR_BYTES, MAX_BOOTSTRAP_ADDRS),
        };
        match self.starts_at {
            None => frame(LINK_PREFIX, LINK_VERSION, &codec::encode(&body)),
            Some(starts_at) => frame(
                LINK_PREFIX,
                SCHEDULED_LINK_VERSION,
                &codec::encode(&ScheduledBody { body, starts_at }),
            ),
        }
    }

    /// The link as uppercase text, for QR codes (alphanumeric mode). [`InviteLink::decode`]
    /// accepts either case.
    pub fn encode_for_qr(&self) -> String {
        self.encode().to_ascii_uppercase()
    }

    /// Reads a link, telling apart a mistyped link from a malformed one. Never panics.
    pub fn decode(text: &str) -> Result<Self, LinkError> {
        let (version, data) = unframe_versions(
            text,
            LINK_PREFIX,
            LINK_VERSION..=SCHEDULED_LINK_VERSION,
            MAX_LINK_CHARS,
        )?;
        let (body, starts_at) = if version == SCHEDULED_LINK_VERSION {
            let scheduled: ScheduledBody = codec::decode(&data, MAX_BODY_BYTES + 16)?;
            (scheduled.body, Some(scheduled.starts_at))
        } else {
            (codec::decode(&data, MAX_BODY_BYTES)?, None)
        };
        body.capability.check_chain_length()?;
        let bootstrap = crate::addr::from_wire(
            &body.bootstrap,
            "bootstrap address",
            MAX_ADDR_BYTES,
            MAX_BOOTSTRAP_ADDRS,
        )?;
        Ok(Self {
            capability: body.capability,
            host: body.host,
            bootstrap,
            starts_at,
        })
    }
}

impl fmt::Display for InviteLink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.encode())
    }
}

impl std::str::FromStr for InviteLink {
    type Err = LinkError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Self::decode(text)
    }
}

impl From<Framing> for LinkError {
    fn from(framing: Framing) -> Self {
        match framing {
            Framing::NotALink => LinkError::NotALink,
            Framing::TooLong { len } => LinkError::TooLong { len },
            Framing::InvalidCharacter {
                character,
                position,
            } => LinkError::InvalidCharacter {
                character,
                position,
            },
            Framing::Checksum => LinkError::Checksum,
            Framing::UnsupportedVersion { found } => LinkError::UnsupportedVersion { found },
        }
    }
}

/// Why text is not a framed link (see [`frame`]); each kind of link words it for its own
/// readers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Framing {
    NotALink,
    TooLong { len: usize },
    InvalidCharacter { character: char, position: usize },
    Checksum,
    UnsupportedVersion { found: u8 },
}

/// The text form shared by every earshot link: `prefix` + lowercase base32 of (version ‖ body ‖
/// the first 4 bytes of its SHA-256), so that a mistyped or truncated link is told apart from
/// a malformed one.
pub(crate) fn frame(prefix: &str, version: u8, body: &[u8]) -> String {
    let mut bytes = Vec::with_capacity(1 + body.len() + CHECKSUM_BYTES);
    bytes.push(version);
    bytes.extend_from_slice(body);
    let sum = checksum(&bytes);
    bytes.extend_from_slice(&sum);
    format!("{prefix}{}", base32(&bytes))
}

/// The body of a framed link: the prefix in either case, whitespace (from chat apps) ignored,
/// the checksum and the version checked. Never panics.
pub(crate) fn unframe(
    text: &str,
    prefix: &str,
    version: u8,
    max_chars: usize,
) -> Result<Vec<u8>, Framing> {
    unframe_versions(text, prefix, version..=version, max_chars).map(|(_, body)| body)
}

/// [`unframe`] for a link of any of `versions`: its version and body.
pub(crate) fn unframe_versions(
    text: &str,
    prefix: &str,
    versions: std::ops::RangeInclusive<u8>,
    max_chars: usize,
) -> Result<(u8, Vec<u8>), Framing> {
    let text = text.trim();
    if text.len() > max_chars {
        return Err(Framing::TooLong { len: text.len() });
    }
    let head = text
        .get(..prefix.len())
        .filter(|head| head.eq_ignore_ascii_case(prefix))
        .ok_or(Framing::NotALink)?;
    let bytes = decode_base32(&text[head.len()..], prefix.len())?;
    if bytes.len() < 1 + CHECKSUM_BYTES {
        return Err(Framing::Checksum);
    }
    let (data, sum) = bytes.split_at(bytes.len() - CHECKSUM_BYTES);
    if checksum(data) != sum {
        return Err(Framing::Checksum);
    }
    if !versions.contains(&data[0]) {
        return Err(Framing::UnsupportedVersion { found: data[0] });
    }
    Ok((data[0], data[1..].to_vec()))
}

fn checksum(bytes: &[u8]) -> [u8; CHECKSUM_BYTES] {
    let digest = Sha256::digest(bytes);
    let mut sum = [0; CHECKSUM_BYTES];
    sum.copy_from_slice(&digest[..CHECKSUM_BYTES]);
    sum
}

/// Base32 in either case, ignoring whitespace; reports the first bad character by its position
/// in the whole link (after a prefix of `prefix_len` characters).
fn decode_base32(payload: &str, prefix_len: usize) -> Result<Vec<u8>, Framing> {
    let mut clean = String::with_capacity(payload.len());
    for (offset, character) in payload.char_indices() {
        match character {
            c if c.is_ascii_whitespace() => {}
            'a'..='z' | 'A'..='Z' | '2'..='7' => clean.push(character.to_ascii_uppercase()),
            _ => {
                return Err(Framing::InvalidCharacter {
                    character,
                    position: prefix_len + payload[..offset].chars().count() + 1,
                });
            }
        }
    }
    // Every character is in the alphabet, so the only failure left is a length that no byte
    // string encodes to: a truncated link.
    data_encoding::BASE32_NOPAD
        .decode(clean.as_bytes())
        .map_err(|_| Framing::Checksum)
}

#[cfg(test)]
mod tests;
