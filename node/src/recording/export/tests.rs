use earshot_protocol::frame::AudioFrame;

use super::*;
use crate::audio::signal::sine;

/// A real Ogg Opus file of `seconds` of a tone, as an export writes it; returns the samples it
/// plays.
fn write_file(path: &Path, seconds: usize) -> u64 {
    let mut encoder = VoiceEncoder::for_files().expect("encoder");
    let pre_skip = encoder.lookahead().expect("lookahead");
    let file = BufWriter::new(std::fs::File::create(path).expect("create"));
    let mut writer = OggOpusWriter::new(file, 7, pre_skip, &OpusTags::default()).expect("headers");
    let tone = sine(440.0, 0.3, SAMPLE_RATE as usize * seconds);
    // One frame of silence pushes out the encoder's lookahead (less than a frame).
    let flush = vec![0.0; FRAME_SAMPLES];
    for chunk in tone
        .chunks(FRAME_SAMPLES)
        .chain(flush.chunks(FRAME_SAMPLES))
    {
        let encoded = encoder.encode(chunk).expect("encode");
        writer
            .write_packet(&encoded.payload, SAMPLES_PER_FRAME)
            .expect("packet");
    }
    let samples = tone.len() as u64;
    writer.finish(samples).expect("finish");
    samples
}

#[test]
fn an_export_is_read_back_and_a_damaged_one_fails() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("tone.opus");
    let samples = write_file(&path, 2);
    verify(&path, samples).expect("the file as written");

    let err = verify(&path, samples + 960).expect_err("not what was written");
    assert!(err.to_string().contains("plays 96000 samples"), "{err}");

    // A byte the disk got wrong, and a file cut short.
    let mut bytes = std::fs::read(&path).expect("read");
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x10;
    std::fs::write(&path, &bytes).expect("write");
    let err = verify(&path, samples).expect_err("flipped byte");
    assert!(err.to_string().contains("checksum"), "{err}");
    bytes[middle] ^= 0x10;
    std::fs::write(&path, &bytes[..bytes.len() - 100]).expect("write");
    let err = verify(&path, samples).expect_err("truncated");
    assert!(err.to_string().contains("does not read back"), "{err}");
}

/// Speech-like frames of `speaker` (`n` of them from frame `first` of the recording), encoded
/// by the live encoder.
fn spoken(speaker: u32, first: u32, n: u32, start_media: u32) -> Vec<AudioFrame> {
    let mut encoder = VoiceEncoder::new().expect("encoder");
    let voice = crate::audio::signal::speechlike(n as usize * FRAME_SAMPLES, u64::from(speaker));
    voice
        .chunks(FRAME_SAMPLES)
        .zip(first..)
        .map(|(chunk, i)| {
            encoder.encode(chunk).expect("encode").into_frame(
                SpeakerId(speaker),
                i,
                start_media + i * SAMPLES_PER_FRAME,
            )
        })
        .collect()
}

#[test]
fn a_speaker_alone_is_exported_packet_for_packet_and_two_at_once_are_mixed() {
    use crate::recording::store::NewRecording;
    use earshot_protocol::{PeerKey, RoomId, Timestamp};
    let dir = tempfile::tempdir().expect("tempdir");
    let store = crate::store::Store::open(dir.path()).expect("store");
    let recordings = Recordings::open(&store).expect("recordings");
    let start_media = 1_000_000;
    let recorder = recordings
        .start(NewRecording {
            room: RoomId([1; 16]),
            title: "Duet".into(),
            host: PeerKey([1; 32]),
            recorder: PeerKey([1; 32]),
            started_at: Timestamp(1_800_000_000_000),
            start_media,
            private: None,
        })
        .expect("start");
    // Ana alone for 2 s, then Bo joins her for 1 s.
    let ana = spoken(1, 0, 150, start_media);
    let bo = spoken(2, 100, 50, start_media);
    let tap = recorder.tap();
    for frame in ana.iter().chain(&bo) {
        tap.record(frame);
    }
    let meta = recorder
        .finish(Timestamp(1_800_000_003_000))
        .expect("finish");
    let payloads = |frames: &[AudioFrame]| -> Vec<Vec<u8>> {
        frames.iter().map(|f| f.payload.clone()).collect()
    };

    let path = dir.path().join("duet.opus");
    let exported = export(&recordings, &meta, None, &path, None, |_| {}).expect("export");
    let file = ogg::read(&std::fs::read(&path).expect("read")).expect("valid Ogg Opus");
    assert_eq!(file.packets.len(), 150);
    // Packets in, packets out: Ana's as she said them while she spoke alone...
    assert_eq!(file.packets[..100], payloads(&ana[..100]));
    assert_eq!(exported.kept, 100);
    // ...and the two voices at once encoded anew (neither's packets).
    for (i, packet) in file.packets[100..].iter().enumerate() {
        assert_ne!(packet, &ana[100 + i].payload);
        assert_ne!(packet, &bo[i].payload);
    }

    // One speaker's track: every packet hers.
    let path = dir.path().join("ana.opus");
    let exported =
        export(&recordings, &meta, None, &path, Some(SpeakerId(1)), |_| {}).expect("export");
    let file = ogg::read(&std::fs::read(&path).expect("read")).expect("valid Ogg Opus");
    assert_eq!(file.packets, payloads(&ana));
    assert_eq!(exported.kept, 150);
    assert_eq!(
        file.final_granule - u64::from(file.head.pre_skip),
        exported.samples
    );
}

/// A speaker's studio track, frame for frame with its live frames (same numbers and timestamps)
/// but encoded by the studio encoder, in chunks of a second signed by `key`.
fn studio_track(
    key: &ed25519_dalek::SigningKey,
    room: &earshot_protocol::RoomId,
    live: &[AudioFrame],
) -> Vec<earshot_protocol::studio::StudioChunk> {
    let mut encoder = VoiceEncoder::for_studio().expect("encoder");
    let voice = crate::audio::signal::speechlike(live.len() * FRAME_SAMPLES, 1);
    let frames: Vec<AudioFrame> = voice
        .chunks(FRAME_SAMPLES)
        .zip(live)
        .map(|(chunk, frame)| {
            encoder.encode(chunk).expect("encode").into_frame(
                frame.speaker,
                frame.seq,
                frame.timestamp,
            )
        })
        .collect();
    frames
        .chunks(50)
        .zip(0..)
        .map(|(frames, n)| {
            earshot_protocol::studio::StudioChunk::sign(key, room, n, frames.to_vec())
                .expect("a chunk")
        })
        .collect()
}

/// Live frames of a speaker for 2 s, with 0.2 s of them lost on the way (frames 40-49), then
/// nothing the room heard for 2 s (muted by the host, say) while its studio track goes on: the
/// export takes the studio frames wherever the room heard the speaker, fills the lost frames
/// and half a second after the last one heard, and no more.
#[test]
fn studio_frames_replace_the_live_ones_and_fill_losses_but_not_what_the_room_never_heard() {
    use crate::recording::store::NewRecording;
    use earshot_protocol::{PeerKey, RoomId, Timestamp};
    let dir = tempfile::tempdir().expect("tempdir");
    let store = crate::store::Store::open(dir.path()).expect("store");
    let recordings = Recordings::open(&store).expect("recordings");
    let start_media = 1_000_000;
    let key = ed25519_dalek::SigningKey::from_bytes(&[1; 32]);
    let speaker = SpeakerId::of(&PeerKey::from(&key)).0;
    let room = RoomId([1; 16]);
    let recorder = recordings
        .start(NewRecording {
            room,
            title: "Studio".into(),
            host: PeerKey::from(&key),
            recorder: PeerKey::from(&key),
            started_at: Timestamp(1_800_000_000_000),
            start_media,
            private: None,
        })
        .expect("start");
    let live = spoken(speaker, 0, 200, start_media);
    let track = studio_track(&key, &room, &live);
    let tap = recorder.tap();
    for (i, frame) in live[..100].iter().enumerate() {
        if !(40..50).contains(&i) {
            tap.record(frame);
        }
    }
    for chunk in &track {
        tap.record_studio(chunk.clone());
    }
    // The room hears the speaker again for the last frame, so the recording lasts 4 s.
    tap.record(&live[199]);
    let meta = recorder
        .finish(Timestamp(1_800_000_004_000))
        .expect("finish");

    let path = dir.path().join("studio.opus");
    let exported = export(&recordings, &meta, None, &path, None, |_| {}).expect("export");
    let file = ogg::read(&std::fs::read(&path).expect("read")).expect("valid Ogg Opus");
    let studio: Vec<&Vec<u8>> = track
        .iter()
        .flat_map(|c| &c.frames)
        .map(|f| &f.payload)
        .collect();
    // Heard live (lost frames included), and half a second after: the studio track's packets,
    // as its encoder made them.
    for (i, (packet, studio)) in file.packets.iter().zip(&studio).enumerate() {
        match i {
            0..=124 | 199 => assert_eq!(&packet, studio, "frame {i}"),
            // Then what the room did not hear stays out.
            125..=198 => assert_ne!(&packet, studio, "frame {i}"),
            _ => {}
        }
    }
    assert_eq!(exported.from_studio, 126);
    assert_eq!(exported.kept, 126);
}
