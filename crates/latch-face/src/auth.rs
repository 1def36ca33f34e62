//! Who is calling: a subscription key, or an `issueToken` bearer token.
//!
//! * `Ocp-Apim-Subscription-Key: <key>`, or the `subscription-key` query parameter; exactly one
//!   of the two, once. The key names a resource, which must be in key mode.
//! * `Authorization: Bearer <token>` (the scheme matched ignoring case, RFC 7235), where the
//!   token is an access token from `issueToken` (`typ` `at+jwt`, checked by the verifier; a
//!   limited access token is refused here) naming a resource in token mode.
//!
//! Seed `000`: key mode and token mode are exclusive per resource, so the credential of the
//! other mode is refused, and so is a call that presents both. What passes is a
//! [`VerifiedCaller`] in the request's extensions; only this module can make one.

use std::sync::Arc;

use axum::extract::Request;
use axum::http::header::AUTHORIZATION;
use axum::http::{HeaderMap, Uri};
use axum::response::{IntoResponse, Response};
use latch_core::audit::KeySlot;
use latch_core::{Clock, ResourceId, VerifiedAccessToken};
use latch_http::{SUBSCRIPTION_KEY_HEADER, SUBSCRIPTION_KEY_PARAM};
use latch_store::check_cache::CheckCache;
use latch_store::key_auth::KeyAuth;
use latch_store::{AuthMode, Resource};

use crate::check::Check;
use crate::error::FaceError;
use crate::Verifiers;

/// How the caller proved who it is.
#[derive(Clone, Debug)]
pub enum Credential {
    /// A subscription key, in this slot.
    Key(KeySlot),
    /// An `issueToken` token.
    Bearer(Box<VerifiedAccessToken>),
}

/// Proof that a request authenticated as a resource.
#[derive(Clone, Debug)]
pub struct VerifiedCaller {
    resource: Arc<Resource>,
    credential: Credential,
}

impl VerifiedCaller {
    /// The resource the caller authenticated as.
    pub fn resource(&self) -> &Resource {
        &self.resource
    }

    /// How it authenticated.
    pub fn credential(&self) -> &Credential {
        &self.credential
    }

    /// A caller as if authenticated, for tests of the checks after this one.
    #[cfg(test)]
    pub(crate) fn for_tests(resource: Resource, credential: Credential) -> VerifiedCaller {
        VerifiedCaller {
            resource: Arc::new(resource),
            credential,
        }
    }

    /// What the rate limit counts calls by: the resource, whichever credential it used.
    pub fn limit_key(&self) -> &str {
        // Per resource, as Azure limits: two keys do not double the quota.
        self.resource.id.canonical()
    }
}

/// The authentication check.
#[derive(Clone)]
pub struct Authenticate {
    pub(crate) keys: KeyAuth,
    pub(crate) checks: CheckCache,
    pub(crate) verifiers: Verifiers,
    pub(crate) clock: Arc<dyn Clock>,
}

impl Check for Authenticate {
    async fn check(&self, req: &mut Request) -> Result<(), Response> {
        match self.authenticate(req.headers(), req.uri()).await {
            Ok(caller) => {
                req.extensions_mut().insert(caller);
                Ok(())
            }
            Err(e) => Err(e.into_response()),
        }
    }
}

impl Authenticate {
    async fn authenticate(
        &self,
        headers: &HeaderMap,
        uri: &Uri,
    ) -> Result<VerifiedCaller, FaceError> {
        let mut header_keys = headers.get_all(SUBSCRIPTION_KEY_HEADER).iter();
        let header_key = header_keys.next();
        let query_keys: Vec<String> = form_urlencoded::parse(uri.query().unwrap_or("").as_bytes())
            .filter(|(k, _)| k == SUBSCRIPTION_KEY_PARAM)
            .map(|(_, v)| v.into_owned())
            .collect();
        let mut bearers = headers.get_all(AUTHORIZATION).iter();
        let bearer = bearers.next();
        if header_keys.next().is_some() || bearers.next().is_some() || query_keys.len() > 1 {
            return Err(FaceError::InvalidKey);
        }
        let key: Option<&[u8]> = match (header_key, query_keys.first()) {
            (Some(h), None) => Some(h.as_bytes()),
            (None, Some(q)) => Some(q.as_bytes()),
            (None, None) => None,
            (Some(_), Some(_)) => return Err(FaceError::InvalidKey),
        };
        match (key, bearer) {
            (Some(key), None) => {
                let (resource, slot) = self
                    .keys
                    .resource_for_key(key)
                    .await
                    .map_err(store_failed)?
                    .ok_or(FaceError::InvalidKey)?;
                if resource.auth_mode != AuthMode::Key {
                    tracing::info!(target: "latch::face", resource = %resource.id, "key refused: the resource is in token mode");
                    return Err(FaceError::InvalidKey);
                }
                Ok(VerifiedCaller {
                    resource,
                    credential: Credential::Key(slot),
                })
            }
            (None, Some(value)) => {
                let token = bearer_token(value.as_bytes()).ok_or(FaceError::InvalidKey)?;
                let verified = self
                    .verifiers
                    .current()
                    .verify_access(token, self.clock.now())
                    .map_err(|e| {
                        tracing::info!(target: "latch::face", reason = e.reason(), "bearer token refused");
                        FaceError::InvalidKey
                    })?;
                let id: &ResourceId = &verified.claims().azure_resource_id;
                let resource = self
                    .checks
                    .resource(id)
                    .await
                    .map_err(store_failed)?
                    .ok_or(FaceError::InvalidKey)?;
                if resource.auth_mode != AuthMode::Token {
                    tracing::info!(target: "latch::face", resource = %resource.id, "bearer token refused: the resource is in key mode");
                    return Err(FaceError::InvalidKey);
                }
                // Revocations by jti, or of every token for this resource before a time, apply
                // to access tokens too.
                let claims = verified.claims();
                let revoked = self
                    .checks
                    .is_revoked(&claims.jti, &resource.id, &resource.id, claims.iat)
                    .await
                    .map_err(store_failed)?;
                if revoked {
                    tracing::info!(target: "latch::face", resource = %resource.id, "bearer token refused: revoked");
                    return Err(FaceError::InvalidKey);
                }
                Ok(VerifiedCaller {
                    resource,
                    credential: Credential::Bearer(Box::new(verified)),
                })
            }
            _ => Err(FaceError::InvalidKey),
        }
    }
}

/// The token of `Bearer <token>`, the scheme in any case, one space.
fn bearer_token(value: &[u8]) -> Option<&str> {
    let value = std::str::from_utf8(value).ok()?;
    let (scheme, token) = value.split_once(' ')?;
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

pub(crate) fn store_failed(e: latch_store::StoreError) -> FaceError {
    tracing::error!(target: "latch::face", error = %e, "store call failed");
    FaceError::StoreUnavailable
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_values() {
        assert_eq!(bearer_token(b"Bearer abc"), Some("abc"));
        assert_eq!(bearer_token(b"bearer abc"), Some("abc"));
        assert_eq!(bearer_token(b"Bearer "), None);
        assert_eq!(bearer_token(b"Basic abc"), None);
        assert_eq!(bearer_token(b"Bearerabc"), None);
        assert_eq!(bearer_token(b"\xff abc"), None);
    }
}
