//! Serving the replays kept here on `/earshot/recording/1`: one task per stream, each answering
//! requests in turn. Bytes that are not a request close that stream; the server goes on serving
//! everyone else.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use earshot_protocol::replay::{MAX_REQUEST_BYTES, ReplayRequest, ReplayResponse};
use futures::StreamExt;
use libp2p::PeerId;
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
    /// Streams refused for being too many (in all, or from one peer).
    pub refused_streams: AtomicU64,
}

/// Replay streams served at once, in all and to one peer (a fetch uses a few per holder).
pub const MAX_STREAMS: usize = 64;
pub const MAX_STREAMS_PER_PEER: usize = 4;
/// A stream that sends no request for this long is closed.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// How many streams a server serves at once, and how long it waits for a request. Nodes serve
/// with the default ([`MAX_STREAMS`], [`MAX_STREAMS_PER_PEER`], [`IDLE_TIMEOUT`]); tests with
/// smaller figures, to run the adversary without opening 65 streams or waiting 30 s.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ServeLimits {
    pub streams: usize,
    pub streams_per_peer: usize,
    pub idle: Duration,
}

impl Default for ServeLimits {
    fn default() -> Self {
        Self {
            streams: MAX_STREAMS,
            streams_per_peer: MAX_STREAMS_PER_PEER,
            idle: IDLE_TIMEOUT,
        }
    }
}

/// One of a peer's streams (at most [`ServeLimits::streams_per_peer`]), given back when dropped.
struct PeerSlot {
    peers: Arc<parking_lot::Mutex<HashMap<PeerId, usize>>>,
    peer: PeerId,
}

impl PeerSlot {
    fn take(
        peers: &Arc<parking_lot::Mutex<HashMap<PeerId, usize>>>,
        peer: PeerId,
        max: usize,
    ) -> Option<Self> {
        let mut open = peers.lock();
        let count = open.entry(peer).or_insert(0);
        if *count >= max {
            return None;
        }
        *count += 1;
        Some(Self {
            peers: Arc::clone(peers),
            peer,
        })
    }
}

impl Drop for PeerSlot {
    fn drop(&mut self) {
        let mut open = self.peers.lock();
        if let Some(count) = open.get_mut(&self.peer) {
            *count -= 1;
            if *count == 0 {
                open.remove(&self.peer);
            }
        }
    }
}

/// Serves the replays of a data directory on [`REPLAY_PROTOCOL`]. Cheap to clone.
#[derive(Debug, Clone)]
pub struct ReplayServer {
    stats: Arc<ServerStats>,
}

impl ReplayServer {
    /// Starts accepting replay streams (one task per stream) on the node's stream control.
    pub fn start(control: libp2p_stream::Control, replays: Replays) -> Result<Self, ReplayError> {
        Self::start_with(control, replays, ServeLimits::default())
    }

    /// [`ReplayServer::start`] with other limits than a node's.
    pub(crate) fn start_with(
        mut control: libp2p_stream::Control,
        replays: Replays,
        limits: ServeLimits,
    ) -> Result<Self, ReplayError> {
        let stats = Arc::new(ServerStats::default());
        let mut incoming = control
            .accept(REPLAY_PROTOCOL)
            .map_err(|_| ReplayError::AlreadyServing)?;
        let server = Self {
            stats: Arc::clone(&stats),
        };
        let open = Arc::new(tokio::sync::Semaphore::new(limits.streams));
        let per_peer: Arc<parking_lot::Mutex<HashMap<PeerId, usize>>> = Arc::default();
        tokio::spawn(async move {
            while let Some((peer, stream)) = incoming.next().await {
                // At most `limits.streams` streams at once, `limits.streams_per_peer` of them
                // one peer's; one more is closed at once.
                let Ok(permit) = Arc::clone(&open).try_acquire_owned() else {
                    stats.refused_streams.fetch_add(1, Ordering::Relaxed);
                    debug!(%peer, "refused a replay stream: too many open");
                    continue;
                };
                let Some(slot) = PeerSlot::take(&per_peer, peer, limits.streams_per_peer) else {
                    stats.refused_streams.fetch_add(1, Ordering::Relaxed);
                    debug!(%peer, "refused a replay stream: too many from that peer");
                    continue;
                };
                let replays = replays.clone();
                let stats = Arc::clone(&stats);
                tokio::spawn(async move {
                    let _held = (permit, slot);
                    if let Err(err) = serve(&replays, &stats, stream, limits.idle).await {
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
    idle: Duration,
) -> Result<(), WireError> {
    loop {
        let Ok(read) =
            tokio::time::timeout(idle, read_message(&mut stream, MAX_REQUEST_BYTES, true)).await
        else {
            debug!("closed a replay stream that asked nothing for {idle:?}");
            return Ok(());
        };
        let Some(bytes) = read? else {
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

#[cfg(test)]
mod tests;
