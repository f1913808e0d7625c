//! A private room's keys on their way down: each node passes on only what the host signed, and
//! each step once (a relay that replays a valid keys message, or a part of one, gets it
//! dropped at the first honest hop, not carried through the whole subtree).

use std::collections::BTreeSet;

use earshot_protocol::private::{How, Keys, RING_EPOCHS};
use earshot_protocol::{PeerKey, RoomId};

/// Steps remembered: the parts of the newest epochs seen.
const REMEMBERED: usize = 4 * RING_EPOCHS * 8;

/// The keys messages a node has passed on in one room.
#[derive(Debug, Default)]
pub(super) struct SeenKeys {
    newest: Option<u32>,
    /// (epoch, part) of each passed on.
    seen: BTreeSet<(u32, u16)>,
}

impl super::Tree {
    /// Whether a keys message from the parent goes on (see [`SeenKeys::pass`]).
    pub(super) fn keys_pass(&self, room: RoomId, bytes: &[u8]) -> bool {
        let mut rooms = self.rooms.lock();
        rooms.get_mut(&room).is_some_and(|tree| {
            let host = tree.host;
            tree.keys.pass(room, &host, bytes)
        })
    }
}

impl SeenKeys {
    /// Whether `bytes` (a keys message from the parent) goes on: signed by `host` for `room`,
    /// not seen before, and not older than the epochs a member keeps.
    pub(super) fn pass(&mut self, room: RoomId, host: &PeerKey, bytes: &[u8]) -> bool {
        let Ok(keys) = Keys::decode_verified(bytes, room, host) else {
            return false;
        };
        let part = match keys.how {
            How::Ratchet => 0,
            How::Fresh { part, .. } => part,
        };
        let oldest = self
            .newest
            .map_or(0, |newest| newest.saturating_sub(RING_EPOCHS as u32));
        if keys.epoch < oldest || !self.seen.insert((keys.epoch, part)) {
            return false;
        }
        self.newest = self.newest.max(Some(keys.epoch));
        while self.seen.len() > REMEMBERED {
            self.seen.pop_first();
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_go_on_once_and_only_as_the_host_signed_them() {
        let host = ed25519_dalek::SigningKey::from_bytes(&[1; 32]);
        let room = RoomId([7; 16]);
        let host_key = PeerKey::from(&host);
        let mut seen = SeenKeys::default();
        let step = Keys::ratchet(room, 10, &host).encode();
        assert!(seen.pass(room, &host_key, &step));
        assert!(!seen.pass(room, &host_key, &step), "a replay stops here");
        let forged = Keys::ratchet(room, 11, &ed25519_dalek::SigningKey::from_bytes(&[2; 32]));
        assert!(
            !seen.pass(room, &host_key, &forged.encode()),
            "not the host's"
        );
        assert!(seen.pass(room, &host_key, &Keys::ratchet(room, 30, &host).encode()));
        assert!(
            !seen.pass(room, &host_key, &Keys::ratchet(room, 12, &host).encode()),
            "older than what members keep"
        );
        let mut other = SeenKeys::default();
        assert!(
            !other.pass(RoomId([8; 16]), &host_key, &step),
            "another room's"
        );
    }
}
