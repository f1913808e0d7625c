//! Room descriptors: what a host says about its room, signed.

use std::fmt;
use std::str::FromStr;

use ed25519_dalek::SigningKey;
use multiaddr::Multiaddr;
use serde::{Deserialize, Serialize};

use crate::Verified;
use crate::codec::{self, DecodeError};
use crate::id::{PeerKey, RoomId, Sig, Timestamp};

/// The descriptor format this build writes (v2: with the room's [`RoomLimits`]; v1, without
/// them, is still read, with the default limits). A scheduled room's descriptor is
/// [`SCHEDULED_VERSION`]: v2's fields and its [`Schedule`].
pub const DESCRIPTOR_VERSION: u8 = 2;
/// The version of a scheduled room's descriptor (a build that reads only v2 refuses it as a
/// version it does not know, rather than misreading it).
pub const SCHEDULED_VERSION: u8 = 3;
/// Longest description of a room (what it is about), in bytes of UTF-8.
pub const MAX_ABOUT_BYTES: usize = 500;
/// Longest payment address or URL a host gives for support, in bytes of UTF-8.
pub const MAX_SUPPORT_BYTES: usize = 200;
/// Most people on a room's stage (the host included): every one of them follows the room's
/// topic, and a view of the room lists at most this many.
pub const MAX_STAGE_LIMIT: u16 = crate::audience::view::MAX_STAGE as u16;
/// Most listeners a host may allow in one room.
pub const MAX_LISTENERS_LIMIT: u32 = 1_000_000;
/// Longest room title, in bytes of UTF-8.
pub const MAX_TITLE_BYTES: usize = 200;
/// Most addresses a descriptor lists.
pub const MAX_DESCRIPTOR_ADDRS: usize = 8;
/// Largest encoded descriptor.
pub const MAX_DESCRIPTOR_BYTES: usize = 2560;

const SIGNATURE_DOMAIN: &[u8] = b"earshot/room-descriptor/v1\0";

/// Who can find a room.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Serialize, Deserialize)]
pub enum Visibility {
    /// Announced on the lobby: anyone can list it and join as a listener.
    Public,
    /// Not announced; anyone with a link can join.
    Unlisted,
    /// Not announced; links carry the room secret (once encryption lands).
    Private,
}

impl Visibility {
    /// The lowercase name used on the command line and in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Visibility::Public => "public",
            Visibility::Unlisted => "unlisted",
            Visibility::Private => "private",
        }
    }
}

impl fmt::Display for Visibility {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Text that is not a visibility.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown visibility {0:?}: expected public, unlisted or private")]
pub struct UnknownVisibility(pub String);

impl FromStr for Visibility {
    type Err = UnknownVisibility;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text.trim().to_ascii_lowercase().as_str() {
            "public" => Ok(Visibility::Public),
            "unlisted" => Ok(Visibility::Unlisted),
            "private" => Ok(Visibility::Private),
            _ => Err(UnknownVisibility(text.to_owned())),
        }
    }
}

/// Who records the room.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Serialize, Deserialize, Default)]
pub struct RecordingPolicy {
    /// The host records from the moment the room goes live.
    pub host_records: bool,
    /// Members other than the host may record what they hear.
    pub members_may_record: bool,
}

/// How many a room takes: the host's choice, signed with the descriptor. Past them, joiners are
/// refused (`Refusal::Full`): a stranger with ten thousand keys and a public link fills a room
/// no further than its host allowed.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Serialize, Deserialize)]
pub struct RoomLimits {
    /// People on stage at once, the host included (each follows the room's topic).
    pub stage: u16,
    /// Listeners in the audience at once.
    pub listeners: u32,
}

impl Default for RoomLimits {
    /// The whole stage a view can show, and 5,000 listeners (Clubhouse's first room cap).
    fn default() -> Self {
        Self {
            stage: MAX_STAGE_LIMIT,
            listeners: 5_000,
        }
    }
}

impl RoomLimits {
    fn check(self) -> Result<Self, DescriptorError> {
        if self.stage == 0 || self.stage > MAX_STAGE_LIMIT {
            return Err(DescriptorError::BadLimit {
                what: "stage",
                found: u64::from(self.stage),
                min: 1,
                max: u64::from(MAX_STAGE_LIMIT),
            });
        }
        if self.listeners > MAX_LISTENERS_LIMIT {
            return Err(DescriptorError::BadLimit {
                what: "listeners",
                found: u64::from(self.listeners),
                min: 0,
                max: u64::from(MAX_LISTENERS_LIMIT),
            });
        }
        Ok(self)
    }
}

/// A host's signed description of its room. Encoded as a tuple whose length follows its
/// version (v1 has no limits), so that descriptors written before the limits still read.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct RoomDescriptor {
    pub version: u8,
    pub id: RoomId,
    pub title: String,
    pub visibility: Visibility,
    pub recording: RecordingPolicy,
    pub created_at: Timestamp,
    pub host: PeerKey,
    /// Where the host listens, as raw multiaddr bytes.
    pub addrs: Vec<serde_bytes::ByteBuf>,
    /// How many the room takes (v1 descriptors: the defaults).
    pub limits: RoomLimits,
    /// When the room begins and what it is about (v3 descriptors; `None` before).
    pub schedule: Option<Schedule>,
    /// Where listeners may send the host support: a payment address or URL, as the host
    /// wrote it (v3 descriptors; `None` before). Earshot shows it and moves no money.
    pub support: Option<String>,
    pub signature: Sig,
}

/// What a v3 descriptor adds: a start, a way to support the host.
#[derive(Clone, PartialEq, Eq, Debug, Default)]
pub struct Extras {
    pub schedule: Option<Schedule>,
    pub support: Option<String>,
}

/// A room announced ahead: when it begins and what it is about, in the host's word.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct Schedule {
    pub starts_at: Timestamp,
    /// What the room is about (at most [`MAX_ABOUT_BYTES`]; may be empty).
    pub about: String,
}

/// Why a descriptor was refused or could not be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DescriptorError {
    #[error("malformed room descriptor: {0}")]
    Malformed(#[from] DecodeError),
    #[error("room title is empty")]
    EmptyTitle,
    #[error("unsupported room descriptor version {found}")]
    UnsupportedVersion { found: u8 },
    #[error("bad signature on the room descriptor")]
    BadSignature,
    #[error("a room's {what} limit must be between {min} and {max} (found {found})")]
    BadLimit {
        what: &'static str,
        found: u64,
        min: u64,
        max: u64,
    },
}

/// The fields a host chooses for a new room.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct RoomSpec {
    pub id: RoomId,
    pub title: String,
    pub visibility: Visibility,
    pub recording: RecordingPolicy,
    pub created_at: Timestamp,
    pub addrs: Vec<Multiaddr>,
    pub limits: RoomLimits,
}

#[derive(Serialize)]
struct Unsigned<'a> {
    version: u8,
    id: &'a RoomId,
    title: &'a str,
    visibility: Visibility,
    recording: RecordingPolicy,
    created_at: Timestamp,
    host: &'a PeerKey,
    addrs: &'a [serde_bytes::ByteBuf],
}

/// What a v2 descriptor signs: v1's fields, then the limits.
#[derive(Serialize)]
struct UnsignedV2<'a> {
    v1: Unsigned<'a>,
    limits: RoomLimits,
}

/// What a v3 descriptor signs: v2's, then the schedule and the support address.
#[derive(Serialize)]
struct UnsignedV3<'a> {
    v2: UnsignedV2<'a>,
    schedule: &'a Option<Schedule>,
    support: &'a Option<String>,
}

/// Fields of a v1 descriptor; v2 adds the limits before the signature, v3 the schedule.
const V1_FIELDS: usize = 9;

impl RoomDescriptor {
    /// Signs a descriptor for a new room. The title is trimmed; it must not be empty.
    pub fn sign(host: &SigningKey, spec: RoomSpec) -> Result<Self, DescriptorError> {
        Self::sign_scheduled(host, spec, None)
    }

    /// Signs a descriptor for a new room that begins at a set time ([`SCHEDULED_VERSION`]).
    pub fn sign_scheduled(
        host: &SigningKey,
        spec: RoomSpec,
        schedule: Option<Schedule>,
    ) -> Result<Self, DescriptorError> {
        Self::sign_with(
            host,
            spec,
            Extras {
                schedule,
                support: None,
            },
        )
    }

    /// Signs a descriptor for a new room with a start, a way to support the host, or both
    /// ([`SCHEDULED_VERSION`] if either; otherwise as [`Self::sign`]).
    pub fn sign_with(
        host: &SigningKey,
        spec: RoomSpec,
        extras: Extras,
    ) -> Result<Self, DescriptorError> {
        let schedule = extras.schedule.map(|schedule| Schedule {
            about: schedule.about.trim().to_owned(),
            ..schedule
        });
        let support = extras
            .support
            .map(|support| support.trim().to_owned())
            .filter(|support| !support.is_empty());
        check_extras(schedule.as_ref(), support.as_deref())?;
        let title = spec.title.trim().to_owned();
        if title.is_empty() {
            return Err(DescriptorError::EmptyTitle);
        }
        if title.len() > MAX_TITLE_BYTES {
            return Err(DecodeError::FieldTooLong {
                field: "room title",
                len: title.len(),
                max: MAX_TITLE_BYTES,
            }
            .into());
        }
        if spec.addrs.len() > MAX_DESCRIPTOR_ADDRS {
            return Err(DecodeError::TooManyAddresses {
                count: spec.addrs.len(),
                max: MAX_DESCRIPTOR_ADDRS,
            }
            .into());
        }
        let mut descriptor = Self {
            version: if schedule.is_some() || support.is_some() {
                SCHEDULED_VERSION
            } else {
                DESCRIPTOR_VERSION
            },
            id: spec.id,
            title,
            visibility: spec.visibility,
            recording: spec.recording,
            created_at: spec.created_at,
            host: PeerKey::from(host),
            addrs: crate::addr::to_wire(&spec.addrs, usize::MAX, MAX_DESCRIPTOR_ADDRS),
            limits: spec.limits.check()?,
            schedule,
            support,
            signature: Sig([0; 64]),
        };
        descriptor.signature = Sig::sign(host, SIGNATURE_DOMAIN, &descriptor.signed_bytes());
        Ok(descriptor)
    }

    fn signed_bytes(&self) -> Vec<u8> {
        let v1 = Unsigned {
            version: self.version,
            id: &self.id,
            title: &self.title,
            visibility: self.visibility,
            recording: self.recording,
            created_at: self.created_at,
            host: &self.host,
            addrs: &self.addrs,
        };
        let v2 = UnsignedV2 {
            v1,
            limits: self.limits,
        };
        match self.version {
            1 => codec::encode(&v2.v1),
            2 => codec::encode(&v2),
            _ => codec::encode(&UnsignedV3 {
                v2,
                schedule: &self.schedule,
                support: &self.support,
            }),
        }
    }

    /// When the room begins, if it was scheduled.
    pub fn starts_at(&self) -> Option<Timestamp> {
        self.schedule.as_ref().map(|schedule| schedule.starts_at)
    }

    /// The host's listen addresses; unparsable entries are skipped.
    pub fn addrs(&self) -> Vec<Multiaddr> {
        crate::addr::from_wire_lossy(&self.addrs)
    }

    /// The canonical encoding.
    pub fn encode(&self) -> Vec<u8> {
        codec::encode(self)
    }

    /// Reads and verifies a descriptor.
    pub fn decode_verified(bytes: &[u8]) -> Result<Verified<Self>, DescriptorError> {
        let descriptor: Self = codec::decode(bytes, MAX_DESCRIPTOR_BYTES)?;
        descriptor.verify()
    }

    /// Checks the version and the host's signature.
    pub fn verify(self) -> Result<Verified<Self>, DescriptorError> {
        if !(1..=SCHEDULED_VERSION).contains(&self.version)
            || (self.version == SCHEDULED_VERSION)
                != (self.schedule.is_some() || self.support.is_some())
        {
            return Err(DescriptorError::UnsupportedVersion {
                found: self.version,
            });
        }
        check_extras(self.schedule.as_ref(), self.support.as_deref())?;
        self.limits.check()?;
        if self.title.trim().is_empty() {
            return Err(DescriptorError::EmptyTitle);
        }
        if self.title.len() > MAX_TITLE_BYTES {
            return Err(DecodeError::FieldTooLong {
                field: "room title",
                len: self.title.len(),
                max: MAX_TITLE_BYTES,
            }
            .into());
        }
        if self.addrs.len() > MAX_DESCRIPTOR_ADDRS {
            return Err(DecodeError::TooManyAddresses {
                count: self.addrs.len(),
                max: MAX_DESCRIPTOR_ADDRS,
            }
            .into());
        }
        if !self
            .signature
            .verify(&self.host, SIGNATURE_DOMAIN, &self.signed_bytes())
        {
            return Err(DescriptorError::BadSignature);
        }
        Ok(Verified::new(self))
    }
}

fn check_extras(schedule: Option<&Schedule>, support: Option<&str>) -> Result<(), DescriptorError> {
    if let Some(schedule) = schedule
        && schedule.about.len() > MAX_ABOUT_BYTES
    {
        return Err(DecodeError::FieldTooLong {
            field: "room description",
            len: schedule.about.len(),
            max: MAX_ABOUT_BYTES,
        }
        .into());
    }
    if let Some(support) = support
        && support.len() > MAX_SUPPORT_BYTES
    {
        return Err(DecodeError::FieldTooLong {
            field: "support address",
            len: support.len(),
            max: MAX_SUPPORT_BYTES,
        }
        .into());
    }
    Ok(())
}

impl Serialize for RoomDescriptor {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeTuple;
        let (v2, v3) = (self.version >= 2, self.version >= SCHEDULED_VERSION);
        let mut tuple =
            serializer.serialize_tuple(V1_FIELDS + 1 + usize::from(v2) + 2 * usize::from(v3))?;
        tuple.serialize_element(&self.version)?;
        tuple.serialize_element(&self.id)?;
        tuple.serialize_element(&self.title)?;
        tuple.serialize_element(&self.visibility)?;
        tuple.serialize_element(&self.recording)?;
        tuple.serialize_element(&self.created_at)?;
        tuple.serialize_element(&self.host)?;
        tuple.serialize_element(&self.addrs)?;
        if v2 {
            tuple.serialize_element(&self.limits)?;
        }
        if v3 {
            tuple.serialize_element(&self.schedule)?;
            tuple.serialize_element(&self.support)?;
        }
        tuple.serialize_element(&self.signature)?;
        tuple.end()
    }
}

impl<'de> Deserialize<'de> for RoomDescriptor {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Fields;

        impl<'de> serde::de::Visitor<'de> for Fields {
            type Value = RoomDescriptor;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a room descriptor")
            }

            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<RoomDescriptor, A::Error> {
                let mut index = 0;
                let mut next = || {
                    index += 1;
                    serde::de::Error::invalid_length(index - 1, &"a room descriptor")
                };
                let version: u8 = seq.next_element()?.ok_or_else(&mut next)?;
                let id = seq.next_element()?.ok_or_else(&mut next)?;
                let title = seq.next_element()?.ok_or_else(&mut next)?;
                let visibility = seq.next_element()?.ok_or_else(&mut next)?;
                let recording = seq.next_element()?.ok_or_else(&mut next)?;
                let created_at = seq.next_element()?.ok_or_else(&mut next)?;
                let host = seq.next_element()?.ok_or_else(&mut next)?;
                let addrs = seq.next_element()?.ok_or_else(&mut next)?;
                let limits = if version >= 2 {
                    seq.next_element()?.ok_or_else(&mut next)?
                } else {
                    RoomLimits::default()
                };
                let (schedule, support) = if version >= SCHEDULED_VERSION {
                    (
                        seq.next_element()?.ok_or_else(&mut next)?,
                        seq.next_element()?.ok_or_else(&mut next)?,
                    )
                } else {
                    (None, None)
                };
                let signature = seq.next_element()?.ok_or_else(&mut next)?;
                Ok(RoomDescriptor {
                    version,
                    id,
                    title,
                    visibility,
                    recording,
                    created_at,
                    host,
                    addrs,
                    limits,
                    schedule,
                    support,
                    signature,
                })
            }
        }

        // The longest form; postcard reads only as many fields as the visitor asks for.
        deserializer.deserialize_tuple(V1_FIELDS + 4, Fields)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(limits: RoomLimits) -> RoomSpec {
        RoomSpec {
            id: RoomId([7; 16]),
            title: "Late night".into(),
            visibility: Visibility::Public,
            recording: RecordingPolicy::default(),
            created_at: Timestamp(1_700_000_000_000),
            addrs: Vec::new(),
            limits,
        }
    }

    #[test]
    fn a_descriptor_carries_its_limits_signed_and_round_trips() {
        let host = SigningKey::from_bytes(&[3; 32]);
        let limits = RoomLimits {
            stage: 12,
            listeners: 300,
        };
        let descriptor = RoomDescriptor::sign(&host, spec(limits)).expect("signs");
        let read = RoomDescriptor::decode_verified(&descriptor.encode()).expect("reads");
        assert_eq!(read.limits, limits);
        assert_eq!(*read, descriptor);

        // The limits are signed: raising them breaks the signature.
        let mut raised = descriptor.clone();
        raised.limits.listeners = 1_000_000;
        assert_eq!(
            RoomDescriptor::decode_verified(&raised.encode()),
            Err(DescriptorError::BadSignature)
        );
    }

    #[test]
    fn a_version_1_descriptor_still_reads_with_the_default_limits() {
        let host = SigningKey::from_bytes(&[4; 32]);
        let mut v1 = RoomDescriptor::sign(&host, spec(RoomLimits::default())).expect("signs");
        v1.version = 1;
        v1.signature = Sig::sign(&host, SIGNATURE_DOMAIN, &v1.signed_bytes());
        let bytes = v1.encode();
        // Exactly the v1 layout: no limits in it.
        let v2 = RoomDescriptor::sign(&host, spec(RoomLimits::default())).expect("signs");
        assert_eq!(bytes.len() + 3, v2.encode().len());
        let read = RoomDescriptor::decode_verified(&bytes).expect("a v1 descriptor reads");
        assert_eq!(read.version, 1);
        assert_eq!(read.limits, RoomLimits::default());
        // Nested in another value too (snapshots and announcements carry descriptors).
        let pair = codec::encode(&(&v1, 42u8));
        let (back, after): (RoomDescriptor, u8) = codec::decode(&pair, 4096).expect("reads");
        assert_eq!((back, after), (v1, 42));
    }

    #[test]
    fn a_scheduled_room_says_when_it_begins_signed_and_others_stay_version_2() {
        let host = SigningKey::from_bytes(&[6; 32]);
        let schedule = Schedule {
            starts_at: Timestamp(1_700_003_600_000),
            about: "  Chapter three, and what comes next  ".into(),
        };
        let scheduled =
            RoomDescriptor::sign_scheduled(&host, spec(RoomLimits::default()), Some(schedule))
                .expect("signs");
        assert_eq!(scheduled.version, SCHEDULED_VERSION);
        let read = RoomDescriptor::decode_verified(&scheduled.encode()).expect("reads");
        assert_eq!(read.starts_at(), Some(Timestamp(1_700_003_600_000)));
        assert_eq!(
            read.schedule.as_ref().map(|s| s.about.as_str()),
            Some("Chapter three, and what comes next")
        );
        // Signed: moving the start breaks the signature; so does passing it off as v2.
        let mut moved = scheduled.clone();
        if let Some(schedule) = moved.schedule.as_mut() {
            schedule.starts_at = Timestamp(1_600_000_000_000);
        }
        assert_eq!(
            RoomDescriptor::decode_verified(&moved.encode()),
            Err(DescriptorError::BadSignature)
        );
        let mut unscheduled = scheduled.clone();
        unscheduled.schedule = None;
        assert!(matches!(
            unscheduled.verify(),
            Err(DescriptorError::UnsupportedVersion { found: 3 })
        ));
        // A way to support the host alone makes a v3 descriptor too, signed.
        let supported = RoomDescriptor::sign_with(
            &host,
            spec(RoomLimits::default()),
            Extras {
                schedule: None,
                support: Some("https://example.org/tip".into()),
            },
        )
        .expect("signs");
        let read = RoomDescriptor::decode_verified(&supported.encode()).expect("reads");
        assert_eq!(read.support.as_deref(), Some("https://example.org/tip"));
        let mut redirected = supported.clone();
        redirected.support = Some("https://attacker.example/tip".into());
        assert_eq!(
            RoomDescriptor::decode_verified(&redirected.encode()),
            Err(DescriptorError::BadSignature)
        );
        // Unscheduled rooms are written as before.
        let plain = RoomDescriptor::sign(&host, spec(RoomLimits::default())).expect("signs");
        assert_eq!(plain.version, DESCRIPTOR_VERSION);
        // Descriptions are bounded.
        let long = Schedule {
            starts_at: Timestamp(1),
            about: "x".repeat(MAX_ABOUT_BYTES + 1),
        };
        assert!(
            RoomDescriptor::sign_scheduled(&host, spec(RoomLimits::default()), Some(long)).is_err()
        );
    }

    #[test]
    fn limits_out_of_range_are_refused() {
        let host = SigningKey::from_bytes(&[5; 32]);
        for limits in [
            RoomLimits {
                stage: 0,
                listeners: 10,
            },
            RoomLimits {
                stage: MAX_STAGE_LIMIT + 1,
                listeners: 10,
            },
            RoomLimits {
                stage: 4,
                listeners: MAX_LISTENERS_LIMIT + 1,
            },
        ] {
            assert!(matches!(
                RoomDescriptor::sign(&host, spec(limits)),
                Err(DescriptorError::BadLimit { .. })
            ));
        }
    }
}
