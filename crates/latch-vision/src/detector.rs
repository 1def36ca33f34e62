//! The tiny face detector: a tiny-YOLO v2 variant with depthwise separable
//! convolutions (face-api's `TinyFaceDetector`), 416x416 input, 13x13 grid of
//! 5 anchor boxes, followed by non-maximum suppression.

use crate::image::{square_input, Image, Region};
use crate::ops::{max_pool, sigmoid, Conv, Pad, SeparableConv, Tensor};
use crate::weights::WeightMap;
use crate::VisionError;

/// Side of the square network input.
const INPUT_SIZE: usize = 416;
/// Mean RGB subtracted before dividing by 255.
const MEAN_RGB: [f32; 3] = [117.001, 114.697, 97.404];
/// Anchor box sizes, in grid cells.
const ANCHORS: [(f32, f32); 5] = [
    (1.603_231, 2.094_468),
    (6.041_143, 7.080_126),
    (2.882_459, 3.518_061),
    (4.266_906, 5.178_857),
    (9.041_765, 10.663_08),
];
/// Minimum box confidence.
const SCORE_THRESHOLD: f32 = 0.5;
/// Boxes overlapping a better one by more than this IoU are dropped.
const IOU_THRESHOLD: f32 = 0.4;

/// A face box in image pixels, clipped to the image.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FaceRect {
    /// Left edge, pixels from the image's left.
    pub left: u32,
    /// Top edge, pixels from the image's top.
    pub top: u32,
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
}

impl FaceRect {
    /// `width * height`.
    pub fn area(&self) -> u64 {
        u64::from(self.width) * u64::from(self.height)
    }
}

/// One detected face.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Detection {
    /// Where the face is.
    pub rect: FaceRect,
    /// Detector confidence in (0.5, 1).
    pub score: f32,
}

/// A box in image coordinates relative to the image size (0..1 inside it).
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct RelBox {
    pub(crate) x0: f32,
    pub(crate) y0: f32,
    pub(crate) x1: f32,
    pub(crate) y1: f32,
}

impl RelBox {
    fn area(&self) -> f32 {
        (self.x1 - self.x0).max(0.0) * (self.y1 - self.y0).max(0.0)
    }

    pub(crate) fn iou(&self, other: &RelBox) -> f32 {
        let w = (self.x1.min(other.x1) - self.x0.max(other.x0)).max(0.0);
        let h = (self.y1.min(other.y1) - self.y0.max(other.y0)).max(0.0);
        let inter = w * h;
        let union = self.area() + other.area() - inter;
        if union > 0.0 {
            inter / union
        } else {
            0.0
        }
    }
}

/// Greedy non-maximum suppression: repeatedly keeps the best-scoring box and
/// drops the remaining ones whose IoU with it exceeds `threshold`. Returns the
/// kept indices, best first.
pub(crate) fn non_max_suppression(boxes: &[RelBox], scores: &[f32], threshold: f32) -> Vec<usize> {
    let mut order: Vec<usize> = (0..boxes.len()).collect();
    order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]));
    let mut keep = Vec::new();
    while let Some((&best, rest)) = order.split_first() {
        keep.push(best);
        order = rest
            .iter()
            .copied()
            .filter(|&i| boxes[best].iou(&boxes[i]) <= threshold)
            .collect();
    }
    keep
}

pub(crate) struct Detector {
    conv0: Conv,
    separable: [SeparableConv; 5],
    conv8: Conv,
}

impl Detector {
    pub(crate) fn load(w: &WeightMap) -> Result<Detector, VisionError> {
        let sizes = [16, 32, 64, 128, 256, 512];
        let sep = |i: usize| w.separable(&format!("conv{i}"), sizes[i - 1], sizes[i]);
        Ok(Detector {
            conv0: w.conv("conv0", 3, 3, 16)?,
            separable: [sep(1)?, sep(2)?, sep(3)?, sep(4)?, sep(5)?],
            conv8: w.conv("conv8", 1, 512, 5 * ANCHORS.len())?,
        })
    }

    /// Runs the network on a prepared 416x416x3 input; returns the 13x13x25 grid.
    fn forward(&self, input: &Tensor) -> Tensor {
        let pool =
            |x: &Tensor, stride: usize| max_pool(x, 2, stride, Pad::same(x.h, x.w, 2, stride));
        let mut x = self.conv0.forward(input, 1, Pad::VALID).leaky();
        for (i, sep) in self.separable.iter().enumerate() {
            x = pool(&x, 2);
            x = sep.forward(&x, 1, Pad::uniform(1)).leaky();
            if i == self.separable.len() - 1 {
                x = pool(&x, 1);
            }
        }
        self.conv8.forward(&x, 1, Pad::VALID)
    }

    pub(crate) fn detect(&self, img: &Image) -> Vec<Detection> {
        let (iw, ih) = (img.width as usize, img.height as usize);
        let region = Region {
            x: 0,
            y: 0,
            w: iw,
            h: ih,
        };
        let input = square_input(img, region, INPUT_SIZE, false, MEAN_RGB);
        let grid = self.forward(&input);

        // Relative coordinates are relative to the padded square; the correction
        // factors make them relative to the image (face-api rounds the resized size).
        let scale = INPUT_SIZE as f32 / iw.max(ih) as f32;
        let rw = (iw as f32 * scale).round().max(1.0);
        let rh = (ih as f32 * scale).round().max(1.0);
        let (fx, fy) = (INPUT_SIZE as f32 / rw, INPUT_SIZE as f32 / rh);
        let cells = grid.h as f32;
        let mut boxes = Vec::new();
        let mut scores = Vec::new();
        for row in 0..grid.h {
            for col in 0..grid.w {
                let cell = &grid.data[(row * grid.w + col) * grid.c..][..grid.c];
                for (anchor, v) in cell.chunks_exact(5).enumerate() {
                    let score = sigmoid(v[4]);
                    if score.is_nan() || score <= SCORE_THRESHOLD {
                        continue;
                    }
                    let cx = (col as f32 + sigmoid(v[0])) / cells * fx;
                    let cy = (row as f32 + sigmoid(v[1])) / cells * fy;
                    let bw = v[2].exp() * ANCHORS[anchor].0 / cells * fx;
                    let bh = v[3].exp() * ANCHORS[anchor].1 / cells * fy;
                    boxes.push(RelBox {
                        x0: cx - bw / 2.0,
                        y0: cy - bh / 2.0,
                        x1: cx + bw / 2.0,
                        y1: cy + bh / 2.0,
                    });
                    scores.push(score);
                }
            }
        }
        let mut out: Vec<Detection> = non_max_suppression(&boxes, &scores, IOU_THRESHOLD)
            .into_iter()
            .filter_map(|i| {
                to_pixels(&boxes[i], img.width, img.height).map(|rect| Detection {
                    rect,
                    score: scores[i],
                })
            })
            .collect();
        out.sort_by(|a, b| {
            b.rect
                .area()
                .cmp(&a.rect.area())
                .then(b.score.total_cmp(&a.score))
        });
        out
    }
}

/// Converts a relative box to whole pixels clipped to the image; `None` if
/// nothing of it is inside.
fn to_pixels(b: &RelBox, width: u32, height: u32) -> Option<FaceRect> {
    let clip = |v: f32, max: u32| -> u32 {
        if v.is_nan() {
            0
        } else {
            v.round().clamp(0.0, max as f32) as u32
        }
    };
    let x0 = clip(b.x0 * width as f32, width);
    let y0 = clip(b.y0 * height as f32, height);
    let x1 = clip(b.x1 * width as f32, width);
    let y1 = clip(b.y1 * height as f32, height);
    (x1 > x0 && y1 > y0).then(|| FaceRect {
        left: x0,
        top: y0,
        width: x1 - x0,
        height: y1 - y0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(x0: f32, y0: f32, x1: f32, y1: f32) -> RelBox {
        RelBox { x0, y0, x1, y1 }
    }

    #[test]
    fn iou_of_half_overlap() {
        let a = b(0.0, 0.0, 2.0, 1.0);
        let c = b(1.0, 0.0, 3.0, 1.0);
        assert!((a.iou(&c) - 1.0 / 3.0).abs() < 1e-6);
        assert_eq!(a.iou(&b(5.0, 5.0, 6.0, 6.0)), 0.0);
    }

    #[test]
    fn nms_keeps_best_of_overlapping_and_disjoint_boxes() {
        let boxes = [
            b(0.0, 0.0, 1.0, 1.0),
            b(0.05, 0.0, 1.05, 1.0), // IoU ~0.9 with box 0
            b(2.0, 2.0, 3.0, 3.0),   // disjoint
            b(0.5, 0.0, 1.5, 1.0),   // IoU 1/3 with box 0: kept at threshold 0.4
        ];
        let scores = [0.7, 0.9, 0.6, 0.8];
        assert_eq!(non_max_suppression(&boxes, &scores, 0.4), vec![1, 3, 2]);
        assert_eq!(non_max_suppression(&boxes, &scores, 0.3), vec![1, 2]);
    }

    #[test]
    fn pixel_boxes_are_clipped() {
        let r = to_pixels(&b(-0.1, 0.25, 0.5, 1.2), 100, 200).unwrap();
        assert_eq!(
            r,
            FaceRect {
                left: 0,
                top: 50,
                width: 50,
                height: 150
            }
        );
        assert_eq!(to_pixels(&b(1.1, 0.0, 1.5, 1.0), 100, 100), None);
    }
}
