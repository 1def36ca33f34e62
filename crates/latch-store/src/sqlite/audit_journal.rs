//! The embedded store's audit chain: a journal of its own ([`latch_audit::journal`]), with the
//! `audit` table as its index.
//!
//! A record is durable once the journal has synced it. A state change appends its record inside
//! the transaction that makes the change, before the commit: a failed append rolls the change
//! back, and only a commit failing after a good append can leave a record of a change that was
//! not made, never a change without its record. Token issuance and use append in groups through
//! [`latch_audit::writer::AuditLog`]; nothing on that path touches the database.
//!
//! The `audit` table is filled behind the journal, by a background thread and by every read
//! that needs it to be current (each read first indexes what was durable when it started). It
//! holds nothing the journal does not: `latch audit reindex` rebuilds it.
//!
//! A data directory from before the journal keeps its history: on first start, the chain's
//! records move from the table into a new journal exactly as they were sealed, so their
//! sequence numbers, hashes and Merkle roots (and every checkpoint signed over them) stay.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use latch_audit::journal::{self, Expected, Journal, Locator, Options, Start};
use latch_audit::JournalError;
use latch_core::audit::{record_hash, AuditDraft, SealedRecord};
use latch_core::checkpoint::{Checkpoint, Frontier};
use latch_core::jws::b64url_decode;
use latch_core::merkle::{leaf_hash, Hash};
use rusqlite::{params, Connection, OptionalExtension, Transaction};

use super::audit_index::{self, Fields, Names};
use crate::{Result, StoreError};

/// The journals' directory, in the data directory (one directory per chain inside).
pub(crate) const DIR: &str = "journal";

/// How many records one index transaction takes at most.
const INDEX_PAGE: u64 = 2_000;

pub(super) struct AuditJournal {
    /// Where every chain's journal lives (a directory per chain).
    root: PathBuf,
    dir: PathBuf,
    chain: String,
    options: Options,
    /// Opened when this process first appends, or finds that another one did.
    journal: Mutex<Option<Journal>>,
    /// The frontier as far as the records were last read back from disk and found as written.
    checked: Mutex<Option<Frontier>>,
    /// Where single records are, per chain, for queries.
    locators: Mutex<HashMap<String, Arc<Mutex<Locator>>>>,
    /// The index rows of the records this process appended and the index does not hold yet, in
    /// order: indexed without reading them back (at most [`PENDING`]; past that, or after a
    /// record of another process, the index reads the journal).
    pending: Mutex<VecDeque<(u64, Fields)>>,
}

/// The most appended records waiting for the index in memory.
const PENDING: usize = 100_000;

/// A record read back from the journal: its sequence number, its leaf, and the index row it
/// must have (none for an archived record, or one whose names were never indexed).
type Reread = (u64, Hash, Option<audit_index::Row>);

impl std::fmt::Debug for AuditJournal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditJournal")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

pub(crate) fn journal_error(e: JournalError) -> StoreError {
    match e {
        JournalError::Corrupt { .. } => StoreError::Corrupt(e.to_string()),
        other => StoreError::Unavailable(other.to_string()),
    }
}

fn sql(e: rusqlite::Error) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

fn lock_poisoned() -> StoreError {
    StoreError::Unavailable("the audit journal's lock is poisoned".into())
}

/// The last checkpoint the audit key signed for `chain` (kept beside the store, never in it).
fn signed_head(data_dir: &Path, chain: &str) -> Result<Option<Expected>> {
    let path = data_dir.join(latch_audit::signer::HEAD_FILE);
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(StoreError::Unavailable(format!("{}: {e}", path.display()))),
    };
    let heads: BTreeMap<String, Checkpoint> = serde_json::from_str(&text)
        .map_err(|e| StoreError::Corrupt(format!("{}: {e}", path.display())))?;
    Ok(heads.get(chain).and_then(|cp| {
        cp.root_hash().map(|root| Expected {
            size: cp.size,
            root,
        })
    }))
}

fn has_segments(dir: &Path) -> Result<bool> {
    Ok(dir.exists() && !journal::segments(dir).map_err(journal_error)?.is_empty())
}

impl AuditJournal {
    /// The journal of `chain` in `data_dir`, moving the chain's records in from the `audit`
    /// table the first time. A chain with no records yet gets its journal on its first append.
    pub(super) fn open(
        data_dir: &Path,
        chain: &str,
        options: Options,
        conn: &mut Connection,
    ) -> Result<Self> {
        let root = data_dir.join(DIR);
        let dir = root.join(chain);
        // Under the database's write lock: two processes starting on an old data directory
        // move its records once.
        let tx = conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(sql)?;
        // Every chain the table holds (this process's, and any other's) moves into a journal
        // of its own, and leaves the table.
        let mut chains: Vec<String> = tx
            .prepare("SELECT DISTINCT chain FROM audit")
            .map_err(sql)?
            .query_map([], |r| r.get(0))
            .map_err(sql)?
            .collect::<rusqlite::Result<_>>()
            .map_err(sql)?;
        chains.retain(|c| c != chain);
        chains.push(chain.to_owned());
        for moving in &chains {
            let to = journal_of_name(&root, moving)?;
            if !has_segments(&to)? {
                upgrade(&to, moving, options, &tx)?;
            }
            tx.execute("DELETE FROM audit WHERE chain = ?1", [moving])
                .map_err(sql)?;
        }
        tx.commit().map_err(sql)?;
        let this = AuditJournal {
            root,
            dir,
            chain: chain.to_owned(),
            options,
            journal: Mutex::new(None),
            checked: Mutex::new(None),
            locators: Mutex::new(HashMap::new()),
            pending: Mutex::new(VecDeque::new()),
        };
        if has_segments(&this.dir)? {
            this.opened(data_dir, true)?;
        }
        Ok(this)
    }

    /// The journal, opened (and recovered) on first use; `create` makes it if no process did.
    fn opened(
        &self,
        data_dir: &Path,
        create: bool,
    ) -> Result<Option<std::sync::MutexGuard<'_, Option<Journal>>>> {
        let mut guard = self.journal.lock().map_err(|_| lock_poisoned())?;
        if guard.is_none() {
            if !create && !has_segments(&self.dir)? {
                return Ok(None);
            }
            let expected = signed_head(data_dir, &self.chain)?;
            let (journal, recovery) = Journal::open(&self.dir, &self.chain, self.options, expected)
                .map_err(journal_error)?;
            tracing::debug!(target: "latch::audit", chain = %self.chain, records = recovery.size, segments = recovery.segments, "audit journal open");
            *self.checked.lock().map_err(|_| lock_poisoned())? =
                Some(journal.head().frontier.clone());
            *guard = Some(journal);
        }
        Ok(Some(guard))
    }

    fn data_dir(&self) -> &Path {
        self.root.parent().unwrap_or(&self.root)
    }

    /// Appends `drafts`; returns their sequence numbers once they are durable.
    pub(super) fn append(&self, drafts: &[AuditDraft]) -> Result<Vec<u64>> {
        let mut guard = self
            .opened(self.data_dir(), true)?
            .ok_or_else(|| StoreError::Unavailable("the audit journal did not open".into()))?;
        let journal = guard
            .as_mut()
            .ok_or_else(|| StoreError::Unavailable("the audit journal did not open".into()))?;
        let appended = journal.append(drafts).map_err(journal_error)?;
        let mut pending = self.pending.lock().map_err(|_| lock_poisoned())?;
        if pending.len() + appended.len() <= PENDING {
            for (a, draft) in appended.iter().zip(drafts) {
                pending.push_back((a.seq, Fields::of_draft(draft, a.leaf)));
            }
        } else {
            pending.clear();
        }
        Ok(appended.into_iter().map(|a| a.seq).collect())
    }

    /// The durable end of this store's chain, with what other processes appended.
    pub(super) fn durable(&self) -> Result<(u64, Frontier)> {
        match self.opened(self.data_dir(), false)? {
            None => Ok((0, Frontier::default())),
            Some(mut guard) => match guard.as_mut() {
                None => Ok((0, Frontier::default())),
                Some(journal) => {
                    let head = journal.refresh().map_err(journal_error)?;
                    Ok((head.size, head.frontier.clone()))
                }
            },
        }
    }

    /// The frontier of the durable records, held in memory, once the records written since the
    /// last call are read back from the journal and from the index (`conn`) and found exactly as
    /// written: an edit of either is an error naming the record. The cost is that of the records
    /// since the last call, whatever the size of the log.
    pub(super) fn checked_frontier(&self, conn: &Connection) -> Result<Frontier> {
        let (size, frontier) = self.durable()?;
        let archived = archived_through(conn, &self.chain)?;
        let mut checked = self.checked.lock().map_err(|_| lock_poisoned())?;
        let Some(checked) = checked.as_mut() else {
            // No journal yet: nothing was written.
            return Ok(frontier);
        };
        let mut reread = checked.clone();
        if reread.size() < archived {
            // Those records left the journal with their archive: go on from its frontier (the
            // comparison with the frontier held in memory, below, still covers it).
            reread = archived_frontier(conn, &self.chain, archived)?;
        }
        let mut names = Names::default();
        let seen = self.reread_journal(conn, &mut names, reread.size(), size, archived)?;
        self.check_index_rows(conn, &mut names, reread.size(), archived, &seen)?;
        for (_, leaf, _) in &seen {
            reread.push(*leaf);
        }
        if reread.root() != frontier.root() {
            return Err(StoreError::Corrupt(format!(
                "audit chain {}: records {} to {size} no longer read back from the journal as they were written",
                self.chain,
                checked.size() + 1
            )));
        }
        *checked = reread;
        Ok(frontier)
    }

    /// Reads the records after `from` through `size` back from the journal, each kept as its
    /// sequence number, its leaf and (past `archived`) the index row it must have, not whole.
    /// The journal ending before `size` is an error.
    fn reread_journal(
        &self,
        conn: &Connection,
        names: &mut Names,
        from: u64,
        size: u64,
        archived: u64,
    ) -> Result<Vec<Reread>> {
        let mut seen = Vec::new();
        let mut failed = None;
        let end = journal::read(&self.dir, from, Some(size), |seq, body| {
            let row = if seq > archived {
                match audit_index::derive(conn, names, &self.chain, seq, body, false) {
                    Ok(row) => row.map(|(row, _)| row),
                    Err(e) => {
                        failed = Some(e);
                        return Err(JournalError::Invalid("stopped".into()));
                    }
                }
            } else {
                None
            };
            seen.push((seq, leaf_hash(body.as_bytes()), row));
            Ok(())
        });
        if let Some(e) = failed {
            return Err(e);
        }
        let end = end.map_err(journal_error)?;
        if end < size {
            return Err(StoreError::Corrupt(format!(
                "audit chain {}: the journal now ends at record {end}, after {size} were written",
                self.chain
            )));
        }
        Ok(seen)
    }

    /// The index must hold, after `from` (and past `archived`: archived records left the index,
    /// not the journal), exactly the rows the records `seen` in the journal make.
    fn check_index_rows(
        &self,
        conn: &Connection,
        names: &mut Names,
        from: u64,
        archived: u64,
        seen: &[Reread],
    ) -> Result<()> {
        let after = from.max(archived);
        let rows = audit_index::rows_after(conn, names, &self.chain, after)?;
        let indexed = seen.iter().filter(|(seq, _, _)| *seq > archived).count();
        if rows.len() != indexed {
            return Err(StoreError::Corrupt(format!(
                "audit chain {}: the index holds {} records after {after}, the journal {indexed}",
                self.chain,
                rows.len(),
            )));
        }
        let mut rows = rows.iter();
        for (seq, _, expected) in seen.iter().filter(|(seq, _, _)| *seq > archived) {
            match (rows.next(), expected) {
                (Some((row_seq, row)), Some(expected)) if row_seq == seq && row == expected => {}
                _ => {
                    return Err(StoreError::Corrupt(format!(
                        "audit chain {}, record {seq}: the index row differs from the journal",
                        self.chain
                    )))
                }
            }
        }
        Ok(())
    }

    /// Where every chain's journal lives.
    pub(super) fn root(&self) -> &Path {
        &self.root
    }

    /// The chain.
    pub(super) fn chain(&self) -> &str {
        &self.chain
    }

    /// Indexes, in `tx`, the records of every chain with a journal in the data directory (this
    /// process's, and any other's) that the table does not hold yet.
    pub(super) fn index(&self, tx: &Transaction<'_>) -> Result<u64> {
        let mut added = 0;
        for (chain, dir) in self.journals()? {
            let pending = (chain == self.chain).then_some(&self.pending);
            added += index_chain(tx, &chain, &dir, pending)?;
        }
        Ok(added)
    }

    /// Removes, in `tx`, the index rows of every chain with a journal.
    pub(super) fn clear_index(&self, tx: &Transaction<'_>) -> Result<()> {
        // Rebuilt from the journal alone, not from what this process remembers appending.
        self.pending.lock().map_err(|_| lock_poisoned())?.clear();
        // The stored subtrees were made from the index's leaves: made again from the new ones.
        tx.execute_batch("DELETE FROM audit_index; DELETE FROM audit_tree;")
            .map_err(sql)
    }

    /// The locator of records in the journal of `chain`, if it has one.
    pub(super) fn locator(&self, chain: &str) -> Result<Option<Arc<Mutex<Locator>>>> {
        let Some(dir) = journal_of(&self.root, chain)? else {
            return Ok(None);
        };
        let mut locators = self.locators.lock().map_err(|_| lock_poisoned())?;
        Ok(Some(
            locators
                .entry(chain.to_owned())
                .or_insert_with(|| Arc::new(Mutex::new(Locator::new(&dir))))
                .clone(),
        ))
    }

    /// The ISV that token `jti` was issued for, from its issuance record.
    pub(super) fn issuer_of(&self, conn: &Connection, jti: &str) -> Result<Option<String>> {
        for (chain, seq, _) in audit_index::issued_with(conn, jti)? {
            let Some(locator) = self.locator(&chain)? else {
                continue;
            };
            let body = locator
                .lock()
                .map_err(|_| lock_poisoned())?
                .get(seq)
                .map_err(journal_error)?;
            let Some(body) = body else { continue };
            let record: SealedRecord = serde_json::from_str(&body).map_err(|_| {
                StoreError::Corrupt(format!(
                    "audit chain {chain}, record {seq}: not a valid audit record"
                ))
            })?;
            let index = record.event.index();
            if index.jti.as_deref() == Some(jti) {
                return Ok(index.isv);
            }
        }
        Ok(None)
    }

    /// The chains with a journal.
    pub(super) fn chains(&self) -> Result<Vec<String>> {
        Ok(self
            .journals()?
            .into_iter()
            .map(|(chain, _)| chain)
            .collect())
    }

    /// Every chain with a journal in the data directory, and its directory.
    fn journals(&self) -> Result<Vec<(String, PathBuf)>> {
        let mut out = Vec::new();
        if !self.root.exists() {
            return Ok(out);
        }
        let list =
            |e: std::io::Error| StoreError::Unavailable(format!("{}: {e}", self.root.display()));
        for entry in std::fs::read_dir(&self.root).map_err(list)? {
            let entry = entry.map_err(list)?;
            let Some(chain) = entry.file_name().to_str().map(str::to_owned) else {
                continue;
            };
            // A journal being moved in (`*.moving`) is not one yet.
            if !chain.contains('.') && has_segments(&entry.path())? {
                out.push((chain, entry.path()));
            }
        }
        Ok(out)
    }
}

/// The directory of `chain`'s journal in the data directory's journals (`root`).
fn journal_of_name(root: &Path, chain: &str) -> Result<PathBuf> {
    if chain.is_empty() || chain.contains(['/', '.', '\\']) {
        return Err(StoreError::Corrupt(format!(
            "audit chain '{chain}': not a name a journal can have"
        )));
    }
    Ok(root.join(chain))
}

/// The journal of `chain` in the data directory's journals (`root`), if it has one.
pub(super) fn journal_of(root: &Path, chain: &str) -> Result<Option<PathBuf>> {
    // A name no journal can have has none.
    let Ok(dir) = journal_of_name(root, chain) else {
        return Ok(None);
    };
    Ok(has_segments(&dir)?.then_some(dir))
}

/// Up to `limit` records of the chain whose journal is `dir`, after `after`, read from the
/// journal itself (checksums checked), with their hashes.
pub(super) fn records(
    dir: &Path,
    chain: &str,
    after: u64,
    limit: usize,
) -> Result<Vec<latch_audit::StoredAuditRecord>> {
    let mut out = Vec::new();
    if limit == 0 {
        return Ok(out);
    }
    journal::read(dir, after, Some(after + limit as u64), |seq, body| {
        out.push(latch_audit::StoredAuditRecord {
            chain: chain.to_owned(),
            seq,
            body: body.to_owned(),
            hash: record_hash(body),
        });
        Ok(())
    })
    .map_err(journal_error)?;
    Ok(out)
}

/// Where an archive of `chain` ends (0 for none).
pub(super) fn archived_through(conn: &Connection, chain: &str) -> Result<u64> {
    let through: Option<i64> = conn
        .query_row(
            "SELECT through_seq FROM audit_archives WHERE chain = ?1",
            [chain],
            |r| r.get(0),
        )
        .optional()
        .map_err(sql)?;
    Ok(through.unwrap_or(0).max(0) as u64)
}

/// The frontier of the records of `chain` its archive took, which must end at `archived`.
fn archived_frontier(conn: &Connection, chain: &str, archived: u64) -> Result<Frontier> {
    let bytes: Vec<u8> = conn
        .query_row(
            "SELECT frontier FROM audit_archives WHERE chain = ?1",
            [chain],
            |r| r.get(0),
        )
        .map_err(sql)?;
    Frontier::from_bytes(&bytes)
        .filter(|f| f.size() == archived)
        .ok_or_else(|| StoreError::Corrupt(format!("the archived frontier of chain {chain}")))
}

/// Indexes the records of `chain` (journal in `dir`) the index does not hold yet.
fn index_chain(
    tx: &Transaction<'_>,
    chain: &str,
    dir: &Path,
    pending: Option<&Mutex<VecDeque<(u64, Fields)>>>,
) -> Result<u64> {
    let mut names = Names::default();
    let mut indexed =
        audit_index::last_indexed(tx, &mut names, chain)?.max(archived_through(tx, chain)?);
    let mut added = 0;
    let mut prev = None;
    loop {
        // What this process appended next, if it is next: no need to read it back.
        let mine = match pending {
            Some(pending) => take_pending(pending, indexed)?,
            None => Vec::new(),
        };
        if !mine.is_empty() {
            audit_index::insert_appended(tx, &mut names, chain, &mine)?;
            added += mine.len() as u64;
            indexed += mine.len() as u64;
            // The next record read back is not checked against one not read.
            prev = None;
            continue;
        }
        let mut bodies = Vec::new();
        let end = journal::read(dir, indexed, Some(indexed + INDEX_PAGE), |seq, body| {
            bodies.push((seq, body.to_owned()));
            Ok(())
        })
        .map_err(journal_error)?;
        if end < indexed {
            return Err(StoreError::Corrupt(format!(
                "audit chain {chain}: the index holds record {indexed}, the journal ends at {end}"
            )));
        }
        if bodies.is_empty() {
            return Ok(added);
        }
        prev = audit_index::insert(tx, &mut names, chain, prev, &bodies)?;
        added += bodies.len() as u64;
        indexed = end;
    }
}

/// Takes from `pending` the records right after `indexed`, in order (up to a page), dropping
/// those the index already holds.
fn take_pending(
    pending: &Mutex<VecDeque<(u64, Fields)>>,
    indexed: u64,
) -> Result<Vec<(u64, Fields)>> {
    let mut pending = pending.lock().map_err(|_| lock_poisoned())?;
    while pending.front().is_some_and(|(seq, _)| *seq <= indexed) {
        pending.pop_front();
    }
    let mut out = Vec::new();
    while let Some((seq, _)) = pending.front() {
        if *seq != indexed + 1 + out.len() as u64 || out.len() as u64 >= INDEX_PAGE {
            break;
        }
        if let Some(entry) = pending.pop_front() {
            out.push(entry);
        }
    }
    Ok(out)
}

/// Moves the records of `chain` from the `audit` table into a new journal in `dir`, exactly as
/// they were sealed. Nothing to move makes an empty journal.
fn upgrade(dir: &Path, chain: &str, options: Options, conn: &Connection) -> Result<()> {
    let Some((first_seq, first_body)) = first_table_record(conn, chain)? else {
        return Ok(());
    };
    let start = if first_seq == 1 {
        Start {
            first_seq: 1,
            prev_hash: latch_core::audit::GENESIS,
            frontier: Frontier::default(),
        }
    } else {
        start_after_archive(conn, chain, first_seq, &first_body)?
    };
    // Built under another name and moved into place whole: a move cut short starts again.
    let building = dir.with_extension("moving");
    if building.exists() {
        std::fs::remove_dir_all(&building)
            .map_err(|e| StoreError::Unavailable(format!("{}: {e}", building.display())))?;
    }
    let (mut journal, _) =
        Journal::open_from(&building, chain, options, None, start).map_err(journal_error)?;
    let moved = move_table_records(conn, chain, &mut journal, first_seq - 1)?;
    drop(journal);
    if dir.exists() {
        // An empty journal made before: nothing in it.
        std::fs::remove_dir_all(dir)
            .map_err(|e| StoreError::Unavailable(format!("{}: {e}", dir.display())))?;
    }
    std::fs::rename(&building, dir)
        .and_then(|()| std::fs::File::open(dir.parent().unwrap_or(dir))?.sync_all())
        .map_err(|e| StoreError::Unavailable(format!("{}: {e}", dir.display())))?;
    tracing::info!(target: "latch::audit", chain, records = moved, dir = %dir.display(), "audit records moved from the database into the journal");
    Ok(())
}

/// The first record of `chain` in the `audit` table: its sequence number and body.
fn first_table_record(conn: &Connection, chain: &str) -> Result<Option<(u64, String)>> {
    let first: Option<(i64, String)> = conn
        .query_row(
            "SELECT seq, body FROM audit WHERE chain = ?1 ORDER BY seq LIMIT 1",
            [chain],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()
        .map_err(sql)?;
    let Some((first_seq, first_body)) = first else {
        return Ok(None);
    };
    let first_seq = u64::try_from(first_seq)
        .map_err(|_| StoreError::Corrupt("negative audit sequence".into()))?;
    Ok(Some((first_seq, first_body)))
}

/// Where the journal of `chain` starts when its first record in the table, `first_seq` (with
/// `first_body`), is not its first: the records before it were archived, and the journal
/// starts from their frontier, linked to the hash that record names as its previous one.
fn start_after_archive(
    conn: &Connection,
    chain: &str,
    first_seq: u64,
    first_body: &str,
) -> Result<Start> {
    let frontier: Option<(i64, Vec<u8>)> = conn
        .query_row(
            "SELECT through_seq, frontier FROM audit_archives WHERE chain = ?1",
            [chain],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()
        .map_err(sql)?;
    let frontier = frontier
        .and_then(|(through, bytes)| {
            Frontier::from_bytes(&bytes).filter(|f| f.size() as i64 == through)
        })
        .filter(|f| f.size() + 1 == first_seq)
        .ok_or_else(|| {
            StoreError::Corrupt(format!(
                "chain {chain} starts at record {first_seq}, and no archive ends just before it"
            ))
        })?;
    let record: SealedRecord = serde_json::from_str(first_body).map_err(|_| {
        StoreError::Corrupt(format!(
            "chain {chain}, record {first_seq}: not a valid audit record"
        ))
    })?;
    let prev_hash = b64url_decode(&record.prev_hash)
        .ok()
        .and_then(|h| <[u8; 32]>::try_from(h).ok())
        .ok_or_else(|| {
            StoreError::Corrupt(format!(
                "chain {chain}, record {first_seq}: its previous hash"
            ))
        })?;
    Ok(Start {
        first_seq,
        prev_hash,
        frontier,
    })
}

/// Appends the records of `chain` in the `audit` table after `after` to `journal` as they were
/// sealed, a page at a time; returns how many it moved.
fn move_table_records(
    conn: &Connection,
    chain: &str,
    journal: &mut Journal,
    mut after: u64,
) -> Result<u64> {
    let mut moved = 0u64;
    loop {
        let mut stmt = conn
            .prepare_cached(
                "SELECT seq, body FROM audit WHERE chain = ?1 AND seq > ?2 ORDER BY seq LIMIT 10000",
            )
            .map_err(sql)?;
        let page = stmt
            .query_map(params![chain, after as i64], |r| {
                Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?))
            })
            .map_err(sql)?
            .collect::<rusqlite::Result<Vec<_>>>()
            .map_err(sql)?;
        let Some(&(last, _)) = page.last() else {
            break;
        };
        let bodies: Vec<String> = page.into_iter().map(|(_, body)| body).collect();
        journal.append_sealed(&bodies).map_err(|e| {
            StoreError::Corrupt(format!("moving chain {chain} into the audit journal: {e}"))
        })?;
        moved += bodies.len() as u64;
        after = last as u64;
    }
    Ok(moved)
}
