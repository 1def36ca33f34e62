//! latch administration: who may ask what, and the one place where it is done.
//!
//! * [`request::AdminRequest`]: every administrative request, as data;
//! * [`Caller`] and [`authorize`]: the three credentials and what each may do;
//! * [`execute`]: runs an authorized request against the store (each change is committed
//!   with its audit record by the store) and returns its JSON answer;
//! * [`http::router`]: the admin HTTP API, `POST /admin/v1/{op}`.
//!
//! The command line runs the same [`execute`] on the local store (as the local operator), or
//! sends the same request to the API, so both print the same JSON.
//!
//! | caller | credential | may |
//! |---|---|---|
//! | operator | `Authorization: Bearer <operator token>` | everything |
//! | auditor | `Authorization: Bearer <auditor token>` | read: resources, key slots, signing keys (and the audit log) |
//! | ISV | `Ocp-Apim-Subscription-Key` of an enabled ISV resource | its own resource and keys, its own client blocks, revoking its own tokens |
//!
//! Any other resource key (a client's) is refused, and so is every request the caller's row
//! does not allow: 403 with a message that says which.

use std::sync::Arc;

use latch_audit::AuditError;
use latch_core::audit::{Actor, KeySlot};
use latch_core::{Clock, ResourceId};
use latch_store::operations::Admin;
use latch_store::{AuthMode, Resource, Revocation, Store, StoreError};
use ring::rand::SecureRandom;
use serde_json::{json, Value};

pub mod csv;
pub mod http;
pub mod request;

pub use request::AdminRequest;

/// Who is asking.
#[derive(Clone, Debug)]
pub enum Caller {
    /// The operator, through the command line on the store itself.
    LocalOperator,
    /// The operator, through the API.
    Operator,
    /// The auditor.
    Auditor,
    /// An ISV, by one of its resource's keys.
    Isv {
        /// Its resource.
        resource: Box<Resource>,
        /// The key it used.
        slot: KeySlot,
    },
}

impl Caller {
    fn actor(&self) -> Actor {
        match self {
            Caller::LocalOperator => Actor::LocalOperator,
            Caller::Operator => Actor::Operator,
            // The auditor changes nothing, so it is never an actor of a change.
            Caller::Auditor => Actor::Anonymous,
            Caller::Isv { resource, slot } => Actor::Resource {
                resource: resource.id.clone(),
                slot: *slot,
            },
        }
    }
}

/// A refused or failed administrative request.
#[derive(Debug, PartialEq, Eq)]
pub enum AdminError {
    /// No valid credential.
    Unauthorized,
    /// The credential may not make this request; the message says why.
    Forbidden(String),
    /// The request is malformed.
    BadRequest(String),
    /// What it names does not exist.
    NotFound(String),
    /// What it creates exists.
    Conflict(String),
    /// The store failed.
    Unavailable,
}

/// A proof asked for sizes the log cannot answer is the caller's mistake (400).
fn proof_refused(e: AuditError) -> AdminError {
    match e {
        AuditError::Refused(why) => AdminError::BadRequest(why),
        other => other.into(),
    }
}

/// The audit log fails as the store does (it is kept there), and is answered alike.
impl From<AuditError> for AdminError {
    fn from(e: AuditError) -> Self {
        StoreError::from(e).into()
    }
}

impl From<StoreError> for AdminError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound(_) | StoreError::FaceNotFound(_) => {
                AdminError::NotFound(e.to_string())
            }
            StoreError::AlreadyExists(_) | StoreError::FaceExists(_) => {
                AdminError::Conflict(e.to_string())
            }
            StoreError::Refused(why) => AdminError::Forbidden(why),
            StoreError::Unavailable(_) | StoreError::Corrupt(_) | StoreError::Internal(_) => {
                tracing::error!(target: "latch::admin", error = %e, "store call failed");
                AdminError::Unavailable
            }
        }
    }
}

/// Whether `caller` may make `request`. ISV requests that name a token are checked again by
/// [`execute`], which knows who issued it.
pub fn authorize(caller: &Caller, request: &AdminRequest) -> Result<(), AdminError> {
    let forbid = |why: &str| Err(AdminError::Forbidden(why.to_owned()));
    match caller {
        Caller::LocalOperator | Caller::Operator => Ok(()),
        Caller::Auditor if request.is_read_only() => Ok(()),
        Caller::Isv { .. }
            if matches!(
                request,
                AdminRequest::ReadAudit { .. }
                    | AdminRequest::QueryAudit { .. }
                    | AdminRequest::Checkpoint { .. }
            ) =>
        {
            forbid("the audit log is for the operator and the auditor")
        }
        Caller::Auditor => forbid("the auditor credential is read-only"),
        Caller::Isv { resource, .. } => {
            let own = |id: &ResourceId| *id == resource.id;
            match request {
                AdminRequest::ShowResource { resource_id }
                | AdminRequest::ListKeys { resource_id }
                | AdminRequest::RegenerateKey { resource_id, .. }
                    if own(resource_id) =>
                {
                    Ok(())
                }
                AdminRequest::ShowResource { .. }
                | AdminRequest::ListKeys { .. }
                | AdminRequest::RegenerateKey { .. } => {
                    forbid("an ISV may manage only its own resource and keys")
                }
                AdminRequest::BlockClient {
                    isv_resource_id, ..
                }
                | AdminRequest::UnblockClient {
                    isv_resource_id, ..
                } => {
                    if isv_resource_id.as_ref().is_none_or(own) {
                        Ok(())
                    } else {
                        forbid("an ISV may block and unblock clients only for itself")
                    }
                }
                AdminRequest::RevokeToken { .. } | AdminRequest::RevokeTarget { .. } => Ok(()),
                _ => forbid("this request is the operator's"),
            }
        }
    }
}

/// What [`execute`] needs.
#[derive(Clone)]
pub struct Context {
    /// The store.
    pub store: Arc<dyn Store>,
    /// Randomness for keys.
    pub rng: Arc<dyn SecureRandom + Send + Sync>,
    /// The audit key and signed heads (outside the store).
    pub audit: Arc<latch_audit::checkpoints::AuditSigner>,
    /// The clock.
    pub clock: Arc<dyn Clock>,
}

/// Authorizes and runs `request` for `caller`; returns the JSON answer.
pub async fn execute(
    ctx: &Context,
    caller: &Caller,
    request: AdminRequest,
) -> Result<Value, AdminError> {
    authorize(caller, &request)?;
    let admin = Admin::new(
        ctx.store.clone(),
        ctx.rng.clone(),
        ctx.clock.clone(),
        caller.actor(),
    );
    let now = ctx.clock.now();
    let resource = |r: &Resource| resource_json(r);
    Ok(match request {
        AdminRequest::ListResources => Value::Array(ctx.store.resources().await?.iter().map(resource).collect()),
        AdminRequest::ShowResource { resource_id } => {
            let r = ctx
                .store
                .resource(&resource_id)
                .await?
                .ok_or_else(|| AdminError::NotFound(format!("resource {resource_id} not found")))?;
            resource(&r)
        }
        AdminRequest::CreateResource { resource_id } => {
            let (r, keys) = admin.create_resource(&resource_id).await?;
            let mut v = resource(&r);
            v["key1"] = json!(keys.key1.expose_secret());
            v["key2"] = json!(keys.key2.expose_secret());
            v
        }
        AdminRequest::SetAuthMode { resource_id, mode } => {
            let mode = AuthMode::parse(&mode).ok_or_else(|| AdminError::BadRequest("mode is key or token".into()))?;
            resource(&admin.set_auth_mode(&resource_id, mode).await?)
        }
        AdminRequest::ListKeys { resource_id } => Value::Array(
            admin
                .keys(&resource_id)
                .await?
                .iter()
                .map(|k| json!({ "keyName": k.slot.to_string(), "createdAt": k.created_at.to_rfc3339() }))
                .collect(),
        ),
        AdminRequest::RegenerateKey { resource_id, key_name } => {
            let slot = KeySlot::parse(&key_name)
                .ok_or_else(|| AdminError::BadRequest(format!("'{key_name}' is not Key1 or Key2")))?;
            let key = admin.regenerate_key(&resource_id, slot).await?;
            json!({ "id": resource_id.as_str(), "keyName": slot.to_string(), "key": key.expose_secret() })
        }
        AdminRequest::EnableIsv { resource_id, grants } => {
            if grants.is_empty() {
                return Err(AdminError::BadRequest("give at least one feature to grant".into()));
            }
            resource(&admin.set_isv(&resource_id, true, &grants).await?)
        }
        AdminRequest::DisableIsv { resource_id } => resource(&admin.disable_isv(&resource_id).await?),
        AdminRequest::SetApprovals { resource_id, features } => resource(&admin.set_approvals(&resource_id, &features).await?),
        AdminRequest::BlockClient {
            isv_resource_id,
            client_resource_id,
        } => set_block(&admin, caller, isv_resource_id, &client_resource_id, true).await?,
        AdminRequest::UnblockClient {
            isv_resource_id,
            client_resource_id,
        } => set_block(&admin, caller, isv_resource_id, &client_resource_id, false).await?,
        AdminRequest::RevokeToken { jti } => {
            if jti.is_empty() || jti.len() > 128 {
                return Err(AdminError::BadRequest("jti must be 1 to 128 characters".into()));
            }
            if let Caller::Isv { resource, .. } = caller {
                let issuer = ctx.store.issuer_of(&jti).await?;
                if issuer.as_deref() != Some(resource.id.canonical()) {
                    return Err(AdminError::Forbidden("an ISV may revoke only tokens it issued".into()));
                }
            }
            // The token's own expiry is not needed: no token lives longer than the maximum.
            let expires = now.plus(i64::from(latch_core::Lifetime::MAX_SECS));
            admin.revoke(&Revocation::Token { jti: jti.clone(), expires }).await?;
            json!({ "revoked": { "jti": jti } })
        }
        AdminRequest::RevokeTarget { target_resource_id, before } => {
            let before = revocation_time(before, now)?;
            let revocation = match caller {
                Caller::Isv { resource, .. } => Revocation::IsvTargetBefore {
                    isv: resource.id.clone(),
                    target: target_resource_id.clone(),
                    before,
                },
                _ => Revocation::TargetBefore {
                    target: target_resource_id.clone(),
                    before,
                },
            };
            admin.revoke(&revocation).await?;
            json!({ "revoked": { "target": target_resource_id.as_str(), "issuedBefore": before.to_rfc3339() } })
        }
        AdminRequest::RevokeIsv { isv_resource_id, before } => {
            let before = revocation_time(before, now)?;
            admin
                .revoke(&Revocation::IsvBefore {
                    isv: isv_resource_id.clone(),
                    before,
                })
                .await?;
            json!({ "revoked": { "isv": isv_resource_id.as_str(), "issuedBefore": before.to_rfc3339() } })
        }
        AdminRequest::RotateSigningKey => json!({ "kid": admin.rotate_signing_key().await? }),
        AdminRequest::QueryAudit {
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
        } => {
            let query = latch_audit::AuditQuery {
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
                limit: limit.unwrap_or(100).clamp(1, 1000),
            };
            let (records, next) = ctx.store.query_audit(&query).await?;
            json!({
                "records": records.iter().map(|r| serde_json::from_str(&r.body).unwrap_or(Value::Null)).collect::<Vec<Value>>(),
                "next": next,
            })
        }
        AdminRequest::AuditKey => {
            serde_json::to_value(ctx.audit.key().public_key().to_jwk()).unwrap_or(Value::Null)
        }
        AdminRequest::Checkpoint { chain } => {
            let chain = chain.unwrap_or_else(|| "main".into());
            if !ctx.store.audit_chains().await?.contains(&chain) {
                return Err(AdminError::NotFound(format!("no audit chain named {chain}")));
            }
            let cp = latch_audit::checkpoints::checkpoint(ctx.store.as_ref(), &ctx.audit, &chain, ctx.rng.as_ref(), ctx.clock.as_ref()).await?;
            serde_json::to_value(cp).unwrap_or(Value::Null)
        }
        AdminRequest::ConsistencyProof { chain, first, second } => {
            let chain = chain.unwrap_or_else(|| "main".into());
            let second = match second {
                Some(n) => n,
                None => ctx.store.audit_head(&chain).await?,
            };
            let p = latch_audit::proofs::consistency(ctx.store.as_ref(), &chain, first, second)
                .await
                .map_err(proof_refused)?;
            let b64 = latch_core::jws::b64url;
            json!({
                "chain": chain,
                "first": first,
                "second": second,
                "firstRoot": b64(p.first_root),
                "secondRoot": b64(p.second_root),
                "proof": p.proof.into_iter().map(b64).collect::<Vec<_>>(),
            })
        }
        AdminRequest::InclusionProof { chain, seq, size } => {
            let chain = chain.unwrap_or_else(|| "main".into());
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
            json!({
                "chain": chain,
                "seq": seq,
                "size": size,
                "record": record.body,
                "leaf": b64(p.leaf),
                "root": b64(p.root),
                "proof": p.proof.into_iter().map(b64).collect::<Vec<_>>(),
            })
        }
        AdminRequest::ReadAudit { chain, after, limit } => {
            let chain = chain.unwrap_or_else(|| "main".into());
            let records = ctx
                .store
                .audit_records(&chain, after.unwrap_or(0), limit.unwrap_or(1000).min(1000))
                .await?;
            Value::Array(
                records
                    .iter()
                    .map(|r| serde_json::from_str(&r.body).unwrap_or(Value::Null))
                    .collect(),
            )
        }
        AdminRequest::ListSigningKeys => Value::Array(
            ctx.store
                .signing_keys()
                .await?
                .iter()
                .map(|k| {
                    json!({
                        "kid": k.kid,
                        "createdAt": k.created_at.to_rfc3339(),
                        "retiredAt": k.retired_at.map(|t| t.to_rfc3339()),
                        "publishedUntil": k.retired_at.map(|t| t.plus(latch_store::signing::RETENTION_SECS).to_rfc3339()),
                    })
                })
                .collect(),
        ),
    })
}

/// The "before" of a revocation: default the next second (so tokens issued this second are
/// covered); never later than that, since no token can have been issued in the future, and
/// an entry reaching into the future would never expire.
fn revocation_time(
    before: Option<latch_core::UnixTime>,
    now: latch_core::UnixTime,
) -> Result<latch_core::UnixTime, AdminError> {
    match before {
        None => Ok(now.plus(1)),
        Some(t) if t <= now.plus(1) => Ok(t),
        Some(_) => Err(AdminError::BadRequest(
            "before must not be in the future".into(),
        )),
    }
}

/// Blocks or unblocks `client` for an ISV: the named one, or the calling ISV itself.
async fn set_block(
    admin: &Admin,
    caller: &Caller,
    isv: Option<ResourceId>,
    client: &ResourceId,
    blocked: bool,
) -> Result<Value, AdminError> {
    let isv = match (isv, caller) {
        (Some(isv), _) => isv,
        (None, Caller::Isv { resource, .. }) => resource.id.clone(),
        (None, _) => return Err(AdminError::BadRequest("isvResourceId is required".into())),
    };
    admin.set_client_blocked(&isv, client, blocked).await?;
    Ok(json!({ "isv": isv.as_str(), "client": client.as_str(), "blocked": blocked }))
}

/// A resource's JSON form.
pub fn resource_json(r: &Resource) -> Value {
    json!({
        "id": r.id.as_str(),
        "createdAt": r.created_at.to_rfc3339(),
        "isvEnabled": r.isv_enabled,
        "isvGrants": r.isv_grants,
        "approvals": r.approvals,
        "authMode": r.auth_mode.as_str(),
    })
}

#[cfg(test)]
mod tests;
