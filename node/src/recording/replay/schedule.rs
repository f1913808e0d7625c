//! Which chunks of a fetch are left and which holder may fetch each: holders take their own
//! share first, then steal from slow ones; a chunk a holder failed is not given to it again, and a
//! holder that sent [`MAX_BAD_CHUNKS`] bad chunks is asked no more.

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::sync::Arc;

use libp2p::PeerId;
use parking_lot::{Mutex, MutexGuard};

use super::MAX_BAD_CHUNKS;

/// Which chunks are left and who may fetch them: shared by every worker of a fetch.
#[derive(Debug)]
pub(super) struct Schedule {
    state: Mutex<ScheduleState>,
    changed: Arc<tokio::sync::Notify>,
}

#[derive(Debug)]
struct ScheduleState {
    pending: VecDeque<u32>,
    in_flight: usize,
    /// Holders (by slot) that failed each chunk: not asked for it again.
    tried: BTreeMap<u32, HashSet<usize>>,
    holders: Vec<HolderState>,
    done: usize,
    fetched: usize,
    bytes: u64,
    bad: usize,
    reasons: Vec<String>,
}

#[derive(Debug, Default, Clone)]
struct HolderState {
    gone: bool,
    bad: u32,
}

pub(super) enum Claim {
    Chunk(u32),
    Wait(tokio::sync::futures::OwnedNotified),
    Done,
}

/// How a fetch's chunk phase ended.
pub(super) struct Outcome {
    /// The chunks nobody could fetch, in order.
    pub(super) pending: Vec<u32>,
    pub(super) fetched: usize,
    pub(super) bytes: u64,
    pub(super) bad: usize,
    /// Why holders were dropped.
    pub(super) reasons: Vec<String>,
}

impl Schedule {
    pub(super) fn new(missing: Vec<u32>, holders: usize, done: usize) -> Self {
        Self {
            state: Mutex::new(ScheduleState {
                pending: missing.into(),
                in_flight: 0,
                tried: BTreeMap::new(),
                holders: vec![HolderState::default(); holders],
                done,
                fetched: 0,
                bytes: 0,
                bad: 0,
                reasons: Vec::new(),
            }),
            changed: Arc::new(tokio::sync::Notify::new()),
        }
    }

    /// The next chunk for holder `slot`: preferably one of its share (index modulo the number
    /// of holders), else any it has not failed; or wait for others to finish or fail theirs.
    pub(super) fn claim(&self, slot: usize) -> Claim {
        let mut state = self.state.lock();
        if state.holders[slot].gone {
            return Claim::Done;
        }
        let holders = state.holders.len();
        let allowed = |index: &u32| {
            !state
                .tried
                .get(index)
                .is_some_and(|tried| tried.contains(&slot))
        };
        let position = state
            .pending
            .iter()
            .position(|index| *index as usize % holders == slot && allowed(index))
            .or_else(|| state.pending.iter().position(allowed));
        if let Some(index) = position.and_then(|position| state.pending.remove(position)) {
            state.in_flight += 1;
            return Claim::Chunk(index);
        }
        if state.in_flight == 0 {
            // Nothing is being fetched and nothing left is for this holder: nothing will change.
            self.changed.notify_waiters();
            return Claim::Done;
        }
        Claim::Wait(Arc::clone(&self.changed).notified_owned())
    }

    /// Returns how many chunks are done now.
    pub(super) fn done(&self, _index: u32, bytes: u64) -> usize {
        let mut state = self.state.lock();
        state.in_flight -= 1;
        state.done += 1;
        state.fetched += 1;
        state.bytes += bytes;
        let done = state.done;
        drop(state);
        self.changed.notify_waiters();
        done
    }

    pub(super) fn bad(&self, slot: usize, index: u32, peer: &PeerId) {
        let mut state = self.state.lock();
        state.bad += 1;
        let holder = &mut state.holders[slot];
        holder.bad += 1;
        if holder.bad == MAX_BAD_CHUNKS {
            holder.gone = true;
            state.reasons.push(format!(
                "{peer} sent {MAX_BAD_CHUNKS} bad chunks and was dropped"
            ));
        }
        self.retry(state, slot, index);
    }

    pub(super) fn not_found(&self, slot: usize, index: u32) {
        let state = self.state.lock();
        self.retry(state, slot, index);
    }

    /// The holder stopped answering: it is not asked again. Returns whether it was the first
    /// of its workers to notice.
    pub(super) fn failed(&self, slot: usize, index: u32, reason: String) -> bool {
        let mut state = self.state.lock();
        let first = !state.holders[slot].gone;
        state.holders[slot].gone = true;
        if first {
            state.reasons.push(reason);
        }
        self.retry(state, slot, index);
        first
    }

    fn retry(&self, mut state: MutexGuard<'_, ScheduleState>, slot: usize, index: u32) {
        state.in_flight -= 1;
        state.tried.entry(index).or_default().insert(slot);
        state.pending.push_back(index);
        drop(state);
        self.changed.notify_waiters();
    }

    pub(super) fn outcome(&self) -> Outcome {
        let state = self.state.lock();
        let mut pending: Vec<u32> = state.pending.iter().copied().collect();
        pending.sort_unstable();
        Outcome {
            pending,
            fetched: state.fetched,
            bytes: state.bytes,
            bad: state.bad,
            reasons: state.reasons.clone(),
        }
    }
}
