//! How fast one peer may make this node work: room-protocol requests, and gossip messages it
//! forwards. Every request and message costs signature checks on the event loop; past a peer's
//! budget, requests are answered "busy" unread and messages are ignored unverified (gossipsub
//! then neither forwards them nor blames anyone). Honest peers stay far below: a join, a few
//! attaches and pages; a room's stage of 64 chatting.

use std::collections::HashMap;
use std::time::Instant;

use libp2p::PeerId;

/// Requests one peer may make a second, and at once.
pub(super) const REQUESTS_PER_SEC: f64 = 20.0;
pub(super) const REQUESTS_BURST: f64 = 50.0;
/// Gossip messages one peer may forward a second, and at once.
pub(super) const GOSSIP_PER_SEC: f64 = 300.0;
pub(super) const GOSSIP_BURST: f64 = 600.0;
/// Peers whose budgets are kept (past it, those with a full budget are forgotten).
const KEPT: usize = 8_192;

/// A token bucket per peer.
#[derive(Debug)]
pub(super) struct PeerRates {
    per_sec: f64,
    burst: f64,
    peers: HashMap<PeerId, (f64, Instant)>,
}

impl PeerRates {
    pub(super) fn new(per_sec: f64, burst: f64) -> Self {
        Self {
            per_sec,
            burst,
            peers: HashMap::new(),
        }
    }

    /// Whether `peer` may have one more now; takes it if so.
    pub(super) fn take(&mut self, peer: PeerId, now: Instant) -> bool {
        if self.peers.len() >= KEPT {
            let (per_sec, burst) = (self.per_sec, self.burst);
            self.peers.retain(|_, (tokens, at)| {
                *tokens + now.saturating_duration_since(*at).as_secs_f64() * per_sec < burst
            });
        }
        let (tokens, at) = self.peers.entry(peer).or_insert((self.burst, now));
        *tokens = (*tokens + now.saturating_duration_since(*at).as_secs_f64() * self.per_sec)
            .min(self.burst);
        *at = now;
        if *tokens < 1.0 {
            return false;
        }
        *tokens -= 1.0;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_peer_asking_as_fast_as_it_can_gets_its_budget_and_others_theirs() {
        let mut rates = PeerRates::new(REQUESTS_PER_SEC, REQUESTS_BURST);
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
