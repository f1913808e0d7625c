use super::*;
use crate::recording::replay::Replays;

#[test]
fn a_full_disk_stops_the_recording_and_keeps_what_was_written() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path()).expect("store");
    let recordings = Recordings::open(&store).expect("recordings");
    let recorder = recordings.start(new_recording()).expect("start");
    for i in 0..50u32 {
        recorder.tap().record(&frame(1, i, 1_000_000 + i * 960));
    }
    // Wait until those frames are on disk, then the disk fills up.
    let deadline = Instant::now() + Duration::from_secs(10);
    while recordings.frames(&recorder.id()).count() < 50 {
        assert!(Instant::now() < deadline, "frames not written");
        std::thread::yield_now();
    }
    recordings.disk_full.store(true, Ordering::Relaxed);
    for i in 50..100u32 {
        recorder.tap().record(&frame(1, i, 1_000_000 + i * 960));
    }
    let meta = recorder
        .finish(Timestamp(1_800_000_002_000))
        .expect("finish");
    match &meta.state {
        RecordingState::Failed(reason) => {
            assert!(reason.contains("No space left"), "{reason}");
        }
        other => panic!("expected a failed recording, got {other:?}"),
    }
    // What was written before is kept, and the recording is listed with its reason.
    assert_eq!(recordings.frames(&meta.id).count(), 50);
    let listed = recordings.get(&meta.id).expect("get").expect("listed");
    assert!(
        matches!(listed.state, RecordingState::Failed(_)),
        "{listed:?}"
    );
}

fn frame(speaker: u32, seq: u32, timestamp: u32) -> AudioFrame {
    AudioFrame {
        speaker: SpeakerId(speaker),
        seq,
        timestamp,
        level: 30,
        flags: 0,
        payload: vec![seq as u8; 60],
        tag: None,
    }
}

fn new_recording() -> NewRecording {
    let key = PeerKey([7; 32]);
    NewRecording {
        room: RoomId([1; 16]),
        title: "Radio".into(),
        host: key,
        recorder: key,
        started_at: Timestamp(1_800_000_000_000),
        start_media: 1_000_000,
    }
}

#[test]
fn frames_stream_back_in_time_order_across_speakers() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path()).expect("store");
    let recordings = Recordings::open(&store).expect("recordings");
    let recorder = recordings.start(new_recording()).expect("start");
    let tap = recorder.tap();
    // Two speakers, interleaved out of order; one frame from before the start.
    tap.record(&frame(2, 0, 1_000_000 + 480));
    tap.record(&frame(1, 1, 1_000_000 + 960));
    tap.record(&frame(1, 0, 1_000_000));
    tap.record(&frame(2, 1, 1_000_000 + 480 + 960));
    tap.record(&frame(1, 9, 1_000_000 - 960));
    recorder.name_speakers([(PeerKey([7; 32]), "ana".to_owned())]);
    let meta = recorder
        .finish(Timestamp(1_800_000_001_000))
        .expect("finish");
    assert_eq!(meta.state, RecordingState::Complete);
    assert_eq!(meta.frames, 4);
    let order: Vec<(u64, u32)> = recordings
        .frames(&meta.id)
        .map(|f| f.map(|f| (f.at, f.speaker.0)).expect("frame"))
        .collect();
    assert_eq!(order, vec![(0, 1), (480, 2), (960, 1), (1440, 2)]);
    let stored = recordings.get(&meta.id).expect("get").expect("stored");
    assert_eq!(stored.state, RecordingState::Complete);
    assert_eq!(stored.duration_samples, 1440 + 960);
    assert!(
        stored
            .speakers
            .values()
            .any(|s| s.name == "ana" && s.key.is_some())
    );
    assert_eq!(recordings.find(&meta.id.short()).expect("find").id, meta.id);

    recordings.delete(&meta.id).expect("delete");
    assert!(recordings.get(&meta.id).expect("get").is_none());
    assert_eq!(recordings.frames(&meta.id).count(), 0);
    assert!(matches!(
        recordings.find("zzzz"),
        Err(RecordingError::NotFound(_))
    ));
}

#[test]
fn a_recording_left_open_is_interrupted_on_the_next_start() {
    // What a killed recorder leaves: metadata still saying "recording" (and lagging the
    // frames by up to a flush), and the frames written before the kill.
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path()).expect("store");
    let recordings = Recordings::open(&store).expect("recordings");
    let new = new_recording();
    let started_at = new.started_at;
    let mut meta = RecordingMeta {
        frames: 40,
        ..RecordingMeta::begin(RecordingId([9; 16]), new)
    };
    let frames = (0..100u32).map(|i| StoredFrame {
        at: u64::from(i) * 960,
        speaker: SpeakerId(1),
        level: 30,
        payload: vec![i as u8; 60],
    });
    recordings.import(&meta, frames).expect("frames");

    assert_eq!(recordings.recover().expect("recover"), 1);
    meta = recordings.get(&meta.id).expect("get").expect("kept");
    assert_eq!(meta.state, RecordingState::Interrupted);
    assert_eq!(meta.frames, 100, "counted from the frames on disk");
    assert_eq!(meta.duration_samples, 100 * 960);
    assert_eq!(meta.ended_at, Some(started_at.plus_millis(2_000)));
    // Recovering again changes nothing.
    assert_eq!(recordings.recover().expect("recover"), 0);
}

#[test]
fn imported_recordings_are_stored_exactly_as_recorded_ones() {
    // Recorded through the recorder, as in a live room (two speakers, flags clear: replays do
    // not carry flags).
    let a = tempfile::tempdir().expect("tempdir");
    let store_a = Store::open(a.path()).expect("store");
    let recordings_a = Recordings::open(&store_a).expect("recordings");
    let recorder = recordings_a.start(new_recording()).expect("start");
    for i in 0..300u32 {
        for speaker in [1u32, 2] {
            recorder.tap().record(&AudioFrame {
                speaker: SpeakerId(speaker),
                seq: i,
                timestamp: 1_000_000 + i * 960 + speaker * 7,
                level: (i % 90) as u8,
                flags: 0,
                payload: vec![(i + speaker) as u8; 40 + (i % 20) as usize],
                tag: None,
            });
        }
    }
    let id = recorder
        .finish(Timestamp(1_800_000_010_000))
        .expect("finish")
        .id;
    // As stored (the recorder thread stamps its own end time).
    let meta = recordings_a.get(&id).expect("get").expect("stored");
    assert_eq!(meta.frames, 600);
    let recorded: Vec<StoredFrame> = recordings_a
        .frames(&meta.id)
        .collect::<Result<_, _>>()
        .expect("frames");
    let raw = |recordings: &Recordings| {
        recordings
            .frames
            .iter()
            .collect::<Result<Vec<_>, _>>()
            .expect("read the frames tree")
    };

    // The same frames imported into another data directory: byte for byte the same keys and
    // values, and the same recording listed.
    let b = tempfile::tempdir().expect("tempdir");
    let recordings_b = Recordings::open(&Store::open(b.path()).expect("store")).expect("open");
    recordings_b
        .import(&meta, recorded.iter().cloned())
        .expect("import");
    assert_eq!(raw(&recordings_b), raw(&recordings_a));
    assert_eq!(
        recordings_b.get(&meta.id).expect("get"),
        recordings_a.get(&meta.id).expect("get")
    );

    // Published, and imported elsewhere as a fetch does (the frames stay in the chunks): the
    // same frames in the same order.
    let replays_a = Replays::open(&store_a).expect("replays");
    let signer = ed25519_dalek::SigningKey::from_bytes(&[7; 32]);
    let manifest = replays_a
        .publish(&recordings_a, &meta, &signer)
        .expect("publish");
    let id = manifest.id();
    let c = tempfile::tempdir().expect("tempdir");
    let store_c = Store::open(c.path()).expect("store");
    let (recordings_c, replays_c) = (
        Recordings::open(&store_c).expect("recordings"),
        Replays::open(&store_c).expect("replays"),
    );
    let bytes = replays_a.manifest_bytes(&id).expect("read").expect("kept");
    replays_c.store_manifest(&bytes).expect("manifest");
    for index in 0..manifest.chunks.len() as u32 {
        let chunk = replays_a.chunk(&id, index).expect("read").expect("kept");
        replays_c.store_chunk(&id, index, &chunk).expect("chunk");
    }
    let imported = replays_c.import(&recordings_c, &id).expect("import");
    assert_eq!(imported.frames, meta.frames);
    let fetched: Vec<StoredFrame> = recordings_c
        .frames(&meta.id)
        .collect::<Result<_, _>>()
        .expect("frames");
    assert_eq!(fetched, recorded);
}
