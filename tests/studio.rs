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
        assert_eq!(tally["bad_studio_chunks"], 0, "{report}");
    }
    assert_eq!(report["total"]["bad_studio_chunks"], 0, "{report}");
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
    // Most 20 ms of the export come from the studio tracks (the host spoke from the start;
    // the guest from when it joined).
    assert!(
        studio_frames as f64 >= seconds * 50.0 * 0.8,
        "{studio_frames} studio frames in {seconds:.1} s"
    );
}
