//! The server's limits, run for real: in-process nodes on 127.0.0.1 open more replay streams
//! than a holder serves, or open them and ask nothing. Nothing sleeps: every wait is for an
//! answer or a closed stream, within [`WAIT`].

use std::time::{Duration, Instant};

use earshot_protocol::replay::{MAX_RESPONSE_BYTES, ManifestId, ReplayRequest, ReplayResponse};
use futures::AsyncWriteExt;
use libp2p::PeerId;

use super::super::REPLAY_PROTOCOL;
use super::super::wire::{read_message, write_message};
use super::*;
use crate::identity::Identity;
use crate::node::{Node, NodeConfig};
use crate::store::Store;

/// How long any single wait may take before the test fails.
const WAIT: Duration = Duration::from_secs(15);

/// A node on 127.0.0.1 and the data directory it keeps its key in.
async fn node() -> (Node, tempfile::TempDir) {
    let dir = crate::fixtures::private_dir();
    let identity = Identity::create(dir.path()).expect("identity");
    let node = Node::spawn(
        identity,
        NodeConfig {
            listen: vec!["/ip4/127.0.0.1/udp/0/quic-v1".parse().expect("multiaddr")],
            ..NodeConfig::default()
        },
    )
    .await
    .expect("node starts");
    (node, dir)
}

/// A holder serving an empty store with `limits`.
struct Holder {
    node: Node,
    server: ReplayServer,
    _dirs: (tempfile::TempDir, tempfile::TempDir),
}

impl Holder {
    async fn start(limits: ServeLimits) -> Self {
        let (node, home) = node().await;
        let data = crate::fixtures::private_dir();
        let store = Store::open(data.path()).expect("store");
        let replays = Replays::open(&store).expect("replays");
        let server = ReplayServer::start_with(node.streams(), replays, limits).expect("serve");
        Self {
            node,
            server,
            _dirs: (home, data),
        }
    }

    fn refused(&self) -> u64 {
        self.server.stats().refused_streams.load(Ordering::Relaxed)
    }
}

/// A peer connected to `holder`.
async fn peer(holder: &Holder) -> (Node, tempfile::TempDir) {
    let (node, dir) = node().await;
    let addrs = holder.node.listen_addrs().await.expect("addrs");
    node.dial(holder.node.peer_id(), addrs).await.expect("dial");
    (node, dir)
}

async fn open(from: &Node, to: PeerId) -> libp2p::Stream {
    from.open_raw_stream(to, REPLAY_PROTOCOL)
        .await
        .expect("the stream opens (refusing it is the server's part)")
}

/// What became of a request.
#[derive(Debug, PartialEq, Eq)]
enum Asked {
    Answered(ReplayResponse),
    /// The server closed the stream instead of answering.
    Closed,
}

/// Asks for a manifest nobody has (the answer is `NotFound`, or the stream is closed).
async fn ask(stream: &mut libp2p::Stream) -> Asked {
    let request = ReplayRequest::Manifest {
        id: ManifestId([9; 16]),
    }
    .encode();
    let exchange = async {
        write_message(stream, &request).await?;
        read_message(stream, MAX_RESPONSE_BYTES, true).await
    };
    match tokio::time::timeout(WAIT, exchange).await {
        Ok(Ok(Some(bytes))) => Asked::Answered(ReplayResponse::decode(&bytes).expect("a response")),
        Ok(Ok(None) | Err(_)) => Asked::Closed,
        Err(_) => panic!("neither an answer nor a closed stream within {WAIT:?}"),
    }
}

const SERVED: Asked = Asked::Answered(ReplayResponse::NotFound);

/// A stream from `from` that `to` serves, opened again until one is: a place the server gives
/// back when a stream ends may come a moment after the stream is seen closed.
async fn served_stream(from: &Node, to: PeerId) -> libp2p::Stream {
    let deadline = Instant::now() + WAIT;
    loop {
        let mut stream = open(from, to).await;
        if ask(&mut stream).await == SERVED {
            return stream;
        }
        assert!(
            Instant::now() < deadline,
            "no place came free within {WAIT:?}"
        );
    }
}

/// Waits until the server closes `stream`, which must not send anything.
async fn closed(stream: &mut libp2p::Stream) {
    match tokio::time::timeout(WAIT, read_message(stream, MAX_RESPONSE_BYTES, true)).await {
        Ok(Ok(None) | Err(_)) => {}
        Ok(Ok(Some(bytes))) => panic!("the server sent {} bytes unasked", bytes.len()),
        Err(_) => panic!("the stream is still open after {WAIT:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_streams_past_four_a_peer_or_the_servers_limit_are_closed_and_others_served() {
    // What a node serves with.
    assert_eq!(
        ServeLimits::default(),
        ServeLimits {
            streams: 64,
            streams_per_peer: 4,
            idle: Duration::from_secs(30),
        }
    );
    // Here 6 in all rather than 64, so that three peers reach it.
    let holder = Holder::start(ServeLimits {
        streams: 6,
        ..ServeLimits::default()
    })
    .await;
    let to = holder.node.peer_id();
    let (mallory, _m) = peer(&holder).await;
    let (bob, _b) = peer(&holder).await;
    let (carol, _c) = peer(&holder).await;

    // Mallory's four streams are served and stay open; a fifth is closed unanswered.
    let mut held = Vec::new();
    for _ in 0..4 {
        let mut stream = open(&mallory, to).await;
        assert_eq!(ask(&mut stream).await, SERVED);
        held.push(stream);
    }
    assert_eq!(ask(&mut open(&mallory, to).await).await, Asked::Closed);
    assert_eq!(holder.refused(), 1);
    // Bob is served meanwhile, on every stream he opens until the server holds six.
    let mut bobs = Vec::new();
    for _ in 0..2 {
        let mut stream = open(&bob, to).await;
        assert_eq!(ask(&mut stream).await, SERVED);
        bobs.push(stream);
    }
    // Six in all: Carol's first stream and Bob's third are closed.
    assert_eq!(ask(&mut open(&carol, to).await).await, Asked::Closed);
    assert_eq!(ask(&mut open(&bob, to).await).await, Asked::Closed);
    assert_eq!(holder.refused(), 3);
    // Streams still held are still served.
    for stream in held.iter_mut().chain(&mut bobs) {
        assert_eq!(ask(stream).await, SERVED);
    }

    // Mallory closes one: its place goes to the next stream opened, Carol's.
    let mut gone = held.pop().expect("four held");
    gone.close().await.expect("close");
    let mut carols = served_stream(&carol, to).await;
    assert_eq!(ask(&mut carols).await, SERVED);
    assert_eq!(ask(&mut open(&mallory, to).await).await, Asked::Closed);

    for node in [&mallory, &bob, &carol, &holder.node] {
        node.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_streams_that_ask_nothing_are_closed_and_their_places_freed() {
    let idle = Duration::from_secs(1);
    let holder = Holder::start(ServeLimits {
        idle,
        ..ServeLimits::default()
    })
    .await;
    let to = holder.node.peer_id();
    let (mallory, _m) = peer(&holder).await;

    // Mallory takes her four places: three streams that asked once, one that never asks.
    let mut held = Vec::new();
    for _ in 0..3 {
        let mut stream = open(&mallory, to).await;
        let asked = Instant::now();
        assert_eq!(ask(&mut stream).await, SERVED);
        held.push((asked, stream));
    }
    held.push((Instant::now(), open(&mallory, to).await));
    // Each is closed once it has asked nothing for `idle`, and not before.
    for (since, stream) in &mut held {
        closed(stream).await;
        assert!(
            since.elapsed() >= idle,
            "closed after {:?}",
            since.elapsed()
        );
    }
    assert_eq!(holder.refused(), 0);

    // Their places are free again: four new streams are served at once.
    let mut again = Vec::new();
    for _ in 0..4 {
        again.push(served_stream(&mallory, to).await);
    }

    for node in [&mallory, &holder.node] {
        node.shutdown().await;
    }
}
