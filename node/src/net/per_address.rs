//! Inbound connections per remote IP address: at most so many at once, and new ones at most
//! so fast. libp2p's `connection_limits` bounds connections in all and per peer, but a
//! stranger makes peers for free (a fresh key a connection); what it cannot make for free is
//! addresses. Counted from the moment an inbound connection is pending (before its handshake:
//! a refused one costs a UDP datagram or a TCP accept, not a TLS or Noise handshake) until it
//! closes. Relayed connections are not counted here: they all come from their relay's address,
//! and the relay limits its circuits itself.
//!
//! When the node is full of inbound connections (`max_inbound`, a little under its total), a
//! newcomer from an address with few connections takes the place of a connection from the
//! address with the most: a stranger holding thousands of connections from a hundred addresses
//! cannot keep an honest joiner (one connection from its own address) out.

use std::collections::{HashMap, HashSet, VecDeque};
use std::convert::Infallible;
use std::net::IpAddr;
use std::task::{Context, Poll};
use std::time::Instant;

use earshot_protocol::bucket::Buckets;
use libp2p::core::Endpoint;
use libp2p::core::multiaddr::Protocol;
use libp2p::core::transport::PortUse;
use libp2p::swarm::{
    CloseConnection, ConnectionDenied, ConnectionId, FromSwarm, NetworkBehaviour, THandler,
    THandlerInEvent, THandlerOutEvent, ToSwarm, dummy,
};
use libp2p::{Multiaddr, PeerId};

/// Inbound connections from one address at once, by default (a home router's household, a
/// campus NAT: enough for many honest peers, nowhere near a flood).
pub const DEFAULT_PER_ADDRESS: u32 = 64;
/// New inbound connections from one address a second, and at once, by default.
pub const DEFAULT_NEW_PER_SEC: f64 = 20.0;
pub const DEFAULT_NEW_BURST: f64 = 64.0;
/// Addresses whose rate is remembered (see [`Buckets`]).
const REMEMBERED: usize = 16_384;

/// The limits.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PerAddressLimits {
    pub max_connections: u32,
    pub new_per_sec: f64,
    pub new_burst: f64,
    /// Inbound connections in all (pending and established), past which a newcomer from an
    /// address with fewer connections replaces one from the address with the most (none: no
    /// such limit here).
    pub max_inbound: Option<u32>,
}

impl Default for PerAddressLimits {
    fn default() -> Self {
        Self {
            max_connections: DEFAULT_PER_ADDRESS,
            new_per_sec: DEFAULT_NEW_PER_SEC,
            new_burst: DEFAULT_NEW_BURST,
            max_inbound: None,
        }
    }
}

/// Why a connection was refused.
#[derive(Debug, thiserror::Error)]
pub enum PerAddressDenied {
    #[error("{ip} already has {max} connections to this node")]
    TooMany { ip: IpAddr, max: u32 },
    #[error("{ip} opens connections faster than {per_sec}/s")]
    TooFast { ip: IpAddr, per_sec: f64 },
    #[error("this node is full of connections, none from an address with more than {ip}'s")]
    Full { ip: IpAddr },
}

/// The behaviour (see the module's documentation).
#[derive(Debug)]
pub struct PerAddress {
    limits: PerAddressLimits,
    open: HashMap<IpAddr, u32>,
    connections: HashMap<ConnectionId, IpAddr>,
    /// Each address's budget of new connections.
    rates: Buckets<IpAddr>,
    /// The peer at the other end of each established inbound connection counted.
    peers: HashMap<ConnectionId, PeerId>,
    /// Connections asked to close to make room, until they have.
    closing: HashSet<ConnectionId>,
    to_close: VecDeque<(PeerId, ConnectionId)>,
}

impl PerAddress {
    pub fn new(limits: PerAddressLimits) -> Self {
        Self {
            limits,
            open: HashMap::new(),
            connections: HashMap::new(),
            rates: Buckets::new(limits.new_per_sec, limits.new_burst, REMEMBERED),
            peers: HashMap::new(),
            closing: HashSet::new(),
            to_close: VecDeque::new(),
        }
    }

    /// Whether a connection from `ip` may start now; counts it if so.
    fn admit(
        &mut self,
        id: ConnectionId,
        ip: IpAddr,
        now: Instant,
    ) -> Result<(), PerAddressDenied> {
        let open = self.open.get(&ip).copied().unwrap_or(0);
        if open >= self.limits.max_connections {
            return Err(PerAddressDenied::TooMany {
                ip,
                max: self.limits.max_connections,
            });
        }
        if !self.rates.take(ip, now) {
            return Err(PerAddressDenied::TooFast {
                ip,
                per_sec: self.limits.new_per_sec,
            });
        }
        if let Some(max) = self.limits.max_inbound {
            let counted = self.connections.len().saturating_sub(self.closing.len());
            if counted >= max as usize {
                self.make_room(ip)?;
            }
        }
        *self.open.entry(ip).or_default() += 1;
        self.connections.insert(id, ip);
        Ok(())
    }

    /// Full: closes a connection from the address with the most, if it has more than `ip`
    /// would with this one.
    fn make_room(&mut self, ip: IpAddr) -> Result<(), PerAddressDenied> {
        let mine = self.open_from(&ip) + 1;
        let busiest = self
            .open
            .iter()
            .filter(|(other, _)| **other != ip)
            .max_by_key(|(other, open)| (**open, **other))
            .map(|(other, open)| (*other, *open));
        let victim = busiest
            .filter(|(_, open)| *open > mine)
            .and_then(|(busiest, _)| {
                self.connections.iter().find_map(|(id, from)| {
                    (*from == busiest && !self.closing.contains(id))
                        .then(|| self.peers.get(id).map(|peer| (*peer, *id)))
                        .flatten()
                })
            });
        let Some((peer, id)) = victim else {
            return Err(PerAddressDenied::Full { ip });
        };
        self.closing.insert(id);
        self.to_close.push_back((peer, id));
        Ok(())
    }

    fn closed(&mut self, id: ConnectionId) {
        self.closing.remove(&id);
        self.peers.remove(&id);
        if let Some(ip) = self.connections.remove(&id)
            && let Some(open) = self.open.get_mut(&ip)
        {
            *open = open.saturating_sub(1);
            if *open == 0 {
                self.open.remove(&ip);
            }
        }
    }

    /// Connections from `ip` counted now.
    pub fn open_from(&self, ip: &IpAddr) -> u32 {
        self.open.get(ip).copied().unwrap_or(0)
    }
}

/// The IP address a connection comes from, unless it is relayed.
fn ip_of(addr: &Multiaddr) -> Option<IpAddr> {
    if addr.iter().any(|p| matches!(p, Protocol::P2pCircuit)) {
        return None;
    }
    addr.iter().find_map(|p| match p {
        Protocol::Ip4(ip) => Some(IpAddr::V4(ip)),
        Protocol::Ip6(ip) => Some(IpAddr::V6(ip)),
        _ => None,
    })
}

impl NetworkBehaviour for PerAddress {
    type ConnectionHandler = dummy::ConnectionHandler;
    type ToSwarm = Infallible;

    fn handle_pending_inbound_connection(
        &mut self,
        id: ConnectionId,
        _local: &Multiaddr,
        remote: &Multiaddr,
    ) -> Result<(), ConnectionDenied> {
        let Some(ip) = ip_of(remote) else {
            return Ok(());
        };
        self.admit(id, ip, Instant::now()).map_err(|denied| {
            tracing::debug!(%denied, "refused a connection");
            ConnectionDenied::new(denied)
        })
    }

    fn handle_established_inbound_connection(
        &mut self,
        id: ConnectionId,
        peer: PeerId,
        _local: &Multiaddr,
        _remote: &Multiaddr,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        if self.connections.contains_key(&id) {
            self.peers.insert(id, peer);
        }
        Ok(dummy::ConnectionHandler)
    }

    fn handle_established_outbound_connection(
        &mut self,
        _id: ConnectionId,
        _peer: PeerId,
        _addr: &Multiaddr,
        _role: Endpoint,
        _port_use: PortUse,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        Ok(dummy::ConnectionHandler)
    }

    fn on_swarm_event(&mut self, event: FromSwarm) {
        match event {
            FromSwarm::ConnectionClosed(closed) => self.closed(closed.connection_id),
            FromSwarm::ListenFailure(failure) => self.closed(failure.connection_id),
            _ => {}
        }
    }

    fn on_connection_handler_event(
        &mut self,
        _peer: PeerId,
        _id: ConnectionId,
        event: THandlerOutEvent<Self>,
    ) {
        match event {}
    }

    fn poll(&mut self, _: &mut Context<'_>) -> Poll<ToSwarm<Self::ToSwarm, THandlerInEvent<Self>>> {
        match self.to_close.pop_front() {
            Some((peer_id, id)) => Poll::Ready(ToSwarm::CloseConnection {
                peer_id,
                connection: CloseConnection::One(id),
            }),
            None => Poll::Pending,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> PerAddressLimits {
        PerAddressLimits {
            max_connections: 3,
            new_per_sec: 2.0,
            new_burst: 5.0,
            max_inbound: None,
        }
    }

    #[test]
    fn one_address_gets_so_many_connections_and_so_fast_and_others_are_not_held_up() {
        let mut limits = PerAddress::new(limits());
        let (attacker, honest): (IpAddr, IpAddr) = (
            "127.0.0.9".parse().expect("ip"),
            "127.0.0.1".parse().expect("ip"),
        );
        let now = Instant::now();
        let ids: Vec<ConnectionId> = (0..10)
            .map(|_| ConnectionId::new_unchecked(rand_id()))
            .collect();
        for id in &ids[..3] {
            limits.admit(*id, attacker, now).expect("within the limit");
        }
        assert!(matches!(
            limits.admit(ids[3], attacker, now),
            Err(PerAddressDenied::TooMany { .. })
        ));
        limits
            .admit(ids[4], honest, now)
            .expect("another address is not held up");
        // Closing makes room, until the burst of new ones (5) is spent.
        limits.closed(ids[0]);
        limits.closed(ids[1]);
        limits.admit(ids[5], attacker, now).expect("room again");
        limits
            .admit(ids[6], attacker, now)
            .expect("the last of the burst");
        limits.closed(ids[2]);
        assert!(matches!(
            limits.admit(ids[7], attacker, now),
            Err(PerAddressDenied::TooFast { .. })
        ));
        // Half a second later, one more token.
        limits
            .admit(
                ids[8],
                attacker,
                now + std::time::Duration::from_millis(500),
            )
            .expect("at the rate");
        assert_eq!(limits.open_from(&attacker), 3);
        // Relayed connections are the relay's to limit.
        let relayed: Multiaddr = "/ip4/127.0.0.9/udp/1/quic-v1/p2p/12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN/p2p-circuit"
            .parse()
            .expect("addr");
        assert_eq!(ip_of(&relayed), None);
    }

    #[test]
    fn when_full_a_newcomer_takes_the_place_of_the_busiest_addresss_connection() {
        let mut limits = PerAddress::new(PerAddressLimits {
            max_connections: 64,
            new_per_sec: 100.0,
            new_burst: 100.0,
            max_inbound: Some(10),
        });
        let now = Instant::now();
        let attacker: Vec<IpAddr> = (1..=2)
            .map(|i| format!("127.0.1.{i}").parse().expect("ip"))
            .collect();
        let mut held = Vec::new();
        for i in 0..10 {
            let id = ConnectionId::new_unchecked(rand_id());
            limits.admit(id, attacker[i % 2], now).expect("room");
            limits.peers.insert(id, PeerId::random());
            held.push(id);
        }
        // Full: an honest joiner from its own address gets in, one of the attacker's goes.
        let honest: IpAddr = "127.0.0.1".parse().expect("ip");
        let joiner = ConnectionId::new_unchecked(rand_id());
        limits
            .admit(joiner, honest, now)
            .expect("an honest joiner gets in");
        let (_, victim) = limits.to_close.pop_front().expect("one asked to close");
        assert!(held.contains(&victim));
        limits.closed(victim);
        // Another connection from the attacker's addresses only takes its own kind's place
        // while it has more there than here; from an address as busy as the busiest: refused.
        let busy = attacker[0];
        let mut refused = 0;
        for _ in 0..10 {
            let id = ConnectionId::new_unchecked(rand_id());
            match limits.admit(id, busy, now) {
                Ok(()) => {
                    limits.peers.insert(id, PeerId::random());
                    if let Some((_, victim)) = limits.to_close.pop_front() {
                        limits.closed(victim);
                    }
                }
                Err(PerAddressDenied::Full { .. }) => refused += 1,
                Err(other) => panic!("{other}"),
            }
        }
        assert!(
            refused > 0,
            "the busiest address cannot push out the rest for ever"
        );
        assert_eq!(limits.open_from(&honest), 1, "the honest joiner stays");
    }

    fn rand_id() -> usize {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static NEXT: AtomicUsize = AtomicUsize::new(1);
        NEXT.fetch_add(1, Ordering::Relaxed)
    }
}
