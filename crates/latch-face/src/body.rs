//! The JSON bodies of the Face operations, each parsed once, where it enters, into its request
//! type, with Azure's checks:
//!
//! | what | rule |
//! |---|---|
//! | [`IdentifyRequest`] | `faceIds` 1–10 UUIDs; a group id; `maxNumOfCandidatesReturned` 1–100; `confidenceThreshold` 0–1 |
//! | [`VerifyRequest`] | `faceId1` + `faceId2`, or `faceId` + `personId` + a group id |
//! | [`FindSimilarRequest`] | `faceId`; one of `faceListId`, `largeFaceListId`, `faceIds` (≤ 1000); `maxNumOfCandidatesReturned` 1–1000 |
//! | [`NamedRequest`] (group and person creation) | `name` 1–128 characters; `userData` ≤ 16 KiB |
//!
//! Member names are matched ignoring case, as Azure does. What these checks let through and a
//! backend does not support (another kind of group, a face list) is kept in the request for
//! the backend to refuse in its own words.

use serde_json::{Map, Value};

use crate::error::FaceError;
use crate::ids::{FaceId, GroupId, PersonId};

/// The largest JSON body, in bytes.
pub const MAX_JSON: usize = 1024 * 1024;

fn bad(message: &str) -> FaceError {
    FaceError::BadArgument(message.to_owned())
}

/// A JSON body's members, names lower-cased.
struct Members(Map<String, Value>);

impl Members {
    /// A JSON body: one object. Two members whose names differ only in case would be one
    /// member to a case-insensitive reader: refused rather than guessing which one counts.
    fn parse(bytes: &[u8]) -> Result<Members, FaceError> {
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Err(bad("Request body is invalid."));
        }
        match latch_core::json::parse_object(bytes) {
            Ok(map) => {
                let mut folded = Map::new();
                for (k, v) in map {
                    if folded.insert(k.to_ascii_lowercase(), v).is_some() {
                        return Err(bad("Request body is invalid: a member is given twice."));
                    }
                }
                Ok(Members(folded))
            }
            Err(latch_core::json::JsonError::NotObject) => Err(bad("Request body is invalid.")),
            Err(_) => Err(bad("JSON parsing error.")),
        }
    }

    /// The member `name` (any case), as sent, `null` included.
    fn get(&self, name: &str) -> Option<&Value> {
        self.0.get(&name.to_ascii_lowercase())
    }

    /// Whether `name` is there and not `null`.
    fn given(&self, name: &str) -> bool {
        self.get(name).is_some_and(|v| !v.is_null())
    }

    /// The member `name` if it is a string.
    fn string(&self, name: &str) -> Option<&str> {
        self.get(name).and_then(Value::as_str)
    }

    /// A face id member.
    fn face_id(&self, name: &str) -> Result<FaceId, FaceError> {
        face_id(self.get(name), name)
    }

    /// An integer member between `lo` and `hi`, if given.
    fn int_in(&self, name: &str, lo: i64, hi: i64) -> Result<Option<usize>, FaceError> {
        match self.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => match v.as_i64().filter(|n| (lo..=hi).contains(n)) {
                Some(n) => Ok(usize::try_from(n).ok()),
                None => Err(bad(&format!(
                    "The argument {name} must be an integer between {lo} and {hi}."
                ))),
            },
        }
    }

    /// Exactly one of the group members `names` given: a group id (checked) or a list. The
    /// large person group id, when that is the one given as a string.
    fn one_group(&self, names: &[&str]) -> Result<Option<GroupId>, FaceError> {
        let present: Vec<&str> = names.iter().filter(|n| self.given(n)).copied().collect();
        match present.as_slice() {
            [name] => match self.get(name) {
                Some(Value::String(id)) => {
                    let id = GroupId::parse(id)?;
                    Ok((*name == "largePersonGroupId").then_some(id))
                }
                Some(Value::Array(_)) => Ok(None),
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

    /// Whether a group other than a large person group is named.
    fn names_other_group_kind(&self) -> bool {
        self.given("personGroupId") || self.given("dynamicPersonGroupId")
    }
}

fn face_id(v: Option<&Value>, name: &str) -> Result<FaceId, FaceError> {
    v.and_then(Value::as_str)
        .and_then(FaceId::parse)
        .ok_or_else(|| {
            bad(&format!(
                "Face ID is invalid: '{name}' must be a face ID (a UUID)."
            ))
        })
}

fn face_ids(values: &[Value], name: &str) -> Result<Vec<FaceId>, FaceError> {
    values.iter().map(|v| face_id(Some(v), name)).collect()
}

/// `identify`.
#[derive(Clone, Debug, PartialEq)]
pub struct IdentifyRequest {
    /// The faces to identify, 1 to 10.
    pub face_ids: Vec<FaceId>,
    /// The large person group to look in; `None` when the group given is of another kind, or
    /// a list rather than an id.
    pub large_person_group: Option<GroupId>,
    /// Whether a person group or a dynamic person group is named.
    pub names_other_group_kind: bool,
    /// `maxNumOfCandidatesReturned`, 1 to 100, if given.
    pub max_candidates: Option<usize>,
    /// `confidenceThreshold`, 0 to 1, if given.
    pub confidence_threshold: Option<f64>,
}

impl IdentifyRequest {
    /// Parses and checks an `identify` body.
    pub fn parse(bytes: &[u8]) -> Result<IdentifyRequest, FaceError> {
        let body = Members::parse(bytes)?;
        let face_ids = match body.get("faceIds") {
            Some(Value::Array(ids)) if (1..=10).contains(&ids.len()) => face_ids(ids, "faceIds")?,
            Some(Value::Array(_)) => {
                return Err(bad("The argument faceIds must hold 1 to 10 face IDs."))
            }
            _ => return Err(bad("Request body is invalid: faceIds is required.")),
        };
        let large_person_group = body.one_group(&[
            "personGroupId",
            "largePersonGroupId",
            "dynamicPersonGroupId",
        ])?;
        let max_candidates = body.int_in("maxNumOfCandidatesReturned", 1, 100)?;
        let confidence_threshold = match body.get("confidenceThreshold") {
            None | Some(Value::Null) => None,
            Some(v) => match v.as_f64().filter(|x| (0.0..=1.0).contains(x)) {
                Some(x) => Some(x),
                None => {
                    return Err(bad(
                        "The argument confidenceThreshold must be a number between 0 and 1.",
                    ))
                }
            },
        };
        Ok(IdentifyRequest {
            face_ids,
            large_person_group,
            names_other_group_kind: body.names_other_group_kind(),
            max_candidates,
            confidence_threshold,
        })
    }
}

/// What `verify` compares.
#[derive(Clone, Debug, PartialEq)]
pub enum VerifyTarget {
    /// Two detected faces.
    Faces(FaceId, FaceId),
    /// A detected face and a person of a group.
    Person {
        /// The face.
        face: FaceId,
        /// The person.
        person: PersonId,
        /// The person's large person group; `None` when the group given is of another kind,
        /// or a list rather than an id.
        large_person_group: Option<GroupId>,
    },
}

/// `verify`.
#[derive(Clone, Debug, PartialEq)]
pub struct VerifyRequest {
    /// What is compared.
    pub target: VerifyTarget,
    /// Whether a person group or a dynamic person group is named.
    pub names_other_group_kind: bool,
}

impl VerifyRequest {
    /// Parses and checks a `verify` body.
    pub fn parse(bytes: &[u8]) -> Result<VerifyRequest, FaceError> {
        let body = Members::parse(bytes)?;
        let target = if body.get("faceId1").is_some() || body.get("faceId2").is_some() {
            VerifyTarget::Faces(body.face_id("faceId1")?, body.face_id("faceId2")?)
        } else {
            let face = body.face_id("faceId")?;
            // Checked as every UUID of a body is, with the same message; being a UUID, it
            // is a person id.
            let person = body.face_id("personId")?;
            VerifyTarget::Person {
                face,
                person: PersonId::parse(person.as_str())?,
                large_person_group: body.one_group(&["personGroupId", "largePersonGroupId"])?,
            }
        };
        Ok(VerifyRequest {
            target,
            names_other_group_kind: body.names_other_group_kind(),
        })
    }
}

/// `findsimilars`.
#[derive(Clone, Debug, PartialEq)]
pub struct FindSimilarRequest {
    /// The face to match.
    pub face_id: FaceId,
    /// The faces to look among (`faceIds`), up to 1000; empty when a face list is named.
    pub face_ids: Vec<FaceId>,
    /// Whether a `faceListId` member is there (even `null`).
    pub names_face_list: bool,
    /// Whether a `largeFaceListId` member is there (even `null`).
    pub names_large_face_list: bool,
    /// `mode`, if it is a string (its value is the backend's to check).
    pub mode: Option<String>,
    /// `maxNumOfCandidatesReturned`, 1 to 1000, if given.
    pub max_candidates: Option<usize>,
}

impl FindSimilarRequest {
    /// Parses and checks a `findsimilars` body.
    pub fn parse(bytes: &[u8]) -> Result<FindSimilarRequest, FaceError> {
        let body = Members::parse(bytes)?;
        let face_id = body.face_id("faceId")?;
        let max_candidates = body.int_in("maxNumOfCandidatesReturned", 1, 1000)?;
        let face_ids = match body.get("faceIds") {
            Some(Value::Array(ids)) if ids.len() > 1000 => {
                return Err(bad("The argument faceIds must hold at most 1000 face IDs."))
            }
            Some(Value::Array(ids)) => face_ids(ids, "faceIds")?,
            _ => match (body.get("faceListId"), body.get("largeFaceListId")) {
                (Some(Value::String(id)), None) | (None, Some(Value::String(id))) => {
                    // A face list id follows the group id rule, and is refused in its words.
                    GroupId::parse(id)?;
                    Vec::new()
                }
                _ => return Err(bad(
                    "Request body is invalid: one of faceListId, largeFaceListId, faceIds is required.",
                )),
            },
        };
        Ok(FindSimilarRequest {
            face_id,
            face_ids,
            names_face_list: body.get("faceListId").is_some(),
            names_large_face_list: body.get("largeFaceListId").is_some(),
            mode: body.string("mode").map(str::to_owned),
            max_candidates,
        })
    }
}

/// Creating a group or a person.
#[derive(Clone, Debug, PartialEq)]
pub struct NamedRequest {
    /// `name`, 1 to 128 characters.
    pub name: String,
    /// `userData`, at most 16 KiB, if given.
    pub user_data: Option<String>,
    /// `recognitionModel`, if it is a string (its value is the backend's to check).
    pub recognition_model: Option<String>,
}

impl NamedRequest {
    /// Parses and checks a creation body.
    pub fn parse(bytes: &[u8]) -> Result<NamedRequest, FaceError> {
        let body = Members::parse(bytes)?;
        let name = match body.get("name") {
            Some(Value::String(n)) if (1..=128).contains(&n.chars().count()) => n.clone(),
            _ => return Err(bad("The argument name must be 1 to 128 characters.")),
        };
        let user_data = match body.get("userData") {
            None | Some(Value::Null) => None,
            Some(Value::String(u)) if u.len() <= 16 * 1024 => Some(u.clone()),
            _ => {
                return Err(bad(
                    "The argument userData must be a string of at most 16KB.",
                ))
            }
        };
        Ok(NamedRequest {
            name,
            user_data,
            recognition_model: body.string("recognitionModel").map(str::to_owned),
        })
    }
}

/// An image given by URL (`{"url": "..."}`), for `detect` and adding a face.
#[derive(Clone, Debug, PartialEq)]
pub struct UrlRequest {
    /// `url`.
    pub url: String,
}

impl UrlRequest {
    /// Parses an image URL body.
    pub fn parse(bytes: &[u8]) -> Result<UrlRequest, FaceError> {
        let body = Members::parse(bytes)?;
        let url = body
            .string("url")
            .ok_or_else(|| bad("Request body is invalid."))?;
        Ok(UrlRequest {
            url: url.to_owned(),
        })
    }
}

pub(crate) mod schema;

#[cfg(test)]
mod tests;
