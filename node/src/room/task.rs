//! A room's task: follows the room for the person in it (voice on stage, recording, replays,
//! links) and reports this node's audio, until the room closes for this node.

use std::sync::Arc;
use std::time::Duration;

use earshot_protocol::frame::SpeakerId;
use earshot_protocol::state::RoomRole;
use earshot_protocol::{Audience, RoomId};
use libp2p::Multiaddr;
use tokio::sync::{broadcast, mpsc};
use tracing::{info, warn};

use super::{RoomCommand, RoomError, carry, grant, relayed_first, with_entries};
use crate::clock;
use crate::event::{AudioStats, CloseReason, Event};
use crate::home::Home;
use crate::node::Node;
use crate::recording::replay::{ReplayServer, Replays};
use crate::recording::store::{NewRecording, PrivateRecording, Recorder, RecordingMeta};
use crate::session::{AudioEvent, AudioSession, AudioStatus};
use crate::store::RoomRecord;

/// How often this node's audio is reported.
const AUDIO_REPORT: Duration = Duration::from_secs(1);
/// How long a stopping recording waits for speakers' studio streams to hand over their last
/// chunks (a speaker flushes its track when it hears the recording stop, or as it leaves).
const STUDIO_GRACE: Duration = Duration::from_secs(2);

/// What this node is in the room.
pub(super) enum Role {
    /// The host: it keeps the room's recording in its data directory, publishes it as a replay,
    /// serves replays, issues links.
    Host {
        home: Arc<Home>,
        room: Box<RoomRecord>,
        _server: ReplayServer,
        _announcer: tokio::task::JoinHandle<()>,
    },
    /// A member: it may record what it hears into its own data directory, opened then.
    Member {
        storage: std::path::PathBuf,
        home: Option<Arc<Home>>,
    },
}

/// A member agreeing to be recorded by itself says so again after this long while the room has
/// not heard it.
const AGREE_AGAIN: std::time::Duration = std::time::Duration::from_secs(3);

pub(super) struct RoomTask {
    node: Node,
    room: RoomId,
    audio: AudioSession,
    role: Role,
    /// This node's addresses through relays, first in the links the host hands out.
    relayed: Vec<Multiaddr>,
    /// The community relays carrying the room (at the host): the entry points its links name.
    entries: Vec<Multiaddr>,
    recorder: Option<Recorder>,
    /// The stage (keys and names) of the host's view the recording keeps last.
    recorded_stage: Option<Vec<(earshot_protocol::PeerKey, String)>>,
    /// Members whose agreement this recording keeps already: one each, however many a member
    /// sends (each newer one folds, and would otherwise grow the recording).
    consents_kept: std::collections::HashSet<earshot_protocol::PeerKey>,
    /// This member's microphone as it set it, and whether it is held off besides (on stage in
    /// a recording it has not agreed to speak in).
    self_muted: bool,
    held: bool,
    /// Agree to be recorded at once when asked (`--consent-recording`), and when it last did.
    consenting: bool,
    agreed_at: Option<std::time::Instant>,
}

impl RoomTask {
    pub(super) fn new(
        node: Node,
        room: RoomId,
        audio: AudioSession,
        role: Role,
        relayed: Vec<Multiaddr>,
        entries: Vec<Multiaddr>,
    ) -> Self {
        Self {
            node,
            room,
            audio,
            role,
            relayed,
            entries,
            recorder: None,
            recorded_stage: None,
            consents_kept: std::collections::HashSet::new(),
            self_muted: false,
            held: false,
            consenting: false,
            agreed_at: None,
        }
    }

    /// Agrees at once to speak in any recording when on stage.
    pub(super) fn consenting(mut self, consenting: bool) -> Self {
        self.consenting = consenting;
        self
    }

    pub(super) async fn run(
        mut self,
        mut events: broadcast::Receiver<Event>,
        mut commands: mpsc::Receiver<RoomCommand>,
    ) -> CloseReason {
        let mut audio_events = self.audio.subscribe();
        // Attached already (the node takes its place in the tree as it joins): said now.
        if let Some(position) = self.audio.status().position {
            self.node.emit(self.audio_event(AudioEvent::Attached {
                parent: position.parent,
                depth: position.depth,
                repair: None,
            }));
        }
        self.check_consent().await;
        let mut report = tokio::time::interval(AUDIO_REPORT);
        report.tick().await;
        let reason = loop {
            tokio::select! {
                _ = report.tick() => {
                    let stats = self.audio_stats(false).await;
                    self.node.emit(Event::AudioStats(stats));
                    self.record_stage();
                    // Held: the room may have heard the agreement since (a member just brought
                    // on stage hears it back once its node follows the room's topic).
                    if self.held {
                        self.check_consent().await;
                    }
                }
                // The session lives as long as this task: the channel does not close.
                event = audio_events.recv() => {
                    if let Ok(event) = event {
                        self.node.emit(self.audio_event(event));
                    }
                }
                command = commands.recv() => {
                    if let Some(command) = command {
                        self.on_command(command).await;
                    }
                }
                event = events.recv() => match event {
                    Ok(Event::Closed { room, reason }) if room == self.room => break reason,
                    Ok(event) => self.on_event(event).await,
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        warn!(room = %self.room, skipped = n, "the room's task fell behind the node's events");
                    }
                    Err(broadcast::error::RecvError::Closed) => break CloseReason::Left,
                },
            }
        };
        self.finish_recording().await;
        let mut last = self.audio_stats(true).await;
        // Children are handed over to other parents before this node goes.
        match self.audio.finish().await {
            Ok(stats) => info!(?stats, "playback finished"),
            Err(err) => self.node.emit(Event::Error {
                room: Some(self.room),
                message: format!("audio output: {err}"),
            }),
        }
        last.r#final = true;
        self.node.emit(Event::AudioStats(last));
        reason
    }

    async fn on_command(&mut self, command: RoomCommand) {
        match command {
            RoomCommand::SelfMuted(muted) => {
                self.self_muted = muted;
                self.audio.set_self_muted(muted || self.held);
                self.node.emit(Event::SelfMuted { muted });
            }
            RoomCommand::AudioStats(reply) => {
                let _ = reply.send(self.audio_stats(false).await);
            }
            RoomCommand::Invite {
                role,
                expires_at,
                reply,
            } => {
                let _ = reply.send(self.invite(role, expires_at));
            }
            RoomCommand::Carry { addr, reply } => {
                let carried = self.ask_to_carry(addr.clone()).await;
                if carried.is_ok() {
                    self.entries.push(addr);
                }
                let _ = reply.send(carried);
            }
        }
    }

    async fn on_event(&mut self, event: Event) {
        let me = self.node.key();
        match event {
            Event::ReachableViaRelay { addr } => {
                if self.relayed.contains(&addr) {
                    return;
                }
                self.relayed.insert(0, addr);
                // Links handed out so far may not work from outside: a fresh one that does.
                if matches!(self.role, Role::Host { .. })
                    && let Err(err) = self.invite(earshot_protocol::Role::Listener, None)
                {
                    self.error(err.to_string());
                }
            }
            event if event.room() != Some(self.room) => {}
            Event::RecordingStarted { .. } => {
                if self.is_host() {
                    self.start_recording().await;
                    self.guard_recording().await;
                }
                self.audio.set_recorded(true);
                self.check_consent().await;
            }
            Event::RecordingStopped { .. } => {
                if self.is_host() {
                    self.finish_recording().await;
                } else {
                    self.audio.set_recorded(false);
                    self.audio.flush_studio().await;
                }
                self.check_consent().await;
            }
            Event::RecordingConsent { member, .. } => {
                if member == me {
                    self.check_consent().await;
                }
                self.keep_consent(member).await;
                self.guard_recording().await;
            }
            Event::Support { name, envelope, .. } => self.keep_support(&envelope, name),
            Event::SupportConfirmed { envelope, .. } => self.keep_receipt(&envelope),
            Event::RoleChanged { member, .. } if member != me => self.guard_recording().await,
            // A member's own recording, of what it hears.
            Event::MemberRecordingStarted { member, .. } if member == me => {
                self.start_recording().await;
            }
            Event::MemberRecordingStopped { member, .. } if member == me => self.stop_recording(),
            Event::MemberJoined { member, name, .. } => {
                if let Some(recorder) = &self.recorder {
                    recorder.name_speakers([(member, name)]);
                }
                self.guard_recording().await;
            }
            Event::RoleChanged { member, role, .. } if member == me => {
                self.check_consent().await;
                self.update_voice(role).await
            }
            _ => {}
        }
    }

    /// Holds this member's microphone off while it is on stage in a recording it has not
    /// agreed to speak in, and asks it (once each time); with `--consent-recording`, agrees.
    async fn check_consent(&mut self) {
        if self.is_host() {
            return;
        }
        let Ok(Some(view)) = self.node.view(self.room).await else {
            return;
        };
        let held = view.state.needs_consent(&self.node.key());
        let changed = held != self.held;
        if changed {
            self.held = held;
            self.audio.set_self_muted(self.self_muted || held);
        }
        if !held {
            return;
        }
        match view.state.recording_since() {
            // Agreed, and again every few seconds until the room has it (a member just brought
            // on stage says it up the tree, where it can be lost).
            Some(since)
                if self.consenting
                    && self
                        .agreed_at
                        .is_none_or(|at| changed || at.elapsed() >= AGREE_AGAIN) =>
            {
                self.agreed_at = Some(std::time::Instant::now());
                let body = earshot_protocol::ControlBody::RecordingConsent { since };
                if let Err(err) = self.node.act(self.room, body).await {
                    self.error(format!("could not agree to be recorded: {err}"));
                }
            }
            _ if changed && !self.consenting => {
                self.node.emit(Event::ConsentAsked { room: self.room })
            }
            _ => {}
        }
    }

    /// At the host recording the room: the speakers on stage who have not agreed to speak in
    /// the recording are kept out of it (their nodes hold their microphones; this holds what
    /// comes anyway, and the moment before they heard of the recording).
    async fn guard_recording(&self) {
        let (Some(recorder), true) = (&self.recorder, self.is_host()) else {
            return;
        };
        let Ok(Some(view)) = self.node.view(self.room).await else {
            return;
        };
        let state = &view.state;
        recorder.tap().set_unconsented(
            state
                .members
                .keys()
                .filter(|key| state.needs_consent(key))
                .copied(),
        );
    }

    /// At a node recording the room: keeps `member`'s signed agreement with the recording.
    async fn keep_consent(&mut self, member: earshot_protocol::PeerKey) {
        let (Some(recorder), Ok(home)) = (&self.recorder, self.recordings_home_now()) else {
            return;
        };
        if self.consents_kept.contains(&member) {
            return;
        }
        let Ok(Some(view)) = self.node.view(self.room).await else {
            return;
        };
        let Some(known) = view.state.members.get(&member) else {
            return;
        };
        let Some(consent) = known.consent.as_deref().and_then(|envelope| {
            crate::recording::store::Consent::from_envelope(envelope, known.display_name())
        }) else {
            return;
        };
        if let Err(err) = home.recordings().add_consent(&recorder.id(), &consent) {
            self.error(format!(
                "could not keep {}'s agreement: {err}",
                consent.name
            ));
        }
        // And in the content, so that a replay carries it.
        recorder.tap().record_consent(consent.envelope);
        self.consents_kept.insert(member);
    }

    /// Keeps a member's support with the recording under way.
    fn keep_support(&self, envelope: &[u8], name: String) {
        let (Some(recorder), Ok(home)) = (&self.recorder, self.recordings_home_now()) else {
            return;
        };
        let Some(support) = crate::recording::store::Supported::from_envelope(envelope, name)
        else {
            return;
        };
        match home.recordings().add_support(&recorder.id(), &support) {
            // And in the content, so that a replay carries it.
            Ok(true) => recorder.tap().record_consent(support.envelope),
            Ok(false) => {}
            Err(err) => self.error(format!("could not keep {}'s support: {err}", support.name)),
        }
    }

    /// Keeps the host's receipt with the support it confirms.
    fn keep_receipt(&self, envelope: &[u8]) {
        let (Some(recorder), Ok(home)) = (&self.recorder, self.recordings_home_now()) else {
            return;
        };
        match home.recordings().confirm_support(&recorder.id(), envelope) {
            Ok(true) => recorder.tap().record_consent(envelope.to_vec()),
            Ok(false) => {}
            Err(err) => self.error(format!("could not keep the host's receipt: {err}")),
        }
    }

    fn is_host(&self) -> bool {
        matches!(self.role, Role::Host { .. })
    }

    fn error(&self, message: String) {
        self.node.emit(Event::Error {
            room: Some(self.room),
            message,
        });
    }

    /// Sends this member's voice to the host while it is on stage.
    async fn update_voice(&mut self, role: RoomRole) {
        if let Err(err) = self.audio.set_on_stage(role.on_stage()).await {
            self.error(err.to_string());
        }
    }

    fn audio_event(&self, event: AudioEvent) -> Event {
        match event {
            AudioEvent::Attached {
                parent,
                depth,
                repair,
            } => Event::AudioAttached {
                room: self.room,
                parent,
                depth,
                repair_ms: repair.map(|d| d.as_secs_f64() * 1000.0),
            },
            AudioEvent::Lost {
                parent,
                leaving,
                reason,
            } => Event::AudioLost {
                room: self.room,
                parent,
                leaving,
                reason,
            },
        }
    }

    /// This node's audio now, with its depth in the tree as its parent last said (the parent
    /// may have moved since this node attached).
    async fn audio_stats(&self, last: bool) -> Box<AudioStats> {
        let status = self.audio.status();
        let depth = self
            .node
            .tree(&self.room)
            .filter(|info| !last && status.position.is_some() && !info.path.is_empty())
            .map(|info| info.depth);
        let mut stats = stats_of(self.room, &status, depth);
        // Voices by speaker id, named by the stage of the host's latest view (and this node).
        let mut stage: Vec<earshot_protocol::PeerKey> = self
            .node
            .trees()
            .view(&self.room)
            .map(|view| view.stage.iter().map(|member| member.key).collect())
            .unwrap_or_default();
        stage.push(self.node.key());
        stats.levels = status
            .levels
            .iter()
            .filter_map(|(speaker, level)| {
                let key = stage.iter().find(|key| SpeakerId::of(key) == *speaker)?;
                Some(crate::event::SpeakerLevel {
                    peer_id: *key,
                    level: *level,
                })
            })
            .collect();
        Box::new(stats)
    }

    fn invite(
        &self,
        role: earshot_protocol::Role,
        expires_at: Option<earshot_protocol::Timestamp>,
    ) -> Result<earshot_protocol::InviteLink, RoomError> {
        let Role::Host { home, room, .. } = &self.role else {
            return Err(RoomError::NotHost {
                what: "issue invites here; use `earshot invite delegate` with your link",
            });
        };
        let now = clock::now();
        let grant = grant(role, Audience::Bearer, now, expires_at);
        let mut link = home.create_invite(room, grant, now)?;
        relayed_first(&mut link, &self.relayed);
        with_entries(&mut link, &self.entries);
        self.node.emit(Event::Invite {
            role,
            expires_at: grant.expires_at,
            link: link.clone(),
        });
        Ok(link)
    }

    async fn ask_to_carry(&self, addr: Multiaddr) -> Result<(), RoomError> {
        let Role::Host { home, room, .. } = &self.role else {
            return Err(RoomError::NotHost {
                what: "ask a relay to carry the room",
            });
        };
        let relay = carry(&self.node, home, room, addr).await?;
        self.node.emit(Event::RelayAdded {
            room: self.room,
            relay,
        });
        Ok(())
    }

    /// The data directory recordings go into, if open.
    fn recordings_home_now(&self) -> Result<Arc<Home>, RoomError> {
        match &self.role {
            Role::Host { home, .. }
            | Role::Member {
                home: Some(home), ..
            } => Ok(Arc::clone(home)),
            Role::Member { home: None, .. } => Err(RoomError::Closed),
        }
    }

    /// The data directory recordings go into: the host's, or a member's own (opened now).
    fn recordings_home(&mut self) -> Result<Arc<Home>, RoomError> {
        match &mut self.role {
            Role::Host { home, .. } => Ok(Arc::clone(home)),
            Role::Member { storage, home } => {
                if let Some(home) = home {
                    return Ok(Arc::clone(home));
                }
                let opened = Arc::new(Home::open(storage)?);
                *home = Some(Arc::clone(&opened));
                Ok(opened)
            }
        }
    }

    async fn start_recording(&mut self) {
        if self.recorder.is_some() {
            return;
        }
        self.consents_kept.clear();
        let home = match self.recordings_home() {
            Ok(home) => home,
            Err(err) => return self.error(format!("cannot record: {err}")),
        };
        let Ok(Some(view)) = self.node.view(self.room).await else {
            return;
        };
        // A private room's recording is sealed under a key of its own (kept sealed to this
        // node; given away only in its replay link).
        let private = (view.descriptor.visibility == earshot_protocol::Visibility::Private)
            .then(|| PrivateRecording::new(rand::random(), &self.node.key(), rand::random()))
            .flatten();
        let started = home.recordings().start(NewRecording {
            room: self.room,
            title: view.descriptor.title.clone(),
            host: view.descriptor.host,
            recorder: self.node.key(),
            started_at: clock::now(),
            start_media: crate::audio::media_now(),
            private,
        });
        match started {
            Ok(recorder) => {
                recorder.name_speakers(
                    view.state
                        .members
                        .values()
                        .map(|m| (m.key, m.display_name())),
                );
                recorder
                    .tap()
                    .record_sealed(&earshot_protocol::private::PrivateRecord::About {
                        title: view.descriptor.title.clone(),
                        names: view
                            .state
                            .members
                            .values()
                            .map(|m| (SpeakerId::of(&m.key).0, m.display_name()))
                            .collect(),
                    });
                self.audio.record(Some(recorder.tap()));
                self.node.emit(Event::Recording {
                    room: self.room,
                    recording: recorder.id(),
                });
                self.recorder = Some(recorder);
                self.recorded_stage = None;
                self.record_stage();
            }
            Err(err) => self.error(format!("cannot record: {err}")),
        }
    }

    /// Keeps the host's latest signed view with the recording when its stage changed (and when
    /// the recording starts): who was on stage, by key and name, in the host's word, so that a
    /// replay shows which voices the host vouched for.
    fn record_stage(&mut self) {
        let Some(recorder) = &self.recorder else {
            return;
        };
        let Some(view) = self.node.trees().view(&self.room) else {
            return;
        };
        let stage: Vec<(earshot_protocol::PeerKey, String)> = view
            .stage
            .iter()
            .map(|member| (member.key, member.name.clone()))
            .collect();
        if self.recorded_stage.as_ref() == Some(&stage) {
            return;
        }
        recorder.tap().record_stage(view.encode());
        self.recorded_stage = Some(stage);
    }

    /// Stops the room's recording, the studio tracks' last chunks in it: the live audio stops
    /// going in at once, this node's own track is handed over, and speakers' studio streams get
    /// [`STUDIO_GRACE`] to hand over theirs (each closes its stream when it has).
    async fn finish_recording(&mut self) {
        let Some(tap) = self.recorder.as_ref().map(|recorder| recorder.tap()) else {
            return;
        };
        self.audio.record(None);
        self.audio.set_recorded(false);
        self.audio.flush_studio().await;
        tap.studio_streams_closed(STUDIO_GRACE).await;
        self.stop_recording();
    }

    fn stop_recording(&mut self) {
        let Some(recorder) = self.recorder.take() else {
            return;
        };
        self.audio.record(None);
        match recorder.finish(clock::now()) {
            Ok(meta) => {
                self.node.emit(Event::RecordingSaved {
                    room: self.room,
                    recording: meta.id,
                    state: meta.state.as_str().to_owned(),
                    seconds: meta.duration().as_secs_f64(),
                    frames: meta.frames,
                    dropped: meta.dropped,
                });
                // The room's official recording is published as a replay at once: fetchable
                // by anyone given the link, and announced to the room while it is live.
                if let Role::Host { home, .. } = &self.role {
                    self.publish_replay(home, &meta);
                }
            }
            Err(err) => self.error(format!("the recording did not finish cleanly: {err}")),
        }
    }

    fn publish_replay(&self, home: &Home, meta: &RecordingMeta) {
        let published = Replays::open(home.store()).and_then(|replays| {
            replays.publish(home.recordings(), meta, home.identity().signing_key())
        });
        match published {
            Ok(manifest) => self.node.emit(Event::ReplayPublished {
                room: self.room,
                recording: meta.id,
                manifest: manifest.id(),
            }),
            Err(err) => self.error(format!("could not publish the recording: {err}")),
        }
    }
}

/// The event for an audio status.
fn stats_of(room: RoomId, status: &AudioStatus, depth: Option<u16>) -> AudioStats {
    let playback = &status.playback;
    AudioStats {
        room,
        parent: status.position.map(|p| p.parent),
        depth: depth.or(status.position.map(|p| p.depth)),
        children: status.children,
        received: status.received,
        relayed: status.relayed,
        dropped: status.dropped,
        capacity: status.capacity,
        child_cost: status.child_cost,
        not_selected: status.not_selected,
        speaking: status.speaking,
        self_muted: status.self_muted,
        expected: playback.expected,
        delivered: playback.received,
        played: playback.played,
        recovered: playback.recovered,
        concealed: playback.concealed,
        late: playback.late,
        skipped: playback.skipped,
        stretched: playback.stretched,
        buffer_ms: playback.buffer_ms,
        latency_samples: playback.latency.count,
        latency_p50_ms: playback.latency.percentile(50.0).map(u64::from),
        latency_p95_ms: playback.latency.percentile(95.0).map(u64::from),
        audience_loss_permille: status.audience_loss,
        audience_jitter_ms: (status.audience_jitter_ms > 0).then_some(status.audience_jitter_ms),
        studio_chunks: status.studio.map(|(sent, _)| sent),
        studio_lost: status.studio.map(|(_, lost)| lost),
        levels: Vec::new(),
        r#final: false,
    }
}
