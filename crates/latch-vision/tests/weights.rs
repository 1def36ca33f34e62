//! Loading weights: damaged or mismatched weight files must be rejected.

mod common;

use latch_vision::{ModelFiles, Models, VisionError};

fn load(det: (&[u8], &[u8])) -> Result<Models, VisionError> {
    let lm = common::model_bytes("face_landmark_68_tiny_model");
    let rec = common::model_bytes("face_recognition_model");
    Models::from_files(
        ModelFiles {
            manifest: det.0,
            weights: det.1,
        },
        ModelFiles {
            manifest: &lm.0,
            weights: &lm.1,
        },
        ModelFiles {
            manifest: &rec.0,
            weights: &rec.1,
        },
    )
}

#[test]
fn genuine_weights_load() {
    let det = common::model_bytes("tiny_face_detector_model");
    load((&det.0, &det.1)).unwrap();
}

#[test]
fn truncated_weights_are_rejected() {
    let (manifest, bin) = common::model_bytes("tiny_face_detector_model");
    let err = load((&manifest, &bin[..bin.len() - 1])).unwrap_err();
    assert_eq!(
        err,
        VisionError::WeightsLength {
            expected: bin.len(),
            actual: bin.len() - 1
        }
    );
    assert!(matches!(
        load((&manifest, &[])),
        Err(VisionError::WeightsLength { .. })
    ));
}

#[test]
fn extra_weight_bytes_are_rejected() {
    let (manifest, mut bin) = common::model_bytes("tiny_face_detector_model");
    bin.push(0);
    assert!(matches!(
        load((&manifest, &bin)),
        Err(VisionError::WeightsLength { .. })
    ));
}

#[test]
fn manifest_missing_a_tensor_is_rejected() {
    // Drop the last tensor (conv8/bias, 25 uint8 values) and its bytes.
    let (manifest, bin) = common::model_bytes("tiny_face_detector_model");
    let mut json: serde_json::Value = serde_json::from_slice(&manifest).unwrap();
    let weights = json[0]["weights"].as_array_mut().unwrap();
    let last = weights.pop().unwrap();
    assert_eq!(last["name"], "conv8/bias");
    let manifest = serde_json::to_vec(&json).unwrap();
    let err = load((&manifest, &bin[..bin.len() - 25])).unwrap_err();
    assert_eq!(err, VisionError::MissingTensor("conv8/bias".into()));
}

#[test]
fn wrong_shape_and_bad_json_are_rejected() {
    let (manifest, bin) = common::model_bytes("tiny_face_detector_model");
    // Same element count, different shape.
    let text = String::from_utf8(manifest.clone()).unwrap();
    let reshaped = text.replacen("[3,3,3,16]", "[3,3,16,3]", 1);
    assert_ne!(reshaped, text, "manifest layout changed");
    assert!(matches!(
        load((reshaped.as_bytes(), &bin)),
        Err(VisionError::TensorShape { .. })
    ));
    assert!(matches!(
        load((b"not json", &bin)),
        Err(VisionError::BadManifest(_))
    ));
    assert!(matches!(
        load((&manifest[..manifest.len() / 2], &bin)),
        Err(VisionError::BadManifest(_))
    ));
}
