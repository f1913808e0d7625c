//! Tickets: a place in a room's relay tree, signed.
//!
//! A child opening a listen stream presents a ticket that names it and the parent it opens the
//! stream to. The host signs the tickets it hands out itself; any node may place a joiner in its
//! own subtree by signing a ticket of its own, chained to the ticket that placed it (which proves
//! it holds a place in the tree, under the host), like a delegated invite. A parent accepts a
//! ticket whose chain starts at the room's host, whose links are each signed by the child the
//! link before named, whose last link names the stream's peer and itself, and whose last placer
//! is itself or one of its ancestors (a node places only into its own subtree).
//!
//! The chain is as long as the placer is deep (each link ~170 bytes): bounded by
//! [`MAX_TICKET_LINKS`].

use serde::{Deserialize, Serialize};

use crate::Verified;
use crate::codec::{self, DecodeError};
use crate::id::{PeerKey, RoomId, Sig, Timestamp};

/// Most links in a ticket: a tree deeper than this places nobody below that depth.
pub const MAX_TICKET_LINKS: usize = 12;
/// Largest encoded ticket.
pub const MAX_TICKET_BYTES: usize = MAX_TICKET_LINKS * 200;
/// How long a ticket is good for opening a stream (a stream once open stays open).
pub const TICKET_TTL_MS: u64 = 6 * 3_600_000;
/// How far a ticket's times may be ahead of the verifier's clock.
pub const TICKET_SKEW_MS: u64 = 30_000;

const TICKET_DOMAIN: &[u8] = b"earshot/ticket/v1\0";

/// One placement: `child` gets the room's audio from `parent`, until `expires_at`.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct TicketLink {
    pub room: RoomId,
    pub child: PeerKey,
    pub parent: PeerKey,
    pub issued_at: Timestamp,
    pub expires_at: Timestamp,
    /// By the host (first link), else by the child of the link before.
    pub signature: Sig,
}

#[derive(Serialize)]
struct UnsignedLink<'a> {
    room: &'a RoomId,
    child: &'a PeerKey,
    parent: &'a PeerKey,
    issued_at: Timestamp,
    expires_at: Timestamp,
}

impl TicketLink {
    fn signed_bytes(&self) -> Vec<u8> {
        codec::encode(&UnsignedLink {
            room: &self.room,
            child: &self.child,
            parent: &self.parent,
            issued_at: self.issued_at,
            expires_at: self.expires_at,
        })
    }
}

/// A chain of placements, the host's first.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct Ticket {
    pub links: Vec<TicketLink>,
}

/// Why a ticket is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TicketError {
    #[error("malformed ticket: {0}")]
    Malformed(#[from] DecodeError),
    #[error("an empty ticket")]
    Empty,
    #[error("a ticket of {links} links, more than the {max} allowed")]
    TooLong { links: usize, max: usize },
    #[error("the ticket is for room {found}")]
    WrongRoom { found: RoomId },
    #[error("link {index} of the ticket has a bad signature")]
    BadSignature { index: usize },
    #[error("the ticket expired at {expires_at}")]
    Expired { expires_at: Timestamp },
    #[error("the ticket is not valid before {issued_at}")]
    NotYet { issued_at: Timestamp },
    #[error("the ticket names {named} as the child, not {presenter}")]
    NotYours { named: PeerKey, presenter: PeerKey },
    #[error("the ticket names {named} as the parent, not this node")]
    NotHere { named: PeerKey },
    #[error("the ticket was signed by {placer}, which does not place into this part of the tree")]
    NotAbove { placer: PeerKey },
    #[error("a placer's own ticket expires before the ticket it signed")]
    OutlivesPlacer,
}

/// What a parent checks a ticket against.
#[derive(Debug, Clone, Copy)]
pub struct TicketCheck<'a> {
    pub room: RoomId,
    pub host: PeerKey,
    /// The peer that opened the stream.
    pub presenter: PeerKey,
    /// This node (the parent).
    pub parent: PeerKey,
    /// This node's ancestors, its parent first, up to the host: whoever placed the child must
    /// be this node or one of these.
    pub ancestors: &'a [PeerKey],
    pub now: Timestamp,
}

impl Ticket {
    /// The host's own ticket: `child` under `parent`, signed by the host.
    pub fn issue_as_host(
        host: &ed25519_dalek::SigningKey,
        room: RoomId,
        child: PeerKey,
        parent: PeerKey,
        now: Timestamp,
    ) -> Self {
        Self {
            links: vec![sign_link(
                host,
                room,
                child,
                parent,
                now,
                now.plus_millis(TICKET_TTL_MS),
            )],
        }
    }

    /// A placer's ticket: `child` under `parent` (in the placer's subtree), signed by the
    /// placer, whose own ticket is `placed_me`. Expires no later than the placer's own.
    pub fn issue_below(
        placer: &ed25519_dalek::SigningKey,
        placed_me: &Ticket,
        child: PeerKey,
        parent: PeerKey,
        now: Timestamp,
    ) -> Option<Self> {
        let last = placed_me.links.last()?;
        if placed_me.links.len() >= MAX_TICKET_LINKS {
            return None;
        }
        let expires_at = last.expires_at.min(now.plus_millis(TICKET_TTL_MS));
        let mut links = placed_me.links.clone();
        links.push(sign_link(placer, last.room, child, parent, now, expires_at));
        Some(Self { links })
    }

    /// The node whose signature is on the last link (the host for a one-link ticket).
    pub fn placer(&self, host: &PeerKey) -> Option<PeerKey> {
        match self.links.len() {
            0 => None,
            1 => Some(*host),
            n => Some(self.links[n - 2].child),
        }
    }

    /// When the ticket stops being good for opening a stream.
    pub fn expires_at(&self) -> Option<Timestamp> {
        self.links.iter().map(|link| link.expires_at).min()
    }

    /// The last placement: who the ticket is for, and under whom.
    pub fn leaf(&self) -> Option<&TicketLink> {
        self.links.last()
    }

    pub fn encode(&self) -> Vec<u8> {
        codec::encode(self)
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, TicketError> {
        let ticket: Ticket = codec::decode(bytes, MAX_TICKET_BYTES)?;
        if ticket.links.len() > MAX_TICKET_LINKS {
            return Err(TicketError::TooLong {
                links: ticket.links.len(),
                max: MAX_TICKET_LINKS,
            });
        }
        Ok(ticket)
    }

    /// Checks every link (see the module docs). A ticket that passes is [`Verified`].
    pub fn verify(self, check: &TicketCheck<'_>) -> Result<Verified<Ticket>, TicketError> {
        self.check_chain(check.room, check.host, check.now)?;
        let leaf = self.links.last().ok_or(TicketError::Empty)?;
        if leaf.child != check.presenter {
            return Err(TicketError::NotYours {
                named: leaf.child,
                presenter: check.presenter,
            });
        }
        if leaf.parent != check.parent {
            return Err(TicketError::NotHere { named: leaf.parent });
        }
        let placer = self.placer(&check.host).ok_or(TicketError::Empty)?;
        if placer != check.parent && !check.ancestors.contains(&placer) {
            return Err(TicketError::NotAbove { placer });
        }
        Ok(Verified::new(self))
    }

    /// Checks the chain alone: the host's first, each link signed by the one before's child,
    /// one room, every link valid at `now`. For a node holding its own ticket, and for a
    /// grandparent checking an orphan's old ticket.
    pub fn check_chain(
        &self,
        room: RoomId,
        host: PeerKey,
        now: Timestamp,
    ) -> Result<(), TicketError> {
        if self.links.is_empty() {
            return Err(TicketError::Empty);
        }
        if self.links.len() > MAX_TICKET_LINKS {
            return Err(TicketError::TooLong {
                links: self.links.len(),
                max: MAX_TICKET_LINKS,
            });
        }
        let mut signer = host;
        let mut previous_expiry: Option<Timestamp> = None;
        for (index, link) in self.links.iter().enumerate() {
            if link.room != room {
                return Err(TicketError::WrongRoom { found: link.room });
            }
            if !link
                .signature
                .verify(&signer, TICKET_DOMAIN, &link.signed_bytes())
            {
                return Err(TicketError::BadSignature { index });
            }
            if link.expires_at <= now {
                return Err(TicketError::Expired {
                    expires_at: link.expires_at,
                });
            }
            if link.issued_at > now.plus_millis(TICKET_SKEW_MS) {
                return Err(TicketError::NotYet {
                    issued_at: link.issued_at,
                });
            }
            if previous_expiry.is_some_and(|before| link.expires_at > before) {
                return Err(TicketError::OutlivesPlacer);
            }
            previous_expiry = Some(link.expires_at);
            signer = link.child;
        }
        Ok(())
    }
}

fn sign_link(
    key: &ed25519_dalek::SigningKey,
    room: RoomId,
    child: PeerKey,
    parent: PeerKey,
    issued_at: Timestamp,
    expires_at: Timestamp,
) -> TicketLink {
    let mut link = TicketLink {
        room,
        child,
        parent,
        issued_at,
        expires_at,
        signature: Sig([0; 64]),
    };
    link.signature = Sig::sign(key, TICKET_DOMAIN, &link.signed_bytes());
    link
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: Timestamp = Timestamp(1_796_119_200_000);
    const ROOM: RoomId = RoomId([4; 16]);

    fn signing(n: u8) -> ed25519_dalek::SigningKey {
        ed25519_dalek::SigningKey::from_bytes(&[n; 32])
    }

    fn key(n: u8) -> PeerKey {
        PeerKey::from(&signing(n))
    }

    fn check<'a>(presenter: u8, parent: u8, ancestors: &'a [PeerKey]) -> TicketCheck<'a> {
        TicketCheck {
            room: ROOM,
            host: key(0),
            presenter: key(presenter),
            parent: key(parent),
            ancestors,
            now: NOW,
        }
    }

    #[test]
    fn the_hosts_ticket_and_a_placers_ticket_below_it() {
        // The host places 1 under itself; 1 places 2 under 1; 1 places 3 under 2 (its subtree).
        let one = Ticket::issue_as_host(&signing(0), ROOM, key(1), key(0), NOW);
        assert!(one.clone().verify(&check(1, 0, &[])).is_ok());
        let two = Ticket::issue_below(&signing(1), &one, key(2), key(1), NOW).expect("placed");
        assert!(two.clone().verify(&check(2, 1, &[key(0)])).is_ok());
        let three = Ticket::issue_below(&signing(1), &one, key(3), key(2), NOW).expect("placed");
        assert_eq!(three.placer(&key(0)), Some(key(1)));
        assert!(
            three
                .clone()
                .verify(&check(3, 2, &[key(1), key(0)]))
                .is_ok()
        );
        // Round trip on the wire.
        assert_eq!(Ticket::decode(&three.encode()), Ok(three.clone()));
        let bytes = three.encode();
        assert!(bytes.len() < 2 * 200, "{} bytes", bytes.len());
    }

    #[test]
    fn tickets_are_refused_for_what_they_are() {
        let one = Ticket::issue_as_host(&signing(0), ROOM, key(1), key(0), NOW);
        // Presented by someone else, or to another parent.
        assert_eq!(
            one.clone().verify(&check(9, 0, &[])),
            Err(TicketError::NotYours {
                named: key(1),
                presenter: key(9)
            })
        );
        assert_eq!(
            one.clone().verify(&check(1, 5, &[key(0)])),
            Err(TicketError::NotHere { named: key(0) })
        );
        // Not signed by the host.
        let forged = Ticket::issue_as_host(&signing(7), ROOM, key(1), key(0), NOW);
        assert_eq!(
            forged.verify(&check(1, 0, &[])),
            Err(TicketError::BadSignature { index: 0 })
        );
        // A placer placing outside its subtree: 1 places 3 under 5, which is not below 1.
        let three = Ticket::issue_below(&signing(1), &one, key(3), key(5), NOW).expect("signed");
        assert_eq!(
            three.verify(&check(3, 5, &[key(0)])),
            Err(TicketError::NotAbove { placer: key(1) })
        );
        // Someone whose ticket is not the one it chains to.
        let two = Ticket::issue_below(&signing(8), &one, key(2), key(1), NOW).expect("signed");
        assert_eq!(
            two.verify(&check(2, 1, &[key(0)])),
            Err(TicketError::BadSignature { index: 1 })
        );
        // Expired, or from the future.
        let late = check(1, 0, &[]);
        let late = TicketCheck {
            now: NOW.plus_millis(TICKET_TTL_MS),
            ..late
        };
        assert!(matches!(
            one.clone().verify(&late),
            Err(TicketError::Expired { .. })
        ));
        let early = TicketCheck {
            now: Timestamp(NOW.0 - TICKET_SKEW_MS - 1),
            ..check(1, 0, &[])
        };
        assert!(matches!(
            one.clone().verify(&early),
            Err(TicketError::NotYet { .. })
        ));
        // Another room.
        let elsewhere = TicketCheck {
            room: RoomId([5; 16]),
            ..check(1, 0, &[])
        };
        assert_eq!(
            one.verify(&elsewhere),
            Err(TicketError::WrongRoom { found: ROOM })
        );
        assert_eq!(
            Ticket { links: Vec::new() }.verify(&check(1, 0, &[])),
            Err(TicketError::Empty)
        );
    }

    #[test]
    fn chains_are_bounded() {
        let mut ticket = Ticket::issue_as_host(&signing(0), ROOM, key(1), key(0), NOW);
        for n in 1..MAX_TICKET_LINKS as u8 {
            ticket = Ticket::issue_below(&signing(n), &ticket, key(n + 1), key(n), NOW)
                .expect("within the bound");
        }
        assert_eq!(ticket.links.len(), MAX_TICKET_LINKS);
        let n = MAX_TICKET_LINKS as u8;
        assert!(Ticket::issue_below(&signing(n), &ticket, key(n + 1), key(n), NOW).is_none());
        assert!(Ticket::decode(&ticket.encode()).is_ok());
        assert!(matches!(
            Ticket::decode(&[0xff; 10]),
            Err(TicketError::Malformed(_))
        ));
    }
}
