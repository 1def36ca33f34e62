//! The Limited Access check: may this caller run this operation?
//!
//! 1. The operation's requirement comes from the [`FeaturePolicy`]. A resource's direct
//!    approvals may satisfy it on their own; then no token is needed.
//! 2. Otherwise the call needs exactly one header `LimitedAccessToken: Bearer <jwt>` (the
//!    scheme exactly `Bearer`, as Azure documents it). The token must verify as a limited
//!    access token (an `issueToken` token is refused: other `typ` and `aud`), name the
//!    caller's resource (canonical comparison), carry the features the approvals lack, be
//!    valid now (the verifier's leeway), not be revoked, and come from an ISV that may still
//!    issue.
//! 3. Every call that presented a token, accepted or refused, is an audit record with the
//!    reason, committed before the call proceeds or is answered. If the record cannot be
//!    written the answer is 503 and the call does not proceed.
//!
//! What passes is a [`VerifiedFaceCall`] in the request's extensions; the route handlers
//! require it, and only this module can make one.

use std::sync::Arc;

use axum::extract::Request;
use axum::http::{Extensions, HeaderMap, Method, Uri};
use axum::response::{IntoResponse, Response};
use latch_audit::writer::AuditLog;
use latch_core::audit::{Actor, AuditDraft, AuditEvent};
use latch_core::verify::fingerprint;
use latch_core::{Clock, FeatureSet, VerifiedLimitedAccess};
use latch_http::context::RequestId;
use latch_http::LIMITED_ACCESS_TOKEN_HEADER;
use latch_store::check_cache::CheckCache;

use crate::auth::{store_failed, Credential, VerifiedCaller};
use crate::check::Check;
use crate::error::FaceError;
use crate::operation::{FeaturePolicy, Operation};
use crate::routes::{self, Route};
use crate::Verifiers;

/// Why the call may proceed.
#[derive(Clone, Debug)]
pub enum Grant {
    /// The operation needs no feature.
    NotNeeded,
    /// The resource's direct approvals cover it.
    Approved,
    /// A limited access token covers it.
    Token(Box<VerifiedLimitedAccess>),
}

/// Proof that a call authenticated and may run its operation.
#[derive(Clone, Debug)]
pub struct VerifiedFaceCall {
    caller: VerifiedCaller,
    route: &'static Route,
    operation: Operation,
    version: &'static str,
    grant: Grant,
}

impl VerifiedFaceCall {
    /// Who is calling.
    pub fn caller(&self) -> &VerifiedCaller {
        &self.caller
    }

    /// The route it came by.
    pub fn route(&self) -> &'static Route {
        self.route
    }

    /// What it runs.
    pub fn operation(&self) -> Operation {
        self.operation
    }

    /// The API version of the path.
    pub fn version(&self) -> &'static str {
        self.version
    }

    /// Why it may.
    pub fn grant(&self) -> &Grant {
        &self.grant
    }
}

/// The check.
#[derive(Clone)]
pub struct LimitedAccess {
    pub(crate) policy: Arc<FeaturePolicy>,
    pub(crate) verifiers: Verifiers,
    pub(crate) checks: CheckCache,
    pub(crate) audit: AuditLog,
    pub(crate) clock: Arc<dyn Clock>,
}

/// What the `LimitedAccessToken` header held.
enum Presented<'a> {
    None,
    Token(&'a str),
    Malformed(&'static str, String),
}

impl Check for LimitedAccess {
    async fn check(&self, req: &mut Request) -> Result<(), Response> {
        match self
            .decide(req.method(), req.uri(), req.headers(), req.extensions())
            .await
        {
            Ok(call) => {
                req.extensions_mut().insert(call);
                Ok(())
            }
            Err(e) => Err(e.into_response()),
        }
    }
}

impl LimitedAccess {
    async fn decide(
        &self,
        method: &Method,
        uri: &Uri,
        headers: &HeaderMap,
        extensions: &Extensions,
    ) -> Result<VerifiedFaceCall, FaceError> {
        let caller = extensions
            .get::<VerifiedCaller>()
            .cloned()
            .ok_or(FaceError::InvalidKey)?;
        let (route, operation, version) =
            routes::classify(method, uri.path(), uri.query()).ok_or(FaceError::NotFound)?;
        let request_id = extensions.get::<RequestId>().map(|r| r.as_str().to_owned());
        let presented = presented(headers);
        let requirement = self.policy.requirement(operation);
        let approvals = &caller.resource().approvals;
        let usage = Usage {
            this: self,
            caller: &caller,
            operation,
            request_id,
        };
        let call = |grant| VerifiedFaceCall {
            caller: caller.clone(),
            route,
            operation,
            version,
            grant,
        };

        if requirement.satisfied_by(approvals) {
            let grant = if requirement.satisfied_by(&FeatureSet::new()) {
                Grant::NotNeeded
            } else {
                Grant::Approved
            };
            match presented {
                Presented::Token(token) => {
                    usage
                        .record("not_needed", None, None, fingerprint(token))
                        .await?
                }
                Presented::Malformed(reason, fp) => {
                    usage.record("not_needed", Some(reason), None, fp).await?
                }
                Presented::None => {}
            }
            return Ok(call(grant));
        }
        let refuse = |missing: FeatureSet, reason: &'static str| FaceError::MissingFeatures {
            missing,
            reason: Some(reason),
        };
        let token = match presented {
            Presented::None => {
                return Err(FaceError::MissingFeatures {
                    missing: requirement.missing(approvals),
                    reason: None,
                })
            }
            Presented::Malformed(reason, fp) => {
                usage.record("refused", Some(reason), None, fp).await?;
                return Err(refuse(requirement.missing(approvals), reason));
            }
            Presented::Token(token) => token,
        };
        let verified = match self
            .verifiers
            .current()
            .verify_limited_access(token, self.clock.now())
        {
            Ok(v) => v,
            Err(e) => {
                usage
                    .record("refused", Some(e.reason()), None, fingerprint(token))
                    .await?;
                return Err(refuse(requirement.missing(approvals), e.reason()));
            }
        };
        // The verifier computed the token's fingerprint already.
        let fp = verified.fingerprint().to_owned();
        let claims = verified.claims();
        if claims.azure_resource_id != caller.resource().id {
            usage
                .record("refused", Some("other_resource"), Some(&verified), fp)
                .await?;
            return Err(refuse(requirement.missing(approvals), "other_resource"));
        }
        let granted: FeatureSet = approvals
            .iter()
            .chain(claims.feature_flags.iter())
            .collect();
        if !requirement.satisfied_by(&granted) {
            usage
                .record("refused", Some("missing_feature"), Some(&verified), fp)
                .await?;
            return Err(refuse(requirement.missing(&granted), "missing_feature"));
        }
        let revoked = self
            .checks
            .is_revoked(
                &claims.jti,
                &claims.isv_resource_id,
                &claims.azure_resource_id,
                claims.iat,
            )
            .await
            .map_err(store_failed)?;
        if revoked {
            usage
                .record("refused", Some("revoked"), Some(&verified), fp)
                .await?;
            return Err(refuse(requirement.missing(approvals), "revoked"));
        }
        // A token stands only while its ISV may issue: disabling an ISV stops its tokens,
        // whatever was in flight when it was disabled (at once in this process, within
        // `store.recheck_ms` in others).
        let isv_enabled = self
            .checks
            .resource(&claims.isv_resource_id)
            .await
            .map_err(store_failed)?
            .is_some_and(|isv| isv.isv_enabled);
        if !isv_enabled {
            usage
                .record("refused", Some("isv_disabled"), Some(&verified), fp)
                .await?;
            return Err(refuse(requirement.missing(approvals), "isv_disabled"));
        }
        usage.record("accepted", None, Some(&verified), fp).await?;
        Ok(call(Grant::Token(Box::new(verified))))
    }
}

/// The `LimitedAccessToken` header: absent, one `Bearer <jwt>`, or something else.
fn presented(headers: &HeaderMap) -> Presented<'_> {
    let mut values = headers.get_all(LIMITED_ACCESS_TOKEN_HEADER).iter();
    let Some(first) = values.next() else {
        return Presented::None;
    };
    if let Some(second) = values.next() {
        return Presented::Malformed(
            "duplicate_header",
            fingerprint_bytes(&[first.as_bytes(), second.as_bytes()]),
        );
    }
    match first.to_str().ok().and_then(|v| v.strip_prefix("Bearer ")) {
        Some(token) if !token.is_empty() => Presented::Token(token),
        _ => Presented::Malformed("malformed_header", fingerprint_bytes(&[first.as_bytes()])),
    }
}

fn fingerprint_bytes(parts: &[&[u8]]) -> String {
    let joined: Vec<u8> = parts.join(&b'\n');
    fingerprint(&String::from_utf8_lossy(&joined))
}

/// Writes the usage record of one call.
struct Usage<'a> {
    this: &'a LimitedAccess,
    caller: &'a VerifiedCaller,
    operation: Operation,
    request_id: Option<String>,
}

impl Usage<'_> {
    async fn record(
        &self,
        outcome: &str,
        reason: Option<&str>,
        verified: Option<&VerifiedLimitedAccess>,
        fingerprint: String,
    ) -> Result<(), FaceError> {
        let resource = self.caller.resource().id.clone();
        let actor = match self.caller.credential() {
            Credential::Key(slot) => Actor::Resource {
                resource: resource.clone(),
                slot: *slot,
            },
            Credential::Bearer(token) => Actor::AccessToken {
                resource: resource.clone(),
                jti: token.claims().jti.clone(),
            },
        };
        let draft = AuditDraft {
            time: self.this.clock.now(),
            request_id: self.request_id.clone(),
            actor,
            event: AuditEvent::LimitedAccessTokenUsed {
                resource,
                operation: self.operation.name().to_owned(),
                outcome: outcome.to_owned(),
                reason: reason.map(str::to_owned),
                jti: verified.map(|v| v.claims().jti.clone()),
                isv: verified.map(|v| v.claims().isv_resource_id.clone()),
                fingerprint,
            },
        };
        tracing::info!(target: "latch::face", operation = %self.operation, outcome, reason, "limited access token presented");
        self.this.audit.record(draft).await.map(|_| ()).map_err(|e| {
            tracing::error!(target: "latch::face", error = %e, "usage record not committed; answering 503");
            FaceError::AuditUnavailable
        })
    }
}
