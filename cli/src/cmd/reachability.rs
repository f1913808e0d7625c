//! How `earshot host` and `earshot join` find community relays and decide whether they need
//! one: `--bootstrap`, `--reachability`, and the data directory's `config.toml`:
//!
//! ```toml
//! # Community relays to be reachable through when peers cannot dial this node directly.
//! relays = ["/dns4/relay.example.org/udp/4001/quic-v1/p2p/12D3KooW…"]
//! # auto (ask AutoNAT), public (never use a relay) or private (always use one).
//! reachability = "auto"
//! ```

use std::path::Path;

use anyhow::{Context as _, bail};
use clap::Args;
use earshot_node::nat::NatKind;
use earshot_node::net::NetConfig;
use earshot_node::node::NodeConfig;
use earshot_node::reachability::Mode;
use multiaddr::{Multiaddr, Protocol};
use serde::Deserialize;

/// The file in the data directory.
pub const CONFIG_FILE: &str = "config.toml";

#[derive(Debug, Args, Clone, Default)]
pub struct ReachabilityArgs {
    /// A peer to connect to at start, ending in /p2p/PEERID (repeatable). A community relay
    /// given here is used when this node turns out not to be reachable.
    #[arg(long, value_name = "MULTIADDR")]
    pub bootstrap: Vec<Multiaddr>,
    /// `auto` asks AutoNAT (through the relays) whether peers can dial you and, if not,
    /// reserves a slot on a relay; `public` never does; `private` always does.
    #[arg(long, value_name = "auto|public|private")]
    pub reachability: Option<Mode>,
    /// Refuse inbound connections as a home router would, `cone` (hole punching works) or
    /// `symmetric` (it does not): for testing NAT traversal on one machine.
    #[arg(long, hide = true, value_name = "cone|symmetric")]
    pub emulate_nat: Option<NatKind>,
    /// Refuse new connections while this process uses more memory than this, in MB (a flood of
    /// strangers cannot make the node grow past it).
    #[arg(long, value_name = "MB", default_value_t = DEFAULT_MAX_MEMORY_MB)]
    pub max_memory_mb: u64,
}

/// The default of `--max-memory-mb`: a room of a thousand takes a few hundred MB at most.
pub const DEFAULT_MAX_MEMORY_MB: u64 = 1024;

/// The node's reachability settings, from its config file and the command line.
#[derive(Debug, Clone, Default)]
pub struct ReachabilitySettings {
    pub bootstrap: Vec<Multiaddr>,
    pub relays: Vec<Multiaddr>,
    pub mode: Mode,
    pub emulate_nat: Option<NatKind>,
    /// Refuse new connections above this much memory (bytes).
    pub max_memory: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    relays: Vec<String>,
    reachability: Option<String>,
}

impl ReachabilitySettings {
    /// Reads `DIR/config.toml` (if there is one) and applies the command line over it.
    pub fn load(dir: &Path, args: &ReachabilityArgs) -> anyhow::Result<ReachabilitySettings> {
        let path = dir.join(CONFIG_FILE);
        let file = match std::fs::read_to_string(&path) {
            Ok(text) => toml::from_str::<File>(&text)
                .with_context(|| format!("reading {}", path.display()))?,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => File::default(),
            Err(err) => return Err(err).with_context(|| format!("reading {}", path.display())),
        };
        let mut relays = Vec::new();
        for text in &file.relays {
            let addr: Multiaddr = text.parse().with_context(|| {
                format!("{}: relays: {text:?} is not a multiaddr", path.display())
            })?;
            relays.push(with_peer_id(addr, &format!("{}: relays", path.display()))?);
        }
        let mode = match (&args.reachability, &file.reachability) {
            (Some(mode), _) => *mode,
            (None, Some(text)) => text
                .parse()
                .map_err(|err| anyhow::anyhow!("{}: reachability: {err}", path.display()))?,
            (None, None) => Mode::Auto,
        };
        let bootstrap = args
            .bootstrap
            .iter()
            .map(|addr| with_peer_id(addr.clone(), "--bootstrap"))
            .collect::<anyhow::Result<_>>()?;
        Ok(ReachabilitySettings {
            bootstrap,
            relays,
            mode,
            emulate_nat: args.emulate_nat,
            max_memory: usize::try_from(args.max_memory_mb.saturating_mul(1 << 20)).ok(),
        })
    }

    /// The node's configuration: these settings, listening on `listen`, feeding up to
    /// `max_children` in each room's tree.
    pub fn node_config(&self, listen: Vec<Multiaddr>, max_children: u16) -> NodeConfig {
        NodeConfig {
            listen,
            bootstrap: self.bootstrap.clone(),
            net: NetConfig {
                emulate_nat: self.emulate_nat,
                max_memory: self.max_memory,
                ..NetConfig::default()
            },
            max_children,
            relays: self.relays.clone(),
            reachability: self.mode,
            ..NodeConfig::default()
        }
    }
}

fn with_peer_id(addr: Multiaddr, what: &str) -> anyhow::Result<Multiaddr> {
    match addr.iter().last() {
        Some(Protocol::P2p(_)) => Ok(addr),
        _ => bail!("{what}: {addr} must end in /p2p/PEERID"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: Option<&str>, args: &ReachabilityArgs) -> anyhow::Result<ReachabilitySettings> {
        let dir = tempfile::tempdir().expect("tempdir");
        if let Some(text) = text {
            std::fs::write(dir.path().join(CONFIG_FILE), text).expect("write");
        }
        ReachabilitySettings::load(dir.path(), args)
    }

    const RELAY: &str =
        "/ip4/127.0.0.1/udp/4001/quic-v1/p2p/12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN";

    #[test]
    fn the_file_names_relays_and_the_command_line_wins() {
        let text = format!("relays = [\"{RELAY}\"]\nreachability = \"private\"\n");
        let settings = load(Some(&text), &ReachabilityArgs::default()).expect("valid");
        assert_eq!(
            settings.relays,
            vec![RELAY.parse::<Multiaddr>().expect("valid")]
        );
        assert_eq!(settings.mode, Mode::Private);
        assert!(settings.node_config(Vec::new(), 1).may_use_relays());
        let args = ReachabilityArgs {
            reachability: Some(Mode::Public),
            ..ReachabilityArgs::default()
        };
        let settings = load(Some(&text), &args).expect("valid");
        assert_eq!(settings.mode, Mode::Public);
        assert!(!settings.node_config(Vec::new(), 1).may_use_relays());
    }

    #[test]
    fn no_file_is_auto_without_relays() {
        let settings = load(None, &ReachabilityArgs::default()).expect("valid");
        assert_eq!(settings.mode, Mode::Auto);
        assert!(settings.relays.is_empty());
        assert!(!settings.node_config(Vec::new(), 1).may_use_relays());
    }

    #[test]
    fn mistakes_name_the_setting() {
        let err = load(
            Some("relays = [\"/ip4/1.2.3.4/tcp/1\"]"),
            &ReachabilityArgs::default(),
        )
        .expect_err("no peer id");
        assert!(
            format!("{err:#}").contains("must end in /p2p/PEERID"),
            "{err:#}"
        );
        let err = load(
            Some("reachability = \"maybe\""),
            &ReachabilityArgs::default(),
        )
        .expect_err("bad mode");
        assert!(format!("{err:#}").contains("reachability"), "{err:#}");
        let err = load(Some("relay = []"), &ReachabilityArgs::default()).expect_err("unknown key");
        assert!(format!("{err:#}").contains("unknown field"), "{err:#}");
    }
}
