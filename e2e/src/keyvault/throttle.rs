//! Key Vault's service limit, imitated: a token bucket per vault that answers 429 `Throttled`
//! once a client asks faster than the vault's rate, with or without `Retry-After`.
//!
//! Real vaults allow about 4,000 secret GETs per 10 s per vault and region, and over that answer
//! 429, sometimes with `Retry-After` in seconds, sometimes without (see AZURE.md). A test or
//! benchmark sets a much lower rate with [`KeyVault::set_throttle`](super::KeyVault::set_throttle)
//! to see how a client behaves at the limit; a vault without one is never throttled.

use std::time::{Duration, Instant};

/// A request limit on one vault.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Throttle {
    /// Requests per second the bucket refills (at least 1).
    pub per_second: u32,
    /// Requests the bucket holds when full: the burst a quiet vault accepts at once (at least 1).
    pub burst: u32,
    /// Whether a 429 carries `Retry-After`: the whole seconds until the bucket holds a token
    /// again, at least 1. Without it the client has to pick its own backoff.
    pub retry_after: bool,
}

/// The bucket of one vault: full when the limit is set, refilled continuously.
#[derive(Debug)]
pub(crate) struct Bucket {
    limit: Throttle,
    tokens: f64,
    refilled: Instant,
}

impl Bucket {
    /// A full bucket for `limit`.
    pub fn new(limit: Throttle, now: Instant) -> Bucket {
        let limit = Throttle {
            per_second: limit.per_second.max(1),
            burst: limit.burst.max(1),
            ..limit
        };
        Bucket {
            limit,
            tokens: f64::from(limit.burst),
            refilled: now,
        }
    }

    /// Spends a token on a request arriving at `now`. When the bucket is empty the request is
    /// throttled: `Err` carries the `Retry-After` to send (`None` when the limit sends none).
    pub fn take(&mut self, now: Instant) -> Result<(), Option<u64>> {
        let rate = f64::from(self.limit.per_second);
        let elapsed = now.saturating_duration_since(self.refilled).as_secs_f64();
        self.tokens = (self.tokens + elapsed * rate).min(f64::from(self.limit.burst));
        self.refilled = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            return Ok(());
        }
        if !self.limit.retry_after {
            return Err(None);
        }
        let wait = Duration::from_secs_f64((1.0 - self.tokens) / rate);
        let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
        Err(Some(seconds.max(1)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limit(per_second: u32, burst: u32, retry_after: bool) -> Throttle {
        Throttle {
            per_second,
            burst,
            retry_after,
        }
    }

    #[test]
    fn a_full_bucket_lets_a_burst_through_then_throttles() {
        let start = Instant::now();
        let mut bucket = Bucket::new(limit(10, 3, false), start);
        assert_eq!(bucket.take(start), Ok(()));
        assert_eq!(bucket.take(start), Ok(()));
        assert_eq!(bucket.take(start), Ok(()));
        assert_eq!(bucket.take(start), Err(None));
    }

    #[test]
    fn the_bucket_refills_at_the_rate_and_never_beyond_the_burst() {
        let start = Instant::now();
        let mut bucket = Bucket::new(limit(10, 2, false), start);
        for _ in 0..2 {
            bucket.take(start).unwrap();
        }
        // 100 ms at 10/s is one token.
        let later = start + Duration::from_millis(100);
        assert_eq!(bucket.take(later), Ok(()));
        assert_eq!(bucket.take(later), Err(None));
        // A long quiet spell fills it to the burst, no further.
        let much_later = later + Duration::from_secs(60);
        assert_eq!(bucket.take(much_later), Ok(()));
        assert_eq!(bucket.take(much_later), Ok(()));
        assert_eq!(bucket.take(much_later), Err(None));
    }

    #[test]
    fn retry_after_is_whole_seconds_until_the_next_token() {
        let start = Instant::now();
        let mut fast = Bucket::new(limit(100, 1, true), start);
        fast.take(start).unwrap();
        assert_eq!(fast.take(start), Err(Some(1)), "10 ms rounds up to 1 s");

        let mut slow = Bucket::new(limit(1, 1, true), start);
        slow.take(start).unwrap();
        let half = start + Duration::from_millis(500);
        assert_eq!(slow.take(half), Err(Some(1)), "500 ms rounds up to 1 s");
    }

    #[test]
    fn zero_limits_are_raised_to_one() {
        let start = Instant::now();
        let mut bucket = Bucket::new(limit(0, 0, true), start);
        assert_eq!(bucket.take(start), Ok(()));
        assert_eq!(bucket.take(start), Err(Some(1)));
    }
}
