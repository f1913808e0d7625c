//! Offline verification and invite link costs.
//!
//! `cargo bench -p earshot-protocol --bench capability`

use std::collections::HashSet;
use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use earshot_protocol::{
    Audience, Capability, Grant, InviteLink, PeerKey, Presenter, Role, RoomId, Timestamp,
    VerifyContext,
};
use ed25519_dalek::SigningKey;

const ROOM: RoomId = RoomId([7; 16]);
const HOST: u8 = 1;
/// 2026-11-01T10:00:00Z to 2026-12-01T10:00:00Z, and a fixed `now` inside.
const NOT_BEFORE: Timestamp = Timestamp(1_793_527_200_000);
const EXPIRES: Timestamp = Timestamp(1_796_119_200_000);
const NOW: Timestamp = Timestamp(1_793_613_600_000);
const HOUR: u64 = 3_600_000;

fn key(seed: u8) -> SigningKey {
    SigningKey::from_bytes(&[seed; 32])
}

fn pk(seed: u8) -> PeerKey {
    PeerKey::from(&key(seed))
}

/// A chain of `links` bound links: the host's moderator grant to holder 2, then each holder
/// delegating to the next, an hour narrower at both ends each time.
fn chain(links: usize) -> Capability {
    let grant = Grant {
        audience: Audience::Bound(pk(2)),
        role: Role::Moderator,
        not_before: NOT_BEFORE,
        expires_at: EXPIRES,
        depth: 3,
    };
    let mut cap = Capability::issue(&key(HOST), ROOM, grant, [1; 8]).expect("valid grant");
    for step in 1..links {
        let holder = step as u8 + 1;
        let narrowing = step as u64 * HOUR;
        let grant = Grant {
            audience: Audience::Bound(pk(holder + 1)),
            role: Role::Speaker,
            not_before: NOT_BEFORE.plus_millis(narrowing),
            expires_at: Timestamp(EXPIRES.as_millis() - narrowing),
            depth: cap.depth - 1,
        };
        cap = cap
            .delegate(&key(holder), grant, [holder; 8])
            .expect("narrowing delegation");
    }
    cap
}

/// A bearer listener grant from the host with two bootstrap addresses.
fn typical_link() -> InviteLink {
    let grant = Grant {
        audience: Audience::Bearer,
        role: Role::Listener,
        not_before: NOT_BEFORE,
        expires_at: EXPIRES,
        depth: 0,
    };
    InviteLink {
        starts_at: None,
        capability: Capability::issue(&key(HOST), ROOM, grant, [1; 8]).expect("valid grant"),
        host: pk(HOST),
        bootstrap: vec![
            "/ip4/192.168.1.20/udp/40123/quic-v1"
                .parse()
                .expect("valid multiaddr"),
            "/ip4/127.0.0.1/udp/40123/quic-v1"
                .parse()
                .expect("valid multiaddr"),
        ],
    }
}

fn verify(c: &mut Criterion) {
    let revoked = HashSet::new();
    let mut group = c.benchmark_group("verify");
    for (name, links) in [
        ("chain_1_link", 1),
        ("chain_2_links", 2),
        ("chain_4_links", 4),
    ] {
        let cap = chain(links);
        let Audience::Bound(holder) = cap.audience else {
            unreachable!("every link of the fixture chain is bound");
        };
        let ctx = VerifyContext {
            room: ROOM,
            host: pk(HOST),
            presenter: Presenter::Key(holder),
            now: NOW,
            revoked: &revoked,
        };
        cap.verify(&ctx).expect("fixture chain verifies");
        group.bench_function(name, |b| b.iter(|| black_box(&cap).verify(black_box(&ctx))));
    }
    group.finish();
}

fn link(c: &mut Criterion) {
    let link = typical_link();
    let text = link.encode();
    assert_eq!(InviteLink::decode(&text).as_ref(), Ok(&link));
    let mut group = c.benchmark_group("link");
    group.bench_function("decode_typical", |b| {
        b.iter(|| InviteLink::decode(black_box(&text)))
    });
    group.bench_function("encode_typical", |b| b.iter(|| black_box(&link).encode()));
    group.finish();
}

criterion_group!(benches, verify, link);
criterion_main!(benches);
