//! The claims of the two token kinds, and what tells them apart.
//!
//! | kind | `typ` | `aud` | longest life |
//! |---|---|---|---|
//! | limited access token (`issueLimitedAccessToken`) | `lat+jwt` | [`LAT_AUDIENCE`] | 86400 s |
//! | access token (`issueToken`, used as `Authorization: Bearer`) | `at+jwt` | [`ACCESS_AUDIENCE`] | 600 s |
//!
//! The verifier checks both `typ` and `aud` against the kind it was asked for, so one kind is
//! never accepted in the other's place (RFC 8725 §3.11–3.12). Claim names follow the ones Azure
//! uses in its issueToken JWTs (`azure-resource-id`, `subscription-id`, `region`) and add the
//! registered `iat`, `nbf`, `jti`, the granted `featureFlags` and the issuing ISV's
//! `isv-resource-id`. Times are whole seconds ([`UnixTime`]); a string or a fraction is refused.

use ring::rand::SecureRandom;
use serde::{Deserialize, Serialize};

use crate::clock::UnixTime;
use crate::feature::FeatureSet;
use crate::jws::b64url;
use crate::lifetime::Lifetime;
use crate::resource_id::ResourceId;

/// `aud` of limited access tokens.
pub const LAT_AUDIENCE: &str = "urn:ms.cognitiveservices:limitedaccess";
/// `aud` of access tokens.
pub const ACCESS_AUDIENCE: &str = "urn:ms.cognitiveservices";
/// How long an access token lives, in seconds (Azure: 10 minutes).
pub const ACCESS_TOKEN_SECS: i64 = 600;
/// When a holder of an access token should fetch a new one, in seconds after issue (Azure
/// advises refreshing after 9 minutes).
pub const ACCESS_TOKEN_REFRESH_SECS: i64 = 540;

/// Which of the two token kinds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenKind {
    /// A limited access token.
    LimitedAccess,
    /// An access token from `issueToken`.
    Access,
}

impl TokenKind {
    /// The JOSE `typ` header value.
    pub const fn typ(self) -> &'static str {
        match self {
            TokenKind::LimitedAccess => "lat+jwt",
            TokenKind::Access => "at+jwt",
        }
    }

    /// The `aud` claim value.
    pub const fn audience(self) -> &'static str {
        match self {
            TokenKind::LimitedAccess => LAT_AUDIENCE,
            TokenKind::Access => ACCESS_AUDIENCE,
        }
    }

    /// The longest `exp - iat` a valid token of this kind may have.
    pub const fn max_lifetime_secs(self) -> i64 {
        match self {
            TokenKind::LimitedAccess => Lifetime::MAX_SECS as i64,
            TokenKind::Access => ACCESS_TOKEN_SECS,
        }
    }
}

/// The time claims every token carries; the verifier checks them for both kinds.
pub trait TimeClaims {
    /// `iss`.
    fn issuer(&self) -> &str;
    /// `aud`.
    fn audience(&self) -> &str;
    /// `iat`.
    fn issued_at(&self) -> UnixTime;
    /// `nbf`.
    fn not_before(&self) -> UnixTime;
    /// `exp`.
    fn expires(&self) -> UnixTime;
}

/// A fresh token id: 128 random bits, base64url.
pub fn new_jti(rng: &dyn SecureRandom) -> Result<String, ring::error::Unspecified> {
    let mut bytes = [0u8; 16];
    rng.fill(&mut bytes)?;
    Ok(b64url(bytes))
}

/// The claims of a limited access token.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LimitedAccessClaims {
    /// Issuer.
    pub iss: String,
    /// Subject: the target resource id, as the ISV spelled it (the same as `azure-resource-id`).
    pub sub: String,
    /// Audience: [`LAT_AUDIENCE`].
    pub aud: String,
    /// Issued at.
    pub iat: UnixTime,
    /// Not before.
    pub nbf: UnixTime,
    /// Expires.
    pub exp: UnixTime,
    /// Token id.
    pub jti: String,
    /// The client resource the token is for.
    #[serde(rename = "azure-resource-id")]
    pub azure_resource_id: ResourceId,
    /// The client resource's subscription.
    #[serde(rename = "subscription-id")]
    pub subscription_id: String,
    /// The ISV resource that issued the token.
    #[serde(rename = "isv-resource-id")]
    pub isv_resource_id: ResourceId,
    /// The granted features.
    #[serde(rename = "featureFlags")]
    pub feature_flags: FeatureSet,
    /// The region of the issuing service, when configured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
}

/// What an ISV asked for, once checked.
#[derive(Clone, Debug)]
pub struct LimitedAccessGrant<'a> {
    /// The issuer name of this service.
    pub issuer: &'a str,
    /// The ISV's resource.
    pub isv: &'a ResourceId,
    /// The client's resource.
    pub target: &'a ResourceId,
    /// The features, already checked against the ISV's grants.
    pub features: &'a FeatureSet,
    /// The lifetime, already bounded.
    pub lifetime: Lifetime,
    /// The region claim, if any.
    pub region: Option<&'a str>,
}

impl LimitedAccessClaims {
    /// The claims of a token issued at `now` with id `jti`.
    pub fn new(grant: &LimitedAccessGrant<'_>, now: UnixTime, jti: String) -> Self {
        LimitedAccessClaims {
            iss: grant.issuer.to_owned(),
            sub: grant.target.as_str().to_owned(),
            aud: LAT_AUDIENCE.to_owned(),
            iat: now,
            nbf: now,
            exp: now.plus(i64::from(grant.lifetime.as_secs())),
            jti,
            azure_resource_id: grant.target.clone(),
            subscription_id: grant.target.subscription_id().to_owned(),
            isv_resource_id: grant.isv.clone(),
            feature_flags: grant.features.clone(),
            region: grant.region.map(str::to_owned),
        }
    }
}

/// The claims of an access token (`issueToken`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessClaims {
    /// Issuer.
    pub iss: String,
    /// Subject: the resource id the token stands for.
    pub sub: String,
    /// Audience: [`ACCESS_AUDIENCE`].
    pub aud: String,
    /// Issued at.
    pub iat: UnixTime,
    /// Not before.
    pub nbf: UnixTime,
    /// Expires.
    pub exp: UnixTime,
    /// Token id.
    pub jti: String,
    /// The resource the token stands for.
    #[serde(rename = "azure-resource-id")]
    pub azure_resource_id: ResourceId,
    /// Its subscription.
    #[serde(rename = "subscription-id")]
    pub subscription_id: String,
    /// The region of the issuing service, when configured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
}

impl AccessClaims {
    /// The claims of an access token for `resource`, issued at `now`, valid 10 minutes.
    pub fn new(
        issuer: &str,
        resource: &ResourceId,
        region: Option<&str>,
        now: UnixTime,
        jti: String,
    ) -> Self {
        AccessClaims {
            iss: issuer.to_owned(),
            sub: resource.as_str().to_owned(),
            aud: ACCESS_AUDIENCE.to_owned(),
            iat: now,
            nbf: now,
            exp: now.plus(ACCESS_TOKEN_SECS),
            jti,
            azure_resource_id: resource.clone(),
            subscription_id: resource.subscription_id().to_owned(),
            region: region.map(str::to_owned),
        }
    }

    /// When the holder should fetch a new token.
    pub fn refresh_by(&self) -> UnixTime {
        self.iat.plus(ACCESS_TOKEN_REFRESH_SECS)
    }
}

macro_rules! time_claims {
    ($t:ty) => {
        impl TimeClaims for $t {
            fn issuer(&self) -> &str {
                &self.iss
            }
            fn audience(&self) -> &str {
                &self.aud
            }
            fn issued_at(&self) -> UnixTime {
                self.iat
            }
            fn not_before(&self) -> UnixTime {
                self.nbf
            }
            fn expires(&self) -> UnixTime {
                self.exp
            }
        }
    };
}

time_claims!(LimitedAccessClaims);
time_claims!(AccessClaims);
