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
