//! The tree as the audio plane's [`Gate`]: who may open which stream, and what becomes of what
//! travels along the tree besides audio.

use std::sync::Arc;
use std::time::Instant;

use earshot_protocol::PeerKey;
use earshot_protocol::RoomId;
use earshot_protocol::audience::AudienceView;
use earshot_protocol::audience::subtree::REPORT_INTERVAL;
use earshot_protocol::audience::ticket::{Ticket, TicketCheck};
use earshot_protocol::audience::wire::{Down, Up};
use earshot_protocol::envelope::Envelope;
use libp2p::PeerId;
use tracing::debug;

use super::{REPORT_SOONEST, Tree, TreeEvent, recent};
use crate::clock;
use crate::fanout::{FanoutStats, Gate, Misbehave, Pass, StreamKind, Voices};

impl Gate for Tree {
    fn excluded(&self, room: RoomId, parent: PeerId) -> bool {
        PeerKey::from_peer_id(&parent).is_ok_and(|key| self.is_excluded(&room, &key))
    }

    fn voices(&self, room: RoomId) -> Option<Arc<Voices>> {
        if self.unchecked.load(std::sync::atomic::Ordering::Relaxed) {
            return None;
        }
        self.rooms
            .lock()
            .get(&room)
            .map(|tree| Arc::clone(&tree.voices))
    }

    fn admit(&self, room: RoomId, peer: PeerId, kind: StreamKind, proof: &[u8]) -> bool {
        let mut rooms = self.rooms.lock();
        let Some(tree) = rooms.get_mut(&room) else {
            return false;
        };
        match kind {
            StreamKind::Speak => tree.is_host && tree.speakers.contains(&peer),
            StreamKind::Listen => {
                let Ok(child) = PeerKey::from_peer_id(&peer) else {
                    return false;
                };
                let ancestors = tree.subtree.ancestor_keys();
                let checked = Ticket::decode(proof).and_then(|ticket| {
                    ticket.verify(&TicketCheck {
                        room,
                        host: tree.host,
                        presenter: child,
                        parent: self.me,
                        ancestors: &ancestors,
                        now: clock::now(),
                    })
                });
                if let Err(err) = checked {
                    debug!(%peer, %err, "a listen stream's ticket was refused");
                    return false;
                }
                if tree
                    .view
                    .as_ref()
                    .is_some_and(|view| view.banned.contains(&child))
                {
                    return false;
                }
                let now = Instant::now();
                if tree.uplink.shed_lately(|(child, _)| *child == peer, now) {
                    debug!(%peer, "a listen stream was refused: shed here lately as slow");
                    return false;
                }
                match tree.subtree.child_opened(child, now) {
                    Ok(()) => {
                        tree.dirty = true;
                        true
                    }
                    Err(refused) => {
                        debug!(%peer, %refused, "a listen stream was refused");
                        false
                    }
                }
            }
        }
    }

    fn child_closed(&self, room: RoomId, child: PeerId) {
        let Ok(key) = PeerKey::from_peer_id(&child) else {
            return;
        };
        if let Some(tree) = self.rooms.lock().get_mut(&room) {
            tree.subtree.child_closed(&key, Instant::now());
            tree.summaries.remove(&key);
            tree.dirty = true;
        }
    }

    fn up(&self, room: RoomId, child: PeerId, up: Up) -> Option<Down> {
        let Ok(child_key) = PeerKey::from_peer_id(&child) else {
            return None;
        };
        let now = Instant::now();
        match up {
            Up::Report(report) => {
                if let Some(tree) = self.rooms.lock().get_mut(&room) {
                    // A child that is leaving: its place is free now (it goes on feeding its
                    // children until they have moved; its stream ends then).
                    if report.subtree == 0 {
                        tree.subtree.child_closed(&child_key, now);
                        tree.summaries.remove(&child_key);
                        tree.dirty = true;
                        return None;
                    }
                    let summary = (
                        report.subtree,
                        report
                            .free
                            .iter()
                            .map(|slot| (slot.key, slot.below, slot.free))
                            .collect(),
                    );
                    if tree.summaries.get(&child_key) != Some(&summary) {
                        tree.dirty = true;
                        tree.summaries.insert(child_key, summary);
                    }
                    tree.subtree.report_from(&child_key, report, now);
                }
                None
            }
            // Taken by the audio plane (how far behind the child's stream runs); a beacon's
            // from an earlier version, ignored.
            Up::Heard(_) | Up::Marked(_) => None,
            Up::Act(_) | Up::ActVia { .. } if self.misbehave.get() == Some(&Misbehave::DropUp) => {
                None
            }
            Up::Act(bytes) => self.act_up(room, child, child_key, bytes.to_vec(), Vec::new(), now),
            Up::ActVia { act, via } => self.act_up(room, child, child_key, act.to_vec(), via, now),
        }
    }

    fn down(&self, room: RoomId, down: Down) -> Pass {
        match down {
            Down::View(ref bytes) => {
                let Some(host) = self.rooms.lock().get(&room).map(|tree| tree.host) else {
                    return Pass::Nobody;
                };
                match AudienceView::decode_verified(bytes, room, &host) {
                    Ok(view) => {
                        // Only a newer view goes on (an old one replayed stops here).
                        if !self.keep_view(&room, view) {
                            return Pass::Nobody;
                        }
                        self.send(TreeEvent::Down {
                            room,
                            down: down.clone(),
                        });
                        Pass::All(down)
                    }
                    Err(err) => {
                        debug!(%room, %err, "refused a view from the parent");
                        Pass::Nobody
                    }
                }
            }
            // What nobody on the way can check goes on within a budget (see `flood`).
            Down::Envelope(_) | Down::Sealed(_) | Down::Notice { .. }
                if !self.down_budget(room) =>
            {
                Pass::Nobody
            }
            // Keys go on only as the host signed them, each step once (see `keys`).
            Down::Keys(ref bytes) if !self.keys_pass(room, bytes) => {
                debug!(%room, "refused keys from the parent (not the host's, or seen)");
                Pass::Nobody
            }
            Down::Envelope(_) | Down::Keys(_) | Down::Sealed(_) => {
                self.send(TreeEvent::Down {
                    room,
                    down: down.clone(),
                });
                self.remember_down(&room, &down);
                Pass::All(down)
            }
            // One hop's own (the audio plane answered it): never passed on.
            Down::Mark(_) => Pass::Nobody,
            Down::Path(ancestors) => {
                let mut rooms = self.rooms.lock();
                let Some(tree) = rooms.get_mut(&room) else {
                    return Pass::Nobody;
                };
                tree.depth = u16::try_from(ancestors.len()).unwrap_or(u16::MAX);
                tree.subtree.set_ancestors(ancestors);
                Pass::All(Down::Path(tree.subtree.path_for_children()))
            }
            Down::Notice { to, text } => {
                if to == self.me {
                    self.send(TreeEvent::Down {
                        room,
                        down: Down::Notice { to, text },
                    });
                    return Pass::Nobody;
                }
                match self.route(&room, &to) {
                    Some(child) => Pass::Child(child, Down::Notice { to, text }),
                    None => Pass::Nobody,
                }
            }
        }
    }

    fn first(&self, room: RoomId) -> Vec<Down> {
        let rooms = self.rooms.lock();
        let Some(tree) = rooms.get(&room) else {
            return Vec::new();
        };
        // Its path, and the host's latest view (who may speak; in a private room, where the
        // key schedule is: a member that missed a step asks at once, not at the next view).
        let path = Down::Path(tree.subtree.path_for_children());
        let view = tree
            .view
            .as_ref()
            .map(|view| Down::View(view.encode().into()));
        let recent = recent::lately(&tree.recent, Instant::now());
        std::iter::once(path).chain(view).chain(recent).collect()
    }

    fn shed(&self, room: RoomId) -> Vec<PeerId> {
        self.rooms
            .lock()
            .get_mut(&room)
            .map(|tree| std::mem::take(&mut tree.shed))
            .unwrap_or_default()
    }

    fn evicted(&self, room: RoomId) -> Vec<PeerId> {
        self.rooms
            .lock()
            .get_mut(&room)
            .map(|tree| std::mem::take(&mut tree.evict))
            .unwrap_or_default()
    }

    fn upstream(&self, room: RoomId, attached: bool, stats: &FanoutStats) -> Vec<Up> {
        let now = Instant::now();
        let mut rooms = self.rooms.lock();
        let Some(tree) = rooms.get_mut(&room) else {
            return Vec::new();
        };
        let shed = super::capacity::follow(tree, stats, now);
        tree.shed.extend(shed);
        super::hearing::hear(tree, stats, now);
        // Between parents, reports and actions wait (the host has no parent: its report is
        // for its own event loop).
        if !attached && !tree.is_host {
            return Vec::new();
        }
        let mut out = Vec::new();
        let due = tree.last_report.is_none_or(|at| {
            let since = now.saturating_duration_since(at);
            since >= REPORT_INTERVAL || (tree.dirty && since >= REPORT_SOONEST)
        });
        if due {
            tree.last_report = Some(now);
            tree.dirty = false;
            let mut report = tree.subtree.report(now);
            if self.misbehave.get() == Some(&Misbehave::ClaimCapacity) {
                crate::fanout::misbehave::claim_capacity(&mut report, self.me);
            }
            if tree.is_host {
                drop(rooms);
                super::hearing::audience(&report, stats);
                self.send(TreeEvent::Report { room, report });
                return Vec::new();
            }
            out.push(Up::Report(report));
        }
        if !tree.is_host {
            out.extend(
                tree.subtree
                    .take_acts(now)
                    .into_iter()
                    .map(|(act, via)| Up::ActVia {
                        act: serde_bytes::ByteBuf::from(act),
                        via,
                    }),
            );
        }
        out
    }
}

impl Tree {
    /// An action from below, through `child` along `via` (as the child said): queued to go up
    /// (at the host, handed to its event loop with its whole path); refused, a notice for its
    /// author.
    fn act_up(
        &self,
        room: RoomId,
        child: PeerId,
        child_key: PeerKey,
        bytes: Vec<u8>,
        via: Vec<PeerKey>,
        now: Instant,
    ) -> Option<Down> {
        debug!(%room, child = %child, bytes = bytes.len(), "an action came up");
        // The author, so that a notice for it finds its way back down (a private room's
        // actions are sealed, the author's key in the clear).
        let author = match Envelope::decode_verified(&bytes) {
            Ok(envelope) => envelope.author,
            Err(_) => match earshot_protocol::private::SealedAct::decode(&bytes) {
                Ok(sealed) => sealed.author,
                Err(_) => return None,
            },
        };
        let refused = {
            let mut rooms = self.rooms.lock();
            let tree = rooms.get_mut(&room)?;
            match tree.subtree.act_from(&child_key, author, bytes, via, now) {
                Ok(()) if tree.is_host => {
                    // The host's own queue is for its event loop (its budgets take them there).
                    let acts = tree.subtree.take_all_acts();
                    drop(rooms);
                    for (act, via) in acts {
                        self.send(TreeEvent::Act { room, via, act });
                    }
                    None
                }
                Ok(()) => None,
                Err(refused) => Some(refused),
            }
        };
        refused.map(|refused| Down::Notice {
            to: author,
            text: refused.notice(author == child_key),
        })
    }
}
