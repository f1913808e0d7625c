//! Asking and answering: joins, attaches, tickets, stream opens, paths and first frames.

use super::*;

impl Sim {
    // ---- asking and answering ----

    pub(super) fn on_ask(&mut self, ask: AskMsg) {
        let AskMsg {
            from,
            to,
            attempt,
            sent,
            req,
            len,
        } = ask;
        let kind = match req {
            Req::Join => K_JOIN,
            Req::Attach { .. } => K_ATTACH,
        };
        if !self.alive(to) {
            *self.stats.nothing.entry("gone").or_default() += 1;
            let at = sent + self.cfg.dead_peer_timeout.as_micros() as Us;
            let answer = AnswerMsg {
                to: from,
                from: to,
                attempt,
                placed: None,
                why: Why::No("gone"),
                len: 0,
            };
            self.push(at, Ev::Answer(Box::new(answer)));
            return;
        }
        self.count_in(to, kind, len);
        let at_host = to == self.host;
        if at_host {
            // The asker's connection to the host is held from now until the answer is back
            // (or, placed under the host, until its stream opens).
            self.node_mut(from).holds_host = true;
            self.host_in_flight(1);
            if self.in_window() {
                match req {
                    Req::Join => self.stats.host_joins += 1,
                    Req::Attach { .. } => self.stats.host_attaches += 1,
                }
            }
        }
        let (placed, why) = self.answer(from, to, &req);
        if at_host && placed.is_none() && self.in_window() {
            self.stats.host_nothing += 1;
        }
        if let Why::No(reason) = why {
            *self.stats.nothing.entry(reason).or_default() += 1;
        }
        let len = match &placed {
            Some(p) => {
                let view =
                    matches!(req, Req::Join).then(|| serde_bytes::Bytes::new(&self.last_view));
                codec::encode(&AnswerWire::Placed {
                    parent: p.parent,
                    addrs: &p.addrs,
                    depth: p.depth,
                    ticket: &p.ticket,
                    view,
                })
                .len() as u64
            }
            None => codec::encode(&AnswerWire::Nothing).len() as u64,
        } + RPC_OVERHEAD;
        self.count_out(to, K_ANSWER, len);
        let delay = self.oneway(to, from);
        let answer = AnswerMsg {
            to: from,
            from: to,
            attempt,
            placed,
            why,
            len,
        };
        self.push(self.now + delay, Ev::Answer(Box::new(answer)));
    }

    pub(super) fn host_in_flight(&mut self, change: isize) {
        let stats = &mut self.stats;
        stats.host_in_flight = stats.host_in_flight.saturating_add_signed(change);
        if self.now >= self.window.0 {
            stats.host_in_flight_max = stats.host_in_flight_max.max(stats.host_in_flight);
        }
    }

    /// The asker lets go of its connection to the host.
    pub(super) fn release_host(&mut self, id: Id) {
        if std::mem::take(&mut self.node_mut(id).holds_host) {
            self.host_in_flight(-1);
        }
    }

    /// What `to` answers `from`'s request.
    pub(super) fn answer(&mut self, from: Id, to: Id, req: &Req) -> (Option<Placement>, Why) {
        if self.node(to).leaving {
            return (None, Why::No("leaving"));
        }
        let from_key = self.node(from).key;
        let host_key = self.node(self.host).key;
        let now = self.at(self.now);
        let wall = self.wall();
        let entry = self.is_entry(to);
        let why = match req {
            Req::Join if entry => Why::Entry,
            Req::Join => return (None, Why::No("join at a non-entry")),
            Req::Attach { lost, ticket } => {
                self.stats.tickets_verified += 1;
                if ticket.check_chain(ROOM, host_key, wall).is_err() {
                    return (None, Why::No("bad ticket"));
                }
                let leaf = ticket.leaf().expect("a checked chain has links");
                if leaf.child != from_key {
                    return (None, Why::No("not its ticket"));
                }
                let named = leaf.parent;
                let vouching = self.cfg.orphan_rule == OrphanRule::Vouched;
                let subtree = &mut self.machines(to).subtree;
                let lost_lately = lost.is_some_and(|lost| subtree.lost_lately(&lost, now));
                let vouched =
                    vouching && lost.is_some_and(|lost| subtree.has_child(&lost) && named == lost);
                if entry {
                    Why::Entry
                } else if lost_lately {
                    Why::LostLately
                } else if vouched {
                    let lost = self.id_of(&named);
                    self.close_kid(to, lost);
                    Why::Vouched
                } else {
                    return (None, Why::No("did not lose that parent"));
                }
            }
        };
        let Some(placed) = self.machines(to).subtree.place(now) else {
            return (None, Why::No("no place"));
        };
        let to_key = self.node(to).key;
        let (parent, addrs, below) = match placed {
            Placed::Here => (to_key, self.node(to).addrs.clone(), 0),
            Placed::Below(slot) => (slot.key, slot.addrs, slot.below),
        };
        let ticket = if to == self.host {
            self.stats.host_tickets += 1;
            Some(Ticket::issue_as_host(
                &self.host_signing,
                ROOM,
                from_key,
                parent,
                wall,
            ))
        } else {
            let machines = self.machines(to);
            let mine = machines.follower.as_ref().and_then(Follower::ticket);
            mine.and_then(|mine| {
                Ticket::issue_below(&machines.signing, mine, from_key, parent, wall)
            })
        };
        let Some(ticket) = ticket else {
            self.machines(to).subtree.unpromise(&parent);
            return (None, Why::No("ticket chain at its longest"));
        };
        self.stats.max_ticket_links = self.stats.max_ticket_links.max(ticket.links.len());
        if parent == to_key {
            self.node_mut(to).promised_to.push(from);
            self.push(
                self.now + PROMISE_KEPT,
                Ev::PromiseCheck {
                    placer: to,
                    child: from,
                },
            );
        }
        if matches!(req, Req::Join) {
            let newcomer = Newcomer {
                key: from_key,
                name: format!("listener-{from}"),
            };
            if to == self.host {
                self.audience.arrived(newcomer);
            } else {
                self.machines(to).subtree.newcomer(newcomer);
            }
        }
        let depth = self.node(to).depth + below + 1;
        (
            Some(Placement {
                parent,
                addrs,
                depth,
                ticket,
            }),
            why,
        )
    }

    /// A parent closes a child's stream (for an orphan that vouched the child is gone).
    pub(super) fn close_kid(&mut self, parent: Id, child: Id) {
        self.forget_kid(parent, child);
        if self.node(parent).kids.contains(&child) {
            self.node_mut(parent).kids.retain(|&k| k != child);
            if self.alive(child) {
                let delay = self.oneway(parent, child);
                self.push(self.now + delay, Ev::Closed { child, parent });
                if self.node(child).up == Some(parent) {
                    self.end_link(child);
                    self.node_mut(child).up = None;
                    self.propagate(child);
                }
            }
        }
    }

    pub(super) fn on_answer(&mut self, answer: AnswerMsg) {
        let AnswerMsg {
            to,
            from,
            attempt,
            placed,
            why,
            len,
        } = answer;
        let here = placed
            .as_ref()
            .is_some_and(|p| p.parent == self.node(from).key);
        let live = self.alive(to) && !self.node(to).leaving && self.node(to).attempt == attempt;
        if from == self.host && !(live && here) {
            self.release_host(to);
        }
        if !live {
            return;
        }
        self.count_in(to, K_ANSWER, len);
        if placed.is_some() && self.in_window() {
            let attach = self.node(to).asking_attach;
            let p = &mut self.stats.placements;
            let by_host = from == self.host;
            if attach {
                p.attaches += 1;
                match why {
                    Why::Entry if by_host => p.attaches_by_host += 1,
                    Why::Entry => p.attaches_by_entry_relay += 1,
                    Why::LostLately => p.attaches_lost_lately += 1,
                    Why::Vouched => p.attaches_vouched += 1,
                    Why::No(_) => {}
                }
            } else {
                p.joins += 1;
                if by_host {
                    p.joins_by_host += 1;
                }
            }
        }
        let answer = match placed {
            Some(p) => {
                self.node_mut(to).pending_depth = p.depth;
                Answer::Placed {
                    parent: p.parent,
                    addrs: p.addrs,
                    depth: p.depth,
                    ticket: p.ticket,
                }
            }
            None => Answer::Nothing,
        };
        let now = self.at(self.now);
        let step = self.follower(to).answered(now, answer);
        self.step(to, step);
    }

    pub(super) fn on_open(
        &mut self,
        child: Id,
        parent: Id,
        attempt: u32,
        sent: Us,
        ticket: Ticket,
    ) {
        if parent == self.host {
            // Placed under the host, it kept its connection for this stream.
            self.release_host(child);
        }
        if !self.alive(parent) {
            self.stats.opens_to_gone += 1;
            let at = sent + self.cfg.dead_peer_timeout.as_micros() as Us;
            self.push(
                at,
                Ev::Opened {
                    child,
                    parent,
                    attempt,
                    path: Err("gone"),
                    len: 0,
                },
            );
            return;
        }
        let len = LISTEN_HELLO + ticket.encode().len() as u64 + RPC_OVERHEAD;
        self.count_in(parent, K_OPEN, len);
        let result = self.admit(child, parent, ticket);
        if let Err(reason) = result {
            *self.stats.refused.entry(reason).or_default() += 1;
        }
        let len = match &result {
            Ok(path) => Down::Path(path.clone()).encode().len() as u64 + TREE_FRAMING,
            Err(_) => 8 + RPC_OVERHEAD,
        };
        self.count_out(parent, if result.is_ok() { K_PATH } else { K_OPEN }, len);
        let delay = self.oneway(parent, child);
        self.push(
            self.now + delay,
            Ev::Opened {
                child,
                parent,
                attempt,
                path: result,
                len,
            },
        );
    }

    /// The parent's side of a listen stream: the ticket, loops, room.
    pub(super) fn admit(
        &mut self,
        child: Id,
        parent: Id,
        ticket: Ticket,
    ) -> Result<Vec<Ancestor>, &'static str> {
        if self.node(parent).leaving {
            return Err("leaving");
        }
        let child_key = self.node(child).key;
        let parent_key = self.node(parent).key;
        let host_key = self.node(self.host).key;
        let wall = self.wall();
        let now = self.at(self.now);
        let ancestors = self.machines(parent).subtree.ancestor_keys();
        self.stats.tickets_verified += 1;
        let check = TicketCheck {
            room: ROOM,
            host: host_key,
            presenter: child_key,
            parent: parent_key,
            ancestors: &ancestors,
            now: wall,
        };
        if let Err(err) = ticket.verify(&check) {
            return Err(match err {
                TicketError::NotAbove { .. } => "ticket: placer not above",
                TicketError::NotHere { .. } => "ticket: not here",
                TicketError::Expired { .. } => "ticket: expired",
                _ => "ticket: other",
            });
        }
        let machines = self.machines(parent);
        match machines.subtree.child_opened(child_key, now) {
            Ok(()) => {}
            Err(Refused::Loop) => {
                self.stats.loops_refused += 1;
                return Err("loop: the child is an ancestor");
            }
            Err(_) => return Err("full"),
        }
        let path = machines.subtree.path_for_children();
        let node = self.node_mut(parent);
        node.promised_to.retain(|&c| c != child);
        if !node.kids.contains(&child) {
            node.kids.push(child);
        }
        self.changed(parent);
        Ok(path)
    }

    pub(super) fn on_opened(
        &mut self,
        child: Id,
        parent: Id,
        attempt: u32,
        path: Result<Vec<Ancestor>, &'static str>,
        len: u64,
    ) {
        let live =
            self.alive(child) && !self.node(child).leaving && self.node(child).attempt == attempt;
        if !live {
            if path.is_ok() {
                let delay = self.oneway(child, parent);
                self.push(self.now + delay, Ev::Dropped { parent, child });
            }
            return;
        }
        self.count_in(child, if path.is_ok() { K_PATH } else { K_OPEN }, len);
        match path {
            Err(_) => {
                self.node_mut(child).asked = None;
                let now = self.at(self.now);
                let step = self.follower(child).lost(now);
                self.step(child, step);
            }
            Ok(path) => {
                let node = self.node_mut(child);
                node.parent = Some(parent);
                node.depth = node.pending_depth;
                // The new parent hears of this subtree at once.
                node.last_report = 0;
                self.changed(child);
                if !self.alive(parent) {
                    // It accepted, then died: the child hears nothing from it.
                    self.push(self.now + PARENT_SILENCE, Ev::Silent { child, parent });
                    return;
                }
                self.apply_path(child, path);
                if self.node(child).parent != Some(parent) {
                    return; // a loop: dropped again
                }
                let wait = self.rng.random_range(0..FRAME);
                self.push(
                    self.now + wait,
                    Ev::FirstFrame {
                        child,
                        parent,
                        attempt,
                    },
                );
            }
        }
    }

    /// A node learns its ancestors from its parent and tells its own children.
    pub(super) fn apply_path(&mut self, id: Id, path: Vec<Ancestor>) {
        let key = self.node(id).key;
        if path.iter().any(|a| a.key == key) {
            // Its parent is below it: drop that stream and ask again.
            self.stats.loops_formed += 1;
            if let Some(parent) = self.node_mut(id).parent.take() {
                let delay = self.oneway(id, parent);
                self.push(self.now + delay, Ev::Dropped { parent, child: id });
                if self.node(id).up == Some(parent) {
                    self.end_link(id);
                    self.node_mut(id).up = None;
                    self.propagate(id);
                }
            }
            if self.node(id).repair.is_none() {
                self.node_mut(id).repair = Some(Repair {
                    cause: Cause::Crash,
                    noticed: self.now,
                    asks: 0,
                    reached_entry: false,
                });
            }
            let now = self.at(self.now);
            let step = self.follower(id).lost(now);
            self.step(id, step);
            return;
        }
        let machines = self.machines(id);
        if let Some(follower) = machines.follower.as_mut() {
            follower.path(path.clone());
        }
        machines.subtree.set_ancestors(path);
        let down = machines.subtree.path_for_children();
        let kids = self.node(id).kids.clone();
        if kids.is_empty() {
            return;
        }
        let len = Down::Path(down.clone()).encode().len() as u64 + TREE_FRAMING;
        for kid in kids {
            self.count_out(id, K_PATH, len);
            let delay = self.oneway(id, kid);
            self.push(
                self.now + delay,
                Ev::Path {
                    to: kid,
                    from: id,
                    path: down.clone(),
                    len,
                },
            );
        }
    }

    pub(super) fn on_first_frame(&mut self, child: Id, parent: Id, attempt: u32) {
        let node = self.node(child);
        if !node.alive || node.leaving || node.attempt != attempt || node.parent != Some(parent) {
            return;
        }
        if !self.alive(parent) {
            return; // its silence will be noticed
        }
        let now = self.at(self.now);
        self.follower(child).opened(now);
        self.node_mut(child).asked = None;
        let old = self.node(child).up;
        self.end_link(child);
        if let Some(old) = old.filter(|&old| old != parent) {
            // The draining stream ends.
            if self.alive(old) {
                self.drop_kid(old, child);
            }
        }
        let now = self.now;
        let node = self.node_mut(child);
        node.moving_from = None;
        node.up = Some(parent);
        node.link_since = Some(now);
        if let Some(repair) = node.repair.take() {
            node.pending_gap = Some(repair.cause);
            if now >= self.window.0 {
                let stats = &mut self.stats;
                stats.repair[repair.cause as usize].push(ms(now - repair.noticed));
                stats.repairs += 1;
                stats.repair_asks += u64::from(repair.asks);
                if repair.reached_entry {
                    stats.repairs_reaching_entry += 1;
                }
            }
        }
        self.propagate(child);
        let in_window = self.now >= self.window.0;
        let node = self.node_mut(child);
        if node.hears
            && let Some(cause) = node.pending_gap.take()
            && in_window
        {
            // Heard all along: a hand-over without a gap.
            self.stats.gap[cause as usize].push(0.0);
        }
    }
}
