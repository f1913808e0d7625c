//! Checking a recording's frames against their speakers' proofs, in one pass over its content.
//!
//! A recording (kept here or fetched as a replay) holds the frames the recorder heard and the
//! proofs that came with them ([`super::ContentRecord`]), in time order: a proof sits right
//! after the frames it covers (or just before them, when it reached the recorder first).
//! [`ContentVerifier`] takes the records in that order and says, per speaker, how many frames
//! match a proof their speaker's key signed ([`crate::proof::FrameProof::verify`]), how many
//! have no such proof, how many do not match the proof that covers them (forged: not what the
//! speaker said), and how many proofs carry a bad signature.
//!
//! The speakers' keys come from the caller (for a recording, its metadata: the recorder names
//! who spoke, and anyone may compare those keys with the people they know). A frame of a
//! speaker with no key cannot be checked and counts as without a proof. Given the room's host
//! ([`ContentVerifier::with_host`]), the content's stage records (views the host signed while
//! the recording ran) say which of those keys the host put on stage, and under what name
//! ([`SpeakerReport::named_by_host`]): a recorder can name keys as it likes, not make the host
//! vouch for them.
//!
//! Memory stays bounded whatever the content: a frame waits for its proof at most
//! [`WINDOW_SAMPLES`] of content time (and at most [`MAX_WAITING`] frames per speaker), as do
//! hashes from proofs waiting for their frames; speakers without a key beyond
//! [`MAX_VOICES`] are counted together ([`VerifyReport::others`]).

use std::collections::BTreeMap;

use super::{ContentRecord, ReplayConsent, ReplayFrame, ReplayProof, ReplayStage, ReplayStudio};
use crate::audience::AudienceView;
use crate::id::{PeerKey, RoomId};
use crate::proof::FrameHash;

/// How far apart in content time (48 kHz samples) a frame and its proof may be: 10 s. A
/// recorder keeps a proof within a few frames of those it covers.
pub const WINDOW_SAMPLES: u64 = 10 * 48_000;
/// Frames of one speaker waiting for a proof, and hashes waiting for their frames, at most
/// each (ten times what [`WINDOW_SAMPLES`] holds of one voice at 50 frames a second).
pub const MAX_WAITING: usize = 5_000;
/// Speakers reported one by one, at most (a manifest lists at most
/// [`super::MAX_SPEAKERS`]); frames of others are counted in [`VerifyReport::others`].
pub const MAX_VOICES: usize = 1_024;
/// Keys the host named on stage that a verifier remembers, at most.
pub const MAX_NAMED: usize = 1_024;
/// How often (in content time) waiting frames and hashes are checked for their window.
const SWEEP_SAMPLES: u64 = 48_000;

/// What was found of one speaker's frames, or of several.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Tally {
    /// Frames in the content.
    pub frames: u64,
    /// Frames that match a proof signed by their speaker's key.
    pub verified: u64,
    /// Frames no proof of their speaker covers (or whose speaker has no key to check with).
    pub unproven: u64,
    /// Frames that do not match the proof their speaker signed for them: altered or made up.
    pub forged: u64,
    /// Proofs signed by their speaker's key.
    pub proofs: u64,
    /// Proofs whose signature is not their speaker's (ignored).
    pub bad_proofs: u64,
    /// Frames of studio chunks signed by their speaker's key ([`crate::studio`]).
    pub studio: u64,
    /// Studio chunks not signed by their speaker's key (or whose speaker has no key here).
    pub bad_studio: u64,
}

impl Tally {
    /// Every frame verified, no bad proof, no studio chunk its speaker did not sign.
    pub fn is_verified(&self) -> bool {
        self.verified == self.frames && self.bad_proofs == 0 && self.bad_studio == 0
    }

    fn add(&mut self, other: &Tally) {
        self.frames += other.frames;
        self.verified += other.verified;
        self.unproven += other.unproven;
        self.forged += other.forged;
        self.proofs += other.proofs;
        self.bad_proofs += other.bad_proofs;
        self.studio += other.studio;
        self.bad_studio += other.bad_studio;
    }
}

/// One speaker's frames checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SpeakerReport {
    /// The speaker id its frames carry ([`crate::frame::SpeakerId`]).
    pub speaker: u32,
    /// The key its frames were checked with, if one was given.
    pub key: Option<PeerKey>,
    /// The name the host gave that key on stage, in a view it signed that the content keeps
    /// (`None`: the host's word does not name this key, or no host was given).
    pub named_by_host: Option<String>,
    pub tally: Tally,
}

/// A content checked.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VerifyReport {
    /// Every speaker with frames or proofs in the content, by speaker id.
    pub speakers: Vec<SpeakerReport>,
    /// Frames and proofs of speakers beyond the first [`MAX_VOICES`] (none have a key).
    pub others: Tally,
    /// Stage records whose view the host signed, and those that it did not (ignored).
    pub stage_views: u64,
    pub bad_stage_views: u64,
    /// A private room's sealed records left unopened (no key given, or not this recording's).
    pub sealed: u64,
    /// Speakers' agreements to be recorded, each signed by its speaker for this room (at most
    /// [`MAX_CONSENTS`] listed), and those that are not (forged, or another room's).
    pub consents: Vec<ConsentReport>,
    pub bad_consents: u64,
    /// Support members said in the room, each signed by its author for this room (at most
    /// [`MAX_SUPPORTS`]), confirmed when the room's host signed a receipt for it.
    pub supports: Vec<SupportReport>,
}

/// A member's signed support, as a replay keeps it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SupportReport {
    pub supporter: PeerKey,
    pub amount: u64,
    pub unit: String,
    pub note: String,
    pub at: crate::id::Timestamp,
    /// The host signed a receipt for it.
    pub confirmed: bool,
}

/// Support messages a report lists at most.
pub const MAX_SUPPORTS: usize = 1_000;

/// A speaker's signed agreement to be recorded, as a replay keeps it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConsentReport {
    pub member: PeerKey,
    /// The start of the recording it agreed to, as it knew it.
    pub since: crate::id::Timestamp,
    /// When it said so.
    pub at: crate::id::Timestamp,
}

/// Agreements a report lists at most (one a speaker and recording: a stage's worth).
pub const MAX_CONSENTS: usize = 256;

impl VerifyReport {
    /// All speakers together.
    pub fn total(&self) -> Tally {
        let mut total = self.others;
        for speaker in &self.speakers {
            total.add(&speaker.tally);
        }
        total
    }

    /// Every frame verified, no bad proof, no agreement its speaker did not sign.
    pub fn is_verified(&self) -> bool {
        self.total().is_verified() && self.bad_consents == 0
    }
}

/// Checks a content's records as they come (sans-IO: feed it the records in content order,
/// then [`Self::finish`]).
#[derive(Debug)]
pub struct ContentVerifier {
    room: RoomId,
    host: Option<PeerKey>,
    /// Keys the host put on stage, with the names it gave them.
    named: BTreeMap<PeerKey, String>,
    stage_views: u64,
    bad_stage_views: u64,
    /// A private room's recording key: its sealed stage views are checked too.
    key: Option<crate::private::Secret>,
    sealed: u64,
    voices: BTreeMap<u32, Voice>,
    others: Tally,
    /// The latest content time seen.
    now: u64,
    next_sweep: u64,
    consents: Vec<ConsentReport>,
    bad_consents: u64,
    /// Support by its envelope's digest, and the digests the host's receipts name.
    supports: Vec<([u8; 32], SupportReport)>,
    receipts: std::collections::HashSet<[u8; 32]>,
}

#[derive(Debug)]
struct Voice {
    key: Option<PeerKey>,
    tally: Tally,
    /// Frames waiting for a proof: seq → (hash, when).
    waiting: BTreeMap<u32, (FrameHash, u64)>,
    /// Hashes from proofs that came before their frames: seq → (hash, when).
    proven: BTreeMap<u32, (FrameHash, u64)>,
}

impl Voice {
    fn new(key: Option<PeerKey>) -> Self {
        Self {
            key,
            tally: Tally::default(),
            waiting: BTreeMap::new(),
            proven: BTreeMap::new(),
        }
    }

    /// Settles waiting frames older than `oldest` as without a proof; forgets older hashes.
    fn sweep(&mut self, oldest: u64) {
        let before = self.waiting.len();
        self.waiting.retain(|_, (_, at)| *at >= oldest);
        self.tally.unproven += (before - self.waiting.len()) as u64;
        self.proven.retain(|_, (_, at)| *at >= oldest);
    }
}

impl ContentVerifier {
    /// A verifier for a recording of `room` whose speakers have `keys` (speaker id → key).
    pub fn new(room: RoomId, keys: impl IntoIterator<Item = (u32, PeerKey)>) -> Self {
        let mut voices = BTreeMap::new();
        for (speaker, key) in keys {
            if voices.len() < MAX_VOICES {
                voices.insert(speaker, Voice::new(Some(key)));
            }
        }
        Self {
            room,
            host: None,
            named: BTreeMap::new(),
            stage_views: 0,
            bad_stage_views: 0,
            key: None,
            sealed: 0,
            voices,
            others: Tally::default(),
            now: 0,
            next_sweep: SWEEP_SAMPLES,
            consents: Vec::new(),
            bad_consents: 0,
            supports: Vec::new(),
            receipts: std::collections::HashSet::new(),
        }
    }

    /// The next record of the content.
    /// Checks stage records against `host`, the room's host: keys it put on stage are reported
    /// with the names it gave them.
    pub fn with_host(mut self, host: PeerKey) -> Self {
        self.host = Some(host);
        self
    }

    /// Opens a private room's sealed records with its recording key (the host's views of the
    /// stage in them are checked like any). Frames are checked as sealed: their speakers
    /// signed the ciphertext.
    pub fn with_key(mut self, key: crate::private::Secret) -> Self {
        self.key = Some(key);
        self
    }

    pub fn record(&mut self, record: &ContentRecord) {
        match record {
            ContentRecord::Frame(frame) => self.frame(frame),
            ContentRecord::Proof(proof) => self.proof(proof),
            ContentRecord::Stage(stage) => self.stage(stage),
            ContentRecord::Sealed(sealed) => {
                let opened = self.key.as_ref().and_then(|key| {
                    crate::private::PrivateRecord::open(&self.room, key, &sealed.bytes).ok()
                });
                match opened {
                    Some(crate::private::PrivateRecord::Stage(view)) => self.stage(&ReplayStage {
                        at: sealed.at,
                        view: view.into_vec(),
                    }),
                    Some(_) => {}
                    None => self.sealed += 1,
                }
            }
            ContentRecord::Studio(studio) => self.studio(studio),
            ContentRecord::Consent(consent) => self.consent(consent),
        }
    }

    /// A room message kept with the recording: a speaker's agreement to be recorded, a
    /// member's support, the host's receipt for one; signed by its author, for this room, or
    /// not.
    pub fn consent(&mut self, record: &ReplayConsent) {
        self.advance(record.at);
        let signed = crate::envelope::Envelope::decode_verified(&record.envelope)
            .ok()
            .filter(|envelope| envelope.room == self.room && envelope.author == record.author);
        let digest = signed.as_ref().map(|envelope| envelope.digest());
        match signed.map(|envelope| (envelope.sent_at, envelope.into_inner().body)) {
            Some((at, crate::control::ControlBody::Support { amount, unit, note })) => {
                // The same signed message again (a holder repeating it) counts once.
                if self.supports.len() < MAX_SUPPORTS
                    && let Some(digest) = digest
                    && !self.supports.iter().any(|(seen, _)| *seen == digest)
                {
                    self.supports.push((
                        digest,
                        SupportReport {
                            supporter: record.author,
                            amount,
                            unit,
                            note,
                            at,
                            confirmed: false,
                        },
                    ));
                }
            }
            Some((_, crate::control::ControlBody::SupportReceipt { support, .. }))
                if self.host.is_some_and(|host| host == record.author) =>
            {
                if self.receipts.len() < MAX_SUPPORTS {
                    self.receipts.insert(support);
                }
            }
            Some((at, crate::control::ControlBody::RecordingConsent { since })) => {
                if self.consents.len() < MAX_CONSENTS {
                    self.consents.push(ConsentReport {
                        member: record.author,
                        since,
                        at,
                    });
                }
            }
            _ => self.bad_consents += 1,
        }
    }

    /// A chunk of a speaker's studio track: signed by the speaker's key, or not.
    pub fn studio(&mut self, record: &ReplayStudio) {
        self.advance(record.at);
        let room = self.room;
        let chunk = &record.chunk;
        let Some(voice) = self.voice(chunk.speaker.0) else {
            self.others.bad_studio += 1;
            return;
        };
        match voice.key {
            Some(key) if chunk.verify(&room, &key) => {
                voice.tally.studio += chunk.frames.len() as u64;
            }
            _ => voice.tally.bad_studio += 1,
        }
    }

    /// A view the host signed (if it did): who was on stage.
    pub fn stage(&mut self, stage: &ReplayStage) {
        let Some(host) = self.host else {
            return;
        };
        match AudienceView::decode_verified(&stage.view, self.room, &host) {
            Ok(view) => {
                self.stage_views += 1;
                for member in &view.stage {
                    if self.named.len() < MAX_NAMED || self.named.contains_key(&member.key) {
                        self.named.insert(member.key, member.name.clone());
                    }
                }
            }
            Err(_) => self.bad_stage_views += 1,
        }
    }

    /// The next frame of the content.
    pub fn frame(&mut self, frame: &ReplayFrame) {
        self.advance(frame.at);
        let Some(voice) = self.voice(frame.speaker) else {
            self.others.frames += 1;
            self.others.unproven += 1;
            return;
        };
        voice.tally.frames += 1;
        if voice.key.is_none() {
            voice.tally.unproven += 1;
            return;
        }
        let hash = frame.hash();
        match voice.proven.remove(&frame.seq) {
            Some((proven, _)) if proven == hash => voice.tally.verified += 1,
            Some(_) => voice.tally.forged += 1,
            None => {
                // A second frame with this number (the speaker's clock wrapped): the first one
                // has had its chance.
                if voice.waiting.insert(frame.seq, (hash, frame.at)).is_some() {
                    voice.tally.unproven += 1;
                }
                if voice.waiting.len() > MAX_WAITING {
                    voice.waiting.pop_first();
                    voice.tally.unproven += 1;
                }
            }
        }
    }

    /// The next proof of the content.
    pub fn proof(&mut self, record: &ReplayProof) {
        self.advance(record.at);
        let room = self.room;
        let proof = &record.proof;
        let Some(voice) = self.voice(proof.speaker.0) else {
            return;
        };
        let Some(key) = voice.key else {
            return;
        };
        if !proof.verify(&room, &key) {
            voice.tally.bad_proofs += 1;
            return;
        }
        voice.tally.proofs += 1;
        for seq in proof.seqs() {
            let Some(hash) = proof.hash_of(seq) else {
                continue;
            };
            match voice.waiting.remove(&seq) {
                Some((waiting, _)) if waiting == *hash => voice.tally.verified += 1,
                Some(_) => voice.tally.forged += 1,
                None => {
                    voice.proven.insert(seq, (*hash, record.at));
                    if voice.proven.len() > MAX_WAITING {
                        voice.proven.pop_first();
                    }
                }
            }
        }
    }

    /// The content ended: frames still waiting have no proof.
    pub fn finish(self) -> VerifyReport {
        let speakers = self
            .voices
            .into_iter()
            .filter_map(|(speaker, mut voice)| {
                voice.tally.unproven += voice.waiting.len() as u64;
                let tally = voice.tally;
                let any = tally.frames + tally.proofs + tally.bad_proofs + tally.studio;
                (any + tally.bad_studio > 0).then_some(SpeakerReport {
                    speaker,
                    key: voice.key,
                    named_by_host: voice.key.and_then(|key| self.named.get(&key).cloned()),
                    tally,
                })
            })
            .collect();
        VerifyReport {
            speakers,
            others: self.others,
            stage_views: self.stage_views,
            bad_stage_views: self.bad_stage_views,
            sealed: self.sealed,
            consents: self.consents,
            bad_consents: self.bad_consents,
            supports: self
                .supports
                .into_iter()
                .map(|(digest, mut support)| {
                    support.confirmed = self.receipts.contains(&digest);
                    support
                })
                .collect(),
        }
    }

    /// The voice of `speaker`, made if there is room for it.
    fn voice(&mut self, speaker: u32) -> Option<&mut Voice> {
        if !self.voices.contains_key(&speaker) && self.voices.len() >= MAX_VOICES {
            return None;
        }
        Some(
            self.voices
                .entry(speaker)
                .or_insert_with(|| Voice::new(None)),
        )
    }

    /// Content time moved to `at` (records come in time order; one that does not moves
    /// nothing).
    fn advance(&mut self, at: u64) {
        self.now = self.now.max(at);
        if self.now < self.next_sweep {
            return;
        }
        self.next_sweep = self.now.saturating_add(SWEEP_SAMPLES);
        let oldest = self.now.saturating_sub(WINDOW_SAMPLES);
        for voice in self.voices.values_mut() {
            voice.sweep(oldest);
        }
    }
}

/// Checks a whole content at once (see [`ContentVerifier`]).
pub fn verify_content<'a>(
    room: RoomId,
    keys: impl IntoIterator<Item = (u32, PeerKey)>,
    records: impl IntoIterator<Item = &'a ContentRecord>,
) -> VerifyReport {
    let mut verifier = ContentVerifier::new(room, keys);
    for record in records {
        verifier.record(record);
    }
    verifier.finish()
}

#[cfg(test)]
mod tests;
