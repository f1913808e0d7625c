use ed25519_dalek::SigningKey;
use proptest::prelude::*;

use super::*;

const ROOM: RoomId = RoomId([3; 16]);

fn key(n: u8) -> SigningKey {
    SigningKey::from_bytes(&[n; 32])
}

fn frames(speaker: &SigningKey, seqs: std::ops::Range<u32>, bytes: usize) -> Vec<AudioFrame> {
    seqs.map(|seq| AudioFrame {
        speaker: SpeakerId::of(&PeerKey::from(speaker)),
        seq,
        timestamp: seq.wrapping_mul(960),
        level: 30,
        flags: 1,
        payload: vec![seq as u8; bytes],
        tag: None,
    })
    .collect()
}

#[test]
fn a_signed_chunk_round_trips_and_verifies_for_its_speaker_and_room_only() {
    let ana = key(1);
    let chunk = StudioChunk::sign(&ana, &ROOM, 7, frames(&ana, 100..150, 160)).expect("a chunk");
    let decoded = StudioChunk::decode(&chunk.encode()).expect("reads back");
    assert_eq!(decoded, chunk);
    assert!(decoded.verify(&ROOM, &PeerKey::from(&ana)));
    assert!(!decoded.verify(&RoomId([4; 16]), &PeerKey::from(&ana)));
    assert!(!decoded.verify(&ROOM, &PeerKey::from(&key(2))));
}

#[test]
fn any_change_to_a_chunk_breaks_its_signature() {
    let ana = key(1);
    let chunk = StudioChunk::sign(&ana, &ROOM, 0, frames(&ana, 0..50, 120)).expect("a chunk");
    let mut bytes = chunk.encode();
    // A byte of the tenth frame's payload.
    let at = HEADER_BYTES + 9 * (2 + 17 + 120 + 1) + 2 + 17 + 5;
    bytes[at] ^= 1;
    let altered = StudioChunk::decode(&bytes).expect("reads back");
    assert!(!altered.verify(&ROOM, &PeerKey::from(&ana)));
    // Renumbered, or one frame left out.
    let mut renumbered = chunk.clone();
    renumbered.n = 1;
    assert!(!renumbered.verify(&ROOM, &PeerKey::from(&ana)));
    let mut shorter = chunk.clone();
    shorter.frames.pop();
    assert!(!shorter.verify(&ROOM, &PeerKey::from(&ana)));
}

#[test]
fn frames_of_another_speaker_out_of_order_or_tagged_make_no_chunk() {
    let (ana, bea) = (key(1), key(2));
    let mut mixed = frames(&ana, 0..10, 100);
    mixed.extend(frames(&bea, 10..12, 100));
    assert_eq!(
        StudioChunk::sign(&ana, &ROOM, 0, mixed),
        Err(StudioError::Frames)
    );
    let mut backwards = frames(&ana, 0..10, 100);
    backwards.swap(3, 4);
    assert_eq!(
        StudioChunk::sign(&ana, &ROOM, 0, backwards),
        Err(StudioError::Frames)
    );
    let mut tagged = frames(&ana, 0..10, 100);
    tagged[2].tag = Some([0; 16]);
    assert_eq!(
        StudioChunk::sign(&ana, &ROOM, 0, tagged),
        Err(StudioError::Frames)
    );
    assert_eq!(
        StudioChunk::sign(&ana, &ROOM, 0, Vec::new()),
        Err(StudioError::Count(0))
    );
    assert_eq!(
        StudioChunk::sign(&ana, &ROOM, 0, frames(&ana, 0..101, 10)),
        Err(StudioError::Count(101))
    );
}

#[test]
fn timestamps_may_wrap_within_a_chunk() {
    let ana = key(1);
    let first = u32::MAX / 960 - 10;
    let chunk =
        StudioChunk::sign(&ana, &ROOM, 0, frames(&ana, first..first + 50, 100)).expect("a chunk");
    assert!(chunk.frames.last().expect("frames").timestamp < chunk.frames[0].timestamp);
    assert_eq!(
        StudioChunk::decode(&chunk.encode()).expect("reads back"),
        chunk
    );
}

#[test]
fn a_chunk_too_big_is_refused_when_signed_and_when_read() {
    let ana = key(1);
    assert!(matches!(
        StudioChunk::sign(&ana, &ROOM, 0, frames(&ana, 0..100, 400)),
        Err(StudioError::TooLong { .. })
    ));
    assert!(matches!(
        StudioChunk::decode(&vec![STUDIO_VERSION; MAX_STUDIO_CHUNK_BYTES + 1]),
        Err(StudioError::TooLong { .. })
    ));
}

#[test]
fn truncated_or_padded_chunks_are_errors() {
    let ana = key(1);
    let bytes = StudioChunk::sign(&ana, &ROOM, 0, frames(&ana, 0..5, 100))
        .expect("a chunk")
        .encode();
    for cut in [0, 1, HEADER_BYTES, HEADER_BYTES + 64, bytes.len() - 1] {
        assert!(StudioChunk::decode(&bytes[..cut]).is_err(), "cut at {cut}");
    }
    let mut padded = bytes.clone();
    padded.insert(bytes.len() - 64, 0);
    assert!(StudioChunk::decode(&padded).is_err());
}

proptest! {
    #[test]
    fn decoding_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..2000)) {
        let _ = StudioChunk::decode(&bytes);
    }

    #[test]
    fn decoding_mutated_chunks_never_panics(flips in proptest::collection::vec((0usize..2000, any::<u8>()), 1..8)) {
        let ana = key(1);
        let mut bytes = StudioChunk::sign(&ana, &ROOM, 3, frames(&ana, 0..10, 150)).expect("a chunk").encode();
        for (at, byte) in flips {
            let at = at % bytes.len();
            bytes[at] = byte;
        }
        if let Ok(chunk) = StudioChunk::decode(&bytes) {
            let _ = chunk.verify(&ROOM, &PeerKey::from(&ana));
        }
    }
}
