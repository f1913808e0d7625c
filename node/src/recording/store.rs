//! Recordings in the node's sled database, and the recorder that writes them.
//!
//! Two trees: `recordings` (metadata, one record per recording) and `recording_frames`, which
//! holds a recording's frames and its speakers' proofs, so that a prefix scan streams a
//! recording back in time order, every speaker interleaved as they spoke, each proof after the
//! frames it covers: the order of a replay's content ([`ContentRecord::order`]). Big-endian keys
//! (time is samples at 48 kHz since the recording started, by the speaker's own capture clock):
//!
//! ```text
//! frame: recording id ‖ time u64 ‖ speaker u32              → 0x80 ‖ seq u32 ‖ timestamp u32
//!                                                              ‖ level ‖ flags ‖ payload
//! proof: recording id ‖ time u64 ‖ speaker u32 ‖ first_seq u32 → FrameProof::encode
//! studio: recording id ‖ time u64 ‖ speaker u32 ‖ ff ff ff ff ‖ n u32 ‖ "st"
//!                                                            → StudioChunk::encode
//! ```
//!
//! (A studio chunk, a second of a speaker's own voice recorded before the network
//! ([`earshot_protocol::studio`]), sits at the time of its first frame, after that speaker's
//! frame and proofs there.)
//!
//! A frame keeps everything its speaker signed ([`earshot_protocol::proof::frame_hash`]), so
//! anyone can check it against its proof ([`Recordings::verify`]). A proof's time is that of the
//! last frame it covers the recorder had (or, when it came first, of its speaker's latest
//! frame). Frames written before proofs were kept hold `level ‖ flags ‖ payload` (a level is at
//! most 127, so the first byte tells them apart): they read back with sequence number and
//! timestamp 0, and never verify.
//!
//! **Invariant:** recording never blocks the audio path. Frames reach the recorder through a
//! bounded queue (`try_send`: a full queue drops the frame and counts it); a thread of its own
//! writes them in batches and flushes at least every [`FLUSH_EVERY`], so a node killed mid-
//! recording keeps all but the last moments. On the next start such a recording is marked
//! [`RecordingState::Interrupted`] (it is complete up to its last flush, not corrupt). A write
//! that fails (a full disk) stops the recording with the reason and keeps what was written.

use std::collections::BTreeMap;
use std::time::Duration;

use earshot_protocol::frame::{AudioFrame, SAMPLES_PER_FRAME, SpeakerId};
use earshot_protocol::proof::FrameProof;
use earshot_protocol::replay::{
    ContentFormat, ContentReader, ContentRecord, ReplayConsent, ReplayFrame, ReplayManifest,
    ReplayProof, ReplaySealed, ReplayStage, ReplayStudio,
};
use earshot_protocol::studio::StudioChunk;
use earshot_protocol::{PeerKey, RecordingId, RoomId, Timestamp};
use serde::{Deserialize, Serialize};

use super::replay;
use crate::store::{Store, StoreError, decode_record, encode_record};

mod consent;
mod private;
mod recorder;
mod support;

pub use consent::Consent;
pub use private::PrivateRecording;
pub use recorder::{FrameTap, Recorder, StudioStream};
pub use support::{MAX_SUPPORTS, Supported};

/// Recording id → its [`RecordingMeta`].
const META: &str = "recordings";
/// [`frame_key`] → [`frame_value`] and [`proof_key`] → the proof: every frame and proof of every
/// recording made here or imported.
const FRAMES: &str = "recording_frames";
/// Frames and proofs queued for the recorder thread: 2 s of ten speakers (1,000 frames, and
/// their 200 proofs).
pub const QUEUE_CAP: usize = 1200;
/// First byte of a frame's value: its layout with sequence number and timestamp (older values
/// start with the level, at most 127).
const FRAME_VALUE: u8 = 0x80;
/// The longest a written frame waits to be flushed to disk.
pub const FLUSH_EVERY: Duration = Duration::from_millis(500);
/// Frames and proofs written per batch when importing.
const IMPORT_BATCH: usize = 2000;

/// Where a recording is in its life.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum RecordingState {
    /// Being written now.
    Recording,
    /// Stopped as asked.
    Complete,
    /// The node stopped without finishing it (a crash, a kill): complete up to its last flush.
    Interrupted,
    /// Writing failed (say, a full disk); what was written is kept.
    Failed(String),
}

impl RecordingState {
    pub fn as_str(&self) -> &'static str {
        match self {
            RecordingState::Recording => "recording",
            RecordingState::Complete => "complete",
            RecordingState::Interrupted => "interrupted",
            RecordingState::Failed(_) => "failed",
        }
    }
}

/// Someone heard in a recording.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpeakerInfo {
    pub key: Option<PeerKey>,
    pub name: String,
    pub frames: u64,
}

/// What is known of a recording without reading its frames.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordingMeta {
    pub id: RecordingId,
    pub room: RoomId,
    pub title: String,
    pub host: PeerKey,
    /// Who recorded it (the host, for the room's official recording).
    pub recorder: PeerKey,
    pub started_at: Timestamp,
    pub ended_at: Option<Timestamp>,
    pub state: RecordingState,
    /// The media-clock time (48 kHz ticks) the recording started at: frame times are relative
    /// to it.
    pub start_media: u32,
    /// By speaker id (see [`SpeakerId::of`]).
    pub speakers: BTreeMap<u32, SpeakerInfo>,
    pub frames: u64,
    /// Bytes of Opus payload.
    pub bytes: u64,
    /// From the start to the end of the last frame, in 48 kHz samples.
    pub duration_samples: u64,
    /// Frames the recorder could not keep up with (dropped, never blocking the audio).
    pub dropped: u64,
}

impl RecordingMeta {
    /// A recording starting now, with nothing in it yet.
    fn begin(id: RecordingId, new: NewRecording) -> Self {
        Self {
            id,
            room: new.room,
            title: new.title,
            host: new.host,
            recorder: new.recorder,
            started_at: new.started_at,
            ended_at: None,
            state: RecordingState::Recording,
            start_media: new.start_media,
            speakers: BTreeMap::new(),
            frames: 0,
            bytes: 0,
            duration_samples: 0,
            dropped: 0,
        }
    }

    pub fn duration(&self) -> Duration {
        Duration::from_micros(self.duration_samples.saturating_mul(1_000) / 48)
    }
}

/// One stored frame, as it streams back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredFrame {
    /// 48 kHz samples since the recording started.
    pub at: u64,
    pub speaker: SpeakerId,
    /// The frame's own sequence number, timestamp and flags: with the rest, what its speaker
    /// signed (0 for frames kept before proofs were).
    pub seq: u32,
    pub timestamp: u32,
    pub flags: u8,
    pub level: u8,
    pub payload: Vec<u8>,
}

impl StoredFrame {
    /// What the recorder keeps of `frame`, heard at `at`.
    pub fn of(at: u64, frame: &AudioFrame) -> Self {
        ReplayFrame::of(at, frame).into()
    }
}

impl From<ReplayFrame> for StoredFrame {
    fn from(frame: ReplayFrame) -> Self {
        Self {
            at: frame.at,
            speaker: SpeakerId(frame.speaker),
            seq: frame.seq,
            timestamp: frame.timestamp,
            flags: frame.flags,
            level: frame.level,
            payload: frame.payload,
        }
    }
}

impl From<StoredFrame> for ReplayFrame {
    fn from(frame: StoredFrame) -> Self {
        Self {
            at: frame.at,
            speaker: frame.speaker.0,
            seq: frame.seq,
            timestamp: frame.timestamp,
            flags: frame.flags,
            level: frame.level,
            payload: frame.payload,
        }
    }
}

impl From<StoredFrame> for ContentRecord {
    fn from(frame: StoredFrame) -> Self {
        ContentRecord::Frame(frame.into())
    }
}

/// Why a recording operation failed.
#[derive(Debug, thiserror::Error)]
pub enum RecordingError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("no recording {0}")]
    NotFound(String),
    #[error("{0:?} matches several recordings; use more of the id")]
    Ambiguous(String),
    #[error("writing the recording failed: {0}")]
    Write(String),
    #[error("a stored frame of recording {id} is corrupt")]
    CorruptFrame { id: RecordingId },
    #[error("recording {id} was fetched as a replay whose manifest is missing or invalid")]
    BadReplay { id: RecordingId },
    #[error("could not start the recorder thread: {0}")]
    Thread(std::io::Error),
    #[error("the recorder thread crashed")]
    Crashed,
}

/// The recordings of one data directory.
#[derive(Debug, Clone)]
pub struct Recordings {
    store: Store,
    meta: sled::Tree,
    frames: sled::Tree,
    /// Tests: every recorder write fails, as on a full disk.
    #[cfg(test)]
    disk_full: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl Recordings {
    /// Opens the recordings of `store`. Call [`Self::recover`] once per process start.
    pub fn open(store: &Store) -> Result<Self, RecordingError> {
        let db = store.db();
        let err = store.db_err();
        Ok(Self {
            meta: db.open_tree(META).map_err(&err)?,
            frames: db.open_tree(FRAMES).map_err(&err)?,
            store: store.clone(),
            #[cfg(test)]
            disk_full: std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false)),
        })
    }

    /// Marks recordings left `Recording` by a process that stopped without finishing them as
    /// interrupted (only one process opens a database, so none of them is being written now).
    /// Returns how many.
    pub fn recover(&self) -> Result<usize, RecordingError> {
        let mut recovered = 0;
        for meta in self.list()? {
            if meta.state == RecordingState::Recording {
                let mut meta = self.recount(meta)?;
                meta.state = RecordingState::Interrupted;
                meta.ended_at = Some(
                    meta.started_at
                        .plus_millis(u64::try_from(meta.duration().as_millis()).unwrap_or(0)),
                );
                self.put(&meta)?;
                recovered += 1;
            }
        }
        Ok(recovered)
    }

    /// Every recording, oldest first.
    pub fn list(&self) -> Result<Vec<RecordingMeta>, RecordingError> {
        let mut all = Vec::new();
        for entry in self.meta.iter() {
            let (_, bytes) = entry.map_err(self.store.db_err())?;
            all.push(decode_record::<RecordingMeta>("recording", &bytes)?);
        }
        all.sort_by_key(|meta| meta.started_at);
        Ok(all)
    }

    pub fn get(&self, id: &RecordingId) -> Result<Option<RecordingMeta>, RecordingError> {
        self.meta
            .get(id.as_bytes())
            .map_err(self.store.db_err())?
            .map(|bytes| decode_record("recording", &bytes).map_err(RecordingError::from))
            .transpose()
    }

    /// A recording by id or a unique prefix of it.
    pub fn find(&self, query: &str) -> Result<RecordingMeta, RecordingError> {
        let query = query.trim().to_ascii_lowercase();
        let matches: Vec<RecordingMeta> = self
            .list()?
            .into_iter()
            .filter(|meta| !query.is_empty() && meta.id.to_string().starts_with(&query))
            .collect();
        match matches.len() {
            0 => Err(RecordingError::NotFound(query)),
            1 => Ok(matches
                .into_iter()
                .next()
                .ok_or(RecordingError::NotFound(query))?),
            _ => Err(RecordingError::Ambiguous(query)),
        }
    }

    /// Deletes a recording and its frames.
    pub fn delete(&self, id: &RecordingId) -> Result<(), RecordingError> {
        let err = self.store.db_err();
        let mut batch = sled::Batch::default();
        for key in self.frames.scan_prefix(id.as_bytes()).keys() {
            batch.remove(key.map_err(&err)?);
        }
        self.frames.apply_batch(batch).map_err(&err)?;
        self.delete_consents(id)?;
        self.delete_supports(id)?;
        self.meta.remove(id.as_bytes()).map_err(&err)?;
        self.store.db().flush().map_err(&err)?;
        Ok(())
    }

    /// The frames and proofs of a recording in content order ([`ContentRecord::order`]: time,
    /// every speaker interleaved, each proof after the frames it covers).
    ///
    /// A recording fetched as a replay keeps its frames and proofs where they arrived, in the
    /// replay's verified chunks (a canonical serialisation in the same order): they are read
    /// from there rather than copied one key per frame, which made a fetch five times slower.
    pub fn records(
        &self,
        id: &RecordingId,
    ) -> Box<dyn Iterator<Item = Result<ContentRecord, RecordingError>> + '_> {
        let id = *id;
        match self.replay_chunks(&id) {
            Ok(Some((chunks, format))) => {
                return Box::new(ReplayRecords::new(chunks, format, id, self.store.clone()));
            }
            Ok(None) => {}
            Err(err) => return Box::new(std::iter::once(Err(err))),
        }
        Box::new(self.frames.scan_prefix(id.as_bytes()).map(move |entry| {
            let (key, value) = entry.map_err(self.store.db_err())?;
            decode_entry(&key, &value).ok_or(RecordingError::CorruptFrame { id })
        }))
    }

    /// The frames of a recording in time order (every speaker interleaved).
    pub fn frames(
        &self,
        id: &RecordingId,
    ) -> impl Iterator<Item = Result<StoredFrame, RecordingError>> + '_ {
        self.records(id).filter_map(|record| match record {
            Ok(ContentRecord::Frame(frame)) => Some(Ok(frame.into())),
            Ok(_) => None,
            Err(err) => Some(Err(err)),
        })
    }

    /// The proofs kept with a recording, in content order.
    pub fn proofs(
        &self,
        id: &RecordingId,
    ) -> impl Iterator<Item = Result<ReplayProof, RecordingError>> + '_ {
        self.records(id).filter_map(|record| match record {
            Ok(ContentRecord::Proof(proof)) => Some(Ok(proof)),
            Ok(_) => None,
            Err(err) => Some(Err(err)),
        })
    }

    /// How a recording's frames are kept: [`ContentFormat::Unauthenticated`] for one kept
    /// before frames carried what their speakers signed (recorded here by an older build, or
    /// fetched as a version 1 replay).
    pub fn format(&self, id: &RecordingId) -> Result<ContentFormat, RecordingError> {
        if let Some((_, format)) = self.replay_chunks(id)? {
            return Ok(format);
        }
        for entry in self.frames.scan_prefix(id.as_bytes()) {
            let (key, value) = entry.map_err(self.store.db_err())?;
            if key.len() == FRAME_KEY_BYTES {
                return Ok(if value.first() == Some(&FRAME_VALUE) {
                    ContentFormat::Authenticated
                } else {
                    ContentFormat::Unauthenticated
                });
            }
        }
        Ok(ContentFormat::Authenticated)
    }

    /// The chunks of the replay this recording was fetched as, and their format, when its
    /// frames live there (a recording this node made, even if it published it, keeps its own
    /// frames).
    fn replay_chunks(
        &self,
        id: &RecordingId,
    ) -> Result<Option<(sled::Iter, ContentFormat)>, RecordingError> {
        let err = self.store.db_err();
        if self.frames.scan_prefix(id.as_bytes()).next().is_some() {
            return Ok(None);
        }
        let db = self.store.db();
        let Some(manifest) = db
            .open_tree(replay::storage::BY_RECORDING)
            .map_err(&err)?
            .get(id.as_bytes())
            .map_err(&err)?
        else {
            return Ok(None);
        };
        // The manifest was checked when it was stored; its version says how to read the chunks.
        let format = db
            .open_tree(replay::storage::MANIFESTS)
            .map_err(&err)?
            .get(manifest.as_ref())
            .map_err(&err)?
            .and_then(|bytes| ReplayManifest::decode_verified(&bytes).ok())
            .map(|manifest| manifest.content_format())
            .ok_or(RecordingError::BadReplay { id: *id })?;
        Ok(Some((
            db.open_tree(replay::storage::CHUNKS)
                .map_err(&err)?
                .scan_prefix(manifest.as_ref()),
            format,
        )))
    }

    /// Starts recording `room`: frames given to the returned recorder are stored until it is
    /// finished (or the process ends).
    pub fn start(&self, new: NewRecording) -> Result<Recorder, RecordingError> {
        let mut id = [0u8; 16];
        getrandom::fill(&mut id).map_err(|err| RecordingError::Write(err.to_string()))?;
        let private = new.private.clone();
        let mut meta = RecordingMeta::begin(RecordingId(id), new);
        if private.is_some() {
            // Kept sealed in the recording itself (`PrivateRecord::About`), not in the clear.
            meta.title.clear();
        }
        self.put(&meta)?;
        if let Some(private) = &private {
            self.keep_sealed_key(&meta.id, &private.sealed)?;
        }
        self.store.db().flush().map_err(self.store.db_err())?;
        Recorder::spawn(self.clone(), meta, private)
    }

    /// Writes a whole recording, metadata and records (frames, [`StoredFrame`]s, and proofs,
    /// in content order or not), as it stands: `meta`'s counts are taken as given. How a
    /// fetched replay joins the recordings (with no records: they stay in its chunks), and a
    /// way to build a recording without a live room (tests, benchmarks). A recording with the
    /// same id is overwritten.
    pub fn import<R: Into<ContentRecord>>(
        &self,
        meta: &RecordingMeta,
        records: impl IntoIterator<Item = R>,
    ) -> Result<(), RecordingError> {
        let err = self.store.db_err();
        let mut batch = sled::Batch::default();
        let mut pending = 0;
        for record in records {
            let (key, value) = record_entry(&meta.id, &record.into());
            batch.insert(key, value);
            pending += 1;
            if pending == IMPORT_BATCH {
                self.frames
                    .apply_batch(std::mem::take(&mut batch))
                    .map_err(&err)?;
                pending = 0;
            }
        }
        self.frames.apply_batch(batch).map_err(&err)?;
        self.put(meta)?;
        self.store.db().flush().map_err(&err)?;
        Ok(())
    }

    fn put(&self, meta: &RecordingMeta) -> Result<(), RecordingError> {
        self.meta
            .insert(meta.id.as_bytes(), encode_record(meta))
            .map_err(self.store.db_err())?;
        Ok(())
    }

    /// Counts a recording's frames, bytes and speakers from what is on disk (after a crash the
    /// metadata lags the frames by up to a flush).
    fn recount(&self, mut meta: RecordingMeta) -> Result<RecordingMeta, RecordingError> {
        let (mut frames, mut bytes, mut end) = (0u64, 0u64, 0u64);
        let mut speakers: BTreeMap<u32, u64> = BTreeMap::new();
        for frame in self.frames(&meta.id) {
            let frame = frame?;
            frames += 1;
            bytes += frame.payload.len() as u64;
            end = end.max(frame.at + u64::from(SAMPLES_PER_FRAME));
            *speakers.entry(frame.speaker.0).or_default() += 1;
        }
        meta.frames = frames;
        meta.bytes = bytes;
        meta.duration_samples = end;
        for (speaker, count) in speakers {
            meta.speakers
                .entry(speaker)
                .or_insert_with(|| SpeakerInfo {
                    key: None,
                    name: format!("speaker {speaker:08x}"),
                    frames: 0,
                })
                .frames = count;
        }
        Ok(meta)
    }
}

/// A fetched replay's records, read from its chunks in order.
struct ReplayRecords {
    chunks: sled::Iter,
    reader: Option<ContentReader>,
    ready: std::collections::VecDeque<ContentRecord>,
    id: RecordingId,
    store: Store,
}

impl ReplayRecords {
    fn new(chunks: sled::Iter, format: ContentFormat, id: RecordingId, store: Store) -> Self {
        Self {
            chunks,
            reader: Some(ContentReader::new(format)),
            ready: std::collections::VecDeque::new(),
            id,
            store,
        }
    }
}

impl Iterator for ReplayRecords {
    type Item = Result<ContentRecord, RecordingError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(frame) = self.ready.pop_front() {
                return Some(Ok(frame));
            }
            let reader = self.reader.as_mut()?;
            match self.chunks.next() {
                Some(Ok((_, chunk))) => match reader.push(&chunk) {
                    Ok(records) => self.ready.extend(records),
                    Err(_) => {
                        self.reader = None;
                        return Some(Err(RecordingError::CorruptFrame { id: self.id }));
                    }
                },
                Some(Err(source)) => {
                    self.reader = None;
                    return Some(Err(RecordingError::Store(StoreError::Db {
                        path: self.store.path().to_owned(),
                        source,
                    })));
                }
                None => {
                    let finished = self.reader.take().map(|reader| reader.finish());
                    return match finished {
                        Some(Err(_)) => Some(Err(RecordingError::CorruptFrame { id: self.id })),
                        _ => None,
                    };
                }
            }
        }
    }
}

/// What a new recording is of.
#[derive(Debug, Clone)]
pub struct NewRecording {
    pub room: RoomId,
    pub title: String,
    pub host: PeerKey,
    pub recorder: PeerKey,
    pub started_at: Timestamp,
    /// The media clock now ([`crate::audio::media_now`]).
    pub start_media: u32,
    /// A private room's: its recording key (its epoch keys and stage views are kept sealed
    /// under it), and that key sealed to this node for keeping at rest.
    pub private: Option<PrivateRecording>,
}

/// Bytes of a frame's key.
const FRAME_KEY_BYTES: usize = 28;
/// Bytes of a proof's key.
const PROOF_KEY_BYTES: usize = 32;
/// Bytes of a stage record's key.
const STAGE_KEY_BYTES: usize = 36;
/// Bytes of a sealed record's key.
const SEALED_KEY_BYTES: usize = 37;
/// Bytes of a studio chunk's key.
const STUDIO_KEY_BYTES: usize = 38;
/// Bytes of a speaker's agreement's key.
const CONSENT_KEY_BYTES: usize = 39;

/// A frame's key: recording id ‖ time ‖ speaker, big-endian, so that a prefix scan returns a
/// recording's frames in time order. The one definition: recording and importing both use it.
fn frame_key(id: &RecordingId, at: u64, speaker: SpeakerId) -> [u8; FRAME_KEY_BYTES] {
    let mut key = [0u8; FRAME_KEY_BYTES];
    key[..16].copy_from_slice(id.as_bytes());
    key[16..24].copy_from_slice(&at.to_be_bytes());
    key[24..].copy_from_slice(&speaker.0.to_be_bytes());
    key
}

/// A proof's key: its frame key's (time, speaker), then its first sequence number, so that it
/// sorts after the frame of its speaker at that time, as in a replay's content.
fn proof_key(id: &RecordingId, at: u64, proof: &FrameProof) -> [u8; PROOF_KEY_BYTES] {
    let mut key = [0u8; PROOF_KEY_BYTES];
    key[..FRAME_KEY_BYTES].copy_from_slice(&frame_key(id, at, proof.speaker));
    key[FRAME_KEY_BYTES..].copy_from_slice(&proof.first_seq.to_be_bytes());
    key
}

/// A stage record's key: time, then all ones where a speaker and a proof's sequence number go
/// (so that it sorts after every frame and proof at that time, as in a replay's content), then
/// the view's sequence number.
fn stage_key(id: &RecordingId, at: u64, seq: u32) -> [u8; STAGE_KEY_BYTES] {
    let mut key = [0xffu8; STAGE_KEY_BYTES];
    key[..16].copy_from_slice(id.as_bytes());
    key[16..24].copy_from_slice(&at.to_be_bytes());
    key[32..].copy_from_slice(&seq.to_be_bytes());
    key
}

/// A sealed record's key: like a stage record's (after every frame and proof at its time), its
/// number, and a last byte that tells it apart.
fn sealed_key(id: &RecordingId, at: u64, n: u32) -> [u8; SEALED_KEY_BYTES] {
    let mut key = [0xffu8; SEALED_KEY_BYTES];
    key[..16].copy_from_slice(id.as_bytes());
    key[16..24].copy_from_slice(&at.to_be_bytes());
    key[32..36].copy_from_slice(&n.to_be_bytes());
    key[36] = 3;
    key
}

/// A studio chunk's key: its speaker's frame key at the chunk's time, then all ones where a
/// proof's sequence number goes (so that it sorts after that speaker's frame and proofs there,
/// as in a replay's content), its number, and two bytes that make its length its own.
fn studio_key(id: &RecordingId, at: u64, chunk: &StudioChunk) -> [u8; STUDIO_KEY_BYTES] {
    let mut key = [0xffu8; STUDIO_KEY_BYTES];
    key[..FRAME_KEY_BYTES].copy_from_slice(&frame_key(id, at, chunk.speaker));
    key[32..36].copy_from_slice(&chunk.n.to_be_bytes());
    key[36..].copy_from_slice(b"st");
    key
}

/// A speaker's agreement's key: its frame key at the agreement's time, then all ones (after
/// that speaker's frame, proofs and studio chunks there, as in a replay's content), and three
/// bytes that make its length its own.
fn consent_key(id: &RecordingId, at: u64, author: &PeerKey) -> [u8; CONSENT_KEY_BYTES] {
    let mut key = [0xffu8; CONSENT_KEY_BYTES];
    key[..FRAME_KEY_BYTES].copy_from_slice(&frame_key(id, at, SpeakerId::of(author)));
    key[36..].copy_from_slice(b"cns");
    key
}

/// A frame's value: the layout marker, seq, timestamp, level, flags, Opus payload.
fn frame_value(seq: u32, timestamp: u32, level: u8, flags: u8, payload: &[u8]) -> Vec<u8> {
    let mut value = Vec::with_capacity(11 + payload.len());
    value.push(FRAME_VALUE);
    value.extend_from_slice(&seq.to_be_bytes());
    value.extend_from_slice(&timestamp.to_be_bytes());
    value.push(level);
    value.push(flags);
    value.extend_from_slice(payload);
    value
}

/// The key and value a record is stored under.
fn record_entry(id: &RecordingId, record: &ContentRecord) -> (Vec<u8>, Vec<u8>) {
    match record {
        ContentRecord::Frame(frame) => (
            frame_key(id, frame.at, SpeakerId(frame.speaker)).to_vec(),
            frame_value(
                frame.seq,
                frame.timestamp,
                frame.level,
                frame.flags,
                &frame.payload,
            ),
        ),
        ContentRecord::Proof(proof) => (
            proof_key(id, proof.at, &proof.proof).to_vec(),
            proof.proof.encode(),
        ),
        ContentRecord::Stage(stage) => (
            stage_key(id, stage.at, stage.seq()).to_vec(),
            stage.view.clone(),
        ),
        ContentRecord::Sealed(sealed) => (
            sealed_key(id, sealed.at, sealed.n).to_vec(),
            sealed.bytes.clone(),
        ),
        ContentRecord::Studio(studio) => (
            studio_key(id, studio.at, &studio.chunk).to_vec(),
            studio.chunk.encode(),
        ),
        ContentRecord::Consent(consent) => (
            consent_key(id, consent.at, &consent.author).to_vec(),
            consent.envelope.clone(),
        ),
    }
}

/// The inverse of [`record_entry`] (and reads frames kept before proofs were: level, flags,
/// payload).
fn decode_entry(key: &[u8], value: &[u8]) -> Option<ContentRecord> {
    let at = u64::from_be_bytes(key.get(16..24)?.try_into().ok()?);
    let speaker = u32::from_be_bytes(key.get(24..28)?.try_into().ok()?);
    match key.len() {
        FRAME_KEY_BYTES => {
            let (seq, timestamp, rest) = match value.split_first()? {
                (&FRAME_VALUE, rest) => (
                    u32::from_be_bytes(rest.get(..4)?.try_into().ok()?),
                    u32::from_be_bytes(rest.get(4..8)?.try_into().ok()?),
                    rest.get(8..)?,
                ),
                _ => (0, 0, value),
            };
            let (&level, rest) = rest.split_first()?;
            let (&flags, payload) = rest.split_first()?;
            Some(ContentRecord::Frame(ReplayFrame {
                at,
                speaker,
                seq,
                timestamp,
                flags,
                level,
                payload: payload.to_vec(),
            }))
        }
        PROOF_KEY_BYTES => {
            let proof = FrameProof::decode(value).ok()?;
            (proof.speaker.0 == speaker).then_some(ContentRecord::Proof(ReplayProof { at, proof }))
        }
        STAGE_KEY_BYTES => Some(ContentRecord::Stage(ReplayStage {
            at,
            view: value.to_vec(),
        })),
        SEALED_KEY_BYTES => Some(ContentRecord::Sealed(ReplaySealed {
            at,
            n: u32::from_be_bytes(key.get(32..36)?.try_into().ok()?),
            bytes: value.to_vec(),
        })),
        STUDIO_KEY_BYTES => {
            let chunk = StudioChunk::decode(value).ok()?;
            (chunk.speaker.0 == speaker)
                .then_some(ContentRecord::Studio(ReplayStudio { at, chunk }))
        }
        CONSENT_KEY_BYTES => {
            let consent = ReplayConsent::new(at, value.to_vec()).ok()?;
            (SpeakerId::of(&consent.author).0 == speaker).then_some(ContentRecord::Consent(consent))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests;
