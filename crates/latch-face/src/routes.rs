//! The Face routes. Every one requires a [`VerifiedFaceCall`] (put there by the checks), checks
//! the ids in its path and its body as Azure does, then hands the call to the backend.
//!
//! JSON bodies are read whole (up to [`MAX_JSON`]) to be validated; image bodies (detect, add
//! face) stream through, cut off at the front's body limit.

use axum::body::{to_bytes, Body};
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use axum::Extension;

use crate::error::FaceError;
use crate::limited_access::VerifiedFaceCall;
use crate::operation::Operation;
use crate::{validate, FaceState};

/// The largest JSON body, in bytes.
pub const MAX_JSON: usize = 1024 * 1024;

/// Every Face operation.
pub(crate) async fn call(
    State(state): State<FaceState>,
    Extension(call): Extension<VerifiedFaceCall>,
    req: Request,
) -> Response {
    match prepare(&state, &call, req).await {
        Ok(req) => state.inner.backend.call(&call, req).await,
        Err(e) => e.into_response(),
    }
}

async fn prepare(
    state: &FaceState,
    call: &VerifiedFaceCall,
    req: Request,
) -> Result<Request, FaceError> {
    if let Some(group) = group_in_path(req.uri().path()) {
        validate::group_id(group)?;
    }
    if let Some(person) = person_in_path(req.uri().path()) {
        validate::person_id(person)?;
    }
    if let Some(face) = segment_at(req.uri().path(), 7, "persistedfaces") {
        validate::persisted_face_id(face)?;
    }
    if let Some(operation) = segment_at(req.uri().path(), 3, "operations") {
        validate::operation_id(operation)?;
    }
    if matches!(
        call.operation(),
        Operation::Detect | Operation::DetectWithFaceId
    ) {
        validate::detect_query(req.uri().query())?;
    }
    let check: fn(&[u8]) -> Result<(), FaceError> = match call.operation() {
        Operation::Identify => validate::identify,
        Operation::Verify => validate::verify,
        Operation::FindSimilar => validate::find_similar,
        Operation::CreateGroup | Operation::CreatePerson => validate::named,
        // Images, and bodies nobody should send: streamed, cut at the limit whatever their
        // framing (a chunked body has no Content-Length to check in advance).
        Operation::Detect
        | Operation::DetectWithFaceId
        | Operation::AddFace
        | Operation::GetGroup
        | Operation::ListGroups
        | Operation::DeleteGroup
        | Operation::Train
        | Operation::TrainingStatus
        | Operation::ListPersons
        | Operation::GetPerson
        | Operation::DeletePerson
        | Operation::GetFace
        | Operation::DeleteFace
        | Operation::GetOperation => {
            let (parts, body) = req.into_parts();
            let limited = http_body_util::Limited::new(body, state.inner.config.max_body);
            return Ok(Request::from_parts(parts, Body::new(limited)));
        }
    };
    let (parts, body) = req.into_parts();
    let bytes = to_bytes(body, MAX_JSON)
        .await
        .map_err(|_| FaceError::TooLarge)?;
    check(&bytes)?;
    Ok(Request::from_parts(parts, Body::from(bytes)))
}

/// The `{personId}` of a `/face/{version}/largepersongroups/{id}/persons/{personId}/...` path.
fn person_in_path(path: &str) -> Option<&str> {
    segment_at(path, 5, "persons")
}

/// The id after segment `at` of the path when that segment is `name`, counting `face` in
/// `/face/{version}/` as 1: `operations/{id}` is at 3, `.../persons/{p}/persistedfaces/{id}`
/// at 7. By position, so a group named `operations` is a group.
fn segment_at<'a>(path: &'a str, at: usize, name: &str) -> Option<&'a str> {
    let mut segments = path.split('/').skip(at);
    (segments.next() == Some(name))
        .then(|| segments.next())
        .flatten()
}

/// The `{largePersonGroupId}` of a `/face/{version}/largepersongroups/{id}/...` path.
fn group_in_path(path: &str) -> Option<&str> {
    segment_at(path, 3, "largepersongroups")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_ids_in_paths() {
        assert_eq!(
            group_in_path("/face/v1.0/largepersongroups/g1/persons"),
            Some("g1")
        );
        assert_eq!(group_in_path("/face/v1.0/largepersongroups"), None);
        assert_eq!(group_in_path("/face/v1.0/identify"), None);
        assert_eq!(
            person_in_path("/face/v1.0/largepersongroups/g1/persons/p1/persistedfaces"),
            Some("p1")
        );
        assert_eq!(
            person_in_path("/face/v1.0/largepersongroups/g1/persons"),
            None
        );
        assert_eq!(
            segment_at(
                "/face/v1.0/largepersongroups/g1/persons/p1/persistedfaces/f1",
                7,
                "persistedfaces"
            ),
            Some("f1")
        );
        assert_eq!(
            segment_at("/face/v1.0/operations/o1", 3, "operations"),
            Some("o1")
        );
        // A group may be called `operations` or `persistedfaces`.
        assert_eq!(
            segment_at(
                "/face/v1.0/largepersongroups/operations/persons",
                3,
                "operations"
            ),
            None
        );
        assert_eq!(
            segment_at(
                "/face/v1.0/largepersongroups/persistedfaces",
                7,
                "persistedfaces"
            ),
            None
        );
    }
}
