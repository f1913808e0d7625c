//! A private room's recordings: the recording key each is sealed under, kept at rest sealed to
//! this node's own key (a copy of the database without the identity file opens nothing), and
//! given away only in a replay link.
//!
//! What is sealed: the frames are the speakers' ciphertext as the room carried it (under the
//! room's epoch keys); the epoch keys, the host's views of the stage and the title with the
//! speakers' names are [`ReplaySealed`] records under the recording key. Neither the local
//! metadata nor a published manifest has the title or names ([`Recordings::reveal`] opens
//! them for whoever holds the key).
//!
//! [`ReplaySealed`]: earshot_protocol::replay::ReplaySealed

use earshot_protocol::private::{Keychain, PrivateRecord, Secret, open_sealed, seal_to};
use earshot_protocol::replay::ContentRecord;
use earshot_protocol::{PeerKey, RecordingId};

use super::{RecordingError, Recordings};

/// The sled tree: recording id → its recording key, sealed to this node.
const KEYS: &str = "recording_keys";

/// A private room's recording key, and the same sealed to this node.
#[derive(Clone, Debug)]
pub struct PrivateRecording {
    pub key: Secret,
    pub sealed: Vec<u8>,
}

impl PrivateRecording {
    /// A new recording key (`random`: 32 random bytes) kept for `me` (`ephemeral`: 32 more).
    pub fn new(random: [u8; 32], me: &PeerKey, ephemeral: [u8; 32]) -> Option<Self> {
        let key = Secret::from_bytes(random);
        let sealed = seal_to(me, &key, b"earshot recording key", ephemeral)?;
        Some(Self { key, sealed })
    }
}

impl Recordings {
    pub(super) fn keep_sealed_key(
        &self,
        id: &RecordingId,
        sealed: &[u8],
    ) -> Result<(), RecordingError> {
        let err = self.store.db_err();
        self.store
            .db()
            .open_tree(KEYS)
            .map_err(&err)?
            .insert(id.as_bytes(), sealed)
            .map_err(&err)?;
        Ok(())
    }

    /// Keeps the key of a private room's recording (from a replay link), sealed to `me`.
    pub fn keep_key(
        &self,
        id: &RecordingId,
        key: &Secret,
        me: &PeerKey,
        ephemeral: [u8; 32],
    ) -> Result<(), RecordingError> {
        let sealed = seal_to(me, key, b"earshot recording key", ephemeral)
            .ok_or_else(|| RecordingError::Write("this node's key is not a valid point".into()))?;
        self.keep_sealed_key(id, &sealed)?;
        self.store.db().flush().map_err(self.store.db_err())?;
        Ok(())
    }

    /// `meta` as its reader should see it: a private recording whose key this node holds with its
    /// title and names opened (`me`: this node's key); anything else as it is.
    pub fn shown(
        &self,
        meta: super::RecordingMeta,
        me: &ed25519_dalek::SigningKey,
    ) -> super::RecordingMeta {
        match self.key(&meta.id, me) {
            Ok(Some(key)) => self.reveal(&meta.id, &key).unwrap_or(meta),
            _ => meta,
        }
    }

    /// Whether `id` is a private room's recording (its frames are sealed).
    pub fn is_private(&self, id: &RecordingId) -> Result<bool, RecordingError> {
        if self.sealed_key(id)?.is_some() {
            return Ok(true);
        }
        for record in self.records(id) {
            match record? {
                ContentRecord::Sealed(_) => return Ok(true),
                ContentRecord::Frame(frame) => {
                    return Ok(frame.flags & earshot_protocol::frame::flags::SEALED != 0);
                }
                _ => {}
            }
        }
        Ok(false)
    }

    fn sealed_key(&self, id: &RecordingId) -> Result<Option<sled::IVec>, RecordingError> {
        let err = self.store.db_err();
        Ok(self
            .store
            .db()
            .open_tree(KEYS)
            .map_err(&err)?
            .get(id.as_bytes())
            .map_err(&err)?)
    }

    /// The key of private recording `id`, if this node keeps it (`me`: this node's key).
    pub fn key(
        &self,
        id: &RecordingId,
        me: &ed25519_dalek::SigningKey,
    ) -> Result<Option<Secret>, RecordingError> {
        Ok(self
            .sealed_key(id)?
            .and_then(|sealed| open_sealed(me, &sealed, b"earshot recording key")))
    }

    /// The room's epoch keys a private recording keeps sealed under `key`.
    pub fn keychain(&self, id: &RecordingId, key: &Secret) -> Result<Keychain, RecordingError> {
        let room = self
            .get(id)?
            .ok_or(RecordingError::NotFound(id.to_string()))?
            .room;
        let mut keychain = Keychain::default();
        for record in self.records(id) {
            if let ContentRecord::Sealed(sealed) = record?
                && let Ok(opened) = PrivateRecord::open(&room, key, &sealed.bytes)
            {
                keychain.add(opened.epochs());
            }
        }
        Ok(keychain)
    }
}

impl Recordings {
    /// A private recording's metadata with its title and speakers' names, opened from its
    /// sealed records with its key (the stored metadata has none: they stay sealed at rest).
    pub fn reveal(
        &self,
        id: &RecordingId,
        key: &Secret,
    ) -> Result<super::RecordingMeta, RecordingError> {
        let mut meta = self
            .get(id)?
            .ok_or(RecordingError::NotFound(id.to_string()))?;
        for record in self.records(id) {
            if let ContentRecord::Sealed(sealed) = record?
                && let Ok(PrivateRecord::About { title, names }) =
                    PrivateRecord::open(&meta.room, key, &sealed.bytes)
            {
                meta.title = title;
                for (speaker, name) in names {
                    if let Some(info) = meta.speakers.get_mut(&speaker) {
                        info.name = name;
                    }
                }
                break;
            }
        }
        Ok(meta)
    }
}
