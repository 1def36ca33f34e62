//! Strict JSON: one UTF-8 object, no duplicate member names at any depth.
//!
//! RFC 7515 §4 and RFC 7519 §4 let a parser either reject duplicate names or keep the last one;
//! keeping the last one is how two parsers come to disagree about one document, so we reject.
//! Used for token headers and claims and for request bodies.

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

/// Why a document was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum JsonError {
    /// Not UTF-8, not JSON, or trailing data.
    #[error("not valid JSON")]
    Invalid,
    /// Valid JSON, but not an object.
    #[error("not a JSON object")]
    NotObject,
    /// An object has a member name twice.
    #[error("a JSON object has a duplicate member name")]
    Duplicate,
}

/// Parses UTF-8 JSON that must be an object, refusing duplicate member names at any depth
/// (RFC 7515 §4, RFC 7519 §4: reject rather than keep the last).
pub fn parse_object(bytes: &[u8]) -> Result<Map<String, Value>, JsonError> {
    let text = std::str::from_utf8(bytes).map_err(|_| JsonError::Invalid)?;
    let mut de = serde_json::Deserializer::from_str(text);
    let value = match NoDuplicates::deserialize(&mut de) {
        Ok(NoDuplicates(v)) => v,
        Err(e) if e.to_string().starts_with(DUPLICATE) => return Err(JsonError::Duplicate),
        Err(_) => return Err(JsonError::Invalid),
    };
    de.end().map_err(|_| JsonError::Invalid)?;
    match value {
        Value::Object(map) => Ok(map),
        _ => Err(JsonError::NotObject),
    }
}

const DUPLICATE: &str = "duplicate member name";

/// A JSON value whose objects, at every depth, have unique member names.
struct NoDuplicates(Value);

impl<'de> Deserialize<'de> for NoDuplicates {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(NoDuplicatesVisitor)
    }
}

struct NoDuplicatesVisitor;

impl<'de> Visitor<'de> for NoDuplicatesVisitor {
    type Value = NoDuplicates;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<NoDuplicates, E> {
        Ok(NoDuplicates(Value::Bool(v)))
    }

    fn visit_i64<E>(self, v: i64) -> Result<NoDuplicates, E> {
        Ok(NoDuplicates(Value::from(v)))
    }

    fn visit_u64<E>(self, v: u64) -> Result<NoDuplicates, E> {
        Ok(NoDuplicates(Value::from(v)))
    }

    fn visit_f64<E>(self, v: f64) -> Result<NoDuplicates, E> {
        Ok(NoDuplicates(Value::from(v)))
    }

    fn visit_str<E>(self, v: &str) -> Result<NoDuplicates, E> {
        Ok(NoDuplicates(Value::String(v.to_owned())))
    }

    fn visit_string<E>(self, v: String) -> Result<NoDuplicates, E> {
        Ok(NoDuplicates(Value::String(v)))
    }

    fn visit_unit<E>(self) -> Result<NoDuplicates, E> {
        Ok(NoDuplicates(Value::Null))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<NoDuplicates, A::Error> {
        let mut items = Vec::new();
        while let Some(NoDuplicates(v)) = seq.next_element()? {
            items.push(v);
        }
        Ok(NoDuplicates(Value::Array(items)))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<NoDuplicates, A::Error> {
        let mut map = Map::new();
        while let Some(key) = access.next_key::<String>()? {
            let NoDuplicates(value) = access.next_value()?;
            if map.insert(key, value).is_some() {
                return Err(de::Error::custom(DUPLICATE));
            }
        }
        Ok(NoDuplicates(Value::Object(map)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn objects_only_without_duplicates() {
        assert_eq!(parse_object(br#"{"a":1,"a":2}"#), Err(JsonError::Duplicate));
        assert_eq!(
            parse_object(br#"{"a":{"b":1,"b":2}}"#),
            Err(JsonError::Duplicate)
        );
        assert_eq!(
            parse_object(br#"[{"b":1,"b":2}]"#),
            Err(JsonError::Duplicate)
        );
        assert_eq!(parse_object(b"[]"), Err(JsonError::NotObject));
        assert_eq!(parse_object(b"null"), Err(JsonError::NotObject));
        assert_eq!(parse_object(b"{} x"), Err(JsonError::Invalid));
        assert_eq!(parse_object(b"\xff"), Err(JsonError::Invalid));
        assert_eq!(
            parse_object(br#"{"a":[1,2.5,"x",true,null,{"b":-1}]}"#)
                .unwrap()
                .len(),
            1
        );
    }

    proptest! {
        #[test]
        fn agrees_with_serde_json_when_names_are_unique(s in "\\PC{0,64}") {
            if let Ok(map) = parse_object(s.as_bytes()) {
                let plain: Value = serde_json::from_str(&s).unwrap();
                prop_assert_eq!(Value::Object(map), plain);
            }
        }
    }
}
