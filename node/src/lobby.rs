//! The lobby as this node knows it: public rooms announced on the lobby topic (and its own), kept
//! until their announcement expires, answered to lobby queries. Sans-IO.

use std::collections::HashMap;

use earshot_protocol::snapshot::{Announcement, RoomResponse, SnapshotError};
use earshot_protocol::{RoomId, Timestamp, Verified};
use tracing::debug;

use crate::event::Event;
use crate::node::{BadAnswer, LobbyError};
use crate::rooms::Verdict;

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
                self.rooms.insert(room, announcement);
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

    /// The rooms whose announcement is still valid.
    pub fn live(&mut self, now: Timestamp) -> Vec<Verified<Announcement>> {
        self.expire(now);
        self.rooms.values().cloned().collect()
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
            .filter_map(|bytes| Announcement::decode_verified(bytes, now).ok())
            .collect()),
        _ => Err(LobbyError::BadAnswer(BadAnswer::Unexpected {
            expected: "the lobby",
        })),
    }
}

#[cfg(test)]
mod tests;
