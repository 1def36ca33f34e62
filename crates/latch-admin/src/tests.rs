//! Who may do what, through the HTTP API on a real store.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::Router;
use http_body_util::BodyExt;
use latch_core::audit::Actor;
use latch_core::{FeatureSet, FixedClock, ResourceId, UnixTime};
use latch_store::operations::Admin;
use latch_store::sqlite::SqliteStore;
use latch_store::{AdminRole, Store};
use ring::rand::SystemRandom;
use serde_json::{json, Value};
use tower::ServiceExt;

use crate::{http, Context};

const ISV: &str = "/subscriptions/11111111-1111-4111-8111-111111111111/resourceGroups/isv/providers/Microsoft.CognitiveServices/accounts/isv-face";
const OTHER_ISV: &str = "/subscriptions/11111111-1111-4111-8111-111111111111/resourceGroups/isv/providers/Microsoft.CognitiveServices/accounts/other-isv";
const CLIENT: &str = "/subscriptions/22222222-2222-4222-8222-222222222222/resourceGroups/client/providers/Microsoft.CognitiveServices/accounts/client-face";

struct Api {
    _dir: tempfile::TempDir,
    store: Arc<dyn Store>,
    app: Router,
    operator: String,
    auditor: String,
    isv_key: String,
    other_isv_key: String,
    client_key: String,
}

fn id(s: &str) -> ResourceId {
    ResourceId::parse(s).unwrap()
}

async fn api() -> Api {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> =
        Arc::new(SqliteStore::open(dir.path(), "main", &SystemRandom::new()).unwrap());
    let clock = Arc::new(FixedClock::at(UnixTime(1_800_000_000)));
    let rng = Arc::new(SystemRandom::new());
    let admin = Admin::new(
        store.clone(),
        rng.clone(),
        clock.clone(),
        Actor::LocalOperator,
    );
    let operator = admin
        .reset_admin_credential(AdminRole::Operator)
        .await
        .unwrap();
    let auditor = admin
        .reset_admin_credential(AdminRole::Auditor)
        .await
        .unwrap();
    let grants = FeatureSet::parse_csv("Face.Identification").unwrap();
    let (_, isv) = admin.create_resource(&id(ISV)).await.unwrap();
    admin.set_isv(&id(ISV), true, &grants).await.unwrap();
    let (_, other) = admin.create_resource(&id(OTHER_ISV)).await.unwrap();
    admin.set_isv(&id(OTHER_ISV), true, &grants).await.unwrap();
    let (_, client) = admin.create_resource(&id(CLIENT)).await.unwrap();
    latch_store::signing::KeyRing::load_or_create(store.as_ref(), rng.as_ref(), clock.as_ref())
        .await
        .unwrap();
    let audit = Arc::new(
        latch_audit::signer::AuditSigner::open(
            dir.path(),
            store.as_ref(),
            rng.as_ref(),
            clock.as_ref(),
        )
        .await
        .unwrap(),
    );
    let ctx = Context {
        store: store.clone(),
        rng,
        clock,
        audit,
    };
    Api {
        _dir: dir,
        store,
        app: http::router(ctx).await.unwrap(),
        operator: operator.expose_secret().to_owned(),
        auditor: auditor.expose_secret().to_owned(),
        isv_key: isv.key1.expose_secret().to_owned(),
        other_isv_key: other.key1.expose_secret().to_owned(),
        client_key: client.key1.expose_secret().to_owned(),
    }
}

enum Cred<'a> {
    Bearer(&'a str),
    Key(&'a str),
    None,
}

impl Api {
    async fn call(&self, cred: Cred<'_>, op: &str, body: Value) -> (StatusCode, Value) {
        let mut req = Request::post(format!("/admin/v1/{op}"));
        match cred {
            Cred::Bearer(t) => req = req.header("Authorization", format!("Bearer {t}")),
            Cred::Key(k) => req = req.header("Ocp-Apim-Subscription-Key", k),
            Cred::None => {}
        }
        let res = self
            .app
            .clone()
            .oneshot(req.body(Body::from(body.to_string())).unwrap())
            .await
            .unwrap();
        let status = res.status();
        let bytes = res.into_body().collect().await.unwrap().to_bytes();
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }
}

#[tokio::test]
async fn the_operator_may_do_everything() {
    let a = api().await;
    let op = Cred::Bearer(&a.operator);
    let (s, v) = a
        .call(
            op,
            "regenerate_key",
            json!({"resourceId": CLIENT, "keyName": "Key2"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["keyName"], "Key2");
    assert_eq!(
        a.call(Cred::Bearer(&a.operator), "rotate_signing_key", json!({}))
            .await
            .0,
        StatusCode::OK
    );
    assert_eq!(
        a.call(Cred::Bearer(&a.operator), "read_audit", json!({}))
            .await
            .0,
        StatusCode::OK
    );
    let (s, v) = a
        .call(
            Cred::Bearer(&a.operator),
            "block_client",
            json!({"isvResourceId": ISV, "clientResourceId": CLIENT}),
        )
        .await;
    assert_eq!((s, v["blocked"].clone()), (StatusCode::OK, json!(true)));
    let (s, _) = a
        .call(
            Cred::Bearer(&a.operator),
            "create_resource",
            json!({"resourceId": CLIENT.to_uppercase()}),
        )
        .await;
    assert_eq!(s, StatusCode::CONFLICT);
    let (s, _) = a
        .call(
            Cred::Bearer(&a.operator),
            "show_resource",
            json!({"resourceId": CLIENT.replace("client-face", "nobody")}),
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, v) = a
        .call(
            Cred::Bearer(&a.operator),
            "show_resource",
            json!({"resourceId": "/subscriptions/x"}),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
}

#[tokio::test]
async fn the_auditor_reads_and_changes_nothing() {
    let a = api().await;
    for op in ["list_resources", "read_audit", "list_signing_keys"] {
        assert_eq!(
            a.call(Cred::Bearer(&a.auditor), op, json!({})).await.0,
            StatusCode::OK,
            "{op}"
        );
    }
    let before = a
        .store
        .audit_records("main", 0, 10_000)
        .await
        .unwrap()
        .len();
    for (op, body) in [
        (
            "regenerate_key",
            json!({"resourceId": CLIENT, "keyName": "Key1"}),
        ),
        (
            "create_resource",
            json!({"resourceId": CLIENT.replace("client-face", "new-one")}),
        ),
        ("disable_isv", json!({"resourceId": ISV})),
        ("rotate_signing_key", json!({})),
        ("revoke_target", json!({"targetResourceId": CLIENT})),
        (
            "block_client",
            json!({"isvResourceId": ISV, "clientResourceId": CLIENT}),
        ),
    ] {
        let (s, v) = a.call(Cred::Bearer(&a.auditor), op, body).await;
        assert_eq!(s, StatusCode::FORBIDDEN, "{op}: {v}");
    }
    assert_eq!(
        a.store
            .audit_records("main", 0, 10_000)
            .await
            .unwrap()
            .len(),
        before,
        "nothing changed"
    );
}

#[tokio::test]
async fn an_isv_manages_only_its_own() {
    let a = api().await;
    let isv = || Cred::Key(&a.isv_key);
    // A token the other ISV really issued, on record.
    let issued = latch_core::audit::AuditEvent::LimitedAccessTokenIssued {
        isv: id(OTHER_ISV),
        target: id(CLIENT),
        features: FeatureSet::parse_csv("Face.Identification").unwrap(),
        lifetime_secs: 60,
        expires: UnixTime(1_800_000_060),
        jti: "jti-of-the-other-isv".into(),
        fingerprint: "f".into(),
        kid: "k".into(),
    };
    let draft = latch_core::audit::AuditDraft {
        time: UnixTime(1_800_000_000),
        request_id: None,
        actor: Actor::System,
        event: issued,
    };
    a.store.append_audit("main", &[draft]).await.unwrap();
    let (s, v) = a
        .call(
            isv(),
            "regenerate_key",
            json!({"resourceId": ISV, "keyName": "Key2"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    for (op, body) in [
        (
            "regenerate_key",
            json!({"resourceId": CLIENT, "keyName": "Key1"}),
        ),
        (
            "regenerate_key",
            json!({"resourceId": OTHER_ISV, "keyName": "Key1"}),
        ),
        (
            "block_client",
            json!({"isvResourceId": OTHER_ISV, "clientResourceId": CLIENT}),
        ),
        (
            "unblock_client",
            json!({"isvResourceId": OTHER_ISV, "clientResourceId": CLIENT}),
        ),
        ("read_audit", json!({})),
        ("list_resources", json!({})),
        (
            "enable_isv",
            json!({"resourceId": ISV, "grants": ["Face.Verification"]}),
        ),
        ("revoke_isv", json!({"isvResourceId": OTHER_ISV})),
        ("rotate_signing_key", json!({})),
        ("revoke_token", json!({"jti": "jti-of-the-other-isv"})),
    ] {
        let (s, v) = a.call(isv(), op, body).await;
        assert_eq!(s, StatusCode::FORBIDDEN, "{op}: {v}");
    }
    // Its own blocks, by name or implicitly.
    let (s, v) = a
        .call(isv(), "block_client", json!({"clientResourceId": CLIENT}))
        .await;
    assert_eq!((s, v["isv"].clone()), (StatusCode::OK, json!(ISV)));
    assert!(a
        .store
        .is_client_blocked(&id(ISV), &id(CLIENT))
        .await
        .unwrap());
    assert!(!a
        .store
        .is_client_blocked(&id(OTHER_ISV), &id(CLIENT))
        .await
        .unwrap());
    // Its revocation of a target covers only its own tokens.
    let (s, _) = a
        .call(isv(), "revoke_target", json!({"targetResourceId": CLIENT}))
        .await;
    assert_eq!(s, StatusCode::OK);
    assert!(a
        .store
        .is_revoked("j", &id(ISV), &id(CLIENT), UnixTime(1_800_000_000))
        .await
        .unwrap());
    assert!(!a
        .store
        .is_revoked("j", &id(OTHER_ISV), &id(CLIENT), UnixTime(1_800_000_000))
        .await
        .unwrap());
    // The other ISV's key is its own credential.
    let (s, _) = a
        .call(
            Cred::Key(&a.other_isv_key),
            "block_client",
            json!({"clientResourceId": CLIENT}),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
}

#[tokio::test]
async fn other_credentials_are_refused() {
    let a = api().await;
    let (s, v) = a
        .call(
            Cred::Key(&a.client_key),
            "show_resource",
            json!({"resourceId": CLIENT}),
        )
        .await;
    assert_eq!(
        s,
        StatusCode::FORBIDDEN,
        "a client key cannot call the admin API: {v}"
    );
    assert_eq!(
        a.call(Cred::None, "list_resources", json!({})).await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        a.call(Cred::Bearer("not-a-token"), "list_resources", json!({}))
            .await
            .0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        a.call(Cred::Bearer(&a.isv_key), "list_resources", json!({}))
            .await
            .0,
        StatusCode::UNAUTHORIZED,
        "a key is not a token"
    );
    assert_eq!(
        a.call(Cred::Key(&a.operator), "list_resources", json!({}))
            .await
            .0,
        StatusCode::UNAUTHORIZED,
        "a token is not a key"
    );
    // Both credentials at once.
    let req = Request::post("/admin/v1/list_resources")
        .header("Authorization", format!("Bearer {}", a.operator))
        .header("Ocp-Apim-Subscription-Key", &a.isv_key)
        .body(Body::empty())
        .unwrap();
    assert_eq!(
        a.app.clone().oneshot(req).await.unwrap().status(),
        StatusCode::UNAUTHORIZED
    );
    // Unknown operations and malformed bodies say what is wrong.
    let (s, v) = a
        .call(Cred::Bearer(&a.operator), "format_disk", json!({}))
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("unknown variant"),
        "{v}"
    );
}

#[tokio::test]
async fn regenerated_keys_stop_working_at_once_and_changes_are_audited() {
    let a = api().await;
    let (s, v) = a
        .call(
            Cred::Key(&a.isv_key),
            "regenerate_key",
            json!({"resourceId": ISV, "keyName": "Key1"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let new_key = v["key"].as_str().unwrap().to_owned();
    let (s, _) = a
        .call(
            Cred::Key(&a.isv_key),
            "list_keys",
            json!({"resourceId": ISV}),
        )
        .await;
    assert_eq!(
        s,
        StatusCode::UNAUTHORIZED,
        "the old Key1 is refused on the next request"
    );
    let (s, v) = a
        .call(Cred::Key(&new_key), "list_keys", json!({"resourceId": ISV}))
        .await;
    assert_eq!(s, StatusCode::OK);
    assert!(
        !v.to_string().contains(&new_key),
        "listing never shows a key"
    );
    let (_, records) = a
        .call(
            Cred::Bearer(&a.auditor),
            "read_audit",
            json!({"limit": 1000}),
        )
        .await;
    let last = records.as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["event"]["type"], "key_regenerated");
    assert_eq!(last["actor"]["kind"], "resource");
    assert!(!records.to_string().contains(&new_key));
}

#[tokio::test]
async fn revocations_cannot_reach_into_the_future() {
    let a = api().await;
    let (s, v) = a
        .call(
            Cred::Bearer(&a.operator),
            "revoke_target",
            json!({"targetResourceId": CLIENT, "before": 1_800_000_002}),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    let (s, _) = a
        .call(
            Cred::Bearer(&a.operator),
            "revoke_target",
            json!({"targetResourceId": CLIENT, "before": 1_800_000_001}),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
}

#[tokio::test]
async fn the_auditor_queries_exports_and_the_export_verifies() {
    let a = api().await;
    // Some history: a key regeneration by the ISV.
    let (s, _) = a
        .call(
            Cred::Key(&a.isv_key),
            "regenerate_key",
            json!({"resourceId": ISV, "keyName": "Key2"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let (s, v) = a
        .call(
            Cred::Bearer(&a.auditor),
            "query_audit",
            json!({"type": "key_regenerated", "targetResourceId": ISV}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["records"].as_array().unwrap().len(), 1);
    assert_eq!(v["next"], Value::Null);
    let (s, key) = a
        .call(Cred::Bearer(&a.auditor), "audit_key", json!({}))
        .await;
    assert_eq!(s, StatusCode::OK);
    let (s, saved) = a
        .call(Cred::Bearer(&a.auditor), "checkpoint", json!({}))
        .await;
    assert_eq!(s, StatusCode::OK, "{saved}");

    let export = |cred: String, format: &'static str| {
        let app = a.app.clone();
        async move {
            let req = Request::get(format!("/admin/v1/audit/export?format={format}"))
                .header("Authorization", format!("Bearer {cred}"))
                .body(Body::empty())
                .unwrap();
            let res = app.oneshot(req).await.unwrap();
            let status = res.status();
            (
                status,
                String::from_utf8(res.into_body().collect().await.unwrap().to_bytes().to_vec())
                    .unwrap(),
            )
        }
    };
    let (s, text) = export(a.auditor.clone(), "jsonl").await;
    assert_eq!(s, StatusCode::OK);
    let jwk = key;
    let point = latch_core::signing::PublicKey::from_jwk(&jwk).unwrap();
    let saved: latch_core::checkpoint::Checkpoint = serde_json::from_value(saved).unwrap();
    let report = latch_core::checkpoint::verify_export(
        text.lines(),
        std::slice::from_ref(&point),
        Some(&saved),
        |_| {},
    );
    assert_eq!(report.findings, [], "{text}");
    assert!(report.records["main"] >= 10);
    let (s, csv) = export(a.operator.clone(), "csv").await;
    assert_eq!(s, StatusCode::OK);
    assert!(csv.starts_with(crate::csv::HEADER));
    assert!(csv.contains("key_regenerated"));
    // An ISV may neither query nor export.
    assert_eq!(
        a.call(Cred::Key(&a.isv_key), "query_audit", json!({}))
            .await
            .0,
        StatusCode::FORBIDDEN
    );
    let req = Request::get("/admin/v1/audit/export")
        .header("Ocp-Apim-Subscription-Key", &a.isv_key)
        .body(Body::empty())
        .unwrap();
    assert_eq!(
        a.app.clone().oneshot(req).await.unwrap().status(),
        StatusCode::FORBIDDEN
    );
}

#[tokio::test]
async fn an_isv_cannot_lift_a_block_the_operator_set() {
    let a = api().await;
    let block = json!({"isvResourceId": ISV, "clientResourceId": CLIENT});
    assert_eq!(
        a.call(Cred::Bearer(&a.operator), "block_client", block.clone())
            .await
            .0,
        StatusCode::OK
    );
    let (s, v) = a
        .call(
            Cred::Key(&a.isv_key),
            "unblock_client",
            json!({"clientResourceId": CLIENT}),
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{v}");
    assert!(a
        .store
        .is_client_blocked(&id(ISV), &id(CLIENT))
        .await
        .unwrap());
    // The ISV's own block it lifts; once the operator blocks too, the block is the operator's.
    assert_eq!(
        a.call(Cred::Bearer(&a.operator), "unblock_client", block.clone())
            .await
            .0,
        StatusCode::OK
    );
    assert_eq!(
        a.call(
            Cred::Key(&a.isv_key),
            "block_client",
            json!({"clientResourceId": CLIENT})
        )
        .await
        .0,
        StatusCode::OK
    );
    assert_eq!(
        a.call(
            Cred::Key(&a.isv_key),
            "unblock_client",
            json!({"clientResourceId": CLIENT})
        )
        .await
        .0,
        StatusCode::OK
    );
    assert_eq!(
        a.call(
            Cred::Key(&a.isv_key),
            "block_client",
            json!({"clientResourceId": CLIENT})
        )
        .await
        .0,
        StatusCode::OK
    );
    assert_eq!(
        a.call(Cred::Bearer(&a.operator), "block_client", block)
            .await
            .0,
        StatusCode::OK
    );
    assert_eq!(
        a.call(
            Cred::Key(&a.isv_key),
            "unblock_client",
            json!({"clientResourceId": CLIENT})
        )
        .await
        .0,
        StatusCode::FORBIDDEN
    );
}
