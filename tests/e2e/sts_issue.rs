//! `issueLimitedAccessToken` over a real socket: wire.md §3.1, row by row.

use latch_core::audit::AuditEvent;
use latch_core::jws;
use serde_json::{json, Value};

use std::time::Duration;

use crate::harness::{lat_body, within, Answer, Server};

const INVALID_KEY: &str = "Access denied due to invalid subscription key or wrong API endpoint. Make sure to provide a valid key for an active subscription and use a correct regional API endpoint for your resource.";

fn claims(token: &str) -> Value {
    let d = jws::decode(token).unwrap();
    serde_json::from_slice(&d.payload).unwrap()
}

fn assert_refused(a: &Answer, status: u16, code: &str, message: &str) {
    assert_eq!(
        a.error(),
        (status, code.to_owned(), message.to_owned()),
        "{}",
        a.body
    );
    assert_eq!(a.header("content-type"), "application/json; charset=utf-8");
    assert!(!a.body.contains("eyJ"), "a refusal carries no token");
}

#[tokio::test]
async fn every_row_of_the_error_table_is_answered_and_audited() {
    let config = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(config.path(), "[sts]\nrefusal_summary_secs = 1\n").unwrap();
    let s = Server::start_with(&["--config", config.path().to_str().unwrap()]).await;
    let d = s.demo.clone();
    let good = lat_body(&d.client_id, &["Face.Identification"]);

    assert_refused(
        &s.issue(Some(&d.isv_key), "", "").await,
        400,
        "BadArgument",
        "Request body cannot be null or empty.",
    );
    let a = s
        .issue(
            Some(&d.isv_key),
            "",
            &json!({"featureFlags": ["Face.Identification"]}).to_string(),
        )
        .await;
    assert_refused(
        &a,
        400,
        "BadArgument",
        "TargetAzureResourceId must not be null and must be well formed.",
    );
    let malformed = d.client_id.replace("/accounts/", "/account/");
    let a = s
        .issue(
            Some(&d.isv_key),
            "",
            &lat_body(&malformed, &["Face.Identification"]),
        )
        .await;
    let (status, code, message) = a.error();
    assert_eq!((status, code.as_str()), (400, "BadArgument"));
    assert!(message.starts_with("TargetAzureResourceId must not be null and must be well formed. The 'accounts' segment"), "{message}");
    let a = s
        .issue(
            Some(&d.isv_key),
            "",
            &json!({"targetAzureResourceId": d.client_id}).to_string(),
        )
        .await;
    assert_refused(
        &a,
        400,
        "BadArgument",
        "FeatureFlags must not be null or empty.",
    );
    let a = s
        .issue(Some(&d.isv_key), "", &lat_body(&d.client_id, &[]))
        .await;
    assert_refused(
        &a,
        400,
        "BadArgument",
        "FeatureFlags must not be null or empty.",
    );
    // The demo client is not an ISV.
    let a = s.issue(Some(&d.client_key), "", &good).await;
    assert_refused(
        &a,
        400,
        "BadArgument",
        "ISV features not enabled for this resource id.",
    );
    let a = s
        .issue(
            Some(&d.isv_key),
            "",
            &lat_body(&d.client_id, &["LimitedAccess.HighRisk"]),
        )
        .await;
    assert_refused(
        &a,
        400,
        "BadArgument",
        "Missing required flags to grant LimitedAccess.HighRisk.",
    );
    assert_refused(&s.issue(None, "", &good).await, 401, "401", INVALID_KEY);
    assert_refused(
        &s.issue(Some("0123456789abcdef0123456789abcdef"), "", &good)
            .await,
        401,
        "401",
        INVALID_KEY,
    );

    // Refusals without a valid key are counted, and the count written within the interval.
    let mut records = Vec::new();
    within(Duration::from_secs(5), "the refusal summary", async || {
        records = s.audit().await;
        records
            .iter()
            .any(|r| matches!(r.event, AuditEvent::RefusalsCounted { .. }))
    })
    .await;
    let counted: Vec<_> = records
        .iter()
        .filter_map(|r| match &r.event {
            AuditEvent::RefusalsCounted {
                service,
                source,
                count,
                reasons,
                ..
            } => Some((
                service.as_str(),
                source.as_str(),
                *count,
                reasons.get("invalid_key").copied(),
            )),
            _ => None,
        })
        .collect();
    assert_eq!(counted, [("sts", "127.0.0.1", 2, Some(2))]);
    let issued = records
        .iter()
        .filter(|r| matches!(r.event, AuditEvent::LimitedAccessTokenIssued { .. }))
        .count();
    let reasons: Vec<String> = records
        .iter()
        .filter_map(|r| match &r.event {
            AuditEvent::LimitedAccessTokenRefused { reason, .. } => Some(reason.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(issued, 0, "a refused attempt issues nothing");
    assert_eq!(
        reasons,
        [
            "empty_body",
            "bad_target",
            "bad_target",
            "no_flags",
            "no_flags",
            "isv_not_enabled",
            "flag_not_granted",
        ]
    );
    s.finish().await;
}

#[tokio::test]
async fn expired_time_boundaries() {
    let s = Server::start().await;
    let d = s.demo.clone();
    let good = lat_body(&d.client_id, &["Face.Identification", "Face.Verification"]);
    for (query, want) in [
        ("", Some(3600)),
        ("?expiredTime=60", Some(60)),
        ("?expiredTime=86400", Some(86400)),
        ("?expiredTime=59", None),
        ("?expiredTime=86401", None),
        ("?expiredTime=abc", None),
        ("?expiredTime=-60", None),
        ("?expiredTime=3600.5", None),
    ] {
        let a = s.issue(Some(&d.isv_key), query, &good).await;
        match want {
            Some(secs) => {
                assert_eq!(a.status, 200, "{query}: {}", a.body);
                let c = claims(&a.body);
                assert_eq!(
                    c["exp"].as_i64().unwrap() - c["iat"].as_i64().unwrap(),
                    secs,
                    "{query}"
                );
            }
            None => {
                let (status, code, message) = a.error();
                assert_eq!((status, code.as_str()), (400, "BadArgument"), "{query}");
                assert!(
                    message.starts_with("expiredTime must be"),
                    "{query}: {message}"
                );
            }
        }
    }
    s.finish().await;
}

#[tokio::test]
async fn an_issued_token_says_who_for_what_and_is_audited_with_the_request_id() {
    let s = Server::start().await;
    let d = s.demo.clone();
    let a = s
        .issue(
            Some(&d.isv_key),
            "?expiredTime=600",
            &lat_body(&d.client_id, &["Face.Verification"]),
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.header("content-type"), "application/jwt");
    assert!(!a.body.starts_with('"'), "the body is the bare JWT");
    let c = claims(&a.body);
    assert_eq!(c["azure-resource-id"], d.client_id.as_str());
    assert_eq!(c["isv-resource-id"], d.isv_id.as_str());
    assert_eq!(c["featureFlags"], json!(["Face.Verification"]));
    let request_id = a.header("apim-request-id").to_owned();
    let record = s
        .audit()
        .await
        .into_iter()
        .find(|r| r.request_id.as_deref() == Some(request_id.as_str()))
        .unwrap();
    match record.event {
        AuditEvent::LimitedAccessTokenIssued {
            jti,
            lifetime_secs,
            features,
            ..
        } => {
            assert_eq!(jti, c["jti"].as_str().unwrap());
            assert_eq!(lifetime_secs, 600);
            assert_eq!(features.to_csv(), "Face.Verification");
        }
        other => panic!("{other:?}"),
    }
    s.finish().await;
}

#[tokio::test]
async fn chunked_bodies_and_the_older_field_name_work() {
    let s = Server::start().await;
    let d = s.demo.clone();
    // Through a raw socket: no Content-Length, chunked transfer, as older SDKs send.
    let body =
        json!({ "resourceId": d.client_id, "featureFlags": ["Face.Identification"] }).to_string();
    let addr = s.url.split("://").nth(1).unwrap().to_owned();
    let request = format!(
        "POST /sts/v1.0/issueLimitedAccessToken HTTP/1.1\r\nHost: {addr}\r\nOcp-Apim-Subscription-Key: {}\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n{:x}\r\n{body}\r\n0\r\n\r\n",
        d.isv_key,
        body.len()
    );
    let response = crate::harness::raw_exchange(&s.url, s.cacert.as_deref(), request).await;
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    let token = response.rsplit("\r\n\r\n").next().unwrap().trim();
    s.secret(token);
    assert_eq!(
        claims(token)["featureFlags"],
        json!(["Face.Identification"])
    );
    s.finish().await;
}
