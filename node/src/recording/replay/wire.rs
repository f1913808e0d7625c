//! The replay stream's framing: requests and responses in turn, each a `u32` big-endian length
//! and a canonical postcard [`ReplayRequest`](earshot_protocol::replay::ReplayRequest) /
//! [`ReplayResponse`](earshot_protocol::replay::ReplayResponse), bounded in size before reading.

use std::io;

use earshot_protocol::codec::DecodeError;
use earshot_protocol::replay::MAX_RESPONSE_BYTES;
use futures::{AsyncReadExt, AsyncWriteExt};

use super::REQUEST_TIMEOUT;

/// Why a request on a replay stream failed.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    #[error("replay stream: {0}")]
    Io(#[from] io::Error),
    #[error("replay message of {len} bytes, more than the {max} allowed")]
    TooLarge { len: usize, max: usize },
    #[error("bad replay message: {0}")]
    Decode(#[from] DecodeError),
    #[error("no answer within {REQUEST_TIMEOUT:?}")]
    Timeout,
    #[error("could not open a replay stream: {0}")]
    Open(String),
    #[error("the holder answered with something else than was asked for")]
    Unexpected,
}

/// Reads one length-prefixed message; `None` at a clean end of stream (when `eof_ok`).
pub(super) async fn read_message(
    stream: &mut libp2p::Stream,
    max: usize,
    eof_ok: bool,
) -> Result<Option<Vec<u8>>, WireError> {
    let mut len = [0u8; 4];
    match stream.read_exact(&mut len).await {
        Ok(()) => {}
        Err(err) if eof_ok && err.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(err) => return Err(err.into()),
    }
    let len = u32::from_be_bytes(len) as usize;
    if len > max {
        return Err(WireError::TooLarge { len, max });
    }
    let mut bytes = vec![0u8; len];
    stream.read_exact(&mut bytes).await?;
    Ok(Some(bytes))
}

pub(super) async fn write_message(
    stream: &mut libp2p::Stream,
    bytes: &[u8],
) -> Result<(), WireError> {
    let len = u32::try_from(bytes.len()).map_err(|_| WireError::TooLarge {
        len: bytes.len(),
        max: MAX_RESPONSE_BYTES,
    })?;
    stream.write_all(&len.to_be_bytes()).await?;
    stream.write_all(bytes).await?;
    stream.flush().await?;
    Ok(())
}
