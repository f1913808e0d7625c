//! The audio plane: Opus frames along the host-rooted relay tree, on `/earshot/audio/2`
//! (libp2p-stream), outside the swarm's event loop, and with them what the audience tier sends
//! along the tree (views and relayed envelopes down, reports and actions up).
//!
//! A *listen* stream is opened by a child to its parent, presenting its ticket in the hello; the
//! parent writes every frame it relays into it and reads the child's reports and actions from it.
//! A *speak* stream is opened by a speaker to the host, which reads frames from it. Bytes that
//! are not a frame close that stream with an error, and the node goes on serving everyone else.
//! Who may open which stream, and what becomes of what travels along the tree besides audio, the
//! node decides through its [`Gate`] (`node::tree::Tree`); [`Open`] lets everyone in, for
//! benches.
//!
//! **Invariant:** a slow child never slows anyone else. Each room's relayed frames go into a
//! `broadcast` channel of [`CHILD_QUEUE_FRAMES`]; each child's writer task reads from it, and a
//! child that falls behind skips the oldest frames (counted) rather than holding the others back.
//!
//! At the host, frames (the host's own voice and the speakers') pass a [`Loudest`] selector:
//! only the loudest few speakers go down the tree. A node leaving gracefully first sends its
//! children a *leaving* marker and keeps feeding them while they attach elsewhere
//! ([`Fanout::hand_over`]); a child keeps the old stream until the new one is open (the
//! [`Draining`] guard), so a graceful departure costs its subtree no audio.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use earshot_protocol::RoomId;
use earshot_protocol::audience::wire::{Down, Up};
use earshot_protocol::frame::{AudioFrame, SpeakerId};
use earshot_protocol::loudest::Loudest;
use earshot_protocol::proof::progress::{BEACON_INTERVAL_MS, MAX_BEACON_VOICES, Progress};
use earshot_protocol::proof::{FrameProof, ProofSigner};
use futures::StreamExt;
use libp2p::{PeerId, StreamProtocol};
use parking_lot::{Mutex, MutexGuard};
use tokio::sync::{broadcast, mpsc, watch};
use tracing::{debug, warn};

pub mod check;
mod child;
pub mod impair;
pub mod misbehave;
mod parent;
mod sealing;
mod stats;
pub use stats::{ChildStream, FanoutStats};
pub mod silence;
pub mod studio;
pub mod wire;

pub use check::{Authenticity, Voices};
pub use child::Draining;
pub use misbehave::Misbehave;
pub use parent::HELLO_TIMEOUT;
pub use wire::StreamError;

/// The audio stream protocol. Version 2 since parents put marks of their own into their
/// children's streams (`Down::Mark`, answered `Up::Marked`): a node of version 1 would take
/// either for garbage and close the stream (a parent of version 1 would also disconnect the
/// child), so the two do not open audio streams to each other at all.
pub const AUDIO_PROTOCOL: StreamProtocol = StreamProtocol::new("/earshot/audio/2");
/// Frames queued per child (320 ms): past this, a slow child loses its oldest frames.
pub const CHILD_QUEUE_FRAMES: usize = 16;
/// A parent that sends nothing for this long, on a steady path, is gone. A parent writes a frame
/// every 20 ms while audio flows and an empty keep-alive every [`KEEPALIVE`] while it has none
/// (say, while it is itself re-attaching), so this is a dead parent, not a quiet one, and it is
/// noticed in a few missed frames rather than when the connection times out. On a path whose
/// gaps have been longer lately (loss resent late), the allowance grows with them
/// ([`silence::Silence`], at most a second). A false alarm (a parent that was only slow) costs
/// little: the child moves, the parent keeps its other children.
pub const PARENT_SILENCE: std::time::Duration = std::time::Duration::from_millis(150);
/// How long opening an audio stream may take (dialling included).
pub const OPEN_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);
/// How often a parent with nothing to relay tells its children it is still there.
pub const KEEPALIVE: std::time::Duration = std::time::Duration::from_millis(40);
/// Frames received but not yet taken by local playback (1 s).
pub const PLAYBACK_QUEUE_FRAMES: usize = 50;
/// How long a leaving node keeps feeding children that have not moved yet.
pub const HANDOVER_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(1);
/// Frames waiting to go up to the parent, and control frames waiting for one child.
const UPLINK_QUEUE: usize = 64;
/// Times in a row a speaker's stream to the host may fail and be opened again.
const SPEAK_RETRIES: u32 = 5;
/// A speaker with frames not yet signed signs them after this long without a new one (a pause).
const FLUSH_AFTER: std::time::Duration = std::time::Duration::from_millis(30);

/// What a stream is for.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum StreamKind {
    /// The opener receives the room's audio.
    Listen,
    /// The opener sends its voice (to the host).
    Speak,
}

/// Where something that came down from the parent goes next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pass {
    /// To every child.
    All(Down),
    /// To this one child.
    Child(PeerId, Down),
    Nobody,
}

/// The node's side of the audio plane: who may open which stream, and what becomes of what
/// travels along the tree besides audio. Called from the plane's tasks: short, never waits.
pub trait Gate: Send + Sync + 'static {
    /// Whether `peer` may open a `kind` stream in `room`, presenting `proof` (a listen stream's
    /// ticket). An admitted listen stream makes `peer` a child until [`Gate::child_closed`].
    /// Asked again for every frame of a speak stream (a speaker muted mid-stream is silenced).
    fn admit(&self, room: RoomId, peer: PeerId, kind: StreamKind, proof: &[u8]) -> bool;
    /// An admitted listen stream ended.
    fn child_closed(&self, _room: RoomId, _child: PeerId) {}
    /// A child sent something up: what to tell that child back, if anything (why its action
    /// was refused).
    fn up(&self, _room: RoomId, _child: PeerId, _up: Up) -> Option<Down> {
        None
    }
    /// Something came down from the parent: what to pass on.
    fn down(&self, _room: RoomId, down: Down) -> Pass {
        Pass::All(down)
    }
    /// What a child that just opened its stream is told first (its path, the latest view).
    fn first(&self, _room: RoomId) -> Vec<Down> {
        Vec::new()
    }
    /// What to send up to the parent now (reports, actions): asked every few milliseconds,
    /// `attached` or not (unattached, what would go up waits). `stats`: the room's audio
    /// counters (how this node's own playout goes).
    fn upstream(&self, _room: RoomId, _attached: bool, _stats: &FanoutStats) -> Vec<Up> {
        Vec::new()
    }
    /// Children to shed now, asked after [`Gate::upstream`] (see `audience::uplink`).
    fn shed(&self, _room: RoomId) -> Vec<PeerId> {
        Vec::new()
    }
    /// Children to cut off now (removed from the room, by the view that just came down).
    fn evicted(&self, _room: RoomId) -> Vec<PeerId> {
        Vec::new()
    }
    /// Whether the host took `peer` out of `room`'s relay tree (its children leave it).
    fn excluded(&self, _room: RoomId, _peer: PeerId) -> bool {
        false
    }
    /// Who may be heard in `room`: the host and the stage's keys. `None`: frames are not
    /// checked (benches of the plane alone).
    fn voices(&self, _room: RoomId) -> Option<Arc<Voices>> {
        None
    }
}

/// Lets everyone open any stream and passes everything on: for benches and tests of the plane
/// alone.
#[derive(Debug, Clone, Copy, Default)]
pub struct Open;

impl Gate for Open {
    fn admit(&self, _: RoomId, _: PeerId, _: StreamKind, _: &[u8]) -> bool {
        true
    }
}

/// A frame for local playback, with when it arrived (the jitter buffer measures from then, not
/// from when the player thread got round to it).
#[derive(Debug, Clone)]
pub struct Heard {
    pub frame: AudioFrame,
    pub at: std::time::Instant,
    /// Whether it may be played (its proof's verdict, when it comes).
    pub auth: Authenticity,
}

/// How a room's audio is handled at this node.
#[derive(Debug, Clone, Copy, Default)]
pub struct FanoutOptions {
    /// This node's own speaker id: its own voice coming back down the tree is not played.
    pub myself: Option<SpeakerId>,
    /// At the host: forward only this many speakers, the loudest (see [`Loudest`]).
    pub forward_loudest: Option<usize>,
}

/// Control frames for one child, or its marching orders.
type ChildSender = mpsc::Sender<parent::ToChild>;

/// What goes to every child of a room.
#[derive(Debug, Clone)]
enum Outgoing {
    Audio(Arc<Vec<u8>>),
    KeepAlive,
    Control(Arc<Vec<u8>>),
    Proof(Arc<Vec<u8>>),
    Beacon(Arc<Vec<u8>>),
}

struct RoomAudio {
    fanout: broadcast::Sender<Outgoing>,
    /// Control frames for one child (a notice routed to it, its path when it opens).
    /// With the stream's number: a child has one stream, its newest.
    to_child: HashMap<PeerId, (u64, ChildSender)>,
    /// Numbers the children's streams.
    streams_opened: u64,
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
    /// Up frames for the parent, while attached to one.
    uplink: Option<mpsc::Sender<Up>>,
    /// Held while the room is open: its keep-alive task stops when this goes.
    _open: Arc<()>,
    /// A recorder taking what this node forwards (at the host: the room's official recording).
    tap: Option<crate::recording::store::FrameTap>,
    /// At the host: signs its own voice, and the beacons.
    root: Option<Root>,
    /// When this node plays an adversary (tests).
    tamper: Option<misbehave::Tamper>,
}

/// The host's signing part in a room's audio.
struct Root {
    signer: ProofSigner,
    /// When its own voice last went down.
    last_own: std::time::Instant,
    beacon_n: u32,
    last_beacon: std::time::Instant,
    /// The newest frame sent down of each voice, and when.
    newest: HashMap<SpeakerId, (u32, std::time::Instant)>,
}

/// The node's audio plane. Cheap to clone.
#[derive(Clone)]
pub struct Fanout {
    control: libp2p_stream::Control,
    rooms: Arc<Mutex<HashMap<RoomId, RoomAudio>>>,
    gate: Arc<dyn Gate>,
    /// This node's key: it signs its voice (and, as a host, the beacons).
    key: Option<Arc<ed25519_dalek::SigningKey>>,
    /// The adversary this node plays, if any (tests: `earshot join --misbehave`).
    misbehave: Arc<std::sync::OnceLock<Misbehave>>,
    /// Private rooms' keys.
    keyrings: sealing::Keyrings,
    /// Everything passed on, kept (tests: `earshot relay --capture`).
    capture: Arc<std::sync::OnceLock<misbehave::Capture>>,
    /// Frames dropped before this node's player (tests: [`Fanout::impair_playout`]).
    impaired: Arc<Mutex<Option<impair::Impairment>>>,
    /// Where streams refused for what their peer did are told (see [`crate::net::conduct`]).
    conduct: Arc<std::sync::OnceLock<crate::net::conduct::Conduct>>,
}

impl std::fmt::Debug for Fanout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Fanout")
    }
}

impl Fanout {
    /// Starts accepting audio streams; `gate` decides who may open which (see [`Gate`]).
    /// Without `key` this node's voice goes unsigned (benches of the plane alone).
    pub fn start(
        mut control: libp2p_stream::Control,
        gate: Arc<dyn Gate>,
        key: Option<ed25519_dalek::SigningKey>,
    ) -> Self {
        let fanout = Self {
            control: control.clone(),
            rooms: Arc::new(Mutex::new(HashMap::new())),
            gate,
            key: key.map(Arc::new),
            misbehave: Arc::default(),
            keyrings: Arc::default(),
            capture: Arc::default(),
            impaired: Arc::default(),
            conduct: Arc::default(),
        };
        match control.accept(AUDIO_PROTOCOL) {
            Ok(mut incoming) => {
                let fanout = fanout.clone();
                tokio::spawn(async move {
                    while let Some((peer, stream)) = incoming.next().await {
                        let fanout = fanout.clone();
                        tokio::spawn(async move {
                            if let Err(err) = fanout.serve(peer, stream).await {
                                debug!(%peer, %err, "audio stream closed");
                            }
                        });
                    }
                });
            }
            Err(_) => warn!("audio streams are already being accepted elsewhere"),
        }
        fanout
    }

    /// Takes part in a room's audio: frames heard go to the returned receiver (for playback). A
    /// room open already keeps everything but its playback, which goes to the new receiver.
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
        let (playback, heard) = mpsc::channel(PLAYBACK_QUEUE_FRAMES);
        // Open already (the node takes part in the tree from the moment it joins): the audio
        // session plays what it hears from now on, with its own options.
        // The room's host signs its own voice and the beacons (whether it selects the loudest
        // speakers or not).
        let is_host = |key: &ed25519_dalek::SigningKey| {
            options.forward_loudest.is_some()
                || self.voices(room).and_then(|voices| voices.host)
                    == Some(earshot_protocol::PeerKey::from(key))
        };
        let root = self
            .key
            .as_ref()
            .filter(|key| is_host(key))
            .map(|key| Root {
                signer: ProofSigner::new(key.as_ref().clone(), room),
                last_own: std::time::Instant::now(),
                beacon_n: 0,
                last_beacon: std::time::Instant::now(),
                newest: HashMap::new(),
            });
        if let Some(audio) = self.lock().get_mut(&room) {
            audio.playback = playback;
            audio.myself = options.myself;
            audio.loudest = options.forward_loudest.map(Loudest::new);
            audio.root = root;
            return (heard, Arc::clone(&audio.stats));
        }
        let (fanout, _) = broadcast::channel(CHILD_QUEUE_FRAMES);
        let stats = Arc::new(FanoutStats::default());
        let open = Arc::new(());
        // Spawned once the room is in the map: a task that ran first would find no room and end
        // for good (no keep-alives, reports or beacons from this node, ever).
        let keep_alive = self.clone().keep_alive(room, Arc::downgrade(&open));
        self.lock().insert(
            room,
            RoomAudio {
                fanout,
                to_child: HashMap::new(),
                streams_opened: 0,
                children: Arc::new(watch::channel(0).0),
                leaving: Arc::new(watch::channel(false).0),
                playback,
                stats: Arc::clone(&stats),
                myself: options.myself,
                loudest: options.forward_loudest.map(Loudest::new),
                epoch: std::time::Instant::now(),
                last_sent: std::time::Instant::now(),
                uplink: None,
                _open: open,
                tap: None,
                root,
                tamper: self.misbehaving().map(misbehave::Tamper::new),
            },
        );
        tokio::spawn(keep_alive);
        (heard, stats)
    }

    /// Records what this node forwards in `room` into `tap` (or stops, with `None`).
    pub fn record(&self, room: &RoomId, tap: Option<crate::recording::store::FrameTap>) {
        // A private room's recording keeps the room's keys (sealed), now and at every step.
        if let (Some(tap), Some(ring)) = (&tap, self.keys(room)) {
            tap.record_keys(&ring);
        }
        if let Some(audio) = self.lock().get_mut(room) {
            // The host's own frames not signed yet are signed now, so the recording being
            // stopped has their proof (the proof goes down too).
            if tap.is_none()
                && let Some(proof) = audio.root.as_mut().and_then(|root| root.signer.flush())
            {
                audio.pass_proof(&proof);
            }
            audio.tap = tap;
        }
    }

    /// While nothing is relayed, an empty frame goes to all the room's children every
    /// [`KEEPALIVE`]: one wake-up per room, not one timer per child. The same wake-up sends up
    /// what the gate has for the parent.
    async fn keep_alive(self, room: RoomId, open: std::sync::Weak<()>) {
        let mut tick = tokio::time::interval(KEEPALIVE / 2);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if open.upgrade().is_none() {
                return;
            }
            let uplink = {
                let mut rooms = self.lock();
                // The room's audio lives as long as `open` does (checked above).
                let Some(audio) = rooms.get_mut(&room) else {
                    continue;
                };
                if audio.last_sent.elapsed() >= KEEPALIVE {
                    let _ = audio.fanout.send(Outgoing::KeepAlive);
                    audio.last_sent = std::time::Instant::now();
                }
                audio.sign_at_root(&room);
                (audio.uplink.clone(), Arc::clone(&audio.stats))
            };
            let (uplink, stats) = uplink;
            let ups = self.gate.upstream(room, uplink.is_some(), &stats);
            if let Some(uplink) = uplink {
                for up in ups {
                    // Reports come again in a moment; an action that does not fit is lost.
                    let _ = uplink.try_send(up);
                }
            }
            self.shed(&room, &self.gate.shed(room));
        }
    }

    /// Sends something down to every child of `room` (at the host: a view, a relayed
    /// envelope).
    pub fn send_down(&self, room: &RoomId, down: &Down) {
        if let Some(audio) = self.lock().get_mut(room) {
            audio.send(Outgoing::Control(Arc::new(down.encode())));
        }
    }

    /// Sends this node's own action up to its parent in `room` now, if it has one (a leaving
    /// listener's goodbye: the tree's queue would go with the room).
    pub fn send_up(&self, room: &RoomId, act: Vec<u8>) {
        if let Some(uplink) = self.lock().get(room).and_then(|audio| audio.uplink.clone()) {
            let _ = uplink.try_send(Up::ActVia {
                act: serde_bytes::ByteBuf::from(act),
                via: Vec::new(),
            });
        }
    }

    /// Sends something down to one child of `room`.
    pub fn send_to_child(&self, room: &RoomId, child: &PeerId, down: &Down) {
        if let Some(tx) = self
            .lock()
            .get(room)
            .and_then(|audio| audio.to_child.get(child).map(|(_, tx)| tx))
        {
            let _ = tx.try_send(parent::ToChild::Control(Arc::new(down.encode())));
        }
    }

    /// Leaves gracefully: tells every child of `room` to attach elsewhere and keeps feeding
    /// them until they have (or [`HANDOVER_TIMEOUT`]). Returns how many had not moved.
    pub async fn hand_over(&self, room: &RoomId) -> usize {
        let Some((leaving, children, uplink)) = self.lock().get(room).map(|audio| {
            (
                Arc::clone(&audio.leaving),
                audio.children.subscribe(),
                audio.uplink.clone(),
            )
        }) else {
            return 0;
        };
        // The parent first hears that this node is leaving (a report of an empty subtree: its
        // place there is free for the children about to ask around), then the children are
        // told to move.
        if let Some(uplink) = uplink {
            let _ = uplink.try_send(Up::Report(earshot_protocol::audience::wire::Report {
                subtree: 0,
                ..Default::default()
            }));
        }
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
        self.keyrings.lock().remove(room);
    }

    /// The counters of `room`'s audio (children, capacity…), if it is open here.
    pub fn stats(&self, room: &RoomId) -> Option<Arc<FanoutStats>> {
        self.lock().get(room).map(|audio| Arc::clone(&audio.stats))
    }

    /// Closes `room` if it is still the one whose counters are `stats` (not a room opened
    /// again since, by a new join).
    pub fn close_room_of(&self, room: &RoomId, stats: &Arc<FanoutStats>) {
        let mut rooms = self.lock();
        if rooms
            .get(room)
            .is_some_and(|audio| Arc::ptr_eq(&audio.stats, stats))
        {
            rooms.remove(room);
            self.keyrings.lock().remove(room);
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<RoomId, RoomAudio>> {
        self.rooms.lock()
    }

    /// Relays one frame of this node's own voice to its children (at the host, if it is among
    /// the loudest), sealed first in a private room.
    pub fn relay(&self, room: &RoomId, frame: &AudioFrame) {
        let mut sealed = frame.clone();
        if !self.seal_own(room, &mut sealed) {
            return;
        }
        let frame = &sealed;
        if let Some(audio) = self.lock().get_mut(room) {
            // Signed whether forwarded or not: the recording keeps it either way.
            let (before, after) = match audio.root.as_mut() {
                Some(root) => {
                    root.last_own = std::time::Instant::now();
                    root.signer.push_around(frame)
                }
                None => (None, None),
            };
            if let Some(proof) = before {
                audio.pass_proof(&proof);
            }
            if let Some(tap) = &audio.tap {
                tap.record(frame);
            }
            if audio.selected(frame) {
                // No children is fine.
                audio.send(Outgoing::Audio(Arc::new(frame.encode())));
                audio.stats.relayed.fetch_add(1, Ordering::Relaxed);
                audio.sent_down(frame);
            }
            if let Some(proof) = after {
                audio.pass_proof(&proof);
            }
        }
    }

    /// A frame arrived (from the tree, or from a speaker at the host): pass it on and play it
    /// (as its proof allows, `auth`).
    fn heard(
        &self,
        room: &RoomId,
        frame: AudioFrame,
        auth: Authenticity,
    ) -> Result<(), StreamError> {
        let ring = self.keys(room);
        let mut rooms = self.lock();
        let audio = rooms.get_mut(room).ok_or(StreamError::NoRoom(*room))?;
        audio.stats.received.fetch_add(1, Ordering::Relaxed);
        if audio.root.is_some() && !sealing::under_held_epoch(ring.as_deref(), &frame, &audio.stats)
        {
            return Ok(());
        }
        if !audio.selected(&frame) {
            return Ok(());
        }
        let encoded = Arc::new(frame.encode());
        if let Some(capture) = self.capture.get() {
            capture.record(misbehave::CAPTURED_AUDIO, &encoded);
        }
        audio.send(Outgoing::Audio(encoded));
        audio.stats.relayed.fetch_add(1, Ordering::Relaxed);
        audio.sent_down(&frame);
        if Some(frame.speaker) != audio.myself
            && !self.impaired.lock().as_mut().is_some_and(|i| i.drops())
            && let Some(frame) = sealing::for_my_ears(ring.as_deref(), frame, &audio.stats)
        {
            // Playback that falls behind loses frames here, never blocks the tree.
            let _ = audio.playback.try_send(Heard {
                frame,
                at: std::time::Instant::now(),
                auth,
            });
        }
        Ok(())
    }

    /// Frames verified against their proofs, and the proof: into the recording; the proof on
    /// down the tree if `pass` (it checked).
    fn proven(&self, room: &RoomId, proof: &FrameProof, verified: &[AudioFrame], pass: bool) {
        if let Some(audio) = self.lock().get_mut(room) {
            audio.stats.proofs.fetch_add(1, Ordering::Relaxed);
            audio
                .stats
                .verified
                .fetch_add(verified.len() as u64, Ordering::Relaxed);
            if let Some(tap) = &audio.tap {
                for frame in verified {
                    tap.record(frame);
                }
            }
            if pass {
                audio.pass_proof(proof);
            }
        }
    }

    /// Frames verified as they arrived (their proof came first): into the recording.
    fn verified_now(&self, room: &RoomId, verified: &[AudioFrame]) {
        if verified.is_empty() {
            return;
        }
        if let Some(audio) = self.lock().get(room) {
            audio
                .stats
                .verified
                .fetch_add(verified.len() as u64, Ordering::Relaxed);
            if let Some(tap) = &audio.tap {
                for frame in verified {
                    tap.record(frame);
                }
            }
        }
    }

    /// The host's beacon, checked: on down the tree.
    fn pass_beacon(&self, room: &RoomId, beacon: &Progress) {
        if let Some(audio) = self.lock().get_mut(room) {
            audio.send(Outgoing::Beacon(Arc::new(beacon.encode())));
        }
    }

    /// Who may be heard in `room`, if this plane checks (see [`Gate::voices`]).
    fn voices(&self, room: RoomId) -> Option<Arc<Voices>> {
        self.gate.voices(room)
    }

    /// A stream failed its checks: counted.
    fn check_failed(&self, room: &RoomId) {
        if let Some(audio) = self.lock().get(room) {
            audio.stats.failed_checks.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Something came down from the parent: the gate says where it goes on.
    fn came_down(&self, room: &RoomId, down: Down, bytes: usize) {
        if let Some(capture) = self.capture.get() {
            capture.record(misbehave::CAPTURED_DOWN, &down.encode());
        }
        if let Some(audio) = self.lock().get(room) {
            audio
                .stats
                .control_received
                .fetch_add(bytes as u64 + 4, Ordering::Relaxed);
        }
        match self.gate.down(*room, down) {
            Pass::All(down) => self.send_down(room, &down),
            Pass::Child(child, down) => self.send_to_child(room, &child, &down),
            Pass::Nobody => {}
        }
        self.evict(room, &self.gate.evicted(*room));
    }

    /// Cuts `children` off: their streams end (their writers see their own channel close).
    pub fn evict(&self, room: &RoomId, children: &[PeerId]) {
        if children.is_empty() {
            return;
        }
        if let Some(audio) = self.lock().get_mut(room) {
            for child in children {
                if audio.to_child.remove(child).is_some() {
                    debug!(%child, %room, "cut a removed listener off");
                }
            }
        }
    }
}

impl RoomAudio {
    /// Sends to every child (through the adversary, when this node plays one). Anything sent
    /// puts the keep-alive off.
    fn send(&mut self, out: Outgoing) {
        let outs = match self.tamper.as_mut() {
            Some(tamper) => tamper.outgoing(out, self.to_child.len()),
            None => vec![out],
        };
        for out in outs {
            self.stats.offer(out.wire_len());
            // No children is fine.
            let _ = self.fanout.send(out);
            self.last_sent = std::time::Instant::now();
        }
    }

    /// A proof goes down with the frames it covers (and into the recording).
    fn pass_proof(&mut self, proof: &FrameProof) {
        self.send(Outgoing::Proof(Arc::new(proof.encode())));
        if let Some(tap) = &self.tap {
            tap.record_proof(proof);
        }
    }

    /// At the host, `frame` went down: the next beacon names it.
    fn sent_down(&mut self, frame: &AudioFrame) {
        if let Some(root) = self.root.as_mut() {
            root.newest
                .insert(frame.speaker, (frame.seq, std::time::Instant::now()));
        }
    }

    /// At the host, every keep-alive tick: signs its own voice's pending frames after a pause,
    /// and a beacon every [`BEACON_INTERVAL_MS`].
    fn sign_at_root(&mut self, room: &RoomId) {
        let Some(root) = self.root.as_mut() else {
            return;
        };
        let mut proofs = Vec::new();
        if root.signer.pending() > 0 && root.last_own.elapsed() >= FLUSH_AFTER {
            proofs.extend(root.signer.flush());
        }
        let beacon = (root.last_beacon.elapsed()
            >= std::time::Duration::from_millis(BEACON_INTERVAL_MS))
        .then(|| {
            root.last_beacon = std::time::Instant::now();
            root.beacon_n = root.beacon_n.wrapping_add(1);
            root.newest
                .retain(|_, (_, at)| at.elapsed() < std::time::Duration::from_secs(3));
            let mut newest: Vec<(SpeakerId, u32)> = root
                .newest
                .iter()
                .map(|(speaker, (seq, _))| (*speaker, *seq))
                .collect();
            newest.sort_unstable();
            newest.truncate(MAX_BEACON_VOICES);
            (root.beacon_n, newest)
        });
        for proof in proofs {
            self.pass_proof(&proof);
        }
        if let Some((n, newest)) = beacon
            && let Some(root) = self.root.as_ref()
        {
            let key = root.signer.key();
            // Wrapping: the beacon carries the low 32 bits.
            let forwarded = self.stats.relayed.load(Ordering::Relaxed) as u32;
            let beacon = Progress::sign(key, room, n, forwarded, newest);
            self.send(Outgoing::Beacon(Arc::new(beacon.encode())));
        }
    }

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
