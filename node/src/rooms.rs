//! The rooms this node is in: each wraps the protocol's `RoomState` with what the node needs to
//! take part (its own authority and sequence numbers, the topic, messages waiting to be
//! published, heartbeats, the lobby announcement for public rooms it hosts).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use earshot_protocol::envelope::{Authority, Envelope, EnvelopeError};
use earshot_protocol::state::{PRESENCE_INTERVAL_MS, Rejected, RoomChange, RoomState};
use earshot_protocol::{Capability, ControlBody, RoomDescriptor, Timestamp, Verified};
use libp2p::gossipsub::IdentTopic;

/// A message that could not be published yet (no subscribed peer seen) is retried for this long.
pub const PUBLISH_RETRY_FOR: Duration = Duration::from_secs(15);
/// Most messages waiting to be published per room.
pub const MAX_PENDING_PUBLISH: usize = 256;

/// Why this node's own action was not taken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ActError {
    #[error("not in room {0}")]
    NotInRoom(earshot_protocol::RoomId),
    #[error(transparent)]
    Envelope(#[from] EnvelopeError),
    #[error("{0}")]
    Rejected(#[from] Rejected),
}

/// One room this node is in.
#[derive(Debug)]
pub struct Joined {
    pub descriptor: RoomDescriptor,
    pub state: RoomState,
    pub topic: IdentTopic,
    /// How this node's envelopes are authorised: `Host`, or the capability from its link.
    pub authority: Authority,
    pub display_name: String,
    next_seq: u64,
    last_presence: Instant,
    pub pending: VecDeque<(Instant, Vec<u8>)>,
    /// For public rooms this node hosts: the listener capability announcements carry.
    pub lobby_capability: Option<Capability>,
    /// For rooms this node hosts: the relay tree it plans.
    pub tree: Option<earshot_protocol::tree::TreePlanner>,
    pub last_announced: Option<Instant>,
    /// Replays of this room announced in it, newest last: a public room's lobby entry lists
    /// them.
    pub replays: Vec<earshot_protocol::snapshot::AnnouncedReplay>,
}

impl Joined {
    pub fn new(
        descriptor: RoomDescriptor,
        state: RoomState,
        authority: Authority,
        display_name: String,
        first_seq: u64,
    ) -> Self {
        let topic = IdentTopic::new(earshot_protocol::topic::room(&descriptor.id));
        Self {
            descriptor,
            state,
            topic,
            authority,
            display_name,
            next_seq: first_seq,
            last_presence: Instant::now(),
            pending: VecDeque::new(),
            lobby_capability: None,
            tree: None,
            last_announced: None,
            replays: Vec::new(),
        }
    }

    pub fn is_host(&self) -> bool {
        matches!(self.authority, Authority::Host)
    }

    /// Signs `body` as this node's next envelope in the room.
    pub fn sign(
        &mut self,
        key: &ed25519_dalek::SigningKey,
        now: Timestamp,
        body: ControlBody,
    ) -> Result<Verified<Envelope>, ActError> {
        let seq = self.next_seq;
        let envelope = Envelope::sign(
            key,
            self.descriptor.id,
            seq,
            now,
            self.authority.clone(),
            body,
        )?;
        self.next_seq += 1;
        Ok(envelope.verify()?)
    }

    /// Signs and applies this node's own action; the caller publishes the returned bytes.
    pub fn act(
        &mut self,
        key: &ed25519_dalek::SigningKey,
        now: Timestamp,
        body: ControlBody,
    ) -> Result<(Vec<u8>, Vec<RoomChange>), ActError> {
        let envelope = self.sign(key, now, body)?;
        let changes = self.state.apply(now, &envelope)?;
        self.last_presence = Instant::now();
        Ok((envelope.encode(), changes))
    }

    /// Whether a presence heartbeat is due.
    pub fn presence_due(&self, now: Instant) -> bool {
        now.duration_since(self.last_presence) >= Duration::from_millis(PRESENCE_INTERVAL_MS)
    }

    /// Queues bytes that could not be published yet.
    pub fn queue(&mut self, bytes: Vec<u8>) {
        if self.pending.len() >= MAX_PENDING_PUBLISH {
            self.pending.pop_front();
            tracing::warn!(room = %self.descriptor.id, "publish queue full: dropped the oldest message");
        }
        self.pending.push_back((Instant::now(), bytes));
    }
}
