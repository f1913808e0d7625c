//! Audio along a chain of relays on 127.0.0.1: the host's voice reaches a listener three hops
//! down intact, and a peer that sends garbage loses its stream without disturbing anyone else.
//! Every node is a member of the room; a parent's audio plane admits a listen stream that shows a
//! ticket naming it (issued here by the host, as its placements are), and the host's takes the
//! voice of the stage. The tests drive the audio plane ([`Fanout`]) directly, without the room
//! services.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use earshot_node::Event;
use earshot_node::audio::codec::VoiceEncoder;
use earshot_node::audio::mixer::Mixer;
use earshot_node::audio::signal::{similarity_in_windows, speechlike};
use earshot_node::audio::{FRAME_DURATION, FRAME_SAMPLES, wav};
use earshot_node::fanout::{AUDIO_PROTOCOL, Fanout, FanoutStats, Heard};
use earshot_protocol::audience::Ticket;
use earshot_protocol::frame::{AudioFrame, SpeakerId};
use earshot_protocol::{Audience, PeerKey, Role, RoomDescriptor, RoomId, Visibility};
use futures::AsyncWriteExt;
use tokio::sync::mpsc;

use crate::net::{TestNode, WAIT, grant, invite};

/// 3 seconds of speech, in frames.
const FRAMES: usize = 150;

/// A listener link to `room`.
fn link(host: &TestNode, room: &RoomDescriptor) -> earshot_protocol::InviteLink {
    invite(host, room, grant(Role::Listener, Audience::Bearer, 0))
}

/// `node` joins the room's audience with `link`.
async fn member(node: &TestNode, link: earshot_protocol::InviteLink) {
    node.node.join(link, &node.name).await.expect("joins");
}

/// `node` joins the stage with a speaker's link; once the host has folded its join, the host's
/// audio plane takes its voice.
async fn speaker(node: &TestNode, host: &mut TestNode, room: &RoomDescriptor) {
    let link = invite(host, room, grant(Role::Speaker, Audience::Bearer, 0));
    node.node.join(link, &node.name).await.expect("joins");
    let key = node.key();
    host.wait_for(
        "the new speaker",
        |e| matches!(e, Event::MemberJoined { member, .. } if *member == key),
    )
    .await;
}

/// The host's ticket for `child` to listen to `parent` in `room`.
fn ticket(host: &TestNode, room: RoomId, child: PeerKey, parent: PeerKey) -> Vec<u8> {
    Ticket::issue_as_host(
        &host.signing,
        room,
        child,
        parent,
        earshot_node::clock::now(),
    )
    .encode()
}

/// Waits until `relay` feeds at least `n` children in `room`.
async fn children(relay: &Fanout, room: &RoomId, n: usize) {
    let mut watch = relay.children(room).expect("room is open");
    tokio::time::timeout(WAIT, watch.wait_for(|count| *count >= n))
        .await
        .expect("children attach in time")
        .expect("relay alive");
}

/// An audio stream opened by hand, as a modified client would: the hello (kind 0 listen, 1
/// speak) is sent, and the rest is up to the test.
async fn raw_stream(
    from: &TestNode,
    to: multiaddr::PeerId,
    room: RoomId,
    kind: u8,
    proof: &[u8],
) -> impl futures::AsyncWrite + Unpin {
    let mut stream = tokio::time::timeout(WAIT, from.node.open_raw_stream(to, AUDIO_PROTOCOL))
        .await
        .expect("a stream within the wait")
        .expect("stream");
    let mut hello = vec![2u8, kind];
    hello.extend_from_slice(room.as_bytes());
    hello.extend_from_slice(&u16::try_from(proof.len()).expect("short").to_be_bytes());
    hello.extend_from_slice(proof);
    tokio::time::timeout(WAIT, stream.write_all(&hello))
        .await
        .expect("hello sent in time")
        .expect("hello");
    stream
}

/// A frame with a made-up payload (the relay never decodes; only players do).
fn raw_frame(speaker: SpeakerId, seq: u32, level: u8, payload: Vec<u8>) -> AudioFrame {
    AudioFrame {
        speaker,
        seq,
        timestamp: seq * 960,
        level,
        flags: 0,
        payload,
        tag: None,
    }
}

/// Records what arrives, with arrival times, until `duration` has passed.
async fn record(
    mut heard: mpsc::Receiver<Heard>,
    duration: Duration,
) -> Vec<(Instant, AudioFrame)> {
    let deadline = tokio::time::Instant::now() + duration;
    let mut arrivals = Vec::new();
    while let Ok(Some(heard)) = tokio::time::timeout_at(deadline, heard.recv()).await {
        arrivals.push((heard.at, heard.frame));
    }
    arrivals
}

/// Plays recorded arrivals through the jitter buffer and mixer on a steady 20 ms clock, as a
/// sound card would: the network's timing is real, the playback clock is exact.
fn play(arrivals: &[(Instant, AudioFrame)]) -> Vec<f32> {
    let Some((start, _)) = arrivals.first() else {
        return Vec::new();
    };
    let last = arrivals.last().map_or(*start, |(at, _)| *at);
    let mut mixer = Mixer::new();
    let mut out = Vec::new();
    let mut next = 0;
    let mut now = *start;
    while now <= last + Duration::from_millis(500) {
        while next < arrivals.len() && arrivals[next].0 <= now {
            mixer
                .push(arrivals[next].1.clone(), arrivals[next].0)
                .expect("decoder");
            next += 1;
        }
        out.extend(mixer.next_chunk(now));
        now += FRAME_DURATION;
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_hosts_voice_reaches_three_hops_down_intact() {
    let host = TestNode::start("host").await;
    let descriptor = host.host("Radio", Visibility::Unlisted).await;
    let room = descriptor.id;
    let nodes = [
        TestNode::by_hand("l1").await,
        TestNode::by_hand("l2").await,
        TestNode::by_hand("l3").await,
    ];
    let links: Vec<_> = nodes.iter().map(|_| link(&host, &descriptor)).collect();
    let host_relay = host.node.fanout().clone();
    host_relay.open_room(room);
    // A chain: host → l1 → l2 → l3 (depth 3).
    let mut listeners = Vec::new();
    for (i, link) in links.into_iter().enumerate() {
        let (before, rest) = nodes.split_at(i);
        let node = &rest[0];
        let parent = before.last().unwrap_or(&host);
        member(node, link).await;
        let parent_id = parent.node.peer_id();
        let parent_addrs = parent.node.listen_addrs().await.expect("addrs");
        let relay = node.node.fanout().clone();
        let (heard, stats) = relay.open_room(room);
        node.node.dial(parent_id, parent_addrs).await.expect("dial");
        let listening = relay.clone();
        let proof = ticket(&host, room, node.key(), parent.key());
        tokio::spawn(async move { listening.listen(room, parent_id, &proof).await });
        listeners.push((relay, heard, stats));
    }
    children(&host_relay, &room, 1).await;
    for (relay, _, _) in &listeners[..2] {
        children(relay, &room, 1).await;
    }

    // The host speaks 3 s of speech (written to and read back from a WAV file, as a user's
    // --input would be), paced in real time.
    let dir = tempfile::tempdir().expect("tempdir");
    let source = dir.path().join("speech.wav");
    wav::write(&source, &speechlike(FRAMES * FRAME_SAMPLES, 21)).expect("write wav");
    let input = wav::read(&source).expect("read wav");
    let recorders: Vec<_> = listeners
        .into_iter()
        .map(|(_, heard, stats)| {
            (
                tokio::spawn(record(heard, FRAME_DURATION * (FRAMES as u32 + 50))),
                stats,
            )
        })
        .collect();
    let mut encoder = VoiceEncoder::new().expect("encoder");
    let speaker = SpeakerId::of(&host.key());
    let mut clock = tokio::time::interval(FRAME_DURATION);
    for (i, chunk) in input.chunks_exact(FRAME_SAMPLES).enumerate() {
        clock.tick().await;
        let encoded = encoder.encode(chunk).expect("encode");
        host_relay.relay(
            &room,
            &encoded.into_frame(speaker, i as u32, i as u32 * 960),
        );
    }

    for (depth, (recorder, stats)) in recorders.into_iter().enumerate() {
        let output = play(&recorder.await.expect("recorder"));
        let stats: &FanoutStats = &stats;
        let received = stats.received.load(Ordering::Relaxed) as usize;
        assert!(
            received * 100 >= FRAMES * 99,
            "depth {}: {received} of {FRAMES} frames",
            depth + 1
        );
        // Aligned half a second at a time: the jitter buffer may shorten its delay by a frame
        // while it plays.
        let score = similarity_in_windows(&input, &output, FRAME_SAMPLES * 25);
        assert!(score >= 0.9, "depth {}: similarity {score:.3}", depth + 1);
        wav::write(&dir.path().join(format!("depth{}.wav", depth + 1)), &output)
            .expect("write output");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_on_an_audio_stream_closes_only_that_stream() {
    let mut host = TestNode::start("host").await;
    let descriptor = host.host("Radio", Visibility::Unlisted).await;
    let room = descriptor.id;
    let host_relay = host.node.fanout().clone();
    let (_, host_stats) = host_relay.open_room(room);
    let addrs = host.node.listen_addrs().await.expect("addrs");

    // An honest listener is attached.
    let listener = TestNode::by_hand("listener").await;
    member(&listener, link(&host, &descriptor)).await;
    let listener_relay = listener.node.fanout().clone();
    let (mut heard, _) = listener_relay.open_room(room);
    listener
        .node
        .dial(host.node.peer_id(), addrs.clone())
        .await
        .expect("dial");
    let listening = listener_relay.clone();
    let host_id = host.node.peer_id();
    let proof = ticket(&host, room, listener.key(), host.key());
    tokio::spawn(async move { listening.listen(room, host_id, &proof).await });
    children(&host_relay, &room, 1).await;

    // A modified client on stage opens a speak stream and sends garbage.
    let troll = TestNode::by_hand("troll").await;
    speaker(&troll, &mut host, &descriptor).await;
    troll.node.dial(host_id, addrs).await.expect("dial");
    let mut stream = raw_stream(&troll, host_id, room, 1, &[]).await;
    stream
        .write_all(&[
            0, 40, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9,
            9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9,
        ])
        .await
        .expect("garbage");
    stream.flush().await.expect("flush");
    let deadline = Instant::now() + WAIT;
    // The host counts the bad stream; there is no event to wait on for a counter, so check it
    // as the host's frames keep flowing to the listener (each frame is a point in time).
    let speaker = SpeakerId::of(&host.key());
    let mut seq = 0u32;
    while host_stats.bad_streams.load(Ordering::Relaxed) == 0 {
        assert!(
            Instant::now() < deadline,
            "the garbage stream was not closed"
        );
        host_relay.relay(&room, &raw_frame(speaker, seq, 127, vec![0xf8]));
        seq += 1;
        tokio::time::timeout(WAIT, heard.recv())
            .await
            .expect("the listener keeps hearing the host")
            .expect("frame");
    }
    // And the listener still hears the host afterwards.
    host_relay.relay(&room, &raw_frame(speaker, seq, 127, vec![0xf8]));
    let heard = tokio::time::timeout(WAIT, heard.recv())
        .await
        .expect("still served")
        .expect("frame");
    assert_eq!(heard.frame.seq, seq);
}

/// A child that stops reading (a stalled or very slow connection) loses its own oldest frames;
/// its sibling still gets every frame.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_child_does_not_slow_its_sibling() {
    // Frames unsigned and unchecked: 8,000 a second is far more than a debug build signs.
    let host = TestNode::by_hand_unchecked("host").await;
    let descriptor = host.host("Radio", Visibility::Unlisted).await;
    let room = descriptor.id;
    let host_relay = host.node.fanout().clone();
    let (_, host_stats) = host_relay.open_room(room);
    let addrs = host.node.listen_addrs().await.expect("addrs");
    let host_id = host.node.peer_id();

    // The sibling listens normally.
    let sibling = TestNode::by_hand_unchecked("sibling").await;
    member(&sibling, link(&host, &descriptor)).await;
    let sibling_relay = sibling.node.fanout().clone();
    let (mut heard, _) = sibling_relay.open_room(room);
    sibling
        .node
        .dial(host_id, addrs.clone())
        .await
        .expect("dial");
    let listening = sibling_relay.clone();
    let proof = ticket(&host, room, sibling.key(), host.key());
    tokio::spawn(async move { listening.listen(room, host_id, &proof).await });

    // The stalled child (a member with its ticket) opens a listen stream and never reads from
    // it.
    let stalled = TestNode::by_hand("stalled").await;
    member(&stalled, link(&host, &descriptor)).await;
    stalled.node.dial(host_id, addrs).await.expect("dial");
    let proof = ticket(&host, room, stalled.key(), host.key());
    let stream = raw_stream(&stalled, host_id, room, 0, &proof).await;
    children(&host_relay, &room, 2).await;

    // 12,000 large frames, 8 every millisecond: about 15 MB, more than the stalled stream's flow
    // control window (10 MB in libp2p-quic), at a rate the sibling keeps up with.
    const SENT: u32 = 12_000;
    let speaker = SpeakerId::of(&host.key());
    // The sibling counts what it gets, until the last frame (a slow child's queue drops the
    // oldest frames, never the newest, so the last one arrives unless the sibling is stuck).
    let receiver = tokio::spawn(async move {
        let mut received = 0u32;
        while let Ok(Some(heard)) = tokio::time::timeout(WAIT, heard.recv()).await {
            received += 1;
            if heard.frame.seq == SENT - 1 {
                return (received, true);
            }
        }
        (received, false)
    });
    let mut clock = tokio::time::interval(Duration::from_millis(1));
    for seq in 0..SENT {
        if seq % 8 == 0 {
            clock.tick().await;
        }
        host_relay.relay(&room, &raw_frame(speaker, seq, 40, vec![0x78; 1_200]));
    }
    let (received, heard_the_end) = receiver.await.expect("receiver");
    // Were the stalled child holding things up, the sibling would stop once the stalled
    // stream's window filled, about two thirds of the way, and never hear the end. At this rate
    // (8,000 frames a second, 200 times a real room's) a busy machine costs the sibling frames
    // here and there (its own 16-frame queue overflows when the runtime is starved), so the bar
    // for the count is three quarters, clear of the two thirds a stall would give.
    assert!(
        heard_the_end,
        "the sibling stopped hearing the host after {received} of {SENT} frames"
    );
    assert!(
        received * 4 >= SENT * 3,
        "the sibling got {received} of {SENT} frames"
    );
    assert!(
        host_stats.dropped.load(Ordering::Relaxed) > 0,
        "the stalled child lost frames rather than holding anyone up"
    );
    drop(stream);
}

/// Three people talk at once to a host that forwards two voices: the two loudest reach the
/// listener, the quiet one does not; when a loud one stops, the quiet one is heard.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_host_forwards_the_loudest_speakers() {
    let mut host = TestNode::start("host").await;
    let descriptor = host.host("Panel", Visibility::Unlisted).await;
    let room = descriptor.id;
    let host_relay = host.node.fanout().clone();
    let _ = host_relay.open_room_with(
        room,
        earshot_node::fanout::FanoutOptions {
            myself: None,
            forward_loudest: Some(2),
        },
    );
    let addrs = host.node.listen_addrs().await.expect("addrs");
    let host_id = host.node.peer_id();

    let listener = TestNode::by_hand("listener").await;
    member(&listener, link(&host, &descriptor)).await;
    let listener_relay = listener.node.fanout().clone();
    let (mut heard, _) = listener_relay.open_room(room);
    listener
        .node
        .dial(host_id, addrs.clone())
        .await
        .expect("dial");
    let listening = listener_relay.clone();
    let proof = ticket(&host, room, listener.key(), host.key());
    tokio::spawn(async move { listening.listen(room, host_id, &proof).await });
    children(&host_relay, &room, 1).await;

    // Loud, louder, and quiet (RFC 6464 levels: 0 is the loudest), each on stage.
    let mut speakers = Vec::new();
    for (name, level) in [("ana", 20u8), ("bo", 30), ("cy", 90)] {
        let node = TestNode::by_hand(name).await;
        speaker(&node, &mut host, &descriptor).await;
        node.node.dial(host_id, addrs.clone()).await.expect("dial");
        let relay = node.node.fanout().clone();
        let voice = relay.speak(room, host_id).await.expect("speak stream");
        speakers.push((SpeakerId::of(&node.key()), level, voice, node, relay));
    }
    let ids: Vec<SpeakerId> = speakers.iter().map(|s| s.0).collect();

    // Counts what the listener hears from each speaker while `talking` speakers send 50 frames.
    async fn round(
        speakers: &[(SpeakerId, u8, mpsc::Sender<AudioFrame>, TestNode, Fanout)],
        talking: &[usize],
        first_seq: u32,
        heard: &mut mpsc::Receiver<Heard>,
    ) -> std::collections::HashMap<SpeakerId, usize> {
        let send = async {
            let mut clock = tokio::time::interval(FRAME_DURATION);
            for seq in first_seq..first_seq + 50 {
                clock.tick().await;
                for &i in talking {
                    let (id, level, voice, _, _) = &speakers[i];
                    voice
                        .try_send(raw_frame(*id, seq, *level, vec![0xf8; 80]))
                        .expect("the speak queue keeps up");
                }
            }
        };
        // Counted as they arrive, until the last frame of two speakers has (no more than two
        // voices can come through).
        let receive = async {
            let mut counts = std::collections::HashMap::new();
            let last = first_seq + 49;
            let mut ended = std::collections::HashSet::new();
            while ended.len() < 2 {
                let Ok(Some(heard)) = tokio::time::timeout(WAIT, heard.recv()).await else {
                    break;
                };
                *counts.entry(heard.frame.speaker).or_insert(0) += 1;
                if heard.frame.seq == last {
                    ended.insert(heard.frame.speaker);
                }
            }
            counts
        };
        let ((), counts) = tokio::join!(send, receive);
        counts
    }

    let counts = round(&speakers, &[0, 1, 2], 0, &mut heard).await;
    let of = |counts: &std::collections::HashMap<SpeakerId, usize>, i: usize| {
        counts.get(&ids[i]).copied().unwrap_or(0)
    };
    assert!(of(&counts, 0) >= 48, "the loudest: {counts:?}");
    assert!(of(&counts, 1) >= 48, "the second loudest: {counts:?}");
    assert!(
        of(&counts, 2) <= 2,
        "the quiet one is not forwarded: {counts:?}"
    );

    // The loudest stops talking: after a moment, the quiet one takes its place.
    let counts = round(&speakers, &[1, 2], 50, &mut heard).await;
    assert!(of(&counts, 1) >= 48, "{counts:?}");
    assert!(
        of(&counts, 2) >= 30,
        "the quiet one is heard once a place is free: {counts:?}"
    );
}

/// Streams that never say what they are for are closed after the hello timeout (a stranger
/// cannot hold a host's streams open by saying nothing).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_that_never_say_hello_are_closed() {
    use futures::AsyncReadExt;
    let host = TestNode::start("host").await;
    host.host("Radio", Visibility::Unlisted).await;
    let stranger = TestNode::by_hand("stranger").await;
    let host_id = host.node.peer_id();
    stranger
        .node
        .dial(host_id, host.node.listen_addrs().await.expect("addrs"))
        .await
        .expect("dial");
    let mut silent = Vec::new();
    for _ in 0..20 {
        silent.push(
            tokio::time::timeout(WAIT, stranger.node.open_raw_stream(host_id, AUDIO_PROTOCOL))
                .await
                .expect("a stream within the wait")
                .expect("stream"),
        );
    }
    for mut stream in silent {
        let mut byte = [0u8; 1];
        let read = tokio::time::timeout(
            earshot_node::fanout::HELLO_TIMEOUT + WAIT,
            stream.read(&mut byte),
        )
        .await
        .expect("closed by the host, not left open");
        assert!(
            matches!(read, Ok(0) | Err(_)),
            "the host sent something: {read:?}"
        );
    }
}
