//! A recording built through the recorder, as in a live room, then changed on disk the ways a
//! recorder could lie.

use earshot_protocol::frame::{AudioFrame, SpeakerId};
use earshot_protocol::proof::ProofSigner;
use earshot_protocol::replay::ContentRecord;
use earshot_protocol::replay::verify::Tally;
use earshot_protocol::{PeerKey, RecordingId, RoomId, Timestamp};

use super::*;
use crate::recording::store::NewRecording;
use crate::store::Store;

const ROOM: RoomId = RoomId([1; 16]);

/// Ana and Bea each say `frames` frames, signed; Bea is named in the metadata only if `name_bea`.
fn recorded(recordings: &Recordings, frames: u32, name_bea: bool) -> RecordingId {
    let recorder = recordings
        .start(NewRecording {
            room: ROOM,
            title: "Radio".into(),
            host: PeerKey([7; 32]),
            recorder: PeerKey([7; 32]),
            started_at: Timestamp(1_800_000_000_000),
            start_media: 1_000,
            private: None,
        })
        .expect("start");
    let keys = [1u8, 2].map(|seed| ed25519_dalek::SigningKey::from_bytes(&[seed; 32]));
    let mut signers = keys.clone().map(|key| ProofSigner::new(key, ROOM));
    for i in 0..frames {
        for (n, signer) in signers.iter_mut().enumerate() {
            let frame = AudioFrame {
                speaker: signer.speaker(),
                seq: i,
                timestamp: 1_000 + i * 960 + n as u32,
                level: 40,
                flags: 1,
                payload: vec![i as u8; 50],
                tag: None,
            };
            let proofs = signer.push(&frame);
            recorder.tap().record(&frame);
            proofs
                .iter()
                .for_each(|proof| recorder.tap().record_proof(proof));
        }
    }
    for signer in &mut signers {
        signer
            .flush()
            .iter()
            .for_each(|p| recorder.tap().record_proof(p));
    }
    let [ana, bea] = keys.map(|key| PeerKey::from(&key));
    let mut named = vec![(ana, "ana".to_owned())];
    if name_bea {
        named.push((bea, "bea".to_owned()));
    }
    recorder.name_speakers(named);
    recorder
        .finish(Timestamp(1_800_000_001_000))
        .expect("finish")
        .id
}

fn ana() -> u32 {
    SpeakerId::of(&PeerKey::from(&ed25519_dalek::SigningKey::from_bytes(
        &[1; 32],
    )))
    .0
}

#[test]
fn a_frame_changed_on_disk_is_caught_and_its_speaker_named() {
    let dir = tempfile::tempdir().expect("tempdir");
    let recordings = Recordings::open(&Store::open(dir.path()).expect("store")).expect("open");
    let id = recorded(&recordings, 20, true);
    let honest = recordings.verify(&id).expect("verify");
    assert!(honest.is_verified(), "{honest:?}");
    assert_eq!(honest.report.total().verified, 40);

    // The recorder's owner rewrites one of Ana's frames, and drops a proof of Bea's.
    let mut records: Vec<ContentRecord> = recordings
        .records(&id)
        .collect::<Result<_, _>>()
        .expect("records");
    let changed = records
        .iter_mut()
        .find_map(|record| match record {
            ContentRecord::Frame(frame) if frame.speaker == ana() && frame.seq == 7 => Some(frame),
            _ => None,
        })
        .expect("Ana's frame 7");
    changed.payload = b"something ana never said".to_vec();
    let dropped = records
        .iter()
        .position(|r| matches!(r, ContentRecord::Proof(p) if p.proof.speaker.0 != ana()))
        .expect("a proof of Bea's");
    records.remove(dropped);
    recordings.delete(&id).expect("delete");
    recordings.import(&honest.meta, records).expect("import");

    let found = recordings.verify(&id).expect("verify");
    assert!(!found.is_verified());
    let ana_tally = found
        .report
        .speakers
        .iter()
        .find(|s| s.speaker == ana())
        .expect("ana");
    assert_eq!((ana_tally.tally.verified, ana_tally.tally.forged), (19, 1));
    let bea_tally = found
        .report
        .speakers
        .iter()
        .find(|s| s.speaker != ana())
        .expect("bea");
    assert_eq!(
        (bea_tally.tally.verified, bea_tally.tally.unproven),
        (15, 5)
    );
    assert!(bea_tally.key.is_some());
}

#[test]
fn a_speaker_without_a_key_cannot_be_checked() {
    let dir = tempfile::tempdir().expect("tempdir");
    let recordings = Recordings::open(&Store::open(dir.path()).expect("store")).expect("open");
    let id = recorded(&recordings, 10, false);
    let found = recordings.verify(&id).expect("verify");
    assert!(!found.is_verified());
    let mut by_key: Vec<(bool, u64, u64)> = found
        .report
        .speakers
        .iter()
        .map(|s| (s.key.is_some(), s.tally.verified, s.tally.unproven))
        .collect();
    by_key.sort();
    assert_eq!(by_key, vec![(false, 0, 10), (true, 10, 0)]);
}

#[test]
fn an_unknown_recording_is_an_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let recordings = Recordings::open(&Store::open(dir.path()).expect("store")).expect("open");
    assert!(matches!(
        recordings.verify(&RecordingId([9; 16])),
        Err(RecordingError::NotFound(_))
    ));
    // An empty recording has nothing to check, and nothing fails.
    let id = recorded(&recordings, 0, true);
    let found = recordings.verify(&id).expect("verify");
    assert!(found.is_verified());
    assert_eq!(found.report.total(), Tally::default());
}
