//! The audio plane's counters, per room.

use std::sync::atomic::{AtomicU16, AtomicU32, AtomicU64};

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
}

impl FanoutStats {
    /// This node's player's totals: frames due at their playout time, and missing.
    pub fn playout(&self) -> (u64, u64) {
        use std::sync::atomic::Ordering::Relaxed;
        (
            self.playout_due.load(Relaxed),
            self.playout_missing.load(Relaxed),
        )
    }
}
