-- The version of the state requests are checked against: every row that changes, on any
-- replica, moves the number in the transaction that changes it. Row triggers, so that a
-- statement that changes nothing (the minutely pruning, mostly) moves nothing and takes no
-- lock. The function's search path is the schema it was made in. (TRUNCATE, and triggers
-- turned off by `session_replication_role = replica`, go unseen: the checks then catch up
-- within their entry age, 10 s.)
CREATE TABLE state_version (
    id      INTEGER PRIMARY KEY CHECK (id = 1),
    version BIGINT NOT NULL
);
INSERT INTO state_version (id, version) VALUES (1, 0);
CREATE FUNCTION state_changed() RETURNS trigger LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
BEGIN
    UPDATE state_version SET version = version + 1 WHERE id = 1;
    RETURN NULL;
END
$$;
CREATE TRIGGER resources_changed AFTER INSERT OR UPDATE OR DELETE ON resources
    FOR EACH ROW EXECUTE FUNCTION state_changed();
CREATE TRIGGER keys_changed AFTER INSERT OR UPDATE OR DELETE ON keys
    FOR EACH ROW EXECUTE FUNCTION state_changed();
CREATE TRIGGER client_blocks_changed AFTER INSERT OR UPDATE OR DELETE ON client_blocks
    FOR EACH ROW EXECUTE FUNCTION state_changed();
CREATE TRIGGER revocations_changed AFTER INSERT OR UPDATE OR DELETE ON revocations
    FOR EACH ROW EXECUTE FUNCTION state_changed();
