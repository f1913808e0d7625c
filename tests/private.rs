//! Issue 14, private rooms that are private: a community relay that keeps everything it passes
//! on (`earshot relay --capture FILE`, a hidden flag) carries a private room, and what it kept
//! is compared with what the members below it hear.

use earshot_node::Event;
use earshot_node::audio::codec::VoiceDecoder;
use earshot_node::event::CloseReason;
use earshot_node::fanout::misbehave::{
    CAPTURED_AUDIO, CAPTURED_DOWN, CAPTURED_KEYS, CAPTURED_UP, Capture, KEYS_REPLAYED,
};
use earshot_protocol::audience::wire::Down;
use earshot_protocol::frame::{AudioFrame, flags};
use earshot_protocol::private::{Epoch, How, Keychain, Keys, Secret};
use earshot_protocol::{InviteLink, PeerKey, RoomId};

use crate::harness::TestHome;
use crate::live::{LOCAL, Live, listener, local_room_with, read_wav, tone_host};
use crate::trust::{Logged, SPEECH_SECONDS, Speech, hear, scene_lock};

/// A community relay on 127.0.0.1 keeping everything it passes on in `capture`: the process,
/// its address and PeerId.
fn capturing_relay(operator: &TestHome, capture: &std::path::Path) -> (Live, String, String) {
    let capture = capture.to_str().expect("utf-8 path");
    let mut relay = Live::start(
        "relay",
        operator,
        &["relay", "--listen", LOCAL, "--capture", capture],
    );
    let (addr, peer_id) = relay.expect_map("relay", |e| match e {
        Event::Relay { peer_id, addrs, .. } => Some((
            addrs.first().expect("an address").to_string(),
            peer_id.to_string(),
        )),
        _ => None,
    });
    (relay, addr, peer_id)
}

/// A private room's host saying `speech`, feeding one child itself (the relay it asks to carry
/// the room): returns once the relay carries it, with the listener link.
fn private_host(
    ana: &TestHome,
    speech: &Speech,
    relay_addr: &str,
    relay: &mut Live,
) -> (Live, String) {
    let room = local_room_with(ana, "Secret", &["--private"]);
    let file = speech.file(ana);
    let mut host = Live::start(
        "host",
        ana,
        &[
            "host",
            &room,
            "--input",
            &file,
            "--output",
            "null",
            "--max-children",
            "1",
            "--relay",
            relay_addr,
            "--name",
            HOST_NAME,
        ],
    );
    let link = host.listener_link();
    host.expect("relay_added", |e| matches!(e, Event::RelayAdded { .. }));
    relay.expect("carrying", |e| matches!(e, Event::Carrying { .. }));
    host.expect("the relay in the tree", |e| {
        matches!(e, Event::Audience { listeners: 1, .. })
    });
    (host, link)
}

/// Names and words that must not be in what a relay passes on (long enough that random bytes
/// never hold them by chance).
const HOST_NAME: &str = "Hana-of-the-private-room";
const LISTENER_NAME: &str = "josephine-below-the-relay";
const HOST_SAYS: &str = "the host says the password is swordfish-42";
const LISTENER_SAYS: &str = "the listener says marmalade-on-toast";
const REACTION: &str = "🦜";

/// Whether any record of a capture holds `text`.
fn holds(records: &[(u8, Vec<u8>)], text: &str) -> bool {
    records
        .iter()
        .any(|(_, bytes)| bytes.windows(text.len()).any(|w| w == text.as_bytes()))
}

/// A capture a node wrote (`--capture`), read back.
fn read_capture(path: &std::path::Path) -> Vec<(u8, Vec<u8>)> {
    Capture::read(&std::fs::read(path).unwrap_or_else(|err| panic!("{}: {err}", path.display())))
}

/// A listener of `link` that feeds nobody and keeps what it receives, and its keys, in a
/// capture: the process and the capture's path.
fn capturing_listener(
    name: &'static str,
    home: &TestHome,
    link: &str,
) -> (Live, std::path::PathBuf) {
    let capture = home.join("capture.bin");
    let live = listener(
        name,
        home,
        link,
        &[
            "--max-children",
            "0",
            "--capture",
            capture.to_str().expect("utf-8 path"),
        ],
    );
    (live, capture)
}

/// The sealed audio frames of a capture, in order.
fn captured_frames(records: &[(u8, Vec<u8>)]) -> Vec<AudioFrame> {
    records
        .iter()
        .filter(|(kind, _)| *kind == CAPTURED_AUDIO)
        .filter_map(|(_, bytes)| AudioFrame::decode(bytes).ok())
        .collect()
}

/// What someone holding `frames` hears: decoded as they are (sealed: noise, or nothing), and
/// opened with `keys` first (what a member hears), frame for frame, over the frames `keys`
/// opens; and how many frames were sealed.
fn heard_both_ways(frames: &[AudioFrame], keys: &Keychain) -> (Vec<f32>, Vec<f32>, usize) {
    let (mut as_is, mut opened) = (
        VoiceDecoder::new().expect("decoder"),
        VoiceDecoder::new().expect("decoder"),
    );
    let (mut raw, mut clear, mut sealed) = (Vec::new(), Vec::new(), 0);
    let silence = || std::iter::repeat_n(0.0f32, 960);
    for frame in frames {
        if frame.flags & flags::SEALED != 0 {
            sealed += 1;
        }
        let Ok(open) = keys.open_frame(frame) else {
            continue;
        };
        match as_is.decode(&frame.payload) {
            Ok(pcm) => raw.extend(pcm),
            Err(_) => raw.extend(silence()),
        }
        match opened.decode(&open.payload) {
            Ok(pcm) => clear.extend(pcm),
            Err(_) => clear.extend(silence()),
        }
    }
    (raw, clear, sealed)
}

/// The frames as they are carry nothing of what they carry opened: decoded side by side (the
/// same frames, so the same timing), their correlation is that of noise; and opened, they are
/// the speech.
fn assert_sealed_speech(what: &str, speech: &Speech, frames: &[AudioFrame], keys: &Keychain) {
    let (raw, clear, sealed) = heard_both_ways(frames, keys);
    assert_eq!(sealed, frames.len(), "{what}: every frame is sealed");
    assert!(
        clear.len() >= 48_000 * 4,
        "{what}: {} samples open",
        clear.len()
    );
    hear(speech, &clear).assert_only_speech(&format!("{what}, opened"), 0.9);
    let (mut dot, mut clear_energy, mut raw_energy) = (0.0f64, 0.0f64, 0.0f64);
    for (a, b) in clear.iter().zip(&raw) {
        dot += f64::from(*a) * f64::from(*b);
        clear_energy += f64::from(*a).powi(2);
        raw_energy += f64::from(*b).powi(2);
    }
    let correlation = dot / (clear_energy * raw_energy).sqrt().max(f64::MIN_POSITIVE);
    eprintln!(
        "{what}: {} frames, all sealed; played as they are, correlation {correlation:.4} with \
         what they carry",
        frames.len()
    );
    assert!(
        correlation.abs() < 0.1,
        "{what}: the sealed frames sound like the speech ({correlation:.4})"
    );
}

/// The relay carries a private room to a listener below it: the listener hears the speech, the
/// host's and its own chat and the stage's names; every frame the relay passed on is sealed, its
/// bytes played as Opus are not the speech, and no name, chat line or reaction is in anything
/// it passed on, down or up.
#[test]
fn a_relay_carries_a_private_room_it_cannot_hear_or_read() {
    let _one_scene_at_a_time = scene_lock();
    let (operator, ana, joe) = (TestHome::new(), TestHome::new(), TestHome::new());
    let capture = operator.join("capture.bin");
    let (mut relay, relay_addr, relay_id) = capturing_relay(&operator, &capture);
    let speech = Speech::new(SPEECH_SECONDS);
    let (mut host, link) = private_host(&ana, &speech, &relay_addr, &mut relay);

    let output = joe.join("out.wav");
    let out = output.to_str().expect("utf-8 path");
    let joe_capture = joe.join("capture.bin");
    let mut joe_live = listener(
        LISTENER_NAME,
        &joe,
        &link,
        &[
            "--output",
            out,
            "--max-children",
            "0",
            "--input",
            "silence",
            "--capture",
            joe_capture.to_str().expect("utf-8 path"),
        ],
    );
    let parent = joe_live.expect_map("audio_attached", |e| match e {
        Event::AudioAttached { parent, .. } => Some(parent.to_string()),
        _ => None,
    });
    assert_eq!(parent, relay_id, "joe hears the room through the relay");
    // Joe knows the stage by name (the host's view, in its answer to his join).
    assert!(
        joe_live
            .printed(|e| { serde_json::to_string(e).is_ok_and(|json| json.contains(HOST_NAME)) })
    );
    host.say(HOST_SAYS);
    joe_live.expect(
        "the host's chat",
        |e| matches!(e, Event::Chat { text, name, .. } if text == HOST_SAYS && name == HOST_NAME),
    );
    joe_live.say(LISTENER_SAYS);
    host.expect(
        "joe's chat at the host",
        |e| matches!(e, Event::Chat { text, .. } if text == LISTENER_SAYS),
    );
    joe_live.expect(
        "joe's chat relayed back down",
        |e| matches!(e, Event::Chat { text, .. } if text == LISTENER_SAYS),
    );
    joe_live.say(&format!("/react {REACTION}"));
    joe_live.expect("joe's reaction counted in a view", |e| {
        matches!(e, Event::Reactions { reactions, .. } if reactions.iter().any(|(emoji, _)| emoji == REACTION))
    });
    joe_live.expect_stats("six seconds of audio", |s| s.delivered >= 300);
    host.say("/end");
    let last = joe_live.expect_stats("the last report", |s| s.r#final);
    assert_eq!(joe_live.exit_code(), 0);
    assert_eq!(host.exit_code(), 0);
    drop(relay);

    let heard = hear(&speech, &read_wav(&output));
    heard.assert_only_speech("joe, below the relay", 0.9);
    assert!(
        last.delivered * 100 >= last.expected * 95,
        "joe: {} of {} frames",
        last.delivered,
        last.expected
    );

    let records = read_capture(&capture);
    let frames = captured_frames(&records);
    assert!(
        frames.len() >= 300,
        "the relay passed on {} frames",
        frames.len()
    );
    let (joe_keys, _) = captured_keys(&read_capture(&joe_capture));
    assert_sealed_speech("the relay's frames", &speech, &frames, &joe_keys);
    let (downs, ups) = (
        records
            .iter()
            .filter(|(kind, _)| *kind == CAPTURED_DOWN)
            .count(),
        records
            .iter()
            .filter(|(kind, _)| *kind == CAPTURED_UP)
            .count(),
    );
    assert!(
        downs >= 5 && ups >= 2,
        "{downs} control frames down, {ups} up"
    );
    for secret in [HOST_NAME, LISTENER_NAME, HOST_SAYS, LISTENER_SAYS, REACTION] {
        assert!(
            !holds(&records, secret),
            "the relay passed on {secret:?} in the clear"
        );
    }
}

/// The epochs a node captured of its keys (`--capture`), as a ring to open frames with.
fn captured_keys(records: &[(u8, Vec<u8>)]) -> (Keychain, Vec<u32>) {
    let mut epochs: Vec<(u32, [u8; 32])> = records
        .iter()
        .filter(|(kind, bytes)| *kind == CAPTURED_KEYS && bytes.len() == 36)
        .map(|(_, bytes)| {
            let mut secret = [0u8; 32];
            secret.copy_from_slice(&bytes[4..]);
            (
                u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]),
                secret,
            )
        })
        .collect();
    epochs.sort_by_key(|(n, _)| *n);
    epochs.dedup_by_key(|(n, _)| *n);
    let mut keys = Keychain::default();
    keys.add(
        epochs
            .iter()
            .map(|(n, secret)| Epoch::new(*n, Secret::from_bytes(*secret))),
    );
    (keys, epochs.iter().map(|(n, _)| *n).collect())
}

/// Where in a capture the host's keys stepped: (record index, epoch, fresh?).
fn key_steps(records: &[(u8, Vec<u8>)], room: RoomId, host: &PeerKey) -> Vec<(usize, u32, bool)> {
    records
        .iter()
        .enumerate()
        .filter(|(_, (kind, _))| *kind == CAPTURED_DOWN)
        .filter_map(|(at, (_, bytes))| match Down::decode(bytes).ok()? {
            Down::Keys(keys) => {
                let keys = Keys::decode_verified(&keys, room, host).ok()?;
                Some((at, keys.epoch, matches!(keys.how, How::Fresh { .. })))
            }
            _ => None,
        })
        .collect()
}

/// The sealed frames of a capture from `from` on, and how many of them `ring` opens.
fn opened(
    records: &[(u8, Vec<u8>)],
    range: std::ops::Range<usize>,
    keys: &Keychain,
) -> (usize, usize) {
    let frames: Vec<AudioFrame> = records[range]
        .iter()
        .filter(|(kind, _)| *kind == CAPTURED_AUDIO)
        .filter_map(|(_, bytes)| AudioFrame::decode(bytes).ok())
        .collect();
    let open = frames.iter().filter(|f| keys.open_frame(f).is_ok()).count();
    (frames.len(), open)
}

/// A listener removed from a private room holds keys that open nothing the room said from two
/// seconds after its removal on, even given every byte a relay passed on (a removed member
/// with a friend in the tree); a listener who joins later opens nothing said before it came.
/// The listener who stays hears the speech throughout.
#[test]
fn a_removed_member_reads_nothing_after_the_rotation_and_a_joiner_nothing_before_it_came() {
    let _one_scene_at_a_time = scene_lock();
    let (operator, ana) = (TestHome::new(), TestHome::new());
    let (joe, mal, sue) = (TestHome::new(), TestHome::new(), TestHome::new());
    let relay_capture = operator.join("capture.bin");
    let (mut relay, relay_addr, _) = capturing_relay(&operator, &relay_capture);
    let speech = Speech::new(SPEECH_SECONDS);
    let (mut host, link) = private_host(&ana, &speech, &relay_addr, &mut relay);
    let room_id = room_of(&link);
    // Mal gets a link of her own: removing her revokes it, and only it.
    let mal_link = ana.invite(&[&room_id.to_string(), "--role", "listener"]);

    let output = joe.join("out.wav");
    let out = output.to_str().expect("utf-8 path");
    let mut joe_live = listener(
        "joe",
        &joe,
        &link,
        &["--output", out, "--max-children", "0", "--input", "silence"],
    );
    joe_live.expect_stats("joe hears", |s| s.delivered >= 50);
    let (mut mal_live, mal_capture) = capturing_listener("mal", &mal, &mal_link);
    mal_live.expect_stats("mal hears", |s| s.delivered >= 100);

    host.say(&format!("/remove {}", mal.peer_id()));
    mal_live.expect("mal removed", |e| {
        matches!(
            e,
            Event::Closed {
                reason: CloseReason::Removed,
                ..
            }
        )
    });
    // Joe hears on through the rotation; Sue joins after it.
    let before = joe_live.expect_stats("joe's report", |_| true).delivered;
    joe_live.expect_stats("four seconds more", |s| s.delivered >= before + 200);
    let (mut sue_live, sue_capture) = capturing_listener("sue", &sue, &link);
    sue_live.expect_stats("sue hears", |s| s.delivered >= 150);
    host.say("/end");
    joe_live.expect_stats("joe's last report", |s| s.r#final);
    assert_eq!(joe_live.exit_code(), 0);
    assert_eq!(sue_live.exit_code(), 0);
    assert_eq!(host.exit_code(), 0);
    drop((relay, mal_live));

    let heard = hear(&speech, &read_wav(&output));
    heard.assert_only_speech("joe, who stayed", 0.9);

    let records = read_capture(&relay_capture);
    let host_key = host_key_of(&link);
    let steps = key_steps(&records, room_id, &host_key);
    let (mal_keys, mal_epochs) = captured_keys(&read_capture(&mal_capture));
    let (sue_keys, sue_epochs) = captured_keys(&read_capture(&sue_capture));
    eprintln!(
        "key steps the relay passed on: {steps:?}; mal held {mal_epochs:?}, sue {sue_epochs:?}"
    );

    // The rotation: the first fresh epoch past everything mal held.
    let mal_last = *mal_epochs.last().expect("mal held keys");
    let (rotation, fresh, _) = *steps
        .iter()
        .find(|(_, epoch, fresh)| *fresh && *epoch > mal_last)
        .expect("a fresh epoch after the removal");
    let (before_frames, before_open) = opened(&records, 0..rotation, &mal_keys);
    assert!(
        before_open >= 100,
        "mal's keys open {before_open} of the {before_frames} frames before her removal"
    );
    // Two seconds of frames after the rotation is more than its grace (1 s).
    let after: Vec<usize> = records
        .iter()
        .enumerate()
        .skip(rotation)
        .filter(|(_, (kind, _))| *kind == CAPTURED_AUDIO)
        .map(|(at, _)| at)
        .collect();
    assert!(
        after.len() >= 200,
        "{} frames after the rotation",
        after.len()
    );
    let (later, later_open) = opened(&records, after[100]..records.len(), &mal_keys);
    eprintln!(
        "mal's keys open {before_open} of {before_frames} frames before the rotation to epoch \
         {fresh}, {later_open} of the {later} from two seconds after it"
    );
    assert_eq!(later_open, 0, "mal reads what was said after her removal");

    // Sue opens nothing from before the step that let her in, and what comes after.
    let sue_first = *sue_epochs.first().expect("sue held keys");
    let (sue_step, _, _) = *steps
        .iter()
        .find(|(_, epoch, _)| *epoch == sue_first)
        .expect("the step to sue's first epoch");
    let (earlier, earlier_open) = opened(&records, 0..sue_step, &sue_keys);
    let (since, since_open) = opened(&records, sue_step..records.len(), &sue_keys);
    eprintln!(
        "sue's keys open {earlier_open} of {earlier} frames before she came, {since_open} of {since} after"
    );
    assert_eq!(earlier_open, 0, "sue reads what was said before she came");
    assert!(
        since_open * 100 >= since * 90,
        "sue opens {since_open} of {since}"
    );
}

/// The room id an invite link is for.
fn room_of(link: &str) -> RoomId {
    InviteLink::decode(link).expect("a link").capability.room
}

/// The host's key an invite link names.
fn host_key_of(link: &str) -> PeerKey {
    InviteLink::decode(link).expect("a link").host
}

/// A speaker of a private room: joins the stage through the host (and its sealed topic), speaks,
/// chats; a listener hears its speech and reads its chat.
#[test]
fn a_speaker_of_a_private_room_is_heard_and_read_by_its_listeners() {
    let _one_scene_at_a_time = scene_lock();
    let (ana, sam, joe) = (TestHome::new(), TestHome::new(), TestHome::new());
    let room = local_room_with(&ana, "Secret stage", &["--private"]);
    let mut host = Live::start(
        "host",
        &ana,
        &["host", &room, "--input", "silence", "--output", "null"],
    );
    let link = host.listener_link();
    let speaker_link = ana.invite(&[&room, "--role", "speaker"]);
    let speech = Speech::new(SPEECH_SECONDS);
    let file = speech.file(&sam);
    let mut sam_live = Live::start(
        "sam",
        &sam,
        &[
            "join",
            &speaker_link,
            "--name",
            "sam",
            "--listen",
            LOCAL,
            "--input",
            &file,
            "--output",
            "null",
        ],
    );
    sam_live.expect("joined", |e| matches!(e, Event::Joined { .. }));
    let output = joe.join("out.wav");
    let out = output.to_str().expect("utf-8 path");
    let mut joe_live = listener("joe", &joe, &link, &["--output", out, "--input", "silence"]);
    joe_live.expect_stats("joe hears", |s| s.delivered >= 50);
    sam_live.say("hello from the private stage");
    joe_live.expect("sam's chat", |e| {
        matches!(e, Event::Chat { text, name, .. } if text == "hello from the private stage" && name == "sam")
    });
    host.expect(
        "sam's chat at the host",
        |e| matches!(e, Event::Chat { text, .. } if text == "hello from the private stage"),
    );
    let before = joe_live.expect_stats("joe's report", |_| true).delivered;
    // Two voices (the host says silence): about eight seconds of each.
    joe_live.expect_stats("eight seconds more", |s| s.delivered >= before + 800);
    host.say("/end");
    assert_eq!(joe_live.exit_code(), 0);
    assert_eq!(sam_live.exit_code(), 0);
    assert_eq!(host.exit_code(), 0);
    let heard = hear(&speech, &read_wav(&output));
    heard.assert_only_speech("joe, hearing sam", 0.9);
}

/// A host killed and started again goes on with its private room's keys (kept at rest, sealed
/// to its own key): its members hear and read it again without joining again, and a member it
/// removed before stays out.
#[test]
fn a_private_room_goes_on_after_its_host_restarts_and_the_removed_stay_out() {
    let _one_scene_at_a_time = scene_lock();
    let (ana, joe, bo) = (TestHome::new(), TestHome::new(), TestHome::new());
    let room = local_room_with(&ana, "Secret", &["--private"]);
    let host_args = ["host", &room, "--input", "sine", "--output", "null"];
    let mut host = Logged::start(
        "host",
        &ana,
        "earshot_node::rooms=info,earshot_node::node::event_loop=debug",
        &host_args,
    );
    let link = host.expect_map("hosting", |e| match e {
        Event::Hosting { listener_link, .. } => Some(listener_link.to_string()),
        _ => None,
    });
    // Bo gets a link of his own: removing him revokes it, and only it.
    let bo_link = ana.invite(&[&room, "--role", "listener"]);
    let mut joe_live = listener("joe", &joe, &link, &["--input", "silence"]);
    let mut bo_live = listener("bo", &bo, &bo_link, &["--input", "silence"]);
    joe_live.expect_stats("joe hears", |s| s.delivered >= 50);
    bo_live.expect_stats("bo hears", |s| s.delivered >= 50);

    host.say(&format!("/remove {}", bo.peer_id()));
    bo_live.expect("bo removed", |e| {
        matches!(
            e,
            Event::Closed {
                reason: CloseReason::Removed,
                ..
            }
        )
    });
    // The fresh epoch without Bo is on disk before its keys go down the tree.
    let wait = std::time::Duration::from_secs(20);
    host.expect_log("the fresh epoch", wait, |line| {
        line.contains("the key schedule stepped") && line.contains("fresh=true")
    });
    host.expect_log("the schedule kept", wait, |line| {
        line.contains("kept the room's key schedule")
    });
    let before = joe_live.expect_stats("joe's report", |_| true).delivered;
    drop(host);

    let mut again = Live::start("host again", &ana, &host_args);
    again.listener_link();
    // Joe finds the host again and opens what it says: the room's keys are the ones he holds.
    joe_live.expect_stats("joe hears the host again", |s| s.delivered >= before + 150);
    again.say("said after the restart");
    joe_live.expect(
        "the host's chat",
        |e| matches!(e, Event::Chat { text, .. } if text == "said after the restart"),
    );
    assert!(
        !joe_live.printed(|e| matches!(e, Event::Error { .. })),
        "joe was told nothing went wrong"
    );
    // Bo's link stays revoked: he is not let in again.
    let bo_again = listener("bo again", &bo, &bo_link, &["--input", "silence"]);
    assert_ne!(bo_again.exit_code(), 0, "bo is refused");

    again.say("/end");
    assert_eq!(joe_live.exit_code(), 0);
    assert_eq!(again.exit_code(), 0);
    drop(bo_live);
}

/// Every keys message that came down to a node (its capture), as (epoch, part, signed by the
/// host?).
fn keys_came_down(
    records: &[(u8, Vec<u8>)],
    room: RoomId,
    host: &PeerKey,
) -> Vec<(u32, u16, bool)> {
    records
        .iter()
        .filter(|(kind, _)| *kind == CAPTURED_DOWN)
        .filter_map(|(_, bytes)| match Down::decode(bytes).ok()? {
            Down::Keys(bytes) => {
                let keys: Keys = earshot_protocol::codec::decode(&bytes, usize::MAX).ok()?;
                let part = match keys.how {
                    How::Fresh { part, .. } => part,
                    How::Ratchet => u16::MAX,
                };
                let signed = Keys::decode_verified(&bytes, room, host).is_ok();
                Some((keys.epoch, part, signed))
            }
            _ => None,
        })
        .collect()
}

/// A relay in a private room's tree that passes every keys message on ten times more and forges
/// the next step after it (`--misbehave forge-keys`): the member below it passes each step on
/// once and nothing forged, and the members below hear on through a removal's fresh epoch.
#[test]
fn keys_a_relay_replays_or_forges_get_no_further_than_the_next_member() {
    let _one_scene_at_a_time = scene_lock();
    let (ana, mal, joe, sue, bo) = (
        TestHome::new(),
        TestHome::new(),
        TestHome::new(),
        TestHome::new(),
        TestHome::new(),
    );
    let room = local_room_with(&ana, "Secret", &["--private"]);
    let mut host = tone_host(&ana, &room, &["--max-children", "1"]);
    let link = host.listener_link();
    let (room_id, host_key) = (room_of(&link), host_key_of(&link));
    let bo_link = ana.invite(&[&room, "--role", "listener"]);
    let mut mal_live = listener(
        "mal",
        &mal,
        &link,
        &["--misbehave", "forge-keys", "--max-children", "1"],
    );
    mal_live.expect_stats("mal under the host", |s| {
        s.depth == Some(1) && s.delivered >= 20
    });
    let joe_capture = joe.join("capture.bin");
    let mut joe_live = listener(
        "joe",
        &joe,
        &link,
        &[
            "--max-children",
            "2",
            "--capture",
            joe_capture.to_str().expect("utf-8 path"),
        ],
    );
    joe_live.expect_stats("joe under mal", |s| s.depth == Some(2) && s.delivered >= 20);
    let (mut sue_live, sue_capture) = capturing_listener("sue", &sue, &link);
    sue_live.expect_stats("sue under joe", |s| s.depth == Some(3) && s.delivered >= 50);
    let mut bo_live = listener("bo", &bo, &bo_link, &["--max-children", "0"]);
    bo_live.expect_stats("bo under joe", |s| s.depth == Some(3) && s.delivered >= 20);

    host.say(&format!("/remove {}", bo.peer_id()));
    bo_live.expect("bo removed", |e| {
        matches!(
            e,
            Event::Closed {
                reason: CloseReason::Removed,
                ..
            }
        )
    });
    let before = sue_live.expect_stats("sue's report", |_| true).delivered;
    sue_live.expect_stats("sue hears on", |s| s.delivered >= before + 150);
    host.say("/end");
    assert_eq!(sue_live.exit_code(), 0);
    assert_eq!(joe_live.exit_code(), 0);
    assert_eq!(host.exit_code(), 0);
    drop((mal_live, bo_live));

    // The attack ran: joe got each step many times, and forged ones.
    let at_joe = keys_came_down(&read_capture(&joe_capture), room_id, &host_key);
    let forged = at_joe.iter().filter(|(_, _, signed)| !signed).count();
    assert!(forged >= 1, "mal forged keys: {at_joe:?}");
    assert!(
        at_joe.len() >= forged * (KEYS_REPLAYED + 1),
        "mal replayed keys: {at_joe:?}"
    );
    // Sue, below joe, got each step once, none forged, the removal's fresh epoch among them.
    let at_sue = keys_came_down(&read_capture(&sue_capture), room_id, &host_key);
    assert!(at_sue.iter().all(|(_, _, signed)| *signed), "{at_sue:?}");
    let mut steps: Vec<(u32, u16)> = at_sue.iter().map(|(n, part, _)| (*n, *part)).collect();
    let all = steps.len();
    steps.sort_unstable();
    steps.dedup();
    assert_eq!(steps.len(), all, "each step once: {at_sue:?}");
    assert!(
        steps.iter().any(|(_, part)| *part != u16::MAX),
        "the removal's fresh epoch reached sue: {at_sue:?}"
    );
}

/// `recordings fetch LINK` into `home`, listening on 127.0.0.1: the recording fetched.
fn fetch_replay(home: &TestHome, link: &str) -> earshot_protocol::RecordingId {
    let output = home.run(&["recordings", "fetch", link, "--listen", LOCAL, "--json"]);
    assert!(
        output.status.success(),
        "fetch failed: {}",
        crate::harness::stderr(&output)
    );
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| serde_json::from_str::<Event>(line).ok())
        .find_map(|event| match event {
            Event::Fetched { recording, .. } => Some(recording),
            _ => None,
        })
        .expect("a fetched event")
}

/// A private room's recording, published as a replay: the members are given its link with the
/// key; a holder fetched without the key serves bytes it cannot read (its frames played as
/// Opus are not the speech, export refuses, no title or name in what it holds); with the
/// key, the replay exports the speech and verifies, stage views and all.
#[test]
fn a_private_rooms_replay_opens_only_with_the_key_its_link_carries() {
    let _one_scene_at_a_time = scene_lock();
    let (ana, joe, eve, dan) = (
        TestHome::new(),
        TestHome::new(),
        TestHome::new(),
        TestHome::new(),
    );
    let room = local_room_with(&ana, "Secret minutes", &["--private"]);
    let speech = Speech::new(SPEECH_SECONDS);
    let file = speech.file(&ana);
    let mut host = Live::start(
        "host",
        &ana,
        &[
            "host", &room, "--input", &file, "--output", "null", "--name", HOST_NAME,
        ],
    );
    let link = host.listener_link();
    let mut joe_live = listener("joe", &joe, &link, &["--input", "silence"]);
    joe_live.expect_stats("joe hears", |s| s.delivered >= 50);
    host.say("/record start");
    let before = joe_live.expect_stats("joe's report", |_| true).delivered;
    joe_live.expect_stats("six seconds recorded", |s| s.delivered >= before + 300);
    host.say("/record stop");
    let recording = host.expect_map("the recording saved", |e| match e {
        Event::RecordingSaved { recording, .. } => Some(*recording),
        _ => None,
    });
    // Published at once and announced to the members, with the key.
    let replay_link = joe_live.expect_map("replay_available", |e| match e {
        Event::ReplayAvailable { link, .. } => Some(link.clone()),
        _ => None,
    });
    assert!(
        replay_link.key.is_some(),
        "the members' link carries the key"
    );

    // A holder without the key.
    let keyless = earshot_protocol::replay::ReplayLink {
        key: None,
        ..replay_link.clone()
    };
    let held = fetch_replay(&eve, &keyless.encode());
    assert_eq!(held, recording);
    let out = eve.join("nothing.wav");
    let refused = eve.run(&[
        "recordings",
        "export",
        &held.to_string(),
        out.to_str().expect("utf-8 path"),
    ]);
    assert!(
        !refused.status.success(),
        "a replay without its key exports"
    );
    assert!(
        crate::harness::stderr(&refused).contains("private"),
        "{}",
        crate::harness::stderr(&refused)
    );
    let eve_home = earshot_node::home::Home::open(eve.path()).expect("eve's data");
    let meta = eve_home
        .recordings()
        .get(&held)
        .expect("read")
        .expect("kept");
    assert!(!meta.title.contains("Secret"), "the holder reads the title");
    assert!(
        meta.speakers.values().all(|s| !s.name.contains(HOST_NAME)),
        "the holder reads names"
    );
    let held_frames: Vec<AudioFrame> = eve_home
        .recordings()
        .frames(&held)
        .map(|frame| {
            let frame = frame.expect("a frame");
            AudioFrame {
                speaker: frame.speaker,
                seq: frame.seq,
                timestamp: frame.timestamp,
                level: frame.level,
                flags: frame.flags,
                payload: frame.payload,
                tag: None,
            }
        })
        .collect();
    drop(eve_home);

    // A member with the link.
    let opened = fetch_replay(&dan, &replay_link.encode());
    let wav_out = dan.join("minutes.wav");
    let exported = dan.run(&[
        "recordings",
        "export",
        &opened.to_string(),
        wav_out.to_str().expect("utf-8 path"),
    ]);
    assert!(
        exported.status.success(),
        "{}",
        crate::harness::stderr(&exported)
    );
    hear(&speech, &read_wav(&wav_out)).assert_only_speech("the replay, with its key", 0.9);
    let verified = dan.json(&["recordings", "verify", &opened.to_string()]);
    assert_eq!(verified["verified"], true, "{verified}");
    assert!(
        verified.to_string().contains(HOST_NAME),
        "the host's signed view names it: {verified}"
    );
    // The holder's bytes, played as they are, are nothing like what they carry (the member's
    // key opens them).
    let dan_home = earshot_node::home::Home::open(dan.path()).expect("dan's data");
    let key = dan_home
        .recordings()
        .key(&opened, dan_home.identity().signing_key())
        .expect("read")
        .expect("dan keeps the key");
    let keys = dan_home
        .recordings()
        .keychain(&opened, &key)
        .expect("the keys");
    drop(dan_home);
    assert!(
        held_frames.len() >= 250,
        "{} frames held",
        held_frames.len()
    );
    assert_sealed_speech("the holder's frames", &speech, &held_frames, &keys);
    let shown = dan.json(&["recordings", "show", &opened.to_string()]);
    assert!(shown.to_string().contains("Secret minutes"), "{shown}");

    host.say("/end");
    assert_eq!(host.exit_code(), 0);
    assert_eq!(joe_live.exit_code(), 0);
    // The host's own copy opens with the key it keeps sealed to itself.
    let own = ana.join("own.wav");
    let exported = ana.run(&[
        "recordings",
        "export",
        &recording.to_string(),
        own.to_str().expect("utf-8 path"),
    ]);
    assert!(
        exported.status.success(),
        "{}",
        crate::harness::stderr(&exported)
    );
    hear(&speech, &read_wav(&own)).assert_only_speech("the host's own recording", 0.9);
    // At rest, the host's and the member's metadata hold no title and no name: they open from
    // the recording with the key each keeps sealed to itself.
    for (who, home, id) in [("ana", &ana, recording), ("dan", &dan, opened)] {
        let data = earshot_node::home::Home::open(home.path()).expect("the data directory");
        let stored = data.recordings().get(&id).expect("read").expect("kept");
        assert!(
            stored.title.is_empty(),
            "{who}: the title in the clear at rest"
        );
        assert!(
            stored.speakers.values().all(|s| s.name.is_empty()),
            "{who}: names in the clear at rest"
        );
        drop(data);
        let shown = home.json(&["recordings", "show", &id.to_string()]);
        assert!(
            shown.to_string().contains("Secret minutes"),
            "{who}: {shown}"
        );
    }
}

/// Someone who learnt a private room's id (a forwarded link, a removed member) follows the
/// topic a room's id names: nothing is said there. Someone who also learnt the private topic's
/// name (a member removed from the stage knows it) reads sealed bytes: no chat line in them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outsider_who_knows_the_room_id_or_its_topic_reads_no_chat() {
    use crate::net::{TestNode, grant, invite};
    use earshot_protocol::{Audience, ControlBody, Role, Visibility};

    let mut host = TestNode::start("host").await;
    let room = host.host("Secret", Visibility::Private).await;
    let sam = TestNode::start("sam").await;
    let link = invite(&host, &room, grant(Role::Speaker, Audience::Bearer, 0));
    sam.node
        .join(link, "sam")
        .await
        .expect("sam joins the stage");
    let eve = TestNode::start("eve").await;
    eve.node
        .dial(
            host.node.peer_id(),
            host.node.listen_addrs().await.expect("addrs"),
        )
        .await
        .expect("eve reaches the host");
    let mut by_id = eve
        .node
        .eavesdrop(earshot_protocol::topic::room(&room.id))
        .await
        .expect("eve follows the room id's topic");
    let private = Secret::topic_of(&host.signing, &room.id).topic_name();
    let mut by_name = eve
        .node
        .eavesdrop(private)
        .await
        .expect("eve follows the private topic");

    // Until eve has read something on the private topic (a heartbeat, a line), sam speaks.
    let secret_line = "the vault code is 4-8-15-16-23-42";
    let mut heard: Vec<Vec<u8>> = Vec::new();
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    let mut said = 0;
    while heard.len() < 3 {
        sam.node
            .act(
                room.id,
                ControlBody::Chat {
                    text: format!("{secret_line} ({said})"),
                },
            )
            .await
            .expect("sam chats");
        host.wait_for(
            "sam's line",
            |e| matches!(e, Event::Chat { text, .. } if *text == format!("{secret_line} ({said})")),
        )
        .await;
        said += 1;
        match tokio::time::timeout_at(deadline, by_name.recv()).await {
            Ok(Some(message)) => heard.push(message),
            Ok(None) => panic!("eve's node stopped"),
            Err(_) => panic!("eve read nothing on the private topic in 30 s ({said} lines said)"),
        }
        while let Ok(message) = by_name.try_recv() {
            heard.push(message);
        }
    }
    let mut outside = Vec::new();
    while let Ok(message) = by_id.try_recv() {
        outside.push(message);
    }
    eprintln!(
        "sam said {said} lines: eve read {} sealed messages on the private topic, {} on the \
         room id's",
        heard.len(),
        outside.len()
    );
    assert!(
        outside.is_empty(),
        "something was said on the room id's topic"
    );
    for message in &heard {
        assert!(
            !message
                .windows(secret_line.len())
                .any(|w| w == secret_line.as_bytes()),
            "a chat line in the clear on the private topic"
        );
        assert!(
            earshot_protocol::private::Sealed::decode(message).is_ok(),
            "not a sealed message"
        );
    }
}
