//! A room of many nodes on loopback, in one process: how long joining takes (link in → member
//! list and stage known) and how long a control message takes to reach everyone.
//!
//! `cargo bench -p earshot-node --bench room_scale` (add `-- --nodes 20` for a smaller room).
//! Prints a table; targets are join ≤ 500 ms and propagation p99 ≤ 200 ms.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use earshot_node::Event;
use earshot_node::identity::Identity;
use earshot_node::net::NetConfig;
use earshot_node::node::{Node, NodeConfig};
use earshot_protocol::room::RoomSpec;
use earshot_protocol::{
    Audience, Capability, ControlBody, Grant, InviteLink, RecordingPolicy, Role, RoomDescriptor,
    RoomId, Visibility,
};
use tokio::sync::broadcast;

const MESSAGES: usize = 20;

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

fn row(what: &str, mut samples: Vec<Duration>, target: Option<Duration>) {
    samples.sort();
    let ms = |d: Duration| format!("{:.1}", d.as_secs_f64() * 1000.0);
    let p99 = percentile(&samples, 0.99);
    println!(
        "| {what:<34} | {:>6} | {:>8} | {:>8} | {:>8} | {:>8} | {:<6} |",
        samples.len(),
        ms(percentile(&samples, 0.5)),
        ms(percentile(&samples, 0.95)),
        ms(p99),
        ms(*samples.last().unwrap_or(&Duration::ZERO)),
        match target {
            Some(target) if p99 <= target => "ok",
            Some(_) => "MISSED",
            None => "",
        }
    );
}

async fn spawn(identity: Identity) -> Node {
    Node::spawn(
        identity,
        NodeConfig {
            listen: vec!["/ip4/127.0.0.1/udp/0/quic-v1".parse().expect("multiaddr")],
            bootstrap: Vec::new(),
            // Hundreds of nodes on 127.0.0.1: one address, as far as per-address limits go.
            net: NetConfig {
                per_address: None,
                ..NetConfig::default()
            },
            max_children: earshot_node::node::DEFAULT_MAX_CHILDREN,
            upload_kbps: None,
            relays: Vec::new(),
            reachability: Default::default(),
            tree_by_hand: false,
            misbehave: None,
            capture: None,
            unchecked_audio: false,
        },
    )
    .await
    .expect("node")
}

/// Waits until every receiver has seen an event matching `predicate`; returns each one's delay.
async fn arrivals(
    receivers: Vec<&mut broadcast::Receiver<Event>>,
    start: Instant,
    predicate: impl Fn(&Event) -> bool + Clone,
) -> Vec<Duration> {
    let futures = receivers.into_iter().map(|rx| {
        let predicate = predicate.clone();
        async move {
            loop {
                match tokio::time::timeout(Duration::from_secs(5), rx.recv()).await {
                    Ok(Ok(event)) if predicate(&event) => return Some(start.elapsed()),
                    Ok(Ok(Event::Rejected { reason, .. })) => eprintln!("rejected: {reason}"),
                    Ok(Ok(_)) | Ok(Err(broadcast::error::RecvError::Lagged(_))) => {}
                    _ => return None,
                }
            }
        }
    });
    futures::future::join_all(futures)
        .await
        .into_iter()
        .flatten()
        .collect()
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let nodes: usize = args
        .iter()
        .position(|a| a == "--nodes")
        .and_then(|i| args.get(i + 1))
        .and_then(|n| n.parse().ok())
        .unwrap_or(50);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(run(nodes));
}

async fn run(nodes: usize) {
    let host_identity = Identity::ephemeral().expect("identity");
    let signing = host_identity.signing_key().clone();
    let host = spawn(host_identity).await;
    let now = earshot_node::clock::now();
    let descriptor = RoomDescriptor::sign(
        &signing,
        RoomSpec {
            id: RoomId([7; 16]),
            title: "Scale".into(),
            visibility: Visibility::Unlisted,
            recording: RecordingPolicy::default(),
            created_at: now,
            addrs: host.listen_addrs().await.expect("addrs"),
            limits: earshot_protocol::RoomLimits::default(),
        },
    )
    .expect("descriptor");
    let room = descriptor.id;
    host.host(descriptor.clone(), "host").await.expect("host");
    let link = InviteLink {
        starts_at: None,
        capability: Capability::issue(
            &signing,
            room,
            Grant {
                audience: Audience::Bearer,
                role: Role::Listener,
                not_before: now,
                expires_at: now.plus_millis(3_600_000),
                depth: 0,
            },
            [1; 8],
        )
        .expect("capability"),
        host: descriptor.host,
        bootstrap: descriptor.addrs(),
    };

    // Join one at a time, as people arrive.
    let mut members = Vec::new();
    let mut join_times = Vec::new();
    for i in 0..nodes - 1 {
        let node = spawn(Identity::ephemeral().expect("identity")).await;
        let start = Instant::now();
        let view = node
            .join(link.clone(), &format!("n{i}"))
            .await
            .expect("join");
        join_times.push(start.elapsed());
        assert!(
            view.state.stage().len() == 1,
            "the stage is known on joining"
        );
        members.push(node);
    }
    let mut receivers: Vec<_> = members.iter().map(Node::subscribe).collect();
    let mut host_rx = host.subscribe();

    // Control messages from the host (promote/demote), and from listeners (chat).
    let mut from_host = Vec::new();
    let mut from_member = Vec::new();
    let keys: HashMap<usize, _> = members
        .iter()
        .enumerate()
        .map(|(i, m)| (i, m.key()))
        .collect();
    eprintln!();
    for round in 0..MESSAGES {
        eprint!("\rround {}/{MESSAGES}", round + 1);
        // Promote someone, then demote them: every message changes a role.
        let target = keys[&((round / 2) % members.len())];
        let body = if round % 2 == 0 {
            ControlBody::Promote {
                target,
                role: Role::Speaker,
            }
        } else {
            ControlBody::Demote { target }
        };
        let start = Instant::now();
        host.act(room, body).await.expect("promote or demote");
        from_host.extend(
            arrivals(
                receivers.iter_mut().collect(),
                start,
                move |e| matches!(e, Event::RoleChanged { member, .. } if *member == target),
            )
            .await,
        );
        let text = format!("chat {round}");
        let speaker_index = (round * 7 + 3) % members.len();
        let start = Instant::now();
        members[speaker_index]
            .act(room, ControlBody::Chat { text: text.clone() })
            .await
            .expect("chat");
        let mut targets: Vec<&mut broadcast::Receiver<Event>> = receivers
            .iter_mut()
            .enumerate()
            .filter(|(i, _)| *i != speaker_index)
            .map(|(_, rx)| rx)
            .collect();
        targets.push(&mut host_rx);
        from_member.extend(
            arrivals(
                targets,
                start,
                move |e| matches!(e, Event::Chat { text: t, .. } if *t == text),
            )
            .await,
        );
    }
    println!();
    println!(
        "Room of {nodes} nodes on 127.0.0.1 (QUIC), one process, {MESSAGES} messages each way"
    );
    println!();
    println!(
        "| {:<34} | {:>6} | {:>8} | {:>8} | {:>8} | {:>8} | {:<6} |",
        "measure", "count", "p50 ms", "p95 ms", "p99 ms", "max ms", "target"
    );
    println!(
        "|{:-<36}|{:-<8}|{:-<10}|{:-<10}|{:-<10}|{:-<10}|{:-<8}|",
        "", "", "", "", "", "", ""
    );
    row(
        "join (link → members and stage)",
        join_times,
        Some(Duration::from_millis(500)),
    );
    row(
        "promote by host → seen by all",
        from_host,
        Some(Duration::from_millis(200)),
    );
    row(
        "chat by a listener → seen by all",
        from_member,
        Some(Duration::from_millis(200)),
    );
    for node in &members {
        node.shutdown().await;
    }
    host.shutdown().await;
}
