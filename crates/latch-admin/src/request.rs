//! What can be asked of the administration, as data: the CLI builds these, the HTTP API parses
//! them (`POST /admin/v1/{op}` with the other fields as a JSON body), and one executor runs them.

use latch_core::{FeatureSet, ResourceId, UnixTime};
use serde::{Deserialize, Serialize};

/// One administrative request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(
    tag = "op",
    rename_all = "snake_case",
    rename_all_fields = "camelCase",
    deny_unknown_fields
)]
pub enum AdminRequest {
    /// Every resource.
    ListResources,
    /// One resource.
    ShowResource {
        /// The resource.
        resource_id: ResourceId,
    },
    /// A new resource with two keys (shown once, in the answer).
    CreateResource {
        /// The resource.
        resource_id: ResourceId,
    },
    /// How the resource's Face endpoint authenticates callers.
    SetAuthMode {
        /// The resource.
        resource_id: ResourceId,
        /// `key` or `token`.
        mode: String,
    },
    /// The key slots and their dates, never the keys.
    ListKeys {
        /// The resource.
        resource_id: ResourceId,
    },
    /// A new value for one key (shown once, in the answer).
    RegenerateKey {
        /// The resource.
        resource_id: ResourceId,
        /// `Key1` or `Key2` (also `Primary`, `Secondary`).
        key_name: String,
    },
    /// Allow a resource to issue limited access tokens for these features.
    EnableIsv {
        /// The ISV's resource.
        resource_id: ResourceId,
        /// What it may grant.
        grants: FeatureSet,
    },
    /// Stop a resource from issuing, and revoke every token it issued until now.
    DisableIsv {
        /// The ISV's resource.
        resource_id: ResourceId,
    },
    /// The features approved for a resource directly.
    SetApprovals {
        /// The resource.
        resource_id: ResourceId,
        /// The approved features.
        features: FeatureSet,
    },
    /// Stop an ISV's issuance for a client.
    BlockClient {
        /// The ISV (an ISV caller may omit it: itself).
        #[serde(default)]
        isv_resource_id: Option<ResourceId>,
        /// The client.
        client_resource_id: ResourceId,
    },
    /// Resume an ISV's issuance for a client.
    UnblockClient {
        /// The ISV (an ISV caller may omit it: itself).
        #[serde(default)]
        isv_resource_id: Option<ResourceId>,
        /// The client.
        client_resource_id: ResourceId,
    },
    /// Revoke one token by its `jti`.
    RevokeToken {
        /// The token's id.
        jti: String,
    },
    /// Revoke every token for a client resource issued before a time (default: now). For an
    /// ISV caller, only the tokens it issued.
    RevokeTarget {
        /// The client resource.
        target_resource_id: ResourceId,
        /// Tokens issued before this time; default now.
        #[serde(default)]
        before: Option<UnixTime>,
    },
    /// Revoke every token an ISV issued before a time (default: now).
    RevokeIsv {
        /// The ISV's resource.
        isv_resource_id: ResourceId,
        /// Tokens issued before this time; default now.
        #[serde(default)]
        before: Option<UnixTime>,
    },
    /// A new signing key signs from now on; the old one stays published until its tokens expire.
    RotateSigningKey,
    /// The signing keys, with their dates.
    ListSigningKeys,
    /// Audit records matching every filter given, a page at a time.
    QueryAudit {
        /// One chain.
        #[serde(default)]
        chain: Option<String>,
        /// The ISV involved.
        #[serde(default)]
        isv_resource_id: Option<ResourceId>,
        /// The client (target) resource.
        #[serde(default)]
        target_resource_id: Option<ResourceId>,
        /// One token.
        #[serde(default)]
        jti: Option<String>,
        /// The event type, e.g. `limited_access_token_issued`.
        #[serde(default, rename = "type")]
        kind: Option<String>,
        /// `success` or `failure`.
        #[serde(default)]
        outcome: Option<String>,
        /// A Face operation, e.g. `identify`.
        #[serde(default)]
        operation: Option<String>,
        /// A feature flag.
        #[serde(default)]
        feature: Option<latch_core::Feature>,
        /// From this time (inclusive).
        #[serde(default)]
        from: Option<UnixTime>,
        /// Until this time (exclusive).
        #[serde(default)]
        to: Option<UnixTime>,
        /// The `next` cursor of the previous page.
        #[serde(default)]
        after: Option<i64>,
        /// Records per page (default 100, at most 1000).
        #[serde(default)]
        limit: Option<usize>,
    },
    /// The audit public key, as a JWK: what `audit verify` checks checkpoints with.
    AuditKey,
    /// A fresh signed checkpoint of a chain (default `main`), for an auditor to keep.
    Checkpoint {
        /// The chain.
        #[serde(default)]
        chain: Option<String>,
    },
    /// The RFC 9162 consistency proof that the tree of `second` records (default: all) extends
    /// the tree of `first` records.
    ConsistencyProof {
        /// The chain (default `main`).
        #[serde(default)]
        chain: Option<String>,
        /// The smaller tree's size (a checkpoint the auditor kept).
        first: u64,
        /// The larger tree's size (default: every record now).
        #[serde(default)]
        second: Option<u64>,
    },
    /// The RFC 9162 inclusion proof that record `seq` is in the tree of `size` records
    /// (default: all), with the record as stored.
    InclusionProof {
        /// The chain (default `main`).
        #[serde(default)]
        chain: Option<String>,
        /// The record's sequence number.
        seq: u64,
        /// The tree's size (a checkpoint the auditor kept; default: every record now).
        #[serde(default)]
        size: Option<u64>,
    },
    /// Audit records of one chain after a sequence number, oldest first.
    ReadAudit {
        /// The chain (default `main`).
        #[serde(default)]
        chain: Option<String>,
        /// Records after this sequence number (default 0).
        #[serde(default)]
        after: Option<u64>,
        /// At most this many (default and maximum 1000).
        #[serde(default)]
        limit: Option<usize>,
    },
}

/// Why an admin API request does not parse; the message is the 400's.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    /// The body is not one JSON object (or repeats a member).
    #[error("the body is {0}")]
    Body(latch_core::json::JsonError),
    /// The operation is unknown, or its fields are missing, unknown or of the wrong type.
    #[error("{0}")]
    Fields(serde_json::Error),
}

impl AdminRequest {
    /// The operation's name (`regenerate_key`, ...), as in the path `/admin/v1/{op}`.
    pub fn op(&self) -> String {
        serde_json::to_value(self)
            .ok()
            .and_then(|v| v.get("op").and_then(|o| o.as_str()).map(str::to_owned))
            .unwrap_or_default()
    }

    /// The request's fields without `op`: the HTTP body.
    pub fn body(&self) -> serde_json::Value {
        let mut v = serde_json::to_value(self).unwrap_or_default();
        if let Some(map) = v.as_object_mut() {
            map.remove("op");
        }
        v
    }

    /// Parses `POST /admin/v1/{op}` with `body`.
    pub fn from_http(op: &str, body: &[u8]) -> Result<Self, RequestError> {
        let mut fields = if body.iter().all(u8::is_ascii_whitespace) {
            serde_json::Map::new()
        } else {
            latch_core::json::parse_object(body).map_err(RequestError::Body)?
        };
        fields.insert("op".into(), serde_json::Value::String(op.to_owned()));
        serde_json::from_value(serde_json::Value::Object(fields)).map_err(RequestError::Fields)
    }

    /// The store query a `query_audit` request asks for (`limit` defaults to 100); `None` for
    /// any other request.
    pub fn audit_query(self) -> Option<latch_audit::AuditQuery> {
        let AdminRequest::QueryAudit {
            chain,
            isv_resource_id,
            target_resource_id,
            jti,
            kind,
            outcome,
            operation,
            feature,
            from,
            to,
            after,
            limit,
        } = self
        else {
            return None;
        };
        Some(latch_audit::AuditQuery {
            chain,
            isv: isv_resource_id,
            target: target_resource_id,
            jti,
            kind,
            outcome,
            operation,
            feature,
            from,
            to,
            after,
            limit: limit.unwrap_or(100),
        })
    }

    /// Whether the request changes nothing.
    pub fn is_read_only(&self) -> bool {
        matches!(
            self,
            AdminRequest::ListResources
                | AdminRequest::ShowResource { .. }
                | AdminRequest::ListKeys { .. }
                | AdminRequest::ListSigningKeys
                | AdminRequest::ReadAudit { .. }
                | AdminRequest::QueryAudit { .. }
                | AdminRequest::AuditKey
                | AdminRequest::Checkpoint { .. }
                | AdminRequest::ConsistencyProof { .. }
                | AdminRequest::InclusionProof { .. }
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "/subscriptions/11111111-1111-4111-8111-111111111111/resourceGroups/isv/providers/Microsoft.CognitiveServices/accounts/isv-face";

    #[test]
    fn http_round_trip() {
        let r = AdminRequest::RegenerateKey {
            resource_id: ResourceId::parse(ID).unwrap(),
            key_name: "Key1".into(),
        };
        assert_eq!(r.op(), "regenerate_key");
        assert_eq!(
            r.body(),
            serde_json::json!({"resourceId": ID, "keyName": "Key1"})
        );
        let back = AdminRequest::from_http(&r.op(), r.body().to_string().as_bytes()).unwrap();
        assert_eq!(back, r);
        assert_eq!(
            AdminRequest::from_http("list_resources", b"").unwrap(),
            AdminRequest::ListResources
        );
    }

    #[test]
    fn bad_requests_say_why() {
        assert!(AdminRequest::from_http("nope", b"{}")
            .unwrap_err()
            .to_string()
            .contains("unknown variant"));
        assert!(AdminRequest::from_http("show_resource", b"{}")
            .unwrap_err()
            .to_string()
            .contains("resourceId"));
        assert!(AdminRequest::from_http("show_resource", br#"{"resourceId":"/x"}"#).is_err());
        assert!(
            AdminRequest::from_http("show_resource", br#"{"resourceId":1,"resourceId":2}"#)
                .unwrap_err()
                .to_string()
                .contains("duplicate")
        );
        assert!(AdminRequest::from_http("show_resource", b"[1]").is_err());
        // A misspelt member is refused, not ignored.
        let err = AdminRequest::from_http(
            "unblock_client",
            format!(r#"{{"isvResourceID":"{ID}","clientResourceId":"{ID}"}}"#).as_bytes(),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("unknown field"), "{err}");
    }
}
