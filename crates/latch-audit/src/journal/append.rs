//! Appending to a journal: sealing drafts into batches, and writing and syncing each.

use std::os::unix::fs::FileExt;

use latch_core::audit::{seal, AuditDraft};
use latch_core::merkle::leaf_hash;

use super::format::{self, BatchBuilder, BATCH_HEAD_BYTES, HEADER_BYTES};
use super::{extend, io, Appended, Journal};
use crate::JournalError;

impl Journal {
    /// Seals `drafts` as the next records, writes them, and syncs once. On success every record
    /// is durable; on failure none is counted, and a failed read, write or sync stops the
    /// journal.
    pub fn append(&mut self, drafts: &[AuditDraft]) -> Result<Vec<Appended>, JournalError> {
        if drafts.is_empty() && self.stopped.is_none() {
            return Ok(Vec::new());
        }
        self.locked(|journal| journal.append_locked(drafts))
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
