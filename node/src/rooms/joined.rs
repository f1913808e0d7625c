//! One room this node is in: the protocol's `RoomState` with what the node needs to take part
//! (its own authority and sequence numbers, heartbeats, messages waiting to be published, the
//! lobby capability and replays of a public room it hosts). Pure: every clock reading comes in.

use std::collections::{HashSet, VecDeque};
use std::time::{Duration, Instant};

use earshot_protocol::audience::AudienceView;
use earshot_protocol::audience::host::{HostAudience, MAX_RECENT_CHAT};
use earshot_protocol::envelope::{Authority, Envelope, EnvelopeError};
use earshot_protocol::snapshot::{AnnouncedReplay, MAX_ANNOUNCED_REPLAYS};
use earshot_protocol::state::{PRESENCE_INTERVAL_MS, Rejected, RoomChange, RoomState};
use earshot_protocol::{
    Capability, ControlBody, InviteLink, PeerKey, RoomDescriptor, RoomId, Timestamp, Verified,
};

/// A message that could not be published yet (no subscribed peer seen) is retried for this long.
pub const PUBLISH_RETRY_FOR: Duration = Duration::from_secs(15);
/// Most messages waiting to be published per room.
pub const MAX_PENDING_PUBLISH: usize = 256;
/// Audience capabilities the host remembers, to revoke on removal.
pub const MAX_AUDIENCE_CAPS: usize = 4096;

/// Why this node's own action was not taken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ActError {
    #[error("not in room {0}")]
    NotInRoom(RoomId),
    #[error(transparent)]
    Envelope(#[from] EnvelopeError),
    #[error("{0}")]
    Rejected(#[from] Rejected),
    #[error("a listener raises a hand, chats, reacts or leaves; the rest is for the stage")]
    Audience,
    #[error("the node has stopped")]
    Stopped,
}

/// Where a member is in a room.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tier {
    /// On the room's topic, folding its signed messages: the host, speakers, moderators (and
    /// whoever joined with their invite).
    Stage,
    /// Off the topic: the room comes down the relay tree (the host's views, the envelopes it
    /// relays), and what this member says goes up it to the host.
    Audience,
}

/// How long a relayed promotion counts before a view shows it.
const PROMOTED_HEARD: Duration = Duration::from_secs(5);
/// Promotions remembered that way at most.
const MAX_PROMOTED_LATELY: usize = 32;

/// One room this node is in.
#[derive(Debug)]
pub struct Joined {
    pub descriptor: RoomDescriptor,
    pub state: RoomState,
    /// In the audience: who was promoted lately, by relayed envelopes a view has not shown
    /// yet (their voices are heard at once).
    pub promoted_lately: Vec<(PeerKey, std::time::Instant)>,
    /// How this node's envelopes are authorised: `Host`, or the capability from its link.
    pub authority: Authority,
    pub display_name: String,
    next_seq: u64,
    last_presence: Instant,
    /// Messages waiting for a subscribed peer, with when each was first tried.
    pending: VecDeque<(Instant, Vec<u8>)>,
    /// For public rooms this node hosts: the listener capability announcements carry.
    pub lobby_capability: Option<Capability>,
    pub last_announced: Option<Instant>,
    /// Replays of this room announced in it, newest last: a public room's lobby entry lists
    /// them.
    pub replays: Vec<AnnouncedReplay>,
    pub tier: Tier,
    /// The link this member joined with (to join again as a member of the stage, promoted).
    pub link: Option<InviteLink>,
    /// A listener promoted, joining again as a member of the stage.
    pub stepping_up: bool,
    /// The host's latest view of the room for its audience.
    pub view: Option<AudienceView>,
    /// At the host: its audience.
    pub audience: Option<HostAudience>,
    /// When the host's latest view arrived (an audience member's sign of life from the host).
    pub heard_at: Instant,
    /// Chat relayed down the tree lately (as relayed): the host hands it to joiners.
    pub recent_relayed: VecDeque<Vec<u8>>,
    /// This listener's own lines sent up the tree, until they come back relayed (see
    /// `rooms::direct`).
    pub(super) awaited: VecDeque<super::direct::Awaited>,
    /// At the host: the capabilities listeners joined the audience with lately (removing one
    /// revokes its link, as it does a member's of the stage).
    pub audience_caps: VecDeque<(PeerKey, earshot_protocol::CapId)>,
    /// A private room's keys (and at the host, its key schedule).
    pub private: Option<super::private::Private>,
    /// What came down the tree lately, to drop what comes twice.
    seen: VecDeque<[u8; 32]>,
    seen_set: HashSet<[u8; 32]>,
    /// Listeners this node admitted lately (a view counts them once they are in the tree).
    admitted_lately: VecDeque<Instant>,
    /// This node's own budget of chat lines and reactions on the stage (half what others take).
    pub own_budget: earshot_protocol::state::Budgets,
}

/// How long an admitted listener counts towards the room's limit before the tree's reports
/// count it (or it never came).
const ADMITTED_COUNTS: Duration = Duration::from_secs(2);

impl Joined {
    pub fn new(
        descriptor: RoomDescriptor,
        state: RoomState,
        authority: Authority,
        display_name: String,
        next_seq: u64,
        now: Instant,
    ) -> Self {
        Self {
            descriptor,
            state,
            promoted_lately: Vec::new(),
            authority,
            display_name,
            next_seq,
            last_presence: now,
            pending: VecDeque::new(),
            lobby_capability: None,
            last_announced: None,
            replays: Vec::new(),
            tier: Tier::Stage,
            link: None,
            stepping_up: false,
            view: None,
            heard_at: now,
            audience: None,
            recent_relayed: VecDeque::new(),
            awaited: VecDeque::new(),
            audience_caps: VecDeque::new(),
            private: None,
            seen: VecDeque::new(),
            seen_set: HashSet::new(),
            admitted_lately: VecDeque::new(),
            own_budget: earshot_protocol::state::Budgets::own(),
        }
    }

    /// In the audience: `key` was put on stage by a relayed envelope (heard at once, until a
    /// view shows it; [`MAX_PROMOTED_LATELY`] kept, for [`PROMOTED_HEARD`]).
    pub fn promoted(&mut self, key: PeerKey, now: Instant) {
        self.promoted_lately
            .retain(|(_, at)| now.saturating_duration_since(*at) < PROMOTED_HEARD);
        if self.promoted_lately.len() < MAX_PROMOTED_LATELY {
            self.promoted_lately.push((key, now));
        }
    }

    /// Remembers something that came down the tree; `false` if it came before.
    pub fn saw(&mut self, bytes: &[u8]) -> bool {
        let digest = super::audience::digest(bytes);
        if !self.seen_set.insert(digest) {
            return false;
        }
        self.seen.push_back(digest);
        if self.seen.len() > super::audience::SEEN_CAP
            && let Some(old) = self.seen.pop_front()
        {
            self.seen_set.remove(&old);
        }
        true
    }

    /// The chat relayed lately, for a joiner's answer.
    pub fn recent_chat(&self) -> Vec<serde_bytes::ByteBuf> {
        self.recent_relayed
            .iter()
            .cloned()
            .map(serde_bytes::ByteBuf::from)
            .collect()
    }

    /// Keeps a relayed chat line for joiners (the latest [`MAX_RECENT_CHAT`]).
    pub fn remember_relayed(&mut self, relayed: &[u8]) {
        self.recent_relayed.push_back(relayed.to_vec());
        if self.recent_relayed.len() > MAX_RECENT_CHAT {
            self.recent_relayed.pop_front();
        }
    }

    /// A name for `key`: as the room knows it, or as a hand in the host's view, or its short
    /// key.
    pub fn name_of(&self, key: &PeerKey) -> String {
        if let Some(member) = self.state.members.get(key)
            && !member.name.value.is_empty()
        {
            return member.name.value.clone();
        }
        if let Some(hand) = self
            .view
            .as_ref()
            .and_then(|view| view.hands.iter().find(|hand| hand.key == *key))
        {
            return hand.name.clone();
        }
        match &self.audience {
            Some(audience) => audience.name_of(key),
            None => key.short(),
        }
    }

    /// Whether `envelope` may come on the room's topic from `origin`: from the stage (a member
    /// present in the fold, one the stage promoted, one whose invite is for the stage), or
    /// published by the host (a listener's chat it let through).
    pub fn may_publish(&self, envelope: &Envelope, origin: Option<libp2p::PeerId>) -> bool {
        let author = envelope.author;
        let by_host = origin.is_some() && origin == self.descriptor.host.to_peer_id().ok();
        let known = self
            .state
            .members
            .get(&author)
            .is_some_and(|member| self.state.is_present(member) || member.role().on_stage());
        let invited_to_stage = match &envelope.authority {
            Authority::Host => true,
            Authority::Capability(capability) => {
                capability.role != earshot_protocol::Role::Listener
            }
            Authority::CapabilityRef(_) => false,
        };
        by_host || known || invited_to_stage
    }

    /// Whether the room has no place left for `joiner` (the descriptor's limits): on stage, the
    /// members present (one already present comes back); in the audience, the listeners the
    /// latest view counts and those admitted since. A listener admitted is counted at once.
    pub fn full(&mut self, now: Instant, joiner: &PeerKey, on_stage: bool) -> Option<u32> {
        let limits = self.descriptor.limits;
        if on_stage {
            let present = self.state.present();
            let back = present.iter().any(|member| member.key == *joiner);
            let max = u32::from(limits.stage);
            return (!back && present.len() >= usize::from(limits.stage)).then_some(max);
        }
        while self
            .admitted_lately
            .front()
            .is_some_and(|at| now.saturating_duration_since(*at) > ADMITTED_COUNTS)
        {
            self.admitted_lately.pop_front();
        }
        let counted = self.view.as_ref().map_or(0, |view| view.listeners);
        let lately = u32::try_from(self.admitted_lately.len()).unwrap_or(u32::MAX);
        if counted.saturating_add(lately) >= limits.listeners {
            return Some(limits.listeners);
        }
        self.admitted_lately.push_back(now);
        None
    }

    /// Remembers the capability a listener joined the audience with (the latest
    /// [`MAX_AUDIENCE_CAPS`]).
    pub fn audience_joined_with(&mut self, key: PeerKey, id: earshot_protocol::CapId) {
        self.audience_caps.push_back((key, id));
        if self.audience_caps.len() > MAX_AUDIENCE_CAPS {
            self.audience_caps.pop_front();
        }
    }

    /// The capabilities `key` is known to have joined with: on the stage, or in the audience.
    pub fn capabilities_of(&self, key: &PeerKey) -> Vec<earshot_protocol::CapId> {
        let mut ids: Vec<_> = self
            .state
            .members
            .get(key)
            .map(|member| member.capabilities.keys().copied().collect())
            .unwrap_or_default();
        for (holder, id) in &self.audience_caps {
            if holder == key && !ids.contains(id) {
                ids.push(*id);
            }
        }
        ids
    }

    /// The sequence number this member's next envelope takes.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// Signs this node's own envelope without applying it (an audience member's, for the host).
    pub fn sign_only(
        &mut self,
        key: &ed25519_dalek::SigningKey,
        now: Timestamp,
        body: ControlBody,
    ) -> Result<Verified<Envelope>, ActError> {
        self.sign(key, now, body)
    }

    pub fn id(&self) -> RoomId {
        self.descriptor.id
    }

    pub fn is_host(&self) -> bool {
        matches!(self.authority, Authority::Host)
    }

    /// Signs and applies this node's own action; the caller publishes the returned bytes.
    pub fn act(
        &mut self,
        key: &ed25519_dalek::SigningKey,
        now: Timestamp,
        instant: Instant,
        body: ControlBody,
    ) -> Result<(Vec<u8>, Vec<RoomChange>), ActError> {
        let envelope = self.sign(key, now, body)?;
        let changes = self.state.apply(now, &envelope)?;
        self.last_presence = instant;
        Ok((envelope.encode(), changes))
    }

    fn sign(
        &mut self,
        key: &ed25519_dalek::SigningKey,
        now: Timestamp,
        body: ControlBody,
    ) -> Result<Verified<Envelope>, ActError> {
        let envelope = Envelope::sign(
            key,
            self.descriptor.id,
            self.next_seq,
            now,
            self.authority.clone(),
            body,
        )?;
        self.next_seq += 1;
        Ok(envelope.verify()?)
    }

    /// Whether a presence heartbeat is due.
    pub fn presence_due(&self, now: Instant) -> bool {
        now.duration_since(self.last_presence) >= Duration::from_millis(PRESENCE_INTERVAL_MS)
    }

    /// Queues bytes that could not be published yet (first tried at `since`).
    pub fn queue(&mut self, since: Instant, bytes: Vec<u8>) {
        if self.pending.len() >= MAX_PENDING_PUBLISH {
            self.pending.pop_front();
            tracing::warn!(room = %self.descriptor.id, "publish queue full: dropped the oldest message");
        }
        self.pending.push_back((since, bytes));
    }

    /// Everything queued, to try again; messages queued for longer than
    /// [`PUBLISH_RETRY_FOR`] are given up.
    pub fn take_queued(&mut self, now: Instant) -> Vec<(Instant, Vec<u8>)> {
        let room = self.descriptor.id;
        self.pending
            .drain(..)
            .filter(|(since, _)| {
                let fresh = now.duration_since(*since) <= PUBLISH_RETRY_FOR;
                // The usual case is a host alone on the room's topic (its audience hears it
                // through the tree): nothing to warn anyone about.
                if !fresh {
                    tracing::debug!(%room, "gave up publishing a message: no peers on the topic");
                }
                fresh
            })
            .collect()
    }

    pub fn has_queued(&self) -> bool {
        !self.pending.is_empty()
    }

    /// Keeps the replays announced in the room (newest last, at most
    /// [`MAX_ANNOUNCED_REPLAYS`]) for the room's lobby entry: only those the host or a
    /// moderator recorded (the lobby entry is the host's word; a listener's replay is its own).
    pub fn note_replays(&mut self, changes: &[RoomChange]) {
        for change in changes {
            if let RoomChange::ReplayAvailable {
                manifest,
                recorder,
                title,
                bytes,
                addrs,
                ..
            } = change
            {
                let vouched = *recorder == self.descriptor.host
                    || self.state.members.get(recorder).is_some_and(|member| {
                        matches!(
                            member.role(),
                            earshot_protocol::state::RoomRole::Host
                                | earshot_protocol::state::RoomRole::Moderator
                        )
                    });
                if !vouched {
                    continue;
                }
                self.replays.retain(|replay| replay.manifest != *manifest);
                self.replays.push(AnnouncedReplay {
                    manifest: *manifest,
                    recorder: *recorder,
                    title: title.clone(),
                    bytes: *bytes,
                    addrs: addrs.clone(),
                });
                let excess = self.replays.len().saturating_sub(MAX_ANNOUNCED_REPLAYS);
                self.replays.drain(..excess);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use earshot_protocol::replay::ManifestId;
    use earshot_protocol::{RecordingId, RoomId, Visibility};

    use super::*;
    use crate::fixtures::{descriptor, key, signing};

    fn replay(recorder: PeerKey, n: u8) -> RoomChange {
        RoomChange::ReplayAvailable {
            by: recorder,
            manifest: ManifestId([n; 16]),
            recording: RecordingId([n; 16]),
            recorder,
            title: format!("replay {n}"),
            bytes: 1,
            addrs: Vec::new(),
            key: None,
        }
    }

    #[test]
    fn only_the_hosts_and_moderators_replays_go_into_the_lobby_entry() {
        let host = signing(1);
        let room = descriptor(&host, RoomId([9; 16]), Visibility::Public);
        let state = RoomState::new(room.id, room.host);
        let mut joined = Joined::new(
            room,
            state,
            Authority::Host,
            "ana".into(),
            1,
            Instant::now(),
        );
        // A listener's replay of the room (its own recording) is its own, not the host's word.
        joined.note_replays(&[replay(key(2), 1)]);
        assert!(joined.replays.is_empty());
        joined.note_replays(&[replay(key(1), 2)]);
        assert_eq!(joined.replays.len(), 1);
        assert_eq!(joined.replays[0].recorder, key(1));
    }
}
