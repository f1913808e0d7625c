use libp2p::multiaddr::Protocol;

use super::*;
use crate::reachability::Reachability;

fn relay() -> (PeerId, Multiaddr) {
    let peer = PeerId::random();
    let addr: Multiaddr = "/ip4/10.0.0.1/udp/4001/quic-v1".parse().expect("addr");
    (peer, addr.with(Protocol::P2p(peer)))
}

#[test]
fn dials_are_answered_when_the_connection_comes_up_or_fails() {
    let mut peers = Peers::new(Mode::Public);
    let (peer, _) = relay();
    let (reply, mut answer) = oneshot::channel();
    let effects = peers.dial(peer, Vec::new(), reply);
    assert!(matches!(&effects[..], [Effect::Dial { peer: p, .. }] if *p == peer));
    assert!(answer.try_recv().is_err(), "not yet");
    peers.connected(peer, ConnectionId::new_unchecked(1), false, None);
    assert!(matches!(answer.try_recv(), Ok(Ok(()))));
    assert!(peers.is_connected(&peer));
    // Connected already: answered at once, nothing to dial.
    let (reply, mut answer) = oneshot::channel();
    assert!(peers.dial(peer, Vec::new(), reply).is_empty());
    assert!(matches!(answer.try_recv(), Ok(Ok(()))));
    // Another peer fails.
    let (other, _) = relay();
    let (reply, mut answer) = oneshot::channel();
    peers.dial(other, Vec::new(), reply);
    peers.dial_failed(other, "refused".into());
    assert!(matches!(
        answer.try_recv(),
        Ok(Err(DialError::Failed { .. }))
    ));
    assert_eq!(peers.counts(), (1, 1));
    peers.closed(peer, ConnectionId::new_unchecked(1), 0, Instant::now());
    assert_eq!(peers.counts(), (0, 0));
    assert!(!peers.is_connected(&peer));
}

#[test]
fn a_hole_punched_retires_the_relayed_connection_a_moment_later() {
    let mut peers = Peers::new(Mode::Public);
    let (peer, _) = relay();
    let relayed = ConnectionId::new_unchecked(7);
    peers.connected(peer, relayed, true, None);
    peers.connected(peer, ConnectionId::new_unchecked(8), false, None);
    let now = Instant::now();
    assert!(peers.direct_to(&peer));
    let effects = peers.hole_punched(peer, now);
    assert!(matches!(
        &effects[..],
        [Effect::Emit(Event::DirectConnection { .. })]
    ));
    assert!(peers.tick(now).is_empty());
    let effects = peers.tick(now + RETIRE_RELAYED_AFTER);
    assert!(matches!(&effects[..], [Effect::CloseConnection(c)] if *c == relayed));
    assert!(peers.tick(now + RETIRE_RELAYED_AFTER * 2).is_empty());
    // Until the relayed one has closed, a stream on it may still be: not moved yet.
    let later = now + RETIRE_RELAYED_AFTER;
    assert_eq!(peers.moving(&peer, later), Some(false));
    // Closed, the direct one up: moved, for a moment.
    peers.closed(peer, relayed, 1, later);
    assert!(peers.direct_to(&peer));
    assert_eq!(peers.moving(&peer, later), Some(true));
    assert_eq!(peers.moving(&peer, later + MOVED_LATELY), None);
    peers.closed(peer, ConnectionId::new_unchecked(8), 0, later);
    assert!(!peers.direct_to(&peer));
    assert_eq!(peers.moving(&peer, later), None);
    // A peer reached through a relay only has not moved, nor one reached directly only.
    let (other, _) = relay();
    peers.connected(other, ConnectionId::new_unchecked(9), true, None);
    assert_eq!(peers.moving(&other, later), None);
    let (third, _) = relay();
    peers.connected(third, ConnectionId::new_unchecked(10), false, None);
    assert_eq!(peers.moving(&third, later), None);
}

#[test]
fn a_private_node_reserves_on_relays_identify_reveals() {
    let mut peers = Peers::new(Mode::Private);
    let now = Instant::now();
    let (peer, addr) = relay();
    peers.connected(
        peer,
        ConnectionId::new_unchecked(1),
        false,
        Some(addr.clone()),
    );
    let effects = peers.identified(peer, vec![addr], true, now);
    let reserve = effects
        .iter()
        .find_map(|effect| match effect {
            Effect::Reserve { relay, addr } => Some((*relay, addr.clone())),
            _ => None,
        })
        .expect("a reservation asked for");
    assert_eq!(reserve.0, peer);
    assert!(earshot_protocol::addr::is_relayed(&reserve.1));
    // The relay drops the reservation: it backs off (nothing more to ask of it now).
    let listener = ListenerId::next();
    peers.reserving(listener, peer);
    let effects = peers.listener_closed(listener, now);
    assert!(!effects.iter().any(|e| matches!(e, Effect::Reserve { .. })));
}

#[test]
fn autonat_verdicts_are_said() {
    let mut peers = Peers::new(Mode::Auto);
    let now = Instant::now();
    let effects = peers.probed(true, now);
    assert!(effects.iter().any(|e| matches!(
        e,
        Effect::Emit(Event::Reachability {
            status: Reachability::Public
        })
    )));
}

#[test]
fn listen_addresses_of_peers_come_and_gone_are_not_kept_for_ever() {
    let now = Instant::now();
    let mut peers = Peers::new(crate::reachability::Mode::Public);
    let (stays, addr) = relay();
    peers.connected(stays, ConnectionId::new_unchecked(0), false, None);
    let _ = peers.identified(stays, vec![addr], false, now);
    for i in 1..=MAX_KNOWN_ADDRS + 1 {
        let (peer, addr) = relay();
        let connection = ConnectionId::new_unchecked(i);
        peers.connected(peer, connection, false, None);
        let _ = peers.identified(peer, vec![addr], false, now);
        peers.closed(peer, connection, 0, now);
    }
    assert!(peers.addrs.len() <= MAX_KNOWN_ADDRS);
    assert!(
        peers.addrs_of(&stays).is_some(),
        "a connected peer's are kept"
    );
}
