//! The community relay's config file, as an operator writes it (`earshot relay --config`):
//! checked, it prints (`--print-config`) as a file that reads back as the same config.
#![no_main]
use earshot::relay_config::RelayConfig;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data)
        && let Ok(config) = RelayConfig::parse(text)
    {
        let printed = config.to_toml();
        let again = RelayConfig::parse(&printed).unwrap_or_else(|err| {
            panic!("the printed config does not read back: {err}\n{printed}")
        });
        assert_eq!(again, config, "{printed}");
    }
});
