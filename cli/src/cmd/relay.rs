//! `earshot relay`: a community relay, the daemon a person with a small server starts once and
//! forgets. It relays circuits for nodes behind NATs (circuit relay v2, with limits fit for
//! hours-long audio rooms), answers AutoNAT probes and Kademlia queries (a bootstrap node), and
//! exposes Prometheus metrics. It runs until SIGTERM or Ctrl-C, then shuts down cleanly.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context as _;
use clap::Args;
use earshot::relay_config::{self, RelayConfig};
use earshot_node::community::CommunityRelay;
use earshot_node::event::Event;
use earshot_node::identity::Identity;
use earshot_node::metrics::NetMetrics;
use earshot_node::net::{NetConfig, RelayServerConfig};
use earshot_node::node::{Node, NodeConfig};
use multiaddr::Multiaddr;
use prometheus_client::registry::Registry;
use tokio::sync::broadcast;

use super::Context;
use crate::Exit;
use crate::output::{print_event, say};
use crate::render::Text;
use crate::runtime::{Runtime, stop_requested};

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
    /// Keep every audio frame and control frame this relay passes on in FILE (for testing
    /// what a relay can read of a private room).
    #[arg(long, hide = true, value_name = "FILE")]
    capture: Option<PathBuf>,
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
    let json = ctx.json;
    let code = Runtime::new()?.run(run(identity, config, args.capture, json))?;
    Ok(Exit(code))
}

async fn run(
    identity: Identity,
    config: RelayConfig,
    capture: Option<PathBuf>,
    json: bool,
) -> anyhow::Result<u8> {
    // Every series is registered before the registry is served: the node's (with libp2p's own)
    // before it starts, the relay service's once the node is up.
    let mut registry = Registry::default();
    let net_metrics = NetMetrics::register(&mut registry);
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
                carry_rooms: config.max_rooms.get(),
                children_budget: Some(config.max_children_total()),
                max_memory: config
                    .memory_limit
                    .and_then(|limit| usize::try_from(limit.get()).ok()),
                metrics: net_metrics,
                ..NetConfig::default()
            },
            max_children: config.children_per_room(),
            // A community relay is reachable by definition: its operator opened the port.
            relays: Vec::new(),
            reachability: earshot_node::reachability::Mode::Public,
            capture,
            ..NodeConfig::default()
        },
    )
    .await
    .context("starting the relay's node")?;
    let mut events = node.subscribe();
    let service = CommunityRelay::start(&node, Some(&mut registry));
    let served = match config.metrics {
        Some(addr) => Some(
            earshot_node::metrics::serve(registry, addr)
                .await
                .with_context(|| format!("serving metrics on {addr}"))?,
        ),
        None => None,
    };
    let mut text = Text::default();
    let mut show = |event: &Event| {
        if json {
            print_event(event);
        } else {
            for line in text.lines(event) {
                say!("{line}");
            }
        }
    };
    show(&Event::Relay {
        peer_id: node.peer_id(),
        addrs: node.dialable_addrs().await?,
        metrics: served
            .as_ref()
            .map(|(addr, _)| format!("http://{addr}/metrics")),
    });
    let stop = stop_requested();
    tokio::pin!(stop);
    loop {
        tokio::select! {
            _ = &mut stop => break,
            event = events.recv() => match event {
                Ok(event @ (Event::Carrying { .. } | Event::Error { .. } | Event::RelayStats(_))) => {
                    show(&event);
                }
                Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => break,
            },
        }
    }
    // Children are handed over to other parents before the relay goes.
    service.stop().await;
    if let Some((_, task)) = served {
        task.abort();
    }
    node.shutdown().await;
    while let Ok(event) = events.try_recv() {
        if matches!(event, Event::Stopped) {
            show(&event);
        }
    }
    Ok(0)
}
