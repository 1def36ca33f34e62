//! The Face front's part of the OpenAPI document ([`paths`]): one operation per route of
//! [`ROUTES`], for the path `/face/{version}/...`, with its path ids, its body (the schemas of
//! [`crate::body`]) and its answers. A route added to the table is in the document.

use latch_http::openapi::{
    array, error_response, json_body, json_response, openapi_operation, path_parameter,
    query_parameter, schema_ref, string, too_many_requests, ErrorBody,
};
use utoipa::openapi::path::OperationBuilder;
use utoipa::openapi::schema::{ObjectBuilder, OneOfBuilder, Schema, SchemaType, Type};
use utoipa::openapi::security::SecurityRequirement;
use utoipa::openapi::{
    ComponentsBuilder, ContentBuilder, HeaderBuilder, HttpMethod, OpenApi, OpenApiBuilder,
    PathItem, PathsBuilder, RefOr, ResponseBuilder,
};
use utoipa::PartialSchema;

use crate::body::{FindSimilarRequest, IdentifyRequest, NamedRequest, VerifyRequest};
use crate::ids::{FaceId, GroupId};
use crate::operation::{Operation, VERSIONS};
use crate::routes::{Route, Verb, ROUTES};

fn object() -> ObjectBuilder {
    ObjectBuilder::new().schema_type(Type::Object)
}

fn nullable_string(description: &str) -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(SchemaType::Array(vec![Type::String, Type::Null]))
        .description(Some(description))
}

fn number() -> ObjectBuilder {
    ObjectBuilder::new().schema_type(Type::Number)
}

/// An object of required members.
fn members(names: &[(&str, RefOr<Schema>)]) -> RefOr<Schema> {
    let mut o = object();
    for (name, schema) in names {
        o = o.property(*name, schema.clone()).required(*name);
    }
    o.into()
}

fn group() -> RefOr<Schema> {
    let mut o = object();
    for (name, schema) in [
        ("largePersonGroupId", GroupId::schema()),
        ("name", string("The name.").into()),
        ("userData", nullable_string("The data given.").into()),
    ] {
        o = o.property(name, schema).required(name);
    }
    o.property(
        "recognitionModel",
        string("With returnRecognitionModel=true."),
    )
    .into()
}

fn person() -> RefOr<Schema> {
    members(&[
        ("personId", FaceId::schema()),
        ("name", string("The name.").into()),
        ("userData", nullable_string("The data given.").into()),
        ("persistedFaceIds", array(FaceId::schema()).into()),
    ])
}

fn detected_face() -> RefOr<Schema> {
    let int = || ObjectBuilder::new().schema_type(Type::Integer).into();
    let rectangle = members(&[
        ("top", int()),
        ("left", int()),
        ("width", int()),
        ("height", int()),
    ]);
    object()
        .property("faceId", FaceId::schema())
        .property("faceRectangle", rectangle)
        .required("faceRectangle")
        .property(
            "recognitionModel",
            string("With returnRecognitionModel=true."),
        )
        .into()
}

fn candidates(id: &str) -> RefOr<Schema> {
    array(members(&[
        (id, FaceId::schema()),
        ("confidence", number().into()),
    ]))
    .into()
}

/// What a route answers when it succeeds.
fn success(op: Operation) -> (&'static str, ResponseBuilder) {
    use Operation as O;
    let ok = |d, s: RefOr<Schema>| ("200", json_response(d, s));
    let empty = ("200", ResponseBuilder::new().description("Done; no body."));
    match op {
        O::Detect | O::DetectWithFaceId => ok("The faces found.", array(detected_face()).into()),
        O::Identify => ok(
            "Each face's candidates.",
            array(members(&[
                ("faceId", FaceId::schema()),
                ("candidates", candidates("personId")),
            ]))
            .into(),
        ),
        O::Verify => ok(
            "Whether the faces are of one person.",
            members(&[
                (
                    "isIdentical",
                    ObjectBuilder::new().schema_type(Type::Boolean).into(),
                ),
                ("confidence", number().into()),
            ]),
        ),
        O::FindSimilar => ok("The similar faces.", candidates("faceId")),
        O::ListGroups => ok("The groups.", array(group()).into()),
        O::GetGroup => ok("The group.", group()),
        O::CreateGroup | O::DeleteGroup | O::DeletePerson | O::DeleteFace => empty,
        O::CreatePerson => ok(
            "The new person.",
            members(&[("personId", FaceId::schema())]),
        ),
        O::ListPersons => ok("The persons.", array(person()).into()),
        O::GetPerson => ok("The person.", person()),
        O::AddFace => ok(
            "The new face.",
            members(&[("persistedFaceId", FaceId::schema())]),
        ),
        O::GetFace => ok(
            "The face.",
            members(&[
                ("persistedFaceId", FaceId::schema()),
                ("userData", nullable_string("The data given.").into()),
            ]),
        ),
        O::Train => training_started(),
        O::TrainingStatus => ok("The training status.", status(op)),
        O::GetOperation => ok("The operation.", status(op)),
    }
}

/// The 202 of `train`.
fn training_started() -> (&'static str, ResponseBuilder) {
    let header = |d: &str| HeaderBuilder::new().schema(string(d)).build();
    (
        "202",
        ResponseBuilder::new()
            .description("Training started; poll the operation.")
            .header("operation-location", header("The operation's URL."))
            .header("Retry-After", header("Seconds.")),
    )
}

/// The training status of a group, or an operation's.
fn status(op: Operation) -> RefOr<Schema> {
    let state = || string("`notStarted`, `running`, `succeeded` or `failed`.").into();
    let time = |nullable: bool| -> RefOr<Schema> {
        if nullable {
            nullable_string("RFC 3339.").into()
        } else {
            string("RFC 3339.").into()
        }
    };
    if op == Operation::TrainingStatus {
        members(&[
            ("status", state()),
            ("createdDateTime", time(false)),
            ("lastActionDateTime", time(true)),
            ("lastSuccessfulTrainingDateTime", time(true)),
        ])
    } else {
        members(&[
            ("operationId", FaceId::schema()),
            ("status", state()),
            ("createdTime", time(false)),
            ("lastActionTime", time(true)),
            ("finishedTime", time(true)),
            ("message", nullable_string("Why it failed.").into()),
        ])
    }
}

/// The image of `detect` and adding a face: its bytes, or a JSON `{"url": ...}`.
fn image_body() -> utoipa::openapi::request_body::RequestBody {
    let bytes = string("The image (JPEG, PNG, GIF, BMP).").format(Some(
        utoipa::openapi::SchemaFormat::KnownFormat(utoipa::openapi::KnownFormat::Binary),
    ));
    let url = members(&[("url", string("The image's URL.").into())]);
    utoipa::openapi::request_body::RequestBodyBuilder::new()
        .required(Some(utoipa::openapi::Required::True))
        .content(
            "application/octet-stream",
            ContentBuilder::new().schema(Some(bytes)).build(),
        )
        .content(
            "application/json",
            ContentBuilder::new().schema(Some(url)).build(),
        )
        .build()
}

/// The answers of every Face call that is refused.
fn refusals(op: OperationBuilder) -> OperationBuilder {
    let forbidden = OneOfBuilder::new()
        .item(schema_ref::<ErrorBody>())
        .item(members(&[(
            "error",
            members(&[
                ("code", string("`InvalidRequest`.").into()),
                ("message", string("").into()),
                (
                    "innererror",
                    members(&[
                        ("code", string("`UnsupportedFeature`.").into()),
                        ("message", string("The missing features.").into()),
                    ]),
                ),
            ]),
        )]));
    op.response(
        "400",
        error_response("BadArgument: an invalid id, query or body; or the backend's refusal."),
    )
    .response(
        "401",
        error_response("No credential, several, or a wrong one (code \"401\")."),
    )
    .response(
        "403",
        json_response(
            "Missing approval for a feature (UnsupportedFeature), or a quota reached.",
            forbidden,
        ),
    )
    .response(
        "404",
        error_response("No such group, person, face or operation."),
    )
    .response(
        "413",
        error_response("The body is too large (InvalidImageSize)."),
    )
    .response("429", too_many_requests())
    .response("500", error_response("The engine failed."))
    .response(
        "501",
        error_response("No backend is configured (BackendNotConfigured)."),
    )
    .response(
        "502",
        error_response("The backend could not be reached or failed."),
    )
    .response(
        "503",
        error_response("The audit log or the store cannot be written."),
    )
    .response("504", error_response("The backend did not answer in time."))
}

fn operation(route: &Route) -> OperationBuilder {
    let op = route.operation;
    let mut o = OperationBuilder::new()
        .operation_id(Some(op.name()))
        .tag("Face")
        .parameter(path_parameter(
            "version",
            string("The API version.").enum_values(Some(VERSIONS)),
        ));
    for segment in route.segments().filter(|s| s.starts_with('{')) {
        let name = segment.trim_matches(['{', '}']);
        let schema = if name == "largePersonGroupId" {
            GroupId::schema()
        } else {
            FaceId::schema()
        };
        o = o.parameter(path_parameter(name, schema));
    }
    for (name, _) in [
        ("subscriptionKey", 0),
        ("subscriptionKeyQuery", 0),
        ("accessToken", 0),
    ] {
        o = o.security(SecurityRequirement::new::<_, _, &str>(name, []));
    }
    use Operation as O;
    o = match op {
        O::Detect | O::DetectWithFaceId => o
            .parameter(query_parameter(
                "returnFaceId",
                ObjectBuilder::new()
                    .schema_type(Type::Boolean)
                    .description(Some("Once at most; true when absent.")),
            ))
            .request_body(Some(image_body())),
        O::AddFace => o.request_body(Some(image_body())),
        O::Identify => o.request_body(Some(json_body(schema_ref::<IdentifyRequest>()).build())),
        O::Verify => o.request_body(Some(json_body(schema_ref::<VerifyRequest>()).build())),
        O::FindSimilar => {
            o.request_body(Some(json_body(schema_ref::<FindSimilarRequest>()).build()))
        }
        O::CreateGroup | O::CreatePerson => {
            o.request_body(Some(json_body(schema_ref::<NamedRequest>()).build()))
        }
        _ => o,
    };
    if op == O::CreateGroup {
        o = o.response("409", error_response("The group exists already."));
    }
    let (status, answer) = success(op);
    refusals(o.response(status, answer))
}

fn method(verb: Verb) -> HttpMethod {
    match verb {
        Verb::Get => HttpMethod::Get,
        Verb::Put => HttpMethod::Put,
        Verb::Post => HttpMethod::Post,
        Verb::Delete => HttpMethod::Delete,
    }
}

/// The Face front's routes, from [`ROUTES`].
pub fn paths() -> OpenApi {
    let mut paths = PathsBuilder::new();
    for route in &ROUTES {
        paths = paths.path(
            format!("/face/{{version}}/{}", route.path),
            PathItem::new(method(route.verb), operation(route)),
        );
    }
    paths = paths.path(
        "/openapi.json",
        PathItem::new(HttpMethod::Get, openapi_operation()),
    );
    let components = ComponentsBuilder::new()
        .schema_from::<IdentifyRequest>()
        .schema_from::<VerifyRequest>()
        .schema_from::<FindSimilarRequest>()
        .schema_from::<NamedRequest>()
        .build();
    OpenApiBuilder::new()
        .paths(paths)
        .components(Some(components))
        .build()
}

#[cfg(test)]
mod tests {
    /// The whole document, the STS's paths and the Face front's, is the committed file.
    #[test]
    fn the_committed_document_is_the_generated_one() {
        // To write it out: LATCH_WRITE_OPENAPI=1 cargo test -p latch-face the_committed_document
        let doc = latch_http::openapi::document([latch_sts::openapi::paths(), super::paths()]);
        let text = latch_http::openapi::to_json(&doc);
        if std::env::var_os("LATCH_WRITE_OPENAPI").is_some() {
            let file = concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../../openapi/latch.openapi.json"
            );
            std::fs::write(file, &text).unwrap();
        }
        assert_eq!(
            latch_http::OPENAPI,
            text,
            "regenerate: LATCH_WRITE_OPENAPI=1 cargo test -p latch-face the_committed_document"
        );
    }
}
