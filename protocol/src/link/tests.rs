use std::collections::HashSet;

use ed25519_dalek::SigningKey;

use super::*;
use crate::capability::{Audience, CapabilityError, Grant, Presenter, VerifyContext};
use crate::id::{Role, RoomId, Sig, Timestamp, base32_decode};

const ROOM: RoomId = RoomId([7; 16]);
/// 2026-12-01T10:00:00Z, a month after `NOT_BEFORE`.
const EXPIRES: Timestamp = Timestamp(1_796_119_200_000);
const NOT_BEFORE: Timestamp = Timestamp(1_793_527_200_000);
const NOW: Timestamp = Timestamp(1_793_613_600_000);

fn key(seed: u8) -> SigningKey {
    SigningKey::from_bytes(&[seed; 32])
}

fn pk(seed: u8) -> PeerKey {
    PeerKey::from(&key(seed))
}

fn addr(text: &str) -> Multiaddr {
    text.parse().expect("fixture multiaddr parses")
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

fn typical_addrs() -> Vec<Multiaddr> {
    vec![
        addr("/ip4/192.168.1.20/udp/40123/quic-v1"),
        addr("/ip4/127.0.0.1/udp/40123/quic-v1"),
    ]
}

fn link_for(capability: Capability) -> InviteLink {
    InviteLink {
        starts_at: None,
        capability,
        host: pk(1),
        bootstrap: typical_addrs(),
    }
}

/// What `earshot invite` prints by default: a bearer listener grant from the host, no delegation,
/// two addresses (LAN and loopback).
fn typical() -> InviteLink {
    let grant = grant(Audience::Bearer, Role::Listener, 0);
    link_for(Capability::issue(&key(1), ROOM, grant, [1; 8]).expect("valid grant"))
}

/// A speaker grant bound to one guest's key.
fn bound() -> InviteLink {
    let grant = grant(Audience::Bound(pk(2)), Role::Speaker, 0);
    link_for(Capability::issue(&key(1), ROOM, grant, [1; 8]).expect("valid grant"))
}

/// The guest of a bound depth-1 grant delegating a bound listener grant to a friend.
fn delegated() -> InviteLink {
    let root = Capability::issue(
        &key(1),
        ROOM,
        grant(Audience::Bound(pk(2)), Role::Speaker, 1),
        [1; 8],
    )
    .expect("valid grant");
    let child = root
        .delegate(
            &key(2),
            grant(Audience::Bound(pk(3)), Role::Listener, 0),
            [2; 8],
        )
        .expect("narrowing delegation");
    link_for(child)
}

/// The bytes inside a link's text: version, body, checksum.
fn raw(link: &InviteLink) -> Vec<u8> {
    let text = link.encode();
    base32_decode(&text[LINK_PREFIX.len()..]).expect("an encoded link is base32")
}

/// Link text for `data` (version byte and body), with a valid checksum.
fn wrap(data: &[u8]) -> String {
    let mut bytes = data.to_vec();
    bytes.extend_from_slice(&checksum(data));
    format!("{LINK_PREFIX}{}", base32(&bytes))
}

/// Link text for a hand-made body, version 1, valid checksum.
fn wrap_body(body: &Body) -> String {
    let mut data = vec![LINK_VERSION];
    data.extend(codec::encode(body));
    wrap(&data)
}

fn body_of(link: &InviteLink) -> Body {
    Body {
        capability: link.capability.clone(),
        host: link.host,
        bootstrap: link
            .bootstrap
            .iter()
            .map(|addr| serde_bytes::ByteBuf::from(addr.to_vec()))
            .collect(),
    }
}

/// `text` with the character at `index` replaced.
fn replace_char(text: &str, index: usize, with: char) -> String {
    text.chars()
        .enumerate()
        .map(|(i, c)| if i == index { with } else { c })
        .collect()
}

#[test]
fn links_round_trip() {
    let mut four = typical();
    four.bootstrap = vec![
        addr("/ip4/192.168.1.20/udp/40123/quic-v1"),
        addr("/ip6/::1/udp/40123/quic-v1"),
        addr("/dns4/relay.example.org/tcp/443/wss"),
        addr(
            "/ip4/203.0.113.9/tcp/4001/p2p/12D3KooWRyFMLAnvoqDfSHaXjHBBGoYNEUVaE2dvg3Pdq8b5YMna/p2p-circuit",
        ),
    ];
    let mut none = typical();
    none.bootstrap.clear();
    for link in [typical(), bound(), delegated(), four, none] {
        let text = link.encode();
        assert_eq!(InviteLink::decode(&text), Ok(link.clone()), "{text}");
        assert_eq!(link.to_string(), text, "Display is the link text");
        assert!(text.starts_with(LINK_PREFIX));
        assert_eq!(text, text.to_ascii_lowercase(), "links print lowercase");
    }
}

#[test]
fn typical_links_are_short() {
    let typical = typical().encode();
    let bound = bound().encode();
    let delegated = delegated().encode();
    println!(
        "typical bearer root link, 2 addresses: {} chars",
        typical.len()
    );
    println!("bound root link, 2 addresses: {} chars", bound.len());
    println!(
        "depth-1 delegated (bound) link, 2 addresses: {} chars",
        delegated.len()
    );
    println!("{typical}");
    assert!(typical.len() < 400, "{} chars", typical.len());
    assert!(delegated.len() <= MAX_LINK_CHARS);
}

#[test]
fn decoded_link_verifies_against_its_host() {
    let link = InviteLink::decode(&delegated().encode()).expect("valid link");
    let revoked = HashSet::new();
    let verified = link
        .capability
        .verify(&VerifyContext {
            room: ROOM,
            host: link.host,
            presenter: Presenter::Key(pk(3)),
            now: NOW,
            revoked: &revoked,
        })
        .expect("the link's capability verifies");
    assert_eq!(verified.role, Role::Listener);
}

#[test]
fn uppercase_and_mixed_case_decode() {
    let link = typical();
    let qr = link.encode_for_qr();
    assert!(qr.starts_with("EARSHOT://JOIN/"), "{qr}");
    assert_eq!(InviteLink::decode(&qr), Ok(link.clone()));
    let mixed: String = link
        .encode()
        .chars()
        .enumerate()
        .map(|(i, c)| {
            if i % 2 == 0 {
                c.to_ascii_uppercase()
            } else {
                c
            }
        })
        .collect();
    assert_eq!(InviteLink::decode(&mixed), Ok(link));
}

#[test]
fn whitespace_inside_a_link_is_ignored() {
    let link = typical();
    let text = link.encode();
    let payload = &text[LINK_PREFIX.len()..];
    let wrapped_at = |width: usize, separator: &str| {
        let lines: Vec<String> = payload
            .chars()
            .collect::<Vec<_>>()
            .chunks(width)
            .map(|chunk| chunk.iter().collect())
            .collect();
        format!("{LINK_PREFIX}{}", lines.join(separator))
    };
    for pasted in [
        wrapped_at(40, "\n"),
        wrapped_at(64, "\r\n"),
        wrapped_at(7, " "),
        wrapped_at(1, "\t"),
        format!("{LINK_PREFIX}\n{payload}"),
        format!("  \n{text}\n\n  "),
        format!("{}\n", wrapped_at(30, "\n    ")),
    ] {
        assert_eq!(InviteLink::decode(&pasted), Ok(link.clone()), "{pasted:?}");
    }
}

#[test]
fn truncated_links_fail_the_checksum() {
    let text = typical().encode();
    let payload_chars = text.len() - LINK_PREFIX.len();
    for cut in [
        1,
        2,
        3,
        5,
        8,
        13,
        50,
        payload_chars - 2,
        payload_chars - 1,
        payload_chars,
    ] {
        let truncated = &text[..text.len() - cut];
        assert_eq!(
            InviteLink::decode(truncated),
            Err(LinkError::Checksum),
            "cut {cut}: {truncated}"
        );
    }
}

#[test]
fn every_single_character_change_fails_the_checksum() {
    let text = typical().encode();
    for index in LINK_PREFIX.len()..text.len() {
        let original = text.as_bytes()[index] as char;
        for with in ['a', 'q', '2', '7'] {
            if with == original {
                continue;
            }
            let changed = replace_char(&text, index, with);
            assert_eq!(
                InviteLink::decode(&changed),
                Err(LinkError::Checksum),
                "{original:?} -> {with:?} at {index}"
            );
        }
    }
}

#[test]
fn invalid_characters_are_reported_by_position() {
    let text = typical().encode();
    let last = text.chars().count() - 1;
    // Positions count characters from 1, the `e` of `earshot://`.
    for (character, index) in [
        ('0', LINK_PREFIX.len()),
        ('0', 20),
        ('1', 100),
        ('8', 200),
        ('!', last),
        ('=', last),
        ('/', 30),
        ('é', 40),
        ('\u{a0}', 50),
    ] {
        let broken = replace_char(&text, index, character);
        assert_eq!(
            InviteLink::decode(&broken),
            Err(LinkError::InvalidCharacter {
                character,
                position: index + 1
            }),
            "{character:?} at index {index}"
        );
    }
    // Inserted line breaks count as characters of the pasted text.
    let broken = format!("{LINK_PREFIX}ab\ncd0{}", &text[LINK_PREFIX.len()..]);
    assert_eq!(
        InviteLink::decode(&broken),
        Err(LinkError::InvalidCharacter {
            character: '0',
            position: LINK_PREFIX.len() + 6
        })
    );
    // A multi-byte character before the bad one counts once.
    let broken = format!("{LINK_PREFIX}éé!{}", &text[LINK_PREFIX.len()..]);
    assert_eq!(
        InviteLink::decode(&broken),
        Err(LinkError::InvalidCharacter {
            character: 'é',
            position: LINK_PREFIX.len() + 1
        })
    );
    assert_eq!(
        LinkError::InvalidCharacter {
            character: '0',
            position: 21
        }
        .to_string(),
        "invite link has an invalid character '0' at position 21: \
         links use only letters a-z and digits 2-7"
    );
}

#[test]
fn text_without_the_prefix_is_not_a_link() {
    let text = typical().encode();
    let payload = &text[LINK_PREFIX.len()..];
    for not_a_link in [
        String::new(),
        "   ".to_owned(),
        "hello".to_owned(),
        payload.to_owned(),
        format!("https://earshot.example/join/{payload}"),
        format!("earshot://room/{payload}"),
        format!("earshot:/join/{payload}"),
        format!("earshot:// join/{payload}"),
        format!("xearshot://join/{payload}"),
        "earshot://joi".to_owned(),
        "éééééééééééééééééééé".to_owned(),
        "earshot://joi\u{e9}/".to_owned(),
    ] {
        assert_eq!(
            InviteLink::decode(&not_a_link),
            Err(LinkError::NotALink),
            "{not_a_link:?}"
        );
    }
    assert_eq!(
        LinkError::NotALink.to_string(),
        "not an earshot invite link (it should start with earshot://join/)"
    );
}

#[test]
fn other_versions_are_refused_as_such() {
    let mut data = raw(&typical());
    data.truncate(data.len() - CHECKSUM_BYTES);
    for version in [0, 3, 255] {
        data[0] = version;
        assert_eq!(
            InviteLink::decode(&wrap(&data)),
            Err(LinkError::UnsupportedVersion { found: version }),
            "version {version}"
        );
    }
    assert_eq!(
        LinkError::UnsupportedVersion { found: 3 }.to_string(),
        "invite link is version 3; this build understands versions 1 to 2"
    );
}

#[test]
fn a_scheduled_rooms_link_says_when_it_begins_and_others_stay_version_1() {
    let mut scheduled = typical();
    scheduled.starts_at = Some(crate::id::Timestamp(1_798_135_200_000));
    let text = scheduled.encode();
    assert_eq!(InviteLink::decode(&text), Ok(scheduled.clone()));
    assert_eq!(raw(&scheduled)[0], SCHEDULED_LINK_VERSION);
    assert_eq!(raw(&typical())[0], LINK_VERSION);
    // Nine bytes longer at most (the time), so about 15 characters.
    assert!(text.len() <= typical().encode().len() + 15, "{text}");
}

#[test]
fn malformed_bodies_are_refused() {
    let link = typical();
    let malformed = |error| Err(LinkError::Malformed(error));

    let mut five = body_of(&link);
    five.bootstrap = (0..5)
        .map(|i| {
            let addr = addr(&format!("/ip4/10.0.0.{i}/udp/40123/quic-v1"));
            serde_bytes::ByteBuf::from(addr.to_vec())
        })
        .collect();
    assert_eq!(
        InviteLink::decode(&wrap_body(&five)),
        malformed(DecodeError::TooManyAddresses { count: 5, max: 4 })
    );

    let mut long_addr = body_of(&link);
    long_addr.bootstrap = vec![serde_bytes::ByteBuf::from(vec![0; MAX_ADDR_BYTES + 1])];
    assert_eq!(
        InviteLink::decode(&wrap_body(&long_addr)),
        malformed(DecodeError::FieldTooLong {
            field: "bootstrap address",
            len: MAX_ADDR_BYTES + 1,
            max: MAX_ADDR_BYTES
        })
    );

    let mut bad_addr = body_of(&link);
    bad_addr.bootstrap = vec![serde_bytes::ByteBuf::from(vec![0xff, 0xff, 0xff])];
    assert_eq!(
        InviteLink::decode(&wrap_body(&bad_addr)),
        malformed(DecodeError::BadAddress)
    );

    let mut data = raw(&link);
    data.truncate(data.len() - CHECKSUM_BYTES);
    data.push(0);
    assert_eq!(
        InviteLink::decode(&wrap(&data)),
        malformed(DecodeError::TrailingBytes(1))
    );

    assert_eq!(
        InviteLink::decode(&wrap(&[LINK_VERSION])),
        malformed(DecodeError::Invalid(
            postcard::Error::DeserializeUnexpectedEnd
        ))
    );

    let mut oversized = vec![LINK_VERSION];
    oversized.extend(vec![0; MAX_BODY_BYTES + 1]);
    assert_eq!(
        InviteLink::decode(&wrap(&oversized)),
        malformed(DecodeError::TooLarge {
            len: MAX_BODY_BYTES + 1,
            max: MAX_BODY_BYTES
        })
    );

    // Five links, structurally: decoding stops at the length before anyone checks a signature.
    let mut long_chain = body_of(&link);
    for _ in 0..4 {
        let parent = long_chain.capability.clone();
        long_chain.capability.parent = Some(Box::new(parent));
        long_chain.capability.signature = Sig([0; 64]);
    }
    assert_eq!(long_chain.capability.chain().len(), 5);
    assert_eq!(
        InviteLink::decode(&wrap_body(&long_chain)),
        malformed(DecodeError::ChainTooLong { max: 4 })
    );
}

#[test]
fn over_long_text_is_refused_before_decoding() {
    let text = format!("{LINK_PREFIX}{}", "a".repeat(5000));
    assert_eq!(
        InviteLink::decode(&text),
        Err(LinkError::TooLong { len: text.len() })
    );
    let text = format!("{LINK_PREFIX}{}", "0".repeat(MAX_LINK_CHARS));
    assert!(matches!(
        InviteLink::decode(&text),
        Err(LinkError::TooLong { .. })
    ));
    // Exactly at the limit is decoded (and here fails on its contents instead).
    let text = format!(
        "{LINK_PREFIX}{}",
        "a".repeat(MAX_LINK_CHARS - LINK_PREFIX.len())
    );
    assert_eq!(text.len(), MAX_LINK_CHARS);
    assert!(!matches!(
        InviteLink::decode(&text),
        Err(LinkError::TooLong { .. })
    ));
}

#[test]
fn encode_keeps_at_most_four_addresses() {
    let mut link = typical();
    link.bootstrap = (0..6)
        .map(|i| addr(&format!("/ip4/10.0.0.{i}/udp/40123/quic-v1")))
        .collect();
    let decoded = InviteLink::decode(&link.encode()).expect("valid link");
    assert_eq!(decoded.bootstrap, link.bootstrap[..MAX_BOOTSTRAP_ADDRS]);
}

#[test]
fn a_tampered_link_with_a_fixed_checksum_fails_verification() {
    // The checksum catches typos, not forgeries: recomputing it gets past decode, and the
    // capability's signature is what refuses the edit.
    let link = typical();
    let mut body = body_of(&link);
    body.capability.role = Role::Moderator;
    let decoded = InviteLink::decode(&wrap_body(&body)).expect("well-formed link");
    let revoked = HashSet::new();
    let result = decoded.capability.verify(&VerifyContext {
        room: ROOM,
        host: decoded.host,
        presenter: Presenter::Unchecked,
        now: NOW,
        revoked: &revoked,
    });
    assert!(
        matches!(result, Err(CapabilityError::BadSignature { link: 1, .. })),
        "{result:?}"
    );
    assert_eq!(
        LinkError::Checksum.to_string(),
        "invite link is truncated or mistyped (checksum mismatch): copy the whole link again"
    );
}
