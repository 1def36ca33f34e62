//! Inclusion and consistency proofs (RFC 9162) of an audit chain, from stored subtrees.
//!
//! A proof is the list of the roots of a few ranges of leaves
//! ([`merkle::consistency_ranges`], [`merkle::inclusion_ranges`]), and each range is made of
//! whole subtrees ([`merkle::subtrees`]). The store keeps the leaves (in its audit index) and
//! the roots of complete subtrees at every eighth height (8, 16, 24, ...), each made from the
//! 256 below it the first time a proof needs it, then kept. A subtree of height `h` is then
//! read as at most `2^(h mod 8)` stored roots, so a proof costs a few hundred hashes read per
//! range, whatever the size of the log; only the first proof over a long log makes the levels.
//!
//! Nothing here is trusted by whoever checks a proof: a stored root that was altered gives a
//! proof that does not verify against the signed checkpoints.

use latch_core::merkle::{self, Hash, Range};

use crate::{AuditError, AuditStore, Result};

/// Stored subtrees are this many heights apart.
pub const STRIDE: u32 = 8;
/// Subtrees made in one go (and their leaves held in memory): 1,024 × 256 hashes at most.
const MAKE_AT_ONCE: usize = 1024;

/// That the tree of `first` records is a prefix of the tree of `second`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConsistencyProof {
    /// The root over the first `first` records.
    pub first_root: Hash,
    /// The root over the first `second` records.
    pub second_root: Hash,
    /// The proof's hashes, in order.
    pub proof: Vec<Hash>,
}

/// That a record is in the tree of `size` records.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InclusionProof {
    /// The record's leaf hash.
    pub leaf: Hash,
    /// The root over the first `size` records.
    pub root: Hash,
    /// The proof's hashes, from the leaf's sibling up.
    pub proof: Vec<Hash>,
}

type Boxed<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = Result<T>> + Send + 'a>>;

/// The tree of one chain, as the store holds it.
struct Tree<'a> {
    store: &'a dyn AuditStore,
    chain: &'a str,
}

impl Tree<'_> {
    /// The roots of the subtrees of `height` (a multiple of [`STRIDE`]) with index in
    /// `[from, to)`: read, or made from the height below and kept.
    fn level(&self, height: u32, from: u64, to: u64) -> Boxed<'_, Vec<Hash>> {
        Box::pin(async move {
            let stored = self
                .store
                .audit_subtrees(self.chain, height, from, to)
                .await?;
            let mut roots: Vec<Option<Hash>> = vec![None; usize::try_from(to - from).unwrap_or(0)];
            for (i, hash) in stored {
                if let Some(slot) = i.checked_sub(from).and_then(|k| roots.get_mut(k as usize)) {
                    *slot = Some(hash);
                }
            }
            if height == 0 {
                return roots.into_iter().collect::<Option<Vec<_>>>().ok_or_else(|| {
                    AuditError::Refused(format!(
                        "records {} to {to} of chain {} are not all in the audit index (archived, or not written yet)",
                        from + 1,
                        self.chain
                    ))
                });
            }
            let mut k = 0;
            while k < roots.len() {
                if roots[k].is_some() {
                    k += 1;
                    continue;
                }
                let start = k;
                while k < roots.len() && roots[k].is_none() && k - start < MAKE_AT_ONCE {
                    k += 1;
                }
                let (a, b) = (from + start as u64, from + k as u64);
                let below = self
                    .level(height - STRIDE, a << STRIDE, b << STRIDE)
                    .await?;
                let made: Vec<(u64, Hash)> = below
                    .chunks(1 << STRIDE)
                    .zip(a..)
                    .map(|(chunk, i)| (i, merkle::root(chunk)))
                    .collect();
                self.store
                    .put_audit_subtrees(self.chain, height, &made)
                    .await?;
                for (slot, (_, hash)) in roots[start..k].iter_mut().zip(made) {
                    *slot = Some(hash);
                }
            }
            roots
                .into_iter()
                .collect::<Option<Vec<_>>>()
                .ok_or_else(|| AuditError::Unavailable("a subtree was not made".into()))
        })
    }

    /// The root of the complete subtree of `height` and `index`.
    async fn subtree(&self, height: u32, index: u64) -> Result<Hash> {
        let above = height % STRIDE;
        let roots = self
            .level(height - above, index << above, (index + 1) << above)
            .await?;
        Ok(merkle::root(&roots))
    }

    /// The root of a range of a proof (or of the whole tree of its first `n` leaves, `(0, n)`).
    async fn range_root(&self, range: Range) -> Result<Hash> {
        let mut roots = Vec::new();
        for (height, index) in merkle::subtrees(range) {
            roots.push(self.subtree(height, index).await?);
        }
        Ok(merkle::fold_subtrees(&roots))
    }

    async fn roots(&self, ranges: Vec<Range>) -> Result<Vec<Hash>> {
        let mut out = Vec::with_capacity(ranges.len());
        for r in ranges {
            out.push(self.range_root(r).await?);
        }
        Ok(out)
    }
}

/// Sizes an auditor may ask about: within the records written, none of them archived; the
/// index is brought up to them.
async fn within(
    store: &dyn AuditStore,
    chain: &str,
    sizes: &str,
    low: u64,
    high: u64,
) -> Result<()> {
    if let Some((through, _)) = store.audit_archive(chain).await? {
        return Err(AuditError::Refused(format!(
            "records 1 to {through} of chain {chain} are archived: verify the archives and an export instead"
        )));
    }
    let head = store.audit_head(chain).await?;
    if low == 0 || low > high || high > head {
        return Err(AuditError::Refused(format!(
            "need {sizes} <= {head} (the chain's size)"
        )));
    }
    // Once per proof: every leaf up to `head` is then in the index.
    store.index_audit().await
}

/// The consistency proof between the first `first` and the first `second` records of `chain`
/// (`0 < first <= second <=` its size).
pub async fn consistency(
    store: &dyn AuditStore,
    chain: &str,
    first: u64,
    second: u64,
) -> Result<ConsistencyProof> {
    within(store, chain, "0 < first <= second", first, second).await?;
    let tree = Tree { store, chain };
    Ok(ConsistencyProof {
        first_root: tree.range_root((0, first)).await?,
        second_root: tree.range_root((0, second)).await?,
        proof: tree
            .roots(merkle::consistency_ranges(first, second))
            .await?,
    })
}

/// The inclusion proof of record `seq` of `chain` in the tree of its first `size` records
/// (`0 < seq <= size <=` its size).
pub async fn inclusion(
    store: &dyn AuditStore,
    chain: &str,
    seq: u64,
    size: u64,
) -> Result<InclusionProof> {
    within(store, chain, "0 < seq <= size", seq, size).await?;
    let tree = Tree { store, chain };
    Ok(InclusionProof {
        leaf: tree.subtree(0, seq - 1).await?,
        root: tree.range_root((0, size)).await?,
        proof: tree.roots(merkle::inclusion_ranges(seq - 1, size)).await?,
    })
}
