//! A replay manifest as a holder serves it (or as read back from disk).
#![no_main]
use earshot_protocol::replay::{ManifestId, ReplayManifest};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = ReplayManifest::decode_verified(data);
    let _ = ReplayManifest::decode_for(data, ManifestId([1; 16]), None);
});
