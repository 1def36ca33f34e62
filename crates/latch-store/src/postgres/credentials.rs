//! The admin credentials in the PostgreSQL store: the digests of the operator's and the
//! auditor's keys.

use latch_core::audit::AuditDraft;
use latch_core::secret::KeyDigest;

use super::{pg, PgStore};
use crate::{stored, AdminRole, Result};

pub(super) async fn admin_credential(
    store: &PgStore,
    role: AdminRole,
) -> Result<Option<KeyDigest>> {
    store
        .query_opt(
            "SELECT digest FROM admin_credentials WHERE role = $1",
            &[&role.as_str()],
        )
        .await?
        .map(|r| stored::digest(r.get(0), "credential"))
        .transpose()
}

pub(super) async fn set_admin_credential(
    store: &PgStore,
    role: AdminRole,
    digest: &KeyDigest,
    audit: &AuditDraft,
) -> Result<()> {
    let (d, time) = (*digest, audit.time);
    store.change(audit, move |tx| {
        Box::pin(async move {
            tx.execute(
                "INSERT INTO admin_credentials (role, digest, created_at) VALUES ($1, $2, $3)
                 ON CONFLICT (role) DO UPDATE SET digest = excluded.digest, created_at = excluded.created_at",
                &[&role.as_str(), &&d.0[..], &time.0],
            )
            .await
            .map_err(pg)?;
            Ok(())
        })
    })
    .await
}
