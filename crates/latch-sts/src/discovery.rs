//! What third-party verifiers need: the JWKS and the issuer metadata (RFC 8414).

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::Json;
use latch_core::claims::TokenKind;

use crate::AppState;

/// `GET /.well-known/jwks.json`.
pub(crate) async fn jwks(State(state): State<AppState>) -> impl IntoResponse {
    (
        [(header::CACHE_CONTROL, "public, max-age=300")],
        Json(state.inner.keys.current().jwks()),
    )
}

/// `GET /.well-known/oauth-authorization-server`: the issuer, where its keys are, and the two
/// token kinds (their `typ` and `aud`) so a verifier can tell them apart.
pub(crate) async fn metadata(State(state): State<AppState>) -> impl IntoResponse {
    let c = &state.inner.config;
    let kind = |k: TokenKind| serde_json::json!({ "typ": k.typ(), "aud": k.audience(), "max_lifetime_secs": k.max_lifetime_secs() });
    Json(serde_json::json!({
        "issuer": c.issuer,
        "jwks_uri": format!("{}/.well-known/jwks.json", c.public_url),
        "token_endpoint": format!("{}/sts/v1.0/issueToken", c.public_url),
        "limited_access_token_endpoint": format!("{}/sts/v1.0/issueLimitedAccessToken", c.public_url),
        "id_token_signing_alg_values_supported": ["ES256"],
        "token_kinds": {
            "limited_access": kind(TokenKind::LimitedAccess),
            "access": kind(TokenKind::Access),
        },
    }))
}
