//! Large person groups, their persons and persisted faces, training, and the status of the
//! training operation.
//!
//! Training is a snapshot (see [`latch_store::face`]): it finishes within the call, so its
//! operation has succeeded by the time the caller polls `operation-Location`. Operations are
//! remembered in the store for a day ([`OPERATION_TTL`]), so any replica answers their status.

use axum::body::Body;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use latch_core::ResourceId;
use latch_store::face::{FaceGroup, FaceItem, FaceLimits, FacePerson, PersistedFace};
use latch_vision::{Embedding, FaceRect};
use serde_json::{json, Value};

use super::{bad, empty, json, new_uuid, not_found, store_error, Ctx, Engine, RECOGNITION_MODELS};
use latch_face::body::NamedRequest;
use latch_face::error::{FaceError, Refusal};
use latch_face::ids::{FacePath, GroupId, OperationId, PersonPath};

/// The most faces a person may have, as Azure.
pub const MAX_FACES_PER_PERSON: usize = 248;
/// The most faces a large person group may hold, all persons together: identification reads
/// them all (51 MB of embeddings at this bound), so the bound is the engine's, not Azure's.
pub const MAX_FACES_PER_GROUP: usize = 100_000;
/// Both bounds, as the store checks them.
pub const FACE_LIMITS: FaceLimits = FaceLimits {
    per_person: MAX_FACES_PER_PERSON,
    per_group: MAX_FACES_PER_GROUP,
};
/// How long an operation is remembered, in seconds.
pub const OPERATION_TTL: i64 = 86_400;
/// The longest `userData` of a persisted face, in characters.
pub const MAX_FACE_USER_DATA: usize = 1024;

fn group_json(group: &FaceGroup, with_model: bool) -> Value {
    let mut v = json!({
        "largePersonGroupId": group.group_id,
        "name": group.name,
        "userData": group.user_data,
    });
    if with_model {
        v["recognitionModel"] = Value::String(group.recognition_model.clone());
    }
    v
}

fn person_json(person: &FacePerson) -> Value {
    json!({
        "personId": person.person_id,
        "name": person.name,
        "userData": person.user_data,
        "persistedFaceIds": person.persisted_face_ids,
    })
}

/// `start` and `top` of a list call.
fn paging(ctx: &Ctx) -> Result<(Option<String>, usize), FaceError> {
    let start = ctx.query.get("start")?;
    if start.is_some_and(|s| s.len() > 64) {
        return Err(bad("'start' is too long."));
    }
    let top = match ctx.query.get("top")? {
        None => 1000,
        Some(t) => t
            .parse::<usize>()
            .ok()
            .filter(|t| (1..=1000).contains(t))
            .ok_or_else(|| bad("'top' is invalid."))?,
    };
    Ok((start.map(str::to_owned), top))
}

/// `PUT largepersongroups/{id}`.
pub(crate) async fn create_group(
    engine: &Engine,
    ctx: &Ctx,
    group_id: &GroupId,
    request: NamedRequest,
) -> Result<Response, FaceError> {
    let model = request
        .recognition_model
        .as_deref()
        .unwrap_or("recognition_01");
    if !RECOGNITION_MODELS.contains(&model) {
        return Err(bad("'recognitionModel' is invalid."));
    }
    let group = FaceGroup {
        group_id: group_id.as_str().to_owned(),
        name: request.name,
        user_data: request.user_data,
        recognition_model: model.to_owned(),
        created_at: engine.clock.now(),
        training: None,
    };
    engine
        .store
        .create_face_group(&ctx.resource, &group)
        .await
        .map_err(store_error)?;
    Ok(empty())
}

async fn group(engine: &Engine, ctx: &Ctx, group_id: &GroupId) -> Result<FaceGroup, FaceError> {
    engine
        .store
        .face_group(&ctx.resource, group_id.as_str())
        .await
        .map_err(store_error)?
        .ok_or_else(|| Refusal::GroupNotFound.into())
}

/// `GET largepersongroups/{id}`.
pub(crate) async fn get_group(
    engine: &Engine,
    ctx: &Ctx,
    group_id: &GroupId,
) -> Result<Response, FaceError> {
    let with_model = ctx.query.flag("returnRecognitionModel", false)?;
    Ok(json(group_json(
        &group(engine, ctx, group_id).await?,
        with_model,
    )))
}

/// `GET largepersongroups`.
pub(crate) async fn list_groups(engine: &Engine, ctx: &Ctx) -> Result<Response, FaceError> {
    let (start, top) = paging(ctx)?;
    let with_model = ctx.query.flag("returnRecognitionModel", false)?;
    let groups = engine
        .store
        .face_groups(&ctx.resource, start.as_deref(), top)
        .await
        .map_err(store_error)?;
    Ok(json(Value::Array(
        groups.iter().map(|g| group_json(g, with_model)).collect(),
    )))
}

/// `DELETE largepersongroups/{id}`.
pub(crate) async fn delete_group(
    engine: &Engine,
    ctx: &Ctx,
    group_id: &GroupId,
) -> Result<Response, FaceError> {
    engine
        .store
        .delete_face_group(&ctx.resource, group_id.as_str())
        .await
        .map_err(store_error)?;
    Ok(empty())
}

/// `POST largepersongroups/{id}/persons`.
pub(crate) async fn create_person(
    engine: &Engine,
    ctx: &Ctx,
    group_id: &GroupId,
    request: NamedRequest,
) -> Result<Response, FaceError> {
    let person = FacePerson {
        person_id: new_uuid()?,
        name: request.name,
        user_data: request.user_data,
        persisted_face_ids: Vec::new(),
    };
    engine
        .store
        .create_face_person(&ctx.resource, group_id.as_str(), &person)
        .await
        .map_err(store_error)?;
    Ok(json(json!({ "personId": person.person_id })))
}

/// `GET largepersongroups/{id}/persons/{personId}`.
pub(crate) async fn get_person(
    engine: &Engine,
    ctx: &Ctx,
    path: &PersonPath,
) -> Result<Response, FaceError> {
    let person = engine
        .store
        .face_person(&ctx.resource, path.group.as_str(), path.person.as_str())
        .await
        .map_err(store_error)?;
    match person {
        Some(person) => Ok(json(person_json(&person))),
        None => Err(missing(engine, ctx, path, FaceItem::Person).await),
    }
}

/// Why a lookup under `largepersongroups/{id}/persons/{personId}` found nothing, in the order
/// Azure names it: the group, then the person, then `what` itself.
async fn missing(engine: &Engine, ctx: &Ctx, path: &PersonPath, what: FaceItem) -> FaceError {
    let (group_id, person_id) = (path.group.as_str(), path.person.as_str());
    match engine.store.face_group(&ctx.resource, group_id).await {
        Err(e) => return store_error(e),
        Ok(None) => return Refusal::GroupNotFound.into(),
        Ok(Some(_)) => {}
    }
    if what == FaceItem::PersistedFace {
        match engine
            .store
            .face_person(&ctx.resource, group_id, person_id)
            .await
        {
            Err(e) => return store_error(e),
            Ok(None) => return Refusal::PersonNotFound.into(),
            Ok(Some(_)) => {}
        }
    }
    not_found(what).into()
}

/// `GET largepersongroups/{id}/persons`.
pub(crate) async fn list_persons(
    engine: &Engine,
    ctx: &Ctx,
    group_id: &GroupId,
) -> Result<Response, FaceError> {
    let (start, top) = paging(ctx)?;
    let persons = engine
        .store
        .face_persons(&ctx.resource, group_id.as_str(), start.as_deref(), top)
        .await
        .map_err(store_error)?;
    Ok(json(Value::Array(
        persons.iter().map(person_json).collect(),
    )))
}

/// `DELETE largepersongroups/{id}/persons/{personId}`.
pub(crate) async fn delete_person(
    engine: &Engine,
    ctx: &Ctx,
    path: &PersonPath,
) -> Result<Response, FaceError> {
    engine
        .store
        .delete_face_person(&ctx.resource, path.group.as_str(), path.person.as_str())
        .await
        .map_err(store_error)?;
    Ok(empty())
}

/// `targetFace=left,top,width,height`.
fn target_face(ctx: &Ctx) -> Result<Option<FaceRect>, FaceError> {
    ctx.query.get("targetFace")?.map(parse_rect).transpose()
}

/// `left,top,width,height`, in pixels, width and height at least 1.
fn parse_rect(raw: &str) -> Result<FaceRect, FaceError> {
    let parts: Vec<Option<u32>> = raw.split(',').map(|p| p.trim().parse().ok()).collect();
    match parts.as_slice() {
        [Some(left), Some(top), Some(width), Some(height)] if *width > 0 && *height > 0 => {
            Ok(FaceRect {
                left: *left,
                top: *top,
                width: *width,
                height: *height,
            })
        }
        _ => Err(bad("Invalid argument targetFace.")),
    }
}

/// `POST largepersongroups/{id}/persons/{personId}/persistedfaces`: the image's one face
/// (or the face at `targetFace`) is embedded and kept; the image is not.
pub(crate) async fn add_face(
    engine: &Engine,
    ctx: &Ctx,
    path: &PersonPath,
    body: Body,
) -> Result<Response, FaceError> {
    let user_data = ctx.query.get("userData")?.map(str::to_owned);
    if user_data
        .as_deref()
        .is_some_and(|u| u.chars().count() > MAX_FACE_USER_DATA)
    {
        return Err(bad("'userData' is too long."));
    }
    ctx.query.check_detection_model()?;
    let target = target_face(ctx)?;
    // The person must exist before the image is worked on.
    let (group_id, person_id) = (path.group.as_str(), path.person.as_str());
    if engine
        .store
        .face_person(&ctx.resource, group_id, person_id)
        .await
        .map_err(store_error)?
        .is_none()
    {
        return Err(missing(engine, ctx, path, FaceItem::Person).await);
    }
    let image = engine.images.read(ctx, body).await?;
    let embedding = engine.model.one_face(image, target).await?;
    let face_id = persist_face(
        engine,
        &ctx.resource,
        (group_id, person_id),
        &embedding,
        user_data,
    )
    .await?;
    Ok(json(json!({ "persistedFaceId": face_id })))
}

/// Keeps a face's embedding for the person `(group_id, person_id)`, within [`FACE_LIMITS`];
/// the new `persistedFaceId`.
pub(crate) async fn persist_face(
    engine: &Engine,
    resource: &ResourceId,
    (group_id, person_id): (&str, &str),
    embedding: &Embedding,
    user_data: Option<String>,
) -> Result<String, FaceError> {
    let persisted = PersistedFace {
        face_id: new_uuid()?,
        user_data,
        embedding: embedding.to_bytes().to_vec(),
    };
    engine
        .store
        .add_persisted_face(resource, group_id, person_id, &persisted, FACE_LIMITS)
        .await
        .map_err(store_error)?;
    Ok(persisted.face_id)
}

/// `GET .../persistedfaces/{persistedFaceId}`.
pub(crate) async fn get_face(
    engine: &Engine,
    ctx: &Ctx,
    path: &FacePath,
) -> Result<Response, FaceError> {
    let face = engine
        .store
        .persisted_face(
            &ctx.resource,
            path.person.group.as_str(),
            path.person.person.as_str(),
            path.face.as_str(),
        )
        .await
        .map_err(store_error)?;
    match face {
        Some(face) => Ok(json(
            json!({ "persistedFaceId": face.face_id, "userData": face.user_data }),
        )),
        None => Err(missing(engine, ctx, &path.person, FaceItem::PersistedFace).await),
    }
}

/// `DELETE .../persistedfaces/{persistedFaceId}`.
pub(crate) async fn delete_face(
    engine: &Engine,
    ctx: &Ctx,
    path: &FacePath,
) -> Result<Response, FaceError> {
    engine
        .store
        .delete_persisted_face(
            &ctx.resource,
            path.person.group.as_str(),
            path.person.person.as_str(),
            path.face.as_str(),
        )
        .await
        .map_err(store_error)?;
    Ok(empty())
}

/// `POST largepersongroups/{id}/train`: 202, with `operation-Location` to poll.
pub(crate) async fn train(
    engine: &Engine,
    ctx: &Ctx,
    group_id: &GroupId,
) -> Result<Response, FaceError> {
    let now = engine.clock.now();
    engine
        .store
        .train_face_group(&ctx.resource, group_id.as_str(), now)
        .await
        .map_err(store_error)?;
    let id = new_uuid()?;
    engine
        .store
        .record_face_operation(&ctx.resource, &id, now, now.plus(-OPERATION_TTL))
        .await
        .map_err(store_error)?;
    let mut response = StatusCode::ACCEPTED.into_response();
    // Absolute, as Azure gives it: the SDKs poll it as it is. The host is the one the caller
    // reached (a host with characters a URL cannot hold leaves the path alone).
    let path = format!("/face/{}/operations/{id}", ctx.version);
    let location = match ctx.host.as_deref() {
        Some(host) if host.parse::<axum::http::uri::Authority>().is_ok() => {
            format!("{}://{host}{path}", ctx.scheme)
        }
        _ => path,
    };
    if let Ok(v) = HeaderValue::from_str(&location) {
        response.headers_mut().insert("operation-location", v);
    }
    // The operation has finished: poll at once.
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    Ok(response)
}

/// `GET largepersongroups/{id}/training`.
pub(crate) async fn training_status(
    engine: &Engine,
    ctx: &Ctx,
    group_id: &GroupId,
) -> Result<Response, FaceError> {
    let group = group(engine, ctx, group_id).await?;
    let created = group.created_at.to_rfc3339();
    Ok(json(match group.training {
        Some(t) => json!({
            "status": "succeeded",
            "createdDateTime": created,
            "lastActionDateTime": t.trained_at.to_rfc3339(),
            "lastSuccessfulTrainingDateTime": t.trained_at.to_rfc3339(),
        }),
        None => json!({
            "status": "notStarted",
            "createdDateTime": created,
            "lastActionDateTime": null,
            "lastSuccessfulTrainingDateTime": null,
        }),
    }))
}

/// `GET operations/{operationId}`.
pub(crate) async fn operation_status(
    engine: &Engine,
    ctx: &Ctx,
    operation_id: &OperationId,
) -> Result<Response, FaceError> {
    let id = operation_id.as_str();
    let now = engine.clock.now();
    let at = engine
        .store
        .face_operation(&ctx.resource, id)
        .await
        .map_err(store_error)?
        .filter(|at| at.0 > now.0 - OPERATION_TTL)
        .ok_or(Refusal::OperationNotFound)?;
    let t = at.to_rfc3339();
    Ok(json(json!({
        "operationId": id,
        "status": "succeeded",
        "createdTime": t,
        "lastActionTime": t,
        "finishedTime": t,
        "message": null,
    })))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn target_faces_are_four_numbers_with_a_size() {
        let r = parse_rect("10, 20,30,40").unwrap();
        assert_eq!((r.left, r.top, r.width, r.height), (10, 20, 30, 40));
        for bad in [
            "",
            "1,2,3",
            "1,2,3,4,5",
            "1,2,0,4",
            "1,2,3,0",
            "-1,2,3,4",
            "a,b,c,d",
            "1;2;3;4",
            "4294967296,0,1,1",
        ] {
            assert!(parse_rect(bad).is_err(), "{bad}");
        }
    }

    proptest! {
        #[test]
        fn any_target_face_text_parses_or_is_refused(raw in ".{0,40}") {
            if let Ok(r) = parse_rect(&raw) {
                prop_assert!(r.width > 0 && r.height > 0);
                let again = parse_rect(&format!("{},{},{},{}", r.left, r.top, r.width, r.height)).unwrap();
                prop_assert_eq!(again, r);
            }
        }

        #[test]
        fn numbers_round_trip(l: u32, t: u32, w in 1u32.., h in 1u32..) {
            let r = parse_rect(&format!("{l},{t},{w},{h}")).unwrap();
            prop_assert_eq!((r.left, r.top, r.width, r.height), (l, t, w, h));
        }
    }
}
