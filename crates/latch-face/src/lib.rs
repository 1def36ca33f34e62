//! The latch Face front: Azure-compatible `/face/{version}/...` routes, with the key, bearer and
//! limited access token checks in front of a Face backend.
//!
//! Layers, outer to inner, each a tower layer that answers by itself when it refuses:
//!
//! 1. secret headers marked sensitive (`Ocp-Apim-Subscription-Key`, `Authorization`,
//!    `LimitedAccessToken`), so nothing after can print them;
//! 2. [`latch_http::context`]: request id (`apim-request-id`) and access log;
//! 3. `x-ms-error-code` on v1.2 error answers;
//! 4. body limit (by `Content-Length`; streamed bodies are cut at the same size) and timeout;
//! 5. [`auth`]: subscription key or bearer token → [`auth::VerifiedCaller`];
//! 6. [`rate_limit`]: per key → Azure's 429 with `Retry-After`;
//! 7. [`limited_access`]: operation → features; approval or token → [`limited_access::VerifiedFaceCall`],
//!    with the usage audit record;
//! 8. [`routes`]: path ids ([`ids`]) and bodies ([`body`]) parsed and checked once, then the
//!    typed call handed to the [`backend`].
//!
//! The routes, and which operation each is, come from one table: [`routes::ROUTES`].
//!
//! Checks 5–7 are `route_layer`s: an unknown path is a 404 whatever the credentials.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{header, HeaderValue};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use latch_audit::writer::AuditLog;
use latch_core::Clock;
use latch_store::check_cache::CheckCache;
use latch_store::key_auth::KeyAuth;
use tower::ServiceBuilder;

pub mod auth;
pub mod backend;
pub mod body;
pub mod check;
pub mod error;
pub mod ids;
pub mod limited_access;
pub mod openapi;
pub mod operation;
pub mod rate_limit;
pub mod routes;

use backend::Backend;
use check::CheckLayer;
use error::{ErrorCode, FaceError};
use operation::FeaturePolicy;
use rate_limit::{Limiter, RateLimit};

/// The verifier the front checks tokens with: shared by the checks, replaced when the signing
/// keys change.
pub type Verifiers = latch_core::Swappable<latch_core::Verifier>;

/// The front's settings.
#[derive(Clone, Debug)]
pub struct FaceConfig {
    /// Operation → required features.
    pub policy: FeaturePolicy,
    /// Calls per key.
    pub rate_limit: RateLimit,
    /// The largest request body (images), in bytes.
    pub max_body: usize,
    /// How long a call may take in all.
    pub request_timeout: Duration,
}

impl Default for FaceConfig {
    fn default() -> Self {
        FaceConfig {
            policy: FeaturePolicy::default(),
            rate_limit: RateLimit::default(),
            // Azure's image limit.
            max_body: 6 * 1024 * 1024,
            request_timeout: Duration::from_secs(60),
        }
    }
}

/// Everything the front needs; cheap to clone.
#[derive(Clone)]
pub struct FaceState {
    inner: Arc<Inner>,
}

struct Inner {
    auth: auth::Authenticate,
    limiter: Limiter,
    limited_access: limited_access::LimitedAccess,
    backend: Backend,
    config: FaceConfig,
}

impl FaceState {
    /// The state of a front over the store under `checks`, checking tokens with `verifiers`.
    pub async fn new(
        checks: CheckCache,
        audit: AuditLog,
        verifiers: Verifiers,
        clock: Arc<dyn Clock>,
        config: FaceConfig,
        backend: Backend,
    ) -> Result<Self, latch_store::StoreError> {
        let keys = KeyAuth::new(checks.clone()).await?;
        Ok(FaceState {
            inner: Arc::new(Inner {
                auth: auth::Authenticate {
                    keys,
                    checks: checks.clone(),
                    verifiers: verifiers.clone(),
                    clock: clock.clone(),
                },
                limiter: Limiter::new(config.rate_limit),
                limited_access: limited_access::LimitedAccess {
                    policy: Arc::new(config.policy.clone()),
                    verifiers,
                    checks,
                    audit,
                    clock,
                },
                backend,
                config,
            }),
        })
    }
}

/// The front's routes and layers.
pub fn router(state: FaceState) -> Router {
    let inner = &state.inner;
    routes::face_routes()
        // Added last, run first: authenticate, then rate-limit, then the Limited Access check.
        .route_layer(CheckLayer::new(inner.limited_access.clone()))
        .route_layer(CheckLayer::new(inner.limiter.clone()))
        .route_layer(CheckLayer::new(inner.auth.clone()))
        // Added after the checks, so not behind them.
        .route("/openapi.json", get(latch_http::openapi))
        .fallback(|| async { FaceError::NotFound })
        .method_not_allowed_fallback(|| async { FaceError::NotFound })
        .layer(
            ServiceBuilder::new()
                .layer(latch_http::sensitive_headers())
                .layer(axum::middleware::from_fn(
                    latch_http::context::request_context,
                ))
                .layer(axum::middleware::from_fn(error_code_header))
                .layer(axum::middleware::from_fn_with_state(state.clone(), limits)),
        )
        .with_state(state)
}

/// Refuses bodies announced larger than the limit, and calls that take too long.
async fn limits(State(state): State<FaceState>, req: Request, next: Next) -> Response {
    let config = &state.inner.config;
    let announced = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if announced.is_some_and(|n| n > config.max_body as u64) {
        return FaceError::TooLarge.into_response();
    }
    match tokio::time::timeout(config.request_timeout, next.run(req)).await {
        Ok(response) => response,
        Err(_) => FaceError::Timeout.into_response(),
    }
}

/// On v1.2 paths, error answers also carry their code in `x-ms-error-code`.
async fn error_code_header(req: Request, next: Next) -> Response {
    let v12 = req
        .uri()
        .path()
        .strip_prefix("/face/")
        .and_then(|rest| rest.split('/').next())
        .is_some_and(operation::sets_error_code_header);
    let mut response = next.run(req).await;
    if v12 {
        if let Some(ErrorCode(code)) = response.extensions().get::<ErrorCode>().cloned() {
            if let Ok(value) = HeaderValue::from_str(&code) {
                response.headers_mut().insert("x-ms-error-code", value);
            }
        }
    }
    response
}

#[cfg(test)]
mod tests;
