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
//!
//! This file holds the store, its opening and the [`Store`] trait's wiring; each domain is a module
//! of its own, named alike in both backends: `resources` (resources, their keys and the key
//! pepper), `grants` (ISV issuance and grants, direct approvals), `blocks` (client blocks),
//! `revocations`, `credentials` (the admin credentials), `signing_keys`, `face_data`, and the audit
//! log's records in `audit_store` over `audit_chains`; `schema` migrates the database and
//! `connection` keeps the pool of connections to it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use latch_audit::AuditStore;
use latch_core::audit::{AuditDraft, KeySlot};
use latch_core::secret::KeyDigest;
use latch_core::{FeatureSet, ResourceId, UnixTime};
use ring::rand::SecureRandom;
use tokio_postgres::types::ToSql;
use tokio_postgres::{Row, Transaction};

mod audit_chains;
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
mod tls;

use crate::{
    AdminRole, AuthMode, KeyInfo, Resource, Result, Revocation, RevocationEntry, Store, StoreError,
    StoredSigningKey,
};
use connection::{begin, Pool};

/// Connections per process.
pub const POOL_SIZE: usize = 8;
/// How long opening a connection may take before the call fails.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

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
