-- The audit records live in journals; this is their index (`sqlite/audit_index.rs`). The
-- `audit` table above is where they were before: opening the store moves them out.
CREATE TABLE audit_names (
    id   INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE
);
CREATE TABLE audit_index (
    chain     INTEGER NOT NULL,
    seq       INTEGER NOT NULL,
    time      INTEGER NOT NULL,
    kind      INTEGER NOT NULL,
    outcome   INTEGER NOT NULL,
    isv       INTEGER,
    target    INTEGER,
    jti       INTEGER,
    operation INTEGER,
    features  TEXT,
    leaf      BLOB NOT NULL,
    PRIMARY KEY (chain, seq)
) WITHOUT ROWID;
CREATE INDEX audit_index_time ON audit_index (time);
CREATE INDEX audit_index_isv ON audit_index (isv, time);
CREATE INDEX audit_index_target ON audit_index (target, time);
CREATE INDEX audit_index_jti ON audit_index (jti);
