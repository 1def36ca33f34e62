//! The audit log of latch, as an append-only journal.
//!
//! Every issued token and every call that presents one waits for its audit record to be
//! durable. [`journal::Journal`] makes a group of records durable with one write and one sync at
//! the end of a preallocated segment file, and holds the end of the hash chain and the Merkle
//! frontier in memory, so that neither appending nor signing a checkpoint reads the log back.
//! `docs/audit-journal.md` describes the format and what recovery does with each kind of damage.

use std::path::PathBuf;

pub mod journal;

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
