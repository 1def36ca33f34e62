//! The PostgreSQL store's schema: its migrations, applied in order under an advisory lock, and
//! the state version its triggers move.

use tokio_postgres::Transaction;

use super::connection::begin;
use super::{corrupt, pg, unavailable, PgStore};
use crate::Result;

/// Schema migrations, applied in order; `schema_migrations` lists those applied.
const MIGRATIONS: &[&str] = &[
    include_str!("../../migrations/postgres/0001_state.sql"),
    include_str!("../../migrations/postgres/0002_state_version.sql"),
    include_str!("../../migrations/postgres/0003_face.sql"),
    include_str!("../../migrations/postgres/0004_audit_log.sql"),
];

impl PgStore {
    /// Applies the migrations this program knows and the database lacks; returns how many.
    pub async fn migrate(&self) -> Result<usize> {
        let mut conn = self.inner.pool.get().await?;
        let tx = begin(&mut conn).await?;
        // One migrating process at a time; the lock ends with the transaction. A replica that
        // waits longer than a minute for it gives up with an error rather than hanging.
        tx.batch_execute("SET LOCAL lock_timeout = '60s'")
            .await
            .map_err(pg)?;
        tx.execute("SELECT pg_advisory_xact_lock(7393452)", &[])
            .await
            .map_err(pg)?;
        tx.batch_execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())",
        )
        .await
        .map_err(pg)?;
        let applied = applied_migrations(&tx).await?;
        for (i, migration) in MIGRATIONS.iter().enumerate().skip(applied) {
            tx.batch_execute(migration).await.map_err(pg)?;
            let version = i32::try_from(i + 1).map_err(|_| corrupt("too many migrations"))?;
            tx.execute(
                "INSERT INTO schema_migrations (version) VALUES ($1)",
                &[&version],
            )
            .await
            .map_err(pg)?;
        }
        tx.commit().await.map_err(pg)?;
        Ok(MIGRATIONS.len() - applied)
    }

    /// Migrations this program knows that the database has not applied (0 when ready).
    pub async fn pending_migrations(&self) -> Result<usize> {
        let conn = self.inner.pool.get().await?;
        let client = conn.client()?;
        let exists: bool = client
            .query_one("SELECT to_regclass('schema_migrations') IS NOT NULL", &[])
            .await
            .map_err(pg)?
            .get(0);
        if !exists {
            return Ok(MIGRATIONS.len());
        }
        let row = client
            .query_one("SELECT count(*) FROM schema_migrations", &[])
            .await
            .map_err(pg)?;
        let applied = usize::try_from(row.get::<_, i64>(0)).unwrap_or(0);
        Ok(MIGRATIONS.len().saturating_sub(applied))
    }
}

async fn applied_migrations(tx: &Transaction<'_>) -> Result<usize> {
    let row = tx
        .query_one(
            "SELECT count(*), coalesce(max(version), 0) FROM schema_migrations",
            &[],
        )
        .await
        .map_err(pg)?;
    let (count, max): (i64, i32) = (row.get(0), row.get(1));
    if i64::from(max) != count {
        return Err(corrupt("schema_migrations has gaps"));
    }
    let applied = usize::try_from(count).map_err(|_| corrupt("negative migration count"))?;
    if applied > MIGRATIONS.len() {
        return Err(corrupt(&format!(
            "the database has schema version {applied}, newer than this program's {}",
            MIGRATIONS.len()
        )));
    }
    Ok(applied)
}

pub(super) async fn state_version(store: &PgStore) -> Result<u64> {
    let row = store
        .query_opt("SELECT version FROM state_version WHERE id = 1", &[])
        .await?
        .ok_or_else(|| corrupt("no state version row"))?;
    u64::try_from(row.get::<_, i64>(0)).map_err(|_| corrupt("negative state version"))
}

pub(super) async fn ready(store: &PgStore) -> Result<()> {
    match store.pending_migrations().await? {
        0 => Ok(()),
        n => Err(unavailable(&format!(
            "{n} migration(s) pending: run `latch store migrate`"
        ))),
    }
}
