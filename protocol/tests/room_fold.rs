//! Property tests for the room fold, through the public API: a set of envelopes that are all
//! acceptable whatever their order folds to the same state in every order.
//!
//! The generator only produces envelopes whose acceptance cannot depend on the order (see
//! [`Plan`] for what is left out, and why).

use std::collections::BTreeMap;

use earshot_protocol::state::{RoomState, SEQ_WINDOW};
use earshot_protocol::{
    Audience, Authority, Capability, ControlBody, Envelope, Grant, PeerKey, Role, RoomId,
    Timestamp, Verified,
};
use ed25519_dalek::SigningKey;
use proptest::prelude::*;
use proptest::sample::Index;

/// Each case signs and folds about a hundred envelopes three times.
const CASES: u32 = 128;

const HOST: u8 = 1;
/// Joins with a moderator capability bound to it; nobody acts on it.
const MODERATOR: u8 = 2;
/// Members are seeds `FIRST_MEMBER..FIRST_MEMBER + n`.
const FIRST_MEMBER: u8 = 10;
const MAX_MEMBERS: usize = 6;
/// Acts after everyone's `Join`. Every author sends at most `1 + MAX_ACTS` envelopes, inside
/// `SEQ_WINDOW`: an author's envelopes may then arrive in any order without being taken for
/// replays.
const MAX_ACTS: usize = 48;

const ROOM: RoomId = RoomId([7; 16]);
const NOW: Timestamp = Timestamp::from_secs(1_800_000_000);
/// Envelope `i` (in plan order) is sent at `FIRST_SENT + i * SPACING`: every `sent_at` differs,
/// and all are inside the clock window at `NOW`.
const FIRST_SENT: Timestamp = Timestamp(NOW.0 - 100_000);
const SPACING: u64 = 250;
const DAY: u64 = 24 * 3_600_000;

fn key(seed: u8) -> SigningKey {
    SigningKey::from_bytes(&[seed; 32])
}

fn pk(seed: u8) -> PeerKey {
    PeerKey::from(&key(seed))
}

fn issue(grant_to: Audience, role: Role, nonce: u8) -> Capability {
    let grant = Grant {
        audience: grant_to,
        role,
        not_before: Timestamp(NOW.0 - DAY),
        expires_at: Timestamp(NOW.0 + DAY),
        depth: 0,
    };
    Capability::issue(&key(HOST), ROOM, grant, [nonce; 8]).expect("fixture grant is valid")
}

/// How a member got in.
#[derive(Clone, Copy, Debug)]
enum Pass {
    /// The room's one bearer listener link, shared with other members.
    SharedLink,
    /// A bearer listener link of its own.
    OwnLink,
    /// A speaker capability bound to it.
    Speaker,
}

/// What a member says about itself.
#[derive(Clone, Copy, Debug)]
enum Own {
    Presence,
    Rename(u8),
    Leave,
    Chat(u8),
    React(u8),
    RaiseHand,
    LowerHand,
}

/// What the host or the moderator does.
#[derive(Clone, Copy, Debug)]
enum Staff {
    Mute(Index),
    Unmute(Index),
    Recording(bool),
    Chat(u8),
}

/// A change of someone's role. A promotion to the stage also lowers the target's hand, as of the
/// promotion's stamp, so these interleave with hands (see `promotions_and_hands_commute`).
#[derive(Clone, Copy, Debug)]
enum Assign {
    HostPromote(Role),
    HostDemote,
    ModeratorPromote,
    ModeratorDemote,
    StepDown,
}

#[derive(Clone, Copy, Debug)]
enum Act {
    Member(Index, Own),
    Host(Staff),
    Moderator(Staff),
    Assign(Index, Assign),
}

/// Everyone joins first (in plan order; arrival order is shuffled), then the acts follow.
///
/// Left out, because their acceptance depends on the order of arrival (as the module docs say):
/// `CapabilityRef` (refused before the capability it names has arrived: every envelope here
/// carries its capability), `Remove` (refuses the target's envelopes arriving after it),
/// `RoomEnded` (refuses everything after it), promotions to moderator and any act on the
/// moderator (whether a moderator may act on someone depends on their role at arrival), and more
/// than `SEQ_WINDOW` envelopes from one author.
#[derive(Clone, Debug)]
struct Plan {
    passes: Vec<Pass>,
    acts: Vec<Act>,
}

fn pass() -> impl Strategy<Value = Pass> {
    prop_oneof![
        Just(Pass::SharedLink),
        Just(Pass::OwnLink),
        Just(Pass::Speaker)
    ]
}

fn own() -> impl Strategy<Value = Own> {
    prop_oneof![
        1 => Just(Own::Presence),
        1 => any::<u8>().prop_map(Own::Rename),
        1 => Just(Own::Leave),
        1 => any::<u8>().prop_map(Own::Chat),
        1 => any::<u8>().prop_map(Own::React),
        3 => Just(Own::RaiseHand),
        2 => Just(Own::LowerHand),
    ]
}

fn staff() -> impl Strategy<Value = Staff> {
    prop_oneof![
        any::<Index>().prop_map(Staff::Mute),
        any::<Index>().prop_map(Staff::Unmute),
        any::<bool>().prop_map(Staff::Recording),
        any::<u8>().prop_map(Staff::Chat),
    ]
}

fn assign() -> impl Strategy<Value = Assign> {
    prop_oneof![
        Just(Assign::HostPromote(Role::Speaker)),
        Just(Assign::HostPromote(Role::Listener)),
        Just(Assign::HostDemote),
        Just(Assign::ModeratorPromote),
        Just(Assign::ModeratorDemote),
        Just(Assign::StepDown),
    ]
}

fn act() -> impl Strategy<Value = Act> {
    prop_oneof![
        6 => (any::<Index>(), own()).prop_map(|(who, what)| Act::Member(who, what)),
        2 => staff().prop_map(Act::Host),
        1 => staff().prop_map(Act::Moderator),
        2 => (any::<Index>(), assign()).prop_map(|(who, how)| Act::Assign(who, how)),
    ]
}

fn plan() -> impl Strategy<Value = Plan> {
    plan_of(act())
}

/// Only what touches hands and roles: raising and lowering hands, leaving and coming back, and
/// every kind of assignment, so that promotions and hands interleave densely.
fn hands_and_roles() -> impl Strategy<Value = Act> {
    let own = prop_oneof![
        4 => Just(Own::RaiseHand),
        2 => Just(Own::LowerHand),
        1 => Just(Own::Leave),
        1 => Just(Own::Presence),
    ];
    prop_oneof![
        1 => (any::<Index>(), own).prop_map(|(who, what)| Act::Member(who, what)),
        1 => (any::<Index>(), assign()).prop_map(|(who, how)| Act::Assign(who, how)),
    ]
}

fn plan_of(act: impl Strategy<Value = Act>) -> impl Strategy<Value = Plan> {
    (
        prop::collection::vec(pass(), 1..=MAX_MEMBERS),
        prop::collection::vec(act, 0..=MAX_ACTS),
    )
        .prop_map(|(passes, acts)| Plan { passes, acts })
}

/// Most envelopes a plan signs: everyone's `Join`, then the acts.
const MAX_ENVELOPES: usize = 2 + MAX_MEMBERS + MAX_ACTS;

/// An order of arrival, as one sort key per envelope: envelopes arrive by key, ties in plan
/// order. Unlike `prop_shuffle` on the built envelopes, this does not depend on the plan, so
/// proptest shrinks plans and orders independently (towards plan order).
#[derive(Clone, Debug)]
struct Arrival(Vec<u16>);

impl Arrival {
    fn order(&self, len: usize) -> Vec<usize> {
        let mut order: Vec<usize> = (0..len).collect();
        order.sort_by_key(|&index| self.0[index]);
        order
    }
}

fn arrival() -> impl Strategy<Value = Arrival> {
    prop::collection::vec(any::<u16>(), MAX_ENVELOPES).prop_map(Arrival)
}

/// Signs the plan's envelopes, in plan order.
fn build(plan: &Plan) -> Vec<Verified<Envelope>> {
    let shared = issue(Audience::Bearer, Role::Listener, 0);
    let members: Vec<(u8, Capability)> = plan
        .passes
        .iter()
        .enumerate()
        .map(|(index, pass)| {
            let seed = FIRST_MEMBER + index as u8;
            let cap = match pass {
                Pass::SharedLink => shared.clone(),
                Pass::OwnLink => issue(Audience::Bearer, Role::Listener, seed),
                Pass::Speaker => issue(Audience::Bound(pk(seed)), Role::Speaker, seed),
            };
            (seed, cap)
        })
        .collect();
    let moderator = issue(Audience::Bound(pk(MODERATOR)), Role::Moderator, MODERATOR);

    let mut out = Outbox::default();
    out.send(HOST, Authority::Host, join(HOST, 0));
    out.send(
        MODERATOR,
        Authority::Capability(moderator.clone()),
        join(MODERATOR, 0),
    );
    for (seed, cap) in &members {
        out.send(*seed, Authority::Capability(cap.clone()), join(*seed, 0));
    }

    let member = |index: &Index| &members[index.index(members.len())];
    for act in &plan.acts {
        match *act {
            Act::Member(who, what) => {
                let (seed, cap) = member(&who);
                let body = match what {
                    Own::Presence => ControlBody::Presence,
                    Own::Rename(variant) => join(*seed, variant % 3),
                    Own::Leave => ControlBody::Leave,
                    Own::Chat(text) => chat(text),
                    Own::React(emoji) => ControlBody::Reaction {
                        emoji: ["👏", "🔥", "😂"][usize::from(emoji % 3)].into(),
                    },
                    Own::RaiseHand => ControlBody::RaiseHand,
                    Own::LowerHand => ControlBody::LowerHand,
                };
                out.send(*seed, Authority::Capability(cap.clone()), body);
            }
            Act::Host(what) => {
                out.send(HOST, Authority::Host, staff_body(what, &members));
            }
            Act::Moderator(what) => out.send(
                MODERATOR,
                Authority::Capability(moderator.clone()),
                staff_body(what, &members),
            ),
            Act::Assign(who, how) => {
                let (seed, cap) = member(&who);
                let target = pk(*seed);
                let host = |body| (HOST, Authority::Host, body);
                let by_moderator =
                    |body| (MODERATOR, Authority::Capability(moderator.clone()), body);
                let (author, authority, body) = match how {
                    Assign::HostPromote(role) => host(ControlBody::Promote { target, role }),
                    Assign::HostDemote => host(ControlBody::Demote { target }),
                    Assign::ModeratorPromote => by_moderator(ControlBody::Promote {
                        target,
                        role: Role::Speaker,
                    }),
                    Assign::ModeratorDemote => by_moderator(ControlBody::Demote { target }),
                    Assign::StepDown => (
                        *seed,
                        Authority::Capability(cap.clone()),
                        ControlBody::Demote { target },
                    ),
                };
                out.send(author, authority, body);
            }
        }
    }
    for (author, count) in &out.seqs {
        assert!(
            *count <= SEQ_WINDOW,
            "each author stays within the sequence window ({count} from seed {author})"
        );
    }
    out.envelopes
}

fn staff_body(what: Staff, members: &[(u8, Capability)]) -> ControlBody {
    let target = |index: Index| pk(members[index.index(members.len())].0);
    match what {
        Staff::Mute(who) => ControlBody::Mute {
            target: target(who),
        },
        Staff::Unmute(who) => ControlBody::Unmute {
            target: target(who),
        },
        Staff::Recording(true) => ControlBody::RecordingStarted,
        Staff::Recording(false) => ControlBody::RecordingStopped,
        Staff::Chat(text) => chat(text),
    }
}

fn join(seed: u8, variant: u8) -> ControlBody {
    ControlBody::Join {
        name: format!("member {seed} ({variant})"),
    }
}

fn chat(text: u8) -> ControlBody {
    ControlBody::Chat {
        text: format!("message {text}"),
    }
}

/// Signs envelopes in plan order: sequence numbers count up per author, and `sent_at` up across
/// everyone.
#[derive(Default)]
struct Outbox {
    envelopes: Vec<Verified<Envelope>>,
    seqs: BTreeMap<u8, u64>,
}

impl Outbox {
    fn send(&mut self, author: u8, authority: Authority, body: ControlBody) {
        let seq = self.seqs.entry(author).or_default();
        *seq += 1;
        let sent_at = FIRST_SENT.plus_millis(self.envelopes.len() as u64 * SPACING);
        let envelope = Envelope::sign(&key(author), ROOM, *seq, sent_at, authority, body)
            .expect("generated envelopes are within limits")
            .verify()
            .expect("generated envelopes are signed by their author");
        self.envelopes.push(envelope);
    }
}

/// Folds the envelopes in `order`; returns the state and the envelopes refused, with why.
fn fold(envelopes: &[Verified<Envelope>], order: &[usize]) -> (RoomState, Vec<(usize, String)>) {
    let mut state = RoomState::new(ROOM, pk(HOST));
    let mut refused = Vec::new();
    for &index in order {
        // Every envelope arrives at the same `NOW` here: the per-author budgets of chat and
        // reactions (not state, tested on their own) would take plans for floods.
        state.budgets = Default::default();
        if let Err(rejected) = state.apply(NOW, &envelopes[index]) {
            refused.push((index, rejected.to_string()));
        }
    }
    (state, refused)
}

/// Folds in plan order and in both shuffled orders: everything accepted, the same state.
fn check_commutes(plan: &Plan, arrivals: [&Arrival; 2]) -> Result<(), TestCaseError> {
    let envelopes = build(plan);
    let in_order: Vec<usize> = (0..envelopes.len()).collect();
    let (expected, refused) = fold(&envelopes, &in_order);
    prop_assert_eq!(refused, vec![], "refused in plan order");
    for arrival in arrivals {
        let order = arrival.order(envelopes.len());
        let (state, refused) = fold(&envelopes, &order);
        prop_assert_eq!(refused, vec![], "refused in order {:?}", order);
        prop_assert!(
            state == expected,
            "state differs in order {:?}:\n{}",
            order,
            diff(&expected, &state)
        );
    }
    Ok(())
}

/// What differs between two states, in a few lines rather than two pages.
fn diff(expected: &RoomState, found: &RoomState) -> String {
    let mut lines = Vec::new();
    let keys: std::collections::BTreeSet<_> = expected
        .members
        .keys()
        .chain(found.members.keys())
        .collect();
    for key in keys {
        let (a, b) = (expected.members.get(key), found.members.get(key));
        if a != b {
            lines.push(format!(
                "member {key:?}:\n  in plan order: {a:?}\n  reordered:     {b:?}"
            ));
        }
    }
    let rest = |state: &RoomState| {
        format!(
            "recording {:?}, revoked {:?}, banned {:?}, ended {}, seqs {:?}",
            state.recording, state.revoked, state.banned, state.ended, state.seqs
        )
    };
    if rest(expected) != rest(found) {
        lines.push(format!(
            "in plan order: {}\nreordered:     {}",
            rest(expected),
            rest(found)
        ));
    }
    lines.join("\n")
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(CASES))]

    /// Joins, presence, names, leaves, chat, reactions, hands, mutes, recording, and role
    /// assignments by the host, the moderator or the member stepping down.
    #[test]
    fn any_order_gives_the_same_state(plan in plan(), first in arrival(), second in arrival()) {
        check_commutes(&plan, [&first, &second])?;
    }

    /// Hands and assignments only, densely interleaved: every promotion to the stage lowers the
    /// hand as of its own stamp, so the hand register (value and stamp) ends the same in every
    /// order, including repeated promotions and members whose capability already puts them on
    /// stage. (A promotion used to lower the hand only if it changed the role as seen on
    /// arrival; see `state::tests::promotion_lowers_the_hand_whatever_the_order`.)
    #[test]
    fn promotions_and_hands_commute(
        plan in plan_of(hands_and_roles()),
        first in arrival(),
        second in arrival(),
    ) {
        check_commutes(&plan, [&first, &second])?;
    }
}
