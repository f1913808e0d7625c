//! How long the event loop takes to handle each thing that reaches it (a swarm event, a
//! command, a tree event, a tick): the figure that says whether a flood of strangers slows
//! the room for everyone. Counted in fixed buckets of atomics (no lock, no allocation on the
//! hot path), read as quantiles by benches, and shown to Prometheus as a histogram
//! (`earshot_event_loop_handling_seconds`) when registered.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// Upper bounds of the buckets, in microseconds (the last bucket takes everything above).
pub const BUCKETS_US: [u64; 16] = [
    25, 50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000,
    1_000_000, 5_000_000,
];

/// The event loop's handling times (cloning shares them).
#[derive(Clone, Default, Debug)]
pub struct HandlingTimes {
    counts: Arc<[AtomicU64; BUCKETS_US.len() + 1]>,
    max_us: Arc<AtomicU64>,
    histogram: Option<Histogram>,
}

impl HandlingTimes {
    /// Also shown to Prometheus, as `earshot_event_loop_handling_seconds`.
    pub fn register(registry: &mut Registry) -> Self {
        let histogram = Histogram::new(BUCKETS_US.iter().map(|us| *us as f64 / 1e6));
        registry.register(
            "earshot_event_loop_handling_seconds",
            "Time the event loop took to handle one event, command or tick",
            histogram.clone(),
        );
        Self {
            histogram: Some(histogram),
            ..Self::default()
        }
    }

    /// One thing handled in `took`.
    pub fn observe(&self, took: Duration) {
        let us = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        let bucket = BUCKETS_US
            .iter()
            .position(|bound| us <= *bound)
            .unwrap_or(BUCKETS_US.len());
        self.counts[bucket].fetch_add(1, Ordering::Relaxed);
        self.max_us.fetch_max(us, Ordering::Relaxed);
        if let Some(histogram) = &self.histogram {
            histogram.observe(took.as_secs_f64());
        }
    }

    /// What was counted so far.
    pub fn snapshot(&self) -> Handled {
        Handled {
            counts: std::array::from_fn(|i| self.counts[i].load(Ordering::Relaxed)),
            max_us: self.max_us.load(Ordering::Relaxed),
        }
    }
}

/// Handling times counted up to a moment; two of them give what happened in between.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Handled {
    counts: [u64; BUCKETS_US.len() + 1],
    /// The longest since the node started.
    pub max_us: u64,
}

impl Handled {
    /// Handled since `earlier` (the maximum stays the whole run's).
    pub fn since(&self, earlier: &Handled) -> Handled {
        Handled {
            counts: std::array::from_fn(|i| self.counts[i].saturating_sub(earlier.counts[i])),
            max_us: self.max_us,
        }
    }

    pub fn count(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// The bucket bound under which a share `q` (0 to 1) of the handling times fell: the
    /// quantile, rounded up to the buckets ([`BUCKETS_US`]); `None` when nothing was counted
    /// or it fell past the last bound.
    pub fn quantile_us(&self, q: f64) -> Option<u64> {
        let total = self.count();
        if total == 0 {
            return None;
        }
        let wanted = ((total as f64) * q.clamp(0.0, 1.0)).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (i, count) in self.counts.iter().enumerate() {
            seen += count;
            if seen >= wanted {
                return BUCKETS_US.get(i).copied();
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_come_from_the_buckets_and_differences_count_what_happened_between() {
        let times = HandlingTimes::default();
        for _ in 0..98 {
            times.observe(Duration::from_micros(40));
        }
        let before = times.snapshot();
        times.observe(Duration::from_millis(3));
        times.observe(Duration::from_millis(30));
        let all = times.snapshot();
        assert_eq!(all.count(), 100);
        assert_eq!(all.quantile_us(0.5), Some(50));
        assert_eq!(all.quantile_us(0.99), Some(5_000));
        assert_eq!(all.quantile_us(1.0), Some(50_000));
        assert_eq!(all.max_us, 30_000);
        let between = all.since(&before);
        assert_eq!(between.count(), 2);
        assert_eq!(between.quantile_us(0.5), Some(5_000));
        assert_eq!(HandlingTimes::default().snapshot().quantile_us(0.99), None);
    }
}
