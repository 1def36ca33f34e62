//! The segment files of a journal: their names, making one, and reading what a place in one
//! holds.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use super::format::{self, FormatError, Mark, SegmentHeader, BATCH_HEAD_BYTES, HEADER_BYTES};
use super::lock::Locked;
use super::{corrupt, io};
use crate::JournalError;

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

pub(super) fn sync_dir(dir: &Path) -> Result<(), JournalError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io("cannot sync", dir))
}

pub(super) fn private_options() -> OpenOptions {
    let mut options = OpenOptions::new();
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options
}

/// Writes a new segment (header, then zeros to `size`) under a temporary name, syncs it, and
/// moves it into place: a segment with its final name always has a whole header.
pub(super) fn create_segment(
    dir: &Path,
    header: &SegmentHeader,
    size: u64,
) -> Result<File, JournalError> {
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

pub(super) fn file_len(file: &File, path: &Path) -> Result<u64, JournalError> {
    Ok(file.metadata().map_err(io("cannot stat", path))?.len())
}

/// Reads `len` bytes at `offset`, or fewer at the end of the file.
pub(super) fn read_at(
    file: &File,
    path: &Path,
    offset: u64,
    len: usize,
) -> Result<Vec<u8>, JournalError> {
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

/// Reads the header of the segment at `path`.
pub(super) fn read_header(file: &File, path: &Path) -> Result<SegmentHeader, JournalError> {
    let bytes = read_at(file, path, 0, HEADER_BYTES)?;
    SegmentHeader::decode(&bytes)
        .map_err(|e| corrupt(path, 0, None, format!("segment header: {e}")))
}

/// What a position in a segment holds, read from the file.
pub(super) enum Found {
    Empty,
    End(u64),
    Batch {
        first_seq: u64,
        payloads: Vec<Vec<u8>>,
        len: u64,
    },
}

pub(super) fn read_mark(
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
