//! Private rooms in the audio plane: this node's voice sealed before it is signed (so every hop
//! checks the speaker's proof over the ciphertext without reading it), frames opened only for
//! this node's own ears, and at the host, frames under an epoch it no longer holds refused.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use earshot_protocol::RoomId;
use earshot_protocol::frame::{AudioFrame, flags};
use earshot_protocol::private::{Epoch, Ring, frame_epoch_byte};
use parking_lot::Mutex;
use tracing::debug;

use super::Fanout;

/// Each private room's keys at this node (set by the event loop as the rooms machine learns
/// them). Its own lock: never held with the rooms'.
pub(super) type Keyrings = Arc<Mutex<HashMap<RoomId, Keyring>>>;

/// After the room's keys step, this node goes on sealing its voice with the epoch before for
/// this long: the frames that follow the keys down the tree would otherwise reach nodes whose
/// event loop has not taken the keys in yet (a frame or two lost at every step, measured).
/// Within the host's grace for the epochs before a fresh one (1 s).
const SWITCH_AFTER: std::time::Duration = std::time::Duration::from_millis(250);

/// A room's keys, and the epoch this node still seals with for a moment after they stepped.
#[derive(Debug)]
pub(super) struct Keyring {
    ring: Arc<Ring>,
    previous: Option<(Epoch, std::time::Instant)>,
}

impl Fanout {
    /// `room` is private and these are this node's keys for it (a carrier has none).
    pub fn set_keys(&self, room: RoomId, ring: Ring) {
        if let Some(capture) = self.capture.get() {
            for epoch in ring.epochs() {
                let mut record = epoch.n.to_be_bytes().to_vec();
                record.extend_from_slice(epoch.secret().as_bytes());
                capture.record(super::misbehave::CAPTURED_KEYS, &record);
            }
        }
        if let Some(tap) = self.lock().get(&room).and_then(|audio| audio.tap.clone()) {
            tap.record_keys(&ring);
        }
        let mut keyrings = self.keyrings.lock();
        let before = keyrings.get(&room).and_then(|held| {
            let current = held.ring.current()?;
            match &held.previous {
                Some((epoch, until)) if std::time::Instant::now() < *until => {
                    Some((epoch.clone(), *until))
                }
                _ => Some((current.clone(), std::time::Instant::now() + SWITCH_AFTER)),
            }
        });
        let previous = before.filter(|(epoch, _)| {
            ring.current().is_some_and(|now| now.n != epoch.n) && ring.holds(epoch.n as u8)
        });
        keyrings.insert(
            room,
            Keyring {
                ring: Arc::new(ring),
                previous,
            },
        );
    }

    /// This node left private `room`: its keys are gone, and so is anything it would still
    /// send there (a last frame of its voice is dropped, never sent in the clear). The entry
    /// goes with the room's audio.
    pub fn forget_keys(&self, room: &RoomId) {
        if let Some(held) = self.keyrings.lock().get_mut(room) {
            *held = Keyring {
                ring: Arc::new(Ring::default()),
                previous: None,
            };
        }
    }

    /// This node's keys for `room`, if it is private.
    pub fn keys(&self, room: &RoomId) -> Option<Arc<Ring>> {
        self.keyrings
            .lock()
            .get(room)
            .map(|held| Arc::clone(&held.ring))
    }

    /// The epoch this node seals its voice with in `room` now (`None`: a public room;
    /// `Some(None)`: a private room whose keys it does not hold).
    pub(crate) fn sealing_epoch(&self, room: &RoomId) -> Option<Option<Epoch>> {
        let keyrings = self.keyrings.lock();
        let held = keyrings.get(room)?;
        Some(match &held.previous {
            Some((epoch, until)) if std::time::Instant::now() < *until => Some(epoch.clone()),
            _ => held.ring.current().cloned(),
        })
    }

    /// Seals a frame of this node's voice in a private room: `false` if it must not go (a
    /// private room whose keys this node does not hold: never in the clear).
    pub(super) fn seal_own(&self, room: &RoomId, frame: &mut AudioFrame) -> bool {
        let Some(epoch) = self.sealing_epoch(room) else {
            return true;
        };
        let Some(epoch) = epoch else {
            return false;
        };
        match epoch.seal_frame(frame) {
            Ok(()) => true,
            Err(err) => {
                debug!(%err, "could not seal a frame");
                false
            }
        }
    }
}

/// What of a frame heard this node may play: in a private room (`ring`: its keys), the frame
/// opened (nothing if they do not open it, or it came in the clear); elsewhere, the frame as it
/// is (nothing if it is sealed: not for us).
pub(super) fn for_my_ears(
    ring: Option<&Ring>,
    frame: AudioFrame,
    stats: &super::FanoutStats,
) -> Option<AudioFrame> {
    match ring {
        Some(ring) => match ring.open_frame(&frame) {
            Ok(open) => Some(open),
            Err(err) => {
                stats.unopened.fetch_add(1, Ordering::Relaxed);
                debug!(%err, "a frame this node cannot open");
                None
            }
        },
        None => (frame.flags & flags::SEALED == 0).then_some(frame),
    }
}

/// At the host: whether a speaker's frame is sealed under an epoch it still holds (after a
/// removal's grace, a frame under an epoch the removed member holds is not).
pub(super) fn under_held_epoch(
    ring: Option<&Ring>,
    frame: &AudioFrame,
    stats: &super::FanoutStats,
) -> bool {
    let Some(ring) = ring else {
        return true;
    };
    let held = frame_epoch_byte(frame).is_some_and(|low| ring.holds(low));
    if !held {
        stats.unopened.fetch_add(1, Ordering::Relaxed);
    }
    held
}
