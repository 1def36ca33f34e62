//! The token signing keys in the embedded store: rotated (the signing key retired, a new one
//! added), listed oldest first, and added.

use latch_core::audit::AuditDraft;
use latch_core::UnixTime;
use rusqlite::params;

use super::{sql, SqliteStore};
use crate::{Result, StoredSigningKey};

pub(super) async fn rotate_signing_key(
    store: &SqliteStore,
    key: &StoredSigningKey,
    now: UnixTime,
    audit: &AuditDraft,
) -> Result<()> {
    let key = key.clone();
    store.change(audit, move |tx| {
        tx.execute(
            "UPDATE signing_keys SET retired_at = ?1 WHERE retired_at IS NULL",
            [now.0],
        )
        .map_err(sql)?;
        tx.execute(
            "INSERT INTO signing_keys (kid, pkcs8, created_at, retired_at) VALUES (?1, ?2, ?3, NULL)",
            params![key.kid, key.pkcs8.as_slice(), key.created_at.0],
        )
        .map_err(sql)?;
        Ok(())
    })
    .await
}

pub(super) async fn signing_keys(store: &SqliteStore) -> Result<Vec<StoredSigningKey>> {
    store.read(|c| {
        let mut stmt = c
            .prepare_cached("SELECT kid, pkcs8, created_at, retired_at FROM signing_keys ORDER BY created_at, kid")
            .map_err(sql)?;
        let rows = stmt
            .query_map([], |r| {
                Ok(StoredSigningKey {
                    kid: r.get(0)?,
                    pkcs8: zeroize::Zeroizing::new(r.get(1)?),
                    created_at: UnixTime(r.get(2)?),
                    retired_at: r.get::<_, Option<i64>>(3)?.map(UnixTime),
                })
            })
            .map_err(sql)?;
        rows.map(|r| r.map_err(sql)).collect()
    })
    .await
}

pub(super) async fn add_signing_key(
    store: &SqliteStore,
    key: &StoredSigningKey,
    audit: &AuditDraft,
) -> Result<()> {
    let key = key.clone();
    store
        .change(audit, move |tx| {
            tx.execute(
            "INSERT INTO signing_keys (kid, pkcs8, created_at, retired_at) VALUES (?1, ?2, ?3, ?4)",
            params![key.kid, key.pkcs8.as_slice(), key.created_at.0, key.retired_at.map(|t| t.0)],
        )
        .map_err(sql)?;
            Ok(())
        })
        .await
}
