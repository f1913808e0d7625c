//! The recorder: a [`FrameTap`] the audio plane hands frames and proofs to without waiting, and
//! the thread of its own ([`Recorder`]) that batches them into sled (see [`super`]).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use earshot_protocol::bucket::Bucket;
use earshot_protocol::frame::{AudioFrame, SAMPLES_PER_FRAME, SpeakerId};
use earshot_protocol::private::{PrivateRecord, Ring, Secret};
use earshot_protocol::proof::FrameProof;
use earshot_protocol::replay::{
    ContentRecord, ReplayConsent, ReplaySealed, ReplayStage, ReplayStudio,
};
use earshot_protocol::studio::StudioChunk;
use earshot_protocol::{PeerKey, RecordingId, RoomId, Timestamp};
use parking_lot::Mutex;

use super::{
    FLUSH_EVERY, QUEUE_CAP, RecordingError, RecordingMeta, RecordingState, Recordings, SpeakerInfo,
    frame_key, frame_value, proof_key, record_entry,
};
use crate::store::encode_record;

/// Recent frames the recorder remembers per speaker (seq → time), to place a proof after the
/// frames it covers: more than a proof covers.
const RECENT_FRAMES: usize = 64;
/// Speakers the recorder remembers recent frames of.
const RECENT_SPEAKERS: usize = 256;
/// Frames and proofs written per batch, at most.
const BATCH_FRAMES: usize = 200;

/// Hands frames and proofs to a recorder without ever waiting. Cheap to clone.
#[derive(Debug, Clone)]
pub struct FrameTap {
    pub(super) tx: std::sync::mpsc::SyncSender<Tapped>,
    pub(super) dropped: Arc<AtomicU64>,
    pub(super) dropped_proofs: Arc<AtomicU64>,
    /// A private room's: the room and the recording key its sealed records are sealed under.
    pub(super) sealing: Option<Arc<(RoomId, Secret)>>,
    /// Speakers' studio streams open into this recording now (see [`Self::studio_stream`]).
    pub(super) studio_streams: Arc<tokio::sync::watch::Sender<usize>>,
    /// Each speaker's budget of studio bytes, whatever streams it opens, and whether it was
    /// cut off for flooding (one entry per speaker the host heard, so bounded by the stage).
    pub(super) studio_budgets: Arc<Mutex<HashMap<PeerKey, (Bucket, bool)>>>,
    /// Speakers on stage who have not agreed to speak in this recording: nothing of theirs is
    /// kept (see [`Self::set_unconsented`]).
    pub(super) unconsented: Arc<Mutex<std::collections::HashSet<SpeakerId>>>,
}

/// A speaker's studio stream, counted open into a recording while this is held.
#[derive(Debug)]
pub struct StudioStream(Arc<tokio::sync::watch::Sender<usize>>);

impl Drop for StudioStream {
    fn drop(&mut self) {
        self.0.send_modify(|open| *open = open.saturating_sub(1));
    }
}

/// What goes through a [`FrameTap`].
#[derive(Debug)]
pub(super) enum Tapped {
    Frame(AudioFrame),
    Proof(FrameProof),
    /// The host's signed view (who is on stage).
    Stage(Vec<u8>),
    /// A private room's [`PrivateRecord`], sealed under the recording key.
    Sealed(Vec<u8>),
    /// A chunk of a speaker's studio track (its signature checked).
    Studio(StudioChunk),
    /// A speaker's signed agreement to be recorded.
    Consent(Vec<u8>),
}

impl FrameTap {
    /// Records `frame` if the recorder keeps up; else counts it as dropped.
    pub fn record(&self, frame: &AudioFrame) {
        if self.unconsented.lock().contains(&frame.speaker) {
            return;
        }
        if self.tx.try_send(Tapped::Frame(frame.clone())).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Keeps `proof` (one that verified) with the recording if the recorder keeps up; else
    /// counts it as dropped (the frames it covers will have no proof).
    pub fn record_proof(&self, proof: &FrameProof) {
        if self.tx.try_send(Tapped::Proof(proof.clone())).is_err() {
            self.dropped_proofs.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Keeps a chunk of a speaker's studio track (one whose signature was checked) with the
    /// recording if the recorder keeps up (and still runs): whether it was taken.
    pub fn record_studio(&self, chunk: StudioChunk) -> bool {
        if self.unconsented.lock().contains(&chunk.speaker) {
            return false;
        }
        let frames = chunk.frames.len() as u64;
        match self.tx.try_send(Tapped::Studio(chunk)) {
            Ok(()) => true,
            Err(std::sync::mpsc::TrySendError::Full(_)) => {
                self.dropped.fetch_add(frames, Ordering::Relaxed);
                false
            }
            Err(std::sync::mpsc::TrySendError::Disconnected(_)) => false,
        }
    }

    /// The speakers on stage who have not agreed to speak in this recording (the room's state
    /// says who): their frames and studio chunks are not kept until they do, whatever their
    /// nodes send.
    pub fn set_unconsented(&self, speakers: impl IntoIterator<Item = PeerKey>) {
        *self.unconsented.lock() = speakers
            .into_iter()
            .map(|key| SpeakerId::of(&key))
            .collect();
    }

    /// Takes `bytes` from `speaker`'s budget of studio bytes for this recording (`rate` a
    /// second, `burst` at once): whether they fit (never, for a speaker cut off).
    pub fn studio_budget(
        &self,
        speaker: PeerKey,
        bytes: usize,
        (rate, burst): (f64, f64),
        now: Instant,
    ) -> bool {
        let mut budgets = self.studio_budgets.lock();
        let (budget, cut_off) = budgets
            .entry(speaker)
            .or_insert_with(|| (Bucket::new(rate, burst, now), false));
        !*cut_off && budget.take_many(bytes as f64, now)
    }

    /// Cuts `speaker` off this recording's studio tracks (it flooded): nothing more of its is
    /// kept, and its streams are refused.
    pub fn cut_off_studio(&self, speaker: PeerKey) {
        if let Some((_, cut_off)) = self.studio_budgets.lock().get_mut(&speaker) {
            *cut_off = true;
        }
    }

    /// Whether `speaker` was cut off this recording's studio tracks.
    pub fn studio_cut_off(&self, speaker: &PeerKey) -> bool {
        self.studio_budgets
            .lock()
            .get(speaker)
            .is_some_and(|(_, cut_off)| *cut_off)
    }

    /// Whether `other` feeds the same recording.
    pub fn same(&self, other: &FrameTap) -> bool {
        Arc::ptr_eq(&self.studio_streams, &other.studio_streams)
    }

    /// Counts a speaker's studio stream open into this recording until the guard drops.
    pub fn studio_stream(&self) -> StudioStream {
        self.studio_streams.send_modify(|open| *open += 1);
        StudioStream(Arc::clone(&self.studio_streams))
    }

    /// Waits until no speaker's studio stream is open into this recording (each closes its
    /// stream once it has handed over its last chunk), `within` at most.
    pub async fn studio_streams_closed(&self, within: std::time::Duration) {
        let mut open = self.studio_streams.subscribe();
        let _ = tokio::time::timeout(within, open.wait_for(|open| *open == 0)).await;
    }

    /// Keeps `view` (the host's signed view, as it was signed) with the recording: who is on
    /// stage, in the host's word. A view the recorder cannot keep up with is lost (the next
    /// change of stage brings another).
    pub fn record_stage(&self, view: Vec<u8>) {
        if self.sealing.is_some() {
            return self.record_sealed(&PrivateRecord::Stage(serde_bytes::ByteBuf::from(view)));
        }
        let _ = self.tx.try_send(Tapped::Stage(view));
    }

    /// Keeps a signed room message (a speaker's agreement to be recorded, a member's support,
    /// the host's receipt for it) in the recording's content (it travels with the replay). Not in a private room: the envelope names its author in the clear
    /// (the agreement is kept beside the recording there, see `Recordings::add_consent`).
    pub fn record_consent(&self, envelope: Vec<u8>) {
        if self.sealing.is_none() && self.tx.try_send(Tapped::Consent(envelope)).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// In a private room: keeps the room's epoch keys this node holds with the recording,
    /// sealed under the recording key (its frames open with them).
    pub fn record_keys(&self, ring: &Ring) {
        if self.sealing.is_some() {
            self.record_sealed(&PrivateRecord::keys_of(ring));
        }
    }

    /// In a private room: keeps `record` sealed under the recording key (never waiting: a
    /// record the writer cannot keep up with is counted as dropped; the keys record goes again
    /// with the next step of the room's keys).
    pub fn record_sealed(&self, record: &PrivateRecord) {
        if let Some(sealing) = &self.sealing {
            let (room, key) = sealing.as_ref();
            let sealed = Tapped::Sealed(record.seal(room, key, rand::random()));
            if self.tx.try_send(sealed).is_err() {
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Whether this tap seals (a private room's recording).
    pub fn is_private(&self) -> bool {
        self.sealing.is_some()
    }
}

/// A recording being written, by a thread of its own.
#[derive(Debug)]
pub struct Recorder {
    tap: FrameTap,
    meta: Arc<Mutex<RecordingMeta>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Recorder {
    pub(super) fn spawn(
        recordings: Recordings,
        meta: RecordingMeta,
        private: Option<super::PrivateRecording>,
    ) -> Result<Self, RecordingError> {
        let sealing = private.map(|private| Arc::new((meta.room, private.key)));
        let (tx, rx) = std::sync::mpsc::sync_channel(QUEUE_CAP);
        let dropped = Arc::new(AtomicU64::new(0));
        let dropped_proofs = Arc::new(AtomicU64::new(0));
        let shared = Arc::new(Mutex::new(meta));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (shared, stop, dropped) =
                (Arc::clone(&shared), Arc::clone(&stop), Arc::clone(&dropped));
            let dropped_proofs = Arc::clone(&dropped_proofs);
            std::thread::Builder::new()
                .name("earshot-recorder".into())
                .spawn(move || {
                    write_loop(&recordings, &rx, &shared, &stop, &dropped);
                    let lost = dropped_proofs.load(Ordering::Relaxed);
                    if lost > 0 {
                        tracing::warn!(
                            proofs = lost,
                            "the recorder could not keep up with every proof: their frames \
                             will not verify"
                        );
                    }
                })
                .map_err(RecordingError::Thread)?
        };
        Ok(Self {
            tap: FrameTap {
                tx,
                studio_streams: Arc::new(tokio::sync::watch::channel(0).0),
                studio_budgets: Arc::default(),
                unconsented: Arc::default(),
                dropped,
                dropped_proofs,
                sealing,
            },
            meta: shared,
            stop,
            thread: Some(thread),
        })
    }

    pub fn id(&self) -> RecordingId {
        self.meta.lock().id
    }

    /// Where frames and proofs go (for the audio plane).
    pub fn tap(&self) -> FrameTap {
        self.tap.clone()
    }

    /// The recording as written so far.
    pub fn meta(&self) -> RecordingMeta {
        self.meta.lock().clone()
    }

    /// Proofs the recorder could not keep up with (not kept in the metadata: the frames they
    /// covered show as without a proof when the recording is verified).
    pub fn dropped_proofs(&self) -> u64 {
        self.tap.dropped_proofs.load(Ordering::Relaxed)
    }

    /// Names the people heard (speaker id → key and display name), kept in the metadata.
    /// (A private room's recording keeps the names sealed in its content, not here.)
    pub fn name_speakers(&self, people: impl IntoIterator<Item = (PeerKey, String)>) {
        let private = self.tap.is_private();
        let mut meta = self.meta.lock();
        for (key, name) in people {
            let name = if private { String::new() } else { name };
            let info = meta
                .speakers
                .entry(SpeakerId::of(&key).0)
                .or_insert_with(|| SpeakerInfo {
                    key: Some(key),
                    name: name.clone(),
                    frames: 0,
                });
            info.key = Some(key);
            info.name = name;
        }
    }

    /// Stops recording: writes what is queued, marks the recording complete (or failed, with
    /// the reason) and returns it.
    pub fn finish(mut self, ended_at: Timestamp) -> Result<RecordingMeta, RecordingError> {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            thread.join().map_err(|_| RecordingError::Crashed)?;
        }
        let mut meta = self.meta.lock().clone();
        if meta.state == RecordingState::Recording {
            meta.state = RecordingState::Complete;
        }
        meta.ended_at = Some(ended_at);
        Ok(meta)
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Where the recorder puts each proof: after the frames it covers that it has, or (a proof that
/// came first) after its speaker's latest frame, so the proof sits next to its frames in the
/// recording. Bounded: [`RECENT_FRAMES`] frames of [`RECENT_SPEAKERS`] speakers.
#[derive(Debug, Default)]
struct Anchors {
    /// The latest time of any frame written.
    latest: u64,
    /// Per speaker, its recent frames: (seq, time), oldest first.
    recent: BTreeMap<u32, std::collections::VecDeque<(u32, u64)>>,
}

impl Anchors {
    fn frame(&mut self, speaker: SpeakerId, seq: u32, at: u64) {
        self.latest = self.latest.max(at);
        if !self.recent.contains_key(&speaker.0) && self.recent.len() >= RECENT_SPEAKERS {
            self.recent.pop_first();
        }
        let recent = self.recent.entry(speaker.0).or_default();
        if recent.len() >= RECENT_FRAMES {
            recent.pop_front();
        }
        recent.push_back((seq, at));
    }

    /// The time to keep `proof` at.
    fn of(&self, proof: &FrameProof) -> u64 {
        let Some(recent) = self.recent.get(&proof.speaker.0) else {
            return self.latest;
        };
        recent
            .iter()
            .filter(|(seq, _)| proof.hash_of(*seq).is_some())
            .map(|(_, at)| *at)
            .max()
            .or_else(|| recent.iter().map(|(_, at)| *at).max())
            .unwrap_or(self.latest)
    }
}

/// The recorder thread: batches frames and proofs into sled, flushes every [`FLUSH_EVERY`],
/// keeps the metadata current, and on stop (or failure) writes the final metadata.
fn write_loop(
    recordings: &Recordings,
    rx: &std::sync::mpsc::Receiver<Tapped>,
    shared: &Mutex<RecordingMeta>,
    stop: &AtomicBool,
    dropped: &AtomicU64,
) {
    let (id, start_media) = {
        let meta = shared.lock();
        (meta.id, meta.start_media)
    };
    let mut batch = sled::Batch::default();
    let mut pending = 0usize;
    let mut last_flush = Instant::now();
    let mut failure: Option<String> = None;
    let mut anchors = Anchors::default();
    let mut sealed_n = 0u32;
    loop {
        let stopping = stop.load(Ordering::Relaxed);
        let tapped = if stopping {
            rx.try_recv().ok()
        } else {
            match rx.recv_timeout(Duration::from_millis(50)) {
                Ok(tapped) => Some(tapped),
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => None,
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                    stop.store(true, Ordering::Relaxed);
                    None
                }
            }
        };
        let got_one = tapped.is_some();
        match tapped {
            Some(Tapped::Frame(frame)) => {
                // Frames captured before the recording started are not part of it.
                let offset = frame.timestamp.wrapping_sub(start_media) as i32;
                if let Ok(at) = u64::try_from(offset) {
                    anchors.frame(frame.speaker, frame.seq, at);
                    let mut meta = shared.lock();
                    batch.insert(
                        frame_key(&id, at, frame.speaker).to_vec(),
                        frame_value(
                            frame.seq,
                            frame.timestamp,
                            frame.level,
                            frame.flags,
                            &frame.payload,
                        ),
                    );
                    pending += 1;
                    meta.frames += 1;
                    meta.bytes += frame.payload.len() as u64;
                    meta.duration_samples =
                        meta.duration_samples.max(at + u64::from(SAMPLES_PER_FRAME));
                    meta.speakers
                        .entry(frame.speaker.0)
                        .or_insert_with(|| SpeakerInfo {
                            key: None,
                            name: format!("speaker {:08x}", frame.speaker.0),
                            frames: 0,
                        })
                        .frames += 1;
                }
            }
            Some(Tapped::Proof(proof)) => {
                let at = anchors.of(&proof);
                batch.insert(proof_key(&id, at, &proof).to_vec(), proof.encode());
                pending += 1;
            }
            Some(Tapped::Stage(view)) => {
                let stage = ContentRecord::Stage(ReplayStage {
                    at: anchors.latest,
                    view,
                });
                let (key, value) = record_entry(&id, &stage);
                batch.insert(key, value);
                pending += 1;
            }
            Some(Tapped::Consent(envelope)) => {
                if let Ok(consent) = ReplayConsent::new(anchors.latest, envelope) {
                    let (key, value) = record_entry(&id, &ContentRecord::Consent(consent));
                    batch.insert(key, value);
                    pending += 1;
                }
            }
            Some(Tapped::Sealed(bytes)) => {
                let sealed = ContentRecord::Sealed(ReplaySealed {
                    at: anchors.latest,
                    n: sealed_n,
                    bytes,
                });
                sealed_n += 1;
                let (key, value) = record_entry(&id, &sealed);
                batch.insert(key, value);
                pending += 1;
            }
            Some(Tapped::Studio(chunk)) => {
                // At its first frame's time (frames before the recording started are not part
                // of it: a chunk that began before sits at the start).
                let first = chunk.frames.first().map_or(0, |frame| frame.timestamp);
                let offset = first.wrapping_sub(start_media) as i32;
                let last = chunk.frames.last().map_or(0, |frame| frame.timestamp);
                if (last.wrapping_sub(start_media) as i32) >= 0 {
                    let studio = ContentRecord::Studio(ReplayStudio {
                        at: u64::try_from(offset).unwrap_or(0),
                        chunk,
                    });
                    let (key, value) = record_entry(&id, &studio);
                    batch.insert(key, value);
                    pending += 1;
                }
            }
            None => {}
        }
        let done = stopping && !got_one;
        let due = last_flush.elapsed() >= FLUSH_EVERY;
        if pending >= BATCH_FRAMES || due || done {
            let mut meta = shared.lock().clone();
            meta.dropped = dropped.load(Ordering::Relaxed);
            if done && meta.state == RecordingState::Recording {
                meta.state = RecordingState::Complete;
                meta.ended_at = Some(crate::clock::now());
            }
            if let Err(err) = write(recordings, std::mem::take(&mut batch), &meta, due || done) {
                failure = Some(err);
            }
            pending = 0;
            if due || done {
                last_flush = Instant::now();
            }
            shared.lock().dropped = meta.dropped;
        }
        if let Some(reason) = failure.take() {
            tracing::error!(%reason, "recording stopped");
            let mut meta = shared.lock();
            meta.state = RecordingState::Failed(reason);
            meta.ended_at = Some(crate::clock::now());
            // Best effort: the disk that failed may take a small write after all.
            let _ = recordings.put(&meta);
            let _ = recordings.store.db().flush();
            return;
        }
        if done {
            let mut meta = shared.lock();
            if meta.state == RecordingState::Recording {
                meta.state = RecordingState::Complete;
            }
            return;
        }
    }
}

fn write(
    recordings: &Recordings,
    batch: sled::Batch,
    meta: &RecordingMeta,
    flush: bool,
) -> Result<(), String> {
    #[cfg(test)]
    if recordings.disk_full.load(Ordering::Relaxed) {
        return Err("No space left on device (os error 28)".into());
    }
    recordings
        .frames
        .apply_batch(batch)
        .map_err(|err| err.to_string())?;
    recordings
        .meta
        .insert(meta.id.as_bytes(), encode_record(meta))
        .map_err(|err| err.to_string())?;
    if flush {
        recordings
            .store
            .db()
            .flush()
            .map_err(|err| err.to_string())?;
    }
    Ok(())
}
