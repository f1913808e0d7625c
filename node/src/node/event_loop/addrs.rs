//! This node's dialable addresses, as it hands them to children placed under it.

use earshot_protocol::RoomId;
use libp2p::Multiaddr;

use super::EventLoop;

impl EventLoop {
    /// This node's dialable addresses (for children placed under it): relayed ones first
    /// (they work from behind a NAT), then what it listens on and what others see it at; for
    /// the host, the addresses in its room's descriptor too.
    pub(super) fn own_addrs(&self, room: &RoomId) -> Vec<Multiaddr> {
        let mut addrs = self.own_addrs_all();
        if let Some(joined) = self.rooms.get(room)
            && joined.is_host()
        {
            addrs.extend(joined.descriptor.addrs());
        }
        addrs
    }

    /// [`Self::own_addrs`] without any room's descriptor.
    pub(super) fn own_addrs_all(&self) -> Vec<Multiaddr> {
        let mut addrs: Vec<Multiaddr> = self
            .swarm
            .listeners()
            .chain(self.swarm.external_addresses())
            .filter(|addr| earshot_protocol::addr::is_dialable(addr))
            .cloned()
            .collect();
        addrs.sort_by_key(|addr| !earshot_protocol::addr::is_relayed(addr));
        addrs.dedup();
        addrs
    }
}
