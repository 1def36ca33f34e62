//! The text form of an administrative answer, for people (`-o json` prints the answer itself).

use latch_admin::AdminRequest;
use serde_json::{json, Value};

/// The text form of an answer.
pub(super) fn text(request: &AdminRequest, v: &Value) -> String {
    let s = |k: &str| v[k].as_str().unwrap_or_default().to_owned();
    match request {
        AdminRequest::CreateResource { .. } => format!(
            "created {}\nKey1: {}\nKey2: {}\n(the keys are shown this once; only their digests are stored)",
            s("id"),
            s("key1"),
            s("key2")
        ),
        AdminRequest::RegenerateKey { .. } => format!(
            "{name} of {id} regenerated; the old value no longer works.\n{name}: {key}",
            name = s("keyName"),
            id = s("id"),
            key = s("key")
        ),
        AdminRequest::ListResources => lines(v, |r| r["id"].as_str().unwrap_or_default().to_owned()),
        AdminRequest::ListKeys { .. } => lines(v, |k| {
            format!("{}  created {}", k["keyName"].as_str().unwrap_or_default(), k["createdAt"].as_str().unwrap_or_default())
        }),
        AdminRequest::ListSigningKeys => lines(v, |k| {
            let retired = k["retiredAt"].as_str().map(|t| format!("  retired {t}, published until {}", k["publishedUntil"].as_str().unwrap_or_default()));
            format!("{}  created {}{}", k["kid"].as_str().unwrap_or_default(), k["createdAt"].as_str().unwrap_or_default(), retired.unwrap_or_else(|| "  (signing)".into()))
        }),
        AdminRequest::RotateSigningKey => format!("{} signs from now on; the old key stays published until its tokens expire", s("kid")),
        AdminRequest::BlockClient { .. } | AdminRequest::UnblockClient { .. } => {
            let verb = if v["blocked"] == json!(true) { "stopped" } else { "resumed" };
            format!("{} has {verb} issuing tokens for {}", s("isv"), s("client"))
        }
        AdminRequest::RevokeToken { .. } | AdminRequest::RevokeTarget { .. } | AdminRequest::RevokeIsv { .. } => {
            format!("revoked: {}", v["revoked"])
        }
        AdminRequest::ShowResource { .. }
        | AdminRequest::SetAuthMode { .. }
        | AdminRequest::EnableIsv { .. }
        | AdminRequest::DisableIsv { .. }
        | AdminRequest::SetApprovals { .. } => resource_text(v),
        AdminRequest::ReadAudit { .. }
        | AdminRequest::AuditKey
        | AdminRequest::Checkpoint { .. }
        | AdminRequest::ConsistencyProof { .. }
        | AdminRequest::InclusionProof { .. } => {
            serde_json::to_string_pretty(v).unwrap_or_default()
        }
        AdminRequest::QueryAudit { .. } => {
            let mut out = lines(&v["records"], crate::audit::record_line);
            if let Some(next) = v["next"].as_i64() {
                out.push_str(&format!("\n(more: --after {next})"));
            }
            out
        }
    }
}

fn lines(v: &Value, line: impl Fn(&Value) -> String) -> String {
    v.as_array()
        .map(|a| a.iter().map(line).collect::<Vec<_>>().join("\n"))
        .unwrap_or_default()
}

fn resource_text(r: &Value) -> String {
    let list = |k: &str| {
        let items: Vec<&str> = r[k]
            .as_array()
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        if items.is_empty() {
            "none".to_owned()
        } else {
            items.join(",")
        }
    };
    format!(
        "{}\n  created      {}\n  ISV issuance {}\n  ISV grants   {}\n  approvals    {}\n  auth mode    {}",
        r["id"].as_str().unwrap_or_default(),
        r["createdAt"].as_str().unwrap_or_default(),
        if r["isvEnabled"] == json!(true) { "enabled" } else { "disabled" },
        list("isvGrants"),
        list("approvals"),
        r["authMode"].as_str().unwrap_or_default()
    )
}
