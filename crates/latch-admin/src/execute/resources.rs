//! Resources and their keys, ISV grants and approvals, client blocks, signing keys.

use latch_core::audit::KeySlot;
use latch_core::{FeatureSet, ResourceId};
use latch_store::operations::Admin;
use latch_store::AuthMode;
use serde_json::{json, Value};

use crate::Context;
use crate::{resource_json, AdminError, Caller};

pub(super) async fn list(ctx: &Context) -> Result<Value, AdminError> {
    let resources = ctx.store.resources().await?;
    Ok(resources.iter().map(resource_json).collect())
}

pub(super) async fn show(ctx: &Context, id: &ResourceId) -> Result<Value, AdminError> {
    let r = ctx
        .store
        .resource(id)
        .await?
        .ok_or_else(|| AdminError::NotFound(format!("resource {id} not found")))?;
    Ok(resource_json(&r))
}

/// A new resource, with its two keys (shown this once).
pub(super) async fn create(admin: &Admin, id: &ResourceId) -> Result<Value, AdminError> {
    let (r, keys) = admin.create_resource(id).await?;
    let mut v = resource_json(&r);
    v["key1"] = json!(keys.key1.expose_secret());
    v["key2"] = json!(keys.key2.expose_secret());
    Ok(v)
}

pub(super) async fn set_auth_mode(
    admin: &Admin,
    id: &ResourceId,
    mode: &str,
) -> Result<Value, AdminError> {
    let mode = AuthMode::parse(mode)
        .ok_or_else(|| AdminError::BadRequest("mode is key or token".into()))?;
    Ok(resource_json(&admin.set_auth_mode(id, mode).await?))
}

/// The key slots and when each key was made; never the keys.
pub(super) async fn list_keys(admin: &Admin, id: &ResourceId) -> Result<Value, AdminError> {
    let keys = admin.keys(id).await?;
    Ok(keys
        .iter()
        .map(|k| json!({ "keyName": k.slot.to_string(), "createdAt": k.created_at.to_rfc3339() }))
        .collect())
}

/// A new key in one slot (shown this once); the other slot's key keeps working.
pub(super) async fn regenerate_key(
    admin: &Admin,
    id: &ResourceId,
    key_name: &str,
) -> Result<Value, AdminError> {
    let slot = KeySlot::parse(key_name)
        .ok_or_else(|| AdminError::BadRequest(format!("'{key_name}' is not Key1 or Key2")))?;
    let key = admin.regenerate_key(id, slot).await?;
    Ok(json!({ "id": id.as_str(), "keyName": slot.to_string(), "key": key.expose_secret() }))
}

pub(super) async fn enable_isv(
    admin: &Admin,
    id: &ResourceId,
    grants: &FeatureSet,
) -> Result<Value, AdminError> {
    if grants.is_empty() {
        return Err(AdminError::BadRequest(
            "give at least one feature to grant".into(),
        ));
    }
    Ok(resource_json(&admin.set_isv(id, true, grants).await?))
}

pub(super) async fn disable_isv(admin: &Admin, id: &ResourceId) -> Result<Value, AdminError> {
    Ok(resource_json(&admin.disable_isv(id).await?))
}

pub(super) async fn set_approvals(
    admin: &Admin,
    id: &ResourceId,
    features: &FeatureSet,
) -> Result<Value, AdminError> {
    Ok(resource_json(&admin.set_approvals(id, features).await?))
}

/// Blocks or unblocks `client` for an ISV: the named one, or the calling ISV itself.
pub(super) async fn set_block(
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

/// The signing keys, with when each leaves the JWKS.
pub(super) async fn list_signing_keys(ctx: &Context) -> Result<Value, AdminError> {
    let keys = ctx.store.signing_keys().await?;
    Ok(keys
        .iter()
        .map(|k| {
            json!({
                "kid": k.kid,
                "createdAt": k.created_at.to_rfc3339(),
                "retiredAt": k.retired_at.map(|t| t.to_rfc3339()),
                "publishedUntil": k.retired_at.map(|t| t.plus(latch_store::signing::RETENTION_SECS).to_rfc3339()),
            })
        })
        .collect())
}
