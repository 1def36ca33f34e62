//! The face recognition network (face-api's `FaceRecognitionNet`, a port of
//! dlib's ResNet-29 face descriptor): a 150x150 face crop in, a 128-d
//! embedding out. Faces of the same person lie within ~0.6 of each other in
//! Euclidean distance.

use crate::image::{square_input, Image, Region};
use crate::ops::{avg_pool_valid, global_mean, max_pool, Conv, Gemm, Pad, Tensor};
use crate::weights::WeightMap;
use crate::VisionError;

/// Side of the square network input.
const INPUT_SIZE: usize = 150;
/// Mean RGB subtracted before dividing by 255.
const MEAN_RGB: [f32; 3] = [122.782, 117.001, 104.298];
/// Embedding dimension.
pub const EMBEDDING_LEN: usize = 128;

/// A 128-d face embedding.
#[derive(Clone, Copy, PartialEq)]
pub struct Embedding(pub [f32; EMBEDDING_LEN]);

impl Embedding {
    /// Euclidean distance; below about 0.6 means "same person".
    pub fn distance(&self, other: &Embedding) -> f32 {
        self.0
            .iter()
            .zip(&other.0)
            .map(|(a, b)| (a - b) * (a - b))
            .sum::<f32>()
            .sqrt()
    }

    /// The 128 values as little-endian `f32`s.
    pub fn to_bytes(&self) -> [u8; EMBEDDING_LEN * 4] {
        let mut out = [0u8; EMBEDDING_LEN * 4];
        for (dst, v) in out.chunks_exact_mut(4).zip(&self.0) {
            dst.copy_from_slice(&v.to_le_bytes());
        }
        out
    }

    /// Inverse of [`Embedding::to_bytes`]; `None` unless `bytes` is exactly 512
    /// bytes of finite values.
    pub fn from_bytes(bytes: &[u8]) -> Option<Embedding> {
        if bytes.len() != EMBEDDING_LEN * 4 {
            return None;
        }
        let mut out = [0.0f32; EMBEDDING_LEN];
        for (v, b) in out.iter_mut().zip(bytes.chunks_exact(4)) {
            *v = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
            if !v.is_finite() {
                return None;
            }
        }
        Some(Embedding(out))
    }
}

impl std::fmt::Debug for Embedding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let norm = self.0.iter().map(|v| v * v).sum::<f32>().sqrt();
        write!(
            f,
            "Embedding([{:.4}, {:.4}, {:.4}, ..; norm {norm:.4}])",
            self.0[0], self.0[1], self.0[2]
        )
    }
}

/// One residual block: two 3x3 convolutions (the first strided when the block
/// halves the resolution) plus the shortcut.
struct Residual {
    conv1: Conv,
    conv2: Conv,
    down: bool,
}

impl Residual {
    fn forward(&self, x: &Tensor) -> Tensor {
        if !self.down {
            let out = self.conv1.forward(x, 1, Pad::uniform(1)).relu();
            return self.conv2.forward(&out, 1, Pad::uniform(1)).add(x).relu();
        }
        let out = self.conv1.forward(x, 2, Pad::VALID).relu();
        let mut out = self.conv2.forward(&out, 1, Pad::uniform(1));
        let pooled = avg_pool_valid(x, 2, 2);
        if (out.h, out.w) != (pooled.h, pooled.w) {
            // face-api appends one zero row and one zero column.
            let mut grown = Tensor::zeros(out.h + 1, out.w + 1, out.c);
            for y in 0..out.h {
                let src = &out.data[y * out.w * out.c..(y + 1) * out.w * out.c];
                grown.data[y * grown.w * out.c..][..src.len()].copy_from_slice(src);
            }
            out = grown;
        }
        assert_eq!((out.h, out.w), (pooled.h, pooled.w));
        // The shortcut is zero-padded in channels.
        for (o, p) in out
            .data
            .chunks_exact_mut(out.c)
            .zip(pooled.data.chunks_exact(pooled.c))
        {
            for (a, b) in o.iter_mut().zip(p) {
                *a += b;
            }
        }
        out.relu()
    }
}

pub(crate) struct Recognizer {
    conv_down: Conv,
    blocks: Vec<Residual>,
    fc: Gemm,
}

/// Loads `{prefix}/conv/{filters,bias}` and folds `{prefix}/scale/{weights,biases}` into it.
fn scaled_conv(
    w: &WeightMap,
    prefix: &str,
    k: usize,
    cin: usize,
    cout: usize,
) -> Result<Conv, VisionError> {
    let mut filters = w.get(&format!("{prefix}/conv/filters"), &[k, k, cin, cout])?;
    let bias = w.get(&format!("{prefix}/conv/bias"), &[cout])?;
    let scale = w.get(&format!("{prefix}/scale/weights"), &[cout])?;
    let shift = w.get(&format!("{prefix}/scale/biases"), &[cout])?;
    for row in filters.chunks_exact_mut(cout) {
        row.iter_mut().zip(&scale).for_each(|(f, s)| *f *= s);
    }
    let bias = bias
        .iter()
        .zip(&scale)
        .zip(&shift)
        .map(|((b, s), t)| b * s + t)
        .collect();
    Ok(Conv::new(&filters, [k, k, cin, cout], bias))
}

impl Recognizer {
    pub(crate) fn load(w: &WeightMap) -> Result<Recognizer, VisionError> {
        let layout: [(&str, usize, usize, bool); 14] = [
            ("conv32_1", 32, 32, false),
            ("conv32_2", 32, 32, false),
            ("conv32_3", 32, 32, false),
            ("conv64_down", 32, 64, true),
            ("conv64_1", 64, 64, false),
            ("conv64_2", 64, 64, false),
            ("conv64_3", 64, 64, false),
            ("conv128_down", 64, 128, true),
            ("conv128_1", 128, 128, false),
            ("conv128_2", 128, 128, false),
            ("conv256_down", 128, 256, true),
            ("conv256_1", 256, 256, false),
            ("conv256_2", 256, 256, false),
            ("conv256_down_out", 256, 256, true),
        ];
        let blocks = layout
            .iter()
            .map(|&(name, cin, cout, down)| {
                Ok(Residual {
                    conv1: scaled_conv(w, &format!("{name}/conv1"), 3, cin, cout)?,
                    conv2: scaled_conv(w, &format!("{name}/conv2"), 3, cout, cout)?,
                    down,
                })
            })
            .collect::<Result<Vec<_>, VisionError>>()?;
        let fc = w.get("fc", &[256, EMBEDDING_LEN])?;
        Ok(Recognizer {
            conv_down: scaled_conv(w, "conv32_down", 7, 3, 32)?,
            blocks,
            fc: Gemm::new(&fc, 256, EMBEDDING_LEN),
        })
    }

    /// Embeds `region` of `img` (padded to a centred square, resized to 150x150).
    pub(crate) fn embed(&self, img: &Image, region: Region) -> Embedding {
        let input = square_input(img, region, INPUT_SIZE, true, MEAN_RGB);
        let x = self.conv_down.forward(&input, 2, Pad::VALID).relu();
        let mut x = max_pool(&x, 3, 2, Pad::VALID);
        for block in &self.blocks {
            x = block.forward(&x);
        }
        let pooled = global_mean(&x);
        let mut out = [0.0f32; EMBEDDING_LEN];
        self.fc.run(&pooled, &[0.0; EMBEDDING_LEN], &mut out);
        Embedding(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedding_bytes_round_trip_and_distance() {
        let mut a = [0.0f32; EMBEDDING_LEN];
        a[0] = 3.0;
        a[127] = -4.0;
        let a = Embedding(a);
        let b = Embedding::from_bytes(&a.to_bytes()).unwrap();
        assert_eq!(a, b);
        assert_eq!(a.distance(&Embedding([0.0; EMBEDDING_LEN])), 5.0);
        assert!(Embedding::from_bytes(&[0; 511]).is_none());
        let mut nan = a.to_bytes();
        nan[..4].copy_from_slice(&f32::NAN.to_le_bytes());
        assert!(Embedding::from_bytes(&nan).is_none());
        assert!(format!("{a:?}").len() < 80);
    }
}
