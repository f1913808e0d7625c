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
