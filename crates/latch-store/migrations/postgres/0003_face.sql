-- The Face engine's data (`face`): the client's own, not security state, so no trigger
-- moves the state version. Each face keeps the group's count of faces added when it came
-- (`seq`); training keeps the count of its moment (`trained_faces`). Ids compare byte by
-- byte ("C"), as on the embedded store, whatever the database's collation: pages follow
-- the same order everywhere.
CREATE TABLE face_groups (
    resource          TEXT NOT NULL,
    group_id          TEXT COLLATE "C" NOT NULL,
    name              TEXT NOT NULL,
    user_data         TEXT,
    recognition_model TEXT NOT NULL,
    created_at        BIGINT NOT NULL,
    trained_at        BIGINT,
    trained_faces     BIGINT,
    faces_added       BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (resource, group_id)
);
CREATE TABLE face_persons (
    resource  TEXT NOT NULL,
    group_id  TEXT COLLATE "C" NOT NULL,
    person_id TEXT COLLATE "C" NOT NULL,
    name      TEXT NOT NULL,
    user_data TEXT,
    PRIMARY KEY (resource, group_id, person_id),
    FOREIGN KEY (resource, group_id) REFERENCES face_groups (resource, group_id) ON DELETE CASCADE
);
CREATE TABLE face_faces (
    resource  TEXT NOT NULL,
    group_id  TEXT COLLATE "C" NOT NULL,
    person_id TEXT COLLATE "C" NOT NULL,
    face_id   TEXT COLLATE "C" NOT NULL,
    user_data TEXT,
    embedding BYTEA NOT NULL,
    seq       BIGINT NOT NULL,
    PRIMARY KEY (resource, group_id, person_id, face_id),
    FOREIGN KEY (resource, group_id, person_id)
        REFERENCES face_persons (resource, group_id, person_id) ON DELETE CASCADE
);
CREATE INDEX face_faces_seq ON face_faces (resource, group_id, seq);
CREATE TABLE face_detected (
    face_id           TEXT COLLATE "C" PRIMARY KEY,
    resource          TEXT NOT NULL,
    recognition_model TEXT NOT NULL,
    embedding         BYTEA NOT NULL,
    expires_at        BIGINT NOT NULL
);
CREATE INDEX face_detected_expiry ON face_detected (expires_at);
CREATE INDEX face_detected_live ON face_detected (resource, expires_at);
CREATE TABLE face_operations (
    operation_id TEXT PRIMARY KEY,
    resource     TEXT NOT NULL,
    created_at   BIGINT NOT NULL
);
CREATE INDEX face_operations_age ON face_operations (resource, created_at);
