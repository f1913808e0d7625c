//! Rooms of ten thousand and a hundred thousand: the audience tier simulated at full size, one
//! table per run (markdown), with the wall-clock time and peak memory of each.
//!
//! `cargo bench -p earshot-protocol --bench audience_sim` runs every scenario;
//! `cargo bench -p earshot-protocol --bench audience_sim -- 10k` only those whose label
//! contains `10k`.
//!
//! The model (the simulator is `tests/sim/mod.rs`, shared with the `audience_sim` test, whose
//! module documentation has the details):
//! - The real `Subtree`, `Follower`, `HostAudience` and `Ticket` machines, one set per node,
//!   driven as the node drives them (join at an entry point that places with `Subtree::place`
//!   and signs a ticket, listen stream checked with `Ticket::verify` and `child_opened`,
//!   `Down::Path` down, `Up::Report` up every 2 s, orphans asking the grandparent, each ancestor,
//!   then the entry point). Tickets are signed and verified for real; each view is signed for
//!   real and verified once (counted as verified at every node it reaches, since verifying it at
//!   100k nodes every second would dominate the run).
//! - Latency: each node's access latency is uniform in 10-75 ms; one way between two nodes is
//!   the mean of theirs plus 0-2 ms of jitter, so round trips are 20-150 ms. 1 % of messages
//!   are lost and resent after a round trip plus 25 ms. A connection costs a round trip unless
//!   one is open; talking to a node that is gone fails after 5 s (the QUIC handshake timeout).
//!   A crashed node's children notice after 150 ms of silence; its parent only when the
//!   connection times out (10 s, libp2p-quic's idle timeout).
//! - Audio is not simulated per frame: a listener hears while every stream on its path to the
//!   host delivers. A crash silences the subtree below it from the crash until the orphan's new
//!   stream delivers its first frame; a graceful leaver keeps feeding its children until they
//!   moved (at most 1 s), so it costs nothing unless the hand-over runs out. Delivery is the
//!   share of each listener's time after its first audio (within the 10 measured minutes) during
//!   which it heard; frames lost = silent time / 20 ms.
//! - Churn: 10 % of the room a minute leaves (half crash, half leave gracefully) and as many
//!   arrive, both Poisson, for 10 minutes after the room filled (everyone arrives within 2
//!   minutes). Community relays (500 children each; 2 at 10k, 20 at 100k: the first 8 under the
//!   host, the rest under them) join through the host first and never leave; the host feeds 8,
//!   listeners 8 (4 in `fan-out 4`).
//! - Bytes: every message at its encoded size (the real wire types), plus 4 bytes of framing per
//!   tree frame, 64 per request, answer or stream open (its own packet), 2,200 + 1,400 per QUIC
//!   handshake; keep-alives (2 bytes every 40 ms from each parent while the room is idle; 46 on
//!   the wire) are reported apart.
//! - Scenarios: `entry Host` (every joiner asks the host) or `Relays` (a relay picked at random);
//!   orphans `LostLately` (an ancestor takes an orphan only if `Subtree::lost_lately` says it lost
//!   its parent: the node's rule) or `Vouched` (also when the lost parent is still its child and
//!   the orphan's ticket names it: the grandparent then closes that child).

#[path = "../tests/sim/mod.rs"]
mod sim;

use std::time::{Duration, Instant};

use sim::{Config, Entry, OrphanRule};

fn scenarios() -> Vec<Config> {
    let mut out = vec![Config::new("10k", 10_000, 2)];
    let mut relays = Config::new("10k relay entry", 10_000, 2);
    relays.entry = Entry::Relays;
    out.push(relays);
    let mut vouched = Config::new("10k vouched", 10_000, 2);
    vouched.orphan_rule = OrphanRule::Vouched;
    out.push(vouched);
    let mut four = Config::new("10k fan-out 4", 10_000, 2);
    four.fanout = 4;
    out.push(four);
    out.push(Config::new("10k no relays", 10_000, 0));
    // What the node is adding: reports 250 ms after a change, and cutting off the child an
    // orphan says is gone.
    let mut soon = Config::new("10k node-now", 10_000, 2);
    soon.report_soonest = Some(Duration::from_millis(250));
    soon.orphan_rule = OrphanRule::Vouched;
    out.push(soon);
    let mut four = Config::new("10k node-now fan-out 4", 10_000, 2);
    four.report_soonest = Some(Duration::from_millis(250));
    four.orphan_rule = OrphanRule::Vouched;
    four.fanout = 4;
    out.push(four);
    let mut relays = Config::new("100k relay entry", 100_000, 20);
    relays.entry = Entry::Relays;
    out.push(relays);
    let mut vouched = Config::new("100k relay entry vouched", 100_000, 20);
    vouched.entry = Entry::Relays;
    vouched.orphan_rule = OrphanRule::Vouched;
    out.push(vouched);
    // The host alone places far fewer than the 830 joiners a second of this fill, and every
    // joiner it has no place for asks again every 250 ms: the fill and ten seconds after it.
    let mut host = Config::new("100k host entry, the fill only", 100_000, 20);
    host.measure = Duration::from_secs(10);
    out.push(host);
    let mut soon = Config::new("100k node-now", 100_000, 20);
    soon.report_soonest = Some(Duration::from_millis(250));
    soon.orphan_rule = OrphanRule::Vouched;
    out.push(soon);
    // The node as it is, joiners sent by the link to the community relays.
    for (label, size, relays) in [
        ("10k node-now relay entry", 10_000, 2),
        ("100k node-now relay entry", 100_000, 20),
    ] {
        let mut entry = Config::new(label, size, relays);
        entry.report_soonest = Some(Duration::from_millis(250));
        entry.orphan_rule = OrphanRule::Vouched;
        entry.entry = Entry::Relays;
        out.push(entry);
    }
    out
}

/// Peak resident memory since the last reset, in MiB (Linux; `None` elsewhere).
fn peak_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|line| line.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

/// Resets the peak (Linux: writing 5 to `clear_refs`); fails quietly elsewhere.
fn reset_peak() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

fn main() {
    let filters: Vec<String> = std::env::args()
        .skip(1)
        .filter(|arg| !arg.starts_with("--"))
        .collect();
    for config in scenarios() {
        if !filters.is_empty() && !filters.iter().any(|f| config.label.contains(f.as_str())) {
            continue;
        }
        reset_peak();
        let started = Instant::now();
        let summary = sim::run(config);
        let took = started.elapsed();
        println!("{summary}");
        println!(
            "| wall-clock / peak memory | {:.1} s / {} |\n",
            took.as_secs_f64(),
            peak_mib().map_or_else(|| "unknown".to_owned(), |mib| format!("{mib:.0} MiB"))
        );
    }
}
