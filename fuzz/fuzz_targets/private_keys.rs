//! A private room's keys, sealed messages and sealed actions, as relays pass them on.
#![no_main]
use earshot_protocol::private::{Keys, Ring, Sealed, SealedAct};
use earshot_protocol::{PeerKey, RoomId};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = Keys::decode_verified(
        data,
        RoomId([7; 16]),
        &PeerKey::from(&ed25519_dalek::SigningKey::from_bytes(&[9; 32])),
    );
    let _ = Sealed::decode(data);
    let _ = SealedAct::decode(data);
    let _ = Ring::default().open(&RoomId([7; 16]), data);
});
