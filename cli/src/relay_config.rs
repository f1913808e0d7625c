//! The configuration of `earshot relay`, the community relay daemon: a TOML file, every
//! setting optional with a default suited to a small server carrying live audio.
//!
//! The file is read into `RelayFile` (serde, raw strings and integers, unknown keys refused)
//! and checked once into [`RelayConfig`] (typed values: multiaddrs, socket addresses, non-zero
//! limits, durations, byte counts), so every error names the setting and the value it refuses.
//! [`RelayConfig::to_toml`] prints the config in effect with a comment for every setting
//! (`earshot relay --print-config`): it writes the values into one commented template
//! (`relay_config/template.toml`) with `toml_edit`, which keeps the comments.
//! `examples/relay.toml` is that output for the defaults.
//!
//! The circuit relay's defaults are the node's ([`RelayServerConfig::default`]: limits that let
//! a circuit carry live audio for hours, where rust-libp2p's own would cut a room after about
//! 30 seconds); the other defaults are the constants below.

use std::io;
use std::net::{AddrParseError, SocketAddr};
use std::num::{NonZeroU16, NonZeroU32, NonZeroU64, NonZeroUsize};
use std::path::{Path, PathBuf};
use std::time::Duration;

use earshot_node::net::RelayServerConfig;
use earshot_node::node::KBPS_PER_CHILD;
use multiaddr::Multiaddr;
use serde::Deserialize;
use toml_edit::{DocumentMut, RawString, Value};

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
    /// Circuit relay reservations held at once (peers reachable through this relay). This and
    /// the circuit limits below default to [`RelayServerConfig::default`]'s.
    pub max_reservations: NonZeroUsize,
    /// Reservations one peer may hold.
    pub max_reservations_per_peer: NonZeroUsize,
    /// How long a reservation lasts before the peer must renew it.
    pub reservation_duration: Duration,
    /// Relayed connections (circuits) open at once.
    pub max_circuits: NonZeroUsize,
    /// Circuits one peer may have open at once.
    pub max_circuits_per_peer: NonZeroUsize,
    /// How long one circuit may last.
    pub circuit_duration: Duration,
    /// Bytes one circuit may carry (in each direction).
    pub circuit_bytes: NonZeroU64,
    /// New reservations, and new circuits, one IP address may ask for per minute.
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
const DEFAULT_MAX_ROOMS: u64 = 16;
const DEFAULT_MAX_CHILDREN_PER_ROOM: u64 = 100;
const DEFAULT_UPLOAD_KBPS: u64 = 20_000;
const DEFAULT_MAX_CONNECTIONS: u64 = 1024;
const DEFAULT_MAX_CONNECTIONS_PER_PEER: u64 = 4;

/// The file `to_toml` writes: every setting after its comment. The values in it are only
/// placeholders, overwritten with the config's; a setting left unset (`metrics`,
/// `memory_limit`) is printed commented out, the template's value serving as the example. In
/// the comments, `{default}` stands for the setting's default, and `{kbps_per_child}` and
/// `{default_children}` for the figures the upload budget is explained with.
const TEMPLATE: &str = include_str!("relay_config/template.toml");

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
        if upload_kbps.get() < u64::from(KBPS_PER_CHILD) {
            let value = upload_kbps.to_string();
            return Err(invalid("upload_kbps", value, Problem::BelowOneChild));
        }
        let memory_limit = file
            .memory_limit
            .map(|text| size("memory_limit", &text))
            .transpose()?;
        let relay = RelayServerConfig::default();
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
                relay.max_reservations as u64,
            )?,
            max_reservations_per_peer: limit(
                "max_reservations_per_peer",
                file.max_reservations_per_peer,
                relay.max_reservations_per_peer as u64,
            )?,
            reservation_duration: duration(
                "reservation_duration",
                file.reservation_duration,
                relay.reservation_duration,
            )?,
            max_circuits: limit("max_circuits", file.max_circuits, relay.max_circuits as u64)?,
            max_circuits_per_peer: limit(
                "max_circuits_per_peer",
                file.max_circuits_per_peer,
                relay.max_circuits_per_peer as u64,
            )?,
            circuit_duration: duration(
                "circuit_duration",
                file.circuit_duration,
                relay.max_circuit_duration,
            )?,
            circuit_bytes: match file.circuit_bytes {
                Some(text) => size("circuit_bytes", &text)?,
                None => limit("circuit_bytes", None, relay.max_circuit_bytes)?,
            },
            new_per_ip_per_minute: limit(
                "new_per_ip_per_minute",
                file.new_per_ip_per_minute,
                u64::from(relay.new_per_ip_per_minute.get()),
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
        usize::try_from(self.upload_kbps.get() / u64::from(KBPS_PER_CHILD)).unwrap_or(usize::MAX)
    }

    /// Children one room may have at this relay: `max_children_per_room`, and never more than
    /// the upload budget carries for all rooms together (at least 1).
    pub fn children_per_room(&self) -> u16 {
        let total = u16::try_from(self.max_children_total()).unwrap_or(u16::MAX);
        self.max_children_per_room.get().min(total).max(1)
    }

    /// The config as a TOML file with a comment for every setting (the template filled in); it
    /// parses back to `self`.
    pub fn to_toml(&self) -> String {
        let mut doc: DocumentMut = TEMPLATE.parse().expect("the template is TOML");
        let defaults = Self::default();
        let figures = [
            ("{kbps_per_child}", KBPS_PER_CHILD.to_string()),
            (
                "{default_children}",
                defaults.max_children_total().to_string(),
            ),
        ];
        for (setting, default) in defaults.values() {
            let default = default.as_ref().map_or_else(|| "none".to_owned(), inline);
            let mut key = doc
                .key_mut(setting)
                .expect("every setting is in the template");
            let decor = key.leaf_decor_mut();
            let mut comment = decor
                .prefix()
                .and_then(RawString::as_str)
                .unwrap_or_default()
                .replace("{default}", &default);
            for (name, figure) in &figures {
                comment = comment.replace(name, figure);
            }
            decor.set_prefix(comment);
        }
        for (setting, value) in self.values() {
            match value {
                Some(value) => write(&mut doc, setting, value),
                None => comment_out(&mut doc, setting),
            }
        }
        doc.to_string()
    }

    /// Every setting as a TOML value (`None`: left unset), written as the file takes it.
    fn values(&self) -> [(&'static str, Option<Value>); 16] {
        let size = |bytes: NonZeroU64| Value::from(format_size(bytes.get()));
        let duration = |d: Duration| Value::from(humantime::format_duration(d).to_string());
        [
            (
                "listen",
                Some(Value::Array(
                    self.listen.iter().map(ToString::to_string).collect(),
                )),
            ),
            (
                "metrics",
                self.metrics.map(|addr| Value::from(addr.to_string())),
            ),
            ("max_rooms", Some(int(self.max_rooms.get()))),
            (
                "max_children_per_room",
                Some(int(self.max_children_per_room.get())),
            ),
            ("upload_kbps", Some(int(self.upload_kbps.get()))),
            ("max_connections", Some(int(self.max_connections.get()))),
            (
                "max_connections_per_peer",
                Some(int(self.max_connections_per_peer.get())),
            ),
            ("memory_limit", self.memory_limit.map(size)),
            ("max_reservations", Some(int(self.max_reservations.get()))),
            (
                "max_reservations_per_peer",
                Some(int(self.max_reservations_per_peer.get())),
            ),
            (
                "reservation_duration",
                Some(duration(self.reservation_duration)),
            ),
            ("max_circuits", Some(int(self.max_circuits.get()))),
            (
                "max_circuits_per_peer",
                Some(int(self.max_circuits_per_peer.get())),
            ),
            ("circuit_duration", Some(duration(self.circuit_duration))),
            ("circuit_bytes", Some(size(self.circuit_bytes))),
            (
                "new_per_ip_per_minute",
                Some(int(self.new_per_ip_per_minute.get())),
            ),
        ]
    }
}

/// A TOML integer. Every limit came from a TOML file, so it fits; one set larger in code is
/// printed as the largest TOML integer.
fn int(n: impl TryInto<i64>) -> Value {
    Value::from(n.try_into().unwrap_or(i64::MAX))
}

/// `value` as written after `key = `.
fn inline(value: &Value) -> String {
    value.clone().decorated("", "").to_string()
}

/// A one-line TOML string: how an error message shows a refused value.
fn quote(text: &str) -> String {
    use toml_writer::ToTomlValue as _;
    toml_writer::TomlStringBuilder::new(text)
        .as_basic()
        .to_toml_value()
}

/// Writes `value` into the template's item for `setting`, its comment kept.
fn write(doc: &mut DocumentMut, setting: &str, mut value: Value) {
    if let Value::Array(array) = &mut value
        && !array.is_empty()
    {
        // One element a line, as people write lists of addresses.
        for element in array.iter_mut() {
            element.decor_mut().set_prefix("\n    ");
        }
        array.set_trailing_comma(true);
        array.set_trailing("\n");
    }
    doc[setting] = toml_edit::Item::Value(value);
}

/// Leaves `setting` unset: its comment stays, followed by the template's line for it commented
/// out (the example), both now ahead of the setting that follows.
fn comment_out(doc: &mut DocumentMut, setting: &str) {
    let next = doc
        .iter()
        .map(|(key, _)| key)
        .skip_while(|key| *key != setting)
        .nth(1)
        .map(str::to_owned);
    let (key, example) = doc
        .remove_entry(setting)
        .expect("every setting is in the template");
    let comment = key.leaf_decor().prefix().and_then(RawString::as_str);
    let example = example.as_value().map(inline).unwrap_or_default();
    let text = format!("{}# {setting} = {example}\n", comment.unwrap_or_default());
    match next {
        Some(next) => {
            let mut key = doc.key_mut(&next).expect("the setting just listed");
            let decor = key.leaf_decor_mut();
            let after = decor
                .prefix()
                .and_then(RawString::as_str)
                .unwrap_or_default();
            decor.set_prefix(format!("{text}{after}"));
        }
        None => {
            let after = doc.trailing().as_str().unwrap_or_default();
            doc.set_trailing(format!("{text}{after}"));
        }
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

#[cfg(test)]
mod tests;
