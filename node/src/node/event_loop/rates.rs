//! How fast one peer may make this node work: room-protocol requests, and gossip messages it
//! forwards. Every request and message costs signature checks on the event loop; past a peer's
//! budget, requests are answered "busy" unread and messages are ignored unverified (gossipsub
//! then neither forwards them nor blames anyone). Honest peers stay far below: a join, a few
//! attaches and pages; a room's stage of 64 chatting.

use earshot_protocol::bucket::Buckets;
use libp2p::PeerId;

/// Requests one peer may make a second, and at once.
pub(super) const REQUESTS_PER_SEC: f64 = 20.0;
pub(super) const REQUESTS_BURST: f64 = 50.0;
/// Gossip messages one peer may forward a second, and at once.
pub(super) const GOSSIP_PER_SEC: f64 = 300.0;
pub(super) const GOSSIP_BURST: f64 = 600.0;
/// Peers whose budgets are kept (see [`Buckets`]).
pub(super) const KEPT: usize = 8_192;

/// A budget per peer.
pub(super) type PeerRates = Buckets<PeerId>;

/// Each peer's budget of requests.
pub(super) fn requests() -> PeerRates {
    Buckets::new(REQUESTS_PER_SEC, REQUESTS_BURST, KEPT)
}

/// Each peer's budget of gossip messages.
pub(super) fn gossip() -> PeerRates {
    Buckets::new(GOSSIP_PER_SEC, GOSSIP_BURST, KEPT)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    #[test]
    fn a_peer_asking_as_fast_as_it_can_gets_its_budget_and_others_theirs() {
        let mut rates = requests();
        let (flooder, honest) = (PeerId::random(), PeerId::random());
        let now = Instant::now();
        let taken = (0..10_000).filter(|_| rates.take(flooder, now)).count();
        assert_eq!(taken, REQUESTS_BURST as usize);
        assert!(rates.take(honest, now), "another peer is not held up");
        let later = now + std::time::Duration::from_secs(1);
        let taken = (0..10_000).filter(|_| rates.take(flooder, later)).count();
        assert_eq!(taken, REQUESTS_PER_SEC as usize);
    }
}
