CREATE TABLE admin_credentials (
    role       TEXT PRIMARY KEY CHECK (role IN ('operator', 'auditor')),
    digest     BLOB NOT NULL,
    created_at INTEGER NOT NULL
);
