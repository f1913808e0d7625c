//! A speaker's studio chunk, as a host reads it from a studio stream (or a replay holds it).
#![no_main]
use earshot_protocol::RoomId;
use earshot_protocol::studio::StudioChunk;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(chunk) = StudioChunk::decode(data) {
        let _ = chunk.encode();
        if let Some(frame) = chunk.frames.first() {
            let key = earshot_protocol::PeerKey([frame.level; 32]);
            let _ = chunk.verify(&RoomId([0; 16]), &key);
        }
    }
});
