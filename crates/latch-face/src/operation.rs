//! The Face operations, and which Limited Access features each needs (which operation a request
//! is, the route table in [`crate::routes`] says).
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

use latch_core::{Feature, FeatureSet};

use crate::error::FaceError;

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
    !matches!(return_face_id_values(query).as_slice(), [(k, v)] if k == "returnFaceId" && v.eq_ignore_ascii_case("false"))
}

/// `detect`'s `returnFaceId`: at most once, spelled exactly, `true` or `false`.
pub fn detect_query(query: Option<&str>) -> Result<(), FaceError> {
    match return_face_id_values(query).as_slice() {
        [] => Ok(()),
        [(k, v)] if k == "returnFaceId" && (v.eq_ignore_ascii_case("true") || v.eq_ignore_ascii_case("false")) => Ok(()),
        _ => Err(FaceError::BadArgument("The argument returnFaceId is invalid: give it once, as returnFaceId=true or returnFaceId=false.".to_owned())),
    }
}

/// Every `returnFaceId` parameter of `query`, its name matched ignoring case, as given.
fn return_face_id_values(query: Option<&str>) -> Vec<(String, String)> {
    form_urlencoded::parse(query.unwrap_or("").as_bytes())
        .filter(|(k, _)| k.eq_ignore_ascii_case("returnFaceId"))
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
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
    fn return_face_id_is_given_once_exactly_or_not_at_all() {
        assert!(detect_query(None).is_ok());
        assert!(detect_query(Some("returnFaceId=false&detectionModel=detection_03")).is_ok());
        assert!(detect_query(Some("returnFaceId=TRUE")).is_ok());
        for bad in [
            "returnFaceId=false&returnFaceId=true",
            "returnfaceid=false",
            "returnFaceId=maybe",
            "returnFaceId",
        ] {
            assert!(detect_query(Some(bad)).is_err(), "{bad}");
        }
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
