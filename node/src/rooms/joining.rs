//! Joining: asking the host (or an entry point first), and asking again when a busy host
//! turned the join away.

use std::time::Duration;

use earshot_protocol::snapshot::RoomRequest;
use tracing::{debug, info};

use super::{Now, Rooms, entry};
use crate::effect::Effect;
use crate::node::pending::{Pending, PendingJoin};

/// How often a join the host was too busy for is asked again, and how long it waits at first
/// (doubling each time, at most [`BUSY_WAIT_MAX`], with jitter): about 20 s in all.
pub(super) const BUSY_TRIES: u8 = 12;
const BUSY_WAIT_FIRST: Duration = Duration::from_millis(200);
pub(super) const BUSY_WAIT_MAX: Duration = Duration::from_secs(2);

impl Rooms {
    /// An entry point did not admit this node (refused, or could not be reached): the host is
    /// asked with the same `Join`. `None` if the host was asked already.
    pub fn join_at_host(&mut self, mut pending: PendingJoin, why: &str) -> Option<Vec<Effect>> {
        let entry = pending.entry.take()?;
        let host = pending.link.host.to_peer_id().ok()?;
        info!(
            room = %pending.link.capability.room,
            entry = %crate::node::short(&entry),
            why,
            "the entry point did not admit this node: asking the host"
        );
        Some(vec![Effect::Request {
            peer: host,
            addrs: entry::host_addrs(&pending.link),
            request: RoomRequest::Join {
                envelope: serde_bytes::ByteBuf::from(pending.envelope.clone()),
            },
            then: Pending::Join(Box::new(pending)),
        }])
    }

    /// Joins a busy host turned away, asked again when their wait is over.
    pub(super) fn ask_again(&mut self, now: Now) -> Vec<Effect> {
        let (due, waiting): (Vec<_>, Vec<_>) = std::mem::take(&mut self.busy)
            .into_iter()
            .partition(|(at, _)| *at <= now.instant);
        self.busy = waiting;
        due.into_iter()
            .filter_map(|(_, pending)| {
                let host = pending.link.host.to_peer_id().ok()?;
                Some(Effect::Request {
                    peer: host,
                    addrs: entry::host_addrs(&pending.link),
                    request: RoomRequest::Join {
                        envelope: serde_bytes::ByteBuf::from(pending.envelope.clone()),
                    },
                    then: Pending::Join(Box::new(pending)),
                })
            })
            .collect()
    }

    /// A busy host turned the join away: it is asked again in a moment.
    pub(super) fn busy_again(&mut self, now: Now, pending: PendingJoin) -> Vec<Effect> {
        let room = pending.link.capability.room;
        // A flood of joiners (the host admits a few hundred a second): ask again in a
        // moment, with jitter, as everyone turned away does.
        let mut pending = pending;
        let wait = BUSY_WAIT_FIRST
            .saturating_mul(1 << pending.busy_tries.min(4))
            .min(BUSY_WAIT_MAX);
        let wait = wait.mul_f64(rand::RngExt::random_range(&mut self.rng, 0.5..1.5));
        pending.busy_tries += 1;
        debug!(%room, tries = pending.busy_tries, ?wait, "the host is busy: asking again");
        self.busy.push((now.instant + wait, pending));
        Vec::new()
    }
}
