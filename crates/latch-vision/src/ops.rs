//! Tensor primitives for the networks: a height-width-channel feature map,
//! convolutions (im2col followed by a packed, register-blocked matrix product),
//! depthwise convolutions, pooling and activations. Single-threaded, no unsafe.

/// A feature map of `h * w * c` values stored in height, width, channel order.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Tensor {
    pub(crate) h: usize,
    pub(crate) w: usize,
    pub(crate) c: usize,
    pub(crate) data: Vec<f32>,
}

impl Tensor {
    pub(crate) fn zeros(h: usize, w: usize, c: usize) -> Tensor {
        Tensor {
            h,
            w,
            c,
            data: vec![0.0; h * w * c],
        }
    }

    pub(crate) fn relu(mut self) -> Tensor {
        self.data.iter_mut().for_each(|v| *v = v.max(0.0));
        self
    }

    /// Leaky ReLU with slope 0.1, as used by tiny YOLO.
    pub(crate) fn leaky(mut self) -> Tensor {
        self.data
            .iter_mut()
            .for_each(|v| *v = if *v < 0.0 { *v * 0.1 } else { *v });
        self
    }

    /// The pixel (all channels) that tap `(ky, kx)` of the window of output `(oy, ox)` reads,
    /// with `stride` and `pad`; `None` where the tap falls in the padding.
    fn tap(
        &self,
        pad: Pad,
        stride: usize,
        (oy, ox): (usize, usize),
        (ky, kx): (usize, usize),
    ) -> Option<&[f32]> {
        let iy = (oy * stride + ky)
            .checked_sub(pad.top)
            .filter(|&v| v < self.h)?;
        let ix = (ox * stride + kx)
            .checked_sub(pad.left)
            .filter(|&v| v < self.w)?;
        Some(&self.data[(iy * self.w + ix) * self.c..][..self.c])
    }

    /// Element-wise sum; shapes must match.
    pub(crate) fn add(mut self, other: &Tensor) -> Tensor {
        debug_assert_eq!((self.h, self.w, self.c), (other.h, other.w, other.c));
        self.data
            .iter_mut()
            .zip(&other.data)
            .for_each(|(a, b)| *a += b);
        self
    }
}

/// Zero padding around a feature map before a convolution or pooling window.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Pad {
    pub(crate) top: usize,
    pub(crate) left: usize,
    pub(crate) bottom: usize,
    pub(crate) right: usize,
}

impl Pad {
    pub(crate) const VALID: Pad = Pad {
        top: 0,
        left: 0,
        bottom: 0,
        right: 0,
    };

    pub(crate) fn uniform(p: usize) -> Pad {
        Pad {
            top: p,
            left: p,
            bottom: p,
            right: p,
        }
    }

    /// TensorFlow's `'same'` padding: output side `ceil(in / stride)`, the odd
    /// pixel of padding goes after (bottom/right).
    pub(crate) fn same(h: usize, w: usize, k: usize, stride: usize) -> Pad {
        let total = |n: usize| (n.div_ceil(stride) - 1) * stride + k;
        let th = total(h).saturating_sub(h);
        let tw = total(w).saturating_sub(w);
        Pad {
            top: th / 2,
            left: tw / 2,
            bottom: th - th / 2,
            right: tw - tw / 2,
        }
    }

    fn out_size(&self, h: usize, w: usize, k: usize, stride: usize) -> (usize, usize) {
        let ph = h + self.top + self.bottom;
        let pw = w + self.left + self.right;
        assert!(ph >= k && pw >= k, "window larger than input");
        ((ph - k) / stride + 1, (pw - k) / stride + 1)
    }
}

/// Width of a packed column panel in [`Gemm`].
const PANEL: usize = 8;
/// Rows of the left operand processed together by the micro-kernel.
const ROWS: usize = 4;

/// A constant right-hand matrix `k x n`, packed into column panels of
/// [`PANEL`] columns (`k * PANEL` contiguous values each, zero-filled past `n`)
/// so the inner loop of the product reads it sequentially.
#[derive(Clone, Debug)]
pub(crate) struct Gemm {
    k: usize,
    n: usize,
    panels: Vec<f32>,
}

impl Gemm {
    /// Packs a row-major `k x n` matrix.
    pub(crate) fn new(b: &[f32], k: usize, n: usize) -> Gemm {
        assert_eq!(b.len(), k * n);
        let np = n.div_ceil(PANEL);
        let mut panels = vec![0.0; np * k * PANEL];
        for (p, panel) in panels.chunks_exact_mut(k * PANEL).enumerate() {
            for (kk, dst) in panel.chunks_exact_mut(PANEL).enumerate() {
                for (j, d) in dst.iter_mut().enumerate() {
                    let col = p * PANEL + j;
                    if col < n {
                        *d = b[kk * n + col];
                    }
                }
            }
        }
        Gemm { k, n, panels }
    }

    /// `out = a * B + bias` for a row-major `m x k` matrix `a`; `out` is `m x n`.
    pub(crate) fn run(&self, a: &[f32], bias: &[f32], out: &mut [f32]) {
        let (k, n) = (self.k, self.n);
        let m = a.len() / k;
        debug_assert_eq!(a.len(), m * k);
        debug_assert_eq!(out.len(), m * n);
        debug_assert_eq!(bias.len(), n);
        for (p, panel) in self.panels.chunks_exact(k * PANEL).enumerate() {
            let j0 = p * PANEL;
            let cols = PANEL.min(n - j0);
            let mut i = 0;
            while i + ROWS <= m {
                let acc = kernel4(
                    panel,
                    &a[i * k..(i + 1) * k],
                    &a[(i + 1) * k..(i + 2) * k],
                    &a[(i + 2) * k..(i + 3) * k],
                    &a[(i + 3) * k..(i + 4) * k],
                );
                for (r, row) in acc.iter().enumerate() {
                    let dst = &mut out[(i + r) * n + j0..][..cols];
                    for ((d, v), b) in dst.iter_mut().zip(row).zip(&bias[j0..]) {
                        *d = v + b;
                    }
                }
                i += ROWS;
            }
            while i < m {
                let row = kernel1(panel, &a[i * k..(i + 1) * k]);
                let dst = &mut out[i * n + j0..][..cols];
                for ((d, v), b) in dst.iter_mut().zip(&row).zip(&bias[j0..]) {
                    *d = v + b;
                }
                i += 1;
            }
        }
    }
}

#[inline(always)]
fn kernel4(panel: &[f32], a0: &[f32], a1: &[f32], a2: &[f32], a3: &[f32]) -> [[f32; PANEL]; ROWS] {
    let mut c0 = [0.0f32; PANEL];
    let mut c1 = [0.0f32; PANEL];
    let mut c2 = [0.0f32; PANEL];
    let mut c3 = [0.0f32; PANEL];
    let rows = a0.iter().zip(a1).zip(a2).zip(a3);
    for (bv, (((&x0, &x1), &x2), &x3)) in panel.chunks_exact(PANEL).zip(rows) {
        for j in 0..PANEL {
            c0[j] += x0 * bv[j];
            c1[j] += x1 * bv[j];
            c2[j] += x2 * bv[j];
            c3[j] += x3 * bv[j];
        }
    }
    [c0, c1, c2, c3]
}

#[inline(always)]
fn kernel1(panel: &[f32], a: &[f32]) -> [f32; PANEL] {
    let mut c = [0.0f32; PANEL];
    for (bv, &x) in panel.chunks_exact(PANEL).zip(a) {
        for j in 0..PANEL {
            c[j] += x * bv[j];
        }
    }
    c
}

/// A dense 2-D convolution with bias; filters in TensorFlow layout
/// `[kh, kw, in, out]`.
#[derive(Clone, Debug)]
pub(crate) struct Conv {
    pub(crate) kh: usize,
    pub(crate) kw: usize,
    pub(crate) cin: usize,
    pub(crate) cout: usize,
    gemm: Gemm,
    bias: Vec<f32>,
}

/// Output pixels gathered per im2col block.
const BLOCK_PIXELS: usize = 64;

impl Conv {
    pub(crate) fn new(filters: &[f32], shape: [usize; 4], bias: Vec<f32>) -> Conv {
        let [kh, kw, cin, cout] = shape;
        assert_eq!(bias.len(), cout);
        Conv {
            kh,
            kw,
            cin,
            cout,
            gemm: Gemm::new(filters, kh * kw * cin, cout),
            bias,
        }
    }

    pub(crate) fn forward(&self, x: &Tensor, stride: usize, pad: Pad) -> Tensor {
        assert_eq!(x.c, self.cin);
        let (kh, kw, cin) = (self.kh, self.kw, self.cin);
        assert_eq!(kh, kw, "square kernels only");
        let (oh, ow) = pad.out_size(x.h, x.w, kh, stride);
        let mut out = Tensor::zeros(oh, ow, self.cout);
        if kh == 1 && stride == 1 && pad == Pad::VALID {
            self.gemm.run(&x.data, &self.bias, &mut out.data);
            return out;
        }
        let k = kh * kw * cin;
        let total = oh * ow;
        let mut col = vec![0.0f32; BLOCK_PIXELS.min(total) * k];
        let mut p0 = 0;
        while p0 < total {
            let p1 = (p0 + BLOCK_PIXELS).min(total);
            for (p, dst) in (p0..p1).zip(col.chunks_exact_mut(k)) {
                let out_at = (p / ow, p % ow);
                for ky in 0..kh {
                    for kx in 0..kw {
                        let seg = &mut dst[(ky * kw + kx) * cin..][..cin];
                        match x.tap(pad, stride, out_at, (ky, kx)) {
                            Some(src) => seg.copy_from_slice(src),
                            None => seg.fill(0.0),
                        }
                    }
                }
            }
            let n = p1 - p0;
            self.gemm.run(
                &col[..n * k],
                &self.bias,
                &mut out.data[p0 * self.cout..p1 * self.cout],
            );
            p0 = p1;
        }
        out
    }
}

/// A depthwise convolution (channel multiplier 1, no bias); filters `[k, k, c, 1]`.
#[derive(Clone, Debug)]
pub(crate) struct Depthwise {
    pub(crate) k: usize,
    pub(crate) c: usize,
    weights: Vec<f32>,
}

impl Depthwise {
    pub(crate) fn new(weights: Vec<f32>, k: usize, c: usize) -> Depthwise {
        assert_eq!(weights.len(), k * k * c);
        Depthwise { k, c, weights }
    }

    pub(crate) fn forward(&self, x: &Tensor, stride: usize, pad: Pad) -> Tensor {
        assert_eq!(x.c, self.c);
        let (k, c) = (self.k, self.c);
        let (oh, ow) = pad.out_size(x.h, x.w, k, stride);
        let mut out = Tensor::zeros(oh, ow, c);
        for (p, dst) in out.data.chunks_exact_mut(c).enumerate() {
            let out_at = (p / ow, p % ow);
            for ky in 0..k {
                for kx in 0..k {
                    let Some(src) = x.tap(pad, stride, out_at, (ky, kx)) else {
                        continue;
                    };
                    let w = &self.weights[(ky * k + kx) * c..][..c];
                    for ((d, s), w) in dst.iter_mut().zip(src).zip(w) {
                        *d += s * w;
                    }
                }
            }
        }
        out
    }
}

/// A depthwise separable convolution: depthwise `k x k`, then pointwise 1x1 with bias.
#[derive(Clone, Debug)]
pub(crate) struct SeparableConv {
    pub(crate) depthwise: Depthwise,
    pub(crate) pointwise: Conv,
}

impl SeparableConv {
    pub(crate) fn forward(&self, x: &Tensor, stride: usize, pad: Pad) -> Tensor {
        let d = self.depthwise.forward(x, stride, pad);
        self.pointwise.forward(&d, 1, Pad::VALID)
    }
}

/// Max pooling; padded positions never win (TensorFlow semantics).
pub(crate) fn max_pool(x: &Tensor, k: usize, stride: usize, pad: Pad) -> Tensor {
    let (oh, ow) = pad.out_size(x.h, x.w, k, stride);
    let c = x.c;
    let mut out = Tensor::zeros(oh, ow, c);
    for (p, dst) in out.data.chunks_exact_mut(c).enumerate() {
        let out_at = (p / ow, p % ow);
        dst.fill(f32::NEG_INFINITY);
        for ky in 0..k {
            for kx in 0..k {
                let Some(src) = x.tap(pad, stride, out_at, (ky, kx)) else {
                    continue;
                };
                for (d, s) in dst.iter_mut().zip(src) {
                    *d = d.max(*s);
                }
            }
        }
    }
    out
}

/// Average pooling without padding (`'valid'`).
pub(crate) fn avg_pool_valid(x: &Tensor, k: usize, stride: usize) -> Tensor {
    let (oh, ow) = Pad::VALID.out_size(x.h, x.w, k, stride);
    let c = x.c;
    let mut out = Tensor::zeros(oh, ow, c);
    let norm = 1.0 / (k * k) as f32;
    for (p, dst) in out.data.chunks_exact_mut(c).enumerate() {
        let (oy, ox) = (p / ow, p % ow);
        for ky in 0..k {
            for kx in 0..k {
                let (iy, ix) = (oy * stride + ky, ox * stride + kx);
                let src = &x.data[(iy * x.w + ix) * c..][..c];
                for (d, s) in dst.iter_mut().zip(src) {
                    *d += s;
                }
            }
        }
        dst.iter_mut().for_each(|d| *d *= norm);
    }
    out
}

/// Mean over all spatial positions, one value per channel.
pub(crate) fn global_mean(x: &Tensor) -> Vec<f32> {
    let mut out = vec![0.0f32; x.c];
    for px in x.data.chunks_exact(x.c) {
        for (o, v) in out.iter_mut().zip(px) {
            *o += v;
        }
    }
    let n = (x.h * x.w) as f32;
    out.iter_mut().for_each(|o| *o /= n);
    out
}

pub(crate) fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tensor(h: usize, w: usize, c: usize, data: Vec<f32>) -> Tensor {
        assert_eq!(data.len(), h * w * c);
        Tensor { h, w, c, data }
    }

    #[test]
    fn gemm_matches_naive_product_for_odd_sizes() {
        let (m, k, n) = (7, 5, 11);
        let a: Vec<f32> = (0..m * k).map(|i| (i % 7) as f32 - 3.0).collect();
        let b: Vec<f32> = (0..k * n).map(|i| (i % 5) as f32 * 0.5 - 1.0).collect();
        let bias: Vec<f32> = (0..n).map(|j| j as f32).collect();
        let mut out = vec![0.0; m * n];
        Gemm::new(&b, k, n).run(&a, &bias, &mut out);
        for i in 0..m {
            for j in 0..n {
                let want: f32 = (0..k).map(|t| a[i * k + t] * b[t * n + j]).sum::<f32>() + bias[j];
                assert_eq!(out[i * n + j], want, "({i},{j})");
            }
        }
    }

    #[test]
    fn conv_3x3_same_by_hand() {
        // 3x3 single-channel input 1..9, kernel all ones, padding 1:
        // each output is the sum of its 3x3 neighbourhood.
        let x = tensor(3, 3, 1, (1..=9).map(|v| v as f32).collect());
        let conv = Conv::new(&[1.0; 9], [3, 3, 1, 1], vec![0.5]);
        let y = conv.forward(&x, 1, Pad::uniform(1));
        let want = [12.0, 21.0, 16.0, 27.0, 45.0, 33.0, 24.0, 39.0, 28.0];
        let want: Vec<f32> = want.iter().map(|v| v + 0.5).collect();
        assert_eq!(y.data, want);
    }

    #[test]
    fn conv_two_channels_stride_two_valid() {
        // 3x3x2 input, 3x3 kernel 2 in -> 2 out, stride 2, valid: one output pixel.
        let x = tensor(3, 3, 2, (0..18).map(|v| v as f32).collect());
        // out0 = sum of channel 0, out1 = sum of channel 1 minus sum of channel 0.
        let mut f = vec![0.0; 3 * 3 * 2 * 2];
        for tap in 0..9 {
            f[tap * 4] = 1.0; // in 0 -> out 0
            f[tap * 4 + 1] = -1.0; // in 0 -> out 1
            f[tap * 4 + 3] = 1.0; // in 1 -> out 1
        }
        let conv = Conv::new(&f, [3, 3, 2, 2], vec![0.0, 0.0]);
        let y = conv.forward(&x, 2, Pad::VALID);
        assert_eq!((y.h, y.w, y.c), (1, 1, 2));
        assert_eq!(y.data, vec![72.0, 9.0]);
    }

    #[test]
    fn depthwise_applies_per_channel_filters() {
        let x = tensor(1, 1, 2, vec![2.0, 3.0]);
        let mut w = vec![0.0; 9 * 2];
        w[4 * 2] = 10.0; // centre tap, channel 0
        w[4 * 2 + 1] = -1.0; // centre tap, channel 1
        let y = Depthwise::new(w, 3, 2).forward(&x, 1, Pad::uniform(1));
        assert_eq!(y.data, vec![20.0, -3.0]);
    }

    #[test]
    fn same_padding_follows_tensorflow() {
        assert_eq!(
            Pad::same(207, 207, 2, 2),
            Pad {
                top: 0,
                left: 0,
                bottom: 1,
                right: 1
            }
        );
        assert_eq!(Pad::same(208, 208, 2, 2), Pad::VALID);
        assert_eq!(
            Pad::same(13, 13, 2, 1),
            Pad {
                top: 0,
                left: 0,
                bottom: 1,
                right: 1
            }
        );
        assert_eq!(
            Pad::same(112, 112, 3, 2),
            Pad {
                top: 0,
                left: 0,
                bottom: 1,
                right: 1
            }
        );
        assert_eq!(Pad::same(5, 5, 3, 1), Pad::uniform(1));
    }

    #[test]
    fn max_pool_same_ignores_padding() {
        // 3x3 all negative; 2x2 stride 2 'same' -> 2x2, edge windows see only real values.
        let x = tensor(3, 3, 1, (1..=9).map(|v| -(v as f32)).collect());
        let y = max_pool(&x, 2, 2, Pad::same(3, 3, 2, 2));
        assert_eq!((y.h, y.w), (2, 2));
        assert_eq!(y.data, vec![-1.0, -3.0, -7.0, -9.0]);
        // stride 1 keeps the size; last row/column compare with nothing beyond the edge.
        let y = max_pool(&x, 2, 1, Pad::same(3, 3, 2, 1));
        assert_eq!((y.h, y.w), (3, 3));
        assert_eq!(
            y.data,
            vec![-1.0, -2.0, -3.0, -4.0, -5.0, -6.0, -7.0, -8.0, -9.0]
        );
    }

    #[test]
    fn avg_pool_and_mean() {
        let x = tensor(2, 2, 1, vec![1.0, 2.0, 3.0, 6.0]);
        assert_eq!(avg_pool_valid(&x, 2, 2).data, vec![3.0]);
        assert_eq!(global_mean(&x), vec![3.0]);
    }

    #[test]
    fn leaky_relu_slope() {
        let x = tensor(1, 1, 2, vec![-10.0, 4.0]);
        assert_eq!(x.leaky().data, vec![-1.0, 4.0]);
    }
}
