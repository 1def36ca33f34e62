//! Reading a chain's records in order, from any point.

use std::fs::File;
use std::path::{Path, PathBuf};

use super::format::{self, Mark, BATCH_HEAD_BYTES, HEADER_BYTES};
use super::lock::Locked;
use super::segment::{read_at, read_mark, segments, Found};
use super::{corrupt, io};
use crate::JournalError;

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
