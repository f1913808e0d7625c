//! The JSON form of events: what scripts read. Field names and value formats are the schema
//! the README documents; each event reads back as itself.

use earshot_protocol::state::LeaveReason;
use serde_json::{Value, json};

use super::*;

use crate::fixtures::key;

fn peer(n: u8) -> PeerId {
    key(n).to_peer_id().expect("peer id")
}

/// `event` as JSON equals `expected`, and reads back as itself.
fn check(event: Event, expected: Value) {
    let value = serde_json::to_value(&event).expect("serializes");
    assert_eq!(value, expected);
    let back: Event = serde_json::from_value(value).expect("deserializes");
    assert_eq!(back, event);
}

const ROOM: RoomId = RoomId([3; 16]);

#[test]
fn room_changes_name_people_by_peer_id_and_name() {
    let room = ROOM.to_string();
    check(
        Event::MemberLeft {
            room: ROOM,
            member: key(1),
            name: "joe".into(),
            reason: LeaveReason::TimedOut,
        },
        json!({"event": "member_left", "room": room, "member": peer(1).to_string(),
               "name": "joe", "reason": "timed_out"}),
    );
    check(
        Event::RoleChanged {
            room: ROOM,
            member: key(1),
            name: "joe".into(),
            role: RoomRole::Speaker,
            by: key(2),
            by_name: "ana".into(),
        },
        json!({"event": "role_changed", "room": room, "member": peer(1).to_string(),
               "name": "joe", "role": "speaker", "by": peer(2).to_string(), "by_name": "ana"}),
    );
    check(
        Event::Chat {
            room: ROOM,
            from: key(1),
            name: "joe".into(),
            text: "hi".into(),
            at: Timestamp(1_796_119_200_000),
        },
        json!({"event": "chat", "room": room, "from": peer(1).to_string(), "name": "joe",
               "text": "hi", "at": "2026-12-01T10:00:00Z"}),
    );
}

#[test]
fn node_and_audio_events() {
    check(
        Event::Reachability {
            status: Reachability::Private,
        },
        json!({"event": "reachability", "status": "private"}),
    );
    check(
        Event::Closed {
            room: ROOM,
            reason: CloseReason::Removed,
        },
        json!({"event": "closed", "room": ROOM.to_string(), "reason": "removed"}),
    );
    check(
        Event::Error {
            room: None,
            message: "oops".into(),
        },
        json!({"event": "error", "message": "oops"}),
    );
    let mut stats = AudioStats {
        room: ROOM,
        parent: Some(peer(1)),
        depth: Some(2),
        children: 3,
        received: 10,
        relayed: 10,
        dropped: 0,
        capacity: Some(4),
        child_cost: Some(9_000),
        not_selected: 0,
        speaking: false,
        self_muted: false,
        expected: 10,
        delivered: 9,
        played: 8,
        recovered: 1,
        concealed: 0,
        late: 0,
        skipped: 0,
        stretched: 2,
        buffer_ms: 40.0,
        latency_samples: 8,
        latency_p50_ms: Some(48),
        latency_p95_ms: None,
        audience_loss_permille: 50,
        audience_jitter_ms: None,
        studio_chunks: None,
        studio_lost: None,
        levels: Vec::new(),
        r#final: false,
    };
    let value = serde_json::to_value(Event::AudioStats(Box::new(stats.clone()))).expect("json");
    assert_eq!(value["event"], "audio_stats");
    assert_eq!(value["parent"], peer(1).to_string());
    assert_eq!(value["delivered"], 9);
    assert!(
        value.get("final").is_none(),
        "only the last report says final"
    );
    assert!(value.get("levels").is_none(), "nobody heard lately");
    stats.r#final = true;
    stats.levels = vec![SpeakerLevel {
        peer_id: PeerKey([3; 32]),
        level: 30,
    }];
    let value = serde_json::to_value(Event::AudioStats(Box::new(stats.clone()))).expect("json");
    assert_eq!(value["final"], true);
    assert_eq!(
        value["levels"],
        json!([{"peer_id": PeerKey([3; 32]).as_peer_id().to_string(), "level": 30}])
    );
    let back: Event = serde_json::from_value(value).expect("reads back");
    assert_eq!(back, Event::AudioStats(Box::new(stats)));
}

#[test]
fn internal_events_have_no_json_form() {
    let link = "earshot://join/x".to_owned();
    let _ = link;
    let event = Event::CarryRequested(Box::new(CarryRequest {
        host: peer(1),
        link: earshot_protocol::InviteLink {
            starts_at: None,
            capability: earshot_protocol::Capability::issue(
                &ed25519_dalek::SigningKey::from_bytes(&[1; 32]),
                ROOM,
                earshot_protocol::Grant {
                    audience: earshot_protocol::Audience::Bearer,
                    role: Role::Listener,
                    not_before: Timestamp(0),
                    expires_at: Timestamp(1),
                    depth: 0,
                },
                [0; 8],
            )
            .expect("capability"),
            host: key(1),
            bootstrap: Vec::new(),
        },
    }));
    assert!(serde_json::to_string(&event).is_err());
    assert!(serde_json::from_str::<Event>(r#"{"event":"carry_requested"}"#).is_err());
}

#[test]
fn the_tree_shows_the_path_down_to_this_node_and_its_children() {
    use earshot_protocol::state::RoomState;
    let host = key(0);
    let (parent, me, child) = (key(1), key(2), key(3));
    let view = crate::node::RoomView {
        descriptor: crate::fixtures::descriptor(
            &crate::fixtures::signing(0),
            ROOM,
            earshot_protocol::Visibility::Unlisted,
        ),
        state: RoomState::new(ROOM, host),
        audience: true,
        view: None,
        placement: None,
        ticket: None,
    };
    let info = crate::tree::TreeInfo {
        depth: 2,
        path: vec![parent, host],
        children: vec![child],
        size: 2,
    };
    let Event::Tree { nodes, subtree, .. } = Event::tree(ROOM, &info, &view, me) else {
        panic!("a tree");
    };
    let depths: Vec<(PeerKey, Option<u16>)> = nodes.iter().map(|n| (n.peer_id, n.depth)).collect();
    assert_eq!(
        depths,
        vec![
            (host, Some(0)),
            (parent, Some(1)),
            (me, Some(2)),
            (child, Some(3))
        ]
    );
    assert_eq!(nodes[2].parent, Some(parent));
    assert_eq!(subtree, 2);
}
