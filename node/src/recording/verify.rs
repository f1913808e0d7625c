//! Whether a recording's frames are what their speakers said: every frame checked against its
//! speaker's signed proof ([`earshot_protocol::replay::verify`]), for a recording made here or
//! fetched as a replay alike.
//!
//! The speakers' keys are the recording's metadata (for a fetched replay, its manifest, signed by
//! the recorder): a report says which key each speaker's frames were checked with, for the
//! reader to compare with the people they know.

use earshot_protocol::RecordingId;
use earshot_protocol::replay::ContentFormat;
use earshot_protocol::replay::verify::{ContentVerifier, VerifyReport};

use super::store::{RecordingError, RecordingMeta, Recordings};

/// A recording checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verification {
    pub meta: RecordingMeta,
    /// [`ContentFormat::Unauthenticated`]: the recording was kept before frames carried what
    /// their speakers signed (recorded by an older build, or fetched as a version 1 replay), so
    /// none of its frames can verify.
    pub format: ContentFormat,
    pub report: VerifyReport,
}

impl Verification {
    /// Every frame verified (and no proof with a bad signature).
    pub fn is_verified(&self) -> bool {
        self.format == ContentFormat::Authenticated && self.report.is_verified()
    }
}

impl Recordings {
    /// Checks every frame of recording `id` against its speaker's proof, with the speakers'
    /// keys its metadata names.
    pub fn verify(&self, id: &RecordingId) -> Result<Verification, RecordingError> {
        self.verify_with(id, None)
    }

    /// [`Self::verify`]; a private room's recording with its recording `key` also has its
    /// sealed views of the stage checked (its frames are checked as sealed either way: the
    /// speakers signed the ciphertext).
    pub fn verify_with(
        &self,
        id: &RecordingId,
        key: Option<earshot_protocol::private::Secret>,
    ) -> Result<Verification, RecordingError> {
        let meta = self
            .get(id)?
            .ok_or_else(|| RecordingError::NotFound(id.to_string()))?;
        let format = self.format(id)?;
        let keys = meta
            .speakers
            .iter()
            .filter_map(|(speaker, info)| info.key.map(|key| (*speaker, key)));
        let mut verifier = ContentVerifier::new(meta.room, keys).with_host(meta.host);
        if let Some(key) = key {
            verifier = verifier.with_key(key);
        }
        for record in self.records(id) {
            verifier.record(&record?);
        }
        Ok(Verification {
            meta,
            format,
            report: verifier.finish(),
        })
    }
}

#[cfg(test)]
mod tests;
