//! The lobby as this node knows it: public rooms announced on the lobby topic (and its own), kept
//! until their announcement expires, answered to lobby queries. Sans-IO.

use std::collections::HashMap;

use earshot_protocol::snapshot::{Announcement, RoomResponse, SnapshotError};
use earshot_protocol::{PeerKey, RoomId, Timestamp, Verified};
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
/// Scheduled rooms kept ahead of their start, in all and from one host key. Their
/// announcements last days, not seconds, so they are kept apart, within bounds of their own:
/// they never make a live room go. Past [`MAX_UPCOMING`], the room that starts latest makes
/// way for one that starts sooner.
pub const MAX_UPCOMING: usize = 500;
pub const MAX_UPCOMING_PER_HOST: usize = 2;
/// Of a lobby answer, at most this many are upcoming rooms (the rest are live ones).
pub const MAX_ANSWERED_UPCOMING: usize = 50;

/// Announcements by host and room: a room id copied by another key is another entry, never a
/// replacement of the first host's.
type Key = (PeerKey, RoomId);

/// Public rooms by host and id: live ones, and scheduled ones announced ahead.
#[derive(Debug, Default)]
pub struct Lobby {
    rooms: HashMap<Key, Verified<Announcement>>,
    upcoming: HashMap<Key, Verified<Announcement>>,
}

fn key_of(announcement: &Announcement) -> Key {
    (announcement.descriptor.host, announcement.descriptor.id)
}

impl Lobby {
    /// An announcement from the lobby topic, or handed to this node to keep.
    pub fn on_announcement(&mut self, now: Timestamp, data: &[u8]) -> (Verdict, Option<Event>) {
        match Announcement::decode_verified(data, now) {
            Ok(announcement) => {
                let room = announcement.descriptor.id;
                let kept = if announcement.ahead(now) {
                    self.keep_upcoming(now, announcement)
                } else {
                    self.keep(now, announcement)
                };
                if !kept {
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
        self.rooms.insert(key_of(&announcement), announcement);
    }

    /// Keeps `announcement` within the bounds: a room already kept is renewed; a host's
    /// [`MAX_ROOMS_PER_HOST`]+1st room is not kept; past [`MAX_ROOMS`] the one that expires
    /// soonest goes. Whether it was kept.
    fn keep(&mut self, now: Timestamp, announcement: Verified<Announcement>) -> bool {
        let key = key_of(&announcement);
        if !self.rooms.contains_key(&key) {
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
                    .map(|kept| key_of(kept))
            {
                self.rooms.remove(&soonest);
            }
        }
        self.rooms.insert(key, announcement);
        true
    }

    /// Keeps a scheduled room's announcement within the upcoming rooms' bounds. Whether it
    /// was kept.
    fn keep_upcoming(&mut self, now: Timestamp, announcement: Verified<Announcement>) -> bool {
        let key = key_of(&announcement);
        if !self.upcoming.contains_key(&key) {
            self.expire(now);
            let host = announcement.descriptor.host;
            let hosts = self
                .upcoming
                .values()
                .filter(|kept| kept.descriptor.host == host)
                .count();
            if hosts >= MAX_UPCOMING_PER_HOST {
                return false;
            }
            if self.upcoming.len() >= MAX_UPCOMING {
                let starts = |a: &Announcement| a.descriptor.starts_at().unwrap_or(a.expires_at);
                let Some(latest) = self.upcoming.values().max_by_key(|kept| starts(kept)) else {
                    return false;
                };
                if starts(latest) <= starts(&announcement) {
                    return false;
                }
                let latest = key_of(latest);
                self.upcoming.remove(&latest);
            }
        }
        self.upcoming.insert(key, announcement);
        true
    }

    /// The rooms whose announcement is still valid, the most listened to first.
    pub fn live(&mut self, now: Timestamp) -> Vec<Verified<Announcement>> {
        self.expire(now);
        let mut live: Vec<_> = self.rooms.values().cloned().collect();
        live.sort_by_key(|a| std::cmp::Reverse(a.listeners));
        live
    }

    /// Scheduled rooms announced ahead and not live now, the soonest first.
    pub fn upcoming(&mut self, now: Timestamp) -> Vec<Verified<Announcement>> {
        self.expire(now);
        let mut upcoming: Vec<_> = self
            .upcoming
            .iter()
            .filter(|(key, _)| !self.rooms.contains_key(key))
            .map(|(_, a)| a.clone())
            .collect();
        upcoming.sort_by_key(|a| (a.descriptor.starts_at(), a.descriptor.id));
        upcoming
    }

    /// Forgets expired announcements.
    pub fn expire(&mut self, now: Timestamp) {
        self.rooms.retain(|_, a| a.expires_at > now);
        self.upcoming.retain(|_, a| a.expires_at > now);
    }

    /// The answer to a lobby query: live rooms, then upcoming ones.
    pub fn answer(&mut self, now: Timestamp) -> RoomResponse {
        let upcoming = self.upcoming(now);
        let upcoming = &upcoming[..upcoming.len().min(MAX_ANSWERED_UPCOMING)];
        RoomResponse::Lobby {
            announcements: self
                .live(now)
                .iter()
                .take(MAX_ANSWERED - upcoming.len())
                .chain(upcoming)
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
