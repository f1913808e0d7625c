//! Seeded impairments under a node's ear, for tests and benches of what the room does about a
//! bad path. Nothing here runs unless asked for.
//!
//! - **Loss at playout** ([`Fanout::impair_playout`]): frames dropped before its player, as if
//!   they missed their playout time (the listeners' reports, the host's advice, the speakers'
//!   FEC). Audio rides reliable streams, so a lossy link delays frames rather than losing them;
//!   where a real lossy hop is wanted, the network lab (`tests/lab/mod.rs`) drops packets in a
//!   router.
//! - **Delay and jitter on the hop from its parent** ([`Fanout::impair_delay`]): each frame read
//!   from the parent's stream is held back until `base` plus a seeded share of `jitter` after
//!   its speaker captured it (its media timestamp) before this node takes it (plays, relays,
//!   judges), and everything else on the stream waits behind it, as a slow and jittery path
//!   delivers an ordered stream: a late frame holds up those behind it. (`netem` is not
//!   available on these machines; this is the userspace shim the lab's routers cannot give.)

use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

use super::Fanout;

impl Fanout {
    /// Tests and benches: drops `percent` of the frames this node would play, in an order fixed
    /// by `seed` (0: none), as if they missed their playout time. Relaying is untouched.
    #[doc(hidden)]
    pub fn impair_playout(&self, percent: u8, seed: u64) {
        let mut impaired = self.impaired.lock();
        let delay = impaired.take().and_then(|i| i.delay);
        *impaired = Some(Impairment {
            delay,
            ..Impairment::new(percent, seed)
        });
    }

    /// Tests and benches: holds everything read from this node's parent back `base` plus up to
    /// `jitter` (seeded by `seed`), in order (see the module's doc).
    #[doc(hidden)]
    pub fn impair_delay(&self, base: Duration, jitter: Duration, seed: u64) {
        let mut impaired = self.impaired.lock();
        let mut impairment = impaired.take().unwrap_or_else(|| Impairment::new(0, seed));
        impairment.delay = Some(DelayLine::new(base, jitter, seed));
        *impaired = Some(impairment);
    }

    /// Waits until what was just read from the parent (a frame captured at media time
    /// `captured`, or something else) may be taken (at once, unless [`Self::impair_delay`] was
    /// asked for).
    pub(super) async fn impaired_delay(&self, captured: Option<u32>) {
        let release = self
            .impaired
            .lock()
            .as_mut()
            .and_then(|impairment| impairment.delay.as_mut())
            .map(|delay| {
                let now = Instant::now();
                let captured = captured.map(|stamp| {
                    let age = crate::audio::media_age_ms(stamp, crate::audio::media_now());
                    now.checked_sub(Duration::from_secs_f64(age.max(0.0) / 1000.0))
                        .unwrap_or(now)
                });
                delay.release(now, captured)
            });
        if let Some(release) = release {
            tokio::time::sleep_until(tokio::time::Instant::from_std(release)).await;
        }
    }
}

/// Drops `percent` of the frames, in an order fixed by the seed; and a delay line, if asked.
#[derive(Debug)]
pub struct Impairment {
    percent: u8,
    rng: StdRng,
    delay: Option<DelayLine>,
}

impl Impairment {
    pub fn new(percent: u8, seed: u64) -> Self {
        Self {
            percent: percent.min(100),
            rng: StdRng::seed_from_u64(seed),
            delay: None,
        }
    }

    /// Whether the next frame is dropped.
    pub fn drops(&mut self) -> bool {
        self.percent > 0 && self.rng.random_ratio(u32::from(self.percent), 100)
    }
}

/// When each item read from a stream may be taken: a frame `base` plus a uniform share of
/// `jitter` after it was captured (seeded), anything else at once; never before the one before
/// it.
#[derive(Debug)]
pub struct DelayLine {
    base: Duration,
    jitter: Duration,
    rng: StdRng,
    last: Option<Instant>,
}

impl DelayLine {
    pub fn new(base: Duration, jitter: Duration, seed: u64) -> Self {
        Self {
            base,
            jitter,
            rng: StdRng::seed_from_u64(seed),
            last: None,
        }
    }

    /// When an item read at `now` (a frame captured at `captured`) may be taken.
    pub fn release(&mut self, now: Instant, captured: Option<Instant>) -> Instant {
        let at = match captured {
            Some(captured) => {
                let share = self.rng.random_range(0.0..=1.0f64);
                (captured + self.base + self.jitter.mul_f64(share)).max(now)
            }
            None => now,
        };
        let at = self.last.map_or(at, |last| at.max(last));
        self.last = Some(at);
        at
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_delay_line_is_seeded_keeps_order_and_stays_within_its_bounds() {
        let start = Instant::now();
        let schedule = |seed| {
            let mut line =
                DelayLine::new(Duration::from_millis(40), Duration::from_millis(60), seed);
            (0..1_000u32)
                .map(|i| {
                    let captured = start + Duration::from_millis(u64::from(i) * 20);
                    line.release(captured, Some(captured))
                })
                .collect::<Vec<_>>()
        };
        let (a, b, c) = (schedule(3), schedule(3), schedule(4));
        assert_eq!(a, b, "deterministic");
        assert_ne!(a, c, "another seed, another schedule");
        assert!(a.windows(2).all(|w| w[0] <= w[1]), "in order");
        for (i, at) in a.iter().enumerate() {
            let came = start + Duration::from_millis(i as u64 * 20);
            let held = at.saturating_duration_since(came);
            // At least the base; at most base and jitter (a late one holds up the next by less
            // than a jitter's worth: items come every 20 ms).
            assert!(held >= Duration::from_millis(40), "{held:?}");
            assert!(held <= Duration::from_millis(100), "{held:?}");
        }
        let spread = a
            .iter()
            .enumerate()
            .map(|(i, at)| {
                at.saturating_duration_since(start + Duration::from_millis(i as u64 * 20))
            })
            .max()
            .unwrap_or_default();
        assert!(
            spread >= Duration::from_millis(90),
            "the jitter is used: {spread:?}"
        );
        // What is not a frame goes at once, behind what came before.
        let mut line = DelayLine::new(Duration::from_millis(40), Duration::ZERO, 1);
        let frame = line.release(start, Some(start));
        assert_eq!(frame, start + Duration::from_millis(40));
        assert_eq!(line.release(start, None), frame);
        let later = start + Duration::from_millis(100);
        assert_eq!(line.release(later, None), later);
    }

    #[test]
    fn the_same_seed_drops_the_same_frames_and_about_as_many_as_asked() {
        let drops = |seed| {
            let mut impairment = Impairment::new(10, seed);
            (0..10_000).map(|_| impairment.drops()).collect::<Vec<_>>()
        };
        let (a, b, c) = (drops(7), drops(7), drops(8));
        assert_eq!(a, b, "deterministic");
        assert_ne!(a, c, "another seed, another pattern");
        let dropped = a.iter().filter(|d| **d).count();
        assert!((900..=1_100).contains(&dropped), "{dropped} of 10,000");
        let mut none = Impairment::new(0, 7);
        assert!((0..1_000).all(|_| !none.drops()));
    }
}
