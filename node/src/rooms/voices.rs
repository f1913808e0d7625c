//! Whose voices a room has, as the audio plane needs them: who may speak (the host takes their
//! voice), whose frames every node checks against their proofs (the stage, and who a relayed
//! envelope put there lately), and which community relays the host asked to carry the room.

use std::collections::HashSet;

use earshot_protocol::PeerKey;
use earshot_protocol::RoomId;
use earshot_protocol::audience::host::{AudiencePolicy, HostAudience};
use libp2p::PeerId;

use super::Rooms;

/// Children a community relay the host asked to carry the room may take (as its parents
/// believe its reports; its own budget may be smaller).
pub const CARRIER_MAX_CHILDREN: u16 = 1_000;

impl Rooms {
    /// At the host: `relay` carries `room` (its reports are believed up to a carrier's share,
    /// [`CARRIER_MAX_CHILDREN`]).
    pub fn add_carrier(&mut self, room: &RoomId, relay: PeerKey) {
        if let Some(joined) = self.joined.get_mut(room)
            && joined.is_host()
        {
            joined
                .audience
                .get_or_insert_with(|| {
                    HostAudience::new(*room, AudiencePolicy::default(), std::time::Instant::now())
                })
                .add_carrier(relay, CARRIER_MAX_CHILDREN);
        }
    }

    /// Who is on `room`'s stage (muted or not, present or not): the voices every node
    /// checks frames against.
    pub fn stage_keys(&self, room: &RoomId) -> Option<Vec<earshot_protocol::PeerKey>> {
        let joined = self.joined.get(room)?;
        Some(
            joined
                .state
                .members
                .values()
                .filter(|m| m.role().on_stage())
                .map(|m| m.key)
                .chain(joined.promoted_lately.iter().map(|(key, _)| *key))
                .collect(),
        )
    }

    /// Who may speak in `room` (on stage, present, not muted), for the host's audio plane.
    pub fn speakers(&self, room: &RoomId) -> Option<HashSet<PeerId>> {
        let joined = self.joined.get(room)?;
        let state = &joined.state;
        Some(
            state
                .members
                .values()
                .filter(|m| state.is_present(m) && m.role().on_stage() && !m.muted.value)
                .filter_map(|m| m.key.to_peer_id().ok())
                .collect(),
        )
    }
}
