//! The files the built-in Face engine needs from outside: its network weights, and the
//! public-domain photos its tests and the demo use. Each comes from a pinned package on a
//! package registry (npm, PyPI), is checked against the archive's SHA-256 and the file's own,
//! and is written once into a directory; a later start only checks the digests.
//!
//! | file | from | licence |
//! |---|---|---|
//! | `face-api/tiny_face_detector_model*`, `face-api/face_recognition_model*`, `face-api/face_landmark_68_tiny_model*` | npm `@vladmandic/face-api` 1.7.15 | MIT |
//! | `photos/obama*.jpg`, `photos/biden.jpg` | PyPI `face_recognition` 1.3.0 (sdist, `tests/test_images`) | MIT package; US government portraits |
//! | `photos/grace_hopper.jpg` | PyPI `matplotlib` 3.9.2 (wheel, sample data) | US Navy portrait, public domain |
//! | `photos/astronaut.png`, `photos/coffee.png`, `photos/chelsea.png` | PyPI `scikit-image` 0.24.0 (wheel, test data) | NASA portrait, public domain; CC0 images |
//!
//! Nothing is fetched from anywhere else, and nothing that fails its digest is kept.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

use http_body_util::{BodyExt, Empty, Limited};
use hyper::body::Bytes;

mod tar;
mod zip;

/// Why the files could not be made ready.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// The registry could not be reached or answered badly.
    #[error("fetching {url}: {reason}")]
    Download {
        /// What was fetched.
        url: &'static str,
        /// What went wrong.
        reason: String,
    },
    /// A download or a file did not have its pinned digest.
    #[error("{what} has SHA-256 {got}, not the pinned {want}")]
    Digest {
        /// The archive's URL or the file's path.
        what: String,
        /// The digest found.
        got: String,
        /// The digest pinned.
        want: &'static str,
    },
    /// The archive is damaged or lacks a file.
    #[error("archive: {0}")]
    Archive(String),
    /// The weights in the directory do not load.
    #[error("the face weights under {dir}: {reason}")]
    Weights {
        /// The directory.
        dir: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The directory could not be written.
    #[error("{path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
}

/// A file taken from an archive.
#[derive(Clone, Copy, Debug)]
pub struct Member {
    /// Its path in the archive.
    pub archive_path: &'static str,
    /// Its path under the directory.
    pub file: &'static str,
    /// Its SHA-256, hex.
    pub sha256: &'static str,
}

/// How an archive is packed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Packing {
    /// A gzipped tar (npm packages, Python sdists).
    TarGz,
    /// A zip (Python wheels).
    Zip,
}

/// A pinned archive on a package registry.
#[derive(Clone, Copy, Debug)]
pub struct Artifact {
    /// The package, as people know it.
    pub package: &'static str,
    /// Where the registry serves it.
    pub url: &'static str,
    /// The archive's SHA-256, hex, as the registry publishes it.
    pub sha256: &'static str,
    /// The archive's size in bytes (a larger download is refused).
    pub size: u64,
    /// How it is packed.
    pub packing: Packing,
    /// The files taken from it.
    pub members: &'static [Member],
}

/// The engine's weights: a face detector, a 68-point landmark net and a 128-d face embedding
/// network, from `@vladmandic/face-api` (MIT).
pub const FACE_API: Artifact = Artifact {
    package: "npm @vladmandic/face-api 1.7.15",
    url: "https://registry.npmjs.org/@vladmandic/face-api/-/face-api-1.7.15.tgz",
    sha256: "0d77fffeef362ef9c0939cf6c567f3a2e8e177f114fa257a3270cbd2e509b031",
    size: 12_677_476,
    packing: Packing::TarGz,
    members: &[
        Member {
            archive_path: "package/model/tiny_face_detector_model-weights_manifest.json",
            file: "face-api/tiny_face_detector_model-weights_manifest.json",
            sha256: "5d1af4849ac48d5b985f4a9b16010c512353ddd6fcc63d50fd0bc9e9e64296e5",
        },
        Member {
            archive_path: "package/model/tiny_face_detector_model.bin",
            file: "face-api/tiny_face_detector_model.bin",
            sha256: "b7503ce7df31039b1c43316a9b865cab6a70dd748cc602d3fa28b551503c3871",
        },
        Member {
            archive_path: "package/model/face_recognition_model-weights_manifest.json",
            file: "face-api/face_recognition_model-weights_manifest.json",
            sha256: "cbaffa501b0b9275a12b63357a6843e7e30c054e1c9151e1a5f879b26e32986b",
        },
        Member {
            archive_path: "package/model/face_recognition_model.bin",
            file: "face-api/face_recognition_model.bin",
            sha256: "b413e420d6840b2775fba32008db6f3cddb07d485967fb42cfcf379c16a8c589",
        },
        Member {
            archive_path: "package/model/face_landmark_68_tiny_model-weights_manifest.json",
            file: "face-api/face_landmark_68_tiny_model-weights_manifest.json",
            sha256: "9a1a5dd19fd814fd5095c3cb58f8e0d3193b8c5b9a6715b30a69d559aea31ad4",
        },
        Member {
            archive_path: "package/model/face_landmark_68_tiny_model.bin",
            file: "face-api/face_landmark_68_tiny_model.bin",
            sha256: "b98e9f2f7da76f8a6dda9741a36ed485b224b889d552de2b2c1bb16217f67bfc",
        },
    ],
};

/// Portraits of two people (three of one, one of the other), from the `face_recognition`
/// sdist's test images: what the quality tests and the demo person use.
pub const PHOTOS: Artifact = Artifact {
    package: "PyPI face_recognition 1.3.0 (sdist)",
    url: "https://files.pythonhosted.org/packages/6c/49/75dda409b94841f01cbbc34114c9b67ec618265084e4d12d37ab838f4fd3/face_recognition-1.3.0.tar.gz",
    sha256: "5e5efdd1686aa566af0d3cc1313b131e4b197657a8ffd03669e6d3fad92705ec",
    size: 3_182_249,
    packing: Packing::TarGz,
    members: &[
        Member {
            archive_path: "face_recognition-1.3.0/tests/test_images/obama.jpg",
            file: "photos/obama.jpg",
            sha256: "0930e3aa8cae5920329c0c8cbc6a2ab70f47b0e67b432875beaa95cbf7e741f6",
        },
        Member {
            archive_path: "face_recognition-1.3.0/tests/test_images/obama2.jpg",
            file: "photos/obama2.jpg",
            sha256: "a7efcc907375274796f39646510704aa86672d59f6d5469d69af3c85590976a6",
        },
        Member {
            archive_path: "face_recognition-1.3.0/tests/test_images/obama3.jpg",
            file: "photos/obama3.jpg",
            sha256: "76ac6bf97c36dc2da0ad16a537d6a5ac1b10f48d49aac29a0cca9a17cdbc3ca3",
        },
        Member {
            archive_path: "face_recognition-1.3.0/tests/test_images/biden.jpg",
            file: "photos/biden.jpg",
            sha256: "3c17508bb91554c637a2eabddfae790e5bb1caba93130814fc2ac50be9760c4c",
        },
    ],
};

/// Two more people, and two images with no face: `grace_hopper.jpg` from matplotlib's sample
/// data (a US Navy portrait), and from scikit-image's test data `astronaut.png` (a NASA
/// portrait), `coffee.png` and `chelsea.png` (a cup, a cat).
pub const MORE_PHOTOS: [Artifact; 2] = [
    Artifact {
        package: "PyPI matplotlib 3.9.2 (wheel, sample data)",
        url: "https://files.pythonhosted.org/packages/01/75/6c7ce560e95714a10fcbb3367d1304975a1a3e620f72af28921b796403f3/matplotlib-3.9.2-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl",
        sha256: "8912ef7c2362f7193b5819d17dae8629b34a95c58603d781329712ada83f9447",
        size: 8_314_361,
        packing: Packing::Zip,
        members: &[Member {
            archive_path: "matplotlib/mpl-data/sample_data/grace_hopper.jpg",
            file: "photos/grace_hopper.jpg",
            sha256: "a8ca6d734765703b09728ab47fe59f473d93ae3967fc24c7c0288c3c7adb7130",
        }],
    },
    Artifact {
        package: "PyPI scikit-image 0.24.0 (wheel, test data)",
        url: "https://files.pythonhosted.org/packages/ad/96/138484302b8ec9a69cdf65e8d4ab47a640a3b1a8ea3c437e1da3e1a5a6b8/scikit_image-0.24.0-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl",
        sha256: "fa27b3a0dbad807b966b8db2d78da734cb812ca4787f7fbb143764800ce2fa9c",
        size: 14_861_425,
        packing: Packing::Zip,
        members: &[
            Member {
                archive_path: "skimage/data/astronaut.png",
                file: "photos/astronaut.png",
                sha256: "88431cd9653ccd539741b555fb0a46b61558b301d4110412b5bc28b5e3ea6cb5",
            },
            Member {
                archive_path: "skimage/data/coffee.png",
                file: "photos/coffee.png",
                sha256: "cc02f8ca188b167c775a7101b5d767d1e71792cf762c33d6fa15a4599b5a8de7",
            },
            Member {
                archive_path: "skimage/data/chelsea.png",
                file: "photos/chelsea.png",
                sha256: "596aa1e7cb875eb79f437e310381d26b338a81c2da23439704a73c4651e8c4bb",
            },
        ],
    },
];

/// How long one download may take.
const DOWNLOAD_TIMEOUT: Duration = Duration::from_secs(300);

/// Makes every file of `artifacts` present under `dir` with its pinned digest: files already
/// there are checked; an archive is downloaded only when one of its files is missing or wrong.
pub async fn ensure(dir: &Path, artifacts: &[Artifact]) -> Result<(), FetchError> {
    for artifact in artifacts {
        let mut missing = Vec::new();
        for member in artifact.members {
            let path = dir.join(member.file);
            let ok = match std::fs::read(&path) {
                Ok(bytes) => sha256_hex(&bytes) == member.sha256,
                Err(_) => false,
            };
            if !ok {
                missing.push(*member);
            }
        }
        if missing.is_empty() {
            continue;
        }
        let packed = download(artifact).await?;
        let wanted: Vec<&str> = missing.iter().map(|m| m.archive_path).collect();
        let found: Vec<(String, Vec<u8>)> = match artifact.packing {
            Packing::TarGz => tar::extract(&gunzip(&packed, artifact)?, &wanted)?
                .into_iter()
                .map(|(path, bytes)| (path, bytes.to_vec()))
                .collect(),
            Packing::Zip => zip::extract(&packed, &wanted)?,
        };
        for member in &missing {
            let Some((_, bytes)) = found.iter().find(|(p, _)| p == member.archive_path) else {
                return Err(FetchError::Archive(format!(
                    "{} has no {}",
                    artifact.package, member.archive_path
                )));
            };
            let got = sha256_hex(bytes);
            if got != member.sha256 {
                return Err(FetchError::Digest {
                    what: member.archive_path.to_owned(),
                    got,
                    want: member.sha256,
                });
            }
            write_atomically(&dir.join(member.file), bytes)?;
        }
    }
    Ok(())
}

/// The three face-api networks the engine runs (detector, landmarks, recognizer), read from
/// `dir` as [`ensure`] lays [`FACE_API`] out there. Reads only: call [`ensure`] first.
pub fn load_face_api(dir: &Path) -> Result<latch_vision::Models, FetchError> {
    let failed = |reason: String| FetchError::Weights {
        dir: dir.to_owned(),
        reason,
    };
    let read = |name: String| {
        let path = dir.join("face-api").join(&name);
        std::fs::read(&path).map_err(|e| failed(format!("{}: {e}", path.display())))
    };
    let files = |model: &str| -> Result<(Vec<u8>, Vec<u8>), FetchError> {
        Ok((
            read(format!("{model}-weights_manifest.json"))?,
            read(format!("{model}.bin"))?,
        ))
    };
    fn as_files((manifest, weights): &(Vec<u8>, Vec<u8>)) -> latch_vision::ModelFiles<'_> {
        latch_vision::ModelFiles { manifest, weights }
    }
    let detector = files("tiny_face_detector_model")?;
    let landmarks = files("face_landmark_68_tiny_model")?;
    let recognizer = files("face_recognition_model")?;
    latch_vision::Models::from_files(
        as_files(&detector),
        as_files(&landmarks),
        as_files(&recognizer),
    )
    .map_err(|e| failed(e.to_string()))
}

/// [`ensure`], from code that is not async or runs on an async runtime's thread (tests): on a
/// thread and a runtime of its own.
pub fn ensure_blocking(dir: &Path, artifacts: &[Artifact]) -> Result<(), FetchError> {
    let (dir, artifacts) = (dir.to_owned(), artifacts.to_vec());
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(|e| FetchError::Io {
                        path: dir.clone(),
                        source: e,
                    })?;
                runtime.block_on(ensure(&dir, &artifacts))
            })
            .join()
            .unwrap_or_else(|_| Err(FetchError::Archive("the fetching thread panicked".into())))
    })
}

/// The directory tests keep the files in: `LATCH_MODELS_DIR`, else `target/latch-models` in
/// the workspace, fetched there on first use (shared by every test binary).
pub fn test_dir() -> Result<PathBuf, FetchError> {
    let dir = match std::env::var_os("LATCH_MODELS_DIR") {
        Some(d) => PathBuf::from(d),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/latch-models"),
    };
    ensure_blocking(&dir, &[FACE_API, PHOTOS, MORE_PHOTOS[0], MORE_PHOTOS[1]])?;
    Ok(dir)
}

async fn download(artifact: &Artifact) -> Result<Vec<u8>, FetchError> {
    let fail = |reason: String| FetchError::Download {
        url: artifact.url,
        reason,
    };
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(latch_tls::roots::client_config())
        .https_only()
        .enable_http1()
        .build();
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build::<_, Empty<Bytes>>(connector);
    let uri: hyper::Uri = artifact
        .url
        .parse()
        .map_err(|e: hyper::http::uri::InvalidUri| fail(e.to_string()))?;
    let fetch = async {
        let response = client.get(uri).await.map_err(|e| {
            let mut reason = e.to_string();
            let mut source = std::error::Error::source(&e);
            while let Some(s) = source {
                reason.push_str(&format!(": {s}"));
                source = s.source();
            }
            fail(reason)
        })?;
        if !response.status().is_success() {
            return Err(fail(format!("status {}", response.status())));
        }
        let limit = usize::try_from(artifact.size).unwrap_or(usize::MAX);
        let body = Limited::new(response.into_body(), limit)
            .collect()
            .await
            .map_err(|e| fail(format!("body: {e}")))?;
        Ok(body.to_bytes().to_vec())
    };
    let bytes = tokio::time::timeout(DOWNLOAD_TIMEOUT, fetch)
        .await
        .map_err(|_| fail("timed out".into()))??;
    let got = sha256_hex(&bytes);
    if got != artifact.sha256 {
        return Err(FetchError::Digest {
            what: artifact.url.to_owned(),
            got,
            want: artifact.sha256,
        });
    }
    Ok(bytes)
}

/// The archive, decompressed (at most 64 times its size, against a gzip bomb).
fn gunzip(compressed: &[u8], artifact: &Artifact) -> Result<Vec<u8>, FetchError> {
    let limit = artifact.size.saturating_mul(64);
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(compressed)
        .take(limit)
        .read_to_end(&mut out)
        .map_err(|e| FetchError::Archive(format!("{}: {e}", artifact.package)))?;
    Ok(out)
}

fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), FetchError> {
    let io = |source| FetchError::Io {
        path: path.to_owned(),
        source,
    };
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(io)?;
    }
    // Unique per process and thread, made new (never an existing file or link followed), then
    // renamed into place: concurrent fetchers never write the same temporary.
    let tmp = path.with_extension(format!(
        "part-{}-{:?}",
        std::process::id(),
        std::thread::current().id()
    ));
    let _ = std::fs::remove_file(&tmp);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&tmp)
        .map_err(io)?;
    std::io::Write::write_all(&mut file, bytes)
        .and_then(|()| file.sync_all())
        .map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)
}

/// SHA-256, lower-case hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    ring::digest::digest(&ring::digest::SHA256, bytes)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Damaged copies of `good`, for the archive readers' tests: every prefix, then `n` copies
/// with a few bytes overwritten (a fixed xorshift sequence, so a failure repeats).
#[cfg(test)]
pub(crate) fn damaged_copies(good: &[u8], n: usize) -> impl Iterator<Item = Vec<u8>> + '_ {
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let prefixes = (0..good.len()).map(|cut| good[..cut].to_vec());
    let noisy = (0..n).map(move |_| {
        let mut copy = good.to_vec();
        for _ in 0..4 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let i = (seed % copy.len().max(1) as u64) as usize;
            if let Some(b) = copy.get_mut(i) {
                *b = (seed >> 32) as u8;
            }
        }
        copy
    });
    prefixes.chain(noisy)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_pin_is_a_sha256_and_every_file_stays_under_the_directory() {
        for artifact in [FACE_API, PHOTOS, MORE_PHOTOS[0], MORE_PHOTOS[1]] {
            assert!(
                artifact.url.starts_with("https://registry.npmjs.org/")
                    || artifact.url.starts_with("https://files.pythonhosted.org/")
            );
            for digest in
                std::iter::once(artifact.sha256).chain(artifact.members.iter().map(|m| m.sha256))
            {
                assert_eq!(digest.len(), 64);
                assert!(digest
                    .bytes()
                    .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
            }
            for m in artifact.members {
                assert!(!m.file.starts_with('/') && !m.file.contains(".."));
            }
        }
    }

    #[test]
    fn a_file_with_the_wrong_digest_is_replaced_by_the_pinned_one() {
        let dir = tempfile::tempdir().unwrap();
        let cached = test_dir().unwrap();
        // Start from the good files, spoil one, and ensure: only its archive is fetched again.
        for m in PHOTOS.members {
            let to = dir.path().join(m.file);
            std::fs::create_dir_all(to.parent().unwrap()).unwrap();
            std::fs::copy(cached.join(m.file), &to).unwrap();
        }
        let spoiled = dir.path().join(PHOTOS.members[3].file);
        std::fs::write(&spoiled, b"not a photo").unwrap();
        ensure_blocking(dir.path(), &[PHOTOS]).unwrap();
        assert_eq!(
            sha256_hex(&std::fs::read(&spoiled).unwrap()),
            PHOTOS.members[3].sha256
        );
    }

    #[test]
    fn a_gzip_bomb_is_cut_off() {
        let artifact = Artifact { size: 10, ..PHOTOS };
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        std::io::Write::write_all(&mut encoder, &vec![0u8; 100_000]).unwrap();
        let bomb = encoder.finish().unwrap();
        assert_eq!(gunzip(&bomb, &artifact).unwrap().len(), 640);
        assert!(gunzip(b"not gzip", &artifact).is_err());
    }
}
