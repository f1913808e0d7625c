//! Private rooms driven by hand: who is given keys (members, not carriers), what goes down the
//! tree sealed and what in the clear, and a removal that starts an epoch without the removed.

use earshot_protocol::audience::AudienceView;
use earshot_protocol::audience::wire::Down;
use earshot_protocol::private::{How, Keys};

use super::audience::{downs, under_host};
use super::*;

/// A listener of `room` asks the host to be admitted; returns the host's answer and effects.
/// (Each joiner's own link, bound to it: removing one revokes only its link.)
fn admit(
    host: &mut Side,
    joiner: &mut Side,
    clock: &Clock,
    room: &RoomDescriptor,
    name: &str,
) -> (RoomResponse, Vec<Effect>) {
    let bound = Audience::Bound(PeerKey::from(&joiner.key));
    let link = crate::fixtures::invite(&host.key, room, Role::Listener, bound);
    let (pending, envelope, _answer) = ask(joiner, clock, link, name);
    let mut effects = host.rooms.on_join_request(
        clock.now(),
        joiner.peer(),
        InboundId(1),
        &envelope,
        nobody,
        under_host(host),
        not_entry,
        &host.peers,
    );
    let answer = responses(std::mem::take(&mut effects).into_iter().collect())
        .pop()
        .expect("answered")
        .1;
    let mut joined =
        joiner
            .rooms
            .join_answered(clock.now(), pending, answer.clone(), &joiner.peers);
    deliver(&mut joined);
    (answer, joined)
}

fn keys_in(answer: &RoomResponse) -> Option<Vec<u8>> {
    match answer {
        RoomResponse::Admitted { keys, .. } => keys.clone().map(|k| k.into_vec()),
        other => panic!("not admitted: {other:?}"),
    }
}

fn ring_of(effects: &[Effect]) -> Option<earshot_protocol::private::Ring> {
    effects.iter().rev().find_map(|effect| match effect {
        Effect::Keyring { ring, .. } => Some(ring.clone()),
        _ => None,
    })
}

#[test]
fn members_get_keys_carriers_none_and_a_removed_member_is_left_out_of_the_next_epoch() {
    let mut clock = Clock::new();
    let mut host = Side::new(1);
    let room = descriptor(&host, Visibility::Private);
    let opened = host
        .rooms
        .host(clock.now(), room.clone(), "ana".into())
        .expect("hosts");
    assert!(
        ring_of(&opened).is_some(),
        "the host's keys go to its audio plane"
    );

    // Joe, a member: sealed the next epoch, which the room steps to at once (a quiet room).
    let mut joe = Side::new(2);
    let (answer, joined) = admit(&mut host, &mut joe, &clock, &room, "joe");
    let sealed = keys_in(&answer).expect("a member gets keys");
    let joe_ring = ring_of(&joined).expect("joe's keys");
    let joe_epoch = joe_ring.current().expect("an epoch").n;
    let keys = Keys::decode_verified(&sealed, room.id, &PeerKey::from(&host.key)).expect("signed");
    assert_eq!(keys.epoch, joe_epoch);

    // A community relay asked to carry the room: a place, no keys.
    let mut relay = Side::new(3);
    host.rooms
        .private_carrier(room.id, PeerKey::from(&relay.key));
    let (answer, joined) = admit(&mut host, &mut relay, &clock, &room, "relay");
    assert_eq!(keys_in(&answer), None);
    assert!(ring_of(&joined).is_none_or(|ring| ring.current().is_none()));

    // The host's next view: redacted in the clear, whole and sealed for members.
    clock.advance(earshot_protocol::audience::host::VIEW_MAX_INTERVAL);
    let effects = host.rooms.tick(clock.now(), nobody, |_| 3, &host.peers);
    let sent = downs(&effects);
    let clear = sent
        .iter()
        .find_map(|down| match down {
            Down::View(bytes) => Some(
                AudienceView::decode_verified(bytes, room.id, &PeerKey::from(&host.key))
                    .expect("signed")
                    .into_inner(),
            ),
            _ => None,
        })
        .expect("a view in the clear");
    assert!(clear.stage.iter().all(|member| member.name.is_empty()));
    assert!(
        !clear.stage.is_empty(),
        "relays still know the stage's keys"
    );
    let sealed_view = sent
        .iter()
        .find(|down| matches!(down, Down::Sealed(_)))
        .expect("the view sealed")
        .clone();
    let Down::Sealed(bytes) = &sealed_view else {
        unreachable!()
    };
    let inner =
        Down::decode(&joe_ring.open(&room.id, bytes).expect("joe opens it")).expect("a down");
    let Down::View(bytes) = inner else {
        panic!("a view")
    };
    let whole = AudienceView::decode_verified(&bytes, room.id, &PeerKey::from(&host.key))
        .expect("signed")
        .into_inner();
    assert!(whole.stage.iter().any(|member| member.name == "ana"));
    assert!(
        relay
            .rooms
            .on_down(clock.now(), room.id, sealed_view)
            .is_empty(),
        "a carrier reads nothing of it"
    );

    // Sue joins; joe is removed: the next epoch is sealed to sue, not to joe.
    clock.advance(Duration::from_secs(2));
    let mut sue = Side::new(4);
    let (answer, _) = admit(&mut host, &mut sue, &clock, &room, "sue");
    assert!(keys_in(&answer).is_some());
    let (_, effects) = host
        .rooms
        .act(
            clock.now(),
            room.id,
            ControlBody::Remove {
                target: PeerKey::from(&joe.key),
                revoke: Vec::new(),
            },
        )
        .expect("removes");
    drop(effects);
    clock.advance(Duration::from_millis(100));
    let effects = host.rooms.tick(clock.now(), nobody, |_| 3, &host.peers);
    let fresh: Vec<Keys> = downs(&effects)
        .into_iter()
        .filter_map(|down| match down {
            Down::Keys(bytes) => {
                Keys::decode_verified(&bytes, room.id, &PeerKey::from(&host.key)).ok()
            }
            _ => None,
        })
        .collect();
    assert!(!fresh.is_empty(), "a fresh epoch after the removal");
    assert!(
        fresh
            .iter()
            .all(|keys| matches!(keys.how, How::Fresh { .. }))
    );
    assert!(
        fresh.iter().any(|keys| keys.open(&sue.key).is_some()),
        "sue is sealed the epoch"
    );
    assert!(
        fresh.iter().all(|keys| keys.open(&joe.key).is_none()),
        "joe is not"
    );
    assert!(
        fresh.iter().all(|keys| keys.open(&relay.key).is_none()),
        "nor the carrier"
    );
}

/// The schedule the host last kept (its `KeepSchedule` effects).
fn kept(effects: &[Effect]) -> Option<Vec<u8>> {
    effects.iter().rev().find_map(|effect| match effect {
        Effect::KeepSchedule { sealed, .. } => Some(sealed.clone().expect("kept, not forgotten")),
        _ => None,
    })
}

#[test]
fn a_restarted_host_goes_on_with_its_members_keys_and_keeps_the_removed_out() {
    let mut clock = Clock::new();
    let mut host = Side::new(1);
    let room = descriptor(&host, Visibility::Private);
    let mut effects = host
        .rooms
        .host(clock.now(), room.clone(), "ana".into())
        .expect("hosts");
    let (mut joe, mut bo) = (Side::new(2), Side::new(3));
    let (_, joined) = admit(&mut host, &mut joe, &clock, &room, "joe");
    let joe_ring = ring_of(&joined).expect("joe's keys");
    clock.advance(Duration::from_secs(2));
    admit(&mut host, &mut bo, &clock, &room, "bo");
    clock.advance(Duration::from_secs(2));
    effects.extend(host.rooms.tick(clock.now(), nobody, |_| 3, &host.peers));
    let (_, removal) = host
        .rooms
        .act(
            clock.now(),
            room.id,
            ControlBody::Remove {
                target: PeerKey::from(&bo.key),
                revoke: Vec::new(),
            },
        )
        .expect("removes");
    effects.extend(removal);
    clock.advance(Duration::from_millis(100));
    effects.extend(host.rooms.tick(clock.now(), nobody, |_| 3, &host.peers));
    let before = ring_of(&effects).expect("the host's keys");
    let epoch = before.current().expect("an epoch").clone();
    assert!(epoch.n > joe_ring.current().expect("joe's epoch").n);
    let sealed = kept(&effects).expect("the schedule is kept");

    // The process stops (no end) and starts again: same key, a new machine.
    let mut again = Side::new(1);
    again.rooms.kept_schedule(room.id, sealed.clone());
    let opened = again
        .rooms
        .host(clock.now(), room.clone(), "ana".into())
        .expect("hosts again");
    let ring = ring_of(&opened).expect("the host's keys");
    assert_eq!(
        ring.current(),
        Some(&epoch),
        "the room goes on in its epoch"
    );
    assert_eq!(ring.topic(), before.topic());
    // Joe, still a member, is given the epoch when he asks; again at once is a flood.
    let joe_key = PeerKey::from(&joe.key);
    let RoomResponse::Keys { keys } = again.rooms.private_reseal(clock.now(), room.id, joe_key)
    else {
        panic!("joe is a member")
    };
    let keys = Keys::decode_verified(&keys, room.id, &PeerKey::from(&host.key)).expect("signed");
    assert_eq!(keys.open(&joe.key).map(|(got, _)| got), Some(epoch.clone()));
    assert_eq!(
        again.rooms.private_reseal(clock.now(), room.id, joe_key),
        RoomResponse::Waiting
    );
    clock.advance(crate::rooms::private::RESEAL_EVERY);
    assert!(matches!(
        again.rooms.private_reseal(clock.now(), room.id, joe_key),
        RoomResponse::Keys { .. }
    ));
    // Bo, removed before the restart, is refused the keys and a place.
    assert!(matches!(
        again
            .rooms
            .private_reseal(clock.now(), room.id, PeerKey::from(&bo.key)),
        RoomResponse::Refused { .. }
    ));
    let mut bo_again = Side::new(3);
    let (answer, _) = admit(&mut again, &mut bo_again, &clock, &room, "bo");
    assert!(
        matches!(answer, RoomResponse::Refused { .. }),
        "bo is not admitted again: {answer:?}"
    );

    // Another identity (a stolen database without the key) restores nothing.
    let mut thief = Side::new(9);
    let thiefs_room = descriptor(&thief, Visibility::Private);
    thief.rooms.kept_schedule(thiefs_room.id, sealed);
    let opened = thief
        .rooms
        .host(clock.now(), thiefs_room, "thief".into())
        .expect("hosts");
    assert_ne!(
        ring_of(&opened).and_then(|ring| ring.current().cloned()),
        Some(epoch)
    );

    // Ending the room forgets its schedule.
    let (_, ended) = again
        .rooms
        .act(clock.now(), room.id, ControlBody::RoomEnded)
        .expect("ends");
    assert!(
        ended
            .iter()
            .any(|effect| matches!(effect, Effect::KeepSchedule { sealed: None, .. }))
    );
}

#[test]
fn a_member_of_a_host_that_lost_its_schedule_asks_and_is_told_to_join_again() {
    let mut clock = Clock::new();
    let mut host = Side::new(1);
    let room = descriptor(&host, Visibility::Private);
    host.rooms
        .host(clock.now(), room.clone(), "ana".into())
        .expect("hosts");
    let mut joe = Side::new(2);
    let (_, joined) = admit(&mut host, &mut joe, &clock, &room, "joe");
    assert!(ring_of(&joined).is_some());

    // A minute later the host starts again without the schedule it kept (a new database).
    clock.advance(Duration::from_secs(60));
    let mut again = Side::new(1);
    again
        .rooms
        .host(clock.now(), room.clone(), "ana".into())
        .expect("hosts again");
    clock.advance(earshot_protocol::audience::host::VIEW_MAX_INTERVAL);
    let effects = again.rooms.tick(clock.now(), nobody, |_| 3, &again.peers);
    // Its views say the schedule is past what Joe holds (epochs are numbered from the clock):
    // Joe asks the host.
    let mut asked = Vec::new();
    for down in downs(&effects) {
        asked.extend(joe.rooms.on_down(clock.now(), room.id, down));
    }
    assert!(
        asked.iter().any(|effect| matches!(
            effect,
            Effect::Request {
                request: RoomRequest::Keys { .. },
                ..
            }
        )),
        "joe asks the host for the keys"
    );
    // The host does not know him: he is told, and the room closes for him.
    let RoomResponse::Refused { refusal } =
        again
            .rooms
            .private_reseal(clock.now(), room.id, PeerKey::from(&joe.key))
    else {
        panic!("refused")
    };
    let told = joe
        .rooms
        .private_refused(clock.now(), room.id, &refusal.to_string());
    assert!(told.iter().any(|effect| matches!(
        effect,
        Effect::Emit(Event::Error { message, .. }) if message.contains("join again")
    )));
    assert!(told.iter().any(|effect| matches!(
        effect,
        Effect::Emit(Event::Closed {
            reason: CloseReason::Removed,
            ..
        })
    )));
}
