//! Announcing to a room, through the node's public API, each replay of it this node publishes.

use earshot_protocol::private::Secret;
use earshot_protocol::replay::ManifestId;
use earshot_protocol::{ControlBody, RecordingId, RoomId};
use libp2p::Multiaddr;
use tracing::{debug, warn};

use super::Replays;
use crate::node::Node;

/// While hosting `room`: every replay of it this node publishes from now on (say, by
/// `earshot recordings publish`, run through the control socket) is announced on the room's
/// topic, with `addrs` (this node's, ending in `/p2p/…`) as where to fetch it. Stops when the
/// node leaves the room or shuts down.
///
/// A private room's replay is announced with its title and key (`private` finds them: the
/// room's messages are sealed for its members, who alone read them).
pub fn announce_published(
    node: Node,
    replays: &Replays,
    room: RoomId,
    addrs: Vec<Multiaddr>,
    private: impl Fn(&RecordingId) -> Option<(Secret, String)> + Send + 'static,
) -> tokio::task::JoinHandle<()> {
    let mut published = replays.watch_links();
    let replays = replays.clone();
    tokio::spawn(async move {
        while let Some(event) = (&mut published).await {
            let sled::Event::Insert { value, .. } = event else {
                continue;
            };
            let Ok(id) = <[u8; 16]>::try_from(value.as_ref()).map(ManifestId) else {
                continue;
            };
            let manifest = match replays.manifest(&id) {
                Ok(Some(manifest)) => manifest,
                Ok(None) => continue,
                Err(err) => {
                    warn!(manifest = %id, %err, "cannot announce a replay");
                    continue;
                }
            };
            if manifest.room != room || manifest.recorder != node.key() {
                continue;
            }
            let (key, title) = match private(&manifest.recording) {
                Some((key, title)) => (
                    Some(serde_bytes::ByteBuf::from(key.as_bytes().to_vec())),
                    title,
                ),
                None => (None, manifest.title.clone()),
            };
            let body = ControlBody::ReplayAvailable {
                manifest: id,
                recording: manifest.recording,
                recorder: manifest.recorder,
                title,
                bytes: manifest.total_bytes,
                addrs: earshot_protocol::replay::addr_bytes(&addrs),
                key,
            };
            match node.act(room, body).await {
                Ok(_) => debug!(manifest = %id, %room, "replay announced"),
                Err(err) => {
                    debug!(manifest = %id, %err, "cannot announce a replay; the room is gone");
                    return;
                }
            }
        }
    })
}
