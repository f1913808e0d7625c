//! The peers this node is connected to, and how it is reachable itself: connections (direct and
//! relayed), addresses peers told us they listen on, round-trip times, dials waiting to complete,
//! relayed connections to close once a direct one is up (DCUtR), and the reachability planner
//! with the relay reservations it asked for. A sans-IO state machine: the event loop feeds it
//! what the swarm reports and carries out the [`Effect`]s it returns.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use libp2p::core::transport::ListenerId;
use libp2p::swarm::ConnectionId;
use libp2p::{Multiaddr, PeerId};
use tokio::sync::oneshot;
use tracing::{debug, info, warn};

use crate::effect::Effect;
use crate::event::Event;
use crate::node::DialError;
use crate::reachability::{Action, Mode, Planner};

/// How long a relayed connection stays open after a direct one to the same peer came up.
/// Long enough for a join handshake under way on the relayed connection to finish; short, so
/// that the room's audio usually starts on the direct one (moving it costs a stream restart).
/// It must close: libp2p-stream opens each new stream on a connection chosen at random, so with
/// both up the audio would stay on the relay half the time.
pub const RETIRE_RELAYED_AFTER: Duration = Duration::from_secs(1);
/// How long after a peer's relayed connection closed, a direct one being up, a stream that
/// broke with it counts as moved (see [`Peers::moving`]).
pub const MOVED_LATELY: Duration = Duration::from_secs(2);

/// Peers whose listen addresses are remembered; past it, only connected peers' are kept.
pub const MAX_KNOWN_ADDRS: usize = 8_192;

/// Who waits for a connection to a peer.
type DialReply = oneshot::Sender<Result<(), DialError>>;

/// Connections and reachability.
#[derive(Debug)]
pub struct Peers {
    connected: HashSet<PeerId>,
    connections: usize,
    /// The direct address each connected peer was dialled at.
    dialled: HashMap<PeerId, Multiaddr>,
    /// Listen addresses peers told us about (identify), for hints and tree placements.
    addrs: HashMap<PeerId, Vec<Multiaddr>>,
    /// The latest ping round-trip time to each connected peer.
    rtts: HashMap<PeerId, Duration>,
    /// Relayed connections open, by peer.
    relayed: HashMap<PeerId, Vec<ConnectionId>>,
    /// Direct connections open, by peer.
    direct: HashMap<PeerId, Vec<ConnectionId>>,
    /// Peers whose last relayed connection closed while a direct one was up, and when.
    moved: HashMap<PeerId, Instant>,
    /// Peers with a new direct connection: their relayed connections close at the instant
    /// given, once what was under way on them (a join handshake) is done.
    retire: Vec<(PeerId, Instant)>,
    dials: HashMap<PeerId, Vec<DialReply>>,
    /// Whether this node is reachable, and the relays it reserves on when it is not.
    reach: Planner,
    /// Listeners on relayed addresses the planner asked for, by relay.
    reservations: HashMap<ListenerId, PeerId>,
}

impl Peers {
    pub fn new(mode: Mode) -> Self {
        Self {
            connected: HashSet::new(),
            connections: 0,
            dialled: HashMap::new(),
            addrs: HashMap::new(),
            rtts: HashMap::new(),
            relayed: HashMap::new(),
            direct: HashMap::new(),
            moved: HashMap::new(),
            retire: Vec::new(),
            dials: HashMap::new(),
            reach: Planner::new(mode),
            reservations: HashMap::new(),
        }
    }

    pub fn is_connected(&self, peer: &PeerId) -> bool {
        self.connected.contains(peer)
    }

    /// Peers connected now, and connections open now.
    pub fn counts(&self) -> (usize, usize) {
        (self.connected.len(), self.connections)
    }

    /// The addresses `peer` said it listens on.
    pub fn addrs_of(&self, peer: &PeerId) -> Option<&Vec<Multiaddr>> {
        self.addrs.get(peer)
    }

    pub fn rtt_of(&self, peer: &PeerId) -> Option<Duration> {
        self.rtts.get(peer).copied()
    }

    /// A relay this node was told to use: from its configuration.
    pub fn configured_relay(&mut self, addr: &Multiaddr, now: Instant) -> Vec<Effect> {
        let actions = self.reach.configured(addr, now);
        self.carry_out(actions, now)
    }

    /// Relays named by an invite link's addresses.
    pub fn named_relays(&mut self, addrs: &[Multiaddr], now: Instant) -> Vec<Effect> {
        let mut effects = Vec::new();
        for relay in earshot_protocol::addr::relays_in(addrs) {
            let actions = self.reach.named(&relay, now);
            effects.extend(self.carry_out(actions, now));
        }
        effects
    }

    /// This node listens through `relay` already (told to): it holds a slot there.
    pub fn listening_via(&mut self, relay: &Multiaddr, now: Instant) {
        self.reach.listening_via(relay, now);
    }

    /// Connects to `peer`; `reply` hears when it is connected (at once, if it is).
    pub fn dial(&mut self, peer: PeerId, addrs: Vec<Multiaddr>, reply: DialReply) -> Vec<Effect> {
        if self.connected.contains(&peer) {
            let _ = reply.send(Ok(()));
            return Vec::new();
        }
        self.dials.entry(peer).or_default().push(reply);
        vec![Effect::Dial { peer, addrs }]
    }

    /// A connection came up.
    pub fn connected(
        &mut self,
        peer: PeerId,
        connection: ConnectionId,
        relayed: bool,
        dialled_at: Option<Multiaddr>,
    ) {
        if relayed {
            self.relayed.entry(peer).or_default().push(connection);
        } else {
            self.direct.entry(peer).or_default().push(connection);
            if let Some(addr) = dialled_at {
                self.dialled.insert(peer, addr);
            }
        }
        self.connections += 1;
        self.connected.insert(peer);
        for reply in self.dials.remove(&peer).unwrap_or_default() {
            let _ = reply.send(Ok(()));
        }
    }

    /// A connection to `peer` is up already (the swarm knew before this machine did).
    pub fn dial_done(&mut self, peer: PeerId) {
        for reply in self.dials.remove(&peer).unwrap_or_default() {
            let _ = reply.send(Ok(()));
        }
    }

    /// Dialling `peer` failed (and no connection to it is up).
    pub fn dial_failed(&mut self, peer: PeerId, reason: String) {
        if self.connected.contains(&peer) {
            return;
        }
        for reply in self.dials.remove(&peer).unwrap_or_default() {
            let _ = reply.send(Err(DialError::Failed {
                peer,
                reason: reason.clone(),
            }));
        }
    }

    /// A connection closed; `remaining` are still open to the same peer.
    pub fn closed(&mut self, peer: PeerId, connection: ConnectionId, remaining: u32, now: Instant) {
        let was_relayed = self
            .relayed
            .get(&peer)
            .is_some_and(|open| open.contains(&connection));
        for open in [&mut self.relayed, &mut self.direct] {
            if let Some(connections) = open.get_mut(&peer) {
                connections.retain(|open| *open != connection);
                if connections.is_empty() {
                    open.remove(&peer);
                }
            }
        }
        if was_relayed && !self.relayed.contains_key(&peer) && self.direct_to(&peer) {
            self.moved
                .retain(|_, at| now.saturating_duration_since(*at) < MOVED_LATELY);
            self.moved.insert(peer, now);
        }
        self.connections = self.connections.saturating_sub(1);
        if remaining == 0 {
            self.connected.remove(&peer);
            self.dialled.remove(&peer);
            self.rtts.remove(&peer);
        }
    }

    /// Identify told us what `peer` listens on and whether it serves circuit relay.
    pub fn identified(
        &mut self,
        peer: PeerId,
        listen_addrs: Vec<Multiaddr>,
        serves_relay: bool,
        now: Instant,
    ) -> Vec<Effect> {
        let mut effects = Vec::new();
        if serves_relay {
            // A peer that serves circuit relay: somewhere to be reachable through.
            let addr = self.dialled.get(&peer).cloned().or_else(|| {
                listen_addrs
                    .iter()
                    .find(|addr| !earshot_protocol::addr::is_relayed(addr))
                    .cloned()
            });
            if let Some(addr) = addr {
                let actions = self.reach.serves_relay(peer, &addr, now);
                effects.extend(self.carry_out(actions, now));
            }
        }
        self.addrs.insert(peer, listen_addrs);
        if self.addrs.len() > MAX_KNOWN_ADDRS {
            // A flood of peers come and gone: keep the connected ones' (at most 4,096).
            let connected = &self.connected;
            self.addrs.retain(|known, _| connected.contains(known));
        }
        effects
    }

    /// An AutoNAT probe of one of this node's addresses came back.
    pub fn probed(&mut self, reachable: bool, now: Instant) -> Vec<Effect> {
        let actions = self.reach.probed(reachable, now);
        self.carry_out(actions, now)
    }

    pub fn pong(&mut self, peer: PeerId, rtt: Duration) {
        self.rtts.insert(peer, rtt);
    }

    /// Whether a direct connection (not through a relay) to `peer` is open.
    pub fn direct_to(&self, peer: &PeerId) -> bool {
        self.direct.get(peer).is_some_and(|open| !open.is_empty())
    }

    /// Whether what went to `peer` through a relay has moved to a direct connection: `None` if
    /// not (no direct connection, or no relayed one lately), `Some(false)` while a relayed one
    /// is still open beside the direct one (its closing may be under way), `Some(true)` if the
    /// last relayed one closed in the last [`MOVED_LATELY`] and a direct one is up. A stream
    /// that broke with the relayed connection opens again on the direct one.
    pub fn moving(&self, peer: &PeerId, now: Instant) -> Option<bool> {
        if !self.direct_to(peer) {
            return None;
        }
        if self.relayed.contains_key(peer) {
            return Some(false);
        }
        self.moved
            .get(peer)
            .is_some_and(|at| now.saturating_duration_since(*at) < MOVED_LATELY)
            .then_some(true)
    }

    /// DCUtR punched a hole to `peer`: its relayed connections close a moment later.
    pub fn hole_punched(&mut self, peer: PeerId, now: Instant) -> Vec<Effect> {
        info!(%peer, "direct connection (hole punched)");
        self.retire.push((peer, now + RETIRE_RELAYED_AFTER));
        vec![Effect::Emit(Event::DirectConnection { peer })]
    }

    /// The listener asking `relay` for a reservation is up.
    pub fn reserving(&mut self, listener: ListenerId, relay: PeerId) {
        self.reservations.insert(listener, relay);
    }

    /// A reservation could not even be asked for.
    pub fn reserve_failed(&mut self, relay: PeerId, now: Instant) -> Vec<Effect> {
        let actions = self.reach.lost(relay, now);
        self.carry_out(actions, now)
    }

    /// A listener closed: for a relayed one, the relay refused or dropped the reservation.
    pub fn listener_closed(&mut self, listener: ListenerId, now: Instant) -> Vec<Effect> {
        match self.reservations.remove(&listener) {
            Some(relay) => {
                warn!(%relay, "lost the slot on a relay");
                let actions = self.reach.lost(relay, now);
                self.carry_out(actions, now)
            }
            None => Vec::new(),
        }
    }

    /// Timers: the reachability planner's, and relayed connections due to close.
    pub fn tick(&mut self, now: Instant) -> Vec<Effect> {
        let actions = self.reach.tick(now);
        let mut effects = self.carry_out(actions, now);
        let (due, later): (Vec<_>, Vec<_>) = self.retire.drain(..).partition(|(_, at)| *at <= now);
        self.retire = later;
        for (peer, _) in due {
            // Forgotten once closed (`closed`), not now: until then, streams may be on them.
            for connection in self.relayed.get(&peer).cloned().unwrap_or_default() {
                debug!(%peer, "closing a relayed connection: a direct one is up");
                effects.push(Effect::CloseConnection(connection));
            }
        }
        effects
    }

    fn carry_out(&mut self, actions: Vec<Action>, _now: Instant) -> Vec<Effect> {
        actions
            .into_iter()
            .map(|action| match action {
                Action::Dial(addr) => Effect::DialAddr(addr),
                Action::Reserve { relay, addr } => {
                    info!(%addr, "asking a relay for a slot");
                    Effect::Reserve { relay, addr }
                }
                Action::Verdict(status) => {
                    info!(status = status.as_str(), "reachability");
                    Effect::Emit(Event::Reachability { status })
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests;
