use ed25519_dalek::SigningKey;
use proptest::prelude::*;

use super::check::{Arrival, BadProof, FrameAuth, MAX_PENDING, MAX_VOICES, PROOF_DEADLINE_MS};
use super::progress::{Judged, Progress, Withholding};
use super::*;
use crate::frame::AudioFrame;

const ROOM: RoomId = RoomId([3; 16]);

fn key(n: u8) -> SigningKey {
    SigningKey::from_bytes(&[n; 32])
}

fn frame(speaker: &SigningKey, seq: u32) -> AudioFrame {
    AudioFrame {
        speaker: SpeakerId::of(&PeerKey::from(speaker)),
        seq,
        timestamp: seq.wrapping_mul(960),
        level: 30,
        flags: 1,
        payload: vec![seq as u8; 80],
        tag: None,
    }
}

/// A speaker's frames `from..to` and the proofs its signer emits, in the order they are sent.
enum Sent {
    Frame(AudioFrame),
    Proof(FrameProof),
}

fn speak(speaker: &SigningKey, seqs: std::ops::Range<u32>) -> Vec<Sent> {
    let mut signer = ProofSigner::new(speaker.clone(), ROOM);
    let mut out = Vec::new();
    for seq in seqs {
        let frame = frame(speaker, seq);
        let proofs = signer.push(&frame);
        out.push(Sent::Frame(frame));
        out.extend(proofs.into_iter().map(Sent::Proof));
    }
    out.extend(signer.flush().map(Sent::Proof));
    out
}

/// Runs `sent` through a checker; returns the seqs verified and forged.
fn check(sent: &[Sent], keys: &[PeerKey]) -> (Vec<u32>, Vec<u32>, Vec<BadProof>) {
    let mut auth = FrameAuth::new(ROOM);
    let (mut verified, mut forged, mut bad) = (Vec::new(), Vec::new(), Vec::new());
    for (t, item) in sent.iter().enumerate() {
        match item {
            Sent::Frame(frame) => match auth.frame(frame, frame.seq, t as u64) {
                Arrival::Verified => verified.push(frame.seq),
                Arrival::Forged => forged.push(frame.seq),
                Arrival::Pending => {}
                other => panic!("unexpected {other:?}"),
            },
            Sent::Proof(proof) => match auth.proof(proof, keys, t as u64) {
                Ok(settled) => {
                    verified.extend(settled.verified.iter().map(|(_, seq)| *seq));
                    forged.extend(settled.forged.iter().map(|(_, seq)| *seq));
                }
                Err(err) => bad.push(err),
            },
        }
    }
    (verified, forged, bad)
}

#[test]
fn a_speaker_signs_every_five_frames_and_each_frame_verifies() {
    let speaker = key(1);
    let sent = speak(&speaker, 100..112);
    let proofs = sent.iter().filter(|s| matches!(s, Sent::Proof(_))).count();
    assert_eq!(
        proofs, 3,
        "12 frames: two full proofs and the rest at the end"
    );
    let (verified, forged, bad) = check(&sent, &[PeerKey::from(&speaker)]);
    assert_eq!(verified, (100..112).collect::<Vec<_>>());
    assert!(forged.is_empty() && bad.is_empty());
}

#[test]
fn a_lost_frame_orphans_no_other() {
    let speaker = key(1);
    let sent: Vec<Sent> = speak(&speaker, 0..10)
        .into_iter()
        .filter(|s| !matches!(s, Sent::Frame(f) if f.seq == 2 || f.seq == 7))
        .collect();
    let (verified, forged, _) = check(&sent, &[PeerKey::from(&speaker)]);
    assert_eq!(verified, vec![0, 1, 3, 4, 5, 6, 8, 9]);
    assert!(forged.is_empty());
}

#[test]
fn an_altered_frame_or_level_is_forged_and_the_rest_verify() {
    let speaker = key(1);
    let mut sent = speak(&speaker, 0..5);
    if let Sent::Frame(frame) = &mut sent[1] {
        frame.payload[0] ^= 1;
    }
    if let Sent::Frame(frame) = &mut sent[3] {
        // Louder, to win the loudest-N selection.
        frame.level = 0;
    }
    let (verified, forged, _) = check(&sent, &[PeerKey::from(&speaker)]);
    assert_eq!(verified, vec![0, 2, 4]);
    assert_eq!(forged, vec![1, 3]);
}

#[test]
fn a_proof_from_another_key_or_room_or_altered_is_refused() {
    let speaker = key(1);
    let impostor = key(2);
    let real = PeerKey::from(&speaker);
    // Signed by someone else under the speaker's id.
    let mut forged = FrameProof::sign(&impostor, &ROOM, 0, vec![[0; HASH_BYTES]]);
    forged.speaker = SpeakerId::of(&real);
    let mut auth: FrameAuth<()> = FrameAuth::new(ROOM);
    assert!(matches!(
        auth.proof(&forged, &[real], 0),
        Err(BadProof::BadSignature(id)) if id == forged.speaker
    ));
    // Signed for another room.
    let other = FrameProof::sign(&speaker, &RoomId([4; 16]), 0, vec![[0; HASH_BYTES]]);
    assert!(auth.proof(&other, &[real], 0).is_err());
    // A hash changed after signing.
    let mut changed = FrameProof::sign(&speaker, &ROOM, 0, vec![[0; HASH_BYTES]]);
    changed.hashes[0][0] = 1;
    assert!(auth.proof(&changed, &[real], 0).is_err());
    // Nobody on stage with that id.
    let fine = FrameProof::sign(&speaker, &ROOM, 0, vec![[0; HASH_BYTES]]);
    assert!(matches!(
        auth.proof(&fine, &[], 0),
        Err(BadProof::NotOnStage(id)) if id == fine.speaker
    ));
    // Among two stage members sharing the id, the one who signed.
    assert!(
        auth.proof(&fine, &[PeerKey::from(&impostor), real], 0)
            .is_ok()
    );
}

#[test]
fn a_proof_before_its_frames_verifies_them_when_they_come() {
    let speaker = key(1);
    let mut sent = speak(&speaker, 0..5);
    let proof = sent.pop().expect("a proof");
    sent.insert(0, proof);
    let (verified, forged, _) = check(&sent, &[PeerKey::from(&speaker)]);
    assert_eq!(verified, (0..5).collect::<Vec<_>>());
    assert!(forged.is_empty());
}

#[test]
fn frames_without_a_proof_expire_and_memory_stays_bounded() {
    let speaker = key(1);
    let mut auth = FrameAuth::new(ROOM);
    for seq in 0..1_000u32 {
        let arrival = auth.frame(&frame(&speaker, seq), seq, 0);
        if seq as usize >= MAX_PENDING {
            assert!(matches!(arrival, Arrival::Overflow(_)));
        }
    }
    assert_eq!(auth.pending(), MAX_PENDING);
    // The stream moved far past them (the frames refused as overflow count as seen).
    assert!(auth.expire(PROOF_DEADLINE_MS).is_empty(), "not yet");
    assert_eq!(auth.expire(PROOF_DEADLINE_MS + 1).len(), MAX_PENDING);
    assert_eq!(auth.pending(), 0);
    // Frames under ten thousand ids: at most MAX_VOICES voices kept.
    for id in 0..10_000u32 {
        let mut f = frame(&speaker, 0);
        f.speaker = SpeakerId(id);
        let _ = auth.frame(&f, 0, u64::from(id));
    }
    assert!(auth.pending() <= MAX_VOICES);
}

/// A path that stalls (a packet lost and resent: everything after it waits) holds a batch's
/// proof up with the frames after it: the frames already in wait as long as it takes, and are
/// verified when it comes. A parent that passes the frames on and keeps the proof back is caught
/// once the frames after the batch have come, and a frame never waits for ever.
#[test]
fn a_stalled_path_delays_proofs_without_losing_frames_and_withheld_proofs_are_caught() {
    use super::check::{PAST_FRAMES, PROOF_GIVE_UP_MS};
    let speaker = key(1);
    let keys = [PeerKey::from(&speaker)];
    let mut signer = ProofSigner::new(speaker.clone(), ROOM);
    let mut auth = FrameAuth::new(ROOM);
    // Frames 0-4 come at 20 ms intervals; their proof is stuck for 400 ms behind a lost packet.
    let mut proofs = Vec::new();
    for seq in 0..5u32 {
        let frame = frame(&speaker, seq);
        proofs.extend(signer.push(&frame));
        assert!(matches!(
            auth.frame(&frame, seq, u64::from(seq) * 20),
            Arrival::Pending
        ));
    }
    for now in (100..=480).step_by(20) {
        assert!(
            auth.expire(now).is_empty(),
            "nothing is past its proof at {now} ms"
        );
    }
    // The stall ends: the proof, then the frames after it, all at once.
    let settled = auth.proof(&proofs[0], &keys, 480).expect("a good proof");
    assert_eq!(settled.verified.len(), 5);
    for seq in 5..20u32 {
        let _ = auth.frame(&frame(&speaker, seq), seq, 480);
    }

    // A parent that keeps proofs back: the frames of a batch are given up once the frames two
    // batches on have come and the deadline passed.
    let mut withheld = FrameAuth::new(ROOM);
    for seq in 0..=PAST_FRAMES {
        let _ = withheld.frame(&frame(&speaker, seq), seq, u64::from(seq) * 20);
    }
    let now = u64::from(PAST_FRAMES) * 20;
    let given_up: Vec<u32> = withheld
        .expire(now)
        .iter()
        .map(|((_, seq), _)| *seq)
        .collect();
    assert_eq!(given_up, vec![0], "frame 0, ten frames on");
    // And a frame that nothing follows is given up in the end.
    let mut last = FrameAuth::new(ROOM);
    let _ = last.frame(&frame(&speaker, 0), 0, 0);
    assert!(last.expire(PROOF_GIVE_UP_MS).is_empty());
    assert_eq!(last.expire(PROOF_GIVE_UP_MS + 1).len(), 1);
}

#[test]
fn a_frame_sent_twice_is_a_duplicate() {
    let speaker = key(1);
    let mut auth = FrameAuth::new(ROOM);
    assert!(matches!(
        auth.frame(&frame(&speaker, 5), 1, 0),
        Arrival::Pending
    ));
    assert!(matches!(
        auth.frame(&frame(&speaker, 5), 2, 0),
        Arrival::Duplicate(2)
    ));
}

#[test]
fn proofs_round_trip_and_bad_bytes_are_refused() {
    let proof = FrameProof::sign(&key(1), &ROOM, 7, vec![[1; HASH_BYTES]; FRAMES_PER_PROOF]);
    let bytes = proof.encode();
    assert_eq!(bytes.len(), 10 + FRAMES_PER_PROOF * HASH_BYTES + 64);
    assert_eq!(FrameProof::decode(&bytes), Ok(proof));
    for cut in 0..bytes.len() {
        assert!(FrameProof::decode(&bytes[..cut]).is_err());
    }
    let mut zero = bytes.clone();
    zero[9] = 0;
    assert!(FrameProof::decode(&zero).is_err());
}

#[test]
fn a_signer_signs_a_batch_the_next_frame_does_not_continue() {
    let speaker = key(1);
    let mut signer = ProofSigner::new(speaker.clone(), ROOM);
    assert!(signer.push(&frame(&speaker, 0)).is_empty());
    assert!(signer.push(&frame(&speaker, 1)).is_empty());
    // A gap (frames dropped before sending): the first two are signed on their own.
    let proofs = signer.push(&frame(&speaker, 9));
    assert_eq!(proofs.len(), 1);
    assert_eq!((proofs[0].first_seq, proofs[0].hashes.len()), (0, 2));
    assert_eq!(signer.pending(), 1);
    // Wrapping sequence numbers continue a batch.
    let mut signer = ProofSigner::new(speaker.clone(), ROOM);
    for seq in [u32::MAX - 1, u32::MAX, 0, 1] {
        assert!(signer.push(&frame(&speaker, seq)).is_empty());
    }
    let proof = signer
        .push(&frame(&speaker, 2))
        .pop()
        .expect("a full batch");
    assert_eq!(
        proof.seqs().collect::<Vec<_>>(),
        vec![u32::MAX - 1, u32::MAX, 0, 1, 2]
    );
}

fn beacon(n: u32, forwarded: u32, newest: &[(u32, u32)]) -> Progress {
    Progress::sign(
        &key(9),
        &ROOM,
        n,
        forwarded,
        newest.iter().map(|(s, q)| (SpeakerId(*s), *q)).collect(),
    )
}

#[test]
fn beacons_round_trip_and_verify_only_for_the_host_and_room() {
    let b = beacon(3, 1_000, &[(1, 50), (2, 60)]);
    assert_eq!(Progress::decode(&b.encode()), Ok(b.clone()));
    let host = PeerKey::from(&key(9));
    assert!(b.verify(&ROOM, &host));
    assert!(!b.verify(&RoomId([4; 16]), &host));
    assert!(!b.verify(&ROOM, &PeerKey::from(&key(8))));
    for cut in 0..b.encode().len() {
        assert!(Progress::decode(&b.encode()[..cut]).is_err());
    }
}

#[test]
fn a_parent_passing_everything_is_fine_and_one_passing_keep_alives_is_caught() {
    let mut honest = Withholding::new(0);
    let mut withholding = Withholding::new(0);
    assert_eq!(honest.beacon(&beacon(1, 100, &[(1, 100)]), 0), Judged::Fine);
    assert_eq!(
        withholding.beacon(&beacon(1, 100, &[(1, 100)]), 0),
        Judged::Fine
    );
    for seq in 101..126 {
        honest.frame(SpeakerId(1), seq);
    }
    // Two frames of 25: a trickle.
    withholding.frame(SpeakerId(1), 101);
    withholding.frame(SpeakerId(1), 102);
    let next = beacon(2, 125, &[(1, 125)]);
    assert_eq!(honest.beacon(&next, 500), Judged::Fine);
    assert_eq!(
        withholding.beacon(&next, 500),
        Judged::Withheld { sent: 25, fresh: 2 }
    );
}

#[test]
fn old_frames_replayed_are_not_fresh_and_old_beacons_are_replays() {
    let mut w = Withholding::new(0);
    assert_eq!(w.beacon(&beacon(1, 1_000, &[(1, 5_000)]), 0), Judged::Fine);
    // 25 frames from ten seconds ago.
    for seq in 4_500..4_525 {
        w.frame(SpeakerId(1), seq);
    }
    assert!(matches!(
        w.beacon(&beacon(2, 1_025, &[(1, 5_025)]), 500),
        Judged::Withheld { fresh: 0, .. }
    ));
    assert_eq!(
        w.beacon(&beacon(2, 1_025, &[(1, 5_025)]), 600),
        Judged::Replayed
    );
}

#[test]
fn a_quiet_room_judges_nobody_and_missing_beacons_are_noticed() {
    let mut w = Withholding::new(0);
    assert_eq!(w.beacon(&beacon(1, 10, &[]), 0), Judged::Fine);
    assert_eq!(w.beacon(&beacon(2, 12, &[]), 500), Judged::Fine);
    assert!(!w.silent(3_400));
    assert!(w.silent(3_600));
}

proptest! {
    #[test]
    fn decoding_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        let _ = FrameProof::decode(&bytes);
        let _ = Progress::decode(&bytes);
    }

    #[test]
    fn any_single_flipped_byte_of_a_proof_is_caught(at in 0usize..124, bit in 0u8..8) {
        let speaker = key(1);
        let sent = speak(&speaker, 0..5);
        let Some(Sent::Proof(proof)) = sent.last() else { unreachable!() };
        let mut bytes = proof.encode();
        bytes[at] ^= 1 << bit;
        if let Ok(changed) = FrameProof::decode(&bytes) {
            let (verified, _, bad) = check(
                &sent[..5].iter().map(|s| match s { Sent::Frame(f) => Sent::Frame(f.clone()), Sent::Proof(p) => Sent::Proof(p.clone()) }).chain([Sent::Proof(changed)]).collect::<Vec<_>>(),
                &[PeerKey::from(&speaker)],
            );
            prop_assert!(verified.is_empty());
            prop_assert_eq!(bad.len(), 1);
        }
    }
}
