//! Audit records as CSV rows (RFC 4180), for spreadsheets. CSV is for reading; the JSON-lines
//! export is the one that verifies.

use serde_json::Value;

/// The header row.
pub const HEADER: &str = "chain,seq,time,type,outcome,actor,isv,target,jti,features,lifetime_secs,operation,reason,request_id";

fn field(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        Value::Array(items) => items.iter().map(field).collect::<Vec<_>>().join(" "),
        other => other.to_string(),
    }
}

fn quote(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_owned()
    }
}

/// One record's body as a CSV row.
pub fn row(body: &str) -> String {
    let r: Value = serde_json::from_str(body).unwrap_or(Value::Null);
    let e = &r["event"];
    let actor = match r["actor"]["kind"].as_str() {
        Some("resource") | Some("access_token") => field(&r["actor"]["resource"]),
        Some(kind) => kind.to_owned(),
        None => String::new(),
    };
    let time = r["time"]
        .as_i64()
        .map(|t| latch_core::UnixTime(t).to_rfc3339())
        .unwrap_or_default();
    let target = [&e["target"], &e["resource"], &e["client"]]
        .into_iter()
        .find(|v| !v.is_null())
        .map(field)
        .unwrap_or_default();
    let cells = [
        field(&r["chain"]),
        field(&r["seq"]),
        time,
        field(&e["type"]),
        field(&e["outcome"]),
        actor,
        field(&e["isv"]),
        target,
        field(&e["jti"]),
        field(&e["features"]),
        field(&e["lifetime_secs"]),
        field(&e["operation"]),
        field(&e["reason"]),
        field(&r["request_id"]),
    ];
    cells.iter().map(|c| quote(c)).collect::<Vec<_>>().join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_quote_what_needs_quoting() {
        let body = r#"{"chain":"main","seq":3,"prev_hash":"x","time":0,"actor":{"kind":"anonymous"},"event":{"type":"limited_access_token_refused","isv":null,"target":null,"features":["Face.Identification","Face.Verification"],"reason":"a,\"b\"","status":400}}"#;
        assert_eq!(
            row(body),
            r#"main,3,1970-01-01T00:00:00Z,limited_access_token_refused,,anonymous,,,,Face.Identification Face.Verification,,,"a,""b""","#
        );
    }
}
