//! The room protocol (`/earshot/room/1`) at the event loop: requests from others go to the
//! machine they concern; answers to ours go to what waits for them ([`Pending`]).

use earshot_protocol::snapshot::{Placement, Refusal, RoomRequest, RoomResponse};
use earshot_protocol::{PeerKey, RoomId};
use libp2p::PeerId;
use libp2p::request_response;

use std::collections::HashMap;

use libp2p::request_response::{OutboundRequestId, ResponseChannel};

use super::rates::{self, PeerRates};
use super::{EventLoop, follows, now};
use crate::clock;
use crate::effect::{Effect, InboundId};
use crate::event::Event;
use crate::lobby;
use crate::node::pending::Pending;
use crate::node::{AttachError, BadAnswer, CarryError, JoinError, LobbyError, RequestFailure};
use crate::rooms::Placing;

/// Most addresses a placement hands a child for its parent.
const MAX_PARENT_ADDRS: usize = 8;
/// How long an admitted listener's answer waits for a place in a full tree (places come up
/// with the reports of nodes just attached, a few hundred milliseconds a hop).
const PLACE_WAIT: std::time::Duration = std::time::Duration::from_secs(1);

/// Requests in flight on the room protocol, both ways, and each peer's budget of requests.
pub(super) struct Requests {
    /// Ours, waiting for an answer.
    pub(super) outbound: HashMap<OutboundRequestId, Pending>,
    /// Theirs, waiting for ours (a welcome parked until the joiner's subscription arrives).
    pub(super) inbound: HashMap<InboundId, ResponseChannel<RoomResponse>>,
    pub(super) next_inbound: u64,
    /// Listeners admitted while the tree had no place for them: answered as soon as one comes
    /// up (a child's report), or after a moment with a ticket to ask again with.
    pub(super) parked: Vec<Parked>,
    /// How fast each peer may ask (see `rates`).
    rates: PeerRates,
}

impl Default for Requests {
    fn default() -> Self {
        Self {
            outbound: HashMap::new(),
            inbound: HashMap::new(),
            next_inbound: 0,
            parked: Vec::new(),
            rates: rates::requests(),
        }
    }
}

/// A listener admitted without a place yet, waiting for one.
pub(super) struct Parked {
    inbound: InboundId,
    room: RoomId,
    asker: PeerKey,
    response: RoomResponse,
    until: std::time::Instant,
}

impl EventLoop {
    /// Answers an inbound request; an admitted listener without a place waits a moment for one
    /// ([`PLACE_WAIT`]).
    pub(super) fn respond(&mut self, inbound: InboundId, response: RoomResponse) {
        if let RoomResponse::Admitted {
            descriptor: _,
            view: _,
            placement: None,
            ticket: Some(ticket),
            ..
        } = &response
            && let Ok(decoded) = earshot_protocol::audience::Ticket::decode(ticket)
            && let Some(leaf) = decoded.leaf()
        {
            self.requests.parked.push(Parked {
                inbound,
                room: leaf.room,
                asker: leaf.child,
                response,
                until: std::time::Instant::now() + PLACE_WAIT,
            });
            // Placed at the next tick if a place comes up (not here: with hundreds parked in a
            // flood of joins, trying them all at every admission would cost the square).
            return;
        }
        if let Some(channel) = self.requests.inbound.remove(&inbound)
            && self
                .swarm
                .behaviour_mut()
                .rooms
                .send_response(channel, response)
                .is_err()
        {
            tracing::debug!("the requester went away before the answer");
        }
    }

    /// Parked listeners get a place if one came up, or their ticket once they waited enough.
    pub(super) fn place_parked(&mut self, now: std::time::Instant) {
        if self.requests.parked.is_empty() {
            return;
        }
        let parked = std::mem::take(&mut self.requests.parked);
        for mut waiting in parked {
            let placed = self
                .plane
                .tree
                .place(&waiting.room, waiting.asker, None, None, true);
            if let RoomResponse::Admitted {
                placement, ticket, ..
            } = &mut waiting.response
                && let Ok(found) = placed
            {
                let own = self.own_addrs(&waiting.room);
                *placement = Some(with_addrs(found, self.plane.tree.me(), &own, &self.peers));
                *ticket = None;
            } else if now < waiting.until {
                self.requests.parked.push(waiting);
                continue;
            }
            if let Some(channel) = self.requests.inbound.remove(&waiting.inbound) {
                let _ = self
                    .swarm
                    .behaviour_mut()
                    .rooms
                    .send_response(channel, waiting.response);
            }
        }
    }

    pub(super) fn on_rooms(&mut self, event: request_response::Event<RoomRequest, RoomResponse>) {
        match event {
            request_response::Event::Message {
                peer,
                message:
                    request_response::Message::Request {
                        request, channel, ..
                    },
                ..
            } => {
                // Past its budget, a peer is told to try again, its request unread.
                if !self.requests.rates.take(peer, std::time::Instant::now()) {
                    self.outside.metrics.requests_over_budget.inc();
                    let busy = RoomResponse::Refused {
                        refusal: Refusal::Busy,
                    };
                    let _ = self
                        .swarm
                        .behaviour_mut()
                        .rooms
                        .send_response(channel, busy);
                    return;
                }
                let inbound = InboundId(self.requests.next_inbound);
                self.requests.next_inbound += 1;
                self.requests.inbound.insert(inbound, channel);
                let effects = self.on_request(peer, inbound, request);
                self.apply(effects);
            }
            request_response::Event::Message {
                message:
                    request_response::Message::Response {
                        request_id,
                        response,
                    },
                ..
            } => {
                if let Some(pending) = self.requests.outbound.remove(&request_id) {
                    self.answered(pending, response);
                }
            }
            request_response::Event::OutboundFailure {
                request_id, error, ..
            } => {
                if let Some(pending) = self.requests.outbound.remove(&request_id) {
                    self.failed(pending, RequestFailure::of(&error));
                }
            }
            _ => {}
        }
    }

    /// Someone asks this node something on the room protocol.
    fn on_request(
        &mut self,
        peer: PeerId,
        inbound: InboundId,
        request: RoomRequest,
    ) -> Vec<Effect> {
        let now = now();
        let respond = |response| vec![Effect::Respond { inbound, response }];
        match request {
            RoomRequest::Lobby => respond(self.lobby.answer(now.wall)),
            RoomRequest::Announce { announcement } => {
                match self.lobby.on_announcement(now.wall, &announcement) {
                    (crate::rooms::Verdict::Accept, _) => {
                        // Passed on to the lobby's subscribers (if any: kept here all the same).
                        let topic = self.topics.lobby.clone();
                        let _ = self
                            .swarm
                            .behaviour_mut()
                            .gossipsub
                            .publish(topic, announcement.into_vec());
                        respond(RoomResponse::Kept)
                    }
                    _ => respond(RoomResponse::Refused {
                        refusal: Refusal::NotKept {
                            detail: "not valid, expired, or its host has too many rooms ahead"
                                .into(),
                        },
                    }),
                }
            }
            RoomRequest::Join { envelope } => {
                let follows = follows(&self.swarm, &self.topics);
                let tree = &self.plane.tree;
                let own = self.own_addrs_all();
                let peers = &self.peers;
                let place =
                    |room: RoomId, key: PeerKey| match tree.place(&room, key, None, None, true) {
                        Ok(placement) => Placing::At(with_addrs(placement, tree.me(), &own, peers)),
                        Err(refusal) => match tree.ticket_for(&room, key) {
                            Some(ticket) => Placing::Later(ticket),
                            None => Placing::Refused(refusal),
                        },
                    };
                self.rooms.on_join_request(
                    now,
                    peer,
                    inbound,
                    &envelope,
                    follows,
                    place,
                    |room| tree.is_entry(room),
                    &self.peers,
                )
            }
            RoomRequest::Attach { room, lost, ticket } => {
                let Ok(member) = PeerKey::from_peer_id(&peer) else {
                    return respond(RoomResponse::Refused {
                        refusal: Refusal::NotAnEarshotPeer,
                    });
                };
                // A member of the stage the host knows (it is on the room's topic); anyone
                // else shows the ticket of the place it held.
                let on_stage = self.rooms.hosts_with(&room, &member).is_ok();
                if !on_stage
                    && self.rooms.get(&room).is_some_and(|joined| {
                        joined.is_host() && joined.state.banned.contains(&member)
                    })
                {
                    return respond(RoomResponse::Refused {
                        refusal: Refusal::Rejected {
                            reason: "you were removed from the room".into(),
                        },
                    });
                }
                let tree = &self.plane.tree;
                let placed = tree.place(
                    &room,
                    member,
                    lost,
                    ticket.as_deref().map(|t| t.as_ref()),
                    on_stage,
                );
                // A lost child it cut off.
                let evicted = crate::fanout::Gate::evicted(&**tree, room);
                self.plane.fanout.evict(&room, &evicted);
                let own = self.own_addrs(&room);
                respond(match placed {
                    Ok(placement) => {
                        RoomResponse::Parent(with_addrs(placement, tree.me(), &own, &self.peers))
                    }
                    Err(refusal) => RoomResponse::Refused { refusal },
                })
            }
            RoomRequest::Act { room, act } => match PeerKey::from_peer_id(&peer) {
                Ok(author) => {
                    let (response, effects) =
                        self.rooms.audience_act_straight(now, room, author, &act);
                    let mut all = respond(response);
                    all.extend(effects);
                    all
                }
                Err(_) => respond(RoomResponse::Refused {
                    refusal: Refusal::NotAnEarshotPeer,
                }),
            },
            RoomRequest::Keys { room } => match PeerKey::from_peer_id(&peer) {
                Ok(asker) => respond(self.rooms.private_reseal(now, room, asker)),
                Err(_) => respond(RoomResponse::Refused {
                    refusal: Refusal::NotAnEarshotPeer,
                }),
            },
            RoomRequest::Listeners { room, page } => {
                respond(match self.rooms.listeners_page(&room, page) {
                    Ok(listeners) => RoomResponse::Listeners { listeners },
                    Err(refusal) => RoomResponse::Refused { refusal },
                })
            }
            RoomRequest::Carry { link } => {
                let rooms = &self.rooms;
                let considered = self.carry.consider(
                    peer,
                    &link,
                    rooms.len(),
                    |id| rooms.contains(id),
                    now.instant,
                );
                match considered {
                    Ok(link) => {
                        let mut effects = respond(RoomResponse::Carrying);
                        effects.push(Effect::Emit(Event::CarryRequested(Box::new(
                            crate::event::CarryRequest { host: peer, link },
                        ))));
                        effects
                    }
                    Err(refusal) => respond(RoomResponse::Refused { refusal }),
                }
            }
        }
    }

    /// Our request was answered.
    fn answered(&mut self, pending: Pending, response: RoomResponse) {
        match pending {
            Pending::Join(join) => {
                let effects = self
                    .rooms
                    .join_answered(now(), *join, response, &self.peers);
                self.apply(effects);
            }
            Pending::Lobby(reply) => {
                let _ = reply.send(lobby::read_answer(clock::now(), response));
            }
            Pending::Announce(reply) => {
                let _ = reply.send(match response {
                    RoomResponse::Kept => Ok(()),
                    RoomResponse::Refused { refusal } => Err(LobbyError::Refused(refusal)),
                    _ => Err(LobbyError::BadAnswer(BadAnswer::Unexpected {
                        expected: "the announcement kept",
                    })),
                });
            }
            Pending::Attach(reply) => {
                let _ = reply.send(match response {
                    RoomResponse::Parent(placement) => Ok(placement),
                    RoomResponse::Refused { refusal } => Err(AttachError::Refused(refusal)),
                    _ => Err(AttachError::BadAnswer(BadAnswer::Unexpected {
                        expected: "a parent",
                    })),
                });
            }
            Pending::Listeners(reply) => {
                let _ = reply.send(match response {
                    RoomResponse::Listeners { listeners } => Ok(listeners),
                    RoomResponse::Refused { refusal } => Err(AttachError::Refused(refusal)),
                    _ => Err(AttachError::BadAnswer(BadAnswer::Unexpected {
                        expected: "listeners",
                    })),
                });
            }
            Pending::Keys { room } => {
                let effects = match response {
                    RoomResponse::Keys { keys } => self.rooms.private_answer(room, &keys),
                    RoomResponse::Refused { refusal } => {
                        self.rooms
                            .private_refused(now(), room, &refusal.to_string())
                    }
                    _ => Vec::new(),
                };
                self.apply(effects);
            }
            Pending::Act { room } => {
                if let RoomResponse::Refused { refusal } = response {
                    self.apply(vec![Effect::Emit(Event::Notice {
                        room,
                        text: match refusal {
                            Refusal::Rejected { reason } => reason,
                            other => other.to_string(),
                        },
                    })]);
                }
            }
            Pending::Carry { reply, room, relay } => {
                if let (RoomResponse::Carrying, Some(room), Some(relay)) = (&response, room, relay)
                {
                    // Its parents believe its reports up to a carrier's share.
                    self.rooms.add_carrier(&room, relay);
                }
                let _ = reply.send(match response {
                    RoomResponse::Carrying => Ok(()),
                    RoomResponse::Refused { refusal } => Err(CarryError::Refused(refusal)),
                    _ => Err(CarryError::BadAnswer(BadAnswer::Unexpected {
                        expected: "carrying",
                    })),
                });
            }
        }
    }

    /// Our request got no answer (`None`: the peer could not be dialled).
    fn failed(&mut self, pending: Pending, failure: Option<RequestFailure>) {
        match pending {
            Pending::Join(join) if join.entry.is_some() => {
                let why = failure.map_or_else(|| "unreachable".to_owned(), |f| f.to_string());
                let effects = self.rooms.join_at_host(*join, &why).unwrap_or_default();
                self.apply(effects);
            }
            Pending::Join(join) => {
                let err = failure.map_or(JoinError::Unreachable, JoinError::NoAnswer);
                let effects = self.rooms.join_failed(*join, err);
                self.apply(effects);
            }
            Pending::Lobby(reply) => {
                let _ = reply.send(Err(
                    failure.map_or(LobbyError::Unreachable, LobbyError::NoAnswer)
                ));
            }
            Pending::Announce(reply) => {
                let _ = reply.send(Err(
                    failure.map_or(LobbyError::Unreachable, LobbyError::NoAnswer)
                ));
            }
            Pending::Attach(reply) => {
                let _ = reply.send(Err(
                    failure.map_or(AttachError::Unreachable, AttachError::NoAnswer)
                ));
            }
            Pending::Listeners(reply) => {
                let _ = reply.send(Err(
                    failure.map_or(AttachError::Unreachable, AttachError::NoAnswer)
                ));
            }
            Pending::Keys { room } => {
                tracing::debug!(%room, "the host did not answer for the keys");
            }
            Pending::Act { room } => {
                tracing::debug!(%room, "the host did not answer for a line sent straight");
                self.apply(vec![Effect::Emit(Event::Notice {
                    room,
                    text: "a line of yours did not come back down the tree, and the host could \
                           not be reached: it may not have been said"
                        .into(),
                })]);
            }
            Pending::Carry { reply, .. } => {
                let _ = reply.send(Err(
                    failure.map_or(CarryError::Unreachable, CarryError::NoAnswer)
                ));
            }
        }
    }
}

/// A placement with the addresses to reach the parent at: this node's own when it is the
/// parent, else what the parent reported (or, failing that, what this node knows of it).
fn with_addrs(
    mut placement: Placement,
    me: PeerKey,
    own: &[libp2p::Multiaddr],
    peers: &crate::peers::Peers,
) -> Placement {
    if placement.addrs.is_empty() {
        let addrs: Vec<libp2p::Multiaddr> = if placement.key == me {
            own.to_vec()
        } else {
            placement
                .key
                .to_peer_id()
                .ok()
                .and_then(|id| peers.addrs_of(&id).cloned())
                .unwrap_or_default()
        };
        placement.addrs = earshot_protocol::addr::to_wire(&addrs, usize::MAX, MAX_PARENT_ADDRS);
    }
    placement
}
