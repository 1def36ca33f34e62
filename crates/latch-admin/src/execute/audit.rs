//! The audit log, read: queries, the audit key, signed checkpoints, proofs, records.

use latch_audit::AuditError;
use serde_json::{json, Value};

use crate::AdminError;
use crate::Context;

/// The chain a request names, or `main`.
fn chain_or_main(chain: Option<String>) -> String {
    chain.unwrap_or_else(|| "main".into())
}

/// A proof asked for sizes the log cannot answer is the caller's mistake (400).
fn proof_refused(e: AuditError) -> AdminError {
    match e {
        AuditError::Refused(why) => AdminError::BadRequest(why),
        other => other.into(),
    }
}

/// Records that match `query`, a page at a time.
pub(super) async fn query(
    ctx: &Context,
    mut query: latch_audit::AuditQuery,
) -> Result<Value, AdminError> {
    query.limit = query.limit.clamp(1, 1000);
    let (records, next) = ctx.store.query_audit(&query).await?;
    Ok(json!({
        "records": records.iter().map(|r| serde_json::from_str(&r.body).unwrap_or(Value::Null)).collect::<Vec<Value>>(),
        "next": next,
    }))
}

/// The audit key's public half, as a JWK.
pub(super) fn key(ctx: &Context) -> Value {
    serde_json::to_value(ctx.audit.key().public_key().to_jwk()).unwrap_or(Value::Null)
}

/// A checkpoint of a chain, signed now.
pub(super) async fn checkpoint(ctx: &Context, chain: Option<String>) -> Result<Value, AdminError> {
    let chain = chain_or_main(chain);
    if !ctx.store.audit_chains().await?.contains(&chain) {
        return Err(AdminError::NotFound(format!(
            "no audit chain named {chain}"
        )));
    }
    let cp = latch_audit::signer::checkpoint(
        ctx.store.as_ref(),
        &ctx.audit,
        &chain,
        ctx.rng.as_ref(),
        ctx.clock.as_ref(),
    )
    .await?;
    Ok(serde_json::to_value(cp).unwrap_or(Value::Null))
}

/// That the chain at `second` records (its head by default) extends the chain at `first`.
pub(super) async fn consistency(
    ctx: &Context,
    chain: Option<String>,
    first: u64,
    second: Option<u64>,
) -> Result<Value, AdminError> {
    let chain = chain_or_main(chain);
    let second = match second {
        Some(n) => n,
        None => ctx.store.audit_head(&chain).await?,
    };
    let p = latch_audit::proofs::consistency(ctx.store.as_ref(), &chain, first, second)
        .await
        .map_err(proof_refused)?;
    let b64 = latch_core::jws::b64url;
    Ok(json!({
        "chain": chain,
        "first": first,
        "second": second,
        "firstRoot": b64(p.first_root),
        "secondRoot": b64(p.second_root),
        "proof": p.proof.into_iter().map(b64).collect::<Vec<_>>(),
    }))
}

/// That record `seq` is in the chain at `size` records (its head by default).
pub(super) async fn inclusion(
    ctx: &Context,
    chain: Option<String>,
    seq: u64,
    size: Option<u64>,
) -> Result<Value, AdminError> {
    let chain = chain_or_main(chain);
    let size = match size {
        Some(n) => n,
        None => ctx.store.audit_head(&chain).await?,
    };
    let p = latch_audit::proofs::inclusion(ctx.store.as_ref(), &chain, seq, size)
        .await
        .map_err(proof_refused)?;
    // The record as stored, byte for byte: its leaf hash is the first step of the proof.
    let record = ctx
        .store
        .audit_records(&chain, seq - 1, 1)
        .await?
        .into_iter()
        .find(|r| r.seq == seq)
        .ok_or_else(|| AdminError::NotFound(format!("record {seq} of chain {chain}")))?;
    let b64 = latch_core::jws::b64url;
    Ok(json!({
        "chain": chain,
        "seq": seq,
        "size": size,
        "record": record.body,
        "leaf": b64(p.leaf),
        "root": b64(p.root),
        "proof": p.proof.into_iter().map(b64).collect::<Vec<_>>(),
    }))
}

/// Up to `limit` (at most 1,000) records of a chain after `after`.
pub(super) async fn read(
    ctx: &Context,
    chain: Option<String>,
    after: Option<u64>,
    limit: Option<usize>,
) -> Result<Value, AdminError> {
    let chain = chain_or_main(chain);
    let records = ctx
        .store
        .audit_records(&chain, after.unwrap_or(0), limit.unwrap_or(1000).min(1000))
        .await?;
    Ok(records
        .iter()
        .map(|r| serde_json::from_str(&r.body).unwrap_or(Value::Null))
        .collect())
}
