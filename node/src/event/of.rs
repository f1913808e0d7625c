//! Events from the node's own types: a room's changes, a fetch's progress, who is in a room,
//! this node's place in its tree.

use earshot_protocol::replay::ReplayLink;
use earshot_protocol::state::{Member, RoomChange, RoomState};
use earshot_protocol::{PeerKey, RoomId};

use super::{Event, MemberInfo, TreeNode};
use crate::node::RoomView;
use crate::tree::TreeInfo;

impl Event {
    /// The event for a change of a room's state, with display names from `state` (a member
    /// never seen is named by its short key).
    pub fn of_change(room: RoomId, change: &RoomChange, state: &RoomState) -> Event {
        Self::of_change_named(room, change, |key: &PeerKey| {
            state
                .members
                .get(key)
                .map_or_else(|| key.short(), Member::display_name)
        })
    }

    /// [`Self::of_change`] with display names from `name`.
    pub fn of_change_named(
        room: RoomId,
        change: &RoomChange,
        name: impl Fn(&PeerKey) -> String,
    ) -> Event {
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
            RoomChange::Support {
                from,
                amount,
                unit,
                note,
                id,
                envelope,
            } => Event::Support {
                room,
                from,
                name: name(&from),
                amount,
                unit,
                note,
                id: hex(&id),
                envelope,
            },
            RoomChange::SupportConfirmed {
                supporter,
                id,
                envelope,
            } => Event::SupportConfirmed {
                room,
                supporter,
                name: name(&supporter),
                id: hex(&id),
                envelope,
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
                key,
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
                    key: key
                        .and_then(|key| <[u8; 32]>::try_from(key.as_slice()).ok())
                        .map(earshot_protocol::private::Secret::from_bytes),
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
            RoomChange::RecordingConsent { member, since } => Event::RecordingConsent {
                room,
                member,
                name: name(&member),
                since,
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
    /// Who is in the room (`/who`): the stage (and, for the stage, whoever else is in its fold),
    /// the raised hands (the audience's too), and how many listen.
    pub fn who(room: RoomId, view: &RoomView) -> Event {
        let state = &view.state;
        let mut hands: Vec<PeerKey> = state.hands().iter().map(|member| member.key).collect();
        if let Some(audience) = &view.view {
            for hand in &audience.hands {
                if !hands.contains(&hand.key) {
                    hands.push(hand.key);
                }
            }
        }
        Event::Who {
            room,
            recording: state.recording.value,
            members: state.present().into_iter().map(MemberInfo::of).collect(),
            hands,
            listeners: view.view.as_ref().map_or(0, |audience| audience.listeners),
        }
    }

    /// This node's place in the relay tree (`/tree`): its path from the host, itself, and the
    /// children it feeds, with `size` nodes in its subtree.
    pub fn tree(room: RoomId, info: &TreeInfo, view: &RoomView, me: PeerKey) -> Event {
        let name = |key: &PeerKey| {
            view.state
                .members
                .get(key)
                .map_or_else(|| key.short(), Member::display_name)
        };
        let mut nodes = Vec::new();
        let mut parent = None;
        // The path is the parent first, up to the host: from the host down.
        for (depth, key) in info.path.iter().rev().enumerate() {
            nodes.push(TreeNode {
                peer_id: *key,
                name: name(key),
                parent,
                depth: Some(u16::try_from(depth).unwrap_or(u16::MAX)),
            });
            parent = Some(*key);
        }
        let depth = u16::try_from(info.path.len()).unwrap_or(u16::MAX);
        nodes.push(TreeNode {
            peer_id: me,
            name: name(&me),
            parent,
            depth: Some(depth),
        });
        for child in &info.children {
            nodes.push(TreeNode {
                peer_id: *child,
                name: name(child),
                parent: Some(me),
                depth: Some(depth.saturating_add(1)),
            });
        }
        Event::Tree {
            room,
            nodes,
            subtree: info.size,
        }
    }
}

/// Bytes in lowercase hex.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}
