//! The Face front over real sockets: a device call with the ISV's token, forwarded to a real
//! upstream; Azure's error table; the official Python SDK; the token checks with an injected
//! clock.

use std::process::Command;
use std::sync::Arc;

use serde_json::{json, Value};

use crate::harness::{Answer, Server};
use crate::upstream::{Upstream, FACE_1, FACE_2};

const UPSTREAM_KEY: &str = "upstream-key-0123456789abcdef0123456789abcdef";

async fn with_upstream(extra: &[&str]) -> (Server, Upstream) {
    let upstream = Upstream::start().await;
    let s = Server::start_full(
        extra,
        &[
            ("LATCH_FACE_UPSTREAM_URL", &upstream.url),
            ("LATCH_FACE_UPSTREAM_KEY", UPSTREAM_KEY),
        ],
    )
    .await;
    s.secret(UPSTREAM_KEY);
    (s, upstream)
}

async fn token(s: &Server, flags: &[&str]) -> String {
    s.demo_token(flags).await
}

async fn face(
    s: &Server,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Answer {
    s.face(method, path, headers, body).await
}

#[tokio::test]
async fn a_device_call_with_the_isvs_token_reaches_the_upstream_with_the_upstreams_key() {
    let (s, upstream) = with_upstream(&[]).await;
    let t = token(&s, &["Face.Identification"]).await;
    let lat = format!("Bearer {t}");
    let body = json!({"faceIds": [FACE_1], "largePersonGroupId": "door-staff"}).to_string();
    let key = s.demo.client_key.clone();
    let a = face(
        &s,
        "POST",
        "/face/v1.0/identify?x-trace=1",
        &[
            ("Ocp-Apim-Subscription-Key", &key),
            ("LimitedAccessToken", &lat),
            ("content-type", "application/json"),
        ],
        &body,
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.json()[0]["candidates"][0]["confidence"], 0.92);
    assert!(!a.header("apim-request-id").is_empty());

    let got = upstream.requests();
    assert_eq!(got.len(), 1);
    let r = &got[0];
    assert_eq!(r.method, "POST");
    assert_eq!(r.path_and_query, "/face/v1.0/identify?x-trace=1");
    assert_eq!(r.headers["ocp-apim-subscription-key"], UPSTREAM_KEY);
    assert_eq!(r.headers["content-type"], "application/json");
    assert!(
        r.headers.get("limitedaccesstoken").is_none(),
        "our token is not forwarded"
    );
    assert_eq!(r.body, body.as_bytes());
    let everything = format!("{:?} {:?} {:?}", r.headers, r.path_and_query, r.body);
    assert!(!everything.contains(&key), "the client's key never leaves");
    assert!(
        !everything.contains(t.rsplit('.').next().unwrap()),
        "nor its token"
    );

    // The key in the query instead of the header: not forwarded either.
    let a = face(
        &s,
        "POST",
        &format!("/face/v1.0/verify?subscription-key={key}"),
        &[(
            "LimitedAccessToken",
            &format!("Bearer {}", token(&s, &["Face.Verification"]).await),
        )],
        &json!({"faceId1": FACE_1, "faceId2": FACE_2}).to_string(),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(upstream.requests()[1].path_and_query, "/face/v1.0/verify");

    // The usage records say who used which token for what.
    let used: Vec<(String, String)> = s
        .audit()
        .await
        .into_iter()
        .filter_map(|r| match r.event {
            latch_core::audit::AuditEvent::LimitedAccessTokenUsed {
                operation, outcome, ..
            } => Some((operation, outcome)),
            _ => None,
        })
        .collect();
    assert_eq!(
        used,
        [
            ("identify".into(), "accepted".into()),
            ("verify".into(), "accepted".into())
        ]
    );
    s.finish().await;
}

#[tokio::test]
async fn every_row_of_the_face_error_table() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("latch.toml");
    std::fs::write(
        &config,
        "[face]\nrate_limit_per_second = 0.2\nrate_limit_burst = 2\n",
    )
    .unwrap();
    let (s, upstream) = with_upstream(&["--config", config.to_str().unwrap()]).await;
    let key = s.demo.client_key.clone();
    let id = json!({"faceIds": [FACE_1], "largePersonGroupId": "g"}).to_string();

    let a = face(&s, "POST", "/face/v1.2/identify", &[], &id).await;
    assert_eq!(
        a.error(),
        (401, "401".into(), latch_http::INVALID_KEY_MESSAGE.into())
    );
    assert_eq!(a.header("x-ms-error-code"), "401");

    let a = face(
        &s,
        "POST",
        "/face/v1.2/identify",
        &[("Ocp-Apim-Subscription-Key", &key)],
        &id,
    )
    .await;
    assert_eq!(a.status, 403);
    assert_eq!(
        a.json(),
        json!({"error":{"code":"InvalidRequest","message":"Invalid request has been sent.","innererror":{"code":"UnsupportedFeature","message":"Feature is not supported, missing approval for one or more of the following features: Identification. Please apply for access at https://aka.ms/facerecognition"}}})
    );
    assert_eq!(a.header("x-ms-error-code"), "InvalidRequest");

    let lat = format!("Bearer {}", token(&s, &["Face.Identification"]).await);
    let a = face(
        &s,
        "POST",
        "/face/v1.0/identify",
        &[
            ("Ocp-Apim-Subscription-Key", &key),
            ("LimitedAccessToken", &lat),
        ],
        "{oops",
    )
    .await;
    assert_eq!(
        a.error(),
        (400, "BadArgument".into(), "JSON parsing error.".into())
    );
    assert_eq!(
        a.header("x-ms-error-code"),
        "",
        "v1.0 has no x-ms-error-code"
    );

    let a = face(
        &s,
        "POST",
        "/face/v1.0/identify",
        &[("Ocp-Apim-Subscription-Key", &key)],
        &id,
    )
    .await;
    assert_eq!(a.status, 429, "the third keyed call, over a burst of two");
    // 0.2 calls per second: the bucket refills in 5 s, less what has elapsed since.
    let wait: u64 = a.header("retry-after").parse().unwrap();
    assert!((1..=5).contains(&wait), "{wait}");
    assert_eq!(
        a.error(),
        (
            429,
            "429".into(),
            format!("Rate limit is exceeded. Try again in {wait} seconds.")
        )
    );
    assert!(
        upstream.requests().is_empty(),
        "nothing refused reached the upstream"
    );
    s.finish().await;
}

#[tokio::test]
async fn upstream_failures_and_a_missing_upstream_are_said_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("latch.toml");
    std::fs::write(
        &config,
        "[face]\nupstream_timeout_secs = 1\nmax_body_bytes = 2048\n",
    )
    .unwrap();
    let (s, _upstream) = with_upstream(&["--config", config.to_str().unwrap()]).await;
    let key = s.demo.client_key.clone();
    let a = face(
        &s,
        "GET",
        "/face/v1.0/largepersongroups/slow-group/training",
        &[("Ocp-Apim-Subscription-Key", &key)],
        "",
    )
    .await;
    assert_eq!(a.error().0, 504);
    let a = face(
        &s,
        "POST",
        "/face/v1.0/largepersongroups/g/train",
        &[("Ocp-Apim-Subscription-Key", &key)],
        "",
    )
    .await;
    assert_eq!(a.status, 202, "the upstream's answer, with its headers");
    assert_eq!(a.header("operation-location"), "/face/v1.0/operations/1");

    // A chunked upload, no Content-Length, larger than the limit: 413, as Azure answers.
    let addr = s.face_url.split("://").nth(1).unwrap().to_owned();
    let image = "x".repeat(4096);
    let request = format!(
        "POST /face/v1.0/detect?returnFaceId=false HTTP/1.1\r\nHost: {addr}\r\nOcp-Apim-Subscription-Key: {key}\r\nContent-Type: application/octet-stream\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n{:x}\r\n{image}\r\n0\r\n\r\n",
        image.len()
    );
    let response = crate::harness::raw_exchange(&s.face_url, s.cacert.as_deref(), request).await;
    assert!(response.starts_with("HTTP/1.1 413"), "{response}");
    assert!(response.contains("InvalidImageSize"), "{response}");
    s.finish().await;

    // An upstream that is not there.
    let s = Server::start_full(&[], &[("LATCH_FACE_UPSTREAM_URL", "http://127.0.0.1:9")]).await;
    let key = s.demo.client_key.clone();
    let a = face(
        &s,
        "GET",
        "/face/v1.0/largepersongroups",
        &[("Ocp-Apim-Subscription-Key", &key)],
        "",
    )
    .await;
    assert_eq!(a.error().0, 502);
    s.finish().await;

    // No upstream at all.
    let s = Server::start().await;
    let key = s.demo.client_key.clone();
    let a = face(
        &s,
        "GET",
        "/face/v1.0/largepersongroups",
        &[("Ocp-Apim-Subscription-Key", &key)],
        "",
    )
    .await;
    let (status, code, message) = a.error();
    assert_eq!((status, code.as_str()), (501, "BackendNotConfigured"));
    assert!(message.contains("face.upstream_url"), "{message}");
    s.finish().await;
}

#[tokio::test]
async fn the_official_python_sdk_identifies_and_verifies() {
    let (s, upstream) = with_upstream(&[]).await;
    let t = token(&s, &["Face.Identification", "Face.Verification"]).await;
    // Off the runtime's thread: the upstream answering the SDK runs on it.
    let got = s
        .run_interop(
            "face_sdk_calls.py",
            vec![s.face_url.clone(), s.demo.client_key.clone(), t.clone()],
        )
        .await;
    assert_eq!(
        got["identify"][0]["candidates"][0]["personId"],
        crate::upstream::PERSON
    );
    assert_eq!(got["verify"]["isIdentical"], true);
    assert_eq!(
        got["without_token"],
        json!({"status": 403, "code": "InvalidRequest"})
    );
    let paths: Vec<String> = upstream
        .requests()
        .into_iter()
        .map(|r| r.path_and_query)
        .collect();
    assert_eq!(
        paths,
        [
            "/face/v1.2-preview.1/identify",
            "/face/v1.2-preview.1/verify"
        ]
    );
    s.finish().await;
}

/// The token checks with an injected clock: the front built in-process over a real store and
/// served on a real socket.
#[tokio::test]
async fn token_checks_over_a_real_socket_with_an_injected_clock() {
    use latch_audit::writer::AuditLog;
    use latch_core::audit::Actor;
    use latch_core::claims::{
        new_jti, AccessClaims, LimitedAccessClaims, LimitedAccessGrant, TokenKind,
    };
    use latch_core::{FeatureSet, FixedClock, Lifetime, ResourceId, UnixTime, Verifier};
    use latch_face::backend::Backend;
    use latch_face::Verifiers;
    use latch_face::{FaceConfig, FaceState};
    use latch_store::operations::Admin;
    use latch_store::signing::KeyRing;
    use latch_store::sqlite::SqliteStore;
    use latch_store::Store;

    const NOW: UnixTime = UnixTime(1_800_000_000);
    let isv_id = ResourceId::parse(crate::harness::DEMO_ISV).unwrap();
    let client_id = ResourceId::parse(crate::harness::DEMO_CLIENT).unwrap();
    let other_id =
        ResourceId::parse(&crate::harness::DEMO_CLIENT.replace("demo-client-face", "other-face"))
            .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let rng = ring::rand::SystemRandom::new();
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(dir.path(), "main", &rng).unwrap());
    let clock = FixedClock::at(NOW);
    let admin = Admin::new(
        store.clone(),
        Arc::new(ring::rand::SystemRandom::new()),
        Arc::new(clock.clone()),
        Actor::LocalOperator,
    );
    let (_, client) = admin.create_resource(&client_id).await.unwrap();
    admin.create_resource(&isv_id).await.unwrap();
    admin
        .set_isv(
            &isv_id,
            true,
            &FeatureSet::parse_csv("Face.Identification").unwrap(),
        )
        .await
        .unwrap();
    let keys = KeyRing::load_or_create(store.as_ref(), &rng, &clock)
        .await
        .unwrap();
    let (audit, _writer) = AuditLog::spawn(store.clone(), "main");
    let verifiers = Verifiers::new(Verifier::new(
        "urn:latch:sts",
        keys.public_keys().to_vec(),
        0,
    ));
    let state = FaceState::new(
        latch_store::check_cache::CheckCache::new(store, std::time::Duration::ZERO),
        audit,
        verifiers,
        Arc::new(clock.clone()),
        FaceConfig::default(),
        Backend::Unconfigured,
    )
    .await
    .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, latch_face::router(state)).await });

    let sign = |target: &ResourceId, flags: &str, iat: UnixTime| {
        let features = FeatureSet::parse_csv(flags).unwrap();
        let grant = LimitedAccessGrant {
            issuer: "urn:latch:sts",
            isv: &isv_id,
            target,
            features: &features,
            lifetime: Lifetime::from_secs(600).unwrap(),
            region: None,
        };
        keys.active()
            .sign(
                TokenKind::LimitedAccess,
                &LimitedAccessClaims::new(&grant, iat, new_jti(&rng).unwrap()),
                &rng,
            )
            .unwrap()
    };
    let good = sign(&client_id, "Face.Identification", NOW);
    let bearer = keys
        .active()
        .sign(
            TokenKind::Access,
            &AccessClaims::new(
                "urn:latch:sts",
                &client_id,
                None,
                NOW,
                new_jti(&rng).unwrap(),
            ),
            &rng,
        )
        .unwrap();
    let stranger = latch_core::SigningKey::generate(&rng).unwrap();
    let unknown_key = {
        let features = FeatureSet::parse_csv("Face.Identification").unwrap();
        let grant = LimitedAccessGrant {
            issuer: "urn:latch:sts",
            isv: &isv_id,
            target: &client_id,
            features: &features,
            lifetime: Lifetime::DEFAULT,
            region: None,
        };
        stranger
            .sign(
                TokenKind::LimitedAccess,
                &LimitedAccessClaims::new(&grant, NOW, "j".into()),
                &rng,
            )
            .unwrap()
    };
    let front = crate::harness::Http::new(&url);
    let key = client.key1.expose_secret().to_owned();
    let id_body = json!({"faceIds": [FACE_1], "largePersonGroupId": "g"}).to_string();
    let call = |header: String| {
        let (front, key, body) = (&front, key.clone(), id_body.clone());
        async move {
            front
                .request(
                    "POST",
                    "/face/v1.0/identify",
                    &[
                        ("Ocp-Apim-Subscription-Key", &key),
                        ("LimitedAccessToken", &header),
                    ],
                    &body,
                )
                .await
        }
    };
    let reason = |a: &Answer| {
        assert_eq!(a.status, 403, "{}", a.body);
        let m = a.json()["error"]["innererror"]["message"]
            .as_str()
            .unwrap()
            .to_owned();
        m.rsplit("refused: ")
            .next()
            .unwrap()
            .trim_end_matches(')')
            .to_owned()
    };
    let cases = [
        (
            format!("Bearer {}", sign(&other_id, "Face.Identification", NOW)),
            "other_resource",
        ),
        (
            format!("Bearer {}", sign(&client_id, "Face.Verification", NOW)),
            "missing_feature",
        ),
        (
            format!(
                "Bearer {}",
                sign(&client_id, "Face.Identification", NOW.plus(1))
            ),
            "not_yet_valid",
        ),
        (format!("Bearer {unknown_key}"), "unknown_key"),
        (format!("Bearer {bearer}"), "wrong_type"),
        (format!("bearer {good}"), "malformed_header"),
    ];
    for (header, want) in cases {
        assert_eq!(reason(&call(header).await), want);
    }
    // Valid for its last second, expired one second later.
    clock.set(NOW.plus(599));
    assert_eq!(
        call(format!("Bearer {good}")).await.status,
        501,
        "allowed: it reached the (absent) backend"
    );
    clock.set(NOW.plus(600));
    assert_eq!(reason(&call(format!("Bearer {good}")).await), "expired");
}

/// Every operation of the OpenAPI document exists on the listener it belongs to (answering
/// anything but the 404 of an unknown route), the document is served by both listeners, and it
/// is valid OpenAPI 3.0 (checked by `openapi-spec-validator`).
#[tokio::test]
async fn the_openapi_document_matches_the_routes() {
    let s = Server::start().await;
    let doc: Value = serde_json::from_str(latch_http::OPENAPI).unwrap();
    assert_eq!(s.request("GET", "/openapi.json", &[], "").await.json(), doc);
    assert_eq!(s.face("GET", "/openapi.json", &[], "").await.json(), doc);
    let mut checked = 0;
    for (path, ops) in doc["paths"].as_object().unwrap() {
        for method in ops.as_object().unwrap().keys() {
            let concrete = path
                .replace("{version}", "v1.2")
                .replace("{largePersonGroupId}", "group-1")
                .replace("{personId}", crate::upstream::PERSON);
            let a = if path.starts_with("/face/") {
                s.face(&method.to_uppercase(), &concrete, &[], "").await
            } else {
                s.request(&method.to_uppercase(), &concrete, &[], "").await
            };
            assert_ne!(
                a.status, 404,
                "{method} {path} is in the document but not served"
            );
            checked += 1;
        }
    }
    assert!(checked >= 18, "{checked}");
    let file = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../openapi/latch.openapi.json"
    );
    let out = tokio::task::spawn_blocking(move || {
        Command::new("python3")
            .args(["-c", "import json,sys; from openapi_spec_validator import validate; validate(json.load(open(sys.argv[1])))", file])
            .output()
    })
    .await
    .unwrap()
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    s.finish().await;
}

#[tokio::test]
async fn in_token_mode_the_bearer_token_is_not_forwarded() {
    let (s, upstream) = with_upstream(&[]).await;
    let d = s.demo.clone();
    assert!(s
        .cli(&["resource", "auth-mode", &d.client_id, "--mode", "token"])
        .status
        .success());
    let bearer = s
        .request(
            "POST",
            "/sts/v1.0/issueToken",
            &[("Ocp-Apim-Subscription-Key", &d.client_key)],
            "",
        )
        .await
        .body;
    let a = face(
        &s,
        "GET",
        "/face/v1.0/largepersongroups",
        &[("Authorization", &format!("Bearer {bearer}"))],
        "",
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.body);
    let r = &upstream.requests()[0];
    assert!(r.headers.get("authorization").is_none());
    assert_eq!(r.headers["ocp-apim-subscription-key"], UPSTREAM_KEY);
    s.finish().await;
}
