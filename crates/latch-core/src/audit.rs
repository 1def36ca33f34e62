//! Typed audit events and the hash chain that seals them.
//!
//! An audit record answers an auditor's question (who issued what, for whom, with which flags,
//! for how long; who used which token; who changed a key or a grant) and never holds a key or a
//! whole token: a token is named by its `jti` and [`crate::verify::fingerprint`].
//!
//! Records form one chain per writer. A record's body is the JSON of [`SealedRecord`], which
//! includes the chain name, its sequence number and the previous record's hash; its hash is
//! `SHA-256(body)`. The body text is stored and exported byte for byte, so anyone can recompute
//! the chain from an export (see [`verify_chain`]).

use serde::{Deserialize, Serialize};

use crate::clock::UnixTime;
use crate::feature::FeatureSet;
use crate::jws::b64url;
use crate::resource_id::ResourceId;

/// Which of a resource's two keys.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum KeySlot {
    /// `Key1` (Azure ML's "Primary").
    Key1,
    /// `Key2` (Azure ML's "Secondary").
    Key2,
}

impl KeySlot {
    /// Both slots.
    pub const BOTH: [KeySlot; 2] = [KeySlot::Key1, KeySlot::Key2];

    /// 1 or 2.
    pub const fn number(self) -> u8 {
        match self {
            KeySlot::Key1 => 1,
            KeySlot::Key2 => 2,
        }
    }

    /// The slot numbered 1 or 2.
    pub const fn from_number(n: u8) -> Option<KeySlot> {
        match n {
            1 => Some(KeySlot::Key1),
            2 => Some(KeySlot::Key2),
            _ => None,
        }
    }

    /// Parses `key1`, `Key2`, `primary`, `secondary`, `1`, `2` (any case).
    pub fn parse(s: &str) -> Option<KeySlot> {
        match s.to_ascii_lowercase().as_str() {
            "key1" | "1" | "primary" => Some(KeySlot::Key1),
            "key2" | "2" | "secondary" => Some(KeySlot::Key2),
            _ => None,
        }
    }
}

impl std::fmt::Display for KeySlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Key{}", self.number())
    }
}

/// Who did it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Actor {
    /// A caller that presented a valid key of a resource.
    Resource {
        /// The resource.
        resource: ResourceId,
        /// Which key.
        slot: KeySlot,
    },
    /// A caller that presented an `issueToken` access token.
    AccessToken {
        /// The resource it stands for.
        resource: ResourceId,
        /// Its id.
        jti: String,
    },
    /// A caller whose credential was missing or wrong.
    Anonymous,
    /// The local operator, through the command line on the store itself.
    LocalOperator,
    /// The platform operator, through the admin API.
    Operator,
    /// The service itself (bootstrap, scheduled work).
    System,
}

/// What happened.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum AuditEvent {
    /// A limited access token was issued.
    LimitedAccessTokenIssued {
        /// The issuing ISV's resource.
        isv: ResourceId,
        /// The client resource.
        target: ResourceId,
        /// The granted features.
        features: FeatureSet,
        /// The lifetime in seconds.
        lifetime_secs: u32,
        /// When it expires.
        expires: UnixTime,
        /// Its id.
        jti: String,
        /// Its fingerprint.
        fingerprint: String,
        /// The signing key.
        kid: String,
    },
    /// A request for a limited access token was refused.
    LimitedAccessTokenRefused {
        /// The caller's resource, when its key was valid.
        isv: Option<ResourceId>,
        /// The client resource, when it was well formed.
        target: Option<ResourceId>,
        /// The requested features that were understood.
        features: FeatureSet,
        /// A stable code for why.
        reason: String,
        /// The HTTP status answered.
        status: u16,
    },
    /// An access token (`issueToken`) was issued.
    AccessTokenIssued {
        /// The resource it stands for.
        resource: ResourceId,
        /// When it expires.
        expires: UnixTime,
        /// Its id.
        jti: String,
        /// Its fingerprint.
        fingerprint: String,
        /// The signing key.
        kid: String,
    },
    /// A request for an access token was refused.
    AccessTokenRefused {
        /// A stable code for why.
        reason: String,
        /// The HTTP status answered.
        status: u16,
    },
    /// Requests from one client address refused before any credential was accepted (no valid
    /// key) or over a rate limit, counted over an interval instead of recorded one by one: a
    /// flood shows with its size, its span and its reasons, and costs the log one record per
    /// address and interval.
    RefusalsCounted {
        /// The service that refused them (`sts`).
        service: String,
        /// The client address (IPv6: its /64), `others` for addresses past the tally's bound,
        /// or `unknown` for requests that came from no connection.
        source: String,
        /// How many requests.
        count: u64,
        /// The first and the last of them.
        first: UnixTime,
        last: UnixTime,
        /// How many for each reason (`invalid_key`, `rate_limited`).
        reasons: std::collections::BTreeMap<String, u64>,
    },
    /// A call to the Face front presented a limited access token.
    LimitedAccessTokenUsed {
        /// The resource the call authenticated as.
        resource: ResourceId,
        /// The Face operation (`identify`, `verify`, ...).
        operation: String,
        /// `accepted`, `refused`, or `not_needed` (a direct approval, or an operation that
        /// needs no feature).
        outcome: String,
        /// Why it was refused (`expired`, `other_resource`, `missing_feature`, `revoked`, ...).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
        /// The token's id, when it verified.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        jti: Option<String>,
        /// The issuing ISV, when it verified.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        isv: Option<ResourceId>,
        /// The fingerprint of what was presented.
        fingerprint: String,
    },
    /// Issued limited access tokens were revoked.
    TokensRevoked {
        /// `jti`, `target` (every token for a resource issued before `before`), `isv` (every
        /// token of an ISV issued before `before`) or `isv_target` (an ISV's tokens for one
        /// resource issued before `before`; the subject is `isv target`).
        scope: String,
        /// The `jti` or the canonical resource id.
        subject: String,
        /// For `target` and `isv`: tokens issued before this time are revoked.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        before: Option<UnixTime>,
    },
    /// A resource's authentication mode changed.
    AuthModeChanged {
        /// The resource.
        resource: ResourceId,
        /// `key` or `token`.
        mode: String,
    },
    /// A resource was created with two new keys.
    ResourceCreated {
        /// The resource.
        resource: ResourceId,
    },
    /// A key was regenerated; its old value no longer works.
    KeyRegenerated {
        /// The resource.
        resource: ResourceId,
        /// Which key.
        slot: KeySlot,
    },
    /// An ISV's right to issue limited access tokens, or its grants, changed.
    IsvIssuanceChanged {
        /// The ISV's resource.
        resource: ResourceId,
        /// Whether it may issue.
        enabled: bool,
        /// What it may grant.
        grants: FeatureSet,
    },
    /// A resource's direct approvals changed.
    ApprovalsChanged {
        /// The resource.
        resource: ResourceId,
        /// The approved features.
        features: FeatureSet,
    },
    /// An ISV stopped issuing tokens for a client.
    ClientBlocked {
        /// The ISV's resource.
        isv: ResourceId,
        /// The client's resource.
        client: ResourceId,
    },
    /// An ISV resumed issuing tokens for a client.
    ClientUnblocked {
        /// The ISV's resource.
        isv: ResourceId,
        /// The client's resource.
        client: ResourceId,
    },
    /// The signing key was rotated: a new key signs from now on.
    SigningKeyRotated {
        /// The new key's id.
        kid: String,
        /// The keys retired now; they stay published until their tokens have expired.
        retired: Vec<String>,
    },
    /// The oldest records of a chain were archived to an export and removed from the store.
    AuditArchived {
        /// The chain.
        chain: String,
        /// Records up to this sequence number are in the archive.
        through_seq: u64,
        /// The Merkle root of records 1..=through_seq, as in the archive's checkpoint.
        root: String,
    },
    /// A service started with these settings (never a secret): each start is a record, so a
    /// change of configuration shows as a change of `digest` between two of them.
    ServiceConfigured {
        /// The program's version.
        version: String,
        /// The settings in force.
        settings: serde_json::Value,
        /// SHA-256 of the settings' JSON, base64url.
        digest: String,
    },
    /// The audit (checkpoint) signing key was created.
    AuditKeyCreated {
        /// Its key id.
        kid: String,
    },
    /// An admin credential (operator or auditor) was set; never the credential itself.
    AdminCredentialSet {
        /// `operator` or `auditor`.
        role: String,
    },
    /// A signing key was created.
    SigningKeyCreated {
        /// Its key id.
        kid: String,
    },
    /// A TLS certificate was put in service (at start, or renewed while running). It serves
    /// only once this record is committed.
    TlsCertificateInstalled {
        /// `startup`, `files changed` or `SIGHUP`.
        reason: String,
        /// The name clients use, which the certificate covers.
        cname: String,
        /// SHA-256 of the certificate's DER, hex.
        fingerprint: String,
        /// Its subject alternative names.
        names: Vec<String>,
        /// Its validity, RFC 3339.
        not_before: String,
        not_after: String,
        /// Issued by itself: a development certificate.
        self_signed: bool,
    },
    /// A renewed certificate or key was refused; the one in service stays.
    TlsCertificateRefused {
        /// `files changed` or `SIGHUP`.
        reason: String,
        /// Why it was refused.
        error: String,
    },
}

/// The columns an audit record is indexed by.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AuditIndex {
    /// The event type (`limited_access_token_issued`, ...).
    pub kind: &'static str,
    /// `success` or `failure`.
    pub outcome: &'static str,
    /// The ISV involved, canonical.
    pub isv: Option<String>,
    /// The target or subject resource, canonical.
    pub target: Option<String>,
    /// The token id.
    pub jti: Option<String>,
}

impl AuditEvent {
    /// The features an issuance record names (comma-separated), and the Face operation a
    /// usage record names: two more columns an auditor filters by.
    pub fn features_and_operation(&self) -> (Option<String>, Option<String>) {
        match self {
            AuditEvent::LimitedAccessTokenIssued { features, .. }
            | AuditEvent::LimitedAccessTokenRefused { features, .. } => {
                (Some(features.to_csv()), None)
            }
            AuditEvent::LimitedAccessTokenUsed { operation, .. } => (None, Some(operation.clone())),
            _ => (None, None),
        }
    }

    /// The fields a store indexes this event by.
    pub fn index(&self) -> AuditIndex {
        let (isv, target, jti) = self.indexed_ids();
        AuditIndex {
            kind: self.kind(),
            outcome: self.outcome(),
            isv,
            target,
            jti,
        }
    }

    /// The event type, as the `type` field of its JSON names it. Every event is listed here, so
    /// a new one does not compile until it is named; [`Self::outcome`] and
    /// [`Self::indexed_ids`] list only the events that are failures or name ids.
    fn kind(&self) -> &'static str {
        match self {
            AuditEvent::LimitedAccessTokenIssued { .. } => "limited_access_token_issued",
            AuditEvent::LimitedAccessTokenRefused { .. } => "limited_access_token_refused",
            AuditEvent::AccessTokenIssued { .. } => "access_token_issued",
            AuditEvent::AccessTokenRefused { .. } => "access_token_refused",
            AuditEvent::RefusalsCounted { .. } => "refusals_counted",
            AuditEvent::LimitedAccessTokenUsed { .. } => "limited_access_token_used",
            AuditEvent::AuthModeChanged { .. } => "auth_mode_changed",
            AuditEvent::TokensRevoked { .. } => "tokens_revoked",
            AuditEvent::ResourceCreated { .. } => "resource_created",
            AuditEvent::KeyRegenerated { .. } => "key_regenerated",
            AuditEvent::IsvIssuanceChanged { .. } => "isv_issuance_changed",
            AuditEvent::ApprovalsChanged { .. } => "approvals_changed",
            AuditEvent::ClientBlocked { .. } => "client_blocked",
            AuditEvent::ClientUnblocked { .. } => "client_unblocked",
            AuditEvent::SigningKeyRotated { .. } => "signing_key_rotated",
            AuditEvent::AdminCredentialSet { .. } => "admin_credential_set",
            AuditEvent::AuditKeyCreated { .. } => "audit_key_created",
            AuditEvent::AuditArchived { .. } => "audit_archived",
            AuditEvent::ServiceConfigured { .. } => "service_configured",
            AuditEvent::SigningKeyCreated { .. } => "signing_key_created",
            AuditEvent::TlsCertificateInstalled { .. } => "tls_certificate_installed",
            AuditEvent::TlsCertificateRefused { .. } => "tls_certificate_refused",
        }
    }

    /// `failure` for a refusal (and a use that was refused), `success` for everything else.
    /// Every event is named, so a new one cannot be indexed until it is given its outcome.
    fn outcome(&self) -> &'static str {
        match self {
            AuditEvent::LimitedAccessTokenUsed { outcome, .. } if outcome == "refused" => "failure",
            AuditEvent::LimitedAccessTokenRefused { .. }
            | AuditEvent::AccessTokenRefused { .. }
            | AuditEvent::RefusalsCounted { .. }
            | AuditEvent::TlsCertificateRefused { .. } => "failure",
            AuditEvent::LimitedAccessTokenIssued { .. }
            | AuditEvent::AccessTokenIssued { .. }
            | AuditEvent::LimitedAccessTokenUsed { .. }
            | AuditEvent::TokensRevoked { .. }
            | AuditEvent::AuthModeChanged { .. }
            | AuditEvent::ResourceCreated { .. }
            | AuditEvent::KeyRegenerated { .. }
            | AuditEvent::IsvIssuanceChanged { .. }
            | AuditEvent::ApprovalsChanged { .. }
            | AuditEvent::ClientBlocked { .. }
            | AuditEvent::ClientUnblocked { .. }
            | AuditEvent::SigningKeyRotated { .. }
            | AuditEvent::AuditArchived { .. }
            | AuditEvent::ServiceConfigured { .. }
            | AuditEvent::AuditKeyCreated { .. }
            | AuditEvent::AdminCredentialSet { .. }
            | AuditEvent::SigningKeyCreated { .. }
            | AuditEvent::TlsCertificateInstalled { .. } => "success",
        }
    }

    /// The ISV, the target (or subject) resource, and the token id the event names, canonical
    /// (every event named, as in [`AuditEvent::outcome`]).
    fn indexed_ids(&self) -> (Option<String>, Option<String>, Option<String>) {
        let canon = |r: &ResourceId| Some(r.canonical().to_owned());
        match self {
            AuditEvent::LimitedAccessTokenIssued {
                isv, target, jti, ..
            } => (canon(isv), canon(target), Some(jti.clone())),
            AuditEvent::LimitedAccessTokenRefused { isv, target, .. } => (
                isv.as_ref().and_then(canon),
                target.as_ref().and_then(canon),
                None,
            ),
            AuditEvent::AccessTokenIssued { resource, jti, .. } => {
                (None, canon(resource), Some(jti.clone()))
            }
            AuditEvent::LimitedAccessTokenUsed {
                resource, jti, isv, ..
            } => (isv.as_ref().and_then(canon), canon(resource), jti.clone()),
            AuditEvent::TokensRevoked { scope, subject, .. } => match scope.as_str() {
                "jti" => (None, None, Some(subject.clone())),
                "isv" => (Some(subject.clone()), None, None),
                _ => (None, Some(subject.clone()), None),
            },
            AuditEvent::AuthModeChanged { resource, .. }
            | AuditEvent::ResourceCreated { resource }
            | AuditEvent::KeyRegenerated { resource, .. }
            | AuditEvent::ApprovalsChanged { resource, .. } => (None, canon(resource), None),
            AuditEvent::IsvIssuanceChanged { resource, .. } => (canon(resource), None, None),
            AuditEvent::ClientBlocked { isv, client }
            | AuditEvent::ClientUnblocked { isv, client } => (canon(isv), canon(client), None),
            AuditEvent::AccessTokenRefused { .. }
            | AuditEvent::RefusalsCounted { .. }
            | AuditEvent::SigningKeyRotated { .. }
            | AuditEvent::AuditArchived { .. }
            | AuditEvent::ServiceConfigured { .. }
            | AuditEvent::AuditKeyCreated { .. }
            | AuditEvent::AdminCredentialSet { .. }
            | AuditEvent::SigningKeyCreated { .. }
            | AuditEvent::TlsCertificateInstalled { .. }
            | AuditEvent::TlsCertificateRefused { .. } => (None, None, None),
        }
    }
}

/// An event with its context, before it is sealed into a chain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditDraft {
    /// When it happened.
    pub time: UnixTime,
    /// The request it belongs to, if any.
    pub request_id: Option<String>,
    /// Who did it.
    pub actor: Actor,
    /// What happened.
    pub event: AuditEvent,
}

/// The body of a sealed record, as stored and exported.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SealedRecord {
    /// The writer's chain.
    pub chain: String,
    /// 1, 2, 3, ... within the chain.
    pub seq: u64,
    /// The previous record's hash (base64url); 32 zero bytes for the first record.
    pub prev_hash: String,
    /// When it happened.
    pub time: UnixTime,
    /// The request it belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    /// Who did it.
    pub actor: Actor,
    /// What happened.
    pub event: AuditEvent,
}

/// The hash before the first record of a chain.
pub const GENESIS: [u8; 32] = [0; 32];

/// Seals `draft` as record `seq` of `chain` after a record whose hash is `prev`: returns the body
/// text to store and its hash.
pub fn seal(chain: &str, seq: u64, prev: &[u8; 32], draft: &AuditDraft) -> (String, [u8; 32]) {
    let record = SealedRecord {
        chain: chain.to_owned(),
        seq,
        prev_hash: b64url(prev),
        time: draft.time,
        request_id: draft.request_id.clone(),
        actor: draft.actor.clone(),
        event: draft.event.clone(),
    };
    // Serializing plain data into a String cannot fail.
    let body = serde_json::to_string(&record).unwrap_or_default();
    let hash = record_hash(&body);
    (body, hash)
}

/// `SHA-256(body)`.
pub fn record_hash(body: &str) -> [u8; 32] {
    let d = ring::digest::digest(&ring::digest::SHA256, body.as_bytes());
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

/// What is wrong with a chain, naming the first bad record.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ChainError {
    /// A body does not parse as a sealed record.
    #[error("record {index}: not a valid audit record")]
    Unreadable {
        /// Position in the input, from 0.
        index: usize,
    },
    /// A record belongs to another chain.
    #[error("record {index}: belongs to chain '{found}', expected '{expected}'")]
    WrongChain {
        /// Position.
        index: usize,
        /// The chain expected.
        expected: String,
        /// The chain found.
        found: String,
    },
    /// A sequence number is not the next one.
    #[error("record {index}: sequence number {found}, expected {expected} (missing or reordered records)")]
    Sequence {
        /// Position.
        index: usize,
        /// Expected seq.
        expected: u64,
        /// Found seq.
        found: u64,
    },
    /// `prev_hash` is not the previous record's hash.
    #[error("record {index} (seq {seq}): previous-hash link broken (a record before it was altered or removed)")]
    Link {
        /// Position.
        index: usize,
        /// Its seq.
        seq: u64,
    },
}

/// Checks that `bodies` are records `first_seq, first_seq + 1, ...` of one chain, each linked to
/// the one before, the first linked to `prev` (use [`GENESIS`] for a chain's beginning). Returns
/// the last hash.
pub fn verify_chain<'a>(
    chain: &str,
    first_seq: u64,
    prev: [u8; 32],
    bodies: impl IntoIterator<Item = &'a str>,
) -> Result<[u8; 32], ChainError> {
    let mut prev = prev;
    for (expected, (index, body)) in (first_seq..).zip(bodies.into_iter().enumerate()) {
        let record: SealedRecord =
            serde_json::from_str(body).map_err(|_| ChainError::Unreadable { index })?;
        if record.chain != chain {
            return Err(ChainError::WrongChain {
                index,
                expected: chain.to_owned(),
                found: record.chain,
            });
        }
        if record.seq != expected {
            return Err(ChainError::Sequence {
                index,
                expected,
                found: record.seq,
            });
        }
        if record.prev_hash != b64url(prev) {
            return Err(ChainError::Link {
                index,
                seq: record.seq,
            });
        }
        prev = record_hash(body);
    }
    Ok(prev)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn draft(n: i64) -> AuditDraft {
        AuditDraft {
            time: UnixTime(n),
            request_id: Some(format!("req-{n}")),
            actor: Actor::System,
            event: AuditEvent::SigningKeyCreated {
                kid: format!("k{n}"),
            },
        }
    }

    fn chain(n: u64) -> Vec<String> {
        let mut prev = GENESIS;
        (1..=n)
            .map(|seq| {
                let (body, hash) = seal("c", seq, &prev, &draft(seq as i64));
                prev = hash;
                body
            })
            .collect()
    }

    #[test]
    fn a_sealed_chain_verifies() {
        let bodies = chain(5);
        assert!(verify_chain("c", 1, GENESIS, bodies.iter().map(String::as_str)).is_ok());
    }

    #[test]
    fn tampering_is_named() {
        let bodies = chain(5);
        let check = |b: &[String]| verify_chain("c", 1, GENESIS, b.iter().map(String::as_str));

        let mut altered = bodies.clone();
        altered[1] = altered[1].replace("k2", "k9");
        assert_eq!(check(&altered), Err(ChainError::Link { index: 2, seq: 3 }));

        let mut removed = bodies.clone();
        removed.remove(2);
        assert_eq!(
            check(&removed),
            Err(ChainError::Sequence {
                index: 2,
                expected: 3,
                found: 4
            })
        );

        let mut reordered = bodies.clone();
        reordered.swap(1, 2);
        assert_eq!(
            check(&reordered),
            Err(ChainError::Sequence {
                index: 1,
                expected: 2,
                found: 3
            })
        );

        let mut junk = bodies.clone();
        junk[0].push('x');
        assert_eq!(check(&junk), Err(ChainError::Unreadable { index: 0 }));

        assert!(matches!(
            verify_chain("other", 1, GENESIS, bodies.iter().map(String::as_str)),
            Err(ChainError::WrongChain { index: 0, .. })
        ));
    }

    #[test]
    fn slots_parse() {
        assert_eq!(KeySlot::parse("Primary"), Some(KeySlot::Key1));
        assert_eq!(KeySlot::parse("KEY2"), Some(KeySlot::Key2));
        assert_eq!(KeySlot::parse("3"), None);
        assert_eq!(KeySlot::Key2.to_string(), "Key2");
    }
}
