use std::time::{Duration, Instant};

use super::*;
use crate::capability::{Audience, Capability, Grant};
use crate::envelope::Authority;
use crate::id::Role;

const NOW: Timestamp = Timestamp(1_796_119_200_000);
const ROOM: RoomId = RoomId([6; 16]);

fn signing(n: u8) -> ed25519_dalek::SigningKey {
    ed25519_dalek::SigningKey::from_bytes(&[n; 32])
}

fn state() -> RoomState {
    RoomState::new(ROOM, PeerKey::from(&signing(0)))
}

/// A listener's signed envelope, with a listener capability from the host.
fn act(listener: u8, seq: u64, body: ControlBody) -> Verified<Envelope> {
    let capability = Capability::issue(
        &signing(0),
        ROOM,
        Grant {
            audience: Audience::Bearer,
            role: Role::Listener,
            not_before: Timestamp(NOW.0 - 60_000),
            expires_at: NOW.plus_millis(3_600_000),
            depth: 0,
        },
        [1; 8],
    )
    .expect("capability");
    Envelope::sign(
        &signing(listener),
        ROOM,
        seq,
        NOW,
        Authority::Capability(capability),
        body,
    )
    .expect("sign")
    .verify()
    .expect("verify")
}

/// The listeners `keys` join at the host's door at `at` (the host knows them from then on).
fn joined(host: &mut HostAudience, keys: impl IntoIterator<Item = u8>, at: Instant) {
    let state = state();
    for n in keys {
        let join = act(n, 0, ControlBody::Join { name: "l".into() });
        assert_eq!(host.take(at, NOW, &join, &state), Taken::Dropped);
    }
}

#[test]
fn audience_chat_is_let_through_within_the_rooms_budget() {
    let start = Instant::now();
    let mut host = HostAudience::new(
        ROOM,
        AudiencePolicy {
            chat_per_minute: 60,
        },
        start,
    );
    let state = state();
    // Twenty listeners who have been in the room a while, and twenty who just came.
    joined(&mut host, (10..30).chain([50]), start);
    let now = start + Duration::from_secs(40);
    let mut notices = Vec::new();
    let mut say = |keys: std::ops::Range<u8>| {
        let (mut relayed, mut refused) = (0, 0);
        for i in keys {
            match host.take(
                now,
                NOW,
                &act(i, 1, ControlBody::Chat { text: "hi".into() }),
                &state,
            ) {
                Taken::Relay(_) => relayed += 1,
                Taken::Refused { to, notice } => {
                    assert_eq!(to, PeerKey::from(&signing(i)));
                    assert!(notice.contains("busy"), "{notice}");
                    notices.push(notice);
                    refused += 1;
                }
                other => panic!("{other:?}"),
            }
        }
        (relayed, refused)
    };
    // The newly come, in a calm room, chat in a lane of their own: its burst of 5 (half the
    // room's budget, 30 a minute); the first refused is told why.
    assert_eq!(say(30..50), (5, 15));
    // The room's budget is all the settled's, whatever the newcomers took: a burst of 5.
    assert_eq!(say(10..30), (5, 15));
    assert!(notices[0].contains("newcomers"), "{}", notices[0]);
    assert!(
        notices[1].contains("those who were here before"),
        "{}",
        notices[1]
    );
    let later = now + Duration::from_secs(2);
    assert!(matches!(
        host.take(
            later,
            NOW,
            &act(50, 1, ControlBody::Chat { text: "x".into() }),
            &state
        ),
        Taken::Relay(_)
    ));
    assert_eq!(host.recent_chat().count(), 11);
    // The same envelope again (a relay replaying it): dropped.
    let line = act(
        51,
        1,
        ControlBody::Chat {
            text: "once".into(),
        },
    );
    let much_later = now + Duration::from_secs(60);
    assert!(matches!(
        host.take(much_later, NOW, &line, &state),
        Taken::Relay(_)
    ));
    assert_eq!(host.take(much_later, NOW, &line, &state), Taken::Dropped);
    // No audience chat at all.
    let mut quiet = HostAudience::new(ROOM, AudiencePolicy { chat_per_minute: 0 }, now);
    assert!(matches!(
        quiet.take(
            now,
            NOW,
            &act(52, 1, ControlBody::Chat { text: "x".into() }),
            &state
        ),
        Taken::Refused { .. }
    ));
}

#[test]
fn hands_are_queued_here_and_shown_in_the_view() {
    let now = Instant::now();
    let mut host = HostAudience::new(ROOM, AudiencePolicy::default(), now);
    let state = state();
    host.take(
        now,
        NOW,
        &act(10, 1, ControlBody::Join { name: "joe".into() }),
        &state,
    );
    assert_eq!(
        host.take(now, NOW, &act(10, 2, ControlBody::RaiseHand), &state),
        Taken::Hands
    );
    assert_eq!(
        host.take(now, NOW, &act(11, 1, ControlBody::RaiseHand), &state),
        Taken::Hands
    );
    let view = host
        .view(now, NOW, &state, 2, &signing(0))
        .expect("the first view");
    assert_eq!(view.hands_total, 2);
    assert_eq!(view.hands[0].name, "joe");
    assert_eq!(view.listeners, 2);
    // Nothing changed: no view for a while; then one anyway.
    assert!(
        host.view(now + Duration::from_secs(2), NOW, &state, 2, &signing(0))
            .is_none()
    );
    let idle = host
        .view(now + VIEW_MAX_INTERVAL, NOW, &state, 2, &signing(0))
        .expect("a view at least every VIEW_MAX_INTERVAL");
    assert!(idle.seq > view.seq);
    // A hand lowered: the next view (after the minimum interval) shows it.
    host.take(now, NOW, &act(10, 3, ControlBody::LowerHand), &state);
    let t = now + VIEW_MAX_INTERVAL;
    assert!(
        host.view(t, NOW, &state, 2, &signing(0)).is_none(),
        "too soon"
    );
    let lowered = host
        .view(t + VIEW_MIN_INTERVAL, NOW, &state, 2, &signing(0))
        .expect("changed");
    assert_eq!(lowered.hands_total, 1);
}

#[test]
fn reactions_are_totalled_and_actions_beyond_the_audiences_are_refused() {
    let now = Instant::now();
    let mut host = HostAudience::new(ROOM, AudiencePolicy::default(), now);
    let state = state();
    host.report(
        Report {
            subtree: 9_000,
            reactions: vec![ReactionCount {
                emoji: "👏".into(),
                count: 8_000,
            }],
            free: Vec::new(),
            newcomers: vec![Newcomer {
                key: PeerKey([3; 32]),
                name: "lo".into(),
            }],
            loss: Default::default(),
        },
        now,
    );
    host.react("👏");
    let view = host
        .view(now, NOW, &state, 9_000, &signing(0))
        .expect("view");
    assert_eq!(view.reactions[0].count, 8_001);
    assert_eq!(host.recent_listeners(0, 10).len(), 1);
    // Reactions are per interval.
    let next = host
        .view(now + VIEW_MAX_INTERVAL, NOW, &state, 9_000, &signing(0))
        .expect("view");
    assert!(next.reactions.is_empty());
    // A listener may not promote anyone, nor act for the stage.
    assert!(matches!(
        host.take(
            now,
            NOW,
            &act(
                12,
                1,
                ControlBody::Promote {
                    target: PeerKey([12; 32]),
                    role: Role::Speaker
                }
            ),
            &state
        ),
        Taken::Refused { .. }
    ));
    assert!(matches!(
        host.take(now, NOW, &act(12, 2, ControlBody::RecordingStarted), &state),
        Taken::Refused { .. }
    ));
}

#[test]
fn one_listener_cannot_take_the_rooms_chat_budget() {
    let now = Instant::now();
    let mut host = HostAudience::new(
        ROOM,
        AudiencePolicy {
            chat_per_minute: 600,
        },
        now,
    );
    let state = state();
    let line = |seq: u64| {
        act(
            10,
            seq,
            ControlBody::Chat {
                text: format!("spam {seq}"),
            },
        )
    };
    let mut taken = Vec::new();
    for seq in 1..=10 {
        taken.push(host.take(now, NOW, &line(seq), &state));
    }
    let relayed = taken
        .iter()
        .filter(|t| matches!(t, Taken::Relay(_)))
        .count();
    assert_eq!(relayed, LISTENER_CHAT_BURST as usize);
    assert!(taken.iter().any(|t| matches!(
        t,
        Taken::Refused { notice, .. } if notice.contains("too fast")
    )));
    // Someone else still gets through at once; the spammer again after its interval.
    assert!(matches!(
        host.take(
            now,
            NOW,
            &act(
                11,
                1,
                ControlBody::Chat {
                    text: "hello".into()
                }
            ),
            &state
        ),
        Taken::Relay(_)
    ));
    assert!(matches!(
        host.take(now, NOW, &line(11), &state),
        Taken::Refused { .. }
    ));
    let later = now + LISTENER_CHAT_EVERY;
    assert!(matches!(
        host.take(later, NOW, &line(12), &state),
        Taken::Relay(_)
    ));
}

#[test]
fn chatting_subtrees_share_the_rooms_budget_and_a_flooded_one_takes_only_its_share() {
    let start = Instant::now();
    let mut host = HostAudience::new(
        ROOM,
        AudiencePolicy {
            chat_per_minute: 30,
        },
        start,
    );
    let state = state();
    // Everyone has been in the room a minute (the room's budget, not the newcomers' lane).
    joined(&mut host, 0..=255, start);
    // (Their joining at once was a surge: the chat is calm again a minute on.)
    let now = start + crate::audience::tenure::CALM + Duration::from_secs(1);
    let (sybils, honest) = (PeerKey([0xee; 32]), PeerKey([0x11; 32]));
    // A relay of the attacker's passes up lines from a hundred keys, one every 100 ms.
    let mut through = 0;
    for i in 0..100u8 {
        let at = now + Duration::from_millis(100 * u64::from(i));
        let line = act(
            100 + i,
            1,
            ControlBody::Chat {
                text: format!("spam {i}"),
            },
        );
        if matches!(
            host.take_via(at, NOW, &line, &state, &[sybils]),
            Taken::Relay(_)
        ) {
            through += 1;
        }
    }
    // Alone, its share is the room's budget: 2 at once, then one every 2 s over 10 s.
    assert!((5..=8).contains(&through), "{through}");
    // A listener in another subtree gets its line through at once, in the middle of it.
    let later = now + Duration::from_secs(10);
    let hello = act(
        7,
        1,
        ControlBody::Chat {
            text: "hello".into(),
        },
    );
    assert!(matches!(
        host.take_via(later, NOW, &hello, &state, &[honest]),
        Taken::Relay(_)
    ));
    // From then on, the attacker's subtree has half the budget: one line every 4 s.
    let mut through = 0;
    for i in 0..100u8 {
        let at = later + Duration::from_millis(100 * u64::from(i) + 50);
        let line = act(
            200u8.wrapping_add(i),
            2,
            ControlBody::Chat {
                text: format!("more {i}"),
            },
        );
        if matches!(
            host.take_via(at, NOW, &line, &state, &[sybils]),
            Taken::Relay(_)
        ) {
            through += 1;
        }
    }
    assert!((1..=4).contains(&through), "{through}");
    let again = act(
        8,
        1,
        ControlBody::Chat {
            text: "still here".into(),
        },
    );
    assert!(matches!(
        host.take_via(
            later + Duration::from_secs(10),
            NOW,
            &again,
            &state,
            &[honest]
        ),
        Taken::Relay(_)
    ));
}

#[test]
fn a_listener_beside_the_attackers_relays_under_one_parent_gets_its_lines_through() {
    let start = Instant::now();
    let mut host = HostAudience::new(ROOM, AudiencePolicy::default(), start);
    let state = state();
    // The honest listener joined a minute before the raid; another arrives in it.
    let (honest, newcomer) = (PeerKey::from(&signing(7)), PeerKey::from(&signing(8)));
    let join = act(7, 0, ControlBody::Join { name: "joe".into() });
    assert_eq!(host.take(start, NOW, &join, &state), Taken::Dropped);
    let now = start + Duration::from_secs(60);
    // The host's child `parent` (honest) feeds two relays of the attacker's, each passing up
    // lines from fifty keys, one every 100 ms between them, and both honest listeners.
    let parent = PeerKey([0x21; 32]);
    let relays = [PeerKey([0xe1; 32]), PeerKey([0xe2; 32])];
    let mut spam = 0;
    let mut heard = [0, 0];
    for tick in 0..400u16 {
        let at = now + Duration::from_millis(100 * u64::from(tick));
        let sybil = 100 + u8::try_from(tick % 100).unwrap_or(0);
        let relay = relays[usize::from(tick % 2)];
        let line = act(
            sybil,
            u64::from(tick / 100) + 1,
            ControlBody::Chat {
                text: format!("spam {tick}"),
            },
        );
        let path = [parent, relay, line.author];
        if matches!(
            host.take_via(at, NOW, &line, &state, &path),
            Taken::Relay(_)
        ) {
            spam += 1;
        }
        // Each honest listener says something every 12 s (within its own budget).
        if tick % 120 == 60 {
            for (i, (n, key)) in [(7, honest), (8, newcomer)].into_iter().enumerate() {
                let hello = act(
                    n,
                    u64::from(tick) + 1,
                    ControlBody::Chat {
                        text: format!("hello at {tick}"),
                    },
                );
                if matches!(
                    host.take_via(at, NOW, &hello, &state, &[parent, key]),
                    Taken::Relay(_)
                ) {
                    heard[i] += 1;
                }
            }
        }
    }
    // The listener who was there first: the room's budget, its own now.
    assert_eq!(
        heard[0], 3,
        "every line of the settled listener went through"
    );
    // The one who came in the rush shares the rush's lane fairly with the attacker's relays
    // (a third of 15 a minute under `parent`: 5 a minute, its pace).
    assert!(heard[1] >= 2, "the newcomer's share {heard:?}");
    // 40 s of the rush's lane (15 a minute), its burst, and the room's own budget's burst
    // before it got busy; the honest lines taken out.
    assert!((8..=20).contains(&spam), "{spam}");
}

#[test]
fn a_raids_first_lines_before_anything_is_refused_take_nothing_from_the_settled() {
    let start = Instant::now();
    let mut host = HostAudience::new(ROOM, AudiencePolicy::default(), start);
    let state = state();
    // The honest listener joined a minute before the raid, a child of the host's; the raid's
    // relays take the host's other places and two under the listener (as in `sybil_room`).
    let honest = PeerKey::from(&signing(7));
    let join = act(7, 0, ControlBody::Join { name: "joe".into() });
    assert_eq!(host.take(start, NOW, &join, &state), Taken::Dropped);
    let raid = start + Duration::from_secs(60);
    let relay = |n: u8| PeerKey([0xe0 + n; 32]);
    let paths = [
        vec![relay(3), relay(3)],
        vec![relay(4), relay(4)],
        vec![relay(5), relay(5)],
        vec![honest, relay(1), relay(1)],
        vec![honest, relay(2), relay(2)],
    ];
    let (mut heard, mut spam) = (0, 0);
    for tick in 0..480u16 {
        let at = raid + Duration::from_millis(100 * u64::from(tick));
        // Lines from keys new to the host, ten a second: the first ones find the room calm.
        let line = act(
            100 + u8::try_from(tick % 150).unwrap_or(0),
            u64::from(tick / 150) + 1,
            ControlBody::Chat {
                text: format!("spam {tick}"),
            },
        );
        if matches!(
            host.take_via(at, NOW, &line, &state, &paths[usize::from(tick % 5)]),
            Taken::Relay(_)
        ) {
            spam += 1;
        }
        // The honest listener says something every 12 s, the first just after the raid's
        // first lines.
        if tick % 120 == 6 {
            let hello = act(
                7,
                u64::from(tick) + 1,
                ControlBody::Chat {
                    text: format!("hello at {tick}"),
                },
            );
            let taken = host.take_via(at, NOW, &hello, &state, &[honest, honest]);
            assert!(matches!(taken, Taken::Relay(_)), "at {tick}: {taken:?}");
            heard += 1;
        }
    }
    assert_eq!(heard, 4);
    // The raid had the newcomers' lane: 15 a minute for 48 s, and its bursts.
    assert!((10..=20).contains(&spam), "{spam}");
}
