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

/// The largest power of two smaller than `n` (for `n > 1`).
fn split(n: usize) -> usize {
    let mut k = 1;
    while k << 1 < n {
        k <<= 1;
    }
    k
}

/// The root of the tree over `leaves` (the hash of the empty string for none).
pub fn root(leaves: &[Hash]) -> Hash {
    match leaves.len() {
        0 => sha256(&[]),
        1 => leaves[0],
        n => {
            let k = split(n);
            node_hash(&root(&leaves[..k]), &root(&leaves[k..]))
        }
    }
}

/// The consistency proof between the first `m` leaves and all of `leaves` (RFC 9162 §2.1.4.1);
/// empty when `m` is 0 or all of them.
pub fn consistency_proof(m: usize, leaves: &[Hash]) -> Vec<Hash> {
    fn subproof(m: usize, leaves: &[Hash], complete: bool, out: &mut Vec<Hash>) {
        let n = leaves.len();
        if m == n {
            if !complete {
                out.push(root(leaves));
            }
            return;
        }
        let k = split(n);
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
