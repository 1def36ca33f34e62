use proptest::prelude::*;
use serde_json::json;

use super::*;

const F1: &str = "c5c24a82-6845-4031-9d5d-978df9175426";
const F2: &str = "015839fb-fbd9-4f79-ace9-7675fc2f1dd9";

fn msg<T: std::fmt::Debug>(r: Result<T, FaceError>) -> String {
    match r {
        Err(FaceError::BadArgument(m)) => m,
        other => panic!("{other:?}"),
    }
}

fn id(s: &str) -> FaceId {
    FaceId::parse(s).unwrap()
}

#[test]
fn identify_limits() {
    let ok = |v: Value| IdentifyRequest::parse(v.to_string().as_bytes());
    assert!(ok(json!({"faceIds": [F1], "largePersonGroupId": "g"})).is_ok());
    assert!(ok(json!({"FACEIDS": [F1, F2], "LargePersonGroupId": "g", "maxNumOfCandidatesReturned": 100, "confidenceThreshold": 1})).is_ok());
    assert!(msg(ok(json!({"faceIds": [], "largePersonGroupId": "g"}))).contains("1 to 10"));
    assert!(msg(ok(
        json!({"faceIds": vec![F1; 11], "largePersonGroupId": "g"})
    ))
    .contains("1 to 10"));
    assert!(
        msg(ok(json!({"faceIds": ["nope"], "largePersonGroupId": "g"})))
            .contains("Face ID is invalid")
    );
    assert!(msg(ok(json!({"faceIds": [F1]}))).contains("one of"));
    assert!(
        msg(ok(json!({"faceIds": [F1], "largePersonGroupId": "G!"})))
            .contains("Large person group ID")
    );
    for (n, v) in [
        ("maxNumOfCandidatesReturned", json!(0)),
        ("maxNumOfCandidatesReturned", json!(101)),
        ("maxNumOfCandidatesReturned", json!("5")),
    ] {
        assert!(msg(ok(
            json!({"faceIds": [F1], "largePersonGroupId": "g", n: v})
        ))
        .contains(n));
    }
    for v in [json!(-0.1), json!(1.01), json!("0.5")] {
        assert!(msg(ok(
            json!({"faceIds": [F1], "largePersonGroupId": "g", "confidenceThreshold": v})
        ))
        .contains("confidenceThreshold"));
    }
    assert_eq!(
        msg(IdentifyRequest::parse(b"{not json")),
        "JSON parsing error."
    );
    assert_eq!(
        msg(IdentifyRequest::parse(b"[]")),
        "Request body is invalid."
    );
    assert_eq!(msg(IdentifyRequest::parse(b"")), "Request body is invalid.");
    assert_eq!(
        msg(IdentifyRequest::parse(b" \n\t")),
        "Request body is invalid."
    );
}

#[test]
fn identify_reads_what_it_checked() {
    let r = IdentifyRequest::parse(
        json!({"faceIds": [F1.to_ascii_uppercase(), F2], "largePersonGroupId": "g", "maxNumOfCandidatesReturned": 3, "confidenceThreshold": 0.25})
            .to_string()
            .as_bytes(),
    )
    .unwrap();
    assert_eq!(r.face_ids, vec![id(F1), id(F2)]);
    assert_eq!(r.large_person_group, Some(GroupId::parse("g").unwrap()));
    assert!(!r.names_other_group_kind);
    assert_eq!(r.max_candidates, Some(3));
    assert_eq!(r.confidence_threshold, Some(0.25));
    let r = IdentifyRequest::parse(
        json!({"faceIds": [F1], "personGroupId": "g", "maxNumOfCandidatesReturned": null})
            .to_string()
            .as_bytes(),
    )
    .unwrap();
    assert_eq!(r.large_person_group, None);
    assert!(r.names_other_group_kind);
    assert_eq!((r.max_candidates, r.confidence_threshold), (None, None));
    // A list where an id goes passes the check, and names no group.
    let r = IdentifyRequest::parse(
        json!({"faceIds": [F1], "largePersonGroupId": ["g"]})
            .to_string()
            .as_bytes(),
    )
    .unwrap();
    assert_eq!(r.large_person_group, None);
    assert!(msg(IdentifyRequest::parse(
        json!({"faceIds": [F1], "largePersonGroupId": "g", "personGroupId": "h"})
            .to_string()
            .as_bytes()
    ))
    .contains("give only one of"));
    assert_eq!(
        msg(IdentifyRequest::parse(
            json!({"faceIds": [F1], "largePersonGroupId": 7})
                .to_string()
                .as_bytes()
        )),
        "Request body is invalid."
    );
    assert_eq!(
        msg(IdentifyRequest::parse(
            json!({"faceIds": "x", "largePersonGroupId": "g"})
                .to_string()
                .as_bytes()
        )),
        "Request body is invalid: faceIds is required."
    );
}

#[test]
fn ambiguous_inputs_are_refused() {
    assert!(msg(IdentifyRequest::parse(
        format!(r#"{{"faceIds":["{F1}"],"FACEIDS":[],"largePersonGroupId":"g"}}"#).as_bytes()
    ))
    .contains("twice"));
}

#[test]
fn verify_shapes() {
    let parse = |v: Value| VerifyRequest::parse(v.to_string().as_bytes());
    assert_eq!(
        parse(json!({"faceId1": F1, "faceId2": F2})).unwrap(),
        VerifyRequest {
            target: VerifyTarget::Faces(id(F1), id(F2)),
            names_other_group_kind: false
        }
    );
    let r = parse(
        json!({"faceId": F1, "personId": F2.to_ascii_uppercase(), "largePersonGroupId": "g"}),
    )
    .unwrap();
    assert_eq!(
        r.target,
        VerifyTarget::Person {
            face: id(F1),
            person: PersonId::parse(F2).unwrap(),
            large_person_group: Some(GroupId::parse("g").unwrap()),
        }
    );
    assert!(
        parse(json!({"faceId1": F1, "faceId2": F2, "dynamicPersonGroupId": "d"}))
            .unwrap()
            .names_other_group_kind
    );
    assert!(parse(json!({"faceId1": F1})).is_err());
    assert!(parse(json!({"faceId2": F2})).is_err());
    assert!(parse(json!({"faceId1": null, "faceId2": F2})).is_err());
    assert!(parse(json!({"faceId": F1, "personId": F2})).is_err());
    assert_eq!(
        msg(parse(
            json!({"faceId": F1, "personId": "p", "largePersonGroupId": "g"})
        )),
        "Face ID is invalid: 'personId' must be a face ID (a UUID)."
    );
    assert!(msg(parse(
        json!({"faceId": F1, "personId": F2, "largePersonGroupId": "g", "personGroupId": "h"})
    ))
    .contains("give only one of personGroupId, largePersonGroupId"));
    assert_eq!(msg(parse(json!(7))), "Request body is invalid.");
}

#[test]
fn find_similar_and_named() {
    let parse = |v: Value| FindSimilarRequest::parse(v.to_string().as_bytes());
    let r = parse(json!({"faceId": F1, "largeFaceListId": "l"})).unwrap();
    assert!(r.names_large_face_list && !r.names_face_list && r.face_ids.is_empty());
    let r = parse(json!({"faceId": F1, "faceIds": [F2], "mode": "matchFace", "maxNumOfCandidatesReturned": 1000}))
        .unwrap();
    assert_eq!(r.face_ids, vec![id(F2)]);
    assert_eq!(
        (r.mode.as_deref(), r.max_candidates),
        (Some("matchFace"), Some(1000))
    );
    assert_eq!(
        parse(json!({"faceId": F1, "faceIds": [], "mode": 3}))
            .unwrap()
            .mode,
        None
    );
    assert!(parse(json!({"faceId": F1})).is_err());
    assert!(parse(json!({"faceId": F1, "faceListId": "a", "largeFaceListId": "b"})).is_err());
    assert!(parse(json!({"faceId": F1, "faceListId": null})).is_err());
    assert!(msg(parse(json!({"faceId": F1, "faceListId": "A"}))).contains("Large person group ID"));
    assert!(msg(parse(json!({"faceId": F1, "faceIds": vec![F2; 1001]}))).contains("at most 1000"));
    assert!(msg(parse(
        json!({"faceId": F1, "faceIds": [F2], "maxNumOfCandidatesReturned": 1001})
    ))
    .contains("1 and 1000"));
    assert!(msg(parse(json!({"faceIds": [F2]}))).contains("'faceId'"));

    assert_eq!(
        NamedRequest::parse(br#"{"name":"group","recognitionModel":"recognition_04"}"#).unwrap(),
        NamedRequest {
            name: "group".into(),
            user_data: None,
            recognition_model: Some("recognition_04".into())
        }
    );
    assert_eq!(
        NamedRequest::parse(br#"{"NAME":"n","userData":"u","recognitionModel":4}"#).unwrap(),
        NamedRequest {
            name: "n".into(),
            user_data: Some("u".into()),
            recognition_model: None
        }
    );
    assert!(NamedRequest::parse(br#"{"name":""}"#).is_err());
    assert!(NamedRequest::parse(br#"{"name":7}"#).is_err());
    assert!(
        NamedRequest::parse(format!(r#"{{"name":"{}"}}"#, "é".repeat(129)).as_bytes()).is_err()
    );
    assert!(NamedRequest::parse(format!(r#"{{"name":"{}"}}"#, "é".repeat(128)).as_bytes()).is_ok());
    assert!(NamedRequest::parse(br#"{"name":"n","userData":1}"#).is_err());
    assert!(NamedRequest::parse(
        json!({"name": "n", "userData": "x".repeat(16 * 1024 + 1)})
            .to_string()
            .as_bytes()
    )
    .is_err());
}

#[test]
fn image_urls() {
    assert_eq!(
        UrlRequest::parse(br#"{"URL":"https://x/a.jpg"}"#)
            .unwrap()
            .url,
        "https://x/a.jpg"
    );
    for bad in [&b"{}"[..], b"{\"url\":1}", b"[]", b"", b"{"] {
        assert!(UrlRequest::parse(bad).is_err());
    }
}

/// Parsers never panic, whatever the bytes: every single-byte mangling and every prefix of a
/// body that touches all of them. (The JSON parser under them is fuzzed in `latch-fuzz` and
/// property-tested in `latch-core`.)
#[test]
fn parsers_never_panic_on_mangled_bodies() {
    let base = json!({"faceIds": [F1], "largePersonGroupId": "g", "faceId1": F1, "faceId2": F2, "faceId": F1, "personId": F2, "name": "n", "largeFaceListId": "l"}).to_string();
    let bytes = base.as_bytes();
    for i in 0..bytes.len() {
        for b in [b'"', b'{', b'}', b'[', b'0', 0xff, b'\\', b'-'] {
            let mut m = bytes.to_vec();
            m[i] = b;
            parse_all(&m);
        }
        parse_all(&bytes[..i]);
    }
}

fn parse_all(bytes: &[u8]) {
    let _ = (
        IdentifyRequest::parse(bytes),
        VerifyRequest::parse(bytes),
        FindSimilarRequest::parse(bytes),
        NamedRequest::parse(bytes),
        UrlRequest::parse(bytes),
    );
}

proptest! {
    #[test]
    fn arbitrary_bytes_are_parsed_or_refused_without_panicking(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        parse_all(&bytes);
    }

    #[test]
    fn arbitrary_json_objects_are_parsed_or_refused_without_panicking(
        members in proptest::collection::vec(
            (
                prop_oneof![
                    Just("faceIds".to_owned()), Just("faceId".to_owned()), Just("faceId1".to_owned()),
                    Just("faceId2".to_owned()), Just("personId".to_owned()), Just("name".to_owned()),
                    Just("largePersonGroupId".to_owned()), Just("personGroupId".to_owned()),
                    Just("maxNumOfCandidatesReturned".to_owned()), Just("confidenceThreshold".to_owned()),
                    Just("largeFaceListId".to_owned()), Just("userData".to_owned()), "[a-zA-Z]{1,8}",
                ],
                prop_oneof![
                    Just(json!(null)), Just(json!(F1)), Just(json!([F1, F2])), Just(json!("g")),
                    any::<i64>().prop_map(|n| json!(n)), any::<f64>().prop_map(|x| json!(x)),
                    ".{0,20}".prop_map(|s| json!(s)), Just(json!({})), Just(json!([1, "x"])),
                ],
            ),
            0..8,
        )
    ) {
        let object: Map<String, Value> = members.into_iter().collect();
        parse_all(Value::Object(object).to_string().as_bytes());
    }
}
