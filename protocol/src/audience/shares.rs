//! The audience's chat budget, shared fairly all the way down the relay tree.
//!
//! Every line that comes up names the path it took (each relay puts in front the child it came
//! from: `[host's child, its child, …, the author's node]`). The room's budget is divided among
//! the host's children whose subtrees are using their part (a line taken or asked for within
//! its part's time); each such share among that child's own children using theirs; and so on
//! down the path. A subtree that said a line a while ago holds no part: the budget is not left
//! idle for subtrees that barely chat. A line goes through only if every
//! share on its path has room for it. Ten thousand keys chatting through relays of their own
//! take those relays' shares, wherever in the tree the relays sit: a listener sharing a parent
//! with them still gets its own share of that parent's.
//!
//! A relay can lie about the paths below it, but only inside its own share: what it says about
//! its subtree divides the share its parent's honest stamp put it in, and nothing more.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::id::PeerKey;

/// A subtree's share is kept this long after its last line (for the right to borrow, below,
/// and its debts); only while it uses its part does it divide its parent's.
pub const ACTIVE: Duration = Duration::from_secs(60);
/// Lines one of the host's children's subtrees may send at once. Below, a share's burst is its
/// parent's divided among the parent's chatting subtrees, but at least a line: the bursts under
/// a parent add up to little more than its own, so a flood that saved up its shares' bursts
/// cannot hold a quiet sibling off for long.
pub const BURST: f64 = 2.0;
/// A share whose subtree asked past its part this lately borrows nothing for it (see
/// [`ChatShares::take`]).
pub const CALM: Duration = Duration::from_secs(2);
/// Deepest path followed (deeper stamps share their ancestor's part).
pub const MAX_DEPTH: usize = super::wire::MAX_PATH;
/// Shares kept under one node (a relay takes a handful of children; the host a few dozen).
const MAX_BELOW: usize = 256;
/// Shares kept in all: lines reach the host at one a second per child of its, so a minute of
/// them, a path each, stays well under this.
const MAX_SHARES: usize = 16_384;

#[derive(Debug)]
struct Share {
    /// When its budget is full again.
    full_at: Instant,
    /// Its last line (sent or refused).
    active: Instant,
    /// The last time a line found it without room of its own (its subtree asking faster than
    /// its part).
    crowded: Option<Instant>,
    /// Until when a line refused higher up its path, which had room here, claims a part of its
    /// parent's share (as long as a line taken would have).
    claimed: Instant,
    below: HashMap<PeerKey, Share>,
}

impl Share {
    fn new(now: Instant) -> Self {
        Self {
            full_at: now,
            active: now,
            crowded: None,
            claimed: now,
            below: HashMap::new(),
        }
    }

    /// Itself and every share below it.
    fn count(&self) -> usize {
        1 + self.below.values().map(Share::count).sum::<usize>()
    }
}

/// The room's audience chat budget and its shares.
#[derive(Debug)]
pub struct ChatShares {
    /// The room's: one line every this long.
    every: Duration,
    top: HashMap<PeerKey, Share>,
    kept: usize,
}

impl ChatShares {
    pub fn new(per_minute: u32) -> Self {
        Self {
            every: Duration::from_secs_f64(60.0 / f64::from(per_minute.max(1))),
            top: HashMap::new(),
            kept: 0,
        }
    }

    /// Shares kept now (for tests and bounds).
    pub fn kept(&self) -> usize {
        self.kept
    }

    /// Takes one line that came up `path` (the host's child first), if every share on the way
    /// has room: each share's rate is its parent's divided among itself and the parent's
    /// subtrees using theirs (a line taken that their budget has not made up yet, or one
    /// refused for want of room higher up, for as long as a line taken would count). A line
    /// refused in its own share claims nothing there, nor in the shares above it.
    ///
    /// A share may run one line past its burst for a line whose next share down the path is
    /// owed it: has room of its own, and its subtree has not asked past its part in the last
    /// [`CALM`]. Shares under one parent add up to the parent's, so the parent's budget is what
    /// their bursts race for, and a listener speaking up now and then beside relays that drain
    /// their parent's share as soon as it fills would lose every race; with the line past the
    /// burst it gets its part whenever it asks (the relays wait the longer after it), while
    /// the relays, always asking past theirs, never borrow. A fresh key under one of them is
    /// owed only within that relay's share, so it borrows there and no higher. A share with a
    /// single chatting subtree under it passes the right on up. Whatever is borrowed, each
    /// share's rate over time stays its part of the room's.
    pub fn take(&mut self, path: &[PeerKey], now: Instant) -> bool {
        let path = &path[..path.len().min(MAX_DEPTH)];
        if path.is_empty() {
            return false;
        }
        let Some(levels) = self.levels(path, now) else {
            return false;
        };
        // From the author's share up: may each share run a line past its burst?
        let mut borrow = vec![false; levels.len()];
        for k in (0..levels.len().saturating_sub(1)).rev() {
            let next = &levels[k + 1];
            borrow[k] = next.owed || (borrow[k + 1] && next.alone);
        }
        let fits: Vec<bool> = levels
            .iter()
            .zip(&borrow)
            .map(|(level, borrow)| {
                let most = level.every.mul_f64(level.burst);
                let most = if *borrow { most + level.every } else { most };
                level.wait + level.every <= most
            })
            .collect();
        let room = fits.iter().all(|fits| *fits);
        // Refused: the shares below the first without room asked within their parts and were
        // refused higher up; they claim their parts as a line taken would have. Those above it
        // claim nothing (the refusal was their own subtree's doing).
        let first_full = (!room)
            .then(|| fits.iter().position(|fits| !fits))
            .flatten();
        let mut at = &mut self.top;
        for (k, (key, level)) in path.iter().zip(&levels).enumerate() {
            let Some(share) = at.get_mut(key) else {
                break;
            };
            if room {
                share.full_at = now + level.wait + level.every;
            } else if first_full.is_some_and(|first| k > first)
                && level.wait + level.every <= level.every.mul_f64(level.burst)
            {
                share.claimed = share.claimed.max(now + level.every);
            }
            at = &mut share.below;
        }
        room
    }

    /// The shares on `path` as they are now, made where missing (and those quiet for a minute
    /// forgotten on the way), each marked as chatting now; none if past the bounds.
    fn levels(&mut self, path: &[PeerKey], now: Instant) -> Option<Vec<Level>> {
        let mut every = self.every;
        let mut burst = BURST;
        let mut at = &mut self.top;
        let mut kept = self.kept;
        let mut levels = Vec::with_capacity(path.len());
        let mut parent: Option<PeerKey> = None;
        for key in path {
            kept = kept.saturating_sub(forget_quiet(at, now));
            if !at.contains_key(key) {
                if at.len() >= MAX_BELOW || kept >= MAX_SHARES {
                    self.kept = kept;
                    return None;
                }
                at.insert(*key, Share::new(now));
                kept += 1;
            }
            // The subtrees that divide the parent's share: this one, and those still using
            // theirs (a line taken that its budget has not made up yet, or one it had room for
            // that was refused higher up: `claimed`). A subtree that said a line a while ago,
            // or whose lines are refused in its own share or below it, holds no part of it:
            // the parent's budget is not left idle for subtrees that barely chat.
            let using = |other: &PeerKey, share: &Share| {
                other == key || share.full_at.max(share.claimed) > now
            };
            let chatting = at.iter().filter(|(k, s)| using(k, s)).count() as u32;
            // A relay's own lines (stamped with its own key under itself) keep half of its
            // subtree's share however many of its children chat: the children the tree put
            // under it cannot talk it down.
            let own =
                parent.is_some_and(|parent| at.get(&parent).is_some_and(|s| using(&parent, s)));
            let ways = match (own, chatting) {
                (_, 1) => 1,
                (true, _) if parent == Some(*key) => 2,
                (true, n) => 2 * (n - 1),
                (false, n) => n,
            };
            every = every.saturating_mul(ways);
            if !levels.is_empty() {
                burst = (burst / f64::from(ways)).max(1.0);
            }
            let alone = at.len() == 1;
            parent = Some(*key);
            let Some(share) = at.get_mut(key) else {
                break;
            };
            share.active = now;
            let wait = share.full_at.saturating_duration_since(now);
            let room = wait + every <= every.mul_f64(burst);
            let calm = share
                .crowded
                .is_none_or(|at| now.saturating_duration_since(at) >= CALM);
            if !room {
                share.crowded = Some(now);
            }
            levels.push(Level {
                every,
                burst,
                wait,
                owed: room && calm,
                alone,
            });
            at = &mut share.below;
        }
        self.kept = kept;
        Some(levels)
    }
}

/// One share on a line's path, as the line found it.
struct Level {
    /// One line every this long.
    every: Duration,
    /// Lines at once.
    burst: f64,
    /// Until its budget has room for a line again.
    wait: Duration,
    /// It has room for a line within its own burst, and its subtree has not been asking past
    /// its part lately.
    owed: bool,
    /// The only subtree under its parent that chatted in the last [`ACTIVE`].
    alone: bool,
}

/// Drops the shares quiet for [`ACTIVE`] (and everything below them); how many went.
fn forget_quiet(level: &mut HashMap<PeerKey, Share>, now: Instant) -> usize {
    let mut gone = 0;
    level.retain(|_, share| {
        let keep = now.saturating_duration_since(share.active) <= ACTIVE;
        if !keep {
            gone += share.count();
        }
        keep
    });
    gone
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::audience::tests::numbered as key;

    /// Lines taken from each path, each asking every `every` tenths of a second for `secs`
    /// seconds, from half of that in (the flood under way when the honest listener speaks; the
    /// last path first, so the attacker's, listed after the honest ones, always
    /// asks first).
    fn run(
        shares: &mut ChatShares,
        start: Instant,
        paths: &[(Vec<PeerKey>, u64)],
        secs: u64,
    ) -> Vec<u32> {
        let mut taken = vec![0; paths.len()];
        for tick in 0..secs * 10 {
            let now = start + Duration::from_millis(tick * 100);
            for (i, (path, every)) in paths.iter().enumerate().rev() {
                if tick % every == every / 2 && shares.take(path, now) {
                    taken[i] += 1;
                }
            }
        }
        taken
    }

    #[test]
    fn a_listener_sharing_its_parent_with_flooding_relays_gets_its_share_of_the_parents() {
        let start = Instant::now();
        let mut shares = ChatShares::new(30);
        let (a, b, honest) = (key(1), key(2), key(3));
        // Under the host's child `a`: the honest listener (a line every 12 s), and two relays of
        // the attacker's carrying a hundred keys each, every key asking ten times a second; `b`
        // is another of the host's children, where one listener asks as fast.
        let mut paths = vec![(vec![a, honest], 120), (vec![b, key(4)], 1)];
        for relay in [10, 11] {
            for k in 0..100 {
                paths.push((vec![a, key(relay), key(1000 * relay + k)], 1));
            }
        }
        let taken = run(&mut shares, start, &paths, 60);
        // 30 a minute: `b` and `a` half each (15, and a burst of 2); within `a`, the honest
        // listener every line it says (its third would be 5), the attacker's relays the rest
        // (and a line each borrowed as they started).
        let attacker: u32 = taken[2..].iter().sum();
        assert_eq!(taken[0], 5, "honest");
        assert!((15..=17).contains(&taken[1]), "b {}", taken[1]);
        assert!((10..=14).contains(&attacker), "attacker {attacker}");
        assert!(taken[0] + attacker <= 15 + 2 + 2, "a's subtree {taken:?}");
    }

    #[test]
    fn a_listener_deeper_down_a_single_chatting_branch_gets_its_lines_through() {
        let start = Instant::now();
        let mut shares = ChatShares::new(30);
        // The host's child `a` has one chatting child `b`, under which the honest listener
        // (a line every 12 s) sits beside three relays of the attacker's with fifty keys each.
        let (a, b, honest) = (key(1), key(2), key(3));
        let mut paths = vec![(vec![a, b, honest], 120)];
        for relay in [10, 11, 12] {
            for k in 0..50 {
                paths.push((vec![a, b, key(relay), key(1000 * relay + k)], 1));
            }
        }
        let taken = run(&mut shares, start, &paths, 120);
        let attacker: u32 = taken[1..].iter().sum();
        assert_eq!(taken[0], 10, "honest");
        // The room's 60 lines in two minutes, a burst, and a line borrowed now and then.
        assert!(
            taken[0] + attacker <= 60 + 2 + 10 + 3,
            "{}",
            taken[0] + attacker
        );
        assert!(attacker >= 40, "attacker {attacker}");
    }

    #[test]
    fn a_relay_keeps_half_its_subtrees_share_for_itself_whatever_its_children_chat() {
        let start = Instant::now();
        let mut shares = ChatShares::new(30);
        // The host's child `l` relays for three of the attacker's relays, each with fifty keys
        // asking ten times a second; `l` itself says something every 5 s (its own lines come
        // stamped with its own key under itself).
        let l = key(1);
        let mut paths = vec![(vec![l, l], 50)];
        for relay in [10, 11, 12] {
            for k in 0..50 {
                paths.push((vec![l, key(relay), key(1000 * relay + k)], 1));
            }
        }
        let taken = run(&mut shares, start, &paths, 120);
        let attacker: u32 = taken[1..].iter().sum();
        // The room's 60 lines in two minutes: half to `l` itself (a line every 4 s, more than
        // the 24 it said: all of them but its first, 2.5 s in, which found the attackers'
        // opening bursts spent), the rest to its children together.
        assert!(taken[0] >= 23, "its own {}", taken[0]);
        assert!((28..=40).contains(&attacker), "attacker {attacker}");
    }

    #[test]
    fn subtrees_that_barely_chat_leave_their_part_to_those_that_do() {
        let start = Instant::now();
        let mut shares = ChatShares::new(30);
        // The honest listener `l`, a child of the host's, says a line every 12 s; three relays
        // in the host's other places and one under `l` say a line a minute each: a minute of
        // "chatting" for each, at the cost of one line.
        let l = key(1);
        let mut paths = vec![(vec![l, l], 120), (vec![l, key(5), key(5)], 600)];
        for relay in [2, 3, 4] {
            paths.push((vec![key(relay), key(relay)], 600));
        }
        let taken = run(&mut shares, start, &paths, 120);
        // Divided among every subtree that chatted in the last minute (five ways at the top,
        // two under `l`), its part was a line in 16 s: 6 of its 10 lines. Divided only among
        // those still using their part, 8: the two refused came while the relay under it still
        // held half of `l`'s part for the line it had just said.
        assert!(taken[0] >= 8, "honest {taken:?}");
        assert_eq!(&taken[1..], &[2, 2, 2, 2]);
    }

    #[test]
    fn a_relay_inventing_paths_below_it_divides_only_its_own_share() {
        let start = Instant::now();
        let mut shares = ChatShares::new(30);
        // The attacker relay `r` sits under the host's child `a`, next to an honest listener;
        // it stamps thousands of made-up children and grandchildren.
        let (a, r, honest) = (key(1), key(2), key(3));
        let mut paths = vec![(vec![a, honest], 1)];
        for k in 0..500u16 {
            paths.push((vec![a, r, key(100 + k), key(5000 + k), key(9000 + k)], 1));
        }
        let taken = run(&mut shares, start, &paths, 60);
        // The room's 30 a minute, and bursts: half to each of `a`'s two children.
        let attacker: u32 = taken[1..].iter().sum();
        // Both ask far past their parts (the attacker first, every time): about half each.
        assert!((12..=17).contains(&taken[0]), "honest {}", taken[0]);
        assert!(attacker <= 18, "attacker {attacker}");
        // What is kept is bounded: a share per node on the paths, the invented ones capped
        // under one node.
        assert!(shares.kept() <= 3 + 3 * MAX_BELOW, "{}", shares.kept());
    }

    #[test]
    fn quiet_subtrees_are_forgotten_and_the_room_goes_back_to_one_share() {
        let start = Instant::now();
        let mut shares = ChatShares::new(30);
        for k in 0..100 {
            assert!(shares.take(&[key(1), key(100 + k)], start) || k > 0);
        }
        assert!(shares.kept() > 100);
        // A minute and more later, a lone listener elsewhere has the room's budget.
        let later = start + ACTIVE + Duration::from_secs(1);
        assert!(shares.take(&[key(2), key(3)], later));
        assert!(shares.take(&[key(2), key(3)], later));
        assert!(!shares.take(&[key(2), key(3)], later));
        assert_eq!(shares.kept(), 2);
        assert!(shares.take(&[key(2), key(3)], later + Duration::from_secs(2)));
        assert!(!shares.take(&[], later));
    }
}
