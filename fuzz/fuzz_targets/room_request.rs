//! A request on the room protocol, as a stranger sends it.
#![no_main]
use earshot_protocol::snapshot::RoomRequest;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(request) = RoomRequest::decode(data) {
        assert_eq!(RoomRequest::decode(&request.encode()).ok(), Some(request));
    }
});
