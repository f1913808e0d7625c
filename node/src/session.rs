//! A node's part in one room's audio, end to end: its voice in, the room's audio out, and its
//! place in the relay tree kept up to date.
//!
//! - The **host** speaks straight into the root of the tree and plays the speakers it receives;
//!   its relay forwards only the loudest few speakers ([`crate::fanout::FanoutOptions`]).
//! - A **member** asks the host for a parent, receives from it (relaying to its own children),
//!   and when the parent dies or goes silent asks again at once, reporting the lost parent.
//!   When a parent leaves gracefully it says so first and keeps feeding until the member is
//!   attached elsewhere. Each move is said to the room ([`ControlBody::TreePosition`]) so that
//!   every member can draw the tree. While on stage, a member sends its voice to the host.
//!
//! Audio threads (capture, playback) never wait on the network: they exchange frames with the
//! relay through bounded queues that drop rather than block.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use earshot_protocol::frame::SpeakerId;
use earshot_protocol::{ControlBody, PeerKey, RoomId};
use libp2p::PeerId;
use tokio::sync::{broadcast, watch};
use tracing::{debug, info};

use crate::audio::io::{AudioIoError, Input, Output, PlayStats, Player, PlayerStatus};
use crate::audio::io::{spawn_player, spawn_source};
use crate::fanout::{Fanout, FanoutOptions, FanoutStats, StreamError};
use crate::node::Node;

/// Why a room's audio could not start.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error(transparent)]
    Audio(#[from] AudioIoError),
    #[error("cannot send your voice: {0}")]
    Speak(#[from] StreamError),
}

/// Something that happened to this node's audio, for user interfaces.
#[derive(Debug, Clone, PartialEq)]
pub enum AudioEvent {
    /// Receiving from `parent`, `depth` hops below the host. `repair` is how long it took from
    /// losing the previous parent to the new stream being open (none for the first attach).
    Attached {
        parent: PeerId,
        depth: u16,
        repair: Option<Duration>,
    },
    /// The parent went away (`leaving`: it said so), and this node is re-attaching.
    Lost {
        parent: PeerId,
        leaving: bool,
        reason: String,
    },
}

/// Where this node is in the tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    pub parent: PeerId,
    pub depth: u16,
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
    /// At the host: frames of speakers not among the loudest.
    pub not_selected: u64,
    pub speaking: bool,
    pub self_muted: bool,
    /// Playback: jitter buffer, losses, mouth-to-ear latency.
    pub playback: PlayerStatus,
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
    follower: Option<tokio::task::JoinHandle<()>>,
    voice: Voice,
    events: broadcast::Sender<AudioEvent>,
}

impl AudioSession {
    /// The host's audio: `input` goes to the root of the tree at once; speakers are played into
    /// `output`; only the `forward` loudest speakers go down the tree.
    pub fn host(
        node: &Node,
        relay: &Fanout,
        room: RoomId,
        input: Input,
        output: Output,
        forward: usize,
    ) -> Result<Self, SessionError> {
        let mut session = Self::open(
            node,
            relay,
            room,
            Role::Root { forward },
            input,
            Some(output),
        )?;
        session.start_voice_locally()?;
        Ok(session)
    }

    /// A member's audio: a place in the tree (kept up to date) and the room played into
    /// `output`. Its voice (`input`) goes to the host (`host`) while it is on stage
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

    /// A community relay's part in a room: a place in the tree, feeding as many children as it
    /// declared, and nothing played (it never decodes the audio it carries).
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
            .map(|output| spawn_player(heard, output))
            .transpose()?;
        let (tx, position) = watch::channel(None);
        let events = broadcast::channel(64).0;
        let follower = (!matches!(role, Role::Root { .. })).then(|| {
            tokio::spawn(follow_tree(
                node.clone(),
                relay.clone(),
                room,
                tx,
                events.clone(),
            ))
        });
        Ok(Self {
            relay: relay.clone(),
            room,
            me,
            stats,
            player,
            position,
            follower,
            voice: Voice {
                input,
                host: match role {
                    Role::Member { host } => Some(host),
                    Role::Root { .. } | Role::Carrier => None,
                },
                speaking: None,
                self_muted: Arc::new(AtomicBool::new(matches!(role, Role::Carrier))),
            },
            events,
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
                    self.start_voice(move |frame| {
                        if !muted.load(Ordering::Relaxed) {
                            // Capture never waits on the network: a full queue drops the frame.
                            let _ = sender.try_send(frame);
                        }
                    })
                }
            },
        }
    }

    /// Records what this node forwards (the host: what the room hears) into `tap`; `None` stops.
    pub fn record(&self, tap: Option<crate::recording::store::FrameTap>) {
        self.relay.record(&self.room, tap);
    }

    /// `/mute-self`: frames are made but not sent.
    pub fn set_self_muted(&self, muted: bool) {
        self.voice.self_muted.store(muted, Ordering::Relaxed);
    }

    pub fn status(&self) -> AudioStatus {
        let load = |counter: &std::sync::atomic::AtomicU64| counter.load(Ordering::Relaxed);
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
            not_selected: load(&self.stats.not_selected),
            speaking: self.voice.speaking.is_some(),
            self_muted: self.voice.self_muted.load(Ordering::Relaxed),
            playback: self.player.as_ref().map(Player::status).unwrap_or_default(),
        }
    }

    /// Leaves the room's audio gracefully: stops speaking, hands this node's children over to
    /// other parents (keeping them fed until they have moved), then stops listening and
    /// finishes the output.
    pub async fn finish(mut self) -> Result<PlayStats, SessionError> {
        self.stop_voice();
        let stranded = self.relay.hand_over(&self.room).await;
        if stranded > 0 {
            info!(stranded, "some children had not moved when this node left");
        }
        if let Some(follower) = self.follower.take() {
            follower.abort();
        }
        self.relay.close_room(&self.room);
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
        self.start_voice(move |frame| {
            if !muted.load(Ordering::Relaxed) {
                relay.relay(&room, &frame);
            }
        })
    }

    fn start_voice(
        &mut self,
        send: impl FnMut(earshot_protocol::frame::AudioFrame) + Send + 'static,
    ) -> Result<(), SessionError> {
        let stop = Arc::new(AtomicBool::new(false));
        spawn_source(self.voice.input.clone(), self.me, send, Arc::clone(&stop))?;
        self.voice.speaking = Some(stop);
        Ok(())
    }

    fn stop_voice(&mut self) {
        if let Some(stop) = self.voice.speaking.take() {
            stop.store(true, Ordering::Relaxed);
        }
    }
}

impl Drop for AudioSession {
    fn drop(&mut self) {
        self.stop_voice();
        if let Some(follower) = self.follower.take() {
            follower.abort();
        }
        // A player not finished stops its thread as it drops.
        self.relay.close_room(&self.room);
    }
}

/// Keeps a member attached to the room's relay tree: asks the host for a parent, receives from
/// it, and when the stream ends asks again at once, reporting the lost parent.
async fn follow_tree(
    node: Node,
    relay: Fanout,
    room: RoomId,
    position: watch::Sender<Option<Position>>,
    events: broadcast::Sender<AudioEvent>,
) {
    let mut lost: Option<PeerId> = None;
    let mut lost_at: Option<Instant> = None;
    let mut draining = None;
    loop {
        match node.attach(room, lost.take()).await {
            Ok(parent) => {
                debug!(parent = %parent.peer, depth = parent.depth, "attached to the relay tree");
                if let Err(err) = node.dial(parent.peer, parent.addrs.clone()).await {
                    debug!(%err, "could not dial the parent; opening the stream may still work");
                }
                let here = Position {
                    parent: parent.peer,
                    depth: parent.depth,
                };
                position.send_replace(Some(here));
                let _ = events.send(AudioEvent::Attached {
                    parent: parent.peer,
                    depth: parent.depth,
                    repair: lost_at.take().map(|at| at.elapsed()),
                });
                // Told to the room alongside, not before: the audio comes first.
                if let Ok(key) = PeerKey::from_peer_id(&parent.peer) {
                    let node = node.clone();
                    let depth = parent.depth;
                    tokio::spawn(async move {
                        let said = node.act(room, ControlBody::TreePosition { parent: key, depth });
                        if let Err(err) = said.await {
                            debug!(%err, "could not tell the room where this node is in the tree");
                        }
                    });
                }
                // A parent that does not start the stream may not know yet that this node is in
                // the room (that travels by gossip), or dropped it in a burst of new streams:
                // ask it again a few times before calling it gone.
                let mut ended = relay.listen_after(room, parent.peer, &mut draining).await;
                for pause in [25, 50, 100, 200] {
                    if !matches!(ended, Err(StreamError::NotStarted(_))) {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(pause)).await;
                    ended = relay.listen_after(room, parent.peer, &mut draining).await;
                }
                position.send_replace(None);
                let refused = matches!(ended, Err(StreamError::NotStarted(_)));
                lost_at = Some(Instant::now());
                lost = Some(parent.peer);
                let event = match ended {
                    Ok(still_feeding) => {
                        info!(parent = %parent.peer, "the parent is leaving; moving");
                        draining = Some(still_feeding);
                        AudioEvent::Lost {
                            parent: parent.peer,
                            leaving: true,
                            reason: "it is leaving".into(),
                        }
                    }
                    Err(err) => {
                        info!(%err, "lost the parent in the relay tree; re-attaching");
                        AudioEvent::Lost {
                            parent: parent.peer,
                            leaving: false,
                            reason: err.to_string(),
                        }
                    }
                };
                let _ = events.send(event);
                // Re-attach at once; only a parent that would not even start a stream (after
                // the retries above) earns a pause, so that a confused host cannot make this spin.
                if refused {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
            Err(err) => {
                debug!(%err, "no place in the relay tree yet");
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        }
    }
}
