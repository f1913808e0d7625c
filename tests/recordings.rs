//! Recording a live room, exporting it to standard files, and what a kill or bad input does.

use std::time::Instant;

use earshot_node::Event;
use earshot_node::audio::codec::VoiceDecoder;
use earshot_node::audio::signal::{similarity_in_windows, speechlike};
use earshot_node::audio::wav;
use earshot_node::recording::ogg;
use serde_json::Value;

use crate::harness::{TestHome, code, stderr};
use crate::live::{Live, local_room, read_wav};

/// Where sound starts (the recording begins with the silence before the host spoke).
fn from_onset(samples: &[f32]) -> &[f32] {
    let onset = samples
        .iter()
        .position(|s| s.abs() > 0.01)
        .expect("sound in the recording");
    &samples[onset.saturating_sub(4_800)..]
}

/// Decodes an Ogg Opus file as a player would: every packet, minus the pre-skip, trimmed to
/// the final granule.
fn decode_opus(file: &ogg::OggOpusFile) -> Vec<f32> {
    let mut decoder = VoiceDecoder::new().expect("decoder");
    let mut out = Vec::new();
    for packet in &file.packets {
        out.extend(decoder.decode(packet).expect("a decodable packet"));
    }
    let skip = usize::from(file.head.pre_skip);
    let end = usize::try_from(file.final_granule).expect("fits");
    out[skip..end.min(out.len())].to_vec()
}

/// The host records the room while it speaks a WAV file (`/record start`, `/record stop`);
/// the recording is listed, exported to Ogg Opus and WAV, and both hold the same speech.
#[test]
fn a_recorded_room_exports_to_files_that_hold_the_speech() {
    let ana = TestHome::new();
    let room = local_room(&ana, "Book club");
    let speech = ana.join("speech.wav");
    // A second of silence first, so that the recording is running before the speech starts.
    let mut samples = vec![0.0f32; 48_000];
    let words = speechlike(3 * 48_000, 8);
    samples.extend_from_slice(&words);
    samples.extend(vec![0.0f32; 24_000]);
    wav::write(&speech, &samples).expect("write speech");
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
        ],
    );
    host.expect("hosting", |e| matches!(e, Event::Hosting { .. }));
    // A listener is in the room too: what is recorded is what the room hears.
    let bea = TestHome::new();
    let link = ana.invite(&[&room, "--role", "listener"]);
    let mut listener = crate::live::listener("bea", &bea, &link, &[]);
    listener.expect("audio_attached", |e| {
        matches!(e, Event::AudioAttached { .. })
    });
    host.say("/record start");
    listener.expect("everyone is told", |e| {
        matches!(e, Event::RecordingStarted { .. })
    });
    let id = host
        .expect_map("recording", |e| match e {
            Event::Recording { recording, .. } => Some(*recording),
            _ => None,
        })
        .to_string();
    // The whole file has been said once the host has relayed it.
    host.expect_stats("the speech said", |s| s.relayed >= 4 * 50 + 25);
    host.say("/record stop");
    listener.expect("everyone is told", |e| {
        matches!(e, Event::RecordingStopped { .. })
    });
    let (recording, state) = host.expect_map("recording_saved", |e| match e {
        Event::RecordingSaved {
            recording, state, ..
        } => Some((*recording, state.clone())),
        _ => None,
    });
    assert_eq!(recording.to_string(), id);
    assert_eq!(state, "complete");
    // Published as a replay at once, and the room (still live) is told.
    let published = host.expect_map("replay_published", |e| match e {
        Event::ReplayPublished { manifest, .. } => Some(*manifest),
        _ => None,
    });
    let announced = listener.expect_map("replay_available", |e| match e {
        Event::ReplayAvailable { manifest, .. } => Some(*manifest),
        _ => None,
    });
    assert_eq!(announced, published);
    host.say("/end");
    assert_eq!(host.exit_code(), 0);
    assert_eq!(listener.exit_code(), 0);

    let listed = ana.json(&["recordings", "list"]);
    let listed = listed.as_array().expect("a list");
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0]["id"], id.as_str());
    assert_eq!(listed[0]["title"], "Book club");

    // Every frame recorded is the host's own, kept with the host's proofs: each matches the
    // proof the host signed for it. The last few may have none: the host signs every five
    // frames, and the recording can stop between a frame and its proof.
    let output = ana.run(&["recordings", "verify", &id, "--json"]);
    let verified: Value = serde_json::from_slice(&output.stdout).expect("a report");
    let total = &verified["total"];
    let count = |field: &str| total[field].as_u64().expect("a count");
    assert!(count("frames") >= 4 * 50, "{verified}");
    assert_eq!((count("forged"), count("bad_proofs")), (0, 0), "{verified}");
    assert!(
        count("unproven") < earshot_protocol::proof::FRAMES_PER_PROOF as u64,
        "{verified}"
    );
    assert_eq!(count("verified") + count("unproven"), count("frames"));
    assert_eq!(code(&output), if count("unproven") == 0 { 0 } else { 1 });
    assert_eq!(verified["speakers"][0]["name"], "host", "{verified}");
    assert!(
        listed[0]["speakers"]
            .as_array()
            .is_some_and(|s| s.iter().any(|s| s["name"] == "host")),
        "{listed:?}"
    );

    // Ogg Opus: a standard file, holding the speech.
    let opus = ana.join("club.opus");
    let exported = ana.event(&[
        "recordings",
        "export",
        &id[..8],
        opus.to_str().expect("utf-8 path"),
    ]);
    let Event::Exported { kept_packets, .. } = exported else {
        panic!("{exported:?}");
    };
    let file = ogg::read(&std::fs::read(&opus).expect("the file")).expect("valid Ogg Opus");
    assert_eq!(file.head.channels, 1);
    assert_eq!(file.head.input_rate, 48_000);
    // The host spoke alone: its packets are in the file as it said them (a frame or two at the
    // edges of the recording may be encoded anew).
    let packets = file.packets.len() as u64;
    assert!(
        kept_packets + 5 >= packets,
        "{kept_packets} of {packets} packets kept"
    );
    assert!(
        file.tags
            .comments
            .iter()
            .any(|(k, v)| k == "TITLE" && v == "Book club")
    );
    let decoded = decode_opus(&file);
    let score = similarity_in_windows(&words, from_onset(&decoded), 4_800);
    assert!(score >= 0.9, "the exported speech: similarity {score:.3}");

    // WAV: the same.
    let wav_path = ana.join("club.wav");
    ana.event(&[
        "recordings",
        "export",
        &id,
        wav_path.to_str().expect("utf-8 path"),
    ]);
    let heard = read_wav(&wav_path);
    let score = similarity_in_windows(&words, from_onset(&heard), 4_800);
    assert!(score >= 0.9, "the exported WAV: similarity {score:.3}");

    // Deleted, it is gone.
    ana.event(&["recordings", "delete", &id]);
    let listed = ana.json(&["recordings", "list"]);
    assert_eq!(listed.as_array().map(Vec::len), Some(0));
}

/// A host killed mid-recording (SIGKILL: no goodbye) keeps the recording up to about a second
/// before the kill, listed as interrupted, and it exports.
#[test]
fn a_recording_survives_a_kill() {
    let ana = TestHome::new();
    let room = crate::live::local_room_with(&ana, "Late show", &["--record"]);
    let mut host = crate::live::tone_host(&ana, &room, &[]);
    // `--record`: recording from the start.
    host.expect("recording", |e| matches!(e, Event::Recording { .. }));
    let started = Instant::now();
    host.expect_stats("three seconds of audio", |s| s.relayed >= 150);
    let recorded_for = started.elapsed();
    host.child.kill().expect("kill the host");
    let _ = host.child.wait();

    let listed = ana.json(&["recordings", "list"]);
    let recording = &listed.as_array().expect("a list")[0];
    assert_eq!(recording["state"], "interrupted", "{recording}");
    let seconds = recording["seconds"].as_f64().unwrap_or(0.0);
    assert!(
        seconds >= recorded_for.as_secs_f64() - 1.0,
        "kept {seconds:.2} s of {:.2} s",
        recorded_for.as_secs_f64()
    );
    let id = recording["id"].as_str().expect("id");
    let out = ana.join("late.opus");
    ana.event(&[
        "recordings",
        "export",
        id,
        out.to_str().expect("utf-8 path"),
    ]);
    let file = ogg::read(&std::fs::read(&out).expect("file")).expect("valid Ogg Opus");
    let kept = (file.final_granule - u64::from(file.head.pre_skip)) as f64 / 48_000.0;
    assert!((kept - seconds).abs() < 0.05, "{kept} vs {seconds}");
}

/// Unknown ids, unwritable paths, unknown formats and a damaged database are clear errors.
#[test]
fn bad_recording_requests_are_clear_errors() {
    let ana = TestHome::new();
    let output = ana.run(&["recordings", "show", "nosuchid"]);
    assert_eq!(code(&output), 1);
    assert!(
        stderr(&output).contains("no recording"),
        "{}",
        stderr(&output)
    );
    let output = ana.run(&["recordings", "export", "abc", "/tmp/x.opus"]);
    assert_eq!(code(&output), 1);
    assert!(
        stderr(&output).contains("no recording"),
        "{}",
        stderr(&output)
    );

    // A real recording, to export to bad places.
    let room = crate::live::local_room_with(&ana, "Tiny", &["--record"]);
    let mut host = Live::start("host", &ana, &["host", &room, "--input", "sine"]);
    host.expect("recording", |e| matches!(e, Event::Recording { .. }));
    host.expect_stats("a second of audio", |s| s.relayed >= 50);
    host.say("/end");
    host.expect("recording_saved", |e| {
        matches!(e, Event::RecordingSaved { .. })
    });
    assert_eq!(host.exit_code(), 0);
    let listed: Value = ana.json(&["recordings", "list"]);
    let id = listed[0]["id"].as_str().expect("id").to_owned();

    let output = ana.run(&["recordings", "export", &id, "/nonexistent/dir/x.opus"]);
    assert_eq!(code(&output), 1);
    assert!(
        stderr(&output).contains("/nonexistent/dir/x.opus"),
        "{}",
        stderr(&output)
    );
    let mp3 = ana.join("x.mp3");
    let output = ana.run(&[
        "recordings",
        "export",
        &id,
        mp3.to_str().expect("utf-8 path"),
    ]);
    assert_eq!(code(&output), 1);
    assert!(
        stderr(&output).contains(".opus, .ogg or .wav"),
        "{}",
        stderr(&output)
    );
    assert!(!mp3.exists(), "nothing is written for a refused export");

    // The database's files cut short: a clear error, not a crash. (sled recovers a log cut
    // short by itself, up to its last complete write; its configuration file it cannot.)
    let conf = ana.join("db").join("conf");
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(&conf)
        .expect("open the database's configuration");
    file.set_len(10).expect("truncate");
    drop(file);
    let output = ana.run(&["recordings", "list"]);
    assert_eq!(code(&output), 1);
    assert!(
        stderr(&output).contains("is damaged"),
        "a message, not a panic: {}",
        stderr(&output)
    );
}

/// In a room that lets members record, a listener records what it hears, for itself, and
/// everyone is told; in a room that does not, it is refused.
#[test]
fn a_member_records_for_itself_only_where_the_room_allows() {
    let ana = TestHome::new();
    let room = crate::live::local_room_with(&ana, "Open mic", &["--members-may-record"]);
    let mut host = crate::live::tone_host(&ana, &room, &[]);
    let link = host.listener_link();
    let bea = TestHome::new();
    let mut listener = crate::live::listener("bea", &bea, &link, &[]);
    listener.expect("audio_attached", |e| {
        matches!(e, Event::AudioAttached { .. })
    });
    listener.say("/record start");
    host.expect(
        "everyone is told",
        |e| matches!(e, Event::MemberRecordingStarted { name, .. } if name == "bea"),
    );
    listener.expect("recording", |e| matches!(e, Event::Recording { .. }));
    let relayed = listener.expect_stats("audio", |_| true).delivered;
    listener.expect_stats("a second more", |s| s.delivered >= relayed + 50);
    listener.say("/record stop");
    host.expect(
        "everyone is told",
        |e| matches!(e, Event::MemberRecordingStopped { name, .. } if name == "bea"),
    );
    let saved = listener.expect("recording_saved", |e| {
        matches!(e, Event::RecordingSaved { .. })
    });
    assert!(
        matches!(saved, Event::RecordingSaved { seconds, .. } if seconds >= 0.9),
        "{saved:?}"
    );
    listener.say("/leave");
    assert_eq!(listener.exit_code(), 0);
    let listed = bea.json(&["recordings", "list"]);
    assert_eq!(listed.as_array().map(Vec::len), Some(1), "{listed}");
    // Every frame verifies, and the voice is the one the host put on stage, by the host's own
    // signed word kept in the recording (not only the recorder's naming of keys).
    let id = listed[0]["id"].as_str().expect("an id");
    let report = bea.json(&["recordings", "verify", id]);
    assert_eq!(report["verified"], true, "{report}");
    let speakers = report["speakers"].as_array().expect("speakers");
    assert!(
        speakers
            .iter()
            .any(|s| s["name"] == "host" && s["named_by_host"] == "host"),
        "{report}"
    );
    // The host recorded nothing: a member's recording is its own.
    host.say("/end");
    assert_eq!(host.exit_code(), 0);
    assert_eq!(
        ana.json(&["recordings", "list"]).as_array().map(Vec::len),
        Some(0)
    );

    // A room without that policy refuses.
    let room = crate::live::local_room(&ana, "Closed mic");
    let mut host = Live::start("host", &ana, &["host", &room]);
    let link = host.listener_link();
    let cal = TestHome::new();
    let mut listener = crate::live::listener("cal", &cal, &link, &[]);
    listener.expect("joined", |e| matches!(e, Event::Joined { .. }));
    listener.say("/record start");
    let error = listener.expect("error", |e| matches!(e, Event::Error { .. }));
    assert!(
        matches!(&error, Event::Error { message, .. } if message.contains("does not let members record")),
        "{error:?}"
    );
    host.say("/end");
    assert_eq!(listener.exit_code(), 0);
    assert_eq!(host.exit_code(), 0);
}

/// A speaker invited on stage in a recorded room is told before it says anything: its
/// microphone stays off until it agrees (`/consent`), everyone is told it agreed, and its signed
/// agreement is kept with the recording (`recordings show`). The recording holds its voice only
/// from then on.
#[test]
fn a_speaker_in_a_recorded_room_is_heard_only_once_it_agrees_and_the_recording_keeps_its_word() {
    let ana = TestHome::new();
    let room = crate::live::local_room_with(&ana, "On the record", &["--record"]);
    let mut host = crate::live::tone_host(&ana, &room, &["--name", "ana"]);
    host.expect("recording", |e| matches!(e, Event::Recording { .. }));
    let speaker_link = ana.invite(&[&room, "--role", "speaker"]);
    let bo = TestHome::new();
    let mut guest = crate::live::listener("bo", &bo, &speaker_link, &["--input", "sine:660"]);
    guest.expect("told at once that the room is recorded", |e| {
        matches!(
            e,
            Event::Joined {
                recording: true,
                ..
            }
        )
    });
    guest.expect("asked to agree", |e| {
        matches!(e, Event::ConsentAsked { .. })
    });
    // Held: two reports of its audio (two seconds and more) with its microphone off.
    for _ in 0..2 {
        guest.expect_stats("its microphone held off", |s| s.self_muted);
    }
    guest.say("/consent");
    host.expect(
        "everyone told bo agreed",
        |e| matches!(e, Event::RecordingConsent { name, .. } if name == "bo"),
    );
    let agreed = Instant::now();
    guest.expect_stats("its microphone on", |s| !s.self_muted);
    // Two more of its audio reports (a second each) with its voice going out, recorded.
    for _ in 0..2 {
        guest.expect_stats("its voice going out", |s| !s.self_muted);
    }
    host.say("/end");
    let ended = Instant::now();
    assert_eq!(host.exit_code(), 0);
    assert_eq!(guest.exit_code(), 0);

    let listed: Value = ana.json(&["recordings", "list"]);
    let id = listed[0]["id"].as_str().expect("a recording").to_owned();
    let shown: Value = ana.json(&["recordings", "show", &id]);
    let consents = shown["consents"].as_array().expect("consents");
    assert_eq!(consents.len(), 1, "{shown}");
    assert_eq!(consents[0]["name"], "bo", "{shown}");
    assert_eq!(consents[0]["verified"], true, "{shown}");
    let text = stdout_of(&ana.run(&["recordings", "show", &id]));
    assert!(
        text.contains("agreed:   bo") && text.contains("(signed)"),
        "{text}"
    );
    // Its voice in the recording: from its agreement on, not the seconds it was held. The
    // agreement is in the recording's content too (a replay carries it), checked as signed.
    let output = ana.run(&["recordings", "verify", &id, "--json"]);
    let report: Value = serde_json::from_slice(&output.stdout).expect("a report");
    let carried = report["consents"].as_array().expect("consents");
    assert_eq!(carried.len(), 1, "{report}");
    assert_eq!(carried[0]["peer_id"], consents[0]["peer_id"], "{report}");
    assert_eq!(report["bad_consents"], 0, "{report}");
    let frames = report["speakers"]
        .as_array()
        .and_then(|speakers| speakers.iter().find(|s| s["name"] == "bo"))
        .and_then(|bo| bo["tally"]["frames"].as_u64())
        .unwrap_or_else(|| panic!("bo's frames in {report}"));
    let spoke = ended.duration_since(agreed).as_secs_f64() + 0.5;
    eprintln!("bo: {frames} frames recorded, {spoke:.2} s from its agreement to the end (+0.5)");
    assert!(
        frames > 50 && (frames as f64) * 0.02 <= spoke,
        "{frames} frames of bo's for {spoke:.1} s after its agreement: {report}"
    );
}

fn stdout_of(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}
