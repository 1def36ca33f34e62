//! Administration end to end: keys, ISV issuance, client blocks, revocation and signing-key
//! rotation, through the admin API and the command line, enforced by the STS and the Face front.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};

use crate::harness::{jti, lat_body, Answer, Server};

const F1: &str = "c5c24a82-6845-4031-9d5d-978df9175426";

async fn lat(s: &Server, flags: &[&str]) -> String {
    let d = &s.demo;
    let a = s
        .issue(Some(&d.isv_key), "", &lat_body(&d.client_id, flags))
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    a.body
}

async fn identify(s: &Server, token: &str) -> Answer {
    let key = s.demo.client_key.clone();
    let header = format!("Bearer {token}");
    s.face(
        "POST",
        "/face/v1.0/identify",
        &[
            ("Ocp-Apim-Subscription-Key", &key),
            ("LimitedAccessToken", &header),
        ],
        &json!({"faceIds": [F1], "largePersonGroupId": "g"}).to_string(),
    )
    .await
}

/// 501 means every check passed and the call reached the (absent) backend.
fn allowed(a: &Answer) -> bool {
    a.status == 501
}

fn refused_as(a: &Answer, reason: &str) -> bool {
    a.status == 403
        && a.json()["error"]["innererror"]["message"]
            .as_str()
            .is_some_and(|m| m.ends_with(&format!("(limited access token refused: {reason})")))
}

fn used_reasons(records: &[latch_core::audit::SealedRecord]) -> Vec<Option<String>> {
    records
        .iter()
        .filter_map(|r| match &r.event {
            latch_core::audit::AuditEvent::LimitedAccessTokenUsed { reason, .. } => {
                Some(reason.clone())
            }
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn the_isv_regenerates_its_key1_through_the_api_and_key2_keeps_working() {
    let s = Server::start().await;
    let d = s.demo.clone();
    let body = lat_body(&d.client_id, &["Face.Identification"]);
    let out = s.cli(&[
        "--server",
        &s.admin_url,
        "--key",
        &d.isv_key,
        "--json",
        "keys",
        "regenerate",
        &d.isv_id,
        "--key-name",
        "key1",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let new_key = serde_json::from_slice::<Value>(&out.stdout).unwrap()["key"]
        .as_str()
        .unwrap()
        .to_owned();
    s.secret(&new_key);
    assert_eq!(
        s.issue(Some(&d.isv_key), "", &body).await.status,
        401,
        "the old Key1, on the very next request"
    );
    assert_eq!(
        s.issue(Some(&d.isv_key2), "", &body).await.status,
        200,
        "Key2 still served"
    );
    assert_eq!(s.issue(Some(&new_key), "", &body).await.status, 200);
    // The old key no longer opens the admin API either, and says so with the exit code.
    let out = s.cli(&[
        "--server",
        &s.admin_url,
        "--key",
        &d.isv_key,
        "keys",
        "list",
        &d.isv_id,
    ]);
    assert_eq!(out.status.code(), Some(5));
    s.finish().await;
}

#[tokio::test]
async fn disabling_an_isv_refuses_its_issuance_and_its_outstanding_tokens() {
    let s = Server::start().await;
    let d = s.demo.clone();
    let token = lat(&s, &["Face.Identification"]).await;
    assert!(allowed(&identify(&s, &token).await));
    let op = ("authorization", format!("Bearer {}", s.operator_token));
    let a = s
        .admin(
            "disable_isv",
            (op.0, &op.1),
            json!({"resourceId": d.isv_id}),
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    let (status, _, message) = s
        .issue(
            Some(&d.isv_key),
            "",
            &lat_body(&d.client_id, &["Face.Identification"]),
        )
        .await
        .error();
    assert_eq!(
        (status, message.as_str()),
        (400, "ISV features not enabled for this resource id.")
    );
    assert!(
        refused_as(&identify(&s, &token).await, "revoked"),
        "a token issued before the disable is refused"
    );
    assert_eq!(
        used_reasons(&s.audit().await).last().unwrap().as_deref(),
        Some("revoked")
    );
    s.finish().await;
}

#[tokio::test]
async fn an_isv_blocks_its_client_and_cannot_touch_another_isvs_blocks() {
    let s = Server::start().await;
    let d = s.demo.clone();
    let isv = ("ocp-apim-subscription-key", d.isv_key.as_str());
    let a = s
        .admin(
            "block_client",
            isv,
            json!({"clientResourceId": d.client_id}),
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    let a = s
        .issue(
            Some(&d.isv_key),
            "",
            &lat_body(&d.client_id, &["Face.Identification"]),
        )
        .await;
    assert_eq!(a.error().0, 400);
    assert!(a.error().2.contains("blocked"));
    let other_isv = d.isv_id.replace("demo-isv-face", "other-isv");
    let a = s
        .admin(
            "unblock_client",
            isv,
            json!({"isvResourceId": other_isv, "clientResourceId": d.client_id}),
        )
        .await;
    assert_eq!(a.status, 403);
    let a = s.admin("read_audit", isv, json!({})).await;
    assert_eq!(a.status, 403, "an ISV cannot read the audit log");
    let client = ("ocp-apim-subscription-key", d.client_key.as_str());
    assert_eq!(
        s.admin("list_keys", client, json!({"resourceId": d.client_id}))
            .await
            .status,
        403,
        "a client key cannot call the admin API"
    );
    let auditor = ("authorization", format!("Bearer {}", s.auditor_token));
    assert_eq!(
        s.admin(
            "unblock_client",
            (auditor.0, &auditor.1),
            json!({"isvResourceId": d.isv_id, "clientResourceId": d.client_id})
        )
        .await
        .status,
        403
    );
    assert_eq!(
        s.admin("read_audit", (auditor.0, &auditor.1), json!({}))
            .await
            .status,
        200
    );
    let a = s
        .admin(
            "unblock_client",
            isv,
            json!({"clientResourceId": d.client_id}),
        )
        .await;
    assert_eq!(a.status, 200);
    assert_eq!(
        s.issue(
            Some(&d.isv_key),
            "",
            &lat_body(&d.client_id, &["Face.Identification"])
        )
        .await
        .status,
        200
    );
    s.finish().await;
}

#[tokio::test]
async fn revoking_one_jti_refuses_that_token_only() {
    let s = Server::start().await;
    let (a, b) = (
        lat(&s, &["Face.Identification"]).await,
        lat(&s, &["Face.Identification"]).await,
    );
    // The ISV revokes a token it issued, through the command line over the API.
    let out = s.cli(&[
        "--server",
        &s.admin_url,
        "--key",
        &s.demo.isv_key,
        "revoke",
        "token",
        &jti(&a),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(refused_as(&identify(&s, &a).await, "revoked"));
    assert!(
        allowed(&identify(&s, &b).await),
        "another token is still accepted"
    );
    s.finish().await;
}

#[tokio::test]
async fn revoking_before_t_refuses_older_tokens_and_accepts_newer() {
    let s = Server::start().await;
    let old = lat(&s, &["Face.Identification"]).await;
    let out = s.cli(&["--json", "revoke", "target", &s.demo.client_id]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // "Before T" is to the second (T is the next second); a token issued after T is newer.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let new = lat(&s, &["Face.Identification"]).await;
    assert!(refused_as(&identify(&s, &old).await, "revoked"));
    assert!(allowed(&identify(&s, &new).await));
    s.finish().await;
}

#[tokio::test]
async fn rotating_the_signing_key_on_a_running_server() {
    let s = Server::start().await;
    let old = lat(&s, &["Face.Identification"]).await;
    let op = ("authorization", format!("Bearer {}", s.operator_token));
    let a = s
        .admin("rotate_signing_key", (op.0, &op.1), json!({}))
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    let new_kid = a.json()["kid"].as_str().unwrap().to_owned();
    // Within a second, the STS signs with the new key and publishes both.
    let mut published = Vec::new();
    for _ in 0..50 {
        let jwks = s
            .request("GET", "/.well-known/jwks.json", &[], "")
            .await
            .json();
        published = jwks["keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k["kid"].as_str().unwrap().to_owned())
            .collect();
        if published.len() == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(published.len(), 2, "{published:?}");
    let new = lat(&s, &["Face.Identification"]).await;
    let kid = |t: &str| latch_core::jws::decode(t).unwrap().header.kid;
    assert_eq!(kid(&new), new_kid);
    assert_ne!(kid(&old), new_kid);
    assert!(
        allowed(&identify(&s, &old).await),
        "a token signed before the rotation still verifies"
    );
    assert!(allowed(&identify(&s, &new).await));
    s.finish().await;
}

/// With an injected clock: the JWKS keeps the retired key until every token it signed has
/// expired (86400 s plus the largest leeway), then drops it, and its tokens are refused.
#[tokio::test]
async fn a_retired_key_leaves_the_jwks_when_its_tokens_have_expired() {
    use latch_core::audit::Actor;
    use latch_core::claims::{new_jti, LimitedAccessClaims, LimitedAccessGrant, TokenKind};
    use latch_core::{FeatureSet, FixedClock, Lifetime, ResourceId, UnixTime, Verifier};
    use latch_store::operations::Admin;
    use latch_store::signing::{KeyRing, RETENTION_SECS};
    use latch_store::sqlite::SqliteStore;
    use latch_store::Store;

    let t0 = UnixTime(1_800_000_000);
    let dir = tempfile::tempdir().unwrap();
    let rng = ring::rand::SystemRandom::new();
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(dir.path(), "main", &rng).unwrap());
    let clock = FixedClock::at(t0);
    let first = KeyRing::load_or_create(store.as_ref(), &rng, &clock)
        .await
        .unwrap();
    let (isv, target) = (
        ResourceId::parse(crate::harness::DEMO_ISV).unwrap(),
        ResourceId::parse(crate::harness::DEMO_CLIENT).unwrap(),
    );
    let features = FeatureSet::parse_csv("Face.Identification").unwrap();
    let grant = LimitedAccessGrant {
        issuer: "urn:latch:sts",
        isv: &isv,
        target: &target,
        features: &features,
        lifetime: Lifetime::MAX,
        region: None,
    };
    let old_token = first
        .active()
        .sign(
            TokenKind::LimitedAccess,
            &LimitedAccessClaims::new(&grant, t0, new_jti(&rng).unwrap()),
            &rng,
        )
        .unwrap();

    let admin = Admin::new(
        store.clone(),
        Arc::new(ring::rand::SystemRandom::new()),
        Arc::new(clock.clone()),
        Actor::Operator,
    );
    let new_kid = admin.rotate_signing_key().await.unwrap();
    let at = |secs: i64| {
        let store = store.clone();
        let rng = ring::rand::SystemRandom::new();
        async move {
            KeyRing::load(store.as_ref(), &rng, t0.plus(secs))
                .await
                .unwrap()
        }
    };
    let kids = |ring: &KeyRing| {
        let mut kids = ring
            .jwks()
            .keys
            .into_iter()
            .map(|k| k.kid)
            .collect::<Vec<_>>();
        kids.sort();
        kids
    };
    let verify = |ring: &KeyRing, secs: i64| {
        Verifier::new("urn:latch:sts", ring.public_keys().to_vec(), 30)
            .verify_limited_access(&old_token, t0.plus(secs))
    };

    let ring = at(0).await;
    assert_eq!(
        ring.active().kid(),
        new_kid,
        "the new key signs from now on"
    );
    let mut both = vec![first.active().kid().to_owned(), new_kid.clone()];
    both.sort();
    assert_eq!(kids(&ring), both);
    assert!(verify(&ring, 0).is_ok());
    // The old token lives 86400 s; its key stays published 86460 s.
    let ring = at(86_400 + 29).await;
    assert_eq!(kids(&ring).len(), 2);
    assert!(
        verify(&ring, 86_400 + 29).is_ok(),
        "valid within the leeway"
    );
    let ring = at(RETENTION_SECS - 1).await;
    assert_eq!(kids(&ring).len(), 2);
    let ring = at(RETENTION_SECS).await;
    assert_eq!(kids(&ring), [new_kid]);
    // Signed by a key no longer published: refused whatever the time says.
    assert_eq!(
        verify(&ring, 100).unwrap_err(),
        latch_core::verify::TokenError::UnknownKey
    );
}
