//! The node's identity: one ed25519 key, stored in the data directory.
//!
//! The same 32-byte secret is both the ed25519-dalek `SigningKey` that signs descriptors, invites
//! and control messages, and the libp2p `Keypair` whose public half is the node's `PeerId`.

use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use earshot_protocol::PeerKey;
use ed25519_dalek::SigningKey;
use zeroize::Zeroize;

/// The key file's name inside the data directory.
pub const KEY_FILE: &str = "identity.key";

/// A node's keypair.
#[derive(Clone)]
pub struct Identity {
    signing: SigningKey,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the secret.
        write!(f, "Identity({})", self.key().as_peer_id())
    }
}

/// Why the identity could not be created or loaded.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("an identity already exists at {path} (refusing to overwrite it)")]
    AlreadyExists { path: PathBuf },
    #[error("no identity at {path}: run `earshot init` first")]
    NotInitialised { path: PathBuf },
    #[error("the key file {path} is corrupt ({len} bytes, expected 32)")]
    Corrupt { path: PathBuf, len: usize },
    #[error("could not read or write {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("the operating system's random number generator failed: {0}")]
    Random(getrandom::Error),
    #[error(
        "the data directory {path} can be read or written by other users (mode {mode:o}); it \
         holds this node's private key: make it private with `chmod 700 {path}`",
        path = path.display()
    )]
    Exposed { path: PathBuf, mode: u32 },
}

/// What [`Identity::init`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InitOutcome {
    Created,
    AlreadyExisted,
}

impl Identity {
    /// Creates a new identity in `home` (mode 0600). Fails if one exists: a key is never
    /// overwritten, since everything this node hosts is bound to it.
    pub fn create(home: &Path) -> Result<Self, IdentityError> {
        ensure_dir(home)?;
        let path = home.join(KEY_FILE);
        if path.exists() {
            return Err(IdentityError::AlreadyExists { path });
        }
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed).map_err(IdentityError::Random)?;
        let identity = Self {
            signing: SigningKey::from_bytes(&seed),
        };
        // Write to a private temporary file, then hard-link it into place: the link fails if a
        // key appeared meanwhile, and a crash never leaves a half-written key behind.
        let temp = home.join(format!("{KEY_FILE}.tmp-{}", std::process::id()));
        let io_err = |path: &Path| {
            let path = path.to_owned();
            move |source| IdentityError::Io { path, source }
        };
        let written = (|| {
            let mut file = fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&temp)?;
            file.write_all(&seed)?;
            file.sync_all()
        })();
        seed.zeroize();
        written.map_err(io_err(&temp))?;
        let linked = fs::hard_link(&temp, &path);
        let _ = fs::remove_file(&temp);
        match linked {
            Ok(()) => Ok(identity),
            Err(err) if err.kind() == io::ErrorKind::AlreadyExists => {
                Err(IdentityError::AlreadyExists { path })
            }
            Err(source) => Err(IdentityError::Io { path, source }),
        }
    }

    /// A fresh identity that is not stored anywhere: for short-lived nodes such as a lobby
    /// browser, which must not be mistaken for (or refuse to dial) the user's own node.
    pub fn ephemeral() -> Result<Self, IdentityError> {
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed).map_err(IdentityError::Random)?;
        let identity = Self {
            signing: SigningKey::from_bytes(&seed),
        };
        seed.zeroize();
        Ok(identity)
    }

    /// Creates an identity unless one exists (idempotent `earshot init`).
    pub fn init(home: &Path) -> Result<(Self, InitOutcome), IdentityError> {
        match Self::create(home) {
            Ok(identity) => Ok((identity, InitOutcome::Created)),
            Err(IdentityError::AlreadyExists { .. }) => {
                Ok((Self::load(home)?, InitOutcome::AlreadyExisted))
            }
            Err(err) => Err(err),
        }
    }

    /// Loads the identity in `home`.
    pub fn load(home: &Path) -> Result<Self, IdentityError> {
        let path = home.join(KEY_FILE);
        let mut bytes = match fs::read(&path) {
            Ok(bytes) => bytes,
            Err(err) if err.kind() == io::ErrorKind::NotFound => {
                return Err(IdentityError::NotInitialised { path });
            }
            Err(source) => return Err(IdentityError::Io { path, source }),
        };
        let Ok(seed) = <[u8; 32]>::try_from(bytes.as_slice()) else {
            let len = bytes.len();
            bytes.zeroize();
            return Err(IdentityError::Corrupt { path, len });
        };
        bytes.zeroize();
        if let Ok(meta) = fs::metadata(&path) {
            let mode = meta.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                tracing::warn!(path = %path.display(), mode = format!("{mode:o}"), "key file is readable by others; chmod 600 it");
            }
        }
        Ok(Self {
            signing: SigningKey::from_bytes(&seed),
        })
    }

    /// The public key (the node's identity on the wire).
    pub fn key(&self) -> PeerKey {
        PeerKey::from(&self.signing)
    }

    /// The libp2p `PeerId`, derived from the same key.
    pub fn peer_id(&self) -> libp2p_identity::PeerId {
        self.libp2p_keypair().public().to_peer_id()
    }

    /// The application signing key.
    pub fn signing_key(&self) -> &SigningKey {
        &self.signing
    }

    /// The same key as a libp2p `Keypair`, for the swarm.
    pub fn libp2p_keypair(&self) -> libp2p_identity::Keypair {
        libp2p_identity::Keypair::ed25519_from_bytes(self.signing.to_bytes())
            .expect("any 32 bytes are a valid ed25519 secret key")
    }
}

/// Creates `dir` (and parents) if missing, private to the user; one that exists must be private
/// already (nobody else may read or write it: it holds the key, the database and the control
/// socket).
pub(crate) fn ensure_dir(dir: &Path) -> Result<(), IdentityError> {
    let io_err = |source| IdentityError::Io {
        path: dir.to_owned(),
        source,
    };
    if !dir.exists() {
        fs::create_dir_all(dir).map_err(io_err)?;
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700)).map_err(io_err)?;
    }
    let mode = fs::metadata(dir).map_err(io_err)?.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(IdentityError::Exposed {
            path: dir.to_owned(),
            mode,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_then_load_gives_the_same_key_with_a_private_file() {
        let dir = crate::fixtures::private_dir();
        let created = Identity::create(dir.path()).expect("create");
        let loaded = Identity::load(dir.path()).expect("load");
        assert_eq!(created.key(), loaded.key());
        let mode = fs::metadata(dir.path().join(KEY_FILE))
            .expect("key file")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn a_data_directory_others_can_read_or_write_is_refused() {
        let dir = crate::fixtures::private_dir();
        for mode in [0o755, 0o770, 0o707, 0o701] {
            fs::set_permissions(dir.path(), fs::Permissions::from_mode(mode)).expect("chmod");
            let err = Identity::init(dir.path()).expect_err("refused");
            assert!(
                matches!(err, IdentityError::Exposed { mode: m, .. } if m == mode),
                "{err}"
            );
            assert!(err.to_string().contains("chmod 700"), "{err}");
        }
        assert!(!dir.path().join(KEY_FILE).exists(), "no key written there");
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o700)).expect("chmod");
        Identity::init(dir.path()).expect("a private one is used");
    }

    #[test]
    fn never_overwrites_and_init_is_idempotent() {
        let dir = crate::fixtures::private_dir();
        let (first, outcome) = Identity::init(dir.path()).expect("init");
        assert_eq!(outcome, InitOutcome::Created);
        assert!(matches!(
            Identity::create(dir.path()),
            Err(IdentityError::AlreadyExists { .. })
        ));
        let (second, outcome) = Identity::init(dir.path()).expect("init again");
        assert_eq!(outcome, InitOutcome::AlreadyExisted);
        assert_eq!(first.key(), second.key());
    }

    #[test]
    fn peer_id_and_signing_key_are_one_identity() {
        let dir = crate::fixtures::private_dir();
        let identity = Identity::create(dir.path()).expect("create");
        assert_eq!(identity.key().to_peer_id().ok(), Some(identity.peer_id()));
        assert_eq!(
            identity.libp2p_keypair().public().to_peer_id(),
            identity.peer_id()
        );
    }

    #[test]
    fn corrupt_and_missing_key_files_are_clear_errors() {
        let dir = crate::fixtures::private_dir();
        assert!(matches!(
            Identity::load(dir.path()),
            Err(IdentityError::NotInitialised { .. })
        ));
        fs::write(dir.path().join(KEY_FILE), b"short").expect("write");
        assert!(matches!(
            Identity::load(dir.path()),
            Err(IdentityError::Corrupt { len: 5, .. })
        ));
    }
}
