//! The async runtime every networked command runs on, and how they learn they should stop.

use anyhow::Context as _;

/// A tokio runtime for one command. [`Runtime::run`] does not wait, when done, for a thread
/// blocked on reading standard input.
pub struct Runtime(tokio::runtime::Runtime);

impl Runtime {
    /// Two worker threads: audio has threads of its own, the network needs few.
    pub fn new() -> anyhow::Result<Self> {
        Ok(Self(
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .context("starting the async runtime")?,
        ))
    }

    /// Runs `future` to its end, then drops the runtime without waiting for threads blocked
    /// on I/O (standard input's reader): whatever had to finish, `future` awaited.
    pub fn run<T>(self, future: impl std::future::Future<Output = T>) -> T {
        let result = self.0.block_on(future);
        self.0.shutdown_background();
        result
    }
}

/// Resolves when the process is asked to stop: Ctrl-C (SIGINT) or SIGTERM (a service manager).
pub async fn stop_requested() {
    let sigterm = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(err) => {
                tracing::warn!(%err, "cannot watch for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = sigterm => {}
    }
}
