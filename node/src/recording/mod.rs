//! Recordings: a room's audio kept and exported to standard files.
//!
//! - [`store`]: recordings in the node's sled database (the one definition of their layout), the
//!   recorder thread that writes them, and imports.
//! - [`export`]: a recording to an Ogg Opus or WAV file, all speakers mixed or one of them; an
//!   Ogg Opus export is read back and checked before it counts as written.
//! - [`ogg`]: Ogg Opus files (RFC 7845): a streaming writer and a strict reader.
//! - [`replay`]: recordings published as signed chunk manifests, served to and fetched from
//!   peers on `/earshot/recording/1`.
//! - [`verify`]: every frame of a recording (made here or fetched) checked against its
//!   speaker's signed proof.

pub mod export;
pub mod ogg;
pub mod replay;
pub mod store;
pub mod verify;
