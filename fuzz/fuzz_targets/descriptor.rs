//! A signed room descriptor (in links, snapshots, announcements, and the host's own store).
#![no_main]
use earshot_protocol::RoomDescriptor;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = RoomDescriptor::decode_verified(data);
});
