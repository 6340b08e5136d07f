-- switchboard schema v10: chat attachments (issue 12). Portable SQL, as 0001.
-- A file a visitor or an agent sent in a conversation: its bytes are under
-- <data_dir>/attachments/<id> (written and synced before this row), its type told by its
-- content. owner is who uploaded it (a web visitor's id, or `api`); conversation_id is set by
-- an upload into a conversation or when a message carries it, message_id when a message
-- carries it (an upload not yet sent has none).
CREATE TABLE attachments (
    id               TEXT PRIMARY KEY,
    owner            TEXT NOT NULL,
    conversation_id  TEXT REFERENCES conversations (id),
    message_id       TEXT,
    content_type     TEXT NOT NULL,
    size_bytes       BIGINT NOT NULL,
    sha256           TEXT NOT NULL,
    name             TEXT NOT NULL,
    created_ms       BIGINT NOT NULL
);
CREATE INDEX attachments_conversation ON attachments (conversation_id);
CREATE INDEX attachments_message ON attachments (message_id);
