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
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use latch_core::audit::{seal, verify_chain, AuditDraft, ChainError, GENESIS};
use latch_core::checkpoint::Frontier;
use latch_core::merkle::{leaf_hash, Hash};

use crate::journal::format::{
    BatchBuilder, FormatError, Mark, SegmentHeader, BATCH_HEAD_BYTES, HEADER_BYTES, MAX_BATCH_BYTES,
};
use crate::JournalError;

pub mod format;
#[cfg(test)]
mod tests;

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
    /// The last record's hash ([`GENESIS`] for none).
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

/// The file of the segment whose first record is `first_seq`.
pub fn segment_path(dir: &Path, first_seq: u64) -> PathBuf {
    dir.join(format!("{first_seq:020}.seg"))
}

/// The segments in `dir`, by first sequence number.
pub fn segments(dir: &Path) -> Result<Vec<(u64, PathBuf)>, JournalError> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io("cannot list", dir))? {
        let entry = entry.map_err(io("cannot list", dir))?;
        let name = entry.file_name();
        let Some(stem) = name.to_str().and_then(|n| n.strip_suffix(".seg")) else {
            continue;
        };
        if stem.len() == 20 {
            if let Ok(first) = stem.parse::<u64>() {
                out.push((first, entry.path()));
            }
        }
    }
    out.sort();
    Ok(out)
}

fn sync_dir(dir: &Path) -> Result<(), JournalError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io("cannot sync", dir))
}

fn corrupt(path: &Path, offset: u64, seq: Option<u64>, reason: impl Into<String>) -> JournalError {
    JournalError::Corrupt {
        path: path.to_owned(),
        offset,
        seq,
        reason: reason.into(),
    }
}

fn private_options() -> OpenOptions {
    let mut options = OpenOptions::new();
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options
}

/// Writes a new segment (header, then zeros to `size`) under a temporary name, syncs it, and
/// moves it into place: a segment with its final name always has a whole header.
fn create_segment(dir: &Path, header: &SegmentHeader, size: u64) -> Result<File, JournalError> {
    let path = segment_path(dir, header.first_seq);
    let tmp = path.with_extension("seg.tmp");
    let bytes = header
        .encode()
        .ok_or_else(|| JournalError::Invalid(format!("chain name '{}'", header.chain)))?;
    let file = private_options()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&tmp)
        .map_err(io("cannot create", &tmp))?;
    file.write_all_at(&bytes, 0)
        .map_err(io("cannot write", &tmp))?;
    // Zeros written, not a sparse hole: a sync then writes data, not the file's block map.
    let zeros = vec![0u8; 64 << 10];
    let mut at = HEADER_BYTES as u64;
    while at < size {
        let n = usize::try_from((size - at).min(zeros.len() as u64)).unwrap_or(zeros.len());
        file.write_all_at(&zeros[..n], at)
            .map_err(io("cannot preallocate", &tmp))?;
        at += n as u64;
    }
    file.sync_all().map_err(io("cannot sync", &tmp))?;
    std::fs::rename(&tmp, &path).map_err(io("cannot rename", &tmp))?;
    sync_dir(dir)?;
    Ok(file)
}

/// How long an append waits for another process's append to finish before it fails: an
/// append holds the lock for one write and one sync, so only a process that is stuck holds it
/// this long.
pub const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// The directory's lock, held while it lives.
struct Locked<'a>(&'a File);

impl Locked<'_> {
    /// Takes the lock (shared, for reading, or exclusive), waiting at most [`LOCK_WAIT`].
    fn take<'a>(file: &'a File, dir: &Path, shared: bool) -> Result<Locked<'a>, JournalError> {
        use rustix::fs::FlockOperation::{NonBlockingLockExclusive, NonBlockingLockShared};
        let operation = if shared {
            NonBlockingLockShared
        } else {
            NonBlockingLockExclusive
        };
        let started = std::time::Instant::now();
        let mut pause = std::time::Duration::from_micros(50);
        loop {
            match rustix::fs::flock(file, operation) {
                Ok(()) => return Ok(Locked(file)),
                Err(rustix::io::Errno::WOULDBLOCK) if started.elapsed() < LOCK_WAIT => {
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(std::time::Duration::from_millis(10));
                }
                Err(rustix::io::Errno::WOULDBLOCK) => {
                    return Err(JournalError::Busy(dir.to_owned()))
                }
                Err(e) => return Err(io("cannot lock", dir)(e.into())),
            }
        }
    }
}

impl Drop for Locked<'_> {
    fn drop(&mut self) {
        let _ = rustix::fs::flock(self.0, rustix::fs::FlockOperation::Unlock);
    }
}

fn file_len(file: &File, path: &Path) -> Result<u64, JournalError> {
    Ok(file.metadata().map_err(io("cannot stat", path))?.len())
}

/// Reads `len` bytes at `offset`, or fewer at the end of the file.
fn read_at(file: &File, path: &Path, offset: u64, len: usize) -> Result<Vec<u8>, JournalError> {
    let mut out = vec![0u8; len];
    let mut got = 0;
    while got < len {
        match file.read_at(&mut out[got..], offset + got as u64) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(io("cannot read", path)(e)),
        }
    }
    out.truncate(got);
    Ok(out)
}

/// What a position in a segment holds, read from the file.
enum Found {
    Empty,
    End(u64),
    Batch {
        first_seq: u64,
        payloads: Vec<Vec<u8>>,
        len: u64,
    },
}

fn read_mark(
    file: &File,
    path: &Path,
    offset: u64,
) -> Result<Result<Found, FormatError>, JournalError> {
    let head = read_at(file, path, offset, BATCH_HEAD_BYTES)?;
    if head.len() < BATCH_HEAD_BYTES {
        return Ok(if head.iter().all(|&b| b == 0) {
            Ok(Found::Empty)
        } else {
            Err(FormatError::Short)
        });
    }
    let batch = match format::mark(&head) {
        Err(e) => return Ok(Err(e)),
        Ok(Mark::Empty) => return Ok(Ok(Found::Empty)),
        Ok(Mark::End(next)) => return Ok(Ok(Found::End(next))),
        Ok(Mark::Batch(batch)) => batch,
    };
    let body = read_at(file, path, offset + BATCH_HEAD_BYTES as u64, batch.body_len)?;
    if body.len() < batch.body_len {
        return Ok(Err(FormatError::Short));
    }
    if let Err(e) = batch.check(&head, &body) {
        return Ok(Err(e));
    }
    Ok(
        format::payloads(&batch, &body).map(|payloads| Found::Batch {
            first_seq: batch.first_seq,
            payloads,
            len: (BATCH_HEAD_BYTES + batch.body_len) as u64,
        }),
    )
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
    /// Opens the journal of `chain` in `dir` (created, owner-only, if missing), recovering as
    /// the module says. `expected` is the last checkpoint signed for the chain, if any.
    pub fn open(
        dir: &Path,
        chain: &str,
        options: Options,
        expected: Option<Expected>,
    ) -> Result<(Journal, Recovery), JournalError> {
        let genesis = Start {
            first_seq: 1,
            prev_hash: GENESIS,
            frontier: Frontier::default(),
        };
        Self::open_from(dir, chain, options, expected, genesis)
    }

    /// Like [`Journal::open`], but a journal made new starts at `start` rather than at the
    /// chain's beginning: for a chain whose first records were archived before it had a journal.
    pub fn open_from(
        dir: &Path,
        chain: &str,
        options: Options,
        expected: Option<Expected>,
        start: Start,
    ) -> Result<(Journal, Recovery), JournalError> {
        let mut builder = std::fs::DirBuilder::new();
        builder.recursive(true);
        std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
        builder.create(dir).map_err(io("cannot create", dir))?;
        let lock_path = dir.join("LOCK");
        let lock = std::sync::Arc::new(
            private_options()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(&lock_path)
                .map_err(io("cannot open", &lock_path))?,
        );
        let options = Options {
            segment_bytes: options.segment_bytes.max(2 * HEADER_BYTES as u64),
        };
        let held = Locked::take(&lock, dir, false)?;
        // A segment still under its temporary name was never used.
        for entry in std::fs::read_dir(dir)
            .map_err(io("cannot list", dir))?
            .flatten()
        {
            if entry.file_name().to_string_lossy().ends_with(".seg.tmp") {
                let _ = std::fs::remove_file(entry.path());
            }
        }
        let found = segments(dir)?;
        let mut recovery = Recovery {
            segments: found.len(),
            ..Recovery::default()
        };
        let (path, file, header) = match found.last() {
            None => {
                if start.frontier.size().checked_add(1) != Some(start.first_seq) {
                    return Err(JournalError::Invalid(format!(
                        "a chain cannot start at record {} after {} records",
                        start.first_seq,
                        start.frontier.size()
                    )));
                }
                let header = SegmentHeader {
                    chain: chain.to_owned(),
                    first_seq: start.first_seq,
                    prev_hash: start.prev_hash,
                    frontier: start.frontier,
                };
                let file = create_segment(dir, &header, options.segment_bytes)?;
                recovery.segments = 1;
                (segment_path(dir, header.first_seq), file, header)
            }
            Some((first, path)) => {
                let file = OpenOptions::new()
                    .read(true)
                    .write(true)
                    .open(path)
                    .map_err(io("cannot open", path))?;
                let bytes = read_at(&file, path, 0, HEADER_BYTES)?;
                let header = SegmentHeader::decode(&bytes)
                    .map_err(|e| corrupt(path, 0, None, format!("segment header: {e}")))?;
                if header.first_seq != *first {
                    return Err(corrupt(
                        path,
                        0,
                        None,
                        format!("its header says it starts at {}", header.first_seq),
                    ));
                }
                if header.chain != chain {
                    return Err(corrupt(
                        path,
                        0,
                        None,
                        format!("it belongs to chain '{}', not '{chain}'", header.chain),
                    ));
                }
                (path.clone(), file, header)
            }
        };
        let capacity = file_len(&file, &path)?;
        let mut journal = Journal {
            dir: dir.to_owned(),
            chain: chain.to_owned(),
            options,
            file,
            path,
            offset: HEADER_BYTES as u64,
            capacity,
            head: Head {
                size: header.first_seq - 1,
                last_hash: header.prev_hash,
                frontier: header.frontier,
            },
            stopped: None,
            lock: lock.clone(),
            scratch: Vec::new(),
        };
        journal.check_expected(expected)?;
        let torn = journal.scan(expected)?;
        recovery.size = journal.head.size;
        if let Some(e) = expected {
            if e.size > journal.head.size {
                return Err(corrupt(
                    &journal.path,
                    journal.offset,
                    Some(journal.head.size + 1),
                    format!(
                        "the journal ends at record {}, but a checkpoint over {} records was signed",
                        journal.head.size, e.size
                    ),
                ));
            }
        }
        // Only now, with everything else found in order, is anything changed.
        if let Some(tail) = torn {
            recovery.torn = Some(set_aside(
                &journal.path,
                &tail,
                journal.offset,
                journal.head.size,
            )?);
        }
        drop(held);
        Ok((journal, recovery))
    }

    fn check_expected(&self, expected: Option<Expected>) -> Result<(), JournalError> {
        match expected {
            Some(e) if self.head.size == e.size && self.head.root() != e.root => Err(corrupt(
                &self.path,
                self.offset,
                Some(e.size),
                format!(
                    "the records up to {} do not have the root the last signed checkpoint has",
                    e.size
                ),
            )),
            _ => Ok(()),
        }
    }

    /// Recovery's scan of the last segment: like [`Journal::catch_up`], but a batch that does
    /// not check at the very end is a torn tail, set aside.
    fn scan(&mut self, expected: Option<Expected>) -> Result<Option<Vec<u8>>, JournalError> {
        loop {
            match read_mark(&self.file, &self.path, self.offset)? {
                Ok(Found::Empty) => {
                    // The end of the data, unless something was written past it.
                    return self.torn_tail(None);
                }
                Err(e) => return self.torn_tail(Some(e)),
                Ok(found) => {
                    self.take(found)?;
                    self.check_expected(expected)?;
                }
            }
        }
    }

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
                let bytes = read_at(&file, &path, 0, HEADER_BYTES)?;
                let found = SegmentHeader::decode(&bytes)
                    .map_err(|e| corrupt(&path, 0, None, format!("segment header: {e}")))?;
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

    /// At the end of the data: anything non-zero past it is a torn tail (returned) if it lies
    /// within the reach of one write, and damage otherwise.
    fn torn_tail(&self, error: Option<FormatError>) -> Result<Option<Vec<u8>>, JournalError> {
        let rest = read_at(
            &self.file,
            &self.path,
            self.offset,
            usize::try_from(self.capacity.saturating_sub(self.offset)).unwrap_or(usize::MAX),
        )?;
        let Some(last) = rest.iter().rposition(|&b| b != 0) else {
            return Ok(None);
        };
        // Each batch is written and synced alone, so a torn write is the last thing in the
        // segment: a whole batch after the damage, or data beyond one batch's reach, means
        // the damage is to records that were acknowledged.
        if last >= BATCH_HEAD_BYTES + MAX_BATCH_BYTES || whole_batch_in(&rest[1..]) {
            return Err(corrupt(
                &self.path,
                self.offset,
                Some(self.head.size + 1),
                match error {
                    Some(e) => format!("batch: {e}, and more data follows it"),
                    None => "data follows the end of the records".to_owned(),
                },
            ));
        }
        let mut rest = rest;
        rest.truncate(last + 1);
        Ok(Some(rest))
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

    /// Seals `drafts` as the next records, writes them, and syncs once. On success every record
    /// is durable; on failure none is counted, and a failed read, write or sync stops the
    /// journal.
    pub fn append(&mut self, drafts: &[AuditDraft]) -> Result<Vec<Appended>, JournalError> {
        if drafts.is_empty() && self.stopped.is_none() {
            return Ok(Vec::new());
        }
        self.locked(|journal| journal.append_locked(drafts))
    }

    /// Damage found stops the journal. (A failed write or sync stops it where it happens; a
    /// segment that cannot be made yet, or a lock held too long, fails this append only.)
    fn stop_if_damaged<T>(&mut self, result: Result<T, JournalError>) -> Result<T, JournalError> {
        if let Err(e @ JournalError::Corrupt { .. }) = &result {
            self.stopped = Some(e.to_string());
        }
        result
    }

    /// Appends records sealed elsewhere (moving a chain into the journal), exactly as they
    /// are: each must be the chain's next record, linked to the one before.
    pub fn append_sealed(&mut self, bodies: &[String]) -> Result<(), JournalError> {
        self.locked(|journal| journal.append_sealed_locked(bodies))
    }

    fn append_sealed_locked(&mut self, bodies: &[String]) -> Result<(), JournalError> {
        let mut rest = bodies;
        while !rest.is_empty() {
            let mut batch = BatchBuilder::new(self.head.size + 1);
            let mut taken = 0;
            while taken < rest.len() && batch.push(rest[taken].as_bytes()) {
                taken += 1;
            }
            if taken == 0 {
                return Err(JournalError::Invalid(format!(
                    "record {} is larger than a record may be",
                    self.head.size + 1
                )));
            }
            let mut head = self.head.clone();
            let payloads: Vec<Vec<u8>> = rest[..taken]
                .iter()
                .map(|b| b.as_bytes().to_vec())
                .collect();
            extend(&self.chain, &mut head, self.head.size + 1, &payloads).map_err(
                |(seq, why)| {
                    JournalError::Invalid(format!(
                        "record {seq} cannot be moved into the journal: {why}"
                    ))
                },
            )?;
            self.write_batch(batch.finish())?;
            self.head = head;
            rest = &rest[taken..];
        }
        Ok(())
    }

    /// Writes as many records as one batch holds, and syncs; the rest in the batches after.
    /// One batch a write: a crash can tear only the batch being written, never one before it.
    fn append_locked(&mut self, drafts: &[AuditDraft]) -> Result<Vec<Appended>, JournalError> {
        let mut out = Vec::with_capacity(drafts.len());
        let mut rest = drafts;
        while !rest.is_empty() {
            let taken = self.append_batch(rest, &mut out)?;
            rest = &rest[taken..];
        }
        Ok(out)
    }

    /// Writes the first records of `drafts` that fit in one batch; returns how many.
    fn append_batch(
        &mut self,
        drafts: &[AuditDraft],
        out: &mut Vec<Appended>,
    ) -> Result<usize, JournalError> {
        let mut head = self.head.clone();
        let mut batch = BatchBuilder::in_buffer(std::mem::take(&mut self.scratch), head.size + 1);
        let mut appended = Vec::with_capacity(drafts.len());
        for draft in drafts {
            let seq = head.size + 1;
            let (body, hash) = seal(&self.chain, seq, &head.last_hash, draft);
            if !batch.push(body.as_bytes()) {
                if batch.is_empty() {
                    return Err(JournalError::Invalid(format!(
                        "an audit record of {} bytes is larger than a record may be",
                        body.len()
                    )));
                }
                break;
            }
            let leaf = leaf_hash(body.as_bytes());
            head.frontier.push(leaf);
            head.size = seq;
            head.last_hash = hash;
            appended.push(Appended { seq, leaf });
        }
        let written = self.write_batch(batch.finish());
        self.scratch = batch.into_buffer();
        written?;
        self.head = head;
        let taken = appended.len();
        out.extend(appended);
        Ok(taken)
    }

    /// Writes one batch at the end (in a new segment if it would not fit) and syncs it.
    fn write_batch(&mut self, bytes: &[u8]) -> Result<(), JournalError> {
        let len = bytes.len() as u64;
        if self.offset + len + BATCH_HEAD_BYTES as u64 > self.capacity
            && self.offset > HEADER_BYTES as u64
        {
            self.roll()?;
        }
        self.write_synced(bytes)?;
        self.offset += len;
        self.capacity = self.capacity.max(self.offset);
        Ok(())
    }

    /// Writes `bytes` at the end of the open segment and syncs them. A failure stops the
    /// journal: what a failed write or sync left on disk is known only to a recovery.
    fn write_synced(&mut self, bytes: &[u8]) -> Result<(), JournalError> {
        let written = self
            .file
            .write_all_at(bytes, self.offset)
            .map_err(io("cannot write", &self.path))
            .and_then(|()| self.file.sync_data().map_err(io("cannot sync", &self.path)));
        if let Err(e) = &written {
            self.stopped = Some(e.to_string());
        }
        written
    }

    /// Ends the open segment (the mark synced first, so that another process finds the way)
    /// and starts the next.
    /// If the next segment cannot be made (a full disk), the append fails and the next one
    /// tries again from the mark.
    fn roll(&mut self) -> Result<(), JournalError> {
        self.write_synced(&format::end_mark(self.head.size + 1))?;
        self.next_segment()
    }
}

/// Reads the records of the chain in `dir` after sequence number `after`, in order, through
/// `until` at most (or to the end), handing each sequence number and body to `each`; returns
/// the last sequence number read past, which is less than `until` (or even than `after`) when
/// the journal ends before it. Checksums are checked as the bytes are read; a record that fails one, or a
/// gap, is an error naming where. The journal is read under a shared lock, so an append in
/// progress is never seen half-written or before its sync.
pub fn read(
    dir: &Path,
    after: u64,
    until: Option<u64>,
    mut each: impl FnMut(u64, &str) -> Result<(), JournalError>,
) -> Result<u64, JournalError> {
    let lock_path = dir.join("LOCK");
    let lock = File::open(&lock_path).map_err(io("cannot open", &lock_path))?;
    let _held = Locked::take(&lock, dir, true)?;
    let found = segments(dir)?;
    let start = found.partition_point(|(first, _)| *first <= after + 1);
    let Some(index) = start.checked_sub(1) else {
        return Err(corrupt(
            dir,
            0,
            Some(after + 1),
            "no segment holds this record (archived, or removed)",
        ));
    };
    let mut seq = found[index].0;
    for (first, path) in &found[index..] {
        if *first != seq {
            return Err(corrupt(
                path,
                0,
                Some(seq),
                format!("the segment holding record {seq} is missing"),
            ));
        }
        let file = File::open(path).map_err(io("cannot open", path))?;
        let mut offset = HEADER_BYTES as u64;
        loop {
            // A batch wholly before the records asked for is passed over by its head alone:
            // a page read from the middle of a segment does not unpack what it skips.
            if let Some(batch) = batch_before(&file, path, offset, seq, after)? {
                seq += u64::from(batch.count);
                offset += (BATCH_HEAD_BYTES + batch.body_len) as u64;
                continue;
            }
            match read_mark(&file, path, offset)? {
                Err(e) => return Err(corrupt(path, offset, Some(seq), format!("batch: {e}"))),
                Ok(Found::Empty | Found::End(_)) => break,
                Ok(Found::Batch {
                    first_seq,
                    payloads,
                    len,
                }) => {
                    if first_seq != seq {
                        return Err(corrupt(
                            path,
                            offset,
                            Some(first_seq),
                            format!("a batch starts at {first_seq}, expected {seq}"),
                        ));
                    }
                    for payload in &payloads {
                        if seq > after {
                            if until.is_some_and(|u| seq > u) {
                                return Ok(seq - 1);
                            }
                            let body = std::str::from_utf8(payload).map_err(|_| {
                                corrupt(path, offset, Some(seq), "a record is not UTF-8")
                            })?;
                            each(seq, body)?;
                        }
                        seq += 1;
                    }
                    offset += len;
                }
            }
        }
    }
    Ok(seq - 1)
}

/// The head of the batch at `offset` if it is one that starts at `seq` and ends at or before
/// `after`; `None` for anything else (read whole, and checked, by the caller).
fn batch_before(
    file: &File,
    path: &Path,
    offset: u64,
    seq: u64,
    after: u64,
) -> Result<Option<format::BatchHead>, JournalError> {
    if seq > after {
        return Ok(None);
    }
    let head = read_at(file, path, offset, BATCH_HEAD_BYTES)?;
    Ok(match format::mark(&head) {
        Ok(Mark::Batch(batch))
            if batch.first_seq == seq
                && seq
                    .checked_add(u64::from(batch.count) - 1)
                    .is_some_and(|last| last <= after) =>
        {
            Some(batch)
        }
        _ => None,
    })
}

/// Removes the segments of the chain in `dir` that hold only records up to `through` (archived
/// elsewhere); returns how many. The last segment always stays: the journal goes on from it.
pub fn remove_through(dir: &Path, through: u64) -> Result<usize, JournalError> {
    let lock_path = dir.join("LOCK");
    let lock = File::open(&lock_path).map_err(io("cannot open", &lock_path))?;
    let _held = Locked::take(&lock, dir, false)?;
    let found = segments(dir)?;
    let mut removed = 0;
    for pair in found.windows(2) {
        let ((_, path), (next_first, _)) = (&pair[0], &pair[1]);
        if *next_first <= through.saturating_add(1) {
            std::fs::remove_file(path).map_err(io("cannot remove", path))?;
            removed += 1;
        }
    }
    if removed > 0 {
        sync_dir(dir)?;
    }
    Ok(removed)
}

/// The batches of a segment found so far, each (first sequence number, offset, length), and the
/// offset where looking goes on.
type Batches = (Vec<(u64, u64, u64)>, u64);

/// Reads single records of one chain by sequence number, remembering where each batch of a
/// segment starts (24 bytes read a batch, the first time), so that a record costs one read of
/// its batch. For queries that pick records here and there.
#[derive(Debug)]
pub struct Locator {
    dir: PathBuf,
    /// Per segment (by first sequence number): the batches found so far (first sequence
    /// number, offset, length) and the offset where looking goes on.
    batches: std::collections::BTreeMap<u64, Batches>,
    /// The last batch read, whole.
    last: Option<(u64, Vec<Vec<u8>>)>,
}

impl Locator {
    /// A locator for the chain in `dir`.
    pub fn new(dir: &Path) -> Locator {
        Locator {
            dir: dir.to_owned(),
            batches: std::collections::BTreeMap::new(),
            last: None,
        }
    }

    /// The body of record `seq`, checksums checked; `None` if the journal does not hold it.
    pub fn get(&mut self, seq: u64) -> Result<Option<String>, JournalError> {
        if let Some((first, payloads)) = &self.last {
            if let Some(p) = seq
                .checked_sub(*first)
                .and_then(|i| payloads.get(usize::try_from(i).ok()?))
            {
                return utf8(&self.dir, seq, p).map(Some);
            }
        }
        let lock_path = self.dir.join("LOCK");
        let lock = File::open(&lock_path).map_err(io("cannot open", &lock_path))?;
        let _held = Locked::take(&lock, &self.dir, true)?;
        let found = segments(&self.dir)?;
        let Some((first, path)) = found.iter().rev().find(|(first, _)| *first <= seq) else {
            return Ok(None);
        };
        let file = File::open(path).map_err(io("cannot open", path))?;
        let (known, next) = self
            .batches
            .entry(*first)
            .or_insert_with(|| (Vec::new(), HEADER_BYTES as u64));
        // Batches not seen yet, up to the one holding `seq` (or the end).
        while known.last().is_none_or(|&(f, _, _)| f <= seq) {
            let head = read_at(&file, path, *next, BATCH_HEAD_BYTES)?;
            if head.len() < BATCH_HEAD_BYTES {
                break;
            }
            match format::mark(&head) {
                Ok(Mark::Batch(batch)) => {
                    let len = (BATCH_HEAD_BYTES + batch.body_len) as u64;
                    known.push((batch.first_seq, *next, len));
                    *next += len;
                }
                Ok(Mark::Empty | Mark::End(_)) => break,
                Err(e) => return Err(corrupt(path, *next, None, format!("batch: {e}"))),
            }
        }
        let at = known.partition_point(|&(f, _, _)| f <= seq);
        let Some(&(batch_first, offset, _)) = at.checked_sub(1).and_then(|i| known.get(i)) else {
            return Ok(None);
        };
        match read_mark(&file, path, offset)? {
            Ok(Found::Batch {
                first_seq,
                payloads,
                ..
            }) if first_seq == batch_first => {
                let body = seq
                    .checked_sub(first_seq)
                    .and_then(|i| payloads.get(usize::try_from(i).ok()?))
                    .map(|p| utf8(path, seq, p))
                    .transpose()?;
                self.last = Some((first_seq, payloads));
                Ok(body)
            }
            Ok(_) => Err(corrupt(
                path,
                offset,
                Some(batch_first),
                "the batch is no longer where it was",
            )),
            Err(e) => Err(corrupt(
                path,
                offset,
                Some(batch_first),
                format!("batch: {e}"),
            )),
        }
    }
}

fn utf8(path: &Path, seq: u64, payload: &[u8]) -> Result<String, JournalError> {
    String::from_utf8(payload.to_vec())
        .map_err(|_| corrupt(path, 0, Some(seq), "a record is not UTF-8"))
}

/// Where the next batch of the chain in `dir` goes: the last segment, and the offset after its
/// last batch.
pub fn end(dir: &Path) -> Result<(PathBuf, u64), JournalError> {
    let found = segments(dir)?;
    let (_, path) = found
        .last()
        .ok_or_else(|| corrupt(dir, 0, None, "no segment"))?;
    let file = File::open(path).map_err(io("cannot open", path))?;
    let mut offset = HEADER_BYTES as u64;
    loop {
        match read_mark(&file, path, offset)? {
            Ok(Found::Batch { len, .. }) => offset += len,
            Ok(Found::Empty | Found::End(_)) | Err(_) => return Ok((path.clone(), offset)),
        }
    }
}

/// True if a batch that checks starts anywhere in `bytes`.
fn whole_batch_in(bytes: &[u8]) -> bool {
    (0..bytes.len().saturating_sub(BATCH_HEAD_BYTES)).any(|i| {
        format::packed_magic(&bytes[i..]).is_some()
            && match format::BatchHead::decode(&bytes[i..]) {
                Ok(Some(head)) => bytes
                    .get(i + BATCH_HEAD_BYTES..i + BATCH_HEAD_BYTES + head.body_len)
                    .is_some_and(|body| head.check(&bytes[i..], body).is_ok()),
                _ => false,
            }
    })
}

/// Keeps the bytes of a torn tail (`tail`, found at `offset` of the segment at `path`, after
/// record `size`) in a file of their own, then zeroes them in the segment.
fn set_aside(
    path: &Path,
    tail: &[u8],
    offset: u64,
    size: u64,
) -> Result<(PathBuf, usize), JournalError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let kept = dir.join(format!("torn-{:020}-{offset}.bin", size + 1));
    let file = private_options()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&kept)
        .map_err(io("cannot create", &kept))?;
    file.write_all_at(tail, 0)
        .and_then(|()| file.sync_all())
        .map_err(io("cannot write", &kept))?;
    let segment = OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(io("cannot open", path))?;
    segment
        .write_all_at(&vec![0u8; tail.len()], offset)
        .and_then(|()| segment.sync_data())
        .map_err(io("cannot zero the torn tail of", path))?;
    sync_dir(dir)?;
    tracing::warn!(
        target: "latch::audit",
        segment = %path.display(),
        offset,
        bytes = tail.len(),
        kept = %kept.display(),
        "the journal ended in a torn write (records never acknowledged); its bytes were set aside"
    );
    Ok((kept, tail.len()))
}
