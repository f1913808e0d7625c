//! In-process nodes on 127.0.0.1 for multi-node tests: start nodes, host rooms, issue invites,
//! and wait for events with a timeout (never sleep).

use std::collections::VecDeque;
use std::time::Duration;

use earshot_node::Event;
use earshot_node::identity::Identity;
use earshot_node::node::{Node, NodeConfig};
use earshot_protocol::room::RoomSpec;
use earshot_protocol::{
    Audience, Capability, Grant, InviteLink, PeerKey, RecordingPolicy, Role, RoomDescriptor,
    RoomId, Timestamp, Visibility,
};
use tokio::sync::broadcast;

/// How long any single wait may take before the test fails.
pub const WAIT: Duration = Duration::from_secs(15);

/// A node running in this process, with its own data directory and event stream.
pub struct TestNode {
    pub name: String,
    pub node: Node,
    pub signing: ed25519_dalek::SigningKey,
    events: broadcast::Receiver<Event>,
    /// The last events seen, printed when a wait fails.
    recent: VecDeque<Event>,
    /// Events not yet consumed by a wait.
    backlog: VecDeque<Event>,
    _home: tempfile::TempDir,
}

impl TestNode {
    pub async fn start(name: &str) -> Self {
        Self::start_with(name, Vec::new()).await
    }

    pub async fn start_with(name: &str, bootstrap: Vec<multiaddr::Multiaddr>) -> Self {
        Self::start_config(name, bootstrap, false).await
    }

    /// A node whose audio streams the test opens itself (it does not attach to its rooms'
    /// trees on its own).
    pub async fn by_hand(name: &str) -> Self {
        Self::start_config(name, Vec::new(), true).await
    }

    /// [`Self::by_hand`], neither signing nor checking frames: for stress tests of the plane
    /// alone at rates no room has (a debug build cannot sign or verify proofs that fast).
    pub async fn by_hand_unchecked(name: &str) -> Self {
        Self::start_node(name, Vec::new(), true, true).await
    }

    async fn start_config(
        name: &str,
        bootstrap: Vec<multiaddr::Multiaddr>,
        tree_by_hand: bool,
    ) -> Self {
        Self::start_node(name, bootstrap, tree_by_hand, false).await
    }

    async fn start_node(
        name: &str,
        bootstrap: Vec<multiaddr::Multiaddr>,
        tree_by_hand: bool,
        unchecked_audio: bool,
    ) -> Self {
        let home = crate::harness::private_dir();
        let identity = Identity::create(home.path()).expect("identity");
        let signing = identity.signing_key().clone();
        let node = Node::spawn(
            identity,
            NodeConfig {
                listen: vec!["/ip4/127.0.0.1/udp/0/quic-v1".parse().expect("multiaddr")],
                bootstrap,
                tree_by_hand,
                unchecked_audio,
                ..NodeConfig::default()
            },
        )
        .await
        .expect("node starts");
        let events = node.subscribe();
        Self {
            name: name.to_owned(),
            node,
            signing,
            events,
            recent: VecDeque::new(),
            backlog: VecDeque::new(),
            _home: home,
        }
    }

    pub fn key(&self) -> PeerKey {
        self.node.key()
    }

    /// Waits for an event matching `predicate`, failing the test after [`WAIT`]. Events that
    /// arrived earlier and were not consumed by a previous wait count too, so the order in which
    /// gossip delivers two awaited events does not matter.
    pub async fn wait_for(&mut self, what: &str, predicate: impl Fn(&Event) -> bool) -> Event {
        if let Some(index) = self.backlog.iter().position(&predicate) {
            return self.backlog.remove(index).expect("index is in range");
        }
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            match tokio::time::timeout_at(deadline, self.events.recv()).await {
                Ok(Ok(event)) => {
                    if self.recent.len() == 30 {
                        self.recent.pop_front();
                    }
                    self.recent.push_back(event.clone());
                    if predicate(&event) {
                        return event;
                    }
                    if self.backlog.len() == 4096 {
                        self.backlog.pop_front();
                    }
                    self.backlog.push_back(event);
                }
                Ok(Err(broadcast::error::RecvError::Lagged(n))) => {
                    panic!(
                        "{}: fell {n} events behind while waiting for {what}",
                        self.name
                    )
                }
                Ok(Err(broadcast::error::RecvError::Closed)) => {
                    panic!("{}: node stopped while waiting for {what}", self.name)
                }
                Err(_) => panic!(
                    "{}: timed out after {WAIT:?} waiting for {what}; last events:\n{:#?}",
                    self.name, self.recent
                ),
            }
        }
    }

    /// Hosts a new room on this node; returns its descriptor.
    pub async fn host(&self, title: &str, visibility: Visibility) -> RoomDescriptor {
        let addrs = self.node.listen_addrs().await.expect("listen addresses");
        let mut id = [0u8; 16];
        getrandom::fill(&mut id).expect("random");
        let descriptor = RoomDescriptor::sign(
            &self.signing,
            RoomSpec {
                id: RoomId(id),
                title: title.to_owned(),
                visibility,
                recording: RecordingPolicy::default(),
                created_at: earshot_node::clock::now(),
                addrs,
                limits: earshot_protocol::RoomLimits::default(),
            },
        )
        .expect("descriptor");
        self.node
            .host(descriptor.clone(), &self.name)
            .await
            .expect("host the room");
        descriptor
    }
}

/// A grant valid from a minute ago for an hour.
pub fn grant(role: Role, audience: Audience, depth: u8) -> Grant {
    let now = earshot_node::clock::now();
    Grant {
        audience,
        role,
        not_before: Timestamp(now.as_millis() - 60_000),
        expires_at: now.plus_millis(3_600_000),
        depth,
    }
}

/// An invite link to `room` issued by its host.
pub fn invite(host: &TestNode, room: &RoomDescriptor, grant: Grant) -> InviteLink {
    let mut nonce = [0u8; 8];
    getrandom::fill(&mut nonce).expect("random");
    InviteLink {
        starts_at: None,
        capability: Capability::issue(&host.signing, room.id, grant, nonce).expect("issue"),
        host: room.host,
        bootstrap: room.addrs(),
    }
}

/// A link delegated by `holder` from `parent`, within the parent's validity window.
pub fn delegate(holder: &TestNode, parent: &InviteLink, mut grant: Grant) -> InviteLink {
    grant.not_before = grant.not_before.max(parent.capability.not_before);
    grant.expires_at = grant.expires_at.min(parent.capability.expires_at);
    let mut nonce = [0u8; 8];
    getrandom::fill(&mut nonce).expect("random");
    InviteLink {
        starts_at: None,
        capability: parent
            .capability
            .delegate(&holder.signing, grant, nonce)
            .expect("delegate"),
        ..parent.clone()
    }
}
