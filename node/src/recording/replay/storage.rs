//! Where replays are kept: three sled trees of the node's database. `replay_manifests` (manifest
//! id → its signed encoding), `replay_chunks` (manifest id ‖ chunk index, big-endian → the chunk's
//! bytes) and `replay_by_recording` (recording id → manifest id). Publishing cuts the content
//! once and stores every chunk, so serving and resuming never recompute; a fetch stores each
//! chunk as soon as it is verified, so an interrupted fetch resumes where it stopped, and a node
//! that fetched a replay serves it like one that published it. A complete replay joins the
//! recordings without copying its frames: the recordings read them from its chunks.

use std::collections::BTreeSet;

use earshot_protocol::frame::SAMPLES_PER_FRAME;
use earshot_protocol::replay::{
    ChunkHash, ContentReader, ContentRecord, DEFAULT_CHUNK_BYTES, MAX_CHUNKS, ManifestId,
    ManifestSpec, ReplayManifest, ReplaySpeaker,
};
use earshot_protocol::{RecordingId, Verified};
use tracing::warn;

use super::ReplayError;
use crate::audio::SAMPLE_RATE;
use crate::recording::store::{RecordingMeta, RecordingState, Recordings, SpeakerInfo};
use crate::store::Store;

/// Manifest id → the manifest's signed encoding. The recordings read a fetched replay's version
/// (how its chunks are laid out) from here.
pub(in crate::recording) const MANIFESTS: &str = "replay_manifests";
/// Manifest id ‖ chunk index (big-endian) → the chunk. The recordings read a fetched replay's
/// frames from here.
pub(in crate::recording) const CHUNKS: &str = "replay_chunks";
/// Recording id → the manifest it was published or fetched under.
pub(in crate::recording) const BY_RECORDING: &str = "replay_by_recording";

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
        // A private room's replay names nobody and has no title for its holders to read (the
        // title and names are in its sealed records, for whoever has the link's key).
        let private = recordings.is_private(&meta.id)?;
        let speakers = meta
            .speakers
            .iter()
            .map(|(id, info)| ReplaySpeaker {
                id: *id,
                key: info.key,
                name: if private {
                    String::new()
                } else {
                    cut(&info.name, earshot_protocol::control::MAX_NAME_BYTES)
                },
                frames: info.frames,
            })
            .collect();
        let title = if private {
            String::new()
        } else {
            cut(&meta.title, earshot_protocol::room::MAX_TITLE_BYTES)
        };
        let manifest = ReplayManifest::sign(
            signer,
            ManifestSpec {
                recording: meta.id,
                room: meta.room,
                title,
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
    pub(super) fn missing(
        &self,
        manifest: &ReplayManifest,
        id: &ManifestId,
    ) -> Result<Vec<u32>, ReplayError> {
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
        // The frames and proofs stay in the verified chunks, where the recordings read them
        // (one key per frame made a fetch five times slower): check that they parse and count
        // the frames. (Whether the frames match their proofs is for `Recordings::verify`.)
        let bad = |reason: String| ReplayError::BadContent { id: *id, reason };
        let mut reader = ContentReader::new(manifest.content_format());
        let (mut frames, mut bytes, mut end) = (0u64, 0u64, 0u64);
        for index in 0..manifest.chunks.len() as u32 {
            let chunk = self
                .chunk(id, index)?
                .ok_or_else(|| bad(format!("chunk {index} vanished")))?;
            for record in reader.push(&chunk).map_err(|err| bad(err.to_string()))? {
                if let ContentRecord::Frame(frame) = record {
                    frames += 1;
                    bytes += frame.payload.len() as u64;
                    end = end.max(frame.at.saturating_add(u64::from(SAMPLES_PER_FRAME)));
                }
            }
        }
        reader.finish().map_err(|err| bad(err.to_string()))?;
        if frames != manifest.frames {
            return Err(bad(format!(
                "it holds {frames} frames, the manifest says {}",
                manifest.frames
            )));
        }
        // The length is what the frames say, not the manifest (an export plays every 20 ms of
        // it): a manifest claiming more than a second past its last frame is refused.
        if manifest.duration_samples > end.saturating_add(u64::from(SAMPLE_RATE)) {
            return Err(bad(format!(
                "the manifest says it lasts {} s, its frames end at {} s",
                manifest.duration_samples / u64::from(SAMPLE_RATE),
                end / u64::from(SAMPLE_RATE)
            )));
        }
        // Linked first: the recording's frames are found through the link.
        self.link_recording(&manifest.recording, id)?;
        let meta = meta_of(&manifest, frames, bytes);
        // No frames to write: the recordings read them from the chunks.
        recordings.import(&meta, std::iter::empty::<ContentRecord>())?;
        Ok(meta)
    }

    /// Every recording linked to a manifest from now on (published or fetched), as sled events
    /// whose value is the manifest id.
    pub(super) fn watch_links(&self) -> sled::Subscriber {
        self.by_recording.watch_prefix(Vec::new())
    }

    fn link_recording(&self, recording: &RecordingId, id: &ManifestId) -> Result<(), ReplayError> {
        self.by_recording
            .insert(recording.as_bytes(), id.as_bytes())
            .map_err(self.store.db_err())?;
        self.store.db().flush().map_err(self.store.db_err())?;
        Ok(())
    }
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

/// Streams a recording's content (its frames and proofs, in order) in chunks of `chunk_bytes`
/// (the last one shorter) to `each`; returns (frames, total bytes).
fn content_chunks(
    recordings: &Recordings,
    meta: &RecordingMeta,
    chunk_bytes: u32,
    mut each: impl FnMut(&[u8]) -> Result<(), ReplayError>,
) -> Result<(u64, u64), ReplayError> {
    let chunk_bytes = chunk_bytes as usize;
    let mut buffer = Vec::with_capacity(chunk_bytes * 2);
    let (mut frames, mut total) = (0u64, 0u64);
    for record in recordings.records(&meta.id) {
        let record = record?;
        record
            .write_to(&mut buffer)
            .map_err(|source| ReplayError::Unpublishable {
                id: meta.id,
                source,
            })?;
        if let ContentRecord::Frame(_) = record {
            frames += 1;
        }
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

/// `text` cut to at most `max` bytes on a character boundary.
fn cut(text: &str, max: usize) -> String {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_owned()
}
