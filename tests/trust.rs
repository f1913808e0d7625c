//! Issue 13, audio nobody in the middle can fake: a real adversary (`earshot join --misbehave
//! KIND`, a hidden flag) in a real tree, and what the people around it notice.
//!
//! The relay attacks share one topology: a host speaking a WAV file feeds one child, the
//! adversary, which feeds a listener two hops down that writes what it hears to a WAV file. The
//! listener must notice, move up under the host within a second, keep hearing, and have heard
//! nothing but the host's speech. The figures (detection and re-attach times, memory) are
//! printed: `cargo test --test integration trust -- --test-threads 1 --nocapture`.

use std::io::{BufRead, BufReader, Write};
use std::ops::Range;
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use earshot_node::Event;
use earshot_node::audio::signal::{self, speechlike};
use earshot_node::audio::wav;
use earshot_node::event::AudioStats;
use earshot_protocol::state::RoomRole;

use crate::harness::{TestHome, code, stderr};
use crate::live::{LOCAL, Live, listener, local_room_with, read_wav, tone_host};

const RATE: usize = 48_000;

/// The scenes run one at a time: each is four processes whose timing is the test (on two cores,
/// two scenes at once starve each other's players and streams). The network lab's scenes take
/// the same lock.
static SCENES: std::sync::Mutex<()> = std::sync::Mutex::new(());

pub(crate) fn scene_lock() -> std::sync::MutexGuard<'static, ()> {
    SCENES
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// How long the host speaks: longer than any test here runs.
pub(crate) const SPEECH_SECONDS: usize = 40;
/// A listener that lost its parent to an attack is under another within this.
const REPAIR_BOUND: Duration = Duration::from_secs(1);
/// Detection: the slowest check (a withholding parent) fails a stream within 1.6 s of its
/// last beacon; with joining, well within this.
const DETECTION_BOUND: Duration = Duration::from_secs(10);

// ---- The relay attacks.

/// Relays every frame with its payload changed: caught by the first proof.
#[test]
fn a_relay_that_alters_frames_is_caught_and_left() {
    let _one_scene_at_a_time = scene_lock();
    relay_attack("alter", &["forged"]);
}

/// Relays the room and frames of its own under the speaker's id between them.
#[test]
fn a_relay_that_injects_frames_is_caught_and_left() {
    let _one_scene_at_a_time = scene_lock();
    relay_attack("inject", &["forged"]);
}

/// Relays authentic frames three seconds late (and drops their proofs).
#[test]
fn a_relay_that_replays_old_frames_is_caught_and_left() {
    let _one_scene_at_a_time = scene_lock();
    relay_attack("replay", &["forged", "withholds"]);
}

/// Relays only keep-alives and the host's beacons.
#[test]
fn a_relay_that_withholds_frames_is_caught_and_left() {
    let _one_scene_at_a_time = scene_lock();
    relay_attack("withhold", &["withholds"]);
}

/// A relay that gathers two listeners and then forges: both catch it, leave it, and accuse it to
/// the host (up the tree, each showing the ticket that placed it there). Two distinct accusers
/// take it out of the relay tree; both hear the speech again, and nothing else.
#[test]
fn a_relay_caught_by_two_listeners_is_taken_out_of_the_tree() {
    let _one_scene_at_a_time = scene_lock();
    let homes = [
        TestHome::new(),
        TestHome::new(),
        TestHome::new(),
        TestHome::new(),
    ];
    let [ana, mal, joe, sue] = &homes;
    let Opening {
        mut host,
        adversary,
        link,
        adversary_peer,
        speech,
        ..
    } = Opening::start(ana, mal, "turn");
    let output = joe.join("out.wav");
    let out = output.to_str().expect("utf-8 path");
    let mut first = listener(
        "joe",
        joe,
        &link,
        &["--input", "silence", "--output", out, "--max-children", "1"],
    );
    let under_adversary = |e: &Event| matches!(e, Event::AudioAttached { parent, depth: 2, .. } if parent.to_string() == adversary_peer);
    first.expect("joe under the adversary", under_adversary);
    // Joe's place came up in the adversary's report: the adversary's own places are the
    // shallowest on offer again.
    host.expect("joe in the audience", |e| {
        matches!(e, Event::Audience { listeners: 2, .. })
    });
    let mut second = listener(
        "sue",
        sue,
        &link,
        &["--input", "silence", "--max-children", "1"],
    );
    second.expect("sue under the adversary", under_adversary);
    // With two children the adversary turns: both catch it.
    for live in [&mut first, &mut second] {
        let lost = live.expect_within("audio_lost", DETECTION_BOUND, |e| {
            matches!(e, Event::AudioLost { parent, .. } if parent.to_string() == adversary_peer)
        });
        let Event::AudioLost { reason, .. } = lost else {
            unreachable!("matched above")
        };
        assert!(
            reason.contains("forged"),
            "lost the adversary because {reason:?}"
        );
    }
    // Their accusations reach the host, which takes the adversary out.
    let excluded = host.expect_within("the adversary excluded", Duration::from_secs(20), |e| {
        matches!(e, Event::RelayAccused { excluded: true, .. })
    });
    let Event::RelayAccused {
        relay, accusers, ..
    } = excluded
    else {
        unreachable!("matched above")
    };
    assert_eq!(
        relay.to_peer_id().map(|peer| peer.to_string()).ok(),
        Some(adversary_peer.clone()),
        "the host excluded the adversary"
    );
    assert_eq!(accusers, 2);
    assert!(
        host.printed(|e| matches!(
            e,
            Event::RelayAccused {
                excluded: false,
                accusers: 1,
                ..
            }
        )),
        "one accusation alone excluded nobody"
    );
    // Both hear the room again, from someone else.
    for live in [&mut first, &mut second] {
        live.expect("audio_attached to someone else", |e| {
            matches!(e, Event::AudioAttached { parent, .. } if parent.to_string() != adversary_peer)
        });
        let before = live.expect_stats("a report", |_| true);
        live.expect_stats("frames again", |s| s.delivered >= before.delivered + 200);
    }
    host.say("/end");
    let last = first.expect_stats("the last report", |s| s.r#final);
    assert_eq!(first.exit_code(), 0);
    assert_eq!(second.exit_code(), 0);
    assert_eq!(host.exit_code(), 0);
    drop(adversary);
    let heard = hear(&speech, &read_wav(&output));
    eprintln!(
        "turn: joe's last report: {} of {} frames delivered, {} concealed",
        last.delivered, last.expected, last.concealed
    );
    // Joe may hear the first of the turned relay's frames before their proofs: at most the
    // proof deadline's worth, once (see `fanout::check`).
    heard.assert_speech_with_forged_at_most(
        "turn",
        0.8,
        earshot_protocol::proof::check::PROOF_DEADLINE_MS as f64 / 1000.0,
    );
}

/// Relays the room and a flood of tiny frames under ever new speaker ids; the listener's memory
/// stays flat afterwards.
#[test]
fn a_relay_that_floods_speaker_ids_is_caught_and_left() {
    let _one_scene_at_a_time = scene_lock();
    let mut scene = Scene::start("flood-ids");
    scene.moves_up(&["forged"]);
    // Once a second (each `audio_stats`) for ten seconds after the move: the listener's
    // resident memory, and the frames it has had.
    let pid = scene.listener.child.id();
    let (mut rss, mut delivered) = (Vec::new(), Vec::new());
    while rss.len() < 10 {
        let stats = scene
            .listener
            .expect_stats("a report after the move", |_| true);
        rss.push(rss_kib(pid));
        delivered.push(stats.delivered);
    }
    let first = rss[0];
    let most = rss.iter().copied().max().unwrap_or(first);
    eprintln!(
        "flood-ids: the listener's VmRSS once a second after the move (KiB): {rss:?}; when it \
         started hearing the adversary: {} KiB",
        scene.rss_before_kib
    );
    assert!(
        most <= first + 5 * 1024,
        "the listener's memory grew by {} KiB after the attack: {rss:?} KiB",
        most - first
    );
    assert!(
        delivered[9] >= delivered[0] + 400,
        "frames under the host, once a second: {delivered:?}"
    );
    scene.finish();
}

/// Frames two at a time in the wrong order is no attack on authenticity: the jitter buffer puts
/// them right, nothing is evicted, and the audio is intact.
#[test]
fn a_relay_that_reorders_frames_is_kept() {
    let _one_scene_at_a_time = scene_lock();
    let mut scene = Scene::start("reorder");
    // Eight seconds of audio, unless the listener leaves the adversary first.
    let mut stats_unless_lost = |what: &str, least: u64| {
        scene
            .listener
            .expect_map(what, |e| match e {
                Event::AudioStats(s) if s.delivered >= least => Some(Ok(AudioStats::clone(s))),
                Event::AudioLost { reason, .. } => Some(Err(reason.clone())),
                _ => None,
            })
            .unwrap_or_else(|reason| {
                panic!("the listener left a relay that only reordered frames: {reason}")
            })
    };
    let before = stats_unless_lost("the listener's report", 0);
    let after = stats_unless_lost("8 more seconds of audio", before.delivered + 400);
    assert_eq!(after.depth, Some(2), "still under the adversary: {after:?}");
    let heard = scene.finish();
    assert!(
        heard.similarity >= 0.9,
        "reordered speech: similarity {:.3}",
        heard.similarity
    );
}

// ---- On stage, the host's door, and the tree's bookkeeping.

/// A member on stage who sends frames under the host's speaker id: the host closes its voice
/// stream, and no listener hears it (it says a 3 kHz tone; the host's speech has nothing there).
#[test]
fn a_speaker_impersonating_the_host_is_not_heard() {
    let _one_scene_at_a_time = scene_lock();
    let scene = Impersonation::run(false);
    eprintln!(
        "impersonate: 3 kHz power in the listener's output {:.2e} (the tone itself: {:.2e})",
        scene.tone, TONE_POWER
    );
}

/// The host records while a member on stage impersonates it: the recording holds the host's
/// speech and nothing of the impersonator, and every frame in it verifies.
#[test]
fn a_recording_made_under_attack_holds_only_what_the_speakers_said() {
    let _one_scene_at_a_time = scene_lock();
    let scene = Impersonation::run(true);
    let ana = &scene.host_home;
    let id = scene.recording.expect("the room was recorded");
    let verify = ana.run(&["recordings", "verify", &id, "--json"]);
    let stdout = String::from_utf8_lossy(&verify.stdout);
    eprintln!("recording: verify says {stdout}");
    assert_eq!(
        code(&verify),
        0,
        "recordings verify {id}: {stdout}{}",
        stderr(&verify)
    );
    let report: serde_json::Value =
        serde_json::from_str(&stdout).unwrap_or_else(|err| panic!("{err}: {stdout}"));
    let total = &report["total"];
    assert_eq!(report["verified"], true, "{report}");
    assert!(
        total["frames"].as_u64().is_some_and(|n| n >= 400)
            && total["verified"] == total["frames"]
            && total["forged"] == 0,
        "{report}"
    );
    // Only the host is heard in it (the impersonator never got a frame in), and the recording
    // keeps the host's own signed word that the key heard is the host's, on stage.
    let speaking: Vec<&serde_json::Value> = report["speakers"]
        .as_array()
        .expect("speakers")
        .iter()
        .filter(|s| s["tally"]["frames"].as_u64().unwrap_or(0) > 0)
        .collect();
    assert!(
        speaking.len() == 1 && speaking[0]["name"] == "host",
        "{report}"
    );
    assert_eq!(speaking[0]["named_by_host"], "host", "{report}");
    assert!(
        report["stage_views"].as_u64().is_some_and(|n| n >= 1),
        "{report}"
    );
    let exported = ana.join("recording.wav");
    ana.event(&[
        "recordings",
        "export",
        &id,
        exported.to_str().expect("utf-8 path"),
    ]);
    let recorded = read_wav(&exported);
    let tone = tone_power(&recorded, TONE_HZ);
    assert!(
        tone < TONE_POWER / 10_000.0,
        "the impersonator's tone is in the recording: {tone:.2e} (the tone itself {TONE_POWER:.2e})"
    );
    let heard = hear(&scene.speech, &recorded);
    heard.assert_only_speech("the recording", 0.9);
}

/// A relay that claims room for 65,535 children is believed up to a member's share (16 places):
/// it takes its real two, and the host sends it at most the rest of those 16 to turn away, not
/// a newcomer every few milliseconds. (A parent cannot know a child's real capacity, only cap
/// what it believes.)
#[test]
fn a_relay_claiming_room_for_thousands_is_believed_up_to_a_members_share() {
    let _one_scene_at_a_time = scene_lock();
    let (ana, mal) = (TestHome::new(), TestHome::new());
    let room = local_room_with(&ana, "Trust", &[]);
    let mut host = tone_host(&ana, &room, &["--max-children", "1"]);
    let (link, _) = hosting(&mut host);
    let mut adversary = Logged::start(
        "adversary",
        &mal,
        "earshot_node::tree=debug",
        &[
            "join",
            &link,
            "--name",
            "adversary",
            "--listen",
            LOCAL,
            "--output",
            "null",
            "--input",
            "silence",
            "--misbehave",
            "claim-capacity",
            "--max-children",
            "2",
        ],
    );
    let adversary_peer = adversary.expect_map("joined", |e| match e {
        Event::Joined { peer_id, .. } => Some(peer_id.to_string()),
        _ => None,
    });
    adversary.expect("audio_attached", |e| {
        matches!(e, Event::AudioAttached { depth: 1, .. })
    });
    host.expect("the adversary in the audience", |e| {
        matches!(e, Event::Audience { listeners: 1, .. })
    });
    // Three listeners who feed nobody: two fit under the adversary, the third fits nowhere.
    let homes = [TestHome::new(), TestHome::new(), TestHome::new()];
    let mut listeners = Vec::new();
    for (i, home) in homes.iter().enumerate() {
        let name = ["l1", "l2", "l3"][i];
        let mut live = listener(name, home, &link, &["--max-children", "0"]);
        if i < 2 {
            let parent = live.expect_map("audio_attached", |e| match e {
                Event::AudioAttached { parent, .. } => Some(parent.to_string()),
                _ => None,
            });
            assert_eq!(parent, adversary_peer, "{name} under the adversary");
        } else {
            live.expect("joined", |e| matches!(e, Event::Joined { .. }));
        }
        listeners.push(live);
    }
    // Three seconds in the room for the third: the host has had time to place it (and, were
    // the claim believed, to send it to the adversary, which turns it away, again and again).
    let l3 = &mut listeners[2];
    for _ in 0..3 {
        l3.expect_stats("l3's report", |_| true);
    }
    let children = adversary.expect_map("the adversary's report", |e| match e {
        Event::AudioStats(stats) => Some(stats.children),
        _ => None,
    });
    assert!(children <= 2, "the adversary feeds {children} listeners");
    let turned_away = adversary.logged(|line| {
        line.contains("a listen stream was refused") && line.contains("as many children")
    });
    // A member's share is 16 places (`MEMBER_MAX_CHILDREN`), two of them real.
    let most = 14;
    assert!(
        turned_away.len() <= most,
        "the host placed {} listeners under the adversary beyond the two it can take (a member's \
         claim is believed up to {most} more):\n{}",
        turned_away.len(),
        turned_away.join("\n")
    );
    host.say("/end");
    assert_eq!(host.exit_code(), 0);
}

/// A host saying a tone in a room of its own in `home`, feeding one child itself; and its
/// listener link.
fn host_feeding_one(home: &TestHome) -> (Live, String) {
    let room = local_room_with(home, "Trust", &[]);
    let mut host = tone_host(home, &room, &["--max-children", "1"]);
    let (link, _) = hosting(&mut host);
    (host, link)
}

/// Issue 18: a child that reads its parent's stream at half its pace (`join --misbehave
/// slow-read`), so that the parent's beacons come back ever later, as they would over an uplink
/// that cannot carry it. What it hopes: its parent takes itself for thin and sheds the others.
/// What happens: the parent sheds that child alone, and its honest sibling keeps its place and
/// hears every frame.
#[test]
fn a_child_reading_slowly_is_shed_alone_and_its_sibling_keeps_hearing() {
    let _one_scene_at_a_time = scene_lock();
    let homes: [TestHome; 4] = std::array::from_fn(|_| TestHome::new());
    let (mut host, link) = host_feeding_one(&homes[0]);
    let peer_of = |live: &mut Live| {
        live.expect_map("joined", |e| match e {
            Event::Joined { peer_id, .. } => Some(*peer_id),
            _ => None,
        })
    };
    let parent_of = |live: &mut Live| {
        live.expect_map("audio_attached", |e| match e {
            Event::AudioAttached { parent, .. } => Some(*parent),
            _ => None,
        })
    };
    // The relay: the host's one child, feeding two.
    let mut relay = listener("relay", &homes[1], &link, &["--max-children", "2"]);
    let relay_id = peer_of(&mut relay);
    relay.expect("the relay attached", |e| {
        matches!(e, Event::AudioAttached { depth: 1, .. })
    });
    // Its honest child, then the slow reader: both can go nowhere else.
    let mut joe = listener("joe", &homes[2], &link, &["--max-children", "0"]);
    assert_eq!(parent_of(&mut joe), relay_id, "joe under the relay");
    let mut slow = listener(
        "slow",
        &homes[3],
        &link,
        &["--max-children", "0", "--misbehave", "slow-read"],
    );
    assert_eq!(
        parent_of(&mut slow),
        relay_id,
        "the slow reader under the relay"
    );
    let attached = Instant::now();
    relay.expect_stats("the relay feeding both", |s| s.children == 2);
    // The relay sheds the slow reader (told to move: it loses its parent, having been told).
    let reason = slow.expect_map_within(
        "the slow reader shed",
        Duration::from_secs(20),
        |e| match e {
            Event::AudioLost { parent, reason, .. } if *parent == relay_id => Some(reason.clone()),
            _ => None,
        },
    );
    let shed_after = attached.elapsed();
    let after = relay.expect_stats("the relay after the shed", |s| s.children == 1);
    assert!(
        after.capacity.is_some_and(|c| c >= 1),
        "the relay still offers a place to its honest child: {after:?}"
    );
    // Joe, measured from now over 500 frames (10 s): still under the relay, every frame.
    let start = joe.expect_stats("joe's report", |s| s.parent.is_some());
    let end = joe.expect_stats("joe's report 10 s on", |s| {
        s.expected >= start.expected + 500
    });
    let heard = (
        end.delivered - start.delivered,
        end.expected - start.expected,
    );
    let relay_end = relay.expect_stats("the relay's report", |_| true);
    let lost = joe.seen_events(|e| match e {
        Event::AudioLost { reason, .. } => Some(reason.clone()),
        _ => None,
    });
    let slow_back = relay_end.children;
    eprintln!(
        "slow reader shed after {shed_after:?} ({reason}); joe heard {} of {} frames after it; \
         the relay feeds {} (capacity {:?})",
        heard.0, heard.1, relay_end.children, relay_end.capacity
    );
    assert!(lost.is_empty(), "joe lost its parent: {lost:?}");
    assert_eq!(end.parent, Some(relay_id), "joe still under the relay");
    assert!(
        heard.0 * 100 >= heard.1 * 99,
        "joe heard {} of {} frames",
        heard.0,
        heard.1
    );
    assert_eq!(
        slow_back, 1,
        "the relay took the slow reader back, or shed joe"
    );
    host.say("/end");
    assert_eq!(host.exit_code(), 0);
}

/// Issue 15: keys reading slowly in the host's own places (a raid's relays placed under it), so
/// that its beacons come back late as over a thin uplink. What they hope: the host caps itself at
/// the children it feeds cleanly, and the whole room hangs below fewer and fewer places (a raid
/// once left a host with one child). What happens: the slow key is shed and not taken back; the
/// host offers the three places it has been seen to carry, and an honest newcomer gets one at
/// once, while the two honest children hear every frame.
#[test]
fn a_slow_key_in_the_hosts_place_costs_its_place_not_the_hosts() {
    let _one_scene_at_a_time = scene_lock();
    let homes: [TestHome; 6] = std::array::from_fn(|_| TestHome::new());
    let room = local_room_with(&homes[0], "Trust", &[]);
    let mut host = tone_host(&homes[0], &room, &["--max-children", "3"]);
    let (link, host_id) = hosting(&mut host);
    let depth_one = |e: &Event| matches!(e, Event::AudioAttached { depth: 1, .. });
    let mut honest = Vec::new();
    for (name, home) in ["l1", "l2", "l3"].into_iter().zip(&homes[1..4]) {
        let mut live = listener(name, home, &link, &["--max-children", "0"]);
        live.expect("under the host", depth_one);
        honest.push(live);
    }
    // The host feeds three for ten seconds: it has been seen to carry them.
    for _ in 0..10 {
        host.expect_stats("the host feeding three", |s| s.children == 3);
    }
    // One leaves; the slow key takes its place (the only one: the others feed nobody).
    let mut l3 = honest.pop().expect("three");
    l3.say("/leave");
    assert_eq!(l3.exit_code(), 0);
    let mut slow = listener(
        "slow",
        &homes[4],
        &link,
        &["--max-children", "0", "--misbehave", "slow-read"],
    );
    slow.expect("the slow key under the host", depth_one);
    let start = fresh_reports(&mut honest);
    let reason =
        slow.expect_map_within("the slow key shed", Duration::from_secs(20), |e| match e {
            Event::AudioLost { parent, reason, .. } if parent.to_string() == host_id => {
                Some(reason.clone())
            }
            _ => None,
        });
    host.drain();
    let shed = host.expect_stats("the host after the shed", |s| s.children == 2);
    // An honest newcomer: under the host at once (capped at the two it fed cleanly, the host
    // would have had no place for a minute, and nobody else feeds anyone).
    let mut newcomer = listener("l4", &homes[5], &link, &["--max-children", "0"]);
    let attached = newcomer.expect_within(
        "the newcomer under the host",
        Duration::from_secs(15),
        depth_one,
    );
    let end = fresh_reports(&mut honest);
    host.drain();
    let fed = host.expect_stats("the host feeding three again", |s| s.children == 3);
    let back = slow.seen_events(|e| match e {
        Event::AudioAttached { parent, .. } if parent.to_string() == host_id => Some(()),
        _ => None,
    });
    eprintln!(
        "slow key shed ({reason}); the host's capacity then {:?}, now {:?} feeding {}; the \
         newcomer: {attached:?}",
        shed.capacity, fed.capacity, fed.children
    );
    assert!(
        shed.capacity.is_some_and(|c| c >= 3),
        "the host capped itself: {shed:?}"
    );
    assert!(back.len() <= 1, "the host took the slow key back");
    for ((name, start), end) in ["l1", "l2"].iter().zip(&start).zip(&end) {
        let (heard, sent) = (
            end.delivered - start.delivered,
            end.expected - start.expected,
        );
        assert!(
            heard * 100 >= sent * 99 && end.depth == Some(1),
            "{name} heard {heard} of {sent} frames (depth {:?})",
            end.depth
        );
    }
    host.say("/end");
    assert_eq!(host.exit_code(), 0);
}

/// A relay that passes nothing its children say up the tree (`join --misbehave drop-up`): its
/// child's chat line does not come back down relayed, so the child sends it to the host
/// straight (`RoomRequest::Act`) after waiting 1.5 s for it, and the host and the listener below
/// hear it.
#[test]
fn a_relay_dropping_its_childrens_chat_is_gone_around() {
    let _one_scene_at_a_time = scene_lock();
    let homes: [TestHome; 4] = std::array::from_fn(|_| TestHome::new());
    let (mut host, link) = host_feeding_one(&homes[0]);
    let attached = |live: &mut Live, depth: u16| {
        live.expect(
            "audio_attached",
            |e| matches!(e, Event::AudioAttached { depth: d, .. } if *d == depth),
        );
    };
    let mut adversary = listener(
        "adversary",
        &homes[1],
        &link,
        &["--max-children", "1", "--misbehave", "drop-up"],
    );
    attached(&mut adversary, 1);
    let mut joe = listener("joe", &homes[2], &link, &["--max-children", "1"]);
    attached(&mut joe, 2);
    let mut sue = listener("sue", &homes[3], &link, &["--max-children", "0"]);
    attached(&mut sue, 3);
    let line = "hello from below the relay";
    let heard = |e: &Event| matches!(e, Event::Chat { text, .. } if text == line);
    let said = Instant::now();
    joe.say(line);
    host.expect("joe's line at the host", heard);
    let at_host = said.elapsed();
    sue.expect("joe's line at sue", heard);
    let at_sue = said.elapsed();
    eprintln!(
        "joe's line, its relay dropping it: at the host in {at_host:?}, at sue in {at_sue:?}"
    );
    // It waited for the tree (1.5 s), then went straight: within a moment more, even loaded.
    assert!(at_sue < Duration::from_secs(4), "{at_sue:?}");
    host.say("/end");
    assert_eq!(host.exit_code(), 0);
}

/// An adversary opening two hundred listen streams to the host without a ticket: every one is
/// refused, and the room goes on for a listener who joins after.
#[test]
fn listen_streams_without_a_ticket_are_all_refused() {
    let _one_scene_at_a_time = scene_lock();
    let (ana, mal, joe) = (TestHome::new(), TestHome::new(), TestHome::new());
    let room = local_room_with(&ana, "Trust", &[]);
    let mut host = Live::start(
        "host",
        &ana,
        &["host", &room, "--input", "sine", "--output", "null"],
    );
    let (link, _) = hosting(&mut host);
    let mut adversary = Logged::start(
        "adversary",
        &mal,
        "",
        &[
            "join",
            &link,
            "--name",
            "adversary",
            "--listen",
            LOCAL,
            "--output",
            "null",
            "--input",
            "silence",
            "--misbehave",
            "unassigned-streams",
        ],
    );
    let report = adversary.expect_log(
        "the adversary's report of its streams",
        Duration::from_secs(30),
        |line| line.contains("misbehaving: listen streams opened without a ticket"),
    );
    let (taken, refused) = (figure(&report, "taken"), figure(&report, "refused"));
    eprintln!("unassigned-streams: taken={taken} refused={refused}");
    assert_eq!(
        (taken, refused),
        (0, 200),
        "streams without a ticket: {report}"
    );
    // Refused faster than one a second, it was disconnected and kept out.
    let blocked = host.expect("the adversary kept out", |e| {
        matches!(e, Event::PeerBlocked { .. })
    });
    eprintln!("{blocked:?}");
    // The host still places and feeds a newcomer.
    let mut late = listener("listener", &joe, &link, &[]);
    late.expect("audio_attached", |e| {
        matches!(e, Event::AudioAttached { .. })
    });
    late.expect_stats("2 s of audio", |s| s.delivered >= 100);
    host.say("/end");
    assert_eq!(late.exit_code(), 0);
    assert_eq!(host.exit_code(), 0);
}

// ---- The relay-attack scene.

/// A host speaking 40 s of speech that feeds one child, the adversary `kind` (room for 4
/// children), once the host knows the adversary's free places.
struct Opening {
    host: Live,
    adversary: Live,
    link: String,
    host_peer: String,
    adversary_peer: String,
    speech: Speech,
}

impl Opening {
    fn start(ana: &TestHome, mal: &TestHome, kind: &str) -> Self {
        let room = local_room_with(ana, "Trust", &[]);
        let speech = Speech::new(SPEECH_SECONDS);
        let file = speech.file(ana);
        let mut host = Live::start(
            "host",
            ana,
            &[
                "host",
                &room,
                "--input",
                &file,
                "--output",
                "null",
                "--max-children",
                "1",
            ],
        );
        let (link, host_peer) = hosting(&mut host);
        let mut adversary = listener(
            "adversary",
            mal,
            &link,
            &[
                "--misbehave",
                kind,
                "--max-children",
                "4",
                "--input",
                "silence",
            ],
        );
        let adversary_peer = adversary.expect_map("joined", |e| match e {
            Event::Joined { peer_id, .. } => Some(peer_id.to_string()),
            _ => None,
        });
        adversary.expect("audio_attached at depth 1", |e| {
            matches!(e, Event::AudioAttached { depth: 1, .. })
        });
        // The adversary's report has come up: the host knows its free places.
        host.expect("the adversary in the audience", |e| {
            matches!(e, Event::Audience { listeners: 1, .. })
        });
        Self {
            host,
            adversary,
            link,
            host_peer,
            adversary_peer,
            speech,
        }
    }
}

/// The host, the adversary as its only child, and a listener under the adversary (the homes
/// last: dropped once the processes are).
struct Scene {
    kind: &'static str,
    host: Live,
    adversary: Live,
    listener: Live,
    host_peer: String,
    adversary_peer: String,
    speech: Speech,
    output: PathBuf,
    /// When the listener started hearing the adversary.
    attached_at: Instant,
    /// The listener's resident memory then.
    rss_before_kib: u64,
    _homes: [TestHome; 3],
}

impl Scene {
    /// Sets the scene for `kind`; returns once the listener hears the adversary.
    fn start(kind: &'static str) -> Self {
        let homes = [TestHome::new(), TestHome::new(), TestHome::new()];
        let [ana, mal, joe] = &homes;
        let Opening {
            host,
            adversary,
            link,
            host_peer,
            adversary_peer,
            speech,
        } = Opening::start(ana, mal, kind);
        let output = joe.join("out.wav");
        let mut heard = listener(
            "listener",
            joe,
            &link,
            &[
                "--input",
                "silence",
                "--output",
                output.to_str().expect("utf-8 path"),
            ],
        );
        let (parent, depth) = heard.expect_map("audio_attached", |e| match e {
            Event::AudioAttached { parent, depth, .. } => Some((parent.to_string(), *depth)),
            _ => None,
        });
        let attached_at = Instant::now();
        assert_eq!(
            (parent.as_str(), depth),
            (adversary_peer.as_str(), 2),
            "the listener lands under the adversary"
        );
        let rss_before_kib = rss_kib(heard.child.id());
        Self {
            kind,
            host,
            adversary,
            listener: heard,
            host_peer,
            adversary_peer,
            speech,
            output,
            attached_at,
            rss_before_kib,
            _homes: homes,
        }
    }

    /// The listener notices the attack (its parent lost for a reason naming one of `reasons`)
    /// and moves up under the host within [`REPAIR_BOUND`].
    fn moves_up(&mut self, reasons: &[&str]) {
        let kind = self.kind;
        let lost = self
            .listener
            .expect_within("audio_lost", DETECTION_BOUND, |e| {
                matches!(e, Event::AudioLost { .. })
            });
        let lost_at = Instant::now();
        let Event::AudioLost { parent, reason, .. } = lost else {
            unreachable!("matched above")
        };
        let parent = parent.to_string();
        let detected = lost_at - self.attached_at;
        assert_eq!(parent, self.adversary_peer, "{kind}: lost {parent}");
        assert!(
            reasons.iter().any(|r| reason.contains(r)),
            "{kind}: lost the adversary because {reason:?}, not for one of {reasons:?}"
        );
        let moved = self
            .listener
            .expect_within("re-attachment", Duration::from_secs(10), |e| {
                matches!(e, Event::AudioAttached { .. })
            });
        let repair = lost_at.elapsed();
        let Event::AudioAttached {
            parent,
            depth,
            repair_ms,
            ..
        } = moved
        else {
            unreachable!("matched above")
        };
        eprintln!(
            "{kind}: detected {detected:?} after the listener attached ({reason}); re-attached \
             {repair:?} after (the node says {repair_ms:?} ms)"
        );
        assert_eq!(
            (parent.to_string(), depth),
            (self.host_peer.clone(), 1),
            "{kind}: the listener moves up under the host"
        );
        assert!(
            repair < REPAIR_BOUND,
            "{kind}: re-attached {repair:?} after losing the adversary (the node says \
             {repair_ms:?} ms)"
        );
    }

    /// Frames keep arriving under the new parent: `seconds` more of them.
    fn keeps_hearing(&mut self, seconds: u64) {
        let before = self
            .listener
            .expect_stats("a report under the host", |s| s.depth == Some(1));
        self.listener.expect_stats("frames under the host", |s| {
            s.delivered >= before.delivered + 50 * seconds
        });
    }

    /// Ends the room and checks what the listener heard: most frames, and only the speech.
    fn finish(mut self) -> Heard {
        let kind = self.kind;
        self.host.say("/end");
        let last = self.listener.expect_stats("the last report", |s| s.r#final);
        assert_eq!(self.listener.exit_code(), 0);
        assert_eq!(self.host.exit_code(), 0);
        drop(self.adversary);
        let samples = read_wav(&self.output);
        let heard = hear(&self.speech, &samples);
        eprintln!(
            "{kind}: the listener's last report: {} of {} frames delivered, {} concealed",
            last.delivered, last.expected, last.concealed
        );
        heard.assert_only_speech(kind, 0.85);
        assert!(
            last.expected >= 200 && last.delivered * 100 >= last.expected * 95,
            "{kind}: {} of {} frames delivered",
            last.delivered,
            last.expected
        );
        heard
    }
}

/// The relay attack `kind`: the listener leaves the adversary for one of `reasons`, within a
/// second, keeps hearing, and heard only the speech.
fn relay_attack(kind: &'static str, reasons: &[&str]) {
    let mut scene = Scene::start(kind);
    scene.moves_up(reasons);
    scene.keeps_hearing(8);
    scene.finish();
}

// ---- The impersonation scene.

/// The adversary's voice (`--input sine:3000`): above every harmonic of the host's speech.
const TONE_HZ: f32 = 3_000.0;
/// [`tone_power`] of the adversary's tone (amplitude 0.3) heard throughout.
const TONE_POWER: f64 = 0.3 * 0.3 / 4.0;

/// A host speaking, an adversary promoted to the stage saying a tone under the host's id, and a
/// listener under the host.
struct Impersonation {
    speech: Speech,
    /// The recording's id, if the room was recorded.
    recording: Option<String>,
    /// [`tone_power`] at [`TONE_HZ`] in what the listener heard.
    tone: f64,
    host_home: TestHome,
}

impl Impersonation {
    fn run(record: bool) -> Self {
        let (ana, mal, joe) = (TestHome::new(), TestHome::new(), TestHome::new());
        let flags: &[&str] = if record { &["--record"] } else { &[] };
        let room = local_room_with(&ana, "Trust", flags);
        let speech = Speech::new(SPEECH_SECONDS);
        let file = speech.file(&ana);
        let mut host = Logged::start(
            "host",
            &ana,
            "",
            &["host", &room, "--input", &file, "--output", "null"],
        );
        let link = host.expect_map("hosting", |e| match e {
            Event::Hosting { listener_link, .. } => Some(listener_link.to_string()),
            _ => None,
        });
        let mut adversary = listener(
            "adversary",
            &mal,
            &link,
            // Agreeing to be recorded: on stage it speaks at once, recorded or not.
            &[
                "--misbehave",
                "impersonate",
                "--input",
                "sine:3000",
                "--consent-recording",
            ],
        );
        adversary.expect("audio_attached", |e| {
            matches!(e, Event::AudioAttached { .. })
        });
        let output = joe.join("out.wav");
        let mut heard = listener(
            "listener",
            &joe,
            &link,
            &[
                "--input",
                "silence",
                "--output",
                output.to_str().expect("utf-8 path"),
            ],
        );
        heard.expect("audio_attached", |e| {
            matches!(e, Event::AudioAttached { .. })
        });
        adversary.say("/hand");
        host.expect(
            "the adversary's hand",
            |e| matches!(e, Event::HandRaised { name, .. } if name == "adversary"),
        );
        host.say("/promote adversary");
        adversary.expect("on stage", |e| {
            matches!(e, Event::RoleChanged { name, role: RoomRole::Speaker, .. } if name == "adversary")
        });
        let before = heard.expect_stats("a report", |_| true);
        host.expect_log(
            "the forged voice stream closed",
            Duration::from_secs(10),
            |line| line.contains("closed a speaker's stream that failed its checks"),
        );
        heard.expect_stats("8 more seconds of audio", |s| {
            s.delivered >= before.delivered + 400
        });
        assert!(
            !heard.printed(|e| matches!(e, Event::AudioLost { .. })),
            "the listener lost the host"
        );
        host.say("/end");
        let recording = record.then(|| {
            host.expect_map("recording_saved", |e| match e {
                Event::RecordingSaved { recording, .. } => Some(recording.to_string()),
                _ => None,
            })
        });
        let last = heard.expect_stats("the last report", |s| s.r#final);
        assert!(
            last.delivered * 100 >= last.expected * 99,
            "{} of {} frames delivered",
            last.delivered,
            last.expected
        );
        assert_eq!(heard.exit_code(), 0);
        assert_eq!(adversary.exit_code(), 0);
        assert_eq!(host.exit_code(), 0);
        let samples = read_wav(&output);
        let tone = tone_power(&samples, TONE_HZ);
        assert!(
            tone < TONE_POWER / 10_000.0,
            "the listener heard the impersonator's tone: {tone:.2e} (the tone itself \
             {TONE_POWER:.2e})"
        );
        hear(&speech, &samples).assert_only_speech("impersonate", 0.9);
        Self {
            speech,
            recording,
            tone,
            host_home: ana,
        }
    }
}

/// Each listener's next report printed from now on (those printed before are passed over).
fn fresh_reports(listeners: &mut [Live]) -> Vec<AudioStats> {
    listeners
        .iter_mut()
        .map(|live| {
            live.drain();
            live.expect_stats("a report", |s| s.parent.is_some())
        })
        .collect()
}

/// Waits for `hosting`: the listener link and the host's PeerId.
fn hosting(host: &mut Live) -> (String, String) {
    host.expect_map("hosting", |e| match e {
        Event::Hosting {
            listener_link,
            peer_id,
            ..
        } => Some((listener_link.to_string(), peer_id.to_string())),
        _ => None,
    })
}

// ---- What the listener heard.

/// The host's speech: syllables in turns of talk, and pauses long enough that a forged sound
/// in one shows.
pub(crate) struct Speech {
    pub(crate) samples: Vec<f32>,
    /// Where the pauses are, in samples.
    pauses: Vec<Range<usize>>,
}

impl Speech {
    /// Turns of talk and pause, in milliseconds, one after the other.
    const TURNS: [(usize, usize); 5] = [
        (1100, 800),
        (900, 1000),
        (1400, 600),
        (700, 1200),
        (1200, 900),
    ];

    /// The speech as a WAV file in `home`, for an `--input`: its path.
    pub(crate) fn file(&self, home: &TestHome) -> String {
        let file = home.join("speech.wav");
        wav::write(&file, &self.samples).expect("write speech");
        file.to_str().expect("utf-8 path").to_owned()
    }

    pub(crate) fn new(seconds: usize) -> Self {
        let (mut samples, mut pauses) = (Vec::new(), Vec::new());
        let mut turn = 0;
        while samples.len() < seconds * RATE {
            let (talk, pause) = Self::TURNS[turn % Self::TURNS.len()];
            samples.extend(speechlike(talk * RATE / 1000, 50 + turn as u64));
            let start = samples.len();
            samples.resize(start + pause * RATE / 1000, 0.0);
            pauses.push(start..samples.len());
            turn += 1;
        }
        Self { samples, pauses }
    }
}

/// How what was heard compares with the speech.
#[derive(Debug)]
pub(crate) struct Heard {
    seconds: f64,
    /// Where the output starts in the speech, in seconds.
    offset_s: f64,
    /// Like [`signal::similarity_in_windows`] (each tenth of a second lined up on its own,
    /// averaged by energy), but searching both ways from the output's place in the speech.
    pub(crate) similarity: f64,
    /// Tenths of a second with sound the speech there does not explain.
    unexplained: Vec<Unexplained>,
    /// 20 ms chunks with broadband noise: (seconds into the output, RMS of the high band).
    noise: Vec<(f64, f64)>,
    /// Pauses in the speech that the output covers, checked for sound.
    pauses_checked: usize,
    /// Where (seconds into the output) a 20 ms chunk inside a pause of the speech has sound.
    loud_in_pauses: Vec<f64>,
    /// Each tenth of a second: where, its similarity with the speech, its RMS.
    windows: Windows,
}

/// The tenths of a second [`Heard::similarity`] averages (printed as their count).
struct Windows(Vec<(f64, f64, f64)>);

impl std::fmt::Debug for Windows {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} windows", self.0.len())
    }
}

/// A tenth of a second of the output that is not the speech.
struct Unexplained {
    /// Where, in seconds into the output.
    at_s: f64,
    rms: f64,
    /// Its similarity with the speech there.
    score: f64,
    /// The RMS of what is left once the speech is taken out.
    residual: f64,
}

impl std::fmt::Debug for Unexplained {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:.2} s: RMS {:.3}, similarity {:.2}, residual {:.3}",
            self.at_s, self.rms, self.score, self.residual
        )
    }
}

impl Heard {
    /// Wherever the output plays, it is the speech (`similarity` at least `least` overall), and
    /// it is quiet where the speech pauses.
    pub(crate) fn assert_only_speech(&self, what: &str, least: f64) {
        self.assert_speech_with_forged_at_most(what, least, 0.0);
    }

    /// [`Heard::assert_only_speech`], but for a relay that turns forger mid-stream: a listener
    /// may play frames before their proofs come (`fanout::check`), so the design lets at most
    /// [`PROOF_DEADLINE_MS`] of its forgery be heard, once. Whatever is not the speech must lie
    /// in one stretch no longer than `forged_s` (plus the 0.1 s the analysis steps by).
    pub(crate) fn assert_speech_with_forged_at_most(&self, what: &str, least: f64, forged_s: f64) {
        eprintln!(
            "{what}: heard {:.1} s from {:.2} s into the speech: {self:?}",
            self.seconds, self.offset_s
        );
        let flagged: Vec<f64> = self
            .unexplained
            .iter()
            .map(|u| u.at_s)
            .chain(self.noise.iter().map(|(at, _)| *at))
            .collect();
        let span = match (
            flagged.iter().copied().reduce(f64::min),
            flagged.iter().copied().reduce(f64::max),
        ) {
            (Some(first), Some(last)) => last - first,
            _ => -1.0,
        };
        assert!(
            flagged.is_empty() || (forged_s > 0.0 && span <= forged_s + 0.1),
            "{what}: sound that is not the speech (forged?): {self:?}"
        );
        assert!(
            self.loud_in_pauses.is_empty(),
            "{what}: sound where the speaker paused: {self:?}"
        );
        // The forged stretch let through (asserted above to be one and short) is not the
        // speech by design: the rest is compared with it.
        let similarity = match (
            flagged.iter().copied().reduce(f64::min),
            flagged.iter().copied().reduce(f64::max),
        ) {
            (Some(first), Some(last)) if forged_s > 0.0 => {
                let (mut weighted, mut total) = (0.0, 0.0);
                for &(at, score, rms) in &self.windows.0 {
                    if at + 0.1 > first && at < last + 0.1 {
                        continue;
                    }
                    weighted += score * rms * rms;
                    total += rms * rms;
                }
                if total == 0.0 { 0.0 } else { weighted / total }
            }
            _ => self.similarity,
        };
        assert!(
            similarity >= least,
            "{what}: similarity {similarity:.3} with the speech (beside any forged stretch): {self:?}"
        );
        assert!(
            self.seconds >= 3.0 && self.pauses_checked >= 2,
            "{what}: too little heard to tell: {self:?}"
        );
    }
}

/// 10 ms: the step of the loudness envelopes used to line the output up with the speech.
const HOP: usize = 480;
/// A 20 ms chunk whose peak reaches this (-36 dBFS) has sound.
const SOUND_PEAK: f32 = 0.016;
/// What of a tenth of a second the speech there cannot explain (the RMS of the rest, once the
/// best-matching speech is taken out): the speech decoded leaves at most 0.035 (at syllable
/// onsets), the decoder's concealment of the frames missed while moving to a new parent up to
/// 0.066 (seen once on a clean-clone CI run), a forger's frames 0.09 to 0.4. Forged payloads
/// are also caught apart, as broadband noise ([`NOISE_HF_RMS`]).
const UNEXPLAINED_RMS: f64 = 0.08;
/// Broadband noise: the RMS of a 20 ms chunk's second difference (a high-pass filter, gain 0.12
/// at 2.7 kHz and 1 at 8 kHz). The speech has no harmonic above 2.7 kHz and its decoded chunks
/// stay under 0.003; a forger's frames (random Opus payloads) reach 0.01 to 0.08.
const NOISE_HF_RMS: f64 = 0.006;

/// Compares `heard` (an output, from its first frame) with the speech.
pub(crate) fn hear(speech: &Speech, heard: &[f32]) -> Heard {
    let reference = &speech.samples;
    // Where the output starts in the speech: where their loudness envelopes line up best.
    let (env_ref, env_heard) = (envelope(reference), envelope(heard));
    let (shift, _) = best_shift(&env_ref, &env_heard, 0..env_ref.len());
    let offset = shift * HOP;
    // The last half second is the room ending (the jitter buffer running dry).
    let end = heard
        .len()
        .saturating_sub(RATE / 2)
        .min(reference.len().saturating_sub(offset));
    let heard = &heard[..end];

    // Each tenth of a second, from the very start (where a forger's first frames would play),
    // is searched for in the speech from 250 ms before its place there to 250 ms after (the
    // delay moves: the jitter buffer adapts, a new parent).
    let (mut weighted, mut total, mut unexplained) = (0.0, 0.0, Vec::new());
    let mut windows = Vec::new();
    let quarter = RATE / 4;
    for at in (0..heard.len().saturating_sub(4_799)).step_by(4_800) {
        let window = &heard[at..at + 4_800];
        let from = (at + offset).saturating_sub(quarter);
        let Some(spoken) = reference.get(from..from + 4_800 + 2 * quarter) else {
            break;
        };
        let score = signal::similarity(window, spoken);
        let rms = rms(window);
        weighted += score * rms * rms;
        total += rms * rms;
        windows.push((at as f64 / RATE as f64, score, rms));
        let residual = rms * (1.0 - score * score).max(0.0).sqrt();
        if residual >= UNEXPLAINED_RMS {
            unexplained.push(Unexplained {
                at_s: at as f64 / RATE as f64,
                rms,
                score,
                residual,
            });
        }
    }
    let noise = heard
        .chunks(960)
        .enumerate()
        .filter_map(|(i, chunk)| {
            let high: Vec<f32> = chunk.windows(3).map(|w| w[2] - 2.0 * w[1] + w[0]).collect();
            let high = rms(&high);
            (high >= NOISE_HF_RMS).then_some((i as f64 * 0.02, high))
        })
        .collect();

    // Where the speech pauses, the output is quiet.
    let mut loud_in_pauses = Vec::new();
    let mut pauses_checked = 0;
    let margin = RATE * 150 / 1000;
    for pause in &speech.pauses {
        // Skip the first second heard (the jitter buffer settles), and pauses past the end.
        if pause.start < offset + RATE || pause.end > offset + heard.len() {
            continue;
        }
        // Lined up again around this pause.
        let (from, to) = ((pause.start - offset) / HOP, (pause.end - offset) / HOP);
        let region = from.saturating_sub(100)..(to + 100).min(env_heard.len());
        let around = shift + region.start;
        let (local, score) = best_shift(
            &env_ref,
            &env_heard[region.clone()],
            around.saturating_sub(30)..around + 31,
        );
        let local_offset = if score > 0.8 {
            (local - region.start) * HOP
        } else {
            offset
        };
        let inside = (pause.start + margin).saturating_sub(local_offset)
            ..(pause.end - margin)
                .saturating_sub(local_offset)
                .min(heard.len());
        pauses_checked += 1;
        for (i, chunk) in heard[inside.clone()].chunks(960).enumerate() {
            if chunk.iter().any(|s| s.abs() >= SOUND_PEAK) {
                loud_in_pauses.push((inside.start + i * 960) as f64 / RATE as f64);
            }
        }
    }
    Heard {
        seconds: heard.len() as f64 / RATE as f64,
        offset_s: offset as f64 / RATE as f64,
        similarity: if total == 0.0 { 0.0 } else { weighted / total },
        unexplained,
        noise,
        pauses_checked,
        loud_in_pauses,
        windows: Windows(windows),
    }
}

/// RMS per [`HOP`].
fn envelope(samples: &[f32]) -> Vec<f64> {
    samples.chunks(HOP).map(rms).collect()
}

fn rms(samples: &[f32]) -> f64 {
    let energy: f64 = samples.iter().map(|s| f64::from(*s).powi(2)).sum();
    (energy / samples.len().max(1) as f64).sqrt()
}

/// Among `shifts`, where `part` lines up best in `whole` (both envelopes): the shift and the
/// normalised correlation there. Shifts overlapping less than two seconds score nothing.
fn best_shift(whole: &[f64], part: &[f64], shifts: Range<usize>) -> (usize, f64) {
    shifts
        .map(|shift| {
            let n = part.len().min(whole.len().saturating_sub(shift));
            let (mut dot, mut a, mut b) = (0.0, 0.0, 0.0);
            for i in 0..n {
                dot += part[i] * whole[shift + i];
                a += part[i] * part[i];
                b += whole[shift + i] * whole[shift + i];
            }
            let score = if n < 200.min(part.len()) || a == 0.0 || b == 0.0 {
                0.0
            } else {
                dot / (a * b).sqrt()
            };
            (shift, score)
        })
        .max_by(|x, y| x.1.total_cmp(&y.1))
        .unwrap_or((0, 0.0))
}

/// Power of `hertz` in 48 kHz samples (Goertzel), normalised by length (a copy of
/// `live::tone_power`).
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

/// A process's resident memory, in KiB (`VmRSS` in /proc/PID/status).
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_else(|err| panic!("/proc/{pid}/status: {err}"));
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no VmRSS in /proc/{pid}/status"))
}

// ---- A process whose logs are read.

/// An `earshot` process like [`Live`], with its standard error read too (and echoed, prefixed
/// with its name): for the log lines a test checks. Standard output lines are [`Event`]s.
/// What an adversary's report line says: `name=N`.
pub(crate) fn figure(report: &str, name: &str) -> u64 {
    let at = report
        .find(&format!("{name}="))
        .unwrap_or_else(|| panic!("no {name}= in {report:?}"));
    report[at + name.len() + 1..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect::<String>()
        .parse()
        .unwrap_or_else(|err| panic!("{name} in {report:?}: {err}"))
}

pub(crate) struct Logged {
    name: &'static str,
    child: Child,
    stdin: Option<ChildStdin>,
    lines: mpsc::Receiver<Line>,
    /// Every line so far, events and logs, for the failure message.
    seen: Vec<String>,
    /// Log lines read so far.
    logs: Vec<String>,
}

enum Line {
    Out(String),
    Err(String),
}

impl Logged {
    /// Starts `earshot --home HOME --json ARGS…` logging at `EARSHOT_TEST_LOG` (else `warn`)
    /// and `filter` besides (an `EnvFilter` directive, or empty).
    pub(crate) fn start(name: &'static str, home: &TestHome, filter: &str, args: &[&str]) -> Self {
        let mut log = std::env::var("EARSHOT_TEST_LOG").unwrap_or_else(|_| "warn".into());
        if !filter.is_empty() {
            log = format!("{log},{filter}");
        }
        let mut child = Command::new(env!("CARGO_BIN_EXE_earshot"))
            .env_remove("EARSHOT_HOME")
            .env("RUST_LOG", log)
            .env("NO_COLOR", "1")
            .arg("--home")
            .arg(home.path())
            .arg("--json")
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start earshot");
        let (tx, lines) = mpsc::channel();
        let stdout = child.stdout.take().expect("stdout is piped");
        let out = tx.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if out.send(Line::Out(line)).is_err() {
                    break;
                }
            }
        });
        let stderr = child.stderr.take().expect("stderr is piped");
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                let line = without_escapes(&line);
                eprintln!("[{name}] {line}");
                if tx.send(Line::Err(line)).is_err() {
                    break;
                }
            }
        });
        Self {
            name,
            stdin: child.stdin.take(),
            child,
            lines,
            seen: Vec::new(),
            logs: Vec::new(),
        }
    }

    pub(crate) fn say(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin open");
        writeln!(stdin, "{line}").expect("write to earshot");
        stdin.flush().expect("flush");
    }

    pub(crate) fn expect(&mut self, what: &str, predicate: impl Fn(&Event) -> bool) -> Event {
        self.expect_map(what, |e| predicate(e).then(|| e.clone()))
    }

    /// Waits for the first event `pick` takes something from.
    pub(crate) fn expect_map<T>(&mut self, what: &str, pick: impl Fn(&Event) -> Option<T>) -> T {
        self.next(what, Duration::from_secs(20), |line| match line {
            Line::Out(text) => serde_json::from_str::<Event>(text)
                .ok()
                .and_then(|e| pick(&e)),
            Line::Err(_) => None,
        })
    }

    /// Waits up to `wait` for a log line matching `predicate`.
    pub(crate) fn expect_log(
        &mut self,
        what: &str,
        wait: Duration,
        predicate: impl Fn(&str) -> bool,
    ) -> String {
        self.next(what, wait, |line| match line {
            Line::Err(text) if predicate(text) => Some(text.clone()),
            _ => None,
        })
    }

    /// The log lines so far (without waiting) that match `predicate`.
    fn logged(&mut self, predicate: impl Fn(&str) -> bool) -> Vec<String> {
        while let Ok(line) = self.lines.try_recv() {
            self.keep(&line);
        }
        self.logs
            .iter()
            .filter(|line| predicate(line))
            .cloned()
            .collect()
    }

    fn keep(&mut self, line: &Line) {
        match line {
            Line::Out(text) => self.seen.push(text.clone()),
            Line::Err(text) => {
                self.seen.push(format!("(log) {text}"));
                self.logs.push(text.clone());
            }
        }
    }

    fn next<T>(&mut self, what: &str, wait: Duration, take: impl Fn(&Line) -> Option<T>) -> T {
        let deadline = Instant::now() + wait;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.keep(&line);
                    if let Some(taken) = take(&line) {
                        return taken;
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

    pub(crate) fn exit_code(mut self) -> i32 {
        use wait_timeout::ChildExt;
        drop(self.stdin.take());
        match self
            .child
            .wait_timeout(Duration::from_secs(20))
            .expect("wait for earshot")
        {
            Some(status) => status.code().unwrap_or(-1),
            None => panic!("{}: still running after 20 s", self.name),
        }
    }
}

impl Drop for Logged {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A log line without its ANSI colour codes (in case the logger adds them all the same).
fn without_escapes(line: &str) -> String {
    let mut plain = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // ESC [ … a letter.
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            plain.push(c);
        }
    }
    plain
}
