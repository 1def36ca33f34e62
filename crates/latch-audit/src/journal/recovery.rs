//! Opening a journal: finding where the chain ends, and setting a torn last write aside.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use latch_core::audit::GENESIS;
use latch_core::checkpoint::Frontier;

use super::format::{
    self, FormatError, SegmentHeader, BATCH_HEAD_BYTES, HEADER_BYTES, MAX_BATCH_BYTES,
};
use super::lock::Locked;
use super::segment::{
    create_segment, file_len, private_options, read_at, read_header, read_mark, segment_path,
    segments, sync_dir, Found,
};
use super::{corrupt, io, Expected, Head, Journal, Options, Recovery, Start};
use crate::JournalError;

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
        let lock = Arc::new(make_directory(dir)?);
        let options = Options {
            segment_bytes: options.segment_bytes.max(2 * HEADER_BYTES as u64),
        };
        let held = Locked::take(&lock, dir, false)?;
        remove_unfinished_segments(dir)?;
        let found = segments(dir)?;
        let mut recovery = Recovery {
            segments: found.len(),
            ..Recovery::default()
        };
        let (path, file, header) = match found.last() {
            None => {
                let (path, file, header) = first_segment(dir, chain, options, start)?;
                recovery.segments = 1;
                (path, file, header)
            }
            Some((first, path)) => {
                let (file, header) = last_segment(path, *first, chain)?;
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
        journal.check_reaches(expected)?;
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

    /// The records must reach the last signed checkpoint.
    fn check_reaches(&self, expected: Option<Expected>) -> Result<(), JournalError> {
        match expected {
            Some(e) if e.size > self.head.size => Err(corrupt(
                &self.path,
                self.offset,
                Some(self.head.size + 1),
                format!(
                    "the journal ends at record {}, but a checkpoint over {} records was signed",
                    self.head.size, e.size
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
}

/// Makes `dir` (owner-only) if it is missing, and opens its lock file.
fn make_directory(dir: &Path) -> Result<File, JournalError> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir).map_err(io("cannot create", dir))?;
    let lock_path = dir.join("LOCK");
    private_options()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&lock_path)
        .map_err(io("cannot open", &lock_path))
}

/// Removes the segments still under their temporary name: they were never used.
fn remove_unfinished_segments(dir: &Path) -> Result<(), JournalError> {
    for entry in std::fs::read_dir(dir)
        .map_err(io("cannot list", dir))?
        .flatten()
    {
        if entry.file_name().to_string_lossy().ends_with(".seg.tmp") {
            let _ = std::fs::remove_file(entry.path());
        }
    }
    Ok(())
}

/// Makes the first segment of a new journal, starting at `start`.
fn first_segment(
    dir: &Path,
    chain: &str,
    options: Options,
    start: Start,
) -> Result<(PathBuf, File, SegmentHeader), JournalError> {
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
    Ok((segment_path(dir, header.first_seq), file, header))
}

/// Opens the last segment (named for record `first`) and checks that its header is of `chain`
/// and starts where its name says.
fn last_segment(
    path: &Path,
    first: u64,
    chain: &str,
) -> Result<(File, SegmentHeader), JournalError> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .map_err(io("cannot open", path))?;
    let header = read_header(&file, path)?;
    if header.first_seq != first {
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
    Ok((file, header))
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
