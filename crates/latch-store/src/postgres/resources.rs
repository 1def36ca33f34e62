//! Resources and their keys in the PostgreSQL store: a resource's row (id, ISV status, grants,
//! approvals, auth mode), the digests of its two keys, and the pepper those digests are
//! computed under.

use latch_core::audit::{AuditDraft, KeySlot};
use latch_core::secret::KeyDigest;
use latch_core::{ResourceId, UnixTime};
use ring::rand::SecureRandom;
use tokio_postgres::{Row, Transaction};

use super::{corrupt, pg, unavailable, PgStore};
use crate::{stored, AuthMode, KeyInfo, Resource, Result, StoreError};

/// Makes the key pepper on first use: 32 random bytes, kept for the life of the store.
pub(super) async fn ensure_pepper(store: &PgStore, rng: &dyn SecureRandom) -> Result<()> {
    let mut pepper = [0u8; 32];
    rng.fill(&mut pepper)
        .map_err(|_| unavailable("random number generator failed"))?;
    let conn = store.inner.pool.get().await?;
    // The first process to get here sets it; the others keep the one set.
    conn.client()?
        .execute(
            "INSERT INTO meta (name, value) VALUES ('key_pepper', $1) ON CONFLICT (name) DO NOTHING",
            &[&&pepper[..]],
        )
        .await
        .map_err(pg)?;
    Ok(())
}

const RESOURCE_COLUMNS: &str =
    "r.display, r.created_at, r.isv_enabled, r.isv_grants, r.approvals, r.auth_mode";

fn resource_row(row: &Row) -> Result<Resource> {
    let display: String = row.try_get(0).map_err(pg)?;
    Ok(Resource {
        id: stored::resource_id(&display)?,
        created_at: UnixTime(row.try_get(1).map_err(pg)?),
        isv_enabled: row.try_get(2).map_err(pg)?,
        isv_grants: stored::features(row.try_get(3).map_err(pg)?)?,
        approvals: stored::features(row.try_get(4).map_err(pg)?)?,
        auth_mode: stored::auth_mode(row.try_get(5).map_err(pg)?)?,
    })
}

pub(super) async fn load_resource(tx: &Transaction<'_>, id: &ResourceId) -> Result<Resource> {
    let row = tx
        .query_opt(
            &format!("SELECT {RESOURCE_COLUMNS} FROM resources r WHERE r.canonical = $1"),
            &[&id.canonical()],
        )
        .await
        .map_err(pg)?;
    match row {
        Some(row) => resource_row(&row),
        None => Err(StoreError::NotFound(format!("resource {id}"))),
    }
}

pub(super) async fn key_pepper(store: &PgStore) -> Result<Vec<u8>> {
    store
        .query_opt("SELECT value FROM meta WHERE name = 'key_pepper'", &[])
        .await?
        .map(|r| r.get(0))
        .ok_or_else(|| corrupt("no key pepper"))
}

pub(super) async fn create_resource(
    store: &PgStore,
    resource: &Resource,
    key1: &KeyDigest,
    key2: &KeyDigest,
    audit: &AuditDraft,
) -> Result<()> {
    let (r, k1, k2) = (resource.clone(), *key1, *key2);
    store.change(audit, move |tx| {
        Box::pin(async move {
            let inserted = tx
                .execute(
                    "INSERT INTO resources (canonical, display, created_at, isv_enabled, isv_grants, approvals, auth_mode)
                     VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (canonical) DO NOTHING",
                    &[
                        &r.id.canonical(),
                        &r.id.as_str(),
                        &r.created_at.0,
                        &r.isv_enabled,
                        &r.isv_grants.to_csv(),
                        &r.approvals.to_csv(),
                        &r.auth_mode.as_str(),
                    ],
                )
                .await
                .map_err(pg)?;
            if inserted == 0 {
                return Err(StoreError::AlreadyExists(format!("resource {}", r.id)));
            }
            for (slot, digest) in [(1i16, k1), (2, k2)] {
                tx.execute(
                    "INSERT INTO keys (resource, slot, digest, created_at) VALUES ($1, $2, $3, $4)",
                    &[&r.id.canonical(), &slot, &&digest.0[..], &r.created_at.0],
                )
                .await
                .map_err(pg)?;
            }
            Ok(())
        })
    })
    .await
}

pub(super) async fn resource(store: &PgStore, id: &ResourceId) -> Result<Option<Resource>> {
    store
        .query_opt(
            &format!("SELECT {RESOURCE_COLUMNS} FROM resources r WHERE r.canonical = $1"),
            &[&id.canonical()],
        )
        .await?
        .as_ref()
        .map(resource_row)
        .transpose()
}

pub(super) async fn resource_by_key(
    store: &PgStore,
    digest: &KeyDigest,
) -> Result<Option<(Resource, KeySlot, KeyDigest)>> {
    let Some(row) = store
        .query_opt(
            &format!(
                "SELECT {RESOURCE_COLUMNS}, k.slot, k.digest FROM keys k JOIN resources r ON r.canonical = k.resource
                 WHERE k.digest = $1"
            ),
            &[&&digest.0[..]],
        )
        .await?
    else {
        return Ok(None);
    };
    let slot = stored::key_slot(row.get::<_, i16>(6))?;
    let digest = stored::digest(row.get(7), "key")?;
    Ok(Some((resource_row(&row)?, slot, digest)))
}

pub(super) async fn resources(store: &PgStore) -> Result<Vec<Resource>> {
    store
        .query(
            &format!("SELECT {RESOURCE_COLUMNS} FROM resources r ORDER BY r.canonical"),
            &[],
        )
        .await?
        .iter()
        .map(resource_row)
        .collect()
}

pub(super) async fn set_auth_mode(
    store: &PgStore,
    id: &ResourceId,
    mode: AuthMode,
    audit: &AuditDraft,
) -> Result<Resource> {
    let id = id.clone();
    store
        .change(audit, move |tx| {
            Box::pin(async move {
                load_resource(tx, &id).await?;
                tx.execute(
                    "UPDATE resources SET auth_mode = $2 WHERE canonical = $1",
                    &[&id.canonical(), &mode.as_str()],
                )
                .await
                .map_err(pg)?;
                load_resource(tx, &id).await
            })
        })
        .await
}

pub(super) async fn replace_key(
    store: &PgStore,
    id: &ResourceId,
    slot: KeySlot,
    digest: &KeyDigest,
    now: UnixTime,
    audit: &AuditDraft,
) -> Result<()> {
    let (id, d) = (id.clone(), *digest);
    store.change(audit, move |tx| {
        Box::pin(async move {
            let n = tx
                .execute(
                    "UPDATE keys SET digest = $3, created_at = $4 WHERE resource = $1 AND slot = $2",
                    &[&id.canonical(), &i16::from(slot.number()), &&d.0[..], &now.0],
                )
                .await
                .map_err(pg)?;
            if n == 0 {
                return Err(StoreError::NotFound(format!("resource {id}")));
            }
            Ok(())
        })
    })
    .await
}

pub(super) async fn keys(store: &PgStore, id: &ResourceId) -> Result<Vec<KeyInfo>> {
    if resource(store, id).await?.is_none() {
        return Err(StoreError::NotFound(format!("resource {id}")));
    }
    store
        .query(
            "SELECT slot, created_at FROM keys WHERE resource = $1 ORDER BY slot",
            &[&id.canonical()],
        )
        .await?
        .iter()
        .map(|r| {
            Ok(KeyInfo {
                slot: stored::key_slot(r.get::<_, i16>(0))?,
                created_at: UnixTime(r.get(1)),
            })
        })
        .collect()
}
