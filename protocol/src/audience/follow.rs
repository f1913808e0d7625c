//! A member's place in a room's relay tree over time: whom it asks for a place, which parent it
//! opens its stream to, and what it does when that parent goes. Pure: the node carries out the
//! [`Step`]s and reports back what happened.
//!
//! Repair goes up before it goes to the host: an orphan asks its grandparent first (which just
//! lost a child, so has a free place, and knows the orphan's ticket named that child), then each
//! ancestor above, then the host. A newcomer, or a node nobody above will take, asks the host.

use std::time::{Duration, Instant};

use crate::id::PeerKey;

use super::ticket::Ticket;
use super::wire::Ancestor;

/// How long to wait before asking again when nobody had a place.
pub const RETRY_AFTER: Duration = Duration::from_millis(250);

/// Someone to ask for a place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Asked {
    pub key: PeerKey,
    pub addrs: Vec<serde_bytes::ByteBuf>,
}

/// What the node should do next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Ask `whom` for a place, saying which parent was `lost` and showing the last `ticket`.
    Ask {
        whom: Asked,
        lost: Option<PeerKey>,
        ticket: Option<Ticket>,
    },
    /// Open a listen stream to `parent`, presenting `ticket`.
    Open {
        parent: PeerKey,
        addrs: Vec<serde_bytes::ByteBuf>,
        ticket: Ticket,
    },
    /// Nothing to do before `until` (then call [`Follower::tick`]).
    Wait { until: Instant },
}

/// What asking gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// A place: `parent`, `depth` hops below the host.
    Placed {
        parent: PeerKey,
        addrs: Vec<serde_bytes::ByteBuf>,
        depth: u16,
        ticket: Ticket,
    },
    /// No place there now (refused, full, unreachable, no answer).
    Nothing,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    /// Asking the `index`-th ancestor (`None`: the host).
    Asking {
        index: Option<usize>,
    },
    Opening {
        parent: PeerKey,
        depth: u16,
    },
    Attached {
        parent: PeerKey,
        depth: u16,
    },
    Waiting {
        until: Instant,
    },
}

/// A member following a room's tree.
#[derive(Debug, Clone)]
pub struct Follower {
    host: Asked,
    state: State,
    ticket: Option<Ticket>,
    ancestors: Vec<Ancestor>,
    /// The parent lost last, and when (for the repair time).
    lost: Option<(PeerKey, Instant)>,
}

impl Follower {
    /// A member that has not been placed yet: it starts by asking the host.
    pub fn new(host: Asked) -> (Self, Step) {
        let follower = Self {
            host,
            state: State::Asking { index: None },
            ticket: None,
            ancestors: Vec::new(),
            lost: None,
        };
        let step = follower.ask_step();
        (follower, step)
    }

    /// A member placed already (by whoever admitted it): it opens its stream at once.
    pub fn placed(host: Asked, answer: Answer) -> (Self, Step) {
        let (mut follower, _) = Self::new(host);
        let step = follower.answered(Instant::now(), answer);
        (follower, step)
    }

    /// The parent and depth, once the stream delivers.
    pub fn position(&self) -> Option<(PeerKey, u16)> {
        match self.state {
            State::Attached { parent, depth } => Some((parent, depth)),
            _ => None,
        }
    }

    /// The latest ticket (the placement this node holds or last held).
    pub fn ticket(&self) -> Option<&Ticket> {
        self.ticket.as_ref()
    }

    pub fn ancestors(&self) -> &[Ancestor] {
        &self.ancestors
    }

    /// The parent said where it is.
    pub fn path(&mut self, ancestors: Vec<Ancestor>) {
        self.ancestors = ancestors;
    }

    fn lost_key(&self) -> Option<PeerKey> {
        self.lost.map(|(parent, _)| parent)
    }

    fn ask_step(&self) -> Step {
        let whom = match self.state {
            State::Asking { index: Some(index) } => self
                .ancestors
                .get(index)
                .map(|ancestor| Asked {
                    key: ancestor.key,
                    addrs: ancestor.addrs.clone(),
                })
                .unwrap_or_else(|| self.host.clone()),
            _ => self.host.clone(),
        };
        Step::Ask {
            whom,
            lost: self.lost_key(),
            ticket: self.ticket.clone(),
        }
    }

    /// The answer to the last [`Step::Ask`].
    pub fn answered(&mut self, now: Instant, answer: Answer) -> Step {
        match answer {
            Answer::Placed {
                parent,
                addrs,
                depth,
                ticket,
            } => {
                self.ticket = Some(ticket.clone());
                self.state = State::Opening { parent, depth };
                Step::Open {
                    parent,
                    addrs,
                    ticket,
                }
            }
            Answer::Nothing => match self.state {
                // Up one more, until the host; after the host, wait and ask it again.
                State::Asking { index: Some(index) } => {
                    let next = index + 1;
                    // The last ancestor is the host itself: asking it is asking the host.
                    self.state = if next + 1 < self.ancestors.len() {
                        State::Asking { index: Some(next) }
                    } else {
                        State::Asking { index: None }
                    };
                    self.ask_step()
                }
                _ => {
                    let until = now + RETRY_AFTER;
                    self.state = State::Waiting { until };
                    Step::Wait { until }
                }
            },
        }
    }

    /// The stream to the parent delivered its first frame: attached. Returns the repair time
    /// when this ends a repair.
    pub fn opened(&mut self, now: Instant) -> Option<Duration> {
        if let State::Opening { parent, depth } = self.state {
            self.state = State::Attached { parent, depth };
        }
        self.lost
            .take()
            .map(|(_, at)| now.saturating_duration_since(at))
    }

    /// The stream to the parent failed before delivering (or the parent went away after):
    /// ask for another place, up the tree first.
    pub fn lost(&mut self, now: Instant) -> Step {
        let parent = match self.state {
            State::Opening { parent, .. } | State::Attached { parent, .. } => Some(parent),
            _ => None,
        };
        if let Some(parent) = parent {
            // A repair under way keeps counting from the first loss.
            let since = self.lost.map_or(now, |(_, at)| at);
            self.lost = Some((parent, since));
        }
        // A path from the parent that is gone names it first: it sends one when it takes the
        // stream, before its first frame. (One that failed earlier never sent one; the path is
        // still the one from before.)
        if parent.is_some() && self.ancestors.first().map(|ancestor| ancestor.key) == parent {
            self.ancestors.remove(0);
        }
        // The grandparent first, unless it is the host (the last of the path).
        self.state = if self.ancestors.len() >= 2 {
            State::Asking { index: Some(0) }
        } else {
            State::Asking { index: None }
        };
        self.ask_step()
    }

    /// Time passed: a wait ends with asking the host again.
    pub fn tick(&mut self, now: Instant) -> Option<Step> {
        match self.state {
            State::Waiting { until } if now >= until => {
                self.state = State::Asking { index: None };
                Some(self.ask_step())
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::id::{RoomId, Timestamp};

    fn key(n: u8) -> PeerKey {
        PeerKey([n; 32])
    }

    fn asked(n: u8) -> Asked {
        Asked {
            key: key(n),
            addrs: Vec::new(),
        }
    }

    fn ticket() -> Ticket {
        let host = ed25519_dalek::SigningKey::from_bytes(&[0; 32]);
        Ticket::issue_as_host(
            &host,
            RoomId([1; 16]),
            key(9),
            key(0),
            Timestamp(1_796_119_200_000),
        )
    }

    fn placed(parent: u8, depth: u16) -> Answer {
        Answer::Placed {
            parent: key(parent),
            addrs: Vec::new(),
            depth,
            ticket: ticket(),
        }
    }

    fn ancestors(keys: &[u8]) -> Vec<Ancestor> {
        keys.iter()
            .map(|&n| Ancestor {
                key: key(n),
                addrs: Vec::new(),
            })
            .collect()
    }

    fn asks(step: &Step) -> PeerKey {
        match step {
            Step::Ask { whom, .. } => whom.key,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_newcomer_asks_the_host_then_opens_its_stream() {
        let now = Instant::now();
        let (mut follower, step) = Follower::new(asked(0));
        assert_eq!(asks(&step), key(0));
        let open = follower.answered(now, placed(5, 2));
        assert!(matches!(open, Step::Open { parent, .. } if parent == key(5)));
        assert_eq!(follower.opened(now), None, "a first attach is no repair");
        assert_eq!(follower.position(), Some((key(5), 2)));
    }

    #[test]
    fn an_orphan_asks_its_grandparent_then_up_then_the_host() {
        let now = Instant::now();
        let (mut follower, _) = Follower::placed(asked(0), placed(3, 3));
        follower.opened(now);
        // Parent 3, grandparent 2, then 1, then the host 0.
        follower.path(ancestors(&[3, 2, 1, 0]));
        let step = follower.lost(now);
        assert_eq!(asks(&step), key(2), "the grandparent first");
        match &step {
            Step::Ask { lost, ticket, .. } => {
                assert_eq!(*lost, Some(key(3)));
                assert!(ticket.is_some());
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(asks(&follower.answered(now, Answer::Nothing)), key(1));
        assert_eq!(
            asks(&follower.answered(now, Answer::Nothing)),
            key(0),
            "then the host"
        );
        // The host has nothing either: wait, then ask it again.
        let wait = follower.answered(now, Answer::Nothing);
        assert!(matches!(wait, Step::Wait { .. }));
        assert!(follower.tick(now).is_none());
        let again = follower.tick(now + RETRY_AFTER).expect("asks again");
        assert_eq!(asks(&again), key(0));
        // Placed by the host at last: the repair time counts from the loss.
        follower.answered(now, placed(7, 1));
        let later = now + Duration::from_millis(400);
        assert_eq!(follower.opened(later), Some(Duration::from_millis(400)));
    }

    #[test]
    fn a_parent_that_fails_after_sending_its_path_is_not_asked() {
        // Parent 3 took the stream and sent its path, then went before its first frame: the
        // orphan asks 3's parent, not 3.
        let now = Instant::now();
        let (mut follower, _) = Follower::placed(asked(0), placed(3, 3));
        follower.path(ancestors(&[3, 2, 1, 0]));
        let step = follower.lost(now);
        assert_eq!(asks(&step), key(2));
        // A parent that failed before sending anything leaves the path as it was (the one from
        // before, its own first already gone): the orphan asks the same ancestor again.
        let (mut follower, _) = Follower::placed(asked(0), placed(5, 3));
        follower.path(ancestors(&[2, 1, 0]));
        assert_eq!(asks(&follower.lost(now)), key(2));
    }

    #[test]
    fn a_child_of_the_host_goes_back_to_the_host() {
        let now = Instant::now();
        let (mut follower, _) = Follower::placed(asked(0), placed(0, 1));
        follower.opened(now);
        follower.path(ancestors(&[0]));
        assert_eq!(asks(&follower.lost(now)), key(0));
        // A grandchild of the host whose parent dies asks the host (its grandparent).
        let (mut follower, _) = Follower::placed(asked(0), placed(4, 2));
        follower.opened(now);
        follower.path(ancestors(&[4, 0]));
        assert_eq!(asks(&follower.lost(now)), key(0));
    }
}
