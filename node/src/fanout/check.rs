//! What every hop checks of the audio it receives: each frame against its speaker's proof, the
//! speakers against the stage, and (below the host) the stream's progress against the host's
//! beacons. Frames are passed on at once and checked as proofs arrive; a stream that forges,
//! withholds or floods fails, and the node moves to another parent.
//!
//! **What gives way:** frames may play before their proof (waiting for it would add up to 80 ms
//! of delay), once the stream has shown one good proof: a new stream's first frames wait for
//! theirs (the player starts a spurt only on a playable frame), so a parent forging from the
//! start gets nothing played. A frame found forged before its turn is never played; frames whose proof does not
//! come before the frames after them ([`FrameAuth::expire`]) are never played, and from then on
//! that stream's frames play only once verified ([`Authenticity::HELD`]) until proofs come in
//! time again; a frame arriving while an earlier one of its voice waited more than a batch's
//! time ([`PROOF_DUE_MS`]) plays only once verified too. So a forging parent gets at most a
//! batch's worth of unverified audio played (minus the jitter buffer's delay), and is caught
//! when the real proof arrives or the stream moves past it; a path that only stalls (loss
//! resent late) delays proofs without any of that counting against it.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Instant;

use earshot_protocol::PeerKey;
use earshot_protocol::frame::{AudioFrame, SpeakerId};
use earshot_protocol::proof::FrameProof;
use earshot_protocol::proof::check::{Arrival, BadProof, FrameAuth};
use earshot_protocol::proof::progress::{Judged, Progress, Withholding};

use super::StreamError;

/// Where a frame stands, shared between the stream that checks it and the player.
#[derive(Debug, Clone, Default)]
pub struct Authenticity(Arc<AtomicU8>);

impl Authenticity {
    /// Waiting for its proof; may play meanwhile.
    pub const PENDING: u8 = 0;
    /// Its speaker signed it.
    pub const VERIFIED: u8 = 1;
    /// Forged, or its proof never came: never played.
    pub const REFUSED: u8 = 2;
    /// Waiting for its proof, on a stream whose proofs were late: plays only once verified.
    pub const HELD: u8 = 3;

    pub fn new(state: u8) -> Self {
        Self(Arc::new(AtomicU8::new(state)))
    }

    /// A frame nobody checks (its own voice, or a plane without stage keys: benches).
    pub fn verified() -> Self {
        Self::new(Self::VERIFIED)
    }

    pub fn get(&self) -> u8 {
        self.0.load(Ordering::Relaxed)
    }

    fn set(&self, state: u8) {
        self.0.store(state, Ordering::Relaxed);
    }

    /// Whether the player may play it now.
    pub fn playable(&self) -> bool {
        matches!(self.get(), Self::PENDING | Self::VERIFIED)
    }
}

/// Who may be heard in a room, as this node knows it: the host (whose key signs the beacons)
/// and the stage's keys by speaker id (ids are four bytes of a key: two members may share one).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Voices {
    pub host: Option<PeerKey>,
    pub stage: HashMap<SpeakerId, Vec<PeerKey>>,
}

impl Voices {
    pub fn of(host: PeerKey, stage: impl IntoIterator<Item = PeerKey>) -> Self {
        let mut voices = Self {
            host: Some(host),
            stage: HashMap::new(),
        };
        for key in stage.into_iter().chain([host]) {
            let keys = voices.stage.entry(SpeakerId::of(&key)).or_default();
            if !keys.contains(&key) {
                keys.push(key);
            }
        }
        voices
    }

    fn keys(&self, speaker: SpeakerId) -> &[PeerKey] {
        self.stage.get(&speaker).map_or(&[], Vec::as_slice)
    }
}

/// A frame waiting this long for its proof means the proof is overdue (a batch is 80 ms from
/// its first frame to its last, and the proof follows the last before the next frame): frames
/// arriving after it play only once verified.
const PROOF_DUE_MS: u64 = 90;
/// Unproven batches within [`UNPROVEN_WINDOW`] that fail a stream: a parent that keeps proofs
/// back (every batch, ten a second) fails within 0.8 s; a lossy path, where a proof resent late
/// now and then misses its deadline, does not.
const UNPROVEN_LIMIT: usize = 6;
const UNPROVEN_WINDOW: std::time::Duration = std::time::Duration::from_secs(2);
/// Proofs in time in a row that lift the hold on a stream.
const PROOFS_TO_TRUST_AGAIN: u32 = 5;
/// Frames of speakers not on stage within [`STRANGERS_WINDOW`] that fail a stream (a new
/// speaker's first second, before the stage change arrives, is ~50), and distinct ids of them.
const STRANGERS_LIMIT: u32 = 500;
const STRANGER_IDS_LIMIT: usize = 8;
/// Proofs of speakers not on stage within [`STRANGERS_WINDOW`] that fail a stream.
const STRANGE_PROOFS_LIMIT: u32 = 20;
const STRANGERS_WINDOW: std::time::Duration = std::time::Duration::from_secs(2);
/// Signatures (proofs and beacons) a stream may make this node check, per second and at once:
/// ten voices' proofs and the beacons fit; a stream replaying valid proofs to burn CPU fails.
const SIGNATURES_PER_SEC: f64 = 110.0;
const SIGNATURES_BURST: f64 = 60.0;

/// A frame waiting for its proof: its flag, and the frame (for the recording, once verified).
#[derive(Debug)]
pub(super) struct Waiting {
    pub auth: Authenticity,
    pub frame: AudioFrame,
}

/// What became of something read from a stream.
#[derive(Debug, Default)]
pub(super) struct Checked {
    /// Pass it on and play it (a frame), with its flag.
    pub pass: Option<Authenticity>,
    /// Frames now verified (for the recording).
    pub verified: Vec<AudioFrame>,
}

/// One stream's checks.
#[derive(Debug)]
pub(super) struct StreamCheck {
    auth: FrameAuth<Waiting>,
    /// Below the host: the beacons. At the host (a speaker's stream): none.
    progress: Option<Withholding>,
    /// Exactly this speaker (a speak stream, at the host).
    only: Option<SpeakerId>,
    epoch: Instant,
    unproven: VecDeque<Instant>,
    /// Set when proofs were late: new frames wait for theirs; counts proofs in time since.
    held: Option<u32>,
    /// No proof has verified on this stream yet: its frames wait for theirs (a parent that
    /// forges from its first frame gets none of them played).
    unproven_stream: bool,
    strangers: u32,
    stranger_ids: std::collections::HashSet<SpeakerId>,
    strange_proofs: u32,
    strangers_since: Instant,
    /// Signature checks this stream may still ask for now (a token bucket), and when it was
    /// last filled.
    signatures: f64,
    signatures_at: Instant,
}

/// Why a stream failed its checks.
fn failed(why: impl Into<String>) -> StreamError {
    StreamError::Forged(why.into())
}

impl StreamCheck {
    /// Checks for a stream from a parent in the tree.
    pub fn from_parent(room: earshot_protocol::RoomId) -> Self {
        let now = Instant::now();
        Self {
            auth: FrameAuth::new(room),
            progress: Some(Withholding::new(0)),
            only: None,
            epoch: now,
            unproven: VecDeque::new(),
            held: None,
            unproven_stream: true,
            strangers: 0,
            stranger_ids: std::collections::HashSet::new(),
            strange_proofs: 0,
            strangers_since: now,
            signatures: SIGNATURES_BURST,
            signatures_at: now,
        }
    }

    /// Checks for a speaker's stream (at the host): only `speaker`'s frames.
    pub fn from_speaker(room: earshot_protocol::RoomId, speaker: SpeakerId) -> Self {
        Self {
            progress: None,
            only: Some(speaker),
            // The speaker's own connection: its frames play at once (and are checked as their
            // proofs come, for the recording).
            unproven_stream: false,
            ..Self::from_parent(room)
        }
    }

    fn ms(&self, now: Instant) -> u64 {
        u64::try_from(now.saturating_duration_since(self.epoch).as_millis()).unwrap_or(u64::MAX)
    }

    /// A frame arrived.
    pub fn frame(
        &mut self,
        frame: &AudioFrame,
        voices: &Voices,
        now: Instant,
    ) -> Result<Checked, StreamError> {
        if let Some(only) = self.only
            && frame.speaker != only
        {
            return Err(failed(format!(
                "a speaker's stream carried another speaker's frame ({:?})",
                frame.speaker
            )));
        }
        if voices.keys(frame.speaker).is_empty() {
            self.strangers_window(now);
            self.strangers += 1;
            if self.stranger_ids.len() <= STRANGER_IDS_LIMIT {
                self.stranger_ids.insert(frame.speaker);
            }
            if self.strangers > STRANGERS_LIMIT || self.stranger_ids.len() > STRANGER_IDS_LIMIT {
                return Err(failed("frames of speakers who are not on stage"));
            }
            return Ok(Checked::default());
        }
        let ms = self.ms(now);
        // Held (played only once verified) on a stream whose proofs were late, or when an
        // earlier frame of this voice waits longer than a batch: its proof should have come
        // before this frame. So at most a batch (100 ms) plays unverified.
        let overdue = self
            .auth
            .oldest_waiting_ms(frame.speaker, ms)
            .is_some_and(|waited| waited >= PROOF_DUE_MS);
        let auth = Authenticity::new(if self.held.is_some() || overdue || self.unproven_stream {
            Authenticity::HELD
        } else {
            Authenticity::PENDING
        });
        let waiting = Waiting {
            auth: auth.clone(),
            frame: frame.clone(),
        };
        match self.auth.frame(frame, waiting, ms) {
            Arrival::Verified => {
                auth.set(Authenticity::VERIFIED);
                self.count_fresh(frame);
                Ok(Checked {
                    pass: Some(auth),
                    verified: vec![frame.clone()],
                })
            }
            Arrival::Pending => {
                self.count_fresh(frame);
                Ok(Checked {
                    pass: Some(auth),
                    verified: Vec::new(),
                })
            }
            Arrival::Forged => Err(failed("a frame that does not match its speaker's proof")),
            // Sent twice: passed on once.
            Arrival::Duplicate(_) => Ok(Checked::default()),
            Arrival::Overflow(_) => Err(failed("frames without proofs")),
        }
    }

    /// Strangers are counted per window: a few now and then are races with the stage.
    fn strangers_window(&mut self, now: Instant) {
        if now.saturating_duration_since(self.strangers_since) > STRANGERS_WINDOW {
            self.strangers = 0;
            self.stranger_ids.clear();
            self.strange_proofs = 0;
            self.strangers_since = now;
        }
    }

    /// One signature check more, if the stream's budget allows.
    fn signature_check(&mut self, now: Instant) -> Result<(), StreamError> {
        let elapsed = now
            .saturating_duration_since(self.signatures_at)
            .as_secs_f64();
        self.signatures_at = now;
        self.signatures = (self.signatures + elapsed * SIGNATURES_PER_SEC).min(SIGNATURES_BURST);
        if self.signatures < 1.0 {
            return Err(failed("more signatures to check than any room sends"));
        }
        self.signatures -= 1.0;
        Ok(())
    }

    fn count_fresh(&mut self, frame: &AudioFrame) {
        if let Some(progress) = self.progress.as_mut() {
            progress.frame(frame.speaker, frame.seq);
        }
    }

    /// A proof arrived: whether to pass it on, and the frames it verified.
    pub fn proof(
        &mut self,
        proof: &FrameProof,
        voices: &Voices,
        now: Instant,
    ) -> Result<(bool, Checked), StreamError> {
        if let Some(only) = self.only
            && proof.speaker != only
        {
            return Err(failed("a speaker's stream carried another speaker's proof"));
        }
        self.signature_check(now)?;
        let ms = self.ms(now);
        let settled = match self.auth.proof(proof, voices.keys(proof.speaker), ms) {
            Ok(settled) => settled,
            Err(BadProof::NotOnStage(_)) => {
                // Just off the stage, or a stranger: nothing it proves plays.
                self.strangers_window(now);
                self.strange_proofs += 1;
                if self.strange_proofs > STRANGE_PROOFS_LIMIT {
                    return Err(failed("proofs of speakers who are not on stage"));
                }
                return Ok((false, Checked::default()));
            }
            Err(err @ BadProof::BadSignature(_)) => return Err(failed(err.to_string())),
        };
        if !settled.forged.is_empty() {
            for (_, waiting) in &settled.forged {
                waiting.auth.set(Authenticity::REFUSED);
            }
            return Err(failed(format!(
                "{} frame(s) that do not match their speaker's proof",
                settled.forged.len()
            )));
        }
        if !settled.verified.is_empty() {
            self.unproven_stream = false;
        }
        if let Some(in_time) = self.held.as_mut() {
            *in_time += 1;
            if *in_time >= PROOFS_TO_TRUST_AGAIN {
                self.held = None;
            }
        }
        let verified = settled
            .verified
            .into_iter()
            .map(|(_, waiting)| {
                waiting.auth.set(Authenticity::VERIFIED);
                waiting.frame
            })
            .collect();
        Ok((
            true,
            Checked {
                pass: None,
                verified,
            },
        ))
    }

    /// The host's beacon arrived: whether to pass it on.
    pub fn beacon(
        &mut self,
        beacon: &Progress,
        room: &earshot_protocol::RoomId,
        voices: &Voices,
        now: Instant,
    ) -> Result<bool, StreamError> {
        if self.progress.is_none() || voices.host.is_none() {
            return Ok(false);
        }
        self.signature_check(now)?;
        let (Some(progress), Some(host)) = (self.progress.as_mut(), voices.host) else {
            return Ok(false);
        };
        if !beacon.verify(room, &host) {
            return Err(failed("a progress beacon the host did not sign"));
        }
        let ms = u64::try_from(now.saturating_duration_since(self.epoch).as_millis())
            .unwrap_or(u64::MAX);
        match progress.beacon(beacon, ms) {
            Judged::Fine => Ok(true),
            Judged::Withheld { sent, fresh } => Err(StreamError::Withheld(format!(
                "the host sent {sent} frames since its last beacon, this parent passed {fresh}"
            ))),
            Judged::Replayed => Err(StreamError::Withheld("an old beacon replayed".into())),
        }
    }

    /// Time passed: frames whose proof is overdue are refused; a stream whose proofs keep
    /// failing to come, or that stopped passing the host's beacons, fails.
    pub fn tick(&mut self, now: Instant) -> Result<(), StreamError> {
        let ms = self.ms(now);
        let late = self.auth.expire(ms);
        if !late.is_empty() {
            for (_, waiting) in &late {
                waiting.auth.set(Authenticity::REFUSED);
            }
            self.held = Some(0);
            self.unproven.push_back(now);
            while self
                .unproven
                .front()
                .is_some_and(|at| now.saturating_duration_since(*at) > UNPROVEN_WINDOW)
            {
                self.unproven.pop_front();
            }
            if self.unproven.len() >= UNPROVEN_LIMIT {
                return Err(failed(format!(
                    "frames whose proofs did not come before the frames after them, \
                     {UNPROVEN_LIMIT} times in {} s",
                    UNPROVEN_WINDOW.as_secs()
                )));
            }
        }
        if let Some(progress) = &self.progress
            && progress.silent(ms)
        {
            return Err(StreamError::Withheld(
                "no progress beacon from the host for too long".into(),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use earshot_protocol::RoomId;
    use earshot_protocol::proof::ProofSigner;
    use earshot_protocol::proof::progress::Progress;

    use super::*;

    const ROOM: RoomId = RoomId([5; 16]);

    fn key(n: u8) -> ed25519_dalek::SigningKey {
        ed25519_dalek::SigningKey::from_bytes(&[n; 32])
    }

    fn frame(speaker: &ed25519_dalek::SigningKey, seq: u32) -> AudioFrame {
        AudioFrame {
            speaker: SpeakerId::of(&PeerKey::from(speaker)),
            seq,
            timestamp: seq * 960,
            level: 40,
            flags: 0,
            payload: vec![seq as u8; 80],
            tag: None,
        }
    }

    fn voices() -> Voices {
        Voices::of(PeerKey::from(&key(1)), [PeerKey::from(&key(2))])
    }

    #[test]
    fn an_honest_speakers_frames_verify_and_play() {
        let speaker = key(2);
        let mut signer = ProofSigner::new(speaker.clone(), ROOM);
        let mut check = StreamCheck::from_parent(ROOM);
        let now = Instant::now();
        let mut flags = Vec::new();
        for seq in 0..10 {
            let f = frame(&speaker, seq);
            let proofs = signer.push(&f);
            let checked = check.frame(&f, &voices(), now).expect("an honest frame");
            flags.push(checked.pass.expect("passed on"));
            for proof in proofs {
                let (pass, checked) = check.proof(&proof, &voices(), now).expect("its proof");
                assert!(pass);
                assert_eq!(checked.verified.len(), 5);
            }
        }
        assert!(flags.iter().all(|f| f.get() == Authenticity::VERIFIED));
        check.tick(now).expect("nothing overdue");
    }

    #[test]
    fn an_altered_frame_fails_the_stream_and_is_never_played() {
        let speaker = key(2);
        let mut signer = ProofSigner::new(speaker.clone(), ROOM);
        let mut check = StreamCheck::from_parent(ROOM);
        let now = Instant::now();
        let mut proofs = Vec::new();
        let mut flags = Vec::new();
        for seq in 0..5 {
            let real = frame(&speaker, seq);
            proofs.extend(signer.push(&real));
            let mut sent = real;
            if seq == 2 {
                sent.payload[0] ^= 0xFF;
            }
            flags.push(check.frame(&sent, &voices(), now).expect("pending").pass);
        }
        let err = check
            .proof(&proofs[0], &voices(), now)
            .expect_err("a forgery");
        assert!(matches!(err, StreamError::Forged(_)), "{err}");
        let altered = flags[2]
            .as_ref()
            .expect("it was passed on before its proof");
        assert!(!altered.playable(), "refused before its turn");
    }

    #[test]
    fn a_new_streams_frames_wait_for_its_first_proof() {
        let speaker = key(2);
        let mut signer = ProofSigner::new(speaker.clone(), ROOM);
        let mut check = StreamCheck::from_parent(ROOM);
        let now = Instant::now();
        let mut flags = Vec::new();
        let mut proofs = Vec::new();
        for seq in 0..5 {
            let f = frame(&speaker, seq);
            proofs.extend(signer.push(&f));
            flags.push(
                check
                    .frame(&f, &voices(), now)
                    .expect("taken")
                    .pass
                    .expect("on"),
            );
        }
        assert!(
            flags.iter().all(|f| !f.playable()),
            "none plays before a proof"
        );
        check.proof(&proofs[0], &voices(), now).expect("good");
        assert!(flags.iter().all(Authenticity::playable));
        let next = check
            .frame(&frame(&speaker, 5), &voices(), now)
            .expect("taken")
            .pass
            .expect("on");
        assert_eq!(
            next.get(),
            Authenticity::PENDING,
            "proven: frames play before proofs"
        );
    }

    #[test]
    fn frames_without_proofs_are_held_then_fail_the_stream() {
        let speaker = key(2);
        let mut check = StreamCheck::from_parent(ROOM);
        let start = Instant::now();
        // The stream proves itself first (frames 0-4 and their proof).
        let mut signer = ProofSigner::new(speaker.clone(), ROOM);
        let mut proofs = Vec::new();
        for seq in 0..5 {
            let f = frame(&speaker, seq);
            proofs.extend(signer.push(&f));
            check.frame(&f, &voices(), start).expect("taken");
        }
        check.proof(&proofs[0], &voices(), start).expect("good");
        let mut result = Ok(());
        let mut played_unverified = Duration::ZERO;
        for seq in 5..200u32 {
            let now = start + Duration::from_millis(u64::from(seq) * 20);
            let checked = check
                .frame(&frame(&speaker, seq), &voices(), now)
                .expect("taken");
            if checked
                .pass
                .is_some_and(|auth| auth.get() == Authenticity::PENDING)
            {
                played_unverified += Duration::from_millis(20);
            }
            result = check.tick(now);
            if result.is_err() {
                break;
            }
        }
        assert!(matches!(result, Err(StreamError::Forged(_))), "{result:?}");
        // Frames that may play before their proof: only until the first deadline passed.
        assert!(
            played_unverified <= Duration::from_millis(100),
            "{played_unverified:?} of unverified frames allowed to play"
        );
    }

    #[test]
    fn floods_of_strangers_and_of_proofs_fail_the_stream() {
        let mut check = StreamCheck::from_parent(ROOM);
        let now = Instant::now();
        let mut result = Ok(Checked::default());
        for id in 0..20u32 {
            let mut f = frame(&key(2), 0);
            f.speaker = SpeakerId(id.wrapping_mul(0x9E37_79B9) | 1);
            result = check.frame(&f, &voices(), now);
            if result.is_err() {
                break;
            }
        }
        assert!(result.is_err(), "strangers under many ids");
        // A valid proof replayed as fast as the stream goes.
        let speaker = key(2);
        let proof = ProofSigner::new(speaker.clone(), ROOM)
            .push(&frame(&speaker, 0))
            .pop()
            .or_else(|| {
                let mut signer = ProofSigner::new(speaker.clone(), ROOM);
                signer.push(&frame(&speaker, 0));
                signer.flush()
            })
            .expect("a proof");
        let mut check = StreamCheck::from_parent(ROOM);
        let failed = (0..1_000).any(|_| check.proof(&proof, &voices(), now).is_err());
        assert!(failed, "a thousand signatures in an instant");
    }

    #[test]
    fn a_beacon_not_from_the_host_or_a_parent_passing_keep_alives_fails() {
        let mut check = StreamCheck::from_parent(ROOM);
        let now = Instant::now();
        let forged = Progress::sign(&key(3), &ROOM, 1, 0, Vec::new());
        assert!(check.beacon(&forged, &ROOM, &voices(), now).is_err());
        let mut check = StreamCheck::from_parent(ROOM);
        let host = key(1);
        let first = Progress::sign(&host, &ROOM, 1, 100, Vec::new());
        assert!(check.beacon(&first, &ROOM, &voices(), now).expect("fine"));
        // 25 frames sent since, none passed on.
        let next = Progress::sign(&host, &ROOM, 2, 125, Vec::new());
        let judged = check.beacon(&next, &ROOM, &voices(), now + Duration::from_millis(500));
        assert!(
            matches!(judged, Err(StreamError::Withheld(_))),
            "{judged:?}"
        );
    }
}
