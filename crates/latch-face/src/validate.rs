//! Request bodies and ids, checked as Azure checks them before anything is forwarded.
//!
//! | what | rule |
//! |---|---|
//! | group ids | `^[a-z0-9-_]{1,64}$` |
//! | `identify` | `faceIds` 1–10 UUIDs; a group id; `maxNumOfCandidatesReturned` 1–100; `confidenceThreshold` 0–1 |
//! | `verify` | `faceId1` + `faceId2`, or `faceId` + `personId` + a group id |
//! | `findsimilars` | `faceId`; one of `faceListId`, `largeFaceListId`, `faceIds` (≤ 1000); `maxNumOfCandidatesReturned` 1–1000 |
//! | group and person creation | `name` 1–128 characters; `userData` ≤ 16 KiB |

use serde_json::{Map, Value};

use crate::error::FaceError;

fn bad(message: &str) -> FaceError {
    FaceError::BadArgument(message.to_owned())
}

/// A group id (`largePersonGroupId`).
pub fn group_id(id: &str) -> Result<(), FaceError> {
    let ok = (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(bad("Large person group ID is invalid. Valid format should be a string composed by numbers, English letters in lower case, '-', '_', and no longer than 64 characters."))
    }
}

/// A person id in a path: a UUID.
pub fn person_id(id: &str) -> Result<(), FaceError> {
    uuid_in_path(id, "Person ID is invalid.")
}

/// A persisted face id in a path: a UUID.
pub fn persisted_face_id(id: &str) -> Result<(), FaceError> {
    uuid_in_path(id, "Persisted face ID is invalid.")
}

/// An operation id in a path: a UUID.
pub fn operation_id(id: &str) -> Result<(), FaceError> {
    uuid_in_path(id, "Operation ID is invalid.")
}

fn uuid_in_path(id: &str, invalid: &str) -> Result<(), FaceError> {
    if uuid(id) {
        Ok(())
    } else {
        Err(bad(invalid))
    }
}

/// `detect`'s `returnFaceId`: at most once, spelled exactly, `true` or `false`.
pub fn detect_query(query: Option<&str>) -> Result<(), FaceError> {
    let found: Vec<(String, String)> = form_urlencoded::parse(query.unwrap_or("").as_bytes())
        .filter(|(k, _)| k.eq_ignore_ascii_case("returnFaceId"))
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    match found.as_slice() {
        [] => Ok(()),
        [(k, v)] if k == "returnFaceId" && (v.eq_ignore_ascii_case("true") || v.eq_ignore_ascii_case("false")) => Ok(()),
        _ => Err(bad("The argument returnFaceId is invalid: give it once, as returnFaceId=true or returnFaceId=false.")),
    }
}

fn uuid(s: &str) -> bool {
    s.len() == 36
        && s.bytes().enumerate().all(|(i, b)| match i {
            8 | 13 | 18 | 23 => b == b'-',
            _ => b.is_ascii_hexdigit(),
        })
}

/// A JSON body: one object. Member names are matched ignoring case, as Azure does.
pub fn object(bytes: &[u8]) -> Result<Map<String, Value>, FaceError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(bad("Request body is invalid."));
    }
    match latch_core::json::parse_object(bytes) {
        Ok(map) => {
            // Two members whose names differ only in case would be one member to a
            // case-insensitive reader: refuse rather than guess which one it takes.
            let mut folded = Map::new();
            for (k, v) in map {
                if folded.insert(k.to_ascii_lowercase(), v).is_some() {
                    return Err(bad("Request body is invalid: a member is given twice."));
                }
            }
            Ok(folded)
        }
        Err(latch_core::json::JsonError::NotObject) => Err(bad("Request body is invalid.")),
        Err(_) => Err(bad("JSON parsing error.")),
    }
}

fn face_id(v: Option<&Value>, name: &str) -> Result<(), FaceError> {
    match v {
        Some(Value::String(s)) if uuid(s) => Ok(()),
        _ => Err(bad(&format!(
            "Face ID is invalid: '{name}' must be a face ID (a UUID)."
        ))),
    }
}

fn int_in(body: &Map<String, Value>, name: &str, lo: i64, hi: i64) -> Result<(), FaceError> {
    match body.get(&name.to_ascii_lowercase()) {
        None | Some(Value::Null) => Ok(()),
        Some(v) if v.as_i64().is_some_and(|n| (lo..=hi).contains(&n)) => Ok(()),
        _ => Err(bad(&format!(
            "The argument {name} must be an integer between {lo} and {hi}."
        ))),
    }
}

fn one_group(body: &Map<String, Value>, names: &[&str]) -> Result<(), FaceError> {
    let present: Vec<&str> = names
        .iter()
        .filter(|n| {
            body.get(&n.to_ascii_lowercase())
                .is_some_and(|v| !v.is_null())
        })
        .copied()
        .collect();
    match present.as_slice() {
        [name] => match body.get(&name.to_ascii_lowercase()) {
            Some(Value::String(id)) => group_id(id),
            Some(Value::Array(_)) => Ok(()),
            _ => Err(bad("Request body is invalid.")),
        },
        [] => Err(bad(&format!(
            "Request body is invalid: one of {} is required.",
            names.join(", ")
        ))),
        _ => Err(bad(&format!(
            "Request body is invalid: give only one of {}.",
            names.join(", ")
        ))),
    }
}

/// `identify`.
pub fn identify(bytes: &[u8]) -> Result<(), FaceError> {
    let body = object(bytes)?;
    match body.get("faceids") {
        Some(Value::Array(ids)) if (1..=10).contains(&ids.len()) => {
            for v in ids {
                face_id(Some(v), "faceIds")?;
            }
        }
        Some(Value::Array(_)) => {
            return Err(bad("The argument faceIds must hold 1 to 10 face IDs."))
        }
        _ => return Err(bad("Request body is invalid: faceIds is required.")),
    }
    one_group(
        &body,
        &[
            "personGroupId",
            "largePersonGroupId",
            "dynamicPersonGroupId",
        ],
    )?;
    int_in(&body, "maxNumOfCandidatesReturned", 1, 100)?;
    match body.get("confidencethreshold") {
        None | Some(Value::Null) => Ok(()),
        Some(v) if v.as_f64().is_some_and(|x| (0.0..=1.0).contains(&x)) => Ok(()),
        _ => Err(bad(
            "The argument confidenceThreshold must be a number between 0 and 1.",
        )),
    }
}

/// `verify`.
pub fn verify(bytes: &[u8]) -> Result<(), FaceError> {
    let body = object(bytes)?;
    if body.contains_key("faceid1") || body.contains_key("faceid2") {
        face_id(body.get("faceid1"), "faceId1")?;
        return face_id(body.get("faceid2"), "faceId2");
    }
    face_id(body.get("faceid"), "faceId")?;
    face_id(body.get("personid"), "personId")?;
    one_group(&body, &["personGroupId", "largePersonGroupId"])
}

/// `findsimilars`.
pub fn find_similar(bytes: &[u8]) -> Result<(), FaceError> {
    let body = object(bytes)?;
    face_id(body.get("faceid"), "faceId")?;
    int_in(&body, "maxNumOfCandidatesReturned", 1, 1000)?;
    if let Some(Value::Array(ids)) = body.get("faceids") {
        if ids.len() > 1000 {
            return Err(bad("The argument faceIds must hold at most 1000 face IDs."));
        }
        for v in ids {
            face_id(Some(v), "faceIds")?;
        }
        return Ok(());
    }
    match (body.get("facelistid"), body.get("largefacelistid")) {
        (Some(Value::String(id)), None) | (None, Some(Value::String(id))) => group_id(id),
        _ => Err(bad(
            "Request body is invalid: one of faceListId, largeFaceListId, faceIds is required.",
        )),
    }
}

/// Creating a group or a person: a `name`, and at most 16 KiB of `userData`.
pub fn named(bytes: &[u8]) -> Result<(), FaceError> {
    let body = object(bytes)?;
    match body.get("name") {
        Some(Value::String(n)) if (1..=128).contains(&n.chars().count()) => {}
        _ => return Err(bad("The argument name must be 1 to 128 characters.")),
    }
    match body.get("userdata") {
        None | Some(Value::Null) => Ok(()),
        Some(Value::String(u)) if u.len() <= 16 * 1024 => Ok(()),
        _ => Err(bad(
            "The argument userData must be a string of at most 16KB.",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const F1: &str = "c5c24a82-6845-4031-9d5d-978df9175426";
    const F2: &str = "015839fb-fbd9-4f79-ace9-7675fc2f1dd9";

    fn msg(r: Result<(), FaceError>) -> String {
        match r {
            Err(FaceError::BadArgument(m)) => m,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn group_ids() {
        assert!(group_id("sample_group-1").is_ok());
        assert!(group_id(&"a".repeat(64)).is_ok());
        for bad in ["", "Upper", "a b", "ä", &"a".repeat(65), "a/b"] {
            assert!(group_id(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn identify_limits() {
        let ok = |v: Value| identify(v.to_string().as_bytes());
        assert!(ok(serde_json::json!({"faceIds": [F1], "largePersonGroupId": "g"})).is_ok());
        assert!(ok(serde_json::json!({"FACEIDS": [F1, F2], "LargePersonGroupId": "g", "maxNumOfCandidatesReturned": 100, "confidenceThreshold": 1})).is_ok());
        assert!(msg(ok(
            serde_json::json!({"faceIds": [], "largePersonGroupId": "g"})
        ))
        .contains("1 to 10"));
        assert!(msg(ok(
            serde_json::json!({"faceIds": vec![F1; 11], "largePersonGroupId": "g"})
        ))
        .contains("1 to 10"));
        assert!(msg(ok(
            serde_json::json!({"faceIds": ["nope"], "largePersonGroupId": "g"})
        ))
        .contains("Face ID is invalid"));
        assert!(msg(ok(serde_json::json!({"faceIds": [F1]}))).contains("one of"));
        assert!(msg(ok(
            serde_json::json!({"faceIds": [F1], "largePersonGroupId": "G!"})
        ))
        .contains("Large person group ID"));
        for (n, v) in [
            ("maxNumOfCandidatesReturned", serde_json::json!(0)),
            ("maxNumOfCandidatesReturned", serde_json::json!(101)),
            ("maxNumOfCandidatesReturned", serde_json::json!("5")),
        ] {
            assert!(msg(ok(
                serde_json::json!({"faceIds": [F1], "largePersonGroupId": "g", n: v})
            ))
            .contains(n));
        }
        for v in [
            serde_json::json!(-0.1),
            serde_json::json!(1.01),
            serde_json::json!("0.5"),
        ] {
            assert!(msg(ok(serde_json::json!({"faceIds": [F1], "largePersonGroupId": "g", "confidenceThreshold": v}))).contains("confidenceThreshold"));
        }
        assert_eq!(msg(identify(b"{not json")), "JSON parsing error.");
        assert_eq!(msg(identify(b"[]")), "Request body is invalid.");
        assert_eq!(msg(identify(b"")), "Request body is invalid.");
    }

    #[test]
    fn ambiguous_inputs_are_refused() {
        assert!(msg(identify(
            format!(r#"{{"faceIds":["{F1}"],"FACEIDS":[],"largePersonGroupId":"g"}}"#).as_bytes()
        ))
        .contains("twice"));
        assert!(detect_query(None).is_ok());
        assert!(detect_query(Some("returnFaceId=false&detectionModel=detection_03")).is_ok());
        for bad in [
            "returnFaceId=false&returnFaceId=true",
            "returnfaceid=false",
            "returnFaceId=maybe",
        ] {
            assert!(detect_query(Some(bad)).is_err(), "{bad}");
        }
        assert!(person_id(F1).is_ok());
        assert!(person_id("..").is_err());
    }

    #[test]
    fn verify_shapes() {
        assert!(verify(
            serde_json::json!({"faceId1": F1, "faceId2": F2})
                .to_string()
                .as_bytes()
        )
        .is_ok());
        assert!(verify(
            serde_json::json!({"faceId": F1, "personId": F2, "largePersonGroupId": "g"})
                .to_string()
                .as_bytes()
        )
        .is_ok());
        assert!(verify(serde_json::json!({"faceId1": F1}).to_string().as_bytes()).is_err());
        assert!(verify(
            serde_json::json!({"faceId": F1, "personId": F2})
                .to_string()
                .as_bytes()
        )
        .is_err());
    }

    #[test]
    fn find_similar_and_named() {
        assert!(find_similar(
            serde_json::json!({"faceId": F1, "largeFaceListId": "l"})
                .to_string()
                .as_bytes()
        )
        .is_ok());
        assert!(find_similar(
            serde_json::json!({"faceId": F1, "faceIds": [F2]})
                .to_string()
                .as_bytes()
        )
        .is_ok());
        assert!(find_similar(serde_json::json!({"faceId": F1}).to_string().as_bytes()).is_err());
        assert!(named(br#"{"name":"group"}"#).is_ok());
        assert!(named(br#"{"name":""}"#).is_err());
        assert!(named(
            serde_json::json!({"name": "n", "userData": "x".repeat(16 * 1024 + 1)})
                .to_string()
                .as_bytes()
        )
        .is_err());
    }

    /// Validators never panic, whatever the bytes: every single-byte mangling and every
    /// prefix of a body that touches all of them. (The JSON parser under them is fuzzed in
    /// `latch-fuzz` and property-tested in `latch-core`.)
    #[test]
    fn validators_never_panic_on_mangled_bodies() {
        let base = serde_json::json!({"faceIds": [F1], "largePersonGroupId": "g", "faceId1": F1, "faceId2": F2, "faceId": F1, "personId": F2, "name": "n", "largeFaceListId": "l"}).to_string();
        let bytes = base.as_bytes();
        for i in 0..bytes.len() {
            for b in [b'"', b'{', b'}', b'[', b'0', 0xff, b'\\', b'-'] {
                let mut m = bytes.to_vec();
                m[i] = b;
                let _ = (identify(&m), verify(&m), find_similar(&m), named(&m));
            }
            let _ = (
                identify(&bytes[..i]),
                verify(&bytes[..i]),
                find_similar(&bytes[..i]),
                named(&bytes[..i]),
            );
        }
    }
}
