//! Serving the replays kept here on `/earshot/recording/1`: one task per stream, each answering
//! requests in turn. Bytes that are not a request close that stream; the server goes on serving
//! everyone else.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use earshot_protocol::replay::{MAX_REQUEST_BYTES, ReplayRequest, ReplayResponse};
use futures::StreamExt;
use tracing::{debug, warn};

use super::wire::{WireError, read_message, write_message};
use super::{REPLAY_PROTOCOL, ReplayError, Replays};

/// Counters of a replay server.
#[derive(Debug, Default)]
pub struct ServerStats {
    pub manifests: AtomicU64,
    pub chunks: AtomicU64,
    pub not_found: AtomicU64,
    /// Streams closed for sending garbage.
    pub bad_streams: AtomicU64,
}

/// Serves the replays of a data directory on [`REPLAY_PROTOCOL`]. Cheap to clone.
#[derive(Debug, Clone)]
pub struct ReplayServer {
    stats: Arc<ServerStats>,
}

impl ReplayServer {
    /// Starts accepting replay streams (one task per stream) on the node's stream control.
    pub fn start(
        mut control: libp2p_stream::Control,
        replays: Replays,
    ) -> Result<Self, ReplayError> {
        let stats = Arc::new(ServerStats::default());
        let mut incoming = control
            .accept(REPLAY_PROTOCOL)
            .map_err(|_| ReplayError::AlreadyServing)?;
        let server = Self {
            stats: Arc::clone(&stats),
        };
        tokio::spawn(async move {
            while let Some((peer, stream)) = incoming.next().await {
                let replays = replays.clone();
                let stats = Arc::clone(&stats);
                tokio::spawn(async move {
                    if let Err(err) = serve(&replays, &stats, stream).await {
                        if matches!(err, WireError::Decode(_) | WireError::TooLarge { .. }) {
                            stats.bad_streams.fetch_add(1, Ordering::Relaxed);
                            warn!(%peer, %err, "closed a replay stream that sent garbage");
                        } else {
                            debug!(%peer, %err, "replay stream closed");
                        }
                    }
                });
            }
        });
        Ok(server)
    }

    pub fn stats(&self) -> &ServerStats {
        &self.stats
    }
}

async fn serve(
    replays: &Replays,
    stats: &ServerStats,
    mut stream: libp2p::Stream,
) -> Result<(), WireError> {
    loop {
        let Some(bytes) = read_message(&mut stream, MAX_REQUEST_BYTES, true).await? else {
            return Ok(());
        };
        let request = ReplayRequest::decode(&bytes)?;
        let found = match request {
            ReplayRequest::Manifest { id } => lookup(replays.manifest_bytes(&id)).map(|bytes| {
                stats.manifests.fetch_add(1, Ordering::Relaxed);
                ReplayResponse::Manifest(serde_bytes::ByteBuf::from(bytes.to_vec()))
            }),
            ReplayRequest::Chunk { id, index } => lookup(replays.chunk(&id, index)).map(|bytes| {
                stats.chunks.fetch_add(1, Ordering::Relaxed);
                ReplayResponse::Chunk(serde_bytes::ByteBuf::from(bytes.to_vec()))
            }),
        };
        let response = found.unwrap_or_else(|| {
            stats.not_found.fetch_add(1, Ordering::Relaxed);
            ReplayResponse::NotFound
        });
        write_message(&mut stream, &response.encode()).await?;
    }
}

/// A stored value, or `None` if it is not there or cannot be read (logged).
fn lookup(found: Result<Option<sled::IVec>, ReplayError>) -> Option<sled::IVec> {
    found.unwrap_or_else(|err| {
        warn!(%err, "cannot read a stored replay");
        None
    })
}
