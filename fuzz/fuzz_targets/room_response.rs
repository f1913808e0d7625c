//! An answer on the room protocol, as a peer that lies sends it.
#![no_main]
use earshot_protocol::snapshot::RoomResponse;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(response) = RoomResponse::decode(data) {
        assert_eq!(
            RoomResponse::decode(&response.encode()).ok(),
            Some(response)
        );
    }
});
