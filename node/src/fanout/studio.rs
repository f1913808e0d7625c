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
//!   opener's key, and within the stream's byte budget ([`BYTES_PER_SEC`], [`BURST_BYTES`]):
//!   otherwise the chunk is dropped and counted, or the stream closed.
//!
//! ```text
//! stream: room id (16) | (len u32 | StudioChunk::encode)*
//! ```

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use earshot_protocol::frame::AudioFrame;
use earshot_protocol::studio::{MAX_STUDIO_CHUNK_BYTES, STUDIO_FRAMES, StudioChunk};
use earshot_protocol::{PeerKey, RoomId};
use futures::{AsyncReadExt, AsyncWriteExt, StreamExt};
use libp2p::{PeerId, StreamProtocol};
use prometheus_client::metrics::counter::Counter;
use tokio::sync::mpsc;
use tracing::{debug, warn};

use super::{Fanout, HELLO_TIMEOUT, OPEN_TIMEOUT, StreamKind};

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
/// A chunk's frames are signed after this long without a new one (a pause, a mute).
const FLUSH_AFTER: Duration = Duration::from_millis(300);
/// Frames waiting for the chunker (two seconds).
const FEED_FRAMES: usize = 100;
/// How long a speaker that left keeps trying to hand its last chunks over.
const LAST_WORDS: Duration = Duration::from_secs(5);
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
}

/// Where a speaker's chunks go.
enum Destination {
    /// This node is the host: its own recorder.
    Here,
    /// The host, over a studio stream (by the sender task).
    Host(mpsc::Sender<Vec<u8>>),
}

impl Fanout {
    /// Starts this node's studio track in `room`: into its own recording (`host`: `None`, this
    /// node is the host) or sent to `host`. `None` if this node signs nothing (benches).
    pub fn studio_track(&self, room: RoomId, host: Option<PeerId>) -> Option<StudioTrack> {
        let key = self.key.as_ref()?.as_ref().clone();
        let stats = Arc::new(StudioStats::default());
        let (tx, mut rx) = mpsc::channel::<AudioFrame>(FEED_FRAMES);
        let destination = match host {
            None => Destination::Here,
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
                let next = if pending.is_empty() {
                    Ok(rx.recv().await)
                } else {
                    tokio::time::timeout(FLUSH_AFTER, rx.recv()).await
                };
                let closed = matches!(next, Ok(None));
                // A pause (or the end): what is pending is signed now.
                let paused = !matches!(next, Ok(Some(_)));
                if let Ok(Some(mut frame)) = next {
                    // Sealed before it is signed, as the live voice is.
                    if fanout.seal_own(&room, &mut frame) {
                        pending.push(frame);
                    }
                }
                if pending.len() >= STUDIO_FRAMES || (paused && !pending.is_empty()) {
                    match StudioChunk::sign(&key, &room, n, std::mem::take(&mut pending)) {
                        Ok(chunk) => {
                            n = n.wrapping_add(1);
                            counters.chunks.fetch_add(1, Ordering::Relaxed);
                            fanout.deliver(&room, &destination, chunk, &counters);
                        }
                        Err(err) => debug!(%err, "a studio chunk could not be made"),
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
        })
    }

    fn deliver(
        &self,
        room: &RoomId,
        destination: &Destination,
        chunk: StudioChunk,
        stats: &StudioStats,
    ) {
        match destination {
            Destination::Here => {
                if let Some(tap) = self.lock().get(room).and_then(|audio| audio.tap.clone()) {
                    tap.record_studio(chunk);
                    stats.chunks_sent.fetch_add(1, Ordering::Relaxed);
                }
            }
            Destination::Host(queue) => {
                if queue.try_send(chunk.encode()).is_err() {
                    stats.chunks_dropped.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }

    /// The speaker's sender: chunks to the host over a studio stream, opened again (after
    /// [`RETRY_AFTER`]) when it fails. Ends [`LAST_WORDS`] after the track did, at the latest.
    async fn send_studio(
        self,
        room: RoomId,
        host: PeerId,
        mut queued: mpsc::Receiver<Vec<u8>>,
        stats: Arc<StudioStats>,
    ) {
        let mut stream: Option<libp2p::Stream> = None;
        let mut retry_at = Instant::now();
        let mut deadline: Option<tokio::time::Instant> = None;
        let mut backlog: VecDeque<Vec<u8>> = VecDeque::new();
        loop {
            let next = match deadline {
                Some(at) => match tokio::time::timeout_at(at, queued.recv()).await {
                    Ok(next) => next,
                    Err(_) => break,
                },
                None => queued.recv().await,
            };
            match next {
                Some(chunk) => {
                    if backlog.len() >= BACKLOG_CHUNKS {
                        backlog.pop_front();
                        stats.chunks_dropped.fetch_add(1, Ordering::Relaxed);
                    }
                    backlog.push_back(chunk);
                }
                None if deadline.is_none() => {
                    deadline = Some(tokio::time::Instant::now() + LAST_WORDS);
                }
                None => {}
            }
            while let Some(chunk) = backlog.front() {
                if stream.is_none() {
                    if Instant::now() < retry_at {
                        break;
                    }
                    match self.open_studio(room, host).await {
                        Ok(opened) => stream = Some(opened),
                        Err(err) => {
                            debug!(%host, %err, "no studio stream to the host");
                            retry_at = Instant::now() + RETRY_AFTER;
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
                        retry_at = Instant::now() + RETRY_AFTER;
                        break;
                    }
                }
            }
            if deadline.is_some() && backlog.is_empty() {
                break;
            }
            if deadline.is_some() && !backlog.is_empty() && stream.is_none() {
                // Waiting for a retry while the track has ended: try again shortly.
                tokio::time::sleep_until(tokio::time::Instant::from_std(retry_at)).await;
            }
        }
        if let Some(mut stream) = stream {
            let _ = stream.close().await;
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
                    }
                });
            }
        });
    }

    /// One speaker's studio stream, at the host.
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
        let mut budget = ByteBudget::new(Instant::now());
        let mut buffer = Vec::new();
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
            let ok = budget.take(len, Instant::now())
                && self.gate.admit(room, peer, StreamKind::Speak, &[])
                && self.keep_studio(&room, &key, &buffer);
            if ok {
                kept.inc();
            } else {
                refused.inc();
            }
        }
    }

    /// Keeps `bytes` with `room`'s recording if it is a chunk `key` signed for it.
    fn keep_studio(&self, room: &RoomId, key: &PeerKey, bytes: &[u8]) -> bool {
        let Some(tap) = self.lock().get(room).and_then(|audio| audio.tap.clone()) else {
            return false;
        };
        match StudioChunk::decode(bytes) {
            Ok(chunk) if chunk.verify(room, key) => {
                tap.record_studio(chunk);
                true
            }
            Ok(_) => false,
            Err(err) => {
                debug!(%err, "a malformed studio chunk");
                false
            }
        }
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

/// A stream's budget of bytes: [`BYTES_PER_SEC`], at most [`BURST_BYTES`] saved.
struct ByteBudget {
    bytes: f64,
    at: Instant,
}

impl ByteBudget {
    fn new(now: Instant) -> Self {
        Self {
            bytes: BURST_BYTES,
            at: now,
        }
    }

    fn take(&mut self, len: usize, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.bytes = (self.bytes + elapsed * BYTES_PER_SEC).min(BURST_BYTES);
        self.at = now;
        if self.bytes >= len as f64 {
            self.bytes -= len as f64;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_studio_streams_budget_takes_a_burst_then_its_rate() {
        let start = Instant::now();
        let mut budget = ByteBudget::new(start);
        let chunk = 16 * 1024;
        let at_once = (0..100).filter(|_| budget.take(chunk, start)).count();
        assert_eq!(at_once, 16);
        // Ten seconds later: 240,000 bytes more, fourteen chunks.
        let later = start + Duration::from_secs(10);
        let then = (0..100).filter(|_| budget.take(chunk, later)).count();
        assert_eq!(then, 14);
    }
}
