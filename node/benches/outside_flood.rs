//! Floods from outside (issue 15): a host speaking to a listener, and an attacker process on the
//! same machine, from its own loopback address (127.0.0.9, so that per-address limits tell it
//! from the honest peers on 127.0.0.1), doing in turn:
//!
//! 1. **connections**: `--connections` fresh keys, each dialling the host (`--batch` at once),
//!    every connection held open (then closed, and 5 s for the address's budget to refill);
//! 2. **requests**: a few connections asking for the lobby as fast as they are answered (16
//!    requests in flight on each);
//! 3. **oversized requests**: joins of 64 KiB (no valid request exceeds about 4 KiB);
//! 4. **silent streams**: audio streams on 8 connections (256 each) that never say hello;
//! 5. **gossip**: a speaker (it holds a speaker link, as any stage member may) follows the
//!    room's topic and publishes chat signed by its own key as fast as it can, every line new,
//!    for 10 s; then a stranger with a fresh key and no link follows the topic and publishes
//!    1 KiB of junk as fast as it can for 5 s.
//!
//! The bench prints what each flood got, the listener's delivery (frames heard / sent)
//! over the whole run, the host's chat (a line every 2 s) as the listener saw it, the host
//! process's peak memory (resident set; the host and the listener share this process, the
//! attacker has its own), and the host's event-loop handling times.
//!
//! `cargo bench -p earshot-node --bench outside_flood` (add `-- --connections 5000`, and
//! `--addresses 100` for a flood from 127.0.1.1 to 127.0.1.100 in turn, past the per-address
//! limit, up to the node's 4,096 connections). Any 127/8 address is loopback on Linux.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use earshot_node::Event;
use earshot_node::identity::Identity;
use earshot_node::metrics::NetMetrics;
use earshot_node::net::NetConfig;
use earshot_node::node::{Node, NodeConfig};
use earshot_protocol::ControlBody;
use earshot_protocol::envelope::{Authority, Envelope};
use earshot_protocol::frame::{AudioFrame, SpeakerId};
use earshot_protocol::snapshot::RoomRequest;
use earshot_protocol::{InviteLink, Role};
use futures::StreamExt;
use libp2p::request_response;
use libp2p::swarm::SwarmEvent;
use libp2p::{Multiaddr, PeerId, Swarm};

mod strangers;
use strangers::Client;

const ATTACKER_IP: &str = "127.0.0.9";

fn flag(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .cloned()
}

fn rss_kb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse().ok())
        })
        .unwrap_or(0)
}

/// A minimal client with a fresh key, its QUIC socket on the attacker's address.
async fn client() -> Option<Client> {
    client_at(ATTACKER_IP).await
}

/// A minimal client with a fresh key, its QUIC socket on `ip`.
async fn client_at(ip: &str) -> Option<Client> {
    strangers::room_client(libp2p::identity::Keypair::generate_ed25519(), Some(ip)).await
}

/// A client that only opens streams (the audio protocol's), its QUIC socket on the attacker's
/// address.
async fn stream_client() -> Option<(Swarm<libp2p_stream::Behaviour>, libp2p_stream::Control)> {
    let mut swarm = libp2p::SwarmBuilder::with_new_identity()
        .with_tokio()
        .with_quic()
        .with_behaviour(|_| libp2p_stream::Behaviour::new())
        .ok()?
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(120)))
        .build();
    swarm
        .listen_on(format!("/ip4/{ATTACKER_IP}/udp/0/quic-v1").parse().ok()?)
        .ok()?;
    loop {
        if let SwarmEvent::NewListenAddr { .. } = swarm.select_next_some().await {
            break;
        }
    }
    let control = swarm.behaviour().new_control();
    Some((swarm, control))
}

/// Dials the host; whether a connection was established within 10 s.
async fn connect<B: libp2p::swarm::NetworkBehaviour>(
    swarm: &mut Swarm<B>,
    host: PeerId,
    addr: &Multiaddr,
) -> bool {
    let opts = libp2p::swarm::dial_opts::DialOpts::peer_id(host)
        .addresses(vec![addr.clone()])
        .build();
    if swarm.dial(opts).is_err() {
        return false;
    }
    tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match swarm.select_next_some().await {
                SwarmEvent::ConnectionEstablished { .. } => return true,
                SwarmEvent::OutgoingConnectionError { .. } => return false,
                _ => {}
            }
        }
    })
    .await
    .unwrap_or(false)
}

/// The attacker: runs the three floods, prints one line of counts for each.
/// An attacker's node (the honest code, driven to misbehave), its QUIC socket on the
/// attacker's address.
async fn attacker_node() -> (Node, ed25519_dalek::SigningKey) {
    let identity = Identity::ephemeral().expect("identity");
    let key = identity.signing_key().clone();
    let node = Node::spawn(
        identity,
        NodeConfig {
            listen: vec![
                format!("/ip4/{ATTACKER_IP}/udp/0/quic-v1")
                    .parse()
                    .expect("multiaddr"),
            ],
            ..NodeConfig::default()
        },
    )
    .await
    .expect("node");
    (node, key)
}

/// 5. Gossip floods: prints `gossip SPEAKER_PUBLISHED SECONDS JUNK_PUBLISHED SECONDS SPEAKER
/// STRANGER` (the last two their peer ids).
async fn gossip_flood(host: PeerId, addr: Multiaddr, speaker_link: InviteLink) {
    let room = speaker_link.capability.room;
    // A speaker's own chat, validly signed, every line new.
    let (speaker, key) = attacker_node().await;
    let mut published = 0u64;
    let window = Duration::from_secs(10);
    let started = Instant::now();
    if speaker.join(speaker_link.clone(), "flooder").await.is_ok() {
        let authority = Authority::Capability(speaker_link.capability.clone());
        while started.elapsed() < window {
            let Ok(line) = Envelope::sign(
                &key,
                room,
                u64::MAX / 2 + published,
                earshot_node::clock::now(),
                authority.clone(),
                ControlBody::Chat {
                    text: format!("flood {published}"),
                },
            ) else {
                break;
            };
            if speaker.publish_raw(room, line.encode()).await.is_err() {
                break;
            }
            published += 1;
        }
    }
    let speaker_seconds = started.elapsed().as_secs_f64();
    let speaker_id = speaker.peer_id();
    speaker.shutdown().await;

    // A stranger's junk: no link, a fresh key, the topic's name is public.
    let (stranger, _) = attacker_node().await;
    let mut junk = 0u64;
    let window = Duration::from_secs(5);
    let started = Instant::now();
    if stranger.dial(host, vec![addr]).await.is_ok()
        && stranger
            .eavesdrop(earshot_protocol::topic::room(&room))
            .await
            .is_ok()
    {
        // Gossipsub publishes only to peers it knows follow the topic.
        tokio::time::sleep(Duration::from_secs(1)).await;
        let mut bytes = vec![0u8; 1024];
        while started.elapsed() < window {
            bytes[..8].copy_from_slice(&junk.to_le_bytes());
            if stranger.publish_raw(room, bytes.clone()).await.is_err() {
                break;
            }
            junk += 1;
        }
    }
    let junk_seconds = started.elapsed().as_secs_f64();
    let stranger_id = stranger.peer_id();
    stranger.shutdown().await;
    println!(
        "gossip {published} {speaker_seconds:.1} {junk} {junk_seconds:.1} {speaker_id} {stranger_id}"
    );
}

async fn attacker(
    host: PeerId,
    addr: Multiaddr,
    connections: usize,
    batch: usize,
    addresses: usize,
    speaker_link: InviteLink,
) {
    // 1. Connections, held open: from 127.0.0.9, or from `addresses` addresses of 127.0.1.0/24
    //    in turn.
    let ips: Vec<String> = if addresses <= 1 {
        vec![ATTACKER_IP.to_owned()]
    } else {
        (1..=addresses.min(250))
            .map(|i| format!("127.0.1.{i}"))
            .collect()
    };
    let started = Instant::now();
    let (mut held, mut refused) = (Vec::new(), 0usize);
    let mut next_ip = 0usize;
    while held.len() + refused < connections {
        let n = batch.min(connections - held.len() - refused);
        let tries = (0..n).map(|_| {
            let addr = addr.clone();
            let ip = ips[next_ip % ips.len()].clone();
            next_ip += 1;
            async move {
                let mut swarm = client_at(&ip).await?;
                connect(&mut swarm, host, &addr).await.then_some(swarm)
            }
        });
        for swarm in futures::future::join_all(tries).await {
            match swarm {
                Some(swarm) => held.push(swarm),
                None => refused += 1,
            }
        }
    }
    // Keep the held connections' swarms polled (so they stay up) for the rest of the run.
    let open = held.len();
    let keeper = tokio::spawn(async move {
        let mut held = held;
        loop {
            for swarm in &mut held {
                while let Some(Some(_)) = futures::FutureExt::now_or_never(swarm.next()) {}
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
    println!(
        "connections {} {} {} {:.1} {}",
        connections,
        open,
        refused,
        started.elapsed().as_secs_f64(),
        ips.len()
    );
    // The held connections go; the address's budget of new connections refills.
    keeper.abort();
    tokio::time::sleep(Duration::from_secs(5)).await;

    // 2. Requests as fast as they are answered, on a few connections.
    let answered = Arc::new(AtomicU64::new(0));
    let refused_busy = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let window = Duration::from_secs(10);
    let mut askers = Vec::new();
    for _ in 0..4 {
        let (answered, failed, addr) = (answered.clone(), failed.clone(), addr.clone());
        let refused_busy = refused_busy.clone();
        askers.push(tokio::spawn(async move {
            let Some(mut swarm) = client().await else {
                return;
            };
            if !connect(&mut swarm, host, &addr).await {
                failed.fetch_add(1, Ordering::Relaxed);
                return;
            }
            let end = Instant::now() + window;
            let mut in_flight = 0;
            while Instant::now() < end {
                while in_flight < 16 {
                    swarm
                        .behaviour_mut()
                        .send_request(&host, RoomRequest::Lobby);
                    in_flight += 1;
                }
                match tokio::time::timeout(Duration::from_secs(1), swarm.select_next_some()).await {
                    Ok(SwarmEvent::Behaviour(request_response::Event::Message {
                        message: request_response::Message::Response { response, .. },
                        ..
                    })) => {
                        in_flight -= 1;
                        let busy = matches!(
                            response,
                            earshot_protocol::snapshot::RoomResponse::Refused {
                                refusal: earshot_protocol::snapshot::Refusal::Busy
                            }
                        );
                        if busy {
                            refused_busy.fetch_add(1, Ordering::Relaxed);
                        } else {
                            answered.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    Ok(SwarmEvent::Behaviour(request_response::Event::OutboundFailure {
                        ..
                    })) => {
                        in_flight -= 1;
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                    _ => {}
                }
            }
        }));
    }
    for asker in askers {
        let _ = asker.await;
    }
    println!(
        "requests {} {} {:.1} {}",
        answered.load(Ordering::Relaxed),
        failed.load(Ordering::Relaxed),
        window.as_secs_f64(),
        refused_busy.load(Ordering::Relaxed)
    );

    // 3. Oversized requests: joins of 64 KiB.
    let (mut refused_big, mut answered_big) = (0, 0);
    if let Some(mut swarm) = client().await
        && connect(&mut swarm, host, &addr).await
    {
        for _ in 0..200 {
            swarm.behaviour_mut().send_request(
                &host,
                RoomRequest::Join {
                    envelope: serde_bytes::ByteBuf::from(vec![0x42; 64 * 1024]),
                },
            );
        }
        let _ = tokio::time::timeout(Duration::from_secs(20), async {
            while refused_big + answered_big < 200 {
                match swarm.select_next_some().await {
                    SwarmEvent::Behaviour(request_response::Event::Message {
                        message: request_response::Message::Response { .. },
                        ..
                    }) => answered_big += 1,
                    SwarmEvent::Behaviour(request_response::Event::OutboundFailure { .. }) => {
                        refused_big += 1
                    }
                    _ => {}
                }
            }
        })
        .await;
    }
    println!("oversized 200 {answered_big} {refused_big}");

    // 4. Audio streams that never say hello: `streams` on 8 connections, held silent.
    let streams_per = 256;
    let (opened, closed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let started = Instant::now();
    let mut openers = Vec::new();
    for _ in 0..8 {
        let (opened, closed, addr) = (opened.clone(), closed.clone(), addr.clone());
        openers.push(tokio::spawn(async move {
            let Some((mut swarm, mut control)) = stream_client().await else {
                return;
            };
            if !connect(&mut swarm, host, &addr).await {
                return;
            }
            let driver = tokio::spawn(async move {
                loop {
                    swarm.select_next_some().await;
                }
            });
            let mut waits = Vec::new();
            for _ in 0..streams_per {
                let Ok(Ok(mut stream)) = tokio::time::timeout(
                    Duration::from_secs(5),
                    control.open_stream(host, earshot_node::fanout::AUDIO_PROTOCOL),
                )
                .await
                else {
                    break;
                };
                opened.fetch_add(1, Ordering::Relaxed);
                let closed = closed.clone();
                // Say nothing; wait for the host to close it.
                waits.push(tokio::spawn(async move {
                    let mut byte = [0u8; 1];
                    let read = tokio::time::timeout(
                        Duration::from_secs(15),
                        futures::AsyncReadExt::read(&mut stream, &mut byte),
                    )
                    .await;
                    if matches!(read, Ok(Ok(0) | Err(_))) {
                        closed.fetch_add(1, Ordering::Relaxed);
                    }
                }));
            }
            for wait in waits {
                let _ = wait.await;
            }
            driver.abort();
        }));
    }
    for opener in openers {
        let _ = opener.await;
    }
    println!(
        "streams {} {} {:.1}",
        opened.load(Ordering::Relaxed),
        closed.load(Ordering::Relaxed),
        started.elapsed().as_secs_f64()
    );

    gossip_flood(host, addr, speaker_link).await;
}

async fn host_side(connections: usize, batch: usize, addresses: usize) {
    let host_metrics = NetMetrics::default();
    let spawn = |identity: Identity, metrics: NetMetrics| {
        strangers::spawn(
            identity,
            NetConfig {
                metrics,
                // What `earshot host` runs with by default (--max-memory-mb 1024).
                max_memory: Some(1024 << 20),
                ..NetConfig::default()
            },
        )
    };
    let identity = Identity::ephemeral().expect("identity");
    let key = identity.signing_key().clone();
    let host = spawn(identity, host_metrics.clone()).await;
    let descriptor = strangers::public_room(&host, &key, 0x0f, "Under siege").await;
    let room = descriptor.id;
    let link = strangers::invite(&key, &descriptor, Role::Listener);
    let speaker_link = strangers::invite(&key, &descriptor, Role::Speaker);
    let listener = spawn(
        Identity::ephemeral().expect("identity"),
        NetMetrics::default(),
    )
    .await;
    let newcomer_link = link.clone();
    listener.join(link, "joe").await.expect("joins");
    let (_heard, stats) = listener.fanout().open_room(room);
    let speaker = SpeakerId::of(&host.key());
    let sent = Arc::new(AtomicU64::new(0));
    let speaking = {
        let (fanout, sent) = (host.fanout().clone(), sent.clone());
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
                sent.fetch_add(1, Ordering::Relaxed);
            }
        })
    };
    // Heard from the start.
    let deadline = Instant::now() + Duration::from_secs(20);
    while stats.received.load(Ordering::Relaxed) == 0 {
        assert!(Instant::now() < deadline, "the listener hears nothing");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let quiet = host_metrics.handling.snapshot();
    let (sent0, heard0) = (
        sent.load(Ordering::Relaxed),
        stats.received.load(Ordering::Relaxed),
    );
    // The host's chat, a line every 2 s (its own budget), as the listener sees it; and what
    // the host refused when it checked it.
    type Times = Arc<parking_lot::Mutex<std::collections::HashMap<u32, Instant>>>;
    let (said, seen): (Times, Times) = Default::default();
    let rejected: Arc<parking_lot::Mutex<std::collections::HashMap<String, u64>>> = Arc::default();
    {
        let (mut events, seen) = (listener.subscribe(), seen.clone());
        tokio::spawn(async move {
            loop {
                match events.recv().await {
                    Ok(Event::Chat { room: r, text, .. }) if r == room => {
                        if let Some(n) = text.strip_prefix("probe ").and_then(|n| n.parse().ok()) {
                            seen.lock().entry(n).or_insert_with(Instant::now);
                        }
                    }
                    Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                    Err(_) => return,
                }
            }
        });
        let (mut events, rejected) = (host.subscribe(), rejected.clone());
        tokio::spawn(async move {
            loop {
                match events.recv().await {
                    Ok(Event::Rejected { from, .. }) => {
                        let from = from.map_or_else(|| "?".to_owned(), |p| p.to_string());
                        *rejected.lock().entry(from).or_default() += 1;
                    }
                    Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                    Err(_) => return,
                }
            }
        });
    }
    let chatting = {
        let (host, said) = (host.clone(), said.clone());
        tokio::spawn(async move {
            for n in 0u32.. {
                let at = Instant::now();
                let text = format!("probe {n}");
                if host.act(room, ControlBody::Chat { text }).await.is_ok() {
                    said.lock().insert(n, at);
                }
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
        })
    };
    let rss_before = rss_kb();
    let host_addr = descriptor
        .addrs()
        .into_iter()
        .find(|a| a.to_string().contains("quic"))
        .expect("a QUIC address");
    let mut child = std::process::Command::new(std::env::current_exe().expect("exe"))
        .args([
            "--attacker",
            &host.peer_id().to_string(),
            &host_addr.to_string(),
            "--connections",
            &connections.to_string(),
            "--batch",
            &batch.to_string(),
            "--addresses",
            &addresses.to_string(),
            "--speaker-link",
            &speaker_link.encode(),
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("the attacker starts");
    // Honest newcomers, one every 2 s while the attacker runs.
    let attacking = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let newcomers = {
        let (attacking, link) = (attacking.clone(), newcomer_link.clone());
        tokio::spawn(async move {
            let (mut joined, mut failed) = (0u32, Vec::new());
            while attacking.load(Ordering::Relaxed) {
                let node = spawn(
                    Identity::ephemeral().expect("identity"),
                    NetMetrics::default(),
                )
                .await;
                match tokio::time::timeout(Duration::from_secs(30), node.join(link.clone(), "new"))
                    .await
                {
                    Ok(Ok(_)) => joined += 1,
                    Ok(Err(err)) => failed.push(err.to_string()),
                    Err(_) => failed.push("no answer in 30 s".to_owned()),
                }
                node.shutdown().await;
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
            (joined, failed)
        })
    };
    let mut peak = rss_before;
    let mut peak_connections = 0;
    let started = Instant::now();
    let output = loop {
        peak = peak.max(rss_kb());
        peak_connections = peak_connections.max(host_metrics.connections.get());
        if let Ok(Some(_)) = child.try_wait() {
            break child.wait_with_output().expect("output");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let seconds = started.elapsed().as_secs_f64();
    attacking.store(false, Ordering::Relaxed);
    let (joined, join_failures) = newcomers.await.expect("newcomers");
    let (sent1, heard1) = (
        sent.load(Ordering::Relaxed),
        stats.received.load(Ordering::Relaxed),
    );
    let flooded = host_metrics.handling.snapshot().since(&quiet);
    speaking.abort();
    chatting.abort();
    let text = String::from_utf8_lossy(&output.stdout);
    let field = |name: &str| -> Vec<String> {
        text.lines()
            .find(|l| l.starts_with(name))
            .map(|l| l.split_whitespace().skip(1).map(str::to_owned).collect())
            .unwrap_or_default()
    };
    let (c, r, o, st, g) = (
        field("connections"),
        field("requests"),
        field("oversized"),
        field("streams"),
        field("gossip"),
    );
    let get = |v: &Vec<String>, i: usize| v.get(i).cloned().unwrap_or_else(|| "?".into());
    println!();
    println!(
        "A flood from {ATTACKER_IP} against a host speaking to a listener (both on 127.0.0.1, \
         one process; the attacker another), {seconds:.0} s"
    );
    println!();
    println!("| flood | tried | got | refused or failed |");
    println!("|---|---|---|---|");
    println!(
        "| connections, fresh keys, held open, from {} address(es) ({} s) | {} | {} seen established by the attacker | {} |",
        get(&c, 4),
        get(&c, 3),
        get(&c, 0),
        get(&c, 1),
        get(&c, 2)
    );
    println!(
        "| lobby requests, 4 connections × 16 in flight ({} s) | as fast as answered | {} answered | {} told busy, unread; {} failed |",
        get(&r, 2),
        get(&r, 0),
        get(&r, 3),
        get(&r, 1)
    );
    println!(
        "| joins of 64 KiB | {} | {} answered | {} refused unread |",
        get(&o, 0),
        get(&o, 1),
        get(&o, 2)
    );
    println!(
        "| audio streams that never say hello, 8 connections ({} s) | {} opened | {} closed by the host (after 5 s) | – |",
        get(&st, 2),
        get(&st, 0),
        get(&st, 1)
    );
    let refused_from = |i: usize| {
        g.get(i)
            .and_then(|peer| rejected.lock().get(peer).copied())
            .unwrap_or(0)
    };
    let over_budget = host_metrics.gossip_over_budget.get();
    let checked = g
        .first()
        .and_then(|n| n.parse::<u64>().ok())
        .map_or("?".to_owned(), |n| {
            n.saturating_sub(over_budget).to_string()
        });
    println!(
        "| gossip: a speaker's chat signed by its own key, every line new ({} s) | {} published | \
         {checked} checked by the host (past the author's budget: ignored, not forwarded), {} \
         refused | {over_budget} ignored unchecked (over the forwarding peer's budget) |",
        get(&g, 1),
        get(&g, 0),
        refused_from(4),
    );
    println!(
        "| gossip: a stranger's junk, 1 KiB, no link ({} s) | {} published | {} checked and \
         refused | the rest never checked (refused messages sink their sender's gossip score) |",
        get(&g, 3),
        get(&g, 2),
        refused_from(5),
    );
    println!();
    let (mut took, mut lost) = (Vec::new(), 0);
    {
        let (said, seen) = (said.lock(), seen.lock());
        for (n, at) in said.iter() {
            match seen.get(n) {
                Some(shown) => took.push(shown.duration_since(*at).as_secs_f64() * 1000.0),
                None => lost += 1,
            }
        }
    }
    took.sort_by(f64::total_cmp);
    let at = |q: f64| {
        took.get(((took.len() as f64 * q).ceil() as usize).clamp(1, took.len().max(1)) - 1)
            .map_or("–".to_owned(), |ms| format!("{ms:.0} ms"))
    };
    println!(
        "The host's chat, a line every 2 s, as the listener saw it: {} shown, {lost} lost \
         (the last one may still be on its way), p50 {}, p99 {}, max {}.",
        took.len(),
        at(0.5),
        at(0.99),
        at(1.0)
    );
    let delivered = (heard1 - heard0) as f64 / (sent1 - sent0).max(1) as f64 * 100.0;
    println!(
        "The listener heard {} of {} frames sent during the floods ({delivered:.2} %).",
        heard1 - heard0,
        sent1 - sent0
    );
    println!(
        "Honest newcomers during the floods (one every 2 s): {joined} joined, {} failed{}.",
        join_failures.len(),
        if join_failures.is_empty() {
            String::new()
        } else {
            format!(": {join_failures:?}")
        }
    );
    println!(
        "The host's connections at the peak: {peak_connections} (it keeps at most 4,096; past \
         64 from one address a connection is refused, and inbound ones past 4,032 take the \
         place of one from the busiest address or are refused)."
    );
    println!(
        "The host's process (host and listener): resident memory {} MB before, {} MB at the \
         peak (limit for new connections: 1024 MB).",
        rss_before / 1024,
        peak / 1024
    );
    let ms = |q| {
        flooded.quantile_us(q).map_or("> 5 s".to_owned(), |us| {
            format!("≤ {:.2} ms", us as f64 / 1000.0)
        })
    };
    println!(
        "The host's event loop during the floods: {} handled, p50 {}, p99 {}, max {:.1} ms.",
        flooded.count(),
        ms(0.5),
        ms(0.99),
        flooded.max_us as f64 / 1000.0
    );
}

fn main() {
    strangers::init_logs();
    let args: Vec<String> = std::env::args().collect();
    let connections = flag(&args, "--connections")
        .and_then(|v| v.parse().ok())
        .unwrap_or(3000);
    let batch = flag(&args, "--batch")
        .and_then(|v| v.parse().ok())
        .unwrap_or(100);
    let addresses = flag(&args, "--addresses")
        .and_then(|v| v.parse().ok())
        .unwrap_or(1);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    if let Some(i) = args.iter().position(|a| a == "--attacker") {
        let host: PeerId = args
            .get(i + 1)
            .and_then(|p| p.parse().ok())
            .expect("the host's peer id");
        let addr: Multiaddr = args
            .get(i + 2)
            .and_then(|a| a.parse().ok())
            .expect("the host's address");
        let speaker_link: InviteLink = flag(&args, "--speaker-link")
            .and_then(|l| l.parse().ok())
            .expect("a speaker link");
        runtime.block_on(attacker(
            host,
            addr,
            connections,
            batch,
            addresses,
            speaker_link,
        ));
        return;
    }
    runtime.block_on(host_side(connections, batch, addresses));
}
