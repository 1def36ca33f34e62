//! The append-only journal of one audit chain.
//!
//! A chain lives in a directory of segment files, `{first_seq:020}.seg`, each preallocated with
//! zeros and starting with a header that carries what came before it (sequence number, previous
//! hash, Merkle frontier): a segment can be read, and the journal reopened, without reading the
//! segments before it. [`Journal::append`] seals a group of drafts into records, extends the hash
//! chain and the frontier in memory, writes the group at the end of the open segment and syncs
//! it once. Only then are the records durable, and only then does the in-memory state move.
//!
//! A write or sync that fails leaves the journal stopped: every later append fails too. After a
//! failed `fdatasync` the kernel may have dropped the dirty pages and cleared the error, so a
//! retry could report success for bytes that are not on disk (the "fsyncgate" lesson). The
//! process must be restarted, and recovery reads what is really there.
//!
//! [`Journal::open`] recovers: it reads the last segment's header and scans its batches. A batch
//! that does not check (its CRC, its records' CRCs, sequence numbers, chain links) is a torn
//! tail only if it is the last thing in the segment, within the reach of one write; its bytes
//! are kept aside in `torn-{seq}-{offset}.bin`, zeroed in the segment, and the journal goes on
//! from the last good batch. Anything else that does not fit (damage followed by more data, a
//! segment header that does not check, a signed checkpoint the records do not reach or match)
//! refuses to open and says where.

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};

use latch_core::audit::{verify_chain, ChainError};
use latch_core::checkpoint::Frontier;
use latch_core::merkle::{leaf_hash, Hash};

use crate::journal::format::{SegmentHeader, HEADER_BYTES};
use crate::journal::lock::Locked;
use crate::journal::segment::{create_segment, file_len, read_header, read_mark, Found};
use crate::JournalError;

mod append;
pub mod format;
mod locator;
mod lock;
mod read;
mod recovery;
mod segment;
#[cfg(test)]
mod tests;

pub use locator::Locator;
pub use lock::LOCK_WAIT;
pub use read::{end, read};
pub use segment::{remove_through, segment_path, segments};

/// How a journal is laid out.
#[derive(Clone, Copy, Debug)]
pub struct Options {
    /// The size a segment is preallocated to; a new segment is started when a write would go
    /// past it.
    pub segment_bytes: u64,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            segment_bytes: 8 << 20,
        }
    }
}

/// A record made durable by [`Journal::append`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Appended {
    /// Its sequence number.
    pub seq: u64,
    /// Its Merkle leaf hash.
    pub leaf: Hash,
}

/// The end of a chain: what a checkpoint signs.
#[derive(Clone, Debug)]
pub struct Head {
    /// How many records.
    pub size: u64,
    /// The last record's hash ([`GENESIS`](latch_core::audit::GENESIS) for none).
    pub last_hash: [u8; 32],
    /// The Merkle frontier of all of them.
    pub frontier: Frontier,
}

impl Head {
    /// The Merkle root of the chain.
    pub fn root(&self) -> Hash {
        self.frontier.root()
    }
}

/// A signed size and root the journal must reach and match when it opens (the last checkpoint
/// the audit key signed, kept outside the journal).
#[derive(Clone, Copy, Debug)]
pub struct Expected {
    /// The checkpoint's size.
    pub size: u64,
    /// Its root.
    pub root: Hash,
}

/// Where a new journal starts.
#[derive(Clone, Debug)]
pub struct Start {
    /// Its first record's sequence number.
    pub first_seq: u64,
    /// The hash of the record before it.
    pub prev_hash: [u8; 32],
    /// The Merkle frontier of the records before it.
    pub frontier: Frontier,
}

/// What opening found.
#[derive(Clone, Debug, Default)]
pub struct Recovery {
    /// Records in the chain.
    pub size: u64,
    /// Segments in the directory.
    pub segments: usize,
    /// A torn tail that was set aside: where its bytes were kept, and how many.
    pub torn: Option<(PathBuf, usize)>,
}

/// One chain's journal, open for appending.
///
/// Several processes may hold a journal open (the service, and an administrator's command run
/// beside it): each append takes an exclusive lock on the directory, first reads what others
/// appended since (checking it as recovery does), then writes and syncs its own batch. Only the
/// holder of the lock writes, so the chain has one order.
#[derive(Debug)]
pub struct Journal {
    dir: PathBuf,
    chain: String,
    options: Options,
    file: File,
    /// The open segment.
    path: PathBuf,
    /// Where the next batch goes in `file`.
    offset: u64,
    /// The preallocated size of `file`.
    capacity: u64,
    head: Head,
    stopped: Option<String>,
    lock: std::sync::Arc<File>,
    /// The buffer batches are built in, kept from one to the next.
    scratch: Vec<u8>,
}

/// The error of an I/O call: what was done, to which file. Made only when the call fails (the
/// names are not copied on every call that succeeds).
fn io<'a>(what: &'a str, path: &'a Path) -> impl FnOnce(std::io::Error) -> JournalError + 'a {
    move |source| JournalError::Io {
        what: what.to_owned(),
        path: path.to_owned(),
        source,
    }
}

fn corrupt(path: &Path, offset: u64, seq: Option<u64>, reason: impl Into<String>) -> JournalError {
    JournalError::Corrupt {
        path: path.to_owned(),
        offset,
        seq,
        reason: reason.into(),
    }
}

/// Checks a batch's records against the chain so far (`head`), and extends `head` by them.
fn extend(
    chain: &str,
    head: &mut Head,
    first_seq: u64,
    payloads: &[Vec<u8>],
) -> Result<(), (u64, String)> {
    let expected = head.size + 1;
    if first_seq != expected {
        return Err((
            first_seq,
            format!("a batch starts at sequence number {first_seq}, expected {expected}"),
        ));
    }
    let mut bodies = Vec::with_capacity(payloads.len());
    for (i, p) in payloads.iter().enumerate() {
        bodies.push(
            std::str::from_utf8(p)
                .map_err(|_| (expected + i as u64, "a record is not UTF-8".to_owned()))?,
        );
    }
    let last =
        verify_chain(chain, expected, head.last_hash, bodies.iter().copied()).map_err(|e| {
            let index = match &e {
                ChainError::Unreadable { index }
                | ChainError::WrongChain { index, .. }
                | ChainError::Sequence { index, .. }
                | ChainError::Link { index, .. } => *index,
            };
            (expected + index as u64, e.to_string())
        })?;
    for body in &bodies {
        head.frontier.push(leaf_hash(body.as_bytes()));
    }
    head.size += bodies.len() as u64;
    head.last_hash = last;
    Ok(())
}

impl Journal {
    /// Reads what other processes appended since this one last wrote or looked.
    fn catch_up(&mut self) -> Result<(), JournalError> {
        loop {
            match read_mark(&self.file, &self.path, self.offset)? {
                Ok(Found::Empty) => return Ok(()),
                Err(e) => {
                    return Err(corrupt(
                        &self.path,
                        self.offset,
                        Some(self.head.size + 1),
                        format!("batch: {e}"),
                    ))
                }
                Ok(found) => self.take(found)?,
            }
        }
    }

    /// Takes a checked batch into the head, or moves to the next segment at an end mark.
    fn take(&mut self, found: Found) -> Result<(), JournalError> {
        match found {
            Found::Empty => Ok(()),
            Found::Batch {
                first_seq,
                payloads,
                len,
            } => {
                extend(&self.chain, &mut self.head, first_seq, &payloads)
                    .map_err(|(seq, why)| corrupt(&self.path, self.offset, Some(seq), why))?;
                self.offset += len;
                Ok(())
            }
            Found::End(next) => {
                if next != self.head.size + 1 {
                    return Err(corrupt(
                        &self.path,
                        self.offset,
                        Some(next),
                        format!(
                            "the segment ends saying the chain goes on at {next}, after record {}",
                            self.head.size
                        ),
                    ));
                }
                self.next_segment()
            }
        }
    }

    /// Opens the segment after this one, making it if the process that ended this one did not
    /// live to.
    fn next_segment(&mut self) -> Result<(), JournalError> {
        let header = SegmentHeader {
            chain: self.chain.clone(),
            first_seq: self.head.size + 1,
            prev_hash: self.head.last_hash,
            frontier: self.head.frontier.clone(),
        };
        let path = segment_path(&self.dir, header.first_seq);
        let file = match OpenOptions::new().read(true).write(true).open(&path) {
            Ok(file) => {
                let found = read_header(&file, &path)?;
                if found.prev_hash != header.prev_hash
                    || found.frontier.root() != header.frontier.root()
                    || found.chain != header.chain
                {
                    return Err(corrupt(
                        &path,
                        0,
                        Some(header.first_seq),
                        "its header does not continue the segment before it",
                    ));
                }
                file
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                create_segment(&self.dir, &header, self.options.segment_bytes)?
            }
            Err(e) => return Err(io("cannot open", &path)(e)),
        };
        self.capacity = file_len(&file, &path)?;
        self.file = file;
        self.path = path;
        self.offset = HEADER_BYTES as u64;
        Ok(())
    }

    /// The chain.
    pub fn chain(&self) -> &str {
        &self.chain
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The end of the chain as this process last saw it.
    pub fn head(&self) -> &Head {
        &self.head
    }

    /// Reads what other processes appended, and returns the durable end of the chain.
    pub fn refresh(&mut self) -> Result<&Head, JournalError> {
        self.locked(|_| Ok(()))?;
        Ok(&self.head)
    }

    /// Runs `f` holding the directory's lock, after reading what other processes appended: the
    /// way in of every operation that writes or needs the durable end. A stopped journal runs
    /// nothing; damage found stops it.
    fn locked<T>(
        &mut self,
        f: impl FnOnce(&mut Self) -> Result<T, JournalError>,
    ) -> Result<T, JournalError> {
        if let Some(why) = &self.stopped {
            return Err(JournalError::Stopped(why.clone()));
        }
        let lock = std::sync::Arc::clone(&self.lock);
        let _held = Locked::take(&lock, &self.dir, false)?;
        let result = self.catch_up().and_then(|()| f(self));
        self.stop_if_damaged(result)
    }

    /// Why the journal stopped, if it did.
    pub fn stopped(&self) -> Option<&str> {
        self.stopped.as_deref()
    }

    /// Damage found stops the journal. (A failed write or sync stops it where it happens; a
    /// segment that cannot be made yet, or a lock held too long, fails this append only.)
    fn stop_if_damaged<T>(&mut self, result: Result<T, JournalError>) -> Result<T, JournalError> {
        if let Err(e @ JournalError::Corrupt { .. }) = &result {
            self.stopped = Some(e.to_string());
        }
        result
    }
}
