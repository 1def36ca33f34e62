//! Image decoding: formats, conversions, size limits, and robustness against
//! hostile input (must return errors, never panic).

mod common;

use latch_vision::{decode, Image, VisionError};
use proptest::prelude::*;

fn encode_png(
    width: u32,
    height: u32,
    color: png::ColorType,
    depth: png::BitDepth,
    data: &[u8],
) -> Vec<u8> {
    let mut out = Vec::new();
    {
        let mut enc = png::Encoder::new(&mut out, width, height);
        enc.set_color(color);
        enc.set_depth(depth);
        let mut w = enc.write_header().unwrap();
        w.write_image_data(data).unwrap();
    }
    out
}

#[test]
fn real_jpeg_decodes() {
    let img = decode(&common::photo("obama.jpg")).unwrap();
    assert_eq!((img.width, img.height), (910, 1137));
    assert_eq!(img.rgb.len(), 910 * 1137 * 3);
}

#[test]
fn empty_and_garbage_are_unsupported() {
    assert_eq!(decode(&[]), Err(VisionError::UnsupportedFormat));
    assert_eq!(
        decode(b"GIF89a not really"),
        Err(VisionError::UnsupportedFormat)
    );
    assert_eq!(decode(&[0u8; 1000]), Err(VisionError::UnsupportedFormat));
}

#[test]
fn magic_followed_by_garbage_is_corrupt() {
    let mut jpeg = vec![0xFF, 0xD8, 0xFF];
    jpeg.extend_from_slice(&[0x5A; 500]);
    assert!(matches!(decode(&jpeg), Err(VisionError::CorruptImage(_))));
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    png.extend_from_slice(&[0x5A; 500]);
    assert!(matches!(decode(&png), Err(VisionError::CorruptImage(_))));
}

#[test]
fn truncated_jpeg_is_an_error() {
    let bytes = common::photo("obama.jpg");
    for len in [2, 3, 10, 100, 600, bytes.len() / 2, bytes.len() - 2] {
        let r = decode(&bytes[..len]);
        assert!(r.is_err(), "truncated to {len} bytes decoded: {r:?}");
    }
}

#[test]
fn tiny_png_is_too_small() {
    let png = encode_png(1, 1, png::ColorType::Rgb, png::BitDepth::Eight, &[1, 2, 3]);
    assert_eq!(
        decode(&png),
        Err(VisionError::ImageTooSmall {
            width: 1,
            height: 1,
            min: 36
        })
    );
    let png = encode_png(
        36,
        35,
        png::ColorType::Grayscale,
        png::BitDepth::Eight,
        &[0; 36 * 35],
    );
    assert!(matches!(
        decode(&png),
        Err(VisionError::ImageTooSmall { .. })
    ));
}

#[test]
fn oversized_png_is_rejected_before_decoding() {
    // A valid header declaring 5000x40 with no pixel data.
    let png = encode_png(
        5000,
        40,
        png::ColorType::Grayscale,
        png::BitDepth::Eight,
        &[0; 5000 * 40],
    );
    assert_eq!(
        decode(&png),
        Err(VisionError::ImageTooLarge {
            width: 5000,
            height: 40,
            max: 4096
        })
    );
}

#[test]
fn png_colour_types_become_rgb() {
    let (w, h) = (40u32, 36u32);
    let n = (w * h) as usize;
    let grey = encode_png(
        w,
        h,
        png::ColorType::Grayscale,
        png::BitDepth::Eight,
        &vec![7; n],
    );
    let img = decode(&grey).unwrap();
    assert_eq!(img.rgb.len(), n * 3);
    assert!(img.rgb.iter().all(|&v| v == 7));

    let mut rgba = Vec::new();
    for _ in 0..n {
        rgba.extend_from_slice(&[10, 20, 30, 0]);
    }
    let img = decode(&encode_png(
        w,
        h,
        png::ColorType::Rgba,
        png::BitDepth::Eight,
        &rgba,
    ))
    .unwrap();
    assert_eq!(&img.rgb[..6], &[10, 20, 30, 10, 20, 30]);

    // 16-bit grey + alpha: keeps the high byte.
    let mut ga16 = Vec::new();
    for _ in 0..n {
        ga16.extend_from_slice(&[0xAB, 0xCD, 0xFF, 0xFF]);
    }
    let img = decode(&encode_png(
        w,
        h,
        png::ColorType::GrayscaleAlpha,
        png::BitDepth::Sixteen,
        &ga16,
    ))
    .unwrap();
    assert_eq!(
        img,
        Image {
            width: w,
            height: h,
            rgb: vec![0xAB; n * 3]
        }
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let _ = decode(&bytes);
    }

    #[test]
    fn arbitrary_bytes_after_magic_never_panic(
        is_png in any::<bool>(),
        tail in proptest::collection::vec(any::<u8>(), 0..2048),
    ) {
        let mut bytes = if is_png { b"\x89PNG\r\n\x1a\n".to_vec() } else { vec![0xFF, 0xD8, 0xFF] };
        bytes.extend_from_slice(&tail);
        let _ = decode(&bytes);
    }
}

proptest! {
    // Each case decodes (part of) a real photo, so keep the count modest.
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn truncated_or_damaged_jpeg_never_panics(cut in 0.0f64..1.0, flips in proptest::collection::vec((0.0f64..1.0, any::<u8>()), 0..8)) {
        let mut bytes = common::photo("obama.jpg");
        for (pos, v) in flips {
            let i = ((bytes.len() as f64) * pos) as usize;
            bytes[i] = v;
        }
        let len = ((bytes.len() as f64) * cut) as usize;
        let _ = decode(&bytes[..len]);
    }
}
