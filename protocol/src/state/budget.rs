//! Each author's budget for what the room only shows (chat lines, reactions): a token bucket per
//! author over the fold's own clock, so that one member (or one of ten thousand keys) cannot
//! flood everyone's screen, whatever the room's size. Not part of the room's state: two nodes
//! that saw the same messages at different moments may let a line through that the other
//! dropped (each shows it or not; nothing else depends on it), so states compare equal whatever
//! their budgets. Not a [`crate::bucket::Bucket`]: the fold's clock is the wall time it is given
//! (a [`Timestamp`]), never an `Instant`. One entry per author that chatted or reacted, and every
//! such author is a member of the fold already: the budgets grow no faster than the room.

use std::collections::BTreeMap;

use crate::control::ControlBody;
use crate::id::{PeerKey, Timestamp};

/// Chat lines an author's node lets it send at once, and then one every [`CHAT_EVERY_MS`]
/// ([`Budgets::own`]); every other node takes twice that ([`Budgets::default`]), so that lines
/// an honest author's node sent are never dropped on the way for arriving closer together.
pub const CHAT_BURST: u64 = 5;
pub const CHAT_EVERY_MS: u64 = 2_000;
/// Reactions, likewise.
pub const REACTION_BURST: u64 = 10;
pub const REACTION_EVERY_MS: u64 = 300;

/// One author's two buckets: when each would be full again (a "virtual finish time": a bucket
/// with `burst` tokens refilling one per `every` is one timestamp, no counters).
#[derive(Clone, Copy, Debug, Default)]
struct Author {
    chat_full_at: u64,
    reaction_full_at: u64,
}

/// Every author's budget (see the module's documentation).
#[derive(Clone, Debug, Default)]
pub struct Budgets {
    authors: BTreeMap<PeerKey, Author>,
    /// The author's own node: the budget itself, not twice it.
    own: bool,
}

impl PartialEq for Budgets {
    /// Budgets are not state: see the module's documentation.
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Eq for Budgets {}

impl Budgets {
    /// The budget an author's own node holds it to (half what others take from it).
    pub fn own() -> Self {
        Self {
            authors: BTreeMap::new(),
            own: true,
        }
    }

    /// Whether `author` may have `body` shown at `now`; takes from its budget if so. Only chat
    /// and reactions are budgeted (the rest is state every node must fold alike).
    pub fn take(&mut self, author: PeerKey, body: &ControlBody, now: Timestamp) -> bool {
        let (burst, every) = match body {
            ControlBody::Chat { .. } | ControlBody::Support { .. } => (CHAT_BURST, CHAT_EVERY_MS),
            ControlBody::Reaction { .. } => (REACTION_BURST, REACTION_EVERY_MS),
            _ => return true,
        };
        let (burst, every) = if self.own {
            (burst, every)
        } else {
            (burst * 2, every / 2)
        };
        let entry = self.authors.entry(author).or_default();
        let full_at = match body {
            ControlBody::Chat { .. } | ControlBody::Support { .. } => &mut entry.chat_full_at,
            _ => &mut entry.reaction_full_at,
        };
        let now = now.0;
        // The bucket is empty when it would be full only after `burst` refills from now.
        let from = (*full_at).max(now);
        if from.saturating_sub(now) + every > burst * every {
            return false;
        }
        *full_at = from + every;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chat() -> ControlBody {
        ControlBody::Chat { text: "hi".into() }
    }

    #[test]
    fn an_author_chats_a_burst_then_at_the_rate_and_others_are_not_held_up() {
        let mut budgets = Budgets::default();
        let (joe, ana) = (PeerKey([1; 32]), PeerKey([2; 32]));
        let t = Timestamp(1_000_000);
        let taken = (0..40).filter(|_| budgets.take(joe, &chat(), t)).count();
        assert_eq!(
            taken,
            2 * CHAT_BURST as usize,
            "others take twice the author's own"
        );
        let mut budgets = Budgets::own();
        let taken = (0..20).filter(|_| budgets.take(joe, &chat(), t)).count();
        assert_eq!(taken, CHAT_BURST as usize);
        assert!(
            budgets.take(ana, &chat(), t),
            "another author has a budget of its own"
        );
        assert!(!budgets.take(joe, &chat(), t.plus_millis(CHAT_EVERY_MS - 1)));
        assert!(budgets.take(joe, &chat(), t.plus_millis(CHAT_EVERY_MS)));
        // A minute of one line a second: one in two goes through.
        let mut through = 0;
        for s in 10..70 {
            through += usize::from(budgets.take(joe, &chat(), t.plus_millis(s * 1_000)));
        }
        assert!((30..=35).contains(&through), "{through} lines in a minute");
        // Reactions have a budget of their own; state is never budgeted.
        assert!(budgets.take(
            joe,
            &ControlBody::Reaction {
                emoji: "👏".into()
            },
            t
        ));
        assert!((0..100).all(|_| budgets.take(joe, &ControlBody::RaiseHand, t)));
    }
}
