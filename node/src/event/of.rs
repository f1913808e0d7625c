//! Events from the node's own types: a room's changes, a fetch's progress, the tree as the room
//! sees it.

use std::collections::{HashMap, HashSet};

use earshot_protocol::replay::ReplayLink;
use earshot_protocol::state::{Member, RoomChange, RoomState};
use earshot_protocol::{PeerKey, RoomId};

use super::{Event, MemberInfo, TreeNode};

impl Event {
    /// The event for a change of a room's state, with display names from `state` (a member
    /// never seen is named by its short key).
    pub fn of_change(room: RoomId, change: &RoomChange, state: &RoomState) -> Event {
        let name = |key: &PeerKey| {
            state
                .members
                .get(key)
                .map_or_else(|| key.short(), Member::display_name)
        };
        match change.clone() {
            RoomChange::MemberJoined { member, name, role } => Event::MemberJoined {
                room,
                member,
                name,
                role,
            },
            RoomChange::MemberLeft { member, reason } => Event::MemberLeft {
                room,
                member,
                name: name(&member),
                reason,
            },
            RoomChange::RoleChanged { member, role, by } => Event::RoleChanged {
                room,
                member,
                name: name(&member),
                role,
                by,
                by_name: name(&by),
            },
            RoomChange::HandRaised { member } => Event::HandRaised {
                room,
                member,
                name: name(&member),
            },
            RoomChange::HandLowered { member } => Event::HandLowered {
                room,
                member,
                name: name(&member),
            },
            RoomChange::Muted { member, by } => Event::Muted {
                room,
                member,
                name: name(&member),
                by,
                by_name: name(&by),
            },
            RoomChange::Unmuted { member, by } => Event::Unmuted {
                room,
                member,
                name: name(&member),
                by,
                by_name: name(&by),
            },
            RoomChange::Removed { member, by } => Event::Removed {
                room,
                member,
                name: name(&member),
                by,
                by_name: name(&by),
            },
            RoomChange::Chat { from, text, at } => Event::Chat {
                room,
                from,
                name: name(&from),
                text,
                at,
            },
            RoomChange::Reaction { from, emoji } => Event::Reaction {
                room,
                from,
                name: name(&from),
                emoji,
            },
            RoomChange::RecordingStarted { by } => Event::RecordingStarted {
                room,
                by,
                by_name: name(&by),
            },
            RoomChange::RecordingStopped { by } => Event::RecordingStopped {
                room,
                by,
                by_name: name(&by),
            },
            RoomChange::RoomEnded { by } => Event::RoomEnded {
                room,
                by,
                by_name: name(&by),
            },
            RoomChange::TreeMoved { member, position } => Event::TreeMoved {
                room,
                member,
                name: name(&member),
                parent: position.parent,
                depth: position.depth,
            },
            RoomChange::ReplayAvailable {
                by,
                manifest,
                recording,
                recorder,
                title,
                bytes,
                addrs,
            } => Event::ReplayAvailable {
                room,
                by,
                name: name(&by),
                manifest,
                recording,
                recorder,
                title,
                bytes,
                link: ReplayLink {
                    manifest,
                    recorder,
                    addrs: earshot_protocol::replay::parse_addrs(&addrs).unwrap_or_default(),
                },
            },
            RoomChange::MemberRecording { member, on: true } => Event::MemberRecordingStarted {
                room,
                member,
                name: name(&member),
            },
            RoomChange::MemberRecording { member, on: false } => Event::MemberRecordingStopped {
                room,
                member,
                name: name(&member),
            },
        }
    }
}

impl From<&crate::recording::replay::FetchEvent> for Event {
    fn from(event: &crate::recording::replay::FetchEvent) -> Self {
        use crate::recording::replay::FetchEvent;
        match event.clone() {
            FetchEvent::HolderFailed { peer, reason } => Event::HolderFailed { peer, reason },
            FetchEvent::Manifest {
                from,
                title,
                chunks,
                bytes,
                held,
            } => Event::Manifest {
                from,
                title,
                chunks,
                bytes,
                held,
            },
            FetchEvent::BadManifest { from, reason } => Event::BadManifest { from, reason },
            FetchEvent::Chunk {
                index,
                from,
                done,
                total,
            } => Event::Chunk {
                index,
                from,
                done,
                total,
            },
            FetchEvent::BadChunk {
                index,
                from,
                reason,
            } => Event::BadChunk {
                index,
                from,
                reason,
            },
        }
    }
}

impl Event {
    /// Who is in the room (`/who`).
    pub fn who(room: RoomId, state: &RoomState) -> Event {
        Event::Who {
            room,
            recording: state.recording.value,
            members: state.present().into_iter().map(MemberInfo::of).collect(),
            hands: state.hands().iter().map(|member| member.key).collect(),
        }
    }

    /// The relay tree as the room sees it (`/tree`).
    pub fn tree(room: RoomId, state: &RoomState) -> Event {
        Event::Tree {
            room,
            nodes: tree_of(state),
        }
    }
}

/// The relay tree from a room's state: the host, then each present member under the parent it
/// says it has, depth first; members not (yet) attached last.
pub fn tree_of(state: &RoomState) -> Vec<TreeNode> {
    let present = state.present();
    let mut children: HashMap<PeerKey, Vec<PeerKey>> = HashMap::new();
    for member in &present {
        if let Some(position) = member.position.value {
            children
                .entry(position.parent)
                .or_default()
                .push(member.key);
        }
    }
    for list in children.values_mut() {
        list.sort();
    }
    let name = |key: &PeerKey| {
        state
            .members
            .get(key)
            .map_or_else(|| key.short(), Member::display_name)
    };
    let mut nodes = Vec::new();
    let mut seen = HashSet::new();
    let mut stack = vec![(state.host, None, 0u16)];
    while let Some((key, parent, depth)) = stack.pop() {
        if !seen.insert(key) {
            continue;
        }
        nodes.push(TreeNode {
            peer_id: key,
            name: name(&key),
            parent,
            depth: Some(depth),
        });
        if let Some(list) = children.get(&key) {
            for child in list.iter().rev() {
                stack.push((*child, Some(key), depth.saturating_add(1)));
            }
        }
    }
    for member in present {
        if !seen.contains(&member.key) {
            nodes.push(TreeNode {
                peer_id: member.key,
                name: member.display_name(),
                parent: None,
                depth: None,
            });
        }
    }
    nodes
}
