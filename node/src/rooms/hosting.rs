//! What only a host does in its rooms: admitting joiners (the stage with the room's snapshot,
//! once they follow the room's topic; the audience with a place in the tree and the latest
//! view), and announcing public rooms on the lobby.

use std::time::Duration;

use earshot_protocol::envelope::Envelope;
use earshot_protocol::snapshot::{
    ANNOUNCE_INTERVAL_MS, ANNOUNCEMENT_TTL_MS, Announcement, MAX_PEER_HINTS, PeerHint, Refusal,
    RoomResponse, RoomSnapshot,
};
use earshot_protocol::{
    Audience, Capability, ControlBody, Grant, PeerKey, Role, RoomId, Visibility,
};
use libp2p::PeerId;
use rand::RngExt;
use sha2::{Digest, Sha256};
use tracing::{info, warn};

use earshot_protocol::audience::host::{AudiencePolicy, HostAudience};
use earshot_protocol::bucket::Bucket;

use super::{Now, Rooms, Welcome};
use crate::effect::{Effect, InboundId};
use crate::peers::Peers;

/// What a joiner is admitted to.
enum Admission {
    /// With the keys of a private room, sealed to the joiner.
    Stage(RoomId, Option<serde_bytes::ByteBuf>),
    Audience(
        Box<earshot_protocol::Verified<Envelope>>,
        Option<serde_bytes::ByteBuf>,
    ),
}

/// How long the listener capability a public room's lobby entry carries is valid; it is renewed
/// when less than half is left.
const LOBBY_CAPABILITY_MS: u64 = 3_600_000;

impl Rooms {
    /// The host's side of a join. A listener (by its invite, unless the stage promoted it) is
    /// admitted to the audience: checked by the room's rules but not folded, placed in the relay
    /// tree by `place`, and answered at once. Anyone else joins the stage: its `Join` is folded
    /// like any envelope and published to everyone, and the joiner is welcomed with the
    /// snapshot, at once if it follows the room's topic already (so that everything published
    /// after the snapshot reaches it directly), else once it does (or after [`WELCOME_WAIT`]).
    #[allow(clippy::too_many_arguments)]
    pub fn on_join_request(
        &mut self,
        now: Now,
        peer: PeerId,
        inbound: InboundId,
        bytes: &[u8],
        follows: impl Fn(&PeerId, &RoomId) -> bool,
        place: impl FnOnce(RoomId, PeerKey) -> super::Placing,
        is_entry: impl Fn(&RoomId) -> bool,
        peers: &Peers,
    ) -> Vec<Effect> {
        let mut effects = Vec::new();
        let refuse = |refusal| Effect::Respond {
            inbound,
            response: RoomResponse::Refused { refusal },
        };
        let (room, keys) = match self.admit(now, peer, bytes, is_entry, &mut effects) {
            Ok(Admission::Stage(room, keys)) => (room, keys),
            Ok(Admission::Audience(envelope, keys)) => {
                let response = match self.admit_audience(now, &envelope, keys, place, &mut effects)
                {
                    Ok(response) => response,
                    Err(refusal) => RoomResponse::Refused { refusal },
                };
                effects.push(Effect::Respond { inbound, response });
                return effects;
            }
            Err(refusal) => {
                effects.push(refuse(refusal));
                return effects;
            }
        };
        // A private room's topic is named from a secret the joiner learns from this answer:
        // it cannot follow the topic before.
        if keys.is_some() || follows(&peer, &room) {
            effects.push(Effect::Respond {
                inbound,
                response: self.welcome(now, room, peer, keys, peers),
            });
        } else {
            self.welcomes.push(Welcome {
                peer,
                room,
                inbound,
                since: now.instant,
            });
        }
        effects
    }

    fn admit(
        &mut self,
        now: Now,
        peer: PeerId,
        bytes: &[u8],
        is_entry: impl Fn(&RoomId) -> bool,
        effects: &mut Vec<Effect>,
    ) -> Result<Admission, Refusal> {
        let envelope = Envelope::decode_verified(bytes).map_err(|err| Refusal::BadJoin {
            detail: err.to_string(),
        })?;
        let room = envelope.room;
        if envelope.author.to_peer_id().ok() != Some(peer) {
            return Err(Refusal::NotFromAuthor);
        }
        if !matches!(envelope.body, ControlBody::Join { .. }) {
            return Err(Refusal::NotAJoin);
        }
        // The host admits everyone; an entry point (a community relay the host lists as
        // carrying the room) admits listeners, within its budget, by the room as its views
        // tell it (revocations and removals included).
        let entry = !self
            .joined
            .get(&room)
            .is_some_and(|joined| joined.is_host());
        if entry && !(self.joined.contains_key(&room) && is_entry(&room)) {
            return Err(Refusal::NotHost { room });
        }
        // Each join costs a few signature checks (and a ticket): within a budget, so that a
        // flood of joins (ten thousand throwaway keys with a public link) cannot take the node's
        // event loop. Past it an entry point's joiner asks the host; the host's is told to try
        // again in a moment.
        if !self.joins.take(now.instant, entry) {
            return Err(if entry {
                Refusal::NoPlace
            } else {
                Refusal::Busy
            });
        }
        let joined = self
            .joined
            .get_mut(&room)
            .ok_or(Refusal::NotHost { room })?;
        let refused = |reason: earshot_protocol::state::Rejected| {
            info!(%room, peer = %crate::node::short(&peer), %reason, "refused a joiner");
            Refusal::Rejected {
                reason: reason.to_string(),
            }
        };
        let role = joined.state.check(now.wall, &envelope).map_err(refused)?;
        if let Some(max) = joined.full(now.instant, &envelope.author, role.on_stage()) {
            info!(%room, peer = %crate::node::short(&peer), max, "the room is full");
            return Err(Refusal::Full { max });
        }
        if entry {
            if joined.private.is_some()
                || joined.descriptor.visibility == earshot_protocol::Visibility::Private
            {
                // Carriers hold no keys: a private room's joiners ask its host.
                return Err(Refusal::NotHost { room });
            }
            if !role.on_stage() {
                return Ok(Admission::Audience(Box::new(envelope), None));
            }
            return Err(Refusal::StageThroughHost);
        }
        let keys = self.private_admit(&envelope)?;
        if keys.is_some() {
            // The host opens what the joiner seals at once; in a quiet room the epoch steps at
            // once too (the joiner reads everything from its admission on), in a busy one
            // within a second.
            self.private_ring(room, effects);
            self.private_tick(now, room, effects);
        }
        if !role.on_stage() {
            return Ok(Admission::Audience(Box::new(envelope), keys));
        }
        let Some(joined) = self.joined.get_mut(&room) else {
            return Err(Refusal::NotHost { room });
        };
        let changes = joined.state.apply(now.wall, &envelope).map_err(|reason| {
            info!(%room, peer = %crate::node::short(&peer), %reason, "refused a joiner");
            Refusal::Rejected {
                reason: reason.to_string(),
            }
        })?;
        effects.push(Effect::Publish {
            room,
            bytes: envelope.encode(),
            since: now.instant,
        });
        // The audience hears a new stage member at once (not a view later).
        self.relay_down(room, &envelope, effects);
        self.changed(room, changes, effects);
        Ok(Admission::Stage(room, keys))
    }

    /// The signed snapshot of `room` as of now, for a joiner, with a random sample of connected
    /// members to dial (so that the room's mesh is a random graph rather than everyone
    /// clustering on the same few early joiners).
    fn welcome(
        &mut self,
        now: Now,
        room: RoomId,
        peer: PeerId,
        keys: Option<serde_bytes::ByteBuf>,
        peers: &Peers,
    ) -> RoomResponse {
        let Some(joined) = self.joined.get(&room) else {
            return RoomResponse::Refused {
                refusal: Refusal::RoomClosed,
            };
        };
        let salt: [u8; 8] = self.rng.random();
        let mut candidates: Vec<(PeerKey, PeerId)> = joined
            .state
            .present()
            .iter()
            .filter_map(|member| {
                let id = member.key.to_peer_id().ok()?;
                (id != peer && peers.is_connected(&id)).then_some((member.key, id))
            })
            .collect();
        candidates.sort_by_cached_key(|(key, _)| {
            let mut hasher = Sha256::new();
            hasher.update(salt);
            hasher.update(key.as_bytes());
            hasher.finalize()
        });
        let hints: Vec<PeerHint> = candidates
            .into_iter()
            .filter_map(|(key, id)| {
                let addrs = peers.addrs_of(&id)?;
                Some(PeerHint {
                    key,
                    addrs: earshot_protocol::addr::to_wire(addrs, usize::MAX, 4),
                })
            })
            .take(MAX_PEER_HINTS)
            .collect();
        let snapshot = RoomSnapshot::sign(
            &self.signing,
            joined.descriptor.clone(),
            joined.state.clone(),
            hints,
            now.wall,
        );
        RoomResponse::Welcome {
            snapshot: serde_bytes::ByteBuf::from(snapshot.encode()),
            keys,
        }
    }

    /// A peer subscribed to a topic: welcomes waiting for it go out, and so does whatever
    /// waited for a subscriber.
    pub fn on_subscribed(
        &mut self,
        now: Now,
        follows: impl Fn(&PeerId, &RoomId) -> bool,
        peers: &Peers,
    ) -> Vec<Effect> {
        let mut effects = self.retry(now);
        effects.extend(self.flush_welcomes(now, None, &follows, peers));
        effects
    }

    /// Welcomes parked joiners whose subscription has arrived, or who waited `force_after`.
    pub(super) fn flush_welcomes(
        &mut self,
        now: Now,
        force_after: Option<Duration>,
        follows: &impl Fn(&PeerId, &RoomId) -> bool,
        peers: &Peers,
    ) -> Vec<Effect> {
        let parked = std::mem::take(&mut self.welcomes);
        let mut effects = Vec::new();
        for welcome in parked {
            let waited =
                force_after.is_some_and(|limit| now.instant.duration_since(welcome.since) >= limit);
            if waited || follows(&welcome.peer, &welcome.room) {
                // Parked welcomes are public rooms' (a private room's are answered at once).
                let response = self.welcome(now, welcome.room, welcome.peer, None, peers);
                effects.push(Effect::Respond {
                    inbound: welcome.inbound,
                    response,
                });
            } else {
                self.welcomes.push(welcome);
            }
        }
        effects
    }

    /// Re-announces a public room this node hosts, every [`ANNOUNCE_INTERVAL_MS`].
    pub(super) fn announce(&mut self, room: RoomId, now: Now, effects: &mut Vec<Effect>) {
        let Some(joined) = self.joined.get_mut(&room) else {
            return;
        };
        if !joined.is_host() || joined.descriptor.visibility != Visibility::Public {
            return;
        }
        if joined.last_announced.is_some_and(|at| {
            now.instant.duration_since(at) < Duration::from_millis(ANNOUNCE_INTERVAL_MS)
        }) {
            return;
        }
        joined.last_announced = Some(now.instant);
        // Renewed when less than half its hour is left, or when a removal revoked it (the
        // removed member is banned by key; newcomers need a link that works).
        let renew = joined.lobby_capability.as_ref().is_none_or(|cap| {
            cap.expires_at < now.wall.plus_millis(LOBBY_CAPABILITY_MS / 2)
                || joined.state.revoked.contains(&cap.id())
        });
        if renew {
            let nonce: [u8; 8] = self.rng.random();
            joined.lobby_capability = Capability::issue(
                &self.signing,
                room,
                Grant {
                    audience: Audience::Bearer,
                    role: Role::Listener,
                    not_before: now.wall,
                    expires_at: now.wall.plus_millis(LOBBY_CAPABILITY_MS),
                    depth: 0,
                },
                nonce,
            )
            .ok();
        }
        let Some(capability) = joined.lobby_capability.clone() else {
            return;
        };
        let present = joined.state.present();
        let speakers = present
            .iter()
            .filter(|member| member.role().on_stage())
            .map(|member| member.display_name())
            .collect();
        // The audience, as the host's latest view counts it, and whoever of the stage's fold
        // is present off the stage.
        let listeners = present
            .iter()
            .filter(|member| !member.role().on_stage())
            .count()
            + joined.view.as_ref().map_or(0, |view| {
                usize::try_from(view.listeners).unwrap_or(usize::MAX)
            });
        let announcement = Announcement::sign(
            &self.signing,
            joined.descriptor.clone(),
            speakers,
            u32::try_from(listeners).unwrap_or(u32::MAX),
            capability,
            now.wall.plus_millis(ANNOUNCEMENT_TTL_MS),
            joined.replays.clone(),
        );
        match announcement.verify(now.wall) {
            Ok(verified) => effects.push(Effect::Announce(verified)),
            Err(err) => warn!(%room, %err, "could not announce"),
        }
    }
}

/// The host's side of a room's audience, its views numbered from the clock (milliseconds: a
/// view goes at most once a second, so a host that restarts numbers past what it sent before).
pub(super) fn audience(now: Now, room: RoomId) -> HostAudience {
    HostAudience::new(room, AudiencePolicy::default(), now.instant).first_view(now.wall.as_millis())
}

/// Joins an entry point admits a second, on average; a burst of [`ENTRY_JOINS_BURST`] at once.
pub const ENTRY_JOINS_PER_SEC: f64 = 100.0;
pub const ENTRY_JOINS_BURST: f64 = 200.0;
/// Joins a host admits a second, on average (each about 0.2 ms of its event loop: 10 % of it at
/// this rate), and at once.
pub const HOST_JOINS_PER_SEC: f64 = 500.0;
pub const HOST_JOINS_BURST: f64 = 1_000.0;

/// The joins a node admits, as a host and as an entry point (all rooms together; each bucket
/// made at its first join).
#[derive(Debug, Default)]
pub struct JoinBudget {
    host: Option<Bucket>,
    entry: Option<Bucket>,
}

impl JoinBudget {
    /// Takes one join now (`entry`: as an entry point, else as a host).
    pub fn take(&mut self, now: std::time::Instant, entry: bool) -> bool {
        let (bucket, rate, burst) = if entry {
            (&mut self.entry, ENTRY_JOINS_PER_SEC, ENTRY_JOINS_BURST)
        } else {
            (&mut self.host, HOST_JOINS_PER_SEC, HOST_JOINS_BURST)
        };
        bucket
            .get_or_insert_with(|| Bucket::new(rate, burst, now))
            .take(now)
    }
}
