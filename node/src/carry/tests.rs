use std::time::{Duration, Instant};

use earshot_protocol::{Audience, PeerKey, Role, RoomId, Visibility};

use super::*;
use crate::fixtures::{descriptor, invite, signing};

/// A listener invite bound to a relay, from the host with key `seed`, for room `room`.
fn link(seed: u8, room: u8) -> (PeerId, String) {
    let host = signing(seed);
    let descriptor = descriptor(&host, RoomId([room; 16]), Visibility::Unlisted);
    let link = invite(
        &host,
        &descriptor,
        Role::Listener,
        Audience::Bound(PeerKey([9; 32])),
    );
    let peer = descriptor.host.to_peer_id().expect("peer id");
    (peer, link.encode())
}

#[test]
fn a_node_that_does_not_carry_refuses() {
    let mut budget = CarryBudget::new(0, None, 4);
    let (host, link) = link(1, 1);
    assert_eq!(
        budget.consider(host, &link, 0, |_| false, Instant::now()),
        Err(Refusal::NotACarrier)
    );
}

#[test]
fn a_relay_carries_up_to_its_rooms_for_their_own_hosts() {
    let now = Instant::now();
    let mut budget = CarryBudget::new(2, None, 100);
    let (host, text) = link(1, 1);
    let (other, _) = link(2, 2);
    assert_eq!(
        budget.consider(other, &text, 0, |_| false, now),
        Err(Refusal::NotTheRoomsHost)
    );
    assert!(matches!(
        budget.consider(host, "earshot://join/nonsense", 0, |_| false, now),
        Err(Refusal::BadLink { .. })
    ));
    let link = budget
        .consider(host, &text, 0, |_| false, now)
        .expect("carries");
    assert_eq!(link.capability.room, RoomId([1; 16]));
    assert_eq!(
        budget.consider(host, &text, 1, |id| *id == RoomId([1; 16]), now),
        Err(Refusal::AlreadyCarried)
    );
    assert_eq!(
        budget.consider(host, &text, 2, |_| false, now),
        Err(Refusal::CarryingTheMost { max: 2 })
    );
}

#[test]
fn the_upload_budget_is_shared_and_a_share_comes_back_when_a_join_never_completes() {
    let start = Instant::now();
    let mut budget = CarryBudget::new(16, Some(150), 100);
    let (a_host, a) = link(1, 1);
    let (b_host, b) = link(2, 2);
    let (c_host, c) = link(3, 3);
    let a_room = RoomId([1; 16]);
    let b_room = RoomId([2; 16]);
    budget.consider(a_host, &a, 0, |_| false, start).expect("a");
    // Room a is joined; b asks next and gets what a left.
    let joined_a = |id: &RoomId| *id == a_room;
    budget.consider(b_host, &b, 1, joined_a, start).expect("b");
    assert_eq!(budget.capacity_in(a_room, joined_a, start), 100);
    assert_eq!(budget.capacity_in(b_room, joined_a, start), 50);
    // Nothing is left for a third room.
    assert_eq!(
        budget.consider(c_host, &c, 2, |id| *id == a_room || *id == b_room, start),
        Err(Refusal::NoUploadLeft)
    );
    // b never completed its join: after PROMISE_HELD_FOR its share comes back.
    let later = start + PROMISE_HELD_FOR + Duration::from_secs(1);
    budget
        .consider(c_host, &c, 1, joined_a, later)
        .expect("c gets b's share");
    // A room that is no longer carried gives its share back at once.
    budget.forget(&a_room);
    assert_eq!(budget.capacity_in(b_room, |_| true, later), 100);
}

#[test]
fn without_a_budget_a_room_gets_the_per_room_limit() {
    let mut budget = CarryBudget::new(0, None, 4);
    assert_eq!(
        budget.capacity_in(RoomId([1; 16]), |_| true, Instant::now()),
        4
    );
}
