//! Serving the Face front's checks through a database outage, within a bound.
//!
//! [`StaleIfError`] wraps a store. Every read goes to the store; while the store answers, the
//! wrapper only remembers the answers to the three reads the Face front's checks make (a key's
//! resource, a resource, whether a token is revoked). When the store fails, such a read is
//! answered from memory if the remembered answer is at most `bound` old, and fails otherwise.
//! A remembered answer is never preferred to the store's while the store answers.
//!
//! The Face front reads through a [`crate::check_cache::CheckCache`] above this wrapper, which
//! reads it again at least every half `bound` (so an answer in use is never more than half the
//! bound old when an outage starts), never keeps an answer this wrapper gave from memory
//! ([`Store::stale_answers`]), and asks it each token's revocation rather than holding the
//! revocation table, since this wrapper can answer only what it was asked.
//!
//! The price, which an operator chooses by enabling it (`face.store_outage = "cached"`): for
//! up to `bound` into an outage, a key regenerated or a token revoked just before it may still
//! be accepted. Writes are never cached: they fail.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::sync::Mutex;

use async_trait::async_trait;
use latch_audit::{AuditQuery, AuditStore, Result as AuditResult, StoredAuditRecord};
use latch_core::audit::{AuditDraft, KeySlot};
use latch_core::secret::KeyDigest;
use latch_core::{Clock, FeatureSet, ResourceId, UnixTime};

use crate::face::{
    DetectedFace, FaceData, FaceGroup, FaceLimits, FacePerson, GroupFace, PersistedFace, Training,
};
use crate::{
    AdminRole, AuthMode, KeyInfo, Resource, Result, Revocation, Store, StoreError, StoredSigningKey,
};

/// Remembered answers per kind: beyond this many, the oldest half is forgotten.
pub const MAX_ENTRIES: usize = 100_000;

/// Counts of how reads were answered.
#[derive(Debug, Default)]
pub struct CacheStats {
    /// Answered by the store.
    pub fresh: AtomicU64,
    /// Answered from memory during an outage.
    pub stale: AtomicU64,
    /// Failed: the store failed and nothing recent enough was remembered.
    pub missed: AtomicU64,
}

struct Remembered<K, V> {
    entries: Mutex<HashMap<K, (V, UnixTime)>>,
}

impl<K: std::hash::Hash + Eq, V: Clone> Remembered<K, V> {
    fn new() -> Self {
        Remembered {
            entries: Mutex::new(HashMap::new()),
        }
    }

    fn put(&self, key: K, value: V, now: UnixTime) {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if entries.len() >= MAX_ENTRIES {
            let mut times: Vec<i64> = entries.values().map(|(_, t)| t.0).collect();
            let (_, median, _) = times.select_nth_unstable(MAX_ENTRIES / 2);
            let median = *median;
            entries.retain(|_, (_, t)| t.0 > median);
        }
        entries.insert(key, (value, now));
    }

    fn get(&self, key: &K, not_before: UnixTime) -> Option<V> {
        let entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        entries
            .get(key)
            .filter(|(_, at)| at.0 >= not_before.0)
            .map(|(v, _)| v.clone())
    }
}

type ByKey = Option<(Resource, KeySlot, KeyDigest)>;

/// A store whose Face-check reads survive an outage of up to `bound` seconds.
pub struct StaleIfError {
    inner: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    bound: i64,
    by_key: Remembered<[u8; 32], ByKey>,
    resources: Remembered<String, Option<Resource>>,
    revoked: Remembered<(String, String, String, i64), bool>,
    stats: Arc<CacheStats>,
}

impl StaleIfError {
    /// Wraps `inner`; remembered answers serve for at most `bound_secs` after they were read.
    pub fn new(inner: Arc<dyn Store>, clock: Arc<dyn Clock>, bound_secs: i64) -> StaleIfError {
        StaleIfError {
            inner,
            clock,
            bound: bound_secs.max(0),
            by_key: Remembered::new(),
            resources: Remembered::new(),
            revoked: Remembered::new(),
            stats: Arc::new(CacheStats::default()),
        }
    }

    /// How reads were answered, for metrics.
    pub fn stats(&self) -> Arc<CacheStats> {
        self.stats.clone()
    }

    /// The store's answer (remembered), or during an outage a recent remembered one.
    fn settle<K, V: Clone>(&self, memory: &Remembered<K, V>, key: K, answer: Result<V>) -> Result<V>
    where
        K: std::hash::Hash + Eq,
    {
        let now = self.clock.now();
        match answer {
            Ok(value) => {
                self.stats.fresh.fetch_add(1, Ordering::Relaxed);
                memory.put(key, value.clone(), now);
                Ok(value)
            }
            Err(StoreError::Unavailable(reason)) => {
                match memory.get(&key, UnixTime(now.0 - self.bound)) {
                    Some(value) => {
                        self.stats.stale.fetch_add(1, Ordering::Relaxed);
                        Ok(value)
                    }
                    None => {
                        self.stats.missed.fetch_add(1, Ordering::Relaxed);
                        Err(StoreError::Unavailable(reason))
                    }
                }
            }
            Err(other) => Err(other),
        }
    }
}

#[async_trait]
impl Store for StaleIfError {
    async fn resource_by_key(&self, digest: &KeyDigest) -> Result<ByKey> {
        let answer = self.inner.resource_by_key(digest).await;
        self.settle(&self.by_key, digest.0, answer)
    }

    async fn resource(&self, id: &ResourceId) -> Result<Option<Resource>> {
        let answer = self.inner.resource(id).await;
        self.settle(&self.resources, id.canonical().to_owned(), answer)
    }

    async fn is_revoked(
        &self,
        jti: &str,
        isv: &ResourceId,
        target: &ResourceId,
        iat: UnixTime,
    ) -> Result<bool> {
        let answer = self.inner.is_revoked(jti, isv, target, iat).await;
        let key = (
            jti.to_owned(),
            isv.canonical().to_owned(),
            target.canonical().to_owned(),
            iat.0,
        );
        self.settle(&self.revoked, key, answer)
    }

    // Everything else goes to the store, as it is.

    async fn key_pepper(&self) -> Result<Vec<u8>> {
        self.inner.key_pepper().await
    }
    async fn create_resource(
        &self,
        resource: &Resource,
        key1: &KeyDigest,
        key2: &KeyDigest,
        audit: &AuditDraft,
    ) -> Result<()> {
        self.inner
            .create_resource(resource, key1, key2, audit)
            .await
    }
    async fn resources(&self) -> Result<Vec<Resource>> {
        self.inner.resources().await
    }
    async fn set_isv(
        &self,
        id: &ResourceId,
        enabled: bool,
        grants: &FeatureSet,
        audit: &AuditDraft,
    ) -> Result<Resource> {
        self.inner.set_isv(id, enabled, grants, audit).await
    }
    async fn set_approvals(
        &self,
        id: &ResourceId,
        features: &FeatureSet,
        audit: &AuditDraft,
    ) -> Result<Resource> {
        self.inner.set_approvals(id, features, audit).await
    }
    async fn set_auth_mode(
        &self,
        id: &ResourceId,
        mode: AuthMode,
        audit: &AuditDraft,
    ) -> Result<Resource> {
        self.inner.set_auth_mode(id, mode, audit).await
    }
    async fn replace_key(
        &self,
        id: &ResourceId,
        slot: KeySlot,
        digest: &KeyDigest,
        now: UnixTime,
        audit: &AuditDraft,
    ) -> Result<()> {
        self.inner.replace_key(id, slot, digest, now, audit).await
    }
    async fn keys(&self, id: &ResourceId) -> Result<Vec<KeyInfo>> {
        self.inner.keys(id).await
    }
    async fn set_client_blocked(
        &self,
        isv: &ResourceId,
        client: &ResourceId,
        blocked: bool,
        now: UnixTime,
        audit: &AuditDraft,
    ) -> Result<()> {
        self.inner
            .set_client_blocked(isv, client, blocked, now, audit)
            .await
    }
    async fn is_client_blocked(&self, isv: &ResourceId, client: &ResourceId) -> Result<bool> {
        self.inner.is_client_blocked(isv, client).await
    }
    async fn state_version(&self) -> Result<u64> {
        self.inner.state_version().await
    }
    fn changes_here(&self) -> u64 {
        self.inner.changes_here()
    }
    fn stale_answers(&self) -> u64 {
        self.stats.stale.load(Ordering::Relaxed)
    }
    async fn add_revocation(&self, revocation: &Revocation, audit: &AuditDraft) -> Result<()> {
        self.inner.add_revocation(revocation, audit).await
    }
    async fn revocations(&self, limit: usize) -> Result<Option<Vec<crate::RevocationEntry>>> {
        self.inner.revocations(limit).await
    }
    async fn prune_revocations(&self, now: UnixTime) -> Result<u64> {
        self.inner.prune_revocations(now).await
    }
    async fn admin_credential(&self, role: AdminRole) -> Result<Option<KeyDigest>> {
        self.inner.admin_credential(role).await
    }
    async fn set_admin_credential(
        &self,
        role: AdminRole,
        digest: &KeyDigest,
        audit: &AuditDraft,
    ) -> Result<()> {
        self.inner.set_admin_credential(role, digest, audit).await
    }
    async fn rotate_signing_key(
        &self,
        key: &StoredSigningKey,
        now: UnixTime,
        audit: &AuditDraft,
    ) -> Result<()> {
        self.inner.rotate_signing_key(key, now, audit).await
    }
    async fn signing_keys(&self) -> Result<Vec<StoredSigningKey>> {
        self.inner.signing_keys().await
    }
    async fn add_signing_key(&self, key: &StoredSigningKey, audit: &AuditDraft) -> Result<()> {
        self.inner.add_signing_key(key, audit).await
    }
    async fn ready(&self) -> Result<()> {
        self.inner.ready().await
    }
}

#[async_trait]
impl AuditStore for StaleIfError {
    async fn append_audit(&self, chain: &str, drafts: &[AuditDraft]) -> AuditResult<Vec<u64>> {
        self.inner.append_audit(chain, drafts).await
    }

    async fn record(&self, audit: &AuditDraft) -> AuditResult<u64> {
        self.inner.record(audit).await
    }

    async fn audit_records(
        &self,
        chain: &str,
        after: u64,
        limit: usize,
    ) -> AuditResult<Vec<StoredAuditRecord>> {
        self.inner.audit_records(chain, after, limit).await
    }

    async fn audit_chains(&self) -> AuditResult<Vec<String>> {
        self.inner.audit_chains().await
    }

    async fn archive_audit(
        &self,
        chain: &str,
        previous: u64,
        through: u64,
        frontier: &[u8],
        audit: &AuditDraft,
    ) -> AuditResult<()> {
        self.inner
            .archive_audit(chain, previous, through, frontier, audit)
            .await
    }

    async fn audit_archive(&self, chain: &str) -> AuditResult<Option<(u64, Vec<u8>)>> {
        self.inner.audit_archive(chain).await
    }

    async fn audit_head(&self, chain: &str) -> AuditResult<u64> {
        self.inner.audit_head(chain).await
    }

    async fn audit_leaves(&self, chain: &str) -> AuditResult<Vec<[u8; 32]>> {
        self.inner.audit_leaves(chain).await
    }

    async fn index_audit(&self) -> AuditResult<()> {
        self.inner.index_audit().await
    }

    async fn audit_subtrees(
        &self,
        chain: &str,
        height: u32,
        from: u64,
        to: u64,
    ) -> AuditResult<Vec<(u64, [u8; 32])>> {
        self.inner.audit_subtrees(chain, height, from, to).await
    }

    async fn put_audit_subtrees(
        &self,
        chain: &str,
        height: u32,
        roots: &[(u64, [u8; 32])],
    ) -> AuditResult<()> {
        self.inner.put_audit_subtrees(chain, height, roots).await
    }

    async fn reindex_audit(&self) -> AuditResult<u64> {
        self.inner.reindex_audit().await
    }

    async fn audit_frontier(
        &self,
        chain: &str,
    ) -> AuditResult<Option<latch_core::checkpoint::Frontier>> {
        self.inner.audit_frontier(chain).await
    }

    async fn query_audit(
        &self,
        query: &AuditQuery,
    ) -> AuditResult<(Vec<StoredAuditRecord>, Option<i64>)> {
        self.inner.query_audit(query).await
    }

    async fn issuer_of(&self, jti: &str) -> AuditResult<Option<String>> {
        self.inner.issuer_of(jti).await
    }

    async fn add_checkpoint(
        &self,
        checkpoint: &latch_core::checkpoint::Checkpoint,
    ) -> AuditResult<()> {
        self.inner.add_checkpoint(checkpoint).await
    }

    async fn checkpoints(
        &self,
        chain: &str,
    ) -> AuditResult<Vec<latch_core::checkpoint::Checkpoint>> {
        self.inner.checkpoints(chain).await
    }
}

/// Face data is never remembered: every call goes to the store, and fails with it.
#[async_trait]
impl FaceData for StaleIfError {
    async fn create_face_group(&self, resource: &ResourceId, group: &FaceGroup) -> Result<()> {
        self.inner.create_face_group(resource, group).await
    }
    async fn face_group(&self, resource: &ResourceId, group_id: &str) -> Result<Option<FaceGroup>> {
        self.inner.face_group(resource, group_id).await
    }
    async fn face_groups(
        &self,
        resource: &ResourceId,
        after: Option<&str>,
        top: usize,
    ) -> Result<Vec<FaceGroup>> {
        self.inner.face_groups(resource, after, top).await
    }
    async fn delete_face_group(&self, resource: &ResourceId, group_id: &str) -> Result<()> {
        self.inner.delete_face_group(resource, group_id).await
    }
    async fn create_face_person(
        &self,
        resource: &ResourceId,
        group_id: &str,
        person: &FacePerson,
    ) -> Result<()> {
        self.inner
            .create_face_person(resource, group_id, person)
            .await
    }
    async fn face_person(
        &self,
        resource: &ResourceId,
        group_id: &str,
        person_id: &str,
    ) -> Result<Option<FacePerson>> {
        self.inner.face_person(resource, group_id, person_id).await
    }
    async fn face_persons(
        &self,
        resource: &ResourceId,
        group_id: &str,
        after: Option<&str>,
        top: usize,
    ) -> Result<Vec<FacePerson>> {
        self.inner
            .face_persons(resource, group_id, after, top)
            .await
    }
    async fn delete_face_person(
        &self,
        resource: &ResourceId,
        group_id: &str,
        person_id: &str,
    ) -> Result<()> {
        self.inner
            .delete_face_person(resource, group_id, person_id)
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
        self.inner
            .add_persisted_face(resource, group_id, person_id, face, limits)
            .await
    }
    async fn persisted_face(
        &self,
        resource: &ResourceId,
        group_id: &str,
        person_id: &str,
        face_id: &str,
    ) -> Result<Option<PersistedFace>> {
        self.inner
            .persisted_face(resource, group_id, person_id, face_id)
            .await
    }
    async fn delete_persisted_face(
        &self,
        resource: &ResourceId,
        group_id: &str,
        person_id: &str,
        face_id: &str,
    ) -> Result<()> {
        self.inner
            .delete_persisted_face(resource, group_id, person_id, face_id)
            .await
    }
    async fn train_face_group(
        &self,
        resource: &ResourceId,
        group_id: &str,
        at: UnixTime,
    ) -> Result<Training> {
        self.inner.train_face_group(resource, group_id, at).await
    }
    async fn trained_faces(
        &self,
        resource: &ResourceId,
        group_id: &str,
    ) -> Result<Option<(Option<Training>, Vec<GroupFace>)>> {
        self.inner.trained_faces(resource, group_id).await
    }

    async fn save_detected_faces(
        &self,
        resource: &ResourceId,
        faces: &[DetectedFace],
        now: UnixTime,
        max_live: usize,
    ) -> Result<()> {
        self.inner
            .save_detected_faces(resource, faces, now, max_live)
            .await
    }

    async fn detected_faces(
        &self,
        resource: &ResourceId,
        face_ids: &[String],
        now: UnixTime,
    ) -> Result<Vec<DetectedFace>> {
        self.inner.detected_faces(resource, face_ids, now).await
    }
    async fn prune_detected_faces(&self, now: UnixTime) -> Result<u64> {
        self.inner.prune_detected_faces(now).await
    }

    async fn record_face_operation(
        &self,
        resource: &ResourceId,
        operation_id: &str,
        at: UnixTime,
        forget_before: UnixTime,
    ) -> Result<()> {
        self.inner
            .record_face_operation(resource, operation_id, at, forget_before)
            .await
    }

    async fn face_operation(
        &self,
        resource: &ResourceId,
        operation_id: &str,
    ) -> Result<Option<UnixTime>> {
        self.inner.face_operation(resource, operation_id).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use latch_core::audit::{Actor, AuditEvent};
    use latch_core::secret::Pepper;
    use latch_core::FixedClock;
    use ring::rand::SystemRandom;

    const ISV: &str = "/subscriptions/11111111-1111-4111-8111-111111111111/resourceGroups/isv/providers/Microsoft.CognitiveServices/accounts/isv-face";

    /// Drops the store's tables behind its back: a real failure of the database.
    fn break_database(dir: &std::path::Path) {
        rusqlite::Connection::open(dir.join(crate::sqlite::FILE_NAME))
            .unwrap()
            .execute_batch("DROP TABLE keys; DROP TABLE resources; DROP TABLE revocations;")
            .unwrap();
    }

    #[tokio::test]
    async fn remembered_answers_serve_an_outage_within_the_bound_only() {
        let dir = tempfile::tempdir().unwrap();
        let rng = SystemRandom::new();
        let sqlite: Arc<dyn Store> =
            Arc::new(crate::sqlite::SqliteStore::open(dir.path(), "main", &rng).unwrap());
        let pepper = Pepper::from_bytes(&sqlite.key_pepper().await.unwrap());
        let id = ResourceId::parse(ISV).unwrap();
        let resource = Resource {
            id: id.clone(),
            created_at: UnixTime(1_000),
            isv_enabled: false,
            isv_grants: FeatureSet::new(),
            approvals: FeatureSet::new(),
            auth_mode: AuthMode::Key,
        };
        let draft = AuditDraft {
            time: UnixTime(1_000),
            request_id: None,
            actor: Actor::LocalOperator,
            event: AuditEvent::ResourceCreated {
                resource: id.clone(),
            },
        };
        sqlite
            .create_resource(
                &resource,
                &pepper.digest(b"k1"),
                &pepper.digest(b"k2"),
                &draft,
            )
            .await
            .unwrap();

        let clock = Arc::new(FixedClock::at(UnixTime(10_000)));
        let store = StaleIfError::new(sqlite.clone(), clock.clone(), 30);
        let read = || async {
            (
                store.resource_by_key(&pepper.digest(b"k1")).await,
                store.resource(&id).await,
                store.is_revoked("j", &id, &id, UnixTime(9_000)).await,
            )
        };
        let (by_key, by_id, revoked) = read().await;
        assert!(by_key.unwrap().is_some() && by_id.unwrap().is_some());
        assert!(!revoked.unwrap());

        break_database(dir.path());
        // 30 s later, the remembered answers still serve...
        clock.set(UnixTime(10_030));
        let (by_key, by_id, revoked) = read().await;
        assert_eq!(by_key.unwrap().unwrap().0.id, id);
        assert!(by_id.unwrap().is_some());
        assert!(!revoked.unwrap());
        // ...a second past the bound they do not, and an unknown key never did.
        clock.set(UnixTime(10_031));
        let (by_key, by_id, revoked) = read().await;
        assert!(matches!(by_key, Err(StoreError::Unavailable(_))));
        assert!(by_id.is_err() && revoked.is_err());
        assert!(store
            .resource_by_key(&pepper.digest(b"other"))
            .await
            .is_err());
        let stats = store.stats();
        assert_eq!(stats.fresh.load(Ordering::Relaxed), 3);
        assert_eq!(stats.stale.load(Ordering::Relaxed), 3);
        assert_eq!(stats.missed.load(Ordering::Relaxed), 4);
        // Writes are never served from memory.
        assert!(store
            .replace_key(
                &id,
                KeySlot::Key1,
                &pepper.digest(b"k3"),
                UnixTime(1),
                &draft
            )
            .await
            .is_err());
    }
}
