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
