//! A replay link as a person pastes it.
#![no_main]
use earshot_protocol::replay::ReplayLink;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data)
        && let Ok(link) = ReplayLink::decode(text)
    {
        assert!(ReplayLink::decode(&link.encode()).is_ok());
    }
});
