//! The host's views as a node of the tree keeps them: the newest only, with what it says
//! about this node's children (removed: cut off; carriers; who relays for nobody).

use earshot_protocol::audience::AudienceView;
use earshot_protocol::{RoomId, Verified};
use libp2p::PeerId;
use tracing::warn;

impl super::Tree {
    /// Keeps `view` if it is newer than the one held; returns whether it was. Children it
    /// removes from the room are to be cut off ([`Gate::evicted`]).
    pub fn keep_view(&self, room: &RoomId, view: Verified<AudienceView>) -> bool {
        let mut rooms = self.rooms.lock();
        let Some(tree) = rooms.get_mut(room) else {
            return false;
        };
        if tree.view.as_ref().is_some_and(|held| held.seq >= view.seq) {
            return false;
        }
        let banned: Vec<PeerId> = tree
            .subtree
            .children()
            .filter(|child| view.banned.contains(child))
            .filter_map(|child| child.to_peer_id().ok())
            .collect();
        tree.evict.extend(banned);
        if let Some(carriers) = &view.carriers {
            tree.subtree.set_carriers(carriers.iter().copied());
        }
        if tree
            .view
            .as_ref()
            .is_none_or(|held| held.excluded != view.excluded)
        {
            if view.excluded.contains(&self.me) {
                warn!(%room, "the host took this node out of the relay tree: it takes no children");
            }
            tree.subtree.set_excluded(view.excluded.iter().copied());
        }
        tree.view = Some(view);
        true
    }
}

#[cfg(test)]
mod tests {
    use earshot_protocol::PeerKey;
    use earshot_protocol::audience::AudienceView;
    use earshot_protocol::id::{Sig, Timestamp};

    use super::*;

    fn view(
        room: RoomId,
        seq: u64,
        banned: Vec<PeerKey>,
        host: &ed25519_dalek::SigningKey,
    ) -> Verified<AudienceView> {
        let bytes = AudienceView {
            room,
            seq,
            at: Timestamp(1_800_000_000_000 + seq),
            stage: Vec::new(),
            hands: Vec::new(),
            hands_total: 0,
            listeners: 1,
            reactions: Vec::new(),
            recording: false,
            ended: false,
            banned,
            revoked: Vec::new(),
            carriers: None,
            excluded: Vec::new(),
            keys: None,
            audio_loss: 0,
            signature: Sig([0; 64]),
        }
        .sign(host)
        .encode();
        AudienceView::decode_verified(&bytes, room, &PeerKey::from(host)).expect("signed")
    }

    #[test]
    fn an_old_view_replayed_is_not_kept_or_passed_on() {
        let host = ed25519_dalek::SigningKey::from_bytes(&[1; 32]);
        let room = RoomId([9; 16]);
        let (tree, _events) =
            super::super::Tree::new(ed25519_dalek::SigningKey::from_bytes(&[2; 32]));
        tree.open(room, PeerKey::from(&host), 4, &[]);
        let banned = PeerKey([5; 32]);
        assert!(tree.keep_view(&room, view(room, 5, vec![banned], &host)));
        // A relay replays an older view (one from before the ban), and the same one again.
        assert!(!tree.keep_view(&room, view(room, 4, Vec::new(), &host)));
        assert!(!tree.keep_view(&room, view(room, 5, Vec::new(), &host)));
        let held = tree.view(&room).expect("a view held");
        assert_eq!(held.seq, 5);
        assert_eq!(held.banned, vec![banned], "the ban stands");
        assert!(tree.keep_view(&room, view(room, 6, Vec::new(), &host)));
        // Another room's view goes nowhere.
        assert!(!tree.keep_view(&RoomId([8; 16]), view(room, 7, Vec::new(), &host)));
    }
}
