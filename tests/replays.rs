//! Replays from peers: publish, serve and fetch between data directories; a third node fetches
//! from the second; a tampering holder is caught; a forged manifest is refused; an interrupted
//! fetch resumes; a host announces what it publishes; a fetched replay verifies like the
//! recording, frame by frame against its speakers' proofs, and an altered one does not.

use std::collections::BTreeMap;
use std::process::Output;

use earshot_node::Event;
use earshot_node::audio::codec::VoiceEncoder;
use earshot_node::audio::signal::speechlike;
use earshot_node::home::Home;
use earshot_node::identity::Identity;
use earshot_node::net::NetConfig;
use earshot_node::node::{Node, NodeConfig};
use earshot_node::recording::replay::Replays;
use earshot_node::recording::store::{
    NewRecording, RecordingMeta, RecordingState, SpeakerInfo, StoredFrame,
};
use earshot_protocol::frame::AudioFrame;
use earshot_protocol::proof::ProofSigner;
use earshot_protocol::replay::{ContentRecord, ManifestId, ReplayFrame, ReplayManifest};
use earshot_protocol::{PeerKey, RecordingId, RoomId, Timestamp};
use serde_json::Value;

use crate::harness::{TestHome, code, stderr};
use crate::live::{LOCAL, Live, local_room};

/// Writes a recording of `frames` into `home` directly (no live room needed) and returns its id.
fn make_recording(home: &TestHome, room: RoomId, frames: Vec<ReplayFrame>) -> RecordingId {
    let opened = Home::open(home.path()).expect("open the data directory");
    let mut id = [0u8; 16];
    getrandom::fill(&mut id).expect("random");
    let mut speakers = BTreeMap::new();
    for frame in &frames {
        speakers
            .entry(frame.speaker)
            .or_insert_with(|| SpeakerInfo {
                key: None,
                name: format!("speaker {}", frame.speaker),
                frames: 0,
            })
            .frames += 1;
    }
    let meta = RecordingMeta {
        id: RecordingId(id),
        room,
        title: "Book club".into(),
        host: opened.identity().key(),
        recorder: opened.identity().key(),
        started_at: Timestamp(1_800_000_000_000),
        ended_at: Some(Timestamp(1_800_000_060_000)),
        state: RecordingState::Complete,
        start_media: 0,
        speakers,
        frames: frames.len() as u64,
        bytes: frames.iter().map(|f| f.payload.len() as u64).sum(),
        duration_samples: frames.last().map_or(0, |f| f.at + 960),
        dropped: 0,
    };
    opened
        .recordings()
        .import(&meta, frames.into_iter().map(StoredFrame::from))
        .expect("write the recording");
    RecordingId(id)
}

/// Two speakers taking turns, real Opus: `seconds` of speech each.
fn speech(seconds: usize) -> Vec<ReplayFrame> {
    let mut frames = Vec::new();
    for speaker in 0..2u32 {
        let mut encoder = VoiceEncoder::new().expect("encoder");
        let samples = speechlike(seconds * 48_000, u64::from(speaker) + 3);
        for (i, frame) in samples.chunks_exact(960).enumerate() {
            let encoded = encoder.encode(frame).expect("encode");
            frames.push(ReplayFrame {
                at: i as u64 * 960,
                speaker,
                seq: i as u32,
                timestamp: i as u32 * 960,
                flags: 0,
                level: encoded.level,
                payload: encoded.payload,
            });
        }
    }
    frames.sort_by_key(|f| (f.at, f.speaker));
    frames
}

/// `frames` frames of `payload` bytes: content for tests that never decode it.
fn bulk(frames: u32, payload: usize) -> Vec<ReplayFrame> {
    (0..frames)
        .map(|i| ReplayFrame {
            at: u64::from(i) * 960,
            speaker: 1,
            seq: i,
            timestamp: i * 960,
            flags: 0,
            level: 30,
            payload: vec![(i % 251) as u8; payload],
        })
        .collect()
}

/// `recordings publish ID`: (manifest id, link).
fn publish(home: &TestHome, id: &RecordingId) -> (String, String) {
    match home.event(&["recordings", "publish", &id.to_string()]) {
        Event::Published { manifest, link, .. } => (manifest.to_string(), link.to_string()),
        other => panic!("not published: {other:?}"),
    }
}

/// `recordings serve` on 127.0.0.1; returns the process and its first address.
fn serve(name: &'static str, home: &TestHome) -> (Live, String) {
    let mut server = Live::start(name, home, &["recordings", "serve", "--listen", LOCAL]);
    let addr = server.expect_map("serving", |e| match e {
        Event::Serving { addrs, .. } => Some(addrs.first().expect("an address").to_string()),
        _ => None,
    });
    (server, addr)
}

/// `recordings fetch ARGS… --json`, listening on 127.0.0.1: the output and its events (every
/// line it prints is one).
fn fetch(home: &TestHome, args: &[&str]) -> (Output, Vec<Event>) {
    let mut all = vec!["recordings", "fetch"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--listen", LOCAL, "--json"]);
    let output = home.run(&all);
    let lines = String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|line| {
            serde_json::from_str(line).unwrap_or_else(|err| panic!("not an event ({err}): {line}"))
        })
        .collect();
    (output, lines)
}

/// What a completed fetch reports (its `fetched` event).
#[derive(Debug)]
struct Fetched {
    recording: RecordingId,
    chunks: usize,
    fetched: usize,
    resumed: usize,
    bad_chunks: usize,
}

fn fetched(output: &Output, lines: &[Event]) -> Fetched {
    assert_eq!(
        code(output),
        0,
        "fetch failed: {}\n{lines:#?}",
        stderr(output)
    );
    lines
        .iter()
        .find_map(|e| match e {
            Event::Fetched {
                recording,
                chunks,
                fetched,
                resumed,
                bad_chunks,
                ..
            } => Some(Fetched {
                recording: *recording,
                chunks: *chunks,
                fetched: *fetched,
                resumed: *resumed,
                bad_chunks: *bad_chunks,
            }),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no fetched event: {lines:#?}"))
}

/// The chunks a fetch stored: (index, the holder it came from).
fn chunks_stored(lines: &[Event]) -> Vec<(u32, String)> {
    lines
        .iter()
        .filter_map(|e| match e {
            Event::Chunk { index, from, .. } => Some((*index, from.to_string())),
            _ => None,
        })
        .collect()
}

/// Waits for `replay_available`: (manifest id, replay link).
fn replay_available(live: &mut Live) -> (String, String) {
    live.expect_map("replay_available", |e| match e {
        Event::ReplayAvailable { manifest, link, .. } => {
            Some((manifest.to_string(), link.to_string()))
        }
        _ => None,
    })
}

/// The frames of recording `id` in `home`, as stored.
fn frames_of(home: &TestHome, id: &RecordingId) -> Vec<(u64, u32, u8, Vec<u8>)> {
    let opened = Home::open(home.path()).expect("open the data directory");
    opened
        .recordings()
        .frames(id)
        .map(|f| {
            let f = f.expect("a stored frame");
            (f.at, f.speaker.0, f.level, f.payload)
        })
        .collect()
}

/// A signed manifest and its chunks, read from a data directory.
fn manifest_and_chunks(home: &TestHome, manifest: &str) -> (Vec<u8>, Vec<Vec<u8>>) {
    let opened = Home::open(home.path()).expect("open the data directory");
    let replays = Replays::open(opened.store()).expect("replays");
    let id: ManifestId = manifest.parse().expect("manifest id");
    let bytes = replays
        .manifest_bytes(&id)
        .expect("read")
        .expect("published")
        .to_vec();
    let count = ReplayManifest::decode_verified(&bytes)
        .expect("valid")
        .chunks
        .len() as u32;
    let chunks = (0..count)
        .map(|i| replays.chunk(&id, i).expect("read").expect("kept").to_vec())
        .collect();
    (bytes, chunks)
}

#[test]
fn a_published_recording_is_fetched_and_passed_on() {
    let ana = TestHome::new();
    let id = make_recording(&ana, RoomId([1; 16]), speech(20));
    let (manifest, link) = publish(&ana, &id);
    assert!(link.starts_with("earshot://replay/"), "{link}");
    let (server, addr) = serve("ana", &ana);

    // Bea fetches from Ana with the link (and Ana's address: Ana hosts no room, so the link
    // carries none).
    let bea = TestHome::new();
    let (output, lines) = fetch(&bea, &[&link, "--from", &addr]);
    let done = fetched(&output, &lines);
    assert_eq!(done.recording, id);
    assert_eq!(done.fetched, done.chunks);
    assert_eq!(done.resumed, 0);
    assert_eq!(done.bad_chunks, 0);
    assert!(!chunks_stored(&lines).is_empty());
    drop(server);

    // Both export the same Ogg Opus file, byte for byte.
    let export = |home: &TestHome| {
        let file = home.join("replay.opus");
        home.ok(&[
            "recordings",
            "export",
            &id.to_string(),
            file.to_str().expect("utf-8"),
        ]);
        std::fs::read(file).expect("exported")
    };
    let original = export(&ana);
    assert!(original.len() > 10_000);
    assert_eq!(
        export(&bea),
        original,
        "the fetched recording exports the same"
    );
    let listed = bea.json(&["recordings", "list"]);
    assert_eq!(listed[0]["id"], id.to_string(), "{listed}");
    assert_eq!(listed[0]["state"], "complete");

    // Cleo fetches from Bea (Ana is gone) by manifest id.
    let (bea_server, bea_addr) = serve("bea", &bea);
    let cleo = TestHome::new();
    let (output, lines) = fetch(&cleo, &[&manifest, "--from", &bea_addr]);
    let done = fetched(&output, &lines);
    assert_eq!(done.fetched, done.chunks);
    drop(bea_server);
    assert_eq!(export(&cleo), original);
    assert_eq!(frames_of(&cleo, &id), frames_of(&ana, &id));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tampering_holder_is_caught_and_the_chunks_come_from_another() {
    let ana = TestHome::new();
    let id = make_recording(&ana, RoomId([1; 16]), bulk(2400, 800));
    let (manifest, _) = publish(&ana, &id);
    let (bytes, chunks) = manifest_and_chunks(&ana, &manifest);
    assert!(chunks.len() >= 6, "{} chunks", chunks.len());

    // Tom holds the replay with a byte flipped in every chunk, and serves it from this process.
    let tom = TestHome::new();
    let tom_home = Home::open(tom.path()).expect("open");
    let tom_replays = Replays::open(tom_home.store()).expect("replays");
    let manifest_id = tom_replays.store_manifest(&bytes).expect("manifest").id();
    for (index, chunk) in chunks.iter().enumerate() {
        let mut bad = chunk.clone();
        bad[chunk.len() / 2] ^= 0x20;
        tom_replays
            .store_chunk_unverified(&manifest_id, index as u32, &bad)
            .expect("store");
    }
    let identity = Identity::load(tom.path()).expect("identity");
    let tom_node = Node::spawn(
        identity,
        NodeConfig {
            listen: vec![LOCAL.parse().expect("multiaddr")],
            bootstrap: Vec::new(),
            net: NetConfig::default(),
            max_children: 4,
            upload_kbps: None,
            relays: Vec::new(),
            reachability: Default::default(),
            tree_by_hand: false,
            misbehave: None,
            capture: None,
            unchecked_audio: false,
        },
    )
    .await
    .expect("node");
    let server = tom_node.serve_replays(tom_replays).expect("serve");
    let tom_addr = format!(
        "{}/p2p/{}",
        tom_node.listen_addrs().await.expect("addrs")[0],
        tom_node.peer_id()
    );

    let (ana_server, ana_addr) = serve("ana", &ana);
    let cleo = TestHome::new();
    // The fetch runs as a process while this runtime serves Tom's node.
    let (cleo, (output, lines)) = {
        let manifest = manifest.clone();
        tokio::task::spawn_blocking(move || {
            let fetched = fetch(
                &cleo,
                &[&manifest, "--from", &tom_addr, "--from", &ana_addr],
            );
            (cleo, fetched)
        })
        .await
        .expect("fetch ran")
    };
    let done = fetched(&output, &lines);
    let bad: Vec<&Event> = lines
        .iter()
        .filter(|e| matches!(e, Event::BadChunk { .. }))
        .collect();
    assert!(!bad.is_empty(), "the bad chunks are reported: {lines:#?}");
    for event in &bad {
        assert!(
            matches!(event, Event::BadChunk { from, reason, .. }
                if *from == tom_node.peer_id()
                    && reason.contains("does not match the manifest's hash")),
            "{event:?}"
        );
    }
    assert_eq!(done.bad_chunks, bad.len());
    assert!(
        server
            .stats()
            .chunks
            .load(std::sync::atomic::Ordering::Relaxed)
            >= 1
    );
    // Every chunk stored came from Ana.
    for (index, from) in chunks_stored(&lines) {
        assert_ne!(from, tom_node.peer_id().to_string(), "chunk {index}");
    }
    tom_node.shutdown().await;
    drop((tom_home, ana_server));
    assert_eq!(frames_of(&cleo, &id), frames_of(&ana, &id));
}

#[test]
fn a_manifest_with_a_bad_signature_is_refused() {
    let ana = TestHome::new();
    let id = make_recording(&ana, RoomId([1; 16]), bulk(200, 100));
    let (manifest, _) = publish(&ana, &id);
    let (bytes, _) = manifest_and_chunks(&ana, &manifest);
    // Fred serves the manifest with its title changed: the recorder's signature no longer holds.
    let mut forged = ReplayManifest::decode_verified(&bytes)
        .expect("valid")
        .into_inner();
    forged.title = "Not what was said".into();
    let fred = TestHome::new();
    let forged_id = {
        let opened = Home::open(fred.path()).expect("open");
        Replays::open(opened.store())
            .expect("replays")
            .store_manifest_unverified(&forged.encode())
            .expect("store")
    };
    let (_server, addr) = serve("fred", &fred);
    let cleo = TestHome::new();
    let (output, lines) = fetch(&cleo, &[&forged_id.to_string(), "--from", &addr]);
    assert_eq!(code(&output), 1, "{lines:#?}");
    let err = stderr(&output);
    assert!(
        err.contains("no holder sent a valid manifest")
            && err.contains("bad signature on the replay manifest"),
        "{err}"
    );
    let bad_manifests = lines
        .iter()
        .filter(|e| matches!(e, Event::BadManifest { .. }))
        .count();
    assert_eq!(bad_manifests, 1, "{lines:#?}");
    assert_eq!(cleo.json(&["recordings", "list"]), serde_json::json!([]));

    // A malformed link is bad usage.
    let output = cleo.run(&["recordings", "fetch", "earshot://replay/abc1"]);
    assert_eq!(code(&output), 2);
    assert!(
        stderr(&output).contains("invalid character '1'"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn an_interrupted_fetch_resumes_with_the_missing_chunks() {
    let ana = TestHome::new();
    let id = make_recording(&ana, RoomId([1; 16]), bulk(2400, 800));
    let (manifest, link) = publish(&ana, &id);
    let (bytes, chunks) = manifest_and_chunks(&ana, &manifest);
    let total = chunks.len();
    let half = total / 2;
    // Pat holds only the first half (a holder that stopped part way through its own fetch).
    let pat = TestHome::new();
    {
        let opened = Home::open(pat.path()).expect("open");
        let replays = Replays::open(opened.store()).expect("replays");
        let stored = replays.store_manifest(&bytes).expect("manifest").id();
        for (index, chunk) in chunks.iter().take(half).enumerate() {
            replays
                .store_chunk(&stored, index as u32, chunk)
                .expect("store");
        }
    }
    let cleo = TestHome::new();
    {
        let (_server, addr) = serve("pat", &pat);
        let (output, lines) = fetch(&cleo, &[&link, "--from", &addr]);
        assert_eq!(code(&output), 1, "{lines:#?}");
        assert_eq!(chunks_stored(&lines).len(), half);
        let err = stderr(&output);
        assert!(
            err.contains(&format!(
                "{} of {total} chunks could not be fetched",
                total - half
            )) && err.contains("fetching again resumes"),
            "{err}"
        );
    }
    let (server, addr) = serve("ana", &ana);
    let (output, lines) = fetch(&cleo, &[&link, "--from", &addr]);
    drop(server);
    let done = fetched(&output, &lines);
    assert_eq!(done.resumed, half);
    assert_eq!(done.fetched, total - half);
    let (held, from) = lines
        .iter()
        .find_map(|e| match e {
            Event::Manifest { held, from, .. } => Some((*held, *from)),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no manifest event: {lines:#?}"));
    assert_eq!(held, half, "{lines:#?}");
    assert!(from.is_none(), "the manifest was kept");
    for (index, from) in chunks_stored(&lines) {
        assert!(index as usize >= half, "chunk {index} from {from}");
    }
    assert_eq!(frames_of(&cleo, &id), frames_of(&ana, &id));
}

#[test]
fn a_host_announces_what_it_publishes_and_members_can_fetch_it() {
    let ana = TestHome::new();
    let room = local_room(&ana, "Book club");
    let room_id: RoomId = room.parse().expect("room id");
    let id = make_recording(&ana, room_id, bulk(300, 100));
    let mut host = Live::start(
        "host",
        &ana,
        &["host", &room, "--input", "silence", "--output", "null"],
    );
    host.expect("hosting", |e| matches!(e, Event::Hosting { .. }));
    let bea = TestHome::new();
    let link = ana.invite(&[&room, "--role", "listener"]);
    let mut guest = crate::live::listener("bea", &bea, &link, &[]);
    guest.expect("joined", |e| matches!(e, Event::Joined { .. }));
    // Published through the host's control socket: the room is told, with a link to the host.
    let (manifest, _) = publish(&ana, &id);
    let (announced, _) = replay_available(&mut host);
    assert_eq!(announced, manifest);
    let (heard, replay_link) = replay_available(&mut guest);
    assert_eq!(heard, manifest);
    let cleo = TestHome::new();
    let (output, lines) = fetch(&cleo, &[&replay_link]);
    let done = fetched(&output, &lines);
    assert_eq!(done.recording, id);
}

/// A public room's lobby entry lists the replays its host published, with links to fetch them.
#[test]
fn the_lobby_lists_a_public_rooms_replays() {
    let ana = TestHome::new();
    let room = crate::live::local_room_with(&ana, "Open house", &["--public"]);
    let room_id: RoomId = room.parse().expect("room id");
    let id = make_recording(&ana, room_id, bulk(200, 100));
    let mut host = Live::start(
        "host",
        &ana,
        &["host", &room, "--input", "silence", "--output", "null"],
    );
    let bootstrap = host.expect_map("hosting", |e| match e {
        Event::Hosting { addrs, .. } => Some(addrs.first().expect("an address").to_string()),
        _ => None,
    });
    let (manifest, _) = publish(&ana, &id);
    replay_available(&mut host);
    // The lobby entry is renewed every few seconds; ask until it lists the replay.
    let visitor = TestHome::new();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let listed = loop {
        let rooms = visitor.json(&["rooms", "--bootstrap", &bootstrap]);
        let entry = rooms
            .as_array()
            .and_then(|rooms| rooms.iter().find(|r| r["room"] == room.as_str()))
            .cloned();
        if let Some(entry) = entry
            && entry["replays"].as_array().is_some_and(|r| !r.is_empty())
        {
            break entry;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the lobby never listed the replay: {rooms}"
        );
    };
    let replay = &listed["replays"][0];
    assert_eq!(replay["manifest"], manifest.as_str());
    let link = replay["link"].as_str().expect("link").to_owned();
    let (output, lines) = fetch(&visitor, &[&link]);
    assert_eq!(fetched(&output, &lines).recording, id);
    host.say("/end");
    assert_eq!(host.exit_code(), 0);
}

/// Records `seconds` of Ana and Bea speaking in turn into `home` through the recorder, as a live
/// room does: each frame signed by its speaker (a proof every five frames), both named with
/// their keys. Returns the recording's id.
fn signed_recording(home: &TestHome, room: RoomId, seconds: u32) -> RecordingId {
    let opened = Home::open(home.path()).expect("open the data directory");
    let recorder = opened
        .recordings()
        .start(NewRecording {
            room,
            title: "Signed club".into(),
            host: opened.identity().key(),
            recorder: opened.identity().key(),
            started_at: Timestamp(1_800_000_000_000),
            start_media: 48_000,
            private: None,
        })
        .expect("start recording");
    let keys = [11u8, 12].map(|seed| ed25519_dalek::SigningKey::from_bytes(&[seed; 32]));
    let mut signers = keys.clone().map(|key| ProofSigner::new(key, room));
    for i in 0..seconds * 50 {
        // Turns of one second each.
        let signer = &mut signers[(i / 50 % 2) as usize];
        let frame = AudioFrame {
            speaker: signer.speaker(),
            seq: 9_000 + i,
            timestamp: 48_000 + i * 960,
            level: 25,
            flags: 1,
            payload: vec![(i % 251) as u8; 80],
            tag: None,
        };
        let proofs = signer.push(&frame);
        recorder.tap().record(&frame);
        for proof in proofs {
            recorder.tap().record_proof(&proof);
        }
        // The tap drops what the recorder's queue cannot take; keep to its pace.
        while recorder.meta().frames + 500 < u64::from(i) {
            std::thread::yield_now();
        }
    }
    for signer in &mut signers {
        if let Some(proof) = signer.flush() {
            recorder.tap().record_proof(&proof);
        }
    }
    let [ana, bea] = keys.map(|key| PeerKey::from(&key));
    recorder.name_speakers([(ana, "ana".to_owned()), (bea, "bea".to_owned())]);
    let meta = recorder
        .finish(Timestamp(1_800_000_000_000 + u64::from(seconds) * 1000))
        .expect("finish");
    assert_eq!(meta.frames, u64::from(seconds) * 50, "every frame kept");
    meta.id
}

/// `recordings verify ARGS… --json`: (exit code, the report).
fn verify(home: &TestHome, args: &[&str]) -> (i32, Value) {
    let mut all = vec!["recordings", "verify"];
    all.extend_from_slice(args);
    all.push("--json");
    let output = home.run(&all);
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let report = serde_json::from_str(&stdout)
        .unwrap_or_else(|err| panic!("not a report ({err}): {stdout}\n{}", stderr(&output)));
    (code(&output), report)
}

#[test]
fn a_fetched_replay_verifies_like_the_recording_and_an_altered_one_does_not() {
    let ana = TestHome::new();
    let id = signed_recording(&ana, RoomId([1; 16]), 4);
    let (code_here, here) = verify(&ana, &[&id.short()]);
    assert_eq!(code_here, 0, "{here}");
    assert_eq!(here["verified"], true, "{here}");
    assert_eq!(here["total"]["frames"], 200);
    assert_eq!(here["total"]["verified"], 200);
    let speakers = here["speakers"].as_array().expect("speakers");
    assert_eq!(speakers.len(), 2, "{here}");
    for speaker in speakers {
        assert_eq!(speaker["tally"]["verified"], 100, "{speaker}");
        assert!(speaker["peer_id"].is_string(), "{speaker}");
    }
    let text = ana.ok(&["recordings", "verify", &id.to_string()]);
    assert!(
        text.contains("VERIFIED: all 200 frames") && text.contains("verified 100 of 100 frames"),
        "{text}"
    );

    // Fetched with the link and checked at once: the same verdict.
    let (_, link) = publish(&ana, &id);
    let (server, addr) = serve("ana", &ana);
    let bea = TestHome::new();
    let (code_there, there) = verify(&bea, &[&link, "--from", &addr, "--listen", LOCAL]);
    drop(server);
    assert_eq!(code_there, 0, "{there}");
    assert_eq!(there["recording"], id.to_string());
    assert_eq!(there["total"], here["total"]);
    assert_eq!(there["speakers"], here["speakers"]);
    // Kept now: by id, and by link with no holder at all.
    assert_eq!(verify(&bea, &[&id.to_string()]).0, 0);
    assert_eq!(verify(&bea, &[&link]).0, 0);

    // Cleo holds the same recording with one of Bea's words changed: caught, and named.
    let cleo = TestHome::new();
    {
        let source = Home::open(ana.path()).expect("open");
        let meta = source
            .recordings()
            .get(&id)
            .expect("read")
            .expect("the recording");
        let mut records: Vec<ContentRecord> = source
            .recordings()
            .records(&id)
            .collect::<Result<_, _>>()
            .expect("records");
        let bea_id = meta
            .speakers
            .iter()
            .find(|(_, info)| info.name == "bea")
            .map(|(id, _)| *id)
            .expect("bea");
        let frame = records
            .iter_mut()
            .find_map(|record| match record {
                ContentRecord::Frame(frame) if frame.speaker == bea_id => Some(frame),
                _ => None,
            })
            .expect("a frame of Bea's");
        frame.payload = b"words bea never said".to_vec();
        drop(source);
        Home::open(cleo.path())
            .expect("open")
            .recordings()
            .import(&meta, records)
            .expect("import");
    }
    let (code_forged, forged) = verify(&cleo, &[&id.to_string()]);
    assert_eq!(code_forged, 1, "{forged}");
    assert_eq!(forged["verified"], false);
    assert_eq!(forged["total"]["forged"], 1, "{forged}");
    assert_eq!(forged["total"]["verified"], 199, "{forged}");
    let output = cleo.run(&["recordings", "verify", &id.to_string()]);
    assert_eq!(code(&output), 1);
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        text.contains("NOT VERIFIED")
            && text
                .lines()
                .any(|line| line.contains("bea") && line.contains("altered")),
        "{text}"
    );

    // A recording without proofs (made without signing speakers) does not verify either.
    let plain = make_recording(&cleo, RoomId([1; 16]), bulk(20, 50));
    let (code_plain, unproven) = verify(&cleo, &[&plain.to_string()]);
    assert_eq!(code_plain, 1);
    assert_eq!(unproven["total"]["unproven"], 20, "{unproven}");
    // A malformed link is bad usage.
    assert_eq!(
        code(&cleo.run(&["recordings", "verify", "earshot://replay/abc1"])),
        2
    );
}
