//! Gossipsub topic names: the one place they are spelled.

use crate::id::RoomId;

/// The public-room announcements topic.
pub const LOBBY: &str = "earshot/lobby/1";

/// A room's control topic: `earshot/room/<base32 id>/1`.
pub fn room(id: &RoomId) -> String {
    format!("earshot/room/{id}/1")
}
