//! Tests for host-signed snapshots, lobby announcements and the room protocol's messages, through
//! the public API.

use std::borrow::Cow;
use std::net::Ipv4Addr;

use earshot_protocol::capability::NoRevocations;
use earshot_protocol::codec::DecodeError;
use earshot_protocol::envelope::MAX_ENVELOPE_BYTES;
use earshot_protocol::link::{MAX_ADDR_BYTES, MAX_BOOTSTRAP_ADDRS};
use earshot_protocol::room::{DescriptorError, RoomSpec};
use earshot_protocol::snapshot::{
    ANNOUNCEMENT_TTL_MS, Announcement, MAX_ANNOUNCED_SPEAKERS, MAX_PEER_HINTS, MAX_SNAPSHOT_BYTES,
    PeerHint, Refusal, RoomRequest, RoomResponse, RoomSnapshot, SnapshotError,
};
use earshot_protocol::state::{Rejected, RoomChange, RoomRole, RoomState};
use earshot_protocol::{
    Audience, Authority, Capability, ControlBody, Envelope, Grant, InviteLink, PeerKey, Presenter,
    RecordingPolicy, Role, RoomDescriptor, RoomId, Timestamp, VerifyContext, Visibility,
};
use ed25519_dalek::SigningKey;
use multiaddr::{Multiaddr, Protocol};
use proptest::prelude::*;
use proptest::sample::Index;
use serde_bytes::ByteBuf;

mod common;
use common::{apply, edits};

const HOST: u8 = 1;
const ALICE: u8 = 2;
const BOB: u8 = 3;
const MALLORY: u8 = 66;

const ROOM: RoomId = RoomId([7; 16]);
const OTHER_ROOM: RoomId = RoomId([8; 16]);
const NOW: Timestamp = Timestamp::from_secs(1_800_000_000);
const DAY: u64 = 24 * 3_600_000;

fn key(seed: u8) -> SigningKey {
    SigningKey::from_bytes(&[seed; 32])
}

fn pk(seed: u8) -> PeerKey {
    PeerKey::from(&key(seed))
}

fn at(offset: i64) -> Timestamp {
    Timestamp(
        NOW.0
            .checked_add_signed(offset)
            .expect("offsets stay near NOW"),
    )
}

fn addr(port: u16) -> Multiaddr {
    Multiaddr::empty()
        .with(Protocol::Ip4(Ipv4Addr::new(192, 0, 2, 1)))
        .with(Protocol::Udp(port))
        .with(Protocol::QuicV1)
}

/// A descriptor for `room`, signed by `host`, listing `addrs`.
fn descriptor_with(host: u8, room: RoomId, addrs: Vec<Multiaddr>) -> RoomDescriptor {
    RoomDescriptor::sign(
        &key(host),
        RoomSpec {
            id: room,
            title: "Late night jazz".into(),
            visibility: Visibility::Public,
            recording: RecordingPolicy::default(),
            created_at: at(-3_600_000),
            addrs,
            limits: earshot_protocol::RoomLimits::default(),
        },
    )
    .expect("fixture descriptor is valid")
}

fn descriptor() -> RoomDescriptor {
    descriptor_with(HOST, ROOM, vec![addr(4001), addr(4002)])
}

fn listener_link(room: RoomId) -> Capability {
    let grant = Grant {
        audience: Audience::Bearer,
        role: Role::Listener,
        not_before: at(-(DAY as i64)),
        expires_at: at(DAY as i64),
        depth: 0,
    };
    Capability::issue(&key(HOST), room, grant, [1; 8]).expect("fixture grant is valid")
}

fn envelope(author: u8, seq: u64, authority: Authority, body: ControlBody) -> Envelope {
    Envelope::sign(&key(author), ROOM, seq, at(-1_000), authority, body)
        .expect("fixture envelopes are within limits")
}

fn join(author: u8, name: &str) -> Envelope {
    envelope(
        author,
        1,
        Authority::Capability(listener_link(ROOM)),
        ControlBody::Join { name: name.into() },
    )
}

/// A room with the host, Alice with her hand up, and Bob on stage.
fn room_state() -> RoomState {
    let mut state = RoomState::new(ROOM, pk(HOST));
    let envelopes = [
        envelope(
            HOST,
            1,
            Authority::Host,
            ControlBody::Join {
                name: "hana".into(),
            },
        ),
        join(ALICE, "alice"),
        join(BOB, "bob"),
        envelope(
            ALICE,
            2,
            Authority::CapabilityRef(listener_link(ROOM).id()),
            ControlBody::RaiseHand,
        ),
        envelope(
            HOST,
            2,
            Authority::Host,
            ControlBody::Promote {
                target: pk(BOB),
                role: Role::Speaker,
            },
        ),
    ];
    for envelope in envelopes {
        let verified = envelope.verify().expect("fixture envelopes are signed");
        state
            .apply(NOW, &verified)
            .expect("fixture envelopes are accepted");
    }
    state
}

fn peers(count: u8) -> Vec<PeerHint> {
    (0..count)
        .map(|seed| PeerHint {
            key: pk(100 + seed),
            addrs: vec![ByteBuf::from(addr(5000 + u16::from(seed)).to_vec())],
        })
        .collect()
}

fn snapshot() -> RoomSnapshot {
    RoomSnapshot::sign(&key(HOST), descriptor(), room_state(), peers(2), NOW)
}

fn speakers(count: usize) -> Vec<String> {
    (0..count).map(|index| format!("speaker {index}")).collect()
}

fn announcement_with(
    signer: u8,
    descriptor: RoomDescriptor,
    capability: Capability,
    expires_at: Timestamp,
) -> Announcement {
    Announcement::sign(
        &key(signer),
        descriptor,
        speakers(2),
        40,
        capability,
        expires_at,
        vec![replay("Last week")],
    )
}

fn replay(title: &str) -> earshot_protocol::snapshot::AnnouncedReplay {
    earshot_protocol::snapshot::AnnouncedReplay {
        manifest: earshot_protocol::replay::ManifestId([3; 16]),
        recorder: PeerKey::from(&key(HOST)),
        title: title.to_owned(),
        bytes: 1 << 20,
        addrs: Vec::new(),
    }
}

fn announcement() -> Announcement {
    announcement_with(
        HOST,
        descriptor(),
        listener_link(ROOM),
        NOW.plus_millis(ANNOUNCEMENT_TTL_MS),
    )
}

/// `bytes` with `mask` xored into the byte at `index`.
fn flipped(bytes: &[u8], index: usize, mask: u8) -> Vec<u8> {
    let mut bytes = bytes.to_vec();
    bytes[index] ^= mask;
    bytes
}

// ---------------------------------------------------------------------------------------------
// Snapshots
// ---------------------------------------------------------------------------------------------

#[test]
fn snapshots_round_trip() {
    let snapshot = snapshot();
    let decoded = RoomSnapshot::decode_verified(&snapshot.encode(), ROOM, pk(HOST))
        .expect("a snapshot signed by the host verifies");
    assert_eq!(*decoded, snapshot);
    assert_eq!(decoded.state, room_state());
    assert_eq!(decoded.state.hands().len(), 1, "Alice's hand survives");
    assert_eq!(decoded.into_inner(), snapshot);
}

#[test]
fn snapshots_keep_at_most_the_allowed_peer_hints() {
    let snapshot = RoomSnapshot::sign(
        &key(HOST),
        descriptor(),
        room_state(),
        peers(MAX_PEER_HINTS as u8 + 4),
        NOW,
    );
    assert_eq!(snapshot.peers, peers(MAX_PEER_HINTS as u8));
    let decoded = RoomSnapshot::decode_verified(&snapshot.encode(), ROOM, pk(HOST))
        .expect("a truncated peer list is signed as truncated");
    assert_eq!(decoded.peers.len(), MAX_PEER_HINTS);
}

#[test]
fn snapshots_for_another_room_or_host_are_refused() {
    let too_many_peers = {
        let mut snapshot = snapshot();
        snapshot.peers = peers(MAX_PEER_HINTS as u8 + 1);
        snapshot
    };
    let mut tampered_descriptor = descriptor();
    tampered_descriptor.title = "Early morning jazz".into();
    let cases: [(&str, RoomSnapshot, RoomId, PeerKey, SnapshotError); 8] = [
        (
            "expected another room",
            snapshot(),
            OTHER_ROOM,
            pk(HOST),
            SnapshotError::Mismatch,
        ),
        (
            "expected another host",
            snapshot(),
            ROOM,
            pk(MALLORY),
            SnapshotError::Mismatch,
        ),
        (
            "state of another room",
            RoomSnapshot::sign(
                &key(HOST),
                descriptor(),
                RoomState::new(OTHER_ROOM, pk(HOST)),
                vec![],
                NOW,
            ),
            ROOM,
            pk(HOST),
            SnapshotError::Mismatch,
        ),
        (
            "state with another host",
            RoomSnapshot::sign(
                &key(HOST),
                descriptor(),
                RoomState::new(ROOM, pk(MALLORY)),
                vec![],
                NOW,
            ),
            ROOM,
            pk(HOST),
            SnapshotError::Mismatch,
        ),
        (
            "mallory's own room, offered as the host's",
            RoomSnapshot::sign(
                &key(MALLORY),
                descriptor_with(MALLORY, ROOM, vec![]),
                RoomState::new(ROOM, pk(MALLORY)),
                vec![],
                NOW,
            ),
            ROOM,
            pk(HOST),
            SnapshotError::Mismatch,
        ),
        (
            "the host's room, signed by mallory",
            RoomSnapshot::sign(&key(MALLORY), descriptor(), room_state(), vec![], NOW),
            ROOM,
            pk(HOST),
            SnapshotError::BadSignature,
        ),
        (
            "more peer hints than allowed",
            too_many_peers,
            ROOM,
            pk(HOST),
            SnapshotError::Mismatch,
        ),
        (
            "a descriptor edited after the host signed it",
            RoomSnapshot::sign(&key(HOST), tampered_descriptor, room_state(), vec![], NOW),
            ROOM,
            pk(HOST),
            SnapshotError::Descriptor(DescriptorError::BadSignature),
        ),
    ];
    for (name, snapshot, room, host, expected) in cases {
        assert_eq!(
            RoomSnapshot::decode_verified(&snapshot.encode(), room, host),
            Err(expected),
            "{name}"
        );
    }
}

#[test]
fn every_flipped_snapshot_byte_is_refused() {
    let snapshot = RoomSnapshot::sign(
        &key(HOST),
        descriptor(),
        RoomState::new(ROOM, pk(HOST)),
        peers(1),
        NOW,
    );
    let bytes = snapshot.encode();
    for index in 0..bytes.len() {
        for mask in [0x01, 0x80] {
            assert!(
                RoomSnapshot::decode_verified(&flipped(&bytes, index, mask), ROOM, pk(HOST))
                    .is_err(),
                "byte {index} ^ {mask:#04x} accepted"
            );
        }
    }
}

#[test]
fn malformed_snapshots_are_refused() {
    let bytes = snapshot().encode();
    let mut trailing = bytes.clone();
    trailing.push(0);
    assert_eq!(
        RoomSnapshot::decode_verified(&trailing, ROOM, pk(HOST)),
        Err(SnapshotError::Malformed(DecodeError::TrailingBytes(1)))
    );
    assert!(matches!(
        RoomSnapshot::decode_verified(&bytes[..bytes.len() - 1], ROOM, pk(HOST)),
        Err(SnapshotError::Malformed(_))
    ));
    assert!(matches!(
        RoomSnapshot::decode_verified(&vec![0; MAX_SNAPSHOT_BYTES + 1], ROOM, pk(HOST)),
        Err(SnapshotError::Malformed(DecodeError::TooLarge { .. }))
    ));
}

// ---------------------------------------------------------------------------------------------
// Announcements
// ---------------------------------------------------------------------------------------------

#[test]
fn announcements_round_trip() {
    let announcement = announcement();
    let decoded = Announcement::decode_verified(&announcement.encode(), NOW)
        .expect("an announcement signed by the host verifies");
    assert_eq!(*decoded, announcement);
    let verified = announcement
        .clone()
        .verify(NOW)
        .expect("verify agrees with decode_verified");
    assert_eq!(verified.into_inner(), announcement);
}

#[test]
fn announcements_live_for_a_bounded_time() {
    let expires_at = NOW.plus_millis(ANNOUNCEMENT_TTL_MS);
    let furthest = NOW.plus_millis(4 * ANNOUNCEMENT_TTL_MS);
    let cases = [
        ("live", expires_at, NOW, Ok(())),
        (
            "last moment",
            expires_at,
            at(ANNOUNCEMENT_TTL_MS as i64 - 1),
            Ok(()),
        ),
        (
            "expired",
            expires_at,
            expires_at,
            Err(SnapshotError::Expired { expires_at }),
        ),
        (
            "expired long ago",
            expires_at,
            at(DAY as i64),
            Err(SnapshotError::Expired { expires_at }),
        ),
        ("as far ahead as allowed", furthest, NOW, Ok(())),
        (
            "too far ahead",
            furthest.plus_millis(1),
            NOW,
            Err(SnapshotError::Expired {
                expires_at: furthest.plus_millis(1),
            }),
        ),
    ];
    for (name, expires_at, now, expected) in cases {
        let announcement = announcement_with(HOST, descriptor(), listener_link(ROOM), expires_at);
        assert_eq!(
            announcement.clone().verify(now).map(|_| ()),
            expected,
            "{name}: verify"
        );
        assert_eq!(
            Announcement::decode_verified(&announcement.encode(), now).map(|_| ()),
            expected,
            "{name}: decode_verified"
        );
    }
}

#[test]
fn announcements_not_from_the_host_or_not_matching_are_refused() {
    let expires_at = NOW.plus_millis(ANNOUNCEMENT_TTL_MS);
    let too_many_speakers = {
        let mut announcement = announcement();
        announcement.speakers = speakers(MAX_ANNOUNCED_SPEAKERS + 1);
        announcement
    };
    let more_listeners = {
        let mut announcement = announcement();
        announcement.listeners += 1;
        announcement
    };
    let mut tampered_descriptor = descriptor();
    tampered_descriptor.title = "Early morning jazz".into();
    let cases = [
        (
            "signed by mallory",
            announcement_with(MALLORY, descriptor(), listener_link(ROOM), expires_at),
            SnapshotError::BadSignature,
        ),
        (
            "listener count edited",
            more_listeners,
            SnapshotError::BadSignature,
        ),
        (
            "capability for another room",
            announcement_with(HOST, descriptor(), listener_link(OTHER_ROOM), expires_at),
            SnapshotError::Mismatch,
        ),
        (
            "too many speakers",
            too_many_speakers,
            SnapshotError::Mismatch,
        ),
        (
            "descriptor edited after the host signed it",
            announcement_with(HOST, tampered_descriptor, listener_link(ROOM), expires_at),
            SnapshotError::Descriptor(DescriptorError::BadSignature),
        ),
    ];
    for (name, announcement, expected) in cases {
        assert_eq!(
            announcement.clone().verify(NOW),
            Err(expected.clone()),
            "{name}"
        );
        assert_eq!(
            Announcement::decode_verified(&announcement.encode(), NOW),
            Err(expected),
            "{name}: decode_verified"
        );
    }
}

#[test]
fn announcements_keep_at_most_ten_speakers_with_names_cut_at_a_character() {
    let mut names = speakers(MAX_ANNOUNCED_SPEAKERS + 2);
    names[0] = "é".repeat(40); // 80 bytes: cut to 64, 32 characters
    names[1] = format!("a{}", "é".repeat(40)); // 81 bytes: byte 64 is inside an "é", cut to 63
    let announcement = Announcement::sign(
        &key(HOST),
        descriptor(),
        names,
        3,
        listener_link(ROOM),
        NOW.plus_millis(ANNOUNCEMENT_TTL_MS),
        (0..6).map(|i| replay(&format!("replay {i}"))).collect(),
    );
    // The newest replays are kept.
    assert_eq!(
        announcement.replays.len(),
        earshot_protocol::snapshot::MAX_ANNOUNCED_REPLAYS
    );
    assert_eq!(announcement.replays[0].title, "replay 2");
    assert_eq!(announcement.speakers.len(), MAX_ANNOUNCED_SPEAKERS);
    assert_eq!(announcement.speakers[0], "é".repeat(32));
    assert_eq!(announcement.speakers[1], format!("a{}", "é".repeat(31)));
    assert_eq!(announcement.speakers[2], "speaker 2");
    assert_eq!(
        announcement.speakers.last().map(String::as_str),
        Some("speaker 9")
    );
    assert!(announcement.verify(NOW).is_ok());
}

#[test]
fn every_flipped_announcement_byte_is_refused() {
    let bytes = announcement().encode();
    for index in 0..bytes.len() {
        for mask in [0x01, 0x80] {
            assert!(
                Announcement::decode_verified(&flipped(&bytes, index, mask), NOW).is_err(),
                "byte {index} ^ {mask:#04x} accepted"
            );
        }
    }
}

/// The link decodes to itself (less any address too long for a link, which `encode` leaves
/// out), its capability verifies offline against the host it names, and it admits a listener to
/// the room. Returns the decoded link.
fn check_link(announcement: &Announcement) -> InviteLink {
    let link = announcement.link();
    assert_eq!(link.capability, announcement.listener_capability);
    assert_eq!(link.host, announcement.descriptor.host);
    let decoded = InviteLink::decode(&link.encode()).expect("an announcement's link decodes");
    let encodable = InviteLink {
        starts_at: None,
        bootstrap: link
            .bootstrap
            .iter()
            .filter(|addr| addr.len() <= MAX_ADDR_BYTES)
            .cloned()
            .collect(),
        ..link.clone()
    };
    assert_eq!(decoded, encodable);
    assert_eq!(
        InviteLink::decode(&link.encode_for_qr()).as_ref(),
        Ok(&encodable)
    );
    let verified = decoded
        .capability
        .verify(&VerifyContext {
            room: announcement.descriptor.id,
            host: decoded.host,
            presenter: Presenter::Unchecked,
            now: NOW,
            revoked: &NoRevocations,
        })
        .expect("an announcement's capability verifies against its host");
    assert_eq!(verified.role, Role::Listener);
    assert_eq!(verified.audience, Audience::Bearer);

    let mut state = RoomState::new(announcement.descriptor.id, decoded.host);
    let join = Envelope::sign(
        &key(ALICE),
        announcement.descriptor.id,
        1,
        NOW,
        Authority::Capability(decoded.capability.clone()),
        ControlBody::Join {
            name: "alice".into(),
        },
    )
    .expect("within limits")
    .verify()
    .expect("signed by alice");
    assert_eq!(
        state.apply(NOW, &join),
        Ok(vec![RoomChange::MemberJoined {
            member: pk(ALICE),
            name: "alice".into(),
            role: RoomRole::Listener,
        }])
    );
    decoded
}

#[test]
fn announcement_link_round_trips_and_admits_a_listener() {
    let announcement = announcement();
    assert_eq!(announcement.link().bootstrap, vec![addr(4001), addr(4002)]);
    check_link(&announcement);
}

#[test]
fn announcement_link_carries_at_most_four_addresses() {
    let addrs: Vec<Multiaddr> = (0..6).map(|port| addr(4001 + port)).collect();
    let announcement = announcement_with(
        HOST,
        descriptor_with(HOST, ROOM, addrs.clone()),
        listener_link(ROOM),
        NOW.plus_millis(ANNOUNCEMENT_TTL_MS),
    );
    assert_eq!(
        announcement.link().bootstrap,
        addrs[..MAX_BOOTSTRAP_ADDRS].to_vec()
    );
    check_link(&announcement);
}

/// A room descriptor accepts any multiaddr, but an invite link refuses one longer than
/// `MAX_ADDR_BYTES` when decoding: `InviteLink::encode` leaves such addresses out, so a host
/// listening on a long `/dns/…` name still announces a link that opens, carrying its other
/// addresses. (The link used to carry the long address and fail to decode with
/// `FieldTooLong { field: "bootstrap address", .. }`.)
#[test]
fn announcement_link_with_a_long_address_round_trips() {
    let long = long_addr();
    assert!(long.to_vec().len() > MAX_ADDR_BYTES);
    let announcement = announcement_with(
        HOST,
        descriptor_with(HOST, ROOM, vec![long, addr(4001)]),
        listener_link(ROOM),
        NOW.plus_millis(ANNOUNCEMENT_TTL_MS),
    );
    assert!(
        announcement.clone().verify(NOW).is_ok(),
        "the descriptor and announcement accept the address"
    );
    let decoded = check_link(&announcement);
    assert_eq!(decoded.bootstrap, vec![addr(4001)]);
}

/// An address of exactly `MAX_ADDR_BYTES` is kept; only longer ones are left out.
#[test]
fn announcement_link_keeps_an_address_of_the_maximum_length() {
    let longest = addr_of_len(MAX_ADDR_BYTES);
    let announcement = announcement_with(
        HOST,
        descriptor_with(HOST, ROOM, vec![longest.clone(), long_addr(), addr(4001)]),
        listener_link(ROOM),
        NOW.plus_millis(ANNOUNCEMENT_TTL_MS),
    );
    let decoded = check_link(&announcement);
    assert_eq!(decoded.bootstrap, vec![longest, addr(4001)]);
}

/// A descriptor listing nothing but addresses too long for a link still gives a link that
/// opens, with no bootstrap addresses.
#[test]
fn announcement_link_with_only_long_addresses_opens_without_addresses() {
    let announcement = announcement_with(
        HOST,
        descriptor_with(
            HOST,
            ROOM,
            vec![long_addr(), addr_of_len(MAX_ADDR_BYTES + 1)],
        ),
        listener_link(ROOM),
        NOW.plus_millis(ANNOUNCEMENT_TTL_MS),
    );
    let decoded = check_link(&announcement);
    assert_eq!(decoded.bootstrap, vec![]);
}

/// A `/dns/…/tcp/443/wss` address far longer than `MAX_ADDR_BYTES`.
fn long_addr() -> Multiaddr {
    let name = format!("{}.example.com", "relay".repeat(26));
    Multiaddr::empty()
        .with(Protocol::Dns(Cow::Owned(name)))
        .with(Protocol::Tcp(443))
        .with(Protocol::Wss("/".into()))
}

/// A `/dns/…/tcp/443` address of exactly `len` bytes.
fn addr_of_len(len: usize) -> Multiaddr {
    let with_name = |name: String| {
        Multiaddr::empty()
            .with(Protocol::Dns(Cow::Owned(name)))
            .with(Protocol::Tcp(443))
    };
    (1..len)
        .map(|chars| with_name("a".repeat(chars)))
        .find(|addr| addr.len() == len)
        .expect("some name length gives the wanted address length")
}

// ---------------------------------------------------------------------------------------------
// The room protocol
// ---------------------------------------------------------------------------------------------

fn requests() -> Vec<RoomRequest> {
    vec![
        RoomRequest::Join {
            envelope: ByteBuf::from(join(ALICE, "alice").encode()),
        },
        RoomRequest::Join {
            envelope: ByteBuf::from(vec![0xa5; MAX_ENVELOPE_BYTES]),
        },
        RoomRequest::Join {
            envelope: ByteBuf::new(),
        },
        RoomRequest::Lobby,
        RoomRequest::Carry {
            link: "earshot://join/…".into(),
        },
    ]
}

fn responses() -> Vec<RoomResponse> {
    vec![
        RoomResponse::Welcome {
            snapshot: ByteBuf::from(snapshot().encode()),
            keys: None,
        },
        RoomResponse::Refused {
            refusal: Refusal::Rejected {
                reason: "you were removed from the room".into(),
            },
        },
        RoomResponse::Refused {
            refusal: Refusal::NotPresent,
        },
        RoomResponse::Refused {
            refusal: Refusal::CarryingTheMost { max: 16 },
        },
        RoomResponse::Carrying,
        RoomResponse::Lobby {
            announcements: vec![ByteBuf::from(announcement().encode()); 3],
        },
        RoomResponse::Lobby {
            announcements: vec![],
        },
    ]
}

#[test]
fn requests_and_responses_round_trip() {
    for request in requests() {
        assert_eq!(
            RoomRequest::decode(&request.encode()).as_ref(),
            Ok(&request)
        );
    }
    for response in responses() {
        assert_eq!(
            RoomResponse::decode(&response.encode()).as_ref(),
            Ok(&response)
        );
    }
}

#[test]
fn oversized_requests_are_refused() {
    // The largest request is a scheduled room's announcement (8 KiB); past that, refused
    // before anything in it is read.
    let request = RoomRequest::Join {
        envelope: ByteBuf::from(vec![0; earshot_protocol::snapshot::MAX_REQUEST_BYTES]),
    };
    assert!(matches!(
        RoomRequest::decode(&request.encode()),
        Err(DecodeError::TooLarge { .. })
    ));
}

/// The join handshake end to end: the joiner's `Join` goes to the host in a request, the host
/// folds it and answers with a snapshot, and the joiner finds itself in the room.
#[test]
fn join_handshake() {
    let request = RoomRequest::Join {
        envelope: ByteBuf::from(join(ALICE, "alice").encode()),
    }
    .encode();

    // The host.
    let mut hosted = RoomState::new(ROOM, pk(HOST));
    let RoomRequest::Join { envelope } = RoomRequest::decode(&request).expect("request decodes")
    else {
        panic!("a join request");
    };
    let envelope = Envelope::decode_verified(&envelope).expect("the joiner signed its join");
    hosted
        .apply(NOW, &envelope)
        .expect("the host admits the joiner");
    let response = RoomResponse::Welcome {
        snapshot: ByteBuf::from(
            RoomSnapshot::sign(&key(HOST), descriptor(), hosted.clone(), vec![], NOW).encode(),
        ),
        keys: None,
    }
    .encode();

    // The joiner.
    let RoomResponse::Welcome { snapshot, .. } =
        RoomResponse::decode(&response).expect("response decodes")
    else {
        panic!("a welcome");
    };
    let snapshot =
        RoomSnapshot::decode_verified(&snapshot, ROOM, pk(HOST)).expect("the host signed it");
    assert_eq!(snapshot.state, hosted);
    let me = snapshot.state.present();
    assert_eq!(me.len(), 1);
    assert_eq!(me[0].key, pk(ALICE));
    assert_eq!(snapshot.state.role_of(&pk(ALICE)), Some(RoomRole::Listener));

    // The same join again is a replay, for the joiner's copy too.
    let mut adopted = snapshot.into_inner().state;
    assert_eq!(
        adopted.apply(NOW, &envelope),
        Err(Rejected::Replay { seq: 1 })
    );
}

/// Everything that reads these bytes off the wire.
fn decode_everything(bytes: &[u8]) {
    let _ = RoomRequest::decode(bytes);
    let _ = RoomResponse::decode(bytes);
    let _ = RoomSnapshot::decode_verified(bytes, ROOM, pk(HOST));
    let _ = Announcement::decode_verified(bytes, NOW);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn decoding_arbitrary_bytes_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..2048)) {
        decode_everything(&bytes);
    }

    #[test]
    fn decoding_mangled_encodings_never_panics(
        which in 0..4usize,
        pick in any::<Index>(),
        edits in edits(),
    ) {
        let original = match which {
            0 => requests()[pick.index(requests().len())].encode(),
            1 => responses()[pick.index(responses().len())].encode(),
            2 => snapshot().encode(),
            _ => announcement().encode(),
        };
        let mangled = apply(original.clone(), &edits);
        decode_everything(&mangled);
        if mangled != original {
            prop_assert!(RoomSnapshot::decode_verified(&mangled, ROOM, pk(HOST)).is_err());
            prop_assert!(Announcement::decode_verified(&mangled, NOW).is_err());
        }
    }

    #[test]
    fn truncated_requests_and_responses_are_refused(cut in any::<Index>(), pick in any::<Index>()) {
        let request = requests()[pick.index(requests().len())].encode();
        let request_cut = cut.index(request.len());
        prop_assert!(RoomRequest::decode(&request[..request_cut]).is_err());
        let response = responses()[pick.index(responses().len())].encode();
        let response_cut = cut.index(response.len());
        prop_assert!(RoomResponse::decode(&response[..response_cut]).is_err());
    }
}
