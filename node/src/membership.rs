//! A node's membership in a room's relay tree, whether or not it plays the room's audio: from
//! the moment it hosts or joins a room until it leaves, the node takes part in the room's audio
//! plane (its [`Fanout`] room: relaying, feeding children, and what travels along the tree
//! besides audio: the host's views down, listeners' actions up), and a member that is not the
//! host keeps a place in the tree ([`Follower`]): it opens its stream to the parent it was placed
//! under, and when that parent goes asks for a place again, up the tree first. When the room
//! closes for the node, its children are handed over to other parents before its part ends.
//!
//! An audio session ([`crate::session`]) plays and speaks on top of this; a node that only
//! follows the room (a test, a bot) is a full member all the same.

use std::sync::Arc;
use std::time::{Duration, Instant};

use earshot_protocol::audience::Ticket;
use earshot_protocol::audience::exclusion::MAX_REASON_BYTES;
use earshot_protocol::audience::follow::{Answer, Asked, Follower, Step};
use earshot_protocol::snapshot::{Placement, Refusal};
use earshot_protocol::{ControlBody, PeerKey, RoomId};
use libp2p::PeerId;
use parking_lot::Mutex;
use tokio::sync::{broadcast, watch};
use tracing::{debug, info, warn};

use crate::event::Event;
use crate::fanout::{Fanout, StreamError};
use crate::node::{AttachError, Node};

/// How often a membership checks that its room is still open (in case the node's events lagged
/// past its `Closed`).
const CHECK_OPEN: Duration = Duration::from_secs(1);
/// Times in a row a stream whose connection closed under it is opened again on another
/// connection to the same parent (see `follow`).
const MOVES: usize = 2;
/// How long a stream that broke waits to see its relayed connection's closing (see
/// `moved_to_direct`).
const MOVE_WAIT: Duration = Duration::from_millis(150);

/// A node's membership in one room's tree, as its audio session sees it.
#[derive(Debug, Clone)]
pub struct Membership {
    /// Where this node is in the tree (none for the host, and while re-attaching).
    pub position: watch::Receiver<Option<Position>>,
    pub events: broadcast::Sender<AudioEvent>,
    /// Becomes true once this node's part in the room is over (its children handed over).
    pub done: watch::Receiver<bool>,
}

impl Membership {
    /// Waits until this node's part in the room is over (at most `limit`).
    pub async fn finished(&mut self, limit: Duration) {
        let _ = tokio::time::timeout(limit, self.done.wait_for(|done| *done)).await;
    }
}

/// The memberships of a node, by room.
pub(crate) type Memberships = Arc<Mutex<std::collections::HashMap<RoomId, Membership>>>;

impl Node {
    /// Takes part in `room`'s tree from now until the room closes for this node; `start` says
    /// where a member that is not the host starts (the host has none).
    pub(crate) fn start_membership(&self, room: RoomId, start: Option<Start>) {
        let fanout = self.fanout().clone();
        let (_, stats) = fanout.open_room(room);
        let (position_tx, position) = watch::channel(None);
        let events = broadcast::channel(64).0;
        let (done_tx, done) = watch::channel(false);
        self.memberships().lock().insert(
            room,
            Membership {
                position,
                events: events.clone(),
                done,
            },
        );
        let mut closed = self.subscribe();
        let node = self.clone();
        let mine = events.clone();
        tokio::spawn(async move {
            let follower = start.filter(|_| !node.drives_tree_by_hand()).map(|start| {
                tokio::spawn(follow_tree(
                    node.clone(),
                    fanout.clone(),
                    room,
                    start,
                    position_tx,
                    events,
                ))
            });
            let mut check =
                tokio::time::interval_at(tokio::time::Instant::now() + CHECK_OPEN, CHECK_OPEN);
            loop {
                tokio::select! {
                    event = closed.recv() => match event {
                        Ok(Event::Closed { room: r, .. }) if r == room => break,
                        Err(broadcast::error::RecvError::Closed) => break,
                        _ => {}
                    },
                    _ = check.tick() => {
                        if !node.trees().is_open(&room) {
                            break;
                        }
                    }
                }
            }
            // Children move to other parents before this node's part ends; meanwhile it goes
            // on receiving from its own parent, to feed them.
            let stranded = fanout.hand_over(&room).await;
            if stranded > 0 {
                info!(%room, stranded, "some children had not moved when this node left");
            }
            if let Some(follower) = follower {
                follower.abort();
            }
            fanout.close_room_of(&room, &stats);
            done_tx.send_replace(true);
            let mut memberships = node.memberships().lock();
            if memberships
                .get(&room)
                .is_some_and(|membership| membership.events.same_channel(&mine))
            {
                memberships.remove(&room);
            }
        });
    }

    /// This node's membership in `room`'s tree, while it lasts.
    pub fn membership(&self, room: &RoomId) -> Option<Membership> {
        self.memberships().lock().get(room).cloned()
    }
}

/// Something that happened to this node's audio, for user interfaces.
#[derive(Debug, Clone, PartialEq)]
pub enum AudioEvent {
    /// Receiving from `parent`, `depth` hops below the host. `repair` is how long it took from
    /// losing the previous parent to the new stream being open (none for the first attach).
    Attached {
        parent: PeerId,
        depth: u16,
        repair: Option<Duration>,
    },
    /// The parent went away (`leaving`: it said so), and this node is re-attaching.
    Lost {
        parent: PeerId,
        leaving: bool,
        reason: String,
    },
}

/// Where this node is in the tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    pub parent: PeerId,
    pub depth: u16,
}

/// Keeps a member attached to the room's relay tree (see [`Follower`]): opens its stream to the
/// parent it was placed under, and when that stream ends asks for a place again, up the tree
/// first (its grandparent, then each ancestor, then the host), showing the ticket of the place it
/// held and the parent it lost.
async fn follow_tree(
    node: Node,
    relay: Fanout,
    room: RoomId,
    start: Start,
    position: watch::Sender<Option<Position>>,
    events: broadcast::Sender<AudioEvent>,
) {
    let host_key = start.host;
    let host = Asked {
        key: start.host,
        addrs: Vec::new(),
    };
    // The depth of the place being opened (the follower's answer had it).
    let mut depth = start
        .placement
        .as_ref()
        .map_or(0, |placement| placement.depth);
    let admission = start.ticket;
    let placed = start.placement.and_then(answer_of);
    let (mut follower, mut step) = match placed {
        Some(answer) => Follower::placed(host, answer),
        None => Follower::new(host),
    };
    let mut draining = None;
    if relay.misbehaving() == Some(crate::fanout::Misbehave::UnassignedStreams)
        && let Ok(host) = host_key.to_peer_id()
    {
        // The adversary opens listen streams to the host without a ticket.
        let relay = relay.clone();
        tokio::spawn(async move {
            let (taken, refused) = relay.probe_unassigned(room, host, 200).await;
            warn!(
                taken,
                refused, "misbehaving: listen streams opened without a ticket"
            );
        });
    }
    if relay.misbehaving() == Some(crate::fanout::Misbehave::StudioFlood)
        && let Ok(host) = host_key.to_peer_id()
    {
        // The adversary floods the host with studio chunks.
        let relay = relay.clone();
        tokio::spawn(async move {
            let (written, impostors, bytes, streams) = relay
                .flood_studio(
                    room,
                    host,
                    crate::fanout::misbehave::STUDIO_FLOOD_FOR,
                    crate::fanout::misbehave::STUDIO_FLOOD_BYTES_PER_SEC,
                )
                .await;
            warn!(
                written,
                impostors, bytes, streams, "misbehaving: studio chunks flooded"
            );
        });
    }
    // Whether the parent lost last died on this node: it delivered, then went silent or its
    // stream failed. A parent that refused, never started, or is leaving is not claimed lost
    // (an ancestor would cut it off for it).
    let mut died = false;
    loop {
        step = match step {
            Step::Ask { whom, lost, ticket } => {
                // An excluded node that lost its parent was most likely cut off for it: it
                // does not make its parent's parent cut that parent off in turn.
                let excluded = node.trees().is_excluded(&room, &node.trees().me());
                let lost = lost.filter(|_| died && draining.is_none() && !excluded);
                let asked = whom.key;
                // Never placed yet: the ticket the host admitted this node with.
                let ticket = ticket
                    .map(|ticket| ticket.encode())
                    .or_else(|| admission.clone());
                let answer = match node.attach(room, whom, lost, ticket).await {
                    Ok(placement) => answer_of(placement).unwrap_or(Answer::Nothing),
                    Err(AttachError::Stopped | AttachError::NotInRoom(_)) => return,
                    // The host has closed the room (this node missed the end).
                    Err(AttachError::Refused(Refusal::RoomClosed)) if asked == host_key => {
                        let _ = node.room_over(room).await;
                        return;
                    }
                    Err(err) => {
                        debug!(asked = %asked.short(), %err, "no place there");
                        Answer::Nothing
                    }
                };
                if let Answer::Placed { depth: d, .. } = &answer {
                    depth = *d;
                }
                follower.answered(Instant::now(), answer)
            }
            Step::Wait { until } => {
                tokio::time::sleep_until(until.into()).await;
                match follower.tick(Instant::now()) {
                    Some(step) => step,
                    None => Step::Wait { until },
                }
            }
            Step::Open {
                parent,
                addrs,
                ticket,
            } => {
                let Ok(peer) = parent.to_peer_id() else {
                    step = follower.lost(Instant::now());
                    continue;
                };
                let addrs = earshot_protocol::addr::from_wire_lossy(&addrs);
                if let Err(err) = node.dial(peer, addrs).await {
                    debug!(%err, "could not dial the parent; opening the stream may still work");
                }
                node.trees().attached(&room, ticket.clone(), depth);
                let proof = ticket.encode();
                let here = Position {
                    parent: peer,
                    depth,
                };
                let on_start = |follower: &mut Follower| {
                    let repair = follower.opened(Instant::now());
                    position.send_replace(Some(here));
                    let _ = events.send(AudioEvent::Attached {
                        parent: peer,
                        depth,
                        repair,
                    });
                };
                // A parent that does not start the stream may have dropped it in a burst of new
                // ones: ask it again a few times before calling it gone.
                let mut ended = relay
                    .listen_after(room, peer, &proof, &mut draining, || {
                        on_start(&mut follower)
                    })
                    .await;
                for pause in [25, 50, 100] {
                    if !matches!(ended, Err(StreamError::NotStarted(_))) {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(pause)).await;
                    ended = relay
                        .listen_after(room, peer, &proof, &mut draining, || {
                            on_start(&mut follower)
                        })
                        .await;
                }
                // The stream broke with the relayed connection it rode, retired for the direct
                // one a hole punch made (libp2p-stream opens a stream on any of a peer's
                // connections). Nothing is wrong with the parent: the stream opens again at
                // once on the direct connection, as the same parent's child, without a repair.
                let mut reopened = false;
                for _ in 0..MOVES {
                    if position.borrow().is_none() || !matches!(ended, Err(StreamError::Io(_))) {
                        break;
                    }
                    if !moved_to_direct(&node, peer).await {
                        break;
                    }
                    info!(parent = %peer, "the stream's relayed connection was retired: opening it on the direct one");
                    reopened = true;
                    ended = relay
                        .listen_after(room, peer, &proof, &mut draining, || {
                            position.send_replace(Some(here));
                        })
                        .await;
                }
                // Lost only what it had: a parent that never started the stream is no loss. A
                // parent that closed the stream cleanly is alive (it cut this node off, or was
                // excluded): it is not claimed lost, which would have its own parent cut it off.
                let had = position.send_replace(None).is_some();
                let alive = matches!(&ended, Err(StreamError::Excluded))
                    || matches!(
                        &ended,
                        Err(StreamError::Io(err)) if err.kind() == std::io::ErrorKind::UnexpectedEof
                    );
                let refused = matches!(
                    ended,
                    Err(StreamError::NotStarted(_) | StreamError::Refused)
                );
                // A parent that would not take this node again on the direct connection gave
                // its place away: it did not die (it is not claimed lost).
                died = had && ended.is_err() && !alive && !(reopened && refused);
                // A parent caught forging, replaying or withholding is accused to the host (up
                // the tree, once this node is attached again), with the ticket that placed
                // this node under it: two such accusations take it out of the tree.
                if let Err(err @ (StreamError::Forged(_) | StreamError::Withheld(_))) = &ended {
                    let mut reason = err.to_string();
                    truncate_at_char(&mut reason, MAX_REASON_BYTES);
                    let accusation = ControlBody::Accuse {
                        parent,
                        ticket: serde_bytes::ByteBuf::from(proof.clone()),
                        reason,
                    };
                    let node = node.clone();
                    tokio::spawn(async move {
                        if let Err(err) = node.act(room, accusation).await {
                            debug!(%err, "could not accuse the parent");
                        }
                    });
                }
                let event = match ended {
                    Ok(still_feeding) => {
                        info!(parent = %peer, "the parent is leaving; moving");
                        draining = Some(still_feeding);
                        AudioEvent::Lost {
                            parent: peer,
                            leaving: true,
                            reason: "it is leaving".into(),
                        }
                    }
                    Err(err) => {
                        info!(%err, "lost the parent in the relay tree; re-attaching");
                        AudioEvent::Lost {
                            parent: peer,
                            leaving: false,
                            reason: err.to_string(),
                        }
                    }
                };
                if had || draining.is_some() {
                    let _ = events.send(event);
                }
                // Only a parent that would not even start a stream (after the retries above)
                // earns a pause, so that a confused tree cannot make this spin.
                if refused {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                follower.path(node.trees().ancestors(&room));
                follower.lost(Instant::now())
            }
        };
    }
}

/// Whether the connection to `peer` moved from a relay to a direct one: asked again a few
/// times over [`MOVE_WAIT`] while the relayed connection is still open beside the direct one
/// (the stream may have seen it close before this node's connections did).
async fn moved_to_direct(node: &Node, peer: PeerId) -> bool {
    let started = tokio::time::Instant::now();
    loop {
        match node.moving(peer).await {
            Some(true) => return true,
            None => return false,
            Some(false) if started.elapsed() >= MOVE_WAIT => return false,
            Some(false) => tokio::time::sleep(Duration::from_millis(10)).await,
        }
    }
}

/// Where a member starts in the tree: its room's host, and the place it was given when it was
/// admitted (a listener), if any.
#[derive(Debug, Clone)]
pub struct Start {
    pub host: PeerKey,
    pub placement: Option<Placement>,
    /// Admitted without a place: the ticket to show when asking for one.
    pub ticket: Option<Vec<u8>>,
}

/// A placement as the follower takes it (none if its ticket does not even decode).
fn answer_of(placement: Placement) -> Option<Answer> {
    let ticket = Ticket::decode(&placement.ticket).ok()?;
    Some(Answer::Placed {
        parent: placement.key,
        addrs: placement.addrs,
        depth: placement.depth,
        ticket,
    })
}

/// Cuts `text` to at most `max` bytes, at a character's edge.
fn truncate_at_char(text: &mut String, max: usize) {
    if text.len() > max {
        let mut end = max;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
}
