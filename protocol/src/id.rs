//! Identifiers and small value types shared by every wire type.
//!
//! Every id is a newtype over bytes whose `Display` is lowercase base32 (RFC 4648, no padding),
//! short enough to read aloud and safe to paste anywhere.

use std::fmt;
use std::str::FromStr;

use data_encoding::BASE32_NOPAD;
use serde::{Deserialize, Serialize};

/// Lowercase RFC 4648 base32 without padding.
pub fn base32(bytes: &[u8]) -> String {
    BASE32_NOPAD.encode(bytes).to_ascii_lowercase()
}

/// Decodes base32 in either case; `None` when the text is not base32 of the right length.
pub(crate) fn base32_decode(text: &str) -> Option<Vec<u8>> {
    BASE32_NOPAD
        .decode(text.trim().to_ascii_uppercase().as_bytes())
        .ok()
}

/// Why a textual id could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdParseError {
    #[error("{what} must be {expected} base32 characters")]
    BadLength { what: &'static str, expected: usize },
    #[error("{what} is not valid base32 (letters a-z and digits 2-7)")]
    NotBase32 { what: &'static str },
    #[error("not a valid ed25519 public key")]
    NotAKey,
}

macro_rules! byte_id {
    ($(#[$meta:meta])* $name:ident, $len:expr, $what:expr) => {
        $(#[$meta])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        pub struct $name(pub [u8; $len]);

        impl $name {
            /// Length of the id in bytes.
            pub const LEN: usize = $len;

            /// The raw bytes.
            pub fn as_bytes(&self) -> &[u8; $len] {
                &self.0
            }

            /// The first eight base32 characters: enough to tell ids apart in a room.
            pub fn short(&self) -> String {
                let mut text = self.to_string();
                text.truncate(8);
                text
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&base32(&self.0))
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), self.short())
            }
        }

        impl FromStr for $name {
            type Err = IdParseError;

            fn from_str(text: &str) -> Result<Self, Self::Err> {
                let expected = ($len * 8usize).div_ceil(5);
                if text.trim().len() != expected {
                    return Err(IdParseError::BadLength { what: $what, expected });
                }
                let bytes = base32_decode(text).ok_or(IdParseError::NotBase32 { what: $what })?;
                let array = <[u8; $len]>::try_from(bytes.as_slice())
                    .map_err(|_| IdParseError::BadLength { what: $what, expected })?;
                Ok(Self(array))
            }
        }
    };
}

byte_id!(
    /// A room: 16 random bytes chosen by its host.
    RoomId,
    16,
    "a room id"
);

byte_id!(
    /// A recording: 16 random bytes chosen by the node that records.
    RecordingId,
    16,
    "a recording id"
);

byte_id!(
    /// A capability's identity: the first 16 bytes of the SHA-256 of its full encoding.
    /// Revocations name capabilities by this id.
    CapId,
    16,
    "a capability id"
);

byte_id!(
    /// An ed25519 public key: a node's identity. The libp2p `PeerId` is derived from the same key
    /// (see [`PeerKey::to_peer_id`]).
    PeerKey,
    32,
    "a public key"
);

impl PeerKey {
    /// The libp2p `PeerId` of this key; fails only if the bytes are not a valid ed25519 point
    /// (a key that came off the wire unchecked).
    pub fn to_peer_id(&self) -> Result<libp2p_identity::PeerId, IdParseError> {
        let key = libp2p_identity::ed25519::PublicKey::try_from_bytes(&self.0)
            .map_err(|_| IdParseError::NotAKey)?;
        Ok(libp2p_identity::PublicKey::from(key).to_peer_id())
    }

    /// Displays as the PeerId people see everywhere else (`12D3KooW…`), or as base32 for a key
    /// that is not a valid point.
    pub fn as_peer_id(&self) -> AsPeerId<'_> {
        AsPeerId(self)
    }

    /// The key inside a `PeerId`, if it is an inline ed25519 key (as every Earshot node's is).
    pub fn from_peer_id(peer: &libp2p_identity::PeerId) -> Result<Self, IdParseError> {
        let multihash = peer.as_ref();
        if multihash.code() != 0 {
            return Err(IdParseError::NotAKey);
        }
        let public = libp2p_identity::PublicKey::try_decode_protobuf(multihash.digest())
            .map_err(|_| IdParseError::NotAKey)?;
        let ed = public
            .try_into_ed25519()
            .map_err(|_| IdParseError::NotAKey)?;
        Ok(Self(ed.to_bytes()))
    }

    /// Parses either a PeerId (`12D3KooW…`) or a base32 public key.
    pub fn parse_any(text: &str) -> Result<Self, IdParseError> {
        let text = text.trim();
        if let Ok(peer) = text.parse::<libp2p_identity::PeerId>() {
            return Self::from_peer_id(&peer);
        }
        let key: Self = text.parse()?;
        key.verifying_key().map_err(|_| IdParseError::NotAKey)?;
        Ok(key)
    }

    /// The ed25519-dalek verifying key, if these bytes are a valid point.
    pub fn verifying_key(
        &self,
    ) -> Result<ed25519_dalek::VerifyingKey, ed25519_dalek::SignatureError> {
        ed25519_dalek::VerifyingKey::from_bytes(&self.0)
    }
}

impl From<&ed25519_dalek::VerifyingKey> for PeerKey {
    fn from(key: &ed25519_dalek::VerifyingKey) -> Self {
        Self(key.to_bytes())
    }
}

impl From<&ed25519_dalek::SigningKey> for PeerKey {
    fn from(key: &ed25519_dalek::SigningKey) -> Self {
        Self(key.verifying_key().to_bytes())
    }
}

/// Displays a [`PeerKey`] as its PeerId.
#[derive(Debug, Clone, Copy)]
pub struct AsPeerId<'a>(&'a PeerKey);

impl fmt::Display for AsPeerId<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0.to_peer_id() {
            Ok(peer) => write!(f, "{peer}"),
            Err(_) => write!(f, "invalid-key:{}", self.0),
        }
    }
}

/// A 64-byte ed25519 signature.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Sig(#[serde(with = "serde_bytes")] pub [u8; 64]);

impl fmt::Debug for Sig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Sig({}…)", &base32(&self.0[..5]))
    }
}

impl Sig {
    /// Signs `domain || message` with `key`.
    pub(crate) fn sign(key: &ed25519_dalek::SigningKey, domain: &[u8], message: &[u8]) -> Self {
        use ed25519_dalek::Signer;
        let mut bytes = Vec::with_capacity(domain.len() + message.len());
        bytes.extend_from_slice(domain);
        bytes.extend_from_slice(message);
        Self(key.sign(&bytes).to_bytes())
    }

    /// Checks this signature over `domain || message` by `signer`, strictly (no malleable
    /// signatures, no small-order keys).
    pub(crate) fn verify(&self, signer: &PeerKey, domain: &[u8], message: &[u8]) -> bool {
        let Ok(key) = signer.verifying_key() else {
            return false;
        };
        let mut bytes = Vec::with_capacity(domain.len() + message.len());
        bytes.extend_from_slice(domain);
        bytes.extend_from_slice(message);
        key.verify_strict(&bytes, &ed25519_dalek::Signature::from_bytes(&self.0))
            .is_ok()
    }
}

/// Milliseconds since the Unix epoch, UTC. `protocol` never reads the clock: callers pass `now`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, Default)]
pub struct Timestamp(pub u64);

impl Timestamp {
    /// From whole seconds since the epoch.
    pub const fn from_secs(secs: u64) -> Self {
        Self(secs.saturating_mul(1000))
    }

    /// Milliseconds since the epoch.
    pub const fn as_millis(self) -> u64 {
        self.0
    }

    /// `self + millis`, saturating.
    pub const fn plus_millis(self, millis: u64) -> Self {
        Self(self.0.saturating_add(millis))
    }

    /// Calendar fields (UTC) of this instant: (year, month, day, hour, minute, second).
    fn civil(self) -> (i64, u32, u32, u32, u32, u32) {
        let secs = (self.0 / 1000) as i64;
        let days = secs.div_euclid(86_400);
        let rem = secs.rem_euclid(86_400);
        // Howard Hinnant's days-to-civil algorithm.
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z.rem_euclid(146_097);
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
        let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
        let year = yoe + era * 400 + i64::from(month <= 2);
        (
            year,
            month,
            day,
            (rem / 3600) as u32,
            ((rem % 3600) / 60) as u32,
            (rem % 60) as u32,
        )
    }
}

impl fmt::Display for Timestamp {
    /// RFC 3339, UTC, whole seconds: `2026-12-01T10:00:00Z`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (y, mo, d, h, mi, s) = self.civil();
        write!(f, "{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}Z")
    }
}

/// A timestamp that is not `YYYY-MM-DDTHH:MM:SSZ` (RFC 3339, UTC, whole seconds).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a time such as 2026-12-01T10:00:00Z")]
pub struct BadTimestamp(pub String);

impl FromStr for Timestamp {
    type Err = BadTimestamp;

    /// The inverse of `Display`: RFC 3339, UTC, whole seconds.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let bad = || BadTimestamp(text.to_owned());
        let bytes = text.as_bytes();
        let shape = bytes.len() == 20
            && bytes[4] == b'-'
            && bytes[7] == b'-'
            && bytes[10] == b'T'
            && bytes[13] == b':'
            && bytes[16] == b':'
            && bytes[19] == b'Z';
        if !shape {
            return Err(bad());
        }
        let number = |range: std::ops::Range<usize>| -> Result<i64, BadTimestamp> {
            let part = &text[range];
            if !part.bytes().all(|b| b.is_ascii_digit()) {
                return Err(bad());
            }
            part.parse().map_err(|_| bad())
        };
        let (year, month, day) = (number(0..4)?, number(5..7)?, number(8..10)?);
        let (hour, minute, second) = (number(11..13)?, number(14..16)?, number(17..19)?);
        if !(1..=12).contains(&month)
            || !(1..=31).contains(&day)
            || hour > 23
            || minute > 59
            || second > 59
        {
            return Err(bad());
        }
        // Howard Hinnant's days-from-civil algorithm (the inverse of `civil`).
        let y = if month <= 2 { year - 1 } else { year };
        let era = y.div_euclid(400);
        let yoe = y - era * 400;
        let mp = (month + 9) % 12;
        let doy = (153 * mp + 2) / 5 + day - 1;
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
        let days = era * 146_097 + doe - 719_468;
        let secs = days * 86_400 + hour * 3600 + minute * 60 + second;
        let millis = u64::try_from(secs).map_err(|_| bad())?.saturating_mul(1000);
        let parsed = Timestamp(millis);
        // A day past the month's end (2026-02-30) comes back as another date: refuse it.
        if parsed.to_string() != text {
            return Err(bad());
        }
        Ok(parsed)
    }
}

impl fmt::Debug for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Timestamp({self})")
    }
}

/// What a capability lets its holder do in a room. Ordered: `Listener < Speaker < Moderator`.
/// The host is not a role a capability can grant: it is the room's own key.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Listener,
    Speaker,
    Moderator,
}

impl Role {
    /// Every role, lowest first.
    pub const ALL: [Role; 3] = [Role::Listener, Role::Speaker, Role::Moderator];

    /// The lowercase name used on the command line and in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Listener => "listener",
            Role::Speaker => "speaker",
            Role::Moderator => "moderator",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `ROLE` was not one of listener, speaker, moderator.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown role {0:?}: expected listener, speaker or moderator")]
pub struct UnknownRole(pub String);

impl FromStr for Role {
    type Err = UnknownRole;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text.trim().to_ascii_lowercase().as_str() {
            "listener" => Ok(Role::Listener),
            "speaker" => Ok(Role::Speaker),
            "moderator" | "mod" => Ok(Role::Moderator),
            _ => Err(UnknownRole(text.to_owned())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_print_as_rfc3339() {
        let check = |millis: u64, expected: &str| {
            assert_eq!(Timestamp(millis).to_string(), expected, "{millis}");
        };
        check(0, "1970-01-01T00:00:00Z");
        check(951_782_400_000, "2000-02-29T00:00:00Z");
        check(1_796_119_200_000, "2026-12-01T10:00:00Z");
        check(1_796_119_259_999, "2026-12-01T10:00:59Z");
        check(4_102_444_800_000, "2100-01-01T00:00:00Z");
    }

    #[test]
    fn timestamps_parse_back_from_text() {
        for millis in [0, 951_782_400_000, 1_796_119_200_000, 4_102_444_800_000] {
            let time = Timestamp(millis);
            assert_eq!(time.to_string().parse::<Timestamp>(), Ok(time), "{time}");
        }
        // Whole seconds: the milliseconds are not in the text.
        assert_eq!(
            "2026-12-01T10:00:59Z".parse::<Timestamp>(),
            Ok(Timestamp(1_796_119_259_000))
        );
        for bad in [
            "",
            "2026-12-01",
            "2026-12-01T10:00:00",
            "2026-12-01 10:00:00Z",
            "2026-13-01T10:00:00Z",
            "2026-02-30T10:00:00Z",
            "2026-12-01T24:00:00Z",
            "2026-12-01T10:60:00Z",
            "2026-12-01T10:00:00+01:00",
            "+026-12-01T10:00:00Z",
        ] {
            assert_eq!(
                bad.parse::<Timestamp>(),
                Err(BadTimestamp(bad.to_owned())),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn ids_round_trip_through_text() {
        let room = RoomId([7; 16]);
        assert_eq!(room.to_string().parse::<RoomId>(), Ok(room));
        assert_eq!(
            room.to_string().to_uppercase().parse::<RoomId>(),
            Ok(room),
            "base32 is case-insensitive"
        );
        assert!(matches!(
            "abc".parse::<RoomId>(),
            Err(IdParseError::BadLength { .. })
        ));
        assert!(matches!(
            "0".repeat(26).parse::<RoomId>(),
            Err(IdParseError::NotBase32 { .. })
        ));
    }

    #[test]
    fn peer_key_and_peer_id_are_the_same_identity() {
        let signing = ed25519_dalek::SigningKey::from_bytes(&[42; 32]);
        let key = PeerKey::from(&signing);
        let libp2p = libp2p_identity::Keypair::ed25519_from_bytes([42; 32]).expect("32 bytes");
        let peer = key.to_peer_id().expect("valid key");
        assert_eq!(peer, libp2p.public().to_peer_id());
        assert_eq!(key.as_peer_id().to_string(), peer.to_string());
        assert_eq!(PeerKey::from_peer_id(&peer), Ok(key));
        assert_eq!(PeerKey::parse_any(&peer.to_string()), Ok(key));
        assert_eq!(PeerKey::parse_any(&key.to_string()), Ok(key));
    }

    #[test]
    fn roles_are_ordered_and_parse() {
        assert!(Role::Listener < Role::Speaker && Role::Speaker < Role::Moderator);
        for role in Role::ALL {
            assert_eq!(role.as_str().parse::<Role>(), Ok(role));
        }
        assert!("host".parse::<Role>().is_err());
    }
}
