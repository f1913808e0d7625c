//! One module per command group; each turns arguments into node calls and prints the result.

use std::path::PathBuf;

use anyhow::Context as _;

pub mod identity;
pub mod invite;
pub mod room;

/// What every command gets from the global options.
#[derive(Debug)]
pub struct Context {
    pub home: Option<PathBuf>,
    pub json: bool,
}

impl Context {
    /// The data directory: `--home`, else `$EARSHOT_HOME` (clap reads it), else the platform's.
    pub fn home_dir(&self) -> anyhow::Result<PathBuf> {
        if let Some(home) = &self.home {
            return Ok(home.clone());
        }
        directories::ProjectDirs::from("", "", "earshot")
            .map(|dirs| dirs.data_dir().to_owned())
            .context("cannot find a data directory for this user: pass --home DIR")
    }

    /// Opens the data directory (creating the identity on first use).
    pub fn open_home(&self) -> anyhow::Result<earshot_node::home::Home> {
        let dir = self.home_dir()?;
        earshot_node::home::Home::open(&dir)
            .with_context(|| format!("opening the data directory {}", dir.display()))
    }
}
