//! Entry points: the community relays carrying a room, named in its links. A joiner picks one
//! ([`pick_entry`]) and falls back to the host ([`host_addrs`]); an entry point admits a
//! listener into its own subtree ([`entry_admits`]). See ARCHITECTURE.md, "Entry points".

use earshot_protocol::audience::wire::Newcomer;
use earshot_protocol::snapshot::{Refusal, RoomResponse};
use earshot_protocol::{InviteLink, PeerKey, RoomId};
use libp2p::PeerId;
use tracing::info;

use super::Placing;
use super::joined::Joined;
use crate::effect::Effect;

/// An entry point the link names, at random: a peer other than the host that one of its
/// addresses ends in (`…/p2p/RELAY`, not a relayed address of the host), with its addresses.
pub(super) fn pick_entry(
    link: &InviteLink,
    rng: &mut impl rand::RngExt,
) -> Option<(PeerId, Vec<libp2p::Multiaddr>)> {
    let host = link.host.to_peer_id().ok()?;
    let mut entries: Vec<PeerId> = link
        .bootstrap
        .iter()
        .filter(|addr| !earshot_protocol::addr::is_relayed(addr))
        .filter_map(earshot_protocol::addr::peer_of)
        .filter(|peer| *peer != host)
        .collect();
    entries.dedup();
    if entries.is_empty() {
        return None;
    }
    let entry = entries[rng.random_range(0..entries.len())];
    let addrs = link
        .bootstrap
        .iter()
        .filter(|addr| earshot_protocol::addr::peer_of(addr) == Some(entry))
        .cloned()
        .collect();
    Some((entry, addrs))
}

/// The link's addresses of the host itself (its own, and relayed ones), without its entry
/// points'.
pub(super) fn host_addrs(link: &InviteLink) -> Vec<libp2p::Multiaddr> {
    let host = link.host.to_peer_id().ok();
    link.bootstrap
        .iter()
        .filter(|addr| {
            earshot_protocol::addr::is_relayed(addr)
                || earshot_protocol::addr::peer_of(addr).is_none_or(|peer| Some(peer) == host)
        })
        .cloned()
        .collect()
}

/// At an entry point (a community relay the host lists as carrying the room): a listener the
/// room's rules admit (checked by the caller) gets a place in this node's subtree, with a
/// ticket chained to this node's own, and the room as the host last signed it (its descriptor,
/// its latest view, the chat it relayed lately). The host hears of the newcomer in this node's
/// next report.
pub(super) fn entry_admits(
    joined: &mut Joined,
    room: RoomId,
    author: PeerKey,
    name: String,
    place: impl FnOnce(RoomId, PeerKey) -> Placing,
    effects: &mut Vec<Effect>,
) -> Result<RoomResponse, Refusal> {
    let view = joined.view.as_ref().ok_or(Refusal::NoTree)?;
    let placement = match place(room, author) {
        Placing::At(placement) => placement,
        Placing::Later(_) => return Err(Refusal::NoPlace),
        Placing::Refused(refusal) => return Err(refusal),
    };
    info!(%room, listener = %author.short(), "admitted a listener as an entry point");
    effects.push(Effect::Newcomer {
        room,
        newcomer: Newcomer { key: author, name },
    });
    Ok(RoomResponse::Admitted {
        descriptor: serde_bytes::ByteBuf::from(joined.descriptor.encode()),
        view: serde_bytes::ByteBuf::from(view.encode()),
        placement: Some(placement),
        ticket: None,
        chat: joined.recent_chat(),
        keys: None,
    })
}
