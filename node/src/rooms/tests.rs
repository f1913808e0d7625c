//! The rooms machine driven by hand: a host and joiners exchange the effects the event loop
//! would carry, on a clock the test moves. No sockets, no runtime.

use std::time::{Duration, Instant};

use earshot_protocol::snapshot::{Placement, Refusal, RoomRequest, RoomResponse};
use earshot_protocol::state::RoomRole;
use earshot_protocol::{
    Audience, ControlBody, InviteLink, Role, RoomDescriptor, RoomId, Visibility,
};
use libp2p::PeerId;
use tokio::sync::oneshot;

use super::*;
use crate::node::pending::{Pending, PendingJoin};
use crate::peers::Peers;
use crate::reachability::Mode;

use crate::fixtures::START;

/// A node's rooms, with its key and the time.
struct Side {
    key: ed25519_dalek::SigningKey,
    rooms: Rooms,
    peers: Peers,
}

impl Side {
    fn new(seed: u8) -> Self {
        let key = ed25519_dalek::SigningKey::from_bytes(&[seed; 32]);
        Self {
            rooms: Rooms::new(key.clone(), START, [seed; 32]),
            key,
            peers: Peers::new(Mode::Public),
        }
    }

    fn peer(&self) -> PeerId {
        PeerKey::from(&self.key)
            .to_peer_id()
            .expect("an ed25519 key")
    }
}

/// The clock, moved by the test.
#[derive(Clone, Copy)]
struct Clock {
    base: Instant,
    offset: Duration,
}

impl Clock {
    fn new() -> Self {
        Self {
            base: Instant::now(),
            offset: Duration::ZERO,
        }
    }

    fn now(&self) -> Now {
        Now {
            wall: START.plus_millis(u64::try_from(self.offset.as_millis()).expect("small")),
            instant: self.base + self.offset,
        }
    }

    fn advance(&mut self, by: Duration) {
        self.offset += by;
    }
}

fn descriptor(host: &Side, visibility: Visibility) -> RoomDescriptor {
    crate::fixtures::descriptor(&host.key, RoomId([9; 16]), visibility)
}

fn link(host: &Side, room: &RoomDescriptor, role: Role) -> InviteLink {
    crate::fixtures::invite(&host.key, room, role, Audience::Bearer)
}

fn published(effects: &[Effect]) -> Vec<Vec<u8>> {
    effects
        .iter()
        .filter_map(|effect| match effect {
            Effect::Publish { bytes, .. } => Some(bytes.clone()),
            _ => None,
        })
        .collect()
}

fn events(effects: &[Effect]) -> Vec<&Event> {
    effects
        .iter()
        .filter_map(|effect| match effect {
            Effect::Emit(event) => Some(event),
            _ => None,
        })
        .collect()
}

fn responses(effects: Vec<Effect>) -> Vec<(InboundId, RoomResponse)> {
    effects
        .into_iter()
        .filter_map(|effect| match effect {
            Effect::Respond { inbound, response } => Some((inbound, response)),
            _ => None,
        })
        .collect()
}

/// Carries out the answers to joins among `effects` (the event loop does, after the rest).
fn deliver(effects: &mut Vec<Effect>) {
    for effect in std::mem::take(effects) {
        match effect {
            Effect::Joined { reply, view } => {
                let _ = reply.send(Ok(*view));
            }
            other => effects.push(other),
        }
    }
}

/// Nobody follows any topic yet.
fn nobody(_: &PeerId, _: &RoomId) -> bool {
    false
}

fn everybody(_: &PeerId, _: &RoomId) -> bool {
    true
}

/// A tree with nobody but the node itself.
fn one(_: &RoomId) -> u32 {
    1
}

/// Not an entry point of any room.
pub(super) fn not_entry(_: &RoomId) -> bool {
    false
}

/// No place in the tree for now.
fn no_place(_: RoomId, _: PeerKey) -> Placing {
    Placing::Refused(Refusal::NoPlace)
}

/// A joiner asks; returns its pending join and the envelope it sent.
fn ask(
    joiner: &mut Side,
    clock: &Clock,
    link: InviteLink,
    name: &str,
) -> (
    PendingJoin,
    Vec<u8>,
    oneshot::Receiver<Result<RoomView, JoinError>>,
) {
    let (reply, answer) = oneshot::channel();
    let mut effects = joiner.rooms.join(clock.now(), link, name.into(), reply);
    assert_eq!(effects.len(), 1, "{effects:?}");
    match effects.remove(0) {
        Effect::Request {
            request: RoomRequest::Join { envelope },
            then: Pending::Join(pending),
            ..
        } => (*pending, envelope.into_vec(), answer),
        other => panic!("{other:?}"),
    }
}

/// A host with a room, and a speaker admitted and welcomed onto its stage.
fn room_with_speaker(visibility: Visibility) -> (Side, Side, RoomDescriptor, Clock) {
    let clock = Clock::new();
    let mut host = Side::new(1);
    let room = descriptor(&host, visibility);
    host.rooms
        .host(clock.now(), room.clone(), "ana".into())
        .expect("hosts");
    let mut joiner = Side::new(2);
    let (pending, envelope, mut answer) = ask(
        &mut joiner,
        &clock,
        link(&host, &room, Role::Speaker),
        "joe",
    );
    let effects = host.rooms.on_join_request(
        clock.now(),
        joiner.peer(),
        InboundId(1),
        &envelope,
        everybody,
        no_place,
        not_entry,
        &host.peers,
    );
    let (_, welcome) = responses(effects).pop().expect("welcomed at once");
    let mut effects = joiner
        .rooms
        .join_answered(clock.now(), pending, welcome, &joiner.peers);
    deliver(&mut effects);
    assert!(effects.iter().any(|e| matches!(e, Effect::Changed { .. })));
    let view = answer.try_recv().expect("answered").expect("joined");
    assert_eq!(
        view.state.role_of(&joiner.rooms.me()),
        Some(RoomRole::Speaker)
    );
    assert!(!view.audience);
    (host, joiner, room, clock)
}

#[test]
fn hosting_says_the_host_joined_and_publishes_it() {
    let clock = Clock::new();
    let mut host = Side::new(1);
    let room = descriptor(&host, Visibility::Unlisted);
    let effects = host
        .rooms
        .host(clock.now(), room.clone(), "ana".into())
        .expect("hosts");
    assert_eq!(published(&effects).len(), 1);
    assert!(matches!(
        events(&effects)[..],
        [Event::MemberJoined { name, role: RoomRole::Host, .. }] if name == "ana"
    ));
    // Unlisted: nothing on the lobby.
    assert!(!effects.iter().any(|e| matches!(e, Effect::Announce(_))));
    assert!(matches!(
        host.rooms.host(clock.now(), room.clone(), "ana".into()),
        Err(HostError::AlreadyJoined(_))
    ));
    let mut other = Side::new(3);
    assert!(matches!(
        other.rooms.host(clock.now(), room, "x".into()),
        Err(HostError::NotHost(_))
    ));
}

#[test]
fn a_joiner_is_welcomed_once_it_follows_the_topic_or_after_the_wait() {
    let mut clock = Clock::new();
    let mut host = Side::new(1);
    let room = descriptor(&host, Visibility::Unlisted);
    host.rooms
        .host(clock.now(), room.clone(), "ana".into())
        .expect("hosts");
    let mut joiner = Side::new(2);
    let (_, envelope, _) = ask(
        &mut joiner,
        &clock,
        link(&host, &room, Role::Speaker),
        "joe",
    );
    // Admitted (its join is published to the room), but not welcomed before it follows.
    let effects = host.rooms.on_join_request(
        clock.now(),
        joiner.peer(),
        InboundId(7),
        &envelope,
        nobody,
        no_place,
        not_entry,
        &host.peers,
    );
    assert_eq!(published(&effects).len(), 1);
    assert!(responses(effects).is_empty());
    assert!(responses(host.rooms.on_subscribed(clock.now(), nobody, &host.peers)).is_empty());
    // Its subscription arrives: welcomed.
    let answered = responses(
        host.rooms
            .on_subscribed(clock.now(), everybody, &host.peers),
    );
    assert!(matches!(
        &answered[..],
        [(InboundId(7), RoomResponse::Welcome { .. })]
    ));

    // A second joiner never subscribes: welcomed anyway once WELCOME_WAIT has passed.
    let mut late = Side::new(4);
    let (_, envelope, _) = ask(&mut late, &clock, link(&host, &room, Role::Speaker), "lo");
    host.rooms.on_join_request(
        clock.now(),
        late.peer(),
        InboundId(8),
        &envelope,
        nobody,
        no_place,
        not_entry,
        &host.peers,
    );
    clock.advance(WELCOME_WAIT - Duration::from_millis(100));
    assert!(responses(host.rooms.tick(clock.now(), nobody, one, &host.peers)).is_empty());
    clock.advance(Duration::from_millis(100));
    let answered = responses(host.rooms.tick(clock.now(), nobody, one, &host.peers));
    assert!(matches!(
        &answered[..],
        [(InboundId(8), RoomResponse::Welcome { .. })]
    ));
}

#[test]
fn joins_are_refused_for_what_they_are() {
    let clock = Clock::new();
    let mut host = Side::new(1);
    let room = descriptor(&host, Visibility::Unlisted);
    host.rooms
        .host(clock.now(), room.clone(), "ana".into())
        .expect("hosts");
    let mut joiner = Side::new(2);
    let (_, envelope, _) = ask(
        &mut joiner,
        &clock,
        link(&host, &room, Role::Speaker),
        "joe",
    );
    let refusal =
        |from: PeerId, bytes: &[u8], host: &mut Side| match responses(host.rooms.on_join_request(
            clock.now(),
            from,
            InboundId(1),
            bytes,
            everybody,
            no_place,
            not_entry,
            &host.peers,
        ))
        .pop()
        {
            Some((_, RoomResponse::Refused { refusal })) => refusal,
            other => panic!("{other:?}"),
        };
    assert!(matches!(
        refusal(joiner.peer(), b"garbage", &mut host),
        Refusal::BadJoin { .. }
    ));
    // Someone else's join, sent on their own connection.
    assert_eq!(
        refusal(Side::new(5).peer(), &envelope, &mut host),
        Refusal::NotFromAuthor
    );
    // A room this node does not host.
    let mut elsewhere = Side::new(6);
    assert_eq!(
        refusal(joiner.peer(), &envelope, &mut elsewhere),
        Refusal::NotHost { room: room.id }
    );
    // The same join twice: the room's fold refuses the replay.
    assert!(
        responses(host.rooms.on_join_request(
            clock.now(),
            joiner.peer(),
            InboundId(1),
            &envelope,
            everybody,
            no_place,
            not_entry,
            &host.peers,
        ))
        .iter()
        .any(|(_, r)| matches!(r, RoomResponse::Welcome { .. }))
    );
    assert!(matches!(
        refusal(joiner.peer(), &envelope, &mut host),
        Refusal::Rejected { .. }
    ));
}

#[test]
fn a_refused_join_unsubscribes_and_says_why() {
    let clock = Clock::new();
    let host = Side::new(1);
    let room = descriptor(&host, Visibility::Unlisted);
    let mut joiner = Side::new(2);
    let (pending, _, mut answer) = ask(
        &mut joiner,
        &clock,
        link(&host, &room, Role::Listener),
        "joe",
    );
    assert!(joiner.rooms.is_joining(&room.id));
    let effects = joiner.rooms.join_answered(
        clock.now(),
        pending,
        RoomResponse::Refused {
            refusal: Refusal::RoomClosed,
        },
        &joiner.peers,
    );
    assert!(matches!(&effects[..], [Effect::Unsubscribe(id)] if *id == room.id));
    assert!(matches!(
        answer.try_recv().expect("answered"),
        Err(JoinError::Refused {
            refusal: Refusal::RoomClosed
        })
    ));
    assert!(!joiner.rooms.is_joining(&room.id));
    // A link for a room whose host is someone else fails offline, before asking anyone.
    let mut stranger = Side::new(3);
    let mut forged = link(&host, &room, Role::Listener);
    forged.host = PeerKey::from(&stranger.key);
    let (reply, mut answer) = oneshot::channel();
    let effects = stranger.rooms.join(clock.now(), forged, "x".into(), reply);
    assert!(matches!(&effects[..], [Effect::Unsubscribe(_)]));
    assert!(matches!(answer.try_recv(), Ok(Err(JoinError::Invite(_)))));
}

#[test]
fn what_members_say_reaches_the_others_and_bad_messages_are_refused() {
    let (mut host, mut joiner, room, clock) = room_with_speaker(Visibility::Unlisted);
    let (changes, effects) = joiner
        .rooms
        .act(
            clock.now(),
            room.id,
            ControlBody::Chat {
                text: "hello".into(),
            },
        )
        .expect("chat");
    assert_eq!(changes.len(), 1);
    let bytes = published(&effects).pop().expect("published");
    let (verdict, effects) = host.rooms.on_message(
        clock.now(),
        joiner.peer(),
        Some(joiner.peer()),
        Some(room.id),
        &bytes,
    );
    assert_eq!(verdict, Verdict::Accept);
    assert!(
        matches!(events(&effects)[..], [Event::Chat { name, text, .. }] if name == "joe" && text == "hello")
    );
    // The same bytes again: a race, not an attack.
    let (verdict, _) = host.rooms.on_message(
        clock.now(),
        joiner.peer(),
        Some(joiner.peer()),
        Some(room.id),
        &bytes,
    );
    assert_eq!(verdict, Verdict::Ignore);
    // Garbage: refused, and the forwarder is named.
    let (verdict, effects) = host.rooms.on_message(
        clock.now(),
        joiner.peer(),
        Some(joiner.peer()),
        Some(room.id),
        b"not an envelope",
    );
    assert_eq!(verdict, Verdict::Reject);
    assert!(
        matches!(events(&effects)[..], [Event::Rejected { from: Some(from), .. }] if *from == joiner.peer())
    );
    // A speaker may not promote anyone: its own node refuses to say it.
    assert!(matches!(
        joiner.rooms.act(
            clock.now(),
            room.id,
            ControlBody::Promote {
                target: joiner.rooms.me(),
                role: Role::Speaker
            }
        ),
        Err(ActError::Rejected(_))
    ));
}

#[test]
fn heartbeats_go_out_when_due_and_the_queue_gives_up_after_a_while() {
    let (_host, mut joiner, room, mut clock) = room_with_speaker(Visibility::Unlisted);
    assert!(published(&joiner.rooms.tick(clock.now(), nobody, one, &joiner.peers)).is_empty());
    clock.advance(Duration::from_millis(
        earshot_protocol::state::PRESENCE_INTERVAL_MS,
    ));
    let beat = published(&joiner.rooms.tick(clock.now(), nobody, one, &joiner.peers));
    assert_eq!(beat.len(), 1, "a presence heartbeat");
    // Nobody subscribed yet: the event loop gives the bytes back; they are retried on every
    // tick until PUBLISH_RETRY_FOR has passed.
    joiner
        .rooms
        .queue(room.id, clock.now().instant, beat[0].clone());
    let retried = published(&joiner.rooms.retry(clock.now()));
    assert_eq!(retried, beat);
    joiner
        .rooms
        .queue(room.id, clock.now().instant, beat[0].clone());
    clock.advance(PUBLISH_RETRY_FOR + Duration::from_millis(1));
    assert!(published(&joiner.rooms.retry(clock.now())).is_empty());
}

#[test]
fn leaving_says_so_and_forgets_the_room() {
    let (_host, mut joiner, room, clock) = room_with_speaker(Visibility::Unlisted);
    let effects = joiner.rooms.leave(clock.now(), room.id, CloseReason::Left);
    assert_eq!(published(&effects).len(), 1, "the Leave");
    assert!(
        effects
            .iter()
            .any(|e| matches!(e, Effect::Unsubscribe(id) if *id == room.id))
    );
    assert!(
        effects
            .iter()
            .any(|e| matches!(e, Effect::Forget(id) if *id == room.id))
    );
    assert!(matches!(
        events(&effects).last(),
        Some(Event::Closed {
            reason: CloseReason::Left,
            ..
        })
    ));
    assert!(!joiner.rooms.contains(&room.id));
    assert!(
        joiner
            .rooms
            .leave(clock.now(), room.id, CloseReason::Left)
            .is_empty()
    );
}

#[test]
fn a_removed_member_closes_the_room_and_an_ended_room_closes_for_everyone() {
    let (mut host, mut joiner, room, clock) = room_with_speaker(Visibility::Unlisted);
    let target = joiner.rooms.me();
    let (_, effects) = host
        .rooms
        .act(
            clock.now(),
            room.id,
            ControlBody::Remove {
                target,
                revoke: Vec::new(),
            },
        )
        .expect("remove");
    let bytes = published(&effects).pop().expect("published");
    let (_, effects) = joiner.rooms.on_message(
        clock.now(),
        host.peer(),
        Some(host.peer()),
        Some(room.id),
        &bytes,
    );
    assert!(matches!(
        events(&effects).last(),
        Some(Event::Closed {
            reason: CloseReason::Removed,
            ..
        })
    ));
    // The host ends its room: closed for it at once.
    let (_, effects) = host
        .rooms
        .act(clock.now(), room.id, ControlBody::RoomEnded)
        .expect("end");
    assert!(matches!(
        events(&effects).last(),
        Some(Event::Closed {
            reason: CloseReason::Ended,
            ..
        })
    ));
    assert!(!host.rooms.contains(&room.id));
}

#[test]
fn a_public_room_is_announced_at_once_and_then_every_interval() {
    let mut clock = Clock::new();
    let mut host = Side::new(1);
    let room = descriptor(&host, Visibility::Public);
    let announced = |effects: &[Effect]| {
        effects
            .iter()
            .filter(|e| matches!(e, Effect::Announce(_)))
            .count()
    };
    let effects = host
        .rooms
        .host(clock.now(), room, "ana".into())
        .expect("hosts");
    assert_eq!(announced(&effects), 1);
    clock.advance(Duration::from_millis(100));
    assert_eq!(
        announced(&host.rooms.tick(clock.now(), nobody, one, &host.peers)),
        0
    );
    clock.advance(Duration::from_millis(
        earshot_protocol::snapshot::ANNOUNCE_INTERVAL_MS,
    ));
    assert_eq!(
        announced(&host.rooms.tick(clock.now(), nobody, one, &host.peers)),
        1
    );
}

#[test]
fn who_may_speak_follows_the_stage() {
    let (mut host, joiner, room, clock) = room_with_speaker(Visibility::Unlisted);
    let speakers = |host: &Side| host.rooms.speakers(&room.id).expect("in the room");
    assert!(speakers(&host).contains(&joiner.peer()));
    assert!(speakers(&host).contains(&host.peer()));
    host.rooms
        .act(
            clock.now(),
            room.id,
            ControlBody::Mute {
                target: joiner.rooms.me(),
            },
        )
        .expect("mute");
    assert!(!speakers(&host).contains(&joiner.peer()), "muted: silenced");
    host.rooms
        .act(
            clock.now(),
            room.id,
            ControlBody::Demote {
                target: joiner.rooms.me(),
            },
        )
        .expect("demote");
    host.rooms
        .act(
            clock.now(),
            room.id,
            ControlBody::Unmute {
                target: joiner.rooms.me(),
            },
        )
        .expect("unmute");
    assert!(!speakers(&host).contains(&joiner.peer()), "off the stage");
    assert_eq!(host.rooms.hosts_with(&room.id, &joiner.rooms.me()), Ok(()));
    assert_eq!(
        host.rooms
            .hosts_with(&room.id, &PeerKey::from(&Side::new(9).key)),
        Err(Refusal::NotPresent)
    );
}

mod audience;
mod private;

#[test]
fn a_flood_of_joins_is_admitted_within_the_hosts_budget_and_the_rest_told_to_try_again() {
    let mut clock = Clock::new();
    let mut host = Side::new(1);
    let room = descriptor(&host, Visibility::Public);
    host.rooms
        .host(clock.now(), room.clone(), "ana".into())
        .expect("hosts");
    let invite = link(&host, &room, Role::Listener);
    // Throwaway keys, each with the public link, all in the same instant.
    let flood = HOST_JOINS_BURST as u32 + 200;
    let mut busy = 0;
    let mut answered = 0;
    for i in 0..flood {
        let (peer, join) = stranger_join(i, &room, &invite, &clock);
        let effects = host.rooms.on_join_request(
            clock.now(),
            peer,
            InboundId(u64::from(i)),
            &join,
            nobody,
            no_place,
            not_entry,
            &host.peers,
        );
        for (_, response) in responses(effects) {
            answered += 1;
            if response
                == (RoomResponse::Refused {
                    refusal: Refusal::Busy,
                })
            {
                busy += 1;
            }
        }
    }
    assert_eq!(answered, flood, "every joiner is answered");
    assert_eq!(busy, 200, "past the burst, joiners are told to try again");
    // A second later the budget has refilled by its rate.
    clock.advance(Duration::from_secs(1));
    let mut joe = Side::new(2);
    let (_, envelope, _) = ask(&mut joe, &clock, invite, "joe");
    let effects = host.rooms.on_join_request(
        clock.now(),
        joe.peer(),
        InboundId(1),
        &envelope,
        nobody,
        no_place,
        not_entry,
        &host.peers,
    );
    assert!(
        responses(effects).iter().all(|(_, response)| !matches!(
            response,
            RoomResponse::Refused {
                refusal: Refusal::Busy
            }
        )),
        "an honest joiner gets in a second later"
    );
}

/// A stranger's join with `invite`, signed by a key of its own (seeded by `i`).
fn stranger_join(
    i: u32,
    room: &RoomDescriptor,
    invite: &InviteLink,
    clock: &Clock,
) -> (PeerId, Vec<u8>) {
    let mut seed = [8u8; 32];
    seed[..4].copy_from_slice(&i.to_be_bytes());
    let key = ed25519_dalek::SigningKey::from_bytes(&seed);
    let join = Envelope::sign(
        &key,
        room.id,
        1,
        clock.now().wall,
        Authority::Capability(invite.capability.clone()),
        ControlBody::Join {
            name: format!("stranger {i}"),
        },
    )
    .expect("a join");
    (
        PeerKey::from(&key).to_peer_id().expect("a key"),
        join.encode(),
    )
}

#[test]
fn a_room_takes_no_more_than_its_hosts_limits_on_stage_and_in_the_audience() {
    let mut clock = Clock::new();
    let mut host = Side::new(1);
    let limits = earshot_protocol::RoomLimits {
        stage: 2,
        listeners: 3,
    };
    let room = crate::fixtures::limited(&host.key, RoomId([9; 16]), Visibility::Public, limits);
    host.rooms
        .host(clock.now(), room.clone(), "ana".into())
        .expect("hosts");
    let answer = |host: &mut Side, clock: &Clock, i: u32, invite: &InviteLink| {
        let (peer, join) = stranger_join(i, &room, invite, clock);
        let effects = host.rooms.on_join_request(
            clock.now(),
            peer,
            InboundId(u64::from(i)),
            &join,
            everybody,
            no_place,
            not_entry,
            &host.peers,
        );
        responses(effects).pop().expect("answered").1
    };
    let full = |max| RoomResponse::Refused {
        refusal: Refusal::Full { max },
    };
    // The audience: three admitted, the fourth told the room is full.
    let listeners = link(&host, &room, Role::Listener);
    for i in 0..3 {
        let response = answer(&mut host, &clock, i, &listeners);
        assert!(
            matches!(response, RoomResponse::Admitted { .. }),
            "{response:?}"
        );
    }
    assert_eq!(answer(&mut host, &clock, 3, &listeners), full(3));
    // Admitted listeners who never came stop counting; the tree's count is what counts then.
    clock.advance(Duration::from_secs(11));
    let response = answer(&mut host, &clock, 4, &listeners);
    assert!(
        matches!(response, RoomResponse::Admitted { .. }),
        "{response:?}"
    );
    // The stage: the host and one speaker; a second speaker is refused.
    let speakers = link(&host, &room, Role::Speaker);
    let response = answer(&mut host, &clock, 10, &speakers);
    assert!(
        matches!(response, RoomResponse::Welcome { .. }),
        "{response:?}"
    );
    assert_eq!(answer(&mut host, &clock, 11, &speakers), full(2));
}

#[test]
fn a_joiner_a_busy_host_turned_away_asks_again_in_a_moment_and_gives_up_at_last() {
    let mut clock = Clock::new();
    let host = Side::new(1);
    let room = descriptor(&host, Visibility::Public);
    let invite = link(&host, &room, Role::Listener);
    let mut joe = Side::new(2);
    let (mut pending, envelope, mut answer) = ask(&mut joe, &clock, invite, "joe");
    let busy = || RoomResponse::Refused {
        refusal: Refusal::Busy,
    };
    for _ in 0..joining::BUSY_TRIES {
        let effects = joe
            .rooms
            .join_answered(clock.now(), pending, busy(), &joe.peers);
        assert!(effects.is_empty(), "{effects:?}");
        assert!(answer.try_recv().is_err(), "not told anything yet");
        // Asked again within the longest wait (with jitter), with the same join.
        clock.advance(joining::BUSY_WAIT_MAX.mul_f64(1.5));
        let mut effects = joe.rooms.tick(clock.now(), nobody, one, &joe.peers);
        let again = effects
            .iter()
            .position(|e| {
                matches!(
                    e,
                    Effect::Request {
                        then: Pending::Join(_),
                        ..
                    }
                )
            })
            .expect("asked again");
        match effects.remove(again) {
            Effect::Request {
                request: RoomRequest::Join { envelope: sent },
                then: Pending::Join(next),
                ..
            } => {
                assert_eq!(sent.as_ref(), envelope.as_slice());
                pending = *next;
            }
            other => panic!("{other:?}"),
        }
    }
    let mut effects = joe
        .rooms
        .join_answered(clock.now(), pending, busy(), &joe.peers);
    deliver(&mut effects);
    assert!(matches!(
        answer.try_recv(),
        Ok(Err(JoinError::Refused {
            refusal: Refusal::Busy
        }))
    ));
}
