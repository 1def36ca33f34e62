//! Running an authorized request: one function per request, in a module per domain.

use latch_store::operations::Admin;
use serde_json::{json, Value};

use crate::{authorize, AdminError, AdminRequest, Caller, Context};

mod audit;
mod resources;
mod revocations;

/// Authorizes and runs `request` for `caller`; returns the JSON answer.
pub async fn execute(
    ctx: &Context,
    caller: &Caller,
    request: AdminRequest,
) -> Result<Value, AdminError> {
    use AdminRequest as R;
    authorize(caller, &request)?;
    let admin = &Admin::new(
        ctx.store.clone(),
        ctx.rng.clone(),
        ctx.clock.clone(),
        caller.actor(),
    );
    match request {
        R::ListResources => resources::list(ctx).await,
        R::ShowResource { resource_id } => resources::show(ctx, &resource_id).await,
        R::CreateResource { resource_id } => resources::create(admin, &resource_id).await,
        R::SetAuthMode { resource_id, mode } => {
            resources::set_auth_mode(admin, &resource_id, &mode).await
        }
        R::ListKeys { resource_id } => resources::list_keys(admin, &resource_id).await,
        R::RegenerateKey {
            resource_id,
            key_name,
        } => resources::regenerate_key(admin, &resource_id, &key_name).await,
        R::EnableIsv {
            resource_id,
            grants,
        } => resources::enable_isv(admin, &resource_id, &grants).await,
        R::DisableIsv { resource_id } => resources::disable_isv(admin, &resource_id).await,
        R::SetApprovals {
            resource_id,
            features,
        } => resources::set_approvals(admin, &resource_id, &features).await,
        R::BlockClient {
            isv_resource_id,
            client_resource_id,
        } => resources::set_block(admin, caller, isv_resource_id, &client_resource_id, true).await,
        R::UnblockClient {
            isv_resource_id,
            client_resource_id,
        } => resources::set_block(admin, caller, isv_resource_id, &client_resource_id, false).await,
        R::RevokeToken { jti } => revocations::token(ctx, admin, caller, jti).await,
        R::RevokeTarget {
            target_resource_id,
            before,
        } => revocations::target(ctx, admin, caller, target_resource_id, before).await,
        R::RevokeIsv {
            isv_resource_id,
            before,
        } => revocations::isv(ctx, admin, isv_resource_id, before).await,
        R::RotateSigningKey => Ok(json!({ "kid": admin.rotate_signing_key().await? })),
        R::ListSigningKeys => resources::list_signing_keys(ctx).await,
        request @ R::QueryAudit { .. } => match request.audit_query() {
            Some(query) => audit::query(ctx, query).await,
            None => Err(AdminError::BadRequest("not an audit query".into())),
        },
        R::AuditKey => Ok(audit::key(ctx)),
        R::Checkpoint { chain } => audit::checkpoint(ctx, chain).await,
        R::ConsistencyProof {
            chain,
            first,
            second,
        } => audit::consistency(ctx, chain, first, second).await,
        R::InclusionProof { chain, seq, size } => audit::inclusion(ctx, chain, seq, size).await,
        R::ReadAudit {
            chain,
            after,
            limit,
        } => audit::read(ctx, chain, after, limit).await,
    }
}
