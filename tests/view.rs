//! The room view, driven through a pseudo-terminal as a person would: what is on the screen
//! (parsed by a terminal emulator, `vt100`) after keys are pressed and the room changes.

use std::io::{Read, Write};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use earshot_node::Event;
use portable_pty::{CommandBuilder, PtySize, native_pty_system};

use crate::harness::TestHome;
use crate::live::{LOCAL, listener, local_room, tone_host};

/// How long the screen may take to show what a test waits for.
const SHOWN: Duration = Duration::from_secs(20);

/// Keys as a terminal sends them.
const F2: &str = "\x1bOQ";
const F4: &str = "\x1bOS";
const TAB: &str = "\t";
const DOWN: &str = "\x1b[B";
const CTRL_C: &str = "\x03";

/// A screen and what has been drawn on it.
struct Shared {
    parser: Mutex<vt100::Parser>,
    drawn: Condvar,
}

/// `earshot` in a pseudo-terminal.
struct OnScreen {
    name: &'static str,
    shared: Arc<Shared>,
    master: Box<dyn portable_pty::MasterPty + Send>,
    keys: Box<dyn Write + Send>,
    killer: Box<dyn portable_pty::ChildKiller + Send + Sync>,
    exited: std::sync::mpsc::Receiver<u32>,
}

impl OnScreen {
    fn start(name: &'static str, home: &TestHome, args: &[&str], (cols, rows): (u16, u16)) -> Self {
        let pty = native_pty_system()
            .openpty(PtySize {
                rows,
                cols,
                pixel_width: 0,
                pixel_height: 0,
            })
            .expect("a pseudo-terminal");
        let mut command = CommandBuilder::new(env!("CARGO_BIN_EXE_earshot"));
        command.env_remove("EARSHOT_HOME");
        command.env("TERM", "xterm-256color");
        command.env(
            "RUST_LOG",
            std::env::var("EARSHOT_TEST_LOG").unwrap_or_else(|_| "warn".into()),
        );
        command.cwd(home.path());
        command.arg("--home");
        command.arg(home.path());
        command.args(args);
        let mut child = pty.slave.spawn_command(command).expect("start earshot");
        drop(pty.slave);
        let shared = Arc::new(Shared {
            parser: Mutex::new(vt100::Parser::new(rows, cols, 0)),
            drawn: Condvar::new(),
        });
        let mut reader = pty.master.try_clone_reader().expect("read the terminal");
        let drawing = Arc::clone(&shared);
        std::thread::spawn(move || {
            let mut buffer = [0u8; 8192];
            while let Ok(n) = reader.read(&mut buffer) {
                if n == 0 {
                    break;
                }
                drawing
                    .parser
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .process(&buffer[..n]);
                drawing.drawn.notify_all();
            }
        });
        let killer = child.clone_killer();
        let (tx, exited) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            if let Ok(status) = child.wait() {
                let _ = tx.send(status.exit_code());
            }
        });
        let keys = pty.master.take_writer().expect("write to the terminal");
        Self {
            name,
            shared,
            master: pty.master,
            keys,
            killer,
            exited,
        }
    }

    /// The screen's rows now.
    fn rows(&self) -> Vec<String> {
        let parser = self.shared.parser.lock().expect("parser");
        let (_, cols) = parser.screen().size();
        parser.screen().rows(0, cols).collect()
    }

    /// Waits until the screen shows `what` (`check` of its rows holds); returns its rows.
    fn wait_for(&self, what: &str, check: impl Fn(&[String]) -> bool) -> Vec<String> {
        let deadline = Instant::now() + SHOWN;
        let mut parser = self.shared.parser.lock().expect("parser");
        loop {
            let (_, cols) = parser.screen().size();
            let rows: Vec<String> = parser.screen().rows(0, cols).collect();
            if check(&rows) {
                return rows;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero(),
                "{}: the screen never showed {what}:\n{}",
                self.name,
                rows.join("\n")
            );
            parser = self
                .shared
                .drawn
                .wait_timeout(parser, left)
                .expect("parser")
                .0;
        }
    }

    fn press(&mut self, keys: &str) {
        self.keys.write_all(keys.as_bytes()).expect("type");
        self.keys.flush().expect("type");
    }

    fn resize(&mut self, cols: u16, rows: u16) {
        self.shared
            .parser
            .lock()
            .expect("parser")
            .screen_mut()
            .set_size(rows, cols);
        self.master
            .resize(PtySize {
                rows,
                cols,
                pixel_width: 0,
                pixel_height: 0,
            })
            .expect("resize");
    }

    fn exit_code(self) -> u32 {
        self.exited
            .recv_timeout(Duration::from_secs(20))
            .unwrap_or_else(|_| panic!("{} did not exit:\n{}", self.name, self.rows().join("\n")))
    }
}

impl Drop for OnScreen {
    fn drop(&mut self) {
        let _ = self.killer.kill();
    }
}

fn row_with<'a>(rows: &'a [String], text: &str) -> Option<&'a String> {
    rows.iter().skip(1).find(|row| row.contains(text))
}

/// A listener's view of a recorded room with a host saying a tone: the recording shown at
/// once, the host's meter moving as it mutes and unmutes, a hand raised with a key and brought
/// on stage, the agreement to be recorded asked for and given with a key, chat both ways, a
/// resize, and Ctrl-C leaving.
#[test]
fn a_listener_sees_the_room_live_and_acts_with_keys() {
    let (ana, joe) = (TestHome::new(), TestHome::new());
    let room = local_room(&ana, "Book club");
    let mut host = tone_host(&ana, &room, &[]);
    let link = host.listener_link();
    host.say("/record start");
    host.expect("recording", |e| matches!(e, Event::Recording { .. }));
    let mut view = OnScreen::start(
        "joe",
        &joe,
        &[
            "join", &link, "--name", "joe", "--listen", LOCAL, "--input", "sine:660", "--output",
            "null",
        ],
        (80, 24),
    );
    // Told at once that the room is recorded: the header, and the join line in the log.
    let rows = view.wait_for("the recording", |rows| {
        rows[0].contains("● REC") && rows.iter().any(|r| r.contains("being recorded"))
    });
    assert!(rows[0].contains("Book club"), "{}", rows.join("\n"));
    // The host's tone fills its meter; muted, it empties; unmuted, it fills again.
    let loud = |rows: &[String]| row_with(rows, "★ host").is_some_and(|r| r.contains("████"));
    let quiet = |rows: &[String]| row_with(rows, "★ host").is_some_and(|r| r.contains("······"));
    view.wait_for("the host's meter filling", loud);
    host.say("/mute-self");
    view.wait_for("the host's meter empty", quiet);
    host.say("/unmute-self");
    view.wait_for("the host's meter filling again", loud);
    // F2 raises joe's hand: the host hears of it, joe's screen lists it.
    view.press(F2);
    host.expect(
        "joe's hand",
        |e| matches!(e, Event::HandRaised { name, .. } if name == "joe"),
    );
    view.wait_for("joe's hand", |rows| {
        rows.iter().any(|r| r.contains("1. joe (you)")) && rows[0].contains("✋")
    });
    // On stage in a recorded room: held until joe agrees, told how on the status line.
    host.say("/promote joe");
    let rows = view.wait_for("joe on stage, held", |rows| {
        row_with(rows, "  joe").is_some_and(|r| r.contains("muted"))
            && rows[21].contains("microphone is off until you agree")
    });
    assert!(
        !rows.iter().any(|r| r.contains("1. joe")),
        "the hand is down: {}",
        rows.join("\n")
    );
    view.press(F4);
    host.expect(
        "joe's agreement",
        |e| matches!(e, Event::RecordingConsent { name, .. } if name == "joe"),
    );
    view.wait_for("joe's own meter filling", |rows| {
        row_with(rows, "  joe").is_some_and(|r| r.contains("████"))
            && !rows[21].contains("until you agree")
    });
    // Chat both ways.
    host.say("hello joe");
    view.wait_for("the host's chat", |rows| {
        rows.iter().any(|r| r.contains("[host] hello joe"))
    });
    view.press("hi ana\r");
    host.expect(
        "joe's chat",
        |e| matches!(e, Event::Chat { name, text, .. } if name == "joe" && text == "hi ana"),
    );
    // A smaller terminal: drawn again to fit, the input line second from the bottom.
    view.resize(60, 20);
    view.wait_for("the room redrawn at 60×20", |rows| {
        rows.len() == 20
            && rows[0].contains("● REC")
            && rows[18].starts_with("> ")
            && row_with(rows, "★ host").is_some()
    });
    view.press(CTRL_C);
    assert_eq!(view.exit_code(), 0);
    // Joe's goodbye, or (if it was lost as his node closed) his silence past the presence
    // timeout (15 s).
    host.expect_within(
        "joe gone",
        Duration::from_secs(40),
        |e| matches!(e, Event::MemberLeft { name, .. } if name == "joe"),
    );
    host.say("/end");
    assert_eq!(host.exit_code(), 0);
}

/// The host's view: a listener's hand appears, and Tab, Down and `u` bring it on stage.
#[test]
fn a_host_brings_a_raised_hand_on_stage_with_keys() {
    let (ana, joe) = (TestHome::new(), TestHome::new());
    let room = local_room(&ana, "Open mic");
    let mut view = OnScreen::start(
        "host",
        &ana,
        &["host", &room, "--input", "sine", "--output", "null"],
        (80, 24),
    );
    let rows = view.wait_for("the listener link", |rows| {
        rows.iter().any(|r| r.contains("Listener link"))
    });
    assert!(rows[0].contains("Open mic"), "{}", rows.join("\n"));
    let link = ana.invite(&[&room, "--role", "listener"]);
    let mut joe_node = listener("joe", &joe, &link, &[]);
    joe_node.expect("joined", |e| matches!(e, Event::Joined { .. }));
    joe_node.say("/hand");
    view.wait_for("joe's hand", |rows| {
        rows.iter().any(|r| r.contains("Hands (1)")) && rows.iter().any(|r| r.contains("1. joe"))
    });
    // Tab to the people (the host first), Down to joe's hand, `u` brings joe up.
    view.press(TAB);
    view.press(DOWN);
    view.press("u");
    joe_node.expect("joe a speaker", |e| {
        matches!(e, Event::RoleChanged { name, role, .. }
            if name == "joe" && *role == earshot_protocol::state::RoomRole::Speaker)
    });
    view.wait_for("joe on stage", |rows| {
        row_with(rows, "  joe").is_some() && rows.iter().any(|r| r.contains("Hands (0)"))
    });
    view.press(CTRL_C);
    assert_eq!(view.exit_code(), 0);
    joe_node.expect("the room closed", |e| matches!(e, Event::Closed { .. }));
}
