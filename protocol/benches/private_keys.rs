//! What a private room's encryption costs, call by call (issue 14): sealing and opening audio
//! frames and control messages, and a fresh epoch sealed to 1,000 members.
//!
//! `cargo bench -p earshot-protocol --bench private_keys` (add `-- --quick` for fewer
//! repetitions). Prints one table: the median of many timed calls each (release build, one
//! thread, `Instant` around each call or batch; no criterion). Sizes are exact.
//!
//! - **Frames.** An 80-byte Opus payload (a 32 kbit/s voice, 50 frames a second) sealed by
//!   [`Epoch::seal_frame`] and opened by [`Ring::open_frame`], timed in batches of
//!   [`FRAME_BATCH`] (each call is about a microsecond; a batch's time over its size). A seal
//!   derives the speaker's key (HKDF-SHA256) and encrypts (ChaCha20-Poly1305), so both ends pay
//!   one key derivation per frame.
//! - **Control.** A 2 KB message (the size of a view with names) sealed by [`Epoch::seal`] and
//!   opened by [`Ring::open`].
//! - **A fresh rekey for 1,000 members.** [`Keys::fresh`] at the host (one X25519 and one
//!   HKDF + AEAD per member, a signature per part), the parts' sizes encoded, and at a member:
//!   checking one part ([`Keys::decode_verified`]) and opening it ([`Keys::open`]), for the
//!   first member of the first part and the last member of the last part. A member does not know
//!   which part holds it, so it checks and opens every part that comes (an open of a part that
//!   does not hold it still costs the X25519): its whole cost is in its own row.
//! - **The schedule.** [`Schedule::tick`] after one removal in a schedule of 1,000 members (the
//!   fresh epoch's choice and sealing, what the host's event loop does in one tick).

use std::hint::black_box;
use std::time::{Duration, Instant};

use chacha20poly1305::aead::{AeadInPlace, KeyInit};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use earshot_protocol::frame::{AudioFrame, HEADER_BYTES, SpeakerId};
use earshot_protocol::private::schedule::Schedule;
use earshot_protocol::private::{
    Epoch, FRAME_OVERHEAD, Keys, MAX_MEMBERS, Ring, SEALED_PER_PART, Secret,
};
use earshot_protocol::{PeerKey, RoomId, Timestamp};
use ed25519_dalek::SigningKey;

const ROOM: RoomId = RoomId([14; 16]);
/// A 32 kbit/s Opus frame.
const PAYLOAD_BYTES: usize = 80;
/// A view with names, sealed for members.
const CONTROL_BYTES: usize = 2_048;
/// Frames per timed batch.
const FRAME_BATCH: usize = 1_000;
/// 2026-11-01T10:00:00Z.
const NOW: Timestamp = Timestamp(1_793_527_200_000);

struct Args {
    quick: bool,
}

impl Args {
    fn parse() -> Self {
        Self {
            quick: std::env::args().any(|a| a == "--quick"),
        }
    }

    /// Repetitions of a timed measurement: `full`, or a fifth of it with `--quick`.
    fn reps(&self, full: usize) -> usize {
        if self.quick { (full / 5).max(3) } else { full }
    }
}

/// The key of member `i` (distinct, deterministic).
fn member_key(i: usize) -> SigningKey {
    let mut seed = [0u8; 32];
    seed[..8].copy_from_slice(&(i as u64 + 1).to_be_bytes());
    seed[31] = 0x5a;
    SigningKey::from_bytes(&seed)
}

fn host_key() -> SigningKey {
    SigningKey::from_bytes(&[0x11; 32])
}

/// Times `f` `reps` times; the median, each call's time divided by `per` (calls per batch).
fn median(reps: usize, per: usize, mut f: impl FnMut()) -> Duration {
    // One untimed call: caches and lazily built tables.
    f();
    let mut times: Vec<Duration> = (0..reps)
        .map(|_| {
            let start = Instant::now();
            f();
            start.elapsed() / u32::try_from(per).unwrap_or(u32::MAX)
        })
        .collect();
    times.sort();
    times[times.len() / 2]
}

fn frame(seq: u32) -> AudioFrame {
    AudioFrame {
        speaker: SpeakerId(0x1234_5678),
        seq,
        timestamp: seq.wrapping_mul(960),
        level: 40,
        flags: earshot_protocol::frame::flags::VOICE,
        // Opus bytes look random; the cost does not depend on them.
        payload: (0..PAYLOAD_BYTES).map(|i| (i * 37 + 11) as u8).collect(),
        tag: None,
    }
}

struct Table {
    rows: Vec<(String, String, String)>,
}

impl Table {
    fn row(&mut self, measure: &str, value: String, note: impl Into<String>) {
        self.rows.push((measure.to_owned(), value, note.into()));
    }

    fn print(&self) {
        let width = self
            .rows
            .iter()
            .map(|r| r.0.chars().count())
            .max()
            .unwrap_or(0);
        let value_width = self
            .rows
            .iter()
            .map(|r| r.1.chars().count())
            .max()
            .unwrap_or(0);
        println!(
            "| {:<width$} | {:>value_width$} | note |",
            "measure", "result"
        );
        println!(
            "|{:-<w$}|{:-<v$}|------|",
            "",
            "",
            w = width + 2,
            v = value_width + 2
        );
        for (measure, value, note) in &self.rows {
            println!("| {measure:<width$} | {value:>value_width$} | {note} |");
        }
    }
}

fn us(d: Duration) -> String {
    format!("{:.2} µs", d.as_secs_f64() * 1e6)
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

fn main() {
    let args = Args::parse();
    let started = Instant::now();
    let mut table = Table { rows: Vec::new() };
    let epoch = Epoch::new(3, Secret::from_bytes([7; 32]));
    let mut ring = Ring::default();
    ring.insert(epoch.clone());

    // ---- Frames.
    let plain: Vec<AudioFrame> = (0..FRAME_BATCH as u32).map(frame).collect();
    let mut sealed = plain.clone();
    for frame in &mut sealed {
        epoch.seal_frame(frame).expect("seal");
    }
    let seal = median(args.reps(200), FRAME_BATCH, || {
        for frame in &plain {
            let mut frame = frame.clone();
            epoch.seal_frame(&mut frame).expect("seal");
            black_box(frame);
        }
    });
    let clone_only = median(args.reps(200), FRAME_BATCH, || {
        for frame in &plain {
            black_box(frame.clone());
        }
    });
    let open = median(args.reps(200), FRAME_BATCH, || {
        for frame in &sealed {
            black_box(ring.open_frame(frame).expect("open"));
        }
    });
    assert_eq!(ring.open_frame(&sealed[0]).expect("open"), plain[0]);
    let (plain_bytes, sealed_bytes) = (plain[0].encode().len(), sealed[0].encode().len());
    let added = sealed_bytes - plain_bytes;
    assert_eq!(added, FRAME_OVERHEAD);
    table.row(
        "seal_frame, 80-byte Opus payload",
        us(seal.saturating_sub(clone_only)),
        format!(
            "median of {} batches of {FRAME_BATCH} (the frame's clone, {}, taken off)",
            args.reps(200),
            us(clone_only)
        ),
    );
    // The cipher alone, its key set up once: what a seal would cost with the speaker's key kept
    // for the epoch rather than derived per frame.
    let cipher = ChaCha20Poly1305::new(Key::from_slice(&[3; 32]));
    let cipher_only = median(args.reps(200), FRAME_BATCH, || {
        for frame in &plain {
            let mut body = frame.payload.clone();
            let nonce = [frame.seq as u8; 12];
            black_box(
                cipher
                    .encrypt_in_place_detached(Nonce::from_slice(&nonce), &[0; 15], &mut body)
                    .expect("encrypt"),
            );
        }
    });
    table.row(
        "  of which the cipher (ChaCha20-Poly1305, 80 B)",
        us(cipher_only),
        "the rest is deriving the speaker's key (HKDF-SHA256), once per frame at both ends",
    );
    table.row(
        "open_frame, 80-byte Opus payload",
        us(open),
        format!("median of {} batches of {FRAME_BATCH}", args.reps(200)),
    );
    table.row(
        "  both, per second of one voice (50 fps)",
        format!(
            "{:.0} µs",
            (seal.saturating_sub(clone_only) + open).as_secs_f64() * 1e6 * 50.0
        ),
        "CPU per second: the speaker seals, each listener opens (relays do neither)",
    );
    table.row(
        "bytes added per frame",
        format!("{added} B"),
        format!(
            "the epoch's low byte and the 16-byte tag; the encoded frame {plain_bytes} → {sealed_bytes} B"
        ),
    );
    table.row(
        "  as % of payload + frame header",
        format!(
            "{:.1} %",
            100.0 * added as f64 / (PAYLOAD_BYTES + HEADER_BYTES) as f64
        ),
        format!(
            "of {PAYLOAD_BYTES} + {HEADER_BYTES} B ({:.1} % of the whole encoded frame, {:.0} bit/s at 50 fps)",
            100.0 * added as f64 / plain_bytes as f64,
            added as f64 * 8.0 * 50.0
        ),
    );

    // ---- Control messages.
    let message: Vec<u8> = (0..CONTROL_BYTES).map(|i| (i * 13 + 5) as u8).collect();
    let sealed_message = epoch.seal(&ROOM, &message, [9; 12]);
    assert_eq!(ring.open(&ROOM, &sealed_message).expect("open"), message);
    let control_seal = median(args.reps(2_000), 1, || {
        black_box(epoch.seal(&ROOM, black_box(&message), [9; 12]));
    });
    let control_open = median(args.reps(2_000), 1, || {
        black_box(ring.open(&ROOM, black_box(&sealed_message)).expect("open"));
    });
    table.row(
        "control seal, 2 KB",
        us(control_seal),
        format!(
            "{CONTROL_BYTES} → {} B sealed (+{} B); median of {}",
            sealed_message.len(),
            sealed_message.len() - CONTROL_BYTES,
            args.reps(2_000)
        ),
    );
    table.row(
        "control open, 2 KB",
        us(control_open),
        format!("median of {}", args.reps(2_000)),
    );

    // ---- A fresh epoch for 1,000 members.
    let host = host_key();
    let keys: Vec<SigningKey> = (0..MAX_MEMBERS).map(member_key).collect();
    let members: Vec<PeerKey> = keys.iter().map(PeerKey::from).collect();
    let topic = Secret::from_bytes([5; 32]);
    let fresh_epoch = Epoch::new(4, Secret::from_bytes([8; 32]));
    let fresh = || Keys::fresh(ROOM, &fresh_epoch, &topic, &members, [21; 32], &host);
    let parts = fresh();
    let encoded: Vec<Vec<u8>> = parts.iter().map(Keys::encode).collect();
    let total: usize = encoded.iter().map(Vec::len).sum();
    let largest = encoded.iter().map(Vec::len).max().unwrap_or(0);
    let fresh_time = median(args.reps(15), 1, || {
        black_box(fresh());
    });
    table.row(
        "Keys::fresh, 1,000 members (host)",
        ms(fresh_time),
        format!(
            "{:.1} µs a member; median of {}",
            fresh_time.as_secs_f64() * 1e6 / MAX_MEMBERS as f64,
            args.reps(15)
        ),
    );
    table.row(
        "  parts, bytes",
        format!("{} parts, {total} B", parts.len()),
        format!(
            "encoded, signed; {SEALED_PER_PART} members a part, the largest {largest} B, {:.1} B a member",
            total as f64 / MAX_MEMBERS as f64
        ),
    );

    let host_public = PeerKey::from(&host);
    let verify = median(args.reps(500), 1, || {
        black_box(Keys::decode_verified(black_box(&encoded[0]), ROOM, &host_public).expect("keys"));
    });
    table.row(
        "  a member checks a part (decode_verified)",
        us(verify),
        format!(
            "a full part of {SEALED_PER_PART}; median of {}",
            args.reps(500)
        ),
    );
    let first = &keys[0];
    let last = &keys[MAX_MEMBERS - 1];
    let (first_part, last_part) = (&parts[0], &parts[parts.len() - 1]);
    assert_eq!(
        first_part.open(first).map(|(e, _)| e),
        Some(fresh_epoch.clone())
    );
    assert_eq!(
        last_part.open(last).map(|(e, _)| e),
        Some(fresh_epoch.clone())
    );
    assert!(first_part.open(last).is_none());
    let open_first = median(args.reps(500), 1, || {
        black_box(first_part.open(black_box(first)));
    });
    let open_last = median(args.reps(500), 1, || {
        black_box(last_part.open(black_box(last)));
    });
    let open_miss = median(args.reps(500), 1, || {
        black_box(first_part.open(black_box(last)));
    });
    table.row(
        "  Keys::open, first member (part 1, entry 1)",
        us(open_first),
        format!("median of {}", args.reps(500)),
    );
    table.row(
        "  Keys::open, last member (last part, last entry)",
        us(open_last),
        format!("median of {}", args.reps(500)),
    );
    table.row(
        "  Keys::open of a part not holding it",
        us(open_miss),
        "the X25519 is paid before the entries are looked at",
    );
    // The worst member, as the node does it: every part checked and opened as it comes, its own
    // last.
    let worst = median(args.reps(100), 1, || {
        let mut found = None;
        for bytes in &encoded {
            let part = Keys::decode_verified(bytes, ROOM, &host_public).expect("keys");
            if let Some(opened) = part.open(last) {
                found = Some(opened);
            }
        }
        black_box(found.expect("the last member's entry"));
    });
    table.row(
        "  the last member, all parts checked and opened",
        us(worst),
        format!(
            "{} × (decode_verified + open); median of {}",
            parts.len(),
            args.reps(100)
        ),
    );

    // ---- The host's schedule: a removal in a room of 1,000, then its tick.
    let mut schedule = Schedule::new(ROOM, Secret::from_bytes([1; 32]), topic.clone(), NOW);
    for (i, member) in members.iter().enumerate() {
        let mut ephemeral = [0u8; 32];
        ephemeral[..8].copy_from_slice(&(i as u64).to_be_bytes());
        schedule
            .admit(*member, (None, None), ephemeral, &host)
            .expect("room for 1,000");
    }
    // The joins' ratchet, so that the schedule is at rest.
    let mut now = NOW.plus_millis(2_000);
    schedule.tick(now, [2; 32], [3; 32], &host);
    let reps = args.reps(15);
    let mut ticks = Vec::with_capacity(reps);
    let mut stepped_parts = 0;
    for i in 0..reps {
        // Out, then back in (its admission seals to it alone; untimed), so the room stays at 1,000.
        let out = members[(i * 97) % MAX_MEMBERS];
        schedule.remove(&out);
        now = now.plus_millis(2_000);
        let start = Instant::now();
        let steps = schedule.tick(now, [i as u8; 32], [i as u8 ^ 0xff; 32], &host);
        ticks.push(start.elapsed());
        stepped_parts = steps.len();
        assert_eq!(
            schedule.fresh_epoch(),
            schedule.current().n,
            "a fresh epoch"
        );
        schedule
            .admit(out, (None, None), [i as u8; 32], &host)
            .expect("back in");
        now = now.plus_millis(2_000);
        schedule.tick(now, [0; 32], [0; 32], &host);
    }
    ticks.sort();
    table.row(
        "Schedule::tick after a removal, 1,000 members",
        ms(ticks[ticks.len() / 2]),
        format!(
            "999 members sealed, {stepped_parts} parts; median of {reps} (max {})",
            ms(ticks[ticks.len() - 1])
        ),
    );

    println!();
    println!(
        "Private rooms: encryption costs per call (release build, one thread, median; {:.0} s)",
        started.elapsed().as_secs_f64()
    );
    println!();
    table.print();
}
