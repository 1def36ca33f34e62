//! The Face front's rate limit: one token bucket per resource (both its keys, or its bearer
//! tokens, count together, as at Azure); over the limit, Azure's 429 with `Retry-After`. The
//! buckets themselves are [`latch_http::rate_limit`]'s.

use std::time::Instant;

use axum::extract::Request;
use axum::response::{IntoResponse, Response};

pub use latch_http::rate_limit::{Limiter, RateLimit};

use crate::auth::VerifiedCaller;
use crate::check::Check;
use crate::error::FaceError;

impl Check for Limiter {
    async fn check(&self, req: &mut Request) -> Result<(), Response> {
        let Some(caller) = req.extensions().get::<VerifiedCaller>() else {
            return Err(FaceError::InvalidKey.into_response());
        };
        Limiter::check(self, caller.limit_key(), Instant::now())
            .map_err(|retry_after| FaceError::RateLimited { retry_after }.into_response())
    }
}
