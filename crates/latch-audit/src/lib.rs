//! The audit log of latch: its writer, its journal, checkpoints, proofs and exports.
//!
//! Every issued token and every call that presents one waits for its audit record to be
//! durable. Services hand a typed [`latch_core::audit::AuditDraft`] to the [`writer::AuditLog`]
//! and await it: one writer task makes every waiting record durable in one batch. Where the
//! records live is an [`AuditStore`]: on the embedded backend a [`journal::Journal`] per chain
//! (one write and one sync per batch at the end of a preallocated segment file, the end of the
//! hash chain and the Merkle frontier held in memory, so that neither appending nor signing a
//! checkpoint reads the log back), on PostgreSQL a table with only its primary key.
//! [`signer`] signs the chains' roots with a key of its own; [`export`] writes chains, with
//! their checkpoints, for offline verification, and archives their oldest records; [`proofs`]
//! answers consistency and inclusion proofs from stored subtrees.
//! `docs/audit-journal.md` describes the format and what recovery does with each kind of damage.

use std::path::PathBuf;

pub mod export;
pub mod journal;
pub mod proofs;
pub mod signer;
mod store;
pub mod writer;

pub use store::{AuditQuery, AuditStore, StoredAuditRecord};

/// Why an audit operation failed. The messages are those of the store's errors, which these
/// convert to and from.
#[derive(Clone, Debug, thiserror::Error)]
pub enum AuditError {
    /// The backend failed (I/O, a full disk, a closed connection) or the writer stopped:
    /// nothing was recorded, and whoever waited for the record must not act.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// What is stored is not what was written, or does not parse.
    #[error("store corrupt: {0}")]
    Corrupt(String),
    /// The request cannot be answered as asked (a proof beyond the log's end, an archiving
    /// another process did first); the message says why.
    #[error("{0}")]
    Refused(String),
}

/// Result of audit calls.
pub type Result<T, E = AuditError> = std::result::Result<T, E>;

/// Why the journal cannot do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    /// The file system refused: a full disk, a read-only mount, a failing device.
    #[error("{what} {}: {source}", path.display())]
    Io {
        /// What was being done.
        what: String,
        /// To which file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// Bytes that were written are not what the journal wrote, and the damage is not a torn
    /// last write: the journal will not open (or go on) until someone looks.
    #[error("the audit journal is damaged at {}, offset {offset}{}: {reason}", path.display(), seq.map(|s| format!(", record {s}")).unwrap_or_default())]
    Corrupt {
        /// The segment (or directory).
        path: PathBuf,
        /// Byte offset in it.
        offset: u64,
        /// The sequence number concerned, when known.
        seq: Option<u64>,
        /// What does not fit.
        reason: String,
    },
    /// An earlier write or sync failed: nothing is appended until the process restarts and
    /// recovery reads what is really on disk.
    #[error("the audit journal stopped after an earlier failure: {0}")]
    Stopped(String),
    /// Another process held the journal's lock for longer than an append may wait.
    #[error("the audit journal in {} is held by another process", .0.display())]
    Busy(PathBuf),
    /// A request the journal refuses without stopping (a record too large to frame).
    #[error("{0}")]
    Invalid(String),
}
