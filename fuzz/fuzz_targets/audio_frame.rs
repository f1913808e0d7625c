//! An audio frame as it arrives on a stream: decoded, it encodes back to the same bytes.
#![no_main]
use earshot_protocol::frame::AudioFrame;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(frame) = AudioFrame::decode(data) {
        assert_eq!(frame.encode(), data);
    }
});
