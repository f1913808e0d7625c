//! Earshot's wire types and rules. Pure: no I/O, no async runtime, no clock reads (callers pass
//! `now`), no randomness of its own (callers pass nonces and ids).
//!
//! # Layout
//!
//! - [`addr`]: multiaddrs on the wire (with limits), and what can be asked of an address.
//! - [`id`]: newtype ids (`RoomId`, `PeerKey`, `CapId`), `Timestamp`, `Role`, signatures.
//! - [`codec`]: the canonical postcard encoding every wire type uses.
//! - [`capability`]: signed, delegable capabilities and their offline verification.
//! - [`link`]: invite links (`earshot://join/…`) carrying a capability and where to find the host.
//! - [`control`] and [`envelope`]: control message bodies and the signed envelope around them.
//! - [`room`]: the host-signed room descriptor.
//! - [`frame`]: audio frames on the wire (fixed layout; relays read the level without decoding).
//! - [`loudest`]: which speakers the host forwards (the loudest few, by frame level).
//! - [`proof`]: speakers' signatures over their frames (checked at every hop), the host's
//!   progress beacons (a parent that withholds frames is noticed).
//! - [`private`]: private rooms: the host's key schedule (epochs ratcheted on joins, fresh and
//!   sealed to each member on removals), audio frames and control messages sealed for members.
//! - [`snapshot`]: host-signed snapshots, the join handshake, lobby announcements.
//! - [`replay`]: replays fetched from peers: signed chunk manifests, content, links, the wire.
//! - [`state`]: room state, a deterministic fold over verified envelopes.
//! - [`studio`]: studio tracks (a speaker's own voice at a higher bitrate, signed in chunks, for
//!   the recording: the double-ender).
//! - [`topic`]: gossipsub topic names.
//! - [`audience`]: the audience tier: listeners off the topic, their places in the relay tree
//!   (signed tickets, each node's subtree), the host's signed views and relayed envelopes down
//!   the tree, reports and actions up it, the host's side, a member's repairs.
//!
//! Values that have passed a check are wrapped in [`Verified`], which only the checking
//! functions of this crate can construct.

pub mod addr;
pub mod audience;
pub mod bucket;
pub mod capability;
pub mod codec;
pub mod control;
pub mod envelope;
pub mod frame;
pub mod id;
pub mod link;
pub mod loudest;
pub mod private;
pub mod proof;
pub mod replay;
pub mod room;
pub mod snapshot;
pub mod state;
pub mod studio;
pub mod topic;

pub use capability::{Audience, Capability, CapabilityError, Grant, Presenter, VerifyContext};
pub use control::ControlBody;
pub use envelope::{Authority, Envelope, EnvelopeError};
pub use id::{CapId, PeerKey, RecordingId, Role, RoomId, Timestamp};
pub use link::{InviteLink, LinkError};
pub use room::{Extras, RecordingPolicy, RoomDescriptor, RoomLimits, Schedule, Visibility};

/// A value that passed this crate's checks. Only this crate constructs it, so holding one is proof
/// that the check ran.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verified<T>(T);

impl<T> Verified<T> {
    pub(crate) fn new(value: T) -> Self {
        Self(value)
    }

    /// The checked value, giving up the proof.
    pub fn into_inner(self) -> T {
        self.0
    }
}

impl<T> std::ops::Deref for Verified<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.0
    }
}
