use std::num::NonZeroU32;

use libp2p::core::ConnectedPoint;
use libp2p::core::Endpoint;
use libp2p::core::transport::PortUse;
use libp2p::swarm::ConnectionId;
use libp2p::{Multiaddr, PeerId};
use prometheus_client::metrics::family::Family;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::*;

/// The sample names in an exposition (what a scraper stores), in order.
fn sample_names(text: &str) -> Vec<&str> {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| line.split([' ', '{']).next())
        .collect()
}

fn example() -> (Registry, Gauge) {
    let mut registry = Registry::default();
    let rooms = gauge(&mut registry, "earshot_rooms", "Rooms served");
    rooms.set(3);
    let frames = counter(
        &mut registry,
        "earshot_frames_forwarded_total",
        "Audio frames forwarded to children",
    );
    frames.inc();
    frames.inc_by(41);
    (registry, rooms)
}

#[test]
fn renders_the_openmetrics_text_under_the_names_given() {
    let (registry, _) = example();
    let expected = "\
# HELP earshot_rooms Rooms served.
# TYPE earshot_rooms gauge
earshot_rooms 3
# HELP earshot_frames_forwarded Audio frames forwarded to children.
# TYPE earshot_frames_forwarded counter
earshot_frames_forwarded_total 42
# EOF
";
    assert_eq!(render(&registry).expect("renders"), expected);
}

#[test]
fn the_node_series_keep_their_names() {
    let mut registry = Registry::default();
    let net = NetMetrics::register(&mut registry);
    net.reservations.set(1);
    let text = render(&registry).expect("renders");
    let mut earshot: Vec<&str> = sample_names(&text)
        .into_iter()
        .filter(|name| name.starts_with("earshot_"))
        .collect();
    earshot.dedup();
    assert_eq!(
        earshot,
        [
            "earshot_connections",
            "earshot_peers",
            "earshot_relay_reservations_open",
            "earshot_relay_circuits_open",
            "earshot_relay_reservations_total",
            "earshot_relay_circuits_total",
            "earshot_relay_denied_total",
            "earshot_event_loop_handling_seconds_sum",
            "earshot_event_loop_handling_seconds_count",
            "earshot_event_loop_handling_seconds_bucket",
            "earshot_requests_over_budget_total",
            "earshot_gossip_over_budget_total",
            "earshot_studio_chunks_kept_total",
            "earshot_studio_chunks_refused_total",
            "earshot_peers_blocked_total",
        ]
    );
    assert!(text.contains("# TYPE earshot_peers gauge\n"), "{text}");
    // OpenMetrics names a counter's family without `_total`: a gauge of that name would
    // declare the family twice, and strict parsers refuse the whole scrape.
    let mut families: Vec<&str> = text
        .lines()
        .filter_map(|line| line.strip_prefix("# TYPE "))
        .filter_map(|line| line.split(' ').next())
        .collect();
    let declared = families.len();
    families.sort_unstable();
    families.dedup();
    assert_eq!(
        families.len(),
        declared,
        "a family is declared twice: {text}"
    );
    assert!(
        text.contains("# TYPE earshot_relay_denied counter\n"),
        "{text}"
    );
    // libp2p's own families are in the same registry (those with labels show once counted).
    for family in [
        "libp2p_swarm_dial_attempt",
        "libp2p_gossipsub_messages",
        "libp2p_identify_errors",
        "libp2p_ping_rtt_seconds",
        "libp2p_kad_query_result_get_record_ok",
    ] {
        assert!(
            text.contains(&format!("# TYPE {family} ")),
            "{family} missing from\n{text}"
        );
    }
}

#[test]
fn a_counter_name_must_end_in_total() {
    let outcome =
        std::panic::catch_unwind(|| counter(&mut Registry::default(), "earshot_frames", "Frames"));
    assert!(outcome.is_err());
}

fn established(peer: PeerId, id: usize, num_established: u32) -> SwarmEvent<BehaviourEvent> {
    SwarmEvent::ConnectionEstablished {
        peer_id: peer,
        connection_id: ConnectionId::new_unchecked(id),
        endpoint: ConnectedPoint::Dialer {
            address: "/ip4/127.0.0.1/tcp/1".parse::<Multiaddr>().expect("addr"),
            role_override: Endpoint::Dialer,
            port_use: PortUse::Reuse,
        },
        num_established: NonZeroU32::new(num_established).expect("not zero"),
        concurrent_dial_errors: None,
        established_in: Duration::from_millis(1),
    }
}

fn closed(peer: PeerId, id: usize, num_established: u32) -> SwarmEvent<BehaviourEvent> {
    SwarmEvent::ConnectionClosed {
        peer_id: peer,
        connection_id: ConnectionId::new_unchecked(id),
        endpoint: ConnectedPoint::Dialer {
            address: "/ip4/127.0.0.1/tcp/1".parse::<Multiaddr>().expect("addr"),
            role_override: Endpoint::Dialer,
            port_use: PortUse::Reuse,
        },
        num_established,
        cause: None,
    }
}

fn relay(event: libp2p::relay::Event) -> SwarmEvent<BehaviourEvent> {
    SwarmEvent::Behaviour(BehaviourEvent::RelayServer(event))
}

#[test]
fn counts_connections_peers_and_circuits_as_events_happen() {
    use libp2p::relay::{Event, StatusCode};
    let mut registry = Registry::default();
    let net = NetMetrics::register(&mut registry);
    let (a, b) = (PeerId::random(), PeerId::random());
    for event in [
        established(a, 1, 1),
        established(a, 2, 2),
        established(b, 3, 1),
        closed(a, 1, 1),
    ] {
        net.record(&event);
    }
    assert_eq!((net.connections.get(), net.peers.get()), (2, 2));
    net.record(&closed(a, 2, 0));
    assert_eq!((net.connections.get(), net.peers.get()), (1, 1));

    let circuit = |accepted: bool| {
        if accepted {
            Event::CircuitReqAccepted {
                src_peer_id: a,
                dst_peer_id: b,
            }
        } else {
            Event::CircuitClosed {
                src_peer_id: a,
                dst_peer_id: b,
                error: None,
            }
        }
    };
    for event in [
        Event::ReservationReqAccepted {
            src_peer_id: a,
            renewed: false,
        },
        Event::ReservationReqAccepted {
            src_peer_id: a,
            renewed: true,
        },
        Event::ReservationReqDenied {
            src_peer_id: b,
            status: StatusCode::ResourceLimitExceeded,
        },
        Event::CircuitReqDenied {
            src_peer_id: b,
            dst_peer_id: a,
            status: StatusCode::ResourceLimitExceeded,
        },
        circuit(true),
        circuit(true),
        circuit(false),
        circuit(false),
        // A close seen twice never takes the gauge below zero.
        circuit(false),
    ] {
        net.record(&relay(event));
    }
    assert_eq!(net.reservations_total.get(), 1);
    assert_eq!(net.reservations.get(), 1);
    assert_eq!(net.denied.get(), 2);
    assert_eq!(net.circuits_total.get(), 2);
    assert_eq!(net.circuits.get(), 0);
    net.record(&relay(circuit(true)));
    assert_eq!(net.circuits.get(), 1);

    // libp2p says a reservation closed whenever a connection closes, even one that held none.
    net.record(&relay(Event::ReservationClosed { src_peer_id: b }));
    assert_eq!(net.reservations.get(), 1);
    net.record(&relay(Event::ReservationTimedOut { src_peer_id: a }));
    assert_eq!(net.reservations.get(), 0);
    net.record(&relay(Event::ReservationClosed { src_peer_id: a }));
    assert_eq!(net.reservations.get(), 0);

    // libp2p counted the same events.
    let text = render(&registry).expect("renders");
    assert!(
        text.contains("libp2p_relay_events_total{event=\"CircuitReqAccepted\"} 3\n"),
        "{text}"
    );
    assert!(
        text.contains("libp2p_swarm_connections_established_total{"),
        "{text}"
    );
}

#[test]
fn unregistered_metrics_still_count() {
    let net = NetMetrics::default();
    net.record(&established(PeerId::random(), 1, 1));
    assert_eq!(net.peers.get(), 1);
}

/// Sends `request`, reads until the server closes, and splits the answer into status line,
/// headers (lower-cased) and body.
async fn exchange(addr: SocketAddr, request: &[u8]) -> (String, String, String) {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    stream.write_all(request).await.expect("write request");
    read_response(&mut stream).await
}

async fn read_response(stream: &mut TcpStream) -> (String, String, String) {
    let mut bytes = Vec::new();
    stream.read_to_end(&mut bytes).await.expect("read response");
    let text = String::from_utf8(bytes).expect("utf-8 response");
    let (head, body) = text.split_once("\r\n\r\n").expect("a response head");
    let (status, headers) = head.split_once("\r\n").expect("a status line");
    (status.to_owned(), headers.to_lowercase(), body.to_owned())
}

/// A request for `/metrics` whose head is exactly `len` bytes.
fn request_of(len: usize) -> Vec<u8> {
    let start = b"GET /metrics HTTP/1.1\r\nx-pad: ";
    let end = b"\r\n\r\n";
    let mut request = start.to_vec();
    request.resize(len - end.len(), b'a');
    request.extend_from_slice(end);
    request
}

async fn start(registry: Registry, limits: Limits) -> (SocketAddr, JoinHandle<()>) {
    let any: SocketAddr = "127.0.0.1:0".parse().expect("an address");
    serve_with(Arc::new(registry), any, limits)
        .await
        .expect("serving")
}

#[tokio::test]
async fn serves_metrics_over_http() {
    let (registry, rooms) = example();
    let expected = render(&registry).expect("renders");
    let any: SocketAddr = "127.0.0.1:0".parse().expect("an address");
    let (addr, server) = serve(registry, any).await.expect("serving");
    assert_ne!(addr.port(), 0);

    let (status, headers, body) = exchange(
        addr,
        b"GET /metrics HTTP/1.1\r\nHost: x\r\nAccept: text/plain\r\n\r\n",
    )
    .await;
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert!(
        headers.contains("content-type: application/openmetrics-text; version=1.0.0"),
        "{headers}"
    );
    assert!(
        headers.contains(&format!("content-length: {}", body.len())),
        "{headers}"
    );
    assert_eq!(body, expected);

    // Counting after a scrape shows in the next one.
    rooms.set(9);
    let (_, _, body) = exchange(addr, b"GET /metrics?x=1 HTTP/1.0\r\n\r\n").await;
    assert!(body.contains("earshot_rooms 9\n"), "{body}");

    let (status, headers, body) = exchange(addr, b"HEAD /metrics HTTP/1.1\r\n\r\n").await;
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert!(headers.contains("content-length: "), "{headers}");
    assert_eq!(body, "");

    let (status, _, _) = exchange(addr, b"GET / HTTP/1.1\r\n\r\n").await;
    assert_eq!(status, "HTTP/1.1 404 Not Found");
    let (status, _, _) = exchange(addr, b"GET /metrics/x HTTP/1.1\r\n\r\n").await;
    assert_eq!(status, "HTTP/1.1 404 Not Found");
    let (status, headers, _) = exchange(addr, b"POST /metrics HTTP/1.1\r\n\r\n").await;
    assert_eq!(status, "HTTP/1.1 405 Method Not Allowed");
    assert!(headers.contains("allow: get, head"), "{headers}");
    server.abort();
}

#[tokio::test]
async fn garbage_gets_400_and_a_head_over_the_bound_431() {
    let (addr, server) = start(Registry::default(), Limits::default()).await;
    for garbage in [
        &b"\x00\x01\x02 hello\r\n\r\n"[..],
        b"GET\r\n\r\n",
        b"GET /metrics\r\n\r\n",
        b"GET /metrics SPDY/3\r\n\r\n",
        b"GET  /metrics HTTP/1.1\r\n\r\n",
        b"G\xffT /metrics HTTP/1.1\r\n\r\n",
    ] {
        let (status, _, _) = exchange(addr, garbage).await;
        assert_eq!(status, "HTTP/1.1 400 Bad Request", "{garbage:?}");
    }
    // A head of exactly the bound is served; one byte more is not, complete or not.
    let (status, _, _) = exchange(addr, &request_of(MAX_HEAD_BYTES)).await;
    assert_eq!(status, "HTTP/1.1 200 OK");
    let (status, _, _) = exchange(addr, &request_of(MAX_HEAD_BYTES + 1)).await;
    assert_eq!(status, "HTTP/1.1 431 Request Header Fields Too Large");
    let endless = vec![b'A'; MAX_HEAD_BYTES + 1];
    let (status, _, _) = exchange(addr, &endless).await;
    assert_eq!(status, "HTTP/1.1 431 Request Header Fields Too Large");
    server.abort();
}

#[tokio::test]
async fn a_silent_client_holds_up_nobody_and_loses_its_connection() {
    let limits = Limits {
        client_timeout: Duration::from_millis(200),
        ..Limits::default()
    };
    let (registry, _) = example();
    let (addr, server) = start(registry, limits).await;
    let mut silent = TcpStream::connect(addr).await.expect("connect");
    silent.write_all(b"GET /met").await.expect("write");
    let (status, _, _) = exchange(addr, b"GET /metrics HTTP/1.1\r\n\r\n").await;
    assert_eq!(status, "HTTP/1.1 200 OK");
    // The silent client is cut off once its time is up, without an answer.
    let mut rest = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(2), silent.read_to_end(&mut rest)).await;
    match read {
        Ok(Ok(_)) | Ok(Err(_)) => assert!(rest.is_empty(), "{rest:?}"),
        Err(_) => panic!("the silent client was not cut off"),
    }
    server.abort();
}

#[tokio::test]
async fn a_client_that_does_not_take_its_answer_loses_its_slot() {
    let limits = Limits {
        client_timeout: Duration::from_secs(1),
        max_connections: 1,
    };
    // An answer larger than the server's socket buffer can hold (4 MiB at most on Linux), so
    // the server waits on a client that does not read.
    let mut registry = Registry::default();
    let filler = Family::<Vec<(String, String)>, Gauge>::default();
    registry.register("filler", "Filler, to make a large answer", filler.clone());
    for n in 0..300_000 {
        drop(filler.get_or_create(&vec![("n".to_owned(), n.to_string())]));
    }
    let (addr, server) = start(registry, limits).await;
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket.set_recv_buffer_size(4096).expect("buffer size");
    let mut stalled = socket.connect(addr).await.expect("connect");
    stalled
        .write_all(b"GET /metrics HTTP/1.1\r\n\r\n")
        .await
        .expect("write");
    tokio::time::sleep(Duration::from_millis(100)).await;
    // (Not sending a request: the refusal closes the socket unread, which would reset it.)
    let mut refused = TcpStream::connect(addr).await.expect("connect");
    let (status, _, _) = read_response(&mut refused).await;
    assert_eq!(status, "HTTP/1.1 503 Service Unavailable");
    // Once its time is up, the stalled client is cut off and its slot is free again: a new
    // connection is not refused (a refusal comes at once) but waits for its request.
    tokio::time::sleep(3 * limits.client_timeout).await;
    let mut next = TcpStream::connect(addr).await.expect("connect");
    let mut byte = [0u8; 1];
    let read = tokio::time::timeout(Duration::from_millis(300), next.read(&mut byte)).await;
    assert!(read.is_err(), "the slot is still taken: {read:?}");
    drop(stalled);
    server.abort();
}

#[tokio::test]
async fn connections_past_the_bound_get_503() {
    let limits = Limits {
        max_connections: 1,
        ..Limits::default()
    };
    let (registry, _) = example();
    let (addr, server) = start(registry, limits).await;
    let mut first = TcpStream::connect(addr).await.expect("connect");
    // The second connection is accepted after the first and finds its slot taken.
    let mut second = TcpStream::connect(addr).await.expect("connect");
    let (status, headers, body) = read_response(&mut second).await;
    assert_eq!(status, "HTTP/1.1 503 Service Unavailable");
    assert!(
        headers.contains(&format!("content-length: {}", body.len())),
        "{headers}"
    );
    // The first is still served.
    first
        .write_all(b"GET /metrics HTTP/1.1\r\n\r\n")
        .await
        .expect("write");
    let (status, _, _) = read_response(&mut first).await;
    assert_eq!(status, "HTTP/1.1 200 OK");
    server.abort();
}

#[tokio::test]
async fn binding_a_taken_port_is_a_typed_error() {
    let (addr, server) = start(Registry::default(), Limits::default()).await;
    match serve(Registry::default(), addr).await {
        Err(MetricsError::Bind { addr: failed, .. }) => assert_eq!(failed, addr),
        other => panic!("expected a bind error, got {other:?}"),
    }
    server.abort();
}
