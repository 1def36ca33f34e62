//! The crate's single error type.

use thiserror::Error;

/// Everything that can go wrong when decoding an image or loading network weights.
///
/// Inference itself cannot fail: once an [`crate::Image`] and [`crate::Models`] exist,
/// detection and embedding always produce a result.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum VisionError {
    /// The bytes are neither a JPEG nor a PNG.
    #[error("unsupported image format")]
    UnsupportedFormat,
    /// The bytes look like a supported format but could not be decoded.
    #[error("corrupt image: {0}")]
    CorruptImage(String),
    /// The image is smaller than the minimum accepted size.
    #[error("image too small: {width}x{height} (minimum {min}x{min})")]
    ImageTooSmall {
        /// Decoded width in pixels.
        width: u32,
        /// Decoded height in pixels.
        height: u32,
        /// Minimum accepted side length.
        min: u32,
    },
    /// The image is larger than the maximum accepted size.
    #[error("image too large: {width}x{height} (maximum {max}x{max})")]
    ImageTooLarge {
        /// Width in pixels as declared by the file.
        width: u32,
        /// Height in pixels as declared by the file.
        height: u32,
        /// Maximum accepted side length.
        max: u32,
    },
    /// The weights manifest is not valid JSON of the expected structure.
    #[error("bad weights manifest: {0}")]
    BadManifest(String),
    /// The weight data does not have the length the manifest announces.
    #[error("weights data has {actual} bytes, manifest describes {expected}")]
    WeightsLength {
        /// Bytes required by the manifest.
        expected: usize,
        /// Bytes supplied.
        actual: usize,
    },
    /// A tensor the network needs is not in the manifest.
    #[error("missing weight tensor {0:?}")]
    MissingTensor(String),
    /// A tensor has a different shape from the one the network needs.
    #[error("weight tensor {name:?} has shape {actual:?}, expected {expected:?}")]
    TensorShape {
        /// Tensor name.
        name: String,
        /// Shape required by the network.
        expected: Vec<usize>,
        /// Shape found in the manifest.
        actual: Vec<usize>,
    },
}
