//! The STS router, driven through `oneshot` on a real embedded store.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::Router;
use latch_audit::AuditStore;
use latch_core::audit::{Actor, AuditEvent, SealedRecord};
use latch_core::Verifier;
use latch_store::signing::KeyRing;
use latch_testkit::{id, Answer, World, CLIENT, ISSUER, ISV, NOW};
use serde_json::json;

use super::*;

struct Sts {
    world: World,
    app: Router,
    isv_key: String,
    isv_key2: String,
    client_key: String,
    summaries: RefusalSummaries,
}

async fn sts() -> Sts {
    sts_with(StsLimits::default()).await
}

async fn sts_with(limits: StsLimits) -> Sts {
    let world = World::new().await;
    let config = StsConfig {
        issuer: ISSUER.into(),
        region: Some("local".into()),
        public_url: "http://sts.test".into(),
        limits,
    };
    let ring = latch_store::signing::SharedKeyRing::new(
        KeyRing::load(&world.store, world.rng.as_ref(), NOW)
            .await
            .unwrap(),
    );
    let state = AppState::new(
        world.checks(),
        world.audit(),
        ring,
        Arc::new(world.clock.clone()),
        config,
    )
    .await
    .unwrap();
    Sts {
        summaries: state.refusal_summaries(),
        app: router(state),
        isv_key: world.isv_keys.key1.expose_secret().to_owned(),
        isv_key2: world.isv_keys.key2.expose_secret().to_owned(),
        client_key: world.client_keys.key2.expose_secret().to_owned(),
        world,
    }
}

impl Sts {
    async fn call(&self, req: Request<Body>) -> Answer {
        latch_testkit::call(&self.app, req).await
    }

    async fn issue(&self, key: Option<&str>, query: &str, body: &str) -> Answer {
        let mut req = Request::post(format!("/sts/v1.0/issueLimitedAccessToken{query}"))
            .header("content-type", "application/json");
        if let Some(key) = key {
            req = req.header("Ocp-Apim-Subscription-Key", key);
        }
        self.call(req.body(Body::from(body.to_owned())).unwrap())
            .await
    }

    async fn issue_ok_body(&self, body: &str) -> Answer {
        self.issue(Some(&self.isv_key.clone()), "", body).await
    }

    async fn records(&self) -> Vec<SealedRecord> {
        self.world
            .store
            .audit_records("main", 0, 10_000)
            .await
            .unwrap()
            .iter()
            .map(|r| serde_json::from_str(&r.body).unwrap())
            .collect()
    }

    fn verifier(&self) -> Verifier {
        Verifier::new(ISSUER, self.world.keys.public_keys().to_vec(), 0)
    }
}

fn body(target: &str, flags: &[&str]) -> String {
    json!({ "targetAzureResourceId": target, "featureFlags": flags }).to_string()
}

#[tokio::test]
async fn issues_a_token_that_verifies_and_is_audited() {
    let s = sts().await;
    let a = s
        .issue_ok_body(&body(CLIENT, &["Face.Identification"]))
        .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    assert_eq!(a.content_type(), "application/jwt");
    assert_eq!(a.headers["cache-control"], "no-store");
    assert!(a.headers.contains_key("apim-request-id"));
    let v = s.verifier().verify_limited_access(&a.body, NOW).unwrap();
    let c = v.claims();
    assert_eq!(c.azure_resource_id.as_str(), CLIENT);
    assert_eq!(c.isv_resource_id.as_str(), ISV);
    assert_eq!(c.feature_flags.to_csv(), "Face.Identification");
    assert_eq!(c.exp, NOW.plus(3600));
    assert_eq!(c.region.as_deref(), Some("local"));

    let last = s.records().await.pop().unwrap();
    match last.event {
        AuditEvent::LimitedAccessTokenIssued {
            jti,
            fingerprint,
            lifetime_secs,
            ..
        } => {
            assert_eq!(jti, c.jti);
            assert_eq!(fingerprint, v.fingerprint());
            assert_eq!(lifetime_secs, 3600);
        }
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(
        last.request_id.as_deref(),
        a.headers["apim-request-id"].to_str().ok()
    );
    assert!(!serde_json::to_string(&s.records().await)
        .unwrap()
        .contains(&a.body));
}

#[tokio::test]
async fn the_older_resource_id_name_and_any_member_case_are_accepted() {
    let s = sts().await;
    let old = json!({ "resourceId": CLIENT, "featureFlags": ["Face.Verification"] }).to_string();
    assert_eq!(s.issue_ok_body(&old).await.status, StatusCode::OK);
    let cased = json!({ "TargetAzureResourceId": CLIENT, "FEATUREFLAGS": ["face.verification"] })
        .to_string();
    let a = s.issue_ok_body(&cased).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    let claims = s.verifier().verify_limited_access(&a.body, NOW).unwrap();
    assert_eq!(claims.claims().feature_flags.to_csv(), "Face.Verification");
}

#[tokio::test]
async fn every_row_of_the_error_table() {
    let s = sts().await;
    let good = body(CLIENT, &["Face.Identification"]);
    let cases: Vec<(Answer, StatusCode, &str, &str)> = vec![
        (
            s.issue_ok_body("").await,
            StatusCode::BAD_REQUEST,
            "BadArgument",
            "Request body cannot be null or empty.",
        ),
        (
            s.issue_ok_body("null").await,
            StatusCode::BAD_REQUEST,
            "BadArgument",
            "Request body cannot be null or empty.",
        ),
        (
            s.issue_ok_body(&json!({"featureFlags": ["Face.Identification"]}).to_string())
                .await,
            StatusCode::BAD_REQUEST,
            "BadArgument",
            "TargetAzureResourceId must not be null and must be well formed.",
        ),
        (
            s.issue_ok_body(&json!({"targetAzureResourceId": CLIENT}).to_string())
                .await,
            StatusCode::BAD_REQUEST,
            "BadArgument",
            "FeatureFlags must not be null or empty.",
        ),
        (
            s.issue_ok_body(&body(CLIENT, &[])).await,
            StatusCode::BAD_REQUEST,
            "BadArgument",
            "FeatureFlags must not be null or empty.",
        ),
        (
            s.issue(Some(&s.client_key), "", &good).await,
            StatusCode::BAD_REQUEST,
            "BadArgument",
            "ISV features not enabled for this resource id.",
        ),
        (
            s.issue_ok_body(&body(
                CLIENT,
                &["Face.Identification", "LimitedAccess.HighRisk"],
            ))
            .await,
            StatusCode::BAD_REQUEST,
            "BadArgument",
            "Missing required flags to grant LimitedAccess.HighRisk.",
        ),
        (
            s.issue(None, "", &good).await,
            StatusCode::UNAUTHORIZED,
            "401",
            latch_http::INVALID_KEY_MESSAGE,
        ),
        (
            s.issue(Some("wrong"), "", &good).await,
            StatusCode::UNAUTHORIZED,
            "401",
            latch_http::INVALID_KEY_MESSAGE,
        ),
    ];
    for (i, (a, status, code, message)) in cases.into_iter().enumerate() {
        assert_eq!(a.status, status, "case {i}: {}", a.body);
        assert_eq!(a.code(), code, "case {i}");
        assert_eq!(a.message(), message, "case {i}");
        assert_eq!(a.content_type(), "application/json; charset=utf-8");
    }
}

#[tokio::test]
async fn malformed_targets_say_which_part_is_wrong() {
    let s = sts().await;
    let a = s
        .issue_ok_body(&body(
            &CLIENT.replace("22222222-2222", "nope"),
            &["Face.Identification"],
        ))
        .await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    assert!(
        a.message().starts_with(
            "TargetAzureResourceId must not be null and must be well formed. The subscription id"
        ),
        "{}",
        a.message()
    );
    let a = s
        .issue_ok_body(
            &json!({"targetAzureResourceId": 7, "featureFlags": ["Face.Identification"]})
                .to_string(),
        )
        .await;
    assert_eq!(
        a.message(),
        "TargetAzureResourceId must not be null and must be well formed."
    );
}

#[tokio::test]
async fn our_own_refusals_name_the_problem() {
    let s = sts().await;
    let good = body(CLIENT, &["Face.Identification"]);
    let a = s.issue_ok_body(&body(CLIENT, &["Face.Everything"])).await;
    assert_eq!(
        (a.status, a.code()),
        (StatusCode::BAD_REQUEST, "BadArgument".into())
    );
    assert!(a.message().contains("'Face.Everything'"), "{}", a.message());
    let a = s.issue_ok_body("{not json").await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    assert!(a.message().contains("JSON"));
    let a = s
        .issue_ok_body(
            r#"{"featureFlags":["Face.Identification"],"featureFlags":["Face.Verification"]}"#,
        )
        .await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    let a = s
        .issue_ok_body(
            &json!({"targetAzureResourceId": CLIENT, "featureFlags": "Face.Identification"})
                .to_string(),
        )
        .await;
    assert_eq!(a.message(), "FeatureFlags must be an array of strings.");
    let a = s.issue(Some(&s.isv_key), "?expiredTime=abc", &good).await;
    assert!(a.message().contains("expiredTime"), "{}", a.message());
    let a = s
        .issue(Some(&s.isv_key), "?expiredTime=60&expiredTime=70", &good)
        .await;
    assert_eq!(a.message(), "expiredTime must be given at most once.");
    let big = format!(r#"{{"pad":"{}"}}"#, "x".repeat(MAX_BODY));
    let a = s.issue_ok_body(&big).await;
    assert_eq!(a.status, StatusCode::PAYLOAD_TOO_LARGE);
}

#[tokio::test]
async fn expired_time_boundaries() {
    let s = sts().await;
    let good = body(CLIENT, &["Face.Identification"]);
    for (query, want) in [
        ("", Some(3600)),
        ("?expiredTime=60", Some(60)),
        ("?expiredTime=86400", Some(86400)),
        ("?ExpiredTime=120", Some(120)),
        ("?expiredTime=59", None),
        ("?expiredTime=86401", None),
        ("?expiredTime=", None),
        ("?expiredTime=1e3", None),
    ] {
        let a = s.issue(Some(&s.isv_key), query, &good).await;
        match want {
            Some(secs) => {
                assert_eq!(a.status, StatusCode::OK, "{query}: {}", a.body);
                let v = s.verifier().verify_limited_access(&a.body, NOW).unwrap();
                assert_eq!(v.claims().exp, NOW.plus(secs), "{query}");
            }
            None => {
                assert_eq!(a.status, StatusCode::BAD_REQUEST, "{query}");
                assert!(
                    a.message().starts_with("expiredTime must be"),
                    "{query}: {}",
                    a.message()
                );
            }
        }
    }
}

#[tokio::test]
async fn blocked_clients_get_nothing() {
    let s = sts().await;
    s.world
        .admin
        .set_client_blocked(&id(ISV), &id(CLIENT), true)
        .await
        .unwrap();
    let a = s
        .issue_ok_body(&body(&CLIENT.to_uppercase(), &["Face.Identification"]))
        .await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    assert!(a.message().contains("blocked"));
    s.world
        .admin
        .set_client_blocked(&id(ISV), &id(CLIENT), false)
        .await
        .unwrap();
    assert_eq!(
        s.issue_ok_body(&body(CLIENT, &["Face.Identification"]))
            .await
            .status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn refusals_are_audited_with_their_reason_and_no_secret() {
    let s = sts().await;
    s.issue(
        Some("not-a-key"),
        "",
        &body(CLIENT, &["Face.Identification"]),
    )
    .await;
    s.issue_ok_body(&body(CLIENT, &["LimitedAccess.HighRisk"]))
        .await;
    // A caller with a valid key is recorded on its own, before it is answered.
    let records = s.records().await;
    let refusals: Vec<_> = records
        .iter()
        .filter_map(|r| match &r.event {
            AuditEvent::LimitedAccessTokenRefused {
                reason,
                status,
                isv,
                features,
                ..
            } => Some((reason.clone(), *status, isv.clone(), features.to_csv())),
            _ => None,
        })
        .collect();
    assert_eq!(refusals.len(), 1);
    assert_eq!(refusals[0].0, "flag_not_granted");
    assert_eq!(refusals[0].1, 400);
    assert_eq!(refusals[0].2.as_ref().unwrap().as_str(), ISV);
    assert_eq!(refusals[0].3, "LimitedAccess.HighRisk");
    // One with no valid key is counted, and the count written at the next summary.
    assert_eq!(s.summaries.flush().await, 1);
    let records = s.records().await;
    let counted: Vec<_> = records
        .iter()
        .filter_map(|r| match &r.event {
            AuditEvent::RefusalsCounted {
                source,
                count,
                reasons,
                first,
                last,
                ..
            } => Some((
                source.clone(),
                *count,
                reasons.clone(),
                *first,
                *last,
                r.actor.clone(),
            )),
            _ => None,
        })
        .collect();
    assert_eq!(counted.len(), 1);
    let (source, count, reasons, first, last, actor) = &counted[0];
    assert_eq!((source.as_str(), *count), ("unknown", 1));
    assert_eq!(reasons.get("invalid_key"), Some(&1));
    assert_eq!((*first, *last), (NOW, NOW));
    assert_eq!(*actor, Actor::Anonymous);
    let all = serde_json::to_string(&records).unwrap();
    assert!(!all.contains("not-a-key"));
    assert!(!all.contains(&s.isv_key));
}

/// A request as it arrives from a connection with `peer`.
fn from_peer(mut req: Request<Body>, peer: &str) -> Request<Body> {
    let peer: std::net::SocketAddr = peer.parse().unwrap();
    req.extensions_mut()
        .insert(axum::extract::ConnectInfo(peer));
    req
}

fn lat_request(key: &str) -> Request<Body> {
    Request::post("/sts/v1.0/issueLimitedAccessToken")
        .header("ocp-apim-subscription-key", key)
        .header("content-type", "application/json")
        .body(Body::from(body(CLIENT, &["Face.Identification"])))
        .unwrap()
}

fn counted_records(records: &[latch_core::audit::SealedRecord]) -> Vec<(String, u64, u64, u64)> {
    records
        .iter()
        .filter_map(|r| match &r.event {
            AuditEvent::RefusalsCounted {
                source,
                count,
                reasons,
                ..
            } => Some((
                source.clone(),
                *count,
                reasons.get("invalid_key").copied().unwrap_or(0),
                reasons.get("rate_limited").copied().unwrap_or(0),
            )),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn over_the_key_limit_the_answer_is_azures_429_and_it_is_counted_not_recorded() {
    let s = sts_with(StsLimits {
        per_key: latch_http::rate_limit::RateLimit {
            per_second: 0.5,
            burst: 2.0,
        },
        ..StsLimits::default()
    })
    .await;
    for _ in 0..2 {
        let a = s.call(lat_request(&s.isv_key)).await;
        assert_eq!(a.status, StatusCode::OK);
    }
    let before = s.records().await.len();
    let a = s.call(lat_request(&s.isv_key)).await;
    assert_eq!(a.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(a.code(), "429");
    assert_eq!(
        a.message(),
        "Rate limit is exceeded. Try again in 2 seconds."
    );
    assert_eq!(a.headers["retry-after"], "2");
    assert_eq!(s.records().await.len(), before, "no record per 429");
    // The ISV's other key has a bucket of its own.
    let mut other = lat_request("unused");
    other
        .headers_mut()
        .insert("ocp-apim-subscription-key", s.isv_key2.parse().unwrap());
    assert_eq!(s.call(other).await.status, StatusCode::OK);
    s.summaries.flush().await;
    assert_eq!(
        counted_records(&s.records().await),
        [("unknown".to_owned(), 1, 0, 1)]
    );
}

#[tokio::test]
async fn over_the_address_limit_nothing_else_is_looked_at() {
    let s = sts_with(StsLimits {
        per_address: latch_http::rate_limit::RateLimit {
            per_second: 1.0,
            burst: 3.0,
        },
        ..StsLimits::default()
    })
    .await;
    for _ in 0..3 {
        let a = s
            .call(from_peer(lat_request(&s.isv_key), "192.0.2.7:5000"))
            .await;
        assert_eq!(a.status, StatusCode::OK);
    }
    let a = s
        .call(from_peer(lat_request(&s.isv_key), "192.0.2.7:5001"))
        .await;
    assert_eq!(
        (a.status, a.code()),
        (StatusCode::TOO_MANY_REQUESTS, "429".into())
    );
    // A wrong key from there is refused as over the limit too: the key is never looked up.
    let a = s
        .call(from_peer(lat_request("wrong"), "192.0.2.7:5002"))
        .await;
    assert_eq!(a.status, StatusCode::TOO_MANY_REQUESTS);
    // Another address has its own bucket.
    let a = s
        .call(from_peer(lat_request(&s.isv_key), "192.0.2.8:5000"))
        .await;
    assert_eq!(a.status, StatusCode::OK);
    s.summaries.flush().await;
    assert_eq!(
        counted_records(&s.records().await),
        [("192.0.2.7".to_owned(), 2, 0, 2)]
    );
}

#[tokio::test]
async fn a_flood_of_100_000_anonymous_refusals_adds_one_record_per_address() {
    let s = sts().await;
    let before = s.records().await.len();
    let addresses = ["198.51.100.1:1", "198.51.100.2:1", "[2001:db8::1]:1"];
    for i in 0..100_000usize {
        let req = Request::post("/sts/v1.0/issueLimitedAccessToken")
            .header("ocp-apim-subscription-key", "wrong")
            .body(Body::empty())
            .unwrap();
        let a = s.call(from_peer(req, addresses[i % 3])).await;
        assert!(
            a.status == StatusCode::UNAUTHORIZED || a.status == StatusCode::TOO_MANY_REQUESTS,
            "{}",
            a.status
        );
    }
    assert_eq!(s.summaries.flush().await, 3);
    let records = s.records().await;
    assert_eq!(records.len() - before, 3);
    let counted = counted_records(&records);
    let total: u64 = counted.iter().map(|c| c.1).sum();
    assert_eq!(total, 100_000);
    assert!(counted.iter().any(|c| c.0 == "2001:db8::"), "{counted:?}");
}

#[tokio::test]
async fn no_token_without_its_audit_record() {
    let s = sts().await;
    let before = s.records().await.len();
    let mut holder = latch_store::testing::hold_the_journal(&s.world.store);
    let a = s
        .issue_ok_body(&body(CLIENT, &["Face.Identification"]))
        .await;
    assert_eq!(a.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(a.code(), "ServiceUnavailable");
    let req = Request::post("/sts/v1.0/issueToken")
        .header("Ocp-Apim-Subscription-Key", &s.client_key)
        .body(Body::empty())
        .unwrap();
    assert_eq!(s.call(req).await.status, StatusCode::SERVICE_UNAVAILABLE);
    holder.kill().unwrap();
    holder.wait().unwrap();
    assert_eq!(s.records().await.len(), before);
    assert_eq!(
        s.issue_ok_body(&body(CLIENT, &["Face.Identification"]))
            .await
            .status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn issue_token_gives_a_ten_minute_bearer_token_and_a_refresh_time() {
    let s = sts().await;
    let req = Request::post("/sts/v1.0/issueToken")
        .header("Ocp-Apim-Subscription-Key", &s.client_key)
        .body(Body::empty())
        .unwrap();
    let a = s.call(req).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    assert_eq!(a.content_type(), "application/jwt");
    let v = s.verifier().verify_access(&a.body, NOW).unwrap();
    assert_eq!(v.claims().exp, NOW.plus(600));
    assert_eq!(v.claims().azure_resource_id.as_str(), CLIENT);
    assert_eq!(a.headers["latch-refresh-by"], NOW.plus(540).to_rfc3339());
    // It is not a limited access token.
    assert!(s.verifier().verify_limited_access(&a.body, NOW).is_err());
    let req = Request::post("/sts/v1.0/issueToken")
        .body(Body::empty())
        .unwrap();
    let a = s.call(req).await;
    assert_eq!(
        (a.status, a.code()),
        (StatusCode::UNAUTHORIZED, "401".into())
    );
}

#[tokio::test]
async fn two_key_headers_are_refused() {
    let s = sts().await;
    let req = Request::post("/sts/v1.0/issueLimitedAccessToken")
        .header("Ocp-Apim-Subscription-Key", &s.isv_key)
        .header("Ocp-Apim-Subscription-Key", &s.isv_key)
        .body(Body::from(body(CLIENT, &["Face.Identification"])))
        .unwrap();
    assert_eq!(s.call(req).await.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn jwks_and_metadata_describe_the_keys() {
    let s = sts().await;
    let a = s
        .call(
            Request::get("/.well-known/jwks.json")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(a.status, StatusCode::OK);
    let jwks = a.json();
    assert_eq!(jwks["keys"][0]["kid"], s.world.keys.active().kid());
    assert_eq!(jwks["keys"][0]["alg"], "ES256");
    assert!(jwks["keys"][0].get("d").is_none());
    let a = s
        .call(
            Request::get("/.well-known/oauth-authorization-server")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    let m = a.json();
    assert_eq!(m["issuer"], ISSUER);
    assert_eq!(m["jwks_uri"], "http://sts.test/.well-known/jwks.json");
    assert_eq!(m["token_kinds"]["limited_access"]["typ"], "lat+jwt");
}

#[tokio::test]
async fn unknown_routes_and_methods_answer_in_azure_form() {
    let s = sts().await;
    let a = s
        .call(Request::get("/nope").body(Body::empty()).unwrap())
        .await;
    assert_eq!((a.status, a.code()), (StatusCode::NOT_FOUND, "404".into()));
    let a = s
        .call(
            Request::get("/sts/v1.0/issueToken")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(a.status, StatusCode::METHOD_NOT_ALLOWED);
}

#[tokio::test]
async fn the_openapi_document_is_served() {
    let s = sts().await;
    let a = s
        .call(Request::get("/openapi.json").body(Body::empty()).unwrap())
        .await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.body, latch_http::OPENAPI);
    assert_eq!(a.json()["openapi"], "3.1.0");
}
