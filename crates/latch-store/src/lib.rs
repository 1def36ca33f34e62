//! The state of latch, behind one interface.
//!
//! [`Store`] is what the services need: resources with their two key digests, ISV issuance and
//! grants, direct approvals, client blocks, signing keys and the audit log. [`sqlite::SqliteStore`]
//! is the embedded backend (a file in the data directory); a PostgreSQL backend implements the
//! same trait for many replicas.
//!
//! Every method that changes state takes the [`AuditDraft`] that describes the change and
//! commits both in one transaction: a change without its record, or a record of a change that
//! did not happen, cannot exist. Token issuance, which changes no state, appends its records
//! through [`audit_log::AuditLog`], which groups concurrent records into one commit.

use async_trait::async_trait;
use latch_core::audit::{AuditDraft, KeySlot};
use latch_core::secret::KeyDigest;
use latch_core::{FeatureSet, ResourceId, UnixTime};

pub mod admin;
mod audit_fields;
pub mod audit_log;
pub mod check_cache;
pub mod checkpoints;
pub mod face;
pub mod postgres;
pub mod proofs;
pub mod signing;
pub mod sqlite;
pub mod stale;
pub mod testing;

#[cfg(test)]
mod tests;

/// A store failure.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The resource (or other row) does not exist.
    #[error("{0} not found")]
    NotFound(String),
    /// The resource (or other row) already exists.
    #[error("{0} already exists")]
    AlreadyExists(String),
    /// The backend failed: I/O, a constraint, a full disk, a closed connection.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// Stored data does not parse.
    #[error("store corrupt: {0}")]
    Corrupt(String),
    /// The change is not this actor's to make (the message says why).
    #[error("{0}")]
    Refused(String),
}

/// Result of store calls.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// The two admin credentials that are not resource keys.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AdminRole {
    /// The platform operator: everything.
    Operator,
    /// The auditor: read-only.
    Auditor,
}

impl AdminRole {
    /// `operator` or `auditor`.
    pub const fn as_str(self) -> &'static str {
        match self {
            AdminRole::Operator => "operator",
            AdminRole::Auditor => "auditor",
        }
    }
}

/// How callers authenticate to a resource's Face endpoint (seed `000`: the two are exclusive).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuthMode {
    /// `Ocp-Apim-Subscription-Key`.
    Key,
    /// `Authorization: Bearer` with an `issueToken` token.
    Token,
}

impl AuthMode {
    /// `key` or `token`.
    pub const fn as_str(self) -> &'static str {
        match self {
            AuthMode::Key => "key",
            AuthMode::Token => "token",
        }
    }

    /// Parses `key` or `token`.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "key" => Some(AuthMode::Key),
            "token" => Some(AuthMode::Token),
            _ => None,
        }
    }
}

/// A resource as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Resource {
    /// Its id, as first spelled.
    pub id: ResourceId,
    /// When it was created.
    pub created_at: UnixTime,
    /// Whether it may call `issueLimitedAccessToken` (an approved ISV).
    pub isv_enabled: bool,
    /// What it may grant as an ISV.
    pub isv_grants: FeatureSet,
    /// Features approved for this resource directly.
    pub approvals: FeatureSet,
    /// How its Face endpoint authenticates callers.
    pub auth_mode: AuthMode,
}

/// A key slot's metadata; never the key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyInfo {
    /// Which key.
    pub slot: KeySlot,
    /// When its current value was made.
    pub created_at: UnixTime,
}

/// A signing key as stored.
#[derive(Clone, PartialEq, Eq)]
pub struct StoredSigningKey {
    /// Its `kid`.
    pub kid: String,
    /// The PKCS#8 document, wiped from memory when dropped.
    pub pkcs8: zeroize::Zeroizing<Vec<u8>>,
    /// When it was created.
    pub created_at: UnixTime,
    /// When it stopped signing, if it has.
    pub retired_at: Option<UnixTime>,
}

impl std::fmt::Debug for StoredSigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoredSigningKey")
            .field("kid", &self.kid)
            .field("created_at", &self.created_at)
            .field("retired_at", &self.retired_at)
            .finish_non_exhaustive()
    }
}

/// A revocation entry as stored: `scope` is `jti`, `isv`, `target` or `isv_target`; `subject`
/// the `jti`, the canonical resource id, or `isv target`; `before` the issue time tokens must
/// be earlier than to be covered (none for `jti`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RevocationEntry {
    /// What it names.
    pub scope: String,
    /// Whom it names.
    pub subject: String,
    /// Tokens issued before this are covered.
    pub before: Option<UnixTime>,
}

/// A revocation of issued limited access tokens.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Revocation {
    /// One token, by `jti`; the entry may go once the token has expired.
    Token {
        /// Its id.
        jti: String,
        /// When it expires.
        expires: UnixTime,
    },
    /// Every token for a client resource issued before a time (AWS's "revoke older sessions").
    TargetBefore {
        /// The client resource.
        target: ResourceId,
        /// Tokens issued before this are revoked.
        before: UnixTime,
    },
    /// Every token of an ISV issued before a time.
    IsvBefore {
        /// The ISV's resource.
        isv: ResourceId,
        /// Tokens issued before this are revoked.
        before: UnixTime,
    },
    /// The tokens one ISV issued for one client resource before a time: what an ISV may
    /// revoke by itself.
    IsvTargetBefore {
        /// The ISV's resource.
        isv: ResourceId,
        /// The client resource.
        target: ResourceId,
        /// Tokens issued before this are revoked.
        before: UnixTime,
    },
}

/// How a revocation is stored: `(scope, subject, before, expires_at)`. An entry expires once
/// every token it covers is over: its tokens' longest life plus the verifier's largest leeway.
pub(crate) fn revocation_row(
    revocation: &Revocation,
) -> (&'static str, String, Option<UnixTime>, UnixTime) {
    let horizon = |t: UnixTime| {
        t.plus(i64::from(latch_core::Lifetime::MAX_SECS) + latch_core::verify::MAX_LEEWAY_SECS)
    };
    match revocation {
        Revocation::Token { jti, expires } => (
            "jti",
            jti.clone(),
            None,
            expires.plus(latch_core::verify::MAX_LEEWAY_SECS),
        ),
        Revocation::TargetBefore { target, before } => (
            "target",
            target.canonical().to_owned(),
            Some(*before),
            horizon(*before),
        ),
        Revocation::IsvBefore { isv, before } => (
            "isv",
            isv.canonical().to_owned(),
            Some(*before),
            horizon(*before),
        ),
        Revocation::IsvTargetBefore {
            isv,
            target,
            before,
        } => (
            "isv_target",
            format!("{} {}", isv.canonical(), target.canonical()),
            Some(*before),
            horizon(*before),
        ),
    }
}

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

/// Who owns a block set by `actor`: a block set by the operator is the operator's, and an ISV
/// cannot lift it.
pub(crate) fn block_owner(actor: &latch_core::audit::Actor) -> &'static str {
    match actor {
        latch_core::audit::Actor::Operator | latch_core::audit::Actor::LocalOperator => "operator",
        _ => "isv",
    }
}

/// SQL conditions with their values: text ones, then times.
pub(crate) type Conditions = (Vec<(&'static str, String)>, Vec<(&'static str, i64)>);

impl AuditQuery {
    /// The filters given, as SQL conditions each waiting for one value: text values, then
    /// times. Both backends build their `WHERE` from this.
    pub(crate) fn conditions(&self) -> Conditions {
        let mut texts = Vec::new();
        let mut add = |clause, value: Option<String>| {
            if let Some(v) = value {
                texts.push((clause, v));
            }
        };
        add("chain =", self.chain.clone());
        add("isv =", self.isv.as_ref().map(|v| v.canonical().to_owned()));
        add(
            "target =",
            self.target.as_ref().map(|v| v.canonical().to_owned()),
        );
        add("jti =", self.jti.clone());
        add("kind =", self.kind.clone());
        add("outcome =", self.outcome.clone());
        add("operation =", self.operation.clone());
        add(
            "(',' || features || ',') LIKE",
            self.feature.map(|f| format!("%,{},%", f.as_str())),
        );
        let times = [("time >=", self.from), ("time <", self.to)]
            .into_iter()
            .filter_map(|(clause, t)| t.map(|t| (clause, t.0)))
            .collect();
        (texts, times)
    }
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

/// The state of latch.
#[async_trait]
pub trait Store: face::FaceData + Send + Sync + 'static {
    /// The pepper under which key digests are computed.
    async fn key_pepper(&self) -> Result<Vec<u8>>;

    /// Creates a resource with digests of its two keys.
    async fn create_resource(
        &self,
        resource: &Resource,
        key1: &KeyDigest,
        key2: &KeyDigest,
        audit: &AuditDraft,
    ) -> Result<()>;

    /// A resource by id.
    async fn resource(&self, id: &ResourceId) -> Result<Option<Resource>>;

    /// The resource, and the slot, of the key with this digest.
    async fn resource_by_key(
        &self,
        digest: &KeyDigest,
    ) -> Result<Option<(Resource, KeySlot, KeyDigest)>>;

    /// Every resource, ordered by canonical id.
    async fn resources(&self) -> Result<Vec<Resource>>;

    /// Sets ISV issuance and grants.
    async fn set_isv(
        &self,
        id: &ResourceId,
        enabled: bool,
        grants: &FeatureSet,
        audit: &AuditDraft,
    ) -> Result<Resource>;

    /// Sets direct approvals.
    async fn set_approvals(
        &self,
        id: &ResourceId,
        features: &FeatureSet,
        audit: &AuditDraft,
    ) -> Result<Resource>;

    /// Sets how the resource's Face endpoint authenticates callers.
    async fn set_auth_mode(
        &self,
        id: &ResourceId,
        mode: AuthMode,
        audit: &AuditDraft,
    ) -> Result<Resource>;

    /// Replaces one key's digest; the old value stops working when this returns.
    async fn replace_key(
        &self,
        id: &ResourceId,
        slot: KeySlot,
        digest: &KeyDigest,
        now: UnixTime,
        audit: &AuditDraft,
    ) -> Result<()>;

    /// The key slots of a resource.
    async fn keys(&self, id: &ResourceId) -> Result<Vec<KeyInfo>>;

    /// Blocks (`true`) or unblocks a client for an ISV.
    async fn set_client_blocked(
        &self,
        isv: &ResourceId,
        client: &ResourceId,
        blocked: bool,
        now: UnixTime,
        audit: &AuditDraft,
    ) -> Result<()>;

    /// Whether an ISV has blocked a client.
    async fn is_client_blocked(&self, isv: &ResourceId, client: &ResourceId) -> Result<bool>;

    /// A number that moves whenever the state requests are checked against changes: resources
    /// (approvals, grants, ISV status, auth mode), keys, client blocks and revocations, whichever
    /// process changed it. It moves in the transaction that makes the change.
    async fn state_version(&self) -> Result<u64>;

    /// How many state changes were committed through this handle: a change made here moves it
    /// before the call that made it returns, so this process sees its own changes at once.
    fn changes_here(&self) -> u64;

    /// How many answers this handle gave from memory instead of from the database (an outage
    /// fallback, [`stale::StaleIfError`]); a store that never does says 0. Such an answer may
    /// be stale, so nothing may keep it as the database's.
    fn stale_answers(&self) -> u64 {
        0
    }

    /// Records a revocation. Entries carry the time after which no token they cover can still
    /// be valid, so the list stays small.
    async fn add_revocation(&self, revocation: &Revocation, audit: &AuditDraft) -> Result<()>;

    /// Whether a token (by id, issuer, target and issue time) is revoked.
    async fn is_revoked(
        &self,
        jti: &str,
        isv: &ResourceId,
        target: &ResourceId,
        iat: UnixTime,
    ) -> Result<bool>;

    /// Every revocation entry, if there are at most `limit` (`None` when there are more): what
    /// [`Store::is_revoked`] reads, to be held in memory.
    async fn revocations(&self, limit: usize) -> Result<Option<Vec<RevocationEntry>>>;

    /// Drops revocations that cover no token that could still be valid at `now`; returns how
    /// many were dropped.
    async fn prune_revocations(&self, now: UnixTime) -> Result<u64>;

    /// The ISV (canonical id) whose issuance record holds `jti`, if any.
    async fn issuer_of(&self, jti: &str) -> Result<Option<String>>;

    /// The digest of an admin credential.
    async fn admin_credential(&self, role: AdminRole) -> Result<Option<KeyDigest>>;

    /// Sets an admin credential's digest.
    async fn set_admin_credential(
        &self,
        role: AdminRole,
        digest: &KeyDigest,
        audit: &AuditDraft,
    ) -> Result<()>;

    /// Retires every unretired signing key at `now` and adds `key`, which signs from then on.
    async fn rotate_signing_key(
        &self,
        key: &StoredSigningKey,
        now: UnixTime,
        audit: &AuditDraft,
    ) -> Result<()>;

    /// Every signing key, oldest first.
    async fn signing_keys(&self) -> Result<Vec<StoredSigningKey>>;

    /// Adds a signing key.
    async fn add_signing_key(&self, key: &StoredSigningKey, audit: &AuditDraft) -> Result<()>;

    /// Appends records to `chain` in one transaction, in order; returns their sequence numbers.
    async fn append_audit(&self, chain: &str, drafts: &[AuditDraft]) -> Result<Vec<u64>>;

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
    /// indexed records (record `seq` is leaf `seq - 1`; [`Store::index_audit`] first), at
    /// greater heights the roots kept by [`Store::put_audit_subtrees`]. Proofs are made from
    /// them (`proofs.rs`).
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
    /// [`Store::audit_leaves`].
    async fn audit_frontier(&self, chain: &str)
        -> Result<Option<latch_core::checkpoint::Frontier>>;

    /// Records matching `query`, in the order they were written, and the cursor of the next
    /// page if there is one.
    async fn query_audit(
        &self,
        query: &AuditQuery,
    ) -> Result<(Vec<StoredAuditRecord>, Option<i64>)>;

    /// Stores a signed checkpoint.
    async fn add_checkpoint(&self, checkpoint: &latch_core::checkpoint::Checkpoint) -> Result<()>;

    /// The checkpoints of `chain`, oldest first.
    async fn checkpoints(&self, chain: &str) -> Result<Vec<latch_core::checkpoint::Checkpoint>>;

    /// Appends one record to this handle's own chain (a change made outside the store, such as
    /// the audit key's creation).
    async fn record(&self, audit: &AuditDraft) -> Result<u64>;

    /// `Ok` when the store answers and its schema is this program's: what a readiness probe
    /// asks.
    async fn ready(&self) -> Result<()>;
}
