//! A per-speaker adaptive jitter buffer. Pure: arrival and playout times are passed in, so it
//! runs the same under a real clock, a paused tokio clock, or a simulation.
//!
//! Frames are pushed as they arrive (any order) and popped once per 20 ms by the playback clock.
//! Each pop gives the next frame to decode, or says how to fill its slot when it is missing:
//! recover it from the FEC in the frame after it, or conceal it. The buffer waits `target` before
//! playing a new talk spurt; `target` follows the measured inter-arrival jitter (RFC 3550
//! estimator), within bounds. Frames that arrive after their slot was played are dropped as late;
//! if the queue grows past twice the target, the oldest frames are skipped so latency stays
//! bounded. The delay a spurt starts with is not kept for ever: when every frame for half a second
//! has waited at least a frame longer than the target asks for, one frame is skipped (a quiet
//! one, when one comes within a second), so the delay follows the network down as well as
//! up (a first spurt starts cautiously, before any jitter has been measured).
//!
//! Audio rides reliable streams: on a lossy path a lost packet is resent, and every frame after
//! it waits for it. So a frame missing with nothing behind it is late, not lost: its slot is
//! concealed but the buffer *stretches* (waits for it, a slot at a time) instead of giving it up,
//! and learns how late frames come ([`JitterBuffer::target`] keeps that much more delay for a
//! while), so that the next resend arrives in time rather than stretching again. A frame given
//! up is one that never came while the ones after it did.

use std::collections::BTreeMap;

use crate::fanout::Authenticity;

/// Frames ahead of the highest a voice sent that a buffer takes: 20 s (a voice quiet for longer
/// starts a buffer afresh: [`super::mixer::VOICE_IDLE`] is 10 s).
const MAX_AHEAD_FRAMES: u64 = 1_000;
use std::time::{Duration, Instant};

use super::FRAME_DURATION;

/// Least delay a talk spurt is buffered before it plays.
pub const MIN_TARGET: Duration = Duration::from_millis(20);
/// The jitter assumed before any has been measured: a first talk spurt starts with ~40 ms of
/// buffer, and the estimate (and so the delay) falls within a second or two on a quiet network.
const INITIAL_JITTER_MS: f64 = 7.0;
/// Most delay the buffer will add, however bad the network.
pub const MAX_TARGET: Duration = Duration::from_millis(300);
/// After this many missing slots in a row with nothing queued, the speaker is considered silent
/// and the next frame starts a new spurt (buffered afresh).
const MAX_CONCEALED_IN_A_ROW: u32 = 5;
/// Arrivals whose delay the buffer remembers (10 s of one voice).
const DELAY_MEMORY: usize = 500;
/// The share of remembered frames the target waits long enough for, per mille: all but one
/// in fifty (a resend on a lossy path holds up a few frames; one stall of a busy machine in
/// ten seconds does not move it).
const DELAY_QUANTILE_PERMILLE: usize = 980;
/// Arrivals between two updates of the delay quantile.
const DELAY_EVERY: u32 = 25;
/// Frames played between decisions to shorten the delay (half a second).
const ADAPT_WINDOW: u32 = 25;
/// A frame at least this quiet (RFC 6464 level, -dBov) can be skipped unheard.
const QUIET_LEVEL: u8 = 50;
/// How long a decided skip waits for a quiet frame before skipping a loud one (1 s).
const MAX_SKIP_WAIT: u32 = 50;

/// What to play in the next 20 ms slot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Playout {
    /// Decode this payload.
    Frame(Vec<u8>),
    /// The slot's frame is lost; decode the FEC carried by this next payload.
    Recover(Vec<u8>),
    /// The slot's frame is lost and no FEC is at hand: conceal.
    Conceal,
    /// Nothing to play (not started, buffering, or the speaker is silent).
    Silence,
}

/// Counters, for status displays and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct JitterStats {
    pub received: u64,
    pub played: u64,
    pub recovered: u64,
    pub concealed: u64,
    /// Arrived after their slot had been played.
    pub late: u64,
    /// Skipped to keep latency bounded.
    pub skipped: u64,
    pub duplicates: u64,
    /// Not played: forged, or its proof never came (see [`crate::fanout::check`]).
    pub refused: u64,
    /// Slots concealed while waiting for a late frame that then played (no frame lost).
    pub stretched: u64,
    /// Played before its proof had come (it came, or the frame would have been refused had it
    /// still been waiting).
    pub unverified: u64,
}

/// A frame waiting to play.
#[derive(Debug)]
struct Queued {
    payload: Vec<u8>,
    arrived: Instant,
    level: u8,
    /// Whether it may play (`None`: nobody checks, as in tests of the buffer alone).
    auth: Option<Authenticity>,
}

impl Queued {
    fn playable(&self) -> bool {
        self.auth.as_ref().is_none_or(Authenticity::playable)
    }

    fn refused(&self) -> bool {
        self.auth
            .as_ref()
            .is_some_and(|auth| auth.get() == Authenticity::REFUSED)
    }
}

/// One speaker's buffer.
#[derive(Debug)]
pub struct JitterBuffer {
    /// Frames waiting to play, with when each arrived.
    queue: BTreeMap<u64, Queued>,
    /// The shortest wait (arrival to playout) of the frames played in this window, and how
    /// many have played in it.
    least_wait: Option<Duration>,
    window: u32,
    /// A skip has been decided; pops since.
    pending_skip: Option<u32>,
    /// Extended sequence number of the next slot to play, once playing.
    next: Option<u64>,
    /// When the current spurt may start playing.
    start_at: Option<Instant>,
    /// Highest extended sequence number seen (for unwrapping 32-bit sequence numbers).
    highest: Option<u64>,
    /// Lowest extended sequence number seen.
    lowest: Option<u64>,
    jitter_ms: f64,
    last_arrival: Option<(u64, Instant)>,
    /// The sequence number of the frame [`Self::pop`] last returned as [`Playout::Frame`].
    last_played: Option<u32>,
    concealed_in_a_row: u32,
    /// How much later than the earliest frames come (ms), at [`DELAY_QUANTILE_PERMILLE`] of
    /// the last [`DELAY_MEMORY`]: the target waits that long.
    late_ms: f64,
    /// Each arrival's delay beyond the earliest (ms), the last [`DELAY_MEMORY`].
    delays: std::collections::VecDeque<u16>,
    /// The first arrival (extended sequence number, when), and the least transit seen since
    /// (ms: arrival after the first minus the sending after the first).
    transit: Option<(u64, Instant, f64)>,
    /// Arrivals since the quantile was last taken.
    since_quantile: u32,
    /// Slots the frame due now has been waited for.
    waiting: u32,
    stats: JitterStats,
}

impl Default for JitterBuffer {
    fn default() -> Self {
        Self::new()
    }
}

impl JitterBuffer {
    pub fn new() -> Self {
        Self {
            queue: BTreeMap::new(),
            least_wait: None,
            window: 0,
            pending_skip: None,
            next: None,
            start_at: None,
            highest: None,
            lowest: None,
            jitter_ms: INITIAL_JITTER_MS,
            last_arrival: None,
            last_played: None,
            concealed_in_a_row: 0,
            late_ms: 0.0,
            delays: std::collections::VecDeque::new(),
            transit: None,
            since_quantile: 0,
            waiting: 0,
            stats: JitterStats::default(),
        }
    }

    /// The delay the buffer currently aims for.
    pub fn target(&self) -> Duration {
        let target =
            FRAME_DURATION.as_secs_f64() + (3.0 * self.jitter_ms).max(self.late_ms) / 1000.0;
        Duration::from_secs_f64(target).clamp(MIN_TARGET, MAX_TARGET)
    }

    /// How much audio is queued.
    pub fn buffered(&self) -> Duration {
        FRAME_DURATION * u32::try_from(self.queue.len()).unwrap_or(u32::MAX)
    }

    pub fn stats(&self) -> JitterStats {
        self.stats
    }

    /// How many frames the speaker sent from the first to the last one seen (as RTP reckons
    /// loss: `expected - received` frames never arrived).
    pub fn expected(&self) -> u64 {
        match (self.lowest, self.highest) {
            (Some(lowest), Some(highest)) => highest - lowest + 1,
            _ => 0,
        }
    }

    /// The (32-bit, wire) sequence number of the last frame played.
    pub fn last_played(&self) -> Option<u32> {
        self.last_played
    }

    /// A frame arrived at `now` (its level unknown: treated as quiet).
    pub fn push(&mut self, seq: u32, payload: Vec<u8>, now: Instant) {
        self.push_frame(seq, payload, earshot_protocol::frame::SILENCE_LEVEL, now);
    }

    /// A frame of RFC 6464 `level` arrived at `now`.
    pub fn push_frame(&mut self, seq: u32, payload: Vec<u8>, level: u8, now: Instant) {
        self.push_checked(seq, payload, level, None, now);
    }

    /// [`Self::push_frame`], with the frame's authenticity (it plays only while that allows).
    pub fn push_checked(
        &mut self,
        seq: u32,
        payload: Vec<u8>,
        level: u8,
        auth: Option<Authenticity>,
        now: Instant,
    ) {
        // A frame far ahead of everything this voice sent is not its next (a relay's
        // injection, say): it would move the count of frames expected by as much.
        if let Some(highest) = self.highest
            && self.unwrap_seq(seq) > highest + MAX_AHEAD_FRAMES
        {
            self.stats.refused += 1;
            return;
        }
        let seq = self.extend(seq);
        self.lowest = Some(self.lowest.map_or(seq, |lowest| lowest.min(seq)));
        self.stats.received += 1;
        self.measure(seq, now);
        if self.next.is_some_and(|next| seq < next) {
            self.stats.late += 1;
            return;
        }
        let queued = Queued {
            payload,
            arrived: now,
            level,
            auth,
        };
        // A frame twice (an old parent still feeding while a new one starts): the copy that may
        // play is kept (a new stream's first frames wait for its first proof).
        match self.queue.get(&seq) {
            Some(held) if !held.refused() && (held.playable() || !queued.playable()) => {
                self.stats.duplicates += 1;
                self.stats.received -= 1;
            }
            _ => {
                if self.queue.insert(seq, queued).is_some() {
                    self.stats.duplicates += 1;
                    self.stats.received -= 1;
                }
            }
        }
        if self.next.is_none() && self.start_at.is_none() {
            self.start_at = Some(now + self.target());
        }
        // Keep latency bounded: past twice the target (and the frame playing and the one just
        // in), skip the oldest frames.
        let limit =
            (2 * self.target() + 2 * FRAME_DURATION).as_millis() / FRAME_DURATION.as_millis();
        while self.queue.len() as u128 > limit {
            if let Some((oldest, _)) = self.queue.pop_first() {
                self.stats.skipped += 1;
                if let Some(next) = self.next.as_mut() {
                    *next = (*next).max(oldest + 1);
                }
            }
        }
    }

    /// The playback clock asks for the slot that plays at `now`.
    pub fn pop(&mut self, now: Instant) -> Playout {
        let Some(next) = self.next else {
            // Not playing: start in the slot nearest to when the spurt has been buffered for the
            // target delay (the next slot would add up to a whole frame of delay for nothing).
            // A spurt starts on a frame that may play (one waiting for its proof is waited for;
            // one refused is dropped).
            while self
                .queue
                .first_key_value()
                .is_some_and(|(_, frame)| frame.refused())
            {
                self.queue.pop_first();
                self.stats.refused += 1;
            }
            let ready = self
                .queue
                .first_key_value()
                .is_some_and(|(_, frame)| frame.playable());
            match (self.start_at, self.queue.first_key_value()) {
                (Some(start), Some((&first, _))) if ready && now + FRAME_DURATION / 2 >= start => {
                    self.next = Some(first);
                    self.start_at = None;
                    return self.pop(now);
                }
                _ => return Playout::Silence,
            }
        };
        let next = self.skip_if_decided(next);
        // A frame refused (forged, or its proof never came) is a lost frame. One held until its
        // proof verifies it (its stream's proofs came late lately) is waited for a while, as a
        // late frame is: on a lossy path the proof is held up by the same resends.
        if let Some(frame) = self.queue.get(&next)
            && !frame.playable()
        {
            if !frame.refused() && self.waiting < MAX_CONCEALED_IN_A_ROW {
                self.waiting += 1;
                return Playout::Conceal;
            }
            self.queue.remove(&next);
            self.stats.refused += 1;
        }
        if let Some(Queued {
            payload,
            arrived,
            auth,
            ..
        }) = self.queue.remove(&next)
        {
            if auth.is_some_and(|auth| auth.get() == Authenticity::PENDING) {
                self.stats.unverified += 1;
            }
            self.next = Some(next + 1);
            self.concealed_in_a_row = 0;
            self.stats.played += 1;
            self.last_played = Some(next as u32);
            self.stats.stretched += u64::from(self.waiting);
            self.waiting = 0;
            self.adapt(now.saturating_duration_since(arrived));
            return Playout::Frame(payload);
        }
        if self.queue.is_empty() {
            self.concealed_in_a_row += 1;
            if self.concealed_in_a_row > MAX_CONCEALED_IN_A_ROW {
                // The speaker paused (or stopped, or its frame is later than the buffer waits):
                // wait for the next spurt, which starts with that frame if it comes. Nothing
                // was lost meanwhile: the slots waited were a stretch.
                self.next = None;
                self.concealed_in_a_row = 0;
                self.stats.stretched += u64::from(self.waiting);
                self.waiting = 0;
                return Playout::Silence;
            }
            // Late, not lost (nothing after it came either): wait for it.
            self.waiting += 1;
            return Playout::Conceal;
        }
        // Frames after it came and it did not: lost. The slots waited for it were a stretch.
        self.stats.stretched += u64::from(self.waiting);
        self.waiting = 0;
        self.next = Some(next + 1);
        self.concealed_in_a_row = 0;
        match self.queue.get(&(next + 1)).filter(|frame| frame.playable()) {
            Some(following) => {
                self.stats.recovered += 1;
                Playout::Recover(following.payload.clone())
            }
            None => {
                self.stats.concealed += 1;
                Playout::Conceal
            }
        }
    }

    /// Shortens the delay by a frame when, over a whole window, every frame waited at least a
    /// frame longer than the target needs (half a frame of the target is rounding to slots).
    fn adapt(&mut self, waited: Duration) {
        self.least_wait = Some(self.least_wait.map_or(waited, |least| least.min(waited)));
        self.window += 1;
        if self.window < ADAPT_WINDOW {
            return;
        }
        let least = self.least_wait.take().unwrap_or_default();
        self.window = 0;
        if least >= self.target() + FRAME_DURATION / 2 && self.pending_skip.is_none() {
            self.pending_skip = Some(0);
        }
    }

    /// Carries out a decided skip on the frame due now, `next`, if it is quiet (or the wait for
    /// a quiet one is over) and the frame after it is here to play instead. Returns the slot to
    /// play.
    fn skip_if_decided(&mut self, next: u64) -> u64 {
        let Some(waited) = self.pending_skip else {
            return next;
        };
        let quiet = self
            .queue
            .get(&next)
            .is_some_and(|frame| frame.level >= QUIET_LEVEL);
        if (quiet || waited >= MAX_SKIP_WAIT) && self.queue.contains_key(&(next + 1)) {
            self.queue.remove(&next);
            self.stats.skipped += 1;
            self.pending_skip = None;
            self.next = Some(next + 1);
            return next + 1;
        }
        self.pending_skip = Some(waited + 1);
        next
    }

    /// Unwraps a 32-bit sequence number into a 64-bit one, near the highest seen.
    fn extend(&mut self, seq: u32) -> u64 {
        let extended = self.unwrap_seq(seq);
        self.highest = Some(self.highest.map_or(extended, |h| h.max(extended)));
        extended
    }

    /// `seq` unwrapped near the highest seen, without taking it.
    fn unwrap_seq(&self, seq: u32) -> u64 {
        match self.highest {
            None => u64::from(seq) + (1 << 32),
            Some(highest) => {
                let base = highest & !0xffff_ffff;
                let candidates = [
                    base.wrapping_sub(1 << 32) | u64::from(seq),
                    base | u64::from(seq),
                    (base + (1 << 32)) | u64::from(seq),
                ];
                candidates
                    .into_iter()
                    .min_by_key(|c| c.abs_diff(highest))
                    .unwrap_or(base | u64::from(seq))
            }
        }
    }

    /// RFC 3550's inter-arrival jitter, in milliseconds, from frames 20 ms apart.
    fn measure(&mut self, seq: u64, now: Instant) {
        if let Some((last_seq, last_at)) = self.last_arrival
            && seq > last_seq
        {
            let arrival_ms = now.saturating_duration_since(last_at).as_secs_f64() * 1000.0;
            let sent_ms = (seq - last_seq) as f64 * FRAME_DURATION.as_secs_f64() * 1000.0;
            let d = (arrival_ms - sent_ms).abs();
            self.jitter_ms += (d - self.jitter_ms) / 16.0;
        }
        if self.last_arrival.is_none_or(|(last_seq, _)| seq > last_seq) {
            self.last_arrival = Some((seq, now));
        }
        self.measure_delay(seq, now);
    }

    /// How much later than the earliest this frame came (its transit beyond the least seen),
    /// remembered; every [`DELAY_EVERY`] arrivals the quantile is taken anew.
    fn measure_delay(&mut self, seq: u64, now: Instant) {
        let frame_ms = FRAME_DURATION.as_secs_f64() * 1000.0;
        let (first_seq, first_at, least) = *self.transit.get_or_insert((seq, now, 0.0));
        let Some(sent) = seq.checked_sub(first_seq) else {
            return;
        };
        let transit =
            now.saturating_duration_since(first_at).as_secs_f64() * 1000.0 - sent as f64 * frame_ms;
        let least = least.min(transit);
        self.transit = Some((first_seq, first_at, least));
        if self.delays.len() == DELAY_MEMORY {
            self.delays.pop_front();
        }
        let delay = (transit - least).clamp(0.0, f64::from(u16::MAX));
        self.delays.push_back(delay as u16);
        self.since_quantile += 1;
        if self.since_quantile >= DELAY_EVERY {
            self.since_quantile = 0;
            let mut sorted: Vec<u16> = self.delays.iter().copied().collect();
            sorted.sort_unstable();
            let at = (sorted.len() * DELAY_QUANTILE_PERMILLE / 1000).min(sorted.len() - 1);
            self.late_ms = f64::from(sorted[at]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `arrivals` (seq, arrival offset in ms) and pops every 20 ms from t=0 to `until_ms`;
    /// returns what played, by slot.
    fn run(arrivals: &[(u32, u64)], until_ms: u64) -> (Vec<Playout>, JitterBuffer) {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let mut buffer = JitterBuffer::new();
        let mut events: Vec<(u64, Option<u32>)> = arrivals
            .iter()
            .map(|&(seq, ms)| (ms, Some(seq)))
            .chain((0..=until_ms).step_by(20).map(|ms| (ms, None)))
            .collect();
        // Arrivals before pops at the same instant.
        events.sort_by_key(|&(ms, seq)| (ms, seq.is_none()));
        let mut played = Vec::new();
        for (ms, seq) in events {
            match seq {
                Some(seq) => buffer.push(seq, vec![seq as u8], at(ms)),
                None => played.push(buffer.pop(at(ms))),
            }
        }
        (played, buffer)
    }

    fn frames(played: &[Playout]) -> Vec<u8> {
        played
            .iter()
            .filter_map(|p| match p {
                Playout::Frame(payload) => payload.first().copied(),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn refused_frames_never_play_and_a_playable_copy_wins() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let mut buffer = JitterBuffer::new();
        let refused = Authenticity::new(Authenticity::REFUSED);
        let held = Authenticity::new(Authenticity::HELD);
        let fine = Authenticity::verified();
        // Frame 0 is refused before its turn; frame 1 arrives held, then a playable copy; frame 2
        // arrives playable, then a held copy (from a new parent) that must not replace it.
        buffer.push_checked(0, vec![0], 40, Some(refused), at(0));
        buffer.push_checked(1, vec![1], 40, Some(held), at(20));
        buffer.push_checked(1, vec![11], 40, Some(fine.clone()), at(21));
        buffer.push_checked(2, vec![2], 40, Some(fine), at(40));
        buffer.push_checked(
            2,
            vec![22],
            40,
            Some(Authenticity::new(Authenticity::HELD)),
            at(41),
        );
        let played: Vec<Playout> = (0..10).map(|i| buffer.pop(at(60 + i * 20))).collect();
        assert_eq!(frames(&played), vec![11, 2]);
        assert_eq!(buffer.stats().refused, 1);
        // A frame far ahead of the voice (an injection) is refused outright.
        buffer.push_checked(1_000_000, vec![9], 40, None, at(300));
        assert_eq!(buffer.stats().refused, 2);
    }

    #[test]
    fn a_jittery_stream_plays_in_order_without_gaps() {
        // Frames sent every 20 ms arrive with up to 25 ms of jitter, some out of order.
        let jitter = [
            0, 25, 3, 17, 9, 0, 22, 5, 14, 1, 19, 8, 24, 2, 11, 6, 20, 13, 4, 16,
        ];
        let arrivals: Vec<(u32, u64)> = (0..100u32)
            .map(|seq| {
                (
                    seq,
                    u64::from(seq) * 20 + jitter[seq as usize % jitter.len()],
                )
            })
            .collect();
        let (played, buffer) = run(&arrivals, 2400);
        let expected: Vec<u8> = (0..100).map(|seq| seq as u8).collect();
        assert_eq!(frames(&played), expected);
        // Nothing was concealed while the stream lasted (only after its last frame).
        let last = played
            .iter()
            .rposition(|p| matches!(p, Playout::Frame(_)))
            .expect("frames played");
        assert!(
            played[..last]
                .iter()
                .all(|p| matches!(p, Playout::Frame(_) | Playout::Silence)),
            "{:?}",
            buffer.stats()
        );
        assert_eq!(buffer.stats().late, 0);
        assert!(
            buffer.target() > MIN_TARGET,
            "target follows jitter: {:?}",
            buffer.target()
        );
    }

    #[test]
    fn a_lost_frame_is_recovered_from_the_next_or_concealed() {
        let arrivals: Vec<(u32, u64)> = (0..20u32)
            .filter(|seq| *seq != 7)
            .map(|seq| (seq, u64::from(seq) * 20))
            .collect();
        let (played, buffer) = run(&arrivals, 600);
        assert!(played.contains(&Playout::Recover(vec![8])), "{played:?}");
        assert_eq!(buffer.stats().recovered, 1);
        assert_eq!(frames(&played).len(), 19);

        // The last frame of a spurt has no successor: concealed, then silence.
        let arrivals: Vec<(u32, u64)> = (0..10u32).map(|seq| (seq, u64::from(seq) * 20)).collect();
        let (played, _) = run(&arrivals, 600);
        assert!(played.ends_with(&[Playout::Silence, Playout::Silence]));
    }

    /// What a reliable stream does on a lossy path: a packet lost is resent some 60 ms later,
    /// and the frames sent meanwhile wait for it and come with it.
    fn resent(lost: &[u32], frames: u32, resend_ms: u64) -> Vec<(u32, u64)> {
        (0..frames)
            .map(|seq| {
                let sent = u64::from(seq) * 20;
                let held = lost
                    .iter()
                    .filter(|l| **l <= seq)
                    .map(|l| u64::from(*l) * 20 + resend_ms)
                    .filter(|until| *until > sent)
                    .max();
                (seq, held.unwrap_or(sent))
            })
            .collect()
    }

    #[test]
    fn frames_held_up_by_resends_are_waited_for_and_then_come_in_time() {
        // One packet in twenty lost and resent 70 ms later, for 20 s.
        let lost: Vec<u32> = (1..50).map(|n| n * 20 + 3).collect();
        let arrivals = resent(&lost, 1_000, 70);
        let (played, buffer) = run(&arrivals, 21_000);
        let stats = buffer.stats();
        // Nothing lost to the resends.
        assert_eq!(
            (stats.late, stats.recovered, stats.concealed),
            (0, 0, 0),
            "{stats:?}"
        );
        assert_eq!(
            frames(&played).len() as u64,
            1_000 - stats.skipped,
            "{stats:?}"
        );
        // The first resends stretched the delay; the buffer learnt it and waits that long.
        // (5 more: the stream's end, waited for before the buffer takes it for a pause.)
        assert!((6..=13).contains(&stats.stretched), "{stats:?}");
        assert!(stats.skipped <= 2, "{stats:?}");
        assert!(
            buffer.target() >= Duration::from_millis(80),
            "{:?}",
            buffer.target()
        );
        // Where nothing is held up, the delay stays low.
        let steady: Vec<(u32, u64)> = (0..1_000u32).map(|s| (s, u64::from(s) * 20)).collect();
        let (_, steady) = run(&steady, 21_000);
        assert!(
            steady.target() <= Duration::from_millis(30),
            "{:?}",
            steady.target()
        );
    }

    #[test]
    fn late_frames_are_dropped_and_duplicates_ignored() {
        let mut arrivals: Vec<(u32, u64)> =
            (0..30u32).map(|seq| (seq, u64::from(seq) * 20)).collect();
        arrivals.retain(|(seq, _)| *seq != 10);
        arrivals.push((10, 500)); // long after its slot
        arrivals.push((12, 245)); // a duplicate
        let (played, buffer) = run(&arrivals, 800);
        assert_eq!(buffer.stats().late, 1);
        assert_eq!(buffer.stats().duplicates, 1);
        assert!(!frames(&played).contains(&10));
    }

    #[test]
    fn a_burst_after_a_stall_does_not_build_latency() {
        // 40 frames held up for 600 ms, then delivered at once, then the stream resumes.
        let arrivals: Vec<(u32, u64)> = (0..100u32)
            .map(|seq| {
                let sent = u64::from(seq) * 20;
                (seq, if (20..60).contains(&seq) { 1_200 } else { sent })
            })
            .collect();
        let (_, buffer) = run(&arrivals, 2600);
        assert!(buffer.stats().skipped > 0, "{:?}", buffer.stats());
        assert!(buffer.buffered() <= 2 * MAX_TARGET);
    }

    #[test]
    fn the_delay_comes_down_on_a_steady_network() {
        // A first spurt starts with a cautious delay; a second of steady arrivals later, one
        // frame is skipped and frames play one slot after they arrive.
        let arrivals: Vec<(u32, u64)> = (0..150u32).map(|seq| (seq, u64::from(seq) * 20)).collect();
        let (played, buffer) = run(&arrivals, 3200);
        let slot_of_last = played
            .iter()
            .position(|p| *p == Playout::Frame(vec![149]))
            .expect("the last frame played");
        assert_eq!(
            slot_of_last as u64 * 20 - 149 * 20,
            20,
            "{:?}",
            buffer.stats()
        );
        assert_eq!(buffer.stats().skipped, 1);
        assert_eq!(buffer.stats().late, 0);
    }

    #[test]
    fn the_delay_is_shortened_in_a_pause_not_mid_word() {
        // Loud frames throughout, but for a short pause at frames 50-52.
        let t0 = Instant::now();
        let mut buffer = JitterBuffer::new();
        let mut played = Vec::new();
        for seq in 0..200u32 {
            let now = t0 + Duration::from_millis(20 * u64::from(seq));
            let level = if (50..53).contains(&seq) { 127 } else { 10 };
            buffer.push_frame(seq, vec![seq as u8], level, now);
            if let Playout::Frame(payload) = buffer.pop(now) {
                played.push(payload[0]);
            }
        }
        assert_eq!(buffer.stats().skipped, 1);
        let missing: Vec<u8> = (0..played.len() as u8)
            .filter(|seq| !played.contains(seq))
            .collect();
        assert_eq!(missing.len(), 1, "{missing:?}");
        assert!((50..53).contains(&missing[0]), "skipped {missing:?}");
    }

    #[test]
    fn sequence_numbers_wrap() {
        let arrivals: Vec<(u32, u64)> = (0..20u32)
            .map(|i| ((u32::MAX - 9).wrapping_add(i), u64::from(i) * 20))
            .collect();
        let (played, buffer) = run(&arrivals, 600);
        assert_eq!(frames(&played).len(), 20);
        assert_eq!(buffer.stats().late, 0);
    }
}
