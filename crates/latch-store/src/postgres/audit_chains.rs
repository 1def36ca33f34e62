//! The audit chains in PostgreSQL.
//!
//! `audit_log` holds the records, and nothing but its primary key: (chain, sequence number)
//! and the sealed body, exactly as hashed. A batch goes in with one multi-row insert, in the
//! transaction of the change it records (or a transaction of its own), and is answered only
//! after that commits. The head of each chain is a row of `audit_heads` (sequence number, hash
//! of the last record, Merkle frontier), locked for the length of an append, so that writers
//! of one chain (every replica's service and the admin commands) take turns.
//!
//! Each process holds the end of every chain it writes in memory ([`Held`]): the hash chain
//! and the frontier are extended there as records are sealed, and a checkpoint signs that
//! frontier. Records another process appended since are read once, and their links checked,
//! when this process next takes the head. What a checkpoint signs is first read back: the
//! records written since the last checkpoint are re-hashed from `audit_log` and compared with
//! the frontier in memory and with their index rows, so that an edit of either is found then.
//!
//! `audit_index` (time, type, outcome, ISV, target, jti, features, operation, leaf hash) is
//! built behind the writers, a moment after each commit and before every query; a query sees
//! every record committed when it started, and every record it returns is read from
//! `audit_log`, re-hashed and compared with its row.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use latch_core::audit::{self, AuditDraft, GENESIS};
use latch_core::checkpoint::Frontier;
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, IsolationLevel, Row, Transaction};

use super::{corrupt, pg, signed, unsigned};
use latch_audit::{AuditQuery, StoredAuditRecord};

use crate::audit_fields::{broken_link, stored_hash, Fields};
use crate::{Result, StoreError};

/// How long after a commit the index is brought up to date: commits in that time are indexed
/// together.
pub(super) const INDEX_DELAY: Duration = Duration::from_millis(200);
/// Records read (or indexed) per statement.
const PAGE: i64 = 2_000;

/// The committed end of a chain, as this process knows it.
#[derive(Clone, Debug)]
pub(super) struct Held {
    seq: u64,
    hash: [u8; 32],
    frontier: Frontier,
}

/// What this process holds of the chains it reads and writes.
#[derive(Debug, Default)]
pub(super) struct Chains {
    held: Mutex<HashMap<String, Held>>,
    /// For each chain, the frontier of the records read back and found as written.
    checked: Mutex<HashMap<String, Frontier>>,
    /// An indexing is due (set after a commit, cleared when it starts).
    indexing: AtomicBool,
}

fn poisoned() -> StoreError {
    StoreError::Unavailable("audit chain state lock poisoned".into())
}

impl Chains {
    /// Keeps `held` as the end of `chain`, unless a later end is already known.
    pub(super) fn install(&self, chain: &str, held: Held) {
        // A panic elsewhere cannot leave the map half-written: every change is one insert.
        let mut map = self.held.lock().unwrap_or_else(|p| p.into_inner());
        match map.get(chain) {
            Some(known) if known.seq >= held.seq => {}
            _ => {
                map.insert(chain.to_owned(), held);
            }
        }
    }

    /// Whether an indexing should be started now (none is due yet).
    pub(super) fn index_due(&self) -> bool {
        !self.indexing.swap(true, Ordering::AcqRel)
    }

    /// The indexing that was due starts.
    pub(super) fn index_started(&self) {
        self.indexing.store(false, Ordering::Release);
    }

    /// How far the records of `chain` were last read back and found as written, if they were.
    fn checked_of(&self, chain: &str) -> Result<Option<Frontier>> {
        Ok(self
            .checked
            .lock()
            .map_err(|_| poisoned())?
            .get(chain)
            .cloned())
    }

    /// Keeps `frontier` as how far the records of `chain` were read back and found as written.
    fn keep_checked(&self, chain: &str, frontier: Frontier) -> Result<()> {
        self.checked
            .lock()
            .map_err(|_| poisoned())?
            .insert(chain.to_owned(), frontier);
        Ok(())
    }

    /// The end of `chain` as committed (its head row, read in `tx`), with what other processes
    /// appended since this one last looked read and checked.
    async fn caught_up(&self, tx: &Transaction<'_>, chain: &str, head: &Row) -> Result<Held> {
        let seq = unsigned(head.try_get(0).map_err(pg)?)?;
        let hash = stored_hash(head.try_get(1).map_err(pg)?)?;
        let known = self
            .held
            .lock()
            .map_err(|_| poisoned())?
            .get(chain)
            .cloned();
        match known {
            Some(h) if h.seq == seq && h.hash == hash => Ok(h),
            Some(h) if h.seq < seq => {
                let prev = Some(h.hash);
                extend(tx, chain, h.frontier, prev, seq, hash).await
            }
            Some(h) => Err(StoreError::Corrupt(format!(
                "audit chain {chain}: its head says record {seq}, after this process saw record {} committed",
                h.seq
            ))),
            None => {
                let stored: Option<Vec<u8>> = head.try_get(2).map_err(pg)?;
                let held = match stored.as_deref().and_then(Frontier::from_bytes) {
                    Some(frontier) if frontier.size() == seq => Held {
                        seq,
                        hash,
                        frontier,
                    },
                    // A head from before frontiers were kept: rebuilt once from the records.
                    _ => extend(tx, chain, Frontier::default(), Some(GENESIS), seq, hash).await?,
                };
                // Records appended from now on are read back at the next checkpoint.
                self.checked
                    .lock()
                    .map_err(|_| poisoned())?
                    .entry(chain.to_owned())
                    .or_insert_with(|| held.frontier.clone());
                Ok(held)
            }
        }
    }
}

/// `frontier` (of the records up to the one whose hash is `prev`, when known) extended with
/// the records after it up to `seq`, whose hash must be `hash`. Records that were archived
/// meanwhile are taken from the archive's frontier.
async fn extend(
    tx: &Transaction<'_>,
    chain: &str,
    mut frontier: Frontier,
    mut prev: Option<[u8; 32]>,
    seq: u64,
    hash: [u8; 32],
) -> Result<Held> {
    let (archived, archive) = archived(tx, chain).await?;
    if frontier.size() < archived {
        frontier = archive;
        prev = None;
    }
    while frontier.size() < seq {
        let rows = tx
            .query(
                "SELECT seq, body FROM audit_log WHERE chain = $1 AND seq > $2 AND seq <= $3 ORDER BY seq LIMIT $4",
                &[&chain, &signed(frontier.size())?, &signed(seq)?, &PAGE],
            )
            .await
            .map_err(pg)?;
        if rows.is_empty() {
            break;
        }
        for row in rows {
            let (at, body): (i64, String) = (row.get(0), row.get(1));
            let at = unsigned(at)?;
            if at != frontier.size() + 1 {
                return Err(missing(chain, frontier.size() + 1));
            }
            let (fields, link) = Fields::of_body(chain, at, &body)?;
            if prev.is_some_and(|p| latch_core::jws::b64url(p) != link) {
                return Err(broken_link(chain, at));
            }
            frontier.push(fields.leaf);
            prev = Some(audit::record_hash(&body));
        }
    }
    if frontier.size() != seq {
        return Err(missing(chain, frontier.size() + 1));
    }
    if prev.is_some_and(|p| p != hash) {
        return Err(not_named(chain, seq));
    }
    Ok(Held {
        seq,
        hash,
        frontier,
    })
}

fn not_named(chain: &str, seq: u64) -> StoreError {
    StoreError::Corrupt(format!(
        "audit chain {chain}: record {seq} is not the one its head names"
    ))
}

fn missing(chain: &str, seq: u64) -> StoreError {
    StoreError::Corrupt(format!(
        "audit chain {chain}: record {seq} is missing from the log"
    ))
}

/// How far `chain` is archived, and the frontier of the archived records.
async fn archived(tx: &Transaction<'_>, chain: &str) -> Result<(u64, Frontier)> {
    let Some(row) = tx
        .query_opt(
            "SELECT through_seq, frontier FROM audit_archives WHERE chain = $1",
            &[&chain],
        )
        .await
        .map_err(pg)?
    else {
        return Ok((0, Frontier::default()));
    };
    let through = unsigned(row.get(0))?;
    let frontier = Frontier::from_bytes(&row.get::<_, Vec<u8>>(1))
        .filter(|f| f.size() == through)
        .ok_or_else(|| corrupt(&format!("the archived frontier of chain {chain}")))?;
    Ok((through, frontier))
}

/// Seals `drafts` as the next records of `chain` and inserts them in one statement, holding the
/// chain's head row until `tx` ends. Returns their sequence numbers and the end of the chain
/// to keep once `tx` has committed ([`Chains::install`]).
pub(super) async fn append(
    tx: &Transaction<'_>,
    chains: &Chains,
    chain: &str,
    drafts: &[AuditDraft],
) -> Result<(Vec<u64>, Held)> {
    tx.execute(
        "INSERT INTO audit_heads (chain, seq, hash) VALUES ($1, 0, $2) ON CONFLICT (chain) DO NOTHING",
        &[&chain, &&GENESIS[..]],
    )
    .await
    .map_err(pg)?;
    let head = tx
        .query_one(
            "SELECT seq, hash, frontier FROM audit_heads WHERE chain = $1 FOR UPDATE",
            &[&chain],
        )
        .await
        .map_err(pg)?;
    let mut held = chains.caught_up(tx, chain, &head).await?;
    let mut seqs = Vec::with_capacity(drafts.len());
    let mut numbers = Vec::with_capacity(drafts.len());
    let mut bodies = Vec::with_capacity(drafts.len());
    for draft in drafts {
        held.seq += 1;
        let (body, hash) = audit::seal(chain, held.seq, &held.hash, draft);
        held.frontier
            .push(latch_core::merkle::leaf_hash(body.as_bytes()));
        held.hash = hash;
        seqs.push(held.seq);
        numbers.push(signed(held.seq)?);
        bodies.push(body);
    }
    tx.execute(
        "INSERT INTO audit_log (chain, seq, body) SELECT $1, s, b FROM unnest($2::bigint[], $3::text[]) AS t(s, b)",
        &[&chain, &numbers, &bodies],
    )
    .await
    .map_err(pg)?;
    tx.execute(
        "UPDATE audit_heads SET seq = $2, hash = $3, frontier = $4 WHERE chain = $1",
        &[
            &chain,
            &signed(held.seq)?,
            &&held.hash[..],
            &held.frontier.to_bytes(),
        ],
    )
    .await
    .map_err(pg)?;
    Ok((seqs, held))
}

/// A transaction that sees one moment of the database for all its reads.
async fn snapshot(client: &mut Client) -> Result<Transaction<'_>> {
    client
        .build_transaction()
        .isolation_level(IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await
        .map_err(pg)
}

/// An index row, as stored and as its record says it must be.
#[derive(Debug, PartialEq, Eq)]
struct IndexRow {
    time: i64,
    kind: String,
    outcome: String,
    isv: Option<String>,
    target: Option<String>,
    jti: Option<String>,
    features: Option<String>,
    operation: Option<String>,
    leaf: Vec<u8>,
}

/// The index columns, in [`IndexRow`]'s order.
const INDEX_COLUMNS: &str = "time, kind, outcome, isv, target, jti, features, operation, leaf";

impl IndexRow {
    fn of(f: &Fields) -> IndexRow {
        IndexRow {
            time: f.time,
            kind: f.index.kind.to_owned(),
            outcome: f.index.outcome.to_owned(),
            isv: f.index.isv.clone(),
            target: f.index.target.clone(),
            jti: f.index.jti.clone(),
            features: f.features.clone(),
            operation: f.operation.clone(),
            leaf: f.leaf.to_vec(),
        }
    }

    /// The row in the columns of `row` from `at` on (`None` when they are all NULL: no row).
    fn read(row: &Row, at: usize) -> Result<Option<IndexRow>> {
        let time: Option<i64> = row.try_get(at).map_err(pg)?;
        let Some(time) = time else { return Ok(None) };
        let text = |i: usize| row.try_get::<_, Option<String>>(at + i).map_err(pg);
        Ok(Some(IndexRow {
            time,
            kind: text(1)?.unwrap_or_default(),
            outcome: text(2)?.unwrap_or_default(),
            isv: text(3)?,
            target: text(4)?,
            jti: text(5)?,
            features: text(6)?,
            operation: text(7)?,
            leaf: row.try_get(at + 8).map_err(pg)?,
        }))
    }
}

fn index_differs(chain: &str, seq: u64) -> StoreError {
    StoreError::Corrupt(format!(
        "audit chain {chain}, record {seq}: the index row differs from the log"
    ))
}

/// The frontier of `chain` this process holds, once the records written since the last call
/// are read back from `audit_log` and from the index and found exactly as written: an edit of
/// either, a record removed or one added behind the writer's back, is an error naming the
/// record. The cost is that of the records since the last call, whatever the size of the log.
pub(super) async fn checked_frontier(
    client: &mut Client,
    chains: &Chains,
    chain: &str,
) -> Result<Frontier> {
    let tx = snapshot(client).await?;
    let Some(head) = head_row(&tx, chain).await? else {
        return Ok(Frontier::default());
    };
    let held = chains.caught_up(&tx, chain, &head).await?;
    chains.install(chain, held.clone());
    let (archived, archive) = archived(&tx, chain).await?;
    let size = held.seq;
    check_log_end(&tx, chain, archived, size).await?;
    if size > archived {
        check_newest_is_named(&tx, chain, &held).await?;
    }
    check_index_end(&tx, chain, size).await?;
    let checked = chains
        .checked_of(chain)?
        .unwrap_or_else(|| held.frontier.clone());
    let since = checked.size() + 1;
    // Records archived since the last call left the log: go on from the archive's frontier.
    let start = if checked.size() < archived {
        archive
    } else {
        checked
    };
    let reread = reread_log(&tx, chain, start, size).await?;
    if reread.size() != size || reread.root() != held.frontier.root() {
        return Err(StoreError::Corrupt(format!(
            "audit chain {chain}: records {since} to {size} no longer read back from the log as they were written"
        )));
    }
    tx.commit().await.map_err(pg)?;
    chains.keep_checked(chain, reread)?;
    Ok(held.frontier)
}

/// The head row of `chain` (its last record's sequence number and hash, and its frontier), if
/// the chain has one.
async fn head_row(tx: &Transaction<'_>, chain: &str) -> Result<Option<Row>> {
    tx.query_opt(
        "SELECT seq, hash, frontier FROM audit_heads WHERE chain = $1",
        &[&chain],
    )
    .await
    .map_err(pg)
}

/// The log of `chain` must end at record `size`, the last one written (or, with nothing left
/// in it, at the last one `archived`).
async fn check_log_end(tx: &Transaction<'_>, chain: &str, archived: u64, size: u64) -> Result<()> {
    let last: Option<i64> = tx
        .query_one("SELECT max(seq) FROM audit_log WHERE chain = $1", &[&chain])
        .await
        .map_err(pg)?
        .get(0);
    let last = last.map_or(Ok(archived), unsigned)?;
    if last != size {
        return Err(StoreError::Corrupt(format!(
            "audit chain {chain}: the log now ends at record {last}, after {size} were written"
        )));
    }
    Ok(())
}

/// The newest record must be the one the head names: one read, whatever was checked before.
async fn check_newest_is_named(tx: &Transaction<'_>, chain: &str, held: &Held) -> Result<()> {
    let body: String = tx
        .query_one(
            "SELECT body FROM audit_log WHERE chain = $1 AND seq = $2",
            &[&chain, &signed(held.seq)?],
        )
        .await
        .map_err(pg)?
        .get(0);
    if audit::record_hash(&body) != held.hash {
        return Err(not_named(chain, held.seq));
    }
    Ok(())
}

/// The index of `chain` must hold no record past `size`, the last one written.
async fn check_index_end(tx: &Transaction<'_>, chain: &str, size: u64) -> Result<()> {
    let beyond: Option<i64> = tx
        .query_one(
            "SELECT min(seq) FROM audit_index WHERE chain = $1 AND seq > $2",
            &[&chain, &signed(size)?],
        )
        .await
        .map_err(pg)?
        .get(0);
    if let Some(seq) = beyond {
        return Err(StoreError::Corrupt(format!(
            "audit chain {chain}: the index holds record {seq}, the log ends at {size}"
        )));
    }
    Ok(())
}

/// Reads the records of `chain` after the end of `reread` through `size` back from the log, a
/// page at a time, each with its index row (which, where there is one, must be the row the
/// record makes), and adds their leaves to `reread`. A record missing from the sequence is an
/// error; the log ending early is left for the caller to see in the size.
async fn reread_log(
    tx: &Transaction<'_>,
    chain: &str,
    mut reread: Frontier,
    size: u64,
) -> Result<Frontier> {
    while reread.size() < size {
        let rows = tx
            .query(
                &format!(
                    "SELECT l.seq, l.body, {} FROM audit_log l LEFT JOIN audit_index i ON i.chain = l.chain AND i.seq = l.seq
                     WHERE l.chain = $1 AND l.seq > $2 AND l.seq <= $3 ORDER BY l.seq LIMIT $4",
                    prefixed("i.")
                ),
                &[&chain, &signed(reread.size())?, &signed(size)?, &PAGE],
            )
            .await
            .map_err(pg)?;
        if rows.is_empty() {
            break;
        }
        for row in rows {
            let seq = unsigned(row.get(0))?;
            if seq != reread.size() + 1 {
                return Err(missing(chain, reread.size() + 1));
            }
            let body: String = row.get(1);
            let (fields, _) = Fields::of_body(chain, seq, &body)?;
            if let Some(stored) = IndexRow::read(&row, 2)? {
                if stored != IndexRow::of(&fields) {
                    return Err(index_differs(chain, seq));
                }
            }
            reread.push(fields.leaf);
        }
    }
    Ok(reread)
}

fn prefixed(prefix: &str) -> String {
    INDEX_COLUMNS
        .split(", ")
        .map(|c| format!("{prefix}{c}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Brings the index up to every record committed now, on every chain; returns how many rows it
/// added. Several processes may index at once: a row made twice is made once.
pub(super) async fn index(client: &mut Client) -> Result<u64> {
    let tx = client.transaction().await.map_err(pg)?;
    let added = index_in(&tx).await?;
    tx.commit().await.map_err(pg)?;
    Ok(added)
}

/// [`index`], in `tx`.
async fn index_in(tx: &Transaction<'_>) -> Result<u64> {
    let heads = tx
        .query("SELECT chain, seq FROM audit_heads ORDER BY chain", &[])
        .await
        .map_err(pg)?;
    let mut added = 0;
    for row in heads {
        let (chain, head): (String, i64) = (row.get(0), row.get(1));
        // An archiving of this chain and this indexing take turns (the archive's lock): rows
        // indexed from records an archiving is removing would outlive them in the index.
        // What is indexed and archived is read once the turn is ours.
        tx.execute(
            "SELECT pg_advisory_xact_lock(hashtext('latch archive ' || $1))",
            &[&chain],
        )
        .await
        .map_err(pg)?;
        let done = tx
            .query_one(
                "SELECT coalesce((SELECT max(seq) FROM audit_index WHERE chain = $1), 0),
                        coalesce((SELECT through_seq FROM audit_archives WHERE chain = $1), 0)",
                &[&chain],
            )
            .await
            .map_err(pg)?;
        let (indexed, archived): (i64, i64) = (done.get(0), done.get(1));
        let mut from = indexed.max(archived);
        while from < head {
            let rows = tx
                .query(
                    "SELECT seq, body FROM audit_log WHERE chain = $1 AND seq > $2 AND seq <= $3 ORDER BY seq LIMIT $4",
                    &[&chain, &from, &head, &PAGE],
                )
                .await
                .map_err(pg)?;
            let Some(last) = rows.last().map(|r| r.get::<_, i64>(0)) else {
                break;
            };
            added += insert_rows(tx, &chain, &rows).await?;
            from = last;
        }
    }
    Ok(added)
}

/// Inserts the index rows of consecutive records (`seq`, `body`), checking that each links to
/// the one before it.
async fn insert_rows(tx: &Transaction<'_>, chain: &str, rows: &[Row]) -> Result<u64> {
    let n = rows.len();
    let (mut seqs, mut times) = (Vec::with_capacity(n), Vec::with_capacity(n));
    let mut texts: [Vec<Option<String>>; 7] = Default::default();
    let mut leaves = Vec::with_capacity(n);
    let mut prev: Option<[u8; 32]> = None;
    for row in rows {
        let (seq, body): (i64, String) = (row.get(0), row.get(1));
        let (fields, link) = Fields::of_body(chain, unsigned(seq)?, &body)?;
        if prev.is_some_and(|p| latch_core::jws::b64url(p) != link) {
            return Err(broken_link(chain, unsigned(seq)?));
        }
        prev = Some(audit::record_hash(&body));
        let r = IndexRow::of(&fields);
        seqs.push(seq);
        times.push(r.time);
        for (column, value) in texts.iter_mut().zip([
            Some(r.kind),
            Some(r.outcome),
            r.isv,
            r.target,
            r.jti,
            r.features,
            r.operation,
        ]) {
            column.push(value);
        }
        leaves.push(r.leaf);
    }
    let [kind, outcome, isv, target, jti, features, operation] = &texts;
    let params: [&(dyn ToSql + Sync); 11] = [
        &chain, &seqs, &times, kind, outcome, isv, target, jti, features, operation, &leaves,
    ];
    let added = tx
        .execute(
            &format!(
                "INSERT INTO audit_index (chain, seq, {INDEX_COLUMNS})
                 SELECT $1, * FROM unnest($2::bigint[], $3::bigint[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[], $9::text[], $10::text[], $11::bytea[])
                 ON CONFLICT (chain, seq) DO NOTHING"
            ),
            &params,
        )
        .await
        .map_err(pg)?;
    Ok(added)
}

/// Empties the index and builds it again from the log, in one transaction (a log that does
/// not read back leaves the index as it was); returns how many rows it holds.
pub(super) async fn reindex(client: &mut Client) -> Result<u64> {
    let tx = client.transaction().await.map_err(pg)?;
    // The stored subtrees were made from the index's leaves: made again from the new ones.
    tx.batch_execute("DELETE FROM audit_index; DELETE FROM audit_tree;")
        .await
        .map_err(pg)?;
    let rows = index_in(&tx).await?;
    tx.commit().await.map_err(pg)?;
    Ok(rows)
}

/// The records the index finds for `q`, each read from the log and compared with its row; and
/// the cursor of the next page.
pub(super) async fn query(
    client: &mut Client,
    q: &AuditQuery,
) -> Result<(Vec<StoredAuditRecord>, Option<i64>)> {
    index(client).await?;
    let mut sql = format!(
        "SELECT i.id, i.chain, i.seq, l.body, {} FROM (SELECT * FROM audit_index WHERE id > $1",
        prefixed("i.")
    );
    let after = q.after.unwrap_or(0);
    let (texts, times) = crate::audit_fields::conditions(q);
    let mut params: Vec<&(dyn ToSql + Sync)> = vec![&after];
    for (clause, value) in &texts {
        params.push(value);
        sql.push_str(&format!(" AND {clause} ${}", params.len()));
    }
    for (clause, value) in &times {
        params.push(value);
        sql.push_str(&format!(" AND {clause} ${}", params.len()));
    }
    let limit = q.limit.clamp(1, 1000);
    sql.push_str(&format!(
        " ORDER BY id LIMIT {}) i LEFT JOIN audit_log l ON l.chain = i.chain AND l.seq = i.seq ORDER BY i.id",
        limit + 1
    ));
    let tx = snapshot(client).await?;
    let rows = tx.query(&sql, &params).await.map_err(pg)?;
    let mut out = Vec::new();
    let mut last = None;
    for row in &rows {
        if out.len() == limit {
            // One more than asked: there is a next page, starting after the last returned.
            return Ok((out, last));
        }
        let (chain, seq): (String, u64) = (row.get(1), unsigned(row.get(2))?);
        let Some(body) = row.get::<_, Option<String>>(3) else {
            let end: Option<i64> = tx
                .query_one("SELECT max(seq) FROM audit_log WHERE chain = $1", &[&chain])
                .await
                .map_err(pg)?
                .get(0);
            return Err(StoreError::Corrupt(format!(
                "audit chain {chain}: the index holds record {seq}, the log ends at {}",
                end.unwrap_or(0)
            )));
        };
        let (fields, _) = Fields::of_body(&chain, seq, &body)?;
        if IndexRow::read(row, 4)?.as_ref() != Some(&IndexRow::of(&fields)) {
            return Err(index_differs(&chain, seq));
        }
        last = Some(row.get::<_, i64>(0));
        out.push(StoredAuditRecord {
            hash: audit::record_hash(&body),
            chain,
            seq,
            body,
        });
    }
    Ok((out, None))
}

/// The ISV that issued the token `jti`, from its issuance record (read and compared with its
/// index row).
pub(super) async fn issuer_of(client: &mut Client, jti: &str) -> Result<Option<String>> {
    let (records, _) = query(
        client,
        &AuditQuery {
            jti: Some(jti.to_owned()),
            kind: Some("limited_access_token_issued".into()),
            limit: 1,
            ..AuditQuery::default()
        },
    )
    .await?;
    let Some(r) = records.first() else {
        return Ok(None);
    };
    let (fields, _) = Fields::of_body(&r.chain, r.seq, &r.body)?;
    Ok(fields.index.isv)
}

/// The stored subtree roots of `chain` at `height` with index in `[from, to)` (height 0: the
/// leaves of the indexed records).
pub(super) async fn subtrees(
    client: &Client,
    chain: &str,
    height: u32,
    from: u64,
    to: u64,
) -> Result<Vec<(u64, [u8; 32])>> {
    let (from, to) = (signed(from)?, signed(to)?);
    let rows = if height == 0 {
        client
            .query(
                "SELECT seq - 1, leaf FROM audit_index WHERE chain = $1 AND seq > $2 AND seq <= $3 ORDER BY seq",
                &[&chain, &from, &to],
            )
            .await
    } else {
        let height = i32::try_from(height).map_err(|_| corrupt("subtree height out of range"))?;
        client
            .query(
                "SELECT idx, hash FROM audit_tree WHERE chain = $1 AND height = $2 AND idx >= $3 AND idx < $4 ORDER BY idx",
                &[&chain, &height, &from, &to],
            )
            .await
    }
    .map_err(pg)?;
    rows.iter()
        .map(|r| Ok((unsigned(r.get(0))?, stored_hash(r.get(1))?)))
        .collect()
}

/// Keeps subtree roots of `chain` at `height`.
pub(super) async fn put_subtrees(
    client: &Client,
    chain: &str,
    height: u32,
    roots: &[(u64, [u8; 32])],
) -> Result<()> {
    let height = i32::try_from(height).map_err(|_| corrupt("subtree height out of range"))?;
    let idx = roots
        .iter()
        .map(|(i, _)| signed(*i))
        .collect::<Result<Vec<i64>>>()?;
    let hashes: Vec<&[u8]> = roots.iter().map(|(_, h)| &h[..]).collect();
    client
        .execute(
            "INSERT INTO audit_tree (chain, height, idx, hash) SELECT $1, $2, i, h FROM unnest($3::bigint[], $4::bytea[]) AS t(i, h)
             ON CONFLICT (chain, height, idx) DO NOTHING",
            &[&chain, &height, &idx, &hashes],
        )
        .await
        .map_err(pg)?;
    Ok(())
}
