//! Bytes on an audio stream: the hello, and the length-prefixed frames each way.
//!
//! A stream starts with a hello: version, kind (0 listen, 1 speak), the room, and a proof (its
//! length, `u16`, then the bytes: a listen stream's ticket; a speak stream's is empty). Down
//! (parent to child), each frame is a `u16` big-endian length and that many bytes of
//! [`AudioFrame`]; length 0 is a keep-alive, [`LEAVING_MARKER`] says "I am leaving: attach
//! elsewhere now", and [`CONTROL_MARKER`] is followed by a `u16` length and a
//! [`Down`](earshot_protocol::audience::wire::Down); [`PROOF_MARKER`] by a length and a speaker's
//! [`FrameProof`], [`BEACON_MARKER`] by a length and the host's [`Progress`] beacon. Up (child
//! to parent, on a listen stream), each frame is a `u16` length and an
//! [`Up`](earshot_protocol::audience::wire::Up); a speak stream carries audio frames and their
//! proofs up.

use std::io;

use earshot_protocol::RoomId;
use earshot_protocol::audience::ticket::MAX_TICKET_BYTES;
use earshot_protocol::audience::wire::{Down, MAX_CONTROL_BYTES, Up};
use earshot_protocol::frame::{AudioFrame, MAX_FRAME_BYTES};
use earshot_protocol::proof::progress::{MAX_PROGRESS_BYTES, Progress};
use earshot_protocol::proof::{FrameProof, MAX_PROOF_BYTES};
use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::StreamKind;

/// The length prefix that says "I am leaving: attach elsewhere now" (no frame follows).
pub const LEAVING_MARKER: u16 = 0xFFFF;
/// The length prefix that says "a control frame follows" (its own length first).
pub const CONTROL_MARKER: u16 = 0xFFFE;
/// The length prefix a parent sends instead of anything else when it does not take the child
/// (full, or the ticket does not do): ask elsewhere now, do not try this parent again.
pub const REFUSED_MARKER: u16 = 0xFFFD;
/// The length prefix that says "a speaker's proof follows" (its own length first).
pub const PROOF_MARKER: u16 = 0xFFFC;
/// The length prefix that says "the host's progress beacon follows" (its own length first).
pub const BEACON_MARKER: u16 = 0xFFFB;

const HELLO_VERSION: u8 = 2;

/// A stream's hello.
pub fn hello(kind: StreamKind, room: &RoomId, proof: &[u8]) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(20 + proof.len());
    bytes.push(HELLO_VERSION);
    bytes.push(match kind {
        StreamKind::Listen => 0,
        StreamKind::Speak => 1,
    });
    bytes.extend_from_slice(room.as_bytes());
    let len = u16::try_from(proof.len()).unwrap_or(0);
    bytes.extend_from_slice(&len.to_be_bytes());
    bytes.extend_from_slice(&proof[..usize::from(len)]);
    bytes
}

/// Reads a hello: the kind, the room, the proof (at most a ticket's worth).
pub async fn read_hello<R: AsyncRead + Unpin>(
    stream: &mut R,
) -> Result<(StreamKind, RoomId, Vec<u8>), StreamError> {
    let mut head = [0u8; 20];
    stream.read_exact(&mut head).await?;
    if head[0] != HELLO_VERSION {
        return Err(StreamError::Hello);
    }
    let kind = match head[1] {
        0 => StreamKind::Listen,
        1 => StreamKind::Speak,
        _ => return Err(StreamError::Hello),
    };
    let mut room = [0u8; 16];
    room.copy_from_slice(&head[2..18]);
    let len = usize::from(u16::from_be_bytes([head[18], head[19]]));
    if len > MAX_TICKET_BYTES {
        return Err(StreamError::Hello);
    }
    let mut proof = vec![0u8; len];
    stream.read_exact(&mut proof).await?;
    Ok((kind, RoomId(room), proof))
}

/// What came down a stream.
#[derive(Debug)]
pub enum Read {
    Frame(AudioFrame),
    /// An empty frame: the sender is still there.
    KeepAlive,
    /// The sender is leaving.
    Leaving,
    /// The sender does not take this stream.
    Refused,
    Control(Down),
    Proof(FrameProof),
    Beacon(Progress),
}

pub async fn read_down<R: AsyncRead + Unpin>(stream: &mut R) -> Result<Read, StreamError> {
    let len = read_len(stream).await?;
    match len {
        LEAVING_MARKER => Ok(Read::Leaving),
        REFUSED_MARKER => Ok(Read::Refused),
        CONTROL_MARKER => {
            let bytes = read_bytes(stream, MAX_CONTROL_BYTES).await?;
            Ok(Read::Control(
                Down::decode(&bytes).map_err(|err| StreamError::Control(err.to_string()))?,
            ))
        }
        PROOF_MARKER => Ok(Read::Proof(read_proof(stream).await?)),
        BEACON_MARKER => {
            let bytes = read_bytes(stream, MAX_PROGRESS_BYTES).await?;
            Ok(Read::Beacon(Progress::decode(&bytes).map_err(|err| {
                StreamError::Control(format!("a bad progress beacon: {err}"))
            })?))
        }
        0 => Ok(Read::KeepAlive),
        len => {
            let len = usize::from(len);
            if len > MAX_FRAME_BYTES {
                return Err(earshot_protocol::frame::FrameError::TooLong { len }.into());
            }
            let mut bytes = vec![0u8; len];
            stream.read_exact(&mut bytes).await?;
            Ok(Read::Frame(AudioFrame::decode(&bytes)?))
        }
    }
}

/// Reads one frame a child sent up.
pub async fn read_up<R: AsyncRead + Unpin>(stream: &mut R) -> Result<Up, StreamError> {
    let bytes = read_bytes(stream, MAX_CONTROL_BYTES).await?;
    Up::decode(&bytes).map_err(|err| StreamError::Control(err.to_string()))
}

async fn read_proof<R: AsyncRead + Unpin>(stream: &mut R) -> Result<FrameProof, StreamError> {
    let bytes = read_bytes(stream, MAX_PROOF_BYTES).await?;
    FrameProof::decode(&bytes)
        .map_err(|err| StreamError::Control(format!("a bad frame proof: {err}")))
}

/// What a speaker sent up.
#[derive(Debug)]
pub enum Voice {
    Frame(AudioFrame),
    Proof(FrameProof),
    KeepAlive,
}

/// Reads one audio frame (or proof) a speaker sent.
pub async fn read_voice<R: AsyncRead + Unpin>(stream: &mut R) -> Result<Voice, StreamError> {
    let len = read_len(stream).await?;
    if len == PROOF_MARKER {
        return Ok(Voice::Proof(read_proof(stream).await?));
    }
    let len = usize::from(len);
    if len == 0 {
        return Ok(Voice::KeepAlive);
    }
    if len > MAX_FRAME_BYTES {
        return Err(earshot_protocol::frame::FrameError::TooLong { len }.into());
    }
    let mut bytes = vec![0u8; len];
    stream.read_exact(&mut bytes).await?;
    Ok(Voice::Frame(AudioFrame::decode(&bytes)?))
}

async fn read_len<R: AsyncRead + Unpin>(stream: &mut R) -> Result<u16, StreamError> {
    let mut len = [0u8; 2];
    stream.read_exact(&mut len).await?;
    Ok(u16::from_be_bytes(len))
}

async fn read_bytes<R: AsyncRead + Unpin>(
    stream: &mut R,
    max: usize,
) -> Result<Vec<u8>, StreamError> {
    let len = usize::from(read_len(stream).await?);
    if len > max {
        return Err(StreamError::Control(format!("a {len}-byte control frame")));
    }
    let mut bytes = vec![0u8; len];
    stream.read_exact(&mut bytes).await?;
    Ok(bytes)
}

/// Writes a length-prefixed frame (audio, an up frame, or an empty keep-alive).
pub async fn write_frame<W: AsyncWrite + Unpin>(
    stream: &mut W,
    bytes: &[u8],
) -> Result<(), StreamError> {
    put_frame(stream, bytes).await?;
    stream.flush().await?;
    Ok(())
}

/// [`write_frame`] without the flush (several go out together).
pub async fn put_frame<W: AsyncWrite + Unpin>(
    stream: &mut W,
    bytes: &[u8],
) -> Result<(), StreamError> {
    let len = u16::try_from(bytes.len())
        .ok()
        .filter(|len| *len < BEACON_MARKER)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "frame too large"))?;
    stream.write_all(&len.to_be_bytes()).await?;
    stream.write_all(bytes).await?;
    Ok(())
}

/// Something that follows a marker (a control frame, a proof, a beacon), not flushed.
pub async fn put_marked<W: AsyncWrite + Unpin>(
    stream: &mut W,
    marker: u16,
    bytes: &[u8],
) -> Result<(), StreamError> {
    stream.write_all(&marker.to_be_bytes()).await?;
    put_frame(stream, bytes).await
}

/// Says the stream is not taken.
pub async fn write_refused<W: AsyncWrite + Unpin>(stream: &mut W) -> Result<(), StreamError> {
    stream.write_all(&REFUSED_MARKER.to_be_bytes()).await?;
    stream.flush().await?;
    Ok(())
}

/// Writes a control frame down.
pub async fn write_control<W: AsyncWrite + Unpin>(
    stream: &mut W,
    bytes: &[u8],
) -> Result<(), StreamError> {
    stream.write_all(&CONTROL_MARKER.to_be_bytes()).await?;
    write_frame(stream, bytes).await
}

/// Writes something that follows a marker (a proof, a beacon).
pub async fn write_marked<W: AsyncWrite + Unpin>(
    stream: &mut W,
    marker: u16,
    bytes: &[u8],
) -> Result<(), StreamError> {
    stream.write_all(&marker.to_be_bytes()).await?;
    write_frame(stream, bytes).await
}

/// Says "I am leaving".
pub async fn write_leaving<W: AsyncWrite + Unpin>(stream: &mut W) -> Result<(), StreamError> {
    stream.write_all(&LEAVING_MARKER.to_be_bytes()).await?;
    stream.flush().await?;
    Ok(())
}

/// Why a stream failed.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    #[error("could not open an audio stream: {0}")]
    Open(String),
    #[error("audio stream: {0}")]
    Io(#[from] io::Error),
    #[error("bad audio frame: {0}")]
    Frame(#[from] earshot_protocol::frame::FrameError),
    #[error("bad control frame: {0}")]
    Control(String),
    #[error("bad audio stream hello")]
    Hello,
    #[error("not in room {0}")]
    NoRoom(RoomId),
    #[error("the parent went silent")]
    Silent,
    /// What came down failed its checks (see [`super::check`]): forged, or a flood.
    #[error("forged audio: {0}")]
    Forged(String),
    /// The parent stopped passing the room's frames (or the host's beacons) on.
    #[error("the parent withholds the room's audio: {0}")]
    Withheld(String),
    /// The parent does not take this node (full, or the ticket did not do).
    #[error("the parent does not take this node")]
    Refused,
    /// The host took the parent out of the relay tree (listeners it fed caught it).
    #[error("the host took the parent out of the relay tree")]
    Excluded,
    /// The stream failed before the parent sent anything: it refused (full, or the ticket
    /// did not do), or dropped the stream in a burst of new ones. Worth retrying a moment
    /// before calling the parent gone.
    #[error("the parent did not start the stream: {0}")]
    NotStarted(String),
}
