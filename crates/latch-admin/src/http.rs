//! The admin HTTP API: `POST /admin/v1/{op}` with the request's fields as a JSON body, answered
//! with JSON. Serve it on its own listener, on a private address.
//!
//! Credentials: `Authorization: Bearer <token>` is compared, in constant time, with the digests
//! of the operator and auditor tokens; `Ocp-Apim-Subscription-Key` must be a key of an enabled
//! ISV. Both at once, neither, or anything else: 401.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::header::AUTHORIZATION;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use latch_core::secret::Pepper;
use latch_http::keys::KeyAuth;
use latch_http::{error_body, error_response, SUBSCRIPTION_KEY_HEADER};
use latch_store::AdminRole;
use tower::ServiceBuilder;

use crate::{execute, AdminError, AdminRequest, Caller, Context};

/// The largest request body, in bytes.
pub const MAX_BODY: usize = 64 * 1024;

#[derive(Clone)]
struct AdminState {
    ctx: Context,
    keys: KeyAuth,
    pepper: Arc<Pepper>,
}

/// The admin API's routes and layers.
pub async fn router(ctx: Context) -> Result<Router, latch_store::StoreError> {
    let keys = KeyAuth::new(ctx.store.clone()).await?;
    let pepper = Arc::new(Pepper::from_bytes(&ctx.store.key_pepper().await?));
    let state = AdminState { ctx, keys, pepper };
    Ok(Router::new()
        .route("/admin/v1/{op}", post(handle))
        .fallback(|| async { AdminError::NotFound("no such route".into()) })
        .with_state(state)
        .layer(
            ServiceBuilder::new()
                .layer(latch_http::sensitive_headers())
                .layer(axum::middleware::from_fn(
                    latch_http::context::request_context,
                )),
        ))
}

async fn handle(
    State(state): State<AdminState>,
    Path(op): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let caller = match authenticate(&state, &headers).await {
        Ok(caller) => caller,
        Err(e) => return e.into_response(),
    };
    if body.len() > MAX_BODY {
        return AdminError::BadRequest(format!("the body is larger than {MAX_BODY} bytes"))
            .into_response();
    }
    let request = match AdminRequest::from_http(&op, &body) {
        Ok(r) => r,
        Err(e) => return AdminError::BadRequest(e).into_response(),
    };
    match execute(&state.ctx, &caller, request).await {
        Ok(value) => (StatusCode::OK, axum::Json(value)).into_response(),
        Err(e) => e.into_response(),
    }
}

async fn authenticate(state: &AdminState, headers: &HeaderMap) -> Result<Caller, AdminError> {
    let mut bearers = headers.get_all(AUTHORIZATION).iter();
    let mut keys = headers.get_all(SUBSCRIPTION_KEY_HEADER).iter();
    match (bearers.next(), bearers.next(), keys.next(), keys.next()) {
        (Some(value), None, None, None) => {
            let token = value
                .to_str()
                .ok()
                .and_then(|v| v.split_once(' '))
                .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
                .map(|(_, t)| t)
                .ok_or(AdminError::Unauthorized)?;
            for (role, caller) in [
                (AdminRole::Operator, Caller::Operator),
                (AdminRole::Auditor, Caller::Auditor),
            ] {
                if let Some(stored) = state.ctx.store.admin_credential(role).await? {
                    if state.pepper.matches(token.as_bytes(), &stored) {
                        return Ok(caller);
                    }
                }
            }
            Err(AdminError::Unauthorized)
        }
        (None, None, Some(key), None) => {
            let (resource, slot) = state
                .keys
                .resource_for_key(key.as_bytes())
                .await?
                .ok_or(AdminError::Unauthorized)?;
            if !resource.isv_enabled {
                return Err(AdminError::Forbidden(
                    "only an enabled ISV's key may call the admin API".into(),
                ));
            }
            Ok(Caller::Isv {
                resource: Box::new(resource),
                slot,
            })
        }
        _ => Err(AdminError::Unauthorized),
    }
}

impl IntoResponse for AdminError {
    fn into_response(self) -> Response {
        let (status, code, message) = match self {
            AdminError::Unauthorized => (
                StatusCode::UNAUTHORIZED,
                "Unauthorized",
                "A valid operator or auditor token (Authorization: Bearer) or ISV key (Ocp-Apim-Subscription-Key) is required.".to_owned(),
            ),
            AdminError::Forbidden(m) => (StatusCode::FORBIDDEN, "Forbidden", m),
            AdminError::BadRequest(m) => (StatusCode::BAD_REQUEST, "BadRequest", m),
            AdminError::NotFound(m) => (StatusCode::NOT_FOUND, "NotFound", m),
            AdminError::Conflict(m) => (StatusCode::CONFLICT, "Conflict", m),
            AdminError::Unavailable => (
                StatusCode::SERVICE_UNAVAILABLE,
                "ServiceUnavailable",
                "The store is unavailable; nothing was changed.".to_owned(),
            ),
        };
        error_response(status, &error_body(code, &message))
    }
}
