//! Reading single records by sequence number.

use std::fs::File;
use std::path::{Path, PathBuf};

use super::format::{self, Mark, BATCH_HEAD_BYTES, HEADER_BYTES};
use super::lock::Locked;
use super::segment::{read_at, read_mark, segments, Found};
use super::{corrupt, io};
use crate::JournalError;

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
