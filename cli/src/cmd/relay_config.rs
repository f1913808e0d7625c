//! The configuration of `earshot relay`, the community relay daemon: a TOML file, every
//! setting optional with a default suited to a small server carrying live audio.
//!
//! The file is read into `RelayFile` (serde, raw strings and integers, unknown keys refused)
//! and checked once into [`RelayConfig`] (typed values: multiaddrs, socket addresses, non-zero
//! limits, durations, byte counts), so every error names the setting and the value it refuses.
//! [`RelayConfig::to_toml`] prints the config in effect with a comment for every setting
//! (`earshot relay --print-config`); `examples/relay.toml` is that output for the defaults.
//!
//! rust-libp2p's circuit relay defaults (2 minutes and 128 KiB per circuit) would cut a
//! 32 kbit/s room after about 30 seconds: the defaults here let a circuit live for hours.

use std::fmt::Write as _;
use std::io;
use std::net::{AddrParseError, SocketAddr};
use std::num::{NonZeroU16, NonZeroU32, NonZeroU64, NonZeroUsize};
use std::path::{Path, PathBuf};
use std::time::Duration;

use multiaddr::Multiaddr;
use serde::Deserialize;

/// Upload one child of the relay tree takes, in kbit/s: 32 kbit/s of Opus plus framing and
/// transport overhead. `upload_kbps / KBPS_PER_CHILD` caps the children across all rooms.
pub const KBPS_PER_CHILD: u64 = 40;

/// The relay's settings, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelayConfig {
    /// Addresses to listen on. Default: QUIC and TCP on every IPv4 interface, port 4001.
    pub listen: Vec<Multiaddr>,
    /// Where to serve Prometheus metrics (`GET /metrics`). Default: not served.
    pub metrics: Option<SocketAddr>,
    /// Rooms whose relay tree this relay joins at once. Default: 16.
    pub max_rooms: NonZeroUsize,
    /// Children fed in one room; past this a joiner is redirected elsewhere in the tree.
    /// Default: 100.
    pub max_children_per_room: NonZeroU16,
    /// Total upload budget for audio fan-out, in kbit/s (at least [`KBPS_PER_CHILD`]); it also
    /// caps the children across all rooms (see [`RelayConfig::max_children_total`]).
    /// Default: 20 000.
    pub upload_kbps: NonZeroU64,
    /// Connections open at once, all peers together. Default: 1024.
    pub max_connections: NonZeroU32,
    /// Connections open at once with one peer. Default: 4.
    pub max_connections_per_peer: NonZeroU32,
    /// Circuit relay reservations held at once (peers reachable through this relay).
    /// Default: 512.
    pub max_reservations: NonZeroUsize,
    /// Reservations one peer may hold. Default: 4.
    pub max_reservations_per_peer: NonZeroUsize,
    /// How long a reservation lasts before the peer must renew it. Default: 1 hour.
    pub reservation_duration: Duration,
    /// Relayed connections (circuits) open at once. Default: 256.
    pub max_circuits: NonZeroUsize,
    /// Circuits one peer may have open at once. Default: 8.
    pub max_circuits_per_peer: NonZeroUsize,
    /// How long one circuit may last. Default: 4 hours.
    pub circuit_duration: Duration,
    /// Bytes one circuit may carry (in each direction). Default: 1 GiB.
    pub circuit_bytes: NonZeroU64,
    /// New reservations, and new circuits, one IP address may ask for per minute. Default: 600.
    pub new_per_ip_per_minute: NonZeroU32,
    /// Past this much memory in use by the process, new connections are refused.
    /// Default: no limit.
    pub memory_limit: Option<NonZeroU64>,
}

/// Why the relay config cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read the relay config {path}: {source}")]
    Read { path: PathBuf, source: io::Error },
    /// Not TOML, an unknown key, or a value of the wrong type (toml's message shows the line).
    #[error(transparent)]
    Syntax(toml::de::Error),
    #[error("{setting} = {value}: {problem}")]
    Invalid {
        /// The setting's key in the file.
        setting: &'static str,
        /// The value refused, as written in TOML.
        value: String,
        problem: Problem,
    },
}

/// What is wrong with one setting's value.
#[derive(Debug, thiserror::Error)]
pub enum Problem {
    #[error("must be at least 1")]
    Zero,
    #[error("too large")]
    TooLarge,
    #[error("no address to listen on")]
    NoAddress,
    #[error("not a multiaddr ({0})")]
    Multiaddr(multiaddr::Error),
    #[error("not an IP address and port such as 127.0.0.1:9464 ({0})")]
    SocketAddr(AddrParseError),
    #[error("not a duration such as \"4h\" or \"90min\" ({0})")]
    Duration(humantime::DurationError),
    #[error("must be longer than zero")]
    ZeroDuration,
    #[error("not a size such as \"512MiB\" ({0})")]
    Size(SizeError),
    #[error("less than the {KBPS_PER_CHILD} kbit/s that one child takes")]
    BelowOneChild,
}

/// Why a size does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SizeError {
    #[error("it does not start with a whole number")]
    NoNumber,
    #[error("unknown unit {unit:?}: use B, kB, KiB, MB, MiB, GB, GiB, TB or TiB")]
    UnknownUnit { unit: String },
    #[error("more than 2^64 bytes")]
    Overflow,
}

/// The file as written: every key optional, values unchecked. Unknown keys are refused, so a
/// misspelt setting is an error rather than silently the default.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RelayFile {
    listen: Option<Vec<String>>,
    metrics: Option<String>,
    max_rooms: Option<u64>,
    max_children_per_room: Option<u64>,
    upload_kbps: Option<u64>,
    max_connections: Option<u64>,
    max_connections_per_peer: Option<u64>,
    max_reservations: Option<u64>,
    max_reservations_per_peer: Option<u64>,
    reservation_duration: Option<String>,
    max_circuits: Option<u64>,
    max_circuits_per_peer: Option<u64>,
    circuit_duration: Option<String>,
    circuit_bytes: Option<String>,
    new_per_ip_per_minute: Option<u64>,
    memory_limit: Option<String>,
}

/// The default listen addresses.
const DEFAULT_LISTEN: [&str; 2] = ["/ip4/0.0.0.0/udp/4001/quic-v1", "/ip4/0.0.0.0/tcp/4001"];
/// An address to show, commented out, when metrics are off.
const EXAMPLE_METRICS: &str = "127.0.0.1:9464";
/// An address to show, commented out, when there is no memory limit.
const EXAMPLE_MEMORY_LIMIT: &str = "512MiB";
const DEFAULT_MAX_ROOMS: u64 = 16;
const DEFAULT_MAX_CHILDREN_PER_ROOM: u64 = 100;
const DEFAULT_UPLOAD_KBPS: u64 = 20_000;
const DEFAULT_MAX_CONNECTIONS: u64 = 1024;
const DEFAULT_MAX_CONNECTIONS_PER_PEER: u64 = 4;
const DEFAULT_MAX_RESERVATIONS: u64 = 512;
const DEFAULT_MAX_RESERVATIONS_PER_PEER: u64 = 4;
const DEFAULT_RESERVATION_DURATION: Duration = Duration::from_secs(60 * 60);
const DEFAULT_MAX_CIRCUITS: u64 = 256;
const DEFAULT_MAX_CIRCUITS_PER_PEER: u64 = 8;
const DEFAULT_CIRCUIT_DURATION: Duration = Duration::from_secs(4 * 60 * 60);
const DEFAULT_CIRCUIT_BYTES: u64 = 1 << 30;
const DEFAULT_NEW_PER_IP_PER_MINUTE: u64 = 600;

/// Size units, largest first within each family; binary units are preferred when printing.
const SIZE_UNITS: [(&str, u64); 9] = [
    ("TiB", 1 << 40),
    ("GiB", 1 << 30),
    ("MiB", 1 << 20),
    ("KiB", 1 << 10),
    ("TB", 1_000_000_000_000),
    ("GB", 1_000_000_000),
    ("MB", 1_000_000),
    ("kB", 1_000),
    ("B", 1),
];

/// Reads the relay config at `path`, or the defaults when there is none. A path given but
/// missing is an error.
pub fn load(path: Option<&Path>) -> Result<RelayConfig, ConfigError> {
    let Some(path) = path else {
        return Ok(RelayConfig::default());
    };
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    RelayConfig::parse(&text)
}

impl Default for RelayConfig {
    fn default() -> Self {
        Self::from_file(RelayFile::default()).expect("the defaults are valid")
    }
}

impl RelayConfig {
    /// Parses and checks a config file's text.
    pub fn parse(text: &str) -> Result<Self, ConfigError> {
        let file: RelayFile = toml::from_str(text).map_err(ConfigError::Syntax)?;
        Self::from_file(file)
    }

    /// Checks the raw settings, filling in defaults for the ones left out.
    fn from_file(file: RelayFile) -> Result<Self, ConfigError> {
        let listen = match file.listen {
            None => DEFAULT_LISTEN.iter().map(|a| a.to_string()).collect(),
            Some(listen) => listen,
        };
        if listen.is_empty() {
            return Err(invalid("listen", "[]".into(), Problem::NoAddress));
        }
        let listen = listen
            .iter()
            .map(|addr| {
                addr.parse::<Multiaddr>()
                    .map_err(|err| invalid("listen", quote(addr), Problem::Multiaddr(err)))
            })
            .collect::<Result<_, _>>()?;
        let metrics = file
            .metrics
            .map(|addr| {
                addr.parse::<SocketAddr>()
                    .map_err(|err| invalid("metrics", quote(&addr), Problem::SocketAddr(err)))
            })
            .transpose()?;
        let upload_kbps: NonZeroU64 = limit("upload_kbps", file.upload_kbps, DEFAULT_UPLOAD_KBPS)?;
        if upload_kbps.get() < KBPS_PER_CHILD {
            let value = upload_kbps.to_string();
            return Err(invalid("upload_kbps", value, Problem::BelowOneChild));
        }
        let memory_limit = file
            .memory_limit
            .map(|text| size("memory_limit", &text))
            .transpose()?;
        Ok(Self {
            listen,
            metrics,
            max_rooms: limit("max_rooms", file.max_rooms, DEFAULT_MAX_ROOMS)?,
            max_children_per_room: limit(
                "max_children_per_room",
                file.max_children_per_room,
                DEFAULT_MAX_CHILDREN_PER_ROOM,
            )?,
            upload_kbps,
            max_connections: limit(
                "max_connections",
                file.max_connections,
                DEFAULT_MAX_CONNECTIONS,
            )?,
            max_connections_per_peer: limit(
                "max_connections_per_peer",
                file.max_connections_per_peer,
                DEFAULT_MAX_CONNECTIONS_PER_PEER,
            )?,
            max_reservations: limit(
                "max_reservations",
                file.max_reservations,
                DEFAULT_MAX_RESERVATIONS,
            )?,
            max_reservations_per_peer: limit(
                "max_reservations_per_peer",
                file.max_reservations_per_peer,
                DEFAULT_MAX_RESERVATIONS_PER_PEER,
            )?,
            reservation_duration: duration(
                "reservation_duration",
                file.reservation_duration,
                DEFAULT_RESERVATION_DURATION,
            )?,
            max_circuits: limit("max_circuits", file.max_circuits, DEFAULT_MAX_CIRCUITS)?,
            max_circuits_per_peer: limit(
                "max_circuits_per_peer",
                file.max_circuits_per_peer,
                DEFAULT_MAX_CIRCUITS_PER_PEER,
            )?,
            circuit_duration: duration(
                "circuit_duration",
                file.circuit_duration,
                DEFAULT_CIRCUIT_DURATION,
            )?,
            circuit_bytes: match file.circuit_bytes {
                Some(text) => size("circuit_bytes", &text)?,
                None => NonZeroU64::new(DEFAULT_CIRCUIT_BYTES).expect("the default is not zero"),
            },
            new_per_ip_per_minute: limit(
                "new_per_ip_per_minute",
                file.new_per_ip_per_minute,
                DEFAULT_NEW_PER_IP_PER_MINUTE,
            )?,
            memory_limit,
        })
    }

    /// Command-line flags override the file: `--listen` (when given at all) replaces the
    /// listen addresses, `--metrics` sets the metrics address.
    pub fn merge_cli(&mut self, listen: Vec<Multiaddr>, metrics: Option<SocketAddr>) {
        if !listen.is_empty() {
            self.listen = listen;
        }
        if metrics.is_some() {
            self.metrics = metrics;
        }
    }

    /// Children across all rooms that the upload budget carries: `upload_kbps /
    /// KBPS_PER_CHILD` (at least 1: `upload_kbps` is checked to carry one).
    pub fn max_children_total(&self) -> usize {
        usize::try_from(self.upload_kbps.get() / KBPS_PER_CHILD).unwrap_or(usize::MAX)
    }

    /// Children one room may have at this relay: `max_children_per_room`, and never more than
    /// the upload budget carries for all rooms together (at least 1).
    pub fn children_per_room(&self) -> u16 {
        let total = u16::try_from(self.max_children_total()).unwrap_or(u16::MAX);
        self.max_children_per_room.get().min(total).max(1)
    }

    /// The config as a TOML file with a comment for every setting; it parses back to `self`.
    pub fn to_toml(&self) -> String {
        let mut out = String::new();
        let mut line = |text: &str| {
            out.push_str(text);
            out.push('\n');
        };
        line("# Earshot community relay: `earshot relay --config FILE`.");
        line("#");
        line("# Every setting is optional: one left out takes the default named in its comment.");
        line("# `earshot relay --print-config` prints the settings in effect, command-line flags");
        line(
            "# included. Sizes take a unit: B, kB, KiB, MB, MiB, GB, GiB, TB or TiB (\"512MiB\").",
        );
        line("# Durations take units such as s, min, h and d (\"4h\", \"1h 30min\").");
        line("");
        line("# Addresses to listen on, as multiaddrs. Open the port in the firewall (UDP for");
        line("# QUIC, TCP for TCP). `--listen` replaces them.");
        line(&format!(
            "# Default: {}.",
            DEFAULT_LISTEN.map(|a| format!("\"{a}\"")).join(", ")
        ));
        line("listen = [");
        for addr in &self.listen {
            line(&format!("    {},", quote(&addr.to_string())));
        }
        line("]");
        line("");
        line("# Where to serve Prometheus metrics (`GET /metrics`), as IP:PORT. Keep it on a");
        line("# private address: anyone who reaches it sees the relay's traffic figures.");
        line("# `--metrics` sets it. Default: not served.");
        match self.metrics {
            Some(addr) => line(&format!("metrics = {}", quote(&addr.to_string()))),
            None => line(&format!("# metrics = \"{EXAMPLE_METRICS}\"")),
        }
        line("");
        line("# --- Audio fan-out: rooms whose relay tree this relay joins when a host asks ---");
        line("");
        line("# Rooms served at once; past this, a host's request is refused politely.");
        line(&format!("# Default: {DEFAULT_MAX_ROOMS}."));
        line(&format!("max_rooms = {}", self.max_rooms));
        line("");
        line("# Children fed in one room; past this, a joiner is redirected elsewhere in the");
        line(&format!(
            "# tree. Default: {DEFAULT_MAX_CHILDREN_PER_ROOM}."
        ));
        line(&format!(
            "max_children_per_room = {}",
            self.max_children_per_room
        ));
        line("");
        line(&format!(
            "# Upload budget for audio fan-out, in kbit/s. Each child takes about \
             {KBPS_PER_CHILD} kbit/s,"
        ));
        line(&format!(
            "# so this also caps the children across all rooms at upload_kbps / {KBPS_PER_CHILD}: each room is"
        ));
        line("# offered what the others left, and a host is refused once none is left.");
        line(&format!(
            "# Default: {DEFAULT_UPLOAD_KBPS} ({} children).",
            DEFAULT_UPLOAD_KBPS / KBPS_PER_CHILD
        ));
        line(&format!("upload_kbps = {}", self.upload_kbps));
        line("");
        line("# --- Connections ---");
        line("");
        line(&format!(
            "# Connections open at once, all peers together. Default: {DEFAULT_MAX_CONNECTIONS}."
        ));
        line(&format!("max_connections = {}", self.max_connections));
        line("");
        line(&format!(
            "# Connections open at once with one peer. Default: {DEFAULT_MAX_CONNECTIONS_PER_PEER}."
        ));
        line(&format!(
            "max_connections_per_peer = {}",
            self.max_connections_per_peer
        ));
        line("");
        line("# Past this much memory in use by the process, new connections are refused.");
        line("# Default: no limit.");
        match self.memory_limit {
            Some(bytes) => line(&format!("memory_limit = \"{}\"", format_size(bytes.get()))),
            None => line(&format!("# memory_limit = \"{EXAMPLE_MEMORY_LIMIT}\"")),
        }
        line("");
        line("# --- Circuit relay: peers behind NAT reachable through this relay ---");
        line("");
        line("# Reservations held at once (each makes one peer reachable through this relay).");
        line(&format!("# Default: {DEFAULT_MAX_RESERVATIONS}."));
        line(&format!("max_reservations = {}", self.max_reservations));
        line("");
        line(&format!(
            "# Reservations one peer may hold. Default: {DEFAULT_MAX_RESERVATIONS_PER_PEER}."
        ));
        line(&format!(
            "max_reservations_per_peer = {}",
            self.max_reservations_per_peer
        ));
        line("");
        line("# How long a reservation lasts before the peer must renew it.");
        line(&format!(
            "# Default: \"{}\".",
            humantime::format_duration(DEFAULT_RESERVATION_DURATION)
        ));
        line(&format!(
            "reservation_duration = \"{}\"",
            humantime::format_duration(self.reservation_duration)
        ));
        line("");
        line(&format!(
            "# Relayed connections (circuits) open at once. Default: {DEFAULT_MAX_CIRCUITS}."
        ));
        line(&format!("max_circuits = {}", self.max_circuits));
        line("");
        line(&format!(
            "# Circuits one peer may have open at once. Default: {DEFAULT_MAX_CIRCUITS_PER_PEER}."
        ));
        line(&format!(
            "max_circuits_per_peer = {}",
            self.max_circuits_per_peer
        ));
        line("");
        line("# How long one circuit may last; the relay then closes it, cutting the audio it");
        line("# carries until the peers reconnect (libp2p's own default, 2 minutes, would cut");
        line(&format!(
            "# rooms short). Default: \"{}\".",
            humantime::format_duration(DEFAULT_CIRCUIT_DURATION)
        ));
        line(&format!(
            "circuit_duration = \"{}\"",
            humantime::format_duration(self.circuit_duration)
        ));
        line("");
        line("# Bytes one circuit may carry in each direction. A 32 kbit/s room takes about");
        line("# 18 MB an hour with framing (libp2p's own default, 128 KiB, lasts about 30 s).");
        line(&format!(
            "# Default: \"{}\".",
            format_size(DEFAULT_CIRCUIT_BYTES)
        ));
        line(&format!(
            "circuit_bytes = \"{}\"",
            format_size(self.circuit_bytes.get())
        ));
        line("");
        line("# New reservations, and new circuits, one IP address may ask for per minute. Many");
        line("# people can share an address (a campus, a carrier's NAT): libp2p's own default,");
        line("# 60, would refuse the 61st listener behind one for a minute.");
        line(&format!("# Default: {DEFAULT_NEW_PER_IP_PER_MINUTE}."));
        line(&format!(
            "new_per_ip_per_minute = {}",
            self.new_per_ip_per_minute
        ));
        out
    }
}

fn invalid(setting: &'static str, value: String, problem: Problem) -> ConfigError {
    ConfigError::Invalid {
        setting,
        value,
        problem,
    }
}

/// A count that must be at least 1 and fit the target type.
fn limit<T: TryFrom<NonZeroU64>>(
    setting: &'static str,
    value: Option<u64>,
    default: u64,
) -> Result<T, ConfigError> {
    let value = value.unwrap_or(default);
    let nonzero = NonZeroU64::new(value).ok_or(invalid(setting, "0".into(), Problem::Zero))?;
    T::try_from(nonzero).map_err(|_| invalid(setting, value.to_string(), Problem::TooLarge))
}

/// A duration longer than zero, written like "4h" or "1h 30min".
fn duration(
    setting: &'static str,
    value: Option<String>,
    default: Duration,
) -> Result<Duration, ConfigError> {
    let Some(text) = value else {
        return Ok(default);
    };
    match humantime::parse_duration(&text) {
        Ok(duration) if duration.is_zero() => {
            Err(invalid(setting, quote(&text), Problem::ZeroDuration))
        }
        Ok(duration) => Ok(duration),
        Err(err) => Err(invalid(setting, quote(&text), Problem::Duration(err))),
    }
}

/// A size of at least one byte, written like "512MiB".
fn size(setting: &'static str, text: &str) -> Result<NonZeroU64, ConfigError> {
    let bytes =
        parse_size(text).map_err(|err| invalid(setting, quote(text), Problem::Size(err)))?;
    NonZeroU64::new(bytes).ok_or_else(|| invalid(setting, quote(text), Problem::Zero))
}

/// `"<whole number> <unit>"`, the space optional, the unit optional (bytes).
fn parse_size(text: &str) -> Result<u64, SizeError> {
    let text = text.trim();
    let digits = text.bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 {
        return Err(SizeError::NoNumber);
    }
    let (number, unit) = text.split_at(digits);
    let number: u64 = number.parse().map_err(|_| SizeError::Overflow)?;
    let unit = unit.trim_start();
    let scale = match unit {
        "" => 1,
        _ => SIZE_UNITS
            .iter()
            .find(|(name, _)| *name == unit)
            .map(|&(_, scale)| scale)
            .ok_or_else(|| SizeError::UnknownUnit {
                unit: unit.to_owned(),
            })?,
    };
    number.checked_mul(scale).ok_or(SizeError::Overflow)
}

/// The largest unit that writes `bytes` as a whole number, binary units first.
fn format_size(bytes: u64) -> String {
    SIZE_UNITS
        .iter()
        .find(|&&(_, scale)| bytes >= scale && bytes.is_multiple_of(scale))
        .map(|&(unit, scale)| format!("{}{unit}", bytes / scale))
        .unwrap_or_else(|| format!("{bytes}B"))
}

/// A TOML basic string.
fn quote(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04X}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The committed example, which must stay the defaults printed by `to_toml`.
    const EXAMPLE: &str = include_str!("../../../examples/relay.toml");

    fn parse_err(text: &str) -> ConfigError {
        RelayConfig::parse(text).expect_err(text)
    }

    /// Checks that `text` is refused for `setting`, with `value` named, and returns the problem.
    fn refused(text: &str, setting: &str, value: &str) -> Problem {
        match parse_err(text) {
            ConfigError::Invalid {
                setting: s,
                value: v,
                problem,
            } => {
                assert_eq!((s, v.as_str()), (setting, value), "{text}");
                problem
            }
            other => panic!("{text}: expected an invalid setting, got {other}"),
        }
    }

    #[test]
    fn defaults() {
        let config = RelayConfig::default();
        assert_eq!(load(None).expect("defaults"), config);
        assert_eq!(RelayConfig::parse("").expect("empty file"), config);
        let listen: Vec<String> = config.listen.iter().map(|a| a.to_string()).collect();
        assert_eq!(
            listen,
            ["/ip4/0.0.0.0/udp/4001/quic-v1", "/ip4/0.0.0.0/tcp/4001"]
        );
        assert_eq!(config.metrics, None);
        assert_eq!(config.max_rooms.get(), 16);
        assert_eq!(config.max_children_per_room.get(), 100);
        assert_eq!(config.upload_kbps.get(), 20_000);
        assert_eq!(config.max_children_total(), 500);
        assert_eq!(config.children_per_room(), 100);
        assert_eq!(config.max_connections.get(), 1024);
        assert_eq!(config.max_connections_per_peer.get(), 4);
        assert_eq!(config.max_reservations.get(), 512);
        assert_eq!(config.max_reservations_per_peer.get(), 4);
        assert_eq!(config.reservation_duration, Duration::from_secs(3600));
        assert_eq!(config.max_circuits.get(), 256);
        assert_eq!(config.max_circuits_per_peer.get(), 8);
        assert_eq!(config.circuit_duration, Duration::from_secs(4 * 3600));
        assert_eq!(config.circuit_bytes.get(), 1 << 30);
        assert_eq!(config.memory_limit, None);
        // A live room at 32 kbit/s (with framing, 40) fits a default circuit for its duration.
        let room_bytes = config.circuit_duration.as_secs() * KBPS_PER_CHILD * 1000 / 8;
        assert!(room_bytes < config.circuit_bytes.get());
    }

    #[test]
    fn the_example_file_is_the_defaults() {
        assert_eq!(
            RelayConfig::parse(EXAMPLE).expect("the example parses"),
            RelayConfig::default()
        );
        // Regenerate with `earshot relay --print-config > examples/relay.toml`.
        assert_eq!(
            EXAMPLE,
            RelayConfig::default().to_toml(),
            "examples/relay.toml is stale"
        );
    }

    #[test]
    fn a_file_sets_every_setting() {
        let config = RelayConfig::parse(
            r#"
            listen = ["/ip6/::/udp/4002/quic-v1", "/dns4/relay.example.org/tcp/443"]
            metrics = "[::1]:9100"
            max_rooms = 2
            max_children_per_room = 3
            upload_kbps = 40
            max_connections = 5
            max_connections_per_peer = 6
            max_reservations = 7
            max_reservations_per_peer = 8
            reservation_duration = "90min"
            max_circuits = 9
            max_circuits_per_peer = 10
            circuit_duration = "2s"
            circuit_bytes = "100 kB"
            memory_limit = "1536MiB"
            "#,
        )
        .expect("a full file");
        assert_eq!(config.listen.len(), 2);
        assert_eq!(config.metrics, Some("[::1]:9100".parse().expect("addr")));
        assert_eq!(config.max_rooms.get(), 2);
        assert_eq!(config.max_children_per_room.get(), 3);
        assert_eq!(config.max_children_total(), 1);
        assert_eq!(config.children_per_room(), 1);
        assert_eq!(config.max_connections.get(), 5);
        assert_eq!(config.max_connections_per_peer.get(), 6);
        assert_eq!(config.max_reservations.get(), 7);
        assert_eq!(config.max_reservations_per_peer.get(), 8);
        assert_eq!(config.reservation_duration, Duration::from_secs(90 * 60));
        assert_eq!(config.max_circuits.get(), 9);
        assert_eq!(config.max_circuits_per_peer.get(), 10);
        assert_eq!(config.circuit_duration, Duration::from_secs(2));
        assert_eq!(config.circuit_bytes.get(), 100_000);
        assert_eq!(config.memory_limit.map(NonZeroU64::get), Some(1536 << 20));
        assert_eq!(
            RelayConfig::parse(&config.to_toml()).expect("round trip"),
            config
        );
    }

    #[test]
    fn to_toml_round_trips() {
        let mut config = RelayConfig::default();
        assert_eq!(
            RelayConfig::parse(&config.to_toml()).expect("defaults"),
            config
        );
        config.metrics = Some("127.0.0.1:1".parse().expect("addr"));
        config.memory_limit = NonZeroU64::new(1_000_001);
        config.circuit_bytes = NonZeroU64::new(3 << 40).expect("non-zero");
        config.circuit_duration = Duration::from_millis(90_061_500);
        config.reservation_duration = Duration::from_secs(1);
        config.listen = vec!["/unix/%2Ftmp%2Fa%22b".parse().expect("multiaddr")];
        let text = config.to_toml();
        assert!(text.contains("circuit_bytes = \"3TiB\""), "{text}");
        assert!(text.contains("memory_limit = \"1000001B\""), "{text}");
        assert_eq!(RelayConfig::parse(&text).expect("round trip"), config);
        // Every setting is printed, each after a comment.
        for setting in [
            "listen",
            "metrics",
            "max_rooms",
            "max_children_per_room",
            "upload_kbps",
            "max_connections",
            "max_connections_per_peer",
            "memory_limit",
            "max_reservations",
            "max_reservations_per_peer",
            "reservation_duration",
            "max_circuits",
            "max_circuits_per_peer",
            "circuit_duration",
            "circuit_bytes",
            "new_per_ip_per_minute",
        ] {
            let at = text
                .lines()
                .position(|l| l.starts_with(&format!("{setting} = ")))
                .unwrap_or_else(|| panic!("{setting} missing from\n{text}"));
            let before = text.lines().nth(at - 1).expect("a line before");
            assert!(before.starts_with('#'), "{setting} has no comment");
        }
    }

    #[test]
    fn command_line_flags_override_the_file() {
        let mut config = RelayConfig::parse("metrics = \"127.0.0.1:1\"").expect("config");
        config.merge_cli(Vec::new(), None);
        assert_eq!(config.listen, RelayConfig::default().listen);
        assert_eq!(config.metrics, Some("127.0.0.1:1".parse().expect("addr")));
        let listen: Multiaddr = "/ip4/127.0.0.1/tcp/0".parse().expect("multiaddr");
        let metrics: SocketAddr = "127.0.0.1:2".parse().expect("addr");
        config.merge_cli(vec![listen.clone()], Some(metrics));
        assert_eq!(config.listen, [listen]);
        assert_eq!(config.metrics, Some(metrics));
    }

    #[test]
    fn load_reads_a_file_and_needs_it_to_exist() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("relay.toml");
        std::fs::write(&path, "max_rooms = 3\n").expect("write");
        let config = load(Some(&path)).expect("load");
        assert_eq!(config.max_rooms.get(), 3);
        let missing = dir.path().join("missing.toml");
        match load(Some(&missing)) {
            Err(err @ ConfigError::Read { .. }) => {
                assert!(err.to_string().contains("missing.toml"), "{err}");
            }
            other => panic!("expected a read error, got {other:?}"),
        }
    }

    #[test]
    fn zero_limits_are_refused() {
        for setting in [
            "max_rooms",
            "max_children_per_room",
            "upload_kbps",
            "max_connections",
            "max_connections_per_peer",
            "max_reservations",
            "max_reservations_per_peer",
            "max_circuits",
            "max_circuits_per_peer",
            "new_per_ip_per_minute",
        ] {
            let problem = refused(&format!("{setting} = 0"), setting, "0");
            assert!(matches!(problem, Problem::Zero), "{setting}: {problem}");
        }
        let err = parse_err("max_circuits = 0");
        assert_eq!(err.to_string(), "max_circuits = 0: must be at least 1");
    }

    #[test]
    fn a_limit_too_large_for_its_type_is_refused() {
        let problem = refused(
            "max_connections = 4294967296",
            "max_connections",
            "4294967296",
        );
        assert!(matches!(problem, Problem::TooLarge), "{problem}");
        let problem = refused(
            "max_children_per_room = 65536",
            "max_children_per_room",
            "65536",
        );
        assert!(matches!(problem, Problem::TooLarge), "{problem}");
        let config = RelayConfig::parse(
            "max_children_per_room = 65535
upload_kbps = 400",
        )
        .expect("config");
        assert_eq!(config.children_per_room(), 10);
    }

    #[test]
    fn upload_must_carry_one_child() {
        let problem = refused("upload_kbps = 39", "upload_kbps", "39");
        assert!(matches!(problem, Problem::BelowOneChild), "{problem}");
    }

    #[test]
    fn bad_addresses_are_refused() {
        let problem = refused(
            r#"listen = ["/ip4/0.0.0.0/tcp/4001", "/ip4/nope"]"#,
            "listen",
            "\"/ip4/nope\"",
        );
        assert!(matches!(problem, Problem::Multiaddr(_)), "{problem}");
        let problem = refused("listen = []", "listen", "[]");
        assert!(matches!(problem, Problem::NoAddress), "{problem}");
        let problem = refused(r#"metrics = "localhost""#, "metrics", "\"localhost\"");
        assert!(matches!(problem, Problem::SocketAddr(_)), "{problem}");
        let err = parse_err(r#"metrics = "9464""#);
        assert!(
            err.to_string()
                .starts_with("metrics = \"9464\": not an IP address and port"),
            "{err}"
        );
    }

    #[test]
    fn bad_durations_are_refused() {
        for setting in ["circuit_duration", "reservation_duration"] {
            let problem = refused(
                &format!("{setting} = \"4 hours-ish\""),
                setting,
                "\"4 hours-ish\"",
            );
            assert!(
                matches!(problem, Problem::Duration(_)),
                "{setting}: {problem}"
            );
            let problem = refused(&format!("{setting} = \"0s\""), setting, "\"0s\"");
            assert!(
                matches!(problem, Problem::ZeroDuration),
                "{setting}: {problem}"
            );
        }
    }

    #[test]
    fn bad_sizes_are_refused() {
        for setting in ["circuit_bytes", "memory_limit"] {
            let problem = refused(&format!("{setting} = \"1 GeB\""), setting, "\"1 GeB\"");
            assert!(
                matches!(problem, Problem::Size(SizeError::UnknownUnit { .. })),
                "{problem}"
            );
            let problem = refused(&format!("{setting} = \"0MiB\""), setting, "\"0MiB\"");
            assert!(matches!(problem, Problem::Zero), "{problem}");
        }
        let err = parse_err(r#"circuit_bytes = "lots""#);
        assert_eq!(
            err.to_string(),
            "circuit_bytes = \"lots\": not a size such as \"512MiB\" (it does not start with a \
             whole number)"
        );
    }

    #[test]
    fn unknown_keys_and_wrong_types_are_refused() {
        let err = parse_err("max_room = 3");
        assert!(matches!(err, ConfigError::Syntax(_)), "{err}");
        assert!(
            err.to_string().contains("unknown field `max_room`"),
            "{err}"
        );
        let err = parse_err("[relay]\nmax_rooms = 3");
        assert!(matches!(err, ConfigError::Syntax(_)), "{err}");
        let err = parse_err("circuit_bytes = 1024");
        assert!(err.to_string().contains("circuit_bytes"), "{err}");
        let err = parse_err("max_rooms = -1");
        assert!(err.to_string().contains("max_rooms"), "{err}");
        let err = parse_err("max_rooms = ");
        assert!(matches!(err, ConfigError::Syntax(_)), "{err}");
    }

    #[test]
    fn sizes() {
        let check = |text: &str, expected: Result<u64, SizeError>| {
            assert_eq!(parse_size(text), expected, "{text}");
        };
        check("0", Ok(0));
        check("512", Ok(512));
        check("512B", Ok(512));
        check(" 512 B ", Ok(512));
        check("1kB", Ok(1000));
        check("1KiB", Ok(1024));
        check("2 MB", Ok(2_000_000));
        check("2MiB", Ok(2 << 20));
        check("3GB", Ok(3_000_000_000));
        check("3GiB", Ok(3 << 30));
        check("1TB", Ok(1_000_000_000_000));
        check("1TiB", Ok(1 << 40));
        check("16777215TiB", Ok(16_777_215 << 40));
        check("16777216TiB", Err(SizeError::Overflow));
        check("99999999999999999999", Err(SizeError::Overflow));
        check("", Err(SizeError::NoNumber));
        check("MiB", Err(SizeError::NoNumber));
        check("-1MiB", Err(SizeError::NoNumber));
        check(
            "1.5GiB",
            Err(SizeError::UnknownUnit {
                unit: ".5GiB".into(),
            }),
        );
        check("1KB", Err(SizeError::UnknownUnit { unit: "KB".into() }));
        check("1mib", Err(SizeError::UnknownUnit { unit: "mib".into() }));
        for bytes in [1, 999, 1000, 1024, 1536, 1_000_000, 3 << 30, u64::MAX] {
            assert_eq!(parse_size(&format_size(bytes)), Ok(bytes), "{bytes}");
        }
        assert_eq!(format_size(1 << 30), "1GiB");
        assert_eq!(format_size(2_000), "2kB");
        assert_eq!(format_size(1536), "1536B");
    }

    #[test]
    fn quoting() {
        assert_eq!(quote("a\"b\\c\n\u{1}"), r#""a\"b\\c\n\u0001""#);
    }
}
