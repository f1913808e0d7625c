//! The control socket of a running node answers only processes of its data directory's owner
//! (`earshot_node::control`, by the caller's peer credentials). Run for real: a node started as
//! another user (uid 65534, `nobody`) on a data directory that user owns, asked by root (who
//! passes every permission check on the directory and the socket, so that only the check of
//! the caller's uid stands in the way) and by the owner. Needs root; skipped otherwise.

use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Output};

use earshot_node::Event;

use crate::harness::{TestHome, code, stderr};
use crate::live::{Live, local_room};

/// `nobody`: a user other than the one the tests run as.
const NOBODY: u32 = 65534;

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|out| String::from_utf8_lossy(&out.stdout).trim() == "0")
}

/// Gives `dir` and everything in it to `uid` (and the group of the same number).
fn chown_all(dir: &Path, uid: u32) {
    std::os::unix::fs::chown(dir, Some(uid), Some(uid)).expect("chown");
    if dir.is_dir() {
        for entry in std::fs::read_dir(dir).expect("read_dir") {
            chown_all(&entry.expect("entry").path(), uid);
        }
    }
}

/// `earshot --home DIR ARGS…` as `uid`, with no environment leaking in.
fn run_as(home: &TestHome, uid: u32, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_earshot"))
        .uid(uid)
        .gid(uid)
        .env_remove("EARSHOT_HOME")
        .env_remove("RUST_LOG")
        .arg("--home")
        .arg(home.path())
        .args(args)
        .output()
        .expect("run earshot")
}

#[test]
fn a_running_nodes_control_socket_answers_its_owner_and_refuses_root() {
    if !is_root() {
        eprintln!("skipped: a second user's node needs root to start (CI runs as root)");
        return;
    }
    let ana = TestHome::new();
    let room = local_room(&ana, "Owners only");
    chown_all(ana.path(), NOBODY);
    let mut host = Live::start_as(
        "host",
        NOBODY,
        &ana,
        &["host", &room, "--input", "silence", "--output", "null"],
    );
    host.expect("hosting", |e| matches!(e, Event::Hosting { .. }));

    // The owner's command finds the database held, goes through the socket, and is answered by
    // the running node.
    let owner = run_as(&ana, NOBODY, &["room", "list", "--json"]);
    assert_eq!(code(&owner), 0, "{}", stderr(&owner));
    let rooms: serde_json::Value = serde_json::from_slice(&owner.stdout).expect("json");
    assert_eq!(rooms[0]["title"], "Owners only", "{rooms}");

    // Root's goes the same way and is refused, saying why.
    let root = run_as(&ana, 0, &["room", "list", "--json"]);
    assert_eq!(code(&root), 1, "{}", stderr(&root));
    assert!(
        root.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&root.stdout)
    );
    assert_eq!(
        stderr(&root),
        "earshot: refused: the node running on this data directory answers only the processes \
         of its owner (uid 65534)\n"
    );

    // The node goes on answering its owner.
    let again = run_as(&ana, NOBODY, &["room", "list", "--json"]);
    assert_eq!(code(&again), 0, "{}", stderr(&again));
    drop(host);
}
