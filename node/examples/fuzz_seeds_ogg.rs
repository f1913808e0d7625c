//! Writes the seed corpus of the `node` decoders' fuzz target (`fuzz/seeds/ogg/NAME`): Ogg Opus
//! files as `OggOpusWriter` writes them, so that the fuzzer starts from inputs that get past
//! every check of `recording::ogg::read`.
//!
//! `cargo run -p earshot-node --example fuzz_seeds_ogg -- fuzz/seeds`
//!
//! `voice` is real Opus from the node's encoder (libopus may pick other instructions on another
//! CPU, and so other bytes: any run's output is a valid seed); `tocs` is the same every time.

use std::path::{Path, PathBuf};

use earshot_node::audio::codec::VoiceEncoder;
use earshot_node::audio::signal::speechlike;
use earshot_node::audio::{FRAME_SAMPLES, SAMPLE_RATE};
use earshot_node::recording::ogg::{OggOpusWriter, OpusTags, packet_samples};

/// libopus's lookahead at 48 kHz (the pre-skip of the files the node writes).
const PRE_SKIP: u16 = 312;

fn write(dir: &Path, target: &str, name: &str, bytes: &[u8]) {
    let dir = dir.join(target);
    std::fs::create_dir_all(&dir).unwrap_or_else(|err| panic!("{}: {err}", dir.display()));
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap_or_else(|err| panic!("{}: {err}", path.display()));
}

fn tags() -> OpusTags {
    OpusTags {
        vendor: "earshot fuzz seeds".to_owned(),
        comments: vec![
            ("TITLE".to_owned(), "Seed room".to_owned()),
            ("ARTIST".to_owned(), "Ada".to_owned()),
            ("ARTIST".to_owned(), "Grace".to_owned()),
        ],
    }
}

/// A second and a half of speech-like audio, encoded as the node encodes voice: two pages, the
/// last one trimmed to the audio's end.
fn voice() -> Vec<u8> {
    let length = 3 * SAMPLE_RATE as usize / 2;
    let mut encoder = VoiceEncoder::new().expect("encoder");
    let pre_skip = encoder.lookahead().expect("lookahead");
    let mut samples = speechlike(length, 7);
    // Enough silence after the audio for the encoder to pass all of it out.
    samples.resize(
        (length + usize::from(pre_skip)).div_ceil(FRAME_SAMPLES) * FRAME_SAMPLES,
        0.0,
    );
    let mut writer = OggOpusWriter::new(Vec::new(), 0x5EED_0001, pre_skip, &tags()).expect("new");
    for frame in samples.chunks_exact(FRAME_SAMPLES) {
        let encoded = encoder.encode(frame).expect("encode");
        writer
            .write_packet(&encoded.payload, FRAME_SAMPLES as u32)
            .expect("write");
    }
    writer.finish(length as u64).expect("finish")
}

/// Packets of every kind of TOC byte (RFC 6716 §3.1: SILK, hybrid and CELT frame sizes; one,
/// two or a counted number of frames) and of lengths around the 255-byte lacing values, on two
/// pages of audio. The payloads are not Opus: the reader reads only the TOC.
fn tocs() -> Vec<u8> {
    // (config, frame count code, length)
    let kinds: [(u8, u8, usize); 12] = [
        (0, 0, 3),    // SILK 10 ms
        (3, 0, 20),   // SILK 60 ms
        (9, 1, 40),   // SILK 40 ms, two frames
        (12, 0, 7),   // hybrid 10 ms
        (15, 2, 60),  // hybrid 20 ms, two frames of different sizes
        (16, 0, 2),   // CELT 2.5 ms
        (17, 3, 10),  // CELT 5 ms, counted frames
        (18, 0, 255), // CELT 10 ms, a packet that ends on a lacing value of 0
        (19, 0, 256), // CELT 20 ms
        (31, 3, 30),  // CELT 20 ms, counted frames
        (11, 3, 12),  // SILK 60 ms, counted frames
        (27, 1, 510), // CELT 20 ms, two frames
    ];
    let mut writer = OggOpusWriter::new(Vec::new(), 0x5EED_0002, PRE_SKIP, &tags()).expect("new");
    let mut written = 0u64;
    let mut last = 0;
    for round in 0..40usize {
        let (config, code, len) = kinds[round % kinds.len()];
        let mut packet: Vec<u8> = (0..len).map(|i| (i * 31 + round) as u8).collect();
        packet[0] = config << 3 | code;
        if code == 3 {
            // Two frames (and no padding or VBR flags).
            packet[1] = 2;
        }
        let samples = packet_samples(&packet).expect("a valid TOC");
        writer.write_packet(&packet, samples).expect("write");
        written += u64::from(samples);
        last = samples;
    }
    // End trimming: half of the last packet is not played.
    let total = written - u64::from(PRE_SKIP) - u64::from(last / 2);
    writer.finish(total).expect("finish")
}

fn main() {
    let dir: PathBuf = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "fuzz/seeds".into())
        .into();
    for (name, bytes) in [("voice", voice()), ("tocs", tocs())] {
        earshot_node::recording::ogg::read(&bytes).expect("the seed reads back");
        write(&dir, "ogg", name, &bytes);
    }
}
