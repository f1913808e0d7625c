//! `earshot demo`: a whole room on 127.0.0.1, one process per node, no sound card needed.
//!
//! A host speaks a speech sample (made with espeak-ng when it is installed, else a generated
//! speech-like signal) into the root of the relay tree; listeners join with the host's link,
//! each feeding up to `--fan-out` others, so that the default six make a tree three deep. While
//! the sample plays, a status table shows every node's place in the tree, frames received,
//! loss, jitter-buffer delay and mouth-to-ear latency; each listener writes what it heard to a
//! WAV file. At the end: delivery and latency per depth.
//!
//! Unless `--no-relay`, a community relay (`earshot relay`) runs too: the host asks it to carry
//! the room, and it takes [`RELAY_CHILDREN`] listeners (a real relay takes a hundred; two keep
//! the demo's tree deep).
//!
//! Everything the table shows comes from the nodes' own `--json` reports: the demo only starts
//! processes and reads what they print.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use clap::Args;
use earshot_node::audio::{SAMPLE_RATE, signal, wav};
use earshot_node::event::{DemoDepth, DemoNode, Event};
use serde_json::Value;

use super::Context;
use crate::Exit;
use crate::output::{print_event, say};

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// How many listeners join (each also relays to others).
    #[arg(long, default_value_t = 6, value_name = "N")]
    listeners: usize,
    /// How many listeners each listener feeds.
    #[arg(long, default_value_t = 2, value_name = "N")]
    fan_out: u16,
    /// How many listeners the host feeds itself.
    #[arg(long, default_value_t = 1, value_name = "N")]
    host_fan_out: u16,
    /// What the host says (a WAV file). Default: speech made with espeak-ng if it is
    /// installed, else a generated speech-like signal.
    #[arg(long, value_name = "FILE.wav")]
    input: Option<PathBuf>,
    /// Seconds of generated speech when there is no --input and no espeak-ng.
    #[arg(long, default_value_t = 15, value_name = "SECONDS")]
    seconds: u32,
    /// Where to keep the nodes' data directories, logs and the listeners' WAV files.
    /// Default: a new directory under the system's temporary directory.
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
    /// Run without a community relay carrying part of the room.
    #[arg(long)]
    no_relay: bool,
}

/// Listeners the demo's community relay feeds.
const RELAY_CHILDREN: u16 = 2;

/// Silence before the speech starts, so that every listener is in the tree for all of it.
const LEAD_IN: Duration = Duration::from_secs(3);
/// Silence after it, so that the last words reach the deepest listener.
const TAIL: Duration = Duration::from_secs(1);
/// How long the demo waits for a node to start, join, or exit.
const WAIT: Duration = Duration::from_secs(20);

const TEXT: &str = "Welcome to Earshot. This is a live audio room with no server in the \
    middle. The host speaks, and every listener hears it through a tree of other listeners, \
    each passing the audio on to a few more. If a listener in the middle leaves, the ones below \
    it find a new place within a second. Invites are signed links, and recordings stay on your \
    own machine. Thank you for listening.";

pub fn demo(ctx: &Context, args: DemoArgs) -> anyhow::Result<Exit> {
    if args.listeners == 0 {
        bail!("--listeners must be at least 1");
    }
    let dir = match &args.dir {
        Some(dir) => dir.clone(),
        None => std::env::temp_dir().join(format!("earshot-demo-{}", std::process::id())),
    };
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let exe = std::env::current_exe().context("finding the earshot binary")?;
    let human = !ctx.json;

    let (input, source) = prepare_input(&args, &dir)?;
    let speech = Duration::from_secs_f64(
        wav::read(&input)
            .with_context(|| format!("reading {}", input.display()))?
            .len() as f64
            / f64::from(SAMPLE_RATE),
    );
    if human {
        say!("Demo directory: {}", dir.display());
        say!(
            "The host will say {:.1} s of {source}; {} listeners, the host feeding {}, each listener {}.",
            speech.as_secs_f64() - (LEAD_IN + TAIL).as_secs_f64(),
            args.listeners,
            args.host_fan_out,
            args.fan_out
        );
        if !args.no_relay {
            say!(
                "A community relay (`earshot relay`) carries the room for the host and feeds \
                 {RELAY_CHILDREN} listeners."
            );
        }
    }

    let host_home = dir.join("host");
    let room = create_room(&exe, &host_home)?;
    let (tx, rx) = mpsc::channel();
    let mut table = Table::new(args.listeners, !args.no_relay);
    let relay_index = args.listeners + 1;
    let started = Instant::now();
    let relay = if args.no_relay {
        None
    } else {
        let config = dir.join("relay.toml");
        std::fs::write(
            &config,
            format!("max_children_per_room = {RELAY_CHILDREN}\n"),
        )
        .with_context(|| format!("writing {}", config.display()))?;
        let relay = Proc::start(
            &exe,
            "relay",
            &dir,
            &[
                "--json",
                "--home",
                path_str(&dir.join("relay"))?,
                "relay",
                "--listen",
                "/ip4/127.0.0.1/udp/0/quic-v1",
                "--config",
                path_str(&config)?,
            ],
            relay_index,
            tx.clone(),
        )?;
        let addr = loop {
            let (who, event) = next_event(&rx, started + WAIT, "the relay to start")?;
            table.update(who, &event);
            if let Event::Relay { addrs, .. } = &event {
                break addrs
                    .first()
                    .context("the relay printed no address")?
                    .to_string();
            }
        };
        Some((relay, addr))
    };
    let mut host_args = vec![
        "--json".to_owned(),
        "--home".to_owned(),
        path_str(&host_home)?.to_owned(),
        "host".to_owned(),
        room,
        "--name".to_owned(),
        "host".to_owned(),
        "--input".to_owned(),
        path_str(&input)?.to_owned(),
        "--max-children".to_owned(),
        args.host_fan_out.to_string(),
    ];
    if let Some((_, addr)) = &relay {
        host_args.extend(["--relay".to_owned(), addr.clone()]);
    }
    let host_args: Vec<&str> = host_args.iter().map(String::as_str).collect();
    let mut nodes = vec![Proc::start(&exe, "host", &dir, &host_args, 0, tx.clone())?];
    let mut link = None;
    // The link, and (with a relay) the relay carrying the room and in the tree (the host counts
    // it in its audience) before anyone joins, so that the tree starts as it will stay.
    let mut relay_in_tree = false;
    while link.is_none() || (relay.is_some() && !(table.relay_added && relay_in_tree)) {
        let (who, event) = next_event(&rx, started + WAIT, "the host to start")?;
        if who == 0
            && let Event::Error { message, .. } = &event
        {
            bail!("the host failed: {message}");
        }
        table.update(who, &event);
        if let Event::Hosting { listener_link, .. } = &event {
            link = Some(listener_link.to_string());
        }
        if who == 0
            && let Event::Audience { listeners, .. } = &event
        {
            relay_in_tree = *listeners >= 1;
        }
    }
    let link = link.context("the host printed no link")?;
    for i in 1..=args.listeners {
        let name = format!("l{i}");
        let home = dir.join(&name);
        let output = dir.join(format!("{name}.wav"));
        nodes.push(Proc::start(
            &exe,
            &name,
            &dir,
            &[
                "--json",
                "--home",
                path_str(&home)?,
                "join",
                &link,
                "--name",
                &name,
                "--listen",
                "/ip4/127.0.0.1/udp/0/quic-v1",
                "--output",
                path_str(&output)?,
                "--max-children",
                &args.fan_out.to_string(),
            ],
            i,
            tx.clone(),
        )?);
    }
    drop(tx);

    // Until the sample has been said: show the room.
    let end_at = started + speech;
    let tty = human && std::io::stdout().is_terminal();
    let mut next_draw = Instant::now() + Duration::from_secs(1);
    let mut drawn = 0;
    while Instant::now() < end_at {
        let deadline = next_draw.min(end_at);
        match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok((who, event)) => {
                if let Event::Rejected {
                    reason: message, ..
                }
                | Event::Error { message, .. } = &event
                {
                    bail!("{} failed: {message}", table.rows[who].name);
                }
                table.update(who, &event);
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => bail!("every node exited early"),
        }
        if Instant::now() >= next_draw {
            next_draw += Duration::from_secs(1);
            let elapsed = started.elapsed().as_secs();
            if ctx.json {
                print_event(&Event::DemoStatus {
                    nodes: table.json(),
                });
            } else if tty {
                drawn = table.redraw(drawn, elapsed);
            } else if elapsed.is_multiple_of(5) {
                table.redraw(0, elapsed);
            }
        }
    }

    // The end: the host closes the room; everyone reports its final numbers and exits.
    nodes[0].say("/end");
    let mut exited = vec![false; nodes.len()];
    // The relay stays up for other rooms: it is stopped below.
    exited.push(true);
    let deadline = Instant::now() + WAIT;
    while exited.iter().any(|done| !done) {
        match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok((who, event)) => {
                table.update(who, &event);
                // A node's last report comes as it exits.
                if matches!(&event, Event::AudioStats(stats) if stats.r#final) {
                    exited[who] = true;
                }
            }
            Err(_) => break,
        }
    }
    for node in &mut nodes {
        node.finish();
    }
    if let Some((mut relay, _)) = relay {
        relay.terminate();
    }
    let summary = table.summary();
    if ctx.json {
        print_event(&Event::DemoSummary {
            dir: dir.display().to_string(),
            nodes: table.json(),
            depths: summary
                .iter()
                .map(|d| DemoDepth {
                    depth: d.depth,
                    listeners: d.listeners,
                    delivered: d.delivered,
                    expected: d.expected,
                    latency_p50_ms: d.p50,
                    latency_p95_ms: d.p95,
                })
                .collect(),
        });
    } else {
        if tty {
            table.redraw(drawn, started.elapsed().as_secs());
        } else {
            table.redraw(0, started.elapsed().as_secs());
        }
        say!();
        say!("Summary. Mouth-to-ear: from the host's input to each listener's output, over the");
        say!("whole run (the first seconds included, while jitter buffers settle).");
        say!(
            "  {:>5}  {:>9}  {:>9}  {:>10}  {:>10}",
            "depth",
            "listeners",
            "delivered",
            "p50",
            "p95"
        );
        for depth in &summary {
            say!(
                "  {:>5}  {:>9}  {:>8.2}%  {:>10}  {:>10}",
                depth.depth,
                depth.listeners,
                100.0 * depth.delivered as f64 / depth.expected.max(1) as f64,
                ms(depth.p50),
                ms(depth.p95),
            );
        }
        say!();
        say!("What each listener heard:");
        for i in 1..=args.listeners {
            say!("  {}", dir.join(format!("l{i}.wav")).display());
        }
    }
    let all_heard = table.rows[1..]
        .iter()
        .filter(|row| !row.carrier)
        .all(|row| row.delivered > 0 && row.finished);
    Ok(Exit(if all_heard { 0 } else { 1 }))
}

/// The host's input: the given WAV file, or speech from espeak-ng, or a generated signal;
/// padded with [`LEAD_IN`] and [`TAIL`] of silence. Returns the file and what it holds.
fn prepare_input(args: &DemoArgs, dir: &Path) -> anyhow::Result<(PathBuf, String)> {
    let (samples, source) = match &args.input {
        Some(path) => (
            wav::read(path).with_context(|| format!("reading {}", path.display()))?,
            format!("{}", path.display()),
        ),
        None => {
            let spoken = dir.join("speech.wav");
            let espeak = Command::new("espeak-ng")
                .args(["-s", "165", "-w"])
                .arg(&spoken)
                .arg(TEXT)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
            match espeak {
                Ok(status) if status.success() => (
                    wav::read(&spoken).context("reading espeak-ng's speech")?,
                    "speech (espeak-ng)".to_owned(),
                ),
                _ => (
                    signal::speechlike(args.seconds as usize * SAMPLE_RATE as usize, 7),
                    "generated speech-like sound (install espeak-ng for real speech)".to_owned(),
                ),
            }
        }
    };
    let silence = |d: Duration| vec![0.0f32; (d.as_secs_f64() * f64::from(SAMPLE_RATE)) as usize];
    let mut padded = silence(LEAD_IN);
    padded.extend(samples);
    padded.extend(silence(TAIL));
    let input = dir.join("host-input.wav");
    wav::write(&input, &padded).with_context(|| format!("writing {}", input.display()))?;
    Ok((input, source))
}

fn create_room(exe: &Path, home: &Path) -> anyhow::Result<String> {
    let out = Command::new(exe)
        .arg("--json")
        .arg("--home")
        .arg(home)
        .args([
            "room",
            "new",
            "Earshot demo",
            "--listen",
            "/ip4/127.0.0.1/udp/0/quic-v1",
        ])
        .output()
        .context("running earshot room new")?;
    if !out.status.success() {
        bail!(
            "earshot room new failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let value: Value =
        serde_json::from_slice(&out.stdout).context("reading what earshot room new printed")?;
    Ok(value["id"]
        .as_str()
        .context("earshot room new printed no id")?
        .to_owned())
}

fn path_str(path: &Path) -> anyhow::Result<&str> {
    path.to_str()
        .with_context(|| format!("{} is not valid UTF-8", path.display()))
}

fn next_event(
    rx: &mpsc::Receiver<(usize, Event)>,
    deadline: Instant,
    what: &str,
) -> anyhow::Result<(usize, Event)> {
    rx.recv_timeout(deadline.saturating_duration_since(Instant::now()))
        .map_err(|_| anyhow::anyhow!("timed out waiting for {what}"))
}

fn ms(value: Option<u64>) -> String {
    value.map_or_else(|| "-".to_owned(), |v| format!("{v} ms"))
}

/// One node's process: its JSON lines go to the demo's channel.
struct Proc {
    child: Child,
    stdin: Option<ChildStdin>,
}

impl Proc {
    fn start(
        exe: &Path,
        name: &str,
        dir: &Path,
        args: &[&str],
        index: usize,
        events: mpsc::Sender<(usize, Event)>,
    ) -> anyhow::Result<Self> {
        let log = std::fs::File::create(dir.join(format!("{name}.log")))
            .with_context(|| format!("creating {name}.log"))?;
        let mut child = Command::new(exe)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {name}"))?;
        let stdout = child.stdout.take().context("no stdout")?;
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Ok(event) = serde_json::from_str::<Event>(&line)
                    && events.send((index, event)).is_err()
                {
                    break;
                }
            }
        });
        Ok(Self {
            stdin: child.stdin.take(),
            child,
        })
    }

    fn say(&mut self, line: &str) {
        if let Some(stdin) = self.stdin.as_mut() {
            let _ = writeln!(stdin, "{line}");
            let _ = stdin.flush();
        }
    }

    /// Stops a process that runs until signalled (the relay) with SIGTERM, then finishes it.
    fn terminate(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        self.finish();
    }

    /// Waits a little for the process to exit, then kills it.
    fn finish(&mut self) {
        drop(self.stdin.take());
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// What the demo knows of one node, from its reports.
#[derive(Debug, Default, Clone)]
struct Row {
    name: String,
    peer_id: String,
    parent: Option<String>,
    depth: Option<u64>,
    children: u64,
    received: u64,
    expected: u64,
    delivered: u64,
    buffer_ms: f64,
    p50: Option<u64>,
    p95: Option<u64>,
    repairs: u64,
    finished: bool,
    /// The community relay: it forwards, it does not listen.
    carrier: bool,
}

#[derive(Debug)]
struct Table {
    rows: Vec<Row>,
    /// The host said the relay will carry the room.
    relay_added: bool,
}

/// Per depth, at the end.
#[derive(Debug)]
struct DepthSummary {
    depth: u64,
    listeners: usize,
    delivered: u64,
    expected: u64,
    /// The median of the listeners' medians, and the worst listener's 95th percentile.
    p50: Option<u64>,
    p95: Option<u64>,
}

impl Table {
    fn new(listeners: usize, relay: bool) -> Self {
        let mut rows = vec![Row {
            name: "host".into(),
            depth: Some(0),
            ..Row::default()
        }];
        rows.extend((1..=listeners).map(|i| Row {
            name: format!("l{i}"),
            ..Row::default()
        }));
        if relay {
            rows.push(Row {
                name: "relay".into(),
                carrier: true,
                ..Row::default()
            });
        }
        Self {
            rows,
            relay_added: false,
        }
    }

    fn update(&mut self, who: usize, event: &Event) {
        if matches!(event, Event::RelayAdded { .. }) {
            self.relay_added = true;
        }
        let Some(row) = self.rows.get_mut(who) else {
            return;
        };
        match event {
            Event::RelayStats(stats) => {
                if let Some(room) = stats.rooms.first() {
                    if let Some(parent) = room.parent {
                        row.parent = Some(parent.to_string());
                    }
                    row.depth = room.depth.map(u64::from).or(row.depth);
                    row.children = room.children as u64;
                    row.received = room.received;
                }
            }
            Event::Hosting { peer_id, .. }
            | Event::Joined { peer_id, .. }
            | Event::Relay { peer_id, .. } => row.peer_id = peer_id.to_string(),
            Event::AudioAttached {
                repair_ms: Some(_), ..
            } => row.repairs += 1,
            Event::AudioStats(stats) => {
                // While re-attaching (and as the room ends) a node has no parent: show the
                // last one. The last report comes as the room closes: keep the tree as it was.
                if let Some(parent) = stats.parent {
                    row.parent = Some(parent.to_string());
                }
                if !stats.r#final {
                    row.depth = stats.depth.map(u64::from).or(row.depth);
                    row.children = stats.children as u64;
                }
                row.received = stats.received;
                row.expected = stats.expected;
                row.delivered = stats.delivered;
                row.buffer_ms = stats.buffer_ms;
                row.p50 = stats.latency_p50_ms;
                row.p95 = stats.latency_p95_ms;
                if stats.r#final {
                    row.finished = true;
                }
            }
            _ => {}
        }
    }

    fn name_of(&self, peer_id: &str) -> String {
        self.rows
            .iter()
            .find(|row| row.peer_id == peer_id)
            .map_or_else(
                || peer_id.chars().rev().take(6).collect::<String>(),
                |row| row.name.clone(),
            )
    }

    fn lines(&self, elapsed: u64) -> Vec<String> {
        let mut lines = vec![
            format!("t={elapsed:>3}s"),
            format!(
                "  {:<6} {:<7} {:>5} {:>8} {:>8} {:>7} {:>7} {:>9} {:>9}",
                "node",
                "parent",
                "depth",
                "children",
                "frames",
                "loss",
                "buffer",
                "m2e p50",
                "m2e p95"
            ),
        ];
        for (i, row) in self.rows.iter().enumerate() {
            let parent = match (&row.parent, i) {
                (_, 0) => "-".to_owned(),
                (Some(parent), _) => self.name_of(parent),
                (None, _) => "…".to_owned(),
            };
            // The host plays nothing; the relay plays nothing and shows the frames it passed on.
            let plays = i != 0 && !row.carrier;
            let frames = if row.carrier {
                row.received.to_string()
            } else if plays {
                row.delivered.to_string()
            } else {
                "-".to_owned()
            };
            let loss = if !plays || row.expected == 0 {
                "-".to_owned()
            } else {
                format!(
                    "{:.1}%",
                    100.0 * row.expected.saturating_sub(row.delivered) as f64 / row.expected as f64
                )
            };
            let buffer = if plays {
                format!("{:.0} ms", row.buffer_ms)
            } else {
                "-".to_owned()
            };
            lines.push(format!(
                "  {:<6} {:<7} {:>5} {:>8} {:>8} {:>7} {:>7} {:>9} {:>9}",
                row.name,
                parent,
                row.depth.map_or("-".to_owned(), |d| d.to_string()),
                row.children,
                frames,
                loss,
                buffer,
                ms(row.p50),
                ms(row.p95),
            ));
        }
        lines
    }

    /// Prints the table, first moving up over the `previous` lines drawn (on a terminal).
    /// Returns how many lines it drew.
    fn redraw(&self, previous: usize, elapsed: u64) -> usize {
        let lines = self.lines(elapsed);
        let mut out = std::io::stdout().lock();
        if previous > 0 {
            let _ = write!(out, "\x1b[{previous}A");
        }
        for line in &lines {
            let _ = writeln!(out, "\x1b[2K{line}");
        }
        let _ = out.flush();
        lines.len()
    }

    fn json(&self) -> Vec<DemoNode> {
        self.rows
            .iter()
            .map(|row| DemoNode {
                name: row.name.clone(),
                relay: row.carrier,
                peer_id: row.peer_id.clone(),
                parent: row.parent.as_deref().map(|p| self.name_of(p)),
                depth: row.depth,
                children: row.children,
                expected: row.expected,
                delivered: row.delivered,
                buffer_ms: row.buffer_ms,
                latency_p50_ms: row.p50,
                latency_p95_ms: row.p95,
                repairs: row.repairs,
            })
            .collect()
    }

    fn summary(&self) -> Vec<DepthSummary> {
        let mut by_depth: BTreeMap<u64, Vec<&Row>> = BTreeMap::new();
        for row in self.rows[1..].iter().filter(|row| !row.carrier) {
            if let Some(depth) = row.depth {
                by_depth.entry(depth).or_default().push(row);
            }
        }
        by_depth
            .into_iter()
            .map(|(depth, rows)| {
                let mut p50s: Vec<u64> = rows.iter().filter_map(|r| r.p50).collect();
                p50s.sort_unstable();
                DepthSummary {
                    depth,
                    listeners: rows.len(),
                    delivered: rows.iter().map(|r| r.delivered).sum(),
                    expected: rows.iter().map(|r| r.expected).sum(),
                    p50: p50s.get(p50s.len() / 2).copied(),
                    p95: rows.iter().filter_map(|r| r.p95).max(),
                }
            })
            .collect()
    }
}
