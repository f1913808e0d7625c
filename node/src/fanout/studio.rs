//! Studio tracks in the audio plane ([`earshot_protocol::studio`]): a speaker's own voice,
//! encoded a second time at a higher bitrate, cut into signed chunks of a second and sent to
//! the room's recorder (the host) on a stream of its own (`/earshot/studio/1`), behind the room
//! and never in its way; at the host, each chunk checked and kept with the recording.
//!
//! - **The speaker** ([`StudioTrack`]): frames from the source thread (only while the room is
//!   recorded, the speaker is on stage and not muted) are sealed in a private room, chunked,
//!   signed; the host's own go straight into its recorder, a member's into a queue of at most
//!   [`BACKLOG_CHUNKS`] (the oldest dropped and counted) that a sender task writes to the host,
//!   opening the stream again after a failure.
//! - **The host** ([`Fanout::serve_studio`]): a stream must name its room within
//!   [`super::HELLO_TIMEOUT`]; each chunk is at most [`MAX_STUDIO_CHUNK_BYTES`] and must come
//!   within [`IDLE_TIMEOUT`]; the room must be recorded here, and for every chunk the opener
//!   must be a speaker the host hears now (as for its live voice), the chunk signed by the
//!   opener's key, and within the speaker's byte budget for the recording, whatever streams it
//!   opens ([`BYTES_PER_SEC`], [`BURST_BYTES`]): otherwise the chunk is dropped and counted. A
//!   speaker whose stream goes on past its budget by another [`BURST_BYTES`] is cut off the
//!   recording's studio tracks: the stream closed, nothing more kept, its new streams refused
//!   (an honest speaker paces its track under the budget: [`SEND_PER_SEC`]).
//!
//! ```text
//! stream: room id (16) | (len u32 | StudioChunk::encode)*
//! ```

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use earshot_protocol::bucket::Bucket;
use earshot_protocol::frame::AudioFrame;
use earshot_protocol::studio::{MAX_STUDIO_CHUNK_BYTES, STUDIO_FRAMES, StudioChunk};
use earshot_protocol::{PeerKey, RoomId};
use futures::{AsyncReadExt, AsyncWriteExt, StreamExt};
use libp2p::{PeerId, StreamProtocol};
use prometheus_client::metrics::counter::Counter;
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, warn};

use super::{Fanout, HELLO_TIMEOUT, OPEN_TIMEOUT, StreamKind};
use crate::recording::store::FrameTap;

/// The studio stream protocol.
pub const STUDIO_PROTOCOL: StreamProtocol = StreamProtocol::new("/earshot/studio/1");
/// Chunks (seconds) a speaker keeps for the host while the stream is down.
pub const BACKLOG_CHUNKS: usize = 60;
/// A studio stream with nothing more for this long is closed (a speaker who is muted, or off
/// stage, opens another when it speaks again).
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// What a studio stream may send the host, a second: three times a 64 kbit/s track, so that a
/// speaker catches up after its stream was down.
pub const BYTES_PER_SEC: f64 = 24_000.0;
/// ... and at once: half a minute of backlog.
pub const BURST_BYTES: f64 = 256.0 * 1024.0;
/// What a speaker sends the host at most, a second, and at once: under the host's budget
/// ([`BYTES_PER_SEC`], [`BURST_BYTES`]) with room to spare, twice a 64 kbit/s track (a backlog
/// drains as fast as the track grows).
pub const SEND_PER_SEC: f64 = 16_000.0;
pub const SEND_BURST: f64 = 128.0 * 1024.0;
/// A paced sender looks again after this long.
const PACE_WAIT: Duration = Duration::from_millis(250);
/// A chunk's frames are signed after this long without a new one (a pause, a mute).
const FLUSH_AFTER: Duration = Duration::from_millis(300);
/// Frames waiting for the chunker (two seconds).
const FEED_FRAMES: usize = 100;
/// How long a speaker that left keeps trying to hand its last chunks over.
pub const LAST_WORDS: Duration = Duration::from_secs(5);
/// Time to write one chunk before the stream counts as broken.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// After a failed stream, the next attempt waits this long.
const RETRY_AFTER: Duration = Duration::from_secs(2);

/// What became of a speaker's studio track, and of the chunks a host was sent.
#[derive(Debug, Default)]
pub struct StudioStats {
    /// Speaker: chunks made (signed); frames that could not wait for the chunker.
    pub chunks: AtomicU64,
    pub frames_dropped: AtomicU64,
    /// Speaker: chunks the host's stream took; chunks dropped from a full backlog.
    pub chunks_sent: AtomicU64,
    pub chunks_dropped: AtomicU64,
}

/// A speaker's studio track in one room: where the source thread puts its studio frames.
#[derive(Debug)]
pub struct StudioTrack {
    /// Whether the source thread should make studio frames now.
    pub on: Arc<AtomicBool>,
    pub frames: mpsc::Sender<AudioFrame>,
    pub stats: Arc<StudioStats>,
    flushes: mpsc::Sender<oneshot::Sender<()>>,
}

impl StudioTrack {
    /// Signs what is pending now and hands it over; a member's sender writes everything queued
    /// and closes its stream (the host waits for that before it finishes the recording).
    /// Returns once that is done, [`LAST_WORDS`] at most.
    pub async fn flush(&self) {
        let (done, wait) = oneshot::channel();
        if self.flushes.send(done).await.is_ok() {
            let _ = tokio::time::timeout(LAST_WORDS, wait).await;
        }
    }
}

/// Where a speaker's chunks go.
enum Destination {
    /// This node is the host: its own recorder (the latest one the room had: a recording that
    /// is stopping takes the last chunk still).
    Here(Option<FrameTap>),
    /// The host, over a studio stream (by the sender task).
    Host(mpsc::Sender<Queued>),
}

/// What the chunker hands the sender.
enum Queued {
    Chunk(Vec<u8>),
    /// Everything before is written: close the stream, then say so.
    Close(oneshot::Sender<()>),
}

impl Fanout {
    /// Starts this node's studio track in `room`: into its own recording (`host`: `None`, this
    /// node is the host) or sent to `host`. `None` if this node signs nothing (benches).
    pub fn studio_track(&self, room: RoomId, host: Option<PeerId>) -> Option<StudioTrack> {
        let key = self.key.as_ref()?.as_ref().clone();
        let stats = Arc::new(StudioStats::default());
        let (tx, mut rx) = mpsc::channel::<AudioFrame>(FEED_FRAMES);
        let (flushes, mut flush_rx) = mpsc::channel::<oneshot::Sender<()>>(4);
        let mut destination = match host {
            None => Destination::Here(None),
            Some(host) => {
                let (chunks, queued) = mpsc::channel(BACKLOG_CHUNKS);
                tokio::spawn(
                    self.clone()
                        .send_studio(room, host, queued, Arc::clone(&stats)),
                );
                Destination::Host(chunks)
            }
        };
        let fanout = self.clone();
        let counters = Arc::clone(&stats);
        tokio::spawn(async move {
            let mut pending: Vec<AudioFrame> = Vec::with_capacity(STUDIO_FRAMES);
            let mut n = 0u32;
            loop {
                let pause = tokio::time::sleep(if pending.is_empty() {
                    Duration::from_secs(3600)
                } else {
                    FLUSH_AFTER
                });
                let (frame, flush, closed) = tokio::select! {
                    next = rx.recv() => match next {
                        Some(frame) => (Some(frame), None, false),
                        None => (None, None, true),
                    },
                    asked = flush_rx.recv() => (None, asked, false),
                    () = pause => (None, None, false),
                };
                let more = frame.is_some();
                if let Some(mut frame) = frame {
                    // Sealed before it is signed, as the live voice is.
                    if fanout.seal_own(&room, &mut frame) {
                        pending.push(frame);
                    }
                }
                // Signed when a second is full, and at a pause, a flush or the end.
                if pending.len() >= STUDIO_FRAMES || (!more && !pending.is_empty()) {
                    match StudioChunk::sign(&key, &room, n, std::mem::take(&mut pending)) {
                        Ok(chunk) => {
                            n = n.wrapping_add(1);
                            counters.chunks.fetch_add(1, Ordering::Relaxed);
                            fanout.deliver(&room, &mut destination, chunk, &counters);
                        }
                        Err(err) => debug!(%err, "a studio chunk could not be made"),
                    }
                }
                if let Some(done) = flush {
                    match &destination {
                        Destination::Here(_) => {
                            let _ = done.send(());
                        }
                        Destination::Host(queue) => {
                            let _ = queue.send(Queued::Close(done)).await;
                        }
                    }
                }
                if closed {
                    break;
                }
            }
        });
        Some(StudioTrack {
            on: Arc::new(AtomicBool::new(false)),
            frames: tx,
            stats,
            flushes,
        })
    }

    fn deliver(
        &self,
        room: &RoomId,
        destination: &mut Destination,
        chunk: StudioChunk,
        stats: &StudioStats,
    ) {
        match destination {
            Destination::Here(held) => {
                if let Some(tap) = self.recording_tap(room) {
                    *held = Some(tap);
                }
                if held.as_ref().is_some_and(|tap| tap.record_studio(chunk)) {
                    stats.chunks_sent.fetch_add(1, Ordering::Relaxed);
                } else {
                    stats.chunks_dropped.fetch_add(1, Ordering::Relaxed);
                }
            }
            Destination::Host(queue) => {
                if queue.try_send(Queued::Chunk(chunk.encode())).is_err() {
                    stats.chunks_dropped.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }

    /// The recorder taking `room`'s audio here now, if any.
    fn recording_tap(&self, room: &RoomId) -> Option<FrameTap> {
        self.lock().get(room).and_then(|audio| audio.tap.clone())
    }

    /// The speaker's sender: chunks to the host over a studio stream, opened again (after
    /// [`RETRY_AFTER`]) when it fails. Asked to close, it writes what is queued and closes the
    /// stream ([`LAST_WORDS`] at most); it ends as the track does, with the same allowance.
    async fn send_studio(
        self,
        room: RoomId,
        host: PeerId,
        mut queued: mpsc::Receiver<Queued>,
        stats: Arc<StudioStats>,
    ) {
        let mut stream: Option<libp2p::Stream> = None;
        // When to try writing again (after a failed stream, or paced under the host's budget).
        let mut next_try = Instant::now();
        let mut pace = Bucket::new(SEND_PER_SEC, SEND_BURST, Instant::now());
        let mut backlog: VecDeque<Vec<u8>> = VecDeque::new();
        // Asked to close (or the track ended: no one to tell): by when, and whom to tell.
        let mut closing: Option<(tokio::time::Instant, Option<oneshot::Sender<()>>)> = None;
        let mut ended = false;
        loop {
            // Something left to write: wake when it may go, or when closing is due.
            let wake = [
                (!backlog.is_empty()).then(|| tokio::time::Instant::from_std(next_try)),
                closing.as_ref().map(|(by, _)| *by),
            ]
            .into_iter()
            .flatten()
            .min();
            let next = match wake {
                Some(at) => tokio::time::timeout_at(at, queued.recv()).await.ok(),
                None => Some(queued.recv().await),
            };
            match next {
                Some(Some(Queued::Chunk(chunk))) => {
                    if backlog.len() >= BACKLOG_CHUNKS {
                        backlog.pop_front();
                        stats.chunks_dropped.fetch_add(1, Ordering::Relaxed);
                    }
                    backlog.push_back(chunk);
                }
                Some(Some(Queued::Close(done))) => {
                    closing = Some((tokio::time::Instant::now() + LAST_WORDS, Some(done)));
                }
                Some(None) if !ended => {
                    ended = true;
                    closing = Some((tokio::time::Instant::now() + LAST_WORDS, None));
                }
                Some(None) | None => {}
            }
            while let Some(chunk) = backlog.front() {
                if Instant::now() < next_try {
                    break;
                }
                if !pace.take_many(chunk.len() as f64, Instant::now()) {
                    next_try = Instant::now() + PACE_WAIT;
                    break;
                }
                if stream.is_none() {
                    match self.open_studio(room, host).await {
                        Ok(opened) => stream = Some(opened),
                        Err(err) => {
                            debug!(%host, %err, "no studio stream to the host");
                            next_try = Instant::now() + RETRY_AFTER;
                            break;
                        }
                    }
                }
                let Some(open) = stream.as_mut() else {
                    break;
                };
                match tokio::time::timeout(WRITE_TIMEOUT, write_chunk(open, chunk)).await {
                    Ok(Ok(())) => {
                        backlog.pop_front();
                        stats.chunks_sent.fetch_add(1, Ordering::Relaxed);
                    }
                    _ => {
                        stream = None;
                        next_try = Instant::now() + RETRY_AFTER;
                        break;
                    }
                }
            }
            let overdue = closing
                .as_ref()
                .is_some_and(|(by, _)| tokio::time::Instant::now() >= *by);
            if closing.is_some() && (backlog.is_empty() || overdue) {
                if let Some(mut open) = stream.take() {
                    let _ = tokio::time::timeout(WRITE_TIMEOUT, open.close()).await;
                }
                if let Some((_, Some(done))) = closing.take() {
                    let _ = done.send(());
                }
                if ended {
                    return;
                }
            }
        }
    }

    async fn open_studio(&self, room: RoomId, host: PeerId) -> Result<libp2p::Stream, String> {
        let mut stream = tokio::time::timeout(
            OPEN_TIMEOUT,
            self.control.clone().open_stream(host, STUDIO_PROTOCOL),
        )
        .await
        .map_err(|_| format!("no stream within {OPEN_TIMEOUT:?}"))?
        .map_err(|err| err.to_string())?;
        stream
            .write_all(room.as_bytes())
            .await
            .map_err(|err| err.to_string())?;
        Ok(stream)
    }

    /// Accepts studio streams (at every node: only a host recording its room keeps anything).
    /// `kept` and `refused` count the chunks.
    pub fn serve_studio(&self, kept: Counter, refused: Counter) {
        let mut control = self.control.clone();
        let Ok(mut incoming) = control.accept(STUDIO_PROTOCOL) else {
            warn!("studio streams are already being accepted elsewhere");
            return;
        };
        let fanout = self.clone();
        tokio::spawn(async move {
            while let Some((peer, stream)) = incoming.next().await {
                let fanout = fanout.clone();
                let counters = (kept.clone(), refused.clone());
                tokio::spawn(async move {
                    if let Err(err) = fanout.take_studio(peer, stream, &counters).await {
                        debug!(%peer, %err, "studio stream closed");
                        fanout.refused(peer, &err);
                    }
                });
            }
        });
    }

    /// One speaker's studio stream, at the host. The stream is counted open into the recording
    /// it first found ([`FrameTap::studio_stream`]): a recording that stops waits a moment for
    /// the speakers' last chunks.
    async fn take_studio(
        &self,
        peer: PeerId,
        mut stream: libp2p::Stream,
        (kept, refused): &(Counter, Counter),
    ) -> Result<(), String> {
        let key = PeerKey::from_peer_id(&peer).map_err(|err| err.to_string())?;
        let mut room = [0u8; 16];
        tokio::time::timeout(HELLO_TIMEOUT, stream.read_exact(&mut room))
            .await
            .map_err(|_| "no hello".to_owned())?
            .map_err(|err| err.to_string())?;
        let room = RoomId(room);
        // Only while the room is recorded here, and only from a speaker heard now.
        let Some(mut tap) = self.recording_tap(&room) else {
            return Err("nothing recorded here".into());
        };
        if !self.gate.admit(room, peer, StreamKind::Speak, &[]) {
            return Err("not a speaker heard here".into());
        }
        if tap.studio_cut_off(&key) {
            return Err("cut off for flooding".into());
        }
        let mut _open = tap.studio_stream();
        let mut buffer = Vec::new();
        // Bytes refused over the speaker's budget on this stream.
        let mut over = 0usize;
        loop {
            let mut len = [0u8; 4];
            match tokio::time::timeout(IDLE_TIMEOUT, stream.read_exact(&mut len)).await {
                Ok(Ok(())) => {}
                Ok(Err(err)) if err.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(()),
                Ok(Err(err)) => return Err(err.to_string()),
                Err(_) => return Ok(()),
            }
            let len = u32::from_be_bytes(len) as usize;
            if len > MAX_STUDIO_CHUNK_BYTES {
                return Err(format!("a studio chunk of {len} bytes"));
            }
            buffer.resize(len, 0);
            tokio::time::timeout(IDLE_TIMEOUT, stream.read_exact(&mut buffer))
                .await
                .map_err(|_| "a chunk cut off".to_owned())?
                .map_err(|err| err.to_string())?;
            // A recording started again since: this stream goes into the new one.
            if let Some(now) = self.recording_tap(&room)
                && !now.same(&tap)
            {
                tap = now;
                _open = tap.studio_stream();
            }
            // The speaker must still be heard (a speaker muted since is refused), unless the
            // recording is stopping (its last chunks).
            let heard = self.recording_tap(&room).is_none()
                || self.gate.admit(room, peer, StreamKind::Speak, &[]);
            let budget = (BYTES_PER_SEC, BURST_BYTES);
            let within = tap.studio_budget(key, len, budget, Instant::now());
            if !within {
                over += len;
                if over as f64 > BURST_BYTES {
                    refused.inc();
                    tap.cut_off_studio(key);
                    self.caught(peer, "a studio stream far over its budget");
                    return Err("a studio stream far over its budget: cut off".into());
                }
            }
            let ok = within
                && heard
                && match StudioChunk::decode(&buffer) {
                    Ok(chunk) if chunk.verify(&room, &key) => tap.record_studio(chunk),
                    Ok(_) => {
                        self.refused(peer, "a studio chunk it did not sign");
                        false
                    }
                    Err(err) => {
                        debug!(%peer, %err, "a malformed studio chunk");
                        self.refused(peer, "a malformed studio chunk");
                        false
                    }
                };
            if ok {
                kept.inc();
            } else {
                refused.inc();
            }
        }
    }
}

impl Fanout {
    /// The adversary (`--misbehave studio-flood`): writes chunks of a hundred 300-byte frames
    /// into studio streams to `host` at `rate` bytes a second for `flood_for`, its own (validly
    /// signed) and every tenth under the host's speaker id, opening another stream whenever the
    /// host closes one; returns the chunks written, the impostors among them, the bytes and
    /// the streams opened.
    pub async fn flood_studio(
        &self,
        room: RoomId,
        host: PeerId,
        flood_for: Duration,
        rate: f64,
    ) -> (u64, u64, u64, u64) {
        let (Some(key), Ok(host_key)) = (self.key.as_ref(), PeerKey::from_peer_id(&host)) else {
            return (0, 0, 0, 0);
        };
        let start = Instant::now();
        let mut streams = 0u64;
        // The host may not hear this node yet (its admission still on the way): again, until
        // the flood's time is up.
        let mut stream = loop {
            if start.elapsed() >= flood_for {
                return (0, 0, 0, streams);
            }
            if let Ok(stream) = self.open_studio(room, host).await {
                break stream;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        streams += 1;
        let me = earshot_protocol::frame::SpeakerId::of(&PeerKey::from(key.as_ref()));
        let (mut written, mut impostors, mut bytes) = (0u64, 0u64, 0u64);
        while start.elapsed() < flood_for {
            let ahead = bytes as f64 / rate - start.elapsed().as_secs_f64();
            if ahead > 0.0 {
                tokio::time::sleep(Duration::from_secs_f64(ahead)).await;
            }
            let now = crate::audio::media_now();
            let frames = (0..100u32)
                .map(|i| AudioFrame {
                    speaker: me,
                    seq: i,
                    timestamp: now.wrapping_add(i * 960),
                    level: 0,
                    flags: 1,
                    payload: vec![0xF8; 300],
                    tag: None,
                })
                .collect();
            let Ok(mut chunk) = StudioChunk::sign(key, &room, written as u32, frames) else {
                break;
            };
            let impostor = written % 10 == 9;
            if impostor {
                chunk.speaker = earshot_protocol::frame::SpeakerId::of(&host_key);
                for frame in &mut chunk.frames {
                    frame.speaker = chunk.speaker;
                }
            }
            let encoded = chunk.encode();
            match tokio::time::timeout(WRITE_TIMEOUT, write_chunk(&mut stream, &encoded)).await {
                Ok(Ok(())) => {
                    written += 1;
                    impostors += u64::from(impostor);
                    bytes += encoded.len() as u64 + 4;
                }
                _ => loop {
                    if start.elapsed() >= flood_for {
                        break;
                    }
                    if let Ok(again) = self.open_studio(room, host).await {
                        stream = again;
                        streams += 1;
                        break;
                    }
                    // Refused: again a moment later.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                },
            }
        }
        (written, impostors, bytes, streams)
    }
}

async fn write_chunk(stream: &mut libp2p::Stream, chunk: &[u8]) -> std::io::Result<()> {
    // A chunk is at most MAX_STUDIO_CHUNK_BYTES.
    stream
        .write_all(&(chunk.len() as u32).to_be_bytes())
        .await?;
    stream.write_all(chunk).await?;
    stream.flush().await
}
