//! `issueLimitedAccessToken` and `issueToken`.
//!
//! The checks run in the order of the design's data flow, and the first failure answers:
//!
//! 1. the `Ocp-Apim-Subscription-Key` names a resource (401 otherwise);
//! 2. that resource may issue limited access tokens;
//! 3. `expiredTime` is absent (3600 s) or a whole number in 60..=86400;
//! 4. the body is one JSON object; its member names match case-insensitively, as in Azure;
//! 5. `targetAzureResourceId` (or its older name `resourceId`) is a well-formed resource id;
//! 6. `featureFlags` is a non-empty list of known flags, all granted to the ISV: a request for
//!    more is refused, never narrowed;
//! 7. the ISV has not blocked the client;
//! 8. the token is signed and its audit record committed; only then is it returned.
//!
//! A refusal is audited too, before it is answered. If the audit log cannot be written, the
//! answer is 503 and no token leaves the service. Two refusals are counted instead of recorded
//! one by one (see [`crate::limits`]): a caller with no valid key, and a caller over a rate
//! limit; they cost the log one record per client address and interval.

use std::sync::Arc;

use axum::body::{to_bytes, Body};
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use latch_core::audit::{Actor, AuditDraft, AuditEvent, KeySlot};
use latch_core::claims::{
    new_jti, AccessClaims, LimitedAccessClaims, LimitedAccessGrant, TokenKind,
};
use latch_core::json::{self, JsonError};
use latch_core::verify::fingerprint;
use latch_core::{FeatureSet, Lifetime, ResourceId};
use latch_store::Resource;
use serde_json::{Map, Value};

use latch_http::context::RequestId;
use latch_http::SUBSCRIPTION_KEY_HEADER;

use crate::limits::{ClientSource, Tallied};
use crate::{ApiError, AppState, MAX_BODY, REFRESH_BY_HEADER};

/// What is known about an attempt so far, for its audit record.
#[derive(Default)]
struct Attempt {
    caller: Option<(ResourceId, KeySlot)>,
    target: Option<ResourceId>,
    features: FeatureSet,
}

impl Attempt {
    fn actor(&self) -> Actor {
        match &self.caller {
            Some((resource, slot)) => Actor::Resource {
                resource: resource.clone(),
                slot: *slot,
            },
            None => Actor::Anonymous,
        }
    }
}

/// A signed token waiting for its audit record.
struct Signed {
    token: String,
    event: AuditEvent,
    headers: Vec<(axum::http::HeaderName, String)>,
}

/// `POST /sts/v1.0/issueLimitedAccessToken`.
pub(crate) async fn limited_access_token(
    State(state): State<AppState>,
    Extension(request_id): Extension<RequestId>,
    Extension(source): Extension<ClientSource>,
    headers: HeaderMap,
    uri: Uri,
    body: Body,
) -> Response {
    let mut attempt = Attempt::default();
    let result = issue_limited_access(&state, &headers, uri.query(), body, &mut attempt).await;
    let refused = |e: &ApiError, a: &Attempt| AuditEvent::LimitedAccessTokenRefused {
        isv: a.caller.as_ref().map(|(r, _)| r.clone()),
        target: a.target.clone(),
        features: a.features.clone(),
        reason: e.reason().to_owned(),
        status: e.status().as_u16(),
    };
    finish(&state, &request_id, source, &attempt, result, refused).await
}

/// `POST /sts/v1.0/issueToken`.
pub(crate) async fn access_token(
    State(state): State<AppState>,
    Extension(request_id): Extension<RequestId>,
    Extension(source): Extension<ClientSource>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let mut attempt = Attempt::default();
    let result = issue_access(&state, &headers, body, &mut attempt).await;
    let refused = |e: &ApiError, _: &Attempt| AuditEvent::AccessTokenRefused {
        reason: e.reason().to_owned(),
        status: e.status().as_u16(),
    };
    finish(&state, &request_id, source, &attempt, result, refused).await
}

/// Audits the outcome, then answers: the token only if its record committed. A refusal for
/// no valid key or over a limit is tallied for its source's summary instead.
async fn finish(
    state: &AppState,
    request_id: &RequestId,
    ClientSource(source): ClientSource,
    attempt: &Attempt,
    result: Result<Signed, ApiError>,
    refused: impl Fn(&ApiError, &Attempt) -> AuditEvent,
) -> Response {
    let result = match result {
        Err(e @ (ApiError::InvalidKey | ApiError::RateLimited { .. })) => {
            let why = match e {
                ApiError::InvalidKey => Tallied::InvalidKey,
                _ => Tallied::RateLimited,
            };
            let inner = &state.inner;
            inner.refusals.count(source, why, inner.clock.now());
            tracing::debug!(target: "latch::sts", reason = e.reason(), %source, "token request refused; counted for the summary");
            return e.into_response();
        }
        other => other,
    };
    let event = match &result {
        Ok(signed) => signed.event.clone(),
        Err(e) => refused(e, attempt),
    };
    let draft = AuditDraft {
        time: state.inner.clock.now(),
        request_id: Some(request_id.as_str().to_owned()),
        actor: attempt.actor(),
        event,
    };
    if let Err(e) = state.inner.audit.record(draft).await {
        tracing::error!(target: "latch::sts", error = %e, "audit record not committed; answering 503");
        return ApiError::AuditUnavailable.into_response();
    }
    match result {
        Ok(signed) => {
            let mut response = (StatusCode::OK, signed.token).into_response();
            let h = response.headers_mut();
            h.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/jwt"),
            );
            h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            for (name, value) in signed.headers {
                if let Ok(v) = HeaderValue::from_str(&value) {
                    h.insert(name, v);
                }
            }
            response
        }
        Err(e) => {
            tracing::info!(target: "latch::sts", reason = e.reason(), status = e.status().as_u16(), "token request refused");
            e.into_response()
        }
    }
}

async fn issue_limited_access(
    state: &AppState,
    headers: &HeaderMap,
    query: Option<&str>,
    body: Body,
    attempt: &mut Attempt,
) -> Result<Signed, ApiError> {
    let isv = authenticate(state, headers, attempt).await?;
    if !isv.isv_enabled {
        return Err(ApiError::IsvNotEnabled);
    }
    let lifetime =
        Lifetime::parse_param(expired_time(query)?.as_deref()).map_err(ApiError::BadExpiredTime)?;
    let request = parse_request(&read_body(body).await?)?;
    let target = request.target()?;
    attempt.target = Some(target.clone());
    let features = request.features()?;
    attempt.features = features.clone();
    let missing = features.missing_from(&isv.isv_grants);
    if !missing.is_empty() {
        tracing::info!(target: "latch::sts", requested = %features, granted = %isv.isv_grants, "flags beyond the ISV's grants");
        return Err(ApiError::NotGranted(missing));
    }
    let blocked = state
        .inner
        .checks
        .is_client_blocked(&isv.id, &target)
        .await
        .map_err(store_failed)?;
    if blocked {
        return Err(ApiError::ClientBlocked);
    }

    let inner = &state.inner;
    let jti = new_jti(&inner.rng).map_err(|_| ApiError::Internal)?;
    let grant = LimitedAccessGrant {
        issuer: &inner.config.issuer,
        isv: &isv.id,
        target: &target,
        features: &features,
        lifetime,
        region: inner.config.region.as_deref(),
    };
    let claims = LimitedAccessClaims::new(&grant, inner.clock.now(), jti);
    let (token, kid) = sign(state, TokenKind::LimitedAccess, &claims)?;
    tracing::info!(target: "latch::sts", isv = %isv.id, target = %target, features = %features, jti = %claims.jti, exp = claims.exp.0, "limited access token issued");
    Ok(Signed {
        event: AuditEvent::LimitedAccessTokenIssued {
            isv: isv.id.clone(),
            target,
            features,
            lifetime_secs: lifetime.as_secs(),
            expires: claims.exp,
            fingerprint: fingerprint(&token),
            jti: claims.jti,
            kid,
        },
        token,
        headers: Vec::new(),
    })
}

async fn issue_access(
    state: &AppState,
    headers: &HeaderMap,
    body: Body,
    attempt: &mut Attempt,
) -> Result<Signed, ApiError> {
    let resource = authenticate(state, headers, attempt).await?;
    // Azure ignores the body of issueToken; we read it only to bound it.
    read_body(body).await?;
    let inner = &state.inner;
    let jti = new_jti(&inner.rng).map_err(|_| ApiError::Internal)?;
    let claims = AccessClaims::new(
        &inner.config.issuer,
        &resource.id,
        inner.config.region.as_deref(),
        inner.clock.now(),
        jti,
    );
    let (token, kid) = sign(state, TokenKind::Access, &claims)?;
    tracing::info!(target: "latch::sts", resource = %resource.id, jti = %claims.jti, exp = claims.exp.0, "access token issued");
    Ok(Signed {
        headers: vec![(REFRESH_BY_HEADER, claims.refresh_by().to_rfc3339())],
        event: AuditEvent::AccessTokenIssued {
            resource: resource.id.clone(),
            expires: claims.exp,
            fingerprint: fingerprint(&token),
            jti: claims.jti,
            kid,
        },
        token,
    })
}

/// Signs with the key in force now; returns the token and that key's id.
fn sign<C: serde::Serialize>(
    state: &AppState,
    kind: TokenKind,
    claims: &C,
) -> Result<(String, String), ApiError> {
    let inner = &state.inner;
    let ring = inner.keys.current();
    let key = ring.active();
    let token = key.sign(kind, claims, &inner.rng).map_err(|e| {
        tracing::error!(target: "latch::sts", error = %e, "signing failed");
        ApiError::Internal
    })?;
    Ok((token, key.kid().to_owned()))
}

/// The resource whose key the caller presented. Exactly one `Ocp-Apim-Subscription-Key`
/// header is accepted; its value is digested, looked up, and confirmed in constant time.
async fn authenticate(
    state: &AppState,
    headers: &HeaderMap,
    attempt: &mut Attempt,
) -> Result<Arc<Resource>, ApiError> {
    let mut values = headers.get_all(SUBSCRIPTION_KEY_HEADER).iter();
    let (Some(presented), None) = (values.next(), values.next()) else {
        return Err(ApiError::InvalidKey);
    };
    let found = state
        .inner
        .keys_auth
        .resource_for_key(presented.as_bytes())
        .await
        .map_err(store_failed)?;
    let (resource, slot) = found.ok_or(ApiError::InvalidKey)?;
    let key = format!("{}#{}", resource.id.canonical(), slot.number());
    state
        .inner
        .by_key
        .check(key.as_str(), std::time::Instant::now())
        .map_err(|retry_after| ApiError::RateLimited { retry_after })?;
    attempt.caller = Some((resource.id.clone(), slot));
    Ok(resource)
}

fn store_failed(e: latch_store::StoreError) -> ApiError {
    tracing::error!(target: "latch::sts", error = %e, "store call failed");
    ApiError::StoreUnavailable
}

/// The value of `expiredTime` (matched ignoring case, like ASP.NET's query binding); at most once.
fn expired_time(query: Option<&str>) -> Result<Option<String>, ApiError> {
    let mut found = None;
    for (name, value) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        if name.eq_ignore_ascii_case("expiredTime") {
            if found.is_some() {
                return Err(ApiError::RepeatedExpiredTime);
            }
            found = Some(value.into_owned());
        }
    }
    Ok(found)
}

async fn read_body(body: Body) -> Result<axum::body::Bytes, ApiError> {
    to_bytes(body, MAX_BODY)
        .await
        .map_err(|_| ApiError::BodyTooLarge)
}

/// The members of an `issueLimitedAccessToken` body, found by case-insensitive name. Its
/// schema, `LimitedAccessTokenRequest`, is in [`crate::openapi`].
pub(crate) struct LatRequest {
    target: Option<Value>,
    flags: Option<Value>,
}

fn parse_request(bytes: &[u8]) -> Result<LatRequest, ApiError> {
    let text = std::str::from_utf8(bytes)
        .map_err(|_| ApiError::BadJson)?
        .trim();
    if text.is_empty() || text == "null" {
        return Err(ApiError::EmptyBody);
    }
    let map: Map<String, Value> = json::parse_object(text.as_bytes()).map_err(|e| match e {
        JsonError::Invalid | JsonError::NotObject | JsonError::Duplicate => ApiError::BadJson,
    })?;
    let mut request = LatRequest {
        target: None,
        flags: None,
    };
    for (name, value) in map {
        let slot = match name.to_ascii_lowercase().as_str() {
            "targetazureresourceid" | "resourceid" => &mut request.target,
            "featureflags" => &mut request.flags,
            _ => continue,
        };
        match slot {
            None => *slot = Some(value),
            Some(previous) if *previous == value => {}
            Some(_) => {
                return Err(ApiError::BadBody(
                    "The body names the target or the feature flags twice, with different values.",
                ))
            }
        }
    }
    Ok(request)
}

impl LatRequest {
    fn target(&self) -> Result<ResourceId, ApiError> {
        match &self.target {
            Some(Value::String(s)) => {
                ResourceId::parse(s).map_err(|e| ApiError::BadTarget(Some(e)))
            }
            _ => Err(ApiError::BadTarget(None)),
        }
    }

    fn features(&self) -> Result<FeatureSet, ApiError> {
        const NOT_STRINGS: &str = "FeatureFlags must be an array of strings.";
        let items = match &self.flags {
            None | Some(Value::Null) => return Err(ApiError::NoFlags),
            Some(Value::Array(items)) if items.is_empty() => return Err(ApiError::NoFlags),
            Some(Value::Array(items)) => items,
            Some(_) => return Err(ApiError::BadBody(NOT_STRINGS)),
        };
        let names = items
            .iter()
            .map(|v| v.as_str().ok_or(ApiError::BadBody(NOT_STRINGS)))
            .collect::<Result<Vec<_>, _>>()?;
        FeatureSet::parse(names).map_err(ApiError::UnknownFlag)
    }
}
