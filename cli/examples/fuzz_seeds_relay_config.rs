//! Writes the seed corpus of the relay config's fuzz target (`fuzz/seeds/relay_config/NAME`):
//! config files as `earshot relay --print-config` prints them, so that the fuzzer starts from
//! the commented template with every setting in it.
//!
//! `cargo run -p earshot --example fuzz_seeds_relay_config -- fuzz/seeds`

use std::path::{Path, PathBuf};

use earshot::relay_config::RelayConfig;

fn write(dir: &Path, target: &str, name: &str, bytes: &[u8]) {
    let dir = dir.join(target);
    std::fs::create_dir_all(&dir).unwrap_or_else(|err| panic!("{}: {err}", dir.display()));
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap_or_else(|err| panic!("{}: {err}", path.display()));
}

fn main() {
    let dir: PathBuf = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "fuzz/seeds".into())
        .into();
    // The defaults (`examples/relay.toml`): the settings left unset are commented out.
    let defaults = RelayConfig::default().to_toml();
    // Every setting set, none to its default.
    let every = RelayConfig::parse(
        r#"
        listen = ["/ip6/::/udp/4002/quic-v1", "/dns4/relay.example.org/tcp/443"]
        metrics = "[::1]:9100"
        max_rooms = 2
        max_children_per_room = 3
        upload_kbps = 400
        max_connections = 5
        max_connections_per_peer = 6
        max_reservations = 7
        max_reservations_per_peer = 8
        reservation_duration = "1h 30min"
        max_circuits = 9
        max_circuits_per_peer = 10
        circuit_duration = "2s"
        circuit_bytes = "100 kB"
        new_per_ip_per_minute = 11
        memory_limit = "1536MiB"
        "#,
    )
    .expect("every setting")
    .to_toml();
    for (name, text) in [("defaults", defaults), ("every_setting", every)] {
        RelayConfig::parse(&text).expect("the seed reads back");
        write(&dir, "relay_config", name, text.as_bytes());
    }
}
