//! Live rooms over libp2p on 127.0.0.1: several in-process nodes in one room.

use earshot_node::Event;
use earshot_node::event::CloseReason;
use earshot_node::node::JoinError;
use earshot_protocol::envelope::{Authority, Envelope, MAX_ENVELOPE_BYTES};
use earshot_protocol::state::RoomRole;
use earshot_protocol::{
    Audience, Capability, ControlBody, Grant, PeerKey, Role, RoomId, Timestamp, Visibility,
};

use crate::net::{TestNode, delegate, grant, invite};

/// An event about `room` that passes `test`.
fn is_change(event: &Event, room: RoomId, test: impl Fn(&Event) -> bool) -> bool {
    event.room() == Some(room) && test(event)
}

fn joined(who: PeerKey) -> impl Fn(&Event) -> bool {
    move |event| matches!(event, Event::MemberJoined { member, .. } if *member == who)
}

fn chat(text: &'static str) -> impl Fn(&Event) -> bool {
    move |event| matches!(event, Event::Chat { text: t, .. } if t == text)
}

/// Everything a room promises, end to end: a moderator by delegated link, listeners in the
/// audience (off the room's topic, the room coming down the relay tree to them), hands going up
/// to the host and shown to the stage, a promotion that brings a listener up to the stage, chat
/// and applause seen by all, a late joiner that sees the same stage, a removal whose link is
/// refused afterwards, and the host ending the room.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_room_from_opening_to_end() {
    let mut host = TestNode::start("ana").await;
    let room = host.host("Book club", Visibility::Unlisted).await;
    let id = room.id;

    // A co-host holds a moderator capability that may be delegated once; the moderator joins
    // with the link the co-host delegated.
    let cohost = TestNode::start("cohost").await;
    let mut moderator = TestNode::start("bo").await;
    let cohost_link = invite(
        &host,
        &room,
        grant(Role::Moderator, Audience::Bound(cohost.key()), 1),
    );
    let mod_link = delegate(
        &cohost,
        &cohost_link,
        grant(Role::Moderator, Audience::Bound(moderator.key()), 0),
    );
    let view = moderator
        .node
        .join(mod_link, "bo")
        .await
        .expect("moderator joins");
    assert_eq!(
        view.state.role_of(&moderator.key()),
        Some(RoomRole::Moderator)
    );
    assert!(!view.audience, "a moderator is on the stage");
    assert_eq!(view.descriptor.title, "Book club");
    host.wait_for("bo joined", |e| is_change(e, id, joined(moderator.key())))
        .await;

    // Two listeners join the audience with the same bearer link: the host counts them as the
    // tree reports them, and nobody on the stage hears of each one.
    let listener_link = invite(&host, &room, grant(Role::Listener, Audience::Bearer, 0));
    let mut cy = TestNode::start("cy").await;
    let mut di = TestNode::start("di").await;
    let cy_view = cy
        .node
        .join(listener_link.clone(), "cy")
        .await
        .expect("cy joins");
    assert!(cy_view.audience);
    assert_eq!(
        cy_view.state.stage().len(),
        2,
        "the host's view shows the stage"
    );
    di.node
        .join(listener_link.clone(), "di")
        .await
        .expect("di joins");
    for node in [&mut host, &mut moderator] {
        node.wait_for("two listeners", |e| {
            is_change(
                e,
                id,
                |c| matches!(c, Event::Audience { listeners, .. } if *listeners >= 2),
            )
        })
        .await;
    }

    // Cy raises a hand: it goes up the tree to the host, whose view shows it to everyone. The
    // moderator brings Cy on stage; Cy steps up, and everyone sees Cy a speaker.
    let cy_key = cy.key();
    let hand = |e: &Event| matches!(e, Event::HandRaised { member, .. } if *member == cy_key);
    // Said at once; it goes up as soon as Cy is attached to the tree.
    cy.node
        .act(id, ControlBody::RaiseHand)
        .await
        .expect("raise hand");
    for node in [&mut host, &mut moderator, &mut di] {
        node.wait_for("cy's hand", |e| is_change(e, id, hand)).await;
    }
    moderator
        .node
        .act(
            id,
            ControlBody::Promote {
                target: cy_key,
                role: Role::Speaker,
            },
        )
        .await
        .expect("promote");
    for node in [&mut host, &mut cy, &mut di] {
        node.wait_for("cy promoted", |e| {
            is_change(e, id, |c| {
                matches!(c, Event::RoleChanged { member, role: RoomRole::Speaker, .. } if *member == cy_key)
            })
        })
        .await;
    }
    host.wait_for("cy on the stage", |e| is_change(e, id, joined(cy_key)))
        .await;

    // Chat from the audience reaches the stage and the audience; applause is totalled up the
    // tree and reaches everyone.
    di.node
        .act(
            id,
            ControlBody::Chat {
                text: "hello from di".into(),
            },
        )
        .await
        .expect("chat");
    di.node
        .act(
            id,
            ControlBody::Reaction {
                emoji: "👏".into()
            },
        )
        .await
        .expect("react");
    for node in [&mut host, &mut moderator, &mut cy, &mut di] {
        node.wait_for("di's chat", |e| is_change(e, id, chat("hello from di")))
            .await;
        node.wait_for("di's applause", |e| {
            is_change(e, id, |c| {
                matches!(c, Event::Reactions { reactions, .. } if reactions.iter().any(|(emoji, _)| emoji == "👏"))
            })
        })
        .await;
    }

    // A late joiner sees the same stage as the host.
    let mut ed = TestNode::start("ed").await;
    let late = ed
        .node
        .join(listener_link.clone(), "ed")
        .await
        .expect("ed joins");
    let host_view = host.node.view(id).await.expect("node").expect("in room");
    let stage = |state: &earshot_protocol::state::RoomState| {
        state
            .stage()
            .iter()
            .map(|m| (m.key, m.role(), m.display_name()))
            .collect::<Vec<_>>()
    };
    // The view the late joiner got may predate Cy's arrival on stage by a view (a second).
    if stage(&late.state) != stage(&host_view.state) {
        ed.wait_for("cy on the stage", |e| is_change(e, id, |c| matches!(c, Event::RoleChanged { member, .. } | Event::MemberJoined { member, .. } if *member == cy_key)))
            .await;
    }
    let now = ed.node.view(id).await.expect("node").expect("in room");
    assert_eq!(stage(&now.state), stage(&host_view.state));
    assert_eq!(
        now.state.stage().len(),
        3,
        "host, moderator and cy are on stage"
    );

    // The host removes Di: Di is out (the host's next view says so), the stage sees it, and
    // Di's link no longer admits anyone.
    let di_key = di.key();
    host.node
        .act(
            id,
            ControlBody::Remove {
                target: di_key,
                revoke: Vec::new(),
            },
        )
        .await
        .expect("remove");
    di.wait_for(
        "being removed",
        |e| matches!(e, Event::Closed { room, reason: CloseReason::Removed } if *room == id),
    )
    .await;
    for node in [&mut moderator, &mut cy] {
        node.wait_for("di removed", |e| {
            is_change(
                e,
                id,
                |c| matches!(c, Event::Removed { member, .. } if *member == di_key),
            )
        })
        .await;
    }
    let again = di.node.join(listener_link.clone(), "di").await;
    assert!(
        matches!(&again, Err(JoinError::Refused { refusal }) if refusal.to_string().contains("removed")),
        "{again:?}"
    );
    let stranger = TestNode::start("fay").await;
    let refused = stranger.node.join(listener_link.clone(), "fay").await;
    assert!(
        matches!(&refused, Err(JoinError::Refused { refusal }) if refusal.to_string().contains("revoked")),
        "{refused:?}"
    );
    // A fresh link still works for newcomers.
    let fresh = invite(&host, &room, grant(Role::Listener, Audience::Bearer, 0));
    stranger
        .node
        .join(fresh, "fay")
        .await
        .expect("a fresh link admits fay");

    // The host ends the room; everyone is told and leaves.
    host.node
        .act(id, ControlBody::RoomEnded)
        .await
        .expect("end");
    for node in [&mut moderator, &mut cy, &mut ed] {
        node.wait_for(
            "the end",
            |e| matches!(e, Event::Closed { room, reason: CloseReason::Ended } if *room == id),
        )
        .await;
    }
}

/// A hostile member's messages are refused by every honest node that receives them, and change
/// nothing anywhere. Each attack comes from its own troll: a peer that sends two invalid messages
/// is graylisted, and later messages from it are dropped unread.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_replayed_oversized_and_expired_messages_are_refused() {
    let mut host = TestNode::start("host").await;
    let room = host.host("Town hall", Visibility::Unlisted).await;
    let id = room.id;
    // The trolls are on the stage (the topic is the stage's); the audience is refused there
    // outright (below).
    let link = invite(&host, &room, grant(Role::Speaker, Audience::Bearer, 0));
    let mut honest = TestNode::start("honest").await;
    honest
        .node
        .join(link.clone(), "honest")
        .await
        .expect("join");

    let now = earshot_node::clock::now();
    let speaker = Authority::Capability(link.capability.clone());
    let sign = move |key: &ed25519_dalek::SigningKey, seq: u64, authority: Authority, body| {
        Envelope::sign(key, id, seq, now, authority, body)
            .expect("sign")
            .encode()
    };
    let past = Timestamp(now.as_millis() - 7_200_000);
    let expired_cap = Capability::issue(
        &host.signing,
        id,
        Grant {
            audience: Audience::Bearer,
            role: Role::Speaker,
            not_before: past,
            expires_at: past.plus_millis(60_000),
            depth: 0,
        },
        [5; 8],
    )
    .expect("issue");
    let outsider = ed25519_dalek::SigningKey::from_bytes(&[77; 32]);

    type Attack = Box<dyn Fn(&TestNode) -> Vec<u8>>;
    let attacks: Vec<(&str, Attack, &str)> = vec![
        (
            "a speaker promoting itself",
            Box::new({
                let speaker = speaker.clone();
                move |troll: &TestNode| {
                    sign(
                        &troll.signing,
                        u64::MAX / 2,
                        speaker.clone(),
                        ControlBody::Promote {
                            target: troll.key(),
                            role: Role::Moderator,
                        },
                    )
                }
            }),
            "may not promote",
        ),
        (
            "a non-member claiming to be the host",
            Box::new(move |_: &TestNode| {
                sign(&outsider, 1, Authority::Host, ControlBody::RoomEnded)
            }),
            "claims to be the host",
        ),
        (
            "an expired capability",
            Box::new({
                let expired_cap = expired_cap.clone();
                move |troll: &TestNode| {
                    sign(
                        &troll.signing,
                        u64::MAX / 2,
                        Authority::Capability(expired_cap.clone()),
                        ControlBody::Chat {
                            text: "expired".into(),
                        },
                    )
                }
            }),
            "expired at",
        ),
        (
            "an oversized message",
            Box::new({
                let speaker = speaker.clone();
                move |troll: &TestNode| {
                    let mut bytes = sign(
                        &troll.signing,
                        u64::MAX / 2,
                        speaker.clone(),
                        ControlBody::Chat { text: "x".into() },
                    );
                    bytes.resize(MAX_ENVELOPE_BYTES + 100, 0);
                    bytes
                }
            }),
            "more than the",
        ),
    ];
    for (what, attack, reason) in &attacks {
        let troll = TestNode::start("troll").await;
        troll.node.join(link.clone(), "troll").await.expect("join");
        host.wait_for("the troll", |e| is_change(e, id, joined(troll.key())))
            .await;
        troll
            .node
            .publish_raw(id, attack(&troll))
            .await
            .expect("publish");
        host.wait_for(
            what,
            |e| matches!(e, Event::Rejected { reason: r, .. } if r.contains(reason)),
        )
        .await;
        let view = host.node.view(id).await.expect("node").expect("room");
        assert_eq!(
            view.state.role_of(&troll.key()),
            Some(RoomRole::Speaker),
            "{what}"
        );
        assert!(!view.state.ended, "{what}");
    }

    // A replayed message is seen once: the replay is dropped (gossip's duplicate cache, or the
    // room's sequence window), and a marker sent after it proves delivery has caught up.
    let replayer = TestNode::start("replayer").await;
    replayer
        .node
        .join(link.clone(), "replayer")
        .await
        .expect("join");
    let once = sign(
        &replayer.signing,
        u64::MAX / 2,
        speaker.clone(),
        ControlBody::Chat {
            text: "once".into(),
        },
    );
    replayer
        .node
        .publish_raw(id, once.clone())
        .await
        .expect("publish");
    for node in [&mut host, &mut honest] {
        node.wait_for("the chat", |e| is_change(e, id, chat("once")))
            .await;
    }
    replayer
        .node
        .publish_raw(id, once)
        .await
        .expect("publish replay");
    let marker = sign(
        &replayer.signing,
        u64::MAX / 2 + 1,
        speaker,
        ControlBody::Chat {
            text: "marker".into(),
        },
    );
    replayer
        .node
        .publish_raw(id, marker)
        .await
        .expect("publish");
    for node in [&mut host, &mut honest] {
        let next = node
            .wait_for("the marker or a replay", |e| {
                is_change(
                    e,
                    id,
                    |c| matches!(c, Event::Chat { text, .. } if text == "marker" || text == "once"),
                )
            })
            .await;
        assert!(
            is_change(&next, id, chat("marker")),
            "{}: the replayed chat was accepted twice: {next:?}",
            node.name
        );
    }

    // A listener of the audience goes around the host: it follows the topic and publishes its
    // own chat there, validly signed. Refused: the audience speaks through the host.
    let listener_link = invite(&host, &room, grant(Role::Listener, Audience::Bearer, 0));
    let lurker = TestNode::start("lurker").await;
    lurker
        .node
        .join(listener_link.clone(), "lurker")
        .await
        .expect("join");
    let around = sign(
        &lurker.signing,
        u64::MAX / 2,
        Authority::Capability(listener_link.capability.clone()),
        ControlBody::Chat {
            text: "around the host".into(),
        },
    );
    lurker.node.publish_raw(id, around).await.expect("publish");
    host.wait_for(
        "the lurker's chat refused",
        |e| matches!(e, Event::Rejected { reason, .. } if reason.contains("through the host")),
    )
    .await;

    // The honest member saw none of the attacks take effect.
    let view = honest.node.view(id).await.expect("node").expect("room");
    assert!(!view.state.ended);
    assert!(
        view.state
            .present()
            .iter()
            .all(|m| m.key == host.key() || m.role() == RoomRole::Speaker),
        "nobody gained a role beyond their invite's"
    );
    assert!(
        !view.state.members.contains_key(&lurker.key()),
        "the lurker's line changed nothing"
    );
}

/// Links that cannot work fail fast with the reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_links_fail_fast_with_the_reason() {
    let host = TestNode::start("host").await;
    let room = host.host("Town hall", Visibility::Unlisted).await;
    let joiner = TestNode::start("joiner").await;

    let mut expired = grant(Role::Listener, Audience::Bearer, 0);
    expired.expires_at = Timestamp(expired.not_before.as_millis() + 1000);
    let result = joiner.node.join(invite(&host, &room, expired), "x").await;
    assert!(
        matches!(&result, Err(JoinError::Invite(e)) if e.to_string().starts_with("expired at")),
        "{result:?}"
    );

    let other = TestNode::start("other").await;
    let bound = invite(
        &host,
        &room,
        grant(Role::Listener, Audience::Bound(other.key()), 0),
    );
    let result = joiner.node.join(bound, "x").await;
    assert!(
        matches!(&result, Err(JoinError::Invite(e)) if e.to_string().contains("bound to")),
        "{result:?}"
    );

    // Forged: the "host" in the link is not who signed it.
    let mut forged = invite(&host, &room, grant(Role::Listener, Audience::Bearer, 0));
    forged.host = other.key();
    let result = joiner.node.join(forged, "x").await;
    assert!(
        matches!(&result, Err(JoinError::Invite(e)) if e.to_string().contains("not issued by the host")),
        "{result:?}"
    );

    // Unreachable: nothing listens at the link's address.
    let mut unreachable = invite(&host, &room, grant(Role::Listener, Audience::Bearer, 0));
    unreachable.bootstrap = vec!["/ip4/127.0.0.1/udp/9/quic-v1".parse().expect("addr")];
    let gone = TestNode::start("gone").await;
    let result = gone.node.join(unreachable, "x").await;
    assert!(
        matches!(
            &result,
            Err(JoinError::Unreachable | JoinError::NoAnswer(_))
        ),
        "{result:?}"
    );
}

/// Public rooms are announced on the lobby and can be joined from the announcement's link.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn public_rooms_are_listed_on_the_lobby() {
    let host = TestNode::start("host").await;
    let room = host.host("Open mic", Visibility::Public).await;
    host.host("Secret", Visibility::Unlisted).await;
    let addrs = host.node.listen_addrs().await.expect("addrs");
    let browser = TestNode::start_with("browser", addrs.clone()).await;
    let listed = browser
        .node
        .query_lobby(host.node.peer_id(), addrs)
        .await
        .expect("lobby");
    assert_eq!(listed.len(), 1, "only the public room is listed");
    assert_eq!(listed[0].descriptor.title, "Open mic");
    assert_eq!(listed[0].speakers, vec!["host".to_owned()]);
    let view = browser
        .node
        .join(listed[0].link(), "browser")
        .await
        .expect("join from the lobby");
    assert_eq!(view.descriptor.id, room.id);
    assert_eq!(view.state.role_of(&browser.key()), Some(RoomRole::Listener));
}
