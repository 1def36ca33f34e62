//! Token buckets: one per key (a resource, a subscription key, a client address), refilled at
//! `per_second` up to `burst`. Over the limit, the caller is told how many whole seconds to wait,
//! which the services answer as Azure's 429 with `Retry-After` ([`too_many_requests`]).
//!
//! The bucket state is in this process; with several replicas, each enforces its own share.
//! Time is a parameter of [`Limiter::check`], so the arithmetic is tested without sleeping.

use std::borrow::Borrow;
use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::Response;

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

/// The buckets of one limit, by key.
#[derive(Clone, Debug)]
pub struct Limiter<K = String> {
    limit: RateLimit,
    buckets: Arc<Mutex<Buckets<K>>>,
}

#[derive(Debug)]
struct Buckets<K> {
    by_key: HashMap<K, Bucket>,
    /// The size at which idle buckets are next dropped: twice what was left the last time, so
    /// the tidying costs a constant amount per new key however many keys are busy.
    tidy_at: usize,
}

/// Buckets idle this long are dropped, so the map does not grow without bound.
const IDLE: Duration = Duration::from_secs(300);
/// Past this many buckets, the idle ones are dropped.
const TIDY_AT: usize = 10_000;
/// Past half this many buckets that are not full (a flood from as many addresses, each held
/// down), every bucket is dropped: memory stays bounded.
const MOST: usize = 200_000;

impl<K: Hash + Eq> Limiter<K> {
    /// Buckets of `limit`.
    pub fn new(limit: RateLimit) -> Self {
        Limiter {
            limit,
            buckets: Arc::new(Mutex::new(Buckets {
                by_key: HashMap::new(),
                tidy_at: TIDY_AT,
            })),
        }
    }

    /// The limit every bucket has.
    pub fn limit(&self) -> RateLimit {
        self.limit
    }

    /// Takes one call from `key`'s bucket at `now`; `Err(seconds)` to wait if it is empty.
    pub fn check<Q>(&self, key: &Q, now: Instant) -> Result<(), u64>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ToOwned<Owned = K> + ?Sized,
    {
        let mut buckets = match self.buckets.lock() {
            Ok(b) => b,
            Err(poisoned) => poisoned.into_inner(),
        };
        let RateLimit { per_second, burst } = self.limit;
        let buckets = &mut *buckets;
        if !buckets.by_key.contains_key(key) {
            if buckets.by_key.len() >= buckets.tidy_at {
                // A bucket that would be full by now says nothing a new one would not.
                buckets.by_key.retain(|_, b| {
                    let refill = now.saturating_duration_since(b.at).as_secs_f64() * per_second;
                    b.tokens + refill < burst && now.saturating_duration_since(b.at) < IDLE
                });
                if buckets.by_key.len() >= MOST / 2 {
                    // A flood from as many keys, each of them held down: memory stays bounded,
                    // and each key starts again from a full burst.
                    buckets.by_key.clear();
                }
                buckets.tidy_at = (buckets.by_key.len() * 2).clamp(TIDY_AT, MOST);
            }
            buckets.by_key.insert(
                key.to_owned(),
                Bucket {
                    tokens: burst,
                    at: now,
                },
            );
        }
        let Some(bucket) = buckets.by_key.get_mut(key) else {
            return Ok(());
        };
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

/// Azure's 429: `{"error":{"code":"429","message":"Rate limit is exceeded. Try again in N
/// seconds."}}` with `Retry-After: N`.
pub fn too_many_requests(retry_after: u64) -> Response {
    let mut response = crate::error_response(
        StatusCode::TOO_MANY_REQUESTS,
        &crate::error_body(
            "429",
            &format!("Rate limit is exceeded. Try again in {retry_after} seconds."),
        ),
    );
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(retry_after));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_then_the_sustained_rate() {
        let l = Limiter::<String>::new(RateLimit {
            per_second: 2.0,
            burst: 3.0,
        });
        let k = "k";
        let t0 = Instant::now();
        for _ in 0..3 {
            assert_eq!(l.check(k, t0), Ok(()));
        }
        assert_eq!(l.check(k, t0), Err(1));
        assert_eq!(l.check("other", t0), Ok(()), "buckets are per key");
        assert_eq!(l.check(k, t0 + Duration::from_millis(499)), Err(1));
        assert_eq!(l.check(k, t0 + Duration::from_millis(500)), Ok(()));
        assert_eq!(l.check(k, t0 + Duration::from_millis(500)), Err(1));
        // Ten idle seconds refill to the burst, not beyond.
        let later = t0 + Duration::from_secs(10);
        for _ in 0..3 {
            assert_eq!(l.check(k, later), Ok(()));
        }
        assert!(l.check(k, later).is_err());
    }

    #[test]
    fn slow_rates_ask_for_longer_waits() {
        let l = Limiter::<u32>::new(RateLimit {
            per_second: 0.1,
            burst: 1.0,
        });
        let t0 = Instant::now();
        assert_eq!(l.check(&1u32, t0), Ok(()));
        assert_eq!(l.check(&1u32, t0), Err(10));
        assert_eq!(l.check(&1u32, t0 + Duration::from_secs(5)), Err(5));
    }

    #[test]
    fn a_flood_of_keys_keeps_memory_bounded() {
        let l = Limiter::<u32>::new(RateLimit {
            per_second: 1.0,
            burst: 1.0,
        });
        let t0 = Instant::now();
        for k in 0..(MOST as u32 + 10) {
            assert_eq!(l.check(&k, t0), Ok(()));
        }
        let held = l.buckets.lock().unwrap().by_key.len();
        assert!(held <= MOST, "{held} buckets held");
    }

    #[test]
    fn the_429_is_azures() {
        let r = too_many_requests(7);
        assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(r.headers()[header::RETRY_AFTER], "7");
    }
}
