//! The embedded store's connections: the database file and its directory made owner-only,
//! each connection's settings, and how work runs on them (write-locked transactions, the
//! blocking pool).

use std::path::Path;
use std::sync::Mutex;

use rusqlite::{Connection, Transaction, TransactionBehavior};

use super::{sql, unavailable, BUSY_TIMEOUT};
use crate::{Result, StoreError};

pub(super) fn create_private_dir(dir: &Path) -> Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir).map_err(|e| {
        unavailable(&format!(
            "cannot create data directory {}: {e}",
            dir.display()
        ))
    })
}

/// Creates the database file, owner-only, before SQLite opens it: SQLite gives its `-wal` and
/// `-shm` files the database file's mode, so they are owner-only too. An existing file is
/// narrowed to owner-only.
pub(super) fn create_private_file(path: &Path) -> Result<()> {
    // An existing file is not opened here: closing a descriptor of a database that this process
    // also holds through SQLite would drop SQLite's locks on it (POSIX record locks belong to
    // the process, and go with any descriptor of the file that is closed).
    if !path.exists() {
        let mut options = std::fs::OpenOptions::new();
        options.create(true).append(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        options
            .open(path)
            .map_err(|e| unavailable(&format!("cannot create {}: {e}", path.display())))?;
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
            .map_err(|e| unavailable(&format!("cannot restrict {}: {e}", path.display())))?;
    }
    Ok(())
}

pub(super) fn connect(path: &Path) -> Result<Connection> {
    let conn = Connection::open(path).map_err(sql)?;
    conn.busy_timeout(BUSY_TIMEOUT).map_err(sql)?;
    conn.pragma_update(None, "journal_mode", "WAL")
        .map_err(sql)?;
    conn.pragma_update(None, "synchronous", "FULL")
        .map_err(sql)?;
    conn.pragma_update(None, "foreign_keys", "ON")
        .map_err(sql)?;
    Ok(conn)
}

/// Runs `f` in an immediate (write-locked) transaction on `conn`, and commits what it did.
pub(super) fn immediate<T>(
    conn: &Mutex<Connection>,
    f: impl FnOnce(&Transaction<'_>) -> Result<T>,
) -> Result<T> {
    let mut conn = conn
        .lock()
        .map_err(|_| unavailable("connection lock poisoned"))?;
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(sql)?;
    let out = f(&tx)?;
    tx.commit().map_err(sql)?;
    Ok(out)
}

pub(super) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| StoreError::Internal(format!("store task failed: {e}")))?
}
