//! One room this node is in: the protocol's `RoomState` with what the node needs to take part
//! (its own authority and sequence numbers, heartbeats, messages waiting to be published, the
//! lobby capability and replays of a public room it hosts). Pure: every clock reading comes in.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use earshot_protocol::envelope::{Authority, Envelope, EnvelopeError};
use earshot_protocol::snapshot::{AnnouncedReplay, MAX_ANNOUNCED_REPLAYS};
use earshot_protocol::state::{PRESENCE_INTERVAL_MS, Rejected, RoomChange, RoomState};
use earshot_protocol::{Capability, ControlBody, RoomDescriptor, RoomId, Timestamp, Verified};

/// A message that could not be published yet (no subscribed peer seen) is retried for this long.
pub const PUBLISH_RETRY_FOR: Duration = Duration::from_secs(15);
/// Most messages waiting to be published per room.
pub const MAX_PENDING_PUBLISH: usize = 256;

/// Why this node's own action was not taken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ActError {
    #[error("not in room {0}")]
    NotInRoom(RoomId),
    #[error(transparent)]
    Envelope(#[from] EnvelopeError),
    #[error("{0}")]
    Rejected(#[from] Rejected),
    #[error("the node has stopped")]
    Stopped,
}

/// One room this node is in.
#[derive(Debug)]
pub struct Joined {
    pub descriptor: RoomDescriptor,
    pub state: RoomState,
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
}

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
            authority,
            display_name,
            next_seq,
            last_presence: now,
            pending: VecDeque::new(),
            lobby_capability: None,
            last_announced: None,
            replays: Vec::new(),
        }
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
                if !fresh {
                    tracing::warn!(%room, "gave up publishing a message: no peers in the room");
                }
                fresh
            })
            .collect()
    }

    pub fn has_queued(&self) -> bool {
        !self.pending.is_empty()
    }

    /// Keeps the replays announced in the room (newest last, at most
    /// [`MAX_ANNOUNCED_REPLAYS`]) for the room's lobby entry.
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
