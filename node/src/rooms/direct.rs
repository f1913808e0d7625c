//! A listener's line that a relay may drop goes to the host straight.
//!
//! A listener's chat (and support) goes up the tree, relay by relay, and any relay on the way
//! can drop it: an attacker's relay, or one whose own flood goes ahead of its children's. The
//! line would simply never be said. So its author waits for it to come back down, relayed by
//! the host, and if it has not within [`DIRECT_AFTER`] sends the same signed action (sealed in a
//! private room, as it went up) to the host itself: `RoomRequest::Act`. The host takes it under
//! the same budgets, in a share of its own for everything that comes straight (so that keys
//! coming straight cannot crowd the tree's subtrees out), and a line it has already is not
//! taken twice.
//!
//! What it costs the host: a request per line whose relayed copy was late, within the asker's
//! budget of requests (as any), never more than the listener's own chat budget allows it to
//! say.

use std::time::{Duration, Instant};

use earshot_protocol::envelope::Envelope;
use earshot_protocol::snapshot::{Refusal, RoomRequest, RoomResponse};
use earshot_protocol::{ControlBody, PeerKey, RoomId, Verified};

use super::joined::Joined;
use super::{Now, Rooms};
use crate::effect::Effect;
use crate::node::pending::Pending;

/// How long a listener waits for its line to come back down the tree before it sends it to the
/// host straight: a tree's round trip is tens of milliseconds, but each relay passes its
/// children's lines up in turn at 0.8 a second (burst 3), so in a chatty room a line may wait a
/// second at a hop; sent straight too soon, it would take the straight share's budget in place
/// of its subtree's.
pub const DIRECT_AFTER: Duration = Duration::from_millis(1_500);
/// Lines waited for at once (a listener's own budget says 2 at once at the host).
const MAX_AWAITED: usize = 8;
/// The path every line that came straight to the host shares: one share of the room's chat, as
/// one of the host's children would have (see `earshot_protocol::audience::shares`). Not
/// divided by author: a share's authors below it are bounded, and keys by the hundred filling
/// that bound would shut the way for everyone else; each author's own budget still holds, and
/// in a raid the rush's keys have a lane of their own.
pub const STRAIGHT: PeerKey = PeerKey([0xff; 32]);

/// A line sent up the tree, waiting to come back relayed.
#[derive(Debug)]
pub(super) struct Awaited {
    digest: [u8; 32],
    act: Vec<u8>,
    sent: Instant,
}

impl Rooms {
    /// This listener sent `envelope` up the tree as `act`: chat and support are waited for.
    pub(super) fn await_relayed(
        &mut self,
        now: Instant,
        room: RoomId,
        envelope: &Verified<Envelope>,
        act: &[u8],
    ) {
        if !matches!(
            envelope.body,
            ControlBody::Chat { .. } | ControlBody::Support { .. }
        ) {
            return;
        }
        if let Some(joined) = self.joined.get_mut(&room) {
            joined.awaited.push_back(Awaited {
                digest: envelope.digest(),
                act: act.to_vec(),
                sent: now,
            });
            if joined.awaited.len() > MAX_AWAITED {
                joined.awaited.pop_front();
            }
        }
    }

    /// At the host: a listener's action that came straight (`author` is the asker: only its
    /// own). Taken as from the tree, along the [`STRAIGHT`] path; the answer says whether the
    /// host has it, or why not.
    pub fn audience_act_straight(
        &mut self,
        now: Now,
        room: RoomId,
        author: PeerKey,
        act: &[u8],
    ) -> (RoomResponse, Vec<Effect>) {
        let refused = |refusal| (RoomResponse::Refused { refusal }, Vec::new());
        if !self.joined.get(&room).is_some_and(Joined::is_host) {
            return refused(Refusal::NotHost { room });
        }
        let Some(envelope) = self
            .opened_act(&room, act)
            .and_then(|bytes| Envelope::decode_verified(&bytes).ok())
        else {
            return refused(Refusal::NotFromAuthor);
        };
        if envelope.author != author {
            return refused(Refusal::NotFromAuthor);
        }
        // Only what a listener waits to see relayed comes straight: hands, reactions and the
        // rest keep to the tree's pace.
        if !matches!(
            envelope.body,
            ControlBody::Chat { .. } | ControlBody::Support { .. }
        ) {
            return refused(Refusal::Rejected {
                reason: "only chat and support go to the host straight".into(),
            });
        }
        let mut effects = self.audience_act_via(now, room, &[STRAIGHT], act);
        // The host's word for the author goes back as the answer (the tree may not carry it).
        let notice = effects.iter().position(
            |effect| matches!(effect, Effect::Notice { to, room: r, .. } if *to == author && *r == room),
        );
        let response = match notice.map(|at| effects.remove(at)) {
            Some(Effect::Notice { text, .. }) => {
                // Refused here: the tree's copy, if it comes, is taken on its merits.
                if let Some(audience) = self
                    .joined
                    .get_mut(&room)
                    .and_then(|joined| joined.audience.as_mut())
                {
                    audience.unsee(&envelope);
                }
                RoomResponse::Refused {
                    refusal: Refusal::Rejected { reason: text },
                }
            }
            _ => RoomResponse::Kept,
        };
        (response, effects)
    }
}

/// A line relayed down the tree: if it is one of this node's awaited, it came back.
pub(super) fn relayed_back(joined: &mut Joined, envelope: &Envelope) {
    if joined.awaited.is_empty() {
        return;
    }
    let digest = envelope.digest();
    joined.awaited.retain(|awaited| awaited.digest != digest);
}

/// The lines that have not come back in [`DIRECT_AFTER`]: to the host, straight.
pub(super) fn overdue(joined: &mut Joined, room: RoomId, now: Instant) -> Vec<Effect> {
    let mut effects = Vec::new();
    while joined
        .awaited
        .front()
        .is_some_and(|awaited| now.saturating_duration_since(awaited.sent) >= DIRECT_AFTER)
    {
        let Some(awaited) = joined.awaited.pop_front() else {
            break;
        };
        let Ok(host) = joined.descriptor.host.to_peer_id() else {
            continue;
        };
        tracing::debug!(%room, "a line did not come back down the tree: to the host straight");
        effects.push(Effect::Request {
            peer: host,
            addrs: joined.descriptor.addrs(),
            request: RoomRequest::Act {
                room,
                act: serde_bytes::ByteBuf::from(awaited.act),
            },
            then: Pending::Act { room },
        });
    }
    effects
}
