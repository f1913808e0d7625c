//! What went down lately: envelopes and sealed messages a node passed down (or, at the host,
//! sent), kept a while so that a child attaching gets them after the view. A listener whose
//! parent stalled (a slow relay, or one that withholds) misses no chat line said meanwhile: it
//! gets the lines again from its new parent and drops those it saw (`Joined::saw`).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use earshot_protocol::RoomId;
use earshot_protocol::audience::wire::Down;

/// Envelopes passed down that a child attaching gets again, at most, and for how long.
pub const RECENT_DOWNS: usize = 16;
pub const RECENT_DOWNS_KEPT: Duration = Duration::from_secs(30);

/// Those of `recent` still fresh at `now`, oldest first.
pub(super) fn lately(recent: &VecDeque<(Instant, Down)>, now: Instant) -> Vec<Down> {
    recent
        .iter()
        .filter(|(at, _)| now.saturating_duration_since(*at) <= RECENT_DOWNS_KEPT)
        .map(|(_, down)| down.clone())
        .collect()
}

impl super::Tree {
    /// An envelope or sealed message going down `room`'s tree from here (passed on, or the
    /// host's own): kept a while for children that attach ([`RECENT_DOWNS`]).
    pub fn remember_down(&self, room: &RoomId, down: &Down) {
        if !matches!(down, Down::Envelope(_) | Down::Sealed(_)) {
            return;
        }
        if let Some(tree) = self.rooms.lock().get_mut(room) {
            tree.recent.push_back((Instant::now(), down.clone()));
            if tree.recent.len() > RECENT_DOWNS {
                tree.recent.pop_front();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fanout::{Gate, Pass};
    use earshot_protocol::PeerKey;

    #[test]
    fn a_child_attaching_gets_what_went_down_lately_after_its_path() {
        let (tree, _events) =
            super::super::Tree::new(ed25519_dalek::SigningKey::from_bytes(&[1; 32]));
        let room = RoomId([3; 16]);
        tree.open(room, PeerKey([4; 32]), 4, &[]);
        let line = |i: u8| Down::Envelope(serde_bytes::ByteBuf::from(vec![i; 8]));
        for i in 0..20 {
            assert!(matches!(tree.down(room, line(i)), Pass::All(_)));
        }
        let first = tree.first(room);
        assert!(matches!(first.first(), Some(Down::Path(_))));
        let again: Vec<&Down> = first
            .iter()
            .filter(|d| matches!(d, Down::Envelope(_)))
            .collect();
        assert_eq!(again.len(), RECENT_DOWNS, "the latest, no more");
        assert_eq!(
            again.last(),
            Some(&&line(19)),
            "oldest first, the newest last"
        );
        // Half a minute on, nothing is fresh.
        let later = Instant::now() + RECENT_DOWNS_KEPT + Duration::from_secs(1);
        let rooms = tree.rooms.lock();
        let kept = &rooms.get(&room).expect("open").recent;
        assert!(lately(kept, later).is_empty());
    }
}
