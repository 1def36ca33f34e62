//! The STS's part of the OpenAPI document ([`paths`]): its routes, the schema of the
//! `issueLimitedAccessToken` body (`LimitedAccessTokenRequest`, the rules of
//! [`crate::issue`]), and its answers. Joined with the Face front's by
//! [`latch_http::openapi::document`].

use std::borrow::Cow;

use latch_core::feature::Feature;
use latch_http::openapi::{
    array, error_response, integer, json_body, openapi_operation, query_parameter, schema_ref,
    string, too_many_requests,
};
use utoipa::openapi::path::OperationBuilder;
use utoipa::openapi::schema::{ObjectBuilder, OneOfBuilder, Schema, Type};
use utoipa::openapi::security::SecurityRequirement;
use utoipa::openapi::{
    ComponentsBuilder, ContentBuilder, HeaderBuilder, HttpMethod, OpenApi, OpenApiBuilder,
    PathItem, PathsBuilder, RefOr, ResponseBuilder,
};
use utoipa::{PartialSchema, ToSchema};

use crate::issue::LatRequest;

/// A resource id as `ResourceId::parse` accepts it (its keywords also match ignoring case,
/// and a resource group may hold any Unicode letter or digit).
const RESOURCE_ID: &str = "^/subscriptions/[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}/resourceGroups/[A-Za-z0-9_().-]{0,89}[A-Za-z0-9_()-]/providers/Microsoft\\.CognitiveServices/accounts/[A-Za-z0-9][A-Za-z0-9-]{0,62}[A-Za-z0-9]$";

/// The body of `issueLimitedAccessToken`, as [`crate::issue`] reads it: member names match
/// ignoring case; other members are ignored.
impl PartialSchema for LatRequest {
    fn schema() -> RefOr<Schema> {
        let target = || {
            string("The client's Cognitive Services account.")
                .pattern(Some(RESOURCE_ID))
                .examples([serde_json::json!("/subscriptions/dc4d27d9-ea49-4921-938f-7782a774e151/resourceGroups/client-rg/providers/Microsoft.CognitiveServices/accounts/client-face-api")])
        };
        let flags = || {
            array(
            string("A feature flag.").enum_values(Some(Feature::ALL.iter().map(|f| f.as_str()))),
        )
        .min_items(Some(1))
        .description(Some("The features the token grants: each known, and granted to the ISV; a request for more is refused, never narrowed."))
        };
        // The target under either name; both names given is accepted only with equal values.
        let named = |name: &str| {
            ObjectBuilder::new()
                .schema_type(Type::Object)
                .property(name, target())
                .required(name)
                .property("featureFlags", flags())
                .required("featureFlags")
                .build()
        };
        OneOfBuilder::new()
            .description(Some("The target client's resource, as targetAzureResourceId or its older name resourceId (both only if equal), and the feature flags."))
            .item(named("targetAzureResourceId"))
            .item(named("resourceId"))
            .into()
    }
}

impl ToSchema for LatRequest {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("LimitedAccessTokenRequest")
    }
}

/// A bare JWT answer (`application/jwt`): the compact JWS itself, not JSON, so it has no JSON
/// schema.
fn jwt(description: &str) -> ResponseBuilder {
    ResponseBuilder::new()
        .description(description)
        .content("application/jwt", ContentBuilder::new().build())
}

/// The answers both token routes share.
fn token_operation(id: &str, summary: &str) -> OperationBuilder {
    let no_key = "No key, several keys, or a key of no resource (code \"401\").";
    OperationBuilder::new()
        .operation_id(Some(id))
        .tag("STS")
        .summary(Some(summary))
        .security(SecurityRequirement::new::<_, _, &str>(
            "subscriptionKey",
            [],
        ))
        .response("401", error_response(no_key))
        .response("413", error_response("A body larger than 16 KiB."))
        .response("429", too_many_requests())
        .response(
            "503",
            error_response("The audit log or the store cannot be written: nothing was issued."),
        )
}

fn limited_access_token() -> OperationBuilder {
    token_operation(
        "issueLimitedAccessToken",
        "An approved ISV issues a limited access token for a client's resource.",
    )
    .parameter(query_parameter(
        "expiredTime",
        integer(
            60,
            86_400,
            "The token's lifetime in seconds; 3600 when absent. At most once.",
        )
        .default(Some(3600.into())),
    ))
    .request_body(Some(json_body(schema_ref::<LatRequest>()).build()))
    .response("200", jwt("The limited access token (typ lat+jwt)."))
    .response(
        "400",
        error_response(
            "BadArgument: the message says what is wrong (Azure's texts for Azure's cases).",
        ),
    )
}

fn access_token() -> OperationBuilder {
    let refresh = HeaderBuilder::new()
        .schema(string("An RFC 3339 time.").format(Some(
            utoipa::openapi::SchemaFormat::KnownFormat(utoipa::openapi::KnownFormat::DateTime),
        )))
        .description(Some("When to fetch the next token."))
        .build();
    token_operation(
        "issueToken",
        "Exchange a key for a 10-minute bearer token (typ at+jwt). A body is read only to bound it.",
    )
    .response(
        "200",
        jwt("The access token (typ at+jwt).").header("Latch-Refresh-By", refresh),
    )
}

/// `GET /.well-known/jwks.json`: the public keys.
fn jwks() -> OperationBuilder {
    let key = ObjectBuilder::new()
        .schema_type(Type::Object)
        .property("kty", string("`EC`."))
        .property("crv", string("`P-256`."))
        .property(
            "kid",
            string("The key id, the `kid` of the tokens it signs."),
        )
        .property("x", string("base64url."))
        .property("y", string("base64url."))
        .property("alg", string("`ES256`."))
        .property("use", string("`sig`."))
        .required("kty")
        .required("crv")
        .required("kid")
        .required("x")
        .required("y");
    let keys = ObjectBuilder::new()
        .schema_type(Type::Object)
        .property("keys", array(key))
        .required("keys");
    OperationBuilder::new()
        .operation_id(Some("jwks"))
        .tag("Discovery")
        .summary(Some("The public keys that verify the tokens."))
        .response("200", plain_json("The JWKS.", keys))
}

/// The issuer metadata (RFC 8414), with the two token kinds.
fn metadata(id: &str) -> OperationBuilder {
    let kind = || {
        ObjectBuilder::new()
            .schema_type(Type::Object)
            .property("typ", string("The JWT `typ`."))
            .property("aud", string("The audience."))
            .property(
                "max_lifetime_secs",
                ObjectBuilder::new().schema_type(Type::Integer),
            )
            .required("typ")
            .required("aud")
            .required("max_lifetime_secs")
    };
    let kinds = ObjectBuilder::new()
        .schema_type(Type::Object)
        .property("limited_access", kind())
        .property("access", kind())
        .required("limited_access")
        .required("access");
    let mut meta = ObjectBuilder::new().schema_type(Type::Object);
    for name in [
        "issuer",
        "jwks_uri",
        "token_endpoint",
        "limited_access_token_endpoint",
    ] {
        meta = meta.property(name, string("A URL.")).required(name);
    }
    let meta = meta
        .property(
            "id_token_signing_alg_values_supported",
            array(string("`ES256`.")),
        )
        .required("id_token_signing_alg_values_supported")
        .property("token_kinds", kinds)
        .required("token_kinds");
    OperationBuilder::new()
        .operation_id(Some(id))
        .tag("Discovery")
        .summary(Some(
            "The issuer metadata (RFC 8414) and the two token kinds.",
        ))
        .response("200", plain_json("The metadata.", meta))
}

/// A JSON answer sent as `application/json` (axum's `Json`).
fn plain_json(description: &str, schema: impl Into<RefOr<Schema>>) -> ResponseBuilder {
    ResponseBuilder::new().description(description).content(
        "application/json",
        ContentBuilder::new().schema(Some(schema)).build(),
    )
}

/// The STS's routes, as [`crate::router`] serves them.
pub fn paths() -> OpenApi {
    let paths = PathsBuilder::new()
        .path(
            "/sts/v1.0/issueLimitedAccessToken",
            PathItem::new(HttpMethod::Post, limited_access_token()),
        )
        .path(
            "/sts/v1.0/issueToken",
            PathItem::new(HttpMethod::Post, access_token()),
        )
        .path(
            "/.well-known/jwks.json",
            PathItem::new(HttpMethod::Get, jwks()),
        )
        .path(
            "/.well-known/oauth-authorization-server",
            PathItem::new(HttpMethod::Get, metadata("metadata")),
        )
        .path(
            "/.well-known/openid-configuration",
            PathItem::new(HttpMethod::Get, metadata("openidConfiguration")),
        )
        .path(
            "/openapi.json",
            PathItem::new(HttpMethod::Get, openapi_operation()),
        );
    OpenApiBuilder::new()
        .paths(paths)
        .components(Some(
            ComponentsBuilder::new().schema_from::<LatRequest>().build(),
        ))
        .build()
}
