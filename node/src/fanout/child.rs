//! The child's side of audio streams: listening to a parent (and sending up to it), and a
//! speaker's voice to the host.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use earshot_protocol::RoomId;
use earshot_protocol::audience::wire::{Down, Up};
use earshot_protocol::frame::AudioFrame;
use earshot_protocol::proof::ProofSigner;
use futures::io::{ReadHalf, WriteHalf};
use futures::{AsyncReadExt, AsyncWriteExt};
use libp2p::PeerId;
use tokio::sync::mpsc;
use tracing::{debug, warn};

use super::check::{Authenticity, StreamCheck};
use super::silence::Silence;
use super::wire::{PROOF_MARKER, Read, hello, read_down, write_frame, write_marked};
use super::{
    AUDIO_PROTOCOL, CHILD_QUEUE_FRAMES, FLUSH_AFTER, Fanout, OPEN_TIMEOUT, PARENT_SILENCE,
    SPEAK_RETRIES, StreamError, StreamKind, UPLINK_QUEUE,
};

/// A parent that is leaving, still feeding this node until the guard is dropped (once the node
/// is attached elsewhere).
#[derive(Debug)]
pub struct Draining(tokio::task::JoinHandle<()>);

impl Drop for Draining {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl Fanout {
    /// Receives the room's audio from `parent` and relays it, until the stream fails (the
    /// caller re-attaches elsewhere) or the parent says it is leaving: then the parent's frames
    /// keep coming until the returned guard is dropped, which the caller does once attached
    /// elsewhere. `proof` is the ticket that names this node and `parent`.
    pub async fn listen(
        &self,
        room: RoomId,
        parent: PeerId,
        proof: &[u8],
    ) -> Result<Draining, StreamError> {
        self.listen_after(room, parent, proof, &mut None, || {})
            .await
    }

    /// [`Self::listen`], taking over from a leaving parent that still feeds this node through
    /// `previous`: that stream is dropped once the new parent has sent audio (or a keep-alive),
    /// and kept if the new one fails first. `started` is called when the new parent first sends.
    pub async fn listen_after(
        &self,
        room: RoomId,
        parent: PeerId,
        proof: &[u8],
        previous: &mut Option<Draining>,
        started: impl FnOnce(),
    ) -> Result<Draining, StreamError> {
        let not_started = |err: StreamError| StreamError::NotStarted(err.to_string());
        let mut stream = self.open(parent).await.map_err(not_started)?;
        stream
            .write_all(&hello(StreamKind::Listen, &room, proof))
            .await
            .map_err(|err| not_started(err.into()))?;
        stream
            .flush()
            .await
            .map_err(|err| not_started(err.into()))?;
        let (mut reader, writer) = stream.split();
        let mut writer = Some(writer);
        let mut uplink = None;
        let mut started = Some(started);
        let mut check = StreamCheck::from_parent(room);
        let mut silence = Silence::new(std::time::Instant::now());
        loop {
            let allowance = silence.allowance(std::time::Instant::now());
            let read = tokio::time::timeout(allowance, read_down(&mut reader)).await;
            if self.misbehaving() == Some(super::Misbehave::SlowRead) {
                tokio::time::sleep(super::misbehave::SLOW_READ_PAUSE).await;
            }
            let captured = match &read {
                Ok(Ok(Read::Frame(frame))) => Some(frame.timestamp),
                _ => None,
            };
            self.impaired_delay(captured).await;
            silence.heard(std::time::Instant::now());
            let read = match read {
                Ok(Ok(Read::Refused)) if started.is_some() => return Err(StreamError::Refused),
                Ok(Ok(read)) => read,
                Ok(Err(err)) if started.is_some() => return Err(not_started(err)),
                Err(_) if started.is_some() => return Err(not_started(StreamError::Silent)),
                Ok(Err(err)) => return Err(err),
                Err(_) => return Err(StreamError::Silent),
            };
            // The leaving parent's stream goes once this one carries audio (or says it has
            // none): not at its first control frame, which comes before any audio.
            if matches!(read, Read::Frame(_) | Read::KeepAlive) {
                previous.take();
            }
            if let Some(started) = started.take() {
                if let Some(writer) = writer.take() {
                    uplink = Some(self.uplink(room, writer));
                }
                started();
            }
            match read {
                Read::Leaving => {
                    let fanout = self.clone();
                    // The old parent feeds this node until it is attached elsewhere; what goes
                    // up waits for the new parent.
                    drop(uplink.take());
                    return Ok(Draining(tokio::spawn(async move {
                        fanout.drain(room, reader, check, silence).await;
                    })));
                }
                read => {
                    let view = matches!(read, Read::Control(Down::View(_)));
                    if let Err(err) = self.take(&room, read, &mut check) {
                        self.check_failed(&room);
                        return Err(err);
                    }
                    if view && self.gate.excluded(room, parent) {
                        return Err(StreamError::Excluded);
                    }
                }
            }
        }
    }

    /// Something a parent sent (not its leaving): checked, passed on, played.
    fn take(&self, room: &RoomId, read: Read, check: &mut StreamCheck) -> Result<(), StreamError> {
        let voices = self.voices(*room);
        let checking = voices.is_some();
        let now = std::time::Instant::now();
        match read {
            Read::Frame(frame) => {
                self.count_audio(room, frame.encode().len() + 2);
                let Some(voices) = voices else {
                    return self.heard(room, frame, Authenticity::verified());
                };
                let checked = check.frame(&frame, &voices, now)?;
                self.verified_now(room, &checked.verified);
                if let Some(auth) = checked.pass {
                    self.heard(room, frame, auth)?;
                }
            }
            Read::Proof(proof) => {
                if let Some(voices) = voices {
                    let (pass, checked) = check.proof(&proof, &voices, now)?;
                    self.proven(room, &proof, &checked.verified, pass);
                } else {
                    self.proven(room, &proof, &[], true);
                }
            }
            Read::Beacon(beacon) => {
                let pass = match &voices {
                    Some(voices) => check.beacon(&beacon, room, voices, now)?,
                    None => true,
                };
                if pass {
                    self.pass_beacon(room, &beacon);
                }
            }
            Read::KeepAlive => self.count_audio(room, 2),
            Read::Refused | Read::Leaving => {}
            Read::Control(Down::Mark(n)) => {
                // The parent learns how far behind this stream runs (the mark is its own).
                if let Some(uplink) = self.lock().get(room).and_then(|a| a.uplink.clone()) {
                    let _ = uplink.try_send(Up::Marked(n));
                }
            }
            Read::Control(down) => {
                let bytes = down.encode().len();
                self.came_down(room, down, bytes);
            }
        }
        if checking {
            check.tick(now)?;
        }
        Ok(())
    }

    fn count_audio(&self, room: &RoomId, bytes: usize) {
        if let Some(audio) = self.lock().get(room) {
            audio
                .stats
                .audio_received
                .fetch_add(bytes as u64, Ordering::Relaxed);
        }
    }

    /// Reads a leaving parent's frames until it stops (or the guard is dropped), checking them
    /// as before.
    async fn drain(
        &self,
        room: RoomId,
        mut reader: ReadHalf<libp2p::Stream>,
        mut check: StreamCheck,
        mut silence: Silence,
    ) {
        while let Ok(Ok(read)) = tokio::time::timeout(
            silence.allowance(std::time::Instant::now()),
            read_down(&mut reader),
        )
        .await
        {
            silence.heard(std::time::Instant::now());
            // Its marks are not answered: the uplink is the new parent's now.
            if matches!(read, Read::Control(Down::Mark(_))) {
                continue;
            }
            if let Err(err) = self.take(&room, read, &mut check) {
                debug!(%err, "a leaving parent's stream failed its checks");
                self.check_failed(&room);
                break;
            }
        }
    }

    /// Sends what goes up to the parent, in order, on `writer`: the room's uplink until the
    /// stream ends.
    fn uplink(&self, room: RoomId, mut writer: WriteHalf<libp2p::Stream>) -> UplinkGuard {
        let (tx, mut rx) = mpsc::channel::<Up>(UPLINK_QUEUE);
        let stats = self.lock().get_mut(&room).map(|audio| {
            audio.uplink = Some(tx.clone());
            Arc::clone(&audio.stats)
        });
        let task = tokio::spawn(async move {
            while let Some(up) = rx.recv().await {
                let bytes = up.encode();
                if write_frame(&mut writer, &bytes).await.is_err() {
                    return;
                }
                if let Some(stats) = &stats {
                    stats
                        .control_sent
                        .fetch_add(bytes.len() as u64 + 2, Ordering::Relaxed);
                }
            }
        });
        UplinkGuard {
            fanout: self.clone(),
            room,
            tx,
            task,
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
        let fanout = self.clone();
        let mut signer = self
            .key
            .as_ref()
            .map(|key| ProofSigner::new(key.as_ref().clone(), room));
        // The adversary speaks under the host's id (and signs with its own key).
        let impersonate = (self.misbehaving() == Some(super::Misbehave::Impersonate))
            .then(|| earshot_protocol::PeerKey::from_peer_id(&host).ok())
            .flatten()
            .map(|host| earshot_protocol::frame::SpeakerId::of(&host));
        tokio::spawn(async move {
            // A stream the host dropped (its accept queue overflows when many streams arrive at
            // once) or lost is opened again; only a host that keeps refusing ends the voice.
            let mut failures = 0u32;
            loop {
                // Frames not signed yet are signed after a pause.
                let next = match signer.as_ref().is_some_and(|s| s.pending() > 0) {
                    true => tokio::time::timeout(FLUSH_AFTER, rx.recv()).await,
                    false => Ok(rx.recv().await),
                };
                let (before, frame, after) = match next {
                    Ok(Some(mut frame)) => {
                        if let Some(speaker) = impersonate {
                            frame.speaker = speaker;
                        }
                        // Sealed before it is signed: the proof covers the ciphertext.
                        if !fanout.seal_own(&room, &mut frame) {
                            continue;
                        }
                        let (before, after) = signer
                            .as_mut()
                            .map(|s| s.push_around(&frame))
                            .unwrap_or_default();
                        (before, Some(frame), after)
                    }
                    Ok(None) => break,
                    Err(_) => (signer.as_mut().and_then(ProofSigner::flush), None, None),
                };
                // A batch's proof goes before the next frame, which checkers expect.
                let mut written = Ok(());
                if let Some(proof) = &before {
                    written = write_marked(&mut stream, PROOF_MARKER, &proof.encode()).await;
                }
                if let (Some(frame), Ok(())) = (&frame, &written) {
                    written = write_frame(&mut stream, &frame.encode()).await;
                }
                if let (Some(proof), Ok(())) = (&after, &written) {
                    written = write_marked(&mut stream, PROOF_MARKER, &proof.encode()).await;
                }
                match written {
                    Ok(()) => failures = 0,
                    Err(err) => {
                        debug!(%err, "speaking stream closed; opening it again");
                        failures += 1;
                        if failures > SPEAK_RETRIES {
                            warn!(%err, "the host keeps closing this node's voice stream");
                            break;
                        }
                        match fanout.open_speaking(room, host).await {
                            Ok(reopened) => stream = reopened,
                            Err(err) => debug!(%err, "could not open the speaking stream again"),
                        }
                    }
                }
            }
        });
        Ok(tx)
    }

    /// The adversary's probe: opens `n` listen streams to `peer` with no ticket, at once, and
    /// counts how many it took (sent anything but a refusal) and refused.
    pub async fn probe_unassigned(&self, room: RoomId, peer: PeerId, n: usize) -> (usize, usize) {
        let probes = (0..n).map(|_| async {
            let mut stream = self.open(peer).await.ok()?;
            stream
                .write_all(&hello(StreamKind::Listen, &room, &[]))
                .await
                .ok()?;
            stream.flush().await.ok()?;
            match tokio::time::timeout(PARENT_SILENCE * 4, read_down(&mut stream)).await {
                Ok(Ok(Read::Refused)) | Ok(Err(_)) => Some(false),
                Ok(Ok(_)) => Some(true),
                Err(_) => Some(false),
            }
        });
        let results = futures::future::join_all(probes).await;
        let taken = results.iter().filter(|r| **r == Some(true)).count();
        (taken, n - taken)
    }

    async fn open_speaking(
        &self,
        room: RoomId,
        host: PeerId,
    ) -> Result<libp2p::Stream, StreamError> {
        let mut stream = self.open(host).await?;
        stream
            .write_all(&hello(StreamKind::Speak, &room, &[]))
            .await?;
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
}

/// The uplink to the current parent: when the stream ends, what goes up stops being sent there.
struct UplinkGuard {
    fanout: Fanout,
    room: RoomId,
    tx: mpsc::Sender<Up>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for UplinkGuard {
    fn drop(&mut self) {
        self.task.abort();
        if let Some(audio) = self.fanout.lock().get_mut(&self.room)
            && audio
                .uplink
                .as_ref()
                .is_some_and(|uplink| uplink.same_channel(&self.tx))
        {
            audio.uplink = None;
        }
    }
}
