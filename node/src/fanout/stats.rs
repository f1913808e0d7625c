//! The audio plane's counters, per room.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::atomic::{AtomicU16, AtomicU32, AtomicU64};

use earshot_protocol::audience::uplink::{Sample, Sent};
use libp2p::PeerId;
use parking_lot::Mutex;

/// Counters for one room's audio.
#[derive(Debug, Default)]
pub struct FanoutStats {
    pub received: AtomicU64,
    pub relayed: AtomicU64,
    /// Frames a slow child skipped.
    pub dropped: AtomicU64,
    /// Bytes written to children (frames, keep-alives, control frames and length prefixes):
    /// this node's upload for the room.
    pub bytes_sent: AtomicU64,
    /// Audio bytes received from the parent: frames and keep-alives, length prefixes included.
    pub audio_received: AtomicU64,
    /// Control bytes (views, relayed envelopes, paths, notices) received from the parent, and
    /// sent up to it (reports, actions).
    pub control_received: AtomicU64,
    pub control_sent: AtomicU64,
    /// Streams closed for sending garbage.
    pub bad_streams: AtomicU64,
    /// Frames the host did not forward (not among the loudest speakers).
    pub not_selected: AtomicU64,
    /// Frames verified against their speakers' proofs, and proofs checked.
    pub verified: AtomicU64,
    pub proofs: AtomicU64,
    /// Streams that failed their checks (forged, withheld, flooded).
    pub failed_checks: AtomicU64,
    /// Private rooms: frames this node could not open (or, at the host, refused as sealed under
    /// an epoch it no longer holds).
    pub unopened: AtomicU64,
    /// This node's player: frames due at their playout time so far, and of them, missing
    /// (concealed, or recovered from FEC). Reported up the tree (see `earshot_protocol::audience::quality`).
    pub playout_due: AtomicU64,
    pub playout_missing: AtomicU64,
    /// How long this node's jitter buffer holds frames back now (ms), reported up the tree.
    pub playout_buffer_ms: AtomicU32,
    /// At the host: how long nine in ten listeners' jitter buffers hold frames back (ms, from
    /// the tree's reports; 0 until any are counted).
    pub audience_jitter_ms: AtomicU16,
    /// The host's advice to this node's encoder: the audience's loss, per mille (from the
    /// latest view; the host's own from its reports).
    pub audio_loss: AtomicU16,
    /// What went into the room's queue for every child: bytes (as written, framing included)
    /// and items (frames, proofs, beacons, control frames, keep-alives).
    pub offered_bytes: AtomicU64,
    pub offered_items: AtomicU64,
    /// Each child's stream, as its writer counts it (see `earshot_protocol::audience::uplink`).
    pub children: Mutex<HashMap<ChildStream, Arc<ChildCounters>>>,
    /// The capacity this node offers in the tree, plus one (0: not known yet), and what one
    /// child costs, measured (bytes a second; 0: not measured yet).
    capacity: AtomicU32,
    pub child_cost: AtomicU64,
}

/// One child's stream: the child, and the stream's number in the room. Counted by stream, not
/// by child: a child that left behind and opened a stream again within the second would
/// otherwise have its new stream's counters take the place of the old, and its leaving be lost.
pub type ChildStream = (PeerId, u64);

/// A mark the child says it read later than this after it was written, past the least delay
/// it has shown (or has not said so by then), counts as a frame skipped: its stream runs behind (a QUIC stream buffers megabytes: a
/// thin uplink shows as delay long before a queue here overflows).
pub const LATE: std::time::Duration = std::time::Duration::from_millis(300);
/// How often a parent puts its own mark (`Down::Mark`) into a child's stream, at least: with
/// the next write after this long (one goes at least every keep-alive period), in its flush.
pub const MARK_EVERY: std::time::Duration = std::time::Duration::from_millis(100);
/// Marks written to a child and not yet read, kept at most (8 s of them).
const MARKS_KEPT: usize = 80;

/// One child's stream: what its writer wrote and flushed, and the frames it skipped (or the
/// marks that reached it [`LATE`]).
#[derive(Debug, Default)]
pub struct ChildCounters {
    pub bytes: AtomicU64,
    pub packets: AtomicU64,
    pub dropped: AtomicU64,
    /// Marks written and not yet read: their number, when, and whether counted late.
    marks: Mutex<std::collections::VecDeque<(u32, std::time::Instant, bool)>>,
    /// The least delay from writing a mark to reading the child's answer: the round trip, with
    /// nothing queued. Behind means behind that ([`LATE`], [`BEHIND`] past it): a child far
    /// away is not slow for being far.
    base: Mutex<Option<std::time::Duration>>,
    /// This node let the child go (shed, or leaving itself): its stream ending says nothing.
    pub released: std::sync::atomic::AtomicBool,
    /// The stream ended from the child's side while it ran behind: counted once more, then
    /// forgotten.
    gone: std::sync::atomic::AtomicBool,
    /// When the first frame was written to the child, and whether it has said it read a mark
    /// yet: a newcomer that leaves before reading any, having been fed for [`BEHIND`], took this
    /// node for dead just the same.
    first_fed: std::sync::OnceLock<std::time::Instant>,
    read_any: std::sync::atomic::AtomicBool,
}

/// A stream whose oldest mark not yet read is this old (past the child's least delay) runs
/// behind: its child would take it
/// for a dead parent ([`crate::fanout::PARENT_SILENCE`]).
const BEHIND: std::time::Duration = crate::fanout::PARENT_SILENCE;

impl ChildCounters {
    /// The child's stream ended, now: if it ran behind (and was not let go), the child took this
    /// node for dead: counted (see `earshot_protocol::audience::uplink::Sent::gone`). Returns
    /// whether it was (it is then kept for one more sample).
    pub(super) fn ended(&self, now: std::time::Instant, child: &PeerId) -> bool {
        let oldest = self
            .marks
            .lock()
            .front()
            .map(|(_, at, _)| now.saturating_duration_since(*at));
        let unheard = !self.read_any.load(Relaxed)
            && self
                .first_fed
                .get()
                .is_some_and(|at| now.saturating_duration_since(*at) > BEHIND);
        let behind = oldest.is_some_and(|age| age > BEHIND + self.base()) || unheard;
        let gone = behind && !self.released.load(Relaxed);
        tracing::debug!(%child, behind, gone, oldest = ?oldest, "a child's stream ended");
        if gone {
            self.dropped.fetch_add(1, Relaxed);
            self.gone.store(true, Relaxed);
        }
        gone
    }

    /// A frame was written to the child now.
    pub(super) fn fed(&self, now: std::time::Instant) {
        let _ = self.first_fed.set(now);
    }

    /// The stream's least delay so far, at most [`LATE`] (a child that answered its first mark
    /// late on purpose, or behind a queue, gains no more than that).
    fn base(&self) -> std::time::Duration {
        self.base.lock().unwrap_or_default().min(LATE)
    }

    /// This node's mark `n` was written to the child now.
    pub(super) fn mark_written(&self, n: u32, now: std::time::Instant) {
        let mut marks = self.marks.lock();
        let base = self.base();
        // A stream this node let go is not late: its child has moved on (a child draining its
        // leaving parent answers nothing).
        let released = self.released.load(Relaxed);
        for (_, at, late) in marks.iter_mut().filter(|_| !released) {
            if !*late && now.saturating_duration_since(*at) > LATE + base {
                *late = true;
                self.dropped.fetch_add(1, Relaxed);
            }
        }
        if marks.len() >= MARKS_KEPT {
            marks.pop_front();
        }
        marks.push_back((n, now, false));
    }

    /// The child read mark `n` (and those before it): a mark this node wrote, or nothing.
    pub(super) fn mark_read(&self, n: u32, now: std::time::Instant) {
        let mut marks = self.marks.lock();
        let Some(read) = marks.iter().position(|(m, _, _)| *m == n) else {
            return;
        };
        self.read_any.store(true, Relaxed);
        let released = self.released.load(Relaxed);
        for (m, at, late) in marks.drain(..=read) {
            let delay = now.saturating_duration_since(at);
            if m == n {
                // The stream's least delay: the way to the child and back, nothing queued.
                let mut base = self.base.lock();
                *base = Some(base.map_or(delay, |base| base.min(delay)));
            }
            tracing::trace!(lag_ms = delay.as_millis() as u64, "a child read a mark");
            if !late && !released && delay > LATE + self.base() {
                self.dropped.fetch_add(1, Relaxed);
            }
        }
    }

    fn sent(&self) -> Sent {
        Sent {
            bytes: self.bytes.load(Relaxed),
            packets: self.packets.load(Relaxed),
            dropped: self.dropped.load(Relaxed),
            gone: self.gone.load(Relaxed),
        }
    }
}

impl FanoutStats {
    /// This node's player's totals: frames due at their playout time, and missing.
    pub fn playout(&self) -> (u64, u64) {
        (
            self.playout_due.load(Relaxed),
            self.playout_missing.load(Relaxed),
        )
    }

    /// Something went into the room's queue for every child: `bytes` as it is written.
    pub(super) fn offer(&self, bytes: usize) {
        self.offered_bytes.fetch_add(bytes as u64, Relaxed);
        self.offered_items.fetch_add(1, Relaxed);
    }

    /// The counters, for `earshot_protocol::audience::uplink::Uplink::tick`.
    /// Children gone while behind are in it once, then forgotten.
    pub fn sample(&self) -> Sample<ChildStream> {
        let mut children = self.children.lock();
        let sample = Sample {
            offered: Sent {
                bytes: self.offered_bytes.load(Relaxed),
                packets: self.offered_items.load(Relaxed),
                dropped: 0,
                gone: false,
            },
            children: children
                .iter()
                .map(|(peer, counters)| (*peer, counters.sent()))
                .collect(),
        };
        children.retain(|_, counters| !counters.gone.load(Relaxed));
        sample
    }

    /// The capacity this node offers now.
    pub fn set_capacity(&self, capacity: u16) {
        self.capacity.store(u32::from(capacity) + 1, Relaxed);
    }

    /// The capacity this node offers, once known.
    pub fn capacity(&self) -> Option<u16> {
        let stored = self.capacity.load(Relaxed);
        stored.checked_sub(1).and_then(|c| u16::try_from(c).ok())
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;

    #[test]
    fn a_child_that_leaves_behind_or_before_reading_anything_took_its_parent_for_dead() {
        let now = Instant::now();
        // Fed, and gone before its first mark came back: it heard nothing in time.
        let newcomer = ChildCounters::default();
        newcomer.fed(now);
        assert!(
            !newcomer.ended(now + BEHIND / 2, &PeerId::random()),
            "left at once: nothing said"
        );
        let newcomer = ChildCounters::default();
        newcomer.fed(now);
        assert!(newcomer.ended(now + BEHIND + Duration::from_millis(1), &PeerId::random()));
        assert_eq!(newcomer.sent().dropped, 1);
        assert!(newcomer.sent().gone);
        // A child that read its marks and leaves: nothing.
        let settled = ChildCounters::default();
        settled.fed(now);
        settled.mark_written(7, now);
        settled.mark_read(7, now + Duration::from_millis(20));
        assert!(!settled.ended(now + Duration::from_secs(5), &PeerId::random()));
        // One whose mark is outstanding past BEHIND: behind.
        let behind = ChildCounters::default();
        behind.fed(now);
        behind.mark_written(7, now);
        behind.mark_read(7, now + Duration::from_millis(20));
        behind.mark_written(8, now + Duration::from_millis(100));
        assert!(!behind.ended(now + Duration::from_millis(200), &PeerId::random()));
        assert!(behind.ended(now + Duration::from_millis(300), &PeerId::random()));
        // One this node let go says nothing by leaving.
        let released = ChildCounters::default();
        released.fed(now);
        released.released.store(true, Relaxed);
        assert!(!released.ended(now + Duration::from_secs(1), &PeerId::random()));
    }

    #[test]
    fn only_marks_written_are_taken_and_a_far_child_is_not_slow_for_being_far() {
        let now = Instant::now();
        let ms = Duration::from_millis;
        // A child answering marks it was never sent (ahead of what it read) clears nothing.
        let liar = ChildCounters::default();
        liar.fed(now);
        liar.mark_written(0x5eed, now);
        liar.mark_read(0x5eee, now + ms(10));
        liar.mark_read(u32::MAX, now + ms(10));
        assert!(!liar.read_any.load(Relaxed));
        liar.mark_written(0xbeef, now + ms(400));
        assert_eq!(liar.sent().dropped, 1, "its first mark is late");
        // A child 250 ms away reading promptly: never late, and it may leave.
        let far = ChildCounters::default();
        far.fed(now);
        for i in 0..20u32 {
            let at = now + ms(100) * i;
            far.mark_written(i * 7 + 1, at);
            if i >= 3 {
                far.mark_read((i - 3) * 7 + 1, at + ms(250) - ms(300));
            }
        }
        assert_eq!(far.sent().dropped, 0);
        assert!(!far.ended(now + ms(2000), &PeerId::random()));
        // Falling behind that: late.
        far.mark_written(999, now + ms(2000));
        far.mark_read(999, now + ms(2000) + ms(250) + LATE + ms(1));
        assert_eq!(far.sent().dropped, 4, "the marks outstanding, and this one");
        // A stream this node let go (shed, or it leaves): its marks unanswered are not late.
        let shed = ChildCounters::default();
        shed.fed(now);
        shed.mark_written(1, now);
        shed.released.store(true, Relaxed);
        shed.mark_written(2, now + Duration::from_secs(1));
        shed.mark_read(2, now + Duration::from_secs(2));
        assert_eq!(shed.sent().dropped, 0);
    }
}
