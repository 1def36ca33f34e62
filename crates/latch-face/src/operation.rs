//! Which Face operation a request is, and which Limited Access features it needs.
//!
//! The table is configuration ([`FeaturePolicy`]); its defaults follow Azure:
//!
//! | operation | needs |
//! |---|---|
//! | `identify` | `Face.Identification` |
//! | `verify` | `Face.Verification` |
//! | `findsimilars` | `Face.Identification` |
//! | `detect` with `returnFaceId=true` (or absent: v1.0 defaults it to true) | either |
//! | `detect` with `returnFaceId=false`, large person group management | nothing |

use std::fmt;

use axum::http::Method;
use latch_core::{Feature, FeatureSet};

/// The API versions served, the only thing the SDKs differ in.
pub const VERSIONS: [&str; 4] = ["v1.0", "v1.1-preview.1", "v1.2-preview.1", "v1.2"];

/// Whether a version answers errors with an `x-ms-error-code` header too.
pub fn sets_error_code_header(version: &str) -> bool {
    version.starts_with("v1.2")
}

/// A Face operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Operation {
    /// `POST detect`, asking for face ids.
    DetectWithFaceId,
    /// `POST detect`, without face ids.
    Detect,
    /// `POST identify`.
    Identify,
    /// `POST verify`.
    Verify,
    /// `POST findsimilars`.
    FindSimilar,
    /// `PUT largepersongroups/{id}`.
    CreateGroup,
    /// `GET largepersongroups/{id}`.
    GetGroup,
    /// `GET largepersongroups`.
    ListGroups,
    /// `DELETE largepersongroups/{id}`.
    DeleteGroup,
    /// `POST largepersongroups/{id}/persons`.
    CreatePerson,
    /// `POST largepersongroups/{id}/persons/{personId}/persistedfaces`.
    AddFace,
    /// `POST largepersongroups/{id}/train`.
    Train,
    /// `GET largepersongroups/{id}/training`.
    TrainingStatus,
    /// `GET largepersongroups/{id}/persons`.
    ListPersons,
    /// `GET largepersongroups/{id}/persons/{personId}`.
    GetPerson,
    /// `DELETE largepersongroups/{id}/persons/{personId}`.
    DeletePerson,
    /// `GET largepersongroups/{id}/persons/{personId}/persistedfaces/{persistedFaceId}`.
    GetFace,
    /// `DELETE largepersongroups/{id}/persons/{personId}/persistedfaces/{persistedFaceId}`.
    DeleteFace,
    /// `GET operations/{operationId}`: a long-running operation's status (training).
    GetOperation,
}

impl Operation {
    /// The name used in audit records and the policy table.
    pub const fn name(self) -> &'static str {
        match self {
            Operation::DetectWithFaceId => "detect_with_face_id",
            Operation::Detect => "detect",
            Operation::Identify => "identify",
            Operation::Verify => "verify",
            Operation::FindSimilar => "findsimilars",
            Operation::CreateGroup => "create_large_person_group",
            Operation::GetGroup => "get_large_person_group",
            Operation::ListGroups => "list_large_person_groups",
            Operation::DeleteGroup => "delete_large_person_group",
            Operation::CreatePerson => "create_person",
            Operation::AddFace => "add_person_face",
            Operation::Train => "train_large_person_group",
            Operation::TrainingStatus => "get_training_status",
            Operation::ListPersons => "list_persons",
            Operation::GetPerson => "get_person",
            Operation::DeletePerson => "delete_person",
            Operation::GetFace => "get_person_face",
            Operation::DeleteFace => "delete_person_face",
            Operation::GetOperation => "get_operation_status",
        }
    }

    /// Every operation.
    pub const ALL: [Operation; 19] = [
        Operation::DetectWithFaceId,
        Operation::Detect,
        Operation::Identify,
        Operation::Verify,
        Operation::FindSimilar,
        Operation::CreateGroup,
        Operation::GetGroup,
        Operation::ListGroups,
        Operation::DeleteGroup,
        Operation::CreatePerson,
        Operation::AddFace,
        Operation::Train,
        Operation::TrainingStatus,
        Operation::ListPersons,
        Operation::GetPerson,
        Operation::DeletePerson,
        Operation::GetFace,
        Operation::DeleteFace,
        Operation::GetOperation,
    ];

    /// The operation of a request, from its method, path and query; `None` if it is not one.
    pub fn classify(
        method: &Method,
        path: &str,
        query: Option<&str>,
    ) -> Option<(Operation, &'static str)> {
        let rest = path.strip_prefix("/face/")?;
        let (version, rest) = rest.split_once('/')?;
        let version = VERSIONS.into_iter().find(|v| *v == version)?;
        let segments: Vec<&str> = rest.split('/').collect();
        let op = match (method.as_str(), segments.as_slice()) {
            ("POST", ["detect"]) if returns_face_id(query) => Operation::DetectWithFaceId,
            ("POST", ["detect"]) => Operation::Detect,
            ("POST", ["identify"]) => Operation::Identify,
            ("POST", ["verify"]) => Operation::Verify,
            ("POST", ["findsimilars"]) => Operation::FindSimilar,
            ("GET", ["largepersongroups"]) => Operation::ListGroups,
            ("PUT", ["largepersongroups", _]) => Operation::CreateGroup,
            ("GET", ["largepersongroups", _]) => Operation::GetGroup,
            ("DELETE", ["largepersongroups", _]) => Operation::DeleteGroup,
            ("POST", ["largepersongroups", _, "persons"]) => Operation::CreatePerson,
            ("POST", ["largepersongroups", _, "persons", _, "persistedfaces"]) => {
                Operation::AddFace
            }
            ("POST", ["largepersongroups", _, "train"]) => Operation::Train,
            ("GET", ["largepersongroups", _, "training"]) => Operation::TrainingStatus,
            ("GET", ["largepersongroups", _, "persons"]) => Operation::ListPersons,
            ("GET", ["largepersongroups", _, "persons", _]) => Operation::GetPerson,
            ("DELETE", ["largepersongroups", _, "persons", _]) => Operation::DeletePerson,
            ("GET", ["largepersongroups", _, "persons", _, "persistedfaces", _]) => {
                Operation::GetFace
            }
            ("DELETE", ["largepersongroups", _, "persons", _, "persistedfaces", _]) => {
                Operation::DeleteFace
            }
            ("GET", ["operations", _]) => Operation::GetOperation,
            _ => return None,
        };
        Some((op, version))
    }
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// `returnFaceId` is true unless it says `false` (v1.0 defaults it to true).
///
/// Conservative on purpose: only exactly one parameter spelled exactly `returnFaceId` with the
/// value `false` means no face ids. A repeated parameter, another spelling or another value
/// counts as true here (the route then refuses it as ambiguous), so no upstream reading of
/// the query can return face ids for a call classified as plain `detect`.
pub fn returns_face_id(query: Option<&str>) -> bool {
    let values: Vec<(String, String)> = form_urlencoded::parse(query.unwrap_or("").as_bytes())
        .filter(|(k, _)| k.eq_ignore_ascii_case("returnFaceId"))
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    !matches!(values.as_slice(), [(k, v)] if k == "returnFaceId" && v.eq_ignore_ascii_case("false"))
}

/// What an operation needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Requirement {
    /// Nothing.
    None,
    /// Every one of these features.
    All(FeatureSet),
    /// At least one of these features.
    Any(FeatureSet),
}

impl Requirement {
    /// Whether `granted` satisfies this requirement.
    pub fn satisfied_by(&self, granted: &FeatureSet) -> bool {
        match self {
            Requirement::None => true,
            Requirement::All(need) => need.is_subset(granted),
            Requirement::Any(need) => need.iter().any(|f| granted.contains(f)),
        }
    }

    /// The features to name as missing when `granted` does not satisfy this requirement.
    pub fn missing(&self, granted: &FeatureSet) -> FeatureSet {
        match self {
            Requirement::None => FeatureSet::new(),
            Requirement::All(need) => need.missing_from(granted),
            Requirement::Any(_) if self.satisfied_by(granted) => FeatureSet::new(),
            Requirement::Any(need) => need.clone(),
        }
    }
}

/// The operation → requirement table.
#[derive(Clone, Debug)]
pub struct FeaturePolicy {
    table: Vec<(Operation, Requirement)>,
}

impl Default for FeaturePolicy {
    fn default() -> Self {
        let one = |f: Feature| Requirement::All([f].into_iter().collect());
        let either: FeatureSet = [Feature::FaceIdentification, Feature::FaceVerification]
            .into_iter()
            .collect();
        FeaturePolicy {
            table: vec![
                (Operation::Identify, one(Feature::FaceIdentification)),
                (Operation::Verify, one(Feature::FaceVerification)),
                (Operation::FindSimilar, one(Feature::FaceIdentification)),
                (Operation::DetectWithFaceId, Requirement::Any(either)),
            ],
        }
    }
}

impl FeaturePolicy {
    /// The default table with `overrides` applied (operation name → requirement).
    pub fn with_overrides(overrides: impl IntoIterator<Item = (Operation, Requirement)>) -> Self {
        let mut policy = FeaturePolicy::default();
        for (op, req) in overrides {
            policy.table.retain(|(o, _)| *o != op);
            policy.table.push((op, req));
        }
        policy
    }

    /// What `op` needs.
    pub fn requirement(&self, op: Operation) -> &Requirement {
        self.table
            .iter()
            .find(|(o, _)| *o == op)
            .map(|(_, r)| r)
            .unwrap_or(&Requirement::None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_every_route_and_version() {
        for v in VERSIONS {
            let p = |rest: &str| format!("/face/{v}/{rest}");
            let c = |m: Method, rest: &str, q: Option<&str>| {
                Operation::classify(&m, &p(rest), q).map(|(o, _)| o)
            };
            assert_eq!(c(Method::POST, "identify", None), Some(Operation::Identify));
            assert_eq!(c(Method::POST, "verify", None), Some(Operation::Verify));
            assert_eq!(
                c(Method::POST, "findsimilars", None),
                Some(Operation::FindSimilar)
            );
            assert_eq!(
                c(Method::POST, "detect", None),
                Some(Operation::DetectWithFaceId)
            );
            assert_eq!(
                c(Method::POST, "detect", Some("returnFaceId=true")),
                Some(Operation::DetectWithFaceId)
            );
            assert_eq!(
                c(Method::POST, "detect", Some("returnFaceId=False")),
                Some(Operation::Detect)
            );
            assert_eq!(
                c(Method::GET, "largepersongroups", None),
                Some(Operation::ListGroups)
            );
            assert_eq!(
                c(Method::PUT, "largepersongroups/g1", None),
                Some(Operation::CreateGroup)
            );
            assert_eq!(
                c(
                    Method::POST,
                    "largepersongroups/g1/persons/p/persistedfaces",
                    None
                ),
                Some(Operation::AddFace)
            );
            assert_eq!(
                c(Method::GET, "largepersongroups/g1/training", None),
                Some(Operation::TrainingStatus)
            );
            assert_eq!(c(Method::GET, "identify", None), None);
        }
        assert_eq!(
            Operation::classify(&Method::POST, "/face/v9/identify", None),
            None
        );
        assert_eq!(
            Operation::classify(&Method::POST, "/face/v1.0/identify/x", None),
            None
        );
        assert_eq!(
            Operation::classify(&Method::POST, "/sts/v1.0/identify", None),
            None
        );
    }

    #[test]
    fn default_requirements_and_missing_features() {
        let policy = FeaturePolicy::default();
        let none = FeatureSet::new();
        let ident = FeatureSet::parse_csv("Face.Identification").unwrap();
        let verif = FeatureSet::parse_csv("Face.Verification").unwrap();
        assert!(policy.requirement(Operation::Identify).satisfied_by(&ident));
        assert!(!policy.requirement(Operation::Identify).satisfied_by(&verif));
        assert_eq!(
            policy
                .requirement(Operation::Identify)
                .missing(&verif)
                .to_short_csv(),
            "Identification"
        );
        assert!(policy
            .requirement(Operation::DetectWithFaceId)
            .satisfied_by(&verif));
        assert_eq!(
            policy
                .requirement(Operation::DetectWithFaceId)
                .missing(&none)
                .to_short_csv(),
            "Identification,Verification"
        );
        assert!(policy.requirement(Operation::Detect).satisfied_by(&none));
        assert!(policy
            .requirement(Operation::CreateGroup)
            .satisfied_by(&none));
        let strict = FeaturePolicy::with_overrides([(
            Operation::CreateGroup,
            Requirement::All(ident.clone()),
        )]);
        assert!(!strict
            .requirement(Operation::CreateGroup)
            .satisfied_by(&none));
    }
}
