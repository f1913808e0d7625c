//! The event loop: the one task that owns the `Swarm`. It is a router: commands, swarm events and
//! what comes along the relay trees ([`TreeEvent`]s) go to the sub-state machine they concern
//! ([`Rooms`], [`Lobby`], [`CarryBudget`], [`Peers`]), and the [`Effect`]s those return are
//! carried out here, in order. Handlers never `.await`: a slow subscriber or a slow peer never
//! stalls the loop.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use earshot_protocol::RoomId;
use earshot_protocol::audience::AudienceView;
use earshot_protocol::audience::wire::Down;
use earshot_protocol::snapshot::RoomRequest;
use futures::StreamExt;
use libp2p::gossipsub::{self, IdentTopic};
use libp2p::swarm::SwarmEvent;
use libp2p::{Swarm, identify};
use tokio::sync::{broadcast, mpsc};
use tracing::{debug, info, warn};

use super::pending::Pending;
use super::{AttachError, Command, JoinError, NodeConfig};
use crate::carry::CarryBudget;
use crate::clock;
use crate::effect::Effect;
use crate::event::{CloseReason, Event};
use crate::fanout::Fanout;
use crate::identity::Identity;
use crate::lobby::Lobby;
use crate::metrics::NetMetrics;
use crate::net::{Behaviour, BehaviourEvent};
use crate::peers::Peers;
use crate::rooms::{Now, Rooms};
use crate::tree::{Tree, TreeEvent};

mod addrs;
mod gossip;
mod rates;
mod requests;
use requests::Requests;

use gossip::{Topics, follows};

/// How often timers (heartbeats, timeouts, retries, announcements) are checked.
const TICK: Duration = Duration::from_millis(100);

/// The audio plane, as the loop sees it: what it sends down and to one child, the rooms' trees
/// (places, tickets, who may speak), and what comes along them for the loop.
pub(super) struct Plane {
    pub fanout: Fanout,
    pub tree: Arc<Tree>,
    pub events: mpsc::Receiver<TreeEvent>,
}

/// The loop's ties to the rest of the process.
struct Outside {
    commands: mpsc::Receiver<Command>,
    events: broadcast::Sender<Event>,
    /// Counts connections, circuits and libp2p's own metrics ([`crate::net::NetConfig::metrics`]).
    metrics: NetMetrics,
}

pub(super) struct EventLoop {
    swarm: Swarm<Behaviour>,
    outside: Outside,
    topics: Topics,
    requests: Requests,
    rooms: Rooms,
    lobby: Lobby,
    plane: Plane,
    carry: CarryBudget,
    peers: Peers,
    /// Where the private rooms this node hosts keep their key schedules.
    keepers: HashMap<RoomId, crate::store::Store>,
}

impl EventLoop {
    pub(super) fn new(
        mut swarm: Swarm<Behaviour>,
        commands: mpsc::Receiver<Command>,
        events: broadcast::Sender<Event>,
        identity: &Identity,
        config: &NodeConfig,
        plane: Plane,
    ) -> Self {
        let lobby = IdentTopic::new(earshot_protocol::topic::LOBBY);
        if let Err(err) = swarm.behaviour_mut().gossipsub.subscribe(&lobby) {
            warn!(%err, "could not subscribe to the lobby");
        }
        for addr in &config.bootstrap {
            if let Err(err) = swarm.dial(addr.clone()) {
                warn!(%addr, %err, "could not dial bootstrap address");
            }
        }
        let mut seed = [0u8; 32];
        if let Err(err) = getrandom::fill(&mut seed) {
            warn!(%err, "no randomness from the system: salts and nonces are predictable");
        }
        let mut event_loop = Self {
            swarm,
            outside: Outside {
                commands,
                events,
                metrics: config.net.metrics.clone(),
            },
            topics: Topics {
                lobby,
                rooms: HashMap::new(),
                private: HashMap::new(),
                eavesdropped: HashMap::new(),
                rates: rates::gossip(),
            },
            requests: Requests::default(),
            rooms: Rooms::new(identity.signing_key().clone(), clock::now(), seed),
            lobby: Lobby::default(),
            plane,
            carry: CarryBudget::new(
                config.net.carry_rooms,
                config.net.children_budget,
                config.max_children,
            ),
            peers: Peers::new(config.reachability),
            keepers: HashMap::new(),
        };
        let now = Instant::now();
        for addr in &config.listen {
            // Told to listen through a relay: that relay holds a slot already.
            if let Some(relay) =
                earshot_protocol::addr::relays_in(std::slice::from_ref(addr)).first()
            {
                event_loop.peers.listening_via(relay, now);
            }
        }
        for relay in &config.relays {
            let effects = event_loop.peers.configured_relay(relay, now);
            event_loop.apply(effects);
        }
        event_loop
    }

    pub(super) async fn next_swarm_event(&mut self) -> SwarmEvent<BehaviourEvent> {
        self.swarm.select_next_some().await
    }

    pub(super) async fn run(mut self) {
        info!("node running");
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let handled = |this: &Self, started: Instant| {
                this.outside.metrics.handling.observe(started.elapsed());
            };
            tokio::select! {
                biased;
                command = self.outside.commands.recv() => match command {
                    Some(Command::Shutdown { reply }) => {
                        let effects = self.rooms.leave_all(now());
                        self.apply(effects);
                        let _ = reply.send(());
                        break;
                    }
                    Some(command) => {
                        let started = Instant::now();
                        self.on_command(command);
                        handled(&self, started);
                    }
                    // Every `Node` handle dropped.
                    None => {
                        let effects = self.rooms.leave_all(now());
                        self.apply(effects);
                        break;
                    }
                },
                event = self.swarm.select_next_some() => {
                    let started = Instant::now();
                    self.on_swarm_event(event);
                    handled(&self, started);
                }
                Some(event) = self.plane.events.recv() => {
                    let started = Instant::now();
                    self.on_tree_event(event);
                    handled(&self, started);
                }
                _ = tick.tick() => {
                    let started = Instant::now();
                    self.on_tick();
                    handled(&self, started);
                }
            }
        }
        info!("node stopped");
    }

    fn on_tick(&mut self) {
        let now = now();
        let follows = follows(&self.swarm, &self.topics);
        let tree = &self.plane.tree;
        let size = |room: &RoomId| tree.size(room);
        let mut effects = self.rooms.tick(now, follows, size, &self.peers);
        effects.extend(self.peers.tick(now.instant));
        self.place_parked(now.instant);
        self.lobby.expire(now.wall);
        self.apply(effects);
    }

    /// Carries out effects in order (some give rise to more, which follow).
    fn apply(&mut self, effects: Vec<Effect>) {
        let mut queue: VecDeque<Effect> = effects.into();
        while let Some(effect) = queue.pop_front() {
            let more = self.carry_out(effect);
            queue.extend(more);
        }
    }

    fn carry_out(&mut self, effect: Effect) -> Vec<Effect> {
        match effect {
            Effect::Emit(event) => {
                let _ = self.outside.events.send(event);
            }
            Effect::Changed { room, .. } => {
                self.refresh_access(room);
            }
            Effect::Publish { room, bytes, since } => {
                let topic = self.topics.of(&room);
                // A private room's messages are sealed for its members (what waits for a
                // subscriber is kept as it was, and sealed when it goes).
                let wire = match self.plane.fanout.sealing_epoch(&room) {
                    Some(epoch) => match epoch {
                        Some(epoch) => epoch.seal(&room, &bytes, rand::random()),
                        None => {
                            self.rooms.queue(room, since, bytes);
                            return Vec::new();
                        }
                    },
                    None => bytes.clone(),
                };
                match self.swarm.behaviour_mut().gossipsub.publish(topic, wire) {
                    Ok(_) | Err(gossipsub::PublishError::Duplicate) => {}
                    Err(gossipsub::PublishError::NoPeersSubscribedToTopic) => {
                        self.rooms.queue(room, since, bytes);
                    }
                    Err(err) => warn!(%room, %err, "could not publish"),
                }
            }
            Effect::Announce(announcement) => {
                let room = announcement.descriptor.id;
                let bytes = announcement.encode();
                self.lobby.insert(announcement);
                let topic = self.topics.lobby.clone();
                match self.swarm.behaviour_mut().gossipsub.publish(topic, bytes) {
                    Ok(_)
                    | Err(gossipsub::PublishError::Duplicate)
                    | Err(gossipsub::PublishError::NoPeersSubscribedToTopic) => {}
                    Err(err) => warn!(%room, %err, "could not announce"),
                }
            }
            Effect::Subscribe(room) => {
                if let Err(err) = self.subscribe(room) {
                    warn!(%room, %err, "could not follow the room's topic");
                }
            }
            Effect::Unsubscribe(room) => {
                let topic = self.topics.of(&room);
                self.topics.rooms.remove(&topic.hash());
                let _ = self.swarm.behaviour_mut().gossipsub.unsubscribe(&topic);
            }
            Effect::KeepSchedule {
                room,
                sealed,
                durable,
            } => {
                if let Some(store) = self.keepers.get(&room) {
                    match store.keep_schedule(&room, sealed.as_deref(), durable) {
                        Ok(()) if durable => debug!(%room, "kept the room's key schedule"),
                        Ok(()) => {}
                        Err(err) => warn!(%room, %err, "could not keep the room's key schedule"),
                    }
                }
            }
            Effect::Keyring { room, ring } => {
                self.private_topic(room, &ring);
                self.plane.fanout.set_keys(room, ring);
            }
            Effect::OpenTree { room, host } => {
                let rooms = &self.rooms;
                let capacity =
                    self.carry
                        .capacity_in(room, |id| rooms.contains(id), Instant::now());
                let addrs = self.own_addrs(&room);
                self.plane.tree.open(room, host, capacity, &addrs);
                if self.carry.carries(&room) {
                    self.plane.tree.set_carrying(&room);
                }
                self.refresh_access(room);
            }
            Effect::Forget(room) => {
                self.keepers.remove(&room);
                self.plane.fanout.forget_keys(&room);
                self.plane.tree.close(&room);
                self.carry.forget(&room);
            }
            Effect::Down { room, down } => {
                if let Down::View(bytes) = &down
                    && let Some(host) = self.rooms.get(&room).map(|j| j.descriptor.host)
                    && host == self.rooms.me()
                    && let Ok(view) = AudienceView::decode_verified(bytes, room, &host)
                {
                    // The host keeps its own view: bans in it refuse places and streams, and
                    // cut removed children off.
                    self.plane.tree.keep_view(&room, view);
                    let evicted = crate::fanout::Gate::evicted(&*self.plane.tree, room);
                    self.plane.fanout.evict(&room, &evicted);
                }
                self.plane.tree.remember_down(&room, &down);
                self.plane.fanout.send_down(&room, &down);
            }
            Effect::Notice { room, to, text } => {
                if let Some(child) = self.plane.tree.route(&room, &to) {
                    self.plane
                        .fanout
                        .send_to_child(&room, &child, &Down::Notice { to, text });
                }
            }
            Effect::Up {
                room,
                act,
                urgent: true,
            } => self.plane.fanout.send_up(&room, act),
            Effect::Up { room, act, .. } => {
                if let Err(refused) = self.plane.tree.act(&room, act) {
                    self.emit(Event::Note {
                        message: format!("not sent: {refused}"),
                    });
                }
            }
            Effect::React { room, emoji } => self.plane.tree.react(&room, &emoji),
            Effect::Newcomer { room, newcomer } => self.plane.tree.newcomer(&room, newcomer),
            Effect::Request {
                peer,
                addrs,
                request,
                then,
            } => {
                let id = self
                    .swarm
                    .behaviour_mut()
                    .rooms
                    .send_request_with_addresses(&peer, request, addrs);
                self.requests.outbound.insert(id, then);
            }
            Effect::Respond { inbound, response } => self.respond(inbound, response),
            Effect::Dial { peer, addrs } => {
                let opts = libp2p::swarm::dial_opts::DialOpts::peer_id(peer)
                    .addresses(addrs)
                    .build();
                match self.swarm.dial(opts) {
                    Ok(()) => {}
                    // Connected, or a dial is under way: whoever waits hears when it is done.
                    Err(libp2p::swarm::DialError::DialPeerConditionFalse(_)) => {
                        if self.swarm.is_connected(&peer) {
                            self.peers.dial_done(peer);
                        }
                    }
                    Err(err) => {
                        debug!(%peer, %err, "could not dial");
                        self.peers.dial_failed(peer, err.to_string());
                    }
                }
            }
            Effect::DialAddr(addr) => {
                if let Err(err) = self.swarm.dial(addr.clone()) {
                    debug!(%addr, %err, "could not dial a relay");
                }
            }
            Effect::Reserve { relay, addr } => match self.swarm.listen_on(addr.clone()) {
                Ok(listener) => self.peers.reserving(listener, relay),
                Err(err) => {
                    warn!(%addr, %err, "could not ask a relay for a slot");
                    return self.peers.reserve_failed(relay, Instant::now());
                }
            },
            Effect::CloseConnection(connection) => {
                self.swarm.close_connection(connection);
            }
            Effect::Joined { reply, view } => {
                let _ = reply.send(Ok(*view));
            }
        }
        Vec::new()
    }

    /// Keeps who may speak in `room` in step with its state.
    fn refresh_access(&self, room: RoomId) {
        if let Some(speakers) = self.rooms.speakers(&room) {
            self.plane.tree.set_speakers(&room, speakers);
        }
        if let Some(stage) = self.rooms.stage_keys(&room) {
            self.plane.tree.set_stage(&room, stage);
        }
    }

    /// Something came along a room's tree.
    fn on_tree_event(&mut self, event: TreeEvent) {
        let now = now();
        let effects = match event {
            TreeEvent::Down { room, down } => self.rooms.on_down(now, room, down),
            TreeEvent::Act { room, via, act } => self.rooms.audience_act_via(now, room, &via, &act),
            TreeEvent::Report { room, report } => {
                self.rooms.audience_report(Instant::now(), room, report);
                Vec::new()
            }
        };
        self.apply(effects);
    }

    fn on_command(&mut self, command: Command) {
        let now = now();
        match command {
            Command::ListenAddrs { reply } => {
                let _ = reply.send(self.swarm.listeners().cloned().collect());
            }
            Command::Host {
                descriptor,
                name,
                keep,
                reply,
            } => {
                let room = descriptor.id;
                if let Some(store) = keep {
                    match store.kept_schedule(&room) {
                        Ok(Some(kept)) => self.rooms.kept_schedule(room, kept),
                        Ok(None) => {}
                        Err(err) => warn!(%room, %err, "could not read the room's key schedule"),
                    }
                    self.keepers.insert(room, store);
                }
                if let Err(err) = self.subscribe(room) {
                    let _ = reply.send(Err(super::HostError::Subscribe(err)));
                    return;
                }
                match self.rooms.host(now, descriptor, name) {
                    Ok(effects) => {
                        self.apply(effects);
                        let _ = reply.send(Ok(()));
                    }
                    Err(err) => {
                        if !self.rooms.contains(&room) {
                            self.apply(vec![Effect::Unsubscribe(room)]);
                        }
                        let _ = reply.send(Err(err));
                    }
                }
            }
            Command::Join { link, name, reply } => {
                let room = link.capability.room;
                if self.rooms.contains(&room) || self.rooms.is_joining(&room) {
                    let _ = reply.send(Err(JoinError::AlreadyJoined(room)));
                    return;
                }
                // A host reachable through a relay names it: this node may need it too.
                let mut effects = self.peers.named_relays(&link.bootstrap, now.instant);
                // The stage follows the topic from now on so nothing said during the handshake
                // is missed; the audience never follows it.
                if !Rooms::joins_audience(&link)
                    && let Err(err) = self.subscribe(room)
                {
                    let _ = reply.send(Err(JoinError::Subscribe(err)));
                    return;
                }
                effects.extend(self.rooms.join(now, link, name, reply));
                self.apply(effects);
            }
            Command::Act { room, body, reply } => match self.rooms.act(now, room, body) {
                Ok((changes, effects)) => {
                    self.apply(effects);
                    let _ = reply.send(Ok(changes));
                }
                Err(err) => {
                    let _ = reply.send(Err(err));
                }
            },
            Command::View { room, reply } => {
                let _ = reply.send(self.rooms.view(now, &room));
            }
            Command::Leave { room, reply } => {
                let effects = self.rooms.leave(now, room, CloseReason::Left);
                self.apply(effects);
                let _ = reply.send(());
            }
            Command::Over { room, reply } => {
                let effects = self.rooms.over(now, room);
                self.apply(effects);
                let _ = reply.send(());
            }
            Command::Lobby { reply } => {
                let _ = reply.send(self.lobby.live(now.wall));
            }
            Command::QueryLobby { peer, addrs, reply } => self.apply(vec![Effect::Request {
                peer,
                addrs,
                request: RoomRequest::Lobby,
                then: Pending::Lobby(reply),
            }]),
            Command::AnnounceTo {
                peer,
                addrs,
                announcement,
                reply,
            } => self.apply(vec![Effect::Request {
                peer,
                addrs,
                request: RoomRequest::Announce {
                    announcement: announcement.into(),
                },
                then: Pending::Announce(reply),
            }]),
            Command::PadSchedule {
                room,
                members,
                reply,
            } => {
                let _ = reply.send(self.rooms.private_pad(room, members));
            }
            Command::Listeners { room, page, reply } => {
                let Some(joined) = self.rooms.get(&room) else {
                    let _ = reply.send(Err(AttachError::NotInRoom(room)));
                    return;
                };
                if joined.is_host() {
                    let _ = reply.send(
                        self.rooms
                            .listeners_page(&room, page)
                            .map_err(AttachError::Refused),
                    );
                    return;
                }
                let Ok(host) = joined.descriptor.host.to_peer_id() else {
                    let _ = reply.send(Err(AttachError::NotAnEarshotPeer));
                    return;
                };
                let addrs = joined.descriptor.addrs();
                self.apply(vec![Effect::Request {
                    peer: host,
                    addrs,
                    request: RoomRequest::Listeners { room, page },
                    then: Pending::Listeners(reply),
                }]);
            }
            Command::Attach {
                room,
                whom,
                lost,
                ticket,
                reply,
            } => {
                if !self.rooms.contains(&room) {
                    let _ = reply.send(Err(AttachError::NotInRoom(room)));
                    return;
                }
                let Ok(peer) = whom.key.to_peer_id() else {
                    let _ = reply.send(Err(AttachError::NotAnEarshotPeer));
                    return;
                };
                // Asking the very parent it lost (the host went silent): the connection may be
                // to a process that is gone; a fresh one reaches the one there now (a host
                // started again) at once, not after QUIC's idle timeout.
                if lost == Some(whom.key) && self.swarm.is_connected(&peer) {
                    let _ = self.swarm.disconnect_peer_id(peer);
                }
                let mut addrs = earshot_protocol::addr::from_wire_lossy(&whom.addrs);
                if let Some(joined) = self.rooms.get(&room)
                    && whom.key == joined.descriptor.host
                {
                    addrs.extend(joined.descriptor.addrs());
                }
                let request = RoomRequest::Attach {
                    room,
                    lost,
                    ticket: ticket.map(serde_bytes::ByteBuf::from),
                };
                self.apply(vec![Effect::Request {
                    peer,
                    addrs,
                    request,
                    then: Pending::Attach(reply),
                }]);
            }
            Command::AskToCarry {
                relay,
                addrs,
                link,
                reply,
            } => {
                let room = earshot_protocol::InviteLink::decode(&link)
                    .ok()
                    .map(|link| link.capability.room);
                let key = earshot_protocol::PeerKey::from_peer_id(&relay).ok();
                if let (Some(room), Some(key)) = (room, key) {
                    // A carrier of a private room gets a place in its tree, never its keys.
                    self.rooms.private_carrier(room, key);
                }
                self.apply(vec![Effect::Request {
                    peer: relay,
                    addrs,
                    request: RoomRequest::Carry { link },
                    then: Pending::Carry {
                        reply,
                        room,
                        relay: key,
                    },
                }]);
            }
            Command::Dial { peer, addrs, reply } => {
                let effects = self.peers.dial(peer, addrs, reply);
                self.apply(effects);
            }
            Command::Moving { peer, reply } => {
                let _ = reply.send(self.peers.moving(&peer, std::time::Instant::now()));
            }
            Command::Eavesdrop {
                topic,
                messages,
                reply,
            } => {
                let topic = IdentTopic::new(topic);
                if let Err(err) = self.swarm.behaviour_mut().gossipsub.subscribe(&topic) {
                    warn!(%err, "could not eavesdrop");
                }
                self.topics.eavesdropped.insert(topic.hash(), messages);
                let _ = reply.send(());
            }
            Command::UpRaw { room, bytes, reply } => {
                let effects = self.rooms.raw_up(room, bytes);
                self.apply(effects);
                let _ = reply.send(());
            }
            Command::PublishRaw { room, bytes, reply } => {
                if self.rooms.contains(&room) {
                    // Queued and retried like any message if no subscriber is known yet.
                    self.apply(vec![Effect::Publish {
                        room,
                        bytes,
                        since: now.instant,
                    }]);
                } else if let Err(err) = self
                    .swarm
                    .behaviour_mut()
                    .gossipsub
                    .publish(self.topics.of(&room), bytes)
                {
                    warn!(%room, %err, "raw publish failed");
                }
                let _ = reply.send(());
            }
            Command::Shutdown { reply } => {
                // Handled in `run`; reached only if a caller races a shutdown.
                let _ = reply.send(());
            }
        }
    }

    pub(super) fn on_swarm_event(&mut self, event: SwarmEvent<BehaviourEvent>) {
        let instant = Instant::now();
        self.outside.metrics.record(&event);
        match event {
            SwarmEvent::NewListenAddr { address, .. } => {
                info!(%address, "listening");
                // A circuit relay serves reservations only once it knows addresses it can be
                // reached at: a community relay's listen addresses are those (its operator
                // opens the port).
                if self.swarm.behaviour().relay_server.is_enabled()
                    && !earshot_protocol::addr::is_relayed(&address)
                {
                    self.swarm.add_external_address(address.clone());
                }
                if earshot_protocol::addr::is_relayed(&address) {
                    let addr = earshot_protocol::addr::with_peer(
                        address.clone(),
                        *self.swarm.local_peer_id(),
                    );
                    self.emit(Event::ReachableViaRelay { addr });
                }
                // Children placed under this node from now on are told the new address too.
                for room in self.rooms.ids() {
                    let addrs = self.own_addrs(&room);
                    self.plane.tree.set_addrs(&room, &addrs);
                }
                self.emit(Event::Listening { addr: address });
            }
            SwarmEvent::ConnectionEstablished {
                peer_id,
                connection_id,
                endpoint,
                ..
            } => {
                let dialled_at = match &endpoint {
                    libp2p::core::ConnectedPoint::Dialer { address, .. } => Some(address.clone()),
                    libp2p::core::ConnectedPoint::Listener { .. } => None,
                };
                self.peers
                    .connected(peer_id, connection_id, endpoint.is_relayed(), dialled_at);
            }
            SwarmEvent::OutgoingConnectionError {
                peer_id: Some(peer_id),
                error,
                ..
            } => self.peers.dial_failed(peer_id, error.to_string()),
            SwarmEvent::ConnectionClosed {
                peer_id,
                connection_id,
                num_established,
                ..
            } => {
                self.peers
                    .closed(peer_id, connection_id, num_established, instant);
            }
            // Counted by the metrics.
            SwarmEvent::Behaviour(BehaviourEvent::RelayServer(event)) => {
                debug!(?event, "relay server");
            }
            SwarmEvent::Behaviour(BehaviourEvent::Gossipsub(event)) => self.on_gossip(event),
            SwarmEvent::Behaviour(BehaviourEvent::Rooms(event)) => self.on_rooms(event),
            SwarmEvent::Behaviour(BehaviourEvent::Identify(identify::Event::Received {
                peer_id,
                info,
                ..
            })) => {
                for addr in &info.listen_addrs {
                    self.swarm
                        .behaviour_mut()
                        .kad
                        .add_address(&peer_id, addr.clone());
                }
                let serves_relay = info.protocols.contains(&libp2p::relay::HOP_PROTOCOL_NAME);
                let effects =
                    self.peers
                        .identified(peer_id, info.listen_addrs, serves_relay, instant);
                self.apply(effects);
            }
            SwarmEvent::Behaviour(BehaviourEvent::Autonat(event)) => {
                debug!(addr = %event.tested_addr, server = %event.server, ok = event.result.is_ok(), "AutoNAT probe");
                let effects = self.peers.probed(event.result.is_ok(), instant);
                self.apply(effects);
            }
            SwarmEvent::Behaviour(BehaviourEvent::Dcutr(event)) => match event.result {
                Ok(_) => {
                    let effects = self.peers.hole_punched(event.remote_peer_id, instant);
                    self.apply(effects);
                }
                Err(err) => debug!(peer = %event.remote_peer_id, %err, "no direct connection"),
            },
            // A relayed listener closes when the relay refuses or drops the reservation.
            SwarmEvent::ListenerClosed { listener_id, .. } => {
                let effects = self.peers.listener_closed(listener_id, instant);
                self.apply(effects);
            }
            SwarmEvent::Behaviour(BehaviourEvent::Conduct(blocked)) => {
                warn!(peer = %blocked.peer, reason = %blocked.reason, "disconnected and kept out");
                self.outside.metrics.peers_blocked.inc();
                self.emit(Event::PeerBlocked {
                    peer: blocked.peer,
                    reason: blocked.reason,
                });
            }
            SwarmEvent::Behaviour(BehaviourEvent::Ping(libp2p::ping::Event {
                peer,
                result: Ok(rtt),
                ..
            })) => self.peers.pong(peer, rtt),
            _ => {}
        }
    }

    fn emit(&self, event: Event) {
        let _ = self.outside.events.send(event);
    }
}

fn now() -> Now {
    Now {
        wall: clock::now(),
        instant: Instant::now(),
    }
}
