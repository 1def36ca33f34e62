//! The networks, run off the async threads: each image is decoded, searched for faces and
//! embedded on the blocking pool, at most one image per core at a time, so a burst of large
//! images queues instead of starving the checks in front.

use std::path::Path;
use std::sync::Arc;

use axum::body::Bytes;
use latch_vision::{Embedding, FaceRect, Models, VisionError};
use tokio::sync::Semaphore;

use latch_face::error::{FaceError, Refusal};

/// The most faces `detect` returns, as Azure.
pub const MAX_FACES: usize = 100;

/// The engine's networks.
#[derive(Clone)]
pub struct FaceModel {
    models: Arc<Models>,
    permits: Arc<Semaphore>,
}

impl std::fmt::Debug for FaceModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FaceModel")
            .field("concurrency", &self.permits.available_permits())
            .finish_non_exhaustive()
    }
}

/// A face found in an image.
#[derive(Clone, Debug)]
pub struct FoundFace {
    /// Where, in the image's pixels.
    pub rect: FaceRect,
    /// Its embedding, when asked for.
    pub embedding: Option<Embedding>,
}

impl FaceModel {
    /// The networks whose weight files are under `dir` (as `latch-models` lays them out).
    pub fn load(dir: &Path) -> Result<FaceModel, latch_models::FetchError> {
        latch_models::load_face_api(dir).map(FaceModel::new)
    }

    /// These networks, run on as many images at once as there are cores.
    pub fn new(models: Models) -> FaceModel {
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        FaceModel {
            models: Arc::new(models),
            permits: Arc::new(Semaphore::new(cores)),
        }
    }

    /// The faces of `image` (largest first, at most [`MAX_FACES`]), embedded if `embed`.
    pub async fn faces(&self, image: Bytes, embed: bool) -> Result<Vec<FoundFace>, FaceError> {
        self.run(move |models| {
            let decoded = latch_vision::decode(&image).map_err(image_error)?;
            let mut found: Vec<FoundFace> = models
                .detect(&decoded)
                .into_iter()
                .take(MAX_FACES)
                .map(|d| FoundFace {
                    rect: d.rect,
                    embedding: None,
                })
                .collect();
            if embed {
                for face in &mut found {
                    face.embedding = Some(models.embed(&decoded, &face.rect));
                }
            }
            Ok(found)
        })
        .await
    }

    /// The embedding of the one face of `image`, or of the detected face at `target`.
    pub async fn one_face(
        &self,
        image: Bytes,
        target: Option<FaceRect>,
    ) -> Result<Embedding, FaceError> {
        self.run(move |models| {
            let decoded = latch_vision::decode(&image).map_err(image_error)?;
            let detected = models.detect(&decoded);
            let rect = match target {
                Some(target) => {
                    let inside = u64::from(target.left) + u64::from(target.width)
                        <= u64::from(decoded.width)
                        && u64::from(target.top) + u64::from(target.height)
                            <= u64::from(decoded.height);
                    if !inside || target.width == 0 || target.height == 0 {
                        return Err(FaceError::BadArgument(
                            "Argument targetFace out of range.".into(),
                        ));
                    }
                    // The face the caller points at must be one the detector finds there.
                    detected
                        .iter()
                        .map(|d| (overlap(&d.rect, &target), d.rect))
                        .filter(|(o, _)| *o >= MIN_TARGET_OVERLAP)
                        .max_by(|a, b| a.0.total_cmp(&b.0))
                        .map(|(_, rect)| rect)
                        .ok_or(Refusal::NoFaceInTarget)?
                }
                None => match detected.as_slice() {
                    [] => return Err(no_face()),
                    [one] => one.rect,
                    _ => return Err(Refusal::MoreThanOneFace.into()),
                },
            };
            Ok(models.embed(&decoded, &rect))
        })
        .await
    }

    async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce(&Models) -> Result<T, FaceError> + Send + 'static,
    ) -> Result<T, FaceError> {
        let permit = self
            .permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| FaceError::StoreUnavailable)?;
        let models = self.models.clone();
        // The permit goes with the work: a call dropped while it runs (a timeout, a client
        // gone) keeps its core counted until the work is done.
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            work(&models)
        })
        .await
        .map_err(|_| Refusal::EngineFailed)?
    }
}

/// How much of a detected face must lie in `targetFace` for it to be the face meant.
pub const MIN_TARGET_OVERLAP: f64 = 0.5;

/// The share of `face`'s area inside `target`.
fn overlap(face: &FaceRect, target: &FaceRect) -> f64 {
    let span = |a: u32, a_len: u32, b: u32, b_len: u32| {
        let start = u64::from(a.max(b));
        let end = (u64::from(a) + u64::from(a_len)).min(u64::from(b) + u64::from(b_len));
        end.saturating_sub(start)
    };
    let area = u64::from(face.width) * u64::from(face.height);
    if area == 0 {
        return 0.0;
    }
    let inside = span(face.left, face.width, target.left, target.width)
        * span(face.top, face.height, target.top, target.height);
    inside as f64 / area as f64
}

fn no_face() -> FaceError {
    Refusal::NoFace.into()
}

/// An image the engine cannot use, in Azure's words (and, after them, what was wrong).
fn image_error(e: VisionError) -> FaceError {
    let detail = e.to_string();
    match e {
        VisionError::ImageTooSmall { .. } => Refusal::ImageTooSmall(Some(detail)),
        VisionError::ImageTooLarge { .. } => Refusal::ImageTooBig(Some(detail)),
        _ => Refusal::ImageUndecodable(detail),
    }
    .into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rect(left: u32, top: u32, width: u32, height: u32) -> FaceRect {
        FaceRect {
            left,
            top,
            width,
            height,
        }
    }

    #[test]
    fn overlap_is_the_share_of_the_face_inside_the_target() {
        let face = rect(10, 10, 10, 10);
        assert_eq!(overlap(&face, &rect(0, 0, 100, 100)), 1.0);
        assert_eq!(overlap(&face, &rect(15, 10, 100, 100)), 0.5);
        assert_eq!(overlap(&face, &rect(20, 20, 5, 5)), 0.0);
        assert_eq!(overlap(&face, &rect(0, 0, 10, 10)), 0.0);
        assert_eq!(overlap(&rect(0, 0, 0, 0), &face), 0.0);
        let far = rect(u32::MAX - 1, u32::MAX - 1, u32::MAX, u32::MAX);
        assert_eq!(overlap(&far, &far), 1.0);
    }
}
