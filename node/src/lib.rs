//! The Earshot node: everything with I/O.
//!
//! # Layout
//!
//! - [`identity`]: the node's ed25519 key in the data directory (one key for libp2p and for
//!   application signatures).
//! - [`store`]: the sled database (rooms hosted, invites issued).
//! - [`home`]: an opened data directory; creates rooms and issues and delegates invites.
//! - [`audio`]: sound cards, Opus voice codec, jitter buffer, mixer, WAV files, resampling,
//!   generated signals, and the source and player threads.
//! - [`clock`]: the wall clock, read here and passed into `protocol`.
//! - [`control`]: the local control socket through which other commands reach a running node.
//! - [`metrics`]: Prometheus metrics (prometheus-client): what the event loop counts, libp2p's
//!   own, and the bounded `/metrics` endpoint (hyper) that serves them.
//! - [`net`]: the libp2p behaviour, swarm and the room protocol's codec.
//! - [`node`]: the running node: an event loop that owns the swarm, and its handle [`Node`].
//! - [`recording`]: recordings kept in the store, exported as standard files (Ogg Opus, WAV),
//!   and published to and fetched from peers as replays.
//! - [`fanout`]: the audio plane: frames along the relay tree on `/earshot/audio/2`, and what
//!   travels along it besides audio.
//! - [`tree`]: this node's part in each room's tree (tickets, its subtree, the host's view): the
//!   audio plane's gate.
//! - [`membership`]: a node's membership in a room's tree from joining to leaving (its place
//!   kept, its children handed over when it goes).
//! - [`rooms`]: the rooms the node is in (state, own authority, publishing).
//! - [`session`]: one room's audio end to end: voice in, room out, a place in the relay tree.
//!
//! The node never reads environment variables or picks its data directory: callers pass it in.

pub mod audio;
pub mod carry;
pub mod clock;
pub mod community;
pub mod control;
pub mod effect;
pub mod event;
pub mod fanout;
#[cfg(test)]
mod fixtures;
pub mod home;
pub mod identity;
pub mod lobby;
pub mod membership;
pub mod metrics;
pub mod nat;
pub mod net;
pub mod node;
pub mod peers;
pub mod reachability;
pub mod recording;
pub mod room;
pub mod rooms;
pub mod session;
pub mod store;
pub mod tree;

pub use event::Event;
pub use node::{Node, NodeConfig};
