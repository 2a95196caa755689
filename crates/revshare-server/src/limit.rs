//! Rate limits: a token bucket per key (a token's id, or a client address for failed
//! authentications) that holds `per_second` requests and
//! refills at `per_second` a second, so a client may burst one second's worth and then keeps to
//! the rate. A request over it is refused with 429 and `Retry-After` (whole seconds, at least 1)
//! before it does anything. Buckets are in memory, per server process; counting is in integer
//! thousandths of a request (no floats).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// One request, in thousandths.
const REQUEST: u128 = 1000;

struct Bucket {
    milli: u128,
    at: Instant,
}

/// The buckets of every token seen.
pub(crate) struct RateLimiter {
    per_second: u128,
    buckets: Mutex<HashMap<String, Bucket>>,
}

impl RateLimiter {
    /// `per_second` 0 turns limits off.
    pub(crate) fn new(per_second: u32) -> RateLimiter {
        RateLimiter { per_second: u128::from(per_second), buckets: Mutex::new(HashMap::new()) }
    }

    /// Takes one request from `key`'s bucket, or says how long until one is there.
    pub(crate) fn take(&self, key: &str, now: Instant) -> Result<(), Duration> {
        self.bucket(key, now, true)
    }

    /// Whether `key`'s bucket holds a request, without taking it: for limits counted only on
    /// failure (a failed authentication takes one afterwards).
    pub(crate) fn check(&self, key: &str, now: Instant) -> Result<(), Duration> {
        self.bucket(key, now, false)
    }

    fn bucket(&self, key: &str, now: Instant, take: bool) -> Result<(), Duration> {
        if self.per_second == 0 {
            return Ok(());
        }
        let capacity = self.per_second * REQUEST;
        let Ok(mut buckets) = self.buckets.lock() else { return Ok(()) };
        let bucket = buckets.entry(key.to_owned()).or_insert(Bucket { milli: capacity, at: now });
        // micros × per_second / 1000 thousandths of a request have come back since.
        let refill = now.saturating_duration_since(bucket.at).as_micros() * self.per_second / 1000;
        bucket.milli = bucket.milli.saturating_add(refill).min(capacity);
        bucket.at = now;
        if bucket.milli >= REQUEST {
            if take {
                bucket.milli -= REQUEST;
            }
            Ok(())
        } else {
            let missing = REQUEST - bucket.milli;
            let rate_milli_per_second = self.per_second * REQUEST;
            let seconds = missing.div_ceil(rate_milli_per_second).max(1);
            Err(Duration::from_secs(u64::try_from(seconds).unwrap_or(u64::MAX)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_of_one_second_then_the_rate() {
        let limiter = RateLimiter::new(2);
        let start = Instant::now();
        assert_eq!(limiter.take("a", start), Ok(()));
        assert_eq!(limiter.take("a", start), Ok(()));
        assert_eq!(limiter.take("a", start), Err(Duration::from_secs(1)), "the burst is spent");
        assert_eq!(limiter.take("b", start), Ok(()), "tokens have buckets of their own");
        assert_eq!(limiter.take("a", start + Duration::from_millis(499)), Err(Duration::from_secs(1)));
        assert_eq!(limiter.take("a", start + Duration::from_millis(500)), Ok(()), "half a second brings one back at 2/s");
        assert_eq!(RateLimiter::new(0).take("a", start), Ok(()), "0 is no limit");
    }
}
