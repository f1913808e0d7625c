//! What the node's unit tests build again and again: keys, signed room descriptors, invites.

use earshot_protocol::room::RoomSpec;
use earshot_protocol::{
    Audience, Capability, Grant, InviteLink, PeerKey, RecordingPolicy, Role, RoomDescriptor,
    RoomId, Timestamp, Visibility,
};

/// 2026-12-01T10:00:00Z: the tests' "now".
pub const START: Timestamp = Timestamp(1_796_119_200_000);

/// The signing key made of `seed` bytes.
pub fn signing(seed: u8) -> ed25519_dalek::SigningKey {
    ed25519_dalek::SigningKey::from_bytes(&[seed; 32])
}

/// The public key of [`signing`]`(seed)`.
pub fn key(seed: u8) -> PeerKey {
    PeerKey::from(&signing(seed))
}

/// A room `id` hosted by `host`, created at [`START`].
pub fn descriptor(
    host: &ed25519_dalek::SigningKey,
    id: RoomId,
    visibility: Visibility,
) -> RoomDescriptor {
    limited(
        host,
        id,
        visibility,
        earshot_protocol::RoomLimits::default(),
    )
}

/// A room like [`descriptor`]'s that takes at most `limits`.
pub fn limited(
    host: &ed25519_dalek::SigningKey,
    id: RoomId,
    visibility: Visibility,
    limits: earshot_protocol::RoomLimits,
) -> RoomDescriptor {
    RoomDescriptor::sign(
        host,
        RoomSpec {
            id,
            title: "Book club".into(),
            visibility,
            recording: RecordingPolicy::default(),
            created_at: START,
            addrs: vec!["/ip4/127.0.0.1/udp/4001/quic-v1".parse().expect("addr")],
            limits,
        },
    )
    .expect("descriptor")
}

/// An invite to `room` from its host, valid for an hour from [`START`].
pub fn invite(
    host: &ed25519_dalek::SigningKey,
    room: &RoomDescriptor,
    role: Role,
    audience: Audience,
) -> InviteLink {
    InviteLink {
        starts_at: None,
        capability: Capability::issue(
            host,
            room.id,
            Grant {
                audience,
                role,
                not_before: START,
                expires_at: START.plus_millis(3_600_000),
                depth: 0,
            },
            [1; 8],
        )
        .expect("capability"),
        host: room.host,
        bootstrap: room.addrs(),
    }
}

/// A temporary data directory as `earshot` makes one: private to the user (mode 0700; one that
/// others can read is refused).
pub fn private_dir() -> tempfile::TempDir {
    use std::os::unix::fs::PermissionsExt;
    tempfile::Builder::new()
        .permissions(std::fs::Permissions::from_mode(0o700))
        .tempdir()
        .expect("a private temporary directory")
}
