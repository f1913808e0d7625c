//! An Ogg Opus file (`recording::ogg::read`: every export is read back with it). Read as it is,
//! then again with every page's checksum made right, so that mutations get past the CRCs to the
//! rules of pages, packets and granule positions.
#![no_main]
use earshot_node::recording::ogg::{self, crc32, packet_samples};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = ogg::read(data);
    let mut fixed = data.to_vec();
    fix_crcs(&mut fixed);
    if let Ok(file) = ogg::read(&fixed) {
        assert!(file.packets.iter().all(|p| packet_samples(p).is_some()));
        assert!(file.final_granule >= u64::from(file.head.pre_skip));
    }
});

/// Sets the CRC of every page found one after another from the start, as far as they go.
fn fix_crcs(bytes: &mut [u8]) {
    let mut at = 0;
    while let Some(rest) = bytes.get_mut(at..) {
        if rest.len() < 27 || !rest.starts_with(b"OggS") {
            return;
        }
        let segments = usize::from(rest[26]);
        let Some(lacing) = rest.get(27..27 + segments) else {
            return;
        };
        let len = 27 + segments + lacing.iter().map(|&len| usize::from(len)).sum::<usize>();
        let Some(page) = rest.get_mut(..len) else {
            return;
        };
        page[22..26].fill(0);
        let crc = crc32(page);
        page[22..26].copy_from_slice(&crc.to_le_bytes());
        at += len;
    }
}
