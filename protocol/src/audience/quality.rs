//! How the audience hears, and what the speakers' encoders make of it.
//!
//! Audio rides reliable streams: a packet lost on the way is sent again and arrives late, not
//! never. What a listener loses is a frame *missing at its playout time* (concealed: it came too
//! late, or a relay skipped it for a slow child). Each node counts its own over a window of a
//! few seconds and puts itself in one bucket of a histogram of listeners by loss; reports sum
//! the histograms up the tree (bounded: six counters whatever the audience), each child's cut to
//! the subtree size its parent believes. At the host, an [`Adviser`] takes a high quantile of
//! the listeners' loss, rises with it at once and falls back only after it stayed lower for a
//! while; the host signs its advice into the view, and every speaker's encoder follows it
//! ([`EncoderSettings::for_loss`]): no FEC on a clean network (FEC at 10 % costs 0.7-0.8 MOS
//! where nothing is lost), FEC planned for the loss seen and a little more bitrate to pay for it
//! when the audience loses frames.
//!
//! Reports are not trusted: a subtree that lies can move the encoder only between clean (no FEC,
//! [`BASE_BITRATE`]) and [`MAX_ADVICE_PERMILLE`] (FEC for 20 % loss, [`MAX_BITRATE`]).
//!
//! The same reports carry a second histogram, of listeners by jitter: how long each node's
//! jitter buffer holds frames back ([`JITTER_BOUNDS_MS`]), summed and cut the same way. Nothing
//! in the encoder answers to jitter (a frame's length stays 20 ms); the host shows it
//! ([`Loss::jitter_quantile_ms`]: what nine in ten listeners wait at most) as a measure of the
//! tree's paths.

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// Upper bounds of the loss buckets, per mille (the last bucket holds everything from 20 % up).
/// The first bound is 0.8 %: a node that missed one frame in its window's 200 is clean (a
/// machine's hiccup), two make FEC worth its cost.
pub const BUCKET_BOUNDS_PERMILLE: [u16; BUCKETS - 1] = [8, 20, 50, 100, 200];
/// Buckets in a [`Loss`] histogram.
pub const BUCKETS: usize = 6;
/// Frames that must have been due at a node in its window for its loss to count (one second:
/// a node that heard almost nothing has nothing to say).
pub const MIN_DUE: u64 = 50;
/// The quantile of listeners the encoder plans for, per mille: FEC for the loss nine in ten
/// listeners see at most.
pub const ADVICE_QUANTILE_PERMILLE: u32 = 900;
/// The most loss the encoder plans for, per mille, whatever the reports claim.
pub const MAX_ADVICE_PERMILLE: u16 = 200;
/// How long the audience's loss must stay lower before the advice falls.
pub const FALL_AFTER: Duration = Duration::from_secs(10);
/// The voice's bitrate on a clean network (bit/s).
pub const BASE_BITRATE: u32 = 32_000;
/// The most the voice's bitrate rises to pay for FEC (bit/s).
pub const MAX_BITRATE: u32 = 40_000;

/// Upper bounds of the jitter buckets, in milliseconds of a node's jitter buffer (the last
/// bucket holds everything from 320 ms up).
pub const JITTER_BOUNDS_MS: [u16; BUCKETS - 1] = [20, 40, 80, 160, 320];

/// Listeners by the share of frames they missed at playout: `listeners[i]` lost less than
/// [`BUCKET_BOUNDS_PERMILLE`]`[i]` per mille (and at least the bound before it); and by how long
/// their jitter buffers hold frames back: `jitter[i]` less than [`JITTER_BOUNDS_MS`]`[i]`.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default, Serialize, Deserialize)]
pub struct Loss {
    pub listeners: [u32; BUCKETS],
    pub jitter: [u32; BUCKETS],
}

impl Loss {
    /// One listener that had `due` frames due at playout, `missing` of them missing; nobody if
    /// fewer than [`MIN_DUE`] were due.
    pub fn of_playout(due: u64, missing: u64) -> Self {
        let mut loss = Self::default();
        if due >= MIN_DUE {
            let permille = missing.min(due).saturating_mul(1000) / due;
            let bucket = BUCKET_BOUNDS_PERMILLE
                .iter()
                .position(|bound| permille < u64::from(*bound))
                .unwrap_or(BUCKETS - 1);
            loss.listeners[bucket] = 1;
        }
        loss
    }

    /// This listener (if it is counted) also in the jitter bucket of a buffer holding frames
    /// back `buffer_ms`.
    pub fn with_jitter(mut self, buffer_ms: u32) -> Self {
        if self.total() > 0 {
            let bucket = JITTER_BOUNDS_MS
                .iter()
                .position(|bound| buffer_ms < u32::from(*bound))
                .unwrap_or(BUCKETS - 1);
            self.jitter = [0; BUCKETS];
            self.jitter[bucket] = 1;
        }
        self
    }

    /// Listeners counted.
    pub fn total(&self) -> u32 {
        sum(&self.listeners)
    }

    /// Adds `other` (a child's subtree), scaled down to at most `at_most` listeners: a child
    /// counts for no more listeners than its parent believes it has.
    pub fn add(&mut self, other: &Loss, at_most: u32) {
        add_scaled(&mut self.listeners, &other.listeners, at_most);
        add_scaled(&mut self.jitter, &other.jitter, at_most);
    }

    /// How long [`ADVICE_QUANTILE_PERMILLE`] of the listeners' jitter buffers hold frames back
    /// at most (a bucket's upper bound; twice the last bound for the last bucket); `None` if
    /// nobody is counted.
    pub fn jitter_quantile_ms(&self) -> Option<u16> {
        let bucket = quantile_bucket(&self.jitter)?;
        Some(
            JITTER_BOUNDS_MS
                .get(bucket)
                .copied()
                .unwrap_or(JITTER_BOUNDS_MS[BUCKETS - 2] * 2),
        )
    }

    /// The loss (per mille, a bucket's upper bound, capped at [`MAX_ADVICE_PERMILLE`]) that
    /// [`ADVICE_QUANTILE_PERMILLE`] of the listeners see at most; 0 if the first bucket holds
    /// them (or nobody is counted).
    pub fn quantile_permille(&self) -> u16 {
        match quantile_bucket(&self.listeners) {
            None | Some(0) => 0,
            Some(bucket) => BUCKET_BOUNDS_PERMILLE
                .get(bucket)
                .copied()
                .unwrap_or(MAX_ADVICE_PERMILLE)
                .min(MAX_ADVICE_PERMILLE),
        }
    }
}

fn sum(buckets: &[u32; BUCKETS]) -> u32 {
    buckets.iter().fold(0u32, |sum, n| sum.saturating_add(*n))
}

/// Adds `other` to `into`, scaled down in proportion (rounded down) to at most `at_most`.
fn add_scaled(into: &mut [u32; BUCKETS], other: &[u32; BUCKETS], at_most: u32) {
    let total = u64::from(sum(other));
    for (sum, n) in into.iter_mut().zip(other) {
        let n = if total > u64::from(at_most) {
            u32::try_from(u64::from(*n) * u64::from(at_most) / total).unwrap_or(u32::MAX)
        } else {
            *n
        };
        *sum = sum.saturating_add(n);
    }
}

/// The bucket of the listener at [`ADVICE_QUANTILE_PERMILLE`] (rank rounded up, 1-based);
/// `None` if nobody is counted.
fn quantile_bucket(buckets: &[u32; BUCKETS]) -> Option<usize> {
    let total = u64::from(sum(buckets));
    if total == 0 {
        return None;
    }
    let rank = (total * u64::from(ADVICE_QUANTILE_PERMILLE))
        .div_ceil(1000)
        .max(1);
    let mut seen = 0u64;
    for (bucket, n) in buckets.iter().enumerate() {
        seen += u64::from(*n);
        if seen >= rank {
            return Some(bucket);
        }
    }
    Some(BUCKETS - 1)
}

/// How long a node counts its own playout before it puts itself in a bucket (200 frames: one
/// missing is half a per cent).
pub const WINDOW: Duration = Duration::from_secs(4);

/// A node's own playout, counted in windows of [`WINDOW`].
#[derive(Debug, Clone, Default)]
pub struct PlayoutWindow {
    /// When the window started, and the player's totals (frames due, missing) then.
    start: Option<(Instant, u64, u64)>,
}

impl PlayoutWindow {
    /// The player's totals now (they only grow while it plays; anything smaller starts anew):
    /// at the end of a window, how this node heard in it.
    pub fn sample(&mut self, now: Instant, due: u64, missing: u64) -> Option<Loss> {
        let Some((started, due0, missing0)) = self.start else {
            self.start = Some((now, due, missing));
            return None;
        };
        if due < due0 || missing < missing0 {
            self.start = Some((now, due, missing));
            return None;
        }
        if now.saturating_duration_since(started) < WINDOW {
            return None;
        }
        self.start = Some((now, due, missing));
        Some(Loss::of_playout(due - due0, missing - missing0))
    }
}

/// The host's advice to the speakers' encoders: the audience's loss, per mille, followed up at
/// once and down only after [`FALL_AFTER`] of less.
#[derive(Debug, Clone, Default)]
pub struct Adviser {
    advice: u16,
    /// Since when the measured loss has stayed below the advice.
    lower_since: Option<Instant>,
}

impl Adviser {
    /// The advice now (per mille, at most [`MAX_ADVICE_PERMILLE`]).
    pub fn advice(&self) -> u16 {
        self.advice
    }

    /// The audience's loss as the latest report sums it. Returns whether the advice changed.
    pub fn update(&mut self, now: Instant, loss: &Loss) -> bool {
        let measured = loss.quantile_permille();
        let before = self.advice;
        if measured >= self.advice {
            self.advice = measured;
            self.lower_since = None;
        } else {
            let since = *self.lower_since.get_or_insert(now);
            if now.saturating_duration_since(since) >= FALL_AFTER {
                self.advice = measured;
                self.lower_since = None;
            }
        }
        self.advice != before
    }
}

/// What a speaker's encoder is set to for an advice.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct EncoderSettings {
    /// In-band FEC (each packet carries a coarse copy of the one before).
    pub fec: bool,
    /// The packet loss the encoder plans its FEC for, in percent.
    pub loss_percent: u8,
    pub bitrate: u32,
}

impl EncoderSettings {
    /// For an advice of `permille` (anything above [`MAX_ADVICE_PERMILLE`] is taken as it):
    /// clean, FEC off at [`BASE_BITRATE`]; else FEC for that loss, and 400 bit/s more per
    /// percent (the coarse copies' cost), up to [`MAX_BITRATE`].
    pub fn for_loss(permille: u16) -> Self {
        let permille = permille.min(MAX_ADVICE_PERMILLE);
        let percent = u8::try_from(permille.div_ceil(10)).unwrap_or(u8::MAX);
        if percent == 0 {
            return Self {
                fec: false,
                loss_percent: 0,
                bitrate: BASE_BITRATE,
            };
        }
        Self {
            fec: true,
            loss_percent: percent,
            bitrate: (BASE_BITRATE + 400 * u32::from(percent)).min(MAX_BITRATE),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listeners(buckets: [u32; BUCKETS]) -> Loss {
        Loss {
            listeners: buckets,
            jitter: [0; BUCKETS],
        }
    }

    #[test]
    fn jitter_goes_up_the_tree_with_the_loss_and_a_liar_counts_for_its_believed_size() {
        // A listener counted for its loss is counted for its jitter buffer too; one that heard
        // too little to count, for neither.
        assert_eq!(
            Loss::of_playout(500, 0).with_jitter(35).jitter,
            [0, 1, 0, 0, 0, 0]
        );
        assert_eq!(Loss::of_playout(10, 0).with_jitter(35).jitter, [0; BUCKETS]);
        assert_eq!(Loss::default().jitter_quantile_ms(), None);
        // Nine listeners at 30 ms, one at 200 ms: nine in ten wait at most 40 ms.
        let mut tree = Loss::default();
        for _ in 0..9 {
            tree.add(&Loss::of_playout(500, 0).with_jitter(30), 1);
        }
        tree.add(&Loss::of_playout(500, 0).with_jitter(200), 1);
        assert_eq!(tree.jitter_quantile_ms(), Some(40));
        // A child claiming a thousand listeners at 500 ms counts for the 2 its parent believes.
        let mut liar = Loss::of_playout(500, 0).with_jitter(500);
        liar.listeners = [1000, 0, 0, 0, 0, 0];
        liar.jitter = [0, 0, 0, 0, 0, 1000];
        tree.add(&liar, 2);
        assert_eq!(tree.jitter, [0, 9, 0, 0, 1, 2]);
        // Now the tenth listener in twelve is in the last bucket (over 320 ms).
        assert_eq!(tree.jitter_quantile_ms(), Some(640));
    }

    #[test]
    fn a_listener_falls_in_the_bucket_of_its_loss_and_one_that_heard_little_is_not_counted() {
        assert_eq!(Loss::of_playout(500, 0).listeners, [1, 0, 0, 0, 0, 0]);
        assert_eq!(Loss::of_playout(200, 1).listeners, [1, 0, 0, 0, 0, 0]);
        assert_eq!(Loss::of_playout(200, 2).listeners, [0, 1, 0, 0, 0, 0]);
        assert_eq!(Loss::of_playout(500, 9).listeners, [0, 1, 0, 0, 0, 0]);
        assert_eq!(Loss::of_playout(500, 25).listeners, [0, 0, 0, 1, 0, 0]);
        assert_eq!(Loss::of_playout(500, 500).listeners, [0, 0, 0, 0, 0, 1]);
        assert_eq!(Loss::of_playout(500, 9_999).listeners, [0, 0, 0, 0, 0, 1]);
        assert_eq!(Loss::of_playout(MIN_DUE - 1, 10).total(), 0);
    }

    #[test]
    fn the_advice_is_what_nine_in_ten_listeners_lose_at_most() {
        assert_eq!(Loss::default().quantile_permille(), 0);
        assert_eq!(listeners([100, 0, 0, 0, 0, 0]).quantile_permille(), 0);
        // One lossy listener in a hundred does not turn FEC on for everyone.
        assert_eq!(listeners([99, 0, 0, 0, 0, 1]).quantile_permille(), 0);
        assert_eq!(listeners([80, 0, 0, 20, 0, 0]).quantile_permille(), 100);
        // A room of one: its listener.
        assert_eq!(listeners([0, 0, 1, 0, 0, 0]).quantile_permille(), 50);
        assert_eq!(
            listeners([0, 0, 0, 0, 0, 7]).quantile_permille(),
            MAX_ADVICE_PERMILLE
        );
    }

    #[test]
    fn a_lying_child_counts_for_no_more_listeners_than_its_parent_believes() {
        let mut sum = listeners([9, 0, 0, 0, 0, 0]);
        // A child whose parent believes it has one listener claims a million lossy ones.
        sum.add(&listeners([0, 0, 0, 0, 0, 1_000_000]), 1);
        assert_eq!(sum.total(), 10);
        assert_eq!(sum.quantile_permille(), 0, "one in ten");
        let mut sum = Loss::default();
        sum.add(&listeners([u32::MAX; BUCKETS]), u32::MAX);
        assert_eq!(sum.total(), u32::MAX, "saturates, never wraps");
    }

    #[test]
    fn the_advice_rises_with_loss_at_once_and_falls_only_after_it_stayed_lower() {
        let t = Instant::now();
        let mut adviser = Adviser::default();
        let clean = listeners([10, 0, 0, 0, 0, 0]);
        let lossy = listeners([0, 0, 0, 10, 0, 0]);
        assert!(!adviser.update(t, &clean));
        assert_eq!(adviser.advice(), 0);
        assert!(adviser.update(t + Duration::from_secs(1), &lossy));
        assert_eq!(adviser.advice(), 100);
        // Loss goes: the advice holds for a while (a burst often comes back)...
        adviser.update(t + Duration::from_secs(2), &clean);
        adviser.update(t + Duration::from_secs(11), &clean);
        assert_eq!(adviser.advice(), 100);
        // ...and a burst in between starts the wait again.
        adviser.update(t + Duration::from_secs(11), &lossy);
        adviser.update(t + Duration::from_secs(12), &clean);
        assert!(!adviser.update(t + Duration::from_secs(21), &clean));
        assert!(adviser.update(t + Duration::from_secs(22), &clean));
        assert_eq!(adviser.advice(), 0);
    }

    /// A chain host ← relay ← listener, each a real [`Subtree`], the host's
    /// [`super::super::host::HostAudience`] at the top: the listener's loss goes up in reports
    /// and becomes the host's advice; when it goes, the advice follows after [`FALL_AFTER`].
    #[test]
    fn loss_deep_in_the_tree_reaches_the_host_and_goes_again() {
        use super::super::host::{AudiencePolicy, HostAudience};
        use super::super::subtree::Subtree;
        use crate::id::{PeerKey, RoomId};
        let t = Instant::now();
        let (host_key, relay_key, listener_key) =
            (PeerKey([1; 32]), PeerKey([2; 32]), PeerKey([3; 32]));
        let mut host = Subtree::new(host_key, 4, t);
        let mut relay = Subtree::new(relay_key, 4, t);
        let mut listener = Subtree::new(listener_key, 4, t);
        host.child_opened(relay_key, t).expect("relay placed");
        relay
            .child_opened(listener_key, t)
            .expect("listener placed");
        let mut audience = HostAudience::new(RoomId([9; 16]), AudiencePolicy::default(), t);
        let mut round = |at: Instant, listener_heard: Loss| {
            listener.heard(listener_heard);
            relay.heard(Loss::of_playout(100, 0));
            relay.report_from(&listener_key, listener.report(at), at);
            host.report_from(&relay_key, relay.report(at), at);
            audience.report(host.report(at), at);
            audience.audio_loss()
        };
        assert_eq!(round(t, Loss::of_playout(100, 0)), 0, "clean");
        // The listener misses 8 frames in 100: two listeners below the host, the worse decides.
        let lossy = Loss::of_playout(100, 8);
        assert_eq!(round(t + Duration::from_secs(2), lossy), 100);
        let clean = Loss::of_playout(100, 0);
        assert_eq!(
            round(t + Duration::from_secs(4), clean),
            100,
            "held a while"
        );
        assert_eq!(
            round(t + Duration::from_secs(14), clean),
            0,
            "then clean again"
        );
    }

    #[test]
    fn a_node_counts_its_own_playout_in_windows() {
        let t = Instant::now();
        let mut window = PlayoutWindow::default();
        assert_eq!(window.sample(t, 0, 0), None);
        assert_eq!(window.sample(t + Duration::from_secs(1), 50, 0), None);
        let lossy = window.sample(t + WINDOW, 200, 20).expect("a window");
        assert_eq!(lossy.listeners, [0, 0, 0, 0, 1, 0], "20 of 200");
        let clean = window.sample(t + WINDOW * 2, 400, 20).expect("a window");
        assert_eq!(clean.listeners, [1, 0, 0, 0, 0, 0]);
        // A player that started again counts from there.
        assert_eq!(window.sample(t + WINDOW * 3, 10, 0), None);
        let quiet = window.sample(t + WINDOW * 4, 20, 0).expect("a window");
        assert_eq!(quiet.total(), 0, "too little heard to count");
    }

    #[test]
    fn the_encoder_runs_clean_without_fec_and_within_bounds_whatever_the_advice() {
        assert_eq!(
            EncoderSettings::for_loss(0),
            EncoderSettings {
                fec: false,
                loss_percent: 0,
                bitrate: BASE_BITRATE
            }
        );
        let five = EncoderSettings::for_loss(50);
        assert!(five.fec);
        assert_eq!(five.loss_percent, 5);
        assert_eq!(five.bitrate, 34_000);
        for permille in [1, 20, 100, 200, 201, 1000, u16::MAX] {
            let settings = EncoderSettings::for_loss(permille);
            assert!(settings.fec);
            assert!((1..=20).contains(&settings.loss_percent), "{permille}");
            assert!((BASE_BITRATE..=MAX_BITRATE).contains(&settings.bitrate));
        }
    }
}
