//! Resources and their keys in the embedded store: a resource's row (id, ISV status, grants,
//! approvals, auth mode), the digests of its two keys, and the pepper those digests are
//! computed under.

use latch_core::audit::{AuditDraft, KeySlot};
use latch_core::secret::KeyDigest;
use latch_core::{ResourceId, UnixTime};
use ring::rand::SecureRandom;
use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};

use super::{sql, unavailable, SqliteStore};
use crate::{stored, AuthMode, KeyInfo, Resource, Result, StoreError};

/// Makes the key pepper on first use: 32 random bytes, kept for the life of the store.
pub(super) fn ensure_pepper(conn: &mut Connection, rng: &dyn SecureRandom) -> Result<()> {
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(sql)?;
    let exists: bool = tx
        .query_row(
            "SELECT count(*) FROM meta WHERE name = 'key_pepper'",
            [],
            |r| r.get(0),
        )
        .map_err(sql)?;
    if !exists {
        let mut pepper = [0u8; 32];
        rng.fill(&mut pepper)
            .map_err(|_| unavailable("random number generator failed"))?;
        tx.execute(
            "INSERT INTO meta (name, value) VALUES ('key_pepper', ?1)",
            [&pepper[..]],
        )
        .map_err(sql)?;
    }
    tx.commit().map_err(sql)
}

const RESOURCE_COLUMNS: &str =
    "r.display, r.created_at, r.isv_enabled, r.isv_grants, r.approvals, r.auth_mode";

fn resource_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<RawResource> {
    Ok(RawResource {
        display: row.get(0)?,
        created_at: row.get(1)?,
        isv_enabled: row.get(2)?,
        isv_grants: row.get(3)?,
        approvals: row.get(4)?,
        auth_mode: row.get(5)?,
    })
}

struct RawResource {
    display: String,
    created_at: i64,
    isv_enabled: bool,
    isv_grants: String,
    approvals: String,
    auth_mode: String,
}

impl RawResource {
    fn parse(self) -> Result<Resource> {
        Ok(Resource {
            id: stored::resource_id(&self.display)?,
            created_at: UnixTime(self.created_at),
            isv_enabled: self.isv_enabled,
            isv_grants: stored::features(&self.isv_grants)?,
            approvals: stored::features(&self.approvals)?,
            auth_mode: stored::auth_mode(&self.auth_mode)?,
        })
    }
}

pub(super) fn load_resource(conn: &Connection, canonical: &str) -> Result<Option<Resource>> {
    conn.prepare_cached(&format!(
        "SELECT {RESOURCE_COLUMNS} FROM resources r WHERE r.canonical = ?1"
    ))
    .map_err(sql)?
    .query_row([canonical], resource_row)
    .optional()
    .map_err(sql)?
    .map(RawResource::parse)
    .transpose()
}

pub(super) fn must_exist(conn: &Connection, id: &ResourceId) -> Result<Resource> {
    load_resource(conn, id.canonical())?
        .ok_or_else(|| StoreError::NotFound(format!("resource {id}")))
}

pub(super) async fn key_pepper(store: &SqliteStore) -> Result<Vec<u8>> {
    store
        .read(|c| {
            c.query_row(
                "SELECT value FROM meta WHERE name = 'key_pepper'",
                [],
                |r| r.get(0),
            )
            .map_err(sql)
        })
        .await
}

pub(super) async fn create_resource(
    store: &SqliteStore,
    resource: &Resource,
    key1: &KeyDigest,
    key2: &KeyDigest,
    audit: &AuditDraft,
) -> Result<()> {
    let r = resource.clone();
    let (k1, k2) = (*key1, *key2);
    store.change(audit, move |tx| {
        let inserted = tx
            .execute(
                "INSERT INTO resources (canonical, display, created_at, isv_enabled, isv_grants, approvals, auth_mode)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) ON CONFLICT (canonical) DO NOTHING",
                params![
                    r.id.canonical(),
                    r.id.as_str(),
                    r.created_at.0,
                    r.isv_enabled,
                    r.isv_grants.to_csv(),
                    r.approvals.to_csv(),
                    r.auth_mode.as_str()
                ],
            )
            .map_err(sql)?;
        if inserted == 0 {
            return Err(StoreError::AlreadyExists(format!("resource {}", r.id)));
        }
        for (slot, digest) in [(1, k1), (2, k2)] {
            tx.execute(
                "INSERT INTO keys (resource, slot, digest, created_at) VALUES (?1, ?2, ?3, ?4)",
                params![r.id.canonical(), slot, &digest.0[..], r.created_at.0],
            )
            .map_err(sql)?;
        }
        Ok(())
    })
    .await
}

pub(super) async fn resource(store: &SqliteStore, id: &ResourceId) -> Result<Option<Resource>> {
    let canonical = id.canonical().to_owned();
    store.lookup(move |c| load_resource(c, &canonical)).await
}

pub(super) async fn resource_by_key(
    store: &SqliteStore,
    digest: &KeyDigest,
) -> Result<Option<(Resource, KeySlot, KeyDigest)>> {
    let d = *digest;
    store.lookup(move |c| {
        let row = c
            .prepare_cached(&format!(
                "SELECT {RESOURCE_COLUMNS}, k.slot, k.digest FROM keys k JOIN resources r ON r.canonical = k.resource
                 WHERE k.digest = ?1"
            ))
            .map_err(sql)?
            .query_row([&d.0[..]], |row| {
                Ok((resource_row(row)?, row.get::<_, u8>(6)?, row.get::<_, Vec<u8>>(7)?))
            })
            .optional()
            .map_err(sql)?;
        let Some((raw, slot, digest)) = row else {
            return Ok(None);
        };
        let slot = stored::key_slot(slot)?;
        let digest = stored::digest(digest, "key")?;
        Ok(Some((raw.parse()?, slot, digest)))
    })
    .await
}

pub(super) async fn resources(store: &SqliteStore) -> Result<Vec<Resource>> {
    store
        .read(|c| {
            let mut stmt = c
                .prepare_cached(&format!(
                    "SELECT {RESOURCE_COLUMNS} FROM resources r ORDER BY r.canonical"
                ))
                .map_err(sql)?;
            let rows = stmt.query_map([], resource_row).map_err(sql)?;
            rows.map(|r| r.map_err(sql).and_then(RawResource::parse))
                .collect()
        })
        .await
}

pub(super) async fn set_auth_mode(
    store: &SqliteStore,
    id: &ResourceId,
    mode: AuthMode,
    audit: &AuditDraft,
) -> Result<Resource> {
    let id = id.clone();
    store
        .change(audit, move |tx| {
            must_exist(tx, &id)?;
            tx.execute(
                "UPDATE resources SET auth_mode = ?2 WHERE canonical = ?1",
                params![id.canonical(), mode.as_str()],
            )
            .map_err(sql)?;
            must_exist(tx, &id)
        })
        .await
}

pub(super) async fn replace_key(
    store: &SqliteStore,
    id: &ResourceId,
    slot: KeySlot,
    digest: &KeyDigest,
    now: UnixTime,
    audit: &AuditDraft,
) -> Result<()> {
    let (id, d) = (id.clone(), *digest);
    store
        .change(audit, move |tx| {
            let n = tx
            .execute(
                "UPDATE keys SET digest = ?3, created_at = ?4 WHERE resource = ?1 AND slot = ?2",
                params![id.canonical(), slot.number(), &d.0[..], now.0],
            )
            .map_err(sql)?;
            if n == 0 {
                return Err(StoreError::NotFound(format!("resource {id}")));
            }
            Ok(())
        })
        .await
}

pub(super) async fn keys(store: &SqliteStore, id: &ResourceId) -> Result<Vec<KeyInfo>> {
    let id = id.clone();
    store
        .read(move |c| {
            must_exist(c, &id)?;
            let mut stmt = c
                .prepare_cached(
                    "SELECT slot, created_at FROM keys WHERE resource = ?1 ORDER BY slot",
                )
                .map_err(sql)?;
            let rows = stmt
                .query_map([id.canonical()], |r| {
                    Ok((r.get::<_, u8>(0)?, r.get::<_, i64>(1)?))
                })
                .map_err(sql)?;
            rows.map(|r| {
                let (slot, created) = r.map_err(sql)?;
                Ok(KeyInfo {
                    slot: stored::key_slot(slot)?,
                    created_at: UnixTime(created),
                })
            })
            .collect()
        })
        .await
}
