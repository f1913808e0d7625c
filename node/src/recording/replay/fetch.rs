//! Fetching a replay: reaching its holders, getting and checking the manifest, fetching the
//! missing chunks over several streams per holder (a chunk that fails its hash is fetched from
//! another holder), and adding the recording to the local ones.

use std::sync::Arc;
use std::time::{Duration, Instant};

use earshot_protocol::replay::{
    MAX_RESPONSE_BYTES, ManifestError, ManifestId, ReplayManifest, ReplayRequest, ReplayResponse,
};
use earshot_protocol::{PeerKey, Verified};
use libp2p::{Multiaddr, PeerId};
use tracing::{debug, warn};

use super::schedule::{Claim, Schedule};
use super::wire::{WireError, read_message, write_message};
use super::{
    DIAL_TIMEOUT, OPEN_ATTEMPTS, REPLAY_PROTOCOL, REQUEST_TIMEOUT, ReplayError, Replays,
    STREAMS_PER_HOLDER,
};
use crate::node::Node;
use crate::recording::store::{RecordingMeta, Recordings};

/// Why a fetch failed. What was fetched before the failure is kept: running it again resumes.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error(transparent)]
    Replay(#[from] ReplayError),
    #[error("no holder to fetch from: give --from MULTIADDR/p2p/PEER_ID, or a replay link")]
    NoHolders,
    #[error("no holder could be reached: {reasons}")]
    Unreachable { reasons: String },
    #[error("no holder sent a valid manifest {id}: {reasons}")]
    NoManifest { id: ManifestId, reasons: String },
    #[error(
        "replay {id} is incomplete: {missing} of {total} chunks could not be fetched ({reasons}); \
         the {have} chunks fetched are kept, and fetching again resumes"
    )]
    Incomplete {
        id: ManifestId,
        missing: usize,
        total: usize,
        have: usize,
        reasons: String,
    },
}

/// A node that may hold a replay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    pub peer: PeerId,
    pub addrs: Vec<Multiaddr>,
}

impl Holder {
    /// The holders a replay link names: each address ending in `/p2p/PEER` is that peer's, the
    /// others the recorder's; with no address at all, the recorder (found however the node
    /// finds peers).
    pub fn of_link(
        link: &earshot_protocol::replay::ReplayLink,
    ) -> Result<Vec<Holder>, BadRecorder> {
        let recorder = link.recorder.to_peer_id().map_err(|_| BadRecorder)?;
        let mut holders = Vec::new();
        for addr in &link.addrs {
            let peer = earshot_protocol::addr::peer_of(addr).unwrap_or(recorder);
            Holder::add(&mut holders, peer, addr.clone());
        }
        if holders.is_empty() {
            holders.push(Holder {
                peer: recorder,
                addrs: Vec::new(),
            });
        }
        Ok(holders)
    }

    /// Adds `addr` (with or without its `/p2p/PEER`) to `peer`'s addresses among `holders`.
    pub fn add(holders: &mut Vec<Holder>, peer: PeerId, mut addr: Multiaddr) {
        if earshot_protocol::addr::peer_of(&addr).is_some() {
            addr.pop();
        }
        match holders.iter_mut().find(|holder| holder.peer == peer) {
            Some(holder) => holder.addrs.push(addr),
            None => holders.push(Holder {
                peer,
                addrs: vec![addr],
            }),
        }
    }
}

/// A replay link names a recorder whose key is not an ed25519 key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the replay link names an invalid recorder key")]
pub struct BadRecorder;

/// What to fetch and from whom.
#[derive(Debug, Clone)]
pub struct FetchRequest {
    pub manifest: ManifestId,
    /// Who must have signed the manifest (from a replay link), if known.
    pub recorder: Option<PeerKey>,
    pub holders: Vec<Holder>,
}

/// Progress of a fetch, as it happens.
#[derive(Debug, Clone, PartialEq)]
pub enum FetchEvent {
    /// A holder could not be reached or stopped answering; it is not asked again.
    HolderFailed { peer: PeerId, reason: String },
    /// The manifest is in hand (`from`: `None` when it was kept here already).
    Manifest {
        from: Option<PeerId>,
        title: String,
        chunks: usize,
        bytes: u64,
        /// Chunks already stored here (a resumed fetch).
        held: usize,
    },
    /// A holder sent something that is not a valid manifest.
    BadManifest { from: PeerId, reason: String },
    /// A chunk arrived, matched its hash and was stored.
    Chunk {
        index: u32,
        from: PeerId,
        done: usize,
        total: usize,
    },
    /// A holder sent a chunk that does not match the manifest (counted against it); the chunk
    /// is fetched from another holder.
    BadChunk {
        index: u32,
        from: PeerId,
        reason: String,
    },
}

/// What a completed fetch did.
#[derive(Debug, Clone)]
pub struct FetchReport {
    pub id: ManifestId,
    pub manifest: Verified<ReplayManifest>,
    /// The recording, now among the local ones.
    pub recording: RecordingMeta,
    /// Chunks fetched now.
    pub fetched: usize,
    /// Chunks already here from an earlier, interrupted fetch.
    pub resumed: usize,
    /// Bytes of chunks fetched now.
    pub bytes: u64,
    /// Bad chunks received (and refetched elsewhere).
    pub bad_chunks: usize,
    pub elapsed: Duration,
}

/// Callback for [`FetchEvent`]s (called from the fetch's tasks).
pub type OnFetchEvent = Arc<dyn Fn(&FetchEvent) + Send + Sync>;

/// Fetches a replay through `node`: reaches the holders, gets and checks the manifest, fetches
/// the missing chunks (several streams per holder; a chunk that fails its hash is fetched from
/// another holder), then adds the recording to `recordings`.
pub async fn fetch(
    node: &Node,
    replays: &Replays,
    recordings: &Recordings,
    request: FetchRequest,
    on_event: OnFetchEvent,
) -> Result<FetchReport, FetchError> {
    let started = Instant::now();
    let id = request.manifest;
    let holders: Vec<Holder> = request
        .holders
        .into_iter()
        .filter(|holder| holder.peer != node.peer_id())
        .collect();
    // A replay kept here already (a resumed fetch) needs no holder for its manifest.
    let kept = replays.manifest(&id)?;
    if let Some(manifest) = &kept
        && let Some(expected) = request.recorder
        && manifest.recorder != expected
    {
        return Err(ReplayError::Manifest(ManifestError::WrongRecorder {
            expected,
            found: manifest.recorder,
        })
        .into());
    }
    if holders.is_empty() && kept.is_none() {
        return Err(FetchError::NoHolders);
    }
    let control = node.streams();
    // Reach every holder at once.
    let dials = holders.iter().map(|holder| {
        let node = node.clone();
        let holder = holder.clone();
        async move {
            let result = tokio::time::timeout(DIAL_TIMEOUT, node.dial(holder.peer, holder.addrs))
                .await
                .map_err(|_| format!("no connection within {DIAL_TIMEOUT:?}"))
                .and_then(|dialled| dialled.map_err(|err| err.to_string()));
            (holder.peer, result)
        }
    });
    let mut reachable = Vec::new();
    let mut reasons = Vec::new();
    for (peer, result) in futures::future::join_all(dials).await {
        match result {
            Ok(()) => reachable.push(peer),
            Err(reason) => {
                on_event(&FetchEvent::HolderFailed {
                    peer,
                    reason: reason.clone(),
                });
                reasons.push(format!("{peer}: {reason}"));
            }
        }
    }
    let manifest = match kept {
        Some(manifest) => {
            let held = replays.held(&id)?.len();
            on_event(&FetchEvent::Manifest {
                from: None,
                title: manifest.title.clone(),
                chunks: manifest.chunks.len(),
                bytes: manifest.total_bytes,
                held,
            });
            manifest
        }
        None => {
            if reachable.is_empty() {
                return Err(FetchError::Unreachable {
                    reasons: reasons.join("; "),
                });
            }
            let mut reasons = Vec::new();
            let mut found = None;
            for peer in &reachable {
                match fetch_manifest(&control, *peer, id, request.recorder).await {
                    Ok((bytes, manifest)) => {
                        replays.store_manifest_unverified(&bytes)?;
                        on_event(&FetchEvent::Manifest {
                            from: Some(*peer),
                            title: manifest.title.clone(),
                            chunks: manifest.chunks.len(),
                            bytes: manifest.total_bytes,
                            held: replays.held(&id)?.len(),
                        });
                        found = Some(manifest);
                        break;
                    }
                    Err(reason) => {
                        on_event(&FetchEvent::BadManifest {
                            from: *peer,
                            reason: reason.clone(),
                        });
                        reasons.push(format!("{peer}: {reason}"));
                    }
                }
            }
            found.ok_or_else(|| FetchError::NoManifest {
                id,
                reasons: reasons.join("; "),
            })?
        }
    };
    let missing = replays.missing(&manifest, &id)?;
    let total = manifest.chunks.len();
    let resumed = total - missing.len();
    let schedule = Arc::new(Schedule::new(missing, reachable.len(), resumed));
    let manifest = Arc::new(manifest);
    let mut workers = Vec::new();
    for (slot, peer) in reachable.iter().enumerate() {
        let opening = Arc::new(tokio::sync::Mutex::new(()));
        for _ in 0..STREAMS_PER_HOLDER {
            workers.push(tokio::spawn(fetch_chunks(Worker {
                control: control.clone(),
                peer: *peer,
                opening: Arc::clone(&opening),
                slot,
                id,
                manifest: Arc::clone(&manifest),
                replays: replays.clone(),
                schedule: Arc::clone(&schedule),
                on_event: Arc::clone(&on_event),
            })));
        }
    }
    for worker in workers {
        if let Err(err) = worker.await {
            warn!(%err, "a fetch task failed");
        }
    }
    let outcome = schedule.outcome();
    if !outcome.pending.is_empty() {
        reasons.extend(outcome.reasons);
        if reasons.is_empty() {
            reasons.push("no holder had them".into());
        }
        return Err(FetchError::Incomplete {
            id,
            missing: outcome.pending.len(),
            total,
            have: total - outcome.pending.len(),
            reasons: reasons.join("; "),
        });
    }
    let recording = replays.import(recordings, &id)?;
    Ok(FetchReport {
        id,
        manifest: Arc::unwrap_or_clone(manifest),
        recording,
        fetched: outcome.fetched,
        resumed,
        bytes: outcome.bytes,
        bad_chunks: outcome.bad,
        elapsed: started.elapsed(),
    })
}

async fn fetch_manifest(
    control: &libp2p_stream::Control,
    peer: PeerId,
    id: ManifestId,
    recorder: Option<PeerKey>,
) -> Result<(Vec<u8>, Verified<ReplayManifest>), String> {
    let opening = tokio::sync::Mutex::new(());
    let (_stream, response) =
        open_and_ask(control, peer, &opening, &ReplayRequest::Manifest { id })
            .await
            .map_err(|err| err.to_string())?;
    match response {
        ReplayResponse::Manifest(bytes) => {
            let manifest =
                ReplayManifest::decode_for(&bytes, id, recorder).map_err(|err| err.to_string())?;
            Ok((bytes.into_vec(), manifest))
        }
        ReplayResponse::NotFound => Err("it does not have this replay".into()),
        ReplayResponse::Chunk(_) => Err(WireError::Unexpected.to_string()),
    }
}

async fn open(control: &libp2p_stream::Control, peer: PeerId) -> Result<libp2p::Stream, WireError> {
    tokio::time::timeout(
        REQUEST_TIMEOUT,
        control.clone().open_stream(peer, REPLAY_PROTOCOL),
    )
    .await
    .map_err(|_| WireError::Timeout)?
    .map_err(|err| WireError::Open(err.to_string()))
}

/// Opens a stream to `peer` and asks the first request on it, one stream at a time per holder
/// (`opening`): libp2p-stream hands a node's inbound streams over one by one and drops those
/// that arrive while one is waiting, so streams opened in a burst fail. A new stream that fails
/// before answering is opened again, up to [`OPEN_ATTEMPTS`] times.
async fn open_and_ask(
    control: &libp2p_stream::Control,
    peer: PeerId,
    opening: &tokio::sync::Mutex<()>,
    request: &ReplayRequest,
) -> Result<(libp2p::Stream, ReplayResponse), WireError> {
    let _turn = opening.lock().await;
    let mut attempt = 1;
    loop {
        let result = match open(control, peer).await {
            Ok(mut stream) => ask(&mut stream, request)
                .await
                .map(|response| (stream, response)),
            Err(err) => Err(err),
        };
        match result {
            Err(err) if attempt < OPEN_ATTEMPTS && !matches!(err, WireError::Timeout) => {
                debug!(%peer, %err, attempt, "a new replay stream failed; opening another");
                attempt += 1;
            }
            result => return result,
        }
    }
}

/// One request and its response, within [`REQUEST_TIMEOUT`].
async fn ask(
    stream: &mut libp2p::Stream,
    request: &ReplayRequest,
) -> Result<ReplayResponse, WireError> {
    tokio::time::timeout(REQUEST_TIMEOUT, async {
        write_message(stream, &request.encode()).await?;
        let bytes = read_message(stream, MAX_RESPONSE_BYTES, false)
            .await?
            .ok_or(WireError::Unexpected)?;
        Ok(ReplayResponse::decode(&bytes)?)
    })
    .await
    .map_err(|_| WireError::Timeout)?
}

/// One stream to one holder, taking chunks from the shared schedule.
struct Worker {
    control: libp2p_stream::Control,
    peer: PeerId,
    /// Held while opening a stream to this holder (see [`open_and_ask`]).
    opening: Arc<tokio::sync::Mutex<()>>,
    /// The holder's place in the schedule.
    slot: usize,
    id: ManifestId,
    manifest: Arc<Verified<ReplayManifest>>,
    replays: Replays,
    schedule: Arc<Schedule>,
    on_event: OnFetchEvent,
}

async fn fetch_chunks(worker: Worker) {
    let Worker {
        control,
        peer,
        opening,
        slot,
        id,
        manifest,
        replays,
        schedule,
        on_event,
    } = worker;
    let mut stream: Option<libp2p::Stream> = None;
    loop {
        let index = match schedule.claim(slot) {
            Claim::Chunk(index) => index,
            Claim::Wait(notified) => {
                notified.await;
                continue;
            }
            Claim::Done => return,
        };
        let request = ReplayRequest::Chunk { id, index };
        let result =
            match stream.as_mut() {
                Some(stream) => ask(stream, &request).await,
                None => open_and_ask(&control, peer, &opening, &request).await.map(
                    |(opened, response)| {
                        stream = Some(opened);
                        response
                    },
                ),
            };
        match result {
            Ok(ReplayResponse::Chunk(bytes)) => match manifest.check_chunk(index, &bytes) {
                Ok(()) => {
                    if let Err(err) = replays.store_chunk_unverified(&id, index, &bytes) {
                        // The local disk failed: nobody else can fix that.
                        schedule.failed(slot, index, format!("storing chunk {index}: {err}"));
                        return;
                    }
                    let done = schedule.done(index, bytes.len() as u64);
                    on_event(&FetchEvent::Chunk {
                        index,
                        from: peer,
                        done,
                        total: manifest.chunks.len(),
                    });
                }
                Err(err) => {
                    warn!(%peer, %err, "a holder sent a bad chunk");
                    on_event(&FetchEvent::BadChunk {
                        index,
                        from: peer,
                        reason: err.to_string(),
                    });
                    schedule.bad(slot, index, &peer);
                }
            },
            Ok(ReplayResponse::NotFound) => schedule.not_found(slot, index),
            Ok(ReplayResponse::Manifest(_)) => {
                on_event(&FetchEvent::BadChunk {
                    index,
                    from: peer,
                    reason: WireError::Unexpected.to_string(),
                });
                schedule.bad(slot, index, &peer);
            }
            Err(err) => {
                let reason = err.to_string();
                if schedule.failed(slot, index, format!("{peer}: {reason}")) {
                    on_event(&FetchEvent::HolderFailed { peer, reason });
                }
                return;
            }
        }
    }
}
