//! The node's sled database: rooms it hosts and invites it issued.
//!
//! sled allows one process per database; a second process gets [`StoreError::Locked`].
//! Records are postcard with a leading format byte, so a future format can be told apart.

use std::io;
use std::path::{Path, PathBuf};

use earshot_protocol::room::DescriptorError;
use earshot_protocol::{Audience, CapId, Role, RoomDescriptor, RoomId, Timestamp};
use multiaddr::Multiaddr;
use serde::{Deserialize, Serialize};

/// The database directory's name inside the data directory.
pub const DB_DIR: &str = "db";

const ROOMS: &str = "rooms";
const INVITES: &str = "invites";
/// Private rooms' key schedules, as their host sealed them.
const SCHEDULES: &str = "schedules";
const RECORD_FORMAT: u8 = 1;
/// How long [`Store::open`] waits for a lock to be let go.
const LOCK_WAIT: std::time::Duration = std::time::Duration::from_millis(500);

/// A room this node hosts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RoomRecord {
    /// The signed descriptor, as the host published it.
    pub descriptor: RoomDescriptor,
    /// Where the host listens for this room; kept so links printed earlier stay valid after a
    /// restart.
    pub listen: Vec<Multiaddr>,
}

/// An invite this node issued (the link itself is not kept: it can be re-created, and a list of
/// bearer links is a list of secrets).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InviteRecord {
    pub id: CapId,
    pub room: RoomId,
    pub role: Role,
    pub audience: Audience,
    pub expires_at: Timestamp,
    pub issued_at: Timestamp,
}

/// Why the store failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(
        "the database at {path} is in use by another earshot process (stop it, or run this \
         command through it)"
    )]
    Locked { path: PathBuf },
    #[error("database error at {path}: {source}")]
    Db { path: PathBuf, source: sled::Error },
    #[error(
        "the database at {path} is damaged and cannot be opened; move it aside to start afresh \
         (your identity key is kept outside it)"
    )]
    Damaged { path: PathBuf },
    #[error("corrupt {what} record in the database: {reason}")]
    Corrupt { what: &'static str, reason: String },
}

/// The sled database of one data directory.
#[derive(Debug, Clone)]
pub struct Store {
    path: PathBuf,
    db: sled::Db,
}

#[derive(Serialize, Deserialize)]
struct StoredRoom {
    descriptor: serde_bytes::ByteBuf,
    listen: Vec<serde_bytes::ByteBuf>,
}

impl Store {
    /// Opens (creating if needed) the database in `home`. A lock held by this process's own
    /// database just closed is waited for (sled lets its lock go when its flusher thread has
    /// stopped, a moment after the last handle is dropped), up to [`LOCK_WAIT`].
    pub fn open(home: &Path) -> Result<Self, StoreError> {
        let since = std::time::Instant::now();
        loop {
            match Self::open_once(home) {
                Err(StoreError::Locked { .. }) if since.elapsed() < LOCK_WAIT => {
                    std::thread::sleep(std::time::Duration::from_millis(10));
                }
                opened => return opened,
            }
        }
    }

    fn open_once(home: &Path) -> Result<Self, StoreError> {
        let path = home.join(DB_DIR);
        let db = sled::Config::new().path(&path).open().map_err(|source| {
            if is_lock_error(&source) {
                StoreError::Locked { path: path.clone() }
            } else if matches!(source, sled::Error::Corruption { .. }) {
                StoreError::Damaged { path: path.clone() }
            } else {
                StoreError::Db {
                    path: path.clone(),
                    source,
                }
            }
        })?;
        Ok(Self { path, db })
    }

    /// Where the database is.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// The database itself, for the modules that keep their own trees in it (recordings).
    pub(crate) fn db(&self) -> &sled::Db {
        &self.db
    }

    pub(crate) fn db_err(&self) -> impl Fn(sled::Error) -> StoreError + '_ {
        |source| StoreError::Db {
            path: self.path.clone(),
            source,
        }
    }

    /// Saves a room (replacing any record with the same id) and flushes it to disk.
    pub fn put_room(&self, room: &RoomRecord) -> Result<(), StoreError> {
        let stored = StoredRoom {
            descriptor: serde_bytes::ByteBuf::from(room.descriptor.encode()),
            listen: earshot_protocol::addr::to_wire(&room.listen, usize::MAX, usize::MAX),
        };
        let tree = self.db.open_tree(ROOMS).map_err(self.db_err())?;
        tree.insert(room.descriptor.id.as_bytes(), encode_record(&stored))
            .map_err(self.db_err())?;
        tree.flush().map_err(self.db_err())?;
        Ok(())
    }

    /// The room with this id, if this node hosts it.
    pub fn room(&self, id: &RoomId) -> Result<Option<RoomRecord>, StoreError> {
        let tree = self.db.open_tree(ROOMS).map_err(self.db_err())?;
        tree.get(id.as_bytes())
            .map_err(self.db_err())?
            .map(|bytes| decode_room(&bytes))
            .transpose()
    }

    /// Every room this node hosts, oldest first.
    pub fn rooms(&self) -> Result<Vec<RoomRecord>, StoreError> {
        let tree = self.db.open_tree(ROOMS).map_err(self.db_err())?;
        let mut rooms = tree
            .iter()
            .values()
            .map(|value| decode_room(&value.map_err(self.db_err())?))
            .collect::<Result<Vec<_>, _>>()?;
        rooms.sort_by_key(|room| (room.descriptor.created_at, room.descriptor.id));
        Ok(rooms)
    }

    /// Keeps a private room's key schedule (sealed by the host: `Schedule::save`), or forgets
    /// it (`None`: the room ended); flushed to disk at once when `durable`, else with sled's
    /// own flush (every half second: a crash loses at most that much of what was not durable).
    pub fn keep_schedule(
        &self,
        room: &RoomId,
        sealed: Option<&[u8]>,
        durable: bool,
    ) -> Result<(), StoreError> {
        let tree = self.db.open_tree(SCHEDULES).map_err(self.db_err())?;
        match sealed {
            Some(bytes) => tree.insert(room.as_bytes(), bytes).map(drop),
            None => tree.remove(room.as_bytes()).map(drop),
        }
        .map_err(self.db_err())?;
        if durable {
            tree.flush().map_err(self.db_err())?;
        }
        Ok(())
    }

    /// The key schedule kept for `room`, sealed, if any.
    pub fn kept_schedule(&self, room: &RoomId) -> Result<Option<Vec<u8>>, StoreError> {
        let tree = self.db.open_tree(SCHEDULES).map_err(self.db_err())?;
        Ok(tree
            .get(room.as_bytes())
            .map_err(self.db_err())?
            .map(|bytes| bytes.to_vec()))
    }

    /// Remembers an issued invite.
    pub fn put_invite(&self, invite: &InviteRecord) -> Result<(), StoreError> {
        let tree = self.db.open_tree(INVITES).map_err(self.db_err())?;
        tree.insert(invite.id.as_bytes(), encode_record(invite))
            .map_err(self.db_err())?;
        tree.flush().map_err(self.db_err())?;
        Ok(())
    }

    /// Invites issued for `room`, oldest first.
    pub fn invites(&self, room: &RoomId) -> Result<Vec<InviteRecord>, StoreError> {
        let tree = self.db.open_tree(INVITES).map_err(self.db_err())?;
        let mut invites = Vec::new();
        for value in tree.iter().values() {
            let invite: InviteRecord = decode_record("invite", &value.map_err(self.db_err())?)?;
            if invite.room == *room {
                invites.push(invite);
            }
        }
        invites.sort_by_key(|invite| (invite.issued_at, invite.id));
        Ok(invites)
    }
}

pub(crate) fn encode_record<T: Serialize>(value: &T) -> Vec<u8> {
    let mut bytes = vec![RECORD_FORMAT];
    bytes.extend(earshot_protocol::codec::encode(value));
    bytes
}

pub(crate) fn decode_record<T: serde::de::DeserializeOwned>(
    what: &'static str,
    bytes: &[u8],
) -> Result<T, StoreError> {
    let corrupt = |reason: String| StoreError::Corrupt { what, reason };
    match bytes.split_first() {
        Some((&RECORD_FORMAT, rest)) => {
            postcard::from_bytes(rest).map_err(|err| corrupt(err.to_string()))
        }
        Some((format, _)) => Err(corrupt(format!("unknown record format {format}"))),
        None => Err(corrupt("empty record".into())),
    }
}

fn decode_room(bytes: &[u8]) -> Result<RoomRecord, StoreError> {
    let stored: StoredRoom = decode_record("room", bytes)?;
    let corrupt = |err: DescriptorError| StoreError::Corrupt {
        what: "room",
        reason: err.to_string(),
    };
    let descriptor = RoomDescriptor::decode_verified(&stored.descriptor)
        .map_err(corrupt)?
        .into_inner();
    let listen =
        earshot_protocol::addr::from_wire(&stored.listen, "listen address", usize::MAX, usize::MAX)
            .map_err(|err| corrupt(DescriptorError::Malformed(err)))?;
    Ok(RoomRecord { descriptor, listen })
}

/// sled reports a held lock as an I/O error ("could not acquire lock": EWOULDBLOCK/EAGAIN).
fn is_lock_error(err: &sled::Error) -> bool {
    match err {
        sled::Error::Io(io) => {
            io.kind() == io::ErrorKind::WouldBlock
                || io.raw_os_error() == Some(11)
                || io.to_string().contains("lock")
        }
        _ => false,
    }
}
