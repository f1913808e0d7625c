use super::schedule::{OLD_EPOCH_GRACE_MS, RATCHET_EVERY_MS, Schedule};
use super::*;
use crate::frame::SpeakerId;
use crate::id::Timestamp;

fn key(seed: u8) -> ed25519_dalek::SigningKey {
    ed25519_dalek::SigningKey::from_bytes(&[seed; 32])
}

fn room() -> RoomId {
    RoomId([7; 16])
}

fn frame(seq: u32) -> AudioFrame {
    AudioFrame {
        speaker: SpeakerId(0x0102_0304),
        seq,
        timestamp: seq * 960,
        level: 20,
        flags: flags::VOICE,
        payload: b"an opus packet of voice".to_vec(),
        tag: None,
    }
}

fn ring_with(epochs: &[&Epoch]) -> Ring {
    let mut ring = Ring::default();
    for epoch in epochs {
        ring.insert((*epoch).clone());
    }
    ring
}

#[test]
fn a_sealed_frame_opens_for_members_and_for_nobody_else() {
    let epoch = Epoch::new(3, Secret::from_bytes([1; 32]));
    let mut sealed = frame(10);
    epoch.seal_frame(&mut sealed).expect("sealed");
    assert_ne!(sealed.payload, frame(10).payload);
    assert_eq!(
        sealed.payload.len(),
        frame(10).payload.len() + FRAME_OVERHEAD
    );
    // It still travels as a frame: relays decode it.
    let on_the_wire = AudioFrame::decode(&sealed.encode()).expect("a frame");
    let opened = ring_with(&[&epoch])
        .open_frame(&on_the_wire)
        .expect("opens");
    assert_eq!(opened, frame(10));

    let other = Epoch::new(3, Secret::from_bytes([2; 32]));
    assert_eq!(
        ring_with(&[&other]).open_frame(&sealed),
        Err(SealError::BadTag)
    );
    assert_eq!(
        Ring::default().open_frame(&sealed),
        Err(SealError::NoKey(3))
    );
}

#[test]
fn a_relay_that_changes_a_sealed_frame_gets_it_refused() {
    let epoch = Epoch::new(0, Secret::from_bytes([1; 32]));
    let ring = ring_with(&[&epoch]);
    let mut sealed = frame(10);
    epoch.seal_frame(&mut sealed).expect("sealed");
    let mut louder = sealed.clone();
    louder.level = 0;
    assert_eq!(ring.open_frame(&louder), Err(SealError::BadTag));
    let mut flipped = sealed.clone();
    flipped.payload[3] ^= 1;
    assert_eq!(ring.open_frame(&flipped), Err(SealError::BadTag));
    let mut moved = sealed;
    moved.seq += 1;
    assert_eq!(ring.open_frame(&moved), Err(SealError::BadTag));
    assert_eq!(ring.open_frame(&frame(1)), Err(SealError::NotSealed));
}

#[test]
fn a_joiner_given_the_next_epoch_cannot_read_the_one_before() {
    let before = Epoch::new(5, Secret::from_bytes([9; 32]));
    let next = before.ratchet(&room());
    assert_eq!(next.n, 6);
    let mut old = frame(1);
    before.seal_frame(&mut old).expect("sealed");
    let mut new = frame(2);
    next.seal_frame(&mut new).expect("sealed");

    let joiner = ring_with(&[&next]);
    assert!(joiner.open_frame(&old).is_err());
    assert!(joiner.open_frame(&new).is_ok());

    // A member steps forward on its own and reads both.
    let mut member = ring_with(&[&before]);
    assert!(member.ratchet_to(&room(), 6, 0, None));
    assert!(member.open_frame(&old).is_ok());
    assert!(member.open_frame(&new).is_ok());
    // But not across a fresh epoch.
    assert!(!member.ratchet_to(&room(), 8, 7, None));
}

#[test]
fn control_messages_open_with_the_epoch_that_sealed_them() {
    let epoch = Epoch::new(1, Secret::from_bytes([4; 32]));
    let sealed = epoch.seal(&room(), b"Hana: hello", [3; 12]);
    assert!(!sealed.windows(5).any(|w| w == b"hello"));
    let ring = ring_with(&[&epoch]);
    assert_eq!(ring.open(&room(), &sealed).expect("opens"), b"Hana: hello");
    assert!(ring.open(&RoomId([8; 16]), &sealed).is_err());
    assert_eq!(
        Ring::default().open(&room(), &sealed),
        Err(SealError::NoKey(1))
    );
}

#[test]
fn a_fresh_epoch_opens_for_each_member_it_was_sealed_to_and_nobody_else() {
    let host = key(1);
    let members: Vec<ed25519_dalek::SigningKey> = (10..15).map(key).collect();
    let keys_of: Vec<PeerKey> = members.iter().map(PeerKey::from).collect();
    let epoch = Epoch::new(4, Secret::from_bytes([5; 32]));
    let topic = Secret::from_bytes([6; 32]);
    let parts = Keys::fresh(room(), &epoch, &topic, &keys_of, [8; 32], &host);
    assert_eq!(parts.len(), 1);
    let bytes = parts[0].encode();
    let keys = Keys::decode_verified(&bytes, room(), &PeerKey::from(&host)).expect("signed");
    for member in &members {
        let (opened, opened_topic) = keys.open(member).expect("sealed to it");
        assert_eq!(opened, epoch);
        assert_eq!(opened_topic, topic);
    }
    assert_eq!(keys.open(&key(99)), None);
    assert_eq!(keys.open(&host), None);
    // Only the host signs keys.
    assert_eq!(
        Keys::decode_verified(&bytes, room(), &PeerKey::from(&key(2))),
        Err(KeysError::BadSignature)
    );
    let mut forged = keys.clone();
    forged.epoch = 5;
    assert_eq!(
        Keys::decode_verified(&forged.encode(), room(), &PeerKey::from(&host)),
        Err(KeysError::BadSignature)
    );
}

#[test]
fn a_thousand_members_are_sealed_to_in_parts_that_fit_a_message() {
    let host = key(1);
    let members: Vec<PeerKey> = (0..MAX_MEMBERS as u32)
        .map(|i| {
            let mut seed = [0u8; 32];
            seed[..4].copy_from_slice(&i.to_be_bytes());
            PeerKey::from(&ed25519_dalek::SigningKey::from_bytes(&seed))
        })
        .collect();
    let epoch = Epoch::new(1, Secret::from_bytes([5; 32]));
    let parts = Keys::fresh(
        room(),
        &epoch,
        &Secret::from_bytes([6; 32]),
        &members,
        [8; 32],
        &host,
    );
    assert_eq!(parts.len(), MAX_MEMBERS.div_ceil(SEALED_PER_PART));
    for part in &parts {
        let bytes = part.encode();
        assert!(bytes.len() <= MAX_KEYS_BYTES, "{} bytes", bytes.len());
        Keys::decode_verified(&bytes, room(), &PeerKey::from(&host)).expect("valid");
    }
}

fn ms(at: u64) -> Timestamp {
    Timestamp(1_000_000 + at)
}

#[test]
fn the_schedule_ratchets_for_joiners_and_starts_afresh_without_the_removed() {
    let host = key(1);
    let (ana, bo) = (key(20), key(21));
    let mut schedule = Schedule::new(
        room(),
        Secret::from_bytes([1; 32]),
        Secret::from_bytes([2; 32]),
        ms(0),
    );
    // Ana joins a quiet room: she gets the epoch after the first (numbered from the clock's
    // seconds), which the room steps to at once.
    let first = schedule.current().n;
    assert_eq!(first, 1_000);
    let given = schedule
        .admit(PeerKey::from(&ana), (None, None), [3; 32], &host)
        .expect("room");
    let (ana_epoch, _) = given.open(&ana).expect("sealed to Ana");
    assert_eq!(ana_epoch.n, first + 1);
    let step = schedule.tick(ms(0), [4; 32], [5; 32], &host);
    assert_eq!(step.len(), 1);
    assert_eq!(step[0].how, How::Ratchet);
    assert_eq!(schedule.current(), &ana_epoch);
    // Cy joins half a second later: he waits for the next step, a second after the last.
    let cy = key(22);
    let given = schedule
        .admit(PeerKey::from(&cy), (None, None), [3; 32], &host)
        .expect("room");
    let (cy_epoch, _) = given.open(&cy).expect("sealed to Cy");
    assert_eq!(schedule.next(), Some(&cy_epoch));
    assert!(schedule.tick(ms(500), [4; 32], [5; 32], &host).is_empty());
    let step = schedule.tick(ms(RATCHET_EVERY_MS), [4; 32], [5; 32], &host);
    assert_eq!(step.len(), 1);
    assert_eq!(schedule.current(), &cy_epoch);

    // Bo joins with a capability for an hour; Ana is removed.
    let given = schedule
        .admit(
            PeerKey::from(&bo),
            (Some(ms(3_600_000)), None),
            [6; 32],
            &host,
        )
        .expect("room");
    let (bo_epoch, _) = given.open(&bo).expect("sealed to Bo");
    assert!(schedule.remove(&PeerKey::from(&ana)));
    let fresh = schedule.tick(ms(1_100), [7; 32], [8; 32], &host);
    assert_eq!(fresh.len(), 1);
    let bo_fresh = fresh
        .iter()
        .find_map(|part| part.open(&bo))
        .expect("Bo is still a member")
        .0;
    assert!(bo_fresh.n > bo_epoch.n);
    assert!(
        fresh.iter().all(|part| part.open(&ana).is_none()),
        "Ana was removed"
    );
    assert_eq!(schedule.current(), &bo_fresh);

    // Frames under Ana's epochs pass for a grace period, then are refused.
    let old = ana_epoch.n as u8;
    assert!(schedule.admits_frame(old, ms(1_100 + OLD_EPOCH_GRACE_MS - 1)));
    assert!(!schedule.admits_frame(old, ms(1_100 + OLD_EPOCH_GRACE_MS)));
    assert!(schedule.admits_frame(bo_fresh.n as u8, ms(5_000)));

    // Bo's capability runs out: the room starts afresh without him.
    let fresh = schedule.tick(ms(3_600_000), [9; 32], [10; 32], &host);
    assert_eq!(fresh.len(), 1);
    assert_eq!(fresh[0].open(&bo), None);
    assert!(fresh[0].open(&cy).is_some(), "Cy is still a member");
    assert_eq!(schedule.members(), 1);
}

#[test]
fn a_full_private_room_admits_nobody_new() {
    let host = key(1);
    let mut schedule = Schedule::new(
        room(),
        Secret::from_bytes([1; 32]),
        Secret::from_bytes([2; 32]),
        ms(0),
    );
    for i in 0..MAX_MEMBERS as u32 {
        let mut bytes = [0u8; 32];
        bytes[..4].copy_from_slice(&i.to_be_bytes());
        // Any 32 bytes stand for a key here: the schedule seals only when asked.
        let member = PeerKey::from(&ed25519_dalek::SigningKey::from_bytes(&bytes));
        if i + 1 == MAX_MEMBERS as u32 {
            schedule
                .admit(member, (None, None), [3; 32], &host)
                .expect("room");
        } else {
            assert!(schedule.add_unsealed(member));
        }
    }
    assert_eq!(
        schedule.admit(PeerKey::from(&key(200)), (None, None), [3; 32], &host),
        Err(schedule::Refused::Full)
    );
}

#[test]
fn the_topic_name_is_the_topic_secrets_not_the_rooms() {
    let host = key(1);
    let topic = Secret::topic_of(&host, &room());
    assert_eq!(topic, Secret::topic_of(&host, &room()));
    assert_ne!(topic, Secret::topic_of(&key(2), &room()));
    let name = topic.topic_name();
    assert!(!name.contains(&room().to_string()));
    assert!(name.starts_with("earshot/private/"));
}

#[test]
fn the_host_opens_what_a_joiner_seals_before_the_room_steps_and_never_seals_with_it() {
    let now = Epoch::new(4, Secret::from_bytes([1; 32]));
    let next = now.ratchet(&room());
    let mut host = ring_with(&[&now]);
    host.expect(next.clone());
    let mut joiners = frame(3);
    next.seal_frame(&mut joiners).expect("sealed");
    assert!(host.open_frame(&joiners).is_ok());
    assert!(host.holds(next.n as u8));
    assert_eq!(
        host.current(),
        Some(&now),
        "the host still seals with the room's epoch"
    );
    // Once the room steps, the promise is kept as an epoch like any.
    assert!(host.insert(next.clone()));
    assert_eq!(host.current(), Some(&next));
    assert!(host.open_frame(&joiners).is_ok());
}

#[test]
fn a_kept_schedule_goes_on_where_it_was_and_keeps_the_removed_out() {
    let host = key(1);
    let (ann, bo, cy) = (key(2), key(3), key(4));
    let mut schedule = Schedule::new(
        room(),
        Secret::from_bytes([1; 32]),
        Secret::from_bytes([2; 32]),
        ms(0),
    );
    let cap = |n: u8| Some(earshot_cap(n));
    for (member, n) in [(&ann, 1), (&bo, 2), (&cy, 3)] {
        schedule
            .admit(PeerKey::from(member), (None, cap(n)), [n; 32], &host)
            .expect("admitted");
    }
    schedule.tick(ms(1_000), [5; 32], [6; 32], &host);
    schedule.remove(&PeerKey::from(&bo));
    schedule.revoke(&[earshot_cap(3)].into_iter().collect());
    schedule.tick(ms(1_100), [7; 32], [8; 32], &host);

    let kept = schedule.save(&host, [9; 12]);
    // Another key (a copy of the database without the host's identity) opens nothing; nor
    // does one byte changed.
    assert!(Schedule::restore(&kept, room(), &key(9)).is_err());
    let mut altered = kept.clone();
    let last = altered.len() - 1;
    altered[last] ^= 1;
    assert!(Schedule::restore(&altered, room(), &host).is_err());
    assert!(Schedule::restore(&kept, RoomId([8; 16]), &host).is_err());

    let mut restored = Schedule::restore(&kept, room(), &host).expect("restored");
    assert_eq!(restored.current(), schedule.current());
    assert_eq!(restored.fresh_epoch(), schedule.fresh_epoch());
    assert_eq!(restored.members(), 1);
    assert!(restored.is_member(&PeerKey::from(&ann)));
    // Ann, still a member, is given the epoch again when she asks.
    let resealed = restored
        .reseal(&PeerKey::from(&ann), [10; 32], &host)
        .expect("a member");
    assert_eq!(
        resealed.open(&ann).map(|(epoch, _)| epoch),
        Some(schedule.current().clone())
    );
    // Bo (removed) and Cy (her link revoked with a removal) stay out after the restart.
    assert_eq!(
        restored.admit(PeerKey::from(&bo), (None, cap(4)), [11; 32], &host),
        Err(schedule::Refused::Removed)
    );
    assert_eq!(
        restored.admit(PeerKey::from(&cy), (None, cap(3)), [11; 32], &host),
        Err(schedule::Refused::Removed)
    );
    assert!(
        restored
            .reseal(&PeerKey::from(&bo), [12; 32], &host)
            .is_none()
    );
}

fn earshot_cap(n: u8) -> crate::id::CapId {
    crate::id::CapId([n; 16])
}

#[test]
fn a_member_steps_forward_only_to_the_hosts_epoch_and_takes_the_hosts_word_over_its_own() {
    let mine = Epoch::new(5, Secret::from_bytes([1; 32]));
    let hosts = mine.ratchet(&room()).ratchet(&room());
    let mut ring = ring_with(&[&mine]);
    // The host's view says epoch 7 with another secret's check (it started its schedule
    // again): the member does not step to a secret of its own making.
    let other = Epoch::new(7, Secret::from_bytes([9; 32]));
    assert!(!ring.ratchet_to(&room(), 7, 0, Some(other.check())));
    assert_eq!(ring.current(), Some(&mine));
    assert!(ring.ratchet_to(&room(), 7, 0, Some(hosts.check())));
    assert_eq!(ring.current(), Some(&hosts));
    // The host seals it another secret under a number it holds: the host's word stands.
    assert!(ring.correct(other.clone()));
    assert_eq!(ring.current(), Some(&other));
    assert!(!ring.correct(other), "the same again changes nothing");
}
