use earshot_protocol::{Audience, Role, RoomId, Visibility};

use super::*;
use crate::fixtures::{START, descriptor, invite, signing};

fn announcement(room: u8, expires_at: Timestamp) -> Vec<u8> {
    let host = signing(room);
    let descriptor = descriptor(&host, RoomId([room; 16]), Visibility::Public);
    let capability = invite(&host, &descriptor, Role::Listener, Audience::Bearer).capability;
    Announcement::sign(
        &host,
        descriptor,
        vec!["ana".into()],
        12,
        capability,
        expires_at,
        Vec::new(),
    )
    .encode()
}

#[test]
fn announcements_are_kept_until_they_expire_and_answered() {
    let mut lobby = Lobby::default();
    let (verdict, event) =
        lobby.on_announcement(START, &announcement(1, START.plus_millis(20_000)));
    assert_eq!(verdict, Verdict::Accept);
    assert_eq!(
        event,
        Some(Event::Announced {
            room: RoomId([1; 16])
        })
    );
    lobby.on_announcement(START, &announcement(2, START.plus_millis(5_000)));
    assert_eq!(lobby.live(START).len(), 2);
    let later = START.plus_millis(10_000);
    assert_eq!(lobby.live(later).len(), 1, "the second expired");
    let answer = read_answer(later, lobby.answer(later)).expect("an answer");
    assert_eq!(answer.len(), 1);
    assert_eq!(answer[0].descriptor.id, RoomId([1; 16]));
}

#[test]
fn stale_announcements_are_ignored_and_forgeries_refused() {
    let mut lobby = Lobby::default();
    let stale = announcement(1, START);
    assert_eq!(
        lobby.on_announcement(START.plus_millis(1), &stale),
        (Verdict::Ignore, None)
    );
    let mut forged = announcement(2, START.plus_millis(20_000));
    let last = forged.len() - 1;
    forged[last] ^= 1;
    assert_eq!(
        lobby.on_announcement(START, &forged),
        (Verdict::Reject, None)
    );
    assert_eq!(
        lobby.on_announcement(START, b"junk"),
        (Verdict::Reject, None)
    );
    assert!(lobby.live(START).is_empty());
    assert!(matches!(
        read_answer(START, RoomResponse::Waiting),
        Err(LobbyError::BadAnswer(_))
    ));
}

/// An announcement of room `room` by the host made of `host` bytes.
fn announced_by(host: [u8; 32], room: [u8; 16], expires_at: Timestamp) -> Vec<u8> {
    let host = ed25519_dalek::SigningKey::from_bytes(&host);
    let descriptor = descriptor(&host, RoomId(room), Visibility::Public);
    let capability = invite(&host, &descriptor, Role::Listener, Audience::Bearer).capability;
    Announcement::sign(
        &host,
        descriptor,
        vec!["x".into()],
        1,
        capability,
        expires_at,
        Vec::new(),
    )
    .encode()
}

#[test]
fn ten_thousand_throwaway_hosts_fill_a_bounded_lobby_and_one_host_at_most_four_rooms() {
    let mut lobby = Lobby::default();
    let expires = START.plus_millis(20_000);
    // One host, six rooms: four are kept.
    for room in 0..6u8 {
        lobby.on_announcement(START, &announced_by([7; 32], [room; 16], expires));
    }
    assert_eq!(lobby.live(START).len(), MAX_ROOMS_PER_HOST);
    // Many hosts (a flood of throwaway keys): the lobby stays bounded, answers too.
    for i in 0..(MAX_ROOMS as u32 + 200) {
        let mut host = [0u8; 32];
        host[..4].copy_from_slice(&i.to_be_bytes());
        host[31] = 1;
        let mut room = [0u8; 16];
        room[..4].copy_from_slice(&i.to_be_bytes());
        room[15] = 1;
        lobby.on_announcement(START, &announced_by(host, room, expires));
    }
    assert_eq!(lobby.live(START).len(), MAX_ROOMS);
    let RoomResponse::Lobby { announcements } = lobby.answer(START) else {
        panic!("a lobby answer")
    };
    assert_eq!(announcements.len(), MAX_ANSWERED);
}

/// An announcement ahead of room `room` by the host made of `host` bytes, beginning at
/// `starts_at` and valid until a quarter of an hour past it.
fn ahead_by(host: [u8; 32], room: [u8; 16], starts_at: Timestamp) -> Vec<u8> {
    use earshot_protocol::room::RoomSpec;
    use earshot_protocol::snapshot::UPCOMING_GRACE_MS;
    let host = ed25519_dalek::SigningKey::from_bytes(&host);
    let descriptor = earshot_protocol::RoomDescriptor::sign_scheduled(
        &host,
        RoomSpec {
            id: RoomId(room),
            title: "Later".into(),
            visibility: Visibility::Public,
            recording: earshot_protocol::RecordingPolicy::default(),
            created_at: START,
            addrs: Vec::new(),
            limits: earshot_protocol::RoomLimits::default(),
        },
        Some(earshot_protocol::Schedule {
            starts_at,
            about: "soon".into(),
        }),
    )
    .expect("descriptor");
    let capability = invite(&host, &descriptor, Role::Listener, Audience::Bearer).capability;
    Announcement::sign(
        &host,
        descriptor,
        vec!["x".into()],
        0,
        capability,
        starts_at.plus_millis(UPCOMING_GRACE_MS),
        Vec::new(),
    )
    .encode()
}

const HOUR: u64 = 3_600_000;

#[test]
fn a_room_announced_ahead_is_kept_until_its_start_and_not_further_ahead_than_a_month() {
    let mut lobby = Lobby::default();
    let starts_at = START.plus_millis(2 * HOUR);
    let (verdict, _) = lobby.on_announcement(START, &ahead_by([1; 32], [1; 16], starts_at));
    assert_eq!(verdict, Verdict::Accept);
    assert!(lobby.live(START).is_empty(), "not live");
    assert_eq!(lobby.upcoming(START).len(), 1);
    // Still there an hour and three quarters later, gone a quarter of an hour past the start.
    assert_eq!(lobby.upcoming(START.plus_millis(HOUR * 7 / 4)).len(), 1);
    assert!(lobby.upcoming(starts_at.plus_millis(HOUR / 4)).is_empty());
    // A live room's announcement may not last that long; nor a room 31 days ahead.
    let mut lobby = Lobby::default();
    let long_live = announcement(2, START.plus_millis(HOUR));
    assert_eq!(
        lobby.on_announcement(START, &long_live),
        (Verdict::Ignore, None)
    );
    let far = ahead_by([3; 32], [3; 16], START.plus_millis(31 * 24 * HOUR));
    assert_eq!(lobby.on_announcement(START, &far), (Verdict::Ignore, None));
    // Renewed, not doubled; answered as upcoming.
    lobby.on_announcement(START, &ahead_by([1; 32], [1; 16], starts_at));
    let answer = read_answer(START, lobby.answer(START)).expect("an answer");
    assert_eq!(answer.len(), 1);
    assert!(answer[0].ahead(START));
}

#[test]
fn ten_thousand_keys_announcing_ahead_never_push_out_a_live_room_or_a_sooner_one() {
    let mut lobby = Lobby::default();
    let expires = START.plus_millis(20_000);
    for room in 0..10u8 {
        lobby.on_announcement(START, &announced_by([room; 32], [room; 16], expires));
    }
    // One key may keep two rooms ahead.
    for room in 0..4u8 {
        lobby.on_announcement(
            START,
            &ahead_by([50; 32], [100 + room; 16], START.plus_millis(HOUR)),
        );
    }
    assert_eq!(lobby.upcoming(START).len(), MAX_UPCOMING_PER_HOST);
    // Ten thousand throwaway keys, each announcing a room a week ahead.
    for i in 0..10_000u32 {
        let mut host = [0u8; 32];
        host[..4].copy_from_slice(&i.to_be_bytes());
        host[31] = 9;
        let mut room = [0u8; 16];
        room[..4].copy_from_slice(&i.to_be_bytes());
        room[15] = 9;
        lobby.on_announcement(
            START,
            &ahead_by(host, room, START.plus_millis(7 * 24 * HOUR)),
        );
    }
    assert_eq!(lobby.upcoming(START).len(), MAX_UPCOMING);
    assert_eq!(
        lobby.live(START).len(),
        10,
        "every live room is still there"
    );
    // The honest host's rooms within the hour were not pushed out by rooms a week away, and a
    // room tomorrow still finds a place.
    let upcoming = lobby.upcoming(START);
    assert!(
        upcoming[..2].iter().all(|a| a.descriptor.host
            == PeerKey::from(&ed25519_dalek::SigningKey::from_bytes(&[50; 32])))
    );
    let tomorrow = ahead_by([60; 32], [60; 16], START.plus_millis(24 * HOUR));
    assert_eq!(lobby.on_announcement(START, &tomorrow).0, Verdict::Accept);
    // Answers stay bounded: live rooms first, then a share of upcoming ones.
    let answer = read_answer(START, lobby.answer(START)).expect("an answer");
    assert_eq!(answer.len(), 10 + MAX_ANSWERED_UPCOMING);
    assert!(answer[..10].iter().all(|a| !a.ahead(START)));
}

#[test]
fn a_room_id_copied_under_another_key_does_not_replace_the_first_hosts_entry() {
    let mut lobby = Lobby::default();
    let expires = START.plus_millis(20_000);
    lobby.on_announcement(START, &announced_by([1; 32], [7; 16], expires));
    lobby.on_announcement(START, &announced_by([2; 32], [7; 16], expires));
    let hosts: Vec<PeerKey> = lobby
        .live(START)
        .iter()
        .map(|a| a.descriptor.host)
        .collect();
    assert_eq!(hosts.len(), 2, "two entries, the first host's kept");
}
