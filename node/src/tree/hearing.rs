//! How this node hears, for its reports up the tree, and what the host makes of the audience's:
//! each window of its own playout (frames due and missing, how long its jitter buffer holds
//! frames back) goes into its subtree's report; the host's advice to this node's encoder comes
//! from the latest view; at the host, the audience's jitter from its own report.

use std::sync::atomic::Ordering::Relaxed;
use std::time::Instant;

use earshot_protocol::audience::wire::Report;

use super::RoomTree;
use crate::fanout::FanoutStats;

/// Samples this node's own playout into its subtree, and sets its encoder's advice.
pub(super) fn hear(tree: &mut RoomTree, stats: &FanoutStats, now: Instant) {
    let (due, missing) = stats.playout();
    if let Some(heard) = tree.playout.sample(now, due, missing) {
        let buffer_ms = stats.playout_buffer_ms.load(Relaxed);
        tree.subtree.heard(heard.with_jitter(buffer_ms));
    }
    // The host's advice to this node's encoder, from the latest view.
    if let Some(view) = &tree.view {
        stats.audio_loss.store(view.audio_loss, Relaxed);
    }
}

/// At the host: how long nine in ten listeners' jitter buffers hold frames back, from the
/// whole tree's report (0: nobody counted).
pub(super) fn audience(report: &Report, stats: &FanoutStats) {
    let jitter = report.loss.jitter_quantile_ms().unwrap_or(0);
    stats.audience_jitter_ms.store(jitter, Relaxed);
}
