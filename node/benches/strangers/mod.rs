//! What the benches that play strangers against a room (`sybil_room`, `outside_flood`) share:
//! their logs, an in-process node on loopback, a public room with its links, and the minimal
//! libp2p client an attacker uses for the room protocol (a key and a connection of its own per
//! stranger, nothing else). Each includes it with `mod strangers;`; it sits in a folder of its
//! own so that cargo does not take it for a bench, and everything here is used by both.

use std::time::Duration;

use earshot_node::identity::Identity;
use earshot_node::net::{NetConfig, ROOM_PROTOCOL, RoomCodec};
use earshot_node::node::{Node, NodeConfig};
use earshot_protocol::room::RoomSpec;
use earshot_protocol::{
    Audience, Capability, Grant, InviteLink, RecordingPolicy, Role, RoomDescriptor, RoomId,
    RoomLimits, Visibility,
};
use futures::StreamExt;
use libp2p::Swarm;
use libp2p::request_response::{self, ProtocolSupport};
use libp2p::swarm::SwarmEvent;

/// `EARSHOT_BENCH_LOG=FILTER` logs the nodes (all in this process) to standard error.
pub fn init_logs() {
    if let Ok(filter) = std::env::var("EARSHOT_BENCH_LOG") {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
            .with_ansi(false)
            .with_writer(std::io::stderr)
            .init();
    }
}

/// A node on 127.0.0.1 (QUIC) with `net`.
pub async fn spawn(identity: Identity, net: NetConfig) -> Node {
    Node::spawn(
        identity,
        NodeConfig {
            listen: vec!["/ip4/127.0.0.1/udp/0/quic-v1".parse().expect("multiaddr")],
            net,
            max_children: earshot_node::node::DEFAULT_MAX_CHILDREN,
            ..NodeConfig::default()
        },
    )
    .await
    .expect("node")
}

/// `host` (whose key is `key`) hosts a public room with the default limits.
pub async fn public_room(
    host: &Node,
    key: &ed25519_dalek::SigningKey,
    id: u8,
    title: &str,
) -> RoomDescriptor {
    let descriptor = RoomDescriptor::sign(
        key,
        RoomSpec {
            id: RoomId([id; 16]),
            title: title.into(),
            visibility: Visibility::Public,
            recording: RecordingPolicy::default(),
            created_at: earshot_node::clock::now(),
            addrs: host.listen_addrs().await.expect("addrs"),
            limits: RoomLimits::default(),
        },
    )
    .expect("descriptor");
    host.host(descriptor.clone(), "host").await.expect("host");
    descriptor
}

/// A bearer link to `room` for `role`, valid for an hour.
pub fn invite(key: &ed25519_dalek::SigningKey, room: &RoomDescriptor, role: Role) -> InviteLink {
    let now = earshot_node::clock::now();
    InviteLink {
        starts_at: None,
        capability: Capability::issue(
            key,
            room.id,
            Grant {
                audience: Audience::Bearer,
                role,
                not_before: now,
                expires_at: now.plus_millis(3_600_000),
                depth: 0,
            },
            [role as u8; 8],
        )
        .expect("capability"),
        host: room.host,
        bootstrap: room.addrs(),
    }
}

/// A stranger's client of the room protocol.
pub type Client = Swarm<request_response::Behaviour<RoomCodec>>;

/// A client with `keypair`; with `listen_ip`, its QUIC socket is on that address (its dials
/// then leave from it: how the attacker takes an address of its own).
pub async fn room_client(
    keypair: libp2p::identity::Keypair,
    listen_ip: Option<&str>,
) -> Option<Client> {
    let mut swarm = libp2p::SwarmBuilder::with_existing_identity(keypair)
        .with_tokio()
        .with_quic()
        .with_behaviour(|_| {
            request_response::Behaviour::with_codec(
                RoomCodec,
                [(ROOM_PROTOCOL, ProtocolSupport::Outbound)],
                request_response::Config::default()
                    .with_request_timeout(Duration::from_secs(10))
                    .with_max_concurrent_streams(64),
            )
        })
        .ok()?
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(120)))
        .build();
    if let Some(ip) = listen_ip {
        swarm
            .listen_on(format!("/ip4/{ip}/udp/0/quic-v1").parse().ok()?)
            .ok()?;
        loop {
            if let SwarmEvent::NewListenAddr { .. } = swarm.select_next_some().await {
                break;
            }
        }
    }
    Some(swarm)
}
