use super::*;
use libp2p::multiaddr::Protocol;

fn relay_addr(port: u16) -> (PeerId, Multiaddr) {
    let peer = PeerId::random();
    let addr: Multiaddr = format!("/ip4/127.0.0.1/udp/{port}/quic-v1")
        .parse()
        .expect("valid");
    (peer, addr.with(Protocol::P2p(peer)))
}

fn reserved_on(actions: &[Action]) -> Vec<PeerId> {
    actions
        .iter()
        .filter_map(|action| match action {
            Action::Reserve { relay, .. } => Some(*relay),
            _ => None,
        })
        .collect()
}

#[test]
fn a_private_node_reserves_on_two_relays_at_once() {
    let now = Instant::now();
    let mut reach = Planner::new(Mode::Private);
    let (a, a_addr) = relay_addr(1);
    let (b, b_addr) = relay_addr(2);
    let (c, c_addr) = relay_addr(3);
    let first = reach.configured(&a_addr, now);
    assert_eq!(first[0], Action::Dial(a_addr.clone()));
    assert_eq!(reserved_on(&first), vec![a]);
    let Action::Reserve { addr, .. } = &first[1] else {
        panic!("expected a reservation, got {first:?}");
    };
    assert_eq!(*addr, a_addr.clone().with(Protocol::P2pCircuit));
    assert_eq!(reserved_on(&reach.serves_relay(b, &b_addr, now)), vec![b]);
    // Two are enough.
    assert!(reserved_on(&reach.serves_relay(c, &c_addr, now)).is_empty());
    // One lost: the third takes its place; the lost one is left alone for a while.
    assert_eq!(reserved_on(&reach.lost(a, now)), vec![c]);
    assert_eq!(reach.reserved().collect::<Vec<_>>(), vec![b, c]);
    assert!(reserved_on(&reach.lost(b, now)).is_empty());
    assert_eq!(
        reserved_on(&reach.tick(now + RELAY_BACKOFF)),
        vec![a],
        "a relay out of backoff is tried again"
    );
}

#[test]
fn a_public_node_never_reserves() {
    let now = Instant::now();
    let mut reach = Planner::new(Mode::Public);
    let (a, a_addr) = relay_addr(1);
    assert!(reserved_on(&reach.serves_relay(a, &a_addr, now)).is_empty());
    assert!(reach.probed(false, now).is_empty());
    assert!(reserved_on(&reach.tick(now + VERDICT_WAIT * 2)).is_empty());
    assert_eq!(reach.verdict(), Reachability::Public);
}

#[test]
fn auto_reserves_when_autonat_says_unreachable() {
    let now = Instant::now();
    let mut reach = Planner::new(Mode::Auto);
    let (a, a_addr) = relay_addr(1);
    assert!(reserved_on(&reach.serves_relay(a, &a_addr, now)).is_empty());
    assert_eq!(reach.verdict(), Reachability::Unknown);
    assert!(
        reach.probed(false, now).is_empty(),
        "another address may work"
    );
    assert!(reach.tick(now + PROBE_GRACE / 2).is_empty());
    let actions = reach.tick(now + PROBE_GRACE);
    assert_eq!(actions[0], Action::Verdict(Reachability::Private));
    assert_eq!(reserved_on(&actions), vec![a]);
    // Confirmed later (another address): public, the reservation is kept.
    assert_eq!(
        reach.probed(true, now),
        vec![Action::Verdict(Reachability::Public)]
    );
    assert_eq!(reach.reserved().count(), 1);
}

#[test]
fn auto_stays_direct_when_autonat_confirms() {
    let now = Instant::now();
    let mut reach = Planner::new(Mode::Auto);
    let (a, a_addr) = relay_addr(1);
    reach.serves_relay(a, &a_addr, now);
    assert_eq!(
        reach.probed(true, now),
        vec![Action::Verdict(Reachability::Public)]
    );
    // A failed probe of another address does not undo a confirmed one.
    assert!(reach.probed(false, now).is_empty());
    assert!(reach.tick(now + VERDICT_WAIT).is_empty());
}

#[test]
fn a_success_within_the_grace_after_a_failure_is_public() {
    let now = Instant::now();
    let mut reach = Planner::new(Mode::Auto);
    let (a, a_addr) = relay_addr(1);
    reach.serves_relay(a, &a_addr, now);
    assert!(reach.probed(false, now).is_empty());
    assert_eq!(
        reach.probed(true, now + PROBE_GRACE / 2),
        vec![Action::Verdict(Reachability::Public)]
    );
    assert!(reach.tick(now + PROBE_GRACE).is_empty());
    assert_eq!(reach.reserved().count(), 0);
}

#[test]
fn a_relay_listened_through_already_is_not_asked_twice() {
    let now = Instant::now();
    let mut reach = Planner::new(Mode::Private);
    let (a, a_addr) = relay_addr(1);
    let (b, b_addr) = relay_addr(2);
    reach.listening_via(&a_addr, now);
    assert_eq!(
        reserved_on(&reach.serves_relay(a, &a_addr, now)),
        Vec::<PeerId>::new()
    );
    assert_eq!(reserved_on(&reach.serves_relay(b, &b_addr, now)), vec![b]);
}

#[test]
fn auto_without_a_verdict_falls_back_to_the_relay() {
    let now = Instant::now();
    let mut reach = Planner::new(Mode::Auto);
    let (a, a_addr) = relay_addr(1);
    reach.serves_relay(a, &a_addr, now);
    assert!(reach.tick(now + VERDICT_WAIT / 2).is_empty());
    let actions = reach.tick(now + VERDICT_WAIT);
    assert_eq!(actions[0], Action::Verdict(Reachability::Private));
    assert_eq!(reserved_on(&actions), vec![a]);
}

#[test]
fn relayed_connections_do_not_name_relays() {
    let now = Instant::now();
    let mut reach = Planner::new(Mode::Private);
    let (_, a_addr) = relay_addr(1);
    let relayed = a_addr.with(Protocol::P2pCircuit);
    assert!(
        reach
            .serves_relay(PeerId::random(), &relayed, now)
            .is_empty()
    );
    assert_eq!(reach.reserved().count(), 0);
}

#[test]
fn modes_parse_and_print() {
    for mode in [Mode::Auto, Mode::Public, Mode::Private] {
        assert_eq!(mode.as_str().parse::<Mode>(), Ok(mode));
    }
    assert!("sometimes".parse::<Mode>().is_err());
}

#[test]
fn a_relay_named_by_a_link_is_not_dialled_again() {
    let now = Instant::now();
    let mut reach = Planner::new(Mode::Private);
    let (a, a_addr) = relay_addr(1);
    let actions = reach.named(&a_addr, now);
    assert!(
        !actions.iter().any(|a| matches!(a, Action::Dial(_))),
        "{actions:?}"
    );
    assert_eq!(reserved_on(&actions), vec![a]);
    assert!(reach.configured(&a_addr, now).is_empty(), "known already");
}

#[test]
fn ten_thousand_peers_saying_they_relay_are_not_all_taken_as_candidates() {
    let now = Instant::now();
    let mut reach = Planner::new(Mode::Public);
    for port in 0..10_000u16 {
        let (peer, addr) = relay_addr(port);
        let _ = reach.serves_relay(peer, &addr, now);
    }
    assert_eq!(reach.relays.len(), MAX_RELAY_CANDIDATES);
    // A relay the configuration or a link names is still taken.
    let (configured, addr) = relay_addr(20_000);
    let _ = reach.configured(&addr, now);
    assert!(reach.relays.contains_key(&configured));
}
