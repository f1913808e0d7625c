//! How many children a node's uplink carries, from what it measures rather than from a constant.
//!
//! **The cost of a child** is what goes into that child's stream, measured: the frames of the
//! several loudest speakers at once, their proofs, the host's beacons, control frames, keep-alives,
//! the sealing of a private room (its frames are larger), the stream's framing, and an allowance
//! per packet for what the transport adds (IP, UDP, QUIC: [`PACKET_OVERHEAD`]). Each second the
//! node counts what it wrote to every child fed that whole second and took the child's every
//! frame (its queue skipped none): the most any such child took is that second's cost. With no
//! such child, what was offered to every child is (each item counted as a packet: an upper bound,
//! as a child's writer sends several in one). The cost used is the busiest [`WINDOW_SECONDS`]
//! (averaged) of the last [`PEAK_KEPT`], and never below [`MIN_COST`]: a silent room costs
//! little, and people start talking again.
//!
//! **The capacity** is the declared upload (kbit/s), of which [`HEADROOM_PERCENT`] is used,
//! divided by that cost; without a declaration, or before the first measured second, it is the
//! configured number. A declaration is believed one child at a time: the node offers one place
//! more than the most children it has fed cleanly for [`PROVE_SECONDS`] (a declaration can be
//! wrong, and a transport that buffers megabytes shows an overloaded uplink only as delay, once
//! the children are there). It falls at once and rises only after it has allowed more for
//! [`RAISE_AFTER`] (hysteresis: one loud minute does not make the tree swing).
//!
//! **Congestion noticed.** A child's queue skipping frames means its stream did not go out as
//! fast as it was fed. Whose fault that is decides what is done:
//! - every child fed that second skipped frames (two at least), more children than the uplink
//!   has been seen to carry (below): the uplink is saturated, whatever was declared. The
//!   capacity is capped at one child less than it fed, and after
//!   [`CONGESTED_FOR`] such seconds in a row the newest child is shed (it repairs elsewhere);
//!   the cap is lifted one child at a time, each [`CLEAR_AFTER`] without a skipped frame;
//! - some children skipped frames and others did not: those children are slow (a slow downlink,
//!   or a child reading slowly on purpose), or the uplink is full (a saturated uplink hurts a
//!   newcomer's fresh connection first, while old ones keep their share). Each one that skips
//!   frames for [`SLOW_FOR`] seconds in a row is shed (one gone while behind, having taken its
//!   parent for dead, is gone already), and the capacity is capped at the children fed cleanly.
//!   A child cannot make its parent shed others by reading slowly: it costs its own place, and
//!   the parent's growth for [`CLEAR_AFTER`];
//! - a lone child that cannot be fed is shed the same way; a second within [`CLEAR_AFTER`]
//!   (or the same one again) caps the capacity at nothing: the node becomes a leaf, down to its
//!   floor (a host keeps one child).
//!
//! **What the uplink has been seen to carry.** Slow children and a thin uplink look alike from
//! the parent (children behind), but bytes a child read promptly did cross the uplink: each
//! second, what went to the children fed cleanly [`PROVE_SECONDS`] in a row or more is summed,
//! and the busiest [`WINDOW_SECONDS`] of the last [`PEAK_KEPT`], over what a child costs now, is
//! a number of children this uplink has carried ([`Uplink::shown`]). No congestion cap goes
//! below it, and children behind that are no more than it are slow, not the uplink: each is shed
//! on its own. So keys reading slowly in a node's places (a raid's relays placed under the host)
//! cost their own places, not the node's capacity (the host once ended a raid with one child:
//! `sybil_room`); a thin uplink never carried more than it can, so it is judged as before. The
//! evidence is in bytes: a room grown louder divides it by the dearer child, and a quiet room's
//! counts at a quiet room's cost (not [`MIN_COST`]: nobody speaking, a child costs about 1 KB/s,
//! and a raid's slow keys capped a quiet host at the children it still fed). An uplink can also
//! become thinner than it was (a home line shared with a new upload): every child behind twice
//! within [`CLEAR_AFTER`] (those placed after the first were shed too) and what it carried is
//! forgotten; a Sybil holding every place of a node twice in a minute gets that much.
//!
//! Pure: the time comes in; the node feeds it its counters and carries out what it returns.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

/// Of the declared upload, the share children may use (the rest is headroom: the node's own
/// voice, its reports, other traffic, the estimate's error).
pub const HEADROOM_PERCENT: u64 = 80;
/// What a packet costs beyond the bytes of the stream: IPv4 and UDP headers (28), a QUIC short
/// header, its AEAD tag and a stream frame's header (about 32).
pub const PACKET_OVERHEAD: u64 = 60;
/// The least a child is taken to cost, in bytes a second (40 kbit/s: one voice at 32 kbit/s
/// with its framing, the constant this measurement replaces).
pub const MIN_COST: u64 = 5_000;
/// The least a child is taken to cost when weighing what the uplink carried
/// ([`Uplink::shown`]): a child's stream in a room where nobody speaks (marks every 100 ms,
/// beacons, chat) is about 1 KB/s, and [`MIN_COST`] would make the evidence of a quiet room
/// nothing (slow keys in a quiet host's places capped it at the others: `sybil_room`). Below
/// this a stream is keep-alives only.
pub const SHOWN_MIN_COST: u64 = 100;
/// Seconds averaged into one measurement.
pub const WINDOW_SECONDS: usize = 5;
/// How long the busiest measured window is remembered.
pub const PEAK_KEPT: Duration = Duration::from_secs(60);
/// How long the measurement must allow more children before the capacity rises.
pub const RAISE_AFTER: Duration = Duration::from_secs(10);
/// Seconds in a row of frames skipped by every child before the newest one is shed.
pub const CONGESTED_FOR: u32 = 2;
/// Seconds in a row one child (not all) skips frames before it is shed.
pub const SLOW_FOR: u32 = 2;
/// Seconds in a row a number of children must be fed cleanly before a node that declared its
/// upload offers a place more (see [`Uplink::capacity`]).
pub const PROVE_SECONDS: u32 = 3;
/// How far what the uplink carried may fall short of a whole number of children and still
/// count as them (see [`Uplink::shown`]).
pub const SHOWN_SLACK_PERCENT: u64 = 5;
/// Time without a frame skipped after which a congestion cap rises by one child.
pub const CLEAR_AFTER: Duration = Duration::from_secs(60);

const SECOND: Duration = Duration::from_secs(1);

/// What went into one stream so far (totals since it opened), or, as [`Sample::offered`], into
/// the room's queue for every child.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Sent {
    /// Bytes written (frames, proofs, beacons, control frames, keep-alives, framing).
    pub bytes: u64,
    /// Writes flushed (about a packet each).
    pub packets: u64,
    /// Frames the stream's queue skipped because it did not go out fast enough (or other signs
    /// that it ran behind: the node's to say).
    pub dropped: u64,
    /// The stream ended, from the child's side, while it ran behind (the child took its parent
    /// for dead).
    pub gone: bool,
}

impl Sent {
    fn since(&self, before: &Sent) -> Sent {
        Sent {
            bytes: self.bytes.saturating_sub(before.bytes),
            packets: self.packets.saturating_sub(before.packets),
            dropped: self.dropped.saturating_sub(before.dropped),
            gone: self.gone,
        }
    }
}

/// The node's counters now.
#[derive(Debug, Clone, Default)]
pub struct Sample<K> {
    pub offered: Sent,
    /// Every child's stream.
    pub children: Vec<(K, Sent)>,
}

/// Why the capacity is what it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Basis {
    /// The configured number (no declaration, or nothing measured yet).
    Configured,
    /// The declared upload over the measured cost.
    Measured,
    /// Capped by congestion.
    Congested,
}

/// One node's uplink in one room.
#[derive(Debug, Clone)]
pub struct Uplink<K> {
    /// Bytes a second children may take, from the declaration.
    budget: Option<u64>,
    configured: u16,
    floor: u16,
    capacity: u16,
    basis: Basis,
    /// The second being counted: when it started, and the counters then.
    since: Instant,
    start: Option<(Sent, BTreeMap<K, Sent>)>,
    /// Each second's cost, and when.
    seconds: VecDeque<(Instant, u64)>,
    raise_since: Option<Instant>,
    cap: Option<u16>,
    last_drop: Option<Instant>,
    first_seen: BTreeMap<K, Instant>,
    slow: BTreeMap<K, u32>,
    congested: u32,
    /// Children lately shed as slow, or gone while behind, and when.
    strikes: VecDeque<(K, Instant)>,
    /// Children lately shed as slow (not those gone while behind: they left), and when.
    shed_slow: VecDeque<(K, Instant)>,
    /// The most children fed cleanly [`PROVE_SECONDS`] in a row, and the clean seconds so far.
    proven: u16,
    clean_run: u32,
    /// Each child's clean seconds in a row.
    streaks: BTreeMap<K, u32>,
    /// Each second's bytes to children fed cleanly [`PROVE_SECONDS`] in a row (with the
    /// transport's allowance), and when: what the uplink carried.
    carried: VecDeque<(Instant, u64)>,
    /// Seconds in a row every child (two at least, no more than [`Uplink::shown`]) was behind,
    /// and when such runs (of [`SLOW_FOR`] seconds at least) came lately: a second run within
    /// [`CLEAR_AFTER`] (the children placed after the first were shed, all behind again) and
    /// the uplink is no longer what it was seen to be (a home line shared with a new upload):
    /// what it carried is forgotten.
    all_behind: u32,
    all_behind_runs: VecDeque<Instant>,
}

impl<K: Ord + Clone> Uplink<K> {
    /// `declared_kbps`: the upload its user declared, if any; `configured`: the capacity to start
    /// with (and keep, without a declaration, unless congested); `floor`: never fewer (the host
    /// keeps one child, or its room goes unheard).
    pub fn new(declared_kbps: Option<u32>, configured: u16, floor: u16, now: Instant) -> Self {
        // A declaration is believed one child at a time, from the first.
        let start = match declared_kbps {
            Some(_) => configured.min(1),
            None => configured,
        };
        Self {
            budget: declared_kbps.map(|kbps| u64::from(kbps) * 1000 / 8 * HEADROOM_PERCENT / 100),
            configured,
            floor,
            capacity: start.max(floor),
            basis: Basis::Configured,
            since: now,
            start: None,
            seconds: VecDeque::new(),
            raise_since: None,
            cap: None,
            last_drop: None,
            first_seen: BTreeMap::new(),
            slow: BTreeMap::new(),
            congested: 0,
            strikes: VecDeque::new(),
            shed_slow: VecDeque::new(),
            proven: 0,
            clean_run: 0,
            streaks: BTreeMap::new(),
            carried: VecDeque::new(),
            all_behind: 0,
            all_behind_runs: VecDeque::new(),
        }
    }

    /// The children this node can feed now.
    pub fn capacity(&self) -> u16 {
        self.capacity
    }

    pub fn basis(&self) -> Basis {
        self.basis
    }

    /// A child's measured cost, in bytes a second (none measured yet: `None`).
    pub fn cost(&self) -> Option<u64> {
        busiest(&self.seconds).map(|busiest| busiest.max(MIN_COST))
    }

    /// How many children this uplink has been seen to carry: the busiest [`WINDOW_SECONDS`] of
    /// the last [`PEAK_KEPT`] of bytes to children fed cleanly [`PROVE_SECONDS`] in a row, over a
    /// child's cost now (the last [`WINDOW_SECONDS`], at least [`SHOWN_MIN_COST`]: what a
    /// child costs in a room where nobody speaks is what the uplink carried then), rounded down
    /// within [`SHOWN_SLACK_PERCENT`] (siblings' streams differ by a few control frames, and the
    /// cost is the dearest child's). A lower bound on what the uplink carries now, while what
    /// crosses it is its own (forgotten when it is no longer: see `all_behind`).
    pub fn shown(&self) -> u16 {
        let Some(carried) = busiest(&self.carried) else {
            return 0;
        };
        let recent = self.seconds.len().clamp(1, WINDOW_SECONDS);
        let now: u64 = self.seconds.iter().rev().take(recent).map(|(_, c)| c).sum();
        let cost = (now / recent as u64).max(SHOWN_MIN_COST);
        let carried = carried.saturating_mul(100 + SHOWN_SLACK_PERCENT) / 100;
        u16::try_from(carried / cost).unwrap_or(u16::MAX)
    }

    /// Whether this child was shed here as slow in the last [`CLEAR_AFTER`]: it is not taken
    /// back meanwhile (a slow key placed here again and again would be fed, and shed, again and
    /// again). One that left while behind may come back: it may have had a moment's trouble.
    /// (`child` tells the keys of one child: a node may count a child's streams apart.)
    pub fn shed_lately(&self, child: impl Fn(&K) -> bool, now: Instant) -> bool {
        self.shed_slow
            .iter()
            .any(|(k, at)| child(k) && now.saturating_duration_since(*at) < CLEAR_AFTER)
    }

    /// Whether [`Uplink::tick`] would count a second now (a node whose counters forget what
    /// they have told asks first).
    pub fn due(&self, now: Instant) -> bool {
        self.start.is_none() || now.saturating_duration_since(self.since) >= SECOND
    }

    /// What the declared upload allows at the measured cost (none without a declaration, or
    /// before a measurement).
    pub fn allowed(&self) -> Option<u16> {
        let (budget, cost) = (self.budget?, self.cost()?);
        Some(u16::try_from(budget / cost.max(1)).unwrap_or(u16::MAX))
    }

    /// Takes the node's counters (as often as it likes: it counts once a second); returns the
    /// children to shed now (they should be handed over, and repair elsewhere).
    pub fn tick(&mut self, now: Instant, sample: &Sample<K>) -> Vec<K> {
        let Some((offered, before)) = self.start.take() else {
            self.restart(now, sample);
            return Vec::new();
        };
        let elapsed = now.saturating_duration_since(self.since);
        if elapsed < SECOND {
            self.start = Some((offered, before));
            return Vec::new();
        }
        let ms = u64::try_from(elapsed.as_millis())
            .unwrap_or(u64::MAX)
            .max(1);
        let rate = |sent: &Sent| {
            sent.bytes
                .saturating_add(sent.packets.saturating_mul(PACKET_OVERHEAD))
                .saturating_mul(1000)
                / ms
        };
        // Children fed the whole second, and what they took; and those that came during it and
        // ran behind already.
        let whole: Vec<(&K, Sent)> = sample
            .children
            .iter()
            .filter_map(|(k, now)| match before.get(k) {
                Some(b) => Some((k, now.since(b))),
                None => (now.dropped > 0 || now.gone).then_some((k, *now)),
            })
            .collect();
        let clean = whole
            .iter()
            .filter(|(_, sent)| sent.dropped == 0 && sent.bytes > 0)
            .map(|(_, sent)| rate(sent))
            .max();
        let cost = clean.unwrap_or_else(|| rate(&sample.offered.since(&offered)));
        self.seconds.push_back((now, cost));
        self.streaks
            .retain(|k, _| whole.iter().any(|(c, _)| *c == k));
        let mut carried = 0u64;
        for (k, sent) in &whole {
            let streak = self.streaks.entry((*k).clone()).or_insert(0);
            if sent.dropped == 0 && !sent.gone && sent.bytes > 0 {
                *streak += 1;
            } else {
                *streak = 0;
            }
            if *streak >= PROVE_SECONDS {
                carried = carried.saturating_add(rate(sent));
            }
        }
        self.carried.push_back((now, carried));
        for kept in [&mut self.seconds, &mut self.carried] {
            while kept
                .front()
                .is_some_and(|(at, _)| now.saturating_duration_since(*at) > PEAK_KEPT)
            {
                kept.pop_front();
            }
        }
        let shed = self.judge_drops(now, &whole, sample);
        if whole
            .iter()
            .all(|(_, sent)| sent.dropped == 0 && !sent.gone)
        {
            self.clean_run += 1;
            if self.clean_run >= PROVE_SECONDS {
                let fed = u16::try_from(whole.len()).unwrap_or(u16::MAX);
                self.proven = self.proven.max(fed);
                // What it feeds cleanly it carries: a cap never stays below that (a node capped
                // at nothing by children that took it for dead, which still feeds one the tree
                // gave it meanwhile, offers that one's place).
                if let Some(cap) = self.cap
                    && cap < fed
                {
                    self.cap = Some(fed);
                }
            }
        } else {
            self.clean_run = 0;
        }
        self.restart(now, sample);
        self.follow(now);
        shed
    }

    fn restart(&mut self, now: Instant, sample: &Sample<K>) {
        self.since = now;
        let children = sample.children.iter().cloned().collect();
        self.start = Some((sample.offered, children));
        self.first_seen
            .retain(|k, _| sample.children.iter().any(|(c, _)| c == k));
        for (k, _) in &sample.children {
            self.first_seen.entry(k.clone()).or_insert(now);
        }
    }

    /// Who skipped frames this second, and what comes of it.
    fn judge_drops(&mut self, now: Instant, whole: &[(&K, Sent)], sample: &Sample<K>) -> Vec<K> {
        let dropping = whole.iter().filter(|(_, sent)| sent.dropped > 0).count();
        let mut shed = Vec::new();
        if dropping == 0 {
            self.slow.clear();
            self.congested = 0;
            self.all_behind = 0;
            if let Some(cap) = self.cap
                && self
                    .last_drop
                    .is_none_or(|at| now.saturating_duration_since(at) >= CLEAR_AFTER)
            {
                self.cap = Some(cap.saturating_add(1));
                self.last_drop = Some(now);
            }
            return shed;
        }
        self.last_drop = Some(now);
        let mut shown = usize::from(self.shown());
        let all_behind = whole.len() >= 2 && dropping == whole.len();
        if all_behind && whole.len() <= shown {
            self.all_behind += 1;
            // A run counts once it lasted as long as a slow child takes to be shed (a moment's
            // stall of everyone is not one).
            if self.all_behind == SLOW_FOR {
                self.all_behind_runs
                    .retain(|at| now.saturating_duration_since(*at) < CLEAR_AFTER);
                self.all_behind_runs.push_back(now);
                if self.all_behind_runs.len() >= 2 {
                    // Everyone behind twice within a minute: not what it was seen to carry,
                    // and judged afresh as saturated (the cap the slow ones left, if any, was
                    // held up by what is forgotten now).
                    self.carried.clear();
                    self.all_behind_runs.clear();
                    self.cap = None;
                    shown = 0;
                }
            }
        } else {
            self.all_behind = 0;
        }
        if all_behind && whole.len() > shown {
            // The uplink is saturated (more children than it has been seen to carry): fewer.
            self.slow.clear();
            self.congested += 1;
            let carried = u16::try_from(whole.len() - 1).unwrap_or(u16::MAX);
            self.cap = Some(self.cap.map_or(carried, |cap| cap.min(carried)));
            let cap = self
                .cap
                .map_or(usize::MAX, |cap| usize::from(cap).max(shown));
            let over = sample.children.len() > cap;
            if self.congested >= CONGESTED_FOR && over {
                self.congested = 0;
                if let Some(newest) = self.newest(sample) {
                    shed.push(newest);
                }
            }
            return shed;
        }
        // Some children, not all (or a lone one, or no more than the uplink has carried): they
        // are slow, not the uplink. Each that keeps skipping frames is shed; one gone while
        // behind is gone already.
        self.congested = 0;
        let mut struck = Vec::new();
        for (k, sent) in whole
            .iter()
            .filter(|(_, sent)| sent.dropped > 0 || sent.gone)
        {
            let k = (*k).clone();
            if sent.gone {
                self.slow.remove(&k);
                struck.push(k);
                continue;
            }
            let seconds = self.slow.entry(k.clone()).or_insert(0);
            *seconds += 1;
            if *seconds >= SLOW_FOR {
                self.slow.remove(&k);
                shed.push(k.clone());
                self.shed_slow.push_back((k.clone(), now));
                struck.push(k);
            }
        }
        self.slow.retain(|k, _| {
            whole
                .iter()
                .any(|(c, sent)| *c == k && sent.dropped > 0 && !sent.gone)
        });
        // A child that could not be fed while others could (or a lone child twice in a minute):
        // the uplink carries what it feeds cleanly, not one more (a newcomer's fresh connection
        // is the first to suffer from a saturated uplink; an old one keeps its share).
        for kept in [&mut self.strikes, &mut self.shed_slow] {
            kept.retain(|(_, at)| now.saturating_duration_since(*at) < CLEAR_AFTER);
        }
        // The same child twice counts twice: a saturated uplink fails a newcomer however often
        // it is placed here again. (What a key reading slowly gets from it: this parent takes no
        // new children for a minute; nobody loses a place but the slow child.)
        for k in struck {
            self.strikes.push_back((k, now));
        }
        let others = whole.len() > 1;
        if !self.strikes.is_empty() && (others || self.strikes.len() >= 2) {
            let clean = whole
                .iter()
                .filter(|(_, sent)| sent.dropped == 0 && !sent.gone)
                .count();
            let clean = u16::try_from(clean).unwrap_or(u16::MAX);
            self.cap = Some(self.cap.map_or(clean, |cap| cap.min(clean)));
        }
        shed
    }

    /// The child fed for the shortest time.
    fn newest(&self, sample: &Sample<K>) -> Option<K> {
        sample
            .children
            .iter()
            .max_by_key(|(k, _)| (self.first_seen.get(k).copied(), k.clone()))
            .map(|(k, _)| k.clone())
    }

    /// The capacity, from the measurement and the congestion cap.
    fn follow(&mut self, now: Instant) {
        let (mut target, mut basis) = match self.allowed() {
            // A declaration is taken one child at a time: a place more than proven.
            Some(allowed) => (allowed.min(self.proven.saturating_add(1)), Basis::Measured),
            None => (self.configured, Basis::Configured),
        };
        // No cap below what the uplink has been seen to carry.
        if let Some(cap) = self.cap.map(|cap| cap.max(self.shown())) {
            if cap >= target {
                // Lifted by the time without drops as far as the measurement allows.
                if self
                    .last_drop
                    .is_none_or(|at| now.saturating_duration_since(at) >= CLEAR_AFTER)
                {
                    self.cap = None;
                }
            } else {
                target = cap;
                basis = Basis::Congested;
            }
        }
        let target = target.max(self.floor);
        if target < self.capacity {
            self.capacity = target;
            self.raise_since = None;
        } else if target > self.capacity {
            let since = *self.raise_since.get_or_insert(now);
            if now.saturating_duration_since(since) >= RAISE_AFTER {
                self.capacity = target;
                self.raise_since = None;
            }
        } else {
            self.raise_since = None;
        }
        self.basis = basis;
    }
}

/// The busiest [`WINDOW_SECONDS`] (averaged) of a run of seconds.
fn busiest(seconds: &VecDeque<(Instant, u64)>) -> Option<u64> {
    if seconds.is_empty() {
        return None;
    }
    let values: Vec<u64> = seconds.iter().map(|(_, value)| *value).collect();
    let window = values.len().min(WINDOW_SECONDS);
    values
        .windows(window)
        .map(|w| w.iter().sum::<u64>() / window as u64)
        .max()
}

#[cfg(test)]
mod tests;
