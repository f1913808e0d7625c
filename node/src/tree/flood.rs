//! What a node passes down without being able to check it: envelopes (their authors' signatures
//! are checked by the rooms, not on the way), sealed messages (a relay of a private room cannot
//! open them) and notices. The host sends a few a second (views, chat within its own limits,
//! stage changes); a parent that sends more is flooding its subtree, and the first honest hop
//! cuts it short.

use std::time::Instant;

use earshot_protocol::RoomId;
use earshot_protocol::bucket::Bucket;

/// Unchecked messages a node passes down in one room, per second on average.
pub const DOWN_PER_SEC: f64 = 20.0;
/// ... and at once.
pub const DOWN_BURST: f64 = 100.0;

/// A room's budget of unchecked messages passed down.
pub(super) fn budget(now: Instant) -> Bucket {
    Bucket::new(DOWN_PER_SEC, DOWN_BURST, now)
}

impl super::Tree {
    /// Whether one more unchecked message from the parent goes on in `room` now.
    pub(super) fn down_budget(&self, room: RoomId) -> bool {
        let now = Instant::now();
        let mut rooms = self.rooms.lock();
        let Some(tree) = rooms.get_mut(&room) else {
            return false;
        };
        let passed = tree.downs.take(now);
        if !passed {
            tree.flooded += 1;
            if tree.flooded.is_power_of_two() {
                tracing::warn!(%room, dropped = tree.flooded, "the parent sends more than the host would: dropped");
            }
        }
        passed
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fanout::{Gate, Pass};
    use earshot_protocol::PeerKey;
    use earshot_protocol::audience::wire::Down;

    #[test]
    fn a_parent_flooding_its_subtree_with_what_nobody_can_check_is_cut_short() {
        let (tree, _events) =
            super::super::Tree::new(ed25519_dalek::SigningKey::from_bytes(&[1; 32]));
        let room = RoomId([3; 16]);
        tree.open(room, PeerKey([4; 32]), 4, &[]);
        let sent = 10_000;
        let passed = (0..sent)
            .filter(|i: &u32| {
                let junk = Down::Sealed(serde_bytes::ByteBuf::from(i.to_be_bytes().to_vec()));
                matches!(tree.down(room, junk), Pass::All(_))
            })
            .count();
        // The burst, and whatever the rate refilled while the loop ran (well under a second).
        assert!(passed >= DOWN_BURST as usize, "{passed}");
        assert!(
            passed < DOWN_BURST as usize + DOWN_PER_SEC as usize,
            "{passed}"
        );
    }
}
