//! The built-in engine behind the front's router, through `oneshot`: real weights, real photos,
//! a real store (SQLite in a temporary folder; PostgreSQL on 127.0.0.1:5432, in a schema of its
//! own, for the last test),
//! a [`FixedClock`], subscription keys of resources approved for Identification and
//! Verification (so no limited access token is needed).
//!
//! Embedding a photo is the expensive step, so the networks are loaded once per test binary
//! and each test embeds only the few photos it needs; faces the test only needs to be in the
//! data are written through the store's `FaceData` API.

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use axum::Router;
use latch_audit::writer::AuditLog;
use latch_core::audit::Actor;
use latch_core::{FeatureSet, FixedClock, ResourceId, UnixTime, Verifier};
use latch_store::check_cache::CheckCache;
use latch_store::face::{DetectedFace, FacePerson, PersistedFace};
use latch_store::operations::Admin;
use latch_store::signing::KeyRing;
use latch_store::sqlite::SqliteStore;
use latch_store::Store;
use latch_testkit::Answer;
use latch_vision::{Embedding, EMBEDDING_LEN};
use ring::rand::SystemRandom;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::image::MAX_IMAGE_BYTES;
use super::{Engine, FaceModel, ImageUrlPolicy};
use latch_face::backend::Backend;
use latch_face::rate_limit::RateLimit;
use latch_face::Verifiers;
use latch_face::{router, FaceConfig, FaceState};

const CLIENT: &str = "/subscriptions/22222222-2222-4222-8222-222222222222/resourceGroups/client/providers/Microsoft.CognitiveServices/accounts/client-face";
const OTHER: &str = "/subscriptions/33333333-3333-4333-8333-333333333333/resourceGroups/other/providers/Microsoft.CognitiveServices/accounts/other-face";
const NOW: UnixTime = UnixTime(1_800_000_000);
const HOST: &str = "face.example.test";
/// The confidence of a face compared with itself (distance 0).
const SAME_FACE: f64 = 0.99753;
/// A well-formed id nothing has.
const UNKNOWN: &str = "0f0e0d0c-0b0a-4909-8807-060504030201";

/// The weights and photos, fetched once into `target/latch-models`.
static MODELS_DIR: LazyLock<PathBuf> =
    LazyLock::new(|| latch_models::test_dir().expect("face weights and test photos"));

/// The networks, loaded once; clones share them.
static MODEL: LazyLock<FaceModel> =
    LazyLock::new(|| FaceModel::load(&MODELS_DIR).expect("face model weights"));

fn photo(name: &str) -> Vec<u8> {
    std::fs::read(MODELS_DIR.join("photos").join(name)).unwrap()
}

fn id(s: &str) -> ResourceId {
    ResourceId::parse(s).unwrap()
}

fn is_uuid(s: &str) -> bool {
    s.len() == 36 && latch_face::ids::PersonId::parse(s).is_ok()
}

/// An embedding that is no face's.
fn synthetic_embedding() -> Vec<u8> {
    (0..EMBEDDING_LEN)
        .flat_map(|i| (i as f32 / 1000.0).to_le_bytes())
        .collect()
}

/// A deterministic person id for persons written through the store.
fn nth_uuid(i: usize) -> String {
    format!("00000000-0000-4000-8000-{i:012x}")
}

// ---------------------------------------------------------------------------------------------
// Fixture

/// A PostgreSQL schema of its own, dropped afterwards (even after a failed assertion).
struct PgSchema {
    base: String,
    schema: String,
}

impl Drop for PgSchema {
    fn drop(&mut self) {
        // On a thread and a runtime of its own: a test's runtime may be shutting down.
        let (base, schema) = (self.base.clone(), self.schema.clone());
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            runtime.block_on(async {
                let client = pg_connect(&base).await;
                client
                    .batch_execute(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
                    .await
                    .ok()
            })
        })
        .join();
    }
}

async fn pg_connect(base: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(base, tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|e| panic!("PostgreSQL at '{base}' (LATCH_TEST_DATABASE_URL): {e}"));
    tokio::spawn(connection);
    client
}

fn pg_base() -> String {
    std::env::var("LATCH_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "host=127.0.0.1 port=5432 user=postgres dbname=test".into())
}

struct Fx {
    app: Router,
    engine: Arc<Engine>,
    store: Arc<dyn Store>,
    clock: FixedClock,
    client: ResourceId,
    key: String,
    other_key: String,
    _dir: Option<tempfile::TempDir>,
    // Last: the schema is dropped after the store is closed.
    _pg: Option<PgSchema>,
}

async fn fixture() -> Fx {
    fixture_with(ImageUrlPolicy::default()).await
}

async fn fixture_with(policy: ImageUrlPolicy) -> Fx {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path(), "main", &SystemRandom::new()).unwrap();
    build(Arc::new(store), policy, Some(dir), None).await
}

async fn postgres_fixture() -> Fx {
    let mut suffix = [0u8; 8];
    ring::rand::SecureRandom::fill(&SystemRandom::new(), &mut suffix).unwrap();
    let schema = format!(
        "latch_face_test_{}",
        suffix
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    );
    let base = pg_base();
    pg_connect(&base)
        .await
        .batch_execute(&format!("CREATE SCHEMA {schema}"))
        .await
        .unwrap();
    let pg = PgSchema {
        base: base.clone(),
        schema: schema.clone(),
    };
    let url = format!("{base} options='-c search_path={schema}'");
    let store = latch_store::postgres::PgStore::connect(&url, "main", &SystemRandom::new())
        .await
        .unwrap();
    build(Arc::new(store), ImageUrlPolicy::default(), None, Some(pg)).await
}

async fn build(
    store: Arc<dyn Store>,
    policy: ImageUrlPolicy,
    dir: Option<tempfile::TempDir>,
    pg: Option<PgSchema>,
) -> Fx {
    let rng = SystemRandom::new();
    let clock = FixedClock::at(NOW);
    let admin = Admin::new(
        store.clone(),
        Arc::new(SystemRandom::new()),
        Arc::new(clock.clone()),
        Actor::LocalOperator,
    );
    let approved = FeatureSet::parse_csv("Face.Identification,Face.Verification").unwrap();
    let mut keys = Vec::new();
    for r in [CLIENT, OTHER] {
        let (_, k) = admin.create_resource(&id(r)).await.unwrap();
        admin.set_approvals(&id(r), &approved).await.unwrap();
        keys.push(k.key1.expose_secret().to_owned());
    }
    let ring = KeyRing::load_or_create(store.as_ref(), &rng, &clock)
        .await
        .unwrap();
    let verifiers = Verifiers::new(Verifier::new(
        "urn:latch:test",
        ring.public_keys().to_vec(),
        30,
    ));
    let (audit, _writer) = AuditLog::spawn(store.clone(), "main");
    let engine = Arc::new(Engine::new(
        MODEL.clone(),
        store.clone(),
        Arc::new(clock.clone()),
        policy,
    ));
    let config = FaceConfig {
        rate_limit: RateLimit {
            per_second: 1e6,
            burst: 1e6,
        },
        ..FaceConfig::default()
    };
    let state = FaceState::new(
        CheckCache::new(store.clone(), Duration::ZERO),
        audit,
        verifiers,
        Arc::new(clock.clone()),
        config,
        Backend::Configured(engine.clone()),
    )
    .await
    .unwrap();
    let other_key = keys.pop().unwrap();
    let key = keys.pop().unwrap();
    Fx {
        app: router(state),
        engine,
        store,
        clock,
        client: id(CLIENT),
        key,
        other_key,
        _dir: dir,
        _pg: pg,
    }
}

/// The engine's own shorthand on top of the kit's answer.
trait BadArgument {
    fn bad(&self, message: &str);
}

impl BadArgument for Answer {
    #[track_caller]
    fn bad(&self, message: &str) {
        self.refused(StatusCode::BAD_REQUEST, "BadArgument", message);
    }
}

enum Payload {
    None,
    Json(Value),
    Image(Vec<u8>),
}

impl Fx {
    async fn send(
        &self,
        method: Method,
        path: &str,
        key: &str,
        payload: Payload,
        headers: &[(&str, &str)],
    ) -> Answer {
        let mut req = Request::builder()
            .method(method)
            .uri(format!("/face/v1.0/{path}"))
            .header("host", HOST)
            .header("Ocp-Apim-Subscription-Key", key);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let body = match payload {
            Payload::None => Body::empty(),
            Payload::Json(v) => {
                req = req.header("content-type", "application/json");
                Body::from(v.to_string())
            }
            Payload::Image(bytes) => {
                req = req.header("content-type", "application/octet-stream");
                Body::from(bytes)
            }
        };
        latch_testkit::call(&self.app, req.body(body).unwrap()).await
    }

    async fn get(&self, path: &str) -> Answer {
        self.send(Method::GET, path, &self.key, Payload::None, &[])
            .await
    }

    async fn get_as(&self, key: &str, path: &str) -> Answer {
        self.send(Method::GET, path, key, Payload::None, &[]).await
    }

    async fn delete(&self, path: &str) -> Answer {
        self.send(Method::DELETE, path, &self.key, Payload::None, &[])
            .await
    }

    async fn put(&self, path: &str, body: Value) -> Answer {
        self.send(Method::PUT, path, &self.key, Payload::Json(body), &[])
            .await
    }

    async fn post(&self, path: &str, body: Value) -> Answer {
        self.send(Method::POST, path, &self.key, Payload::Json(body), &[])
            .await
    }

    async fn post_as(&self, key: &str, path: &str, body: Value) -> Answer {
        self.send(Method::POST, path, key, Payload::Json(body), &[])
            .await
    }

    async fn post_image(&self, path: &str, image: Vec<u8>) -> Answer {
        self.send(Method::POST, path, &self.key, Payload::Image(image), &[])
            .await
    }

    /// Creates a group.
    async fn group(&self, group: &str, recognition_model: &str) {
        self.put(
            &format!("largepersongroups/{group}"),
            json!({"name": group, "recognitionModel": recognition_model}),
        )
        .await
        .empty_ok();
    }

    /// Creates a person; returns its id.
    async fn person(&self, group: &str, name: &str) -> String {
        let a = self
            .post(
                &format!("largepersongroups/{group}/persons"),
                json!({"name": name}),
            )
            .await;
        let person = a.ok()["personId"].as_str().unwrap().to_owned();
        assert!(is_uuid(&person), "{person}");
        person
    }

    /// Adds a photo's one face to a person; returns the persisted face id.
    async fn add_face(&self, group: &str, person: &str, name: &str) -> String {
        let a = self
            .post_image(
                &format!("largepersongroups/{group}/persons/{person}/persistedfaces"),
                photo(name),
            )
            .await;
        let face = a.ok()["persistedFaceId"].as_str().unwrap().to_owned();
        assert!(is_uuid(&face), "{face}");
        face
    }

    /// The persisted face ids of a person.
    async fn faces_of(&self, group: &str, person: &str) -> Vec<String> {
        let a = self
            .get(&format!("largepersongroups/{group}/persons/{person}"))
            .await;
        serde_json::from_value(a.ok()["persistedFaceIds"].clone()).unwrap()
    }

    /// Trains a group: 202 with the operation's absolute URL; returns the operation's path.
    async fn train(&self, group: &str) -> String {
        let a = self
            .post(&format!("largepersongroups/{group}/train"), json!({}))
            .await;
        assert_eq!(a.status, StatusCode::ACCEPTED, "{}", a.body);
        assert!(a.body.is_empty());
        assert_eq!(a.header("retry-after"), "1");
        let location = a.header("operation-location");
        let path = location
            .strip_prefix(&format!("https://{HOST}"))
            .unwrap_or_else(|| panic!("not an absolute https URL on {HOST}: {location}"));
        let op = path.strip_prefix("/face/v1.0/operations/").unwrap();
        assert!(is_uuid(op), "{location}");
        path.to_owned()
    }

    /// Detects the one face of a photo; returns its face id.
    async fn detect(&self, name: &str, query: &str) -> String {
        let a = self
            .post_image(&format!("detect?returnFaceId=true{query}"), photo(name))
            .await;
        let body = a.ok();
        let faces = body.as_array().unwrap();
        assert_eq!(faces.len(), 1, "{name}: {}", a.body);
        let face = faces[0]["faceId"].as_str().unwrap().to_owned();
        assert!(is_uuid(&face));
        face
    }

    async fn identify_with(&self, group: &str, faces: &[&str], extra: Value) -> Answer {
        let mut body = json!({"faceIds": faces, "largePersonGroupId": group});
        for (k, v) in extra.as_object().unwrap() {
            body[k] = v.clone();
        }
        self.post("identify", body).await
    }

    /// The candidates (person, confidence) of one face identified in a group.
    async fn candidates(&self, group: &str, face: &str) -> Vec<(String, f64)> {
        let a = self.identify_with(group, &[face], json!({})).await;
        candidates_of(&a.ok()[0])
    }

    /// The embedding the store holds for a detected face.
    async fn detected_embedding(&self, face: &str) -> Vec<u8> {
        let found = self
            .store
            .detected_faces(&self.client, &[face.to_owned()], self.clock_now())
            .await
            .unwrap();
        assert_eq!(found.len(), 1);
        found[0].embedding.clone()
    }

    /// The embedding the store holds for a persisted face.
    async fn persisted_embedding(&self, group: &str, person: &str, face: &str) -> Vec<u8> {
        self.store
            .persisted_face(&self.client, group, person, face)
            .await
            .unwrap()
            .unwrap()
            .embedding
    }

    /// Writes a person with one face of `embedding` through the store; returns its id.
    async fn store_person(&self, group: &str, person_id: &str, embedding: &[u8]) -> String {
        let person = FacePerson {
            person_id: person_id.to_owned(),
            name: format!("person {person_id}"),
            user_data: None,
            persisted_face_ids: Vec::new(),
        };
        self.store
            .create_face_person(&self.client, group, &person)
            .await
            .unwrap();
        let face = PersistedFace {
            face_id: super::new_uuid().unwrap(),
            user_data: None,
            embedding: embedding.to_vec(),
        };
        self.store
            .add_persisted_face(
                &self.client,
                group,
                person_id,
                &face,
                latch_store::face::FaceLimits::per_person(248),
            )
            .await
            .unwrap();
        person.person_id
    }

    fn clock_now(&self) -> UnixTime {
        latch_core::Clock::now(&self.clock)
    }
}

fn candidates_of(result: &Value) -> Vec<(String, f64)> {
    result["candidates"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["personId"].as_str().unwrap().to_owned(),
                c["confidence"].as_f64().unwrap(),
            )
        })
        .collect()
}

fn ids_of(list: &Value, member: &str) -> Vec<String> {
    list.as_array()
        .unwrap()
        .iter()
        .map(|g| g[member].as_str().unwrap().to_owned())
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Images made here: a PNG encoder with stored (uncompressed) deflate blocks.

fn crc32(bytes: &[u8]) -> u32 {
    let mut c = !0u32;
    for &b in bytes {
        c ^= u32::from(b);
        for _ in 0..8 {
            c = if c & 1 != 0 {
                0xEDB8_8320 ^ (c >> 1)
            } else {
                c >> 1
            };
        }
    }
    !c
}

fn adler32(bytes: &[u8]) -> u32 {
    let (mut a, mut b) = (1u32, 0u32);
    for &x in bytes {
        a = (a + u32::from(x)) % 65_521;
        b = (b + a) % 65_521;
    }
    (b << 16) | a
}

fn png_chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
    out.extend_from_slice(&u32::try_from(data.len()).unwrap().to_be_bytes());
    let start = out.len();
    out.extend_from_slice(kind);
    out.extend_from_slice(data);
    let crc = crc32(&out[start..]);
    out.extend_from_slice(&crc.to_be_bytes());
}

/// An 8-bit PNG: colour type 0 (grey, 1 byte a pixel) or 2 (RGB, 3 bytes a pixel).
fn png(width: u32, height: u32, color_type: u8, pixels: &[u8]) -> Vec<u8> {
    let channels = if color_type == 2 { 3 } else { 1 };
    let row = width as usize * channels;
    assert_eq!(pixels.len(), row * height as usize);
    let mut raw = Vec::with_capacity((row + 1) * height as usize);
    for line in pixels.chunks(row) {
        raw.push(0);
        raw.extend_from_slice(line);
    }
    let mut z = vec![0x78, 0x01];
    let blocks: Vec<&[u8]> = raw.chunks(65_535).collect();
    for (i, block) in blocks.iter().enumerate() {
        z.push(u8::from(i + 1 == blocks.len()));
        let len = u16::try_from(block.len()).unwrap();
        z.extend_from_slice(&len.to_le_bytes());
        z.extend_from_slice(&(!len).to_le_bytes());
        z.extend_from_slice(block);
    }
    z.extend_from_slice(&adler32(&raw).to_be_bytes());
    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(&width.to_be_bytes());
    ihdr.extend_from_slice(&height.to_be_bytes());
    ihdr.extend_from_slice(&[8, color_type, 0, 0, 0]);
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    png_chunk(&mut out, b"IHDR", &ihdr);
    png_chunk(&mut out, b"IDAT", &z);
    png_chunk(&mut out, b"IEND", &[]);
    out
}

/// A grey square: no face in it.
fn grey_png(width: u32, height: u32) -> Vec<u8> {
    png(
        width,
        height,
        0,
        &vec![128; width as usize * height as usize],
    )
}

/// obama.jpg at half size, twice side by side: two faces.
fn two_faces_png() -> Vec<u8> {
    let img = latch_vision::decode(&photo("obama.jpg")).unwrap();
    let (w, h) = (img.width / 2, img.height / 2);
    let mut rgb = Vec::with_capacity((2 * w * h * 3) as usize);
    for y in 0..h {
        for _copy in 0..2 {
            for x in 0..w {
                let at = (((2 * y) * img.width + 2 * x) * 3) as usize;
                rgb.extend_from_slice(&img.rgb[at..at + 3]);
            }
        }
    }
    png(2 * w, h, 2, &rgb)
}

#[test]
fn a_face_compared_with_itself_has_the_formulas_top_confidence() {
    assert_eq!(super::confidence(0.0), SAME_FACE);
}

// ---------------------------------------------------------------------------------------------
// 1. Groups

#[tokio::test]
async fn large_person_groups_are_created_read_listed_and_deleted() {
    let f = fixture().await;
    let a = f
        .put(
            "largepersongroups/g1",
            json!({"name": "one", "userData": "u1"}),
        )
        .await;
    a.empty_ok();
    f.put("largepersongroups/g1", json!({"name": "again"}))
        .await
        .refused(
            StatusCode::CONFLICT,
            "LargePersonGroupExists",
            "Large person group already exists.",
        );
    assert_eq!(
        f.get("largepersongroups/g1").await.ok(),
        json!({"largePersonGroupId": "g1", "name": "one", "userData": "u1"}),
        "the duplicate changed nothing, and the model is not said unless asked"
    );
    assert_eq!(
        f.get("largepersongroups/g1?returnRecognitionModel=true")
            .await
            .ok(),
        json!({"largePersonGroupId": "g1", "name": "one", "userData": "u1", "recognitionModel": "recognition_01"})
    );
    f.put(
        "largepersongroups/g2",
        json!({"name": "two", "recognitionModel": "recognition_04"}),
    )
    .await
    .empty_ok();
    f.put("largepersongroups/g3", json!({"name": "three"}))
        .await
        .empty_ok();
    assert_eq!(
        f.get("largepersongroups/g2?returnRecognitionModel=true")
            .await
            .ok()["recognitionModel"],
        "recognition_04"
    );

    // Listing and paging.
    let all = f.get("largepersongroups").await;
    assert_eq!(ids_of(&all.ok(), "largePersonGroupId"), ["g1", "g2", "g3"]);
    assert!(all.json()[0].get("recognitionModel").is_none());
    let with_model = f.get("largepersongroups?returnRecognitionModel=true").await;
    assert_eq!(with_model.ok()[1]["recognitionModel"], "recognition_04");
    let page = f.get("largepersongroups?start=g1&top=1").await;
    assert_eq!(ids_of(&page.ok(), "largePersonGroupId"), ["g2"]);
    let page = f.get("largepersongroups?top=2").await;
    assert_eq!(ids_of(&page.ok(), "largePersonGroupId"), ["g1", "g2"]);
    let page = f.get("largepersongroups?start=g2").await;
    assert_eq!(ids_of(&page.ok(), "largePersonGroupId"), ["g3"]);
    let page = f.get("largepersongroups?start=g3&top=1000").await;
    assert_eq!(page.ok(), json!([]));
    for top in ["0", "1001", "-1", "x"] {
        f.get(&format!("largepersongroups?top={top}"))
            .await
            .bad("'top' is invalid.");
    }

    // An unknown recognition model makes no group.
    f.put(
        "largepersongroups/g4",
        json!({"name": "four", "recognitionModel": "recognition_05"}),
    )
    .await
    .bad("'recognitionModel' is invalid.");
    let missing = |a: Answer| {
        a.refused(
            StatusCode::NOT_FOUND,
            "LargePersonGroupNotFound",
            "Large person group is not found.",
        )
    };
    missing(f.get("largepersongroups/g4").await);

    // Deletion.
    f.delete("largepersongroups/g1").await.empty_ok();
    missing(f.get("largepersongroups/g1").await);
    missing(f.delete("largepersongroups/g1").await);
    missing(f.get("largepersongroups/g1/training").await);
    let all = f.get("largepersongroups").await;
    assert_eq!(ids_of(&all.ok(), "largePersonGroupId"), ["g2", "g3"]);
    // The id is free again.
    f.group("g1", "recognition_04").await;
    assert_eq!(
        f.get("largepersongroups/g1?returnRecognitionModel=true")
            .await
            .ok()["recognitionModel"],
        "recognition_04"
    );
}

// ---------------------------------------------------------------------------------------------
// 2. Persons and persisted faces

#[tokio::test]
async fn persons_and_their_faces() {
    let f = fixture().await;
    f.group("g", "recognition_01").await;
    let a = f
        .post(
            "largepersongroups/g/persons",
            json!({"name": "Barack", "userData": "44th"}),
        )
        .await;
    let person = a.ok()["personId"].as_str().unwrap().to_owned();
    assert!(is_uuid(&person) && &person[14..15] == "4", "{person}");
    let base = format!("largepersongroups/g/persons/{person}");
    assert_eq!(
        f.get(&base).await.ok(),
        json!({"personId": person, "name": "Barack", "userData": "44th", "persistedFaceIds": []})
    );

    let a = f
        .post_image(
            &format!("{base}/persistedfaces?userData=portrait"),
            photo("obama.jpg"),
        )
        .await;
    let face = a.ok()["persistedFaceId"].as_str().unwrap().to_owned();
    assert!(is_uuid(&face));
    assert_eq!(f.faces_of("g", &person).await, std::slice::from_ref(&face));
    assert_eq!(
        f.get(&format!("{base}/persistedfaces/{face}")).await.ok(),
        json!({"persistedFaceId": face, "userData": "portrait"})
    );
    let listed = f.get("largepersongroups/g/persons").await;
    assert_eq!(listed.ok()[0]["persistedFaceIds"], json!([face]));

    // Unknown persons and faces.
    let no_person = |a: Answer| {
        a.refused(
            StatusCode::NOT_FOUND,
            "PersonNotFound",
            "Person is not found.",
        )
    };
    let unknown_person = format!("largepersongroups/g/persons/{UNKNOWN}");
    no_person(f.get(&unknown_person).await);
    no_person(f.delete(&unknown_person).await);
    no_person(
        f.post_image(
            &format!("{unknown_person}/persistedfaces"),
            photo("obama.jpg"),
        )
        .await,
    );
    let no_face = |a: Answer| {
        a.refused(
            StatusCode::NOT_FOUND,
            "PersistedFaceNotFound",
            "Persisted face is not found.",
        )
    };
    no_face(f.get(&format!("{base}/persistedfaces/{UNKNOWN}")).await);
    no_face(f.delete(&format!("{base}/persistedfaces/{UNKNOWN}")).await);

    // A missing group.
    let no_group = |a: Answer| {
        a.refused(
            StatusCode::NOT_FOUND,
            "LargePersonGroupNotFound",
            "Large person group is not found.",
        )
    };
    no_group(
        f.post("largepersongroups/nope/persons", json!({"name": "x"}))
            .await,
    );
    no_group(f.get("largepersongroups/nope/persons").await);
    no_group(
        f.delete(&format!("largepersongroups/nope/persons/{person}"))
            .await,
    );
    no_group(
        f.post_image(
            &format!("largepersongroups/nope/persons/{person}/persistedfaces"),
            photo("obama.jpg"),
        )
        .await,
    );
    no_group(
        f.delete(&format!(
            "largepersongroups/nope/persons/{person}/persistedfaces/{face}"
        ))
        .await,
    );

    // Bad arguments of add face, all refused before anything is kept.
    let add = |query: String| {
        let f = &f;
        let path = format!("{base}/persistedfaces?{query}");
        async move { f.post_image(&path, photo("obama.jpg")).await }
    };
    for target in [
        "1,2,3",
        "1,2,3,4,5",
        "a,b,c,d",
        "1,2,0,4",
        "1,2,3,0",
        "-1,2,3,4",
    ] {
        add(format!("targetFace={target}"))
            .await
            .bad("Invalid argument targetFace.");
    }
    for target in ["0,0,5000,10", "0,0,10,5000", "900,0,11,10", "4000,4000,1,1"] {
        add(format!("targetFace={target}"))
            .await
            .bad("Argument targetFace out of range.");
    }
    add(format!("userData={}", "u".repeat(1025)))
        .await
        .bad("'userData' is too long.");
    add("detectionModel=detection_09".into())
        .await
        .bad("'detectionModel' is invalid.");
    assert_eq!(f.faces_of("g", &person).await, std::slice::from_ref(&face));

    // A person with 248 faces takes no more; the refused one is not kept.
    let full = f
        .store_person("g", &nth_uuid(2), &synthetic_embedding())
        .await;
    for _ in 1..248 {
        let extra = PersistedFace {
            face_id: super::new_uuid().unwrap(),
            user_data: None,
            embedding: synthetic_embedding(),
        };
        f.store
            .add_persisted_face(
                &f.client,
                "g",
                &full,
                &extra,
                latch_store::face::FaceLimits::per_person(248),
            )
            .await
            .unwrap();
    }
    assert_eq!(f.faces_of("g", &full).await.len(), 248);
    let a = f
        .post_image(
            &format!("largepersongroups/g/persons/{full}/persistedfaces"),
            photo("obama.jpg"),
        )
        .await;
    assert_eq!(
        (a.status, a.code().as_str()),
        (StatusCode::FORBIDDEN, "QuotaExceeded"),
        "{}",
        a.body
    );
    assert!(a.message().contains("248"), "{}", a.body);
    assert_eq!(f.faces_of("g", &full).await.len(), 248);
    f.delete(&format!("largepersongroups/g/persons/{full}"))
        .await
        .empty_ok();

    // Deletion.
    f.delete(&format!("{base}/persistedfaces/{face}"))
        .await
        .empty_ok();
    no_face(f.get(&format!("{base}/persistedfaces/{face}")).await);
    assert!(f.faces_of("g", &person).await.is_empty());
    f.delete(&base).await.empty_ok();
    no_person(f.get(&base).await);
    assert_eq!(f.get("largepersongroups/g/persons").await.ok(), json!([]));
}

/// Reading a person or a face of a group that does not exist: the group is what is missing,
/// as the engine already answers when adding a face or deleting there.
#[tokio::test]
async fn reading_in_a_missing_group_is_large_person_group_not_found() {
    let f = fixture().await;
    let no_group = |a: Answer| {
        a.refused(
            StatusCode::NOT_FOUND,
            "LargePersonGroupNotFound",
            "Large person group is not found.",
        )
    };
    no_group(
        f.get(&format!("largepersongroups/nope/persons/{UNKNOWN}"))
            .await,
    );
    no_group(
        f.get(&format!(
            "largepersongroups/nope/persons/{UNKNOWN}/persistedfaces/{UNKNOWN}"
        ))
        .await,
    );
}

/// Ids are UUIDs, which name the same thing in either case: the engine matches them ignoring
/// case in bodies (`personId`, `faceIds`), and should in paths too.
#[tokio::test]
async fn ids_in_paths_are_matched_ignoring_case() {
    let f = fixture().await;
    f.group("g", "recognition_01").await;
    let e = synthetic_embedding();
    let person = f.store_person("g", &nth_uuid(0xabc), &e).await;
    let face = f.faces_of("g", &person).await[0].clone();
    let op = f.train("g").await;
    let upper = person.to_uppercase();
    assert_ne!(upper, person);
    // In a body, the upper-case id is the person.
    let probe = super::new_uuid().unwrap();
    f.store
        .save_detected_faces(
            &f.client,
            &[DetectedFace {
                face_id: probe.clone(),
                recognition_model: "recognition_01".into(),
                embedding: e,
                expires_at: UnixTime(NOW.0 + 600),
            }],
            UnixTime(0),
            usize::MAX,
        )
        .await
        .unwrap();
    let a = f
        .post(
            "verify",
            json!({"faceId": probe, "personId": upper, "largePersonGroupId": "g"}),
        )
        .await;
    assert_eq!(a.ok()["isIdentical"], true);
    // In a path, too.
    let a = f.get(&format!("largepersongroups/g/persons/{upper}")).await;
    assert_eq!(a.ok()["personId"], person.as_str());
    let a = f
        .get(&format!(
            "largepersongroups/g/persons/{person}/persistedfaces/{}",
            face.to_uppercase()
        ))
        .await;
    assert_eq!(a.ok()["persistedFaceId"], face.as_str());
    let (path, op_id) = op.rsplit_once('/').unwrap();
    let path = path.strip_prefix("/face/v1.0/").unwrap();
    let a = f.get(&format!("{path}/{}", op_id.to_uppercase())).await;
    assert_eq!(a.ok()["status"], "succeeded");
}

// ---------------------------------------------------------------------------------------------
// 3. Images the engine cannot use

#[tokio::test]
async fn images_that_cannot_be_used_change_nothing() {
    let f = fixture().await;
    f.group("g", "recognition_01").await;
    let person = f
        .store_person("g", &nth_uuid(1), &synthetic_embedding())
        .await;
    let before = f.faces_of("g", &person).await;
    assert_eq!(before.len(), 1);
    let add_path = format!("largepersongroups/g/persons/{person}/persistedfaces");

    let garbage = vec![b'x'; 4096];
    let small = photo("obama.jpg")[..1023].to_vec();
    let narrow = png(30, 100, 0, &[200; 3000]);
    assert!(narrow.len() >= 1024);
    let grey = grey_png(200, 200);
    let two = two_faces_png();
    assert!(two.len() < MAX_IMAGE_BYTES);

    for (path, expect_detect_ok) in [(&add_path, false), (&"detect".to_owned(), true)] {
        f.post_image(path, garbage.clone()).await.refused_starting(
            StatusCode::BAD_REQUEST,
            "InvalidImage",
            "Decoding error, image format unsupported.",
        );
        f.post_image(path, small.clone()).await.refused(
            StatusCode::BAD_REQUEST,
            "InvalidImageSize",
            "Image size is too small.",
        );
        f.post_image(path, Vec::new()).await.refused(
            StatusCode::BAD_REQUEST,
            "InvalidImageSize",
            "Image size is too small.",
        );
        f.post_image(path, narrow.clone()).await.refused_starting(
            StatusCode::BAD_REQUEST,
            "InvalidImageSize",
            "Image size is too small.",
        );
        f.post_image(path, vec![0xFF; MAX_IMAGE_BYTES + 1])
            .await
            .refused(
                StatusCode::PAYLOAD_TOO_LARGE,
                "InvalidImageSize",
                "Image size is too big.",
            );
        let a = f.post_image(path, grey.clone()).await;
        if expect_detect_ok {
            assert_eq!(a.ok(), json!([]), "no face, no faceId");
        } else {
            a.refused(
                StatusCode::BAD_REQUEST,
                "InvalidImage",
                "No face detected in the image.",
            );
        }
        assert_eq!(f.faces_of("g", &person).await, before);
    }

    // Two faces: detect finds both; adding one needs targetFace.
    let a = f.post_image("detect?returnFaceId=false", two.clone()).await;
    let found = a.ok().as_array().unwrap().clone();
    assert_eq!(found.len(), 2, "{}", a.body);
    f.post_image(&add_path, two.clone()).await.refused(
        StatusCode::BAD_REQUEST,
        "InvalidImage",
        "There is more than 1 face in the image.",
    );
    assert_eq!(f.faces_of("g", &person).await, before);
    // A targetFace the detector finds no face in is refused, not embedded.
    let r = &found[0]["faceRectangle"];
    let corner = format!(
        "0,0,{},{}",
        r["left"].as_u64().unwrap() / 2 + 1,
        r["top"].as_u64().unwrap() / 2 + 1
    );
    f.post_image(&format!("{add_path}?targetFace={corner}"), two.clone())
        .await
        .refused(
            StatusCode::BAD_REQUEST,
            "InvalidImage",
            "No face detected in the image or in the specified targetFace area.",
        );
    assert_eq!(f.faces_of("g", &person).await, before);
    let target = format!("{},{},{},{}", r["left"], r["top"], r["width"], r["height"]);
    let a = f
        .post_image(&format!("{add_path}?targetFace={target}"), two)
        .await;
    let added = a.ok()["persistedFaceId"].as_str().unwrap().to_owned();
    assert_eq!(f.faces_of("g", &person).await, [before[0].clone(), added]);
}

// ---------------------------------------------------------------------------------------------
// 4. Training

#[tokio::test]
async fn training_snapshots_the_group_and_its_operation_can_be_polled() {
    let f = fixture().await;
    f.group("g", "recognition_01").await;
    let obama = f.person("g", "Obama").await;
    f.add_face("g", &obama, "obama.jpg").await;
    let probe = f.detect("obama2.jpg", "").await;

    f.identify_with("g", &[&probe], json!({})).await.refused(
        StatusCode::BAD_REQUEST,
        "LargePersonGroupNotTrained",
        "Large person group not trained.",
    );
    let status = f.get("largepersongroups/g/training").await;
    assert_eq!(status.ok()["status"], "notStarted");
    f.post("largepersongroups/nope/train", json!({}))
        .await
        .refused(
            StatusCode::NOT_FOUND,
            "LargePersonGroupNotFound",
            "Large person group is not found.",
        );

    let op = f.train("g").await;
    let a = f.get(op.strip_prefix("/face/v1.0/").unwrap()).await;
    let id = op.rsplit('/').next().unwrap();
    assert_eq!(a.ok()["status"], "succeeded", "{}", a.body);
    assert_eq!(a.json()["operationId"], id);
    assert_eq!(a.json()["createdTime"], NOW.to_rfc3339());
    let training = f.get("largepersongroups/g/training").await;
    assert_eq!(training.ok()["status"], "succeeded");
    assert_eq!(
        training.json()["lastSuccessfulTrainingDateTime"],
        NOW.to_rfc3339()
    );
    let not_found = |a: Answer| {
        a.refused(
            StatusCode::NOT_FOUND,
            "OperationNotFound",
            "Operation is not found.",
        )
    };
    not_found(f.get_as(&f.other_key, &format!("operations/{id}")).await);
    not_found(f.get(&format!("operations/{UNKNOWN}")).await);
    // Behind a proxy that terminates TLS, the URL has the caller's scheme.
    let a = f
        .send(
            Method::POST,
            "largepersongroups/g/train",
            &f.key,
            Payload::None,
            &[("x-forwarded-proto", "http")],
        )
        .await;
    assert_eq!(a.status, StatusCode::ACCEPTED);
    assert!(a
        .header("operation-location")
        .starts_with(&format!("http://{HOST}/face/v1.0/operations/")));

    let found = f.candidates("g", &probe).await;
    assert_eq!(found[0].0, obama);

    // A face added after training waits for the next one.
    let biden = f.person("g", "Biden").await;
    f.add_face("g", &biden, "biden.jpg").await;
    let biden_probe = f.detect("biden.jpg", "").await;
    assert_eq!(f.candidates("g", &biden_probe).await, []);
    f.clock.advance(10);
    f.train("g").await;
    let training = f.get("largepersongroups/g/training").await;
    assert_eq!(
        training.ok()["lastSuccessfulTrainingDateTime"],
        UnixTime(NOW.0 + 10).to_rfc3339()
    );
    let found = f.candidates("g", &biden_probe).await;
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].0, biden);
    assert!(found[0].1 > 0.5);
    // A deleted person leaves at once, without retraining.
    f.delete(&format!("largepersongroups/g/persons/{biden}"))
        .await
        .empty_ok();
    assert_eq!(f.candidates("g", &biden_probe).await, []);

    // The first operation is remembered for a day, to the second.
    let first = op.strip_prefix("/face/v1.0/").unwrap();
    f.clock.set(UnixTime(NOW.0 + 86_399));
    assert_eq!(f.get(first).await.ok()["status"], "succeeded");
    f.clock.set(UnixTime(NOW.0 + 86_400));
    not_found(f.get(first).await);
}

// ---------------------------------------------------------------------------------------------
// 5. Identify, verify and find similar on real photos

#[tokio::test]
async fn identify_verify_and_find_similar_tell_the_people_apart() {
    let f = fixture().await;
    f.group("g", "recognition_01").await;
    let obama = f.person("g", "Obama").await;
    let obama_face = f.add_face("g", &obama, "obama.jpg").await;
    f.train("g").await;
    let obama2 = f.detect("obama2.jpg", "").await;
    let obama3 = f.detect("obama3.jpg", "").await;
    let biden = f.detect("biden.jpg", "").await;
    let obama1 = f.detect("obama.jpg", "").await;

    let a = f.identify_with("g", &[&obama2, &biden], json!({})).await;
    let body = a.ok();
    let results = body.as_array().unwrap();
    assert_eq!(results.len(), 2);
    assert_eq!(results[0]["faceId"], obama2.as_str());
    let found = candidates_of(&results[0]);
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].0, obama);
    assert!(found[0].1 > 0.5 && found[0].1 < 1.0, "{found:?}");
    assert_eq!(results[1]["faceId"], biden.as_str());
    assert_eq!(candidates_of(&results[1]), []);
    // Above its confidence, nobody.
    let a = f
        .identify_with("g", &[&obama2], json!({"confidenceThreshold": 0.99}))
        .await;
    assert_eq!(candidates_of(&a.ok()[0]), []);
    // At a threshold of zero, Biden gets Obama as a (poor) candidate.
    let a = f
        .identify_with("g", &[&biden], json!({"confidenceThreshold": 0.0}))
        .await;
    let poor = candidates_of(&a.ok()[0]);
    assert_eq!(poor.len(), 1);
    assert!(poor[0].1 < 0.5, "{poor:?}");

    // maxNumOfCandidatesReturned: three persons with the same face tie, ordered by id.
    f.group("copies", "recognition_01").await;
    let e = f.persisted_embedding("g", &obama, &obama_face).await;
    let copies = [
        f.store_person("copies", &nth_uuid(3), &e).await,
        f.store_person("copies", &nth_uuid(1), &e).await,
        f.store_person("copies", &nth_uuid(2), &e).await,
    ];
    f.train("copies").await;
    let all = f.candidates("copies", &obama2).await;
    assert_eq!(
        all.iter().map(|c| c.0.as_str()).collect::<Vec<_>>(),
        [&copies[1], &copies[2], &copies[0]]
    );
    assert!(all.iter().all(|c| c.1 == found[0].1), "{all:?}");
    for max in [1, 2] {
        let a = f
            .identify_with(
                "copies",
                &[&obama2],
                json!({"maxNumOfCandidatesReturned": max}),
            )
            .await;
        assert_eq!(candidates_of(&a.ok()[0]), all[..max]);
    }

    // Verify, face to face.
    let verify = |body: Value| f.post("verify", body);
    let a = verify(json!({"faceId1": obama2, "faceId2": obama3})).await;
    assert_eq!(a.ok()["isIdentical"], true, "{}", a.body);
    assert!(a.json()["confidence"].as_f64().unwrap() > 0.5);
    let a = verify(json!({"faceId1": obama1, "faceId2": biden})).await;
    assert_eq!(a.ok()["isIdentical"], false, "{}", a.body);
    assert!(a.json()["confidence"].as_f64().unwrap() < 0.5);
    let a = verify(json!({"faceId1": obama1, "faceId2": obama1})).await;
    assert_eq!(
        a.ok(),
        json!({"isIdentical": true, "confidence": SAME_FACE})
    );
    // Face to person.
    let a = verify(json!({"faceId": obama3, "personId": obama, "largePersonGroupId": "g"})).await;
    assert_eq!(a.ok()["isIdentical"], true, "{}", a.body);
    let a = verify(json!({"faceId": biden, "personId": obama, "largePersonGroupId": "g"})).await;
    assert_eq!(a.ok()["isIdentical"], false, "{}", a.body);
    verify(json!({"faceId": biden, "personId": UNKNOWN, "largePersonGroupId": "g"}))
        .await
        .refused(
            StatusCode::NOT_FOUND,
            "PersonNotFound",
            "Person is not found.",
        );
    verify(json!({"faceId": biden, "personId": obama, "largePersonGroupId": "nope"}))
        .await
        .refused(
            StatusCode::NOT_FOUND,
            "LargePersonGroupNotFound",
            "Large person group is not found.",
        );

    // Find similar: the same person only, or every face by likeness.
    let a = f
        .post(
            "findsimilars",
            json!({"faceId": obama2, "faceIds": [biden, obama3, obama1]}),
        )
        .await;
    let similar = ids_of(&a.ok(), "faceId");
    assert_eq!(similar.len(), 2, "{}", a.body);
    assert!(similar.contains(&obama3) && similar.contains(&obama1));
    let a = f
        .post(
            "findsimilars",
            json!({"faceId": obama2, "faceIds": [biden, obama3, obama1], "mode": "matchFace"}),
        )
        .await;
    let similar = ids_of(&a.ok(), "faceId");
    assert_eq!(similar.len(), 3);
    assert_eq!(similar[2], biden);
    let confidences: Vec<f64> = a
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["confidence"].as_f64().unwrap())
        .collect();
    assert!(
        confidences.windows(2).all(|w| w[0] >= w[1]),
        "{confidences:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// 6. faceId scope and expiry

#[tokio::test]
async fn face_ids_belong_to_their_resource_and_expire_on_the_second() {
    let f = fixture().await;
    f.group("g", "recognition_01").await;
    let probe = f.detect("obama2.jpg", "&faceIdTimeToLive=60").await;
    let e = f.detected_embedding(&probe).await;
    let person = f.store_person("g", &nth_uuid(7), &e).await;
    f.train("g").await;

    for ttl in ["59", "86401", "0", "-60", "sixty", "60.5"] {
        f.post_image(
            &format!("detect?returnFaceId=true&faceIdTimeToLive={ttl}"),
            photo("obama2.jpg"),
        )
        .await
        .bad("Argument faceIdTimeToLive must be between 60 and 86400 seconds.");
    }

    // Another resource: neither the face id nor the group is there.
    let not_found =
        |a: Answer| a.refused(StatusCode::NOT_FOUND, "FaceNotFound", "Face is not found.");
    not_found(
        f.post_as(
            &f.other_key,
            "verify",
            json!({"faceId1": probe, "faceId2": probe}),
        )
        .await,
    );
    not_found(
        f.post_as(
            &f.other_key,
            "identify",
            json!({"faceIds": [probe], "largePersonGroupId": "g"}),
        )
        .await,
    );
    f.get_as(&f.other_key, "largepersongroups/g").await.refused(
        StatusCode::NOT_FOUND,
        "LargePersonGroupNotFound",
        "Large person group is not found.",
    );
    assert_eq!(
        f.get_as(&f.other_key, "largepersongroups").await.ok(),
        json!([])
    );
    // Its own group by the same id is its own.
    let a = f
        .send(
            Method::PUT,
            "largepersongroups/g",
            &f.other_key,
            Payload::Json(json!({"name": "theirs"})),
            &[],
        )
        .await;
    a.empty_ok();
    assert_eq!(f.get("largepersongroups/g").await.ok()["name"], "g");
    f.post_as(
        &f.other_key,
        "identify",
        json!({"faceIds": [probe], "largePersonGroupId": "g"}),
    )
    .await
    .refused(StatusCode::NOT_FOUND, "FaceNotFound", "Face is not found.");

    // One second before expiry: still there (face ids in bodies ignore case).
    f.clock.set(UnixTime(NOW.0 + 59));
    assert_eq!(
        f.candidates("g", &probe).await,
        [(person.clone(), SAME_FACE)]
    );
    assert_eq!(
        f.candidates("g", &probe.to_uppercase()).await,
        [(person.clone(), SAME_FACE)]
    );
    let a = f
        .post("verify", json!({"faceId1": probe, "faceId2": probe}))
        .await;
    assert_eq!(a.ok()["isIdentical"], true);
    // At expiry: gone, for every operation.
    f.clock.set(UnixTime(NOW.0 + 60));
    not_found(f.identify_with("g", &[&probe], json!({})).await);
    not_found(
        f.post("verify", json!({"faceId1": probe, "faceId2": probe}))
            .await,
    );
    not_found(
        f.post(
            "verify",
            json!({"faceId": probe, "personId": person, "largePersonGroupId": "g"}),
        )
        .await,
    );
    not_found(
        f.post("findsimilars", json!({"faceId": probe, "faceIds": [probe]}))
            .await,
    );
}

// ---------------------------------------------------------------------------------------------
// 7. Recognition models

#[tokio::test]
async fn faces_are_compared_only_under_one_recognition_model() {
    let f = fixture().await;
    let a = f
        .post_image(
            "detect?returnFaceId=true&recognitionModel=recognition_04&returnRecognitionModel=true",
            photo("obama2.jpg"),
        )
        .await;
    assert_eq!(a.ok()[0]["recognitionModel"], "recognition_04");
    let probe = a.json()[0]["faceId"].as_str().unwrap().to_owned();
    let e = f.detected_embedding(&probe).await;
    for (group, model) in [("g1", "recognition_01"), ("g4", "recognition_04")] {
        f.group(group, model).await;
        f.store_person(group, &nth_uuid(1), &e).await;
        f.train(group).await;
    }
    let incompatible = |a: Answer| a.bad("'recognitionModel' is incompatible.");
    incompatible(f.identify_with("g1", &[&probe], json!({})).await);
    incompatible(
        f.post(
            "verify",
            json!({"faceId": probe, "personId": nth_uuid(1), "largePersonGroupId": "g1"}),
        )
        .await,
    );
    // The same embedding, detected under recognition_01.
    let other = super::new_uuid().unwrap();
    f.store
        .save_detected_faces(
            &f.client,
            &[DetectedFace {
                face_id: other.clone(),
                recognition_model: "recognition_01".into(),
                embedding: e.clone(),
                expires_at: UnixTime(NOW.0 + 600),
            }],
            UnixTime(0),
            usize::MAX,
        )
        .await
        .unwrap();
    incompatible(
        f.post("verify", json!({"faceId1": probe, "faceId2": other}))
            .await,
    );
    incompatible(
        f.post("findsimilars", json!({"faceId": probe, "faceIds": [other]}))
            .await,
    );
    // Under one model, they compare.
    assert_eq!(f.candidates("g4", &probe).await, [(nth_uuid(1), SAME_FACE)]);
    assert_eq!(f.candidates("g1", &other).await, [(nth_uuid(1), SAME_FACE)]);
}

// ---------------------------------------------------------------------------------------------
// 8. Detect options

#[tokio::test]
async fn detect_options() {
    let f = fixture().await;
    let refused = [
        ("returnFaceLandmarks=true", "Argument returnFaceLandmarks is not supported: this engine does not compute landmarks."),
        ("returnFaceAttributes=age,glasses", "Argument returnFaceAttributes is not supported: this engine does not compute face attributes."),
        ("recognitionModel=recognition_05", "'recognitionModel' is invalid."),
        ("detectionModel=detection_04", "'detectionModel' is invalid."),
        ("returnFaceLandmarks=maybe", "The argument returnFaceLandmarks is invalid."),
    ];
    for (query, message) in refused {
        f.post_image(&format!("detect?{query}"), photo("obama2.jpg"))
            .await
            .bad(message);
    }
    let a = f
        .post_image(
            "detect?returnFaceId=false&returnRecognitionModel=true&returnFaceLandmarks=false&detectionModel=detection_03",
            photo("obama2.jpg"),
        )
        .await;
    let body = a.ok();
    let faces = body.as_array().unwrap();
    assert_eq!(faces.len(), 1, "{}", a.body);
    let face = faces[0].as_object().unwrap();
    assert!(!face.contains_key("faceId"), "{}", a.body);
    assert_eq!(face["recognitionModel"], "recognition_01");
    let r = &face["faceRectangle"];
    let (left, top, width, height) = (
        r["left"].as_u64().unwrap(),
        r["top"].as_u64().unwrap(),
        r["width"].as_u64().unwrap(),
        r["height"].as_u64().unwrap(),
    );
    // obama2.jpg is 626 x 1200.
    assert!(width >= 40 && height >= 40, "{r}");
    assert!(left + width <= 626 && top + height <= 1200, "{r}");
    // Nothing was remembered: no face ids to prune.
    assert_eq!(
        f.store
            .prune_detected_faces(UnixTime(i64::MAX))
            .await
            .unwrap(),
        0
    );
}

// ---------------------------------------------------------------------------------------------
// 9. Image URLs

/// A real HTTP/1.1 server on a local socket, answering by path.
struct ImageServer {
    port: u16,
    connections: Arc<AtomicUsize>,
}

async fn image_server(image: Vec<u8>) -> ImageServer {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let connections = Arc::new(AtomicUsize::new(0));
    let counted = connections.clone();
    let image = Arc::new(image);
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            counted.fetch_add(1, Ordering::SeqCst);
            let image = image.clone();
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 2048];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let request = String::from_utf8_lossy(&head).into_owned();
                let path = request.split_whitespace().nth(1).unwrap_or("").to_owned();
                let big = || {
                    let mut b = vec![0u8; MAX_IMAGE_BYTES + 4096];
                    b[..3].copy_from_slice(&[0xFF, 0xD8, 0xFF]);
                    b
                };
                let (status, extra, body, announce) = match path.as_str() {
                    "/photo.jpg" => ("200 OK", "", image.to_vec(), true),
                    "/big.jpg" => ("200 OK", "", big(), true),
                    "/big-unannounced.jpg" => ("200 OK", "", big(), false),
                    "/redirect.jpg" => ("302 Found", "location: /photo.jpg\r\n", Vec::new(), true),
                    "/silent.jpg" => {
                        tokio::time::sleep(Duration::from_secs(30)).await;
                        return;
                    }
                    _ => ("404 Not Found", "", b"not here".to_vec(), true),
                };
                let length = if announce {
                    format!("content-length: {}\r\n", body.len())
                } else {
                    String::new()
                };
                let head = format!(
                    "HTTP/1.1 {status}\r\ncontent-type: image/jpeg\r\n{extra}{length}connection: close\r\n\r\n"
                );
                let _ = stream.write_all(head.as_bytes()).await;
                let _ = stream.write_all(&body).await;
                let _ = stream.shutdown().await;
            });
        }
    });
    ImageServer { port, connections }
}

#[tokio::test]
async fn image_urls_only_from_allowed_hosts_within_limits() {
    let server = image_server(photo("obama2.jpg")).await;
    let url = |path: &str| json!({"url": format!("http://127.0.0.1:{}/{path}", server.port)});

    // The default policy downloads from nowhere.
    let f = fixture().await;
    let a = f.post("detect?returnFaceId=false", url("photo.jpg")).await;
    a.refused_starting(StatusCode::BAD_REQUEST, "InvalidURL", "Invalid image URL.");
    let a = f
        .post(
            "largepersongroups/g/persons/00000000-0000-4000-8000-000000000001/persistedfaces",
            url("photo.jpg"),
        )
        .await;
    // (no such group: refused before the URL is looked at)
    assert_eq!(a.code(), "LargePersonGroupNotFound");
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(server.connections.load(Ordering::SeqCst), 0);
    drop(f);

    // A policy allowing this host and port.
    let f = fixture_with(ImageUrlPolicy {
        hosts: vec![format!("127.0.0.1:{}", server.port)],
        timeout: Duration::from_secs(1),
    })
    .await;
    let a = f.post("detect?returnFaceId=false", url("photo.jpg")).await;
    assert_eq!(a.ok().as_array().unwrap().len(), 1, "{}", a.body);
    assert_eq!(server.connections.load(Ordering::SeqCst), 1);
    // Into a person, too.
    f.group("g", "recognition_01").await;
    let person = f.person("g", "Obama").await;
    let a = f
        .post(
            &format!("largepersongroups/g/persons/{person}/persistedfaces"),
            url("photo.jpg"),
        )
        .await;
    assert!(is_uuid(a.ok()["persistedFaceId"].as_str().unwrap()));

    // Another name for the same server is not the allowed host.
    let seen = server.connections.load(Ordering::SeqCst);
    f.post(
        "detect?returnFaceId=false",
        json!({"url": format!("http://localhost:{}/photo.jpg", server.port)}),
    )
    .await
    .refused_starting(StatusCode::BAD_REQUEST, "InvalidURL", "Invalid image URL.");
    assert_eq!(server.connections.load(Ordering::SeqCst), seen);
    f.post("detect", json!({"uri": "http://127.0.0.1/photo.jpg"}))
        .await
        .bad("Request body is invalid.");

    let download_failed = |a: &Answer| {
        a.refused_starting(
            StatusCode::BAD_REQUEST,
            "InvalidURL",
            "Invalid image URL or error downloading from target server.",
        )
    };
    download_failed(&f.post("detect", url("missing.jpg")).await);
    // Redirects are not followed.
    download_failed(&f.post("detect", url("redirect.jpg")).await);
    // More than 6 MiB, announced or not.
    for big in ["big.jpg", "big-unannounced.jpg"] {
        let a = f.post("detect", url(big)).await;
        assert_eq!(
            (a.status, a.code().as_str()),
            (StatusCode::BAD_REQUEST, "InvalidImageSize"),
            "{big}: {}",
            a.body
        );
    }
    // A server that never answers: the policy's timeout.
    let started = Instant::now();
    let a = f.post("detect", url("silent.jpg")).await;
    let took = started.elapsed();
    download_failed(&a);
    assert!(a.message().contains("took too long"), "{}", a.body);
    assert!(
        took >= Duration::from_secs(1) && took < Duration::from_secs(8),
        "{took:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// 10. A larger group

/// A small deterministic generator (xorshift64*), for embeddings that look like real ones.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> f32 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        let x = self.0.wrapping_mul(0x2545_F491_4F6C_DD1D);
        (x >> 40) as f32 / (1u64 << 24) as f32 - 0.5
    }

    /// A random direction, `length` long.
    fn vector(&mut self, length: f32) -> [f32; EMBEDDING_LEN] {
        let mut v = [0f32; EMBEDDING_LEN];
        for x in &mut v {
            // Roughly normal: a sum of uniforms.
            *x = (0..4).map(|_| self.next()).sum();
        }
        let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        v.map(|x| x * length / norm)
    }
}

#[tokio::test]
async fn identify_over_three_hundred_persons() {
    let f = fixture().await;
    f.group("big", "recognition_01").await;
    let obama = MODEL
        .one_face(photo("obama.jpg").into(), None)
        .await
        .unwrap();
    let norm = obama.0.iter().map(|x| x * x).sum::<f32>().sqrt();
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let real = 137;
    for i in 0..300 {
        let e = if i == real {
            obama
        } else if i % 3 == 0 {
            // Near misses: 0.55 from obama.jpg's face.
            let d = rng.vector(0.55);
            Embedding(std::array::from_fn(|k| obama.0[k] + d[k]))
        } else {
            Embedding(rng.vector(norm))
        };
        f.store_person("big", &nth_uuid(i), &e.to_bytes()).await;
    }
    // Some persons have a second face.
    for i in (1..300).step_by(50) {
        let face = PersistedFace {
            face_id: super::new_uuid().unwrap(),
            user_data: None,
            embedding: Embedding(rng.vector(norm)).to_bytes().to_vec(),
        };
        f.store
            .add_persisted_face(
                &f.client,
                "big",
                &nth_uuid(i),
                &face,
                latch_store::face::FaceLimits::per_person(248),
            )
            .await
            .unwrap();
    }
    // Listing pages through them all.
    let page = f.get("largepersongroups/big/persons").await;
    assert_eq!(page.ok().as_array().unwrap().len(), 300);
    let page = f
        .get(&format!(
            "largepersongroups/big/persons?start={}&top=100",
            nth_uuid(99)
        ))
        .await;
    let ids = ids_of(&page.ok(), "personId");
    assert_eq!(ids.len(), 100);
    assert_eq!(
        (ids[0].as_str(), ids[99].as_str()),
        (nth_uuid(100).as_str(), nth_uuid(199).as_str())
    );

    f.train("big").await;
    let probe = f.detect("obama2.jpg", "").await;
    let found = f.candidates("big", &probe).await;
    assert!(!found.is_empty());
    assert_eq!(found[0].0, nth_uuid(real), "{found:?}");
    assert!(found[0].1 > 0.5);
    let a = f
        .identify_with(
            "big",
            &[&probe],
            json!({"confidenceThreshold": 0.0, "maxNumOfCandidatesReturned": 100}),
        )
        .await;
    let ranked = candidates_of(&a.ok()[0]);
    assert_eq!(ranked.len(), 100);
    assert_eq!(ranked[0].0, nth_uuid(real));
    assert!(ranked.windows(2).all(|w| w[0].1 >= w[1].1), "{ranked:?}");
    let distinct: std::collections::HashSet<&str> = ranked.iter().map(|c| c.0.as_str()).collect();
    assert_eq!(distinct.len(), 100, "one entry a person");
}

// ---------------------------------------------------------------------------------------------
// Enrolment outside any call (a new data directory's demo data)

#[tokio::test]
async fn enrolment_makes_the_group_adds_the_person_and_trains() {
    let f = fixture().await;
    let obama = f
        .engine
        .enroll(
            &f.client,
            "demo",
            "Demo",
            "Obama",
            photo("obama.jpg").into(),
        )
        .await
        .unwrap();
    assert!(is_uuid(&obama));
    assert_eq!(
        f.get("largepersongroups/demo?returnRecognitionModel=true")
            .await
            .ok(),
        json!({"largePersonGroupId": "demo", "name": "Demo", "userData": null, "recognitionModel": "recognition_01"})
    );
    assert_eq!(
        f.get("largepersongroups/demo/training").await.ok()["status"],
        "succeeded"
    );
    // Into the same group again: a second person, and the group retrained.
    let biden = f
        .engine
        .enroll(
            &f.client,
            "demo",
            "ignored",
            "Biden",
            photo("biden.jpg").into(),
        )
        .await
        .unwrap();
    assert_eq!(f.get("largepersongroups/demo").await.ok()["name"], "Demo");
    let persons = f.get("largepersongroups/demo/persons").await;
    assert_eq!(persons.ok().as_array().unwrap().len(), 2);
    let probe = f.detect("obama2.jpg", "").await;
    let found = f.candidates("demo", &probe).await;
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].0, obama);
    assert_ne!(obama, biden);
    // An image without a face enrols nobody.
    assert!(f
        .engine
        .enroll(
            &f.client,
            "demo",
            "Demo",
            "Nobody",
            grey_png(200, 200).into()
        )
        .await
        .is_err());
    let persons = f.get("largepersongroups/demo/persons").await;
    assert_eq!(persons.ok().as_array().unwrap().len(), 2);
}

// ---------------------------------------------------------------------------------------------
// 11. On PostgreSQL

#[tokio::test]
async fn lifecycle_on_postgresql() {
    let f = postgres_fixture().await;
    f.group("g", "recognition_01").await;
    f.put("largepersongroups/g", json!({"name": "again"}))
        .await
        .refused(
            StatusCode::CONFLICT,
            "LargePersonGroupExists",
            "Large person group already exists.",
        );
    assert_eq!(
        f.get("largepersongroups/g?returnRecognitionModel=true")
            .await
            .ok(),
        json!({"largePersonGroupId": "g", "name": "g", "userData": null, "recognitionModel": "recognition_01"})
    );
    let obama = f.person("g", "Obama").await;
    let face = f.add_face("g", &obama, "obama.jpg").await;
    assert_eq!(f.faces_of("g", &obama).await, std::slice::from_ref(&face));
    let probe = f.detect("obama2.jpg", "&faceIdTimeToLive=60").await;
    f.identify_with("g", &[&probe], json!({})).await.refused(
        StatusCode::BAD_REQUEST,
        "LargePersonGroupNotTrained",
        "Large person group not trained.",
    );
    let op = f.train("g").await;
    assert_eq!(
        f.get(op.strip_prefix("/face/v1.0/").unwrap()).await.ok()["status"],
        "succeeded"
    );
    assert_eq!(
        f.get("largepersongroups/g/training").await.ok()["status"],
        "succeeded"
    );
    let found = f.candidates("g", &probe).await;
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].0, obama);
    assert!(found[0].1 > 0.5);

    // Added after training: waits for the next one.
    let e = f.detected_embedding(&probe).await;
    let late = f.store_person("g", &nth_uuid(5), &e).await;
    assert_eq!(f.candidates("g", &probe).await, found);
    f.train("g").await;
    let found = f.candidates("g", &probe).await;
    assert_eq!(found.len(), 2);
    assert_eq!(found[0], (late, SAME_FACE));

    // Another resource sees none of it.
    f.get_as(&f.other_key, "largepersongroups/g").await.refused(
        StatusCode::NOT_FOUND,
        "LargePersonGroupNotFound",
        "Large person group is not found.",
    );
    f.post_as(
        &f.other_key,
        "verify",
        json!({"faceId1": probe, "faceId2": probe}),
    )
    .await
    .refused(StatusCode::NOT_FOUND, "FaceNotFound", "Face is not found.");

    // Expiry, on the second.
    f.clock.set(UnixTime(NOW.0 + 59));
    assert_eq!(f.candidates("g", &probe).await.len(), 2);
    f.clock.set(UnixTime(NOW.0 + 60));
    f.identify_with("g", &[&probe], json!({})).await.refused(
        StatusCode::NOT_FOUND,
        "FaceNotFound",
        "Face is not found.",
    );

    // Deletion.
    f.delete(&format!(
        "largepersongroups/g/persons/{obama}/persistedfaces/{face}"
    ))
    .await
    .empty_ok();
    assert!(f.faces_of("g", &obama).await.is_empty());
    f.delete("largepersongroups/g").await.empty_ok();
    f.get("largepersongroups/g").await.refused(
        StatusCode::NOT_FOUND,
        "LargePersonGroupNotFound",
        "Large person group is not found.",
    );
    assert_eq!(f.get("largepersongroups").await.ok(), json!([]));
}
