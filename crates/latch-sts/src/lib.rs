//! The latch token service (STS).
//!
//! | route | what |
//! |---|---|
//! | `POST /sts/v1.0/issueLimitedAccessToken` | an ISV issues a limited access token for a client's resource |
//! | `POST /sts/v1.0/issueToken` | any resource exchanges its key for a 10-minute bearer token |
//! | `GET /.well-known/jwks.json` | the public keys of every token that may still be valid |
//! | `GET /.well-known/oauth-authorization-server` (also `openid-configuration`) | issuer metadata |
//!
//! Layers, outer to inner: secret headers marked sensitive (so that nothing after can print
//! them) → [`latch_http::context::request_context`] (request id, access log) → on the two token
//! routes, the limit per client address ([`limits`]) → the handler, which bounds the body, authenticates, applies the
//! limit per key, checks, signs and waits for the audit record to commit before it answers.

use std::sync::Arc;

use axum::http::header::HeaderName;
use axum::routing::{get, post};
use axum::Router;
use latch_audit::writer::AuditLog;
use latch_core::Clock;
use latch_store::check_cache::CheckCache;
use latch_store::key_auth::KeyAuth;
use latch_store::signing::SharedKeyRing;
use ring::rand::SystemRandom;
use tower::ServiceBuilder;

mod discovery;
pub mod error;
mod issue;
pub mod limits;
pub mod openapi;

pub use error::ApiError;
pub use limits::{RefusalSummaries, StsLimits};

/// The largest request body accepted, in bytes.
pub const MAX_BODY: usize = 16 * 1024;

/// The response header that tells an `issueToken` caller when to fetch a new token.
pub const REFRESH_BY_HEADER: HeaderName = HeaderName::from_static("latch-refresh-by");

/// What the STS is configured with.
#[derive(Clone, Debug)]
pub struct StsConfig {
    /// The `iss` of every token, and the `issuer` of the metadata.
    pub issuer: String,
    /// The `region` claim, if any.
    pub region: Option<String>,
    /// The URL clients reach this service at (for `jwks_uri` in the metadata), no trailing `/`.
    pub public_url: String,
    /// Rate limits and refusal summaries.
    pub limits: StsLimits,
}

/// Everything a request handler needs; cheap to clone.
#[derive(Clone)]
pub struct AppState {
    inner: Arc<Inner>,
}

struct Inner {
    checks: CheckCache,
    audit: AuditLog,
    keys: SharedKeyRing,
    keys_auth: KeyAuth,
    clock: Arc<dyn Clock>,
    rng: SystemRandom,
    config: StsConfig,
    by_address: latch_http::rate_limit::Limiter<std::net::IpAddr>,
    by_key: latch_http::rate_limit::Limiter<String>,
    refusals: Arc<limits::Refusals>,
}

impl AppState {
    /// The state of a service over the store under `checks`, writing audit records through
    /// `audit`.
    pub async fn new(
        checks: CheckCache,
        audit: AuditLog,
        keys: SharedKeyRing,
        clock: Arc<dyn Clock>,
        config: StsConfig,
    ) -> Result<Self, latch_store::StoreError> {
        let keys_auth = KeyAuth::new(checks.clone()).await?;
        let (by_address, by_key) = limits::limiters(&config.limits);
        Ok(AppState {
            inner: Arc::new(Inner {
                checks,
                audit,
                keys,
                keys_auth,
                clock,
                rng: SystemRandom::new(),
                config,
                by_address,
                by_key,
                refusals: Arc::default(),
            }),
        })
    }

    /// What writes this service's tallied refusals to the audit log: run it beside the service,
    /// and flush it once more after the service has stopped.
    pub fn refusal_summaries(&self) -> RefusalSummaries {
        let inner = &self.inner;
        RefusalSummaries::new(
            inner.refusals.clone(),
            inner.audit.clone(),
            inner.clock.clone(),
            inner.config.limits.refusal_summary,
        )
    }
}

/// The STS's routes and layers.
pub fn router(state: AppState) -> Router {
    // The token routes sign and write a durable record: they are the ones limited per address.
    let issuing = Router::new()
        .route(
            "/sts/v1.0/issueLimitedAccessToken",
            post(issue::limited_access_token),
        )
        .route("/sts/v1.0/issueToken", post(issue::access_token))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            limits::by_address,
        ));
    Router::new()
        .merge(issuing)
        .route("/.well-known/jwks.json", get(discovery::jwks))
        .route(
            "/.well-known/oauth-authorization-server",
            get(discovery::metadata),
        )
        .route(
            "/.well-known/openid-configuration",
            get(discovery::metadata),
        )
        .route("/openapi.json", get(latch_http::openapi))
        .fallback(|| async { ApiError::NotFound })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .with_state(state)
        .layer(
            ServiceBuilder::new()
                .layer(latch_http::sensitive_headers())
                .layer(axum::middleware::from_fn(
                    latch_http::context::request_context,
                )),
        )
}

#[cfg(test)]
mod tests;
