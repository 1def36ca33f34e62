//! Revoking tokens already issued: one token, a client's, an ISV's.

use latch_core::{ResourceId, UnixTime};
use latch_store::operations::Admin;
use latch_store::Revocation;
use serde_json::{json, Value};

use crate::Context;
use crate::{AdminError, Caller};

/// One token, by `jti`; an ISV may revoke only the tokens it issued.
pub(super) async fn token(
    ctx: &Context,
    admin: &Admin,
    caller: &Caller,
    jti: String,
) -> Result<Value, AdminError> {
    if jti.is_empty() || jti.len() > 128 {
        return Err(AdminError::BadRequest(
            "jti must be 1 to 128 characters".into(),
        ));
    }
    if let Caller::Isv { resource, .. } = caller {
        let issuer = ctx.store.issuer_of(&jti).await?;
        if issuer.as_deref() != Some(resource.id.canonical()) {
            return Err(AdminError::Forbidden(
                "an ISV may revoke only tokens it issued".into(),
            ));
        }
    }
    // The token's own expiry is not needed: no token lives longer than the maximum.
    let expires = ctx
        .clock
        .now()
        .plus(i64::from(latch_core::Lifetime::MAX_SECS));
    admin
        .revoke(&Revocation::Token {
            jti: jti.clone(),
            expires,
        })
        .await?;
    Ok(json!({ "revoked": { "jti": jti } }))
}

/// Every token for a client issued before a time (an ISV's: only the ones it issued).
pub(super) async fn target(
    ctx: &Context,
    admin: &Admin,
    caller: &Caller,
    target: ResourceId,
    before: Option<UnixTime>,
) -> Result<Value, AdminError> {
    let before = revocation_time(before, ctx.clock.now())?;
    let revocation = match caller {
        Caller::Isv { resource, .. } => Revocation::IsvTargetBefore {
            isv: resource.id.clone(),
            target: target.clone(),
            before,
        },
        _ => Revocation::TargetBefore {
            target: target.clone(),
            before,
        },
    };
    admin.revoke(&revocation).await?;
    Ok(json!({ "revoked": { "target": target.as_str(), "issuedBefore": before.to_rfc3339() } }))
}

/// Every token an ISV issued before a time.
pub(super) async fn isv(
    ctx: &Context,
    admin: &Admin,
    isv: ResourceId,
    before: Option<UnixTime>,
) -> Result<Value, AdminError> {
    let before = revocation_time(before, ctx.clock.now())?;
    admin
        .revoke(&Revocation::IsvBefore {
            isv: isv.clone(),
            before,
        })
        .await?;
    Ok(json!({ "revoked": { "isv": isv.as_str(), "issuedBefore": before.to_rfc3339() } }))
}

/// The "before" of a revocation: default the next second (so tokens issued this second are
/// covered); never later than that, since no token can have been issued in the future, and
/// an entry reaching into the future would never expire.
fn revocation_time(before: Option<UnixTime>, now: UnixTime) -> Result<UnixTime, AdminError> {
    match before {
        None => Ok(now.plus(1)),
        Some(t) if t <= now.plus(1) => Ok(t),
        Some(_) => Err(AdminError::BadRequest(
            "before must not be in the future".into(),
        )),
    }
}
