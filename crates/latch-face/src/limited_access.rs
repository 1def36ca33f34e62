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
//! In code: what the check needs to know is learnt first (`LimitedAccess::findings`: the
//! header, the token's verification, its standing in the store, each only as far as it
//! matters); then `decide`, a pure function, says allowed or refused and what the usage
//! record holds; then the one record is written, and the call proceeds or is answered.
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
use latch_core::{Clock, FeatureSet, ResourceId, VerifiedLimitedAccess};
use latch_http::context::RequestId;
use latch_http::LIMITED_ACCESS_TOKEN_HEADER;
use latch_store::check_cache::CheckCache;

use crate::auth::{store_failed, Credential, VerifiedCaller};
use crate::check::Check;
use crate::error::FaceError;
use crate::operation::{FeaturePolicy, Operation, Requirement};
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
            .verify_call(req.method(), req.uri(), req.headers(), req.extensions())
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
    /// Finds the operation, learns what the check needs about the token, decides, then writes
    /// the one usage record (when a token header was presented) and answers.
    async fn verify_call(
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
        let requirement = self.policy.requirement(operation);
        let findings = self.findings(&caller, requirement, headers).await?;
        let Decision { verdict, usage } = decide(&caller, requirement, findings);
        if let Some(usage) = usage {
            let request_id = extensions.get::<RequestId>().map(|r| r.as_str().to_owned());
            self.record(&caller, operation, request_id, usage).await?;
        }
        match verdict {
            Verdict::Allowed(grant) => Ok(VerifiedFaceCall {
                caller,
                route,
                operation,
                version,
                grant,
            }),
            Verdict::Refused { missing, reason } => {
                Err(FaceError::MissingFeatures { missing, reason })
            }
        }
    }

    /// What [`decide`] needs to know of the `LimitedAccessToken` header, learnt only as far as
    /// it matters: a token is not verified when the approvals cover the operation, and its
    /// standing is looked up only when it names this resource and covers the operation.
    async fn findings(
        &self,
        caller: &VerifiedCaller,
        requirement: &Requirement,
        headers: &HeaderMap,
    ) -> Result<Findings, FaceError> {
        let covered = requirement.satisfied_by(&caller.resource().approvals);
        let token = match presented(headers) {
            Presented::None => return Ok(Findings::NoHeader),
            Presented::Malformed(reason, fingerprint) if covered => {
                return Ok(Findings::NotNeeded {
                    malformed: Some(reason),
                    fingerprint,
                })
            }
            Presented::Malformed(reason, fingerprint) => {
                return Ok(Findings::Unusable {
                    reason,
                    fingerprint,
                })
            }
            Presented::Token(token) if covered => {
                return Ok(Findings::NotNeeded {
                    malformed: None,
                    fingerprint: fingerprint(token),
                })
            }
            Presented::Token(token) => token,
        };
        let verified = match self
            .verifiers
            .current()
            .verify_limited_access(token, self.clock.now())
        {
            Ok(verified) => verified,
            Err(e) => {
                return Ok(Findings::Unusable {
                    reason: e.reason(),
                    fingerprint: fingerprint(token),
                })
            }
        };
        let standing = match token_shortfall(caller, requirement, &verified) {
            None => Some(self.standing(&verified).await?),
            Some(_) => None,
        };
        Ok(Findings::Verified {
            token: Box::new(verified),
            standing,
        })
    }

    /// Whether the token is revoked, then whether its ISV may still issue: a token stands only
    /// while its ISV may issue, so disabling an ISV stops its tokens, whatever was in flight
    /// when it was disabled (at once in this process, within `store.recheck_ms` in others).
    async fn standing(&self, token: &VerifiedLimitedAccess) -> Result<Standing, FaceError> {
        let claims = token.claims();
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
            return Ok(Standing::Revoked);
        }
        let isv_enabled = self
            .checks
            .resource(&claims.isv_resource_id)
            .await
            .map_err(store_failed)?
            .is_some_and(|isv| isv.isv_enabled);
        Ok(if isv_enabled {
            Standing::Good
        } else {
            Standing::IsvDisabled
        })
    }

    /// Writes the usage record of one call; the call neither proceeds nor is answered (but
    /// with 503) until it is committed.
    async fn record(
        &self,
        caller: &VerifiedCaller,
        operation: Operation,
        request_id: Option<String>,
        usage: Usage,
    ) -> Result<(), FaceError> {
        let resource = caller.resource().id.clone();
        let actor = match caller.credential() {
            Credential::Key(slot) => Actor::Resource {
                resource: resource.clone(),
                slot: *slot,
            },
            Credential::Bearer(token) => Actor::AccessToken {
                resource: resource.clone(),
                jti: token.claims().jti.clone(),
            },
        };
        let Usage {
            outcome,
            reason,
            token,
            fingerprint,
        } = usage;
        let draft = AuditDraft {
            time: self.clock.now(),
            request_id,
            actor,
            event: AuditEvent::LimitedAccessTokenUsed {
                resource,
                operation: operation.name().to_owned(),
                outcome: outcome.to_owned(),
                reason: reason.map(str::to_owned),
                jti: token.as_ref().map(|(jti, _)| jti.clone()),
                isv: token.map(|(_, isv)| isv),
                fingerprint,
            },
        };
        tracing::info!(target: "latch::face", %operation, outcome, reason, "limited access token presented");
        self.audit.record(draft).await.map(|_| ()).map_err(|e| {
            tracing::error!(target: "latch::face", error = %e, "usage record not committed; answering 503");
            FaceError::AuditUnavailable
        })
    }
}

/// What the check learnt of the `LimitedAccessToken` header.
enum Findings {
    /// No header.
    NoHeader,
    /// A header, not looked into: the approvals cover the operation. `malformed` says why the
    /// header is not one `Bearer <jwt>`, if it is not.
    NotNeeded {
        malformed: Option<&'static str>,
        fingerprint: String,
    },
    /// A header that is not one `Bearer <jwt>`, or a token that does not verify.
    Unusable {
        reason: &'static str,
        fingerprint: String,
    },
    /// A token that verifies, with its standing when it names this resource and covers the
    /// operation (otherwise not looked up: `None`).
    Verified {
        token: Box<VerifiedLimitedAccess>,
        standing: Option<Standing>,
    },
}

/// A verified token's standing in the store.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Standing {
    Good,
    Revoked,
    IsvDisabled,
}

/// The decision: may the call proceed, and what usage record it leaves.
struct Decision {
    verdict: Verdict,
    /// `None` when no token header was presented.
    usage: Option<Usage>,
}

enum Verdict {
    Allowed(Grant),
    Refused {
        missing: FeatureSet,
        reason: Option<&'static str>,
    },
}

/// What the usage record of a presented token says.
struct Usage {
    outcome: &'static str,
    reason: Option<&'static str>,
    /// The token's id and ISV, when it verified (and was looked into).
    token: Option<(String, ResourceId)>,
    fingerprint: String,
}

/// Why a verified token does not cover the call, before its standing is known: another
/// resource's, or without the features the approvals lack. The features to name as missing.
fn token_shortfall(
    caller: &VerifiedCaller,
    requirement: &Requirement,
    token: &VerifiedLimitedAccess,
) -> Option<(&'static str, FeatureSet)> {
    let approvals = &caller.resource().approvals;
    let claims = token.claims();
    if claims.azure_resource_id != caller.resource().id {
        return Some(("other_resource", requirement.missing(approvals)));
    }
    let granted: FeatureSet = approvals
        .iter()
        .chain(claims.feature_flags.iter())
        .collect();
    if !requirement.satisfied_by(&granted) {
        return Some(("missing_feature", requirement.missing(&granted)));
    }
    None
}

impl Decision {
    /// Refused, naming `missing`, with why the token did not help and its usage record.
    fn refused(missing: FeatureSet, reason: &'static str, usage: Usage) -> Decision {
        Decision {
            verdict: Verdict::Refused {
                missing,
                reason: Some(reason),
            },
            usage: Some(usage),
        }
    }
}

impl Usage {
    /// A usage record of a token that was not accepted, or not needed.
    fn unverified(
        outcome: &'static str,
        reason: Option<&'static str>,
        fingerprint: String,
    ) -> Usage {
        Usage {
            outcome,
            reason,
            token: None,
            fingerprint,
        }
    }
}

/// The Limited Access decision, from the caller (its resource's approvals), what the
/// operation requires, and what was learnt of the token. Pure: the store and the clock were
/// consulted by [`LimitedAccess::findings`].
fn decide(caller: &VerifiedCaller, requirement: &Requirement, findings: Findings) -> Decision {
    let approvals = &caller.resource().approvals;
    if requirement.satisfied_by(approvals) {
        let grant = if requirement.satisfied_by(&FeatureSet::new()) {
            Grant::NotNeeded
        } else {
            Grant::Approved
        };
        let usage = match findings {
            Findings::NotNeeded {
                malformed,
                fingerprint,
            } => Some(Usage::unverified("not_needed", malformed, fingerprint)),
            _ => None,
        };
        return Decision {
            verdict: Verdict::Allowed(grant),
            usage,
        };
    }
    let missing = requirement.missing(approvals);
    match findings {
        Findings::NoHeader => Decision {
            verdict: Verdict::Refused {
                missing,
                reason: None,
            },
            usage: None,
        },
        // `NotNeeded` is only found when the approvals cover the operation; refused all the
        // same should that ever not hold.
        Findings::NotNeeded {
            malformed,
            fingerprint,
        } => {
            let reason = malformed.unwrap_or("not_examined");
            let usage = Usage::unverified("refused", Some(reason), fingerprint);
            Decision::refused(missing, reason, usage)
        }
        Findings::Unusable {
            reason,
            fingerprint,
        } => {
            let usage = Usage::unverified("refused", Some(reason), fingerprint);
            Decision::refused(missing, reason, usage)
        }
        Findings::Verified { token, standing } => {
            decide_on_token(caller, requirement, token, standing)
        }
    }
}

/// The decision on a token that verifies, when the approvals do not cover the operation.
fn decide_on_token(
    caller: &VerifiedCaller,
    requirement: &Requirement,
    token: Box<VerifiedLimitedAccess>,
    standing: Option<Standing>,
) -> Decision {
    let missing = || requirement.missing(&caller.resource().approvals);
    let refusal = match (token_shortfall(caller, requirement, &token), standing) {
        (Some(shortfall), _) => Some(shortfall),
        (None, Some(Standing::Good)) => None,
        (None, Some(Standing::Revoked)) => Some(("revoked", missing())),
        (None, Some(Standing::IsvDisabled)) => Some(("isv_disabled", missing())),
        // The standing is looked up whenever there is no shortfall; refused all the same
        // should that ever not hold.
        (None, None) => Some(("standing_unknown", missing())),
    };
    let claims = token.claims();
    let usage = |outcome, reason| Usage {
        outcome,
        reason,
        token: Some((claims.jti.clone(), claims.isv_resource_id.clone())),
        fingerprint: token.fingerprint().to_owned(),
    };
    match refusal {
        Some((reason, missing)) => {
            Decision::refused(missing, reason, usage("refused", Some(reason)))
        }
        None => {
            let usage = usage("accepted", None);
            Decision {
                verdict: Verdict::Allowed(Grant::Token(token)),
                usage: Some(usage),
            }
        }
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

#[cfg(test)]
mod tests;
