//! Signed capabilities: what an invite grants, checkable offline.
//!
//! A capability is signed by its issuer and may carry the capability it was delegated from. The
//! chain ends at a capability issued by the room's host. [`Capability::verify`] is the only way to
//! obtain a [`Verified`] capability, and it checks every rule in one place:
//!
//! - every link's version is understood and its signature is valid (strict ed25519);
//! - every link is for the expected room, and the root is issued by the room's host;
//! - each delegated link is issued by the holder of its parent (the parent's bound audience, or
//!   anyone who holds a bearer parent), and narrows its parent: role no higher, validity window
//!   inside the parent's, remaining depth strictly smaller;
//! - no link is revoked; the leaf is valid at `now`; a bound leaf is presented by its audience.

use std::collections::HashSet;

use ed25519_dalek::SigningKey;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::Verified;
use crate::codec::{self, DecodeError};
use crate::id::{CapId, PeerKey, Role, RoomId, Sig, Timestamp};

/// The capability format this build writes and understands.
pub const CAPABILITY_VERSION: u8 = 1;
/// Longest chain accepted: the host's grant plus three delegations.
pub const MAX_CHAIN_LINKS: usize = 4;
/// Most delegation depth a host may grant (so chains stay within [`MAX_CHAIN_LINKS`]).
pub const MAX_DELEGATION_DEPTH: u8 = (MAX_CHAIN_LINKS - 1) as u8;
/// Largest encoded capability accepted (a full chain of bound links is about 700 bytes).
pub const MAX_CAPABILITY_BYTES: usize = 1024;

const SIGNATURE_DOMAIN: &[u8] = b"earshot/capability/v1\0";
const ID_DOMAIN: &[u8] = b"earshot/capability-id/v1\0";

/// Who may present a capability.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Serialize, Deserialize)]
pub enum Audience {
    /// Whoever holds the link.
    Bearer,
    /// Only the node with this key.
    Bound(PeerKey),
}

/// A signed grant of a role in a room, possibly delegated from a parent capability.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct Capability {
    pub version: u8,
    pub room: RoomId,
    pub issuer: PeerKey,
    pub audience: Audience,
    pub role: Role,
    pub not_before: Timestamp,
    pub expires_at: Timestamp,
    /// Makes otherwise identical grants distinct, so each can be revoked on its own.
    pub nonce: [u8; 8],
    /// How many further delegations the holder may make.
    pub depth: u8,
    pub parent: Option<Box<Capability>>,
    pub signature: Sig,
}

/// What an issuer grants: everything in a capability except the room, issuer, chain and signature.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Grant {
    pub audience: Audience,
    pub role: Role,
    pub not_before: Timestamp,
    pub expires_at: Timestamp,
    pub depth: u8,
}

/// Who is presenting a capability.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Presenter {
    /// This key: a bound capability must be bound to it.
    Key(PeerKey),
    /// Nobody in particular (inspecting a link offline): the audience is reported, not checked.
    Unchecked,
}

/// Everything [`Capability::verify`] checks a capability against.
#[derive(Clone, Copy, Debug)]
pub struct VerifyContext<'a> {
    pub room: RoomId,
    pub host: PeerKey,
    pub presenter: Presenter,
    pub now: Timestamp,
    pub revoked: &'a dyn Revocations,
}

/// A set of revoked capability ids.
pub trait Revocations: std::fmt::Debug {
    fn is_revoked(&self, id: &CapId) -> bool;
}

impl Revocations for HashSet<CapId> {
    fn is_revoked(&self, id: &CapId) -> bool {
        self.contains(id)
    }
}

impl Revocations for std::collections::BTreeSet<CapId> {
    fn is_revoked(&self, id: &CapId) -> bool {
        self.contains(id)
    }
}

/// No revocations at all.
#[derive(Debug, Clone, Copy)]
pub struct NoRevocations;

impl Revocations for NoRevocations {
    fn is_revoked(&self, _: &CapId) -> bool {
        false
    }
}

/// Why a capability is not valid. Links are numbered from 1, the host's grant.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CapabilityError {
    #[error("malformed capability: {0}")]
    Malformed(#[from] DecodeError),
    #[error("unsupported capability version {found} (this build understands version {supported})")]
    UnsupportedVersion { found: u8, supported: u8 },
    #[error("bad signature on link {link} of the chain (issuer {})", .issuer.as_peer_id())]
    BadSignature { link: usize, issuer: PeerKey },
    #[error("wrong room: the invite is for room {found}, not {expected}")]
    WrongRoom { expected: RoomId, found: RoomId },
    #[error(
        "not issued by the host: the chain starts at {}, but the room's host is {}",
        .issuer.as_peer_id(), .host.as_peer_id()
    )]
    NotIssuedByHost { issuer: PeerKey, host: PeerKey },
    #[error("role escalation: link {link} grants {granted}, but its issuer holds only {allowed}")]
    RoleEscalation {
        link: usize,
        granted: Role,
        allowed: Role,
    },
    #[error(
        "validity window widened: link {link} is valid {not_before} to {expires_at}, \
         outside its parent's {parent_not_before} to {parent_expires_at}"
    )]
    WindowWidened {
        link: usize,
        not_before: Timestamp,
        expires_at: Timestamp,
        parent_not_before: Timestamp,
        parent_expires_at: Timestamp,
    },
    #[error(
        "delegation too deep: link {link} was delegated from a capability that allows no further delegation"
    )]
    DelegationTooDeep { link: usize },
    #[error(
        "delegation too deep: link {link} allows {requested} further delegations, at most {allowed} permitted"
    )]
    DepthWidened {
        link: usize,
        requested: u8,
        allowed: u8,
    },
    #[error("delegation chain longer than {max} links")]
    ChainTooLong { max: usize },
    #[error(
        "link {link} was delegated by {}, who does not hold its parent (bound to {})",
        .issuer.as_peer_id(), .holder.as_peer_id()
    )]
    NotTheHolder {
        link: usize,
        issuer: PeerKey,
        holder: PeerKey,
    },
    #[error("empty validity window: not valid before {not_before}, expires at {expires_at}")]
    EmptyWindow {
        not_before: Timestamp,
        expires_at: Timestamp,
    },
    #[error("not valid before {not_before}")]
    NotYetValid { not_before: Timestamp },
    #[error("expired at {expires_at}")]
    Expired { expires_at: Timestamp },
    #[error("revoked (capability {id})")]
    Revoked { id: CapId },
    #[error(
        "bound to {}, but presented by {}",
        .bound.as_peer_id(), .presenter.as_peer_id()
    )]
    WrongAudience { bound: PeerKey, presenter: PeerKey },
}

/// The signed part of a capability: all fields but the signature, in wire order.
#[derive(Serialize)]
struct Unsigned<'a> {
    version: u8,
    room: &'a RoomId,
    issuer: &'a PeerKey,
    audience: &'a Audience,
    role: Role,
    not_before: Timestamp,
    expires_at: Timestamp,
    nonce: &'a [u8; 8],
    depth: u8,
    parent: Option<&'a Capability>,
}

impl Capability {
    /// The host's grant: the root of every chain. `nonce` comes from the caller's RNG.
    pub fn issue(
        host: &SigningKey,
        room: RoomId,
        grant: Grant,
        nonce: [u8; 8],
    ) -> Result<Self, CapabilityError> {
        check_grant(&grant)?;
        if grant.depth > MAX_DELEGATION_DEPTH {
            return Err(CapabilityError::DepthWidened {
                link: 1,
                requested: grant.depth,
                allowed: MAX_DELEGATION_DEPTH,
            });
        }
        Ok(Self::sign(host, room, grant, nonce, None))
    }

    /// A narrower capability issued by `holder` from this one. Fails, returning no capability, if
    /// the result would not verify: `holder` does not hold this capability, or the grant widens
    /// the role, the window or the depth.
    pub fn delegate(
        &self,
        holder: &SigningKey,
        grant: Grant,
        nonce: [u8; 8],
    ) -> Result<Self, CapabilityError> {
        check_grant(&grant)?;
        let child = Self::sign(
            holder,
            self.room,
            grant,
            nonce,
            Some(Box::new(self.clone())),
        );
        let chain = child.chain();
        let root = chain[0];
        check_chain(&chain, root.room, root.issuer)?;
        Ok(child)
    }

    fn sign(
        key: &SigningKey,
        room: RoomId,
        grant: Grant,
        nonce: [u8; 8],
        parent: Option<Box<Capability>>,
    ) -> Self {
        let mut cap = Self {
            version: CAPABILITY_VERSION,
            room,
            issuer: PeerKey::from(key),
            audience: grant.audience,
            role: grant.role,
            not_before: grant.not_before,
            expires_at: grant.expires_at,
            nonce,
            depth: grant.depth,
            parent,
            signature: Sig([0; 64]),
        };
        cap.signature = Sig::sign(key, SIGNATURE_DOMAIN, &cap.signed_bytes());
        cap
    }

    fn signed_bytes(&self) -> Vec<u8> {
        codec::encode(&Unsigned {
            version: self.version,
            room: &self.room,
            issuer: &self.issuer,
            audience: &self.audience,
            role: self.role,
            not_before: self.not_before,
            expires_at: self.expires_at,
            nonce: &self.nonce,
            depth: self.depth,
            parent: self.parent.as_deref(),
        })
    }

    /// The canonical encoding.
    pub fn encode(&self) -> Vec<u8> {
        codec::encode(self)
    }

    /// Reads a capability, refusing oversized, non-canonical or over-long chains.
    pub fn decode(bytes: &[u8]) -> Result<Self, CapabilityError> {
        let cap: Self = codec::decode(bytes, MAX_CAPABILITY_BYTES)?;
        cap.check_chain_length()?;
        Ok(cap)
    }

    pub(crate) fn check_chain_length(&self) -> Result<(), DecodeError> {
        let mut links = 1;
        let mut cap = self;
        while let Some(parent) = &cap.parent {
            links += 1;
            if links > MAX_CHAIN_LINKS {
                return Err(DecodeError::ChainTooLong {
                    max: MAX_CHAIN_LINKS,
                });
            }
            cap = parent;
        }
        Ok(())
    }

    /// This capability's id, which revocations name.
    pub fn id(&self) -> CapId {
        let mut hasher = Sha256::new();
        hasher.update(ID_DOMAIN);
        hasher.update(self.encode());
        let digest = hasher.finalize();
        let mut id = [0; 16];
        id.copy_from_slice(&digest[..16]);
        CapId(id)
    }

    /// The chain from the host's grant (first) to this capability (last).
    pub fn chain(&self) -> Vec<&Capability> {
        let mut chain = vec![self];
        let mut cap = self;
        while let Some(parent) = &cap.parent {
            chain.push(parent);
            cap = parent;
        }
        chain.reverse();
        chain
    }

    /// The key of whoever issued the root of the chain (the host, once verified).
    pub fn root_issuer(&self) -> PeerKey {
        self.chain()[0].issuer
    }

    /// Checks every rule (see the module docs) and returns the capability marked as verified.
    pub fn verify(&self, ctx: &VerifyContext<'_>) -> Result<Verified<Capability>, CapabilityError> {
        let chain = self.chain();
        check_chain(&chain, ctx.room, ctx.host)?;
        for link in &chain {
            let id = link.id();
            if ctx.revoked.is_revoked(&id) {
                return Err(CapabilityError::Revoked { id });
            }
        }
        // Narrowing makes the leaf's window the tightest of the chain.
        if ctx.now < self.not_before {
            return Err(CapabilityError::NotYetValid {
                not_before: self.not_before,
            });
        }
        if ctx.now >= self.expires_at {
            return Err(CapabilityError::Expired {
                expires_at: self.expires_at,
            });
        }
        if let (Audience::Bound(bound), Presenter::Key(presenter)) = (self.audience, ctx.presenter)
            && bound != presenter
        {
            return Err(CapabilityError::WrongAudience { bound, presenter });
        }
        Ok(Verified::new(self.clone()))
    }
}

fn check_grant(grant: &Grant) -> Result<(), CapabilityError> {
    if grant.not_before >= grant.expires_at {
        return Err(CapabilityError::EmptyWindow {
            not_before: grant.not_before,
            expires_at: grant.expires_at,
        });
    }
    Ok(())
}

/// The time-independent rules: versions, signatures, room, host, and narrowing.
fn check_chain(chain: &[&Capability], room: RoomId, host: PeerKey) -> Result<(), CapabilityError> {
    if chain.len() > MAX_CHAIN_LINKS {
        return Err(CapabilityError::ChainTooLong {
            max: MAX_CHAIN_LINKS,
        });
    }
    for (index, cap) in chain.iter().enumerate() {
        let link = index + 1;
        if cap.version != CAPABILITY_VERSION {
            return Err(CapabilityError::UnsupportedVersion {
                found: cap.version,
                supported: CAPABILITY_VERSION,
            });
        }
        if !cap
            .signature
            .verify(&cap.issuer, SIGNATURE_DOMAIN, &cap.signed_bytes())
        {
            return Err(CapabilityError::BadSignature {
                link,
                issuer: cap.issuer,
            });
        }
        if cap.room != room {
            return Err(CapabilityError::WrongRoom {
                expected: room,
                found: cap.room,
            });
        }
        let Some(parent) = index.checked_sub(1).map(|i| chain[i]) else {
            if cap.issuer != host {
                return Err(CapabilityError::NotIssuedByHost {
                    issuer: cap.issuer,
                    host,
                });
            }
            if cap.depth > MAX_DELEGATION_DEPTH {
                return Err(CapabilityError::DepthWidened {
                    link,
                    requested: cap.depth,
                    allowed: MAX_DELEGATION_DEPTH,
                });
            }
            continue;
        };
        if let Audience::Bound(holder) = parent.audience
            && cap.issuer != holder
        {
            return Err(CapabilityError::NotTheHolder {
                link,
                issuer: cap.issuer,
                holder,
            });
        }
        let Some(allowed) = parent.depth.checked_sub(1) else {
            return Err(CapabilityError::DelegationTooDeep { link });
        };
        if cap.depth > allowed {
            return Err(CapabilityError::DepthWidened {
                link,
                requested: cap.depth,
                allowed,
            });
        }
        if cap.role > parent.role {
            return Err(CapabilityError::RoleEscalation {
                link,
                granted: cap.role,
                allowed: parent.role,
            });
        }
        if cap.not_before < parent.not_before || cap.expires_at > parent.expires_at {
            return Err(CapabilityError::WindowWidened {
                link,
                not_before: cap.not_before,
                expires_at: cap.expires_at,
                parent_not_before: parent.not_before,
                parent_expires_at: parent.expires_at,
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
