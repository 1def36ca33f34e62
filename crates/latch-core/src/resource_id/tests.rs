use super::*;
use proptest::prelude::*;

const GOOD: &str = "/subscriptions/dc4d27d9-ea49-4921-938f-7782a774e151/resourceGroups/client-rg/providers/Microsoft.CognitiveServices/accounts/client-face-api";

fn with(group: &str, name: &str) -> String {
    format!(
        "/subscriptions/dc4d27d9-ea49-4921-938f-7782a774e151/resourceGroups/{group}/providers/Microsoft.CognitiveServices/accounts/{name}"
    )
}

#[test]
fn parses_the_documented_example() {
    let id = ResourceId::parse(GOOD).unwrap();
    assert_eq!(id.as_str(), GOOD);
    assert_eq!(id.to_string(), GOOD);
    assert_eq!(id.subscription_id(), "dc4d27d9-ea49-4921-938f-7782a774e151");
    assert_eq!(id.resource_group(), "client-rg");
    assert_eq!(id.account_name(), "client-face-api");
    assert_eq!(
        id.canonical(),
        "/subscriptions/dc4d27d9-ea49-4921-938f-7782a774e151/resourcegroups/client-rg/providers/microsoft.cognitiveservices/accounts/client-face-api"
    );
}

#[test]
fn compares_case_insensitively_and_keeps_spelling() {
    let upper = GOOD.to_uppercase();
    let a = ResourceId::parse(GOOD).unwrap();
    let b = ResourceId::parse(&upper).unwrap();
    assert_eq!(a, b);
    assert_eq!(b.as_str(), upper);
    assert_eq!(a.canonical(), b.canonical());
}

#[test]
fn unicode_group_names_are_allowed_and_folded() {
    let a = ResourceId::parse(&with("Grüße-(ÄÖ)_1.x", "ab")).unwrap();
    let b = ResourceId::parse(&with("grüße-(äö)_1.X", "AB")).unwrap();
    assert_eq!(a, b);
    // 90 characters, each two bytes in UTF-8.
    assert!(ResourceId::parse(&with(&"é".repeat(90), "ab")).is_ok());
}

#[test]
fn unicode_case_folding_is_per_character_and_stays_valid() {
    // A final sigma and a medial one are the same letter.
    assert_eq!(
        ResourceId::parse(&with("rgΣ", "ab")).unwrap(),
        ResourceId::parse(&with("rgσ", "ab")).unwrap()
    );
    assert_eq!(
        ResourceId::parse(&with("rgς", "ab")).unwrap().canonical(),
        ResourceId::parse(&with("rgς", "ab")).unwrap().canonical()
    );
    // 'İ' lowercases to two characters, one a combining mark: it is kept as it is.
    for name in ["İstanbul", "ǅ-dz", "ß-SS", "Ωmega"] {
        let id = ResourceId::parse(&with(name, "ab")).unwrap();
        let again = ResourceId::parse(id.canonical()).unwrap();
        assert_eq!(again.canonical(), id.canonical(), "{name}");
    }
    // Decomposed forms carry combining marks, which are not letters: refused, not confused.
    assert!(ResourceId::parse(&with("caf\u{e9}", "ab")).is_ok());
    assert_eq!(
        ResourceId::parse(&with("cafe\u{301}", "ab")).unwrap_err(),
        ResourceIdError::ResourceGroupCharacter
    );
}

#[test]
fn boundaries_of_names() {
    assert!(ResourceId::parse(&with(&"g".repeat(90), "ab")).is_ok());
    assert!(ResourceId::parse(&with("g", &"a".repeat(64))).is_ok());
    assert_eq!(
        ResourceId::parse(&with(&"g".repeat(91), "ab")).unwrap_err(),
        ResourceIdError::ResourceGroupTooLong
    );
    assert_eq!(
        ResourceId::parse(&with("g", &"a".repeat(65))).unwrap_err(),
        ResourceIdError::AccountNameLength
    );
    assert_eq!(
        ResourceId::parse(&with("g", "a")).unwrap_err(),
        ResourceIdError::AccountNameLength
    );
}

#[test]
fn every_rule_has_its_error() {
    use ResourceIdError as E;
    let cases: Vec<(String, ResourceIdError)> = vec![
        (String::new(), E::Empty),
        ("x".repeat(MAX_LEN + 1), E::TooLong),
        (GOOD.trim_start_matches('/').to_string(), E::NotAbsolute),
        (format!("{GOOD}?api-version=1"), E::QueryOrFragment),
        (format!("{GOOD}#frag"), E::QueryOrFragment),
        (format!("{GOOD}/"), E::TrailingSlash),
        (format!("{GOOD}/extra"), E::ExtraSegments),
        ("/".to_string(), E::EmptyPart(Part::SubscriptionsKeyword)),
        (
            "/subscriptions".to_string(),
            E::Missing(Part::SubscriptionId),
        ),
        (
            GOOD.replace("/accounts/client-face-api", ""),
            E::Missing(Part::AccountsKeyword),
        ),
        (
            GOOD.replace("resourceGroups/client-rg", "resourceGroups/"),
            E::EmptyPart(Part::ResourceGroup),
        ),
        (
            GOOD.replace("subscriptions", "subscription"),
            E::WrongKeyword(Part::SubscriptionsKeyword),
        ),
        (
            GOOD.replace("resourceGroups", "groups"),
            E::WrongKeyword(Part::ResourceGroupsKeyword),
        ),
        (
            GOOD.replace("providers", "provider"),
            E::WrongKeyword(Part::ProvidersKeyword),
        ),
        (
            GOOD.replace("accounts", "account"),
            E::WrongKeyword(Part::AccountsKeyword),
        ),
        (
            GOOD.replace("Microsoft.CognitiveServices", "Microsoft.Storage"),
            E::WrongNamespace,
        ),
        (
            GOOD.replace("dc4d27d9-ea49", "dc4d27d9ea49-"),
            E::SubscriptionIdNotUuid,
        ),
        (
            GOOD.replace("dc4d27d9", "dc4d27dg"),
            E::SubscriptionIdNotUuid,
        ),
        (
            GOOD.replace("dc4d27d9", "{c4d27d9"),
            E::SubscriptionIdNotUuid,
        ),
        (
            GOOD.replace("dc4d27d9-", "dc4d27d9a-"),
            E::SubscriptionIdNotUuid,
        ),
        (with("rg.", "ab"), E::ResourceGroupTrailingPeriod),
        (with("r g", "ab"), E::ResourceGroupCharacter),
        (with("r%20g", "ab"), E::ResourceGroupCharacter),
        (with("rg", "a_b"), E::AccountNameCharacter),
        (with("rg", "a.b"), E::AccountNameCharacter),
        (with("rg", "ä-b"), E::AccountNameCharacter),
        (with("rg", "-ab"), E::AccountNameEdge),
        (with("rg", "ab-"), E::AccountNameEdge),
    ];
    for (input, want) in cases {
        assert_eq!(
            ResourceId::parse(&input).unwrap_err(),
            want,
            "input {input:?}"
        );
    }
}

#[test]
fn errors_name_the_part() {
    let err = ResourceId::parse(&with("rg", "-ab")).unwrap_err();
    assert!(err.to_string().contains("account name"), "{err}");
    let err = ResourceId::parse(&GOOD.replace("dc4d27d9", "nope")).unwrap_err();
    assert!(err.to_string().contains("subscription id"), "{err}");
    let err = ResourceId::parse("/subscriptions").unwrap_err();
    assert_eq!(err.to_string(), "the subscription id is missing");
    // The first wrong part is named, even when later parts are missing too.
    let err = ResourceId::parse("/subscriptions/x").unwrap_err();
    assert_eq!(err, ResourceIdError::SubscriptionIdNotUuid);
    let err = ResourceId::parse("/subscriptions/dc4d27d9-ea49-4921-938f-7782a774e151/groups/x")
        .unwrap_err();
    assert_eq!(
        err,
        ResourceIdError::WrongKeyword(Part::ResourceGroupsKeyword)
    );
}

#[test]
fn serde_round_trip_keeps_spelling_and_refuses_bad_ids() {
    let id = ResourceId::parse(&GOOD.to_uppercase()).unwrap();
    let json = serde_json::to_string(&id).unwrap();
    let back: ResourceId = serde_json::from_str(&json).unwrap();
    assert_eq!(back.as_str(), id.as_str());
    assert!(serde_json::from_str::<ResourceId>("\"/subscriptions/x\"").is_err());
}

fn uuid() -> impl Strategy<Value = String> {
    "[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
}

fn group() -> impl Strategy<Value = String> {
    "[\\p{L}\\p{Nd}_()\\-.]{0,89}[\\p{L}\\p{Nd}_()\\-]"
}

fn account() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9]([a-zA-Z0-9-]{0,62}[a-zA-Z0-9])?".prop_filter("at least 2", |s| s.len() >= 2)
}

fn keyword_case(word: &'static str) -> impl Strategy<Value = String> {
    proptest::collection::vec(any::<bool>(), word.len()).prop_map(move |flips| {
        word.chars()
            .zip(flips)
            .map(|(c, up)| {
                if up {
                    c.to_ascii_uppercase()
                } else {
                    c.to_ascii_lowercase()
                }
            })
            .collect()
    })
}

fn valid_id() -> impl Strategy<Value = String> {
    (
        keyword_case("subscriptions"),
        uuid(),
        keyword_case("resourceGroups"),
        group(),
        keyword_case("Microsoft.CognitiveServices"),
        account(),
    )
        .prop_map(|(s, u, rg_kw, g, ns, a)| {
            format!("/{s}/{u}/{rg_kw}/{g}/providers/{ns}/accounts/{a}")
        })
}

proptest! {
    #[test]
    fn valid_ids_round_trip(s in valid_id()) {
        let id = ResourceId::parse(&s).unwrap();
        prop_assert_eq!(id.to_string(), s.clone());
        // The canonical form is itself valid and canonical.
        let again = ResourceId::parse(id.canonical()).unwrap();
        prop_assert_eq!(again.canonical(), id.canonical());
        prop_assert_eq!(&again, &id);
    }

    #[test]
    fn case_changes_do_not_change_identity(s in valid_id()) {
        let id = ResourceId::parse(&s).unwrap();
        let upper = ResourceId::parse(&s.to_ascii_uppercase()).unwrap();
        prop_assert_eq!(id, upper);
    }

    #[test]
    fn appending_anything_after_a_valid_id_is_refused(s in valid_id(), tail in "[/?#][ -~]{0,8}") {
        let joined = s + &tail;
        prop_assert!(ResourceId::parse(&joined).is_err());
    }

    #[test]
    fn arbitrary_strings_never_panic(s in "\\PC{0,300}") {
        let _ = ResourceId::parse(&s);
    }

    #[test]
    fn canonical_forms_of_any_letters_parse_again(g in "[\\p{L}\\p{N}]{1,40}") {
        let id = ResourceId::parse(&with(&g, "ab")).unwrap();
        let again = ResourceId::parse(id.canonical()).unwrap();
        prop_assert_eq!(again.canonical(), id.canonical());
    }
}

#[test]
fn fixture_tables() {
    for line in include_str!("../../../../fixtures/resource-ids/valid.txt").lines() {
        let id = ResourceId::parse(line).unwrap_or_else(|e| panic!("{line}: {e}"));
        assert_eq!(id.as_str(), line);
    }
    let mut checked = 0;
    for line in include_str!("../../../../fixtures/resource-ids/invalid.txt").lines() {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (input, part) = line.split_once('\t').expect("id<TAB>part");
        let err = ResourceId::parse(input).expect_err(input);
        assert!(
            err.to_string().contains(part),
            "{input}: '{err}' should name {part}"
        );
        checked += 1;
    }
    assert!(checked >= 15);
}
