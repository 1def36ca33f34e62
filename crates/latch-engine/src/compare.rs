//! `identify`, `verify` and `findsimilars`: faces detected earlier (by `faceId`) compared with
//! a trained group's persons, one person's faces, or other detected faces.
//!
//! A `faceId` that is unknown, expired or another resource's is Azure's 404 `FaceNotFound`;
//! faces made under different recognition model names are not compared, as in Azure.

use std::collections::HashMap;

use axum::response::Response;
use latch_store::face::DetectedFace;
use latch_vision::Embedding;
use serde_json::{json, Value};

use super::{bad, confidence, json, store_error, Ctx, Engine};
use latch_face::body::{FindSimilarRequest, IdentifyRequest, VerifyRequest, VerifyTarget};
use latch_face::error::{FaceError, Refusal};
use latch_face::ids::{FaceId, GroupId, PersonId};

/// `isIdentical` and the default identify threshold.
pub const SAME_PERSON: f64 = 0.5;

fn embedding(bytes: &[u8]) -> Result<Embedding, FaceError> {
    Embedding::from_bytes(bytes).ok_or_else(|| {
        tracing::warn!(target: "latch::face", "a stored face embedding does not parse");
        FaceError::StoreUnavailable
    })
}

fn incompatible() -> FaceError {
    bad("'recognitionModel' is incompatible.")
}

fn only_large_person_groups(names_other_group_kind: bool) -> Result<(), FaceError> {
    if names_other_group_kind {
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
    ids: &[FaceId],
) -> Result<Vec<(DetectedFace, Embedding)>, FaceError> {
    let ids: Vec<String> = ids.iter().map(|id| id.as_str().to_owned()).collect();
    let found = engine
        .store
        .detected_faces(&ctx.resource, &ids, engine.clock.now())
        .await
        .map_err(store_error)?;
    ids.iter()
        .map(|id| {
            let face = found
                .iter()
                .find(|f| &f.face_id == id)
                .ok_or(Refusal::FaceNotFound)?;
            Ok((face.clone(), embedding(&face.embedding)?))
        })
        .collect()
}

/// The group the faces are compared with: it must exist, and the faces must have been
/// detected under its recognition model name.
async fn group_of<'a>(
    engine: &Engine,
    ctx: &Ctx,
    group_id: Option<&'a GroupId>,
    faces: &[(DetectedFace, Embedding)],
) -> Result<&'a GroupId, FaceError> {
    // A group given as a list rather than an id names none.
    let Some(group_id) = group_id else {
        return Err(Refusal::GroupNotFound.into());
    };
    let group = engine
        .store
        .face_group(&ctx.resource, group_id.as_str())
        .await
        .map_err(store_error)?
        .ok_or(Refusal::GroupNotFound)?;
    if faces
        .iter()
        .any(|(f, _)| f.recognition_model != group.recognition_model)
    {
        return Err(incompatible());
    }
    Ok(group_id)
}

/// `POST identify`: for each face, the group's persons most like it, above the threshold.
pub(crate) async fn identify(
    engine: &Engine,
    ctx: &Ctx,
    request: IdentifyRequest,
) -> Result<Response, FaceError> {
    only_large_person_groups(request.names_other_group_kind)?;
    let max = request.max_candidates.unwrap_or(10);
    let threshold = request.confidence_threshold.unwrap_or(SAME_PERSON);
    let faces = detected(engine, ctx, &request.face_ids).await?;
    let group_id = group_of(engine, ctx, request.large_person_group.as_ref(), &faces)
        .await?
        .as_str();
    let Some((Some(_), members)) = engine
        .store
        .trained_faces(&ctx.resource, group_id)
        .await
        .map_err(store_error)?
    else {
        return Err(Refusal::GroupNotTrained.into());
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
    request: VerifyRequest,
) -> Result<Response, FaceError> {
    only_large_person_groups(request.names_other_group_kind)?;
    let distance = match request.target {
        VerifyTarget::Faces(face1, face2) => {
            let faces = detected(engine, ctx, &[face1, face2]).await?;
            if faces[0].0.recognition_model != faces[1].0.recognition_model {
                return Err(incompatible());
            }
            faces[0].1.distance(&faces[1].1)
        }
        VerifyTarget::Person {
            face,
            person,
            large_person_group,
        } => {
            let faces = detected(engine, ctx, &[face]).await?;
            let group = group_of(engine, ctx, large_person_group.as_ref(), &faces).await?;
            closest_face_of(engine, ctx, group, &person, &faces[0].1).await?
        }
    };
    let c = confidence(distance);
    Ok(json(
        json!({ "isIdentical": c >= SAME_PERSON, "confidence": c }),
    ))
}

/// The distance from `probe` to the closest persisted face of the person.
async fn closest_face_of(
    engine: &Engine,
    ctx: &Ctx,
    group_id: &GroupId,
    person_id: &PersonId,
    probe: &Embedding,
) -> Result<f32, FaceError> {
    let (group_id, person_id) = (group_id.as_str(), person_id.as_str());
    let person = engine
        .store
        .face_person(&ctx.resource, group_id, person_id)
        .await
        .map_err(store_error)?
        .ok_or(Refusal::PersonNotFound)?;
    let mut best: Option<f32> = None;
    for face_id in &person.persisted_face_ids {
        if let Some(face) = engine
            .store
            .persisted_face(&ctx.resource, group_id, person_id, face_id)
            .await
            .map_err(store_error)?
        {
            let d = probe.distance(&embedding(&face.embedding)?);
            best = Some(best.map_or(d, |b| b.min(d)));
        }
    }
    best.ok_or_else(|| bad("The person has no persisted faces."))
}

/// `POST findsimilars`: among the faces given, those most like the face.
pub(crate) async fn find_similar(
    engine: &Engine,
    ctx: &Ctx,
    request: FindSimilarRequest,
) -> Result<Response, FaceError> {
    if request.names_large_face_list {
        return Err(Refusal::LargeFaceListNotFound.into());
    }
    if request.names_face_list {
        return Err(Refusal::FaceListNotFound.into());
    }
    let match_person = match request.mode.as_deref() {
        None => true,
        Some(m) if m.eq_ignore_ascii_case("matchPerson") => true,
        Some(m) if m.eq_ignore_ascii_case("matchFace") => false,
        Some(_) => return Err(bad("Argument mode is invalid.")),
    };
    let max = request.max_candidates.unwrap_or(20);
    let probe = detected(engine, ctx, &[request.face_id]).await?;
    let (probe_face, probe) = &probe[0];
    let candidates = detected(engine, ctx, &request.face_ids).await?;
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
