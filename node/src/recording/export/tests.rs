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
