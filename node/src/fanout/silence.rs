//! When a silent parent is taken for dead.
//!
//! A parent writes something every 20 ms while audio flows and a keep-alive every
//! [`super::KEEPALIVE`] while it has none, so on a steady path a gap of [`super::PARENT_SILENCE`]
//! means a dead parent, noticed in a few missed frames rather than when the connection times
//! out. A lossy path has longer gaps that are not death: audio rides a reliable stream, so a
//! packet lost on the way holds what follows it until it is resent (a second loss of the same
//! packet doubles the wait), and a busy machine adds its own. So the allowance follows the path:
//! twice the longest gap seen in the last [`GAP_MEMORY`], never below the steady
//! [`super::PARENT_SILENCE`] and never above [`MAX_SILENCE`]. A parent that dies is still noticed
//! within that allowance; one on a clean path as fast as ever. Pure: the time comes in.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::PARENT_SILENCE;

/// How long gaps are remembered.
pub const GAP_MEMORY: Duration = Duration::from_secs(10);
/// The longest a parent may be silent, however lossy its path has been.
pub const MAX_SILENCE: Duration = Duration::from_secs(1);
/// Gaps shorter than this are the stream's normal pace, not worth remembering.
const NOTABLE_GAP: Duration = Duration::from_millis(50);
/// Gaps remembered at most (the longest are the ones that matter; a full memory keeps them).
const MAX_GAPS: usize = 64;

/// A parent's silences, as its child hears them.
#[derive(Debug)]
pub struct Silence {
    last: Instant,
    /// Notable gaps: when each ended, and how long it was.
    gaps: VecDeque<(Instant, Duration)>,
}

impl Silence {
    pub fn new(now: Instant) -> Self {
        Self {
            last: now,
            gaps: VecDeque::new(),
        }
    }

    /// Something came from the parent.
    pub fn heard(&mut self, now: Instant) {
        let gap = now.saturating_duration_since(self.last);
        self.last = now;
        self.forget(now);
        if gap >= NOTABLE_GAP {
            if self.gaps.len() >= MAX_GAPS {
                // Drop the shortest: the allowance rests on the longest.
                if let Some(shortest) = self
                    .gaps
                    .iter()
                    .enumerate()
                    .min_by_key(|(_, (_, gap))| *gap)
                    .map(|(i, _)| i)
                {
                    self.gaps.remove(shortest);
                }
            }
            self.gaps.push_back((now, gap));
        }
    }

    /// How long the parent may be silent now before it is taken for dead.
    pub fn allowance(&mut self, now: Instant) -> Duration {
        self.forget(now);
        let longest = self.gaps.iter().map(|(_, gap)| *gap).max();
        longest
            .map_or(PARENT_SILENCE, |gap| gap.saturating_mul(2))
            .clamp(PARENT_SILENCE, MAX_SILENCE)
    }

    fn forget(&mut self, now: Instant) {
        self.gaps
            .retain(|(at, _)| now.saturating_duration_since(*at) <= GAP_MEMORY);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn a_steady_parent_is_given_the_steady_allowance() {
        let start = Instant::now();
        let mut silence = Silence::new(start);
        for i in 1..=500 {
            silence.heard(start + ms(20 * i));
        }
        assert_eq!(silence.allowance(start + ms(10_000)), PARENT_SILENCE);
    }

    #[test]
    fn a_lossy_path_earns_a_longer_allowance_for_a_while() {
        let start = Instant::now();
        let mut silence = Silence::new(start);
        let mut now = start;
        for _ in 0..50 {
            now += ms(20);
            silence.heard(now);
        }
        // A frame resent late: 110 ms without anything.
        now += ms(110);
        silence.heard(now);
        assert_eq!(silence.allowance(now), ms(220));
        // Longer gaps raise it, up to the most a parent may be silent.
        now += ms(700);
        silence.heard(now);
        assert_eq!(silence.allowance(now), MAX_SILENCE);
        // Ten seconds of a steady stream, and the path is taken as clean again.
        for _ in 0..600 {
            now += ms(20);
            silence.heard(now);
        }
        assert_eq!(silence.allowance(now), PARENT_SILENCE);
    }

    #[test]
    fn memory_stays_bounded() {
        let start = Instant::now();
        let mut silence = Silence::new(start);
        let mut now = start;
        for i in 0..10_000u64 {
            now += ms(100 + i % 7);
            silence.heard(now);
        }
        assert!(silence.gaps.len() <= MAX_GAPS);
        assert_eq!(silence.allowance(now), ms(2 * 106));
    }
}
