//! The audio plane: Opus frames along the host-rooted relay tree, on `/earshot/audio/1`
//! (libp2p-stream), outside the swarm's event loop.
//!
//! A stream starts with a hello (version, kind, room). A *listen* stream is opened by a child to
//! its parent, which then writes every frame it relays into it. A *speak* stream is opened by a
//! speaker to the host, which reads frames from it. Frames are length-prefixed (`u16`, big
//! endian) [`AudioFrame`]s; an empty frame is a keep-alive. Bytes that are not a frame close
//! that stream with an error, and the node goes on serving everyone else.
//!
//! **Invariant:** a slow child never slows anyone else. Each room's relayed frames go into a
//! `broadcast` channel of [`CHILD_QUEUE_FRAMES`]; each child's writer task reads from it, and a
//! child that falls behind skips the oldest frames (counted) rather than holding the others back.
//!
//! At the host, frames (the host's own voice and the speakers') pass a [`Loudest`] selector:
//! only the loudest few speakers go down the tree. A node leaving gracefully first sends its
//! children a *leaving* marker (a length of `0xFFFF`) and keeps feeding them while they attach
//! elsewhere ([`Fanout::hand_over`]); a child keeps the old stream until the new one is open
//! (the [`Draining`] guard), so a graceful departure costs its subtree no audio.

use std::collections::HashMap;
use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::{Mutex, MutexGuard};

use earshot_protocol::RoomId;
use earshot_protocol::frame::{AudioFrame, MAX_FRAME_BYTES, SpeakerId};
use earshot_protocol::loudest::Loudest;
use futures::{AsyncReadExt, AsyncWriteExt, StreamExt};
use libp2p::{PeerId, StreamProtocol};
use tokio::sync::{broadcast, mpsc, watch};
use tracing::{debug, warn};

/// The audio stream protocol.
pub const AUDIO_PROTOCOL: StreamProtocol = StreamProtocol::new("/earshot/audio/1");
/// Frames queued per child (320 ms): past this, a slow child loses its oldest frames.
pub const CHILD_QUEUE_FRAMES: usize = 16;
/// A parent that sends nothing for this long is gone. A parent writes a frame every 20 ms while
/// audio flows and an empty keep-alive every [`KEEPALIVE`] while it has none (say, while it is
/// itself re-attaching), so this is a dead parent, not a quiet one, and it is noticed in a
/// few missed frames rather than when the connection times out. A false alarm (a parent that
/// was only slow) costs little: the child moves, the parent keeps its other children.
pub const PARENT_SILENCE: std::time::Duration = std::time::Duration::from_millis(150);
/// How long opening an audio stream may take (dialling included).
pub const OPEN_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);
/// How often a parent with nothing to relay tells its children it is still there.
pub const KEEPALIVE: std::time::Duration = std::time::Duration::from_millis(40);
/// Frames received but not yet taken by local playback (1 s).
pub const PLAYBACK_QUEUE_FRAMES: usize = 50;

/// Times in a row a speaker's stream to the host may fail and be opened again.
const SPEAK_RETRIES: u32 = 5;
/// How long a leaving node keeps feeding children that have not moved yet.
pub const HANDOVER_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(1);
/// The length prefix that says "I am leaving: attach elsewhere now" (no frame follows).
const LEAVING_MARKER: u16 = 0xFFFF;

const HELLO_VERSION: u8 = 1;
const HELLO_BYTES: usize = 2 + 16;

/// What a stream is for.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum StreamKind {
    /// The opener receives the room's audio.
    Listen,
    /// The opener sends its voice (to the host).
    Speak,
}

/// Who may open which streams: the node's room state decides.
pub type Admission = Arc<dyn Fn(RoomId, PeerId, StreamKind) -> bool + Send + Sync>;

/// Why a stream failed.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    #[error("could not open an audio stream: {0}")]
    Open(String),
    #[error("audio stream: {0}")]
    Io(#[from] io::Error),
    #[error("bad audio frame: {0}")]
    Frame(#[from] earshot_protocol::frame::FrameError),
    #[error("bad audio stream hello")]
    Hello,
    #[error("not in room {0}")]
    NoRoom(RoomId),
    #[error("the parent went silent")]
    Silent,
    /// The stream failed before the parent sent anything: it refused (it may not know yet that
    /// this node is in the room), or dropped the stream in a burst of new ones. Worth retrying
    /// before calling the parent gone.
    #[error("the parent did not start the stream: {0}")]
    NotStarted(String),
}

/// A frame for local playback, with when it arrived (the jitter buffer measures from then, not
/// from when the player thread got round to it).
#[derive(Debug, Clone)]
pub struct Heard {
    pub frame: AudioFrame,
    pub at: std::time::Instant,
}

/// How a room's audio is handled at this node.
#[derive(Debug, Clone, Copy, Default)]
pub struct FanoutOptions {
    /// This node's own speaker id: its own voice coming back down the tree is not played.
    pub myself: Option<SpeakerId>,
    /// At the host: forward only this many speakers, the loudest (see [`Loudest`]).
    pub forward_loudest: Option<usize>,
}

/// A parent that is leaving, still feeding this node until the guard is dropped (once the node
/// is attached elsewhere).
#[derive(Debug)]
pub struct Draining(tokio::task::JoinHandle<()>);

impl Drop for Draining {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Counters for one room's audio.
#[derive(Debug, Default)]
pub struct FanoutStats {
    pub received: AtomicU64,
    pub relayed: AtomicU64,
    /// Frames a slow child skipped.
    pub dropped: AtomicU64,
    /// Bytes written to children (frames, keep-alives and length prefixes): this node's upload
    /// for the room.
    pub bytes_sent: AtomicU64,
    /// Streams closed for sending garbage.
    pub bad_streams: AtomicU64,
    /// Frames the host did not forward (not among the loudest speakers).
    pub not_selected: AtomicU64,
}

struct RoomAudio {
    fanout: broadcast::Sender<Arc<Vec<u8>>>,
    /// How many children are being fed now.
    children: Arc<watch::Sender<usize>>,
    /// Set when this node leaves: children are told to move.
    leaving: Arc<watch::Sender<bool>>,
    playback: mpsc::Sender<Heard>,
    stats: Arc<FanoutStats>,
    myself: Option<SpeakerId>,
    loudest: Option<Loudest>,
    epoch: std::time::Instant,
    /// When a frame (or keep-alive) last went to the children.
    last_sent: std::time::Instant,
    /// Held while the room is open: its keep-alive task stops when this goes.
    _open: Arc<()>,
    /// A recorder taking what this node forwards (at the host: the room's official recording).
    tap: Option<crate::recording::store::FrameTap>,
}

/// The node's audio plane. Cheap to clone.
#[derive(Clone)]
pub struct Fanout {
    control: libp2p_stream::Control,
    rooms: Arc<Mutex<HashMap<RoomId, RoomAudio>>>,
}

impl std::fmt::Debug for Fanout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Fanout")
    }
}

impl Fanout {
    /// Starts accepting audio streams. `admit` decides who may listen or speak in which room.
    pub fn start(mut control: libp2p_stream::Control, admit: Admission) -> Self {
        let relay = Self {
            control: control.clone(),
            rooms: Arc::new(Mutex::new(HashMap::new())),
        };
        match control.accept(AUDIO_PROTOCOL) {
            Ok(mut incoming) => {
                let relay = relay.clone();
                tokio::spawn(async move {
                    while let Some((peer, stream)) = incoming.next().await {
                        let relay = relay.clone();
                        let admit = Arc::clone(&admit);
                        tokio::spawn(async move {
                            if let Err(err) = relay.serve(peer, stream, admit).await {
                                debug!(%peer, %err, "audio stream closed");
                            }
                        });
                    }
                });
            }
            Err(_) => warn!("audio streams are already being accepted elsewhere"),
        }
        relay
    }

    /// Takes part in a room's audio: frames heard go to the returned receiver (for playback).
    pub fn open_room(&self, room: RoomId) -> (mpsc::Receiver<Heard>, Arc<FanoutStats>) {
        self.open_room_with(room, FanoutOptions::default())
    }

    /// [`Self::open_room`] with options (the host selects the loudest speakers; a speaker does
    /// not play itself).
    pub fn open_room_with(
        &self,
        room: RoomId,
        options: FanoutOptions,
    ) -> (mpsc::Receiver<Heard>, Arc<FanoutStats>) {
        let (fanout, _) = broadcast::channel(CHILD_QUEUE_FRAMES);
        let (playback, heard) = mpsc::channel(PLAYBACK_QUEUE_FRAMES);
        let stats = Arc::new(FanoutStats::default());
        let open = Arc::new(());
        tokio::spawn(self.clone().keep_alive(room, Arc::downgrade(&open)));
        self.lock().insert(
            room,
            RoomAudio {
                fanout,
                children: Arc::new(watch::channel(0).0),
                leaving: Arc::new(watch::channel(false).0),
                playback,
                stats: Arc::clone(&stats),
                myself: options.myself,
                loudest: options.forward_loudest.map(Loudest::new),
                epoch: std::time::Instant::now(),
                last_sent: std::time::Instant::now(),
                _open: open,
                tap: None,
            },
        );
        (heard, stats)
    }

    /// Records what this node forwards in `room` into `tap` (or stops, with `None`).
    pub fn record(&self, room: &RoomId, tap: Option<crate::recording::store::FrameTap>) {
        if let Some(audio) = self.lock().get_mut(room) {
            audio.tap = tap;
        }
    }

    /// While nothing is relayed, an empty frame goes to all the room's children every
    /// [`KEEPALIVE`]: one wake-up per room, not one timer per child.
    async fn keep_alive(self, room: RoomId, open: std::sync::Weak<()>) {
        let mut tick = tokio::time::interval(KEEPALIVE / 2);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if open.upgrade().is_none() {
                return;
            }
            if let Some(audio) = self.lock().get_mut(&room)
                && audio.last_sent.elapsed() >= KEEPALIVE
            {
                let _ = audio.fanout.send(Arc::new(Vec::new()));
                audio.last_sent = std::time::Instant::now();
            }
        }
    }

    /// Leaves gracefully: tells every child of `room` to attach elsewhere and keeps feeding
    /// them until they have (or [`HANDOVER_TIMEOUT`]). Returns how many had not moved.
    pub async fn hand_over(&self, room: &RoomId) -> usize {
        let Some((leaving, children)) = self
            .lock()
            .get(room)
            .map(|audio| (Arc::clone(&audio.leaving), audio.children.subscribe()))
        else {
            return 0;
        };
        leaving.send_replace(true);
        let mut children = children;
        let moved = tokio::time::timeout(HANDOVER_TIMEOUT, children.wait_for(|n| *n == 0))
            .await
            .is_ok();
        if moved { 0 } else { *children.borrow() }
    }

    /// The number of children this node feeds in `room`, as it changes.
    pub fn children(&self, room: &RoomId) -> Option<watch::Receiver<usize>> {
        self.lock()
            .get(room)
            .map(|audio| audio.children.subscribe())
    }

    pub fn close_room(&self, room: &RoomId) {
        self.lock().remove(room);
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<RoomId, RoomAudio>> {
        self.rooms.lock()
    }

    /// Relays one frame of this node's own voice to its children (at the host, if it is among
    /// the loudest).
    pub fn relay(&self, room: &RoomId, frame: &AudioFrame) {
        if let Some(audio) = self.lock().get_mut(room) {
            if !audio.selected(frame) {
                return;
            }
            // No children is fine.
            let _ = audio.fanout.send(Arc::new(frame.encode()));
            audio.last_sent = std::time::Instant::now();
            if let Some(tap) = &audio.tap {
                tap.record(frame);
            }
            audio.stats.relayed.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Receives the room's audio from `parent` and relays it, until the stream fails (the
    /// caller re-attaches elsewhere) or the parent says it is leaving: then the parent's frames
    /// keep coming until the returned guard is dropped, which the caller does once attached
    /// elsewhere.
    pub async fn listen(&self, room: RoomId, parent: PeerId) -> Result<Draining, StreamError> {
        self.listen_after(room, parent, &mut None).await
    }

    /// [`Self::listen`], taking over from a leaving parent that still feeds this node through
    /// `previous`: that stream is dropped once the new parent has sent something (and kept if
    /// the new one fails first).
    pub async fn listen_after(
        &self,
        room: RoomId,
        parent: PeerId,
        previous: &mut Option<Draining>,
    ) -> Result<Draining, StreamError> {
        let not_started = |err: StreamError| StreamError::NotStarted(err.to_string());
        let mut stream = self.open(parent).await.map_err(not_started)?;
        stream
            .write_all(&hello(StreamKind::Listen, &room))
            .await
            .map_err(|err| not_started(err.into()))?;
        stream
            .flush()
            .await
            .map_err(|err| not_started(err.into()))?;
        let mut started = false;
        loop {
            let read = match tokio::time::timeout(PARENT_SILENCE, read_frame(&mut stream)).await {
                Ok(Ok(read)) => read,
                Ok(Err(err)) if !started => return Err(not_started(err)),
                Err(_) if !started => return Err(not_started(StreamError::Silent)),
                Ok(Err(err)) => return Err(err),
                Err(_) => return Err(StreamError::Silent),
            };
            started = true;
            previous.take();
            match read {
                Read::Frame(frame) => self.heard(&room, frame)?,
                Read::KeepAlive => {}
                Read::Leaving => {
                    let relay = self.clone();
                    return Ok(Draining(tokio::spawn(async move {
                        loop {
                            match tokio::time::timeout(PARENT_SILENCE, read_frame(&mut stream))
                                .await
                            {
                                Ok(Ok(Read::Frame(frame))) => {
                                    if relay.heard(&room, frame).is_err() {
                                        break;
                                    }
                                }
                                Ok(Ok(Read::KeepAlive | Read::Leaving)) => {}
                                Ok(Err(_)) | Err(_) => break,
                            }
                        }
                    })));
                }
            }
        }
    }

    /// Sends this node's voice to the host: frames put into the returned sender go out in order.
    /// Local capture must never wait on the network, so the sender is bounded and a full queue
    /// means the frame is dropped by the caller (`try_send`).
    pub async fn speak(
        &self,
        room: RoomId,
        host: PeerId,
    ) -> Result<mpsc::Sender<AudioFrame>, StreamError> {
        let mut stream = self.open_speaking(room, host).await?;
        let (tx, mut rx) = mpsc::channel::<AudioFrame>(CHILD_QUEUE_FRAMES);
        let relay = self.clone();
        tokio::spawn(async move {
            // A stream the host dropped (its accept queue overflows when many streams arrive at
            // once) or lost is opened again; only a host that keeps refusing ends the voice.
            let mut failures = 0u32;
            while let Some(frame) = rx.recv().await {
                match write_frame(&mut stream, &frame.encode()).await {
                    Ok(()) => failures = 0,
                    Err(err) => {
                        debug!(%err, "speaking stream closed; opening it again");
                        failures += 1;
                        if failures > SPEAK_RETRIES {
                            warn!(%err, "the host keeps closing this node's voice stream");
                            break;
                        }
                        match relay.open_speaking(room, host).await {
                            Ok(reopened) => stream = reopened,
                            Err(err) => debug!(%err, "could not open the speaking stream again"),
                        }
                    }
                }
            }
        });
        Ok(tx)
    }

    async fn open_speaking(
        &self,
        room: RoomId,
        host: PeerId,
    ) -> Result<libp2p::Stream, StreamError> {
        let mut stream = self.open(host).await?;
        stream.write_all(&hello(StreamKind::Speak, &room)).await?;
        stream.flush().await?;
        Ok(stream)
    }

    async fn open(&self, peer: PeerId) -> Result<libp2p::Stream, StreamError> {
        tokio::time::timeout(
            OPEN_TIMEOUT,
            self.control.clone().open_stream(peer, AUDIO_PROTOCOL),
        )
        .await
        .map_err(|_| StreamError::Open(format!("no stream to {peer} within {OPEN_TIMEOUT:?}")))?
        .map_err(|err| StreamError::Open(err.to_string()))
    }

    /// A frame arrived (from the tree, or from a speaker at the host): pass it on and play it.
    fn heard(&self, room: &RoomId, frame: AudioFrame) -> Result<(), StreamError> {
        let mut rooms = self.lock();
        let audio = rooms.get_mut(room).ok_or(StreamError::NoRoom(*room))?;
        audio.stats.received.fetch_add(1, Ordering::Relaxed);
        if !audio.selected(&frame) {
            return Ok(());
        }
        let _ = audio.fanout.send(Arc::new(frame.encode()));
        audio.last_sent = std::time::Instant::now();
        audio.stats.relayed.fetch_add(1, Ordering::Relaxed);
        if let Some(tap) = &audio.tap {
            tap.record(&frame);
        }
        if Some(frame.speaker) != audio.myself {
            // Playback that falls behind loses frames here, never blocks the tree.
            let _ = audio.playback.try_send(Heard {
                frame,
                at: std::time::Instant::now(),
            });
        }
        Ok(())
    }

    async fn serve(
        &self,
        peer: PeerId,
        mut stream: libp2p::Stream,
        admit: Admission,
    ) -> Result<(), StreamError> {
        let mut hello_bytes = [0u8; HELLO_BYTES];
        stream.read_exact(&mut hello_bytes).await?;
        let (kind, room) = parse_hello(&hello_bytes).ok_or(StreamError::Hello)?;
        if !admit(room, peer, kind) {
            debug!(%peer, %room, ?kind, "audio stream refused");
            return Ok(());
        }
        match kind {
            StreamKind::Listen => {
                let (mut frames, stats, children, leaving) = {
                    let rooms = self.lock();
                    let audio = rooms.get(&room).ok_or(StreamError::NoRoom(room))?;
                    (
                        audio.fanout.subscribe(),
                        Arc::clone(&audio.stats),
                        Arc::clone(&audio.children),
                        audio.leaving.subscribe(),
                    )
                };
                children.send_modify(|n| *n += 1);
                let _child = ChildGuard(children);
                let mut told = false;
                loop {
                    // A leaving node says so once (within a keep-alive period of deciding to),
                    // then goes on feeding the child until it has moved.
                    if !told && *leaving.borrow() {
                        stream.write_all(&LEAVING_MARKER.to_be_bytes()).await?;
                        stream.flush().await?;
                        told = true;
                    }
                    // Frames, and the room's keep-alives (empty frames) while nothing is relayed.
                    match frames.recv().await {
                        Ok(bytes) => {
                            write_frame(&mut stream, &bytes).await?;
                            stats
                                .bytes_sent
                                .fetch_add(bytes.len() as u64 + 2, Ordering::Relaxed);
                        }
                        Err(broadcast::error::RecvError::Lagged(skipped)) => {
                            stats.dropped.fetch_add(skipped, Ordering::Relaxed);
                        }
                        Err(broadcast::error::RecvError::Closed) => return Ok(()),
                    }
                }
            }
            StreamKind::Speak => loop {
                let frame = match read_frame(&mut stream).await {
                    Ok(Read::Frame(frame)) => frame,
                    Ok(Read::KeepAlive | Read::Leaving) => continue,
                    Err(StreamError::Frame(err)) => {
                        if let Some(audio) = self.lock().get(&room) {
                            audio.stats.bad_streams.fetch_add(1, Ordering::Relaxed);
                        }
                        warn!(%peer, %err, "closed an audio stream that sent garbage");
                        return Err(StreamError::Frame(err));
                    }
                    Err(err) => return Err(err),
                };
                // Checked per frame: a speaker muted or sent off the stage mid-stream is silenced
                // at once (the stream stays, for when they are back).
                if admit(room, peer, StreamKind::Speak) {
                    self.heard(&room, frame)?;
                }
            },
        }
    }
}

impl RoomAudio {
    /// Whether `frame` goes on down the tree (always, except at the host, which forwards only
    /// the loudest speakers).
    fn selected(&mut self, frame: &AudioFrame) -> bool {
        let Some(loudest) = self.loudest.as_mut() else {
            return true;
        };
        let now_ms = u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX);
        let selected = loudest.offer(frame.speaker, frame.level, now_ms);
        if !selected {
            self.stats.not_selected.fetch_add(1, Ordering::Relaxed);
        }
        selected
    }
}

/// Counts a child out when its stream ends, however it ends.
struct ChildGuard(Arc<watch::Sender<usize>>);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        self.0.send_modify(|n| *n = n.saturating_sub(1));
    }
}

fn hello(kind: StreamKind, room: &RoomId) -> [u8; HELLO_BYTES] {
    let mut bytes = [0u8; HELLO_BYTES];
    bytes[0] = HELLO_VERSION;
    bytes[1] = match kind {
        StreamKind::Listen => 0,
        StreamKind::Speak => 1,
    };
    bytes[2..].copy_from_slice(room.as_bytes());
    bytes
}

fn parse_hello(bytes: &[u8; HELLO_BYTES]) -> Option<(StreamKind, RoomId)> {
    if bytes[0] != HELLO_VERSION {
        return None;
    }
    let kind = match bytes[1] {
        0 => StreamKind::Listen,
        1 => StreamKind::Speak,
        _ => return None,
    };
    let mut room = [0u8; 16];
    room.copy_from_slice(&bytes[2..]);
    Some((kind, RoomId(room)))
}

/// What came down a stream.
enum Read {
    Frame(AudioFrame),
    /// An empty frame: the sender is still there.
    KeepAlive,
    /// The sender is leaving.
    Leaving,
}

async fn read_frame(stream: &mut libp2p::Stream) -> Result<Read, StreamError> {
    let mut len = [0u8; 2];
    stream.read_exact(&mut len).await?;
    let len = u16::from_be_bytes(len);
    if len == LEAVING_MARKER {
        return Ok(Read::Leaving);
    }
    let len = usize::from(len);
    if len == 0 {
        return Ok(Read::KeepAlive);
    }
    if len > MAX_FRAME_BYTES {
        return Err(earshot_protocol::frame::FrameError::TooLong { len }.into());
    }
    let mut bytes = vec![0u8; len];
    stream.read_exact(&mut bytes).await?;
    Ok(Read::Frame(AudioFrame::decode(&bytes)?))
}

async fn write_frame(stream: &mut libp2p::Stream, bytes: &[u8]) -> Result<(), StreamError> {
    let len = u16::try_from(bytes.len())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "frame too large"))?;
    stream.write_all(&len.to_be_bytes()).await?;
    stream.write_all(bytes).await?;
    stream.flush().await?;
    Ok(())
}
