//! Where the audit records are kept: what the writer, checkpoints, proofs, queries and exports
//! need from a backend.
//!
//! The embedded backend keeps each chain in a [`crate::journal::Journal`] and its query index
//! in SQLite; the PostgreSQL backend keeps the chains in one table with nothing but its primary
//! key, and the index in another. Both build the index behind the writers, re-hash every record
//! a query returns against its index row, and hold each chain's Merkle frontier in memory.
//! `latch-store` implements this trait for both (its contract suite tests them alike).

use async_trait::async_trait;
use latch_core::audit::AuditDraft;
use latch_core::checkpoint::{Checkpoint, Frontier};
use latch_core::{ResourceId, UnixTime};

use crate::Result;

/// What an auditor asks of the log. Every filter is optional; `after` is the cursor of the
/// previous page.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AuditQuery {
    /// One chain.
    pub chain: Option<String>,
    /// The ISV involved.
    pub isv: Option<ResourceId>,
    /// The target (client) resource.
    pub target: Option<ResourceId>,
    /// One token.
    pub jti: Option<String>,
    /// The event type (`limited_access_token_issued`, ...).
    pub kind: Option<String>,
    /// `success` or `failure`.
    pub outcome: Option<String>,
    /// A Face operation (usage records).
    pub operation: Option<String>,
    /// A feature flag (issuance records).
    pub feature: Option<latch_core::Feature>,
    /// From this time (inclusive).
    pub from: Option<UnixTime>,
    /// Until this time (exclusive).
    pub to: Option<UnixTime>,
    /// The cursor of the previous page.
    pub after: Option<i64>,
    /// At most this many (1..=1000).
    pub limit: usize,
}

/// One stored audit record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredAuditRecord {
    /// The writer's chain.
    pub chain: String,
    /// Its sequence number in the chain.
    pub seq: u64,
    /// The sealed body, exactly as hashed.
    pub body: String,
    /// `SHA-256(body)`.
    pub hash: [u8; 32],
}

/// The audit log's storage. Every chain is append-only: records are sealed (linked to the one
/// before) and made durable by the backend, and only archiving removes any, oldest first.
#[async_trait]
pub trait AuditStore: Send + Sync + 'static {
    /// Appends records to `chain` in one transaction, in order; returns their sequence numbers.
    async fn append_audit(&self, chain: &str, drafts: &[AuditDraft]) -> Result<Vec<u64>>;

    /// Appends one record to this handle's own chain (a change made outside the store, such as
    /// the audit key's creation).
    async fn record(&self, audit: &AuditDraft) -> Result<u64>;

    /// Records of `chain` with `seq > after`, oldest first, at most `limit`.
    async fn audit_records(
        &self,
        chain: &str,
        after: u64,
        limit: usize,
    ) -> Result<Vec<StoredAuditRecord>>;

    /// The names of all chains.
    async fn audit_chains(&self) -> Result<Vec<String>>;

    /// Removes records `..=through` of `chain`, keeping the Merkle frontier of everything up to
    /// them, with the record of the archiving, in one transaction; fails if the chain is no
    /// longer archived through `previous` (another archiving got there first).
    async fn archive_audit(
        &self,
        chain: &str,
        previous: u64,
        through: u64,
        frontier: &[u8],
        audit: &AuditDraft,
    ) -> Result<()>;

    /// How far `chain` has been archived, and the frontier at that point.
    async fn audit_archive(&self, chain: &str) -> Result<Option<(u64, Vec<u8>)>>;

    /// The highest sequence number of `chain` (0 when empty).
    async fn audit_head(&self, chain: &str) -> Result<u64>;

    /// The Merkle leaf hashes of `chain`, in sequence order.
    async fn audit_leaves(&self, chain: &str) -> Result<Vec<[u8; 32]>>;

    /// Brings the audit index up to every record durable now.
    async fn index_audit(&self) -> Result<()>;

    /// Roots of complete Merkle subtrees of `chain` at `height` whose index is in
    /// `[from, to)`, as (index, root), those stored only: at height 0 the leaf hashes of the
    /// indexed records (record `seq` is leaf `seq - 1`; [`AuditStore::index_audit`] first), at
    /// greater heights the roots kept by [`AuditStore::put_audit_subtrees`]. Proofs are made
    /// from them ([`crate::proofs`]).
    async fn audit_subtrees(
        &self,
        chain: &str,
        height: u32,
        from: u64,
        to: u64,
    ) -> Result<Vec<(u64, [u8; 32])>>;

    /// Keeps roots of complete subtrees of `chain` at `height` (> 0), as (index, root).
    async fn put_audit_subtrees(
        &self,
        chain: &str,
        height: u32,
        roots: &[(u64, [u8; 32])],
    ) -> Result<()>;

    /// Rebuilds the audit index from the records themselves (the journals, or PostgreSQL's
    /// `audit_log`); returns how many records it holds.
    async fn reindex_audit(&self) -> Result<u64>;

    /// The Merkle frontier of `chain`'s committed records, held in memory by its writer, after
    /// checking that the records written since the last such call still read back (and match
    /// their index rows) as they were written. `None` for a chain this store does not hold in
    /// memory (another chain of an embedded data directory), whose frontier is rebuilt from
    /// [`AuditStore::audit_leaves`].
    async fn audit_frontier(&self, chain: &str) -> Result<Option<Frontier>>;

    /// Records matching `query`, in the order they were written, and the cursor of the next
    /// page if there is one.
    async fn query_audit(
        &self,
        query: &AuditQuery,
    ) -> Result<(Vec<StoredAuditRecord>, Option<i64>)>;

    /// The ISV (canonical id) whose issuance record holds `jti`, if any.
    async fn issuer_of(&self, jti: &str) -> Result<Option<String>>;

    /// Stores a signed checkpoint.
    async fn add_checkpoint(&self, checkpoint: &Checkpoint) -> Result<()>;

    /// The checkpoints of `chain`, oldest first.
    async fn checkpoints(&self, chain: &str) -> Result<Vec<Checkpoint>>;
}
