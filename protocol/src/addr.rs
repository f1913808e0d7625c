//! Multiaddrs: on the wire (raw bytes inside postcard messages, with limits), and the few
//! questions every part of Earshot asks of an address (can a peer dial it, does it go through a
//! circuit relay, which peer does it name). One home, so that the limits and the rules agree.

use multiaddr::{Multiaddr, PeerId, Protocol};
use serde_bytes::ByteBuf;

use crate::codec::DecodeError;

/// `addrs` as raw bytes for a wire message: those longer than `max_len` bytes are left out
/// (a decoder would refuse them, and the message with them), and at most `max_count` are kept.
pub fn to_wire<'a>(
    addrs: impl IntoIterator<Item = &'a Multiaddr>,
    max_len: usize,
    max_count: usize,
) -> Vec<ByteBuf> {
    addrs
        .into_iter()
        .filter(|addr| addr.len() <= max_len)
        .take(max_count)
        .map(|addr| ByteBuf::from(addr.to_vec()))
        .collect()
}

/// Reads addresses written by [`to_wire`], refusing the message if it breaks the limits or
/// holds bytes that are not a multiaddr; `field` names them in the error.
pub fn from_wire(
    raw: &[ByteBuf],
    field: &'static str,
    max_len: usize,
    max_count: usize,
) -> Result<Vec<Multiaddr>, DecodeError> {
    if raw.len() > max_count {
        return Err(DecodeError::TooManyAddresses {
            count: raw.len(),
            max: max_count,
        });
    }
    raw.iter()
        .map(|bytes| {
            if bytes.len() > max_len {
                return Err(DecodeError::FieldTooLong {
                    field,
                    len: bytes.len(),
                    max: max_len,
                });
            }
            Multiaddr::try_from(bytes.to_vec()).map_err(|_| DecodeError::BadAddress)
        })
        .collect()
}

/// The addresses among `raw` that parse, skipping the others: for hints, where one bad address
/// should not cost the good ones.
pub fn from_wire_lossy(raw: &[ByteBuf]) -> Vec<Multiaddr> {
    raw.iter()
        .filter_map(|bytes| Multiaddr::try_from(bytes.to_vec()).ok())
        .collect()
}

/// Whether a peer could dial `addr`: not an unspecified IP (`0.0.0.0`, `::`), which a node
/// listens on but nobody can reach.
pub fn is_dialable(addr: &Multiaddr) -> bool {
    !addr.iter().any(|protocol| match protocol {
        Protocol::Ip4(ip) => ip.is_unspecified(),
        Protocol::Ip6(ip) => ip.is_unspecified(),
        _ => false,
    })
}

/// Whether `addr` goes through a circuit relay.
pub fn is_relayed(addr: &Multiaddr) -> bool {
    addr.iter().any(|p| matches!(p, Protocol::P2pCircuit))
}

/// The peer `addr` ends with (`…/p2p/PEER`).
pub fn peer_of(addr: &Multiaddr) -> Option<PeerId> {
    match addr.iter().last() {
        Some(Protocol::P2p(peer)) => Some(peer),
        _ => None,
    }
}

/// `addr` ending in `/p2p/<peer>` (one that names a peer already, say a relayed address
/// `…/p2p-circuit/p2p/<peer>`, is returned as it is).
pub fn with_peer(addr: Multiaddr, peer: PeerId) -> Multiaddr {
    if peer_of(&addr).is_some() {
        addr
    } else {
        addr.with(Protocol::P2p(peer))
    }
}

/// The relays named in relayed addresses: the part before `/p2p-circuit` of each, when it ends
/// in the relay's `/p2p/RELAY`.
pub fn relays_in(addrs: &[Multiaddr]) -> Vec<Multiaddr> {
    addrs
        .iter()
        .filter_map(|addr| {
            let mut relay = Multiaddr::empty();
            for protocol in addr.iter() {
                if matches!(protocol, Protocol::P2pCircuit) {
                    return peer_of(&relay).is_some().then_some(relay);
                }
                relay.push(protocol);
            }
            None
        })
        .collect()
}

/// The relayed listen address for a relay's address (`…/p2p/RELAY` → `…/p2p/RELAY/p2p-circuit`),
/// or `None` when it does not end in the relay's peer id.
pub fn circuit_through(relay: &Multiaddr) -> Option<Multiaddr> {
    peer_of(relay).map(|_| relay.clone().with(Protocol::P2pCircuit))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(text: &str) -> Multiaddr {
        text.parse().expect("a multiaddr")
    }

    const PEER: &str = "12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN";

    #[test]
    fn wire_round_trip_and_limits() {
        let addrs = vec![
            addr("/ip4/127.0.0.1/udp/4001/quic-v1"),
            addr("/ip6/::1/tcp/4001"),
            addr(&format!("/dns4/{}/tcp/1", "a".repeat(200))),
        ];
        let wire = to_wire(&addrs, 64, 8);
        assert_eq!(wire.len(), 2, "the long one is left out");
        assert_eq!(from_wire(&wire, "test", 64, 8), Ok(addrs[..2].to_vec()));
        assert_eq!(to_wire(&addrs, 64, 1).len(), 1);
        assert_eq!(
            from_wire(&wire, "test", 64, 1),
            Err(DecodeError::TooManyAddresses { count: 2, max: 1 })
        );
        assert!(matches!(
            from_wire(&wire, "test", 4, 8),
            Err(DecodeError::FieldTooLong { field: "test", .. })
        ));
        let garbage = vec![ByteBuf::from(vec![0xff, 0xff]), wire[0].clone()];
        assert_eq!(
            from_wire(&garbage, "test", 64, 8),
            Err(DecodeError::BadAddress)
        );
        assert_eq!(from_wire_lossy(&garbage), vec![addrs[0].clone()]);
    }

    #[test]
    fn unspecified_addresses_are_not_dialable() {
        assert!(is_dialable(&addr("/ip4/127.0.0.1/udp/1/quic-v1")));
        assert!(is_dialable(&addr("/ip6/::1/tcp/1")));
        assert!(!is_dialable(&addr("/ip4/0.0.0.0/udp/1/quic-v1")));
        assert!(!is_dialable(&addr("/ip6/::/tcp/1")));
    }

    #[test]
    fn peers_relays_and_circuits() {
        let relay = addr(&format!("/ip4/10.0.0.1/udp/4001/quic-v1/p2p/{PEER}"));
        let circuit = circuit_through(&relay).expect("names a peer");
        assert!(is_relayed(&circuit) && !is_relayed(&relay));
        assert_eq!(
            relays_in(std::slice::from_ref(&circuit)),
            vec![relay.clone()]
        );
        assert_eq!(relays_in(std::slice::from_ref(&relay)), vec![]);
        // A circuit address without the relay's id names no relay.
        assert_eq!(
            relays_in(&[addr("/ip4/10.0.0.1/udp/9/quic-v1/p2p-circuit")]),
            vec![]
        );
        assert_eq!(circuit_through(&addr("/ip4/10.0.0.1/tcp/1")), None);
        let peer: PeerId = PEER.parse().expect("peer id");
        assert_eq!(peer_of(&relay), Some(peer));
        assert_eq!(with_peer(relay.clone(), peer), relay);
        assert_eq!(
            with_peer(addr("/ip4/10.0.0.1/tcp/1"), peer),
            addr(&format!("/ip4/10.0.0.1/tcp/1/p2p/{PEER}"))
        );
    }
}
