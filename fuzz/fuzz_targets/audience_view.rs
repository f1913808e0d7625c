//! The host's view of the audience, and a relayed envelope, as they come down the tree.
#![no_main]
use earshot_protocol::audience::AudienceView;
use earshot_protocol::audience::relayed::Relayed;
use earshot_protocol::{PeerKey, RoomId};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = AudienceView::decode_verified(
        data,
        RoomId([7; 16]),
        &PeerKey::from(&ed25519_dalek::SigningKey::from_bytes(&[9; 32])),
    );
    let _ = Relayed::decode_verified(
        data,
        RoomId([7; 16]),
        &PeerKey::from(&ed25519_dalek::SigningKey::from_bytes(&[9; 32])),
    );
});
