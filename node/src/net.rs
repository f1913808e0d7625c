//! The libp2p side: the composed behaviour, the swarm it runs in, and the room protocol's codec.
//!
//! Transports: QUIC first (one lost packet does not stall other streams), TCP + noise + yamux as
//! the fallback, and the relay client for `/p2p-circuit` addresses. Behaviours: gossipsub (room
//! control and the lobby), request-response (`/earshot/room/1`: join handshake and lobby
//! queries), identify, ping, Kademlia, relay client, DCUtR and AutoNAT v2.

use std::io;
use std::time::Duration;

use earshot_protocol::snapshot::{MAX_REQUEST_BYTES, MAX_RPC_BYTES, RoomRequest, RoomResponse};
use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use libp2p::gossipsub::{self, MessageAuthenticity, ValidationMode};
use libp2p::swarm::NetworkBehaviour;
use libp2p::swarm::behaviour::toggle::Toggle;
use libp2p::{
    StreamProtocol, Swarm, autonat, connection_limits, dcutr, identify, kad, noise, ping, relay,
};
use libp2p::{request_response, tcp, yamux};
use sha2::{Digest, Sha256};

use crate::identity::Identity;

/// The room protocol: join handshake and lobby queries.
pub const ROOM_PROTOCOL: StreamProtocol = StreamProtocol::new("/earshot/room/1");
/// Kademlia's protocol name for Earshot's DHT.
pub const KAD_PROTOCOL: StreamProtocol = StreamProtocol::new("/earshot/kad/1");
/// Identify's protocol version string.
pub const IDENTIFY_VERSION: &str = "/earshot/1";
/// Largest gossipsub message: an envelope or announcement, with room to spare.
pub const MAX_GOSSIP_BYTES: usize = 16 * 1024;

pub mod conduct;
pub mod per_address;
pub use self::per_address::{PerAddress, PerAddressLimits};

/// Knobs of the network layer that tests and benchmarks turn.
#[derive(Clone, Debug)]
pub struct NetConfig {
    /// Gossipsub heartbeat: how often meshes are repaired and gossip is emitted.
    pub gossip_heartbeat: Duration,
    /// How long a connection with no open streams stays up.
    pub idle_timeout: Duration,
    /// How long a join handshake or lobby query may take.
    pub request_timeout: Duration,
    /// Serve as a circuit relay (v2) for nodes behind NATs, with these limits, and as an
    /// AutoNAT server and Kademlia server: what a community relay does.
    pub relay_server: Option<RelayServerConfig>,
    /// Most connections in all, and per peer, and handshakes in progress from others at once
    /// (none: unlimited).
    pub max_connections: Option<u32>,
    pub max_connections_per_peer: Option<u32>,
    pub max_pending_incoming: Option<u32>,
    /// Inbound connections from one IP address: at most so many at once and so fast (none:
    /// unlimited; in-process tests and benches with hundreds of nodes on 127.0.0.1 turn it
    /// off). See [`per_address`].
    pub per_address: Option<PerAddressLimits>,
    /// A community relay carries up to this many rooms' audio for hosts that ask (0: refuse).
    pub carry_rooms: usize,
    /// Refuse new connections while the process uses more memory than this (bytes).
    pub max_memory: Option<usize>,
    /// Behave as if behind a home router (see [`crate::nat`]): for tests and demos on one
    /// machine.
    pub emulate_nat: Option<crate::nat::NatKind>,
    /// How often AutoNAT probes untested addresses of this node.
    pub autonat_probe_interval: Duration,
    /// Children this node feeds across all its rooms together (a community relay's upload
    /// budget); each room gets what is left, up to the per-room limit. None: no total.
    pub children_budget: Option<usize>,
    /// Where the event loop counts connections, peers, circuits and libp2p's own metrics. The
    /// default counts into handles that no registry shows (see [`crate::metrics`]).
    pub metrics: crate::metrics::NetMetrics,
}

/// New reservations, and new circuits, one peer may ask for every two minutes (libp2p's own).
const PER_PEER_RATE: std::num::NonZeroU32 = match std::num::NonZeroU32::new(30) {
    Some(rate) => rate,
    None => panic!("30 is not zero"),
};

/// A circuit relay's limits. rust-libp2p's defaults (2 minutes and 128 KiB per circuit) would
/// cut a 32 kbit/s room after about 30 seconds: a relay for live audio allows hours. The
/// defaults are `earshot relay`'s (its config file falls back to them).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RelayServerConfig {
    pub max_reservations: usize,
    pub max_reservations_per_peer: usize,
    pub reservation_duration: Duration,
    pub max_circuits: usize,
    pub max_circuits_per_peer: usize,
    pub max_circuit_duration: Duration,
    pub max_circuit_bytes: u64,
    /// New reservations, and new circuits, one IP address may ask for per minute (libp2p's
    /// default of 60 would refuse the 61st listener behind one campus NAT for a minute).
    pub new_per_ip_per_minute: std::num::NonZeroU32,
}

impl Default for RelayServerConfig {
    fn default() -> Self {
        Self {
            max_reservations: 512,
            max_reservations_per_peer: 4,
            reservation_duration: Duration::from_secs(3600),
            max_circuits: 256,
            max_circuits_per_peer: 8,
            max_circuit_duration: Duration::from_secs(4 * 3600),
            // Four hours of a 32 kbit/s stream each way, with room to spare.
            max_circuit_bytes: 1 << 30,
            new_per_ip_per_minute: std::num::NonZeroU32::new(600).expect("not zero"),
        }
    }
}

/// Connections a node keeps at most, by default.
pub const DEFAULT_MAX_CONNECTIONS: u32 = 4096;
/// Connections to one peer at most, by default (QUIC, TCP, relayed, hole-punched).
pub const DEFAULT_MAX_CONNECTIONS_PER_PEER: u32 = 8;
/// Connections kept for this node's own dials when inbound ones fill it (see `per_address`).
pub const INBOUND_HEADROOM: u32 = 64;
/// Inbound handshakes in progress at once, by default.
pub const DEFAULT_MAX_PENDING_INCOMING: u32 = 256;

impl Default for NetConfig {
    fn default() -> Self {
        Self {
            // Faster than gossipsub's 1 s default: rooms are small meshes where a quick graft
            // after a join matters more than the extra control traffic.
            gossip_heartbeat: Duration::from_millis(250),
            idle_timeout: Duration::from_secs(60),
            request_timeout: Duration::from_secs(10),
            relay_server: None,
            // Every node, not only community relays: a stranger's flood of connections stops
            // here (a host's tree gives it a few children; joiners' connections close after
            // `idle_timeout`).
            max_connections: Some(DEFAULT_MAX_CONNECTIONS),
            max_connections_per_peer: Some(DEFAULT_MAX_CONNECTIONS_PER_PEER),
            max_pending_incoming: Some(DEFAULT_MAX_PENDING_INCOMING),
            per_address: Some(PerAddressLimits::default()),
            carry_rooms: 0,
            max_memory: None,
            emulate_nat: None,
            // libp2p's default is 5 s; a verdict within a couple of seconds lets a host behind
            // a NAT hand out a working link sooner.
            autonat_probe_interval: Duration::from_secs(1),
            children_budget: None,
            metrics: crate::metrics::NetMetrics::default(),
        }
    }
}

#[derive(NetworkBehaviour)]
pub struct Behaviour {
    pub gossipsub: gossipsub::Behaviour,
    pub rooms: request_response::Behaviour<RoomCodec>,
    pub identify: identify::Behaviour,
    pub ping: ping::Behaviour,
    pub kad: kad::Behaviour<kad::store::MemoryStore>,
    pub relay: relay::client::Behaviour,
    pub dcutr: dcutr::Behaviour,
    pub autonat: autonat::v2::client::Behaviour,
    /// Audio streams (`/earshot/audio/2`), driven outside the event loop through its `Control`.
    pub stream: libp2p_stream::Behaviour,
    /// Community relays only: the circuit relay server and the AutoNAT server.
    pub relay_server: Toggle<relay::Behaviour>,
    pub autonat_server: Toggle<autonat::v2::server::Behaviour>,
    pub limits: connection_limits::Behaviour,
    pub per_address: Toggle<PerAddress>,
    pub memory: Toggle<libp2p::memory_connection_limits::Behaviour>,
    pub nat: Toggle<crate::nat::EmulatedNat>,
    /// Peers caught misbehaving on streams: disconnected and kept out (see [`conduct`]).
    pub conduct: conduct::ConductBehaviour,
}

impl std::fmt::Debug for Behaviour {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Behaviour")
    }
}

/// Why the swarm could not be built.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    #[error("could not set up the transport: {0}")]
    Transport(String),
    #[error("could not configure gossipsub: {0}")]
    Gossipsub(String),
}

/// Builds the swarm for `identity`.
pub fn build_swarm(identity: &Identity, config: &NetConfig) -> Result<Swarm<Behaviour>, NetError> {
    let keypair = identity.libp2p_keypair();
    let gossip_config = gossipsub::ConfigBuilder::default()
        .validation_mode(ValidationMode::Strict)
        .validate_messages()
        .message_id_fn(|message: &gossipsub::Message| {
            // Content-addressed: the same envelope forwarded by two peers is one message.
            gossipsub::MessageId::from(&Sha256::digest(&message.data)[..20])
        })
        .max_transmit_size(MAX_GOSSIP_BYTES)
        .heartbeat_interval(config.gossip_heartbeat)
        // Advertise recent messages for 3 s (12 heartbeats) to peers outside the mesh, and to
        // half of them each time: a member that joined a moment ago, and is not in anyone's
        // mesh yet, still hears what was said meanwhile.
        .history_length(16)
        .history_gossip(12)
        .gossip_factor(0.5)
        .duplicate_cache_time(Duration::from_secs(120))
        .build()
        .map_err(|err| NetError::Gossipsub(err.to_string()))?;
    let peer_id = keypair.public().to_peer_id();
    let request_timeout = config.request_timeout;
    let idle_timeout = config.idle_timeout;
    let relay_server = config.relay_server.clone();
    let max_memory = config.max_memory;
    // Inbound connections stop a little under the total, where a newcomer from a quiet
    // address takes the place of one from the busiest (see `per_address`).
    let per_address = config.per_address.map(|limits| PerAddressLimits {
        max_inbound: config
            .max_connections
            .map(|max| max.saturating_sub(INBOUND_HEADROOM).max(1)),
        ..limits
    });
    let emulate_nat = config.emulate_nat;
    let autonat_config =
        autonat::v2::client::Config::default().with_probe_interval(config.autonat_probe_interval);
    let limits = connection_limits::ConnectionLimits::default()
        .with_max_established(config.max_connections)
        .with_max_established_per_peer(config.max_connections_per_peer)
        .with_max_pending_incoming(config.max_pending_incoming);
    let swarm = libp2p::SwarmBuilder::with_existing_identity(keypair)
        .with_tokio()
        .with_tcp(
            tcp::Config::default().nodelay(true),
            noise::Config::new,
            yamux::Config::default,
        )
        .map_err(|err| NetError::Transport(err.to_string()))?
        .with_quic()
        // libp2p-relay 0.22's client hands one queued inbound circuit to its transport
        // listener per poll of the connection handler and does not wake itself for the rest
        // (`Reservation::forward_messages_to_transport_listener`): a burst of listeners
        // reaching a relayed node waits for other traffic on its connection to the relay.
        // Real nodes talk enough there (gossip, identify, AutoNAT) that ten listeners joining a
        // relayed host at once all heard it within 0.6-3.3 s; the `community_relay` bench, whose
        // bare children say nothing else, connects them one at a time.
        .with_relay_client(noise::Config::new, yamux::Config::default)
        .map_err(|err| NetError::Transport(err.to_string()))?
        .with_bandwidth_metrics(&mut config.metrics.bandwidth.lock())
        .with_behaviour(|key, relay| {
            let mut gossipsub =
                gossipsub::Behaviour::new(MessageAuthenticity::Signed(key.clone()), gossip_config)?;
            gossipsub.with_peer_score(score_params(), score_thresholds())?;
            let mut kad_config = kad::Config::new(KAD_PROTOCOL);
            kad_config.set_query_timeout(Duration::from_secs(30));
            // Bootstrapping is driven by the nodes we dial (links, --bootstrap), not a timer
            // that warns while a node knows nobody yet.
            kad_config.set_periodic_bootstrap_interval(None);
            let mut kad = kad::Behaviour::with_config(
                peer_id,
                kad::store::MemoryStore::new(peer_id),
                kad_config,
            );
            if relay_server.is_some() {
                // A community relay is a bootstrap node: it answers DHT queries at once,
                // whatever AutoNAT would conclude.
                kad.set_mode(Some(kad::Mode::Server));
            }
            let relay_server = relay_server.map(|limits| {
                relay::Behaviour::new(
                    peer_id,
                    relay::Config {
                        max_reservations: limits.max_reservations,
                        max_reservations_per_peer: limits.max_reservations_per_peer,
                        reservation_duration: limits.reservation_duration,
                        max_circuits: limits.max_circuits,
                        max_circuits_per_peer: limits.max_circuits_per_peer,
                        max_circuit_duration: limits.max_circuit_duration,
                        max_circuit_bytes: limits.max_circuit_bytes,
                        reservation_rate_limiters: Vec::new(),
                        circuit_src_rate_limiters: Vec::new(),
                    }
                    // libp2p's per-peer rates; the per-IP ones raised (see the field).
                    .reservation_rate_per_peer(PER_PEER_RATE, Duration::from_secs(120))
                    .circuit_src_per_peer(PER_PEER_RATE, Duration::from_secs(120))
                    .reservation_rate_per_ip(limits.new_per_ip_per_minute, Duration::from_secs(60))
                    .circuit_src_per_ip(limits.new_per_ip_per_minute, Duration::from_secs(60)),
                )
            });
            let autonat_server = relay_server
                .is_some()
                .then(autonat::v2::server::Behaviour::default);
            Ok(Behaviour {
                gossipsub,
                rooms: request_response::Behaviour::with_codec(
                    RoomCodec,
                    [(ROOM_PROTOCOL, request_response::ProtocolSupport::Full)],
                    request_response::Config::default()
                        .with_request_timeout(request_timeout)
                        .with_max_concurrent_streams(MAX_REQUESTS_PER_CONNECTION),
                ),
                identify: identify::Behaviour::new(
                    identify::Config::new(IDENTIFY_VERSION.into(), key.public())
                        .with_agent_version(format!("earshot/{}", env!("CARGO_PKG_VERSION"))),
                ),
                ping: ping::Behaviour::default(),
                kad,
                relay,
                dcutr: dcutr::Behaviour::new(peer_id),
                autonat: autonat::v2::client::Behaviour::new(
                    rand::make_rng::<rand::rngs::StdRng>(),
                    autonat_config,
                ),
                stream: libp2p_stream::Behaviour::new(),
                relay_server: relay_server.into(),
                autonat_server: autonat_server.into(),
                limits: connection_limits::Behaviour::new(limits),
                per_address: per_address.map(PerAddress::new).into(),
                memory: max_memory
                    .map(libp2p::memory_connection_limits::Behaviour::with_max_bytes)
                    .into(),
                nat: emulate_nat.map(crate::nat::EmulatedNat::new).into(),
                conduct: conduct::Conduct::default().behaviour(),
            })
        })
        .map_err(|err| NetError::Transport(err.to_string()))?
        .with_swarm_config(|swarm| swarm.with_idle_connection_timeout(idle_timeout))
        .build();
    Ok(swarm)
}

/// Peer scoring without the IP-colocation penalty: many honest members of a room share an
/// address (an office, a campus, carrier-grade NAT, or 127.0.0.1 in tests), and admission to a
/// room is already gated by capabilities, so sybils gain nothing from sharing an IP. (With the
/// default, a room of 50 nodes on one address graylisted everyone.)
fn score_params() -> gossipsub::PeerScoreParams {
    gossipsub::PeerScoreParams {
        ip_colocation_factor_weight: 0.0,
        ..Default::default()
    }
}

/// Per-topic scoring for room topics: invalid messages cost a lot, and nothing else counts
/// against a peer (quiet rooms must not look like misbehaving meshes). The penalty grows with
/// the square of the count: one invalid message takes a peer below the gossip threshold, two
/// graylist it (everything it sends is ignored); the count decays by 10% a second, so an honest
/// relay that forwarded one bad message in a race recovers.
pub fn room_topic_score() -> gossipsub::TopicScoreParams {
    gossipsub::TopicScoreParams {
        topic_weight: 1.0,
        mesh_message_deliveries_weight: 0.0,
        mesh_failure_penalty_weight: 0.0,
        first_message_deliveries_weight: 0.5,
        invalid_message_deliveries_weight: -20.0,
        invalid_message_deliveries_decay: 0.9,
        ..Default::default()
    }
}

/// See [`room_topic_score`]: -20 after one invalid message, -80 after two.
fn score_thresholds() -> gossipsub::PeerScoreThresholds {
    gossipsub::PeerScoreThresholds {
        gossip_threshold: -10.0,
        publish_threshold: -50.0,
        graylist_threshold: -79.0,
        accept_px_threshold: 10.0,
        opportunistic_graft_threshold: 5.0,
    }
}

/// Room-protocol requests one connection may have open at once (libp2p's default is 100; a node
/// asks a peer one or two things at a time).
pub const MAX_REQUESTS_PER_CONNECTION: usize = 16;

/// Length-prefixed postcard on the room protocol.
#[derive(Clone, Copy, Debug, Default)]
pub struct RoomCodec;

/// Reads one length-prefixed message of at most `max` bytes (a longer one is refused before
/// anything of it is read).
async fn read_frame<T: AsyncRead + Unpin + Send>(io: &mut T, max: usize) -> io::Result<Vec<u8>> {
    let mut len = [0u8; 4];
    io.read_exact(&mut len).await?;
    let len = u32::from_be_bytes(len) as usize;
    if len > max {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{len}-byte message is over the {max}-byte limit"),
        ));
    }
    let mut bytes = vec![0; len];
    io.read_exact(&mut bytes).await?;
    Ok(bytes)
}

async fn write_frame<T: AsyncWrite + Unpin + Send>(io: &mut T, bytes: &[u8]) -> io::Result<()> {
    let len = u32::try_from(bytes.len())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "message too large"))?;
    io.write_all(&len.to_be_bytes()).await?;
    io.write_all(bytes).await?;
    io.close().await
}

fn invalid(err: impl std::fmt::Display) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, err.to_string())
}

impl request_response::Codec for RoomCodec {
    type Protocol = StreamProtocol;
    type Request = RoomRequest;
    type Response = RoomResponse;

    async fn read_request<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<RoomRequest>
    where
        T: AsyncRead + Unpin + Send,
    {
        RoomRequest::decode(&read_frame(io, MAX_REQUEST_BYTES).await?).map_err(invalid)
    }

    async fn read_response<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<RoomResponse>
    where
        T: AsyncRead + Unpin + Send,
    {
        RoomResponse::decode(&read_frame(io, MAX_RPC_BYTES).await?).map_err(invalid)
    }

    async fn write_request<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        request: RoomRequest,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        write_frame(io, &request.encode()).await
    }

    async fn write_response<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        response: RoomResponse,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        write_frame(io, &response.encode()).await
    }
}

#[cfg(test)]
mod tests {
    use libp2p::request_response::Codec;

    use super::*;

    #[tokio::test]
    async fn a_request_over_the_limit_is_refused_before_it_is_read() {
        // A stranger announces a 4 MiB request and sends 8 bytes of it: refused from the
        // length alone (nothing of that size is allocated or waited for).
        let mut bytes = (4u32 << 20).to_be_bytes().to_vec();
        bytes.extend_from_slice(&[0; 8]);
        let mut io = futures::io::Cursor::new(bytes);
        let err = RoomCodec
            .read_request(&ROOM_PROTOCOL, &mut io)
            .await
            .expect_err("refused");
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        assert!(err.to_string().contains("limit"), "{err}");
        // The largest honest request fits.
        let join = RoomRequest::Join {
            envelope: serde_bytes::ByteBuf::from(
                vec![0; earshot_protocol::envelope::MAX_ENVELOPE_BYTES],
            ),
        };
        assert!(join.encode().len() <= MAX_REQUEST_BYTES);
    }
}
