//! What the relay benches (`relay_plane`, `community_relay`) share: their command line, a tokio
//! runtime per node that knows its threads (so that one node's CPU time can be read from
//! `/proc/self/task/<tid>/schedstat`), the machine's counters (load average, the process's CPU,
//! UDP datagrams sent), driving a swarm, the room helpers every node of theirs uses, and the
//! closed-loop speaker.
//!
//! Each bench includes it with `mod support;`. It sits in a folder of its own (`support/mod.rs`)
//! so that cargo does not take it for a bench: cargo finds benches in `benches/*.rs` and
//! `benches/*/main.rs` only. Everything here is used by both benches (a bench that left an item
//! unused would warn about dead code), so what only one of them needs stays in that bench.

use std::collections::HashMap;
use std::fs;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use earshot_node::fanout::{Fanout, FanoutOptions, Gate, Open};
use earshot_protocol::RoomId;
use earshot_protocol::loudest::DEFAULT_FORWARDED;
use futures::StreamExt;
use libp2p::swarm::{NetworkBehaviour, SwarmEvent};
use libp2p::{Multiaddr, PeerId, Swarm};
use tokio::task::JoinHandle;

/// A 32 kbps Opus frame: 4000 bytes a second in 50 frames.
pub const PAYLOAD_BYTES: usize = 80;
/// The real pace: one frame per 20 ms.
pub const FRAME_INTERVAL: Duration = Duration::from_millis(20);
/// Kernel clock ticks per second for `/proc/*/stat` (`USER_HZ`, 100 on every Linux build that
/// matters).
const USER_HZ: u64 = 100;

// ---------------------------------------------------------------------------------------------
// Command line

/// The bench's command line. Options are looked up by name, so anything else (such as cargo's
/// own `--bench`) is ignored.
pub struct CommandLine(Vec<String>);

impl CommandLine {
    pub fn read() -> Self {
        Self(std::env::args().collect())
    }

    /// Whether the flag `name` (such as `--quick`) was given.
    pub fn flag(&self, name: &str) -> bool {
        self.0.iter().any(|a| a == name)
    }

    /// The word after the option `name`, if it was given.
    pub fn value(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .position(|a| a == name)
            .and_then(|i| self.0.get(i + 1))
            .map(String::as_str)
    }

    /// `--children 50,200`: the fan-out sizes, or `default`.
    pub fn children(&self, default: &[usize]) -> Vec<usize> {
        self.value("--children").map_or_else(
            || default.to_vec(),
            |list| {
                list.split(',')
                    .map(|n| n.trim().parse().expect("--children takes numbers"))
                    .collect()
            },
        )
    }

    /// `--relay-threads N`: the relay's tokio workers, 2 (as in the CLI) unless given.
    pub fn relay_threads(&self) -> usize {
        self.value("--relay-threads")
            .map(|n| n.parse().expect("--relay-threads takes a number"))
            .unwrap_or(2)
    }
}

// ---------------------------------------------------------------------------------------------
// Runtimes and CPU time

/// A multi-thread tokio runtime standing for one node's process; it knows its threads' ids.
pub struct NodeRuntime {
    runtime: tokio::runtime::Runtime,
    threads: Arc<Mutex<Vec<u32>>>,
}

/// CPU time, of some threads or of the whole process.
#[derive(Clone, Copy, Default, Debug)]
pub struct Cpu {
    /// Time on a CPU (`schedstat`, nanoseconds).
    pub total: Duration,
    /// User and kernel time (`stat`, 10 ms ticks).
    pub user: Duration,
    pub system: Duration,
}

impl NodeRuntime {
    /// `workers` worker threads, each named `name`.
    pub fn new(name: &str, workers: usize) -> Self {
        let threads = Arc::new(Mutex::new(Vec::new()));
        let record = Arc::clone(&threads);
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(workers)
            .thread_name(name)
            .enable_all()
            .on_thread_start(move || {
                if let Some(tid) = current_tid() {
                    record.lock().expect("thread list").push(tid);
                }
            })
            .build()
            .expect("node runtime");
        Self { runtime, threads }
    }

    /// Runs `future` on this runtime and waits for it.
    pub async fn run<F>(&self, future: F) -> F::Output
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.runtime.spawn(future).await.expect("bench task")
    }

    pub fn spawn<F>(&self, future: F) -> JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.runtime.spawn(future)
    }

    /// Runs `f` on one of this runtime's blocking threads (its CPU time counts in
    /// [`NodeRuntime::cpu`]).
    pub fn spawn_blocking<F, R>(&self, f: F) -> JoinHandle<R>
    where
        F: FnOnce() -> R + Send + 'static,
        R: Send + 'static,
    {
        self.runtime.spawn_blocking(f)
    }

    /// CPU time of every thread this runtime has started (its workers, and any blocking threads).
    pub fn cpu(&self) -> Cpu {
        let threads = self.threads.lock().expect("thread list").clone();
        threads
            .into_iter()
            .map(thread_cpu)
            .fold(Cpu::default(), Cpu::add)
    }

    pub fn shutdown(self) {
        self.runtime.shutdown_background();
    }
}

impl Cpu {
    fn add(self, other: Cpu) -> Cpu {
        Cpu {
            total: self.total + other.total,
            user: self.user + other.user,
            system: self.system + other.system,
        }
    }

    pub fn since(self, earlier: Cpu) -> Cpu {
        Cpu {
            total: self.total.saturating_sub(earlier.total),
            user: self.user.saturating_sub(earlier.user),
            system: self.system.saturating_sub(earlier.system),
        }
    }

    /// The share of user and kernel time spent in the kernel (0 to 1).
    pub fn system_share(self) -> f64 {
        let ticks = (self.user + self.system).as_secs_f64();
        if ticks == 0.0 {
            0.0
        } else {
            self.system.as_secs_f64() / ticks
        }
    }
}

/// The whole process, exited threads included (10 ms ticks).
pub fn process_cpu() -> Cpu {
    let (user, system) = stat_times("/proc/self/stat");
    Cpu {
        total: user + system,
        user,
        system,
    }
}

fn current_tid() -> Option<u32> {
    // "/proc/thread-self" links to "<pid>/task/<tid>".
    fs::read_link("/proc/thread-self")
        .ok()?
        .file_name()?
        .to_str()?
        .parse()
        .ok()
}

fn thread_cpu(tid: u32) -> Cpu {
    let total = fs::read_to_string(format!("/proc/self/task/{tid}/schedstat"))
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .map(Duration::from_nanos)
        .unwrap_or_default();
    let (user, system) = stat_times(&format!("/proc/self/task/{tid}/stat"));
    Cpu {
        total,
        user,
        system,
    }
}

/// User and system time from a `/proc/.../stat` line (fields 14 and 15, after the command).
fn stat_times(path: &str) -> (Duration, Duration) {
    let Ok(stat) = fs::read_to_string(path) else {
        return Default::default();
    };
    let Some((_, fields)) = stat.rsplit_once(')') else {
        return Default::default();
    };
    let fields: Vec<&str> = fields.split_whitespace().collect();
    let ticks = |i: usize| {
        let ticks: u64 = fields.get(i).and_then(|f| f.parse().ok()).unwrap_or(0);
        Duration::from_millis(ticks * 1000 / USER_HZ)
    };
    // fields[0] is field 3 (state): utime is field 14, stime field 15.
    (ticks(11), ticks(12))
}

// ---------------------------------------------------------------------------------------------
// The machine

/// The CPUs this process may use (0 if unknown).
pub fn cpus() -> usize {
    std::thread::available_parallelism().map_or(0, |n| n.get())
}

/// The 1-minute load average, as `/proc/loadavg` gives it.
pub fn load_average() -> String {
    fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|load| load.split_whitespace().next().map(str::to_owned))
        .unwrap_or_else(|| "?".into())
}

/// Prints the line that opens the results of `bench`: the CPUs, and the load average before the
/// run (`load_before`, from [`load_average`]) and now.
pub fn print_machine(bench: &str, load_before: &str) {
    println!(
        "{bench}: {} CPUs; load average (1 min) {} before, {} after: other work on the machine \
         shares the CPUs with this run",
        cpus(),
        load_before,
        load_average(),
    );
}

/// UDP datagrams sent in this network namespace (`/proc/net/snmp`): every process's, not only
/// this one's.
pub fn udp_datagrams_sent() -> u64 {
    let Ok(snmp) = fs::read_to_string("/proc/net/snmp") else {
        return 0;
    };
    let mut lines = snmp.lines().filter(|line| line.starts_with("Udp:"));
    let (Some(names), Some(values)) = (lines.next(), lines.next()) else {
        return 0;
    };
    names
        .split_whitespace()
        .position(|name| name == "OutDatagrams")
        .and_then(|i| values.split_whitespace().nth(i))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

// ---------------------------------------------------------------------------------------------
// Swarms

/// Listens on `addr` and waits for the swarm's first listen address.
pub async fn listen<B: NetworkBehaviour>(swarm: &mut Swarm<B>, addr: Multiaddr) -> Multiaddr {
    swarm.listen_on(addr).expect("listen");
    loop {
        if let SwarmEvent::NewListenAddr { address, .. } = swarm.select_next_some().await {
            break address;
        }
    }
}

/// Polls `swarm` in a task of the current runtime for as long as the runtime lives, handing
/// every event to `on_event`.
pub fn poll_forever<B, F>(mut swarm: Swarm<B>, mut on_event: F)
where
    B: NetworkBehaviour + Send + 'static,
    Swarm<B>: Send,
    F: FnMut(SwarmEvent<B::ToSwarm>) + Send + 'static,
{
    tokio::spawn(async move {
        loop {
            on_event(swarm.select_next_some().await);
        }
    });
}

// ---------------------------------------------------------------------------------------------
// Rooms

/// Why listen streams ended and were opened again, and how often.
#[derive(Clone, Default)]
pub struct Reopened(Arc<Mutex<HashMap<String, u64>>>);

impl Reopened {
    pub fn count(&self) -> u64 {
        self.0.lock().expect("reasons").values().sum()
    }

    pub fn reasons(&self) -> String {
        let reasons = self.0.lock().expect("reasons");
        let mut reasons: Vec<_> = reasons.iter().map(|(r, n)| format!("{n}× {r}")).collect();
        reasons.sort();
        reasons.join(", ")
    }
}

/// The host's room options, as `AudioSession::host` sets them: the host selects the loudest
/// speakers (the benches have one, always selected).
pub fn host_options() -> FanoutOptions {
    FanoutOptions {
        myself: None,
        forward_loudest: Some(DEFAULT_FORWARDED),
    }
}

/// The audio plane's gate for benches of the plane alone: every stream admitted, no tickets.
pub fn admit_all() -> Arc<dyn Gate> {
    Arc::new(Open)
}

/// Waits until `relay` feeds `n` children in `room`; panics after `within`.
pub async fn attached(relay: &Fanout, room: RoomId, n: usize, within: Duration) {
    let mut children = relay.children(&room).expect("room is open");
    tokio::time::timeout(within, children.wait_for(|c| *c >= n))
        .await
        .unwrap_or_else(|_| panic!("{n} children did not attach within {} s", within.as_secs()))
        .expect("relay alive");
}

/// Listens to `parent` in `room` for as long as the runtime lives, opening the stream again when
/// it ends (as a member would, after asking the host); records why it ended.
pub async fn keep_listening(relay: Fanout, room: RoomId, parent: PeerId, reopened: Reopened) {
    loop {
        let reason = match relay.listen(room, parent, &[]).await {
            Ok(_draining) => "the parent is leaving".to_owned(),
            Err(err) => err.to_string(),
        };
        *reopened
            .0
            .lock()
            .expect("reasons")
            .entry(reason)
            .or_default() += 1;
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Waits until the children stop receiving (the relay's queues have drained), at most 3 s;
/// `delivered` gives the frames all the children have received so far.
pub async fn settle(delivered: impl Fn() -> u64) {
    let mut last = delivered();
    let mut still = 0;
    for _ in 0..60 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let now = delivered();
        still = if now == last { still + 1 } else { 0 };
        last = now;
        if still >= 3 {
            return;
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The speaker

/// What the speaker's capture thread did.
pub struct Spoken {
    /// Frames handed to the speak stream.
    pub frames: u64,
    /// The sequence number after the last frame.
    pub next_seq: u32,
    pub sending: Duration,
    /// Closed loop: times the slowest child made no progress for 100 ms and the speaker went on.
    pub stalls: u64,
}

/// The closed loop of a speaker's capture thread: the frames it sent against each child's
/// progress, both counted from a baseline, so that it stays at most a window of frames ahead of
/// the slowest child.
pub struct ClosedLoop<P> {
    /// Each child's frames received so far.
    progress: P,
    baseline: Vec<u64>,
    sent_since_baseline: u64,
    waiting_since: Option<Instant>,
    stalls: u64,
}

impl<P, I> ClosedLoop<P>
where
    P: Fn() -> I,
    I: Iterator<Item = u64>,
{
    /// Takes the baseline now.
    pub fn new(progress: P) -> Self {
        let baseline = progress().collect();
        Self {
            progress,
            baseline,
            sent_since_baseline: 0,
            waiting_since: None,
            stalls: 0,
        }
    }

    /// Whether the next frame may go: the speaker is less than `window` frames ahead of the
    /// slowest child. If not, it sleeps 50 µs before saying so (the caller asks again); or, once
    /// the slowest child has made no progress for 100 ms (a frame lost on the way: it should not
    /// happen), it counts a stall and takes the baseline afresh.
    pub fn ready(&mut self, window: u64) -> bool {
        let slowest = (self.progress)()
            .zip(&self.baseline)
            .map(|(now, base)| now - base)
            .min()
            .unwrap_or(self.sent_since_baseline);
        if self.sent_since_baseline.saturating_sub(slowest) < window {
            self.waiting_since = None;
            return true;
        }
        let since = *self.waiting_since.get_or_insert_with(Instant::now);
        if since.elapsed() > Duration::from_millis(100) {
            self.stalls += 1;
            self.baseline = (self.progress)().collect();
            self.sent_since_baseline = 0;
            self.waiting_since = None;
        } else {
            std::thread::sleep(Duration::from_micros(50));
        }
        false
    }

    /// Counts a frame handed to the speak stream.
    pub fn sent(&mut self) {
        self.sent_since_baseline += 1;
    }

    /// Times the speaker went on after a stall (see [`ClosedLoop::ready`]).
    pub fn stalls(&self) -> u64 {
        self.stalls
    }
}
