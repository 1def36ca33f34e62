//! Every way a Face call can be refused, and the one place where each becomes Azure's answer
//! (`docs/wire.md` §5). The match is exhaustive. The response carries the error code
//! as an extension, from which the outer layer sets `x-ms-error-code` on v1.2.

use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use latch_core::FeatureSet;
use latch_http::{error_body, error_response, INVALID_KEY_MESSAGE};

/// The error code of a response, for `x-ms-error-code`.
#[derive(Clone, Debug)]
pub struct ErrorCode(pub String);

/// A refused Face call.
#[derive(Debug)]
pub enum FaceError {
    /// No credential, several, a wrong one, or one the resource's mode does not accept.
    InvalidKey,
    /// The call needs features that are neither approved nor granted by a valid token.
    MissingFeatures {
        /// The features to name.
        missing: FeatureSet,
        /// Why the token did not help, if one was presented (ours; never the token).
        reason: Option<&'static str>,
    },
    /// Too many calls for this key.
    RateLimited {
        /// Seconds until a call will be accepted.
        retry_after: u64,
    },
    /// The body is not what the operation takes.
    BadArgument(String),
    /// The body is larger than allowed.
    TooLarge,
    /// No backend is configured.
    NoBackend,
    /// The backend could not be reached or failed.
    BadGateway,
    /// The backend or the request took too long.
    Timeout,
    /// The audit log cannot be written: the call does not proceed.
    AuditUnavailable,
    /// The store failed.
    StoreUnavailable,
    /// No such route.
    NotFound,
    /// The built-in engine's refusal, in Azure's words: a missing group, person or face, an
    /// image it cannot use, a group not trained, a quota reached.
    Refused {
        /// The HTTP status.
        status: StatusCode,
        /// Azure's error code.
        code: &'static str,
        /// Azure's message.
        message: String,
    },
}

impl FaceError {
    /// A refusal with Azure's status, code and message.
    pub fn refused(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        FaceError::Refused {
            status,
            code,
            message: message.into(),
        }
    }
}

impl FaceError {
    fn parts(&self) -> (StatusCode, serde_json::Value) {
        match self {
            FaceError::InvalidKey => (StatusCode::UNAUTHORIZED, error_body("401", INVALID_KEY_MESSAGE)),
            FaceError::MissingFeatures { missing, reason } => {
                let mut message = format!(
                    "Feature is not supported, missing approval for one or more of the following features: {}. Please apply for access at https://aka.ms/facerecognition",
                    missing.to_short_csv()
                );
                if let Some(reason) = reason {
                    message.push_str(&format!(" (limited access token refused: {reason})"));
                }
                (
                    StatusCode::FORBIDDEN,
                    serde_json::json!({
                        "error": {
                            "code": "InvalidRequest",
                            "message": "Invalid request has been sent.",
                            "innererror": { "code": "UnsupportedFeature", "message": message },
                        }
                    }),
                )
            }
            FaceError::RateLimited { retry_after } => (
                StatusCode::TOO_MANY_REQUESTS,
                error_body("429", &format!("Rate limit is exceeded. Try again in {retry_after} seconds.")),
            ),
            FaceError::BadArgument(message) => (StatusCode::BAD_REQUEST, error_body("BadArgument", message)),
            FaceError::TooLarge => (
                StatusCode::PAYLOAD_TOO_LARGE,
                error_body("InvalidImageSize", "Image size is too big."),
            ),
            FaceError::NoBackend => (
                StatusCode::NOT_IMPLEMENTED,
                error_body(
                    "BackendNotConfigured",
                    "This Face front has no backend to run the operation: turn face.engine on, or configure face.upstream_url.",
                ),
            ),
            FaceError::BadGateway => (
                StatusCode::BAD_GATEWAY,
                error_body("BadGateway", "The Face backend could not be reached or failed."),
            ),
            FaceError::Timeout => (
                StatusCode::GATEWAY_TIMEOUT,
                error_body("Timeout", "The Face backend did not answer in time."),
            ),
            FaceError::AuditUnavailable => (
                StatusCode::SERVICE_UNAVAILABLE,
                error_body("ServiceUnavailable", "The audit log cannot be written; the call was not made."),
            ),
            FaceError::StoreUnavailable => (
                StatusCode::SERVICE_UNAVAILABLE,
                error_body("ServiceUnavailable", "The service is temporarily unavailable. Try again later."),
            ),
            FaceError::NotFound => (StatusCode::NOT_FOUND, error_body("404", "Resource not found")),
            FaceError::Refused { status, code, message } => (*status, error_body(code, message)),
        }
    }
}

impl IntoResponse for FaceError {
    fn into_response(self) -> Response {
        let (status, body) = self.parts();
        let code = body["error"]["code"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let mut response = error_response(status, &body);
        if let FaceError::RateLimited { retry_after } = self {
            response
                .headers_mut()
                .insert("retry-after", HeaderValue::from(retry_after));
        }
        response.extensions_mut().insert(ErrorCode(code));
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_403_body_is_azures_and_lists_only_missing_features() {
        let missing = FeatureSet::parse_csv("Face.Identification").unwrap();
        let (status, body) = FaceError::MissingFeatures {
            missing,
            reason: None,
        }
        .parts();
        assert_eq!(status, StatusCode::FORBIDDEN);
        assert_eq!(
            body,
            serde_json::json!({"error":{"code":"InvalidRequest","message":"Invalid request has been sent.","innererror":{"code":"UnsupportedFeature","message":"Feature is not supported, missing approval for one or more of the following features: Identification. Please apply for access at https://aka.ms/facerecognition"}}})
        );
    }

    #[test]
    fn the_403_body_is_byte_for_byte_azures() {
        let missing = FeatureSet::parse_csv("Face.Identification,Face.Verification").unwrap();
        let (_, body) = FaceError::MissingFeatures {
            missing,
            reason: None,
        }
        .parts();
        assert_eq!(
            body.to_string(),
            r#"{"error":{"code":"InvalidRequest","message":"Invalid request has been sent.","innererror":{"code":"UnsupportedFeature","message":"Feature is not supported, missing approval for one or more of the following features: Identification,Verification. Please apply for access at https://aka.ms/facerecognition"}}}"#
        );
    }

    #[test]
    fn rate_limits_say_when_to_retry() {
        let r = FaceError::RateLimited { retry_after: 3 }.into_response();
        assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(r.headers()["retry-after"], "3");
        let (_, body) = FaceError::RateLimited { retry_after: 3 }.parts();
        assert_eq!(
            body["error"]["message"],
            "Rate limit is exceeded. Try again in 3 seconds."
        );
        assert_eq!(body["error"]["code"], "429");
    }
}
