//! What the services' router tests share: a real embedded store holding an ISV granted both
//! Face features, a client and another resource, signing keys and an audit writer, under a
//! fixed clock ([`World`]); and a router's answer read whole ([`Answer`], [`call`]).
//!
//! A dev-dependency only: nothing here is part of a service.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderMap, Request, StatusCode};
use axum::Router;
use http_body_util::BodyExt;
use latch_audit::writer::AuditLog;
use latch_core::audit::Actor;
use latch_core::{FeatureSet, FixedClock, ResourceId, UnixTime};
use latch_store::check_cache::CheckCache;
use latch_store::operations::{Admin, NewKeys};
use latch_store::signing::KeyRing;
use latch_store::sqlite::SqliteStore;
use latch_store::Store;
use ring::rand::SystemRandom;
use serde_json::Value;
use tower::ServiceExt;

/// The ISV: granted `Face.Identification` and `Face.Verification`.
pub const ISV: &str = "/subscriptions/11111111-1111-4111-8111-111111111111/resourceGroups/isv/providers/Microsoft.CognitiveServices/accounts/isv-face";
/// A client of the ISV.
pub const CLIENT: &str = "/subscriptions/22222222-2222-4222-8222-222222222222/resourceGroups/client/providers/Microsoft.CognitiveServices/accounts/client-face";
/// Another resource, neither the ISV nor its client.
pub const OTHER: &str = "/subscriptions/33333333-3333-4333-8333-333333333333/resourceGroups/other/providers/Microsoft.CognitiveServices/accounts/other-face";
/// The issuer tokens are signed and verified with.
pub const ISSUER: &str = "urn:latch:test";
/// The fixed clock's time.
pub const NOW: UnixTime = UnixTime(1_800_000_000);

/// A resource id the tests know to be valid.
pub fn id(s: &str) -> ResourceId {
    ResourceId::parse(s).unwrap()
}

/// A store in a temporary directory, with the ISV, the client and the other resource made, and
/// a signing key; the clock stands at [`NOW`] until a test moves it.
pub struct World {
    /// Where the store lives (removed when the world is dropped).
    pub dir: tempfile::TempDir,
    /// The store itself.
    pub store: SqliteStore,
    /// The same store, as the services take it.
    pub shared: Arc<dyn Store>,
    /// Randomness.
    pub rng: Arc<SystemRandom>,
    /// The clock every part reads.
    pub clock: FixedClock,
    /// The operator's operations on the store.
    pub admin: Admin,
    /// The signing keys.
    pub keys: Arc<KeyRing>,
    /// The ISV's two keys.
    pub isv_keys: NewKeys,
    /// The client's two keys.
    pub client_keys: NewKeys,
    /// The other resource's two keys.
    pub other_keys: NewKeys,
}

impl World {
    /// A new world.
    pub async fn new() -> World {
        let dir = tempfile::tempdir().unwrap();
        let rng = Arc::new(SystemRandom::new());
        let store = SqliteStore::open(dir.path(), "main", rng.as_ref()).unwrap();
        let shared: Arc<dyn Store> = Arc::new(store.clone());
        let clock = FixedClock::at(NOW);
        let admin = Admin::new(
            shared.clone(),
            rng.clone(),
            Arc::new(clock.clone()),
            Actor::LocalOperator,
        );
        let (_, isv_keys) = admin.create_resource(&id(ISV)).await.unwrap();
        let grants = FeatureSet::parse_csv("Face.Identification,Face.Verification").unwrap();
        admin.set_isv(&id(ISV), true, &grants).await.unwrap();
        let (_, client_keys) = admin.create_resource(&id(CLIENT)).await.unwrap();
        let (_, other_keys) = admin.create_resource(&id(OTHER)).await.unwrap();
        let keys = Arc::new(
            KeyRing::load_or_create(shared.as_ref(), rng.as_ref(), &clock)
                .await
                .unwrap(),
        );
        World {
            dir,
            store,
            shared,
            rng,
            clock,
            admin,
            keys,
            isv_keys,
            client_keys,
            other_keys,
        }
    }

    /// An audit writer on the store's chain `main` (it stops when the last handle is dropped).
    pub fn audit(&self) -> AuditLog {
        AuditLog::spawn(self.shared.clone(), "main").0
    }

    /// The checks over the store, reading its state on every call.
    pub fn checks(&self) -> CheckCache {
        CheckCache::new(self.shared.clone(), Duration::ZERO)
    }
}

/// A router's answer, read whole.
#[derive(Debug)]
pub struct Answer {
    /// Its status.
    pub status: StatusCode,
    /// Its headers.
    pub headers: HeaderMap,
    /// Its body, as text.
    pub body: String,
}

impl Answer {
    /// The body as JSON (the test fails if it is not).
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }

    /// A header's value, or "".
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    /// `Content-Type`, or "".
    pub fn content_type(&self) -> &str {
        self.header("content-type")
    }

    /// Azure's `error.code`.
    pub fn code(&self) -> String {
        self.json()["error"]["code"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// Azure's `error.message`.
    pub fn message(&self) -> String {
        self.json()["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// The JSON body of a 200 (the test fails on any other status).
    #[track_caller]
    pub fn ok(&self) -> Value {
        assert_eq!(self.status, StatusCode::OK, "{}", self.body);
        self.json()
    }

    /// A 200 with no body.
    #[track_caller]
    pub fn empty_ok(&self) {
        assert_eq!(self.status, StatusCode::OK, "{}", self.body);
        assert!(self.body.is_empty(), "{:?}", self.body);
    }

    /// Refused with exactly this status, Azure code and message.
    #[track_caller]
    pub fn refused(&self, status: StatusCode, code: &str, message: &str) {
        assert_eq!(
            (self.status, self.code().as_str(), self.message().as_str()),
            (status, code, message),
            "{}",
            self.body
        );
    }

    /// Refused with this status and Azure code, the message starting with `prefix`.
    #[track_caller]
    pub fn refused_starting(&self, status: StatusCode, code: &str, prefix: &str) {
        assert_eq!(
            (self.status, self.code().as_str()),
            (status, code),
            "{}",
            self.body
        );
        assert!(self.message().starts_with(prefix), "{}", self.body);
    }

    /// `(status, error.code, error.message)`.
    pub fn error(&self) -> (u16, String, String) {
        (self.status.as_u16(), self.code(), self.message())
    }

    /// Azure's `error.innererror.message`.
    pub fn inner_message(&self) -> String {
        self.json()["error"]["innererror"]["message"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }
}

/// Sends `req` through `app` (`oneshot`) and reads the answer whole.
pub async fn call(app: &Router, req: Request<Body>) -> Answer {
    let res = app.clone().oneshot(req).await.unwrap();
    let status = res.status();
    let headers = res.headers().clone();
    let bytes = res.into_body().collect().await.unwrap().to_bytes();
    Answer {
        status,
        headers,
        body: String::from_utf8_lossy(&bytes).into_owned(),
    }
}
