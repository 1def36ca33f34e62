//! Client blocks in the PostgreSQL store: an ISV's (or the operator's) refusal to issue tokens
//! for one client resource. A block the operator set is the operator's to lift.

use latch_core::audit::AuditDraft;
use latch_core::{ResourceId, UnixTime};

use super::resources::load_resource;
use super::{pg, PgStore};
use crate::Result;

pub(super) async fn set_client_blocked(
    store: &PgStore,
    isv: &ResourceId,
    client: &ResourceId,
    blocked: bool,
    now: UnixTime,
    audit: &AuditDraft,
) -> Result<()> {
    let (isv, client) = (isv.clone(), client.clone());
    let by = crate::block_owner(&audit.actor);
    store.change(audit, move |tx| {
        Box::pin(async move {
            load_resource(tx, &isv).await?;
            let (isv, client) = (isv.canonical(), client.canonical());
            if blocked {
                tx.execute(
                    "INSERT INTO client_blocks (isv, client, created_at, set_by) VALUES ($1, $2, $3, $4)
                     ON CONFLICT (isv, client) DO UPDATE SET
                       set_by = CASE WHEN excluded.set_by = 'operator' THEN 'operator' ELSE client_blocks.set_by END",
                    &[&isv, &client, &now.0, &by],
                )
                .await
                .map_err(pg)?;
            } else {
                // One statement, so a block the operator sets meanwhile is never lifted by an
                // ISV: it either sees the operator's row (and leaves it) or runs first.
                tx.execute(
                    "DELETE FROM client_blocks WHERE isv = $1 AND client = $2 AND (set_by <> 'operator' OR $3 = 'operator')",
                    &[&isv, &client, &by],
                )
                .await
                .map_err(pg)?;
                let remains = tx
                    .query_opt(
                        "SELECT 1 FROM client_blocks WHERE isv = $1 AND client = $2",
                        &[&isv, &client],
                    )
                    .await
                    .map_err(pg)?;
                if remains.is_some() {
                    return Err(crate::operator_block_refusal());
                }
            }
            Ok(())
        })
    })
    .await
}

pub(super) async fn is_client_blocked(
    store: &PgStore,
    isv: &ResourceId,
    client: &ResourceId,
) -> Result<bool> {
    Ok(store
        .query_opt(
            "SELECT 1 FROM client_blocks WHERE isv = $1 AND client = $2",
            &[&isv.canonical(), &client.canonical()],
        )
        .await?
        .is_some())
}
