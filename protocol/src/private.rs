//! Private rooms: what only the room's members can read.
//!
//! The host is the room's key authority (it already defines the room and admits everyone). Time
//! in a private room is cut into **epochs**; each has a 32-byte secret. From it come the keys:
//! one per speaker for audio (frames sealed in the spirit of SFrame, RFC 9605: a per-sender key,
//! a nonce from the frame's own sequence number and timestamp, the header as associated data)
//! and one for everything else a member reads (views with names, chat, actions up the tree).
//! An epoch begins one of two ways:
//! - **Ratchet** (someone joined): the next secret is a one-way function of the last, so every
//!   member steps forward on its own and the joiner, given only the new secret, reads nothing
//!   from before it came. The host steps at once when it last stepped a second ago or more,
//!   else it batches the joins of that second into one step.
//! - **Fresh** (someone was removed, or their capability revoked or expired): a new random
//!   secret, sealed by the host to each remaining member's key (X25519 from their Ed25519 key,
//!   one ephemeral key per rekey, HKDF-SHA256, ChaCha20-Poly1305), in parts of at most
//!   [`SEALED_PER_PART`] members. The removed member holds none of it.
//!
//! Keys messages are signed by the host and travel down the relay tree like views; relays that
//! are not members (community relays carry the room's tree, not its key schedule) pass them on
//! and read nothing. What stays readable to a carrier: frame headers (speaker ids, sequence
//! numbers, levels: it must relay and check them), the proofs over the ciphertext, the
//! structure of the tree, the stage's keys and roles, the audience's size, sizes and timing.
//!
//! Besides the epoch secret, each sealed entry carries the room's **topic secret** (fixed for
//! the room's life): the private room's gossip topic is named from it, so an outsider who knows
//! the room id cannot find the topic.

pub mod schedule;

use chacha20poly1305::aead::{Aead, AeadInPlace, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce, Tag};
use curve25519_dalek::montgomery::MontgomeryPoint;
use hkdf::Hkdf;
use serde::{Deserialize, Serialize};
use sha2_11::Sha256;

use crate::codec::{self, DecodeError};
use crate::frame::{AudioFrame, MAX_OPUS_PAYLOAD, flags};
use crate::id::{PeerKey, RoomId, Sig};

/// The most members a private room admits to its key schedule (the host seals each fresh epoch
/// to each of them).
pub const MAX_MEMBERS: usize = 1_000;
/// Members sealed to in one keys message (about 22 KB).
pub const SEALED_PER_PART: usize = 256;
/// Epochs a member keeps (frames in flight under an earlier one still open).
pub const RING_EPOCHS: usize = 8;
/// Bytes a sealed frame adds to its Opus payload: the epoch's low byte and the tag.
pub const FRAME_OVERHEAD: usize = 1 + 16;
/// Largest keys message.
pub const MAX_KEYS_BYTES: usize = 32 * 1024;
/// Largest sealed control message (a view, an envelope) with its framing.
pub const MAX_SEALED_BYTES: usize = 48 * 1024;

const KEYS_DOMAIN: &[u8] = b"earshot/keys/v1";
const SEALED_BYTES: usize = 64 + 16;

/// A 32-byte secret. Never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret([u8; 32]);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(…)")
    }
}

impl Secret {
    /// From 32 random bytes (the caller draws them).
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The room's topic secret, derived from the host's own key: nothing to store, the same
    /// after a restart, unknown to anyone the host never sealed it to.
    pub fn topic_of(host: &ed25519_dalek::SigningKey, room: &RoomId) -> Self {
        Self(derive(
            &host.to_bytes(),
            &[b"earshot topic secret", room.as_bytes()],
        ))
    }

    /// The gossip topic's name for a private room: a hash of the topic secret.
    pub fn topic_name(&self) -> String {
        let name = derive(&self.0, &[b"earshot topic name"]);
        format!("earshot/private/{}", crate::id::base32(&name[..20]))
    }
}

/// One epoch of a room's key schedule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Epoch {
    pub n: u32,
    secret: Secret,
}

impl Epoch {
    pub fn new(n: u32, secret: Secret) -> Self {
        Self { n, secret }
    }

    pub fn secret(&self) -> &Secret {
        &self.secret
    }

    /// The next epoch, stepped forward one way: who has it cannot step back.
    pub fn ratchet(&self, room: &RoomId) -> Self {
        let next = self.n.wrapping_add(1);
        Self {
            n: next,
            secret: Secret(derive(
                &self.secret.0,
                &[b"earshot ratchet", room.as_bytes(), &next.to_be_bytes()],
            )),
        }
    }

    /// Four bytes that tell this epoch's secret from another with the same number (a one-way
    /// function of it: they reveal nothing of it).
    pub fn check(&self) -> u32 {
        let bytes = derive(&self.secret.0, &[b"earshot epoch check"]);
        u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]])
    }

    /// The key `speaker`'s frames are sealed with in this epoch.
    fn audio_key(&self, speaker: u32) -> ChaCha20Poly1305 {
        let key = derive(&self.secret.0, &[b"earshot audio", &speaker.to_be_bytes()]);
        ChaCha20Poly1305::new(Key::from_slice(&key))
    }

    /// The key of everything else members read in this epoch.
    fn control_key(&self) -> ChaCha20Poly1305 {
        let key = derive(&self.secret.0, &[b"earshot control"]);
        ChaCha20Poly1305::new(Key::from_slice(&key))
    }

    /// Seals the payload of one of this node's frames: the frame is marked sealed, its payload
    /// becomes the epoch's low byte, the ciphertext and the tag. The header (speaker, sequence,
    /// timestamp, level, flags) is authenticated, not hidden: relays read it.
    pub fn seal_frame(&self, frame: &mut AudioFrame) -> Result<(), SealError> {
        if frame.payload.len() + FRAME_OVERHEAD > MAX_OPUS_PAYLOAD {
            return Err(SealError::TooLong);
        }
        frame.flags |= flags::SEALED;
        let aad = frame_aad(frame);
        let mut body = std::mem::take(&mut frame.payload);
        let tag = self
            .audio_key(frame.speaker.0)
            .encrypt_in_place_detached(&frame_nonce(frame), &aad, &mut body)
            .map_err(|_| SealError::TooLong)?;
        let mut payload = Vec::with_capacity(body.len() + FRAME_OVERHEAD);
        payload.push(self.n as u8);
        payload.extend_from_slice(&body);
        payload.extend_from_slice(&tag);
        frame.payload = payload;
        Ok(())
    }

    /// Seals `plain` (an encoded view, envelope or action) for the room's members.
    pub fn seal(&self, room: &RoomId, plain: &[u8], nonce: [u8; 12]) -> Vec<u8> {
        let sealed = Sealed {
            epoch: self.n,
            nonce,
            body: serde_bytes::ByteBuf::from(
                self.control_key()
                    .encrypt(
                        Nonce::from_slice(&nonce),
                        Payload {
                            msg: plain,
                            aad: room.as_bytes(),
                        },
                    )
                    // ChaCha20-Poly1305 refuses only messages over 256 GiB; none is near that,
                    // and an empty body would not open (its tag is missing) rather than leak.
                    .unwrap_or_default(),
            ),
        };
        codec::encode(&sealed)
    }
}

/// Why a frame or message could not be sealed or opened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    #[error("the payload is too long to seal")]
    TooLong,
    #[error("no key for epoch {0} (not a member, or not yet)")]
    NoKey(u32),
    #[error("the frame is not sealed")]
    NotSealed,
    #[error("it does not open with the room's keys (altered, or sealed for someone else)")]
    BadTag,
    #[error(transparent)]
    Decode(#[from] DecodeError),
}

/// A message sealed under an epoch's control key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sealed {
    pub epoch: u32,
    #[serde(with = "serde_bytes")]
    nonce: [u8; 12],
    body: serde_bytes::ByteBuf,
}

impl Sealed {
    pub fn decode(bytes: &[u8]) -> Result<Self, SealError> {
        Ok(codec::decode(bytes, MAX_SEALED_BYTES)?)
    }
}

/// A listener's action sealed for the host (in a private room: hands, chat, reactions go up
/// through relays that cannot read them). The author is in the clear so that a notice finds
/// its way back; the host checks it against the envelope inside.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SealedAct {
    pub author: PeerKey,
    pub sealed: serde_bytes::ByteBuf,
}

impl SealedAct {
    pub fn encode(&self) -> Vec<u8> {
        codec::encode(self)
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, SealError> {
        Ok(codec::decode(bytes, MAX_SEALED_BYTES)?)
    }
}

/// The epochs a member holds, newest last (at most [`RING_EPOCHS`]).
#[derive(Clone, Debug, Default)]
pub struct Ring {
    epochs: Vec<Epoch>,
    topic: Option<Secret>,
    /// At the host: the epoch promised to members admitted since the last step, which they
    /// seal with at once (opened, never sealed with, until the room steps to it).
    pending: Option<Epoch>,
}

impl Ring {
    /// The epoch to seal with now.
    pub fn current(&self) -> Option<&Epoch> {
        self.epochs.last()
    }

    /// The epochs held, oldest first.
    pub fn epochs(&self) -> &[Epoch] {
        &self.epochs
    }

    pub fn topic(&self) -> Option<&Secret> {
        self.topic.as_ref()
    }

    pub fn set_topic(&mut self, topic: Secret) {
        self.topic = Some(topic);
    }

    /// At the host: also opens what is sealed under `epoch` (see [`Ring::pending`]).
    pub fn expect(&mut self, epoch: Epoch) {
        self.pending = Some(epoch);
    }

    /// Takes `epoch` if it is newer than the newest held (an older one changes nothing).
    pub fn insert(&mut self, epoch: Epoch) -> bool {
        if self.current().is_some_and(|current| epoch.n <= current.n) {
            return false;
        }
        if self
            .pending
            .as_ref()
            .is_some_and(|pending| pending.n <= epoch.n)
        {
            self.pending = None;
        }
        self.epochs.push(epoch);
        if self.epochs.len() > RING_EPOCHS {
            self.epochs.remove(0);
        }
        true
    }

    /// Steps forward by ratchet to epoch `n` if the newest held is at most [`RING_EPOCHS`]
    /// behind it, no fresh epoch came between (`fresh`: the last fresh epoch) and, when the
    /// host said it (`check`: its [`Epoch::check`]), the ratchet arrives at the host's epoch.
    pub fn ratchet_to(&mut self, room: &RoomId, n: u32, fresh: u32, check: Option<u32>) -> bool {
        let Some(mut epoch) = self.current().cloned() else {
            return false;
        };
        if epoch.n >= n || epoch.n < fresh || n - epoch.n > RING_EPOCHS as u32 {
            return false;
        }
        let mut steps = Vec::new();
        while epoch.n < n {
            epoch = epoch.ratchet(room);
            steps.push(epoch.clone());
        }
        if check.is_some_and(|check| check != epoch.check()) {
            return false;
        }
        for step in steps {
            self.insert(step);
        }
        true
    }

    /// Takes `epoch` from the host where the ring holds another secret under its number (the
    /// host's schedule started again): that one and every later one are dropped first.
    pub fn correct(&mut self, epoch: Epoch) -> bool {
        if let Some(at) = self
            .epochs
            .iter()
            .position(|held| held.n == epoch.n && held.secret != epoch.secret)
        {
            self.epochs.truncate(at);
        }
        self.insert(epoch)
    }

    /// Forgets the epochs before `n` (the host, once the grace after a fresh epoch is over:
    /// frames under them are refused from then on).
    pub fn forget_before(&mut self, n: u32) -> bool {
        let before = self.epochs.len();
        self.epochs.retain(|epoch| epoch.n >= n);
        self.epochs.len() != before
    }

    /// Whether a frame whose epoch byte is `low` is under an epoch held.
    pub fn holds(&self, low: u8) -> bool {
        self.by_low_byte(low).is_some()
    }

    fn by_low_byte(&self, low: u8) -> Option<&Epoch> {
        self.pending
            .iter()
            .chain(self.epochs.iter().rev())
            .find(|epoch| epoch.n as u8 == low)
    }

    fn by_number(&self, n: u32) -> Option<&Epoch> {
        self.pending
            .iter()
            .chain(self.epochs.iter().rev())
            .find(|epoch| epoch.n == n)
    }

    /// Opens a sealed frame (for this node's ears): the Opus payload back, and the epoch.
    pub fn open_frame(&self, frame: &AudioFrame) -> Result<AudioFrame, SealError> {
        if frame.flags & flags::SEALED == 0 {
            return Err(SealError::NotSealed);
        }
        let (&low, rest) = frame.payload.split_first().ok_or(SealError::BadTag)?;
        let epoch = self
            .by_low_byte(low)
            .ok_or(SealError::NoKey(u32::from(low)))?;
        if rest.len() < 16 {
            return Err(SealError::BadTag);
        }
        let (body, tag) = rest.split_at(rest.len() - 16);
        let mut body = body.to_vec();
        epoch
            .audio_key(frame.speaker.0)
            .decrypt_in_place_detached(
                &frame_nonce(frame),
                &frame_aad(frame),
                &mut body,
                Tag::from_slice(tag),
            )
            .map_err(|_| SealError::BadTag)?;
        let mut open = frame.clone();
        open.payload = body;
        open.flags &= !flags::SEALED;
        Ok(open)
    }

    /// Opens a message sealed for the room's members.
    pub fn open(&self, room: &RoomId, bytes: &[u8]) -> Result<Vec<u8>, SealError> {
        let sealed = Sealed::decode(bytes)?;
        let epoch = self
            .by_number(sealed.epoch)
            .ok_or(SealError::NoKey(sealed.epoch))?;
        epoch
            .control_key()
            .decrypt(
                Nonce::from_slice(&sealed.nonce),
                Payload {
                    msg: &sealed.body,
                    aad: room.as_bytes(),
                },
            )
            .map_err(|_| SealError::BadTag)
    }
}

/// The low epoch byte of a sealed frame, without opening it (what the host checks to refuse
/// frames still sealed under an epoch a removed member holds).
pub fn frame_epoch_byte(frame: &AudioFrame) -> Option<u8> {
    (frame.flags & flags::SEALED != 0)
        .then(|| frame.payload.first().copied())
        .flatten()
}

fn frame_nonce(frame: &AudioFrame) -> Nonce {
    let mut nonce = [0u8; 12];
    nonce[..4].copy_from_slice(&frame.speaker.0.to_be_bytes());
    nonce[4..8].copy_from_slice(&frame.seq.to_be_bytes());
    nonce[8..].copy_from_slice(&frame.timestamp.to_be_bytes());
    *Nonce::from_slice(&nonce)
}

fn frame_aad(frame: &AudioFrame) -> [u8; 15] {
    let mut aad = [0u8; 15];
    aad[0] = crate::frame::FRAME_VERSION;
    aad[1..5].copy_from_slice(&frame.speaker.0.to_be_bytes());
    aad[5..9].copy_from_slice(&frame.seq.to_be_bytes());
    aad[9..13].copy_from_slice(&frame.timestamp.to_be_bytes());
    aad[13] = frame.level;
    aad[14] = frame.flags;
    aad
}

/// HKDF-SHA256 of `secret` with `info` (parts concatenated), 32 bytes out.
fn derive(secret: &[u8], info: &[&[u8]]) -> [u8; 32] {
    let hkdf = Hkdf::<Sha256>::new(None, secret);
    let info = info.concat();
    let mut out = [0u8; 32];
    // 32 bytes is far below HKDF-SHA256's limit (8,160).
    let _ = hkdf.expand(&info, &mut out);
    out
}

/// A host-signed step of the key schedule.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Keys {
    pub room: RoomId,
    /// The epoch this begins.
    pub epoch: u32,
    pub how: How,
    signature: Sig,
}

/// How an epoch begins.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum How {
    /// Every member ratchets from the epoch before.
    Ratchet,
    /// A new secret, sealed to each member, in `parts` messages (this is number `part`).
    Fresh {
        #[serde(with = "serde_bytes")]
        ephemeral: [u8; 32],
        part: u16,
        parts: u16,
        sealed: Vec<SealedTo>,
    },
}

/// The epoch secret and the topic secret, sealed to one member.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SealedTo {
    /// The first 8 bytes of the member's key: which entry to open.
    #[serde(with = "serde_bytes")]
    pub to: [u8; 8],
    pub wrapped: serde_bytes::ByteBuf,
}

/// Why a keys message is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeysError {
    #[error(transparent)]
    Decode(#[from] DecodeError),
    #[error("keys for another room")]
    WrongRoom,
    #[error("the keys are not signed by the host")]
    BadSignature,
    #[error("more than {SEALED_PER_PART} members in one keys message")]
    TooMany,
}

#[derive(Serialize)]
struct KeysUnsigned<'a> {
    room: &'a RoomId,
    epoch: u32,
    how: &'a How,
}

impl Keys {
    /// The ratchet to epoch `epoch`, signed.
    pub fn ratchet(room: RoomId, epoch: u32, host: &ed25519_dalek::SigningKey) -> Self {
        Self::signed(room, epoch, How::Ratchet, host)
    }

    fn signed(room: RoomId, epoch: u32, how: How, host: &ed25519_dalek::SigningKey) -> Self {
        let unsigned = KeysUnsigned {
            room: &room,
            epoch,
            how: &how,
        };
        let signature = Sig::sign(host, KEYS_DOMAIN, &codec::encode(&unsigned));
        Self {
            room,
            epoch,
            how,
            signature,
        }
    }

    /// `epoch` and the room's `topic` secret sealed to each of `members` (their Ed25519 keys),
    /// in parts of at most [`SEALED_PER_PART`]. `ephemeral` is 32 random bytes, drawn for this
    /// rekey alone. Members whose key is not a valid point are left out.
    pub fn fresh(
        room: RoomId,
        epoch: &Epoch,
        topic: &Secret,
        members: &[PeerKey],
        ephemeral: [u8; 32],
        host: &ed25519_dalek::SigningKey,
    ) -> Vec<Self> {
        let public = MontgomeryPoint::mul_base_clamped(ephemeral).to_bytes();
        let mut plain = [0u8; 64];
        plain[..32].copy_from_slice(&epoch.secret.0);
        plain[32..].copy_from_slice(&topic.0);
        let sealed: Vec<SealedTo> = members
            .iter()
            .filter_map(|member| {
                let point = member.verifying_key().ok()?.to_montgomery();
                let shared = point.mul_clamped(ephemeral).to_bytes();
                let wrap = wrap_key(&shared, &room, epoch.n, &public, member);
                let wrapped = wrap
                    .encrypt(Nonce::from_slice(&[0u8; 12]), plain.as_slice())
                    .ok()?;
                let mut to = [0u8; 8];
                to.copy_from_slice(&member.as_bytes()[..8]);
                Some(SealedTo {
                    to,
                    wrapped: serde_bytes::ByteBuf::from(wrapped),
                })
            })
            .collect();
        let chunks: Vec<&[SealedTo]> = if sealed.is_empty() {
            vec![&[]]
        } else {
            sealed.chunks(SEALED_PER_PART).collect()
        };
        let parts = u16::try_from(chunks.len()).unwrap_or(u16::MAX);
        chunks
            .into_iter()
            .enumerate()
            .map(|(i, chunk)| {
                let how = How::Fresh {
                    ephemeral: public,
                    part: u16::try_from(i).unwrap_or(u16::MAX),
                    parts,
                    sealed: chunk.to_vec(),
                };
                Self::signed(room, epoch.n, how, host)
            })
            .collect()
    }

    pub fn encode(&self) -> Vec<u8> {
        codec::encode(self)
    }

    /// Reads keys for `room` and checks the host's signature.
    pub fn decode_verified(bytes: &[u8], room: RoomId, host: &PeerKey) -> Result<Self, KeysError> {
        let keys: Self = codec::decode(bytes, MAX_KEYS_BYTES)?;
        if keys.room != room {
            return Err(KeysError::WrongRoom);
        }
        if let How::Fresh { sealed, .. } = &keys.how
            && sealed.len() > SEALED_PER_PART
        {
            return Err(KeysError::TooMany);
        }
        let unsigned = KeysUnsigned {
            room: &keys.room,
            epoch: keys.epoch,
            how: &keys.how,
        };
        if !keys
            .signature
            .verify(host, KEYS_DOMAIN, &codec::encode(&unsigned))
        {
            return Err(KeysError::BadSignature);
        }
        Ok(keys)
    }

    /// The epoch and topic secret sealed to `me`, if this part has them (a member that opens
    /// nothing is not one, or is in another part).
    pub fn open(&self, me: &ed25519_dalek::SigningKey) -> Option<(Epoch, Secret)> {
        let How::Fresh {
            ephemeral, sealed, ..
        } = &self.how
        else {
            return None;
        };
        let mine = PeerKey::from(me);
        // A part that holds nothing for this member costs it nothing.
        if !sealed.iter().any(|entry| entry.to == mine.as_bytes()[..8]) {
            return None;
        }
        let shared = MontgomeryPoint(*ephemeral)
            .mul_clamped(me.to_scalar_bytes())
            .to_bytes();
        let wrap = wrap_key(&shared, &self.room, self.epoch, ephemeral, &mine);
        sealed
            .iter()
            .filter(|entry| entry.to == mine.as_bytes()[..8] && entry.wrapped.len() == SEALED_BYTES)
            .find_map(|entry| {
                let plain = wrap
                    .decrypt(Nonce::from_slice(&[0u8; 12]), entry.wrapped.as_slice())
                    .ok()?;
                let mut epoch = [0u8; 32];
                epoch.copy_from_slice(&plain[..32]);
                let mut topic = [0u8; 32];
                topic.copy_from_slice(&plain[32..64]);
                Some((Epoch::new(self.epoch, Secret(epoch)), Secret(topic)))
            })
    }
}

/// `secret` sealed to `recipient`'s key (X25519 from its Ed25519 key, an ephemeral key of 32
/// random bytes, HKDF-SHA256, ChaCha20-Poly1305), bound to `context`: 80 bytes. How a node
/// keeps a recording's key at rest (sealed to itself). `None`: the key is not a valid point.
pub fn seal_to(
    recipient: &PeerKey,
    secret: &Secret,
    context: &[u8],
    ephemeral: [u8; 32],
) -> Option<Vec<u8>> {
    let public = MontgomeryPoint::mul_base_clamped(ephemeral).to_bytes();
    let point = recipient.verifying_key().ok()?.to_montgomery();
    let shared = point.mul_clamped(ephemeral).to_bytes();
    let key = derive(
        &shared,
        &[b"earshot sealed to", context, &public, recipient.as_bytes()],
    );
    let wrapped = ChaCha20Poly1305::new(Key::from_slice(&key))
        .encrypt(Nonce::from_slice(&[0u8; 12]), secret.0.as_slice())
        .ok()?;
    let mut out = public.to_vec();
    out.extend_from_slice(&wrapped);
    Some(out)
}

/// Opens what [`seal_to`] sealed to `me` for `context`.
pub fn open_sealed(me: &ed25519_dalek::SigningKey, bytes: &[u8], context: &[u8]) -> Option<Secret> {
    if bytes.len() != 32 + 48 {
        return None;
    }
    let mut public = [0u8; 32];
    public.copy_from_slice(&bytes[..32]);
    let mine = PeerKey::from(me);
    let shared = MontgomeryPoint(public)
        .mul_clamped(me.to_scalar_bytes())
        .to_bytes();
    let key = derive(
        &shared,
        &[b"earshot sealed to", context, &public, mine.as_bytes()],
    );
    let plain = ChaCha20Poly1305::new(Key::from_slice(&key))
        .decrypt(Nonce::from_slice(&[0u8; 12]), &bytes[32..])
        .ok()?;
    let mut secret = [0u8; 32];
    secret.copy_from_slice(plain.get(..32)?);
    Some(Secret(secret))
}

/// What a private room's recording keeps sealed under its recording key (in
/// [`crate::replay::ReplaySealed`] records): only a replay link's key opens it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum PrivateRecord {
    /// The room's epochs the recorder held (number, secret): its frames open with them.
    Keys(Vec<(u32, serde_bytes::ByteBuf)>),
    /// The host's signed view of the stage (it names people).
    Stage(serde_bytes::ByteBuf),
    /// The recording's title and its speakers' names (by speaker id).
    About {
        title: String,
        names: Vec<(u32, String)>,
    },
}

impl PrivateRecord {
    /// Sealed under the recording key `key` (`nonce`: 12 random bytes).
    pub fn seal(&self, room: &RoomId, key: &Secret, nonce: [u8; 12]) -> Vec<u8> {
        Epoch::new(0, key.clone()).seal(room, &codec::encode(self), nonce)
    }

    /// Opens a sealed record of `room`'s recording with its key.
    pub fn open(room: &RoomId, key: &Secret, bytes: &[u8]) -> Result<Self, SealError> {
        let mut ring = Ring::default();
        ring.insert(Epoch::new(0, key.clone()));
        let plain = ring.open(room, bytes)?;
        Ok(codec::decode(&plain, MAX_SEALED_BYTES)?)
    }

    /// The epochs of a keys record, as a ring's worth.
    pub fn epochs(&self) -> Vec<Epoch> {
        match self {
            PrivateRecord::Keys(keys) => keys
                .iter()
                .filter_map(|(n, secret)| {
                    let bytes: [u8; 32] = secret.as_slice().try_into().ok()?;
                    Some(Epoch::new(*n, Secret(bytes)))
                })
                .collect(),
            _ => Vec::new(),
        }
    }

    /// A keys record of `ring`'s epochs.
    pub fn keys_of(ring: &Ring) -> Self {
        PrivateRecord::Keys(
            ring.epochs()
                .iter()
                .map(|epoch| {
                    (
                        epoch.n,
                        serde_bytes::ByteBuf::from(epoch.secret().as_bytes().to_vec()),
                    )
                })
                .collect(),
        )
    }
}

/// A recording's epochs, whatever their number (a ring keeps only the newest few; a recording
/// may span many).
#[derive(Clone, Debug, Default)]
pub struct Keychain {
    epochs: std::collections::BTreeMap<u32, Epoch>,
}

impl Keychain {
    pub fn add(&mut self, epochs: impl IntoIterator<Item = Epoch>) {
        for epoch in epochs {
            self.epochs.insert(epoch.n, epoch);
        }
    }

    pub fn is_empty(&self) -> bool {
        self.epochs.is_empty()
    }

    /// Opens a sealed frame with the epoch its byte names: of the epochs held with that low
    /// byte, the one that opens it.
    pub fn open_frame(&self, frame: &AudioFrame) -> Result<AudioFrame, SealError> {
        let low = frame_epoch_byte(frame).ok_or(SealError::NotSealed)?;
        let mut last = SealError::NoKey(u32::from(low));
        for epoch in self.epochs.values().rev().filter(|e| e.n as u8 == low) {
            let mut ring = Ring::default();
            ring.insert(epoch.clone());
            match ring.open_frame(frame) {
                Ok(open) => return Ok(open),
                Err(err) => last = err,
            }
        }
        Err(last)
    }
}

/// The key that wraps one member's share of a fresh epoch: bound to the room, the epoch, the
/// ephemeral key and the member.
fn wrap_key(
    shared: &[u8; 32],
    room: &RoomId,
    epoch: u32,
    ephemeral: &[u8; 32],
    member: &PeerKey,
) -> ChaCha20Poly1305 {
    let key = derive(
        shared,
        &[
            b"earshot seal",
            room.as_bytes(),
            &epoch.to_be_bytes(),
            ephemeral,
            member.as_bytes(),
        ],
    );
    ChaCha20Poly1305::new(Key::from_slice(&key))
}

#[cfg(test)]
mod tests;
