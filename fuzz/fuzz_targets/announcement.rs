//! A lobby announcement from the lobby topic or a lobby answer.
#![no_main]
use earshot_protocol::Timestamp;
use earshot_protocol::snapshot::Announcement;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = Announcement::decode_verified(data, Timestamp(1_800_000_000_000));
});
