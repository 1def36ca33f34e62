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
//!
//! This file holds the store, its opening and the [`Store`] trait's wiring; each domain is a module
//! of its own, named alike in both backends: `resources` (resources, their keys and the key
//! pepper), `grants` (ISV issuance and grants, direct approvals), `blocks` (client blocks),
//! `revocations`, `credentials` (the admin credentials), `signing_keys`, `face_data`, and the audit
//! log's records in `audit_store` over `audit_journal` and `audit_index`; `schema` migrates the
//! database and `connection` opens it and runs work on it.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use latch_core::audit::{AuditDraft, KeySlot};
use latch_core::secret::KeyDigest;
use latch_core::{FeatureSet, ResourceId, UnixTime};
use ring::rand::SecureRandom;
use rusqlite::{Connection, Transaction};

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
mod audit_store;
mod blocks;
mod connection;
mod credentials;
mod face_data;
mod grants;
mod resources;
mod revocations;
mod schema;
mod signing_keys;

use connection::{blocking, connect, create_private_dir, create_private_file, immediate};

const READERS: usize = 4;

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
        schema::migrate(&mut writer)?;
        resources::ensure_pepper(&mut writer, rng)?;
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

#[async_trait]
impl Store for SqliteStore {
    async fn key_pepper(&self) -> Result<Vec<u8>> {
        resources::key_pepper(self).await
    }

    async fn create_resource(
        &self,
        resource: &Resource,
        key1: &KeyDigest,
        key2: &KeyDigest,
        audit: &AuditDraft,
    ) -> Result<()> {
        resources::create_resource(self, resource, key1, key2, audit).await
    }

    async fn resource(&self, id: &ResourceId) -> Result<Option<Resource>> {
        resources::resource(self, id).await
    }

    async fn resource_by_key(
        &self,
        digest: &KeyDigest,
    ) -> Result<Option<(Resource, KeySlot, KeyDigest)>> {
        resources::resource_by_key(self, digest).await
    }

    async fn resources(&self) -> Result<Vec<Resource>> {
        resources::resources(self).await
    }

    async fn set_isv(
        &self,
        id: &ResourceId,
        enabled: bool,
        grants: &FeatureSet,
        audit: &AuditDraft,
    ) -> Result<Resource> {
        grants::set_isv(self, id, enabled, grants, audit).await
    }

    async fn set_approvals(
        &self,
        id: &ResourceId,
        features: &FeatureSet,
        audit: &AuditDraft,
    ) -> Result<Resource> {
        grants::set_approvals(self, id, features, audit).await
    }

    async fn set_auth_mode(
        &self,
        id: &ResourceId,
        mode: AuthMode,
        audit: &AuditDraft,
    ) -> Result<Resource> {
        resources::set_auth_mode(self, id, mode, audit).await
    }

    async fn replace_key(
        &self,
        id: &ResourceId,
        slot: KeySlot,
        digest: &KeyDigest,
        now: UnixTime,
        audit: &AuditDraft,
    ) -> Result<()> {
        resources::replace_key(self, id, slot, digest, now, audit).await
    }

    async fn keys(&self, id: &ResourceId) -> Result<Vec<KeyInfo>> {
        resources::keys(self, id).await
    }

    async fn set_client_blocked(
        &self,
        isv: &ResourceId,
        client: &ResourceId,
        blocked: bool,
        now: UnixTime,
        audit: &AuditDraft,
    ) -> Result<()> {
        blocks::set_client_blocked(self, isv, client, blocked, now, audit).await
    }

    async fn state_version(&self) -> Result<u64> {
        schema::state_version(self).await
    }

    fn changes_here(&self) -> u64 {
        self.inner.changes.load(Ordering::Acquire)
    }

    async fn is_client_blocked(&self, isv: &ResourceId, client: &ResourceId) -> Result<bool> {
        blocks::is_client_blocked(self, isv, client).await
    }

    async fn add_revocation(&self, revocation: &Revocation, audit: &AuditDraft) -> Result<()> {
        revocations::add_revocation(self, revocation, audit).await
    }

    async fn is_revoked(
        &self,
        jti: &str,
        isv: &ResourceId,
        target: &ResourceId,
        iat: UnixTime,
    ) -> Result<bool> {
        revocations::is_revoked(self, jti, isv, target, iat).await
    }

    async fn revocations(&self, limit: usize) -> Result<Option<Vec<RevocationEntry>>> {
        revocations::revocations(self, limit).await
    }

    async fn prune_revocations(&self, now: UnixTime) -> Result<u64> {
        revocations::prune_revocations(self, now).await
    }

    async fn admin_credential(&self, role: AdminRole) -> Result<Option<KeyDigest>> {
        credentials::admin_credential(self, role).await
    }

    async fn set_admin_credential(
        &self,
        role: AdminRole,
        digest: &KeyDigest,
        audit: &AuditDraft,
    ) -> Result<()> {
        credentials::set_admin_credential(self, role, digest, audit).await
    }

    async fn rotate_signing_key(
        &self,
        key: &StoredSigningKey,
        now: UnixTime,
        audit: &AuditDraft,
    ) -> Result<()> {
        signing_keys::rotate_signing_key(self, key, now, audit).await
    }

    async fn signing_keys(&self) -> Result<Vec<StoredSigningKey>> {
        signing_keys::signing_keys(self).await
    }

    async fn add_signing_key(&self, key: &StoredSigningKey, audit: &AuditDraft) -> Result<()> {
        signing_keys::add_signing_key(self, key, audit).await
    }

    async fn ready(&self) -> Result<()> {
        schema::ready(self).await
    }
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
