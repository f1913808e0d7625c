//! Private rooms in the rooms machine: the host's key schedule (members admitted, removed,
//! expired; the epoch stepped and its keys sent down the tree), and a member's keys (from its
//! join's answer, from the tree, or asked of the host when it missed a step). The audio plane
//! and the event loop get each room's [`Ring`] through [`Effect::Keyring`].
//!
//! Community relays the host asked to carry the room are in its tree, never in its schedule:
//! they relay what they cannot read.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use earshot_protocol::audience::AudienceView;
use earshot_protocol::audience::view::ViewKeys;
use earshot_protocol::audience::wire::Down;
use earshot_protocol::private::schedule::{OLD_EPOCH_GRACE_MS, Schedule};
use earshot_protocol::private::{Keys, Ring, SealedAct, Secret};
use earshot_protocol::snapshot::{Refusal, RoomRequest, RoomResponse};
use earshot_protocol::state::RoomChange;
use earshot_protocol::{Authority, Envelope, PeerKey, RoomId, Visibility};
use rand::RngExt;
use tracing::{debug, info, warn};

use super::{Now, Rooms};
use crate::effect::Effect;
use crate::node::pending::Pending;

/// A member that missed a step asks the host again no sooner than this.
const ASK_AGAIN: Duration = Duration::from_secs(2);
/// The host answers a member's asking for the epoch no more often than this (more is a flood:
/// it is told to wait).
pub const RESEAL_EVERY: Duration = Duration::from_secs(1);

/// One private room at this node.
#[derive(Debug, Default)]
pub struct Private {
    /// The epochs this node holds (the host's included).
    pub ring: Ring,
    /// At the host: the schedule.
    pub schedule: Option<Schedule>,
    /// At the host: community relays asked to carry the room (never given keys).
    pub carriers: HashSet<PeerKey>,
    /// When this member last asked the host for the epoch.
    asked: Option<Instant>,
    /// At the host: the schedule changed since it was last kept.
    dirty: bool,
    /// At the host: when each member was last given the epoch it asked for.
    resealed: std::collections::HashMap<PeerKey, Instant>,
}

/// At the host: members removed by `changes` are out of the key schedule (and whoever joined
/// with a link their removal revoked).
pub(super) fn removed(joined: &mut super::joined::Joined, changes: &[RoomChange]) {
    let Some(private) = joined.private.as_mut() else {
        return;
    };
    let Some(schedule) = private.schedule.as_mut() else {
        return;
    };
    for change in changes {
        if let RoomChange::Removed { member, .. } = change {
            schedule.remove(member);
            schedule.revoke(&joined.state.revoked);
            private.dirty = true;
        }
    }
}

/// A room closes: at the host, the key schedule of a private room that ended is forgotten (one
/// that stopped otherwise, with the process, is kept for the next start).
pub(super) fn closed(
    joined: &super::joined::Joined,
    room: RoomId,
    reason: crate::event::CloseReason,
    effects: &mut Vec<Effect>,
) {
    let hosted = joined
        .private
        .as_ref()
        .is_some_and(|private| private.schedule.is_some());
    if hosted && reason == crate::event::CloseReason::Ended {
        effects.push(Effect::KeepSchedule {
            room,
            sealed: None,
            durable: true,
        });
    }
}

impl Private {
    /// A member's keys (a listener stepping up keeps what it held).
    pub fn member(ring: Ring) -> Self {
        Self {
            ring,
            ..Self::default()
        }
    }
}

impl Rooms {
    /// The key schedule `room` kept before this node restarted: the room goes on with it when
    /// it opens.
    pub fn kept_schedule(&mut self, room: RoomId, sealed: Vec<u8>) {
        self.kept.insert(room, sealed);
    }

    /// At the host, opening a room: a private room's schedule starts, or goes on where it was
    /// before a restart (its members keep their keys; whoever was removed stays out, of the
    /// schedule and of the room).
    pub(super) fn private_open(&mut self, now: Now, room: RoomId, effects: &mut Vec<Effect>) {
        let random: [u8; 32] = self.rng.random();
        let nonce: [u8; 12] = self.rng.random();
        let topic = Secret::topic_of(&self.signing, &room);
        let kept = self.kept.remove(&room);
        let Some(joined) = self.joined.get_mut(&room) else {
            return;
        };
        if joined.descriptor.visibility != Visibility::Private {
            return;
        }
        let restored = kept.and_then(|kept| {
            Schedule::restore(&kept, room, &self.signing)
                .inspect_err(|err| warn!(%room, %err, "the room's keys start afresh"))
                .ok()
        });
        let schedule = match restored {
            Some(schedule) => {
                info!(%room, epoch = schedule.current().n, members = schedule.members(), "the key schedule goes on from before the restart");
                joined
                    .state
                    .banned
                    .extend(schedule.removed_keys().iter().copied());
                joined
                    .state
                    .revoked
                    .extend(schedule.revoked().iter().copied());
                schedule
            }
            None => Schedule::new(room, Secret::from_bytes(random), topic.clone(), now.wall),
        };
        effects.push(Effect::KeepSchedule {
            room,
            sealed: Some(schedule.save(&self.signing, nonce)),
            durable: true,
        });
        let mut ring = Ring::default();
        ring.insert(schedule.current().clone());
        if let Some(next) = schedule.next() {
            ring.expect(next.clone());
        }
        ring.set_topic(schedule.topic().clone());
        if let Some(audience) = joined.audience.as_mut() {
            audience.set_keys(ViewKeys {
                epoch: schedule.current().n,
                fresh: schedule.fresh_epoch(),
                check: schedule.current().check(),
            });
        }
        effects.push(Effect::Keyring {
            room,
            ring: ring.clone(),
        });
        joined.private = Some(Private {
            ring,
            schedule: Some(schedule),
            ..Private::default()
        });
    }

    /// At the host: `relay` was asked to carry `room`; it gets a place in the tree, no keys.
    pub fn private_carrier(&mut self, room: RoomId, relay: PeerKey) {
        if let Some(private) = self
            .joined
            .get_mut(&room)
            .and_then(|joined| joined.private.as_mut())
        {
            private.carriers.insert(relay);
        }
    }

    /// At the host: the keys a joiner of a private room gets (the epoch the room steps to
    /// next, sealed to it alone), none for a public room or a carrier; refused when the room
    /// is full.
    pub(super) fn private_admit(
        &mut self,
        envelope: &Envelope,
    ) -> Result<Option<serde_bytes::ByteBuf>, Refusal> {
        let ephemeral: [u8; 32] = self.rng.random();
        let Some(private) = self
            .joined
            .get_mut(&envelope.room)
            .and_then(|joined| joined.private.as_mut())
        else {
            return Ok(None);
        };
        if private.carriers.contains(&envelope.author) {
            info!(room = %envelope.room, relay = %envelope.author.short(), "a carrier joins: a place, no keys");
            return Ok(None);
        }
        let Some(schedule) = private.schedule.as_mut() else {
            return Ok(None);
        };
        let held = match &envelope.authority {
            Authority::Capability(capability) => {
                (Some(capability.expires_at), Some(capability.id()))
            }
            _ => (None, None),
        };
        let keys = schedule
            .admit(envelope.author, held, ephemeral, &self.signing)
            .map_err(|full| Refusal::Rejected {
                reason: full.to_string(),
            })?;
        // The joiner seals with the next epoch at once: the host opens it already.
        if let Some(next) = schedule.next() {
            private.ring.expect(next.clone());
        }
        private.dirty = true;
        Ok(Some(serde_bytes::ByteBuf::from(keys.encode())))
    }

    /// Benches: `members` join the key schedule of `room` (a private room this node hosts)
    /// with no node behind them, so that its fresh epochs are as large as a room of that many.
    /// Returns the schedule's size.
    #[doc(hidden)]
    pub fn private_pad(&mut self, room: RoomId, members: Vec<PeerKey>) -> usize {
        let Some(private) = self
            .joined
            .get_mut(&room)
            .and_then(|joined| joined.private.as_mut())
        else {
            return 0;
        };
        let Some(schedule) = private.schedule.as_mut() else {
            return 0;
        };
        for member in members {
            schedule.add_unsealed(member);
        }
        private.dirty = true;
        schedule.members()
    }

    /// This node's keys for `room` go to the audio plane and the topic.
    pub(super) fn private_ring(&self, room: RoomId, effects: &mut Vec<Effect>) {
        if let Some(private) = self
            .joined
            .get(&room)
            .and_then(|joined| joined.private.as_ref())
        {
            effects.push(Effect::Keyring {
                room,
                ring: private.ring.clone(),
            });
        }
    }

    /// At the host, every tick: the schedule's step, if one is due, goes down the tree.
    pub(super) fn private_tick(&mut self, now: Now, room: RoomId, effects: &mut Vec<Effect>) {
        let random: [u8; 32] = self.rng.random();
        let ephemeral: [u8; 32] = self.rng.random();
        let nonce: [u8; 12] = self.rng.random();
        let signing = self.signing.clone();
        let Some(joined) = self.joined.get_mut(&room) else {
            return;
        };
        let Some(private) = joined.private.as_mut() else {
            return;
        };
        let Some(schedule) = private.schedule.as_mut() else {
            return;
        };
        let steps = schedule.tick(now.wall, random, ephemeral, &signing);
        if private.dirty || !steps.is_empty() {
            private.dirty = false;
            effects.push(Effect::KeepSchedule {
                room,
                sealed: Some(schedule.save(&signing, nonce)),
                durable: !steps.is_empty(),
            });
        }
        // Once the grace after a fresh epoch is over, frames under the epochs before it (which
        // a removed member holds) are refused.
        let graced =
            now.wall.as_millis() >= schedule.fresh_since().as_millis() + OLD_EPOCH_GRACE_MS;
        if steps.is_empty() {
            if graced && private.ring.forget_before(schedule.fresh_epoch()) {
                effects.push(Effect::Keyring {
                    room,
                    ring: private.ring.clone(),
                });
            }
            return;
        }
        let (epoch, fresh) = (schedule.current().clone(), schedule.fresh_epoch());
        info!(%room, epoch = epoch.n, fresh = epoch.n == fresh, members = schedule.members(), "the key schedule stepped");
        private.ring.insert(epoch.clone());
        if let Some(audience) = joined.audience.as_mut() {
            audience.set_keys(ViewKeys {
                epoch: epoch.n,
                fresh,
                check: epoch.check(),
            });
        }
        effects.push(Effect::Keyring {
            room,
            ring: private.ring.clone(),
        });
        for step in steps {
            effects.push(Effect::Down {
                room,
                down: Down::Keys(serde_bytes::ByteBuf::from(step.encode())),
            });
        }
    }

    /// At the host: a member that missed a step asks for the epoch now. Each member is answered
    /// at most once in [`RESEAL_EVERY`] (each answer costs an X25519 and a signature; members
    /// ask once in [`ASK_AGAIN`]); a non-member is refused at the cost of a lookup.
    pub fn private_reseal(&mut self, now: Now, room: RoomId, asker: PeerKey) -> RoomResponse {
        let ephemeral: [u8; 32] = self.rng.random();
        let refused = || RoomResponse::Refused {
            refusal: Refusal::Rejected {
                reason: "not a member of this private room".into(),
            },
        };
        let Some(private) = self
            .joined
            .get_mut(&room)
            .filter(|joined| joined.is_host())
            .and_then(|joined| joined.private.as_mut())
        else {
            return refused();
        };
        let Some(schedule) = private.schedule.as_ref() else {
            return refused();
        };
        if !schedule.is_member(&asker) {
            return refused();
        }
        let recently = |at: &Instant| now.instant.saturating_duration_since(*at) < RESEAL_EVERY;
        if private.resealed.get(&asker).is_some_and(recently) {
            return RoomResponse::Waiting;
        }
        if private.resealed.len() >= schedule.members() {
            private.resealed.retain(|_, at| recently(at));
        }
        private.resealed.insert(asker, now.instant);
        match schedule.reseal(&asker, ephemeral, &self.signing) {
            Some(keys) => RoomResponse::Keys {
                keys: serde_bytes::ByteBuf::from(keys.encode()),
            },
            None => refused(),
        }
    }

    /// A member: keys from the host (its join's answer, the tree, or its answer when asked).
    pub(super) fn private_keys(&mut self, room: RoomId, bytes: &[u8], effects: &mut Vec<Effect>) {
        let signing = self.signing.clone();
        let Some(joined) = self.joined.get_mut(&room) else {
            return;
        };
        if joined.is_host() {
            return;
        }
        let keys = match Keys::decode_verified(bytes, room, &joined.descriptor.host) {
            Ok(keys) => keys,
            Err(err) => {
                debug!(%room, %err, "refused keys");
                return;
            }
        };
        let private = joined.private.get_or_insert_with(Private::default);
        let stepped = match keys.open(&signing) {
            Some((epoch, topic)) => {
                private.ring.set_topic(topic);
                private.ring.correct(epoch)
            }
            None if keys.how == earshot_protocol::private::How::Ratchet => {
                // A ratchet after no fresh epoch this node missed: fresh is at most the
                // epoch it holds.
                let fresh = private.ring.current().map_or(u32::MAX, |held| held.n);
                private.ring.ratchet_to(&room, keys.epoch, fresh, None)
            }
            None => false,
        };
        if stepped {
            debug!(%room, epoch = keys.epoch, "keys stepped");
            effects.push(Effect::Keyring {
                room,
                ring: private.ring.clone(),
            });
        }
    }

    /// The host refused this member the epoch: it is no longer one (removed, its link revoked
    /// with someone else's removal, or expired). It is told, and the room closes for it.
    pub fn private_refused(&mut self, now: Now, room: RoomId, reason: &str) -> Vec<Effect> {
        if !self.joined.contains_key(&room) {
            return Vec::new();
        }
        warn!(%room, %reason, "the host no longer gives this node the room's keys");
        let mut effects = vec![Effect::Emit(crate::event::Event::Error {
            room: Some(room),
            message: format!(
                "you can no longer hear or read this private room ({reason}): your invite was \
                 revoked or has expired, or the host lost the room's keys (join again if your \
                 link is still valid)"
            ),
        })];
        effects.extend(self.close(now, room, crate::event::CloseReason::Removed));
        effects
    }

    /// The host's answer to this member's asking for the epoch.
    pub fn private_answer(&mut self, room: RoomId, keys: &[u8]) -> Vec<Effect> {
        let mut effects = Vec::new();
        self.private_keys(room, keys, &mut effects);
        effects
    }

    /// A member reading the host's view: if the schedule is past what it holds, it steps
    /// forward on its own, or asks the host (it missed a fresh epoch: moving in the tree, or
    /// joining as the room stepped).
    pub(super) fn private_view(
        &mut self,
        now: Now,
        room: RoomId,
        keys: Option<ViewKeys>,
        effects: &mut Vec<Effect>,
    ) {
        let Some(keys) = keys else {
            return;
        };
        let Some(joined) = self.joined.get_mut(&room) else {
            return;
        };
        if joined.is_host() {
            return;
        }
        // A node never given keys (a carrier) has none to miss.
        let Some(private) = joined.private.as_mut() else {
            return;
        };
        let Some(held) = private.ring.current() else {
            return;
        };
        // Ahead (a joiner holds the epoch the room steps to next), or where the host is.
        if held.n > keys.epoch || (held.n == keys.epoch && held.check() == keys.check) {
            return;
        }
        if held.n < keys.epoch
            && private
                .ring
                .ratchet_to(&room, keys.epoch, keys.fresh, Some(keys.check))
        {
            effects.push(Effect::Keyring {
                room,
                ring: private.ring.clone(),
            });
            return;
        }
        warn!(%room, epoch = keys.epoch, "missed a step of the room's keys: asking the host");
        self.ask_keys(now, room, effects);
    }

    /// A member asks the host for the epoch now (at most once in [`ASK_AGAIN`]).
    fn ask_keys(&mut self, now: Now, room: RoomId, effects: &mut Vec<Effect>) {
        let Some(joined) = self.joined.get_mut(&room) else {
            return;
        };
        let Some(private) = joined.private.as_mut() else {
            return;
        };
        if private
            .asked
            .is_some_and(|at| now.instant.saturating_duration_since(at) < ASK_AGAIN)
        {
            return;
        }
        private.asked = Some(now.instant);
        let Ok(peer) = joined.descriptor.host.to_peer_id() else {
            return;
        };
        effects.push(Effect::Request {
            peer,
            addrs: joined.descriptor.addrs(),
            request: RoomRequest::Keys { room },
            then: Pending::Keys { room },
        });
    }
}

impl Rooms {
    /// Whether this node reads `room` as a member of a private room (it holds its keys).
    pub(super) fn reads_sealed(&self, room: &RoomId) -> bool {
        self.joined.get(room).is_some_and(|joined| {
            !joined.is_host()
                && joined
                    .private
                    .as_ref()
                    .is_some_and(|private| private.ring.current().is_some())
        })
    }

    /// Seals `plain` for `room`'s members under the epoch this node holds now (`None`: not a
    /// private room, or no keys).
    fn seal_for(&mut self, room: &RoomId, plain: &[u8]) -> Option<Vec<u8>> {
        let nonce: [u8; 12] = self.rng.random();
        let epoch = self.joined.get(room)?.private.as_ref()?.ring.current()?;
        Some(epoch.seal(room, plain, nonce))
    }

    /// At the host: a view goes down the tree. In a private room, whole and sealed for the
    /// members, and redacted in the clear for the relays (they need the stage's keys, the
    /// bans and the exclusions, never names).
    pub(super) fn view_down(
        &mut self,
        room: RoomId,
        view: &AudienceView,
        effects: &mut Vec<Effect>,
    ) {
        let whole = Down::View(serde_bytes::ByteBuf::from(view.encode()));
        match self.seal_for(&room, &whole.encode()) {
            Some(sealed) => {
                let redacted = view.redacted(&self.signing);
                effects.push(Effect::Down {
                    room,
                    down: Down::View(serde_bytes::ByteBuf::from(redacted.encode())),
                });
                effects.push(Effect::Down {
                    room,
                    down: Down::Sealed(serde_bytes::ByteBuf::from(sealed)),
                });
            }
            None => effects.push(Effect::Down { room, down: whole }),
        }
    }

    /// At the host: a relayed envelope goes down the tree (sealed, in a private room).
    pub(super) fn envelope_down(
        &mut self,
        room: RoomId,
        relayed: Vec<u8>,
        effects: &mut Vec<Effect>,
    ) {
        let plain = Down::Envelope(serde_bytes::ByteBuf::from(relayed));
        let down = match self.seal_for(&room, &plain.encode()) {
            Some(sealed) => Down::Sealed(serde_bytes::ByteBuf::from(sealed)),
            None => plain,
        };
        effects.push(Effect::Down { room, down });
    }

    /// A member's own action for the host: sealed in a private room (relays on the way read
    /// only who it is from).
    /// Any envelope sent up as an action (adversarial tests: [`crate::node::Node::send_up_raw`]).
    pub fn raw_up(&mut self, room: RoomId, envelope: Vec<u8>) -> Vec<Effect> {
        let act = self.act_up(&room, envelope);
        vec![Effect::Up {
            room,
            act,
            urgent: false,
        }]
    }

    pub(super) fn act_up(&mut self, room: &RoomId, envelope: Vec<u8>) -> Vec<u8> {
        match self.seal_for(room, &envelope) {
            Some(sealed) => SealedAct {
                author: self.me,
                sealed: serde_bytes::ByteBuf::from(sealed),
            }
            .encode(),
            None => envelope,
        }
    }

    /// At the host: an action that came up, opened if it was sealed (and its author what the
    /// seal said). `None`: not an action.
    pub(super) fn opened_act(&self, room: &RoomId, bytes: &[u8]) -> Option<Vec<u8>> {
        let Ok(sealed) = SealedAct::decode(bytes) else {
            return Some(bytes.to_vec());
        };
        let private = self.joined.get(room)?.private.as_ref()?;
        let plain = private.ring.open(room, &sealed.sealed).ok()?;
        let envelope = Envelope::decode_verified(&plain).ok()?;
        (envelope.author == sealed.author).then_some(plain)
    }

    /// A member: a view or envelope sealed for the room came down; opened, it is read like
    /// any. (A relay passes it on unread; so does a member that cannot open it yet.)
    pub(super) fn open_down(&mut self, now: Now, room: RoomId, bytes: &[u8]) -> Vec<Effect> {
        let Some(private) = self
            .joined
            .get(&room)
            .and_then(|joined| joined.private.as_ref())
        else {
            return Vec::new();
        };
        let inner = match private.ring.open(&room, bytes) {
            Ok(plain) => Down::decode(&plain),
            Err(err) => {
                debug!(%room, %err, "a sealed message this node cannot open");
                return Vec::new();
            }
        };
        match inner {
            Ok(down @ (Down::View(_) | Down::Envelope(_))) => self.on_down_opened(now, room, down),
            _ => Vec::new(),
        }
    }
}

impl Rooms {
    /// Something came down the tree for this node: the host's view, an envelope it relayed, a
    /// notice for this node.
    pub fn on_down(&mut self, now: Now, room: RoomId, down: Down) -> Vec<Effect> {
        match down {
            // A private room's member reads the views sealed for it; of the redacted one in
            // the clear (the relays'), only where the key schedule is.
            Down::View(bytes) if self.reads_sealed(&room) => {
                let host = self.joined.get(&room).map(|joined| joined.descriptor.host);
                let mut effects = Vec::new();
                if let Some(view) =
                    host.and_then(|host| AudienceView::decode_verified(&bytes, room, &host).ok())
                {
                    self.private_view(now, room, view.keys, &mut effects);
                }
                effects
            }
            Down::Sealed(bytes) => self.open_down(now, room, &bytes),
            down => self.on_down_opened(now, room, down),
        }
    }
}
