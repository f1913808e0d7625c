//! Room state: a deterministic fold over verified envelopes.
//!
//! [`RoomState::apply`] checks one envelope against the room (room id, clock window, replay
//! window, authority, permissions) and either rejects it without touching the state or applies it
//! and says what changed. [`RoomState::tick`] times out members that stopped sending presence.
//!
//! # Order
//!
//! Gossip delivers messages in different orders to different nodes, so every piece of state is
//! either a *last-writer-wins register* ordered by the envelope's [`Stamp`] (author's clock, then
//! author key, then sequence number) or a grow-only set. Applying the same set of accepted
//! envelopes in any order therefore gives the same state. Where order still matters:
//!
//! - authority is checked against the state at arrival: a moderator's action that arrives before
//!   the promotion that made them moderator is rejected (it is rare: a node only lets its user act
//!   once it has seen its own promotion);
//! - after `RoomEnded` everything is rejected;
//! - an author's envelopes reordered by more than [`SEQ_WINDOW`] are dropped as replays.
//!
//! Timeouts (`tick`) depend on the local clock and are not part of the promise.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::Verified;
use crate::capability::{CapabilityError, NoRevocations, Presenter, VerifyContext};
use crate::control::ControlBody;
use crate::envelope::{Authority, Envelope};
use crate::id::{CapId, PeerKey, RoomId, Timestamp};

mod budget;
mod change;
mod consent;
mod member;
mod permission;

pub use self::budget::{Budgets, CHAT_BURST, CHAT_EVERY_MS, REACTION_BURST, REACTION_EVERY_MS};

pub use change::{LeaveReason, RoomChange, TreePosition};
pub use member::{HOST_RANK, Lww, Member, RoomRole, SeqWindow, Stamp};

/// How often a member says it is still here.
pub const PRESENCE_INTERVAL_MS: u64 = 5_000;
/// A member not heard from for this long has left.
pub const PRESENCE_TIMEOUT_MS: u64 = 15_000;
/// Envelopes stamped further in the future than this (by the receiver's clock) are refused.
pub const MAX_CLOCK_SKEW_MS: u64 = 30_000;
/// Envelopes older than this are refused (replays beyond the sequence window).
pub const MAX_MESSAGE_AGE_MS: u64 = 120_000;
/// How far out of order an author's envelopes may arrive.
pub const SEQ_WINDOW: u64 = 64;

/// Why the room refused an envelope. Honest nodes never send these; the sender is penalised.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejected {
    #[error("envelope is for room {found}, not this room")]
    WrongRoom { found: RoomId },
    #[error("the room has ended")]
    RoomEnded,
    #[error("sent at {sent_at}, in the future")]
    FromTheFuture { sent_at: Timestamp },
    #[error("sent at {sent_at}, too long ago")]
    TooOld { sent_at: Timestamp },
    #[error("replayed envelope (sequence number {seq} already seen)")]
    Replay { seq: u64 },
    #[error("{} claims to be the host but is not", .author.as_peer_id())]
    NotHost { author: PeerKey },
    #[error("{} was removed from the room", .author.as_peer_id())]
    Banned { author: PeerKey },
    #[error("capability refused: {0}")]
    Capability(#[from] CapabilityError),
    #[error("unknown capability {id}: present the capability itself first")]
    UnknownCapability { id: CapId },
    #[error("a {role} may not {action}")]
    NotAllowed {
        role: RoomRole,
        action: &'static str,
    },
    #[error("a {role} may not {action} a {target_role}")]
    NotAllowedOn {
        role: RoomRole,
        action: &'static str,
        target_role: RoomRole,
    },
    #[error("too fast: {author} is over its budget of chat lines or reactions", author = .author.as_peer_id())]
    TooFast { author: PeerKey },
}

/// The capability an envelope presented, once checked.
#[derive(Clone, Copy, Debug)]
struct Presented {
    id: CapId,
    role: RoomRole,
    expires_at: Timestamp,
}

/// The state of one room, as every member folds it.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct RoomState {
    pub room: RoomId,
    pub host: PeerKey,
    pub members: BTreeMap<PeerKey, Member>,
    pub recording: Lww<bool>,
    /// Capabilities refused to new joiners.
    pub revoked: BTreeSet<CapId>,
    /// Members removed from the room: nothing they send is accepted.
    pub banned: BTreeSet<PeerKey>,
    pub ended: bool,
    pub seqs: BTreeMap<PeerKey, SeqWindow>,
    /// The room's policy (from its host-signed descriptor): members may record for themselves.
    #[serde(default)]
    pub members_may_record: bool,
    /// Each author's budget of chat lines and reactions (not state: never sent, always equal).
    #[serde(skip)]
    pub budgets: Budgets,
}

impl RoomState {
    pub fn new(room: RoomId, host: PeerKey) -> Self {
        Self {
            room,
            host,
            members: BTreeMap::new(),
            recording: Lww::new(false),
            revoked: BTreeSet::new(),
            banned: BTreeSet::new(),
            ended: false,
            seqs: BTreeMap::new(),
            members_may_record: false,
            budgets: Budgets::default(),
        }
    }

    /// Whether members other than the host and moderators may record (the descriptor's
    /// recording policy; every node sets it from the same host-signed descriptor).
    pub fn with_member_recording(mut self, allowed: bool) -> Self {
        self.members_may_record = allowed;
        self
    }

    /// Members present now, host first, then by role (highest first), then name.
    pub fn present(&self) -> Vec<&Member> {
        let mut members: Vec<&Member> = self
            .members
            .values()
            .filter(|member| self.is_present(member))
            .collect();
        members.sort_by(|a, b| {
            b.role()
                .cmp(&a.role())
                .then_with(|| a.display_name().cmp(&b.display_name()))
                .then_with(|| a.key.cmp(&b.key))
        });
        members
    }

    /// Present members on stage (host, moderators, speakers).
    pub fn stage(&self) -> Vec<&Member> {
        self.present()
            .into_iter()
            .filter(|member| member.role().on_stage())
            .collect()
    }

    /// Raised hands, first raised first.
    pub fn hands(&self) -> Vec<&Member> {
        let mut hands: Vec<&Member> = self
            .members
            .values()
            .filter(|member| self.is_present(member) && member.hand.value.is_some())
            .collect();
        hands.sort_by_key(|member| (member.hand.value, member.key));
        hands
    }

    /// Whether a member is in the room now.
    pub fn is_present(&self, member: &Member) -> bool {
        member.present.value && !member.timed_out && !self.banned.contains(&member.key)
    }

    /// The role `key` holds now (`None` if it never appeared).
    pub fn role_of(&self, key: &PeerKey) -> Option<RoomRole> {
        if *key == self.host {
            return Some(RoomRole::Host);
        }
        self.members.get(key).map(Member::role)
    }

    /// The room as an audience member knows it: what the host's latest view says (the stage,
    /// raised hands, the recording flag, the end), plus this member itself.
    pub fn of_audience_view(
        host: PeerKey,
        view: &crate::audience::AudienceView,
        me: Option<(PeerKey, &str)>,
    ) -> RoomState {
        let mut state = RoomState::new(view.room, host);
        let stamp = Stamp {
            at: view.at,
            author: host,
            seq: view.seq,
        };
        let add = |key: PeerKey, name: &str, role: RoomRole| {
            let mut member = Member::new(key, role.min(RoomRole::Speaker).max(RoomRole::Listener));
            if role == RoomRole::Host {
                member.granted = RoomRole::Host;
            } else {
                member.assigned.set(Some(role), stamp);
            }
            member.name.set(name.to_owned(), stamp);
            member.present.set(true, stamp);
            member.heard_at = view.at;
            member
        };
        for on_stage in &view.stage {
            let mut member = add(on_stage.key, &on_stage.name, on_stage.role);
            member.muted.set(on_stage.muted, stamp);
            state.members.insert(on_stage.key, member);
        }
        for hand in &view.hands {
            let mut member = add(hand.key, &hand.name, RoomRole::Listener);
            member.hand.set(Some(hand.since), stamp);
            state.members.entry(hand.key).or_insert(member);
        }
        if let Some((key, name)) = me {
            state
                .members
                .entry(key)
                .or_insert_with(|| add(key, name, RoomRole::Listener));
        }
        state.recording.set(view.recording, stamp);
        state.ended = view.ended;
        state.banned = view.banned.iter().copied().collect();
        state.revoked = view.revoked.iter().copied().collect();
        state
    }

    /// What changed from this state to `newer` as a member sees it (for an audience member,
    /// whose state is the host's views): arrivals and departures, roles, hands, mutes, the
    /// recording flag and the end, each credited to the host.
    pub fn changes_to(&self, newer: &RoomState) -> Vec<RoomChange> {
        let by = newer.host;
        let mut changes = Vec::new();
        for member in newer.present() {
            let before = self.members.get(&member.key).filter(|m| self.is_present(m));
            match before {
                None if member.role().on_stage() => changes.push(RoomChange::MemberJoined {
                    member: member.key,
                    name: member.display_name(),
                    role: member.role(),
                }),
                None => {}
                Some(before) => {
                    if before.role() != member.role() {
                        changes.push(RoomChange::RoleChanged {
                            member: member.key,
                            role: member.role(),
                            by,
                        });
                    }
                    if before.muted.value != member.muted.value {
                        changes.push(if member.muted.value {
                            RoomChange::Muted {
                                member: member.key,
                                by,
                            }
                        } else {
                            RoomChange::Unmuted {
                                member: member.key,
                                by,
                            }
                        });
                    }
                }
            }
            let had_hand = before.is_some_and(|b| b.hand.value.is_some());
            if !had_hand && member.hand.value.is_some() {
                changes.push(RoomChange::HandRaised { member: member.key });
            }
        }
        for member in self.present() {
            let after = newer
                .members
                .get(&member.key)
                .filter(|m| newer.is_present(m));
            if member.hand.value.is_some() && after.is_none_or(|a| a.hand.value.is_none()) {
                changes.push(RoomChange::HandLowered { member: member.key });
            }
            let was_on_stage = member.role().on_stage();
            let still_on_stage = after.is_some_and(|a| a.role().on_stage());
            if was_on_stage && !still_on_stage {
                match after {
                    Some(after) => changes.push(RoomChange::RoleChanged {
                        member: member.key,
                        role: after.role(),
                        by,
                    }),
                    None => changes.push(RoomChange::MemberLeft {
                        member: member.key,
                        reason: LeaveReason::Left,
                    }),
                }
            }
        }
        if self.recording.value != newer.recording.value {
            changes.push(if newer.recording.value {
                RoomChange::RecordingStarted { by }
            } else {
                RoomChange::RecordingStopped { by }
            });
        }
        if !self.ended && newer.ended {
            changes.push(RoomChange::RoomEnded { by });
        }
        changes
    }

    /// Whether the room would take `envelope` from its author now (room, clock window, bans,
    /// authority, permission), without applying it or recording its sequence number: for what
    /// the host takes from the audience on the room's behalf. Returns the author's role.
    pub fn check(
        &self,
        now: Timestamp,
        envelope: &Verified<Envelope>,
    ) -> Result<RoomRole, Rejected> {
        let env: &Envelope = envelope;
        let author = env.author;
        if env.room != self.room {
            return Err(Rejected::WrongRoom { found: env.room });
        }
        if self.ended {
            return Err(Rejected::RoomEnded);
        }
        if env.sent_at > now.plus_millis(MAX_CLOCK_SKEW_MS) {
            return Err(Rejected::FromTheFuture {
                sent_at: env.sent_at,
            });
        }
        if env.sent_at.plus_millis(MAX_MESSAGE_AGE_MS) < now {
            return Err(Rejected::TooOld {
                sent_at: env.sent_at,
            });
        }
        if self.banned.contains(&author) {
            return Err(Rejected::Banned { author });
        }
        let presented = self.authorise(now, env)?;
        let granted = presented.map_or(RoomRole::Host, |p| p.role);
        let role = match self.members.get(&author) {
            Some(member) => {
                let mut member = member.clone();
                member.granted = member.granted_at(now).max(granted);
                member.role()
            }
            None => granted,
        };
        self.check_permission(author, role, &env.body)?;
        Ok(role)
    }

    /// Checks an envelope and, if it is acceptable, applies it. A rejected envelope leaves the
    /// state untouched.
    pub fn apply(
        &mut self,
        now: Timestamp,
        envelope: &Verified<Envelope>,
    ) -> Result<Vec<RoomChange>, Rejected> {
        let env: &Envelope = envelope;
        let author = env.author;
        if env.room != self.room {
            return Err(Rejected::WrongRoom { found: env.room });
        }
        if self.ended {
            return Err(Rejected::RoomEnded);
        }
        if env.sent_at > now.plus_millis(MAX_CLOCK_SKEW_MS) {
            return Err(Rejected::FromTheFuture {
                sent_at: env.sent_at,
            });
        }
        if env.sent_at.plus_millis(MAX_MESSAGE_AGE_MS) < now {
            return Err(Rejected::TooOld {
                sent_at: env.sent_at,
            });
        }
        if self.banned.contains(&author) {
            return Err(Rejected::Banned { author });
        }
        let presented = self.authorise(now, env)?;
        if !self
            .seqs
            .get(&author)
            .copied()
            .unwrap_or_default()
            .is_fresh(env.seq)
        {
            return Err(Rejected::Replay { seq: env.seq });
        }
        let granted = presented.map_or(RoomRole::Host, |p| p.role);
        let actor_role = match self.members.get(&author) {
            Some(member) => {
                let mut member = member.clone();
                member.granted = member.granted_at(now).max(granted);
                member.role()
            }
            None if granted == RoomRole::Host => RoomRole::Host,
            None => granted,
        };
        self.check_permission(author, actor_role, &env.body)?;
        if !self.budgets.take(author, &env.body, now) {
            return Err(Rejected::TooFast { author });
        }

        // Accepted: from here on, only mutation.
        let stamp = Stamp {
            at: env.sent_at,
            author,
            seq: env.seq,
        };
        self.seqs.entry(author).or_default().record(env.seq);
        let was_present = self
            .members
            .get(&author)
            .is_some_and(|member| self.is_present(member));
        let member = self
            .members
            .entry(author)
            .or_insert_with(|| Member::new(author, granted));
        if let Some(presented) = presented {
            member
                .capabilities
                .insert(presented.id, (presented.expires_at, presented.role));
        }
        member.granted = member.granted_at(now).max(granted);
        member.last_seen = member.last_seen.max(env.sent_at);
        member.heard_at = member.heard_at.max(now);
        // Any message shows the author is alive.
        member.timed_out = false;
        let mut changes = Vec::new();
        match &env.body {
            ControlBody::Join { name } => {
                member.name.set(name.trim().to_owned(), stamp);
                member.present.set(true, stamp);
            }
            ControlBody::Presence => {
                member.present.set(true, stamp);
            }
            ControlBody::Leave => {
                member.present.set(false, stamp);
                member.hand.set(None, stamp);
            }
            ControlBody::RaiseHand => {
                if member.hand.set(Some(env.sent_at), stamp) {
                    changes.push(RoomChange::HandRaised { member: author });
                }
            }
            ControlBody::LowerHand => {
                if member.hand.set(None, stamp) {
                    changes.push(RoomChange::HandLowered { member: author });
                }
            }
            ControlBody::Promote { target, role } => {
                self.assign(*target, RoomRole::from(*role), stamp, &mut changes);
            }
            ControlBody::Demote { target } => {
                self.assign(*target, RoomRole::Listener, stamp, &mut changes);
            }
            ControlBody::Mute { target } | ControlBody::Unmute { target } => {
                let muted = matches!(env.body, ControlBody::Mute { .. });
                let rank = self.rank_of(author);
                let target_member = self.member_mut(*target);
                if target_member.muted.set_ranked(muted, stamp, rank) {
                    changes.push(if muted {
                        RoomChange::Muted {
                            member: *target,
                            by: author,
                        }
                    } else {
                        RoomChange::Unmuted {
                            member: *target,
                            by: author,
                        }
                    });
                }
            }
            ControlBody::Remove { target, revoke } => {
                let target_was_present = self
                    .members
                    .get(target)
                    .is_some_and(|member| self.is_present(member));
                let target_member = self.member_mut(*target);
                target_member.hand.set(None, stamp);
                // Only the listed capabilities: what this node happens to know of the target's
                // would depend on arrival order. The remover lists what it knows.
                self.revoked.extend(revoke.iter().copied());
                if self.banned.insert(*target) {
                    changes.push(RoomChange::Removed {
                        member: *target,
                        by: author,
                    });
                    if target_was_present {
                        changes.push(RoomChange::MemberLeft {
                            member: *target,
                            reason: LeaveReason::Removed,
                        });
                    }
                }
            }
            ControlBody::Chat { text } => changes.push(RoomChange::Chat {
                from: author,
                text: text.clone(),
                at: env.sent_at,
            }),
            ControlBody::Reaction { emoji } => changes.push(RoomChange::Reaction {
                from: author,
                emoji: emoji.clone(),
            }),
            ControlBody::Support { amount, unit, note } => changes.push(RoomChange::Support {
                from: author,
                amount: *amount,
                unit: unit.clone(),
                note: note.clone(),
                id: env.digest(),
                envelope: env.encode(),
            }),
            ControlBody::SupportReceipt { supporter, support } => {
                changes.push(RoomChange::SupportConfirmed {
                    supporter: *supporter,
                    id: *support,
                    envelope: env.encode(),
                });
            }
            ControlBody::RecordingStarted | ControlBody::RecordingStopped => {
                let on = matches!(env.body, ControlBody::RecordingStarted);
                if self.recording.set(on, stamp) {
                    changes.push(if on {
                        RoomChange::RecordingStarted { by: author }
                    } else {
                        RoomChange::RecordingStopped { by: author }
                    });
                }
            }
            ControlBody::RoomEnded => {
                self.ended = true;
                changes.push(RoomChange::RoomEnded { by: author });
            }
            // For the host's book, not the room's state.
            ControlBody::Accuse { .. } => {}
            ControlBody::TreePosition { parent, depth } => {
                let position = TreePosition {
                    parent: *parent,
                    depth: *depth,
                };
                if member.position.set(Some(position), stamp) {
                    changes.push(RoomChange::TreeMoved {
                        member: author,
                        position,
                    });
                }
            }
            ControlBody::ReplayAvailable {
                manifest,
                recording,
                recorder,
                title,
                bytes,
                addrs,
                key,
            } => changes.push(RoomChange::ReplayAvailable {
                by: author,
                manifest: *manifest,
                recording: *recording,
                recorder: *recorder,
                title: title.clone(),
                bytes: *bytes,
                addrs: addrs.clone(),
                key: key.clone(),
            }),
            ControlBody::MemberRecording { on } => {
                if member.recording.set(*on, stamp) {
                    changes.push(RoomChange::MemberRecording {
                        member: author,
                        on: *on,
                    });
                }
            }
            ControlBody::RecordingConsent { since } => {
                if member.consented.is_none_or(|before| before < *since) {
                    member.consented = Some(*since);
                    member.consent = Some(env.encode());
                    changes.push(RoomChange::RecordingConsent {
                        member: author,
                        since: *since,
                    });
                }
            }
        }
        // Arrivals and departures of the author, whatever the body.
        if let Some(member) = self.members.get(&author) {
            match (was_present, self.is_present(member)) {
                (false, true) => changes.insert(
                    0,
                    RoomChange::MemberJoined {
                        member: author,
                        name: member.display_name(),
                        role: member.role(),
                    },
                ),
                (true, false) => changes.push(RoomChange::MemberLeft {
                    member: author,
                    reason: LeaveReason::Left,
                }),
                _ => {}
            }
        }
        Ok(changes)
    }

    /// Members not heard from within [`PRESENCE_TIMEOUT_MS`] are marked gone (the host too: a
    /// host that vanished is reported, though the room only ends with `RoomEnded`).
    pub fn tick(&mut self, now: Timestamp) -> Vec<RoomChange> {
        let mut changes = Vec::new();
        for member in self.members.values_mut() {
            // A role lasts as long as a capability that grants it.
            let before = member.role();
            member.granted = member.granted_at(now);
            if member.role() != before {
                changes.push(RoomChange::RoleChanged {
                    member: member.key,
                    role: member.role(),
                    by: self.host,
                });
            }
            let present =
                member.present.value && !member.timed_out && !self.banned.contains(&member.key);
            if present && member.heard_at.plus_millis(PRESENCE_TIMEOUT_MS) < now {
                member.timed_out = true;
                changes.push(RoomChange::MemberLeft {
                    member: member.key,
                    reason: LeaveReason::TimedOut,
                });
            }
        }
        changes
    }

    /// Resolves the envelope's authority: `None` for the host, else the presented capability.
    fn authorise(&self, now: Timestamp, env: &Envelope) -> Result<Option<Presented>, Rejected> {
        let author = env.author;
        match &env.authority {
            Authority::Host if author == self.host => Ok(None),
            Authority::Host => Err(Rejected::NotHost { author }),
            _ if author == self.host => Ok(None),
            Authority::Capability(cap) => {
                let id = cap.id();
                // Revocation refuses new joiners; a member already admitted with this capability
                // stays (removing a person bans their key instead).
                let known = self
                    .members
                    .get(&author)
                    .is_some_and(|member| member.capabilities.contains_key(&id));
                let ctx = VerifyContext {
                    room: self.room,
                    host: self.host,
                    presenter: Presenter::Key(author),
                    now,
                    revoked: if known { &NoRevocations } else { &self.revoked },
                };
                let verified = cap.verify(&ctx)?;
                Ok(Some(Presented {
                    id,
                    role: RoomRole::from(verified.role),
                    expires_at: verified.expires_at,
                }))
            }
            Authority::CapabilityRef(id) => {
                // The role of the capability referred to, not the best this member ever showed.
                let (expires_at, role) = self
                    .members
                    .get(&author)
                    .and_then(|member| member.capabilities.get(id).copied())
                    .ok_or(Rejected::UnknownCapability { id: *id })?;
                if now >= expires_at {
                    return Err(CapabilityError::Expired { expires_at }.into());
                }
                Ok(Some(Presented {
                    id: *id,
                    role,
                    expires_at,
                }))
            }
        }
    }

    fn member_mut(&mut self, key: PeerKey) -> &mut Member {
        let granted = if key == self.host {
            RoomRole::Host
        } else {
            RoomRole::Listener
        };
        self.members
            .entry(key)
            .or_insert_with(|| Member::new(key, granted))
    }

    /// The rank of `author`'s moderation ([`HOST_RANK`] for the host).
    fn rank_of(&self, author: PeerKey) -> u8 {
        if author == self.host { HOST_RANK } else { 0 }
    }

    fn assign(
        &mut self,
        target: PeerKey,
        role: RoomRole,
        stamp: Stamp,
        changes: &mut Vec<RoomChange>,
    ) {
        // The host's word, and a member's own stepping down, outrank a moderator's.
        let rank = if stamp.author == target {
            HOST_RANK
        } else {
            self.rank_of(stamp.author)
        };
        let member = self.member_mut(target);
        let before = member.role();
        member.assigned.set_ranked(Some(role), stamp, rank);
        // Bringing someone on stage answers their hand, whatever order the promotion and the
        // hand arrive in: the promotion lowers the hand as of its own stamp.
        let lowered = role.on_stage() && member.hand.set(None, stamp);
        if member.role() != before {
            changes.push(RoomChange::RoleChanged {
                member: target,
                role: member.role(),
                by: stamp.author,
            });
        }
        if lowered {
            changes.push(RoomChange::HandLowered { member: target });
        }
    }
}

#[cfg(test)]
mod tests;
