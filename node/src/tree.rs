//! This node's part in each room's relay tree: its place (the ticket it holds, its depth, its
//! ancestors), its subtree (`protocol::audience::Subtree`: children, reports, free places,
//! budgets), and the host's latest view. The audio plane asks it who may open which stream and
//! hands it what travels along the tree besides audio ([`Gate`](crate::fanout::Gate)); the event loop asks it for
//! places (answering joins and attaches) and hears from it through [`TreeEvent`]s. Short locks,
//! no waiting under them.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Instant;

use earshot_protocol::audience::AudienceView;
use earshot_protocol::audience::quality::PlayoutWindow;
use earshot_protocol::audience::subtree::{Placed, Refused, Subtree};
use earshot_protocol::audience::ticket::Ticket;
use earshot_protocol::audience::wire::{Ancestor, Down, Newcomer, Report};
use earshot_protocol::snapshot::{Placement, Refusal};
use earshot_protocol::{PeerKey, RoomId, Verified};
use libp2p::PeerId;
use parking_lot::Mutex;
use tokio::sync::mpsc;
use tracing::debug;

mod capacity;
mod flood;
mod gate;
mod hearing;
mod keys;
mod recent;
mod reserve;
pub use self::reserve::{CROWDED_PROMISES, REPAIR_RESERVE};
mod view;

use crate::clock;
use crate::fanout::{Misbehave, Voices};

/// The soonest a report follows the one before, when the subtree changed (places propagate up
/// the tree at this pace a hop; unchanged, a report goes every [`REPORT_INTERVAL`]).
pub const REPORT_SOONEST: std::time::Duration = std::time::Duration::from_millis(250);

/// Events for the event loop, queued: past this many, the oldest are not waited for (the tree
/// sends the same again soon: views and reports are periodic).
pub const TREE_EVENT_CAP: usize = 1024;
/// How long someone who left the stage is still heard (their last frames and proofs).
pub const LEFT_STAGE_HEARD: std::time::Duration = std::time::Duration::from_secs(10);
/// Keys that left the stage kept at most.
const MAX_LEFT_STAGE: usize = 64;

/// What the tree tells the event loop.
#[derive(Debug)]
pub enum TreeEvent {
    /// Something for this node came down (a view, a relayed envelope, a notice for it).
    Down { room: RoomId, down: Down },
    /// At the host: a listener's action, come up along `via` (the host's child first, as each
    /// relay on the way said).
    Act {
        room: RoomId,
        via: Vec<PeerKey>,
        act: Vec<u8>,
    },
    /// At the host: its subtree, every [`REPORT_INTERVAL`].
    Report { room: RoomId, report: Report },
}

/// One room's tree at this node.
#[derive(Debug)]
struct RoomTree {
    host: PeerKey,
    is_host: bool,
    subtree: Subtree,
    /// The ticket this node attached with (the host places with its own key).
    ticket: Option<Ticket>,
    depth: u16,
    view: Option<Verified<AudienceView>>,
    last_report: Option<Instant>,
    /// The subtree changed since the last report (a child came or went, a child's subtree grew
    /// or its free places changed): the next report goes sooner, so places propagate up fast.
    dirty: bool,
    /// What each child last reported that matters to places above: its size and free places.
    summaries: HashMap<PeerKey, Summary>,
    /// Stage members who may speak (the host's audio plane takes their voice).
    speakers: HashSet<PeerId>,
    /// Whose voices may be heard: the stage, and who left it lately (their last frames and
    /// proofs are still on the way).
    voices: Arc<Voices>,
    /// Keys that left the stage, and when.
    left_stage: HashMap<PeerKey, Instant>,
    /// Children the latest view removed, to cut off.
    evict: Vec<PeerId>,
    /// The host asked this node to carry the room: it is an entry point (see
    /// [`Tree::is_entry`]).
    carrying: bool,
    keys: keys::SeenKeys,
    /// Unchecked messages passed down (see `flood`), and how many were dropped.
    downs: earshot_protocol::bucket::Bucket,
    /// This node's own playout, counted for its reports.
    playout: PlayoutWindow,
    flooded: u64,
    /// Envelopes and sealed messages passed down lately: a child attaching (a newcomer, or an
    /// orphan whose parent stalled) gets them after the view, and drops what it saw already.
    recent: std::collections::VecDeque<(Instant, Down)>,
    /// This node's uplink: its capacity, measured, and children to shed (see `capacity`).
    uplink: earshot_protocol::audience::uplink::Uplink<crate::fanout::ChildStream>,
    shed: Vec<PeerId>,
}

impl RoomTree {
    /// See [`Tree::is_entry`].
    fn is_entry(&self) -> bool {
        !self.is_host
            && self.carrying
            && self.ticket.is_some()
            && !self.subtree.is_excluded(&self.subtree.me())
    }
}

/// What a child's report says that matters to places above: its subtree's size, and each free
/// place (its node, how far below, how many).
type Summary = (u32, Vec<(PeerKey, u16, u16)>);

/// This node's place in a room's tree, for `/tree`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TreeInfo {
    /// Hops below the host (0: the host).
    pub depth: u16,
    /// The ancestors, parent first, up to the host.
    pub path: Vec<PeerKey>,
    pub children: Vec<PeerKey>,
    /// Nodes in this node's subtree, itself included (by its children's reports).
    pub size: u32,
}

/// Every room's tree at this node. Cheap to share (`Arc`).
pub struct Tree {
    /// The adversary this node plays, if any (tests).
    misbehave: std::sync::OnceLock<Misbehave>,
    /// Frames go unchecked (tests of the plane alone: [`crate::node::NodeConfig::unchecked_audio`]).
    unchecked: std::sync::atomic::AtomicBool,
    me: PeerKey,
    signing: ed25519_dalek::SigningKey,
    rooms: Mutex<HashMap<RoomId, RoomTree>>,
    events: mpsc::Sender<TreeEvent>,
    /// The upload its user declared, in kbit/s (0: none).
    upload_kbps: std::sync::atomic::AtomicU32,
}

impl std::fmt::Debug for Tree {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Tree")
    }
}

impl Tree {
    pub fn new(signing: ed25519_dalek::SigningKey) -> (Arc<Self>, mpsc::Receiver<TreeEvent>) {
        let (events, rx) = mpsc::channel(TREE_EVENT_CAP);
        let tree = Arc::new(Self {
            misbehave: std::sync::OnceLock::new(),
            unchecked: std::sync::atomic::AtomicBool::new(false),
            me: PeerKey::from(&signing),
            signing,
            rooms: Mutex::new(HashMap::new()),
            events,
            upload_kbps: std::sync::atomic::AtomicU32::new(0),
        });
        (tree, rx)
    }

    /// Takes part in `room`'s tree, feeding up to `capacity` children.
    pub fn open(&self, room: RoomId, host: PeerKey, capacity: u16, addrs: &[libp2p::Multiaddr]) {
        let uplink = capacity::uplink(self, host == self.me, capacity);
        let mut subtree = Subtree::new(self.me, uplink.capacity(), Instant::now());
        subtree.set_addrs(earshot_protocol::addr::to_wire(
            addrs,
            usize::MAX,
            earshot_protocol::audience::wire::MAX_PEER_ADDRS,
        ));
        self.rooms.lock().entry(room).or_insert(RoomTree {
            host,
            is_host: host == self.me,
            subtree,
            ticket: None,
            depth: 0,
            view: None,
            last_report: None,
            dirty: false,
            summaries: HashMap::new(),
            speakers: HashSet::new(),
            voices: Arc::new(Voices::of(host, [])),
            left_stage: HashMap::new(),
            evict: Vec::new(),
            carrying: false,
            keys: keys::SeenKeys::default(),
            downs: flood::budget(Instant::now()),
            playout: PlayoutWindow::default(),
            recent: std::collections::VecDeque::new(),
            flooded: 0,
            uplink,
            shed: Vec::new(),
        });
    }

    /// The host asked this node to carry `room`: it admits joiners and places anyone with a
    /// ticket, as the host does.
    pub fn set_carrying(&self, room: &RoomId) {
        if let Some(tree) = self.rooms.lock().get_mut(room) {
            tree.carrying = true;
        }
    }

    /// How children placed under this node reach it, from now on.
    pub fn set_addrs(&self, room: &RoomId, addrs: &[libp2p::Multiaddr]) {
        if let Some(tree) = self.rooms.lock().get_mut(room) {
            tree.subtree.set_addrs(earshot_protocol::addr::to_wire(
                addrs,
                usize::MAX,
                earshot_protocol::audience::wire::MAX_PEER_ADDRS,
            ));
        }
    }

    /// At the host: a ticket for `asker` naming the host (full for now), for a listener admitted
    /// without a place to show when it asks again.
    pub fn ticket_for(&self, room: &RoomId, asker: PeerKey) -> Option<Vec<u8>> {
        let rooms = self.rooms.lock();
        let tree = rooms.get(room).filter(|tree| tree.is_host)?;
        let _ = tree;
        Some(Ticket::issue_as_host(&self.signing, *room, asker, self.me, clock::now()).encode())
    }

    /// This node's key.
    /// Frames go unchecked from now on (tests of the plane alone).
    /// The upload this node's user declared (`--upload-kbps`): its capacity in rooms opened
    /// from now on follows it over a child's measured cost (see `capacity`).
    pub fn set_upload_kbps(&self, kbps: u32) {
        self.upload_kbps
            .store(kbps, std::sync::atomic::Ordering::Relaxed);
    }

    pub fn set_unchecked(&self) {
        self.unchecked
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }

    /// Plays the adversary `kind` (tests). Once.
    pub fn set_misbehave(&self, kind: Misbehave) {
        let _ = self.misbehave.set(kind);
    }

    pub fn me(&self) -> PeerKey {
        self.me
    }

    pub fn close(&self, room: &RoomId) {
        self.rooms.lock().remove(room);
    }

    pub fn is_open(&self, room: &RoomId) -> bool {
        self.rooms.lock().contains_key(room)
    }

    /// Who may speak in `room` (the host's audio plane takes their voice).
    pub fn set_speakers(&self, room: &RoomId, speakers: HashSet<PeerId>) {
        if let Some(tree) = self.rooms.lock().get_mut(room) {
            tree.speakers = speakers;
        }
    }

    /// Who is on `room`'s stage now: their frames are the ones heard (checked against their
    /// proofs). Who left it in the last [`LEFT_STAGE_HEARD`] is still heard.
    pub fn set_stage(&self, room: &RoomId, stage: impl IntoIterator<Item = PeerKey>) {
        let mut rooms = self.rooms.lock();
        let Some(tree) = rooms.get_mut(room) else {
            return;
        };
        let now = Instant::now();
        let stage: HashSet<PeerKey> = stage.into_iter().collect();
        for keys in tree.voices.stage.values() {
            for key in keys {
                if !stage.contains(key) && *key != tree.host {
                    tree.left_stage.insert(*key, now);
                }
            }
        }
        tree.left_stage
            .retain(|key, at| !stage.contains(key) && now.duration_since(*at) < LEFT_STAGE_HEARD);
        // Bounded: the stage is, and so is who left it within seconds (the oldest go first).
        while tree.left_stage.len() > MAX_LEFT_STAGE {
            if let Some(oldest) = tree
                .left_stage
                .iter()
                .min_by_key(|(_, at)| **at)
                .map(|(k, _)| *k)
            {
                tree.left_stage.remove(&oldest);
            }
        }
        let voices = Voices::of(
            tree.host,
            stage.iter().chain(tree.left_stage.keys()).copied(),
        );
        if *tree.voices != voices {
            tree.voices = Arc::new(voices);
        }
    }

    /// This node attached under a parent with `ticket`, `depth` hops below the host.
    pub fn attached(&self, room: &RoomId, ticket: Ticket, depth: u16) {
        if let Some(tree) = self.rooms.lock().get_mut(room) {
            tree.ticket = Some(ticket);
            tree.depth = depth;
            // The new parent hears of this subtree at once.
            tree.last_report = None;
        }
    }

    /// The ancestors this node was told last (its parent first).
    pub fn ancestors(&self, room: &RoomId) -> Vec<Ancestor> {
        self.rooms
            .lock()
            .get(room)
            .map(|tree| tree.subtree.ancestors().to_vec())
            .unwrap_or_default()
    }

    /// The host's latest view this node holds.
    pub fn view(&self, room: &RoomId) -> Option<Verified<AudienceView>> {
        self.rooms
            .lock()
            .get(room)
            .and_then(|tree| tree.view.clone())
    }

    /// This node's place in `room`'s tree.
    pub fn info(&self, room: &RoomId) -> Option<TreeInfo> {
        let rooms = self.rooms.lock();
        let tree = rooms.get(room)?;
        Some(TreeInfo {
            depth: tree.depth,
            path: tree.subtree.ancestor_keys(),
            children: tree.subtree.children().copied().collect(),
            size: tree.subtree.size(),
        })
    }

    /// Nodes in this node's subtree (itself included), by its children's reports.
    pub fn size(&self, room: &RoomId) -> u32 {
        self.rooms
            .lock()
            .get(room)
            .map_or(0, |tree| tree.subtree.size())
    }

    /// Children fed now.
    pub fn children(&self, room: &RoomId) -> usize {
        self.rooms
            .lock()
            .get(room)
            .map_or(0, |tree| tree.subtree.children().count())
    }

    /// This node's own action, to send up the tree.
    pub fn act(&self, room: &RoomId, act: Vec<u8>) -> Result<(), Refused> {
        match self.rooms.lock().get_mut(room) {
            Some(tree) => tree.subtree.own_act(act),
            None => Err(Refused::QueueFull),
        }
    }

    /// This node's own reaction, counted in its next report.
    pub fn react(&self, room: &RoomId, emoji: &str) {
        if let Some(tree) = self.rooms.lock().get_mut(room) {
            tree.subtree.react(emoji);
        }
    }

    /// A listener this node admitted (told up in the next report).
    pub fn newcomer(&self, room: &RoomId, newcomer: Newcomer) {
        if let Some(tree) = self.rooms.lock().get_mut(room) {
            tree.subtree.newcomer(newcomer);
        }
    }

    /// Where `child` in `room` gets a notice for `to` (the child itself, or the one it came
    /// through).
    pub fn route(&self, room: &RoomId, to: &PeerKey) -> Option<PeerId> {
        self.rooms
            .lock()
            .get(room)
            .and_then(|tree| tree.subtree.route(to))
            .and_then(|child| child.to_peer_id().ok())
    }

    /// A place for `asker` in this node's subtree, with the ticket for it. Who may ask:
    /// anyone the caller admitted (a newcomer); at the host, a member showing a ticket of
    /// its own; elsewhere, an orphan of a child this node lost lately, showing the ticket that
    /// placed it under that child. A child an orphan says is lost is cut off (see
    /// [`Gate::evicted`](crate::fanout::Gate::evicted); the caller carries it out).
    pub fn place(
        &self,
        room: &RoomId,
        asker: PeerKey,
        lost: Option<PeerKey>,
        ticket: Option<&[u8]>,
        admitted: bool,
    ) -> Result<Placement, Refusal> {
        let now = Instant::now();
        let wall = clock::now();
        let mut rooms = self.rooms.lock();
        let tree = rooms.get_mut(room).ok_or(Refusal::RoomClosed)?;
        if !admitted {
            let ticket = ticket.ok_or(Refusal::NotPresent)?;
            let ticket = Ticket::decode(ticket).map_err(|err| Refusal::BadTicket {
                detail: err.to_string(),
            })?;
            ticket
                .check_chain(*room, tree.host, wall)
                .map_err(|err| Refusal::BadTicket {
                    detail: err.to_string(),
                })?;
            let leaf = ticket.leaf().ok_or(Refusal::NotPresent)?;
            if leaf.child != asker {
                return Err(Refusal::BadTicket {
                    detail: "it names someone else".into(),
                });
            }
            // An orphan of a child of this node: that child is gone (its stream may not have
            // ended here yet: a dead peer's connection takes seconds to time out), so it is cut
            // off now and its subtree no longer offered. A child that was only slow attaches
            // again when its stream ends; a lying orphan (it must hold a ticket under that
            // child) costs that child's subtree one repair.
            let orphan_of = lost.filter(|lost| leaf.parent == *lost);
            // The orphan of a child the host excluded: that child stays, a leaf (it is still
            // a listener); its children leave it.
            let of_excluded = orphan_of.is_some_and(|lost| {
                tree.subtree.is_excluded(&lost) && tree.subtree.has_child(&lost)
            });
            if let Some(lost) = orphan_of
                && tree.subtree.has_child(&lost)
                && !of_excluded
            {
                debug!(%room, lost = %lost.short(), orphan = %asker.short(), "a child went silent");
                tree.subtree.child_closed(&lost, now);
                tree.summaries.remove(&lost);
                tree.dirty = true;
                if let Ok(peer) = lost.to_peer_id() {
                    tree.evict.push(peer);
                }
            }
            if !tree.is_host && !tree.is_entry() {
                // Only the orphans of a child this node lost (an entry point takes anyone
                // with a ticket, as the host does).
                let orphan = of_excluded
                    || orphan_of.is_some_and(|lost| tree.subtree.lost_lately(&lost, now));
                if !orphan {
                    return Err(Refusal::NoPlace);
                }
            }
        }
        if tree
            .view
            .as_ref()
            .is_some_and(|view| view.banned.contains(&asker))
        {
            return Err(Refusal::Rejected {
                reason: "you were removed from the room".into(),
            });
        }
        // A child this node shed as slow is not placed here again for a while (its stream would
        // be refused, and the place promised to it kept from others meanwhile): below, it may.
        let shed_here = asker
            .to_peer_id()
            .is_ok_and(|peer| tree.uplink.shed_lately(|(child, _)| *child == peer, now));
        let newcomer = admitted && lost.is_none() && ticket.is_none();
        if newcomer && tree.is_host && !reserve::newcomer_may_take(&tree.subtree, now) {
            return Err(Refusal::NoPlace);
        }
        let placed = tree.subtree.place_for(&asker, !shed_here, now);
        let Some(placed) = placed else {
            debug!(%room, asker = %asker.short(), children = tree.subtree.children().count(),
                free = tree.subtree.free(), promised = tree.subtree.promised_count(now), shed_here,
                offered = ?tree.subtree.offered(now).iter().map(|s| (s.key.short(), s.free)).collect::<Vec<_>>(),
                "no place");
            return Err(Refusal::NoPlace);
        };
        debug!(%room, asker = %asker.short(), here = matches!(placed, Placed::Here), "placed");
        let (parent, addrs, below) = match placed {
            Placed::Here => (self.me, Vec::new(), 0),
            // A free place `below` hops under this node: the newcomer one more.
            Placed::Below(slot) => (slot.key, slot.addrs, slot.below),
        };
        let issued = if tree.is_host {
            Some(Ticket::issue_as_host(
                &self.signing,
                *room,
                asker,
                parent,
                wall,
            ))
        } else {
            tree.ticket
                .as_ref()
                .and_then(|own| Ticket::issue_below(&self.signing, own, asker, parent, wall))
        };
        let Some(issued) = issued else {
            tree.subtree.unpromise(&parent);
            return Err(Refusal::NoPlace);
        };
        Ok(Placement {
            key: parent,
            addrs,
            depth: tree.depth.saturating_add(below).saturating_add(1),
            ticket: serde_bytes::ByteBuf::from(issued.encode()),
        })
    }

    fn send(&self, event: TreeEvent) {
        if self.events.try_send(event).is_err() {
            debug!("the event loop is behind: a tree event was not delivered");
        }
    }
}

impl Tree {
    /// Whether this node is an entry point of `room`: a community relay the host asked to carry
    /// it, attached (it places into its own subtree with tickets chained to its own), not
    /// excluded. An entry point admits listeners who join through it and places anyone who
    /// shows a ticket, as the host does.
    pub fn is_entry(&self, room: &RoomId) -> bool {
        self.rooms.lock().get(room).is_some_and(RoomTree::is_entry)
    }

    /// The host of `room`, if this node is in its tree (the lock is not held after).
    /// Whether the host's latest view excludes `key` from relaying in `room`.
    pub fn is_excluded(&self, room: &RoomId, key: &PeerKey) -> bool {
        self.rooms
            .lock()
            .get(room)
            .is_some_and(|tree| tree.subtree.is_excluded(key))
    }
}
