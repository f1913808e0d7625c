//! The host-rooted relay tree, planned as a pure state machine.
//!
//! The host runs a [`TreePlanner`]: every member that wants audio joins with the number of
//! children it can feed (its upload capacity, in streams) and its round-trip time to the host.
//! The planner answers with where to attach: the shallowest member with a free slot, then the
//! lowest RTT (this is the "redirect": a full node's joiners go to a child with room). When a
//! member leaves, each of its children is re-attached at once, with its whole subtree: to the
//! departed member's parent (the grandparent, which just gained a free slot) when it can take it,
//! else to the best free slot outside the orphan's own subtree. Members that cannot be placed
//! (the tree is full) wait and are placed as soon as a slot opens.
//!
//! Pure: no I/O, no clock, no randomness; the same inputs give the same tree.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use crate::id::PeerKey;

/// One member's place: the member, its parent (`None` for the host and for those waiting), and
/// its depth (`None` while waiting).
pub type Placement = (PeerKey, Option<PeerKey>, Option<u16>);

/// What the planner is told.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum TreeInput {
    /// A member wants the audio; it can feed `capacity` children.
    Join {
        peer: PeerKey,
        capacity: u16,
        rtt_ms: u32,
    },
    /// A member left, or its parent reports it silent.
    Leave { peer: PeerKey },
    /// A member's capacity changed (0 stops it taking new children; existing ones stay).
    Capacity { peer: PeerKey, capacity: u16 },
}

/// What the planner decided.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum TreeOutput {
    /// `child` (with its subtree) is to receive audio from `parent`.
    Attach {
        child: PeerKey,
        parent: PeerKey,
        depth: u16,
    },
    /// No slot is free for `peer`; it waits and will get an `Attach` when one opens.
    Waiting { peer: PeerKey },
}

#[derive(Clone, Debug)]
struct Slot {
    parent: Option<PeerKey>,
    children: BTreeSet<PeerKey>,
    capacity: u16,
    rtt_ms: u32,
    depth: u16,
}

/// The tree of one room, as its host plans it.
#[derive(Clone, Debug)]
pub struct TreePlanner {
    root: PeerKey,
    nodes: BTreeMap<PeerKey, Slot>,
    waiting: VecDeque<PeerKey>,
}

impl TreePlanner {
    /// A tree with only the host, which can feed `capacity` children itself.
    pub fn new(root: PeerKey, capacity: u16) -> Self {
        let mut nodes = BTreeMap::new();
        nodes.insert(
            root,
            Slot {
                parent: None,
                children: BTreeSet::new(),
                capacity,
                rtt_ms: 0,
                depth: 0,
            },
        );
        Self {
            root,
            nodes,
            waiting: VecDeque::new(),
        }
    }

    pub fn root(&self) -> PeerKey {
        self.root
    }

    /// Applies one input and returns the decisions it caused.
    pub fn handle(&mut self, input: TreeInput) -> Vec<TreeOutput> {
        let mut out = Vec::new();
        match input {
            TreeInput::Join {
                peer,
                capacity,
                rtt_ms,
            } => {
                if peer == self.root {
                    return out;
                }
                if let Some(slot) = self.nodes.get_mut(&peer) {
                    // A re-join (reconnect) keeps its place; refresh what it declared.
                    slot.capacity = capacity;
                    slot.rtt_ms = rtt_ms;
                    if let Some(parent) = slot.parent {
                        out.push(TreeOutput::Attach {
                            child: peer,
                            parent,
                            depth: slot.depth,
                        });
                        return out;
                    }
                } else {
                    self.nodes.insert(
                        peer,
                        Slot {
                            parent: None,
                            children: BTreeSet::new(),
                            capacity,
                            rtt_ms,
                            depth: 0,
                        },
                    );
                }
                self.place(peer, None, &mut out);
                // A newcomer with capacity opens slots for those waiting.
                self.place_waiting(&mut out);
            }
            TreeInput::Leave { peer } => {
                if peer == self.root {
                    return out;
                }
                self.waiting.retain(|p| *p != peer);
                let Some(slot) = self.nodes.remove(&peer) else {
                    return out;
                };
                if let Some(parent) = slot.parent.and_then(|p| self.nodes.get_mut(&p)) {
                    parent.children.remove(&peer);
                }
                for orphan in slot.children {
                    if let Some(orphan_slot) = self.nodes.get_mut(&orphan) {
                        orphan_slot.parent = None;
                    }
                    self.place(orphan, slot.parent, &mut out);
                }
                self.place_waiting(&mut out);
            }
            TreeInput::Capacity { peer, capacity } => {
                if let Some(slot) = self.nodes.get_mut(&peer) {
                    slot.capacity = capacity;
                }
                self.place_waiting(&mut out);
            }
        }
        out
    }

    /// Attaches `peer` (and its subtree): to `prefer` if it has room, else the best free slot
    /// outside its own subtree; else it waits.
    fn place(&mut self, peer: PeerKey, prefer: Option<PeerKey>, out: &mut Vec<TreeOutput>) {
        let subtree = self.subtree(peer);
        let preferred = prefer.filter(|p| self.has_room(p) && !subtree.contains(p));
        let parent = preferred.or_else(|| self.best_slot(&subtree));
        let Some(parent) = parent else {
            if !self.waiting.contains(&peer) {
                self.waiting.push_back(peer);
            }
            out.push(TreeOutput::Waiting { peer });
            return;
        };
        let depth = self.nodes[&parent].depth + 1;
        if let Some(slot) = self.nodes.get_mut(&parent) {
            slot.children.insert(peer);
        }
        if let Some(slot) = self.nodes.get_mut(&peer) {
            slot.parent = Some(parent);
        }
        self.set_depths(peer, depth);
        out.push(TreeOutput::Attach {
            child: peer,
            parent,
            depth,
        });
    }

    fn place_waiting(&mut self, out: &mut Vec<TreeOutput>) {
        let mut still = VecDeque::new();
        while let Some(peer) = self.waiting.pop_front() {
            let subtree = self.subtree(peer);
            if self.best_slot(&subtree).is_some() {
                self.place(peer, None, out);
            } else {
                still.push_back(peer);
            }
        }
        self.waiting = still;
    }

    fn has_room(&self, peer: &PeerKey) -> bool {
        self.attached(peer)
            && self
                .nodes
                .get(peer)
                .is_some_and(|slot| slot.children.len() < usize::from(slot.capacity))
    }

    /// Whether `peer` is connected to the root (not waiting, not in a detached subtree).
    fn attached(&self, peer: &PeerKey) -> bool {
        let mut at = *peer;
        for _ in 0..=self.nodes.len() {
            if at == self.root {
                return true;
            }
            match self.nodes.get(&at).and_then(|slot| slot.parent) {
                Some(parent) => at = parent,
                None => return false,
            }
        }
        false
    }

    /// The attached member with a free slot at the least depth, then lowest RTT, then key.
    fn best_slot(&self, exclude: &BTreeSet<PeerKey>) -> Option<PeerKey> {
        self.nodes
            .iter()
            .filter(|(key, _)| !exclude.contains(key) && self.has_room(key))
            .min_by_key(|(key, slot)| (slot.depth, slot.rtt_ms, **key))
            .map(|(key, _)| *key)
    }

    /// `peer` and everyone below it.
    fn subtree(&self, peer: PeerKey) -> BTreeSet<PeerKey> {
        let mut seen = BTreeSet::new();
        let mut stack = vec![peer];
        while let Some(at) = stack.pop() {
            if seen.insert(at)
                && let Some(slot) = self.nodes.get(&at)
            {
                stack.extend(slot.children.iter().copied());
            }
        }
        seen
    }

    fn set_depths(&mut self, peer: PeerKey, depth: u16) {
        let mut stack = vec![(peer, depth)];
        while let Some((at, depth)) = stack.pop() {
            if let Some(slot) = self.nodes.get_mut(&at) {
                slot.depth = depth;
                stack.extend(slot.children.iter().map(|child| (*child, depth + 1)));
            }
        }
    }

    /// The highest ancestor of `peer` (the host, for an attached member).
    fn top_of(&self, peer: &PeerKey) -> PeerKey {
        let mut at = *peer;
        for _ in 0..=self.nodes.len() {
            match self.nodes.get(&at).and_then(|slot| slot.parent) {
                Some(parent) => at = parent,
                None => break,
            }
        }
        at
    }

    /// Who feeds `peer`.
    pub fn parent_of(&self, peer: &PeerKey) -> Option<PeerKey> {
        self.nodes.get(peer).and_then(|slot| slot.parent)
    }

    /// Whom `peer` feeds.
    pub fn children_of(&self, peer: &PeerKey) -> Vec<PeerKey> {
        self.nodes
            .get(peer)
            .map(|slot| slot.children.iter().copied().collect())
            .unwrap_or_default()
    }

    /// Hops from the host (0 for the host), if attached.
    pub fn depth_of(&self, peer: &PeerKey) -> Option<u16> {
        self.attached(peer)
            .then(|| self.nodes.get(peer).map(|slot| slot.depth))
            .flatten()
    }

    /// `peer`'s ancestors, parent first, ending at the host: where it re-attaches at once if its
    /// parent goes silent (the grandparent, then further up).
    pub fn path_to_root(&self, peer: &PeerKey) -> Vec<PeerKey> {
        let mut path = Vec::new();
        let mut at = *peer;
        while let Some(parent) = self.nodes.get(&at).and_then(|slot| slot.parent) {
            if path.contains(&parent) || path.len() > self.nodes.len() {
                break;
            }
            path.push(parent);
            at = parent;
        }
        path
    }

    /// Every member with its parent (`None` for the host and for members waiting), depth-first
    /// from the host, children in key order, then those waiting.
    pub fn layout(&self) -> Vec<Placement> {
        let mut out = Vec::with_capacity(self.nodes.len());
        let mut stack = vec![self.root];
        while let Some(at) = stack.pop() {
            out.push((at, self.parent_of(&at), self.depth_of(&at)));
            let mut children = self.children_of(&at);
            children.reverse();
            stack.extend(children);
        }
        for key in self.nodes.keys() {
            if !out.iter().any(|(k, _, _)| k == key) {
                out.push((*key, self.parent_of(key), None));
            }
        }
        out
    }

    /// Members waiting for a slot.
    pub fn waiting(&self) -> Vec<PeerKey> {
        self.waiting.iter().copied().collect()
    }

    /// Members in the tree, the host included.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.len() <= 1
    }

    /// The deepest attached member's depth.
    pub fn max_depth(&self) -> u16 {
        self.nodes
            .keys()
            .filter_map(|key| self.depth_of(key))
            .max()
            .unwrap_or(0)
    }

    /// Checks the tree's invariants; `Err` names the first one broken. For tests and simulations.
    pub fn check(&self) -> Result<(), String> {
        for (key, slot) in &self.nodes {
            for child in &slot.children {
                let child_slot = self.nodes.get(child).ok_or_else(|| {
                    format!("{child:?} is a child of {key:?} but not in the tree")
                })?;
                if child_slot.parent != Some(*key) {
                    return Err(format!(
                        "{child:?} is listed under {key:?} but points elsewhere"
                    ));
                }
                if child_slot.depth != slot.depth + 1 {
                    return Err(format!(
                        "{child:?} has depth {} under depth {}",
                        child_slot.depth, slot.depth
                    ));
                }
            }
            // Every member hangs from the host, or from a member waiting for a slot.
            let top = self.top_of(key);
            if top != self.root && !self.waiting.contains(&top) {
                return Err(format!(
                    "{key:?} hangs from {top:?}, which is neither the host nor waiting"
                ));
            }
            if self.waiting.contains(key) && slot.parent.is_some() {
                return Err(format!("{key:?} is waiting but has a parent"));
            }
            if let Some(parent) = slot.parent {
                let parent_slot = self
                    .nodes
                    .get(&parent)
                    .ok_or_else(|| format!("{key:?}'s parent {parent:?} is not in the tree"))?;
                if !parent_slot.children.contains(key) {
                    return Err(format!("{key:?}'s parent {parent:?} does not list it"));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
