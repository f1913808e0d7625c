//! A small internet with home routers, for hole punching: a core router namespace (the
//! internet) with one link per site, `198.18.K.0/24` (the benchmarking range, RFC 2544: no
//! real address), the core at `.1` and the site at `.2`; public machines (a community relay, a
//! listener with an open port) sit directly on such a link. A [`Home`] is a router namespace
//! whose WAN side is such a link and whose LAN side has one or more node namespaces, each on
//! its own link `10.H.M.0/24` (the router at `.1`, the node at `.2`), and which translates
//! what leaves by its WAN side with nftables:
//!
//! - [`Nat::Cone`]: plain `masquerade`. Linux keeps a connection's source port when it is free,
//!   so one socket keeps one public port whatever it sends to (endpoint-independent mapping,
//!   which hole punching needs), but conntrack lets in only replies to what went out, from the
//!   very address and port it went to (address-and-port-dependent filtering: a "port-restricted
//!   cone", not a full cone; Linux has no endpoint-independent filtering). Two peers behind
//!   such routers still punch a hole when both send at about the same time (DCUtR's
//!   simultaneous open): each side's packet opens its own router for the other's.
//! - [`Nat::Symmetric`]: `masquerade random`, a new public port for every connection (so for
//!   every destination): the port a relay saw is not the one a peer would be sent from or to.
//! - [`Nat::ConeOpenRouter`]: a cone whose router does not firewall itself, to show why home
//!   routers must: see there.
//!
//! Every router drops what comes in on its WAN side that is not a reply, both what it would
//! forward (policy drop) and what is for itself (before conntrack keeps an entry for it:
//! [`Nat::ConeOpenRouter`] says what such an entry does to hole punching), forwards between its
//! LAN links without translation (one home network), and
//! does no hairpinning (a packet from the LAN to its own public address is delivered to the
//! router itself, where nothing listens: counted, see [`Home::hairpin_attempts`]). Optional: loss
//! on a router's WAN side ([`Internet::lose`]) and an uplink cap ([`Internet::cap_uplink`],
//! `tbf`). Links are made inside the namespaces (`ip link add … netns`): nothing is created in,
//! or changes, the host's own network; everything is deleted when the [`Internet`] is dropped,
//! a failing test included.

use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use earshot_node::Event;
use earshot_node::reachability::Reachability;

use super::{NEXT, run};
use crate::harness::TestHome;
use crate::live::Live;

/// How a home router translates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Nat {
    /// Port-preserving `masquerade`: endpoint-independent mapping, address-and-port-dependent
    /// filtering.
    Cone,
    /// `masquerade random`: a new public port per connection.
    Symmetric,
    /// [`Nat::Cone`] on a router that does not firewall itself: what comes in on the WAN side
    /// for the router's own address and is no reply is not dropped but delivered (to no one).
    /// Delivered, it leaves a conntrack entry (from the peer's address and port to the
    /// router's): a peer's hole-punching packet that arrives before this side's own first one
    /// goes out makes that one clash with it, and Linux gives it another public port (the
    /// likely cause of what `hole_punching` measures: 0 of 5, against 5 of 5 with the rule;
    /// not traced packet by packet).
    ConeOpenRouter,
}

impl Nat {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Nat::Cone => "cone",
            Nat::Symmetric => "symmetric",
            Nat::ConeOpenRouter => "cone, router not firewalled",
        }
    }
}

/// A namespace with one address: a public machine, or a node behind a [`Home`] router.
pub(crate) struct Machine {
    pub(crate) netns: String,
    pub(crate) ip: String,
}

impl Machine {
    /// A QUIC listen address on this machine's interface (the port chosen when it binds).
    pub(crate) fn quic(&self) -> String {
        format!("/ip4/{}/udp/0/quic-v1", self.ip)
    }
}

/// A home router and the nodes behind it.
pub(crate) struct Home {
    pub(crate) router: String,
    pub(crate) nodes: Vec<Machine>,
}

/// The namespaces of one small internet; deleted on drop.
pub(crate) struct Internet {
    id: String,
    core: String,
    /// Every namespace made, the core first.
    namespaces: Vec<String>,
    /// Links to the core so far (the next is `198.18.{links + 1}.0/24`).
    links: u8,
    homes: u8,
}

/// `ip netns exec NETNS args…`, failing the test with its output if it fails.
fn inside(netns: &str, args: &[&str]) {
    let mut all = vec!["netns", "exec", netns];
    all.extend_from_slice(args);
    run("ip", &all);
}

/// Loads an nftables `script` in `netns`.
fn nft(netns: &str, script: &str) {
    let mut child = Command::new("ip")
        .args(["netns", "exec", netns, "nft", "-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run nft");
    child
        .stdin
        .take()
        .expect("stdin is piped")
        .write_all(script.as_bytes())
        .expect("write the ruleset");
    let output = child.wait_with_output().expect("nft");
    assert!(
        output.status.success(),
        "nft in {netns}: {}\n{script}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// The packet count of the named counter `name` in table `ip home` of `netns`.
fn counter(netns: &str, name: &str) -> Option<u64> {
    let output = Command::new("ip")
        .args([
            "netns", "exec", netns, "nft", "list", "counter", "ip", "home", name,
        ])
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&output.stdout);
    let at = text.find("packets ")?;
    text[at + 8..].split_whitespace().next()?.parse().ok()
}

impl Internet {
    /// The core router, and nothing on it yet.
    pub(crate) fn new() -> Self {
        let id = format!(
            "es{}y{}",
            std::process::id() % 100_000,
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let mut internet = Self {
            core: format!("{id}core"),
            id,
            namespaces: Vec::new(),
            links: 0,
            homes: 0,
        };
        let core = internet.core.clone();
        internet.namespace(&core);
        inside(&core, &["sysctl", "-qw", "net.ipv4.ip_forward=1"]);
        internet
    }

    /// Makes namespace `name` (deleted on drop from now on, whatever happens next).
    fn namespace(&mut self, name: &str) {
        run("ip", &["netns", "add", name]);
        self.namespaces.push(name.to_owned());
        run("ip", &["-n", name, "link", "set", "lo", "up"]);
    }

    /// Links `netns` to the core as `dev`, with a public address (returned) and a default
    /// route through the core.
    fn link(&mut self, netns: &str, dev: &str) -> String {
        self.links += 1;
        let k = self.links;
        let core_dev = format!("c{k}");
        let (gateway, addr) = (format!("198.18.{k}.1"), format!("198.18.{k}.2"));
        run(
            "ip",
            &[
                "link", "add", &core_dev, "netns", &self.core, "type", "veth", "peer", "name", dev,
                "netns", netns,
            ],
        );
        let core = self.core.as_str();
        run(
            "ip",
            &[
                "-n",
                core,
                "addr",
                "add",
                &format!("{gateway}/24"),
                "dev",
                &core_dev,
            ],
        );
        run("ip", &["-n", core, "link", "set", &core_dev, "up"]);
        run(
            "ip",
            &[
                "-n",
                netns,
                "addr",
                "add",
                &format!("{addr}/24"),
                "dev",
                dev,
            ],
        );
        run("ip", &["-n", netns, "link", "set", dev, "up"]);
        run(
            "ip",
            &["-n", netns, "route", "add", "default", "via", &gateway],
        );
        addr
    }

    /// A machine with a public address (nothing in front of it).
    pub(crate) fn public(&mut self, name: &str) -> Machine {
        let netns = format!("{}{name}", self.id);
        self.namespace(&netns);
        let ip = self.link(&netns, "eth0");
        Machine { netns, ip }
    }

    /// A home router translating with `nat`, with `nodes` machines behind it.
    pub(crate) fn home(&mut self, nat: Nat, nodes: usize) -> Home {
        self.homes += 1;
        let h = self.homes;
        let router = format!("{}h{h}", self.id);
        self.namespace(&router);
        inside(&router, &["sysctl", "-qw", "net.ipv4.ip_forward=1"]);
        let wan_ip = self.link(&router, "wan");
        let mut machines = Vec::new();
        for m in 0..nodes {
            let netns = format!("{}h{h}n{m}", self.id);
            self.namespace(&netns);
            let lan = format!("lan{m}");
            run(
                "ip",
                &[
                    "link", "add", &lan, "netns", &router, "type", "veth", "peer", "name", "eth0",
                    "netns", &netns,
                ],
            );
            let (gateway, ip) = (format!("10.{h}.{m}.1"), format!("10.{h}.{m}.2"));
            run(
                "ip",
                &[
                    "-n",
                    &router,
                    "addr",
                    "add",
                    &format!("{gateway}/24"),
                    "dev",
                    &lan,
                ],
            );
            run("ip", &["-n", &router, "link", "set", &lan, "up"]);
            run(
                "ip",
                &[
                    "-n",
                    &netns,
                    "addr",
                    "add",
                    &format!("{ip}/24"),
                    "dev",
                    "eth0",
                ],
            );
            run("ip", &["-n", &netns, "link", "set", "eth0", "up"]);
            run(
                "ip",
                &["-n", &netns, "route", "add", "default", "via", &gateway],
            );
            machines.push(Machine { netns, ip });
        }
        let masquerade = match nat {
            Nat::Cone | Nat::ConeOpenRouter => "masquerade",
            Nat::Symmetric => "masquerade random",
        };
        // What comes in for the router itself and is no reply: dropped, as home routers do
        // (and before conntrack keeps an entry for it), or, on an open router, delivered.
        let unsolicited = match nat {
            Nat::ConeOpenRouter => "accept",
            Nat::Cone | Nat::Symmetric => "drop",
        };
        // Chain names avoid nft's keywords (`fwd` is one).
        nft(
            &router,
            &format!(
                "table ip home {{
                    counter lan_to_lan {{ }}
                    counter hairpin {{ }}
                    counter refused {{ }}
                    counter unsolicited {{ }}
                    chain outgoing {{
                        type nat hook postrouting priority srcnat; policy accept;
                        oifname \"wan\" {masquerade}
                    }}
                    chain through {{
                        type filter hook forward priority filter; policy drop;
                        iifname \"lan*\" oifname \"lan*\" counter name lan_to_lan accept
                        ct state established,related accept
                        iifname != \"wan\" accept
                        counter name refused drop
                    }}
                    chain arriving {{
                        type filter hook input priority filter; policy accept;
                        iifname \"lan*\" ip daddr {wan_ip} counter name hairpin
                        iifname \"wan\" ct state established,related accept
                        iifname \"wan\" counter name unsolicited {unsolicited}
                    }}
                }}"
            ),
        );
        Home {
            router,
            nodes: machines,
        }
    }

    /// `percent` % of the packets crossing `home`'s WAN side, either way, dropped at random.
    pub(crate) fn lose(&self, home: &Home, percent: u8) {
        nft(
            &home.router,
            &format!(
                "table ip loss {{
                    chain lossy {{
                        type filter hook forward priority filter - 10; policy accept;
                        iifname \"wan\" numgen random mod 100 < {percent} drop
                        oifname \"wan\" numgen random mod 100 < {percent} drop
                    }}
                }}"
            ),
        );
    }

    /// `home`'s uplink (what leaves by its WAN side) capped at `kbit` kbit/s (`tbf`, a queue of
    /// at most 200 ms; the rest is dropped).
    pub(crate) fn cap_uplink(&self, home: &Home, kbit: u32) {
        inside(
            &home.router,
            &[
                "tc",
                "qdisc",
                "add",
                "dev",
                "wan",
                "root",
                "tbf",
                "rate",
                &format!("{kbit}kbit"),
                "burst",
                "4kb",
                "latency",
                "200ms",
            ],
        );
    }
}

impl Drop for Internet {
    fn drop(&mut self) {
        // Deleting a namespace deletes its ends of the veth pairs, and so the pairs.
        for netns in self.namespaces.iter().rev() {
            let _ = Command::new("ip").args(["netns", "del", netns]).status();
        }
    }
}

impl Home {
    /// Packets its nodes sent each other (through it, untranslated) so far.
    pub(crate) fn lan_to_lan(&self) -> Option<u64> {
        counter(&self.router, "lan_to_lan")
    }

    /// Packets from its LAN to its own public address (hairpinning, which it does not do).
    pub(crate) fn hairpin_attempts(&self) -> Option<u64> {
        counter(&self.router, "hairpin")
    }
}

/// `earshot relay` on `machine` (a public one), printing `relay_stats` every second; its
/// address.
pub(crate) fn start_relay(machine: &Machine, operator: &TestHome) -> (Live, String) {
    let listen = machine.quic();
    let mut relay = Live::start_in(
        "relay",
        Some(&machine.netns),
        operator,
        &["relay", "--listen", &listen],
    );
    let addr = relay.expect_map("relay", |e| match e {
        Event::Relay { addrs, .. } => addrs.first().map(ToString::to_string),
        _ => None,
    });
    (relay, addr)
}

/// The relay's circuits open now: from a `relay_stats` printed after this call (it prints one
/// a second).
pub(crate) fn circuits_now(relay: &mut Live) -> i64 {
    relay.drain();
    relay.expect_map("relay_stats", |e| match e {
        Event::RelayStats(stats) => Some(stats.circuits),
        _ => None,
    })
}

/// Where a node sits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Place {
    Public,
    Behind(Nat),
}

impl Place {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Place::Public => "public",
            Place::Behind(nat) => nat.name(),
        }
    }
}

/// What one hole-punching run found.
#[derive(Debug)]
pub(crate) struct Punched {
    /// DCUtR reported a direct connection (on either side).
    pub(crate) upgraded: bool,
    /// The relay's circuits open a few seconds after the listener attached.
    pub(crate) circuits: i64,
    /// From the host's link to the listener's `audio_attached`.
    pub(crate) join: Duration,
    /// Frames delivered of those expected over the last seconds of the run (after the upgrade,
    /// or relayed).
    pub(crate) delivered: u64,
    pub(crate) expected: u64,
    /// Frames missed from the first audio to the end of the run (the move to the punched
    /// connection, if any, included), and the parents the listener lost meanwhile.
    pub(crate) missed: u64,
    pub(crate) lost_parents: Vec<String>,
}

/// How long a listener may take from the link to its first audio.
pub(crate) const ATTACH: Duration = Duration::from_secs(40);
/// Audio (in frames, 20 ms each) a run listens to before it looks whether the hole was
/// punched: DCUtR starts as soon as the relayed connection is up.
const SETTLE_FRAMES: u64 = 250;
/// Audio (frames) after that which must arrive: the audio flows, upgraded or relayed.
const FLOW_FRAMES: u64 = 150;

/// Loss and an uplink cap on a router's WAN side.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Shaping {
    pub(crate) loss_percent: u8,
    pub(crate) uplink_kbit: u32,
}

/// One run: a community relay in public, a host behind a `host_nat` router (told it is
/// private, or finding out through AutoNAT when `autonat`), and a listener at `listener_at`
/// (its router `shaped`, if it has one) that joins with the host's link (through the relay)
/// and hears it.
pub(crate) fn punch(
    host_nat: Nat,
    listener_at: Place,
    autonat: bool,
    shaped: Option<Shaping>,
) -> Punched {
    let (operator, ana, bea) = (TestHome::new(), TestHome::new(), TestHome::new());
    let mut net = Internet::new();
    let relay_at = net.public("relay");
    let host_home = net.home(host_nat, 1);
    let listener_machine = match listener_at {
        Place::Public => net.public("bea"),
        Place::Behind(nat) => {
            let mut home = net.home(nat, 1);
            if let Some(shaping) = shaped {
                net.lose(&home, shaping.loss_percent);
                net.cap_uplink(&home, shaping.uplink_kbit);
            }
            home.nodes.remove(0)
        }
    };
    let host_at = &host_home.nodes[0];
    let (mut relay, relay_addr) = start_relay(&relay_at, &operator);
    let room = super::room_new_in(&host_at.netns, &host_at.quic(), &ana, "Punch");
    let reachability = if autonat { "auto" } else { "private" };
    let mut host = Live::start_in(
        "host",
        Some(&host_at.netns),
        &ana,
        &[
            "host",
            &room,
            "--input",
            "sine",
            "--output",
            "null",
            "--bootstrap",
            &relay_addr,
            "--reachability",
            reachability,
        ],
    );
    let (addrs, verdict, link) = host.expect_map("hosting", |e| match e {
        Event::Hosting {
            addrs,
            reachability,
            listener_link,
            ..
        } => Some((addrs.clone(), *reachability, listener_link.to_string())),
        _ => None,
    });
    // Told, or found out through AutoNAT (the relay's server dials back and the router drops
    // it): private, and reachable through the relay first.
    assert_eq!(verdict, Some(Reachability::Private), "{addrs:?}");
    let inspected = ana.json(&["invite", "inspect", &link]);
    let first = inspected["bootstrap"][0].as_str().unwrap_or_default();
    assert!(
        first.starts_with(&relay_addr) && first.contains("/p2p-circuit"),
        "the link names the relayed address first: {inspected} (the host: {addrs:?})"
    );
    let start = Instant::now();
    let mut listener = Live::start_in(
        "bea",
        Some(&listener_machine.netns),
        &bea,
        &[
            "join",
            &link,
            "--name",
            "bea",
            "--listen",
            &listener_machine.quic(),
            "--output",
            "null",
        ],
    );
    listener.expect_within("audio_attached", ATTACH, |e| {
        matches!(e, Event::AudioAttached { .. })
    });
    let join = start.elapsed();
    let first = listener.expect_stats("audio", |s| s.delivered > 0);
    let hole = |e: &Event| matches!(e, Event::DirectConnection { .. });
    // Until the hole is punched, or for SETTLE_FRAMES of audio.
    let settled = loop {
        let stats = listener.expect_stats("audio", |_| true);
        if stats.delivered >= first.delivered + SETTLE_FRAMES
            || host.printed(hole)
            || listener.printed(hole)
        {
            break stats;
        }
    };
    let settled = if host.printed(hole) || listener.printed(hole) {
        // The relayed connection is retired once the audio moved: a second more.
        listener.expect_stats("audio after the upgrade", |s| {
            s.delivered >= settled.delivered + 50
        })
    } else {
        settled
    };
    let upgraded = host.printed(hole) || listener.printed(hole);
    let circuits = circuits_now(&mut relay);
    let last = listener.expect_stats("audio flowing", |s| {
        s.delivered >= settled.delivered + FLOW_FRAMES
    });
    let lost_parents = listener.seen_events(|e| match e {
        Event::AudioLost { reason, .. } => Some(reason.clone()),
        _ => None,
    });
    drop((listener, host, relay));
    drop(net);
    Punched {
        upgraded,
        circuits,
        join,
        delivered: last.delivered - settled.delivered,
        expected: last.expected - settled.expected,
        missed: (last.expected - first.expected).saturating_sub(last.delivered - first.delivered),
        lost_parents,
    }
}

/// What two listeners behind one home router found.
#[derive(Debug)]
pub(crate) struct Neighbours {
    /// The second listener's depth and whether its parent is the first listener.
    pub(crate) depth: u16,
    pub(crate) under_first: bool,
    /// Frames each heard over a stretch after both were attached, of those expected.
    pub(crate) heard: [(u64, u64); 2],
    /// The relay's circuits open then.
    pub(crate) circuits: i64,
    /// Packets between the two through their router, untranslated (their LAN addresses).
    pub(crate) lan_to_lan: u64,
    /// Packets from the LAN to the router's own public address (hairpinning, which it does not
    /// do).
    pub(crate) hairpin: u64,
    /// DCUtR upgrades either listener reported.
    pub(crate) upgrades: usize,
}

/// A host behind a `host_nat` router that feeds one child itself (`--max-children 1`), and two
/// listeners behind one cone router: the second must be fed by the first (or by the relay, if
/// it carried the room: it does not here). Both hear.
pub(crate) fn same_router(host_nat: Nat) -> Neighbours {
    let (operator, ana) = (TestHome::new(), TestHome::new());
    let homes = [TestHome::new(), TestHome::new()];
    let mut net = Internet::new();
    let relay_at = net.public("relay");
    let host_home = net.home(host_nat, 1);
    let flat = net.home(Nat::Cone, 2);
    let host_at = &host_home.nodes[0];
    let (mut relay, relay_addr) = start_relay(&relay_at, &operator);
    let room = super::room_new_in(&host_at.netns, &host_at.quic(), &ana, "Flatmates");
    let mut host = Live::start_in(
        "host",
        Some(&host_at.netns),
        &ana,
        &[
            "host",
            &room,
            "--input",
            "sine",
            "--output",
            "null",
            "--bootstrap",
            &relay_addr,
            "--reachability",
            "private",
            "--max-children",
            "1",
        ],
    );
    let link = host.listener_link();
    let names = ["l1", "l2"];
    let mut listeners = Vec::new();
    let mut parents = Vec::new();
    for (i, name) in names.iter().enumerate() {
        let machine = &flat.nodes[i];
        let mut live = Live::start_in(
            name,
            Some(&machine.netns),
            &homes[i],
            &[
                "join",
                &link,
                "--name",
                name,
                "--listen",
                &machine.quic(),
                "--output",
                "null",
            ],
        );
        let (parent, depth) = live.expect_map_within("audio_attached", ATTACH, |e| match e {
            Event::AudioAttached { parent, depth, .. } => Some((*parent, *depth)),
            _ => None,
        });
        let peer = live.printed_map(|e| match e {
            Event::Joined { peer_id, .. } => Some(*peer_id),
            _ => None,
        });
        parents.push((parent, depth, peer));
        listeners.push(live);
    }
    let starts: Vec<_> = listeners
        .iter_mut()
        .map(|live| live.expect_stats("audio", |s| s.delivered > 0))
        .collect();
    let mut heard = [(0, 0); 2];
    for (i, live) in listeners.iter_mut().enumerate() {
        let start = &starts[i];
        let end = live.expect_stats("five seconds of audio", |s| {
            s.delivered >= start.delivered + 250
        });
        heard[i] = (
            end.delivered - start.delivered,
            end.expected - start.expected,
        );
    }
    let circuits = circuits_now(&mut relay);
    let hole = |e: &Event| matches!(e, Event::DirectConnection { .. });
    let upgrades = listeners
        .iter_mut()
        .map(|live| live.printed(hole))
        .filter(|&upgraded| upgraded)
        .count();
    let neighbours = Neighbours {
        depth: parents[1].1,
        under_first: Some(parents[1].0) == parents[0].2,
        heard,
        circuits,
        lan_to_lan: flat.lan_to_lan().unwrap_or(0),
        hairpin: flat.hairpin_attempts().unwrap_or(0),
        upgrades,
    };
    drop((listeners, host, relay));
    drop(net);
    neighbours
}

/// Whether at least 95 % of the frames expected over a run's last stretch arrived.
fn flowing(what: &str, delivered: u64, expected: u64) {
    assert!(
        expected > 0 && delivered * 100 >= expected * 95,
        "{what}: {delivered} of {expected} frames"
    );
}

/// Issue 18's robust facts, on real address translation: a listener behind a cone NAT and a
/// host behind another (which finds out through AutoNAT that it is private: the relay's
/// dial-back is dropped by its router) get audio, relayed or direct; two symmetric NATs, which
/// hole punching cannot cross, still get it through the relay; two listeners behind one
/// router, the second fed by the first, both hear. How often the hole is punched is measured
/// by [`hole_punching`], not asserted here.
#[test]
fn rooms_across_home_routers() {
    if !super::Lab::available() {
        return;
    }
    // Timing is the test: not alongside another multi-process scene on two cores.
    let _one_scene_at_a_time = crate::trust::scene_lock();
    let cones = punch(Nat::Cone, Place::Behind(Nat::Cone), true, None);
    eprintln!("cone/cone: {cones:?}");
    flowing("cone/cone", cones.delivered, cones.expected);

    let symmetric = punch(Nat::Symmetric, Place::Behind(Nat::Symmetric), false, None);
    eprintln!("symmetric/symmetric: {symmetric:?}");
    flowing(
        "symmetric/symmetric",
        symmetric.delivered,
        symmetric.expected,
    );
    assert!(
        !symmetric.upgraded && symmetric.circuits >= 1,
        "two symmetric NATs: the audio goes through the relay: {symmetric:?}"
    );

    let flat = same_router(Nat::Symmetric);
    eprintln!("two listeners behind one router: {flat:?}");
    assert!(
        flat.depth == 2 && flat.under_first,
        "the second listener is fed by the first: {flat:?}"
    );
    for (i, (delivered, expected)) in flat.heard.iter().enumerate() {
        flowing(&format!("listener {}", i + 1), *delivered, *expected);
    }
}

/// The `p`-th percentile (nearest rank) of `values`, sorted.
fn percentile(values: &[Duration], p: usize) -> Duration {
    let mut sorted = values.to_vec();
    sorted.sort();
    let rank = (p * sorted.len()).div_ceil(100).max(1);
    sorted[rank - 1]
}

/// Issue 18's hole-punching table: for each pair of places (the host's router, the
/// listener's), `EARSHOT_LAB_RUNS` runs (default 5) of [`punch`], each on a new lab; then
/// [`same_router`] as many times for each host router. A measurement (it prints; a run that
/// fails is counted, not fatal), so `#[ignore]`d: as root, the tables on stdout,
///
/// ```text
/// cargo test -p earshot --test integration -- --ignored lab::nat::hole_punching --nocapture
/// ```
///
/// The host is told `--reachability private` (the AutoNAT row finds out instead: 8 s more per
/// run). Columns: runs that failed (a timeout: no audio), DCUtR upgrades, runs whose circuit
/// was still open at the relay after the audio settled, link-to-`audio_attached` p50 / p95
/// (nearest rank), frames heard of those expected over 3 s after it settled (direct or
/// relayed), and the most frames a run missed from its first audio on, the move to the punched
/// connection included (with the parents the listener lost then). `EARSHOT_LAB_ROWS=0,2` runs
/// only those rows of the first table.
#[test]
#[ignore = "a measurement of about eight minutes (root only): run it by name, see its doc"]
fn hole_punching() {
    if !super::Lab::available() {
        return;
    }
    let _one_scene_at_a_time = crate::trust::scene_lock();
    let runs: usize = std::env::var("EARSHOT_LAB_RUNS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(5);
    let thin = Some(Shaping {
        loss_percent: 2,
        uplink_kbit: 256,
    });
    let pairs = [
        (Nat::Cone, Place::Behind(Nat::Cone), false, None),
        (Nat::Cone, Place::Behind(Nat::Cone), true, None),
        (Nat::Cone, Place::Behind(Nat::Cone), false, thin),
        (Nat::Cone, Place::Behind(Nat::Symmetric), false, None),
        (Nat::Symmetric, Place::Behind(Nat::Cone), false, None),
        (Nat::Symmetric, Place::Behind(Nat::Symmetric), false, None),
        (Nat::Cone, Place::Public, false, None),
        (Nat::Symmetric, Place::Public, false, None),
        (
            Nat::ConeOpenRouter,
            Place::Behind(Nat::ConeOpenRouter),
            false,
            None,
        ),
    ];
    let mut table = vec![
        "| host behind | listener | runs | failed | hole punched | circuit still open | link → audio p50 / p95 | heard after (direct; relayed) | missed from the first audio, most (parents lost) |".to_owned(),
        "|---|---|---|---|---|---|---|---|---|".to_owned(),
    ];
    // `EARSHOT_LAB_ROWS=0,6`: only those rows (and no same-router table).
    let rows: Option<Vec<usize>> = std::env::var("EARSHOT_LAB_ROWS")
        .ok()
        .map(|rows| rows.split(',').filter_map(|r| r.parse().ok()).collect());
    for (row, (host_nat, listener_at, autonat, shaped)) in pairs.into_iter().enumerate() {
        if rows.as_ref().is_some_and(|rows| !rows.contains(&row)) {
            continue;
        }
        let (mut failed, mut upgraded, mut open) = (0, 0, 0);
        let (mut missed, mut lost_parents) = (0, 0);
        let mut joins = Vec::new();
        let (mut direct, mut relayed) = ((0, 0), (0, 0));
        for _ in 0..runs {
            let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                punch(host_nat, listener_at, autonat, shaped)
            }));
            let Ok(run) = run else {
                failed += 1;
                continue;
            };
            eprintln!("{} / {}: {run:?}", host_nat.name(), listener_at.name());
            joins.push(run.join);
            if run.missed >= missed {
                (missed, lost_parents) = (run.missed, run.lost_parents.len());
            }
            upgraded += usize::from(run.upgraded);
            open += usize::from(run.circuits > 0);
            let sum = if run.upgraded {
                &mut direct
            } else {
                &mut relayed
            };
            sum.0 += run.delivered;
            sum.1 += run.expected;
        }
        let heard = |(delivered, expected): (u64, u64)| {
            if expected == 0 {
                "-".to_owned()
            } else {
                format!("{delivered}/{expected}")
            }
        };
        let join = if joins.is_empty() {
            "-".to_owned()
        } else {
            format!(
                "{} / {} ms",
                percentile(&joins, 50).as_millis(),
                percentile(&joins, 95).as_millis()
            )
        };
        table.push(format!(
            "| {}{} | {}{} | {runs} | {failed} | {upgraded}/{} | {open} | {join} | {}; {} | {missed} ({lost_parents}) |",
            host_nat.name(),
            if autonat { " (AutoNAT)" } else { "" },
            listener_at.name(),
            if shaped.is_some() {
                ", 2 % loss, 256 kbit/s up"
            } else {
                ""
            },
            runs - failed,
            heard(direct),
            heard(relayed),
        ));
    }
    let mut flats = vec![
        "| host behind | runs | failed | l2 fed by l1 | l1-l2 over the LAN (packets through the router, min) | hairpin attempts | upgrades (l1, l2 to the host) | circuits open | heard l1; l2 |".to_owned(),
        "|---|---|---|---|---|---|---|---|---|".to_owned(),
    ];
    for host_nat in [Nat::Cone, Nat::Symmetric] {
        if rows.is_some() {
            flats.clear();
            break;
        }
        let mut done = Vec::new();
        for _ in 0..runs {
            let run =
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| same_router(host_nat)));
            if let Ok(run) = run {
                eprintln!("{} / same router: {run:?}", host_nat.name());
                done.push(run);
            }
        }
        let sum = |i: usize| {
            let (d, e) = done
                .iter()
                .fold((0, 0), |(d, e), n| (d + n.heard[i].0, e + n.heard[i].1));
            format!("{d}/{e}")
        };
        flats.push(format!(
            "| {} | {runs} | {} | {}/{} | {} | {} | {} | {} | {}; {} |",
            host_nat.name(),
            runs - done.len(),
            done.iter()
                .filter(|n| n.depth == 2 && n.under_first)
                .count(),
            done.len(),
            done.iter().map(|n| n.lan_to_lan).min().unwrap_or(0),
            done.iter().map(|n| n.hairpin).sum::<u64>(),
            done.iter().map(|n| n.upgrades).sum::<usize>(),
            done.iter()
                .map(|n| n.circuits.to_string())
                .collect::<Vec<_>>()
                .join(", "),
            sum(0),
            sum(1),
        ));
    }
    println!(
        "\nHole punching, {runs} runs per row:\n\n{}",
        table.join("\n")
    );
    println!(
        "\nTwo listeners behind one cone router, the host feeding one child:\n\n{}",
        flats.join("\n")
    );
}
