//! What a listener pays for being in a room as the room grows, on a real network: a host and N
//! listeners (in-process nodes, each with its own swarm, over loopback), every listener in the
//! audience (placed in the relay tree, off the room's topic). For N = 10, 50, 150 (or `--sizes
//! 10,20`) it measures, per listener, the bytes it received (libp2p's bandwidth metrics, counted
//! where the connection's multiplexer hands streams up: every stream of every protocol, payload
//! as the protocols read it; QUIC's packet framing and encryption are not included), the audio
//! plane's share (frames and keep-alives with their length prefixes), and the rest: the control
//! plane (gossip, the room protocol, the tree's control frames, identify, ping, Kademlia). Two phases per size: an idle room (the host says
//! nothing: keep-alives only), then a speaking one (80-byte frames every 20 ms, a 32 kbit/s
//! voice). CPU is the whole process's over the window, per node (all share two cores here).
//!
//! `cargo bench -p earshot-node --bench audience_scale` (add `-- --sizes 10,50 --seconds 10`,
//! `--tcp` for TCP instead of QUIC). Prints a table; the targets (issue 12) are control ≤ 2 KB/s
//! and everything ≤ 4 KB/s per listener in the idle room, and the per-listener total growing by
//! ≤ 30 % from the smallest size to the largest.

use std::sync::Arc;
use std::time::{Duration, Instant};

use earshot_node::identity::Identity;
use earshot_node::metrics::NetMetrics;
use earshot_node::net::NetConfig;
use earshot_node::node::{Node, NodeConfig};
use earshot_protocol::frame::{AudioFrame, SpeakerId};
use earshot_protocol::room::RoomSpec;
use earshot_protocol::{
    Audience, Capability, Grant, InviteLink, RecordingPolicy, Role, RoomDescriptor, RoomId,
    Visibility,
};

struct Args {
    sizes: Vec<usize>,
    seconds: u64,
    tcp: bool,
}

fn args() -> Args {
    let args: Vec<String> = std::env::args().collect();
    let value = |flag: &str| {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    Args {
        sizes: value("--sizes")
            .map(|list| list.split(',').filter_map(|n| n.parse().ok()).collect())
            .unwrap_or_else(|| vec![10, 50, 150]),
        seconds: value("--seconds")
            .and_then(|s| s.parse().ok())
            .unwrap_or(15),
        tcp: args.iter().any(|a| a == "--tcp"),
    }
}

/// The process's CPU time so far (user and system), from /proc.
fn cpu_time() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (in parentheses, which may hold spaces).
    let rest = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    // utime and stime are fields 14 and 15 of the whole line: 12 and 13 after the name.
    let total = ticks(11) + ticks(12);
    // CLK_TCK is 100 on Linux.
    Duration::from_millis(total * 10)
}

struct Member {
    node: Node,
    metrics: NetMetrics,
    stats: Arc<earshot_node::fanout::FanoutStats>,
}

async fn spawn(identity: Identity, tcp: bool) -> (Node, NetMetrics) {
    let metrics = NetMetrics::default();
    let listen = if tcp {
        "/ip4/127.0.0.1/tcp/0"
    } else {
        "/ip4/127.0.0.1/udp/0/quic-v1"
    };
    let node = Node::spawn(
        identity,
        NodeConfig {
            listen: vec![listen.parse().expect("multiaddr")],
            // Hundreds of nodes on 127.0.0.1: one address, as far as per-address limits go.
            net: NetConfig {
                per_address: None,
                metrics: metrics.clone(),
                ..NetConfig::default()
            },
            max_children: earshot_node::node::DEFAULT_MAX_CHILDREN,
            ..NodeConfig::default()
        },
    )
    .await
    .expect("node");
    (node, metrics)
}

/// Per listener over a window: bytes received in all, of the audio plane, of tree control.
#[derive(Default, Clone, Copy)]
struct Sample {
    total: u64,
    audio: u64,
    tree: u64,
}

fn sample(member: &Member) -> Sample {
    use std::sync::atomic::Ordering::Relaxed;
    Sample {
        total: member.metrics.traffic().received,
        audio: member.stats.audio_received.load(Relaxed),
        tree: member.stats.control_received.load(Relaxed),
    }
}

struct Row {
    n: usize,
    phase: &'static str,
    total: (f64, f64),
    control: (f64, f64),
    tree: f64,
    audio: f64,
    cpu_ms_per_node: f64,
    host_children: usize,
    depth: u16,
}

/// Mean and max of `values`.
fn mean_max(values: &[f64]) -> (f64, f64) {
    let mean = values.iter().sum::<f64>() / values.len().max(1) as f64;
    let max = values.iter().copied().fold(0.0, f64::max);
    (mean, max)
}

async fn measure(
    n: usize,
    phase: &'static str,
    members: &[Member],
    host: &Node,
    room: RoomId,
    window: Duration,
) -> Row {
    let before: Vec<Sample> = members.iter().map(sample).collect();
    let cpu = cpu_time();
    let start = Instant::now();
    tokio::time::sleep(window).await;
    let seconds = start.elapsed().as_secs_f64();
    let cpu = cpu_time().saturating_sub(cpu);
    let after: Vec<Sample> = members.iter().map(sample).collect();
    let per_second = |f: fn(&Sample) -> u64| -> Vec<f64> {
        before
            .iter()
            .zip(&after)
            .map(|(b, a)| (f(a).saturating_sub(f(b))) as f64 / seconds)
            .collect()
    };
    let total = per_second(|s| s.total);
    let audio = per_second(|s| s.audio);
    let tree = per_second(|s| s.tree);
    let control: Vec<f64> = total.iter().zip(&audio).map(|(t, a)| t - a).collect();
    let depth = members
        .iter()
        .filter_map(|m| m.node.tree(&room).map(|info| info.depth))
        .max()
        .unwrap_or(0);
    Row {
        n,
        phase,
        total: mean_max(&total),
        control: mean_max(&control),
        tree: mean_max(&tree).0,
        audio: mean_max(&audio).0,
        cpu_ms_per_node: cpu.as_secs_f64() * 1000.0 / seconds / (n + 1) as f64,
        host_children: host.tree(&room).map_or(0, |info| info.children.len()),
        depth,
    }
}

async fn room_of(n: usize, args: &Args) -> Vec<Row> {
    let identity = Identity::ephemeral().expect("identity");
    // The host's own key signs its room and its invite.
    let descriptor_key = identity.signing_key().clone();
    let (host, _) = spawn(identity, args.tcp).await;
    let host_key = host.key();
    let now = earshot_node::clock::now();
    let descriptor = RoomDescriptor::sign(
        &descriptor_key,
        RoomSpec {
            id: RoomId([n as u8; 16]),
            title: format!("{n} listeners"),
            visibility: Visibility::Unlisted,
            recording: RecordingPolicy::default(),
            created_at: now,
            addrs: host.listen_addrs().await.expect("addrs"),
            limits: earshot_protocol::RoomLimits::default(),
        },
    )
    .expect("descriptor");
    assert_eq!(descriptor.host, host_key);
    let room = descriptor.id;
    host.host(descriptor.clone(), "host").await.expect("host");
    let link = InviteLink {
        starts_at: None,
        capability: Capability::issue(
            &descriptor_key,
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
    let mut members = Vec::new();
    for i in 0..n {
        let (node, metrics) = spawn(Identity::ephemeral().expect("identity"), args.tcp).await;
        node.join(link.clone(), &format!("l{i}"))
            .await
            .expect("join");
        let (_, stats) = node.fanout().open_room(room);
        members.push(Member {
            node,
            metrics,
            stats,
        });
        eprint!("\r{n}: {} joined", i + 1);
    }
    // Everyone attached, and the host counting them all.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let attached = members
            .iter()
            .filter(|m| {
                m.node
                    .membership(&room)
                    .is_some_and(|ms| ms.position.borrow().is_some())
            })
            .count();
        let counted = host.tree(&room).map_or(0, |info| info.size as usize);
        eprint!("\r{n}: {attached} attached, the host counts {counted}   ");
        if attached == n && counted == n + 1 {
            break;
        }
        assert!(Instant::now() < deadline, "the tree did not form in 60 s");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    eprintln!();
    // Settled: joins are over (views stop changing with every arrival).
    tokio::time::sleep(Duration::from_secs(3)).await;
    let window = Duration::from_secs(args.seconds);
    let mut rows = vec![measure(n, "idle", &members, &host, room, window).await];
    // The host speaks: 80-byte frames every 20 ms.
    let speaking = {
        let fanout = host.fanout().clone();
        let speaker = SpeakerId::of(&host_key);
        tokio::spawn(async move {
            let mut clock = tokio::time::interval(Duration::from_millis(20));
            for seq in 0u32.. {
                clock.tick().await;
                fanout.relay(
                    &room,
                    &AudioFrame {
                        speaker,
                        seq,
                        timestamp: seq.wrapping_mul(960),
                        level: 40,
                        flags: 0,
                        payload: vec![0x78; 80],
                        tag: None,
                    },
                );
            }
        })
    };
    tokio::time::sleep(Duration::from_secs(2)).await;
    rows.push(measure(n, "speaking", &members, &host, room, window).await);
    speaking.abort();
    for member in &members {
        member.node.shutdown().await;
    }
    host.shutdown().await;
    rows
}

fn main() {
    let args = args();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let mut rows = Vec::new();
    for &n in &args.sizes {
        rows.extend(runtime.block_on(room_of(n, &args)));
    }
    println!();
    println!(
        "Listeners in the audience, in-process nodes over loopback {} (one process, {} s windows)",
        if args.tcp { "TCP" } else { "QUIC" },
        args.seconds
    );
    println!(
        "Bytes received per listener per second, counted per stream at the application (libp2p's \
         bandwidth metrics; QUIC framing and encryption not included): `total`, every protocol; \
         `audio` the frames and keep-alives; `control` = total - audio; `tree` the tree's own \
         control frames (views, relayed envelopes, paths) within control."
    );
    println!();
    println!(
        "| {:>5} | {:<8} | {:>11} | {:>11} | {:>13} | {:>13} | {:>9} | {:>10} | {:>5} | {:>5} |",
        "N",
        "room",
        "total mean",
        "total max",
        "control mean",
        "control max",
        "tree",
        "audio",
        "cpu",
        "depth"
    );
    println!(
        "|{:-<7}|{:-<10}|{:-<13}|{:-<13}|{:-<15}|{:-<15}|{:-<11}|{:-<12}|{:-<7}|{:-<7}|",
        "", "", "", "", "", "", "", "", "", ""
    );
    for row in &rows {
        println!(
            "| {:>5} | {:<8} | {:>9.0} B | {:>9.0} B | {:>11.0} B | {:>11.0} B | {:>7.0} B | {:>8.0} B | {:>5.1} | {:>5} |",
            row.n,
            row.phase,
            row.total.0,
            row.total.1,
            row.control.0,
            row.control.1,
            row.tree,
            row.audio,
            row.cpu_ms_per_node,
            row.depth,
        );
        let _ = row.host_children;
    }
    println!();
    for phase in ["idle", "speaking"] {
        let of = |n: usize| {
            rows.iter()
                .find(|r| r.n == n && r.phase == phase)
                .map(|r| r.total.0)
        };
        if let (Some(&first), Some(&last)) = (args.sizes.first(), args.sizes.last())
            && let (Some(small), Some(large)) = (of(first), of(last))
        {
            let growth = 100.0 * (large / small - 1.0);
            println!(
                "{phase}: per-listener total at N = {last} vs N = {first}: {growth:+.0} % (target: ≤ +30 %)"
            );
        }
    }
    println!(
        "cpu: ms of CPU per second per node (the whole process's, over the host and every listener)"
    );
}
