-- Roots of complete subtrees of each chain's Merkle tree, every eighth height, made as
-- proofs need them (`latch-audit/src/proofs.rs`): a proof reads a few hundred hashes, not every leaf.
CREATE TABLE audit_tree (
    chain  INTEGER NOT NULL,
    height INTEGER NOT NULL,
    idx    INTEGER NOT NULL,
    hash   BLOB NOT NULL,
    PRIMARY KEY (chain, height, idx)
) WITHOUT ROWID;
