//! The ids of the Face API, each checked once, where it enters, as Azure checks it:
//!
//! | id | rule |
//! |---|---|
//! | [`GroupId`] (`largePersonGroupId`) | `^[a-z0-9-_]{1,64}$` |
//! | [`PersonId`], [`PersistedFaceId`], [`OperationId`], [`FaceId`] | a UUID, kept lower-cased |
//!
//! Ids in a path are taken from the segment their route's pattern names (see
//! [`crate::routes`]), as sent: not percent-decoded, so an encoded id is refused as invalid.
//! The extractors ([`GroupId`], [`PersonPath`], [`FacePath`], [`OperationId`]) check them in
//! the order they appear in the path.

use std::fmt;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;

use crate::error::FaceError;
use crate::limited_access::VerifiedFaceCall;
use crate::routes::Route;

fn bad(message: &str) -> FaceError {
    FaceError::BadArgument(message.to_owned())
}

/// Whether `s` is a UUID: 8-4-4-4-12 hexadecimal digits, either case.
pub(crate) fn is_uuid(s: &str) -> bool {
    s.len() == 36
        && s.bytes().enumerate().all(|(i, b)| match i {
            8 | 13 | 18 | 23 => b == b'-',
            _ => b.is_ascii_hexdigit(),
        })
}

/// A large person group id: 1 to 64 of `a-z`, `0-9`, `-`, `_`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct GroupId(String);

impl GroupId {
    /// The message of an invalid group id, in Azure's words.
    pub const INVALID: &'static str = "Large person group ID is invalid. Valid format should be a string composed by numbers, English letters in lower case, '-', '_', and no longer than 64 characters.";

    /// `id`, if it is a valid group id.
    pub fn parse(id: &str) -> Result<GroupId, FaceError> {
        let ok = (1..=64).contains(&id.len())
            && id
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
        if ok {
            Ok(GroupId(id.to_owned()))
        } else {
            Err(bad(Self::INVALID))
        }
    }

    /// The id.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A UUID id of one kind, lower-cased: compared with the ids the engine makes, which are.
macro_rules! uuid_id {
    ($(#[$doc:meta])* $name:ident, $invalid:literal) => {
        $(#[$doc])*
        #[derive(Clone, Debug, PartialEq, Eq, Hash)]
        pub struct $name(String);

        impl $name {
            /// The message of an invalid id of this kind.
            pub const INVALID: &'static str = $invalid;

            /// `id`, lower-cased, if it is a UUID.
            pub fn parse(id: &str) -> Result<$name, FaceError> {
                if is_uuid(id) {
                    Ok($name(id.to_ascii_lowercase()))
                } else {
                    Err(bad(Self::INVALID))
                }
            }

            /// The id, lower-case.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }
    };
}

uuid_id!(
    /// A person id (`personId`).
    PersonId,
    "Person ID is invalid."
);
uuid_id!(
    /// A persisted face id (`persistedFaceId`).
    PersistedFaceId,
    "Persisted face ID is invalid."
);
uuid_id!(
    /// A long-running operation's id (`operationId`).
    OperationId,
    "Operation ID is invalid."
);

/// A detected face's id (`faceId`): a UUID, lower-cased. Invalid ones are refused with the
/// name of the member that held them ([`crate::body`]).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct FaceId(String);

impl FaceId {
    /// `id`, lower-cased, if it is a UUID.
    pub fn parse(id: &str) -> Option<FaceId> {
        is_uuid(id).then(|| FaceId(id.to_ascii_lowercase()))
    }

    /// The id, lower-case.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

macro_rules! display_as_str {
    ($($name:ident),*) => {$(
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    )*};
}

display_as_str!(GroupId, PersonId, PersistedFaceId, OperationId, FaceId);

/// `/largepersongroups/{largePersonGroupId}/persons/{personId}`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PersonPath {
    /// The group.
    pub group: GroupId,
    /// The person.
    pub person: PersonId,
}

/// `.../persons/{personId}/persistedfaces/{persistedFaceId}`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FacePath {
    /// The group and the person.
    pub person: PersonPath,
    /// The persisted face.
    pub face: PersistedFaceId,
}

/// The raw segment of the request's path that its route's pattern names `{name}`.
fn path_param<'a>(parts: &'a Parts, name: &str) -> Result<&'a str, FaceError> {
    // The checks put the call there, having found its route; without one, no route is known.
    let route = parts
        .extensions
        .get::<VerifiedFaceCall>()
        .map(|call| call.route())
        .ok_or(FaceError::NotFound)?;
    route_param(route, parts.uri.path(), name).ok_or(FaceError::NotFound)
}

/// The segment of `path` (`/face/{version}/...`) at `{name}` in `route`'s pattern.
pub(crate) fn route_param<'a>(route: &Route, path: &'a str, name: &str) -> Option<&'a str> {
    let at = route.segments().position(|s| s == name)?;
    // `""`, `face`, the version, then the route's own segments.
    path.split('/').nth(3 + at)
}

impl<S: Sync> FromRequestParts<S> for GroupId {
    type Rejection = FaceError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, FaceError> {
        GroupId::parse(path_param(parts, "{largePersonGroupId}")?)
    }
}

impl<S: Sync> FromRequestParts<S> for PersonPath {
    type Rejection = FaceError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, FaceError> {
        Ok(PersonPath {
            group: GroupId::from_request_parts(parts, state).await?,
            person: PersonId::parse(path_param(parts, "{personId}")?)?,
        })
    }
}

impl<S: Sync> FromRequestParts<S> for FacePath {
    type Rejection = FaceError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, FaceError> {
        Ok(FacePath {
            person: PersonPath::from_request_parts(parts, state).await?,
            face: PersistedFaceId::parse(path_param(parts, "{persistedFaceId}")?)?,
        })
    }
}

impl<S: Sync> FromRequestParts<S> for OperationId {
    type Rejection = FaceError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, FaceError> {
        OperationId::parse(path_param(parts, "{operationId}")?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const F1: &str = "c5c24a82-6845-4031-9d5d-978df9175426";

    #[test]
    fn group_ids() {
        assert!(GroupId::parse("sample_group-1").is_ok());
        assert!(GroupId::parse(&"a".repeat(64)).is_ok());
        for bad in ["", "Upper", "a b", "ä", &"a".repeat(65), "a/b", "%61"] {
            assert!(GroupId::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn uuid_ids_are_lower_cased_and_checked() {
        assert!(PersonId::parse(F1).is_ok());
        assert!(PersonId::parse("..").is_err());
        assert_eq!(
            PersonId::parse(&F1.to_ascii_uppercase()).unwrap().as_str(),
            F1
        );
        for bad in [
            "",
            "c5c24a82-6845-4031-9d5d-978df917542",
            "c5c24a82-6845-4031-9d5d-978df91754260",
            "c5c24a82+6845-4031-9d5d-978df9175426",
            "g5c24a82-6845-4031-9d5d-978df9175426",
        ] {
            assert!(OperationId::parse(bad).is_err(), "{bad:?}");
            assert!(PersistedFaceId::parse(bad).is_err(), "{bad:?}");
            assert!(FaceId::parse(bad).is_none(), "{bad:?}");
        }
        match PersistedFaceId::parse("x") {
            Err(FaceError::BadArgument(m)) => assert_eq!(m, "Persisted face ID is invalid."),
            other => panic!("{other:?}"),
        }
    }
}
