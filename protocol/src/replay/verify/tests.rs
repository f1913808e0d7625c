//! Table tests for the verifier: a recording as a recorder keeps it, changed one way per case,
//! and what the verifier must say of each speaker.

use ed25519_dalek::SigningKey;
use proptest::prelude::*;

use super::*;
use crate::frame::{AudioFrame, SpeakerId};
use crate::proof::{FrameProof, ProofSigner};
use crate::replay::{ContentFormat, ContentReader};

const ROOM: RoomId = RoomId([4; 16]);

fn key(seed: u8) -> SigningKey {
    SigningKey::from_bytes(&[seed; 32])
}

fn pk(seed: u8) -> PeerKey {
    PeerKey::from(&key(seed))
}

fn id(seed: u8) -> u32 {
    SpeakerId::of(&pk(seed)).0
}

/// `frames` frames of each speaker in `seeds` (20 ms apart, each speaker at its own phase) and
/// their proofs, as a recorder keeps them: each proof right after the last frame it covers.
fn recording(seeds: &[u8], frames: u32) -> Vec<ContentRecord> {
    let mut records = Vec::new();
    for &seed in seeds {
        let mut signer = ProofSigner::new(key(seed), ROOM);
        let mut at = 0;
        for i in 0..frames {
            at = u64::from(i) * 960 + u64::from(seed);
            let frame = AudioFrame {
                speaker: signer.speaker(),
                seq: 500 + i,
                timestamp: 1_000_000 + i * 960,
                level: 30,
                flags: 1,
                payload: vec![(i % 251) as u8; 60],
                tag: None,
            };
            let proofs = signer.push(&frame);
            records.push(ContentRecord::Frame(ReplayFrame::of(at, &frame)));
            records.extend(
                proofs
                    .into_iter()
                    .map(|proof| ContentRecord::Proof(ReplayProof { at, proof })),
            );
        }
        records.extend(
            signer
                .flush()
                .map(|proof| ContentRecord::Proof(ReplayProof { at, proof })),
        );
    }
    records.sort_by_key(ContentRecord::order);
    records
}

fn keys(seeds: &[u8]) -> Vec<(u32, PeerKey)> {
    seeds.iter().map(|&seed| (id(seed), pk(seed))).collect()
}

fn tally(frames: u64, verified: u64, unproven: u64, forged: u64, proofs: u64, bad: u64) -> Tally {
    Tally {
        frames,
        verified,
        unproven,
        forged,
        proofs,
        bad_proofs: bad,
        studio: 0,
        bad_studio: 0,
    }
}

/// The proofs of `records`, and where each sits.
fn proofs(records: &[ContentRecord]) -> Vec<(usize, FrameProof)> {
    records
        .iter()
        .enumerate()
        .filter_map(|(at, record)| match record {
            ContentRecord::Proof(proof) => Some((at, proof.proof.clone())),
            _ => None,
        })
        .collect()
}

/// The frame of `speaker` with `seq`, changed by `change`.
fn change_frame(
    records: &mut [ContentRecord],
    speaker: u32,
    seq: u32,
    change: impl FnOnce(&mut ReplayFrame),
) {
    let frame = records
        .iter_mut()
        .find_map(|record| match record {
            ContentRecord::Frame(frame) if frame.speaker == speaker && frame.seq == seq => {
                Some(frame)
            }
            _ => None,
        })
        .expect("that frame");
    change(frame);
}

fn check(
    name: &str,
    records: &[ContentRecord],
    keys: &[(u32, PeerKey)],
    expected: &[(u32, Tally)],
) {
    let report = verify_content(ROOM, keys.iter().copied(), records);
    let found: Vec<(u32, Tally)> = report
        .speakers
        .iter()
        .map(|speaker| (speaker.speaker, speaker.tally))
        .collect();
    assert_eq!(found, expected, "{name}");
    let fine = expected.iter().all(|(_, tally)| tally.is_verified());
    assert_eq!(report.is_verified(), fine, "{name}");
}

/// Expected tallies, by speaker id as the report sorts them.
fn by_id(mut tallies: Vec<(u32, Tally)>) -> Vec<(u32, Tally)> {
    tallies.sort_by_key(|(id, _)| *id);
    tallies
}

#[test]
fn every_frame_of_an_honest_recording_verifies() {
    check(
        "one speaker, 12 frames: proofs of 5, 5 and 2",
        &recording(&[1], 12),
        &keys(&[1]),
        &[(id(1), tally(12, 12, 0, 0, 3, 0))],
    );
    check(
        "two speakers interleaved",
        &recording(&[1, 2], 100),
        &keys(&[1, 2]),
        &by_id(vec![
            (id(1), tally(100, 100, 0, 0, 20, 0)),
            (id(2), tally(100, 100, 0, 0, 20, 0)),
        ]),
    );
    check("nothing recorded", &[], &keys(&[1]), &[]);
}

#[test]
fn an_altered_frame_is_caught() {
    let mut records = recording(&[1, 2], 20);
    change_frame(&mut records, id(1), 507, |frame| frame.payload[0] ^= 1);
    check(
        "a payload byte changed",
        &records,
        &keys(&[1, 2]),
        &by_id(vec![
            (id(1), tally(20, 19, 0, 1, 4, 0)),
            (id(2), tally(20, 20, 0, 0, 4, 0)),
        ]),
    );
    // Every field the speaker signed is covered; the time in the recording is not.
    type Change = fn(&mut ReplayFrame);
    let changes: [(&str, Change); 5] = [
        ("seq", |f| f.seq = 9_999),
        ("timestamp", |f| f.timestamp += 1),
        ("level", |f| f.level = 0),
        ("flags", |f| f.flags ^= 2),
        ("payload cut", |f| {
            f.payload.pop();
        }),
    ];
    for (name, change) in changes {
        let mut records = recording(&[1], 10);
        change_frame(&mut records, id(1), 503, change);
        let expected = if name == "seq" {
            // A frame moved to a number no proof covers, and the number it left has no frame.
            tally(10, 9, 1, 0, 2, 0)
        } else {
            tally(10, 9, 0, 1, 2, 0)
        };
        check(name, &records, &keys(&[1]), &[(id(1), expected)]);
    }
}

#[test]
fn a_frame_from_another_speaker_under_a_speakers_id_is_caught() {
    // Mallory's frame put in Ana's voice, with Ana's id and sequence number.
    let mut records = recording(&[1], 10);
    change_frame(&mut records, id(1), 502, |frame| {
        frame.payload = vec![66; 60]
    });
    check(
        "a frame swapped",
        &records,
        &keys(&[1]),
        &[(id(1), tally(10, 9, 0, 1, 2, 0))],
    );
}

#[test]
fn a_proof_signed_by_another_key_is_caught() {
    // Mallory changes a frame and signs a proof for it with her own key, under Ana's id.
    let mut records = recording(&[1], 10);
    let (at, genuine) = proofs(&records)[0].clone();
    change_frame(&mut records, id(1), 501, |frame| {
        frame.payload = vec![66; 60]
    });
    let mut hashes = genuine.hashes.clone();
    let forged_frame = records
        .iter()
        .find_map(|record| match record {
            ContentRecord::Frame(frame) if frame.seq == 501 => Some(frame.hash()),
            _ => None,
        })
        .expect("the frame");
    hashes[1] = forged_frame;
    let mut forged = FrameProof::sign(&key(9), &ROOM, genuine.first_seq, hashes);
    forged.speaker = genuine.speaker;
    records[at] = ContentRecord::Proof(ReplayProof {
        at: records[at].at(),
        proof: forged,
    });
    check(
        "her proof is refused, and the frames it covered have none",
        &records,
        &keys(&[1]),
        &[(id(1), tally(10, 5, 5, 0, 1, 1))],
    );
    // The same proof next to the genuine one: the genuine one still settles every frame.
    let mut records = recording(&[1], 10);
    let (at, genuine) = proofs(&records)[0].clone();
    let mut forged = FrameProof::sign(&key(9), &ROOM, genuine.first_seq, genuine.hashes.clone());
    forged.speaker = genuine.speaker;
    forged.first_seq += 1;
    records.insert(
        at + 1,
        ContentRecord::Proof(ReplayProof {
            at: records[at].at(),
            proof: forged,
        }),
    );
    check(
        "a bad proof beside good ones",
        &records,
        &keys(&[1]),
        &[(id(1), tally(10, 10, 0, 0, 2, 1))],
    );
    // A proof for another room does not verify either.
    let records: Vec<ContentRecord> = recording(&[1], 5);
    let report = verify_content(RoomId([5; 16]), keys(&[1]), &records);
    assert_eq!(report.speakers[0].tally, tally(5, 0, 5, 0, 0, 1));
}

#[test]
fn frames_without_proofs_are_reported() {
    let mut records = recording(&[1, 2], 20);
    let (at, _) = proofs(&records)[0];
    records.remove(at);
    let first = proofs(&recording(&[1, 2], 20))[0].1.speaker.0;
    let other = if first == id(1) { id(2) } else { id(1) };
    check(
        "a proof left out",
        &records,
        &keys(&[1, 2]),
        &by_id(vec![
            (first, tally(20, 15, 5, 0, 3, 0)),
            (other, tally(20, 20, 0, 0, 4, 0)),
        ]),
    );
    let frames_only: Vec<ContentRecord> = recording(&[1], 10)
        .into_iter()
        .filter(|record| matches!(record, ContentRecord::Frame(_)))
        .collect();
    check(
        "no proofs at all (a version 1 replay)",
        &frames_only,
        &keys(&[1]),
        &[(id(1), tally(10, 0, 10, 0, 0, 0))],
    );
    check(
        "a speaker without a key",
        &recording(&[1, 2], 10),
        &keys(&[1]),
        &by_id(vec![
            (id(1), tally(10, 10, 0, 0, 2, 0)),
            (id(2), tally(10, 0, 10, 0, 0, 0)),
        ]),
    );
}

#[test]
fn a_proof_may_come_just_before_its_frames_but_not_far_from_them() {
    // The recorder had the proof first: it sits before the frames it covers.
    let mut records = recording(&[1], 10);
    let (at, proof) = proofs(&records)[0].clone();
    records.remove(at);
    records.insert(0, ContentRecord::Proof(ReplayProof { at: 0, proof }));
    check(
        "a proof first",
        &records,
        &keys(&[1]),
        &[(id(1), tally(10, 10, 0, 0, 2, 0))],
    );
    // A proof a minute after its frames is too far: its frames count as without one.
    let mut records = recording(&[1], 10);
    let (at, proof) = proofs(&records)[0].clone();
    records.remove(at);
    let late = 60 * 48_000;
    records.push(ContentRecord::Frame(ReplayFrame {
        at: late,
        speaker: id(2),
        seq: 0,
        timestamp: 0,
        flags: 0,
        level: 0,
        payload: Vec::new(),
    }));
    records.push(ContentRecord::Proof(ReplayProof { at: late, proof }));
    check(
        "a proof too late",
        &records,
        &keys(&[1]),
        &by_id(vec![
            (id(1), tally(10, 5, 5, 0, 2, 0)),
            (id(2), tally(1, 0, 1, 0, 0, 0)),
        ]),
    );
}

#[test]
fn memory_stays_bounded_whatever_the_content() {
    let mut verifier = ContentVerifier::new(ROOM, keys(&[1]));
    // Frames of one speaker at one time each (more than a voice holds), and of many speakers.
    for i in 0..(MAX_WAITING as u32 + 10) {
        verifier.frame(&ReplayFrame {
            at: u64::from(i),
            speaker: id(1),
            seq: i,
            timestamp: 0,
            flags: 0,
            level: 0,
            payload: Vec::new(),
        });
    }
    for speaker in 0..(MAX_VOICES as u32 + 10) {
        verifier.frame(&ReplayFrame {
            at: 100_000,
            speaker,
            seq: 0,
            timestamp: 0,
            flags: 0,
            level: 0,
            payload: Vec::new(),
        });
    }
    assert!(verifier.voices.len() <= MAX_VOICES);
    assert!(
        verifier
            .voices
            .values()
            .all(|v| v.waiting.len() <= MAX_WAITING)
    );
    let report = verifier.finish();
    let total = report.total();
    assert_eq!(
        total.frames,
        MAX_WAITING as u64 + 10 + MAX_VOICES as u64 + 10
    );
    assert_eq!(total.unproven, total.frames);
    assert!(report.others.frames > 0);
    assert!(!report.is_verified());
}

/// Byte ranges of `bytes` (a written content) that hold a record's time: the one part of a
/// record nobody signs.
fn time_fields(records: &[ContentRecord]) -> Vec<std::ops::Range<usize>> {
    let mut ranges = Vec::new();
    let mut start = 0;
    for record in records {
        ranges.push(start + 1..start + 9);
        let mut out = Vec::new();
        record.write_to(&mut out).expect("fits");
        start += out.len();
    }
    ranges
}

proptest! {
    #[test]
    fn any_change_outside_the_times_is_refused_or_caught(
        at in any::<prop::sample::Index>(),
        bit in 0u8..8,
    ) {
        let records = recording(&[1, 2], 12);
        let mut bytes = Vec::new();
        for record in &records {
            record.write_to(&mut bytes).expect("fits");
        }
        let at = at.index(bytes.len());
        prop_assume!(!time_fields(&records).iter().any(|range| range.contains(&at)));
        bytes[at] ^= 1 << bit;
        let mut reader = ContentReader::new(ContentFormat::Authenticated);
        if let Ok(changed) = reader.push(&bytes)
            && reader.finish().is_ok()
        {
            let report = verify_content(ROOM, keys(&[1, 2]), &changed);
            prop_assert!(!report.is_verified(), "byte {} bit {}: {:?}", at, bit, report);
        }
    }
}

/// A view of the stage as the host (`signer`) signs it: `members` on stage by seed and name.
fn stage_view(signer: &SigningKey, seq: u64, members: &[(u8, &str)]) -> Vec<u8> {
    use crate::audience::view::StageMember;
    AudienceView {
        room: ROOM,
        seq,
        at: crate::id::Timestamp(1_000),
        stage: members
            .iter()
            .map(|&(seed, name)| StageMember {
                key: pk(seed),
                name: name.into(),
                role: crate::state::RoomRole::Speaker,
                muted: false,
            })
            .collect(),
        hands: Vec::new(),
        hands_total: 0,
        listeners: 0,
        reactions: Vec::new(),
        recording: true,
        ended: false,
        banned: Vec::new(),
        revoked: Vec::new(),
        carriers: None,
        excluded: Vec::new(),
        audio_loss: 0,
        keys: None,
        signature: crate::id::Sig([0; 64]),
    }
    .sign(signer)
    .encode()
}

/// Stage records name the keys the host put on stage: a speaker the host named is reported
/// with the host's name for it; one only the recorder names (a key it made up, say) is not; a
/// view someone else signed counts for nothing. Stage records survive the content's encoding.
#[test]
fn stage_records_say_which_keys_the_host_put_on_stage() {
    let host = key(9);
    let mut records = recording(&[1, 2], 10);
    records.push(ContentRecord::Stage(ReplayStage {
        at: 0,
        view: stage_view(&host, 1, &[(1, "ana")]),
    }));
    // A recorder's own "view" naming speaker 2: not the host's signature.
    records.push(ContentRecord::Stage(ReplayStage {
        at: 0,
        view: stage_view(&key(2), 2, &[(2, "ana's twin")]),
    }));
    records.sort_by_key(ContentRecord::order);
    let mut bytes = Vec::new();
    for record in &records {
        record
            .write_to(&mut bytes)
            .expect("a record the format holds");
    }
    let mut reader = ContentReader::new(ContentFormat::Authenticated);
    let read = reader.push(&bytes).expect("reads back");
    reader.finish().expect("nothing left over");
    assert_eq!(read, records);
    let mut verifier = ContentVerifier::new(ROOM, keys(&[1, 2])).with_host(pk(9));
    for record in &read {
        verifier.record(record);
    }
    let report = verifier.finish();
    assert!(report.is_verified(), "{report:?}");
    assert_eq!((report.stage_views, report.bad_stage_views), (1, 1));
    let named: Vec<(u32, Option<String>)> = report
        .speakers
        .iter()
        .map(|s| (s.speaker, s.named_by_host.clone()))
        .collect();
    let mut expected = vec![(id(1), Some("ana".to_owned())), (id(2), None)];
    expected.sort();
    assert_eq!(named, expected);
    // Without the host, nobody is named.
    let report = verify_content(ROOM, keys(&[1, 2]), &read);
    assert!(report.speakers.iter().all(|s| s.named_by_host.is_none()));
}

/// A studio chunk of `seed`'s track: `frames` frames from content time `at`.
fn studio(seed: u8, n: u32, at: u64, frames: u32) -> ContentRecord {
    let speaker = SpeakerId::of(&pk(seed));
    let frames = (0..frames)
        .map(|i| AudioFrame {
            speaker,
            seq: 500 + i,
            timestamp: 1_000_000 + i * 960,
            level: 20,
            flags: 1,
            payload: vec![7; 150],
            tag: None,
        })
        .collect();
    ContentRecord::Studio(crate::replay::ReplayStudio {
        at,
        chunk: crate::studio::StudioChunk::sign(&key(seed), &ROOM, n, frames).expect("a chunk"),
    })
}

#[test]
fn studio_chunks_count_when_their_speaker_signed_them_and_fail_the_check_otherwise() {
    let mut records = recording(&[1], 50);
    records.push(studio(1, 0, 0, 50));
    records.sort_by_key(ContentRecord::order);
    let report = verify_content(ROOM, keys(&[1]), &records);
    let tally = report.speakers[0].tally;
    assert_eq!((tally.studio, tally.bad_studio), (50, 0));
    assert!(report.is_verified());

    // A chunk signed by someone else, under the speaker's id.
    let mut forged = studio(2, 1, 960, 10);
    if let ContentRecord::Studio(record) = &mut forged {
        record.chunk.speaker = SpeakerId::of(&pk(1));
    }
    records.push(forged);
    records.sort_by_key(ContentRecord::order);
    let report = verify_content(ROOM, keys(&[1]), &records);
    let tally = report.speakers[0].tally;
    assert_eq!((tally.studio, tally.bad_studio), (50, 1));
    assert!(!report.is_verified());

    // A speaker with no key here: its chunk cannot be checked.
    let report = verify_content(ROOM, keys(&[1]), &[studio(3, 0, 0, 5)]);
    assert_eq!(report.speakers[0].tally.bad_studio, 1);
    assert!(!report.is_verified());
}

/// `seed`'s signed agreement to the recording of `room` that started at `since`, kept at `at`.
fn consent(seed: u8, room: RoomId, at: u64) -> ContentRecord {
    let envelope = crate::envelope::Envelope::sign(
        &key(seed),
        room,
        1,
        crate::id::Timestamp(1_800_000_000_500),
        crate::envelope::Authority::Host,
        crate::control::ControlBody::RecordingConsent {
            since: crate::id::Timestamp(1_800_000_000_000),
        },
    )
    .expect("an envelope")
    .encode();
    ContentRecord::Consent(crate::replay::ReplayConsent::new(at, envelope).expect("a record"))
}

#[test]
fn speakers_agreements_are_listed_when_they_signed_them_for_this_room_and_fail_the_check_otherwise()
{
    let mut records = recording(&[1], 50);
    records.push(consent(1, ROOM, 960));
    records.sort_by_key(ContentRecord::order);
    let report = verify_content(ROOM, keys(&[1]), &records);
    assert_eq!(report.consents.len(), 1);
    assert_eq!(report.consents[0].member, pk(1));
    assert_eq!(report.bad_consents, 0);
    assert!(report.is_verified());

    // Another room's agreement, and one whose signature was tampered with.
    records.push(consent(2, RoomId([9; 16]), 1_920));
    let mut tampered = consent(3, ROOM, 2_880);
    if let ContentRecord::Consent(record) = &mut tampered {
        let last = record.envelope.len() - 1;
        record.envelope[last] ^= 1;
    }
    records.push(tampered);
    records.sort_by_key(ContentRecord::order);
    let report = verify_content(ROOM, keys(&[1]), &records);
    assert_eq!((report.consents.len(), report.bad_consents), (1, 2));
    assert!(!report.is_verified());
}

/// Support kept with a recording is reported as its author signed it; only the host's receipt
/// confirms it, whoever else signs one.
#[test]
fn support_is_confirmed_by_the_hosts_receipt_alone() {
    use crate::control::ControlBody;
    use crate::envelope::{Authority, Envelope};
    use crate::id::{RoomId, Timestamp};
    let (host, fan, faker) = (
        ed25519_dalek::SigningKey::from_bytes(&[1; 32]),
        ed25519_dalek::SigningKey::from_bytes(&[2; 32]),
        ed25519_dalek::SigningKey::from_bytes(&[3; 32]),
    );
    let room = RoomId([9; 16]);
    let at = Timestamp(1_800_000_000_000);
    let kept = |key: &ed25519_dalek::SigningKey, seq, body| {
        let envelope = Envelope::sign(key, room, seq, at, Authority::Host, body)
            .expect("signs")
            .encode();
        ContentRecord::Consent(ReplayConsent::new(seq, envelope).expect("a record"))
    };
    let support = Envelope::sign(
        &fan,
        room,
        1,
        at,
        Authority::Host,
        ControlBody::Support {
            amount: 7,
            unit: "sat".into(),
            note: "more please".into(),
        },
    )
    .expect("signs");
    let receipt = |key| {
        kept(
            key,
            2,
            ControlBody::SupportReceipt {
                supporter: PeerKey::from(&fan),
                support: support.digest(),
            },
        )
    };
    let report = |records: &[ContentRecord]| {
        let mut verifier =
            ContentVerifier::new(room, std::iter::empty()).with_host(PeerKey::from(&host));
        for record in records {
            verifier.record(record);
        }
        verifier.finish()
    };
    let said = ContentRecord::Consent(ReplayConsent::new(1, support.encode()).expect("a record"));
    // Repeated by its holder, the same signed message counts once.
    let faked = report(&[said.clone(), said.clone(), receipt(&faker)]);
    assert_eq!(faked.supports.len(), 1);
    assert_eq!(faked.supports[0].amount, 7);
    assert_eq!(faked.supports[0].supporter, PeerKey::from(&fan));
    assert!(
        !faked.supports[0].confirmed,
        "a stranger's receipt confirms nothing"
    );
    let confirmed = report(&[said, receipt(&host)]);
    assert!(confirmed.supports[0].confirmed);
}
