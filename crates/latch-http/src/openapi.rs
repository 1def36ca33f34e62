//! The OpenAPI document of both services, generated with `utoipa` from the typed requests and
//! the answers: each service adds its paths ([`document`] merges them) onto the shared parts
//! here: the servers, the security schemes and Azure's error body ([`ErrorBody`]).
//!
//! What is served at `/openapi.json` is [`crate::OPENAPI`], the generated document as written
//! out to `openapi/latch.openapi.json`; a test asserts the two are the same.

use utoipa::openapi::path::{OperationBuilder, ParameterBuilder, ParameterIn};
use utoipa::openapi::request_body::RequestBodyBuilder;
use utoipa::openapi::schema::{ArrayBuilder, ArrayItems, ObjectBuilder, Schema, SchemaType, Type};
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::server::ServerBuilder;
use utoipa::openapi::tag::TagBuilder;
use utoipa::openapi::{
    ComponentsBuilder, ContentBuilder, HeaderBuilder, InfoBuilder, OpenApi, OpenApiBuilder, Ref,
    RefOr, Required, ResponseBuilder,
};
use utoipa::{PartialSchema, ToSchema};

/// The media type of every JSON answer and error, as sent.
pub const JSON: &str = "application/json; charset=utf-8";

/// Azure's error body, `{"error":{"code":...,"message":...}}`, as `error_body` makes it.
#[derive(ToSchema)]
#[schema(as = Error)]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorDetail,
}

/// The error of Azure's error body.
#[derive(ToSchema)]
pub struct ErrorDetail {
    /// A code: Azure's (`BadArgument`, ...) or the status (`401`, `404`, `429`).
    pub code: String,
    /// What is wrong.
    pub message: String,
}

/// A `$ref` to a schema of the components.
pub fn schema_ref<T: ToSchema>() -> RefOr<Schema> {
    RefOr::Ref(Ref::from_schema_name(T::name()))
}

/// A string schema.
pub fn string(description: &str) -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .description(Some(description))
}

/// An integer schema within `lo..=hi`.
pub fn integer(lo: i64, hi: i64, description: &str) -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::Integer)
        .minimum(Some(lo))
        .maximum(Some(hi))
        .description(Some(description))
}

/// An array of `items`.
pub fn array(items: impl Into<RefOr<Schema>>) -> ArrayBuilder {
    ArrayBuilder::new().items(ArrayItems::RefOrSchema(Box::new(items.into())))
}

/// A schema of any value (a member the front passes on; its value is the backend's to check).
pub fn any_value(description: &str) -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(SchemaType::AnyValue)
        .description(Some(description))
}

/// A schema of any of `types` (`null` among them, for a member whose `null` is as if absent).
pub fn any_of_types(types: impl IntoIterator<Item = Type>) -> ObjectBuilder {
    ObjectBuilder::new().schema_type(SchemaType::Array(types.into_iter().collect()))
}

/// A JSON body answer: `schema` in [`JSON`].
pub fn json_response(description: &str, schema: impl Into<RefOr<Schema>>) -> ResponseBuilder {
    ResponseBuilder::new()
        .description(description)
        .content(JSON, ContentBuilder::new().schema(Some(schema)).build())
}

/// An error answer: Azure's error body in [`JSON`].
pub fn error_response(description: &str) -> ResponseBuilder {
    json_response(description, schema_ref::<ErrorBody>())
}

/// A 429 answer: Azure's error body, and `Retry-After`.
pub fn too_many_requests() -> ResponseBuilder {
    error_response("Over a rate limit (code \"429\").").header(
        "Retry-After",
        HeaderBuilder::new()
            .schema(ObjectBuilder::new().schema_type(Type::Integer))
            .description(Some("Seconds to wait."))
            .build(),
    )
}

/// A required JSON request body of `schema` (any media type is read as JSON).
pub fn json_body(schema: impl Into<RefOr<Schema>>) -> RequestBodyBuilder {
    RequestBodyBuilder::new()
        .required(Some(Required::True))
        .content(
            "application/json",
            ContentBuilder::new().schema(Some(schema)).build(),
        )
}

/// A required path parameter.
pub fn path_parameter(name: &str, schema: impl Into<RefOr<Schema>>) -> ParameterBuilder {
    ParameterBuilder::new()
        .name(name)
        .parameter_in(ParameterIn::Path)
        .required(Required::True)
        .schema(Some(schema))
}

/// An optional query parameter.
pub fn query_parameter(name: &str, schema: impl Into<RefOr<Schema>>) -> ParameterBuilder {
    ParameterBuilder::new()
        .name(name)
        .parameter_in(ParameterIn::Query)
        .required(Required::False)
        .schema(Some(schema))
}

/// `GET /openapi.json`, served by both services.
pub fn openapi_operation() -> OperationBuilder {
    OperationBuilder::new()
        .operation_id(Some("openapi"))
        .tag("Discovery")
        .summary(Some("This document."))
        .response(
            "200",
            ResponseBuilder::new()
                .description("The OpenAPI document.")
                .content(
                    "application/json",
                    ContentBuilder::new()
                        .schema(Some(ObjectBuilder::new().schema_type(Type::Object)))
                        .build(),
                ),
        )
}

/// The document: the shared parts, then each of `parts` (a service's paths and schemas).
pub fn document(parts: impl IntoIterator<Item = OpenApi>) -> OpenApi {
    let key = |in_query: bool, name: &str| {
        let value = ApiKeyValue::new(name);
        SecurityScheme::ApiKey(if in_query {
            ApiKey::Query(value)
        } else {
            ApiKey::Header(value)
        })
    };
    let components = ComponentsBuilder::new()
        .schema_from::<ErrorBody>()
        .schema_from::<ErrorDetail>()
        .security_scheme("subscriptionKey", key(false, "Ocp-Apim-Subscription-Key"))
        .security_scheme(
            "subscriptionKeyQuery",
            key(true, crate::SUBSCRIPTION_KEY_PARAM),
        )
        .security_scheme(
            "accessToken",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT (issueToken, typ at+jwt)")
                    .build(),
            ),
        )
        .security_scheme("limitedAccessToken", key(false, "LimitedAccessToken"))
        .build();
    let server = |url: &str, description: &str| {
        ServerBuilder::new()
            .url(url)
            .description(Some(description))
            .build()
    };
    let mut doc = OpenApiBuilder::new()
        .info(
            InfoBuilder::new()
                .title("latch")
                .version(env!("CARGO_PKG_VERSION"))
                .description(Some("The latch token service (STS) and Face front. Azure-compatible on the wire: see docs/wire.md. Each service serves this document; its paths are the STS's (`/sts/`, `/.well-known/`) and the Face front's (`/face/`)."))
                .build(),
        )
        .servers(Some([
            server("https://127.0.0.1:8700", "STS (default)"),
            server("https://127.0.0.1:8701", "Face front (default)"),
        ]))
        .tags(Some(["STS", "Face", "Discovery"].map(|t| TagBuilder::new().name(t).build())))
        .components(Some(components))
        .build();
    for part in parts {
        doc.merge(part);
    }
    doc
}

/// The document as written to `openapi/latch.openapi.json`: pretty JSON, one final newline.
pub fn to_json(doc: &OpenApi) -> String {
    let mut text = doc
        .to_pretty_json()
        .expect("an OpenAPI document serializes");
    text.push('\n');
    text
}

/// A schema's JSON, for tests.
pub fn schema_json<T: PartialSchema>() -> serde_json::Value {
    serde_json::to_value(T::schema()).expect("a schema serializes")
}
