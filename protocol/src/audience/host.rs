//! The host's side of the audience: what listeners' actions become (hands queued here, chat let
//! through within the room's budget, the rest refused with a notice for the sender), reactions
//! totalled from the tree's reports, and the signed [`AudienceView`] the host sends down the tree
//! when something changed (at most every [`VIEW_MIN_INTERVAL`]) and at least every
//! [`VIEW_MAX_INTERVAL`]. Memory is bounded whatever the audience's size: a bounded hands queue,
//! a ring of recent arrivals, a ring of recently seen actions (so a relay replaying one gains
//! nothing), a ring of recent chat for joiners.

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use super::view::CARRIERS_EVERY;

use crate::Verified;
use crate::control::ControlBody;
use crate::envelope::Envelope;
use crate::id::{PeerKey, RoomId, Sig, Timestamp};
use crate::state::{RoomRole, RoomState};

use super::exclusion::{Dismissed, Exclusions, Verdict};
use super::quality::Adviser;
use super::shares::ChatShares;
use super::tenure::Tenure;
use super::view::{AudienceView, Hand, MAX_REACTION_KINDS, ReactionCount, StageMember};
use super::wire::{Newcomer, Report};
use crate::bucket::{Bucket, Buckets};

/// The fastest the host sends views (changes within it wait for the next one).
pub const VIEW_MIN_INTERVAL: Duration = Duration::from_secs(1);
/// The slowest: a view goes down at least this often, changed or not (it also tells nodes the
/// host is alive).
pub const VIEW_MAX_INTERVAL: Duration = Duration::from_secs(10);
/// Raised hands the host keeps; past this a hand is refused (with a notice).
pub const MAX_HANDS: usize = 1_000;
/// Listeners remembered as having arrived lately (for `/who listeners`).
pub const MAX_RECENT_LISTENERS: usize = 1_024;
/// Chat lines from the audience kept for joiners.
pub const MAX_RECENT_CHAT: usize = 20;
/// Actions remembered, to refuse one seen before.
const SEEN_ACTIONS: usize = 4_096;
/// Chat lines one listener may send at once, and then one every [`LISTENER_CHAT_EVERY`]: no key
/// takes the room's whole budget (relays limit each child, but a relay may carry many keys).
pub const LISTENER_CHAT_BURST: u32 = 2;
pub const LISTENER_CHAT_EVERY: Duration = Duration::from_secs(10);
/// Listeners whose chat budgets are kept (see [`Buckets`]).
const CHATTERS: usize = 4_096;

/// How the host lets the audience speak.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AudiencePolicy {
    /// Chat lines per minute from the audience's settled keys (0: the audience does not chat);
    /// keys new to the host (and, in a raid, the rush's) share half as much again
    /// ([`super::tenure`]).
    pub chat_per_minute: u32,
}

impl Default for AudiencePolicy {
    fn default() -> Self {
        Self {
            chat_per_minute: 30,
        }
    }
}

/// What became of a listener's action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Taken {
    /// A chat line let through: publish it to the room and send it down the tree.
    Relay(Vec<u8>),
    /// The hand is in the queue (or out of it); the next view shows it.
    Hands,
    /// Not taken: tell `to` why.
    Refused { to: PeerKey, notice: String },
    /// A listener accused its parent of failing its checks: what came of it (an exclusion
    /// goes into the next view).
    Accused {
        parent: PeerKey,
        reason: String,
        verdict: Result<Verdict, Dismissed>,
    },
    /// Not taken, nobody to tell (not a valid action, or one seen before).
    Dropped,
}

/// A chat budget: through a subtree, its share ([`ChatShares`]: the shares add up to the
/// budget); a line that names no path, the budget itself.
#[derive(Debug)]
struct Lane {
    chat: Bucket,
    shares: ChatShares,
}

impl Lane {
    fn new(per_minute: u32, now: Instant) -> Self {
        let per_sec = f64::from(per_minute) / 60.0;
        Self {
            // 5 at once for the room's 30 a minute, fewer for less (the rush's lane: 2).
            chat: Bucket::new(per_sec, f64::from((per_minute / 6).clamp(1, 5)), now),
            shares: ChatShares::new(per_minute),
        }
    }

    fn take(&mut self, via: &[PeerKey], now: Instant) -> bool {
        if via.is_empty() {
            self.chat.take(now)
        } else {
            self.shares.take(via, now)
        }
    }
}

/// The host's audience state for one room.
#[derive(Debug)]
pub struct HostAudience {
    room: RoomId,
    policy: AudiencePolicy,
    seq: u64,
    last_sent: Option<Instant>,
    last_view: Option<AudienceView>,
    changed: bool,
    hands: VecDeque<Hand>,
    /// The room's chat budget, for the settled keys ([`Tenure`]).
    chat: Lane,
    /// Half of it, for the rest: keys new to the host, and in a raid the rush's.
    rush: Lane,
    /// When the host first saw each key, and since when the chat is busy.
    tenure: Tenure,
    reactions: BTreeMap<String, u32>,
    recent: VecDeque<Newcomer>,
    recent_chat: VecDeque<Vec<u8>>,
    /// Each listener's own budget of chat lines.
    chatters: Buckets<PeerKey>,
    seen: VecDeque<[u8; 32]>,
    seen_set: HashSet<[u8; 32]>,
    /// Names of listeners whose actions arrived (their hands and chat lines name them).
    names: VecDeque<(PeerKey, String)>,
    /// Community relays asked to carry the room, and the children each may take.
    carriers: BTreeMap<PeerKey, u16>,
    carriers_changed: bool,
    /// Accusations against relays, and the relays excluded (made at the first accusation).
    exclusions: Option<Exclusions>,
    /// Excluded as of the latest view.
    excluded: Vec<PeerKey>,
    /// In a private room, where its key schedule is (told in every view).
    keys: Option<super::view::ViewKeys>,
    /// What the speakers' encoders are told of the audience's loss (told in every view).
    adviser: Adviser,
}

impl HostAudience {
    /// `relay` carries the room, taking up to `children` (listed in the views, so that its
    /// parents believe its reports; past [`MAX_CARRIERS`](super::view::MAX_CARRIERS), one is
    /// dropped).
    pub fn add_carrier(&mut self, relay: PeerKey, children: u16) {
        if !self.carriers.contains_key(&relay)
            && self.carriers.len() >= super::view::MAX_CARRIERS
            && let Some(first) = self.carriers.keys().next().copied()
        {
            self.carriers.remove(&first);
        }
        if self.carriers.insert(relay, children) != Some(children) {
            self.carriers_changed = true;
            self.changed = true;
        }
    }

    /// Numbers the views from `seq` on (the host's clock, so that a host that restarts goes on
    /// past the views its listeners hold, which they keep until a newer one comes).
    pub fn first_view(mut self, seq: u64) -> Self {
        self.seq = seq;
        self
    }

    pub fn new(room: RoomId, policy: AudiencePolicy, now: Instant) -> Self {
        Self {
            room,
            policy,
            seq: 0,
            last_sent: None,
            last_view: None,
            changed: true,
            hands: VecDeque::new(),
            chat: Lane::new(policy.chat_per_minute, now),
            rush: Lane::new(policy.chat_per_minute.div_ceil(2), now),
            tenure: Tenure::default(),
            reactions: BTreeMap::new(),
            recent: VecDeque::new(),
            recent_chat: VecDeque::new(),
            chatters: Buckets::new(
                1.0 / LISTENER_CHAT_EVERY.as_secs_f64(),
                f64::from(LISTENER_CHAT_BURST),
                CHATTERS,
            ),
            seen: VecDeque::new(),
            seen_set: HashSet::new(),
            names: VecDeque::new(),
            carriers: BTreeMap::new(),
            carriers_changed: false,
            exclusions: None,
            excluded: Vec::new(),
            keys: None,
            adviser: Adviser::default(),
        }
    }

    /// A private room's key schedule stepped: the next view says where it is.
    pub fn set_keys(&mut self, keys: super::view::ViewKeys) {
        if self.keys != Some(keys) {
            self.keys = Some(keys);
            self.changed = true;
        }
    }

    /// Whether `key` is excluded from relaying now.
    pub fn is_excluded(&self, key: &PeerKey) -> bool {
        self.excluded.contains(key)
    }

    pub fn policy(&self) -> AudiencePolicy {
        self.policy
    }

    /// Something on stage changed (the host's fold): the next view says so.
    pub fn stage_changed(&mut self) {
        self.changed = true;
    }

    /// A listener's signed action, come up the tree. `state` is the room's fold (bans,
    /// revocations, roles).
    pub fn take(
        &mut self,
        now: Instant,
        wall: Timestamp,
        envelope: &Verified<Envelope>,
        state: &RoomState,
    ) -> Taken {
        self.take_via(now, wall, envelope, state, &[])
    }

    /// [`Self::take`], the action having come up the tree along `via` (the host's child first,
    /// the author's node last, as the relays on the way said): chat lines share the room's
    /// budget fairly down the tree among the subtrees chatting ([`ChatShares`]). Ten thousand
    /// keys chatting through relays of their own take those relays' shares, not the room's
    /// budget: a listener elsewhere in the tree, or beside those relays under the same parent,
    /// still gets its line through.
    pub fn take_via(
        &mut self,
        now: Instant,
        wall: Timestamp,
        envelope: &Verified<Envelope>,
        state: &RoomState,
        via: &[PeerKey],
    ) -> Taken {
        let digest: [u8; 32] = Sha256::digest(envelope.encode()).into();
        if !self.seen_set.insert(digest) {
            return Taken::Dropped;
        }
        self.seen.push_back(digest);
        if self.seen.len() > SEEN_ACTIONS
            && let Some(old) = self.seen.pop_front()
        {
            self.seen_set.remove(&old);
        }
        let author = envelope.author;
        let refuse = |notice: &str| Taken::Refused {
            to: author,
            notice: notice.to_owned(),
        };
        match state.check(wall, envelope) {
            Ok(_) => {}
            Err(reason) => return refuse(&format!("refused: {reason}")),
        }
        // Its first sighting, if it is (a join at the host's door comes here first).
        self.tenure.seen(author, now);
        match &envelope.body {
            // Support is said like chat, within the same budgets.
            ControlBody::Chat { .. } | ControlBody::Support { .. } => {
                if self.policy.chat_per_minute == 0 {
                    return refuse("the host does not take chat from the audience in this room");
                }
                if !self.chatters.take(author, now) {
                    return refuse("you are chatting too fast: your line was not sent");
                }
                // The settled take the room's budget, newcomers and the rush's keys their own
                // lane ([`Tenure`]).
                let settled = self.tenure.settled(&author, now);
                let lane = if settled {
                    &mut self.chat
                } else {
                    &mut self.rush
                };
                if !lane.take(via, now) {
                    // Busy before this refusal (a newcomer refused in a calm room is told why).
                    let busy = self.tenure.busy(now).is_some();
                    self.tenure.refused(now);
                    return refuse(if settled {
                        "the room's chat is busy: your line was not sent (try again shortly)"
                    } else if busy {
                        "the room's chat is busy, and those who were here before it got busy go \
                         first: your line was not sent (try again shortly)"
                    } else {
                        "newcomers' chat is busy: for their first 30 seconds in a room, newcomers \
                         share a smaller part of its chat; your line was not sent (try again \
                         shortly)"
                    });
                }
                let bytes = envelope.encode();
                self.recent_chat.push_back(bytes.clone());
                if self.recent_chat.len() > MAX_RECENT_CHAT {
                    self.recent_chat.pop_front();
                }
                Taken::Relay(bytes)
            }
            ControlBody::RaiseHand => {
                if self.hands.iter().any(|hand| hand.key == author) {
                    return Taken::Hands;
                }
                if self.hands.len() >= MAX_HANDS {
                    return refuse("too many hands are up: try again later");
                }
                let name = self.name_of(&author);
                self.hands.push_back(Hand {
                    key: author,
                    name,
                    since: envelope.sent_at,
                });
                self.changed = true;
                Taken::Hands
            }
            ControlBody::LowerHand | ControlBody::Leave => {
                let before = self.hands.len();
                self.hands.retain(|hand| hand.key != author);
                if self.hands.len() != before {
                    self.changed = true;
                }
                Taken::Hands
            }
            ControlBody::Join { name } => {
                // Its name, for its hands and chat.
                self.remember_name(author, name.clone());
                Taken::Dropped
            }
            ControlBody::Accuse {
                parent,
                ticket,
                reason,
            } => {
                let room = self.room;
                let book = self
                    .exclusions
                    .get_or_insert_with(|| Exclusions::new(room, state.host));
                let verdict = book.accuse(now, wall, author, *parent, ticket);
                if verdict == Ok(Verdict::Excluded) {
                    self.excluded = book.excluded(now);
                    self.changed = true;
                }
                Taken::Accused {
                    parent: *parent,
                    reason: reason.clone(),
                    verdict,
                }
            }
            // In a private room, reactions come up sealed like chat (a report's counts would be
            // read by every relay on the way).
            ControlBody::Reaction { emoji } => {
                self.react(emoji);
                Taken::Dropped
            }
            // Everyone is told who records what they hear (the room's rules allowed it).
            ControlBody::MemberRecording { .. } => Taken::Relay(envelope.encode()),
            // A listener just brought on stage agrees to be recorded before its node follows
            // the room's topic: everyone is told. Only from someone on stage.
            ControlBody::RecordingConsent { .. }
                if state.role_of(&author).is_some_and(|role| role.on_stage()) =>
            {
                Taken::Relay(envelope.encode())
            }
            ControlBody::RecordingConsent { .. } => {
                refuse("only those on stage agree to be recorded")
            }
            _ => refuse("listeners raise a hand, chat or record; the rest is for the stage"),
        }
    }

    /// The host's own subtree report (the whole tree's): reactions to total, newcomers to
    /// remember, the audience's loss to advise the speakers' encoders on.
    pub fn report(&mut self, report: Report, now: Instant) {
        if self.adviser.update(now, &report.loss) {
            self.changed = true;
        }
        self.newcomers(report);
    }

    /// The encoders' advice now (per mille: see [`super::quality`]).
    pub fn audio_loss(&self) -> u16 {
        self.adviser.advice()
    }

    fn newcomers(&mut self, report: Report) {
        for reaction in report.reactions {
            let total = self.reactions.entry(reaction.emoji).or_default();
            *total = total.saturating_add(reaction.count);
        }
        for newcomer in report.newcomers {
            self.remember_name(newcomer.key, newcomer.name.clone());
            self.recent.push_back(newcomer);
            if self.recent.len() > MAX_RECENT_LISTENERS {
                self.recent.pop_front();
            }
        }
    }

    /// A listener admitted at the host's own door.
    pub fn arrived(&mut self, newcomer: Newcomer) {
        self.newcomers(Report {
            newcomers: vec![newcomer],
            ..Report::default()
        });
    }

    /// A reaction from the stage (it came on the topic).
    pub fn react(&mut self, emoji: &str) {
        let total = self.reactions.entry(emoji.to_owned()).or_default();
        *total = total.saturating_add(1);
    }

    fn remember_name(&mut self, key: PeerKey, name: String) {
        self.names.retain(|(k, _)| *k != key);
        self.names.push_back((key, name));
        if self.names.len() > MAX_RECENT_LISTENERS {
            self.names.pop_front();
        }
    }

    /// The name a listener gave when it joined (its short key if not known).
    pub fn name_of(&self, key: &PeerKey) -> String {
        self.names
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map_or_else(|| key.short(), |(_, name)| name.clone())
    }

    /// Listeners that arrived lately, newest first, `page` of `size`.
    pub fn recent_listeners(&self, page: usize, size: usize) -> Vec<Newcomer> {
        self.recent
            .iter()
            .rev()
            .skip(page.saturating_mul(size))
            .take(size)
            .cloned()
            .collect()
    }

    /// Recent chat envelopes from the audience, oldest first (for a joiner).
    pub fn recent_chat(&self) -> impl Iterator<Item = &Vec<u8>> {
        self.recent_chat.iter()
    }

    /// Forgets that `envelope` was seen, so that another copy of it is taken on its merits
    /// (a copy sent straight to the host that its share refused must not stop the tree's copy).
    pub fn unsee(&mut self, envelope: &Envelope) {
        let digest: [u8; 32] = Sha256::digest(envelope.encode()).into();
        self.seen_set.remove(&digest);
    }

    /// The latest view signed, if any.
    pub fn last_view(&self) -> Option<&AudienceView> {
        self.last_view.as_ref()
    }

    /// A view to send down now, if one is due: something changed and [`VIEW_MIN_INTERVAL`]
    /// has passed, or [`VIEW_MAX_INTERVAL`] has. `listeners` is the tree's size beyond the
    /// host and the stage.
    pub fn view(
        &mut self,
        now: Instant,
        wall: Timestamp,
        state: &RoomState,
        listeners: u32,
        host: &ed25519_dalek::SigningKey,
    ) -> Option<AudienceView> {
        let since = self.last_sent.map(|at| now.saturating_duration_since(at));
        let changed = self.changed
            || !self.reactions.is_empty()
            || self.last_view.as_ref().is_none_or(|last| {
                last.listeners != listeners
                    || last.recording != state.recording.value
                    || last.ended != state.ended
            });
        let due = match since {
            None => true,
            Some(since) => (changed && since >= VIEW_MIN_INTERVAL) || since >= VIEW_MAX_INTERVAL,
        };
        if !due {
            return None;
        }
        if let Some(book) = self.exclusions.as_mut() {
            // Exclusions end in time.
            self.excluded = book.excluded(now);
        }
        let reactions = std::mem::take(&mut self.reactions);
        let view = self.build(wall, state, listeners, reactions, host);
        self.last_sent = Some(now);
        self.last_view = Some(view.clone());
        self.changed = false;
        Some(view)
    }

    /// The room as of now, for a joiner (not sent down the tree: the next view is due as it
    /// was, and reactions wait for it).
    pub fn snapshot(
        &mut self,
        wall: Timestamp,
        state: &RoomState,
        listeners: u32,
        host: &ed25519_dalek::SigningKey,
    ) -> AudienceView {
        self.build(wall, state, listeners, BTreeMap::new(), host)
    }

    fn build(
        &mut self,
        wall: Timestamp,
        state: &RoomState,
        listeners: u32,
        reactions: BTreeMap<String, u32>,
        host: &ed25519_dalek::SigningKey,
    ) -> AudienceView {
        // Stage members are on stage, not in the queue.
        let on_stage: HashSet<PeerKey> = state.stage().iter().map(|member| member.key).collect();
        self.hands.retain(|hand| !on_stage.contains(&hand.key));
        let stage = state
            .stage()
            .into_iter()
            .map(|member| StageMember {
                key: member.key,
                name: member.display_name(),
                role: member.role(),
                muted: member.muted.value,
            })
            .collect();
        let mut hands: Vec<Hand> = state
            .hands()
            .into_iter()
            .filter(|member| member.role() < RoomRole::Speaker)
            .map(|member| Hand {
                key: member.key,
                name: member.display_name(),
                since: member.hand.value.unwrap_or(wall),
            })
            .collect();
        hands.extend(self.hands.iter().cloned());
        hands.sort_by_key(|hand| (hand.since, hand.key));
        let hands_total = u32::try_from(hands.len()).unwrap_or(u32::MAX);
        let mut reactions: Vec<ReactionCount> = reactions
            .into_iter()
            .map(|(emoji, count)| ReactionCount { emoji, count })
            .collect();
        reactions.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.emoji.cmp(&b.emoji)));
        reactions.truncate(MAX_REACTION_KINDS);
        self.seq += 1;
        AudienceView {
            room: self.room,
            seq: self.seq,
            at: wall,
            stage,
            hands,
            hands_total,
            listeners,
            reactions,
            recording: state.recording.value,
            ended: state.ended,
            banned: state.banned.iter().rev().copied().collect(),
            revoked: state.revoked.iter().rev().copied().collect(),
            carriers: (self.carriers_changed || self.seq % CARRIERS_EVERY == 1).then(|| {
                self.carriers_changed = false;
                self.carriers.iter().map(|(k, c)| (*k, *c)).collect()
            }),
            excluded: self.excluded.clone(),
            keys: self.keys,
            audio_loss: self.adviser.advice(),
            signature: Sig([0; 64]),
        }
        .sign(host)
    }
}

#[cfg(test)]
mod tests;
