//! One test (at least) per box of the verifier checklist in `docs/verifier-checklist.md`.

use ring::rand::SystemRandom;
use ring::signature::{EcdsaKeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use serde_json::{json, Value};

use super::*;
use crate::claims::{new_jti, LimitedAccessGrant};
use crate::feature::FeatureSet;
use crate::jws::b64url;
use crate::lifetime::Lifetime;
use crate::resource_id::ResourceId;
use crate::signing::SigningKey;

const ISSUER: &str = "urn:latch:test";
const NOW: UnixTime = UnixTime(1_800_000_000);
const ISV: &str = "/subscriptions/11111111-1111-4111-8111-111111111111/resourceGroups/isv/providers/Microsoft.CognitiveServices/accounts/isv-face";
const CLIENT: &str = "/subscriptions/22222222-2222-4222-8222-222222222222/resourceGroups/client/providers/Microsoft.CognitiveServices/accounts/client-face";

struct Fixture {
    rng: SystemRandom,
    key: SigningKey,
    verifier: Verifier,
}

fn fixture() -> Fixture {
    let rng = SystemRandom::new();
    let key = SigningKey::generate(&rng).unwrap();
    let verifier = Verifier::new(ISSUER, vec![key.public_key()], 30);
    Fixture { rng, key, verifier }
}

impl Fixture {
    fn lat_claims(&self, lifetime: u64) -> LimitedAccessClaims {
        let isv = ResourceId::parse(ISV).unwrap();
        let target = ResourceId::parse(CLIENT).unwrap();
        let features = FeatureSet::parse(["Face.Identification"]).unwrap();
        let grant = LimitedAccessGrant {
            issuer: ISSUER,
            isv: &isv,
            target: &target,
            features: &features,
            lifetime: Lifetime::from_secs(lifetime).unwrap(),
            region: None,
        };
        LimitedAccessClaims::new(&grant, NOW, new_jti(&self.rng).unwrap())
    }

    fn lat(&self) -> String {
        self.key
            .sign(TokenKind::LimitedAccess, &self.lat_claims(3600), &self.rng)
            .unwrap()
    }

    fn lat_json(&self) -> Value {
        serde_json::to_value(self.lat_claims(3600)).unwrap()
    }

    fn header(&self, typ: &str) -> Value {
        json!({"alg": "ES256", "typ": typ, "kid": self.key.kid()})
    }

    /// Signs any header and payload text with the fixture's key, bypassing `SigningKey::sign`.
    fn sign_raw(&self, header: &str, payload: &str) -> String {
        let pair = EcdsaKeyPair::from_pkcs8(
            &ECDSA_P256_SHA256_FIXED_SIGNING,
            self.key.pkcs8(),
            &self.rng,
        )
        .unwrap();
        let input = format!("{}.{}", b64url(header), b64url(payload));
        let sig = pair.sign(&self.rng, input.as_bytes()).unwrap();
        format!("{input}.{}", b64url(sig.as_ref()))
    }

    fn sign_json(&self, header: &Value, payload: &Value) -> String {
        self.sign_raw(&header.to_string(), &payload.to_string())
    }

    fn lat_with(&self, edit: impl FnOnce(&mut serde_json::Map<String, Value>)) -> String {
        let mut claims = self.lat_json();
        edit(claims.as_object_mut().unwrap());
        self.sign_json(&self.header("lat+jwt"), &claims)
    }

    fn check(&self, token: &str) -> Result<VerifiedLimitedAccess, TokenError> {
        self.verifier.verify_limited_access(token, NOW)
    }
}

fn replace_segment(token: &str, index: usize, with: &str) -> String {
    let mut parts: Vec<&str> = token.split('.').collect();
    parts[index] = with;
    parts.join(".")
}

#[test]
fn a_good_token_verifies_and_carries_its_claims() {
    let f = fixture();
    let t = f.lat();
    let v = f.check(&t).unwrap();
    assert_eq!(
        v.claims().azure_resource_id,
        ResourceId::parse(CLIENT).unwrap()
    );
    assert_eq!(v.claims().isv_resource_id.as_str(), ISV);
    assert_eq!(v.claims().feature_flags.to_csv(), "Face.Identification");
    assert_eq!(v.claims().exp, NOW.plus(3600));
    assert_eq!(v.kid(), f.key.kid());
    assert_eq!(v.fingerprint(), fingerprint(&t));
    assert!(!v.fingerprint().is_empty() && !t.contains(v.fingerprint()));
}

// --- Parsing ---

#[test]
fn compact_serialization_only() {
    let f = fixture();
    let t = f.lat();
    assert_eq!(
        f.check(&format!("{t}.AAAA.AAAA")),
        Err(TokenError::Malformed),
        "five segments (JWE shape)"
    );
    assert_eq!(
        f.check(&format!("{t}=")),
        Err(TokenError::Malformed),
        "padding"
    );
    assert_eq!(
        f.check(&format!(" {t}")),
        Err(TokenError::Malformed),
        "whitespace"
    );
    assert_eq!(
        f.check(&t.replacen('.', ".\r\n", 1)),
        Err(TokenError::Malformed),
        "line break"
    );
    assert_eq!(
        f.check(&format!("{{\"payload\":\"{t}\"}}")),
        Err(TokenError::Malformed),
        "JSON serialization"
    );
    let header_only = t.split('.').next().unwrap();
    assert_eq!(
        f.check(&format!("{header_only}..")),
        Err(TokenError::Malformed),
        "empty payload and signature (unsecured)"
    );
}

#[test]
fn header_and_claims_must_be_utf8_json_objects() {
    let f = fixture();
    let t = f.sign_raw(&f.header("lat+jwt").to_string(), "[1,2]");
    assert_eq!(f.check(&t), Err(TokenError::Json));
    // A raw 0xff byte inside a string: not UTF-8.
    let pair =
        EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, f.key.pkcs8(), &f.rng).unwrap();
    let mut payload = f.lat_json().to_string().into_bytes();
    let at = payload.iter().position(|&b| b == b'u').unwrap();
    payload[at] = 0xff;
    let input = format!(
        "{}.{}",
        b64url(f.header("lat+jwt").to_string()),
        b64url(&payload)
    );
    let sig = pair.sign(&f.rng, input.as_bytes()).unwrap();
    assert_eq!(
        f.check(&format!("{input}.{}", b64url(sig.as_ref()))),
        Err(TokenError::Json)
    );
    let bad_header = replace_segment(&f.lat(), 0, &b64url([0x7b, 0xff, 0x7d]));
    assert_eq!(f.check(&bad_header), Err(TokenError::Json));
}

#[test]
fn duplicate_member_names_are_refused() {
    let f = fixture();
    let header = format!(
        r#"{{"alg":"ES256","typ":"lat+jwt","kid":"{}","typ":"lat+jwt"}}"#,
        f.key.kid()
    );
    let t = f.sign_raw(&header, &f.lat_json().to_string());
    assert_eq!(f.check(&t), Err(TokenError::DuplicateMember));
    let claims = f.lat_json().to_string();
    let doubled = claims.replacen('{', r#"{"exp":9999999999,"#, 1);
    let t = f.sign_raw(&f.header("lat+jwt").to_string(), &doubled);
    assert_eq!(f.check(&t), Err(TokenError::DuplicateMember));
}

#[test]
fn crit_and_unknown_header_parameters_are_refused() {
    let f = fixture();
    let mut h = f.header("lat+jwt");
    h["crit"] = json!(["exp"]);
    assert_eq!(
        f.check(&f.sign_json(&h, &f.lat_json())),
        Err(TokenError::HeaderParameterRefused)
    );
    let mut h = f.header("lat+jwt");
    h["x-custom"] = json!("1");
    assert_eq!(
        f.check(&f.sign_json(&h, &f.lat_json())),
        Err(TokenError::HeaderParameterUnknown)
    );
}

#[test]
fn a_jwe_is_never_taken_for_a_jws() {
    let f = fixture();
    let jwe = format!(
        "{}.AAAA.AAAA.AAAA.AAAA",
        b64url(r#"{"alg":"RSA-OAEP","enc":"A256GCM"}"#)
    );
    assert_eq!(f.check(&jwe), Err(TokenError::Malformed));
    let mut h = f.header("lat+jwt");
    h["enc"] = json!("A256GCM");
    assert_eq!(
        f.check(&f.sign_json(&h, &f.lat_json())),
        Err(TokenError::HeaderParameterRefused)
    );
}

#[test]
fn size_limits() {
    let f = fixture();
    let t = f.lat_with(|c| {
        c.insert("pad".into(), json!("x".repeat(4000)));
    });
    assert_eq!(f.check(&t), Err(TokenError::TooLarge));
    let mut h = f.header("lat+jwt");
    h["kid"] = json!("k".repeat(129));
    assert_eq!(
        f.check(&f.sign_json(&h, &f.lat_json())),
        Err(TokenError::Json)
    );
}

// --- Algorithm and key ---

#[test]
fn only_es256_is_allowed_compared_exactly() {
    let f = fixture();
    for alg in [
        "none", "None", "NONE", "noNE", "es256", "ES256 ", "ES384", "RS256", "HS256", "EdDSA",
    ] {
        let mut h = f.header("lat+jwt");
        h["alg"] = json!(alg);
        assert_eq!(
            f.check(&f.sign_json(&h, &f.lat_json())),
            Err(TokenError::AlgorithmNotAllowed),
            "{alg}"
        );
    }
}

#[test]
fn alg_none_unsigned_token_is_refused() {
    let f = fixture();
    let mut h = f.header("lat+jwt");
    h["alg"] = json!("none");
    let unsigned = format!(
        "{}.{}.",
        b64url(h.to_string()),
        b64url(f.lat_json().to_string())
    );
    assert_eq!(f.check(&unsigned), Err(TokenError::Malformed));
    let with_junk = format!("{unsigned}AAAA");
    assert_eq!(f.check(&with_junk), Err(TokenError::AlgorithmNotAllowed));
}

#[test]
fn hs256_key_confusion_is_refused() {
    // The classic attack: HMAC-sign with the public key as the secret.
    let f = fixture();
    let mut h = f.header("lat+jwt");
    h["alg"] = json!("HS256");
    let input = format!(
        "{}.{}",
        b64url(h.to_string()),
        b64url(f.lat_json().to_string())
    );
    let mac_key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, f.key.public_key().point());
    let tag = ring::hmac::sign(&mac_key, input.as_bytes());
    let forged = format!("{input}.{}", b64url(tag.as_ref()));
    assert_eq!(f.check(&forged), Err(TokenError::AlgorithmNotAllowed));
}

#[test]
fn keys_come_only_from_the_configured_set() {
    let f = fixture();
    let attacker = SigningKey::generate(&f.rng).unwrap();
    // Signed by an unknown key, with its kid.
    let t = attacker
        .sign(TokenKind::LimitedAccess, &f.lat_claims(3600), &f.rng)
        .unwrap();
    assert_eq!(f.check(&t), Err(TokenError::UnknownKey));
    // Signed by an unknown key, claiming our kid.
    let header = f.header("lat+jwt").to_string();
    let input = format!("{}.{}", b64url(&header), b64url(f.lat_json().to_string()));
    let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, attacker.pkcs8(), &f.rng)
        .unwrap();
    let sig = pair.sign(&f.rng, input.as_bytes()).unwrap();
    assert_eq!(
        f.check(&format!("{input}.{}", b64url(sig.as_ref()))),
        Err(TokenError::BadSignature)
    );
    // jku / jwk / x5u / x5c pointing at the attacker's key.
    for (name, value) in [
        (
            "jwk",
            serde_json::to_value(attacker.public_key().to_jwk()).unwrap(),
        ),
        ("jku", json!("https://attacker.example/jwks")),
        ("x5u", json!("https://attacker.example/cert")),
        ("x5c", json!(["MIIB"])),
    ] {
        let mut h = json!({"alg": "ES256", "typ": "lat+jwt", "kid": attacker.kid()});
        h[name] = value;
        let pair_input = format!(
            "{}.{}",
            b64url(h.to_string()),
            b64url(f.lat_json().to_string())
        );
        let sig = pair.sign(&f.rng, pair_input.as_bytes()).unwrap();
        let t = format!("{pair_input}.{}", b64url(sig.as_ref()));
        assert_eq!(
            f.check(&t),
            Err(TokenError::HeaderParameterRefused),
            "{name}"
        );
    }
}

#[test]
fn kid_is_untrusted_input() {
    let f = fixture();
    for kid in ["../../etc/passwd", "' OR 1=1 --", "", "\u{0}"] {
        let mut h = f.header("lat+jwt");
        h["kid"] = json!(kid);
        let r = f.check(&f.sign_json(&h, &f.lat_json()));
        assert!(
            matches!(r, Err(TokenError::UnknownKey) | Err(TokenError::Json)),
            "{kid:?}: {r:?}"
        );
    }
}

#[test]
fn keys_are_bound_to_their_issuer() {
    let f = fixture();
    let t = f.lat_with(|c| {
        c.insert("iss".into(), json!("urn:someone-else"));
    });
    assert_eq!(f.check(&t), Err(TokenError::WrongIssuer));
    // A verifier for another issuer that (wrongly) holds our key still refuses our tokens.
    let other = Verifier::new("urn:someone-else", vec![f.key.public_key()], 30);
    assert_eq!(
        other.verify_limited_access(&f.lat(), NOW).unwrap_err(),
        TokenError::WrongIssuer
    );
}

#[test]
fn es256_signatures_are_exactly_64_bytes() {
    let f = fixture();
    let t = f.lat();
    let sig = jws::b64url_decode(t.rsplit('.').next().unwrap()).unwrap();
    // DER form, as some libraries emit: 0x30 len 0x02 32 r 0x02 32 s.
    let mut der = vec![0x30, 68, 0x02, 32];
    der.extend_from_slice(&sig[..32]);
    der.extend_from_slice(&[0x02, 32]);
    der.extend_from_slice(&sig[32..]);
    assert_eq!(
        f.check(&replace_segment(&t, 2, &b64url(&der))),
        Err(TokenError::SignatureLength)
    );
    assert_eq!(
        f.check(&replace_segment(&t, 2, &b64url(&sig[..63]))),
        Err(TokenError::SignatureLength)
    );
    let mut long = sig.clone();
    long.push(0);
    assert_eq!(
        f.check(&replace_segment(&t, 2, &b64url(&long))),
        Err(TokenError::SignatureLength)
    );
}

#[test]
fn psychic_signature_r_or_s_zero_is_refused() {
    let f = fixture();
    let t = f.lat();
    let sig = jws::b64url_decode(t.rsplit('.').next().unwrap()).unwrap();
    assert_eq!(
        f.check(&replace_segment(&t, 2, &b64url([0u8; 64]))),
        Err(TokenError::SignatureZero)
    );
    let mut r_zero = sig.clone();
    r_zero[..32].fill(0);
    assert_eq!(
        f.check(&replace_segment(&t, 2, &b64url(&r_zero))),
        Err(TokenError::SignatureZero)
    );
    let mut s_zero = sig.clone();
    s_zero[32..].fill(0);
    assert_eq!(
        f.check(&replace_segment(&t, 2, &b64url(&s_zero))),
        Err(TokenError::SignatureZero)
    );
}

#[test]
fn r_or_s_at_or_above_the_group_order_is_refused() {
    // n of P-256.
    const N: [u8; 32] = [
        0xff, 0xff, 0xff, 0xff, 0x00, 0x00, 0x00, 0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
        0xff, 0xbc, 0xe6, 0xfa, 0xad, 0xa7, 0x17, 0x9e, 0x84, 0xf3, 0xb9, 0xca, 0xc2, 0xfc, 0x63,
        0x25, 0x51,
    ];
    let f = fixture();
    let t = f.lat();
    let sig = jws::b64url_decode(t.rsplit('.').next().unwrap()).unwrap();
    for (at, value) in [(0usize, N), (32, N), (0, [0xff; 32]), (32, [0xff; 32])] {
        let mut s = sig.clone();
        s[at..at + 32].copy_from_slice(&value);
        assert_eq!(
            f.check(&replace_segment(&t, 2, &b64url(&s))),
            Err(TokenError::BadSignature)
        );
    }
}

#[test]
fn signatures_are_hedged_and_each_verifies() {
    let f = fixture();
    let claims = f.lat_claims(3600);
    let a = f
        .key
        .sign(TokenKind::LimitedAccess, &claims, &f.rng)
        .unwrap();
    let b = f
        .key
        .sign(TokenKind::LimitedAccess, &claims, &f.rng)
        .unwrap();
    assert_ne!(a, b, "fresh randomness goes into each nonce");
    assert!(f.check(&a).is_ok() && f.check(&b).is_ok());
}

#[test]
fn any_altered_byte_fails_the_whole_token() {
    let f = fixture();
    let t = f.lat();
    let claims = f.lat_json();
    // Change a claim and keep the signature.
    let mut more = claims.clone();
    more["featureFlags"] = json!(["Face.Identification", "Face.Verification"]);
    let altered = replace_segment(&t, 1, &b64url(more.to_string()));
    assert_eq!(f.check(&altered), Err(TokenError::BadSignature));
    // Flip one bit of the signature.
    let mut sig = jws::b64url_decode(t.rsplit('.').next().unwrap()).unwrap();
    sig[10] ^= 1;
    assert_eq!(
        f.check(&replace_segment(&t, 2, &b64url(&sig))),
        Err(TokenError::BadSignature)
    );
}

// --- Claims ---

#[test]
fn exp_is_required_and_a_number() {
    let f = fixture();
    let t = f.lat_with(|c| {
        c.remove("exp");
    });
    assert_eq!(f.check(&t), Err(TokenError::Claims));
    let exp = NOW.plus(3600).0;
    for bad in [
        json!(exp.to_string()),
        json!(exp as f64 + 0.5),
        json!(null),
        json!([exp]),
    ] {
        let t = f.lat_with(|c| {
            c.insert("exp".into(), bad.clone());
        });
        assert_eq!(f.check(&t), Err(TokenError::Claims), "{bad}");
    }
}

#[test]
fn exp_boundary_with_leeway() {
    let f = fixture();
    let t = f.lat();
    let exp = NOW.plus(3600);
    assert!(f.verifier.verify_limited_access(&t, exp.plus(29)).is_ok());
    assert_eq!(
        f.verifier
            .verify_limited_access(&t, exp.plus(30))
            .unwrap_err(),
        TokenError::Expired
    );
    let strict = Verifier::new(ISSUER, vec![f.key.public_key()], 0);
    assert!(strict.verify_limited_access(&t, exp.plus(-1)).is_ok());
    assert_eq!(
        strict.verify_limited_access(&t, exp).unwrap_err(),
        TokenError::Expired
    );
}

#[test]
fn nbf_boundary_with_leeway() {
    let f = fixture();
    let t = f.lat_with(|c| {
        c.insert("nbf".into(), json!(NOW.plus(100).0));
        c.insert("iat".into(), json!(NOW.plus(100).0));
    });
    assert!(f.verifier.verify_limited_access(&t, NOW.plus(70)).is_ok());
    assert_eq!(
        f.verifier
            .verify_limited_access(&t, NOW.plus(69))
            .unwrap_err(),
        TokenError::NotYetValid
    );
    let t = f.lat_with(|c| {
        c.remove("nbf");
    });
    assert_eq!(f.check(&t), Err(TokenError::Claims));
}

#[test]
fn iat_far_in_the_future_is_refused() {
    let f = fixture();
    let t = f.lat_with(|c| {
        c.insert("iat".into(), json!(NOW.plus(31).0));
    });
    assert_eq!(f.check(&t), Err(TokenError::IssuedInFuture));
    let t = f.lat_with(|c| {
        c.insert("iat".into(), json!(NOW.plus(30).0));
    });
    assert!(f.check(&t).is_ok());
}

#[test]
fn aud_is_required_and_exact() {
    let f = fixture();
    let t = f.lat_with(|c| {
        c.remove("aud");
    });
    assert_eq!(f.check(&t), Err(TokenError::Claims));
    for aud in [
        json!("urn:ms.cognitiveservices"),
        json!("URN:MS.COGNITIVESERVICES:LIMITEDACCESS"),
        json!(""),
    ] {
        let t = f.lat_with(|c| {
            c.insert("aud".into(), aud.clone());
        });
        assert_eq!(f.check(&t), Err(TokenError::WrongAudience), "{aud}");
    }
    let t = f.lat_with(|c| {
        c.insert("aud".into(), json!([crate::claims::LAT_AUDIENCE, "other"]));
    });
    assert_eq!(f.check(&t), Err(TokenError::Claims));
}

#[test]
fn iss_is_exact_and_sub_must_name_the_resource() {
    let f = fixture();
    let t = f.lat_with(|c| {
        c.insert("iss".into(), json!(format!("{ISSUER} ")));
    });
    assert_eq!(f.check(&t), Err(TokenError::WrongIssuer));
    let t = f.lat_with(|c| {
        c.insert("sub".into(), json!(ISV));
    });
    assert_eq!(f.check(&t), Err(TokenError::Claims));
    let t = f.lat_with(|c| {
        c.insert("azure-resource-id".into(), json!("/subscriptions/x"));
    });
    assert_eq!(f.check(&t), Err(TokenError::Claims));
}

#[test]
fn typ_is_required_and_kinds_are_mutually_exclusive() {
    let f = fixture();
    let h = json!({"alg": "ES256", "kid": f.key.kid()});
    assert_eq!(
        f.check(&f.sign_json(&h, &f.lat_json())),
        Err(TokenError::HeaderIncomplete)
    );
    for typ in ["JWT", "at+jwt", "LAT+JWT", "lat+jwt "] {
        assert_eq!(
            f.check(&f.sign_json(&f.header(typ), &f.lat_json())),
            Err(TokenError::WrongType),
            "{typ}"
        );
    }
    // An access token is not a limited access token, and the other way round.
    let resource = ResourceId::parse(CLIENT).unwrap();
    let access = AccessClaims::new(ISSUER, &resource, None, NOW, new_jti(&f.rng).unwrap());
    let at = f.key.sign(TokenKind::Access, &access, &f.rng).unwrap();
    assert!(f.verifier.verify_access(&at, NOW).is_ok());
    assert_eq!(f.check(&at), Err(TokenError::WrongType));
    assert_eq!(
        f.verifier.verify_access(&f.lat(), NOW).unwrap_err(),
        TokenError::WrongType
    );
    // A limited access token's claims, within an access token's lifetime, signed with the
    // access token's typ: the audience still tells them apart.
    let claims = serde_json::to_value(f.lat_claims(600)).unwrap();
    let forged = f.sign_json(&f.header("at+jwt"), &claims);
    assert_eq!(
        f.verifier.verify_access(&forged, NOW).unwrap_err(),
        TokenError::WrongAudience
    );
}

#[test]
fn jti_is_required_and_unique() {
    let f = fixture();
    let t = f.lat_with(|c| {
        c.remove("jti");
    });
    assert_eq!(f.check(&t), Err(TokenError::Claims));
    let t = f.lat_with(|c| {
        c.insert("jti".into(), json!(""));
    });
    assert_eq!(f.check(&t), Err(TokenError::Claims));
    let a = f.check(&f.lat()).unwrap();
    let b = f.check(&f.lat()).unwrap();
    assert_ne!(a.claims().jti, b.claims().jti);
}

#[test]
fn lifetimes_beyond_the_kind_are_refused() {
    let f = fixture();
    assert!(f
        .check(
            &f.key
                .sign(TokenKind::LimitedAccess, &f.lat_claims(86400), &f.rng)
                .unwrap()
        )
        .is_ok());
    let t = f.lat_with(|c| {
        c.insert("exp".into(), json!(NOW.plus(86401).0));
    });
    assert_eq!(f.check(&t), Err(TokenError::LifetimeTooLong));
    let resource = ResourceId::parse(CLIENT).unwrap();
    let mut access =
        serde_json::to_value(AccessClaims::new(ISSUER, &resource, None, NOW, "j".into())).unwrap();
    access["exp"] = json!(NOW.plus(601).0);
    let t = f.sign_json(&f.header("at+jwt"), &access);
    assert_eq!(
        f.verifier.verify_access(&t, NOW).unwrap_err(),
        TokenError::LifetimeTooLong
    );
}

#[test]
fn empty_feature_list_is_refused() {
    let f = fixture();
    let t = f.lat_with(|c| {
        c.insert("featureFlags".into(), json!([]));
    });
    assert_eq!(f.check(&t), Err(TokenError::Claims));
    let t = f.lat_with(|c| {
        c.insert("featureFlags".into(), json!(["Face.Everything"]));
    });
    assert_eq!(f.check(&t), Err(TokenError::Claims));
}

#[test]
fn reasons_are_stable_and_distinct() {
    let all = [
        TokenError::TooLarge,
        TokenError::Malformed,
        TokenError::Base64,
        TokenError::Json,
        TokenError::DuplicateMember,
        TokenError::HeaderParameterRefused,
        TokenError::HeaderParameterUnknown,
        TokenError::HeaderIncomplete,
        TokenError::AlgorithmNotAllowed,
        TokenError::WrongType,
        TokenError::UnknownKey,
        TokenError::SignatureLength,
        TokenError::SignatureZero,
        TokenError::BadSignature,
        TokenError::Claims,
        TokenError::WrongIssuer,
        TokenError::WrongAudience,
        TokenError::Expired,
        TokenError::NotYetValid,
        TokenError::IssuedInFuture,
        TokenError::LifetimeTooLong,
    ];
    let reasons: std::collections::BTreeSet<_> = all.iter().map(|e| e.reason()).collect();
    assert_eq!(reasons.len(), all.len());
}

mod properties {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn mutating_any_byte_of_a_good_token_refuses_it(index in any::<prop::sample::Index>(), byte in any::<u8>()) {
            let f = fixture();
            let t = f.lat();
            let i = index.index(t.len());
            prop_assume!(t.as_bytes()[i] != byte);
            let mut bytes = t.clone().into_bytes();
            bytes[i] = byte;
            if let Ok(s) = String::from_utf8(bytes) {
                prop_assert!(f.check(&s).is_err());
            }
        }

        #[test]
        fn arbitrary_input_never_panics(s in "\\PC{0,600}") {
            let f = fixture();
            prop_assert!(f.check(&s).is_err());
            prop_assert!(f.verifier.verify_access(&s, NOW).is_err());
        }
    }
}

#[test]
fn a_remembered_token_is_checked_again_at_every_instant() {
    let f = fixture();
    let token = f.lat();
    let first = f.verifier.verify_limited_access(&token, NOW).unwrap();
    // The same text again: the answer is the same, and expiry is judged at the new instant,
    // to the second (3600 s lifetime, 30 s leeway).
    let again = f
        .verifier
        .verify_limited_access(&token, NOW.plus(3600 + 29))
        .unwrap();
    assert_eq!(again, first);
    assert_eq!(
        f.verifier
            .verify_limited_access(&token, NOW.plus(3600 + 30))
            .unwrap_err(),
        TokenError::Expired
    );
    assert_eq!(
        f.verifier
            .verify_limited_access(&token, NOW.plus(-31))
            .unwrap_err(),
        TokenError::NotYetValid
    );
    // Another signature over the same claims is other text: verified afresh, and refused.
    let mut altered = token.clone();
    let last = altered.pop().unwrap();
    altered.push(if last == 'A' { 'B' } else { 'A' });
    assert!(f.verifier.verify_limited_access(&altered, NOW).is_err());
    // A verifier with another key set remembers nothing: the key is gone, so is the token.
    let without = Verifier::new(ISSUER, vec![], 30);
    assert_eq!(
        without.verify_limited_access(&token, NOW).unwrap_err(),
        TokenError::UnknownKey
    );
}
