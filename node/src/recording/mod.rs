//! Recordings: a room's audio kept and exported to standard files.
//!
//! - [`store`]: recordings in the node's sled database, and the recorder thread that writes them.
//! - [`export`]: a recording to an Ogg Opus or WAV file, all speakers mixed or one of them.
//! - [`ogg`]: Ogg Opus files (RFC 7845): a streaming writer and a strict reader.
//! - [`replay`]: recordings published as signed chunk manifests, served to and fetched from
//!   peers on `/earshot/recording/1`.

pub mod export;
pub mod ogg;
pub mod replay;
pub mod store;
