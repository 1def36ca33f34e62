//! The OpenAPI schemas of the JSON bodies, beside the rules they describe (the parsers of
//! [`crate::body`]). A member whose `null` is read as absent admits `null`. Member names
//! match ignoring case and other members are ignored, which a schema cannot say; the
//! descriptions do.

use std::borrow::Cow;

use latch_http::openapi::{any_of_types, any_value, array, integer, string};
use utoipa::openapi::schema::{ObjectBuilder, OneOfBuilder, Schema, Type};
use utoipa::openapi::RefOr;
use utoipa::{PartialSchema, ToSchema};

use super::{FindSimilarRequest, IdentifyRequest, NamedRequest, VerifyRequest};
use crate::ids::{FaceId, GroupId};

/// A UUID, either case (as [`crate::ids::is_uuid`] checks).
pub(crate) const UUID: &str =
    "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$";
/// A large person group id (as [`GroupId::parse`] checks).
pub(crate) const GROUP_ID: &str = "^[a-z0-9_-]{1,64}$";

impl PartialSchema for GroupId {
    fn schema() -> RefOr<Schema> {
        string("A group id: 1 to 64 of a-z, 0-9, '-', '_'.")
            .pattern(Some(GROUP_ID))
            .into()
    }
}

impl PartialSchema for FaceId {
    fn schema() -> RefOr<Schema> {
        string("A UUID.").pattern(Some(UUID)).into()
    }
}

/// An object schema with `description`.
fn object(description: &str) -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::Object)
        .description(Some(description))
}

/// A member that names a group: a group id, or a list (its items are the backend's to check).
fn group_member() -> RefOr<Schema> {
    OneOfBuilder::new()
        .item(GroupId::schema())
        .item(array(any_value("An item of the list.")))
        .into()
}

/// Exactly one of `names` given (not `null`), as a group id or a list.
fn exactly_one_group(names: &[&str]) -> RefOr<Schema> {
    let mut one = OneOfBuilder::new();
    for name in names {
        one = one.item(
            ObjectBuilder::new()
                .schema_type(Type::Object)
                .property(*name, group_member())
                .required(*name),
        );
    }
    one.into()
}

/// `maxNumOfCandidatesReturned`.
fn max_candidates(hi: i64) -> ObjectBuilder {
    integer(1, hi, "How many candidates to return at most.").schema_type(
        utoipa::openapi::schema::SchemaType::Array(vec![Type::Integer, Type::Null]),
    )
}

/// Names a group member of a body, null admitted (read as absent).
fn nullable_group(description: &str) -> RefOr<Schema> {
    any_of_types([Type::String, Type::Array, Type::Null])
        .description(Some(description))
        .into()
}

macro_rules! named_schema {
    ($type:ty, $name:literal) => {
        impl ToSchema for $type {
            fn name() -> Cow<'static, str> {
                Cow::Borrowed($name)
            }
        }
    };
}

named_schema!(IdentifyRequest, "IdentifyRequest");
named_schema!(VerifyRequest, "VerifyRequest");
named_schema!(FindSimilarRequest, "FindSimilarRequest");
named_schema!(NamedRequest, "NamedRequest");

impl PartialSchema for IdentifyRequest {
    fn schema() -> RefOr<Schema> {
        let groups = [
            "personGroupId",
            "largePersonGroupId",
            "dynamicPersonGroupId",
        ];
        let mut body = object("The faces to identify, and exactly one group to look in.")
            .property(
                "faceIds",
                array(FaceId::schema())
                    .min_items(Some(1))
                    .max_items(Some(10)),
            )
            .required("faceIds");
        for name in groups {
            body = body.property(name, nullable_group("A group id, or a list."));
        }
        let threshold = ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::SchemaType::Array(vec![
                Type::Number,
                Type::Null,
            ]))
            .minimum(Some(0))
            .maximum(Some(1));
        let body = body
            .property("maxNumOfCandidatesReturned", max_candidates(100))
            .property("confidenceThreshold", threshold);
        utoipa::openapi::schema::AllOfBuilder::new()
            .item(body)
            .item(exactly_one_group(&groups))
            .into()
    }
}

impl PartialSchema for VerifyRequest {
    fn schema() -> RefOr<Schema> {
        let faces = object("Two detected faces (when faceId1 or faceId2 is there, even null).")
            .property("faceId1", FaceId::schema())
            .property("faceId2", FaceId::schema())
            .required("faceId1")
            .required("faceId2");
        let groups = ["personGroupId", "largePersonGroupId"];
        let mut person = object("A detected face and a person of exactly one group.")
            .property("faceId", FaceId::schema())
            .property("personId", FaceId::schema())
            .required("faceId")
            .required("personId");
        for name in groups {
            person = person.property(name, nullable_group("A group id, or a list."));
        }
        let person = utoipa::openapi::schema::AllOfBuilder::new()
            .item(person)
            .item(exactly_one_group(&groups));
        OneOfBuilder::new().item(faces).item(person).into()
    }
}

impl PartialSchema for FindSimilarRequest {
    fn schema() -> RefOr<Schema> {
        let common = object("The face to match, and where to look: faceIds when it is a list, else exactly one face list.")
            .property("faceId", FaceId::schema())
            .required("faceId")
            .property("maxNumOfCandidatesReturned", max_candidates(1000))
            .property("mode", any_value("`matchPerson` or `matchFace`."));
        let among = object("The faces to look among.")
            .property("faceIds", array(FaceId::schema()).max_items(Some(1000)))
            .required("faceIds");
        let list = |name: &str| {
            object("A face list, when faceIds is not a list (and the other list is not named).")
                .property(name, GroupId::schema())
                .required(name)
                .property(
                    "faceIds",
                    any_of_types([
                        Type::String,
                        Type::Number,
                        Type::Boolean,
                        Type::Object,
                        Type::Null,
                    ]),
                )
        };
        let where_ = OneOfBuilder::new()
            .item(among)
            .item(list("faceListId"))
            .item(list("largeFaceListId"));
        utoipa::openapi::schema::AllOfBuilder::new()
            .item(common)
            .item(where_)
            .into()
    }
}

impl PartialSchema for NamedRequest {
    fn schema() -> RefOr<Schema> {
        let user_data = any_of_types([Type::String, Type::Null])
            .max_length(Some(16 * 1024))
            .description(Some("At most 16 KiB (in UTF-8)."));
        object("A group's or a person's name and data.")
            .property(
                "name",
                string("1 to 128 characters.")
                    .min_length(Some(1))
                    .max_length(Some(128)),
            )
            .required("name")
            .property("userData", user_data)
            .property(
                "recognitionModel",
                any_value("A recognition model (groups)."),
            )
            .into()
    }
}
