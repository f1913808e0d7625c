//! The host's side of a private room's key schedule: who is a member, when the epoch steps;
//! kept at rest by the host ([`Schedule::save`], [`Schedule::restore`]) so that a host that
//! restarts goes on where it was: its members keep their keys, and whoever it removed stays
//! out.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::{Epoch, Keys, MAX_MEMBERS, RING_EPOCHS, Ring, SealError, Secret, derive};
use crate::codec::{self, DecodeError};
use crate::id::{CapId, PeerKey, RoomId, Timestamp};

/// Joins are batched: the epoch ratchets at most once in this many milliseconds.
pub const RATCHET_EVERY_MS: u64 = 1_000;
/// After a fresh epoch, frames still sealed under the epochs before it are passed on for this
/// long (speakers switch as the keys reach them), then refused: a removed member reads
/// nothing sent more than this (and the keys' way down) after its removal.
pub const OLD_EPOCH_GRACE_MS: u64 = 1_000;

/// Removals (keys, and the capabilities revoked with them) a schedule remembers: at most this
/// many of each (a private room has at most [`MAX_MEMBERS`] members at a time).
pub const MAX_REMEMBERED: usize = 10 * MAX_MEMBERS;

/// The largest schedule kept at rest (members, and the removals remembered).
const MAX_KEPT_BYTES: usize = 1 << 20;

/// Why a member is not admitted to the key schedule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("the private room is full ({MAX_MEMBERS} members)")]
    Full,
    #[error("removed from this private room")]
    Removed,
}

/// Why a schedule kept at rest could not be restored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RestoreError {
    #[error("the kept key schedule does not open with this node's key: {0}")]
    Sealed(#[from] SealError),
    #[error("the kept key schedule is malformed: {0}")]
    Malformed(#[from] DecodeError),
    #[error("the kept key schedule is of another room")]
    OtherRoom,
}

/// The host's key schedule for one private room.
#[derive(Debug)]
pub struct Schedule {
    room: RoomId,
    topic: Secret,
    current: Epoch,
    /// The epoch promised to members admitted since the last step (it ratchets from the
    /// current one).
    next: Option<Epoch>,
    /// The last fresh epoch, and when it began; the fresh epoch before it.
    fresh: (u32, Timestamp),
    fresh_before: u32,
    last_step: Timestamp,
    /// Members, when their capability expires, and which it is.
    members: BTreeMap<PeerKey, (Option<Timestamp>, Option<CapId>)>,
    /// Someone was removed since the last step: the next one is fresh.
    removed: bool,
    /// Who was removed, and the capabilities revoked with them: never admitted again.
    out: BTreeSet<PeerKey>,
    revoked: BTreeSet<CapId>,
}

/// A schedule as kept at rest (sealed by [`Schedule::save`]).
#[derive(Serialize, Deserialize)]
struct Kept {
    room: RoomId,
    topic: [u8; 32],
    current: (u32, [u8; 32]),
    next: Option<(u32, [u8; 32])>,
    fresh: (u32, Timestamp),
    fresh_before: u32,
    last_step: Timestamp,
    members: Vec<(PeerKey, Option<Timestamp>, Option<CapId>)>,
    removed: bool,
    out: Vec<PeerKey>,
    revoked: Vec<CapId>,
}

impl Schedule {
    /// A room's schedule from its first secret (32 random bytes, drawn by the caller).
    ///
    /// Its epochs are numbered from the clock's seconds: a host that lost its kept schedule
    /// starts past the numbers its members hold from before (unless that room stepped more than
    /// once a second on average), so they see it moved on and ask it.
    pub fn new(room: RoomId, first: Secret, topic: Secret, now: Timestamp) -> Self {
        let n = u32::try_from(now.as_millis() / 1_000).unwrap_or(u32::MAX / 2);
        Self {
            room,
            topic,
            current: Epoch::new(n, first),
            next: None,
            fresh: (n, now),
            fresh_before: n,
            // The first join steps at once.
            last_step: Timestamp(now.as_millis().saturating_sub(RATCHET_EVERY_MS)),
            members: BTreeMap::new(),
            removed: false,
            out: BTreeSet::new(),
            revoked: BTreeSet::new(),
        }
    }

    /// The schedule sealed for keeping at rest, under a key derived from the host's own
    /// (`nonce`: 12 random bytes): a copy of the database without the host's identity opens
    /// nothing.
    pub fn save(&self, host: &ed25519_dalek::SigningKey, nonce: [u8; 12]) -> Vec<u8> {
        let epoch = |epoch: &Epoch| (epoch.n, *epoch.secret().as_bytes());
        let kept = Kept {
            room: self.room,
            topic: *self.topic.as_bytes(),
            current: epoch(&self.current),
            next: self.next.as_ref().map(epoch),
            fresh: self.fresh,
            fresh_before: self.fresh_before,
            last_step: self.last_step,
            members: self
                .members
                .iter()
                .map(|(key, (expires, cap))| (*key, *expires, *cap))
                .collect(),
            removed: self.removed,
            out: self.out.iter().copied().collect(),
            revoked: self.revoked.iter().copied().collect(),
        };
        at_rest(host, &self.room).seal(&self.room, &codec::encode(&kept), nonce)
    }

    /// A schedule [`Schedule::save`] kept for `room`, opened with the host's key.
    pub fn restore(
        bytes: &[u8],
        room: RoomId,
        host: &ed25519_dalek::SigningKey,
    ) -> Result<Self, RestoreError> {
        let mut ring = Ring::default();
        ring.insert(at_rest(host, &room));
        let plain = ring.open(&room, bytes)?;
        let kept: Kept = codec::decode(&plain, MAX_KEPT_BYTES)?;
        if kept.room != room {
            return Err(RestoreError::OtherRoom);
        }
        let epoch = |(n, secret): (u32, [u8; 32])| Epoch::new(n, Secret::from_bytes(secret));
        Ok(Self {
            room,
            topic: Secret::from_bytes(kept.topic),
            current: epoch(kept.current),
            next: kept.next.map(epoch),
            fresh: kept.fresh,
            fresh_before: kept.fresh_before,
            last_step: kept.last_step,
            members: kept
                .members
                .into_iter()
                .take(MAX_MEMBERS)
                .map(|(key, expires, cap)| (key, (expires, cap)))
                .collect(),
            removed: kept.removed,
            out: kept.out.into_iter().take(MAX_REMEMBERED).collect(),
            revoked: kept.revoked.into_iter().take(MAX_REMEMBERED).collect(),
        })
    }

    /// Who was removed from the room (never admitted again).
    pub fn removed_keys(&self) -> &BTreeSet<PeerKey> {
        &self.out
    }

    /// The capabilities revoked with removals (whoever holds one is not admitted).
    pub fn revoked(&self) -> &BTreeSet<CapId> {
        &self.revoked
    }

    pub fn current(&self) -> &Epoch {
        &self.current
    }

    /// The epoch promised to members admitted since the last step, if any.
    pub fn next(&self) -> Option<&Epoch> {
        self.next.as_ref()
    }

    pub fn topic(&self) -> &Secret {
        &self.topic
    }

    /// The last fresh epoch (members holding an epoch from it on ratchet forward on their own).
    pub fn fresh_epoch(&self) -> u32 {
        self.fresh.0
    }

    /// When the last fresh epoch began (the epochs before it are refused
    /// [`OLD_EPOCH_GRACE_MS`] later).
    pub fn fresh_since(&self) -> Timestamp {
        self.fresh.1
    }

    pub fn members(&self) -> usize {
        self.members.len()
    }

    pub fn is_member(&self, key: &PeerKey) -> bool {
        self.members.contains_key(key)
    }

    /// Admits `member` (with capability `cap`, valid until `expires`): what it is given is the epoch
    /// the room steps to next, sealed to it alone, so it reads nothing from before it came.
    /// Admitting a member again gives it that epoch again.
    pub fn admit(
        &mut self,
        member: PeerKey,
        (expires, cap): (Option<Timestamp>, Option<CapId>),
        ephemeral: [u8; 32],
        host: &ed25519_dalek::SigningKey,
    ) -> Result<Keys, Refused> {
        if self.out.contains(&member) || cap.is_some_and(|cap| self.revoked.contains(&cap)) {
            return Err(Refused::Removed);
        }
        if self.members.len() >= MAX_MEMBERS && !self.members.contains_key(&member) {
            return Err(Refused::Full);
        }
        self.members.insert(member, (expires, cap));
        let room = self.room;
        let next = self
            .next
            .get_or_insert_with(|| self.current.ratchet(&room))
            .clone();
        Keys::fresh(room, &next, &self.topic, &[member], ephemeral, host)
            .pop()
            .ok_or(Refused::Full)
    }

    /// The current epoch sealed to `member` alone (a member that missed a step asks).
    pub fn reseal(
        &self,
        member: &PeerKey,
        ephemeral: [u8; 32],
        host: &ed25519_dalek::SigningKey,
    ) -> Option<Keys> {
        if !self.members.contains_key(member) {
            return None;
        }
        Keys::fresh(
            self.room,
            &self.current,
            &self.topic,
            &[*member],
            ephemeral,
            host,
        )
        .pop()
    }

    /// A member added without sealing anything to it now (benches fill a room to its size
    /// this way: each fresh epoch is sealed to it like to any member). `false`: the room is full.
    #[doc(hidden)]
    pub fn add_unsealed(&mut self, member: PeerKey) -> bool {
        if self.members.len() >= MAX_MEMBERS && !self.members.contains_key(&member) {
            return false;
        }
        self.members.entry(member).or_insert((None, None));
        true
    }

    /// Takes `member` out for good: the next step is a fresh epoch it does not get, and it is
    /// not admitted again.
    pub fn remove(&mut self, member: &PeerKey) -> bool {
        if self.out.len() < MAX_REMEMBERED {
            self.out.insert(*member);
        }
        self.drop_member(member)
    }

    /// Takes `member` out until it is admitted again (its capability expired).
    fn drop_member(&mut self, member: &PeerKey) -> bool {
        let was = self.members.remove(member).is_some();
        self.removed |= was;
        was
    }

    /// Takes out every member admitted with a capability in `revoked` (and admits nobody with
    /// one again).
    pub fn revoke(&mut self, revoked: &BTreeSet<CapId>) {
        for cap in revoked {
            if self.revoked.len() >= MAX_REMEMBERED {
                break;
            }
            self.revoked.insert(*cap);
        }
        let out: Vec<PeerKey> = self
            .members
            .iter()
            .filter(|(_, (_, cap))| cap.is_some_and(|cap| revoked.contains(&cap)))
            .map(|(key, _)| *key)
            .collect();
        for key in &out {
            self.drop_member(key);
        }
    }

    /// The step due now, if any: a fresh epoch after a removal (or a capability that expired),
    /// sealed to every member left; else, after joins, a ratchet (at most once in
    /// [`RATCHET_EVERY_MS`]). `random` and `ephemeral` are 32 fresh random bytes each.
    pub fn tick(
        &mut self,
        now: Timestamp,
        random: [u8; 32],
        ephemeral: [u8; 32],
        host: &ed25519_dalek::SigningKey,
    ) -> Vec<Keys> {
        let expired: Vec<PeerKey> = self
            .members
            .iter()
            .filter(|(_, (expires, _))| expires.is_some_and(|at| at <= now))
            .map(|(key, _)| *key)
            .collect();
        for key in &expired {
            self.drop_member(key);
        }
        if self.removed {
            let after = self.next.take().unwrap_or_else(|| self.current.clone());
            let epoch = Epoch::new(after.n.wrapping_add(1), Secret::from_bytes(random));
            let members: Vec<PeerKey> = self.members.keys().copied().collect();
            let keys = Keys::fresh(self.room, &epoch, &self.topic, &members, ephemeral, host);
            self.fresh_before = self.fresh.0;
            self.fresh = (epoch.n, now);
            self.current = epoch;
            self.last_step = now;
            self.removed = false;
            return keys;
        }
        if self.next.is_some()
            && now.as_millis() >= self.last_step.as_millis() + RATCHET_EVERY_MS
            && let Some(next) = self.next.take()
        {
            self.current = next;
            self.last_step = now;
            return vec![Keys::ratchet(self.room, self.current.n, host)];
        }
        Vec::new()
    }

    /// Whether the host passes on a frame sealed under the epoch whose low byte is `low`: an
    /// epoch from the last fresh one on (or the one promised to joiners); the epochs before it
    /// only within [`OLD_EPOCH_GRACE_MS`] of the fresh one.
    pub fn admits_frame(&self, low: u8, now: Timestamp) -> bool {
        let from = if now.as_millis() < self.fresh.1.as_millis() + OLD_EPOCH_GRACE_MS {
            self.fresh_before
        } else {
            self.fresh.0
        };
        let newest = self.next.as_ref().map_or(self.current.n, |next| next.n);
        let oldest = from.max(newest.saturating_sub(RING_EPOCHS as u32));
        (oldest..=newest).any(|n| n as u8 == low)
    }
}

/// The epoch whose control key seals `room`'s schedule at rest: derived from the host's key.
fn at_rest(host: &ed25519_dalek::SigningKey, room: &RoomId) -> Epoch {
    Epoch::new(
        0,
        Secret::from_bytes(derive(
            &host.to_bytes(),
            &[b"earshot key schedule at rest", room.as_bytes()],
        )),
    )
}
