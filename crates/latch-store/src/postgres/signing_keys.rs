//! The token signing keys in the PostgreSQL store: rotated (the signing key retired, a new one
//! added), listed oldest first, and added.

use latch_core::audit::AuditDraft;
use latch_core::UnixTime;

use super::{pg, PgStore};
use crate::{Result, StoredSigningKey};

pub(super) async fn rotate_signing_key(
    store: &PgStore,
    key: &StoredSigningKey,
    now: UnixTime,
    audit: &AuditDraft,
) -> Result<()> {
    let key = key.clone();
    store.change(audit, move |tx| {
        Box::pin(async move {
            // Rotations take turns, so two at once cannot leave two keys signing.
            tx.execute("LOCK TABLE signing_keys IN SHARE ROW EXCLUSIVE MODE", &[])
                .await
                .map_err(pg)?;
            tx.execute(
                "UPDATE signing_keys SET retired_at = $1 WHERE retired_at IS NULL",
                &[&now.0],
            )
            .await
            .map_err(pg)?;
            tx.execute(
                "INSERT INTO signing_keys (kid, pkcs8, created_at, retired_at) VALUES ($1, $2, $3, NULL)",
                &[&key.kid, &key.pkcs8.as_slice(), &key.created_at.0],
            )
            .await
            .map_err(pg)?;
            Ok(())
        })
    })
    .await
}

pub(super) async fn signing_keys(store: &PgStore) -> Result<Vec<StoredSigningKey>> {
    Ok(store
        .query(
            "SELECT kid, pkcs8, created_at, retired_at FROM signing_keys ORDER BY created_at, kid",
            &[],
        )
        .await?
        .iter()
        .map(|r| StoredSigningKey {
            kid: r.get(0),
            pkcs8: zeroize::Zeroizing::new(r.get(1)),
            created_at: UnixTime(r.get(2)),
            retired_at: r.get::<_, Option<i64>>(3).map(UnixTime),
        })
        .collect())
}

pub(super) async fn add_signing_key(
    store: &PgStore,
    key: &StoredSigningKey,
    audit: &AuditDraft,
) -> Result<()> {
    let key = key.clone();
    store.change(audit, move |tx| {
        Box::pin(async move {
            tx.execute(
                "INSERT INTO signing_keys (kid, pkcs8, created_at, retired_at) VALUES ($1, $2, $3, $4)",
                &[&key.kid, &key.pkcs8.as_slice(), &key.created_at.0, &key.retired_at.map(|t| t.0)],
            )
            .await
            .map_err(pg)?;
            Ok(())
        })
    })
    .await
}
