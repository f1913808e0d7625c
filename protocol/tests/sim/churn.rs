//! Events: arrivals, departures, crashes, graceful leaves and orphans.

use super::*;

impl Sim {
    pub(super) fn handle(&mut self, ev: Ev) {
        match ev {
            Ev::Arrive { churn } => self.on_arrive(churn),
            Ev::Depart => self.on_depart(),
            Ev::Ask(ask) => self.on_ask(*ask),
            Ev::Answer(answer) => self.on_answer(*answer),
            Ev::Open {
                child,
                parent,
                attempt,
                sent,
                ticket,
            } => self.on_open(child, parent, attempt, sent, ticket),
            Ev::Opened {
                child,
                parent,
                attempt,
                path,
                len,
            } => self.on_opened(child, parent, attempt, path, len),
            Ev::FirstFrame {
                child,
                parent,
                attempt,
            } => self.on_first_frame(child, parent, attempt),
            Ev::Path {
                to,
                from,
                path,
                len,
            } => {
                if self.alive(to) && self.node(to).parent == Some(from) {
                    self.count_in(to, K_PATH, len);
                    self.apply_path(to, path);
                }
            }
            Ev::Report {
                from,
                to,
                report,
                len,
            } => {
                if self.alive(to) {
                    self.count_in(to, K_REPORT, len);
                    if self.cfg.report_soonest.is_some() {
                        let summary = summarise(&report);
                        let summaries = &mut self.node_mut(to).summaries;
                        let changed = match summaries.iter_mut().find(|(kid, _)| *kid == from) {
                            Some(held) => std::mem::replace(&mut held.1, summary) != summary,
                            None => {
                                summaries.push((from, summary));
                                true
                            }
                        };
                        if changed {
                            self.changed(to);
                        }
                    }
                    let key = self.node(from).key;
                    let now = self.at(self.now);
                    self.machines(to).subtree.report_from(&key, *report, now);
                }
            }
            Ev::ReportTick(id) => {
                if self.alive(id) {
                    let next = self.now + REPORT_INTERVAL.as_micros() as Us;
                    self.push(next, Ev::ReportTick(id));
                    self.on_report_tick(id);
                }
            }
            Ev::ReportSoon(id) => {
                if self.alive(id) && std::mem::take(&mut self.node_mut(id).soon) {
                    self.on_report_tick(id);
                }
            }
            Ev::HostTick => self.on_host_tick(),
            Ev::Silent { child, parent } => {
                let node = self.node(child);
                if node.alive && !node.leaving && node.parent == Some(parent) {
                    self.orphaned(child, Cause::Crash);
                }
            }
            Ev::Leaving { child, parent } => {
                self.count_in(child, K_LEAVE, LEAVING_MARKER);
                let node = self.node(child);
                if node.alive
                    && !node.leaving
                    && node.parent == Some(parent)
                    && node.moving_from.is_none()
                {
                    self.node_mut(child).moving_from = Some(parent);
                    self.orphaned(child, Cause::Graceful);
                }
            }
            Ev::Closed { child, parent } => {
                let node = self.node(child);
                if node.alive
                    && !node.leaving
                    && node.parent == Some(parent)
                    && node.moving_from != Some(parent)
                {
                    self.orphaned(child, Cause::Graceful);
                }
            }
            Ev::ParentTold { parent, child } => {
                self.count_in(parent, K_LEAVE, LEAVING_MARKER);
                if self.alive(parent) {
                    self.forget_kid(parent, child);
                }
            }
            Ev::Dropped { parent, child } => {
                if self.alive(parent) {
                    self.drop_kid(parent, child);
                }
            }
            Ev::HandoverEnd(id) => {
                if self.alive(id) {
                    self.depart(id);
                }
            }
            Ev::ChildGone { parent, child } => {
                if self.alive(parent) {
                    self.forget_kid(parent, child);
                }
            }
            Ev::Wake { node, attempt } => {
                if self.alive(node)
                    && !self.node(node).leaving
                    && self.node(node).attempt == attempt
                {
                    let now = self.at(self.now);
                    if let Some(step) = self.follower(node).tick(now) {
                        self.step(node, step);
                    }
                }
            }
            Ev::PromiseCheck { placer, child } => {
                if self.alive(placer) && self.node(placer).promised_to.contains(&child) {
                    self.node_mut(placer).promised_to.retain(|&c| c != child);
                    let key = self.node(placer).key;
                    self.machines(placer).subtree.unpromise(&key);
                }
            }
            Ev::Sample => self.on_sample(),
        }
    }

    // ---- arrivals and departures ----

    pub(super) fn churn_rate(&self) -> f64 {
        self.cfg.listeners as f64 * self.cfg.churn_per_min / 60.0
    }

    pub(super) fn exp(&mut self, rate_per_sec: f64) -> Us {
        let u: f64 = self.rng.random_range(f64::EPSILON..1.0);
        (-u.ln() / rate_per_sec * SEC as f64) as Us
    }

    pub(super) fn on_arrive(&mut self, churn: bool) {
        if churn {
            if self.churn_rate() <= 0.0 {
                return;
            }
            let next = self.exp(self.churn_rate());
            self.push(self.now + next, Ev::Arrive { churn: true });
        } else {
            self.fill_left -= 1;
            if self.fill_left > 0 {
                let rate = self.cfg.listeners as f64 / self.cfg.fill.as_secs_f64();
                let next = self.exp(rate);
                self.push(self.now + next, Ev::Arrive { churn: false });
            }
        }
        let signing = SigningKey::from_bytes(&self.rng.random::<[u8; 32]>());
        let id = self.add_node(Kind::Listener, signing);
        self.stats.arrived += 1;
        self.follow(id);
    }

    pub(super) fn on_depart(&mut self) {
        if self.churn_rate() <= 0.0 {
            return;
        }
        let next = self.exp(self.churn_rate());
        self.push(self.now + next, Ev::Depart);
        if self.present.is_empty() {
            return;
        }
        let id = self.present[self.rng.random_range(0..self.present.len())];
        self.stats.departed += 1;
        if self.rng.random_bool(self.cfg.crash_share) {
            self.crash(id);
        } else {
            self.leave(id);
        }
    }

    pub(super) fn unlist(&mut self, id: Id) {
        let at = self.present_at[id as usize];
        if at == usize::MAX {
            return;
        }
        self.present.swap_remove(at);
        if let Some(&moved) = self.present.get(at) {
            self.present_at[moved as usize] = at;
        }
        self.present_at[id as usize] = usize::MAX;
    }

    /// The node is no longer in the audience (its own delivery stops counting).
    pub(super) fn stop_listening(&mut self, id: Id) {
        self.unlist(id);
        self.release_host(id);
        let now = self.now;
        if let Some(since) = self.node(id).silent_since {
            let gap = self.clip(since, now);
            self.node_mut(id).gap += gap;
        }
        let node = self.node_mut(id);
        node.silent_since = None;
        node.left_at = Some(now);
        node.attempt += 1;
        self.end_link(id);
    }

    /// Keep-alive accounting: the stream feeding `id` ends now.
    pub(super) fn end_link(&mut self, id: Id) {
        if let Some(since) = self.node_mut(id).link_since.take() {
            let span = self.clip(since, self.now);
            self.node_mut(id).keepalive_in += span;
            if let Some(up) = self.node(id).up {
                self.node_mut(up).keepalive_out += span;
            }
        }
    }

    pub(super) fn crash(&mut self, id: Id) {
        self.stop_listening(id);
        let now = self.now;
        {
            let node = self.node_mut(id);
            node.alive = false;
            node.died_at = now;
            node.hears = false;
        }
        for parent in [self.node(id).parent, self.node(id).up]
            .into_iter()
            .flatten()
        {
            self.node_mut(parent).kids.retain(|&k| k != id);
        }
        if let Some(parent) = self.node(id).parent {
            let after = self.cfg.child_gone_after.as_micros() as Us;
            self.push(now + after, Ev::ChildGone { parent, child: id });
        }
        let kids = std::mem::take(&mut self.node_mut(id).kids);
        for &kid in &kids {
            if self.node(kid).up == Some(id) {
                self.end_link(kid);
            }
            let late = self.oneway(id, kid) + PARENT_SILENCE - self.rng.random_range(0..FRAME);
            self.push(
                now + late,
                Ev::Silent {
                    child: kid,
                    parent: id,
                },
            );
            self.propagate(kid);
        }
        self.node_mut(id).m = None;
    }

    pub(super) fn leave(&mut self, id: Id) {
        self.stop_listening(id);
        self.node_mut(id).leaving = true;
        if let Some(parent) = self.node(id).parent {
            self.count_out(id, K_LEAVE, LEAVING_MARKER);
            let delay = self.oneway(id, parent);
            self.push(self.now + delay, Ev::ParentTold { parent, child: id });
        }
        let kids = self.node(id).kids.clone();
        if kids.is_empty() {
            self.depart(id);
            return;
        }
        for kid in kids {
            self.count_out(id, K_LEAVE, LEAVING_MARKER);
            let delay = self.oneway(id, kid);
            self.push(
                self.now + delay,
                Ev::Leaving {
                    child: kid,
                    parent: id,
                },
            );
        }
        self.push(self.now + HANDOVER, Ev::HandoverEnd(id));
    }

    /// A leaving node stops feeding: it is gone.
    pub(super) fn depart(&mut self, id: Id) {
        {
            let node = self.node_mut(id);
            node.alive = false;
            node.hears = false;
        }
        self.end_link(id);
        for parent in [self.node(id).parent, self.node(id).up]
            .into_iter()
            .flatten()
        {
            self.node_mut(parent).kids.retain(|&k| k != id);
        }
        let kids = std::mem::take(&mut self.node_mut(id).kids);
        for &kid in &kids {
            if self.node(kid).up == Some(id) {
                self.end_link(kid);
            }
            let node = self.node(kid);
            if node.alive && node.parent == Some(id) && node.moving_from != Some(id) {
                let delay = self.oneway(id, kid);
                self.push(
                    self.now + delay,
                    Ev::Closed {
                        child: kid,
                        parent: id,
                    },
                );
            }
            self.propagate(kid);
        }
        self.node_mut(id).m = None;
    }

    /// `child` lost its parent (it noticed now): its follower asks for another place.
    pub(super) fn orphaned(&mut self, child: Id, cause: Cause) {
        let now = self.now;
        {
            let node = self.node_mut(child);
            if cause == Cause::Crash {
                node.parent = None;
            }
            if node.repair.is_none() {
                node.repair = Some(Repair {
                    cause,
                    noticed: now,
                    asks: 0,
                    reached_entry: false,
                });
            }
            node.asked = None;
        }
        if cause == Cause::Crash {
            self.end_link(child);
            self.node_mut(child).up = None;
        }
        let at = self.at(now);
        let step = self.follower(child).lost(at);
        self.step(child, step);
    }

    /// `parent`'s subtree no longer has `child` (`Subtree::child_closed`).
    pub(super) fn forget_kid(&mut self, parent: Id, child: Id) {
        let key = self.node(child).key;
        let now = self.at(self.now);
        let subtree = &mut self.machines(parent).subtree;
        if subtree.has_child(&key) {
            subtree.child_closed(&key, now);
            self.node_mut(parent)
                .summaries
                .retain(|(kid, _)| *kid != child);
            self.changed(parent);
        }
    }

    /// A parent forgets a child's stream (the child dropped it).
    pub(super) fn drop_kid(&mut self, parent: Id, child: Id) {
        self.node_mut(parent).kids.retain(|&k| k != child);
        self.forget_kid(parent, child);
        if self.node(parent).leaving && self.node(parent).kids.is_empty() {
            self.depart(parent);
        }
    }
}
