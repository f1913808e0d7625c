//! How good Earshot sounds next to the codec alone (issue 16, "Sound as good as the codec"):
//! PESQ wideband scores (ITU-T P.862.2, MOS-LQO, 1.0 … 4.64) of real speech, from Opus straight
//! through to a listener three hops down a relay tree, and a recording's export.
//!
//! `cargo bench -p earshot-node --bench audio_quality` (about 55 s once built, most of it the
//! speech played in real time through a live room; `-- --keep` keeps the WAV files and says
//! where). Prints one table. Needs `espeak-ng` for the speech, and python3 with numpy and the
//! `pesq` module (`python3 -m pip install --user pesq`) to score it; without either it says what
//! is missing and exits 0.
//!
//! **The input**: Harvard sentences (IEEE 1969, the usual test sentences for speech quality)
//! said by espeak-ng in two voices, A (male) and B (female), each about 9 s at an active speech
//! level of [`SPEECH_LEVEL_DBFS`], in one file with [`PAD`] of silence around each: A, A again,
//! then B. Each stretch (with half a pad either side) is scored on its own. The first A is heard
//! **just after joining**: a listener's jitter buffer starts cautiously and then shortens its
//! delay by skipping a frame, and that skip may land on speech; the second A and B are the
//! **steady state**, and their mean is what the target compares. PESQ depends on the talker
//! (the codec alone scored from 3.7 to 4.2 across five espeak-ng voices), hence two.
//!
//! **The cases**, every one fed the same file:
//! 1. **libopus alone**, the `opus` crate straight, 32 kbit/s VoIP VBR with DTX, every packet
//!    decoded: in-band FEC off (the reference: the codec alone), and in-band FEC on planned for
//!    10 % loss (Earshot's earlier live setting).
//! 2. **Earshot's codec alone**: `VoiceEncoder::new()` and `VoiceDecoder`, as they are now.
//! 3. **End to end**: real nodes in this process on 127.0.0.1 (QUIC), a chain host → L1 → L2 →
//!    L3 (one child each). The host speaks the file through its `AudioSession` (its voice held
//!    back until the chain stands, then started from the file's first sample); each listener's
//!    player writes what it plays into a WAV file.
//! 4. **Export**: the host records the room meanwhile (what the room hears, as `/record` does),
//!    exports the recording to Ogg Opus, and the file is decoded back as a player would. One more
//!    row says what an export loses where it encodes anew (voices at once, concealed frames; a
//!    lone speaker's packets are kept as said): the codec alone's output re-encoded by
//!    `VoiceEncoder::for_files()` (Audio, 48 kbit/s, complexity 10).
//!
//! **Scoring**: the input and every output go 48 → 16 kHz through Earshot's resampler (windowed
//! sinc, band-limited before decimating); `scripts/pesq.py` lines each output up with the input
//! (cross-correlation over the whole file, then again within 0.3 s for each stretch), cuts each
//! stretch to the input's and runs PESQ-WB, which also aligns each utterance itself.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use earshot_node::audio::codec::{VoiceDecoder, VoiceEncoder};
use earshot_node::audio::io::{Input, Output, PlayerStatus};
use earshot_node::audio::{FRAME_SAMPLES, SAMPLE_RATE, media_now, wav};
use earshot_node::identity::Identity;
use earshot_node::net::NetConfig;
use earshot_node::node::{Node, NodeConfig, RoomView};
use earshot_node::recording::store::{NewRecording, RecordingMeta, Recordings};
use earshot_node::recording::{export, ogg};
use earshot_node::session::AudioSession;
use earshot_node::store::Store;
use earshot_protocol::loudest::DEFAULT_FORWARDED;
use earshot_protocol::replay::ContentRecord;
use earshot_protocol::room::RoomSpec;
use earshot_protocol::{
    Audience, Capability, ControlBody, Grant, InviteLink, RecordingId, RecordingPolicy, Role,
    RoomDescriptor, RoomId, Timestamp, Visibility,
};
use tokio::time::MissedTickBehavior;

mod speech;
use speech::{SPEECH_LEVEL_DBFS, Scorer, TALKERS, say, silence};

/// Silence around each stretch of speech: PESQ wants some on both sides of what it scores, and
/// the listeners' jitter buffers start on the first.
const PAD: Duration = Duration::from_secs(1);
/// The live encoder's bitrate, which the libopus cases use too.
const BITRATE: i32 = 32_000;
/// The loss the old live setting planned its in-band FEC for, in percent.
const OLD_EXPECTED_LOSS: i32 = 10;
/// The listeners, one below the other.
const DEPTHS: u16 = 3;
/// Issue 16's target: the deepest listener keeps this share of the codec alone's score.
const TARGET_SHARE: f64 = 0.97;
/// How often counters and statuses are polled.
const POLL: Duration = Duration::from_millis(5);
/// The longest any single wait may take before the bench gives up.
const WAIT: Duration = Duration::from_secs(10);
/// Slots a listener plays past the input's end before its file is finished (its mouth-to-ear
/// delay is about 50 ms, and [`PAD`] of silence ends the input anyway).
const PLAYED_PAST_END: u64 = 10;

/// The delivery column of the cases without a network.
const NO_NETWORK: &str = "no network";

fn main() {
    let started = Instant::now();
    let dir = tempfile::tempdir().expect("temporary directory");
    let ready = Program::speak(dir.path()).and_then(|program| {
        let stretches = program.stretches.iter().map(|(_, range)| range.clone());
        Scorer::new(dir.path(), &program.samples, stretches)
            .map(|scorer| (program, scorer))
            .map_err(|missing| format!("{missing}; then run the bench again"))
    });
    let (program, scorer) = match ready {
        Ok(ready) => ready,
        Err(missing) => {
            eprintln!("audio_quality: {missing}; nothing measured");
            return;
        }
    };
    let input = &program.samples;
    let mut table = Table {
        scorer,
        dir: dir.path().to_owned(),
        rows: Vec::new(),
    };
    eprintln!("the codec alone");
    let codec = libopus(input, voip(None));
    table.row("libopus, FEC off (the codec alone)", &codec, NO_NETWORK);
    let fec = libopus(input, voip(Some(OLD_EXPECTED_LOSS)));
    table.row("libopus, FEC on for 10 % loss", &fec, NO_NETWORK);
    let live = earshot(input, VoiceEncoder::new().expect("encoder"));
    table.row("Earshot codec (VoiceEncoder::new)", &live, NO_NETWORK);

    eprintln!("a live room: host → L1 → L2 → L3 on 127.0.0.1, recorded at the host");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let room = runtime.block_on(live_room(&program.path, input.len(), dir.path()));
    runtime.shutdown_background();
    for (depth, heard, p) in &room.listeners {
        let delivery = format!(
            "{} / {} frames; {} recovered (FEC), {} concealed, {} late, {} skipped",
            p.received, p.expected, p.recovered, p.concealed, p.late, p.skipped
        );
        let case = format!("Earshot end to end, listener at depth {depth}");
        table.row(&case, heard, &delivery);
    }
    let (export, meta, kept) = &room.export;
    let delivery = format!(
        "{} frames recorded ({} dropped), {kept} packets kept as said, {:.1} s",
        meta.frames,
        meta.dropped,
        export.len() as f64 / f64::from(SAMPLE_RATE)
    );
    table.row("Earshot recording exported to Ogg Opus", export, &delivery);
    let (studio, from_studio) = &room.studio;
    let delivery = format!("{from_studio} frames from the studio track (64 kbit/s)");
    table.row(
        "Earshot recording with the host's studio track (--studio), exported",
        studio,
        &delivery,
    );
    // What an export loses where it encodes anew (the room's audio decoded, mixed, encoded).
    let files = earshot(&codec, VoiceEncoder::for_files().expect("file encoder"));
    table.row("  codec alone re-encoded: for_files()", &files, NO_NETWORK);
    table.print(&program, started.elapsed());
    if std::env::args().any(|arg| arg == "--keep") {
        println!("\nFiles kept in {}", dir.keep().display());
    }
}

// ---------------------------------------------------------------------------------------------
// The input

/// The file the host says: speech with silence around, and the stretches that are scored.
#[derive(Debug)]
struct Program {
    path: PathBuf,
    /// The file's samples at 48 kHz, as the host's source reads them (16-bit).
    samples: Vec<f32>,
    /// What each stretch is, and where it is in `samples` (its speech and half a pad either
    /// side).
    stretches: Vec<(String, std::ops::Range<usize>)>,
}

impl Program {
    /// A, A again, B, said by espeak-ng into `dir/input.wav`; or why not.
    fn speak(dir: &Path) -> Result<Self, String> {
        let pad = silence(PAD).len();
        let mut samples = silence(PAD);
        let mut stretches = Vec::new();
        let [a, b] = TALKERS;
        for (talker, when) in [(a, ", just joined"), (a, ""), (b, "")] {
            let speech = say(dir, talker)?;
            let from = samples.len() - pad / 2;
            samples.extend(speech);
            stretches.push((
                format!("{} ({}){when}", talker.name, talker.sex),
                from..samples.len() + pad / 2,
            ));
            samples.extend(silence(PAD));
        }
        let path = dir.join("input.wav");
        wav::write(&path, &samples).expect("write the input");
        Ok(Self {
            samples: wav::read(&path).expect("read the input back"),
            path,
            stretches,
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Scoring

/// One case's scores, a stretch each, and how its output was lined up with the input.
#[derive(Debug, Clone)]
struct Score {
    mos: Vec<f64>,
    alignment: Vec<String>,
}

impl Score {
    /// The mean of the steady state's stretches (all but the first, just after joining).
    fn steady(&self) -> f64 {
        let steady = self.mos.get(1..).unwrap_or_default();
        steady.iter().sum::<f64>() / steady.len().max(1) as f64
    }
}

// ---------------------------------------------------------------------------------------------
// The codec alone

/// How a libopus case sets its encoder (the `opus` crate straight; VBR, complexity left alone
/// unless given).
#[derive(Debug, Clone, Copy)]
struct Opus {
    application: opus::Application,
    bitrate: i32,
    dtx: bool,
    /// In-band FEC planned for this loss (percent), or none.
    fec_loss: Option<i32>,
    complexity: Option<i32>,
}

/// The live settings: 32 kbit/s VoIP with DTX, and in-band FEC planned for `fec_loss`.
fn voip(fec_loss: Option<i32>) -> Opus {
    Opus {
        application: opus::Application::Voip,
        bitrate: BITRATE,
        dtx: true,
        fec_loss,
        complexity: None,
    }
}

/// `input` through libopus set as `settings`, every packet decoded.
fn libopus(input: &[f32], settings: Opus) -> Vec<f32> {
    let mut encoder = opus::Encoder::new(SAMPLE_RATE, opus::Channels::Mono, settings.application)
        .expect("opus encoder");
    encoder
        .set_bitrate(opus::Bitrate::Bits(settings.bitrate))
        .expect("bitrate");
    encoder.set_vbr(true).expect("vbr");
    encoder.set_dtx(settings.dtx).expect("dtx");
    encoder
        .set_inband_fec(settings.fec_loss.is_some())
        .expect("in-band fec");
    encoder
        .set_packet_loss_perc(settings.fec_loss.unwrap_or(0))
        .expect("expected loss");
    if let Some(complexity) = settings.complexity {
        encoder.set_complexity(complexity).expect("complexity");
    }
    let mut decoder = opus::Decoder::new(SAMPLE_RATE, opus::Channels::Mono).expect("decoder");
    let mut output = Vec::with_capacity(input.len());
    for chunk in input.chunks_exact(FRAME_SAMPLES) {
        let packet = encoder.encode_vec_float(chunk, 1275).expect("encode");
        let mut frame = vec![0.0; FRAME_SAMPLES];
        let n = decoder
            .decode_float(&packet, &mut frame, false)
            .expect("decode");
        output.extend(&frame[..n]);
    }
    output
}

/// `input` through one of Earshot's encoders and its decoder.
fn earshot(input: &[f32], mut encoder: VoiceEncoder) -> Vec<f32> {
    let mut decoder = VoiceDecoder::new().expect("decoder");
    let mut output = Vec::with_capacity(input.len());
    for chunk in input.chunks_exact(FRAME_SAMPLES) {
        let encoded = encoder.encode(chunk).expect("encode");
        output.extend(decoder.decode(&encoded.payload).expect("decode"));
    }
    output
}

// ---------------------------------------------------------------------------------------------
// The live room

/// What a live room gave.
#[derive(Debug)]
struct LiveRoom {
    /// Each listener's depth, what it played, and its player's status once the input was over.
    listeners: Vec<(u16, Vec<f32>, PlayerStatus)>,
    /// The host's recording, exported and decoded back; the packets the export kept as said.
    export: (Vec<f32>, RecordingMeta, u64),
    /// The same with the host's studio track, and the frames taken from it.
    studio: (Vec<f32>, u64),
}

/// Runs the chain host → L1 → L2 → L3 with the host speaking `input` (`samples` long), recording
/// the room at the host; files go into `dir`.
async fn live_room(input: &Path, samples: usize, dir: &Path) -> LiveRoom {
    let identity = Identity::ephemeral().expect("identity");
    let signing = identity.signing_key().clone();
    let host = spawn_node(identity).await;
    let relay = host.fanout().clone();
    let (id, link) = open_room(&host, &signing).await;
    let mut audio = AudioSession::host(
        &host,
        &relay,
        id,
        Input::Wav(input.to_owned()),
        Output::Null,
        DEFAULT_FORWARDED,
        true,
    )
    .expect("host audio");
    // Held back until the chain stands (at most a frame or two of the leading silence went,
    // to nobody); going on stage again starts the file from its first sample.
    audio
        .set_on_stage(false)
        .await
        .expect("the host stops speaking");

    let mut chain = Vec::new();
    for depth in 1..=DEPTHS {
        let node = spawn_node(Identity::ephemeral().expect("identity")).await;
        let view = node
            .join(link.clone(), &format!("l{depth}"))
            .await
            .expect("a listener joins");
        let output = dir.join(format!("depth-{depth}.wav"));
        let session = listen(&node, &view, Output::Wav(output.clone()));
        // Everyone's place is one child (a chain) whatever the order of the host's answers.
        poll_for("the chain's shape", WAIT, || {
            let position = session.status().position;
            position.map(|p| assert_eq!(p.depth, depth, "a chain, one child each"))
        })
        .await;
        chain.push((depth, node, session, output));
    }

    let store = Store::open(&dir.join("host-store")).expect("the host's store");
    let recordings = Recordings::open(&store).expect("recordings");
    let recorder = recordings
        .start(NewRecording {
            room: id,
            title: "Audio quality".into(),
            host: host.key(),
            recorder: host.key(),
            started_at: earshot_node::clock::now(),
            start_media: media_now(),
            private: None,
        })
        .expect("start recording");
    audio.record(Some(recorder.tap()));
    // The host keeps a studio track too (`--studio`): its voice before the network.
    audio.set_recorded(true);
    audio
        .set_on_stage(true)
        .await
        .expect("the host speaks the file");

    // Each player's slots start on its first frame, the file's first: once a player has played
    // the file's length and a little more, it has played all of it.
    let slots = (samples / FRAME_SAMPLES) as u64 + PLAYED_PAST_END;
    let audible = Duration::from_secs_f64(samples as f64 / f64::from(SAMPLE_RATE));
    let mut statuses = Vec::new();
    for (depth, _, session, _) in &chain {
        let status = poll_for(
            &format!("depth {depth} playing the file"),
            audible + WAIT,
            || {
                let playback = session.status().playback;
                (playback.chunks_played >= slots).then_some(playback)
            },
        )
        .await;
        statuses.push(status);
    }
    audio.set_recorded(false);
    audio.flush_studio().await;
    audio.record(None);
    let meta = recorder
        .finish(earshot_node::clock::now())
        .expect("finish recording");

    // Deepest first, so that nobody waits to hand children over.
    let mut listeners = Vec::new();
    for ((depth, node, session, output), status) in chain.into_iter().zip(statuses).rev() {
        session.finish().await.expect("finish a listener's audio");
        node.shutdown().await;
        let heard = wav::read(&output).expect("read a listener's output");
        listeners.push((depth, heard, status));
    }
    listeners.reverse();
    drop(audio);
    let _ = host.act(id, ControlBody::RoomEnded).await;
    host.shutdown().await;

    // The recording as the room heard it (its studio track left out, as a copy), and with it.
    let mut live_only = meta.clone();
    live_only.id = RecordingId([0x5a; 16]);
    let records = recordings
        .records(&meta.id)
        .filter(|record| !matches!(record, Ok(ContentRecord::Studio(_))))
        .collect::<Result<Vec<_>, _>>()
        .expect("the recording's records");
    recordings
        .import(&live_only, records)
        .expect("a copy without the studio track");
    let export_of = |meta: &RecordingMeta, name: &str| {
        let path = dir.join(name);
        let exported = export::export(&recordings, meta, None, &path, None, |_| {})
            .expect("export to Ogg Opus");
        let file = ogg::read(&std::fs::read(&path).expect("read the export"))
            .expect("the export is valid Ogg Opus");
        (decode_opus(&file), exported)
    };
    let (live, exported) = export_of(&live_only, "room.opus");
    let (studio, with_studio) = export_of(&meta, "studio.opus");
    LiveRoom {
        listeners,
        export: (live, meta, exported.kept),
        studio: (studio, with_studio.from_studio),
    }
}

/// Decodes an Ogg Opus file as a player would: every packet, minus the pre-skip, trimmed to the
/// final granule (as `tests/recordings.rs` does).
fn decode_opus(file: &ogg::OggOpusFile) -> Vec<f32> {
    let mut decoder = VoiceDecoder::new().expect("decoder");
    let mut out = Vec::new();
    for packet in &file.packets {
        out.extend(decoder.decode(packet).expect("a decodable packet"));
    }
    let skip = usize::from(file.head.pre_skip);
    let end = usize::try_from(file.final_granule).map_or(out.len(), |end| end.min(out.len()));
    out.get(skip..end).map(<[f32]>::to_vec).unwrap_or_default()
}

async fn spawn_node(identity: Identity) -> Node {
    Node::spawn(
        identity,
        NodeConfig {
            listen: vec!["/ip4/127.0.0.1/udp/0/quic-v1".parse().expect("multiaddr")],
            bootstrap: Vec::new(),
            net: NetConfig::default(),
            // One child each: the host and the listeners make a chain.
            max_children: 1,
            upload_kbps: None,
            relays: Vec::new(),
            reachability: Default::default(),
            tree_by_hand: false,
            misbehave: None,
            capture: None,
            unchecked_audio: false,
        },
    )
    .await
    .expect("node")
}

/// Hosts a new room on `host`: its id and a listener link.
async fn open_room(host: &Node, signing: &ed25519_dalek::SigningKey) -> (RoomId, InviteLink) {
    let now = earshot_node::clock::now();
    let mut id = [0u8; 16];
    getrandom::fill(&mut id).expect("random room id");
    let descriptor = RoomDescriptor::sign(
        signing,
        RoomSpec {
            id: RoomId(id),
            title: "Audio quality".into(),
            visibility: Visibility::Unlisted,
            recording: RecordingPolicy::default(),
            created_at: now,
            addrs: host.listen_addrs().await.expect("listen addresses"),
            limits: earshot_protocol::RoomLimits::default(),
        },
    )
    .expect("descriptor");
    host.host(descriptor.clone(), "host")
        .await
        .expect("host the room");
    let mut nonce = [0u8; 8];
    getrandom::fill(&mut nonce).expect("random nonce");
    let grant = Grant {
        audience: Audience::Bearer,
        role: Role::Listener,
        not_before: Timestamp(now.as_millis() - 60_000),
        expires_at: now.plus_millis(3_600_000),
        depth: 0,
    };
    let link = InviteLink {
        starts_at: None,
        capability: Capability::issue(signing, descriptor.id, grant, nonce).expect("capability"),
        host: descriptor.host,
        bootstrap: descriptor.addrs(),
    };
    (descriptor.id, link)
}

/// A joined listener's audio, as the CLI starts it.
fn listen(node: &Node, view: &RoomView, output: Output) -> AudioSession {
    let relay = node.fanout().clone();
    let host = view.descriptor.host.to_peer_id().expect("host key");
    AudioSession::member(
        node,
        &relay,
        view.descriptor.id,
        host,
        Input::Silence,
        output,
    )
    .expect("listener audio")
}

/// Calls `probe` every [`POLL`] until it answers; panics naming `what` after `wait`.
async fn poll_for<T>(what: &str, wait: Duration, mut probe: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + wait;
    let mut tick = tokio::time::interval(POLL);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if let Some(value) = probe() {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {wait:?} waiting for {what}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// The table

#[derive(Debug)]
struct Row {
    case: String,
    score: Score,
    delivery: String,
}

/// The cases scored, the codec alone first.
#[derive(Debug)]
struct Table {
    scorer: Scorer,
    /// Where the outputs are kept (at 48 kHz, for `--keep`).
    dir: PathBuf,
    rows: Vec<Row>,
}

impl Table {
    /// Scores `output` as `case`.
    fn row(&mut self, case: &str, output: &[f32], delivery: &str) {
        let words: Vec<&str> = (case.split(|c: char| !c.is_ascii_alphanumeric()))
            .filter(|word| !word.is_empty())
            .collect();
        let name = words.join("-");
        wav::write(&self.dir.join(format!("{name}-48k.wav")), output).expect("write an output");
        let (mos, alignment) = self.scorer.score(&name, output);
        let score = Score { mos, alignment };
        eprintln!("  {}: PESQ-WB {:.3?}", case.trim(), score.mos);
        self.rows.push(Row {
            case: case.to_owned(),
            score,
            delivery: delivery.to_owned(),
        });
    }

    fn print(&self, program: &Program, took: Duration) {
        let talk = |r: &std::ops::Range<usize>| {
            (r.len() - silence(PAD).len()) as f64 / f64::from(SAMPLE_RATE)
        };
        let stretches: Vec<String> = (program.stretches.iter())
            .map(|(what, range)| format!("{what} {:.1} s", talk(range)))
            .collect();
        println!(
            "\nPESQ-WB (P.862.2, MOS-LQO) of espeak-ng speech at {SPEECH_LEVEL_DBFS} dBFS ({}); \
             Opus {} kbit/s; live room on 127.0.0.1 (QUIC); {:.0} s in all\n",
            stretches.join(", "),
            BITRATE / 1000,
            took.as_secs_f64()
        );
        let mut header = vec!["case".to_owned()];
        header.extend(program.stretches.iter().map(|(what, _)| what.clone()));
        header.extend(["mean A, B", "÷ codec", "delivery (frames heard / sent)"].map(String::from));
        // Markdown: text to the left, numbers to the right.
        let last = header.len() - 1;
        let text = |i: usize| i == 0 || i == last;
        let widths: Vec<usize> = (header.iter().enumerate())
            .map(|(i, h)| [40, h.chars().count(), 72][usize::from(i > 0) + usize::from(i == last)])
            .collect();
        let line = |cells: &[String]| {
            let cells = cells.iter().zip(&widths).enumerate();
            let cells = cells.map(|(i, (c, &w))| match text(i) {
                true => format!(" {c:<w$} "),
                false => format!(" {c:>w$} "),
            });
            format!("|{}|", cells.collect::<Vec<_>>().join("|"))
        };
        println!("{}", line(&header));
        let rule = widths.iter().enumerate().map(|(i, &w)| match text(i) {
            true => format!(":{}", "-".repeat(w + 1)),
            false => format!("{}:", "-".repeat(w + 1)),
        });
        println!("|{}|", rule.collect::<Vec<_>>().join("|"));
        let codec = self.rows.first().map(|row| row.score.clone());
        for row in &self.rows {
            let mut cells = vec![row.case.clone()];
            cells.extend(row.score.mos.iter().map(|mos| format!("{mos:.2}")));
            let share = codec
                .as_ref()
                .map_or(f64::NAN, |c| row.score.steady() / c.steady());
            cells.extend([format!("{:.2}", row.score.steady()), format!("{share:.3}")]);
            cells.push(row.delivery.clone());
            println!("{}", line(&cells));
        }
        let deepest = (self.rows.iter()).find(|row| row.case.ends_with(&format!("depth {DEPTHS}")));
        if let (Some(codec), Some(deepest)) = (codec, deepest) {
            let (want, got) = (TARGET_SHARE * codec.steady(), deepest.score.steady());
            let joined = |score: &Score| score.mos.first().copied().unwrap_or(f64::NAN);
            println!(
                "\nTarget (issue 16): depth {DEPTHS} ≥ {TARGET_SHARE} × codec alone, steady state \
                 (mean of A and B): {got:.2} vs {want:.2} ({:.3}×): {}",
                got / codec.steady(),
                if got >= want { "ok" } else { "MISSED" }
            );
            println!(
                "Just joined (the first A): depth {DEPTHS} {:.2} vs the codec alone {:.2} ({:.3}×)",
                joined(&deepest.score),
                joined(&codec),
                joined(&deepest.score) / joined(&codec)
            );
        }
        println!("\nHow each output was lined up with the input, stretch by stretch:");
        for row in &self.rows {
            println!("- {}: {}", row.case.trim(), row.score.alignment.join("; "));
        }
    }
}
