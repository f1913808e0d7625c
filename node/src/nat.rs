//! An emulated home router, for tests and demos on one machine: everything on 127.0.0.1 can
//! dial everything else, so a node "behind a NAT" has to be made so.
//!
//! Two kinds ([`NatKind`]). Both let in connections through a circuit relay and refuse any
//! other inbound connection before its handshake, as a router drops packets (AutoNAT's
//! dial-back included, so AutoNAT finds the node unreachable). A [`NatKind::Cone`] NAT lets in
//! a direct connection from an address this node is hole punching to (a DCUtR dial, made in
//! the listener role, in the last [`PUNCH_WINDOW`]); a [`NatKind::Symmetric`] one maps every
//! destination to another port, so hole punching never works and peers stay relayed.

use std::collections::HashMap;
use std::convert::Infallible;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use libp2p::core::Endpoint;
use libp2p::core::transport::PortUse;
use libp2p::multiaddr::Protocol;
use libp2p::swarm::{
    ConnectionDenied, ConnectionId, FromSwarm, NetworkBehaviour, THandler, THandlerInEvent,
    THandlerOutEvent, ToSwarm, dummy,
};
use libp2p::{Multiaddr, PeerId};

use earshot_protocol::addr::is_relayed;

/// How long a hole punch keeps the emulated NAT's mapping to that address open.
pub const PUNCH_WINDOW: Duration = Duration::from_secs(10);

/// Why the emulated NAT refused a connection.
#[derive(Debug, thiserror::Error)]
#[error("refused by the emulated NAT: nothing went out to {from}")]
pub struct Refused {
    from: Multiaddr,
}

/// Which router to emulate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NatKind {
    /// Hole punching works (DCUtR upgrades relayed connections to direct ones).
    Cone,
    /// Hole punching fails: peers reach the node only through relays.
    Symmetric,
}

impl std::str::FromStr for NatKind {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        match text {
            "cone" => Ok(NatKind::Cone),
            "symmetric" => Ok(NatKind::Symmetric),
            other => Err(format!(
                "unknown NAT {other:?} (expected cone or symmetric)"
            )),
        }
    }
}

#[derive(Debug)]
pub struct EmulatedNat {
    kind: NatKind,
    /// Addresses (without `/p2p/…`) this node hole punches to, and since when.
    punching: HashMap<Multiaddr, Instant>,
}

impl EmulatedNat {
    pub fn new(kind: NatKind) -> Self {
        Self {
            kind,
            punching: HashMap::new(),
        }
    }
}

/// The transport part of an address (what a router sees).
fn transport_part(addr: &Multiaddr) -> Multiaddr {
    addr.iter()
        .take_while(|p| !matches!(p, Protocol::P2p(_)))
        .collect()
}

impl NetworkBehaviour for EmulatedNat {
    type ConnectionHandler = dummy::ConnectionHandler;
    type ToSwarm = Infallible;

    fn handle_pending_inbound_connection(
        &mut self,
        _: ConnectionId,
        local_addr: &Multiaddr,
        remote_addr: &Multiaddr,
    ) -> Result<(), ConnectionDenied> {
        let now = Instant::now();
        self.punching
            .retain(|_, at| now.duration_since(*at) <= PUNCH_WINDOW);
        if is_relayed(local_addr)
            || is_relayed(remote_addr)
            || self.punching.contains_key(&transport_part(remote_addr))
        {
            Ok(())
        } else {
            Err(ConnectionDenied::new(Refused {
                from: remote_addr.clone(),
            }))
        }
    }

    fn handle_established_inbound_connection(
        &mut self,
        _: ConnectionId,
        _: PeerId,
        _: &Multiaddr,
        _: &Multiaddr,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        Ok(dummy::ConnectionHandler)
    }

    fn handle_pending_outbound_connection(
        &mut self,
        _: ConnectionId,
        _: Option<PeerId>,
        addresses: &[Multiaddr],
        role: Endpoint,
    ) -> Result<Vec<Multiaddr>, ConnectionDenied> {
        // DCUtR's hole punch dials in the listener role.
        if role == Endpoint::Listener {
            if self.kind == NatKind::Symmetric {
                return Err(ConnectionDenied::new(Refused {
                    from: addresses.first().cloned().unwrap_or_else(Multiaddr::empty),
                }));
            }
            let now = Instant::now();
            for addr in addresses.iter().filter(|addr| !is_relayed(addr)) {
                self.punching.insert(transport_part(addr), now);
            }
        }
        Ok(Vec::new())
    }

    fn handle_established_outbound_connection(
        &mut self,
        _: ConnectionId,
        _: PeerId,
        _: &Multiaddr,
        _: Endpoint,
        _: PortUse,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        Ok(dummy::ConnectionHandler)
    }

    fn on_swarm_event(&mut self, _: FromSwarm) {}

    fn on_connection_handler_event(
        &mut self,
        _: PeerId,
        _: ConnectionId,
        event: THandlerOutEvent<Self>,
    ) {
        match event {}
    }

    fn poll(&mut self, _: &mut Context<'_>) -> Poll<ToSwarm<Self::ToSwarm, THandlerInEvent<Self>>> {
        Poll::Pending
    }
}
