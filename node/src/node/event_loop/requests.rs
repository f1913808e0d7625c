//! The room protocol (`/earshot/room/1`) at the event loop: requests from others go to the
//! machine they concern; answers to ours go to what waits for them ([`Pending`]).

use earshot_protocol::PeerKey;
use earshot_protocol::snapshot::{Refusal, RoomRequest, RoomResponse};
use libp2p::PeerId;
use libp2p::request_response;

use super::{EventLoop, follows, now};
use crate::clock;
use crate::effect::{Effect, InboundId};
use crate::event::Event;
use crate::lobby;
use crate::node::pending::Pending;
use crate::node::{AttachError, CarryError, JoinError, LobbyError, RequestFailure};
use crate::placement::{self, Ask};

impl EventLoop {
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
            RoomRequest::Join { envelope } => {
                let follows = follows(&self.swarm);
                self.rooms
                    .on_join_request(now, peer, inbound, &envelope, follows, &self.peers)
            }
            RoomRequest::Attach {
                room,
                capacity,
                lost,
            } => {
                let Ok(member) = PeerKey::from_peer_id(&peer) else {
                    return respond(RoomResponse::Refused {
                        refusal: Refusal::NotAnEarshotPeer,
                    });
                };
                if let Err(refusal) = self.rooms.hosts_with(&room, &member) {
                    return respond(RoomResponse::Refused { refusal });
                }
                let rtt_ms = self
                    .peers
                    .rtt_of(&peer)
                    .map_or(0, |rtt| u32::try_from(rtt.as_millis()).unwrap_or(u32::MAX));
                let ask = Ask {
                    room,
                    member,
                    capacity,
                    lost,
                    rtt_ms,
                };
                let own = self.own_addrs(&room);
                respond(self.placement.answer(ask, &own, &self.peers))
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
            Pending::Attach(reply) => {
                let _ = reply.send(placement::read_answer(response));
            }
            Pending::Carry(reply) => {
                let _ = reply.send(match response {
                    RoomResponse::Carrying => Ok(()),
                    RoomResponse::Refused { refusal } => Err(CarryError::Refused(refusal)),
                    _ => Err(CarryError::BadAnswer(crate::node::BadAnswer::Unexpected {
                        expected: "carrying",
                    })),
                });
            }
        }
    }

    /// Our request got no answer (`None`: the peer could not be dialled).
    fn failed(&mut self, pending: Pending, failure: Option<RequestFailure>) {
        match pending {
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
            Pending::Attach(reply) => {
                let _ = reply.send(Err(
                    failure.map_or(AttachError::Unreachable, AttachError::NoAnswer)
                ));
            }
            Pending::Carry(reply) => {
                let _ = reply.send(Err(
                    failure.map_or(CarryError::Unreachable, CarryError::NoAnswer)
                ));
            }
        }
    }
}
