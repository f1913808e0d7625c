//! Carrying rooms for others: whether this node (a community relay) agrees when a host asks it
//! to carry a room, and the share of its upload budget each room's tree is offered. Sans-IO.
//!
//! The budget ([`crate::net::NetConfig::children_budget`]) is divided among rooms as they come:
//! the capacity offered in a room's tree is what the other rooms left, up to the per-room
//! limit, set aside when the host asks (before the join completes), and given back after
//! [`PROMISE_HELD_FOR`] when the join never completed.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use earshot_protocol::snapshot::Refusal;
use earshot_protocol::{InviteLink, RoomId};
use libp2p::PeerId;
use tracing::info;

/// How long a room's share of the budget is kept for a join that has not completed.
pub const PROMISE_HELD_FOR: Duration = Duration::from_secs(30);

/// This node's rules for carrying rooms, and the shares promised.
#[derive(Debug)]
pub struct CarryBudget {
    /// Rooms carried for others at most (0: this node does not carry rooms).
    max_rooms: usize,
    /// Children across all rooms (`None`: no total).
    budget: Option<usize>,
    /// Children in one room.
    per_room: u16,
    /// The capacity offered in each room so far, with when it was set aside.
    promised: HashMap<RoomId, (u16, Instant)>,
    /// Rooms their hosts asked this node to carry (it is their entry point).
    asked: HashSet<RoomId>,
}

impl CarryBudget {
    pub fn new(max_rooms: usize, budget: Option<usize>, per_room: u16) -> Self {
        Self {
            max_rooms,
            budget,
            per_room,
            promised: HashMap::new(),
            asked: HashSet::new(),
        }
    }

    /// Whether `room`'s host asked this node to carry it.
    pub fn carries(&self, room: &RoomId) -> bool {
        self.asked.contains(room)
    }

    /// Children the budget leaves for `room` after what the other rooms were offered (a share
    /// counts while its room is joined, or for a while after it was set aside); `None`: no
    /// budget.
    fn left(
        &self,
        room: Option<RoomId>,
        joined: &impl Fn(&RoomId) -> bool,
        now: Instant,
    ) -> Option<usize> {
        let budget = self.budget?;
        let others: usize = self
            .promised
            .iter()
            .filter(|(id, (_, at))| {
                Some(**id) != room
                    && (joined(id) || now.saturating_duration_since(*at) < PROMISE_HELD_FOR)
            })
            .map(|(_, (n, _))| usize::from(*n))
            .sum();
        Some(budget.saturating_sub(others))
    }

    /// The capacity to offer in `room`'s tree: the per-room limit, within what the budget
    /// leaves. Remembered, so that other rooms get the rest.
    pub fn capacity_in(
        &mut self,
        room: RoomId,
        joined: impl Fn(&RoomId) -> bool,
        now: Instant,
    ) -> u16 {
        let capacity = match self.left(Some(room), &joined, now) {
            Some(left) => self.per_room.min(u16::try_from(left).unwrap_or(u16::MAX)),
            None => self.per_room,
        };
        if self.budget.is_some() {
            self.promised.retain(|id, (_, at)| {
                joined(id) || now.saturating_duration_since(*at) < PROMISE_HELD_FOR
            });
            self.promised.insert(room, (capacity, now));
        }
        capacity
    }

    /// The room is no longer carried: its share goes back.
    pub fn forget(&mut self, room: &RoomId) {
        self.promised.remove(room);
        self.asked.remove(room);
    }

    /// A host asks this node to carry its room: agreed while it carries fewer rooms than it
    /// allows, budget is left, and the link is a valid invite to the asker's own room. The
    /// room's share of the budget is set aside at once, before the next host asks.
    pub fn consider(
        &mut self,
        from: PeerId,
        link: &str,
        carried: usize,
        joined: impl Fn(&RoomId) -> bool,
        now: Instant,
    ) -> Result<InviteLink, Refusal> {
        if self.max_rooms == 0 {
            return Err(Refusal::NotACarrier);
        }
        if carried >= self.max_rooms {
            return Err(Refusal::CarryingTheMost {
                max: u32::try_from(self.max_rooms).unwrap_or(u32::MAX),
            });
        }
        if self.left(None, &joined, now) == Some(0) {
            return Err(Refusal::NoUploadLeft);
        }
        let link = InviteLink::decode(link).map_err(|err| Refusal::BadLink {
            detail: err.to_string(),
        })?;
        let room = link.capability.room;
        if joined(&room) {
            return Err(Refusal::AlreadyCarried);
        }
        if link.host.to_peer_id().ok() != Some(from) {
            return Err(Refusal::NotTheRoomsHost);
        }
        info!(%room, host = %crate::node::short(&from), "asked to carry a room");
        self.capacity_in(room, joined, now);
        // Bounded by `max_rooms` while they are joined; one never joined stays until forgotten.
        if self.asked.len() < self.max_rooms.saturating_mul(4) {
            self.asked.insert(room);
        }
        Ok(link)
    }
}

#[cfg(test)]
mod tests;
