//! Shared test helpers: a temporary data directory per node and a runner for the binary.

use std::path::{Path, PathBuf};
use std::process::Output;

use assert_cmd::Command;
use earshot_node::Event;
use serde_json::Value;

/// One node's data directory, deleted at the end of the test.
pub struct TestHome {
    dir: tempfile::TempDir,
}

impl TestHome {
    pub fn new() -> Self {
        Self {
            dir: crate::harness::private_dir(),
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// A path inside the data directory.
    pub fn join(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// `earshot --home DIR ARGS…`, with no environment leaking in.
    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut cmd = Command::cargo_bin("earshot").expect("the earshot binary is built");
        cmd.env_remove("EARSHOT_HOME")
            .env_remove("RUST_LOG")
            .arg("--home")
            .arg(self.path())
            .args(args);
        cmd
    }

    /// Runs the command, expecting success, and returns its stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let output = self.cmd(args).output().expect("run earshot");
        assert!(
            output.status.success(),
            "earshot {args:?} failed: {}\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).expect("utf-8 output")
    }

    /// Runs the command with `--json` and parses its stdout: for commands that print a report
    /// of their own (a room, an invite, a list), not an [`Event`].
    pub fn json(&self, args: &[&str]) -> Value {
        let mut with_json = args.to_vec();
        with_json.push("--json");
        let stdout = self.ok(&with_json);
        serde_json::from_str(&stdout).unwrap_or_else(|err| panic!("{err}: {stdout}"))
    }

    /// Runs the command with `--json` and parses its stdout as one [`Event`] (say, `recordings
    /// export`'s `exported`).
    pub fn event(&self, args: &[&str]) -> Event {
        let mut with_json = args.to_vec();
        with_json.push("--json");
        let stdout = self.ok(&with_json);
        serde_json::from_str(&stdout).unwrap_or_else(|err| panic!("{err}: {stdout}"))
    }

    /// Runs the command and returns its whole output, whatever the exit code.
    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().expect("run earshot")
    }

    /// This node's PeerId (initialising it if needed).
    pub fn peer_id(&self) -> String {
        self.ok(&["init"]);
        self.json(&["id"])["peer_id"]
            .as_str()
            .expect("peer_id")
            .to_owned()
    }

    /// Creates a room and returns (room id, listener link, speaker link).
    pub fn new_room(&self, title: &str) -> (String, String, String) {
        let room = self.json(&["room", "new", title]);
        let text = |value: &Value| value.as_str().expect("string").to_owned();
        (
            text(&room["id"]),
            text(&room["links"]["listener"]),
            text(&room["links"]["speaker"]),
        )
    }

    /// Issues an invite and returns the link.
    pub fn invite(&self, args: &[&str]) -> String {
        let mut full = vec!["invite", "create"];
        full.extend_from_slice(args);
        self.json(&full)["link"].as_str().expect("link").to_owned()
    }
}

/// The exit code of a finished command.
pub fn code(output: &Output) -> i32 {
    output.status.code().expect("exited normally")
}

pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// A temporary data directory as `earshot` makes one: private to the user (mode 0700; one that
/// others can read is refused).
pub fn private_dir() -> tempfile::TempDir {
    use std::os::unix::fs::PermissionsExt;
    tempfile::Builder::new()
        .permissions(std::fs::Permissions::from_mode(0o700))
        .tempdir()
        .expect("a private temporary directory")
}
