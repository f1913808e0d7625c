//! The event loop's gossip: the lobby's and each room's topic (a private room's named from its
//! topic secret, its messages sealed), what arrives on them, and eavesdropping for tests.

use std::collections::HashMap;

use earshot_protocol::RoomId;
use libp2p::gossipsub::{self, IdentTopic, MessageAcceptance, TopicHash};
use libp2p::{PeerId, Swarm};
use tokio::sync::mpsc;
use tracing::warn;

use super::rates::PeerRates;
use super::{EventLoop, now};
use crate::effect::Effect;
use crate::net::{self, Behaviour};
use crate::rooms::Verdict;

/// Gossipsub topics: the lobby and each room's.
pub(super) struct Topics {
    pub(super) lobby: IdentTopic,
    pub(super) rooms: HashMap<TopicHash, RoomId>,
    /// Private rooms' topics, named from a secret only members hold.
    pub(super) private: HashMap<RoomId, IdentTopic>,
    /// Topics followed only to hand their messages over (tests: [`crate::node::Node::eavesdrop`]).
    pub(super) eavesdropped: HashMap<TopicHash, mpsc::UnboundedSender<Vec<u8>>>,
    /// How fast each peer may forward messages to this node (see `rates`).
    pub(super) rates: PeerRates,
}

impl Topics {
    pub(super) fn of(&self, room: &RoomId) -> IdentTopic {
        self.private
            .get(room)
            .cloned()
            .unwrap_or_else(|| IdentTopic::new(earshot_protocol::topic::room(room)))
    }
}

impl EventLoop {
    /// A private room's topic is named from its topic secret: once this node holds it, it
    /// follows that topic instead (if it follows the room's topic at all: the stage does).
    pub(super) fn private_topic(&mut self, room: RoomId, ring: &earshot_protocol::private::Ring) {
        let Some(secret) = ring.topic() else {
            return;
        };
        let private = IdentTopic::new(secret.topic_name());
        let current = self.topics.of(&room);
        if current.hash() == private.hash() {
            return;
        }
        let following = self.topics.rooms.remove(&current.hash()).is_some();
        if following {
            let _ = self.swarm.behaviour_mut().gossipsub.unsubscribe(&current);
        }
        self.topics.private.insert(room, private);
        if following && let Err(err) = self.subscribe(room) {
            warn!(%room, %err, "could not follow the private room's topic");
        }
    }

    /// Follows `room`'s topic (before hosting or joining it).
    pub(super) fn subscribe(&mut self, room: RoomId) -> Result<(), gossipsub::SubscriptionError> {
        let topic = self.topics.of(&room);
        let gossipsub = &mut self.swarm.behaviour_mut().gossipsub;
        gossipsub.subscribe(&topic)?;
        let _ = gossipsub.set_topic_params(topic.clone(), net::room_topic_score());
        self.topics.rooms.insert(topic.hash(), room);
        Ok(())
    }

    pub(super) fn on_gossip(&mut self, event: gossipsub::Event) {
        let now = now();
        match event {
            gossipsub::Event::Message {
                propagation_source,
                message_id,
                message,
            } => {
                let over = !self
                    .topics
                    .rates
                    .take(propagation_source, std::time::Instant::now());
                if over {
                    self.outside.metrics.gossip_over_budget.inc();
                }
                let (verdict, effects) = if over {
                    // Past its budget: not verified, not forwarded, nobody blamed.
                    (Verdict::Ignore, Vec::new())
                } else if let Some(tap) = self.topics.eavesdropped.get(&message.topic) {
                    let _ = tap.send(message.data.clone());
                    (Verdict::Ignore, Vec::new())
                } else if message.topic == self.topics.lobby.hash() {
                    let (verdict, event) = self.lobby.on_announcement(now.wall, &message.data);
                    (verdict, event.map(Effect::Emit).into_iter().collect())
                } else {
                    let room = self.topics.rooms.get(&message.topic).copied();
                    // A private room's messages open with its keys, or are not read.
                    match room.and_then(|room| Some((room, self.plane.fanout.keys(&room)?))) {
                        Some((room, ring)) => match ring.open(&room, &message.data) {
                            Ok(plain) => self.rooms.on_message(
                                now,
                                propagation_source,
                                message.source,
                                Some(room),
                                &plain,
                            ),
                            Err(err) => {
                                tracing::debug!(%room, %err, "a message this node cannot open");
                                (Verdict::Ignore, Vec::new())
                            }
                        },
                        None => self.rooms.on_message(
                            now,
                            propagation_source,
                            message.source,
                            room,
                            &message.data,
                        ),
                    }
                };
                let acceptance = match verdict {
                    Verdict::Accept => MessageAcceptance::Accept,
                    Verdict::Ignore => MessageAcceptance::Ignore,
                    Verdict::Reject => MessageAcceptance::Reject,
                };
                self.swarm
                    .behaviour_mut()
                    .gossipsub
                    .report_message_validation_result(&message_id, &propagation_source, acceptance);
                self.apply(effects);
            }
            gossipsub::Event::Subscribed { .. } => {
                let follows = follows(&self.swarm, &self.topics);
                let effects = self.rooms.on_subscribed(now, follows, &self.peers);
                self.apply(effects);
            }
            _ => {}
        }
    }
}

/// Whether a peer follows a room's topic, as gossipsub knows (so that our publishes reach it).
pub(super) fn follows<'a>(
    swarm: &'a Swarm<Behaviour>,
    topics: &'a Topics,
) -> impl Fn(&PeerId, &RoomId) -> bool + 'a {
    move |peer, room| {
        let topic = topics.of(room).hash();
        swarm
            .behaviour()
            .gossipsub
            .all_peers()
            .any(|(p, topics)| p == peer && topics.contains(&&topic))
    }
}
