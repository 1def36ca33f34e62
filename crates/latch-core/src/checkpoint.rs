//! Signed checkpoints of audit chains, and the offline verifier of audit exports.
//!
//! A [`Checkpoint`] is a signed tree head: the chain, the number of records it covers, the
//! RFC 9162 Merkle root of those records, the time, and an ES256 signature by the *audit* key
//! (never the token key) over the line-oriented text of [`Checkpoint::message`].
//!
//! An export is JSON lines: each record's body exactly as sealed, and each checkpoint as
//! `{"checkpoint":{...}}`. [`verify_export`] needs nothing but the export and the audit public
//! key (and, optionally, a checkpoint the auditor saved earlier), and names every failure:
//!
//! | finding | what it means |
//! |---|---|
//! | `Unreadable` | a line is neither a record nor a checkpoint |
//! | `Missing` | sequence numbers skip: records were deleted |
//! | `Reordered` | a record appears after records that follow it |
//! | `Altered` | a record's hash no longer matches the next record's `prev_hash` |
//! | `ForgedCheckpoint` | a checkpoint's signature does not verify with the audit key |
//! | `CheckpointMismatch` | a signed root is not the root of the records it covers |
//! | `Truncated` | a checkpoint covers more records than the export holds |
//! | `ReplayedCheckpoint` | the newest checkpoint is older or smaller than the one the auditor saved |
//! | `Rewritten` | the saved checkpoint's root is not the root of the export's first records |
//! | `Unsigned` | records after the last checkpoint, or a chain with no checkpoint |

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use ring::rand::SecureRandom;
use ring::signature::{UnparsedPublicKey, ECDSA_P256_SHA256_FIXED};
use serde::{Deserialize, Serialize};

use crate::audit::{record_hash, GENESIS};
use crate::clock::UnixTime;
use crate::jws::{b64url, b64url_decode};
use crate::merkle::{leaf_hash, node_hash, Hash};
use crate::signing::{PublicKey, SignError, SigningKey};

/// A signed tree head of one audit chain.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Checkpoint {
    /// The chain.
    pub chain: String,
    /// How many records (sequence numbers 1..=size) it covers.
    pub size: u64,
    /// Their Merkle root, base64url.
    pub root: String,
    /// When it was made.
    pub time: UnixTime,
    /// The audit key's id.
    pub kid: String,
    /// ES256 over [`Checkpoint::message`], base64url.
    pub signature: String,
}

impl Checkpoint {
    /// The signed text.
    pub fn message(chain: &str, size: u64, root: &str, time: UnixTime) -> String {
        format!(
            "latch-audit-checkpoint/v1\n{chain}\n{size}\n{root}\n{}\n",
            time.0
        )
    }

    /// A checkpoint of `chain` at `size` records with `root`, signed by the audit key.
    pub fn sign(
        key: &SigningKey,
        chain: &str,
        size: u64,
        root: &Hash,
        time: UnixTime,
        rng: &dyn SecureRandom,
    ) -> Result<Self, SignError> {
        let root = b64url(root);
        let signature = key.sign_bytes(Self::message(chain, size, &root, time).as_bytes(), rng)?;
        Ok(Checkpoint {
            chain: chain.to_owned(),
            size,
            root,
            time,
            kid: key.kid().to_owned(),
            signature: b64url(signature),
        })
    }

    /// Whether the signature is the audit key's.
    pub fn verify(&self, key: &PublicKey) -> bool {
        let Ok(sig) = b64url_decode(&self.signature) else {
            return false;
        };
        self.kid == key.kid()
            && sig.len() == 64
            && UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, key.point())
                .verify(
                    Self::message(&self.chain, self.size, &self.root, self.time).as_bytes(),
                    &sig,
                )
                .is_ok()
    }

    /// The root as bytes.
    pub fn root_hash(&self) -> Option<Hash> {
        b64url_decode(&self.root).ok()?.try_into().ok()
    }

    /// The export line of this checkpoint.
    pub fn to_line(&self) -> String {
        serde_json::json!({ "checkpoint": self }).to_string()
    }
}

/// The Merkle root of a growing list of leaves, in O(log n) per leaf: the perfect subtrees
/// ("peaks") of the binary decomposition of the size, folded from the right, are exactly the
/// RFC 9162 tree.
#[derive(Clone, Debug, Default)]
pub struct Frontier {
    peaks: Vec<(Hash, u32)>,
    size: u64,
}

impl Frontier {
    /// Appends a leaf hash.
    pub fn push(&mut self, leaf: Hash) {
        let mut node = (leaf, 0u32);
        while let Some(&(top, height)) = self.peaks.last() {
            if height != node.1 {
                break;
            }
            self.peaks.pop();
            node = (node_hash(&top, &node.0), height + 1);
        }
        self.peaks.push(node);
        self.size += 1;
    }

    /// How many leaves.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The frontier as bytes (size, then each peak's height and hash), to be stored when the
    /// leaves themselves are archived away.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = self.size.to_be_bytes().to_vec();
        for (hash, height) in &self.peaks {
            out.extend_from_slice(&height.to_be_bytes());
            out.extend_from_slice(hash);
        }
        out
    }

    /// A frontier from [`Frontier::to_bytes`]; `None` if the bytes are not one.
    pub fn from_bytes(bytes: &[u8]) -> Option<Self> {
        let (size, mut rest) = bytes.split_at_checked(8)?;
        let size = u64::from_be_bytes(size.try_into().ok()?);
        let mut peaks = Vec::new();
        while !rest.is_empty() {
            let (height, tail) = rest.split_at_checked(4)?;
            let (hash, tail) = tail.split_at_checked(32)?;
            peaks.push((
                hash.try_into().ok()?,
                u32::from_be_bytes(height.try_into().ok()?),
            ));
            rest = tail;
        }
        // The peaks of `size` leaves are its binary digits, largest first.
        let expected: Vec<u32> = (0..64).rev().filter(|b| size >> b & 1 == 1).collect();
        let heights: Vec<u32> = peaks.iter().map(|(_, h)| *h).collect();
        (heights == expected).then_some(Frontier { peaks, size })
    }

    /// The root of the leaves so far.
    pub fn root(&self) -> Hash {
        let mut peaks = self.peaks.iter().rev();
        let Some(&(mut acc, _)) = peaks.next() else {
            return crate::merkle::root(&[]);
        };
        for (peak, _) in peaks {
            acc = node_hash(peak, &acc);
        }
        acc
    }
}

/// One thing wrong with an export.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Finding {
    /// Line `line` (from 1) is neither a record nor a checkpoint.
    Unreadable { line: usize },
    /// Records `from..=to` of `chain` are absent.
    Missing { chain: String, from: u64, to: u64 },
    /// Record `seq` of `chain` appears after a record that follows it.
    Reordered { chain: String, seq: u64 },
    /// Record `seq` of `chain` does not hash to the next record's `prev_hash`.
    Altered { chain: String, seq: u64 },
    /// The checkpoint of `chain` at `size` is not signed by the audit key.
    ForgedCheckpoint { chain: String, size: u64 },
    /// The checkpoint of `chain` at `size` signs another root than the records'.
    CheckpointMismatch { chain: String, size: u64 },
    /// A checkpoint of `chain` covers `size` records; the export has `records`.
    Truncated {
        chain: String,
        size: u64,
        records: u64,
    },
    /// The newest checkpoint of `chain`, at `size`, is older or smaller than the saved one.
    ReplayedCheckpoint { chain: String, size: u64 },
    /// The saved checkpoint at `size` does not match the export's first records.
    Rewritten { chain: String, size: u64 },
    /// Records of `chain` after `size` are covered by no checkpoint.
    Unsigned {
        chain: String,
        size: u64,
        records: u64,
    },
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Finding::Unreadable { line } => write!(f, "line {line}: unreadable (neither a record nor a checkpoint)"),
            Finding::Missing { chain, from, to } if from == to => write!(f, "chain {chain}: record {from} is missing"),
            Finding::Missing { chain, from, to } => write!(f, "chain {chain}: records {from} to {to} are missing"),
            Finding::Reordered { chain, seq } => write!(f, "chain {chain}: record {seq} is out of order (reordered)"),
            Finding::Altered { chain, seq } => {
                write!(f, "chain {chain}: record {seq} was altered (its hash does not match record {}'s prev_hash)", seq + 1)
            }
            Finding::ForgedCheckpoint { chain, size } => {
                write!(f, "chain {chain}: checkpoint at {size} records is forged (not signed by the audit key)")
            }
            Finding::CheckpointMismatch { chain, size } => write!(
                f,
                "chain {chain}: checkpoint at {size} records does not match them (records altered, missing or inserted)"
            ),
            Finding::Truncated { chain, size, records } => {
                write!(f, "chain {chain}: truncated: a checkpoint covers {size} records, the export has {records}")
            }
            Finding::ReplayedCheckpoint { chain, size } => {
                write!(f, "chain {chain}: checkpoint at {size} records is a replayed old checkpoint")
            }
            Finding::Rewritten { chain, size } => {
                write!(f, "chain {chain}: rewritten: the first {size} records are not those of your saved checkpoint")
            }
            Finding::Unsigned { chain, size, records } => {
                write!(f, "chain {chain}: records {} to {records} are covered by no checkpoint", size + 1)
            }
        }
    }
}

/// What [`verify_export`] found.
#[derive(Clone, Debug, Default)]
pub struct ExportReport {
    /// Records read, per chain.
    pub records: BTreeMap<String, u64>,
    /// Checkpoints read.
    pub checkpoints: u64,
    /// Everything wrong, in the order found; empty means the export verifies.
    pub findings: Vec<Finding>,
}

/// What verification reads of a record line: its place in its chain and its link to the record
/// before. The rest of the line is covered by its hash (chained, and under the signed roots), so
/// it is not parsed: an edit anywhere in the line is found by the hashes, not by the parser.
#[derive(Deserialize)]
struct RecordPlace<'a> {
    #[serde(borrow)]
    chain: std::borrow::Cow<'a, str>,
    seq: u64,
    #[serde(borrow)]
    prev_hash: std::borrow::Cow<'a, str>,
    // Present in every record, absent from checkpoint lines.
    #[allow(dead_code)]
    actor: serde::de::IgnoredAny,
    #[allow(dead_code)]
    event: serde::de::IgnoredAny,
}

/// A record as verification keeps it: (record hash, `prev_hash`, leaf hash).
type Kept = (Hash, Hash, Hash);

/// The records of one chain read so far, by sequence number.
///
/// An export lists each chain's records in order, each linked to the one before. Such a run is
/// kept as the first record's number and link, then each record's hash and leaf hash (64 bytes
/// a record, in fixed-size chunks so that memory grows by the record, not by doubling): the
/// link of every later record is the hash before it, which was checked when it came. The first
/// record that does not continue the run (a gap, a repeat, an earlier number, a broken link)
/// moves everything into a map, where a later record with a number already read replaces the
/// earlier one, and the links are checked at the end.
enum Records {
    Run {
        first: u64,
        first_prev: Hash,
        chunks: Vec<Vec<(Hash, Hash)>>,
        len: u64,
    },
    Map(BTreeMap<u64, Kept>),
}

/// Records in one chunk of a run.
const CHUNK: usize = 1 << 16;

impl Default for Records {
    fn default() -> Self {
        Records::Run {
            first: 0,
            first_prev: GENESIS,
            chunks: Vec::new(),
            len: 0,
        }
    }
}

impl Records {
    fn insert(&mut self, seq: u64, (hash, prev, leaf): Kept) {
        if let Records::Run {
            first,
            first_prev,
            chunks,
            len,
        } = self
        {
            let continues = match chunks.last().and_then(|c| c.last()) {
                None => true,
                Some(&(last_hash, _)) => seq == *first + *len && prev == last_hash,
            };
            if continues {
                if *len == 0 {
                    (*first, *first_prev) = (seq, prev);
                }
                if chunks.last().is_none_or(|c| c.len() == CHUNK) {
                    chunks.push(Vec::with_capacity(CHUNK));
                }
                if let Some(chunk) = chunks.last_mut() {
                    chunk.push((hash, leaf));
                }
                *len += 1;
                return;
            }
            *self = Records::Map(self.iter().collect());
        }
        if let Records::Map(map) = self {
            map.insert(seq, (hash, prev, leaf));
        }
    }

    /// Every record kept, in sequence order.
    fn iter(&self) -> Box<dyn Iterator<Item = (u64, Kept)> + '_> {
        match self {
            Records::Run {
                first,
                first_prev,
                chunks,
                ..
            } => {
                let mut prev = *first_prev;
                Box::new(
                    chunks
                        .iter()
                        .flatten()
                        .zip(*first..)
                        .map(move |(&(hash, leaf), seq)| {
                            let kept = (hash, prev, leaf);
                            prev = hash;
                            (seq, kept)
                        }),
                )
            }
            Records::Map(map) => Box::new(map.iter().map(|(&seq, &kept)| (seq, kept))),
        }
    }

    /// The highest sequence number kept.
    fn last(&self) -> Option<u64> {
        match self {
            Records::Run { len: 0, .. } => None,
            Records::Run { first, len, .. } => Some(first + len - 1),
            Records::Map(map) => map.keys().next_back().copied(),
        }
    }
}

#[derive(Default)]
struct ChainState {
    records: Records,
    expected: u64,
    /// Gaps in the sequence numbers seen so far, as inclusive ranges `from -> to`: a hostile
    /// file with a huge sequence number costs one entry, not one per skipped number.
    missing: BTreeMap<u64, u64>,
    checkpoints: Vec<Checkpoint>,
}

/// Verifies an export (its lines, in order) with the audit public keys (one per writer that
/// signs checkpoints: each replica has its own), optionally against a checkpoint the auditor
/// saved earlier. `progress` is called with the number of lines read,
/// every 100,000 lines.
pub fn verify_export<I, S>(
    lines: I,
    keys: &[PublicKey],
    saved: Option<&Checkpoint>,
    mut progress: impl FnMut(u64),
) -> ExportReport
where
    I: IntoIterator<Item = S>,
    S: AsRef<str>,
{
    let mut report = ExportReport::default();
    let mut chains: BTreeMap<String, ChainState> = BTreeMap::new();
    for (i, line) in lines.into_iter().enumerate() {
        if (i as u64 + 1) % 100_000 == 0 {
            progress(i as u64 + 1);
        }
        read_line(line.as_ref(), i + 1, &mut chains, &mut report);
    }

    for (chain, state) in &chains {
        check_chain(
            chain,
            state,
            keys,
            saved.filter(|s| &s.chain == chain),
            &mut report.findings,
        );
    }
    if let Some(saved) = saved {
        if !chains.contains_key(&saved.chain) {
            report.findings.push(Finding::Truncated {
                chain: saved.chain.clone(),
                size: saved.size,
                records: 0,
            });
        }
    }
    report
}

/// Takes line `number` (from 1) of an export: a record into its chain's state, a checkpoint
/// into its chain's list; a line that is neither is unreadable.
fn read_line(
    line: &str,
    number: usize,
    chains: &mut BTreeMap<String, ChainState>,
    report: &mut ExportReport,
) {
    if line.trim().is_empty() {
        return;
    }
    if let Ok(record) = serde_json::from_str::<RecordPlace<'_>>(line) {
        take_record(&record, line, number, chains, report);
        return;
    }
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Line {
        checkpoint: Checkpoint,
    }
    match serde_json::from_str::<Line>(line) {
        Ok(Line { checkpoint }) => {
            report.checkpoints += 1;
            chains
                .entry(checkpoint.chain.clone())
                .or_default()
                .checkpoints
                .push(checkpoint);
        }
        Err(_) => report.findings.push(Finding::Unreadable { line: number }),
    }
}

/// Keeps a record line's hashes in its chain's state and counts it, noting a sequence number
/// out of place.
fn take_record(
    record: &RecordPlace<'_>,
    line: &str,
    number: usize,
    chains: &mut BTreeMap<String, ChainState>,
    report: &mut ExportReport,
) {
    if !chains.contains_key(&*record.chain) {
        chains.insert(record.chain.to_string(), ChainState::default());
    }
    let Some(state) = chains.get_mut(&*record.chain) else {
        return;
    };
    state.expected = state.expected.max(1);
    let seq = record.seq;
    if seq == 0 || seq == u64::MAX {
        report.findings.push(Finding::Unreadable { line: number });
        return;
    }
    if let Some(finding) = place_seq(state, &record.chain, seq) {
        report.findings.push(finding);
    }
    let prev: Hash = b64url_decode(&record.prev_hash)
        .ok()
        .and_then(|v| v.try_into().ok())
        .unwrap_or([0xff; 32]);
    state
        .records
        .insert(seq, (record_hash(line), prev, leaf_hash(line.as_bytes())));
    match report.records.get_mut(&*record.chain) {
        Some(n) => *n += 1,
        None => {
            report.records.insert(record.chain.to_string(), 1);
        }
    }
}

/// Moves the chain's expected sequence number past `seq`: a number beyond it leaves a gap, one
/// before it fills a gap (reordered) or repeats a record (altered).
fn place_seq(state: &mut ChainState, chain: &str, seq: u64) -> Option<Finding> {
    let finding = if seq > state.expected {
        state.missing.insert(state.expected, seq - 1);
        None
    } else if seq < state.expected {
        if take_from_gaps(&mut state.missing, seq) {
            Some(Finding::Reordered {
                chain: chain.to_owned(),
                seq,
            })
        } else {
            // A second record with this number: one of the two is not the sealed one.
            Some(Finding::Altered {
                chain: chain.to_owned(),
                seq,
            })
        }
    } else {
        None
    };
    state.expected = state.expected.max(seq + 1);
    finding
}

/// Removes `seq` from the gap that holds it, if one does (splitting the gap); whether it did.
fn take_from_gaps(gaps: &mut BTreeMap<u64, u64>, seq: u64) -> bool {
    let Some((&from, &to)) = gaps.range(..=seq).next_back() else {
        return false;
    };
    if seq > to {
        return false;
    }
    gaps.remove(&from);
    if from < seq {
        gaps.insert(from, seq - 1);
    }
    if seq < to {
        gaps.insert(seq + 1, to);
    }
    true
}

/// Everything wrong with one chain of an export: gaps, broken links, and checkpoints (the
/// chain's own and the one the auditor saved) that are forged, do not match, or leave records
/// unsigned.
fn check_chain(
    chain: &str,
    state: &ChainState,
    keys: &[PublicKey],
    saved: Option<&Checkpoint>,
    out: &mut Vec<Finding>,
) {
    for (&from, &to) in &state.missing {
        out.push(Finding::Missing {
            chain: chain.to_owned(),
            from,
            to,
        });
    }
    check_links(chain, &state.records, out);
    let signed = Signed {
        chain,
        keys,
        roots: roots_at(&state.records, &state.checkpoints, saved),
        records: state.records.last().unwrap_or(0),
    };
    let newest = signed.check_checkpoints(&state.checkpoints, out);
    if let Some(s) = saved {
        signed.check_saved(s, newest, out);
    }
    signed.check_all_signed(newest, out);
}

/// Each record's link to the one before, in sequence order.
fn check_links(chain: &str, records: &Records, out: &mut Vec<Finding>) {
    let mut previous: Option<(u64, Hash)> = None;
    for (seq, (hash, prev, _)) in records.iter() {
        let expected_prev = match previous {
            Some((p, h)) if p + 1 == seq => Some(h),
            None if seq == 1 => Some(GENESIS),
            _ => None,
        };
        if let Some(expected) = expected_prev {
            if prev != expected {
                out.push(Finding::Altered {
                    chain: chain.to_owned(),
                    seq: seq.saturating_sub(1).max(1),
                });
            }
        }
        previous = Some((seq, hash));
    }
}

/// The Merkle roots of the records at every checkpoint's size (and the saved one's), in one
/// pass over the leaves.
fn roots_at(
    records: &Records,
    checkpoints: &[Checkpoint],
    saved: Option<&Checkpoint>,
) -> BTreeMap<u64, Hash> {
    let mut sizes: BTreeSet<u64> = checkpoints.iter().map(|c| c.size).collect();
    if let Some(s) = saved {
        sizes.insert(s.size);
    }
    let mut roots: BTreeMap<u64, Hash> = BTreeMap::new();
    let mut frontier = Frontier::default();
    if sizes.contains(&0) {
        roots.insert(0, frontier.root());
    }
    for (_, (_, _, leaf)) in records.iter() {
        frontier.push(leaf);
        if sizes.contains(&frontier.size()) {
            roots.insert(frontier.size(), frontier.root());
        }
    }
    roots
}

/// What a chain's checkpoints are checked against: the keys that sign them, the roots of the
/// records at their sizes, and the highest sequence number read.
struct Signed<'a> {
    chain: &'a str,
    keys: &'a [PublicKey],
    roots: BTreeMap<u64, Hash>,
    records: u64,
}

impl Signed<'_> {
    fn genuine(&self, c: &Checkpoint) -> bool {
        self.keys.iter().any(|k| c.verify(k))
    }

    /// Every genuine checkpoint must match the records it covers; returns the newest. The
    /// newest is the one covering the most records (the latest, among equals): an archive's
    /// checkpoint is legitimately smaller and later than checkpoints made before it.
    fn check_checkpoints<'c>(
        &self,
        checkpoints: &'c [Checkpoint],
        out: &mut Vec<Finding>,
    ) -> Option<&'c Checkpoint> {
        let chain = || self.chain.to_owned();
        let mut newest: Option<&Checkpoint> = None;
        for c in checkpoints {
            if !self.genuine(c) {
                out.push(Finding::ForgedCheckpoint {
                    chain: chain(),
                    size: c.size,
                });
                continue;
            }
            if newest.is_none_or(|n| (c.size, c.time) > (n.size, n.time)) {
                newest = Some(c);
            }
            if c.size > self.records {
                out.push(Finding::Truncated {
                    chain: chain(),
                    size: c.size,
                    records: self.records,
                });
            } else if self.roots.get(&c.size).copied() != c.root_hash() {
                out.push(Finding::CheckpointMismatch {
                    chain: chain(),
                    size: c.size,
                });
            }
        }
        newest
    }

    /// The checkpoint the auditor saved must be genuine, not newer than the export's newest,
    /// and match the records.
    fn check_saved(&self, s: &Checkpoint, newest: Option<&Checkpoint>, out: &mut Vec<Finding>) {
        let chain = || self.chain.to_owned();
        if !self.genuine(s) {
            out.push(Finding::ForgedCheckpoint {
                chain: chain(),
                size: s.size,
            });
        } else if newest.is_some_and(|n| n.size < s.size || (n.size == s.size && n.time < s.time)) {
            let n = newest.map(|n| n.size).unwrap_or(0);
            out.push(Finding::ReplayedCheckpoint {
                chain: chain(),
                size: n,
            });
        } else if s.size > self.records {
            out.push(Finding::Truncated {
                chain: chain(),
                size: s.size,
                records: self.records,
            });
        } else if self.roots.get(&s.size).copied() != s.root_hash() {
            out.push(Finding::Rewritten {
                chain: chain(),
                size: s.size,
            });
        }
    }

    /// Records past the newest checkpoint (or with none at all) are unsigned.
    fn check_all_signed(&self, newest: Option<&Checkpoint>, out: &mut Vec<Finding>) {
        let size = match newest {
            None => 0,
            Some(n) if n.size < self.records => n.size,
            Some(_) => return,
        };
        out.push(Finding::Unsigned {
            chain: self.chain.to_owned(),
            size,
            records: self.records,
        });
    }
}

#[cfg(test)]
mod tests;
