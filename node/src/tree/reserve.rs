//! Places kept for repairs. Keys that join by the thousand and never come hold the places they
//! were given for a while ([`PROMISE_KEPT`](earshot_protocol::audience::subtree::PROMISE_KEPT));
//! a listener whose parent stalled must still find one. When the host has many places promised
//! to newcomers at once (a crowd, or a flood), a newcomer leaves the last few free places to
//! those repairing theirs: it is admitted without a place and asks again with its ticket
//! (a second later), like anyone who joins a full tree.

use std::time::Instant;

use earshot_protocol::audience::subtree::Subtree;

/// Places the host keeps for listeners repairing theirs when crowded.
pub const REPAIR_RESERVE: u32 = 2;
/// Places promised to newcomers and not yet taken, past which the host is crowded.
pub const CROWDED_PROMISES: u32 = 8;

/// Whether a newcomer may take one of `subtree`'s free places now.
pub(super) fn newcomer_may_take(subtree: &Subtree, now: Instant) -> bool {
    if subtree.promised_count(now) < CROWDED_PROMISES {
        return true;
    }
    let free: u32 = subtree
        .offered(now)
        .iter()
        .map(|slot| u32::from(slot.free))
        .sum();
    free > REPAIR_RESERVE
}

#[cfg(test)]
mod tests {
    use super::*;
    use earshot_protocol::PeerKey;

    #[test]
    fn in_a_crowd_newcomers_leave_the_last_places_to_repairs() {
        let now = Instant::now();
        let mut subtree = Subtree::new(PeerKey([1; 32]), 12, now);
        // Calm: every place goes.
        assert!(newcomer_may_take(&subtree, now));
        // A flood of joiners who never come: past eight promises, the last two are kept.
        let mut placed = 0;
        while newcomer_may_take(&subtree, now) {
            assert!(subtree.place(now).is_some());
            placed += 1;
        }
        assert_eq!(placed, 12 - REPAIR_RESERVE as usize);
        // A repair still finds a place.
        assert!(subtree.place(now).is_some());
    }
}
