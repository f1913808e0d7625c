//! What a parent sends its children and a child its parent on an audio stream's control.
#![no_main]
use earshot_protocol::audience::wire::{Down, Up};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(down) = Down::decode(data) {
        assert!(Down::decode(&down.encode()).is_ok());
    }
    if let Ok(up) = Up::decode(data) {
        assert!(Up::decode(&up.encode()).is_ok());
    }
});
