-- The version of the state requests are checked against: every change to it, by any
-- process, moves the number, in the transaction that makes the change.
CREATE TABLE state_version (
    id      INTEGER PRIMARY KEY CHECK (id = 1),
    version INTEGER NOT NULL
);
INSERT INTO state_version (id, version) VALUES (1, 0);
CREATE TRIGGER resources_insert AFTER INSERT ON resources BEGIN UPDATE state_version SET version = version + 1; END;
CREATE TRIGGER resources_update AFTER UPDATE ON resources BEGIN UPDATE state_version SET version = version + 1; END;
CREATE TRIGGER resources_delete AFTER DELETE ON resources BEGIN UPDATE state_version SET version = version + 1; END;
CREATE TRIGGER keys_insert AFTER INSERT ON keys BEGIN UPDATE state_version SET version = version + 1; END;
CREATE TRIGGER keys_update AFTER UPDATE ON keys BEGIN UPDATE state_version SET version = version + 1; END;
CREATE TRIGGER keys_delete AFTER DELETE ON keys BEGIN UPDATE state_version SET version = version + 1; END;
CREATE TRIGGER client_blocks_insert AFTER INSERT ON client_blocks BEGIN UPDATE state_version SET version = version + 1; END;
CREATE TRIGGER client_blocks_update AFTER UPDATE ON client_blocks BEGIN UPDATE state_version SET version = version + 1; END;
CREATE TRIGGER client_blocks_delete AFTER DELETE ON client_blocks BEGIN UPDATE state_version SET version = version + 1; END;
CREATE TRIGGER revocations_insert AFTER INSERT ON revocations BEGIN UPDATE state_version SET version = version + 1; END;
CREATE TRIGGER revocations_update AFTER UPDATE ON revocations BEGIN UPDATE state_version SET version = version + 1; END;
CREATE TRIGGER revocations_delete AFTER DELETE ON revocations BEGIN UPDATE state_version SET version = version + 1; END;
