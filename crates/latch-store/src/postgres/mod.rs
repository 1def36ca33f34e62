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
        store.ensure_pepper(rng).await?;
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

    async fn ensure_pepper(&self, rng: &dyn SecureRandom) -> Result<()> {
        let mut pepper = [0u8; 32];
        rng.fill(&mut pepper)
            .map_err(|_| unavailable("random number generator failed"))?;
        let conn = self.inner.pool.get().await?;
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

const RESOURCE_COLUMNS: &str =
    "r.display, r.created_at, r.isv_enabled, r.isv_grants, r.approvals, r.auth_mode";

fn resource_row(row: &Row) -> Result<Resource> {
    let display: String = row.try_get(0).map_err(pg)?;
    Ok(Resource {
        id: ResourceId::parse(&display)
            .map_err(|e| corrupt(&format!("stored resource id: {e}")))?,
        created_at: UnixTime(row.try_get(1).map_err(pg)?),
        isv_enabled: row.try_get(2).map_err(pg)?,
        isv_grants: FeatureSet::parse_csv(row.try_get(3).map_err(pg)?)
            .map_err(|e| corrupt(&e.to_string()))?,
        approvals: FeatureSet::parse_csv(row.try_get(4).map_err(pg)?)
            .map_err(|e| corrupt(&e.to_string()))?,
        auth_mode: AuthMode::parse(row.try_get(5).map_err(pg)?)
            .ok_or_else(|| corrupt("stored auth mode"))?,
    })
}

async fn load_resource(tx: &Transaction<'_>, id: &ResourceId) -> Result<Resource> {
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

#[async_trait]
impl Store for PgStore {
    async fn key_pepper(&self) -> Result<Vec<u8>> {
        self.query_opt("SELECT value FROM meta WHERE name = 'key_pepper'", &[])
            .await?
            .map(|r| r.get(0))
            .ok_or_else(|| corrupt("no key pepper"))
    }

    async fn create_resource(
        &self,
        resource: &Resource,
        key1: &KeyDigest,
        key2: &KeyDigest,
        audit: &AuditDraft,
    ) -> Result<()> {
        let (r, k1, k2) = (resource.clone(), *key1, *key2);
        self.change(audit, move |tx| {
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

    async fn resource(&self, id: &ResourceId) -> Result<Option<Resource>> {
        self.query_opt(
            &format!("SELECT {RESOURCE_COLUMNS} FROM resources r WHERE r.canonical = $1"),
            &[&id.canonical()],
        )
        .await?
        .as_ref()
        .map(resource_row)
        .transpose()
    }

    async fn resource_by_key(
        &self,
        digest: &KeyDigest,
    ) -> Result<Option<(Resource, KeySlot, KeyDigest)>> {
        let Some(row) = self
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
        let slot = u8::try_from(row.get::<_, i16>(6))
            .ok()
            .and_then(KeySlot::from_number)
            .ok_or_else(|| corrupt("key slot"))?;
        let stored: [u8; 32] = row
            .get::<_, Vec<u8>>(7)
            .try_into()
            .map_err(|_| corrupt("key digest is not 32 bytes"))?;
        Ok(Some((resource_row(&row)?, slot, KeyDigest(stored))))
    }

    async fn resources(&self) -> Result<Vec<Resource>> {
        self.query(
            &format!("SELECT {RESOURCE_COLUMNS} FROM resources r ORDER BY r.canonical"),
            &[],
        )
        .await?
        .iter()
        .map(resource_row)
        .collect()
    }

    async fn set_isv(
        &self,
        id: &ResourceId,
        enabled: bool,
        grants: &FeatureSet,
        audit: &AuditDraft,
    ) -> Result<Resource> {
        let (id, grants) = (id.clone(), grants.to_csv());
        self.change(audit, move |tx| {
            Box::pin(async move {
                load_resource(tx, &id).await?;
                tx.execute(
                    "UPDATE resources SET isv_enabled = $2, isv_grants = $3 WHERE canonical = $1",
                    &[&id.canonical(), &enabled, &grants],
                )
                .await
                .map_err(pg)?;
                load_resource(tx, &id).await
            })
        })
        .await
    }

    async fn set_approvals(
        &self,
        id: &ResourceId,
        features: &FeatureSet,
        audit: &AuditDraft,
    ) -> Result<Resource> {
        let (id, features) = (id.clone(), features.to_csv());
        self.change(audit, move |tx| {
            Box::pin(async move {
                load_resource(tx, &id).await?;
                tx.execute(
                    "UPDATE resources SET approvals = $2 WHERE canonical = $1",
                    &[&id.canonical(), &features],
                )
                .await
                .map_err(pg)?;
                load_resource(tx, &id).await
            })
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

    async fn keys(&self, id: &ResourceId) -> Result<Vec<KeyInfo>> {
        if self.resource(id).await?.is_none() {
            return Err(StoreError::NotFound(format!("resource {id}")));
        }
        self.query(
            "SELECT slot, created_at FROM keys WHERE resource = $1 ORDER BY slot",
            &[&id.canonical()],
        )
        .await?
        .iter()
        .map(|r| {
            Ok(KeyInfo {
                slot: u8::try_from(r.get::<_, i16>(0))
                    .ok()
                    .and_then(KeySlot::from_number)
                    .ok_or_else(|| corrupt("key slot"))?,
                created_at: UnixTime(r.get(1)),
            })
        })
        .collect()
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
            Box::pin(async move {
                load_resource(tx, &isv).await?;
                let (isv, client) = (isv.canonical(), client.canonical());
                if blocked {
                    tx.execute(
                        "INSERT INTO client_blocks (isv, client, created_at, set_by) VALUES ($1, $2, $3, $4)
                         ON CONFLICT (isv, client) DO UPDATE SET
                           set_by = CASE WHEN excluded.set_by = 'operator' THEN 'operator' ELSE client_blocks.set_by END",
                        &[&isv, &client, &now.0, &by],
                    )
                    .await
                    .map_err(pg)?;
                } else {
                    // One statement, so a block the operator sets meanwhile is never lifted by an
                    // ISV: it either sees the operator's row (and leaves it) or runs first.
                    tx.execute(
                        "DELETE FROM client_blocks WHERE isv = $1 AND client = $2 AND (set_by <> 'operator' OR $3 = 'operator')",
                        &[&isv, &client, &by],
                    )
                    .await
                    .map_err(pg)?;
                    let remains = tx
                        .query_opt(
                            "SELECT 1 FROM client_blocks WHERE isv = $1 AND client = $2",
                            &[&isv, &client],
                        )
                        .await
                        .map_err(pg)?;
                    if remains.is_some() {
                        return Err(StoreError::Refused(
                            "this block was set by the operator; only the operator can lift it"
                                .into(),
                        ));
                    }
                }
                Ok(())
            })
        })
        .await
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
        Ok(self
            .query_opt(
                "SELECT 1 FROM client_blocks WHERE isv = $1 AND client = $2",
                &[&isv.canonical(), &client.canonical()],
            )
            .await?
            .is_some())
    }

    async fn add_revocation(&self, revocation: &Revocation, audit: &AuditDraft) -> Result<()> {
        let (scope, subject, before, expires) = crate::revocation_row(revocation);
        self.change(audit, move |tx| {
            Box::pin(async move {
                // A later "before" widens an earlier one; it never narrows it.
                tx.execute(
                    "INSERT INTO revocations (scope, subject, before, expires_at) VALUES ($1, $2, $3, $4)
                     ON CONFLICT (scope, subject) DO UPDATE SET
                       before = GREATEST(revocations.before, excluded.before),
                       expires_at = GREATEST(revocations.expires_at, excluded.expires_at)",
                    &[&scope, &subject, &before.map(|t| t.0), &expires.0],
                )
                .await
                .map_err(pg)?;
                Ok(())
            })
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
        let pair = format!("{} {}", isv.canonical(), target.canonical());
        Ok(self
            .query_opt(
                "SELECT 1 FROM revocations WHERE
                    (scope = 'jti' AND subject = $1)
                 OR (scope = 'isv' AND subject = $2 AND $4 < before)
                 OR (scope = 'target' AND subject = $3 AND $4 < before)
                 OR (scope = 'isv_target' AND subject = $5 AND $4 < before)
                 LIMIT 1",
                &[&jti, &isv.canonical(), &target.canonical(), &iat.0, &pair],
            )
            .await?
            .is_some())
    }

    async fn revocations(&self, limit: usize) -> Result<Option<Vec<RevocationEntry>>> {
        let take = i64::try_from(limit.saturating_add(1)).unwrap_or(i64::MAX);
        let rows = self
            .query(
                "SELECT scope, subject, before FROM revocations LIMIT $1",
                &[&take],
            )
            .await?;
        if rows.len() > limit {
            return Ok(None);
        }
        Ok(Some(
            rows.iter()
                .map(|r| RevocationEntry {
                    scope: r.get(0),
                    subject: r.get(1),
                    before: r.get::<_, Option<i64>>(2).map(UnixTime),
                })
                .collect(),
        ))
    }

    async fn prune_revocations(&self, now: UnixTime) -> Result<u64> {
        // Pruning removes only entries that can no longer match a valid token: not a state
        // change an auditor needs, so it has no record of its own.
        let conn = self.inner.pool.get().await?;
        conn.client()?
            .execute("DELETE FROM revocations WHERE expires_at <= $1", &[&now.0])
            .await
            .map_err(pg)
    }

    async fn admin_credential(&self, role: AdminRole) -> Result<Option<KeyDigest>> {
        self.query_opt(
            "SELECT digest FROM admin_credentials WHERE role = $1",
            &[&role.as_str()],
        )
        .await?
        .map(|r| {
            r.get::<_, Vec<u8>>(0)
                .try_into()
                .map(KeyDigest)
                .map_err(|_| corrupt("credential digest is not 32 bytes"))
        })
        .transpose()
    }

    async fn set_admin_credential(
        &self,
        role: AdminRole,
        digest: &KeyDigest,
        audit: &AuditDraft,
    ) -> Result<()> {
        let (d, time) = (*digest, audit.time);
        self.change(audit, move |tx| {
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

    async fn rotate_signing_key(
        &self,
        key: &StoredSigningKey,
        now: UnixTime,
        audit: &AuditDraft,
    ) -> Result<()> {
        let key = key.clone();
        self.change(audit, move |tx| {
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

    async fn signing_keys(&self) -> Result<Vec<StoredSigningKey>> {
        Ok(self
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

    async fn add_signing_key(&self, key: &StoredSigningKey, audit: &AuditDraft) -> Result<()> {
        let key = key.clone();
        self.change(audit, move |tx| {
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

    async fn ready(&self) -> Result<()> {
        match self.pending_migrations().await? {
            0 => Ok(()),
            n => Err(unavailable(&format!(
                "{n} migration(s) pending: run `latch store migrate`"
            ))),
        }
    }
}

#[async_trait]
impl AuditStore for PgStore {
    async fn append_audit(&self, chain: &str, drafts: &[AuditDraft]) -> AuditResult<Vec<u64>> {
        let mut conn = self.inner.pool.get().await?;
        let tx = begin(&mut conn).await?;
        let (seqs, held) = audit_chains::append(&tx, &self.inner.audit, chain, drafts).await?;
        tx.commit().await.map_err(pg)?;
        self.committed(chain, held);
        Ok(seqs)
    }

    async fn record(&self, audit: &AuditDraft) -> AuditResult<u64> {
        let chain = self.inner.chain.clone();
        let seqs = self
            .append_audit(&chain, std::slice::from_ref(audit))
            .await?;
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
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.query(
            "SELECT chain, seq, body FROM audit_log WHERE chain = $1 AND seq > $2 ORDER BY seq LIMIT $3",
            &[&chain, &signed(after)?, &limit],
        )
        .await?
        .iter()
        .map(|r| Ok(record_row(r)?))
        .collect()
    }

    async fn audit_chains(&self) -> AuditResult<Vec<String>> {
        Ok(self
            // Every chain has a head row: no scan of the records.
            .query(
                "SELECT chain FROM audit_heads h WHERE EXISTS (SELECT 1 FROM audit_log a WHERE a.chain = h.chain) ORDER BY chain",
                &[],
            )
            .await?
            .iter()
            .map(|r| r.get(0))
            .collect())
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
        let (previous, through) = (signed(previous)?, signed(through)?);
        Ok(self.change(audit, move |tx| {
            Box::pin(async move {
                // Archivings of one chain take turns, without holding up its writer (which
                // locks the head row) while the old records are deleted.
                tx.execute(
                    "SELECT pg_advisory_xact_lock(hashtext('latch archive ' || $1))",
                    &[&chain],
                )
                .await
                .map_err(pg)?;
                let current: i64 = tx
                    .query_opt(
                        "SELECT through_seq FROM audit_archives WHERE chain = $1",
                        &[&chain],
                    )
                    .await
                    .map_err(pg)?
                    .map_or(0, |r| r.get(0));
                if current != previous {
                    return Err(unavailable(
                        "another archiving of this chain ran meanwhile; nothing was removed",
                    ));
                }
                for table in ["audit_log", "audit_index"] {
                    tx.execute(
                        &format!("DELETE FROM {table} WHERE chain = $1 AND seq <= $2"),
                        &[&chain, &through],
                    )
                    .await
                    .map_err(pg)?;
                }
                tx.execute(
                    "INSERT INTO audit_archives (chain, through_seq, frontier) VALUES ($1, $2, $3)
                     ON CONFLICT (chain) DO UPDATE SET through_seq = excluded.through_seq, frontier = excluded.frontier",
                    &[&chain, &through, &frontier],
                )
                .await
                .map_err(pg)?;
                Ok(())
            })
        })
        .await?)
    }

    async fn audit_archive(&self, chain: &str) -> AuditResult<Option<(u64, Vec<u8>)>> {
        self.query_opt(
            "SELECT through_seq, frontier FROM audit_archives WHERE chain = $1",
            &[&chain],
        )
        .await?
        .map(|r| Ok((unsigned(r.get(0))?, r.get(1))))
        .transpose()
    }

    async fn audit_head(&self, chain: &str) -> AuditResult<u64> {
        let row = self
            .query_opt("SELECT max(seq) FROM audit_log WHERE chain = $1", &[&chain])
            .await?;
        Ok(unsigned(
            row.and_then(|r| r.get::<_, Option<i64>>(0)).unwrap_or(0),
        )?)
    }

    async fn audit_leaves(&self, chain: &str) -> AuditResult<Vec<[u8; 32]>> {
        Ok(self
            .query(
                "SELECT body FROM audit_log WHERE chain = $1 ORDER BY seq",
                &[&chain],
            )
            .await?
            .iter()
            .map(|r| latch_core::merkle::leaf_hash(r.get::<_, &str>(0).as_bytes()))
            .collect())
    }

    async fn index_audit(&self) -> AuditResult<()> {
        let mut conn = self.inner.pool.get().await?;
        Ok(audit_chains::index(conn.client_mut()?).await.map(|_| ())?)
    }

    async fn audit_subtrees(
        &self,
        chain: &str,
        height: u32,
        from: u64,
        to: u64,
    ) -> AuditResult<Vec<(u64, [u8; 32])>> {
        let conn = self.inner.pool.get().await?;
        Ok(audit_chains::subtrees(conn.client()?, chain, height, from, to).await?)
    }

    async fn put_audit_subtrees(
        &self,
        chain: &str,
        height: u32,
        roots: &[(u64, [u8; 32])],
    ) -> AuditResult<()> {
        let conn = self.inner.pool.get().await?;
        Ok(audit_chains::put_subtrees(conn.client()?, chain, height, roots).await?)
    }

    async fn reindex_audit(&self) -> AuditResult<u64> {
        let mut conn = self.inner.pool.get().await?;
        Ok(audit_chains::reindex(conn.client_mut()?).await?)
    }

    async fn audit_frontier(
        &self,
        chain: &str,
    ) -> AuditResult<Option<latch_core::checkpoint::Frontier>> {
        let mut conn = self.inner.pool.get().await?;
        Ok(
            audit_chains::checked_frontier(conn.client_mut()?, &self.inner.audit, chain)
                .await
                .map(Some)?,
        )
    }

    async fn query_audit(
        &self,
        q: &AuditQuery,
    ) -> AuditResult<(Vec<StoredAuditRecord>, Option<i64>)> {
        let mut conn = self.inner.pool.get().await?;
        Ok(audit_chains::query(conn.client_mut()?, q).await?)
    }

    async fn issuer_of(&self, jti: &str) -> AuditResult<Option<String>> {
        let mut conn = self.inner.pool.get().await?;
        Ok(audit_chains::issuer_of(conn.client_mut()?, jti).await?)
    }

    async fn add_checkpoint(
        &self,
        checkpoint: &latch_core::checkpoint::Checkpoint,
    ) -> AuditResult<()> {
        let body = serde_json::to_string(checkpoint).map_err(|e| corrupt(&e.to_string()))?;
        let conn = self.inner.pool.get().await?;
        conn.client()?
            .execute(
                "INSERT INTO checkpoints (chain, size, body, time) VALUES ($1, $2, $3, $4)",
                &[
                    &checkpoint.chain,
                    &signed(checkpoint.size)?,
                    &body,
                    &checkpoint.time.0,
                ],
            )
            .await
            .map_err(pg)?;
        Ok(())
    }

    async fn checkpoints(
        &self,
        chain: &str,
    ) -> AuditResult<Vec<latch_core::checkpoint::Checkpoint>> {
        self.query(
            "SELECT body FROM checkpoints WHERE chain = $1 ORDER BY id",
            &[&chain],
        )
        .await?
        .iter()
        .map(|r| {
            serde_json::from_str(r.get(0))
                .map_err(|e| latch_audit::AuditError::Corrupt(e.to_string()))
        })
        .collect()
    }
}

const FACE_GROUP_COLUMNS: &str =
    "group_id, name, user_data, recognition_model, created_at, trained_at, trained_faces";

fn face_group_row(row: &Row) -> Result<FaceGroup> {
    let trained_at: Option<i64> = row.try_get(5).map_err(pg)?;
    let trained_faces: Option<i64> = row.try_get(6).map_err(pg)?;
    Ok(FaceGroup {
        group_id: row.try_get(0).map_err(pg)?,
        name: row.try_get(1).map_err(pg)?,
        user_data: row.try_get(2).map_err(pg)?,
        recognition_model: row.try_get(3).map_err(pg)?,
        created_at: UnixTime(row.try_get(4).map_err(pg)?),
        training: training(trained_at, trained_faces),
    })
}

fn training(trained_at: Option<i64>, trained_faces: Option<i64>) -> Option<Training> {
    trained_at.zip(trained_faces).map(|(at, n)| Training {
        trained_at: UnixTime(at),
        faces_added: n,
    })
}

/// Persons from rows of `(person_id, name, user_data, face_id)`, ordered by person and then
/// by face: one person per run of rows.
fn face_persons_from(rows: &[Row]) -> Result<Vec<FacePerson>> {
    let mut out: Vec<FacePerson> = Vec::new();
    for row in rows {
        let person_id: String = row.try_get(0).map_err(pg)?;
        if out.last().is_none_or(|last| last.person_id != person_id) {
            out.push(FacePerson {
                person_id,
                name: row.try_get(1).map_err(pg)?,
                user_data: row.try_get(2).map_err(pg)?,
                persisted_face_ids: Vec::new(),
            });
        }
        let face_id: Option<String> = row.try_get(3).map_err(pg)?;
        if let (Some(face_id), Some(last)) = (face_id, out.last_mut()) {
            last.persisted_face_ids.push(face_id);
        }
    }
    Ok(out)
}

fn detected_face_row(row: &Row) -> Result<DetectedFace> {
    Ok(DetectedFace {
        face_id: row.try_get(0).map_err(pg)?,
        recognition_model: row.try_get(1).map_err(pg)?,
        embedding: row.try_get(2).map_err(pg)?,
        expires_at: UnixTime(row.try_get(3).map_err(pg)?),
    })
}

async fn face_group_exists(tx: &Transaction<'_>, resource: &str, group_id: &str) -> Result<bool> {
    Ok(tx
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM face_groups WHERE resource = $1 AND group_id = $2)",
            &[&resource, &group_id],
        )
        .await
        .map_err(pg)?
        .get(0))
}

async fn face_person_exists(
    tx: &Transaction<'_>,
    resource: &str,
    group_id: &str,
    person_id: &str,
) -> Result<bool> {
    Ok(tx
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM face_persons WHERE resource = $1 AND group_id = $2 AND person_id = $3)",
            &[&resource, &group_id, &person_id],
        )
        .await
        .map_err(pg)?
        .get(0))
}

fn limit(top: usize) -> i64 {
    i64::try_from(top).unwrap_or(i64::MAX)
}

// Face data is the client's, not security state: its writes have no audit record and do not
// count as changes (`changes_here`), and its tables move no state version.
#[async_trait]
impl FaceData for PgStore {
    async fn create_face_group(&self, resource: &ResourceId, group: &FaceGroup) -> Result<()> {
        let (resource, g) = (resource.canonical().to_owned(), group.clone());
        self.write(move |tx| {
            Box::pin(async move {
                let inserted = tx
                    .execute(
                        "INSERT INTO face_groups (resource, group_id, name, user_data, recognition_model, created_at)
                         VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (resource, group_id) DO NOTHING",
                        &[&resource, &g.group_id, &g.name, &g.user_data, &g.recognition_model, &g.created_at.0],
                    )
                    .await
                    .map_err(pg)?;
                if inserted == 0 {
                    return Err(StoreError::FaceExists(face::FaceItem::Group));
                }
                Ok(())
            })
        })
        .await
    }

    async fn face_group(&self, resource: &ResourceId, group_id: &str) -> Result<Option<FaceGroup>> {
        self.query_opt(
            &format!(
                "SELECT {FACE_GROUP_COLUMNS} FROM face_groups WHERE resource = $1 AND group_id = $2"
            ),
            &[&resource.canonical(), &group_id],
        )
        .await?
        .as_ref()
        .map(face_group_row)
        .transpose()
    }

    async fn face_groups(
        &self,
        resource: &ResourceId,
        after: Option<&str>,
        top: usize,
    ) -> Result<Vec<FaceGroup>> {
        self.query(
            &format!(
                "SELECT {FACE_GROUP_COLUMNS} FROM face_groups
                 WHERE resource = $1 AND ($2::TEXT IS NULL OR group_id > $2::TEXT)
                 ORDER BY group_id LIMIT $3"
            ),
            &[&resource.canonical(), &after, &limit(top)],
        )
        .await?
        .iter()
        .map(face_group_row)
        .collect()
    }

    async fn delete_face_group(&self, resource: &ResourceId, group_id: &str) -> Result<()> {
        let (resource, group_id) = (resource.canonical().to_owned(), group_id.to_owned());
        self.write(move |tx| {
            Box::pin(async move {
                for table in ["face_faces", "face_persons"] {
                    tx.execute(
                        &format!("DELETE FROM {table} WHERE resource = $1 AND group_id = $2"),
                        &[&resource, &group_id],
                    )
                    .await
                    .map_err(pg)?;
                }
                let deleted = tx
                    .execute(
                        "DELETE FROM face_groups WHERE resource = $1 AND group_id = $2",
                        &[&resource, &group_id],
                    )
                    .await
                    .map_err(pg)?;
                if deleted == 0 {
                    return Err(StoreError::FaceNotFound(face::FaceItem::Group));
                }
                Ok(())
            })
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
            Box::pin(async move {
                // Holds the group until the commit: a deletion of it waits, or went first.
                let group = tx
                    .query_opt(
                        "SELECT 1 FROM face_groups WHERE resource = $1 AND group_id = $2 FOR KEY SHARE",
                        &[&resource, &group_id],
                    )
                    .await
                    .map_err(pg)?;
                if group.is_none() {
                    return Err(StoreError::FaceNotFound(face::FaceItem::Group));
                }
                let inserted = tx
                    .execute(
                        "INSERT INTO face_persons (resource, group_id, person_id, name, user_data)
                         VALUES ($1, $2, $3, $4, $5) ON CONFLICT (resource, group_id, person_id) DO NOTHING",
                        &[&resource, &group_id, &p.person_id, &p.name, &p.user_data],
                    )
                    .await
                    .map_err(pg)?;
                if inserted == 0 {
                    return Err(StoreError::FaceExists(face::FaceItem::Person));
                }
                Ok(())
            })
        })
        .await
    }

    async fn face_person(
        &self,
        resource: &ResourceId,
        group_id: &str,
        person_id: &str,
    ) -> Result<Option<FacePerson>> {
        // One statement: the person and its faces as of one moment.
        let rows = self
            .query(
                "SELECT p.person_id, p.name, p.user_data, f.face_id FROM face_persons p
                 LEFT JOIN face_faces f
                   ON f.resource = p.resource AND f.group_id = p.group_id AND f.person_id = p.person_id
                 WHERE p.resource = $1 AND p.group_id = $2 AND p.person_id = $3
                 ORDER BY f.seq",
                &[&resource.canonical(), &group_id, &person_id],
            )
            .await?;
        Ok(face_persons_from(&rows)?.into_iter().next())
    }

    async fn face_persons(
        &self,
        resource: &ResourceId,
        group_id: &str,
        after: Option<&str>,
        top: usize,
    ) -> Result<Vec<FacePerson>> {
        // One statement: the group's existence (`g`), and its persons with their faces, as of
        // one moment. A group without persons gives one row of NULLs.
        let rows = self
            .query(
                "SELECT p.person_id, p.name, p.user_data, f.face_id FROM face_groups g
                 LEFT JOIN LATERAL
                   (SELECT person_id, name, user_data FROM face_persons
                    WHERE resource = g.resource AND group_id = g.group_id
                      AND ($3::TEXT IS NULL OR person_id > $3::TEXT)
                    ORDER BY person_id LIMIT $4) p ON TRUE
                 LEFT JOIN face_faces f
                   ON f.resource = g.resource AND f.group_id = g.group_id AND f.person_id = p.person_id
                 WHERE g.resource = $1 AND g.group_id = $2
                 ORDER BY p.person_id, f.seq",
                &[&resource.canonical(), &group_id, &after, &limit(top)],
            )
            .await?;
        let Some(first) = rows.first() else {
            return Err(StoreError::FaceNotFound(face::FaceItem::Group));
        };
        if first.try_get::<_, Option<String>>(0).map_err(pg)?.is_none() {
            return Ok(Vec::new());
        }
        face_persons_from(&rows)
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
            Box::pin(async move {
                if !face_group_exists(tx, &resource, &group_id).await? {
                    return Err(StoreError::FaceNotFound(face::FaceItem::Group));
                }
                tx.execute(
                    "DELETE FROM face_faces WHERE resource = $1 AND group_id = $2 AND person_id = $3",
                    &[&resource, &group_id, &person_id],
                )
                .await
                .map_err(pg)?;
                let deleted = tx
                    .execute(
                        "DELETE FROM face_persons WHERE resource = $1 AND group_id = $2 AND person_id = $3",
                        &[&resource, &group_id, &person_id],
                    )
                    .await
                    .map_err(pg)?;
                if deleted == 0 {
                    return Err(StoreError::FaceNotFound(face::FaceItem::Person));
                }
                Ok(())
            })
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
            Box::pin(async move {
                // Counting locks the group's row until the commit: adds to one group take
                // turns, so the count of the person's faces below cannot go stale.
                let Some(counted) = tx
                    .query_opt(
                        "UPDATE face_groups SET faces_added = faces_added + 1
                         WHERE resource = $1 AND group_id = $2 RETURNING faces_added",
                        &[&resource, &group_id],
                    )
                    .await
                    .map_err(pg)?
                else {
                    return Err(StoreError::FaceNotFound(face::FaceItem::Group));
                };
                let seq: i64 = counted.try_get(0).map_err(pg)?;
                if !face_person_exists(tx, &resource, &group_id, &person_id).await? {
                    return Err(StoreError::FaceNotFound(face::FaceItem::Person));
                }
                let counts = tx
                    .query_one(
                        "SELECT count(*), count(*) FILTER (WHERE person_id = $3) FROM face_faces
                         WHERE resource = $1 AND group_id = $2",
                        &[&resource, &group_id, &person_id],
                    )
                    .await
                    .map_err(pg)?;
                limits.allow_another(counts.get(0), counts.get(1))?;
                let inserted = tx
                    .execute(
                        "INSERT INTO face_faces (resource, group_id, person_id, face_id, user_data, embedding, seq)
                         VALUES ($1, $2, $3, $4, $5, $6, $7)
                         ON CONFLICT (resource, group_id, person_id, face_id) DO NOTHING",
                        &[&resource, &group_id, &person_id, &face.face_id, &face.user_data, &face.embedding, &seq],
                    )
                    .await
                    .map_err(pg)?;
                if inserted == 0 {
                    return Err(StoreError::FaceExists(face::FaceItem::PersistedFace));
                }
                Ok(())
            })
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
        self.query_opt(
            "SELECT face_id, user_data, embedding FROM face_faces
             WHERE resource = $1 AND group_id = $2 AND person_id = $3 AND face_id = $4",
            &[&resource.canonical(), &group_id, &person_id, &face_id],
        )
        .await?
        .map(|r| {
            Ok(PersistedFace {
                face_id: r.try_get(0).map_err(pg)?,
                user_data: r.try_get(1).map_err(pg)?,
                embedding: r.try_get(2).map_err(pg)?,
            })
        })
        .transpose()
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
            Box::pin(async move {
                let deleted = tx
                    .execute(
                        "DELETE FROM face_faces WHERE resource = $1 AND group_id = $2 AND person_id = $3 AND face_id = $4",
                        &[&resource, &group_id, &person_id, &face_id],
                    )
                    .await
                    .map_err(pg)?;
                if deleted > 0 {
                    return Ok(());
                }
                Err(if !face_group_exists(tx, &resource, &group_id).await? {
                    StoreError::FaceNotFound(face::FaceItem::Group)
                } else if !face_person_exists(tx, &resource, &group_id, &person_id).await? {
                    StoreError::FaceNotFound(face::FaceItem::Person)
                } else {
                    StoreError::FaceNotFound(face::FaceItem::PersistedFace)
                })
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
        let conn = self.inner.pool.get().await?;
        let row = conn
            .client()?
            .query_opt(
                "UPDATE face_groups SET trained_at = $3, trained_faces = faces_added
                 WHERE resource = $1 AND group_id = $2 RETURNING trained_faces",
                &[&resource.canonical(), &group_id, &at.0],
            )
            .await
            .map_err(pg)?
            .ok_or(StoreError::FaceNotFound(face::FaceItem::Group))?;
        Ok(Training {
            trained_at: at,
            faces_added: row.try_get(0).map_err(pg)?,
        })
    }

    async fn trained_faces(
        &self,
        resource: &ResourceId,
        group_id: &str,
    ) -> Result<Option<(Option<Training>, Vec<GroupFace>)>> {
        // One statement: the training and its faces as of one moment. An untrained group's
        // `trained_faces` is NULL, which no `seq` is at most.
        let rows = self
            .query(
                "SELECT g.trained_at, g.trained_faces, f.person_id, f.embedding FROM face_groups g
                 LEFT JOIN face_faces f
                   ON f.resource = g.resource AND f.group_id = g.group_id AND f.seq <= g.trained_faces
                 WHERE g.resource = $1 AND g.group_id = $2
                 ORDER BY f.seq",
                &[&resource.canonical(), &group_id],
            )
            .await?;
        let Some(first) = rows.first() else {
            return Ok(None);
        };
        let trained = training(first.try_get(0).map_err(pg)?, first.try_get(1).map_err(pg)?);
        let mut faces = Vec::with_capacity(rows.len());
        for row in &rows {
            let person_id: Option<String> = row.try_get(2).map_err(pg)?;
            let embedding: Option<Vec<u8>> = row.try_get(3).map_err(pg)?;
            if let (Some(person_id), Some(embedding)) = (person_id, embedding) {
                faces.push(GroupFace {
                    person_id,
                    embedding,
                });
            }
        }
        Ok(Some((trained, faces)))
    }

    async fn save_detected_faces(
        &self,
        resource: &ResourceId,
        faces: &[DetectedFace],
        now: UnixTime,
        max_live: usize,
    ) -> Result<()> {
        if faces.is_empty() {
            return Ok(());
        }
        let (resource, faces) = (resource.canonical().to_owned(), faces.to_vec());
        let bound = i64::try_from(max_live).unwrap_or(i64::MAX);
        self.write(move |tx| {
            Box::pin(async move {
                // Counted up to the bound only: the count costs at most `max_live` index entries.
                let live: i64 = tx
                    .query_one(
                        "SELECT count(*) FROM (SELECT 1 FROM face_detected
                         WHERE resource = $1 AND expires_at > $2 LIMIT $3) AS live",
                        &[&resource, &now.0, &bound],
                    )
                    .await
                    .map_err(pg)?
                    .get(0);
                crate::sqlite::within_live_face_ids(live, faces.len(), max_live)?;
                let insert = tx
                    .prepare(
                        "INSERT INTO face_detected (face_id, resource, recognition_model, embedding, expires_at)
                         VALUES ($1, $2, $3, $4, $5) ON CONFLICT (face_id) DO NOTHING",
                    )
                    .await
                    .map_err(pg)?;
                for f in &faces {
                    let inserted = tx
                        .execute(
                            &insert,
                            &[&f.face_id, &resource, &f.recognition_model, &f.embedding, &f.expires_at.0],
                        )
                        .await
                        .map_err(pg)?;
                    if inserted == 0 {
                        return Err(StoreError::AlreadyExists(format!("face {}", f.face_id)));
                    }
                }
                Ok(())
            })
        })
        .await
    }

    async fn detected_faces(
        &self,
        resource: &ResourceId,
        face_ids: &[String],
        now: UnixTime,
    ) -> Result<Vec<DetectedFace>> {
        if face_ids.is_empty() {
            return Ok(Vec::new());
        }
        self.query(
            "SELECT face_id, recognition_model, embedding, expires_at FROM face_detected
             WHERE face_id = ANY($2) AND resource = $1 AND expires_at > $3
             ORDER BY face_id",
            &[&resource.canonical(), &face_ids, &now.0],
        )
        .await?
        .iter()
        .map(detected_face_row)
        .collect()
    }

    async fn prune_detected_faces(&self, now: UnixTime) -> Result<u64> {
        let conn = self.inner.pool.get().await?;
        conn.client()?
            .execute(
                "DELETE FROM face_detected WHERE expires_at <= $1",
                &[&now.0],
            )
            .await
            .map_err(pg)
    }

    async fn record_face_operation(
        &self,
        resource: &ResourceId,
        operation_id: &str,
        at: UnixTime,
        forget_before: UnixTime,
    ) -> Result<()> {
        let conn = self.inner.pool.get().await?;
        let client = conn.client()?;
        client
            .execute(
                "DELETE FROM face_operations WHERE resource = $1 AND created_at < $2",
                &[&resource.canonical(), &forget_before.0],
            )
            .await
            .map_err(pg)?;
        let inserted = client
            .execute(
                "INSERT INTO face_operations (operation_id, resource, created_at) VALUES ($1, $2, $3)
                 ON CONFLICT (operation_id) DO NOTHING",
                &[&operation_id, &resource.canonical(), &at.0],
            )
            .await
            .map_err(pg)?;
        if inserted == 0 {
            return Err(StoreError::AlreadyExists(format!(
                "operation {operation_id}"
            )));
        }
        Ok(())
    }

    async fn face_operation(
        &self,
        resource: &ResourceId,
        operation_id: &str,
    ) -> Result<Option<UnixTime>> {
        let conn = self.inner.pool.get().await?;
        Ok(conn
            .client()?
            .query_opt(
                "SELECT created_at FROM face_operations WHERE operation_id = $1 AND resource = $2",
                &[&operation_id, &resource.canonical()],
            )
            .await
            .map_err(pg)?
            .map(|row| UnixTime(row.get(0))))
    }
}

fn record_row(row: &Row) -> Result<StoredAuditRecord> {
    let body: String = row.try_get(2).map_err(pg)?;
    Ok(StoredAuditRecord {
        chain: row.try_get(0).map_err(pg)?,
        seq: unsigned(row.try_get(1).map_err(pg)?)?,
        hash: audit::record_hash(&body),
        body,
    })
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
