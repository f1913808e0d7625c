//! Table tests for replay manifests, content, links and the wire: one `check` per area and
//! many tiny cases, plus garbage that must never panic.

use ed25519_dalek::SigningKey;
use proptest::prelude::*;

use super::*;
use crate::frame::{AudioFrame, MAX_OPUS_PAYLOAD, SILENCE_LEVEL, SpeakerId};
use crate::proof::{FrameProof, MAX_FRAMES_PER_PROOF, ProofError, ProofSigner, frame_hash};

fn key(seed: u8) -> SigningKey {
    SigningKey::from_bytes(&[seed; 32])
}

fn pk(seed: u8) -> PeerKey {
    PeerKey::from(&key(seed))
}

fn content(frames: usize) -> Vec<u8> {
    let mut out = Vec::new();
    for i in 0..frames {
        ReplayFrame {
            at: i as u64 * 960,
            speaker: (i % 3) as u32,
            seq: i as u32,
            timestamp: i as u32 * 960,
            flags: 1,
            level: 20,
            payload: vec![i as u8; 50 + i % 30],
        }
        .write_to(&mut out)
        .expect("payload fits");
    }
    out
}

/// Two speakers' frames and their proofs, as a recorder keeps them: each proof right after the
/// last frame it covers.
fn signed_records(frames: u32) -> Vec<ContentRecord> {
    let room = RoomId([4; 16]);
    let mut records = Vec::new();
    for seed in [1u8, 2] {
        let mut signer = ProofSigner::new(key(seed), room);
        for i in 0..frames {
            let at = u64::from(i) * 960 + u64::from(seed);
            let frame = AudioFrame {
                speaker: signer.speaker(),
                seq: 1_000 + i,
                timestamp: 7_000_000 + i * 960,
                level: (i % 128) as u8,
                flags: (i % 4) as u8,
                payload: vec![i as u8; 40 + (i % 50) as usize],
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
        let at = u64::from(frames) * 960;
        records.extend(
            signer
                .flush()
                .map(|proof| ContentRecord::Proof(ReplayProof { at, proof })),
        );
    }
    records.sort_by_key(ContentRecord::order);
    records
}

fn write(records: &[ContentRecord]) -> Vec<u8> {
    let mut out = Vec::new();
    for record in records {
        record.write_to(&mut out).expect("fits");
    }
    out
}

/// Reads `bytes` in pieces of `step` bytes.
fn read(
    format: ContentFormat,
    bytes: &[u8],
    step: usize,
) -> Result<Vec<ContentRecord>, ContentError> {
    let mut reader = ContentReader::new(format);
    let mut records = Vec::new();
    for piece in bytes.chunks(step.max(1)) {
        records.extend(reader.push(piece)?);
    }
    reader.finish()?;
    Ok(records)
}

fn spec_for(content: &[u8], chunk_bytes: u32) -> ManifestSpec {
    ManifestSpec {
        recording: RecordingId([3; 16]),
        room: RoomId([4; 16]),
        title: "Book club".into(),
        host: pk(1),
        started_at: Timestamp(1_800_000_000_000),
        duration_samples: 48_000,
        frames: 100,
        speakers: vec![
            ReplaySpeaker {
                id: 0,
                key: Some(pk(1)),
                name: "ana".into(),
                frames: 34,
            },
            ReplaySpeaker {
                id: 2,
                key: None,
                name: "speaker 00000002".into(),
                frames: 33,
            },
        ],
        chunk_bytes,
        total_bytes: content.len() as u64,
        chunks: content
            .chunks(chunk_bytes as usize)
            .map(ChunkHash::of)
            .collect(),
    }
}

fn typical() -> (ReplayManifest, Vec<u8>) {
    let content = content(100);
    let manifest = ReplayManifest::sign(&key(1), spec_for(&content, MIN_CHUNK_BYTES))
        .expect("a valid manifest");
    (manifest, content)
}

/// Re-signs a manifest after `change`, so that only the rule under test fails.
fn resigned(change: impl FnOnce(&mut ReplayManifest)) -> ReplayManifest {
    let (mut manifest, _) = typical();
    change(&mut manifest);
    manifest.signature = Sig::sign(&key(1), SIGNATURE_DOMAIN, &manifest.signed_bytes());
    manifest
}

fn check(name: &str, manifest: &ReplayManifest, expected: Result<(), ManifestError>) {
    let found = ReplayManifest::decode_verified(&manifest.encode()).map(|_| ());
    assert_eq!(found, expected, "{name}");
}

#[test]
fn manifests_round_trip_and_every_rule_is_enforced() {
    let (manifest, _) = typical();
    check("a typical manifest", &manifest, Ok(()));
    assert_eq!(
        ReplayManifest::decode_verified(&manifest.encode())
            .expect("verifies")
            .into_inner(),
        manifest
    );
    assert!(
        manifest.chunks.len() > 3,
        "the fixture spans several chunks"
    );

    let mut forged = manifest.clone();
    forged.title = "Another club".into();
    check(
        "a changed field breaks the signature",
        &forged,
        Err(ManifestError::BadSignature { recorder: pk(1) }),
    );
    let mut stolen = manifest.clone();
    stolen.recorder = pk(2);
    check(
        "another recorder's name on it",
        &stolen,
        Err(ManifestError::BadSignature { recorder: pk(2) }),
    );
    let mut bad_key = manifest.clone();
    bad_key.recorder = PeerKey([0xff; 32]);
    check(
        "a recorder key that is no key",
        &bad_key,
        Err(ManifestError::BadSignature {
            recorder: PeerKey([0xff; 32]),
        }),
    );
    check(
        "a version from the future",
        &resigned(|m| m.version = MANIFEST_VERSION + 1),
        Err(ManifestError::UnsupportedVersion {
            found: MANIFEST_VERSION + 1,
        }),
    );
    check(
        "a version from before proofs",
        &resigned(|m| m.version = UNAUTHENTICATED_MANIFEST_VERSION),
        Ok(()),
    );
    assert_eq!(manifest.content_format(), ContentFormat::Authenticated);
    assert_eq!(
        resigned(|m| m.version = UNAUTHENTICATED_MANIFEST_VERSION).content_format(),
        ContentFormat::Unauthenticated
    );
    check(
        "one chunk hash missing",
        &resigned(|m| {
            m.chunks.pop();
        }),
        Err(ManifestError::ChunkCount {
            found: manifest.chunks.len() - 1,
            expected: manifest.chunks.len() as u64,
            total_bytes: manifest.total_bytes,
            chunk_bytes: MIN_CHUNK_BYTES,
        }),
    );
    check(
        "total bytes that need one more chunk",
        &resigned(|m| m.total_bytes = m.chunks.len() as u64 * u64::from(MIN_CHUNK_BYTES) + 1),
        Err(ManifestError::ChunkCount {
            found: manifest.chunks.len(),
            expected: manifest.chunks.len() as u64 + 1,
            total_bytes: manifest.chunks.len() as u64 * u64::from(MIN_CHUNK_BYTES) + 1,
            chunk_bytes: MIN_CHUNK_BYTES,
        }),
    );
    check(
        "a chunk size too small",
        &resigned(|m| m.chunk_bytes = 16),
        Err(ManifestError::ChunkSize { chunk_bytes: 16 }),
    );
    check(
        "a chunk size too large",
        &resigned(|m| m.chunk_bytes = MAX_CHUNK_BYTES + 1),
        Err(ManifestError::ChunkSize {
            chunk_bytes: MAX_CHUNK_BYTES + 1,
        }),
    );
    check(
        "a title too long",
        &resigned(|m| m.title = "x".repeat(MAX_TITLE_BYTES + 1)),
        Err(DecodeError::FieldTooLong {
            field: "replay title",
            len: MAX_TITLE_BYTES + 1,
            max: MAX_TITLE_BYTES,
        }
        .into()),
    );
    check(
        "a speaker name too long",
        &resigned(|m| m.speakers[0].name = "x".repeat(MAX_NAME_BYTES + 1)),
        Err(DecodeError::FieldTooLong {
            field: "speaker name",
            len: MAX_NAME_BYTES + 1,
            max: MAX_NAME_BYTES,
        }
        .into()),
    );
    check(
        "speakers out of order",
        &resigned(|m| m.speakers.reverse()),
        Err(ManifestError::SpeakerOrder { id: 0 }),
    );
    check(
        "too many speakers",
        &resigned(|m| {
            m.speakers = (0..=MAX_SPEAKERS as u32)
                .map(|id| ReplaySpeaker {
                    id,
                    key: None,
                    name: String::new(),
                    frames: 0,
                })
                .collect();
        }),
        Err(ManifestError::TooManySpeakers {
            count: MAX_SPEAKERS + 1,
        }),
    );
    check(
        "too many chunks",
        &resigned(|m| {
            m.chunks = vec![ChunkHash([0; 32]); MAX_CHUNKS + 1];
            m.total_bytes = (MAX_CHUNKS as u64 + 1) * u64::from(MIN_CHUNK_BYTES);
        }),
        Err(ManifestError::TooManyChunks {
            count: MAX_CHUNKS + 1,
        }),
    );
}

#[test]
fn signing_refuses_what_decoding_would_refuse() {
    let content = content(10);
    let mut spec = spec_for(&content, MIN_CHUNK_BYTES);
    spec.chunks.push(ChunkHash([0; 32]));
    assert!(matches!(
        ReplayManifest::sign(&key(1), spec),
        Err(ManifestError::ChunkCount { .. })
    ));
}

#[test]
fn the_largest_manifest_fits() {
    let spec = ManifestSpec {
        title: "é".repeat(MAX_TITLE_BYTES / 2),
        speakers: (0..MAX_SPEAKERS as u32)
            .map(|id| ReplaySpeaker {
                id,
                key: Some(pk(1)),
                name: "é".repeat(MAX_NAME_BYTES / 2),
                frames: u64::MAX,
            })
            .collect(),
        chunk_bytes: DEFAULT_CHUNK_BYTES,
        total_bytes: MAX_CHUNKS as u64 * u64::from(DEFAULT_CHUNK_BYTES),
        chunks: vec![ChunkHash([9; 32]); MAX_CHUNKS],
        ..spec_for(&[], DEFAULT_CHUNK_BYTES)
    };
    let manifest = ReplayManifest::sign(&key(1), spec).expect("fits");
    let bytes = manifest.encode();
    assert!(bytes.len() <= MAX_MANIFEST_BYTES, "{}", bytes.len());
    let response = ReplayResponse::Manifest(serde_bytes::ByteBuf::from(bytes)).encode();
    assert!(response.len() <= MAX_RESPONSE_BYTES);
    ReplayManifest::decode_verified(&manifest.encode()).expect("verifies");
}

#[test]
fn served_manifests_are_checked_against_the_id_and_the_recorder() {
    let (manifest, _) = typical();
    let bytes = manifest.encode();
    let id = manifest.id();
    assert_eq!(id, ManifestId::of(&bytes));
    let check = |bytes: &[u8], id, recorder, expected: Result<(), ManifestError>| {
        assert_eq!(
            ReplayManifest::decode_for(bytes, id, recorder).map(|_| ()),
            expected
        );
    };
    check(&bytes, id, Some(pk(1)), Ok(()));
    check(&bytes, id, None, Ok(()));
    check(
        &bytes,
        id,
        Some(pk(2)),
        Err(ManifestError::WrongRecorder {
            expected: pk(2),
            found: pk(1),
        }),
    );
    let other = ManifestId([0; 16]);
    check(
        &bytes,
        other,
        None,
        Err(ManifestError::WrongId {
            expected: other,
            found: id,
        }),
    );
    // A forged manifest has another id; signed by someone else under the recorder's name, it
    // is refused on its signature even when asked for by its own id.
    let mut forged = manifest.clone();
    forged.signature = Sig::sign(&key(2), SIGNATURE_DOMAIN, &forged.signed_bytes());
    let forged = forged.encode();
    check(
        &forged,
        ManifestId::of(&forged),
        Some(pk(1)),
        Err(ManifestError::BadSignature { recorder: pk(1) }),
    );
    check(
        &vec![0; MAX_MANIFEST_BYTES + 1],
        id,
        None,
        Err(DecodeError::TooLarge {
            len: MAX_MANIFEST_BYTES + 1,
            max: MAX_MANIFEST_BYTES,
        }
        .into()),
    );
}

#[test]
fn chunks_are_checked_by_length_and_hash() {
    let (manifest, content) = typical();
    let chunk_bytes = MIN_CHUNK_BYTES as usize;
    let last = manifest.chunks.len() as u32 - 1;
    for (index, chunk) in content.chunks(chunk_bytes).enumerate() {
        assert_eq!(manifest.check_chunk(index as u32, chunk), Ok(()));
    }
    assert_eq!(
        manifest.chunk_len(last),
        Some(content.len() - last as usize * chunk_bytes)
    );
    let mut flipped = content[..chunk_bytes].to_vec();
    flipped[17] ^= 1;
    let check = |index, bytes: &[u8], expected| {
        assert_eq!(manifest.check_chunk(index, bytes), expected);
    };
    check(0, &flipped, Err(ChunkError::HashMismatch { index: 0 }));
    check(
        1,
        &content[..chunk_bytes],
        Err(ChunkError::HashMismatch { index: 1 }),
    );
    check(
        0,
        &content[..10],
        Err(ChunkError::WrongLength {
            index: 0,
            len: 10,
            expected: chunk_bytes,
        }),
    );
    check(
        last + 1,
        &[],
        Err(ChunkError::OutOfRange {
            index: last + 1,
            chunks: manifest.chunks.len(),
        }),
    );
    check(
        u32::MAX,
        &[],
        Err(ChunkError::OutOfRange {
            index: u32::MAX,
            chunks: manifest.chunks.len(),
        }),
    );
}

#[test]
fn content_reads_back_across_any_chunking() {
    let records = signed_records(40);
    let proofs = records
        .iter()
        .filter(|r| matches!(r, ContentRecord::Proof(_)))
        .count();
    assert_eq!(proofs, 2 * 8, "two speakers, a proof every five frames");
    let bytes = write(&records);
    for step in [1, 7, 11, 25, 100, bytes.len()] {
        let back = read(ContentFormat::Authenticated, &bytes, step).expect("valid content");
        assert_eq!(back, records, "step {step}");
        assert_eq!(write(&back), bytes, "step {step}");
    }
}

#[test]
fn frames_keep_everything_their_speaker_signed() {
    let frame = AudioFrame {
        speaker: SpeakerId(0xdead_beef),
        seq: u32::MAX,
        timestamp: 12_345,
        level: 127,
        flags: 0xff,
        payload: vec![9; MAX_OPUS_PAYLOAD],
        tag: Some([1; crate::frame::TAG_BYTES]),
    };
    let kept = ReplayFrame::of(u64::MAX, &frame);
    assert_eq!(kept.hash(), frame_hash(&frame), "the tag is not signed");
    let back = read(
        ContentFormat::Authenticated,
        &write(&[ContentRecord::Frame(kept.clone())]),
        3,
    )
    .expect("valid");
    assert_eq!(back, vec![ContentRecord::Frame(kept)]);
}

#[test]
fn version_1_content_reads_as_unauthenticated_frames() {
    // What a build before proofs wrote: time, speaker, level, length, payload.
    let mut bytes = Vec::new();
    for (at, speaker, level, payload) in [(0u64, 1u32, 30u8, &[1u8, 2][..]), (960, 1, 200, &[3])] {
        bytes.extend_from_slice(&at.to_be_bytes());
        bytes.extend_from_slice(&speaker.to_be_bytes());
        bytes.push(level);
        bytes.extend_from_slice(&(payload.len() as u16).to_be_bytes());
        bytes.extend_from_slice(payload);
    }
    let frame = |at, level, payload: &[u8]| {
        ContentRecord::Frame(ReplayFrame {
            at,
            speaker: 1,
            seq: 0,
            timestamp: 0,
            flags: 0,
            level,
            payload: payload.to_vec(),
        })
    };
    for step in [1, 5, bytes.len()] {
        assert_eq!(
            read(ContentFormat::Unauthenticated, &bytes, step),
            Ok(vec![frame(0, 30, &[1, 2]), frame(960, 200, &[3])])
        );
    }
    assert_eq!(
        ContentFormat::of_version(UNAUTHENTICATED_MANIFEST_VERSION),
        Some(ContentFormat::Unauthenticated)
    );
    assert_eq!(
        ContentFormat::of_version(MANIFEST_VERSION),
        Some(ContentFormat::Authenticated)
    );
    // Replays made before stage records were kept: frames and proofs, read as they were.
    assert_eq!(
        ContentFormat::of_version(crate::replay::PROOFS_ONLY_MANIFEST_VERSION),
        Some(ContentFormat::Authenticated)
    );
    assert_eq!(ContentFormat::of_version(0), None);
}

#[test]
fn bad_content_is_refused() {
    let frame = |at, speaker, len| {
        ContentRecord::Frame(ReplayFrame {
            at,
            speaker,
            seq: 0,
            timestamp: 0,
            flags: 0,
            level: 1,
            payload: vec![0; len],
        })
    };
    let signed = signed_records(5)
        .into_iter()
        .find_map(|record| match record {
            ContentRecord::Proof(proof) => Some(proof.proof),
            _ => None,
        })
        .expect("a proof");
    let speaker = signed.speaker.0;
    let proof = |at| {
        ContentRecord::Proof(ReplayProof {
            at,
            proof: signed.clone(),
        })
    };
    let check = |bytes: &[u8], expected: Result<(), ContentError>| {
        assert_eq!(
            read(ContentFormat::Authenticated, bytes, bytes.len()).map(|_| ()),
            expected
        );
    };
    check(
        &write(&[frame(960, 1, 3), frame(960, 1, 3)]),
        Err(ContentError::OutOfOrder {
            at: 960,
            speaker: 1,
        }),
    );
    check(
        &write(&[frame(960, 2, 3), frame(960, 1, 3)]),
        Err(ContentError::OutOfOrder {
            at: 960,
            speaker: 1,
        }),
    );
    check(&write(&[frame(960, 1, 3), frame(960, 2, 3)]), Ok(()));
    // A proof comes after the frame of its speaker at its time, once.
    check(&write(&[frame(960, speaker, 3), proof(960)]), Ok(()));
    check(
        &write(&[proof(960), frame(960, speaker, 3)]),
        Err(ContentError::OutOfOrder { at: 960, speaker }),
    );
    check(
        &write(&[proof(960), proof(960)]),
        Err(ContentError::OutOfOrder { at: 960, speaker }),
    );
    let whole = write(&[frame(0, 1, 30)]);
    check(&whole[..20], Err(ContentError::Truncated { left: 20 }));
    let mut too_long = whole.clone();
    too_long[23..25].copy_from_slice(&2000u16.to_be_bytes());
    check(&too_long, Err(ContentError::PayloadTooLong { len: 2000 }));
    let mut loud = whole.clone();
    loud[21] = 128;
    check(&loud, Err(ContentError::BadLevel { level: 128 }));
    let mut unknown = whole.clone();
    unknown[0] = 7;
    check(&unknown, Err(ContentError::UnknownRecord { kind: 7 }));
    let mut bad_proof = write(&[proof(0)]);
    bad_proof[PROOF_HEADER_BYTES] = 9;
    check(
        &bad_proof,
        Err(ContentError::BadProof {
            at: 0,
            source: ProofError::Version(9),
        }),
    );
    let mut long_proof = write(&[proof(0)]);
    long_proof[9..11].copy_from_slice(&u16::MAX.to_be_bytes());
    check(
        &long_proof,
        Err(ContentError::BadProof {
            at: 0,
            source: ProofError::Length {
                len: usize::from(u16::MAX),
            },
        }),
    );
    let write_one = |record: ContentRecord| record.write_to(&mut Vec::new());
    assert_eq!(
        write_one(frame(0, 0, MAX_OPUS_PAYLOAD + 1)),
        Err(ContentError::PayloadTooLong {
            len: MAX_OPUS_PAYLOAD + 1
        })
    );
    let mut empty = signed.clone();
    empty.hashes.clear();
    let mut long = signed.clone();
    long.hashes = vec![[0; crate::proof::HASH_BYTES]; MAX_FRAMES_PER_PROOF + 1];
    for (proof, count) in [(empty, 0), (long, MAX_FRAMES_PER_PROOF + 1)] {
        assert_eq!(
            write_one(ContentRecord::Proof(ReplayProof { at: 5, proof })),
            Err(ContentError::BadProof {
                at: 5,
                source: ProofError::Count(count)
            })
        );
    }
    let ContentRecord::Frame(mut loud) = frame(0, 0, 1) else {
        unreachable!()
    };
    loud.level = 200;
    assert_eq!(
        write_one(ContentRecord::Frame(loud)),
        Err(ContentError::BadLevel { level: 200 })
    );
}

fn link() -> ReplayLink {
    ReplayLink {
        manifest: ManifestId([5; 16]),
        recorder: pk(1),
        addrs: vec![
            "/ip4/127.0.0.1/udp/4001/quic-v1".parse().expect("addr"),
            "/ip4/192.168.1.2/tcp/4001".parse().expect("addr"),
        ],
        key: None,
    }
}

#[test]
fn a_private_replays_link_carries_its_key_and_older_links_still_read() {
    let keyed = ReplayLink {
        key: Some(crate::private::Secret::from_bytes([9; 32])),
        ..link()
    };
    let text = keyed.encode();
    assert_eq!(ReplayLink::decode(&text), Ok(keyed.clone()));
    assert_eq!(ReplayLink::decode(&link().encode()), Ok(link()));
    // A mistyped keyed link is a checksum error, not a version error.
    let mut typo = text.clone();
    let last = typo.pop().expect("a character");
    typo.push(if last == 'a' { 'b' } else { 'a' });
    assert_eq!(ReplayLink::decode(&typo), Err(ReplayLinkError::Checksum));
}

#[test]
fn a_studio_record_reads_back_after_the_frames_and_proofs_of_its_time() {
    let ana = key(1);
    let speaker = SpeakerId::of(&pk(1));
    let frames: Vec<AudioFrame> = (0..50)
        .map(|i| AudioFrame {
            speaker,
            seq: i,
            timestamp: i * 960,
            level: 10,
            flags: 1,
            payload: vec![3; 160],
            tag: None,
        })
        .collect();
    let chunk = crate::studio::StudioChunk::sign(&ana, &RoomId([3; 16]), 4, frames.clone())
        .expect("a chunk");
    let studio = ContentRecord::Studio(ReplayStudio { at: 960, chunk });
    let frame = ContentRecord::Frame(ReplayFrame::of(960, &frames[1]));
    assert!(frame.order() < studio.order());
    let records = vec![frame, studio];
    assert_eq!(
        read(ContentFormat::Authenticated, &write(&records), 7),
        Ok(records)
    );
    // A chunk cut short inside a record is an error once the content ends.
    let bytes = write(&[ContentRecord::Studio(ReplayStudio {
        at: 0,
        chunk: crate::studio::StudioChunk::sign(&ana, &RoomId([3; 16]), 0, frames)
            .expect("a chunk"),
    })]);
    assert!(read(ContentFormat::Authenticated, &bytes[..bytes.len() - 1], 50).is_err());
}

#[test]
fn a_sealed_record_reads_back_and_opens_only_with_its_key() {
    use crate::private::{PrivateRecord, Secret};
    let room = RoomId([3; 16]);
    let key = Secret::from_bytes([4; 32]);
    let about = PrivateRecord::About {
        title: "Our secret".into(),
        names: vec![(7, "Hana".into())],
    };
    let sealed = ContentRecord::Sealed(ReplaySealed {
        at: 960,
        n: 0,
        bytes: about.seal(&room, &key, [5; 12]),
    });
    let mut out = Vec::new();
    sealed.write_to(&mut out).expect("written");
    assert!(!out.windows(4).any(|w| w == b"Hana"));
    let mut reader = ContentReader::new(ContentFormat::Authenticated);
    let records = reader.push(&out).expect("read");
    reader.finish().expect("whole");
    assert_eq!(records, vec![sealed.clone()]);
    let ContentRecord::Sealed(read) = &records[0] else {
        panic!("a sealed record");
    };
    assert_eq!(PrivateRecord::open(&room, &key, &read.bytes), Ok(about));
    assert!(PrivateRecord::open(&room, &Secret::from_bytes([5; 32]), &read.bytes).is_err());
}

#[test]
fn replay_links_round_trip_and_report_their_errors() {
    let text = link().encode();
    assert!(text.starts_with(REPLAY_LINK_PREFIX), "{text}");
    assert_eq!(ReplayLink::decode(&text), Ok(link()));
    assert_eq!(ReplayLink::decode(&text.to_uppercase()), Ok(link()));
    let wrapped = format!("  {}\n{}  ", &text[..40], &text[40..]);
    assert_eq!(ReplayLink::decode(&wrapped), Ok(link()));

    let check = |text: &str, expected: ReplayLinkError| {
        assert_eq!(ReplayLink::decode(text), Err(expected), "{text}");
    };
    check("earshot://join/abc", ReplayLinkError::NotALink);
    check("", ReplayLinkError::NotALink);
    check(
        &format!("{REPLAY_LINK_PREFIX}{}", "a".repeat(MAX_REPLAY_LINK_CHARS)),
        ReplayLinkError::TooLong {
            len: REPLAY_LINK_PREFIX.len() + MAX_REPLAY_LINK_CHARS,
        },
    );
    check(
        &format!("{REPLAY_LINK_PREFIX}ab1cd"),
        ReplayLinkError::InvalidCharacter {
            character: '1',
            position: REPLAY_LINK_PREFIX.len() + 3,
        },
    );
    check(&text[..text.len() - 3], ReplayLinkError::Checksum);
    let mut typo = text.clone().into_bytes();
    let at = REPLAY_LINK_PREFIX.len() + 10;
    typo[at] = if typo[at] == b'a' { b'b' } else { b'a' };
    check(
        &String::from_utf8(typo).expect("ascii"),
        ReplayLinkError::Checksum,
    );
    let with_version =
        |version: u8, body: &[u8]| crate::link::frame(REPLAY_LINK_PREFIX, version, body);
    check(
        &with_version(9, &[]),
        ReplayLinkError::UnsupportedVersion { found: 9 },
    );
    assert!(matches!(
        ReplayLink::decode(&with_version(REPLAY_LINK_VERSION, &[1, 2, 3])),
        Err(ReplayLinkError::Malformed(_))
    ));
    let mut too_many = LinkBody {
        manifest: ManifestId([5; 16]),
        recorder: pk(1),
        addrs: addr_bytes(&link().addrs),
    };
    too_many.addrs = vec![too_many.addrs[0].clone(); MAX_REPLAY_ADDRS + 1];
    check(
        &with_version(REPLAY_LINK_VERSION, &codec::encode(&too_many)),
        ReplayLinkError::Malformed(DecodeError::TooManyAddresses {
            count: MAX_REPLAY_ADDRS + 1,
            max: MAX_REPLAY_ADDRS,
        }),
    );
    too_many.addrs = vec![serde_bytes::ByteBuf::from(vec![0xff, 0xff])];
    check(
        &with_version(REPLAY_LINK_VERSION, &codec::encode(&too_many)),
        ReplayLinkError::Malformed(DecodeError::BadAddress),
    );
}

#[test]
fn manifest_ids_parse() {
    let id = ManifestId([5; 16]);
    assert_eq!(id.to_string().parse::<ManifestId>(), Ok(id));
    assert_eq!(id.to_string().to_uppercase().parse::<ManifestId>(), Ok(id));
    assert!(matches!(
        "abc".parse::<ManifestId>(),
        Err(IdParseError::BadLength { .. })
    ));
    assert!(matches!(
        "1".repeat(26).parse::<ManifestId>(),
        Err(IdParseError::NotBase32 { .. })
    ));
}

#[test]
fn wire_messages_round_trip_and_are_bounded() {
    for request in [
        ReplayRequest::Manifest {
            id: ManifestId([1; 16]),
        },
        ReplayRequest::Chunk {
            id: ManifestId([1; 16]),
            index: u32::MAX,
        },
    ] {
        let bytes = request.encode();
        assert!(bytes.len() <= MAX_REQUEST_BYTES);
        assert_eq!(ReplayRequest::decode(&bytes), Ok(request));
    }
    for response in [
        ReplayResponse::NotFound,
        ReplayResponse::Chunk(serde_bytes::ByteBuf::from(vec![
            7;
            MAX_CHUNK_BYTES as usize
        ])),
    ] {
        let bytes = response.encode();
        assert!(bytes.len() <= MAX_RESPONSE_BYTES);
        assert_eq!(ReplayResponse::decode(&bytes), Ok(response));
    }
    assert!(matches!(
        ReplayRequest::decode(&[0; MAX_REQUEST_BYTES + 1]),
        Err(DecodeError::TooLarge { .. })
    ));
    assert!(ReplayRequest::decode(&[7]).is_err());
    assert!(ReplayResponse::decode(&[3]).is_err());
}

#[test]
fn garbage_never_panics() {
    let (manifest, content) = typical();
    let encoded = manifest.encode();
    let link = link().encode();
    // Every single-byte change and every truncation of real messages, and some noise.
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut noise = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for i in 0..encoded.len().min(2000) {
        let mut bytes = encoded.clone();
        bytes[i] ^= (noise() as u8) | 1;
        assert!(ReplayManifest::decode_verified(&bytes).is_err(), "byte {i}");
        let _ = ReplayManifest::decode_verified(&encoded[..i]);
    }
    for i in 0..content.len().min(500) {
        let mut bytes = content.clone();
        bytes[i] ^= noise() as u8;
        for format in [ContentFormat::Authenticated, ContentFormat::Unauthenticated] {
            let mut reader = ContentReader::new(format);
            if reader.push(&bytes).is_ok() {
                let _ = reader.finish();
            }
        }
    }
    for i in 0..link.len() {
        let _ = ReplayLink::decode(&link[..i]);
    }
    for _ in 0..2000 {
        let len = (noise() % 300) as usize;
        let bytes: Vec<u8> = (0..len).map(|_| noise() as u8).collect();
        let _ = ReplayManifest::decode_verified(&bytes);
        let _ = ReplayRequest::decode(&bytes);
        let _ = ReplayResponse::decode(&bytes);
        let mut reader = ContentReader::new(ContentFormat::Authenticated);
        let _ = reader.push(&bytes);
        let _ = ReplayLink::decode(&format!(
            "{REPLAY_LINK_PREFIX}{}",
            String::from_utf8_lossy(&bytes)
        ));
    }
}

/// Any record a content may hold.
fn record() -> impl Strategy<Value = ContentRecord> {
    let frame = (
        any::<u64>(),
        any::<u32>(),
        any::<u32>(),
        any::<u32>(),
        any::<u8>(),
        0u8..=SILENCE_LEVEL,
        prop::collection::vec(any::<u8>(), 0..=MAX_OPUS_PAYLOAD),
    )
        .prop_map(|(at, speaker, seq, timestamp, flags, level, payload)| {
            ContentRecord::Frame(ReplayFrame {
                at,
                speaker,
                seq,
                timestamp,
                flags,
                level,
                payload,
            })
        });
    let proof = (
        any::<u64>(),
        any::<u32>(),
        any::<u32>(),
        prop::collection::vec(any::<[u8; crate::proof::HASH_BYTES]>(), 1..=16),
        any::<[u8; 32]>(),
    )
        .prop_map(|(at, speaker, first_seq, hashes, signature)| {
            ContentRecord::Proof(ReplayProof {
                at,
                proof: FrameProof {
                    speaker: SpeakerId(speaker),
                    first_seq,
                    hashes,
                    signature: Sig([signature, signature]
                        .concat()
                        .try_into()
                        .unwrap_or([0; 64])),
                },
            })
        });
    prop_oneof![frame, proof]
}

proptest! {
    #[test]
    fn any_records_in_order_round_trip(
        mut records in prop::collection::vec(record(), 0..12),
        step in 1usize..64,
    ) {
        records.sort_by_key(ContentRecord::order);
        records.dedup_by_key(|record| record.order());
        let bytes = write(&records);
        prop_assert_eq!(read(ContentFormat::Authenticated, &bytes, step), Ok(records));
    }

    #[test]
    fn reading_arbitrary_content_never_panics(
        bytes in prop::collection::vec(any::<u8>(), 0..600),
        step in 1usize..64,
    ) {
        let _ = read(ContentFormat::Authenticated, &bytes, step);
        let _ = read(ContentFormat::Unauthenticated, &bytes, step);
    }

    #[test]
    fn reading_mangled_content_never_panics(at in any::<prop::sample::Index>(), value in any::<u8>()) {
        let mut bytes = write(&signed_records(12));
        let at = at.index(bytes.len());
        bytes[at] = value;
        let _ = read(ContentFormat::Authenticated, &bytes, 13);
        bytes.truncate(at);
        let _ = read(ContentFormat::Authenticated, &bytes, 13);
    }
}

#[test]
fn a_consent_record_reads_back_after_its_speakers_frame_and_out_of_bounds_is_refused() {
    let ana = key(1);
    let envelope = crate::envelope::Envelope::sign(
        &ana,
        RoomId([3; 16]),
        1,
        Timestamp(1_800_000_000_500),
        crate::envelope::Authority::Host,
        crate::control::ControlBody::RecordingConsent {
            since: Timestamp(1_800_000_000_000),
        },
    )
    .expect("an envelope")
    .encode();
    let consent = ContentRecord::Consent(
        crate::replay::ReplayConsent::new(960, envelope.clone()).expect("a record"),
    );
    let frame = ContentRecord::Frame(ReplayFrame::of(
        960,
        &AudioFrame {
            speaker: SpeakerId::of(&pk(1)),
            seq: 1,
            timestamp: 960,
            level: 10,
            flags: 1,
            payload: vec![3; 80],
            tag: None,
        },
    ));
    assert!(frame.order() < consent.order());
    let records = vec![frame, consent];
    assert_eq!(
        read(ContentFormat::Authenticated, &write(&records), 5),
        Ok(records)
    );
    // Not an envelope, or too long: refused as it is read or made.
    assert!(crate::replay::ReplayConsent::new(0, vec![1, 2, 3]).is_err());
    assert!(
        crate::replay::ReplayConsent::new(0, vec![0; crate::envelope::MAX_ENVELOPE_BYTES + 1])
            .is_err()
    );
    let mut bytes = Vec::new();
    ContentRecord::Consent(crate::replay::ReplayConsent::new(0, envelope).expect("a record"))
        .write_to(&mut bytes)
        .expect("written");
    bytes[9..11].copy_from_slice(&u16::MAX.to_be_bytes());
    assert!(read(ContentFormat::Authenticated, &bytes, 50).is_err());
}
