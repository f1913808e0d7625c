//! Studio tracks (the double-ender): speakers' own voices recorded before the network, signed,
//! handed to the room's recording, and taken by its exports in place of what the room heard.

use earshot_node::Event;
use earshot_node::audio::signal::speechlike;
use earshot_node::audio::wav;
use serde_json::Value;

use crate::harness::{TestHome, code};
use crate::live::{LOCAL, Live, local_room_with};

/// The host (`--studio`) and a speaker who joined with `--studio` talk in a room recorded from
/// the start; a listener hears them. Both studio tracks reach the host's recording: `recordings
/// verify` finds every chunk signed by its speaker, and the export takes its frames from them.
#[test]
fn speakers_studio_tracks_reach_the_recording_and_its_export() {
    let ana = TestHome::new();
    let room = local_room_with(&ana, "Podcast", &["--record"]);
    let (host_speech, guest_speech) = (ana.join("ana.wav"), ana.join("bo.wav"));
    wav::write(&host_speech, &speechlike(8 * 48_000, 3)).expect("write speech");
    wav::write(&guest_speech, &speechlike(8 * 48_000, 5)).expect("write speech");
    let mut host = Live::start(
        "host",
        &ana,
        &[
            "host",
            &room,
            "--name",
            "ana",
            "--input",
            host_speech.to_str().expect("utf-8 path"),
            "--output",
            "null",
            "--studio",
        ],
    );
    let link = host.listener_link();
    host.expect("recording", |e| matches!(e, Event::Recording { .. }));
    let speaker_link = ana.invite(&[&room, "--role", "speaker"]);
    let bo = TestHome::new();
    let mut guest = Live::start(
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
            guest_speech.to_str().expect("utf-8 path"),
            "--output",
            "null",
            "--studio",
            "--consent-recording",
        ],
    );
    guest.expect("joined", |e| matches!(e, Event::Joined { .. }));
    let cy = TestHome::new();
    let mut listener = crate::live::listener("cy", &cy, &link, &[]);
    listener.expect("joined", |e| matches!(e, Event::Joined { .. }));
    // Four seconds of each studio track handed over.
    guest.expect_stats("the guest's studio track", |s| {
        s.studio_chunks.is_some_and(|n| n >= 4)
    });
    host.expect_stats("the host's studio track", |s| {
        s.studio_chunks.is_some_and(|n| n >= 4)
    });
    // A listener without --studio keeps none.
    let heard = listener.expect_stats("audio", |s| s.received >= 100);
    assert_eq!(heard.studio_chunks, None);
    host.say("/end");
    assert_eq!(host.exit_code(), 0);
    assert_eq!(guest.exit_code(), 0);
    assert_eq!(listener.exit_code(), 0);

    let listed = ana.json(&["recordings", "list"]);
    let id = listed[0]["id"].as_str().expect("a recording").to_owned();
    let output = ana.run(&["recordings", "verify", &id, "--json"]);
    let report: Value = serde_json::from_slice(&output.stdout).expect("a report");
    let speakers = report["speakers"].as_array().expect("speakers");
    for name in ["ana", "bo"] {
        let speaker = speakers
            .iter()
            .find(|s| s["name"] == name)
            .unwrap_or_else(|| panic!("{name} in {report}"));
        let tally = &speaker["tally"];
        let studio = tally["studio_frames"].as_u64().unwrap_or_default();
        assert!(studio >= 4 * 50, "{name}'s studio track: {report}");
        assert!(
            studio >= tally["frames"].as_u64().unwrap_or(u64::MAX),
            "{name}'s last second: {report}"
        );
        assert_eq!(tally["bad_studio_chunks"], 0, "{report}");
    }
    assert_eq!(report["total"]["bad_studio_chunks"], 0, "{report}");
    // The last second too: each speaker hands its track over as the recording stops (the
    // host waits for the speakers' streams to close).
    let total = &report["total"];
    assert!(
        total["studio_frames"].as_u64() >= total["frames"].as_u64(),
        "every frame the room heard has its studio twin: {report}"
    );
    assert!(code(&output) <= 1, "{report}");

    let opus = ana.join("podcast.opus");
    let exported = ana.event(&[
        "recordings",
        "export",
        &id,
        opus.to_str().expect("utf-8 path"),
    ]);
    let Event::Exported {
        studio_frames,
        seconds,
        ..
    } = exported
    else {
        panic!("{exported:?}");
    };
    // Every frame heard comes from the studio tracks in the export.
    let heard = total["frames"].as_u64().unwrap_or(u64::MAX);
    assert!(
        studio_frames + 2 >= heard,
        "{studio_frames} studio frames for {heard} heard in {seconds:.1} s"
    );

    // The replay carries the tracks: fetched by someone who was not there, checked the same,
    // exported the same.
    let (dee, link) = (TestHome::new(), publish(&ana, &id));
    let there = verify_elsewhere(&ana, &dee, &link);
    assert_eq!(there["total"], report["total"], "{there}");
    // The guest's agreement to be recorded travels with the replay, checked as it signed it.
    assert_eq!(
        there["consents"].as_array().map(Vec::len),
        Some(1),
        "{there}"
    );
    assert_eq!(there["consents"], report["consents"], "{there}");
    assert_eq!(there["bad_consents"], 0, "{there}");
    let elsewhere = dee.join("replay.opus");
    match dee.event(&[
        "recordings",
        "export",
        &id,
        elsewhere.to_str().expect("utf-8 path"),
    ]) {
        Event::Exported {
            studio_frames: from_replay,
            ..
        } => assert_eq!(from_replay, studio_frames),
        other => panic!("{other:?}"),
    }
}

/// In a private room the host's studio track is sealed before it leaves the audio plane (as its
/// live voice is): the recording keeps it sealed, and the host's export opens it.
#[test]
fn a_private_rooms_studio_track_is_kept_sealed() {
    use earshot_node::home::Home;
    use earshot_protocol::frame::flags;
    use earshot_protocol::replay::ContentRecord;

    let ana = TestHome::new();
    let room = local_room_with(&ana, "Sealed podcast", &["--private", "--record"]);
    let speech = ana.join("ana.wav");
    wav::write(&speech, &speechlike(6 * 48_000, 3)).expect("write speech");
    let mut host = Live::start(
        "host",
        &ana,
        &[
            "host",
            &room,
            "--input",
            speech.to_str().expect("utf-8 path"),
            "--output",
            "null",
            "--studio",
        ],
    );
    host.expect("recording", |e| matches!(e, Event::Recording { .. }));
    host.expect_stats("the studio track", |s| {
        s.studio_chunks.is_some_and(|n| n >= 3)
    });
    host.say("/end");
    assert_eq!(host.exit_code(), 0);

    let listed = ana.json(&["recordings", "list"]);
    let id = listed[0]["id"].as_str().expect("a recording").to_owned();
    let (sealed, clear) = {
        let home = Home::open(ana.path()).expect("open");
        let recordings = home.recordings();
        let id = recordings.find(&id).expect("the recording").id;
        let mut counts = (0usize, 0usize);
        for record in recordings.records(&id) {
            if let ContentRecord::Studio(studio) = record.expect("a record") {
                for frame in &studio.chunk.frames {
                    if frame.flags & flags::SEALED != 0 {
                        counts.0 += 1;
                    } else {
                        counts.1 += 1;
                    }
                }
            }
        }
        counts
    };
    assert!(sealed >= 150, "{sealed} sealed studio frames");
    assert_eq!(clear, 0, "studio frames in the clear");
    let opus = ana.join("sealed.opus");
    match ana.event(&[
        "recordings",
        "export",
        &id,
        opus.to_str().expect("utf-8 path"),
    ]) {
        Event::Exported { studio_frames, .. } => {
            // Opened (with the keys the recording keeps sealed) and taken where the room heard
            // the host: all but the edges of the recording.
            assert!(
                studio_frames as usize + 10 >= sealed,
                "{studio_frames} of {sealed} studio frames opened"
            );
        }
        other => panic!("{other:?}"),
    }
}

/// Two adversaries flood the host's studio streams for 8 s while it records: a speaker writes
/// 30 KB chunks at 32 Mbit/s (every tenth under the host's speaker id), a listener does the
/// same. The host keeps none of the listener's and none of the impostors, the speaker's only
/// within its stream's budget (24 KB/s, 256 KiB at once), and a listener hears the room
/// meanwhile.
#[test]
fn studio_floods_are_kept_to_the_budget_and_impostors_and_listeners_are_refused() {
    use crate::trust::{Logged, figure};
    use earshot_node::fanout::studio::{BURST_BYTES, BYTES_PER_SEC};
    use std::time::{Duration, Instant};

    let ana = TestHome::new();
    let room = local_room_with(&ana, "Flooded", &["--record"]);
    let mut host = crate::live::tone_host(&ana, &room, &["--name", "ana"]);
    let link = host.listener_link();
    host.expect("recording", |e| matches!(e, Event::Recording { .. }));
    let cy = TestHome::new();
    let mut listener = crate::live::listener("cy", &cy, &link, &[]);
    listener.expect("audio_attached", |e| {
        matches!(e, Event::AudioAttached { .. })
    });
    listener.expect_stats("audio", |s| s.delivered >= 50);
    let speaker_link = ana.invite(&[&room, "--role", "speaker"]);
    let (mal, eve) = (TestHome::new(), TestHome::new());
    let flooder = |name: &'static str, home: &TestHome, link: &str| {
        Logged::start(
            name,
            home,
            "",
            &[
                "join",
                link,
                "--name",
                name,
                "--listen",
                LOCAL,
                "--output",
                "null",
                "--input",
                "sine:660",
                "--misbehave",
                "studio-flood",
                // Its chunks are kept only once it agreed to be recorded.
                "--consent-recording",
            ],
        )
    };
    let started = Instant::now();
    let mut speaker = flooder("mal", &mal, &speaker_link);
    let mut stranger = flooder("eve", &eve, &link);
    // The flooding speaker's own voice off (its connection is its own flood's: what the
    // listener must keep hearing is the host).
    speaker.expect("joined", |e| matches!(e, Event::Joined { .. }));
    speaker.say("/mute-self");
    speaker.expect("muted", |e| matches!(e, Event::SelfMuted { muted: true }));
    let before = listener.expect_stats("audio as the flood starts", |_| true);
    let report = speaker.expect_log("the speaker's flood", Duration::from_secs(40), |line| {
        line.contains("misbehaving: studio chunks flooded")
    });
    let flooded_for = started.elapsed().as_secs_f64();
    let stranger_report =
        stranger.expect_log("the listener's flood", Duration::from_secs(40), |line| {
            line.contains("misbehaving: studio chunks flooded")
        });
    let (written, impostors, bytes, streams) = (
        figure(&report, "written"),
        figure(&report, "impostors"),
        figure(&report, "bytes"),
        figure(&report, "streams"),
    );
    eprintln!(
        "studio flood: the speaker wrote {written} chunks ({impostors} impostors, {} KiB) on \
         {streams} streams in {flooded_for:.1} s; the listener wrote {} chunks on {} streams",
        bytes / 1024,
        figure(&stranger_report, "written"),
        figure(&stranger_report, "streams"),
    );
    assert!(written >= 10, "the flood ran: {report}");
    // The host cut the speaker off when its stream went far past the budget, and the listener
    // when its refused streams came faster than one a second: both disconnected and kept out,
    // so neither got far (unchecked, each opened some 800 streams and wrote 31 MB in 8 s).
    let mut blocked = Vec::new();
    while blocked.len() < 2 {
        if let Event::PeerBlocked { reason, .. } = host.expect("a flooder kept out", |e| {
            matches!(e, Event::PeerBlocked { .. })
        }) {
            blocked.push(reason);
        }
    }
    eprintln!("the host kept out: {blocked:?}");
    assert!(
        blocked.iter().any(|r| r.contains("far over its budget")),
        "{blocked:?}"
    );
    assert!(
        blocked.iter().any(|r| r.contains("streams refused faster")),
        "{blocked:?}"
    );
    assert!(
        streams <= 3,
        "the speaker opened {streams} streams: {report}"
    );
    let stranger_streams = figure(&stranger_report, "streams");
    assert!(
        stranger_streams <= 40,
        "the listener opened {stranger_streams} streams: {stranger_report}"
    );
    // A report from after the flood (8 s of the host's frames since it started).
    let after = listener.expect_stats("audio after the flood", |s| {
        s.expected >= before.expected + 400
    });
    let expected = after.expected - before.expected;
    let delivered = after.delivered - before.delivered;
    eprintln!("the listener heard {delivered} of {expected} frames meanwhile");
    assert!(
        delivered * 100 >= expected * 99,
        "the listener heard {delivered} of {expected} frames during the flood"
    );
    host.say("/end");
    assert_eq!(host.exit_code(), 0);
    assert_eq!(listener.exit_code(), 0);
    drop((speaker, stranger));

    let listed = ana.json(&["recordings", "list"]);
    let id = listed[0]["id"].as_str().expect("a recording").to_owned();
    let output = ana.run(&["recordings", "verify", &id, "--json"]);
    let verdict: Value = serde_json::from_slice(&output.stdout).expect("a report");
    // No impostor kept (the host's id carries no studio track at all), nothing of the
    // listener's.
    assert_eq!(verdict["total"]["bad_studio_chunks"], 0, "{verdict}");
    let studio_of = |name: &str| {
        verdict["speakers"]
            .as_array()
            .and_then(|speakers| speakers.iter().find(|s| s["name"] == name))
            .map_or(0, |s| s["tally"]["studio_frames"].as_u64().unwrap_or(0))
    };
    assert_eq!(studio_of("ana"), 0, "{verdict}");
    assert_eq!(studio_of("eve"), 0, "{verdict}");
    // The speaker's: within its budget, the burst and the rate over the whole flood, however
    // many streams it opened.
    let chunk_bytes = bytes as f64 / written.max(1) as f64;
    let budget = (BURST_BYTES + BYTES_PER_SEC * (flooded_for + 2.0)) / chunk_bytes;
    let kept = studio_of("mal") / 100;
    eprintln!("kept {kept} of the speaker's chunks (budget {budget:.1})");
    assert!(kept as f64 <= budget + 1.0, "kept {kept} chunks: {verdict}");
    assert!(
        kept >= 1,
        "some of the speaker's chunks, within budget: {verdict}"
    );
}

/// Publishes recording `id` of `owner`'s: its replay link.
pub(crate) fn publish(owner: &TestHome, id: &str) -> String {
    match owner.event(&["recordings", "publish", id]) {
        Event::Published { link, .. } => link.to_string(),
        other => panic!("not published: {other:?}"),
    }
}

/// `recordings verify LINK --json` by `guest`, fetching from `owner` serving its recordings:
/// the report.
pub(crate) fn verify_elsewhere(owner: &TestHome, guest: &TestHome, link: &str) -> Value {
    let mut server = Live::start("owner", owner, &["recordings", "serve", "--listen", LOCAL]);
    let addr = server.expect_map("serving", |e| match e {
        Event::Serving { addrs, .. } => addrs.first().map(ToString::to_string),
        _ => None,
    });
    let output = guest.run(&[
        "recordings",
        "verify",
        link,
        "--from",
        &addr,
        "--listen",
        LOCAL,
        "--json",
    ]);
    drop(server);
    serde_json::from_slice(&output.stdout).expect("a report")
}
