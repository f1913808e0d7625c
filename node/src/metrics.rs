//! Prometheus metrics: named counters and gauges, and a tiny HTTP endpoint serving them.
//!
//! Series are registered up front ([`Metrics::counter`], [`Metrics::gauge`], and the labelled
//! [`Metrics::counter_vec`] and [`Metrics::gauge_vec`] with one label such as `room`); the
//! handles they return are atomics, so counting on the hot path (a forwarded audio frame) takes
//! no lock. Registering, looking up a labelled series and rendering take the registry's lock.
//!
//! [`Metrics::render`] writes the text exposition format 0.0.4 in a deterministic order
//! (families by name, series by label value); [`serve`] answers `GET /metrics` with it on a
//! plain HTTP/1.1 listener (one short-lived connection per scrape, no keep-alive).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};

/// The registry of every series: cheap to clone (an `Arc` inside), shared by whoever counts and
/// by the endpoint that renders.
#[derive(Debug, Clone, Default)]
pub struct Metrics {
    families: Arc<Mutex<BTreeMap<&'static str, Family>>>,
}

/// A monotonic counter (a `_total` series). Cloning shares the value.
#[derive(Debug, Clone)]
pub struct Counter {
    value: Arc<AtomicU64>,
}

/// A value that goes up and down (children attached, rooms served). Cloning shares the value.
#[derive(Debug, Clone)]
pub struct Gauge {
    value: Arc<AtomicI64>,
}

/// A counter family with one label: [`CounterVec::with`] gives the series for a label value.
#[derive(Debug, Clone)]
pub struct CounterVec {
    series: Series<AtomicU64>,
}

/// A gauge family with one label: [`GaugeVec::with`] gives the series for a label value.
#[derive(Debug, Clone)]
pub struct GaugeVec {
    series: Series<AtomicI64>,
}

/// Why the metrics endpoint could not start.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    #[error("cannot listen for metrics on {addr}: {source}")]
    Bind { addr: SocketAddr, source: io::Error },
    #[error("the metrics listener has no local address: {0}")]
    LocalAddr(io::Error),
}

/// Longest request head (request line and headers) read from a client. A Prometheus scrape
/// sends a few hundred bytes; anything longer is answered 431 and closed.
const MAX_HEAD_BYTES: usize = 4 * 1024;
/// How long a client has to send its request head, and then again to take the answer: a slow
/// or silent client loses its connection, it never keeps a slot for long.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(5);
/// Connections served at once. A scraper needs one; past this, a connection is answered 503 and
/// closed at once, so a flood of idle sockets costs at most this many tasks.
const MAX_CONNECTIONS: usize = 32;
/// Pause after a failed `accept` (out of file descriptors, say), so that the loop does not spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// The content type of the text exposition format.
const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Series of one family by label value (`""` for a family without a label).
type Series<A> = Arc<Mutex<BTreeMap<String, Arc<A>>>>;

#[derive(Debug)]
struct Family {
    help: &'static str,
    label: Option<&'static str>,
    cells: Cells,
}

#[derive(Debug)]
enum Cells {
    Counter(Series<AtomicU64>),
    Gauge(Series<AtomicI64>),
}

impl Metrics {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers (or finds again) the counter `name`.
    ///
    /// # Panics
    ///
    /// If `name` is not a valid Prometheus metric name, or is already registered as another
    /// kind or with a label: metric names are constants in the code, so either is a bug.
    pub fn counter(&self, name: &'static str, help: &'static str) -> Counter {
        let series = self.counter_series(name, help, None);
        Counter {
            value: cell(&series, ""),
        }
    }

    /// Registers (or finds again) the gauge `name`.
    ///
    /// # Panics
    ///
    /// As [`Metrics::counter`].
    pub fn gauge(&self, name: &'static str, help: &'static str) -> Gauge {
        let series = self.gauge_series(name, help, None);
        Gauge {
            value: cell(&series, ""),
        }
    }

    /// Registers (or finds again) the counter family `name` with one label.
    ///
    /// # Panics
    ///
    /// As [`Metrics::counter`], and if `label` is not a valid label name.
    pub fn counter_vec(
        &self,
        name: &'static str,
        help: &'static str,
        label: &'static str,
    ) -> CounterVec {
        CounterVec {
            series: self.counter_series(name, help, Some(label)),
        }
    }

    /// Registers (or finds again) the gauge family `name` with one label.
    ///
    /// # Panics
    ///
    /// As [`Metrics::counter_vec`].
    pub fn gauge_vec(
        &self,
        name: &'static str,
        help: &'static str,
        label: &'static str,
    ) -> GaugeVec {
        GaugeVec {
            series: self.gauge_series(name, help, Some(label)),
        }
    }

    /// Every family in the text exposition format 0.0.4: `# HELP`, `# TYPE` and the samples,
    /// families sorted by name and series by label value.
    pub fn render(&self) -> String {
        let families = lock(&self.families);
        let mut out = String::new();
        for (name, family) in families.iter() {
            let (kind, samples) = match &family.cells {
                Cells::Counter(series) => ("counter", samples(series)),
                Cells::Gauge(series) => ("gauge", samples(series)),
            };
            let _ = writeln!(out, "# HELP {name} {}", escape_help(family.help));
            let _ = writeln!(out, "# TYPE {name} {kind}");
            for (label_value, value) in samples {
                match family.label {
                    Some(label) => {
                        let value_text = escape_label_value(&label_value);
                        let _ = writeln!(out, "{name}{{{label}=\"{value_text}\"}} {value}");
                    }
                    None => {
                        let _ = writeln!(out, "{name} {value}");
                    }
                }
            }
        }
        out
    }

    fn counter_series(
        &self,
        name: &'static str,
        help: &'static str,
        label: Option<&'static str>,
    ) -> Series<AtomicU64> {
        let mut families = self.register(name, label);
        let family = families.entry(name).or_insert_with(|| Family {
            help,
            label,
            cells: Cells::Counter(Series::default()),
        });
        match &family.cells {
            Cells::Counter(series) if family.label == label => Arc::clone(series),
            _ => panic!("metric {name} is already registered as another kind or label"),
        }
    }

    fn gauge_series(
        &self,
        name: &'static str,
        help: &'static str,
        label: Option<&'static str>,
    ) -> Series<AtomicI64> {
        let mut families = self.register(name, label);
        let family = families.entry(name).or_insert_with(|| Family {
            help,
            label,
            cells: Cells::Gauge(Series::default()),
        });
        match &family.cells {
            Cells::Gauge(series) if family.label == label => Arc::clone(series),
            _ => panic!("metric {name} is already registered as another kind or label"),
        }
    }

    /// Checks the names and takes the registry's lock.
    fn register(
        &self,
        name: &'static str,
        label: Option<&'static str>,
    ) -> MutexGuard<'_, BTreeMap<&'static str, Family>> {
        assert!(valid_metric_name(name), "invalid metric name {name:?}");
        if let Some(label) = label {
            assert!(valid_label_name(label), "invalid label name {label:?}");
        }
        lock(&self.families)
    }
}

impl Counter {
    /// Adds one.
    pub fn inc(&self) {
        self.add(1);
    }

    /// Adds `n`.
    pub fn add(&self, n: u64) {
        self.value.fetch_add(n, Ordering::Relaxed);
    }

    /// Sets the value, to mirror a count kept elsewhere (a swarm's running total). Counters
    /// never go down: pass only values at least the previous one.
    pub fn set(&self, value: u64) {
        self.value.store(value, Ordering::Relaxed);
    }

    /// The current value.
    pub fn get(&self) -> u64 {
        self.value.load(Ordering::Relaxed)
    }
}

impl Gauge {
    /// Sets the value.
    pub fn set(&self, value: i64) {
        self.value.store(value, Ordering::Relaxed);
    }

    /// Adds one.
    pub fn inc(&self) {
        self.add(1);
    }

    /// Subtracts one.
    pub fn dec(&self) {
        self.add(-1);
    }

    /// Adds `n` (which may be negative).
    pub fn add(&self, n: i64) {
        self.value.fetch_add(n, Ordering::Relaxed);
    }

    /// The current value.
    pub fn get(&self) -> i64 {
        self.value.load(Ordering::Relaxed)
    }
}

impl CounterVec {
    /// The series for `label_value`, created at zero the first time. Keep the handle rather
    /// than calling this per event: the lookup takes a lock.
    pub fn with(&self, label_value: &str) -> Counter {
        Counter {
            value: cell(&self.series, label_value),
        }
    }

    /// Drops the series for `label_value` (a room that ended) from what is rendered. Handles
    /// still held keep counting, unseen.
    pub fn remove(&self, label_value: &str) {
        lock(&self.series).remove(label_value);
    }
}

impl GaugeVec {
    /// The series for `label_value`, created at zero the first time. Keep the handle rather
    /// than calling this per event: the lookup takes a lock.
    pub fn with(&self, label_value: &str) -> Gauge {
        Gauge {
            value: cell(&self.series, label_value),
        }
    }

    /// Drops the series for `label_value` (a room that ended) from what is rendered. Handles
    /// still held keep counting, unseen.
    pub fn remove(&self, label_value: &str) {
        lock(&self.series).remove(label_value);
    }
}

/// Serves `GET /metrics` on `addr` until the returned task is aborted (aborting it also ends
/// the connections being served). Returns the address actually bound (for port 0).
pub async fn serve(
    metrics: Metrics,
    addr: SocketAddr,
) -> Result<(SocketAddr, JoinHandle<()>), MetricsError> {
    serve_with(metrics, addr, Limits::default()).await
}

/// The endpoint's limits (shortened by the tests).
#[derive(Debug, Clone, Copy)]
struct Limits {
    client_timeout: Duration,
    max_connections: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            client_timeout: CLIENT_TIMEOUT,
            max_connections: MAX_CONNECTIONS,
        }
    }
}

async fn serve_with(
    metrics: Metrics,
    addr: SocketAddr,
    limits: Limits,
) -> Result<(SocketAddr, JoinHandle<()>), MetricsError> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| MetricsError::Bind { addr, source })?;
    let bound = listener.local_addr().map_err(MetricsError::LocalAddr)?;
    tracing::info!(addr = %bound, "serving metrics");
    let task = tokio::spawn(accept_loop(listener, metrics, limits));
    Ok((bound, task))
}

/// Accepts connections and serves each in its own task; the tasks live in a `JoinSet`, so they
/// are counted and end with this loop.
async fn accept_loop(listener: TcpListener, metrics: Metrics, limits: Limits) {
    let mut connections = JoinSet::new();
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            Some(done) = connections.join_next() => {
                if let Err(err) = done {
                    tracing::warn!(%err, "metrics connection task failed");
                }
                continue;
            }
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(err) => {
                tracing::warn!(%err, "metrics listener cannot accept");
                tokio::time::sleep(ACCEPT_BACKOFF).await;
                continue;
            }
        };
        while let Some(done) = connections.try_join_next() {
            if let Err(err) = done {
                tracing::warn!(%err, "metrics connection task failed");
            }
        }
        if connections.len() >= limits.max_connections {
            tracing::warn!(%peer, "too many metrics connections: refused");
            refuse(stream);
            continue;
        }
        tracing::debug!(%peer, "metrics connection");
        connections.spawn(answer(stream, metrics.clone(), limits));
    }
}

/// Answers 503 without waiting: one non-blocking write of a short response (which fits any
/// fresh socket's send buffer), then close.
fn refuse(stream: TcpStream) {
    use std::io::Write as _;
    let response = response(Status::Unavailable, b"too many connections\n", false);
    if let Ok(stream) = stream.into_std() {
        let _ = (&stream).write(&response);
    }
}

/// Reads one request head, answers it and closes.
async fn answer(mut stream: TcpStream, metrics: Metrics, limits: Limits) {
    let head = tokio::time::timeout(limits.client_timeout, read_head(&mut stream)).await;
    let response = match head {
        Err(_elapsed) => response(Status::Timeout, b"request timeout\n", false),
        Ok(Err(err)) => {
            tracing::debug!(%err, "metrics connection failed");
            return;
        }
        Ok(Ok(Head::Closed)) => return,
        Ok(Ok(Head::TooLarge)) => response(Status::TooLarge, b"request head too large\n", false),
        Ok(Ok(Head::Complete(head))) => route(&head, &metrics),
    };
    let write = async {
        stream.write_all(&response).await?;
        stream.shutdown().await
    };
    match tokio::time::timeout(limits.client_timeout, write).await {
        Ok(Ok(())) => {}
        Ok(Err(err)) => tracing::debug!(%err, "metrics connection failed"),
        Err(_elapsed) => tracing::debug!("metrics client too slow to read"),
    }
}

enum Head {
    /// The request line and headers, up to the blank line.
    Complete(Vec<u8>),
    /// More than `MAX_HEAD_BYTES` without a blank line.
    TooLarge,
    /// The client closed before finishing its head.
    Closed,
}

async fn read_head(stream: &mut TcpStream) -> io::Result<Head> {
    let mut head = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    loop {
        // Never read past one byte over the limit: what is read is all that is judged.
        let room = (MAX_HEAD_BYTES + 1 - head.len()).min(chunk.len());
        let n = stream.read(&mut chunk[..room]).await?;
        if n == 0 {
            return Ok(Head::Closed);
        }
        let searched_from = head.len().saturating_sub(3);
        head.extend_from_slice(&chunk[..n]);
        if let Some(end) = find(&head[searched_from..], b"\r\n\r\n") {
            head.truncate(searched_from + end);
            return Ok(Head::Complete(head));
        }
        if head.len() > MAX_HEAD_BYTES {
            return Ok(Head::TooLarge);
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Status {
    Ok,
    BadRequest,
    NotFound,
    MethodNotAllowed,
    Timeout,
    TooLarge,
    Unavailable,
}

impl Status {
    fn line(self) -> &'static str {
        match self {
            Status::Ok => "200 OK",
            Status::BadRequest => "400 Bad Request",
            Status::NotFound => "404 Not Found",
            Status::MethodNotAllowed => "405 Method Not Allowed",
            Status::Timeout => "408 Request Timeout",
            Status::TooLarge => "431 Request Header Fields Too Large",
            Status::Unavailable => "503 Service Unavailable",
        }
    }
}

/// The response to a complete request head.
fn route(head: &[u8], metrics: &Metrics) -> Vec<u8> {
    let line = head.split(|&b| b == b'\r').next().unwrap_or_default();
    let Ok(line) = std::str::from_utf8(line) else {
        return response(Status::BadRequest, b"bad request\n", false);
    };
    let mut parts = line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return response(Status::BadRequest, b"bad request\n", false);
    };
    let is_token = !method.is_empty() && method.bytes().all(|b| b.is_ascii_alphabetic());
    if !is_token || !target.starts_with('/') || !version.starts_with("HTTP/1.") {
        return response(Status::BadRequest, b"bad request\n", false);
    }
    let path = target.split('?').next().unwrap_or_default();
    if path != "/metrics" {
        return response(Status::NotFound, b"not found: try /metrics\n", false);
    }
    match method {
        "GET" => response(Status::Ok, metrics.render().as_bytes(), false),
        "HEAD" => response(Status::Ok, metrics.render().as_bytes(), true),
        _ => response(Status::MethodNotAllowed, b"method not allowed\n", false),
    }
}

/// A whole HTTP/1.1 response that closes the connection; `head_only` leaves the body out (for
/// `HEAD`) but still tells its length.
fn response(status: Status, body: &[u8], head_only: bool) -> Vec<u8> {
    let content_type = match status {
        Status::Ok => CONTENT_TYPE,
        _ => "text/plain; charset=utf-8",
    };
    let allow = match status {
        Status::MethodNotAllowed => "Allow: GET, HEAD\r\n",
        _ => "",
    };
    let mut out = format!(
        "HTTP/1.1 {}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n{allow}\
         Connection: close\r\n\r\n",
        status.line(),
        body.len(),
    )
    .into_bytes();
    if !head_only {
        out.extend_from_slice(body);
    }
    out
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// The registry's locks guard plain maps that every operation leaves consistent, so a panic
/// elsewhere while one was held does not make them unusable.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

fn cell<A: Default>(series: &Series<A>, label_value: &str) -> Arc<A> {
    let mut series = lock(series);
    match series.get(label_value) {
        Some(cell) => Arc::clone(cell),
        None => {
            let cell = Arc::new(A::default());
            series.insert(label_value.to_owned(), Arc::clone(&cell));
            cell
        }
    }
}

/// Reading either kind of cell for rendering.
trait Load {
    type Value: std::fmt::Display;
    fn load_relaxed(&self) -> Self::Value;
}

impl Load for AtomicU64 {
    type Value = u64;
    fn load_relaxed(&self) -> u64 {
        self.load(Ordering::Relaxed)
    }
}

impl Load for AtomicI64 {
    type Value = i64;
    fn load_relaxed(&self) -> i64 {
        self.load(Ordering::Relaxed)
    }
}

/// Each series' label value and rendered value, in label order.
fn samples<A: Load>(series: &Series<A>) -> Vec<(String, String)> {
    lock(series)
        .iter()
        .map(|(label, cell)| (label.clone(), cell.load_relaxed().to_string()))
        .collect()
}

/// `[a-zA-Z_:][a-zA-Z0-9_:]*`
fn valid_metric_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    bytes
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_' || b == b':')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b':')
}

/// `[a-zA-Z_][a-zA-Z0-9_]*`, not starting with `__` (reserved for Prometheus).
fn valid_label_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    !name.starts_with("__")
        && bytes
            .next()
            .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// Help text escapes `\` and line feeds.
fn escape_help(help: &str) -> String {
    help.replace('\\', "\\\\").replace('\n', "\\n")
}

/// Label values escape `\`, `"` and line feeds.
fn escape_label_value(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn example() -> Metrics {
        let metrics = Metrics::new();
        let frames = metrics.counter(
            "earshot_frames_forwarded_total",
            "Audio frames forwarded to children",
        );
        frames.inc();
        frames.add(41);
        metrics.gauge("earshot_rooms", "Rooms served").set(3);
        let children = metrics.gauge_vec("earshot_children", "Children attached", "room");
        children.with("b-room").set(7);
        children.with("a\"room\\\n").dec();
        metrics.counter_vec(
            "earshot_dropped_frames_total",
            "Frames dropped\nfor slow children",
            "room",
        );
        metrics
    }

    #[test]
    fn renders_the_text_format_in_a_fixed_order() {
        let expected = "\
# HELP earshot_children Children attached
# TYPE earshot_children gauge
earshot_children{room=\"a\\\"room\\\\\\n\"} -1
earshot_children{room=\"b-room\"} 7
# HELP earshot_dropped_frames_total Frames dropped\\nfor slow children
# TYPE earshot_dropped_frames_total counter
# HELP earshot_frames_forwarded_total Audio frames forwarded to children
# TYPE earshot_frames_forwarded_total counter
earshot_frames_forwarded_total 42
# HELP earshot_rooms Rooms served
# TYPE earshot_rooms gauge
earshot_rooms 3
";
        assert_eq!(example().render(), expected);
    }

    #[test]
    fn registering_again_shares_the_series() {
        let metrics = Metrics::new();
        let a = metrics.counter("x_total", "X");
        let b = metrics.clone().counter("x_total", "X");
        a.inc();
        b.add(2);
        assert_eq!(a.get(), 3);
        b.set(2);
        a.inc();
        assert_eq!(b.get(), 3);
        let rooms = metrics.counter_vec("y_total", "Y", "room");
        rooms.with("r").inc();
        metrics.counter_vec("y_total", "Y", "room").with("r").inc();
        assert_eq!(rooms.with("r").get(), 2);
        assert_eq!(
            metrics.render(),
            "# HELP x_total X\n# TYPE x_total counter\nx_total 3\n\
             # HELP y_total Y\n# TYPE y_total counter\ny_total{room=\"r\"} 2\n"
        );
        rooms.remove("r");
        assert_eq!(
            metrics.render(),
            "# HELP x_total X\n# TYPE x_total counter\nx_total 3\n\
             # HELP y_total Y\n# TYPE y_total counter\n"
        );
    }

    #[test]
    fn counts_from_many_threads() {
        let metrics = Metrics::new();
        let counter = metrics.counter("n_total", "N");
        let gauge = metrics.gauge("g", "G");
        std::thread::scope(|scope| {
            for _ in 0..4 {
                scope.spawn(|| {
                    for _ in 0..1000 {
                        counter.inc();
                        gauge.inc();
                        gauge.dec();
                    }
                });
            }
        });
        assert_eq!(counter.get(), 4000);
        assert_eq!(gauge.get(), 0);
    }

    #[test]
    fn names_are_checked() {
        assert!(valid_metric_name("earshot_frames_total"));
        assert!(valid_metric_name("ns:sub_total"));
        assert!(!valid_metric_name(""));
        assert!(!valid_metric_name("1abc"));
        assert!(!valid_metric_name("a-b"));
        assert!(valid_label_name("room"));
        assert!(!valid_label_name("__name"));
        assert!(!valid_label_name("a:b"));
    }

    /// Sends `request` (if any), reads until the server closes, and splits the answer into
    /// status line, headers and body.
    async fn exchange(addr: SocketAddr, request: &[u8]) -> (String, String, String) {
        let mut stream = TcpStream::connect(addr).await.expect("connect");
        stream.write_all(request).await.expect("write request");
        read_response(&mut stream).await
    }

    async fn read_response(stream: &mut TcpStream) -> (String, String, String) {
        let mut bytes = Vec::new();
        stream.read_to_end(&mut bytes).await.expect("read response");
        let text = String::from_utf8(bytes).expect("utf-8 response");
        let (head, body) = text.split_once("\r\n\r\n").expect("a response head");
        let (status, headers) = head.split_once("\r\n").expect("a status line");
        (status.to_owned(), headers.to_owned(), body.to_owned())
    }

    async fn start(metrics: Metrics, limits: Limits) -> (SocketAddr, JoinHandle<()>) {
        let any: SocketAddr = "127.0.0.1:0".parse().expect("an address");
        serve_with(metrics, any, limits).await.expect("serving")
    }

    #[tokio::test]
    async fn serves_metrics_over_http() {
        let metrics = example();
        let any: SocketAddr = "127.0.0.1:0".parse().expect("an address");
        let (addr, server) = serve(metrics.clone(), any).await.expect("serving");
        assert_ne!(addr.port(), 0);

        let (status, headers, body) = exchange(
            addr,
            b"GET /metrics HTTP/1.1\r\nHost: x\r\nAccept: text/plain\r\n\r\n",
        )
        .await;
        assert_eq!(status, "HTTP/1.1 200 OK");
        assert!(
            headers.contains("Content-Type: text/plain; version=0.0.4"),
            "{headers}"
        );
        assert!(
            headers.contains(&format!("Content-Length: {}", body.len())),
            "{headers}"
        );
        assert_eq!(body, metrics.render());

        // Counting after a scrape shows in the next one.
        metrics.gauge("earshot_rooms", "Rooms served").set(9);
        let (_, _, body) = exchange(addr, b"GET /metrics?x=1 HTTP/1.0\r\n\r\n").await;
        assert!(body.contains("earshot_rooms 9\n"), "{body}");

        let (status, headers, body) = exchange(addr, b"HEAD /metrics HTTP/1.1\r\n\r\n").await;
        assert_eq!(status, "HTTP/1.1 200 OK");
        assert!(headers.contains("Content-Length: "), "{headers}");
        assert_eq!(body, "");

        let (status, _, _) = exchange(addr, b"GET / HTTP/1.1\r\n\r\n").await;
        assert_eq!(status, "HTTP/1.1 404 Not Found");
        let (status, _, _) = exchange(addr, b"GET /metrics/x HTTP/1.1\r\n\r\n").await;
        assert_eq!(status, "HTTP/1.1 404 Not Found");
        let (status, headers, _) = exchange(addr, b"POST /metrics HTTP/1.1\r\n\r\n").await;
        assert_eq!(status, "HTTP/1.1 405 Method Not Allowed");
        assert!(headers.contains("Allow: GET, HEAD"), "{headers}");
        server.abort();
    }

    #[tokio::test]
    async fn garbage_gets_400_and_a_huge_head_431() {
        let (addr, server) = start(Metrics::new(), Limits::default()).await;
        for garbage in [
            &b"\x00\x01\x02 hello\r\n\r\n"[..],
            b"GET\r\n\r\n",
            b"GET /metrics\r\n\r\n",
            b"GET /metrics SPDY/3\r\n\r\n",
            b"GET  /metrics HTTP/1.1\r\n\r\n",
            b"G\xffT /metrics HTTP/1.1\r\n\r\n",
        ] {
            let (status, _, _) = exchange(addr, garbage).await;
            assert_eq!(status, "HTTP/1.1 400 Bad Request", "{garbage:?}");
        }
        // Exactly one byte over the limit: the server reads all of it before answering.
        let huge = vec![b'A'; MAX_HEAD_BYTES + 1];
        let (status, _, _) = exchange(addr, &huge).await;
        assert_eq!(status, "HTTP/1.1 431 Request Header Fields Too Large");
        server.abort();
    }

    #[tokio::test]
    async fn a_silent_client_holds_up_nobody_and_times_out() {
        let limits = Limits {
            client_timeout: Duration::from_millis(200),
            ..Limits::default()
        };
        let (addr, server) = start(example(), limits).await;
        let mut silent = TcpStream::connect(addr).await.expect("connect");
        silent.write_all(b"GET /met").await.expect("write");
        let (status, _, _) = exchange(addr, b"GET /metrics HTTP/1.1\r\n\r\n").await;
        assert_eq!(status, "HTTP/1.1 200 OK");
        // The silent client is cut off once its time is up.
        let (status, _, _) = read_response(&mut silent).await;
        assert_eq!(status, "HTTP/1.1 408 Request Timeout");
        server.abort();
    }

    #[tokio::test]
    async fn connections_past_the_bound_get_503() {
        let limits = Limits {
            max_connections: 1,
            ..Limits::default()
        };
        let (addr, server) = start(example(), limits).await;
        let mut first = TcpStream::connect(addr).await.expect("connect");
        // The second connection is accepted after the first and finds its slot taken.
        let mut second = TcpStream::connect(addr).await.expect("connect");
        let (status, _, _) = read_response(&mut second).await;
        assert_eq!(status, "HTTP/1.1 503 Service Unavailable");
        // The first is still served.
        first
            .write_all(b"GET /metrics HTTP/1.1\r\n\r\n")
            .await
            .expect("write");
        let (status, _, _) = read_response(&mut first).await;
        assert_eq!(status, "HTTP/1.1 200 OK");
        server.abort();
    }

    #[tokio::test]
    async fn binding_a_taken_port_is_a_typed_error() {
        let (addr, server) = start(Metrics::new(), Limits::default()).await;
        match serve(Metrics::new(), addr).await {
            Err(MetricsError::Bind { addr: failed, .. }) => assert_eq!(failed, addr),
            other => panic!("expected a bind error, got {other:?}"),
        }
        server.abort();
    }
}
