//! The lobby as this node knows it: public rooms announced on the lobby topic (and its own), kept
//! until their announcement expires, answered to lobby queries. Sans-IO.

use std::collections::HashMap;

use earshot_protocol::snapshot::{Announcement, RoomResponse, SnapshotError};
use earshot_protocol::{RoomId, Timestamp, Verified};
use tracing::debug;

use crate::event::Event;
use crate::node::{BadAnswer, LobbyError};
use crate::rooms::Verdict;

/// Rooms kept from one host key (a host runs a few rooms at once, not thousands).
pub const MAX_ROOMS_PER_HOST: usize = 4;
/// Rooms kept in all: past it, the announcement that expires soonest makes way (honest hosts
/// announce again every few seconds; ten thousand throwaway keys fill nothing for long).
pub const MAX_ROOMS: usize = 1_000;
/// Announcements in one lobby answer (about 2 KB each).
pub const MAX_ANSWERED: usize = 200;

/// Live public rooms by id.
#[derive(Debug, Default)]
pub struct Lobby {
    rooms: HashMap<RoomId, Verified<Announcement>>,
}

impl Lobby {
    /// An announcement from the lobby topic.
    pub fn on_announcement(&mut self, now: Timestamp, data: &[u8]) -> (Verdict, Option<Event>) {
        match Announcement::decode_verified(data, now) {
            Ok(announcement) => {
                let room = announcement.descriptor.id;
                if !self.keep(now, announcement) {
                    return (Verdict::Ignore, None);
                }
                (Verdict::Accept, Some(Event::Announced { room }))
            }
            // Clocks differ: a stale announcement is not an attack.
            Err(SnapshotError::Expired { .. }) => (Verdict::Ignore, None),
            Err(err) => {
                debug!(%err, "refused a lobby announcement");
                (Verdict::Reject, None)
            }
        }
    }

    /// This node's own announcement of a room it hosts.
    pub fn insert(&mut self, announcement: Verified<Announcement>) {
        self.rooms.insert(announcement.descriptor.id, announcement);
    }

    /// Keeps `announcement` within the bounds: a room already kept is renewed; a host's
    /// [`MAX_ROOMS_PER_HOST`]+1st room is not kept; past [`MAX_ROOMS`] the one that expires
    /// soonest goes. Whether it was kept.
    fn keep(&mut self, now: Timestamp, announcement: Verified<Announcement>) -> bool {
        let room = announcement.descriptor.id;
        if !self.rooms.contains_key(&room) {
            self.expire(now);
            let host = announcement.descriptor.host;
            let hosts = self
                .rooms
                .values()
                .filter(|kept| kept.descriptor.host == host)
                .count();
            if hosts >= MAX_ROOMS_PER_HOST {
                return false;
            }
            if self.rooms.len() >= MAX_ROOMS
                && let Some(soonest) = self
                    .rooms
                    .values()
                    .min_by_key(|kept| kept.expires_at)
                    .map(|kept| kept.descriptor.id)
            {
                self.rooms.remove(&soonest);
            }
        }
        self.rooms.insert(room, announcement);
        true
    }

    /// The rooms whose announcement is still valid, the most listened to first.
    pub fn live(&mut self, now: Timestamp) -> Vec<Verified<Announcement>> {
        self.expire(now);
        let mut live: Vec<_> = self.rooms.values().cloned().collect();
        live.sort_by_key(|a| std::cmp::Reverse(a.listeners));
        live
    }

    /// Forgets expired announcements.
    pub fn expire(&mut self, now: Timestamp) {
        self.rooms.retain(|_, a| a.expires_at > now);
    }

    /// The answer to a lobby query.
    pub fn answer(&mut self, now: Timestamp) -> RoomResponse {
        RoomResponse::Lobby {
            announcements: self
                .live(now)
                .iter()
                .take(MAX_ANSWERED)
                .map(|a| serde_bytes::ByteBuf::from(a.encode()))
                .collect(),
        }
    }
}

/// Reads another node's answer to our lobby query: the announcements that verify.
pub fn read_answer(
    now: Timestamp,
    response: RoomResponse,
) -> Result<Vec<Verified<Announcement>>, LobbyError> {
    match response {
        RoomResponse::Lobby { announcements } => Ok(announcements
            .iter()
            .take(MAX_ANSWERED)
            .filter_map(|bytes| Announcement::decode_verified(bytes, now).ok())
            .collect()),
        _ => Err(LobbyError::BadAnswer(BadAnswer::Unexpected {
            expected: "the lobby",
        })),
    }
}

#[cfg(test)]
mod tests;
