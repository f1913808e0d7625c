//! This node's capacity in each room's tree, followed from its uplink
//! (`earshot_protocol::audience::uplink`): the declared upload over a child's measured cost, and
//! lowered when its children's queues skip frames. The free places it reports up follow it, so
//! the host stops placing children here; children it cannot carry are shed (told to move, as
//! when this node leaves) and repair elsewhere.

use std::time::Instant;

use earshot_protocol::audience::uplink::Uplink;
use libp2p::PeerId;
use tracing::{debug, info};

use super::{RoomTree, Tree};
use crate::fanout::{ChildStream, FanoutStats};

/// A room's uplink at this node: the host keeps one child whatever happens (its room would go
/// unheard), anyone else may end a leaf.
pub(super) fn uplink(tree: &Tree, is_host: bool, configured: u16) -> Uplink<ChildStream> {
    let declared = tree.upload_kbps.load(std::sync::atomic::Ordering::Relaxed);
    let declared = (declared > 0).then_some(declared);
    Uplink::new(declared, configured, u16::from(is_host), Instant::now())
}

/// Takes the room's counters: the capacity offered follows (the next report goes sooner when it
/// changed); returns the children to shed.
pub(super) fn follow(tree: &mut RoomTree, stats: &FanoutStats, now: Instant) -> Vec<PeerId> {
    // Sampled once a second: a child gone while behind is in one sample only.
    if !tree.uplink.due(now) {
        return Vec::new();
    }
    let shed: Vec<PeerId> = tree
        .uplink
        .tick(now, &stats.sample())
        .into_iter()
        .map(|(child, _)| child)
        .collect();
    let capacity = tree.uplink.capacity();
    let cost = tree.uplink.cost();
    debug!(
        capacity,
        shown = tree.uplink.shown(),
        child_bytes_per_sec = cost,
        basis = ?tree.uplink.basis(),
        children = tree.subtree.children().count(),
        "the uplink's second"
    );
    if capacity != tree.subtree.capacity() {
        info!(
            from = tree.subtree.capacity(),
            to = capacity,
            basis = ?tree.uplink.basis(),
            child_bytes_per_sec = cost,
            children = tree.subtree.children().count(),
            "capacity in the tree changed"
        );
        tree.subtree.set_capacity(capacity);
        tree.dirty = true;
    }
    stats.set_capacity(capacity);
    stats
        .child_cost
        .store(cost.unwrap_or(0), std::sync::atomic::Ordering::Relaxed);
    for child in &shed {
        debug!(%child, "shedding a child this node cannot feed");
    }
    shed
}
