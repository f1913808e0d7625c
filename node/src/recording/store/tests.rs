use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use earshot_protocol::proof::ProofSigner;

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

/// The host of [`new_recording`]'s room.
fn host_key() -> ed25519_dalek::SigningKey {
    ed25519_dalek::SigningKey::from_bytes(&[7; 32])
}

/// The host's signed view with `ana` alone on stage.
fn stage_view(ana: PeerKey) -> Vec<u8> {
    use earshot_protocol::audience::{AudienceView, StageMember};
    AudienceView {
        room: new_recording().room,
        seq: 3,
        at: Timestamp(1_800_000_000_500),
        stage: vec![StageMember {
            key: ana,
            name: "ana".into(),
            role: earshot_protocol::state::RoomRole::Host,
            muted: false,
        }],
        hands: Vec::new(),
        hands_total: 0,
        listeners: 2,
        reactions: Vec::new(),
        recording: true,
        ended: false,
        banned: Vec::new(),
        revoked: Vec::new(),
        carriers: None,
        excluded: Vec::new(),
        keys: None,
        audio_loss: 0,
        signature: earshot_protocol::id::Sig([0; 64]),
    }
    .sign(&host_key())
    .encode()
}

fn new_recording() -> NewRecording {
    let key = PeerKey::from(&host_key());
    NewRecording {
        room: RoomId([1; 16]),
        title: "Radio".into(),
        host: key,
        recorder: key,
        started_at: Timestamp(1_800_000_000_000),
        start_media: 1_000_000,
        private: None,
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
        seq: i,
        timestamp: 1_000_000 + i * 960,
        flags: 0,
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

/// A speaker who signs what it says, as in a live room.
fn speaker(seed: u8) -> (PeerKey, ProofSigner) {
    let key = ed25519_dalek::SigningKey::from_bytes(&[seed; 32]);
    (
        PeerKey::from(&key),
        ProofSigner::new(key, new_recording().room),
    )
}

/// Frame `i` of `signer`'s voice, `phase` samples after its 20 ms slot.
fn spoken(signer: &ProofSigner, i: u32, phase: u32) -> AudioFrame {
    AudioFrame {
        speaker: signer.speaker(),
        seq: 40_000 + i,
        timestamp: 1_000_000 + i * 960 + phase,
        level: (i % 90) as u8,
        flags: (i % 4) as u8,
        payload: vec![(i + phase) as u8; 40 + (i % 20) as usize],
        tag: None,
    }
}

#[test]
fn proofs_are_kept_after_the_frames_they_cover() {
    let dir = tempfile::tempdir().expect("tempdir");
    let recordings = Recordings::open(&Store::open(dir.path()).expect("store")).expect("open");
    let recorder = recordings.start(new_recording()).expect("start");
    let tap = recorder.tap();
    let (ana, mut signer) = speaker(1);
    // Frames 0-4 then their proof; frames 5-9 with their proof handed over first (it verified
    // at the recorder before the frames did); frames 10-11 and the proof of the pause.
    let frames: Vec<AudioFrame> = (0..12).map(|i| spoken(&signer, i, 0)).collect();
    let mut proofs = Vec::new();
    for frame in &frames {
        proofs.extend(signer.push(frame));
    }
    proofs.extend(signer.flush());
    assert_eq!(proofs.len(), 3);
    frames[..5].iter().for_each(|f| tap.record(f));
    tap.record_proof(&proofs[0]);
    tap.record_proof(&proofs[1]);
    tap.record_stage(stage_view(ana));
    frames[5..].iter().for_each(|f| tap.record(f));
    tap.record_proof(&proofs[2]);
    // The speaker's studio track of those twelve frames, a chunk that came last.
    let studio: Vec<AudioFrame> = frames
        .iter()
        .map(|f| AudioFrame {
            payload: vec![9; 150],
            ..f.clone()
        })
        .collect();
    let chunk = earshot_protocol::studio::StudioChunk::sign(
        &ed25519_dalek::SigningKey::from_bytes(&[1; 32]),
        &new_recording().room,
        0,
        studio,
    )
    .expect("a chunk");
    tap.record_studio(chunk.clone());
    recorder.name_speakers([(ana, "ana".to_owned())]);
    let meta = recorder
        .finish(Timestamp(1_800_000_001_000))
        .expect("finish");
    assert_eq!(meta.frames, 12, "proofs and studio chunks are not frames");
    // Kept as sent, and in content order.
    let records: Vec<ContentRecord> = recordings
        .records(&meta.id)
        .collect::<Result<_, _>>()
        .expect("records");
    let mut sorted = records.clone();
    sorted.sort_by_key(ContentRecord::order);
    assert_eq!(records, sorted);
    assert!(
        records
            .iter()
            .any(|r| matches!(r, ContentRecord::Studio(kept) if kept.chunk == chunk))
    );

    let order: Vec<(u64, &str)> = recordings
        .records(&meta.id)
        .map(|record| match record.expect("a record") {
            ContentRecord::Frame(frame) => (frame.at, "frame"),
            ContentRecord::Proof(proof) => (proof.at, "proof"),
            ContentRecord::Stage(stage) => (stage.at, "stage"),
            ContentRecord::Sealed(sealed) => (sealed.at, "sealed"),
            ContentRecord::Studio(studio) => (studio.at, "studio"),
            ContentRecord::Consent(consent) => (consent.at, "consent"),
        })
        .collect();
    let mut expected: Vec<(u64, &str)> = (0..12).map(|i| (i * 960, "frame")).collect();
    // At its first frame's time, after the frame there.
    expected.insert(1, (0, "studio"));
    // After frame 4 (the last it covers), after frame 4 again (its speaker's latest when it
    // came), after frame 11.
    expected.insert(6, (4 * 960, "proof"));
    expected.insert(7, (4 * 960, "proof"));
    // The host's view of the stage, at the latest time then, after what sits there.
    expected.insert(8, (4 * 960, "stage"));
    expected.push((11 * 960, "proof"));
    assert_eq!(order, expected);
    let kept: Vec<FrameProof> = recordings
        .proofs(&meta.id)
        .map(|p| p.expect("a proof").proof)
        .collect();
    assert_eq!(kept, proofs);
    let back: Vec<StoredFrame> = recordings
        .frames(&meta.id)
        .collect::<Result<_, _>>()
        .expect("frames");
    let sent: Vec<StoredFrame> = frames
        .iter()
        .enumerate()
        .map(|(i, f)| StoredFrame::of(i as u64 * 960, f))
        .collect();
    assert_eq!(back, sent, "everything the speaker signed is kept");

    let verified = recordings.verify(&meta.id).expect("verify");
    assert!(verified.is_verified(), "{verified:?}");
    assert_eq!(verified.report.total().verified, 12);
    assert_eq!(verified.format, ContentFormat::Authenticated);
    assert_eq!(
        verified.report.speakers[0].named_by_host.as_deref(),
        Some("ana"),
        "the host's view names the speaker's key"
    );

    // Deleted, its proofs go with it.
    recordings.delete(&meta.id).expect("delete");
    assert_eq!(recordings.records(&meta.id).count(), 0);
}

#[test]
fn a_full_tap_counts_dropped_proofs_and_never_waits() {
    let (tx, _rx) = std::sync::mpsc::sync_channel(1);
    let tap = FrameTap {
        tx,
        dropped: Arc::new(AtomicU64::new(0)),
        dropped_proofs: Arc::new(AtomicU64::new(0)),
        sealing: None,
        studio_streams: Arc::new(tokio::sync::watch::channel(0).0),
        studio_budgets: Arc::default(),
        unconsented: Arc::default(),
    };
    let (_, mut signer) = speaker(1);
    let frame = spoken(&signer, 0, 0);
    let proof = signer.push(&frame).into_iter().chain(signer.flush());
    tap.record(&frame);
    for proof in proof {
        tap.record_proof(&proof);
        tap.record_proof(&proof);
    }
    assert_eq!(tap.dropped.load(Ordering::Relaxed), 0);
    assert_eq!(tap.dropped_proofs.load(Ordering::Relaxed), 2);
}

#[test]
fn frames_kept_before_proofs_read_back_and_never_verify() {
    // What an older build wrote: level, flags, payload.
    let dir = tempfile::tempdir().expect("tempdir");
    let recordings = Recordings::open(&Store::open(dir.path()).expect("store")).expect("open");
    let (ana, _) = speaker(1);
    let mut meta = RecordingMeta::begin(RecordingId([5; 16]), new_recording());
    meta.state = RecordingState::Complete;
    meta.speakers.insert(
        SpeakerId::of(&ana).0,
        SpeakerInfo {
            key: Some(ana),
            name: "ana".into(),
            frames: 3,
        },
    );
    recordings
        .import(&meta, std::iter::empty::<ContentRecord>())
        .expect("meta");
    for i in 0..3u32 {
        recordings
            .frames
            .insert(
                frame_key(&meta.id, u64::from(i) * 960, SpeakerId::of(&ana)),
                [&[30u8, 1][..], &[i as u8; 20]].concat(),
            )
            .expect("insert");
    }
    let back: Vec<StoredFrame> = recordings
        .frames(&meta.id)
        .collect::<Result<_, _>>()
        .expect("frames");
    assert_eq!(back.len(), 3);
    assert_eq!((back[2].at, back[2].level, back[2].flags), (1920, 30, 1));
    assert_eq!((back[2].seq, back[2].timestamp), (0, 0));
    assert_eq!(back[2].payload, vec![2; 20]);
    let verified = recordings.verify(&meta.id).expect("verify");
    assert_eq!(verified.format, ContentFormat::Unauthenticated);
    assert_eq!(verified.report.total().unproven, 3);
    assert!(!verified.is_verified());
}

#[test]
fn imported_recordings_are_stored_exactly_as_recorded_ones() {
    // Recorded through the recorder, as in a live room: two speakers signing what they say.
    let a = tempfile::tempdir().expect("tempdir");
    let store_a = Store::open(a.path()).expect("store");
    let recordings_a = Recordings::open(&store_a).expect("recordings");
    let recorder = recordings_a.start(new_recording()).expect("start");
    let mut speakers = [speaker(1), speaker(2)];
    for i in 0..300u32 {
        for (n, (_, signer)) in speakers.iter_mut().enumerate() {
            let frame = spoken(signer, i, 7 * n as u32);
            let proofs = signer.push(&frame);
            recorder.tap().record(&frame);
            proofs
                .iter()
                .for_each(|proof| recorder.tap().record_proof(proof));
        }
        // The tap drops when the recorder's queue is full; keep to its pace here.
        while recorder.meta().frames + 400 < u64::from(i) * 2 {
            std::thread::yield_now();
        }
    }
    recorder.name_speakers(speakers.iter().map(|(key, _)| (*key, "someone".to_owned())));
    let id = recorder
        .finish(Timestamp(1_800_000_010_000))
        .expect("finish")
        .id;
    // As stored (the recorder thread stamps its own end time).
    let meta = recordings_a.get(&id).expect("get").expect("stored");
    assert_eq!(meta.frames, 600);
    let recorded: Vec<ContentRecord> = recordings_a
        .records(&meta.id)
        .collect::<Result<_, _>>()
        .expect("records");
    assert_eq!(recorded.len(), 600 + 120, "a proof every five frames");
    assert!(recordings_a.verify(&id).expect("verify").is_verified());
    let raw = |recordings: &Recordings| {
        recordings
            .frames
            .iter()
            .collect::<Result<Vec<_>, _>>()
            .expect("read the frames tree")
    };

    // The same records imported into another data directory: byte for byte the same keys and
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

    // Published, and imported elsewhere as a fetch does (the records stay in the chunks): the
    // same frames and proofs in the same order, and they verify there too.
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
    let fetched: Vec<ContentRecord> = recordings_c
        .records(&meta.id)
        .collect::<Result<_, _>>()
        .expect("records");
    assert_eq!(fetched, recorded);
    let verified = recordings_c.verify(&meta.id).expect("verify");
    assert!(verified.is_verified(), "{verified:?}");
    assert_eq!(verified.report.total().verified, 600);
}

#[test]
fn a_speaker_who_has_not_agreed_is_kept_out_of_the_recording_and_its_agreement_kept_in() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path()).expect("store");
    let recordings = Recordings::open(&store).expect("recordings");
    let recorder = recordings.start(new_recording()).expect("start");
    let tap = recorder.tap();
    let (bo, bo_voice) = speaker(2);
    let (_, ana_voice) = speaker(1);
    // Bo is on stage and has not agreed: whatever its node sends is not kept.
    tap.set_unconsented([bo]);
    for i in 0..5 {
        tap.record(&spoken(&bo_voice, i, 0));
        tap.record(&spoken(&ana_voice, i, 0));
    }
    // It agrees: from then on it is.
    let signing = ed25519_dalek::SigningKey::from_bytes(&[2; 32]);
    let envelope = earshot_protocol::envelope::Envelope::sign(
        &signing,
        new_recording().room,
        1,
        Timestamp(1_800_000_000_500),
        earshot_protocol::envelope::Authority::Host,
        earshot_protocol::ControlBody::RecordingConsent {
            since: Timestamp(1_800_000_000_000),
        },
    )
    .expect("envelope")
    .encode();
    let consent = super::Consent::from_envelope(&envelope, "bo".into()).expect("an agreement");
    assert!(consent.verifies());
    recordings
        .add_consent(&recorder.id(), &consent)
        .expect("kept");
    tap.record_consent(consent.envelope.clone());
    tap.set_unconsented([]);
    for i in 5..8 {
        tap.record(&spoken(&bo_voice, i, 0));
    }
    let meta = recorder
        .finish(Timestamp(1_800_000_001_000))
        .expect("finish");
    let by_speaker = |voice: &ProofSigner| {
        recordings
            .frames(&meta.id)
            .filter(|f| f.as_ref().is_ok_and(|f| f.speaker == voice.speaker()))
            .count()
    };
    assert_eq!(by_speaker(&ana_voice), 5);
    assert_eq!(by_speaker(&bo_voice), 3, "only what it said after agreeing");
    assert_eq!(
        recordings.consents(&meta.id).expect("read"),
        vec![consent.clone()]
    );
    // In the content too, as a replay carries it, read back from the store.
    let carried: Vec<_> = recordings
        .records(&meta.id)
        .filter_map(|record| match record {
            Ok(ContentRecord::Consent(kept)) => Some(kept.envelope),
            _ => None,
        })
        .collect();
    assert_eq!(carried, vec![consent.envelope.clone()]);
    // Not an agreement: refused; deleted with the recording.
    assert!(super::Consent::from_envelope(&envelope[..envelope.len() - 1], "bo".into()).is_none());
    recordings.delete(&meta.id).expect("delete");
    assert!(recordings.consents(&meta.id).expect("read").is_empty());
}
