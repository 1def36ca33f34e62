//! The tiny 68-point face landmark network (face-api's `FaceLandmark68TinyNet`)
//! and the dlib-style face alignment box derived from its landmarks, which is
//! the crop the recognition network expects.

use crate::image::{square_input, Image, Region};
use crate::ops::{global_mean, Conv, Gemm, Pad, SeparableConv, Tensor};
use crate::weights::WeightMap;
use crate::VisionError;

/// Side of the square network input.
const INPUT_SIZE: usize = 112;
/// Mean RGB subtracted before dividing by 255.
const MEAN_RGB: [f32; 3] = [122.782, 117.001, 104.298];
/// Number of landmarks.
const POINTS: usize = 68;

enum FirstConv {
    Plain(Conv),
    Separable(SeparableConv),
}

/// Three convolutions with dense (summed) skip connections; the first halves
/// the resolution.
struct DenseBlock {
    conv0: FirstConv,
    conv1: SeparableConv,
    conv2: SeparableConv,
}

impl DenseBlock {
    fn forward(&self, x: &Tensor) -> Tensor {
        let pad = Pad::same(x.h, x.w, 3, 2);
        let out1 = match &self.conv0 {
            FirstConv::Plain(c) => c.forward(x, 2, pad),
            FirstConv::Separable(c) => c.forward(x, 2, pad),
        }
        .relu();
        let out2 = self.conv1.forward(&out1, 1, Pad::uniform(1));
        let in3 = out2.clone().add(&out1).relu();
        let out3 = self.conv2.forward(&in3, 1, Pad::uniform(1));
        out3.add(&out2).add(&out1).relu()
    }
}

pub(crate) struct Landmarker {
    blocks: [DenseBlock; 3],
    fc: Gemm,
    fc_bias: Vec<f32>,
}

/// A point in image pixel coordinates.
pub(crate) type Point = (f32, f32);

impl Landmarker {
    pub(crate) fn load(w: &WeightMap) -> Result<Landmarker, VisionError> {
        let block = |i: usize, cin: usize, cout: usize| -> Result<DenseBlock, VisionError> {
            let conv0 = if i == 0 {
                FirstConv::Plain(w.conv("dense0/conv0", 3, cin, cout)?)
            } else {
                FirstConv::Separable(w.separable(&format!("dense{i}/conv0"), cin, cout)?)
            };
            Ok(DenseBlock {
                conv0,
                conv1: w.separable(&format!("dense{i}/conv1"), cout, cout)?,
                conv2: w.separable(&format!("dense{i}/conv2"), cout, cout)?,
            })
        };
        let fc = w.get("fc/weights", &[128, POINTS * 2])?;
        Ok(Landmarker {
            blocks: [block(0, 3, 32)?, block(1, 32, 64)?, block(2, 64, 128)?],
            fc: Gemm::new(&fc, 128, POINTS * 2),
            fc_bias: w.get("fc/bias", &[POINTS * 2])?,
        })
    }

    /// The 68 landmarks of the face in `region`, in image pixels.
    pub(crate) fn landmarks(&self, img: &Image, region: Region) -> Vec<Point> {
        let mut x = square_input(img, region, INPUT_SIZE, true, MEAN_RGB);
        for block in &self.blocks {
            x = block.forward(&x);
        }
        let features = global_mean(&x);
        let mut out = vec![0.0f32; POINTS * 2];
        self.fc.run(&features, &self.fc_bias, &mut out);
        // Undo the centred square padding as face-api does.
        let (w, h) = (region.w as f32, region.h as f32);
        let scale = INPUT_SIZE as f32 / w.max(h);
        let (sw, sh) = (w * scale, h * scale);
        let pad_x = if sw < sh { (sh - sw) / 2.0 } else { 0.0 };
        let pad_y = if sh < sw { (sw - sh) / 2.0 } else { 0.0 };
        out.chunks_exact(2)
            .map(|p| {
                let rx = (p[0] * INPUT_SIZE as f32 - pad_x) / sw;
                let ry = (p[1] * INPUT_SIZE as f32 - pad_y) / sh;
                (region.x as f32 + rx * w, region.y as f32 + ry * h)
            })
            .collect()
    }
}

/// face-api's dlib-style alignment box: a square of side
/// `mean eye-to-mouth distance / 0.45`, positioned so the centroid of
/// (left eye, right eye, mouth) sits at (0.5, 0.43) of it; clipped to the image.
pub(crate) fn aligned_region(points: &[Point], width: u32, height: u32) -> Option<Region> {
    if points.len() != POINTS {
        return None;
    }
    let centre = |range: std::ops::Range<usize>| -> Point {
        let n = range.len() as f32;
        let (sx, sy) = points[range]
            .iter()
            .fold((0.0, 0.0), |(a, b), p| (a + p.0, b + p.1));
        (sx / n, sy / n)
    };
    let left_eye = centre(36..42);
    let right_eye = centre(42..48);
    let mouth = centre(48..68);
    let dist = |p: Point| ((mouth.0 - p.0).powi(2) + (mouth.1 - p.1).powi(2)).sqrt();
    let size = ((dist(left_eye) + dist(right_eye)) / 2.0 / 0.45).floor();
    let rx = (left_eye.0 + right_eye.0 + mouth.0) / 3.0;
    let ry = (left_eye.1 + right_eye.1 + mouth.1) / 3.0;
    let x = (rx - 0.5 * size).max(0.0).floor();
    let y = (ry - 0.43 * size).max(0.0).floor();
    if !(size.is_finite() && x.is_finite() && y.is_finite()) || size < 1.0 {
        return None;
    }
    let (wf, hf) = (width as f32, height as f32);
    if x >= wf || y >= hf {
        return None;
    }
    let w = size.min(wf - x).floor() as usize;
    let h = size.min(hf - y).floor() as usize;
    (w > 0 && h > 0).then_some(Region {
        x: x as usize,
        y: y as usize,
        w,
        h,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aligned_region_geometry() {
        // Eyes at (40, 50) and (60, 50), mouth at (50, 77): eye-to-mouth ~28.8.
        let mut pts = vec![(0.0, 0.0); POINTS];
        pts[36..42].fill((40.0, 50.0));
        pts[42..48].fill((60.0, 50.0));
        pts[48..68].fill((50.0, 77.0));
        let r = aligned_region(&pts, 200, 200).unwrap();
        let d = (10.0f32 * 10.0 + 27.0 * 27.0).sqrt();
        let size = (d / 0.45).floor() as usize;
        assert_eq!((r.w, r.h), (size, size));
        assert_eq!(r.x, (50.0 - 0.5 * size as f32).floor() as usize);
        assert_eq!(r.y, (59.0 - 0.43 * size as f32).floor() as usize);
        // Clipped at the right/bottom border.
        let r = aligned_region(&pts, 80, 90).unwrap();
        assert_eq!((r.x + r.w, r.y + r.h), (80, 90));
    }
}
