//! The embedded backend: one SQLite database file in the data directory.
//!
//! Why SQLite: it is the most widely deployed and tested embedded database, its write-ahead log
//! with `synchronous=FULL` makes every commit durable across a power cut, several processes can
//! share one file (the server and the admin CLI), and operators can inspect it with `sqlite3`.
//! It is compiled in (`rusqlite`'s `bundled` feature), so the build needs no system library.
//!
//! Writes and long reads run on Tokio's blocking pool. One connection writes; a few read,
//! concurrently with the writer thanks to the write-ahead log. Every write is an `IMMEDIATE`
//! transaction, so writers in other processes queue behind it (for up to [`BUSY_TIMEOUT`])
//! instead of failing.
//!
//! The point lookups every authenticated request makes (key → resource, resource, revoked?,
//! blocked?) run in place on the calling task, on connections of their own: an indexed read of
//! a few pages takes microseconds, while a hop to the blocking pool and back costs two thread
//! wake-ups, which profiles showed to be most of a request's CPU. In WAL mode a reader never
//! waits for the writer; a lookup connection that finds the database busy anyway (recovery
//! after a crash) does not wait at all (busy timeout 0, so it never sleeps on a runtime thread):
//! the lookup moves to the blocking pool, whose readers wait as long as writers do, and so does
//! a lookup that finds every lookup connection in use or fails.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use latch_audit::{AuditQuery, AuditStore, Result as AuditResult, StoredAuditRecord};
use latch_core::audit::{AuditDraft, KeySlot};
use latch_core::secret::KeyDigest;
use latch_core::{FeatureSet, ResourceId, UnixTime};
use ring::rand::SecureRandom;
use rusqlite::{params, Connection, OptionalExtension, Transaction, TransactionBehavior};

use crate::face::{
    self, DetectedFace, FaceData, FaceGroup, FaceLimits, FacePerson, GroupFace, PersistedFace,
    Training,
};
use crate::{
    AdminRole, AuthMode, KeyInfo, Resource, Result, Revocation, RevocationEntry, Store, StoreError,
    StoredSigningKey,
};

/// The database file's name within the data directory.
pub const FILE_NAME: &str = "latch.db";
/// How long a write waits for another process's write to finish.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
mod audit_index;
mod audit_journal;

const READERS: usize = 4;

/// Schema migrations, applied in order; `PRAGMA user_version` counts those applied.
const MIGRATIONS: &[&str] = &[
    include_str!("../migrations/sqlite/0001_state.sql"),
    include_str!("../migrations/sqlite/0002_revocations.sql"),
    include_str!("../migrations/sqlite/0003_admin_credentials.sql"),
    include_str!("../migrations/sqlite/0004_checkpoints.sql"),
    include_str!("../migrations/sqlite/0005_state_version.sql"),
    include_str!("../migrations/sqlite/0006_face.sql"),
    include_str!("../migrations/sqlite/0007_audit_index.sql"),
    include_str!("../migrations/sqlite/0008_audit_tree.sql"),
];

/// The embedded store.
#[derive(Clone)]
pub struct SqliteStore {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    chain: String,
    /// The audit chain's journal; the `audit` table is its index.
    audit: audit_journal::AuditJournal,
    /// The connection the journal is indexed through: its commits are not synced, since the
    /// index is rebuilt from the journal after a crash.
    indexer: Mutex<Connection>,
    /// Wakes the thread that indexes the journal.
    wake_indexer: std::sync::mpsc::SyncSender<()>,
    writer: Mutex<Connection>,
    readers: Vec<Mutex<Connection>>,
    next_reader: AtomicUsize,
    lookups: Vec<Mutex<Connection>>,
    /// State changes committed through this handle.
    changes: AtomicU64,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.inner.path)
            .field("chain", &self.inner.chain)
            .finish_non_exhaustive()
    }
}

impl SqliteStore {
    /// Opens (creating if needed) the store in `dir`. Records of state changes made through this
    /// handle go to audit chain `chain`.
    pub fn open(dir: &Path, chain: &str, rng: &dyn SecureRandom) -> Result<Self> {
        Self::open_with(dir, chain, rng, latch_audit::journal::Options::default())
    }

    /// Like [`SqliteStore::open`], with the audit journal laid out as `journal` says.
    pub fn open_with(
        dir: &Path,
        chain: &str,
        rng: &dyn SecureRandom,
        journal: latch_audit::journal::Options,
    ) -> Result<Self> {
        create_private_dir(dir)?;
        let path = dir.join(FILE_NAME);
        create_private_file(&path)?;
        let mut writer = connect(&path)?;
        migrate(&mut writer)?;
        ensure_pepper(&mut writer, rng)?;
        let audit = audit_journal::AuditJournal::open(dir, chain, journal, &mut writer)?;
        let (wake_indexer, woken) = std::sync::mpsc::sync_channel(1);
        let indexer = connect(&path)?;
        indexer
            .pragma_update(None, "synchronous", "NORMAL")
            .map_err(sql)?;
        let readers = (0..READERS)
            .map(|_| connect(&path).map(Mutex::new))
            .collect::<Result<Vec<_>>>()?;
        // One per runtime thread is all that can run at once.
        let lookups = (0..std::thread::available_parallelism().map_or(2, |n| n.get()))
            .map(|_| {
                let conn = connect(&path)?;
                conn.busy_timeout(Duration::ZERO).map_err(sql)?;
                Ok(Mutex::new(conn))
            })
            .collect::<Result<Vec<_>>>()?;
        let store = SqliteStore {
            inner: Arc::new(Inner {
                path,
                chain: chain.to_owned(),
                audit,
                wake_indexer,
                writer: Mutex::new(writer),
                indexer: Mutex::new(indexer),
                readers,
                next_reader: AtomicUsize::new(0),
                lookups,
                changes: AtomicU64::new(0),
            }),
        };
        store.inner.index()?;
        spawn_indexer(Arc::downgrade(&store.inner), woken)?;
        Ok(store)
    }

    /// Indexes every durable audit record first (what the audit reads need).
    async fn indexed(&self) -> Result<()> {
        let inner = self.inner.clone();
        blocking(move || inner.index()).await
    }

    /// Appends records to the journal.
    async fn journal(&self, drafts: Vec<AuditDraft>) -> Result<Vec<u64>> {
        let inner = self.inner.clone();
        let seqs = blocking(move || inner.audit.append(&drafts)).await?;
        let _ = self.inner.wake_indexer.try_send(());
        Ok(seqs)
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// The directory of this store's audit journal (made on the first record).
    pub fn journal_dir(&self) -> PathBuf {
        self.inner.audit.root().join(&self.inner.chain)
    }

    async fn write<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Transaction<'_>) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let inner = self.inner.clone();
        blocking(move || immediate(&inner.writer, f)).await
    }

    async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        self.read_audit(move |_, conn| f(conn)).await
    }

    /// A read on one of the reader connections, with the store's insides at hand (the audit
    /// journals, for reads that need them as well as the database).
    async fn read_audit<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Inner, &Connection) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let inner = self.inner.clone();
        blocking(move || {
            let i = inner.next_reader.fetch_add(1, Ordering::Relaxed) % inner.readers.len();
            let conn = inner.readers[i]
                .lock()
                .map_err(|_| unavailable("reader lock poisoned"))?;
            f(&inner, &conn)
        })
        .await
    }

    /// Reads the journal of `chain` past what was archived of it: `f` gets the journal's
    /// directory and the last archived sequence number. Nothing (the default) for a chain with
    /// no journal.
    async fn past_archive<T: Default + Send + 'static>(
        &self,
        chain: &str,
        f: impl FnOnce(&Path, u64) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let Some(dir) = audit_journal::journal_of(self.inner.audit.root(), chain)? else {
            return Ok(T::default());
        };
        let chain = chain.to_owned();
        self.read(move |c| f(&dir, audit_journal::archived_through(c, &chain)?))
            .await
    }

    /// A short indexed read, in place on the calling task when a lookup connection is free and
    /// the database is not busy, otherwise on the blocking pool.
    async fn lookup<T: Send + 'static>(
        &self,
        f: impl Fn(&Connection) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        for slot in &self.inner.lookups {
            let Ok(conn) = slot.try_lock() else {
                continue;
            };
            match f(&conn) {
                // Busy, or broken: the blocking pool's readers wait longer, or fail alike.
                Err(StoreError::Unavailable(_)) => break,
                done => return done,
            }
        }
        self.read(f).await
    }

    async fn change<T: Send + 'static>(
        &self,
        audit: &AuditDraft,
        f: impl FnOnce(&Transaction<'_>) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let inner = self.inner.clone();
        let audit = audit.clone();
        let out = self
            .write(move |tx| {
                let out = f(tx)?;
                // Durable before the change commits: a change never goes without its record.
                inner.audit.append(std::slice::from_ref(&audit))?;
                Ok(out)
            })
            .await?;
        self.inner.changes.fetch_add(1, Ordering::Release);
        let _ = self.inner.wake_indexer.try_send(());
        Ok(out)
    }
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| StoreError::Internal(format!("store task failed: {e}")))?
}

fn create_private_dir(dir: &Path) -> Result<()> {
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
fn create_private_file(path: &Path) -> Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.create(true).append(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options
        .open(path)
        .map_err(|e| unavailable(&format!("cannot create {}: {e}", path.display())))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
            .map_err(|e| unavailable(&format!("cannot restrict {}: {e}", path.display())))?;
    }
    Ok(())
}

fn connect(path: &Path) -> Result<Connection> {
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

fn migrate(conn: &mut Connection) -> Result<()> {
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

fn ensure_pepper(conn: &mut Connection, rng: &dyn SecureRandom) -> Result<()> {
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

impl Inner {
    /// Indexes every durable audit record the index does not hold yet.
    fn index(&self) -> Result<()> {
        let added = immediate(&self.indexer, |tx| self.audit.index(tx))?;
        if added > 0 {
            tracing::trace!(target: "latch::audit", chain = self.audit.chain(), records = added, "audit records indexed");
        }
        Ok(())
    }

    /// Empties the index of every chain with a journal and builds it again, in one transaction.
    fn reindex(&self) -> Result<u64> {
        let added = immediate(&self.indexer, |tx| {
            self.audit.clear_index(tx)?;
            self.audit.index(tx)
        })?;
        tracing::info!(target: "latch::audit", records = added, "the audit index was rebuilt from the journals");
        Ok(added)
    }
}

/// Runs `f` in an immediate (write-locked) transaction on `conn`, and commits what it did.
fn immediate<T>(
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

/// Starts the thread that indexes the audit journal behind the writers: woken after appends,
/// at most every [`INDEX_EVERY`], and every few seconds anyway (records other processes
/// appended). It stops with the store.
fn spawn_indexer(
    inner: std::sync::Weak<Inner>,
    woken: std::sync::mpsc::Receiver<()>,
) -> Result<()> {
    use std::sync::mpsc::RecvTimeoutError;
    std::thread::Builder::new()
        .name("latch-audit-index".into())
        .spawn(move || loop {
            match woken.recv_timeout(Duration::from_secs(2)) {
                Ok(()) | Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return,
            }
            let Some(inner) = inner.upgrade() else { return };
            if let Err(e) = inner.index() {
                tracing::error!(target: "latch::audit", error = %e, "cannot index the audit journal");
            }
            drop(inner);
            std::thread::sleep(INDEX_EVERY);
        })
        .map(|_| ())
        .map_err(|e| unavailable(&format!("cannot start the audit indexer: {e}")))
}

/// The shortest pause between two runs of the indexer: records gather into larger transactions.
const INDEX_EVERY: Duration = Duration::from_millis(200);

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
            id: ResourceId::parse(&self.display)
                .map_err(|e| corrupt(&format!("stored resource id: {e}")))?,
            created_at: UnixTime(self.created_at),
            isv_enabled: self.isv_enabled,
            isv_grants: FeatureSet::parse_csv(&self.isv_grants)
                .map_err(|e| corrupt(&e.to_string()))?,
            approvals: FeatureSet::parse_csv(&self.approvals)
                .map_err(|e| corrupt(&e.to_string()))?,
            auth_mode: AuthMode::parse(&self.auth_mode)
                .ok_or_else(|| corrupt("stored auth mode"))?,
        })
    }
}

fn load_resource(conn: &Connection, canonical: &str) -> Result<Option<Resource>> {
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

fn must_exist(conn: &Connection, id: &ResourceId) -> Result<Resource> {
    load_resource(conn, id.canonical())?
        .ok_or_else(|| StoreError::NotFound(format!("resource {id}")))
}

#[async_trait]
impl Store for SqliteStore {
    async fn key_pepper(&self) -> Result<Vec<u8>> {
        self.read(|c| {
            c.query_row(
                "SELECT value FROM meta WHERE name = 'key_pepper'",
                [],
                |r| r.get(0),
            )
            .map_err(sql)
        })
        .await
    }

    async fn create_resource(
        &self,
        resource: &Resource,
        key1: &KeyDigest,
        key2: &KeyDigest,
        audit: &AuditDraft,
    ) -> Result<()> {
        let r = resource.clone();
        let (k1, k2) = (*key1, *key2);
        self.change(audit, move |tx| {
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

    async fn resource(&self, id: &ResourceId) -> Result<Option<Resource>> {
        let canonical = id.canonical().to_owned();
        self.lookup(move |c| load_resource(c, &canonical)).await
    }

    async fn resource_by_key(
        &self,
        digest: &KeyDigest,
    ) -> Result<Option<(Resource, KeySlot, KeyDigest)>> {
        let d = *digest;
        self.lookup(move |c| {
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
            let Some((raw, slot, stored)) = row else {
                return Ok(None);
            };
            let slot = KeySlot::from_number(slot).ok_or_else(|| corrupt("key slot"))?;
            let stored: [u8; 32] = stored.try_into().map_err(|_| corrupt("key digest is not 32 bytes"))?;
            Ok(Some((raw.parse()?, slot, KeyDigest(stored))))
        })
        .await
    }

    async fn resources(&self) -> Result<Vec<Resource>> {
        self.read(|c| {
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

    async fn set_isv(
        &self,
        id: &ResourceId,
        enabled: bool,
        grants: &FeatureSet,
        audit: &AuditDraft,
    ) -> Result<Resource> {
        let (id, grants) = (id.clone(), grants.clone());
        self.change(audit, move |tx| {
            must_exist(tx, &id)?;
            tx.execute(
                "UPDATE resources SET isv_enabled = ?2, isv_grants = ?3 WHERE canonical = ?1",
                params![id.canonical(), enabled, grants.to_csv()],
            )
            .map_err(sql)?;
            must_exist(tx, &id)
        })
        .await
    }

    async fn set_approvals(
        &self,
        id: &ResourceId,
        features: &FeatureSet,
        audit: &AuditDraft,
    ) -> Result<Resource> {
        let (id, features) = (id.clone(), features.clone());
        self.change(audit, move |tx| {
            must_exist(tx, &id)?;
            tx.execute(
                "UPDATE resources SET approvals = ?2 WHERE canonical = ?1",
                params![id.canonical(), features.to_csv()],
            )
            .map_err(sql)?;
            must_exist(tx, &id)
        })
        .await
    }

    async fn set_auth_mode(
        &self,
        id: &ResourceId,
        mode: AuthMode,
        audit: &AuditDraft,
    ) -> Result<Resource> {
        let id = id.clone();
        self.change(audit, move |tx| {
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

    async fn replace_key(
        &self,
        id: &ResourceId,
        slot: KeySlot,
        digest: &KeyDigest,
        now: UnixTime,
        audit: &AuditDraft,
    ) -> Result<()> {
        let (id, d) = (id.clone(), *digest);
        self.change(audit, move |tx| {
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

    async fn keys(&self, id: &ResourceId) -> Result<Vec<KeyInfo>> {
        let id = id.clone();
        self.read(move |c| {
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
                    slot: KeySlot::from_number(slot).ok_or_else(|| corrupt("key slot"))?,
                    created_at: UnixTime(created),
                })
            })
            .collect()
        })
        .await
    }

    async fn set_client_blocked(
        &self,
        isv: &ResourceId,
        client: &ResourceId,
        blocked: bool,
        now: UnixTime,
        audit: &AuditDraft,
    ) -> Result<()> {
        let (isv, client) = (isv.clone(), client.clone());
        let by = crate::block_owner(&audit.actor);
        self.change(audit, move |tx| {
            must_exist(tx, &isv)?;
            if blocked {
                tx.execute(
                    "INSERT INTO client_blocks (isv, client, created_at, set_by) VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT (isv, client) DO UPDATE SET
                       set_by = CASE WHEN excluded.set_by = 'operator' THEN 'operator' ELSE set_by END",
                    params![isv.canonical(), client.canonical(), now.0, by],
                )
                .map_err(sql)?;
            } else {
                let owner: Option<String> = tx
                    .query_row(
                        "SELECT set_by FROM client_blocks WHERE isv = ?1 AND client = ?2",
                        params![isv.canonical(), client.canonical()],
                        |r| r.get(0),
                    )
                    .optional()
                    .map_err(sql)?;
                if by == "isv" && owner.as_deref() == Some("operator") {
                    return Err(StoreError::Refused(
                        "this block was set by the operator; only the operator can lift it".into(),
                    ));
                }
                tx.execute(
                    "DELETE FROM client_blocks WHERE isv = ?1 AND client = ?2",
                    params![isv.canonical(), client.canonical()],
                )
                .map_err(sql)?;
            }
            Ok(())
        })
        .await
    }

    async fn state_version(&self) -> Result<u64> {
        self.lookup(|c| {
            let v: i64 = c
                .prepare_cached("SELECT version FROM state_version WHERE id = 1")
                .map_err(sql)?
                .query_row([], |r| r.get(0))
                .map_err(sql)?;
            u64::try_from(v).map_err(|_| corrupt("negative state version"))
        })
        .await
    }

    fn changes_here(&self) -> u64 {
        self.inner.changes.load(Ordering::Acquire)
    }

    async fn is_client_blocked(&self, isv: &ResourceId, client: &ResourceId) -> Result<bool> {
        let (isv, client) = (isv.canonical().to_owned(), client.canonical().to_owned());
        self.lookup(move |c| {
            c.prepare_cached(
                "SELECT EXISTS (SELECT 1 FROM client_blocks WHERE isv = ?1 AND client = ?2)",
            )
            .map_err(sql)?
            .query_row([&isv, &client], |r| r.get(0))
            .map_err(sql)
        })
        .await
    }

    async fn add_revocation(&self, revocation: &Revocation, audit: &AuditDraft) -> Result<()> {
        let (scope, subject, before, expires) = crate::revocation_row(revocation);
        self.change(audit, move |tx| {
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

    async fn is_revoked(
        &self,
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
        self.lookup(move |c| {
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

    async fn revocations(&self, limit: usize) -> Result<Option<Vec<RevocationEntry>>> {
        let take = i64::try_from(limit.saturating_add(1)).unwrap_or(i64::MAX);
        let rows = self
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

    async fn prune_revocations(&self, now: UnixTime) -> Result<u64> {
        // Pruning removes only entries that can no longer match a valid token: not a state
        // change an auditor needs, so it has no record of its own.
        self.write(move |tx| {
            let n = tx
                .execute("DELETE FROM revocations WHERE expires_at <= ?1", [now.0])
                .map_err(sql)?;
            Ok(n as u64)
        })
        .await
    }

    async fn admin_credential(&self, role: AdminRole) -> Result<Option<KeyDigest>> {
        self.read(move |c| {
            let digest: Option<Vec<u8>> = c
                .prepare_cached("SELECT digest FROM admin_credentials WHERE role = ?1")
                .map_err(sql)?
                .query_row([role.as_str()], |r| r.get(0))
                .optional()
                .map_err(sql)?;
            digest
                .map(|d| {
                    d.try_into()
                        .map(KeyDigest)
                        .map_err(|_| corrupt("credential digest is not 32 bytes"))
                })
                .transpose()
        })
        .await
    }

    async fn set_admin_credential(
        &self,
        role: AdminRole,
        digest: &KeyDigest,
        audit: &AuditDraft,
    ) -> Result<()> {
        let (d, time) = (*digest, audit.time);
        self.change(audit, move |tx| {
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

    async fn rotate_signing_key(
        &self,
        key: &StoredSigningKey,
        now: UnixTime,
        audit: &AuditDraft,
    ) -> Result<()> {
        let key = key.clone();
        self.change(audit, move |tx| {
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

    async fn signing_keys(&self) -> Result<Vec<StoredSigningKey>> {
        self.read(|c| {
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

    async fn add_signing_key(&self, key: &StoredSigningKey, audit: &AuditDraft) -> Result<()> {
        let key = key.clone();
        self.change(audit, move |tx| {
            tx.execute(
                "INSERT INTO signing_keys (kid, pkcs8, created_at, retired_at) VALUES (?1, ?2, ?3, ?4)",
                params![key.kid, key.pkcs8.as_slice(), key.created_at.0, key.retired_at.map(|t| t.0)],
            )
            .map_err(sql)?;
            Ok(())
        })
        .await
    }

    async fn ready(&self) -> Result<()> {
        // Migrations ran when the store was opened; the file must still answer.
        self.read(|c| {
            c.query_row("SELECT count(*) FROM meta", [], |r| r.get::<_, i64>(0))
                .map(|_| ())
                .map_err(sql)
        })
        .await
    }
}

#[async_trait]
impl AuditStore for SqliteStore {
    async fn append_audit(&self, chain: &str, drafts: &[AuditDraft]) -> AuditResult<Vec<u64>> {
        if chain != self.inner.chain {
            return Err(unavailable(&format!(
                "this store writes audit chain {}, not {chain}",
                self.inner.chain
            ))
            .into());
        }
        Ok(self.journal(drafts.to_vec()).await?)
    }

    async fn record(&self, audit: &AuditDraft) -> AuditResult<u64> {
        let seqs = self.journal(vec![audit.clone()]).await?;
        Ok(seqs
            .first()
            .copied()
            .ok_or_else(|| unavailable("no record appended"))?)
    }

    async fn audit_records(
        &self,
        chain: &str,
        after: u64,
        limit: usize,
    ) -> AuditResult<Vec<StoredAuditRecord>> {
        let chain_name = chain.to_owned();
        Ok(self
            .past_archive(chain, move |dir, archived| {
                audit_journal::records(dir, &chain_name, after.max(archived), limit)
            })
            .await?)
    }

    async fn audit_chains(&self) -> AuditResult<Vec<String>> {
        let inner = self.inner.clone();
        Ok(blocking(move || inner.audit.chains()).await?)
    }

    async fn archive_audit(
        &self,
        chain: &str,
        previous: u64,
        through: u64,
        frontier: &[u8],
        audit: &AuditDraft,
    ) -> AuditResult<()> {
        let (chain, frontier) = (chain.to_owned(), frontier.to_vec());
        let journal = audit_journal::journal_of(self.inner.audit.root(), &chain)?;
        self.change(audit, move |tx| {
            let current: Option<i64> = tx
                .query_row("SELECT through_seq FROM audit_archives WHERE chain = ?1", [&chain], |r| r.get(0))
                .optional()
                .map_err(sql)?;
            if current.unwrap_or(0) as u64 != previous {
                return Err(unavailable("another archiving of this chain ran meanwhile; nothing was removed"));
            }
            audit_index::remove_through(
                tx,
                &mut audit_index::Names::default(),
                &chain,
                through,
            )?;
            tx.execute(
                "INSERT INTO audit_archives (chain, through_seq, frontier) VALUES (?1, ?2, ?3)
                 ON CONFLICT (chain) DO UPDATE SET through_seq = excluded.through_seq, frontier = excluded.frontier",
                params![chain, through as i64, frontier],
            )
            .map_err(sql)?;
            Ok(())
        })
        .await?;
        // The archived records leave the journal too, a whole segment at a time.
        if let Some(dir) = journal {
            blocking(move || {
                latch_audit::journal::remove_through(&dir, through)
                    .map_err(audit_journal::journal_error)
            })
            .await?;
        }
        Ok(())
    }

    async fn audit_archive(&self, chain: &str) -> AuditResult<Option<(u64, Vec<u8>)>> {
        self.indexed().await?;
        let chain = chain.to_owned();
        Ok(self
            .read(move |c| {
                c.prepare_cached(
                    "SELECT through_seq, frontier FROM audit_archives WHERE chain = ?1",
                )
                .map_err(sql)?
                .query_row([chain], |r| {
                    Ok((r.get::<_, i64>(0)? as u64, r.get::<_, Vec<u8>>(1)?))
                })
                .optional()
                .map_err(sql)
            })
            .await?)
    }

    async fn audit_head(&self, chain: &str) -> AuditResult<u64> {
        if chain == self.inner.chain {
            let inner = self.inner.clone();
            return Ok(blocking(move || inner.audit.durable().map(|(size, _)| size)).await?);
        }
        let Some(dir) = audit_journal::journal_of(self.inner.audit.root(), chain)? else {
            return Ok(0);
        };
        Ok(blocking(move || {
            latch_audit::journal::read(&dir, u64::MAX / 2, None, |_, _| Ok(()))
                .map_err(audit_journal::journal_error)
        })
        .await?)
    }

    async fn audit_leaves(&self, chain: &str) -> AuditResult<Vec<[u8; 32]>> {
        Ok(self
            .past_archive(chain, |dir, archived| {
                let mut leaves = Vec::new();
                latch_audit::journal::read(dir, archived, None, |_, body| {
                    leaves.push(latch_core::merkle::leaf_hash(body.as_bytes()));
                    Ok(())
                })
                .map_err(audit_journal::journal_error)?;
                Ok(leaves)
            })
            .await?)
    }

    async fn index_audit(&self) -> AuditResult<()> {
        Ok(self.indexed().await?)
    }

    async fn audit_subtrees(
        &self,
        chain: &str,
        height: u32,
        from: u64,
        to: u64,
    ) -> AuditResult<Vec<(u64, [u8; 32])>> {
        let chain = chain.to_owned();
        Ok(self
            .read(move |c| audit_index::subtrees(c, &chain, height, from, to))
            .await?)
    }

    async fn put_audit_subtrees(
        &self,
        chain: &str,
        height: u32,
        roots: &[(u64, [u8; 32])],
    ) -> AuditResult<()> {
        let (chain, roots) = (chain.to_owned(), roots.to_vec());
        Ok(self
            .write(move |tx| audit_index::put_subtrees(tx, &chain, height, &roots))
            .await?)
    }

    async fn reindex_audit(&self) -> AuditResult<u64> {
        let inner = self.inner.clone();
        Ok(blocking(move || inner.reindex()).await?)
    }

    async fn audit_frontier(
        &self,
        chain: &str,
    ) -> AuditResult<Option<latch_core::checkpoint::Frontier>> {
        if chain != self.inner.chain {
            return Ok(None);
        }
        self.indexed().await?;
        let inner = self.inner.clone();
        Ok(blocking(move || {
            let conn = inner
                .writer
                .lock()
                .map_err(|_| unavailable("writer lock poisoned"))?;
            inner.audit.checked_frontier(&conn).map(Some)
        })
        .await?)
    }

    async fn query_audit(
        &self,
        q: &AuditQuery,
    ) -> AuditResult<(Vec<StoredAuditRecord>, Option<i64>)> {
        self.indexed().await?;
        let q = q.clone();
        Ok(self
            .read_audit(move |inner, c| {
                audit_index::query(c, &q, &mut |chain| inner.audit.locator(chain))
            })
            .await?)
    }

    async fn issuer_of(&self, jti: &str) -> AuditResult<Option<String>> {
        self.indexed().await?;
        let jti = jti.to_owned();
        Ok(self
            .read_audit(move |inner, c| inner.audit.issuer_of(c, &jti))
            .await?)
    }

    async fn add_checkpoint(
        &self,
        checkpoint: &latch_core::checkpoint::Checkpoint,
    ) -> AuditResult<()> {
        let (chain, size, time) = (checkpoint.chain.clone(), checkpoint.size, checkpoint.time);
        let body = serde_json::to_string(checkpoint).map_err(|e| corrupt(&e.to_string()))?;
        Ok(self
            .write(move |tx| {
                tx.execute(
                    "INSERT INTO checkpoints (chain, size, body, time) VALUES (?1, ?2, ?3, ?4)",
                    params![chain, size as i64, body, time.0],
                )
                .map_err(sql)?;
                Ok(())
            })
            .await?)
    }

    async fn checkpoints(
        &self,
        chain: &str,
    ) -> AuditResult<Vec<latch_core::checkpoint::Checkpoint>> {
        let chain = chain.to_owned();
        Ok(self
            .read(move |c| {
                let mut stmt = c
                    .prepare_cached("SELECT body FROM checkpoints WHERE chain = ?1 ORDER BY id")
                    .map_err(sql)?;
                let rows = stmt
                    .query_map([chain], |r| r.get::<_, String>(0))
                    .map_err(sql)?;
                rows.map(|r| {
                    serde_json::from_str(&r.map_err(sql)?).map_err(|e| corrupt(&e.to_string()))
                })
                .collect()
            })
            .await?)
    }
}

const FACE_GROUP_COLUMNS: &str =
    "group_id, name, user_data, recognition_model, created_at, trained_at, trained_faces";

fn face_group_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<FaceGroup> {
    let trained_at: Option<i64> = row.get(5)?;
    let trained_faces: Option<i64> = row.get(6)?;
    Ok(FaceGroup {
        group_id: row.get(0)?,
        name: row.get(1)?,
        user_data: row.get(2)?,
        recognition_model: row.get(3)?,
        created_at: UnixTime(row.get(4)?),
        training: trained_at.zip(trained_faces).map(|(at, n)| Training {
            trained_at: UnixTime(at),
            faces_added: n,
        }),
    })
}

/// Persons from rows of `(person_id, name, user_data, face_id)`, ordered by person and then
/// by face: one person per run of rows.
fn face_persons_from(
    rows: Vec<(String, String, Option<String>, Option<String>)>,
) -> Vec<FacePerson> {
    let mut out: Vec<FacePerson> = Vec::new();
    for (person_id, name, user_data, face_id) in rows {
        match out.last_mut() {
            Some(last) if last.person_id == person_id => {}
            _ => out.push(FacePerson {
                person_id,
                name,
                user_data,
                persisted_face_ids: Vec::new(),
            }),
        }
        if let (Some(face_id), Some(last)) = (face_id, out.last_mut()) {
            last.persisted_face_ids.push(face_id);
        }
    }
    out
}

fn face_group_exists(conn: &Connection, resource: &str, group_id: &str) -> Result<bool> {
    conn.prepare_cached(
        "SELECT EXISTS (SELECT 1 FROM face_groups WHERE resource = ?1 AND group_id = ?2)",
    )
    .map_err(sql)?
    .query_row([resource, group_id], |r| r.get(0))
    .map_err(sql)
}

fn face_person_exists(
    conn: &Connection,
    resource: &str,
    group_id: &str,
    person_id: &str,
) -> Result<bool> {
    conn.prepare_cached(
        "SELECT EXISTS (SELECT 1 FROM face_persons WHERE resource = ?1 AND group_id = ?2 AND person_id = ?3)",
    )
    .map_err(sql)?
    .query_row([resource, group_id, person_id], |r| r.get(0))
    .map_err(sql)
}

fn limit(top: usize) -> i64 {
    i64::try_from(top).unwrap_or(i64::MAX)
}

// Face data is the client's, not security state: its writes have no audit record and do not
// count as changes (`changes_here`), and its tables move no state version.
#[async_trait]
impl FaceData for SqliteStore {
    async fn create_face_group(&self, resource: &ResourceId, group: &FaceGroup) -> Result<()> {
        let (resource, g) = (resource.canonical().to_owned(), group.clone());
        self.write(move |tx| {
            let inserted = tx
                .execute(
                    "INSERT INTO face_groups (resource, group_id, name, user_data, recognition_model, created_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT (resource, group_id) DO NOTHING",
                    params![resource, g.group_id, g.name, g.user_data, g.recognition_model, g.created_at.0],
                )
                .map_err(sql)?;
            if inserted == 0 {
                return Err(StoreError::FaceExists(face::FaceItem::Group));
            }
            Ok(())
        })
        .await
    }

    async fn face_group(&self, resource: &ResourceId, group_id: &str) -> Result<Option<FaceGroup>> {
        let (resource, group_id) = (resource.canonical().to_owned(), group_id.to_owned());
        self.lookup(move |c| {
            c.prepare_cached(&format!(
                "SELECT {FACE_GROUP_COLUMNS} FROM face_groups WHERE resource = ?1 AND group_id = ?2"
            ))
            .map_err(sql)?
            .query_row([&resource, &group_id], face_group_row)
            .optional()
            .map_err(sql)
        })
        .await
    }

    async fn face_groups(
        &self,
        resource: &ResourceId,
        after: Option<&str>,
        top: usize,
    ) -> Result<Vec<FaceGroup>> {
        let (resource, after) = (resource.canonical().to_owned(), after.map(str::to_owned));
        self.read(move |c| {
            let mut stmt = c
                .prepare_cached(&format!(
                    "SELECT {FACE_GROUP_COLUMNS} FROM face_groups
                     WHERE resource = ?1 AND (?2 IS NULL OR group_id > ?2)
                     ORDER BY group_id LIMIT ?3"
                ))
                .map_err(sql)?;
            let rows = stmt
                .query_map(params![resource, after, limit(top)], face_group_row)
                .map_err(sql)?;
            rows.map(|r| r.map_err(sql)).collect()
        })
        .await
    }

    async fn delete_face_group(&self, resource: &ResourceId, group_id: &str) -> Result<()> {
        let (resource, group_id) = (resource.canonical().to_owned(), group_id.to_owned());
        self.write(move |tx| {
            for table in ["face_faces", "face_persons"] {
                tx.execute(
                    &format!("DELETE FROM {table} WHERE resource = ?1 AND group_id = ?2"),
                    [&resource, &group_id],
                )
                .map_err(sql)?;
            }
            let deleted = tx
                .execute(
                    "DELETE FROM face_groups WHERE resource = ?1 AND group_id = ?2",
                    [&resource, &group_id],
                )
                .map_err(sql)?;
            if deleted == 0 {
                return Err(StoreError::FaceNotFound(face::FaceItem::Group));
            }
            Ok(())
        })
        .await
    }

    async fn create_face_person(
        &self,
        resource: &ResourceId,
        group_id: &str,
        person: &FacePerson,
    ) -> Result<()> {
        let (resource, group_id) = (resource.canonical().to_owned(), group_id.to_owned());
        let p = person.clone();
        self.write(move |tx| {
            if !face_group_exists(tx, &resource, &group_id)? {
                return Err(StoreError::FaceNotFound(face::FaceItem::Group));
            }
            let inserted = tx
                .execute(
                    "INSERT INTO face_persons (resource, group_id, person_id, name, user_data)
                     VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (resource, group_id, person_id) DO NOTHING",
                    params![resource, group_id, p.person_id, p.name, p.user_data],
                )
                .map_err(sql)?;
            if inserted == 0 {
                return Err(StoreError::FaceExists(face::FaceItem::Person));
            }
            Ok(())
        })
        .await
    }

    async fn face_person(
        &self,
        resource: &ResourceId,
        group_id: &str,
        person_id: &str,
    ) -> Result<Option<FacePerson>> {
        let (resource, group_id, person_id) = (
            resource.canonical().to_owned(),
            group_id.to_owned(),
            person_id.to_owned(),
        );
        self.lookup(move |c| {
            // One statement: the person and its faces as of one moment.
            let mut stmt = c
                .prepare_cached(
                    "SELECT p.person_id, p.name, p.user_data, f.face_id FROM face_persons p
                     LEFT JOIN face_faces f
                       ON f.resource = p.resource AND f.group_id = p.group_id AND f.person_id = p.person_id
                     WHERE p.resource = ?1 AND p.group_id = ?2 AND p.person_id = ?3
                     ORDER BY f.seq",
                )
                .map_err(sql)?;
            let rows = stmt
                .query_map([&resource, &group_id, &person_id], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
                })
                .map_err(sql)?
                .collect::<rusqlite::Result<Vec<_>>>()
                .map_err(sql)?;
            Ok(face_persons_from(rows).into_iter().next())
        })
        .await
    }

    async fn face_persons(
        &self,
        resource: &ResourceId,
        group_id: &str,
        after: Option<&str>,
        top: usize,
    ) -> Result<Vec<FacePerson>> {
        let (resource, group_id) = (resource.canonical().to_owned(), group_id.to_owned());
        let after = after.map(str::to_owned);
        self.read(move |c| {
            // One read transaction: the group and its persons as of one moment.
            let tx = c.unchecked_transaction().map_err(sql)?;
            if !face_group_exists(&tx, &resource, &group_id)? {
                return Err(StoreError::FaceNotFound(face::FaceItem::Group));
            }
            let mut stmt = tx
                .prepare_cached(
                    "SELECT p.person_id, p.name, p.user_data, f.face_id FROM
                       (SELECT person_id, name, user_data FROM face_persons
                        WHERE resource = ?1 AND group_id = ?2 AND (?3 IS NULL OR person_id > ?3)
                        ORDER BY person_id LIMIT ?4) p
                     LEFT JOIN face_faces f
                       ON f.resource = ?1 AND f.group_id = ?2 AND f.person_id = p.person_id
                     ORDER BY p.person_id, f.seq",
                )
                .map_err(sql)?;
            let rows = stmt
                .query_map(params![resource, group_id, after, limit(top)], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
                })
                .map_err(sql)?
                .collect::<rusqlite::Result<Vec<_>>>()
                .map_err(sql)?;
            Ok(face_persons_from(rows))
        })
        .await
    }

    async fn delete_face_person(
        &self,
        resource: &ResourceId,
        group_id: &str,
        person_id: &str,
    ) -> Result<()> {
        let (resource, group_id, person_id) = (
            resource.canonical().to_owned(),
            group_id.to_owned(),
            person_id.to_owned(),
        );
        self.write(move |tx| {
            if !face_group_exists(tx, &resource, &group_id)? {
                return Err(StoreError::FaceNotFound(face::FaceItem::Group));
            }
            tx.execute(
                "DELETE FROM face_faces WHERE resource = ?1 AND group_id = ?2 AND person_id = ?3",
                [&resource, &group_id, &person_id],
            )
            .map_err(sql)?;
            let deleted = tx
                .execute(
                    "DELETE FROM face_persons WHERE resource = ?1 AND group_id = ?2 AND person_id = ?3",
                    [&resource, &group_id, &person_id],
                )
                .map_err(sql)?;
            if deleted == 0 {
                return Err(StoreError::FaceNotFound(face::FaceItem::Person));
            }
            Ok(())
        })
        .await
    }

    async fn add_persisted_face(
        &self,
        resource: &ResourceId,
        group_id: &str,
        person_id: &str,
        face: &PersistedFace,
        limits: FaceLimits,
    ) -> Result<()> {
        let (resource, group_id, person_id) = (
            resource.canonical().to_owned(),
            group_id.to_owned(),
            person_id.to_owned(),
        );
        let face = face.clone();
        self.write(move |tx| {
            // The writer's transaction is IMMEDIATE: nothing else changes the group meanwhile.
            let counted = tx
                .execute(
                    "UPDATE face_groups SET faces_added = faces_added + 1 WHERE resource = ?1 AND group_id = ?2",
                    [&resource, &group_id],
                )
                .map_err(sql)?;
            if counted == 0 {
                return Err(StoreError::FaceNotFound(face::FaceItem::Group));
            }
            if !face_person_exists(tx, &resource, &group_id, &person_id)? {
                return Err(StoreError::FaceNotFound(face::FaceItem::Person));
            }
            let (in_group, of_person): (i64, i64) = tx
                .query_row(
                    "SELECT count(*), coalesce(sum(person_id = ?3), 0) FROM face_faces
                     WHERE resource = ?1 AND group_id = ?2",
                    [&resource, &group_id, &person_id],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .map_err(sql)?;
            limits.allow_another(in_group, of_person)?;
            let seq: i64 = tx
                .query_row(
                    "SELECT faces_added FROM face_groups WHERE resource = ?1 AND group_id = ?2",
                    [&resource, &group_id],
                    |r| r.get(0),
                )
                .map_err(sql)?;
            let inserted = tx
                .execute(
                    "INSERT INTO face_faces (resource, group_id, person_id, face_id, user_data, embedding, seq)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
                     ON CONFLICT (resource, group_id, person_id, face_id) DO NOTHING",
                    params![resource, group_id, person_id, face.face_id, face.user_data, face.embedding, seq],
                )
                .map_err(sql)?;
            if inserted == 0 {
                return Err(StoreError::FaceExists(face::FaceItem::PersistedFace));
            }
            Ok(())
        })
        .await
    }

    async fn persisted_face(
        &self,
        resource: &ResourceId,
        group_id: &str,
        person_id: &str,
        face_id: &str,
    ) -> Result<Option<PersistedFace>> {
        let (resource, group_id, person_id, face_id) = (
            resource.canonical().to_owned(),
            group_id.to_owned(),
            person_id.to_owned(),
            face_id.to_owned(),
        );
        self.lookup(move |c| {
            c.prepare_cached(
                "SELECT face_id, user_data, embedding FROM face_faces
                 WHERE resource = ?1 AND group_id = ?2 AND person_id = ?3 AND face_id = ?4",
            )
            .map_err(sql)?
            .query_row([&resource, &group_id, &person_id, &face_id], |r| {
                Ok(PersistedFace {
                    face_id: r.get(0)?,
                    user_data: r.get(1)?,
                    embedding: r.get(2)?,
                })
            })
            .optional()
            .map_err(sql)
        })
        .await
    }

    async fn delete_persisted_face(
        &self,
        resource: &ResourceId,
        group_id: &str,
        person_id: &str,
        face_id: &str,
    ) -> Result<()> {
        let (resource, group_id, person_id, face_id) = (
            resource.canonical().to_owned(),
            group_id.to_owned(),
            person_id.to_owned(),
            face_id.to_owned(),
        );
        self.write(move |tx| {
            let deleted = tx
                .execute(
                    "DELETE FROM face_faces WHERE resource = ?1 AND group_id = ?2 AND person_id = ?3 AND face_id = ?4",
                    [&resource, &group_id, &person_id, &face_id],
                )
                .map_err(sql)?;
            if deleted > 0 {
                return Ok(());
            }
            Err(if !face_group_exists(tx, &resource, &group_id)? {
                StoreError::FaceNotFound(face::FaceItem::Group)
            } else if !face_person_exists(tx, &resource, &group_id, &person_id)? {
                StoreError::FaceNotFound(face::FaceItem::Person)
            } else {
                StoreError::FaceNotFound(face::FaceItem::PersistedFace)
            })
        })
        .await
    }

    async fn train_face_group(
        &self,
        resource: &ResourceId,
        group_id: &str,
        at: UnixTime,
    ) -> Result<Training> {
        let (resource, group_id) = (resource.canonical().to_owned(), group_id.to_owned());
        self.write(move |tx| {
            let updated = tx
                .execute(
                    "UPDATE face_groups SET trained_at = ?3, trained_faces = faces_added
                     WHERE resource = ?1 AND group_id = ?2",
                    params![resource, group_id, at.0],
                )
                .map_err(sql)?;
            if updated == 0 {
                return Err(StoreError::FaceNotFound(face::FaceItem::Group));
            }
            let faces_added: i64 = tx
                .query_row(
                    "SELECT trained_faces FROM face_groups WHERE resource = ?1 AND group_id = ?2",
                    [&resource, &group_id],
                    |r| r.get(0),
                )
                .map_err(sql)?;
            Ok(Training {
                trained_at: at,
                faces_added,
            })
        })
        .await
    }

    async fn trained_faces(
        &self,
        resource: &ResourceId,
        group_id: &str,
    ) -> Result<Option<(Option<Training>, Vec<GroupFace>)>> {
        let (resource, group_id) = (resource.canonical().to_owned(), group_id.to_owned());
        self.read(move |c| {
            // One statement: the training and its faces as of one moment. An untrained
            // group's `trained_faces` is NULL, which no `seq` is at most.
            let mut stmt = c
                .prepare_cached(
                    "SELECT g.trained_at, g.trained_faces, f.person_id, f.embedding FROM face_groups g
                     LEFT JOIN face_faces f
                       ON f.resource = g.resource AND f.group_id = g.group_id AND f.seq <= g.trained_faces
                     WHERE g.resource = ?1 AND g.group_id = ?2
                     ORDER BY f.seq",
                )
                .map_err(sql)?;
            let mut rows = stmt.query([&resource, &group_id]).map_err(sql)?;
            let mut out: Option<(Option<Training>, Vec<GroupFace>)> = None;
            while let Some(row) = rows.next().map_err(sql)? {
                let (training, faces) = out.get_or_insert_with(|| (None, Vec::new()));
                let trained_at: Option<i64> = row.get(0).map_err(sql)?;
                let trained_faces: Option<i64> = row.get(1).map_err(sql)?;
                *training = trained_at.zip(trained_faces).map(|(at, n)| Training {
                    trained_at: UnixTime(at),
                    faces_added: n,
                });
                let person_id: Option<String> = row.get(2).map_err(sql)?;
                let embedding: Option<Vec<u8>> = row.get(3).map_err(sql)?;
                if let (Some(person_id), Some(embedding)) = (person_id, embedding) {
                    faces.push(GroupFace {
                        person_id,
                        embedding,
                    });
                }
            }
            Ok(out)
        })
        .await
    }

    async fn save_detected_faces(
        &self,
        resource: &ResourceId,
        faces: &[DetectedFace],
        now: UnixTime,
        max_live: usize,
    ) -> Result<()> {
        let (resource, faces) = (resource.canonical().to_owned(), faces.to_vec());
        self.write(move |tx| {
            // Counted up to the bound only: the count costs at most `max_live` index entries.
            let live: i64 = tx
                .query_row(
                    "SELECT count(*) FROM (SELECT 1 FROM face_detected
                     WHERE resource = ?1 AND expires_at > ?2 LIMIT ?3)",
                    params![resource, now.0, i64::try_from(max_live).unwrap_or(i64::MAX)],
                    |r| r.get(0),
                )
                .map_err(sql)?;
            within_live_face_ids(live, faces.len(), max_live)?;
            let mut stmt = tx
                .prepare_cached(
                    "INSERT INTO face_detected (face_id, resource, recognition_model, embedding, expires_at)
                     VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (face_id) DO NOTHING",
                )
                .map_err(sql)?;
            for f in &faces {
                let inserted = stmt
                    .execute(params![f.face_id, resource, f.recognition_model, f.embedding, f.expires_at.0])
                    .map_err(sql)?;
                if inserted == 0 {
                    return Err(StoreError::AlreadyExists(format!("face {}", f.face_id)));
                }
            }
            Ok(())
        })
        .await
    }

    async fn detected_faces(
        &self,
        resource: &ResourceId,
        face_ids: &[String],
        now: UnixTime,
    ) -> Result<Vec<DetectedFace>> {
        let resource = resource.canonical().to_owned();
        let mut ids = face_ids.to_vec();
        ids.sort_unstable();
        ids.dedup();
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        self.read(move |c| {
            // Point lookups by primary key, in id order, in one read transaction.
            let tx = c.unchecked_transaction().map_err(sql)?;
            let mut stmt = tx
                .prepare_cached(
                    "SELECT face_id, recognition_model, embedding, expires_at FROM face_detected
                     WHERE face_id = ?1 AND resource = ?2 AND expires_at > ?3",
                )
                .map_err(sql)?;
            let mut out = Vec::new();
            for id in &ids {
                let found = stmt
                    .query_row(params![id, resource, now.0], |r| {
                        Ok(DetectedFace {
                            face_id: r.get(0)?,
                            recognition_model: r.get(1)?,
                            embedding: r.get(2)?,
                            expires_at: UnixTime(r.get(3)?),
                        })
                    })
                    .optional()
                    .map_err(sql)?;
                out.extend(found);
            }
            Ok(out)
        })
        .await
    }

    async fn prune_detected_faces(&self, now: UnixTime) -> Result<u64> {
        self.write(move |tx| {
            let n = tx
                .execute("DELETE FROM face_detected WHERE expires_at <= ?1", [now.0])
                .map_err(sql)?;
            Ok(n as u64)
        })
        .await
    }

    async fn record_face_operation(
        &self,
        resource: &ResourceId,
        operation_id: &str,
        at: UnixTime,
        forget_before: UnixTime,
    ) -> Result<()> {
        let (resource, id) = (resource.canonical().to_owned(), operation_id.to_owned());
        self.write(move |tx| {
            tx.execute(
                "DELETE FROM face_operations WHERE resource = ?1 AND created_at < ?2",
                params![resource, forget_before.0],
            )
            .map_err(sql)?;
            let inserted = tx
                .execute(
                    "INSERT INTO face_operations (operation_id, resource, created_at) VALUES (?1, ?2, ?3)
                     ON CONFLICT (operation_id) DO NOTHING",
                    params![id, resource, at.0],
                )
                .map_err(sql)?;
            if inserted == 0 {
                return Err(StoreError::AlreadyExists(format!("operation {id}")));
            }
            Ok(())
        })
        .await
    }

    async fn face_operation(
        &self,
        resource: &ResourceId,
        operation_id: &str,
    ) -> Result<Option<UnixTime>> {
        let (resource, id) = (resource.canonical().to_owned(), operation_id.to_owned());
        self.lookup(move |c| {
            c.prepare_cached(
                "SELECT created_at FROM face_operations WHERE operation_id = ?1 AND resource = ?2",
            )
            .map_err(sql)?
            .query_row([&id, &resource], |r| r.get(0).map(UnixTime))
            .optional()
            .map_err(sql)
        })
        .await
    }
}

/// Whether `adding` more face ids fit a resource holding `live`; what a full one answers.
pub(crate) fn within_live_face_ids(live: i64, adding: usize, max_live: usize) -> Result<()> {
    let live = usize::try_from(live).unwrap_or(usize::MAX);
    if live.saturating_add(adding) > max_live {
        return Err(StoreError::Refused(format!(
            "the resource already holds {live} face ids that have not expired, and may hold {max_live}; shorten faceIdTimeToLive or wait"
        )));
    }
    Ok(())
}

fn sql(e: rusqlite::Error) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

fn unavailable(msg: &str) -> StoreError {
    StoreError::Unavailable(msg.to_owned())
}

fn corrupt(msg: &str) -> StoreError {
    StoreError::Corrupt(msg.to_owned())
}
