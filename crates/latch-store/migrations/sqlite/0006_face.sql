-- The Face engine's data (`face`): the client's own, not security state, so no trigger
-- moves the state version. Each face keeps the group's count of faces added when it came
-- (`seq`); training keeps the count of its moment (`trained_faces`).
CREATE TABLE face_groups (
    resource          TEXT NOT NULL,
    group_id          TEXT NOT NULL,
    name              TEXT NOT NULL,
    user_data         TEXT,
    recognition_model TEXT NOT NULL,
    created_at        INTEGER NOT NULL,
    trained_at        INTEGER,
    trained_faces     INTEGER,
    faces_added       INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (resource, group_id)
);
CREATE TABLE face_persons (
    resource  TEXT NOT NULL,
    group_id  TEXT NOT NULL,
    person_id TEXT NOT NULL,
    name      TEXT NOT NULL,
    user_data TEXT,
    PRIMARY KEY (resource, group_id, person_id),
    FOREIGN KEY (resource, group_id) REFERENCES face_groups (resource, group_id) ON DELETE CASCADE
);
CREATE TABLE face_faces (
    resource  TEXT NOT NULL,
    group_id  TEXT NOT NULL,
    person_id TEXT NOT NULL,
    face_id   TEXT NOT NULL,
    user_data TEXT,
    embedding BLOB NOT NULL,
    seq       INTEGER NOT NULL,
    PRIMARY KEY (resource, group_id, person_id, face_id),
    FOREIGN KEY (resource, group_id, person_id)
        REFERENCES face_persons (resource, group_id, person_id) ON DELETE CASCADE
);
CREATE INDEX face_faces_seq ON face_faces (resource, group_id, seq);
CREATE TABLE face_detected (
    face_id           TEXT PRIMARY KEY,
    resource          TEXT NOT NULL,
    recognition_model TEXT NOT NULL,
    embedding         BLOB NOT NULL,
    expires_at        INTEGER NOT NULL
);
CREATE INDEX face_detected_expiry ON face_detected (expires_at);
CREATE INDEX face_detected_live ON face_detected (resource, expires_at);
CREATE TABLE face_operations (
    operation_id TEXT PRIMARY KEY,
    resource     TEXT NOT NULL,
    created_at   INTEGER NOT NULL
);
CREATE INDEX face_operations_age ON face_operations (resource, created_at);
