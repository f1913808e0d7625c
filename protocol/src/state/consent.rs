//! Recording consent: who has agreed to speak in the recording under way.
//!
//! Everyone in a recorded room is told so; a member on stage (the host aside: it records)
//! speaks in a recording only once it said it agrees
//! ([`ControlBody::RecordingConsent`](crate::control::ControlBody::RecordingConsent)), for that
//! recording: a recording started again asks again.

use super::RoomState;
use crate::id::{PeerKey, Timestamp};

impl RoomState {
    /// When the recording under way started (the host's or a moderator's start stamp); none
    /// while the room is not recorded.
    pub fn recording_since(&self) -> Option<Timestamp> {
        self.recording
            .value
            .then_some(self.recording.stamp.map(|stamp| stamp.at))
            .flatten()
    }

    /// Whether `member` agreed to speak in the recording under way (anyone does while nothing
    /// is recorded; the host always does).
    pub fn consented(&self, member: &PeerKey) -> bool {
        let Some(since) = self.recording_since() else {
            return true;
        };
        *member == self.host
            || self
                .members
                .get(member)
                .is_some_and(|m| m.consented.is_some_and(|at| at >= since))
    }

    /// Whether `member` is on stage in a recording it has not agreed to speak in: its
    /// microphone stays off until it does.
    pub fn needs_consent(&self, member: &PeerKey) -> bool {
        self.role_of(member).is_some_and(|role| role.on_stage()) && !self.consented(member)
    }
}
