//! A room for front ends: hosting or joining it with its audio, and everything the node does for
//! the person in it without being asked each time.
//!
//! [`Node::host_room`] and [`Node::join_room`] start a room; the [`Room`] handle they return
//! acts in it, and a task of its own ([`task`]) follows it: this node's voice while it is on
//! stage, the room's recording while its recording flag is on (a member's own recording when it
//! asks), the host's recording published as a replay when it is saved, replays published
//! meanwhile announced in the room, a fresh listener link when the host becomes reachable
//! through a relay, and this node's audio reported every second. Everything it does is said as
//! [`Event`]s on the node's event stream; the room's last event is [`Event::Closed`], followed
//! by the final [`Event::AudioStats`] once its audio has handed children over.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use earshot_protocol::state::RoomRole;
use earshot_protocol::{
    Audience, ControlBody, Grant, InviteLink, PeerKey, Role, RoomId, Timestamp,
};
use libp2p::{Multiaddr, PeerId};
use tokio::sync::{broadcast, mpsc, oneshot};

use crate::audio::io::{Input, Output, Resolved};
use crate::clock;
use crate::event::{CloseReason, Event, MemberInfo};
use crate::home::{Home, HomeError};
use crate::node::{CarryError, HostError, JoinError, Node, NodeStopped};
use crate::reachability::Reachability;
use crate::recording::replay::{ReplayError, ReplayServer, Replays};
use crate::rooms::ActError;
use crate::session::{AudioSession, SessionError};
use crate::store::RoomRecord;
use earshot_protocol::snapshot::UPCOMING_GRACE_MS;

mod task;

/// How long the links a host hands out are valid by default.
pub const LINK_VALIDITY: Duration = Duration::from_secs(7 * 24 * 3600);
/// How long a host with relays to use waits for a verdict on its reachability before handing out
/// its link (a link must work): past the planner's own deadline ([`VERDICT_WAIT`]) and a
/// reservation's round trip. Behind a real NAT that drops what it did not ask for, an AutoNAT
/// dial-back is not refused but lost, so the probe does not fail in time and the verdict is the
/// planner's, at `VERDICT_WAIT` (measured in the network lab: 8.1 s; the relayed address 6 ms
/// later); a shorter wait handed out a link without the relayed address, which nobody outside
/// could use. A host found reachable, or reachable through a relay, stops waiting at once.
///
/// [`VERDICT_WAIT`]: crate::reachability::VERDICT_WAIT
pub const REACHABILITY_WAIT: Duration =
    Duration::from_secs(crate::reachability::VERDICT_WAIT.as_secs() + 3);
/// How long a leaving node keeps its connections open so that its `Leave` goes out.
pub const LINGER: Duration = Duration::from_millis(300);
/// Commands waiting for a room's task.
const ROOM_COMMAND_CAP: usize = 16;
/// How often a joiner of a room that begins later tries to reach its host again, and how long
/// it tries before saying it waits.
const WAIT_FOR_HOST_RETRY: Duration = Duration::from_secs(3);
const WAIT_FOR_HOST_TOLD: Duration = Duration::from_secs(2);

/// How to host a room.
#[derive(Debug, Clone)]
pub struct HostOptions {
    /// The host's display name.
    pub name: String,
    /// What the host says (`None`: the microphone if there is one, else silence).
    pub input: Option<Input>,
    /// Where the speakers go (`None`: the speaker if there is one, else nowhere).
    pub output: Option<Output>,
    /// How many speakers are forwarded down the tree at once (the loudest).
    pub forward: usize,
    /// Community relays (addresses ending in `/p2p/RELAY`) to ask to carry the room.
    pub carriers: Vec<Multiaddr>,
    /// Keep a studio track while the room is recorded: the host's voice recorded before the
    /// network, at a higher bitrate ([`earshot_protocol::studio`]).
    pub studio: bool,
}

/// How to join a room.
#[derive(Debug, Clone)]
pub struct JoinOptions {
    /// This node's display name.
    pub name: String,
    pub input: Option<Input>,
    pub output: Option<Output>,
    /// Where a member keeps its own recordings, opened when it first records (so that other
    /// commands can use the data directory meanwhile).
    pub storage: PathBuf,
    /// While on stage in a recorded room, send the host a studio track: this member's voice
    /// recorded before the network, at a higher bitrate ([`earshot_protocol::studio`]).
    pub studio: bool,
    /// Agree at once to speak in any recording of the room when on stage (otherwise the
    /// microphone stays off until [`Room::consent_to_recording`]).
    pub consent_recording: bool,
}

/// Why a room could not start, or a room command failed.
#[derive(Debug, thiserror::Error)]
pub enum RoomError {
    #[error(transparent)]
    Host(#[from] HostError),
    #[error("cannot join: {0}")]
    Join(#[from] JoinError),
    #[error(transparent)]
    Act(#[from] ActError),
    #[error(transparent)]
    Audio(#[from] SessionError),
    #[error(transparent)]
    Home(#[from] HomeError),
    #[error(transparent)]
    Replay(#[from] ReplayError),
    #[error("the relay at {addr} refused: {source}")]
    Carry {
        addr: Multiaddr,
        #[source]
        source: CarryError,
    },
    #[error("{addr}: a relay's address must end in /p2p/PEERID")]
    RelayAddress { addr: Multiaddr },
    #[error("only the host can {what}")]
    NotHost { what: &'static str },
    #[error("the room's descriptor names an invalid host key")]
    BadHost,
    #[error("the room has closed")]
    Closed,
    #[error("the room is not being recorded: there is nothing to agree to")]
    NotRecorded,
    #[error("the host did not say: {0}")]
    Ask(#[from] crate::node::AttachError),
    #[error(transparent)]
    Stopped(#[from] NodeStopped),
}

/// A member named on the command line: by display name (case-insensitive) or a prefix of its
/// PeerId or key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FindError {
    #[error("nobody called {0:?} is in the room (see /who; a listener by their whole PeerId)")]
    Nobody(String),
    #[error("{0:?} matches several members; use more of their PeerId")]
    Several(String),
}

/// Finds a member of the room by display name, else by a prefix of its PeerId or key: among the
/// members `view`'s state knows, then the raised hands in the host's view (the audience's), and
/// at last anyone named by a whole PeerId (a listener who has not raised a hand).
pub fn find_member(view: &crate::node::RoomView, who: &str) -> Result<PeerKey, FindError> {
    let mut people: Vec<(PeerKey, String)> = view
        .state
        .members
        .values()
        .map(|m| (m.key, m.display_name()))
        .collect();
    if let Some(audience) = &view.view {
        for hand in &audience.hands {
            if !people.iter().any(|(key, _)| *key == hand.key) {
                people.push((hand.key, hand.name.clone()));
            }
        }
    }
    let by_name: Vec<&(PeerKey, String)> = people
        .iter()
        .filter(|(_, name)| name.eq_ignore_ascii_case(who))
        .collect();
    let matches: Vec<&(PeerKey, String)> = if by_name.is_empty() {
        people
            .iter()
            .filter(|(key, _)| {
                key.as_peer_id().to_string().starts_with(who)
                    || key.to_string().starts_with(&who.to_ascii_lowercase())
            })
            .collect()
    } else {
        by_name
    };
    match matches.as_slice() {
        [(key, _)] => Ok(*key),
        [] => who
            .parse::<libp2p::PeerId>()
            .ok()
            .and_then(|peer| PeerKey::from_peer_id(&peer).ok())
            .ok_or_else(|| FindError::Nobody(who.to_owned())),
        _ => Err(FindError::Several(who.to_owned())),
    }
}

/// What a room's task is asked to do.
#[derive(Debug)]
enum RoomCommand {
    SelfMuted(bool),
    AudioStats(oneshot::Sender<Box<crate::event::AudioStats>>),
    Invite {
        role: Role,
        expires_at: Option<Timestamp>,
        reply: oneshot::Sender<Result<InviteLink, RoomError>>,
    },
    Carry {
        addr: Multiaddr,
        reply: oneshot::Sender<Result<(), RoomError>>,
    },
}

/// A room this node hosts or joined, with its audio. Dropping the handle leaves the room's task
/// running until the room closes; [`Room::leave`] and [`Room::end`] close it.
#[derive(Debug)]
pub struct Room {
    id: RoomId,
    node: Node,
    commands: mpsc::Sender<RoomCommand>,
    task: tokio::task::JoinHandle<CloseReason>,
}

impl Node {
    /// Hosts `room` (one this node created in `home`): opens it, starts the host's audio and
    /// replay service, hands out a listener link (after a verdict on reachability when relays
    /// may be needed, relayed addresses first) in [`Event::Hosting`], asks `carriers` to carry
    /// it, and starts recording if the room was created to be recorded.
    pub async fn host_room(
        &self,
        home: Arc<Home>,
        room: RoomRecord,
        options: HostOptions,
    ) -> Result<Room, RoomError> {
        let id = room.descriptor.id;
        let mut events = self.subscribe();
        self.host_keeping(
            room.descriptor.clone(),
            &options.name,
            Some(home.store().clone()),
        )
        .await?;
        // Replays kept here are served from the host; those published while it runs (say, with
        // `earshot recordings publish`, through the control socket) are announced to the room.
        let replays = Replays::open(home.store())?;
        let server = self.serve_replays(replays.clone())?;
        let keeper = Arc::clone(&home);
        let announcer = crate::recording::replay::announce_published(
            self.clone(),
            &replays,
            id,
            self.dialable_addrs().await?,
            move |recording| {
                let recordings = keeper.recordings();
                let key = recordings
                    .key(recording, keeper.identity().signing_key())
                    .ok()??;
                let title = recordings.reveal(recording, &key).ok()?.title;
                Some((key, title))
            },
        );
        let input = self.endpoint(options.input, Input::auto);
        let output = self.endpoint(options.output, Output::auto);
        let audio = AudioSession::host(
            self,
            self.fanout(),
            id,
            input,
            output,
            options.forward,
            options.studio,
        )?;
        let now = crate::clock::now();
        let mut link = home.create_invite(&room, listener_grant(now, None), now)?;
        let verdict = if self.may_use_relays() {
            settle_reachability(&mut events, REACHABILITY_WAIT).await
        } else {
            None
        };
        let addrs = self.dialable_addrs().await?;
        relayed_first(&mut link, &addrs);
        // The community relays asked to carry the room are its entry points: the link names
        // them, so that listeners join through them rather than all at the host.
        let mut carried = Vec::new();
        let mut refusals = Vec::new();
        for addr in options.carriers {
            match carry(self, &home, &room, addr.clone()).await {
                Ok(relay) => carried.push((relay, addr)),
                Err(err) => refusals.push(err),
            }
        }
        // A private room has none: a relay is not in its key schedule, so it admits nobody.
        let entries: Vec<Multiaddr> =
            if room.descriptor.visibility == earshot_protocol::Visibility::Private {
                Vec::new()
            } else {
                carried.iter().map(|(_, addr)| addr.clone()).collect()
            };
        with_entries(&mut link, &entries);
        self.emit(Event::Hosting {
            room: id,
            title: room.descriptor.title.clone(),
            peer_id: self.peer_id(),
            addrs: addrs.clone(),
            reachability: verdict,
            listener_link: link,
        });
        let state = task::RoomTask::new(
            self.clone(),
            id,
            audio,
            task::Role::Host {
                home: Arc::clone(&home),
                room: Box::new(room.clone()),
                _server: server,
                _announcer: announcer,
            },
            addrs
                .iter()
                .filter(|addr| earshot_protocol::addr::is_relayed(addr))
                .cloned()
                .collect(),
            entries,
        );
        let handle = self.start_room(id, state, events);
        for (relay, _) in carried {
            self.emit(Event::RelayAdded { room: id, relay });
        }
        for err in refusals {
            self.emit(Event::Error {
                room: Some(id),
                message: err.to_string(),
            });
        }
        // A room created with --record is recorded from the start (and everyone is told).
        if room.descriptor.recording.host_records
            && let Err(err) = self.act(id, ControlBody::RecordingStarted).await
        {
            self.emit(Event::Error {
                room: Some(id),
                message: format!("cannot start recording: {err}"),
            });
        }
        Ok(handle)
    }

    /// Joins the room `link` invites to, with audio: a place in the relay tree (re-taken
    /// whenever the parent goes away), relayed on to this node's own children and played into
    /// the output; this member's voice while it is on stage. Says [`Event::Joined`], or
    /// [`Event::Rejected`] with the reason.
    pub async fn join_room(
        &self,
        link: InviteLink,
        options: JoinOptions,
    ) -> Result<Room, RoomError> {
        let id = link.capability.room;
        let events = self.subscribe();
        // A room that begins later: its host may not be there yet. Said once no answer came
        // for a moment; tried again until a while past the start.
        // (A link's start is an unsigned hint: one further ahead than a room may be announced
        // waits for nobody.)
        let early = link.starts_at.filter(|starts_at| {
            let now = clock::now();
            now < starts_at.plus_millis(UPCOMING_GRACE_MS)
                && *starts_at <= now.plus_millis(earshot_protocol::snapshot::MAX_SCHEDULE_AHEAD_MS)
        });
        let mut waiting = false;
        let view = loop {
            let attempt = self.join(link.clone(), &options.name);
            tokio::pin!(attempt);
            let result = match early {
                Some(starts_at) if !waiting => tokio::select! {
                    result = &mut attempt => result,
                    () = tokio::time::sleep(WAIT_FOR_HOST_TOLD) => {
                        waiting = true;
                        self.emit(Event::WaitingForHost { room: id, starts_at });
                        attempt.await
                    }
                },
                _ => attempt.await,
            };
            let err = match result {
                Ok(view) => break view,
                Err(err) => err,
            };
            // Not there yet: unreachable, silent, or up but not hosting the room yet.
            let not_yet = matches!(
                err,
                JoinError::Unreachable
                    | JoinError::NoAnswer(_)
                    | JoinError::Refused {
                        refusal: earshot_protocol::snapshot::Refusal::NotHost { .. }
                    }
            );
            if let (true, Some(starts_at)) = (not_yet, early)
                && clock::now() < starts_at.plus_millis(UPCOMING_GRACE_MS)
            {
                if !waiting {
                    waiting = true;
                    self.emit(Event::WaitingForHost {
                        room: id,
                        starts_at,
                    });
                }
                tokio::time::sleep(WAIT_FOR_HOST_RETRY).await;
                continue;
            }
            self.emit(Event::Rejected {
                room: Some(id),
                from: None,
                reason: err.to_string(),
            });
            return Err(err.into());
        };
        let me = self.key();
        let role = view.state.role_of(&me).unwrap_or(RoomRole::Listener);
        self.emit(Event::Joined {
            room: id,
            title: view.descriptor.title.clone(),
            role,
            peer_id: self.peer_id(),
            members: view
                .state
                .present()
                .into_iter()
                .map(MemberInfo::of)
                .collect(),
            recording: view.state.recording.value,
            starts_at: view.descriptor.starts_at(),
            support: view.descriptor.support.clone(),
        });
        let host = view
            .descriptor
            .host
            .to_peer_id()
            .map_err(|_| RoomError::BadHost)?;
        let input = self.endpoint(options.input, Input::auto);
        let output = self.endpoint(options.output, Output::auto);
        let mut audio = AudioSession::member(self, self.fanout(), id, host, input, output)?;
        if options.studio {
            audio.enable_studio();
            audio.set_recorded(view.state.recording.value);
        }
        // On stage in a recording it has not agreed to: not a frame goes out before it does
        // (the room's task asks, or agrees with `consent_recording`).
        if view.state.needs_consent(&me) {
            audio.set_self_muted(true);
        }
        if let Err(err) = audio.set_on_stage(role.on_stage()).await {
            self.emit(Event::Error {
                room: Some(id),
                message: err.to_string(),
            });
        }
        let state = task::RoomTask::new(
            self.clone(),
            id,
            audio,
            task::Role::Member {
                storage: options.storage,
                home: None,
            },
            Vec::new(),
            Vec::new(),
        )
        .consenting(options.consent_recording);
        Ok(self.start_room(id, state, events))
    }

    fn start_room(
        &self,
        id: RoomId,
        state: task::RoomTask,
        events: broadcast::Receiver<Event>,
    ) -> Room {
        let (commands, command_rx) = mpsc::channel(ROOM_COMMAND_CAP);
        let task = tokio::spawn(state.run(events, command_rx));
        Room {
            id,
            node: self.clone(),
            commands,
            task,
        }
    }

    /// Serves the replays kept in `replays` to peers that ask (`/earshot/recording/1`).
    pub fn serve_replays(&self, replays: Replays) -> Result<ReplayServer, ReplayError> {
        ReplayServer::start(self.streams(), replays)
    }

    /// The input or output asked for, else the sound card, else a fallback (saying so).
    fn endpoint<T>(&self, asked: Option<T>, auto: impl FnOnce() -> Resolved<T>) -> T {
        if let Some(asked) = asked {
            return asked;
        }
        match auto() {
            Resolved::Device(device) => device,
            Resolved::NoDevice { fallback, note } => {
                self.emit(Event::Note { message: note });
                fallback
            }
        }
    }
}

impl Room {
    pub fn id(&self) -> RoomId {
        self.id
    }

    /// Says something to the room (raise a hand, promote someone, chat …).
    pub async fn act(&self, body: ControlBody) -> Result<(), RoomError> {
        self.node.act(self.id, body).await?;
        Ok(())
    }

    /// The room as this node sees it now.
    pub async fn view(&self) -> Result<crate::node::RoomView, RoomError> {
        self.node.view(self.id).await?.ok_or(RoomError::Closed)
    }

    /// This node's place in the room's relay tree (`/tree`), said as [`Event::Tree`].
    pub async fn tree(&self) -> Result<Event, RoomError> {
        let view = self.view().await?;
        let info = self.node.tree(&self.id).ok_or(RoomError::Closed)?;
        Ok(Event::tree(self.id, &info, &view, self.node.key()))
    }

    /// Who is in the room (`/who`), said as [`Event::Who`].
    pub async fn who(&self) -> Result<Event, RoomError> {
        Ok(Event::who(self.id, &self.view().await?))
    }

    /// The listeners that arrived lately, newest first, a page of
    /// [`crate::rooms::LISTENERS_PAGE`] (`/who listeners [PAGE]`, counted from 1 there): asked of
    /// the host, said as [`Event::Listeners`].
    pub async fn listeners(&self, page: u32) -> Result<Event, RoomError> {
        let listeners = self.node.listeners(self.id, page).await?;
        Ok(Event::Listeners {
            room: self.id,
            page,
            listeners: listeners
                .into_iter()
                .map(|listener| crate::event::ListenerInfo {
                    peer_id: listener.key,
                    name: listener.name,
                })
                .collect(),
        })
    }

    /// `/record start|stop`: the host and moderators start and stop the room's recording (the
    /// host keeps it); anyone else records what they hear, for themselves, where the room
    /// allows it.
    pub async fn record(&self, on: bool) -> Result<(), RoomError> {
        let view = self.view().await?;
        let role = view
            .state
            .role_of(&self.node.key())
            .unwrap_or(RoomRole::Listener);
        let body = match (role >= RoomRole::Moderator, on) {
            (true, true) => ControlBody::RecordingStarted,
            (true, false) => ControlBody::RecordingStopped,
            (false, on) => ControlBody::MemberRecording { on },
        };
        self.act(body).await
    }

    /// `/consent`: agrees to speak in the recording under way (a signed acknowledgement the
    /// recording keeps); a microphone held off for want of it is on again. Nothing to agree to
    /// while the room is not recorded.
    pub async fn consent_to_recording(&self) -> Result<(), RoomError> {
        let view = self.view().await?;
        let since = view.state.recording_since().ok_or(RoomError::NotRecorded)?;
        self.act(ControlBody::RecordingConsent { since }).await
    }

    /// Turns this node's microphone off or on (frames are made but not sent).
    pub async fn set_self_muted(&self, muted: bool) -> Result<(), RoomError> {
        self.commands
            .send(RoomCommand::SelfMuted(muted))
            .await
            .map_err(|_| RoomError::Closed)
    }

    /// This node's audio now.
    pub async fn audio_stats(&self) -> Result<Box<crate::event::AudioStats>, RoomError> {
        let (reply, answer) = oneshot::channel();
        self.commands
            .send(RoomCommand::AudioStats(reply))
            .await
            .map_err(|_| RoomError::Closed)?;
        answer.await.map_err(|_| RoomError::Closed)
    }

    /// A new invite link (host only): bearer, with `role`, valid until `expires_at` (default
    /// [`LINK_VALIDITY`]), with this node's relayed addresses first. Also said as
    /// [`Event::Invite`].
    pub async fn invite(
        &self,
        role: Role,
        expires_at: Option<Timestamp>,
    ) -> Result<InviteLink, RoomError> {
        let (reply, answer) = oneshot::channel();
        self.commands
            .send(RoomCommand::Invite {
                role,
                expires_at,
                reply,
            })
            .await
            .map_err(|_| RoomError::Closed)?;
        answer.await.map_err(|_| RoomError::Closed)?
    }

    /// Asks the community relay at `addr` (ending in `/p2p/RELAY`) to carry the room (host
    /// only): it gets a listener invite bound to its key, joins, and takes many children in the
    /// tree. Said as [`Event::RelayAdded`].
    pub async fn ask_to_carry(&self, addr: Multiaddr) -> Result<(), RoomError> {
        let (reply, answer) = oneshot::channel();
        self.commands
            .send(RoomCommand::Carry { addr, reply })
            .await
            .map_err(|_| RoomError::Closed)?;
        answer.await.map_err(|_| RoomError::Closed)?
    }

    /// Leaves the room (the room hears a `Leave`, and [`Event::Closed`] follows);
    /// [`Room::finished`] then says when this node's part in it is over.
    pub async fn leave(&self) {
        let _ = self.node.leave(self.id).await;
        tokio::time::sleep(LINGER).await;
    }

    /// Ends the room for everyone (host and moderators).
    pub async fn end(&self) -> Result<(), RoomError> {
        self.act(ControlBody::RoomEnded).await?;
        tokio::time::sleep(LINGER).await;
        Ok(())
    }

    /// Waits until the room is over for this node (ended, left, removed) and its audio has
    /// finished; returns why.
    pub async fn finished(self) -> CloseReason {
        self.task.await.unwrap_or(CloseReason::Left)
    }
}

/// A bearer listener grant from `now` until `expires_at` (default [`LINK_VALIDITY`]).
fn listener_grant(now: Timestamp, expires_at: Option<Timestamp>) -> Grant {
    grant(Role::Listener, Audience::Bearer, now, expires_at)
}

fn grant(role: Role, audience: Audience, now: Timestamp, expires_at: Option<Timestamp>) -> Grant {
    let validity = u64::try_from(LINK_VALIDITY.as_millis()).unwrap_or(u64::MAX);
    Grant {
        audience,
        role,
        not_before: now,
        expires_at: expires_at.unwrap_or_else(|| now.plus_millis(validity)),
        depth: u8::from(role == Role::Moderator),
    }
}

/// Waits until this node is known to be reachable directly, or through a relay (which it
/// only reserves once AutoNAT found it private), or `wait` has passed. Returns the verdict.
async fn settle_reachability(
    events: &mut broadcast::Receiver<Event>,
    wait: Duration,
) -> Option<Reachability> {
    let mut verdict = None;
    let _ = tokio::time::timeout(wait, async {
        loop {
            match events.recv().await {
                Ok(Event::Reachability { status }) => {
                    verdict = Some(status);
                    if status == Reachability::Public {
                        return;
                    }
                }
                Ok(Event::ReachableViaRelay { .. }) => {
                    verdict = Some(Reachability::Private);
                    return;
                }
                Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => return,
            }
        }
    })
    .await;
    verdict
}

/// Puts the relayed addresses among `addrs` first in the link's addresses: a host that is
/// reachable through a relay may not be reachable any other way.
/// Asks the community relay at `addr` (ending in `/p2p/RELAY`) to carry `room`, which this
/// node hosts: it gets a listener invite bound to its key. Returns the relay.
async fn carry(
    node: &Node,
    home: &Home,
    room: &RoomRecord,
    addr: Multiaddr,
) -> Result<PeerId, RoomError> {
    let relay = earshot_protocol::addr::peer_of(&addr)
        .ok_or_else(|| RoomError::RelayAddress { addr: addr.clone() })?;
    let key = PeerKey::from_peer_id(&relay)
        .map_err(|_| RoomError::RelayAddress { addr: addr.clone() })?;
    let now = crate::clock::now();
    let mut grant = listener_grant(now, None);
    grant.audience = Audience::Bound(key);
    let link = home.create_invite(room, grant, now)?;
    node.ask_to_carry(relay, vec![addr.clone()], &link)
        .await
        .map_err(|source| RoomError::Carry { addr, source })?;
    Ok(relay)
}

/// Most of a link's addresses that name entry points (the rest are the host's).
const MAX_LINK_ENTRIES: usize = 2;

/// Puts up to [`MAX_LINK_ENTRIES`] of the room's entry points (community relays carrying it,
/// addresses ending in `/p2p/RELAY`) into `link`, after the host's first addresses: a listener
/// joins through one of them, and asks the host only if it does not admit it.
fn with_entries(link: &mut InviteLink, entries: &[Multiaddr]) {
    if entries.is_empty() {
        return;
    }
    let mut chosen: Vec<Multiaddr> = Vec::new();
    for addr in entries {
        let peer = earshot_protocol::addr::peer_of(addr);
        if peer.is_some()
            && !chosen
                .iter()
                .any(|c| earshot_protocol::addr::peer_of(c) == peer)
        {
            chosen.push(addr.clone());
        }
    }
    // The newest carriers first: a relay that stopped carrying is likelier among the old.
    chosen.reverse();
    chosen.truncate(MAX_LINK_ENTRIES);
    link.bootstrap.retain(|addr| !chosen.contains(addr));
    link.bootstrap
        .truncate(earshot_protocol::link::MAX_BOOTSTRAP_ADDRS - chosen.len());
    link.bootstrap.extend(chosen);
}

fn relayed_first(link: &mut InviteLink, addrs: &[Multiaddr]) {
    let circuits: Vec<Multiaddr> = addrs
        .iter()
        .filter(|addr| earshot_protocol::addr::is_relayed(addr))
        .cloned()
        .collect();
    if !circuits.is_empty() {
        link.bootstrap.retain(|addr| !circuits.contains(addr));
        link.bootstrap.splice(0..0, circuits);
        link.bootstrap
            .truncate(earshot_protocol::link::MAX_BOOTSTRAP_ADDRS);
    }
}

#[cfg(test)]
mod tests;
