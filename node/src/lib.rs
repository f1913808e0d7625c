//! The Earshot node: everything with I/O.
//!
//! # Layout
//!
//! - [`identity`]: the node's ed25519 key in the data directory (one key for libp2p and for
//!   application signatures).
//! - [`store`]: the sled database (rooms hosted, invites issued).
//! - [`home`]: an opened data directory; creates rooms and issues and delegates invites.
//! - [`clock`]: the wall clock, read here and passed into `protocol`.
//!
//! The node never reads environment variables or picks its data directory: callers pass it in.

pub mod clock;
pub mod home;
pub mod identity;
pub mod store;
