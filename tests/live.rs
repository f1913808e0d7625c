//! `earshot host` and `earshot join` as child processes, driven through stdin and followed
//! through their `--json` lines, each an [`Event`].

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use earshot_node::Event;
use earshot_node::event::{AudioStats, CloseReason, DemoDepth, DemoNode};
use earshot_protocol::state::RoomRole;

use crate::harness::{TestHome, code, stderr};

const WAIT: Duration = Duration::from_secs(20);

/// A running `earshot` process whose stdout lines are parsed as [`Event`]s.
pub(crate) struct Live {
    pub(crate) name: &'static str,
    pub(crate) child: Child,
    stdin: Option<ChildStdin>,
    lines: mpsc::Receiver<String>,
    /// Every line printed so far (events or not), for the failure message.
    seen: Vec<String>,
}

impl Live {
    pub(crate) fn start(name: &'static str, home: &TestHome, args: &[&str]) -> Self {
        Self::start_in(name, None, home, args)
    }

    /// [`Live::start`] inside the network namespace `netns` (see `crate::lab`), if one is given.
    pub(crate) fn start_in(
        name: &'static str,
        netns: Option<&str>,
        home: &TestHome,
        args: &[&str],
    ) -> Self {
        let binary = env!("CARGO_BIN_EXE_earshot");
        let command = match netns {
            Some(netns) => {
                let mut command = Command::new("ip");
                command.args(["netns", "exec", netns, binary]);
                command
            }
            None => Command::new(binary),
        };
        Self::spawn(name, command, home, args)
    }

    /// [`Live::start`] as another user: `uid`, and the group of the same number. Needs root.
    pub(crate) fn start_as(name: &'static str, uid: u32, home: &TestHome, args: &[&str]) -> Self {
        use std::os::unix::process::CommandExt;
        let mut command = Command::new(env!("CARGO_BIN_EXE_earshot"));
        command.uid(uid).gid(uid);
        Self::spawn(name, command, home, args)
    }

    fn spawn(name: &'static str, mut command: Command, home: &TestHome, args: &[&str]) -> Self {
        let mut child = command
            .env_remove("EARSHOT_HOME")
            .env(
                "RUST_LOG",
                // `EARSHOT_TEST_LOG_ONLY=NAME`: only the node of that name logs at it.
                if std::env::var("EARSHOT_TEST_LOG_ONLY").is_ok_and(|only| only != name) {
                    "warn".to_string()
                } else {
                    std::env::var("EARSHOT_TEST_LOG").unwrap_or_else(|_| "warn".into())
                },
            )
            .arg("--home")
            .arg(home.path())
            .arg("--json")
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start earshot");
        let stdout = child.stdout.take().expect("stdout is piped");
        let stdin = child.stdin.take();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Self {
            name,
            child,
            stdin,
            lines,
            seen: Vec::new(),
        }
    }

    /// Types a line into the process.
    pub(crate) fn say(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin open");
        writeln!(stdin, "{line}").expect("write to earshot");
        stdin.flush().expect("flush");
    }

    /// Waits for an event matching `predicate`. Lines are taken in order: those before the
    /// match are gone for later waits.
    pub(crate) fn expect(&mut self, what: &str, predicate: impl Fn(&Event) -> bool) -> Event {
        self.expect_within(what, WAIT, predicate)
    }

    /// Waits up to `wait` for an event matching `predicate`.
    pub(crate) fn expect_within(
        &mut self,
        what: &str,
        wait: Duration,
        predicate: impl Fn(&Event) -> bool,
    ) -> Event {
        self.next_line(what, wait, |line| {
            serde_json::from_str::<Event>(line)
                .ok()
                .filter(|event| predicate(event))
        })
    }

    /// Waits for the first event `pick` takes something from, and returns that.
    pub(crate) fn expect_map<T>(&mut self, what: &str, pick: impl Fn(&Event) -> Option<T>) -> T {
        self.next_line(what, WAIT, |line| {
            serde_json::from_str::<Event>(line)
                .ok()
                .and_then(|event| pick(&event))
        })
    }

    /// Waits up to `wait` for the first event `pick` takes something from, and returns that.
    pub(crate) fn expect_map_within<T>(
        &mut self,
        what: &str,
        wait: Duration,
        pick: impl Fn(&Event) -> Option<T>,
    ) -> T {
        self.next_line(what, wait, |line| {
            serde_json::from_str::<Event>(line)
                .ok()
                .and_then(|event| pick(&event))
        })
    }

    /// Waits for an `audio_stats` report matching `predicate`.
    pub(crate) fn expect_stats(
        &mut self,
        what: &str,
        predicate: impl Fn(&AudioStats) -> bool,
    ) -> AudioStats {
        self.expect_map(what, |event| match event {
            Event::AudioStats(stats) if predicate(stats) => Some(AudioStats::clone(stats)),
            _ => None,
        })
    }

    /// Waits for `hosting` and returns the room's listener link.
    pub(crate) fn listener_link(&mut self) -> String {
        self.expect_map("hosting", |event| match event {
            Event::Hosting { listener_link, .. } => Some(listener_link.to_string()),
            _ => None,
        })
    }

    /// Whether the process has printed an event matching `predicate` so far (without waiting).
    /// The first event printed so far that `pick` takes something from (without waiting).
    pub(crate) fn printed_map<T>(&mut self, pick: impl Fn(&Event) -> Option<T>) -> Option<T> {
        while let Ok(line) = self.lines.try_recv() {
            self.seen.push(line);
        }
        self.seen
            .iter()
            .filter_map(|line| serde_json::from_str::<Event>(line).ok())
            .find_map(|event| pick(&event))
    }

    /// Everything `pick` takes from the events printed so far (without waiting).
    pub(crate) fn seen_events<T>(&mut self, pick: impl Fn(&Event) -> Option<T>) -> Vec<T> {
        self.drain();
        self.seen
            .iter()
            .filter_map(|line| serde_json::from_str::<Event>(line).ok())
            .filter_map(|event| pick(&event))
            .collect()
    }

    /// Takes in everything printed so far, so that the next wait sees only what comes after.
    pub(crate) fn drain(&mut self) {
        while let Ok(line) = self.lines.try_recv() {
            self.seen.push(line);
        }
    }

    pub(crate) fn printed(&mut self, predicate: impl Fn(&Event) -> bool) -> bool {
        while let Ok(line) = self.lines.try_recv() {
            self.seen.push(line);
        }
        self.seen
            .iter()
            .any(|line| serde_json::from_str::<Event>(line).is_ok_and(|event| predicate(&event)))
    }

    /// Waits up to `wait` for the first line `take` takes something from.
    fn next_line<T>(&mut self, what: &str, wait: Duration, take: impl Fn(&str) -> Option<T>) -> T {
        let deadline = Instant::now() + wait;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if let Some(taken) = take(&line) {
                        return taken;
                    }
                }
                Err(_) => panic!(
                    "{}: no {what} within {wait:?}; it printed:\n{}",
                    self.name,
                    self.printout()
                ),
            }
        }
    }

    /// What the process printed, each line that is not an [`Event`] marked with the reason.
    fn printout(&self) -> String {
        self.seen
            .iter()
            .map(|line| match serde_json::from_str::<Event>(line) {
                Ok(_) => line.clone(),
                Err(err) => format!("{line}\n  (not an event: {err})"),
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Waits for the process to exit and returns its code.
    pub(crate) fn exit_code(mut self) -> i32 {
        use wait_timeout::ChildExt;
        drop(self.stdin.take());
        match self.child.wait_timeout(WAIT).expect("wait for earshot") {
            Some(status) => status.code().unwrap_or(-1),
            None => panic!("{}: still running after {WAIT:?}", self.name),
        }
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(crate) fn local_room(home: &TestHome, title: &str) -> String {
    local_room_with(home, title, &[])
}

/// `room new TITLE FLAGS… --listen` on 127.0.0.1; returns the room id.
pub(crate) fn local_room_with(home: &TestHome, title: &str, flags: &[&str]) -> String {
    let mut args = vec!["room", "new", title];
    args.extend_from_slice(flags);
    args.extend_from_slice(&["--listen", "/ip4/127.0.0.1/udp/0/quic-v1"]);
    home.json(&args)["id"].as_str().expect("id").to_owned()
}

/// `earshot host ROOM` saying a tone and playing nowhere, with `extra` arguments.
pub(crate) fn tone_host(home: &TestHome, room: &str, extra: &[&str]) -> Live {
    let mut args = vec!["host", room, "--input", "sine", "--output", "null"];
    args.extend_from_slice(extra);
    Live::start("host", home, &args)
}

/// `earshot join LINK --name NAME` on 127.0.0.1 with `extra` arguments, playing nowhere unless
/// `extra` names an `--output`.
pub(crate) fn listener(name: &'static str, home: &TestHome, link: &str, extra: &[&str]) -> Live {
    let mut args = vec!["join", link, "--name", name, "--listen", LOCAL];
    if !extra.contains(&"--output") {
        args.extend_from_slice(&["--output", "null"]);
    }
    args.extend_from_slice(extra);
    Live::start(name, home, &args)
}

pub(crate) const LOCAL: &str = "/ip4/127.0.0.1/udp/0/quic-v1";

#[test]
fn host_and_join_from_the_command_line() {
    let ana = TestHome::new();
    let joe = TestHome::new();
    let room = local_room(&ana, "Book club");
    let mut host = Live::start("host", &ana, &["host", &room, "--name", "ana"]);
    let link = host.listener_link();

    // While the host runs, other commands on its data directory go through it.
    let rooms = ana.json(&["room", "list"]);
    assert_eq!(rooms.as_array().map(Vec::len), Some(1), "{rooms}");
    let speaker = ana.invite(&[&room, "--role", "speaker"]);
    assert!(speaker.starts_with("earshot://join/"));

    let mut guest = Live::start(
        "joe",
        &joe,
        &["join", &link, "--name", "joe", "--listen", LOCAL],
    );
    let (role, title) = guest.expect_map("joined", |e| match e {
        Event::Joined { role, title, .. } => Some((*role, title.clone())),
        _ => None,
    });
    assert_eq!(role, RoomRole::Listener);
    assert_eq!(title, "Book club");
    // A listener is in the audience: the host counts it rather than hearing of it.
    host.expect("joe in the audience", |e| {
        matches!(e, Event::Audience { listeners: 1, .. })
    });

    guest.say("/hand");
    host.expect(
        "joe's hand",
        |e| matches!(e, Event::HandRaised { name, .. } if name == "joe"),
    );
    host.say("/promote joe");
    guest.expect(
        "promotion",
        |e| matches!(e, Event::RoleChanged { name, role: RoomRole::Speaker, .. } if name == "joe"),
    );
    guest.say("hi everyone");
    host.expect(
        "joe's chat",
        |e| matches!(e, Event::Chat { text, .. } if text == "hi everyone"),
    );
    host.say("/react 🎉");
    guest.expect(
        "the reaction",
        |e| matches!(e, Event::Reaction { emoji, .. } if emoji == "🎉"),
    );
    host.say("/who");
    let members = host.expect_map("who", |e| match e {
        Event::Who { members, .. } => Some(members.clone()),
        _ => None,
    });
    assert_eq!(members.len(), 2, "{members:?}");

    host.say("/end");
    guest.expect("room_ended", |e| matches!(e, Event::RoomEnded { .. }));
    guest.expect("closing", |e| {
        matches!(
            e,
            Event::Closed {
                reason: CloseReason::Ended,
                ..
            }
        )
    });
    assert_eq!(guest.exit_code(), 0);
    assert_eq!(host.exit_code(), 0);
}

#[test]
fn a_removed_member_is_out_and_its_link_refused() {
    let ana = TestHome::new();
    let troll = TestHome::new();
    let room = local_room(&ana, "Town hall");
    let mut host = Live::start("host", &ana, &["host", &room]);
    let link = host.listener_link();
    let mut guest = Live::start(
        "troll",
        &troll,
        &["join", &link, "--name", "troll", "--listen", LOCAL],
    );
    guest.expect("joined", |e| matches!(e, Event::Joined { .. }));
    host.expect("the troll in the audience", |e| {
        matches!(e, Event::Audience { listeners: 1, .. })
    });
    // A listener who never raised a hand is named by their PeerId.
    host.say(&format!("/remove {}", troll.peer_id()));
    guest.expect("removal", |e| {
        matches!(
            e,
            Event::Closed {
                reason: CloseReason::Removed,
                ..
            }
        )
    });
    assert_eq!(guest.exit_code(), 1);

    let output = troll.run(&["join", &link, "--name", "troll", "--listen", LOCAL]);
    assert_eq!(code(&output), 1);
    assert!(stderr(&output).contains("removed"), "{}", stderr(&output));
    // Someone else holding the same (now revoked) link is refused too.
    let other = TestHome::new();
    let output = other.run(&["join", &link, "--listen", LOCAL]);
    assert_eq!(code(&output), 1);
    assert!(stderr(&output).contains("revoked"), "{}", stderr(&output));
    host.say("/end");
    assert_eq!(host.exit_code(), 0);
}

#[test]
fn joining_with_a_bad_link_fails_fast() {
    let ana = TestHome::new();
    let room = local_room(&ana, "Book club");
    let joe = TestHome::new();
    // Malformed: exit 2.
    let output = joe.run(&["join", "earshot://join/abc", "--listen", LOCAL]);
    assert_eq!(code(&output), 2);
    assert!(
        stderr(&output).contains("truncated or mistyped"),
        "{}",
        stderr(&output)
    );
    // Bound to someone else: refused before any network traffic.
    let other = TestHome::new();
    let bound = ana.invite(&[&room, "--role", "listener", "--for", &other.peer_id()]);
    let output = joe.run(&["join", &bound, "--listen", LOCAL]);
    assert_eq!(code(&output), 1);
    assert!(stderr(&output).contains("bound to"), "{}", stderr(&output));
    // Nobody hosting: the host is unreachable.
    let link = ana.invite(&[&room, "--role", "listener"]);
    let output = joe.run(&["join", &link, "--listen", LOCAL]);
    assert_eq!(code(&output), 1);
    assert!(
        stderr(&output).contains("unreachable") || stderr(&output).contains("did not answer"),
        "{}",
        stderr(&output)
    );
}

/// Three listeners `l1`, `l2`, `l3` joining one after the other, each feeding one other and
/// writing what it hears to `out.wav` in its home: a chain three deep under a host that feeds
/// one. Returns each with its output file, once each is in place at its depth.
fn chain(link: &str, homes: &[TestHome; 3]) -> Vec<(Live, std::path::PathBuf)> {
    let mut listeners = Vec::new();
    for (i, home) in homes.iter().enumerate() {
        let output = home.join("out.wav");
        let name = ["l1", "l2", "l3"][i];
        let mut live = listener(
            name,
            home,
            link,
            &[
                "--input",
                "silence",
                "--output",
                output.to_str().expect("utf-8 path"),
                "--max-children",
                "1",
            ],
        );
        let attached = live.expect("audio_attached", |e| {
            matches!(e, Event::AudioAttached { .. })
        });
        assert!(
            matches!(attached, Event::AudioAttached { depth, .. } if usize::from(depth) == i + 1),
            "{name}: {attached:?}"
        );
        listeners.push((live, output));
    }
    listeners
}

/// Frames the speakers sent since the node first heard each that have not arrived.
pub(crate) fn missing(stats: &AudioStats) -> u64 {
    stats.expected - stats.delivered
}

/// Reads a 16-bit mono WAV file written by `--output`.
pub(crate) fn read_wav(path: &std::path::Path) -> Vec<f32> {
    earshot_node::audio::wav::read(path).expect("a readable WAV file")
}

/// 20 ms chunks (from `from_s` to `to_s` seconds) whose peak is below -36 dBFS.
fn silent_chunks(samples: &[f32], from_s: f32, to_s: f32) -> usize {
    let start = (from_s * 48_000.0) as usize;
    let end = ((to_s * 48_000.0) as usize).min(samples.len());
    samples[start.min(end)..end]
        .chunks(960)
        .filter(|chunk| chunk.iter().all(|s| s.abs() < 0.016))
        .count()
}

/// A host speaking a tone feeds one listener, which feeds the next, and so on three deep; every
/// listener writes the tone to its WAV file without gaps. Killing the middle relay, its child
/// re-attaches to the tree within a second and the tone goes on.
#[test]
fn audio_through_a_three_deep_tree_and_a_relay_that_dies() {
    let ana = TestHome::new();
    let room = local_room(&ana, "Radio");
    let mut host = Live::start(
        "host",
        &ana,
        &["host", &room, "--input", "sine", "--max-children", "1"],
    );
    let link = host.listener_link();
    let homes = [TestHome::new(), TestHome::new(), TestHome::new()];
    let mut listeners = chain(&link, &homes);
    // The deepest sees its path up to the host in /tree; the host, its one child and the size
    // of its subtree (the chain).
    let (l3, _) = &mut listeners[2];
    l3.say("/tree");
    let nodes = l3.expect_map("tree", |e| match e {
        Event::Tree { nodes, .. } => Some(nodes.clone()),
        _ => None,
    });
    let depths: Vec<u16> = nodes.iter().filter_map(|node| node.depth).collect();
    assert_eq!(depths, vec![0, 1, 2, 3], "{nodes:?}");
    assert_eq!(nodes[3].name, "l3", "{nodes:?}");
    // The host counts the chain once the reports have come up it.
    host.expect("three listeners", |e| {
        matches!(e, Event::Audience { listeners: 3, .. })
    });
    host.say("/tree");
    let subtree = host.expect_map("tree", |e| match e {
        Event::Tree { nodes, subtree, .. } if nodes.len() == 2 => Some(*subtree),
        _ => None,
    });
    assert_eq!(subtree, 4, "the host and the chain below it");

    // Let the tone flow: wait until the deepest listener has received two seconds of it.
    let (l3, _) = &mut listeners[2];
    l3.expect_stats("2 s of audio", |s| s.received >= 100);

    // The middle relay dies (SIGKILL: no goodbye); its child re-attaches.
    let (mut l1, _) = listeners.remove(0);
    let killed_at = Instant::now();
    l1.child.kill().expect("kill l1");
    let (l2, _) = &mut listeners[0];
    let reattached = l2.expect("re-attachment", |e| {
        matches!(e, Event::AudioAttached { .. })
    });
    let repair = killed_at.elapsed();
    assert!(
        matches!(reattached, Event::AudioAttached { depth: 1, .. }),
        "l2 moves up to the host: {reattached:?}"
    );
    assert!(
        repair < Duration::from_secs(1),
        "re-attached after {repair:?}"
    );
    // Keep listening for two more seconds after the repair, then end the room.
    let before = l2.expect_stats("audio stats", |_| true).received;
    l2.expect_stats("2 more seconds of audio", |s| s.received >= before + 100);

    // l2 now leaves gracefully: its child l3 is told first, moves up to the host while l2 keeps
    // feeding it, and misses nothing.
    let (l3, _) = &mut listeners[1];
    l3.expect_stats("l3 under l2", |s| s.depth == Some(2));
    l3.expect_stats("l3 playing", |s| s.played > 0);
    let before = l3.expect_stats("audio stats", |_| true);
    let (l2, _) = &mut listeners[0];
    l2.say("/leave");
    let (l3, _) = &mut listeners[1];
    let lost = l3.expect("told its parent is leaving", |e| {
        matches!(e, Event::AudioLost { .. })
    });
    assert!(
        matches!(lost, Event::AudioLost { leaving: true, .. }),
        "{lost:?}"
    );
    let moved = l3.expect("moved", |e| matches!(e, Event::AudioAttached { .. }));
    assert!(
        matches!(moved, Event::AudioAttached { depth: 1, .. }),
        "l3 moves up to the host: {moved:?}"
    );
    let after = l3.expect_stats("2 more seconds of audio", |s| {
        s.received >= before.received + 100
    });
    // Every frame the host sent since l3 first heard it, less those that arrived: none more
    // are missing after the hand-over than before it.
    assert_eq!(
        missing(&after),
        missing(&before),
        "a graceful hand-over lost frames: before {before:?}, after {after:?}"
    );
    host.say("/end");
    for (live, output) in listeners {
        assert_eq!(live.exit_code(), 0);
        let samples = read_wav(&output);
        let seconds = samples.len() as f32 / 48_000.0;
        assert!(
            seconds > 1.5,
            "{}: only {seconds:.1} s of audio",
            output.display()
        );
        // Skip the first half second (buffering) and the last (the room ending).
        let gaps = silent_chunks(&samples, 0.5, seconds - 0.5);
        assert!(
            gaps * 20 < 1000,
            "{}: {gaps} silent 20 ms chunks in the tone",
            output.display()
        );
    }
}

/// Power of `hertz` in 48 kHz samples (Goertzel), normalised by length.
fn tone_power(samples: &[f32], hertz: f32) -> f64 {
    let k = 2.0 * (std::f64::consts::TAU * f64::from(hertz) / 48_000.0).cos();
    let (mut s1, mut s2) = (0.0f64, 0.0f64);
    for sample in samples {
        let s0 = f64::from(*sample) + k * s1 - s2;
        s2 = s1;
        s1 = s0;
    }
    (s1 * s1 + s2 * s2 - k * s1 * s2) / (samples.len() as f64).powi(2)
}

/// The host and a speaker talk at once (tones at 440 and 660 Hz): a listener hears both. When a
/// moderator mutes the speaker, the host stops relaying its voice.
#[test]
fn two_speakers_at_once_and_a_muted_one() {
    let ana = TestHome::new();
    let room = local_room(&ana, "Duet");
    let mut host = Live::start("host", &ana, &["host", &room, "--input", "sine"]);
    let link = host.listener_link();
    let speaker_link = ana.invite(&[&room, "--role", "speaker"]);
    let (bo, cy) = (TestHome::new(), TestHome::new());
    let mut speaker = Live::start(
        "bo",
        &bo,
        &[
            "join",
            &speaker_link,
            "--name",
            "bo",
            "--listen",
            LOCAL,
            "--input",
            "sine:660",
        ],
    );
    speaker.expect("joined", |e| matches!(e, Event::Joined { .. }));
    let output = cy.join("out.wav");
    let mut listener = Live::start(
        "cy",
        &cy,
        &[
            "join",
            &link,
            "--name",
            "cy",
            "--listen",
            LOCAL,
            "--output",
            output.to_str().expect("utf-8 path"),
        ],
    );
    listener.expect("joined", |e| matches!(e, Event::Joined { .. }));
    let before_mute = listener
        .expect_stats("3 s of audio", |s| s.received >= 150)
        .received;
    host.say("/mute bo");
    listener.expect(
        "bo muted",
        |e| matches!(e, Event::Muted { name, .. } if name == "bo"),
    );
    // Frames now carry the host's voice only: received keeps growing at one stream's rate.
    listener.expect_stats("2 more seconds", |s| s.received >= before_mute + 100);
    host.say("/end");
    assert_eq!(listener.exit_code(), 0);
    assert_eq!(speaker.exit_code(), 0);

    let samples = read_wav(&output);
    let seconds = samples.len() / 48_000;
    assert!(seconds >= 4, "{seconds} s of audio");
    let both = &samples[48_000..2 * 48_000];
    let muted = &samples[samples.len() - 48_000 - 24_000..samples.len() - 24_000];
    let noise = tone_power(both, 1_000.0).max(1e-12);
    assert!(tone_power(both, 440.0) > 100.0 * noise, "the host is heard");
    assert!(
        tone_power(both, 660.0) > 100.0 * noise,
        "the speaker is heard"
    );
    assert!(
        tone_power(muted, 440.0) > 100.0 * noise,
        "the host is still heard"
    );
    assert!(
        tone_power(muted, 660.0) < tone_power(both, 660.0) / 100.0,
        "the muted speaker is not relayed"
    );
}

/// The headline: a WAV file said on stage reaches listeners three hops down the tree, as
/// real processes, and each listener's WAV file holds the same speech. A member on stage speaks
/// (so the voice crosses speaker → host → l1 → l2 → l3); it is promoted only once all three
/// listeners are in place, so everyone hears the whole sample.
#[test]
fn speech_from_the_stage_reaches_three_hops_down_intact() {
    use earshot_node::audio::signal::{similarity_in_windows, speechlike};
    let ana = TestHome::new();
    let room = local_room(&ana, "Readings");
    let mut host = Live::start(
        "host",
        &ana,
        &[
            "host",
            &room,
            "--input",
            "silence",
            "--output",
            "null",
            "--max-children",
            "1",
        ],
    );
    let link = host.listener_link();
    let homes = [TestHome::new(), TestHome::new(), TestHome::new()];
    let mut listeners = chain(&link, &homes);
    let reader = TestHome::new();
    let speech = reader.join("speech.wav");
    let samples = speechlike(4 * 48_000, 33);
    earshot_node::audio::wav::write(&speech, &samples).expect("write speech");
    let mut speaker = Live::start(
        "reader",
        &reader,
        &[
            "join",
            &link,
            "--name",
            "reader",
            "--listen",
            LOCAL,
            "--input",
            speech.to_str().expect("utf-8 path"),
            "--output",
            "null",
        ],
    );
    speaker.expect("audio_attached", |e| {
        matches!(e, Event::AudioAttached { .. })
    });
    // The reader asks to speak; the host brings them up.
    speaker.say("/hand");
    host.expect(
        "the reader's hand",
        |e| matches!(e, Event::HandRaised { name, .. } if name == "reader"),
    );
    host.say("/promote reader");
    speaker.expect("on stage", |e| {
        matches!(e, Event::RoleChanged { name, role: RoomRole::Speaker, .. } if name == "reader")
    });
    // Four seconds of speech, then a second of silence: the deepest listener has it all.
    let (l3, _) = &mut listeners[2];
    l3.expect_stats("the whole sample", |s| s.delivered >= 250);
    host.say("/end");
    assert_eq!(speaker.exit_code(), 0);
    for (mut live, output) in listeners {
        let last = live.expect_stats("the last report", |s| s.r#final);
        let (expected, delivered) = (last.expected, last.delivered);
        assert!(
            delivered * 100 >= expected * 99 && expected >= 200,
            "{}: {delivered} of {expected} frames",
            live.name
        );
        assert_eq!(live.exit_code(), 0);
        // Where the speech starts in the output (it was silence before the promotion).
        let heard = read_wav(&output);
        let onset = heard
            .iter()
            .position(|s| s.abs() > 0.01)
            .expect("speech in the output");
        let heard = &heard[onset.saturating_sub(4_800)..];
        // Aligned a tenth of a second at a time: the jitter buffer shortens its delay by a
        // frame once it has measured the network (and a relay's hand-over may shift it too).
        let score = similarity_in_windows(&samples, heard, 4_800);
        assert!(score >= 0.9, "{}: similarity {score:.3}", output.display());
    }
}

/// The README's main job: `earshot demo` runs a whole room and reports every listener's audio.
#[test]
fn the_demo_runs_a_whole_room() {
    let home = TestHome::new();
    let dir = home.join("demo");
    let output = home.run(&[
        "demo",
        "--listeners",
        "3",
        "--seconds",
        "2",
        "--input",
        "-",
        "--dir",
        dir.to_str().expect("utf-8 path"),
        "--json",
    ]);
    // `--input -` is not a WAV file: a clear error, nothing started.
    assert_eq!(code(&output), 1, "{}", stderr(&output));
    assert!(stderr(&output).contains("reading -"), "{}", stderr(&output));

    let speech = home.join("speech.wav");
    earshot_node::audio::wav::write(
        &speech,
        &earshot_node::audio::signal::speechlike(2 * 48_000, 5),
    )
    .expect("write speech");
    let run = |extra: &[&str]| -> (Vec<DemoNode>, Vec<DemoDepth>) {
        let mut args = vec![
            "demo",
            "--listeners",
            "3",
            "--input",
            speech.to_str().expect("utf-8 path"),
            "--dir",
            dir.to_str().expect("utf-8 path"),
            "--json",
        ];
        args.extend(extra);
        let output = home.run(&args);
        assert_eq!(code(&output), 0, "{}", stderr(&output));
        let stdout = String::from_utf8_lossy(&output.stdout);
        stdout
            .lines()
            .map(|line| {
                serde_json::from_str::<Event>(line)
                    .unwrap_or_else(|err| panic!("not an event ({err}): {line}"))
            })
            .find_map(|event| match event {
                Event::DemoSummary { nodes, depths, .. } => Some((nodes, depths)),
                _ => None,
            })
            .unwrap_or_else(|| panic!("no summary in {stdout}"))
    };
    let at_depth = |nodes: &[DemoNode], depth: u64| {
        nodes
            .iter()
            .filter(|n| !n.relay && n.depth == Some(depth))
            .count()
    };
    let heard = |nodes: &[DemoNode]| {
        for node in nodes.iter().filter(|n| n.name.starts_with('l')) {
            let (expected, delivered) = (node.expected, node.delivered);
            // Three seconds at least (a listener placed last, three deep, on a loaded 2-core
            // machine heard 199 frames of the run once), and 99 % of them.
            assert!(
                expected >= 150 && delivered * 100 >= expected * 99,
                "{node:?}"
            );
            assert!(node.latency_p50_ms.is_some(), "{node:?}");
            let wav = dir.join(format!("{}.wav", node.name));
            assert!(read_wav(&wav).len() > 48_000 * 2, "{}", wav.display());
        }
    };
    // The summary per depth counts the listeners the table places there (the host and the
    // relay are not listeners), and what they heard.
    let summed = |nodes: &[DemoNode], depths: &[DemoDepth]| {
        let mut placed = std::collections::BTreeMap::new();
        for node in nodes.iter().filter(|n| n.name.starts_with('l')) {
            if let Some(depth) = node.depth {
                *placed.entry(depth).or_insert(0) += 1;
            }
        }
        let counted: std::collections::BTreeMap<u64, usize> =
            depths.iter().map(|d| (d.depth, d.listeners)).collect();
        assert_eq!(counted, placed, "{depths:?}");
        for depth in depths {
            assert!(depth.delivered * 100 >= depth.expected * 99, "{depth:?}");
        }
    };

    // With the community relay (the default): the host feeds the relay, the relay two
    // listeners, and the third hangs below one of them.
    let (nodes, depths) = run(&[]);
    assert_eq!(nodes.len(), 5, "{nodes:#?}");
    let relay = nodes
        .iter()
        .find(|n| n.relay)
        .unwrap_or_else(|| panic!("no relay in {nodes:#?}"));
    assert_eq!(relay.depth, Some(1), "{nodes:#?}");
    assert_eq!(relay.children, 2, "{nodes:#?}");
    assert_eq!(at_depth(&nodes, 2), 2, "{nodes:#?}");
    assert_eq!(at_depth(&nodes, 3), 1, "{nodes:#?}");
    heard(&nodes);
    summed(&nodes, &depths);

    // Without: the host feeds one listener, which feeds the other two.
    let (nodes, depths) = run(&["--no-relay"]);
    assert_eq!(nodes.len(), 4, "{nodes:#?}");
    assert_eq!(at_depth(&nodes, 1), 1, "{nodes:#?}");
    assert_eq!(at_depth(&nodes, 2), 2, "{nodes:#?}");
    heard(&nodes);
    summed(&nodes, &depths);
}
