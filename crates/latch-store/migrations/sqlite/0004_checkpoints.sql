CREATE TABLE checkpoints (
    id         INTEGER PRIMARY KEY,
    chain      TEXT NOT NULL,
    size       INTEGER NOT NULL,
    body       TEXT NOT NULL,
    time       INTEGER NOT NULL
);
CREATE INDEX checkpoints_chain ON checkpoints (chain, id);
CREATE TABLE audit_archives (
    chain       TEXT PRIMARY KEY,
    through_seq INTEGER NOT NULL,
    frontier    BLOB NOT NULL
);
