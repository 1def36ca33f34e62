//! The shared backend: PostgreSQL, for many replicas of each service.
//!
//! Same tables and the same rules as the embedded backend: every change commits with its audit
//! record in one transaction. Each process appends to its own audit chain; the head of every
//! chain is a row (`audit_heads`) locked for the length of an append, so two writers of one
//! chain (a server and the admin CLI) take turns instead of forking it. How the chains are
//! kept, checked and indexed is in `audit_chains.rs`.
//!
//! Connections come from a small pool; a connection found closed (the database restarted, the
//! network dropped) is replaced at its next use, so the store recovers by itself once the
//! database is back. Until then every call fails with [`StoreError::Unavailable`].
//!
//! Migrations are applied in order at start, under a transaction-scoped advisory lock so that
//! replicas starting together apply each once. The SQL is plain PostgreSQL; CockroachDB and
//! YugabyteDB accept it except for the advisory locks (CockroachDB has none: apply migrations
//! from one process, `latch store migrate`, before starting replicas).
//!
//! Auditor queries page by an identity id, which is assigned as a record is indexed: while
//! several replicas write, a record committed late with a lower id can fall behind a page
//! already read. Exports and `audit verify` read each chain by sequence number and see every
//! record; to list a chain exhaustively by query, filter on one chain (`--chain`), whose
//! records are committed in sequence order.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use latch_audit::{AuditQuery, AuditStore, Result as AuditResult, StoredAuditRecord};
use latch_core::audit::{self, AuditDraft, KeySlot};
use latch_core::secret::KeyDigest;
use latch_core::{FeatureSet, ResourceId, UnixTime};
use ring::rand::SecureRandom;
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, Row, Transaction};

mod audit_chains;
mod audit_store;
mod blocks;
mod credentials;
mod face_data;
mod grants;
mod resources;
mod revocations;
mod signing_keys;
mod tls;

use crate::face::{
    self, DetectedFace, FaceData, FaceGroup, FaceLimits, FacePerson, GroupFace, PersistedFace,
    Training,
};
use crate::{
    AdminRole, AuthMode, KeyInfo, Resource, Result, Revocation, RevocationEntry, Store, StoreError,
    StoredSigningKey,
};

/// Connections per process.
pub const POOL_SIZE: usize = 8;
/// How long opening a connection may take before the call fails.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Schema migrations, applied in order; `schema_migrations` lists those applied.
const MIGRATIONS: &[&str] = &[
    include_str!("../../migrations/postgres/0001_state.sql"),
    include_str!("../../migrations/postgres/0002_state_version.sql"),
    include_str!("../../migrations/postgres/0003_face.sql"),
    include_str!("../../migrations/postgres/0004_audit_log.sql"),
];

/// The PostgreSQL store.
#[derive(Clone)]
pub struct PgStore {
    inner: Arc<Inner>,
}

struct Inner {
    chain: String,
    pool: Pool,
    /// The ends of the audit chains, held in memory.
    audit: audit_chains::Chains,
    /// State changes committed through this handle.
    changes: AtomicU64,
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL may hold a password: only where it points.
        let config = &self.inner.pool.config;
        f.debug_struct("PgStore")
            .field("hosts", &config.get_hosts())
            .field("dbname", &config.get_dbname())
            .field("chain", &self.inner.chain)
            .finish_non_exhaustive()
    }
}

impl PgStore {
    /// Connects to `url` (`postgres://user@host:port/db`, or key=value form), applies pending
    /// migrations and makes the key pepper on first use. Records of changes made through this
    /// handle go to audit chain `chain`.
    pub async fn connect(url: &str, chain: &str, rng: &dyn SecureRandom) -> Result<PgStore> {
        Self::connect_with_ca(url, None, chain, rng).await
    }

    /// Like [`PgStore::connect`], trusting only the certificates in `ca_file` (PEM) for TLS
    /// to the database instead of the web PKI roots.
    pub async fn connect_with_ca(
        url: &str,
        ca_file: Option<&std::path::Path>,
        chain: &str,
        rng: &dyn SecureRandom,
    ) -> Result<PgStore> {
        let store = Self::handle(url, ca_file, chain)?;
        store.migrate().await?;
        resources::ensure_pepper(&store, rng).await?;
        Ok(store)
    }

    /// A handle that has not touched the database yet (no migration, no connection).
    pub fn connect_only(url: &str, chain: &str) -> Result<PgStore> {
        Self::handle(url, None, chain)
    }

    /// A handle that has not touched the database yet, with `ca_file` for TLS.
    pub fn handle(url: &str, ca_file: Option<&std::path::Path>, chain: &str) -> Result<PgStore> {
        let mut config: tokio_postgres::Config = url
            .parse()
            .map_err(|e| StoreError::Unavailable(format!("database URL: {e}")))?;
        config.connect_timeout(CONNECT_TIMEOUT);
        config.application_name("latch");
        // A dead peer or a silent network is noticed in seconds, not hours: the calls waiting
        // on it fail (503) and the connection is replaced.
        config.keepalives_idle(Duration::from_secs(10));
        config.keepalives_interval(Duration::from_secs(5));
        config.keepalives_retries(3);
        config.tcp_user_timeout(Duration::from_secs(15));
        tls::apply_policy(&mut config, url);
        Ok(PgStore {
            inner: Arc::new(Inner {
                chain: chain.to_owned(),
                pool: Pool::new(config, tls::RustlsConnect::new(ca_file)?),
                audit: audit_chains::Chains::default(),
                changes: AtomicU64::new(0),
            }),
        })
    }

    /// Where it points, without credentials: `host:port/dbname`.
    pub fn location(&self) -> String {
        let config = &self.inner.pool.config;
        let host = match config.get_hosts().first() {
            Some(tokio_postgres::config::Host::Tcp(h)) => h.clone(),
            #[cfg(unix)]
            Some(tokio_postgres::config::Host::Unix(p)) => p.display().to_string(),
            None => "localhost".into(),
        };
        let port = config.get_ports().first().copied().unwrap_or(5432);
        format!(
            "{host}:{port}/{}",
            config.get_dbname().unwrap_or("postgres")
        )
    }

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

    /// Runs `f` in a transaction that also appends `audit` to this handle's chain.
    async fn change<T>(
        &self,
        audit: &AuditDraft,
        f: impl for<'t> FnOnce(&'t Transaction<'t>) -> Bx<'t, Result<T>>,
    ) -> Result<T> {
        let mut conn = self.inner.pool.get().await?;
        let tx = begin(&mut conn).await?;
        let out = f(&tx).await?;
        let chain = &self.inner.chain;
        let (_, held) =
            audit_chains::append(&tx, &self.inner.audit, chain, std::slice::from_ref(audit))
                .await?;
        tx.commit().await.map_err(pg)?;
        self.inner.changes.fetch_add(1, Ordering::Release);
        self.committed(chain, held);
        Ok(out)
    }

    /// After a commit that appended to `chain`: keeps its new end, and has the records indexed
    /// a moment later.
    fn committed(&self, chain: &str, held: audit_chains::Held) {
        self.inner.audit.install(chain, held);
        if self.inner.audit.index_due() {
            let Ok(runtime) = tokio::runtime::Handle::try_current() else {
                // No runtime to index on: the next query indexes.
                self.inner.audit.index_started();
                return;
            };
            let store = self.clone();
            runtime.spawn(async move {
                tokio::time::sleep(audit_chains::INDEX_DELAY).await;
                // Cleared first: a commit from here on asks for an indexing of its own.
                store.inner.audit.index_started();
                if let Err(e) = store.index_audit().await {
                    tracing::warn!(target: "latch::audit", error = %e, "audit index not brought up to date; the next query will");
                }
            });
        }
    }

    /// Runs `f` in a transaction of its own, with no audit record: for data that is not
    /// security state (face data).
    async fn write<T>(
        &self,
        f: impl for<'t> FnOnce(&'t Transaction<'t>) -> Bx<'t, Result<T>>,
    ) -> Result<T> {
        let mut conn = self.inner.pool.get().await?;
        let tx = begin(&mut conn).await?;
        let out = f(&tx).await?;
        tx.commit().await.map_err(pg)?;
        Ok(out)
    }

    async fn query(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<Vec<Row>> {
        let conn = self.inner.pool.get().await?;
        conn.client()?.query(sql, params).await.map_err(pg)
    }

    async fn query_opt(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<Option<Row>> {
        let conn = self.inner.pool.get().await?;
        conn.client()?.query_opt(sql, params).await.map_err(pg)
    }
}

type Bx<'t, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 't>>;

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

/// A fixed set of connections, each opened on first use and reopened after it breaks.
struct Pool {
    config: tokio_postgres::Config,
    tls: tls::RustlsConnect,
    slots: Vec<tokio::sync::Mutex<Option<Client>>>,
    next: AtomicUsize,
}

/// A connection taken from the pool, given back when dropped.
struct Pooled<'a>(tokio::sync::MutexGuard<'a, Option<Client>>);

impl Pooled<'_> {
    fn client(&self) -> Result<&Client> {
        self.0.as_ref().ok_or_else(|| unavailable("no connection"))
    }

    fn client_mut(&mut self) -> Result<&mut Client> {
        self.0.as_mut().ok_or_else(|| unavailable("no connection"))
    }
}

impl Pool {
    fn new(config: tokio_postgres::Config, tls: tls::RustlsConnect) -> Pool {
        Pool {
            config,
            tls,
            slots: (0..POOL_SIZE)
                .map(|_| tokio::sync::Mutex::new(None))
                .collect(),
            next: AtomicUsize::new(0),
        }
    }

    async fn get(&self) -> Result<Pooled<'_>> {
        // A free connection if there is one; otherwise wait for the next in turn.
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let mut guard = None;
        for i in 0..self.slots.len() {
            if let Ok(g) = self.slots[(start + i) % self.slots.len()].try_lock() {
                guard = Some(g);
                break;
            }
        }
        let mut guard = match guard {
            Some(g) => g,
            None => self.slots[start % self.slots.len()].lock().await,
        };
        if guard.as_ref().is_none_or(Client::is_closed) {
            *guard = None;
            let (client, connection) = self.config.connect(self.tls.clone()).await.map_err(pg)?;
            tokio::spawn(async move {
                if let Err(e) = connection.await {
                    tracing::warn!(target: "latch::store", error = %e, "database connection lost");
                }
            });
            *guard = Some(client);
        }
        Ok(Pooled(guard))
    }
}

async fn begin<'a>(conn: &'a mut Pooled<'_>) -> Result<Transaction<'a>> {
    conn.0
        .as_mut()
        .ok_or_else(|| unavailable("no connection"))?
        .transaction()
        .await
        .map_err(pg)
}

#[async_trait]
impl Store for PgStore {
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
        let row = self
            .query_opt("SELECT version FROM state_version WHERE id = 1", &[])
            .await?
            .ok_or_else(|| corrupt("no state version row"))?;
        u64::try_from(row.get::<_, i64>(0)).map_err(|_| corrupt("negative state version"))
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
        match self.pending_migrations().await? {
            0 => Ok(()),
            n => Err(unavailable(&format!(
                "{n} migration(s) pending: run `latch store migrate`"
            ))),
        }
    }
}

fn signed(n: u64) -> Result<i64> {
    i64::try_from(n).map_err(|_| unavailable("number out of range"))
}

fn unsigned(n: i64) -> Result<u64> {
    u64::try_from(n).map_err(|_| corrupt("negative sequence number"))
}

fn pg(e: tokio_postgres::Error) -> StoreError {
    // The driver's messages name the server's error, never the connection's password.
    if let Some(db) = e.as_db_error() {
        return StoreError::Unavailable(format!("database: {}", db.message()));
    }
    // The cause (a refused connection, an untrusted certificate) is at the chain's end.
    let mut message = format!("database: {e}");
    let mut source = std::error::Error::source(&e);
    while let Some(cause) = source {
        message.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    StoreError::Unavailable(message)
}

fn unavailable(msg: &str) -> StoreError {
    StoreError::Unavailable(msg.to_owned())
}

fn corrupt(msg: &str) -> StoreError {
    StoreError::Corrupt(msg.to_owned())
}
