CREATE TABLE revocations (
    scope      TEXT NOT NULL CHECK (scope IN ('jti', 'target', 'isv', 'isv_target')),
    subject    TEXT NOT NULL,
    before     INTEGER,
    expires_at INTEGER NOT NULL,
    PRIMARY KEY (scope, subject)
);
CREATE INDEX revocations_expiry ON revocations (expires_at);
