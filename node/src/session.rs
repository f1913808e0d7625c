//! A node's part in one room's audio, end to end: its voice in, the room's audio out. Its place
//! in the relay tree is the node's own, from joining to leaving ([`crate::membership`]).
//!
//! - The **host** speaks straight into the root of the tree and plays the speakers it receives;
//!   its relay forwards only the loudest few speakers ([`crate::fanout::FanoutOptions`]).
//! - A **member** plays what comes from its parent in the tree, and while on stage sends its
//!   voice to the host.
//! - A **carrier** (a community relay) plays nothing and says nothing: it only relays.
//!
//! Audio threads (capture, playback) never wait on the network: they exchange frames with the
//! relay through bounded queues that drop rather than block.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::time::Duration;

use earshot_protocol::RoomId;
use earshot_protocol::frame::{SILENCE_LEVEL, SpeakerId};
use libp2p::PeerId;
use tokio::sync::{broadcast, watch};

use crate::audio::io::{AudioIoError, Input, Output, PlayStats, Player, PlayerStatus, StudioFeed};
use crate::audio::io::{spawn_player, spawn_source};
use crate::fanout::studio::StudioTrack;
use crate::fanout::{Fanout, FanoutOptions, FanoutStats, HANDOVER_TIMEOUT, StreamError};
use crate::membership::Membership;
pub use crate::membership::{AudioEvent, Position};
use crate::node::Node;

/// Why a room's audio could not start.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error(transparent)]
    Audio(#[from] AudioIoError),
    #[error("cannot send your voice: {0}")]
    Speak(#[from] StreamError),
}

/// A snapshot of this node's audio, for status displays (reported as
/// [`crate::event::AudioStats`]).
#[derive(Debug, Clone)]
pub struct AudioStatus {
    /// `None` for the host, and for a member not attached (yet, or while re-attaching).
    pub position: Option<Position>,
    /// Children fed now.
    pub children: usize,
    /// Frames received from the tree (or, at the host, from speakers).
    pub received: u64,
    pub relayed: u64,
    /// Frames slow children skipped.
    pub dropped: u64,
    /// Bytes sent to children.
    pub bytes_sent: u64,
    /// The children this node offers to feed (`None` until known), and what one costs, measured
    /// (bytes a second; `None` until measured).
    pub capacity: Option<u16>,
    pub child_cost: Option<u64>,
    /// At the host: frames of speakers not among the loudest.
    pub not_selected: u64,
    pub speaking: bool,
    pub self_muted: bool,
    /// Playback: jitter buffer, losses, mouth-to-ear latency.
    pub playback: PlayerStatus,
    /// The host's advice to the speakers' encoders: the audience's loss, per mille (see
    /// `earshot_protocol::audience::quality`).
    pub audience_loss: u16,
    /// At the host: how long nine in ten listeners' jitter buffers hold frames back (ms; 0
    /// until the tree's reports count any).
    pub audience_jitter_ms: u16,
    /// This node's studio track (its voice for the recording, see
    /// [`earshot_protocol::studio`]): chunks handed to the recorder so far, and chunks or
    /// frames it lost (a full queue); `None` without one.
    pub studio: Option<(u64, u64)>,
    /// How loud each voice was in the last fifth of a second, this node's own as it went out
    /// (RFC 6464: 0 loudest, 127 silent; voices not heard lately are not listed).
    pub levels: Vec<(SpeakerId, u8)>,
}

/// What part a node plays in a room's audio.
#[derive(Debug, Clone, Copy)]
enum Role {
    /// The host: the root of the tree, forwarding the `forward` loudest speakers.
    Root { forward: usize },
    /// A member: follows the tree, sends its voice to `host` while on stage.
    Member { host: PeerId },
    /// A community relay: follows the tree, plays and says nothing.
    Carrier,
}

/// This node's voice, sent while it is on stage.
#[derive(Debug)]
struct Voice {
    input: Input,
    /// Where it goes: the host (for a member) or nowhere but the local relay (the host).
    host: Option<PeerId>,
    speaking: Option<Arc<AtomicBool>>,
    self_muted: Arc<AtomicBool>,
    /// How loud it went out lately ([`OwnLevel`]).
    level: Arc<AtomicU8>,
}

/// The loudest of every ten frames of this node's voice sent (a fifth of a second), kept for
/// status displays.
struct OwnLevel {
    shared: Arc<AtomicU8>,
    loudest: u8,
    frames: u8,
}

impl OwnLevel {
    fn new(shared: &Arc<AtomicU8>) -> Self {
        Self {
            shared: Arc::clone(shared),
            loudest: SILENCE_LEVEL,
            frames: 0,
        }
    }

    fn sent(&mut self, level: u8) {
        self.loudest = self.loudest.min(level);
        self.frames += 1;
        if self.frames == 10 {
            self.shared.store(self.loudest, Ordering::Relaxed);
            (self.loudest, self.frames) = (SILENCE_LEVEL, 0);
        }
    }
}

/// One room's audio at this node. Dropping it stops everything; [`AudioSession::finish`] also
/// hands children over and finishes the output file.
#[derive(Debug)]
pub struct AudioSession {
    relay: Fanout,
    room: RoomId,
    me: SpeakerId,
    stats: Arc<FanoutStats>,
    player: Option<Player>,
    position: watch::Receiver<Option<Position>>,
    membership: Membership,
    voice: Voice,
    /// This node's studio track, if it keeps one ([`Self::enable_studio`]).
    studio: Option<StudioTrack>,
    events: broadcast::Sender<AudioEvent>,
}

impl AudioSession {
    /// The host's audio: `input` goes to the root of the tree at once; speakers are played into
    /// `output`; only the `forward` loudest speakers go down the tree. With `studio`, the host
    /// keeps a studio track too ([`Self::enable_studio`]).
    pub fn host(
        node: &Node,
        relay: &Fanout,
        room: RoomId,
        input: Input,
        output: Output,
        forward: usize,
        studio: bool,
    ) -> Result<Self, SessionError> {
        let mut session = Self::open(
            node,
            relay,
            room,
            Role::Root { forward },
            input,
            Some(output),
        )?;
        if studio {
            session.enable_studio();
        }
        session.start_voice_locally()?;
        Ok(session)
    }

    /// A member's audio: the room played into `output` (from its place in the tree, which the
    /// node keeps). Its voice (`input`) goes to the host (`host`) while it is on stage
    /// ([`Self::set_on_stage`]).
    pub fn member(
        node: &Node,
        relay: &Fanout,
        room: RoomId,
        host: PeerId,
        input: Input,
        output: Output,
    ) -> Result<Self, SessionError> {
        Self::open(
            node,
            relay,
            room,
            Role::Member { host },
            input,
            Some(output),
        )
    }

    /// A community relay's part in a room: feeding as many children as it declared from its
    /// place in the tree, and nothing played (it never decodes the audio it carries).
    pub fn carry(node: &Node, relay: &Fanout, room: RoomId) -> Result<Self, SessionError> {
        Self::open(node, relay, room, Role::Carrier, Input::Silence, None)
    }

    fn open(
        node: &Node,
        relay: &Fanout,
        room: RoomId,
        role: Role,
        input: Input,
        output: Option<Output>,
    ) -> Result<Self, SessionError> {
        let me = SpeakerId::of(&node.key());
        let (heard, stats) = relay.open_room_with(
            room,
            FanoutOptions {
                myself: Some(me),
                forward_loudest: match role {
                    Role::Root { forward } => Some(forward),
                    Role::Member { .. } | Role::Carrier => None,
                },
            },
        );
        // Without an output (a carrier) the playback queue is dropped: frames are only relayed.
        let player = output
            .map(|output| spawn_player(heard, output, Arc::clone(&stats)))
            .transpose()?;
        // The node keeps this node's place in the tree (see `crate::membership`).
        let membership = node.membership(&room).unwrap_or_else(|| Membership {
            position: watch::channel(None).1,
            events: broadcast::channel(1).0,
            done: watch::channel(true).1,
        });
        Ok(Self {
            relay: relay.clone(),
            room,
            me,
            stats,
            player,
            position: membership.position.clone(),
            voice: Voice {
                input,
                host: match role {
                    Role::Member { host } => Some(host),
                    Role::Root { .. } | Role::Carrier => None,
                },
                speaking: None,
                self_muted: Arc::new(AtomicBool::new(matches!(role, Role::Carrier))),
                level: Arc::new(AtomicU8::new(SILENCE_LEVEL)),
            },
            studio: None,
            events: membership.events.clone(),
            membership,
        })
    }

    /// Audio events from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<AudioEvent> {
        self.events.subscribe()
    }

    /// Starts sending this member's voice when it goes on stage, stops when it leaves the stage.
    pub async fn set_on_stage(&mut self, on_stage: bool) -> Result<(), SessionError> {
        match (on_stage, self.voice.speaking.is_some()) {
            (true, true) | (false, false) => Ok(()),
            (false, true) => {
                self.stop_voice();
                Ok(())
            }
            (true, false) => match self.voice.host {
                None => self.start_voice_locally(),
                Some(host) => {
                    let sender = self.relay.speak(self.room, host).await?;
                    let muted = Arc::clone(&self.voice.self_muted);
                    let mut level = OwnLevel::new(&self.voice.level);
                    self.start_voice(move |frame| {
                        if !muted.load(Ordering::Relaxed) {
                            level.sent(frame.level);
                            // Capture never waits on the network: a full queue drops the frame.
                            let _ = sender.try_send(frame);
                        }
                    })
                }
            },
        }
    }

    /// Keeps a studio track from now on: this node's voice encoded a second time, at a higher
    /// bitrate, for the room's recording (the host's own recorder, or sent to the host), while
    /// the room is recorded ([`Self::set_recorded`]) and this node speaks unmuted. Takes effect
    /// the next time the voice starts.
    pub fn enable_studio(&mut self) {
        if self.studio.is_none() {
            self.studio = self.relay.studio_track(self.room, self.voice.host);
        }
    }

    /// Whether the room's recording is on (the host's, not a member's own): the studio track
    /// follows it.
    pub fn set_recorded(&self, recorded: bool) {
        if let Some(studio) = &self.studio {
            studio.on.store(recorded, Ordering::Relaxed);
        }
    }

    /// Hands this node's studio track over up to now (a member's: written to the host and its
    /// stream closed), [`crate::fanout::studio::LAST_WORDS`] at most.
    pub async fn flush_studio(&self) {
        if let Some(studio) = &self.studio {
            studio.flush().await;
        }
    }

    /// Records what this node forwards (the host: what the room hears) into `tap`; `None` stops.
    pub fn record(&self, tap: Option<crate::recording::store::FrameTap>) {
        self.relay.record(&self.room, tap);
    }

    /// `/mute-self`: frames are made but not sent.
    pub fn set_self_muted(&self, muted: bool) {
        self.voice.self_muted.store(muted, Ordering::Relaxed);
        if muted {
            self.voice.level.store(SILENCE_LEVEL, Ordering::Relaxed);
        }
    }

    pub fn status(&self) -> AudioStatus {
        let load = |counter: &std::sync::atomic::AtomicU64| counter.load(Ordering::Relaxed);
        let playback = self.player.as_ref().map(Player::status).unwrap_or_default();
        let mut levels = playback.levels.clone();
        if self.voice.speaking.is_some() && !self.voice.self_muted.load(Ordering::Relaxed) {
            levels.push((self.me, self.voice.level.load(Ordering::Relaxed)));
        }
        AudioStatus {
            position: *self.position.borrow(),
            children: self
                .relay
                .children(&self.room)
                .map(|children| *children.borrow())
                .unwrap_or(0),
            received: load(&self.stats.received),
            relayed: load(&self.stats.relayed),
            dropped: load(&self.stats.dropped),
            bytes_sent: load(&self.stats.bytes_sent),
            capacity: self.stats.capacity(),
            child_cost: Some(load(&self.stats.child_cost)).filter(|cost| *cost > 0),
            not_selected: load(&self.stats.not_selected),
            speaking: self.voice.speaking.is_some(),
            self_muted: self.voice.self_muted.load(Ordering::Relaxed),
            playback,
            audience_loss: self.stats.audio_loss.load(Ordering::Relaxed),
            audience_jitter_ms: self.stats.audience_jitter_ms.load(Ordering::Relaxed),
            studio: self.studio.as_ref().map(|studio| {
                let stats = &studio.stats;
                (
                    load(&stats.chunks_sent),
                    load(&stats.chunks_dropped) + load(&stats.frames_dropped),
                )
            }),
            levels,
        }
    }

    /// Leaves the room's audio gracefully: stops speaking, hands this node's children over to
    /// other parents (keeping them fed until they have moved), then stops listening and
    /// finishes the output.
    pub async fn finish(mut self) -> Result<PlayStats, SessionError> {
        self.stop_voice();
        // The studio track's last second goes to the host before this node leaves.
        self.set_recorded(false);
        self.flush_studio().await;
        // The node hands this node's children over as the room closes for it (see
        // `crate::membership`); the session ends once that is done.
        self.membership
            .finished(HANDOVER_TIMEOUT + Duration::from_secs(1))
            .await;
        let stats = match self.player.take() {
            Some(player) => tokio::task::spawn_blocking(move || player.finish())
                .await
                .map_err(|_| AudioIoError::Crashed)??,
            None => PlayStats::default(),
        };
        Ok(stats)
    }

    fn start_voice_locally(&mut self) -> Result<(), SessionError> {
        let relay = self.relay.clone();
        let room = self.room;
        let muted = Arc::clone(&self.voice.self_muted);
        let mut level = OwnLevel::new(&self.voice.level);
        self.start_voice(move |frame| {
            if !muted.load(Ordering::Relaxed) {
                level.sent(frame.level);
                relay.relay(&room, &frame);
            }
        })
    }

    fn start_voice(
        &mut self,
        send: impl FnMut(earshot_protocol::frame::AudioFrame) + Send + 'static,
    ) -> Result<(), SessionError> {
        let stop = Arc::new(AtomicBool::new(false));
        let studio = self.studio.as_ref().map(|track| {
            let muted = Arc::clone(&self.voice.self_muted);
            let (frames, stats) = (track.frames.clone(), Arc::clone(&track.stats));
            StudioFeed {
                on: Arc::clone(&track.on),
                send: Box::new(move |frame| {
                    // A muted speaker's voice goes nowhere, the recording included.
                    if !muted.load(Ordering::Relaxed) && frames.try_send(frame).is_err() {
                        stats.frames_dropped.fetch_add(1, Ordering::Relaxed);
                    }
                }),
            }
        });
        spawn_source(
            self.voice.input.clone(),
            self.me,
            send,
            studio,
            Arc::clone(&stop),
            Arc::clone(&self.stats),
        )?;
        self.voice.speaking = Some(stop);
        Ok(())
    }

    fn stop_voice(&mut self) {
        if let Some(stop) = self.voice.speaking.take() {
            stop.store(true, Ordering::Relaxed);
        }
        self.voice.level.store(SILENCE_LEVEL, Ordering::Relaxed);
    }
}

impl Drop for AudioSession {
    fn drop(&mut self) {
        // A player not finished stops its thread as it drops; the node's membership in the
        // room lasts as long as the node is in it.
        self.stop_voice();
    }
}
