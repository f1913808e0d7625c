use earshot_protocol::state::LeaveReason;

use super::*;
use crate::reachability::Mode;

const ROOM: RoomId = RoomId([1; 16]);

use crate::fixtures::key;

fn ask(member: PeerKey, capacity: u16, lost: Option<PeerKey>) -> Ask {
    Ask {
        room: ROOM,
        member,
        capacity,
        lost,
        rtt_ms: 10,
    }
}

#[test]
fn members_fill_the_host_then_each_other() {
    let host = key(0);
    let mut placement = Placement::new(host, 1);
    assert_eq!(placement.place(ask(key(1), 2, None)), Err(Refusal::NoTree));
    placement.open(ROOM);
    assert_eq!(placement.place(ask(key(1), 2, None)), Ok(Some((host, 1))));
    assert_eq!(placement.place(ask(key(2), 2, None)), Ok(Some((key(1), 2))));
    // A member that feeds nobody, in a full tree, waits.
    let mut tiny = Placement::new(host, 0);
    tiny.open(ROOM);
    assert_eq!(tiny.place(ask(key(3), 0, None)), Ok(None));
    let layout = placement.layout(&ROOM).expect("hosted");
    assert_eq!(layout.len(), 3);
}

#[test]
fn a_reported_parent_leaves_the_tree_and_members_who_leave_the_room_too() {
    let host = key(0);
    let mut placement = Placement::new(host, 1);
    placement.open(ROOM);
    placement.place(ask(key(1), 1, None)).expect("placed");
    placement.place(ask(key(2), 1, None)).expect("placed");
    // key(2) reports its parent key(1) silent: key(1) is out, key(2) takes the host's slot.
    assert_eq!(
        placement.place(ask(key(2), 1, Some(key(1)))),
        Ok(Some((host, 1)))
    );
    // Only the parent the host gave can be reported: key(1) cannot report the host.
    assert_eq!(
        placement.place(ask(key(1), 1, Some(host))),
        Ok(Some((key(2), 2)))
    );
    placement.changed(
        &ROOM,
        &[RoomChange::MemberLeft {
            member: key(2),
            reason: LeaveReason::Left,
        }],
    );
    let layout = placement.layout(&ROOM).expect("hosted");
    assert!(!layout.iter().any(|(member, _, _)| *member == key(2)));
    placement.forget(&ROOM);
    assert!(placement.layout(&ROOM).is_none());
}

#[test]
fn answers_carry_the_parents_addresses_and_read_back() {
    let host = key(0);
    let mut placement = Placement::new(host, 1);
    placement.open(ROOM);
    let own: Vec<Multiaddr> = vec!["/ip4/127.0.0.1/udp/1/quic-v1".parse().expect("addr")];
    let peers = Peers::new(Mode::Public);
    let answer = placement.answer(ask(key(1), 0, None), &own, &peers);
    let parent = read_answer(answer).expect("a parent");
    assert_eq!(parent.peer, host.to_peer_id().expect("peer id"));
    assert_eq!(parent.addrs, own);
    assert_eq!(parent.depth, 1);
    // The host's only slot is taken by a member that feeds nobody: the next one waits.
    assert!(matches!(
        read_answer(placement.answer(ask(key(2), 0, None), &own, &peers)),
        Err(AttachError::Waiting)
    ));
    assert!(matches!(
        read_answer(RoomResponse::Refused {
            refusal: Refusal::NotPresent
        }),
        Err(AttachError::Refused(Refusal::NotPresent))
    ));
    assert!(matches!(
        read_answer(RoomResponse::Carrying),
        Err(AttachError::BadAnswer(_))
    ));
}
