//! A seeded loss emulator under a node's ear: frames dropped before its player, as if they
//! missed their playout time, for tests and benches of what the room does about loss (the
//! listeners' reports, the host's advice, the speakers' FEC). Audio rides reliable streams, so
//! a lossy link delays frames rather than losing them; where a real lossy hop is wanted, the
//! network lab (`tests/lab/mod.rs`) drops packets in a router. Nothing here runs unless asked for.

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

use super::Fanout;

impl Fanout {
    /// Tests and benches: drops `percent` of the frames this node would play, in an order fixed
    /// by `seed` (0: none), as if they missed their playout time. Relaying is untouched.
    #[doc(hidden)]
    pub fn impair_playout(&self, percent: u8, seed: u64) {
        *self.impaired.lock() = (percent > 0).then(|| Impairment::new(percent, seed));
    }
}

/// Drops `percent` of the frames, in an order fixed by the seed.
#[derive(Debug)]
pub struct Impairment {
    percent: u8,
    rng: StdRng,
}

impl Impairment {
    pub fn new(percent: u8, seed: u64) -> Self {
        Self {
            percent: percent.min(100),
            rng: StdRng::seed_from_u64(seed),
        }
    }

    /// Whether the next frame is dropped.
    pub fn drops(&mut self) -> bool {
        self.percent > 0 && self.rng.random_ratio(u32::from(self.percent), 100)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_drops_the_same_frames_and_about_as_many_as_asked() {
        let drops = |seed| {
            let mut impairment = Impairment::new(10, seed);
            (0..10_000).map(|_| impairment.drops()).collect::<Vec<_>>()
        };
        let (a, b, c) = (drops(7), drops(7), drops(8));
        assert_eq!(a, b, "deterministic");
        assert_ne!(a, c, "another seed, another pattern");
        let dropped = a.iter().filter(|d| **d).count();
        assert!((900..=1_100).contains(&dropped), "{dropped} of 10,000");
        let mut none = Impairment::new(0, 7);
        assert!((0..1_000).all(|_| !none.drops()));
    }
}
