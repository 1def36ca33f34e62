//! The Face routes: one table, [`ROUTES`], of (operation, method, path pattern). The router is
//! built from it (`face_routes`), a request's operation is found in it ([`classify`]), and
//! the ids in a path are read where its pattern names them ([`crate::ids`]).
//!
//! Every route requires a [`VerifiedFaceCall`] (put there by the checks), checks the ids in
//! its path and its body as Azure does, then hands the call, typed ([`FaceRequest`]), to the
//! backend. JSON bodies are read whole (up to [`MAX_JSON`]) and parsed once
//! ([`crate::body`]); image bodies (detect, add face) stream through, cut off at the front's
//! body limit.

use axum::body::{to_bytes, Body};
use axum::extract::{FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::Method;
use axum::response::{IntoResponse, Response};
use axum::routing::{on, MethodFilter};
use axum::{Extension, Router};

pub use crate::body::MAX_JSON;
use crate::body::{FindSimilarRequest, IdentifyRequest, NamedRequest, VerifyRequest};
use crate::error::FaceError;
use crate::ids::{FacePath, GroupId, OperationId, PersonPath};
use crate::limited_access::VerifiedFaceCall;
use crate::operation::{detect_query, returns_face_id, Operation, VERSIONS};
use crate::FaceState;

/// The methods the Face API uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Verb {
    /// `GET`.
    Get,
    /// `PUT`.
    Put,
    /// `POST`.
    Post,
    /// `DELETE`.
    Delete,
}

impl Verb {
    /// The HTTP method.
    pub fn method(self) -> Method {
        match self {
            Verb::Get => Method::GET,
            Verb::Put => Method::PUT,
            Verb::Post => Method::POST,
            Verb::Delete => Method::DELETE,
        }
    }

    fn filter(self) -> MethodFilter {
        match self {
            Verb::Get => MethodFilter::GET,
            Verb::Put => MethodFilter::PUT,
            Verb::Post => MethodFilter::POST,
            Verb::Delete => MethodFilter::DELETE,
        }
    }
}

/// One route: an operation, its method, and its path after `/face/{version}/`, with `{name}`
/// for an id.
#[derive(Debug, PartialEq, Eq)]
pub struct Route {
    /// The operation (`detect` is [`Operation::DetectWithFaceId`] when it asks for face ids:
    /// see [`Route::operation`]).
    pub operation: Operation,
    /// The method.
    pub verb: Verb,
    /// The path pattern.
    pub path: &'static str,
}

const fn route(operation: Operation, verb: Verb, path: &'static str) -> Route {
    Route {
        operation,
        verb,
        path,
    }
}

/// Every Face route, for every version in [`VERSIONS`].
pub static ROUTES: [Route; 18] = {
    use Operation as O;
    use Verb::*;
    const GROUP: &str = "largepersongroups/{largePersonGroupId}";
    [
        route(O::Detect, Post, "detect"),
        route(O::Identify, Post, "identify"),
        route(O::Verify, Post, "verify"),
        route(O::FindSimilar, Post, "findsimilars"),
        route(O::ListGroups, Get, "largepersongroups"),
        route(O::CreateGroup, Put, GROUP),
        route(O::GetGroup, Get, GROUP),
        route(O::DeleteGroup, Delete, GROUP),
        route(O::CreatePerson, Post, "largepersongroups/{largePersonGroupId}/persons"),
        route(O::ListPersons, Get, "largepersongroups/{largePersonGroupId}/persons"),
        route(O::GetPerson, Get, "largepersongroups/{largePersonGroupId}/persons/{personId}"),
        route(O::DeletePerson, Delete, "largepersongroups/{largePersonGroupId}/persons/{personId}"),
        route(O::AddFace, Post, "largepersongroups/{largePersonGroupId}/persons/{personId}/persistedfaces"),
        route(O::GetFace, Get, "largepersongroups/{largePersonGroupId}/persons/{personId}/persistedfaces/{persistedFaceId}"),
        route(O::DeleteFace, Delete, "largepersongroups/{largePersonGroupId}/persons/{personId}/persistedfaces/{persistedFaceId}"),
        route(O::Train, Post, "largepersongroups/{largePersonGroupId}/train"),
        route(O::TrainingStatus, Get, "largepersongroups/{largePersonGroupId}/training"),
        route(O::GetOperation, Get, "operations/{operationId}"),
    ]
};

impl Route {
    /// The pattern's segments.
    pub fn segments(&self) -> impl Iterator<Item = &'static str> {
        self.path.split('/')
    }

    /// Whether `rest`, a path after `/face/{version}/`, is one of this route's: the same
    /// segments, any one segment where the pattern has an id (the router matched the request
    /// already; an id that is empty or otherwise invalid is the id's check to refuse).
    fn matches(&self, rest: &str) -> bool {
        let mut given = rest.split('/');
        let mut pattern = self.segments();
        loop {
            match (pattern.next(), given.next()) {
                (None, None) => return true,
                (Some(p), Some(_)) if p.starts_with('{') => {}
                (Some(p), Some(g)) if p == g => {}
                _ => return false,
            }
        }
    }

    /// The operation of a call to this route with `query`: `detect` asks for face ids unless
    /// `returnFaceId=false` (see [`returns_face_id`]).
    pub fn operation(&self, query: Option<&str>) -> Operation {
        match self.operation {
            Operation::Detect if returns_face_id(query) => Operation::DetectWithFaceId,
            op => op,
        }
    }
}

/// The route, operation and version of a request; `None` if it is not a Face call.
pub fn classify(
    method: &Method,
    path: &str,
    query: Option<&str>,
) -> Option<(&'static Route, Operation, &'static str)> {
    let rest = path.strip_prefix("/face/")?;
    let (version, rest) = rest.split_once('/')?;
    let version = VERSIONS.into_iter().find(|v| *v == version)?;
    let route = ROUTES
        .iter()
        .find(|r| r.verb.method() == method && r.matches(rest))?;
    Some((route, route.operation(query), version))
}

/// The Face routes of every version, each answered by [`call`]. Each version is spelled out,
/// so an unknown one is a 404 before any check runs.
pub(crate) fn face_routes() -> Router<FaceState> {
    let mut routes = Router::new();
    for v in VERSIONS {
        for route in &ROUTES {
            // Routes of one path with other methods are merged into one method router.
            routes = routes.route(
                &format!("/face/{v}/{}", route.path),
                on(route.verb.filter(), call),
            );
        }
    }
    routes
}

/// An allowed call, as a backend receives it.
pub struct FaceCall {
    /// Method, URI and headers, as received.
    pub parts: Parts,
    /// The body as received: the JSON bytes that were parsed, or the stream (images), cut off
    /// at the front's body limit.
    pub body: Body,
    /// The operation, with its ids and body checked.
    pub request: FaceRequest,
}

/// A Face operation with its path ids and JSON body, checked.
#[derive(Debug)]
pub enum FaceRequest {
    /// `POST detect`; the image is the body.
    Detect {
        /// Whether face ids are asked for.
        return_face_id: bool,
    },
    /// `POST identify`.
    Identify(IdentifyRequest),
    /// `POST verify`.
    Verify(VerifyRequest),
    /// `POST findsimilars`.
    FindSimilar(FindSimilarRequest),
    /// `PUT largepersongroups/{id}`.
    CreateGroup(GroupId, NamedRequest),
    /// `GET largepersongroups/{id}`.
    GetGroup(GroupId),
    /// `GET largepersongroups`.
    ListGroups,
    /// `DELETE largepersongroups/{id}`.
    DeleteGroup(GroupId),
    /// `POST largepersongroups/{id}/persons`.
    CreatePerson(GroupId, NamedRequest),
    /// `POST .../persons/{personId}/persistedfaces`; the image is the body.
    AddFace(PersonPath),
    /// `POST largepersongroups/{id}/train`.
    Train(GroupId),
    /// `GET largepersongroups/{id}/training`.
    TrainingStatus(GroupId),
    /// `GET largepersongroups/{id}/persons`.
    ListPersons(GroupId),
    /// `GET largepersongroups/{id}/persons/{personId}`.
    GetPerson(PersonPath),
    /// `DELETE largepersongroups/{id}/persons/{personId}`.
    DeletePerson(PersonPath),
    /// `GET .../persistedfaces/{persistedFaceId}`.
    GetFace(FacePath),
    /// `DELETE .../persistedfaces/{persistedFaceId}`.
    DeleteFace(FacePath),
    /// `GET operations/{operationId}`.
    GetOperation(OperationId),
}

/// Every Face operation.
pub(crate) async fn call(
    State(state): State<FaceState>,
    Extension(call): Extension<VerifiedFaceCall>,
    req: Request,
) -> Response {
    match prepare(&state, &call, req).await {
        Ok(face_call) => state.inner.backend.call(&call, face_call).await,
        Err(e) => e.into_response(),
    }
}

/// What a call's body is read as.
enum Shape {
    /// Streamed on (images, and bodies nobody should send), cut off at the limit whatever
    /// their framing (a chunked body has no `Content-Length` to check in advance).
    Streamed(FaceRequest),
    /// Read whole and parsed.
    Json(Box<ParseJson>),
}

/// Parses a JSON body into its request.
type ParseJson = dyn FnOnce(&[u8]) -> Result<FaceRequest, FaceError> + Send;

/// The typed request: path ids first, in path order, then the query of `detect`, then the body.
async fn prepare(
    state: &FaceState,
    call: &VerifiedFaceCall,
    req: Request,
) -> Result<FaceCall, FaceError> {
    use FaceRequest as R;
    use Shape::{Json, Streamed};
    let (mut parts, body) = req.into_parts();
    let p = &mut parts;
    let shape = match call.operation() {
        op @ (Operation::Detect | Operation::DetectWithFaceId) => {
            detect_query(p.uri.query())?;
            Streamed(R::Detect {
                return_face_id: op == Operation::DetectWithFaceId,
            })
        }
        Operation::Identify => Json(Box::new(|b| IdentifyRequest::parse(b).map(R::Identify))),
        Operation::Verify => Json(Box::new(|b| VerifyRequest::parse(b).map(R::Verify))),
        Operation::FindSimilar => Json(Box::new(|b| {
            FindSimilarRequest::parse(b).map(R::FindSimilar)
        })),
        Operation::CreateGroup => {
            let group = GroupId::from_request_parts(p, state).await?;
            Json(Box::new(|b| {
                NamedRequest::parse(b).map(|n| R::CreateGroup(group, n))
            }))
        }
        Operation::CreatePerson => {
            let group = GroupId::from_request_parts(p, state).await?;
            Json(Box::new(|b| {
                NamedRequest::parse(b).map(|n| R::CreatePerson(group, n))
            }))
        }
        Operation::ListGroups => Streamed(R::ListGroups),
        Operation::GetGroup => Streamed(R::GetGroup(GroupId::from_request_parts(p, state).await?)),
        Operation::DeleteGroup => {
            Streamed(R::DeleteGroup(GroupId::from_request_parts(p, state).await?))
        }
        Operation::Train => Streamed(R::Train(GroupId::from_request_parts(p, state).await?)),
        Operation::TrainingStatus => Streamed(R::TrainingStatus(
            GroupId::from_request_parts(p, state).await?,
        )),
        Operation::ListPersons => {
            Streamed(R::ListPersons(GroupId::from_request_parts(p, state).await?))
        }
        Operation::AddFace => Streamed(R::AddFace(PersonPath::from_request_parts(p, state).await?)),
        Operation::GetPerson => Streamed(R::GetPerson(
            PersonPath::from_request_parts(p, state).await?,
        )),
        Operation::DeletePerson => Streamed(R::DeletePerson(
            PersonPath::from_request_parts(p, state).await?,
        )),
        Operation::GetFace => Streamed(R::GetFace(FacePath::from_request_parts(p, state).await?)),
        Operation::DeleteFace => {
            Streamed(R::DeleteFace(FacePath::from_request_parts(p, state).await?))
        }
        Operation::GetOperation => Streamed(R::GetOperation(
            OperationId::from_request_parts(p, state).await?,
        )),
    };
    let (request, body) = match shape {
        Streamed(request) => {
            let limited = http_body_util::Limited::new(body, state.inner.config.max_body);
            (request, Body::new(limited))
        }
        Json(parse) => {
            let bytes = to_bytes(body, MAX_JSON)
                .await
                .map_err(|_| FaceError::TooLarge)?;
            (parse(&bytes)?, Body::from(bytes))
        }
    };
    Ok(FaceCall {
        parts,
        body,
        request,
    })
}

#[cfg(test)]
pub(crate) mod tests;
