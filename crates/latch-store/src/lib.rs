//! The state of latch, behind one interface.
//!
//! [`Store`] is what the services need: resources with their two key digests, ISV issuance and
//! grants, direct approvals, client blocks and signing keys. [`sqlite::SqliteStore`] is the
//! embedded backend (a file in the data directory); [`postgres::PgStore`] implements the same
//! trait for many replicas. Both also keep the audit log's records, behind the
//! [`latch_audit::AuditStore`] trait that `latch-audit` defines: its writer, checkpoints, proofs
//! and exports use nothing else.
//!
//! Every method that changes state takes the [`AuditDraft`] that describes the change and
//! commits both in one transaction: a change without its record, or a record of a change that
//! did not happen, cannot exist. Token issuance, which changes no state, appends its records
//! through [`latch_audit::writer::AuditLog`], which groups concurrent records into one commit.

use async_trait::async_trait;
use latch_audit::AuditStore;
use latch_core::audit::{AuditDraft, KeySlot};
use latch_core::secret::KeyDigest;
use latch_core::{FeatureSet, ResourceId, UnixTime};

mod audit_fields;
pub mod check_cache;
pub mod face;
pub mod key_auth;
pub mod operations;
pub mod postgres;
pub mod signing;
pub mod sqlite;
pub mod stale;
mod stored;
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
    /// A Face data row (a group, a person, a persisted face) does not exist.
    #[error("{0} not found")]
    FaceNotFound(face::FaceItem),
    /// A Face data row already exists.
    #[error("{0} already exists")]
    FaceExists(face::FaceItem),
    /// The backend failed: I/O, a constraint, a full disk, a closed connection.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// Stored data does not parse.
    #[error("store corrupt: {0}")]
    Corrupt(String),
    /// This process failed, not the store: a store task that panicked or was cancelled, the
    /// random number generator. Answered as the store being unavailable, logged as what it is.
    #[error("internal error: {0}")]
    Internal(String),
    /// The change is not this actor's to make (the message says why).
    #[error("{0}")]
    Refused(String),
}

impl From<latch_audit::AuditError> for StoreError {
    fn from(e: latch_audit::AuditError) -> Self {
        use latch_audit::AuditError as A;
        match e {
            A::Unavailable(m) => StoreError::Unavailable(m),
            A::Corrupt(m) => StoreError::Corrupt(m),
            A::Refused(m) => StoreError::Refused(m),
        }
    }
}

/// The backends' audit methods share their helpers with the rest of the store; a row that is
/// missing or already there is, to the audit log, a request it refuses (with the same words).
impl From<StoreError> for latch_audit::AuditError {
    fn from(e: StoreError) -> Self {
        use latch_audit::AuditError as A;
        match e {
            StoreError::Unavailable(m) => A::Unavailable(m),
            e @ StoreError::Internal(_) => A::Unavailable(e.to_string()),
            StoreError::Corrupt(m) => A::Corrupt(m),
            StoreError::Refused(m) => A::Refused(m),
            other @ (StoreError::NotFound(_)
            | StoreError::AlreadyExists(_)
            | StoreError::FaceNotFound(_)
            | StoreError::FaceExists(_)) => A::Refused(other.to_string()),
        }
    }
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

/// Who owns a block set by `actor`: a block set by the operator is the operator's, and an ISV
/// cannot lift it.
pub(crate) fn block_owner(actor: &latch_core::audit::Actor) -> &'static str {
    match actor {
        latch_core::audit::Actor::Operator | latch_core::audit::Actor::LocalOperator => "operator",
        _ => "isv",
    }
}

/// The refusal to lift a block the operator set, for anyone but the operator.
pub(crate) fn operator_block_refusal() -> StoreError {
    StoreError::Refused("this block was set by the operator; only the operator can lift it".into())
}

/// The state of latch.
#[async_trait]
pub trait Store: face::FaceData + AuditStore + Send + Sync + 'static {
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

    /// `Ok` when the store answers and its schema is this program's: what a readiness probe
    /// asks.
    async fn ready(&self) -> Result<()>;
}
