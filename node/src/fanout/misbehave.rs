//! An adversary to test against: a node told to misbehave (`earshot join --misbehave KIND`, a
//! hidden flag) does to its children, its host or its parent what a malicious peer would, so
//! tests run a real attacker in a real tree. Nothing here runs unless asked for.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use earshot_protocol::frame::{AudioFrame, SpeakerId};

use super::Outgoing;

/// What to do wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Misbehave {
    /// Relay every frame with its payload changed (a tone of its own in place of the voice).
    Alter,
    /// Relay everything, and frames of its own under a stage member's id between them.
    Inject,
    /// Relay frames from three seconds ago instead of the room's (authentic, but stale).
    Replay,
    /// Relay frames two at a time in the wrong order (harmless: the jitter buffer reorders).
    Reorder,
    /// Relay only keep-alives (and the host's beacons): children hear nothing.
    Withhold,
    /// On stage, send frames under the host's speaker id.
    Impersonate,
    /// Report room for 65,535 children to the parent.
    ClaimCapacity,
    /// Relay everything, and a flood of tiny frames under ever new speaker ids.
    FloodIds,
    /// Open listen streams to the host with no ticket, two hundred of them.
    UnassignedStreams,
    /// Relay honestly until it feeds [`TURN_AT_CHILDREN`] children, then alter every frame (a
    /// relay that gathers listeners before it turns).
    Turn,
    /// Relay everything; pass each keys message of a private room on [`KEYS_REPLAYED`] times
    /// more, and after it a ratchet to the next epoch signed with a key of its own.
    ForgeKeys,
    /// Open a studio stream to the host and write chunks into it at
    /// [`STUDIO_FLOOD_BYTES_PER_SEC`] for [`STUDIO_FLOOD_FOR`]: its own, validly signed, and
    /// every tenth under the host's speaker id, opening another stream whenever the host closes
    /// one (see [`super::studio`]).
    StudioFlood,
    /// As a child, read the parent's stream at half its pace (a pause of [`SLOW_READ_PAUSE`]
    /// after everything read): the parent sees its beacons read ever later, as if its uplink
    /// could not carry the child (an attacker hoping its parent sheds the others).
    SlowRead,
    /// Relay everything down, and nothing its children say up (their hands and chat never reach
    /// the host through it).
    DropUp,
}

/// What a slow reader waits after each thing it reads (a voice and its proofs and beacons
/// come at about 55 a second: this reads about 25).
pub const SLOW_READ_PAUSE: Duration = Duration::from_millis(40);

/// How long a studio flooder floods.
pub const STUDIO_FLOOD_FOR: Duration = Duration::from_secs(8);
/// How fast a studio flooder writes: 4 MB/s (32 Mbit/s, an attacker's uplink; on one machine an
/// unpaced flooder's own encryption would take the CPU the host under attack needs, which is
/// not what a remote attacker does to it).
pub const STUDIO_FLOOD_BYTES_PER_SEC: f64 = 4_000_000.0;

/// Copies of each keys message a key-forging relay sends besides the one it passes on.
pub const KEYS_REPLAYED: usize = 10;

/// Children a turning relay gathers before it turns.
pub const TURN_AT_CHILDREN: usize = 2;

impl Misbehave {
    pub const ALL: [(&'static str, Misbehave); 14] = [
        ("alter", Misbehave::Alter),
        ("inject", Misbehave::Inject),
        ("replay", Misbehave::Replay),
        ("reorder", Misbehave::Reorder),
        ("withhold", Misbehave::Withhold),
        ("impersonate", Misbehave::Impersonate),
        ("claim-capacity", Misbehave::ClaimCapacity),
        ("flood-ids", Misbehave::FloodIds),
        ("unassigned-streams", Misbehave::UnassignedStreams),
        ("turn", Misbehave::Turn),
        ("forge-keys", Misbehave::ForgeKeys),
        ("studio-flood", Misbehave::StudioFlood),
        ("slow-read", Misbehave::SlowRead),
        ("drop-up", Misbehave::DropUp),
    ];
}

impl std::str::FromStr for Misbehave {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        Self::ALL
            .iter()
            .find(|(name, _)| *name == text)
            .map(|(_, kind)| *kind)
            .ok_or_else(|| {
                let names: Vec<&str> = Self::ALL.iter().map(|(name, _)| *name).collect();
                format!("{text:?} is not one of {}", names.join(", "))
            })
    }
}

impl std::fmt::Display for Misbehave {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let name = Self::ALL
            .iter()
            .find(|(_, kind)| kind == self)
            .map_or("?", |(name, _)| name);
        f.write_str(name)
    }
}

/// How long a replaying relay holds frames back.
const REPLAY_DELAY: Duration = Duration::from_secs(3);
/// Frames of a flood sent per frame relayed.
const FLOOD_PER_FRAME: u32 = 20;

/// A misbehaving relay's treatment of what it sends its children, per room.
#[derive(Debug)]
pub(super) struct Tamper {
    kind: Misbehave,
    /// Frames held back (replay: until three seconds old; reorder: one at a time).
    held: VecDeque<(Instant, Arc<Vec<u8>>)>,
    counter: u32,
    /// A turning relay has turned.
    turned: bool,
}

impl Tamper {
    pub fn new(kind: Misbehave) -> Self {
        Self {
            kind,
            held: VecDeque::new(),
            counter: 0,
            turned: false,
        }
    }

    /// What goes to the `children` instead of `out`.
    pub fn outgoing(&mut self, out: Outgoing, children: usize) -> Vec<Outgoing> {
        if self.kind == Misbehave::Turn && !self.turned {
            if children < TURN_AT_CHILDREN {
                return vec![out];
            }
            tracing::warn!(children, "misbehaving: turning on the children gathered");
            self.turned = true;
        }
        let Outgoing::Audio(bytes) = &out else {
            return match (self.kind, &out) {
                (Misbehave::ForgeKeys, Outgoing::Control(bytes)) => forged_keys(bytes).map_or_else(
                    || vec![out.clone()],
                    |mut more| {
                        more.insert(0, out.clone());
                        more
                    },
                ),
                // Proofs of frames it never passed on, or that it changed: dropped (an honest
                // proof would give the forgery away at once; without one it must time out).
                (Misbehave::Withhold | Misbehave::Replay, Outgoing::Proof(_)) => Vec::new(),
                _ => vec![out],
            };
        };
        let Ok(frame) = AudioFrame::decode(bytes) else {
            return vec![out];
        };
        self.counter = self.counter.wrapping_add(1);
        match self.kind {
            Misbehave::Alter | Misbehave::Turn => vec![audio(&AudioFrame {
                payload: tone_payload(frame.payload.len(), self.counter),
                ..frame
            })],
            Misbehave::Inject => vec![
                out,
                audio(&AudioFrame {
                    seq: frame.seq.wrapping_add(1_000_000),
                    timestamp: frame.timestamp.wrapping_add(1_000_000 * 960),
                    payload: tone_payload(frame.payload.len(), self.counter),
                    ..frame
                }),
            ],
            Misbehave::Replay => {
                let now = Instant::now();
                self.held.push_back((now, Arc::clone(bytes)));
                let mut old = Vec::new();
                while let Some((at, _)) = self.held.front() {
                    if now.duration_since(*at) < REPLAY_DELAY {
                        break;
                    }
                    if let Some((_, bytes)) = self.held.pop_front() {
                        old.push(Outgoing::Audio(bytes));
                    }
                }
                old
            }
            Misbehave::Reorder => match self.held.pop_front() {
                Some((_, first)) => vec![out, Outgoing::Audio(first)],
                None => {
                    self.held.push_back((Instant::now(), Arc::clone(bytes)));
                    Vec::new()
                }
            },
            Misbehave::Withhold => Vec::new(),
            Misbehave::FloodIds => {
                let mut all = vec![out];
                for i in 0..FLOOD_PER_FRAME {
                    let id = self
                        .counter
                        .wrapping_mul(FLOOD_PER_FRAME)
                        .wrapping_add(i)
                        .wrapping_mul(0x9E37_79B9);
                    all.push(audio(&AudioFrame {
                        speaker: SpeakerId(id),
                        payload: vec![0xF8],
                        ..frame.clone()
                    }));
                }
                all
            }
            Misbehave::Impersonate
            | Misbehave::ClaimCapacity
            | Misbehave::UnassignedStreams
            | Misbehave::ForgeKeys
            | Misbehave::StudioFlood
            | Misbehave::SlowRead
            | Misbehave::DropUp => {
                vec![out]
            }
        }
    }
}

fn audio(frame: &AudioFrame) -> Outgoing {
    Outgoing::Audio(Arc::new(frame.encode()))
}

/// An Opus payload the decoder takes (a CELT-only 20 ms frame header and noise-like bytes):
/// whatever it decodes to is not the speaker's voice.
fn tone_payload(len: usize, counter: u32) -> Vec<u8> {
    let mut payload = Vec::with_capacity(len.max(2));
    // TOC: config 31 (CELT, fullband, 20 ms), mono, one frame.
    payload.push(0xF8);
    let mut state = counter.wrapping_mul(2_654_435_761).max(1);
    while payload.len() < len.max(2) {
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        payload.push(state as u8);
    }
    payload
}

/// A carrier that keeps everything it passes on (tests: `earshot relay --capture FILE`), to
/// show what a relay of a private room can read: each record is a kind byte
/// ([`CAPTURED_AUDIO`], [`CAPTURED_DOWN`]), a big-endian `u32` length and the bytes as they
/// came (an encoded frame; an encoded control frame from the parent). Written by a thread of
/// its own: the audio never waits for the file.
#[derive(Debug, Clone)]
pub struct Capture {
    records: std::sync::mpsc::SyncSender<(u8, Vec<u8>)>,
}

/// A captured audio frame.
pub const CAPTURED_AUDIO: u8 = 1;
/// A captured control frame from the parent (views, envelopes, keys).
pub const CAPTURED_DOWN: u8 = 2;
/// A captured control frame from a child (reports, actions).
pub const CAPTURED_UP: u8 = 4;
/// An epoch of a private room this node holds: its number (big-endian `u32`) and secret.
pub const CAPTURED_KEYS: u8 = 3;

impl Capture {
    /// Captures into `path` (created, or truncated).
    pub fn to_file(path: &std::path::Path) -> std::io::Result<Self> {
        use std::io::Write;
        let mut file = std::io::BufWriter::new(std::fs::File::create(path)?);
        let (records, incoming) = std::sync::mpsc::sync_channel::<(u8, Vec<u8>)>(4096);
        std::thread::Builder::new()
            .name("capture".into())
            .spawn(move || {
                while let Ok((kind, bytes)) = incoming.recv() {
                    let len = u32::try_from(bytes.len()).unwrap_or(u32::MAX);
                    let written = file
                        .write_all(&[kind])
                        .and_then(|()| file.write_all(&len.to_be_bytes()))
                        .and_then(|()| file.write_all(&bytes))
                        .and_then(|()| file.flush());
                    if written.is_err() {
                        break;
                    }
                }
            })?;
        Ok(Self { records })
    }

    /// Keeps `bytes` (dropped if the writer falls behind).
    pub fn record(&self, kind: u8, bytes: &[u8]) {
        let _ = self.records.try_send((kind, bytes.to_vec()));
    }

    /// Reads a capture back: its records, in order (a record cut short at the end is left out).
    pub fn read(bytes: &[u8]) -> Vec<(u8, Vec<u8>)> {
        let mut records = Vec::new();
        let mut rest = bytes;
        while rest.len() >= 5 {
            let len = u32::from_be_bytes([rest[1], rest[2], rest[3], rest[4]]) as usize;
            let Some(body) = rest.get(5..5 + len) else {
                break;
            };
            records.push((rest[0], body.to_vec()));
            rest = &rest[5 + len..];
        }
        records
    }
}

impl super::Fanout {
    /// Plays the adversary `kind` in every room opened from now on (tests). Once.
    pub fn set_misbehave(&self, kind: Misbehave) {
        let _ = self.misbehave.set(kind);
    }

    /// Keeps everything this node passes on (tests). Once.
    pub fn set_capture(&self, capture: Capture) {
        let _ = self.capture.set(capture);
    }

    /// The adversary this node plays, if any.
    pub fn misbehaving(&self) -> Option<Misbehave> {
        self.misbehave.get().copied()
    }
}

/// After a keys message (encoded `Down`): copies of it, then a ratchet to the next epoch signed
/// by a key of this relay's making. `None`: not a keys message.
fn forged_keys(bytes: &[u8]) -> Option<Vec<Outgoing>> {
    use earshot_protocol::audience::wire::Down;
    use earshot_protocol::private::{Keys, MAX_KEYS_BYTES};
    let Ok(Down::Keys(keys)) = Down::decode(bytes) else {
        return None;
    };
    let real: Keys = earshot_protocol::codec::decode(&keys, MAX_KEYS_BYTES).ok()?;
    let mut out = vec![Outgoing::Control(Arc::new(bytes.to_vec())); KEYS_REPLAYED];
    let mine = ed25519_dalek::SigningKey::from_bytes(&rand::random());
    let forged = Keys::ratchet(real.room, real.epoch.wrapping_add(1), &mine);
    let down = Down::Keys(serde_bytes::ByteBuf::from(forged.encode()));
    out.push(Outgoing::Control(Arc::new(down.encode())));
    tracing::warn!(
        epoch = real.epoch,
        "misbehaving: replaying keys and forging the next"
    );
    Some(out)
}

/// The adversary's report: room for every newcomer there is.
pub(crate) fn claim_capacity(
    report: &mut earshot_protocol::audience::wire::Report,
    me: earshot_protocol::PeerKey,
) {
    for slot in &mut report.free {
        slot.free = u16::MAX;
    }
    if report.free.is_empty() {
        report.free.push(earshot_protocol::audience::wire::Slot {
            key: me,
            addrs: Vec::new(),
            below: 0,
            free: u16::MAX,
        });
    }
}
