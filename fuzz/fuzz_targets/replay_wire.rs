//! A request to a replay server, and a server's answer.
#![no_main]
use earshot_protocol::replay::{ReplayRequest, ReplayResponse};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = ReplayRequest::decode(data);
    let _ = ReplayResponse::decode(data);
});
