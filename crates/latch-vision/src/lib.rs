//! The built-in face engine's pure core.
//!
//! * [`decode`] turns JPEG or PNG bytes into an RGB [`Image`];
//! * [`Models`] holds three small networks (weights of the MIT-licensed
//!   `@vladmandic/face-api` 1.7.15, in TensorFlow.js format) and offers
//!   [`Models::detect`] (tiny face detector) and [`Models::embed`]
//!   (68-point landmarks, dlib-style alignment, then the ResNet face
//!   descriptor);
//! * [`Embedding::distance`] compares two faces: below
//!   [`SAME_PERSON_THRESHOLD`] means "same person".
//!
//! Everything runs single-threaded on the CPU in plain Rust. The crate does no
//! I/O: callers hand it bytes.

mod detector;
mod error;
mod image;
mod landmarks;
mod ops;
mod recognizer;
mod weights;

pub use crate::detector::{Detection, FaceRect};
pub use crate::error::VisionError;
pub use crate::image::{decode, Image, MAX_SIDE, MIN_SIDE};
pub use crate::recognizer::{Embedding, EMBEDDING_LEN};

use crate::detector::Detector;
use crate::image::Region;
use crate::landmarks::Landmarker;
use crate::recognizer::Recognizer;
use crate::weights::WeightMap;

/// The customary decision threshold of dlib's face descriptor (Euclidean distance).
pub const SAME_PERSON_THRESHOLD: f32 = 0.6;

/// The face networks with their weights dequantised and packed for inference.
pub struct Models {
    detector: Detector,
    landmarker: Landmarker,
    recognizer: Recognizer,
}

impl std::fmt::Debug for Models {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Models").finish_non_exhaustive()
    }
}

/// One TensorFlow.js model: the `*-weights_manifest.json` bytes and the bytes of
/// its weight file (all shards concatenated in manifest order).
#[derive(Clone, Copy, Debug)]
pub struct ModelFiles<'a> {
    /// The JSON manifest.
    pub manifest: &'a [u8],
    /// The binary weights.
    pub weights: &'a [u8],
}

impl Models {
    /// Loads the three face-api models: `tiny_face_detector_model`,
    /// `face_landmark_68_tiny_model` and `face_recognition_model`.
    pub fn from_files(
        detector: ModelFiles<'_>,
        landmarks: ModelFiles<'_>,
        recognizer: ModelFiles<'_>,
    ) -> Result<Models, VisionError> {
        let load = |m: ModelFiles<'_>| WeightMap::parse(m.manifest, m.weights);
        Ok(Models {
            detector: Detector::load(&load(detector)?)?,
            landmarker: Landmarker::load(&load(landmarks)?)?,
            recognizer: Recognizer::load(&load(recognizer)?)?,
        })
    }

    /// Finds faces: boxes with confidence above 0.5 after non-maximum
    /// suppression (IoU 0.4), clipped to the image, largest area first.
    pub fn detect(&self, img: &Image) -> Vec<Detection> {
        self.detector.detect(img)
    }

    /// Computes the embedding of the face in `rect` (normally a
    /// [`Detection::rect`]). Landmarks are located inside `rect`, and the
    /// embedding is taken from the aligned square they define; if that fails
    /// (degenerate landmarks), from `rect` itself. `rect` is clipped to the image.
    pub fn embed(&self, img: &Image, rect: &FaceRect) -> Embedding {
        let region = clip(img, rect);
        let points = self.landmarker.landmarks(img, region);
        let aligned = landmarks::aligned_region(&points, img.width, img.height).unwrap_or(region);
        self.recognizer.embed(img, aligned)
    }

    /// Embeds `rect` directly, without landmark alignment.
    pub fn embed_unaligned(&self, img: &Image, rect: &FaceRect) -> Embedding {
        self.recognizer.embed(img, clip(img, rect))
    }
}

/// Clips a rectangle to the image, keeping at least one pixel.
fn clip(img: &Image, rect: &FaceRect) -> Region {
    let (iw, ih) = (img.width.max(1), img.height.max(1));
    let x = rect.left.min(iw - 1);
    let y = rect.top.min(ih - 1);
    let w = rect.width.clamp(1, iw - x);
    let h = rect.height.clamp(1, ih - y);
    Region {
        x: x as usize,
        y: y as usize,
        w: w as usize,
        h: h as usize,
    }
}
