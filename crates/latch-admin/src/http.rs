//! The admin HTTP API: `POST /admin/v1/{op}` with the request's fields as a JSON body, answered
//! with JSON. Serve it on its own listener, on a private address.
//!
//! Credentials: `Authorization: Bearer <token>` is compared, in constant time, with the digests
//! of the operator and auditor tokens; `Ocp-Apim-Subscription-Key` must be a key of an enabled
//! ISV. Both at once, neither, or anything else: 401.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::header::AUTHORIZATION;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use latch_core::secret::Pepper;
use latch_http::{error_body, error_response, SUBSCRIPTION_KEY_HEADER};
use latch_store::check_cache::CheckCache;
use latch_store::key_auth::KeyAuth;
use latch_store::{AdminRole, Resource};
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
    // Every request reads the state version: an ISV's key works here exactly while it works.
    let keys = KeyAuth::new(CheckCache::new(ctx.store.clone(), Duration::ZERO)).await?;
    let pepper = Arc::new(Pepper::from_bytes(&ctx.store.key_pepper().await?));
    let state = AdminState { ctx, keys, pepper };
    Ok(Router::new()
        .route("/admin/v1/audit/export", axum::routing::get(export))
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
        Err(e) => return AdminError::BadRequest(e.to_string()).into_response(),
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
                resource: Box::new(Resource::clone(&resource)),
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

/// `GET /admin/v1/audit/export?chain=...&format=jsonl|csv`: streams whole chains as JSON lines
/// (records, then checkpoints, then a fresh checkpoint; what `audit verify` checks) or as CSV.
async fn export(
    State(state): State<AdminState>,
    uri: axum::http::Uri,
    headers: HeaderMap,
) -> Response {
    let caller = match authenticate(&state, &headers).await {
        Ok(caller) => caller,
        Err(e) => return e.into_response(),
    };
    let read = AdminRequest::ReadAudit {
        chain: None,
        after: None,
        limit: None,
    };
    if let Err(e) = crate::authorize(&caller, &read) {
        return e.into_response();
    }
    let params: std::collections::BTreeMap<String, String> =
        form_urlencoded::parse(uri.query().unwrap_or("").as_bytes())
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
    let csv = match params.get("format").map(String::as_str) {
        None | Some("jsonl") => false,
        Some("csv") => true,
        Some(other) => {
            return AdminError::BadRequest(format!("format '{other}' is not jsonl or csv"))
                .into_response()
        }
    };
    let ctx = state.ctx.clone();
    let chain = params.get("chain").cloned();
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(64);
    tokio::spawn(async move {
        let mut sink = ChannelSink { tx, csv };
        if csv {
            let _ = sink
                .tx
                .send(Bytes::from(format!("{}\n", crate::csv::HEADER)))
                .await;
        }
        let result = latch_audit::export::export(
            ctx.store.as_ref(),
            &ctx.audit,
            chain.as_deref(),
            ctx.rng.as_ref(),
            ctx.clock.as_ref(),
            &mut sink,
        )
        .await;
        if let Err(e) = result {
            tracing::error!(target: "latch::admin", error = %e, "export failed midway");
        }
    });
    let content_type = if csv {
        "text/csv; charset=utf-8"
    } else {
        "application/x-ndjson"
    };
    let mut response = Response::new(axum::body::Body::new(ChannelBody(rx)));
    response.headers_mut().insert(
        axum::http::header::CONTENT_TYPE,
        axum::http::HeaderValue::from_static(content_type),
    );
    response
}

/// Export lines into the response's channel; CSV rows for records only.
struct ChannelSink {
    tx: tokio::sync::mpsc::Sender<Bytes>,
    csv: bool,
}

#[async_trait::async_trait]
impl latch_audit::export::LineSink for ChannelSink {
    async fn line(&mut self, line: String) -> std::io::Result<()> {
        if self.csv && line.starts_with("{\"checkpoint\"") {
            return Ok(());
        }
        let line = if self.csv {
            crate::csv::row(&line)
        } else {
            line
        };
        self.tx
            .send(Bytes::from(format!("{line}\n")))
            .await
            .map_err(|_| std::io::Error::other("the client went away"))
    }
}

/// A response body fed by a channel: the export streams as it is read from the store.
struct ChannelBody(tokio::sync::mpsc::Receiver<Bytes>);

impl http_body::Body for ChannelBody {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        self.0
            .poll_recv(cx)
            .map(|chunk| chunk.map(|b| Ok(http_body::Frame::data(b))))
    }
}
