//! What an audit record is indexed by, read from its draft or from its sealed body: the same
//! for both backends, so that an index row is checked against its record the same way.

use latch_core::audit::{AuditDraft, AuditIndex, SealedRecord};
use latch_core::merkle::leaf_hash;

use latch_audit::AuditQuery;

use crate::{Result, StoreError};

/// What a record's index row says (names as text; a backend may number them).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Fields {
    pub(crate) time: i64,
    pub(crate) index: AuditIndex,
    pub(crate) features: Option<String>,
    pub(crate) operation: Option<String>,
    pub(crate) leaf: [u8; 32],
}

impl Fields {
    /// The fields of a record as it was appended: its draft, and the leaf hash of its body.
    pub(crate) fn of_draft(draft: &AuditDraft, leaf: [u8; 32]) -> Fields {
        let (features, operation) = draft.event.features_and_operation();
        Fields {
            time: draft.time.0,
            index: draft.event.index(),
            features,
            operation,
            leaf,
        }
    }

    /// The fields of the body stored as record `seq` of `chain`, with the body's link to the
    /// record before it (`prev_hash`, base64url). A body that does not parse, or that was
    /// sealed for another place in the log, is an error naming the record.
    pub(crate) fn of_body(chain: &str, seq: u64, body: &str) -> Result<(Fields, String)> {
        let bad = |why: &str| {
            StoreError::Corrupt(format!("audit log of chain {chain}, record {seq}: {why}"))
        };
        let record: SealedRecord =
            serde_json::from_str(body).map_err(|_| bad("not a valid audit record"))?;
        if record.chain != chain || record.seq != seq {
            return Err(bad("sealed for another place in the log"));
        }
        let (features, operation) = record.event.features_and_operation();
        let fields = Fields {
            time: record.time.0,
            index: record.event.index(),
            features,
            operation,
            leaf: leaf_hash(body.as_bytes()),
        };
        Ok((fields, record.prev_hash))
    }
}

/// The error for a body whose link to the record before it is broken.
pub(crate) fn broken_link(chain: &str, seq: u64) -> StoreError {
    StoreError::Corrupt(format!(
        "audit log of chain {chain}, record {seq}: its previous-hash link is broken"
    ))
}

/// A hash read back from the database (a leaf, a subtree root, a record's hash): 32 bytes, or
/// the database was written by something else.
pub(crate) fn stored_hash(bytes: Vec<u8>) -> Result<[u8; 32]> {
    bytes
        .try_into()
        .map_err(|_| StoreError::Corrupt("a stored audit hash is not 32 bytes".into()))
}

/// SQL conditions with their values: text ones, then times.
pub(crate) type Conditions = (Vec<(&'static str, String)>, Vec<(&'static str, i64)>);

/// The filters given, as SQL conditions each waiting for one value: text values, then
/// times. Both backends build their `WHERE` from this.
pub(crate) fn conditions(query: &AuditQuery) -> Conditions {
    let mut texts = Vec::new();
    let mut add = |clause, value: Option<String>| {
        if let Some(v) = value {
            texts.push((clause, v));
        }
    };
    add("chain =", query.chain.clone());
    add(
        "isv =",
        query.isv.as_ref().map(|v| v.canonical().to_owned()),
    );
    add(
        "target =",
        query.target.as_ref().map(|v| v.canonical().to_owned()),
    );
    add("jti =", query.jti.clone());
    add("kind =", query.kind.clone());
    add("outcome =", query.outcome.clone());
    add("operation =", query.operation.clone());
    add(
        "(',' || features || ',') LIKE",
        query.feature.map(|f| format!("%,{},%", f.as_str())),
    );
    let times = [("time >=", query.from), ("time <", query.to)]
        .into_iter()
        .filter_map(|(clause, t)| t.map(|t| (clause, t.0)))
        .collect();
    (texts, times)
}
