//! An invite link as a person pastes it.
#![no_main]
use earshot_protocol::InviteLink;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data)
        && let Ok(link) = InviteLink::decode(text)
    {
        assert!(InviteLink::decode(&link.to_string()).is_ok());
    }
});
