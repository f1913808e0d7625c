//! Who was in the room before its chat got busy: a raid's keys go to the back.
//!
//! The audience's chat budget is shared fairly down the tree ([`super::shares`]), which keeps
//! ten thousand throwaway keys to their relays' shares; but a listener whose subtree they fill
//! still shares with them, and keys are free. What the raid cannot fake is time: the host
//! remembers when it first saw each key (admitted at its door, or its first action), and once
//! the room's chat is busy (a line refused for want of budget, or a surge of new keys:
//! [`SURGE_KEYS`] within [`SURGE_WINDOW`], busy from the first of them, since a raid ramps up
//! and its first keys must not be settled by the time its chat fills the budget), keys it knew [`SETTLED`] before
//! that moment, or for [`LONG`] whatever, are *settled*: their lines take the room's budget,
//! the rest a lane of their own with half of it (so a raid adds at most half the room's budget
//! to its chat). A room that has been calm for [`CALM`] is no
//! longer busy, and then every key known for [`SETTLED`] shares the room's budget again. Keys
//! younger than that chat in the newcomers' lane even in a calm room: a raid's first lines find
//! the room calm, and must not drain the room's budget before anything is refused.
//!
//! What it costs an attacker: keys that joined in the rush chat in the newcomers' lane only;
//! to share the settled lane it must have brought its keys in [`SETTLED`] before the chat got
//! busy (ahead of the raid, or in an earlier rush followed by a calm minute: the host does not
//! remember past rushes), or keep the rush going for [`LONG`]; its keys then share the settled
//! lane fairly down the tree, as before the lanes. The host's memory of keys is bounded
//! ([`MAX_KEYS`], the earliest kept): a key it could not remember chats in the newcomers' lane.
//!
//! What it costs honest listeners: their first [`SETTLED`] in a room they chat in the
//! newcomers' lane (half the budget, shared with other newcomers), and one that came during a
//! raid until the chat is calm for a minute (or for [`LONG`]). The memory is the host's
//! process's: a host that restarts knows nobody, and everyone is a newcomer to it again.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::id::PeerKey;

/// Known this long before the chat got busy: settled.
pub const SETTLED: Duration = Duration::from_secs(30);
/// Known this long: settled, however long the chat has been busy.
pub const LONG: Duration = Duration::from_secs(30 * 60);
/// The chat is busy until this long passes without a line refused for want of budget.
pub const CALM: Duration = Duration::from_secs(60);
/// Keys remembered: a flood of new keys pushes out nobody seen in the last [`LONG`]; past it,
/// keys not seen for that long make way (looked for at most once a [`SWEEP_EVERY`]).
pub const MAX_KEYS: usize = 16_384;
/// How often a full memory looks for keys to forget.
pub const SWEEP_EVERY: Duration = Duration::from_secs(60);
/// New keys within [`SURGE_WINDOW`] that make a surge: the chat counts as busy from the
/// window's start, whether or not a line was refused yet (a raid ramps up: its first keys must
/// not be settled by the time its chat fills the budget).
pub const SURGE_KEYS: u32 = 50;
pub const SURGE_WINDOW: Duration = Duration::from_secs(10);

/// When the host first saw each key, and since when the room's chat is busy.
#[derive(Debug, Default)]
pub struct Tenure {
    /// When each key was first seen, and last.
    first_seen: HashMap<PeerKey, (Instant, Instant)>,
    /// Since when, and the last line refused (or surge seen).
    busy: Option<(Instant, Instant)>,
    swept: Option<Instant>,
    /// When the last [`SURGE_KEYS`] new keys came.
    arrivals: std::collections::VecDeque<Instant>,
}

impl Tenure {
    /// The host saw `key` now (a join at its door, an action): remembered if it is new and
    /// there is room.
    pub fn seen(&mut self, key: PeerKey, now: Instant) {
        if let Some((_, last)) = self.first_seen.get_mut(&key) {
            *last = now;
            return;
        }
        if self.first_seen.len() >= MAX_KEYS
            && self
                .swept
                .is_none_or(|at| now.saturating_duration_since(at) >= SWEEP_EVERY)
        {
            self.swept = Some(now);
            self.first_seen
                .retain(|_, (_, last)| now.saturating_duration_since(*last) < LONG);
        }
        if self.first_seen.len() < MAX_KEYS {
            self.first_seen.insert(key, (now, now));
        }
        self.arrived(now);
    }

    /// A key new to the host came: if it is the last of [`SURGE_KEYS`] within [`SURGE_WINDOW`],
    /// the chat is busy from the first of them.
    fn arrived(&mut self, now: Instant) {
        let surge = usize::try_from(SURGE_KEYS).unwrap_or(usize::MAX);
        self.arrivals.push_back(now);
        while self.arrivals.len() > surge {
            self.arrivals.pop_front();
        }
        if let Some(first) = self.arrivals.front().copied()
            && self.arrivals.len() >= surge
            && now.saturating_duration_since(first) < SURGE_WINDOW
        {
            let since = self.busy(now).map_or(first, |since| since.min(first));
            self.busy = Some((since, now));
        }
    }

    /// A line was refused for want of budget: the chat is busy (from now, if it was calm).
    pub fn refused(&mut self, now: Instant) {
        let since = self.busy(now).unwrap_or(now);
        self.busy = Some((since, now));
    }

    /// Since when the chat is busy, if it is.
    pub fn busy(&self, now: Instant) -> Option<Instant> {
        self.busy
            .filter(|(_, last)| now.saturating_duration_since(*last) < CALM)
            .map(|(since, _)| since)
    }

    /// Whether `key`'s lines take the room's budget now: the host has known the key for
    /// [`SETTLED`], and the chat is calm, or the host knew the key [`SETTLED`] before it got
    /// busy, or for [`LONG`].
    ///
    /// A key younger than [`SETTLED`] never takes the room's budget, calm or not: a raid's first
    /// lines come before anything is refused (the room is calm until its budget runs out), and
    /// in the room's budget they would drain the shares of the subtrees they came through,
    /// which then count as chatting there for a minute: the settled under them would get a
    /// fraction of their part (seen in `sybil_room`: an honest listener lost three lines of
    /// fourteen that way). Newcomers to a calm room share the newcomers' lane (with any raid).
    pub fn settled(&self, key: &PeerKey, now: Instant) -> bool {
        let Some((first, _)) = self.first_seen.get(key) else {
            return false;
        };
        let known = now.saturating_duration_since(*first);
        if known < SETTLED {
            return false;
        }
        self.busy(now)
            .is_none_or(|since| since.saturating_duration_since(*first) >= SETTLED || known >= LONG)
    }

    /// Keys remembered (for tests and bounds).
    pub fn known(&self) -> usize {
        self.first_seen.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::audience::tests::numbered as key;

    #[test]
    fn keys_known_before_the_rush_are_settled_and_the_rushs_are_not() {
        let start = Instant::now();
        let mut tenure = Tenure::default();
        let (old, late, unknown) = (key(1), key(2), key(3));
        tenure.seen(old, start);
        let rush = start + Duration::from_secs(40);
        tenure.seen(late, rush - Duration::from_secs(5));
        // Calm: everyone known for SETTLED is; the newly come, and keys the host could not
        // remember, are not.
        assert!(tenure.settled(&old, rush));
        assert!(!tenure.settled(&late, rush));
        assert!(!tenure.settled(&unknown, rush));
        assert!(tenure.settled(&late, rush + SETTLED));
        tenure.refused(rush);
        assert_eq!(tenure.busy(rush), Some(rush));
        assert!(tenure.settled(&old, rush));
        assert!(!tenure.settled(&late, rush), "known 5 s before the rush");
        assert!(!tenure.settled(&unknown, rush));
        // Seeing the old key again does not move its first sighting.
        tenure.seen(old, rush);
        assert!(tenure.settled(&old, rush));
        // Refusals keep it busy from the same moment; a minute without one ends it.
        let later = rush + Duration::from_secs(50);
        tenure.refused(later);
        assert_eq!(tenure.busy(later + Duration::from_secs(59)), Some(rush));
        assert!(!tenure.settled(&late, later + Duration::from_secs(59)));
        let calm = later + CALM;
        assert_eq!(tenure.busy(calm), None);
        assert!(tenure.settled(&late, calm));
        // A new rush starts from its own moment: the key known 5 s before the first is settled
        // now (known 95 s before this one).
        tenure.refused(calm);
        assert!(tenure.settled(&late, calm));
    }

    #[test]
    fn a_surge_of_new_keys_makes_the_chat_busy_from_its_start_before_any_line_is_refused() {
        let start = Instant::now();
        let mut tenure = Tenure::default();
        let honest = key(0);
        tenure.seen(honest, start);
        // A room filling at a key a second: no surge.
        let mut now = start;
        for n in 1..=60 {
            now = start + Duration::from_secs(n);
            tenure.seen(key(n as u16), now);
        }
        assert_eq!(tenure.busy(now), None);
        // A raid: its keys at ten a second, its chat not refused yet.
        let raid = now + Duration::from_secs(5);
        for n in 0..u16::try_from(SURGE_KEYS).unwrap_or(50) {
            tenure.seen(
                key(1000 + n),
                raid + Duration::from_millis(100 * u64::from(n)),
            );
        }
        let later = raid + Duration::from_secs(40);
        tenure.refused(later);
        // Busy from the first of the last SURGE_KEYS new keys (a few of the room's own among
        // them), not from the refusal 40 s on.
        let since = tenure.busy(later).expect("busy");
        assert!(since <= raid && since + SURGE_WINDOW >= raid, "{since:?}");
        // The raid's first keys, 40 s old by the first refusal, are not settled; the room's
        // from before are.
        assert!(!tenure.settled(&key(1000), later));
        assert!(tenure.settled(&honest, later));
        assert!(tenure.settled(&key(10), later));
    }

    #[test]
    fn a_rush_that_lasts_settles_its_keys_only_after_half_an_hour() {
        let start = Instant::now();
        let mut tenure = Tenure::default();
        let raider = key(9);
        tenure.refused(start);
        tenure.seen(raider, start + Duration::from_secs(1));
        let mut now = start;
        while now < start + LONG {
            tenure.refused(now);
            assert!(!tenure.settled(&raider, now));
            now += Duration::from_secs(30);
        }
        now += Duration::from_secs(1);
        tenure.refused(now);
        assert!(tenure.settled(&raider, now));
    }

    #[test]
    fn a_flood_of_new_keys_pushes_out_nobody_known() {
        let start = Instant::now();
        let mut tenure = Tenure::default();
        let honest = key(0);
        tenure.seen(honest, start);
        let rush = start + Duration::from_secs(60);
        for n in 1..=u16::MAX {
            tenure.seen(key(n), rush);
        }
        assert_eq!(tenure.known(), MAX_KEYS);
        tenure.refused(rush);
        assert!(tenure.settled(&honest, rush));
        // Keys past the bound are new while the rush lasts.
        assert!(!tenure.settled(&key(u16::MAX), rush));
        // Half an hour on, the honest key seen lately, the flood's keys not: they make way.
        let later = rush + LONG;
        tenure.seen(honest, later - Duration::from_secs(1));
        let newcomer = key(u16::MAX);
        tenure.seen(newcomer, later);
        assert!(tenure.known() < MAX_KEYS, "{}", tenure.known());
        // A rush a second on: the honest key (known since the start) settled, the newcomer
        // (remembered now, known a second) not.
        let next = later + Duration::from_secs(1);
        tenure.refused(next);
        assert!(tenure.settled(&honest, next));
        assert!(!tenure.settled(&newcomer, next));
    }
}
