use earshot_protocol::room::RoomSpec;
use earshot_protocol::{
    Audience, Capability, Grant, RecordingPolicy, Role, RoomDescriptor, RoomId, Visibility,
};

use super::*;

const START: Timestamp = Timestamp(1_796_119_200_000);

fn announcement(room: u8, expires_at: Timestamp) -> Vec<u8> {
    let host = ed25519_dalek::SigningKey::from_bytes(&[room; 32]);
    let descriptor = RoomDescriptor::sign(
        &host,
        RoomSpec {
            id: RoomId([room; 16]),
            title: "Town hall".into(),
            visibility: Visibility::Public,
            recording: RecordingPolicy::default(),
            created_at: START,
            addrs: Vec::new(),
        },
    )
    .expect("descriptor");
    let capability = Capability::issue(
        &host,
        descriptor.id,
        Grant {
            audience: Audience::Bearer,
            role: Role::Listener,
            not_before: START,
            expires_at: START.plus_millis(3_600_000),
            depth: 0,
        },
        [0; 8],
    )
    .expect("capability");
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
