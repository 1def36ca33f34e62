//! `identify`, `verify` and `findsimilars`: faces detected earlier (by `faceId`) compared with
//! a trained group's persons, one person's faces, or other detected faces.
//!
//! A `faceId` that is unknown, expired or another resource's is Azure's 404 `FaceNotFound`;
//! faces made under different recognition model names are not compared, as in Azure.

use std::collections::HashMap;

use axum::http::StatusCode;
use axum::response::Response;
use latch_store::face::{DetectedFace, FaceGroup, FaceItem};
use latch_store::StoreError;
use latch_vision::Embedding;
use serde_json::{json, Map, Value};

use super::{bad, confidence, group_not_found, json, store_error, string_member, Ctx, Engine};
use crate::error::FaceError;

/// `isIdentical` and the default identify threshold.
pub const SAME_PERSON: f64 = 0.5;

fn embedding(bytes: &[u8]) -> Result<Embedding, FaceError> {
    Embedding::from_bytes(bytes).ok_or_else(|| {
        tracing::warn!(target: "latch::face", "a stored face embedding does not parse");
        FaceError::StoreUnavailable
    })
}

fn face_not_found() -> FaceError {
    FaceError::refused(StatusCode::NOT_FOUND, "FaceNotFound", "Face is not found.")
}

fn incompatible() -> FaceError {
    bad("'recognitionModel' is incompatible.")
}

fn only_large_person_groups(body: &Map<String, Value>) -> Result<(), FaceError> {
    let given = |name: &str| body.get(name).is_some_and(|v| !v.is_null());
    if given("persongroupid") || given("dynamicpersongroupid") {
        return Err(bad(
            "Only large person groups are supported by this engine: give largePersonGroupId.",
        ));
    }
    Ok(())
}

/// The detected faces named by `ids`, in that order; any missing is a 404.
async fn detected(
    engine: &Engine,
    ctx: &Ctx,
    ids: &[String],
) -> Result<Vec<(DetectedFace, Embedding)>, FaceError> {
    let found = engine
        .store
        .detected_faces(&ctx.resource, ids, engine.clock.now())
        .await
        .map_err(store_error)?;
    ids.iter()
        .map(|id| {
            let face = found
                .iter()
                .find(|f| &f.face_id == id)
                .ok_or_else(face_not_found)?;
            Ok((face.clone(), embedding(&face.embedding)?))
        })
        .collect()
}

/// The group the faces are compared with: it must exist, and the faces must have been
/// detected under its recognition model name.
async fn group_of(
    engine: &Engine,
    ctx: &Ctx,
    group_id: &str,
    faces: &[(DetectedFace, Embedding)],
) -> Result<FaceGroup, FaceError> {
    let group = engine
        .store
        .face_group(&ctx.resource, group_id)
        .await
        .map_err(store_error)?
        .ok_or_else(group_not_found)?;
    if faces
        .iter()
        .any(|(f, _)| f.recognition_model != group.recognition_model)
    {
        return Err(incompatible());
    }
    Ok(group)
}

fn ids_member(body: &Map<String, Value>, name: &str) -> Vec<String> {
    body.get(&name.to_ascii_lowercase())
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_ascii_lowercase)
                .collect()
        })
        .unwrap_or_default()
}

fn id_member(body: &Map<String, Value>, name: &str) -> String {
    string_member(body, name)
        .unwrap_or_default()
        .to_ascii_lowercase()
}

fn number_member(body: &Map<String, Value>, name: &str) -> Option<f64> {
    body.get(&name.to_ascii_lowercase()).and_then(Value::as_f64)
}

/// `POST identify`: for each face, the group's persons most like it, above the threshold.
pub(crate) async fn identify(
    engine: &Engine,
    ctx: &Ctx,
    body: Map<String, Value>,
) -> Result<Response, FaceError> {
    only_large_person_groups(&body)?;
    let group_id = string_member(&body, "largePersonGroupId").unwrap_or_default();
    let max = number_member(&body, "maxNumOfCandidatesReturned").map_or(10, |n| n as usize);
    let threshold = number_member(&body, "confidenceThreshold").unwrap_or(SAME_PERSON);
    let faces = detected(engine, ctx, &ids_member(&body, "faceIds")).await?;
    group_of(engine, ctx, group_id, &faces).await?;
    let Some((Some(_), members)) = engine
        .store
        .trained_faces(&ctx.resource, group_id)
        .await
        .map_err(store_error)?
    else {
        return Err(FaceError::refused(
            StatusCode::BAD_REQUEST,
            "LargePersonGroupNotTrained",
            "Large person group not trained.",
        ));
    };
    // The comparison grows with the group: off the async threads.
    let results = tokio::task::spawn_blocking(move || rank(&faces, members, threshold, max))
        .await
        .map_err(|_| FaceError::StoreUnavailable)??;
    Ok(json(Value::Array(results)))
}

/// For each face, the persons whose best face is at least `threshold` alike, best first.
fn rank(
    faces: &[(DetectedFace, Embedding)],
    members: Vec<latch_store::face::GroupFace>,
    threshold: f64,
    max: usize,
) -> Result<Vec<Value>, FaceError> {
    let members: Vec<(String, Embedding)> = members
        .into_iter()
        .map(|m| Ok((m.person_id, embedding(&m.embedding)?)))
        .collect::<Result<_, FaceError>>()?;
    Ok(faces
        .iter()
        .map(|(face, probe)| {
            let mut best: HashMap<&str, f32> = HashMap::new();
            for (person, e) in &members {
                let d = probe.distance(e);
                best.entry(person)
                    .and_modify(|b| *b = b.min(d))
                    .or_insert(d);
            }
            let mut candidates: Vec<(&str, f64)> = best
                .into_iter()
                .map(|(p, d)| (p, confidence(d)))
                .filter(|(_, c)| *c >= threshold)
                .collect();
            candidates.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(b.0)));
            candidates.truncate(max);
            json!({
                "faceId": face.face_id,
                "candidates": candidates
                    .iter()
                    .map(|(p, c)| json!({"personId": p, "confidence": c}))
                    .collect::<Vec<_>>(),
            })
        })
        .collect())
}

/// `POST verify`: face to face, or face to a person of a large person group.
pub(crate) async fn verify(
    engine: &Engine,
    ctx: &Ctx,
    body: Map<String, Value>,
) -> Result<Response, FaceError> {
    only_large_person_groups(&body)?;
    let distance = if body.contains_key("faceid1") {
        let ids = [id_member(&body, "faceId1"), id_member(&body, "faceId2")];
        let faces = detected(engine, ctx, &ids).await?;
        if faces[0].0.recognition_model != faces[1].0.recognition_model {
            return Err(incompatible());
        }
        faces[0].1.distance(&faces[1].1)
    } else {
        let faces = detected(engine, ctx, &[id_member(&body, "faceId")]).await?;
        let group_id = string_member(&body, "largePersonGroupId").unwrap_or_default();
        let person_id = id_member(&body, "personId");
        group_of(engine, ctx, group_id, &faces).await?;
        let person = engine
            .store
            .face_person(&ctx.resource, group_id, &person_id)
            .await
            .map_err(store_error)?
            .ok_or_else(|| store_error(StoreError::FaceNotFound(FaceItem::Person)))?;
        let mut best: Option<f32> = None;
        for face_id in &person.persisted_face_ids {
            if let Some(face) = engine
                .store
                .persisted_face(&ctx.resource, group_id, &person_id, face_id)
                .await
                .map_err(store_error)?
            {
                let d = faces[0].1.distance(&embedding(&face.embedding)?);
                best = Some(best.map_or(d, |b| b.min(d)));
            }
        }
        best.ok_or_else(|| bad("The person has no persisted faces."))?
    };
    let c = confidence(distance);
    Ok(json(
        json!({ "isIdentical": c >= SAME_PERSON, "confidence": c }),
    ))
}

/// `POST findsimilars`: among the faces given, those most like the face.
pub(crate) async fn find_similar(
    engine: &Engine,
    ctx: &Ctx,
    body: Map<String, Value>,
) -> Result<Response, FaceError> {
    if body.contains_key("largefacelistid") {
        return Err(FaceError::refused(
            StatusCode::NOT_FOUND,
            "LargeFaceListNotFound",
            "Large face list is not found.",
        ));
    }
    if body.contains_key("facelistid") {
        return Err(FaceError::refused(
            StatusCode::NOT_FOUND,
            "FaceListNotFound",
            "Face list is not found.",
        ));
    }
    let match_person = match string_member(&body, "mode") {
        None => true,
        Some(m) if m.eq_ignore_ascii_case("matchPerson") => true,
        Some(m) if m.eq_ignore_ascii_case("matchFace") => false,
        Some(_) => return Err(bad("Argument mode is invalid.")),
    };
    let max = number_member(&body, "maxNumOfCandidatesReturned").map_or(20, |n| n as usize);
    let probe = detected(engine, ctx, &[id_member(&body, "faceId")]).await?;
    let (probe_face, probe) = &probe[0];
    let candidates = detected(engine, ctx, &ids_member(&body, "faceIds")).await?;
    let mut similar: Vec<(String, f64)> = Vec::new();
    for (face, e) in &candidates {
        if face.recognition_model != probe_face.recognition_model {
            return Err(incompatible());
        }
        let c = confidence(probe.distance(e));
        if !match_person || c >= SAME_PERSON {
            similar.push((face.face_id.clone(), c));
        }
    }
    similar.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    similar.truncate(max);
    Ok(json(Value::Array(
        similar
            .iter()
            .map(|(id, c)| json!({"faceId": id, "confidence": c}))
            .collect(),
    )))
}
