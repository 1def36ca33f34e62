CREATE TABLE meta (
    name  TEXT PRIMARY KEY,
    value BLOB NOT NULL
);
CREATE TABLE resources (
    canonical   TEXT PRIMARY KEY,
    display     TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    isv_enabled INTEGER NOT NULL DEFAULT 0,
    isv_grants  TEXT NOT NULL DEFAULT '',
    approvals   TEXT NOT NULL DEFAULT '',
    auth_mode   TEXT NOT NULL DEFAULT 'key' CHECK (auth_mode IN ('key', 'token'))
);
CREATE TABLE keys (
    resource   TEXT NOT NULL REFERENCES resources (canonical) ON DELETE CASCADE,
    slot       INTEGER NOT NULL CHECK (slot IN (1, 2)),
    digest     BLOB NOT NULL UNIQUE,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (resource, slot)
);
CREATE TABLE client_blocks (
    isv        TEXT NOT NULL,
    client     TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    set_by     TEXT NOT NULL DEFAULT 'isv' CHECK (set_by IN ('isv', 'operator')),
    PRIMARY KEY (isv, client)
);
CREATE TABLE signing_keys (
    kid        TEXT PRIMARY KEY,
    pkcs8      BLOB NOT NULL,
    created_at INTEGER NOT NULL,
    retired_at INTEGER
);
CREATE TABLE audit (
    chain   TEXT NOT NULL,
    seq     INTEGER NOT NULL,
    time    INTEGER NOT NULL,
    kind    TEXT NOT NULL,
    outcome TEXT NOT NULL,
    isv     TEXT,
    target  TEXT,
    jti       TEXT,
    features  TEXT,
    operation TEXT,
    body      TEXT NOT NULL,
    hash      BLOB NOT NULL,
    leaf      BLOB NOT NULL,
    PRIMARY KEY (chain, seq)
);
CREATE INDEX audit_time ON audit (time);
CREATE INDEX audit_isv ON audit (isv, time);
CREATE INDEX audit_target ON audit (target, time);
CREATE INDEX audit_jti ON audit (jti);
