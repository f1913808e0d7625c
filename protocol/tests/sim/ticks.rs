//! Hearing below a changed feed, reports up the tree, the host's views, samples.

use super::*;

impl Sim {
    /// Hearing, recomputed below `root` after its feed changed.
    pub(super) fn propagate(&mut self, root: Id) {
        let now = self.now;
        let mut stack = vec![root];
        while let Some(id) = stack.pop() {
            let node = self.node(id);
            let hears = node.alive
                && match node.up {
                    Some(up) => self.node(up).alive && self.node(up).hears,
                    None => node.kind == Kind::Host,
                };
            if hears == node.hears {
                continue;
            }
            let in_window = now >= self.window.0;
            let listening = node.left_at.is_none();
            if hears {
                if let Some(since) = self.node_mut(id).silent_since.take() {
                    let gap = self.clip(since, now);
                    self.node_mut(id).gap += gap;
                    if let Some(cause) = self.node_mut(id).pending_gap.take()
                        && in_window
                    {
                        self.stats.gap[cause as usize].push(ms(now - since));
                    }
                }
                self.node_mut(id).pending_gap = None;
                let node = self.node(id);
                if node.first_audio.is_none() && listening {
                    let latency = ms(now + JITTER_BUFFER - node.joined_at);
                    if node.kind == Kind::Listener {
                        if node.joined_at >= self.window.0 {
                            self.stats.join.push(latency);
                        } else {
                            self.stats.join_fill.push(latency);
                        }
                    }
                    self.node_mut(id).first_audio = Some(now);
                }
            } else if listening && self.node(id).first_audio.is_some() {
                self.node_mut(id).silent_since = Some(now);
            }
            self.node_mut(id).hears = hears;
            let node = self.node(id);
            for &kid in &node.kids {
                if self.node(kid).up == Some(id) {
                    stack.push(kid);
                }
            }
        }
    }

    // ---- reports, views, samples ----

    /// With `report_soonest`: `id`'s subtree changed, a report goes soon.
    pub(super) fn changed(&mut self, id: Id) {
        let Some(soonest) = self.cfg.report_soonest else {
            return;
        };
        let node = self.node_mut(id);
        if node.soon || !node.alive {
            return;
        }
        node.soon = true;
        let at = (node.last_report + soonest.as_micros() as Us).max(self.now);
        self.push(at, Ev::ReportSoon(id));
    }

    pub(super) fn on_report_tick(&mut self, id: Id) {
        self.node_mut(id).last_report = self.now;
        let now = self.at(self.now);
        if id == self.host {
            let report = self.machines(id).subtree.report(now);
            self.audience.report(report, now);
            return;
        }
        let Some(parent) = self.node(id).parent else {
            return;
        };
        if self.node(id).leaving {
            return;
        }
        let react = REPORT_INTERVAL.as_secs_f64() * self.cfg.reactions_per_min / 60.0;
        if self.rng.random_bool(react.min(1.0)) {
            let emoji = ["👏", "😂", "🔥", "❤️"][self.rng.random_range(0..4)];
            self.machines(id).subtree.react(emoji);
        }
        let report = self.machines(id).subtree.report(now);
        let up = Up::Report(report);
        let len = up.encode().len() as u64 + TREE_FRAMING;
        let Up::Report(report) = up else {
            unreachable!("just built")
        };
        self.count_out(id, K_REPORT, len);
        let delay = self.oneway(id, parent);
        self.push(
            self.now + delay,
            Ev::Report {
                from: id,
                to: parent,
                report: Box::new(report),
                len,
            },
        );
    }

    pub(super) fn on_host_tick(&mut self) {
        self.push(self.now + HOST_TICK, Ev::HostTick);
        let now = self.at(self.now);
        let wall = self.wall();
        let listeners = self.machines(self.host).subtree.size().saturating_sub(1);
        let Some(view) = self
            .audience
            .view(now, wall, &self.state, listeners, &self.host_signing)
        else {
            return;
        };
        self.stats.views_signed += 1;
        let bytes = view.encode();
        let host_key = self.node(self.host).key;
        // Verified once, counted as verified at every node it reaches.
        AudienceView::decode_verified(&bytes, ROOM, &host_key).expect("the host's own view");
        let len = Down::View(ByteBuf::from(bytes.clone())).encode().len() as u64 + TREE_FRAMING;
        self.last_view = bytes;
        if !self.in_window() {
            return;
        }
        self.stats.views += 1;
        self.stats.view_bytes += len;
        let fed = |sim: &Self, id: Id| {
            sim.node(id)
                .kids
                .iter()
                .filter(|&&kid| sim.node(kid).up == Some(id))
                .count() as u64
        };
        let host = self.host;
        let out = fed(self, host) * len;
        self.nodes[host as usize].bytes_out[K_VIEW] += out;
        for i in 0..self.present.len() + self.relays.len() {
            let id = if i < self.present.len() {
                self.present[i]
            } else {
                self.relays[i - self.present.len()]
            };
            if !self.node(id).hears {
                continue;
            }
            let out = fed(self, id) * len;
            let node = &mut self.nodes[id as usize];
            node.bytes_in[K_VIEW] += len;
            node.bytes_out[K_VIEW] += out;
        }
    }

    pub(super) fn on_sample(&mut self) {
        self.push(self.now + SEC, Ev::Sample);
        if std::env::var_os("SIM_TRACE").is_some() && self.now % (5 * SEC) < SEC {
            let now = self.at(self.now);
            let report = self.machines(self.host).subtree.clone().report(now);
            let waiting = self
                .present
                .iter()
                .filter(|&&id| self.node(id).up.is_none())
                .count();
            let silent = self
                .present
                .iter()
                .filter(|&&id| !self.node(id).hears)
                .count();
            eprintln!(
                "t={:.0}s size={} host free={:?} unattached={} silent={}",
                self.now as f64 / SEC as f64,
                self.machines(self.host).subtree.size(),
                report
                    .free
                    .iter()
                    .map(|s| (s.below, s.free))
                    .collect::<Vec<_>>(),
                waiting,
                silent
            );
            for r in self.relays.clone() {
                let sub = self.machines(r).subtree.clone();
                let kids = sub.children().count();
                let rep = sub.clone().report(now);
                eprintln!(
                    "  relay {r} kids={kids} free={} report={:?}",
                    sub.free(),
                    rep.free
                        .iter()
                        .map(|s| (s.below, s.free))
                        .collect::<Vec<_>>()
                );
            }
        }
        if !self.in_window() {
            return;
        }
        let streams = self.node(self.host).kids.len();
        let children = self.machines(self.host).subtree.children().count();
        let connections = streams + self.stats.host_in_flight;
        self.stats.host_children_max = self.stats.host_children_max.max(children);
        self.stats.host_streams_max = self.stats.host_streams_max.max(streams);
        self.stats.host_connections.push(connections as f64);
        self.stats.host_connections_max = self.stats.host_connections_max.max(connections);
        if (self.now - self.window.0) % (10 * SEC) < SEC {
            // Depth by walking down from the host along the streams that feed.
            let mut stack = vec![(self.host, 0u16)];
            while let Some((id, depth)) = stack.pop() {
                let node = &self.nodes[id as usize];
                if node.kind == Kind::Listener && node.left_at.is_none() {
                    self.stats.depth.push(f64::from(depth));
                }
                for &kid in &node.kids {
                    if self.node(kid).up == Some(id) && self.node(kid).hears {
                        stack.push((kid, depth + 1));
                    }
                }
            }
        }
    }

    pub(super) fn finish(&mut self) {
        let present = self.present.clone();
        for id in present {
            if let Some(since) = self.node(id).silent_since {
                let gap = self.clip(since, self.now);
                self.node_mut(id).gap += gap;
            }
            self.end_link(id);
        }
        for i in 0..self.relays.len() {
            self.end_link(self.relays[i]);
        }
    }
}

/// The room's stage for the views: the host and two speakers.
pub(super) fn stage(host: PeerKey) -> RoomState {
    let view = AudienceView {
        room: ROOM,
        seq: 0,
        at: WALL_START,
        stage: [
            ("host", RoomRole::Host),
            ("speaker one", RoomRole::Speaker),
            ("speaker two", RoomRole::Speaker),
        ]
        .iter()
        .enumerate()
        .map(|(i, (name, role))| StageMember {
            key: if i == 0 { host } else { PeerKey([i as u8; 32]) },
            name: (*name).to_owned(),
            role: *role,
            muted: false,
        })
        .collect(),
        hands: Vec::new(),
        hands_total: 0,
        listeners: 0,
        reactions: Vec::new(),
        recording: false,
        ended: false,
        banned: Vec::new(),
        revoked: Vec::new(),
        carriers: None,
        excluded: Vec::new(),
        keys: None,
        audio_loss: 0,
        signature: Sig([0; 64]),
    };
    RoomState::of_audience_view(host, &view, None)
}

/// The size of a join request: a signed `Join` envelope with a listener capability.
pub(super) fn join_request_len(host: &SigningKey) -> u64 {
    let capability = Capability::issue(
        host,
        ROOM,
        Grant {
            audience: Audience::Bearer,
            role: Role::Listener,
            not_before: WALL_START,
            expires_at: WALL_START.plus_millis(24 * 3_600_000),
            depth: 0,
        },
        [7; 8],
    )
    .expect("a listener capability");
    let listener = SigningKey::from_bytes(&[9; 32]);
    let envelope = Envelope::sign(
        &listener,
        ROOM,
        1,
        WALL_START,
        Authority::Capability(capability),
        ControlBody::Join {
            name: "listener-12345".into(),
        },
    )
    .expect("a join envelope");
    let request = RoomRequest::Join {
        envelope: ByteBuf::from(envelope.encode()),
    };
    request.encode().len() as u64 + RPC_OVERHEAD
}

/// What in a report matters to places above: the size and the free places.
pub(super) fn summarise(report: &Report) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    report.subtree.hash(&mut hasher);
    for slot in &report.free {
        (slot.key, slot.below, slot.free).hash(&mut hasher);
    }
    hasher.finish()
}
