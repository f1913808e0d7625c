//! The local control socket: how other `earshot` commands reach a running node.
//!
//! sled lets one process at a time open a data directory's database. While a node runs (hosting
//! or joining a room), it serves `control.sock` in the data directory; a command that finds the
//! database locked sends its arguments there instead, and the running node executes it with the
//! database it already holds. Requests and replies are one JSON line each. The socket is private
//! to the user: mode 0600 from the moment anyone could reach it, inside the 0700 data directory
//! (one others can read or write is refused), and it answers only processes of the data
//! directory's owner: another user's (root, who can reach any socket) is told so, its request
//! unread.

use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};

/// The socket's name inside the data directory.
pub const SOCKET: &str = "control.sock";
/// Longest request line accepted (arguments of one command).
const MAX_REQUEST_BYTES: usize = 64 * 1024;

/// A command to run in the node's process.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ControlRequest {
    /// The command's arguments, without the program name.
    pub args: Vec<String>,
    /// The caller's working directory: relative paths in the arguments are relative to it.
    #[serde(default)]
    pub cwd: Option<PathBuf>,
}

/// What the command printed and how it ended.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ControlReply {
    pub stdout: String,
    pub stderr: String,
    pub code: u8,
}

/// Why the control socket could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("no running node answers at {path}")]
    NotRunning { path: PathBuf, source: io::Error },
    #[error("control socket {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("the running node sent an unreadable reply: {0}")]
    BadReply(serde_json::Error),
}

/// Serves the socket until the returned task is aborted. `handler` runs each request on a
/// blocking thread (commands touch the database).
pub fn serve<H>(home: &Path, handler: H) -> Result<tokio::task::JoinHandle<()>, ControlError>
where
    H: Fn(ControlRequest) -> ControlReply + Send + Sync + 'static,
{
    let path = home.join(SOCKET);
    // A socket file left by a node that died is stale: nobody holds the database lock now.
    let _ = std::fs::remove_file(&path);
    let io_err = |source| ControlError::Io {
        path: path.clone(),
        source,
    };
    // Bound in a directory of its own that only this user can enter, made private, then moved
    // into place: nobody can connect in the moment between binding and the mode.
    let private = home.join(format!(".control-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&private);
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(&private)
        .map_err(io_err)?;
    let bound = private.join(SOCKET);
    let listener = UnixListener::bind(&bound).map_err(io_err);
    let placed = listener.and_then(|listener| {
        std::fs::set_permissions(&bound, std::fs::Permissions::from_mode(0o600))
            .and_then(|()| std::fs::rename(&bound, &path))
            .map_err(io_err)?;
        Ok(listener)
    });
    let _ = std::fs::remove_dir_all(&private);
    let listener = placed?;
    // Only this user's processes are answered (the owner of the data directory).
    let owner = std::fs::metadata(home).map_err(io_err)?.uid();
    let handler = Arc::new(handler);
    Ok(tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            match stream.peer_cred() {
                Ok(caller) if caller.uid() == owner => {}
                caller => {
                    tracing::warn!(?caller, "refused a control connection from another user");
                    tokio::spawn(refuse(stream, owner));
                    continue;
                }
            }
            let handler = Arc::clone(&handler);
            tokio::spawn(async move {
                if let Err(err) = answer(stream, handler).await {
                    tracing::debug!(%err, "control connection failed");
                }
            });
        }
    }))
}

/// Tells a process of another user that it is not answered, and why, without reading what it
/// sent.
async fn refuse(mut stream: UnixStream, owner: u32) {
    let reply = ControlReply {
        stderr: format!(
            "earshot: refused: the node running on this data directory answers only the \
             processes of its owner (uid {owner})\n"
        ),
        code: 1,
        ..Default::default()
    };
    let mut bytes = serde_json::to_vec(&reply).expect("a reply is strings and a number");
    bytes.push(b'\n');
    let _ = stream.write_all(&bytes).await;
}

async fn answer<H>(stream: UnixStream, handler: Arc<H>) -> io::Result<()>
where
    H: Fn(ControlRequest) -> ControlReply + Send + Sync + 'static,
{
    let (read, mut write) = stream.into_split();
    let mut line = String::new();
    let mut reader = BufReader::new(read.take(MAX_REQUEST_BYTES as u64));
    reader.read_line(&mut line).await?;
    let reply = match serde_json::from_str::<ControlRequest>(&line) {
        Ok(request) => tokio::task::spawn_blocking(move || handler(request))
            .await
            .unwrap_or_else(|_| ControlReply {
                stderr: "earshot: the command failed inside the running node\n".into(),
                code: 1,
                ..Default::default()
            }),
        Err(err) => ControlReply {
            stderr: format!("earshot: bad control request: {err}\n"),
            code: 2,
            ..Default::default()
        },
    };
    let mut bytes = serde_json::to_vec(&reply).map_err(io::Error::other)?;
    bytes.push(b'\n');
    write.write_all(&bytes).await?;
    write.shutdown().await
}

/// Sends a command to the node running on `home` and returns what it printed.
pub fn call(home: &Path, args: Vec<String>) -> Result<ControlReply, ControlError> {
    use std::io::{BufRead, Write};
    let path = home.join(SOCKET);
    let mut stream = std::os::unix::net::UnixStream::connect(&path).map_err(|source| {
        ControlError::NotRunning {
            path: path.clone(),
            source,
        }
    })?;
    let io_err = |source| ControlError::Io {
        path: path.clone(),
        source,
    };
    let request = ControlRequest {
        args,
        cwd: std::env::current_dir().ok(),
    };
    let mut request = serde_json::to_vec(&request).map_err(ControlError::BadReply)?;
    request.push(b'\n');
    match stream.write_all(&request) {
        // A node that refuses this process answers without reading the request, and may have
        // closed the connection before it was sent: its answer is still there to read.
        Err(err) if err.kind() == io::ErrorKind::BrokenPipe => {}
        written => written.map_err(io_err)?,
    }
    let mut line = String::new();
    io::BufReader::new(stream)
        .read_line(&mut line)
        .map_err(io_err)?;
    serde_json::from_str(&line).map_err(ControlError::BadReply)
}
