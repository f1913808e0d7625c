//! What someone said, as the audience hears it from the host: chat, support, the host's
//! receipts for support.

use earshot_protocol::envelope::Envelope;
use earshot_protocol::{ControlBody, RoomId};

use super::joined::Joined;
use crate::event::Event;

/// The event for what someone said that the host relayed to the audience: chat, support, and
/// the host's receipts for support (a receipt is the host's word alone).
pub(super) fn said(joined: &Joined, room: RoomId, envelope: &Envelope) -> Option<Event> {
    match &envelope.body {
        ControlBody::Chat { text } => Some(Event::Chat {
            room,
            from: envelope.author,
            name: joined.name_of(&envelope.author),
            text: text.clone(),
            at: envelope.sent_at,
        }),
        ControlBody::Support { amount, unit, note } => Some(Event::Support {
            room,
            from: envelope.author,
            name: joined.name_of(&envelope.author),
            amount: *amount,
            unit: unit.clone(),
            note: note.clone(),
            id: crate::event::hex(&envelope.digest()),
            envelope: envelope.encode(),
        }),
        ControlBody::SupportReceipt { supporter, support }
            if envelope.author == joined.descriptor.host =>
        {
            Some(Event::SupportConfirmed {
                room,
                supporter: *supporter,
                name: joined.name_of(supporter),
                id: crate::event::hex(support),
                envelope: envelope.encode(),
            })
        }
        _ => None,
    }
}
