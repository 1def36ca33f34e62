//! A per-resource rate limit: a token bucket for each resource (both its keys, or its bearer
//! tokens, count together, as at Azure), refilled at `per_second` up to `burst`. Over the limit, the answer is Azure's 429
//! with `Retry-After`.
//!
//! The bucket state is in this process; with several replicas, each enforces its own share.
//! Time is a parameter of [`Limiter::check`], so the arithmetic is tested without sleeping.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::Request;
use axum::response::{IntoResponse, Response};

use crate::auth::VerifiedCaller;
use crate::check::Check;
use crate::error::FaceError;

/// Calls per second and burst size.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RateLimit {
    /// Sustained calls per second.
    pub per_second: f64,
    /// Calls allowed at once.
    pub burst: f64,
}

impl Default for RateLimit {
    /// Azure's S0 tier: 10 calls per second.
    fn default() -> Self {
        RateLimit {
            per_second: 10.0,
            burst: 20.0,
        }
    }
}

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// The buckets.
#[derive(Clone, Debug)]
pub struct Limiter {
    limit: RateLimit,
    buckets: Arc<Mutex<HashMap<String, Bucket>>>,
}

/// Buckets idle this long are dropped, so the map does not grow without bound.
const IDLE: Duration = Duration::from_secs(300);

impl Limiter {
    /// Buckets of `limit`.
    pub fn new(limit: RateLimit) -> Self {
        Limiter {
            limit,
            buckets: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    /// Takes one call from `key`'s bucket at `now`; `Err(seconds)` to wait if it is empty.
    pub fn check(&self, key: &str, now: Instant) -> Result<(), u64> {
        let mut buckets = match self.buckets.lock() {
            Ok(b) => b,
            Err(poisoned) => poisoned.into_inner(),
        };
        if buckets.len() > 10_000 {
            buckets.retain(|_, b| now.saturating_duration_since(b.at) < IDLE);
        }
        let RateLimit { per_second, burst } = self.limit;
        let bucket = buckets.entry(key.to_owned()).or_insert(Bucket {
            tokens: burst,
            at: now,
        });
        let elapsed = now.saturating_duration_since(bucket.at).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * per_second).min(burst);
        bucket.at = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            let wait = (1.0 - bucket.tokens) / per_second;
            Err(wait.ceil().max(1.0) as u64)
        }
    }
}

impl Check for Limiter {
    async fn check(&self, req: &mut Request) -> Result<(), Response> {
        let Some(caller) = req.extensions().get::<VerifiedCaller>() else {
            return Err(FaceError::InvalidKey.into_response());
        };
        Limiter::check(self, caller.limit_key(), Instant::now())
            .map_err(|retry_after| FaceError::RateLimited { retry_after }.into_response())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_then_the_sustained_rate() {
        let l = Limiter::new(RateLimit {
            per_second: 2.0,
            burst: 3.0,
        });
        let t0 = Instant::now();
        for _ in 0..3 {
            assert_eq!(l.check("k", t0), Ok(()));
        }
        assert_eq!(l.check("k", t0), Err(1));
        assert_eq!(l.check("other", t0), Ok(()), "buckets are per key");
        assert_eq!(l.check("k", t0 + Duration::from_millis(499)), Err(1));
        assert_eq!(l.check("k", t0 + Duration::from_millis(500)), Ok(()));
        assert_eq!(l.check("k", t0 + Duration::from_millis(500)), Err(1));
        // Ten idle seconds refill to the burst, not beyond.
        let later = t0 + Duration::from_secs(10);
        for _ in 0..3 {
            assert_eq!(l.check("k", later), Ok(()));
        }
        assert!(l.check("k", later).is_err());
    }

    #[test]
    fn slow_rates_ask_for_longer_waits() {
        let l = Limiter::new(RateLimit {
            per_second: 0.1,
            burst: 1.0,
        });
        let t0 = Instant::now();
        assert_eq!(l.check("k", t0), Ok(()));
        assert_eq!(l.check("k", t0), Err(10));
        assert_eq!(l.check("k", t0 + Duration::from_secs(5)), Err(5));
    }
}
