//! Reachability: whether peers can dial this node, and which community relays it reserves a
//! slot on when they cannot.
//!
//! Sans-IO: the event loop feeds in what it learns (a peer that serves circuit relay, an AutoNAT
//! probe's outcome, a reservation that came up or was lost, the clock) and carries out the
//! [`Action`]s that come back. Relays come from the node's configuration and `--bootstrap`,
//! from invite links (a link's `…/p2p/RELAY/p2p-circuit/p2p/HOST` address names one), and from
//! any connected peer whose identify lists the circuit relay's hop protocol.
//!
//! In [`Mode::Auto`] a node is public once AutoNAT confirms one of its addresses and
//! private when [`PROBE_GRACE`] after a failed probe none succeeded (a node has addresses that
//! fail, say an interface no one can route to, next to one that works), or when no verdict came
//! within [`VERDICT_WAIT`] of knowing a relay (an AutoNAT server is then usually the relay itself: a node that cannot be probed is
//! safer reachable through a relay than not at all). A private node keeps
//! [`WANTED_RESERVATIONS`] reservations, on different relays, and replaces one that is lost.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use earshot_protocol::addr::{circuit_through, is_relayed, peer_of, with_peer};
use libp2p::{Multiaddr, PeerId};

/// Reservations a private node keeps (on different relays): one relay going away leaves it
/// reachable through the other while it finds a replacement.
pub const WANTED_RESERVATIONS: usize = 2;
/// How long a node in [`Mode::Auto`] waits for AutoNAT's verdict once it knows a relay.
pub const VERDICT_WAIT: Duration = Duration::from_secs(8);
/// How long after a failed AutoNAT probe the node waits for another one to succeed before it
/// takes itself as private.
pub const PROBE_GRACE: Duration = Duration::from_secs(2);
/// How long a relay that refused or dropped a reservation is left alone.
pub const RELAY_BACKOFF: Duration = Duration::from_secs(30);

/// What the node is told about its reachability.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// Ask AutoNAT; reserve on relays if the node turns out not to be reachable.
    #[default]
    Auto,
    /// Reachable (a server with an open port): never reserve.
    Public,
    /// Behind a NAT or firewall: reserve on relays at once.
    Private,
}

impl std::str::FromStr for Mode {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        match text {
            "auto" => Ok(Mode::Auto),
            "public" => Ok(Mode::Public),
            "private" => Ok(Mode::Private),
            other => Err(format!(
                "unknown reachability {other:?} (expected auto, public or private)"
            )),
        }
    }
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Auto => "auto",
            Mode::Public => "public",
            Mode::Private => "private",
        }
    }
}

/// What the node knows about its own reachability.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reachability {
    /// No verdict yet.
    Unknown,
    /// Peers can dial it directly.
    Public,
    /// Peers reach it through relays.
    Private,
}

impl Reachability {
    pub fn as_str(self) -> &'static str {
        match self {
            Reachability::Unknown => "unknown",
            Reachability::Public => "public",
            Reachability::Private => "private",
        }
    }
}

/// What the event loop should do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Connect to this relay (a candidate named by a link or the configuration), so that its
    /// identify and AutoNAT answers arrive.
    Dial(Multiaddr),
    /// Listen on `relay/p2p-circuit`: ask the relay for a reservation.
    Reserve { relay: PeerId, addr: Multiaddr },
    /// The verdict changed.
    Verdict(Reachability),
}

#[derive(Debug, Clone)]
struct Relay {
    /// Its direct address, ending in `/p2p/RELAY`.
    addr: Multiaddr,
    /// Identify confirmed it serves circuit relay (configured relays are trusted to until a
    /// reservation fails).
    serves: bool,
    state: RelayState,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RelayState {
    Idle,
    /// A reservation was asked for or is held.
    Reserved,
    /// It refused or dropped the reservation: not before this instant.
    Backoff(Instant),
}

/// Relays known at most, past which peers that say they serve circuit relay are not taken as
/// candidates.
pub const MAX_RELAY_CANDIDATES: usize = 32;

/// The reachability planner. See the module documentation.
#[derive(Debug)]
pub struct Planner {
    mode: Mode,
    verdict: Reachability,
    relays: HashMap<PeerId, Relay>,
    /// Relays in the order they became known (configuration first).
    order: Vec<PeerId>,
    /// When a verdict is due in [`Mode::Auto`] (set once a relay is known).
    verdict_due: Option<Instant>,
}

impl Planner {
    pub fn new(mode: Mode) -> Self {
        Self {
            mode,
            verdict: match mode {
                Mode::Auto => Reachability::Unknown,
                Mode::Public => Reachability::Public,
                Mode::Private => Reachability::Private,
            },
            relays: HashMap::new(),
            order: Vec::new(),
            verdict_due: None,
        }
    }

    pub fn mode(&self) -> Mode {
        self.mode
    }

    pub fn verdict(&self) -> Reachability {
        self.verdict
    }

    /// Relays this node holds (or asked for) a reservation on.
    pub fn reserved(&self) -> impl Iterator<Item = PeerId> + '_ {
        self.order
            .iter()
            .filter(|peer| self.relays[peer].state == RelayState::Reserved)
            .copied()
    }

    /// A relay named by the configuration (`addr` ends in `/p2p/RELAY`). Returns a dial when
    /// it is new.
    pub fn configured(&mut self, addr: &Multiaddr, now: Instant) -> Vec<Action> {
        let mut actions = Vec::new();
        if let Some(peer) = peer_of(addr)
            && !self.relays.contains_key(&peer)
        {
            actions.push(Action::Dial(addr.clone()));
        }
        actions.extend(self.named(addr, now));
        actions
    }

    /// A relay named by an invite link: the node is connecting through it already (dialling
    /// it separately as well would race the relayed dial).
    pub fn named(&mut self, addr: &Multiaddr, now: Instant) -> Vec<Action> {
        let Some(peer) = peer_of(addr) else {
            return Vec::new();
        };
        if self.relays.contains_key(&peer) {
            return Vec::new();
        }
        self.add(peer, addr.clone(), true, now);
        self.plan(now)
    }

    /// Identify says `peer`, connected at `addr` (a direct address), serves circuit relay.
    pub fn serves_relay(&mut self, peer: PeerId, addr: &Multiaddr, now: Instant) -> Vec<Action> {
        if is_relayed(addr) {
            return Vec::new();
        }
        // Any peer may say it serves circuit relay: those learned that way are kept up to a
        // bound (configured relays and a link's are always kept).
        let full = self.relays.len() >= MAX_RELAY_CANDIDATES;
        match self.relays.get_mut(&peer) {
            Some(relay) => relay.serves = true,
            None if full => return Vec::new(),
            None => {
                let addr = with_peer(addr.clone(), peer);
                self.add(peer, addr, true, now);
            }
        }
        self.plan(now)
    }

    /// An AutoNAT probe of one of this node's addresses came back.
    pub fn probed(&mut self, reachable: bool, now: Instant) -> Vec<Action> {
        if self.mode != Mode::Auto {
            return Vec::new();
        }
        let mut actions = Vec::new();
        if reachable {
            // One confirmed address is enough to be dialled directly. Reservations already
            // held are kept: they cost the relay little, and links handed out name them.
            if self.verdict != Reachability::Public {
                self.verdict = Reachability::Public;
                actions.push(Action::Verdict(Reachability::Public));
            }
        } else if self.verdict == Reachability::Unknown {
            let due = now + PROBE_GRACE;
            self.verdict_due = Some(self.verdict_due.map_or(due, |at| at.min(due)));
        }
        actions.extend(self.plan(now));
        actions
    }

    /// This node listens through `relay` already (an address it was told to listen on).
    pub fn listening_via(&mut self, relay: &Multiaddr, now: Instant) {
        let Some(peer) = peer_of(relay) else {
            return;
        };
        if !self.relays.contains_key(&peer) {
            self.add(peer, relay.clone(), true, now);
        }
        if let Some(entry) = self.relays.get_mut(&peer) {
            entry.state = RelayState::Reserved;
        }
    }

    /// The reservation on `relay` failed or was dropped: try another relay.
    pub fn lost(&mut self, relay: PeerId, now: Instant) -> Vec<Action> {
        if let Some(entry) = self.relays.get_mut(&relay) {
            entry.state = RelayState::Backoff(now + RELAY_BACKOFF);
        }
        self.plan(now)
    }

    /// Timers: the verdict deadline, relays coming out of backoff.
    pub fn tick(&mut self, now: Instant) -> Vec<Action> {
        let mut actions = Vec::new();
        if self.verdict == Reachability::Unknown && self.verdict_due.is_some_and(|due| now >= due) {
            self.verdict = Reachability::Private;
            actions.push(Action::Verdict(Reachability::Private));
        }
        for relay in self.relays.values_mut() {
            if matches!(relay.state, RelayState::Backoff(until) if now >= until) {
                relay.state = RelayState::Idle;
            }
        }
        actions.extend(self.plan(now));
        actions
    }

    fn add(&mut self, peer: PeerId, addr: Multiaddr, serves: bool, now: Instant) {
        self.relays.insert(
            peer,
            Relay {
                addr,
                serves,
                state: RelayState::Idle,
            },
        );
        self.order.push(peer);
        if self.mode == Mode::Auto && self.verdict_due.is_none() {
            self.verdict_due = Some(now + VERDICT_WAIT);
        }
    }

    /// Reservations to ask for: a private node tops up to [`WANTED_RESERVATIONS`].
    fn plan(&mut self, _now: Instant) -> Vec<Action> {
        if self.verdict != Reachability::Private {
            return Vec::new();
        }
        let held = self.reserved().count();
        let mut actions = Vec::new();
        for peer in self.order.clone() {
            if held + actions.len() >= WANTED_RESERVATIONS {
                break;
            }
            let Some(relay) = self.relays.get_mut(&peer) else {
                continue;
            };
            if relay.serves && relay.state == RelayState::Idle {
                relay.state = RelayState::Reserved;
                actions.push(Action::Reserve {
                    relay: peer,
                    addr: circuit_through(&relay.addr).unwrap_or_else(|| relay.addr.clone()),
                });
            }
        }
        actions
    }
}

#[cfg(test)]
mod tests;
