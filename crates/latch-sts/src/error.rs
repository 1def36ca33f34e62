//! Every way a token request can fail, and the one place where each becomes an HTTP answer.
//!
//! The messages quoted from Azure are copied exactly (`docs/wire.md` §3.1); where a
//! message is ours, it names the problem. The match is exhaustive, so a new variant cannot
//! become a response by accident. The internal cause of a 5xx is logged, never sent.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use latch_core::feature::UnknownFeature;
use latch_core::lifetime::LifetimeError;
use latch_core::resource_id::ResourceIdError;
use latch_core::FeatureSet;
use latch_http::{error_body, error_response, INVALID_KEY_MESSAGE};

/// A refused request.
#[derive(Debug)]
pub enum ApiError {
    /// No key, several keys, or a key of no resource.
    InvalidKey,
    /// Over the key's rate limit; wait this many seconds.
    RateLimited {
        /// Whole seconds until a call is allowed again.
        retry_after: u64,
    },
    /// The body is empty or `null`.
    EmptyBody,
    /// The body is larger than the limit.
    BodyTooLarge,
    /// The body is not one JSON object.
    BadJson,
    /// The body is JSON of the wrong shape (the message says how).
    BadBody(&'static str),
    /// The target resource id is missing, not a string, or malformed.
    BadTarget(Option<ResourceIdError>),
    /// `featureFlags` is missing, `null` or empty.
    NoFlags,
    /// A flag is not a known feature.
    UnknownFlag(UnknownFeature),
    /// `expiredTime` is not a number of seconds in range.
    BadExpiredTime(LifetimeError),
    /// `expiredTime` appears more than once.
    RepeatedExpiredTime,
    /// The caller's resource may not issue limited access tokens.
    IsvNotEnabled,
    /// The caller asked for features it was not granted.
    NotGranted(FeatureSet),
    /// The ISV has blocked issuance for this client.
    ClientBlocked,
    /// The audit log could not be written: nothing is issued.
    AuditUnavailable,
    /// The store failed.
    StoreUnavailable,
    /// Signing failed.
    Internal,
    /// No such route.
    NotFound,
    /// The route exists, not with this method.
    MethodNotAllowed,
}

impl ApiError {
    /// A stable code for audit records and logs.
    pub fn reason(&self) -> &'static str {
        match self {
            ApiError::InvalidKey => "invalid_key",
            ApiError::RateLimited { .. } => "rate_limited",
            ApiError::EmptyBody => "empty_body",
            ApiError::BodyTooLarge => "body_too_large",
            ApiError::BadJson => "bad_json",
            ApiError::BadBody(_) => "bad_body",
            ApiError::BadTarget(_) => "bad_target",
            ApiError::NoFlags => "no_flags",
            ApiError::UnknownFlag(_) => "unknown_flag",
            ApiError::BadExpiredTime(_) | ApiError::RepeatedExpiredTime => "bad_expired_time",
            ApiError::IsvNotEnabled => "isv_not_enabled",
            ApiError::NotGranted(_) => "flag_not_granted",
            ApiError::ClientBlocked => "client_blocked",
            ApiError::AuditUnavailable => "audit_unavailable",
            ApiError::StoreUnavailable => "store_unavailable",
            ApiError::Internal => "internal",
            ApiError::NotFound => "not_found",
            ApiError::MethodNotAllowed => "method_not_allowed",
        }
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        self.parts().0
    }

    fn parts(&self) -> (StatusCode, &'static str, String) {
        const BAD: &str = "BadArgument";
        let bad = |m: String| (StatusCode::BAD_REQUEST, BAD, m);
        match self {
            ApiError::InvalidKey => (StatusCode::UNAUTHORIZED, "401", INVALID_KEY_MESSAGE.into()),
            ApiError::RateLimited { retry_after } => (
                StatusCode::TOO_MANY_REQUESTS,
                "429",
                format!("Rate limit is exceeded. Try again in {retry_after} seconds."),
            ),
            ApiError::EmptyBody => bad("Request body cannot be null or empty.".into()),
            ApiError::BodyTooLarge => (
                StatusCode::PAYLOAD_TOO_LARGE,
                BAD,
                format!("Request body is larger than {} bytes.", crate::MAX_BODY),
            ),
            ApiError::BadJson => {
                bad("Request body must be a JSON object without duplicate member names.".into())
            }
            ApiError::BadBody(m) => bad((*m).into()),
            ApiError::BadTarget(None) => bad(BAD_TARGET.into()),
            ApiError::BadTarget(Some(e)) => {
                bad(format!("{BAD_TARGET} {}", sentence(&e.to_string())))
            }
            ApiError::NoFlags => bad("FeatureFlags must not be null or empty.".into()),
            ApiError::UnknownFlag(e) => bad(sentence(&e.to_string())),
            ApiError::BadExpiredTime(e) => bad(format!("{e}.")),
            ApiError::RepeatedExpiredTime => bad("expiredTime must be given at most once.".into()),
            ApiError::IsvNotEnabled => bad("ISV features not enabled for this resource id.".into()),
            ApiError::NotGranted(missing) => bad(format!(
                "Missing required flags to grant {}.",
                missing.to_csv()
            )),
            ApiError::ClientBlocked => {
                bad("Token issuance for the target resource has been blocked by this ISV.".into())
            }
            ApiError::AuditUnavailable => (
                StatusCode::SERVICE_UNAVAILABLE,
                "ServiceUnavailable",
                "The audit log cannot be written, so no token was issued. Try again later.".into(),
            ),
            ApiError::StoreUnavailable => (
                StatusCode::SERVICE_UNAVAILABLE,
                "ServiceUnavailable",
                "The service is temporarily unavailable. Try again later.".into(),
            ),
            ApiError::Internal => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "InternalServerError",
                "An internal error occurred.".into(),
            ),
            ApiError::NotFound => (StatusCode::NOT_FOUND, "404", "Resource not found".into()),
            ApiError::MethodNotAllowed => (
                StatusCode::METHOD_NOT_ALLOWED,
                "405",
                "The HTTP method is not allowed for this resource.".into(),
            ),
        }
    }
}

const BAD_TARGET: &str = "TargetAzureResourceId must not be null and must be well formed.";

/// `the x is y` → `The x is y.`
fn sentence(s: &str) -> String {
    let mut chars = s.chars();
    let mut out: String = chars
        .next()
        .map(|c| c.to_uppercase().collect())
        .unwrap_or_default();
    out.push_str(chars.as_str());
    if !out.ends_with('.') {
        out.push('.');
    }
    out
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let ApiError::RateLimited { retry_after } = self {
            return latch_http::rate_limit::too_many_requests(retry_after);
        }
        let (status, code, message) = self.parts();
        error_response(status, &error_body(code, &message))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sentences() {
        assert_eq!(
            sentence("the account name is bad"),
            "The account name is bad."
        );
        assert_eq!(sentence("Done."), "Done.");
        assert_eq!(sentence(""), ".");
    }

    #[test]
    fn azure_texts_are_exact() {
        assert_eq!(
            ApiError::BadTarget(None).parts().2,
            "TargetAzureResourceId must not be null and must be well formed."
        );
        let missing = FeatureSet::parse_csv("Face.Identification").unwrap();
        assert_eq!(
            ApiError::NotGranted(missing).parts().2,
            "Missing required flags to grant Face.Identification."
        );
        assert_eq!(ApiError::InvalidKey.parts().1, "401");
        let limited = ApiError::RateLimited { retry_after: 2 };
        assert_eq!(
            limited.parts().2,
            "Rate limit is exceeded. Try again in 2 seconds."
        );
        let response = limited.into_response();
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(response.headers()["retry-after"], "2");
    }
}
