//! HTTP pieces shared by the token service and the Face front.
//!
//! * [`context`]: the request id (`apim-request-id`) and the access log;
//! * [`sensitive_headers`]: the layer that marks secret headers so nothing can print them;
//! * [`error_response`]: Azure's error body, `{"error":{"code":...,"message":...}}`;
//! * [`openapi`]: the OpenAPI document of both services, served at `/openapi.json`;
//! * [`health`]: liveness and readiness probes;
//! * [`metrics`]: Prometheus metrics;
//! * [`server`]: serving a router on a listener within timeouts and connection bounds;
//! * [`rate_limit`]: token buckets and Azure's 429;
//! * [`client_address`]: which address a request comes from (the peer, or a trusted proxy's header).

use axum::http::header::{HeaderName, AUTHORIZATION};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use tower_http::sensitive_headers::SetSensitiveRequestHeadersLayer;

pub mod client_address;
pub mod context;
pub mod health;
pub mod metrics;
pub mod openapi;
pub mod rate_limit;
pub mod server;

/// The header that carries a subscription key.
pub const SUBSCRIPTION_KEY_HEADER: HeaderName =
    HeaderName::from_static("ocp-apim-subscription-key");
/// The query parameter that may carry a subscription key instead of the header.
pub const SUBSCRIPTION_KEY_PARAM: &str = "subscription-key";
/// The header that carries a limited access token to the Face front.
pub const LIMITED_ACCESS_TOKEN_HEADER: HeaderName = HeaderName::from_static("limitedaccesstoken");

/// Azure's text for a missing or wrong key.
pub const INVALID_KEY_MESSAGE: &str = "Access denied due to invalid subscription key or wrong API endpoint. Make sure to provide a valid key for an active subscription and use a correct regional API endpoint for your resource.";

/// The OpenAPI document of both services: [`openapi::document`] of the STS's and the Face
/// front's paths, as written out to `openapi/latch.openapi.json` (a test asserts they are equal).
pub const OPENAPI: &str = include_str!("../../../openapi/latch.openapi.json");

/// `GET /openapi.json`.
pub async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI).into_response()
}

/// Marks every header that can carry a secret as sensitive; put it outside any layer that logs.
pub fn sensitive_headers() -> SetSensitiveRequestHeadersLayer {
    SetSensitiveRequestHeadersLayer::new([
        SUBSCRIPTION_KEY_HEADER,
        AUTHORIZATION,
        LIMITED_ACCESS_TOKEN_HEADER,
    ])
}

/// Azure's error body.
pub fn error_body(code: &str, message: &str) -> serde_json::Value {
    serde_json::json!({ "error": { "code": code, "message": message } })
}

/// A JSON error response with Azure's body.
pub fn error_response(status: StatusCode, body: &serde_json::Value) -> Response {
    let mut response = (status, body.to_string()).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    response
}
