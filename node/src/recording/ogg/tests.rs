use super::*;
use crate::audio::codec::{VoiceDecoder, VoiceEncoder};
use crate::audio::signal::{similarity, sine};
use crate::audio::{FRAME_SAMPLES, SAMPLE_RATE};

/// libopus's lookahead at 48 kHz outside low-delay mode (2.5 ms + 4 ms of delay compensation),
/// for tests that do not run an encoder; `real_opus_survives_the_file` asks the encoder.
const PRE_SKIP: u16 = 312;
const SERIAL: u32 = 0x5EED_0A05;

/// TOC bytes (RFC 6716 §3.1: config << 3 | frame count code).
const CELT_20MS: u8 = 31 << 3;
const CELT_10MS: u8 = 30 << 3;
const SILK_60MS: u8 = 3 << 3;
/// Code 3: the frame count is in the next byte.
const CELT_20MS_CODE3: u8 = (31 << 3) | 3;

/// A deterministic xorshift, enough for test data.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

/// A packet of `len` bytes whose TOC says `toc`'s duration (content otherwise arbitrary).
fn packet(toc: u8, len: usize, rng: &mut Rng) -> (Vec<u8>, u32) {
    let mut bytes = rng.bytes(len.max(1));
    bytes[0] = toc;
    if toc & 3 == 3 {
        bytes[1] = 3; // three frames
    }
    let samples = packet_samples(&bytes).expect("a valid TOC");
    (bytes, samples)
}

fn tags() -> OpusTags {
    OpusTags {
        vendor: "earshot tests".to_owned(),
        comments: vec![
            ("TITLE".to_owned(), "Morning standup".to_owned()),
            ("ARTIST".to_owned(), "Ada".to_owned()),
            ("ARTIST".to_owned(), "Grace".to_owned()),
            ("DATE".to_owned(), "2025-11-26".to_owned()),
            (
                "DESCRIPTION".to_owned(),
                "a=b, ünïcödé\nand a newline".to_owned(),
            ),
        ],
    }
}

fn write(packets: &[(Vec<u8>, u32)], total: u64) -> Vec<u8> {
    let mut writer = OggOpusWriter::new(Vec::new(), SERIAL, PRE_SKIP, &tags()).expect("new");
    for (packet, samples) in packets {
        writer.write_packet(packet, *samples).expect("write_packet");
    }
    writer.finish(total).expect("finish")
}

fn written(packets: &[(Vec<u8>, u32)]) -> u64 {
    packets.iter().map(|(_, samples)| u64::from(*samples)).sum()
}

/// A few packets, for tests that mangle every byte.
fn small_file() -> Vec<u8> {
    let mut rng = Rng(7);
    let packets: Vec<_> = [1, 80, 255, 300]
        .into_iter()
        .map(|len| packet(CELT_20MS, len, &mut rng))
        .collect();
    write(&packets, written(&packets) - u64::from(PRE_SKIP) - 100)
}

/// Where each page of a well-formed file starts and ends.
fn page_ranges(file: &[u8]) -> Vec<std::ops::Range<usize>> {
    let mut ranges = Vec::new();
    let mut at = 0;
    while at < file.len() {
        let segments = usize::from(file[at + 26]);
        let body: usize = file[at + 27..at + 27 + segments]
            .iter()
            .map(|&len| usize::from(len))
            .sum();
        let end = at + 27 + segments + body;
        ranges.push(at..end);
        at = end;
    }
    ranges
}

fn fix_crc(page: &mut [u8]) {
    page[22..26].fill(0);
    let crc = crc32(page);
    page[22..26].copy_from_slice(&crc.to_le_bytes());
}

#[test]
fn crc_known_answers() {
    // The CRC catalogue's CRC-32/POSIX (same polynomial, init 0, unreflected) has check value
    // 0x765E7680 for "123456789" with a final xor of 0xFFFFFFFF; Ogg's has no final xor.
    assert_eq!(crc32(b"123456789"), !0x765E_7680);
    // POSIX `cksum` is that CRC over the data followed by its length in bytes (here one byte,
    // 9), inverted: `printf 123456789 | cksum` prints 930766865.
    assert_eq!(!crc32(b"123456789\x09"), 930_766_865);
    assert_eq!(crc32(b""), 0);
    // Unreflected with init 0: the message x^0 leaves x^32 mod P, the polynomial itself.
    assert_eq!(crc32(&[0x01]), 0x04C1_1DB7);
    assert_eq!(crc32(&[0x00, 0x00, 0x00, 0x00]), 0);
}

/// The first page of a file opusenc (opus-tools 0.2, libopusenc 0.2.1, libogg) wrote for a
/// 48 kHz mono input, with its random serial number: its CRC is libogg's.
const OPUSENC_FIRST_PAGE: [u8; 47] = [
    0x4f, 0x67, 0x67, 0x53, 0x00, 0x02, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xdc, 0x8d,
    0x75, 0x50, 0x00, 0x00, 0x00, 0x00, 0x4f, 0x2a, 0xfb, 0x6a, 0x01, 0x13, 0x4f, 0x70, 0x75, 0x73,
    0x48, 0x65, 0x61, 0x64, 0x01, 0x01, 0x38, 0x01, 0x80, 0xbb, 0x00, 0x00, 0x00, 0x00, 0x00,
];

#[test]
fn first_page_matches_opusenc() {
    let mut page = OPUSENC_FIRST_PAGE;
    page[22..26].fill(0);
    assert_eq!(crc32(&page), 0x6AFB_2A4F);
    let mut rng = Rng(1);
    let (packet, samples) = packet(CELT_20MS, 10, &mut rng);
    let mut writer = OggOpusWriter::new(Vec::new(), 0x5075_8DDC, 312, &tags()).expect("new");
    writer.write_packet(&packet, samples).expect("write");
    let file = writer.finish(0).expect("finish");
    assert_eq!(file[..47], OPUSENC_FIRST_PAGE);
}

#[test]
fn every_page_crc_recomputes() {
    let file = small_file();
    let ranges = page_ranges(&file);
    assert!(ranges.len() >= 3);
    for range in ranges {
        let mut page = file[range.clone()].to_vec();
        fix_crc(&mut page);
        assert_eq!(page, file[range], "the stored CRC is the page's");
    }
}

#[test]
fn any_changed_byte_is_refused() {
    let file = small_file();
    read(&file).expect("the original reads");
    for at in 0..file.len() {
        for mask in [0x01, 0x10, 0x80, 0xFF] {
            let mut mangled = file.clone();
            mangled[at] ^= mask;
            assert!(
                read(&mangled).is_err(),
                "byte {at} ^ {mask:#04x} went unnoticed"
            );
        }
    }
}

#[test]
fn truncated_files_are_refused() {
    let file = small_file();
    for len in 0..file.len() {
        assert!(read(&file[..len]).is_err(), "cut at {len} went unnoticed");
    }
}

#[test]
fn garbage_is_refused_without_panics() {
    let mut rng = Rng(0xDEAD_BEEF);
    for round in 0..3000 {
        let len = rng.below(400);
        let mut bytes = rng.bytes(len);
        // Half of them past the capture pattern, with a valid CRC, to reach deeper checks.
        if round % 2 == 0 && len >= PAGE_HEADER_LEN {
            bytes[..4].copy_from_slice(CAPTURE);
            bytes[4] = 0;
            bytes[26] = (len - PAGE_HEADER_LEN).min(bytes[26].into()) as u8;
            let page_len = PAGE_HEADER_LEN
                + usize::from(bytes[26])
                + bytes[PAGE_HEADER_LEN..PAGE_HEADER_LEN + usize::from(bytes[26])]
                    .iter()
                    .map(|&l| usize::from(l))
                    .sum::<usize>();
            if page_len <= len {
                fix_crc(&mut bytes[..page_len]);
            }
        }
        assert!(read(&bytes).is_err());
    }
}

#[test]
fn mangled_pages_with_valid_crcs_never_panic() {
    // Change bytes outside the lacing (so pages keep their lengths), then fix the CRC: this
    // reaches every check above the page layer. Some changes are harmless (a packet's content);
    // none may panic.
    let file = small_file();
    let ranges = page_ranges(&file);
    let mut rng = Rng(99);
    let mut refused = 0;
    for _ in 0..5000 {
        let mut mangled = file.clone();
        let range = ranges[rng.below(ranges.len())].clone();
        for _ in 0..1 + rng.below(3) {
            let at = range.start + rng.below(range.len());
            if (at - range.start) != 26
                && !(27..27 + usize::from(file[range.start + 26])).contains(&(at - range.start))
            {
                mangled[at] = rng.next() as u8;
            }
        }
        fix_crc(&mut mangled[range]);
        refused += usize::from(read(&mangled).is_err());
    }
    assert!(refused > 1000, "only {refused} refused");
}

#[test]
fn packets_round_trip_with_rfc_7845_layout() {
    let mut rng = Rng(2024);
    // Lacing edge cases first (a multiple of 255 needs a final 0 lacing value), then ~6 s of
    // mixed durations and sizes.
    let mut packets: Vec<(Vec<u8>, u32)> = [1, 2, 254, 255, 256, 509, 510, 511, 765, 1274, 1275]
        .into_iter()
        .map(|len| packet(CELT_20MS, len, &mut rng))
        .collect();
    for _ in 0..300 {
        let toc = [CELT_20MS, CELT_20MS, CELT_10MS, SILK_60MS, CELT_20MS_CODE3][rng.below(5)];
        let len = 2 + rng.below(1274);
        packets.push(packet(toc, len, &mut rng));
    }
    // A run of 1275-byte packets: six lacing values each, so pages fill their 255 lacing values
    // before their second.
    for _ in 0..60 {
        packets.push(packet(CELT_20MS, 1275, &mut rng));
    }
    // Play all but the last 700 samples (and the pre-skip).
    let total = written(&packets) - u64::from(PRE_SKIP) - 700;
    let file = write(&packets, total);
    let read_back = read(&file).expect("read");

    assert_eq!(read_back.serial, SERIAL);
    assert_eq!(
        read_back.head,
        OpusHead {
            version: 1,
            channels: 1,
            pre_skip: PRE_SKIP,
            input_rate: 48_000,
            gain: 0,
            mapping_family: 0,
        }
    );
    assert_eq!(read_back.tags, tags());
    let originals: Vec<&Vec<u8>> = packets.iter().map(|(packet, _)| packet).collect();
    let read_packets: Vec<&Vec<u8>> = read_back.packets.iter().collect();
    assert_eq!(read_packets, originals);
    assert_eq!(read_back.final_granule, u64::from(PRE_SKIP) + total);

    // Page 0: OpusHead alone, beginning of stream. Page 1: OpusTags alone. Both granule 0.
    let pages = &read_back.pages;
    assert_eq!(
        pages.iter().map(|page| page.bytes).sum::<usize>(),
        file.len()
    );
    assert_eq!((pages[0].header_type, pages[0].granule), (FLAG_BOS, 0));
    assert_eq!((pages[0].packets_completed, pages[0].segments), (1, 1));
    assert_eq!((pages[1].header_type, pages[1].granule), (0, 0));
    assert_eq!(pages[1].packets_completed, 1);

    // Audio pages: granule = samples completed so far (the pre-skip's included), the last one
    // pre-skip + samples to play; a page is closed at a second, or when the next packet's
    // lacing values would not fit; only the last ends the stream.
    let audio = &pages[2..];
    assert!(audio.len() >= 6, "{} audio pages", audio.len());
    let mut next = 0;
    let mut samples = 0u64;
    for (i, page) in audio.iter().enumerate() {
        let last = i == audio.len() - 1;
        assert_eq!(page.sequence as usize, i + 2);
        assert_eq!(page.header_type, if last { FLAG_EOS } else { 0 });
        assert!(page.segments <= 255);
        let on_page = &packets[next..next + page.packets_completed];
        let page_samples: u64 = on_page.iter().map(|(_, s)| u64::from(*s)).sum();
        let segments: usize = on_page.iter().map(|(p, _)| p.len() / 255 + 1).sum();
        assert_eq!(segments, page.segments, "no packet is split");
        next += page.packets_completed;
        samples += page_samples;
        if last {
            assert_eq!(page.granule as u64, u64::from(PRE_SKIP) + total);
        } else {
            assert_eq!(page.granule as u64, samples);
            let next_segments = packets[next].0.len() / 255 + 1;
            assert!(
                page_samples >= 48_000 || page.segments + next_segments > 255,
                "page {i} closed early: {page_samples} samples, {} segments",
                page.segments
            );
            assert!(page_samples < 48_000 + 5760, "page {i} ran long");
        }
    }
    assert_eq!(next, packets.len());
}

#[test]
fn end_trimming_drops_at_most_the_last_packet() {
    let mut rng = Rng(5);
    let packets: Vec<_> = (0..10).map(|_| packet(CELT_20MS, 60, &mut rng)).collect();
    // The most there is to play: everything after the pre-skip.
    let all = written(&packets) - u64::from(PRE_SKIP);
    for total in [all, all - 1, all - 959, all - 960] {
        let file = write(&packets, total);
        assert_eq!(
            read(&file).expect("read").final_granule,
            u64::from(PRE_SKIP) + total
        );
    }
    for total in [all + 1, all - 961, 0, u64::MAX] {
        let mut writer = OggOpusWriter::new(Vec::new(), SERIAL, PRE_SKIP, &tags()).expect("new");
        for (packet, samples) in &packets {
            writer.write_packet(packet, *samples).expect("write");
        }
        assert!(
            matches!(writer.finish(total), Err(OggError::BadTrim { .. })),
            "trim to {total} of {all} accepted"
        );
    }
}

#[test]
fn a_single_short_page_trims_too() {
    // One packet, trimmed: the first audio page is the last, granule below its samples.
    let mut rng = Rng(6);
    let packets = vec![packet(CELT_20MS, 40, &mut rng)];
    let file = write(&packets, 10);
    let read_back = read(&file).expect("read");
    assert_eq!(read_back.final_granule, u64::from(PRE_SKIP) + 10);
    assert_eq!(read_back.pages.len(), 3);
}

#[test]
fn long_tags_and_packets_span_pages() {
    let mut rng = Rng(8);
    let mut long_tags = tags();
    long_tags
        .comments
        .push(("LYRICS".to_owned(), "la ".repeat(30_000)));
    // A packet longer than a page (65,025 bytes): continued on the next page, and the page it
    // fills has no granule position. Real Opus packets never get this long; the format allows it.
    let mut huge = vec![0x55; 70_000];
    huge[0] = CELT_20MS;
    let small = packet(CELT_20MS, 100, &mut rng).0;
    let mut writer = OggOpusWriter::new(Vec::new(), SERIAL, PRE_SKIP, &long_tags).expect("new");
    writer.write_packet(&small, 960).expect("write");
    writer.write_packet(&huge, 960).expect("write");
    writer.write_packet(&small, 960).expect("write");
    let file = writer.finish(2880 - u64::from(PRE_SKIP)).expect("finish");

    let read_back = read(&file).expect("read");
    assert_eq!(read_back.tags, long_tags);
    assert_eq!(read_back.packets, vec![small.clone(), huge, small]);
    let flags_and_granules: Vec<(u8, i64)> = read_back
        .pages
        .iter()
        .map(|page| (page.header_type, page.granule))
        .collect();
    assert_eq!(
        flags_and_granules,
        vec![
            (FLAG_BOS, 0),
            // OpusTags (~90 kB): no packet completes on its first page.
            (0, -1),
            (FLAG_CONTINUED, 0),
            // The small packet; the huge one starts a page of its own and ends on the next,
            // where the last small one joins it.
            (0, 960),
            (0, -1),
            (FLAG_CONTINUED | FLAG_EOS, 2880),
        ]
    );
}

#[test]
fn writer_refuses_what_the_reader_would() {
    let mut writer = OggOpusWriter::new(Vec::new(), SERIAL, PRE_SKIP, &tags()).expect("new");
    assert!(matches!(
        writer.write_packet(&[], 960),
        Err(OggError::InvalidPacket { packet: 0 })
    ));
    assert!(matches!(
        writer.write_packet(&[CELT_20MS_CODE3], 960),
        Err(OggError::InvalidPacket { packet: 0 })
    ));
    assert!(matches!(
        writer.write_packet(&[CELT_20MS, 1, 2], 480),
        Err(OggError::DurationMismatch {
            toc: 960,
            given: 480,
            ..
        })
    ));
    assert!(matches!(writer.finish(0), Err(OggError::NoAudio)));

    for key in ["", "A=B", "TÍTLE", "NEW\nLINE"] {
        let tags = OpusTags {
            vendor: String::new(),
            comments: vec![(key.to_owned(), "value".to_owned())],
        };
        assert!(
            matches!(
                OggOpusWriter::new(Vec::new(), SERIAL, PRE_SKIP, &tags),
                Err(OggError::BadTagKey { .. })
            ),
            "{key:?} accepted"
        );
    }
}

#[test]
fn packet_durations_agree_with_libopus() {
    for toc in 0..=255u8 {
        for count in [0u8, 1, 2, 3, 6, 12, 24, 48, 49, 63, 0x83, 0xC5] {
            let packet = [toc, count, 0, 0];
            let ours = packet_samples(&packet);
            let libopus = opus::packet::get_nb_samples(&packet, SAMPLE_RATE)
                .ok()
                .filter(|&samples| samples > 0)
                .map(|samples| samples as u32);
            assert_eq!(ours, libopus, "toc {toc:#04x}, count byte {count:#04x}");
        }
    }
    assert_eq!(packet_samples(&[]), None);
    assert_eq!(packet_samples(&[CELT_20MS_CODE3]), None);
}

#[test]
fn real_opus_survives_the_file() {
    // 2 s less a bit: the last frame is padded with silence, and end trimming removes it.
    let length = 2 * SAMPLE_RATE as usize - 500;
    let input = sine(440.0, 0.5, length);
    let mut encoder = VoiceEncoder::new().expect("encoder");
    let pre_skip = encoder.lookahead().expect("lookahead");
    assert_eq!(pre_skip, PRE_SKIP, "libopus's 48 kHz VOIP lookahead");

    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("sine.opus");
    let file = std::io::BufWriter::new(std::fs::File::create(&path).expect("create"));
    let mut writer = OggOpusWriter::new(file, SERIAL, pre_skip, &tags()).expect("new");
    // Frames until the encoder has passed all the input out (it holds back `pre_skip` samples).
    let mut padded = input.clone();
    padded.resize(
        (length + usize::from(pre_skip)).div_ceil(FRAME_SAMPLES) * FRAME_SAMPLES,
        0.0,
    );
    for frame in padded.chunks_exact(FRAME_SAMPLES) {
        let encoded = encoder.encode(frame).expect("encode");
        writer
            .write_packet(&encoded.payload, FRAME_SAMPLES as u32)
            .expect("write");
    }
    writer.finish(length as u64).expect("finish");

    let bytes = std::fs::read(&path).expect("read the file");
    let opus_file = read(&bytes).expect("a valid Ogg Opus file");
    let mut decoder = VoiceDecoder::new().expect("decoder");
    let mut output = Vec::new();
    for packet in &opus_file.packets {
        output.extend(decoder.decode(packet).expect("decode"));
    }
    let start = usize::from(opus_file.head.pre_skip);
    let end = opus_file.final_granule as usize;
    let output = &output[start..end];
    assert_eq!(output.len(), length);
    let score = similarity(&input, output);
    assert!(score >= 0.9, "similarity {score:.3}");
    // The pre-skip is right: the output lines up with the input. (libopus's output leads by a
    // few samples at 440 Hz, phase rather than delay. A sine repeats every 109 samples, but
    // forgetting the pre-skip, or skipping a frame too many, would show as a lag of 15 or 22.)
    let lag = (-48..=48)
        .max_by(|&a, &b| lagged(&input, output, a).total_cmp(&lagged(&input, output, b)))
        .expect("lags");
    assert!(lag.abs() <= 10, "output off by {lag} samples");
}

/// Normalised correlation of `output` delayed by `lag` samples against `input`, past the first
/// 100 ms (the decoder's start).
fn lagged(input: &[f32], output: &[f32], lag: i32) -> f64 {
    let start = 4800;
    let shift = lag.unsigned_abs() as usize;
    if lag >= 0 {
        correlation(&input[start..], &output[start + shift..])
    } else {
        correlation(&input[start + shift..], &output[start..])
    }
}

/// Normalised correlation at lag 0.
fn correlation(a: &[f32], b: &[f32]) -> f64 {
    let (mut ab, mut aa, mut bb) = (0.0f64, 0.0f64, 0.0f64);
    for (&x, &y) in a.iter().zip(b) {
        let (x, y) = (f64::from(x), f64::from(y));
        ab += x * y;
        aa += x * x;
        bb += y * y;
    }
    ab / (aa * bb).sqrt().max(f64::MIN_POSITIVE)
}

/// Builds streams page by page, for the reader's checks.
mod streams {
    use super::*;

    pub struct Page {
        pub flags: u8,
        pub granule: i64,
        pub sequence: Option<u32>,
        pub serial: u32,
        pub lacing: Vec<u8>,
        pub body: Vec<u8>,
    }

    /// A page of complete packets.
    pub fn page(flags: u8, granule: i64, packets: &[&[u8]]) -> Page {
        let mut lacing = Vec::new();
        let mut body = Vec::new();
        for packet in packets {
            lacing.extend(std::iter::repeat_n(255, packet.len() / 255));
            lacing.push((packet.len() % 255) as u8);
            body.extend_from_slice(packet);
        }
        Page {
            flags,
            granule,
            sequence: None,
            serial: SERIAL,
            lacing,
            body,
        }
    }

    pub fn bytes(pages: &[Page]) -> Vec<u8> {
        let mut out = Vec::new();
        for (i, page) in pages.iter().enumerate() {
            out.extend(encode_page(
                page.flags,
                page.granule,
                page.serial,
                page.sequence.unwrap_or(i as u32),
                &page.lacing,
                &page.body,
            ));
        }
        out
    }

    pub fn head_packet() -> Vec<u8> {
        OpusHead::mono(PRE_SKIP).encode()
    }

    pub fn head_with(edit: impl Fn(&mut Vec<u8>)) -> Vec<u8> {
        let mut head = head_packet();
        edit(&mut head);
        head
    }

    pub fn tags_packet() -> Vec<u8> {
        tags().encode().expect("tags")
    }

    pub fn audio_packet() -> Vec<u8> {
        vec![CELT_20MS, 1, 2, 3]
    }

    /// Head, tags, and one page of three 20 ms packets.
    pub fn valid() -> Vec<Page> {
        let audio = audio_packet();
        vec![
            page(FLAG_BOS, 0, &[&head_packet()]),
            page(0, 0, &[&tags_packet()]),
            page(FLAG_EOS, 2880, &[&audio, &audio, &audio]),
        ]
    }

    /// Head, tags, and two pages of audio.
    pub fn two_audio_pages(first: i64, last: i64) -> Vec<Page> {
        let audio = audio_packet();
        vec![
            page(FLAG_BOS, 0, &[&head_packet()]),
            page(0, 0, &[&tags_packet()]),
            page(0, first, &[&audio, &audio]),
            page(FLAG_EOS, last, &[&audio]),
        ]
    }
}

#[test]
fn reader_accepts_what_the_rfc_allows() {
    use streams::*;
    read(&bytes(&valid())).expect("one audio page");
    read(&bytes(&two_audio_pages(1920, 2880))).expect("two audio pages");
    read(&bytes(&two_audio_pages(1920, 1920 + 1))).expect("trimmed to one sample");
    // A cropped stream starts later than 0 (RFC 7845 §4.5).
    let cropped = read(&bytes(&two_audio_pages(50_000, 50_960))).expect("cropped");
    assert_eq!(cropped.final_granule, 50_960);
    // A later minor version may add fields to OpusHead.
    let mut pages = valid();
    pages[0] = page(
        FLAG_BOS,
        0,
        &[&head_with(|head| {
            head[8] = 15;
            head.extend([1, 2, 3]);
        })],
    );
    assert_eq!(read(&bytes(&pages)).expect("version 15").head.version, 15);
    // Binary data after the comments.
    let mut pages = valid();
    let mut packet = tags_packet();
    packet.extend([1, 0xFF, 0]);
    pages[1] = page(0, 0, &[&packet]);
    assert_eq!(
        read(&bytes(&pages)).expect("tags with data after").tags,
        tags()
    );
}

#[test]
fn reader_checks_each_rule() {
    use streams::*;
    let audio = audio_packet();
    let with = |edit: &dyn Fn(&mut Vec<Page>)| {
        let mut pages = valid();
        edit(&mut pages);
        bytes(&pages)
    };
    let patched = |edit: &dyn Fn(&mut Vec<u8>)| {
        let mut file = bytes(&valid());
        edit(&mut file);
        let first = page_ranges(&file)[0].clone();
        fix_crc(&mut file[first]);
        file
    };
    let corrupt = |at: usize| {
        let mut file = bytes(&valid());
        file[at] ^= 1;
        file
    };
    type Check = fn(&OggError) -> bool;
    let cases: Vec<(&str, Vec<u8>, Check)> = vec![
        ("empty", Vec::new(), |e| matches!(e, OggError::Empty)),
        ("no capture pattern", b"OggT0000".repeat(10), |e| {
            matches!(e, OggError::BadCapture { offset: 0 })
        }),
        (
            "trailing bytes",
            [bytes(&valid()), b"Ogg".to_vec()].concat(),
            |e| matches!(e, OggError::Truncated { .. }),
        ),
        ("bad crc", corrupt(22), |e| {
            matches!(e, OggError::BadCrc { page: 0, .. })
        }),
        ("version 1", patched(&|file| file[4] = 1), |e| {
            matches!(
                e,
                OggError::BadVersion {
                    page: 0,
                    version: 1
                }
            )
        }),
        ("undefined flag", patched(&|file| file[5] |= 0x08), |e| {
            matches!(e, OggError::BadHeaderType { page: 0, .. })
        }),
        ("another stream", with(&|pages| pages[1].serial = 1), |e| {
            matches!(
                e,
                OggError::OtherStream {
                    page: 1,
                    found: 1,
                    ..
                }
            )
        }),
        (
            "sequence gap",
            with(&|pages| pages[2].sequence = Some(3)),
            |e| {
                matches!(
                    e,
                    OggError::BadSequence {
                        page: 2,
                        expected: 2,
                        found: 3
                    }
                )
            },
        ),
        (
            "first sequence 1",
            with(&|pages| pages[0].sequence = Some(1)),
            |e| matches!(e, OggError::BadSequence { page: 0, .. }),
        ),
        ("no BOS", with(&|pages| pages[0].flags = 0), |e| {
            matches!(e, OggError::MissingBos)
        }),
        (
            "second BOS",
            with(&|pages| pages[1].flags = FLAG_BOS),
            |e| matches!(e, OggError::UnexpectedBos { page: 1 }),
        ),
        ("early EOS", with(&|pages| pages[1].flags = FLAG_EOS), |e| {
            matches!(e, OggError::PageAfterEos { page: 2 })
        }),
        ("no EOS", with(&|pages| pages[2].flags = 0), |e| {
            matches!(e, OggError::MissingEos)
        }),
        (
            "continued from nothing",
            with(&|pages| pages[2].flags |= FLAG_CONTINUED),
            |e| matches!(e, OggError::UnexpectedContinuation { page: 2 }),
        ),
        (
            "continuation not flagged",
            with(&|pages| {
                pages[2] = page(0, -1, &[]);
                pages[2].lacing = vec![255];
                pages[2].body = vec![CELT_20MS; 255];
                pages.push(page(FLAG_EOS, 960, &[&[1]]));
            }),
            |e| matches!(e, OggError::MissingContinuation { page: 3 }),
        ),
        (
            "ends mid-packet",
            with(&|pages| {
                pages[2].lacing.push(255);
                pages[2].body.extend([7; 255]);
            }),
            |e| matches!(e, OggError::UnfinishedPacket),
        ),
        (
            "head and tags on page 0",
            bytes(&[
                page(FLAG_BOS, 0, &[&head_packet(), &tags_packet()]),
                page(FLAG_EOS, 960, &[&audio]),
            ]),
            |e| matches!(e, OggError::HeadNotAlone),
        ),
        (
            "tags begin on page 0",
            with(&|pages| {
                // Page 0 ends with the first 255 bytes of the next packet.
                pages[0].lacing.push(255);
                pages[0].body.extend([b'x'; 255]);
                pages[1].flags = FLAG_CONTINUED;
            }),
            |e| matches!(e, OggError::HeadNotAlone),
        ),
        (
            "not OpusHead",
            with(&|pages| {
                pages[0] = page(
                    FLAG_BOS,
                    0,
                    &[b"OpusHeaD\x01\x01\x38\x01\x80\xbb\0\0\0\0\0"],
                )
            }),
            |e| matches!(e, OggError::BadHead { .. }),
        ),
        (
            "short OpusHead",
            with(&|pages| pages[0] = page(FLAG_BOS, 0, &[&head_packet()[..18]])),
            |e| matches!(e, OggError::BadHead { .. }),
        ),
        (
            "long OpusHead v1",
            with(&|pages| pages[0] = page(FLAG_BOS, 0, &[&head_with(|h| h.push(0))])),
            |e| matches!(e, OggError::BadHead { .. }),
        ),
        (
            "zero channels",
            with(&|pages| pages[0] = page(FLAG_BOS, 0, &[&head_with(|h| h[9] = 0)])),
            |e| matches!(e, OggError::BadHead { .. }),
        ),
        (
            "three channels",
            with(&|pages| pages[0] = page(FLAG_BOS, 0, &[&head_with(|h| h[9] = 3)])),
            |e| matches!(e, OggError::BadHead { .. }),
        ),
        (
            "OpusHead version 16",
            with(&|pages| pages[0] = page(FLAG_BOS, 0, &[&head_with(|h| h[8] = 16)])),
            |e| matches!(e, OggError::UnsupportedVersion { version: 16 }),
        ),
        (
            "OpusHead version 0",
            with(&|pages| pages[0] = page(FLAG_BOS, 0, &[&head_with(|h| h[8] = 0)])),
            |e| matches!(e, OggError::UnsupportedVersion { version: 0 }),
        ),
        (
            "mapping family 1",
            with(&|pages| pages[0] = page(FLAG_BOS, 0, &[&head_with(|h| h[18] = 1)])),
            |e| matches!(e, OggError::UnsupportedMapping { family: 1 }),
        ),
        ("head granule", with(&|pages| pages[0].granule = 5), |e| {
            matches!(
                e,
                OggError::HeaderGranule {
                    page: 0,
                    found: 5,
                    expected: 0
                }
            )
        }),
        ("tags granule", with(&|pages| pages[1].granule = -1), |e| {
            matches!(
                e,
                OggError::HeaderGranule {
                    page: 1,
                    found: -1,
                    expected: 0
                }
            )
        }),
        (
            "no tags",
            bytes(&[page(FLAG_BOS | FLAG_EOS, 0, &[&head_packet()])]),
            |e| matches!(e, OggError::MissingTags),
        ),
        (
            "audio on the tags page",
            with(&|pages| {
                let audio = audio_packet();
                pages[1] = page(0, 0, &[&tags_packet(), &audio]);
            }),
            |e| matches!(e, OggError::TagsPageNotFinished { page: 1 }),
        ),
        (
            "not OpusTags",
            with(&|pages| pages[1] = page(0, 0, &[b"OpusTagz\0\0\0\0\0\0\0\0"])),
            |e| matches!(e, OggError::BadTags { .. }),
        ),
        (
            "vendor overruns",
            with(&|pages| pages[1] = page(0, 0, &[b"OpusTags\x09\0\0\0abc\0\0\0\0"])),
            |e| matches!(e, OggError::BadTags { .. }),
        ),
        (
            "too many comments",
            with(&|pages| pages[1] = page(0, 0, &[b"OpusTags\0\0\0\0\xff\xff\xff\xff\0\0\0\0"])),
            |e| matches!(e, OggError::BadTags { .. }),
        ),
        (
            "comment without =",
            with(&|pages| pages[1] = page(0, 0, &[b"OpusTags\0\0\0\0\x01\0\0\0\x03\0\0\0abc"])),
            |e| matches!(e, OggError::BadTags { .. }),
        ),
        (
            "comment not UTF-8",
            with(&|pages| pages[1] = page(0, 0, &[b"OpusTags\0\0\0\0\x01\0\0\0\x03\0\0\0a=\xff"])),
            |e| matches!(e, OggError::BadTags { .. }),
        ),
        (
            "no audio",
            bytes(&[
                page(FLAG_BOS, 0, &[&head_packet()]),
                page(FLAG_EOS, 0, &[&tags_packet()]),
            ]),
            |e| matches!(e, OggError::NoAudio),
        ),
        (
            "empty audio packet",
            with(&|pages| pages[2] = page(FLAG_EOS, 960, &[&[]])),
            |e| matches!(e, OggError::InvalidPacket { packet: 0 }),
        ),
        (
            "audio without granule",
            bytes(&two_audio_pages(-1, 2880)),
            |e| matches!(e, OggError::MissingGranule { page: 2, found: -1 }),
        ),
        (
            "audio page starts before 0",
            bytes(&two_audio_pages(1919, 1919 + 960)),
            |e| {
                matches!(
                    e,
                    OggError::GranuleBeforeStart {
                        page: 2,
                        found: 1919,
                        samples: 1920
                    }
                )
            },
        ),
        (
            "last page adds too much",
            bytes(&two_audio_pages(1920, 2881)),
            |e| matches!(e, OggError::GranuleMismatch { page: 3, .. }),
        ),
        (
            "last page goes back",
            bytes(&two_audio_pages(1920, 1919)),
            |e| matches!(e, OggError::GranuleBackwards { page: 3, .. }),
        ),
        (
            "middle page adds too little",
            {
                let mut pages = two_audio_pages(1920, 3840);
                pages.insert(3, page(0, 2879, &[&audio]));
                bytes(&pages)
            },
            |e| matches!(e, OggError::GranuleMismatch { page: 3, found, expected } if *found == 2879 && *expected == 2880),
        ),
        (
            "trimmed below the pre-skip",
            with(&|pages| pages[2].granule = 100),
            |e| matches!(e, OggError::FinalGranuleBeforePreSkip { found: 100, .. }),
        ),
        (
            "granule on a page that completes nothing",
            with(&|pages| {
                pages[2] = page(0, 5, &[]);
                pages[2].lacing = vec![255];
                pages[2].body = vec![CELT_20MS; 255];
                pages.push(page(FLAG_EOS | FLAG_CONTINUED, 960, &[&[1]]));
            }),
            |e| matches!(e, OggError::GranuleWithoutPacket { page: 2, found: 5 }),
        ),
        (
            "empty last page",
            with(&|pages| {
                pages[2].flags = 0;
                pages.push(page(FLAG_EOS, -1, &[]));
            }),
            |e| matches!(e, OggError::EmptyLastPage { page: 3 }),
        ),
    ];
    for (name, file, check) in cases {
        match read(&file) {
            Ok(_) => panic!("{name}: accepted"),
            Err(error) => assert!(check(&error), "{name}: {error}"),
        }
    }
}
