//! `earshot relay`, the community relay: its configuration, a host reachable only through it,
//! its metrics, and a clean stop on SIGTERM.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use earshot_node::Event;
use earshot_node::reachability::Reachability;
use earshot_protocol::InviteLink;

use crate::harness::{TestHome, code, stderr};
use crate::live::{LOCAL, Live, missing, tone_host};

/// `GET /metrics` from `url` (`http://ADDR/metrics`): the sample lines by name.
fn scrape(url: &str) -> std::collections::HashMap<String, f64> {
    let addr = url
        .trim_start_matches("http://")
        .trim_end_matches("/metrics");
    let mut stream = TcpStream::connect(addr).expect("connect to the metrics endpoint");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    write!(
        stream,
        "GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .expect("request");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("response");
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    response
        .lines()
        .filter(|line| line.starts_with("earshot_"))
        .filter_map(|line| {
            let (name, value) = line.split_once(' ')?;
            Some((name.to_owned(), value.trim().parse().ok()?))
        })
        .collect()
}

/// A running `earshot relay` on 127.0.0.1, and what it printed as it started.
struct Relay {
    live: Live,
    addr: String,
    peer_id: String,
    metrics: String,
}

/// Starts `earshot relay` on 127.0.0.1 with metrics, and with `config` (TOML) if given.
fn start_relay(operator: &TestHome, config: Option<&str>) -> Relay {
    let mut args = vec!["relay", "--listen", LOCAL, "--metrics", "127.0.0.1:0"];
    let file = operator.join("relay.toml");
    let file = file.to_str().expect("utf-8 path").to_owned();
    if let Some(config) = config {
        std::fs::write(&file, config).expect("write the config");
        args.extend(["--config", &file]);
    }
    let mut live = Live::start("relay", operator, &args);
    let (addr, peer_id, metrics) = live.expect_map("relay", |e| match e {
        Event::Relay {
            peer_id,
            addrs,
            metrics,
        } => Some((
            addrs.first().expect("an address").to_string(),
            peer_id.to_string(),
            metrics.clone().unwrap_or_default(),
        )),
        _ => None,
    });
    Relay {
        addr,
        peer_id,
        metrics,
        live,
    }
}

/// Stops the relay with SIGTERM.
fn sigterm(relay: &Live) {
    let status = std::process::Command::new("kill")
        .args(["-TERM", &relay.child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
}

/// A host of a new room on 127.0.0.1 that feeds one child itself and asks the relay at
/// `relay_addr` to carry the room; returns once the relay carries it, with the listener link.
fn host_carried_by(
    ana: &TestHome,
    title: &str,
    relay_addr: &str,
    relay: &mut Live,
) -> (Live, String) {
    let room = crate::live::local_room(ana, title);
    let mut host = tone_host(ana, &room, &["--max-children", "1", "--relay", relay_addr]);
    let link = host.listener_link();
    host.expect("relay_added", |e| matches!(e, Event::RelayAdded { .. }));
    relay.expect("carrying", |e| matches!(e, Event::Carrying { .. }));
    (host, link)
}

/// Waits for `audio_attached` and returns the parent (its PeerId).
fn attached_parent(live: &mut Live, what: &str) -> String {
    live.expect_map(what, |e| match e {
        Event::AudioAttached { parent, .. } => Some(parent.to_string()),
        _ => None,
    })
}

/// Scrapes until `ready` holds (the relay refreshes its figures twice a second), or fails.
fn scrape_until(
    url: &str,
    what: &str,
    ready: impl Fn(&std::collections::HashMap<String, f64>) -> bool,
) -> std::collections::HashMap<String, f64> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let seen = scrape(url);
        if ready(&seen) {
            return seen;
        }
        assert!(
            Instant::now() < deadline,
            "metrics never showed {what}: {seen:?}"
        );
    }
}

#[test]
fn the_relay_prints_its_configuration_and_refuses_a_bad_one() {
    let home = TestHome::new();
    let printed = home.ok(&["relay", "--print-config"]);
    assert!(printed.contains("circuit_duration"), "{printed}");
    // What it prints is a configuration it reads back unchanged.
    let file = home.join("relay.toml");
    std::fs::write(&file, &printed).expect("write");
    let again = home.ok(&[
        "relay",
        "--config",
        file.to_str().expect("utf-8 path"),
        "--print-config",
    ]);
    assert_eq!(printed, again);

    std::fs::write(&file, "max_circuits = 0\n").expect("write");
    let output = home.run(&["relay", "--config", file.to_str().expect("utf-8 path")]);
    assert_eq!(code(&output), 1);
    assert!(
        stderr(&output).contains("max_circuits"),
        "{}",
        stderr(&output)
    );
    std::fs::write(&file, "no_such_setting = 1\n").expect("write");
    let output = home.run(&["relay", "--config", file.to_str().expect("utf-8 path")]);
    assert_eq!(code(&output), 1);
    assert!(
        stderr(&output).contains("no_such_setting"),
        "{}",
        stderr(&output)
    );
}

/// A host that listens only through the relay (a `/p2p-circuit` address, as a node behind a
/// NAT would) is reached through it: a listener joins with the link and hears the host. The
/// relay's metrics count the reservation and the circuit; SIGTERM stops it cleanly.
#[test]
fn a_host_behind_the_relay_is_reached_through_it() {
    let operator = TestHome::new();
    let relay = start_relay(&operator, None);
    let metrics = relay.metrics.clone();

    let ana = TestHome::new();
    let circuit = format!("{}/p2p-circuit", relay.addr);
    let room = ana.json(&["room", "new", "Behind a NAT", "--listen", &circuit])["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let mut host = tone_host(&ana, &room, &[]);
    let (addrs, link) = host.expect_map("hosting", |e| match e {
        Event::Hosting {
            addrs,
            listener_link,
            ..
        } => Some((addrs.clone(), listener_link.to_string())),
        _ => None,
    });
    assert!(
        addrs
            .iter()
            .all(|a| a.to_string().contains("/p2p-circuit/")),
        "the host is reachable only through the relay: {addrs:?}"
    );

    let bea = TestHome::new();
    let mut listener = crate::live::listener("bea", &bea, &link, &[]);
    listener.expect("joined", |e| matches!(e, Event::Joined { .. }));
    listener.expect_stats("two seconds of audio", |s| s.delivered >= 100);

    let seen = scrape_until(&metrics, "the circuit", |seen| {
        seen.get("earshot_relay_circuits_total")
            .is_some_and(|n| *n >= 1.0)
    });
    assert_eq!(
        seen.get("earshot_relay_reservations_open"),
        Some(&1.0),
        "{seen:?}"
    );
    assert!(
        seen.get("earshot_relay_circuits_total")
            .is_some_and(|n| *n >= 1.0),
        "{seen:?}"
    );
    assert!(
        seen.get("earshot_peers").is_some_and(|n| *n >= 2.0),
        "{seen:?}"
    );

    host.say("/end");
    assert_eq!(listener.exit_code(), 0);
    assert_eq!(host.exit_code(), 0);

    // SIGTERM: the relay says it stopped and exits 0, promptly.
    let mut relay = relay.live;
    let stopping = Instant::now();
    sigterm(&relay);
    relay.expect("stopped", |e| matches!(e, Event::Stopped));
    assert_eq!(relay.exit_code(), 0);
    assert!(
        stopping.elapsed() < Duration::from_secs(10),
        "stopped after {:?}",
        stopping.elapsed()
    );
}

/// A host asks the relay to carry its room: the relay joins the tree with a large capacity and
/// feeds the listeners, up to its per-room limit (past it, a joiner is placed under another
/// listener and still hears the room). Killed, the relay's listeners re-attach and the audio
/// goes on.
#[test]
fn the_relay_carries_a_room_and_the_tree_reforms_without_it() {
    let operator = TestHome::new();
    let Relay {
        live: mut relay,
        addr: relay_addr,
        peer_id: relay_id,
        metrics,
    } = start_relay(&operator, Some("max_children_per_room = 2\n"));

    let ana = TestHome::new();
    let (mut host, link) = host_carried_by(&ana, "Big room", &relay_addr, &mut relay);

    let homes = [TestHome::new(), TestHome::new(), TestHome::new()];
    let mut listeners = Vec::new();
    for (i, home) in homes.iter().enumerate() {
        let name = ["l1", "l2", "l3"][i];
        let mut live = crate::live::listener(name, home, &link, &["--max-children", "1"]);
        let parent = attached_parent(&mut live, "audio_attached");
        listeners.push((live, parent));
    }
    // The host fed only the relay; the relay took two listeners, the third went under one of
    // them.
    let under_relay = listeners
        .iter()
        .filter(|(_, parent)| *parent == relay_id)
        .count();
    assert_eq!(
        under_relay,
        2,
        "parents {:?}, the relay {relay_id}",
        listeners.iter().map(|l| &l.1).collect::<Vec<_>>()
    );
    for (live, _) in &mut listeners {
        live.expect_stats("a second of audio", |s| s.delivered >= 50);
    }
    let seen = scrape_until(&metrics, "the frames forwarded", |seen| {
        seen.get("earshot_frames_forwarded_total")
            .is_some_and(|n| *n >= 50.0)
    });
    assert_eq!(seen.get("earshot_rooms"), Some(&1.0), "{seen:?}");
    assert_eq!(seen.get("earshot_children"), Some(&2.0), "{seen:?}");
    assert!(
        seen.get("earshot_frames_forwarded_total")
            .is_some_and(|n| *n >= 50.0),
        "{seen:?}"
    );
    // Two children of a 32 kbit/s room: each frame (about 100 bytes with its length) goes
    // out twice, 50 times a second, about 80 kbit/s in all.
    let seen = scrape_until(&metrics, "the upload rate", |seen| {
        seen.get("earshot_frames_forwarded_total")
            .is_some_and(|n| *n >= 200.0)
    });
    let frames = seen["earshot_frames_forwarded_total"];
    let bytes = seen["earshot_bytes_forwarded_total"];
    assert!(
        bytes > frames * 2.0 * 40.0 && bytes < frames * 2.0 * 300.0,
        "{bytes} bytes for {frames} frames to two children: {seen:?}"
    );
    let kbps = seen["earshot_upload_kbps"];
    assert!(
        (30.0..250.0).contains(&kbps),
        "upload {kbps} kbit/s: {seen:?}"
    );

    // The relay dies: its listeners find other parents and keep hearing the room.
    relay.child.kill().expect("kill the relay");
    let _ = relay.child.wait();
    for (live, parent) in &mut listeners {
        if *parent != relay_id {
            continue;
        }
        let moved = attached_parent(live, "re-attached");
        assert_ne!(moved, relay_id);
        let before = live.expect_stats("audio stats", |_| true).delivered;
        live.expect_stats("audio again", |s| s.delivered >= before + 50);
    }
    host.say("/end");
    for (live, _) in listeners {
        assert_eq!(live.exit_code(), 0);
    }
    assert_eq!(host.exit_code(), 0);
}

/// The host's link names the relay carrying the room as an entry point. A listener whose link
/// names nothing else (it cannot reach the host at all) joins through the relay, is placed under
/// it, hears the room, and is counted by the host (its arrival came up the tree).
#[test]
fn a_listener_joins_through_the_relay_the_link_names() {
    let operator = TestHome::new();
    let Relay {
        live: mut relay,
        addr: relay_addr,
        peer_id: relay_id,
        ..
    } = start_relay(&operator, None);
    let ana = TestHome::new();
    let (mut host, link) = host_carried_by(&ana, "Entry", &relay_addr, &mut relay);
    let mut link = InviteLink::decode(&link).expect("the host's link");
    let named = |addr: &multiaddr::Multiaddr| {
        earshot_protocol::addr::peer_of(addr).is_some_and(|peer| peer.to_string() == relay_id)
    };
    assert!(
        link.bootstrap.iter().any(named),
        "the link names the relay: {:?}",
        link.bootstrap
    );
    link.bootstrap.retain(named);
    // The relay in the tree (the host counts it) before anyone joins through it.
    host.expect("the relay in the audience", |e| {
        matches!(e, Event::Audience { listeners: 1, .. })
    });
    let joe = TestHome::new();
    let mut live = crate::live::listener("joe", &joe, &link.encode(), &[]);
    assert_eq!(attached_parent(&mut live, "audio_attached"), relay_id);
    live.expect_stats("a second of audio", |s| s.delivered >= 50);
    host.expect("joe counted", |e| {
        matches!(e, Event::Audience { listeners: 2, .. })
    });
    host.say("/end");
    assert_eq!(live.exit_code(), 0);
    assert_eq!(host.exit_code(), 0);
}

/// Stopped with SIGTERM, a relay carrying a room hands its listeners over first: each is told,
/// moves, and misses no frame; the relay exits 0.
#[test]
fn a_relay_stopped_with_sigterm_hands_its_listeners_over() {
    let operator = TestHome::new();
    let Relay {
        live: mut relay,
        addr: relay_addr,
        peer_id: relay_id,
        ..
    } = start_relay(&operator, None);

    let ana = TestHome::new();
    let (mut host, link) = host_carried_by(&ana, "Evening", &relay_addr, &mut relay);
    let homes = [TestHome::new(), TestHome::new()];
    let mut listeners = Vec::new();
    for (i, home) in homes.iter().enumerate() {
        let name = ["l1", "l2"][i];
        let mut live = crate::live::listener(name, home, &link, &[]);
        let parent = attached_parent(&mut live, "audio_attached");
        assert_eq!(parent, relay_id);
        listeners.push(live);
    }
    let mut before = Vec::new();
    for live in &mut listeners {
        before.push(live.expect_stats("a second of audio", |s| s.delivered >= 50));
    }

    sigterm(&relay);
    for (live, before) in listeners.iter_mut().zip(&before) {
        let lost = live.expect("told the relay is leaving", |e| {
            matches!(e, Event::AudioLost { .. })
        });
        assert!(
            matches!(lost, Event::AudioLost { leaving: true, .. }),
            "{lost:?}"
        );
        let moved = attached_parent(live, "moved");
        assert_ne!(moved, relay_id);
        let after = live.expect_stats("more audio", |s| s.delivered >= before.delivered + 50);
        assert_eq!(
            missing(&after),
            missing(before),
            "frames lost in the hand-over: before {before:?}, after {after:?}"
        );
    }
    relay.expect("stopped", |e| matches!(e, Event::Stopped));
    assert_eq!(relay.exit_code(), 0);
    host.say("/end");
    for live in listeners {
        assert_eq!(live.exit_code(), 0);
    }
    assert_eq!(host.exit_code(), 0);
}

/// Nodes behind a NAT reserve a slot on a relay (`--via`): the host's links put the relayed
/// address first, and a listener (which children may need to reach) is reachable through it too.
#[test]
fn nodes_reserve_a_slot_on_a_relay_and_advertise_it() {
    let operator = TestHome::new();
    // Bound, not `..`: a dropped `Live` kills its process.
    let Relay {
        live: _relay,
        addr: relay_addr,
        metrics,
        ..
    } = start_relay(&operator, None);

    let ana = TestHome::new();
    let room = crate::live::local_room(&ana, "Porch");
    let mut host = tone_host(&ana, &room, &["--via", &relay_addr]);
    let link = host.listener_link();
    let inspected = ana.json(&["invite", "inspect", &link]);
    let first = inspected["bootstrap"][0].as_str().unwrap_or_default();
    assert!(
        first.starts_with(&relay_addr) && first.contains("/p2p-circuit"),
        "the relayed address comes first: {inspected}"
    );

    let bea = TestHome::new();
    let mut listener = crate::live::listener("bea", &bea, &link, &["--via", relay_addr.as_str()]);
    listener.expect_stats("audio", |s| s.delivered >= 50);
    // The host and the listener each hold a reservation.
    scrape_until(&metrics, "two reservations", |seen| {
        seen.get("earshot_relay_reservations_open") == Some(&2.0)
    });
    host.say("/end");
    assert_eq!(listener.exit_code(), 0);
    assert_eq!(host.exit_code(), 0);
}

/// A relay over its memory limit refuses new connections politely: a node asking it for a slot
/// is told it could not get one, and the relay keeps running.
#[test]
fn a_relay_over_its_memory_limit_refuses_new_peers() {
    let operator = TestHome::new();
    // Less than any process uses: every new connection is over the limit.
    let Relay {
        live: mut relay,
        addr: relay_addr,
        ..
    } = start_relay(&operator, Some("memory_limit = \"1MiB\"\n"));
    let ana = TestHome::new();
    let room = crate::live::local_room(&ana, "Crowded");
    let output = ana.run(&["host", &room, "--via", &relay_addr]);
    assert_eq!(code(&output), 1, "{}", stderr(&output));
    assert!(
        stderr(&output).contains("p2p-circuit"),
        "the refused relayed address is named: {}",
        stderr(&output)
    );
    // Still running: it stops cleanly.
    sigterm(&relay);
    relay.expect("stopped", |e| matches!(e, Event::Stopped));
    assert_eq!(relay.exit_code(), 0);
}

/// A host behind a router (emulated: no inbound connections) that knows a relay only as a
/// bootstrap peer finds out through AutoNAT that it is unreachable, reserves a slot, and hands
/// out links with the relayed address first. A listener joins through the relay, DCUtR punches
/// a hole, and the conversation moves off the relay: its circuit closes and the audio goes on.
/// The listener, reachable directly, takes no slot.
#[test]
fn a_host_behind_a_nat_is_reached_through_a_relay_then_directly() {
    let operator = TestHome::new();
    let Relay {
        live: mut relay,
        addr: relay_addr,
        metrics,
        ..
    } = start_relay(&operator, None);
    let ana = TestHome::new();
    let room = crate::live::local_room(&ana, "Behind a router");
    let mut host = tone_host(
        &ana,
        &room,
        &["--emulate-nat", "cone", "--bootstrap", &relay_addr],
    );
    // The verdict comes first; the link is handed out once the host is reachable.
    let verdict = host.expect("reachability", |e| matches!(e, Event::Reachability { .. }));
    assert_eq!(
        verdict,
        Event::Reachability {
            status: Reachability::Private
        }
    );
    let (reachability, link) = host.expect_map("hosting", |e| match e {
        Event::Hosting {
            reachability,
            listener_link,
            ..
        } => Some((*reachability, listener_link.to_string())),
        _ => None,
    });
    assert_eq!(reachability, Some(Reachability::Private));
    let inspected = ana.json(&["invite", "inspect", &link]);
    let first = inspected["bootstrap"][0].as_str().unwrap_or_default();
    assert!(
        first.starts_with(&relay_addr) && first.contains("/p2p-circuit"),
        "the relayed address comes first: {inspected}"
    );

    let bea = TestHome::new();
    let mut listener = crate::live::listener("bea", &bea, &link, &[]);
    listener.expect("joined", |e| matches!(e, Event::Joined { .. }));
    let heard = listener.expect_stats("two seconds of audio", |s| s.delivered >= 100);
    // The relay carried the join, then let go of it.
    scrape_until(&metrics, "the circuit closed after the upgrade", |seen| {
        seen.get("earshot_relay_circuits_total")
            .is_some_and(|n| *n >= 1.0)
            && seen.get("earshot_relay_circuits_open") == Some(&0.0)
    });
    let later = listener.expect_stats("audio over the direct connection", |s| {
        s.delivered >= heard.delivered + 100
    });
    // Moving the audio stream to the direct connection restarts it: a few frames at most.
    assert!(
        missing(&later) <= 25,
        "frames lost moving off the relay: {later:?}"
    );
    // DCUtR reports the hole on the side whose dial won the race.
    let hole = |e: &Event| matches!(e, Event::DirectConnection { .. });
    assert!(
        host.printed(hole) || listener.printed(hole),
        "neither side saw a hole punched"
    );
    let seen = scrape(&metrics);
    assert_eq!(
        seen.get("earshot_relay_reservations_open"),
        Some(&1.0),
        "only the host holds a slot: {seen:?}"
    );
    host.say("/end");
    assert_eq!(listener.exit_code(), 0);
    assert_eq!(host.exit_code(), 0);
    drop(relay.child.kill());
}

/// A host (`ana`) behind a router that defeats hole punching (emulated symmetric NAT) is
/// reachable only through the relay, so its conversation with a listener (`bea`) rides a
/// circuit. Returns the relay, its metrics URL, the host and the listener once the listener's
/// audio is attached.
fn room_over_a_circuit(
    operator: &TestHome,
    ana: &TestHome,
    bea: &TestHome,
    config: Option<&str>,
) -> (Live, String, Live, Live) {
    let Relay {
        live: relay,
        addr: relay_addr,
        metrics,
        ..
    } = start_relay(operator, config);
    let room = crate::live::local_room(ana, "Over a circuit");
    let mut host = tone_host(
        ana,
        &room,
        &[
            "--emulate-nat",
            "symmetric",
            "--bootstrap",
            &relay_addr,
            "--reachability",
            "private",
        ],
    );
    let link = host.listener_link();
    let mut listener = crate::live::listener("bea", bea, &link, &[]);
    listener.expect("audio_attached", |e| {
        matches!(e, Event::AudioAttached { .. })
    });
    (relay, metrics, host, listener)
}

/// rust-libp2p's default circuit limit (128 KiB) scaled down eight times: about two seconds of
/// a room. A relay with it cuts a relayed conversation again and again.
#[test]
fn a_relay_with_short_circuit_limits_cuts_the_audio() {
    let (operator, ana, bea) = (TestHome::new(), TestHome::new(), TestHome::new());
    let (mut relay, metrics, mut host, mut listener) =
        room_over_a_circuit(&operator, &ana, &bea, Some("circuit_bytes = \"16KiB\"\n"));
    listener.expect("the audio cut off", |e| {
        matches!(e, Event::AudioLost { .. })
    });
    scrape_until(&metrics, "a second circuit", |seen| {
        seen.get("earshot_relay_circuits_total")
            .is_some_and(|n| *n >= 2.0)
    });
    host.say("/end");
    let _ = listener.child.kill();
    let _ = host.exit_code();
    let _ = relay.child.kill();
}

/// With an Earshot relay's limits (hours and a gigabyte per circuit), the same conversation
/// rides one circuit for longer than rust-libp2p's defaults would allow: 1200 frames (24 s) of
/// at least 98 bytes each, plus framing, encryption and the room's gossip, is over 128 KiB.
/// No frame is lost and no hole was punched (the audio really went through the relay).
#[test]
fn audio_outlasts_the_default_circuit_limits_on_an_earshot_relay() {
    let (operator, ana, bea) = (TestHome::new(), TestHome::new(), TestHome::new());
    let (mut relay, metrics, mut host, mut listener) =
        room_over_a_circuit(&operator, &ana, &bea, None);
    let heard = listener.expect_within("24 seconds of audio", Duration::from_secs(60), |e| {
        assert!(
            !matches!(e, Event::AudioLost { .. }),
            "the audio was cut: {e:?}"
        );
        assert!(
            !matches!(e, Event::DirectConnection { .. }),
            "not relayed: {e:?}"
        );
        matches!(e, Event::AudioStats(s) if s.delivered >= 1200)
    });
    let Event::AudioStats(heard) = heard else {
        unreachable!("expect_within returned audio_stats")
    };
    assert!(
        missing(&heard) <= 10,
        "frames lost on the circuit: {heard:?}"
    );
    let seen = scrape(&metrics);
    assert_eq!(
        seen.get("earshot_relay_circuits_open"),
        Some(&1.0),
        "{seen:?}"
    );
    assert_eq!(
        seen.get("earshot_relay_circuits_total"),
        Some(&1.0),
        "{seen:?}"
    );
    host.say("/end");
    assert_eq!(listener.exit_code(), 0);
    assert_eq!(host.exit_code(), 0);
    let _ = relay.child.kill();
}

/// A relay's upload budget is shared among the rooms it carries: with room for two listeners in
/// all, the first host's room takes both, and a second host is refused politely.
#[test]
fn a_relay_shares_its_upload_budget_among_rooms() {
    let operator = TestHome::new();
    let mut relay = start_relay(&operator, Some("upload_kbps = 80\n"));
    let ana = TestHome::new();
    let (mut first, _) = host_carried_by(&ana, "First", &relay.addr, &mut relay.live);
    let ben = TestHome::new();
    let room = crate::live::local_room(&ben, "Second");
    let mut second = tone_host(&ben, &room, &["--relay", &relay.addr]);
    let refused = second.expect("error", |e| matches!(e, Event::Error { .. }));
    assert!(
        matches!(&refused, Event::Error { message, .. } if message.contains("upload budget")),
        "{refused:?}"
    );
    second.say("/end");
    first.say("/end");
    assert_eq!(second.exit_code(), 0);
    assert_eq!(first.exit_code(), 0);
    let _ = relay.live.child.kill();
}
