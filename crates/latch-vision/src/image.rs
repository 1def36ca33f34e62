//! Image decoding (JPEG, PNG) into 8-bit RGB, and the resampling that turns a
//! region of an image into a network input tensor.

use crate::ops::Tensor;
use crate::VisionError;

/// Smallest accepted image side, in pixels.
pub const MIN_SIDE: u32 = 36;
/// Largest accepted image side, in pixels.
pub const MAX_SIDE: u32 = 4096;

/// A decoded image: 8-bit RGB, row-major, no padding between rows.
#[derive(Clone, PartialEq, Eq)]
pub struct Image {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// `width * height * 3` bytes, R, G, B per pixel.
    pub rgb: Vec<u8>,
}

impl std::fmt::Debug for Image {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Image")
            .field("width", &self.width)
            .field("height", &self.height)
            .finish_non_exhaustive()
    }
}

impl Image {
    /// Builds an image from raw RGB bytes, checking the size limits.
    pub fn from_rgb(width: u32, height: u32, rgb: Vec<u8>) -> Result<Image, VisionError> {
        check_size(width, height)?;
        let expected = width as usize * height as usize * 3;
        if rgb.len() != expected {
            return Err(VisionError::CorruptImage(format!(
                "expected {expected} RGB bytes, got {}",
                rgb.len()
            )));
        }
        Ok(Image { width, height, rgb })
    }
}

fn check_size(width: u32, height: u32) -> Result<(), VisionError> {
    if width > MAX_SIDE || height > MAX_SIDE {
        return Err(VisionError::ImageTooLarge {
            width,
            height,
            max: MAX_SIDE,
        });
    }
    if width < MIN_SIDE || height < MIN_SIDE {
        return Err(VisionError::ImageTooSmall {
            width,
            height,
            min: MIN_SIDE,
        });
    }
    Ok(())
}

/// Decodes a JPEG or PNG file into RGB.
///
/// Grey, grey+alpha, RGBA, palette and 16-bit PNGs are converted to 8-bit RGB
/// (alpha is dropped). JPEG EXIF orientation is not applied. Images whose sides
/// fall outside [`MIN_SIDE`]..=[`MAX_SIDE`] are rejected, the large ones before
/// any pixel data is decoded.
pub fn decode(bytes: &[u8]) -> Result<Image, VisionError> {
    if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
        decode_jpeg(bytes)
    } else if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        decode_png(bytes)
    } else {
        Err(VisionError::UnsupportedFormat)
    }
}

fn decode_jpeg(bytes: &[u8]) -> Result<Image, VisionError> {
    use zune_jpeg::zune_core::colorspace::ColorSpace;
    use zune_jpeg::zune_core::options::DecoderOptions;

    let options = DecoderOptions::default()
        .jpeg_set_out_colorspace(ColorSpace::RGB)
        .set_max_width(MAX_SIDE as usize)
        .set_max_height(MAX_SIDE as usize);
    let mut decoder = zune_jpeg::JpegDecoder::new_with_options(bytes, options);
    let corrupt = |e: zune_jpeg::errors::DecodeErrors| VisionError::CorruptImage(e.to_string());
    decoder.decode_headers().map_err(corrupt)?;
    let info = decoder
        .info()
        .ok_or_else(|| VisionError::CorruptImage("missing JPEG header".into()))?;
    let (width, height) = (u32::from(info.width), u32::from(info.height));
    check_size(width, height)?;
    let rgb = decoder.decode().map_err(corrupt)?;
    if decoder.get_output_colorspace() != Some(ColorSpace::RGB) {
        return Err(VisionError::CorruptImage(
            "JPEG colour space cannot be converted to RGB".into(),
        ));
    }
    Image::from_rgb(width, height, rgb)
}

fn decode_png(bytes: &[u8]) -> Result<Image, VisionError> {
    use png::{BitDepth, ColorType, Transformations};

    let corrupt = |e: png::DecodingError| VisionError::CorruptImage(e.to_string());
    let mut decoder = png::Decoder::new_with_limits(
        bytes,
        png::Limits {
            // Enough for the largest accepted image as 16-bit RGBA, plus slack.
            bytes: (MAX_SIDE as usize) * (MAX_SIDE as usize) * 8 + (1 << 20),
        },
    );
    decoder.set_transformations(Transformations::EXPAND | Transformations::STRIP_16);
    let mut reader = decoder.read_info().map_err(corrupt)?;
    let (width, height) = (reader.info().width, reader.info().height);
    check_size(width, height)?;
    let mut buf = vec![0u8; reader.output_buffer_size()];
    let frame = reader.next_frame(&mut buf).map_err(corrupt)?;
    if frame.bit_depth != BitDepth::Eight {
        return Err(VisionError::CorruptImage(format!(
            "unexpected PNG bit depth {:?}",
            frame.bit_depth
        )));
    }
    let channels = match frame.color_type {
        ColorType::Grayscale => 1,
        ColorType::GrayscaleAlpha => 2,
        ColorType::Rgb => 3,
        ColorType::Rgba => 4,
        ColorType::Indexed => {
            return Err(VisionError::CorruptImage("unexpanded PNG palette".into()));
        }
    };
    let (w, h) = (width as usize, height as usize);
    let line = frame.line_size;
    if line < w * channels || buf.len() < line * h {
        return Err(VisionError::CorruptImage("short PNG frame".into()));
    }
    let mut rgb = Vec::with_capacity(w * h * 3);
    for row in buf.chunks_exact(line).take(h) {
        for px in row[..w * channels].chunks_exact(channels) {
            if channels < 3 {
                rgb.extend_from_slice(&[px[0], px[0], px[0]]);
            } else {
                rgb.extend_from_slice(&px[..3]);
            }
        }
    }
    Image::from_rgb(width, height, rgb)
}

/// A pixel rectangle inside an image (all values in pixels, already clipped).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Region {
    pub(crate) x: usize,
    pub(crate) y: usize,
    pub(crate) w: usize,
    pub(crate) h: usize,
}

/// Builds a `size`x`size` network input from `region` of `img`, the way face-api's
/// `NetInput.toBatchTensor` does for tensor inputs: the region is zero-padded to a
/// square (padding split between both sides when `centred`, otherwise appended at
/// the right/bottom), resized with TensorFlow's bilinear resize
/// (`align_corners = false`, no half-pixel centres), then normalised as
/// `(value - mean) / 255`.
pub(crate) fn square_input(
    img: &Image,
    region: Region,
    size: usize,
    centred: bool,
    mean: [f32; 3],
) -> Tensor {
    let Region { x, y, w, h } = region;
    let side = w.max(h);
    let diff = side - w.min(h);
    // face-api appends round(diff / 2) and prepends the remainder.
    let before = if centred { diff - diff.div_ceil(2) } else { 0 };
    let (pad_left, pad_top) = if h > w { (before, 0) } else { (0, before) };
    let stride = img.width as usize * 3;
    let sample = |sy: usize, sx: usize, c: usize| -> f32 {
        let (Some(ry), Some(rx)) = (sy.checked_sub(pad_top), sx.checked_sub(pad_left)) else {
            return 0.0;
        };
        if ry >= h || rx >= w {
            return 0.0;
        }
        f32::from(img.rgb[(y + ry) * stride + (x + rx) * 3 + c])
    };
    let scale = side as f32 / size as f32;
    let axis = |d: usize| -> (usize, usize, f32) {
        let pos = d as f32 * scale;
        let lo = (pos.floor() as usize).min(side - 1);
        let hi = (lo + 1).min(side - 1);
        (lo, hi, pos - lo as f32)
    };
    let cols: Vec<(usize, usize, f32)> = (0..size).map(axis).collect();
    let mut out = Tensor::zeros(size, size, 3);
    for oy in 0..size {
        let (y0, y1, fy) = axis(oy);
        for (ox, &(x0, x1, fx)) in cols.iter().enumerate() {
            for (c, m) in mean.iter().enumerate() {
                let top = sample(y0, x0, c) + (sample(y0, x1, c) - sample(y0, x0, c)) * fx;
                let bottom = sample(y1, x0, c) + (sample(y1, x1, c) - sample(y1, x0, c)) * fx;
                let v = top + (bottom - top) * fy;
                out.data[(oy * size + ox) * 3 + c] = (v - m) / 255.0;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn centred_padding_splits_the_difference() {
        // A 2-wide, 4-tall white region padded to 4x4 centred: one zero column each side.
        let img = Image {
            width: 2,
            height: 4,
            rgb: vec![255; 2 * 4 * 3],
        };
        let region = Region {
            x: 0,
            y: 0,
            w: 2,
            h: 4,
        };
        let t = square_input(&img, region, 4, true, [0.0; 3]);
        let row: Vec<f32> = (0..4).map(|x| t.data[x * 3]).collect();
        assert_eq!(row, vec![0.0, 1.0, 1.0, 0.0]);
        let t = square_input(&img, region, 4, false, [0.0; 3]);
        let row: Vec<f32> = (0..4).map(|x| t.data[x * 3]).collect();
        assert_eq!(row, vec![1.0, 1.0, 0.0, 0.0]);
    }

    #[test]
    fn bilinear_downscale_matches_tensorflow_legacy() {
        // 4 pixels wide ramp 0, 60, 120, 180 resized to 3: positions 0, 4/3, 8/3.
        let mut rgb = Vec::new();
        for _ in 0..4 {
            for v in [0u8, 60, 120, 180] {
                rgb.extend_from_slice(&[v, v, v]);
            }
        }
        let img = Image {
            width: 4,
            height: 4,
            rgb,
        };
        let t = square_input(
            &img,
            Region {
                x: 0,
                y: 0,
                w: 4,
                h: 4,
            },
            3,
            false,
            [0.0; 3],
        );
        let row: Vec<f32> = (0..3).map(|x| t.data[x * 3] * 255.0).collect();
        for (got, want) in row.iter().zip([0.0, 80.0, 160.0]) {
            assert!((got - want).abs() < 1e-3, "{row:?}");
        }
    }
}
