//! The parent's (and the host's) side of audio streams: a child's listen stream, fed with every
//! frame relayed here and read for what the child sends up; a speaker's voice, at the host.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use earshot_protocol::RoomId;
use earshot_protocol::frame::SpeakerId;
use futures::AsyncReadExt;
use libp2p::PeerId;
use tokio::sync::{broadcast, mpsc, watch};
use tracing::{debug, warn};

use super::check::StreamCheck;
use super::stats::ChildCounters;
use super::wire::{
    BEACON_MARKER, CONTROL_MARKER, PROOF_MARKER, Voice, put_frame, put_marked, read_hello, read_up,
    read_voice, write_control, write_leaving, write_refused,
};
use super::{Fanout, HANDOVER_TIMEOUT, Outgoing, StreamError, StreamKind, UPLINK_QUEUE};

/// What goes to one child alone.
#[derive(Debug, Clone)]
pub(super) enum ToChild {
    /// A control frame (a notice routed to it, its path when it opens).
    Control(Arc<Vec<u8>>),
    /// It is shed (this node's uplink cannot carry it, or it reads too slowly): it is told to
    /// move, as when this node leaves, and fed until it has (at most [`HANDOVER_TIMEOUT`]).
    Move,
}

/// How long an audio stream may take to say what it is for.
pub const HELLO_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

impl Fanout {
    /// Where streams refused for what their peer did are told: a peer refused too often, or
    /// caught flooding, is disconnected and kept out (see [`crate::net::conduct`]).
    pub fn set_conduct(&self, conduct: crate::net::conduct::Conduct) {
        let _ = self.conduct.set(conduct);
    }

    /// A stream of `peer`'s refused for what it did.
    pub(super) fn refused(&self, peer: PeerId, why: &str) {
        if let Some(conduct) = self.conduct.get() {
            conduct.refused(peer, why);
        }
    }

    /// `peer` caught flooding.
    pub(super) fn caught(&self, peer: PeerId, why: &str) {
        if let Some(conduct) = self.conduct.get() {
            conduct.block(peer, why);
        }
    }

    pub(super) async fn serve(
        &self,
        peer: PeerId,
        mut stream: libp2p::Stream,
    ) -> Result<(), StreamError> {
        // A stream that does not say what it is for within HELLO_TIMEOUT is closed (a stranger
        // opening streams that say nothing holds nothing for long).
        let hello = tokio::time::timeout(HELLO_TIMEOUT, read_hello(&mut stream))
            .await
            .map_err(|_| StreamError::Hello)
            .and_then(|hello| hello);
        let (kind, room, proof) = match hello {
            Ok(hello) => hello,
            Err(err) => {
                self.refused(peer, &err.to_string());
                return Err(err);
            }
        };
        if !self.gate.admit(room, peer, kind, &proof) {
            debug!(%peer, %room, ?kind, "audio stream refused");
            self.refused(peer, "an audio stream it may not open");
            // A child asks elsewhere at once rather than trying again.
            if kind == StreamKind::Listen {
                let _ = write_refused(&mut stream).await;
            }
            return Ok(());
        }
        match kind {
            StreamKind::Listen => {
                let result = self.feed(room, peer, stream).await;
                // One stream per child: a stream the child opened since replaced this one (and
                // the child is still a child).
                let replaced = self
                    .lock()
                    .get(&room)
                    .is_some_and(|audio| audio.to_child.contains_key(&peer));
                if !replaced {
                    self.gate.child_closed(room, peer);
                }
                result
            }
            StreamKind::Speak => self.take_voice(room, peer, stream).await,
        }
    }

    /// Feeds a child: every frame relayed here, control frames for everyone or for it alone;
    /// reads what it sends up meanwhile.
    async fn feed(
        &self,
        room: RoomId,
        peer: PeerId,
        stream: libp2p::Stream,
    ) -> Result<(), StreamError> {
        let (to_child, mut for_child) = mpsc::channel(UPLINK_QUEUE);
        let stream_id;
        let (mut frames, stats, children, leaving) = {
            let mut rooms = self.lock();
            let audio = rooms.get_mut(&room).ok_or(StreamError::NoRoom(room))?;
            audio.streams_opened += 1;
            stream_id = audio.streams_opened;
            // A stream the child had already ends (its channel closes with the old sender).
            audio.to_child.insert(peer, (stream_id, to_child.clone()));
            (
                audio.fanout.subscribe(),
                Arc::clone(&audio.stats),
                Arc::clone(&audio.children),
                audio.leaving.subscribe(),
            )
        };
        children.send_modify(|n| *n += 1);
        let counters = Arc::new(ChildCounters::default());
        stats
            .children
            .lock()
            .insert((peer, stream_id), Arc::clone(&counters));
        let _child = ChildGuard {
            counters: Arc::clone(&counters),
            children,
            fanout: self.clone(),
            room,
            peer,
            stream_id,
        };
        for first in self.gate.first(room) {
            let _ = to_child.try_send(ToChild::Control(Arc::new(first.encode())));
        }
        // The stream ends when this child's channel closes (it was cut off): only the map and
        // the upward reader hold senders, and the reader's is weak.
        let reply = to_child.downgrade();
        drop(to_child);
        let (mut reader, mut writer) = stream.split();
        let gate = Arc::clone(&self.gate);
        let capture = self.capture.get().cloned();
        let heard = Arc::clone(&counters);
        let conduct = Arc::clone(&self.conduct);
        let upward = tokio::spawn(async move {
            loop {
                match read_up(&mut reader).await {
                    Ok(earshot_protocol::audience::wire::Up::Marked(n)) => {
                        heard.mark_read(n, std::time::Instant::now());
                    }
                    Ok(up) => {
                        if let Some(capture) = &capture {
                            capture.record(super::misbehave::CAPTURED_UP, &up.encode());
                        }
                        if let Some(back) = gate.up(room, peer, up)
                            && let Some(reply) = reply.upgrade()
                        {
                            let _ = reply.try_send(ToChild::Control(Arc::new(back.encode())));
                        }
                    }
                    Err(StreamError::Control(err)) => {
                        warn!(%peer, %err, "closed a listen stream that sent garbage up");
                        if let Some(conduct) = conduct.get() {
                            conduct.refused(peer, "garbage up a listen stream");
                        }
                        return;
                    }
                    Err(_) => return,
                }
            }
        });
        let mut told = false;
        let mut marks = Marks::default();
        // Shed: told to move, and fed until then at most.
        let mut moving: Option<tokio::time::Instant> = None;
        let result = loop {
            // A leaving node says so once (within a keep-alive period of deciding to), then
            // goes on feeding the child until it has moved.
            if !told && (*leaving.borrow() || moving.is_some()) {
                counters.released.store(true, Ordering::Relaxed);
                if let Err(err) = write_leaving(&mut writer).await {
                    break Err(err);
                }
                told = true;
            }
            let deadline = moving.unwrap_or_else(|| tokio::time::Instant::now() + HANDOVER_TIMEOUT);
            let written = tokio::select! {
                biased;
                own = for_child.recv() => match own {
                    Some(ToChild::Control(bytes)) => {
                        write_control(&mut writer, &bytes).await.map(|()| bytes.len() + 4)
                    }
                    Some(ToChild::Move) => {
                        counters.released.store(true, Ordering::Relaxed);
                        moving.get_or_insert(tokio::time::Instant::now() + HANDOVER_TIMEOUT);
                        Ok(0)
                    }
                    None => break Ok(()),
                },
                frame = frames.recv() => match frame {
                    Ok(out) => {
                        let batch = Batch { stats: &stats, counters: &counters, marks: &mut marks };
                        put_batch(&mut writer, out, &mut frames, batch).await
                    }
                    Err(broadcast::error::RecvError::Lagged(skipped)) => {
                        stats.dropped.fetch_add(skipped, Ordering::Relaxed);
                        counters.dropped.fetch_add(skipped, Ordering::Relaxed);
                        Ok(0)
                    }
                    Err(broadcast::error::RecvError::Closed) => break Ok(()),
                },
                _ = leaving_changed(&leaving), if !told => Ok(0),
                _ = tokio::time::sleep_until(deadline), if moving.is_some() => break Ok(()),
            };
            match written {
                Ok(0) => {}
                Ok(bytes) => {
                    stats.bytes_sent.fetch_add(bytes as u64, Ordering::Relaxed);
                    counters.bytes.fetch_add(bytes as u64, Ordering::Relaxed);
                    counters.packets.fetch_add(1, Ordering::Relaxed);
                }
                Err(err) => break Err(err),
            }
            if upward.is_finished() {
                break Ok(());
            }
        };
        upward.abort();
        result
    }

    /// The host takes a speaker's voice, frame by frame, while the speaker may speak: only
    /// frames of the stream's own speaker, each checked against the speaker's proofs (passed on
    /// at once, recorded once verified).
    async fn take_voice(
        &self,
        room: RoomId,
        peer: PeerId,
        mut stream: libp2p::Stream,
    ) -> Result<(), StreamError> {
        let speaker =
            earshot_protocol::PeerKey::from_peer_id(&peer).map_err(|_| StreamError::Hello)?;
        let mut check = StreamCheck::from_speaker(room, SpeakerId::of(&speaker));
        // The speaker's own key proves its frames, whatever the stage says a moment later.
        let voices = super::Voices::of(speaker, []);
        loop {
            let read = match read_voice(&mut stream).await {
                Ok(read) => read,
                Err(StreamError::Frame(err)) => {
                    if let Some(audio) = self.lock().get(&room) {
                        audio.stats.bad_streams.fetch_add(1, Ordering::Relaxed);
                    }
                    warn!(%peer, %err, "closed an audio stream that sent garbage");
                    return Err(StreamError::Frame(err));
                }
                Err(err) => return Err(err),
            };
            let now = std::time::Instant::now();
            // A plane that checks nothing (benches of the plane alone) takes frames as they are.
            let checking = self.voices(room).is_some();
            let checked = match read {
                Voice::KeepAlive => Ok(()),
                Voice::Frame(frame) if !checking => {
                    if self.gate.admit(room, peer, StreamKind::Speak, &[]) {
                        self.heard(&room, frame, super::Authenticity::verified())
                    } else {
                        Ok(())
                    }
                }
                Voice::Proof(proof) if !checking => {
                    self.proven(&room, &proof, &[], true);
                    Ok(())
                }
                Voice::Frame(frame) => {
                    // Checked per frame: a speaker muted or sent off the stage mid-stream is
                    // silenced at once (the stream stays, for when they are back).
                    if self.gate.admit(room, peer, StreamKind::Speak, &[]) {
                        check.frame(&frame, &voices, now).and_then(|checked| {
                            self.verified_now(&room, &checked.verified);
                            match checked.pass {
                                Some(auth) => self.heard(&room, frame, auth),
                                None => Ok(()),
                            }
                        })
                    } else {
                        Ok(())
                    }
                }
                Voice::Proof(proof) => check.proof(&proof, &voices, now).map(|(pass, checked)| {
                    self.proven(&room, &proof, &checked.verified, pass);
                }),
            }
            .and_then(|()| check.tick(now));
            if let Err(err) = checked {
                self.check_failed(&room);
                warn!(%peer, %err, "closed a speaker's stream that failed its checks");
                return Err(err);
            }
        }
    }
}

/// Frames (and proofs, beacons, control frames) written together before one flush, at most.
const BATCH: usize = 16;

/// When one child stream's last mark (`Down::Mark`) went.
#[derive(Default)]
struct Marks {
    at: Option<std::time::Instant>,
}

impl Marks {
    /// The next mark, if one is due now (see [`super::stats::MARK_EVERY`]): a random number, so
    /// that a child can answer only marks it has read (one acking marks ahead would hide how far
    /// behind it runs, and pass for a child fed cleanly).
    fn due(&mut self, now: std::time::Instant) -> Option<u32> {
        if self
            .at
            .is_some_and(|at| now.saturating_duration_since(at) < super::stats::MARK_EVERY)
        {
            return None;
        }
        self.at = Some(now);
        Some(rand::random())
    }
}

/// What a batch counts into, and the stream's marks.
struct Batch<'a> {
    stats: &'a super::FanoutStats,
    counters: &'a ChildCounters,
    marks: &'a mut Marks,
}

/// Writes `first` and whatever else is queued for the child already (a proof right behind its
/// frame, say), and this node's mark when one is due, with one flush: fewer packets, less CPU
/// per forwarded frame. Returns the bytes.
async fn put_batch<W: futures::AsyncWrite + Unpin>(
    writer: &mut W,
    first: Outgoing,
    frames: &mut broadcast::Receiver<Outgoing>,
    batch: Batch<'_>,
) -> Result<usize, StreamError> {
    use futures::AsyncWriteExt;
    let Batch {
        stats,
        counters,
        marks,
    } = batch;
    let mut bytes = put_counted(writer, &first, counters).await?;
    for _ in 1..BATCH {
        match frames.try_recv() {
            Ok(out) => bytes += put_counted(writer, &out, counters).await?,
            Err(broadcast::error::TryRecvError::Lagged(skipped)) => {
                stats.dropped.fetch_add(skipped, Ordering::Relaxed);
                counters.dropped.fetch_add(skipped, Ordering::Relaxed);
            }
            Err(_) => break,
        }
    }
    let now = std::time::Instant::now();
    if let Some(n) = marks.due(now) {
        let mark = earshot_protocol::audience::wire::Down::Mark(n).encode();
        write_control(writer, &mark).await?;
        bytes += mark.len() + 4;
        counters.mark_written(n, now);
    }
    writer.flush().await?;
    Ok(bytes)
}

/// [`put_one`], noting when the child was first fed (see [`ChildCounters::ended`]).
async fn put_counted<W: futures::AsyncWrite + Unpin>(
    writer: &mut W,
    out: &Outgoing,
    counters: &ChildCounters,
) -> Result<usize, StreamError> {
    let bytes = put_one(writer, out).await?;
    if let Outgoing::Audio(_) = out {
        counters.fed(std::time::Instant::now());
    }
    Ok(bytes)
}

impl Outgoing {
    /// Its size as [`put_one`] writes it.
    pub(super) fn wire_len(&self) -> usize {
        match self {
            Outgoing::Audio(bytes) => bytes.len() + 2,
            Outgoing::KeepAlive => 2,
            Outgoing::Control(bytes) | Outgoing::Proof(bytes) | Outgoing::Beacon(bytes) => {
                bytes.len() + 4
            }
        }
    }
}

async fn put_one<W: futures::AsyncWrite + Unpin>(
    writer: &mut W,
    out: &Outgoing,
) -> Result<usize, StreamError> {
    match out {
        Outgoing::Audio(bytes) => put_frame(writer, bytes).await.map(|()| bytes.len() + 2),
        Outgoing::KeepAlive => put_frame(writer, &[]).await.map(|()| 2),
        Outgoing::Control(bytes) => put_marked(writer, CONTROL_MARKER, bytes)
            .await
            .map(|()| bytes.len() + 4),
        Outgoing::Proof(bytes) => put_marked(writer, PROOF_MARKER, bytes)
            .await
            .map(|()| bytes.len() + 4),
        Outgoing::Beacon(bytes) => put_marked(writer, BEACON_MARKER, bytes)
            .await
            .map(|()| bytes.len() + 4),
    }
}

/// Resolves when the room's leaving flag changes (so a waiting writer says "leaving" at once).
async fn leaving_changed(leaving: &watch::Receiver<bool>) {
    let mut leaving = leaving.clone();
    let _ = leaving.changed().await;
}

/// Counts a child out when its stream ends, however it ends, and forgets its own channel.
struct ChildGuard {
    counters: Arc<ChildCounters>,
    children: Arc<watch::Sender<usize>>,
    fanout: Fanout,
    room: RoomId,
    peer: PeerId,
    /// This stream's number: a newer stream of the same child is not forgotten with it.
    stream_id: u64,
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        self.children.send_modify(|n| *n = n.saturating_sub(1));
        if let Some(audio) = self.fanout.lock().get_mut(&self.room) {
            let mut counted = audio.stats.children.lock();
            let key = (self.peer, self.stream_id);
            if !self.counters.ended(std::time::Instant::now(), &self.peer) {
                counted.remove(&key);
            }
        }
        if let Some(audio) = self.fanout.lock().get_mut(&self.room)
            && audio
                .to_child
                .get(&self.peer)
                .is_some_and(|(id, _)| *id == self.stream_id)
        {
            audio.to_child.remove(&self.peer);
        }
    }
}

impl Fanout {
    /// Sheds `children` of `room` (see [`ToChild::Move`]): each is told to move, and fed until
    /// it has, or for [`HANDOVER_TIMEOUT`].
    pub(super) fn shed(&self, room: &RoomId, children: &[PeerId]) {
        if children.is_empty() {
            return;
        }
        if let Some(audio) = self.lock().get(room) {
            for child in children {
                if let Some((_, tx)) = audio.to_child.get(child) {
                    debug!(%child, %room, "shedding a child: this node's uplink cannot carry it");
                    let _ = tx.try_send(ToChild::Move);
                }
            }
        }
    }
}
