//! Table tests for the room fold: one [`check`] and many tiny cases. A case is a list of steps
//! (an envelope with its expected result, a repeat of an earlier envelope, or a `tick`) and the
//! view of the room expected at the end. [`check`] also asserts, after every rejection, that the
//! state is exactly what it was before.

use ed25519_dalek::SigningKey;

use super::*;
use crate::capability::{Audience, Capability, Grant};
use crate::id::Role;

use RoomRole::{Host, Listener, Moderator, Speaker};

const HOST: u8 = 1;
const ALICE: u8 = 2;
const BOB: u8 = 3;
const CAROL: u8 = 4;
/// Joins with a moderator capability bound to her.
const MARIA: u8 = 5;
/// A second moderator.
const MO: u8 = 6;
/// Joins with a speaker capability bound to him.
const SAM: u8 = 7;
const MALLORY: u8 = 66;

/// Everyone's display name.
const NAMES: [(u8, &str); 8] = [
    (HOST, "hana"),
    (ALICE, "alice"),
    (BOB, "bob"),
    (CAROL, "carol"),
    (MARIA, "maria"),
    (MO, "mo"),
    (SAM, "sam"),
    (MALLORY, "mallory"),
];

const ROOM: RoomId = RoomId([7; 16]);
const OTHER_ROOM: RoomId = RoomId([8; 16]);

/// The receiver's clock for every step unless a step says otherwise.
const NOW: Timestamp = Timestamp::from_secs(1_800_000_000);
const DAY: u64 = 24 * 3_600_000;
/// Every fixture capability is valid from a day before `NOW` to a day after.
const NOT_BEFORE: Timestamp = Timestamp(NOW.0 - DAY);
const EXPIRES: Timestamp = Timestamp(NOW.0 + DAY);
/// Step `i` is sent at `START + i` seconds unless it says otherwise.
const START: i64 = -90_000;

fn key(seed: u8) -> SigningKey {
    SigningKey::from_bytes(&[seed; 32])
}

fn pk(seed: u8) -> PeerKey {
    PeerKey::from(&key(seed))
}

fn name(seed: u8) -> &'static str {
    NAMES
        .iter()
        .find(|(s, _)| *s == seed)
        .map(|(_, name)| *name)
        .expect("every seed used in a case has a name")
}

/// The name of a key, for views.
fn who(key: &PeerKey) -> String {
    NAMES
        .iter()
        .find(|(seed, _)| pk(*seed) == *key)
        .map_or_else(|| key.short(), |(_, name)| (*name).to_owned())
}

/// `NOW` plus `offset` milliseconds.
fn at(offset: i64) -> Timestamp {
    Timestamp(
        NOW.0
            .checked_add_signed(offset)
            .expect("offsets stay near NOW"),
    )
}

// ---------------------------------------------------------------------------------------------
// Capabilities
// ---------------------------------------------------------------------------------------------

fn grant(audience: Audience, role: Role) -> Grant {
    Grant {
        audience,
        role,
        not_before: NOT_BEFORE,
        expires_at: EXPIRES,
        depth: 0,
    }
}

fn issue(room: RoomId, issuer: u8, grant: Grant, nonce: u8) -> Capability {
    Capability::issue(&key(issuer), room, grant, [nonce; 8]).expect("fixture grant is valid")
}

/// The room's bearer listener link: what anyone with the invite presents.
fn link() -> Capability {
    issue(ROOM, HOST, grant(Audience::Bearer, Role::Listener), 1)
}

/// A second, distinct bearer listener link.
fn other_link() -> Capability {
    issue(ROOM, HOST, grant(Audience::Bearer, Role::Listener), 2)
}

fn bound(seed: u8, role: Role) -> Capability {
    issue(ROOM, HOST, grant(Audience::Bound(pk(seed)), role), seed)
}

fn moderator(seed: u8) -> Capability {
    bound(seed, Role::Moderator)
}

fn speaker(seed: u8) -> Capability {
    bound(seed, Role::Speaker)
}

/// Maria's moderator capability with delegation depth 1.
fn delegating_moderator() -> Capability {
    let grant = Grant {
        depth: 1,
        ..grant(Audience::Bound(pk(MARIA)), Role::Moderator)
    };
    issue(ROOM, HOST, grant, 50)
}

/// A bearer listener link Maria delegated from [`delegating_moderator`].
fn delegated_link() -> Capability {
    delegating_moderator()
        .delegate(
            &key(MARIA),
            grant(Audience::Bearer, Role::Listener),
            [51; 8],
        )
        .expect("a listener link narrows a moderator capability")
}

fn cap(cap: Capability) -> Authority {
    Authority::Capability(cap)
}

fn by_ref(cap: &Capability) -> Authority {
    Authority::CapabilityRef(cap.id())
}

// ---------------------------------------------------------------------------------------------
// Bodies
// ---------------------------------------------------------------------------------------------

/// Joins under the seed's own name.
fn join(seed: u8) -> ControlBody {
    named(name(seed))
}

fn named(name: &str) -> ControlBody {
    ControlBody::Join { name: name.into() }
}

fn chat(text: &str) -> ControlBody {
    ControlBody::Chat { text: text.into() }
}

fn promote(seed: u8, role: Role) -> ControlBody {
    ControlBody::Promote {
        target: pk(seed),
        role,
    }
}

fn demote(seed: u8) -> ControlBody {
    ControlBody::Demote { target: pk(seed) }
}

fn mute(seed: u8) -> ControlBody {
    ControlBody::Mute { target: pk(seed) }
}

fn unmute(seed: u8) -> ControlBody {
    ControlBody::Unmute { target: pk(seed) }
}

fn remove(seed: u8, revoke: Vec<CapId>) -> ControlBody {
    ControlBody::Remove {
        target: pk(seed),
        revoke,
    }
}

// ---------------------------------------------------------------------------------------------
// Expected changes and rejections
// ---------------------------------------------------------------------------------------------

fn joined(seed: u8, role: RoomRole) -> RoomChange {
    RoomChange::MemberJoined {
        member: pk(seed),
        name: name(seed).into(),
        role,
    }
}

fn left(seed: u8, reason: LeaveReason) -> RoomChange {
    RoomChange::MemberLeft {
        member: pk(seed),
        reason,
    }
}

fn role_changed(seed: u8, role: RoomRole, by: u8) -> RoomChange {
    RoomChange::RoleChanged {
        member: pk(seed),
        role,
        by: pk(by),
    }
}

fn hand_raised(seed: u8) -> RoomChange {
    RoomChange::HandRaised { member: pk(seed) }
}

fn hand_lowered(seed: u8) -> RoomChange {
    RoomChange::HandLowered { member: pk(seed) }
}

fn muted(seed: u8, by: u8) -> RoomChange {
    RoomChange::Muted {
        member: pk(seed),
        by: pk(by),
    }
}

fn unmuted(seed: u8, by: u8) -> RoomChange {
    RoomChange::Unmuted {
        member: pk(seed),
        by: pk(by),
    }
}

fn removed(seed: u8, by: u8) -> RoomChange {
    RoomChange::Removed {
        member: pk(seed),
        by: pk(by),
    }
}

fn said(seed: u8, text: &str, offset: i64) -> RoomChange {
    RoomChange::Chat {
        from: pk(seed),
        text: text.into(),
        at: at(offset),
    }
}

fn not_allowed(role: RoomRole, action: &'static str) -> Rejected {
    Rejected::NotAllowed { role, action }
}

fn not_allowed_on(role: RoomRole, action: &'static str, target_role: RoomRole) -> Rejected {
    Rejected::NotAllowedOn {
        role,
        action,
        target_role,
    }
}

// ---------------------------------------------------------------------------------------------
// Steps, views, cases
// ---------------------------------------------------------------------------------------------

/// One envelope to sign and apply, and what `apply` should return.
#[derive(Clone, Debug)]
struct Msg {
    author: u8,
    authority: Authority,
    body: ControlBody,
    room: RoomId,
    /// `None`: one more than the highest this author used so far in the case.
    seq: Option<u64>,
    /// Milliseconds from `NOW`; `None`: `START` plus the step's index in seconds.
    sent_at: Option<i64>,
    /// The receiver's clock, milliseconds from `NOW`.
    now: i64,
}

#[derive(Clone, Debug)]
enum Step {
    Apply(Box<Msg>, Result<Vec<RoomChange>, Rejected>),
    /// Applies the very envelope of an earlier step again.
    Again(usize, Result<Vec<RoomChange>, Rejected>),
    /// `tick` at `NOW` plus this many milliseconds.
    Tick(i64, Vec<RoomChange>),
}

/// An envelope from the host under `Authority::Host`.
fn host(body: ControlBody) -> Msg {
    by(HOST, Authority::Host, body)
}

fn by(author: u8, authority: Authority, body: ControlBody) -> Msg {
    Msg {
        author,
        authority,
        body,
        room: ROOM,
        seq: None,
        sent_at: None,
        now: 0,
    }
}

impl Msg {
    fn seq(self, seq: u64) -> Self {
        Self {
            seq: Some(seq),
            ..self
        }
    }

    fn at(self, offset: i64) -> Self {
        Self {
            sent_at: Some(offset),
            ..self
        }
    }

    fn now(self, now: i64) -> Self {
        Self { now, ..self }
    }

    fn room(self, room: RoomId) -> Self {
        Self { room, ..self }
    }

    fn ok<const N: usize>(self, changes: [RoomChange; N]) -> Step {
        Step::Apply(Box::new(self), Ok(changes.into()))
    }

    fn err(self, rejected: impl Into<Rejected>) -> Step {
        Step::Apply(Box::new(self), Err(rejected.into()))
    }
}

fn again(step: usize, expect: Result<Vec<RoomChange>, Rejected>) -> Step {
    Step::Again(step, expect)
}

fn tick<const N: usize>(now: i64, changes: [RoomChange; N]) -> Step {
    Step::Tick(now, changes.into())
}

/// What the room looks like at the end of a case. Empty fields expect nothing: a case states
/// everything it leaves behind.
#[derive(Clone, PartialEq, Eq, Debug, Default)]
struct View {
    /// `present()`: display names and roles, in order.
    present: Vec<(String, RoomRole)>,
    /// `hands()`, in order.
    hands: Vec<String>,
    /// Members whose `muted` register is set, by name.
    muted: Vec<String>,
    recording: bool,
    banned: Vec<String>,
    revoked: BTreeSet<CapId>,
    ended: bool,
}

fn view() -> View {
    View::default()
}

fn names(names: &[&str]) -> Vec<String> {
    names.iter().map(|name| (*name).to_owned()).collect()
}

impl View {
    fn of(state: &RoomState) -> Self {
        Self {
            present: state
                .present()
                .iter()
                .map(|member| (member.display_name(), member.role()))
                .collect(),
            hands: state
                .hands()
                .iter()
                .map(|member| member.display_name())
                .collect(),
            muted: state
                .members
                .values()
                .filter(|member| member.muted.value)
                .map(|member| who(&member.key))
                .collect(),
            recording: state.recording.value,
            banned: state.banned.iter().map(who).collect(),
            revoked: state.revoked.clone(),
            ended: state.ended,
        }
    }

    fn present(self, present: &[(&str, RoomRole)]) -> Self {
        Self {
            present: present
                .iter()
                .map(|(name, role)| ((*name).to_owned(), *role))
                .collect(),
            ..self
        }
    }

    fn hands(self, hands: &[&str]) -> Self {
        Self {
            hands: names(hands),
            ..self
        }
    }

    fn muted(self, muted: &[&str]) -> Self {
        Self {
            muted: names(muted),
            ..self
        }
    }

    fn recording(self) -> Self {
        Self {
            recording: true,
            ..self
        }
    }

    fn banned(self, banned: &[&str]) -> Self {
        Self {
            banned: names(banned),
            ..self
        }
    }

    fn revoked(self, revoked: &[CapId]) -> Self {
        Self {
            revoked: revoked.iter().copied().collect(),
            ..self
        }
    }

    fn ended(self) -> Self {
        Self {
            ended: true,
            ..self
        }
    }
}

struct Case {
    name: &'static str,
    steps: Vec<Step>,
    view: View,
    /// `role_of` for these seeds at the end.
    roles: Vec<(u8, Option<RoomRole>)>,
    /// The room lets members record for themselves.
    members_may_record: bool,
}

fn case(name: &'static str, steps: Vec<Step>, view: View) -> Case {
    Case {
        name,
        steps,
        view,
        roles: Vec::new(),
        members_may_record: false,
    }
}

impl Case {
    fn role_of(mut self, seed: u8, role: Option<RoomRole>) -> Self {
        self.roles.push((seed, role));
        self
    }

    fn members_may_record(mut self) -> Self {
        self.members_may_record = true;
        self
    }
}

/// Runs a case against a fresh room hosted by `HOST`.
fn check(case: &Case) {
    let mut state = RoomState::new(ROOM, pk(HOST)).with_member_recording(case.members_may_record);
    let mut seqs: BTreeMap<u8, u64> = BTreeMap::new();
    let mut sent: Vec<Option<Verified<Envelope>>> = Vec::new();
    for (index, step) in case.steps.iter().enumerate() {
        let context = format!("case {:?}, step {index}", case.name);
        match step {
            Step::Apply(msg, expect) => {
                let highest = seqs.entry(msg.author).or_default();
                let seq = msg.seq.unwrap_or(*highest + 1);
                *highest = (*highest).max(seq);
                let offset = msg.sent_at.unwrap_or(START + 1000 * index as i64);
                let envelope = Envelope::sign(
                    &key(msg.author),
                    msg.room,
                    seq,
                    at(offset),
                    msg.authority.clone(),
                    msg.body.clone(),
                )
                .expect("fixture envelopes are within limits")
                .verify()
                .expect("fixture envelopes are signed by their author");
                apply(&mut state, at(msg.now), &envelope, expect, &context);
                sent.push(Some(envelope));
            }
            Step::Again(earlier, expect) => {
                let envelope = sent[*earlier]
                    .clone()
                    .expect("`again` names an earlier envelope step");
                apply(&mut state, NOW, &envelope, expect, &context);
                sent.push(None);
            }
            Step::Tick(now, expect) => {
                assert_eq!(&state.tick(at(*now)), expect, "{context}: tick");
                sent.push(None);
            }
        }
    }
    let found = View::of(&state);
    assert_eq!(found, case.view, "case {:?}: final view", case.name);
    let stage: Vec<_> = case
        .view
        .present
        .iter()
        .filter(|(_, role)| role.on_stage())
        .cloned()
        .collect();
    let found_stage: Vec<_> = state
        .stage()
        .iter()
        .map(|member| (member.display_name(), member.role()))
        .collect();
    assert_eq!(found_stage, stage, "case {:?}: stage", case.name);
    for (seed, role) in &case.roles {
        assert_eq!(
            state.role_of(&pk(*seed)),
            *role,
            "case {:?}: role of {}",
            case.name,
            name(*seed)
        );
    }
}

fn apply(
    state: &mut RoomState,
    now: Timestamp,
    envelope: &Verified<Envelope>,
    expect: &Result<Vec<RoomChange>, Rejected>,
    context: &str,
) {
    let before = state.clone();
    let result = state.apply(now, envelope);
    assert_eq!(&result, expect, "{context}");
    if result.is_err() {
        assert_eq!(
            *state, before,
            "{context}: a rejected envelope changed the state"
        );
    }
}

fn check_all(cases: &[Case]) {
    for case in cases {
        check(case);
    }
}

// Common openings.

fn host_joins() -> Step {
    host(join(HOST)).ok([joined(HOST, Host)])
}

fn listener_joins(seed: u8) -> Step {
    by(seed, cap(link()), join(seed)).ok([joined(seed, Listener)])
}

fn moderator_joins(seed: u8) -> Step {
    by(seed, cap(moderator(seed)), join(seed)).ok([joined(seed, Moderator)])
}

fn speaker_joins(seed: u8) -> Step {
    by(seed, cap(speaker(seed)), join(seed)).ok([joined(seed, Speaker)])
}

// ---------------------------------------------------------------------------------------------
// Cases
// ---------------------------------------------------------------------------------------------

#[test]
fn joining_and_leaving() {
    check_all(&[
        case(
            "the host joins under its own authority",
            vec![host_joins()],
            view().present(&[("hana", Host)]),
        )
        .role_of(HOST, Some(Host))
        .role_of(ALICE, None),
        case(
            "the host is the host before it says anything",
            vec![],
            view(),
        )
        .role_of(HOST, Some(Host)),
        case(
            "a host presenting a capability is still the host",
            vec![by(HOST, cap(link()), join(HOST)).ok([joined(HOST, Host)])],
            view().present(&[("hana", Host)]),
        ),
        case(
            "a listener joins with the room's bearer link",
            vec![host_joins(), listener_joins(ALICE)],
            view().present(&[("hana", Host), ("alice", Listener)]),
        )
        .role_of(ALICE, Some(Listener)),
        case(
            "many join with the same bearer link",
            vec![host_joins(), listener_joins(BOB), listener_joins(ALICE)],
            view().present(&[("hana", Host), ("alice", Listener), ("bob", Listener)]),
        ),
        case(
            "present() lists the host, then by role, then by name",
            vec![
                listener_joins(BOB),
                speaker_joins(SAM),
                listener_joins(ALICE),
                moderator_joins(MARIA),
                host_joins(),
            ],
            view().present(&[
                ("hana", Host),
                ("maria", Moderator),
                ("sam", Speaker),
                ("alice", Listener),
                ("bob", Listener),
            ]),
        ),
        case(
            "display names are trimmed",
            vec![host(named("  hana \t")).ok([joined(HOST, Host)])],
            view().present(&[("hana", Host)]),
        ),
        case(
            "an empty name shows the short key",
            vec![
                by(ALICE, cap(link()), named("   ")).ok([RoomChange::MemberJoined {
                    member: pk(ALICE),
                    name: pk(ALICE).short(),
                    role: Listener,
                }]),
            ],
            view().present(&[(pk(ALICE).short().as_str(), Listener)]),
        ),
        case(
            "presence alone brings a member in, under the short key; a later name is silent",
            vec![
                by(ALICE, cap(link()), ControlBody::Presence).ok([RoomChange::MemberJoined {
                    member: pk(ALICE),
                    name: pk(ALICE).short(),
                    role: Listener,
                }]),
                by(ALICE, by_ref(&link()), join(ALICE)).ok([]),
            ],
            view().present(&[("alice", Listener)]),
        ),
        case(
            "joining twice changes nothing the second time",
            vec![
                listener_joins(ALICE),
                by(ALICE, by_ref(&link()), join(ALICE)).ok([]),
            ],
            view().present(&[("alice", Listener)]),
        ),
        case(
            "an older name does not replace a newer one",
            vec![
                by(ALICE, cap(link()), named("ally"))
                    .at(-1_000)
                    .ok([RoomChange::MemberJoined {
                        member: pk(ALICE),
                        name: "ally".into(),
                        role: Listener,
                    }]),
                by(ALICE, by_ref(&link()), named("alice")).at(-2_000).ok([]),
            ],
            view().present(&[("ally", Listener)]),
        ),
        case(
            "leave, then come back",
            vec![
                host_joins(),
                listener_joins(ALICE),
                by(ALICE, by_ref(&link()), ControlBody::Leave).ok([left(ALICE, LeaveReason::Left)]),
                by(ALICE, by_ref(&link()), ControlBody::Leave).ok([]),
                by(ALICE, by_ref(&link()), join(ALICE)).ok([joined(ALICE, Listener)]),
            ],
            view().present(&[("hana", Host), ("alice", Listener)]),
        ),
        case(
            "a leave older than the join does not take the member out",
            vec![
                listener_joins(ALICE),
                by(ALICE, by_ref(&link()), ControlBody::Leave)
                    .at(START - 1_000)
                    .ok([]),
            ],
            view().present(&[("alice", Listener)]),
        ),
        case(
            "chat and reactions",
            vec![
                listener_joins(ALICE),
                by(ALICE, by_ref(&link()), chat("hello"))
                    .at(-3_000)
                    .ok([said(ALICE, "hello", -3_000)]),
                by(
                    ALICE,
                    by_ref(&link()),
                    ControlBody::Reaction {
                        emoji: "👏".into()
                    },
                )
                .ok([RoomChange::Reaction {
                    from: pk(ALICE),
                    emoji: "👏".into(),
                }]),
            ],
            view().present(&[("alice", Listener)]),
        ),
        case(
            "anyone with the link may chat without joining (and stays absent)",
            vec![
                host_joins(),
                by(CAROL, cap(link()), chat("hi"))
                    .at(-1_000)
                    .ok([said(CAROL, "hi", -1_000)]),
            ],
            view().present(&[("hana", Host)]),
        )
        .role_of(CAROL, Some(Listener)),
        case(
            // No RoleChanged is reported: the role rises silently.
            "the best capability presented counts",
            vec![
                listener_joins(ALICE),
                by(ALICE, cap(speaker(ALICE)), ControlBody::Presence).ok([]),
                by(ALICE, cap(link()), ControlBody::Presence).ok([]),
            ],
            view().present(&[("alice", Speaker)]),
        ),
        case(
            "a capability reference names the role of the best capability presented",
            vec![
                speaker_joins(SAM),
                by(SAM, cap(link()), ControlBody::Presence).ok([]),
                by(SAM, by_ref(&link()), ControlBody::Presence).ok([]),
            ],
            view().present(&[("sam", Speaker)]),
        ),
        case(
            "a delegated link admits a listener",
            vec![
                host_joins(),
                by(ALICE, cap(delegated_link()), join(ALICE)).ok([joined(ALICE, Listener)]),
            ],
            view().present(&[("hana", Host), ("alice", Listener)]),
        ),
    ]);
}

#[test]
fn hands() {
    check_all(&[
        case(
            "raise and lower a hand",
            vec![
                host_joins(),
                listener_joins(ALICE),
                by(ALICE, by_ref(&link()), ControlBody::RaiseHand).ok([hand_raised(ALICE)]),
                by(ALICE, by_ref(&link()), ControlBody::LowerHand).ok([hand_lowered(ALICE)]),
                by(ALICE, by_ref(&link()), ControlBody::LowerHand).ok([]),
            ],
            view().present(&[("hana", Host), ("alice", Listener)]),
        ),
        case(
            "hands are listed in the order they went up, not the order they arrived",
            vec![
                listener_joins(ALICE),
                listener_joins(BOB),
                listener_joins(CAROL),
                by(BOB, by_ref(&link()), ControlBody::RaiseHand)
                    .at(-5_000)
                    .ok([hand_raised(BOB)]),
                by(CAROL, by_ref(&link()), ControlBody::RaiseHand)
                    .at(-1_000)
                    .ok([hand_raised(CAROL)]),
                by(ALICE, by_ref(&link()), ControlBody::RaiseHand)
                    .at(-8_000)
                    .ok([hand_raised(ALICE)]),
            ],
            view()
                .present(&[("alice", Listener), ("bob", Listener), ("carol", Listener)])
                .hands(&["alice", "bob", "carol"]),
        ),
        case(
            // The register takes the newer raise: a second tap on "raise hand" is announced again
            // and sends Alice behind Bob.
            "raising a raised hand again moves it to the back of the queue",
            vec![
                listener_joins(ALICE),
                listener_joins(BOB),
                by(ALICE, by_ref(&link()), ControlBody::RaiseHand)
                    .at(-5_000)
                    .ok([hand_raised(ALICE)]),
                by(BOB, by_ref(&link()), ControlBody::RaiseHand)
                    .at(-4_000)
                    .ok([hand_raised(BOB)]),
                by(ALICE, by_ref(&link()), ControlBody::RaiseHand)
                    .at(-3_000)
                    .ok([hand_raised(ALICE)]),
            ],
            view()
                .present(&[("alice", Listener), ("bob", Listener)])
                .hands(&["bob", "alice"]),
        ),
        case(
            "a lower older than the raise leaves the hand up",
            vec![
                listener_joins(ALICE),
                by(ALICE, by_ref(&link()), ControlBody::RaiseHand)
                    .at(-5_000)
                    .ok([hand_raised(ALICE)]),
                by(ALICE, by_ref(&link()), ControlBody::LowerHand)
                    .at(-6_000)
                    .ok([]),
            ],
            view().present(&[("alice", Listener)]).hands(&["alice"]),
        ),
        case(
            "the host cannot raise a hand (lowering is harmless)",
            vec![
                host_joins(),
                host(ControlBody::RaiseHand).err(not_allowed(Host, "raise a hand")),
                host(ControlBody::LowerHand).ok([]),
            ],
            view().present(&[("hana", Host)]),
        ),
        case(
            "leaving lowers the hand, and coming back does not raise it",
            vec![
                listener_joins(ALICE),
                by(ALICE, by_ref(&link()), ControlBody::RaiseHand).ok([hand_raised(ALICE)]),
                by(ALICE, by_ref(&link()), ControlBody::Leave).ok([left(ALICE, LeaveReason::Left)]),
                by(ALICE, by_ref(&link()), join(ALICE)).ok([joined(ALICE, Listener)]),
            ],
            view().present(&[("alice", Listener)]),
        ),
        case(
            "hands of members who are not present are not listed",
            vec![by(ALICE, cap(link()), ControlBody::RaiseHand).ok([hand_raised(ALICE)])],
            view(),
        ),
    ]);
}

#[test]
fn stage() {
    check_all(&[
        case(
            // The hand goes down with the promotion, reported after the role; going back does
            // not raise it again.
            "the host promotes a raised hand to the stage, then sends them back",
            vec![
                host_joins(),
                listener_joins(ALICE),
                by(ALICE, by_ref(&link()), ControlBody::RaiseHand).ok([hand_raised(ALICE)]),
                host(promote(ALICE, Role::Speaker))
                    .ok([role_changed(ALICE, Speaker, HOST), hand_lowered(ALICE)]),
                host(demote(ALICE)).ok([role_changed(ALICE, Listener, HOST)]),
            ],
            view().present(&[("hana", Host), ("alice", Listener)]),
        )
        .role_of(ALICE, Some(Listener)),
        case(
            "a promotion to moderator lowers the hand too",
            vec![
                host_joins(),
                listener_joins(ALICE),
                by(ALICE, by_ref(&link()), ControlBody::RaiseHand).ok([hand_raised(ALICE)]),
                host(promote(ALICE, Role::Moderator))
                    .ok([role_changed(ALICE, Moderator, HOST), hand_lowered(ALICE)]),
            ],
            view().present(&[("hana", Host), ("alice", Moderator)]),
        ),
        case(
            // The role does not change, so only the hand is reported.
            "promoting a speaker again lowers a hand raised on stage",
            vec![
                listener_joins(ALICE),
                host(promote(ALICE, Role::Speaker)).ok([role_changed(ALICE, Speaker, HOST)]),
                by(ALICE, by_ref(&link()), ControlBody::RaiseHand).ok([hand_raised(ALICE)]),
                host(promote(ALICE, Role::Speaker)).ok([hand_lowered(ALICE)]),
                host(promote(ALICE, Role::Speaker)).ok([]),
            ],
            view().present(&[("alice", Speaker)]),
        ),
        case(
            "promoting a member whose capability already makes them a speaker lowers their hand",
            vec![
                speaker_joins(SAM),
                by(SAM, by_ref(&speaker(SAM)), ControlBody::RaiseHand).ok([hand_raised(SAM)]),
                host(promote(SAM, Role::Speaker)).ok([hand_lowered(SAM)]),
            ],
            view().present(&[("sam", Speaker)]),
        ),
        case(
            "a promotion to listener, or a demotion, leaves the hand up",
            vec![
                host_joins(),
                listener_joins(ALICE),
                speaker_joins(SAM),
                by(ALICE, by_ref(&link()), ControlBody::RaiseHand).ok([hand_raised(ALICE)]),
                by(SAM, by_ref(&speaker(SAM)), ControlBody::RaiseHand).ok([hand_raised(SAM)]),
                host(promote(ALICE, Role::Listener)).ok([]),
                host(demote(SAM)).ok([role_changed(SAM, Listener, HOST)]),
            ],
            view()
                .present(&[("hana", Host), ("alice", Listener), ("sam", Listener)])
                .hands(&["alice", "sam"]),
        ),
        case(
            // The raise is newer than the promotion: whatever the order of arrival, it wins.
            "a hand raised after the promotion but arriving before it stays up",
            vec![
                listener_joins(ALICE),
                by(ALICE, by_ref(&link()), ControlBody::RaiseHand)
                    .at(-4_000)
                    .ok([hand_raised(ALICE)]),
                host(promote(ALICE, Role::Speaker))
                    .at(-5_000)
                    .ok([role_changed(ALICE, Speaker, HOST)]),
            ],
            view().present(&[("alice", Speaker)]).hands(&["alice"]),
        ),
        case(
            "promoted to speaker, on stage",
            vec![
                host_joins(),
                listener_joins(ALICE),
                listener_joins(BOB),
                host(promote(BOB, Role::Speaker)).ok([role_changed(BOB, Speaker, HOST)]),
                host(promote(BOB, Role::Speaker)).ok([]),
            ],
            view().present(&[("hana", Host), ("bob", Speaker), ("alice", Listener)]),
        ),
        case(
            "a hand raised before the promotion but arriving after it stays down",
            vec![
                listener_joins(ALICE),
                host(promote(ALICE, Role::Speaker))
                    .at(-5_000)
                    .ok([role_changed(ALICE, Speaker, HOST)]),
                by(ALICE, by_ref(&link()), ControlBody::RaiseHand)
                    .at(-6_000)
                    .ok([]),
                by(ALICE, by_ref(&link()), ControlBody::RaiseHand)
                    .at(-4_000)
                    .ok([hand_raised(ALICE)]),
            ],
            view().present(&[("alice", Speaker)]).hands(&["alice"]),
        ),
        case(
            "a speaker steps down",
            vec![
                speaker_joins(SAM),
                by(SAM, by_ref(&speaker(SAM)), demote(SAM)).ok([role_changed(SAM, Listener, SAM)]),
            ],
            view().present(&[("sam", Listener)]),
        ),
        case(
            "a promoted listener steps down",
            vec![
                listener_joins(ALICE),
                host(promote(ALICE, Role::Speaker)).ok([role_changed(ALICE, Speaker, HOST)]),
                by(ALICE, by_ref(&link()), demote(ALICE))
                    .ok([role_changed(ALICE, Listener, ALICE)]),
            ],
            view().present(&[("alice", Listener)]),
        ),
        case(
            "a listener stepping down changes nothing",
            vec![
                listener_joins(ALICE),
                by(ALICE, by_ref(&link()), demote(ALICE)).ok([]),
            ],
            view().present(&[("alice", Listener)]),
        ),
        case(
            "a moderator steps down and can no longer moderate",
            vec![
                moderator_joins(MARIA),
                listener_joins(ALICE),
                by(MARIA, by_ref(&moderator(MARIA)), demote(MARIA))
                    .ok([role_changed(MARIA, Listener, MARIA)]),
                by(
                    MARIA,
                    by_ref(&moderator(MARIA)),
                    promote(ALICE, Role::Speaker),
                )
                .err(not_allowed(Listener, "promote")),
            ],
            view().present(&[("alice", Listener), ("maria", Listener)]),
        ),
        case(
            "a promotion sent before a self-demotion does not undo it",
            vec![
                speaker_joins(SAM),
                by(SAM, by_ref(&speaker(SAM)), demote(SAM))
                    .at(-2_000)
                    .ok([role_changed(SAM, Listener, SAM)]),
                host(promote(SAM, Role::Speaker)).at(-3_000).ok([]),
            ],
            view().present(&[("sam", Listener)]),
        ),
        case(
            "the host may promote someone who has not arrived yet",
            vec![
                host(promote(ALICE, Role::Speaker)).ok([role_changed(ALICE, Speaker, HOST)]),
                by(ALICE, cap(link()), join(ALICE)).ok([joined(ALICE, Speaker)]),
            ],
            view().present(&[("alice", Speaker)]),
        ),
    ]);
}

#[test]
fn moderation() {
    check_all(&[
        case(
            "a moderator promotes, mutes and demotes a listener",
            vec![
                host_joins(),
                moderator_joins(MARIA),
                listener_joins(ALICE),
                by(
                    MARIA,
                    by_ref(&moderator(MARIA)),
                    promote(ALICE, Role::Speaker),
                )
                .ok([role_changed(ALICE, Speaker, MARIA)]),
                by(MARIA, by_ref(&moderator(MARIA)), mute(ALICE)).ok([muted(ALICE, MARIA)]),
                by(MARIA, by_ref(&moderator(MARIA)), demote(ALICE))
                    .ok([role_changed(ALICE, Listener, MARIA)]),
            ],
            view()
                .present(&[("hana", Host), ("maria", Moderator), ("alice", Listener)])
                .muted(&["alice"]),
        ),
        case(
            "a moderator cannot touch the host",
            vec![
                host_joins(),
                moderator_joins(MARIA),
                by(
                    MARIA,
                    by_ref(&moderator(MARIA)),
                    promote(HOST, Role::Speaker),
                )
                .err(not_allowed_on(Moderator, "promote", Host)),
                by(MARIA, by_ref(&moderator(MARIA)), demote(HOST))
                    .err(not_allowed_on(Moderator, "demote", Host)),
                by(MARIA, by_ref(&moderator(MARIA)), mute(HOST))
                    .err(not_allowed_on(Moderator, "mute", Host)),
                by(MARIA, by_ref(&moderator(MARIA)), unmute(HOST))
                    .err(not_allowed_on(Moderator, "unmute", Host)),
                by(MARIA, by_ref(&moderator(MARIA)), remove(HOST, vec![]))
                    .err(not_allowed_on(Moderator, "remove", Host)),
            ],
            view().present(&[("hana", Host), ("maria", Moderator)]),
        ),
        case(
            "a moderator cannot touch another moderator, nor themselves",
            vec![
                moderator_joins(MARIA),
                moderator_joins(MO),
                by(MARIA, by_ref(&moderator(MARIA)), promote(MO, Role::Speaker))
                    .err(not_allowed_on(Moderator, "promote", Moderator)),
                by(MARIA, by_ref(&moderator(MARIA)), demote(MO))
                    .err(not_allowed_on(Moderator, "demote", Moderator)),
                by(MARIA, by_ref(&moderator(MARIA)), mute(MO))
                    .err(not_allowed_on(Moderator, "mute", Moderator)),
                by(MARIA, by_ref(&moderator(MARIA)), unmute(MO))
                    .err(not_allowed_on(Moderator, "unmute", Moderator)),
                by(MARIA, by_ref(&moderator(MARIA)), remove(MO, vec![]))
                    .err(not_allowed_on(Moderator, "remove", Moderator)),
                by(MARIA, by_ref(&moderator(MARIA)), mute(MARIA))
                    .err(not_allowed_on(Moderator, "mute", Moderator)),
                by(
                    MARIA,
                    by_ref(&moderator(MARIA)),
                    promote(MARIA, Role::Moderator),
                )
                .err(not_allowed_on(Moderator, "promote", Moderator)),
            ],
            view().present(&[("maria", Moderator), ("mo", Moderator)]),
        ),
        case(
            // The "higher role than their own" check can never fire: a capability role is at
            // most Moderator and only moderators and the host get past the target check.
            "a moderator may make moderators, and then cannot undo it; the host can",
            vec![
                host_joins(),
                moderator_joins(MARIA),
                listener_joins(ALICE),
                listener_joins(BOB),
                by(
                    MARIA,
                    by_ref(&moderator(MARIA)),
                    promote(ALICE, Role::Moderator),
                )
                .ok([role_changed(ALICE, Moderator, MARIA)]),
                by(ALICE, by_ref(&link()), promote(BOB, Role::Speaker))
                    .ok([role_changed(BOB, Speaker, ALICE)]),
                by(MARIA, by_ref(&moderator(MARIA)), demote(ALICE))
                    .err(not_allowed_on(Moderator, "demote", Moderator)),
                host(demote(ALICE)).ok([role_changed(ALICE, Listener, HOST)]),
                by(ALICE, by_ref(&link()), demote(BOB)).err(not_allowed(Listener, "demote")),
            ],
            view().present(&[
                ("hana", Host),
                ("maria", Moderator),
                ("bob", Speaker),
                ("alice", Listener),
            ]),
        ),
        case(
            "listeners and speakers cannot moderate",
            vec![
                listener_joins(ALICE),
                listener_joins(BOB),
                speaker_joins(SAM),
                by(ALICE, by_ref(&link()), promote(ALICE, Role::Speaker))
                    .err(not_allowed(Listener, "promote")),
                by(ALICE, by_ref(&link()), promote(BOB, Role::Moderator))
                    .err(not_allowed(Listener, "promote")),
                by(ALICE, by_ref(&link()), demote(SAM)).err(not_allowed(Listener, "demote")),
                by(ALICE, by_ref(&link()), mute(SAM)).err(not_allowed(Listener, "mute")),
                by(ALICE, by_ref(&link()), remove(BOB, vec![]))
                    .err(not_allowed(Listener, "remove")),
                by(SAM, by_ref(&speaker(SAM)), mute(ALICE)).err(not_allowed(Speaker, "mute")),
                by(SAM, by_ref(&speaker(SAM)), unmute(ALICE)).err(not_allowed(Speaker, "unmute")),
                by(SAM, by_ref(&speaker(SAM)), promote(ALICE, Role::Speaker))
                    .err(not_allowed(Speaker, "promote")),
                by(SAM, by_ref(&speaker(SAM)), demote(ALICE)).err(not_allowed(Speaker, "demote")),
                by(SAM, by_ref(&speaker(SAM)), remove(ALICE, vec![]))
                    .err(not_allowed(Speaker, "remove")),
            ],
            view().present(&[("sam", Speaker), ("alice", Listener), ("bob", Listener)]),
        ),
        case(
            "a listener may forge a promotion only for itself to be refused",
            vec![
                host_joins(),
                listener_joins(ALICE),
                by(ALICE, cap(link()), promote(ALICE, Role::Moderator))
                    .err(not_allowed(Listener, "promote")),
                by(ALICE, Authority::Host, promote(ALICE, Role::Moderator))
                    .err(Rejected::NotHost { author: pk(ALICE) }),
            ],
            view().present(&[("hana", Host), ("alice", Listener)]),
        ),
        case(
            "a demoted moderator cannot moderate, even presenting the capability again",
            vec![
                host_joins(),
                moderator_joins(MARIA),
                listener_joins(ALICE),
                host(demote(MARIA)).ok([role_changed(MARIA, Listener, HOST)]),
                by(
                    MARIA,
                    by_ref(&moderator(MARIA)),
                    promote(ALICE, Role::Speaker),
                )
                .err(not_allowed(Listener, "promote")),
                by(MARIA, cap(moderator(MARIA)), mute(ALICE)).err(not_allowed(Listener, "mute")),
                host(promote(MARIA, Role::Moderator)).ok([role_changed(MARIA, Moderator, HOST)]),
                by(MARIA, by_ref(&moderator(MARIA)), mute(ALICE)).ok([muted(ALICE, MARIA)]),
            ],
            view()
                .present(&[("hana", Host), ("maria", Moderator), ("alice", Listener)])
                .muted(&["alice"]),
        ),
        case(
            "the host cannot demote, mute or remove itself",
            vec![
                host_joins(),
                host(demote(HOST)).err(not_allowed_on(Host, "demote", Host)),
                host(promote(HOST, Role::Speaker)).err(not_allowed_on(Host, "promote", Host)),
                host(mute(HOST)).err(not_allowed_on(Host, "mute", Host)),
                host(remove(HOST, vec![])).err(not_allowed_on(Host, "remove", Host)),
            ],
            view().present(&[("hana", Host)]),
        ),
        case(
            "a moderator cannot end the room",
            vec![
                host_joins(),
                moderator_joins(MARIA),
                by(MARIA, by_ref(&moderator(MARIA)), ControlBody::RoomEnded)
                    .err(not_allowed(Moderator, "end the room")),
            ],
            view().present(&[("hana", Host), ("maria", Moderator)]),
        ),
        case(
            "a moderator's action before its capability is known is refused",
            vec![
                listener_joins(ALICE),
                by(
                    MARIA,
                    by_ref(&moderator(MARIA)),
                    promote(ALICE, Role::Speaker),
                )
                .err(Rejected::UnknownCapability {
                    id: moderator(MARIA).id(),
                }),
                by(MARIA, cap(moderator(MARIA)), promote(ALICE, Role::Speaker))
                    .ok([role_changed(ALICE, Speaker, MARIA)]),
            ],
            view().present(&[("alice", Speaker)]),
        ),
    ]);
}

#[test]
fn mute_and_recording() {
    check_all(&[
        case(
            "the host mutes and unmutes",
            vec![
                host_joins(),
                speaker_joins(SAM),
                host(mute(SAM)).ok([muted(SAM, HOST)]),
                host(mute(SAM)).ok([]),
                host(unmute(SAM)).ok([unmuted(SAM, HOST)]),
                host(unmute(SAM)).ok([]),
            ],
            view().present(&[("hana", Host), ("sam", Speaker)]),
        ),
        case(
            "a muted speaker cannot unmute themselves",
            vec![
                moderator_joins(MARIA),
                speaker_joins(SAM),
                by(MARIA, by_ref(&moderator(MARIA)), mute(SAM)).ok([muted(SAM, MARIA)]),
                by(SAM, by_ref(&speaker(SAM)), unmute(SAM)).err(not_allowed(Speaker, "unmute")),
            ],
            view()
                .present(&[("maria", Moderator), ("sam", Speaker)])
                .muted(&["sam"]),
        ),
        case(
            "an unmute older than the mute does not unmute",
            vec![
                speaker_joins(SAM),
                host(mute(SAM)).at(-2_000).ok([muted(SAM, HOST)]),
                host(unmute(SAM)).at(-3_000).ok([]),
            ],
            view().present(&[("sam", Speaker)]).muted(&["sam"]),
        ),
        case(
            "the host and moderators start and stop recording",
            vec![
                host_joins(),
                moderator_joins(MARIA),
                host(ControlBody::RecordingStarted)
                    .ok([RoomChange::RecordingStarted { by: pk(HOST) }]),
                host(ControlBody::RecordingStarted).ok([]),
                by(
                    MARIA,
                    by_ref(&moderator(MARIA)),
                    ControlBody::RecordingStopped,
                )
                .ok([RoomChange::RecordingStopped { by: pk(MARIA) }]),
                by(
                    MARIA,
                    by_ref(&moderator(MARIA)),
                    ControlBody::RecordingStarted,
                )
                .ok([RoomChange::RecordingStarted { by: pk(MARIA) }]),
            ],
            view()
                .present(&[("hana", Host), ("maria", Moderator)])
                .recording(),
        ),
        case(
            "listeners and speakers cannot record",
            vec![
                listener_joins(ALICE),
                speaker_joins(SAM),
                by(ALICE, by_ref(&link()), ControlBody::RecordingStarted)
                    .err(not_allowed(Listener, "start or stop recording")),
                by(SAM, by_ref(&speaker(SAM)), ControlBody::RecordingStarted)
                    .err(not_allowed(Speaker, "start or stop recording")),
                by(SAM, by_ref(&speaker(SAM)), ControlBody::RecordingStopped)
                    .err(not_allowed(Speaker, "start or stop recording")),
            ],
            view().present(&[("sam", Speaker), ("alice", Listener)]),
        ),
        case(
            "a stop older than the start does not stop the recording",
            vec![
                host(ControlBody::RecordingStarted)
                    .at(-2_000)
                    .ok([RoomChange::RecordingStarted { by: pk(HOST) }]),
                host(ControlBody::RecordingStopped).at(-3_000).ok([]),
            ],
            view().recording(),
        ),
    ]);
}

#[test]
fn removal() {
    let link_id = link().id();
    check_all(&[
        case(
            "a removed member is banned and the listed link revoked; others who used it stay",
            vec![
                host_joins(),
                listener_joins(ALICE),
                listener_joins(BOB),
                by(ALICE, by_ref(&link()), ControlBody::RaiseHand).ok([hand_raised(ALICE)]),
                host(remove(ALICE, vec![link_id]))
                    .ok([removed(ALICE, HOST), left(ALICE, LeaveReason::Removed)]),
                by(ALICE, by_ref(&link()), chat("let me back"))
                    .err(Rejected::Banned { author: pk(ALICE) }),
                by(ALICE, cap(link()), join(ALICE)).err(Rejected::Banned { author: pk(ALICE) }),
                by(ALICE, cap(other_link()), join(ALICE))
                    .err(Rejected::Banned { author: pk(ALICE) }),
                by(CAROL, cap(link()), join(CAROL)).err(CapabilityError::Revoked { id: link_id }),
                by(BOB, cap(link()), chat("still here"))
                    .at(-1_000)
                    .ok([said(BOB, "still here", -1_000)]),
                by(BOB, by_ref(&link()), chat("and here"))
                    .at(-500)
                    .ok([said(BOB, "and here", -500)]),
                by(CAROL, cap(other_link()), join(CAROL)).ok([joined(CAROL, Listener)]),
                host(remove(ALICE, vec![])).ok([]),
            ],
            view()
                .present(&[("hana", Host), ("bob", Listener), ("carol", Listener)])
                .banned(&["alice"])
                .revoked(&[link_id]),
        )
        .role_of(ALICE, Some(Listener)),
        case(
            "a moderator removes a speaker; everything the speaker sends is refused",
            vec![
                moderator_joins(MARIA),
                speaker_joins(SAM),
                by(
                    MARIA,
                    by_ref(&moderator(MARIA)),
                    remove(SAM, vec![speaker(SAM).id()]),
                )
                .ok([removed(SAM, MARIA), left(SAM, LeaveReason::Removed)]),
                by(SAM, by_ref(&speaker(SAM)), ControlBody::Presence)
                    .err(Rejected::Banned { author: pk(SAM) }),
                by(SAM, by_ref(&speaker(SAM)), ControlBody::Leave)
                    .err(Rejected::Banned { author: pk(SAM) }),
            ],
            view()
                .present(&[("maria", Moderator)])
                .banned(&["sam"])
                .revoked(&[speaker(SAM).id()]),
        ),
        case(
            "the host removes a moderator",
            vec![
                host_joins(),
                moderator_joins(MARIA),
                host(remove(MARIA, vec![moderator(MARIA).id()]))
                    .ok([removed(MARIA, HOST), left(MARIA, LeaveReason::Removed)]),
                by(MARIA, cap(moderator(MARIA)), join(MARIA))
                    .err(Rejected::Banned { author: pk(MARIA) }),
            ],
            view()
                .present(&[("hana", Host)])
                .banned(&["maria"])
                .revoked(&[moderator(MARIA).id()]),
        ),
        case(
            "removing someone who never came bans them and revokes the listed capabilities",
            vec![
                host_joins(),
                host(remove(MALLORY, vec![speaker(CAROL).id()])).ok([removed(MALLORY, HOST)]),
                by(MALLORY, cap(link()), join(MALLORY)).err(Rejected::Banned {
                    author: pk(MALLORY),
                }),
                by(CAROL, cap(speaker(CAROL)), join(CAROL)).err(CapabilityError::Revoked {
                    id: speaker(CAROL).id(),
                }),
                listener_joins(CAROL),
            ],
            view()
                .present(&[("hana", Host), ("carol", Listener)])
                .banned(&["mallory"])
                .revoked(&[speaker(CAROL).id()]),
        ),
        case(
            "revoking a moderator's capability refuses new joiners on links delegated from it",
            vec![
                host_joins(),
                by(MARIA, cap(delegating_moderator()), join(MARIA)).ok([joined(MARIA, Moderator)]),
                by(ALICE, cap(delegated_link()), join(ALICE)).ok([joined(ALICE, Listener)]),
                host(remove(MALLORY, vec![delegating_moderator().id()]))
                    .ok([removed(MALLORY, HOST)]),
                by(BOB, cap(delegated_link()), join(BOB)).err(CapabilityError::Revoked {
                    id: delegating_moderator().id(),
                }),
                // Members admitted earlier keep their standing.
                by(ALICE, cap(delegated_link()), ControlBody::Presence).ok([]),
                by(MARIA, cap(delegating_moderator()), mute(ALICE)).ok([muted(ALICE, MARIA)]),
            ],
            view()
                .present(&[("hana", Host), ("maria", Moderator), ("alice", Listener)])
                .muted(&["alice"])
                .banned(&["mallory"])
                .revoked(&[delegating_moderator().id()]),
        ),
        case(
            // What this node knows of Alice's capabilities does not matter: nothing is revoked
            // unless listed, so every node ends with the same revocations whatever it had seen.
            "a removal revokes only what it lists; others keep using the target's link",
            vec![
                host_joins(),
                listener_joins(ALICE),
                host(remove(ALICE, vec![]))
                    .ok([removed(ALICE, HOST), left(ALICE, LeaveReason::Removed)]),
                by(ALICE, cap(link()), join(ALICE)).err(Rejected::Banned { author: pk(ALICE) }),
                listener_joins(BOB),
            ],
            view()
                .present(&[("hana", Host), ("bob", Listener)])
                .banned(&["alice"]),
        ),
        case(
            "a second removal may revoke more",
            vec![
                host_joins(),
                listener_joins(ALICE),
                host(remove(ALICE, vec![]))
                    .ok([removed(ALICE, HOST), left(ALICE, LeaveReason::Removed)]),
                host(remove(ALICE, vec![link_id])).ok([]),
                by(BOB, cap(link()), join(BOB)).err(CapabilityError::Revoked { id: link_id }),
            ],
            view()
                .present(&[("hana", Host)])
                .banned(&["alice"])
                .revoked(&[link_id]),
        ),
        case(
            "a removal revokes the listed capabilities whatever the remover had seen",
            vec![
                host_joins(),
                host(remove(ALICE, vec![link_id])).ok([removed(ALICE, HOST)]),
                by(ALICE, cap(link()), join(ALICE)).err(Rejected::Banned { author: pk(ALICE) }),
                by(BOB, cap(link()), join(BOB)).err(CapabilityError::Revoked { id: link_id }),
            ],
            view()
                .present(&[("hana", Host)])
                .banned(&["alice"])
                .revoked(&[link_id]),
        ),
    ]);
}

#[test]
fn replays() {
    check_all(&[
        case(
            "the same envelope twice is a replay",
            vec![
                host_joins(),
                listener_joins(ALICE),
                again(1, Err(Rejected::Replay { seq: 1 })),
                again(0, Err(Rejected::Replay { seq: 1 })),
            ],
            view().present(&[("hana", Host), ("alice", Listener)]),
        ),
        case(
            "out of order within the window is fine, but each number counts once",
            vec![
                by(ALICE, cap(link()), join(ALICE))
                    .seq(10)
                    .ok([joined(ALICE, Listener)]),
                by(ALICE, by_ref(&link()), chat("five"))
                    .seq(5)
                    .at(-5_000)
                    .ok([said(ALICE, "five", -5_000)]),
                by(ALICE, by_ref(&link()), chat("nine"))
                    .seq(9)
                    .at(-4_000)
                    .ok([said(ALICE, "nine", -4_000)]),
                by(ALICE, by_ref(&link()), ControlBody::Presence)
                    .seq(5)
                    .err(Rejected::Replay { seq: 5 }),
                by(ALICE, by_ref(&link()), ControlBody::Presence)
                    .seq(10)
                    .err(Rejected::Replay { seq: 10 }),
                by(ALICE, by_ref(&link()), ControlBody::Presence)
                    .seq(11)
                    .ok([]),
            ],
            view().present(&[("alice", Listener)]),
        ),
        case(
            "older than the window is a replay",
            vec![
                by(ALICE, cap(link()), join(ALICE))
                    .seq(100)
                    .ok([joined(ALICE, Listener)]),
                by(ALICE, by_ref(&link()), ControlBody::Presence)
                    .seq(100 - SEQ_WINDOW)
                    .err(Rejected::Replay {
                        seq: 100 - SEQ_WINDOW,
                    }),
                by(ALICE, by_ref(&link()), ControlBody::Presence)
                    .seq(100 - SEQ_WINDOW + 1)
                    .ok([]),
            ],
            view().present(&[("alice", Listener)]),
        ),
        case(
            "a jump beyond the window forgets what came before it",
            vec![
                listener_joins(ALICE),
                by(ALICE, by_ref(&link()), ControlBody::Presence)
                    .seq(200)
                    .ok([]),
                by(ALICE, by_ref(&link()), ControlBody::Presence)
                    .seq(1)
                    .err(Rejected::Replay { seq: 1 }),
                by(ALICE, by_ref(&link()), ControlBody::Presence)
                    .seq(150)
                    .ok([]),
                by(ALICE, by_ref(&link()), ControlBody::Presence)
                    .seq(150)
                    .err(Rejected::Replay { seq: 150 }),
            ],
            view().present(&[("alice", Listener)]),
        ),
        case(
            "sequence number zero counts like any other",
            vec![
                by(ALICE, cap(link()), join(ALICE))
                    .seq(0)
                    .ok([joined(ALICE, Listener)]),
                by(ALICE, by_ref(&link()), ControlBody::Presence)
                    .seq(0)
                    .err(Rejected::Replay { seq: 0 }),
                by(ALICE, by_ref(&link()), ControlBody::Presence)
                    .seq(1)
                    .ok([]),
            ],
            view().present(&[("alice", Listener)]),
        ),
        case(
            "a rejected envelope does not use up its sequence number",
            vec![
                listener_joins(ALICE),
                by(ALICE, by_ref(&link()), mute(BOB))
                    .seq(2)
                    .err(not_allowed(Listener, "mute")),
                by(ALICE, by_ref(&link()), ControlBody::Presence)
                    .seq(2)
                    .ok([]),
            ],
            view().present(&[("alice", Listener)]),
        ),
        case(
            "sequence numbers are per author",
            vec![
                host(join(HOST)).seq(1).ok([joined(HOST, Host)]),
                by(ALICE, cap(link()), join(ALICE))
                    .seq(1)
                    .ok([joined(ALICE, Listener)]),
            ],
            view().present(&[("hana", Host), ("alice", Listener)]),
        ),
    ]);
}

#[test]
fn clocks_and_authority() {
    let expired = issue(
        ROOM,
        HOST,
        Grant {
            not_before: at(-2 * DAY as i64),
            expires_at: at(-1),
            ..grant(Audience::Bearer, Role::Listener)
        },
        3,
    );
    let early = issue(
        ROOM,
        HOST,
        Grant {
            not_before: at(1),
            expires_at: EXPIRES,
            ..grant(Audience::Bearer, Role::Listener)
        },
        4,
    );
    let elsewhere = issue(OTHER_ROOM, HOST, grant(Audience::Bearer, Role::Listener), 5);
    let forged = issue(ROOM, MALLORY, grant(Audience::Bearer, Role::Moderator), 6);
    check_all(&[
        case(
            "the future is refused beyond the allowed skew",
            vec![
                host(join(HOST))
                    .at(MAX_CLOCK_SKEW_MS as i64 + 1)
                    .err(Rejected::FromTheFuture {
                        sent_at: at(MAX_CLOCK_SKEW_MS as i64 + 1),
                    }),
                host(join(HOST))
                    .at(MAX_CLOCK_SKEW_MS as i64)
                    .ok([joined(HOST, Host)]),
            ],
            view().present(&[("hana", Host)]),
        ),
        case(
            "the past is refused beyond the maximum age",
            vec![
                host(join(HOST))
                    .at(-(MAX_MESSAGE_AGE_MS as i64) - 1)
                    .err(Rejected::TooOld {
                        sent_at: at(-(MAX_MESSAGE_AGE_MS as i64) - 1),
                    }),
                host(join(HOST))
                    .at(-(MAX_MESSAGE_AGE_MS as i64))
                    .ok([joined(HOST, Host)]),
            ],
            view().present(&[("hana", Host)]),
        ),
        case(
            "the clock window follows the receiver's clock",
            vec![
                host(join(HOST))
                    .at(0)
                    .now(-(MAX_CLOCK_SKEW_MS as i64) - 1)
                    .err(Rejected::FromTheFuture { sent_at: NOW }),
                host(join(HOST))
                    .at(0)
                    .now(MAX_MESSAGE_AGE_MS as i64)
                    .ok([joined(HOST, Host)]),
            ],
            view().present(&[("hana", Host)]),
        ),
        case(
            "only the host may claim to be the host",
            vec![
                host_joins(),
                by(MALLORY, Authority::Host, join(MALLORY)).err(Rejected::NotHost {
                    author: pk(MALLORY),
                }),
                by(MALLORY, Authority::Host, ControlBody::RoomEnded).err(Rejected::NotHost {
                    author: pk(MALLORY),
                }),
            ],
            view().present(&[("hana", Host)]),
        ),
        case(
            "an envelope for another room is refused",
            vec![
                host_joins(),
                host(chat("wrong room"))
                    .room(OTHER_ROOM)
                    .err(Rejected::WrongRoom { found: OTHER_ROOM }),
                by(ALICE, cap(link()), join(ALICE))
                    .room(OTHER_ROOM)
                    .err(Rejected::WrongRoom { found: OTHER_ROOM }),
            ],
            view().present(&[("hana", Host)]),
        ),
        case(
            "an expired capability is refused",
            vec![
                by(ALICE, cap(expired.clone()), join(ALICE))
                    .err(CapabilityError::Expired { expires_at: at(-1) }),
            ],
            view(),
        ),
        case(
            "a capability not yet valid is refused",
            vec![
                by(ALICE, cap(early), join(ALICE))
                    .err(CapabilityError::NotYetValid { not_before: at(1) }),
            ],
            view(),
        ),
        case(
            "a capability bound to someone else is refused",
            vec![
                by(CAROL, cap(speaker(BOB)), join(CAROL)).err(CapabilityError::WrongAudience {
                    bound: pk(BOB),
                    presenter: pk(CAROL),
                }),
                by(BOB, cap(speaker(BOB)), join(BOB)).ok([joined(BOB, Speaker)]),
            ],
            view().present(&[("bob", Speaker)]),
        ),
        case(
            "a capability for another room is refused",
            vec![
                by(ALICE, cap(elsewhere), join(ALICE)).err(CapabilityError::WrongRoom {
                    expected: ROOM,
                    found: OTHER_ROOM,
                }),
            ],
            view(),
        ),
        case(
            "a capability not issued by the host is refused",
            vec![
                by(MALLORY, cap(forged), join(MALLORY)).err(CapabilityError::NotIssuedByHost {
                    issuer: pk(MALLORY),
                    host: pk(HOST),
                }),
            ],
            view(),
        ),
        case(
            "a capability reference must name a capability this author presented",
            vec![
                by(ALICE, by_ref(&link()), join(ALICE))
                    .err(Rejected::UnknownCapability { id: link().id() }),
                speaker_joins(BOB),
                by(CAROL, by_ref(&speaker(BOB)), join(CAROL)).err(Rejected::UnknownCapability {
                    id: speaker(BOB).id(),
                }),
                by(ALICE, cap(link()), join(ALICE)).ok([joined(ALICE, Listener)]),
                by(ALICE, by_ref(&link()), chat("hi"))
                    .at(-1_000)
                    .ok([said(ALICE, "hi", -1_000)]),
                by(ALICE, by_ref(&speaker(BOB)), chat("hi")).err(Rejected::UnknownCapability {
                    id: speaker(BOB).id(),
                }),
            ],
            view().present(&[("bob", Speaker), ("alice", Listener)]),
        ),
        case(
            // A reference is good until the capability it names expires (by the receiver's
            // clock, as for the capability itself); the member is still listed until it leaves
            // or times out.
            "a capability that expires after admission",
            vec![
                by(ALICE, cap(expired.clone()), join(ALICE))
                    .at(-10_000)
                    .now(-10_000)
                    .ok([joined(ALICE, Listener)]),
                by(ALICE, by_ref(&expired), chat("still here"))
                    .at(-2_000)
                    .now(-2)
                    .ok([said(ALICE, "still here", -2_000)]),
                by(ALICE, by_ref(&expired), chat("and now?"))
                    .at(-1_000)
                    .now(-1)
                    .err(CapabilityError::Expired { expires_at: at(-1) }),
                by(ALICE, by_ref(&expired), ControlBody::Leave)
                    .at(-500)
                    .err(CapabilityError::Expired { expires_at: at(-1) }),
                by(ALICE, cap(expired.clone()), ControlBody::Presence)
                    .err(CapabilityError::Expired { expires_at: at(-1) }),
            ],
            view().present(&[("alice", Listener)]),
        ),
        case(
            "after its capability expires, a member carries on with another one",
            vec![
                by(ALICE, cap(expired.clone()), join(ALICE))
                    .at(-10_000)
                    .now(-10_000)
                    .ok([joined(ALICE, Listener)]),
                by(ALICE, by_ref(&expired), ControlBody::RaiseHand)
                    .err(CapabilityError::Expired { expires_at: at(-1) }),
                by(ALICE, cap(link()), ControlBody::RaiseHand)
                    .at(-1_000)
                    .ok([hand_raised(ALICE)]),
                by(ALICE, by_ref(&link()), chat("back"))
                    .at(-500)
                    .ok([said(ALICE, "back", -500)]),
                by(ALICE, by_ref(&expired), chat("old pass"))
                    .err(CapabilityError::Expired { expires_at: at(-1) }),
            ],
            view().present(&[("alice", Listener)]).hands(&["alice"]),
        ),
        case(
            "a reference is good until the very moment its capability expires",
            vec![
                speaker_joins(SAM),
                by(SAM, by_ref(&speaker(SAM)), ControlBody::Presence)
                    .at(DAY as i64 - 1_000)
                    .now(DAY as i64 - 1)
                    .ok([]),
                by(SAM, by_ref(&speaker(SAM)), ControlBody::Presence)
                    .at(DAY as i64 - 500)
                    .now(DAY as i64)
                    .err(CapabilityError::Expired {
                        expires_at: EXPIRES,
                    }),
            ],
            view().present(&[("sam", Speaker)]),
        ),
        case(
            "checks run in order: room, end, clock, ban, authority, replay, permission",
            vec![
                host_joins(),
                listener_joins(ALICE),
                host(remove(ALICE, vec![link().id()]))
                    .ok([removed(ALICE, HOST), left(ALICE, LeaveReason::Removed)]),
                by(ALICE, Authority::Host, mute(HOST))
                    .seq(1)
                    .at(MAX_CLOCK_SKEW_MS as i64 + 1)
                    .room(OTHER_ROOM)
                    .err(Rejected::WrongRoom { found: OTHER_ROOM }),
                by(ALICE, Authority::Host, mute(HOST))
                    .seq(1)
                    .at(MAX_CLOCK_SKEW_MS as i64 + 1)
                    .err(Rejected::FromTheFuture {
                        sent_at: at(MAX_CLOCK_SKEW_MS as i64 + 1),
                    }),
                by(ALICE, Authority::Host, mute(HOST))
                    .seq(1)
                    .err(Rejected::Banned { author: pk(ALICE) }),
                by(CAROL, Authority::Host, mute(HOST)).err(Rejected::NotHost { author: pk(CAROL) }),
                by(CAROL, by_ref(&link()), mute(HOST))
                    .err(Rejected::UnknownCapability { id: link().id() }),
                by(CAROL, cap(link()), mute(HOST))
                    .err(CapabilityError::Revoked { id: link().id() }),
                by(CAROL, cap(other_link()), join(CAROL))
                    .seq(2)
                    .ok([joined(CAROL, Listener)]),
                by(CAROL, by_ref(&other_link()), mute(HOST))
                    .seq(2)
                    .err(Rejected::Replay { seq: 2 }),
                by(CAROL, by_ref(&other_link()), mute(HOST)).err(not_allowed(Listener, "mute")),
            ],
            view()
                .present(&[("hana", Host), ("carol", Listener)])
                .banned(&["alice"])
                .revoked(&[link().id()]),
        ),
    ]);
}

#[test]
fn the_end() {
    check_all(&[case(
        "after the host ends the room, everything is refused",
        vec![
            host_joins(),
            listener_joins(ALICE),
            moderator_joins(MARIA),
            by(ALICE, by_ref(&link()), ControlBody::RoomEnded)
                .err(not_allowed(Listener, "end the room")),
            by(MARIA, by_ref(&moderator(MARIA)), ControlBody::RoomEnded)
                .err(not_allowed(Moderator, "end the room")),
            host(ControlBody::RoomEnded).ok([RoomChange::RoomEnded { by: pk(HOST) }]),
            host(chat("one more thing")).err(Rejected::RoomEnded),
            host(ControlBody::RoomEnded).err(Rejected::RoomEnded),
            again(5, Err(Rejected::RoomEnded)),
            by(ALICE, by_ref(&link()), ControlBody::Leave).err(Rejected::RoomEnded),
            by(CAROL, cap(link()), join(CAROL)).err(Rejected::RoomEnded),
            // Sent before the end, arriving after it: refused all the same.
            by(ALICE, by_ref(&link()), ControlBody::RaiseHand)
                .at(START)
                .err(Rejected::RoomEnded),
            host(chat("elsewhere"))
                .room(OTHER_ROOM)
                .err(Rejected::WrongRoom { found: OTHER_ROOM }),
        ],
        // Members are still listed as present: the UI has to look at `ended`.
        view()
            .present(&[("hana", Host), ("maria", Moderator), ("alice", Listener)])
            .ended(),
    )]);
}

#[test]
fn timeouts() {
    const TIMEOUT: i64 = PRESENCE_TIMEOUT_MS as i64;
    check_all(&[
        case(
            "a silent member times out; any message brings them back",
            vec![
                host(join(HOST))
                    .at(-20_000)
                    .now(-20_000)
                    .ok([joined(HOST, Host)]),
                by(ALICE, cap(link()), join(ALICE))
                    .at(-20_000)
                    .now(-20_000)
                    .ok([joined(ALICE, Listener)]),
                by(ALICE, by_ref(&link()), ControlBody::RaiseHand)
                    .at(-19_000)
                    .now(-19_000)
                    .ok([hand_raised(ALICE)]),
                host(ControlBody::Presence).at(-1_000).now(-1_000).ok([]),
                tick(-19_000 + TIMEOUT, []),
                tick(-19_000 + TIMEOUT + 1, [left(ALICE, LeaveReason::TimedOut)]),
                tick(0, []),
                by(ALICE, by_ref(&link()), ControlBody::Presence)
                    .at(-500)
                    .ok([joined(ALICE, Listener)]),
            ],
            // The hand stayed up through the timeout.
            view()
                .present(&[("hana", Host), ("alice", Listener)])
                .hands(&["alice"]),
        ),
        case(
            "a timed-out member is neither present nor listed with a hand up",
            vec![
                listener_joins(ALICE),
                by(ALICE, by_ref(&link()), ControlBody::RaiseHand).ok([hand_raised(ALICE)]),
                tick(TIMEOUT, []),
                tick(TIMEOUT + 1, [left(ALICE, LeaveReason::TimedOut)]),
                tick(TIMEOUT + 2, []),
            ],
            view(),
        )
        .role_of(ALICE, Some(Listener)),
        case(
            "the host times out too (the room does not end)",
            vec![
                host_joins(),
                tick(TIMEOUT + 1, [left(HOST, LeaveReason::TimedOut)]),
            ],
            view(),
        ),
        case(
            "a member who left does not time out",
            vec![
                listener_joins(ALICE),
                by(ALICE, by_ref(&link()), ControlBody::Leave).ok([left(ALICE, LeaveReason::Left)]),
                tick(TIMEOUT + 1, []),
            ],
            view(),
        ),
        case(
            "a removed member does not time out",
            vec![
                host(join(HOST)).at(-1_000).ok([joined(HOST, Host)]),
                listener_joins(ALICE),
                host(remove(ALICE, vec![]))
                    .at(-500)
                    .ok([removed(ALICE, HOST), left(ALICE, LeaveReason::Removed)]),
                host(ControlBody::Presence).at(TIMEOUT).now(TIMEOUT).ok([]),
                tick(TIMEOUT + 1, []),
            ],
            view().present(&[("hana", Host)]).banned(&["alice"]),
        ),
        case(
            // Alice's clock is 20 s slow: what counts is when this node heard her.
            "timeouts follow the receiver's clock, not the sender's",
            vec![
                by(ALICE, cap(link()), join(ALICE))
                    .at(-20_000)
                    .ok([joined(ALICE, Listener)]),
                by(BOB, cap(link()), join(BOB))
                    .at(20_000)
                    .ok([joined(BOB, Listener)]),
                tick(TIMEOUT, []),
                tick(
                    TIMEOUT + 1,
                    [
                        left(ALICE, LeaveReason::TimedOut),
                        left(BOB, LeaveReason::TimedOut),
                    ],
                ),
            ],
            view(),
        ),
        case(
            "each accepted message restarts the wait",
            vec![
                listener_joins(ALICE),
                by(ALICE, by_ref(&link()), chat("still here"))
                    .at(10_000)
                    .now(10_000)
                    .ok([said(ALICE, "still here", 10_000)]),
                tick(TIMEOUT + 1, []),
                tick(10_000 + TIMEOUT, []),
                tick(10_000 + TIMEOUT + 1, [left(ALICE, LeaveReason::TimedOut)]),
            ],
            view(),
        ),
        case(
            // The clock only moves forward: a late envelope does not take it back.
            "an envelope handled with an earlier clock does not shorten the wait",
            vec![
                listener_joins(ALICE),
                by(ALICE, by_ref(&link()), ControlBody::Presence)
                    .at(10_000)
                    .now(10_000)
                    .ok([]),
                by(ALICE, by_ref(&link()), ControlBody::Presence)
                    .at(-5_000)
                    .now(-5_000)
                    .ok([]),
                tick(10_000 + TIMEOUT, []),
                tick(10_000 + TIMEOUT + 1, [left(ALICE, LeaveReason::TimedOut)]),
            ],
            view(),
        ),
        case(
            "a refused envelope does not keep a member in",
            vec![
                listener_joins(ALICE),
                by(ALICE, by_ref(&link()), mute(BOB))
                    .at(10_000)
                    .now(10_000)
                    .err(not_allowed(Listener, "mute")),
                by(ALICE, by_ref(&link()), ControlBody::Presence)
                    .seq(1)
                    .at(10_000)
                    .now(10_000)
                    .err(Rejected::Replay { seq: 1 }),
                tick(TIMEOUT + 1, [left(ALICE, LeaveReason::TimedOut)]),
            ],
            view(),
        ),
        case(
            "a timed-out member comes back with a later message, and can time out again",
            vec![
                listener_joins(ALICE),
                tick(TIMEOUT + 1, [left(ALICE, LeaveReason::TimedOut)]),
                by(ALICE, by_ref(&link()), ControlBody::Presence)
                    .at(TIMEOUT + 2)
                    .now(TIMEOUT + 2)
                    .ok([joined(ALICE, Listener)]),
                tick(2 * TIMEOUT + 2, []),
                tick(2 * TIMEOUT + 3, [left(ALICE, LeaveReason::TimedOut)]),
            ],
            view(),
        ),
    ]);
}

// ---------------------------------------------------------------------------------------------
// Order
// ---------------------------------------------------------------------------------------------

/// Folds `envelopes` in the given order, expecting every one to be accepted.
fn fold(envelopes: &[Verified<Envelope>], order: &[usize]) -> RoomState {
    let mut state = RoomState::new(ROOM, pk(HOST));
    for &index in order {
        state
            .apply(NOW, &envelopes[index])
            .unwrap_or_else(|rejected| panic!("envelope {index} refused: {rejected}"));
    }
    state
}

fn signed(
    author: u8,
    authority: Authority,
    seq: u64,
    offset: i64,
    body: ControlBody,
) -> Verified<Envelope> {
    Envelope::sign(&key(author), ROOM, seq, at(offset), authority, body)
        .expect("fixture envelopes are within limits")
        .verify()
        .expect("fixture envelopes are signed by their author")
}

#[test]
fn registers_converge_whatever_the_order() {
    let envelopes = [
        signed(HOST, Authority::Host, 1, -9_000, join(HOST)),
        signed(ALICE, cap(link()), 1, -8_000, join(ALICE)),
        signed(ALICE, cap(link()), 2, -7_000, ControlBody::RaiseHand),
        signed(ALICE, cap(link()), 3, -6_000, named("al")),
        signed(ALICE, cap(link()), 4, -5_000, ControlBody::Leave),
        signed(HOST, Authority::Host, 2, -4_500, mute(ALICE)),
        signed(
            HOST,
            Authority::Host,
            3,
            -4_000,
            ControlBody::RecordingStarted,
        ),
        signed(ALICE, cap(link()), 5, -3_000, ControlBody::Presence),
        signed(HOST, Authority::Host, 4, -2_000, unmute(ALICE)),
        signed(
            HOST,
            Authority::Host,
            5,
            -1_000,
            ControlBody::RecordingStopped,
        ),
    ];
    let forward: Vec<usize> = (0..envelopes.len()).collect();
    let backward: Vec<usize> = forward.iter().rev().copied().collect();
    let state = fold(&envelopes, &forward);
    assert_eq!(fold(&envelopes, &backward), state);
    assert_eq!(
        View::of(&state),
        view().present(&[("hana", Host), ("al", Listener)])
    );
}

/// Every order of `len` envelopes.
fn permutations(len: usize) -> Vec<Vec<usize>> {
    if len == 0 {
        return vec![vec![]];
    }
    let mut out = Vec::new();
    for shorter in permutations(len - 1) {
        for position in 0..=shorter.len() {
            let mut order = shorter.clone();
            order.insert(position, len - 1);
            out.push(order);
        }
    }
    out
}

/// A promotion to the stage lowers the hand as of its own stamp, whether or not it changes the
/// role as seen on arrival, so the hand register ends the same in every order. (It used to
/// lower the hand only when the role visibly changed on arrival, which depended on the order.)
#[test]
fn promotion_lowers_the_hand_whatever_the_order() {
    let arrive = signed(ALICE, cap(link()), 1, -5_000, join(ALICE));
    let raise = |offset| signed(ALICE, cap(link()), 2, offset, ControlBody::RaiseHand);
    let promote = |seq, offset| {
        signed(
            HOST,
            Authority::Host,
            seq,
            offset,
            promote(ALICE, Role::Speaker),
        )
    };
    let cases = [
        (
            // Raised, promoted (hand down), demoted: the hand stays down, even when the
            // demotion arrives before the older promotion and the raise comes last.
            "raise, promote, demote",
            [
                arrive.clone(),
                raise(-3_000),
                promote(1, -2_000),
                signed(HOST, Authority::Host, 2, -1_000, demote(ALICE)),
            ],
            view().present(&[("alice", Listener)]),
        ),
        (
            // Promoted, hand raised on stage, promoted again: the second promotion lowers the
            // hand whether it arrives before or after the first.
            "promote, raise, promote again",
            [
                arrive.clone(),
                promote(1, -3_000),
                raise(-2_000),
                promote(2, -1_000),
            ],
            view().present(&[("alice", Speaker)]),
        ),
        (
            // A raise newer than the promotion stays up in every order.
            "promote, then raise",
            [
                arrive,
                promote(1, -3_000),
                signed(HOST, Authority::Host, 2, -2_500, mute(ALICE)),
                raise(-2_000),
            ],
            view()
                .present(&[("alice", Speaker)])
                .hands(&["alice"])
                .muted(&["alice"]),
        ),
    ];
    for (name, envelopes, expected) in cases {
        let in_order = fold(&envelopes, &[0, 1, 2, 3]);
        assert_eq!(View::of(&in_order), expected, "{name}: in order");
        for order in permutations(envelopes.len()) {
            let reordered = fold(&envelopes, &order);
            assert_eq!(
                View::of(&reordered),
                expected,
                "{name}: the view differs in order {order:?}"
            );
            assert_eq!(
                reordered, in_order,
                "{name}: states differ in order {order:?}"
            );
        }
    }
}

/// Timeouts count from when this node heard the member, by its own clock: a member whose clock
/// is 20 s slow (well inside `MAX_MESSAGE_AGE_MS`) and who sends presence on time is never timed
/// out. (Timeouts used to compare the sender's `sent_at` with the local clock, so such a member
/// left and rejoined with every heartbeat.)
#[test]
fn a_member_with_a_slow_clock_does_not_time_out_while_sending_presence() {
    let slow = 20_000;
    let mut state = RoomState::new(ROOM, pk(HOST));
    let mut spurious = Vec::new();
    for beat in 0..6u64 {
        let local = (beat * PRESENCE_INTERVAL_MS) as i64;
        let body = if beat == 0 {
            join(ALICE)
        } else {
            ControlBody::Presence
        };
        let envelope = signed(ALICE, cap(link()), beat + 1, local - slow, body);
        state
            .apply(at(local), &envelope)
            .expect("a clock 20 s slow is within the accepted age");
        // The local node ticks every second until the next heartbeat.
        for second in 1..(PRESENCE_INTERVAL_MS / 1000) as i64 {
            spurious.extend(state.tick(at(local + second * 1000)));
        }
    }
    assert_eq!(
        spurious,
        vec![],
        "member timed out while sending presence on time"
    );
    // Once the heartbeats stop, the timeout runs from the last one heard.
    let last = (5 * PRESENCE_INTERVAL_MS) as i64;
    assert_eq!(state.tick(at(last + PRESENCE_TIMEOUT_MS as i64)), vec![]);
    assert_eq!(
        state.tick(at(last + PRESENCE_TIMEOUT_MS as i64 + 1)),
        vec![left(ALICE, LeaveReason::TimedOut)]
    );
}

#[test]
fn members_say_where_they_are_in_the_relay_tree() {
    let moved = |seed: u8, parent: u8, depth: u16| RoomChange::TreeMoved {
        member: pk(seed),
        position: TreePosition {
            parent: pk(parent),
            depth,
        },
    };
    let position = |parent: u8, depth: u16| ControlBody::TreePosition {
        parent: pk(parent),
        depth,
    };
    check_all(&[
        case(
            "positions are last-writer-wins; saying the same again is silent",
            vec![
                host_joins(),
                listener_joins(ALICE),
                listener_joins(BOB),
                by(BOB, by_ref(&link()), position(HOST, 1)).ok([moved(BOB, HOST, 1)]),
                by(ALICE, by_ref(&link()), position(BOB, 2)).ok([moved(ALICE, BOB, 2)]),
                by(ALICE, by_ref(&link()), position(HOST, 1)).ok([moved(ALICE, HOST, 1)]),
                by(ALICE, by_ref(&link()), position(HOST, 1)).ok([]),
                // A report sent before the last one (delivered late) changes nothing.
                by(ALICE, by_ref(&link()), position(BOB, 2))
                    .at(START - 1_000)
                    .ok([]),
            ],
            view().present(&[("hana", Host), ("alice", Listener), ("bob", Listener)]),
        ),
        case(
            "an outsider cannot place itself in the tree",
            vec![
                host_joins(),
                by(MALLORY, Authority::Host, position(HOST, 1)).err(Rejected::NotHost {
                    author: pk(MALLORY),
                }),
            ],
            view().present(&[("hana", Host)]),
        ),
    ]);
}

fn replay_available(title: &str) -> ControlBody {
    ControlBody::ReplayAvailable {
        manifest: crate::replay::ManifestId([9; 16]),
        recording: crate::id::RecordingId([8; 16]),
        recorder: pk(HOST),
        title: title.into(),
        bytes: 1234,
        addrs: Vec::new(),
        key: None,
    }
}

fn replay_announced(by: u8, title: &str) -> RoomChange {
    RoomChange::ReplayAvailable {
        by: pk(by),
        manifest: crate::replay::ManifestId([9; 16]),
        recording: crate::id::RecordingId([8; 16]),
        recorder: pk(HOST),
        title: title.into(),
        bytes: 1234,
        addrs: Vec::new(),
        key: None,
    }
}

#[test]
fn replay_announcements() {
    check_all(&[
        case(
            "the host announces a replay; so may a listener (the manifest is signed)",
            vec![
                host_joins(),
                host(replay_available("Book club")).ok([replay_announced(HOST, "Book club")]),
                listener_joins(ALICE),
                by(ALICE, by_ref(&link()), replay_available("Book club"))
                    .ok([replay_announced(ALICE, "Book club")]),
            ],
            view().present(&[("hana", Host), ("alice", Listener)]),
        ),
        case(
            "an outsider cannot announce",
            vec![
                host_joins(),
                by(MALLORY, Authority::Host, replay_available("x")).err(Rejected::NotHost {
                    author: pk(MALLORY),
                }),
            ],
            view().present(&[("hana", Host)]),
        ),
    ]);
    let long = ControlBody::ReplayAvailable {
        manifest: crate::replay::ManifestId([9; 16]),
        recording: crate::id::RecordingId([8; 16]),
        recorder: pk(HOST),
        title: "x".repeat(crate::room::MAX_TITLE_BYTES + 1),
        bytes: 0,
        addrs: Vec::new(),
        key: None,
    };
    assert!(matches!(
        long.check_limits(),
        Err(crate::codec::DecodeError::FieldTooLong { .. })
    ));
    let bad_addr = ControlBody::ReplayAvailable {
        manifest: crate::replay::ManifestId([9; 16]),
        recording: crate::id::RecordingId([8; 16]),
        recorder: pk(HOST),
        title: String::new(),
        bytes: 0,
        addrs: vec![serde_bytes::ByteBuf::from(vec![0xff])],
        key: None,
    };
    assert_eq!(
        bad_addr.check_limits(),
        Err(crate::codec::DecodeError::BadAddress)
    );
}

#[test]
fn members_record_for_themselves_only_when_the_room_allows() {
    let recording = |seed: u8, on: bool| RoomChange::MemberRecording {
        member: pk(seed),
        on,
    };
    let record = |on: bool| ControlBody::MemberRecording { on };
    // Without the policy: moderators and the host may, listeners may not.
    check_all(&[case(
        "a listener may not record; a moderator may",
        vec![
            host_joins(),
            listener_joins(ALICE),
            moderator_joins(MARIA),
            by(ALICE, by_ref(&link()), record(true)).err(not_allowed(
                Listener,
                "record (this room does not let members record)",
            )),
            by(MARIA, by_ref(&moderator(MARIA)), record(true)).ok([recording(MARIA, true)]),
            by(MARIA, by_ref(&moderator(MARIA)), record(false)).ok([recording(MARIA, false)]),
        ],
        view().present(&[("hana", Host), ("maria", Moderator), ("alice", Listener)]),
    )]);
    // With it: a listener records, and saying it again is silent.
    check_all(&[case(
        "a listener records when the room allows it",
        vec![
            host_joins(),
            listener_joins(ALICE),
            by(ALICE, by_ref(&link()), record(true)).ok([recording(ALICE, true)]),
            by(ALICE, by_ref(&link()), record(true)).ok([]),
        ],
        view().present(&[("hana", Host), ("alice", Listener)]),
    )
    .members_may_record()]);
}

/// Maria's moderator capability, valid only until ten seconds after `NOW`.
fn short_moderator() -> Capability {
    let grant = Grant {
        expires_at: at(10_000),
        ..grant(Audience::Bound(pk(MARIA)), Role::Moderator)
    };
    issue(ROOM, HOST, grant, 60)
}

#[test]
fn roles_last_as_long_as_a_capability_grants_them_and_the_hosts_word_stands() {
    check_all(&[
        case(
            "a moderator whose moderator link expires is a listener, even holding a listener link",
            vec![
                host_joins(),
                by(MARIA, cap(short_moderator()), join(MARIA)).ok([joined(MARIA, Moderator)]),
                // She holds the room's listener link too (valid a day).
                by(MARIA, cap(link()), ControlBody::Presence).ok([]),
                listener_joins(ALICE),
                by(MARIA, by_ref(&short_moderator()), mute(ALICE)).ok([muted(ALICE, MARIA)]),
                tick(11_000, [role_changed(MARIA, Listener, HOST)]),
                by(MARIA, by_ref(&link()), unmute(ALICE))
                    .at(11_000)
                    .now(11_000)
                    .err(not_allowed(Listener, "unmute")),
                by(MARIA, by_ref(&short_moderator()), unmute(ALICE))
                    .at(11_500)
                    .now(11_500)
                    .err(CapabilityError::Expired {
                        expires_at: at(10_000),
                    }),
            ],
            view()
                .present(&[("hana", Host), ("alice", Listener), ("maria", Listener)])
                .muted(&["alice"]),
        )
        .role_of(MARIA, Some(Listener)),
        case(
            "a moderator cannot undo the host's mute, even stamped 29 s ahead",
            vec![
                host_joins(),
                moderator_joins(MARIA),
                listener_joins(ALICE),
                host(mute(ALICE)).ok([muted(ALICE, HOST)]),
                by(MARIA, by_ref(&moderator(MARIA)), unmute(ALICE))
                    .at(29_000)
                    .ok([]),
            ],
            view()
                .present(&[("hana", Host), ("maria", Moderator), ("alice", Listener)])
                .muted(&["alice"]),
        ),
        case(
            "the host's mute stands whichever arrives first",
            vec![
                host_joins(),
                moderator_joins(MARIA),
                listener_joins(ALICE),
                by(MARIA, by_ref(&moderator(MARIA)), mute(ALICE))
                    .at(29_000)
                    .ok([muted(ALICE, MARIA)]),
                by(MARIA, by_ref(&moderator(MARIA)), unmute(ALICE))
                    .at(29_500)
                    .ok([unmuted(ALICE, MARIA)]),
                host(mute(ALICE)).ok([muted(ALICE, HOST)]),
            ],
            view()
                .present(&[("hana", Host), ("maria", Moderator), ("alice", Listener)])
                .muted(&["alice"]),
        ),
        case(
            "the host's unmute undoes its own mute",
            vec![
                host_joins(),
                listener_joins(ALICE),
                host(mute(ALICE)).ok([muted(ALICE, HOST)]),
                host(unmute(ALICE)).ok([unmuted(ALICE, HOST)]),
            ],
            view().present(&[("hana", Host), ("alice", Listener)]),
        ),
    ]);
}

#[test]
fn a_speaker_agrees_to_each_recording_and_the_host_needs_not() {
    let mut state = RoomState::new(ROOM, pk(HOST));
    let mut seq = 0;
    let mut say = |state: &mut RoomState, author: u8, authority: Authority, body, offset: i64| {
        seq += 1;
        let envelope = Envelope::sign(&key(author), ROOM, seq, at(offset), authority, body)
            .expect("within limits")
            .verify()
            .expect("signed");
        state.apply(at(offset), &envelope).expect("folds")
    };
    say(&mut state, HOST, Authority::Host, join(HOST), 0);
    say(&mut state, SAM, cap(speaker(SAM)), join(SAM), 1_000);
    say(&mut state, ALICE, cap(link()), join(ALICE), 2_000);
    // Nothing recorded: nobody is asked.
    assert!(!state.needs_consent(&pk(SAM)));
    assert_eq!(state.recording_since(), None);
    say(
        &mut state,
        HOST,
        Authority::Host,
        ControlBody::RecordingStarted,
        3_000,
    );
    let since = state.recording_since().expect("recording");
    assert_eq!(since, at(3_000));
    // The speaker is asked; the host records, the listener is not on stage.
    assert!(state.needs_consent(&pk(SAM)));
    assert!(!state.needs_consent(&pk(HOST)));
    assert!(!state.needs_consent(&pk(ALICE)));
    // An agreement to an earlier recording does not count; to this one, it does, and once.
    let earlier = ControlBody::RecordingConsent { since: at(1_000) };
    let changes = say(&mut state, SAM, cap(speaker(SAM)), earlier, 4_000);
    assert_eq!(
        changes,
        vec![RoomChange::RecordingConsent {
            member: pk(SAM),
            since: at(1_000)
        }]
    );
    assert!(state.needs_consent(&pk(SAM)));
    let this = ControlBody::RecordingConsent { since };
    say(&mut state, SAM, cap(speaker(SAM)), this.clone(), 5_000);
    assert!(!state.needs_consent(&pk(SAM)));
    assert!(
        state.members[&pk(SAM)].consent.is_some(),
        "the signed envelope kept"
    );
    assert_eq!(say(&mut state, SAM, cap(speaker(SAM)), this, 6_000), vec![]);
    // A recording started again asks again.
    say(
        &mut state,
        HOST,
        Authority::Host,
        ControlBody::RecordingStopped,
        7_000,
    );
    assert!(!state.needs_consent(&pk(SAM)));
    say(
        &mut state,
        HOST,
        Authority::Host,
        ControlBody::RecordingStarted,
        8_000,
    );
    assert!(state.needs_consent(&pk(SAM)));
}

/// A member's support folds for everyone, named by its envelope's digest; only the host
/// confirms it; support shares the author's chat budget.
#[test]
fn support_is_anyones_word_and_its_receipt_the_hosts_alone() {
    let mut state = RoomState::new(ROOM, pk(HOST));
    let now = at(0);
    for envelope in [
        signed(HOST, Authority::Host, 1, -9_000, join(HOST)),
        signed(ALICE, cap(link()), 1, -8_000, join(ALICE)),
        signed(BOB, cap(link()), 1, -8_000, join(BOB)),
    ] {
        state.apply(now, &envelope).expect("joins");
    }
    let support = signed(
        ALICE,
        cap(link()),
        2,
        -7_000,
        ControlBody::Support {
            amount: 5,
            unit: "EUR".into(),
            note: "thanks".into(),
        },
    );
    let id = support.digest();
    let changes = state.apply(now, &support).expect("anyone may support");
    assert!(matches!(
        changes.as_slice(),
        [RoomChange::Support { from, amount: 5, id: named, .. }] if *from == pk(ALICE) && *named == id
    ));
    let receipt = |author: u8, authority: Authority, seq: u64| {
        signed(
            author,
            authority,
            seq,
            -6_000,
            ControlBody::SupportReceipt {
                supporter: pk(ALICE),
                support: id,
            },
        )
    };
    // Bob, or Alice herself, cannot confirm it.
    for (author, seq) in [(BOB, 2), (ALICE, 3)] {
        assert_eq!(
            state.apply(now, &receipt(author, cap(link()), seq)),
            Err(not_allowed(RoomRole::Listener, "confirm support"))
        );
    }
    let changes = state
        .apply(now, &receipt(HOST, Authority::Host, 2))
        .expect("the host confirms");
    assert!(matches!(
        changes.as_slice(),
        [RoomChange::SupportConfirmed { supporter, id: named, .. }] if *supporter == pk(ALICE) && *named == id
    ));
    // Support counts against the author's chat budget: a burst, then one a second.
    let mut refused = 0;
    for seq in 4..40 {
        let line = signed(
            ALICE,
            cap(link()),
            seq,
            -5_000,
            ControlBody::Support {
                amount: 1,
                unit: "sat".into(),
                note: String::new(),
            },
        );
        if state.apply(now, &line).is_err() {
            refused += 1;
        }
    }
    assert!(refused >= 25, "{refused} of 36 refused");
    // Units and notes are bounded.
    let long = ControlBody::Support {
        amount: 1,
        unit: "x".repeat(crate::control::MAX_SUPPORT_UNIT_BYTES + 1),
        note: String::new(),
    };
    assert!(long.check_limits().is_err());
}
