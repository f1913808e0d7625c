//! A signed control message from the room's topic.
#![no_main]
use earshot_protocol::Envelope;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = Envelope::decode_verified(data);
});
