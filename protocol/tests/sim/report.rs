//! What a run measured: percentiles, rates, the summary and its tables.

use super::*;

/// Percentiles of a sample, in the sample's unit.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Pct {
    pub n: usize,
    pub p50: f64,
    pub p95: f64,
    pub p99: f64,
    pub max: f64,
}

impl Pct {
    fn of(mut values: Vec<f64>) -> Self {
        if values.is_empty() {
            return Self::default();
        }
        values.sort_by(f64::total_cmp);
        let at = |q: f64| values[((values.len() - 1) as f64 * q).round() as usize];
        Self {
            n: values.len(),
            p50: at(0.50),
            p95: at(0.95),
            p99: at(0.99),
            max: values[values.len() - 1],
        }
    }
}

/// Bytes a second, over listeners.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Rate {
    /// All listeners' bytes over all their time present.
    pub mean: f64,
    pub p99: f64,
    pub max: f64,
}

/// What the host carried over the measured window.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct HostLoad {
    pub joins_per_sec: f64,
    pub attaches_per_sec: f64,
    /// Of the requests it answered, the share answered "no place".
    pub nothing_share: f64,
    /// Children in the host's [`Subtree`] (within its capacity)...
    pub children_max: usize,
    /// ... and streams it feeds (a child leaving gracefully is fed until it moved).
    pub streams_max: usize,
    /// Streams plus connections of requests in flight, sampled every second.
    pub connections_mean: f64,
    pub connections_max: usize,
    pub in_flight_max: usize,
    pub views_per_sec: f64,
    pub view_bytes: f64,
    pub bytes_in_per_sec: f64,
    pub bytes_out_per_sec: f64,
    pub tickets_signed: u64,
}

/// Where placements came from, over the window.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Placements {
    pub joins: u64,
    pub joins_by_host: u64,
    pub attaches: u64,
    pub attaches_by_host: u64,
    pub attaches_by_entry_relay: u64,
    /// By a node that lost the orphan's parent ([`Subtree::lost_lately`]).
    pub attaches_lost_lately: u64,
    pub attaches_vouched: u64,
}

/// What a run measured.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Summary {
    pub label: String,
    pub listeners: usize,
    pub fanout: u16,
    pub relays: usize,
    pub entry: Option<Entry>,
    pub orphan_rule: Option<OrphanRule>,
    pub report_soonest: Option<Duration>,
    pub measured_secs: f64,
    pub events: u64,
    pub present_at_end: usize,
    /// Of those, hearing at the end.
    pub hearing_at_end: usize,
    pub arrived: usize,
    pub departed: usize,
    /// Listeners' depth (host = 0), sampled every 10 s over the window.
    pub depth: Pct,
    pub delivery_mean: f64,
    /// Over listeners that heard for at least a minute of the window.
    pub delivery_min: f64,
    pub delivery_p01: f64,
    pub frames_lost_per_listener_min: f64,
    /// Control bytes a second per listener present at least a minute (keep-alives apart).
    pub received: Rate,
    pub sent: Rate,
    pub received_by_kind: Vec<(&'static str, f64)>,
    pub sent_by_kind: Vec<(&'static str, f64)>,
    pub keepalive_payload: f64,
    pub keepalive_wire: f64,
    pub host: HostLoad,
    /// Join latency (first ask to first audio played), ms: joins during the window, and the fill.
    pub join: Pct,
    pub join_fill: Pct,
    pub joins_without_audio: u64,
    /// Repair time (the orphan noticed to its new stream's first frame), ms.
    pub repair_crash: Pct,
    pub repair_graceful: Pct,
    /// Audible gap of an orphan (crash: from the crash; graceful: after the hand-over), ms.
    pub gap_crash: Pct,
    pub gap_graceful: Pct,
    pub asks_per_repair: f64,
    pub repairs_reaching_entry: f64,
    pub placements: Placements,
    /// Why streams were refused and asks answered "no place", over the whole run.
    pub refused: Vec<(&'static str, u64)>,
    pub nothing: Vec<(&'static str, u64)>,
    pub loops_refused: u64,
    pub loops_formed: u64,
    /// Orphans that asked the parent they had just lost (a path that named it first).
    pub asks_to_lost_parent: u64,
    /// Streams opened to a parent that was gone (placed on a stale report), each costing the
    /// dead-peer timeout.
    pub opens_to_gone: u64,
    /// Times a member found no place anywhere and waited to ask its entry point again.
    pub retries: u64,
    pub max_ticket_links: usize,
    pub tickets_verified: u64,
    pub views_signed: u64,
}

impl Sim {
    pub(super) fn summary(&self) -> Summary {
        let (ws, we) = self.window;
        let secs = (we - ws) as f64 / SEC as f64;
        let mut delivery = Vec::new();
        let mut heard_total = 0f64;
        let mut exposed_total = 0f64;
        let mut gap_total = 0f64;
        let mut received = Vec::new();
        let mut sent = Vec::new();
        let mut by_kind_in = [0u64; KINDS.len()];
        let mut by_kind_out = [0u64; KINDS.len()];
        let mut present_total = 0f64;
        let mut all_in = 0u64;
        let mut all_out = 0u64;
        let mut keepalive = 0f64;
        let mut listeners_at_end = 0;
        let mut hearing_at_end = 0;
        for node in &self.nodes {
            if node.kind != Kind::Listener {
                continue;
            }
            let left = node.left_at.unwrap_or(we).min(we);
            if node.left_at.is_none() && node.alive {
                listeners_at_end += 1;
                hearing_at_end += usize::from(node.hears);
            }
            let present = left.saturating_sub(node.joined_at.max(ws));
            if present > 0 {
                let inn: u64 = node.bytes_in.iter().sum();
                let out: u64 = node.bytes_out.iter().sum();
                present_total += present as f64;
                all_in += inn;
                all_out += out;
                for k in 0..KINDS.len() {
                    by_kind_in[k] += node.bytes_in[k];
                    by_kind_out[k] += node.bytes_out[k];
                }
                keepalive += node.keepalive_in as f64;
                if present >= 60 * SEC {
                    let secs = present as f64 / SEC as f64;
                    received.push(inn as f64 / secs);
                    sent.push(out as f64 / secs);
                }
            }
            if let Some(first) = node.first_audio {
                let exposed = left.saturating_sub(first.max(ws));
                if exposed > 0 {
                    let gap = node.gap.min(exposed);
                    heard_total += (exposed - gap) as f64;
                    exposed_total += exposed as f64;
                    gap_total += gap as f64;
                    if exposed >= 60 * SEC {
                        delivery.push(1.0 - gap as f64 / exposed as f64);
                    }
                }
            }
        }
        delivery.sort_by(f64::total_cmp);
        let rate = |mut v: Vec<f64>, total: u64| {
            v.sort_by(f64::total_cmp);
            Rate {
                mean: total as f64 / (present_total / SEC as f64).max(1e-9),
                p99: v
                    .get(((v.len().max(1) - 1) as f64 * 0.99) as usize)
                    .copied()
                    .unwrap_or(0.0),
                max: v.last().copied().unwrap_or(0.0),
            }
        };
        let per_sec = |bytes: u64| bytes as f64 / (present_total / SEC as f64).max(1e-9);
        let host = self.node(self.host);
        let host_in: u64 = host.bytes_in.iter().sum();
        let host_out: u64 = host.bytes_out.iter().sum();
        let requests = (self.stats.host_joins + self.stats.host_attaches).max(1);
        let keepalive_per_sec = keepalive / present_total.max(1e-9) * SEC as f64 / KEEPALIVE as f64;
        let mut refused: Vec<_> = self.stats.refused.iter().map(|(k, v)| (*k, *v)).collect();
        refused.sort_by_key(|&(_, n)| std::cmp::Reverse(n));
        let mut nothing: Vec<_> = self.stats.nothing.iter().map(|(k, v)| (*k, *v)).collect();
        nothing.sort_by_key(|&(_, n)| std::cmp::Reverse(n));
        let listener_minutes = exposed_total / (60.0 * SEC as f64);
        Summary {
            label: self.cfg.label.clone(),
            listeners: self.cfg.listeners,
            fanout: self.cfg.fanout,
            relays: self.cfg.relays,
            entry: Some(self.cfg.entry),
            orphan_rule: Some(self.cfg.orphan_rule),
            report_soonest: self.cfg.report_soonest,
            measured_secs: secs,
            events: self.stats.events,
            present_at_end: listeners_at_end,
            hearing_at_end,
            arrived: self.stats.arrived,
            departed: self.stats.departed,
            depth: Pct::of(self.stats.depth.clone()),
            delivery_mean: heard_total / exposed_total.max(1e-9),
            delivery_min: delivery.first().copied().unwrap_or(1.0),
            delivery_p01: delivery
                .get(((delivery.len().max(1) - 1) as f64 * 0.01) as usize)
                .copied()
                .unwrap_or(1.0),
            frames_lost_per_listener_min: gap_total / FRAME as f64 / listener_minutes.max(1e-9),
            received: rate(received, all_in),
            sent: rate(sent, all_out),
            received_by_kind: KINDS
                .iter()
                .zip(by_kind_in)
                .map(|(k, b)| (*k, per_sec(b)))
                .collect(),
            sent_by_kind: KINDS
                .iter()
                .zip(by_kind_out)
                .map(|(k, b)| (*k, per_sec(b)))
                .collect(),
            keepalive_payload: keepalive_per_sec * KEEPALIVE_PAYLOAD as f64,
            keepalive_wire: keepalive_per_sec * KEEPALIVE_WIRE as f64,
            host: HostLoad {
                joins_per_sec: self.stats.host_joins as f64 / secs,
                attaches_per_sec: self.stats.host_attaches as f64 / secs,
                nothing_share: self.stats.host_nothing as f64 / requests as f64,
                children_max: self.stats.host_children_max,
                streams_max: self.stats.host_streams_max,
                connections_mean: self.stats.host_connections.iter().sum::<f64>()
                    / self.stats.host_connections.len().max(1) as f64,
                connections_max: self.stats.host_connections_max,
                in_flight_max: self.stats.host_in_flight_max,
                views_per_sec: self.stats.views as f64 / secs,
                view_bytes: self.stats.view_bytes as f64 / self.stats.views.max(1) as f64,
                bytes_in_per_sec: host_in as f64 / secs,
                bytes_out_per_sec: host_out as f64 / secs,
                tickets_signed: self.stats.host_tickets,
            },
            join: Pct::of(self.stats.join.clone()),
            join_fill: Pct::of(self.stats.join_fill.clone()),
            joins_without_audio: self
                .nodes
                .iter()
                .filter(|n| {
                    n.kind == Kind::Listener
                        && n.first_audio.is_none()
                        && n.left_at.unwrap_or(we).saturating_sub(n.joined_at) >= 5 * SEC
                })
                .count() as u64,
            repair_crash: Pct::of(self.stats.repair[0].clone()),
            repair_graceful: Pct::of(self.stats.repair[1].clone()),
            gap_crash: Pct::of(self.stats.gap[0].clone()),
            gap_graceful: Pct::of(self.stats.gap[1].clone()),
            asks_per_repair: self.stats.repair_asks as f64 / self.stats.repairs.max(1) as f64,
            repairs_reaching_entry: self.stats.repairs_reaching_entry as f64
                / self.stats.repairs.max(1) as f64,
            placements: self.stats.placements,
            refused,
            nothing,
            loops_refused: self.stats.loops_refused,
            loops_formed: self.stats.loops_formed,
            asks_to_lost_parent: self.stats.asks_to_lost_parent,
            opens_to_gone: self.stats.opens_to_gone,
            retries: self.stats.retries,
            max_ticket_links: self.stats.max_ticket_links,
            tickets_verified: self.stats.tickets_verified,
            views_signed: self.stats.views_signed,
        }
    }
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let pct = |p: &Pct| format!("{:.0} / {:.0} / {:.0} (n {})", p.p50, p.p95, p.p99, p.n);
        writeln!(
            f,
            "## {}: {} listeners, fan-out {}, {} relays, entry {:?}, orphans {:?}, reports {}, {:.0} s measured",
            self.label,
            self.listeners,
            self.fanout,
            self.relays,
            self.entry.unwrap_or(Entry::Host),
            self.orphan_rule.unwrap_or(OrphanRule::LostLately),
            self.report_soonest.map_or_else(
                || "every 2 s".to_owned(),
                |soonest| format!("every 2 s or {} ms after a change", soonest.as_millis())
            ),
            self.measured_secs,
        )?;
        writeln!(f, "| measure | value |")?;
        writeln!(f, "|---|---|")?;
        writeln!(
            f,
            "| listeners at end (hearing) / arrived / departed | {} ({}) / {} / {} |",
            self.present_at_end, self.hearing_at_end, self.arrived, self.departed
        )?;
        writeln!(
            f,
            "| depth p50 / p95 / p99 / max | {:.0} / {:.0} / {:.0} / {:.0} |",
            self.depth.p50, self.depth.p95, self.depth.p99, self.depth.max
        )?;
        writeln!(
            f,
            "| delivery mean / min (≥ 1 min) / p01 | {:.4} % / {:.3} % / {:.3} % |",
            self.delivery_mean * 100.0,
            self.delivery_min * 100.0,
            self.delivery_p01 * 100.0
        )?;
        writeln!(
            f,
            "| frames lost per listener-minute | {:.2} |",
            self.frames_lost_per_listener_min
        )?;
        writeln!(
            f,
            "| control B/s per listener received: mean / p99 / max | {:.0} / {:.0} / {:.0} |",
            self.received.mean, self.received.p99, self.received.max
        )?;
        writeln!(
            f,
            "| control B/s per listener sent: mean / p99 / max | {:.0} / {:.0} / {:.0} |",
            self.sent.mean, self.sent.p99, self.sent.max
        )?;
        let kinds = |v: &[(&str, f64)]| {
            v.iter()
                .filter(|(_, b)| *b >= 0.05)
                .map(|(k, b)| format!("{k} {b:.1}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        writeln!(
            f,
            "| received by kind (B/s) | {} |",
            kinds(&self.received_by_kind)
        )?;
        writeln!(f, "| sent by kind (B/s) | {} |", kinds(&self.sent_by_kind))?;
        writeln!(
            f,
            "| keep-alives received (idle room), B/s: payload / on the wire | {:.0} / {:.0} |",
            self.keepalive_payload, self.keepalive_wire
        )?;
        let h = &self.host;
        writeln!(
            f,
            "| host requests/s: joins / attaches (answered \"no place\") | {:.2} / {:.2} ({:.1} %) |",
            h.joins_per_sec,
            h.attaches_per_sec,
            h.nothing_share * 100.0
        )?;
        writeln!(
            f,
            "| host connections: mean / max (children max, streams max, requests in flight max) | {:.1} / {} ({}, {}, {}) |",
            h.connections_mean, h.connections_max, h.children_max, h.streams_max, h.in_flight_max
        )?;
        writeln!(
            f,
            "| host views/s (bytes each) | {:.2} ({:.0}) |",
            h.views_per_sec, h.view_bytes
        )?;
        writeln!(
            f,
            "| host bytes/s in / out (control) | {:.0} / {:.0} |",
            h.bytes_in_per_sec, h.bytes_out_per_sec
        )?;
        writeln!(
            f,
            "| join latency ms p50 / p95 / p99 (window) | {} |",
            pct(&self.join)
        )?;
        writeln!(
            f,
            "| join latency ms p50 / p95 / p99 (fill) | {} |",
            pct(&self.join_fill)
        )?;
        writeln!(
            f,
            "| listeners present ≥ 5 s that never heard | {} |",
            self.joins_without_audio
        )?;
        writeln!(
            f,
            "| repair ms p50 / p95 / p99: crash | {} |",
            pct(&self.repair_crash)
        )?;
        writeln!(
            f,
            "| repair ms p50 / p95 / p99: graceful | {} |",
            pct(&self.repair_graceful)
        )?;
        writeln!(
            f,
            "| audible gap ms p50 / p95 / p99: crash | {} |",
            pct(&self.gap_crash)
        )?;
        writeln!(
            f,
            "| audible gap ms p50 / p95 / p99: graceful | {} |",
            pct(&self.gap_graceful)
        )?;
        writeln!(
            f,
            "| asks per repair / repairs reaching an entry point | {:.2} / {:.1} % |",
            self.asks_per_repair,
            self.repairs_reaching_entry * 100.0
        )?;
        let p = &self.placements;
        let share = |a: u64, b: u64| a as f64 * 100.0 / b.max(1) as f64;
        writeln!(
            f,
            "| joins placed by the host | {:.1} % of {} |",
            share(p.joins_by_host, p.joins),
            p.joins
        )?;
        writeln!(
            f,
            "| attaches placed by host / entry relay / lost-lately node / vouched node | {:.1} / {:.1} / {:.1} / {:.1} % of {} |",
            share(p.attaches_by_host, p.attaches),
            share(p.attaches_by_entry_relay, p.attaches),
            share(p.attaches_lost_lately, p.attaches),
            share(p.attaches_vouched, p.attaches),
            p.attaches
        )?;
        let list = |v: &[(&str, u64)]| {
            v.iter()
                .map(|(k, n)| format!("{k} {n}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        writeln!(
            f,
            "| streams refused (whole run) | {} |",
            list(&self.refused)
        )?;
        writeln!(
            f,
            "| asks answered no place (whole run) | {} |",
            list(&self.nothing)
        )?;
        writeln!(
            f,
            "| loops refused / formed | {} / {} |",
            self.loops_refused, self.loops_formed
        )?;
        writeln!(
            f,
            "| asks to the parent just lost / opens to a gone parent / waits for a place | {} / {} / {} |",
            self.asks_to_lost_parent, self.opens_to_gone, self.retries
        )?;
        writeln!(
            f,
            "| longest ticket / tickets verified / host tickets signed / views signed | {} links / {} / {} / {} |",
            self.max_ticket_links, self.tickets_verified, h.tickets_signed, self.views_signed
        )?;
        write!(f, "| events | {} |", self.events)
    }
}
