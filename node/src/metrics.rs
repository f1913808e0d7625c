//! Prometheus metrics: the node's network figures, libp2p's own, and a small bounded HTTP
//! endpoint serving them.
//!
//! The registry is `prometheus-client`'s, the one libp2p's `metrics` feature fills. Whoever
//! runs a node registers every series into one [`Registry`] at start-up ([`counter`],
//! [`gauge`], [`NetMetrics::register`]), then hands the registry to [`serve`]; from then on it
//! is only read. The handles are atomics, so counting on the hot path takes no lock.
//!
//! [`NetMetrics`] is what the event loop counts: connections, peers, a community relay's
//! reservations and circuits (`earshot_*`), and libp2p's swarm and protocol metrics
//! (`libp2p_*`: connections, dials, gossipsub, identify, ping, Kademlia, DCUtR, relay server),
//! all recorded by [`NetMetrics::record`] as each swarm event is handled.
//!
//! [`serve`] answers `GET /metrics` (and `HEAD`) with the OpenMetrics text exposition
//! (`# EOF`-terminated; counters' samples end in `_total`), over HTTP/1.1 with hyper, one
//! request per connection, within the bounds documented by the constants below.

use std::collections::HashSet;
use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::{ALLOW, CONTENT_TYPE, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use libp2p::PeerId;
use libp2p::metrics::Recorder as _;
use libp2p::swarm::SwarmEvent;
use parking_lot::Mutex;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};

use crate::net::BehaviourEvent;

mod handling;
pub use self::handling::{BUCKETS_US, Handled, HandlingTimes};

/// What the event loop counts about the network, as metric handles (cloning shares them).
///
/// [`NetMetrics::default`] counts into handles no registry shows and records nothing for
/// libp2p: a node that serves no metrics. [`NetMetrics::register`] makes them visible.
#[derive(Clone, Default)]
pub struct NetMetrics {
    /// Connections open now (`earshot_connections`).
    pub connections: Gauge,
    /// Peers with at least one connection now (`earshot_peers`).
    pub peers: Gauge,
    /// Circuit relay server: peers holding a reservation now (`earshot_relay_reservations_open`;
    /// not `…_reservations`, which OpenMetrics takes for the family of
    /// `earshot_relay_reservations_total`).
    pub reservations: Gauge,
    /// Circuit relay server: circuits open now (`earshot_relay_circuits_open`).
    pub circuits: Gauge,
    /// Reservations granted (renewals not counted) (`earshot_relay_reservations_total`).
    pub reservations_total: Counter,
    /// Circuits accepted (`earshot_relay_circuits_total`).
    pub circuits_total: Counter,
    /// Reservations and circuits refused, over a limit (`earshot_relay_denied_total`).
    pub denied: Counter,
    /// The peers `reservations` counts. libp2p reports a `ReservationClosed` for every
    /// connection that closes, whether it held a reservation or not, so counting events up and
    /// down would not do.
    reserved: Arc<Mutex<HashSet<PeerId>>>,
    /// libp2p's own swarm and protocol metrics, when registered.
    libp2p: Option<Arc<libp2p::metrics::Metrics>>,
    /// Bytes the node's streams carried (libp2p's bandwidth metrics, counted where each
    /// connection's multiplexer hands its streams up: every protocol's payload, not the
    /// transport's framing or encryption), in a registry of their own: the swarm registers them
    /// as it is built.
    pub(crate) bandwidth: Arc<Mutex<Registry>>,
    /// How long the event loop takes over each thing it handles
    /// (`earshot_event_loop_handling_seconds`).
    pub handling: HandlingTimes,
    /// Room-protocol requests answered "busy" unread, their peer past its budget
    /// (`earshot_requests_over_budget_total`).
    pub requests_over_budget: Counter,
    /// Gossip messages ignored unverified, the peer that forwarded them past its budget
    /// (`earshot_gossip_over_budget_total`).
    pub gossip_over_budget: Counter,
    /// Studio chunks (speakers' own voices, for the recording) kept, and refused: not a speaker
    /// heard now, not signed by the sender, over the stream's budget, or no recording
    /// (`earshot_studio_chunks_kept_total`, `earshot_studio_chunks_refused_total`).
    pub studio_kept: Counter,
    pub studio_refused: Counter,
    /// Peers disconnected and kept out for misbehaving on their streams
    /// (`earshot_peers_blocked_total`, see `net::conduct`).
    pub peers_blocked: Counter,
}

/// Bytes a node's streams have received and sent since it started (every protocol).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Traffic {
    pub received: u64,
    pub sent: u64,
}

/// Why the metrics endpoint could not start.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    #[error("cannot listen for metrics on {addr}: {source}")]
    Bind { addr: SocketAddr, source: io::Error },
    #[error("the metrics listener has no local address: {0}")]
    LocalAddr(io::Error),
}

/// Longest request head (request line and headers). A Prometheus scrape sends a few hundred
/// bytes; a longer head is answered 431 and closed (hyper's `max_header_size`).
const MAX_HEAD_BYTES: usize = 4 * 1024;
/// How long a client has to send its request head, and then again to take the answer: a slow
/// or silent client loses its connection, it never keeps a slot for long.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(5);
/// Connections served at once. A scraper needs one; past this, a connection is answered 503 and
/// closed at once, so a flood of idle sockets costs at most this many tasks.
const MAX_CONNECTIONS: usize = 32;
/// Pause after a failed `accept` (out of file descriptors, say), so that the loop does not spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// The content type of the OpenMetrics text exposition, which Prometheus asks for first.
const CONTENT_TYPE_OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// The content type of every other answer.
const CONTENT_TYPE_TEXT: &str = "text/plain; charset=utf-8";
/// The whole answer to a connection past [`MAX_CONNECTIONS`], written before reading anything.
const UNAVAILABLE: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\n\
    content-type: text/plain; charset=utf-8\r\ncontent-length: 21\r\nconnection: close\r\n\r\n\
    too many connections\n";

/// Registers a counter whose samples are named `name`, which ends in `_total` as in the
/// exposition: prometheus-client appends the suffix itself, so the family is registered
/// without it.
///
/// # Panics
///
/// If `name` does not end in `_total`: metric names are constants, so that is a bug.
pub fn counter(registry: &mut Registry, name: &'static str, help: &'static str) -> Counter {
    let family = name
        .strip_suffix("_total")
        .unwrap_or_else(|| panic!("counter name {name:?} does not end in _total"));
    let counter = Counter::default();
    registry.register(family, help, counter.clone());
    counter
}

/// Registers a gauge named `name`.
pub fn gauge(registry: &mut Registry, name: &'static str, help: &'static str) -> Gauge {
    let gauge = Gauge::default();
    registry.register(name, help, gauge.clone());
    gauge
}

/// Every series in `registry`, in the OpenMetrics text exposition.
pub fn render(registry: &Registry) -> Result<String, std::fmt::Error> {
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, registry)?;
    Ok(text)
}

impl NetMetrics {
    /// Registers the node's series (`earshot_*`) and libp2p's (`libp2p_*`) in `registry`.
    pub fn register(registry: &mut Registry) -> Self {
        Self {
            connections: gauge(registry, "earshot_connections", "Connections open now"),
            peers: gauge(registry, "earshot_peers", "Peers connected now"),
            reservations: gauge(
                registry,
                "earshot_relay_reservations_open",
                "Circuit relay reservations held now",
            ),
            circuits: gauge(
                registry,
                "earshot_relay_circuits_open",
                "Relayed circuits open now",
            ),
            reservations_total: counter(
                registry,
                "earshot_relay_reservations_total",
                "Circuit relay reservations granted",
            ),
            circuits_total: counter(registry, "earshot_relay_circuits_total", "Circuits relayed"),
            denied: counter(
                registry,
                "earshot_relay_denied_total",
                "Reservations and circuits refused (over a limit)",
            ),
            reserved: Arc::default(),
            libp2p: Some(Arc::new(libp2p::metrics::Metrics::new(registry))),
            bandwidth: Arc::default(),
            handling: HandlingTimes::register(registry),
            requests_over_budget: counter(
                registry,
                "earshot_requests_over_budget_total",
                "Room-protocol requests answered busy unread (their peer past its budget)",
            ),
            gossip_over_budget: counter(
                registry,
                "earshot_gossip_over_budget_total",
                "Gossip messages ignored unverified (their forwarder past its budget)",
            ),
            studio_kept: counter(
                registry,
                "earshot_studio_chunks_kept_total",
                "Speakers' studio chunks kept with a recording",
            ),
            studio_refused: counter(
                registry,
                "earshot_studio_chunks_refused_total",
                "Studio chunks refused (not a speaker now, not signed by the sender, over budget, \
                 or nothing recorded)",
            ),
            peers_blocked: counter(
                registry,
                "earshot_peers_blocked_total",
                "Peers disconnected and kept out for misbehaving on their streams",
            ),
        }
    }

    /// Bytes the node's streams carried so far, every connection and protocol together
    /// (`libp2p_bandwidth_bytes_total`, summed by direction).
    pub fn traffic(&self) -> Traffic {
        let mut text = String::new();
        if prometheus_client::encoding::text::encode(&mut text, &self.bandwidth.lock()).is_err() {
            return Traffic::default();
        }
        let mut bytes = Traffic::default();
        for line in text
            .lines()
            .filter(|l| l.starts_with("libp2p_bandwidth_bytes_total{"))
        {
            let Some(value) = line.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()) else {
                continue;
            };
            // Whole bytes, well within f64's exact integers.
            let value = value as u64;
            if line.contains("direction=\"Inbound\"") {
                bytes.received += value;
            } else if line.contains("direction=\"Outbound\"") {
                bytes.sent += value;
            }
        }
        bytes
    }

    /// Counts what `event` changes: called by the event loop for every swarm event, before
    /// handling it.
    pub fn record(&self, event: &SwarmEvent<BehaviourEvent>) {
        match event {
            SwarmEvent::ConnectionEstablished {
                num_established, ..
            } => {
                self.connections.inc();
                if num_established.get() == 1 {
                    self.peers.inc();
                }
            }
            SwarmEvent::ConnectionClosed {
                num_established, ..
            } => {
                self.connections.dec();
                if *num_established == 0 {
                    self.peers.dec();
                }
            }
            SwarmEvent::Behaviour(BehaviourEvent::RelayServer(event)) => {
                self.record_relay_server(event);
            }
            _ => {}
        }
        if let Some(libp2p) = &self.libp2p {
            record_libp2p(libp2p, event);
        }
    }

    fn record_relay_server(&self, event: &libp2p::relay::Event) {
        use libp2p::relay::Event;
        match event {
            Event::ReservationReqAccepted {
                src_peer_id,
                renewed,
            } => {
                if !renewed {
                    self.reservations_total.inc();
                }
                self.reserved_now(|peers| peers.insert(*src_peer_id));
            }
            Event::ReservationClosed { src_peer_id }
            | Event::ReservationTimedOut { src_peer_id } => {
                self.reserved_now(|peers| peers.remove(src_peer_id));
            }
            Event::ReservationReqDenied { .. } | Event::CircuitReqDenied { .. } => {
                self.denied.inc();
            }
            Event::CircuitReqAccepted { .. } => {
                self.circuits.inc();
                self.circuits_total.inc();
            }
            Event::CircuitClosed { .. } => {
                // Never below zero, whatever order the events come in.
                let _ =
                    self.circuits
                        .inner()
                        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                            Some((n - 1).max(0))
                        });
            }
            _ => {}
        }
    }

    /// Changes the set of peers holding a reservation, and the gauge with it.
    fn reserved_now(&self, change: impl FnOnce(&mut HashSet<PeerId>) -> bool) {
        // Only the event loop records, so the lock is never contended.
        let mut peers = self.reserved.lock();
        change(&mut peers);
        self.reservations
            .set(i64::try_from(peers.len()).unwrap_or(i64::MAX));
    }
}

impl std::fmt::Debug for NetMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NetMetrics")
            .field("connections", &self.connections.get())
            .field("peers", &self.peers.get())
            .field("reservations", &self.reservations.get())
            .field("circuits", &self.circuits.get())
            .field("libp2p", &self.libp2p.is_some())
            .finish_non_exhaustive()
    }
}

/// Hands the event to libp2p's recorders: the swarm's, and the one of the behaviour it came
/// from when libp2p has one (AutoNAT, the relay client, the room protocol and audio streams
/// have none).
fn record_libp2p(metrics: &libp2p::metrics::Metrics, event: &SwarmEvent<BehaviourEvent>) {
    metrics.record(event);
    let SwarmEvent::Behaviour(event) = event else {
        return;
    };
    match event {
        BehaviourEvent::Gossipsub(event) => metrics.record(event),
        BehaviourEvent::Identify(event) => metrics.record(event),
        BehaviourEvent::Ping(event) => metrics.record(event),
        BehaviourEvent::Kad(event) => metrics.record(event),
        BehaviourEvent::Dcutr(event) => metrics.record(event),
        BehaviourEvent::RelayServer(event) => metrics.record(event),
        _ => {}
    }
}

/// Serves `GET /metrics` from `registry` on `addr` until the returned task is aborted (aborting
/// it also ends the connections being served). Returns the address actually bound (for port 0).
pub async fn serve(
    registry: Registry,
    addr: SocketAddr,
) -> Result<(SocketAddr, JoinHandle<()>), MetricsError> {
    serve_with(Arc::new(registry), addr, Limits::default()).await
}

/// The endpoint's limits (shortened by the tests).
#[derive(Debug, Clone, Copy)]
struct Limits {
    client_timeout: Duration,
    max_connections: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            client_timeout: CLIENT_TIMEOUT,
            max_connections: MAX_CONNECTIONS,
        }
    }
}

async fn serve_with(
    registry: Arc<Registry>,
    addr: SocketAddr,
    limits: Limits,
) -> Result<(SocketAddr, JoinHandle<()>), MetricsError> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| MetricsError::Bind { addr, source })?;
    let bound = listener.local_addr().map_err(MetricsError::LocalAddr)?;
    tracing::info!(addr = %bound, "serving metrics");
    let task = tokio::spawn(accept_loop(listener, registry, limits));
    Ok((bound, task))
}

/// Accepts connections and serves each in its own task; the tasks live in a `JoinSet`, so they
/// are counted and end with this loop.
async fn accept_loop(listener: TcpListener, registry: Arc<Registry>, limits: Limits) {
    let mut connections = JoinSet::new();
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            Some(done) = connections.join_next() => {
                if let Err(err) = done {
                    tracing::warn!(%err, "metrics connection task failed");
                }
                continue;
            }
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(err) => {
                tracing::warn!(%err, "metrics listener cannot accept");
                tokio::time::sleep(ACCEPT_BACKOFF).await;
                continue;
            }
        };
        while let Some(done) = connections.try_join_next() {
            if let Err(err) = done {
                tracing::warn!(%err, "metrics connection task failed");
            }
        }
        if connections.len() >= limits.max_connections {
            tracing::warn!(%peer, "too many metrics connections: refused");
            refuse(stream);
            continue;
        }
        tracing::debug!(%peer, "metrics connection");
        connections.spawn(answer(stream, Arc::clone(&registry), limits));
    }
}

/// Answers 503 without reading or waiting: one non-blocking write of a short response (which
/// fits any fresh socket's send buffer), then close. Handing the connection to hyper instead
/// would take a slot while it reads the request.
fn refuse(stream: TcpStream) {
    use std::io::Write as _;
    if let Ok(stream) = stream.into_std() {
        let _ = (&stream).write(UNAVAILABLE);
    }
}

/// Serves one request on `stream` with hyper, then closes. hyper bounds the head
/// ([`MAX_HEAD_BYTES`], 431) and the time to send it; the whole exchange is bounded too, so a
/// client that does not take its answer is cut off.
async fn answer(stream: TcpStream, registry: Arc<Registry>, limits: Limits) {
    let service = hyper::service::service_fn(move |request: Request<Incoming>| {
        let response = respond(&request, &registry);
        async move { Ok::<_, Infallible>(response) }
    });
    let connection = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.client_timeout)
        .max_header_size(MAX_HEAD_BYTES)
        .keep_alive(false)
        .serve_connection(TokioIo::new(stream), service);
    match tokio::time::timeout(2 * limits.client_timeout, connection).await {
        Ok(Ok(())) => {}
        Ok(Err(err)) => tracing::debug!(%err, "metrics connection failed"),
        Err(_elapsed) => tracing::debug!("metrics client too slow"),
    }
}

/// The answer to one request: the metrics at `/metrics` (`GET` or `HEAD`; hyper leaves the body
/// out for `HEAD`), 404 elsewhere, 405 for other methods.
fn respond(request: &Request<Incoming>, registry: &Registry) -> Response<Full<Bytes>> {
    if request.uri().path() != "/metrics" {
        return text(StatusCode::NOT_FOUND, "not found: try /metrics\n");
    }
    if request.method() != Method::GET && request.method() != Method::HEAD {
        let mut response = text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
        response
            .headers_mut()
            .insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
        return response;
    }
    match render(registry) {
        Ok(body) => {
            let mut response = Response::new(Full::new(Bytes::from(body)));
            response.headers_mut().insert(
                CONTENT_TYPE,
                HeaderValue::from_static(CONTENT_TYPE_OPENMETRICS),
            );
            response
        }
        Err(_) => {
            tracing::warn!("metrics could not be encoded");
            text(StatusCode::INTERNAL_SERVER_ERROR, "metrics unavailable\n")
        }
    }
}

fn text(status: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE_TEXT));
    response
}

#[cfg(test)]
mod tests;
