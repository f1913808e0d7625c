//! One module per command group; each turns arguments into node calls and prints the result.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use earshot_node::home::Home;

pub mod demo;
pub mod devices;
pub mod identity;
pub mod invite;
pub mod live;
pub mod lobby;
pub mod reachability;
pub mod recordings;
pub mod relay;
pub mod room;

/// What every command gets from the global options.
#[derive(Debug, Clone)]
pub struct Context {
    pub home: Option<PathBuf>,
    pub json: bool,
    /// The data directory already opened by this process (a running node serving a command
    /// through its control socket).
    pub shared: Option<Arc<Home>>,
    /// The working directory of the process that asked, when it is not this one (a command
    /// served through the control socket).
    pub cwd: Option<PathBuf>,
}

impl Context {
    /// A path given on the command line, relative to the caller's working directory.
    pub fn path(&self, path: &std::path::Path) -> PathBuf {
        match &self.cwd {
            Some(cwd) if path.is_relative() => cwd.join(path),
            _ => path.to_owned(),
        }
    }

    /// The data directory: `--home`, else `$EARSHOT_HOME` (clap reads it), else the platform's.
    pub fn home_dir(&self) -> anyhow::Result<PathBuf> {
        if let Some(home) = &self.home {
            return Ok(home.clone());
        }
        directories::ProjectDirs::from("", "", "earshot")
            .map(|dirs| dirs.data_dir().to_owned())
            .context("cannot find a data directory for this user: pass --home DIR")
    }

    /// Opens the data directory (creating the identity on first use), or shares the one this
    /// process already has open.
    pub fn open_home(&self) -> anyhow::Result<Arc<Home>> {
        if let Some(home) = &self.shared {
            return Ok(Arc::clone(home));
        }
        let dir = self.home_dir()?;
        Home::open(&dir)
            .map(Arc::new)
            .with_context(|| format!("opening the data directory {}", dir.display()))
    }
}
