//! Recording costs, printed as a table: the recorder's write cost per frame while ten speakers
//! talk at once, and export speed (× real time) for a one-hour recording, to Ogg Opus and WAV.
//!
//! `cargo bench -p earshot-node --bench recording [-- --minutes N]`
//!
//! The one-hour recording is real Opus: ten seconds of a speech-like signal per speaker,
//! encoded once with the live encoder and cycled (encoding an hour would measure the encoder,
//! not the recorder). Two speakers alternate turns of a few seconds, overlapping a little, as a
//! conversation does, so the export mixes for real.

use std::time::{Duration, Instant};

use earshot_node::audio::codec::VoiceEncoder;
use earshot_node::audio::signal::speechlike;
use earshot_node::recording::export;
use earshot_node::recording::store::{NewRecording, Recordings};
use earshot_node::store::Store;
use earshot_protocol::frame::{AudioFrame, SAMPLES_PER_FRAME, SpeakerId};
use earshot_protocol::{PeerKey, RoomId, Timestamp};

fn main() {
    let minutes: u64 = std::env::args()
        .skip_while(|a| a != "--minutes")
        .nth(1)
        .and_then(|m| m.parse().ok())
        .unwrap_or(60);
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path()).expect("store");
    let recordings = Recordings::open(&store).expect("recordings");

    // Ten seconds of encoded speech for each of ten speakers.
    let packets: Vec<Vec<(Vec<u8>, u8)>> = (0..10u64)
        .map(|speaker| {
            let mut encoder = VoiceEncoder::new().expect("encoder");
            speechlike(10 * 48_000, speaker + 1)
                .chunks_exact(960)
                .map(|chunk| {
                    let encoded = encoder.encode(chunk).expect("encode");
                    (encoded.payload, encoded.level)
                })
                .collect()
        })
        .collect();
    let frame = |speaker: usize, n: u32, start_media: u32| AudioFrame {
        speaker: SpeakerId(speaker as u32 + 1),
        seq: n,
        timestamp: start_media.wrapping_add(n * SAMPLES_PER_FRAME + speaker as u32 * 97),
        level: packets[speaker][n as usize % packets[speaker].len()].1,
        flags: 0,
        payload: packets[speaker][n as usize % packets[speaker].len()]
            .0
            .clone(),
        tag: None,
    };
    let new = |title: &str| NewRecording {
        room: RoomId([1; 16]),
        title: title.into(),
        host: PeerKey([7; 32]),
        recorder: PeerKey([7; 32]),
        started_at: Timestamp(1_800_000_000_000),
        start_media: 1_000_000,
        private: None,
    };

    // 1. Write cost: ten speakers at once, a minute of audio, fed at the live pace's order but
    // as fast as the recorder takes it (blocking only this bench's loop, never a real caller).
    let recorder = recordings.start(new("ten speakers")).expect("start");
    let tap = recorder.tap();
    let frames_per_speaker = 60 * 50;
    let cpu = cpu_time();
    let wall = Instant::now();
    for n in 0..frames_per_speaker {
        for speaker in 0..10 {
            let f = frame(speaker, n, 1_000_000);
            // The tap drops when the recorder's queue is full; pace to its speed here.
            while recorder.meta().frames + recorder.meta().dropped + 900
                < u64::from(n) * 10 + speaker as u64
            {
                std::thread::yield_now();
            }
            tap.record(&f);
        }
    }
    let meta = recorder
        .finish(Timestamp(1_800_000_060_000))
        .expect("finish");
    let wall = wall.elapsed();
    let cpu = cpu_time() - cpu;
    let written = meta.frames;

    // 2. One conversation of `minutes`: two speakers taking turns.
    let recorder = recordings.start(new("an hour")).expect("start");
    let tap = recorder.tap();
    let total = u32::try_from(minutes * 60 * 50).expect("fits");
    for n in 0..total {
        // Turns of 4 s, the next speaker starting half a second early.
        let turn = n / 200;
        let in_turn = n % 200;
        let speaker = (turn % 2) as usize;
        tap.record(&frame(speaker, n, 1_000_000));
        if in_turn >= 175 {
            tap.record(&frame(1 - speaker, n, 1_000_000));
        }
        while recorder.meta().frames + 800 < u64::from(n) {
            std::thread::yield_now();
        }
    }
    let hour = recorder
        .finish(Timestamp(1_800_003_600_000))
        .expect("finish");
    let audio = hour.duration();
    let mut rows = Vec::new();
    for (name, file) in [
        ("Ogg Opus (mixed)", "hour.opus"),
        ("WAV (mixed)", "hour.wav"),
    ] {
        let path = dir.path().join(file);
        let started = Instant::now();
        let out = export::export(&recordings, &hour, None, &path, None, |_| {}).expect("export");
        let took = started.elapsed();
        rows.push((name, took, out.bytes));
    }
    let path = dir.path().join("one.opus");
    let started = Instant::now();
    let out = export::export(&recordings, &hour, None, &path, Some(SpeakerId(1)), |_| {})
        .expect("export one");
    rows.push(("Ogg Opus (one speaker)", started.elapsed(), out.bytes));

    println!();
    println!("| measure | value | target |");
    println!("| --- | --- | --- |");
    println!(
        "| recorder: frames written (10 speakers, 60 s) | {written} of {} | all |",
        frames_per_speaker * 10
    );
    println!(
        "| recorder: CPU per frame (process, all threads) | {:.1} µs | |",
        cpu.as_secs_f64() * 1e6 / written.max(1) as f64
    );
    println!(
        "| recorder: wall time per frame | {:.1} µs ({:.0}× the live rate of 10 speakers) | |",
        wall.as_secs_f64() * 1e6 / written.max(1) as f64,
        60.0 / wall.as_secs_f64()
    );
    for (name, took, bytes) in rows {
        println!(
            "| export {name}: {:.0} min of audio | {:.1} s, {:.0}× real time, {:.1} MB | ≥ 100× |",
            audio.as_secs_f64() / 60.0,
            took.as_secs_f64(),
            audio.as_secs_f64() / took.as_secs_f64(),
            bytes as f64 / 1e6
        );
    }
}

/// This process's CPU time (user + system), from /proc.
fn cpu_time() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    // Fields after the command name: utime is the 12th, stime the 13th (0-based 11, 12).
    Duration::from_millis((ticks(11) + ticks(12)) * 10)
}
