//! `detect`: the faces of an image, largest first, with a `faceId` for each when asked
//! (remembered in the store for `faceIdTimeToLive` seconds, 60–86400, default 86400).
//!
//! Landmarks and attributes are not computed by this engine: asking for them is a
//! `BadArgument` that says so, never an answer without them.

use axum::body::Body;
use axum::response::Response;
use latch_store::face::DetectedFace;
use serde_json::{json, Value};

use super::{bad, json, new_uuid, store_error, Ctx, Engine, RECOGNITION_MODELS};
use latch_face::error::FaceError;

/// The most face ids a resource may hold unexpired: they live in the store, so their number
/// is bounded (the engine's bound, not Azure's). Past it, detect asking for face ids is
/// refused with 403 `QuotaExceeded` until some expire.
pub const MAX_LIVE_FACE_IDS: usize = 100_000;

/// The shortest and longest `faceIdTimeToLive`, in seconds.
pub const FACE_ID_TTL: (i64, i64) = (60, 86_400);

/// The options of a detect call.
struct Options {
    recognition_model: String,
    return_recognition_model: bool,
    ttl: i64,
}

fn options(ctx: &Ctx) -> Result<Options, FaceError> {
    let q = &ctx.query;
    let recognition_model = q.get("recognitionModel")?.unwrap_or("recognition_01");
    if !RECOGNITION_MODELS.contains(&recognition_model) {
        return Err(bad("'recognitionModel' is invalid."));
    }
    q.check_detection_model()?;
    if q.flag("returnFaceLandmarks", false)? {
        return Err(bad(
            "Argument returnFaceLandmarks is not supported: this engine does not compute landmarks.",
        ));
    }
    if q.get("returnFaceAttributes")?
        .is_some_and(|a| !a.is_empty())
    {
        return Err(bad(
            "Argument returnFaceAttributes is not supported: this engine does not compute face attributes.",
        ));
    }
    let ttl = match q.get("faceIdTimeToLive")? {
        None => FACE_ID_TTL.1,
        Some(v) => v
            .parse::<i64>()
            .ok()
            .filter(|t| (FACE_ID_TTL.0..=FACE_ID_TTL.1).contains(t))
            .ok_or_else(|| {
                bad("Argument faceIdTimeToLive must be between 60 and 86400 seconds.")
            })?,
    };
    Ok(Options {
        recognition_model: recognition_model.to_owned(),
        return_recognition_model: q.flag("returnRecognitionModel", false)?,
        ttl,
    })
}

/// `POST detect`.
pub(crate) async fn detect(
    engine: &Engine,
    ctx: &Ctx,
    body: Body,
    return_face_id: bool,
) -> Result<Response, FaceError> {
    let options = options(ctx)?;
    let image = engine.images.read(ctx, body).await?;
    let faces = engine.model.faces(image, return_face_id).await?;
    let expires_at = engine.clock.now().plus(options.ttl);
    let mut answer = Vec::with_capacity(faces.len());
    let mut remembered = Vec::new();
    for face in &faces {
        let r = face.rect;
        let mut item = serde_json::Map::new();
        if let (true, Some(embedding)) = (return_face_id, &face.embedding) {
            let face_id = new_uuid()?;
            item.insert("faceId".into(), Value::String(face_id.clone()));
            remembered.push(DetectedFace {
                face_id,
                recognition_model: options.recognition_model.clone(),
                embedding: embedding.to_bytes().to_vec(),
                expires_at,
            });
        }
        item.insert(
            "faceRectangle".into(),
            json!({"top": r.top, "left": r.left, "width": r.width, "height": r.height}),
        );
        if options.return_recognition_model {
            item.insert(
                "recognitionModel".into(),
                Value::String(options.recognition_model.clone()),
            );
        }
        answer.push(Value::Object(item));
    }
    if !remembered.is_empty() {
        engine
            .store
            .save_detected_faces(
                &ctx.resource,
                &remembered,
                engine.clock.now(),
                MAX_LIVE_FACE_IDS,
            )
            .await
            .map_err(store_error)?;
        engine.prune_now_and_then().await;
    }
    Ok(json(Value::Array(answer)))
}
