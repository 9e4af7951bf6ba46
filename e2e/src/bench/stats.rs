//! Latency samples and how the table shows them: median and 95th percentile by nearest rank,
//! in milliseconds.

use std::time::Duration;

/// Durations of one measurement, in any order.
#[derive(Debug, Clone, Default)]
pub struct Samples(Vec<Duration>);

impl Samples {
    /// Adds one sample.
    pub fn push(&mut self, sample: Duration) {
        self.0.push(sample);
    }

    /// How many samples there are.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// The `q` quantile (0 < q ≤ 1) by nearest rank; zero without samples.
    pub fn quantile(&self, q: f64) -> Duration {
        let mut sorted = self.0.clone();
        sorted.sort();
        if sorted.is_empty() {
            return Duration::ZERO;
        }
        let rank = (q * sorted.len() as f64).ceil() as usize;
        sorted[rank.clamp(1, sorted.len()) - 1]
    }

    /// The median.
    pub fn median(&self) -> Duration {
        self.quantile(0.5)
    }

    /// The 95th percentile.
    pub fn p95(&self) -> Duration {
        self.quantile(0.95)
    }
}

/// Milliseconds with one decimal.
pub fn ms(duration: Duration) -> String {
    format!("{:.1}", duration.as_secs_f64() * 1e3)
}

/// `a / b` with one or two decimals, for the ratio columns.
pub fn ratio(a: Duration, b: Duration) -> String {
    if b.is_zero() {
        return "–".into();
    }
    let value = a.as_secs_f64() / b.as_secs_f64();
    if value >= 10.0 {
        format!("{value:.1}×")
    } else {
        format!("{value:.2}×")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn samples(ms: &[u64]) -> Samples {
        let mut samples = Samples::default();
        for &ms in ms {
            samples.push(Duration::from_millis(ms));
        }
        samples
    }

    #[test]
    fn quantiles_use_the_nearest_rank() {
        let s = samples(&[50, 10, 40, 20, 30]);
        assert_eq!(s.median(), Duration::from_millis(30));
        assert_eq!(s.p95(), Duration::from_millis(50));
        let twenty: Vec<u64> = (1..=20).collect();
        assert_eq!(samples(&twenty).p95(), Duration::from_millis(19));
        assert_eq!(Samples::default().median(), Duration::ZERO);
    }

    #[test]
    fn ratios_read_as_multiples() {
        let a = Duration::from_millis(30);
        assert_eq!(ratio(a, Duration::from_millis(20)), "1.50×");
        assert_eq!(ratio(Duration::from_secs(2), a), "66.7×");
        assert_eq!(ratio(a, Duration::ZERO), "–");
    }
}
