//! Identity, rooms and invites through the `earshot` binary, as a new user would use them.

use std::collections::HashSet;
use std::os::unix::fs::PermissionsExt;

use earshot_protocol::{
    Audience, Capability, Grant, InviteLink, PeerKey, Role, Timestamp, VerifyContext,
};

use crate::harness::{TestHome, code, stderr};

#[test]
fn init_creates_a_private_key_once_and_id_reports_it() {
    let home = TestHome::new();
    let first = home.ok(&["init"]);
    assert!(first.contains("Created a new identity"), "{first}");
    let mode = std::fs::metadata(home.join("identity.key"))
        .expect("key file")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "the key file is private");
    let key_before = std::fs::read(home.join("identity.key")).expect("key");

    let again = home.ok(&["init"]);
    assert!(again.contains("already exists"), "{again}");
    assert_eq!(
        std::fs::read(home.join("identity.key")).expect("key"),
        key_before,
        "init never overwrites a key"
    );

    let id = home.json(&["id"]);
    let peer_id = id["peer_id"].as_str().expect("peer_id");
    assert!(peer_id.starts_with("12D3KooW"), "{peer_id}");
    let key: PeerKey = id["public_key"]
        .as_str()
        .expect("public_key")
        .parse()
        .expect("base32 key");
    assert_eq!(
        key.to_peer_id().expect("valid key").to_string(),
        peer_id,
        "PeerId and signing key are one identity"
    );
    assert_eq!(
        id["home"].as_str(),
        Some(home.path().to_str().expect("utf-8"))
    );
}

#[test]
fn id_without_init_says_what_to_do() {
    let home = TestHome::new();
    let output = home.run(&["id"]);
    assert_eq!(code(&output), 1);
    assert!(
        stderr(&output).contains("earshot init"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn a_new_room_is_listed_and_its_links_are_valid_invites() {
    let home = TestHome::new();
    let peer_id = home.peer_id();
    let (room, listener, speaker) = home.new_room("Book club");

    let rooms = home.json(&["room", "list"]);
    let rooms = rooms.as_array().expect("array");
    assert_eq!(rooms.len(), 1);
    assert_eq!(rooms[0]["id"].as_str(), Some(room.as_str()));
    assert_eq!(rooms[0]["title"].as_str(), Some("Book club"));
    assert_eq!(rooms[0]["visibility"].as_str(), Some("unlisted"));

    let shown = home.json(&["room", "show", &room[..6]]);
    assert_eq!(shown["id"].as_str(), Some(room.as_str()));
    assert_eq!(shown["host"].as_str(), Some(peer_id.as_str()));
    assert_eq!(shown["invites"].as_array().map(Vec::len), Some(2));

    for (link, role) in [(&listener, "listener"), (&speaker, "speaker")] {
        assert!(link.starts_with("earshot://join/"), "{link}");
        assert!(
            link.len() < 400,
            "a typical link is short: {} chars",
            link.len()
        );
        let inspected = home.json(&["invite", "inspect", link]);
        assert_eq!(inspected["valid"], true, "{inspected}");
        assert_eq!(inspected["role"].as_str(), Some(role));
        assert_eq!(inspected["room"].as_str(), Some(room.as_str()));
        assert_eq!(inspected["host"].as_str(), Some(peer_id.as_str()));
        assert!(
            !inspected["bootstrap"].as_array().expect("addrs").is_empty(),
            "links carry addresses to dial"
        );
    }

    let human = home.ok(&["room", "new", "Town hall", "--public", "--record"]);
    assert!(
        human.contains("Created room \"Town hall\" (public)"),
        "{human}"
    );
    assert!(human.contains("Listener link"), "{human}");
    assert!(human.contains("Speaker link"), "{human}");
    let by_title = home.json(&["room", "show", "town"]);
    assert_eq!(by_title["record"], true);
}

#[test]
fn only_the_host_issues_invites_for_its_rooms() {
    let host = TestHome::new();
    let other = TestHome::new();
    let (room, _, _) = host.new_room("Book club");
    other.ok(&["init"]);
    let output = other.run(&["invite", "create", &room, "--role", "listener"]);
    assert_eq!(code(&output), 1);
    assert!(
        stderr(&output).contains("no room matching"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn a_moderator_delegates_a_narrower_invite_and_no_further() {
    let host = TestHome::new();
    let moderator = TestHome::new();
    let (room, _, _) = host.new_room("Book club");
    let mod_link = host.invite(&[&room, "--role", "moderator", "--expires", "2h"]);
    let inspected = host.json(&["invite", "inspect", &mod_link]);
    assert_eq!(
        inspected["delegation_depth"], 1,
        "moderators may delegate once by default"
    );

    let speaker_link = moderator.json(&[
        "invite",
        "delegate",
        &mod_link,
        "--role",
        "speaker",
        "--expires",
        "1h",
    ])["link"]
        .as_str()
        .expect("link")
        .to_owned();
    let inspected = host.json(&["invite", "inspect", &speaker_link]);
    assert_eq!(inspected["valid"], true, "{inspected}");
    assert_eq!(inspected["role"].as_str(), Some("speaker"));
    let chain = inspected["chain"].as_array().expect("chain");
    assert_eq!(chain.len(), 2);
    assert_eq!(
        chain[1]["issuer"].as_str(),
        Some(moderator.peer_id().as_str())
    );

    // The delegated link allows no further delegation.
    let output = moderator.run(&["invite", "delegate", &speaker_link, "--role", "listener"]);
    assert_eq!(code(&output), 1);
    assert!(
        stderr(&output).contains("delegation too deep"),
        "{}",
        stderr(&output)
    );

    // Nor can a delegate widen what it holds.
    for (args, reason) in [
        (
            vec!["--role", "moderator", "--delegate", "1"],
            "delegation too deep",
        ),
        (
            vec!["--role", "speaker", "--expires", "3h"],
            "validity window widened",
        ),
    ] {
        let mut full = vec!["invite", "delegate", mod_link.as_str()];
        full.extend(args);
        let output = moderator.run(&full);
        assert_eq!(code(&output), 1, "{full:?}");
        assert!(
            stderr(&output).contains(reason),
            "{full:?}: {}",
            stderr(&output)
        );
    }

    // A listener link cannot be delegated at all (depth 0 by default).
    let listener_link = host.invite(&[&room, "--role", "listener"]);
    let output = moderator.run(&["invite", "delegate", &listener_link, "--role", "listener"]);
    assert_eq!(code(&output), 1);
    assert!(
        stderr(&output).contains("delegation too deep"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn a_bound_invite_works_only_for_its_invitee() {
    let host = TestHome::new();
    let invitee = TestHome::new();
    let stranger = TestHome::new();
    let (room, _, _) = host.new_room("Book club");
    let invitee_id = invitee.peer_id();
    let link = host.invite(&[&room, "--role", "speaker", "--for", &invitee_id]);

    assert_eq!(
        code(&host.run(&["invite", "inspect", &link, "--as", &invitee_id])),
        0
    );
    let output = host.run(&["invite", "inspect", &link, "--as", &stranger.peer_id()]);
    assert_eq!(code(&output), 1);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("NOT VALID: bound to"), "{stdout}");

    // A stranger holding the link cannot delegate from it either.
    let mod_link = host.invite(&[&room, "--role", "moderator", "--for", &invitee_id]);
    let output = stranger.run(&["invite", "delegate", &mod_link, "--role", "listener"]);
    assert_eq!(code(&output), 1);
    assert!(stderr(&output).contains("bound to"), "{}", stderr(&output));
}

#[test]
fn expiry_and_not_yet_valid_are_reported_with_the_time() {
    let host = TestHome::new();
    let (room, _, _) = host.new_room("Book club");
    let link = host.invite(&[&room, "--role", "listener", "--expires", "2h"]);
    assert_eq!(
        code(&host.run(&["invite", "inspect", &link, "--at", "1h"])),
        0
    );
    let output = host.run(&["invite", "inspect", &link, "--at", "3h", "--json"]);
    assert_eq!(code(&output), 1);
    let value: serde_json::Value = serde_json::from_slice(&output.stdout).expect("json");
    assert_eq!(value["valid"], false);
    let reason = value["reason"].as_str().expect("reason");
    assert!(reason.starts_with("expired at 20"), "{reason}");

    let output = host.run(&[
        "invite",
        "create",
        &room,
        "--role",
        "listener",
        "--expires",
        "2020-01-01T00:00Z",
    ]);
    assert_eq!(code(&output), 1);
    assert!(
        stderr(&output).contains("not in the future"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn malformed_links_exit_2_with_the_reason() {
    let host = TestHome::new();
    let (_, listener, _) = host.new_room("Book club");
    let mut mistyped = listener.clone().into_bytes();
    let at = mistyped.len() - 20;
    mistyped[at] = if mistyped[at] == b'a' { b'b' } else { b'a' };
    let mistyped = String::from_utf8(mistyped).expect("ascii");
    let cases = [
        (
            listener[..listener.len() - 7].to_owned(),
            "truncated or mistyped",
        ),
        (listener[..120].to_owned(), "truncated or mistyped"),
        (mistyped, "truncated or mistyped"),
        (
            listener.replacen("earshot://join/", "earshot://jion/", 1),
            "not an earshot invite link",
        ),
        ("hello".to_owned(), "not an earshot invite link"),
        (
            format!("{}0{}", &listener[..30], &listener[31..]),
            "invalid character '0'",
        ),
    ];
    for (text, reason) in cases {
        let output = host.run(&["invite", "inspect", &text]);
        assert_eq!(code(&output), 2, "{text}");
        assert!(
            stderr(&output).contains(reason),
            "{text}: {}",
            stderr(&output)
        );
        let output = host.run(&["invite", "delegate", &text, "--role", "listener"]);
        assert_eq!(code(&output), 2, "{text}");
    }
    // Case and line breaks from a chat app do not matter.
    let wrapped = format!("{}\n{}", &listener[..80], &listener[80..]).to_uppercase();
    assert_eq!(code(&host.run(&["invite", "inspect", &wrapped])), 0);
}

#[test]
fn a_forged_invite_is_refused_as_not_issued_by_the_host() {
    let host = TestHome::new();
    let (room, listener, _) = host.new_room("Book club");
    let genuine = InviteLink::decode(&listener).expect("link");
    // Someone who is not the host signs a moderator grant for the host's room and pastes the
    // host's key and addresses around it.
    let forger = ed25519_dalek::SigningKey::from_bytes(&[9; 32]);
    let now = Timestamp::from_secs(1_700_000_000);
    let grant = Grant {
        audience: Audience::Bearer,
        role: Role::Moderator,
        not_before: now,
        expires_at: Timestamp::from_secs(4_000_000_000),
        depth: 3,
    };
    let forged = InviteLink {
        starts_at: None,
        capability: Capability::issue(&forger, room.parse().expect("room id"), grant, [1; 8])
            .expect("sign"),
        host: genuine.host,
        bootstrap: genuine.bootstrap.clone(),
    };
    let output = host.run(&["invite", "inspect", &forged.encode()]);
    assert_eq!(code(&output), 1);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains("NOT VALID: not issued by the host"),
        "{stdout}"
    );

    // And a tampered signature on the genuine link (re-encoded with a good checksum).
    let mut tampered = genuine.clone();
    tampered.capability.role = Role::Moderator;
    let output = host.run(&["invite", "inspect", &tampered.encode()]);
    assert_eq!(code(&output), 1);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("NOT VALID: bad signature"), "{stdout}");

    // The genuine one still verifies with the protocol crate directly.
    let revoked = HashSet::new();
    genuine
        .capability
        .verify(&VerifyContext {
            room: genuine.capability.room,
            host: genuine.host,
            presenter: earshot_protocol::Presenter::Unchecked,
            now: genuine.capability.not_before,
            revoked: &revoked,
        })
        .expect("genuine link verifies");
}

#[test]
fn qr_codes_and_links_from_stdin() {
    let host = TestHome::new();
    let (room, _, _) = host.new_room("Book club");
    let out = host.ok(&["invite", "create", &room, "--role", "listener", "--qr"]);
    assert!(out.contains('█') || out.contains('▀'), "{out}");
    let link = out
        .lines()
        .find(|line| line.starts_with("earshot://join/"))
        .expect("the link is printed too");
    host.cmd(&["invite", "inspect", "-"])
        .write_stdin(format!("{link}\n"))
        .assert()
        .code(0);
}
