//! One node's part of a room's relay tree, and what it knows of the subtree below it: its
//! children and their reports, the free places below, reactions and newcomers to pass up,
//! listeners' actions to pass up (within budgets), where a notice for a listener below goes,
//! and the ancestors above. The same machine runs at the host (the root) and at every listener;
//! the node feeds it what its streams bring and sends what it returns. Pure: the time comes in.
//!
//! Costs are bounded whatever the room's size: a node keeps state per child (at most its
//! capacity), reports a fixed-size summary upward, and passes up at most [`UP_ACTS_PER_SEC`]
//! actions; a child that sends more than [`CHILD_ACTS_PER_SEC`] loses the rest (and is told).

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::time::{Duration, Instant};

use crate::bucket::Bucket;

use crate::id::PeerKey;

use super::quality::Loss;
use super::view::{MAX_REACTION_KINDS, MEMBER_MAX_CHILDREN, ReactionCount};
use super::wire::{Ancestor, MAX_NEWCOMERS, MAX_SLOTS, Newcomer, Report, Slot};

/// How often a node reports its subtree to its parent.
pub const REPORT_INTERVAL: Duration = Duration::from_secs(2);
/// A report older than this is stale (its child went quiet): its free places are not offered.
/// Two intervals and a half, so one late report is forgiven: a parent learns that a child
/// crashed only when their connection times out, and a crashed leaf's places look the best in
/// the tree (shallow, all free), so while they are on offer newcomers are sent to a dead node.
pub const REPORT_STALE: Duration = Duration::from_secs(5);
/// A place promised that no report has shown taken after this was not taken (the newcomer
/// never came): the promise is dropped.
pub const PROMISE_KEPT: Duration = Duration::from_secs(10);
/// How long a node remembers a child it lost, for that child's orphans coming up to it.
pub const LOST_REMEMBERED: Duration = Duration::from_secs(30);
/// Actions (hands, chat) a child may pass up per second, on average; a burst of
/// [`CHILD_ACTS_BURST`] is allowed.
pub const CHILD_ACTS_PER_SEC: f64 = 1.0;
pub const CHILD_ACTS_BURST: f64 = 5.0;
/// Actions from its children a node passes up per second, and at once: under what its parent
/// takes from a child, with room left for the node's own (which go up at once, held to their
/// author's budgets further up) and for a stream's jitter, so that the parent does not refuse
/// them: there, arrival order would decide whose action is lost; here, each child's turn does.
pub const UP_ACTS_PER_SEC: f64 = CHILD_ACTS_PER_SEC * 0.8;
pub const UP_ACTS_BURST: f64 = CHILD_ACTS_BURST - 2.0;
/// Actions waiting to go up; past this, new ones are refused.
pub const MAX_QUEUED_ACTS: usize = 64;
/// Actions waiting to go up from one child (or from this node itself); past this, that child's
/// new ones are refused.
pub const MAX_QUEUED_FROM_ONE: usize = 8;
/// Reactions a listener may contribute per report (a subtree's count is capped at this times
/// its size).
pub const REACTIONS_PER_NODE: u32 = 10;
/// Listeners whose actions came through here recently, so that a notice for one finds its way
/// down.
const MAX_ROUTES: usize = 256;
const ROUTE_KEPT: Duration = Duration::from_secs(60);

/// An action going up: its bytes, and the path it came up from here (see
/// [`super::wire::Up::ActVia`]).
pub type GoingUp = (Vec<u8>, Vec<PeerKey>);

/// Places promised under one node of the subtree and not yet seen taken in a report.
#[derive(Debug, Clone, Copy)]
struct Promise {
    /// Promised and not yet seen taken in a report.
    count: u16,
    /// The holder's free places as last reported (before these promises).
    offered: u16,
    /// The latest.
    at: Instant,
}

/// One child, as its parent knows it.
#[derive(Debug, Clone)]
struct Child {
    report: Report,
    reported_at: Option<Instant>,
    acts: Bucket,
}

/// Why a child was not taken, or an action not passed up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("this node feeds as many children as it can")]
    Full,
    #[error("this node is below you in the tree: taking you as a child would make a loop")]
    Loop,
    #[error("too many actions from below: slow down")]
    ChildTooFast,
    #[error("too many actions waiting to go up: try again in a moment")]
    QueueFull,
}

impl Refused {
    /// What the author of an action refused here is told: the refusal itself if the author is
    /// the child it came from; else the refusal is a relay's on its way up (one flooding its
    /// parent gets its children's lines refused with its own, and those go to the host
    /// straight), and "slow down" would be untrue.
    pub fn notice(&self, author_is_child: bool) -> String {
        if author_is_child {
            self.to_string()
        } else {
            "a relay on your way to the host is busy: your action was not passed on (a chat \
             line goes to the host straight)"
                .to_owned()
        }
    }
}

/// Where to put a newcomer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Placed {
    /// Under this node itself.
    Here,
    /// Under `slot`'s node, `below` hops below this one.
    Below(Slot),
}

/// One node's part of one room's tree.
#[derive(Debug, Clone)]
pub struct Subtree {
    me: PeerKey,
    /// How to reach this node (offered in its free places).
    addrs: Vec<serde_bytes::ByteBuf>,
    capacity: u16,
    children: BTreeMap<PeerKey, Child>,
    /// Places in this subtree handed out since the node holding them last reported, by holder.
    promised: BTreeMap<PeerKey, Promise>,
    lost: VecDeque<(PeerKey, Instant)>,
    ancestors: Vec<Ancestor>,
    /// This node's own reactions since its last report.
    reactions: BTreeMap<String, u32>,
    /// How this node itself hears (set by its player, see [`Subtree::heard`]).
    own_loss: Loss,
    newcomers: VecDeque<Newcomer>,
    /// Actions waiting to go up, by the child they came from (this node's own under its own
    /// key), each with the path below that child; they go up a child at a time in turn.
    acts: BTreeMap<PeerKey, VecDeque<GoingUp>>,
    queued: usize,
    /// Whose action went up last.
    turn: Option<PeerKey>,
    up: Bucket,
    routes: VecDeque<(PeerKey, PeerKey, Instant)>,
    /// Community relays the host listed, and the children each may take: anyone else's
    /// reports are believed up to [`MEMBER_MAX_CHILDREN`] free places a node.
    carriers: HashMap<PeerKey, u16>,
    /// Relays the host took out of the tree: their free places are not believed, and if this
    /// node is one of them it takes no new children.
    excluded: HashSet<PeerKey>,
}

impl Subtree {
    pub fn new(me: PeerKey, capacity: u16, now: Instant) -> Self {
        Self {
            carriers: HashMap::new(),
            excluded: HashSet::new(),
            me,
            addrs: Vec::new(),
            capacity,
            children: BTreeMap::new(),
            promised: BTreeMap::new(),
            lost: VecDeque::new(),
            ancestors: Vec::new(),
            reactions: BTreeMap::new(),
            own_loss: Loss::default(),
            newcomers: VecDeque::new(),
            acts: BTreeMap::new(),
            queued: 0,
            turn: None,
            up: Bucket::new(UP_ACTS_PER_SEC, UP_ACTS_BURST, now),
            routes: VecDeque::new(),
        }
    }

    pub fn me(&self) -> PeerKey {
        self.me
    }

    pub fn capacity(&self) -> u16 {
        self.capacity
    }

    /// Children it can take now (promises counted).
    pub fn free(&self) -> u16 {
        if self.excluded.contains(&self.me) {
            return 0;
        }
        let taken = self.children.len() + usize::from(self.promised_to(&self.me));
        self.capacity
            .saturating_sub(u16::try_from(taken).unwrap_or(u16::MAX))
    }

    fn promised_to(&self, holder: &PeerKey) -> u16 {
        self.promised.get(holder).map_or(0, |promise| promise.count)
    }

    pub fn set_addrs(&mut self, addrs: Vec<serde_bytes::ByteBuf>) {
        self.addrs = addrs;
    }

    pub fn set_capacity(&mut self, capacity: u16) {
        self.capacity = capacity;
    }

    pub fn children(&self) -> impl Iterator<Item = &PeerKey> {
        self.children.keys()
    }

    pub fn has_child(&self, child: &PeerKey) -> bool {
        self.children.contains_key(child)
    }

    /// This node's ancestors, its parent first (empty at the root, and while unattached).
    pub fn ancestors(&self) -> &[Ancestor] {
        &self.ancestors
    }

    pub fn ancestor_keys(&self) -> Vec<PeerKey> {
        self.ancestors.iter().map(|a| a.key).collect()
    }

    /// The path a child of this node is told: this node, then its ancestors.
    pub fn path_for_children(&self) -> Vec<Ancestor> {
        let mut path = Vec::with_capacity(self.ancestors.len() + 1);
        path.push(Ancestor {
            key: self.me,
            addrs: self.addrs.clone(),
        });
        path.extend(self.ancestors.iter().cloned());
        path.truncate(super::wire::MAX_PATH);
        path
    }

    /// The parent said where this node is: its ancestors, parent first.
    pub fn set_ancestors(&mut self, ancestors: Vec<Ancestor>) {
        self.ancestors = ancestors;
    }

    /// A child opens its stream (its ticket checked by the caller). One stream per child: a
    /// child that opens another replaces the first. One of this node's ancestors is refused.
    pub fn child_opened(&mut self, child: PeerKey, now: Instant) -> Result<(), Refused> {
        // An orphan placed by a report from before it was orphaned can be sent into its own
        // subtree: taken, its audio would come from itself.
        if self.ancestors.iter().any(|ancestor| ancestor.key == child) {
            return Err(Refused::Loop);
        }
        if !self.children.contains_key(&child) {
            // A child arriving on a promise made here uses it up.
            if let Some(promise) = self.promised.get_mut(&self.me)
                && promise.count > 0
            {
                promise.count -= 1;
            } else if self.children.len() >= usize::from(self.capacity)
                || self.excluded.contains(&self.me)
            {
                return Err(Refused::Full);
            }
        }
        self.children.insert(
            child,
            Child {
                report: Report {
                    subtree: 1,
                    ..Report::default()
                },
                reported_at: None,
                acts: Bucket::new(CHILD_ACTS_PER_SEC, CHILD_ACTS_BURST, now),
            },
        );
        Ok(())
    }

    /// A child's stream ended.
    pub fn child_closed(&mut self, child: &PeerKey, now: Instant) {
        if self.children.remove(child).is_some() {
            self.lost.push_back((*child, now));
        }
        self.forget_lost(now);
    }

    /// Whether `child` was this node's child lately (its orphans may come up here).
    pub fn lost_lately(&mut self, child: &PeerKey, now: Instant) -> bool {
        self.forget_lost(now);
        self.lost.iter().any(|(lost, _)| lost == child)
    }

    fn forget_lost(&mut self, now: Instant) {
        while self
            .lost
            .front()
            .is_some_and(|(_, at)| now.saturating_duration_since(*at) > LOST_REMEMBERED)
        {
            self.lost.pop_front();
        }
    }

    /// The community relays the host listed (its latest view), and the children each may take.
    pub fn set_carriers(&mut self, carriers: impl IntoIterator<Item = (PeerKey, u16)>) {
        self.carriers = carriers.into_iter().collect();
    }

    /// The relays the host excluded (its latest view).
    pub fn set_excluded(&mut self, excluded: impl IntoIterator<Item = PeerKey>) {
        self.excluded = excluded.into_iter().collect();
    }

    /// Whether the host excluded `key` from relaying (as of its latest view).
    pub fn is_excluded(&self, key: &PeerKey) -> bool {
        self.excluded.contains(key)
    }

    /// A child's report: kept (within bounds) until the next one. A free place is believed up
    /// to what its node may take: a carrier the host listed, its share; anyone else,
    /// [`MEMBER_MAX_CHILDREN`] (a node claiming room for thousands gets a handful).
    pub fn report_from(&mut self, child: &PeerKey, mut report: Report, now: Instant) {
        for slot in &mut report.free {
            let most = if self.excluded.contains(&slot.key) {
                0
            } else {
                self.carriers
                    .get(&slot.key)
                    .copied()
                    .unwrap_or(MEMBER_MAX_CHILDREN)
            };
            slot.free = slot.free.min(most);
        }
        let Some(state) = self.children.get_mut(child) else {
            return;
        };
        // A subtree cannot be bigger than every place a ticket reaches; reactions are capped
        // by the size the child claims.
        report.subtree = report.subtree.max(1);
        let cap = report.subtree.saturating_mul(REACTIONS_PER_NODE);
        for reaction in &report.reactions {
            let count = reaction.count.min(cap);
            add_reaction(&mut self.reactions, &reaction.emoji, count);
        }
        for newcomer in report.newcomers.drain(..) {
            push_newcomer(&mut self.newcomers, newcomer);
        }
        report.reactions.clear();
        // A report shows a promised place taken only once the newcomer arrived and the
        // holder's report came up, a hop at a time: until then it shows the place free, and
        // the promise still counts.
        for slot in &report.free {
            if let Some(promise) = self.promised.get_mut(&slot.key) {
                let taken = promise.offered.saturating_sub(slot.free);
                if taken >= promise.count {
                    self.promised.remove(&slot.key);
                } else {
                    promise.count -= taken;
                    promise.offered = slot.free;
                }
            }
        }
        // Promises not seen taken (the newcomer never came, or its holder filled up or left
        // and no report names it) are dropped in time, so there are as many as the places
        // handed out lately, not one per node ever placed under.
        self.promised
            .retain(|_, promise| now.saturating_duration_since(promise.at) <= PROMISE_KEPT);
        state.report = report;
        state.reported_at = Some(now);
    }

    /// A listener below (through `child`, along `via` below it, as the child said) wants to say
    /// something to the host.
    pub fn act_from(
        &mut self,
        child: &PeerKey,
        author: PeerKey,
        act: Vec<u8>,
        via: Vec<PeerKey>,
        now: Instant,
    ) -> Result<(), Refused> {
        let Some(state) = self.children.get_mut(child) else {
            return Err(Refused::ChildTooFast);
        };
        if !state.acts.take(now) {
            return Err(Refused::ChildTooFast);
        }
        self.queue_act(*child, act, via)?;
        self.routes.push_back((author, *child, now));
        while self.routes.len() > MAX_ROUTES
            || self
                .routes
                .front()
                .is_some_and(|(_, _, at)| now.saturating_duration_since(*at) > ROUTE_KEPT)
        {
            self.routes.pop_front();
        }
        Ok(())
    }

    /// This node's own action.
    pub fn own_act(&mut self, act: Vec<u8>) -> Result<(), Refused> {
        self.queue_act(self.me, act, Vec::new())
    }

    fn queue_act(&mut self, from: PeerKey, act: Vec<u8>, via: Vec<PeerKey>) -> Result<(), Refused> {
        if self.queued >= MAX_QUEUED_ACTS {
            return Err(Refused::QueueFull);
        }
        let queue = self.acts.entry(from).or_default();
        if queue.len() >= MAX_QUEUED_FROM_ONE {
            return Err(if from == self.me {
                Refused::QueueFull
            } else {
                Refused::ChildTooFast
            });
        }
        // The path up from here: the child it came from first (this node's own: itself).
        let mut path = Vec::with_capacity(via.len() + 1);
        path.push(from);
        path.extend(via);
        path.truncate(super::wire::MAX_PATH);
        queue.push_back((act, path));
        self.queued += 1;
        Ok(())
    }

    /// This node's own actions waiting (they go up at once: its children cannot hold its voice
    /// back, and what it says is held to its own budgets further up).
    fn own_acts(&mut self) -> Vec<GoingUp> {
        let own: Vec<GoingUp> = self.acts.remove(&self.me).into_iter().flatten().collect();
        self.queued = self.queued.saturating_sub(own.len());
        own
    }

    /// The next action in turn: the next child's (in key order, after the last served) that has
    /// one waiting.
    fn next_act(&mut self) -> Option<GoingUp> {
        use std::ops::Bound::{Excluded, Unbounded};
        let after = match self.turn {
            Some(last) => self.acts.range((Excluded(last), Unbounded)).next(),
            None => None,
        }
        .or_else(|| self.acts.iter().next())
        .map(|(from, _)| *from)?;
        let queue = self.acts.get_mut(&after)?;
        let act = queue.pop_front();
        if queue.is_empty() {
            self.acts.remove(&after);
        }
        self.turn = Some(after);
        self.queued = self.queued.saturating_sub(1);
        act
    }

    /// This node's own reaction.
    pub fn react(&mut self, emoji: &str) {
        add_reaction(&mut self.reactions, emoji, 1);
    }

    /// A listener admitted into this subtree (told to the host in the next report).
    pub fn newcomer(&mut self, newcomer: Newcomer) {
        push_newcomer(&mut self.newcomers, newcomer);
    }

    /// Actions to send up now: this node's own, then its children's within its budget, a child
    /// at a time in turn; each with the path it came up (the child it came from first; see [`super::shares`]).
    pub fn take_acts(&mut self, now: Instant) -> Vec<GoingUp> {
        let mut out = self.own_acts();
        while self.queued > 0 && self.up.take(now) {
            if let Some(act) = self.next_act() {
                out.push(act);
            }
        }
        out
    }

    /// At the root: every action waiting (the host's own budgets take them from here).
    pub fn take_all_acts(&mut self) -> Vec<GoingUp> {
        let mut all = self.own_acts();
        all.extend(std::iter::from_fn(|| self.next_act()));
        all
    }

    /// Which child a notice for `to` goes to (none: it is not below, or not known).
    pub fn route(&self, to: &PeerKey) -> Option<PeerKey> {
        if self.children.contains_key(to) {
            return Some(*to);
        }
        self.routes
            .iter()
            .rev()
            .find(|(author, _, _)| author == to)
            .map(|(_, child, _)| *child)
            .filter(|child| self.children.contains_key(child))
    }

    /// Nodes in this subtree, this node included, by the latest reports.
    pub fn size(&self) -> u32 {
        1 + self
            .children
            .values()
            .map(|child| child.report.subtree)
            .fold(0u32, u32::saturating_add)
    }

    /// How this node heard in its latest window (its playout's frames due and missing; see
    /// [`Loss::of_playout`]): counted in its reports until the next.
    pub fn heard(&mut self, loss: Loss) {
        self.own_loss = loss;
    }

    /// The subtree's listeners by loss: this node's own, and each child's latest report that
    /// is not stale, cut to the child's believed size.
    pub fn loss(&self, now: Instant) -> Loss {
        let mut loss = self.own_loss;
        for child in self.children.values() {
            let fresh = child
                .reported_at
                .is_some_and(|at| now.saturating_duration_since(at) <= REPORT_STALE);
            if fresh {
                loss.add(&child.report.loss, child.report.subtree);
            }
        }
        loss
    }

    /// The report to send up: the subtree's size, reactions and newcomers since the last one
    /// (handed over: they are not counted twice), the best free places, and how it hears.
    pub fn report(&mut self, now: Instant) -> Report {
        let mut reactions: Vec<ReactionCount> = std::mem::take(&mut self.reactions)
            .into_iter()
            .map(|(emoji, count)| ReactionCount { emoji, count })
            .collect();
        reactions.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.emoji.cmp(&b.emoji)));
        reactions.truncate(MAX_REACTION_KINDS);
        let newcomers: Vec<Newcomer> = self.newcomers.drain(..).take(MAX_NEWCOMERS).collect();
        Report {
            subtree: self.size(),
            reactions,
            free: self.slots(now),
            newcomers,
            loss: self.loss(now),
        }
    }

    /// The places this node would offer now (for diagnostics).
    pub fn offered(&self, now: Instant) -> Vec<Slot> {
        self.slots(now)
    }

    /// The best places in the subtree: this node's own if it has room, then its children's,
    /// shallowest first, most room first; promises made since a report are taken off.
    fn slots(&self, now: Instant) -> Vec<Slot> {
        self.slots_avoiding(None, now)
    }

    /// The free places, but none in `avoid`'s subtree (its own report's).
    fn slots_avoiding(&self, avoid: Option<&PeerKey>, now: Instant) -> Vec<Slot> {
        let mut slots = Vec::new();
        if self.free() > 0 {
            slots.push(Slot {
                key: self.me,
                addrs: self.addrs.clone(),
                below: 0,
                free: self.free(),
            });
        }
        for (key, child) in &self.children {
            if avoid == Some(key) {
                continue;
            }
            let fresh = child
                .reported_at
                .is_some_and(|at| now.saturating_duration_since(at) <= REPORT_STALE);
            if !fresh {
                continue;
            }
            for slot in &child.report.free {
                let free = slot.free.saturating_sub(self.promised_to(&slot.key));
                if free > 0 && !self.excluded.contains(&slot.key) {
                    slots.push(Slot {
                        free,
                        below: slot.below.saturating_add(1),
                        ..slot.clone()
                    });
                }
            }
        }
        slots.sort_by(|a, b| {
            a.below
                .cmp(&b.below)
                .then_with(|| b.free.cmp(&a.free))
                .then_with(|| a.key.cmp(&b.key))
        });
        slots.truncate(MAX_SLOTS);
        slots
    }

    /// Finds a place for a newcomer in this subtree, and counts it as taken until a report
    /// shows it taken (or, here, until the newcomer arrives), or for [`PROMISE_KEPT`].
    pub fn place(&mut self, now: Instant) -> Option<Placed> {
        self.place_where(true, None, now)
    }

    /// [`Subtree::place`] for `asker`: never in its own subtree (a child of this node asking
    /// for a place, its stream not ended yet, would be sent under itself), and here only if
    /// `here` (this node shed it lately: see `uplink::Uplink::shed_lately`).
    pub fn place_for(&mut self, asker: &PeerKey, here: bool, now: Instant) -> Option<Placed> {
        self.place_where(here, Some(asker), now)
    }

    fn place_where(&mut self, here: bool, asker: Option<&PeerKey>, now: Instant) -> Option<Placed> {
        self.forget_promises(now);
        if here && self.free() > 0 {
            self.promise(self.me, 0, now);
            return Some(Placed::Here);
        }
        let slot = self
            .slots_avoiding(asker, now)
            .into_iter()
            .find(|slot| here || slot.key != self.me)?;
        self.promise(slot.key, slot.free, now);
        Some(Placed::Below(slot))
    }

    fn promise(&mut self, holder: PeerKey, offered: u16, now: Instant) {
        let promise = self.promised.entry(holder).or_insert(Promise {
            count: 0,
            offered,
            at: now,
        });
        promise.count = promise.count.saturating_add(1);
        promise.at = now;
    }

    /// Promises not seen kept within [`PROMISE_KEPT`] are dropped, this node's own included (a
    /// newcomer placed here that never opened its stream would otherwise hold the place for
    /// ever).
    fn forget_promises(&mut self, now: Instant) {
        self.promised
            .retain(|_, promise| now.saturating_duration_since(promise.at) <= PROMISE_KEPT);
    }

    /// Places promised and not yet taken (promises past [`PROMISE_KEPT`] are not counted).
    pub fn promised_count(&self, now: Instant) -> u32 {
        self.promised
            .values()
            .filter(|promise| now.saturating_duration_since(promise.at) <= PROMISE_KEPT)
            .map(|promise| u32::from(promise.count))
            .sum()
    }

    /// A promise made here that will not be kept (the newcomer never came).
    pub fn unpromise(&mut self, holder: &PeerKey) {
        if let Some(promise) = self.promised.get_mut(holder) {
            promise.count = promise.count.saturating_sub(1);
        }
    }
}

fn add_reaction(reactions: &mut BTreeMap<String, u32>, emoji: &str, count: u32) {
    if count == 0 || emoji.len() > crate::control::MAX_REACTION_BYTES {
        return;
    }
    if !reactions.contains_key(emoji) && reactions.len() >= MAX_REACTION_KINDS * 2 {
        return;
    }
    let total = reactions.entry(emoji.to_owned()).or_default();
    *total = total.saturating_add(count);
}

fn push_newcomer(newcomers: &mut VecDeque<Newcomer>, newcomer: Newcomer) {
    if newcomers.len() >= MAX_NEWCOMERS {
        newcomers.pop_front();
    }
    newcomers.push_back(newcomer);
}

#[cfg(test)]
mod tests;
