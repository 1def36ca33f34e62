//! The index of the audit journals: one row of integers per record, what queries search.
//!
//! A row holds the record's chain, sequence number, time, type, outcome, ISV, target, jti,
//! operation and features, and its Merkle leaf hash; names (chains, resource ids, types, ...)
//! are numbered once in `audit_names`, and a jti is kept as the first 8 bytes of its SHA-256.
//! The record itself stays in its journal. Every record a query returns is read from the
//! journal, hashed, and compared with its row (leaf and every column): an edited record or an
//! edited row is an error naming the record. The index is rebuilt from the journals by
//! `latch audit reindex`.

use std::collections::HashMap;

use latch_audit::journal::Locator;
use rusqlite::{params, Connection, OptionalExtension, Transaction};

pub(super) use crate::audit_fields::Fields;
use crate::audit_fields::{broken_link, stored_hash};
use crate::{Result, StoreError};

fn sql(e: rusqlite::Error) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

/// The key a jti is found by: the first 8 bytes of its SHA-256.
pub(super) fn jti_key(jti: &str) -> i64 {
    let d = ring::digest::digest(&ring::digest::SHA256, jti.as_bytes());
    let mut b = [0u8; 8];
    b.copy_from_slice(&d.as_ref()[..8]);
    i64::from_be_bytes(b)
}

/// Numbers for names, looked up (and, while indexing, made) once per run.
#[derive(Default)]
pub(super) struct Names {
    ids: HashMap<String, i64>,
    names: HashMap<i64, String>,
}

impl Names {
    /// The number of `name`; made if `create`, otherwise `None` for a name never indexed.
    pub(super) fn id(&mut self, c: &Connection, name: &str, create: bool) -> Result<Option<i64>> {
        if let Some(id) = self.ids.get(name) {
            return Ok(Some(*id));
        }
        let mut found: Option<i64> = c
            .prepare_cached("SELECT id FROM audit_names WHERE name = ?1")
            .map_err(sql)?
            .query_row([name], |r| r.get(0))
            .optional()
            .map_err(sql)?;
        if found.is_none() && create {
            c.prepare_cached("INSERT INTO audit_names (name) VALUES (?1)")
                .map_err(sql)?
                .execute([name])
                .map_err(sql)?;
            found = Some(c.last_insert_rowid());
        }
        if let Some(id) = found {
            self.ids.insert(name.to_owned(), id);
            self.names.insert(id, name.to_owned());
        }
        Ok(found)
    }

    /// The name numbered `id`.
    pub(super) fn name(&mut self, c: &Connection, id: i64) -> Result<String> {
        if let Some(name) = self.names.get(&id) {
            return Ok(name.clone());
        }
        let name: String = c
            .prepare_cached("SELECT name FROM audit_names WHERE id = ?1")
            .map_err(sql)?
            .query_row([id], |r| r.get(0))
            .optional()
            .map_err(sql)?
            .ok_or_else(|| StoreError::Corrupt(format!("audit index: no name numbered {id}")))?;
        self.ids.insert(name.clone(), id);
        self.names.insert(id, name.clone());
        Ok(name)
    }
}

/// One index row.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Row {
    chain: i64,
    seq: i64,
    time: i64,
    kind: i64,
    outcome: i64,
    isv: Option<i64>,
    target: Option<i64>,
    jti: Option<i64>,
    operation: Option<i64>,
    features: Option<String>,
    leaf: Vec<u8>,
}

const COLUMNS: &str =
    "chain, seq, time, kind, outcome, isv, target, jti, operation, features, leaf";
const INSERT: &str = "INSERT INTO audit_index (chain, seq, time, kind, outcome, isv, target, jti, operation, features, leaf) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)";

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Row> {
    Ok(Row {
        chain: r.get(0)?,
        seq: r.get(1)?,
        time: r.get(2)?,
        kind: r.get(3)?,
        outcome: r.get(4)?,
        isv: r.get(5)?,
        target: r.get(6)?,
        jti: r.get(7)?,
        operation: r.get(8)?,
        features: r.get(9)?,
        leaf: r.get(10)?,
    })
}

/// The row of record `seq` of `chain` with `fields`. With `create` false, a name never
/// indexed is `None` (the row cannot match).
fn row_of(
    c: &Connection,
    names: &mut Names,
    chain: &str,
    seq: u64,
    fields: &Fields,
    create: bool,
) -> Result<Option<Row>> {
    let mut id = |name: Option<&str>| -> Result<Option<Option<i64>>> {
        match name {
            None => Ok(Some(None)),
            Some(n) => Ok(names.id(c, n, create)?.map(Some)),
        }
    };
    let (
        Some(Some(chain_id)),
        Some(Some(kind)),
        Some(Some(outcome)),
        Some(isv),
        Some(target),
        Some(operation),
    ) = (
        id(Some(chain))?,
        id(Some(fields.index.kind))?,
        id(Some(fields.index.outcome))?,
        id(fields.index.isv.as_deref())?,
        id(fields.index.target.as_deref())?,
        id(fields.operation.as_deref())?,
    )
    else {
        return Ok(None);
    };
    Ok(Some(Row {
        chain: chain_id,
        seq: i64::try_from(seq).map_err(|_| {
            StoreError::Corrupt(format!(
                "audit chain {chain}: sequence number {seq} out of range"
            ))
        })?,
        time: fields.time,
        kind,
        outcome,
        isv,
        target,
        jti: fields.index.jti.as_deref().map(jti_key),
        operation,
        features: fields.features.clone(),
        leaf: fields.leaf.to_vec(),
    }))
}

/// The row record `seq` of `chain` must have, from its body, with the record's link to the one
/// before it. With `create` false, a name never indexed is `None` (the row cannot match).
pub(super) fn derive(
    c: &Connection,
    names: &mut Names,
    chain: &str,
    seq: u64,
    body: &str,
    create: bool,
) -> Result<Option<(Row, String)>> {
    let (fields, prev_hash) = Fields::of_body(chain, seq, body)?;
    Ok(row_of(c, names, chain, seq, &fields, create)?.map(|row| (row, prev_hash)))
}

/// Inserts one row.
fn write_row(tx: &Transaction<'_>, r: &Row) -> Result<()> {
    tx.prepare_cached(INSERT)
        .map_err(sql)?
        .execute(params![
            r.chain,
            r.seq,
            r.time,
            r.kind,
            r.outcome,
            r.isv,
            r.target,
            r.jti,
            r.operation,
            r.features,
            r.leaf
        ])
        .map(|_| ())
        .map_err(sql)
}

/// A row made while indexing names every name it needs.
fn not_made() -> StoreError {
    StoreError::Unavailable("audit index: a name was not made".into())
}

/// Inserts the rows of consecutive records of `chain` this process appended, from what it
/// knew when it appended them (nothing to parse back).
pub(super) fn insert_appended(
    tx: &Transaction<'_>,
    names: &mut Names,
    chain: &str,
    appended: &[(u64, Fields)],
) -> Result<()> {
    for (seq, fields) in appended {
        let r = row_of(tx, names, chain, *seq, fields, true)?.ok_or_else(not_made)?;
        write_row(tx, &r)?;
    }
    Ok(())
}

/// Inserts the rows of consecutive records of `chain`, checking that each links to the one
/// before it (to `prev`, the hash of the record before the first, when it is known); returns
/// the hash of the last.
pub(super) fn insert(
    tx: &Transaction<'_>,
    names: &mut Names,
    chain: &str,
    mut prev: Option<[u8; 32]>,
    bodies: &[(u64, String)],
) -> Result<Option<[u8; 32]>> {
    for (seq, body) in bodies {
        let (r, prev_hash) = derive(tx, names, chain, *seq, body, true)?.ok_or_else(not_made)?;
        if prev.is_some_and(|p| latch_core::jws::b64url(p) != prev_hash) {
            return Err(broken_link(chain, *seq));
        }
        write_row(tx, &r)?;
        prev = Some(latch_core::audit::record_hash(body));
    }
    Ok(prev)
}

/// The last sequence number of `chain` in the index (0 for none).
pub(super) fn last_indexed(c: &Connection, names: &mut Names, chain: &str) -> Result<u64> {
    let Some(id) = names.id(c, chain, false)? else {
        return Ok(0);
    };
    let last: Option<i64> = c
        .prepare_cached("SELECT max(seq) FROM audit_index WHERE chain = ?1")
        .map_err(sql)?
        .query_row([id], |r| r.get(0))
        .map_err(sql)?;
    Ok(last.unwrap_or(0).max(0) as u64)
}

/// The rows of `chain` after `after`, in order.
pub(super) fn rows_after(
    c: &Connection,
    names: &mut Names,
    chain: &str,
    after: u64,
) -> Result<Vec<(u64, Row)>> {
    let Some(id) = names.id(c, chain, false)? else {
        return Ok(Vec::new());
    };
    let mut stmt = c
        .prepare_cached(&format!(
            "SELECT {COLUMNS} FROM audit_index WHERE chain = ?1 AND seq > ?2 ORDER BY seq"
        ))
        .map_err(sql)?;
    let rows = stmt
        .query_map(params![id, after as i64], row)
        .map_err(sql)?
        .collect::<rusqlite::Result<Vec<_>>>()
        .map_err(sql)?;
    Ok(rows.into_iter().map(|r| (r.seq.max(0) as u64, r)).collect())
}

/// Removes the rows of `chain` up to `through` (archived).
pub(super) fn remove_through(
    c: &Connection,
    names: &mut Names,
    chain: &str,
    through: u64,
) -> Result<()> {
    if let Some(id) = names.id(c, chain, false)? {
        c.execute(
            "DELETE FROM audit_index WHERE chain = ?1 AND seq <= ?2",
            params![id, through as i64],
        )
        .map_err(sql)?;
    }
    Ok(())
}

/// Compares a row with the row its record's body gives.
pub(super) fn check(
    c: &Connection,
    names: &mut Names,
    chain: &str,
    stored: &Row,
    body: &str,
) -> Result<()> {
    let seq = stored.seq.max(0) as u64;
    match derive(c, names, chain, seq, body, false)? {
        Some((expected, _)) if &expected == stored => Ok(()),
        _ => Err(StoreError::Corrupt(format!(
            "audit chain {chain}, record {seq}: the index row differs from the journal"
        ))),
    }
}

/// A chain's locator, shared by the queries that read it.
pub(super) type SharedLocator = std::sync::Arc<std::sync::Mutex<Locator>>;

/// The cursor of a row: chain number and sequence number in one integer.
fn cursor(chain: i64, seq: i64) -> i64 {
    (chain << 40) | seq
}

/// One page of the records matching `q`, each read from its journal (`locators`, by chain) and
/// checked against its row; the cursor of the next page, if there is one.
pub(super) fn query(
    c: &Connection,
    q: &latch_audit::AuditQuery,
    locator: &mut dyn FnMut(&str) -> Result<Option<SharedLocator>>,
) -> Result<(Vec<latch_audit::StoredAuditRecord>, Option<i64>)> {
    let mut names = Names::default();
    let limit = q.limit.clamp(1, 1000);
    let Some((text, args)) = query_sql(c, &mut names, q, limit)? else {
        return Ok((Vec::new(), None));
    };
    let rows = c
        .prepare(&text)
        .map_err(sql)?
        .query_map(rusqlite::params_from_iter(args.iter()), row)
        .map_err(sql)?
        .collect::<rusqlite::Result<Vec<_>>>()
        .map_err(sql)?;
    let mut out = Vec::new();
    let mut last = None;
    for r in rows {
        if out.len() == limit {
            return Ok((out, last));
        }
        let chain = names.name(c, r.chain)?;
        let seq = r.seq.max(0) as u64;
        let body = journal_body(locator, &chain, seq)?;
        // A jti filter matched a key: the record must name the very jti.
        let names_jti = match &q.jti {
            Some(jti) => record_names_jti(&chain, seq, &body, jti)?,
            None => true,
        };
        check(c, &mut names, &chain, &r, &body)?;
        if !names_jti {
            continue;
        }
        last = Some(cursor(r.chain, r.seq));
        out.push(latch_audit::StoredAuditRecord {
            chain,
            seq,
            hash: latch_core::audit::record_hash(&body),
            body,
        });
    }
    Ok((out, None))
}

/// The statement that selects the rows matching `q` after its cursor, at most `limit` and one
/// more (to know whether there is a next page), with its arguments; `None` when a name it
/// filters on was never indexed, so nothing matches.
fn query_sql(
    c: &Connection,
    names: &mut Names,
    q: &latch_audit::AuditQuery,
    limit: usize,
) -> Result<Option<(String, Vec<rusqlite::types::Value>)>> {
    let mut text = format!("SELECT {COLUMNS} FROM audit_index WHERE (chain, seq) > (?1, ?2)");
    let after = q.after.unwrap_or(0).max(0);
    let mut args: Vec<rusqlite::types::Value> =
        vec![(after >> 40).into(), (after & ((1 << 40) - 1)).into()];
    let mut add =
        |clause: &str, value: rusqlite::types::Value, args: &mut Vec<rusqlite::types::Value>| {
            args.push(value);
            text.push_str(&format!(" AND {clause} ?{}", args.len()));
        };
    // Each name filter, by number: a name never indexed matches nothing.
    let filters = [
        ("chain =", q.chain.clone()),
        ("isv =", q.isv.as_ref().map(|v| v.canonical().to_owned())),
        (
            "target =",
            q.target.as_ref().map(|v| v.canonical().to_owned()),
        ),
        ("kind =", q.kind.clone()),
        ("outcome =", q.outcome.clone()),
        ("operation =", q.operation.clone()),
    ];
    for (clause, name) in filters {
        if let Some(name) = name {
            match names.id(c, &name, false)? {
                Some(id) => add(clause, id.into(), &mut args),
                None => return Ok(None),
            }
        }
    }
    if let Some(jti) = &q.jti {
        add("jti =", jti_key(jti).into(), &mut args);
    }
    if let Some(f) = q.feature {
        add(
            "(',' || features || ',') LIKE",
            format!("%,{},%", f.as_str()).into(),
            &mut args,
        );
    }
    if let Some(from) = q.from {
        add("time >=", from.0.into(), &mut args);
    }
    if let Some(to) = q.to {
        add("time <", to.0.into(), &mut args);
    }
    text.push_str(&format!(" ORDER BY chain, seq LIMIT {}", limit + 1));
    Ok(Some((text, args)))
}

/// The body of record `seq` of `chain`, read from the chain's journal; a row in the index whose
/// record the journal does not hold is an error.
fn journal_body(
    locator: &mut dyn FnMut(&str) -> Result<Option<SharedLocator>>,
    chain: &str,
    seq: u64,
) -> Result<String> {
    locator(chain)?
        .ok_or_else(|| {
            StoreError::Corrupt(format!(
                "audit chain {chain} has rows in the index but no journal"
            ))
        })?
        .lock()
        .map_err(|_| StoreError::Unavailable("audit locator lock poisoned".into()))?
        .get(seq)
        .map_err(super::audit_journal::journal_error)?
        .ok_or_else(|| {
            StoreError::Corrupt(format!(
                "audit chain {chain}, record {seq}: in the index, not in the journal"
            ))
        })
}

/// Whether record `seq` of `chain` names the very `jti` (its row matched only the jti's key).
fn record_names_jti(chain: &str, seq: u64, body: &str, jti: &str) -> Result<bool> {
    let record: latch_core::audit::SealedRecord = serde_json::from_str(body).map_err(|_| {
        StoreError::Corrupt(format!(
            "audit chain {chain}, record {seq}: not a valid audit record"
        ))
    })?;
    Ok(record.event.index().jti.as_deref() == Some(jti))
}

/// The records of issued tokens whose jti has `jti`'s key: (chain, sequence number), to be read
/// and compared.
pub(super) fn issued_with(c: &Connection, jti: &str) -> Result<Vec<(String, u64, Row)>> {
    let mut names = Names::default();
    let Some(kind) = names.id(c, "limited_access_token_issued", false)? else {
        return Ok(Vec::new());
    };
    let rows = c
        .prepare_cached(&format!(
            "SELECT {COLUMNS} FROM audit_index WHERE jti = ?1 AND kind = ?2 ORDER BY chain, seq"
        ))
        .map_err(sql)?
        .query_map(params![jti_key(jti), kind], row)
        .map_err(sql)?
        .collect::<rusqlite::Result<Vec<_>>>()
        .map_err(sql)?;
    rows.into_iter()
        .map(|r| Ok((names.name(c, r.chain)?, r.seq.max(0) as u64, r)))
        .collect()
}

/// The stored subtree roots of `chain` at `height` with index in `[from, to)` (height 0: the
/// leaves of the indexed records).
pub(super) fn subtrees(
    c: &Connection,
    chain: &str,
    height: u32,
    from: u64,
    to: u64,
) -> Result<Vec<(u64, [u8; 32])>> {
    let Some(id) = Names::default().id(c, chain, false)? else {
        return Ok(Vec::new());
    };
    let (from, to) = (
        i64::try_from(from).unwrap_or(i64::MAX),
        i64::try_from(to).unwrap_or(i64::MAX),
    );
    let read = |r: &rusqlite::Row<'_>| Ok((r.get::<_, i64>(0)?, r.get::<_, Vec<u8>>(1)?));
    let rows: Vec<(i64, Vec<u8>)> = if height == 0 {
        c.prepare_cached(
            "SELECT seq - 1, leaf FROM audit_index WHERE chain = ?1 AND seq > ?2 AND seq <= ?3 ORDER BY seq",
        )
        .and_then(|mut s| s.query_map(params![id, from, to], read)?.collect())
    } else {
        c.prepare_cached(
            "SELECT idx, hash FROM audit_tree WHERE chain = ?1 AND height = ?2 AND idx >= ?3 AND idx < ?4 ORDER BY idx",
        )
        .and_then(|mut s| s.query_map(params![id, height, from, to], read)?.collect())
    }
    .map_err(sql)?;
    rows.into_iter()
        .map(|(i, h): (i64, Vec<u8>)| Ok((i.max(0) as u64, stored_hash(h)?)))
        .collect()
}

/// Keeps subtree roots of `chain` at `height`.
pub(super) fn put_subtrees(
    tx: &Transaction<'_>,
    chain: &str,
    height: u32,
    roots: &[(u64, [u8; 32])],
) -> Result<()> {
    let id = Names::default().id(tx, chain, true)?.ok_or_else(not_made)?;
    let mut stmt = tx
        .prepare_cached(
            "INSERT OR IGNORE INTO audit_tree (chain, height, idx, hash) VALUES (?1, ?2, ?3, ?4)",
        )
        .map_err(sql)?;
    for (idx, hash) in roots {
        let idx = i64::try_from(*idx)
            .map_err(|_| StoreError::Corrupt("subtree index out of range".into()))?;
        stmt.execute(params![id, height, idx, &hash[..]])
            .map_err(sql)?;
    }
    Ok(())
}
