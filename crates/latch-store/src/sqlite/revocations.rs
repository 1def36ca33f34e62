//! Revocations of issued tokens in the embedded store: recorded, looked up on every
//! authenticated request, listed for the in-memory copy, and pruned once they cover no token
//! that could still be valid.

use latch_core::audit::AuditDraft;
use latch_core::{ResourceId, UnixTime};
use rusqlite::params;

use super::{sql, SqliteStore};
use crate::{Result, Revocation, RevocationEntry};

pub(super) async fn add_revocation(
    store: &SqliteStore,
    revocation: &Revocation,
    audit: &AuditDraft,
) -> Result<()> {
    let (scope, subject, before, expires) = crate::revocation_row(revocation);
    store
        .change(audit, move |tx| {
            // A later "before" widens an earlier one; it never narrows it.
            tx.execute(
            "INSERT INTO revocations (scope, subject, before, expires_at) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (scope, subject) DO UPDATE SET
               before = max(coalesce(before, excluded.before), coalesce(excluded.before, before)),
               expires_at = max(expires_at, excluded.expires_at)",
            params![scope, subject, before.map(|t| t.0), expires.0],
        )
        .map_err(sql)?;
            Ok(())
        })
        .await
}

pub(super) async fn is_revoked(
    store: &SqliteStore,
    jti: &str,
    isv: &ResourceId,
    target: &ResourceId,
    iat: UnixTime,
) -> Result<bool> {
    let (jti, isv, target) = (
        jti.to_owned(),
        isv.canonical().to_owned(),
        target.canonical().to_owned(),
    );
    store
        .lookup(move |c| {
            c.prepare_cached(
                "SELECT EXISTS (SELECT 1 FROM revocations WHERE
                (scope = 'jti' AND subject = ?1)
             OR (scope = 'isv' AND subject = ?2 AND ?4 < before)
             OR (scope = 'target' AND subject = ?3 AND ?4 < before)
             OR (scope = 'isv_target' AND subject = ?2 || ' ' || ?3 AND ?4 < before))",
            )
            .map_err(sql)?
            .query_row(params![jti, isv, target, iat.0], |r| r.get(0))
            .map_err(sql)
        })
        .await
}

pub(super) async fn revocations(
    store: &SqliteStore,
    limit: usize,
) -> Result<Option<Vec<RevocationEntry>>> {
    let take = i64::try_from(limit.saturating_add(1)).unwrap_or(i64::MAX);
    let rows = store
        .read(move |c| {
            let mut stmt = c
                .prepare_cached("SELECT scope, subject, before FROM revocations LIMIT ?1")
                .map_err(sql)?;
            let rows = stmt
                .query_map([take], |r| {
                    Ok(RevocationEntry {
                        scope: r.get(0)?,
                        subject: r.get(1)?,
                        before: r.get::<_, Option<i64>>(2)?.map(UnixTime),
                    })
                })
                .map_err(sql)?;
            rows.collect::<rusqlite::Result<Vec<_>>>().map_err(sql)
        })
        .await?;
    Ok((rows.len() <= limit).then_some(rows))
}

pub(super) async fn prune_revocations(store: &SqliteStore, now: UnixTime) -> Result<u64> {
    // Pruning removes only entries that can no longer match a valid token: not a state
    // change an auditor needs, so it has no record of its own.
    store
        .write(move |tx| {
            let n = tx
                .execute("DELETE FROM revocations WHERE expires_at <= ?1", [now.0])
                .map_err(sql)?;
            Ok(n as u64)
        })
        .await
}
