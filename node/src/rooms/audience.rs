//! The audience tier in the rooms machine. Listeners are not on the room's topic: they join
//! through the host (which places them in the relay tree and answers with its latest view),
//! know the room from the host's signed views and the envelopes it relays down the tree, and say
//! what they have to say (hands, chat, leaving) up the tree to the host, which takes it on the
//! room's behalf ([`HostAudience`]). A listener the stage promotes steps up: it follows the topic
//! and joins again, through the host, as a member of the stage.

use earshot_protocol::audience::exclusion::{EXCLUSION_QUORUM, Verdict};
use earshot_protocol::audience::host::{AudiencePolicy, HostAudience, Taken};
use earshot_protocol::audience::relayed::Relayed;
use earshot_protocol::audience::wire::{Down, Newcomer, Report};
use earshot_protocol::audience::{AudienceView, Ticket};
use earshot_protocol::envelope::{Authority, Envelope};
use earshot_protocol::snapshot::{Placement, Refusal, RoomRequest, RoomResponse};
use earshot_protocol::state::{MAX_CLOCK_SKEW_MS, MAX_MESSAGE_AGE_MS, RoomChange, RoomState};
use earshot_protocol::{ControlBody, PeerKey, Role, RoomDescriptor, RoomId, Verified};
use sha2::{Digest, Sha256};
use tracing::{debug, info, warn};

use super::joined::{Joined, Tier};
use super::said::said;
use super::{Now, Rooms};
use crate::effect::Effect;
use crate::event::{CloseReason, Event};
use crate::node::pending::{Pending, PendingJoin};
use crate::node::{BadAnswer, JoinError, RoomView};
use crate::rooms::ActError;

/// Listeners per page of `/who listeners`.
pub const LISTENERS_PAGE: usize = 50;
/// Relayed envelopes an audience member remembers, to drop one that comes twice.
const SEEN_RELAYED: usize = 256;

impl Rooms {
    /// Whether `link` makes this node a member of the audience (a listener's invite), rather
    /// than of the stage.
    pub fn joins_audience(link: &earshot_protocol::InviteLink) -> bool {
        link.capability.role == Role::Listener
    }

    /// The host's side of an audience member's `Join` (checked by the fold, not applied to it):
    /// a place in the tree, the latest view, recent chat.
    pub(super) fn admit_audience(
        &mut self,
        now: Now,
        envelope: &Verified<Envelope>,
        keys: Option<serde_bytes::ByteBuf>,
        place: impl FnOnce(RoomId, PeerKey) -> Placing,
        effects: &mut Vec<Effect>,
    ) -> Result<RoomResponse, Refusal> {
        let room = envelope.room;
        let author = envelope.author;
        let signing = self.signing.clone();
        let joined = self
            .joined
            .get_mut(&room)
            .ok_or(Refusal::NotHost { room })?;
        let name = match &envelope.body {
            ControlBody::Join { name } => name.trim().to_owned(),
            _ => return Err(Refusal::NotAJoin),
        };
        if !joined.is_host() {
            return super::entry::entry_admits(joined, room, author, name, place, effects);
        }
        // Nothing free right now: the listener is in the audience all the same and asks the
        // host for a place again, showing the ticket it gets now.
        let (placement, ticket) = match place(room, author) {
            Placing::At(placement) => (Some(placement), None),
            Placing::Later(ticket) => (None, Some(serde_bytes::ByteBuf::from(ticket))),
            Placing::Refused(refusal) => {
                debug!(%room, %refusal, "admitted a listener without a place");
                (None, None)
            }
        };
        if let Authority::Capability(capability) = &envelope.authority {
            joined.audience_joined_with(author, capability.id());
        }
        let state = joined.state.clone();
        let audience = joined
            .audience
            .get_or_insert_with(|| HostAudience::new(room, AudiencePolicy::default(), now.instant));
        // The join names the listener (for its hands and chat), and it is a newcomer.
        audience.take(now.instant, now.wall, envelope, &state);
        audience.arrived(Newcomer { key: author, name });
        // The room as of now (the tree's latest view may be a second old).
        let listeners = joined.view.as_ref().map_or(0, |view| view.listeners);
        let view = audience.snapshot(now.wall, &state, listeners, &signing);
        info!(%room, listener = %author.short(), "admitted a listener");
        Ok(RoomResponse::Admitted {
            descriptor: serde_bytes::ByteBuf::from(joined.descriptor.encode()),
            view: serde_bytes::ByteBuf::from(view.encode()),
            placement,
            ticket,
            chat: joined.recent_chat(),
            keys,
        })
    }

    /// The host admitted this node to the audience.
    pub(super) fn audience_joined(
        &mut self,
        now: Now,
        pending: PendingJoin,
        answer: Admitted,
    ) -> Vec<Effect> {
        let room = pending.link.capability.room;
        let host = pending.link.host;
        let read = || -> Result<(RoomDescriptor, AudienceView, Option<Placement>), BadAnswer> {
            let descriptor = RoomDescriptor::decode_verified(&answer.descriptor)
                .map_err(|err| BadAnswer::Invalid {
                    what: "room descriptor",
                    detail: err.to_string(),
                })?
                .into_inner();
            if descriptor.id != room || descriptor.host != host {
                return Err(BadAnswer::Invalid {
                    what: "room descriptor",
                    detail: "it is for another room".into(),
                });
            }
            let view = AudienceView::decode_verified(&answer.view, room, &host)
                .map_err(|err| BadAnswer::Invalid {
                    what: "view",
                    detail: err.to_string(),
                })?
                .into_inner();
            // A placement whose ticket is not for this node is no placement: it asks the host.
            let placement = answer.placement.filter(|placement| {
                Ticket::decode(&placement.ticket).is_ok_and(|ticket| {
                    ticket.check_chain(room, host, now.wall).is_ok()
                        && ticket.leaf().is_some_and(|leaf| leaf.child == self.me)
                })
            });
            Ok((descriptor, view, placement))
        };
        let (descriptor, view, placement) = match read() {
            Ok(read) => read,
            Err(err) => return self.join_failed(pending, JoinError::BadAnswer(err)),
        };
        self.joining.remove(&room);
        let state = RoomState::of_audience_view(host, &view, Some((self.me, &pending.name)));
        let mut joined = Joined::new(
            descriptor,
            state,
            Authority::Capability(pending.link.capability.clone()),
            pending.name.clone(),
            pending.next_seq,
            now.instant,
        );
        joined.tier = Tier::Audience;
        joined.link = Some(pending.link.clone());
        joined.view = Some(view.clone());
        let mut effects = vec![Effect::OpenTree { room, host }];
        // What was said lately (chat, support, the host's receipts), as the host relayed it.
        for bytes in &answer.chat {
            if let Ok(envelope) = Relayed::decode_verified(bytes, room, &host)
                && let Some(event) = said(&joined, room, &envelope)
            {
                joined.saw(bytes);
                effects.push(Effect::Emit(event));
            }
        }
        let room_view = RoomView {
            descriptor: joined.descriptor.clone(),
            state: joined.state.clone(),
            audience: true,
            view: Some(view),
            placement,
            ticket: answer.ticket.map(|ticket| ticket.into_vec()),
        };
        self.joined.insert(room, joined);
        info!(%room, "joined the audience");
        if let Some(reply) = pending.reply {
            effects.push(Effect::Joined {
                reply,
                view: Box::new(room_view),
            });
        }
        effects
    }

    /// Something for this node, in the clear (or opened).
    pub(super) fn on_down_opened(&mut self, now: Now, room: RoomId, down: Down) -> Vec<Effect> {
        let me = self.me;
        let Some(joined) = self.joined.get_mut(&room) else {
            return Vec::new();
        };
        let host = joined.descriptor.host;
        match down {
            Down::View(bytes) => {
                let Ok(view) = AudienceView::decode_verified(&bytes, room, &host) else {
                    return Vec::new();
                };
                self.on_view(now, room, view.into_inner())
            }
            Down::Envelope(bytes) => {
                // The stage hears everything on the topic already.
                if joined.tier == Tier::Stage || !joined.saw(&bytes) {
                    return Vec::new();
                }
                match Relayed::decode_verified(&bytes, room, &host) {
                    Ok(envelope) => self.on_relayed(now, room, &envelope, &bytes),
                    Err(err) => {
                        debug!(%room, %err, "refused an envelope from the parent");
                        Vec::new()
                    }
                }
            }
            Down::Notice { to, text } if to == me => {
                vec![Effect::Emit(Event::Notice { room, text })]
            }
            Down::Keys(bytes) => {
                let mut effects = Vec::new();
                self.private_keys(room, &bytes, &mut effects);
                effects
            }
            Down::Notice { .. } | Down::Path(_) | Down::Sealed(_) | Down::Mark(_) => Vec::new(),
        }
    }

    /// The host's view: the audience's room (its state), and for everyone, how many listen and
    /// what they applaud.
    fn on_view(&mut self, now: Now, room: RoomId, view: AudienceView) -> Vec<Effect> {
        let me = self.me;
        let Some(joined) = self.joined.get_mut(&room) else {
            return Vec::new();
        };
        if joined
            .view
            .as_ref()
            .is_some_and(|held| held.seq >= view.seq)
        {
            return Vec::new();
        }
        let mut effects = Vec::new();
        view_events(room, joined.view.as_ref(), &view, &mut effects);
        if joined.tier == Tier::Stage {
            audience_hands(room, joined, &view, &mut effects);
        }
        let mut changes = Vec::new();
        if joined.tier == Tier::Audience && !joined.stepping_up {
            let host = joined.descriptor.host;
            let newer = RoomState::of_audience_view(host, &view, Some((me, &joined.display_name)));
            changes = joined.state.changes_to(&newer);
            joined.state = newer;
        }
        let removed = view.banned.contains(&me);
        let ended = view.ended;
        let keys = view.keys;
        joined.view = Some(view);
        joined.heard_at = now.instant;
        self.changed(room, changes, &mut effects);
        self.private_view(now, room, keys, &mut effects);
        if joined_tier(self, &room) == Some(Tier::Audience) {
            if ended {
                effects.extend(self.close(now, room, CloseReason::Ended));
            } else if removed {
                effects.extend(self.close(now, room, CloseReason::Removed));
            }
        }
        effects
    }

    /// An envelope the host relayed to the audience.
    fn on_relayed(
        &mut self,
        now: Now,
        room: RoomId,
        envelope: &Verified<Envelope>,
        bytes: &[u8],
    ) -> Vec<Effect> {
        let me = self.me;
        // Old news (or from the future) is not news.
        let fresh = envelope.sent_at.plus_millis(MAX_MESSAGE_AGE_MS) >= now.wall
            && envelope.sent_at <= now.wall.plus_millis(MAX_CLOCK_SKEW_MS);
        let Some(joined) = self.joined.get_mut(&room) else {
            return Vec::new();
        };
        if !fresh {
            return Vec::new();
        }
        joined.remember_relayed(bytes);
        super::direct::relayed_back(joined, envelope);
        let mut effects = Vec::new();
        if let Some(event) = said(joined, room, envelope) {
            effects.push(Effect::Emit(event));
            return effects;
        }
        match &envelope.body {
            ControlBody::Join { .. } if envelope.author != me => {
                // Relayed only when the joiner is on stage (a speaker's link): heard at once.
                joined.promoted(envelope.author, now.instant);
                effects.push(Effect::Changed {
                    room,
                    changes: Vec::new(),
                });
            }
            ControlBody::Promote { target, .. } => {
                // Heard at once: the view saying so is up to a second away.
                joined.promoted(*target, now.instant);
                effects.push(Effect::Changed {
                    room,
                    changes: Vec::new(),
                });
                if *target == me && !joined.stepping_up {
                    effects.extend(self.step_up(now, room));
                }
            }
            ControlBody::Remove { target, .. } if *target == me => {
                effects.extend(self.close(now, room, CloseReason::Removed));
            }
            ControlBody::RoomEnded => {
                let change = RoomChange::RoomEnded {
                    by: envelope.author,
                };
                effects.push(Effect::Emit(Event::of_change(room, &change, &joined.state)));
                effects.extend(self.close(now, room, CloseReason::Ended));
            }
            // Told at once, not a view later: whoever listens knows when they are recorded.
            ControlBody::RecordingStarted | ControlBody::RecordingStopped => {
                let on = matches!(envelope.body, ControlBody::RecordingStarted);
                if joined.state.recording.value != on {
                    joined.state.recording.value = on;
                    let by = envelope.author;
                    let change = if on {
                        RoomChange::RecordingStarted { by }
                    } else {
                        RoomChange::RecordingStopped { by }
                    };
                    self.changed(room, vec![change], &mut effects);
                }
            }
            ControlBody::MemberRecording { on } => {
                let change = RoomChange::MemberRecording {
                    member: envelope.author,
                    on: *on,
                };
                self.changed(room, vec![change], &mut effects);
            }
            ControlBody::ReplayAvailable {
                manifest,
                recording,
                recorder,
                title,
                bytes,
                addrs,
                key,
            } => {
                let change = RoomChange::ReplayAvailable {
                    by: envelope.author,
                    manifest: *manifest,
                    recording: *recording,
                    recorder: *recorder,
                    title: title.clone(),
                    bytes: *bytes,
                    addrs: addrs.clone(),
                    key: key.clone(),
                };
                self.changed(room, vec![change], &mut effects);
            }
            _ => {}
        }
        effects
    }

    /// The stage promoted this listener: it follows the room's topic and joins again through
    /// the host, now as a member of the stage (the host's answer is the room's snapshot).
    fn step_up(&mut self, now: Now, room: RoomId) -> Vec<Effect> {
        let signing = self.signing.clone();
        let Some(joined) = self.joined.get_mut(&room) else {
            return Vec::new();
        };
        let Some(link) = joined.link.clone() else {
            return Vec::new();
        };
        let name = joined.display_name.clone();
        let join =
            match joined.sign_only(&signing, now.wall, ControlBody::Join { name: name.clone() }) {
                Ok(envelope) => envelope,
                Err(err) => {
                    warn!(%room, %err, "could not step up to the stage");
                    return Vec::new();
                }
            };
        joined.stepping_up = true;
        let Ok(host) = link.host.to_peer_id() else {
            return Vec::new();
        };
        info!(%room, "promoted: stepping up to the stage");
        vec![
            Effect::Subscribe(room),
            Effect::Request {
                peer: host,
                addrs: joined.descriptor.addrs(),
                request: RoomRequest::Join {
                    envelope: serde_bytes::ByteBuf::from(join.encode()),
                },
                then: Pending::Join(Box::new(PendingJoin {
                    link,
                    name,
                    reply: None,
                    next_seq: joined.next_seq(),
                    entry: None,
                    envelope: join.encode(),
                    busy_tries: 0,
                })),
            },
        ]
    }

    /// This audience member's own action: hands, chat and leaving go up the tree to the host;
    /// a reaction is counted in its next report.
    pub(super) fn audience_own_act(
        &mut self,
        now: Now,
        room: RoomId,
        body: ControlBody,
    ) -> Result<(Vec<RoomChange>, Vec<Effect>), ActError> {
        let signing = self.signing.clone();
        let joined = self
            .joined
            .get_mut(&room)
            .ok_or(ActError::NotInRoom(room))?;
        match body {
            ControlBody::Reaction { emoji } => {
                // Within the protocol's limits, like any envelope's.
                ControlBody::Reaction {
                    emoji: emoji.clone(),
                }
                .check_limits()
                .map_err(|err| ActError::Envelope(err.into()))?;
                if joined.private.is_none() {
                    return Ok((Vec::new(), vec![Effect::React { room, emoji }]));
                }
                // In a private room a report's counts would be read by every relay on the way:
                // the reaction goes up sealed, like chat.
                let envelope =
                    joined.sign_only(&signing, now.wall, ControlBody::Reaction { emoji })?;
                let act = self.act_up(&room, envelope.encode());
                Ok((
                    Vec::new(),
                    vec![Effect::Up {
                        room,
                        act,
                        urgent: false,
                    }],
                ))
            }
            ControlBody::MemberRecording { .. }
                if !joined.descriptor.recording.members_may_record =>
            {
                Err(ActError::Rejected(
                    earshot_protocol::state::Rejected::NotAllowed {
                        role: earshot_protocol::state::RoomRole::Listener,
                        action: "record (this room does not let members record)",
                    },
                ))
            }
            body @ (ControlBody::RaiseHand
            | ControlBody::Accuse { .. }
            | ControlBody::LowerHand
            | ControlBody::Chat { .. }
            | ControlBody::Support { .. }
            | ControlBody::MemberRecording { .. }
            | ControlBody::RecordingConsent { .. }
            | ControlBody::Leave) => {
                let urgent = matches!(body, ControlBody::Leave);
                let envelope = joined.sign_only(&signing, now.wall, body)?;
                let act = self.act_up(&room, envelope.encode());
                self.await_relayed(now.instant, room, &envelope, &act);
                Ok((Vec::new(), vec![Effect::Up { room, act, urgent }]))
            }
            _ => Err(ActError::Audience),
        }
    }

    /// At the host: a listener's action, come up the tree.
    pub fn audience_act(&mut self, now: Now, room: RoomId, bytes: &[u8]) -> Vec<Effect> {
        self.audience_act_via(now, room, &[], bytes)
    }

    /// [`Self::audience_act`], come up along `via` (the host's child first).
    pub fn audience_act_via(
        &mut self,
        now: Now,
        room: RoomId,
        via: &[PeerKey],
        bytes: &[u8],
    ) -> Vec<Effect> {
        let Some(bytes) = self.opened_act(&room, bytes) else {
            return Vec::new();
        };
        let Ok(envelope) = Envelope::decode_verified(&bytes) else {
            return Vec::new();
        };
        let signing = self.signing.clone();
        let Some(joined) = self.joined.get_mut(&room).filter(|j| j.is_host()) else {
            return Vec::new();
        };
        let state = joined.state.clone();
        let audience = joined
            .audience
            .get_or_insert_with(|| HostAudience::new(room, AudiencePolicy::default(), now.instant));
        let author = envelope.author;
        let mut effects = Vec::new();
        let taken = audience.take_via(now.instant, now.wall, &envelope, &state, via);
        debug!(%room, author = %author.short(), ?taken, "an audience action");
        match taken {
            Taken::Relay(bytes) => {
                // A chat line let through: the stage hears it on the topic, the audience down
                // the tree, and the host folds it like any.
                match joined.state.apply(now.wall, &envelope) {
                    Ok(changes) => {
                        effects.push(Effect::Publish {
                            room,
                            bytes: bytes.clone(),
                            since: now.instant,
                        });
                        let relayed = Relayed::sign(&signing, room, bytes).encode();
                        joined.remember_relayed(&relayed);
                        self.envelope_down(room, relayed, &mut effects);
                        self.changed(room, changes, &mut effects);
                    }
                    Err(reason) => debug!(%room, %reason, "an audience chat line did not fold"),
                }
            }
            Taken::Hands => {
                let name = audience.name_of(&author);
                let event = match envelope.body {
                    ControlBody::RaiseHand => Some(Event::HandRaised {
                        room,
                        member: author,
                        name,
                    }),
                    ControlBody::LowerHand => Some(Event::HandLowered {
                        room,
                        member: author,
                        name,
                    }),
                    _ => None,
                };
                effects.extend(event.map(Effect::Emit));
            }
            Taken::Refused { to, notice } => effects.push(Effect::Notice {
                room,
                to,
                text: notice,
            }),
            Taken::Accused {
                parent,
                reason,
                verdict,
            } => {
                // A stranger's words: printed on one line, no escapes.
                let reason: String = reason.chars().filter(|c| !c.is_control()).collect();
                match verdict {
                    Ok(verdict) => {
                        let (accusers, excluded) = match verdict {
                            Verdict::Noted { accusers } => (accusers, false),
                            Verdict::Excluded => (EXCLUSION_QUORUM, true),
                        };
                        info!(%room, relay = %parent.short(), by = %author.short(), %reason,
                            accusers, excluded, "a listener accused its relay");
                        effects.push(Effect::Emit(Event::RelayAccused {
                            room,
                            relay: parent,
                            by: author,
                            reason,
                            accusers,
                            excluded,
                        }));
                    }
                    Err(dismissed) => {
                        debug!(%room, relay = %parent.short(), by = %author.short(), %dismissed,
                            "an accusation did not count");
                    }
                }
            }
            Taken::Dropped => {}
        }
        effects
    }

    /// At the host: its subtree's report (reactions to total, newcomers to remember, the
    /// audience's loss to advise the encoders on).
    pub fn audience_report(&mut self, now: std::time::Instant, room: RoomId, report: Report) {
        if let Some(audience) = self
            .joined
            .get_mut(&room)
            .and_then(|joined| joined.audience.as_mut())
        {
            audience.report(report, now);
        }
    }

    /// At the host: the listeners that arrived lately, newest first, `page` of
    /// [`LISTENERS_PAGE`].
    pub fn listeners_page(&self, room: &RoomId, page: u32) -> Result<Vec<Newcomer>, Refusal> {
        let joined = self
            .joined
            .get(room)
            .filter(|joined| joined.is_host())
            .ok_or(Refusal::NotHost { room: *room })?;
        Ok(joined
            .audience
            .as_ref()
            .map(|audience| {
                audience
                    .recent_listeners(usize::try_from(page).unwrap_or(usize::MAX), LISTENERS_PAGE)
            })
            .unwrap_or_default())
    }

    /// At the host, every tick: the view its audience is due, if one is.
    pub(super) fn host_view(
        &mut self,
        now: Now,
        room: RoomId,
        tree_size: u32,
        effects: &mut Vec<Effect>,
    ) {
        let signing = self.signing.clone();
        let Some(joined) = self.joined.get_mut(&room).filter(|j| j.is_host()) else {
            return;
        };
        // The tree counts the host and the stage members that listen through it.
        let stage = u32::try_from(joined.state.stage().len()).unwrap_or(u32::MAX);
        let listeners = tree_size.saturating_sub(stage.max(1));
        let state = &joined.state;
        let audience = joined
            .audience
            .get_or_insert_with(|| HostAudience::new(room, AudiencePolicy::default(), now.instant));
        let Some(view) = audience.view(now.instant, now.wall, state, listeners, &signing) else {
            return;
        };
        view_events(room, joined.view.as_ref(), &view, effects);
        joined.view = Some(view.clone());
        self.view_down(room, &view, effects);
    }

    /// At the host, ending the room: the view that says so, at once.
    pub(super) fn final_view(&mut self, now: Now, room: RoomId, effects: &mut Vec<Effect>) {
        let signing = self.signing.clone();
        let Some(joined) = self.joined.get_mut(&room).filter(|j| j.is_host()) else {
            return;
        };
        let listeners = joined.view.as_ref().map_or(0, |view| view.listeners);
        let Some(audience) = joined.audience.as_mut() else {
            return;
        };
        let view = audience.snapshot(now.wall, &joined.state, listeners, &signing);
        self.view_down(room, &view, effects);
    }

    /// At the host: relays what the audience must hear of the stage's envelopes down the tree
    /// (chat, promotions, removals, replays, the room's end), countersigned.
    pub(super) fn relay_down(
        &mut self,
        room: RoomId,
        envelope: &Envelope,
        effects: &mut Vec<Effect>,
    ) {
        let relayable = matches!(
            envelope.body,
            ControlBody::Chat { .. }
                | ControlBody::Support { .. }
                | ControlBody::SupportReceipt { .. }
                | ControlBody::Promote { .. }
                | ControlBody::Remove { .. }
                | ControlBody::RoomEnded
                | ControlBody::ReplayAvailable { .. }
                | ControlBody::MemberRecording { .. }
                | ControlBody::RecordingStarted
                | ControlBody::RecordingStopped
        );
        let Some(joined) = self.joined.get_mut(&room).filter(|j| j.is_host()) else {
            return;
        };
        // Someone joining straight onto the stage (a speaker's link): the audience hears them
        // at once rather than a view later.
        let onto_stage = matches!(envelope.body, ControlBody::Join { .. })
            && joined
                .state
                .members
                .get(&envelope.author)
                .is_some_and(|member| member.role().on_stage());
        if !relayable && !onto_stage {
            return;
        }
        let relayed = Relayed::sign(&self.signing, room, envelope.encode()).encode();
        // What newcomers are told was said lately.
        if matches!(
            envelope.body,
            ControlBody::Chat { .. }
                | ControlBody::Support { .. }
                | ControlBody::SupportReceipt { .. }
        ) {
            joined.remember_relayed(&relayed);
        }
        self.envelope_down(room, relayed, effects);
    }
}

/// What an audience member's join was answered with.
#[derive(Debug)]
pub(super) struct Admitted {
    pub descriptor: serde_bytes::ByteBuf,
    pub view: serde_bytes::ByteBuf,
    pub placement: Option<Placement>,
    pub ticket: Option<serde_bytes::ByteBuf>,
    pub chat: Vec<serde_bytes::ByteBuf>,
}

/// Where the host puts a listener it admits.
#[derive(Debug)]
pub enum Placing {
    /// A place in the tree.
    At(Placement),
    /// No place yet: a ticket to show when asking again.
    Later(Vec<u8>),
    /// No place, no ticket.
    Refused(Refusal),
}

fn joined_tier(rooms: &Rooms, room: &RoomId) -> Option<Tier> {
    rooms.joined.get(room).map(|joined| joined.tier)
}

/// Events for a new view: the audience's size and hands when they changed, its reactions.
fn view_events(
    room: RoomId,
    before: Option<&AudienceView>,
    view: &AudienceView,
    effects: &mut Vec<Effect>,
) {
    let counts = |v: &AudienceView| (v.listeners, v.hands_total);
    if before.map(counts) != Some(counts(view)) {
        effects.push(Effect::Emit(Event::Audience {
            room,
            listeners: view.listeners,
            hands: view.hands_total,
        }));
    }
    if !view.reactions.is_empty() {
        effects.push(Effect::Emit(Event::Reactions {
            room,
            reactions: view
                .reactions
                .iter()
                .map(|r| (r.emoji.clone(), r.count))
                .collect(),
        }));
    }
}

/// For the stage: the audience's hands raised and lowered since the view before (the stage's
/// own are in its fold).
fn audience_hands(room: RoomId, joined: &Joined, view: &AudienceView, effects: &mut Vec<Effect>) {
    let in_fold = |key: &PeerKey| {
        joined
            .state
            .members
            .get(key)
            .is_some_and(|member| joined.state.is_present(member))
    };
    let before: Vec<&earshot_protocol::audience::Hand> = joined
        .view
        .as_ref()
        .map(|before| before.hands.iter().collect())
        .unwrap_or_default();
    for hand in view.hands.iter().filter(|hand| !in_fold(&hand.key)) {
        if !before.iter().any(|b| b.key == hand.key) {
            effects.push(Effect::Emit(Event::HandRaised {
                room,
                member: hand.key,
                name: hand.name.clone(),
            }));
        }
    }
    for hand in before.iter().filter(|hand| !in_fold(&hand.key)) {
        // A hand past the shown few is not lowered: only a full list says so.
        let shown_all = view.hands.len() < earshot_protocol::audience::view::MAX_HANDS_SHOWN;
        if shown_all && !view.hands.iter().any(|h| h.key == hand.key) {
            effects.push(Effect::Emit(Event::HandLowered {
                room,
                member: hand.key,
                name: hand.name.clone(),
            }));
        }
    }
}

/// A digest to remember an envelope by.
pub(super) fn digest(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

pub(super) const SEEN_CAP: usize = SEEN_RELAYED;
