//! Writes the fuzz targets' seed corpus (`fuzz/seeds/TARGET/NAME`): one valid encoding of each
//! thing a target decodes, signed by the keys the targets check against (the host made of
//! `[9; 32]`, room `[7; 16]`), so that the fuzzer starts from inputs that get past every check.
//!
//! `cargo run -p earshot-protocol --example fuzz_seeds -- fuzz/seeds`

use std::path::{Path, PathBuf};

use earshot_protocol::audience::wire::{Down, Up};
use earshot_protocol::frame::{AudioFrame, SpeakerId};
use earshot_protocol::private::{Epoch, Keys, Secret};
use earshot_protocol::room::RoomSpec;
use earshot_protocol::snapshot::{Announcement, RoomRequest, RoomResponse, RoomSnapshot};
use earshot_protocol::state::RoomState;
use earshot_protocol::{
    Audience, Authority, Capability, ControlBody, Envelope, Grant, InviteLink, PeerKey,
    RecordingPolicy, Role, RoomDescriptor, RoomId, Timestamp, Visibility,
};
use ed25519_dalek::SigningKey;

const ROOM: RoomId = RoomId([7; 16]);
const NOW: Timestamp = Timestamp(1_800_000_000_000);

fn write(dir: &Path, target: &str, name: &str, bytes: &[u8]) {
    let dir = dir.join(target);
    std::fs::create_dir_all(&dir).unwrap_or_else(|err| panic!("{}: {err}", dir.display()));
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap_or_else(|err| panic!("{}: {err}", path.display()));
}

fn main() {
    let dir: PathBuf = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "fuzz/seeds".into())
        .into();
    let host = SigningKey::from_bytes(&[9; 32]);
    let member = SigningKey::from_bytes(&[4; 32]);
    let descriptor = RoomDescriptor::sign(
        &host,
        RoomSpec {
            id: ROOM,
            title: "Seed room".into(),
            visibility: Visibility::Public,
            recording: RecordingPolicy::default(),
            created_at: NOW,
            addrs: vec![
                "/ip4/127.0.0.1/udp/4001/quic-v1"
                    .parse()
                    .expect("multiaddr"),
            ],
            limits: earshot_protocol::RoomLimits::default(),
        },
    )
    .expect("descriptor");
    write(&dir, "descriptor", "room", &descriptor.encode());
    let grant = Grant {
        audience: Audience::Bearer,
        role: Role::Listener,
        not_before: NOW,
        expires_at: Timestamp(NOW.0 + 3_600_000),
        depth: 1,
    };
    let capability = Capability::issue(&host, ROOM, grant, [1; 8]).expect("capability");
    write(
        &dir,
        "capability_ticket_proof",
        "capability",
        &capability.encode(),
    );
    let link = InviteLink {
        starts_at: None,
        capability: capability.clone(),
        host: PeerKey::from(&host),
        bootstrap: descriptor.addrs(),
    };
    write(&dir, "invite_link", "listener", link.to_string().as_bytes());
    let scheduled_link = InviteLink {
        starts_at: Some(Timestamp(NOW.0 + 7_200_000)),
        ..link.clone()
    };
    write(
        &dir,
        "invite_link",
        "scheduled",
        scheduled_link.to_string().as_bytes(),
    );

    let join = Envelope::sign(
        &member,
        ROOM,
        1,
        NOW,
        Authority::Capability(capability.clone()),
        ControlBody::Join { name: "joe".into() },
    )
    .expect("envelope");
    write(&dir, "envelope", "join", &join.encode());
    let chat = Envelope::sign(
        &host,
        ROOM,
        2,
        NOW,
        Authority::Host,
        ControlBody::Chat {
            text: "hello".into(),
        },
    )
    .expect("envelope");
    write(&dir, "envelope", "chat", &chat.encode());
    let consent = Envelope::sign(
        &member,
        ROOM,
        3,
        NOW,
        Authority::Capability(capability.clone()),
        ControlBody::RecordingConsent { since: NOW },
    )
    .expect("envelope");
    write(&dir, "envelope", "consent", &consent.encode());
    let support = Envelope::sign(
        &member,
        ROOM,
        4,
        NOW,
        Authority::Capability(capability.clone()),
        ControlBody::Support {
            amount: 5,
            unit: "EUR".into(),
            note: "thanks".into(),
        },
    )
    .expect("envelope");
    write(&dir, "envelope", "support", &support.encode());
    let receipt = Envelope::sign(
        &host,
        ROOM,
        5,
        NOW,
        Authority::Host,
        ControlBody::SupportReceipt {
            supporter: PeerKey::from(&member),
            support: support.digest(),
        },
    )
    .expect("envelope");
    write(&dir, "envelope", "receipt", &receipt.encode());

    let requests = [
        (
            "join",
            RoomRequest::Join {
                envelope: serde_bytes::ByteBuf::from(join.encode()),
            },
        ),
        ("lobby", RoomRequest::Lobby),
        ("keys", RoomRequest::Keys { room: ROOM }),
        (
            "listeners",
            RoomRequest::Listeners {
                room: ROOM,
                page: 1,
            },
        ),
        (
            "carry",
            RoomRequest::Carry {
                link: link.to_string(),
            },
        ),
        (
            "act",
            RoomRequest::Act {
                room: ROOM,
                act: serde_bytes::ByteBuf::from(support.encode()),
            },
        ),
    ];
    for (name, request) in requests {
        write(&dir, "room_request", name, &request.encode());
    }

    let state = RoomState::new(ROOM, PeerKey::from(&host));
    let snapshot = RoomSnapshot::sign(&host, descriptor.clone(), state, Vec::new(), NOW);
    write(&dir, "snapshot", "empty", &snapshot.encode());
    write(
        &dir,
        "room_response",
        "welcome",
        &RoomResponse::Welcome {
            snapshot: serde_bytes::ByteBuf::from(snapshot.encode()),
            keys: None,
        }
        .encode(),
    );
    let announcement = Announcement::sign(
        &host,
        descriptor,
        vec!["host".into()],
        3,
        capability,
        Timestamp(NOW.0 + 20_000),
        Vec::new(),
    );
    write(&dir, "announcement", "live", &announcement.encode());
    let scheduled = earshot_protocol::RoomDescriptor::sign_scheduled(
        &host,
        earshot_protocol::room::RoomSpec {
            id: ROOM,
            title: "Later".into(),
            visibility: earshot_protocol::Visibility::Public,
            recording: earshot_protocol::RecordingPolicy::default(),
            created_at: NOW,
            addrs: Vec::new(),
            limits: earshot_protocol::RoomLimits::default(),
        },
        Some(earshot_protocol::Schedule {
            starts_at: Timestamp(NOW.0 + 7_200_000),
            about: "what it is about".into(),
        }),
    )
    .expect("descriptor");
    let ahead = Announcement::sign(
        &host,
        scheduled,
        vec!["host".into()],
        0,
        announcement.listener_capability.clone(),
        Timestamp(NOW.0 + 7_200_000 + 900_000),
        Vec::new(),
    );
    write(&dir, "announcement", "ahead", &ahead.encode());
    write(
        &dir,
        "room_request",
        "announce",
        &RoomRequest::Announce {
            announcement: serde_bytes::ByteBuf::from(ahead.encode()),
        }
        .encode(),
    );
    write(
        &dir,
        "room_response",
        "lobby",
        &RoomResponse::Lobby {
            announcements: vec![serde_bytes::ByteBuf::from(announcement.encode())],
        }
        .encode(),
    );

    let frame = AudioFrame {
        speaker: SpeakerId::of(&PeerKey::from(&host)),
        seq: 7,
        timestamp: 960 * 7,
        level: 30,
        flags: 0,
        payload: vec![0xfc; 80],
        tag: None,
    };
    write(&dir, "audio_frame", "voice", &frame.encode());
    let mut sealed = frame.clone();
    Epoch::new(3, Secret::from_bytes([5; 32]))
        .seal_frame(&mut sealed)
        .expect("sealed");
    write(&dir, "audio_frame", "sealed", &sealed.encode());
    let studio = earshot_protocol::studio::StudioChunk::sign(
        &host,
        &ROOM,
        0,
        (0..5)
            .map(|i| AudioFrame {
                seq: 7 + i,
                timestamp: 960 * (7 + i),
                payload: vec![0xfc; 160],
                ..frame.clone()
            })
            .collect(),
    )
    .expect("a studio chunk");
    write(&dir, "studio_chunk", "five", &studio.encode());
    let mut content = vec![0u8];
    earshot_protocol::replay::ContentRecord::Studio(earshot_protocol::replay::ReplayStudio {
        at: 960,
        chunk: studio,
    })
    .write_to(&mut content)
    .expect("a studio record");
    write(&dir, "replay_content", "studio", &content);
    let mut content = vec![0u8];
    earshot_protocol::replay::ContentRecord::Consent(
        earshot_protocol::replay::ReplayConsent::new(960, consent.encode()).expect("a record"),
    )
    .write_to(&mut content)
    .expect("a consent record");
    write(&dir, "replay_content", "consent", &content);

    let ratchet = Keys::ratchet(ROOM, 4, &host);
    write(&dir, "private_keys", "ratchet", &ratchet.encode());
    let fresh = Keys::fresh(
        ROOM,
        &Epoch::new(5, Secret::from_bytes([6; 32])),
        &Secret::from_bytes([8; 32]),
        &[PeerKey::from(&member)],
        [2; 32],
        &host,
    );
    for (i, part) in fresh.iter().enumerate() {
        write(&dir, "private_keys", &format!("fresh{i}"), &part.encode());
    }
    write(
        &dir,
        "tree_wire",
        "keys",
        &Down::Keys(serde_bytes::ByteBuf::from(ratchet.encode())).encode(),
    );
    write(
        &dir,
        "tree_wire",
        "act",
        &Up::Act(serde_bytes::ByteBuf::from(chat.encode())).encode(),
    );
    write(
        &dir,
        "tree_wire",
        "act_via",
        &Up::ActVia {
            act: serde_bytes::ByteBuf::from(chat.encode()),
            via: vec![PeerKey([7; 32]), PeerKey([8; 32])],
        }
        .encode(),
    );
    // A hop's own mark, and the child's answer.
    write(&dir, "tree_wire", "mark", &Down::Mark(41).encode());
    write(&dir, "tree_wire", "marked", &Up::Marked(41).encode());
    // The host's view (its advice to the encoders included) and a subtree's report (how it
    // hears included), as they travel the tree.
    let view = earshot_protocol::audience::AudienceView {
        room: ROOM,
        seq: 3,
        at: NOW,
        stage: vec![earshot_protocol::audience::StageMember {
            key: PeerKey::from(&host),
            name: "host".into(),
            role: earshot_protocol::state::RoomRole::Host,
            muted: false,
        }],
        hands: Vec::new(),
        hands_total: 0,
        listeners: 12,
        reactions: Vec::new(),
        recording: true,
        ended: false,
        banned: Vec::new(),
        revoked: Vec::new(),
        carriers: None,
        excluded: Vec::new(),
        keys: None,
        audio_loss: 50,
        signature: earshot_protocol::id::Sig([0; 64]),
    }
    .sign(&host);
    write(&dir, "audience_view", "view", &view.encode());
    write(
        &dir,
        "tree_wire",
        "view",
        &Down::View(serde_bytes::ByteBuf::from(view.encode())).encode(),
    );
    let report = earshot_protocol::audience::wire::Report {
        subtree: 3,
        reactions: Vec::new(),
        free: Vec::new(),
        newcomers: Vec::new(),
        loss: earshot_protocol::audience::quality::Loss::of_playout(200, 6),
    };
    write(&dir, "tree_wire", "report", &Up::Report(report).encode());
    println!(
        "seeds written under {} (the host's key: {:?})",
        dir.display(),
        PeerKey::from(&host).0
    );
}
