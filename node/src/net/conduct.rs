//! Peers that misbehave on streams are disconnected and kept out for a while.
//!
//! The limits elsewhere refuse a stream at bounded cost each: no hello in 5 s, garbage, a studio
//! stream from someone who is not a speaker here. But a peer that opens such streams as fast as
//! it can, writing into each until it is closed, keeps the node decrypting and refusing for as
//! long as its connection stands. Here the audio plane reports each stream it refused for what
//! the peer did ([`Conduct::refused`]); a peer refused faster than [`REFUSED_PER_SEC`] (after a
//! burst of [`REFUSED_BURST`]), or caught flooding outright ([`Conduct::block`]), is
//! disconnected and its connections refused for [`BLOCKED_FOR`]. An honest node is refused a
//! stream now and then (a speaker muted a moment ago retries every 2 s); it never comes near.
//!
//! The shared [`Conduct`] is the audio plane's handle; [`ConductBehaviour`] is its part in the
//! swarm (it closes the connections and refuses new ones, and tells the event loop).

use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use earshot_protocol::bucket::Buckets;
use libp2p::core::Endpoint;
use libp2p::core::transport::PortUse;
use libp2p::swarm::{
    CloseConnection, ConnectionDenied, ConnectionId, FromSwarm, NetworkBehaviour, THandler,
    THandlerInEvent, THandlerOutEvent, ToSwarm, dummy,
};
use libp2p::{Multiaddr, PeerId};
use parking_lot::Mutex;

/// Streams refused for what a peer did, a second, over time…
pub const REFUSED_PER_SEC: f64 = 1.0;
/// … and at once.
pub const REFUSED_BURST: f64 = 16.0;
/// How long a peer caught is kept out.
pub const BLOCKED_FOR: Duration = Duration::from_secs(600);
/// Peers kept out at once (past it, the one blocked longest ago is let go first).
const MAX_BLOCKED: usize = 4_096;
/// Peers whose refusals are counted (see [`Buckets`]).
const COUNTED: usize = 16_384;

/// A peer disconnected and kept out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Blocked {
    pub peer: PeerId,
    pub reason: String,
}

#[derive(Debug)]
struct Inner {
    refused: Buckets<PeerId>,
    blocked: HashMap<PeerId, Instant>,
    order: VecDeque<(PeerId, Instant)>,
    /// Blocked and not yet disconnected.
    to_close: VecDeque<PeerId>,
    /// Blocked and not yet told to the event loop.
    news: VecDeque<Blocked>,
    waker: Option<Waker>,
}

/// The node's record of peers' conduct on streams (cheap to clone: one shared record).
#[derive(Debug, Clone)]
pub struct Conduct(Arc<Mutex<Inner>>);

impl Default for Conduct {
    fn default() -> Self {
        Self(Arc::new(Mutex::new(Inner {
            refused: Buckets::new(REFUSED_PER_SEC, REFUSED_BURST, COUNTED),
            blocked: HashMap::new(),
            order: VecDeque::new(),
            to_close: VecDeque::new(),
            news: VecDeque::new(),
            waker: None,
        })))
    }
}

impl Conduct {
    /// A stream of `peer`'s was refused for what it did (`why`); too many too fast and it is
    /// blocked. Whether it is blocked now.
    pub fn refused(&self, peer: PeerId, why: &str) -> bool {
        self.refused_at(peer, why, Instant::now())
    }

    fn refused_at(&self, peer: PeerId, why: &str, now: Instant) -> bool {
        let within = self.0.lock().refused.take(peer, now);
        if within {
            return self.is_blocked_at(&peer, now);
        }
        self.block_at(
            peer,
            &format!("streams refused faster than {REFUSED_PER_SEC} a second (the last: {why})"),
            now,
        );
        true
    }

    /// `peer` was caught flooding: disconnected and kept out at once.
    pub fn block(&self, peer: PeerId, reason: &str) {
        self.block_at(peer, reason, Instant::now());
    }

    fn block_at(&self, peer: PeerId, reason: &str, now: Instant) {
        let mut inner = self.0.lock();
        if inner
            .blocked
            .get(&peer)
            .is_some_and(|at| now.saturating_duration_since(*at) < BLOCKED_FOR)
        {
            return;
        }
        inner.blocked.insert(peer, now);
        inner.order.push_back((peer, now));
        while inner.blocked.len() > MAX_BLOCKED || inner.order.len() > 2 * MAX_BLOCKED {
            let Some((old, at)) = inner.order.pop_front() else {
                break;
            };
            if inner.blocked.get(&old) == Some(&at) {
                inner.blocked.remove(&old);
            }
        }
        inner.to_close.push_back(peer);
        inner.news.push_back(Blocked {
            peer,
            reason: reason.to_owned(),
        });
        if let Some(waker) = inner.waker.take() {
            waker.wake();
        }
    }

    /// Whether `peer` is kept out now.
    pub fn is_blocked(&self, peer: &PeerId) -> bool {
        self.is_blocked_at(peer, Instant::now())
    }

    fn is_blocked_at(&self, peer: &PeerId, now: Instant) -> bool {
        let mut inner = self.0.lock();
        match inner.blocked.get(peer) {
            Some(at) if now.saturating_duration_since(*at) < BLOCKED_FOR => true,
            Some(_) => {
                inner.blocked.remove(peer);
                false
            }
            None => false,
        }
    }

    /// Its part in the swarm.
    pub fn behaviour(&self) -> ConductBehaviour {
        ConductBehaviour {
            conduct: self.clone(),
        }
    }
}

/// Why a blocked peer's connection is refused.
#[derive(Debug, thiserror::Error)]
#[error("this peer is kept out for misbehaving on its streams")]
pub struct KeptOut;

/// Closes the connections of peers blocked, refuses their new ones, and tells the event loop.
#[derive(Debug)]
pub struct ConductBehaviour {
    conduct: Conduct,
}

impl ConductBehaviour {
    /// The record it keeps, for the audio plane to report to.
    pub fn conduct(&self) -> Conduct {
        self.conduct.clone()
    }

    fn admit(&self, peer: &PeerId) -> Result<THandler<Self>, ConnectionDenied> {
        if self.conduct.is_blocked(peer) {
            return Err(ConnectionDenied::new(KeptOut));
        }
        Ok(dummy::ConnectionHandler)
    }
}

impl NetworkBehaviour for ConductBehaviour {
    type ConnectionHandler = dummy::ConnectionHandler;
    type ToSwarm = Blocked;

    fn handle_established_inbound_connection(
        &mut self,
        _id: ConnectionId,
        peer: PeerId,
        _local: &Multiaddr,
        _remote: &Multiaddr,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        self.admit(&peer)
    }

    fn handle_established_outbound_connection(
        &mut self,
        _id: ConnectionId,
        peer: PeerId,
        _addr: &Multiaddr,
        _role: Endpoint,
        _port_use: PortUse,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        self.admit(&peer)
    }

    fn on_swarm_event(&mut self, _event: FromSwarm) {}

    fn on_connection_handler_event(
        &mut self,
        _peer: PeerId,
        _id: ConnectionId,
        event: THandlerOutEvent<Self>,
    ) {
        let _: Infallible = event;
    }

    fn poll(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<ToSwarm<Self::ToSwarm, THandlerInEvent<Self>>> {
        let mut inner = self.conduct.0.lock();
        if let Some(peer_id) = inner.to_close.pop_front() {
            return Poll::Ready(ToSwarm::CloseConnection {
                peer_id,
                connection: CloseConnection::All,
            });
        }
        if let Some(news) = inner.news.pop_front() {
            return Poll::Ready(ToSwarm::GenerateEvent(news));
        }
        inner.waker = Some(cx.waker().clone());
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_peer_refused_faster_than_its_budget_is_kept_out_and_honest_retries_never_are() {
        let conduct = Conduct::default();
        let (flooder, honest) = (PeerId::random(), PeerId::random());
        let start = Instant::now();
        // The honest peer retries every 2 s for ten minutes; the flooder opens ten streams a
        // second.
        let mut blocked_after = None;
        for tenth in 0..6_000u64 {
            let now = start + Duration::from_millis(tenth * 100);
            if tenth % 20 == 0 {
                assert!(!conduct.refused_at(honest, "not a speaker here", now));
            }
            if conduct.refused_at(flooder, "no hello", now) && blocked_after.is_none() {
                blocked_after = Some(tenth);
            }
        }
        // Sixteen at once, then one a second: caught within two seconds.
        let blocked_after = blocked_after.expect("the flooder was blocked");
        assert!(blocked_after <= 20, "after {blocked_after} tenths");
        assert!(conduct.is_blocked(&flooder));
        assert!(!conduct.is_blocked(&honest));
        // Once, however often it goes on.
        let news = conduct.0.lock().news.len();
        assert_eq!(news, 1);
        // Kept out for BLOCKED_FOR, then let back.
        let later = start + BLOCKED_FOR + Duration::from_secs(5);
        assert!(!conduct.is_blocked_at(&flooder, later));
    }

    #[test]
    fn a_peer_caught_flooding_is_kept_out_at_once_and_the_record_stays_bounded() {
        let conduct = Conduct::default();
        let peer = PeerId::random();
        conduct.block(peer, "a studio stream far over its budget");
        assert!(conduct.is_blocked(&peer));
        for _ in 0..MAX_BLOCKED + 100 {
            conduct.block(PeerId::random(), "flood");
        }
        assert!(conduct.0.lock().blocked.len() <= MAX_BLOCKED);
        // The first one made way for the newest.
        assert!(!conduct.is_blocked(&peer));
    }
}
