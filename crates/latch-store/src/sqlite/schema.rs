//! The embedded store's schema: its migrations, applied in order when the store opens, and the
//! state version its triggers move.

use rusqlite::{Connection, TransactionBehavior};

use super::{corrupt, sql, SqliteStore};
use crate::Result;

/// Schema migrations, applied in order; `PRAGMA user_version` counts those applied.
const MIGRATIONS: &[&str] = &[
    include_str!("../../migrations/sqlite/0001_state.sql"),
    include_str!("../../migrations/sqlite/0002_revocations.sql"),
    include_str!("../../migrations/sqlite/0003_admin_credentials.sql"),
    include_str!("../../migrations/sqlite/0004_checkpoints.sql"),
    include_str!("../../migrations/sqlite/0005_state_version.sql"),
    include_str!("../../migrations/sqlite/0006_face.sql"),
    include_str!("../../migrations/sqlite/0007_audit_index.sql"),
    include_str!("../../migrations/sqlite/0008_audit_tree.sql"),
];

pub(super) fn migrate(conn: &mut Connection) -> Result<()> {
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(sql)?;
    let version: i64 = tx
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(sql)?;
    let applied = usize::try_from(version).map_err(|_| corrupt("negative schema version"))?;
    if applied > MIGRATIONS.len() {
        return Err(corrupt(&format!(
            "the database has schema version {applied}, newer than this program's {}",
            MIGRATIONS.len()
        )));
    }
    for (i, migration) in MIGRATIONS.iter().enumerate().skip(applied) {
        tx.execute_batch(migration).map_err(sql)?;
        tx.pragma_update(None, "user_version", i + 1).map_err(sql)?;
    }
    tx.commit().map_err(sql)
}

pub(super) async fn state_version(store: &SqliteStore) -> Result<u64> {
    store
        .lookup(|c| {
            let v: i64 = c
                .prepare_cached("SELECT version FROM state_version WHERE id = 1")
                .map_err(sql)?
                .query_row([], |r| r.get(0))
                .map_err(sql)?;
            u64::try_from(v).map_err(|_| corrupt("negative state version"))
        })
        .await
}

pub(super) async fn ready(store: &SqliteStore) -> Result<()> {
    // Migrations ran when the store was opened; the file must still answer.
    store
        .read(|c| {
            c.query_row("SELECT count(*) FROM meta", [], |r| r.get::<_, i64>(0))
                .map(|_| ())
                .map_err(sql)
        })
        .await
}
