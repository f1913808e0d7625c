//! `earshot relay`: a community relay, the daemon a person with a small server starts once and
//! forgets. It relays circuits for nodes behind NATs (circuit relay v2, with limits fit for
//! hours-long audio rooms), answers AutoNAT probes and Kademlia queries (a bootstrap node), and
//! exposes Prometheus metrics. It runs until SIGTERM or Ctrl-C, then shuts down cleanly.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::Context as _;
use clap::Args;
use earshot_node::identity::Identity;
use earshot_node::metrics::Metrics;
use earshot_node::net::{NetConfig, RelayServerConfig};
use earshot_node::node::{Node, NodeConfig};
use multiaddr::{Multiaddr, Protocol};
use serde_json::json;

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
    let mut config = relay_config::load(args.config.as_deref()).with_context(|| {
        match &args.config {
            Some(path) => format!("reading the relay configuration {}", path.display()),
            None => "the relay configuration".to_owned(),
        }
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

async fn run(identity: Identity, config: RelayConfig, json: bool) -> anyhow::Result<u8> {
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
                    max_circuit_duration: config.circuit_duration,
                    max_circuit_bytes: config.circuit_bytes.get(),
                }),
                max_connections: Some(config.max_connections.get()),
                max_connections_per_peer: Some(config.max_connections_per_peer.get()),
                ..NetConfig::default()
            },
            max_children: config.children_per_room(),
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

    let metrics = Metrics::new();
    let stats = node.net_stats();
    let peers = metrics.gauge("earshot_peers", "Peers connected now");
    let connections = metrics.gauge("earshot_connections", "Connections open now");
    let reservations = metrics.gauge(
        "earshot_relay_reservations",
        "Circuit relay reservations held now",
    );
    let circuits = metrics.gauge("earshot_relay_circuits", "Relayed circuits open now");
    let reservations_total = metrics.counter(
        "earshot_relay_reservations_total",
        "Circuit relay reservations granted",
    );
    let circuits_total = metrics.counter("earshot_relay_circuits_total", "Circuits relayed");
    let denied = metrics.counter(
        "earshot_relay_denied_total",
        "Reservations and circuits refused (over a limit)",
    );
    let updater = tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(500));
        loop {
            tick.tick().await;
            peers.set(stats.peers.load(Ordering::Relaxed));
            connections.set(stats.connections.load(Ordering::Relaxed));
            reservations.set(stats.reservations.load(Ordering::Relaxed));
            circuits.set(stats.circuits.load(Ordering::Relaxed));
            reservations_total.set(stats.reservations_total.load(Ordering::Relaxed));
            circuits_total.set(stats.circuits_total.load(Ordering::Relaxed));
            denied.set(
                stats.reservations_denied.load(Ordering::Relaxed)
                    + stats.circuits_denied.load(Ordering::Relaxed),
            );
        }
    });
    let served = match config.metrics {
        Some(addr) => Some(
            earshot_node::metrics::serve(metrics.clone(), addr)
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
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = sigterm.recv() => {}
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
