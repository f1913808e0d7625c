//! Replays: recordings published as signed chunk manifests, served to peers on
//! `/earshot/recording/1` (libp2p-stream, outside the swarm's event loop), and fetched from
//! any nodes that hold them.
//!
//! Storage: three sled trees of their own in the node's database: `replay_manifests` (manifest
//! id → its signed encoding), `replay_chunks` (manifest id ‖ chunk index, big-endian → the
//! chunk's bytes) and `replay_by_recording` (recording id → manifest id). Publishing cuts the
//! content once and stores every chunk, so serving and resuming never recompute; a fetch stores
//! each chunk as soon as it is verified, so an interrupted fetch resumes where it stopped, and a
//! node that fetched a replay serves it like one that published it.
//!
//! Wire: a stream carries requests and responses in turn, each a `u32` big-endian length and a
//! canonical postcard [`ReplayRequest`] / [`ReplayResponse`], bounded by
//! [`earshot_protocol::replay::MAX_REQUEST_BYTES`] and [`MAX_RESPONSE_BYTES`]. A fetcher keeps
//! [`STREAMS_PER_HOLDER`] streams open per holder. Bytes that are not a request close that
//! stream; the server goes on serving everyone else.
//!
//! **Invariant:** nothing from the network is trusted: a manifest must hash to the id asked for
//! and carry the recorder's signature; a chunk must hash to the manifest's entry. A holder that
//! sends a bad chunk is counted against (dropped after [`MAX_BAD_CHUNKS`]) and the chunk is
//! fetched from another holder.

use std::collections::{BTreeMap, BTreeSet, HashSet, VecDeque};
use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use earshot_protocol::codec::DecodeError;
use earshot_protocol::replay::{
    ChunkError, ChunkHash, ContentError, ContentReader, DEFAULT_CHUNK_BYTES, MAX_CHUNKS,
    MAX_REQUEST_BYTES, MAX_RESPONSE_BYTES, ManifestError, ManifestId, ManifestSpec, ReplayFrame,
    ReplayManifest, ReplayRequest, ReplayResponse, ReplaySpeaker,
};
use earshot_protocol::{ControlBody, PeerKey, RecordingId, RoomId, Verified};
use futures::{AsyncReadExt, AsyncWriteExt, StreamExt};
use libp2p::{Multiaddr, PeerId, StreamProtocol};
use parking_lot::{Mutex, MutexGuard};
use tracing::{debug, warn};

use super::store::{RecordingError, RecordingMeta, RecordingState, Recordings, SpeakerInfo};
use crate::node::Node;
use crate::store::{Store, StoreError, encode_record};

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

const MANIFESTS: &str = "replay_manifests";
const CHUNKS: &str = "replay_chunks";
const BY_RECORDING: &str = "replay_by_recording";
/// The recordings' own trees and layout (see [`super::store`]): imports write them directly.
const RECORDING_META: &str = "recordings";
const RECORDING_FRAMES: &str = "recording_frames";
/// Frames written per batch when importing.
const IMPORT_BATCH: usize = 2000;

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

/// Why a request on a replay stream failed.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    #[error("replay stream: {0}")]
    Io(#[from] io::Error),
    #[error("replay message of {len} bytes, more than the {max} allowed")]
    TooLarge { len: usize, max: usize },
    #[error("bad replay message: {0}")]
    Decode(#[from] DecodeError),
    #[error("no answer within {REQUEST_TIMEOUT:?}")]
    Timeout,
    #[error("could not open a replay stream: {0}")]
    Open(String),
    #[error("the holder answered with something else than was asked for")]
    Unexpected,
}

/// Why a fetch failed. What was fetched before the failure is kept: running it again resumes.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error(transparent)]
    Replay(#[from] ReplayError),
    #[error("no holder to fetch from: give --from MULTIADDR/p2p/PEER_ID, or a replay link")]
    NoHolders,
    #[error("no holder could be reached: {reasons}")]
    Unreachable { reasons: String },
    #[error("no holder sent a valid manifest {id}: {reasons}")]
    NoManifest { id: ManifestId, reasons: String },
    #[error(
        "replay {id} is incomplete: {missing} of {total} chunks could not be fetched ({reasons}); \
         the {have} chunks fetched are kept, and fetching again resumes"
    )]
    Incomplete {
        id: ManifestId,
        missing: usize,
        total: usize,
        have: usize,
        reasons: String,
    },
}

/// The replays of one data directory: published and fetched manifests and their chunks.
#[derive(Debug, Clone)]
pub struct Replays {
    store: Store,
    manifests: sled::Tree,
    chunks: sled::Tree,
    by_recording: sled::Tree,
}

/// A replay kept here, with how much of it.
#[derive(Debug, Clone)]
pub struct KeptReplay {
    pub id: ManifestId,
    pub manifest: Verified<ReplayManifest>,
    /// Chunks stored (all of them once published or fully fetched).
    pub chunks_held: usize,
}

impl Replays {
    pub fn open(store: &Store) -> Result<Self, ReplayError> {
        let db = store.db();
        let err = store.db_err();
        Ok(Self {
            manifests: db.open_tree(MANIFESTS).map_err(&err)?,
            chunks: db.open_tree(CHUNKS).map_err(&err)?,
            by_recording: db.open_tree(BY_RECORDING).map_err(&err)?,
            store: store.clone(),
        })
    }

    /// Makes recording `meta` fetchable: cuts its content into chunks, signs the manifest as
    /// `signer` and stores both. A recording published before (or fetched) keeps its manifest.
    pub fn publish(
        &self,
        recordings: &Recordings,
        meta: &RecordingMeta,
        signer: &ed25519_dalek::SigningKey,
    ) -> Result<Verified<ReplayManifest>, ReplayError> {
        if let Some(id) = self.for_recording(&meta.id)?
            && let Some(manifest) = self.manifest(&id)?
        {
            // Written again all the same: a host announces each publication (see
            // [`announce_published`]), so publishing again says it again.
            self.link_recording(&meta.id, &id)?;
            return Ok(manifest);
        }
        if meta.state == RecordingState::Recording {
            return Err(ReplayError::StillRecording { id: meta.id });
        }
        let chunk_bytes = DEFAULT_CHUNK_BYTES;
        // First pass: hash the chunks (the manifest, and so its id, depends on them).
        let mut hashes = Vec::new();
        let (frames, total_bytes) = content_chunks(recordings, meta, chunk_bytes, |chunk| {
            hashes.push(ChunkHash::of(chunk));
            Ok(())
        })?;
        let max = MAX_CHUNKS as u64 * u64::from(chunk_bytes);
        if total_bytes > max {
            return Err(ReplayError::TooLarge {
                id: meta.id,
                bytes: total_bytes,
                max,
            });
        }
        let speakers = meta
            .speakers
            .iter()
            .map(|(id, info)| ReplaySpeaker {
                id: *id,
                key: info.key,
                name: cut(&info.name, earshot_protocol::control::MAX_NAME_BYTES),
                frames: info.frames,
            })
            .collect();
        let manifest = ReplayManifest::sign(
            signer,
            ManifestSpec {
                recording: meta.id,
                room: meta.room,
                title: cut(&meta.title, earshot_protocol::room::MAX_TITLE_BYTES),
                host: meta.host,
                started_at: meta.started_at,
                duration_samples: meta.duration_samples,
                frames,
                speakers,
                chunk_bytes,
                total_bytes,
                chunks: hashes,
            },
        )?;
        let bytes = manifest.encode();
        let id = ManifestId::of(&bytes);
        // Second pass: store the chunks under the manifest's id, then the manifest.
        let mut index = 0u32;
        let err = self.store.db_err();
        content_chunks(recordings, meta, chunk_bytes, |chunk| {
            self.chunks
                .insert(chunk_key(&id, index), chunk)
                .map_err(&err)?;
            index += 1;
            Ok(())
        })?;
        self.manifests.insert(id.as_bytes(), bytes).map_err(&err)?;
        self.by_recording
            .insert(meta.id.as_bytes(), id.as_bytes())
            .map_err(&err)?;
        self.store.db().flush().map_err(&err)?;
        Ok(ReplayManifest::decode_verified(&manifest.encode())?)
    }

    /// The manifest of a replay kept here (checked again: the disk is not trusted either).
    pub fn manifest(
        &self,
        id: &ManifestId,
    ) -> Result<Option<Verified<ReplayManifest>>, ReplayError> {
        match self.manifest_bytes(id)? {
            Some(bytes) => Ok(Some(ReplayManifest::decode_for(&bytes, *id, None)?)),
            None => Ok(None),
        }
    }

    /// A manifest's signed encoding, as served.
    pub fn manifest_bytes(&self, id: &ManifestId) -> Result<Option<sled::IVec>, ReplayError> {
        Ok(self
            .manifests
            .get(id.as_bytes())
            .map_err(self.store.db_err())?)
    }

    /// The manifest a recording was published or fetched under.
    pub fn for_recording(&self, id: &RecordingId) -> Result<Option<ManifestId>, ReplayError> {
        Ok(self
            .by_recording
            .get(id.as_bytes())
            .map_err(self.store.db_err())?
            .and_then(|bytes| <[u8; 16]>::try_from(bytes.as_ref()).ok())
            .map(ManifestId))
    }

    /// Every replay kept here.
    pub fn list(&self) -> Result<Vec<KeptReplay>, ReplayError> {
        let mut all = Vec::new();
        for entry in self.manifests.iter() {
            let (key, bytes) = entry.map_err(self.store.db_err())?;
            let Ok(id) = <[u8; 16]>::try_from(key.as_ref()).map(ManifestId) else {
                continue;
            };
            match ReplayManifest::decode_for(&bytes, id, None) {
                Ok(manifest) => all.push(KeptReplay {
                    id,
                    chunks_held: self.held(&id)?.len(),
                    manifest,
                }),
                Err(err) => warn!(manifest = %id, %err, "skipping a stored manifest"),
            }
        }
        Ok(all)
    }

    /// A stored chunk, as served (unchecked: the fetcher checks).
    pub fn chunk(&self, id: &ManifestId, index: u32) -> Result<Option<sled::IVec>, ReplayError> {
        Ok(self
            .chunks
            .get(chunk_key(id, index))
            .map_err(self.store.db_err())?)
    }

    /// The indices of the chunks stored for a replay.
    pub fn held(&self, id: &ManifestId) -> Result<BTreeSet<u32>, ReplayError> {
        let mut held = BTreeSet::new();
        for key in self.chunks.scan_prefix(id.as_bytes()).keys() {
            let key = key.map_err(self.store.db_err())?;
            if let Some(index) = key
                .get(16..20)
                .and_then(|bytes| <[u8; 4]>::try_from(bytes).ok())
            {
                held.insert(u32::from_be_bytes(index));
            }
        }
        Ok(held)
    }

    /// Stores a manifest after checking it (its id is the hash of `bytes`).
    pub fn store_manifest(&self, bytes: &[u8]) -> Result<Verified<ReplayManifest>, ReplayError> {
        let manifest = ReplayManifest::decode_verified(bytes)?;
        self.store_manifest_unverified(bytes)?;
        Ok(manifest)
    }

    /// Stores a chunk after checking it against the stored manifest.
    pub fn store_chunk(
        &self,
        id: &ManifestId,
        index: u32,
        bytes: &[u8],
    ) -> Result<(), ReplayError> {
        let manifest = self
            .manifest(id)?
            .ok_or(ReplayError::UnknownManifest(*id))?;
        manifest.check_chunk(index, bytes)?;
        self.store_chunk_unverified(id, index, bytes)
    }

    /// Stores manifest bytes as they are, unchecked: what a modified node could serve. For
    /// adversarial tests; honest code uses [`Self::store_manifest`].
    pub fn store_manifest_unverified(&self, bytes: &[u8]) -> Result<ManifestId, ReplayError> {
        let id = ManifestId::of(bytes);
        self.manifests
            .insert(id.as_bytes(), bytes)
            .map_err(self.store.db_err())?;
        Ok(id)
    }

    /// Stores chunk bytes as they are, unchecked: what a modified node could serve. For
    /// adversarial tests; honest code uses [`Self::store_chunk`].
    pub fn store_chunk_unverified(
        &self,
        id: &ManifestId,
        index: u32,
        bytes: &[u8],
    ) -> Result<(), ReplayError> {
        self.chunks
            .insert(chunk_key(id, index), bytes)
            .map_err(self.store.db_err())?;
        Ok(())
    }

    /// The chunks of a replay kept here that are missing or do not match the manifest (those
    /// are removed), in order.
    fn missing(&self, manifest: &ReplayManifest, id: &ManifestId) -> Result<Vec<u32>, ReplayError> {
        let held = self.held(id)?;
        let mut missing = Vec::new();
        for index in 0..manifest.chunks.len() as u32 {
            if held.contains(&index) {
                let good = self
                    .chunk(id, index)?
                    .is_some_and(|bytes| manifest.check_chunk(index, &bytes).is_ok());
                if good {
                    continue;
                }
                self.chunks
                    .remove(chunk_key(id, index))
                    .map_err(self.store.db_err())?;
            }
            missing.push(index);
        }
        Ok(missing)
    }

    /// Adds a complete replay to the recordings (same id, state complete), unless a recording
    /// with its id is already there. Returns the recording.
    pub fn import(
        &self,
        recordings: &Recordings,
        id: &ManifestId,
    ) -> Result<RecordingMeta, ReplayError> {
        let manifest = self
            .manifest(id)?
            .ok_or(ReplayError::UnknownManifest(*id))?;
        if let Some(meta) = recordings.get(&manifest.recording)? {
            self.link_recording(&manifest.recording, id)?;
            return Ok(meta);
        }
        let missing = self.missing(&manifest, id)?;
        if !missing.is_empty() {
            return Err(ReplayError::Incomplete {
                id: *id,
                missing: missing.len(),
                total: manifest.chunks.len(),
            });
        }
        // The frames stay in the verified chunks, where the recordings read them (one key per
        // frame made a fetch five times slower): check that they parse and count them.
        let bad = |reason: String| ReplayError::BadContent { id: *id, reason };
        let mut reader = ContentReader::new();
        let (mut frames, mut bytes) = (0u64, 0u64);
        for index in 0..manifest.chunks.len() as u32 {
            let chunk = self
                .chunk(id, index)?
                .ok_or_else(|| bad(format!("chunk {index} vanished")))?;
            for frame in reader.push(&chunk).map_err(|err| bad(err.to_string()))? {
                frames += 1;
                bytes += frame.payload.len() as u64;
            }
        }
        reader.finish().map_err(|err| bad(err.to_string()))?;
        if frames != manifest.frames {
            return Err(bad(format!(
                "it holds {frames} frames, the manifest says {}",
                manifest.frames
            )));
        }
        // Linked first: the recording's frames are found through the link.
        self.link_recording(&manifest.recording, id)?;
        let meta = meta_of(&manifest, frames, bytes);
        let err = self.store.db_err();
        self.store
            .db()
            .open_tree(RECORDING_META)
            .map_err(&err)?
            .insert(meta.id.as_bytes(), encode_record(&meta))
            .map_err(&err)?;
        self.store.db().flush().map_err(&err)?;
        Ok(meta)
    }

    fn link_recording(&self, recording: &RecordingId, id: &ManifestId) -> Result<(), ReplayError> {
        self.by_recording
            .insert(recording.as_bytes(), id.as_bytes())
            .map_err(self.store.db_err())?;
        self.store.db().flush().map_err(self.store.db_err())?;
        Ok(())
    }
}

/// Writes a recording (metadata and frames, in the recordings' own layout) from frames in
/// content order: how a fetched replay joins the local recordings, and a way to build a
/// recording without a live room (tests, benchmarks). `meta`'s counts are taken as given.
pub fn import_recording(
    store: &Store,
    meta: &RecordingMeta,
    frames: impl IntoIterator<Item = ReplayFrame>,
) -> Result<(), ReplayError> {
    let db = store.db();
    let err = store.db_err();
    let tree = db.open_tree(RECORDING_FRAMES).map_err(&err)?;
    let mut batch = sled::Batch::default();
    let mut pending = 0;
    for frame in frames {
        batch.insert(
            frame_key(&meta.id, frame.at, frame.speaker).to_vec(),
            frame_value(&frame),
        );
        pending += 1;
        if pending == IMPORT_BATCH {
            tree.apply_batch(std::mem::take(&mut batch)).map_err(&err)?;
            pending = 0;
        }
    }
    tree.apply_batch(batch).map_err(&err)?;
    db.open_tree(RECORDING_META)
        .map_err(&err)?
        .insert(meta.id.as_bytes(), encode_record(meta))
        .map_err(&err)?;
    db.flush().map_err(&err)?;
    Ok(())
}

/// The recording a manifest describes.
fn meta_of(manifest: &ReplayManifest, frames: u64, bytes: u64) -> RecordingMeta {
    let millis = manifest.duration_samples.saturating_mul(1000) / 48_000;
    RecordingMeta {
        id: manifest.recording,
        room: manifest.room,
        title: manifest.title.clone(),
        host: manifest.host,
        recorder: manifest.recorder,
        started_at: manifest.started_at,
        ended_at: Some(manifest.started_at.plus_millis(millis)),
        state: RecordingState::Complete,
        start_media: 0,
        speakers: manifest
            .speakers
            .iter()
            .map(|speaker| {
                (
                    speaker.id,
                    SpeakerInfo {
                        key: speaker.key,
                        name: speaker.name.clone(),
                        frames: speaker.frames,
                    },
                )
            })
            .collect(),
        frames,
        bytes,
        duration_samples: manifest.duration_samples,
        dropped: 0,
    }
}

/// Streams a recording's content in chunks of `chunk_bytes` (the last one shorter) to `each`;
/// returns (frames, total bytes).
fn content_chunks(
    recordings: &Recordings,
    meta: &RecordingMeta,
    chunk_bytes: u32,
    mut each: impl FnMut(&[u8]) -> Result<(), ReplayError>,
) -> Result<(u64, u64), ReplayError> {
    let chunk_bytes = chunk_bytes as usize;
    let mut buffer = Vec::with_capacity(chunk_bytes * 2);
    let (mut frames, mut total) = (0u64, 0u64);
    for frame in recordings.frames(&meta.id) {
        let frame = frame?;
        ReplayFrame {
            at: frame.at,
            speaker: frame.speaker.0,
            level: frame.level,
            payload: frame.payload,
        }
        .write_to(&mut buffer)
        .map_err(|source| ReplayError::Unpublishable {
            id: meta.id,
            source,
        })?;
        frames += 1;
        while buffer.len() >= chunk_bytes {
            each(&buffer[..chunk_bytes])?;
            total += chunk_bytes as u64;
            buffer.drain(..chunk_bytes);
        }
    }
    if !buffer.is_empty() {
        each(&buffer)?;
        total += buffer.len() as u64;
    }
    Ok((frames, total))
}

fn chunk_key(id: &ManifestId, index: u32) -> [u8; 20] {
    let mut key = [0u8; 20];
    key[..16].copy_from_slice(id.as_bytes());
    key[16..].copy_from_slice(&index.to_be_bytes());
    key
}

/// The recordings' frame key: recording id ‖ time ‖ speaker (see [`super::store`]).
fn frame_key(id: &RecordingId, at: u64, speaker: u32) -> [u8; 28] {
    let mut key = [0u8; 28];
    key[..16].copy_from_slice(id.as_bytes());
    key[16..24].copy_from_slice(&at.to_be_bytes());
    key[24..].copy_from_slice(&speaker.to_be_bytes());
    key
}

/// The recordings' frame value: level, flags (none survive a replay), payload.
fn frame_value(frame: &ReplayFrame) -> Vec<u8> {
    let mut value = Vec::with_capacity(2 + frame.payload.len());
    value.push(frame.level);
    value.push(0);
    value.extend_from_slice(&frame.payload);
    value
}

/// `text` cut to at most `max` bytes on a character boundary.
fn cut(text: &str, max: usize) -> String {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_owned()
}

// ---------------------------------------------------------------------------------------------
// Serving
// ---------------------------------------------------------------------------------------------

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

/// Reads one length-prefixed message; `None` at a clean end of stream (when `eof_ok`).
async fn read_message(
    stream: &mut libp2p::Stream,
    max: usize,
    eof_ok: bool,
) -> Result<Option<Vec<u8>>, WireError> {
    let mut len = [0u8; 4];
    match stream.read_exact(&mut len).await {
        Ok(()) => {}
        Err(err) if eof_ok && err.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(err) => return Err(err.into()),
    }
    let len = u32::from_be_bytes(len) as usize;
    if len > max {
        return Err(WireError::TooLarge { len, max });
    }
    let mut bytes = vec![0u8; len];
    stream.read_exact(&mut bytes).await?;
    Ok(Some(bytes))
}

async fn write_message(stream: &mut libp2p::Stream, bytes: &[u8]) -> Result<(), WireError> {
    let len = u32::try_from(bytes.len()).map_err(|_| WireError::TooLarge {
        len: bytes.len(),
        max: MAX_RESPONSE_BYTES,
    })?;
    stream.write_all(&len.to_be_bytes()).await?;
    stream.write_all(bytes).await?;
    stream.flush().await?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Announcing
// ---------------------------------------------------------------------------------------------

/// While hosting `room`: every replay of it this node publishes from now on (say, by
/// `earshot recordings publish`, run through the control socket) is announced on the room's
/// topic, with `addrs` (this node's, ending in `/p2p/…`) as where to fetch it. Stops when the
/// node leaves the room or shuts down.
pub fn announce_published(
    node: Node,
    replays: &Replays,
    room: RoomId,
    addrs: Vec<Multiaddr>,
) -> tokio::task::JoinHandle<()> {
    let mut published = replays.by_recording.watch_prefix(Vec::new());
    let replays = replays.clone();
    tokio::spawn(async move {
        while let Some(event) = (&mut published).await {
            let sled::Event::Insert { value, .. } = event else {
                continue;
            };
            let Ok(id) = <[u8; 16]>::try_from(value.as_ref()).map(ManifestId) else {
                continue;
            };
            let manifest = match replays.manifest(&id) {
                Ok(Some(manifest)) => manifest,
                Ok(None) => continue,
                Err(err) => {
                    warn!(manifest = %id, %err, "cannot announce a replay");
                    continue;
                }
            };
            if manifest.room != room || manifest.recorder != node.key() {
                continue;
            }
            let body = ControlBody::ReplayAvailable {
                manifest: id,
                recording: manifest.recording,
                recorder: manifest.recorder,
                title: manifest.title.clone(),
                bytes: manifest.total_bytes,
                addrs: earshot_protocol::replay::addr_bytes(&addrs),
            };
            match node.act(room, body).await {
                Ok(_) => debug!(manifest = %id, %room, "replay announced"),
                Err(err) => {
                    debug!(manifest = %id, %err, "cannot announce a replay; the room is gone");
                    return;
                }
            }
        }
    })
}

// ---------------------------------------------------------------------------------------------
// Fetching
// ---------------------------------------------------------------------------------------------

/// A node that may hold a replay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    pub peer: PeerId,
    pub addrs: Vec<Multiaddr>,
}

/// What to fetch and from whom.
#[derive(Debug, Clone)]
pub struct FetchRequest {
    pub manifest: ManifestId,
    /// Who must have signed the manifest (from a replay link), if known.
    pub recorder: Option<PeerKey>,
    pub holders: Vec<Holder>,
}

/// Progress of a fetch, as it happens.
#[derive(Debug, Clone, PartialEq)]
pub enum FetchEvent {
    /// A holder could not be reached or stopped answering; it is not asked again.
    HolderFailed { peer: PeerId, reason: String },
    /// The manifest is in hand (`from`: `None` when it was kept here already).
    Manifest {
        from: Option<PeerId>,
        title: String,
        chunks: usize,
        bytes: u64,
        /// Chunks already stored here (a resumed fetch).
        held: usize,
    },
    /// A holder sent something that is not a valid manifest.
    BadManifest { from: PeerId, reason: String },
    /// A chunk arrived, matched its hash and was stored.
    Chunk {
        index: u32,
        from: PeerId,
        done: usize,
        total: usize,
    },
    /// A holder sent a chunk that does not match the manifest (counted against it); the chunk
    /// is fetched from another holder.
    BadChunk {
        index: u32,
        from: PeerId,
        reason: String,
    },
}

/// What a completed fetch did.
#[derive(Debug, Clone)]
pub struct FetchReport {
    pub id: ManifestId,
    pub manifest: Verified<ReplayManifest>,
    /// The recording, now among the local ones.
    pub recording: RecordingMeta,
    /// Chunks fetched now.
    pub fetched: usize,
    /// Chunks already here from an earlier, interrupted fetch.
    pub resumed: usize,
    /// Bytes of chunks fetched now.
    pub bytes: u64,
    /// Bad chunks received (and refetched elsewhere).
    pub bad_chunks: usize,
    pub elapsed: Duration,
}

/// Callback for [`FetchEvent`]s (called from the fetch's tasks).
pub type OnFetchEvent = Arc<dyn Fn(&FetchEvent) + Send + Sync>;

/// Fetches a replay through `node`: reaches the holders, gets and checks the manifest, fetches
/// the missing chunks (several streams per holder; a chunk that fails its hash is fetched from
/// another holder), then adds the recording to `recordings`.
pub async fn fetch(
    node: &Node,
    replays: &Replays,
    recordings: &Recordings,
    request: FetchRequest,
    on_event: OnFetchEvent,
) -> Result<FetchReport, FetchError> {
    let started = Instant::now();
    let id = request.manifest;
    let holders: Vec<Holder> = request
        .holders
        .into_iter()
        .filter(|holder| holder.peer != node.peer_id())
        .collect();
    // A replay kept here already (a resumed fetch) needs no holder for its manifest.
    let kept = replays.manifest(&id)?;
    if let Some(manifest) = &kept
        && let Some(expected) = request.recorder
        && manifest.recorder != expected
    {
        return Err(ReplayError::Manifest(ManifestError::WrongRecorder {
            expected,
            found: manifest.recorder,
        })
        .into());
    }
    if holders.is_empty() && kept.is_none() {
        return Err(FetchError::NoHolders);
    }
    let control = node.audio_control();
    // Reach every holder at once.
    let dials = holders.iter().map(|holder| {
        let node = node.clone();
        let holder = holder.clone();
        async move {
            let result = tokio::time::timeout(DIAL_TIMEOUT, node.dial(holder.peer, holder.addrs))
                .await
                .unwrap_or_else(|_| Err(format!("no connection within {DIAL_TIMEOUT:?}")));
            (holder.peer, result)
        }
    });
    let mut reachable = Vec::new();
    let mut reasons = Vec::new();
    for (peer, result) in futures::future::join_all(dials).await {
        match result {
            Ok(()) => reachable.push(peer),
            Err(reason) => {
                on_event(&FetchEvent::HolderFailed {
                    peer,
                    reason: reason.clone(),
                });
                reasons.push(format!("{peer}: {reason}"));
            }
        }
    }
    let manifest = match kept {
        Some(manifest) => {
            let held = replays.held(&id)?.len();
            on_event(&FetchEvent::Manifest {
                from: None,
                title: manifest.title.clone(),
                chunks: manifest.chunks.len(),
                bytes: manifest.total_bytes,
                held,
            });
            manifest
        }
        None => {
            if reachable.is_empty() {
                return Err(FetchError::Unreachable {
                    reasons: reasons.join("; "),
                });
            }
            let mut reasons = Vec::new();
            let mut found = None;
            for peer in &reachable {
                match fetch_manifest(&control, *peer, id, request.recorder).await {
                    Ok((bytes, manifest)) => {
                        replays.store_manifest_unverified(&bytes)?;
                        on_event(&FetchEvent::Manifest {
                            from: Some(*peer),
                            title: manifest.title.clone(),
                            chunks: manifest.chunks.len(),
                            bytes: manifest.total_bytes,
                            held: replays.held(&id)?.len(),
                        });
                        found = Some(manifest);
                        break;
                    }
                    Err(reason) => {
                        on_event(&FetchEvent::BadManifest {
                            from: *peer,
                            reason: reason.clone(),
                        });
                        reasons.push(format!("{peer}: {reason}"));
                    }
                }
            }
            found.ok_or_else(|| FetchError::NoManifest {
                id,
                reasons: reasons.join("; "),
            })?
        }
    };
    let missing = replays.missing(&manifest, &id)?;
    let total = manifest.chunks.len();
    let resumed = total - missing.len();
    let schedule = Arc::new(Schedule::new(missing, reachable.len(), resumed));
    let manifest = Arc::new(manifest);
    let mut workers = Vec::new();
    for (slot, peer) in reachable.iter().enumerate() {
        let opening = Arc::new(tokio::sync::Mutex::new(()));
        for _ in 0..STREAMS_PER_HOLDER {
            workers.push(tokio::spawn(fetch_chunks(Worker {
                control: control.clone(),
                peer: *peer,
                opening: Arc::clone(&opening),
                slot,
                id,
                manifest: Arc::clone(&manifest),
                replays: replays.clone(),
                schedule: Arc::clone(&schedule),
                on_event: Arc::clone(&on_event),
            })));
        }
    }
    for worker in workers {
        if let Err(err) = worker.await {
            warn!(%err, "a fetch task failed");
        }
    }
    let outcome = schedule.outcome();
    if !outcome.pending.is_empty() {
        reasons.extend(outcome.reasons);
        if reasons.is_empty() {
            reasons.push("no holder had them".into());
        }
        return Err(FetchError::Incomplete {
            id,
            missing: outcome.pending.len(),
            total,
            have: total - outcome.pending.len(),
            reasons: reasons.join("; "),
        });
    }
    let recording = replays.import(recordings, &id)?;
    Ok(FetchReport {
        id,
        manifest: Arc::unwrap_or_clone(manifest),
        recording,
        fetched: outcome.fetched,
        resumed,
        bytes: outcome.bytes,
        bad_chunks: outcome.bad,
        elapsed: started.elapsed(),
    })
}

async fn fetch_manifest(
    control: &libp2p_stream::Control,
    peer: PeerId,
    id: ManifestId,
    recorder: Option<PeerKey>,
) -> Result<(Vec<u8>, Verified<ReplayManifest>), String> {
    let opening = tokio::sync::Mutex::new(());
    let (_stream, response) =
        open_and_ask(control, peer, &opening, &ReplayRequest::Manifest { id })
            .await
            .map_err(|err| err.to_string())?;
    match response {
        ReplayResponse::Manifest(bytes) => {
            let manifest =
                ReplayManifest::decode_for(&bytes, id, recorder).map_err(|err| err.to_string())?;
            Ok((bytes.into_vec(), manifest))
        }
        ReplayResponse::NotFound => Err("it does not have this replay".into()),
        ReplayResponse::Chunk(_) => Err(WireError::Unexpected.to_string()),
    }
}

async fn open(control: &libp2p_stream::Control, peer: PeerId) -> Result<libp2p::Stream, WireError> {
    tokio::time::timeout(
        REQUEST_TIMEOUT,
        control.clone().open_stream(peer, REPLAY_PROTOCOL),
    )
    .await
    .map_err(|_| WireError::Timeout)?
    .map_err(|err| WireError::Open(err.to_string()))
}

/// Opens a stream to `peer` and asks the first request on it, one stream at a time per holder
/// (`opening`): libp2p-stream hands a node's inbound streams over one by one and drops those
/// that arrive while one is waiting, so streams opened in a burst fail. A new stream that fails
/// before answering is opened again, up to [`OPEN_ATTEMPTS`] times.
async fn open_and_ask(
    control: &libp2p_stream::Control,
    peer: PeerId,
    opening: &tokio::sync::Mutex<()>,
    request: &ReplayRequest,
) -> Result<(libp2p::Stream, ReplayResponse), WireError> {
    let _turn = opening.lock().await;
    let mut attempt = 1;
    loop {
        let result = match open(control, peer).await {
            Ok(mut stream) => ask(&mut stream, request)
                .await
                .map(|response| (stream, response)),
            Err(err) => Err(err),
        };
        match result {
            Err(err) if attempt < OPEN_ATTEMPTS && !matches!(err, WireError::Timeout) => {
                debug!(%peer, %err, attempt, "a new replay stream failed; opening another");
                attempt += 1;
            }
            result => return result,
        }
    }
}

/// One request and its response, within [`REQUEST_TIMEOUT`].
async fn ask(
    stream: &mut libp2p::Stream,
    request: &ReplayRequest,
) -> Result<ReplayResponse, WireError> {
    tokio::time::timeout(REQUEST_TIMEOUT, async {
        write_message(stream, &request.encode()).await?;
        let bytes = read_message(stream, MAX_RESPONSE_BYTES, false)
            .await?
            .ok_or(WireError::Unexpected)?;
        Ok(ReplayResponse::decode(&bytes)?)
    })
    .await
    .map_err(|_| WireError::Timeout)?
}

/// One stream to one holder, taking chunks from the shared schedule.
struct Worker {
    control: libp2p_stream::Control,
    peer: PeerId,
    /// Held while opening a stream to this holder (see [`open_and_ask`]).
    opening: Arc<tokio::sync::Mutex<()>>,
    /// The holder's place in the schedule.
    slot: usize,
    id: ManifestId,
    manifest: Arc<Verified<ReplayManifest>>,
    replays: Replays,
    schedule: Arc<Schedule>,
    on_event: OnFetchEvent,
}

async fn fetch_chunks(worker: Worker) {
    let Worker {
        control,
        peer,
        opening,
        slot,
        id,
        manifest,
        replays,
        schedule,
        on_event,
    } = worker;
    let mut stream: Option<libp2p::Stream> = None;
    loop {
        let index = match schedule.claim(slot) {
            Claim::Chunk(index) => index,
            Claim::Wait(notified) => {
                notified.await;
                continue;
            }
            Claim::Done => return,
        };
        let request = ReplayRequest::Chunk { id, index };
        let result =
            match stream.as_mut() {
                Some(stream) => ask(stream, &request).await,
                None => open_and_ask(&control, peer, &opening, &request).await.map(
                    |(opened, response)| {
                        stream = Some(opened);
                        response
                    },
                ),
            };
        match result {
            Ok(ReplayResponse::Chunk(bytes)) => match manifest.check_chunk(index, &bytes) {
                Ok(()) => {
                    if let Err(err) = replays.store_chunk_unverified(&id, index, &bytes) {
                        // The local disk failed: nobody else can fix that.
                        schedule.failed(slot, index, format!("storing chunk {index}: {err}"));
                        return;
                    }
                    let done = schedule.done(index, bytes.len() as u64);
                    on_event(&FetchEvent::Chunk {
                        index,
                        from: peer,
                        done,
                        total: manifest.chunks.len(),
                    });
                }
                Err(err) => {
                    warn!(%peer, %err, "a holder sent a bad chunk");
                    on_event(&FetchEvent::BadChunk {
                        index,
                        from: peer,
                        reason: err.to_string(),
                    });
                    schedule.bad(slot, index, &peer);
                }
            },
            Ok(ReplayResponse::NotFound) => schedule.not_found(slot, index),
            Ok(ReplayResponse::Manifest(_)) => {
                on_event(&FetchEvent::BadChunk {
                    index,
                    from: peer,
                    reason: WireError::Unexpected.to_string(),
                });
                schedule.bad(slot, index, &peer);
            }
            Err(err) => {
                let reason = err.to_string();
                if schedule.failed(slot, index, format!("{peer}: {reason}")) {
                    on_event(&FetchEvent::HolderFailed { peer, reason });
                }
                return;
            }
        }
    }
}

/// Which chunks are left and who may fetch them: shared by every worker of a fetch.
#[derive(Debug)]
struct Schedule {
    state: Mutex<ScheduleState>,
    changed: Arc<tokio::sync::Notify>,
}

#[derive(Debug)]
struct ScheduleState {
    pending: VecDeque<u32>,
    in_flight: usize,
    /// Holders (by slot) that failed each chunk: not asked for it again.
    tried: BTreeMap<u32, HashSet<usize>>,
    holders: Vec<HolderState>,
    done: usize,
    fetched: usize,
    bytes: u64,
    bad: usize,
    reasons: Vec<String>,
}

#[derive(Debug, Default, Clone)]
struct HolderState {
    gone: bool,
    bad: u32,
}

enum Claim {
    Chunk(u32),
    Wait(tokio::sync::futures::OwnedNotified),
    Done,
}

/// How a fetch's chunk phase ended.
struct Outcome {
    pending: Vec<u32>,
    fetched: usize,
    bytes: u64,
    bad: usize,
    reasons: Vec<String>,
}

impl Schedule {
    fn new(missing: Vec<u32>, holders: usize, done: usize) -> Self {
        Self {
            state: Mutex::new(ScheduleState {
                pending: missing.into(),
                in_flight: 0,
                tried: BTreeMap::new(),
                holders: vec![HolderState::default(); holders],
                done,
                fetched: 0,
                bytes: 0,
                bad: 0,
                reasons: Vec::new(),
            }),
            changed: Arc::new(tokio::sync::Notify::new()),
        }
    }

    /// The next chunk for holder `slot`: preferably one of its share (index modulo the number
    /// of holders), else any it has not failed; or wait for others to finish or fail theirs.
    fn claim(&self, slot: usize) -> Claim {
        let mut state = self.state.lock();
        if state.holders[slot].gone {
            return Claim::Done;
        }
        let holders = state.holders.len();
        let allowed = |index: &u32| {
            !state
                .tried
                .get(index)
                .is_some_and(|tried| tried.contains(&slot))
        };
        let position = state
            .pending
            .iter()
            .position(|index| *index as usize % holders == slot && allowed(index))
            .or_else(|| state.pending.iter().position(allowed));
        if let Some(index) = position.and_then(|position| state.pending.remove(position)) {
            state.in_flight += 1;
            return Claim::Chunk(index);
        }
        if state.in_flight == 0 {
            // Nothing is being fetched and nothing left is for this holder: nothing will change.
            self.changed.notify_waiters();
            return Claim::Done;
        }
        Claim::Wait(Arc::clone(&self.changed).notified_owned())
    }

    /// Returns how many chunks are done now.
    fn done(&self, _index: u32, bytes: u64) -> usize {
        let mut state = self.state.lock();
        state.in_flight -= 1;
        state.done += 1;
        state.fetched += 1;
        state.bytes += bytes;
        let done = state.done;
        drop(state);
        self.changed.notify_waiters();
        done
    }

    fn bad(&self, slot: usize, index: u32, peer: &PeerId) {
        let mut state = self.state.lock();
        state.bad += 1;
        let holder = &mut state.holders[slot];
        holder.bad += 1;
        if holder.bad == MAX_BAD_CHUNKS {
            holder.gone = true;
            state.reasons.push(format!(
                "{peer} sent {MAX_BAD_CHUNKS} bad chunks and was dropped"
            ));
        }
        self.retry(state, slot, index);
    }

    fn not_found(&self, slot: usize, index: u32) {
        let state = self.state.lock();
        self.retry(state, slot, index);
    }

    /// The holder stopped answering: it is not asked again. Returns whether it was the first
    /// of its workers to notice.
    fn failed(&self, slot: usize, index: u32, reason: String) -> bool {
        let mut state = self.state.lock();
        let first = !state.holders[slot].gone;
        state.holders[slot].gone = true;
        if first {
            state.reasons.push(reason);
        }
        self.retry(state, slot, index);
        first
    }

    fn retry(&self, mut state: MutexGuard<'_, ScheduleState>, slot: usize, index: u32) {
        state.in_flight -= 1;
        state.tried.entry(index).or_default().insert(slot);
        state.pending.push_back(index);
        drop(state);
        self.changed.notify_waiters();
    }

    fn outcome(&self) -> Outcome {
        let state = self.state.lock();
        let mut pending: Vec<u32> = state.pending.iter().copied().collect();
        pending.sort_unstable();
        Outcome {
            pending,
            fetched: state.fetched,
            bytes: state.bytes,
            bad: state.bad,
            reasons: state.reasons.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use earshot_protocol::Timestamp;

    fn synthetic(id: u8, frames: u32, payload: usize) -> (RecordingMeta, Vec<ReplayFrame>) {
        let frames: Vec<ReplayFrame> = (0..frames)
            .map(|i| ReplayFrame {
                at: u64::from(i / 2) * 960,
                speaker: i % 2,
                level: (i % 100) as u8,
                payload: vec![(i % 251) as u8; payload],
            })
            .collect();
        let mut speakers = BTreeMap::new();
        for speaker in 0..2u32 {
            speakers.insert(
                speaker,
                SpeakerInfo {
                    key: None,
                    name: format!("speaker {speaker}"),
                    frames: frames.iter().filter(|f| f.speaker == speaker).count() as u64,
                },
            );
        }
        let duration = frames.last().map_or(0, |f| f.at + 960);
        let meta = RecordingMeta {
            id: RecordingId([id; 16]),
            room: RoomId([2; 16]),
            title: "Synthetic".into(),
            host: PeerKey([3; 32]),
            recorder: PeerKey([3; 32]),
            started_at: Timestamp(1_800_000_000_000),
            ended_at: Some(Timestamp(1_800_000_010_000)),
            state: RecordingState::Complete,
            start_media: 0,
            speakers,
            frames: frames.len() as u64,
            bytes: (frames.len() * payload) as u64,
            duration_samples: duration,
            dropped: 0,
        };
        (meta, frames)
    }

    fn open(dir: &std::path::Path) -> (Store, Recordings, Replays) {
        let store = Store::open(dir).expect("store");
        let recordings = Recordings::open(&store).expect("recordings");
        let replays = Replays::open(&store).expect("replays");
        (store, recordings, replays)
    }

    #[test]
    fn published_replays_import_elsewhere_frame_for_frame() {
        let key = ed25519_dalek::SigningKey::from_bytes(&[5; 32]);
        let a = tempfile::tempdir().expect("tempdir");
        let (store, recordings, replays) = open(a.path());
        let (meta, frames) = synthetic(1, 3000, 200);
        import_recording(&store, &meta, frames.clone()).expect("import");
        let manifest = replays.publish(&recordings, &meta, &key).expect("publish");
        let id = manifest.id();
        assert_eq!(manifest.frames, 3000);
        assert_eq!(manifest.chunks.len(), 3, "600 kB in 256 KiB chunks");
        assert_eq!(replays.held(&id).expect("held").len(), 3);
        assert_eq!(replays.for_recording(&meta.id).expect("index"), Some(id));
        // Publishing again changes nothing.
        assert_eq!(
            replays
                .publish(&recordings, &meta, &key)
                .expect("again")
                .id(),
            id
        );

        // Another data directory gets the manifest and the chunks (as a fetch would).
        let b = tempfile::tempdir().expect("tempdir");
        let (_, recordings_b, replays_b) = open(b.path());
        let bytes = replays.manifest_bytes(&id).expect("read").expect("kept");
        replays_b.store_manifest(&bytes).expect("store manifest");
        assert!(matches!(
            replays_b.import(&recordings_b, &id),
            Err(ReplayError::Incomplete { missing: 3, .. })
        ));
        for index in 0..3 {
            let chunk = replays.chunk(&id, index).expect("read").expect("kept");
            replays_b
                .store_chunk(&id, index, &chunk)
                .expect("store chunk");
        }
        let mut flipped = replays.chunk(&id, 0).expect("read").expect("kept").to_vec();
        flipped[5] ^= 1;
        assert!(matches!(
            replays_b.store_chunk(&id, 0, &flipped),
            Err(ReplayError::Chunk(ChunkError::HashMismatch { index: 0 }))
        ));
        let imported = replays_b.import(&recordings_b, &id).expect("import");
        assert_eq!(imported.id, meta.id);
        assert_eq!(imported.state, RecordingState::Complete);
        assert_eq!(imported.frames, 3000);
        let back: Vec<ReplayFrame> = recordings_b
            .frames(&meta.id)
            .map(|f| {
                let f = f.expect("frame");
                ReplayFrame {
                    at: f.at,
                    speaker: f.speaker.0,
                    level: f.level,
                    payload: f.payload,
                }
            })
            .collect();
        assert_eq!(back, frames);
        assert_eq!(
            recordings_b.get(&meta.id).expect("get").expect("listed"),
            imported
        );
    }

    #[test]
    fn a_corrupted_stored_chunk_counts_as_missing() {
        let key = ed25519_dalek::SigningKey::from_bytes(&[5; 32]);
        let a = tempfile::tempdir().expect("tempdir");
        let (store, recordings, replays) = open(a.path());
        let (meta, frames) = synthetic(1, 3000, 200);
        import_recording(&store, &meta, frames).expect("import");
        let manifest = replays.publish(&recordings, &meta, &key).expect("publish");
        let id = manifest.id();
        replays
            .store_chunk_unverified(&id, 1, b"garbage")
            .expect("store");
        assert_eq!(replays.missing(&manifest, &id).expect("missing"), vec![1]);
        assert_eq!(replays.held(&id).expect("held").len(), 2, "removed");
    }

    #[test]
    fn the_schedule_moves_failed_chunks_to_other_holders() {
        let schedule = Schedule::new(vec![0, 1, 2, 3], 2, 0);
        // Each holder gets its share first.
        assert!(matches!(schedule.claim(0), Claim::Chunk(0)));
        assert!(matches!(schedule.claim(1), Claim::Chunk(1)));
        schedule.bad(0, 0, &PeerId::random());
        // Holder 0 is not given chunk 0 again; holder 1 is.
        assert!(matches!(schedule.claim(0), Claim::Chunk(2)));
        assert!(matches!(schedule.claim(1), Claim::Chunk(3)));
        schedule.done(1, 10);
        assert!(matches!(schedule.claim(1), Claim::Chunk(0)));
        schedule.done(0, 10);
        schedule.done(2, 10);
        assert!(
            matches!(schedule.claim(0), Claim::Wait(_)),
            "3 is in flight"
        );
        schedule.not_found(1, 3);
        assert!(matches!(schedule.claim(0), Claim::Chunk(3)));
        schedule.failed(0, 3, "gone".into());
        assert!(
            matches!(schedule.claim(1), Claim::Done),
            "nobody else has 3"
        );
        let outcome = schedule.outcome();
        assert_eq!(outcome.pending, vec![3]);
        assert_eq!(outcome.fetched, 3);
        assert_eq!(outcome.bad, 1);
    }
}
