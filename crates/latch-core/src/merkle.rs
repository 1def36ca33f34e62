//! The Merkle tree of RFC 9162 (Certificate Transparency 2.0) over audit records.
//!
//! Leaves are `SHA-256(0x00 || record)`, interior nodes `SHA-256(0x01 || left || right)`, and the
//! tree of `n` leaves splits at the largest power of two smaller than `n` (RFC 9162 §2.1.1). A
//! signed checkpoint commits to the root of the first `size` records; a consistency proof
//! (§2.1.4) shows that a later root extends an earlier one, so records seen once cannot have
//! been removed or changed since.

use ring::digest::{Context, SHA256};

/// A node or leaf hash.
pub type Hash = [u8; 32];

fn sha256(parts: &[&[u8]]) -> Hash {
    let mut ctx = Context::new(&SHA256);
    for p in parts {
        ctx.update(p);
    }
    let mut out = [0u8; 32];
    out.copy_from_slice(ctx.finish().as_ref());
    out
}

/// The leaf hash of a record.
pub fn leaf_hash(record: &[u8]) -> Hash {
    sha256(&[&[0u8], record])
}

/// The hash of an interior node.
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    sha256(&[&[1u8], left, right])
}

/// The root of the tree over `leaves` (the hash of the empty string for none).
pub fn root(leaves: &[Hash]) -> Hash {
    match leaves.len() {
        0 => sha256(&[]),
        1 => leaves[0],
        n => {
            let k = split(n as u64) as usize;
            node_hash(&root(&leaves[..k]), &root(&leaves[k..]))
        }
    }
}

/// The consistency proof between the first `m` leaves and all of `leaves` (RFC 9162 §2.1.4.1);
/// empty when `m` is 0 or all of them.
pub fn consistency_proof(m: usize, leaves: &[Hash]) -> Vec<Hash> {
    consistency_ranges(m as u64, leaves.len() as u64)
        .into_iter()
        .map(|(lo, hi)| root(&leaves[lo as usize..hi as usize]))
        .collect()
}

/// Whether `proof` shows that the tree of `first` leaves with root `first_root` is a prefix of
/// the tree of `second` leaves with root `second_root` (RFC 9162 §2.1.4.2).
pub fn verify_consistency(
    first: u64,
    second: u64,
    first_root: &Hash,
    second_root: &Hash,
    proof: &[Hash],
) -> bool {
    if first == second {
        return proof.is_empty() && first_root == second_root;
    }
    if first == 0 || first > second || proof.is_empty() {
        return false;
    }
    let mut path: Vec<Hash> = Vec::with_capacity(proof.len() + 1);
    if first.is_power_of_two() {
        path.push(*first_root);
    }
    path.extend_from_slice(proof);
    let (mut fn_, mut sn) = (first - 1, second - 1);
    while fn_ & 1 == 1 {
        fn_ >>= 1;
        sn >>= 1;
    }
    let (mut fr, mut sr) = (path[0], path[0]);
    for c in &path[1..] {
        if sn == 0 {
            return false;
        }
        if fn_ & 1 == 1 || fn_ == sn {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            if fn_ & 1 == 0 {
                while fn_ & 1 == 0 && fn_ != 0 {
                    fn_ >>= 1;
                    sn >>= 1;
                }
            }
        } else {
            sr = node_hash(&sr, c);
        }
        fn_ >>= 1;
        sn >>= 1;
    }
    fr == *first_root && sr == *second_root && sn == 0
}

/// The subtrees a proof is made of, as ranges of leaves `[start, end)`: each proof hash is the
/// root of one range, in order. Proofs are computed over these ranges so that a store can answer
/// each from the complete subtrees it keeps ([`subtrees`]) instead of from every leaf.
pub type Range = (u64, u64);

/// The largest power of two smaller than `n` (for `n > 1`).
fn split(n: u64) -> u64 {
    let mut k = 1;
    while k << 1 < n {
        k <<= 1;
    }
    k
}

/// The ranges of the consistency proof between the first `m` leaves and the first `n`
/// (RFC 9162 §2.1.4.1); none when `m` is 0 or `m >= n`.
pub fn consistency_ranges(m: u64, n: u64) -> Vec<Range> {
    fn subproof(m: u64, (lo, hi): Range, complete: bool, out: &mut Vec<Range>) {
        let n = hi - lo;
        if m == n {
            if !complete {
                out.push((lo, hi));
            }
            return;
        }
        let k = split(n);
        if m <= k {
            subproof(m, (lo, lo + k), complete, out);
            out.push((lo + k, hi));
        } else {
            subproof(m - k, (lo + k, hi), false, out);
            out.push((lo, lo + k));
        }
    }
    let mut out = Vec::new();
    if m > 0 && m < n {
        subproof(m, (0, n), true, &mut out);
    }
    out
}

/// The ranges of the inclusion proof of leaf `index` (0-based) in the tree of the first `n`
/// leaves (RFC 9162 §2.1.3.1), from the leaf's sibling up; none when `index >= n`.
pub fn inclusion_ranges(index: u64, n: u64) -> Vec<Range> {
    let mut out = Vec::new();
    let (mut lo, mut hi) = (0, n);
    if index >= n {
        return out;
    }
    while hi - lo > 1 {
        let k = split(hi - lo);
        if index < lo + k {
            out.push((lo + k, hi));
            hi = lo + k;
        } else {
            out.push((lo, lo + k));
            lo += k;
        }
    }
    out.reverse();
    out
}

/// The complete subtrees whose roots make the root of the range `[start, end)` of a proof, as
/// (height, index): the subtree of height `h` and index `i` covers leaves `[i << h, (i + 1) << h)`.
/// Every range of a proof starts at a multiple of the largest power of two below its length, so
/// these are whole subtrees, largest first; [`fold_subtrees`] combines their roots.
pub fn subtrees((start, end): Range) -> Vec<(u32, u64)> {
    let mut out = Vec::new();
    let mut at = start;
    while at < end {
        let height = (end - at)
            .ilog2()
            .min(if at == 0 { 63 } else { at.trailing_zeros() });
        out.push((height, at >> height));
        at += 1 << height;
    }
    out
}

/// The root of a range from the roots of its [`subtrees`], in their order.
pub fn fold_subtrees(roots: &[Hash]) -> Hash {
    match roots.split_last() {
        None => sha256(&[]),
        Some((last, rest)) => rest.iter().rev().fold(*last, |acc, h| node_hash(h, &acc)),
    }
}

/// Whether `proof` shows that the leaf hash `leaf` is leaf `index` of the tree of `n` leaves
/// with root `root` (RFC 9162 §2.1.3.2).
pub fn verify_inclusion(index: u64, n: u64, leaf: &Hash, root: &Hash, proof: &[Hash]) -> bool {
    if index >= n {
        return false;
    }
    let (mut fn_, mut sn) = (index, n - 1);
    let mut r = *leaf;
    for p in proof {
        if sn == 0 {
            return false;
        }
        if fn_ & 1 == 1 || fn_ == sn {
            r = node_hash(p, &r);
            while fn_ & 1 == 0 && fn_ != 0 {
                fn_ >>= 1;
                sn >>= 1;
            }
        } else {
            r = node_hash(&r, p);
        }
        fn_ >>= 1;
        sn >>= 1;
    }
    sn == 0 && r == *root
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn leaves(n: usize) -> Vec<Hash> {
        (0..n)
            .map(|i| leaf_hash(format!("record {i}").as_bytes()))
            .collect()
    }

    #[test]
    fn roots_follow_rfc_9162() {
        let l = leaves(3);
        assert_eq!(root(&l[..1]), l[0]);
        assert_eq!(root(&l[..2]), node_hash(&l[0], &l[1]));
        assert_eq!(root(&l), node_hash(&node_hash(&l[0], &l[1]), &l[2]));
        // The empty tree's root is SHA-256 of nothing.
        assert_eq!(
            root(&[])
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>(),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        // Leaves and nodes are domain-separated.
        assert_ne!(leaf_hash(&[1; 64]), node_hash(&[1; 32], &[1; 32]));
    }

    #[test]
    fn the_rfc_example_proof_shapes() {
        // RFC 9162 §2.1.5: the tree of 7 leaves; the proof for 3 has four hashes, for 4 one,
        // for 6 three.
        let l = leaves(7);
        assert_eq!(consistency_proof(3, &l).len(), 4);
        assert_eq!(consistency_proof(4, &l), vec![root(&l[4..])]);
        assert_eq!(consistency_proof(6, &l).len(), 3);
    }

    #[test]
    fn every_prefix_is_consistent_and_nothing_else_is() {
        for n in 1..40usize {
            let l = leaves(n);
            let rn = root(&l);
            for m in 1..=n {
                let rm = root(&l[..m]);
                let proof = consistency_proof(m, &l);
                assert!(
                    verify_consistency(m as u64, n as u64, &rm, &rn, &proof),
                    "m={m} n={n}"
                );
                if m < n {
                    // A changed leaf inside the first m, a wrong size, a tampered proof.
                    let mut altered = l.clone();
                    altered[m - 1] = leaf_hash(b"forged");
                    assert!(
                        !verify_consistency(
                            m as u64,
                            n as u64,
                            &rm,
                            &root(&altered),
                            &consistency_proof(m, &altered)
                        ),
                        "m={m} n={n}"
                    );
                    // The proof of m → n does not prove m → n + 1 (sizes come signed, with
                    // their roots; the shape alone may fit two sizes).
                    assert!(!verify_consistency(
                        m as u64,
                        n as u64 + 1,
                        &rm,
                        &root(&leaves(n + 1)),
                        &proof
                    ));
                    let mut bad = proof.clone();
                    bad[0][0] ^= 1;
                    assert!(!verify_consistency(m as u64, n as u64, &rm, &rn, &bad));
                    assert!(!verify_consistency(m as u64, n as u64, &rm, &rn, &[]));
                }
            }
        }
    }

    /// The consistency proof as RFC 9162 §2.1.4.1 writes it, over the leaves: the reference the
    /// proofs from ranges are checked against.
    fn recursive_consistency_proof(m: usize, leaves: &[Hash]) -> Vec<Hash> {
        fn subproof(m: usize, leaves: &[Hash], complete: bool, out: &mut Vec<Hash>) {
            let n = leaves.len();
            if m == n {
                if !complete {
                    out.push(root(leaves));
                }
                return;
            }
            let k = split(n as u64) as usize;
            if m <= k {
                subproof(m, &leaves[..k], complete, out);
                out.push(root(&leaves[k..]));
            } else {
                subproof(m - k, &leaves[k..], false, out);
                out.push(root(&leaves[..k]));
            }
        }
        let mut out = Vec::new();
        if m > 0 && m < leaves.len() {
            subproof(m, leaves, true, &mut out);
        }
        out
    }

    /// The root of a range, through its subtrees (as a store keeping subtrees computes it).
    fn by_subtrees(l: &[Hash], range: Range) -> Hash {
        let roots: Vec<Hash> = subtrees(range)
            .into_iter()
            .map(|(h, i)| {
                let (a, b) = ((i << h) as usize, ((i + 1) << h) as usize);
                assert!(b <= l.len(), "a subtree past the end");
                assert!((b - a).is_power_of_two());
                root(&l[a..b])
            })
            .collect();
        fold_subtrees(&roots)
    }

    #[test]
    fn proofs_from_ranges_and_subtrees_are_the_proofs_from_leaves() {
        for n in 1..70u64 {
            let l = leaves(n as usize);
            let rn = root(&l);
            assert_eq!(by_subtrees(&l, (0, n)), rn, "n={n}");
            for m in 1..=n {
                let from_ranges: Vec<Hash> = consistency_ranges(m, n)
                    .into_iter()
                    .map(|r| by_subtrees(&l, r))
                    .collect();
                assert_eq!(
                    from_ranges,
                    recursive_consistency_proof(m as usize, &l),
                    "m={m} n={n}"
                );
            }
            for i in 0..n {
                let proof: Vec<Hash> = inclusion_ranges(i, n)
                    .into_iter()
                    .map(|r| by_subtrees(&l, r))
                    .collect();
                assert!(
                    verify_inclusion(i, n, &l[i as usize], &rn, &proof),
                    "i={i} n={n}"
                );
                assert!(!verify_inclusion(i, n, &leaf_hash(b"other"), &rn, &proof));
                if n > 1 {
                    let other = (i + 1) % n;
                    assert!(
                        !verify_inclusion(other, n, &l[i as usize], &rn, &proof)
                            || l[other as usize] == l[i as usize]
                    );
                    let mut bad = proof.clone();
                    bad[0][0] ^= 1;
                    assert!(!verify_inclusion(i, n, &l[i as usize], &rn, &bad));
                    // Sizes come signed with their roots: the proof for n is none for n + 1.
                    let next = root(&leaves(n as usize + 1));
                    assert!(!verify_inclusion(i, n + 1, &l[i as usize], &next, &proof));
                }
            }
            assert!(!verify_inclusion(n, n, &l[0], &rn, &[]));
        }
    }

    #[test]
    fn the_rfc_example_inclusion_proof_shapes() {
        // RFC 9162 §2.1.5: in the tree of 7 leaves, the proof for leaf 0 is [b, h, l], for
        // leaf 3 [c, g, l], for leaf 4 [f, j, k]: three hashes each; for leaf 6 [i, j].
        assert_eq!(inclusion_ranges(0, 7), [(1, 2), (2, 4), (4, 7)]);
        assert_eq!(inclusion_ranges(3, 7), [(2, 3), (0, 2), (4, 7)]);
        assert_eq!(inclusion_ranges(4, 7), [(5, 6), (6, 7), (0, 4)]);
        assert_eq!(inclusion_ranges(6, 7), [(4, 6), (0, 4)]);
    }

    proptest! {
        #[test]
        fn truncation_and_rewrite_are_never_consistent(n in 2usize..200, m in 1usize..199, at in 0usize..199) {
            prop_assume!(m < n);
            let l = leaves(n);
            let mut rewritten = l.clone();
            let i = at % m;
            rewritten[i] = leaf_hash(b"rewritten");
            let proof = consistency_proof(m, &rewritten);
            prop_assert!(!verify_consistency(m as u64, n as u64, &root(&l[..m]), &root(&rewritten), &proof));
        }
    }
}
