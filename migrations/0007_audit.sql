-- switchboard schema v7: the audit log (issue 5). Portable SQL, as 0001.
-- One row per administrative change made through the API (a recording deleted, a user
-- created, changed or removed): who (the API key's id and name), what, on which object, when.
-- Rows are only ever inserted.
CREATE TABLE audit_log (
    id            TEXT PRIMARY KEY,
    at_ms         BIGINT NOT NULL,
    actor_key_id  TEXT,
    actor_name    TEXT NOT NULL,
    action        TEXT NOT NULL,
    target_kind   TEXT NOT NULL,
    target_id     TEXT NOT NULL,
    detail        TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX audit_log_at ON audit_log (at_ms);
CREATE INDEX audit_log_target ON audit_log (target_kind, target_id);
