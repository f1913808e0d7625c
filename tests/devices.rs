//! Sound devices: `earshot devices` through the binary, and the real cpal path (a tone played to
//! a speaker and heard on a microphone) on a private PulseAudio daemon whose null sink is a paced
//! virtual sound card. The second needs the `pulseaudio` program (Debian package `pulseaudio`),
//! and says it skipped when it is missing.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use earshot_node::audio::device::{self, DeviceError};
use earshot_node::audio::signal::sine;
use earshot_node::audio::{FRAME_SAMPLES, SAMPLE_RATE};
use serde_json::Value;

use crate::harness::{TestHome, stderr};

/// How long anything here may take: starting the daemon, opening a device, hearing the tone.
const WAIT: Duration = Duration::from_secs(15);

/// Set in the environment of the test binary re-run as the loopback child.
const LOOPBACK_CHILD: &str = "EARSHOT_TEST_LOOPBACK_CHILD";

/// The null sink's name (and so its monitor's, with `.monitor`).
const SINK: &str = "earshot_test";

#[test]
fn devices_json_lists_inputs_and_outputs_and_never_fails() {
    let home = TestHome::new();
    let output = home
        .cmd(&["devices", "--json"])
        // This machine's own audio system, not a daemon another test started.
        .env_remove("PULSE_SERVER")
        .output()
        .expect("run earshot");
    assert!(output.status.success(), "{}", stderr(&output));
    let list: Value = serde_json::from_slice(&output.stdout).expect("one JSON value");
    assert!(list["host"].is_string(), "{list}");
    assert!(list["note"].is_null() || list["note"].is_string(), "{list}");
    for key in ["inputs", "outputs"] {
        for device in list[key].as_array().expect("a list of devices") {
            assert!(device["name"].is_string(), "{device}");
            assert!(device["description"].is_string(), "{device}");
            assert!(device["is_default"].is_boolean(), "{device}");
            assert!(device["sample_rate"].is_u64() || device["sample_rate"].is_null());
            assert!(device["channels"].is_u64() || device["channels"].is_null());
        }
    }
    let nothing = list["inputs"].as_array().is_some_and(Vec::is_empty)
        && list["outputs"].as_array().is_some_and(Vec::is_empty);
    if nothing {
        // A machine without sound (like CI's): a note that says what to do instead.
        let note = list["note"]
            .as_str()
            .expect("a note when nothing is listed");
        assert!(note.contains("no sound card found"), "{note}");
        assert!(note.contains("--input"), "{note}");
    }

    let text = home.cmd(&["devices"]).env_remove("PULSE_SERVER").output();
    let text = text.expect("run earshot");
    assert!(text.status.success(), "{}", stderr(&text));
    let stdout = String::from_utf8_lossy(&text.stdout);
    assert!(stdout.starts_with("Audio system: "), "{stdout}");
    if nothing {
        assert!(stdout.contains("no sound card found"), "{stdout}");
    }
}

#[test]
fn without_a_sound_card_opening_the_defaults_says_what_to_use_instead() {
    let list = device::list().expect("listing works even without sound");
    if list.inputs.is_empty() {
        let err = device::open_capture(None).expect_err("no input device");
        assert!(matches!(err, DeviceError::NoDevice { .. }), "{err:?}");
        assert!(err.to_string().contains("use --input"), "{err}");
    } else {
        eprintln!("skipped the input half: this machine has an input device");
    }
    if list.outputs.is_empty() {
        let err = device::open_playback(None).expect_err("no output device");
        assert!(matches!(err, DeviceError::NoDevice { .. }), "{err:?}");
        assert!(err.to_string().contains("use --output"), "{err}");
    } else {
        eprintln!("skipped the output half: this machine has an output device");
    }
    let err = device::open_playback(Some("no such card")).expect_err("not there");
    assert!(matches!(err, DeviceError::NotFound { .. }), "{err:?}");
    assert!(err.to_string().contains("\"no such card\""), "{err}");
}

#[test]
fn a_tone_played_to_a_virtual_sound_card_is_heard_on_its_monitor() {
    if std::env::var_os(LOOPBACK_CHILD).is_some() {
        return loopback_through_the_device_api();
    }
    let Some(daemon) = PulseDaemon::start() else {
        eprintln!(
            "skipped: the real sound-device test needs the `pulseaudio` program (Debian package \
             `pulseaudio`), which is not installed"
        );
        return;
    };

    // `earshot devices` finds the daemon (cpal reads $PULSE_SERVER) and its null sink.
    let home = TestHome::new();
    let output = home
        .cmd(&["devices", "--json"])
        .env("PULSE_SERVER", &daemon.server)
        .env("PULSE_COOKIE", &daemon.cookie)
        .output()
        .expect("run earshot");
    assert!(output.status.success(), "{}", stderr(&output));
    let list: Value = serde_json::from_slice(&output.stdout).expect("one JSON value");
    assert_eq!(list["host"], "PulseAudio", "{list}");
    let default_named = |key: &str, name: &str| {
        list[key]
            .as_array()
            .expect("devices")
            .iter()
            .any(|d| d["name"] == name && d["is_default"] == true && d["sample_rate"].is_u64())
    };
    assert!(default_named("outputs", SINK), "{list}");
    assert!(
        default_named("inputs", &format!("{SINK}.monitor")),
        "{list}"
    );

    // The device API runs in a process of its own, this test binary again, because cpal finds
    // the server through the environment and a test cannot change its own.
    let test = "devices::a_tone_played_to_a_virtual_sound_card_is_heard_on_its_monitor";
    let mut child = Command::new(std::env::current_exe().expect("the test binary"))
        .args([test, "--exact", "--nocapture", "--test-threads=1"])
        .env("PULSE_SERVER", &daemon.server)
        .env("PULSE_COOKIE", &daemon.cookie)
        .env(LOOPBACK_CHILD, "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("re-run the test binary");
    let out = read_all(child.stdout.take().expect("piped"));
    let err = read_all(child.stderr.take().expect("piped"));
    let (Ok(out), Ok(err)) = (out.recv_timeout(WAIT * 3), err.recv_timeout(WAIT)) else {
        let _ = child.kill();
        let _ = child.wait();
        panic!("the loopback child did not finish in {:?}", WAIT * 3);
    };
    let status = child.wait().expect("child exit status");
    assert!(
        status.success() && out.contains("1 passed"),
        "loopback child failed ({status}):\n{out}\n{err}\n--- pulseaudio ---\n{}",
        daemon.log()
    );
    // libtest prints the child's output after "test … ... " on the same line.
    for line in out
        .lines()
        .filter_map(|line| line.find("loopback:").map(|at| &line[at..]))
    {
        println!("{line}");
    }
}

#[test]
fn a_pulseaudio_server_that_refuses_us_is_reported_not_silently_skipped() {
    let Some(daemon) = PulseDaemon::start() else {
        eprintln!(
            "skipped: the PulseAudio fallback test needs the `pulseaudio` program (Debian package \
             `pulseaudio`), which is not installed"
        );
        return;
    };
    // A machine where no PulseAudio client ever ran: an empty home, and no cookie where
    // $PULSE_COOKIE points. The client then sends an empty cookie, which the daemon refuses.
    // Each run gets a fresh home and cookie path: listing ALSA's devices may run libpulse (ALSA's
    // `pulse` plugin), which writes a cookie where $PULSE_COOKIE points.
    let devices = |args: &[&str]| {
        let empty_home = tempfile::tempdir().expect("temporary directory");
        let output = TestHome::new()
            .cmd(args)
            .env("PULSE_SERVER", &daemon.server)
            .env("PULSE_COOKIE", empty_home.path().join("no-cookie"))
            .env("HOME", empty_home.path())
            .env_remove("XDG_RUNTIME_DIR")
            .env_remove("PULSE_RUNTIME_PATH")
            .output()
            .expect("run earshot");
        assert!(output.status.success(), "{}", stderr(&output));
        String::from_utf8(output.stdout).expect("UTF-8")
    };
    let socket = daemon.server.trim_start_matches("unix:");

    let list: Value = serde_json::from_str(&devices(&["devices", "--json"])).expect("JSON");
    assert_ne!(list["host"], "PulseAudio", "{list}");
    let fallback = list["fallback"].as_str().expect("a fallback note");
    assert!(
        fallback.starts_with(&format!(
            "a PulseAudio server was found at {socket} but could not be used ("
        )),
        "{fallback}"
    );
    assert!(
        fallback.contains("no PulseAudio cookie was found"),
        "{fallback}"
    );
    assert!(fallback.contains("$PULSE_COOKIE"), "{fallback}");
    assert!(
        fallback.ends_with(&format!("; using {}", list["host"].as_str().expect("host"))),
        "{fallback}"
    );
    let note = list["note"].as_str().expect("a note");
    assert!(note.contains(fallback), "{note}");

    let text = devices(&["devices"]);
    assert!(
        text.contains(&format!("a PulseAudio server was found at {socket}")),
        "{text}"
    );
}

/// The body of the test above, in the child: plays one second of 1 kHz to the null sink through
/// [`device::open_playback`] and listens on its monitor through [`device::open_capture`].
fn loopback_through_the_device_api() {
    let (playback, sink) = device::open_playback(Some(SINK)).expect("open the null sink");
    let (capture, chunks) =
        device::open_capture(Some(&format!("{SINK}.monitor"))).expect("open its monitor");
    assert_eq!(capture.format().device, format!("{SINK}.monitor"));

    let tone = sine(1000.0, 0.5, SAMPLE_RATE as usize);
    let player = std::thread::spawn({
        let sink = sink.clone();
        move || {
            let start = Instant::now();
            let mut latency = Duration::ZERO;
            for chunk in tone.chunks(FRAME_SAMPLES) {
                sink.push(chunk)?;
                latency = latency.max(sink.latency());
            }
            Ok::<_, DeviceError>((start.elapsed(), latency))
        }
    });

    // Count the captured chunks that carry the tone, until half a second of it has arrived.
    let deadline = Instant::now() + WAIT;
    let (mut toned, mut seen) = (0, 0);
    while toned < 25 {
        let left = deadline.saturating_duration_since(Instant::now());
        let chunk = chunks.recv_timeout(left).unwrap_or_else(|err| {
            panic!("heard the tone in {toned} of {seen} chunks, then: {err}")
        });
        assert_eq!(chunk.len(), FRAME_SAMPLES);
        seen += 1;
        let (on, off) = (amplitude(&chunk, 1000.0), amplitude(&chunk, 3000.0));
        if on > 0.3 && off < 0.05 {
            toned += 1;
        }
    }

    let (took, latency) = player
        .join()
        .expect("player thread")
        .expect("every push is taken");
    // 50 chunks of 20 ms: the sink paces the player at the device's speed (a little under a
    // second, as the first pushes only fill the ring), not as fast as it can loop.
    assert!(took >= Duration::from_millis(800), "paced: {took:?}");
    assert!(took < WAIT, "{took:?}");
    assert!(latency >= Duration::from_millis(40), "{latency:?}");
    assert!(latency < Duration::from_millis(500), "{latency:?}");
    println!(
        "loopback: tone in {toned} of {seen} chunks; player took {took:?}; latency up to \
         {latency:?}; {:?}; {:?}",
        playback.stats(),
        capture.stats()
    );

    // Stopping the capture ends its chunks; stopping the playback fails later pushes at once.
    drop(capture);
    let end = Instant::now() + WAIT;
    loop {
        match chunks.recv_timeout(end.saturating_duration_since(Instant::now())) {
            Ok(_) => continue,
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
            Err(mpsc::RecvTimeoutError::Timeout) => panic!("capture did not stop"),
        }
    }
    drop(playback);
    let err = sink
        .push(&[0.0; FRAME_SAMPLES])
        .expect_err("the stream is gone");
    assert!(matches!(err, DeviceError::Stream { .. }), "{err}");
}

/// Reads `pipe` to its end on a thread of its own; the text arrives on the returned channel.
fn read_all(mut pipe: impl std::io::Read + Send + 'static) -> mpsc::Receiver<String> {
    let (text_tx, text) = mpsc::channel();
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = pipe.read_to_end(&mut bytes);
        let _ = text_tx.send(String::from_utf8_lossy(&bytes).into_owned());
    });
    text
}

/// The amplitude of the `hertz` component of `chunk` (Goertzel, at 48 kHz).
fn amplitude(chunk: &[f32], hertz: f32) -> f32 {
    let n = chunk.len() as f32;
    let k = (n * hertz / SAMPLE_RATE as f32).round();
    let coefficient = 2.0 * (std::f32::consts::TAU * k / n).cos();
    let (mut s1, mut s2) = (0.0f32, 0.0f32);
    for sample in chunk {
        let s0 = sample + coefficient * s1 - s2;
        s2 = s1;
        s1 = s0;
    }
    let power = s1 * s1 + s2 * s2 - coefficient * s1 * s2;
    2.0 * power.max(0.0).sqrt() / n
}

/// A PulseAudio daemon of this test's own: its socket, state and runtime files in a temporary
/// directory, one null sink, anonymous access. Killed on drop.
struct PulseDaemon {
    child: Child,
    /// `unix:/…/native`, for `$PULSE_SERVER`.
    server: String,
    /// An authentication cookie for clients, for `$PULSE_COOKIE`. The daemon accepts anyone
    /// (`auth-anonymous`), but the protocol still wants 256 bytes of cookie: the pure-Rust
    /// client cpal uses sends an empty one when the user has none (no
    /// `~/.config/pulse/cookie`, as on a machine where no PulseAudio client ever ran), the
    /// daemon refuses that as a protocol error, and cpal quietly falls back to ALSA.
    cookie: std::path::PathBuf,
    lines: mpsc::Receiver<String>,
    _dir: tempfile::TempDir,
}

impl PulseDaemon {
    /// Starts one and waits until it is ready; `None` when `pulseaudio` is not installed.
    fn start() -> Option<Self> {
        let dir = tempfile::tempdir().expect("temporary directory");
        let socket = dir.path().join("native");
        let cookie = dir.path().join("cookie");
        let mut bytes = [0u8; 256];
        getrandom::fill(&mut bytes).expect("random");
        std::fs::write(&cookie, bytes).expect("write a cookie");
        let script = dir.path().join("null.pa");
        std::fs::write(
            &script,
            format!(
                "load-module module-native-protocol-unix auth-anonymous=1 socket={}\n\
                 load-module module-null-sink sink_name={SINK}\n\
                 set-default-sink {SINK}\n\
                 set-default-source {SINK}.monitor\n",
                socket.display()
            ),
        )
        .expect("write the daemon's script");
        let mut child = match Self::command(dir.path(), &script).spawn() {
            Ok(child) => child,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return None,
            Err(err) => panic!("could not start pulseaudio: {err}"),
        };
        // Every line of its log goes to the channel, so the daemon never blocks on a full pipe.
        let (lines_tx, lines) = mpsc::channel();
        let log = child.stderr.take().expect("piped");
        std::thread::spawn(move || {
            for line in BufReader::new(log).lines().map_while(Result::ok) {
                if lines_tx.send(line).is_err() {
                    break;
                }
            }
        });
        let daemon = Self {
            child,
            server: format!("unix:{}", socket.display()),
            cookie,
            lines,
            _dir: dir,
        };
        daemon.wait_for_line("Daemon startup complete");
        Some(daemon)
    }

    fn command(dir: &Path, script: &Path) -> Command {
        let mut command = Command::new("pulseaudio");
        command
            .arg("--daemonize=no")
            .arg("-n")
            .arg("-F")
            .arg(script)
            .args([
                "--exit-idle-time=-1",
                "--disable-shm=yes",
                "--use-pid-file=no",
                "--high-priority=no",
                "--realtime=no",
                "--log-target=stderr",
                "--log-level=info",
            ])
            .env("HOME", dir)
            .env("XDG_RUNTIME_DIR", dir)
            .env("PULSE_RUNTIME_PATH", dir.join("runtime"))
            .env("PULSE_STATE_PATH", dir.join("state"))
            .env_remove("PULSE_SERVER")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        command
    }

    fn wait_for_line(&self, wanted: &str) {
        let deadline = Instant::now() + WAIT;
        let mut seen = Vec::new();
        loop {
            match self
                .lines
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            {
                Ok(line) if line.contains(wanted) => return,
                Ok(line) => seen.push(line),
                Err(err) => panic!(
                    "pulseaudio did not say \"{wanted}\" ({err}); it said:\n{}",
                    seen.join("\n")
                ),
            }
        }
    }

    /// What the daemon logged since it started up.
    fn log(&self) -> String {
        self.lines.try_iter().collect::<Vec<_>>().join("\n")
    }
}

impl Drop for PulseDaemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
