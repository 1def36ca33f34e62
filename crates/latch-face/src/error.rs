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
    /// The built-in engine's refusal, in Azure's words.
    Refused(Refusal),
}

/// What the built-in engine refuses: a missing group, person or face, an image it cannot use,
/// a group not trained, a quota reached. Each is one status, code and message
/// ([`Refusal::parts`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// No such large person group (of this resource).
    GroupNotFound,
    /// No such person in the group.
    PersonNotFound,
    /// No such persisted face of the person.
    PersistedFaceNotFound,
    /// No such detected face (unknown, expired, or another resource's).
    FaceNotFound,
    /// No such operation (or forgotten).
    OperationNotFound,
    /// A large face list: this engine has none.
    LargeFaceListNotFound,
    /// A face list: this engine has none.
    FaceListNotFound,
    /// The group exists already.
    GroupExists,
    /// The group has not been trained.
    GroupNotTrained,
    /// A bound of the store reached; the store's message.
    QuotaExceeded(String),
    /// The image is too small; what the decoder said, if it was the one to say it.
    ImageTooSmall(Option<String>),
    /// The image (downloaded, or decoded) is too big; what the decoder said, if it was the
    /// one to say it.
    ImageTooBig(Option<String>),
    /// The image does not decode; what the decoder said.
    ImageUndecodable(String),
    /// The image URL is not one the engine may download; why.
    InvalidUrl(&'static str),
    /// The image could not be downloaded; what went wrong.
    DownloadFailed(String),
    /// No face in the image.
    NoFace,
    /// No face in the image at `targetFace`.
    NoFaceInTarget,
    /// More than one face where one is needed.
    MoreThanOneFace,
    /// The engine failed on the image.
    EngineFailed,
}

impl Refusal {
    /// Azure's status, code and message.
    pub fn parts(&self) -> (StatusCode, &'static str, String) {
        (self.status(), self.code(), self.message())
    }

    fn status(&self) -> StatusCode {
        use Refusal::*;
        match self {
            GroupNotFound
            | PersonNotFound
            | PersistedFaceNotFound
            | FaceNotFound
            | OperationNotFound
            | LargeFaceListNotFound
            | FaceListNotFound => StatusCode::NOT_FOUND,
            GroupExists => StatusCode::CONFLICT,
            QuotaExceeded(_) => StatusCode::FORBIDDEN,
            GroupNotTrained | ImageTooSmall(_) | ImageTooBig(_) | ImageUndecodable(_)
            | InvalidUrl(_) | DownloadFailed(_) | NoFace | NoFaceInTarget | MoreThanOneFace => {
                StatusCode::BAD_REQUEST
            }
            EngineFailed => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn code(&self) -> &'static str {
        use Refusal::*;
        match self {
            GroupNotFound => "LargePersonGroupNotFound",
            PersonNotFound => "PersonNotFound",
            PersistedFaceNotFound => "PersistedFaceNotFound",
            FaceNotFound => "FaceNotFound",
            OperationNotFound => "OperationNotFound",
            LargeFaceListNotFound => "LargeFaceListNotFound",
            FaceListNotFound => "FaceListNotFound",
            GroupExists => "LargePersonGroupExists",
            GroupNotTrained => "LargePersonGroupNotTrained",
            QuotaExceeded(_) => "QuotaExceeded",
            ImageTooSmall(_) | ImageTooBig(_) => "InvalidImageSize",
            ImageUndecodable(_) | NoFace | NoFaceInTarget | MoreThanOneFace => "InvalidImage",
            InvalidUrl(_) | DownloadFailed(_) => "InvalidURL",
            EngineFailed => "InternalServerError",
        }
    }

    fn message(&self) -> String {
        use Refusal::*;
        let with = |message: &str, detail: &Option<String>| match detail {
            Some(d) => format!("{message} ({d})"),
            None => message.to_owned(),
        };
        match self {
            GroupNotFound => "Large person group is not found.".into(),
            PersonNotFound => "Person is not found.".into(),
            PersistedFaceNotFound => "Persisted face is not found.".into(),
            FaceNotFound => "Face is not found.".into(),
            OperationNotFound => "Operation is not found.".into(),
            LargeFaceListNotFound => "Large face list is not found.".into(),
            FaceListNotFound => "Face list is not found.".into(),
            GroupExists => "Large person group already exists.".into(),
            GroupNotTrained => "Large person group not trained.".into(),
            QuotaExceeded(message) => message.clone(),
            ImageTooSmall(detail) => with("Image size is too small.", detail),
            ImageTooBig(detail) => with("Image size is too big.", detail),
            ImageUndecodable(detail) => {
                format!("Decoding error, image format unsupported. ({detail})")
            }
            InvalidUrl(why) => format!("Invalid image URL. ({why})"),
            DownloadFailed(why) => format!("Invalid image URL or error downloading from target server. Remote server error returned: \"{why}\""),
            NoFace => "No face detected in the image.".into(),
            NoFaceInTarget => {
                "No face detected in the image or in the specified targetFace area.".into()
            }
            MoreThanOneFace => "There is more than 1 face in the image.".into(),
            EngineFailed => "The face engine failed on this image.".into(),
        }
    }
}

impl From<Refusal> for FaceError {
    fn from(refusal: Refusal) -> Self {
        FaceError::Refused(refusal)
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
            FaceError::Refused(refusal) => {
                let (status, code, message) = refusal.parts();
                (status, error_body(code, &message))
            }
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

    /// Each refusal of the engine, as Azure words it.
    #[test]
    fn engine_refusals_are_azures_answers() {
        use Refusal::*;
        let cases: [(Refusal, u16, &str, &str); 19] = [
            (GroupNotFound, 404, "LargePersonGroupNotFound", "Large person group is not found."),
            (PersonNotFound, 404, "PersonNotFound", "Person is not found."),
            (PersistedFaceNotFound, 404, "PersistedFaceNotFound", "Persisted face is not found."),
            (FaceNotFound, 404, "FaceNotFound", "Face is not found."),
            (OperationNotFound, 404, "OperationNotFound", "Operation is not found."),
            (LargeFaceListNotFound, 404, "LargeFaceListNotFound", "Large face list is not found."),
            (FaceListNotFound, 404, "FaceListNotFound", "Face list is not found."),
            (GroupExists, 409, "LargePersonGroupExists", "Large person group already exists."),
            (GroupNotTrained, 400, "LargePersonGroupNotTrained", "Large person group not trained."),
            (QuotaExceeded("At most 3.".into()), 403, "QuotaExceeded", "At most 3."),
            (ImageTooSmall(None), 400, "InvalidImageSize", "Image size is too small."),
            (ImageTooBig(Some("9 MB".into())), 400, "InvalidImageSize", "Image size is too big. (9 MB)"),
            (ImageUndecodable("bad".into()), 400, "InvalidImage", "Decoding error, image format unsupported. (bad)"),
            (InvalidUrl("not a URL"), 400, "InvalidURL", "Invalid image URL. (not a URL)"),
            (DownloadFailed("status 404".into()), 400, "InvalidURL", "Invalid image URL or error downloading from target server. Remote server error returned: \"status 404\""),
            (NoFace, 400, "InvalidImage", "No face detected in the image."),
            (NoFaceInTarget, 400, "InvalidImage", "No face detected in the image or in the specified targetFace area."),
            (MoreThanOneFace, 400, "InvalidImage", "There is more than 1 face in the image."),
            (EngineFailed, 500, "InternalServerError", "The face engine failed on this image."),
        ];
        for (refusal, status, code, message) in cases {
            let (s, body) = FaceError::from(refusal).parts();
            assert_eq!(s.as_u16(), status, "{code}");
            assert_eq!(
                body,
                serde_json::json!({"error": {"code": code, "message": message}})
            );
        }
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
