//! The host's side of a private room's key schedule: who is a member, when the epoch steps.

use std::collections::BTreeMap;

use super::{Epoch, Keys, MAX_MEMBERS, RING_EPOCHS, Secret};
use crate::id::{CapId, PeerKey, RoomId, Timestamp};

/// Joins are batched: the epoch ratchets at most once in this many milliseconds.
pub const RATCHET_EVERY_MS: u64 = 1_000;
/// After a fresh epoch, frames still sealed under the epochs before it are passed on for this
/// long (speakers switch as the keys reach them), then refused: a removed member reads
/// nothing sent more than this (and the keys' way down) after its removal.
pub const OLD_EPOCH_GRACE_MS: u64 = 1_000;

/// Why a member is not admitted to the key schedule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the private room is full ({MAX_MEMBERS} members)")]
pub struct Full;

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
}

impl Schedule {
    /// A room's schedule from its first secret (32 random bytes, drawn by the caller).
    pub fn new(room: RoomId, first: Secret, topic: Secret, now: Timestamp) -> Self {
        Self {
            room,
            topic,
            current: Epoch::new(0, first),
            next: None,
            fresh: (0, now),
            fresh_before: 0,
            // The first join steps at once.
            last_step: Timestamp(now.as_millis().saturating_sub(RATCHET_EVERY_MS)),
            members: BTreeMap::new(),
            removed: false,
        }
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
    ) -> Result<Keys, Full> {
        if self.members.len() >= MAX_MEMBERS && !self.members.contains_key(&member) {
            return Err(Full);
        }
        self.members.insert(member, (expires, cap));
        let room = self.room;
        let next = self
            .next
            .get_or_insert_with(|| self.current.ratchet(&room))
            .clone();
        Keys::fresh(room, &next, &self.topic, &[member], ephemeral, host)
            .pop()
            .ok_or(Full)
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

    /// A member added without sealing anything to it (filling a room in tests).
    #[cfg(test)]
    pub(super) fn insert_unsealed(&mut self, member: PeerKey) {
        self.members.insert(member, (None, None));
    }

    /// Takes `member` out: the next step is a fresh epoch it does not get.
    pub fn remove(&mut self, member: &PeerKey) -> bool {
        let was = self.members.remove(member).is_some();
        self.removed |= was;
        was
    }

    /// Takes out every member admitted with a capability in `revoked`.
    pub fn revoke(&mut self, revoked: &std::collections::BTreeSet<CapId>) {
        let out: Vec<PeerKey> = self
            .members
            .iter()
            .filter(|(_, (_, cap))| cap.is_some_and(|cap| revoked.contains(&cap)))
            .map(|(key, _)| *key)
            .collect();
        for key in &out {
            self.remove(key);
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
            self.remove(key);
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
