//! `earshot host` and `earshot join` as child processes, driven through stdin and followed
//! through their `--json` event lines.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::harness::{TestHome, code, stderr};

const WAIT: Duration = Duration::from_secs(20);

/// A running `earshot` process whose stdout lines are parsed as JSON events.
pub(crate) struct Live {
    pub(crate) name: &'static str,
    pub(crate) child: Child,
    stdin: Option<ChildStdin>,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Live {
    pub(crate) fn start(name: &'static str, home: &TestHome, args: &[&str]) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_earshot"))
            .env_remove("EARSHOT_HOME")
            .env("RUST_LOG", "warn")
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

    /// Waits for a JSON event matching `predicate`.
    pub(crate) fn expect(&mut self, what: &str, predicate: impl Fn(&Value) -> bool) -> Value {
        self.expect_within(what, WAIT, predicate)
    }

    /// Waits up to `wait` for a JSON event matching `predicate`.
    pub(crate) fn expect_within(
        &mut self,
        what: &str,
        wait: Duration,
        predicate: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = Instant::now() + wait;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if let Ok(value) = serde_json::from_str::<Value>(&line)
                        && predicate(&value)
                    {
                        return value;
                    }
                }
                Err(_) => panic!(
                    "{}: no {what} within {wait:?}; it printed:\n{}",
                    self.name,
                    self.seen.join("\n")
                ),
            }
        }
    }

    /// Whether the process has printed an `event` line so far (without waiting).
    pub(crate) fn printed(&mut self, event: &str) -> bool {
        while let Ok(line) = self.lines.try_recv() {
            self.seen.push(line);
        }
        self.seen.iter().any(|line| {
            serde_json::from_str::<Value>(line).is_ok_and(|value| value["event"] == event)
        })
    }

    pub(crate) fn event(&mut self, event: &str) -> Value {
        self.expect(event, |v| v["event"] == event)
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
    let hosting = host.event("hosting");
    let link = hosting["listener_link"].as_str().expect("link").to_owned();

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
    let joined = guest.event("joined");
    assert_eq!(joined["role"], "listener");
    assert_eq!(joined["title"], "Book club");
    host.expect("joe joins", |v| {
        v["event"] == "member_joined" && v["name"] == "joe"
    });

    guest.say("/hand");
    host.expect("joe's hand", |v| {
        v["event"] == "hand_raised" && v["name"] == "joe"
    });
    host.say("/promote joe");
    guest.expect("promotion", |v| {
        v["event"] == "role_changed" && v["name"] == "joe" && v["role"] == "speaker"
    });
    guest.say("hi everyone");
    host.expect("joe's chat", |v| {
        v["event"] == "chat" && v["text"] == "hi everyone"
    });
    host.say("/react 🎉");
    guest.expect("the reaction", |v| {
        v["event"] == "reaction" && v["emoji"] == "🎉"
    });
    host.say("/who");
    let who = host.event("who");
    let members = who["members"].as_array().expect("members");
    assert_eq!(members.len(), 2, "{who}");

    host.say("/end");
    guest.event("room_ended");
    guest.expect("closing", |v| {
        v["event"] == "closed" && v["reason"] == "ended"
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
    let link = host.event("hosting")["listener_link"]
        .as_str()
        .expect("link")
        .to_owned();
    let mut guest = Live::start(
        "troll",
        &troll,
        &["join", &link, "--name", "troll", "--listen", LOCAL],
    );
    guest.event("joined");
    host.expect("troll joins", |v| {
        v["event"] == "member_joined" && v["name"] == "troll"
    });
    host.say("/remove troll");
    guest.expect("removal", |v| {
        v["event"] == "closed" && v["reason"] == "removed"
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
        let attached = live.event("audio_attached");
        assert_eq!(attached["depth"], i + 1, "{name}: {attached}");
        listeners.push((live, output));
    }
    listeners
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
    let link = host.event("hosting")["listener_link"]
        .as_str()
        .expect("link")
        .to_owned();
    let homes = [TestHome::new(), TestHome::new(), TestHome::new()];
    let mut listeners = chain(&link, &homes);
    // Everyone says where it is; once the host has heard the deepest, /tree shows the chain.
    host.expect("l3's place in the tree", |v| {
        v["event"] == "tree_moved" && v["name"] == "l3" && v["depth"] == 3
    });
    host.say("/tree");
    let tree = host.event("tree");
    let depths: Vec<u64> = tree["nodes"]
        .as_array()
        .expect("nodes")
        .iter()
        .filter_map(|node| node["depth"].as_u64())
        .collect();
    assert_eq!(depths, vec![0, 1, 2, 3], "{tree}");

    // Let the tone flow: wait until the deepest listener has received two seconds of it.
    let (l3, _) = &mut listeners[2];
    l3.expect("2 s of audio", |v| {
        v["event"] == "audio_stats" && v["received"].as_u64().unwrap_or(0) >= 100
    });

    // The middle relay dies (SIGKILL: no goodbye); its child re-attaches.
    let (mut l1, _) = listeners.remove(0);
    let killed_at = Instant::now();
    l1.child.kill().expect("kill l1");
    let (l2, _) = &mut listeners[0];
    let reattached = l2.expect("re-attachment", |v| v["event"] == "audio_attached");
    let repair = killed_at.elapsed();
    assert_eq!(
        reattached["depth"], 1,
        "l2 moves up to the host: {reattached}"
    );
    assert!(
        repair < Duration::from_secs(1),
        "re-attached after {repair:?}"
    );
    // Keep listening for two more seconds after the repair, then end the room.
    let before = l2.expect("audio stats", |v| v["event"] == "audio_stats")["received"]
        .as_u64()
        .unwrap_or(0);
    l2.expect("2 more seconds of audio", |v| {
        v["event"] == "audio_stats" && v["received"].as_u64().unwrap_or(0) >= before + 100
    });

    // l2 now leaves gracefully: its child l3 is told first, moves up to the host while l2 keeps
    // feeding it, and misses nothing.
    let (l3, _) = &mut listeners[1];
    l3.expect("l3 under l2", |v| {
        v["event"] == "audio_stats" && v["depth"] == 2
    });
    l3.expect("l3 playing", |v| {
        v["event"] == "audio_stats" && v["played"].as_u64().unwrap_or(0) > 0
    });
    let before = l3.expect("audio stats", |v| v["event"] == "audio_stats");
    let (l2, _) = &mut listeners[0];
    l2.say("/leave");
    let (l3, _) = &mut listeners[1];
    let lost = l3.expect("told its parent is leaving", |v| v["event"] == "audio_lost");
    assert_eq!(lost["leaving"], true, "{lost}");
    let moved = l3.expect("moved", |v| v["event"] == "audio_attached");
    assert_eq!(moved["depth"], 1, "l3 moves up to the host: {moved}");
    let received = before["received"].as_u64().unwrap_or(0);
    let after = l3.expect("2 more seconds of audio", |v| {
        v["event"] == "audio_stats" && v["received"].as_u64().unwrap_or(0) >= received + 100
    });
    // Every frame the host sent since l3 first heard it, less those that arrived: none more
    // are missing after the hand-over than before it.
    let missing =
        |v: &Value| v["expected"].as_u64().unwrap_or(0) - v["delivered"].as_u64().unwrap_or(0);
    assert_eq!(
        missing(&after),
        missing(&before),
        "a graceful hand-over lost frames: before {before}, after {after}"
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
    let link = host.event("hosting")["listener_link"]
        .as_str()
        .expect("link")
        .to_owned();
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
    speaker.event("joined");
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
    listener.event("joined");
    let before_mute = listener.expect("3 s of audio", |v| {
        v["event"] == "audio_stats" && v["received"].as_u64().unwrap_or(0) >= 150
    })["received"]
        .as_u64()
        .unwrap_or(0);
    host.say("/mute bo");
    listener.expect("bo muted", |v| v["event"] == "muted" && v["name"] == "bo");
    // Frames now carry the host's voice only: received keeps growing at one stream's rate.
    listener.expect("2 more seconds", |v| {
        v["event"] == "audio_stats" && v["received"].as_u64().unwrap_or(0) >= before_mute + 100
    });
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
    let link = host.event("hosting")["listener_link"]
        .as_str()
        .expect("link")
        .to_owned();
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
    speaker.event("audio_attached");
    host.say("/promote reader");
    speaker.expect("on stage", |v| {
        v["event"] == "role_changed" && v["name"] == "reader" && v["role"] == "speaker"
    });
    // Four seconds of speech, then a second of silence: the deepest listener has it all.
    let (l3, _) = &mut listeners[2];
    l3.expect("the whole sample", |v| {
        v["event"] == "audio_stats" && v["delivered"].as_u64().unwrap_or(0) >= 250
    });
    host.say("/end");
    assert_eq!(speaker.exit_code(), 0);
    for (mut live, output) in listeners {
        let last = live.expect("the last report", |v| v["final"] == true);
        let (expected, delivered) = (
            last["expected"].as_u64().unwrap_or(0),
            last["delivered"].as_u64().unwrap_or(0),
        );
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
    let run = |extra: &[&str]| -> Value {
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
            .filter_map(|line| serde_json::from_str::<Value>(line).ok())
            .find(|v| v["event"] == "demo_summary")
            .unwrap_or_else(|| panic!("no summary in {stdout}"))
    };
    let depths = |nodes: &[Value], depth: u64| {
        nodes
            .iter()
            .filter(|n| n["relay"] == false && n["depth"].as_u64() == Some(depth))
            .count()
    };
    let heard = |nodes: &[Value]| {
        for node in nodes
            .iter()
            .filter(|n| n["name"].as_str().is_some_and(|n| n.starts_with('l')))
        {
            let (expected, delivered) = (
                node["expected"].as_u64().unwrap_or(0),
                node["delivered"].as_u64().unwrap_or(0),
            );
            assert!(
                expected >= 200 && delivered * 100 >= expected * 99,
                "{node}"
            );
            assert!(node["latency_p50_ms"].is_u64(), "{node}");
            let wav = dir.join(format!("{}.wav", node["name"].as_str().expect("name")));
            assert!(read_wav(&wav).len() > 48_000 * 2, "{}", wav.display());
        }
    };

    // With the community relay (the default): the host feeds the relay, the relay two
    // listeners, and the third hangs below one of them.
    let summary = run(&[]);
    let nodes = summary["nodes"].as_array().expect("nodes");
    assert_eq!(nodes.len(), 5, "{summary}");
    let relay = nodes
        .iter()
        .find(|n| n["relay"] == true)
        .unwrap_or_else(|| panic!("no relay in {summary}"));
    assert_eq!(relay["depth"], 1, "{summary}");
    assert_eq!(relay["children"], 2, "{summary}");
    assert_eq!(depths(nodes, 2), 2, "{summary}");
    assert_eq!(depths(nodes, 3), 1, "{summary}");
    heard(nodes);

    // Without: the host feeds one listener, which feeds the other two.
    let summary = run(&["--no-relay"]);
    let nodes = summary["nodes"].as_array().expect("nodes");
    assert_eq!(nodes.len(), 4, "{summary}");
    assert_eq!(depths(nodes, 1), 1, "{summary}");
    assert_eq!(depths(nodes, 2), 2, "{summary}");
    heard(nodes);
}
