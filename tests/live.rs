//! `earshot host` and `earshot join` as child processes, driven through stdin and followed
//! through their `--json` event lines.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::harness::{TestHome, code, stderr};

const WAIT: Duration = Duration::from_secs(20);

/// A running `earshot` process whose stdout lines are parsed as JSON events.
struct Live {
    name: &'static str,
    child: Child,
    stdin: Option<ChildStdin>,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Live {
    fn start(name: &'static str, home: &TestHome, args: &[&str]) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_earshot"))
            .env_remove("EARSHOT_HOME")
            .env("RUST_LOG", "warn")
            .arg("--home")
            .arg(home.path())
            .arg("--json")
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start earshot");
        let stdout = child.stdout.take().expect("stdout is piped");
        let stdin = child.stdin.take();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Self {
            name,
            child,
            stdin,
            lines,
            seen: Vec::new(),
        }
    }

    /// Types a line into the process.
    fn say(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin open");
        writeln!(stdin, "{line}").expect("write to earshot");
        stdin.flush().expect("flush");
    }

    /// Waits for a JSON event matching `predicate`.
    fn expect(&mut self, what: &str, predicate: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if let Ok(value) = serde_json::from_str::<Value>(&line)
                        && predicate(&value)
                    {
                        return value;
                    }
                }
                Err(_) => panic!(
                    "{}: no {what} within {WAIT:?}; it printed:\n{}",
                    self.name,
                    self.seen.join("\n")
                ),
            }
        }
    }

    fn event(&mut self, event: &str) -> Value {
        self.expect(event, |v| v["event"] == event)
    }

    /// Waits for the process to exit and returns its code.
    fn exit_code(mut self) -> i32 {
        use wait_timeout::ChildExt;
        drop(self.stdin.take());
        match self.child.wait_timeout(WAIT).expect("wait for earshot") {
            Some(status) => status.code().unwrap_or(-1),
            None => panic!("{}: still running after {WAIT:?}", self.name),
        }
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn local_room(home: &TestHome, title: &str) -> String {
    let room = home.json(&[
        "room",
        "new",
        title,
        "--listen",
        "/ip4/127.0.0.1/udp/0/quic-v1",
    ]);
    room["id"].as_str().expect("id").to_owned()
}

const LOCAL: &str = "/ip4/127.0.0.1/udp/0/quic-v1";

#[test]
fn host_and_join_from_the_command_line() {
    let ana = TestHome::new();
    let joe = TestHome::new();
    let room = local_room(&ana, "Book club");
    let mut host = Live::start("host", &ana, &["host", &room, "--name", "ana"]);
    let hosting = host.event("hosting");
    let link = hosting["listener_link"].as_str().expect("link").to_owned();

    // While the host runs, other commands on its data directory go through it.
    let rooms = ana.json(&["room", "list"]);
    assert_eq!(rooms.as_array().map(Vec::len), Some(1), "{rooms}");
    let speaker = ana.invite(&[&room, "--role", "speaker"]);
    assert!(speaker.starts_with("earshot://join/"));

    let mut guest = Live::start(
        "joe",
        &joe,
        &["join", &link, "--name", "joe", "--listen", LOCAL],
    );
    let joined = guest.event("joined");
    assert_eq!(joined["role"], "listener");
    assert_eq!(joined["title"], "Book club");
    host.expect("joe joins", |v| {
        v["event"] == "member_joined" && v["name"] == "joe"
    });

    guest.say("/hand");
    host.expect("joe's hand", |v| {
        v["event"] == "hand_raised" && v["name"] == "joe"
    });
    host.say("/promote joe");
    guest.expect("promotion", |v| {
        v["event"] == "role_changed" && v["name"] == "joe" && v["role"] == "speaker"
    });
    guest.say("hi everyone");
    host.expect("joe's chat", |v| {
        v["event"] == "chat" && v["text"] == "hi everyone"
    });
    host.say("/react 🎉");
    guest.expect("the reaction", |v| {
        v["event"] == "reaction" && v["emoji"] == "🎉"
    });
    host.say("/who");
    let who = host.event("who");
    let members = who["members"].as_array().expect("members");
    assert_eq!(members.len(), 2, "{who}");

    host.say("/end");
    guest.event("room_ended");
    guest.expect("closing", |v| {
        v["event"] == "closed" && v["reason"] == "ended"
    });
    assert_eq!(guest.exit_code(), 0);
    assert_eq!(host.exit_code(), 0);
}

#[test]
fn a_removed_member_is_out_and_its_link_refused() {
    let ana = TestHome::new();
    let troll = TestHome::new();
    let room = local_room(&ana, "Town hall");
    let mut host = Live::start("host", &ana, &["host", &room]);
    let link = host.event("hosting")["listener_link"]
        .as_str()
        .expect("link")
        .to_owned();
    let mut guest = Live::start(
        "troll",
        &troll,
        &["join", &link, "--name", "troll", "--listen", LOCAL],
    );
    guest.event("joined");
    host.expect("troll joins", |v| {
        v["event"] == "member_joined" && v["name"] == "troll"
    });
    host.say("/remove troll");
    guest.expect("removal", |v| {
        v["event"] == "closed" && v["reason"] == "removed"
    });
    assert_eq!(guest.exit_code(), 1);

    let output = troll.run(&["join", &link, "--name", "troll", "--listen", LOCAL]);
    assert_eq!(code(&output), 1);
    assert!(stderr(&output).contains("removed"), "{}", stderr(&output));
    // Someone else holding the same (now revoked) link is refused too.
    let other = TestHome::new();
    let output = other.run(&["join", &link, "--listen", LOCAL]);
    assert_eq!(code(&output), 1);
    assert!(stderr(&output).contains("revoked"), "{}", stderr(&output));
    host.say("/end");
    assert_eq!(host.exit_code(), 0);
}

#[test]
fn joining_with_a_bad_link_fails_fast() {
    let ana = TestHome::new();
    let room = local_room(&ana, "Book club");
    let joe = TestHome::new();
    // Malformed: exit 2.
    let output = joe.run(&["join", "earshot://join/abc", "--listen", LOCAL]);
    assert_eq!(code(&output), 2);
    assert!(
        stderr(&output).contains("truncated or mistyped"),
        "{}",
        stderr(&output)
    );
    // Bound to someone else: refused before any network traffic.
    let other = TestHome::new();
    let bound = ana.invite(&[&room, "--role", "listener", "--for", &other.peer_id()]);
    let output = joe.run(&["join", &bound, "--listen", LOCAL]);
    assert_eq!(code(&output), 1);
    assert!(stderr(&output).contains("bound to"), "{}", stderr(&output));
    // Nobody hosting: the host is unreachable.
    let link = ana.invite(&[&room, "--role", "listener"]);
    let output = joe.run(&["join", &link, "--listen", LOCAL]);
    assert_eq!(code(&output), 1);
    assert!(
        stderr(&output).contains("unreachable") || stderr(&output).contains("did not answer"),
        "{}",
        stderr(&output)
    );
}
