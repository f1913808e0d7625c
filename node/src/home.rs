//! A data directory opened for use: the identity plus the store, and the operations on rooms and
//! invites that need both (creating rooms, issuing and delegating invites).

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr, UdpSocket};
use std::path::{Path, PathBuf};

use earshot_protocol::room::{DescriptorError, RoomSpec};
use earshot_protocol::snapshot::Announcement;
use earshot_protocol::{
    Audience, Capability, CapabilityError, Grant, InviteLink, Presenter, RecordingPolicy, Role,
    RoomDescriptor, RoomId, Timestamp, VerifyContext, Visibility,
};
use multiaddr::{Multiaddr, Protocol};

use crate::identity::{Identity, IdentityError};
use crate::recording::store::{RecordingError, Recordings};
use crate::store::{InviteRecord, RoomRecord, Store, StoreError};

/// An opened data directory.
#[derive(Debug)]
pub struct Home {
    dir: PathBuf,
    identity: Identity,
    store: Store,
    recordings: Recordings,
}

/// What a new room should be.
#[derive(Clone, Debug)]
pub struct NewRoom {
    pub title: String,
    pub visibility: Visibility,
    pub recording: RecordingPolicy,
    /// Where to listen; `None` picks a free port on all interfaces (QUIC and TCP).
    pub listen: Option<Vec<Multiaddr>>,
    /// Addresses to put in links; `None` derives them from the listen port and this machine's
    /// interfaces.
    pub advertise: Option<Vec<Multiaddr>>,
    /// How many the room takes (signed into its descriptor).
    pub limits: earshot_protocol::RoomLimits,
    /// When the room begins and what it is about, for a room announced ahead.
    pub schedule: Option<earshot_protocol::Schedule>,
    /// Where listeners may support the host (a payment address or URL; signed into the room).
    pub support: Option<String>,
}

/// How long after a scheduled room's start the listener link of its announcement ahead lasts.
pub const AHEAD_LINK_MS: u64 = 12 * 60 * 60 * 1000;

/// Why a room or invite operation failed.
#[derive(Debug, thiserror::Error)]
pub enum HomeError {
    #[error(transparent)]
    Identity(#[from] IdentityError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Descriptor(#[from] DescriptorError),
    #[error("invalid invite: {0}")]
    Capability(#[from] CapabilityError),
    #[error("no room matching {query:?} is hosted by this node (see `earshot room list`)")]
    NoSuchRoom { query: String },
    #[error("{query:?} matches {count} rooms; use more of the room id")]
    AmbiguousRoom { query: String, count: usize },
    #[error("this node is not the host of room {room}: only the host issues root invites")]
    NotHost { room: RoomId },
    #[error("could not find a free port to listen on: {0}")]
    NoPort(std::io::Error),
    #[error("the operating system's random number generator failed: {0}")]
    Random(getrandom::Error),
    #[error(transparent)]
    Recording(#[from] RecordingError),
    #[error("room {room} cannot be announced ahead: {why}")]
    NotAhead { room: RoomId, why: &'static str },
}

impl Home {
    /// Opens `dir`, creating the identity if this is the first use.
    pub fn open(dir: &Path) -> Result<Self, HomeError> {
        let (identity, _) = Identity::init(dir)?;
        let store = Store::open(dir)?;
        let recordings = Recordings::open(&store)?;
        // This process holds the database alone: a recording still marked as being written
        // was cut short by a crash or a kill.
        let interrupted = recordings.recover()?;
        if interrupted > 0 {
            tracing::warn!(
                interrupted,
                "recordings cut short by a previous run are kept"
            );
        }
        Ok(Self {
            dir: dir.to_owned(),
            identity,
            store,
            recordings,
        })
    }

    /// The recordings kept in this data directory.
    pub fn recordings(&self) -> &Recordings {
        &self.recordings
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn identity(&self) -> &Identity {
        &self.identity
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Creates and stores a room hosted by this node.
    pub fn create_room(&self, new: NewRoom, now: Timestamp) -> Result<RoomRecord, HomeError> {
        let mut id = [0u8; 16];
        getrandom::fill(&mut id).map_err(HomeError::Random)?;
        let listen = match new.listen {
            Some(listen) => listen
                .into_iter()
                .map(pin_port)
                .collect::<Result<Vec<_>, _>>()?,
            None => default_listen_addrs()?,
        };
        let addrs = match new.advertise {
            Some(advertise) => advertise,
            None => advertised_addrs(&listen),
        };
        let descriptor = RoomDescriptor::sign_with(
            self.identity.signing_key(),
            RoomSpec {
                id: RoomId(id),
                title: new.title,
                visibility: new.visibility,
                recording: new.recording,
                created_at: now,
                addrs,
                limits: new.limits,
            },
            earshot_protocol::Extras {
                schedule: new.schedule,
                support: new.support,
            },
        )?;
        let record = RoomRecord { descriptor, listen };
        self.store.put_room(&record)?;
        tracing::info!(room = %record.descriptor.id, "room created");
        Ok(record)
    }

    /// Finds a hosted room by full id, unique id prefix, exact title, or unique title prefix
    /// (case-insensitive).
    pub fn find_room(&self, query: &str) -> Result<RoomRecord, HomeError> {
        if let Ok(id) = query.parse::<RoomId>()
            && let Some(room) = self.store.room(&id)?
        {
            return Ok(room);
        }
        let rooms = self.store.rooms()?;
        let lower = query.trim().to_ascii_lowercase();
        let by_prefix: Vec<_> = rooms
            .iter()
            .filter(|room| !lower.is_empty() && room.descriptor.id.to_string().starts_with(&lower))
            .collect();
        let exact_title: Vec<_> = rooms
            .iter()
            .filter(|room| room.descriptor.title == query.trim())
            .collect();
        let title_prefix: Vec<_> = rooms
            .iter()
            .filter(|room| {
                !lower.is_empty() && room.descriptor.title.to_lowercase().starts_with(&lower)
            })
            .collect();
        let matches = [by_prefix, exact_title, title_prefix]
            .into_iter()
            .find(|found| !found.is_empty())
            .unwrap_or_default();
        match matches.as_slice() {
            [room] => Ok((*room).clone()),
            [] => Err(HomeError::NoSuchRoom {
                query: query.to_owned(),
            }),
            many => Err(HomeError::AmbiguousRoom {
                query: query.to_owned(),
                count: many.len(),
            }),
        }
    }

    /// Issues a root invite for a room this node hosts, and remembers it.
    pub fn create_invite(
        &self,
        room: &RoomRecord,
        grant: Grant,
        now: Timestamp,
    ) -> Result<InviteLink, HomeError> {
        let descriptor = &room.descriptor;
        if descriptor.host != self.identity.key() {
            return Err(HomeError::NotHost {
                room: descriptor.id,
            });
        }
        let capability =
            Capability::issue(self.identity.signing_key(), descriptor.id, grant, nonce()?)?;
        self.remember(&capability, now)?;
        Ok(InviteLink {
            starts_at: descriptor.starts_at(),
            capability,
            host: descriptor.host,
            bootstrap: descriptor.addrs(),
        })
    }

    /// A scheduled public room's announcement ahead of its start, signed, for whoever serves
    /// the lobby to keep until a little after the start
    /// ([`earshot_protocol::snapshot::UPCOMING_GRACE_MS`]). Its listener link (remembered with
    /// the room's invites) lasts [`AHEAD_LINK_MS`] past the start.
    pub fn announce_ahead(
        &self,
        room: &RoomRecord,
        host_name: &str,
        now: Timestamp,
    ) -> Result<earshot_protocol::Verified<Announcement>, HomeError> {
        let descriptor = &room.descriptor;
        let not_ahead = |why| HomeError::NotAhead {
            room: descriptor.id,
            why,
        };
        if descriptor.visibility != Visibility::Public {
            return Err(not_ahead(
                "only public rooms are on the lobby (room new --public)",
            ));
        }
        let Some(starts_at) = descriptor.starts_at() else {
            return Err(not_ahead("it has no start time (room new --at)"));
        };
        let expires_at = starts_at.plus_millis(earshot_protocol::snapshot::UPCOMING_GRACE_MS);
        if expires_at <= now {
            return Err(not_ahead("it began more than a quarter of an hour ago"));
        }
        let grant = Grant {
            audience: Audience::Bearer,
            role: Role::Listener,
            not_before: now,
            expires_at: starts_at.plus_millis(AHEAD_LINK_MS),
            depth: 0,
        };
        let link = self.create_invite(room, grant, now)?;
        Announcement::sign(
            self.identity.signing_key(),
            descriptor.clone(),
            vec![host_name.to_owned()],
            0,
            link.capability,
            expires_at,
            Vec::new(),
        )
        .verify(now)
        .map_err(|_| not_ahead("it begins more than 30 days from now"))
    }

    /// Issues a narrower invite from one this node holds. The parent must be valid now for this
    /// node; the result keeps the parent's host and addresses.
    pub fn delegate(
        &self,
        parent: &InviteLink,
        grant: Grant,
        now: Timestamp,
    ) -> Result<InviteLink, HomeError> {
        let revoked = HashSet::new();
        parent.capability.verify(&VerifyContext {
            room: parent.capability.room,
            host: parent.host,
            presenter: Presenter::Key(self.identity.key()),
            now,
            revoked: &revoked,
        })?;
        let capability =
            parent
                .capability
                .delegate(self.identity.signing_key(), grant, nonce()?)?;
        self.remember(&capability, now)?;
        Ok(InviteLink {
            starts_at: parent.starts_at,
            capability,
            host: parent.host,
            bootstrap: parent.bootstrap.clone(),
        })
    }

    fn remember(&self, capability: &Capability, now: Timestamp) -> Result<(), HomeError> {
        self.store.put_invite(&InviteRecord {
            id: capability.id(),
            room: capability.room,
            role: capability.role,
            audience: capability.audience,
            expires_at: capability.expires_at,
            issued_at: now,
        })?;
        Ok(())
    }
}

fn nonce() -> Result<[u8; 8], HomeError> {
    let mut nonce = [0u8; 8];
    getrandom::fill(&mut nonce).map_err(HomeError::Random)?;
    Ok(nonce)
}

/// Replaces port 0 with a port that is free now, so that the address can go into links and be
/// listened on again after a restart.
fn pin_port(addr: Multiaddr) -> Result<Multiaddr, HomeError> {
    let ip = addr.iter().find_map(|p| match p {
        Protocol::Ip4(ip) => Some(IpAddr::V4(ip)),
        Protocol::Ip6(ip) => Some(IpAddr::V6(ip)),
        _ => None,
    });
    let Some(ip) = ip else {
        return Ok(addr);
    };
    let mut pinned = Multiaddr::empty();
    for part in addr.iter() {
        pinned.push(match part {
            Protocol::Udp(0) => Protocol::Udp(
                UdpSocket::bind((ip, 0))
                    .and_then(|socket| socket.local_addr())
                    .map_err(HomeError::NoPort)?
                    .port(),
            ),
            Protocol::Tcp(0) => Protocol::Tcp(
                std::net::TcpListener::bind((ip, 0))
                    .and_then(|listener| listener.local_addr())
                    .map_err(HomeError::NoPort)?
                    .port(),
            ),
            other => other,
        });
    }
    Ok(pinned)
}

/// QUIC and TCP on all interfaces, on one free port (free for UDP now; the host falls back to
/// another TCP port if that one is taken).
fn default_listen_addrs() -> Result<Vec<Multiaddr>, HomeError> {
    let socket = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)).map_err(HomeError::NoPort)?;
    let port = socket.local_addr().map_err(HomeError::NoPort)?.port();
    Ok(vec![
        Multiaddr::empty()
            .with(Protocol::Ip4(Ipv4Addr::UNSPECIFIED))
            .with(Protocol::Udp(port))
            .with(Protocol::QuicV1),
        Multiaddr::empty()
            .with(Protocol::Ip4(Ipv4Addr::UNSPECIFIED))
            .with(Protocol::Tcp(port)),
    ])
}

/// Addresses others can dial: the QUIC listen addresses, with an unspecified IP replaced by this
/// machine's IPv4 interface addresses (non-loopback first, then loopback), at most
/// [`earshot_protocol::link::MAX_BOOTSTRAP_ADDRS`].
pub fn advertised_addrs(listen: &[Multiaddr]) -> Vec<Multiaddr> {
    let mut ips: Vec<IpAddr> = if_addrs::get_if_addrs()
        .map(|ifaces| {
            ifaces
                .into_iter()
                .map(|iface| iface.ip())
                .filter(|ip| ip.is_ipv4() && !ip.is_loopback())
                .collect()
        })
        .unwrap_or_default();
    ips.push(IpAddr::V4(Ipv4Addr::LOCALHOST));
    let quic_first = {
        let mut addrs: Vec<&Multiaddr> = listen.iter().collect();
        addrs.sort_by_key(|addr| !addr.iter().any(|p| matches!(p, Protocol::QuicV1)));
        addrs
    };
    let mut out: Vec<Multiaddr> = Vec::new();
    for addr in quic_first {
        let mut parts = addr.iter();
        match parts.next() {
            Some(Protocol::Ip4(ip)) if ip.is_unspecified() => {
                let rest: Vec<Protocol<'_>> = parts.collect();
                for concrete in &ips {
                    let IpAddr::V4(v4) = concrete else { continue };
                    let mut full = Multiaddr::empty().with(Protocol::Ip4(*v4));
                    for p in &rest {
                        full.push(p.clone());
                    }
                    out.push(full);
                }
            }
            _ => out.push(addr.clone()),
        }
    }
    // Keep the loopback address even when there are many interfaces: it makes local demos work.
    let limit = earshot_protocol::link::MAX_BOOTSTRAP_ADDRS;
    if out.len() > limit {
        let loopback = out.iter().position(
            |addr| matches!(addr.iter().next(), Some(Protocol::Ip4(ip)) if ip.is_loopback()),
        );
        let keep_loopback = loopback.map(|i| out.remove(i));
        out.truncate(limit - usize::from(keep_loopback.is_some()));
        out.extend(keep_loopback);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn new_room(title: &str) -> NewRoom {
        NewRoom {
            title: title.into(),
            visibility: Visibility::Unlisted,
            recording: RecordingPolicy::default(),
            listen: None,
            advertise: None,
            limits: earshot_protocol::RoomLimits::default(),
            schedule: None,
            support: None,
        }
    }

    #[test]
    fn rooms_persist_and_are_found_by_prefix_or_title() {
        let dir = crate::fixtures::private_dir();
        let now = Timestamp::from_secs(1_800_000_000);
        let id = {
            let home = Home::open(dir.path()).expect("open");
            let room = home.create_room(new_room("Book club"), now).expect("room");
            home.create_room(new_room("Town hall"), now).expect("room");
            room.descriptor.id
        };
        let home = Home::open(dir.path()).expect("reopen");
        let rooms = home.store().rooms().expect("rooms");
        assert_eq!(rooms.len(), 2);
        assert_eq!(
            home.find_room(&id.to_string()).expect("id").descriptor.id,
            id
        );
        assert_eq!(
            home.find_room(&id.short()).expect("prefix").descriptor.id,
            id
        );
        assert_eq!(
            home.find_room("Book club").expect("title").descriptor.id,
            id
        );
        assert!(matches!(
            home.find_room("nope"),
            Err(HomeError::NoSuchRoom { .. })
        ));
        let room = home.find_room("Book club").expect("title");
        assert!(!room.listen.is_empty(), "listen addresses are remembered");
        assert!(room.descriptor.addrs().len() <= earshot_protocol::link::MAX_BOOTSTRAP_ADDRS);
    }

    #[test]
    fn invites_from_the_host_verify_and_are_remembered() {
        let dir = crate::fixtures::private_dir();
        let now = Timestamp::from_secs(1_800_000_000);
        let home = Home::open(dir.path()).expect("open");
        let room = home.create_room(new_room("Book club"), now).expect("room");
        let grant = Grant {
            audience: Audience::Bearer,
            role: Role::Moderator,
            not_before: now,
            expires_at: now.plus_millis(3_600_000),
            depth: 1,
        };
        let link = home.create_invite(&room, grant, now).expect("invite");
        let decoded = InviteLink::decode(&link.encode()).expect("decode");
        let revoked = HashSet::new();
        decoded
            .capability
            .verify(&VerifyContext {
                room: room.descriptor.id,
                host: home.identity().key(),
                presenter: Presenter::Unchecked,
                now,
                revoked: &revoked,
            })
            .expect("valid");
        let child = home
            .delegate(
                &decoded,
                Grant {
                    role: Role::Listener,
                    depth: 0,
                    ..grant
                },
                now,
            )
            .expect("delegate");
        assert_eq!(child.capability.chain().len(), 2);
        let invites = home.store().invites(&room.descriptor.id).expect("invites");
        assert_eq!(invites.len(), 2);
    }

    #[test]
    fn a_store_in_use_is_a_clear_locked_error() {
        let dir = crate::fixtures::private_dir();
        let _first = Store::open(dir.path()).expect("open");
        let second = Store::open(dir.path());
        assert!(
            matches!(second, Err(StoreError::Locked { .. })),
            "{second:?}"
        );
    }
}
