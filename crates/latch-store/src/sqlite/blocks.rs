//! Client blocks in the embedded store: an ISV's (or the operator's) refusal to issue tokens
//! for one client resource. A block the operator set is the operator's to lift.

use latch_core::audit::AuditDraft;
use latch_core::{ResourceId, UnixTime};
use rusqlite::{params, OptionalExtension};

use super::resources::must_exist;
use super::{sql, SqliteStore};
use crate::Result;

pub(super) async fn set_client_blocked(
    store: &SqliteStore,
    isv: &ResourceId,
    client: &ResourceId,
    blocked: bool,
    now: UnixTime,
    audit: &AuditDraft,
) -> Result<()> {
    let (isv, client) = (isv.clone(), client.clone());
    let by = crate::block_owner(&audit.actor);
    store
        .change(audit, move |tx| {
            must_exist(tx, &isv)?;
            if blocked {
                tx.execute(
                "INSERT INTO client_blocks (isv, client, created_at, set_by) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (isv, client) DO UPDATE SET
                   set_by = CASE WHEN excluded.set_by = 'operator' THEN 'operator' ELSE set_by END",
                params![isv.canonical(), client.canonical(), now.0, by],
            )
            .map_err(sql)?;
            } else {
                let owner: Option<String> = tx
                    .query_row(
                        "SELECT set_by FROM client_blocks WHERE isv = ?1 AND client = ?2",
                        params![isv.canonical(), client.canonical()],
                        |r| r.get(0),
                    )
                    .optional()
                    .map_err(sql)?;
                if by == "isv" && owner.as_deref() == Some("operator") {
                    return Err(crate::operator_block_refusal());
                }
                tx.execute(
                    "DELETE FROM client_blocks WHERE isv = ?1 AND client = ?2",
                    params![isv.canonical(), client.canonical()],
                )
                .map_err(sql)?;
            }
            Ok(())
        })
        .await
}

pub(super) async fn is_client_blocked(
    store: &SqliteStore,
    isv: &ResourceId,
    client: &ResourceId,
) -> Result<bool> {
    let (isv, client) = (isv.canonical().to_owned(), client.canonical().to_owned());
    store
        .lookup(move |c| {
            c.prepare_cached(
                "SELECT EXISTS (SELECT 1 FROM client_blocks WHERE isv = ?1 AND client = ?2)",
            )
            .map_err(sql)?
            .query_row([&isv, &client], |r| r.get(0))
            .map_err(sql)
        })
        .await
}
