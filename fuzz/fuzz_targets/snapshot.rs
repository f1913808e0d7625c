//! A joiner's snapshot, as a host (or someone posing as it) sends it.
#![no_main]
use earshot_protocol::snapshot::RoomSnapshot;
use earshot_protocol::{PeerKey, RoomId};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = RoomSnapshot::decode_verified(
        data,
        RoomId([7; 16]),
        PeerKey::from(&ed25519_dalek::SigningKey::from_bytes(&[9; 32])),
    );
});
