//! Replay fetch throughput on loopback: a synthetic recording (20 MB by default) published in
//! one data directory, served by [`ReplayServer`] over QUIC on 127.0.0.1, and fetched into
//! fresh data directories by [`replay::fetch`] (every chunk hashed and stored, then imported
//! into the recordings).
//!
//! `cargo bench -p earshot-node --bench replay_fetch` (about 15 s). Options after `--`:
//! `--mb N` (recording size), `--runs N` (fetches per row, best and median printed).
//!
//! Each node runs in its own 2-worker tokio runtime, standing for its own process (on a
//! 2-core machine they share the CPUs, as two processes would). Rows:
//! - publish: cut the recording into chunks, hash them, sign, store (no network);
//! - fetch, 1 holder: dial, manifest, every chunk, import;
//! - fetch, 2 holders: the same from two servers holding the replay;
//! - transfer only: from the manifest's arrival to the last chunk stored (1 holder);
//! - import only: a complete replay into the recordings (no network).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use earshot_node::identity::Identity;
use earshot_node::net::NetConfig;
use earshot_node::node::{Node, NodeConfig};
use earshot_node::recording::replay::{self, FetchEvent, FetchRequest, Holder, Replays};
use earshot_node::recording::store::{
    RecordingMeta, RecordingState, Recordings, SpeakerInfo, StoredFrame,
};
use earshot_node::store::Store;
use earshot_protocol::replay::{ManifestId, ReplayFrame};
use earshot_protocol::{RecordingId, RoomId, Timestamp};

struct Options {
    mb: usize,
    runs: usize,
}

fn options() -> Options {
    let mut options = Options { mb: 20, runs: 3 };
    let args: Vec<String> = std::env::args().collect();
    let mut i = 1;
    while i < args.len() {
        match args[i].as_str() {
            "--mb" => {
                options.mb = args.get(i + 1).and_then(|v| v.parse().ok()).unwrap_or(20);
                i += 1;
            }
            "--runs" => {
                options.runs = args.get(i + 1).and_then(|v| v.parse().ok()).unwrap_or(3);
                i += 1;
            }
            _ => {}
        }
        i += 1;
    }
    options
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

/// A data directory with its identity, recordings and replays.
struct Dir {
    _dir: tempfile::TempDir,
    identity: Identity,
    recordings: Recordings,
    replays: Replays,
}

fn dir() -> Dir {
    let dir = tempfile::tempdir().expect("tempdir");
    let identity = Identity::create(dir.path()).expect("identity");
    let store = Store::open(dir.path()).expect("store");
    let recordings = Recordings::open(&store).expect("recordings");
    let replays = Replays::open(&store).expect("replays");
    Dir {
        _dir: dir,
        identity,
        recordings,
        replays,
    }
}

/// About `mb` MB of three speakers' frames (payloads of an 80-byte Opus frame's size and up).
fn synthetic(dir: &Dir, mb: usize) -> RecordingMeta {
    let payload = 200usize;
    let count = mb * 1_000_000 / (payload + 25);
    let frames: Vec<ReplayFrame> = (0..count)
        .map(|i| ReplayFrame {
            at: (i / 3) as u64 * 960,
            speaker: (i % 3) as u32,
            seq: (i / 3) as u32,
            timestamp: (i / 3) as u32 * 960,
            flags: 1,
            level: (i % 127) as u8,
            payload: (0..payload).map(|j| (i * 31 + j) as u8).collect(),
        })
        .collect();
    let mut speakers = BTreeMap::new();
    for speaker in 0..3u32 {
        speakers.insert(
            speaker,
            SpeakerInfo {
                key: None,
                name: format!("speaker {speaker}"),
                frames: (count / 3) as u64,
            },
        );
    }
    let meta = RecordingMeta {
        id: RecordingId([7; 16]),
        room: RoomId([1; 16]),
        title: "Bench".into(),
        host: dir.identity.key(),
        recorder: dir.identity.key(),
        started_at: Timestamp(1_800_000_000_000),
        ended_at: None,
        state: RecordingState::Complete,
        start_media: 0,
        speakers,
        frames: count as u64,
        bytes: (count * payload) as u64,
        duration_samples: frames.last().map_or(0, |f| f.at + 960),
        dropped: 0,
    };
    dir.recordings
        .import(&meta, frames.into_iter().map(StoredFrame::from))
        .expect("write the recording");
    meta
}

fn config() -> NodeConfig {
    NodeConfig {
        listen: vec!["/ip4/127.0.0.1/udp/0/quic-v1".parse().expect("multiaddr")],
        bootstrap: Vec::new(),
        net: NetConfig::default(),
        max_children: 4,
        upload_kbps: None,
        relays: Vec::new(),
        reachability: Default::default(),
        tree_by_hand: false,
        misbehave: None,
        capture: None,
        unchecked_audio: false,
    }
}

/// A node serving `dir`'s replays in a runtime of its own.
struct Server {
    runtime: tokio::runtime::Runtime,
    node: Node,
    holder: Holder,
}

fn server(dir: &Dir) -> Server {
    let runtime = runtime();
    let replays = dir.replays.clone();
    let identity = dir.identity.clone();
    let (node, holder) = runtime.block_on(async move {
        let node = Node::spawn(identity, config()).await.expect("node");
        node.serve_replays(replays).expect("serve");
        let addrs = node.listen_addrs().await.expect("addrs");
        let holder = Holder {
            peer: node.peer_id(),
            addrs,
        };
        (node, holder)
    });
    Server {
        runtime,
        node,
        holder,
    }
}

struct Fetched {
    total: Duration,
    transfer: Duration,
    bytes: u64,
}

fn fetch_once(manifest: ManifestId, holders: Vec<Holder>) -> Fetched {
    let into = dir();
    let rt = runtime();
    rt.block_on(async {
        let node = Node::spawn(into.identity.clone(), config())
            .await
            .expect("node");
        let marks: Arc<Mutex<(Option<Instant>, Option<Instant>)>> = Arc::default();
        let on_event = {
            let marks = Arc::clone(&marks);
            Arc::new(move |event: &FetchEvent| {
                let mut marks = marks.lock().expect("marks");
                match event {
                    FetchEvent::Manifest { .. } => marks.0 = Some(Instant::now()),
                    FetchEvent::Chunk { .. } => marks.1 = Some(Instant::now()),
                    _ => {}
                }
            })
        };
        let report = replay::fetch(
            &node,
            &into.replays,
            &into.recordings,
            FetchRequest {
                manifest,
                recorder: None,
                holders,
            },
            on_event,
        )
        .await
        .expect("fetch");
        node.shutdown().await;
        let marks = *marks.lock().expect("marks");
        Fetched {
            total: report.elapsed,
            transfer: match marks {
                (Some(a), Some(b)) => b - a,
                _ => Duration::ZERO,
            },
            bytes: report.bytes,
        }
    })
}

fn row(what: &str, bytes: u64, times: &mut [Duration]) {
    times.sort();
    let best = times[0];
    let median = times[times.len() / 2];
    let rate = |d: Duration| bytes as f64 / 1e6 / d.as_secs_f64().max(1e-9);
    println!(
        "{:<26} {:>8.1} {:>10.1} {:>10.1} {:>12.1} {:>12.1}",
        what,
        bytes as f64 / 1e6,
        best.as_secs_f64() * 1000.0,
        median.as_secs_f64() * 1000.0,
        rate(best),
        rate(median)
    );
}

fn main() {
    let options = options();
    let origin = dir();
    let meta = synthetic(&origin, options.mb);
    let started = Instant::now();
    let manifest = origin
        .replays
        .publish(&origin.recordings, &meta, origin.identity.signing_key())
        .expect("publish");
    let mut publish = vec![started.elapsed()];
    let id = manifest.id();
    let bytes = manifest.total_bytes;
    // A second holder: the same replay fetched once into another directory.
    let second = dir();
    let first = server(&origin);
    {
        let rt = runtime();
        rt.block_on(async {
            let node = Node::spawn(second.identity.clone(), config())
                .await
                .expect("node");
            replay::fetch(
                &node,
                &second.replays,
                &second.recordings,
                FetchRequest {
                    manifest: id,
                    recorder: None,
                    holders: vec![first.holder.clone()],
                },
                Arc::new(|_: &FetchEvent| {}),
            )
            .await
            .expect("fetch into the second holder");
            node.shutdown().await;
        });
    }
    let other = server(&second);

    println!(
        "replay fetch on loopback (QUIC, 127.0.0.1): {:.1} MB, {} chunks of {} KiB, {} streams \
         per holder, best and median of {} runs",
        bytes as f64 / 1e6,
        manifest.chunks.len(),
        manifest.chunk_bytes / 1024,
        replay::STREAMS_PER_HOLDER,
        options.runs
    );
    println!(
        "{:<26} {:>8} {:>10} {:>10} {:>12} {:>12}",
        "", "MB", "best ms", "median ms", "best MB/s", "median MB/s"
    );
    row("publish (cut, hash, sign)", bytes, &mut publish);
    let mut one = Vec::new();
    let mut transfer = Vec::new();
    for _ in 0..options.runs {
        let fetched = fetch_once(id, vec![first.holder.clone()]);
        assert_eq!(fetched.bytes, bytes);
        one.push(fetched.total);
        transfer.push(fetched.transfer);
    }
    row("fetch, 1 holder", bytes, &mut one);
    row("  chunks only, 1 holder", bytes, &mut transfer);
    let mut two = Vec::new();
    for _ in 0..options.runs {
        let fetched = fetch_once(id, vec![first.holder.clone(), other.holder.clone()]);
        two.push(fetched.total);
    }
    row("fetch, 2 holders", bytes, &mut two);
    // Import alone: a directory holding every chunk, not yet the recording.
    let mut import = Vec::new();
    for _ in 0..options.runs {
        let target = dir();
        let bytes_of = origin
            .replays
            .manifest_bytes(&id)
            .expect("read")
            .expect("kept");
        target.replays.store_manifest(&bytes_of).expect("manifest");
        for index in 0..manifest.chunks.len() as u32 {
            let chunk = origin
                .replays
                .chunk(&id, index)
                .expect("read")
                .expect("kept");
            target
                .replays
                .store_chunk_unverified(&id, index, &chunk)
                .expect("chunk");
        }
        let started = Instant::now();
        target
            .replays
            .import(&target.recordings, &id)
            .expect("import");
        import.push(started.elapsed());
    }
    row("import (verify, write)", bytes, &mut import);
    for server in [first, other] {
        server.runtime.block_on(server.node.shutdown());
    }
}
