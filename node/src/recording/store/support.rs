//! Support said in a room, kept with each recording: the signed envelopes in which members
//! supported the host ([`ControlBody::Support`]) and the host's receipts for them
//! ([`ControlBody::SupportReceipt`]), in a tree of their own keyed by recording and message.

use earshot_protocol::envelope::Envelope;
use earshot_protocol::{ControlBody, PeerKey, RecordingId, Timestamp};
use serde::{Deserialize, Serialize};

use super::{RecordingError, Recordings};
use crate::store::{decode_record, encode_record};

const SUPPORTS: &str = "recording_supports";
/// Largest message kept (a signed envelope of a few hundred bytes).
const MAX_ENVELOPE_BYTES: usize = 4 * 1024;
/// Most support messages kept with one recording: past it, later ones are not kept (each
/// author's own budget in the room already holds it to about one a second).
pub const MAX_SUPPORTS: usize = 1_000;

/// One member's support, as kept, with the host's receipt if it came.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Supported {
    pub supporter: PeerKey,
    pub name: String,
    pub amount: u64,
    pub unit: String,
    pub note: String,
    pub at: Timestamp,
    /// The envelope's digest (what a receipt names).
    pub id: [u8; 32],
    #[serde(with = "serde_bytes")]
    pub envelope: Vec<u8>,
    /// The host's signed receipt.
    pub receipt: Option<serde_bytes::ByteBuf>,
}

impl Supported {
    /// The support in `envelope`, if it is one, signed by its author.
    pub fn from_envelope(envelope: &[u8], name: String) -> Option<Self> {
        if envelope.len() > MAX_ENVELOPE_BYTES {
            return None;
        }
        let verified = Envelope::decode_verified(envelope).ok()?;
        let ControlBody::Support { amount, unit, note } = &verified.body else {
            return None;
        };
        Some(Self {
            supporter: verified.author,
            name,
            amount: *amount,
            unit: unit.clone(),
            note: note.clone(),
            at: verified.sent_at,
            id: verified.digest(),
            envelope: envelope.to_vec(),
            receipt: None,
        })
    }

    /// Whether the message kept is still what its author signed, saying this.
    pub fn verifies(&self) -> bool {
        Supported::from_envelope(&self.envelope, self.name.clone()).is_some_and(|again| {
            again.supporter == self.supporter
                && again.id == self.id
                && (again.amount, &again.unit, &again.note) == (self.amount, &self.unit, &self.note)
        })
    }

    /// Whether the host `host` signed a receipt for this support (and it is kept).
    pub fn confirmed_by(&self, host: &PeerKey) -> bool {
        self.receipt
            .as_ref()
            .and_then(|receipt| receipt_for(receipt))
            .is_some_and(|(author, supporter, id)| {
                author == *host && supporter == self.supporter && id == self.id
            })
    }
}

/// A receipt's author, supporter and the support it names, if `envelope` is one, signed.
fn receipt_for(envelope: &[u8]) -> Option<(PeerKey, PeerKey, [u8; 32])> {
    if envelope.len() > MAX_ENVELOPE_BYTES {
        return None;
    }
    let verified = Envelope::decode_verified(envelope).ok()?;
    let ControlBody::SupportReceipt { supporter, support } = verified.body else {
        return None;
    };
    Some((verified.author, supporter, support))
}

fn key(id: &RecordingId, support: &[u8; 32]) -> Vec<u8> {
    let mut key = id.as_bytes().to_vec();
    key.extend_from_slice(support);
    key
}

impl Recordings {
    /// Keeps `support` with recording `id` (once; at most [`MAX_SUPPORTS`]). Whether it is
    /// newly kept (not when it was already).
    pub fn add_support(
        &self,
        id: &RecordingId,
        support: &Supported,
    ) -> Result<bool, RecordingError> {
        let err = self.store.db_err();
        let tree = self.store.db().open_tree(SUPPORTS).map_err(&err)?;
        let key = key(id, &support.id);
        if tree.contains_key(&key).map_err(&err)? {
            return Ok(false);
        }
        if tree.scan_prefix(id.as_bytes()).count() >= MAX_SUPPORTS {
            return Ok(false);
        }
        tree.insert(key, encode_record(support)).map_err(&err)?;
        Ok(true)
    }

    /// Keeps the host's `receipt` (a signed envelope) with the support it names, if that is
    /// kept with recording `id` and had none. Whether it is newly kept.
    pub fn confirm_support(
        &self,
        id: &RecordingId,
        receipt: &[u8],
    ) -> Result<bool, RecordingError> {
        let Some((_, _, support)) = receipt_for(receipt) else {
            return Ok(false);
        };
        let err = self.store.db_err();
        let tree = self.store.db().open_tree(SUPPORTS).map_err(&err)?;
        let key = key(id, &support);
        let Some(value) = tree.get(&key).map_err(&err)? else {
            return Ok(false);
        };
        let mut kept = decode_record::<Supported>("support", &value)?;
        if kept.receipt.is_some() {
            return Ok(false);
        }
        kept.receipt = Some(serde_bytes::ByteBuf::from(receipt.to_vec()));
        tree.insert(key, encode_record(&kept)).map_err(&err)?;
        Ok(true)
    }

    /// The support kept with recording `id`, in the order it was said.
    pub fn supports(&self, id: &RecordingId) -> Result<Vec<Supported>, RecordingError> {
        let err = self.store.db_err();
        let tree = self.store.db().open_tree(SUPPORTS).map_err(&err)?;
        let mut all = Vec::new();
        for value in tree.scan_prefix(id.as_bytes()).values() {
            all.push(decode_record::<Supported>(
                "support",
                &value.map_err(&err)?,
            )?);
        }
        all.sort_by_key(|support| support.at);
        Ok(all)
    }

    /// Forgets the support kept with recording `id` (it is deleted).
    pub(super) fn delete_supports(&self, id: &RecordingId) -> Result<(), RecordingError> {
        let err = self.store.db_err();
        let tree = self.store.db().open_tree(SUPPORTS).map_err(&err)?;
        for key in tree.scan_prefix(id.as_bytes()).keys() {
            tree.remove(key.map_err(&err)?).map_err(&err)?;
        }
        Ok(())
    }
}
