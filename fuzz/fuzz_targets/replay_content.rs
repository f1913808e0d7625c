//! A replay's content (frames, proofs, sealed records) as chunks from a holder: the first byte
//! picks the format and where the bytes are cut into chunks.
#![no_main]
use earshot_protocol::replay::{ContentFormat, ContentReader};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&first, rest)) = data.split_first() else {
        return;
    };
    let format = if first & 1 == 0 {
        ContentFormat::Authenticated
    } else {
        ContentFormat::Unauthenticated
    };
    let cut = usize::from(first >> 1).min(rest.len());
    let mut reader = ContentReader::new(format);
    if reader.push(&rest[..cut]).is_ok() && reader.push(&rest[cut..]).is_ok() {
        let _ = reader.finish();
    }
});
