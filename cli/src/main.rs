//! `earshot`: the command-line node.
//!
//! Exit codes: 0 success; 1 failure (for `invite inspect`: the invite is not valid now);
//! 2 bad usage or, for commands that take a link, a malformed link.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod cmd;
mod output;
mod when;

/// Peer-to-peer audio rooms: host, join, speak, listen. No server, no account.
#[derive(Debug, Parser)]
#[command(name = "earshot", version, about, propagate_version = true)]
struct Cli {
    /// Data directory (identity, rooms, recordings). Default: $EARSHOT_HOME, else the platform
    /// data directory.
    #[arg(long, global = true, env = "EARSHOT_HOME", value_name = "DIR")]
    home: Option<PathBuf>,

    /// Print machine-readable JSON instead of text.
    #[arg(long, global = true)]
    json: bool,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create this node's identity (an ed25519 key) in the data directory.
    Init,
    /// Show this node's PeerId, public key and data directory.
    Id,
    /// Create and list the rooms this node hosts.
    #[command(subcommand)]
    Room(cmd::room::RoomCommand),
    /// Create, delegate and inspect invite links.
    #[command(subcommand)]
    Invite(cmd::invite::InviteCommand),
}

/// What the process should exit with, when a command does not simply succeed or fail.
pub(crate) struct Exit(pub u8);

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let ctx = cmd::Context {
        home: cli.home.clone(),
        json: cli.json,
    };
    let result = match cli.command {
        Command::Init => cmd::identity::init(&ctx),
        Command::Id => cmd::identity::id(&ctx),
        Command::Room(command) => cmd::room::run(&ctx, command),
        Command::Invite(command) => cmd::invite::run(&ctx, command),
    };
    match result {
        Ok(Exit(code)) => ExitCode::from(code),
        Err(err) => {
            eprintln!("earshot: {}", report(&err));
            ExitCode::FAILURE
        }
    }
}

/// The error and its causes, joined with ": ", skipping a cause whose text the message before it
/// already includes (library errors carry their cause's text in their own message).
fn report(err: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in err.chain() {
        let text = cause.to_string();
        if out.contains(&text) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&text);
    }
    out
}
