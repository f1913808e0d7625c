//! `earshot relay`: a community relay, the daemon a person with a small server starts once and
//! forgets. It relays circuits for nodes behind NATs (circuit relay v2, with limits fit for
//! hours-long audio rooms), answers AutoNAT probes and Kademlia queries (a bootstrap node), and
//! exposes Prometheus metrics. It runs until SIGTERM or Ctrl-C, then shuts down cleanly.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use clap::Args;
use earshot_node::identity::Identity;
use earshot_node::metrics::{self, NetMetrics};
use earshot_node::net::{NetConfig, RelayServerConfig};
use earshot_node::node::{Node, NodeConfig};
use multiaddr::{Multiaddr, Protocol};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::registry::Registry;
use serde_json::json;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use earshot_node::node::NodeEvent;
use earshot_node::relay::AudioRelay;
use earshot_node::session::{AudioSession, AudioStatus};
use earshot_protocol::{InviteLink, RoomId};
use multiaddr::PeerId;

use super::Context;
use super::relay_config::{self, RelayConfig};
use crate::Exit;
use crate::output::{print_json, say};

#[derive(Debug, Args)]
pub struct RelayArgs {
    /// The relay's configuration (TOML; every setting is optional, see --print-config).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Where to listen (repeatable); overrides the configuration's `listen`.
    #[arg(long, value_name = "MULTIADDR")]
    listen: Vec<Multiaddr>,
    /// Serve Prometheus metrics at http://ADDR/metrics; overrides the configuration's `metrics`.
    #[arg(long, value_name = "ADDR")]
    metrics: Option<SocketAddr>,
    /// Print the effective configuration (file, defaults and flags) as TOML, and exit.
    #[arg(long)]
    print_config: bool,
}

pub fn relay(ctx: &Context, args: RelayArgs) -> anyhow::Result<Exit> {
    let mut config =
        relay_config::load(args.config.as_deref()).with_context(|| match &args.config {
            Some(path) => format!("reading the relay configuration {}", path.display()),
            None => "the relay configuration".to_owned(),
        })?;
    config.merge_cli(args.listen, args.metrics);
    if args.print_config {
        print!("{}", config.to_toml());
        return Ok(Exit(0));
    }
    let dir = ctx.home_dir()?;
    let (identity, _) = Identity::init(&dir)
        .with_context(|| format!("opening the identity in {}", dir.display()))?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let json = ctx.json;
    let code = runtime.block_on(run(identity, config, json))?;
    runtime.shutdown_timeout(Duration::from_secs(2));
    Ok(Exit(code))
}

/// Counters over every room carried since the start (a room that ended still counts).
#[derive(Debug, Default, Clone, Copy)]
struct Total {
    frames: u64,
    dropped: u64,
    bytes: u64,
}

#[derive(Debug, Default)]
struct Totals {
    /// Rooms no longer carried.
    ended: Total,
    /// The latest figures of each room carried now.
    live: HashMap<RoomId, Total>,
}

impl Totals {
    fn update(&mut self, statuses: &HashMap<RoomId, AudioStatus>) -> Total {
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

/// Ticks (of 500 ms) the upload rate is measured over.
const RATE_WINDOW: usize = 6;

async fn run(identity: Identity, config: RelayConfig, json: bool) -> anyhow::Result<u8> {
    let mut registry = Registry::default();
    let stats = NetMetrics::register(&mut registry);
    let node = Node::spawn(
        identity,
        NodeConfig {
            listen: config.listen.clone(),
            bootstrap: Vec::new(),
            net: NetConfig {
                relay_server: Some(RelayServerConfig {
                    max_reservations: config.max_reservations.get(),
                    max_reservations_per_peer: config.max_reservations_per_peer.get(),
                    reservation_duration: config.reservation_duration,
                    max_circuits: config.max_circuits.get(),
                    max_circuits_per_peer: config.max_circuits_per_peer.get(),
                    new_per_ip_per_minute: config.new_per_ip_per_minute,
                    max_circuit_duration: config.circuit_duration,
                    max_circuit_bytes: config.circuit_bytes.get(),
                }),
                max_connections: Some(config.max_connections.get()),
                max_connections_per_peer: Some(config.max_connections_per_peer.get()),
                help_rooms: config.max_rooms.get(),
                children_budget: Some(config.max_children_total()),
                max_memory: config
                    .memory_limit
                    .and_then(|limit| usize::try_from(limit.get()).ok()),
                metrics: stats.clone(),
                ..NetConfig::default()
            },
            max_children: config.children_per_room(),
            // A community relay is reachable by definition: its operator opened the port.
            relays: Vec::new(),
            reachability: earshot_node::reach::ReachMode::Public,
        },
    )
    .await
    .context("starting the relay's node")?;
    let addrs: Vec<Multiaddr> = node
        .listen_addrs()
        .await
        .unwrap_or_default()
        .into_iter()
        .filter(
            |addr| !matches!(addr.iter().next(), Some(Protocol::Ip4(ip)) if ip.is_unspecified()),
        )
        .map(|addr| addr.with(Protocol::P2p(node.peer_id())))
        .collect();

    let mut events = node.subscribe();
    let audio = AudioRelay::start(node.audio_control(), node.audio_admission());
    let carried: Carried = Arc::new(Mutex::new(HashMap::new()));
    let rooms = metrics::gauge(
        &mut registry,
        "earshot_rooms",
        "Rooms this relay carries now",
    );
    let children = metrics::gauge(
        &mut registry,
        "earshot_children",
        "Listeners this relay feeds now, all rooms together",
    );
    let forwarded = metrics::counter(
        &mut registry,
        "earshot_frames_forwarded_total",
        "Audio frames received and passed down the tree",
    );
    let dropped = metrics::counter(
        &mut registry,
        "earshot_frames_dropped_total",
        "Frame copies skipped for children that fell behind",
    );
    let bytes = metrics::counter(
        &mut registry,
        "earshot_bytes_forwarded_total",
        "Audio bytes sent to children, all rooms together",
    );
    let upload = metrics::gauge(
        &mut registry,
        "earshot_upload_kbps",
        "Audio upload to children over the last few seconds, in kbit/s",
    );
    let carrying = Arc::clone(&carried);
    let updater = tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(500));
        // Bytes sent, sampled each tick: the upload rate is over the last RATE_WINDOW ticks.
        let mut sent = std::collections::VecDeque::new();
        let mut totals = Totals::default();
        let mut ticks = 0u64;
        loop {
            tick.tick().await;
            ticks += 1;
            let sessions = lock(&carrying);
            rooms.set(sessions.len() as i64);
            let statuses: HashMap<RoomId, AudioStatus> = sessions
                .iter()
                .map(|(room, session)| (*room, session.status()))
                .collect();
            drop(sessions);
            children.set(statuses.values().map(|s| s.children as i64).sum());
            let total = totals.update(&statuses);
            advance(&forwarded, total.frames);
            advance(&dropped, total.dropped);
            advance(&bytes, total.bytes);
            sent.push_back((std::time::Instant::now(), total.bytes));
            if sent.len() > RATE_WINDOW {
                sent.pop_front();
            }
            let mut kbps = 0;
            if let (Some((t0, b0)), Some((t1, b1))) = (sent.front(), sent.back()) {
                let secs = t1.duration_since(*t0).as_secs_f64();
                if secs > 0.0 {
                    kbps = (b1.saturating_sub(*b0) as f64 * 8.0 / 1000.0 / secs) as i64;
                    upload.set(kbps);
                }
            }
            // For scripts (and `earshot demo`): what the relay does, once a second.
            if json && ticks.is_multiple_of(2) {
                print_json(&json!({
                    "event": "relay_stats",
                    "peers": stats.peers.get(),
                    "reservations": stats.reservations.get(),
                    "circuits": stats.circuits.get(),
                    "children": statuses.values().map(|s| s.children).sum::<usize>(),
                    "frames_forwarded": total.frames,
                    "upload_kbps": kbps,
                    "rooms": statuses.iter().map(|(room, s)| json!({
                        "room": room.to_string(),
                        "parent": s.position.map(|p| p.parent.to_string()),
                        "depth": s.position.map(|p| p.depth),
                        "children": s.children,
                        "received": s.received,
                    })).collect::<Vec<_>>(),
                }));
            }
            // For people (a journal): a line a minute.
            if !json && ticks.is_multiple_of(120) {
                say!(
                    "{} peers; {} rooms carried, {} listeners fed, {kbps} kbit/s up; \
                     {} reservations, {} circuits",
                    stats.peers.get(),
                    statuses.len(),
                    statuses.values().map(|s| s.children).sum::<usize>(),
                    stats.reservations.get(),
                    stats.circuits.get(),
                );
            }
        }
    });
    let served = match config.metrics {
        Some(addr) => Some(
            metrics::serve(registry, addr)
                .await
                .with_context(|| format!("serving metrics on {addr}"))?,
        ),
        None => None,
    };
    let metrics_url = served
        .as_ref()
        .map(|(addr, _)| format!("http://{addr}/metrics"));
    if json {
        print_json(&json!({
            "event": "relay",
            "peer_id": node.peer_id().to_string(),
            "addrs": addrs.iter().map(ToString::to_string).collect::<Vec<_>>(),
            "metrics": metrics_url,
        }));
    } else {
        say!("Relay {} is running.", node.peer_id());
        for addr in &addrs {
            say!("  reachable at {addr}");
        }
        if let Some(url) = &metrics_url {
            say!("  metrics at {url}");
        }
        say!("Give nodes one of the addresses above as --bootstrap. Ctrl-C or SIGTERM stops it.");
    }

    let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("watching for SIGTERM")?;
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            _ = sigterm.recv() => break,
            event = events.recv() => match event {
                Ok(NodeEvent::HelpRequested { from, link }) => {
                    tokio::spawn(carry(node.clone(), audio.clone(), Arc::clone(&carried), *link, from, json));
                }
                Ok(NodeEvent::RoomClosed { room, .. }) => {
                    lock(&carried).remove(&room);
                }
                Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
            },
        }
    }
    // Children are handed over to other parents before the relay goes.
    let sessions: Vec<(RoomId, AudioSession)> = lock(&carried).drain().collect();
    for (room, session) in sessions {
        if let Err(err) = session.finish().await {
            tracing::warn!(%room, %err, "handing the room over");
        }
        let _ = node.leave(room).await;
    }
    updater.abort();
    if let Some((_, task)) = served {
        task.abort();
    }
    node.shutdown().await;
    if json {
        print_json(&json!({"event": "stopped"}));
    } else {
        say!("Relay stopped.");
    }
    Ok(0)
}

/// Raises `counter` to `total`, a running total kept elsewhere (counters never go down).
fn advance(counter: &Counter, total: u64) {
    counter.inc_by(total.saturating_sub(counter.get()));
}

/// The rooms this relay carries.
type Carried = Arc<Mutex<HashMap<RoomId, AudioSession>>>;

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Joins a room a host asked this relay to carry, and takes its place in the tree.
async fn carry(
    node: Node,
    audio: AudioRelay,
    carried: Carried,
    link: InviteLink,
    host: PeerId,
    json: bool,
) {
    let room = link.capability.room;
    match node.join(link, "relay").await {
        Ok(view) => {
            let session = match AudioSession::carry(&node, &audio, room) {
                Ok(session) => session,
                Err(err) => {
                    tracing::warn!(%room, %err, "could not carry a room");
                    return;
                }
            };
            lock(&carried).insert(room, session);
            if json {
                print_json(&json!({
                    "event": "carrying",
                    "room": room.to_string(),
                    "title": view.descriptor.title,
                    "host": host.to_string(),
                }));
            } else {
                say!("Carrying \"{}\" ({room}) for {host}", view.descriptor.title);
            }
        }
        Err(err) => {
            tracing::warn!(%room, %err, "could not join a room a host asked to carry");
            if json {
                print_json(
                    &json!({"event": "error", "room": room.to_string(), "message": err.to_string()}),
                );
            }
        }
    }
}
