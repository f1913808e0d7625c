//! Speakers' agreements to be recorded, kept with each recording: the signed envelopes in which
//! members on stage said they agree to speak in it
//! ([`ControlBody::RecordingConsent`](earshot_protocol::ControlBody::RecordingConsent)), in a
//! tree of their own keyed by recording and member (a recording's metadata stays as it was).

use earshot_protocol::envelope::Envelope;
use earshot_protocol::{ControlBody, PeerKey, RecordingId, Timestamp};
use serde::{Deserialize, Serialize};

use super::{RecordingError, Recordings};
use crate::store::{decode_record, encode_record};

pub(super) const CONSENTS: &str = "recording_consents";
/// Largest agreement kept (a signed envelope of a few hundred bytes).
const MAX_CONSENT_BYTES: usize = 4 * 1024;

/// One speaker's agreement to be recorded, as kept.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Consent {
    pub member: PeerKey,
    pub name: String,
    /// The start of the recording it agreed to (as it knew it).
    pub since: Timestamp,
    /// When it said so (the envelope's time).
    pub at: Timestamp,
    /// The envelope it signed.
    #[serde(with = "serde_bytes")]
    pub envelope: Vec<u8>,
}

impl Consent {
    /// The agreement in `envelope`, if it is one, signed by its author.
    pub fn from_envelope(envelope: &[u8], name: String) -> Option<Self> {
        if envelope.len() > MAX_CONSENT_BYTES {
            return None;
        }
        let verified = Envelope::decode_verified(envelope).ok()?;
        let ControlBody::RecordingConsent { since } = verified.body else {
            return None;
        };
        Some(Self {
            member: verified.author,
            name,
            since,
            at: verified.sent_at,
            envelope: envelope.to_vec(),
        })
    }

    /// Whether the envelope kept is still what its author signed, saying this.
    pub fn verifies(&self) -> bool {
        Consent::from_envelope(&self.envelope, self.name.clone())
            .is_some_and(|again| again.member == self.member && again.since == self.since)
    }
}

impl Recordings {
    /// Keeps `consent` with recording `id` (a member's later one replaces its earlier).
    pub fn add_consent(&self, id: &RecordingId, consent: &Consent) -> Result<(), RecordingError> {
        let err = self.store.db_err();
        let tree = self.store.db().open_tree(CONSENTS).map_err(&err)?;
        let mut key = id.as_bytes().to_vec();
        key.extend_from_slice(&consent.member.0);
        tree.insert(key, encode_record(consent)).map_err(&err)?;
        Ok(())
    }

    /// The agreements kept with recording `id`, in the order they were said.
    pub fn consents(&self, id: &RecordingId) -> Result<Vec<Consent>, RecordingError> {
        let err = self.store.db_err();
        let tree = self.store.db().open_tree(CONSENTS).map_err(&err)?;
        let mut all = Vec::new();
        for value in tree.scan_prefix(id.as_bytes()).values() {
            all.push(decode_record::<Consent>("consent", &value.map_err(&err)?)?);
        }
        all.sort_by_key(|consent| consent.at);
        Ok(all)
    }

    /// Forgets the agreements kept with recording `id` (it is deleted).
    pub(super) fn delete_consents(&self, id: &RecordingId) -> Result<(), RecordingError> {
        let err = self.store.db_err();
        let tree = self.store.db().open_tree(CONSENTS).map_err(&err)?;
        for key in tree.scan_prefix(id.as_bytes()).keys() {
            tree.remove(key.map_err(&err)?).map_err(&err)?;
        }
        Ok(())
    }
}
