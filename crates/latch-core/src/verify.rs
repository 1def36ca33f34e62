//! The token verifier (RFC 7515, 7518, 7519, 8725).
//!
//! [`Verifier::verify_limited_access`] and [`Verifier::verify_access`] are the only ways to
//! obtain a [`VerifiedLimitedAccess`] or a [`VerifiedAccessToken`]; both types have a private
//! field, so code that requires them cannot be reached with an unchecked token.
//!
//! The order of checks, each failure final (RFC 8725 §3.3):
//!
//! 1. the strict compact decoding of [`crate::jws`] (size, alphabet, base64url, JSON objects
//!    without duplicate names, header parameters);
//! 2. `alg` is exactly `ES256` (an allow-list of one; no case folding, so `none`, `NONE`,
//!    `es256` and `HS256` all fail alike);
//! 3. `typ` is exactly the one of the kind asked for;
//! 4. `kid` names a key of this issuer's key set (it is only ever compared with our own kids);
//! 5. the signature is exactly 64 bytes, `r` and `s` are not zero, and it verifies (*ring*
//!    also refuses `r` or `s` ≥ n);
//! 6. only then is the payload parsed: a JSON object, no duplicate names, every required claim
//!    present with its type (times are integers, never strings);
//! 7. `iss` and `aud` match exactly; `now < exp + leeway`; `now ≥ nbf − leeway`;
//!    `iat ≤ now + leeway`; `exp − iat` is at most the kind's longest lifetime.
//!
//! Timing: failures return as soon as they are found, so a failure's time tells which step
//! failed; none of the steps before the signature check involves a secret, and the signature
//! check itself is *ring*'s.

use ring::signature::{UnparsedPublicKey, ECDSA_P256_SHA256_FIXED};
use serde::de::DeserializeOwned;

use crate::claims::{AccessClaims, LimitedAccessClaims, TimeClaims, TokenKind};
use crate::clock::UnixTime;
use crate::jws;
use crate::signing::{PublicKey, ALG};

/// The default clock leeway, in seconds.
pub const DEFAULT_LEEWAY_SECS: i64 = 30;
/// The largest leeway a verifier may be configured with (RFC 8725 advises "a few minutes" at
/// most; we keep it to one).
pub const MAX_LEEWAY_SECS: i64 = 60;

/// Why a token was refused. [`TokenError::reason`] is a stable code for logs and audit records.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Longer than the size bounds.
    #[error("the token is too large")]
    TooLarge,
    /// Not three non-empty segments of the base64url alphabet.
    #[error("the token is not a compact JWS")]
    Malformed,
    /// A segment is not canonical unpadded base64url.
    #[error("the token is not valid base64url")]
    Base64,
    /// Header or payload is not a UTF-8 JSON object of the expected shape.
    #[error("the token's header or claims are not valid JSON of the expected shape")]
    Json,
    /// A JSON object has a member name twice.
    #[error("the token has a duplicate JSON member name")]
    DuplicateMember,
    /// The header has `jku`, `jwk`, `x5u`, `x5c`, `x5t`, `crit` or a JWE parameter.
    #[error("the token's header has a parameter that is not accepted")]
    HeaderParameterRefused,
    /// The header has a parameter we do not know.
    #[error("the token's header has an unknown parameter")]
    HeaderParameterUnknown,
    /// The header lacks `alg`, `typ` or `kid`.
    #[error("the token's header lacks alg, typ or kid")]
    HeaderIncomplete,
    /// `alg` is not exactly `ES256`.
    #[error("the token's algorithm is not allowed")]
    AlgorithmNotAllowed,
    /// `typ` is not the one of the expected kind.
    #[error("the token is of another type")]
    WrongType,
    /// `kid` names no key of this issuer.
    #[error("the token was signed by an unknown key")]
    UnknownKey,
    /// The signature is not 64 bytes.
    #[error("the token's signature has the wrong length")]
    SignatureLength,
    /// `r` or `s` is zero.
    #[error("the token's signature is degenerate")]
    SignatureZero,
    /// The signature does not verify.
    #[error("the token's signature does not verify")]
    BadSignature,
    /// A required claim is missing or has the wrong type.
    #[error("the token's claims are missing or malformed")]
    Claims,
    /// `iss` is not this issuer.
    #[error("the token is from another issuer")]
    WrongIssuer,
    /// `aud` is not the expected audience.
    #[error("the token is for another audience")]
    WrongAudience,
    /// `exp` has passed.
    #[error("the token has expired")]
    Expired,
    /// `nbf` is in the future.
    #[error("the token is not valid yet")]
    NotYetValid,
    /// `iat` is in the future.
    #[error("the token was issued in the future")]
    IssuedInFuture,
    /// `exp − iat` exceeds the kind's longest lifetime.
    #[error("the token's lifetime is longer than allowed")]
    LifetimeTooLong,
}

impl TokenError {
    /// A stable, short code for logs and audit records.
    pub const fn reason(self) -> &'static str {
        match self {
            TokenError::TooLarge => "too_large",
            TokenError::Malformed => "malformed",
            TokenError::Base64 => "bad_base64",
            TokenError::Json => "bad_json",
            TokenError::DuplicateMember => "duplicate_member",
            TokenError::HeaderParameterRefused => "header_parameter_refused",
            TokenError::HeaderParameterUnknown => "header_parameter_unknown",
            TokenError::HeaderIncomplete => "header_incomplete",
            TokenError::AlgorithmNotAllowed => "algorithm_not_allowed",
            TokenError::WrongType => "wrong_type",
            TokenError::UnknownKey => "unknown_key",
            TokenError::SignatureLength => "signature_length",
            TokenError::SignatureZero => "signature_zero",
            TokenError::BadSignature => "bad_signature",
            TokenError::Claims => "bad_claims",
            TokenError::WrongIssuer => "wrong_issuer",
            TokenError::WrongAudience => "wrong_audience",
            TokenError::Expired => "expired",
            TokenError::NotYetValid => "not_yet_valid",
            TokenError::IssuedInFuture => "issued_in_future",
            TokenError::LifetimeTooLong => "lifetime_too_long",
        }
    }
}

/// A limited access token whose signature and claims have been checked at one instant.
///
/// Whether it names the right resource and carries the right features is for the caller (the
/// Face front) to decide; see [`VerifiedLimitedAccess::claims`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifiedLimitedAccess {
    claims: LimitedAccessClaims,
    kid: String,
    fingerprint: String,
}

impl VerifiedLimitedAccess {
    /// The checked claims.
    pub fn claims(&self) -> &LimitedAccessClaims {
        &self.claims
    }

    /// The key that signed it.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The token's fingerprint (see [`fingerprint`]).
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }
}

/// An access token (`issueToken`) whose signature and claims have been checked at one instant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifiedAccessToken {
    claims: AccessClaims,
    kid: String,
    fingerprint: String,
}

impl VerifiedAccessToken {
    /// The checked claims.
    pub fn claims(&self) -> &AccessClaims {
        &self.claims
    }

    /// The key that signed it.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The token's fingerprint (see [`fingerprint`]).
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }
}

/// A token's fingerprint for audit records: the first 128 bits of its SHA-256, base64url.
///
/// It names a token without revealing it: the token cannot be recovered from it.
pub fn fingerprint(token: &str) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, token.as_bytes());
    jws::b64url(&digest.as_ref()[..16])
}

/// The fingerprint of a token whose SHA-256 is `digest`.
fn fingerprint_of(digest: &[u8; 32]) -> String {
    jws::b64url(&digest[..16])
}

/// Limited access tokens this verifier has verified: how many it remembers at most.
pub const VERIFIED_MEMORY: usize = 10_000;

/// Verifies the tokens of one issuer against its key set.
///
/// A limited access token that verified once is remembered (by the SHA-256 of its exact text,
/// for the life of this verifier, whose key set never changes): the next time it is presented,
/// only its time claims are checked again, at the new instant. A device reuses its token for
/// every call until it expires, so the signature is checked once, not on every call.
/// Revocation and everything else about the call are checked by the caller every time.
#[derive(Clone, Debug)]
pub struct Verifier {
    issuer: String,
    keys: Vec<PublicKey>,
    leeway: i64,
    verified: std::sync::Arc<
        std::sync::Mutex<std::collections::HashMap<[u8; 32], VerifiedLimitedAccess>>,
    >,
}

impl Verifier {
    /// A verifier for `issuer`, trusting exactly `keys`, with a leeway of `leeway_secs`
    /// (clamped to 0..=[`MAX_LEEWAY_SECS`]).
    pub fn new(issuer: impl Into<String>, keys: Vec<PublicKey>, leeway_secs: i64) -> Self {
        Verifier {
            issuer: issuer.into(),
            keys,
            leeway: leeway_secs.clamp(0, MAX_LEEWAY_SECS),
            verified: Default::default(),
        }
    }

    /// The issuer this verifier trusts.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// The trusted keys.
    pub fn keys(&self) -> &[PublicKey] {
        &self.keys
    }

    /// Verifies a limited access token at `now`.
    pub fn verify_limited_access(
        &self,
        token: &str,
        now: UnixTime,
    ) -> Result<VerifiedLimitedAccess, TokenError> {
        let digest: [u8; 32] = ring::digest::digest(&ring::digest::SHA256, token.as_bytes())
            .as_ref()
            .try_into()
            .map_err(|_| TokenError::Claims)?;
        let remembered = self
            .verified
            .lock()
            .ok()
            .and_then(|m| m.get(&digest).cloned());
        if let Some(verified) = remembered {
            self.check_times(&verified.claims, TokenKind::LimitedAccess, now)?;
            return Ok(verified);
        }
        let verified = self.verify_limited_access_fully(token, now, fingerprint_of(&digest))?;
        if let Ok(mut memory) = self.verified.lock() {
            if memory.len() >= VERIFIED_MEMORY {
                memory.clear();
            }
            memory.insert(digest, verified.clone());
        }
        Ok(verified)
    }

    fn verify_limited_access_fully(
        &self,
        token: &str,
        now: UnixTime,
        fingerprint: String,
    ) -> Result<VerifiedLimitedAccess, TokenError> {
        let (claims, kid): (LimitedAccessClaims, _) =
            self.verify(token, TokenKind::LimitedAccess, now)?;
        // `sub` and `azure-resource-id` are two spellings of one fact; refuse a token where
        // they disagree rather than pick one.
        if claims.sub != claims.azure_resource_id.as_str()
            || claims.feature_flags.is_empty()
            || claims.jti.is_empty()
        {
            return Err(TokenError::Claims);
        }
        Ok(VerifiedLimitedAccess {
            claims,
            kid,
            fingerprint,
        })
    }

    /// Verifies an access token (`issueToken`) at `now`.
    pub fn verify_access(
        &self,
        token: &str,
        now: UnixTime,
    ) -> Result<VerifiedAccessToken, TokenError> {
        let (claims, kid): (AccessClaims, _) = self.verify(token, TokenKind::Access, now)?;
        if claims.sub != claims.azure_resource_id.as_str() || claims.jti.is_empty() {
            return Err(TokenError::Claims);
        }
        Ok(VerifiedAccessToken {
            claims,
            kid,
            fingerprint: fingerprint(token),
        })
    }

    fn verify<C: DeserializeOwned + TimeClaims>(
        &self,
        token: &str,
        kind: TokenKind,
        now: UnixTime,
    ) -> Result<(C, String), TokenError> {
        let decoded = jws::decode(token)?;
        if decoded.header.alg != ALG {
            return Err(TokenError::AlgorithmNotAllowed);
        }
        if decoded.header.typ != kind.typ() {
            return Err(TokenError::WrongType);
        }
        let key = self
            .keys
            .iter()
            .find(|k| k.kid() == decoded.header.kid)
            .ok_or(TokenError::UnknownKey)?;
        let sig = &decoded.signature;
        if sig.len() != 64 {
            return Err(TokenError::SignatureLength);
        }
        if sig[..32].iter().all(|&b| b == 0) || sig[32..].iter().all(|&b| b == 0) {
            return Err(TokenError::SignatureZero);
        }
        UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, key.point())
            .verify(decoded.signing_input.as_bytes(), sig)
            .map_err(|_| TokenError::BadSignature)?;

        let object = jws::parse_object(&decoded.payload)?;
        let claims: C = serde_json::from_value(serde_json::Value::Object(object))
            .map_err(|_| TokenError::Claims)?;
        if claims.issuer() != self.issuer {
            return Err(TokenError::WrongIssuer);
        }
        if claims.audience() != kind.audience() {
            return Err(TokenError::WrongAudience);
        }
        self.check_times(&claims, kind, now)?;
        Ok((claims, decoded.header.kid))
    }

    /// The checks that depend on the instant: expiry, not-before, issued-at, lifetime.
    fn check_times<C: TimeClaims>(
        &self,
        claims: &C,
        kind: TokenKind,
        now: UnixTime,
    ) -> Result<(), TokenError> {
        if now >= claims.expires().plus(self.leeway) {
            return Err(TokenError::Expired);
        }
        if now < claims.not_before().plus(-self.leeway) {
            return Err(TokenError::NotYetValid);
        }
        if claims.issued_at() > now.plus(self.leeway) {
            return Err(TokenError::IssuedInFuture);
        }
        if claims.expires().0.saturating_sub(claims.issued_at().0) > kind.max_lifetime_secs() {
            return Err(TokenError::LifetimeTooLong);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
