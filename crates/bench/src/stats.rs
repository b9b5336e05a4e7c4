//! Latency statistics: `hdrhistogram` recorders and their summaries.

use std::time::Duration;

use hdrhistogram::Histogram;

/// Records latencies in nanoseconds with 3 significant figures (0.1 % resolution).
#[derive(Clone, Debug)]
pub struct Recorder {
    histogram: Histogram<u64>,
}

impl Default for Recorder {
    fn default() -> Recorder {
        Recorder::new()
    }
}

impl Recorder {
    /// An empty recorder.
    #[allow(clippy::expect_used, reason = "3 significant figures is always a valid precision")]
    pub fn new() -> Recorder {
        Recorder { histogram: Histogram::new(3).expect("valid histogram precision") }
    }

    /// Records one latency.
    pub fn record(&mut self, latency: Duration) {
        let ns = u64::try_from(latency.as_nanos()).unwrap_or(u64::MAX).max(1);
        // `record` grows the auto-resizing histogram; `saturating_record` alone would clamp
        // to its current (tiny) range.
        if self.histogram.record(ns).is_err() {
            self.histogram.saturating_record(ns);
        }
    }

    /// Adds another recorder's values (workers record separately, then merge).
    pub fn merge(&mut self, other: &Recorder) {
        // Both auto-resize, so adding never runs out of range.
        let _ = self.histogram.add(&other.histogram);
    }

    /// Number of values recorded.
    pub fn count(&self) -> u64 {
        self.histogram.len()
    }

    /// Percentiles and extremes, in milliseconds.
    pub fn summary(&self) -> LatencySummary {
        let h = &self.histogram;
        let ms = |ns: u64| ns as f64 / 1e6;
        if h.is_empty() {
            return LatencySummary::default();
        }
        LatencySummary {
            count: h.len(),
            min_ms: ms(h.min()),
            mean_ms: h.mean() / 1e6,
            p50_ms: ms(h.value_at_quantile(0.50)),
            p90_ms: ms(h.value_at_quantile(0.90)),
            p99_ms: ms(h.value_at_quantile(0.99)),
            p999_ms: ms(h.value_at_quantile(0.999)),
            max_ms: ms(h.max()),
        }
    }
}

/// Latency percentiles in milliseconds (hdrhistogram: each within 0.1 % of the true value).
#[derive(Clone, Copy, Debug, Default, PartialEq, serde::Serialize)]
pub struct LatencySummary {
    /// Number of calls measured.
    pub count: u64,
    /// Fastest call.
    pub min_ms: f64,
    /// Mean.
    pub mean_ms: f64,
    /// Median.
    pub p50_ms: f64,
    /// 90th percentile.
    pub p90_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// 99.9th percentile.
    pub p999_ms: f64,
    /// Slowest call.
    pub max_ms: f64,
}

/// Smallest and largest of a per-worker quantity, in milliseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq, serde::Serialize)]
pub struct MinMax {
    /// Smallest.
    pub min_ms: f64,
    /// Largest.
    pub max_ms: f64,
}

impl MinMax {
    /// Min and max of `values`, `None` when empty.
    pub fn of(values: impl IntoIterator<Item = Duration>) -> Option<MinMax> {
        let mut out: Option<MinMax> = None;
        for v in values {
            let ms = v.as_secs_f64() * 1e3;
            out = Some(match out {
                None => MinMax { min_ms: ms, max_ms: ms },
                Some(m) => MinMax { min_ms: m.min_ms.min(ms), max_ms: m.max_ms.max(ms) },
            });
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_of_a_known_distribution() {
        let mut r = Recorder::new();
        for i in 1..=1000u64 {
            r.record(Duration::from_micros(i * 10)); // 10 µs … 10 ms, uniform
        }
        let s = r.summary();
        let close = |got: f64, want: f64| (got - want).abs() <= want * 0.002;
        assert!(close(s.p50_ms, 5.0), "{s:?}");
        assert!(close(s.p90_ms, 9.0), "{s:?}");
        assert!(close(s.p99_ms, 9.9), "{s:?}");
        assert!(close(s.p999_ms, 9.99), "{s:?}");
        assert!(close(s.max_ms, 10.0) && close(s.min_ms, 0.01), "{s:?}");
        assert_eq!(s.count, 1000);
    }

    #[test]
    fn merging_adds_counts() {
        let (mut a, mut b) = (Recorder::new(), Recorder::new());
        a.record(Duration::from_millis(1));
        b.record(Duration::from_millis(3));
        a.merge(&b);
        assert_eq!(a.count(), 2);
        assert!((a.summary().max_ms - 3.0).abs() < 0.01);
    }
}
