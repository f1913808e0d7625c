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
