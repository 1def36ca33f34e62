//! The decision alone: every outcome, with the usage record each leaves.

use latch_core::audit::KeySlot;
use latch_core::claims::{new_jti, LimitedAccessClaims, LimitedAccessGrant, TokenKind};
use latch_core::signing::SigningKey;
use latch_core::{Lifetime, UnixTime, Verifier};
use latch_store::{AuthMode, Resource};
use ring::rand::SystemRandom;

use super::*;

const CLIENT: &str = "/subscriptions/22222222-2222-4222-8222-222222222222/resourceGroups/client/providers/Microsoft.CognitiveServices/accounts/client-face";
const OTHER: &str = "/subscriptions/33333333-3333-4333-8333-333333333333/resourceGroups/other/providers/Microsoft.CognitiveServices/accounts/other-face";
const ISV: &str = "/subscriptions/11111111-1111-4111-8111-111111111111/resourceGroups/isv/providers/Microsoft.CognitiveServices/accounts/isv-face";
const NOW: UnixTime = UnixTime(1_800_000_000);

fn features(csv: &str) -> FeatureSet {
    FeatureSet::parse_csv(csv).unwrap()
}

fn caller(approvals: &str) -> VerifiedCaller {
    VerifiedCaller::for_tests(
        Resource {
            id: ResourceId::parse(CLIENT).unwrap(),
            created_at: NOW,
            isv_enabled: false,
            isv_grants: FeatureSet::new(),
            approvals: if approvals.is_empty() {
                FeatureSet::new()
            } else {
                features(approvals)
            },
            auth_mode: AuthMode::Key,
        },
        Credential::Key(KeySlot::Key1),
    )
}

/// A verified token for `target` with `flags`.
fn token(target: &str, flags: &str) -> Box<VerifiedLimitedAccess> {
    let rng = SystemRandom::new();
    let key = SigningKey::generate(&rng).unwrap();
    let (isv, target, flags) = (
        ResourceId::parse(ISV).unwrap(),
        ResourceId::parse(target).unwrap(),
        features(flags),
    );
    let grant = LimitedAccessGrant {
        issuer: "urn:latch:test",
        isv: &isv,
        target: &target,
        features: &flags,
        lifetime: Lifetime::from_secs(3600).unwrap(),
        region: None,
    };
    let claims = LimitedAccessClaims::new(&grant, NOW, new_jti(&rng).unwrap());
    let jwt = key.sign(TokenKind::LimitedAccess, &claims, &rng).unwrap();
    let verifier = Verifier::new("urn:latch:test", vec![key.public_key()], 30);
    Box::new(verifier.verify_limited_access(&jwt, NOW).unwrap())
}

fn identify() -> Requirement {
    FeaturePolicy::default()
        .requirement(Operation::Identify)
        .clone()
}

/// A verdict as (allowed, missing features, reason).
type VerdictSummary = (bool, String, Option<&'static str>);
/// A usage record as (outcome, reason, whether it names the token).
type UsageSummary = (&'static str, Option<&'static str>, bool);

fn summary(d: Decision) -> (VerdictSummary, Option<UsageSummary>) {
    let verdict = match d.verdict {
        Verdict::Allowed(_) => (true, String::new(), None),
        Verdict::Refused { missing, reason } => (false, missing.to_short_csv(), reason),
    };
    (
        verdict,
        d.usage.map(|u| (u.outcome, u.reason, u.token.is_some())),
    )
}

#[test]
fn approvals_that_cover_the_operation_need_no_token() {
    let c = caller("Face.Identification");
    let d = decide(&c, &identify(), Findings::NoHeader);
    assert!(matches!(d.verdict, Verdict::Allowed(Grant::Approved)));
    assert!(d.usage.is_none());
    let d = decide(
        &c,
        &identify(),
        Findings::NotNeeded {
            malformed: Some("malformed_header"),
            fingerprint: "fp".into(),
        },
    );
    assert_eq!(
        summary(d),
        (
            (true, String::new(), None),
            Some(("not_needed", Some("malformed_header"), false))
        )
    );
    let d = decide(&caller(""), &Requirement::None, Findings::NoHeader);
    assert!(matches!(d.verdict, Verdict::Allowed(Grant::NotNeeded)));
}

#[test]
fn without_approval_or_token_the_missing_features_are_named_and_nothing_recorded() {
    let d = decide(
        &caller("Face.Verification"),
        &identify(),
        Findings::NoHeader,
    );
    assert_eq!(summary(d), ((false, "Identification".into(), None), None));
}

#[test]
fn unusable_headers_and_tokens_are_refused_and_recorded() {
    let d = decide(
        &caller(""),
        &identify(),
        Findings::Unusable {
            reason: "expired",
            fingerprint: "fp".into(),
        },
    );
    assert_eq!(
        summary(d),
        (
            (false, "Identification".into(), Some("expired")),
            Some(("refused", Some("expired"), false))
        )
    );
    // Never found without approvals that cover the call; refused all the same.
    let d = decide(
        &caller(""),
        &identify(),
        Findings::NotNeeded {
            malformed: None,
            fingerprint: "fp".into(),
        },
    );
    assert_eq!(
        summary(d).0,
        (false, "Identification".into(), Some("not_examined"))
    );
}

#[test]
fn a_verified_token_is_judged_by_resource_features_then_standing() {
    let c = caller("");
    let verified = |target, flags, standing| {
        summary(decide(
            &c,
            &identify(),
            Findings::Verified {
                token: token(target, flags),
                standing,
            },
        ))
    };
    assert_eq!(
        verified(CLIENT, "Face.Identification", Some(Standing::Good)),
        ((true, String::new(), None), Some(("accepted", None, true)))
    );
    assert_eq!(
        verified(OTHER, "Face.Identification", None),
        (
            (false, "Identification".into(), Some("other_resource")),
            Some(("refused", Some("other_resource"), true))
        )
    );
    assert_eq!(
        verified(CLIENT, "Face.Verification", None),
        (
            (false, "Identification".into(), Some("missing_feature")),
            Some(("refused", Some("missing_feature"), true))
        )
    );
    for (standing, reason) in [
        (Some(Standing::Revoked), "revoked"),
        (Some(Standing::IsvDisabled), "isv_disabled"),
        (None, "standing_unknown"),
    ] {
        assert_eq!(
            verified(CLIENT, "Face.Identification", standing),
            (
                (false, "Identification".into(), Some(reason)),
                Some(("refused", Some(reason), true))
            )
        );
    }
    // The approvals and the token's features together.
    let both = FeatureSet::parse_csv("Face.Identification,Face.Verification").unwrap();
    let needs_both = Requirement::All(both);
    let d = decide(
        &caller("Face.Verification"),
        &needs_both,
        Findings::Verified {
            token: token(CLIENT, "Face.Identification"),
            standing: Some(Standing::Good),
        },
    );
    assert!(matches!(d.verdict, Verdict::Allowed(Grant::Token(_))));
}
