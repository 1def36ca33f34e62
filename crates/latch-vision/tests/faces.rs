//! End-to-end checks on real, public-domain photos: detection (and none where there is no
//! face), embedding distances of four people at the default threshold, timing.

#![allow(clippy::print_stdout)]

mod common;

use latch_vision::{decode, Embedding, SAME_PERSON_THRESHOLD};

/// Portraits, with whose face each is: three of one person, then one each of three others.
const PHOTOS: [(&str, &str); 6] = [
    ("obama.jpg", "obama"),
    ("obama2.jpg", "obama"),
    ("obama3.jpg", "obama"),
    ("biden.jpg", "biden"),
    ("grace_hopper.jpg", "hopper"),
    ("astronaut.png", "collins"),
];

/// Images with no human face: a cup of coffee, a cat.
const NO_FACE: [&str; 2] = ["coffee.png", "chelsea.png"];

fn embed_photo(name: &str) -> Embedding {
    let img = decode(&common::photo(name)).unwrap();
    let dets = common::models().detect(&img);
    assert_eq!(dets.len(), 1, "{name}: {dets:?}");
    common::models().embed(&img, &dets[0].rect)
}

#[test]
fn no_face_where_there_is_none() {
    for name in NO_FACE {
        let img = decode(&common::photo(name)).unwrap();
        let dets = common::models().detect(&img);
        assert!(dets.is_empty(), "{name}: {dets:?}");
    }
}

#[test]
fn one_plausible_face_per_photo() {
    for (name, _) in PHOTOS {
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
    let e: Vec<Embedding> = PHOTOS.iter().map(|(n, _)| embed_photo(n)).collect();
    let names: Vec<String> = PHOTOS.iter().map(|(n, _)| format!("{n:>16}")).collect();
    println!("{:>16} {}", "", names.join(" "));
    for (i, a) in e.iter().enumerate() {
        let row: Vec<String> = e
            .iter()
            .map(|b| format!("{:>16.4}", a.distance(b)))
            .collect();
        println!("{:>16} {}", PHOTOS[i].0, row.join(" "));
    }
    let (mut same, mut different) = (0, 0);
    for i in 0..PHOTOS.len() {
        for j in i + 1..PHOTOS.len() {
            let d = e[i].distance(&e[j]);
            let (a, b) = (PHOTOS[i], PHOTOS[j]);
            if a.1 == b.1 {
                same += 1;
                assert!(d < SAME_PERSON_THRESHOLD, "{} vs {}: {d}", a.0, b.0);
            } else {
                different += 1;
                assert!(d > SAME_PERSON_THRESHOLD, "{} vs {}: {d}", a.0, b.0);
            }
        }
    }
    assert_eq!((same, different), (3, 12));
}

/// Diagnostic: distances when embedding the detector box without landmark
/// alignment (noticeably worse separation).
#[test]
#[ignore]
fn unaligned_distances_for_comparison() {
    let m = common::models();
    let e: Vec<Embedding> = PHOTOS
        .iter()
        .map(|(n, _)| {
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
        println!("unaligned {:>16} {}", PHOTOS[i].0, row.join(" "));
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
    for (name, _) in PHOTOS {
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
