//! Who is in a room and how each is known: roles, last-writer-wins registers, members, and each
//! author's replay window.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use super::{SEQ_WINDOW, TreePosition};
use crate::id::{CapId, PeerKey, Role, Timestamp};

/// A member's standing in the room, including the host. Ordered by authority. (Names are
/// lowercase in self-describing formats such as JSON; postcard encodes variants by index.)
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RoomRole {
    Listener,
    Speaker,
    Moderator,
    Host,
}

impl RoomRole {
    pub fn as_str(self) -> &'static str {
        match self {
            RoomRole::Listener => "listener",
            RoomRole::Speaker => "speaker",
            RoomRole::Moderator => "moderator",
            RoomRole::Host => "host",
        }
    }

    /// On stage: may speak.
    pub fn on_stage(self) -> bool {
        self >= RoomRole::Speaker
    }
}

impl From<Role> for RoomRole {
    fn from(role: Role) -> Self {
        match role {
            Role::Listener => RoomRole::Listener,
            Role::Speaker => RoomRole::Speaker,
            Role::Moderator => RoomRole::Moderator,
        }
    }
}

impl fmt::Display for RoomRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The order of last-writer-wins registers: the author's clock, then key, then sequence number.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug, Serialize, Deserialize)]
pub struct Stamp {
    pub at: Timestamp,
    pub author: PeerKey,
    pub seq: u64,
}

/// A last-writer-wins register.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct Lww<T> {
    pub value: T,
    pub stamp: Option<Stamp>,
    /// The rank of the last write (see [`Lww::set_ranked`]): writes are ordered by rank, then
    /// stamp.
    #[serde(default)]
    pub rank: u8,
}

/// The rank of the host's word on a member (mutes, roles): a moderator's writes (rank 0) never
/// undo it, however far ahead they are stamped.
pub const HOST_RANK: u8 = 1;

impl<T: PartialEq> Lww<T> {
    pub(super) fn new(value: T) -> Self {
        Self {
            value,
            stamp: None,
            rank: 0,
        }
    }

    /// Sets the value if `stamp` is newer than the current one; returns whether the visible value
    /// changed.
    pub(super) fn set(&mut self, value: T, stamp: Stamp) -> bool {
        self.set_ranked(value, stamp, 0)
    }

    /// Sets the value if (`rank`, `stamp`) is after the current write's: a total order, so every
    /// node ends with the same value whatever order the writes arrive in.
    pub(super) fn set_ranked(&mut self, value: T, stamp: Stamp, rank: u8) -> bool {
        if self
            .stamp
            .is_some_and(|current| (self.rank, current) >= (rank, stamp))
        {
            return false;
        }
        self.stamp = Some(stamp);
        self.rank = rank;
        let changed = self.value != value;
        self.value = value;
        changed
    }
}

pub(super) fn not_recording() -> Lww<bool> {
    Lww::new(false)
}

/// One member, as the room sees it.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct Member {
    pub key: PeerKey,
    /// Display name (empty until the member's `Join` is seen).
    pub name: Lww<String>,
    /// The best role among the capabilities this member presented that are still valid (`Host`
    /// for the host; a listener's once every one has expired).
    pub granted: RoomRole,
    /// A role set by the host or a moderator (or the member stepping down); wins over `granted`.
    pub assigned: Lww<Option<RoomRole>>,
    /// Said it is here (`Join`, `Presence`) or gone (`Leave`).
    pub present: Lww<bool>,
    /// Not heard from for [`PRESENCE_TIMEOUT_MS`] (local: set by `tick`, cleared by any message).
    pub timed_out: bool,
    pub last_seen: Timestamp,
    /// When this node last heard from the member, by its own clock (timeouts use this, so a
    /// member whose clock runs slow is not timed out while it keeps talking).
    pub heard_at: Timestamp,
    /// When the hand went up, if it is up.
    pub hand: Lww<Option<Timestamp>>,
    pub muted: Lww<bool>,
    /// Where the member says it gets the room's audio in the relay tree.
    pub position: Lww<Option<TreePosition>>,
    /// Says it is recording what it hears, for itself.
    #[serde(default = "not_recording")]
    pub recording: Lww<bool>,
    /// Leaf ids of the capabilities this member presented, with when each expires and the role
    /// it grants.
    pub capabilities: BTreeMap<CapId, (Timestamp, RoomRole)>,
    /// The start of the recording the member last agreed to speak in (see
    /// [`crate::control::ControlBody::RecordingConsent`]).
    #[serde(default)]
    pub consented: Option<Timestamp>,
    /// The signed envelope that said so, as folded here (not sent with the state: a recording
    /// keeps it).
    #[serde(skip)]
    pub consent: Option<Vec<u8>>,
}

impl Member {
    pub(super) fn new(key: PeerKey, granted: RoomRole) -> Self {
        Self {
            key,
            name: Lww::new(String::new()),
            granted,
            assigned: Lww::new(None),
            present: Lww::new(false),
            timed_out: false,
            last_seen: Timestamp(0),
            heard_at: Timestamp(0),
            hand: Lww::new(None),
            muted: Lww::new(false),
            position: Lww::new(None),
            recording: Lww::new(false),
            capabilities: BTreeMap::new(),
            consented: None,
            consent: None,
        }
    }

    /// The best role its capabilities still valid at `now` grant (`Host` for the host).
    pub(super) fn granted_at(&self, now: Timestamp) -> RoomRole {
        if self.granted == RoomRole::Host {
            return RoomRole::Host;
        }
        self.capabilities
            .values()
            .filter(|(expires_at, _)| now < *expires_at)
            .map(|(_, role)| *role)
            .max()
            .unwrap_or(RoomRole::Listener)
    }

    /// The role the member holds now.
    pub fn role(&self) -> RoomRole {
        if self.granted == RoomRole::Host {
            return RoomRole::Host;
        }
        self.assigned.value.unwrap_or(self.granted)
    }

    /// The display name, or the short key if none was given.
    pub fn display_name(&self) -> String {
        if self.name.value.is_empty() {
            self.key.short()
        } else {
            self.name.value.clone()
        }
    }
}

/// Per-author replay window: the highest sequence number seen and which of the
/// [`SEQ_WINDOW`] below it were seen.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize, Default)]
pub struct SeqWindow {
    pub highest: u64,
    pub seen: u64,
}

impl SeqWindow {
    pub(super) fn is_fresh(&self, seq: u64) -> bool {
        if self.highest == 0 && self.seen == 0 {
            return true;
        }
        if seq > self.highest {
            return true;
        }
        let behind = self.highest - seq;
        behind < SEQ_WINDOW && behind > 0 && self.seen & (1 << behind) == 0
    }

    pub(super) fn record(&mut self, seq: u64) {
        if self.highest == 0 && self.seen == 0 {
            self.highest = seq;
            self.seen = 1;
        } else if seq > self.highest {
            let shift = seq - self.highest;
            self.seen = if shift >= SEQ_WINDOW {
                0
            } else {
                self.seen << shift
            };
            self.seen |= 1;
            self.highest = seq;
        } else {
            self.seen |= 1 << (self.highest - seq);
        }
    }
}
