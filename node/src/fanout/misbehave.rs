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
}

/// Children a turning relay gathers before it turns.
pub const TURN_AT_CHILDREN: usize = 2;

impl Misbehave {
    pub const ALL: [(&'static str, Misbehave); 10] = [
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
            Misbehave::Impersonate | Misbehave::ClaimCapacity | Misbehave::UnassignedStreams => {
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
