-- The audit records leave the indexed table for one with nothing but its primary key
-- (`audit_chains.rs`): the same sequence numbers and bodies, so the roots signed before
-- still hold. The table they leave keeps its rows, ids and indexes, without the bodies, as
-- the index built behind the writers. A head's frontier is made at its chain's first use.
-- `audit_tree` keeps roots of complete subtrees, every eighth height, made as proofs need
-- them (`latch-audit/src/proofs.rs`).
CREATE TABLE audit_log (
    chain TEXT NOT NULL,
    seq   BIGINT NOT NULL,
    body  TEXT NOT NULL,
    PRIMARY KEY (chain, seq)
);
INSERT INTO audit_log (chain, seq, body) SELECT chain, seq, body FROM audit;
ALTER TABLE audit DROP COLUMN body, DROP COLUMN hash;
ALTER TABLE audit RENAME TO audit_index;
ALTER TABLE audit_heads ADD COLUMN frontier BYTEA;
CREATE TABLE audit_tree (
    chain  TEXT NOT NULL,
    height INTEGER NOT NULL,
    idx    BIGINT NOT NULL,
    hash   BYTEA NOT NULL,
    PRIMARY KEY (chain, height, idx)
);
