//! The admin credentials in the embedded store: the digests of the operator's and the
//! auditor's keys.

use latch_core::audit::AuditDraft;
use latch_core::secret::KeyDigest;
use rusqlite::{params, OptionalExtension};

use super::{sql, SqliteStore};
use crate::{stored, AdminRole, Result};

pub(super) async fn admin_credential(
    store: &SqliteStore,
    role: AdminRole,
) -> Result<Option<KeyDigest>> {
    store
        .read(move |c| {
            let digest: Option<Vec<u8>> = c
                .prepare_cached("SELECT digest FROM admin_credentials WHERE role = ?1")
                .map_err(sql)?
                .query_row([role.as_str()], |r| r.get(0))
                .optional()
                .map_err(sql)?;
            digest.map(|d| stored::digest(d, "credential")).transpose()
        })
        .await
}

pub(super) async fn set_admin_credential(
    store: &SqliteStore,
    role: AdminRole,
    digest: &KeyDigest,
    audit: &AuditDraft,
) -> Result<()> {
    let (d, time) = (*digest, audit.time);
    store.change(audit, move |tx| {
        tx.execute(
            "INSERT INTO admin_credentials (role, digest, created_at) VALUES (?1, ?2, ?3)
             ON CONFLICT (role) DO UPDATE SET digest = excluded.digest, created_at = excluded.created_at",
            params![role.as_str(), &d.0[..], time.0],
        )
        .map_err(sql)?;
        Ok(())
    })
    .await
}
