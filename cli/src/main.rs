//! `earshot`: the command-line node.
//!
//! Exit codes: 0 success; 1 failure (for `invite inspect`: the invite is not valid now; for
//! `recordings verify`: a frame did not verify);
//! 2 bad usage or, for commands that take a link, a malformed link.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod cmd;
mod ics;
mod output;
mod render;
mod runtime;
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
    /// Open a room this node hosts and run it until /end or Ctrl-C.
    Host(cmd::live::HostArgs),
    /// Join a room from an invite link and stay until /leave or Ctrl-C.
    Join(cmd::live::JoinArgs),
    /// List live public rooms announced on the lobby.
    Rooms(cmd::lobby::RoomsArgs),
    /// List the sound cards to record from and play to (defaults marked).
    Devices,
    /// List, export, play and delete recordings.
    #[command(subcommand)]
    Recordings(cmd::recordings::RecordingsCommand),
    /// Run a community relay: circuits for nodes behind NATs, bootstrap, metrics.
    Relay(cmd::relay::RelayArgs),
    /// Run a whole room on this machine: a host speaking, listeners relaying to each other,
    /// a live status table, and what each listener heard in WAV files.
    Demo(cmd::demo::DemoArgs),
}

impl Command {
    /// Commands that only read or write the data directory, and so can run inside a node that
    /// already holds it open.
    fn forwardable(&self) -> bool {
        // Announcing runs a node of its own: not inside another node's process.
        matches!(
            self,
            Command::Room(_) | Command::Invite(_) | Command::Recordings(_)
        ) && !matches!(self, Command::Room(cmd::room::RoomCommand::Announce(_)))
    }
}

/// What the process should exit with, when a command does not simply succeed or fail.
pub(crate) struct Exit(pub u8);

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,libp2p_kad=error")),
        )
        .with_writer(output::Logs)
        .init();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let cli = Cli::parse();
    let ctx = cmd::Context {
        home: cli.home.clone(),
        json: cli.json,
        shared: None,
        cwd: None,
    };
    let forwardable = cli.command.forwardable();
    match dispatch(&ctx, cli.command) {
        Ok(Exit(code)) => ExitCode::from(code),
        Err(err) if forwardable && is_locked(&err) => forward(&ctx, args),
        Err(err) => {
            eprintln!("earshot: {}", report(&err));
            ExitCode::FAILURE
        }
    }
}

fn dispatch(ctx: &cmd::Context, command: Command) -> anyhow::Result<Exit> {
    match command {
        Command::Init => cmd::identity::init(ctx),
        Command::Id => cmd::identity::id(ctx),
        Command::Room(command) => cmd::room::run(ctx, command),
        Command::Invite(command) => cmd::invite::run(ctx, command),
        Command::Host(args) => cmd::live::host(ctx, args),
        Command::Join(args) => cmd::live::join(ctx, args),
        Command::Rooms(args) => cmd::lobby::rooms(ctx, args),
        Command::Devices => cmd::devices::devices(ctx),
        Command::Demo(args) => cmd::demo::demo(ctx, args),
        Command::Recordings(command) => cmd::recordings::run(ctx, command),
        Command::Relay(args) => cmd::relay::relay(ctx, args),
    }
}

/// Whether the failure is the data directory's database being held by another process.
fn is_locked(err: &anyhow::Error) -> bool {
    use earshot_node::home::HomeError;
    use earshot_node::store::StoreError;
    err.chain().any(|cause| {
        matches!(
            cause.downcast_ref::<HomeError>(),
            Some(HomeError::Store(StoreError::Locked { .. }))
        ) || matches!(
            cause.downcast_ref::<StoreError>(),
            Some(StoreError::Locked { .. })
        )
    })
}

/// Runs the command in the node that holds the data directory, through its control socket.
fn forward(ctx: &cmd::Context, args: Vec<String>) -> ExitCode {
    let reply = ctx
        .home_dir()
        .and_then(|dir| Ok(earshot_node::control::call(&dir, args)?));
    match reply {
        Ok(reply) => {
            print!("{}", reply.stdout);
            eprint!("{}", reply.stderr);
            ExitCode::from(reply.code)
        }
        Err(err) => {
            eprintln!(
                "earshot: the data directory is in use by another process, and it does not \
                 answer on its control socket: {}",
                report(&err)
            );
            ExitCode::FAILURE
        }
    }
}

/// Runs a command on behalf of another process (see `forward`), with its output captured.
pub(crate) fn serve_command(
    home: std::sync::Arc<earshot_node::home::Home>,
    request: earshot_node::control::ControlRequest,
) -> earshot_node::control::ControlReply {
    use earshot_node::control::ControlReply;
    let argv = std::iter::once("earshot".to_owned()).chain(request.args);
    let cli = match Cli::try_parse_from(argv) {
        Ok(cli) => cli,
        Err(err) => {
            return ControlReply {
                stdout: String::new(),
                stderr: err.render().to_string(),
                code: 2,
            };
        }
    };
    if !cli.command.forwardable() {
        return ControlReply {
            stdout: String::new(),
            stderr: "earshot: this command cannot run inside a running node\n".into(),
            code: 2,
        };
    }
    let ctx = cmd::Context {
        home: cli.home.clone(),
        json: cli.json,
        shared: Some(home),
        cwd: request.cwd.clone(),
    };
    let (stdout, mut stderr, result) = output::capture(|| dispatch(&ctx, cli.command));
    let code = match result {
        Ok(Exit(code)) => code,
        Err(err) => {
            stderr.push_str(&format!("earshot: {}\n", report(&err)));
            1
        }
    };
    ControlReply {
        stdout,
        stderr,
        code,
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
