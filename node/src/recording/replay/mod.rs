//! Replays: recordings published as signed chunk manifests, served to peers on
//! `/earshot/recording/1` (libp2p-stream, outside the swarm's event loop), and fetched from
//! any nodes that hold them.
//!
//! A replay's manifests and chunks are kept in sled trees of their own (`storage`): published
//! once, served from there, and filled chunk by chunk by a fetch, which therefore resumes where
//! it stopped; a node that fetched a replay serves it like one that published it.
//!
//! Wire: a stream carries requests and responses in turn, each a `u32` big-endian length and a
//! canonical postcard [`ReplayRequest`](earshot_protocol::replay::ReplayRequest) /
//! [`ReplayResponse`](earshot_protocol::replay::ReplayResponse), bounded by
//! [`MAX_REQUEST_BYTES`](earshot_protocol::replay::MAX_REQUEST_BYTES) and
//! [`MAX_RESPONSE_BYTES`](earshot_protocol::replay::MAX_RESPONSE_BYTES). A fetcher keeps
//! [`STREAMS_PER_HOLDER`] streams open per holder. Bytes that are not a request close that
//! stream; the server goes on serving everyone else.
//!
//! **Invariant:** nothing from the network is trusted: a manifest must hash to the id asked for
//! and carry the recorder's signature; a chunk must hash to the manifest's entry. A holder that
//! sends a bad chunk is counted against (dropped after [`MAX_BAD_CHUNKS`]) and the chunk is
//! fetched from another holder.
//!
//! # Layout
//!
//! - this file: the protocol's constants and the errors of keeping and publishing replays.
//! - `storage`: [`Replays`], the manifests and chunks kept in sled; publishing and importing.
//! - `wire`: the stream's length-prefixed messages.
//! - `serve`: [`ReplayServer`], answering requests for what is kept here.
//! - `announce`: [`announce_published`], telling a room about replays of it.
//! - `fetch`: [`fetch`], getting a replay from its holders.
//! - `schedule`: which holder fetches which chunk.

mod announce;
mod fetch;
mod schedule;
mod serve;
pub(super) mod storage;
#[cfg(test)]
mod tests;
mod wire;

use std::time::Duration;

use earshot_protocol::RecordingId;
use earshot_protocol::replay::{ChunkError, ContentError, ManifestError, ManifestId};
use libp2p::StreamProtocol;

use super::store::RecordingError;
use crate::store::StoreError;

// The module's API, whichever file holds each part.
pub use self::announce::announce_published;
pub use self::fetch::{
    BadRecorder, FetchError, FetchEvent, FetchReport, FetchRequest, Holder, OnFetchEvent, fetch,
};
pub use self::serve::{ReplayServer, ServerStats};
pub use self::storage::{KeptReplay, Replays};
pub use self::wire::WireError;

/// The replay stream protocol.
pub const REPLAY_PROTOCOL: StreamProtocol = StreamProtocol::new("/earshot/recording/1");
/// Requests in flight to one holder at a time (one stream each).
pub const STREAMS_PER_HOLDER: usize = 4;
/// Bad chunks a holder may send before the fetcher stops asking it.
pub const MAX_BAD_CHUNKS: u32 = 3;
/// How long one request may take (opening the stream included) before the holder counts as
/// gone: a 1 MiB chunk at a slow 100 kB/s.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);
/// Tries at opening a stream to a holder before it counts as gone.
pub const OPEN_ATTEMPTS: u32 = 4;
/// How long reaching a holder may take.
pub const DIAL_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a replay operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Recording(#[from] RecordingError),
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    #[error(transparent)]
    Chunk(#[from] ChunkError),
    #[error("recording {id} is still being recorded; publish it once it has stopped")]
    StillRecording { id: RecordingId },
    #[error("recording {id} is too large to publish ({bytes} bytes, at most {max})")]
    TooLarge {
        id: RecordingId,
        bytes: u64,
        max: u64,
    },
    #[error("recording {id} cannot be published: {source}")]
    Unpublishable {
        id: RecordingId,
        source: ContentError,
    },
    #[error("no replay {0} is kept here")]
    UnknownManifest(ManifestId),
    #[error("replay {id} is incomplete here ({missing} of {total} chunks missing)")]
    Incomplete {
        id: ManifestId,
        missing: usize,
        total: usize,
    },
    #[error("replay {id} does not hold a valid recording: {reason}")]
    BadContent { id: ManifestId, reason: String },
    #[error("replay streams are already being served by this node")]
    AlreadyServing,
}
