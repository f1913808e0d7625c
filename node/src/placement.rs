//! Where members of the rooms this node hosts get their audio: one [`TreePlanner`] per hosted
//! room, fed with who joins (with the capacity it offers and its round-trip time to the host) and
//! who leaves, and asked where to attach a member that wants the audio. Sans-IO.

use std::collections::HashMap;

use earshot_protocol::snapshot::{Refusal, RoomResponse};
use earshot_protocol::state::RoomChange;
use earshot_protocol::tree::{Placement as Place, TreeInput, TreeOutput, TreePlanner};
use earshot_protocol::{PeerKey, RoomId};
use libp2p::{Multiaddr, PeerId};
use tracing::{debug, info};

use crate::node::{AttachError, TreeParent};
use crate::peers::Peers;

/// Most addresses a placement hands a child for its parent.
const MAX_PARENT_ADDRS: usize = 8;

/// A member asking for a place in a room's tree.
#[derive(Debug, Clone, Copy)]
pub struct Ask {
    pub room: RoomId,
    pub member: PeerKey,
    /// How many children it can feed.
    pub capacity: u16,
    /// The parent it just lost, if any.
    pub lost: Option<PeerKey>,
    /// Its round-trip time to the host, in milliseconds (0: not measured).
    pub rtt_ms: u32,
}

/// The relay trees of the rooms this node hosts.
#[derive(Debug)]
pub struct Placement {
    me: PeerKey,
    /// Children this node feeds itself in each room it hosts.
    max_children: u16,
    planners: HashMap<RoomId, TreePlanner>,
}

impl Placement {
    pub fn new(me: PeerKey, max_children: u16) -> Self {
        Self {
            me,
            max_children,
            planners: HashMap::new(),
        }
    }

    /// A room this node now hosts: a tree with only this node.
    pub fn open(&mut self, room: RoomId) {
        self.planners
            .insert(room, TreePlanner::new(self.me, self.max_children));
    }

    pub fn forget(&mut self, room: &RoomId) {
        self.planners.remove(room);
    }

    /// Members who left (or were removed) leave the tree; orphans re-attach when their stream
    /// ends, and the planner has their new parent ready by then.
    pub fn changed(&mut self, room: &RoomId, changes: &[RoomChange]) {
        let Some(tree) = self.planners.get_mut(room) else {
            return;
        };
        for change in changes {
            if let RoomChange::MemberLeft { member, .. } | RoomChange::Removed { member, .. } =
                change
            {
                tree.handle(TreeInput::Leave { peer: *member });
            }
        }
    }

    /// The tree of a room this node hosts: (member, parent, depth), depth first from the host.
    pub fn layout(&self, room: &RoomId) -> Option<Vec<Place>> {
        self.planners.get(room).map(TreePlanner::layout)
    }

    /// Places a member (known to be present) in the tree: its parent and depth, or `None`
    /// while the tree is full.
    pub fn place(&mut self, ask: Ask) -> Result<Option<(PeerKey, u16)>, Refusal> {
        let tree = self.planners.get_mut(&ask.room).ok_or(Refusal::NoTree)?;
        // A child reporting its own parent gone takes that parent out of the tree (a member can
        // only report the parent the host gave it). If the parent was only slow, the data plane
        // is unharmed (its other children keep their streams; when they next re-attach they go
        // where the planner has put them since) and it is placed afresh when it next asks.
        if let Some(lost) = ask.lost
            && lost != self.me
            && tree.parent_of(&ask.member) == Some(lost)
        {
            info!(room = %ask.room, lost = %lost.short(), child = %ask.member.short(), "a relay in the tree went silent");
            tree.handle(TreeInput::Leave { peer: lost });
        }
        let outputs = tree.handle(TreeInput::Join {
            peer: ask.member,
            capacity: ask.capacity,
            rtt_ms: ask.rtt_ms,
        });
        Ok(outputs.iter().find_map(|output| match output {
            TreeOutput::Attach {
                child,
                parent,
                depth,
            } if *child == ask.member => Some((*parent, *depth)),
            _ => None,
        }))
    }

    /// The answer to a member's `Attach`: where to get the audio, with the addresses to reach
    /// the parent at (this node's own, when it is the parent; else what the parent told us).
    pub fn answer(&mut self, ask: Ask, own_addrs: &[Multiaddr], peers: &Peers) -> RoomResponse {
        let placed = match self.place(ask) {
            Ok(Some(placed)) => placed,
            Ok(None) => return RoomResponse::Waiting,
            Err(refusal) => return RoomResponse::Refused { refusal },
        };
        let (parent, depth) = placed;
        let addrs: Vec<Multiaddr> = if parent == self.me {
            own_addrs.to_vec()
        } else {
            parent
                .to_peer_id()
                .ok()
                .and_then(|id| peers.addrs_of(&id).cloned())
                .unwrap_or_default()
        };
        debug!(room = %ask.room, child = %ask.member.short(), parent = %parent.short(), depth, "placed in the relay tree");
        RoomResponse::Parent {
            key: parent,
            addrs: earshot_protocol::addr::to_wire(&addrs, usize::MAX, MAX_PARENT_ADDRS),
            depth,
        }
    }
}

/// Reads the host's answer to our `Attach`.
pub fn read_answer(response: RoomResponse) -> Result<TreeParent, AttachError> {
    match response {
        RoomResponse::Parent { key, addrs, depth } => {
            let peer: PeerId = key.to_peer_id().map_err(|_| AttachError::BadParent)?;
            Ok(TreeParent {
                peer,
                addrs: earshot_protocol::addr::from_wire_lossy(&addrs),
                depth,
            })
        }
        RoomResponse::Waiting => Err(AttachError::Waiting),
        RoomResponse::Refused { refusal } => Err(AttachError::Refused(refusal)),
        _ => Err(AttachError::BadAnswer(crate::node::BadAnswer::Unexpected {
            expected: "a parent",
        })),
    }
}

#[cfg(test)]
mod tests;
