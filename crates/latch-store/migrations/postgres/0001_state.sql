CREATE TABLE meta (
    name  TEXT PRIMARY KEY,
    value BYTEA NOT NULL
);
CREATE TABLE resources (
    canonical   TEXT PRIMARY KEY,
    display     TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    isv_enabled BOOLEAN NOT NULL DEFAULT FALSE,
    isv_grants  TEXT NOT NULL DEFAULT '',
    approvals   TEXT NOT NULL DEFAULT '',
    auth_mode   TEXT NOT NULL DEFAULT 'key' CHECK (auth_mode IN ('key', 'token'))
);
CREATE TABLE keys (
    resource   TEXT NOT NULL REFERENCES resources (canonical) ON DELETE CASCADE,
    slot       SMALLINT NOT NULL CHECK (slot IN (1, 2)),
    digest     BYTEA NOT NULL UNIQUE,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (resource, slot)
);
CREATE TABLE client_blocks (
    isv        TEXT NOT NULL,
    client     TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    set_by     TEXT NOT NULL DEFAULT 'isv' CHECK (set_by IN ('isv', 'operator')),
    PRIMARY KEY (isv, client)
);
CREATE TABLE signing_keys (
    kid        TEXT PRIMARY KEY,
    pkcs8      BYTEA NOT NULL,
    created_at BIGINT NOT NULL,
    retired_at BIGINT
);
CREATE TABLE audit_heads (
    chain TEXT PRIMARY KEY,
    seq   BIGINT NOT NULL,
    hash  BYTEA NOT NULL
);
CREATE TABLE audit (
    id        BIGINT GENERATED ALWAYS AS IDENTITY UNIQUE,
    chain     TEXT NOT NULL,
    seq       BIGINT NOT NULL,
    time      BIGINT NOT NULL,
    kind      TEXT NOT NULL,
    outcome   TEXT NOT NULL,
    isv       TEXT,
    target    TEXT,
    jti       TEXT,
    features  TEXT,
    operation TEXT,
    body      TEXT NOT NULL,
    hash      BYTEA NOT NULL,
    leaf      BYTEA NOT NULL,
    PRIMARY KEY (chain, seq)
);
CREATE INDEX audit_time ON audit (time);
CREATE INDEX audit_isv ON audit (isv, time);
CREATE INDEX audit_target ON audit (target, time);
CREATE INDEX audit_jti ON audit (jti);
CREATE TABLE revocations (
    scope      TEXT NOT NULL CHECK (scope IN ('jti', 'target', 'isv', 'isv_target')),
    subject    TEXT NOT NULL,
    before     BIGINT,
    expires_at BIGINT NOT NULL,
    PRIMARY KEY (scope, subject)
);
CREATE INDEX revocations_expiry ON revocations (expires_at);
CREATE TABLE admin_credentials (
    role       TEXT PRIMARY KEY CHECK (role IN ('operator', 'auditor')),
    digest     BYTEA NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE TABLE checkpoints (
    id    BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    chain TEXT NOT NULL,
    size  BIGINT NOT NULL,
    body  TEXT NOT NULL,
    time  BIGINT NOT NULL
);
CREATE INDEX checkpoints_chain ON checkpoints (chain, id);
CREATE TABLE audit_archives (
    chain       TEXT PRIMARY KEY,
    through_seq BIGINT NOT NULL,
    frontier    BYTEA NOT NULL
);
