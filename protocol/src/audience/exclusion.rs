//! Taking a bad relay out of the tree: the host's book of accusations.
//!
//! A listener whose parent failed its checks (forged, replayed or withheld audio: see the node's
//! stream checks) leaves it at once and re-attaches elsewhere; then it accuses that parent to the
//! host, up the tree, showing the ticket that placed it there. Nothing can prove what a parent
//! sent (hops are not signed, only speakers' frames are), so one accusation is one listener's
//! word: the host excludes a parent only when [`EXCLUSION_QUORUM`] distinct listeners, each
//! holding a valid ticket that placed it under that parent, accuse it within
//! [`ACCUSATION_WINDOW`]. A listener's accusation counts once a window, so ten thousand fresh
//! keys buy an exclusion only by being placed under their target in pairs, which the placers,
//! not the keys, decide.
//!
//! An excluded node stays in the room as a listener; it is listed in the host's views for
//! [`EXCLUDED_FOR`] (at most [`MAX_EXCLUDED`]), and while listed nobody places a child under it,
//! no parent believes its free places, and its children leave it. What a false exclusion costs an
//! honest node: it listens as a leaf for a while.
//!
//! Memory is bounded: at most [`MAX_ACCUSED`] accused and [`MAX_ACCUSERS`] accusers are
//! remembered; the oldest go first.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use crate::id::{PeerKey, RoomId, Timestamp};

use super::ticket::{Ticket, TicketError};

/// Distinct accusers it takes to exclude a parent.
pub const EXCLUSION_QUORUM: usize = 2;
/// Accusations older than this no longer count; an accuser counts once in it.
pub const ACCUSATION_WINDOW: Duration = Duration::from_secs(600);
/// How long an excluded node stays excluded.
pub const EXCLUDED_FOR: Duration = Duration::from_secs(1_800);
/// Most excluded nodes a view lists (the oldest exclusion ends first past this).
pub const MAX_EXCLUDED: usize = 64;
/// Most accused nodes remembered.
pub const MAX_ACCUSED: usize = 256;
/// Most accusers remembered.
pub const MAX_ACCUSERS: usize = 4_096;
/// Longest reason an accusation gives.
pub const MAX_REASON_BYTES: usize = 120;

/// Why an accusation does not count.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Dismissed {
    #[error("the ticket does not do: {0}")]
    BadTicket(#[from] TicketError),
    #[error("the ticket names someone else as the child")]
    NotTheAccuser,
    #[error("the ticket did not place the accuser under the accused")]
    NotItsParent,
    #[error("the host is not accused in its own room")]
    TheHost,
    #[error("this listener accused someone else lately")]
    AccusedLately,
    #[error("this parent is excluded already")]
    AlreadyExcluded,
}

/// What an accusation came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Counted: `accusers` distinct listeners accuse it in the window, fewer than the quorum.
    Noted { accusers: usize },
    /// The quorum was reached: the parent is excluded from now on.
    Excluded,
}

#[derive(Debug)]
struct Accused {
    /// Accusers, with when each accused.
    by: Vec<(PeerKey, Instant)>,
    latest: Instant,
}

/// The host's book of accusations and exclusions for one room.
#[derive(Debug)]
pub struct Exclusions {
    room: RoomId,
    host: PeerKey,
    accused: HashMap<PeerKey, Accused>,
    /// When each accuser last accused (whom it accused counts until the window passes).
    accusers: HashMap<PeerKey, Instant>,
    accusers_order: VecDeque<(PeerKey, Instant)>,
    /// Excluded nodes, oldest first, with when.
    excluded: VecDeque<(PeerKey, Instant)>,
}

impl Exclusions {
    pub fn new(room: RoomId, host: PeerKey) -> Self {
        Self {
            room,
            host,
            accused: HashMap::new(),
            accusers: HashMap::new(),
            accusers_order: VecDeque::new(),
            excluded: VecDeque::new(),
        }
    }

    /// `accuser` (its envelope's signature checked by the caller) says `parent` failed it,
    /// showing `ticket`, which must have placed `accuser` under `parent`.
    pub fn accuse(
        &mut self,
        now: Instant,
        wall: Timestamp,
        accuser: PeerKey,
        parent: PeerKey,
        ticket: &[u8],
    ) -> Result<Verdict, Dismissed> {
        self.expire(now);
        if parent == self.host {
            return Err(Dismissed::TheHost);
        }
        let ticket = Ticket::decode(ticket)?;
        ticket.check_chain(self.room, self.host, wall)?;
        let leaf = ticket.leaf().ok_or(TicketError::Empty)?;
        if leaf.child != accuser {
            return Err(Dismissed::NotTheAccuser);
        }
        if leaf.parent != parent {
            return Err(Dismissed::NotItsParent);
        }
        if self.is_excluded(&parent) {
            return Err(Dismissed::AlreadyExcluded);
        }
        if self.accusers.contains_key(&accuser) {
            return Err(Dismissed::AccusedLately);
        }
        self.accusers.insert(accuser, now);
        self.accusers_order.push_back((accuser, now));
        while self.accusers_order.len() > MAX_ACCUSERS {
            if let Some((old, at)) = self.accusers_order.pop_front()
                && self.accusers.get(&old) == Some(&at)
            {
                self.accusers.remove(&old);
            }
        }
        if !self.accused.contains_key(&parent)
            && self.accused.len() >= MAX_ACCUSED
            && let Some(oldest) = self
                .accused
                .iter()
                .min_by_key(|(_, accused)| accused.latest)
                .map(|(key, _)| *key)
        {
            self.accused.remove(&oldest);
        }
        let accused = self.accused.entry(parent).or_insert(Accused {
            by: Vec::new(),
            latest: now,
        });
        accused.by.push((accuser, now));
        accused.latest = now;
        let accusers = accused.by.len();
        if accusers < EXCLUSION_QUORUM {
            return Ok(Verdict::Noted { accusers });
        }
        self.accused.remove(&parent);
        if self.excluded.len() >= MAX_EXCLUDED {
            self.excluded.pop_front();
        }
        self.excluded.push_back((parent, now));
        Ok(Verdict::Excluded)
    }

    pub fn is_excluded(&self, key: &PeerKey) -> bool {
        self.excluded.iter().any(|(excluded, _)| excluded == key)
    }

    /// Excluded now, newest first (for the view).
    pub fn excluded(&mut self, now: Instant) -> Vec<PeerKey> {
        self.expire(now);
        self.excluded.iter().rev().map(|(key, _)| *key).collect()
    }

    fn expire(&mut self, now: Instant) {
        let old = |at: &Instant, kept: Duration| now.saturating_duration_since(*at) > kept;
        while self
            .excluded
            .front()
            .is_some_and(|(_, at)| old(at, EXCLUDED_FOR))
        {
            self.excluded.pop_front();
        }
        while let Some((accuser, at)) = self.accusers_order.front().copied()
            && old(&at, ACCUSATION_WINDOW)
        {
            self.accusers_order.pop_front();
            if self.accusers.get(&accuser) == Some(&at) {
                self.accusers.remove(&accuser);
            }
        }
        self.accused.retain(|_, accused| {
            accused.by.retain(|(_, at)| !old(at, ACCUSATION_WINDOW));
            !accused.by.is_empty()
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::SigningKey;

    fn key(seed: u8) -> SigningKey {
        SigningKey::from_bytes(&[seed; 32])
    }

    fn peer(signing: &SigningKey) -> PeerKey {
        PeerKey(signing.verifying_key().to_bytes())
    }

    struct Scene {
        host: SigningKey,
        room: RoomId,
        book: Exclusions,
        now: Instant,
        wall: Timestamp,
    }

    impl Scene {
        fn new() -> Self {
            let host = key(1);
            let room = RoomId([7; 16]);
            let book = Exclusions::new(room, peer(&host));
            Self {
                host,
                room,
                book,
                now: Instant::now(),
                wall: Timestamp(1_000_000),
            }
        }

        fn ticket(&self, child: PeerKey, parent: PeerKey) -> Vec<u8> {
            Ticket::issue_as_host(&self.host, self.room, child, parent, self.wall).encode()
        }

        fn accuse(&mut self, accuser: PeerKey, parent: PeerKey) -> Result<Verdict, Dismissed> {
            let ticket = self.ticket(accuser, parent);
            self.book
                .accuse(self.now, self.wall, accuser, parent, &ticket)
        }
    }

    #[test]
    fn two_distinct_children_exclude_a_parent_one_does_not() {
        let mut scene = Scene::new();
        let bad = peer(&key(2));
        assert_eq!(
            scene.accuse(peer(&key(3)), bad),
            Ok(Verdict::Noted { accusers: 1 })
        );
        assert!(scene.book.excluded(scene.now).is_empty());
        // The same accuser again counts nothing.
        assert_eq!(
            scene.accuse(peer(&key(3)), bad),
            Err(Dismissed::AccusedLately)
        );
        assert_eq!(scene.accuse(peer(&key(4)), bad), Ok(Verdict::Excluded));
        assert_eq!(scene.book.excluded(scene.now), vec![bad]);
        assert_eq!(
            scene.accuse(peer(&key(5)), bad),
            Err(Dismissed::AlreadyExcluded)
        );
        // The exclusion ends in time.
        scene.now += EXCLUDED_FOR + Duration::from_secs(1);
        assert!(scene.book.excluded(scene.now).is_empty());
    }

    #[test]
    fn an_accusation_needs_a_ticket_that_placed_the_accuser_under_the_accused() {
        let mut scene = Scene::new();
        let (accuser, bad, other) = (peer(&key(3)), peer(&key(2)), peer(&key(9)));
        // A ticket under someone else.
        let ticket = scene.ticket(accuser, other);
        assert_eq!(
            scene
                .book
                .accuse(scene.now, scene.wall, accuser, bad, &ticket),
            Err(Dismissed::NotItsParent)
        );
        // Someone else's ticket.
        let ticket = scene.ticket(other, bad);
        assert_eq!(
            scene
                .book
                .accuse(scene.now, scene.wall, accuser, bad, &ticket),
            Err(Dismissed::NotTheAccuser)
        );
        // A ticket the accuser signed itself.
        let forged = Ticket::issue_as_host(&key(3), scene.room, accuser, bad, scene.wall);
        assert!(matches!(
            scene
                .book
                .accuse(scene.now, scene.wall, accuser, bad, &forged.encode()),
            Err(Dismissed::BadTicket(_))
        ));
        // Garbage.
        assert!(matches!(
            scene
                .book
                .accuse(scene.now, scene.wall, accuser, bad, &[0xff; 40]),
            Err(Dismissed::BadTicket(_))
        ));
        let host = peer(&scene.host);
        assert_eq!(scene.accuse(accuser, host), Err(Dismissed::TheHost));
        // None of these counted: the accuser may still accuse once.
        assert_eq!(
            scene.accuse(accuser, bad),
            Ok(Verdict::Noted { accusers: 1 })
        );
    }

    #[test]
    fn accusations_age_out_and_memory_stays_bounded() {
        let mut scene = Scene::new();
        let bad = peer(&key(2));
        scene.accuse(peer(&key(3)), bad).ok();
        scene.now += ACCUSATION_WINDOW + Duration::from_secs(1);
        // The first accusation aged out: the second alone is not a quorum, and the first
        // accuser may accuse again.
        assert_eq!(
            scene.accuse(peer(&key(4)), bad),
            Ok(Verdict::Noted { accusers: 1 })
        );
        assert_eq!(scene.accuse(peer(&key(3)), bad), Ok(Verdict::Excluded));
        // A flood of accusers, each against a different parent: bounded books, and at most
        // MAX_EXCLUDED listed.
        for i in 0..2_000u32 {
            let mut accuser = [0u8; 32];
            accuser[..4].copy_from_slice(&i.to_be_bytes());
            accuser[4] = 1;
            let mut target = [0u8; 32];
            target[..4].copy_from_slice(&(i / 2).to_be_bytes());
            target[4] = 2;
            let _ = scene.accuse(PeerKey(accuser), PeerKey(target));
        }
        assert!(scene.book.accused.len() <= MAX_ACCUSED);
        assert!(scene.book.accusers.len() <= MAX_ACCUSERS);
        assert_eq!(scene.book.excluded(scene.now).len(), MAX_EXCLUDED);
    }
}
