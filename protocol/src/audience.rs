//! The audience tier: listeners are not on the room's topic. They get the room down the relay
//! tree (the host's signed [`AudienceView`], envelopes it relays), and send what they have to say
//! up it ([`wire::Up`]), each node reporting its subtree's size, reactions and free places to its
//! parent. A place in the tree is a signed [`Ticket`]. Everything here is bounded whatever the
//! audience's size, so a listener's cost does not grow with the room.

pub mod exclusion;
pub mod follow;
pub mod host;
pub mod quality;
pub mod relayed;
pub mod shares;
pub mod subtree;
pub mod tenure;
pub mod ticket;
pub mod uplink;
pub mod view;
pub mod wire;

pub use ticket::{Ticket, TicketCheck, TicketError};
pub use view::{AudienceView, Hand, ReactionCount, StageMember, ViewError};

#[cfg(test)]
pub(crate) mod tests {
    use crate::id::PeerKey;

    /// A key told apart by its number (for tests of rules keyed by peers).
    pub(crate) fn numbered(n: u16) -> PeerKey {
        let mut bytes = [0; 32];
        bytes[..2].copy_from_slice(&n.to_be_bytes());
        PeerKey(bytes)
    }
}
