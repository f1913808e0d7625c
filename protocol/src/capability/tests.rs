//! Table tests for capabilities: one [`check`] and many tiny cases, one per rule (and per way of
//! breaking it). Chains that `delegate` refuses to sign are built by hand with the unchecked
//! `Capability::sign` or re-signed after editing with [`resign`].

use std::collections::HashSet;

use super::*;

const HOST: u8 = 1;
const ALICE: u8 = 2;
const BOB: u8 = 3;
const CAROL: u8 = 4;
const DAVE: u8 = 5;
const MALLORY: u8 = 66;

/// Who holds the leaf of `chain(n)`.
const HOLDERS: [u8; 4] = [ALICE, BOB, CAROL, DAVE];

const ROOM: RoomId = RoomId([7; 16]);
const OTHER_ROOM: RoomId = RoomId([8; 16]);

const HOUR: u64 = 3_600_000;
const DAY: u64 = 24 * HOUR;
/// 2026-12-01T10:00:00Z.
const EXPIRES: Timestamp = Timestamp(1_796_119_200_000);
/// 2026-11-01T10:00:00Z.
const NOT_BEFORE: Timestamp = Timestamp(EXPIRES.0 - 30 * DAY);
/// Inside every fixture's window.
const NOW: Timestamp = Timestamp(NOT_BEFORE.0 + DAY);

fn key(seed: u8) -> SigningKey {
    SigningKey::from_bytes(&[seed; 32])
}

fn pk(seed: u8) -> PeerKey {
    PeerKey::from(&key(seed))
}

fn at(millis: u64) -> Timestamp {
    Timestamp(millis)
}

fn grant(audience: Audience, role: Role, depth: u8) -> Grant {
    Grant {
        audience,
        role,
        not_before: NOT_BEFORE,
        expires_at: EXPIRES,
        depth,
    }
}

fn bearer(role: Role, depth: u8) -> Grant {
    grant(Audience::Bearer, role, depth)
}

fn bound(holder: u8, role: Role, depth: u8) -> Grant {
    grant(Audience::Bound(pk(holder)), role, depth)
}

fn window(grant: Grant, not_before: Timestamp, expires_at: Timestamp) -> Grant {
    Grant {
        not_before,
        expires_at,
        ..grant
    }
}

/// The host's grant, checked by `issue`.
fn root(grant: Grant) -> Capability {
    Capability::issue(&key(HOST), ROOM, grant, [1; 8]).expect("fixture root grant is valid")
}

/// The host's grant to Alice (moderator, depth 3) and `delegations` checked narrowing steps after
/// it: Alice → Bob (speaker, depth 2), Bob → Carol (speaker, depth 1), Carol → Dave (listener,
/// depth 0), each link bound to the next holder and an hour narrower at both ends than its parent.
fn chain(delegations: usize) -> Capability {
    let roles = [Role::Speaker, Role::Speaker, Role::Listener];
    let mut cap = root(bound(ALICE, Role::Moderator, 3));
    for step in 0..delegations {
        let narrowing = (step as u64 + 1) * HOUR;
        let grant = window(
            bound(HOLDERS[step + 1], roles[step], 2 - step as u8),
            NOT_BEFORE.plus_millis(narrowing),
            at(EXPIRES.0 - narrowing),
        );
        cap = cap
            .delegate(&key(HOLDERS[step]), grant, [step as u8 + 2; 8])
            .expect("fixture chain narrows at every step");
    }
    cap
}

/// A link signed by `by` with no checks at all (what a malicious delegator could produce).
fn unchecked(parent: Option<Capability>, by: u8, room: RoomId, grant: Grant) -> Capability {
    Capability::sign(&key(by), room, grant, [9; 8], parent.map(Box::new))
}

/// Edits a capability, then signs it again with `by`'s key (the issuer field is left as edited).
fn resign(mut cap: Capability, by: u8, edit: impl FnOnce(&mut Capability)) -> Capability {
    edit(&mut cap);
    cap.signature = Sig::sign(&key(by), SIGNATURE_DOMAIN, &cap.signed_bytes());
    cap
}

/// Edits a capability without signing it again.
fn tamper(mut cap: Capability, edit: impl FnOnce(&mut Capability)) -> Capability {
    edit(&mut cap);
    cap
}

/// Edits the link of `cap`'s chain at `index` (0 is the root), without signing anything again.
fn tamper_link(cap: Capability, index: usize, edit: impl FnOnce(&mut Capability)) -> Capability {
    let depth = cap.chain().len() - 1 - index;
    let mut cap = cap;
    let mut link = &mut cap;
    for _ in 0..depth {
        link = link
            .parent
            .as_deref_mut()
            .expect("index is inside the chain");
    }
    edit(link);
    cap
}

/// `chain(3)` plus a fifth link, signed by its holder without any checks.
fn five_links() -> Capability {
    let grant = window(
        bound(MALLORY, Role::Listener, 0),
        NOT_BEFORE.plus_millis(4 * HOUR),
        at(EXPIRES.0 - 4 * HOUR),
    );
    unchecked(Some(chain(3)), DAVE, ROOM, grant)
}

/// One row of the table: a capability (or the error that refused to make it), the context it is
/// checked in, and the expected outcome.
struct Case {
    name: &'static str,
    cap: Result<Capability, CapabilityError>,
    room: RoomId,
    host: PeerKey,
    /// `None`: the leaf's audience presents it (a stranger, for a bearer leaf).
    presenter: Option<Presenter>,
    now: Timestamp,
    revoked: HashSet<CapId>,
    expect: Result<(), CapabilityError>,
}

/// A case expected to verify, in the default context: room `ROOM`, host `HOST`, at `NOW`,
/// presented by its audience, nothing revoked.
fn case(name: &'static str, cap: Result<Capability, CapabilityError>) -> Case {
    Case {
        name,
        cap,
        room: ROOM,
        host: pk(HOST),
        presenter: None,
        now: NOW,
        revoked: HashSet::new(),
        expect: Ok(()),
    }
}

impl Case {
    fn room(self, room: RoomId) -> Self {
        Self { room, ..self }
    }

    fn host(self, seed: u8) -> Self {
        Self {
            host: pk(seed),
            ..self
        }
    }

    fn presenter(self, presenter: Presenter) -> Self {
        Self {
            presenter: Some(presenter),
            ..self
        }
    }

    fn presented_by(self, seed: u8) -> Self {
        self.presenter(Presenter::Key(pk(seed)))
    }

    fn now(self, now: Timestamp) -> Self {
        Self { now, ..self }
    }

    fn revoke(mut self, id: CapId) -> Self {
        self.revoked.insert(id);
        self
    }

    fn err(self, error: CapabilityError) -> Self {
        Self {
            expect: Err(error),
            ..self
        }
    }
}

/// Makes the case's capability (surfacing a refusal to issue, delegate or decode) and verifies it.
fn check(case: &Case) -> Result<Verified<Capability>, CapabilityError> {
    let cap = case.cap.clone()?;
    let presenter = case.presenter.unwrap_or(match cap.audience {
        Audience::Bound(holder) => Presenter::Key(holder),
        Audience::Bearer => Presenter::Key(pk(MALLORY)),
    });
    cap.verify(&VerifyContext {
        room: case.room,
        host: case.host,
        presenter,
        now: case.now,
        revoked: &case.revoked,
    })
}

/// The variant's name; exhaustive, so a new variant fails to compile until the table covers it.
fn variant(error: &CapabilityError) -> &'static str {
    match error {
        CapabilityError::Malformed(_) => "Malformed",
        CapabilityError::UnsupportedVersion { .. } => "UnsupportedVersion",
        CapabilityError::BadSignature { .. } => "BadSignature",
        CapabilityError::WrongRoom { .. } => "WrongRoom",
        CapabilityError::NotIssuedByHost { .. } => "NotIssuedByHost",
        CapabilityError::RoleEscalation { .. } => "RoleEscalation",
        CapabilityError::WindowWidened { .. } => "WindowWidened",
        CapabilityError::DelegationTooDeep { .. } => "DelegationTooDeep",
        CapabilityError::DepthWidened { .. } => "DepthWidened",
        CapabilityError::ChainTooLong { .. } => "ChainTooLong",
        CapabilityError::NotTheHolder { .. } => "NotTheHolder",
        CapabilityError::EmptyWindow { .. } => "EmptyWindow",
        CapabilityError::NotYetValid { .. } => "NotYetValid",
        CapabilityError::Expired { .. } => "Expired",
        CapabilityError::Revoked { .. } => "Revoked",
        CapabilityError::WrongAudience { .. } => "WrongAudience",
    }
}

const ALL_VARIANTS: [&str; 16] = [
    "Malformed",
    "UnsupportedVersion",
    "BadSignature",
    "WrongRoom",
    "NotIssuedByHost",
    "RoleEscalation",
    "WindowWidened",
    "DelegationTooDeep",
    "DepthWidened",
    "ChainTooLong",
    "NotTheHolder",
    "EmptyWindow",
    "NotYetValid",
    "Expired",
    "Revoked",
    "WrongAudience",
];

fn valid_cases() -> Vec<Case> {
    use Role::*;
    vec![
        case(
            "host's bearer grant, no delegation",
            Ok(root(bearer(Listener, 0))),
        ),
        case(
            "host's bound grant, presented by its audience",
            Ok(root(bound(ALICE, Speaker, 0))),
        ),
        case("chain of 1 link (depth 0)", Ok(chain(0))),
        case("chain of 2 links (depth 1)", Ok(chain(1))),
        case("chain of 3 links (depth 2)", Ok(chain(2))),
        case("chain of 4 links (depth 3)", Ok(chain(3))),
        case(
            "a bearer parent may be delegated by anyone",
            root(bearer(Speaker, 1)).delegate(&key(MALLORY), bound(BOB, Listener, 0), [2; 8]),
        ),
        case(
            "a bearer link in the middle of a chain",
            root(bound(ALICE, Moderator, 2))
                .delegate(&key(ALICE), bearer(Speaker, 1), [2; 8])
                .and_then(|cap| cap.delegate(&key(MALLORY), bound(BOB, Speaker, 0), [3; 8])),
        ),
        case(
            "delegation may keep role and window, with one less depth",
            root(bound(ALICE, Speaker, 1)).delegate(&key(ALICE), bound(BOB, Speaker, 0), [2; 8]),
        ),
        case(
            "delegation may narrow depth by more than one",
            root(bound(ALICE, Speaker, 3)).delegate(&key(ALICE), bound(BOB, Speaker, 0), [2; 8]),
        ),
        case(
            "a bearer leaf may be presented by anyone",
            Ok(root(bearer(Speaker, 0))),
        )
        .presented_by(BOB),
        case(
            "Presenter::Unchecked skips the audience check",
            Ok(chain(2)),
        )
        .presenter(Presenter::Unchecked),
        case(
            "Presenter::Unchecked on a bound root",
            Ok(root(bound(ALICE, Listener, 0))),
        )
        .presenter(Presenter::Unchecked),
        case(
            "valid from exactly not_before",
            Ok(root(bearer(Listener, 0))),
        )
        .now(NOT_BEFORE),
        case(
            "valid until the millisecond before expires_at",
            Ok(root(bearer(Listener, 0))),
        )
        .now(at(EXPIRES.0 - 1)),
        case(
            "revoking an unrelated capability changes nothing",
            Ok(chain(3)),
        )
        .revoke(root(bearer(Listener, 0)).id()),
        case(
            "a capability round-trips through decode and still verifies",
            Capability::decode(&chain(3).encode()),
        ),
    ]
}

fn malformed_cases() -> Vec<Case> {
    let bytes = root(bearer(Role::Listener, 0)).encode();
    let truncated = &bytes[..bytes.len() - 1];
    let trailing = [bytes.as_slice(), &[0]].concat();
    // not_before is a varint at byte 51 of a bearer root (after version, room, issuer, audience
    // and role); spelled with a redundant continuation byte, it decodes to the same value.
    let small = root(window(bearer(Role::Listener, 0), at(5), EXPIRES)).encode();
    assert_eq!(
        small[51], 5,
        "not_before's position in the fixture encoding"
    );
    let overlong = [&small[..51], &[0x85, 0x00], &small[52..]].concat();
    // The parent option's tag (0 = None) follows the 8-byte nonce and the depth byte.
    let parent_tag = 51 + 6 + 6 + 8 + 1;
    assert_eq!(
        bytes[parent_tag], 0,
        "parent tag's position in the fixture encoding"
    );
    let mut bad_option = bytes.clone();
    bad_option[parent_tag] = 2;
    let mut bad_role = bytes.clone();
    bad_role[50] = 3;
    let malformed = |error| CapabilityError::Malformed(error);
    vec![
        case("decode: no bytes", Capability::decode(&[])).err(malformed(DecodeError::Invalid(
            postcard::Error::DeserializeUnexpectedEnd,
        ))),
        case(
            "decode: truncated by one byte",
            Capability::decode(truncated),
        )
        .err(malformed(DecodeError::Invalid(
            postcard::Error::DeserializeUnexpectedEnd,
        ))),
        case("decode: one trailing byte", Capability::decode(&trailing))
            .err(malformed(DecodeError::TrailingBytes(1))),
        case(
            "decode: over the size limit",
            Capability::decode(&[0; MAX_CAPABILITY_BYTES + 1]),
        )
        .err(malformed(DecodeError::TooLarge {
            len: MAX_CAPABILITY_BYTES + 1,
            max: MAX_CAPABILITY_BYTES,
        })),
        case("decode: over-long varint", Capability::decode(&overlong))
            .err(malformed(DecodeError::NonCanonical)),
        case("decode: option tag 2", Capability::decode(&bad_option)).err(malformed(
            DecodeError::Invalid(postcard::Error::DeserializeBadOption),
        )),
        case(
            "decode: role 3 does not exist",
            Capability::decode(&bad_role),
        )
        .err(malformed(DecodeError::Invalid(
            postcard::Error::SerdeDeCustom,
        ))),
        case(
            "decode: 5-link chain",
            Capability::decode(&five_links().encode()),
        )
        .err(malformed(DecodeError::ChainTooLong {
            max: MAX_CHAIN_LINKS,
        })),
    ]
}

fn chain_rule_cases() -> Vec<Case> {
    use Role::*;
    let narrower = |grant, hours: u64| {
        window(
            grant,
            NOT_BEFORE.plus_millis(hours * HOUR),
            at(EXPIRES.0 - hours * HOUR),
        )
    };
    let root_v2 = resign(root(bearer(Listener, 0)), HOST, |cap| cap.version = 2);
    vec![
        // UnsupportedVersion
        case("version 2 root, re-signed", Ok(root_v2.clone())).err(
            CapabilityError::UnsupportedVersion {
                found: 2,
                supported: CAPABILITY_VERSION,
            },
        ),
        case(
            "version 2 decodes, verify refuses it",
            Capability::decode(&root_v2.encode()),
        )
        .err(CapabilityError::UnsupportedVersion {
            found: 2,
            supported: CAPABILITY_VERSION,
        }),
        case(
            "version 0 at link 2, re-signed",
            Ok(resign(chain(1), ALICE, |cap| cap.version = 0)),
        )
        .err(CapabilityError::UnsupportedVersion {
            found: 0,
            supported: CAPABILITY_VERSION,
        }),
        // BadSignature
        case(
            "root role raised after signing",
            Ok(tamper(root(bearer(Listener, 0)), |cap| {
                cap.role = Moderator
            })),
        )
        .err(CapabilityError::BadSignature {
            link: 1,
            issuer: pk(HOST),
        }),
        case(
            "leaf expiry extended after signing",
            Ok(tamper(chain(2), |cap| cap.expires_at = EXPIRES)),
        )
        .err(CapabilityError::BadSignature {
            link: 3,
            issuer: pk(BOB),
        }),
        case(
            "middle link tampered under a valid leaf",
            Ok(tamper_link(chain(3), 1, |cap| cap.role = Moderator)),
        )
        .err(CapabilityError::BadSignature {
            link: 2,
            issuer: pk(ALICE),
        }),
        case(
            "root's nonce changed (replayed under a new id)",
            Ok(tamper_link(chain(1), 0, |cap| cap.nonce = [0; 8])),
        )
        .err(CapabilityError::BadSignature {
            link: 1,
            issuer: pk(HOST),
        }),
        case(
            "names the host as issuer, signed by someone else",
            Ok(resign(root(bearer(Moderator, 0)), MALLORY, |_| {})),
        )
        .err(CapabilityError::BadSignature {
            link: 1,
            issuer: pk(HOST),
        }),
        case(
            "issuer field changed after signing",
            Ok(tamper(root(bearer(Listener, 0)), |cap| {
                cap.issuer = pk(MALLORY)
            })),
        )
        .err(CapabilityError::BadSignature {
            link: 1,
            issuer: pk(MALLORY),
        }),
        case(
            "signed under another domain (an envelope's)",
            Ok(tamper(root(bearer(Listener, 0)), |cap| {
                cap.signature =
                    Sig::sign(&key(HOST), b"earshot/envelope/v1\0", &cap.signed_bytes());
            })),
        )
        .err(CapabilityError::BadSignature {
            link: 1,
            issuer: pk(HOST),
        }),
        case(
            "all-zero signature",
            Ok(tamper(root(bearer(Listener, 0)), |cap| {
                cap.signature = Sig([0; 64])
            })),
        )
        .err(CapabilityError::BadSignature {
            link: 1,
            issuer: pk(HOST),
        }),
        case(
            "issuer is not a valid key",
            Ok(tamper(root(bearer(Listener, 0)), |cap| {
                cap.issuer = PeerKey([0xff; 32])
            })),
        )
        .err(CapabilityError::BadSignature {
            link: 1,
            issuer: PeerKey([0xff; 32]),
        }),
        // WrongRoom
        case("presented for another room", Ok(chain(1)))
            .room(OTHER_ROOM)
            .err(CapabilityError::WrongRoom {
                expected: OTHER_ROOM,
                found: ROOM,
            }),
        case(
            "link 2 names another room",
            Ok(unchecked(
                Some(root(bound(ALICE, Speaker, 1))),
                ALICE,
                OTHER_ROOM,
                bound(BOB, Listener, 0),
            )),
        )
        .err(CapabilityError::WrongRoom {
            expected: ROOM,
            found: OTHER_ROOM,
        }),
        // NotIssuedByHost
        case(
            "root issued by someone other than the host",
            Capability::issue(&key(MALLORY), ROOM, bearer(Moderator, 0), [1; 8]),
        )
        .err(CapabilityError::NotIssuedByHost {
            issuer: pk(MALLORY),
            host: pk(HOST),
        }),
        case("checked against another host", Ok(chain(1)))
            .host(BOB)
            .err(CapabilityError::NotIssuedByHost {
                issuer: pk(HOST),
                host: pk(BOB),
            }),
        // RoleEscalation
        case(
            "delegate refuses speaker -> moderator",
            root(bound(ALICE, Speaker, 1)).delegate(&key(ALICE), bound(BOB, Moderator, 0), [2; 8]),
        )
        .err(CapabilityError::RoleEscalation {
            link: 2,
            granted: Moderator,
            allowed: Speaker,
        }),
        case(
            "hand-signed link 3 escalates listener -> speaker",
            Ok(unchecked(
                Some(
                    root(bound(ALICE, Moderator, 2))
                        .delegate(&key(ALICE), bound(BOB, Listener, 1), [2; 8])
                        .expect("narrowing delegation"),
                ),
                BOB,
                ROOM,
                bound(CAROL, Speaker, 0),
            )),
        )
        .err(CapabilityError::RoleEscalation {
            link: 3,
            granted: Speaker,
            allowed: Listener,
        }),
        // WindowWidened
        case(
            "delegate refuses a window starting 1 ms earlier",
            root(bound(ALICE, Speaker, 1)).delegate(
                &key(ALICE),
                window(bound(BOB, Speaker, 0), at(NOT_BEFORE.0 - 1), EXPIRES),
                [2; 8],
            ),
        )
        .err(CapabilityError::WindowWidened {
            link: 2,
            not_before: at(NOT_BEFORE.0 - 1),
            expires_at: EXPIRES,
            parent_not_before: NOT_BEFORE,
            parent_expires_at: EXPIRES,
        }),
        case(
            "delegate refuses a window ending 1 ms later",
            root(bound(ALICE, Speaker, 1)).delegate(
                &key(ALICE),
                window(bound(BOB, Speaker, 0), NOT_BEFORE, at(EXPIRES.0 + 1)),
                [2; 8],
            ),
        )
        .err(CapabilityError::WindowWidened {
            link: 2,
            not_before: NOT_BEFORE,
            expires_at: at(EXPIRES.0 + 1),
            parent_not_before: NOT_BEFORE,
            parent_expires_at: EXPIRES,
        }),
        case(
            "hand-signed link 3 outlives its parent",
            Ok(unchecked(
                Some(chain(1)),
                BOB,
                ROOM,
                narrower(bound(CAROL, Speaker, 0), 0),
            )),
        )
        .err(CapabilityError::WindowWidened {
            link: 3,
            not_before: NOT_BEFORE,
            expires_at: EXPIRES,
            parent_not_before: NOT_BEFORE.plus_millis(HOUR),
            parent_expires_at: at(EXPIRES.0 - HOUR),
        }),
        // DelegationTooDeep
        case(
            "delegate refuses to delegate a depth-0 capability",
            root(bound(ALICE, Speaker, 0)).delegate(&key(ALICE), bound(BOB, Listener, 0), [2; 8]),
        )
        .err(CapabilityError::DelegationTooDeep { link: 2 }),
        case(
            "hand-signed link 3 under a depth-0 link",
            Ok(unchecked(
                Some(
                    root(bound(ALICE, Speaker, 1))
                        .delegate(&key(ALICE), bound(BOB, Speaker, 0), [2; 8])
                        .expect("narrowing delegation"),
                ),
                BOB,
                ROOM,
                bound(CAROL, Listener, 0),
            )),
        )
        .err(CapabilityError::DelegationTooDeep { link: 3 }),
        // DepthWidened
        case(
            "issue refuses depth 4",
            Capability::issue(&key(HOST), ROOM, bearer(Listener, 4), [1; 8]),
        )
        .err(CapabilityError::DepthWidened {
            link: 1,
            requested: 4,
            allowed: MAX_DELEGATION_DEPTH,
        }),
        case(
            "issue refuses depth 255",
            Capability::issue(&key(HOST), ROOM, bearer(Listener, u8::MAX), [1; 8]),
        )
        .err(CapabilityError::DepthWidened {
            link: 1,
            requested: u8::MAX,
            allowed: MAX_DELEGATION_DEPTH,
        }),
        case(
            "hand-signed root of depth 4",
            Ok(unchecked(None, HOST, ROOM, bearer(Listener, 4))),
        )
        .err(CapabilityError::DepthWidened {
            link: 1,
            requested: 4,
            allowed: MAX_DELEGATION_DEPTH,
        }),
        case(
            "delegate refuses to keep the parent's depth",
            root(bound(ALICE, Speaker, 2)).delegate(&key(ALICE), bound(BOB, Speaker, 2), [2; 8]),
        )
        .err(CapabilityError::DepthWidened {
            link: 2,
            requested: 2,
            allowed: 1,
        }),
        case(
            "hand-signed link 3 keeps its parent's depth",
            Ok(unchecked(
                Some(chain(1)),
                BOB,
                ROOM,
                narrower(bound(CAROL, Speaker, 2), 2),
            )),
        )
        .err(CapabilityError::DepthWidened {
            link: 3,
            requested: 2,
            allowed: 1,
        }),
        // ChainTooLong
        case("hand-signed 5-link chain", Ok(five_links())).err(CapabilityError::ChainTooLong {
            max: MAX_CHAIN_LINKS,
        }),
        case(
            "delegate refuses a fifth link",
            chain(3).delegate(&key(DAVE), narrower(bound(MALLORY, Listener, 0), 4), [9; 8]),
        )
        .err(CapabilityError::ChainTooLong {
            max: MAX_CHAIN_LINKS,
        }),
        // NotTheHolder
        case(
            "delegate refuses a stranger delegating a bound capability",
            root(bound(ALICE, Speaker, 1)).delegate(
                &key(MALLORY),
                bound(MALLORY, Speaker, 0),
                [2; 8],
            ),
        )
        .err(CapabilityError::NotTheHolder {
            link: 2,
            issuer: pk(MALLORY),
            holder: pk(ALICE),
        }),
        case(
            "not even the host delegates a capability bound to someone else",
            root(bound(ALICE, Speaker, 1)).delegate(&key(HOST), bound(BOB, Speaker, 0), [2; 8]),
        )
        .err(CapabilityError::NotTheHolder {
            link: 2,
            issuer: pk(HOST),
            holder: pk(ALICE),
        }),
        case(
            "hand-signed link 3 by someone other than the holder",
            Ok(unchecked(
                Some(chain(1)),
                CAROL,
                ROOM,
                narrower(bound(CAROL, Speaker, 0), 2),
            )),
        )
        .err(CapabilityError::NotTheHolder {
            link: 3,
            issuer: pk(CAROL),
            holder: pk(BOB),
        }),
    ]
}

fn time_and_presenter_cases() -> Vec<Case> {
    use Role::*;
    let leaf = chain(3);
    let links = leaf.chain();
    let (root_id, middle_id, leaf_id) = (links[0].id(), links[2].id(), links[3].id());
    let lone = root(bearer(Listener, 0));
    vec![
        // EmptyWindow
        case(
            "issue refuses not_before == expires_at",
            Capability::issue(
                &key(HOST),
                ROOM,
                window(bearer(Listener, 0), EXPIRES, EXPIRES),
                [1; 8],
            ),
        )
        .err(CapabilityError::EmptyWindow {
            not_before: EXPIRES,
            expires_at: EXPIRES,
        }),
        case(
            "issue refuses not_before after expires_at",
            Capability::issue(
                &key(HOST),
                ROOM,
                window(bearer(Listener, 0), EXPIRES, NOT_BEFORE),
                [1; 8],
            ),
        )
        .err(CapabilityError::EmptyWindow {
            not_before: EXPIRES,
            expires_at: NOT_BEFORE,
        }),
        case(
            "delegate refuses an empty window",
            root(bound(ALICE, Speaker, 1)).delegate(
                &key(ALICE),
                window(bound(BOB, Speaker, 0), NOW, NOW),
                [2; 8],
            ),
        )
        .err(CapabilityError::EmptyWindow {
            not_before: NOW,
            expires_at: NOW,
        }),
        // NotYetValid
        case("1 ms before not_before", Ok(root(bearer(Listener, 0))))
            .now(at(NOT_BEFORE.0 - 1))
            .err(CapabilityError::NotYetValid {
                not_before: NOT_BEFORE,
            }),
        case("inside the root's window, before the leaf's", Ok(chain(3)))
            .now(NOT_BEFORE.plus_millis(HOUR))
            .err(CapabilityError::NotYetValid {
                not_before: NOT_BEFORE.plus_millis(3 * HOUR),
            }),
        // Expired
        case("exactly at expires_at", Ok(root(bearer(Listener, 0))))
            .now(EXPIRES)
            .err(CapabilityError::Expired {
                expires_at: EXPIRES,
            }),
        case("1 ms after expires_at", Ok(root(bearer(Listener, 0))))
            .now(at(EXPIRES.0 + 1))
            .err(CapabilityError::Expired {
                expires_at: EXPIRES,
            }),
        case("inside the root's window, after the leaf's", Ok(chain(2)))
            .now(at(EXPIRES.0 - HOUR))
            .err(CapabilityError::Expired {
                expires_at: at(EXPIRES.0 - 2 * HOUR),
            }),
        case("the far future", Ok(chain(1)))
            .now(Timestamp(u64::MAX))
            .err(CapabilityError::Expired {
                expires_at: at(EXPIRES.0 - HOUR),
            }),
        // Revoked
        case("revoked root-only capability", Ok(lone.clone()))
            .revoke(lone.id())
            .err(CapabilityError::Revoked { id: lone.id() }),
        case("revoked leaf of a 4-link chain", Ok(leaf.clone()))
            .revoke(leaf_id)
            .err(CapabilityError::Revoked { id: leaf_id }),
        case("revoking the root revokes every child", Ok(leaf.clone()))
            .revoke(root_id)
            .err(CapabilityError::Revoked { id: root_id }),
        case("revoking a parent revokes its child", Ok(leaf.clone()))
            .revoke(middle_id)
            .err(CapabilityError::Revoked { id: middle_id }),
        case(
            "revocation matches a decoded copy",
            Capability::decode(&leaf.encode()),
        )
        .revoke(middle_id)
        .err(CapabilityError::Revoked { id: middle_id }),
        case("revocation is checked before time", Ok(lone.clone()))
            .revoke(lone.id())
            .now(EXPIRES)
            .err(CapabilityError::Revoked { id: lone.id() }),
        // WrongAudience
        case(
            "bound root presented by someone else",
            Ok(root(bound(ALICE, Speaker, 0))),
        )
        .presented_by(BOB)
        .err(CapabilityError::WrongAudience {
            bound: pk(ALICE),
            presenter: pk(BOB),
        }),
        case("delegated link presented by its delegator", Ok(chain(1)))
            .presented_by(ALICE)
            .err(CapabilityError::WrongAudience {
                bound: pk(BOB),
                presenter: pk(ALICE),
            }),
        case(
            "the host presenting a grant bound to a guest",
            Ok(root(bound(ALICE, Moderator, 0))),
        )
        .presented_by(HOST)
        .err(CapabilityError::WrongAudience {
            bound: pk(ALICE),
            presenter: pk(HOST),
        }),
    ]
}

fn cases() -> Vec<Case> {
    [
        valid_cases(),
        malformed_cases(),
        chain_rule_cases(),
        time_and_presenter_cases(),
    ]
    .into_iter()
    .flatten()
    .collect()
}

#[test]
fn every_case_in_the_table() {
    let cases = cases();
    let mut failures = Vec::new();
    for case in &cases {
        let outcome = check(case);
        if let (Ok(verified), Ok(cap)) = (&outcome, &case.cap) {
            assert_eq!(
                **verified, *cap,
                "{}: verify returns the capability",
                case.name
            );
        }
        let got = outcome.map(|_| ());
        if got != case.expect {
            failures.push(format!(
                "{}:\n    expected {:?}\n    got      {:?}",
                case.name, case.expect, got
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

#[test]
fn the_table_covers_every_error_and_names_are_unique() {
    let cases = cases();
    let covered: HashSet<&str> = cases
        .iter()
        .filter_map(|case| case.expect.as_ref().err())
        .map(variant)
        .collect();
    let missing: Vec<&str> = ALL_VARIANTS
        .into_iter()
        .filter(|name| !covered.contains(name))
        .collect();
    assert!(missing.is_empty(), "no case expects {missing:?}");
    let names: HashSet<&str> = cases.iter().map(|case| case.name).collect();
    assert_eq!(names.len(), cases.len(), "case names are unique");
}

#[test]
fn errors_read_as_sentences() {
    let message = |case: Case| match check(&case) {
        Ok(_) => panic!("{}: expected an error", case.name),
        Err(error) => error.to_string(),
    };
    assert_eq!(
        message(case("expired", Ok(root(bearer(Role::Listener, 0)))).now(EXPIRES)),
        "expired at 2026-12-01T10:00:00Z"
    );
    assert_eq!(
        message(case("early", Ok(root(bearer(Role::Listener, 0)))).now(at(0))),
        "not valid before 2026-11-01T10:00:00Z"
    );
    assert_eq!(
        message(case(
            "escalation",
            root(bound(ALICE, Role::Speaker, 1)).delegate(
                &key(ALICE),
                bound(BOB, Role::Moderator, 0),
                [2; 8]
            ),
        )),
        "role escalation: link 2 grants moderator, but its issuer holds only speaker"
    );
    assert_eq!(
        message(case(
            "widened",
            root(bound(ALICE, Role::Speaker, 1)).delegate(
                &key(ALICE),
                window(
                    bound(BOB, Role::Speaker, 0),
                    at(NOT_BEFORE.0 - 1000),
                    EXPIRES
                ),
                [2; 8]
            ),
        )),
        "validity window widened: link 2 is valid 2026-11-01T09:59:59Z to 2026-12-01T10:00:00Z, \
         outside its parent's 2026-11-01T10:00:00Z to 2026-12-01T10:00:00Z"
    );
    assert_eq!(
        message(case("too long", Capability::decode(&five_links().encode()))),
        "malformed capability: delegation chain longer than 4 links"
    );
    assert_eq!(
        message(case(
            "v2",
            Ok(resign(root(bearer(Role::Listener, 0)), HOST, |cap| cap
                .version =
                2))
        )),
        "unsupported capability version 2 (this build understands version 1)"
    );
    assert_eq!(
        message(case(
            "deep",
            Capability::issue(&key(HOST), ROOM, bearer(Role::Listener, 7), [1; 8])
        )),
        "delegation too deep: link 1 allows 7 further delegations, at most 3 permitted"
    );
    let host_peer = pk(HOST).as_peer_id().to_string();
    let mallory_peer = pk(MALLORY).as_peer_id().to_string();
    assert!(host_peer.starts_with("12D3KooW"), "{host_peer}");
    assert_eq!(
        message(case("other host", Ok(chain(0))).host(MALLORY)),
        format!(
            "not issued by the host: the chain starts at {host_peer}, but the room's host is {mallory_peer}"
        )
    );
    assert_eq!(
        message(case("stranger", Ok(root(bound(HOST, Role::Listener, 0)))).presented_by(MALLORY)),
        format!("bound to {host_peer}, but presented by {mallory_peer}")
    );
    let revoked = root(bearer(Role::Listener, 0));
    assert_eq!(
        message(case("revoked", Ok(revoked.clone())).revoke(revoked.id())),
        format!("revoked (capability {})", revoked.id())
    );
}

#[test]
fn chains_round_trip_and_stay_under_the_size_limit() {
    for delegations in 0..=3 {
        let cap = chain(delegations);
        let bytes = cap.encode();
        assert!(
            bytes.len() <= MAX_CAPABILITY_BYTES,
            "{} links: {} bytes",
            delegations + 1,
            bytes.len()
        );
        let decoded = Capability::decode(&bytes).expect("an encoded chain decodes");
        assert_eq!(decoded, cap);
        assert_eq!(decoded.id(), cap.id());
        assert_eq!(decoded.chain().len(), delegations + 1);
        assert_eq!(decoded.root_issuer(), pk(HOST));
        println!(
            "bound chain of {} links: {} bytes",
            delegations + 1,
            bytes.len()
        );
    }
}

#[test]
fn chain_runs_from_the_host_to_the_leaf() {
    let leaf = chain(3);
    let issuers: Vec<PeerKey> = leaf.chain().iter().map(|cap| cap.issuer).collect();
    assert_eq!(issuers, [pk(HOST), pk(ALICE), pk(BOB), pk(CAROL)]);
    assert_eq!(leaf.chain()[3], &leaf);
    assert_eq!(leaf.audience, Audience::Bound(pk(DAVE)));
}

#[test]
fn ids_name_one_capability() {
    let one = root(bearer(Role::Listener, 0));
    let other = Capability::issue(&key(HOST), ROOM, bearer(Role::Listener, 0), [2; 8])
        .expect("valid root grant");
    assert_ne!(
        one.id(),
        other.id(),
        "the nonce makes identical grants distinct"
    );
    assert_eq!(
        one.id(),
        root(bearer(Role::Listener, 0)).id(),
        "ids are deterministic"
    );
    assert_ne!(chain(1).id(), chain(2).id());
}
