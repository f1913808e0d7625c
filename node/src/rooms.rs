//! The rooms this node is in, as a sans-IO state machine: hosting, the join handshake (both
//! sides), this node's own actions, messages from the room's topic, heartbeats, the publish
//! queue, welcomes waiting for a joiner's subscription, lobby announcements of public rooms it
//! hosts, and the audience tier ([`audience`]): listeners off the topic, the room coming down
//! the relay tree to them and what they say going up it to the host.
//!
//! [`Rooms`] takes the time ([`Now`]) and its inputs and returns [`Effect`]s; it never touches
//! the swarm. What it needs to know of the network comes in as arguments: whether a peer follows
//! a room's topic, and the peers this node is connected to ([`Peers`]).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use earshot_protocol::capability::{NoRevocations, Presenter, VerifyContext};
use earshot_protocol::envelope::{Authority, Envelope};
use earshot_protocol::snapshot::{Refusal, RoomRequest, RoomResponse, RoomSnapshot};
use earshot_protocol::state::{Rejected, RoomChange, RoomState};
use earshot_protocol::{
    CapabilityError, ControlBody, InviteLink, PeerKey, RoomDescriptor, RoomId, Timestamp, Verified,
};
use libp2p::PeerId;
use rand::SeedableRng;
use tracing::{debug, info, warn};

use crate::effect::{Effect, InboundId};
use crate::event::{CloseReason, Event};
use crate::node::pending::{Pending, PendingJoin};
use crate::node::{HostError, JoinError, RoomView};
use crate::peers::Peers;

mod audience;
mod direct;
mod entry;
mod hosting;
mod joined;
mod joining;
mod private;
mod said;
mod voices;

pub use audience::{LISTENERS_PAGE, Placing};
pub use joined::{ActError, Joined, MAX_PENDING_PUBLISH, PUBLISH_RETRY_FOR, Tier};

/// Most gossip messages kept for a room whose snapshot has not arrived yet.
const MAX_EARLY_MESSAGES: usize = 512;
/// How long an audience member hears nothing from the host (its views come at least every
/// [`earshot_protocol::audience::host::VIEW_MAX_INTERVAL`]) before it takes the room as over.
pub const HOST_SILENT: Duration = Duration::from_secs(35);
/// How long an admitted joiner's welcome waits for its subscription to arrive.
pub const WELCOME_WAIT: Duration = Duration::from_secs(2);

/// The time, both ways: the wall clock for the protocol (signatures, expiry), the monotonic
/// clock for the node's own timers.
#[derive(Debug, Clone, Copy)]
pub struct Now {
    pub wall: Timestamp,
    pub instant: Instant,
}

/// What to do with a message from a room's topic (gossipsub's validation result).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Valid: forward it.
    Accept,
    /// Not for us, or a race (a duplicate, a clock a bit off): drop it, blame nobody.
    Ignore,
    /// Invalid: drop it and penalise whoever forwarded it.
    Reject,
}

/// An admitted joiner waiting for its welcome.
#[derive(Debug)]
struct Welcome {
    peer: PeerId,
    room: RoomId,
    inbound: InboundId,
    since: Instant,
}

/// The rooms this node is in.
#[derive(Debug)]
pub struct Rooms {
    signing: ed25519_dalek::SigningKey,
    me: PeerKey,
    joined: HashMap<RoomId, Joined>,
    /// Rooms being joined, with the messages heard before the snapshot (applied after it).
    joining: HashMap<RoomId, Vec<Verified<Envelope>>>,
    welcomes: Vec<Welcome>,
    /// Sequence numbers start from the clock (µs) so they keep increasing across restarts;
    /// each room gets a range of its own.
    seq_base: u64,
    /// Nonces for capabilities, salts for peer hints.
    rng: rand::rngs::StdRng,
    /// Joins this node admits a second (as a host, and as an entry point).
    joins: hosting::JoinBudget,
    /// Private rooms' key schedules kept from before a restart, until the room opens.
    kept: HashMap<RoomId, Vec<u8>>,
    /// Joins a busy host asked to try again, with when.
    busy: Vec<(Instant, PendingJoin)>,
}

pub use hosting::{ENTRY_JOINS_BURST, ENTRY_JOINS_PER_SEC, HOST_JOINS_BURST, HOST_JOINS_PER_SEC};

impl Rooms {
    pub fn new(signing: ed25519_dalek::SigningKey, now: Timestamp, seed: [u8; 32]) -> Self {
        let me = PeerKey::from(&signing);
        Self {
            signing,
            me,
            joined: HashMap::new(),
            joining: HashMap::new(),
            welcomes: Vec::new(),
            seq_base: now.as_millis().saturating_mul(1000),
            rng: rand::rngs::StdRng::from_seed(seed),
            joins: hosting::JoinBudget::default(),
            kept: HashMap::new(),
            busy: Vec::new(),
        }
    }

    pub fn me(&self) -> PeerKey {
        self.me
    }

    pub fn get(&self, room: &RoomId) -> Option<&Joined> {
        self.joined.get(room)
    }

    pub fn contains(&self, room: &RoomId) -> bool {
        self.joined.contains_key(room)
    }

    pub fn len(&self) -> usize {
        self.joined.len()
    }

    pub fn is_empty(&self) -> bool {
        self.joined.is_empty()
    }

    pub fn ids(&self) -> Vec<RoomId> {
        self.joined.keys().copied().collect()
    }

    /// Whether this node is joining `room` (its snapshot has not arrived yet).
    pub fn is_joining(&self, room: &RoomId) -> bool {
        self.joining.contains_key(room)
    }

    /// The room as this node sees it now; at the host, with its audience as of now (hands
    /// raised since its last view among them).
    pub fn view(&mut self, now: Now, room: &RoomId) -> Option<RoomView> {
        let joined = self.joined.get_mut(room)?;
        let view = match joined.audience.as_mut() {
            Some(audience) => {
                let listeners = joined.view.as_ref().map_or(0, |view| view.listeners);
                Some(audience.snapshot(now.wall, &joined.state, listeners, &self.signing))
            }
            None => joined.view.clone(),
        };
        Some(RoomView {
            descriptor: joined.descriptor.clone(),
            state: joined.state.clone(),
            audience: joined.tier == Tier::Audience,
            view,
            placement: None,
            ticket: None,
        })
    }

    /// Whether `key` is a present member of a room this node hosts.
    pub fn hosts_with(&self, room: &RoomId, key: &PeerKey) -> Result<(), Refusal> {
        let joined = self
            .joined
            .get(room)
            .filter(|joined| joined.is_host())
            .ok_or(Refusal::NotHost { room: *room })?;
        let present = joined
            .state
            .members
            .get(key)
            .is_some_and(|member| joined.state.is_present(member));
        if present {
            Ok(())
        } else {
            Err(Refusal::NotPresent)
        }
    }

    fn next_seq_base(&mut self) -> u64 {
        // Each room gets its own range; a node never sends 2^32 messages to one room.
        self.seq_base += 1 << 32;
        self.seq_base
    }

    /// Opens a room this node hosts (its topic is followed already) and joins it as the host.
    pub fn host(
        &mut self,
        now: Now,
        descriptor: RoomDescriptor,
        name: String,
    ) -> Result<Vec<Effect>, HostError> {
        let room = descriptor.id;
        if descriptor.host != self.me {
            return Err(HostError::NotHost(room));
        }
        if self.joined.contains_key(&room) || self.joining.contains_key(&room) {
            return Err(HostError::AlreadyJoined(room));
        }
        let state = RoomState::new(room, descriptor.host)
            .with_member_recording(descriptor.recording.members_may_record);
        let first_seq = self.next_seq_base();
        let mut joined = Joined::new(
            descriptor,
            state,
            Authority::Host,
            name.clone(),
            first_seq,
            now.instant,
        );
        let (bytes, changes) = joined.act(
            &self.signing,
            now.wall,
            now.instant,
            ControlBody::Join { name },
        )?;
        joined.audience = Some(hosting::audience(now, room));
        self.joined.insert(room, joined);
        let mut effects = vec![
            Effect::OpenTree {
                room,
                host: self.me,
            },
            Effect::Publish {
                room,
                bytes,
                since: now.instant,
            },
        ];
        self.changed(room, changes, &mut effects);
        self.private_open(now, room, &mut effects);
        // A public room is on the lobby from the moment it opens.
        self.announce(room, now, &mut effects);
        info!(%room, "hosting room");
        Ok(effects)
    }

    /// Starts joining the room `link` invites to (its topic is followed already): checks the
    /// link offline and asks the host. The outcome goes to `reply`.
    pub fn join(
        &mut self,
        now: Now,
        link: InviteLink,
        name: String,
        reply: tokio::sync::oneshot::Sender<Result<RoomView, JoinError>>,
    ) -> Vec<Effect> {
        let room = link.capability.room;
        if self.joined.contains_key(&room) || self.joining.contains_key(&room) {
            let _ = reply.send(Err(JoinError::AlreadyJoined(room)));
            return Vec::new();
        }
        let refuse = |reply: tokio::sync::oneshot::Sender<_>, err: JoinError| {
            let _ = reply.send(Err(err));
            vec![Effect::Unsubscribe(room)]
        };
        // Fail fast, offline, on anything the link itself shows.
        let context = VerifyContext {
            room,
            host: link.host,
            presenter: Presenter::Key(self.me),
            now: now.wall,
            revoked: &NoRevocations,
        };
        if let Err(err) = link.capability.verify(&context) {
            return refuse(reply, err.into());
        }
        let Ok(host) = link.host.to_peer_id() else {
            let err = CapabilityError::NotIssuedByHost {
                issuer: link.capability.root_issuer(),
                host: link.host,
            };
            return refuse(reply, err.into());
        };
        let first_seq = self.next_seq_base();
        let join = Envelope::sign(
            &self.signing,
            room,
            first_seq,
            now.wall,
            Authority::Capability(link.capability.clone()),
            ControlBody::Join { name: name.clone() },
        );
        let join = match join {
            Ok(envelope) => envelope,
            Err(err) => return refuse(reply, JoinError::Act(err.into())),
        };
        // Messages heard from now on are kept for after the snapshot.
        self.joining.insert(room, Vec::new());
        // A listener joins through an entry point the link names (a community relay carrying
        // the room), if any, so that the host does not admit the whole audience itself.
        let entry = (link.capability.role == earshot_protocol::Role::Listener)
            .then(|| entry::pick_entry(&link, &mut self.rng))
            .flatten();
        let (peer, addrs) = match &entry {
            Some((entry, addrs)) => (*entry, addrs.clone()),
            None => (host, entry::host_addrs(&link)),
        };
        info!(%room, host = %crate::node::short(&host), asked = %crate::node::short(&peer), "joining");
        let envelope = join.encode();
        vec![Effect::Request {
            peer,
            addrs,
            request: RoomRequest::Join {
                envelope: serde_bytes::ByteBuf::from(envelope.clone()),
            },
            then: Pending::Join(Box::new(PendingJoin {
                link,
                name,
                reply: Some(reply),
                next_seq: first_seq + 1,
                entry: entry.map(|(entry, _)| entry),
                envelope,
                busy_tries: 0,
            })),
        }]
    }

    /// The host answered our join.
    pub fn join_answered(
        &mut self,
        now: Now,
        pending: PendingJoin,
        response: RoomResponse,
        peers: &Peers,
    ) -> Vec<Effect> {
        let room = pending.link.capability.room;
        let (snapshot, keys) = match response {
            RoomResponse::Admitted {
                descriptor,
                view,
                placement,
                ticket,
                chat,
                keys,
            } if !self.joined.contains_key(&room) => {
                let admitted = audience::Admitted {
                    descriptor,
                    view,
                    placement,
                    ticket,
                    chat,
                };
                let mut effects = self.audience_joined(now, pending, admitted);
                if let Some(keys) = keys {
                    self.private_keys(room, &keys, &mut effects);
                }
                return effects;
            }
            RoomResponse::Welcome { snapshot, keys } => {
                match RoomSnapshot::decode_verified(&snapshot, room, pending.link.host) {
                    Ok(snapshot) => (snapshot.into_inner(), keys),
                    Err(err) => return self.join_failed(pending, JoinError::BadAnswer(err.into())),
                }
            }
            RoomResponse::Refused {
                refusal: Refusal::Busy,
            } if pending.busy_tries < joining::BUSY_TRIES => {
                return self.busy_again(now, pending);
            }
            RoomResponse::Refused { refusal } => {
                if pending.entry.is_some() {
                    let why = refusal.to_string();
                    if let Some(effects) = self.join_at_host(pending, &why) {
                        return effects;
                    }
                    return Vec::new();
                }
                return self.join_failed(pending, JoinError::Refused { refusal });
            }
            _ => {
                let err = JoinError::BadAnswer(crate::node::BadAnswer::Unexpected {
                    expected: "a welcome",
                });
                return self.join_failed(pending, err);
            }
        };
        let early = self.joining.remove(&room).unwrap_or_default();
        // The policy comes from the host-signed descriptor, whatever the snapshot says.
        let members_may_record = snapshot.descriptor.recording.members_may_record;
        // A listener stepping up: the audience's view of the room gives way to the fold.
        let before = self.joined.remove(&room);
        let mut joined = Joined::new(
            snapshot.descriptor,
            snapshot.state.with_member_recording(members_may_record),
            Authority::Capability(pending.link.capability.clone()),
            pending.name,
            pending.next_seq,
            now.instant,
        );
        let mut changes = Vec::new();
        if let Some(before) = &before {
            changes = before.state.changes_to(&joined.state);
            joined.view = before.view.clone();
            joined.link = before.link.clone();
        }
        if let Some(before) = before.as_ref().and_then(|before| before.private.as_ref()) {
            joined.private = Some(private::Private::member(before.ring.clone()));
        }
        for envelope in early {
            if let Ok(applied) = joined.state.apply(now.wall, &envelope) {
                changes.extend(applied);
            }
        }
        let view = RoomView {
            descriptor: joined.descriptor.clone(),
            state: joined.state.clone(),
            audience: false,
            view: joined.view.clone(),
            placement: None,
            ticket: None,
        };
        self.joined.insert(room, joined);
        let mut effects = Vec::new();
        if let Some(keys) = keys {
            self.private_keys(room, &keys, &mut effects);
        }
        if before.is_none() {
            effects.push(Effect::OpenTree {
                room,
                host: pending.link.host,
            });
        }
        // Dial a few members so the room's mesh is not a star around the host.
        for hint in &snapshot.peers {
            let Ok(peer) = hint.key.to_peer_id() else {
                continue;
            };
            if hint.key == self.me || peers.is_connected(&peer) {
                continue;
            }
            effects.push(Effect::Dial {
                peer,
                addrs: earshot_protocol::addr::from_wire_lossy(&hint.addrs),
            });
        }
        // A room new to this node: who may open audio streams in it, from its first state.
        effects.push(Effect::Changed {
            room,
            changes: Vec::new(),
        });
        self.changed(room, changes, &mut effects);
        info!(%room, "joined");
        if let Some(reply) = pending.reply {
            effects.push(Effect::Joined {
                reply,
                view: Box::new(view),
            });
        }
        effects
    }

    /// Our join failed (refused, unanswered, unreachable host). A listener that could not step
    /// up stays in the audience.
    pub fn join_failed(&mut self, pending: PendingJoin, err: JoinError) -> Vec<Effect> {
        let room = pending.link.capability.room;
        self.joining.remove(&room);
        let mut effects = vec![Effect::Unsubscribe(room)];
        match pending.reply {
            Some(reply) => {
                let _ = reply.send(Err(err));
            }
            None => {
                if let Some(joined) = self.joined.get_mut(&room) {
                    joined.stepping_up = false;
                }
                effects.push(Effect::Emit(Event::Error {
                    room: Some(room),
                    message: format!("could not step up to the stage: {err}"),
                }));
            }
        }
        effects
    }

    /// This node says something in a room (raise a hand, promote someone, chat …).
    pub fn act(
        &mut self,
        now: Now,
        room: RoomId,
        body: ControlBody,
    ) -> Result<(Vec<RoomChange>, Vec<Effect>), ActError> {
        let joined = self
            .joined
            .get_mut(&room)
            .ok_or(ActError::NotInRoom(room))?;
        // An accusation goes up the tree to the host, whoever says it (never on the topic).
        if joined.tier == Tier::Audience || matches!(body, ControlBody::Accuse { .. }) {
            return self.audience_own_act(now, room, body);
        }
        // Removing someone revokes the capabilities they joined with, as far as this node
        // knows them, unless the caller listed some.
        let body = match body {
            ControlBody::Remove { target, revoke } if revoke.is_empty() => ControlBody::Remove {
                target,
                revoke: joined
                    .capabilities_of(&target)
                    .into_iter()
                    .take(earshot_protocol::control::MAX_REVOCATIONS)
                    .collect(),
            },
            body => body,
        };
        if !joined.own_budget.take(self.me, &body, now.wall) {
            return Err(ActError::Rejected(Rejected::TooFast { author: self.me }));
        }
        let ends = matches!(body, ControlBody::RoomEnded);
        let (bytes, changes) = joined.act(&self.signing, now.wall, now.instant, body)?;
        let mut effects = vec![Effect::Publish {
            room,
            bytes: bytes.clone(),
            since: now.instant,
        }];
        if let Ok(envelope) = Envelope::decode_verified(&bytes) {
            self.relay_down(room, &envelope, &mut effects);
        }
        self.changed(room, changes.clone(), &mut effects);
        if ends {
            // The audience hears the end in a last view too (the relayed envelope may pass a
            // listener by while it changes parents).
            self.final_view(now, room, &mut effects);
            effects.extend(self.close(now, room, CloseReason::Ended));
        }
        Ok((changes, effects))
    }

    /// Leaves a room (the room hears a `Leave`), or gives up joining it.
    pub fn leave(&mut self, now: Now, room: RoomId, reason: CloseReason) -> Vec<Effect> {
        if let Some(joined) = self.joined.get_mut(&room) {
            let mut effects = Vec::new();
            if joined.tier == Tier::Audience {
                if let Ok((_, up)) = self.audience_own_act(now, room, ControlBody::Leave) {
                    effects.extend(up);
                }
            } else if let Ok((bytes, _)) =
                joined.act(&self.signing, now.wall, now.instant, ControlBody::Leave)
            {
                effects.push(Effect::Publish {
                    room,
                    bytes,
                    since: now.instant,
                });
            }
            effects.extend(self.close(now, room, reason));
            effects
        } else if self.joining.remove(&room).is_some() {
            vec![Effect::Unsubscribe(room)]
        } else {
            Vec::new()
        }
    }

    /// The room is over for this node without it hearing the end: closed as ended.
    pub fn over(&mut self, now: Now, room: RoomId) -> Vec<Effect> {
        if !self.joined.contains_key(&room) {
            return Vec::new();
        }
        info!(%room, "the room is over: the host closed it or went silent");
        self.close(now, room, CloseReason::Ended)
    }

    /// Leaves every room (the node is stopping).
    pub fn leave_all(&mut self, now: Now) -> Vec<Effect> {
        let mut effects = Vec::new();
        for room in self.ids() {
            effects.extend(self.leave(now, room, CloseReason::Left));
        }
        effects
    }

    /// This node is no longer in `room`.
    pub(super) fn close(&mut self, now: Now, room: RoomId, reason: CloseReason) -> Vec<Effect> {
        let Some(mut joined) = self.joined.remove(&room) else {
            return Vec::new();
        };
        // Queued messages (our Leave, RoomEnded) get one last try before unsubscribing.
        let mut effects: Vec<Effect> = joined
            .take_queued(now.instant)
            .into_iter()
            .map(|(since, bytes)| Effect::Publish { room, bytes, since })
            .collect();
        self.welcomes.retain(|welcome| welcome.room != room);
        private::closed(&joined, room, reason, &mut effects);
        effects.push(Effect::Unsubscribe(room));
        effects.push(Effect::Forget(room));
        info!(%room, ?reason, "left room");
        effects.push(Effect::Emit(Event::Closed { room, reason }));
        effects
    }

    /// Keeps bytes that could not be published (nobody subscribed seen yet) for another try.
    pub fn queue(&mut self, room: RoomId, since: Instant, bytes: Vec<u8>) {
        if let Some(joined) = self.joined.get_mut(&room) {
            joined.queue(since, bytes);
        }
    }

    /// Everything queued, to publish again (on a new subscription, and every tick).
    pub fn retry(&mut self, now: Now) -> Vec<Effect> {
        let mut effects = Vec::new();
        for (room, joined) in &mut self.joined {
            for (since, bytes) in joined.take_queued(now.instant) {
                effects.push(Effect::Publish {
                    room: *room,
                    bytes,
                    since,
                });
            }
        }
        effects
    }

    /// A message from `room`'s topic, forwarded by `source`, published by `origin` (gossipsub's
    /// signed source).
    pub fn on_message(
        &mut self,
        now: Now,
        source: PeerId,
        origin: Option<PeerId>,
        room: Option<RoomId>,
        data: &[u8],
    ) -> (Verdict, Vec<Effect>) {
        let envelope = match Envelope::decode_verified(data) {
            Ok(envelope) => envelope,
            Err(err) => return (Verdict::Reject, vec![rejected(room, source, err)]),
        };
        let Some(room) = room else {
            return (Verdict::Ignore, Vec::new());
        };
        if let Some(early) = self.joining.get_mut(&room) {
            // Still joining: keep it for after the snapshot; don't forward what we can't judge.
            if early.len() < MAX_EARLY_MESSAGES {
                early.push(envelope);
            }
            return (Verdict::Ignore, Vec::new());
        }
        let Some(joined) = self.joined.get_mut(&room) else {
            return (Verdict::Ignore, Vec::new());
        };
        // The audience speaks through the host: a listener's own envelope on the topic is
        // refused unless the host published it (its chat let through), whatever its signature.
        if !joined.may_publish(&envelope, origin) {
            let reason = "a listener's message not relayed by the host (the audience speaks \
                          through the host)";
            return (Verdict::Reject, vec![rejected(Some(room), source, reason)]);
        }
        match joined.state.apply(now.wall, &envelope) {
            Ok(changes) => {
                let mut effects = Vec::new();
                self.relay_down(room, &envelope, &mut effects);
                let ended = changes
                    .iter()
                    .any(|change| matches!(change, RoomChange::RoomEnded { .. }));
                let removed = changes.iter().any(
                    |change| matches!(change, RoomChange::Removed { member, .. } if *member == self.me),
                );
                self.changed(room, changes, &mut effects);
                if ended {
                    effects.extend(self.close(now, room, CloseReason::Ended));
                } else if removed {
                    effects.extend(self.close(now, room, CloseReason::Removed));
                }
                (Verdict::Accept, effects)
            }
            // Races, not attacks: a duplicate that crossed our snapshot, or a clock a bit off.
            Err(Rejected::Replay { .. } | Rejected::TooOld { .. }) => (Verdict::Ignore, Vec::new()),
            // An author over its budget here may not have been where it came from (budgets
            // follow each node's clock): not shown, not passed on, nobody blamed.
            Err(Rejected::TooFast { author }) => {
                debug!(%room, author = %author.short(), "an author over its chat budget");
                (Verdict::Ignore, Vec::new())
            }
            Err(reason) => (Verdict::Reject, vec![rejected(Some(room), source, reason)]),
        }
    }

    /// Timers: members timing out, this node's heartbeats, lobby announcements, the publish
    /// queue, welcomes that waited long enough.
    pub fn tick(
        &mut self,
        now: Now,
        follows: impl Fn(&PeerId, &RoomId) -> bool,
        tree_size: impl Fn(&RoomId) -> u32,
        peers: &Peers,
    ) -> Vec<Effect> {
        let mut effects = Vec::new();
        for room in self.ids() {
            let Some(joined) = self.joined.get_mut(&room) else {
                continue;
            };
            // The audience hears no heartbeats and sends none: its room is the host's view,
            // and a host whose views stopped coming is gone.
            if joined.tier == Tier::Audience {
                effects.extend(direct::overdue(joined, room, now.instant));
                if now.instant.saturating_duration_since(joined.heard_at) > HOST_SILENT {
                    warn!(%room, "no word from the host for {} s: the room is over", HOST_SILENT.as_secs());
                    effects.extend(self.over(now, room));
                }
                continue;
            }
            let timeouts = joined.state.tick(now.wall);
            let heartbeat = if joined.presence_due(now.instant) {
                joined
                    .act(&self.signing, now.wall, now.instant, ControlBody::Presence)
                    .ok()
            } else {
                None
            };
            self.changed(room, timeouts, &mut effects);
            if let Some((bytes, changes)) = heartbeat {
                effects.push(Effect::Publish {
                    room,
                    bytes,
                    since: now.instant,
                });
                self.changed(room, changes, &mut effects);
            }
            self.private_tick(now, room, &mut effects);
            self.host_view(now, room, tree_size(&room), &mut effects);
            self.announce(room, now, &mut effects);
        }
        effects.extend(self.retry(now));
        effects.extend(self.ask_again(now));
        effects.extend(self.flush_welcomes(now, Some(WELCOME_WAIT), &follows, peers));
        effects
    }

    /// Reports a room's changes (events for the front ends, and for the event loop: tree and
    /// audio access), and keeps the replays a public room's lobby entry lists.
    fn changed(&mut self, room: RoomId, changes: Vec<RoomChange>, effects: &mut Vec<Effect>) {
        // Nothing changed (a heartbeat, most often): nothing to tell, nothing to recompute.
        if changes.is_empty() {
            return;
        }
        let Some(joined) = self.joined.get_mut(&room) else {
            return;
        };
        joined.note_replays(&changes);
        private::removed(joined, &changes);
        // The host's audience hears of the stage in its next view, and of its applause.
        if let Some(audience) = joined.audience.as_mut() {
            audience.stage_changed();
            for change in &changes {
                if let RoomChange::Reaction { emoji, .. } = change {
                    audience.react(emoji);
                }
            }
        }
        for change in &changes {
            let name = |key: &PeerKey| joined.name_of(key);
            effects.push(Effect::Emit(Event::of_change_named(room, change, name)));
        }
        effects.push(Effect::Changed { room, changes });
    }
}

fn rejected(room: Option<RoomId>, from: PeerId, reason: impl std::fmt::Display) -> Effect {
    let reason = reason.to_string();
    warn!(from = %crate::node::short(&from), %reason, "rejected a control message");
    debug!(?room, "rejected message's room");
    Effect::Emit(Event::Rejected {
        room,
        from: Some(from),
        reason,
    })
}

#[cfg(test)]
mod tests;
