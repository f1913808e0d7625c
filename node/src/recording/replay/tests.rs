use std::collections::BTreeMap;

use earshot_protocol::replay::{ChunkError, ReplayFrame};
use earshot_protocol::{PeerKey, RecordingId, RoomId, Timestamp};
use libp2p::PeerId;

use super::schedule::{Claim, Schedule};
use super::*;
use crate::recording::store::{
    RecordingMeta, RecordingState, Recordings, SpeakerInfo, StoredFrame,
};
use crate::store::Store;

fn synthetic(id: u8, frames: u32, payload: usize) -> (RecordingMeta, Vec<ReplayFrame>) {
    let frames: Vec<ReplayFrame> = (0..frames)
        .map(|i| ReplayFrame {
            at: u64::from(i / 2) * 960,
            speaker: i % 2,
            seq: i / 2,
            timestamp: (i / 2) * 960,
            flags: (i % 3) as u8,
            level: (i % 100) as u8,
            payload: vec![(i % 251) as u8; payload],
        })
        .collect();
    let mut speakers = BTreeMap::new();
    for speaker in 0..2u32 {
        speakers.insert(
            speaker,
            SpeakerInfo {
                key: None,
                name: format!("speaker {speaker}"),
                frames: frames.iter().filter(|f| f.speaker == speaker).count() as u64,
            },
        );
    }
    let duration = frames.last().map_or(0, |f| f.at + 960);
    let meta = RecordingMeta {
        id: RecordingId([id; 16]),
        room: RoomId([2; 16]),
        title: "Synthetic".into(),
        host: PeerKey([3; 32]),
        recorder: PeerKey([3; 32]),
        started_at: Timestamp(1_800_000_000_000),
        ended_at: Some(Timestamp(1_800_000_010_000)),
        state: RecordingState::Complete,
        start_media: 0,
        speakers,
        frames: frames.len() as u64,
        bytes: (frames.len() * payload) as u64,
        duration_samples: duration,
        dropped: 0,
    };
    (meta, frames)
}

fn open(dir: &std::path::Path) -> (Store, Recordings, Replays) {
    let store = Store::open(dir).expect("store");
    let recordings = Recordings::open(&store).expect("recordings");
    let replays = Replays::open(&store).expect("replays");
    (store, recordings, replays)
}

#[test]
fn published_replays_import_elsewhere_frame_for_frame() {
    let key = ed25519_dalek::SigningKey::from_bytes(&[5; 32]);
    let a = tempfile::tempdir().expect("tempdir");
    let (_, recordings, replays) = open(a.path());
    let (meta, frames) = synthetic(1, 3000, 200);
    recordings
        .import(&meta, frames.iter().cloned().map(StoredFrame::from))
        .expect("import");
    let manifest = replays.publish(&recordings, &meta, &key).expect("publish");
    let id = manifest.id();
    assert_eq!(manifest.frames, 3000);
    assert_eq!(manifest.chunks.len(), 3, "600 kB in 256 KiB chunks");
    assert_eq!(replays.held(&id).expect("held").len(), 3);
    assert_eq!(replays.for_recording(&meta.id).expect("index"), Some(id));
    // Publishing again changes nothing.
    assert_eq!(
        replays
            .publish(&recordings, &meta, &key)
            .expect("again")
            .id(),
        id
    );

    // Another data directory gets the manifest and the chunks (as a fetch would).
    let b = tempfile::tempdir().expect("tempdir");
    let (_, recordings_b, replays_b) = open(b.path());
    let bytes = replays.manifest_bytes(&id).expect("read").expect("kept");
    replays_b.store_manifest(&bytes).expect("store manifest");
    assert!(matches!(
        replays_b.import(&recordings_b, &id),
        Err(ReplayError::Incomplete { missing: 3, .. })
    ));
    for index in 0..3 {
        let chunk = replays.chunk(&id, index).expect("read").expect("kept");
        replays_b
            .store_chunk(&id, index, &chunk)
            .expect("store chunk");
    }
    let mut flipped = replays.chunk(&id, 0).expect("read").expect("kept").to_vec();
    flipped[5] ^= 1;
    assert!(matches!(
        replays_b.store_chunk(&id, 0, &flipped),
        Err(ReplayError::Chunk(ChunkError::HashMismatch { index: 0 }))
    ));
    let imported = replays_b.import(&recordings_b, &id).expect("import");
    assert_eq!(imported.id, meta.id);
    assert_eq!(imported.state, RecordingState::Complete);
    assert_eq!(imported.frames, 3000);
    let back: Vec<ReplayFrame> = recordings_b
        .frames(&meta.id)
        .map(|f| ReplayFrame::from(f.expect("frame")))
        .collect();
    assert_eq!(back, frames);
    assert_eq!(
        recordings_b.get(&meta.id).expect("get").expect("listed"),
        imported
    );
}

#[test]
fn a_corrupted_stored_chunk_counts_as_missing() {
    let key = ed25519_dalek::SigningKey::from_bytes(&[5; 32]);
    let a = tempfile::tempdir().expect("tempdir");
    let (_, recordings, replays) = open(a.path());
    let (meta, frames) = synthetic(1, 3000, 200);
    recordings
        .import(&meta, frames.into_iter().map(StoredFrame::from))
        .expect("import");
    let manifest = replays.publish(&recordings, &meta, &key).expect("publish");
    let id = manifest.id();
    replays
        .store_chunk_unverified(&id, 1, b"garbage")
        .expect("store");
    assert_eq!(replays.missing(&manifest, &id).expect("missing"), vec![1]);
    assert_eq!(replays.held(&id).expect("held").len(), 2, "removed");
}

#[test]
fn the_schedule_moves_failed_chunks_to_other_holders() {
    let schedule = Schedule::new(vec![0, 1, 2, 3], 2, 0);
    // Each holder gets its share first.
    assert!(matches!(schedule.claim(0), Claim::Chunk(0)));
    assert!(matches!(schedule.claim(1), Claim::Chunk(1)));
    schedule.bad(0, 0, &PeerId::random());
    // Holder 0 is not given chunk 0 again; holder 1 is.
    assert!(matches!(schedule.claim(0), Claim::Chunk(2)));
    assert!(matches!(schedule.claim(1), Claim::Chunk(3)));
    schedule.done(1, 10);
    assert!(matches!(schedule.claim(1), Claim::Chunk(0)));
    schedule.done(0, 10);
    schedule.done(2, 10);
    assert!(
        matches!(schedule.claim(0), Claim::Wait(_)),
        "3 is in flight"
    );
    schedule.not_found(1, 3);
    assert!(matches!(schedule.claim(0), Claim::Chunk(3)));
    schedule.failed(0, 3, "gone".into());
    assert!(
        matches!(schedule.claim(1), Claim::Done),
        "nobody else has 3"
    );
    let outcome = schedule.outcome();
    assert_eq!(outcome.pending, vec![3]);
    assert_eq!(outcome.fetched, 3);
    assert_eq!(outcome.bad, 1);
}

#[test]
fn a_manifest_claiming_a_length_its_frames_do_not_have_is_refused() {
    let key = ed25519_dalek::SigningKey::from_bytes(&[5; 32]);
    let a = tempfile::tempdir().expect("tempdir");
    let (_, recordings, replays) = open(a.path());
    let (mut meta, frames) = synthetic(7, 100, 50);
    recordings
        .import(&meta, frames.iter().cloned().map(StoredFrame::from))
        .expect("import");
    // A lying recorder signs a manifest claiming ages (an export would play it for ever).
    meta.duration_samples = u64::MAX / 2;
    assert!(
        meta.duration() > std::time::Duration::from_secs(1 << 30),
        "no overflow"
    );
    let manifest = replays.publish(&recordings, &meta, &key).expect("publish");
    let id = manifest.id();
    let b = tempfile::tempdir().expect("tempdir");
    let (_, recordings_b, replays_b) = open(b.path());
    let bytes = replays.manifest_bytes(&id).expect("read").expect("kept");
    replays_b.store_manifest(&bytes).expect("store manifest");
    for index in 0..manifest.chunks.len() as u32 {
        let chunk = replays.chunk(&id, index).expect("read").expect("kept");
        replays_b.store_chunk(&id, index, &chunk).expect("chunk");
    }
    match replays_b.import(&recordings_b, &id) {
        Err(ReplayError::BadContent { reason, .. }) => {
            assert!(reason.contains("its frames end at"), "{reason}");
        }
        other => panic!("imported a manifest that lies about its length: {other:?}"),
    }
    assert!(recordings_b.get(&meta.id).expect("get").is_none());
}
