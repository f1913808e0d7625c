//! The community relay service: what `earshot relay` runs on top of a node configured as a
//! circuit relay. Hosts ask it to carry their rooms ([`Event::CarryRequested`]); it joins each
//! and takes a large place in the room's tree without playing anything
//! ([`AudioSession::carry`]). It keeps totals over every room carried since it started, measures
//! its upload, reports what it does once a second ([`Event::RelayStats`]) and in metrics, and
//! when stopped hands every room's listeners over to other parents before leaving.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use earshot_protocol::{InviteLink, RoomId};
use libp2p::PeerId;
use parking_lot::Mutex;
use tokio::sync::{broadcast, oneshot};
use tracing::warn;

use crate::event::{CarriedRoom, Event, RelayStats};
use crate::metrics::{counter, gauge};
use crate::node::Node;
use crate::session::{AudioSession, AudioStatus};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// How often the figures are taken.
const SAMPLE: Duration = Duration::from_millis(500);
/// Samples the upload rate is measured over (3 s).
const RATE_WINDOW: usize = 6;
/// Samples between two [`Event::RelayStats`] (1 s).
const REPORT_EVERY: u64 = 2;

/// The rooms carried now.
type Carried = Arc<Mutex<HashMap<RoomId, AudioSession>>>;

/// A running community relay service. [`CommunityRelay::stop`] hands its rooms over.
#[derive(Debug)]
pub struct CommunityRelay {
    node: Node,
    carried: Carried,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

/// Counters over every room carried since the start (a room that ended still counts).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Total {
    pub frames: u64,
    pub dropped: u64,
    pub bytes: u64,
}

/// Totals kept across rooms that come and go.
#[derive(Debug, Default)]
pub struct Totals {
    /// Rooms no longer carried.
    ended: Total,
    /// The latest figures of each room carried now.
    live: HashMap<RoomId, Total>,
}

impl Totals {
    /// Takes the rooms' figures now; returns the totals since the start.
    pub fn update(&mut self, statuses: &HashMap<RoomId, AudioStatus>) -> Total {
        let gone: Vec<RoomId> = self
            .live
            .keys()
            .filter(|room| !statuses.contains_key(room))
            .copied()
            .collect();
        for room in gone {
            if let Some(last) = self.live.remove(&room) {
                self.ended.frames += last.frames;
                self.ended.dropped += last.dropped;
                self.ended.bytes += last.bytes;
            }
        }
        let mut total = self.ended;
        for (room, status) in statuses {
            let now = Total {
                frames: status.received,
                dropped: status.dropped,
                bytes: status.bytes_sent,
            };
            self.live.insert(*room, now);
            total.frames += now.frames;
            total.dropped += now.dropped;
            total.bytes += now.bytes;
        }
        total
    }
}

/// The upload rate over the last [`RATE_WINDOW`] samples of bytes sent.
#[derive(Debug, Default)]
pub struct Upload {
    samples: VecDeque<(Instant, u64)>,
}

impl Upload {
    /// Adds a sample of the total bytes sent; returns kbit/s over the window.
    pub fn sample(&mut self, at: Instant, bytes: u64) -> i64 {
        self.samples.push_back((at, bytes));
        if self.samples.len() > RATE_WINDOW {
            self.samples.pop_front();
        }
        match (self.samples.front(), self.samples.back()) {
            (Some((t0, b0)), Some((t1, b1))) => {
                let secs = t1.duration_since(*t0).as_secs_f64();
                if secs > 0.0 {
                    (b1.saturating_sub(*b0) as f64 * 8.0 / 1000.0 / secs) as i64
                } else {
                    0
                }
            }
            _ => 0,
        }
    }
}

/// The relay's own series (names are what operators' dashboards use); the network's are the
/// node's [`NetMetrics`].
#[derive(Debug, Clone)]
struct RelayMetrics {
    rooms: Gauge,
    children: Gauge,
    forwarded: Counter,
    dropped: Counter,
    bytes: Counter,
    upload: Gauge,
}

impl RelayMetrics {
    fn register(registry: &mut Registry) -> Self {
        Self {
            rooms: gauge(registry, "earshot_rooms", "Rooms this relay carries now"),
            children: gauge(
                registry,
                "earshot_children",
                "Listeners this relay feeds now, all rooms together",
            ),
            forwarded: counter(
                registry,
                "earshot_frames_forwarded_total",
                "Audio frames received and passed down the tree",
            ),
            dropped: counter(
                registry,
                "earshot_frames_dropped_total",
                "Frame copies skipped for children that fell behind",
            ),
            bytes: counter(
                registry,
                "earshot_bytes_forwarded_total",
                "Audio bytes sent to children, all rooms together",
            ),
            upload: gauge(
                registry,
                "earshot_upload_kbps",
                "Audio upload to children over the last few seconds, in kbit/s",
            ),
        }
    }

    fn update(&self, rooms: usize, children: usize, total: Total, kbps: i64) {
        self.rooms.set(i64::try_from(rooms).unwrap_or(i64::MAX));
        self.children
            .set(i64::try_from(children).unwrap_or(i64::MAX));
        advance(&self.forwarded, total.frames);
        advance(&self.dropped, total.dropped);
        advance(&self.bytes, total.bytes);
        self.upload.set(kbps);
    }
}

/// Raises `counter` to `total` (a counter only goes up; totals here never step down).
fn advance(counter: &Counter, total: u64) {
    counter.inc_by(total.saturating_sub(counter.get()));
}

impl CommunityRelay {
    /// Starts carrying rooms for hosts that ask `node` (configured with
    /// [`crate::net::NetConfig::carry_rooms`]), registering its series in `registry` if given
    /// (before the registry is served).
    pub fn start(node: &Node, registry: Option<&mut Registry>) -> Self {
        let carried: Carried = Arc::default();
        let (stop, stopped) = oneshot::channel();
        let task = tokio::spawn(serve(
            node.clone(),
            Arc::clone(&carried),
            registry.map(RelayMetrics::register),
            node.subscribe(),
            stopped,
        ));
        Self {
            node: node.clone(),
            carried,
            stop: Some(stop),
            task,
        }
    }

    /// Rooms carried now.
    pub fn rooms(&self) -> Vec<RoomId> {
        self.carried.lock().keys().copied().collect()
    }

    /// Stops: every room's children are handed over to other parents, then the relay leaves
    /// the rooms. Says [`Event::Stopped`].
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = (&mut self.task).await;
        let sessions: Vec<(RoomId, AudioSession)> = self.carried.lock().drain().collect();
        for (room, session) in sessions {
            // Leaving hands the children over (the node's membership in the room); the
            // session ends once they have moved.
            let _ = self.node.leave(room).await;
            if let Err(err) = session.finish().await {
                warn!(%room, %err, "handing the room over");
            }
        }
        self.node.emit(Event::Stopped);
    }
}

async fn serve(
    node: Node,
    carried: Carried,
    metrics: Option<RelayMetrics>,
    mut events: broadcast::Receiver<Event>,
    mut stopped: oneshot::Receiver<()>,
) {
    let stats = node.net_metrics().clone();
    let mut sample = tokio::time::interval(SAMPLE);
    let mut totals = Totals::default();
    let mut upload = Upload::default();
    let mut samples = 0u64;
    loop {
        tokio::select! {
            _ = &mut stopped => return,
            _ = sample.tick() => {
                samples += 1;
                let statuses: HashMap<RoomId, AudioStatus> = carried
                    .lock()
                    .iter()
                    .map(|(room, session)| (*room, session.status()))
                    .collect();
                let children: usize = statuses.values().map(|s| s.children).sum();
                let total = totals.update(&statuses);
                let kbps = upload.sample(Instant::now(), total.bytes);
                if let Some(metrics) = &metrics {
                    metrics.update(statuses.len(), children, total, kbps);
                }
                if samples.is_multiple_of(REPORT_EVERY) {
                    node.emit(Event::RelayStats(Box::new(RelayStats {
                        peers: stats.peers.get(),
                        reservations: stats.reservations.get(),
                        circuits: stats.circuits.get(),
                        children,
                        frames_forwarded: total.frames,
                        upload_kbps: kbps,
                        rooms: statuses
                            .iter()
                            .map(|(room, s)| CarriedRoom {
                                room: *room,
                                parent: s.position.map(|p| p.parent),
                                depth: s.position.map(|p| p.depth),
                                children: s.children,
                                received: s.received,
                            })
                            .collect(),
                    })));
                }
            }
            event = events.recv() => match event {
                Ok(Event::CarryRequested(request)) => {
                    let request = *request;
                    tokio::spawn(carry(node.clone(), Arc::clone(&carried), request.link, request.host));
                }
                Ok(Event::Closed { room, .. }) => {
                    carried.lock().remove(&room);
                }
                Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => return,
            },
        }
    }
}

/// Joins a room a host asked this relay to carry, and takes its place in the tree.
async fn carry(node: Node, carried: Carried, link: InviteLink, host: PeerId) {
    let room = link.capability.room;
    match node.join(link, "relay").await {
        Ok(view) => match AudioSession::carry(&node, node.fanout(), room) {
            Ok(session) => {
                carried.lock().insert(room, session);
                node.emit(Event::Carrying {
                    room,
                    title: view.descriptor.title,
                    host,
                });
            }
            Err(err) => {
                warn!(%room, %err, "could not carry a room");
                node.emit(Event::Error {
                    room: Some(room),
                    message: err.to_string(),
                });
            }
        },
        Err(err) => {
            warn!(%room, %err, "could not join a room a host asked to carry");
            node.emit(Event::Error {
                room: Some(room),
                message: err.to_string(),
            });
        }
    }
}

#[cfg(test)]
mod tests;
