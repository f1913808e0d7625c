//! Ten thousand strangers with a public room's link (issue 15, "Sybils inside a public room"):
//! a host, a speaker on its stage, honest listeners in its audience, and an attacker holding
//! thousands of fresh keys, all in one process over loopback. The attacker does what costs it
//! least and the room most:
//!
//! - **joins**: every key asks the host to join (each from a connection of its own, as the
//!   host requires: a minimal libp2p client per key, `--concurrency` at once, as fast as it is
//!   answered), and never takes the place it is given;
//! - **chat**: `--relays` attacker nodes sit in the audience and send chat up the tree signed
//!   by those keys, as fast as their parents take it.
//!
//! Meanwhile the honest members chat (the speaker every 2 s, one listener every 12 s: what
//! their budgets allow) and newcomers join every few seconds. It prints the host's event-loop
//! handling times (p50, p99, max: `earshot_event_loop_handling_seconds`) before and during
//! the flood, what became of the attacker's joins, how long honest newcomers took to get in,
//! and how long honest chat took to reach every honest member (p50, p99, lost).
//!
//! `cargo bench -p earshot-node --bench sybil_room` (add `-- --sybils 10000 --relays 10
//! --concurrency 64 --listeners 4`). Targets: the room stays joinable, the host's p99 ≤ 50 ms,
//! honest chat p99 ≤ 500 ms.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use earshot_node::event::Event;
use earshot_node::identity::Identity;
use earshot_node::metrics::{Handled, NetMetrics};
use earshot_node::net::NetConfig;
use earshot_node::node::Node;
use earshot_protocol::envelope::{Authority, Envelope};
use earshot_protocol::snapshot::{Refusal, RoomRequest, RoomResponse};
use earshot_protocol::{Capability, ControlBody, InviteLink, Role, RoomId};
use futures::StreamExt;
use libp2p::request_response;
use libp2p::swarm::SwarmEvent;
use libp2p::{Multiaddr, PeerId};
use parking_lot::Mutex;

mod strangers;

struct Args {
    sybils: usize,
    relays: usize,
    listeners: usize,
    concurrency: usize,
    chat_per_relay: u32,
    grace: u64,
    quiet: u64,
}

fn args() -> Args {
    let args: Vec<String> = std::env::args().collect();
    let value = |flag: &str, default: usize| {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    Args {
        sybils: value("--sybils", 10_000),
        relays: value("--relays", 10),
        listeners: value("--listeners", 4),
        concurrency: value("--concurrency", 64),
        chat_per_relay: u32::try_from(value("--chat-per-relay", 50)).unwrap_or(50),
        grace: value("--grace", 5) as u64,
        // The room runs this long before the raid (past `tenure::SETTLED`, as a room raided
        // once it is under way).
        quiet: value("--quiet", 40) as u64,
    }
}

/// A node on 127.0.0.1. Hundreds of them share that address: per-address limits are off
/// (they stand for many addresses).
async fn spawn(metrics: NetMetrics) -> Node {
    spawn_as(Identity::ephemeral().expect("identity"), metrics).await
}

async fn spawn_as(identity: Identity, metrics: NetMetrics) -> Node {
    let net = NetConfig {
        per_address: None,
        metrics,
        ..NetConfig::default()
    };
    strangers::spawn(identity, net).await
}

/// What became of the attacker's joins.
#[derive(Default)]
struct Outcomes {
    admitted: AtomicU64,
    busy: AtomicU64,
    full: AtomicU64,
    other: AtomicU64,
    failed: AtomicU64,
}

/// One throwaway key asks to join, from a connection of its own; returns the host's answer.
async fn sybil_join(
    seed: [u8; 32],
    room: RoomId,
    capability: &Capability,
    host: PeerId,
    addrs: &[Multiaddr],
) -> Option<RoomResponse> {
    let key = ed25519_dalek::SigningKey::from_bytes(&seed);
    let keypair = libp2p::identity::Keypair::ed25519_from_bytes(seed).ok()?;
    let mut swarm = strangers::room_client(keypair, None).await?;
    let join = Envelope::sign(
        &key,
        room,
        1,
        earshot_node::clock::now(),
        Authority::Capability(capability.clone()),
        ControlBody::Join {
            name: "sybil".into(),
        },
    )
    .ok()?;
    swarm.behaviour_mut().send_request_with_addresses(
        &host,
        RoomRequest::Join {
            envelope: serde_bytes::ByteBuf::from(join.encode()),
        },
        addrs.to_vec(),
    );
    let answer = tokio::time::timeout(Duration::from_secs(15), async {
        loop {
            match swarm.select_next_some().await {
                SwarmEvent::Behaviour(request_response::Event::Message {
                    message: request_response::Message::Response { response, .. },
                    ..
                }) => return Some(response),
                SwarmEvent::Behaviour(request_response::Event::OutboundFailure { .. }) => {
                    return None;
                }
                _ => {}
            }
        }
    })
    .await;
    answer.ok().flatten()
}

/// A chat line seen by an honest member: (probe, member) → when.
type Seen = Arc<Mutex<HashMap<(String, usize), Instant>>>;

/// Events the honest members' watchers missed (their node's event channel ran past them): a
/// line counted lost may be one of these, not lost in the room.
static LAGGED: AtomicU64 = AtomicU64::new(0);

/// Notices the honest members were given (why an action of theirs was refused), by member.
static NOTICES: Mutex<Vec<(usize, String)>> = Mutex::new(Vec::new());

fn watch(node: &Node, member: usize, room: RoomId, seen: Seen) {
    let mut events = node.subscribe();
    tokio::spawn(async move {
        loop {
            match events.recv().await {
                Ok(Event::Chat { room: r, text, .. }) if r == room && text.starts_with("probe") => {
                    seen.lock()
                        .entry((text, member))
                        .or_insert_with(Instant::now);
                }
                Ok(Event::Notice { room: r, text }) if r == room => {
                    NOTICES.lock().push((member, text));
                }
                Ok(_) => {}
                Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                    LAGGED.fetch_add(n, Ordering::Relaxed);
                }
                Err(_) => return,
            }
        }
    });
}

fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

fn handled_row(name: &str, handled: &Handled) {
    let ms = |q| {
        handled.quantile_us(q).map_or("> 5 s".to_owned(), |us| {
            format!("≤ {:.2}", us as f64 / 1000.0)
        })
    };
    println!(
        "| {name:<22} | {:>9} | {:>9} | {:>9} | {:>9.1} |",
        handled.count(),
        ms(0.5),
        ms(0.99),
        handled.max_us as f64 / 1000.0
    );
}

async fn run(args: Args) {
    let host_metrics = NetMetrics::default();
    let identity = Identity::ephemeral().expect("identity");
    let host_identity_key = identity.signing_key().clone();
    let host = spawn_as(identity, host_metrics.clone()).await;
    let descriptor =
        strangers::public_room(&host, &host_identity_key, 0x5b, "Ten thousand strangers").await;
    let room = descriptor.id;
    let listener_link = strangers::invite(&host_identity_key, &descriptor, Role::Listener);
    let speaker_link = strangers::invite(&host_identity_key, &descriptor, Role::Speaker);
    let seen: Seen = Arc::default();
    let mut honest = vec![host.clone()];
    let speaker = spawn(NetMetrics::default()).await;
    speaker
        .join(speaker_link, "sam")
        .await
        .expect("speaker joins");
    honest.push(speaker.clone());
    for i in 0..args.listeners {
        let node = spawn(NetMetrics::default()).await;
        node.join(listener_link.clone(), &format!("listener {i}"))
            .await
            .expect("listener joins");
        honest.push(node);
    }
    for (i, node) in honest.iter().enumerate() {
        watch(node, i, room, seen.clone());
    }
    eprintln!("room up: host, a speaker, {} listeners", args.listeners);
    tokio::time::sleep(Duration::from_secs(3)).await;

    // Honest chat: the speaker every 2 s, listener 0 every 12 s (within their budgets).
    let sent: Arc<Mutex<Vec<(String, Instant, usize)>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let chatter = {
        let (speaker, listener) = (speaker.clone(), honest[2].clone());
        let (sent, stop) = (sent.clone(), stop.clone());
        tokio::spawn(async move {
            for n in 0u32.. {
                if stop.load(Ordering::Relaxed) {
                    return;
                }
                let text = format!("probe stage {n}");
                let at = Instant::now();
                if speaker
                    .act(room, ControlBody::Chat { text: text.clone() })
                    .await
                    .is_ok()
                {
                    sent.lock().push((text, at, 1));
                }
                if n % 6 == 0 {
                    let text = format!("probe audience {n}");
                    let at = Instant::now();
                    if listener
                        .act(room, ControlBody::Chat { text: text.clone() })
                        .await
                        .is_ok()
                    {
                        sent.lock().push((text, at, 2));
                    }
                }
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
        })
    };
    tokio::time::sleep(Duration::from_secs(args.quiet)).await;
    let quiet = host_metrics.handling.snapshot();
    let quiet_sent = sent.lock().len();

    // The flood, from an attacker process of its own (niced: the attacker's machines are not
    // the room's; here they share two cores).
    eprintln!(
        "flood: {} keys join, {} relays chat",
        args.sybils, args.relays
    );
    let started = Instant::now();
    let mut attacker = std::process::Command::new("nice")
        .args(["-n", "19"])
        .arg(std::env::current_exe().expect("exe"))
        .args([
            "--attacker",
            &listener_link.encode(),
            "--sybils",
            &args.sybils.to_string(),
            "--relays",
            &args.relays.to_string(),
            "--concurrency",
            &args.concurrency.to_string(),
            "--chat-per-relay",
            &args.chat_per_relay.to_string(),
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("the attacker starts");
    let attacking = Arc::new(AtomicBool::new(true));
    // The host's capacity in the tree, each second of the flood (the places it offers).
    let capacities = {
        let (host, attacking) = (host.clone(), attacking.clone());
        tokio::spawn(async move {
            let mut seen = Vec::new();
            while attacking.load(Ordering::Relaxed) {
                if let Some(stats) = host.fanout().stats(&room) {
                    seen.push(stats.capacity());
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            seen
        })
    };
    // Honest newcomers, one every 3 s while the flood lasts.
    let newcomers = {
        let link = listener_link.clone();
        let attacking = attacking.clone();
        tokio::spawn(async move {
            let mut times = Vec::new();
            let mut failed = Vec::new();
            loop {
                if !attacking.load(Ordering::Relaxed) {
                    return (times, failed);
                }
                let node = spawn(NetMetrics::default()).await;
                let at = Instant::now();
                match node.join(link.clone(), "newcomer").await {
                    Ok(_) => times.push(at.elapsed().as_secs_f64() * 1000.0),
                    Err(err) => failed.push(err.to_string()),
                }
                node.shutdown().await;
                tokio::time::sleep(Duration::from_secs(3)).await;
            }
        })
    };
    let output = loop {
        if let Ok(Some(_)) = attacker.try_wait() {
            break attacker.wait_with_output().expect("the attacker's output");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    attacking.store(false, Ordering::Relaxed);
    let flood_secs = started.elapsed().as_secs_f64();
    let flooded = host_metrics.handling.snapshot().since(&quiet);
    let flood_sent = sent.lock().len();
    let (join_times, join_failures) = newcomers.await.expect("newcomers");
    // Chat sent during the flood has `--grace` seconds (5) to arrive.
    tokio::time::sleep(Duration::from_secs(args.grace)).await;
    stop.store(true, Ordering::Relaxed);
    let _ = chatter.await;

    // Latencies: every probe sent in the flood, to every honest member but its sender.
    let seen = seen.lock().clone();
    let sent = sent.lock().clone();
    let latencies = |range: std::ops::Range<usize>, kind: &str| {
        let mut ms = Vec::new();
        let mut lost = 0;
        for (text, at, from) in &sent[range] {
            if !text.contains(kind) {
                continue;
            }
            for member in 0..honest.len() {
                if member == *from {
                    continue;
                }
                match seen.get(&(text.clone(), member)) {
                    Some(when) => {
                        ms.push(when.saturating_duration_since(*at).as_secs_f64() * 1000.0)
                    }
                    None => lost += 1,
                }
            }
        }
        ms.sort_by(f64::total_cmp);
        (ms, lost)
    };
    println!();
    println!(
        "Sybils in a public room: one process on this machine, a host, a speaker, {} listeners, \
         {} attacker relays in the audience; {} throwaway keys joining ({} at once), the relays \
         sending chat signed by them ({} lines/s each)",
        args.listeners, args.relays, args.sybils, args.concurrency, args.chat_per_relay
    );
    println!();
    println!("The host's event loop (handling time per event, command or tick, ms):");
    println!();
    println!(
        "| {:<22} | {:>9} | {:>9} | {:>9} | {:>9} |",
        "phase", "handled", "p50", "p99", "max"
    );
    println!(
        "|{}|{}|{}|{}|{}|",
        "-".repeat(24),
        "-".repeat(11),
        "-".repeat(11),
        "-".repeat(11),
        "-".repeat(11)
    );
    handled_row(&format!("quiet ({} s)", args.quiet), &quiet);
    handled_row(&format!("flood ({flood_secs:.0} s)"), &flooded);
    println!();
    let report = String::from_utf8_lossy(&output.stdout);
    let counts: Vec<&str> = report
        .lines()
        .find_map(|line| line.strip_prefix("attack "))
        .map(|rest| rest.split_whitespace().collect())
        .unwrap_or_default();
    let count = |i: usize| counts.get(i).copied().unwrap_or("?");
    println!(
        "The attacker's joins: {} in {} s: {} admitted, {} told the host is busy, {} told the \
         room is full, {} other refusals, {} unanswered; its chat: {} lines sent up",
        args.sybils,
        count(6),
        count(0),
        count(1),
        count(2),
        count(3),
        count(4),
        count(5)
    );
    let mut join_times = join_times;
    join_times.sort_by(f64::total_cmp);
    println!(
        "Honest newcomers during the flood: {} joined (p50 {:.0} ms, max {:.0} ms), {} failed{}",
        join_times.len(),
        quantile(&join_times, 0.5),
        join_times.last().copied().unwrap_or(f64::NAN),
        join_failures.len(),
        if join_failures.is_empty() {
            String::new()
        } else {
            format!(": {join_failures:?}")
        }
    );
    let places: Vec<String> = honest[2..]
        .iter()
        .map(|node| {
            node.tree(&room).map_or("-".to_owned(), |info| {
                format!("depth {} ({} children)", info.depth, info.children.len())
            })
        })
        .collect();
    let capacities = capacities.await.unwrap_or_default();
    let known: Vec<u16> = capacities.iter().flatten().copied().collect();
    println!(
        "The host's capacity in the flood (places it offers, each second): least {:?}, most {:?}, \
         below its first in {} of {} seconds",
        known.iter().min(),
        known.iter().max(),
        known
            .iter()
            .filter(|c| known.first().is_some_and(|first| *c < first))
            .count(),
        known.len()
    );
    println!(
        "The honest listeners' places after the flood: {}; the host's children: {}",
        places.join(", "),
        host.tree(&room).map_or(0, |info| info.children.len())
    );
    // Who missed what, in the flood (0: the host, 1: the speaker, then the listeners).
    let mut missed = vec![0usize; honest.len()];
    for (text, _, from) in &sent[quiet_sent..flood_sent] {
        for (member, count) in missed.iter_mut().enumerate() {
            if member != *from && !seen.contains_key(&(text.clone(), member)) {
                *count += 1;
            }
        }
    }
    println!("Lines missed in the flood, by member (host, speaker, listeners…): {missed:?}");
    println!(
        "Notices to the honest members (member, why an action was refused): {:?}",
        NOTICES.lock()
    );
    println!();
    println!(
        "Events the members' watchers missed (a line missed may be one of them): {}",
        LAGGED.load(Ordering::Relaxed)
    );
    println!("Honest chat, from sending to shown at every other honest member (ms):");
    println!();
    println!(
        "| {:<28} | {:>6} | {:>7} | {:>7} | {:>7} | {:>5} |",
        "chat", "shown", "p50", "p99", "max", "lost"
    );
    println!(
        "|{}|{}|{}|{}|{}|{}|",
        "-".repeat(30),
        "-".repeat(8),
        "-".repeat(9),
        "-".repeat(9),
        "-".repeat(9),
        "-".repeat(7)
    );
    for (name, range, kind) in [
        ("stage, quiet", 0..quiet_sent, "stage"),
        ("stage, in the flood", quiet_sent..flood_sent, "stage"),
        ("audience, quiet", 0..quiet_sent, "audience"),
        ("audience, in the flood", quiet_sent..flood_sent, "audience"),
    ] {
        let (ms, lost) = latencies(range, kind);
        println!(
            "| {:<28} | {:>6} | {:>7.0} | {:>7.0} | {:>7.0} | {:>5} |",
            name,
            ms.len(),
            quantile(&ms, 0.5),
            quantile(&ms, 0.99),
            ms.last().copied().unwrap_or(f64::NAN),
            lost
        );
    }
}

/// The attacker's process: `--sybils` keys join, `--relays` nodes of its own in the audience
/// send chat signed by them; prints `attack ADMITTED BUSY FULL OTHER UNANSWERED LINES SECONDS`.
async fn attack(args: Args, listener_link: InviteLink) {
    let room = listener_link.capability.room;
    let mut relays = Vec::new();
    for i in 0..args.relays {
        let node = spawn(NetMetrics::default()).await;
        if node
            .join(listener_link.clone(), &format!("relay {i}"))
            .await
            .is_ok()
        {
            relays.push(node);
        }
    }
    let Ok(host_peer) = listener_link.host.to_peer_id() else {
        return;
    };
    let host_addrs = listener_link.bootstrap.clone();
    // The flood.
    let outcomes = Arc::new(Outcomes::default());
    let next = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..args.concurrency {
        let (outcomes, next) = (outcomes.clone(), next.clone());
        let capability = listener_link.capability.clone();
        let addrs = host_addrs.clone();
        let total = args.sybils as u64;
        workers.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= total {
                    return;
                }
                let mut seed = [0x51u8; 32];
                seed[..8].copy_from_slice(&i.to_be_bytes());
                let counter = match sybil_join(seed, room, &capability, host_peer, &addrs).await {
                    Some(RoomResponse::Admitted { .. }) => &outcomes.admitted,
                    Some(RoomResponse::Refused {
                        refusal: Refusal::Busy,
                    }) => &outcomes.busy,
                    Some(RoomResponse::Refused {
                        refusal: Refusal::Full { .. },
                    }) => &outcomes.full,
                    Some(_) => &outcomes.other,
                    None => &outcomes.failed,
                };
                counter.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    let chatting = Arc::new(AtomicBool::new(true));
    let sybil_lines = Arc::new(AtomicU64::new(0));
    for (r, relay) in relays.iter().enumerate() {
        let (relay, chatting, lines) = (relay.clone(), chatting.clone(), sybil_lines.clone());
        let capability = listener_link.capability.clone();
        let every = Duration::from_secs(1) / args.chat_per_relay.max(1);
        let keys = args.sybils.max(1) as u64;
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            for n in 0u64.. {
                tick.tick().await;
                if !chatting.load(Ordering::Relaxed) {
                    return;
                }
                let i = (n * 31 + r as u64) % keys;
                let mut seed = [0x51u8; 32];
                seed[..8].copy_from_slice(&i.to_be_bytes());
                let key = ed25519_dalek::SigningKey::from_bytes(&seed);
                let Ok(line) = Envelope::sign(
                    &key,
                    room,
                    n + 2,
                    earshot_node::clock::now(),
                    Authority::Capability(capability.clone()),
                    ControlBody::Chat {
                        text: format!("buy followers {n}"),
                    },
                ) else {
                    continue;
                };
                if relay.send_up_raw(room, line.encode()).await.is_err() {
                    return;
                }
                lines.fetch_add(1, Ordering::Relaxed);
            }
        });
    }
    let mut last = Instant::now();
    for worker in workers {
        let _ = worker.await;
        if last.elapsed() > Duration::from_secs(2) {
            last = Instant::now();
            eprint!(
                "\r{} of {} asked, {:.0} s",
                next.load(Ordering::Relaxed).min(args.sybils as u64),
                args.sybils,
                started.elapsed().as_secs_f64()
            );
        }
    }
    let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
    chatting.store(false, Ordering::Relaxed);
    println!(
        "attack {} {} {} {} {} {} {:.0}",
        load(&outcomes.admitted),
        load(&outcomes.busy),
        load(&outcomes.full),
        load(&outcomes.other),
        load(&outcomes.failed),
        sybil_lines.load(Ordering::Relaxed),
        started.elapsed().as_secs_f64()
    );
    for relay in relays {
        relay.shutdown().await;
    }
}

fn main() {
    strangers::init_logs();
    let args = args();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let argv: Vec<String> = std::env::args().collect();
    if let Some(i) = argv.iter().position(|a| a == "--attacker") {
        let link = argv
            .get(i + 1)
            .and_then(|text| InviteLink::decode(text).ok())
            .expect("--attacker LINK");
        runtime.block_on(attack(args, link));
        return;
    }
    runtime.block_on(run(args));
}
