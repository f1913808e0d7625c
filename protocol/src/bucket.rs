//! Token buckets: how fast something may happen, and how much of it at once. One [`Bucket`] for
//! one budget (a child's actions, a node's joins), [`Buckets`] for one budget per key with a
//! bound on the keys kept (per peer, per address, per listener: whoever makes the keys, ten
//! thousand of them cost a bounded map). Pure: the time comes in.

use std::collections::HashMap;
use std::hash::Hash;
use std::time::Instant;

/// A token bucket: `rate` tokens a second, at most `burst` saved.
#[derive(Debug, Clone, Copy)]
pub struct Bucket {
    tokens: f64,
    rate: f64,
    burst: f64,
    at: Instant,
}

impl Bucket {
    pub fn new(rate: f64, burst: f64, now: Instant) -> Self {
        Self {
            tokens: burst,
            rate,
            burst,
            at: now,
        }
    }

    /// Takes a token if there is one.
    pub fn take(&mut self, now: Instant) -> bool {
        self.fill(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Takes `n` tokens at once if there are that many (a budget of bytes: `n` of them).
    pub fn take_many(&mut self, n: f64, now: Instant) -> bool {
        self.fill(now);
        if self.tokens >= n {
            self.tokens -= n;
            true
        } else {
            false
        }
    }

    /// Whether it would be full at `now` (nothing taken lately: forgetting it loses nothing).
    pub fn is_full(&self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens + elapsed * self.rate >= self.burst
    }

    fn fill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        self.at = now;
    }
}

/// One [`Bucket`] per key, at most `kept` keys: past it, the full ones are forgotten (they lose
/// nothing), and if all are in use, all are (the budgets start again: the bound holds).
#[derive(Debug, Clone)]
pub struct Buckets<K> {
    rate: f64,
    burst: f64,
    kept: usize,
    keys: HashMap<K, Bucket>,
}

impl<K: Eq + Hash> Buckets<K> {
    pub fn new(rate: f64, burst: f64, kept: usize) -> Self {
        Self {
            rate,
            burst,
            kept,
            keys: HashMap::new(),
        }
    }

    /// Takes a token from `key`'s bucket if there is one.
    pub fn take(&mut self, key: K, now: Instant) -> bool {
        if self.keys.len() >= self.kept && !self.keys.contains_key(&key) {
            self.keys.retain(|_, bucket| !bucket.is_full(now));
            if self.keys.len() >= self.kept {
                self.keys.clear();
            }
        }
        let (rate, burst) = (self.rate, self.burst);
        self.keys
            .entry(key)
            .or_insert_with(|| Bucket::new(rate, burst, now))
            .take(now)
    }

    /// Keys kept now.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_budget_of_bytes_takes_what_fits_and_refills_at_its_rate() {
        let start = Instant::now();
        let mut bytes = Bucket::new(24_000.0, 256.0 * 1024.0, start);
        let chunk = 16.0 * 1024.0;
        assert_eq!(
            (0..100).filter(|_| bytes.take_many(chunk, start)).count(),
            16
        );
        // Ten seconds later: 240,000 bytes more, fourteen chunks.
        let later = start + std::time::Duration::from_secs(10);
        assert_eq!(
            (0..100).filter(|_| bytes.take_many(chunk, later)).count(),
            14
        );
        // More than the burst never fits.
        assert!(!bytes.take_many(300.0 * 1024.0, later + std::time::Duration::from_secs(60)));
    }

    #[test]
    fn each_key_gets_its_burst_then_the_rate_and_the_keys_kept_are_bounded() {
        let now = Instant::now();
        let mut buckets = Buckets::new(2.0, 5.0, 100);
        assert_eq!((0..50).filter(|_| buckets.take(1u32, now)).count(), 5);
        assert!(buckets.take(2, now), "another key is not held up");
        let later = now + Duration::from_secs(1);
        assert_eq!((0..50).filter(|_| buckets.take(1, later)).count(), 2);
        // Ten thousand keys, each used once: never more than 100 kept.
        for key in 10..10_010 {
            assert!(buckets.take(key, later));
            assert!(buckets.len() <= 100);
        }
        // A key forgotten while full lost nothing; a bucket in use is kept while others are full.
        let much_later = later + Duration::from_secs(60);
        assert!(buckets.take(1, much_later));
    }
}
