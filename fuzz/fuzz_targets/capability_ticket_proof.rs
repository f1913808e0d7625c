//! A capability (inside links and envelopes), a tree ticket and a frame proof.
#![no_main]
use earshot_protocol::Capability;
use earshot_protocol::audience::Ticket;
use earshot_protocol::proof::FrameProof;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = Capability::decode(data);
    let _ = Ticket::decode(data);
    let _ = FrameProof::decode(data);
});
