//! The audience tier driven by hand: a listener admitted without touching the room's topic, its
//! hands and chat going up to the host, the host's views and relayed envelopes coming down, a
//! relay that tries to slip its own in, a promotion that brings a listener up to the stage, a
//! removal that sends one away.

use earshot_protocol::audience::Ticket;
use earshot_protocol::audience::relayed::Relayed;
use earshot_protocol::audience::wire::Down;

use super::*;

/// A place under the host, with the host's ticket for it.
pub(super) fn under_host(host: &Side) -> impl FnOnce(RoomId, PeerKey) -> Placing + use<> {
    let host = host.key.clone();
    move |room, key| {
        let me = PeerKey::from(&host);
        Placing::At(Placement {
            key: me,
            addrs: Vec::new(),
            depth: 1,
            ticket: serde_bytes::ByteBuf::from(
                Ticket::issue_as_host(&host, room, key, me, START).encode(),
            ),
        })
    }
}

/// What a node sends up the tree.
fn ups(effects: &[Effect]) -> Vec<Vec<u8>> {
    effects
        .iter()
        .filter_map(|effect| match effect {
            Effect::Up { act, .. } => Some(act.clone()),
            _ => None,
        })
        .collect()
}

/// What a node sends down the tree.
pub(super) fn downs(effects: &[Effect]) -> Vec<Down> {
    effects
        .iter()
        .filter_map(|effect| match effect {
            Effect::Down { down, .. } => Some(down.clone()),
            _ => None,
        })
        .collect()
}

/// A host with a room, and a listener admitted into its audience.
fn room_with_audience() -> (Side, Side, RoomDescriptor, Clock) {
    let clock = Clock::new();
    let mut host = Side::new(1);
    let room = descriptor(&host, Visibility::Unlisted);
    host.rooms
        .host(clock.now(), room.clone(), "ana".into())
        .expect("hosts");
    let mut joiner = Side::new(2);
    let (pending, envelope, mut answer) = ask(
        &mut joiner,
        &clock,
        link(&host, &room, Role::Listener),
        "joe",
    );
    let place = under_host(&host);
    let effects = host.rooms.on_join_request(
        clock.now(),
        joiner.peer(),
        InboundId(1),
        &envelope,
        nobody,
        place,
        not_entry,
        &Peers::new(Mode::Public),
    );
    // Not folded, nothing published: the stage does not hear of each listener.
    assert!(published(&effects).is_empty(), "{effects:?}");
    assert_eq!(
        host.rooms.hosts_with(&room.id, &joiner.rooms.me()),
        Err(Refusal::NotPresent)
    );
    let (_, admitted) = responses(effects).pop().expect("answered at once");
    assert!(
        matches!(admitted, RoomResponse::Admitted { .. }),
        "{admitted:?}"
    );
    let mut effects = joiner
        .rooms
        .join_answered(clock.now(), pending, admitted, &joiner.peers);
    deliver(&mut effects);
    assert!(
        effects
            .iter()
            .any(|e| matches!(e, Effect::OpenTree { room: r, .. } if *r == room.id))
    );
    let view = answer.try_recv().expect("answered").expect("joined");
    assert!(view.audience);
    let placement = view.placement.expect("placed under the host");
    assert_eq!(placement.key, PeerKey::from(&host.key));
    assert_eq!(
        view.state.role_of(&joiner.rooms.me()),
        Some(RoomRole::Listener)
    );
    assert!(
        view.state.members.contains_key(&PeerKey::from(&host.key)),
        "the host's view shows the stage"
    );
    (host, joiner, room, clock)
}

/// The host's next view, as it goes down the tree (`size` nodes in the tree).
fn next_view(host: &mut Side, clock: &mut Clock, size: u32) -> Down {
    clock.advance(earshot_protocol::audience::host::VIEW_MAX_INTERVAL);
    let effects = host.rooms.tick(clock.now(), nobody, |_| size, &host.peers);
    downs(&effects)
        .into_iter()
        .find(|down| matches!(down, Down::View(_)))
        .expect("a view is due")
}

#[test]
fn a_listeners_hand_goes_up_and_the_view_brings_it_down() {
    let (mut host, mut joiner, room, mut clock) = room_with_audience();
    let (changes, effects) = joiner
        .rooms
        .act(clock.now(), room.id, ControlBody::RaiseHand)
        .expect("raise");
    assert!(
        changes.is_empty(),
        "nothing changes before the host says so"
    );
    assert!(
        published(&effects).is_empty(),
        "the audience never publishes"
    );
    let act = ups(&effects).pop().expect("goes up the tree");
    let effects = host.rooms.audience_act(clock.now(), room.id, &act);
    assert!(
        matches!(events(&effects)[..], [Event::HandRaised { name, .. }] if name == "joe"),
        "{effects:?}"
    );
    // Two nodes in the tree (host and listener): one listener, one hand.
    let view = next_view(&mut host, &mut clock, 2);
    let effects = joiner.rooms.on_down(clock.now(), room.id, view);
    let events = events(&effects);
    assert!(
        events.iter().any(|e| matches!(
            e,
            Event::Audience {
                listeners: 1,
                hands: 1,
                ..
            }
        )),
        "{events:?}"
    );
    assert!(
        events
            .iter()
            .any(|e| matches!(e, Event::HandRaised { member, .. } if *member == joiner.rooms.me())),
        "{events:?}"
    );
    // Only the listener's own kinds of action go up.
    assert!(matches!(
        joiner
            .rooms
            .act(clock.now(), room.id, ControlBody::RecordingStarted),
        Err(ActError::Audience)
    ));
}

#[test]
fn audience_chat_is_relayed_within_budget_and_a_relay_cannot_forge_it() {
    let (mut host, mut joiner, room, clock) = room_with_audience();
    let chat = |joiner: &mut Side, text: &str| {
        let (_, effects) = joiner
            .rooms
            .act(
                clock.now(),
                room.id,
                ControlBody::Chat { text: text.into() },
            )
            .expect("chat");
        ups(&effects).pop().expect("goes up")
    };
    let act = chat(&mut joiner, "hello");
    let effects = host.rooms.audience_act(clock.now(), room.id, &act);
    // The stage hears it on the topic, the audience down the tree; the host sees it.
    assert_eq!(published(&effects), vec![act.clone()]);
    assert!(matches!(events(&effects)[..], [Event::Chat { text, .. }] if text == "hello"));
    let down = downs(&effects).pop().expect("relayed down");
    let effects = joiner.rooms.on_down(clock.now(), room.id, down.clone());
    assert!(
        matches!(events(&effects)[..], [Event::Chat { text, .. }] if text == "hello"),
        "{effects:?}"
    );
    // The same again (a relay repeating itself): nothing new.
    assert!(joiner.rooms.on_down(clock.now(), room.id, down).is_empty());
    // The same action sent up twice: the host takes it once.
    assert!(
        host.rooms
            .audience_act(clock.now(), room.id, &act)
            .is_empty()
    );

    // A relay in the tree slips in a line of its own, countersigned by itself: refused.
    let relay = Side::new(7);
    let forged = Relayed::sign(&relay.key, room.id, chat(&mut joiner, "spam")).encode();
    let effects = joiner.rooms.on_down(
        clock.now(),
        room.id,
        Down::Envelope(serde_bytes::ByteBuf::from(forged)),
    );
    assert!(events(&effects).is_empty(), "{effects:?}");

    // A burst past the room's budget: the host says why, to the one who sent it.
    let mut notices = 0;
    for i in 0..10 {
        let act = chat(&mut joiner, &format!("line {i}"));
        let effects = host.rooms.audience_act(clock.now(), room.id, &act);
        notices += effects
            .iter()
            .filter(|e| matches!(e, Effect::Notice { to, .. } if *to == joiner.rooms.me()))
            .count();
    }
    assert!(notices >= 5, "{notices} notices");
}

#[test]
fn a_promoted_listener_steps_up_to_the_stage() {
    let (mut host, mut joiner, room, clock) = room_with_audience();
    let me = joiner.rooms.me();
    let (_, effects) = host
        .rooms
        .act(
            clock.now(),
            room.id,
            ControlBody::Promote {
                target: me,
                role: Role::Speaker,
            },
        )
        .expect("promote");
    let down = downs(&effects).pop().expect("relayed to the audience");
    let effects = joiner.rooms.on_down(clock.now(), room.id, down);
    assert!(
        effects
            .iter()
            .any(|e| matches!(e, Effect::Subscribe(r) if *r == room.id))
    );
    let (envelope, pending) = effects
        .into_iter()
        .find_map(|effect| match effect {
            Effect::Request {
                request: RoomRequest::Join { envelope },
                then: Pending::Join(pending),
                ..
            } => Some((envelope, pending)),
            _ => None,
        })
        .expect("joins again");
    // The host's fold knows the promotion: this join is the stage's, and is welcomed.
    let effects = host.rooms.on_join_request(
        clock.now(),
        joiner.peer(),
        InboundId(3),
        &envelope,
        everybody,
        no_place,
        not_entry,
        &host.peers,
    );
    assert_eq!(published(&effects).len(), 1, "the stage hears the join");
    let (_, welcome) = responses(effects).pop().expect("welcomed");
    let effects = joiner
        .rooms
        .join_answered(clock.now(), *pending, welcome, &joiner.peers);
    assert!(
        events(&effects)
            .iter()
            .any(|e| matches!(e, Event::RoleChanged { member, role: RoomRole::Speaker, .. } if *member == me)),
        "{effects:?}"
    );
    let view = joiner
        .rooms
        .view(clock.now(), &room.id)
        .expect("in the room");
    assert!(!view.audience);
    assert!(
        host.rooms
            .speakers(&room.id)
            .expect("room")
            .contains(&joiner.peer())
    );
}

#[test]
fn a_removed_listener_is_told_by_the_view_and_refused_a_place() {
    let (mut host, mut joiner, room, mut clock) = room_with_audience();
    let target = joiner.rooms.me();
    host.rooms
        .act(
            clock.now(),
            room.id,
            ControlBody::Remove {
                target,
                revoke: Vec::new(),
            },
        )
        .expect("remove");
    let view = next_view(&mut host, &mut clock, 2);
    let effects = joiner.rooms.on_down(clock.now(), room.id, view);
    assert!(matches!(
        events(&effects).last(),
        Some(Event::Closed {
            reason: CloseReason::Removed,
            ..
        })
    ));
    assert!(!joiner.rooms.contains(&room.id));
    // Joining again with the same link: refused at the door.
    let (_, envelope, _) = ask(
        &mut joiner,
        &clock,
        link(&host, &room, Role::Listener),
        "joe",
    );
    let place = under_host(&host);
    let effects = host.rooms.on_join_request(
        clock.now(),
        joiner.peer(),
        InboundId(4),
        &envelope,
        nobody,
        place,
        not_entry,
        &Peers::new(Mode::Public),
    );
    assert!(matches!(
        responses(effects).pop(),
        Some((_, RoomResponse::Refused { .. }))
    ));
}

#[test]
fn views_and_notices_from_a_forger_are_ignored() {
    let (_host, mut joiner, room, clock) = room_with_audience();
    let forger = Side::new(8);
    let view = earshot_protocol::audience::AudienceView {
        room: room.id,
        seq: 99,
        at: START,
        stage: Vec::new(),
        hands: Vec::new(),
        hands_total: 0,
        listeners: 1_000_000,
        reactions: Vec::new(),
        recording: false,
        ended: true,
        banned: Vec::new(),
        revoked: Vec::new(),
        carriers: None,
        excluded: Vec::new(),
        keys: None,
        audio_loss: 0,
        signature: earshot_protocol::id::Sig([0; 64]),
    }
    .sign(&forger.key);
    let effects = joiner.rooms.on_down(
        clock.now(),
        room.id,
        Down::View(serde_bytes::ByteBuf::from(view.encode())),
    );
    assert!(effects.is_empty(), "{effects:?}");
    assert!(joiner.rooms.contains(&room.id), "a forged end ends nothing");
    // A notice for someone else is not shown here.
    let effects = joiner.rooms.on_down(
        clock.now(),
        room.id,
        Down::Notice {
            to: PeerKey::from(&forger.key),
            text: "hi".into(),
        },
    );
    assert!(effects.is_empty());
}

#[test]
fn a_listener_publishing_on_the_topic_itself_is_refused() {
    let (mut host, mut joiner, room, clock) = room_with_audience();
    let (_, effects) = joiner
        .rooms
        .act(
            clock.now(),
            room.id,
            ControlBody::Chat {
                text: "around the host".into(),
            },
        )
        .expect("chat");
    let bytes = ups(&effects).pop().expect("signed");
    // A modified client subscribes to the topic and publishes its own line: refused, and the
    // forwarder (the client itself) is named.
    let (verdict, effects) = host.rooms.on_message(
        clock.now(),
        joiner.peer(),
        Some(joiner.peer()),
        Some(room.id),
        &bytes,
    );
    assert_eq!(verdict, Verdict::Reject);
    assert!(
        matches!(events(&effects)[..], [Event::Rejected { reason, .. }] if reason.contains("through the host"))
    );
    // The same line, published by the host (its budget let it through): taken.
    let mut stage = Side::new(3);
    let (pending, envelope, _) = ask(&mut stage, &clock, link(&host, &room, Role::Speaker), "sam");
    let effects = host.rooms.on_join_request(
        clock.now(),
        stage.peer(),
        InboundId(9),
        &envelope,
        everybody,
        no_place,
        not_entry,
        &host.peers,
    );
    let (_, welcome) = responses(effects).pop().expect("welcomed");
    stage
        .rooms
        .join_answered(clock.now(), pending, welcome, &stage.peers);
    let (verdict, effects) = stage.rooms.on_message(
        clock.now(),
        host.peer(),
        Some(host.peer()),
        Some(room.id),
        &bytes,
    );
    assert_eq!(verdict, Verdict::Accept);
    assert!(
        matches!(events(&effects)[..], [Event::Chat { text, .. }] if text == "around the host")
    );
}

/// A link naming an entry point (a community relay carrying the room): a listener joins through
/// it, placed in its subtree with a ticket chained to the relay's own, and the host hears of it
/// up the tree; an entry point that does not admit the listener sends it to the host, with the
/// same `Join`.
#[test]
fn a_listener_joins_through_an_entry_point_or_else_at_the_host() {
    let (mut host, mut carrier, room, clock) = room_with_audience();
    let carrier_key = carrier.rooms.me();
    let entry_addr: libp2p::Multiaddr = format!("/ip4/127.0.0.1/tcp/4001/p2p/{}", carrier.peer())
        .parse()
        .expect("an address");
    let mut invite = link(&host, &room, Role::Listener);
    invite.bootstrap.push(entry_addr.clone());
    // The carrier's own place, under the host.
    let carrier_ticket = Ticket::issue_as_host(
        &host.key,
        room.id,
        carrier_key,
        PeerKey::from(&host.key),
        START,
    );
    let below_carrier = |signing: ed25519_dalek::SigningKey, own: Ticket| {
        move |_room: RoomId, key: PeerKey| {
            let me = PeerKey::from(&signing);
            let ticket = Ticket::issue_below(&signing, &own, key, me, START).expect("a ticket");
            Placing::At(Placement {
                key: me,
                addrs: Vec::new(),
                depth: 2,
                ticket: serde_bytes::ByteBuf::from(ticket.encode()),
            })
        }
    };

    for (seed, entry_admits) in [(3u8, true), (4, false)] {
        let mut newcomer = Side::new(seed);
        let (reply, mut answer) = oneshot::channel();
        let mut effects = newcomer
            .rooms
            .join(clock.now(), invite.clone(), "sue".into(), reply);
        let Some(Effect::Request {
            peer,
            addrs,
            request: RoomRequest::Join { envelope },
            then: Pending::Join(pending),
        }) = effects.pop()
        else {
            panic!("a join request");
        };
        assert_eq!(peer, carrier.peer(), "asked the entry point");
        assert_eq!(addrs, vec![entry_addr.clone()]);
        let effects = carrier.rooms.on_join_request(
            clock.now(),
            newcomer.peer(),
            InboundId(seed.into()),
            &envelope,
            nobody,
            below_carrier(carrier.key.clone(), carrier_ticket.clone()),
            |_: &RoomId| entry_admits,
            &carrier.peers,
        );
        let told_up = effects.iter().any(
            |e| matches!(e, Effect::Newcomer { newcomer: n, .. } if n.key == newcomer.rooms.me()),
        );
        let (_, response) = responses(effects).pop().expect("answered");
        let mut effects =
            newcomer
                .rooms
                .join_answered(clock.now(), *pending, response, &newcomer.peers);
        if entry_admits {
            assert!(
                told_up,
                "the host hears of the newcomer in the carrier's report"
            );
            deliver(&mut effects);
            let view = answer.try_recv().expect("answered").expect("joined");
            let placement = view.placement.expect("placed");
            assert_eq!(placement.key, carrier_key, "under the entry point");
            continue;
        }
        // Refused by the entry point: the host is asked, with the same join.
        assert!(!told_up);
        let Some(Effect::Request {
            peer,
            request: RoomRequest::Join { envelope: again },
            then: Pending::Join(pending),
            ..
        }) = effects.pop()
        else {
            panic!("a join request to the host: {effects:?}");
        };
        assert_eq!(peer, host.peer());
        assert_eq!(again, envelope);
        let effects = host.rooms.on_join_request(
            clock.now(),
            newcomer.peer(),
            InboundId(9),
            &again,
            nobody,
            under_host(&host),
            not_entry,
            &host.peers,
        );
        let (_, response) = responses(effects).pop().expect("answered");
        let mut effects =
            newcomer
                .rooms
                .join_answered(clock.now(), *pending, response, &newcomer.peers);
        deliver(&mut effects);
        let view = answer.try_recv().expect("answered").expect("joined");
        assert_eq!(
            view.placement.expect("placed").key,
            PeerKey::from(&host.key),
            "under the host"
        );
    }
}

/// The listener's requests to the host for lines sent straight.
fn straight(effects: &[Effect]) -> Vec<(PeerId, Vec<u8>)> {
    effects
        .iter()
        .filter_map(|effect| match effect {
            Effect::Request {
                peer,
                request: RoomRequest::Act { act, .. },
                ..
            } => Some((*peer, act.to_vec())),
            _ => None,
        })
        .collect()
}

#[test]
fn a_line_that_does_not_come_back_down_goes_to_the_host_straight_once() {
    let (mut host, mut joiner, room, mut clock) = room_with_audience();
    let chat = |joiner: &mut Side, now, text: &str| {
        let (_, effects) = joiner
            .rooms
            .act(now, room.id, ControlBody::Chat { text: text.into() })
            .expect("chat");
        ups(&effects).pop().expect("goes up")
    };
    // A line the host relays back down in time is not sent straight.
    let back = chat(&mut joiner, clock.now(), "back");
    let effects = host.rooms.audience_act(clock.now(), room.id, &back);
    let down = downs(&effects).pop().expect("relayed down");
    joiner.rooms.on_down(clock.now(), room.id, down);
    clock.advance(super::super::direct::DIRECT_AFTER);
    let ticked = joiner.rooms.tick(clock.now(), nobody, one, &joiner.peers);
    assert!(straight(&ticked).is_empty(), "{ticked:?}");

    // A line a relay dropped: after DIRECT_AFTER, to the host straight, once.
    let dropped = chat(&mut joiner, clock.now(), "dropped on the way");
    let early = joiner.rooms.tick(clock.now(), nobody, one, &joiner.peers);
    assert!(straight(&early).is_empty());
    clock.advance(super::super::direct::DIRECT_AFTER);
    let sent = straight(&joiner.rooms.tick(clock.now(), nobody, one, &joiner.peers));
    let host_id = PeerKey::from(&host.key).to_peer_id().expect("peer id");
    assert_eq!(sent, vec![(host_id, dropped.clone())]);
    clock.advance(super::super::direct::DIRECT_AFTER);
    assert!(straight(&joiner.rooms.tick(clock.now(), nobody, one, &joiner.peers)).is_empty());

    // At the host: someone else's line, sent straight, is refused (only one's own).
    let stranger = Side::new(9);
    let (response, effects) =
        host.rooms
            .audience_act_straight(clock.now(), room.id, stranger.rooms.me(), &dropped);
    assert_eq!(
        response,
        RoomResponse::Refused {
            refusal: Refusal::NotFromAuthor
        }
    );
    assert!(effects.is_empty());
    // The author's: taken, said on the topic and down the tree.
    let (response, effects) =
        host.rooms
            .audience_act_straight(clock.now(), room.id, joiner.rooms.me(), &dropped);
    assert_eq!(response, RoomResponse::Kept);
    assert_eq!(published(&effects), vec![dropped.clone()]);
    assert_eq!(downs(&effects).len(), 1);
    // The tree's copy, late after all: taken once.
    assert!(
        host.rooms
            .audience_act(clock.now(), room.id, &dropped)
            .is_empty()
    );
    // Past the budget, the refusal is the answer (the tree may not carry a notice).
    let mut refused = 0;
    for i in 0..6 {
        let act = chat(&mut joiner, clock.now(), &format!("straight {i}"));
        let (response, effects) =
            host.rooms
                .audience_act_straight(clock.now(), room.id, joiner.rooms.me(), &act);
        if let RoomResponse::Refused {
            refusal: Refusal::Rejected { reason },
        } = response
        {
            assert!(
                reason.contains("too fast") || reason.contains("busy"),
                "{reason}"
            );
            assert!(!effects.iter().any(|e| matches!(e, Effect::Notice { .. })));
            refused += 1;
        }
    }
    assert!(refused >= 4, "{refused}");
    // A line refused straight: the tree's copy, when it comes, is weighed again (here refused
    // again, the author over its budget: it is told), not dropped as one seen before.
    let late = chat(&mut joiner, clock.now(), "refused straight");
    let (response, _) =
        host.rooms
            .audience_act_straight(clock.now(), room.id, joiner.rooms.me(), &late);
    assert!(matches!(response, RoomResponse::Refused { .. }));
    let effects = host.rooms.audience_act(clock.now(), room.id, &late);
    assert!(
        effects.iter().any(|e| matches!(e, Effect::Notice { .. })),
        "{effects:?}"
    );
    // Only chat and support come straight: a hand keeps to the tree.
    let (_, effects) = joiner
        .rooms
        .act(clock.now(), room.id, ControlBody::RaiseHand)
        .expect("hand");
    let hand = ups(&effects).pop().expect("goes up");
    let (response, effects) =
        host.rooms
            .audience_act_straight(clock.now(), room.id, joiner.rooms.me(), &hand);
    assert!(matches!(response, RoomResponse::Refused { .. }));
    assert!(effects.is_empty());
}
