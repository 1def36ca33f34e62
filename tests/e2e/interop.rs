//! Tokens verified by independent JOSE libraries that know only the published JWKS:
//! josekit (Rust, OpenSSL) and PyJWT (Python, `cryptography`).

use serde_json::Value;

use crate::harness::{lat_body, Server};

const LAT_AUDIENCE: &str = "urn:ms.cognitiveservices:limitedaccess";

async fn issued(s: &Server) -> String {
    let d = &s.demo;
    let a = s
        .issue(
            Some(&d.isv_key),
            "",
            &lat_body(&d.client_id, &["Face.Identification", "Face.Verification"]),
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    a.body
}

#[tokio::test]
async fn josekit_verifies_a_token_with_the_jwks_alone() {
    let s = Server::start().await;
    let token = issued(&s).await;
    let jwks: Value = s
        .request("GET", "/.well-known/jwks.json", &[], "")
        .await
        .json();
    let jwk_json = jwks["keys"][0].to_string();
    let jwk = josekit::jwk::Jwk::from_bytes(jwk_json.as_bytes()).unwrap();
    let verifier = josekit::jws::ES256.verifier_from_jwk(&jwk).unwrap();
    let (payload, header) = josekit::jwt::decode_with_verifier(&token, &verifier).unwrap();
    assert_eq!(header.token_type(), Some("lat+jwt"));
    assert_eq!(
        payload.claim("azure-resource-id").unwrap(),
        s.demo.client_id.as_str()
    );
    assert_eq!(payload.audience(), Some(vec![LAT_AUDIENCE]));

    // One changed claim, same signature: josekit refuses it too.
    let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
    let mut claims: Value =
        serde_json::from_slice(&latch_core::jws::b64url_decode(&parts[1]).unwrap()).unwrap();
    claims["featureFlags"] = serde_json::json!([
        "Face.Identification",
        "Face.Verification",
        "LimitedAccess.HighRisk"
    ]);
    parts[1] = latch_core::jws::b64url(claims.to_string());
    assert!(josekit::jwt::decode_with_verifier(parts.join("."), &verifier).is_err());
    s.finish().await;
}

fn pyjwt(
    s: &Server,
    jwks_url: &str,
    token: &str,
    issuer: &str,
    audience: &str,
    typ: &str,
) -> std::process::Output {
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/interop/verify_with_pyjwt.py"
    );
    s.python()
        .args([script, jwks_url, token, issuer, audience, typ])
        .output()
        .expect("python3 runs (pip install -r tests/requirements.txt)")
}

#[tokio::test]
async fn pyjwt_verifies_a_token_with_the_jwks_alone() {
    let s = Server::start().await;
    let token = issued(&s).await;
    let meta = s
        .request("GET", "/.well-known/oauth-authorization-server", &[], "")
        .await
        .json();
    let jwks_url = meta["jwks_uri"].as_str().unwrap().to_owned();
    let issuer = meta["issuer"].as_str().unwrap().to_owned();
    // The name the (development) certificate covers, at the STS's port.
    let port = s.url.rsplit(':').next().unwrap();
    assert_eq!(
        jwks_url,
        format!("https://localhost:{port}/.well-known/jwks.json")
    );

    let out = pyjwt(&s, &jwks_url, &token, &issuer, LAT_AUDIENCE, "lat+jwt");
    assert!(
        out.status.success(),
        "PyJWT refused a good token: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let claims: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(claims["azure-resource-id"], s.demo.client_id.as_str());
    assert_eq!(
        claims["featureFlags"],
        serde_json::json!(["Face.Identification", "Face.Verification"])
    );

    // Tampered: one signature character changed. (Not the last one: its low bits are padding,
    // which PyJWT's lenient base64 ignores and our verifier refuses.)
    let mut bad = token.clone().into_bytes();
    let i = bad.len() - 10;
    bad[i] = if bad[i] == b'A' { b'B' } else { b'A' };
    let bad = String::from_utf8(bad).unwrap();
    let out = pyjwt(&s, &jwks_url, &bad, &issuer, LAT_AUDIENCE, "lat+jwt");
    assert!(!out.status.success());
    // The padding-bits variant: PyJWT accepts it, ours does not (one encoding per token).
    let mut padded = token.clone();
    let last = padded.pop().unwrap();
    padded.push(match last {
        'A' => 'B',
        'Q' => 'R',
        'g' => 'h',
        'w' => 'x',
        other => other,
    });
    assert_ne!(padded, token);
    let verifier = latch_core::Verifier::new(issuer.clone(), Vec::new(), 0);
    assert_eq!(
        verifier
            .verify_limited_access(&padded, latch_core::UnixTime(0))
            .unwrap_err(),
        latch_core::verify::TokenError::Base64
    );

    // An issueToken token is not a limited access token, for PyJWT either.
    let a = s
        .request(
            "POST",
            "/sts/v1.0/issueToken",
            &[("Ocp-Apim-Subscription-Key", &s.demo.client_key)],
            "",
        )
        .await;
    assert_eq!(a.status, 200);
    assert!(!a.header("latch-refresh-by").is_empty());
    let out = pyjwt(&s, &jwks_url, &a.body, &issuer, LAT_AUDIENCE, "lat+jwt");
    assert!(!out.status.success());
    let out = pyjwt(
        &s,
        &jwks_url,
        &a.body,
        &issuer,
        "urn:ms.cognitiveservices",
        "at+jwt",
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    s.finish().await;
}
