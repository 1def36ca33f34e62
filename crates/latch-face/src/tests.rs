//! The front's router through `oneshot`, on a real store, with an injected clock. With no
//! backend configured, a call that passes every check is answered 501 `BackendNotConfigured`:
//! that is how these tests see "allowed".

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::Router;
use latch_audit::AuditStore;
use latch_core::audit::{AuditEvent, SealedRecord};
use latch_core::claims::{
    new_jti, AccessClaims, LimitedAccessClaims, LimitedAccessGrant, TokenKind,
};
use latch_core::{FeatureSet, Lifetime, UnixTime, Verifier};
use latch_store::{AuthMode, Revocation};
use latch_testkit::{id, Answer, World, CLIENT, ISSUER, ISV, NOW, OTHER};
use serde_json::{json, Value};

use super::*;

const F1: &str = "c5c24a82-6845-4031-9d5d-978df9175426";
const LEEWAY: i64 = 30;

struct Front {
    world: World,
    app: Router,
    client_key: String,
    other_key: String,
}

async fn front_with(config: FaceConfig) -> Front {
    let world = World::new().await;
    let verifiers = Verifiers::new(Verifier::new(
        ISSUER,
        world.keys.public_keys().to_vec(),
        LEEWAY,
    ));
    let state = FaceState::new(
        world.checks(),
        world.audit(),
        verifiers,
        Arc::new(world.clock.clone()),
        config,
        Backend::Unconfigured,
    )
    .await
    .unwrap();
    Front {
        app: router(state),
        client_key: world.client_keys.key1.expose_secret().to_owned(),
        other_key: world.other_keys.key1.expose_secret().to_owned(),
        world,
    }
}

async fn front() -> Front {
    front_with(FaceConfig::default()).await
}

/// What these tests read from an answer beyond the kit's.
trait Allowed {
    /// A call that passed every check: the 501 of a front without a backend.
    fn allowed(&self) -> bool;
}

impl Allowed for Answer {
    fn allowed(&self) -> bool {
        self.status == StatusCode::NOT_IMPLEMENTED && self.code() == "BackendNotConfigured"
    }
}

impl Front {
    fn token(&self, target: &str, flags: &str, lifetime: u64, iat: UnixTime) -> String {
        let (isv, target) = (id(ISV), id(target));
        let features = FeatureSet::parse_csv(flags).unwrap();
        let grant = LimitedAccessGrant {
            issuer: ISSUER,
            isv: &isv,
            target: &target,
            features: &features,
            lifetime: Lifetime::from_secs(lifetime).unwrap(),
            region: None,
        };
        let claims =
            LimitedAccessClaims::new(&grant, iat, new_jti(self.world.rng.as_ref()).unwrap());
        self.world
            .keys
            .active()
            .sign(TokenKind::LimitedAccess, &claims, self.world.rng.as_ref())
            .unwrap()
    }

    fn lat(&self, flags: &str) -> String {
        self.token(CLIENT, flags, 3600, NOW)
    }

    fn access_token(&self, resource: &str) -> String {
        let claims = AccessClaims::new(
            ISSUER,
            &id(resource),
            None,
            NOW,
            new_jti(self.world.rng.as_ref()).unwrap(),
        );
        self.world
            .keys
            .active()
            .sign(TokenKind::Access, &claims, self.world.rng.as_ref())
            .unwrap()
    }

    async fn send(&self, req: Request<Body>) -> Answer {
        latch_testkit::call(&self.app, req).await
    }

    async fn call(&self, version: &str, op: &str, headers: &[(&str, &str)], body: Value) -> Answer {
        let mut req = Request::post(format!("/face/{version}/{op}"))
            .header("content-type", "application/json");
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        self.send(req.body(Body::from(body.to_string())).unwrap())
            .await
    }

    async fn identify(&self, headers: &[(&str, &str)]) -> Answer {
        self.call(
            "v1.0",
            "identify",
            headers,
            json!({"faceIds": [F1], "largePersonGroupId": "group"}),
        )
        .await
    }

    async fn identify_with(&self, token_header: &str) -> Answer {
        let key = self.client_key.clone();
        self.identify(&[
            ("Ocp-Apim-Subscription-Key", &key),
            ("LimitedAccessToken", token_header),
        ])
        .await
    }

    async fn usage(&self) -> Vec<(String, Option<String>)> {
        self.world
            .store
            .audit_records("main", 0, 10_000)
            .await
            .unwrap()
            .iter()
            .filter_map(
                |r| match serde_json::from_str::<SealedRecord>(&r.body).unwrap().event {
                    AuditEvent::LimitedAccessTokenUsed {
                        outcome, reason, ..
                    } => Some((outcome, reason)),
                    _ => None,
                },
            )
            .collect()
    }
}

fn missing(a: &Answer) -> String {
    let m = a.inner_message();
    let start = m.find("following features: ").map(|i| i + 20).unwrap_or(0);
    m[start..].split('.').next().unwrap_or_default().to_owned()
}

#[tokio::test]
async fn a_good_token_is_accepted_and_audited() {
    let f = front().await;
    let a = f
        .identify_with(&format!("Bearer {}", f.lat("Face.Identification")))
        .await;
    assert!(a.allowed(), "{} {}", a.status, a.body);
    assert_eq!(f.usage().await, [("accepted".to_owned(), None)]);
}

#[tokio::test]
async fn no_token_and_no_approval_is_azures_403() {
    let f = front().await;
    let key = f.client_key.clone();
    let a = f.identify(&[("Ocp-Apim-Subscription-Key", &key)]).await;
    assert_eq!(a.status, StatusCode::FORBIDDEN);
    assert_eq!(
        a.json(),
        json!({"error":{"code":"InvalidRequest","message":"Invalid request has been sent.","innererror":{"code":"UnsupportedFeature","message":"Feature is not supported, missing approval for one or more of the following features: Identification. Please apply for access at https://aka.ms/facerecognition"}}})
    );
    assert!(
        f.usage().await.is_empty(),
        "no token was presented, so there is no usage record"
    );
    let a = f
        .call(
            "v1.0",
            "detect",
            &[("Ocp-Apim-Subscription-Key", &key)],
            json!({"url": "http://x/a.jpg"}),
        )
        .await;
    assert_eq!(missing(&a), "Identification,Verification");
    let a = f
        .call(
            "v1.0",
            "verify",
            &[("Ocp-Apim-Subscription-Key", &key)],
            json!({"faceId1": F1, "faceId2": F1}),
        )
        .await;
    assert_eq!(missing(&a), "Verification");
}

#[tokio::test]
async fn every_kind_of_bad_token_is_refused_with_its_reason() {
    let f = front().await;
    let good = f.lat("Face.Identification");
    let exp = NOW.plus(3600);
    let attacker = latch_core::SigningKey::generate(f.world.rng.as_ref()).unwrap();
    let foreign = {
        let (isv, target, features) = (
            id(ISV),
            id(CLIENT),
            FeatureSet::parse_csv("Face.Identification").unwrap(),
        );
        let grant = LimitedAccessGrant {
            issuer: ISSUER,
            isv: &isv,
            target: &target,
            features: &features,
            lifetime: Lifetime::DEFAULT,
            region: None,
        };
        attacker
            .sign(
                TokenKind::LimitedAccess,
                &LimitedAccessClaims::new(&grant, NOW, "j".into()),
                f.world.rng.as_ref(),
            )
            .unwrap()
    };
    let cases: Vec<(String, &str)> = vec![
        (
            format!(
                "Bearer {}",
                f.token(OTHER, "Face.Identification", 3600, NOW)
            ),
            "other_resource",
        ),
        (
            format!("Bearer {}", f.lat("Face.Verification")),
            "missing_feature",
        ),
        (
            format!(
                "Bearer {}",
                f.token(CLIENT, "Face.Identification", 3600, NOW.plus(LEEWAY + 1))
            ),
            "not_yet_valid",
        ),
        (format!("Bearer {foreign}"), "unknown_key"),
        (format!("Bearer {}", f.access_token(CLIENT)), "wrong_type"),
        (format!("bearer {good}"), "malformed_header"),
        (good.clone(), "malformed_header"),
        (format!("Bearer  {good}"), "malformed"),
        (format!("Bearer {}x", good), "bad_base64"),
    ];
    for (header, reason) in &cases {
        let a = f.identify_with(header).await;
        assert_eq!(a.status, StatusCode::FORBIDDEN, "{reason}: {}", a.body);
        assert_eq!(a.json()["error"]["code"], "InvalidRequest");
        assert_eq!(
            a.json()["error"]["innererror"]["code"],
            "UnsupportedFeature"
        );
        assert!(
            a.inner_message()
                .ends_with(&format!("(limited access token refused: {reason})")),
            "{}",
            a.inner_message()
        );
        let signature = good.rsplit('.').next().unwrap();
        assert!(!a.body.contains(signature), "the token is never echoed");
    }
    // Expired by exactly one second past the leeway, then accepted one second before.
    f.world.clock.set(exp.plus(LEEWAY));
    let a = f.identify_with(&format!("Bearer {good}")).await;
    assert!(
        a.inner_message()
            .ends_with("(limited access token refused: expired)"),
        "{}",
        a.inner_message()
    );
    f.world.clock.set(exp.plus(LEEWAY - 1));
    assert!(f.identify_with(&format!("Bearer {good}")).await.allowed());

    let reasons: Vec<Option<String>> = f.usage().await.into_iter().map(|(_, r)| r).collect();
    let mut want: Vec<Option<String>> = cases.iter().map(|(_, r)| Some(r.to_string())).collect();
    want.push(Some("expired".into()));
    want.push(None);
    assert_eq!(reasons, want);
}

#[tokio::test]
async fn a_duplicated_token_header_is_refused() {
    let f = front().await;
    let t = format!("Bearer {}", f.lat("Face.Identification"));
    let key = f.client_key.clone();
    let a = f
        .identify(&[
            ("Ocp-Apim-Subscription-Key", &key),
            ("LimitedAccessToken", &t),
            ("LimitedAccessToken", &t),
        ])
        .await;
    assert_eq!(a.status, StatusCode::FORBIDDEN);
    assert!(a
        .inner_message()
        .ends_with("(limited access token refused: duplicate_header)"));
}

#[tokio::test]
async fn a_direct_approval_needs_no_token() {
    let f = front().await;
    f.world
        .admin
        .set_approvals(
            &id(CLIENT),
            &FeatureSet::parse_csv("Face.Identification").unwrap(),
        )
        .await
        .unwrap();
    let key = f.client_key.clone();
    assert!(f
        .identify(&[("Ocp-Apim-Subscription-Key", &key)])
        .await
        .allowed());
    // A token presented anyway is recorded as not needed.
    assert!(f
        .identify_with(&format!("Bearer {}", f.lat("Face.Identification")))
        .await
        .allowed());
    assert_eq!(f.usage().await, [("not_needed".to_owned(), None)]);
    // Approval of one feature does not cover another.
    let a = f
        .call(
            "v1.0",
            "verify",
            &[("Ocp-Apim-Subscription-Key", &key)],
            json!({"faceId1": F1, "faceId2": F1}),
        )
        .await;
    assert_eq!(missing(&a), "Verification");
}

#[tokio::test]
async fn revoked_tokens_are_refused() {
    let f = front().await;
    let t = f.lat("Face.Identification");
    let jti = latch_core::Verifier::new(ISSUER, f.world.keys.public_keys().to_vec(), 0)
        .verify_limited_access(&t, NOW)
        .unwrap()
        .claims()
        .jti
        .clone();
    f.world
        .admin
        .revoke(&Revocation::Token {
            jti,
            expires: NOW.plus(3600),
        })
        .await
        .unwrap();
    let a = f.identify_with(&format!("Bearer {t}")).await;
    assert!(a
        .inner_message()
        .ends_with("(limited access token refused: revoked)"));
    assert!(
        f.identify_with(&format!("Bearer {}", f.lat("Face.Identification")))
            .await
            .allowed(),
        "another token still works"
    );
}

#[tokio::test]
async fn keys_in_the_header_or_the_query_and_exactly_one() {
    let f = front().await;
    let t = format!("Bearer {}", f.lat("Face.Identification"));
    let body = json!({"faceIds": [F1], "largePersonGroupId": "group"}).to_string();
    let req = |uri: String, key: Option<&str>| {
        let mut r = Request::post(uri).header("LimitedAccessToken", &t);
        if let Some(k) = key {
            r = r.header("Ocp-Apim-Subscription-Key", k);
        }
        r.body(Body::from(body.clone())).unwrap()
    };
    assert!(f
        .send(req(
            format!("/face/v1.0/identify?subscription-key={}", f.client_key),
            None
        ))
        .await
        .allowed());
    for (uri, key) in [
        ("/face/v1.0/identify".to_owned(), None),
        ("/face/v1.0/identify".to_owned(), Some("wrong")),
        (
            format!("/face/v1.0/identify?subscription-key={}", f.client_key),
            Some(f.client_key.as_str()),
        ),
        (
            format!(
                "/face/v1.0/identify?subscription-key={0}&subscription-key={0}",
                f.client_key
            ),
            None,
        ),
    ] {
        let a = f.send(req(uri, key)).await;
        assert_eq!(a.status, StatusCode::UNAUTHORIZED);
        assert_eq!(
            a.json(),
            json!({"error":{"code":"401","message":latch_http::INVALID_KEY_MESSAGE}})
        );
    }
}

#[tokio::test]
async fn token_mode_and_key_mode_are_exclusive() {
    let f = front().await;
    let lat = format!("Bearer {}", f.lat("Face.Identification"));
    let bearer = format!("Bearer {}", f.access_token(CLIENT));
    let key = f.client_key.clone();
    // Key mode: the bearer token is refused.
    let a = f
        .identify(&[("Authorization", &bearer), ("LimitedAccessToken", &lat)])
        .await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);
    f.world
        .admin
        .set_auth_mode(&id(CLIENT), AuthMode::Token)
        .await
        .unwrap();
    // Token mode: the key is refused, the bearer token accepted.
    let a = f
        .identify(&[
            ("Ocp-Apim-Subscription-Key", &key),
            ("LimitedAccessToken", &lat),
        ])
        .await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);
    assert!(f
        .identify(&[("Authorization", &bearer), ("LimitedAccessToken", &lat)])
        .await
        .allowed());
    // A limited access token is not a bearer token; both credentials at once are refused.
    let a = f
        .identify(&[("Authorization", &lat), ("LimitedAccessToken", &lat)])
        .await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);
    let a = f
        .identify(&[
            ("Authorization", &bearer),
            ("Ocp-Apim-Subscription-Key", &key),
            ("LimitedAccessToken", &lat),
        ])
        .await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);
    // Another resource's bearer token names another resource.
    f.world
        .admin
        .set_auth_mode(&id(OTHER), AuthMode::Token)
        .await
        .unwrap();
    let other_bearer = format!("Bearer {}", f.access_token(OTHER));
    let a = f
        .identify(&[
            ("Authorization", &other_bearer),
            ("LimitedAccessToken", &lat),
        ])
        .await;
    assert!(a
        .inner_message()
        .ends_with("(limited access token refused: other_resource)"));
    let _ = &f.other_key;
}

#[tokio::test]
async fn v1_2_errors_carry_x_ms_error_code() {
    let f = front().await;
    let key = f.client_key.clone();
    for (version, want) in [
        ("v1.2", Some("InvalidRequest")),
        ("v1.2-preview.1", Some("InvalidRequest")),
        ("v1.0", None),
        ("v1.1-preview.1", None),
    ] {
        let a = f
            .call(
                version,
                "identify",
                &[("Ocp-Apim-Subscription-Key", &key)],
                json!({"faceIds": [F1], "largePersonGroupId": "g"}),
            )
            .await;
        assert_eq!(a.status, StatusCode::FORBIDDEN);
        assert_eq!(
            a.headers
                .get("x-ms-error-code")
                .map(|v| v.to_str().unwrap()),
            want,
            "{version}"
        );
    }
    let a = f.call("v1.2", "identify", &[], json!({})).await;
    assert_eq!(a.headers["x-ms-error-code"], "401");
}

#[tokio::test]
async fn bodies_are_validated_after_the_checks() {
    let f = front().await;
    let key = f.client_key.clone();
    let t = format!("Bearer {}", f.lat("Face.Identification"));
    let h = [
        ("Ocp-Apim-Subscription-Key", key.as_str()),
        ("LimitedAccessToken", t.as_str()),
    ];
    let a = f
        .call(
            "v1.0",
            "identify",
            &h,
            json!({"faceIds": [], "largePersonGroupId": "g"}),
        )
        .await;
    assert_eq!(
        (a.status, a.json()["error"]["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("BadArgument"))
    );
    let a = f
        .call(
            "v1.0",
            "identify",
            &h,
            json!({"faceIds": [F1], "largePersonGroupId": "g", "maxNumOfCandidatesReturned": 101}),
        )
        .await;
    assert!(a.json()["error"]["message"]
        .as_str()
        .unwrap()
        .contains("maxNumOfCandidatesReturned"));
    let req = Request::put("/face/v1.0/largepersongroups/Bad-Group")
        .header("Ocp-Apim-Subscription-Key", &key)
        .body(Body::from(r#"{"name":"x"}"#))
        .unwrap();
    let a = f.send(req).await;
    assert!(a.json()["error"]["message"]
        .as_str()
        .unwrap()
        .starts_with("Large person group ID is invalid."));
    let req = Request::put("/face/v1.0/largepersongroups/good-group")
        .header("Ocp-Apim-Subscription-Key", &key)
        .body(Body::from(r#"{"name":"x"}"#))
        .unwrap();
    assert!(
        f.send(req).await.allowed(),
        "group management needs no feature by default"
    );
    let req = Request::post("/face/v1.0/detect?returnFaceId=false")
        .header("Ocp-Apim-Subscription-Key", &key)
        .header("content-length", "7000000")
        .body(Body::empty())
        .unwrap();
    assert_eq!(f.send(req).await.status, StatusCode::PAYLOAD_TOO_LARGE);
}

#[tokio::test]
async fn unknown_paths_are_404_whatever_the_credentials() {
    let f = front().await;
    let key = f.client_key.clone();
    let lat = format!("Bearer {}", f.lat("Face.Identification"));
    for path in [
        "/face/v1.0/nope",
        "/face/v9.9/identify",
        "/other",
        "/face/v1.0/identify/",
        "/face/v1.0//identify",
        "/face//v1.0/identify",
        "/face/v1.0/%69dentify",
        "/Face/v1.0/identify",
        "/face/V1.0/identify",
        "/face/v1.0/largepersongroups/g/persons/x/persistedfaces/y",
    ] {
        let req = Request::post(path)
            .header("Ocp-Apim-Subscription-Key", &key)
            .header("LimitedAccessToken", &lat)
            .body(Body::from(
                json!({"faceIds": [F1], "largePersonGroupId": "g"}).to_string(),
            ))
            .unwrap();
        let a = f.send(req).await;
        assert_eq!(a.status, StatusCode::NOT_FOUND, "{path}");
    }
}

#[tokio::test]
async fn over_the_rate_limit_is_azures_429() {
    let f = front_with(FaceConfig {
        rate_limit: RateLimit {
            per_second: 0.5,
            burst: 2.0,
        },
        ..FaceConfig::default()
    })
    .await;
    let key = f.client_key.clone();
    let h = [("Ocp-Apim-Subscription-Key", key.as_str())];
    for _ in 0..2 {
        assert_eq!(
            f.call("v1.0", "identify", &h, json!({})).await.status,
            StatusCode::FORBIDDEN
        );
    }
    let a = f.call("v1.0", "identify", &h, json!({})).await;
    assert_eq!(a.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(a.headers["retry-after"], "2");
    assert_eq!(
        a.json(),
        json!({"error":{"code":"429","message":"Rate limit is exceeded. Try again in 2 seconds."}})
    );
    // Another key has its own bucket.
    let other = f.other_key.clone();
    assert_eq!(
        f.call(
            "v1.0",
            "identify",
            &[("Ocp-Apim-Subscription-Key", &other)],
            json!({})
        )
        .await
        .status,
        StatusCode::FORBIDDEN
    );
}

#[tokio::test]
async fn no_call_proceeds_without_its_usage_record() {
    let f = front().await;
    let token = f.lat("Face.Identification");
    let mut holder = latch_store::testing::hold_the_journal(&f.world.store);
    let a = f.identify_with(&format!("Bearer {token}")).await;
    holder.kill().unwrap();
    holder.wait().unwrap();
    assert_eq!(a.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(a.json()["error"]["code"], "ServiceUnavailable");
}

#[tokio::test]
async fn an_ambiguous_return_face_id_needs_the_feature_and_is_refused() {
    let f = front().await;
    let key = f.client_key.clone();
    // Without a token, every ambiguous spelling is treated as asking for face ids.
    for q in [
        "returnFaceId=false&returnFaceId=true",
        "returnfaceid=false",
        "returnFaceId=nope",
    ] {
        let req = Request::post(format!("/face/v1.0/detect?{q}"))
            .header("Ocp-Apim-Subscription-Key", &key)
            .body(Body::empty())
            .unwrap();
        assert_eq!(f.send(req).await.status, StatusCode::FORBIDDEN, "{q}");
    }
    // With the feature, it passes the check and is refused as ambiguous.
    let lat = format!("Bearer {}", f.lat("Face.Identification"));
    let req = Request::post("/face/v1.0/detect?returnFaceId=false&returnFaceId=true")
        .header("Ocp-Apim-Subscription-Key", &key)
        .header("LimitedAccessToken", &lat)
        .body(Body::empty())
        .unwrap();
    let a = f.send(req).await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    assert!(a.json()["error"]["message"]
        .as_str()
        .unwrap()
        .contains("returnFaceId"));
    // Plain `returnFaceId=false` needs nothing.
    let req = Request::post("/face/v1.0/detect?returnFaceId=false")
        .header("Ocp-Apim-Subscription-Key", &key)
        .body(Body::empty())
        .unwrap();
    assert!(f.send(req).await.allowed());
    // A person id that is not a UUID never reaches the backend.
    let req =
        Request::post("/face/v1.0/largepersongroups/g/persons/..%2F..%2Ffacelists/persistedfaces")
            .header("Ocp-Apim-Subscription-Key", &key)
            .body(Body::empty())
            .unwrap();
    assert_eq!(f.send(req).await.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn a_disabled_isvs_tokens_are_refused_at_once() {
    let f = front().await;
    let t = format!("Bearer {}", f.lat("Face.Identification"));
    assert!(f.identify_with(&t).await.allowed());
    // Disabled without any revocation: the front still refuses its tokens.
    f.world
        .admin
        .set_isv(&id(ISV), false, &FeatureSet::new())
        .await
        .unwrap();
    let a = f.identify_with(&t).await;
    assert!(
        a.inner_message()
            .ends_with("(limited access token refused: isv_disabled)"),
        "{}",
        a.inner_message()
    );
}

#[tokio::test]
async fn revocations_apply_to_bearer_tokens_too() {
    let f = front().await;
    f.world
        .admin
        .set_auth_mode(&id(CLIENT), AuthMode::Token)
        .await
        .unwrap();
    let bearer = format!("Bearer {}", f.access_token(CLIENT));
    let req = || {
        Request::get("/face/v1.0/largepersongroups")
            .header("Authorization", &bearer)
            .body(Body::empty())
            .unwrap()
    };
    assert!(f.send(req()).await.allowed());
    f.world
        .admin
        .revoke(&Revocation::TargetBefore {
            target: id(CLIENT),
            before: NOW.plus(1),
        })
        .await
        .unwrap();
    assert_eq!(f.send(req()).await.status, StatusCode::UNAUTHORIZED);
}

/// Every route of the table answers its method in every version (allowed, with a body the
/// operation takes), and the same paths with other methods are 404s.
#[tokio::test]
async fn every_route_of_the_table_is_served_and_other_methods_are_404() {
    use crate::routes::tests::sample_path;
    use crate::routes::{Verb, ROUTES};
    let f = front_with(FaceConfig {
        rate_limit: RateLimit {
            per_second: 1_000_000.0,
            burst: 1_000_000.0,
        },
        ..FaceConfig::default()
    })
    .await;
    let key = f.client_key.clone();
    let lat = format!("Bearer {}", f.lat("Face.Identification,Face.Verification"));
    let send = |method: axum::http::Method, path: &str, body: Value| {
        Request::builder()
            .method(method)
            .uri(path)
            .header("Ocp-Apim-Subscription-Key", &key)
            .header("LimitedAccessToken", &lat)
            .body(Body::from(body.to_string()))
            .unwrap()
    };
    for v in operation::VERSIONS {
        for route in &ROUTES {
            let body = match route.operation {
                operation::Operation::Identify => {
                    json!({"faceIds": [F1], "largePersonGroupId": "g"})
                }
                operation::Operation::Verify => json!({"faceId1": F1, "faceId2": F1}),
                operation::Operation::FindSimilar => json!({"faceId": F1, "faceIds": [F1]}),
                operation::Operation::CreateGroup | operation::Operation::CreatePerson => {
                    json!({"name": "n"})
                }
                _ => json!({}),
            };
            let path = sample_path(v, route);
            let a = f.send(send(route.verb.method(), &path, body)).await;
            assert!(a.allowed(), "{path}: {} {}", a.status, a.body);
            for verb in [Verb::Get, Verb::Put, Verb::Post, Verb::Delete] {
                if ROUTES
                    .iter()
                    .any(|r| r.verb == verb && r.path == route.path)
                {
                    continue;
                }
                let a = f.send(send(verb.method(), &path, json!({}))).await;
                assert_eq!(a.status, StatusCode::NOT_FOUND, "{verb:?} {path}");
            }
            for method in [axum::http::Method::HEAD, axum::http::Method::PATCH] {
                let a = f.send(send(method.clone(), &path, json!({}))).await;
                assert_eq!(a.status, StatusCode::NOT_FOUND, "{method} {path}");
            }
        }
    }
}

/// An empty id inside a path reaches its route (the router matches it) and is refused by the
/// id's check; an empty last segment matches no route.
#[tokio::test]
async fn an_empty_id_in_a_path_is_an_invalid_id() {
    let f = front().await;
    let key = f.client_key.clone();
    for (method, path, status, message) in [
        (
            "GET",
            "/face/v1.0/largepersongroups//persons",
            StatusCode::BAD_REQUEST,
            "Large person group ID is invalid.",
        ),
        (
            "POST",
            "/face/v1.0/largepersongroups/g/persons//persistedfaces",
            StatusCode::BAD_REQUEST,
            "Person ID is invalid.",
        ),
        (
            "GET",
            "/face/v1.0/largepersongroups/g/persons/",
            StatusCode::NOT_FOUND,
            "Resource not found",
        ),
        (
            "GET",
            "/face/v1.0/operations/",
            StatusCode::NOT_FOUND,
            "Resource not found",
        ),
    ] {
        let req = Request::builder()
            .method(method)
            .uri(path)
            .header("Ocp-Apim-Subscription-Key", &key)
            .body(Body::empty())
            .unwrap();
        let a = f.send(req).await;
        assert_eq!(a.status, status, "{path}");
        assert!(
            a.json()["error"]["message"]
                .as_str()
                .unwrap()
                .starts_with(message),
            "{path}: {}",
            a.body
        );
    }
}
