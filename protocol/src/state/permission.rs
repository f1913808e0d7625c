//! Who may do what in a room: each control message against its author's role.

use super::{Rejected, RoomRole, RoomState};
use crate::control::ControlBody;
use crate::id::PeerKey;

impl RoomState {
    pub(super) fn check_permission(
        &self,
        author: PeerKey,
        role: RoomRole,
        body: &ControlBody,
    ) -> Result<(), Rejected> {
        let not_allowed = |action| Rejected::NotAllowed { role, action };
        let on_target = |action: &'static str, target: &PeerKey| -> Result<(), Rejected> {
            let target_role = self.role_of(target).unwrap_or(RoomRole::Listener);
            if role < RoomRole::Moderator {
                return Err(not_allowed(action));
            }
            // The host is untouchable; moderators act on listeners and speakers only.
            if target_role == RoomRole::Host
                || (role == RoomRole::Moderator && target_role >= RoomRole::Moderator)
            {
                return Err(Rejected::NotAllowedOn {
                    role,
                    action,
                    target_role,
                });
            }
            Ok(())
        };
        match body {
            ControlBody::Join { .. }
            | ControlBody::Presence
            | ControlBody::Leave
            | ControlBody::LowerHand
            | ControlBody::Chat { .. }
            | ControlBody::Support { .. }
            | ControlBody::Reaction { .. }
            | ControlBody::TreePosition { .. }
            | ControlBody::Accuse { .. }
            | ControlBody::RecordingConsent { .. }
            | ControlBody::ReplayAvailable { .. } => Ok(()),
            ControlBody::MemberRecording { .. }
                if self.members_may_record || role >= RoomRole::Moderator =>
            {
                Ok(())
            }
            ControlBody::MemberRecording { .. } => Err(not_allowed(
                "record (this room does not let members record)",
            )),
            ControlBody::RaiseHand if role == RoomRole::Host => Err(not_allowed("raise a hand")),
            ControlBody::RaiseHand => Ok(()),
            ControlBody::Promote { target, role: to } => {
                on_target("promote", target)?;
                // Nobody grants more than they hold (a moderator may make moderators, as
                // Clubhouse's do; only the host outranks them).
                if RoomRole::from(*to) > role {
                    return Err(not_allowed("grant a higher role than their own"));
                }
                Ok(())
            }
            // Anyone may step down from the stage.
            ControlBody::Demote { target } if *target == author && role != RoomRole::Host => Ok(()),
            ControlBody::Demote { target } => on_target("demote", target),
            ControlBody::Mute { target } => on_target("mute", target),
            ControlBody::Unmute { target } => on_target("unmute", target),
            ControlBody::Remove { target, .. } => on_target("remove", target),
            ControlBody::RecordingStarted | ControlBody::RecordingStopped => {
                if role >= RoomRole::Moderator {
                    Ok(())
                } else {
                    Err(not_allowed("start or stop recording"))
                }
            }
            ControlBody::SupportReceipt { .. } if role == RoomRole::Host => Ok(()),
            ControlBody::SupportReceipt { .. } => Err(not_allowed("confirm support")),
            ControlBody::RoomEnded if role == RoomRole::Host => Ok(()),
            ControlBody::RoomEnded => Err(not_allowed("end the room")),
        }
    }
}
