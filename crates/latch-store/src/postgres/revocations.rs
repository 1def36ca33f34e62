//! Revocations of issued tokens in the PostgreSQL store: recorded, looked up on every
//! authenticated request, listed for the in-memory copy, and pruned once they cover no token
//! that could still be valid.

use latch_core::audit::AuditDraft;
use latch_core::{ResourceId, UnixTime};

use super::{pg, PgStore};
use crate::{Result, Revocation, RevocationEntry};

pub(super) async fn add_revocation(
    store: &PgStore,
    revocation: &Revocation,
    audit: &AuditDraft,
) -> Result<()> {
    let (scope, subject, before, expires) = crate::revocation_row(revocation);
    store.change(audit, move |tx| {
        Box::pin(async move {
            // A later "before" widens an earlier one; it never narrows it.
            tx.execute(
                "INSERT INTO revocations (scope, subject, before, expires_at) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (scope, subject) DO UPDATE SET
                   before = GREATEST(revocations.before, excluded.before),
                   expires_at = GREATEST(revocations.expires_at, excluded.expires_at)",
                &[&scope, &subject, &before.map(|t| t.0), &expires.0],
            )
            .await
            .map_err(pg)?;
            Ok(())
        })
    })
    .await
}

pub(super) async fn is_revoked(
    store: &PgStore,
    jti: &str,
    isv: &ResourceId,
    target: &ResourceId,
    iat: UnixTime,
) -> Result<bool> {
    let pair = format!("{} {}", isv.canonical(), target.canonical());
    Ok(store
        .query_opt(
            "SELECT 1 FROM revocations WHERE
                (scope = 'jti' AND subject = $1)
             OR (scope = 'isv' AND subject = $2 AND $4 < before)
             OR (scope = 'target' AND subject = $3 AND $4 < before)
             OR (scope = 'isv_target' AND subject = $5 AND $4 < before)
             LIMIT 1",
            &[&jti, &isv.canonical(), &target.canonical(), &iat.0, &pair],
        )
        .await?
        .is_some())
}

pub(super) async fn revocations(
    store: &PgStore,
    limit: usize,
) -> Result<Option<Vec<RevocationEntry>>> {
    let take = i64::try_from(limit.saturating_add(1)).unwrap_or(i64::MAX);
    let rows = store
        .query(
            "SELECT scope, subject, before FROM revocations LIMIT $1",
            &[&take],
        )
        .await?;
    if rows.len() > limit {
        return Ok(None);
    }
    Ok(Some(
        rows.iter()
            .map(|r| RevocationEntry {
                scope: r.get(0),
                subject: r.get(1),
                before: r.get::<_, Option<i64>>(2).map(UnixTime),
            })
            .collect(),
    ))
}

pub(super) async fn prune_revocations(store: &PgStore, now: UnixTime) -> Result<u64> {
    // Pruning removes only entries that can no longer match a valid token: not a state
    // change an auditor needs, so it has no record of its own.
    let conn = store.inner.pool.get().await?;
    conn.client()?
        .execute("DELETE FROM revocations WHERE expires_at <= $1", &[&now.0])
        .await
        .map_err(pg)
}
