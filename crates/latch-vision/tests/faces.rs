//! End-to-end checks on real photos: detection, embedding distances, timing.

#![allow(clippy::print_stdout)]

mod common;

use latch_vision::{decode, Embedding, SAME_PERSON_THRESHOLD};

const PHOTOS: [&str; 4] = ["obama.jpg", "obama2.jpg", "obama3.jpg", "biden.jpg"];

fn embed_photo(name: &str) -> Embedding {
    let img = decode(&common::photo(name)).unwrap();
    let dets = common::models().detect(&img);
    assert_eq!(dets.len(), 1, "{name}: {dets:?}");
    common::models().embed(&img, &dets[0].rect)
}

#[test]
fn one_plausible_face_per_photo() {
    for name in PHOTOS {
        let img = decode(&common::photo(name)).unwrap();
        let dets = common::models().detect(&img);
        println!("{name} {}x{}: {dets:?}", img.width, img.height);
        assert_eq!(dets.len(), 1, "{name}: {dets:?}");
        let r = dets[0].rect;
        assert!(r.left + r.width <= img.width && r.top + r.height <= img.height);
        let short = img.width.min(img.height);
        assert!(
            r.width >= short / 10 && r.height >= short / 10,
            "{name}: box too small {r:?}"
        );
        assert!(
            r.width < img.width && r.height < img.height,
            "{name}: box fills image {r:?}"
        );
        let ratio = r.width as f32 / r.height as f32;
        assert!((0.5..2.0).contains(&ratio), "{name}: odd aspect {r:?}");
        assert!(dets[0].score > 0.5 && dets[0].score < 1.0);
    }
}

#[test]
fn same_person_is_close_and_different_person_is_far() {
    let e: Vec<Embedding> = PHOTOS.iter().map(|n| embed_photo(n)).collect();
    println!(
        "{:>12} {:>10} {:>10} {:>10} {:>10}",
        "", PHOTOS[0], PHOTOS[1], PHOTOS[2], PHOTOS[3]
    );
    for (i, a) in e.iter().enumerate() {
        let row: Vec<String> = e
            .iter()
            .map(|b| format!("{:>10.4}", a.distance(b)))
            .collect();
        println!("{:>12} {}", PHOTOS[i], row.join(" "));
    }
    for i in 0..3 {
        for j in i + 1..3 {
            let d = e[i].distance(&e[j]);
            assert!(
                d < SAME_PERSON_THRESHOLD,
                "{} vs {}: {d}",
                PHOTOS[i],
                PHOTOS[j]
            );
        }
        let d = e[i].distance(&e[3]);
        assert!(d > SAME_PERSON_THRESHOLD, "{} vs biden: {d}", PHOTOS[i]);
    }
}

/// Diagnostic: distances when embedding the detector box without landmark
/// alignment (noticeably worse separation).
#[test]
#[ignore]
fn unaligned_distances_for_comparison() {
    let m = common::models();
    let e: Vec<Embedding> = PHOTOS
        .iter()
        .map(|n| {
            let img = decode(&common::photo(n)).unwrap();
            let d = m.detect(&img);
            m.embed_unaligned(&img, &d[0].rect)
        })
        .collect();
    for (i, a) in e.iter().enumerate() {
        let row: Vec<String> = e
            .iter()
            .map(|b| format!("{:>8.4}", a.distance(b)))
            .collect();
        println!("unaligned {:>12} {}", PHOTOS[i], row.join(" "));
    }
}

/// Prints per-stage timings: `cargo test -p latch-vision --release --test faces -- --ignored --nocapture timings`.
#[test]
#[ignore]
fn timings() {
    use std::time::Instant;
    let t = Instant::now();
    let m = common::load_models();
    println!("load models: {:?}", t.elapsed());
    for name in PHOTOS {
        let bytes = common::photo(name);
        let mut best = [f64::MAX; 4];
        for _ in 0..5 {
            let t0 = Instant::now();
            let img = decode(&bytes).unwrap();
            let t1 = Instant::now();
            let dets = m.detect(&img);
            let t2 = Instant::now();
            let _ = m.embed(&img, &dets[0].rect);
            let t3 = Instant::now();
            let times = [t1 - t0, t2 - t1, t3 - t2, t3 - t0];
            for (b, t) in best.iter_mut().zip(times) {
                *b = b.min(t.as_secs_f64() * 1000.0);
            }
        }
        println!(
            "{name}: decode {:.1} ms, detect {:.1} ms, embed {:.1} ms, total {:.1} ms (best of 5)",
            best[0], best[1], best[2], best[3]
        );
    }
}
