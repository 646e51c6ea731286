//! A latency histogram with fixed buckets, as Prometheus histograms are exposed.

use std::time::Duration;

use serde::Serialize;

/// Upper bounds of the buckets, in seconds: 100 µs to 10 s.
pub const BUCKETS: [f64; 12] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1, 0.5, 2.5, 10.0,
];

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
/// Counts of durations in fixed buckets (see [`BUCKETS`]), as Prometheus histograms keep them.
pub struct Histogram {
    /// Observations at or below each bound of [`BUCKETS`] (not cumulative); the ones above
    /// the last bound are in `count` only.
    pub buckets: [u64; BUCKETS.len()],
    /// How many durations were recorded.
    pub count: u64,
    /// Their sum, in seconds.
    pub sum_seconds: f64,
}

impl Histogram {
    pub(crate) fn observe(&mut self, took: Duration) {
        let seconds = took.as_secs_f64();
        if let Some(i) = BUCKETS.iter().position(|bound| seconds <= *bound) {
            self.buckets[i] += 1;
        }
        self.count += 1;
        self.sum_seconds += seconds;
    }

    /// `(bound, observations at or below it)` for each bucket, as Prometheus counts them.
    pub fn cumulative(&self) -> impl Iterator<Item = (f64, u64)> + '_ {
        BUCKETS
            .iter()
            .zip(self.buckets.iter())
            .scan(0, |total, (bound, n)| {
                *total += n;
                Some((*bound, *total))
            })
    }

    /// The bound of the bucket holding the `q` quantile (0..=1), or `None` when empty or
    /// above the last bound.
    pub fn quantile_bound(&self, q: f64) -> Option<f64> {
        let rank = (q * self.count as f64).ceil().max(1.0) as u64;
        self.cumulative()
            .find(|(_, total)| *total >= rank)
            .map(|(bound, _)| bound)
            .filter(|_| self.count > 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_count_cumulatively() {
        let mut h = Histogram::default();
        h.observe(Duration::from_micros(50));
        h.observe(Duration::from_millis(3));
        h.observe(Duration::from_millis(3));
        h.observe(Duration::from_secs(60));
        assert_eq!(h.count, 4);
        let cumulative: Vec<_> = h.cumulative().collect();
        assert_eq!(cumulative[0], (0.0001, 1));
        assert_eq!(cumulative[5], (0.005, 3));
        assert_eq!(cumulative.last(), Some(&(10.0, 3)));
        assert_eq!(h.quantile_bound(0.5), Some(0.005));
        assert_eq!(h.quantile_bound(1.0), None);
        assert!((h.sum_seconds - 60.00605).abs() < 1e-9);
    }
}
