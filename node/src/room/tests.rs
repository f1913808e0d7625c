use earshot_protocol::state::RoomState;
use earshot_protocol::{Capability, ControlBody};

use super::*;

#[test]
fn relayed_addresses_go_first_in_a_link() {
    let host = ed25519_dalek::SigningKey::from_bytes(&[1; 32]);
    let direct: Multiaddr = "/ip4/10.0.0.1/udp/1/quic-v1".parse().expect("addr");
    let relayed: Multiaddr = "/ip4/10.0.0.2/udp/1/quic-v1/p2p/12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN/p2p-circuit"
        .parse()
        .expect("addr");
    let mut link = InviteLink {
        starts_at: None,
        capability: Capability::issue(
            &host,
            RoomId([1; 16]),
            listener_grant(Timestamp(0), None),
            [0; 8],
        )
        .expect("capability"),
        host: PeerKey::from(&host),
        bootstrap: vec![direct.clone()],
    };
    relayed_first(&mut link, &[direct.clone(), relayed.clone()]);
    assert_eq!(link.bootstrap, vec![relayed, direct]);
}

#[test]
fn grants_default_to_a_week_and_moderators_may_delegate_once() {
    let now = Timestamp(1_000);
    let grant = grant(Role::Moderator, Audience::Bearer, now, None);
    assert_eq!(grant.expires_at, now.plus_millis(7 * 24 * 3600 * 1000));
    assert_eq!(grant.depth, 1);
    assert_eq!(listener_grant(now, Some(Timestamp(5_000))).depth, 0);
}

#[test]
fn members_are_found_by_name_or_peer_id() {
    let host = ed25519_dalek::SigningKey::from_bytes(&[1; 32]);
    let host_key = PeerKey::from(&host);
    let room = RoomId([1; 16]);
    let mut state = RoomState::new(room, host_key);
    let envelope = earshot_protocol::Envelope::sign(
        &host,
        room,
        1,
        Timestamp(1_796_119_200_000),
        earshot_protocol::Authority::Host,
        ControlBody::Join { name: "Ana".into() },
    )
    .expect("sign")
    .verify()
    .expect("verify");
    state
        .apply(Timestamp(1_796_119_200_000), &envelope)
        .expect("applies");
    // A listener in the audience, hand raised: the host's view names them.
    let listener = crate::fixtures::key(7);
    let view = crate::node::RoomView {
        descriptor: crate::fixtures::descriptor(
            &host,
            room,
            earshot_protocol::Visibility::Unlisted,
        ),
        state,
        audience: false,
        view: Some(earshot_protocol::audience::AudienceView {
            room,
            seq: 1,
            at: Timestamp(1_796_119_200_000),
            stage: Vec::new(),
            hands: vec![earshot_protocol::audience::Hand {
                key: listener,
                name: "Lu".into(),
                since: Timestamp(1_796_119_200_000),
            }],
            hands_total: 1,
            listeners: 1,
            reactions: Vec::new(),
            recording: false,
            ended: false,
            banned: Vec::new(),
            revoked: Vec::new(),
            carriers: None,
            excluded: Vec::new(),
            keys: None,
            audio_loss: 0,
            signature: earshot_protocol::id::Sig([0; 64]),
        }),
        placement: None,
        ticket: None,
    };
    assert_eq!(find_member(&view, "ana"), Ok(host_key));
    let prefix = &host_key.as_peer_id().to_string()[..20];
    assert_eq!(find_member(&view, prefix), Ok(host_key));
    assert_eq!(find_member(&view, "lu"), Ok(listener));
    assert_eq!(
        find_member(&view, "nobody"),
        Err(FindError::Nobody("nobody".into()))
    );
    // Anyone by their whole PeerId.
    let stranger = crate::fixtures::key(8);
    assert_eq!(
        find_member(&view, &stranger.as_peer_id().to_string()),
        Ok(stranger)
    );
}
