//! The built-in Face engine: the Face operations run here, on the CPU, offline, with the
//! networks of [`latch_vision`], the data in the store ([`latch_store::face::FaceData`]). It is
//! one [`FaceBackend`] of the Face front ([`latch_face`]), which checks every call, its ids and
//! its body before handing it here, typed ([`latch_face::routes::FaceRequest`]).
//!
//! | module | operations |
//! |---|---|
//! | [`detect`] | `detect`: faces, rectangles, `faceId`s remembered for `faceIdTimeToLive` |
//! | [`groups`] | large person groups, persons, persisted faces, training, operation status |
//! | [`compare`] | `identify`, `verify`, `findsimilars` |
//! | [`image`] | the image of a call: its body, or a URL on a host the operator allows |
//! | [`model`] | the networks, run off the async threads, as many at once as there are cores |
//!
//! Every call is scoped to the caller's resource: its groups and face ids are its own.
//!
//! Similarity: two faces' embeddings are compared by Euclidean distance `d`; the engine's
//! confidence is `1 / (1 + e^(10 (d − 0.6)))`, so the distance 0.6 at which the embedding
//! network separates people best is confidence 0.5, Azure's `isIdentical` threshold.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use axum::http::request::Parts;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use latch_core::{Clock, ResourceId};
use latch_store::face::FaceItem;
use latch_store::{Store, StoreError};
use serde_json::Value;

use latch_face::backend::FaceBackend;
use latch_face::error::{FaceError, Refusal};
use latch_face::limited_access::VerifiedFaceCall;
use latch_face::routes::{FaceCall, FaceRequest};

pub mod compare;
pub mod detect;
pub mod groups;
pub mod image;
pub mod model;

pub use image::ImageUrlPolicy;
pub use model::FaceModel;

/// The recognition models a caller may name. The engine has one embedding network; it keeps
/// the name a group or face was made with and compares faces only within one name, as Azure.
pub const RECOGNITION_MODELS: [&str; 4] = [
    "recognition_01",
    "recognition_02",
    "recognition_03",
    "recognition_04",
];

/// The detection models a caller may name; all run the engine's one detector.
pub const DETECTION_MODELS: [&str; 3] = ["detection_01", "detection_02", "detection_03"];

/// The engine.
pub struct Engine {
    model: FaceModel,
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    images: image::ImageSource,
    /// When expired face ids were last forgotten (unix seconds).
    last_prune: std::sync::atomic::AtomicI64,
    /// `https`, or `http` behind a proxy that terminates TLS: the scheme of the URLs it gives.
    scheme: &'static str,
}

impl Engine {
    /// An engine running `model` over `store`.
    pub fn new(
        model: FaceModel,
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        urls: ImageUrlPolicy,
    ) -> Engine {
        Engine {
            model,
            store,
            clock,
            images: image::ImageSource::new(urls),
            last_prune: std::sync::atomic::AtomicI64::new(0),
            scheme: "https",
        }
    }

    /// Gives its URLs (`operation-Location`) the scheme `http` (when TLS is off) or `https`.
    pub fn with_plain_http(mut self, plain: bool) -> Engine {
        self.scheme = if plain { "http" } else { "https" };
        self
    }

    /// Enrolls a person outside any call (the demo data of a new data directory): makes the
    /// group if it is missing, adds the person with the one face of `image`, and trains the
    /// group. Returns the new person's id.
    pub async fn enroll(
        &self,
        resource: &ResourceId,
        group_id: &str,
        group_name: &str,
        person_name: &str,
        image: axum::body::Bytes,
    ) -> Result<String, FaceError> {
        let now = self.clock.now();
        let group = latch_store::face::FaceGroup {
            group_id: group_id.to_owned(),
            name: group_name.to_owned(),
            user_data: None,
            recognition_model: RECOGNITION_MODELS[0].to_owned(),
            created_at: now,
            training: None,
        };
        match self.store.create_face_group(resource, &group).await {
            Ok(()) | Err(StoreError::FaceExists(_)) => {}
            Err(e) => return Err(store_error(e)),
        }
        // The face first: an image without one leaves no person behind.
        let embedding = self.model.one_face(image, None).await?;
        let person = latch_store::face::FacePerson {
            person_id: new_uuid()?,
            name: person_name.to_owned(),
            user_data: None,
            persisted_face_ids: Vec::new(),
        };
        self.store
            .create_face_person(resource, group_id, &person)
            .await
            .map_err(store_error)?;
        groups::persist_face(
            self,
            resource,
            (group_id, &person.person_id),
            &embedding,
            None,
        )
        .await?;
        self.store
            .train_face_group(resource, group_id, now)
            .await
            .map_err(store_error)?;
        Ok(person.person_id)
    }

    /// Forgets expired face ids, at most once a minute (whichever call comes first).
    async fn prune_now_and_then(&self) {
        use std::sync::atomic::Ordering;
        let now = self.clock.now();
        let last = self.last_prune.load(Ordering::Relaxed);
        if now.0 - last < 60
            || self
                .last_prune
                .compare_exchange(last, now.0, Ordering::Relaxed, Ordering::Relaxed)
                .is_err()
        {
            return;
        }
        if let Err(e) = self.store.prune_detected_faces(now).await {
            tracing::warn!(target: "latch::face", error = %e, "forgetting expired face ids failed");
        }
    }

    async fn run(
        &self,
        call: &VerifiedFaceCall,
        face_call: FaceCall,
    ) -> Result<Response, FaceError> {
        let FaceCall {
            parts,
            body,
            request,
        } = face_call;
        let ctx = self.ctx(call, &parts);
        let ctx = &ctx;
        match request {
            FaceRequest::Detect { return_face_id } => {
                detect::detect(self, ctx, body, return_face_id).await
            }
            FaceRequest::Identify(r) => compare::identify(self, ctx, r).await,
            FaceRequest::Verify(r) => compare::verify(self, ctx, r).await,
            FaceRequest::FindSimilar(r) => compare::find_similar(self, ctx, r).await,
            FaceRequest::CreateGroup(g, r) => groups::create_group(self, ctx, &g, r).await,
            FaceRequest::GetGroup(g) => groups::get_group(self, ctx, &g).await,
            FaceRequest::ListGroups => groups::list_groups(self, ctx).await,
            FaceRequest::DeleteGroup(g) => groups::delete_group(self, ctx, &g).await,
            FaceRequest::CreatePerson(g, r) => groups::create_person(self, ctx, &g, r).await,
            FaceRequest::GetPerson(p) => groups::get_person(self, ctx, &p).await,
            FaceRequest::ListPersons(g) => groups::list_persons(self, ctx, &g).await,
            FaceRequest::DeletePerson(p) => groups::delete_person(self, ctx, &p).await,
            FaceRequest::AddFace(p) => groups::add_face(self, ctx, &p, body).await,
            FaceRequest::GetFace(f) => groups::get_face(self, ctx, &f).await,
            FaceRequest::DeleteFace(f) => groups::delete_face(self, ctx, &f).await,
            FaceRequest::Train(g) => groups::train(self, ctx, &g).await,
            FaceRequest::TrainingStatus(g) => groups::training_status(self, ctx, &g).await,
            FaceRequest::GetOperation(o) => groups::operation_status(self, ctx, &o).await,
        }
    }

    /// What the handlers need of a call's request line and headers.
    fn ctx(&self, call: &VerifiedFaceCall, parts: &Parts) -> Ctx {
        let header = |name| parts.headers.get(name).and_then(|v| v.to_str().ok());
        Ctx {
            resource: call.caller().resource().id.clone(),
            version: call.version(),
            query: Query::parse(parts.uri.query()),
            host: header(header::HOST.as_str()).map(str::to_owned),
            // Behind a proxy that terminates TLS, the scheme the caller used is the proxy's.
            scheme: match header("x-forwarded-proto") {
                Some(p) if p.eq_ignore_ascii_case("https") => "https",
                Some(p) if p.eq_ignore_ascii_case("http") => "http",
                _ => self.scheme,
            },
            content_type: header(header::CONTENT_TYPE.as_str()).map(str::to_ascii_lowercase),
        }
    }
}

impl FaceBackend for Engine {
    fn call<'a>(
        &'a self,
        call: &'a VerifiedFaceCall,
        face_call: FaceCall,
    ) -> Pin<Box<dyn Future<Output = Response> + Send + 'a>> {
        Box::pin(async move {
            match self.run(call, face_call).await {
                Ok(response) => response,
                Err(e) => e.into_response(),
            }
        })
    }
}

/// What the handlers need of a call besides its operation.
pub(crate) struct Ctx {
    /// The caller's resource: the owner of everything the call touches.
    pub(crate) resource: ResourceId,
    /// The API version of the path.
    pub(crate) version: &'static str,
    /// The query.
    pub(crate) query: Query,
    /// The body's `Content-Type`, lower-cased.
    pub(crate) content_type: Option<String>,
    /// The `Host` the caller used.
    pub(crate) host: Option<String>,
    /// The scheme the caller used.
    pub(crate) scheme: &'static str,
}

/// Query parameters, names matched ignoring case.
pub(crate) struct Query(Vec<(String, String)>);

impl Query {
    fn parse(query: Option<&str>) -> Query {
        Query(
            form_urlencoded::parse(query.unwrap_or("").as_bytes())
                .map(|(k, v)| (k.to_ascii_lowercase(), v.into_owned()))
                .collect(),
        )
    }

    /// The one value of `name`; a repeated parameter is refused.
    pub(crate) fn get(&self, name: &str) -> Result<Option<&str>, FaceError> {
        let lower = name.to_ascii_lowercase();
        let mut found = self.0.iter().filter(|(k, _)| *k == lower);
        match (found.next(), found.next()) {
            (None, _) => Ok(None),
            (Some((_, v)), None) => Ok(Some(v)),
            (Some(_), Some(_)) => Err(bad(format!("The argument {name} is given twice."))),
        }
    }

    /// A `detectionModel`, if given, must be one of [`DETECTION_MODELS`].
    pub(crate) fn check_detection_model(&self) -> Result<(), FaceError> {
        match self.get("detectionModel")? {
            Some(d) if !DETECTION_MODELS.contains(&d) => Err(bad("'detectionModel' is invalid.")),
            _ => Ok(()),
        }
    }

    /// A boolean parameter, `default` when absent.
    pub(crate) fn flag(&self, name: &str, default: bool) -> Result<bool, FaceError> {
        match self.get(name)? {
            None => Ok(default),
            Some(v) if v.eq_ignore_ascii_case("true") => Ok(true),
            Some(v) if v.eq_ignore_ascii_case("false") => Ok(false),
            Some(_) => Err(bad(format!("The argument {name} is invalid."))),
        }
    }
}

/// A 400 `BadArgument`.
pub(crate) fn bad(message: impl Into<String>) -> FaceError {
    FaceError::BadArgument(message.into())
}

/// A 200 answer with a JSON body.
pub(crate) fn json(value: Value) -> Response {
    json_with(StatusCode::OK, value)
}

/// An answer with a JSON body.
pub(crate) fn json_with(status: StatusCode, value: Value) -> Response {
    let mut response = (status, value.to_string()).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    response
}

/// A 200 answer with no body (creation and deletion of groups, persons, faces).
pub(crate) fn empty() -> Response {
    StatusCode::OK.into_response()
}

/// A store failure in Azure's words.
pub(crate) fn store_error(e: StoreError) -> FaceError {
    match e {
        StoreError::FaceNotFound(item) => not_found(item).into(),
        StoreError::FaceExists(_) | StoreError::AlreadyExists(_) => Refusal::GroupExists.into(),
        StoreError::Refused(message) => Refusal::QuotaExceeded(message).into(),
        other => {
            tracing::warn!(target: "latch::face", error = %other, "face data store failed");
            FaceError::StoreUnavailable
        }
    }
}

/// 404 for an item this resource does not have.
pub(crate) fn not_found(item: FaceItem) -> Refusal {
    match item {
        FaceItem::Group => Refusal::GroupNotFound,
        FaceItem::Person => Refusal::PersonNotFound,
        FaceItem::PersistedFace => Refusal::PersistedFaceNotFound,
    }
}

/// A new random UUID (version 4), lower-case.
pub(crate) fn new_uuid() -> Result<String, FaceError> {
    use ring::rand::SecureRandom;
    let mut b = [0u8; 16];
    ring::rand::SystemRandom::new()
        .fill(&mut b)
        .map_err(|_| FaceError::StoreUnavailable)?;
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    Ok(format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    ))
}

/// The engine's confidence that two faces at distance `d` are one person.
pub fn confidence(distance: f32) -> f64 {
    let c = 1.0 / (1.0 + (10.0 * (f64::from(distance) - 0.6)).exp());
    // Rounded as Azure rounds: five decimals.
    (c * 100_000.0).round() / 100_000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn confidence_is_one_half_at_the_separating_distance_and_falls_with_distance() {
        assert_eq!(confidence(0.6), 0.5);
        assert!(confidence(0.3) > 0.95);
        assert!(confidence(0.9) < 0.05);
        let mut last = 1.0;
        for i in 0..200 {
            let c = confidence(i as f32 / 100.0);
            assert!((0.0..=1.0).contains(&c) && c <= last);
            last = c;
        }
    }

    #[test]
    fn uuids_are_version_4() {
        let a = new_uuid().unwrap();
        assert!(latch_face::ids::PersonId::parse(&a).is_ok());
        assert_eq!(&a[14..15], "4");
        assert_ne!(a, new_uuid().unwrap());
    }

    proptest::proptest! {
        #[test]
        fn any_query_is_read_or_refused_without_panicking(q in ".{0,80}", name in "[a-zA-Z]{1,12}") {
            let query = Query::parse(Some(&q));
            let _ = query.get(&name);
            let _ = query.flag(&name, true);
        }
    }

    #[test]
    fn query_names_ignore_case_and_repeats_are_refused() {
        let q = Query::parse(Some(
            "returnFaceId=true&RECOGNITIONMODEL=recognition_04&top=1&top=2",
        ));
        assert_eq!(q.get("recognitionModel").unwrap(), Some("recognition_04"));
        assert!(q.flag("returnFaceId", false).unwrap());
        assert!(!q.flag("returnFaceLandmarks", false).unwrap());
        assert!(q.get("top").is_err());
        assert!(Query::parse(Some("x=maybe")).flag("x", true).is_err());
    }
}

#[cfg(test)]
#[path = "tests.rs"]
mod router_tests;
